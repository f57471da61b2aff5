//! `CASE [operand] WHEN .. THEN .. [ELSE ..] END`.
//!
//! Branches are evaluated lazily, as SQL promises: each WHEN only over rows no earlier WHEN
//! took, each THEN only over the rows its WHEN took, so `CASE WHEN x <> 0 THEN 1 / x END`
//! style guards also protect failing casts. When a branch covers every remaining row it runs
//! on the whole batch (no filtering); constant THEN/ELSE values go to `zip` as scalars.
//! Results are merged with `zip`.

use std::sync::Arc;

use arrow::array::{new_null_array, Array, ArrayRef, AsArray, BooleanArray, UInt32Array};
use arrow::compute::kernels::{boolean, cmp, zip::zip};
use arrow::compute::{filter_record_batch, prep_null_mask_filter, take};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;

use ember_planner::types::common_type;
use ember_planner::{plan_err, Result};

use super::cast::coerce;
use super::datum::Operand;
use super::{PhysicalExpr, PhysicalExprRef};

pub(crate) fn build(
    operand: Option<PhysicalExprRef>,
    when_then: Vec<(PhysicalExprRef, PhysicalExprRef)>,
    else_expr: Option<PhysicalExprRef>,
) -> Result<PhysicalExprRef> {
    // The result type: the common type of every THEN and the ELSE (as Expr::data_type).
    let mut t = DataType::Null;
    for e in when_then.iter().map(|(_, t)| t).chain(else_expr.iter()) {
        t = match common_type(&t, e.data_type()) {
            Some(t) => t,
            None => return plan_err!("CASE branches mix {t} and {}", e.data_type()),
        };
    }
    // With an operand, WHEN values are compared with it in their common type.
    let (operand, when_type) = match operand {
        Some(o) => {
            let mut wt = o.data_type().clone();
            for (w, _) in &when_then {
                wt = match common_type(&wt, w.data_type()) {
                    Some(t) => t,
                    None => {
                        return plan_err!(
                            "CASE operand of type {} cannot be compared with WHEN {}",
                            o.data_type(),
                            w.data_type()
                        )
                    }
                };
            }
            (Some(coerce(o, &wt)?), wt)
        }
        None => (None, DataType::Boolean),
    };
    let branches = when_then
        .into_iter()
        .map(|(w, then)| {
            let w = coerce(w, &when_type)?;
            Ok(Branch {
                when: if operand.is_some() {
                    Operand::new(w)?
                } else {
                    Operand::array_only(w)
                },
                then: Operand::new(coerce(then, &t)?)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let else_expr = else_expr
        .map(|e| Operand::new(coerce(e, &t)?))
        .transpose()?;
    Ok(Arc::new(CaseExpr {
        operand,
        branches,
        else_expr,
        data_type: t,
    }))
}

#[derive(Debug)]
struct Branch {
    when: Operand,
    then: Operand,
}

#[derive(Debug)]
struct CaseExpr {
    operand: Option<PhysicalExprRef>,
    branches: Vec<Branch>,
    else_expr: Option<Operand>,
    data_type: DataType,
}

/// A WHEN that is NULL does not match.
fn nulls_as_false(b: &BooleanArray) -> BooleanArray {
    if b.null_count() > 0 {
        prep_null_mask_filter(b)
    } else {
        b.clone()
    }
}

/// Evaluates `operand` over the rows of `batch` selected by `mask` (a mask without nulls),
/// returning a batch-length array: the values at selected rows, NULL elsewhere.
fn evaluate_selected(
    operand: &Operand,
    batch: &RecordBatch,
    mask: &BooleanArray,
) -> Result<ArrayRef> {
    if mask.true_count() == mask.len() {
        return operand.evaluate_array(batch);
    }
    let selected = filter_record_batch(batch, mask)?;
    let values = operand.evaluate_array(&selected)?;
    scatter(&values, mask)
}

/// Spreads `values` (one per selected row) back to the positions of `mask`'s true bits.
fn scatter(values: &ArrayRef, mask: &BooleanArray) -> Result<ArrayRef> {
    let mut next = 0u32;
    let indices: UInt32Array = mask
        .values()
        .iter()
        .map(|selected| {
            selected.then(|| {
                next += 1;
                next - 1
            })
        })
        .collect();
    Ok(take(values.as_ref(), &indices, None)?)
}

impl PhysicalExpr for CaseExpr {
    fn data_type(&self) -> &DataType {
        &self.data_type
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        let rows = batch.num_rows();
        if self.data_type == DataType::Null {
            return Ok(new_null_array(&DataType::Null, rows));
        }
        let operand = self
            .operand
            .as_ref()
            .map(|o| o.evaluate(batch))
            .transpose()?;
        let mut result = new_null_array(&self.data_type, rows);
        // Rows no WHEN has taken yet (never null).
        let mut remaining = BooleanArray::from(vec![true; rows]);
        for branch in &self.branches {
            if remaining.true_count() == 0 {
                break;
            }
            let matched = match &operand {
                // Comparisons cannot fail, so they run over the whole batch.
                Some(o) => {
                    let w = branch.when.evaluate(batch)?;
                    cmp::eq(o, w.datum())?
                }
                None => {
                    let w = evaluate_selected(&branch.when, batch, &remaining)?;
                    w.as_boolean().clone()
                }
            };
            let matched = boolean::and(&nulls_as_false(&matched), &remaining)?;
            if matched.true_count() == 0 {
                continue;
            }
            result = match &branch.then {
                Operand::Scalar { scalar, .. } => zip(&matched, scalar, &result)?,
                then => zip(
                    &matched,
                    &evaluate_selected(then, batch, &matched)?,
                    &result,
                )?,
            };
            remaining = boolean::and_not(&remaining, &matched)?;
        }
        if let Some(else_expr) = &self.else_expr {
            if remaining.true_count() > 0 {
                result = match else_expr {
                    Operand::Scalar { scalar, .. } => zip(&remaining, scalar, &result)?,
                    e => zip(
                        &remaining,
                        &evaluate_selected(e, batch, &remaining)?,
                        &result,
                    )?,
                };
            }
        }
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Decimal128Array, Int64Array, StringArray};
    use datafusion_common::ScalarValue;
    use ember_planner::expr::{col, lit, Expr};

    use super::*;
    use crate::expr::test_util::{batch, eval, strings};

    fn b() -> RecordBatch {
        batch(vec![
            (
                "nation",
                Arc::new(StringArray::from(vec![
                    Some("BRAZIL"),
                    Some("PERU"),
                    None,
                    Some("BRAZIL"),
                ])) as ArrayRef,
            ),
            (
                "volume",
                Arc::new(
                    Decimal128Array::from(vec![Some(1050), Some(200), Some(300), None])
                        .with_precision_and_scale(38, 4)
                        .unwrap(),
                ) as ArrayRef,
            ),
            (
                "s",
                Arc::new(StringArray::from(vec!["1", "x", "3", "4"])) as ArrayRef,
            ),
        ])
    }

    #[test]
    fn searched_case_with_int_else_takes_decimal_type() {
        // q08: case when nation = 'BRAZIL' then volume else 0 end
        let e = Expr::Case {
            operand: None,
            when_then: vec![(col("nation").eq(lit("BRAZIL")), col("volume"))],
            else_expr: Some(Box::new(lit(0i64))),
        };
        let out = eval(&e, &b());
        assert_eq!(out.data_type(), &DataType::Decimal128(38, 4));
        assert_eq!(strings(&out), ["0.1050", "0.0000", "0.0000", "NULL"]);
    }

    #[test]
    fn simple_case_without_else_is_null_when_nothing_matches() {
        let e = Expr::Case {
            operand: Some(Box::new(col("nation"))),
            when_then: vec![(lit("PERU"), lit(1i64)), (lit("BRAZIL"), lit(2i64))],
            else_expr: None,
        };
        assert_eq!(strings(&eval(&e, &b())), ["2", "1", "NULL", "2"]);
    }

    #[test]
    fn first_matching_branch_wins() {
        let e = Expr::Case {
            operand: None,
            when_then: vec![
                (
                    col("volume").gt(lit(ScalarValue::Decimal128(Some(100), 3, 2))),
                    lit("big"),
                ),
                (col("volume").gt(lit(0i64)), lit("small")),
            ],
            else_expr: Some(Box::new(lit("none"))),
        };
        assert_eq!(
            strings(&eval(&e, &b())),
            ["small", "small", "small", "none"]
        );
    }

    #[test]
    fn branches_only_see_their_rows() {
        // The cast would fail on 'x', but that row never reaches the THEN.
        let e = Expr::Case {
            operand: None,
            when_then: vec![(col("s").not_eq(lit("x")), col("s").cast_to(DataType::Int64))],
            else_expr: Some(Box::new(lit(-1i64))),
        };
        let out = eval(&e, &b());
        assert_eq!(
            out.as_any().downcast_ref::<Int64Array>().unwrap().values(),
            &[1, -1, 3, 4]
        );
    }
}
