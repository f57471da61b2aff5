//! Running a hash aggregate within the executor's memory budget.
//!
//! The group table grows with the number of distinct keys, which no planner estimate bounds,
//! so after every input batch its size is checked against the task's reservation. When it
//! does not fit:
//!
//! ```text
//!   Partial        emit the states of the groups so far, start an empty table
//!                  (correct because the Final aggregate merges states of equal keys)
//!   Final/Single   write keys + states, sorted by key, as a spill run; start an empty table.
//!                  At the end: k-way merge of the runs (and the table, sorted) by key, and
//!                  merge the states of each key into its final values, batch by batch.
//! ```
//!
//! Each run holds a key at most once, so in the merged stream a key spans at most as many
//! rows as there are runs; a batch is finished up to its last key, whose rows are carried
//! into the next batch. Memory during the merge: one batch per run.
//!
//! A Single aggregate with a DISTINCT aggregate has no mergeable state: it keeps its table
//! in memory (counted against the pool, so other operators spill sooner).
//!
//! Output order: groups in first-seen order without spilling; sorted by key when spilled.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, take};
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::row::{RowConverter, Rows, SortField};

use ember_planner::physical::AggregateMode;
use ember_planner::table::BatchIter;
use ember_planner::{EmberError, Result};

use super::{split, Aggregation};
use crate::context::TaskContext;
use crate::memory::MemoryReservation;
use crate::operators::check_cancelled;
use crate::operators::sort::{RowKeys, SortedMerge};
use crate::spill::{write_spill, SpillFile};

/// The output iterator of one aggregate task.
pub(super) struct AggregateStream {
    aggregation: Aggregation,
    /// `None` once the input is exhausted.
    input: Option<BatchIter>,
    ctx: Arc<TaskContext>,
    reservation: MemoryReservation,
    runs: Vec<SpillFile>,
    /// Schema of spilled state batches (keys, then state columns), set by the first spill.
    state_schema: Option<SchemaRef>,
    /// Output ready to be returned.
    pending: VecDeque<RecordBatch>,
    /// The merge of spilled runs, once the input is exhausted.
    merge: Option<GroupMerge>,
    done: bool,
}

impl AggregateStream {
    pub(super) fn new(aggregation: Aggregation, input: BatchIter, ctx: &Arc<TaskContext>) -> Self {
        let reservation = ctx.memory.reservation(format!(
            "{:?} HashAggregate (task {}.{} attempt {})",
            aggregation.mode(),
            ctx.stage,
            ctx.partition,
            ctx.attempt
        ));
        AggregateStream {
            aggregation,
            input: Some(input),
            ctx: Arc::clone(ctx),
            reservation,
            runs: Vec::new(),
            state_schema: None,
            pending: VecDeque::new(),
            merge: None,
            done: false,
        }
    }

    fn batch_size(&self) -> usize {
        self.ctx.batch_size.max(1)
    }

    fn poll(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            if let Some(batch) = self.pending.pop_front() {
                return Ok(Some(batch));
            }
            if let Some(merge) = &mut self.merge {
                return merge.next_batch(&mut self.aggregation);
            }
            let Some(input) = &mut self.input else {
                return Ok(None);
            };
            check_cancelled(&self.ctx)?;
            match input.next() {
                Some(batch) => {
                    self.aggregation.update(&batch?)?;
                    self.keep_within_budget()?;
                }
                None => {
                    self.input = None;
                    self.finish_input()?;
                }
            }
        }
    }

    /// Resizes the reservation to the table; flushes or spills the table if it is refused.
    fn keep_within_budget(&mut self) -> Result<()> {
        if !self.aggregation.has_group_by() {
            return Ok(()); // one group: constant size
        }
        let size = self.aggregation.size();
        if self.reservation.try_resize(size).is_ok() {
            return Ok(());
        }
        match self.aggregation.mode() {
            AggregateMode::Partial => {
                let states = self.aggregation.emit()?;
                let batch_size = self.batch_size();
                self.pending.extend(split(states, batch_size));
                self.reservation.free();
            }
            _ if self.aggregation.spillable() => {
                let run = self.spill()?;
                self.runs.push(run);
                self.reservation.free();
            }
            // DISTINCT state cannot be merged back: keep it, and count it.
            _ => self.reservation.resize(size),
        }
        Ok(())
    }

    /// The table's keys and states sorted by key, in batches; the table is left empty.
    fn sorted_state(&mut self) -> Result<Vec<RecordBatch>> {
        let (columns, rows) = self.aggregation.emit_state()?;
        if rows == 0 {
            return Ok(Vec::new());
        }
        let group_count = self.aggregation.group_count();
        let converter = key_converter(self.aggregation.key_types())?;
        let keys = converter.convert_columns(&columns[..group_count])?;
        let mut order: Vec<u32> = (0..rows as u32).collect();
        order.sort_unstable_by(|a, b| keys.row(*a as usize).cmp(&keys.row(*b as usize)));
        let indices = UInt32Array::from(order);
        let sorted = columns
            .iter()
            .map(|c| Ok(take(c.as_ref(), &indices, None)?))
            .collect::<Result<Vec<ArrayRef>>>()?;
        let schema = match &self.state_schema {
            Some(schema) => schema.clone(),
            None => {
                let schema = state_schema(&sorted, group_count);
                self.state_schema = Some(schema.clone());
                schema
            }
        };
        let batch = RecordBatch::try_new(schema, sorted).map_err(|e| {
            EmberError::Internal(format!(
                "aggregate state does not match its spill schema: {e}"
            ))
        })?;
        Ok(split(batch, self.batch_size()).collect())
    }

    fn spill(&mut self) -> Result<SpillFile> {
        let batches = self.sorted_state()?;
        let schema = self.state_schema.clone().ok_or_else(|| {
            EmberError::Internal("aggregate spilled before its state schema was known".into())
        })?;
        write_spill(&self.ctx.memory, &schema, batches.into_iter().map(Ok))
    }

    /// Emits the table if nothing was spilled; otherwise starts merging the runs with the
    /// table's remaining groups.
    fn finish_input(&mut self) -> Result<()> {
        if self.runs.is_empty() {
            let output = self.aggregation.emit()?;
            let batch_size = self.batch_size();
            self.pending.extend(split(output, batch_size));
            self.reservation.free();
            return Ok(());
        }
        let in_memory = self.sorted_state()?;
        self.reservation.free();
        let schema = self.state_schema.clone().ok_or_else(|| {
            EmberError::Internal("aggregate spilled without a state schema".into())
        })?;
        let mut inputs = std::mem::take(&mut self.runs)
            .into_iter()
            .map(SpillFile::into_reader)
            .collect::<Result<Vec<_>>>()?;
        inputs.push(Box::new(in_memory.into_iter().map(Ok)));
        let group_count = self.aggregation.group_count();
        let key_types = self.aggregation.key_types().to_vec();
        let keys = {
            let converter = key_converter(&key_types)?;
            Box::new(move |batch: &RecordBatch| {
                Ok(converter.convert_columns(&batch.columns()[..group_count])?)
            }) as RowKeys
        };
        self.merge = Some(GroupMerge {
            merge: SortedMerge::new(schema.clone(), inputs, keys, self.batch_size()),
            converter: key_converter(&key_types)?,
            schema,
            group_count,
            carry: None,
        });
        Ok(())
    }
}

impl Iterator for AggregateStream {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = self.poll().transpose();
        if !matches!(next, Some(Ok(_))) {
            // Finished or failed: release the input, the spill files and the memory now.
            self.done = true;
            self.input = None;
            self.merge = None;
            self.runs.clear();
            self.reservation.free();
        }
        next
    }
}

/// Keys in the row format, ascending (any fixed order works: it only has to bring equal
/// keys together).
fn key_converter(key_types: &[arrow::datatypes::DataType]) -> Result<RowConverter> {
    Ok(RowConverter::new(
        key_types
            .iter()
            .map(|t| SortField::new(t.clone()))
            .collect(),
    )?)
}

fn state_schema(columns: &[ArrayRef], group_count: usize) -> SchemaRef {
    let fields: Vec<Field> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let name = if i < group_count {
                format!("key{i}")
            } else {
                format!("state{}", i - group_count)
            };
            Field::new(name, c.data_type().clone(), true)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// Final values from the merged, key-sorted stream of spilled states.
struct GroupMerge {
    merge: SortedMerge,
    converter: RowConverter,
    schema: SchemaRef,
    group_count: usize,
    /// The rows of the last key seen, which may continue in the next batch.
    carry: Option<RecordBatch>,
}

impl GroupMerge {
    fn next_batch(&mut self, aggregation: &mut Aggregation) -> Result<Option<RecordBatch>> {
        loop {
            let Some(batch) = self.merge.next().transpose()? else {
                return match self.carry.take() {
                    Some(rest) => {
                        let rows = self.keys(&rest)?;
                        self.aggregate(aggregation, &rest, &rows).map(Some)
                    }
                    None => Ok(None),
                };
            };
            let batch = match self.carry.take() {
                Some(carry) => concat_batches(&self.schema, [&carry, &batch])?,
                None => batch,
            };
            let n = batch.num_rows();
            if n == 0 {
                continue;
            }
            let rows = self.keys(&batch)?;
            let last = rows.row(n - 1);
            let mut cut = n - 1;
            while cut > 0 && rows.row(cut - 1) == last {
                cut -= 1;
            }
            self.carry = Some(batch.slice(cut, n - cut));
            if cut > 0 {
                let done = batch.slice(0, cut);
                return self.aggregate(aggregation, &done, &rows).map(Some);
            }
        }
    }

    fn keys(&self, batch: &RecordBatch) -> Result<Rows> {
        Ok(self
            .converter
            .convert_columns(&batch.columns()[..self.group_count])?)
    }

    /// Merges the states of `batch` (all rows of each of its keys; `rows` are the keys of a
    /// batch that starts with it) into one output row per key.
    fn aggregate(
        &self,
        aggregation: &mut Aggregation,
        batch: &RecordBatch,
        rows: &Rows,
    ) -> Result<RecordBatch> {
        let n = batch.num_rows();
        let mut group_ids = Vec::with_capacity(n);
        let mut starts: Vec<u32> = Vec::new();
        for i in 0..n {
            if i == 0 || rows.row(i) != rows.row(i - 1) {
                starts.push(i as u32);
            }
            group_ids.push(starts.len() - 1);
        }
        let starts = UInt32Array::from(starts);
        let keys = batch.columns()[..self.group_count]
            .iter()
            .map(|c| Ok(take(c.as_ref(), &starts, None)?))
            .collect::<Result<Vec<ArrayRef>>>()?;
        aggregation.merge_sorted(keys, batch, &group_ids, starts.len())
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Int64Type};
    use ember_planner::expr::{avg, col, count_star, max, min, sum, Expr};
    use ember_planner::physical::{ExchangeKind, PhysicalPlan};
    use ember_planner::schema::PlanSchema;

    use super::super::super::test_util::*;
    use crate::memory::{MemoryPool, TaskMemory};
    use crate::udf::FunctionRegistry;

    use super::*;

    /// 40 batches of 25 rows; key `k` takes 300 values (as text and as a number).
    fn input() -> Arc<PhysicalPlan> {
        let batches = (0..40)
            .map(|b| {
                let ids: Vec<i64> = (0..25).map(|r| (b * 25 + r) * 7 % 300).collect();
                let names: Vec<Option<String>> = ids
                    .iter()
                    .map(|i| (i % 13 != 0).then(|| format!("key-{i:03}")))
                    .collect();
                batch(vec![
                    ("k", Arc::new(StringArray::from(names)) as ArrayRef),
                    ("n", Arc::new(Int64Array::from(ids.clone())) as ArrayRef),
                    (
                        "v",
                        Arc::new(Int64Array::from_iter(
                            ids.iter().map(|i| (i % 5 != 0).then_some(i * 3 + b)),
                        )) as ArrayRef,
                    ),
                ])
            })
            .collect::<Vec<_>>();
        // Two partitions, so Partial → Final has something to merge.
        let (a, b) = batches.split_at(20);
        mem_scan(vec![a.to_vec(), b.to_vec()])
    }

    fn aggregates() -> Vec<Expr> {
        vec![
            count_star(),
            sum(col("v")),
            avg(col("v")),
            min(col("k")),
            max(col("v")),
        ]
    }

    fn aggregate(
        input: Arc<PhysicalPlan>,
        mode: AggregateMode,
        groups: Vec<Expr>,
        aggs: Vec<Expr>,
        aggr_input_schema: Arc<PlanSchema>,
        schema: Arc<PlanSchema>,
    ) -> Arc<PhysicalPlan> {
        Arc::new(PhysicalPlan::HashAggregate {
            input,
            mode,
            group_exprs: groups,
            aggr_exprs: aggs,
            aggr_input_schema,
            schema,
        })
    }

    /// Partial per partition → Exchange Single → Final, the planner's shape; the Partial
    /// schema comes from the planner's own state-field rules.
    fn two_phase(groups: Vec<Expr>) -> Arc<PhysicalPlan> {
        use ember_planner::physical::aggregate::aggregate_state_fields;
        use ember_planner::schema::QualifiedField;
        let raw = input();
        let raw_schema = raw.schema().clone();
        let mut partial_fields: Vec<QualifiedField> = groups
            .iter()
            .map(|e| e.to_field(&raw_schema).unwrap())
            .collect();
        for e in aggregates() {
            let Expr::AggregateFunction { func, args, .. } = e.unalias() else {
                unreachable!("aggregates() holds aggregate calls")
            };
            let t = args
                .first()
                .map_or(DataType::Int64, |a| a.data_type(&raw_schema).unwrap());
            for f in aggregate_state_fields(*func, &t, &e.output_name()).unwrap() {
                partial_fields.push(QualifiedField::new(None, Arc::new(f)));
            }
        }
        let final_fields = groups
            .iter()
            .chain(aggregates().iter())
            .map(|e| e.to_field(&raw_schema).unwrap())
            .collect();
        let partial = aggregate(
            raw,
            AggregateMode::Partial,
            groups.clone(),
            aggregates(),
            raw_schema.clone(),
            Arc::new(PlanSchema::new(partial_fields)),
        );
        let exchange = Arc::new(PhysicalPlan::Exchange {
            input: partial,
            kind: ExchangeKind::Single,
        });
        aggregate(
            exchange,
            AggregateMode::Final,
            groups,
            aggregates(),
            raw_schema,
            Arc::new(PlanSchema::new(final_fields)),
        )
    }

    fn single(groups: Vec<Expr>) -> Arc<PhysicalPlan> {
        let raw = input();
        let raw_schema = raw.schema().clone();
        let fields = groups
            .iter()
            .chain(aggregates().iter())
            .map(|e| e.to_field(&raw_schema).unwrap())
            .collect();
        let exchange = Arc::new(PhysicalPlan::Exchange {
            input: raw,
            kind: ExchangeKind::Single,
        });
        aggregate(
            exchange,
            AggregateMode::Single,
            groups,
            aggregates(),
            raw_schema,
            Arc::new(PlanSchema::new(fields)),
        )
    }

    fn ctx_with_budget(dir: &std::path::Path, budget: usize) -> Arc<TaskContext> {
        let mut ctx = TaskContext::standalone(Arc::new(FunctionRegistry::default()));
        ctx.batch_size = 64;
        ctx.memory = TaskMemory::new(MemoryPool::new(0, budget), dir.join("spill"));
        Arc::new(ctx)
    }

    #[test]
    fn final_and_single_spill_sorted_runs_and_give_the_in_memory_answer() {
        for groups in [vec![col("k")], vec![col("n")], vec![col("k"), col("n")]] {
            for plan in [two_phase(groups.clone()), single(groups.clone())] {
                let expected = collect(&plan, 0);
                let dir = tempfile::tempdir().unwrap();
                let ctx = ctx_with_budget(dir.path(), 4096);
                let spilled = collect_with(&plan, 0, &ctx);
                assert!(
                    ctx.memory.spills.files() >= 2,
                    "{groups:?}: expected several runs, got {}",
                    ctx.memory.spills.files()
                );
                assert_eq!(row_count(&spilled), row_count(&expected), "{groups:?}");
                assert_eq!(sorted_rows(&spilled), sorted_rows(&expected), "{groups:?}");
                let spill_dir = dir.path().join("spill");
                let left = std::fs::read_dir(&spill_dir).map_or(0, |d| d.count());
                assert_eq!(left, 0, "spill files are deleted after the merge");
                assert_eq!(ctx.memory.pool.used(), 0, "memory is released at the end");
            }
        }
    }

    #[test]
    fn partial_flushes_early_and_final_merges_the_pieces() {
        let plan = two_phase(vec![col("n")]);
        let PhysicalPlan::HashAggregate { input, .. } = plan.as_ref() else {
            unreachable!("two_phase ends in an aggregate")
        };
        let PhysicalPlan::Exchange { input: partial, .. } = input.as_ref() else {
            unreachable!("Final reads an exchange")
        };
        let dir = tempfile::tempdir().unwrap();
        let ctx = ctx_with_budget(dir.path(), 2048);
        let in_memory = collect(partial, 0);
        let flushed = collect_with(partial, 0, &ctx);
        assert!(
            row_count(&flushed) > row_count(&in_memory),
            "a flushing Partial emits some groups more than once ({} vs {})",
            row_count(&flushed),
            row_count(&in_memory)
        );
        assert_eq!(ctx.memory.spills.files(), 0, "Partial never spills");
        // The counts of all emitted states still add up to the input rows.
        let counts: i64 = flushed
            .iter()
            .map(|b| arrow::compute::sum(b.column(1).as_primitive::<Int64Type>()).unwrap_or(0))
            .sum();
        assert_eq!(counts, 500);
        // And the whole two-phase aggregate under the tiny budget is still right.
        let expected = collect(&plan, 0);
        assert_eq!(
            sorted_rows(&collect_with(&plan, 0, &ctx)),
            sorted_rows(&expected)
        );
    }

    #[test]
    fn distinct_aggregates_stay_in_memory_and_stay_correct() {
        use ember_planner::expr::count_distinct;
        let raw = input();
        let raw_schema = raw.schema().clone();
        let aggs = vec![count_distinct(col("v"))];
        let fields = [col("k")]
            .iter()
            .chain(aggs.iter())
            .map(|e| e.to_field(&raw_schema).unwrap())
            .collect();
        let plan = aggregate(
            Arc::new(PhysicalPlan::Exchange {
                input: raw,
                kind: ExchangeKind::Single,
            }),
            AggregateMode::Single,
            vec![col("k")],
            aggs,
            raw_schema,
            Arc::new(PlanSchema::new(fields)),
        );
        let dir = tempfile::tempdir().unwrap();
        let ctx = ctx_with_budget(dir.path(), 1024);
        let out = collect_with(&plan, 0, &ctx);
        assert_eq!(ctx.memory.spills.files(), 0);
        assert_eq!(sorted_rows(&out), sorted_rows(&collect(&plan, 0)));
        assert!(out.iter().all(|b| b.column(1).null_count() == 0));
    }
}
