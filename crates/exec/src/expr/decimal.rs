//! Decimal128 arithmetic with Spark's result types (`ember_planner::types`).
//!
//! Arrow's kernels already produce the exact types for `+`, `-` and `*` whenever the result
//! scale is not reduced, so those go to Arrow and only get their precision relabelled.
//! Division and remainder differ from Arrow (result scale, rounding, division by zero is
//! NULL rather than an error), and a multiplication whose scale Spark reduces would overflow
//! Arrow's i128 product, so those run here with a 256-bit intermediate where needed.
//! Rounding is half away from zero, as Spark's `ROUND_HALF_UP`.

use std::sync::Arc;

use arrow::array::builder::NullBufferBuilder;
use arrow::array::{Array, ArrayRef, AsArray, Datum, PrimitiveArray};
use arrow::compute::kernels::numeric;
use arrow::datatypes::{i256, DataType, Decimal128Type};

use ember_planner::expr::Operator;
use ember_planner::{internal_err, EmberError, Result};

use super::cast::cast_array;

/// `l op r` for two Decimal128 operands, returning `Decimal128(precision, scale)`.
pub(crate) fn arithmetic(
    op: Operator,
    l: &dyn Datum,
    r: &dyn Datum,
    precision: u8,
    scale: i8,
) -> Result<ArrayRef> {
    let (s1, s2) = match (l.get().0.data_type(), r.get().0.data_type()) {
        (DataType::Decimal128(_, s1), DataType::Decimal128(_, s2)) => (*s1, *s2),
        (a, b) => return internal_err!("decimal arithmetic on {a} and {b}"),
    };
    let (s1, s2, s) = (i32::from(s1), i32::from(s2), i32::from(scale));
    if let Some(out) = without_overflow(op, l, r, s1, s2, s) {
        return Ok(Arc::new(out.with_precision_and_scale(precision, scale)?));
    }
    let out = match op {
        Operator::Plus => numeric::add(l, r)?,
        Operator::Minus => numeric::sub(l, r)?,
        Operator::Multiply if s1 + s2 == s => numeric::mul(l, r)?,
        // Our own kernels build their result at the planned type directly.
        Operator::Multiply => Arc::new(
            multiply_rescaled(l, r, s1 + s2 - s)?.with_precision_and_scale(precision, scale)?,
        ),
        Operator::Divide => {
            Arc::new(divide(l, r, s - s1 + s2)?.with_precision_and_scale(precision, scale)?)
        }
        Operator::Modulo => {
            Arc::new(remainder(l, r, s - s1, s - s2)?.with_precision_and_scale(precision, scale)?)
        }
        other => return internal_err!("'{other}' is not decimal arithmetic"),
    };
    with_type(out, precision, scale)
}

/// `l op r` at result scale `s` for `+`, `-` or `*` on operands whose values are too small
/// for the i128 result to overflow (checked on the values: one pass each), without a
/// per-value overflow check; `None` when it could overflow, when it would need a per-value
/// rescale (array operands of different scales, a reduced product scale), or when an
/// operand is a NULL scalar: Arrow's checked kernels then decide.
///
/// Arrow checks every i128 product and sum (a library call per value for products): in
/// TPC-H Q1 that was the largest cost of the query. Values of decimal columns are almost
/// always tiny next to i128's range, so the check can be made once per batch. A scalar
/// operand (`1 - l_discount`) is rescaled once, here.
fn without_overflow(
    op: Operator,
    l: &dyn Datum,
    r: &dyn Datum,
    s1: i32,
    s2: i32,
    s: i32,
) -> Option<PrimitiveArray<Decimal128Type>> {
    let ((la, ls), (ra, rs)) = (l.get(), r.get());
    let (la, ra) = (
        la.as_primitive_opt::<Decimal128Type>()?,
        ra.as_primitive_opt::<Decimal128Type>()?,
    );
    if (ls && la.is_null(0)) || (rs && ra.is_null(0)) {
        return None;
    }
    // Multipliers that bring each side to the result scale.
    let (lm, rm) = match op {
        Operator::Plus | Operator::Minus if s == s1.max(s2) => {
            (pow10_128(s - s1)?, pow10_128(s - s2)?)
        }
        Operator::Multiply if s == s1 + s2 => (1, 1),
        _ => return None,
    };
    let (a, b) = (scalar_at_scale(la, ls, lm)?, scalar_at_scale(ra, rs, rm)?);
    let bits = |array: &PrimitiveArray<Decimal128Type>, scalar: Option<i128>| match scalar {
        Some(v) => magnitude_bits([v]),
        None => magnitude_bits(array.values().iter().copied()),
    };
    let (lb, rb) = (bits(la, a), bits(ra, b));
    // |a| < 2^lb and |b| < 2^rb, so |a * b| < 2^(lb + rb) and |a ± b| < 2^(max + 1).
    let fits = match op {
        Operator::Multiply => lb + rb <= 127,
        _ => lb.max(rb) < 127,
    };
    if !fits {
        return None;
    }
    let f: fn(i128, i128) -> i128 = match op {
        Operator::Plus => |a, b| a.wrapping_add(b),
        Operator::Minus => |a, b| a.wrapping_sub(b),
        _ => |a, b| a.wrapping_mul(b),
    };
    match (a, b) {
        (Some(a), Some(b)) => Some(PrimitiveArray::from_value(f(a, b), 1)),
        (Some(a), None) => Some(ra.unary(|b| f(a, b))),
        (None, Some(b)) => Some(la.unary(|a| f(a, b))),
        (None, None) => arrow::compute::binary(la, ra, f).ok(),
    }
}

/// A scalar side's value rescaled by `m` (`Some(Some(v))`), or `Some(None)` for an array side,
/// which must already be at the result scale (`m == 1`): a per-value rescale is left to
/// Arrow's kernel (`None`), decided before any array is scanned.
fn scalar_at_scale(
    array: &PrimitiveArray<Decimal128Type>,
    scalar: bool,
    m: i128,
) -> Option<Option<i128>> {
    match (scalar, m) {
        (true, _) => array.value(0).checked_mul(m).map(Some),
        (false, 1) => Some(None),
        (false, _) => None,
    }
}

/// Bits of the largest magnitude among `values` (an array's NULL slots included: whatever
/// they hold is computed on too).
fn magnitude_bits(values: impl IntoIterator<Item = i128>) -> u32 {
    let largest = values
        .into_iter()
        .fold(0u128, |m, v| m.max(v.unsigned_abs()));
    u128::BITS - largest.leading_zeros()
}

/// Relabels (same scale) or rescales (different scale, rounding) a decimal array.
pub(crate) fn with_type(array: ArrayRef, precision: u8, scale: i8) -> Result<ArrayRef> {
    match array.data_type() {
        DataType::Decimal128(p, s) if *p == precision && *s == scale => Ok(array),
        DataType::Decimal128(_, s) if *s == scale => Ok(Arc::new(
            array
                .as_primitive::<Decimal128Type>()
                .clone()
                .with_precision_and_scale(precision, scale)?,
        )),
        _ => cast_array(&array, &DataType::Decimal128(precision, scale)),
    }
}

/// `n / d` rounded half away from zero; `d` must not be zero.
pub(crate) fn div_round_i128(n: i128, d: i128) -> Option<i128> {
    let q = n.checked_div(d)?;
    let r = n % d;
    // |r| * 2 >= |d|, written so it cannot overflow.
    if r.unsigned_abs() >= d.unsigned_abs() - r.unsigned_abs() {
        if (n < 0) == (d < 0) {
            q.checked_add(1)
        } else {
            q.checked_sub(1)
        }
    } else {
        Some(q)
    }
}

fn div_round_i256(n: i256, d: i256) -> Option<i256> {
    let q = n.checked_div(d)?;
    let r = n.checked_rem(d)?;
    let (r, d_abs) = (r.checked_abs()?, d.checked_abs()?);
    if r >= d_abs.checked_sub(r)? {
        if n.is_negative() == d.is_negative() {
            q.checked_add(i256::ONE)
        } else {
            q.checked_sub(i256::ONE)
        }
    } else {
        Some(q)
    }
}

/// 10^exp as i256 (exact for exp <= 76).
fn pow10_256(exp: i32) -> Option<i256> {
    u32::try_from(exp)
        .ok()
        .and_then(|e| i256::from_i128(10).checked_pow(e))
}

fn pow10_128(exp: i32) -> Option<i128> {
    u32::try_from(exp).ok().and_then(|e| 10i128.checked_pow(e))
}

/// Applies `f` to every pair of non-null values; `f` returns `None` for a NULL result.
/// Scalars (one-element arrays) are broadcast.
fn binary_decimal(
    l: &dyn Datum,
    r: &dyn Datum,
    mut f: impl FnMut(i128, i128) -> Result<Option<i128>>,
) -> Result<PrimitiveArray<Decimal128Type>> {
    let (la, ls) = l.get();
    let (ra, rs) = r.get();
    let (la, ra) = (
        la.as_primitive::<Decimal128Type>(),
        ra.as_primitive::<Decimal128Type>(),
    );
    let len = match (ls, rs) {
        (true, true) => 1,
        (true, false) => ra.len(),
        _ => la.len(),
    };
    let mut values = Vec::with_capacity(len);
    let mut nulls = NullBufferBuilder::new(len);
    for i in 0..len {
        let (li, ri) = (if ls { 0 } else { i }, if rs { 0 } else { i });
        let v = if la.is_null(li) || ra.is_null(ri) {
            None
        } else {
            f(la.value(li), ra.value(ri))?
        };
        match v {
            Some(v) => {
                values.push(v);
                nulls.append_non_null();
            }
            None => {
                values.push(0);
                nulls.append_null();
            }
        }
    }
    Ok(PrimitiveArray::new(values.into(), nulls.finish()))
}

fn overflow(what: &str) -> EmberError {
    EmberError::Data(format!("decimal overflow in {what}"))
}

/// `a * b / 10^shift`, rounded, through a 256-bit product.
fn multiply_rescaled(
    l: &dyn Datum,
    r: &dyn Datum,
    shift: i32,
) -> Result<PrimitiveArray<Decimal128Type>> {
    let divisor = pow10_256(shift).ok_or_else(|| overflow("multiplication"))?;
    binary_decimal(l, r, |a, b| {
        let product = i256::from_i128(a)
            .checked_mul(i256::from_i128(b))
            .ok_or_else(|| overflow("multiplication"))?;
        div_round_i256(product, divisor)
            .and_then(i256::to_i128)
            .map(Some)
            .ok_or_else(|| overflow("multiplication"))
    })
}

/// `a * 10^shift / b` rounded (or `a / (b * 10^-shift)` for a negative shift); NULL when
/// `b` is zero.
fn divide(l: &dyn Datum, r: &dyn Datum, shift: i32) -> Result<PrimitiveArray<Decimal128Type>> {
    let (scale_left, factor) = if shift >= 0 {
        (true, shift)
    } else {
        (false, -shift)
    };
    let factor_128 = pow10_128(factor);
    let factor_256 = pow10_256(factor).ok_or_else(|| overflow("division"))?;
    binary_decimal(l, r, |a, b| {
        if b == 0 {
            return Ok(None);
        }
        // Fast path in i128; the 256-bit path only when the scaled operand overflows.
        let scaled = factor_128.and_then(|f| {
            if scale_left {
                a.checked_mul(f).map(|n| (n, b))
            } else {
                b.checked_mul(f).map(|d| (a, d))
            }
        });
        if let Some((n, d)) = scaled {
            return div_round_i128(n, d)
                .map(Some)
                .ok_or_else(|| overflow("division"));
        }
        let (n, d) = if scale_left {
            (
                i256::from_i128(a).checked_mul(factor_256),
                Some(i256::from_i128(b)),
            )
        } else {
            (
                Some(i256::from_i128(a)),
                i256::from_i128(b).checked_mul(factor_256),
            )
        };
        n.zip(d)
            .and_then(|(n, d)| div_round_i256(n, d))
            .and_then(i256::to_i128)
            .map(Some)
            .ok_or_else(|| overflow("division"))
    })
}

/// `(a * 10^ls) % (b * 10^rs)`: both at the result scale, sign of the dividend; NULL when
/// `b` is zero.
fn remainder(
    l: &dyn Datum,
    r: &dyn Datum,
    left_shift: i32,
    right_shift: i32,
) -> Result<PrimitiveArray<Decimal128Type>> {
    let lf = pow10_256(left_shift).ok_or_else(|| overflow("remainder"))?;
    let rf = pow10_256(right_shift).ok_or_else(|| overflow("remainder"))?;
    binary_decimal(l, r, |a, b| {
        if b == 0 {
            return Ok(None);
        }
        let n = i256::from_i128(a).checked_mul(lf);
        let d = i256::from_i128(b).checked_mul(rf);
        n.zip(d)
            .and_then(|(n, d)| n.checked_rem(d))
            .and_then(i256::to_i128)
            .map(Some)
            .ok_or_else(|| overflow("remainder"))
    })
}

#[cfg(test)]
mod tests {
    use arrow::array::Decimal128Array;

    use super::*;

    fn dec(values: Vec<Option<i128>>, p: u8, s: i8) -> ArrayRef {
        Arc::new(
            Decimal128Array::from(values)
                .with_precision_and_scale(p, s)
                .unwrap(),
        )
    }

    #[test]
    fn rounding_division_is_half_away_from_zero() {
        assert_eq!(div_round_i128(5, 2), Some(3));
        assert_eq!(div_round_i128(-5, 2), Some(-3));
        assert_eq!(div_round_i128(4, 3), Some(1));
        assert_eq!(div_round_i128(-7, -2), Some(4));
        assert_eq!(div_round_i128(i128::MIN, -1), None);
    }

    #[test]
    fn division_uses_result_scale_and_nulls_zero_divisors() {
        // 1.00 / 3.00 at scale 6 = 0.333333; 2.00 / 0 = NULL
        let l = dec(vec![Some(100), Some(200), None], 10, 2);
        let r = dec(vec![Some(300), Some(0), Some(1)], 10, 2);
        let out = arithmetic(Operator::Divide, &l, &r, 38, 6).unwrap();
        let out = out.as_primitive::<Decimal128Type>();
        assert_eq!(out.data_type(), &DataType::Decimal128(38, 6));
        assert_eq!(out.value(0), 333_333);
        assert!(out.is_null(1) && out.is_null(2));
    }

    #[test]
    fn huge_division_falls_back_to_256_bits() {
        let big = 10i128.pow(36);
        let l = dec(vec![Some(big)], 38, 4);
        let r = dec(vec![Some(3 * 10i128.pow(4))], 38, 4);
        // (10^32 / 3) at scale 6 needs 10^36 * 10^6 in the intermediate.
        let out = arithmetic(Operator::Divide, &l, &r, 38, 6).unwrap();
        let v = out.as_primitive::<Decimal128Type>().value(0);
        assert_eq!(v, 10i128.pow(38) / 3);
    }

    #[test]
    fn reduced_scale_multiplication_rounds() {
        // 1.23456789 * 1.00000005 at scale 6 (instead of 16)
        let l = dec(vec![Some(123_456_789)], 38, 8);
        let r = dec(vec![Some(100_000_005)], 38, 8);
        let out = arithmetic(Operator::Multiply, &l, &r, 38, 6).unwrap();
        assert_eq!(out.as_primitive::<Decimal128Type>().value(0), 1_234_568);
    }

    #[test]
    fn unchecked_arithmetic_equals_checked_and_overflow_still_fails() {
        use arrow::array::Scalar;
        let l = dec(vec![Some(-95_049_500), None, Some(12), Some(0)], 15, 2);
        let r = dec(vec![Some(7), Some(3), None, Some(-10_000_000_000)], 15, 2);
        let one = Scalar::new(dec(vec![Some(100)], 15, 2));
        for op in [Operator::Plus, Operator::Minus, Operator::Multiply] {
            let scale = if op == Operator::Multiply { 4 } else { 2 };
            let checked = match op {
                Operator::Plus => numeric::add(&l, &r),
                Operator::Minus => numeric::sub(&l, &r),
                _ => numeric::mul(&l, &r),
            }
            .unwrap();
            let fast =
                without_overflow(op, &l, &r, 2, 2, scale).expect("small values take the fast path");
            assert_eq!(
                fast.iter().collect::<Vec<_>>(),
                checked
                    .as_primitive::<Decimal128Type>()
                    .iter()
                    .collect::<Vec<_>>()
            );
            let out = arithmetic(op, &l, &r, 31, scale as i8).unwrap();
            assert_eq!(out.data_type(), &DataType::Decimal128(31, scale as i8));
            // A scalar operand on either side.
            let left = without_overflow(op, &one, &r, 2, 2, scale).unwrap();
            let right = without_overflow(op, &r, &one, 2, 2, scale).unwrap();
            assert_eq!(left.len(), 4);
            assert_eq!(right.len(), 4);
        }
        // Values near i128's range take Arrow's checked kernel and overflow is an error.
        let huge = dec(vec![Some(10i128.pow(37)), Some(1)], 38, 0);
        assert!(without_overflow(Operator::Multiply, &huge, &huge, 0, 0, 0).is_none());
        assert!(arithmetic(Operator::Multiply, &huge, &huge, 38, 0).is_err());
        assert!(without_overflow(Operator::Plus, &huge, &huge, 0, 0, 0).is_some());
        let max = dec(vec![Some(i128::MAX)], 38, 0);
        assert!(without_overflow(Operator::Plus, &max, &max, 0, 0, 0).is_none());
        // `1 - x` with the literal at scale 0: the scalar is rescaled once.
        let x = dec(vec![Some(5), Some(10), None], 15, 2);
        let int_one = Scalar::new(dec(vec![Some(1)], 1, 0));
        let out = arithmetic(Operator::Minus, &int_one, &x, 16, 2).unwrap();
        let out = out.as_primitive::<Decimal128Type>();
        assert_eq!(
            out.iter().collect::<Vec<_>>(),
            vec![Some(95), Some(90), None]
        );
        assert!(without_overflow(Operator::Minus, &int_one, &x, 0, 2, 2).is_some());
        // Two arrays of different scales would need a per-value rescale: Arrow's kernel.
        let y = dec(vec![Some(1), Some(2), Some(3)], 15, 1);
        assert!(without_overflow(Operator::Plus, &x, &y, 2, 1, 2).is_none());
        let sum = arithmetic(Operator::Plus, &x, &y, 16, 2).unwrap();
        let sum = sum.as_primitive::<Decimal128Type>();
        assert_eq!(
            sum.iter().collect::<Vec<_>>(),
            vec![Some(15), Some(30), None]
        );
    }

    #[test]
    fn remainder_aligns_scales() {
        // 7.5 % 2.00 = 1.50 ; -7.5 % 2 = -1.50
        let l = dec(vec![Some(75), Some(-75)], 3, 1);
        let r = dec(vec![Some(200), Some(200)], 3, 2);
        let out = arithmetic(Operator::Modulo, &l, &r, 3, 2).unwrap();
        let out = out.as_primitive::<Decimal128Type>();
        assert_eq!((out.value(0), out.value(1)), (150, -150));
    }
}
