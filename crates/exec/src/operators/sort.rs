//! Sort: orders each partition by the sort keys; with `fetch`, keeps only the top rows.
//!
//! Input batches are buffered untouched; only the key columns are evaluated and sorted,
//! and output rows are gathered from the buffered batches with `interleave`, so non-key
//! columns are copied once. A single key uses Arrow's `sort_to_indices`; several keys are
//! encoded with `arrow-row` so comparing two rows is one `memcmp`.
//!
//! Top-k (`fetch = k`) never holds much more than `max(2k, batch_size)` rows: whenever the
//! buffer grows past that, it is sorted and cut down to its best `k` rows.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::compute::{concat, interleave_record_batch, sort_to_indices, SortOptions};
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, Rows, SortField};

use ember_planner::expr::SortExpr;
use ember_planner::physical::PhysicalPlan;
use ember_planner::table::BatchIter;
use ember_planner::{EmberError, Result};

use crate::context::TaskContext;
use crate::expr::{create_physical_expr, PhysicalExprRef};
use crate::memory::{MemoryReservation, TaskMemory};
use crate::spill::{arrays_memory, batch_memory, write_spill, SpillFile};

use super::check_cancelled;

pub fn execute_sort(
    input: &Arc<PhysicalPlan>,
    exprs: &[SortExpr],
    fetch: Option<usize>,
    partition: usize,
    ctx: &Arc<TaskContext>,
) -> Result<BatchIter> {
    let keys = exprs
        .iter()
        .map(|s| {
            Ok(SortKey {
                expr: create_physical_expr(&s.expr, input.schema(), &ctx.functions)?,
                options: SortOptions {
                    descending: !s.asc,
                    nulls_first: s.nulls_first,
                },
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut sorter = Sorter {
        keys,
        schema: input.schema().to_arrow_ref(),
        batches: Vec::new(),
        key_columns: Vec::new(),
        rows: 0,
    };
    let batch_size = ctx.batch_size.max(1);
    let input = super::execute(input, partition, ctx)?;
    match fetch {
        Some(k) => top_k(sorter, input, k, batch_size, ctx),
        None => {
            let mut reservation = ctx.memory.reservation(format!(
                "Sort (task {}.{} attempt {})",
                ctx.stage, ctx.partition, ctx.attempt
            ));
            let mut runs = Vec::new();
            for batch in input {
                check_cancelled(ctx)?;
                let added = sorter.push(batch?)?;
                if reservation.try_grow(added).is_err() {
                    // Over budget: everything buffered, this batch included, becomes one
                    // sorted run on disk, and the reservation starts over.
                    runs.push(sorter.spill(&ctx.memory, batch_size)?);
                    reservation.free();
                }
            }
            if runs.is_empty() {
                let output = sorter.sorted_batches(batch_size)?;
                return Ok(Box::new(output.into_iter().map(Ok)));
            }
            external_merge(sorter, runs, reservation, batch_size, ctx)
        }
    }
}

/// `ORDER BY ... LIMIT k`: never holds much more than `max(2k, batch_size)` rows, so it
/// needs no spilling.
fn top_k(
    mut sorter: Sorter,
    input: BatchIter,
    k: usize,
    batch_size: usize,
    ctx: &TaskContext,
) -> Result<BatchIter> {
    let compact_at = (2 * k).max(batch_size);
    for batch in input {
        check_cancelled(ctx)?;
        sorter.push(batch?)?;
        if sorter.rows > compact_at {
            sorter.compact(k)?;
        }
    }
    let order = sorter.sorted_positions(Some(k))?;
    let output = order
        .chunks(batch_size)
        .map(|chunk| gather(&sorter.schema, &sorter.batches, chunk))
        .collect::<Result<Vec<_>>>()?;
    Ok(Box::new(output.into_iter().map(Ok)))
}

/// Merges the spilled runs and the rows still buffered into one sorted stream. More than
/// [`MAX_MERGE_FAN_IN`] runs are first merged in groups into longer runs, so the final merge
/// holds at most that many batches (plus the buffered rows, which fit the reservation).
fn external_merge(
    mut sorter: Sorter,
    mut runs: Vec<SpillFile>,
    reservation: MemoryReservation,
    batch_size: usize,
    ctx: &TaskContext,
) -> Result<BatchIter> {
    let fields = sorter
        .keys
        .iter()
        .map(|k| {
            Ok(SortField::new_with_options(
                k.expr.data_type().clone(),
                k.options,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let exprs: Vec<PhysicalExprRef> = sorter.keys.iter().map(|k| k.expr.clone()).collect();
    let row_keys = || -> Result<RowKeys> {
        let converter = RowConverter::new(fields.clone())?;
        let exprs = exprs.clone();
        Ok(Box::new(move |batch: &RecordBatch| {
            let columns = exprs
                .iter()
                .map(|e| e.evaluate(batch))
                .collect::<Result<Vec<_>>>()?;
            Ok(converter.convert_columns(&columns)?)
        }))
    };
    while runs.len() > MAX_MERGE_FAN_IN {
        check_cancelled(ctx)?;
        let group: Vec<SpillFile> = runs.drain(..MAX_MERGE_FAN_IN).collect();
        let inputs = group
            .into_iter()
            .map(SpillFile::into_reader)
            .collect::<Result<Vec<_>>>()?;
        let merged = SortedMerge::new(sorter.schema.clone(), inputs, row_keys()?, batch_size);
        runs.push(write_spill(&ctx.memory, &sorter.schema, merged)?);
    }
    let mut inputs = runs
        .into_iter()
        .map(SpillFile::into_reader)
        .collect::<Result<Vec<_>>>()?;
    let schema = sorter.schema.clone();
    // The buffered rows come last: they are the latest input, so ties keep input order.
    let buffered = sorter.sorted_batches(batch_size)?;
    inputs.push(Box::new(buffered.into_iter().map(Ok)));
    let merge = SortedMerge::new(schema, inputs, row_keys()?, batch_size);
    Ok(Box::new(merge.holding(reservation)))
}

/// The most runs merged at once; beyond it, runs are merged in several passes.
const MAX_MERGE_FAN_IN: usize = 64;

struct SortKey {
    expr: PhysicalExprRef,
    options: SortOptions,
}

/// The buffered input of one sort: batches and, per batch, its evaluated key columns.
struct Sorter {
    keys: Vec<SortKey>,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    key_columns: Vec<Vec<ArrayRef>>,
    rows: usize,
}

impl Sorter {
    /// Buffers `batch`; returns the bytes it (and its evaluated keys) hold.
    fn push(&mut self, batch: RecordBatch) -> Result<usize> {
        if batch.num_rows() == 0 {
            return Ok(0);
        }
        let keys = self
            .keys
            .iter()
            .map(|k| k.expr.evaluate(&batch))
            .collect::<Result<Vec<_>>>()?;
        let bytes = batch_memory(&batch) + arrays_memory(&keys);
        self.rows += batch.num_rows();
        self.key_columns.push(keys);
        self.batches.push(batch);
        Ok(bytes)
    }

    /// All buffered rows in order, in batches of `batch_size`; empties the buffer.
    fn sorted_batches(&mut self, batch_size: usize) -> Result<Vec<RecordBatch>> {
        let order = self.sorted_positions(None)?;
        let output = order
            .chunks(batch_size)
            .map(|chunk| gather(&self.schema, &self.batches, chunk))
            .collect::<Result<Vec<_>>>()?;
        self.batches.clear();
        self.key_columns.clear();
        self.rows = 0;
        Ok(output)
    }

    /// Writes the buffered rows as one sorted run and empties the buffer.
    fn spill(&mut self, memory: &TaskMemory, batch_size: usize) -> Result<SpillFile> {
        let sorted = self.sorted_batches(batch_size)?;
        write_spill(memory, &self.schema, sorted.into_iter().map(Ok))
    }

    /// Replaces the buffer by its best `k` rows, in order, as one batch.
    fn compact(&mut self, k: usize) -> Result<()> {
        let order = self.sorted_positions(Some(k))?;
        let best = gather(&self.schema, &self.batches, &order)?;
        self.batches.clear();
        self.key_columns.clear();
        self.rows = 0;
        self.push(best).map(|_| ())
    }

    /// (batch, row) of the buffered rows in sorted order; only the first `limit` if given.
    fn sorted_positions(&self, limit: Option<usize>) -> Result<Vec<(usize, usize)>> {
        let mut positions = Vec::with_capacity(self.rows);
        for (b, batch) in self.batches.iter().enumerate() {
            positions.extend((0..batch.num_rows()).map(|r| (b, r)));
        }
        if self.keys.is_empty() || positions.is_empty() {
            positions.truncate(limit.unwrap_or(usize::MAX));
            return Ok(positions);
        }
        let columns = (0..self.keys.len())
            .map(|k| {
                let parts: Vec<&dyn Array> = self
                    .key_columns
                    .iter()
                    .map(|cols| cols[k].as_ref())
                    .collect();
                Ok(concat(&parts)?)
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        let order: Vec<usize> = if columns.len() == 1 {
            sort_to_indices(&columns[0], Some(self.keys[0].options), limit)?
                .values()
                .iter()
                .map(|i| *i as usize)
                .collect()
        } else {
            self.sort_rows(&columns, limit)?
        };
        Ok(order.into_iter().map(|i| positions[i]).collect())
    }

    /// Sorts by several keys through the row format; ties keep input order.
    fn sort_rows(&self, columns: &[ArrayRef], limit: Option<usize>) -> Result<Vec<usize>> {
        let fields = columns
            .iter()
            .zip(&self.keys)
            .map(|(c, k)| SortField::new_with_options(c.data_type().clone(), k.options))
            .collect();
        let rows = RowConverter::new(fields)?.convert_columns(columns)?;
        let mut order: Vec<usize> = (0..rows.num_rows()).collect();
        let cmp = |a: &usize, b: &usize| rows.row(*a).cmp(&rows.row(*b)).then(a.cmp(b));
        match limit {
            Some(k) if k < order.len() => {
                if k == 0 {
                    return Ok(vec![]);
                }
                order.select_nth_unstable_by(k - 1, cmp);
                order.truncate(k);
                order.sort_unstable_by(cmp);
            }
            _ => order.sort_unstable_by(cmp),
        }
        Ok(order)
    }
}

/// Gathers rows `positions` (batch, row) of `batches` into one batch.
fn gather(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    positions: &[(usize, usize)],
) -> Result<RecordBatch> {
    if schema.fields().is_empty() || batches.is_empty() {
        if !positions.is_empty() && batches.is_empty() {
            return Err(EmberError::Internal(
                "sort gathers rows from no batches".into(),
            ));
        }
        return Ok(RecordBatch::try_new_with_options(
            schema.clone(),
            vec![],
            &RecordBatchOptions::new().with_row_count(Some(positions.len())),
        )?);
    }
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    Ok(interleave_record_batch(&refs, positions)?)
}

/// Turns a batch into its sort keys in the row format (one comparable byte string per row).
pub(crate) type RowKeys = Box<dyn FnMut(&RecordBatch) -> Result<Rows> + Send>;

/// The next unread row of one sorted input.
struct Cursor {
    batch: RecordBatch,
    rows: Rows,
    pos: usize,
    /// Index of `batch` in [`SortedMerge::staged`].
    staged: usize,
}

/// K-way merge of sorted inputs into one sorted stream, a batch at a time.
///
/// Keys are compared in the row format (`memcmp`), through a binary min-heap of input
/// indices; equal keys come out in input order (input 0 first), so merging runs cut from a
/// stream in order keeps the order of ties. Memory: one batch per input, plus the batches an
/// output batch draws from.
pub(crate) struct SortedMerge {
    schema: SchemaRef,
    inputs: Vec<BatchIter>,
    cursors: Vec<Option<Cursor>>,
    /// Inputs with a cursor, as a min-heap by (key, input index).
    heap: Vec<usize>,
    keys: RowKeys,
    batch_size: usize,
    /// Batches the output batch being built draws rows from.
    staged: Vec<RecordBatch>,
    started: bool,
    done: bool,
    /// Held (and released) with the merge: the memory of the in-memory run.
    reservation: Option<MemoryReservation>,
}

impl SortedMerge {
    pub(crate) fn new(
        schema: SchemaRef,
        inputs: Vec<BatchIter>,
        keys: RowKeys,
        batch_size: usize,
    ) -> Self {
        let n = inputs.len();
        SortedMerge {
            schema,
            inputs,
            cursors: (0..n).map(|_| None).collect(),
            heap: Vec::with_capacity(n),
            keys,
            batch_size: batch_size.max(1),
            staged: Vec::new(),
            started: false,
            done: false,
            reservation: None,
        }
    }

    /// Keeps `reservation` until the merge is dropped.
    pub(crate) fn holding(mut self, reservation: MemoryReservation) -> Self {
        self.reservation = Some(reservation);
        self
    }

    /// Moves input `i` to its next non-empty batch; `false` when it is exhausted.
    fn advance(&mut self, i: usize) -> Result<bool> {
        loop {
            let Some(batch) = self.inputs[i].next().transpose()? else {
                self.cursors[i] = None;
                return Ok(false);
            };
            if batch.num_rows() == 0 {
                continue;
            }
            let rows = (self.keys)(&batch)?;
            if rows.num_rows() != batch.num_rows() {
                return Err(EmberError::Internal(format!(
                    "sort keys have {} rows for a batch of {}",
                    rows.num_rows(),
                    batch.num_rows()
                )));
            }
            self.staged.push(batch.clone());
            self.cursors[i] = Some(Cursor {
                batch,
                rows,
                pos: 0,
                staged: self.staged.len() - 1,
            });
            return Ok(true);
        }
    }

    fn less(&self, a: usize, b: usize) -> bool {
        match (&self.cursors[a], &self.cursors[b]) {
            (Some(x), Some(y)) => x
                .rows
                .row(x.pos)
                .cmp(&y.rows.row(y.pos))
                .then(a.cmp(&b))
                .is_lt(),
            // Only inputs with a cursor are in the heap.
            _ => a < b,
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.heap.len();
        loop {
            let left = 2 * i + 1;
            if left >= n {
                return;
            }
            let right = left + 1;
            let child = if right < n && self.less(self.heap[right], self.heap[left]) {
                right
            } else {
                left
            };
            if !self.less(self.heap[child], self.heap[i]) {
                return;
            }
            self.heap.swap(i, child);
            i = child;
        }
    }

    fn start(&mut self) -> Result<()> {
        for i in 0..self.inputs.len() {
            if self.advance(i)? {
                self.heap.push(i);
            }
        }
        for i in (0..self.heap.len() / 2).rev() {
            self.sift_down(i);
        }
        Ok(())
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        if !self.started {
            self.started = true;
            self.start()?;
        }
        let mut picked: Vec<(usize, usize)> = Vec::with_capacity(self.batch_size);
        while picked.len() < self.batch_size {
            let Some(&top) = self.heap.first() else {
                break;
            };
            let Some(cursor) = self.cursors[top].as_mut() else {
                return Err(EmberError::Internal(format!(
                    "merge input {top} is in the heap without a cursor"
                )));
            };
            picked.push((cursor.staged, cursor.pos));
            cursor.pos += 1;
            if cursor.pos == cursor.batch.num_rows() && !self.advance(top)? {
                let last = self.heap.len() - 1;
                self.heap.swap(0, last);
                self.heap.pop();
            }
            self.sift_down(0);
        }
        if picked.is_empty() {
            return Ok(None);
        }
        let out = gather(&self.schema, &self.staged, &picked)?;
        // Keep only the batches the cursors still read from.
        self.staged.clear();
        for cursor in self.cursors.iter_mut().flatten() {
            self.staged.push(cursor.batch.clone());
            cursor.staged = self.staged.len() - 1;
        }
        Ok(Some(out))
    }
}

impl Iterator for SortedMerge {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = self.next_batch().transpose();
        if !matches!(next, Some(Ok(_))) {
            self.done = true;
            self.reservation = None;
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, StringArray};
    use ember_planner::expr::col;

    use super::super::test_util::*;
    use super::*;

    fn people() -> Arc<PhysicalPlan> {
        let b = |names: Vec<Option<&str>>, ages: Vec<Option<i64>>| {
            batch(vec![
                ("name", Arc::new(StringArray::from(names)) as ArrayRef),
                ("age", Arc::new(Int64Array::from(ages)) as ArrayRef),
            ])
        };
        mem_scan(vec![vec![
            b(
                vec![Some("c"), Some("a"), None],
                vec![Some(30), None, Some(20)],
            ),
            b(
                vec![Some("b"), Some("a"), Some("d")],
                vec![Some(30), Some(40), Some(10)],
            ),
        ]])
    }

    fn sort(exprs: Vec<SortExpr>, fetch: Option<usize>) -> Arc<PhysicalPlan> {
        Arc::new(PhysicalPlan::Sort {
            input: people(),
            exprs,
            fetch,
        })
    }

    #[test]
    fn single_key_honours_direction_and_null_placement() {
        let out = collect(&sort(vec![col("age").sort(false, true)], None), 0);
        assert_eq!(
            int_column(&out, 1),
            vec![None, Some(40), Some(30), Some(30), Some(20), Some(10)]
        );
        let out = collect(&sort(vec![col("age").sort(true, false)], None), 0);
        assert_eq!(
            int_column(&out, 1),
            vec![Some(10), Some(20), Some(30), Some(30), Some(40), None]
        );
    }

    #[test]
    fn several_keys_sort_lexicographically() {
        let out = collect(
            &sort(
                vec![col("age").sort(false, false), col("name").sort(true, true)],
                None,
            ),
            0,
        );
        assert_eq!(
            pretty(&out),
            vec![
                "+------+-----+",
                "| name | age |",
                "+------+-----+",
                "| a    | 40  |",
                "| b    | 30  |",
                "| c    | 30  |",
                "|      | 20  |",
                "| d    | 10  |",
                "| a    |     |",
                "+------+-----+",
            ]
        );
    }

    #[test]
    fn top_k_keeps_the_best_rows_across_compactions() {
        // Batch size 1 forces a compaction after nearly every input batch.
        let input: Vec<RecordBatch> = (0..50).map(|i| int_batch("v", &[(i * 37) % 50])).collect();
        let plan = Arc::new(PhysicalPlan::Sort {
            input: mem_scan(vec![input]),
            exprs: vec![col("v").sort(false, false)],
            fetch: Some(3),
        });
        let out = collect_with(&plan, 0, &test_ctx_with_batch_size(1));
        assert_eq!(int_column(&out, 0), vec![Some(49), Some(48), Some(47)]);
        let multi = Arc::new(PhysicalPlan::Sort {
            input: mem_scan(vec![(0..50)
                .map(|i| int_batch("v", &[(i * 37) % 50]))
                .collect()]),
            exprs: vec![col("v").sort(true, false), col("v").sort(true, false)],
            fetch: Some(2),
        });
        let out = collect_with(&multi, 0, &test_ctx_with_batch_size(1));
        assert_eq!(int_column(&out, 0), vec![Some(0), Some(1)]);
    }

    #[test]
    fn output_is_split_into_batches() {
        let out = collect_with(
            &sort(vec![col("name").sort(true, true)], None),
            0,
            &test_ctx_with_batch_size(4),
        );
        assert_eq!(
            out.iter().map(|b| b.num_rows()).collect::<Vec<_>>(),
            vec![4, 2]
        );
    }

    /// 120 batches of 10 rows: a text key with NULLs and duplicates, a number with NULLs.
    fn many_batches() -> Arc<PhysicalPlan> {
        let batches = (0..120)
            .map(|b| {
                let ids: Vec<i64> = (0..10).map(|r| (b * 10 + r) * 37 % 701).collect();
                let names: Vec<Option<String>> = ids
                    .iter()
                    .map(|i| (i % 11 != 0).then(|| format!("n{:02}", i % 50)))
                    .collect();
                let values: Vec<Option<i64>> =
                    ids.iter().map(|i| (i % 7 != 0).then_some(*i)).collect();
                batch(vec![
                    ("name", Arc::new(StringArray::from(names)) as ArrayRef),
                    ("v", Arc::new(Int64Array::from(values)) as ArrayRef),
                    ("id", Arc::new(Int64Array::from(ids)) as ArrayRef),
                ])
            })
            .collect();
        mem_scan(vec![batches])
    }

    fn budget_ctx(dir: &std::path::Path, budget: usize, batch_size: usize) -> Arc<TaskContext> {
        use crate::memory::MemoryPool;
        let mut ctx = TaskContext::standalone(Arc::new(crate::udf::FunctionRegistry::default()));
        ctx.batch_size = batch_size;
        ctx.memory = TaskMemory::new(MemoryPool::new(0, budget), dir.join("spill"));
        Arc::new(ctx)
    }

    #[test]
    fn spilled_runs_merge_to_the_in_memory_order() {
        let orders = [
            vec![col("name").sort(true, true), col("v").sort(false, false)],
            vec![col("name").sort(false, false), col("v").sort(true, true)],
            vec![col("v").sort(false, true)],
            vec![col("v").sort(true, false)],
        ];
        for exprs in orders {
            let plan = Arc::new(PhysicalPlan::Sort {
                input: many_batches(),
                exprs: exprs.clone(),
                fetch: None,
            });
            let expected = collect(&plan, 0);
            let dir = tempfile::tempdir().unwrap();
            let ctx = budget_ctx(dir.path(), 8 * 1024, 100);
            let spilled = collect_with(&plan, 0, &ctx);
            let runs = ctx.memory.spills.files();
            assert!(runs >= 3, "{exprs:?}: expected several runs, got {runs}");
            assert!(ctx.memory.spills.bytes() > 0);
            assert_eq!(pretty(&spilled), pretty(&expected), "{exprs:?}");
            assert!(spilled.iter().all(|b| b.num_rows() <= 100));
            let left = std::fs::read_dir(dir.path().join("spill")).map_or(0, |d| d.count());
            assert_eq!(left, 0, "spill files are deleted after the merge");
            assert_eq!(ctx.memory.pool.used(), 0, "memory is released at the end");
        }
    }

    #[test]
    fn more_runs_than_the_fan_in_are_merged_in_passes() {
        // A budget below one batch: every input batch becomes its own run (120 > 64).
        let plan = Arc::new(PhysicalPlan::Sort {
            input: many_batches(),
            exprs: vec![col("id").sort(true, true)],
            fetch: None,
        });
        let dir = tempfile::tempdir().unwrap();
        let ctx = budget_ctx(dir.path(), 16, 7);
        let out = collect_with(&plan, 0, &ctx);
        // 120 runs, then one merged run of 64 (and the final merge of 57 streams).
        assert_eq!(ctx.memory.spills.files(), 121);
        let ids: Vec<Option<i64>> = int_column(&out, 2);
        let mut expected = ids.clone();
        expected.sort();
        assert_eq!(ids.len(), 1200);
        assert_eq!(ids, expected);
    }

    #[test]
    fn top_k_does_not_spill_under_a_tiny_budget() {
        let plan = Arc::new(PhysicalPlan::Sort {
            input: many_batches(),
            exprs: vec![col("id").sort(false, false)],
            fetch: Some(5),
        });
        let dir = tempfile::tempdir().unwrap();
        let ctx = budget_ctx(dir.path(), 16, 100);
        let out = collect_with(&plan, 0, &ctx);
        assert_eq!(ctx.memory.spills.files(), 0);
        // 1200 ids over 701 values: the largest come twice.
        assert_eq!(
            int_column(&out, 2),
            vec![Some(700), Some(700), Some(699), Some(698), Some(698)]
        );
    }
}
