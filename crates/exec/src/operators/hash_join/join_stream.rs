//! The probe loop shared by the hash join and the nested loop join.
//!
//! Both joins hold their build (right) side as one concatenated [`RecordBatch`] and stream
//! the probe (left) side through it. They differ only in *which* (probe row, build row)
//! pairs are candidates: the hash join looks keys up in a hash table, the nested loop join
//! pairs every probe row with every build row. That difference is the [`PairSource`]
//! trait; everything else — the optional join filter, tracking which rows matched, and
//! turning pairs into output rows for each join type — lives here, once.
//!
//! ```text
//!   probe batch ──► PairSource ──► candidate pairs ──► filter ──► matched pairs
//!                   (≤ batch_size per call)                          │
//!        Inner/Left/Right/Full: joined rows ◄────────────────────────┤
//!        per probe row: matched? ◄───────────────────────────────────┤
//!        per build row: matched? (Right/Full only) ◄─────────────────┘
//!   end of probe batch  ──► Left/Full: unmatched probe rows; Semi/Anti: the kept rows
//!   end of probe input  ──► Right/Full: unmatched build rows
//! ```
//!
//! Output order is deterministic (recomputation after a failure relies on it): pairs come
//! in probe-row order, build rows ascending within a probe row; a probe batch's unmatched
//! rows follow its joined rows; unmatched build rows come last, ascending.

use std::sync::Arc;

use arrow::array::{
    new_null_array, Array, ArrayRef, BooleanArray, RecordBatch, RecordBatchOptions, UInt32Array,
};
use arrow::compute::{filter, filter_record_batch, take_arrays};
use arrow::datatypes::{Field, Schema, SchemaRef};

use ember_planner::logical::JoinType;
use ember_planner::schema::PlanSchema;
use ember_planner::table::BatchIter;
use ember_planner::{internal_err, Result};

use crate::expr::{evaluate_predicate, PhysicalExprRef};

/// Produces the candidate (probe row, build row) pairs of one probe batch at a time.
pub(crate) trait PairSource: Send {
    /// Starts on a new probe batch. `excluded` has one entry per probe row, all false; a
    /// source may set entries to true for rows that must never be returned by an anti join
    /// (NOT IN with a NULL key).
    fn start_batch(&mut self, batch: &RecordBatch, excluded: &mut [bool]) -> Result<()>;

    /// The next at most `limit` candidate pairs of the current probe batch as
    /// (probe indices, build indices), in probe-row order and ascending build row within a
    /// probe row; `None` once the batch has no more. A returned chunk may be empty.
    fn next_pairs(&mut self, limit: usize) -> Result<Option<(UInt32Array, UInt32Array)>>;
}

/// A join filter compiled over the joined row: the left columns, then the right columns.
#[derive(Clone)]
pub(crate) struct JoinFilter {
    pub expr: PhysicalExprRef,
    /// The schema of the joined row batch the filter is evaluated on (all fields nullable,
    /// so the batch is valid whatever nulls its inputs carry).
    pub schema: SchemaRef,
}

impl JoinFilter {
    pub fn new(expr: PhysicalExprRef, left: &PlanSchema, right: &PlanSchema) -> Self {
        let fields: Vec<Field> = left
            .fields()
            .iter()
            .chain(right.fields())
            .map(|f| f.field.as_ref().clone().with_nullable(true))
            .collect();
        JoinFilter {
            expr,
            schema: Arc::new(Schema::new(fields)),
        }
    }
}

/// What a join produces, independent of how it finds candidate pairs.
#[derive(Clone)]
pub(crate) struct JoinOutput {
    pub join_type: JoinType,
    pub filter: Option<JoinFilter>,
    /// The plan's output schema.
    pub schema: SchemaRef,
    /// How many of the output columns come from the left (probe) side.
    pub left_width: usize,
    /// Target rows per output batch (also the most candidate pairs examined at once).
    pub batch_size: usize,
}

impl JoinOutput {
    /// Checks that the output schema has the columns this join type produces.
    pub fn validate(&self, build: &RecordBatch) -> Result<()> {
        let expected = if self.join_type.outputs_right() {
            self.left_width + build.num_columns()
        } else {
            self.left_width
        };
        if self.schema.fields().len() != expected {
            return internal_err!(
                "{} join output schema has {} columns, but its inputs give {expected}",
                self.join_type,
                self.schema.fields().len()
            );
        }
        Ok(())
    }
}

/// The probe batch being joined and which of its rows found a match so far.
struct ProbeBatch {
    batch: RecordBatch,
    matched: Vec<bool>,
    /// Rows an anti join must drop even without a match (see [`PairSource::start_batch`]).
    excluded: Vec<bool>,
}

enum Phase {
    Probing,
    /// After the probe input ended: emitting build rows no probe row matched, from `next`.
    UnmatchedBuild {
        next: usize,
    },
    Done,
}

/// The join's output iterator. See the module docs for the order of rows.
pub(crate) struct JoinStream<S> {
    pairs: S,
    probe: BatchIter,
    build: RecordBatch,
    output: JoinOutput,
    current: Option<ProbeBatch>,
    /// For Right/Full joins: which build rows matched some probe row.
    build_matched: Option<Vec<bool>>,
    phase: Phase,
}

impl<S: PairSource> JoinStream<S> {
    pub fn try_new(
        pairs: S,
        probe: BatchIter,
        build: RecordBatch,
        output: JoinOutput,
    ) -> Result<Self> {
        output.validate(&build)?;
        let build_matched = matches!(output.join_type, JoinType::Right | JoinType::Full)
            .then(|| vec![false; build.num_rows()]);
        Ok(JoinStream {
            pairs,
            probe,
            build,
            output: JoinOutput {
                batch_size: output.batch_size.max(1),
                ..output
            },
            current: None,
            build_matched,
            phase: Phase::Probing,
        })
    }

    /// The next non-empty output batch, or `None` at the end.
    fn advance(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            let out = match self.phase {
                Phase::Done => return Ok(None),
                Phase::Probing => self.probe_step()?,
                Phase::UnmatchedBuild { next } => self.unmatched_build_rows(next)?,
            };
            if let Some(batch) = out.filter(|b| b.num_rows() > 0) {
                return Ok(Some(batch));
            }
        }
    }

    /// One unit of probing: pull a probe batch, join one chunk of pairs, or finish a probe
    /// batch. Returns the rows that unit produced, if any.
    fn probe_step(&mut self) -> Result<Option<RecordBatch>> {
        let Some(mut current) = self.current.take() else {
            match self.probe.next().transpose()? {
                None => {
                    self.phase = if self.build_matched.is_some() {
                        Phase::UnmatchedBuild { next: 0 }
                    } else {
                        Phase::Done
                    };
                }
                Some(batch) if batch.num_rows() == 0 => {}
                Some(batch) => {
                    let rows = batch.num_rows();
                    let mut excluded = vec![false; rows];
                    self.pairs.start_batch(&batch, &mut excluded)?;
                    self.current = Some(ProbeBatch {
                        batch,
                        matched: vec![false; rows],
                        excluded,
                    });
                }
            }
            return Ok(None);
        };
        match self.pairs.next_pairs(self.output.batch_size)? {
            Some((probe_idx, build_idx)) => {
                let out = self.join_pairs(&mut current, probe_idx, build_idx);
                self.current = Some(current);
                out
            }
            None => self.finish_probe_batch(current),
        }
    }

    /// Applies the filter to candidate pairs, records which rows matched, and returns the
    /// joined rows for join types that output pairs.
    fn join_pairs(
        &mut self,
        current: &mut ProbeBatch,
        probe_idx: UInt32Array,
        build_idx: UInt32Array,
    ) -> Result<Option<RecordBatch>> {
        if probe_idx.is_empty() {
            return Ok(None);
        }
        let outputs_pairs = self.output.join_type.outputs_right();
        let (probe_idx, build_idx, joined) = match &self.output.filter {
            None => (probe_idx, build_idx, None),
            Some(f) => {
                let columns = self.pair_columns(&current.batch, &probe_idx, &build_idx)?;
                let options = RecordBatchOptions::new().with_row_count(Some(probe_idx.len()));
                let joined =
                    RecordBatch::try_new_with_options(f.schema.clone(), columns, &options)?;
                let keep = evaluate_predicate(f.expr.as_ref(), &joined)?;
                let probe_idx = as_u32(filter(&probe_idx, &keep)?)?;
                let build_idx = as_u32(filter(&build_idx, &keep)?)?;
                let joined = outputs_pairs
                    .then(|| filter_record_batch(&joined, &keep))
                    .transpose()?;
                (probe_idx, build_idx, joined)
            }
        };
        for i in probe_idx.values().iter() {
            current.matched[*i as usize] = true;
        }
        if let Some(build_matched) = &mut self.build_matched {
            for j in build_idx.values().iter() {
                build_matched[*j as usize] = true;
            }
        }
        if !outputs_pairs || probe_idx.is_empty() {
            return Ok(None);
        }
        let columns = match joined {
            Some(joined) => joined.columns().to_vec(),
            None => self.pair_columns(&current.batch, &probe_idx, &build_idx)?,
        };
        self.output_batch(columns, probe_idx.len()).map(Some)
    }

    /// Left columns taken by `probe_idx`, then right columns taken by `build_idx`.
    fn pair_columns(
        &self,
        probe: &RecordBatch,
        probe_idx: &UInt32Array,
        build_idx: &UInt32Array,
    ) -> Result<Vec<ArrayRef>> {
        let mut columns = take_arrays(probe.columns(), probe_idx, None)?;
        columns.extend(take_arrays(self.build.columns(), build_idx, None)?);
        Ok(columns)
    }

    /// The rows a finished probe batch contributes besides its joined pairs.
    fn finish_probe_batch(&mut self, current: ProbeBatch) -> Result<Option<RecordBatch>> {
        let ProbeBatch {
            batch,
            matched,
            excluded,
        } = current;
        match self.output.join_type {
            JoinType::Inner | JoinType::Right => Ok(None),
            JoinType::Left | JoinType::Full => {
                let unmatched: UInt32Array = matched
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| !**m)
                    .map(|(i, _)| i as u32)
                    .collect();
                if unmatched.is_empty() {
                    return Ok(None);
                }
                let mut columns = take_arrays(batch.columns(), &unmatched, None)?;
                columns.extend(self.null_columns(
                    self.output.left_width,
                    self.output.schema.fields().len(),
                    unmatched.len(),
                ));
                self.output_batch(columns, unmatched.len()).map(Some)
            }
            JoinType::LeftSemi => self.keep_probe_rows(&batch, BooleanArray::from(matched)),
            JoinType::LeftAnti => {
                let keep: BooleanArray = matched
                    .iter()
                    .zip(&excluded)
                    .map(|(m, e)| Some(!m && !e))
                    .collect();
                self.keep_probe_rows(&batch, keep)
            }
        }
    }

    fn keep_probe_rows(
        &self,
        batch: &RecordBatch,
        keep: BooleanArray,
    ) -> Result<Option<RecordBatch>> {
        let kept = filter_record_batch(batch, &keep)?;
        let rows = kept.num_rows();
        self.output_batch(kept.columns().to_vec(), rows).map(Some)
    }

    /// Up to `batch_size` build rows that no probe row matched, starting at row `from`.
    fn unmatched_build_rows(&mut self, from: usize) -> Result<Option<RecordBatch>> {
        let Some(build_matched) = &self.build_matched else {
            self.phase = Phase::Done;
            return Ok(None);
        };
        let mut rows = Vec::new();
        let mut next = from;
        while next < build_matched.len() && rows.len() < self.output.batch_size {
            if !build_matched[next] {
                rows.push(next as u32);
            }
            next += 1;
        }
        self.phase = if next < build_matched.len() {
            Phase::UnmatchedBuild { next }
        } else {
            Phase::Done
        };
        if rows.is_empty() {
            return Ok(None);
        }
        let rows = UInt32Array::from(rows);
        let mut columns = self.null_columns(0, self.output.left_width, rows.len());
        columns.extend(take_arrays(self.build.columns(), &rows, None)?);
        self.output_batch(columns, rows.len()).map(Some)
    }

    /// All-NULL arrays for output columns `start..end` (the side a row has no match on).
    fn null_columns(&self, start: usize, end: usize, rows: usize) -> Vec<ArrayRef> {
        self.output.schema.fields()[start..end]
            .iter()
            .map(|f| new_null_array(f.data_type(), rows))
            .collect()
    }

    fn output_batch(&self, columns: Vec<ArrayRef>, rows: usize) -> Result<RecordBatch> {
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(RecordBatch::try_new_with_options(
            self.output.schema.clone(),
            columns,
            &options,
        )?)
    }
}

impl<S: PairSource> Iterator for JoinStream<S> {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.advance() {
            Ok(batch) => batch.map(Ok),
            Err(e) => {
                self.phase = Phase::Done;
                Some(Err(e))
            }
        }
    }
}

/// Downcasts the result of a kernel applied to a `UInt32Array` back to one.
fn as_u32(array: ArrayRef) -> Result<UInt32Array> {
    match array.as_any().downcast_ref::<UInt32Array>() {
        Some(a) => Ok(a.clone()),
        None => internal_err!("expected UInt32 join indices, got {}", array.data_type()),
    }
}

/// Converts a row count to the `u32` row indices joins use.
pub(crate) fn row_count_u32(rows: usize, what: &str) -> Result<u32> {
    u32::try_from(rows).map_err(|_| {
        ember_planner::EmberError::Execution(format!(
            "{what} has {rows} rows; a join side is limited to {} rows per partition",
            u32::MAX
        ))
    })
}
