//! Nested loop join: for joins without equality keys (cross joins, `a.x < b.y`, ...).
//!
//! The right input is read whole (it is broadcast: every left partition sees all of it);
//! each left batch is paired with every right row, `batch_size` pairs at a time, and the
//! optional filter decides which pairs match. Pairs are produced as index arrays so the
//! filter and the output are plain `take`s — the same [`JoinStream`] as the hash join
//! handles join types and output order.

use std::sync::Arc;

use arrow::array::{RecordBatch, UInt32Array};

use ember_planner::logical::JoinType;
use ember_planner::physical::PhysicalPlan;
use ember_planner::table::BatchIter;
use ember_planner::{internal_err, not_impl_err, Result};

use super::hash_join::join_stream::{row_count_u32, JoinOutput, JoinStream, PairSource};
use super::hash_join::{broadcast_partitions, collect_build_side, compile_filter};
use crate::context::TaskContext;

/// Computes partition `partition` of a `PhysicalPlan::NestedLoopJoin`.
pub fn execute_nested_loop_join(
    plan: &Arc<PhysicalPlan>,
    partition: usize,
    ctx: &Arc<TaskContext>,
) -> Result<BatchIter> {
    let PhysicalPlan::NestedLoopJoin {
        left,
        right,
        filter,
        join_type,
        schema,
    } = plan.as_ref()
    else {
        return internal_err!("execute_nested_loop_join called on {}", plan.describe_node());
    };
    if !matches!(
        join_type,
        JoinType::Inner | JoinType::Left | JoinType::LeftSemi | JoinType::LeftAnti
    ) {
        return not_impl_err!("{join_type} join without equality keys");
    }
    let filter = compile_filter(filter.as_ref(), left.schema(), right.schema(), ctx)?;
    let build = collect_build_side(right, &broadcast_partitions(right), ctx)?;
    if build.num_rows() == 0 && matches!(join_type, JoinType::Inner | JoinType::LeftSemi) {
        return Ok(Box::new(std::iter::empty()));
    }
    let probe = super::execute(left, partition, ctx)?;
    let output = JoinOutput {
        join_type: *join_type,
        filter,
        schema: schema.to_arrow_ref(),
        left_width: left.schema().len(),
        batch_size: ctx.batch_size,
    };
    let pairs = CrossPairs {
        build_rows: row_count_u32(build.num_rows(), "the join build side")?,
        probe_rows: 0,
        row: 0,
        build_row: 0,
    };
    Ok(Box::new(JoinStream::try_new(pairs, probe, build, output)?))
}

/// Every (probe row, build row) pair of the current probe batch, probe row by probe row.
struct CrossPairs {
    build_rows: u32,
    probe_rows: u32,
    /// Next pair to produce: (`row`, `build_row`).
    row: u32,
    build_row: u32,
}

impl PairSource for CrossPairs {
    fn start_batch(&mut self, batch: &RecordBatch, _excluded: &mut [bool]) -> Result<()> {
        self.probe_rows = row_count_u32(batch.num_rows(), "a join probe batch")?;
        self.row = 0;
        self.build_row = 0;
        Ok(())
    }

    fn next_pairs(&mut self, limit: usize) -> Result<Option<(UInt32Array, UInt32Array)>> {
        if self.row >= self.probe_rows || self.build_rows == 0 {
            return Ok(None);
        }
        let limit = u32::try_from(limit).unwrap_or(u32::MAX).max(1);
        let mut probe_idx = Vec::new();
        let mut build_idx = Vec::new();
        let mut produced = 0u32;
        while produced < limit && self.row < self.probe_rows {
            let n = (self.build_rows - self.build_row).min(limit - produced);
            probe_idx.extend(std::iter::repeat_n(self.row, n as usize));
            build_idx.extend(self.build_row..self.build_row + n);
            produced += n;
            self.build_row += n;
            if self.build_row == self.build_rows {
                self.build_row = 0;
                self.row += 1;
            }
        }
        Ok(Some((UInt32Array::from(probe_idx), UInt32Array::from(build_idx))))
    }
}
