//! One-input operators: `NOT`, unary minus, `IS [NOT] NULL`.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray};
use arrow::compute::kernels::{boolean, numeric};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;

use ember_planner::{plan_err, Result};

use super::cast::coerce;
use super::{PhysicalExpr, PhysicalExprRef};

/// `NOT x` (Kleene: `NOT NULL` is NULL).
pub(crate) fn not(expr: PhysicalExprRef) -> Result<PhysicalExprRef> {
    let expr = coerce(expr, &DataType::Boolean)?;
    Ok(Arc::new(NotExpr { expr }))
}

#[derive(Debug)]
struct NotExpr {
    expr: PhysicalExprRef,
}

impl PhysicalExpr for NotExpr {
    fn data_type(&self) -> &DataType {
        &DataType::Boolean
    }
    fn evaluate(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        let v = self.expr.evaluate(batch)?;
        Ok(Arc::new(boolean::not(v.as_boolean())?))
    }
}

/// `- x` for numbers, intervals and durations (overflow is an error, not a wrap).
pub(crate) fn negative(expr: PhysicalExprRef) -> Result<PhysicalExprRef> {
    let t = expr.data_type();
    if *t == DataType::Null {
        return Ok(expr);
    }
    if !(t.is_numeric() || matches!(t, DataType::Interval(_) | DataType::Duration(_))) {
        return plan_err!("cannot negate {t}");
    }
    Ok(Arc::new(NegativeExpr { expr }))
}

#[derive(Debug)]
struct NegativeExpr {
    expr: PhysicalExprRef,
}

impl PhysicalExpr for NegativeExpr {
    fn data_type(&self) -> &DataType {
        self.expr.data_type()
    }
    fn evaluate(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        Ok(numeric::neg(&self.expr.evaluate(batch)?)?)
    }
}

/// `x IS NULL` (or `IS NOT NULL` when `negated`): never NULL itself.
pub(crate) fn is_null(expr: PhysicalExprRef, negated: bool) -> PhysicalExprRef {
    Arc::new(IsNullExpr { expr, negated })
}

#[derive(Debug)]
struct IsNullExpr {
    expr: PhysicalExprRef,
    negated: bool,
}

impl PhysicalExpr for IsNullExpr {
    fn data_type(&self) -> &DataType {
        &DataType::Boolean
    }
    fn evaluate(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        let v = self.expr.evaluate(batch)?;
        Ok(Arc::new(if self.negated {
            boolean::is_not_null(&v)?
        } else {
            boolean::is_null(&v)?
        }))
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{BooleanArray, Decimal128Array, Int64Array};
    use datafusion_common::ScalarValue;
    use ember_planner::expr::{col, lit, Expr};

    use super::*;
    use crate::expr::test_util::{batch, eval, eval_bools, strings};

    fn b() -> RecordBatch {
        batch(vec![
            (
                "flag",
                Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])) as ArrayRef,
            ),
            (
                "n",
                Arc::new(Int64Array::from(vec![Some(1), None, Some(-3)])) as ArrayRef,
            ),
            (
                "d",
                Arc::new(
                    Decimal128Array::from(vec![Some(150), Some(-2), None])
                        .with_precision_and_scale(15, 2)
                        .unwrap(),
                ) as ArrayRef,
            ),
        ])
    }

    #[test]
    fn not_keeps_null() {
        assert_eq!(
            eval_bools(&col("flag").not(), &b()),
            vec![Some(false), Some(true), None]
        );
    }

    #[test]
    fn negative_of_integers_and_decimals() {
        let out = eval(&Expr::Negative(Box::new(col("n"))), &b());
        assert_eq!(strings(&out), ["-1", "NULL", "3"]);
        let out = eval(&Expr::Negative(Box::new(col("d"))), &b());
        assert_eq!(strings(&out), ["-1.50", "0.02", "NULL"]);
        let out = eval(&Expr::Negative(Box::new(lit(ScalarValue::Null))), &b());
        assert_eq!(out.logical_null_count(), 3);
    }

    #[test]
    fn negating_a_string_is_a_plan_error() {
        let schema = ember_planner::schema::PlanSchema::empty();
        let err = crate::expr::create_physical_expr(
            &Expr::Negative(Box::new(lit("x"))),
            &schema,
            &Default::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("negate"), "{err}");
    }

    #[test]
    fn is_null_is_never_null() {
        assert_eq!(
            eval_bools(&col("n").is_null(), &b()),
            vec![Some(false), Some(true), Some(false)]
        );
        assert_eq!(
            eval_bools(&col("flag").is_not_null(), &b()),
            vec![Some(true), Some(true), Some(false)]
        );
    }
}
