//! `CAST(x AS t)` and the implicit casts the type rules insert.
//!
//! Casts are strict: a value that does not convert (`CAST('abc' AS INT)`, a decimal too
//! wide for its target) is an execution error naming the value, never a silent NULL.
//! Casting a constant happens once at compile time.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef};
use arrow::compute::{cast_with_options, CastOptions};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use arrow::util::display::FormatOptions;
use datafusion_common::ScalarValue;

use ember_planner::{plan_err, EmberError, Result};

use super::{LiteralExpr, PhysicalExpr, PhysicalExprRef};

const STRICT: CastOptions<'static> = CastOptions {
    safe: false,
    format_options: FormatOptions::new(),
};

/// Casts `array` to `to`, failing (with the offending value in the message) when a value
/// does not convert.
pub fn cast_array(array: &ArrayRef, to: &DataType) -> Result<ArrayRef> {
    if array.data_type() == to {
        return Ok(array.clone());
    }
    cast_with_options(array, to, &STRICT)
        .map_err(|e| EmberError::Data(format!("cannot cast {} to {to}: {e}", array.data_type())))
}

/// Casts a constant.
pub(crate) fn cast_scalar(value: &ScalarValue, to: &DataType) -> Result<ScalarValue> {
    if &value.data_type() == to {
        return Ok(value.clone());
    }
    let array = cast_array(&value.to_array_of_size(1)?, to)?;
    Ok(ScalarValue::try_from_array(&array, 0)?)
}

/// The type to compare `value` with constants `others` in: `value`'s own type when every
/// constant converts to it exactly and both sides are numbers, else `common`.
///
/// `p_size = 15` (Int32 column, Int64 literal) or `l_quantity < 24` (Decimal(15, 2)
/// column) would otherwise cast the whole column to the wider common type on every batch;
/// converting the constant once gives the same answers because the conversion is exact.
pub(crate) fn comparison_type(
    value: &PhysicalExprRef,
    others: &[&PhysicalExprRef],
    common: DataType,
) -> DataType {
    let t = value.data_type();
    if value.as_literal().is_some() || !t.is_numeric() || *t == common {
        return common;
    }
    let exact = |e: &&PhysicalExprRef| {
        e.as_literal().is_some_and(|v| {
            v.data_type().is_numeric()
                && cast_scalar(v, t)
                    .and_then(|c| cast_scalar(&c, &v.data_type()))
                    .is_ok_and(|back| &back == v)
        })
    };
    if others.iter().all(exact) {
        t.clone()
    } else {
        common
    }
}

/// Wraps `expr` in a cast to `to` unless it already has that type; constants are cast now.
pub(crate) fn coerce(expr: PhysicalExprRef, to: &DataType) -> Result<PhysicalExprRef> {
    if expr.data_type() == to {
        return Ok(expr);
    }
    if !arrow::compute::can_cast_types(expr.data_type(), to) {
        return plan_err!("cannot cast {} to {to}", expr.data_type());
    }
    if let Some(value) = expr.as_literal() {
        // A constant that does not convert fails when (and if) a row evaluates it.
        if let Ok(v) = cast_scalar(value, to) {
            return Ok(Arc::new(LiteralExpr::new(v)));
        }
    }
    Ok(Arc::new(CastExpr {
        expr,
        to: to.clone(),
    }))
}

/// An explicit `CAST`.
pub(crate) fn build(expr: PhysicalExprRef, to: &DataType) -> Result<PhysicalExprRef> {
    coerce(expr, to)
}

#[derive(Debug)]
pub(crate) struct CastExpr {
    expr: PhysicalExprRef,
    to: DataType,
}

impl PhysicalExpr for CastExpr {
    fn data_type(&self) -> &DataType {
        &self.to
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        cast_array(&self.expr.evaluate(batch)?, &self.to)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Date32Array, Decimal128Array, Int32Array, StringArray};
    use arrow::datatypes::DataType::*;
    use ember_planner::expr::{col, lit};

    use super::*;
    use crate::expr::test_util::{batch, eval, eval_err};

    #[test]
    fn string_to_date_parses_iso_dates() {
        let b = batch(vec![(
            "s",
            Arc::new(StringArray::from(vec![Some("1995-03-15"), None])) as ArrayRef,
        )]);
        let out = eval(&col("s").cast_to(Date32), &b);
        let dates = out.as_any().downcast_ref::<Date32Array>().unwrap();
        assert_eq!(dates.value(0), 9204);
        assert!(dates.is_null(1));
    }

    #[test]
    fn failed_cast_is_an_error_naming_the_value() {
        let b = batch(vec![(
            "s",
            Arc::new(StringArray::from(vec!["12", "abc"])) as ArrayRef,
        )]);
        let err = eval_err(&col("s").cast_to(Int32), &b);
        assert!(err.contains("abc"), "{err}");
        let err = eval_err(&col("s").cast_to(Date32), &b);
        assert!(err.contains("12"), "{err}");
    }

    #[test]
    fn integers_cast_to_decimal_and_back() {
        let b = batch(vec![(
            "i",
            Arc::new(Int32Array::from(vec![Some(7), None])) as ArrayRef,
        )]);
        let out = eval(&col("i").cast_to(Decimal128(10, 2)), &b);
        let d = out.as_any().downcast_ref::<Decimal128Array>().unwrap();
        assert_eq!(d.value(0), 700);
        assert!(d.is_null(1));
        let out = eval(&lit(12.75).cast_to(Decimal128(5, 1)), &b);
        let d = out.as_any().downcast_ref::<Decimal128Array>().unwrap();
        assert_eq!(d.value(0), 128, "rounds half away from zero");
    }
}
