//! `coalesce`, `nullif`, and the value of a scalar subquery.

use std::sync::Arc;

use arrow::array::{new_null_array, Array, ArrayRef, AsArray};
use arrow::compute::kernels::{boolean::is_not_null, cmp, zip::zip};
use arrow::datatypes::{DataType, Int64Type};
use arrow::record_batch::RecordBatch;

use ember_planner::expr::BuiltinFunction;
use ember_planner::types::common_type;
use ember_planner::{internal_err, plan_err, EmberError, Result};

use super::check_arity;
use crate::expr::cast::{cast_array, coerce};
use crate::expr::datum::Operand;
use crate::expr::{PhysicalExpr, PhysicalExprRef};

pub(super) fn build(func: BuiltinFunction, args: Vec<PhysicalExprRef>) -> Result<PhysicalExprRef> {
    match func {
        BuiltinFunction::Coalesce => {
            check_arity(func, &args, 1, usize::MAX)?;
            let mut t = DataType::Null;
            for a in &args {
                t = match common_type(&t, a.data_type()) {
                    Some(t) => t,
                    None => return plan_err!("coalesce() mixes {t} and {}", a.data_type()),
                };
            }
            let args = args
                .into_iter()
                .map(|a| Operand::new(coerce(a, &t)?))
                .collect::<Result<Vec<_>>>()?;
            Ok(Arc::new(CoalesceExpr { args, data_type: t }))
        }
        BuiltinFunction::NullIf => {
            check_arity(func, &args, 2, 2)?;
            let (a, b) = (args[0].clone(), args[1].clone());
            if *a.data_type() == DataType::Null {
                return Ok(a);
            }
            let Some(compare_as) = common_type(a.data_type(), b.data_type()) else {
                return plan_err!(
                    "nullif() cannot compare {} with {}",
                    a.data_type(),
                    b.data_type()
                );
            };
            Ok(Arc::new(NullIfExpr {
                a,
                b: Operand::new(coerce(b, &compare_as)?)?,
                compare_as,
            }))
        }
        BuiltinFunction::ScalarSubqueryValue => {
            check_arity(func, &args, 2, 2)?;
            if *args[0].data_type() != DataType::Int64 {
                return internal_err!(
                    "scalar_subquery_value() counts rows as Int64, got {}",
                    args[0].data_type()
                );
            }
            Ok(Arc::new(ScalarSubqueryValueExpr {
                rows: args[0].clone(),
                value: args[1].clone(),
            }))
        }
        other => internal_err!("{}() is not a conditional function", other.name()),
    }
}

/// The first non-NULL argument. Later arguments are only evaluated while some row is
/// still NULL.
#[derive(Debug)]
struct CoalesceExpr {
    args: Vec<Operand>,
    data_type: DataType,
}

impl PhysicalExpr for CoalesceExpr {
    fn data_type(&self) -> &DataType {
        &self.data_type
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        if self.data_type == DataType::Null {
            return Ok(new_null_array(&DataType::Null, batch.num_rows()));
        }
        let mut args = self.args.iter();
        let Some(first) = args.next() else {
            return internal_err!("coalesce() without arguments");
        };
        let mut result = first.evaluate_array(batch)?;
        for arg in args {
            if result.null_count() == 0 {
                break;
            }
            let next = arg.evaluate(batch)?;
            result = zip(&is_not_null(&result)?, &result, next.datum())?;
        }
        Ok(result)
    }
}

/// `nullif(a, b)`: `a`, or NULL where `a = b`.
#[derive(Debug)]
struct NullIfExpr {
    a: PhysicalExprRef,
    b: Operand,
    compare_as: DataType,
}

impl PhysicalExpr for NullIfExpr {
    fn data_type(&self) -> &DataType {
        self.a.data_type()
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        let a = self.a.evaluate(batch)?;
        let a_cmp = cast_array(&a, &self.compare_as)?;
        let b = self.b.evaluate(batch)?;
        let equal = cmp::eq(&a_cmp, b.datum())?;
        Ok(arrow::compute::nullif(&a, &equal)?)
    }
}

/// The value of an uncorrelated scalar subquery from its one aggregated row: the row count
/// and the value (NULL when there were no rows). SQL allows at most one row; more is an
/// error, never a silently chosen value or a repeated outer row.
#[derive(Debug)]
struct ScalarSubqueryValueExpr {
    rows: PhysicalExprRef,
    value: PhysicalExprRef,
}

impl PhysicalExpr for ScalarSubqueryValueExpr {
    fn data_type(&self) -> &DataType {
        self.value.data_type()
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        let rows = self.rows.evaluate(batch)?;
        let rows = rows.as_primitive_opt::<Int64Type>().ok_or_else(|| {
            EmberError::Internal("scalar_subquery_value() row count is not Int64".into())
        })?;
        if let Some(n) = rows.iter().flatten().find(|n| *n > 1) {
            return Err(EmberError::Data(format!(
                "a scalar subquery returned {n} rows: a subquery used as a value must return \
                 at most one row (add a WHERE, an aggregate or LIMIT 1)"
            )));
        }
        self.value.evaluate(batch)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, StringArray};
    use datafusion_common::ScalarValue;
    use ember_planner::expr::{col, func, lit, BuiltinFunction as F};

    use super::*;
    use crate::expr::test_util::{batch, eval, strings};

    fn b() -> RecordBatch {
        batch(vec![
            (
                "x",
                Arc::new(Int64Array::from(vec![Some(1), None, None])) as ArrayRef,
            ),
            (
                "y",
                Arc::new(Int64Array::from(vec![Some(9), Some(2), None])) as ArrayRef,
            ),
            (
                "s",
                Arc::new(StringArray::from(vec![Some("a"), Some(""), None])) as ArrayRef,
            ),
        ])
    }

    #[test]
    fn coalesce_takes_first_non_null() {
        let e = func(F::Coalesce, vec![col("x"), col("y"), lit(0i64)]);
        assert_eq!(strings(&eval(&e, &b())), ["1", "2", "0"]);
        let e = func(F::Coalesce, vec![col("x"), lit(ScalarValue::Null)]);
        assert_eq!(strings(&eval(&e, &b())), ["1", "NULL", "NULL"]);
    }

    #[test]
    fn nullif_blanks_equal_values() {
        let e = func(F::NullIf, vec![col("s"), lit("")]);
        assert_eq!(strings(&eval(&e, &b())), ["a", "NULL", "NULL"]);
        let e = func(F::NullIf, vec![col("y"), lit(2i64)]);
        assert_eq!(strings(&eval(&e, &b())), ["9", "NULL", "NULL"]);
    }
}
