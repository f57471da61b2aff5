//! Dynamic join filter: drops rows whose join keys occur nowhere on the join's other side
//! (see `ember_planner::physical::dynamic_filter` for where the planner puts it and why).
//!
//! The key set is read from the whole of the source shuffle — every reduce partition — once
//! per process and stage (`shared_build`), and probed per row (`key_set`: a bitmap or hash
//! set of `i64` for one integer key, the common case; arrow-row encodings otherwise). Rows
//! with a NULL key never match an equi-join and are dropped. Right above a table scan the
//! filter runs inside the scan (`pushed_filter`).
//!
//! The filter watches what it does: when, after [`PROBE_ROWS`] rows, it has kept more than
//! [`USEFUL_PASS_RATE`] of them, the lookups cost more than they save and it passes the rest
//! of the partition through unchanged (the join above still matches every key).

use std::sync::Arc;

use arrow::array::RecordBatch;

use ember_planner::expr::Expr;
use ember_planner::physical::PhysicalPlan;
use ember_planner::schema::PlanSchema;
use ember_planner::table::BatchIter;
use ember_planner::Result;

use super::filter::{filter_batches, RowMask};
use super::key_set::KeySet;
use super::shared_build::shared;
use crate::context::TaskContext;
use crate::expr::create_physical_exprs;

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
    let mask = key_mask(node, keys, source, source_keys, input.schema(), ctx)?;
    let input = super::execute(input, partition, ctx)?;
    Ok(filter_batches(input, mask, ctx.batch_size))
}

/// The filter's per-batch test for rows of `schema` (its input's, or the narrower one of the
/// columns a scan decodes first when the filter is pushed into it): the key set is built
/// from the source, or shared with this process's other tasks of the stage.
pub(crate) fn key_mask(
    node: &Arc<PhysicalPlan>,
    keys: &[Expr],
    source: &Arc<PhysicalPlan>,
    source_keys: &[Expr],
    schema: &PlanSchema,
    ctx: &Arc<TaskContext>,
) -> Result<RowMask> {
    let build = || KeySet::build(source, source_keys, ctx);
    let set = if ctx.attempt == 0 {
        shared(node, build)?
    } else {
        Arc::new(build()?)
    };
    let keys = create_physical_exprs(keys, schema, &ctx.functions)?;
    let mut seen = 0usize;
    let mut kept = 0usize;
    let mut active = true;
    Ok(Box::new(move |batch: &RecordBatch| {
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
    }))
}

#[cfg(test)]
mod tests {
    use arrow::array::{ArrayRef, AsArray, Int32Array, Int64Array, StringArray};
    use arrow::datatypes::Int64Type;
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
