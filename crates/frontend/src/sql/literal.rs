//! Literal text → typed scalar values: numbers (integers as Int64, decimals exactly as
//! Decimal128(p, s) so `0.06` stays 6/100 rather than a float), dates and intervals.

use arrow::datatypes::{IntervalMonthDayNano, DECIMAL128_MAX_PRECISION};
use chrono::NaiveDate;
use datafusion_common::ScalarValue;

use ember_planner::{plan_err, Result};

/// A numeric literal. Integers are Int64 (wider ones Decimal128(p, 0)); numbers with a '.'
/// are Decimal128 with exactly the written digits; exponents make Float64.
pub fn number_literal(text: &str, negate: bool) -> Result<ScalarValue> {
    let sign = if negate { -1 } else { 1 };
    if text.contains(['e', 'E']) {
        return match text.parse::<f64>() {
            Ok(f) => Ok(ScalarValue::Float64(Some(f * sign as f64))),
            Err(_) => plan_err!("invalid number literal '{text}'"),
        };
    }
    let (int_part, frac_part) = text.split_once('.').unwrap_or((text, ""));
    if !int_part
        .chars()
        .chain(frac_part.chars())
        .all(|c| c.is_ascii_digit())
    {
        return plan_err!("invalid number literal '{text}'");
    }
    if frac_part.is_empty() && !text.contains('.') {
        let magnitude = format!("{}{int_part}", if negate { "-" } else { "" });
        if let Ok(v) = magnitude.parse::<i64>() {
            return Ok(ScalarValue::Int64(Some(v)));
        }
    }
    let int_digits = int_part.trim_start_matches('0');
    let scale = frac_part.len();
    let precision = (int_digits.len() + scale).max(1);
    if precision > DECIMAL128_MAX_PRECISION as usize {
        return match text.parse::<f64>() {
            Ok(f) => Ok(ScalarValue::Float64(Some(f * sign as f64))),
            Err(_) => plan_err!("invalid number literal '{text}'"),
        };
    }
    let digits = format!("{int_digits}{frac_part}");
    let unscaled: i128 = if digits.is_empty() {
        0
    } else {
        match digits.parse() {
            Ok(v) => v,
            Err(_) => return plan_err!("invalid number literal '{text}'"),
        }
    };
    Ok(ScalarValue::Decimal128(
        Some(unscaled * sign as i128),
        precision as u8,
        scale as i8,
    ))
}

/// `DATE 'YYYY-MM-DD'` → days since the Unix epoch.
pub fn date_literal(text: &str) -> Result<ScalarValue> {
    let date = match NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d") {
        Ok(d) => d,
        Err(e) => return plan_err!("invalid date literal '{text}' (expected YYYY-MM-DD): {e}"),
    };
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("1970-01-01 is a valid date");
    let days = date.signed_duration_since(epoch).num_days();
    match i32::try_from(days) {
        Ok(d) => Ok(ScalarValue::Date32(Some(d))),
        Err(_) => plan_err!("date literal '{text}' is out of range"),
    }
}

/// `INTERVAL '3' MONTH`, `INTERVAL '90' DAY`, `INTERVAL '1 year 2 months'`, ...
/// `unit` is the field written after the string, if any.
pub fn interval_literal(text: &str, unit: Option<&str>) -> Result<ScalarValue> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let pairs: Vec<(&str, &str)> = match (unit, words.as_slice()) {
        (Some(u), [n]) => vec![(*n, u)],
        (Some(_), _) => {
            return plan_err!("invalid interval '{text}': expected a single number before the unit")
        }
        (None, w) if !w.is_empty() && w.len() % 2 == 0 => {
            w.chunks(2).map(|c| (c[0], c[1])).collect()
        }
        _ => return plan_err!("invalid interval '{text}': expected '<number> <unit> ...'"),
    };
    let (mut months, mut days, mut nanos) = (0i64, 0i64, 0i64);
    for (n, u) in pairs {
        let n: i64 = match n.parse() {
            Ok(v) => v,
            Err(_) => return plan_err!("invalid interval '{text}': '{n}' is not a whole number"),
        };
        let unit = u.to_ascii_lowercase();
        let unit = unit.strip_suffix('s').unwrap_or(&unit);
        match unit {
            "year" => months += n * 12,
            "month" => months += n,
            "week" => days += n * 7,
            "day" => days += n,
            "hour" => nanos += n * 3_600_000_000_000,
            "minute" => nanos += n * 60_000_000_000,
            "second" => nanos += n * 1_000_000_000,
            "millisecond" => nanos += n * 1_000_000,
            "microsecond" => nanos += n * 1_000,
            "nanosecond" => nanos += n,
            other => return plan_err!("invalid interval '{text}': unknown unit '{other}'"),
        }
    }
    let (Ok(months), Ok(days)) = (i32::try_from(months), i32::try_from(days)) else {
        return plan_err!("interval '{text}' is out of range");
    };
    Ok(ScalarValue::IntervalMonthDayNano(Some(
        IntervalMonthDayNano::new(months, days, nanos),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_keep_their_written_precision_and_scale() {
        assert_eq!(
            number_literal("0.06", false).unwrap(),
            ScalarValue::Decimal128(Some(6), 2, 2)
        );
        assert_eq!(
            number_literal("12.50", true).unwrap(),
            ScalarValue::Decimal128(Some(-1250), 4, 2)
        );
        assert_eq!(
            number_literal("42", false).unwrap(),
            ScalarValue::Int64(Some(42))
        );
        assert_eq!(
            number_literal("9223372036854775808", false).unwrap(),
            ScalarValue::Decimal128(Some(9223372036854775808), 19, 0)
        );
        assert_eq!(
            number_literal("1e3", false).unwrap(),
            ScalarValue::Float64(Some(1000.0))
        );
    }

    #[test]
    fn dates_and_intervals() {
        assert_eq!(
            date_literal("1970-01-02").unwrap(),
            ScalarValue::Date32(Some(1))
        );
        assert!(date_literal("1998-13-01").is_err());
        assert_eq!(
            interval_literal("3", Some("month")).unwrap(),
            ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(3, 0, 0)))
        );
        assert_eq!(
            interval_literal("1 year 2 days", None).unwrap(),
            ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(12, 2, 0)))
        );
        assert!(interval_literal("3 fortnights", None).is_err());
    }
}
