//! Integer-like Arrow columns as the INT32 / INT64 values Parquet stores for them.
//!
//! The mapping is the parquet crate's (`ArrowSchemaConverter` picks the physical type, its
//! `ArrowWriter` the values): integers, dates, times, timestamps and decimals are stored as
//! their raw native value, unsigned ones reinterpreted, decimals narrowed to the physical width
//! their precision allows. Types whose stored value is not the raw one (seconds-unit
//! timestamps and times, which Parquet cannot label, `Date64` coerced to days) are left to
//! the parquet crate: [`append_i32`] / [`append_i64`] return `false` for them.

use arrow::array::{Array, ArrowPrimitiveType, AsArray};
use arrow::datatypes::{
    DataType, Date32Type, Date64Type, Decimal128Type, Decimal32Type, Decimal64Type, Int16Type,
    Int32Type, Int64Type, Int8Type, Time32MillisecondType, Time64MicrosecondType,
    Time64NanosecondType, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};

/// Appends the non-null values of `array` to `out` as a Parquet INT32 column stores them.
/// Returns `false`, appending nothing, when Ember does not encode this type itself.
pub(super) fn append_i32(array: &dyn Array, out: &mut Vec<i32>) -> bool {
    match array.data_type() {
        DataType::Int8 => extend::<Int8Type, _>(array, out, i32::from),
        DataType::Int16 => extend::<Int16Type, _>(array, out, i32::from),
        DataType::Int32 => extend::<Int32Type, _>(array, out, |v| v),
        DataType::UInt8 => extend::<UInt8Type, _>(array, out, i32::from),
        DataType::UInt16 => extend::<UInt16Type, _>(array, out, i32::from),
        DataType::UInt32 => extend::<UInt32Type, _>(array, out, |v| v as i32),
        DataType::Date32 => extend::<Date32Type, _>(array, out, |v| v),
        DataType::Time32(TimeUnit::Millisecond) => {
            extend::<Time32MillisecondType, _>(array, out, |v| v)
        }
        DataType::Decimal32(_, _) => extend::<Decimal32Type, _>(array, out, |v| v),
        // Precision ≤ 9 (the schema said INT32), so the value fits.
        DataType::Decimal64(_, _) => extend::<Decimal64Type, _>(array, out, |v| v as i32),
        DataType::Decimal128(_, _) => extend::<Decimal128Type, _>(array, out, |v| v as i32),
        _ => return false,
    }
    true
}

/// Appends the non-null values of `array` to `out` as a Parquet INT64 column stores them.
/// Returns `false`, appending nothing, when Ember does not encode this type itself.
pub(super) fn append_i64(array: &dyn Array, out: &mut Vec<i64>) -> bool {
    match array.data_type() {
        DataType::Int64 => extend::<Int64Type, _>(array, out, |v| v),
        DataType::UInt64 => extend::<UInt64Type, _>(array, out, |v| v as i64),
        DataType::Date64 => extend::<Date64Type, _>(array, out, |v| v),
        DataType::Time64(TimeUnit::Microsecond) => {
            extend::<Time64MicrosecondType, _>(array, out, |v| v)
        }
        DataType::Time64(TimeUnit::Nanosecond) => {
            extend::<Time64NanosecondType, _>(array, out, |v| v)
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            extend::<TimestampMillisecondType, _>(array, out, |v| v)
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            extend::<TimestampMicrosecondType, _>(array, out, |v| v)
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            extend::<TimestampNanosecondType, _>(array, out, |v| v)
        }
        DataType::Decimal64(_, _) => extend::<Decimal64Type, _>(array, out, |v| v),
        // Precision ≤ 18 (the schema said INT64), so the value fits.
        DataType::Decimal128(_, _) => extend::<Decimal128Type, _>(array, out, |v| v as i64),
        _ => return false,
    }
    true
}

/// Appends `convert` of each non-null value of `array` (of Arrow type `T`) to `out`.
fn extend<T: ArrowPrimitiveType, N>(
    array: &dyn Array,
    out: &mut Vec<N>,
    convert: impl Fn(T::Native) -> N,
) {
    let array = array.as_primitive::<T>();
    let values = array.values();
    match array.nulls().filter(|n| n.null_count() > 0) {
        None => out.extend(values.iter().map(|&v| convert(v))),
        Some(nulls) => out.extend(nulls.valid_indices().map(|i| convert(values[i]))),
    }
}
