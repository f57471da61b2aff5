//! Row-group pruning: decides from a Parquet file's min/max statistics which row groups cannot
//! contain a row satisfying the scan's filters, so they are never read.
//!
//! Pruning is *inexact*: it only drops row groups that certainly have no matching row, and the
//! `Filter` above the scan still applies the predicate to every row read. So any doubt (a
//! missing statistic, an expression shape not understood, a type we do not reason about)
//! means "keep".
//!
//! Every supported predicate is evaluated over all row groups at once, as Arrow kernels on the
//! arrays of per-row-group mins and maxes:
//! ```text
//!   col = v          min <= v AND max >= v
//!   col < v          min < v            (and <=, >, >= alike)
//!   col BETWEEN a,b  max >= a AND min <= b
//!   col IN (v1, ..)  OR of col = vi
//!   p AND q / p OR q Kleene AND / OR of the parts
//! ```
//! A null in the result means "unknown" and keeps the row group.

use std::collections::HashMap;

use arrow::array::{Array, ArrayRef, BooleanArray, Scalar};
use arrow::compute::kernels::boolean::{and_kleene, or_kleene};
use arrow::compute::kernels::cmp;
use arrow::compute::{can_cast_types, cast};
use arrow::datatypes::{DataType, Schema};
use datafusion_common::ScalarValue;
use ember_planner::expr::{Expr, Operator};
use ember_planner::types::common_type;
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::file::metadata::ParquetMetaData;

/// Min/max statistics of one file's row groups, per column, loaded on first use.
struct FileStats<'a> {
    schema: &'a Schema,
    metadata: &'a ParquetMetaData,
    cache: HashMap<String, Option<(ArrayRef, ArrayRef)>>,
}

impl<'a> FileStats<'a> {
    fn min_max(&mut self, column: &str) -> Option<(ArrayRef, ArrayRef)> {
        if let Some(hit) = self.cache.get(column) {
            return hit.clone();
        }
        let loaded = self.load(column);
        self.cache.insert(column.to_string(), loaded.clone());
        loaded
    }

    fn load(&self, column: &str) -> Option<(ArrayRef, ArrayRef)> {
        let converter = StatisticsConverter::try_new(
            column,
            self.schema,
            self.metadata.file_metadata().schema_descr(),
        )
        .ok()?;
        let groups = self.metadata.row_groups();
        let mins = converter.row_group_mins(groups.iter()).ok()?;
        let maxes = converter.row_group_maxes(groups.iter()).ok()?;
        (mins.len() == groups.len() && maxes.len() == groups.len()).then_some((mins, maxes))
    }
}

/// Returns, for each row group of the file, whether it may contain rows matching all
/// `filters` (conjuncts). `file_schema` is the file's own Arrow schema.
pub fn prune_row_groups(
    filters: &[Expr],
    file_schema: &Schema,
    metadata: &ParquetMetaData,
) -> Vec<bool> {
    let n = metadata.num_row_groups();
    let mut stats = FileStats {
        schema: file_schema,
        metadata,
        cache: HashMap::new(),
    };
    let mut keep = vec![true; n];
    for filter in filters {
        if let Some(result) = may_match(filter, &mut stats, n) {
            for (i, k) in keep.iter_mut().enumerate() {
                // Only a definite `false` prunes; null means unknown.
                if result.is_valid(i) && !result.value(i) {
                    *k = false;
                }
            }
        }
    }
    keep
}

/// Per row group: true = may match, false = cannot match, null = unknown.
/// `None` when the expression is not understood at all.
fn may_match(expr: &Expr, stats: &mut FileStats<'_>, n: usize) -> Option<BooleanArray> {
    match expr {
        Expr::BinaryExpr { left, op, right } => match op {
            Operator::And => match (may_match(left, stats, n), may_match(right, stats, n)) {
                (Some(l), Some(r)) => and_kleene(&l, &r).ok(),
                (Some(one), None) | (None, Some(one)) => Some(one),
                (None, None) => None,
            },
            Operator::Or => {
                let l = may_match(left, stats, n)?;
                let r = may_match(right, stats, n)?;
                or_kleene(&l, &r).ok()
            }
            op if op.is_comparison() => {
                if let (Some(col), Some(lit)) = (column_ref(left), literal(right)) {
                    compare(stats, col, *op, lit, n)
                } else if let (Some(lit), Some(col)) = (literal(left), column_ref(right)) {
                    compare(stats, col, op.swap()?, lit, n)
                } else {
                    None
                }
            }
            _ => None,
        },
        Expr::Between {
            expr,
            negated: false,
            low,
            high,
        } => {
            let col = column_ref(expr)?;
            let above_low = compare(stats, col.clone(), Operator::GtEq, literal(low)?, n)?;
            let below_high = compare(stats, col, Operator::LtEq, literal(high)?, n)?;
            and_kleene(&above_low, &below_high).ok()
        }
        Expr::InList {
            expr,
            list,
            negated: false,
        } => {
            let col = column_ref(expr)?;
            let mut acc: Option<BooleanArray> = None;
            for item in list {
                let eq = compare(stats, col.clone(), Operator::Eq, literal(item)?, n)?;
                acc = Some(match acc {
                    None => eq,
                    Some(prev) => or_kleene(&prev, &eq).ok()?,
                });
            }
            acc
        }
        Expr::Alias(inner, _) => may_match(inner, stats, n),
        _ => None,
    }
}

/// A column reference, possibly under an order-preserving cast.
#[derive(Clone)]
struct ColumnRef<'e> {
    name: &'e str,
    cast_to: Option<&'e DataType>,
}

fn column_ref(expr: &Expr) -> Option<ColumnRef<'_>> {
    match expr {
        Expr::Column(c) => Some(ColumnRef {
            name: &c.name,
            cast_to: None,
        }),
        Expr::Cast {
            expr: inner,
            data_type,
        } => match inner.as_ref() {
            Expr::Column(c) if prunable_type(data_type) => Some(ColumnRef {
                name: &c.name,
                cast_to: Some(data_type),
            }),
            _ => None,
        },
        _ => None,
    }
}

fn literal(expr: &Expr) -> Option<&ScalarValue> {
    match expr {
        Expr::Literal(v) if !v.is_null() => Some(v),
        _ => None,
    }
}

#[derive(PartialEq)]
enum TypeFamily {
    Integer,
    Decimal,
    Date,
    String,
}

/// Types whose statistics we reason about. Casts within one family (or between integers and
/// decimals) preserve order, so min/max stay bounds after casting; floats are left out (NaN).
fn family(t: &DataType) -> Option<TypeFamily> {
    Some(match t {
        t if t.is_integer() => TypeFamily::Integer,
        DataType::Decimal128(_, _) => TypeFamily::Decimal,
        DataType::Date32 | DataType::Date64 => TypeFamily::Date,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => TypeFamily::String,
        _ => return None,
    })
}

fn prunable_type(t: &DataType) -> bool {
    family(t).is_some()
}

fn order_preserving_cast(from: &DataType, to: &DataType) -> bool {
    match (family(from), family(to)) {
        (Some(a), Some(b)) if a == b => true,
        (Some(TypeFamily::Integer), Some(TypeFamily::Decimal)) => true,
        _ => false,
    }
}

fn compare(
    stats: &mut FileStats<'_>,
    col: ColumnRef<'_>,
    op: Operator,
    value: &ScalarValue,
    n: usize,
) -> Option<BooleanArray> {
    let name = resolve_name(stats.schema, col.name)?;
    let (mut mins, mut maxes) = stats.min_max(&name)?;
    if let Some(to) = col.cast_to {
        if !order_preserving_cast(mins.data_type(), to) {
            return None;
        }
        mins = cast(&mins, to).ok()?;
        maxes = cast(&maxes, to).ok()?;
    }
    let stat_type = mins.data_type().clone();
    let lit_type = value.data_type();
    family(&stat_type)?;
    family(&lit_type)?;
    let common = common_type(&stat_type, &lit_type)?;
    if !order_preserving_cast(&stat_type, &common) || !can_cast_types(&lit_type, &common) {
        return None;
    }
    let mins = cast(&mins, &common).ok()?;
    let maxes = cast(&maxes, &common).ok()?;
    let lit = cast(&value.to_array_of_size(1).ok()?, &common).ok()?;
    if lit.null_count() > 0 {
        return None;
    }
    let v = Scalar::new(lit);
    let result = match op {
        Operator::Eq => {
            let lo = cmp::lt_eq(&mins, &v).ok()?;
            let hi = cmp::gt_eq(&maxes, &v).ok()?;
            and_kleene(&lo, &hi).ok()?
        }
        Operator::Lt => cmp::lt(&mins, &v).ok()?,
        Operator::LtEq => cmp::lt_eq(&mins, &v).ok()?,
        Operator::Gt => cmp::gt(&maxes, &v).ok()?,
        Operator::GtEq => cmp::gt_eq(&maxes, &v).ok()?,
        _ => return None,
    };
    (result.len() == n).then_some(result)
}

/// The file's spelling of a column name (exact match first, then case-insensitive).
fn resolve_name(schema: &Schema, name: &str) -> Option<String> {
    if schema.column_with_name(name).is_some() {
        return Some(name.to_string());
    }
    schema
        .fields()
        .iter()
        .find(|f| f.name().eq_ignore_ascii_case(name))
        .map(|f| f.name().clone())
}
