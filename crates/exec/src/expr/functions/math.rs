//! Numeric functions. `abs`, `round`, `floor` and `ceil` keep their argument's type (a
//! decimal stays a decimal with the same scale, so money stays exact); `power` and `sqrt`
//! compute in Float64. Rounding is half away from zero, like Spark and PostgreSQL.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, PrimitiveArray};
use arrow::compute::{binary, unary};
use arrow::datatypes::{DataType, Decimal128Type, Float64Type, Int64Type};
use datafusion_common::ScalarValue;

use ember_planner::expr::BuiltinFunction;
use ember_planner::{internal_err, plan_err, EmberError, Result};

use super::{check_arity, constant_arg, FunctionExpr};
use crate::expr::binary::null_of;
use crate::expr::cast::{cast_array, coerce};
use crate::expr::decimal::div_round_i128;
use crate::expr::PhysicalExprRef;

/// What a type-preserving numeric function does.
#[derive(Debug, Clone, Copy)]
enum MathOp {
    Abs,
    /// Round to this many fractional digits (negative: to tens, hundreds, ...).
    Round(i64),
    Floor,
    Ceil,
}

pub(super) fn build(func: BuiltinFunction, args: Vec<PhysicalExprRef>) -> Result<PhysicalExprRef> {
    use BuiltinFunction::*;
    match func {
        Power | Sqrt => {
            let n = if func == Power { 2 } else { 1 };
            check_arity(func, &args, n, n)?;
            let args = args
                .into_iter()
                .map(|a| coerce(a, &DataType::Float64))
                .collect::<Result<Vec<_>>>()?;
            Ok(FunctionExpr::new_ref(
                func,
                args,
                DataType::Float64,
                Box::new(move |a| {
                    let x = a[0].as_primitive::<Float64Type>();
                    Ok(Arc::new(if func == Power {
                        binary(x, a[1].as_primitive::<Float64Type>(), f64::powf)?
                    } else {
                        unary::<_, _, Float64Type>(x, f64::sqrt)
                    }))
                }),
            ))
        }
        Abs | Floor | Ceil | Round => {
            let max = if func == Round { 2 } else { 1 };
            check_arity(func, &args, 1, max)?;
            let t = args[0].data_type().clone();
            if t == DataType::Null {
                return Ok(args[0].clone());
            }
            if !t.is_numeric() {
                return plan_err!("{}() expects a number, got {t}", func.name());
            }
            let op = match func {
                Abs => MathOp::Abs,
                Floor => MathOp::Floor,
                Ceil => MathOp::Ceil,
                _ => match args.get(1) {
                    None => MathOp::Round(0),
                    Some(d) => {
                        let d = coerce(d.clone(), &DataType::Int64)?;
                        match constant_arg(func, &d, "the number of digits")? {
                            ScalarValue::Int64(Some(d)) => MathOp::Round(*d),
                            _ => return null_of(&t),
                        }
                    }
                },
            };
            Ok(FunctionExpr::new_ref(
                func,
                vec![args[0].clone()],
                t,
                Box::new(move |a| apply(op, &a[0])),
            ))
        }
        other => internal_err!("{}() is not a numeric function", other.name()),
    }
}

fn overflow(op: MathOp) -> EmberError {
    EmberError::Data(format!("numeric overflow in {op:?}"))
}

/// Applies `op` keeping the array's type.
fn apply(op: MathOp, a: &ArrayRef) -> Result<ArrayRef> {
    let t = a.data_type().clone();
    match &t {
        DataType::Decimal128(p, s) => {
            let (p, s) = (*p, *s);
            let out: PrimitiveArray<Decimal128Type> = a
                .as_primitive::<Decimal128Type>()
                .try_unary(|v| decimal(op, v, s).ok_or_else(|| overflow(op)))?;
            Ok(Arc::new(out.with_precision_and_scale(p, s)?))
        }
        DataType::Float64 | DataType::Float32 => {
            let x = cast_array(a, &DataType::Float64)?;
            let out = unary::<_, _, Float64Type>(x.as_primitive::<Float64Type>(), |v| float(op, v));
            cast_array(&(Arc::new(out) as ArrayRef), &t)
        }
        t if t.is_unsigned_integer() && !matches!(op, MathOp::Round(d) if d < 0) => Ok(a.clone()),
        t if t.is_integer() => {
            let x = cast_array(a, &DataType::Int64)?;
            let out: PrimitiveArray<Int64Type> = x
                .as_primitive::<Int64Type>()
                .try_unary(|v| integer(op, v).ok_or_else(|| overflow(op)))?;
            cast_array(&(Arc::new(out) as ArrayRef), t)
        }
        other => internal_err!("{op:?} on {other}"),
    }
}

fn float(op: MathOp, v: f64) -> f64 {
    match op {
        MathOp::Abs => v.abs(),
        MathOp::Floor => v.floor(),
        MathOp::Ceil => v.ceil(),
        MathOp::Round(0) => v.round(),
        // Beyond ~17 digits an f64 has nothing left to round.
        MathOp::Round(d) if d > 17 => v,
        MathOp::Round(d) => {
            let f = 10f64.powi(d.max(-308) as i32);
            (v * f).round() / f
        }
    }
}

fn integer(op: MathOp, v: i64) -> Option<i64> {
    match op {
        MathOp::Abs => v.checked_abs(),
        MathOp::Floor | MathOp::Ceil => Some(v),
        MathOp::Round(d) if d >= 0 => Some(v),
        MathOp::Round(d) => {
            let Some(f) = u32::try_from(-d).ok().and_then(|e| 10i64.checked_pow(e)) else {
                return Some(0);
            };
            let q = div_round_i128(i128::from(v), i128::from(f))?;
            i64::try_from(q * i128::from(f)).ok()
        }
    }
}

/// `op` on an unscaled decimal value with `scale` fractional digits.
fn decimal(op: MathOp, v: i128, scale: i8) -> Option<i128> {
    // The unit that results are multiples of: 10^(scale - digits kept).
    let digits_dropped = match op {
        MathOp::Abs => return v.checked_abs(),
        MathOp::Floor | MathOp::Ceil => i64::from(scale),
        MathOp::Round(d) => i64::from(scale) - d,
    };
    if digits_dropped <= 0 {
        return Some(v);
    }
    let Some(unit) = u32::try_from(digits_dropped)
        .ok()
        .and_then(|e| 10i128.checked_pow(e))
    else {
        return Some(0);
    };
    let q = match op {
        MathOp::Floor => v.div_euclid(unit),
        MathOp::Ceil => {
            let q = v.div_euclid(unit);
            if v.rem_euclid(unit) == 0 {
                q
            } else {
                q.checked_add(1)?
            }
        }
        _ => div_round_i128(v, unit)?,
    };
    q.checked_mul(unit)
}

#[cfg(test)]
mod tests {
    use arrow::array::{Decimal128Array, Float64Array, Int32Array};
    use arrow::record_batch::RecordBatch;
    use ember_planner::expr::{col, func, lit, BuiltinFunction as F};

    use super::*;
    use crate::expr::test_util::{batch, eval, eval_err, strings};

    fn b() -> RecordBatch {
        batch(vec![
            (
                "d",
                Arc::new(
                    Decimal128Array::from(vec![Some(12345), Some(-12355), None, Some(-5)])
                        .with_precision_and_scale(15, 2)
                        .unwrap(),
                ) as ArrayRef,
            ),
            (
                "f",
                Arc::new(Float64Array::from(vec![
                    Some(2.5),
                    Some(-2.5),
                    None,
                    Some(1.2345),
                ])) as ArrayRef,
            ),
            (
                "i",
                Arc::new(Int32Array::from(vec![
                    Some(-7),
                    Some(155),
                    None,
                    Some(i32::MIN),
                ])) as ArrayRef,
            ),
        ])
    }

    #[test]
    fn round_keeps_decimal_type_and_rounds_half_away_from_zero() {
        let out = eval(&func(F::Round, vec![col("d"), lit(1i64)]), &b());
        assert_eq!(out.data_type(), &DataType::Decimal128(15, 2));
        assert_eq!(strings(&out), ["123.50", "-123.60", "NULL", "-0.10"]);
        let out = eval(&func(F::Round, vec![col("d")]), &b());
        assert_eq!(strings(&out), ["123.00", "-124.00", "NULL", "0.00"]);
        let out = eval(&func(F::Round, vec![col("d"), lit(-1i64)]), &b());
        assert_eq!(strings(&out), ["120.00", "-120.00", "NULL", "0.00"]);
        let out = eval(&func(F::Round, vec![col("f")]), &b());
        assert_eq!(strings(&out), ["3.0", "-3.0", "NULL", "1.0"]);
        let out = eval(&func(F::Round, vec![col("f"), lit(2i64)]), &b());
        assert_eq!(strings(&out)[3], "1.23");
        let out = eval(&func(F::Round, vec![lit(-7i64), lit(-1i64)]), &b());
        assert_eq!(strings(&out)[0], "-10");
        let out = eval(&func(F::Round, vec![lit(155i64), lit(-1i64)]), &b());
        assert_eq!(strings(&out)[0], "160");
        // round(i32::MIN, -1) rounds away from zero, out of Int32's range.
        let err = eval_err(&func(F::Round, vec![col("i"), lit(-1i64)]), &b());
        assert!(err.contains("Int32"), "{err}");
    }

    #[test]
    fn floor_ceil_abs() {
        let out = eval(&func(F::Floor, vec![col("d")]), &b());
        assert_eq!(strings(&out), ["123.00", "-124.00", "NULL", "-1.00"]);
        let out = eval(&func(F::Ceil, vec![col("d")]), &b());
        assert_eq!(strings(&out), ["124.00", "-123.00", "NULL", "0.00"]);
        let out = eval(&func(F::Abs, vec![col("d")]), &b());
        assert_eq!(strings(&out), ["123.45", "123.55", "NULL", "0.05"]);
        let out = eval(&func(F::Ceil, vec![col("f")]), &b());
        assert_eq!(strings(&out)[..2], ["3.0", "-2.0"]);
        // abs(i32::MIN) does not fit an Int32.
        let err = eval_err(&func(F::Abs, vec![col("i")]), &b());
        assert!(err.contains("Int32"), "{err}");
    }

    #[test]
    fn power_and_sqrt_are_float() {
        let out = eval(&func(F::Power, vec![col("i"), lit(2i64)]), &b());
        assert_eq!(strings(&out)[..2], ["49.0", "24025.0"]);
        let out = eval(&func(F::Sqrt, vec![lit(16i64)]), &b());
        assert_eq!(strings(&out)[0], "4.0");
    }

    #[test]
    fn round_digits_must_be_constant() {
        let err = eval_err(&func(F::Round, vec![col("d"), col("i")]), &b());
        assert!(err.contains("must be a constant"), "{err}");
    }
}
