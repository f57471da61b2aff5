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
        return internal_err!(
            "execute_nested_loop_join called on {}",
            plan.describe_node()
        );
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
        Ok(Some((
            UInt32Array::from(probe_idx),
            UInt32Array::from(build_idx),
        )))
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{ArrayRef, BooleanArray, Int64Array};

    use ember_planner::expr::{col, Expr};
    use ember_planner::logical::join_schema;
    use ember_planner::physical::ExchangeKind;
    use ember_planner::EmberError;

    use super::*;
    use crate::operators::hash_join::tests::side;
    use crate::operators::test_util::*;

    fn ints(values: &[i64]) -> ArrayRef {
        Arc::new(Int64Array::from(values.to_vec()))
    }

    fn plan(
        left: Arc<PhysicalPlan>,
        right: Arc<PhysicalPlan>,
        filter: Option<Expr>,
        join_type: JoinType,
    ) -> Arc<PhysicalPlan> {
        let schema = join_schema(left.schema(), right.schema(), join_type);
        Arc::new(PhysicalPlan::NestedLoopJoin {
            left,
            right,
            filter,
            join_type,
            schema: Arc::new(schema),
        })
    }

    fn run(
        plan: &Arc<PhysicalPlan>,
        partition: usize,
        batch_size: usize,
    ) -> Result<Vec<RecordBatch>> {
        let ctx = test_ctx_with_batch_size(batch_size);
        execute_nested_loop_join(plan, partition, &ctx)?.collect()
    }

    /// l(a): 1, 2 | 3 in two batches.
    fn left() -> Arc<PhysicalPlan> {
        side(
            "l",
            vec![vec![
                batch(vec![("a", ints(&[1, 2]))]),
                batch(vec![("a", ints(&[3]))]),
            ]],
        )
    }

    /// r(b, ok): three rows, `ok` true only for b = 20.
    fn right() -> Arc<PhysicalPlan> {
        let ok = Arc::new(BooleanArray::from(vec![Some(false), Some(true), None])) as ArrayRef;
        side(
            "r",
            vec![vec![batch(vec![("b", ints(&[10, 20, 30])), ("ok", ok)])]],
        )
    }

    #[test]
    fn cross_join_pairs_every_row_in_probe_then_build_order() {
        let plan = plan(left(), right(), None, JoinType::Inner);
        let out = run(&plan, 0, 2).unwrap();
        assert!(out.iter().all(|b| b.num_rows() <= 2));
        assert_eq!(
            int_column(&out, 0),
            [1, 1, 1, 2, 2, 2, 3, 3, 3].map(Some).to_vec()
        );
        assert_eq!(
            int_column(&out, 1),
            [10, 20, 30, 10, 20, 30, 10, 20, 30].map(Some).to_vec()
        );
    }

    #[test]
    fn filter_selects_pairs_and_decides_left_semi_and_anti_rows() {
        let filter = Some(col("r.ok"));
        let inner = run(
            &plan(left(), right(), filter.clone(), JoinType::Inner),
            0,
            8192,
        )
        .unwrap();
        assert_eq!(int_column(&inner, 1), vec![Some(20); 3]);

        // A filter on a left column: row a = 1 fails it against every right row, so it is
        // unmatched; a = 2 passes against all of them.
        let flagged_left = side(
            "l",
            vec![vec![batch(vec![
                ("a", ints(&[1, 2])),
                (
                    "f",
                    Arc::new(BooleanArray::from(vec![false, true])) as ArrayRef,
                ),
            ])]],
        );
        let filter = Some(col("l.f"));
        let left_join = run(
            &plan(
                flagged_left.clone(),
                right(),
                filter.clone(),
                JoinType::Left,
            ),
            0,
            8192,
        )
        .unwrap();
        assert_eq!(
            pretty(&left_join),
            vec![
                "+---+-------+----+-------+",
                "| a | f     | b  | ok    |",
                "+---+-------+----+-------+",
                "| 2 | true  | 10 | false |",
                "| 2 | true  | 20 | true  |",
                "| 2 | true  | 30 |       |",
                "| 1 | false |    |       |",
                "+---+-------+----+-------+",
            ]
        );
        let semi = run(
            &plan(
                flagged_left.clone(),
                right(),
                filter.clone(),
                JoinType::LeftSemi,
            ),
            0,
            8192,
        )
        .unwrap();
        assert_eq!(int_column(&semi, 0), vec![Some(2)]);
        let anti = run(
            &plan(flagged_left, right(), filter, JoinType::LeftAnti),
            0,
            8192,
        )
        .unwrap();
        assert_eq!(int_column(&anti, 0), vec![Some(1)]);
    }

    #[test]
    fn range_filter_over_both_sides() {
        let filter = Some(col("l.a").gt(col("r.b")));
        let small_right = side("r", vec![vec![batch(vec![("b", ints(&[2, 1]))])]]);
        let out = run(&plan(left(), small_right, filter, JoinType::Inner), 0, 8192).unwrap();
        assert_eq!(
            pretty(&out),
            vec![
                "+---+---+",
                "| a | b |",
                "+---+---+",
                "| 2 | 1 |",
                "| 3 | 2 |",
                "| 3 | 1 |",
                "+---+---+",
            ]
        );
    }

    #[test]
    fn empty_right_side_keeps_left_rows_only_for_left_and_anti_joins() {
        let empty = side("r", vec![vec![batch(vec![("b", ints(&[]))])]]);
        let count = |join_type| {
            row_count(&run(&plan(left(), empty.clone(), None, join_type), 0, 8192).unwrap())
        };
        assert_eq!(count(JoinType::Inner), 0);
        assert_eq!(count(JoinType::LeftSemi), 0);
        assert_eq!(count(JoinType::Left), 3);
        assert_eq!(count(JoinType::LeftAnti), 3);
    }

    #[test]
    fn right_side_is_read_whole_once() {
        let two_parts = side(
            "r",
            vec![
                vec![batch(vec![("b", ints(&[10]))])],
                vec![batch(vec![("b", ints(&[20]))])],
            ],
        );
        let out = run(
            &plan(left(), two_parts.clone(), None, JoinType::Inner),
            0,
            8192,
        )
        .unwrap();
        assert_eq!(row_count(&out), 6);
        let broadcast = Arc::new(PhysicalPlan::Exchange {
            input: two_parts,
            kind: ExchangeKind::Broadcast,
        });
        let out = run(&plan(left(), broadcast, None, JoinType::Inner), 0, 8192).unwrap();
        assert_eq!(row_count(&out), 6);
    }

    #[test]
    fn outer_join_types_without_keys_are_not_supported() {
        let err = run(&plan(left(), right(), None, JoinType::Full), 0, 8192).unwrap_err();
        assert!(matches!(err, EmberError::NotImplemented(_)), "{err}");
    }
}
