//! `date_part(field, d)` / `EXTRACT(field FROM d)` on Arrow's temporal kernel; Int32 result.

use std::sync::Arc;

use arrow::compute::kernels::temporal::{date_part, DatePart};
use arrow::datatypes::DataType;

use ember_planner::expr::BuiltinFunction;
use ember_planner::types::is_string;
use ember_planner::{plan_err, Result};

use super::{check_arity, constant_arg, FunctionExpr};
use crate::expr::binary::null_of;
use crate::expr::cast::coerce;
use crate::expr::PhysicalExprRef;

pub(super) fn build(args: Vec<PhysicalExprRef>) -> Result<PhysicalExprRef> {
    let func = BuiltinFunction::DatePart;
    check_arity(func, &args, 2, 2)?;
    let field = match constant_arg(func, &args[0], "the field")?.try_as_str() {
        Some(Some(f)) => f.to_ascii_lowercase(),
        Some(None) => return null_of(&DataType::Int32),
        None => return plan_err!("date_part(): the field must be a string such as 'year'"),
    };
    let part = parse_field(&field)?;
    let t = args[1].data_type().clone();
    let value = match &t {
        DataType::Date32
        | DataType::Date64
        | DataType::Timestamp(..)
        | DataType::Time32(_)
        | DataType::Time64(_) => args[1].clone(),
        t if is_string(t) || *t == DataType::Null => coerce(args[1].clone(), &DataType::Date32)?,
        other => {
            return plan_err!("date_part('{field}', ...) needs a date or timestamp, got {other}")
        }
    };
    Ok(FunctionExpr::new_ref(
        func,
        vec![value],
        DataType::Int32,
        Box::new(move |a| Ok(Arc::new(date_part(a[0].as_ref(), part)?) as _)),
    ))
}

/// Field names as PostgreSQL spells them (`dow` is 0 = Sunday), plus Spark's `dayofweek`
/// (1 = Sunday).
fn parse_field(field: &str) -> Result<DatePart> {
    Ok(match field {
        "year" | "years" | "y" | "yr" | "yrs" => DatePart::Year,
        "isoyear" => DatePart::YearISO,
        "quarter" | "qtr" => DatePart::Quarter,
        "month" | "months" | "mon" | "mons" => DatePart::Month,
        "week" | "weeks" | "w" => DatePart::Week,
        "day" | "days" | "d" => DatePart::Day,
        "dow" => DatePart::DayOfWeekSunday0,
        "dayofweek" => DatePart::DayOfWeekSunday1,
        "isodow" | "dayofweek_iso" => DatePart::DayOfWeekMonday1,
        "doy" | "dayofyear" => DatePart::DayOfYear,
        "hour" | "hours" | "h" => DatePart::Hour,
        "minute" | "minutes" | "m" | "min" | "mins" => DatePart::Minute,
        "second" | "seconds" | "s" | "sec" | "secs" => DatePart::Second,
        "millisecond" | "milliseconds" | "ms" => DatePart::Millisecond,
        "microsecond" | "microseconds" | "us" => DatePart::Microsecond,
        "nanosecond" | "nanoseconds" | "ns" => DatePart::Nanosecond,
        other => return plan_err!("date_part(): unknown field '{other}'"),
    })
}

#[cfg(test)]
mod tests {
    use arrow::array::{ArrayRef, Date32Array};
    use arrow::record_batch::RecordBatch;
    use ember_planner::expr::{col, func, lit, BuiltinFunction as F};

    use super::*;
    use crate::expr::test_util::{batch, eval, eval_err, strings};

    fn b() -> RecordBatch {
        // 1995-03-15 (a Wednesday), NULL, 1998-12-31
        batch(vec![(
            "d",
            Arc::new(Date32Array::from(vec![Some(9204), None, Some(10591)])) as ArrayRef,
        )])
    }

    #[test]
    fn extract_fields_of_dates() {
        let part = |f: &str| strings(&eval(&func(F::DatePart, vec![lit(f), col("d")]), &b()));
        assert_eq!(part("year"), ["1995", "NULL", "1998"]);
        assert_eq!(part("MONTH"), ["3", "NULL", "12"]);
        assert_eq!(part("day"), ["15", "NULL", "31"]);
        assert_eq!(part("quarter"), ["1", "NULL", "4"]);
        assert_eq!(part("dow"), ["3", "NULL", "4"]);
        assert_eq!(part("doy"), ["74", "NULL", "365"]);
    }

    #[test]
    fn extract_from_string_and_unknown_field() {
        let e = func(F::DatePart, vec![lit("year"), lit("1996-02-29")]);
        assert_eq!(strings(&eval(&e, &b())), ["1996", "1996", "1996"]);
        let err = eval_err(&func(F::DatePart, vec![lit("fortnight"), col("d")]), &b());
        assert!(err.contains("unknown field 'fortnight'"), "{err}");
    }
}
