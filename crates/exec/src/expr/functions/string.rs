//! String functions. Arguments are read as Utf8 (other types are cast, as `upper(42)` reads
//! '42'). Where a kernel works on bytes, an all-ASCII buffer (the common case, and all of
//! TPC-H) takes the byte path; otherwise characters are counted properly.

use std::fmt::Write;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Int32Array, ListBuilder, Scalar, StringArray, StringBuilder,
};
use arrow::compute::kernels::comparison::starts_with;
use arrow::compute::kernels::{length::length, substring as substr};
use arrow::datatypes::DataType;
use datafusion_common::ScalarValue;

use ember_planner::expr::BuiltinFunction;
use ember_planner::{data_err, internal_err, plan_err, EmberError, Result};

use super::{check_arity, constant_arg, FunctionExpr, Kernel};
use crate::expr::binary::null_of;
use crate::expr::cast::coerce;
use crate::expr::PhysicalExprRef;

pub(super) fn build(func: BuiltinFunction, args: Vec<PhysicalExprRef>) -> Result<PhysicalExprRef> {
    use BuiltinFunction::*;
    let (min, max) = match func {
        Substring => (2, 3),
        Upper | Lower | Length => (1, 1),
        Trim | Ltrim | Rtrim => (1, 2),
        Concat => (1, usize::MAX),
        Split | StartsWith => (2, 2),
        other => return plan_err!("{}() is not a string function", other.name()),
    };
    check_arity(func, &args, min, max)?;
    let args = args
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            // substring's bounds are numbers; everything else is text.
            if func == Substring && i > 0 {
                coerce(a, &DataType::Int64)
            } else {
                coerce(a, &DataType::Utf8)
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let utf8 = DataType::Utf8;
    Ok(match func {
        Substring => return substring(args),
        Upper => FunctionExpr::new_ref(func, args, utf8, Box::new(|a| case_map(&a[0], true))),
        Lower => FunctionExpr::new_ref(func, args, utf8, Box::new(|a| case_map(&a[0], false))),
        Length => FunctionExpr::new_ref(
            func,
            args,
            DataType::Int32,
            Box::new(|a| char_length(&a[0])),
        ),
        Trim => return trim(func, args, Side::Both),
        Ltrim => return trim(func, args, Side::Left),
        Rtrim => return trim(func, args, Side::Right),
        Concat => FunctionExpr::new_ref(func, args, utf8, Box::new(concat)),
        Split => FunctionExpr::new_ref(
            func,
            args,
            DataType::List(Arc::new(arrow::datatypes::Field::new(
                "item",
                DataType::Utf8,
                true,
            ))),
            Box::new(|a| split(&a[0], &a[1])),
        ),
        StartsWith => {
            let kernel: Kernel = match args[1].as_literal() {
                Some(prefix) => {
                    let prefix = Scalar::new(prefix.to_array_of_size(1)?);
                    Box::new(move |a| Ok(Arc::new(starts_with(&a[0], &prefix)?)))
                }
                None => Box::new(|a| Ok(Arc::new(starts_with(&a[0], &a[1])?))),
            };
            let args = if args[1].as_literal().is_some() {
                vec![args[0].clone()]
            } else {
                args
            };
            FunctionExpr::new_ref(func, args, DataType::Boolean, kernel)
        }
        other => return internal_err!("{}() is not a string function", other.name()),
    })
}

fn utf8(a: &ArrayRef) -> &StringArray {
    a.as_string::<i32>()
}

/// True when every byte of the array's data is ASCII, so byte positions are characters.
fn is_ascii(a: &StringArray) -> bool {
    a.value_data().is_ascii()
}

// ---- substring ------------------------------------------------------------------------------

/// `substring(s, start[, len])` with SQL semantics: characters at 1-based positions
/// `[start, start + len)`, clipped to the string (so `substring('abc', 0, 2)` is 'a'); a
/// negative length is an error.
fn substring(args: Vec<PhysicalExprRef>) -> Result<PhysicalExprRef> {
    let func = BuiltinFunction::Substring;
    let start = args[1].as_literal().cloned();
    let len = match args.get(2) {
        Some(a) => a.as_literal().cloned().map(Some),
        None => Some(None),
    };
    if let (Some(start), Some(len)) = (start, len) {
        // A NULL bound makes every result NULL.
        let Some(start) = int_value(&start) else {
            return null_of(&DataType::Utf8);
        };
        let len = match len {
            None => None,
            Some(l) => match int_value(&l) {
                Some(l) => Some(l),
                None => return null_of(&DataType::Utf8),
            },
        };
        let (from, count) = char_range(start, len)?;
        return Ok(FunctionExpr::new_ref(
            func,
            vec![args[0].clone()],
            DataType::Utf8,
            Box::new(move |a| substring_const(&a[0], from, count)),
        ));
    }
    Ok(FunctionExpr::new_ref(
        func,
        args,
        DataType::Utf8,
        Box::new(substring_rows),
    ))
}

fn int_value(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::Int64(x) => *x,
        _ => None,
    }
}

/// SQL `(start, len)` → 0-based first character and character count.
fn char_range(start: i64, len: Option<i64>) -> Result<(u64, Option<u64>)> {
    let first = start.max(1);
    let count = match len {
        Some(l) if l < 0 => return data_err!("substring(): negative length {l}"),
        Some(l) => Some(start.saturating_add(l).saturating_sub(first).max(0) as u64),
        None => None,
    };
    Ok(((first - 1) as u64, count))
}

fn substring_const(a: &ArrayRef, from: u64, count: Option<u64>) -> Result<ArrayRef> {
    let s = utf8(a);
    if is_ascii(s) {
        // Byte offsets are i32 for Utf8: clip so huge bounds mean "to the end".
        let from = from.min(i32::MAX as u64) as i64;
        let count = count.map(|c| c.min(i32::MAX as u64));
        Ok(substr::substring(a.as_ref(), from, count)?)
    } else {
        Ok(Arc::new(substr::substring_by_char(s, from as i64, count)?))
    }
}

fn substring_rows(a: &[ArrayRef]) -> Result<ArrayRef> {
    let s = utf8(&a[0]);
    let start = a[1].as_primitive::<arrow::datatypes::Int64Type>();
    let len = a
        .get(2)
        .map(|l| l.as_primitive::<arrow::datatypes::Int64Type>());
    let mut out = StringBuilder::with_capacity(s.len(), s.value_data().len());
    for i in 0..s.len() {
        let len_i = match len {
            Some(l) if l.is_null(i) => {
                out.append_null();
                continue;
            }
            Some(l) => Some(l.value(i)),
            None => None,
        };
        if s.is_null(i) || start.is_null(i) {
            out.append_null();
            continue;
        }
        let (from, count) = char_range(start.value(i), len_i)?;
        let v = s.value(i);
        let chars = v.chars().skip(from as usize);
        match count {
            Some(c) => out.append_value(chars.take(c as usize).collect::<String>()),
            None => out.append_value(chars.collect::<String>()),
        }
    }
    Ok(Arc::new(out.finish()))
}

// ---- case, length, trim -----------------------------------------------------------------------

/// `upper` / `lower`. ASCII data keeps its offsets and maps the bytes in one pass.
fn case_map(a: &ArrayRef, upper: bool) -> Result<ArrayRef> {
    let s = utf8(a);
    if is_ascii(s) {
        let bytes: Vec<u8> = if upper {
            s.value_data().to_ascii_uppercase()
        } else {
            s.value_data().to_ascii_lowercase()
        };
        return Ok(Arc::new(StringArray::try_new(
            s.offsets().clone(),
            bytes.into(),
            s.nulls().cloned(),
        )?));
    }
    let out: StringArray = s
        .iter()
        .map(|v| {
            v.map(|v| {
                if upper {
                    v.to_uppercase()
                } else {
                    v.to_lowercase()
                }
            })
        })
        .collect();
    Ok(Arc::new(out))
}

/// Length in characters.
fn char_length(a: &ArrayRef) -> Result<ArrayRef> {
    let s = utf8(a);
    if is_ascii(s) {
        return Ok(length(a.as_ref())?);
    }
    let out: Int32Array = s
        .iter()
        .map(|v| v.map(|v| v.chars().count() as i32))
        .collect();
    Ok(Arc::new(out))
}

#[derive(Clone, Copy)]
enum Side {
    Both,
    Left,
    Right,
}

fn trim_str<'a>(s: &'a str, chars: &[char], side: Side) -> &'a str {
    let m = |c: char| chars.contains(&c);
    match side {
        Side::Both => s.trim_matches(m),
        Side::Left => s.trim_start_matches(m),
        Side::Right => s.trim_end_matches(m),
    }
}

/// `trim(s[, characters])`: removes spaces (or the given characters) from the ends.
fn trim(func: BuiltinFunction, args: Vec<PhysicalExprRef>, side: Side) -> Result<PhysicalExprRef> {
    let chars: Option<Vec<char>> = match args.get(1) {
        None => Some(vec![' ']),
        Some(a) if a.as_literal().is_some() => {
            match constant_arg(func, a, "the characters to trim")?
                .try_as_str()
                .flatten()
            {
                Some(c) => Some(c.chars().collect()),
                None => return null_of(&DataType::Utf8),
            }
        }
        Some(_) => None,
    };
    Ok(match chars {
        Some(chars) => FunctionExpr::new_ref(
            func,
            vec![args[0].clone()],
            DataType::Utf8,
            Box::new(move |a| {
                let out: StringArray = utf8(&a[0])
                    .iter()
                    .map(|v| v.map(|v| trim_str(v, &chars, side)))
                    .collect();
                Ok(Arc::new(out))
            }),
        ),
        None => FunctionExpr::new_ref(
            func,
            args,
            DataType::Utf8,
            Box::new(move |a| {
                let out: StringArray = utf8(&a[0])
                    .iter()
                    .zip(utf8(&a[1]).iter())
                    .map(|(v, c)| {
                        let chars: Vec<char> = c?.chars().collect();
                        Some(trim_str(v?, &chars, side).to_string())
                    })
                    .collect();
                Ok(Arc::new(out))
            }),
        ),
    })
}

// ---- concat, split ------------------------------------------------------------------------------

/// `concat(a, b, ...)`: NULL arguments are skipped (as in PostgreSQL), so the result is
/// never NULL.
fn concat(args: &[ArrayRef]) -> Result<ArrayRef> {
    let args: Vec<&StringArray> = args.iter().map(utf8).collect();
    let rows = args.first().map_or(0, |a| a.len());
    let bytes = args.iter().map(|a| a.value_data().len()).sum();
    let mut out = StringBuilder::with_capacity(rows, bytes);
    for i in 0..rows {
        for a in &args {
            if a.is_valid(i) {
                out.write_str(a.value(i))
                    .map_err(|e| EmberError::Execution(format!("concat(): {e}")))?;
            }
        }
        out.append_value("");
    }
    Ok(Arc::new(out.finish()))
}

/// `split(s, separator)` → list of parts. An empty separator yields the whole string.
fn split(s: &ArrayRef, sep: &ArrayRef) -> Result<ArrayRef> {
    let (s, sep) = (utf8(s), utf8(sep));
    let mut out = ListBuilder::new(StringBuilder::new());
    for (v, p) in s.iter().zip(sep.iter()) {
        match (v, p) {
            (Some(v), Some("")) => {
                out.values().append_value(v);
                out.append(true);
            }
            (Some(v), Some(p)) => {
                for part in v.split(p) {
                    out.values().append_value(part);
                }
                out.append(true);
            }
            _ => out.append(false),
        }
    }
    Ok(Arc::new(out.finish()))
}

#[cfg(test)]
mod tests {
    use arrow::record_batch::RecordBatch;
    use ember_planner::expr::{col, func, lit, BuiltinFunction as F};

    use super::*;
    use crate::expr::test_util::{batch, eval, eval_bools, eval_err, strings};

    fn b() -> RecordBatch {
        batch(vec![
            (
                "s",
                Arc::new(StringArray::from(vec![
                    Some("13-719-123"),
                    None,
                    Some("  héllo "),
                ])) as ArrayRef,
            ),
            (
                "ascii",
                Arc::new(StringArray::from(vec![Some("Brand#13"), Some("x"), None])) as ArrayRef,
            ),
            (
                "n",
                Arc::new(arrow::array::Int64Array::from(vec![
                    Some(2),
                    Some(1),
                    Some(-1),
                ])) as ArrayRef,
            ),
        ])
    }

    #[test]
    fn substring_is_one_based_and_clipped() {
        let e = func(F::Substring, vec![col("s"), lit(1i64), lit(2i64)]);
        assert_eq!(strings(&eval(&e, &b())), ["13", "NULL", "  "]);
        let e = func(F::Substring, vec![col("s"), lit(4i64)]);
        assert_eq!(strings(&eval(&e, &b())), ["719-123", "NULL", "éllo "]);
        let e = func(F::Substring, vec![col("ascii"), lit(0i64), lit(3i64)]);
        assert_eq!(strings(&eval(&e, &b())), ["Br", "x", "NULL"]);
        // Per-row bounds, multi-byte characters counted as one.
        let e = func(F::Substring, vec![col("s"), col("n"), lit(3i64)]);
        assert_eq!(strings(&eval(&e, &b())), ["3-7", "NULL", " "]);
        let e = func(F::Substring, vec![col("s"), lit(1i64), lit(-1i64)]);
        assert!(eval_err(&e, &b()).contains("negative length"));
    }

    #[test]
    fn case_length_and_trim() {
        let e = func(F::Upper, vec![col("s")]);
        assert_eq!(strings(&eval(&e, &b())), ["13-719-123", "NULL", "  HÉLLO "]);
        let e = func(F::Lower, vec![col("ascii")]);
        assert_eq!(strings(&eval(&e, &b())), ["brand#13", "x", "NULL"]);
        let e = func(F::Length, vec![col("s")]);
        assert_eq!(strings(&eval(&e, &b())), ["10", "NULL", "8"]);
        let e = func(F::Length, vec![col("ascii")]);
        assert_eq!(strings(&eval(&e, &b())), ["8", "1", "NULL"]);
        let e = func(F::Trim, vec![col("s")]);
        assert_eq!(strings(&eval(&e, &b()))[2], "héllo");
        let e = func(F::Ltrim, vec![col("s")]);
        assert_eq!(strings(&eval(&e, &b()))[2], "héllo ");
        let e = func(F::Rtrim, vec![col("ascii"), lit("#13")]);
        assert_eq!(strings(&eval(&e, &b()))[0], "Brand");
    }

    #[test]
    fn concat_skips_nulls_and_split_makes_lists() {
        let e = func(F::Concat, vec![col("ascii"), lit("-"), col("s")]);
        assert_eq!(
            strings(&eval(&e, &b())),
            ["Brand#13-13-719-123", "x-", "-  héllo "]
        );
        let e = func(F::Split, vec![col("s"), lit("-")]);
        assert_eq!(
            strings(&eval(&e, &b())),
            ["[13, 719, 123]", "NULL", "[  héllo ]"]
        );
    }

    #[test]
    fn starts_with_constant_and_column_prefix() {
        let e = func(F::StartsWith, vec![col("ascii"), lit("Brand")]);
        assert_eq!(eval_bools(&e, &b()), vec![Some(true), Some(false), None]);
        let e = func(F::StartsWith, vec![col("ascii"), col("ascii")]);
        assert_eq!(eval_bools(&e, &b()), vec![Some(true), Some(true), None]);
    }

    #[test]
    fn wrong_arity_is_a_plan_error() {
        let e = func(F::Upper, vec![]);
        assert!(crate::expr::test_util::try_eval(&e, &b()).is_err());
    }
}
