//! Integer-like Arrow columns as the INT32 / INT64 values Parquet stores for them.
//!
//! The mapping is the parquet crate's (`ArrowSchemaConverter` picks the physical type, its
//! `ArrowWriter` the values): integers, dates, times, timestamps and decimals are stored as
//! their raw native value, unsigned ones reinterpreted, decimals narrowed to the physical width
//! their precision allows. Types whose stored value is not the raw one (seconds-unit
//! timestamps and times, which Parquet cannot label, `Date64` coerced to days) are left to
//! the parquet crate: [`visit_i32`] / [`visit_i64`] return `false` for them.

use arrow::array::{Array, ArrowPrimitiveType, AsArray};
use arrow::datatypes::{
    DataType, Date32Type, Date64Type, Decimal128Type, Decimal32Type, Decimal64Type, Int16Type,
    Int32Type, Int64Type, Int8Type, Time32MillisecondType, Time64MicrosecondType,
    Time64NanosecondType, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};

/// Where [`visit_i32`] / [`visit_i64`] hand a column's values: a page being gathered for
/// delta encoding, or a dictionary that codes them as they come.
pub(super) trait IntSink<T> {
    /// Takes `convert` of each of `values`, in order.
    fn take<S: Copy + 'static>(&mut self, values: &[S], convert: impl Fn(S) -> T + Copy);
}

impl<T> IntSink<T> for Vec<T> {
    fn take<S: Copy + 'static>(&mut self, values: &[S], convert: impl Fn(S) -> T + Copy) {
        self.extend(values.iter().map(|&v| convert(v)));
    }
}

/// Hands the non-null values of `array` to `sink` as a Parquet INT32 column stores them.
/// Returns `false`, handing over nothing, when Ember does not encode this type itself.
pub(super) fn visit_i32(array: &dyn Array, sink: &mut impl IntSink<i32>) -> bool {
    match array.data_type() {
        DataType::Int8 => visit::<Int8Type, _>(array, sink, i32::from),
        DataType::Int16 => visit::<Int16Type, _>(array, sink, i32::from),
        DataType::Int32 => visit::<Int32Type, _>(array, sink, |v| v),
        DataType::UInt8 => visit::<UInt8Type, _>(array, sink, i32::from),
        DataType::UInt16 => visit::<UInt16Type, _>(array, sink, i32::from),
        DataType::UInt32 => visit::<UInt32Type, _>(array, sink, |v| v as i32),
        DataType::Date32 => visit::<Date32Type, _>(array, sink, |v| v),
        DataType::Time32(TimeUnit::Millisecond) => {
            visit::<Time32MillisecondType, _>(array, sink, |v| v)
        }
        DataType::Decimal32(_, _) => visit::<Decimal32Type, _>(array, sink, |v| v),
        // Precision ≤ 9 (the schema said INT32), so the value fits.
        DataType::Decimal64(_, _) => visit::<Decimal64Type, _>(array, sink, |v| v as i32),
        DataType::Decimal128(_, _) => visit::<Decimal128Type, _>(array, sink, |v| v as i32),
        _ => return false,
    }
    true
}

/// Hands the non-null values of `array` to `sink` as a Parquet INT64 column stores them.
/// Returns `false`, handing over nothing, when Ember does not encode this type itself.
pub(super) fn visit_i64(array: &dyn Array, sink: &mut impl IntSink<i64>) -> bool {
    match array.data_type() {
        DataType::Int64 => visit::<Int64Type, _>(array, sink, |v| v),
        DataType::UInt64 => visit::<UInt64Type, _>(array, sink, |v| v as i64),
        DataType::Date64 => visit::<Date64Type, _>(array, sink, |v| v),
        DataType::Time64(TimeUnit::Microsecond) => {
            visit::<Time64MicrosecondType, _>(array, sink, |v| v)
        }
        DataType::Time64(TimeUnit::Nanosecond) => {
            visit::<Time64NanosecondType, _>(array, sink, |v| v)
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            visit::<TimestampMillisecondType, _>(array, sink, |v| v)
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            visit::<TimestampMicrosecondType, _>(array, sink, |v| v)
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            visit::<TimestampNanosecondType, _>(array, sink, |v| v)
        }
        DataType::Decimal64(_, _) => visit::<Decimal64Type, _>(array, sink, |v| v),
        // Precision ≤ 18 (the schema said INT64), so the value fits.
        DataType::Decimal128(_, _) => visit::<Decimal128Type, _>(array, sink, |v| v as i64),
        _ => return false,
    }
    true
}

/// Hands `convert` of each non-null value of `array` (of Arrow type `A`) to `sink`: the
/// values buffer itself when there are no nulls, the valid values gathered otherwise.
fn visit<A: ArrowPrimitiveType, T: Copy + 'static>(
    array: &dyn Array,
    sink: &mut impl IntSink<T>,
    convert: impl Fn(A::Native) -> T + Copy,
) {
    let array = array.as_primitive::<A>();
    let values = array.values();
    match array.nulls().filter(|n| n.null_count() > 0) {
        None => sink.take(values, convert),
        Some(nulls) => {
            let valid: Vec<T> = nulls.valid_indices().map(|i| convert(values[i])).collect();
            sink.take(&valid, |v| v)
        }
    }
}
