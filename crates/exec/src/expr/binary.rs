//! Binary operators: comparisons, arithmetic, Kleene `AND`/`OR`, `||`, and `BETWEEN`.
//!
//! Operands are first cast to the types `types::binary_types` chose (the same call the
//! planner made to type the expression), then handed to one Arrow kernel per batch.
//! Division and remainder by zero are NULL for every numeric type (Spark's non-ANSI rule).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Datum, Scalar};
use arrow::compute::kernels::{boolean, cmp, numeric};
use arrow::datatypes::DataType;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use datafusion_common::ScalarValue;

use ember_planner::expr::Operator;
use ember_planner::types::{binary_types, common_type};
use ember_planner::{internal_err, plan_err, Result};

use super::cast::{coerce, comparison_type};
use super::datum::{evaluate_pair, Evaluated, Operand};
use super::{decimal, LiteralExpr, PhysicalExpr, PhysicalExprRef};

/// Compiles `left op right`.
pub(crate) fn build(
    left: PhysicalExprRef,
    op: Operator,
    right: PhysicalExprRef,
) -> Result<PhysicalExprRef> {
    let (lt, rt, out) = binary_types(left.data_type(), op, right.data_type())?;
    if op.is_comparison() && lt != DataType::Null {
        let t = comparison_type(&left, &[&right], lt);
        let t = comparison_type(&right, &[&left], t);
        return Ok(Arc::new(ComparisonExpr {
            left: Operand::new(coerce(left, &t)?)?,
            op,
            right: Operand::new(coerce(right, &t)?)?,
        }));
    }
    let left = coerce(left, &lt)?;
    let right = coerce(right, &rt)?;
    match op {
        Operator::And | Operator::Or => Ok(Arc::new(LogicalExpr { left, op, right })),
        // Comparisons of two NULL-typed operands (others returned above).
        op if op.is_comparison() => null_of(&DataType::Boolean),
        Operator::StringConcat => Ok(Arc::new(ConcatExpr { left, right })),
        _ => arithmetic(left, op, right, out),
    }
}

/// A constant NULL of type `t`.
pub(crate) fn null_of(t: &DataType) -> Result<PhysicalExprRef> {
    Ok(Arc::new(LiteralExpr::new(ScalarValue::try_from(t)?)))
}

fn arithmetic(
    left: PhysicalExprRef,
    op: Operator,
    right: PhysicalExprRef,
    out: DataType,
) -> Result<PhysicalExprRef> {
    let (lt, rt) = (left.data_type().clone(), right.data_type().clone());
    match (&lt, op, &rt) {
        // Dates are day numbers: date - date is a day count, date ± n moves n days.
        (DataType::Date32, Operator::Minus, DataType::Date32) => {
            let l = coerce(left, &DataType::Int64)?;
            let r = coerce(right, &DataType::Int64)?;
            arithmetic(l, op, r, DataType::Int64)
        }
        (DataType::Date32, Operator::Plus | Operator::Minus, DataType::Int32) => {
            let l = coerce(left, &DataType::Int32)?;
            let days = arithmetic(l, op, right, DataType::Int32)?;
            coerce(days, &DataType::Date32)
        }
        _ => {
            let zero = if matches!(op, Operator::Divide | Operator::Modulo)
                && !matches!(rt, DataType::Decimal128(..))
            {
                Some(ScalarValue::new_zero(&rt)?.to_scalar()?)
            } else {
                None
            };
            Ok(Arc::new(ArithmeticExpr {
                left: Operand::new(left)?,
                op,
                right: Operand::new(right)?,
                out,
                zero,
            }))
        }
    }
}

fn compare(op: Operator, l: &dyn Datum, r: &dyn Datum) -> Result<BooleanArray, ArrowError> {
    match op {
        Operator::Eq => cmp::eq(l, r),
        Operator::NotEq => cmp::neq(l, r),
        Operator::Lt => cmp::lt(l, r),
        Operator::LtEq => cmp::lt_eq(l, r),
        Operator::Gt => cmp::gt(l, r),
        _ => cmp::gt_eq(l, r),
    }
}

#[derive(Debug)]
struct ComparisonExpr {
    left: Operand,
    op: Operator,
    right: Operand,
}

impl PhysicalExpr for ComparisonExpr {
    fn data_type(&self) -> &DataType {
        &DataType::Boolean
    }
    fn evaluate(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        let (l, r) = evaluate_pair(&self.left, &self.right, batch)?;
        Ok(Arc::new(compare(self.op, l.datum(), r.datum())?))
    }
}

#[derive(Debug)]
struct ArithmeticExpr {
    left: Operand,
    op: Operator,
    right: Operand,
    out: DataType,
    /// The divisor type's zero, for `/` and `%` on non-decimals (zero divisors become NULL).
    zero: Option<Scalar<ArrayRef>>,
}

impl ArithmeticExpr {
    /// Replaces zero divisors by NULL so the kernel neither fails nor yields infinities.
    /// `None` when the divisor is a constant zero: every result is NULL.
    fn nonzero_divisor<'a>(&self, divisor: Evaluated<'a>) -> Result<Option<Evaluated<'a>>> {
        let Some(zero) = &self.zero else {
            return Ok(Some(divisor));
        };
        let is_zero = cmp::eq(divisor.datum(), zero)?;
        if is_zero.true_count() == 0 {
            return Ok(Some(divisor));
        }
        match divisor {
            Evaluated::Scalar(_) => Ok(None),
            Evaluated::Array(a) => Ok(Some(Evaluated::Array(arrow::compute::nullif(
                &a, &is_zero,
            )?))),
        }
    }
}

impl PhysicalExpr for ArithmeticExpr {
    fn data_type(&self) -> &DataType {
        &self.out
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        let (l, r) = evaluate_pair(&self.left, &self.right, batch)?;
        let result = if let DataType::Decimal128(p, s) = self.out {
            decimal::arithmetic(self.op, l.datum(), r.datum(), p, s)?
        } else {
            let Some(r) = self.nonzero_divisor(r)? else {
                return Ok(arrow::array::new_null_array(&self.out, batch.num_rows()));
            };
            let (l, r) = (l.datum(), r.datum());
            match self.op {
                Operator::Plus => numeric::add(l, r)?,
                Operator::Minus => numeric::sub(l, r)?,
                Operator::Multiply => numeric::mul(l, r)?,
                Operator::Divide => numeric::div(l, r)?,
                Operator::Modulo => numeric::rem(l, r)?,
                other => return internal_err!("'{other}' is not arithmetic"),
            }
        };
        if result.data_type() != &self.out {
            return internal_err!(
                "'{}' produced {} where {} was planned",
                self.op,
                result.data_type(),
                self.out
            );
        }
        Ok(result)
    }
}

#[derive(Debug)]
struct LogicalExpr {
    left: PhysicalExprRef,
    op: Operator,
    right: PhysicalExprRef,
}

impl PhysicalExpr for LogicalExpr {
    fn data_type(&self) -> &DataType {
        &DataType::Boolean
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        let l = self.left.evaluate(batch)?;
        let lb = l.as_boolean();
        // Skip the right side when the left decides every row.
        let decided = match self.op {
            Operator::And => lb.null_count() == 0 && lb.true_count() == 0,
            _ => lb.null_count() == 0 && lb.true_count() == lb.len(),
        };
        if decided {
            return Ok(l);
        }
        let r = self.right.evaluate(batch)?;
        let rb = r.as_boolean();
        Ok(Arc::new(match self.op {
            Operator::And => boolean::and_kleene(lb, rb)?,
            _ => boolean::or_kleene(lb, rb)?,
        }))
    }
}

/// `a || b`: NULL when either side is NULL (unlike `concat()`).
#[derive(Debug)]
struct ConcatExpr {
    left: PhysicalExprRef,
    right: PhysicalExprRef,
}

impl PhysicalExpr for ConcatExpr {
    fn data_type(&self) -> &DataType {
        &DataType::Utf8
    }
    fn evaluate(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        let l = self.left.evaluate(batch)?;
        let r = self.right.evaluate(batch)?;
        Ok(arrow::compute::kernels::concat_elements::concat_elements_dyn(&l, &r)?)
    }
}

/// `x [NOT] BETWEEN low AND high`, evaluating `x` once.
pub(crate) fn between(
    value: PhysicalExprRef,
    low: PhysicalExprRef,
    high: PhysicalExprRef,
    negated: bool,
) -> Result<PhysicalExprRef> {
    let t = common_type(value.data_type(), low.data_type())
        .and_then(|t| common_type(&t, high.data_type()));
    let Some(t) = t else {
        return plan_err!(
            "BETWEEN cannot compare {} with {} and {}",
            value.data_type(),
            low.data_type(),
            high.data_type()
        );
    };
    if t == DataType::Null {
        return null_of(&DataType::Boolean);
    }
    let t = comparison_type(&value, &[&low, &high], t);
    Ok(Arc::new(BetweenExpr {
        value: coerce(value, &t)?,
        low: Operand::new(coerce(low, &t)?)?,
        high: Operand::new(coerce(high, &t)?)?,
        negated,
    }))
}

#[derive(Debug)]
struct BetweenExpr {
    value: PhysicalExprRef,
    low: Operand,
    high: Operand,
    negated: bool,
}

impl PhysicalExpr for BetweenExpr {
    fn data_type(&self) -> &DataType {
        &DataType::Boolean
    }
    fn evaluate(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        let v = self.value.evaluate(batch)?;
        let low = self.low.evaluate(batch)?;
        let high = self.high.evaluate(batch)?;
        let ge = cmp::gt_eq(&v, low.datum())?;
        let le = cmp::lt_eq(&v, high.datum())?;
        let inside = boolean::and_kleene(&ge, &le)?;
        Ok(Arc::new(if self.negated {
            boolean::not(&inside)?
        } else {
            inside
        }))
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Date32Array, Decimal128Array, Float64Array, Int64Array, StringArray};
    use arrow::datatypes::IntervalMonthDayNano;
    use ember_planner::expr::{col, lit, Expr};

    use super::*;
    use crate::expr::test_util::{batch, eval, eval_bools, eval_err, strings};

    fn price(values: Vec<Option<i128>>) -> ArrayRef {
        Arc::new(
            Decimal128Array::from(values)
                .with_precision_and_scale(15, 2)
                .unwrap(),
        )
    }

    fn lineitem() -> RecordBatch {
        batch(vec![
            (
                "l_extendedprice",
                price(vec![Some(100_000), Some(250_050), None]),
            ),
            ("l_discount", price(vec![Some(5), Some(10), Some(0)])),
            ("l_tax", price(vec![Some(8), Some(0), Some(2)])),
            (
                "l_quantity",
                Arc::new(Int64Array::from(vec![Some(3), Some(0), None])) as ArrayRef,
            ),
            (
                "l_shipdate",
                Arc::new(Date32Array::from(vec![Some(9131), Some(9200), None])) as ArrayRef,
            ),
        ])
    }

    #[test]
    fn discounted_price_has_spark_decimal_type() {
        // l_extendedprice * (1 - l_discount), Int64 literal 1
        let e = col("l_extendedprice").mul(lit(1i64).sub(col("l_discount")));
        let out = eval(&e, &lineitem());
        assert_eq!(out.data_type(), &DataType::Decimal128(38, 4));
        assert_eq!(strings(&out), ["950.0000", "2250.4500", "NULL"]);
        // ... * (1 + l_tax): scale reduced to 6 by the precision-loss rule
        let charge = e.mul(lit(1i64).add(col("l_tax")));
        let out = eval(&charge, &lineitem());
        assert_eq!(out.data_type(), &DataType::Decimal128(38, 6));
        assert_eq!(strings(&out), ["1026.000000", "2250.450000", "NULL"]);
    }

    #[test]
    fn decimal_ratio_of_sums_and_percentages() {
        let sums = batch(vec![
            (
                "a",
                Arc::new(
                    Decimal128Array::from(vec![Some(1_0000), Some(2_0000), Some(5)])
                        .with_precision_and_scale(38, 4)
                        .unwrap(),
                ) as ArrayRef,
            ),
            (
                "b",
                Arc::new(
                    Decimal128Array::from(vec![Some(3_0000), Some(0), Some(1_0000)])
                        .with_precision_and_scale(38, 4)
                        .unwrap(),
                ) as ArrayRef,
            ),
        ]);
        let out = eval(&col("a").div(col("b")), &sums);
        assert_eq!(out.data_type(), &DataType::Decimal128(38, 6));
        assert_eq!(strings(&out), ["0.333333", "NULL", "0.000500"]);
        // 100.00 * a / b
        let hundred = lit(ScalarValue::Decimal128(Some(10000), 5, 2));
        let out = eval(&hundred.mul(col("a")).div(col("b")), &sums);
        assert_eq!(out.data_type(), &DataType::Decimal128(38, 6));
        assert_eq!(strings(&out), ["33.333333", "NULL", "0.050000"]);
    }

    #[test]
    fn division_by_zero_is_null_for_integers_and_floats() {
        let b = lineitem();
        let out = eval(&lit(6i64).div(col("l_quantity")), &b);
        assert_eq!(strings(&out), ["2", "NULL", "NULL"]);
        let out = eval(&col("l_quantity").binary(Operator::Modulo, lit(0i64)), &b);
        assert_eq!(out.null_count(), 3);
        let f = batch(vec![(
            "f",
            Arc::new(Float64Array::from(vec![1.0, 0.0])) as ArrayRef,
        )]);
        let out = eval(&lit(3.0).div(col("f")), &f);
        assert_eq!(strings(&out), ["3.0", "NULL"]);
    }

    #[test]
    fn integer_overflow_is_an_error() {
        let err = eval_err(&lit(i64::MAX).add(col("l_quantity")), &lineitem());
        assert!(err.contains("Overflow"), "{err}");
    }

    #[test]
    fn date_plus_interval_and_date_difference() {
        let three_months = lit(ScalarValue::IntervalMonthDayNano(Some(
            IntervalMonthDayNano::new(3, 0, 0),
        )));
        let out = eval(&col("l_shipdate").add(three_months.clone()), &lineitem());
        assert_eq!(out.data_type(), &DataType::Date32);
        assert_eq!(strings(&out), ["1995-04-01", "1995-06-11", "NULL"]);
        let out = eval(&three_months.add(col("l_shipdate")), &lineitem());
        assert_eq!(strings(&out)[0], "1995-04-01");
        let out = eval(
            &col("l_shipdate").sub(lit(ScalarValue::Date32(Some(9130)))),
            &lineitem(),
        );
        assert_eq!(out.data_type(), &DataType::Int64);
        assert_eq!(strings(&out), ["1", "70", "NULL"]);
        let out = eval(&col("l_shipdate").sub(lit(31i64)), &lineitem());
        assert_eq!(strings(&out)[0], "1994-12-01");
    }

    #[test]
    fn comparisons_coerce_and_keep_nulls() {
        let b = lineitem();
        assert_eq!(
            eval_bools(
                &col("l_discount").gt_eq(lit(ScalarValue::Decimal128(Some(6), 3, 2))),
                &b
            ),
            vec![Some(false), Some(true), Some(false)]
        );
        // date vs string literal
        assert_eq!(
            eval_bools(&col("l_shipdate").lt(lit("1995-01-05")), &b),
            vec![Some(true), Some(false), None]
        );
        assert_eq!(
            eval_bools(&col("l_quantity").eq(lit(ScalarValue::Null)), &b),
            vec![None, None, None]
        );
    }

    #[test]
    fn exact_constants_are_converted_instead_of_the_column() {
        let b = batch(vec![(
            "size",
            Arc::new(arrow::array::Int32Array::from(vec![
                Some(2),
                Some(15),
                None,
            ])) as ArrayRef,
        )]);
        let schema = ember_planner::schema::PlanSchema::from_arrow(None, b.schema().as_ref());
        let compile = |e: &Expr| {
            format!(
                "{:?}",
                crate::expr::create_physical_expr(e, &schema, &Default::default()).unwrap()
            )
        };
        // Int64 15 fits Int32 exactly: compare as Int32, no per-batch cast of the column.
        assert!(!compile(&col("size").eq(lit(15i64))).contains("CastExpr"));
        assert!(
            !compile(&col("size").in_list(vec![lit(15i64), lit(3i64)], false)).contains("CastExpr")
        );
        assert_eq!(
            eval_bools(&col("size").eq(lit(15i64)), &b),
            vec![Some(false), Some(true), None]
        );
        // 2.5 does not fit an integer: the column is widened, so 2 is not equal to 2.5.
        assert!(compile(&col("size").eq(lit(2.5))).contains("CastExpr"));
        assert_eq!(
            eval_bools(&col("size").lt_eq(lit(2.5)), &b),
            vec![Some(true), Some(false), None]
        );
        assert_eq!(
            eval_bools(&lit(2.5).gt(col("size")), &b),
            vec![Some(true), Some(false), None]
        );
    }

    #[test]
    fn kleene_logic() {
        let b = batch(vec![
            (
                "x",
                Arc::new(BooleanArray::from(vec![
                    Some(true),
                    Some(false),
                    None,
                    None,
                ])) as ArrayRef,
            ),
            (
                "y",
                Arc::new(BooleanArray::from(vec![
                    None,
                    None,
                    Some(false),
                    Some(true),
                ])) as ArrayRef,
            ),
        ]);
        assert_eq!(
            eval_bools(&col("x").and(col("y")), &b),
            vec![None, Some(false), Some(false), None]
        );
        assert_eq!(
            eval_bools(&col("x").or(col("y")), &b),
            vec![Some(true), None, None, Some(true)]
        );
    }

    #[test]
    fn and_skips_right_side_when_left_is_all_false() {
        // The right side would fail (cast of 'x'); it must not run.
        let b = batch(vec![(
            "s",
            Arc::new(StringArray::from(vec!["x", "y"])) as ArrayRef,
        )]);
        let e = col("s")
            .eq(lit("nope"))
            .and(col("s").cast_to(DataType::Int64).gt(lit(1i64)));
        assert_eq!(eval_bools(&e, &b), vec![Some(false), Some(false)]);
    }

    #[test]
    fn string_concat_is_null_if_either_side_is() {
        let b = batch(vec![(
            "s",
            Arc::new(StringArray::from(vec![Some("a"), None])) as ArrayRef,
        )]);
        let out = eval(&col("s").binary(Operator::StringConcat, lit(1i64)), &b);
        assert_eq!(strings(&out), ["a1", "NULL"]);
    }

    #[test]
    fn between_and_not_between() {
        let b = lineitem();
        let e = col("l_quantity").between(lit(1i64), lit(3i64));
        assert_eq!(eval_bools(&e, &b), vec![Some(true), Some(false), None]);
        let e = Expr::Between {
            expr: Box::new(col("l_discount")),
            negated: true,
            low: Box::new(lit(ScalarValue::Decimal128(Some(5), 3, 2))),
            high: Box::new(lit(ScalarValue::Decimal128(Some(7), 3, 2))),
        };
        assert_eq!(
            eval_bools(&e, &b),
            vec![Some(false), Some(true), Some(true)]
        );
    }

    #[test]
    fn constant_subtrees_are_folded() {
        let schema = ember_planner::schema::PlanSchema::empty();
        let e = lit(ScalarValue::Date32(Some(10000))).sub(lit(ScalarValue::IntervalMonthDayNano(
            Some(IntervalMonthDayNano::new(0, 90, 0)),
        )));
        let p = crate::expr::create_physical_expr(&e, &schema, &Default::default()).unwrap();
        assert_eq!(p.as_literal(), Some(&ScalarValue::Date32(Some(9910))));
    }
}
