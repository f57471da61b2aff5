//! Literals on the wire. `ScalarValue` (datafusion-common) has no serde support, so each
//! variant Ember's SQL and DataFrame API produce gets an explicit, readable form, and every
//! other variant (lists, structs, maps, 256-bit decimals, ...) travels as a one-row Arrow IPC
//! stream, which is lossless for any Arrow type.
//!
//! Numbers JSON cannot carry exactly are strings: 128-bit decimals (beyond 2^53 many JSON
//! readers round) and floats (serde_json's default float parser is not round-trip exact;
//! Rust's `Display`/`parse` pair is, and also covers NaN and infinities).

use std::io::Cursor;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, IntervalDayTime, IntervalMonthDayNano, Schema, TimeUnit};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use datafusion_common::ScalarValue;
use serde::{Deserialize, Serialize};

use crate::error::{EmberError, Result};

/// A [`ScalarValue`] as plain data. `None` values are typed NULLs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScalarWire {
    /// The untyped NULL (`DataType::Null`).
    Null,
    Boolean(Option<bool>),
    Int8(Option<i8>),
    Int16(Option<i16>),
    Int32(Option<i32>),
    Int64(Option<i64>),
    UInt8(Option<u8>),
    UInt16(Option<u16>),
    UInt32(Option<u32>),
    UInt64(Option<u64>),
    /// `Display` of the value (shortest exact form).
    Float32(Option<String>),
    Float64(Option<String>),
    Decimal32 {
        value: Option<i32>,
        precision: u8,
        scale: i8,
    },
    Decimal64 {
        /// A string: JSON readers other than serde may round integers above 2^53.
        value: Option<String>,
        precision: u8,
        scale: i8,
    },
    Decimal128 {
        value: Option<String>,
        precision: u8,
        scale: i8,
    },
    Utf8(Option<String>),
    LargeUtf8(Option<String>),
    Utf8View(Option<String>),
    /// Bytes as lowercase hex.
    Binary(Option<String>),
    LargeBinary(Option<String>),
    BinaryView(Option<String>),
    Date32(Option<i32>),
    Date64(Option<i64>),
    Time32Second(Option<i32>),
    Time32Millisecond(Option<i32>),
    Time64Microsecond(Option<i64>),
    Time64Nanosecond(Option<i64>),
    Timestamp {
        unit: TimeUnit,
        value: Option<i64>,
        timezone: Option<String>,
    },
    IntervalYearMonth(Option<i32>),
    IntervalDayTime(Option<(i32, i32)>),
    /// `(months, days, nanoseconds)`.
    IntervalMonthDayNano(Option<(i32, i32, i64)>),
    Duration {
        unit: TimeUnit,
        value: Option<i64>,
    },
    /// Any other value: a one-column, one-row Arrow IPC stream, hex-encoded.
    ArrowIpc(String),
}

impl ScalarWire {
    pub fn encode(value: &ScalarValue) -> Result<ScalarWire> {
        use ScalarValue as S;
        use ScalarWire as W;
        let text = |v: &Option<String>| v.clone();
        Ok(match value {
            S::Null => W::Null,
            S::Boolean(v) => W::Boolean(*v),
            S::Int8(v) => W::Int8(*v),
            S::Int16(v) => W::Int16(*v),
            S::Int32(v) => W::Int32(*v),
            S::Int64(v) => W::Int64(*v),
            S::UInt8(v) => W::UInt8(*v),
            S::UInt16(v) => W::UInt16(*v),
            S::UInt32(v) => W::UInt32(*v),
            S::UInt64(v) => W::UInt64(*v),
            S::Float32(v) => W::Float32(v.map(|f| float_text(f, f.is_nan(), f.to_bits() as u64))),
            S::Float64(v) => W::Float64(v.map(|f| float_text(f, f.is_nan(), f.to_bits()))),
            S::Decimal32(v, p, s) => W::Decimal32 {
                value: *v,
                precision: *p,
                scale: *s,
            },
            S::Decimal64(v, p, s) => W::Decimal64 {
                value: v.map(|v| v.to_string()),
                precision: *p,
                scale: *s,
            },
            S::Decimal128(v, p, s) => W::Decimal128 {
                value: v.map(|v| v.to_string()),
                precision: *p,
                scale: *s,
            },
            S::Utf8(v) => W::Utf8(text(v)),
            S::LargeUtf8(v) => W::LargeUtf8(text(v)),
            S::Utf8View(v) => W::Utf8View(text(v)),
            S::Binary(v) => W::Binary(v.as_deref().map(to_hex)),
            S::LargeBinary(v) => W::LargeBinary(v.as_deref().map(to_hex)),
            S::BinaryView(v) => W::BinaryView(v.as_deref().map(to_hex)),
            S::Date32(v) => W::Date32(*v),
            S::Date64(v) => W::Date64(*v),
            S::Time32Second(v) => W::Time32Second(*v),
            S::Time32Millisecond(v) => W::Time32Millisecond(*v),
            S::Time64Microsecond(v) => W::Time64Microsecond(*v),
            S::Time64Nanosecond(v) => W::Time64Nanosecond(*v),
            S::TimestampSecond(v, tz) => timestamp(TimeUnit::Second, *v, tz),
            S::TimestampMillisecond(v, tz) => timestamp(TimeUnit::Millisecond, *v, tz),
            S::TimestampMicrosecond(v, tz) => timestamp(TimeUnit::Microsecond, *v, tz),
            S::TimestampNanosecond(v, tz) => timestamp(TimeUnit::Nanosecond, *v, tz),
            S::IntervalYearMonth(v) => W::IntervalYearMonth(*v),
            S::IntervalDayTime(v) => W::IntervalDayTime(v.map(|i| (i.days, i.milliseconds))),
            S::IntervalMonthDayNano(v) => {
                W::IntervalMonthDayNano(v.map(|i| (i.months, i.days, i.nanoseconds)))
            }
            S::DurationSecond(v) => duration(TimeUnit::Second, *v),
            S::DurationMillisecond(v) => duration(TimeUnit::Millisecond, *v),
            S::DurationMicrosecond(v) => duration(TimeUnit::Microsecond, *v),
            S::DurationNanosecond(v) => duration(TimeUnit::Nanosecond, *v),
            other => W::ArrowIpc(to_hex(&scalar_to_ipc(other)?)),
        })
    }

    pub fn decode(&self) -> Result<ScalarValue> {
        use ScalarValue as S;
        use ScalarWire as W;
        Ok(match self {
            W::Null => S::Null,
            W::Boolean(v) => S::Boolean(*v),
            W::Int8(v) => S::Int8(*v),
            W::Int16(v) => S::Int16(*v),
            W::Int32(v) => S::Int32(*v),
            W::Int64(v) => S::Int64(*v),
            W::UInt8(v) => S::UInt8(*v),
            W::UInt16(v) => S::UInt16(*v),
            W::UInt32(v) => S::UInt32(*v),
            W::UInt64(v) => S::UInt64(*v),
            W::Float32(v) => S::Float32(
                v.as_deref()
                    .map(|t| parse_float(t, "Float32", |b| f32::from_bits(b as u32)))
                    .transpose()?,
            ),
            W::Float64(v) => S::Float64(
                v.as_deref()
                    .map(|t| parse_float(t, "Float64", f64::from_bits))
                    .transpose()?,
            ),
            W::Decimal32 {
                value,
                precision,
                scale,
            } => S::Decimal32(*value, *precision, *scale),
            W::Decimal64 {
                value,
                precision,
                scale,
            } => S::Decimal64(parse_int(value, "Decimal64")?, *precision, *scale),
            W::Decimal128 {
                value,
                precision,
                scale,
            } => S::Decimal128(parse_int(value, "Decimal128")?, *precision, *scale),
            W::Utf8(v) => S::Utf8(v.clone()),
            W::LargeUtf8(v) => S::LargeUtf8(v.clone()),
            W::Utf8View(v) => S::Utf8View(v.clone()),
            W::Binary(v) => S::Binary(v.as_deref().map(from_hex).transpose()?),
            W::LargeBinary(v) => S::LargeBinary(v.as_deref().map(from_hex).transpose()?),
            W::BinaryView(v) => S::BinaryView(v.as_deref().map(from_hex).transpose()?),
            W::Date32(v) => S::Date32(*v),
            W::Date64(v) => S::Date64(*v),
            W::Time32Second(v) => S::Time32Second(*v),
            W::Time32Millisecond(v) => S::Time32Millisecond(*v),
            W::Time64Microsecond(v) => S::Time64Microsecond(*v),
            W::Time64Nanosecond(v) => S::Time64Nanosecond(*v),
            W::Timestamp {
                unit,
                value,
                timezone,
            } => {
                let tz: Option<Arc<str>> = timezone.as_deref().map(Arc::from);
                match unit {
                    TimeUnit::Second => S::TimestampSecond(*value, tz),
                    TimeUnit::Millisecond => S::TimestampMillisecond(*value, tz),
                    TimeUnit::Microsecond => S::TimestampMicrosecond(*value, tz),
                    TimeUnit::Nanosecond => S::TimestampNanosecond(*value, tz),
                }
            }
            W::IntervalYearMonth(v) => S::IntervalYearMonth(*v),
            W::IntervalDayTime(v) => {
                S::IntervalDayTime(v.map(|(days, ms)| IntervalDayTime::new(days, ms)))
            }
            W::IntervalMonthDayNano(v) => S::IntervalMonthDayNano(
                v.map(|(months, days, nanos)| IntervalMonthDayNano::new(months, days, nanos)),
            ),
            W::Duration { unit, value } => match unit {
                TimeUnit::Second => S::DurationSecond(*value),
                TimeUnit::Millisecond => S::DurationMillisecond(*value),
                TimeUnit::Microsecond => S::DurationMicrosecond(*value),
                TimeUnit::Nanosecond => S::DurationNanosecond(*value),
            },
            W::ArrowIpc(hex) => scalar_from_ipc(&from_hex(hex)?)?,
        })
    }
}

fn timestamp(unit: TimeUnit, value: Option<i64>, tz: &Option<Arc<str>>) -> ScalarWire {
    ScalarWire::Timestamp {
        unit,
        value,
        timezone: tz.as_deref().map(str::to_string),
    }
}

fn duration(unit: TimeUnit, value: Option<i64>) -> ScalarWire {
    ScalarWire::Duration { unit, value }
}

/// A float as text: `Display` for every value except NaNs, whose payload `Display` would
/// drop, which are written as their bit pattern (`nan:0x7ff8000000000000`).
fn float_text(value: impl std::fmt::Display, is_nan: bool, bits: u64) -> String {
    if is_nan {
        format!("nan:{bits:#x}")
    } else {
        value.to_string()
    }
}

fn parse_float<T: std::str::FromStr>(
    text: &str,
    type_name: &str,
    from_bits: impl Fn(u64) -> T,
) -> Result<T> {
    let bad = || EmberError::Plan(format!("invalid {type_name} literal '{text}' in a plan"));
    match text.strip_prefix("nan:0x") {
        Some(hex) => u64::from_str_radix(hex, 16)
            .map(from_bits)
            .map_err(|_| bad()),
        None => text.parse().map_err(|_| bad()),
    }
}

fn parse_int<T: std::str::FromStr>(text: &Option<String>, type_name: &str) -> Result<Option<T>> {
    text.as_deref()
        .map(|t| {
            t.parse().map_err(|_| {
                EmberError::Plan(format!("invalid {type_name} literal '{t}' in a plan"))
            })
        })
        .transpose()
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

pub(crate) fn from_hex(text: &str) -> Result<Vec<u8>> {
    let bad = || EmberError::Plan(format!("invalid hex bytes in a plan: '{text}'"));
    if !text.len().is_multiple_of(2) {
        return Err(bad());
    }
    text.as_bytes()
        .chunks(2)
        .map(|pair| {
            let digit = |c: u8| (c as char).to_digit(16).ok_or_else(bad);
            Ok((digit(pair[0])? * 16 + digit(pair[1])?) as u8)
        })
        .collect()
}

/// The value as a one-column, one-row Arrow IPC stream (the column is named `value`).
fn scalar_to_ipc(value: &ScalarValue) -> Result<Vec<u8>> {
    let array = value.to_array().map_err(|e| {
        EmberError::Internal(format!("cannot turn literal {value:?} into an array: {e}"))
    })?;
    let schema = Arc::new(Schema::new(vec![Field::new(
        "value",
        array.data_type().clone(),
        true,
    )]));
    let batch = RecordBatch::try_new(Arc::clone(&schema), vec![array])?;
    let mut writer = StreamWriter::try_new(Vec::new(), &schema)?;
    writer.write(&batch)?;
    writer.finish()?;
    Ok(writer.into_inner()?)
}

fn scalar_from_ipc(bytes: &[u8]) -> Result<ScalarValue> {
    let reader = StreamReader::try_new(Cursor::new(bytes), None)?;
    let mut batches = Vec::new();
    for batch in reader {
        batches.push(batch?);
    }
    match batches.as_slice() {
        [batch] if batch.num_columns() == 1 && batch.num_rows() == 1 => {
            ScalarValue::try_from_array(batch.column(0), 0)
                .map_err(|e| EmberError::Plan(format!("invalid Arrow literal in a plan: {e}")))
        }
        _ => Err(EmberError::Plan(
            "an Arrow literal in a plan must hold exactly one column and one row".to_string(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{i256, DataType};

    fn typed_null(data_type: &DataType) -> ScalarValue {
        ScalarValue::try_from(data_type).unwrap()
    }

    /// Encodes to JSON text and back, and checks both the value and the JSON are stable.
    fn round_trip(value: ScalarValue) {
        let wire = ScalarWire::encode(&value).unwrap();
        let json = serde_json::to_string(&wire).unwrap();
        let parsed: ScalarWire = serde_json::from_str(&json).unwrap();
        let back = parsed.decode().unwrap();
        assert_eq!(back, value, "value changed through {json}");
        assert_eq!(
            back.data_type(),
            value.data_type(),
            "type changed through {json}"
        );
        let again = serde_json::to_string(&ScalarWire::encode(&back).unwrap()).unwrap();
        assert_eq!(again, json);
    }

    #[test]
    fn integers_booleans_and_their_nulls() {
        for v in [
            ScalarValue::Null,
            ScalarValue::Boolean(Some(true)),
            ScalarValue::Boolean(None),
            ScalarValue::Int8(Some(-8)),
            ScalarValue::Int16(Some(i16::MIN)),
            ScalarValue::Int32(None),
            ScalarValue::Int64(Some(i64::MAX)),
            ScalarValue::Int64(None),
            ScalarValue::UInt8(Some(255)),
            ScalarValue::UInt16(None),
            ScalarValue::UInt32(Some(u32::MAX)),
            ScalarValue::UInt64(Some(u64::MAX)),
        ] {
            round_trip(v);
        }
    }

    #[test]
    fn floats_keep_every_bit() {
        for v in [
            0.1,
            -0.0,
            1e300,
            f64::MIN_POSITIVE,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            round_trip(ScalarValue::Float64(Some(v)));
        }
        round_trip(ScalarValue::Float64(None));
        round_trip(ScalarValue::Float32(Some(0.1)));
        round_trip(ScalarValue::Float32(None));
        // A NaN with a payload keeps it (ScalarValue compares floats by bits).
        let nan = f64::from_bits(0x7ff8_0000_0000_0042);
        let back = ScalarWire::encode(&ScalarValue::Float64(Some(nan)))
            .unwrap()
            .decode()
            .unwrap();
        match back {
            ScalarValue::Float64(Some(f)) => assert_eq!(f.to_bits(), nan.to_bits()),
            other => panic!("expected a Float64, got {other:?}"),
        }
    }

    #[test]
    fn decimals_keep_precision_scale_and_large_values() {
        round_trip(ScalarValue::Decimal128(Some(12345), 15, 2));
        round_trip(ScalarValue::Decimal128(Some(-(10i128.pow(37))), 38, 0));
        round_trip(ScalarValue::Decimal128(None, 15, 2));
        round_trip(ScalarValue::Decimal64(Some(i64::MIN), 18, 4));
        round_trip(ScalarValue::Decimal32(Some(-5), 9, -2));
        round_trip(ScalarValue::Decimal256(Some(i256::from_i128(-7)), 76, 10));
        round_trip(ScalarValue::Decimal256(None, 40, 3));
        let json = serde_json::to_string(
            &ScalarWire::encode(&ScalarValue::Decimal128(Some(5), 15, 2)).unwrap(),
        )
        .unwrap();
        assert_eq!(
            json,
            r#"{"Decimal128":{"value":"5","precision":15,"scale":2}}"#
        );
    }

    #[test]
    fn strings_and_binaries() {
        round_trip(ScalarValue::Utf8(Some("héllo \"q\"".into())));
        round_trip(ScalarValue::Utf8(None));
        round_trip(ScalarValue::LargeUtf8(Some(String::new())));
        round_trip(ScalarValue::Utf8View(Some("view".into())));
        round_trip(ScalarValue::Binary(Some(vec![0, 1, 0xfe, 0xff])));
        round_trip(ScalarValue::LargeBinary(None));
        round_trip(ScalarValue::BinaryView(Some(vec![7])));
        round_trip(ScalarValue::FixedSizeBinary(2, Some(vec![1, 2])));
    }

    #[test]
    fn dates_times_timestamps_intervals_durations() {
        round_trip(ScalarValue::Date32(Some(9204)));
        round_trip(ScalarValue::Date32(None));
        round_trip(ScalarValue::Date64(Some(-86_400_000)));
        round_trip(ScalarValue::Time32Second(Some(59)));
        round_trip(ScalarValue::Time32Millisecond(None));
        round_trip(ScalarValue::Time64Microsecond(Some(1)));
        round_trip(ScalarValue::Time64Nanosecond(Some(2)));
        round_trip(ScalarValue::TimestampSecond(Some(1), None));
        round_trip(ScalarValue::TimestampMillisecond(
            Some(-1),
            Some("UTC".into()),
        ));
        round_trip(ScalarValue::TimestampMicrosecond(
            None,
            Some("+02:00".into()),
        ));
        round_trip(ScalarValue::TimestampNanosecond(Some(i64::MAX), None));
        round_trip(ScalarValue::IntervalYearMonth(Some(14)));
        round_trip(ScalarValue::IntervalDayTime(Some(IntervalDayTime::new(
            3, -4,
        ))));
        round_trip(ScalarValue::IntervalMonthDayNano(Some(
            IntervalMonthDayNano::new(1, 2, 3),
        )));
        round_trip(ScalarValue::IntervalMonthDayNano(None));
        round_trip(ScalarValue::DurationSecond(Some(5)));
        round_trip(ScalarValue::DurationNanosecond(None));
    }

    #[test]
    fn nested_values_travel_as_arrow_ipc() {
        let list = ScalarValue::new_list_nullable(
            &[ScalarValue::Int64(Some(1)), ScalarValue::Int64(None)],
            &DataType::Int64,
        );
        round_trip(ScalarValue::List(list));
        round_trip(typed_null(&DataType::new_list(DataType::Utf8, true)));
        let dict = ScalarValue::Dictionary(
            Box::new(DataType::Int32),
            Box::new(ScalarValue::Utf8(Some("a".into()))),
        );
        round_trip(dict);
    }

    #[test]
    fn malformed_payloads_are_plan_errors() {
        let bad = [
            ScalarWire::Float64(Some("1.2.3".into())),
            ScalarWire::Decimal128 {
                value: Some("12x".into()),
                precision: 5,
                scale: 0,
            },
            ScalarWire::Binary(Some("abc".into())),
            ScalarWire::ArrowIpc("00ff".into()),
        ];
        for w in bad {
            let err = w.decode().unwrap_err();
            assert!(
                matches!(err, EmberError::Plan(_) | EmberError::Arrow(_)),
                "{err}"
            );
        }
    }
}
