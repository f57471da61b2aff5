//! `x [NOT] IN (a, b, ...)` with SQL's NULL rules: NULL when `x` is NULL, or when nothing
//! matched and the list holds a NULL.
//!
//! A short constant list is a chain of vectorised `=` against scalars (a few SIMD passes
//! beat hashing); a long one is a hash set probed once per row. Lists with non-constant
//! items are always the `=` chain.

use std::hash::Hash;
use std::sync::Arc;

use ahash::AHashSet;
use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, PrimitiveArray};
use arrow::buffer::NullBuffer;
use arrow::compute::kernels::{boolean, cmp};
use arrow::datatypes::*;
use arrow::record_batch::RecordBatch;
use datafusion_common::ScalarValue;

use ember_planner::types::common_type;
use ember_planner::{plan_err, Result};

use super::binary::null_of;
use super::cast::{coerce, comparison_type};
use super::datum::Operand;
use super::{PhysicalExpr, PhysicalExprRef};

/// Lists longer than this use a hash set (strings compare slower, so switch earlier).
const PRIMITIVE_SET_THRESHOLD: usize = 12;
const STRING_SET_THRESHOLD: usize = 4;

pub(crate) fn build(
    expr: PhysicalExprRef,
    list: Vec<PhysicalExprRef>,
    negated: bool,
) -> Result<PhysicalExprRef> {
    let mut t = expr.data_type().clone();
    for item in &list {
        t = match common_type(&t, item.data_type()) {
            Some(t) => t,
            None => {
                return plan_err!(
                    "IN list item of type {} cannot be compared with {}",
                    item.data_type(),
                    expr.data_type()
                )
            }
        };
    }
    if t == DataType::Null || list.is_empty() {
        return null_of(&DataType::Boolean);
    }
    let t = comparison_type(&expr, &list.iter().collect::<Vec<_>>(), t);
    let expr = coerce(expr, &t)?;
    let list = list
        .into_iter()
        .map(|e| coerce(e, &t))
        .collect::<Result<Vec<_>>>()?;
    let constants: Option<Vec<ScalarValue>> =
        list.iter().map(|e| e.as_literal().cloned()).collect();
    let matcher = match constants {
        Some(values) => match LiteralSet::try_new(&t, &values) {
            Some(set) => Matcher::Set {
                set,
                has_null: values.iter().any(ScalarValue::is_null),
            },
            None => Matcher::Chain(list.into_iter().map(Operand::new).collect::<Result<_>>()?),
        },
        None => Matcher::Chain(list.into_iter().map(Operand::new).collect::<Result<_>>()?),
    };
    Ok(Arc::new(InListExpr {
        expr,
        matcher,
        negated,
    }))
}

#[derive(Debug)]
enum Matcher {
    /// `x = a OR x = b OR ...` (Kleene OR gives the NULL rules for free).
    Chain(Vec<Operand>),
    Set {
        set: LiteralSet,
        has_null: bool,
    },
}

/// The non-null constants of a long list, by physical type.
#[derive(Debug)]
enum LiteralSet {
    I64(AHashSet<i64>),
    U64(AHashSet<u64>),
    I128(AHashSet<i128>),
    Str(AHashSet<String>),
}

impl LiteralSet {
    /// `None` when the list is short or its type is not hashed here (floats compare by
    /// `=`, so -0.0 and NaN keep the kernel's semantics).
    fn try_new(t: &DataType, values: &[ScalarValue]) -> Option<LiteralSet> {
        let threshold = if matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) {
            STRING_SET_THRESHOLD
        } else {
            PRIMITIVE_SET_THRESHOLD
        };
        if values.len() <= threshold {
            return None;
        }
        let non_null = values.iter().filter(|v| !v.is_null());
        Some(match t {
            t if t.is_signed_integer() || *t == DataType::Date32 => LiteralSet::I64(
                non_null
                    .map(|v| v.cast_to(&DataType::Int64).ok().and_then(|v| i64_of(&v)))
                    .collect::<Option<_>>()?,
            ),
            t if t.is_unsigned_integer() => LiteralSet::U64(
                non_null
                    .map(|v| match v.cast_to(&DataType::UInt64).ok()? {
                        ScalarValue::UInt64(Some(x)) => Some(x),
                        _ => None,
                    })
                    .collect::<Option<_>>()?,
            ),
            DataType::Decimal128(..) => LiteralSet::I128(
                non_null
                    .map(|v| match v {
                        ScalarValue::Decimal128(Some(x), _, _) => Some(*x),
                        _ => None,
                    })
                    .collect::<Option<_>>()?,
            ),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => LiteralSet::Str(
                non_null
                    .map(|v| v.try_as_str().flatten().map(str::to_string))
                    .collect::<Option<_>>()?,
            ),
            _ => return None,
        })
    }

    /// Whether each value is in the set (the input's nulls are kept).
    fn contains(&self, array: &dyn Array) -> Option<BooleanArray> {
        fn probe<T, S>(a: &PrimitiveArray<T>, set: &AHashSet<S>) -> BooleanArray
        where
            T: ArrowPrimitiveType,
            T::Native: Into<S>,
            S: Hash + Eq,
        {
            BooleanArray::from_unary(a, |v| set.contains(&v.into()))
        }
        Some(match (self, array.data_type()) {
            (LiteralSet::I64(s), DataType::Int8) => probe(array.as_primitive::<Int8Type>(), s),
            (LiteralSet::I64(s), DataType::Int16) => probe(array.as_primitive::<Int16Type>(), s),
            (LiteralSet::I64(s), DataType::Int32) => probe(array.as_primitive::<Int32Type>(), s),
            (LiteralSet::I64(s), DataType::Int64) => probe(array.as_primitive::<Int64Type>(), s),
            (LiteralSet::I64(s), DataType::Date32) => probe(array.as_primitive::<Date32Type>(), s),
            (LiteralSet::U64(s), DataType::UInt8) => probe(array.as_primitive::<UInt8Type>(), s),
            (LiteralSet::U64(s), DataType::UInt16) => probe(array.as_primitive::<UInt16Type>(), s),
            (LiteralSet::U64(s), DataType::UInt32) => probe(array.as_primitive::<UInt32Type>(), s),
            (LiteralSet::U64(s), DataType::UInt64) => probe(array.as_primitive::<UInt64Type>(), s),
            (LiteralSet::I128(s), DataType::Decimal128(..)) => {
                probe(array.as_primitive::<Decimal128Type>(), s)
            }
            (LiteralSet::Str(s), DataType::Utf8) => {
                BooleanArray::from_unary(array.as_string::<i32>(), |v| s.contains(v))
            }
            (LiteralSet::Str(s), DataType::LargeUtf8) => {
                BooleanArray::from_unary(array.as_string::<i64>(), |v| s.contains(v))
            }
            (LiteralSet::Str(s), DataType::Utf8View) => {
                BooleanArray::from_unary(array.as_string_view(), |v| s.contains(v))
            }
            _ => return None,
        })
    }
}

fn i64_of(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::Int64(Some(x)) => Some(*x),
        _ => None,
    }
}

#[derive(Debug)]
struct InListExpr {
    expr: PhysicalExprRef,
    matcher: Matcher,
    negated: bool,
}

impl PhysicalExpr for InListExpr {
    fn data_type(&self) -> &DataType {
        &DataType::Boolean
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        let value = self.expr.evaluate(batch)?;
        let found = match &self.matcher {
            Matcher::Chain(items) => {
                let mut acc: Option<BooleanArray> = None;
                for item in items {
                    let item = item.evaluate(batch)?;
                    let eq = cmp::eq(&value, item.datum())?;
                    acc = Some(match acc {
                        None => eq,
                        Some(a) => boolean::or_kleene(&a, &eq)?,
                    });
                }
                match acc {
                    Some(a) => a,
                    None => BooleanArray::new_null(value.len()),
                }
            }
            Matcher::Set { set, has_null } => {
                let Some(found) = set.contains(value.as_ref()) else {
                    return ember_planner::internal_err!(
                        "IN set built for another type than {}",
                        value.data_type()
                    );
                };
                if *has_null {
                    // No match against a list with a NULL is NULL, not false.
                    let (values, nulls) = found.into_parts();
                    let valid = match nulls {
                        Some(n) => n.inner() & &values,
                        None => values.clone(),
                    };
                    BooleanArray::new(values, Some(NullBuffer::new(valid)))
                } else {
                    found
                }
            }
        };
        Ok(Arc::new(if self.negated {
            boolean::not(&found)?
        } else {
            found
        }))
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, StringArray};
    use ember_planner::expr::{col, lit, Expr};

    use super::*;
    use crate::expr::test_util::{batch, eval_bools};

    fn b() -> RecordBatch {
        batch(vec![
            (
                "n",
                Arc::new(Int64Array::from(vec![Some(3), Some(5), None, Some(49)])) as ArrayRef,
            ),
            (
                "s",
                Arc::new(StringArray::from(vec![
                    Some("13"),
                    Some("31"),
                    None,
                    Some("99"),
                ])) as ArrayRef,
            ),
        ])
    }

    fn ints(values: &[i64]) -> Vec<Expr> {
        values.iter().map(|v| lit(*v)).collect()
    }

    #[test]
    fn short_and_long_lists_agree() {
        let short = col("n").in_list(ints(&[49, 3]), false);
        let long = col("n").in_list(
            ints(&[49, 14, 23, 45, 19, 3, 36, 9, 1, 2, 4, 6, 7, 8]),
            false,
        );
        let expected = vec![Some(true), Some(false), None, Some(true)];
        assert_eq!(eval_bools(&short, &b()), expected);
        assert_eq!(eval_bools(&long, &b()), expected);
    }

    #[test]
    fn string_set_and_not_in() {
        let codes = ["13", "31", "23", "29", "30", "18", "17"];
        let list: Vec<Expr> = codes.iter().map(|c| lit(*c)).collect();
        assert_eq!(
            eval_bools(&col("s").in_list(list.clone(), false), &b()),
            vec![Some(true), Some(true), None, Some(false)]
        );
        assert_eq!(
            eval_bools(&col("s").in_list(list, true), &b()),
            vec![Some(false), Some(false), None, Some(true)]
        );
    }

    #[test]
    fn null_in_list_makes_misses_null() {
        let mut list = ints(&[1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
        list.push(lit(ScalarValue::Int64(None)));
        let long = col("n").in_list(list, false);
        assert_eq!(eval_bools(&long, &b()), vec![Some(true), None, None, None]);
        let short = col("n").in_list(vec![lit(3i64), lit(ScalarValue::Int64(None))], true);
        assert_eq!(
            eval_bools(&short, &b()),
            vec![Some(false), None, None, None]
        );
    }

    #[test]
    fn non_constant_items_use_the_chain() {
        let e = lit(5i64).in_list(vec![col("n"), lit(0i64)], false);
        assert_eq!(
            eval_bools(&e, &b()),
            vec![Some(false), Some(true), None, Some(false)]
        );
    }
}
