//! Dynamic join filter: drops rows whose join keys occur nowhere on the join's other side
//! (see `ember_planner::physical::dynamic_filter` for where the planner puts it and why).
//!
//! The key set is read from the whole of the source shuffle — every reduce partition — once
//! per process and stage (`shared_build`), and probed per row. A single integer key, the
//! common case (order keys, part keys), is a set of `i64`; anything else is a set of
//! arrow-row encodings. Rows with a NULL key never match an equi-join and are dropped.
//!
//! The filter watches what it does: when, after [`PROBE_ROWS`] rows, it has kept more than
//! [`USEFUL_PASS_RATE`] of them, the lookups cost more than they save and it passes the rest
//! of the partition through unchanged (the join above still matches every key).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, BooleanBufferBuilder, RecordBatch};
use arrow::buffer::NullBuffer;
use arrow::compute::{cast_with_options, CastOptions};
use arrow::datatypes::{DataType, Int64Type};
use arrow::row::{RowConverter, SortField};
use hashbrown::HashSet;

use ember_planner::expr::Expr;
use ember_planner::physical::PhysicalPlan;
use ember_planner::table::BatchIter;
use ember_planner::Result;

use super::check_cancelled;
use super::filter::filter_batches;
use super::hash_join::broadcast_partitions;
use super::shared_build::shared;
use crate::context::TaskContext;
use crate::expr::{create_physical_expr, PhysicalExprRef};

/// Rows looked at before the filter judges whether it is worth its lookups.
const PROBE_ROWS: usize = 100_000;

/// Above this fraction of rows kept, the filter turns itself off.
const USEFUL_PASS_RATE: f64 = 0.9;

pub fn execute_dynamic_filter(
    node: &Arc<PhysicalPlan>,
    partition: usize,
    ctx: &Arc<TaskContext>,
) -> Result<BatchIter> {
    let PhysicalPlan::DynamicFilter {
        input,
        keys,
        source,
        source_keys,
    } = node.as_ref()
    else {
        return Err(ember_planner::EmberError::Internal(format!(
            "execute_dynamic_filter called on {}",
            node.describe_node()
        )));
    };
    let build = || KeySet::build(source, source_keys, ctx);
    let set = if ctx.attempt == 0 {
        shared(node, build)?
    } else {
        Arc::new(build()?)
    };
    let keys = compile(keys, input, ctx)?;
    let input = super::execute(input, partition, ctx)?;
    let mut seen = 0usize;
    let mut kept = 0usize;
    let mut active = true;
    let mask = Box::new(move |batch: &RecordBatch| {
        if !active {
            return Ok(None);
        }
        let key_arrays = keys
            .iter()
            .map(|k| k.evaluate(batch))
            .collect::<Result<Vec<_>>>()?;
        let mask = set.contains(&key_arrays)?;
        seen += batch.num_rows();
        kept += mask.true_count();
        if seen >= PROBE_ROWS && kept as f64 > seen as f64 * USEFUL_PASS_RATE {
            active = false;
        }
        Ok(Some(mask))
    });
    Ok(filter_batches(input, mask, ctx.batch_size))
}

fn compile(exprs: &[Expr], plan: &PhysicalPlan, ctx: &TaskContext) -> Result<Vec<PhysicalExprRef>> {
    exprs
        .iter()
        .map(|e| create_physical_expr(e, plan.schema(), &ctx.functions))
        .collect()
}

/// The distinct non-NULL keys of the source side.
enum KeySet {
    /// One integer key, widened to `i64`.
    Int(HashSet<i64>),
    /// Any keys, as arrow-row encodings of the source's key types.
    Rows {
        converter: RowConverter,
        types: Vec<DataType>,
        set: HashSet<Box<[u8]>>,
    },
}

fn is_small_integer(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
    )
}

/// `array` as `to`; values that do not fit become NULL (they cannot equal any source key).
fn cast_keys(array: &ArrayRef, to: &DataType) -> Result<ArrayRef> {
    if array.data_type() == to {
        return Ok(Arc::clone(array));
    }
    let options = CastOptions {
        safe: true,
        ..Default::default()
    };
    Ok(cast_with_options(array, to, &options)?)
}

impl KeySet {
    fn build(source: &Arc<PhysicalPlan>, keys: &[Expr], ctx: &Arc<TaskContext>) -> Result<Self> {
        let exprs = compile(keys, source, ctx)?;
        let types: Vec<DataType> = exprs.iter().map(|e| e.data_type().clone()).collect();
        let mut set = if types.len() == 1 && is_small_integer(&types[0]) {
            KeySet::Int(HashSet::new())
        } else {
            KeySet::Rows {
                converter: RowConverter::new(
                    types.iter().map(|t| SortField::new(t.clone())).collect(),
                )?,
                types,
                set: HashSet::new(),
            }
        };
        for p in broadcast_partitions(source) {
            for batch in super::execute(source, p, ctx)? {
                check_cancelled(ctx)?;
                let batch = batch?;
                let arrays = exprs
                    .iter()
                    .map(|e| e.evaluate(&batch))
                    .collect::<Result<Vec<_>>>()?;
                set.insert(&arrays)?;
            }
        }
        Ok(set)
    }

    fn insert(&mut self, arrays: &[ArrayRef]) -> Result<()> {
        match self {
            KeySet::Int(set) => {
                let keys = cast_keys(&arrays[0], &DataType::Int64)?;
                set.extend(keys.as_primitive::<Int64Type>().iter().flatten());
            }
            KeySet::Rows { converter, set, .. } => {
                let rows = converter.convert_columns(arrays)?;
                let valid = all_valid(arrays);
                for (i, row) in rows.iter().enumerate() {
                    if valid.as_ref().is_none_or(|v| v.is_valid(i)) {
                        set.insert(row.as_ref().into());
                    }
                }
            }
        }
        Ok(())
    }

    /// Per row of `arrays` (the target's keys): whether the key is in the set.
    fn contains(&self, arrays: &[ArrayRef]) -> Result<BooleanArray> {
        let rows = arrays.first().map_or(0, |a| a.len());
        let mut mask = BooleanBufferBuilder::new(rows);
        match self {
            KeySet::Int(set) => {
                let keys = cast_keys(&arrays[0], &DataType::Int64)?;
                for key in keys.as_primitive::<Int64Type>().iter() {
                    mask.append(key.is_some_and(|k| set.contains(&k)));
                }
            }
            KeySet::Rows {
                converter,
                types,
                set,
            } => {
                let cast = arrays
                    .iter()
                    .zip(types)
                    .map(|(a, t)| cast_keys(a, t))
                    .collect::<Result<Vec<_>>>()?;
                let encoded = converter.convert_columns(&cast)?;
                let valid = all_valid(&cast);
                for (i, row) in encoded.iter().enumerate() {
                    let present =
                        valid.as_ref().is_none_or(|v| v.is_valid(i)) && set.contains(row.as_ref());
                    mask.append(present);
                }
            }
        }
        Ok(BooleanArray::new(mask.finish(), None))
    }
}

/// Which rows have no NULL key (valid in all of `arrays`); `None` when none has a NULL.
fn all_valid(arrays: &[ArrayRef]) -> Option<NullBuffer> {
    arrays.iter().fold(None, |acc, a| {
        NullBuffer::union(acc.as_ref(), a.logical_nulls().as_ref())
    })
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int32Array, Int64Array, StringArray};
    use ember_planner::expr::col;

    use super::super::test_util::*;
    use super::*;

    fn filter_plan(
        input: Arc<PhysicalPlan>,
        key: &str,
        source: Arc<PhysicalPlan>,
        source_key: &str,
    ) -> Arc<PhysicalPlan> {
        Arc::new(PhysicalPlan::DynamicFilter {
            input,
            keys: vec![col(key)],
            source,
            source_keys: vec![col(source_key)],
        })
    }

    fn ints(name: &str, values: &[Option<i64>]) -> RecordBatch {
        batch(vec![(
            name,
            Arc::new(Int64Array::from(values.to_vec())) as ArrayRef,
        )])
    }

    fn collect_ints(plan: &Arc<PhysicalPlan>, partition: usize) -> Vec<Option<i64>> {
        let mut out = Vec::new();
        for b in super::super::execute(plan, partition, &test_ctx()).unwrap() {
            let b = b.unwrap();
            out.extend(b.column(0).as_primitive::<Int64Type>().iter());
        }
        out
    }

    #[test]
    fn keeps_only_rows_whose_key_the_source_has_across_all_source_partitions() {
        let source = mem_scan(vec![
            vec![ints("k", &[Some(1), None])],
            vec![ints("k", &[Some(5)])],
        ]);
        let input = mem_scan(vec![vec![ints(
            "v",
            &[Some(1), Some(2), None, Some(5), Some(1)],
        )]]);
        let plan = filter_plan(input, "v", source, "k");
        assert_eq!(collect_ints(&plan, 0), vec![Some(1), Some(5), Some(1)]);
    }

    #[test]
    fn keys_of_another_integer_width_are_compared_by_value() {
        let source = mem_scan(vec![vec![batch(vec![(
            "k",
            Arc::new(Int32Array::from(vec![7, 9])) as ArrayRef,
        )])]]);
        let input = mem_scan(vec![vec![ints("v", &[Some(9), Some(8), Some(1 << 40)])]]);
        let plan = filter_plan(input, "v", source, "k");
        assert_eq!(collect_ints(&plan, 0), vec![Some(9)]);
    }

    #[test]
    fn string_keys_use_the_row_encoded_set() {
        let strings = |name: &str, v: &[Option<&str>]| {
            batch(vec![(
                name,
                Arc::new(StringArray::from(v.to_vec())) as ArrayRef,
            )])
        };
        let source = mem_scan(vec![vec![strings("k", &[Some("a"), Some("c"), None])]]);
        let input = mem_scan(vec![vec![strings(
            "v",
            &[Some("a"), Some("b"), None, Some("c")],
        )]]);
        let plan = filter_plan(input, "v", source, "k");
        let mut out = Vec::new();
        for b in super::super::execute(&plan, 0, &test_ctx()).unwrap() {
            let b = b.unwrap();
            out.extend(
                b.column(0)
                    .as_string::<i32>()
                    .iter()
                    .map(|s| s.map(str::to_string)),
            );
        }
        assert_eq!(out, vec![Some("a".to_string()), Some("c".to_string())]);
    }

    #[test]
    fn a_filter_that_keeps_almost_everything_turns_itself_off() {
        let source_keys: Vec<Option<i64>> = (0..PROBE_ROWS as i64).map(Some).collect();
        let source = mem_scan(vec![vec![ints("k", &source_keys)]]);
        // Every row of the first batch matches; the second batch's keys match nothing but
        // pass, because by then the filter has judged itself useless.
        let first: Vec<Option<i64>> = source_keys.clone();
        let second = vec![Some(-1), Some(-2)];
        let input = mem_scan(vec![vec![ints("v", &first), ints("v", &second)]]);
        let plan = filter_plan(input, "v", source, "k");
        let out = collect_ints(&plan, 0);
        assert_eq!(out.len(), PROBE_ROWS + 2);
        assert_eq!(&out[PROBE_ROWS..], &[Some(-1), Some(-2)]);
    }
}
