//! Type rules: which types two operands are coerced to, and what an operator returns.
//! The planner (to compute schemas) and the executor (to insert casts) both call these, so
//! the type a schema promises is the type evaluation produces.

use arrow::datatypes::{DataType, IntervalUnit, TimeUnit, DECIMAL128_MAX_PRECISION};

use crate::error::{EmberError, Result};
use crate::expr::Operator;

pub fn is_integer(t: &DataType) -> bool {
    t.is_integer()
}

pub fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

pub fn is_decimal(t: &DataType) -> bool {
    matches!(t, DataType::Decimal128(_, _))
}

pub fn is_numeric(t: &DataType) -> bool {
    t.is_numeric()
}

/// The decimal type that holds every value of an integer type exactly.
fn integer_as_decimal(t: &DataType) -> Option<DataType> {
    Some(match t {
        DataType::Int8 | DataType::UInt8 => DataType::Decimal128(3, 0),
        DataType::Int16 | DataType::UInt16 => DataType::Decimal128(5, 0),
        DataType::Int32 | DataType::UInt32 => DataType::Decimal128(10, 0),
        DataType::Int64 => DataType::Decimal128(19, 0),
        DataType::UInt64 => DataType::Decimal128(20, 0),
        _ => return None,
    })
}

fn as_decimal(t: &DataType) -> Option<(u8, i8)> {
    match t {
        DataType::Decimal128(p, s) => Some((*p, *s)),
        other => match integer_as_decimal(other) {
            Some(DataType::Decimal128(p, s)) => Some((p, s)),
            _ => None,
        },
    }
}

fn decimal(precision: usize, scale: i8) -> DataType {
    DataType::Decimal128(
        precision.min(DECIMAL128_MAX_PRECISION as usize) as u8,
        scale,
    )
}

fn integer_rank(t: &DataType) -> u8 {
    match t {
        DataType::Int8 => 1,
        DataType::UInt8 => 2,
        DataType::Int16 => 3,
        DataType::UInt16 => 4,
        DataType::Int32 => 5,
        DataType::UInt32 => 6,
        DataType::Int64 => 7,
        DataType::UInt64 => 8,
        _ => 0,
    }
}

/// The common type two values are compared (or unioned, or CASE-merged) as.
pub fn common_type(l: &DataType, r: &DataType) -> Option<DataType> {
    use DataType::*;
    if l == r {
        return Some(l.clone());
    }
    Some(match (l, r) {
        (Null, t) | (t, Null) => t.clone(),
        (a, b) if is_integer(a) && is_integer(b) => {
            if integer_rank(a) >= integer_rank(b) {
                // Mixed signedness widens to Int64.
                if a.is_signed_integer() == b.is_signed_integer() {
                    a.clone()
                } else {
                    Int64
                }
            } else {
                return common_type(r, l);
            }
        }
        (Float64, t) | (t, Float64) if is_numeric(t) => Float64,
        (Float32, t) | (t, Float32) if is_numeric(t) => Float64,
        (a, b) if as_decimal(a).is_some() && as_decimal(b).is_some() => {
            let (p1, s1) = as_decimal(a)?;
            let (p2, s2) = as_decimal(b)?;
            let scale = s1.max(s2);
            let int_digits = (p1 as i16 - s1 as i16).max(p2 as i16 - s2 as i16);
            decimal((int_digits + scale as i16) as usize, scale)
        }
        // Strings stay in their own layout: Parquet scans produce Utf8View, and casting a
        // view column to Utf8 copies every string (in Q19 a fifth of the query) just to
        // compare it with a literal. A literal or a Utf8 column is the cheaper side to cast.
        (a, b) if is_string(a) && is_string(b) => match (a, b) {
            _ if a == b => a.clone(),
            (Utf8View, _) | (_, Utf8View) => Utf8View,
            _ => Utf8,
        },
        (Date32, t) | (t, Date32) if is_string(t) => Date32,
        (Timestamp(u, z), t) | (t, Timestamp(u, z)) if is_string(t) || *t == Date32 => {
            Timestamp(*u, z.clone())
        }
        (Boolean, t) | (t, Boolean) if is_string(t) => Boolean,
        (a, b) if is_string(a) && is_numeric(b) => b.clone(),
        (a, b) if is_numeric(a) && is_string(b) => a.clone(),
        _ => return None,
    })
}

/// Operand types (left, right) and the result type of `l op r`.
pub fn binary_types(
    l: &DataType,
    op: Operator,
    r: &DataType,
) -> Result<(DataType, DataType, DataType)> {
    use DataType::*;
    let err = || EmberError::Plan(format!("cannot apply '{op}' to {l} and {r}"));
    match op {
        Operator::And | Operator::Or => {
            let ok = |t: &DataType| matches!(t, Boolean | Null);
            if ok(l) && ok(r) {
                Ok((Boolean, Boolean, Boolean))
            } else {
                Err(err())
            }
        }
        Operator::Eq
        | Operator::NotEq
        | Operator::Lt
        | Operator::LtEq
        | Operator::Gt
        | Operator::GtEq => {
            let t = common_type(l, r).ok_or_else(err)?;
            Ok((t.clone(), t, Boolean))
        }
        Operator::StringConcat => Ok((Utf8, Utf8, Utf8)),
        Operator::Plus
        | Operator::Minus
        | Operator::Multiply
        | Operator::Divide
        | Operator::Modulo => arithmetic_types(l, op, r).ok_or_else(err),
    }
}

fn arithmetic_types(
    l: &DataType,
    op: Operator,
    r: &DataType,
) -> Option<(DataType, DataType, DataType)> {
    use DataType::*;
    // Dates and intervals.
    match (l, op, r) {
        (Date32, Operator::Plus | Operator::Minus, Interval(_)) => {
            return Some((Date32, Interval(IntervalUnit::MonthDayNano), Date32))
        }
        (Interval(_), Operator::Plus, Date32) => {
            return Some((Interval(IntervalUnit::MonthDayNano), Date32, Date32))
        }
        (Date32, Operator::Minus, Date32) => return Some((Date32, Date32, Int64)),
        (Date32, Operator::Plus | Operator::Minus, t) if is_integer(t) => {
            return Some((Date32, Int32, Date32))
        }
        (Timestamp(u, z), Operator::Plus | Operator::Minus, Interval(_)) => {
            return Some((
                Timestamp(*u, z.clone()),
                Interval(IntervalUnit::MonthDayNano),
                Timestamp(*u, z.clone()),
            ))
        }
        _ => {}
    }
    let (l, r) = (
        if *l == Null { r } else { l },
        if *r == Null { l } else { r },
    );
    if !is_numeric(l) && !is_string(l) || !is_numeric(r) && !is_string(r) {
        return None;
    }
    // Strings in arithmetic are read as numbers of the other side's type.
    let l = if is_string(l) { r } else { l };
    let r = if is_string(r) { l } else { r };
    if matches!(l, Float32 | Float64) || matches!(r, Float32 | Float64) {
        return Some((Float64, Float64, Float64));
    }
    if is_integer(l) && is_integer(r) {
        let t = common_type(l, r)?;
        let t = if integer_rank(&t) < integer_rank(&Int64) && op != Operator::Divide {
            // Widen to avoid overflow in sums of products.
            Int64
        } else if matches!(t, UInt64) {
            UInt64
        } else {
            Int64
        };
        return Some((t.clone(), t.clone(), t));
    }
    let (p1, s1) = as_decimal(l)?;
    let (p2, s2) = as_decimal(r)?;
    let lt = decimal(p1 as usize, s1);
    let rt = decimal(p2 as usize, s2);
    let (p1, s1, p2, s2) = (p1 as i32, s1 as i32, p2 as i32, s2 as i32);
    // Spark's rules (DecimalPrecision with allowPrecisionLoss): the exact result type, then
    // shrunk to 38 digits by giving up fractional digits (but keeping at least 6).
    let (precision, scale) = match op {
        Operator::Plus | Operator::Minus => {
            let s = s1.max(s2);
            ((p1 - s1).max(p2 - s2) + s + 1, s)
        }
        Operator::Multiply => (p1 + p2 + 1, s1 + s2),
        Operator::Divide => {
            let s = 6.max(s1 + p2 + 1);
            (p1 - s1 + s2 + s, s)
        }
        Operator::Modulo => {
            let s = s1.max(s2);
            ((p1 - s1).min(p2 - s2) + s, s)
        }
        _ => return None,
    };
    let result = adjust_decimal(precision, scale);
    Some((lt, rt, result))
}

/// Fits an exact decimal result type `(precision, scale)` into Decimal128: when it needs more
/// than 38 digits, the integer digits are kept and the scale shrinks, but not below
/// `min(scale, 6)` (Spark's `adjustPrecisionScale`), so `sum(a) / sum(b)` of two
/// Decimal(38, 4) sums is Decimal(38, 6) rather than an unusable Decimal(38, 38).
pub fn adjust_decimal(precision: i32, scale: i32) -> DataType {
    const MAX: i32 = DECIMAL128_MAX_PRECISION as i32;
    const MIN_ADJUSTED_SCALE: i32 = 6;
    let precision = precision.max(1);
    if precision <= MAX {
        return DataType::Decimal128(precision as u8, scale as i8);
    }
    if scale < 0 {
        return DataType::Decimal128(MAX as u8, scale.max(-MAX) as i8);
    }
    let int_digits = precision - scale;
    let min_scale = scale.min(MIN_ADJUSTED_SCALE);
    let scale = (MAX - int_digits).max(min_scale);
    DataType::Decimal128(MAX as u8, scale as i8)
}

/// The result type of `SUM(x)`.
pub fn sum_type(t: &DataType) -> Result<DataType> {
    use DataType::*;
    Ok(match t {
        Int8 | Int16 | Int32 | Int64 | Null => Int64,
        UInt8 | UInt16 | UInt32 | UInt64 => UInt64,
        Float32 | Float64 => Float64,
        Decimal128(_, s) => decimal(DECIMAL128_MAX_PRECISION as usize, *s),
        other => return Err(EmberError::Plan(format!("SUM is not defined for {other}"))),
    })
}

/// The result type of `AVG(x)`.
pub fn avg_type(t: &DataType) -> Result<DataType> {
    use DataType::*;
    Ok(match t {
        Decimal128(p, s) => decimal(
            *p as usize + 4,
            (*s + 4).min(DECIMAL128_MAX_PRECISION as i8),
        ),
        t if is_numeric(t) || *t == Null => Float64,
        other => return Err(EmberError::Plan(format!("AVG is not defined for {other}"))),
    })
}

/// Whether `from` can be cast to `to` at all.
pub fn can_cast(from: &DataType, to: &DataType) -> bool {
    arrow::compute::can_cast_types(from, to)
}

pub const TIMESTAMP_NANOS: DataType = DataType::Timestamp(TimeUnit::Nanosecond, None);

#[cfg(test)]
mod tests {
    use super::*;
    use DataType::*;

    #[test]
    fn decimal_arithmetic_follows_spark_rules() {
        let price = Decimal128(15, 2);
        let (_, _, t) = binary_types(&price, Operator::Multiply, &price).unwrap();
        assert_eq!(t, Decimal128(31, 4));
        let (lt, _, t) = binary_types(&Int64, Operator::Minus, &price).unwrap();
        assert_eq!(lt, Decimal128(19, 0));
        assert_eq!(t, Decimal128(22, 2));
    }

    /// A Parquet scan's Utf8View column is compared as a view (the literal is cast, one
    /// value), never copied into Utf8 row by row.
    #[test]
    fn strings_keep_their_layout_when_compared() {
        assert_eq!(common_type(&Utf8View, &Utf8), Some(Utf8View));
        assert_eq!(common_type(&Utf8, &Utf8View), Some(Utf8View));
        assert_eq!(common_type(&Utf8View, &Utf8View), Some(Utf8View));
        assert_eq!(common_type(&LargeUtf8, &LargeUtf8), Some(LargeUtf8));
        assert_eq!(common_type(&LargeUtf8, &Utf8), Some(Utf8));
        let (l, r, _) = binary_types(&Utf8View, Operator::Eq, &Utf8).unwrap();
        assert_eq!((l, r), (Utf8View, Utf8View));
    }

    /// The types TPC-H's money expressions get; the executor must produce exactly these.
    #[test]
    fn tpch_money_expressions_have_spark_types() {
        let price = Decimal128(15, 2);
        // l_extendedprice * (1 - l_discount)
        let (_, _, one_minus) = binary_types(&Int64, Operator::Minus, &price).unwrap();
        let (_, _, volume) = binary_types(&price, Operator::Multiply, &one_minus).unwrap();
        assert_eq!(volume, Decimal128(38, 4));
        // ... * (1 + l_tax): 61 digits needed, 38 kept with 6 fractional ones.
        let (_, _, charge) = binary_types(&volume, Operator::Multiply, &one_minus).unwrap();
        assert_eq!(charge, Decimal128(38, 6));
        // sum(volume) / sum(volume)
        let sum = sum_type(&volume).unwrap();
        let (_, _, share) = binary_types(&sum, Operator::Divide, &sum).unwrap();
        assert_eq!(share, Decimal128(38, 6));
        // 100.00 * sum(..) / sum(..)
        let (_, _, scaled) = binary_types(&Decimal128(5, 2), Operator::Multiply, &sum).unwrap();
        assert_eq!(scaled, Decimal128(38, 6));
        let (_, _, pct) = binary_types(&scaled, Operator::Divide, &sum).unwrap();
        assert_eq!(pct, Decimal128(38, 6));
        // Small operands keep the exact type: at least 6 fractional digits for division.
        let (_, _, q) = binary_types(&price, Operator::Divide, &Decimal128(2, 1)).unwrap();
        assert_eq!(q, Decimal128(20, 6));
    }

    #[test]
    fn adjust_decimal_keeps_integer_digits() {
        assert_eq!(adjust_decimal(10, 2), Decimal128(10, 2));
        assert_eq!(adjust_decimal(50, 20), Decimal128(38, 8));
        assert_eq!(adjust_decimal(80, 3), Decimal128(38, 3));
    }

    #[test]
    fn comparison_of_date_and_string_is_date() {
        let (l, r, out) = binary_types(&Date32, Operator::Lt, &Utf8).unwrap();
        assert_eq!((l, r, out), (Date32, Date32, Boolean));
    }

    #[test]
    fn incompatible_types_are_a_plan_error() {
        let err = binary_types(&Boolean, Operator::Plus, &Date32).unwrap_err();
        assert!(err.to_string().contains("cannot apply '+'"), "{err}");
    }
}
