//! Teed checkpoints at run time: the `Persist` node a stage keeps inside its plan
//! (`ember_planner::stages::StageTee`) hands each batch to the checkpoint's partition file on
//! its way up to the rest of the stage, so the rows are encoded while they are in cache and
//! never held whole between two stages.
//!
//! ```text
//!   Scan → Filter → Persist(tee) → Aggregate(partial) → shuffle
//!                      └─► part-00003.parquet (encoded batch by batch)
//! ```
//!
//! Once the checkpoint is committed, the same node reads the partition from it instead
//! (`TeeMode::Read`): the task runs nothing below it, so the lineage is cut. A damaged
//! file surfaces as a fetch failure of the stage's own checkpoint, which the scheduler
//! turns into rewriting it from lineage.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use parking_lot::Mutex;

use ember_planner::persist::PersistId;
use ember_planner::physical::PhysicalPlan;
use ember_planner::table::BatchIter;
use ember_planner::{EmberError, Result};
use ember_storage::checkpoint::PartitionWriter;

use super::Kept;
use crate::context::TaskContext;
use crate::operators;

/// What the `Persist` node of a task's stage does.
pub enum TeeMode {
    /// Compute the partition and write it to the checkpoint as it flows.
    Write(Arc<TeeSink>),
    /// The checkpoint is committed: read the partition from it.
    Read,
}

/// The partition file a teed checkpoint is written to, shared by the `Persist` operator
/// (which feeds it) and the task (which finishes it when the stage's output is done).
pub struct TeeSink {
    id: PersistId,
    state: Mutex<SinkState>,
}

struct SinkState {
    file: Option<PartitionWriter>,
    /// Whether the `Persist` operator was run at all.
    started: bool,
    /// Whether the operator's input was read to its end.
    exhausted: bool,
    /// The input's unread rest, when the stage's operators stopped pulling early (a limit,
    /// a join with nothing to match): the checkpoint still needs every row.
    rest: Option<BatchIter>,
}

impl TeeSink {
    pub fn new(id: PersistId, file: PartitionWriter) -> Self {
        TeeSink {
            id,
            state: Mutex::new(SinkState {
                file: Some(file),
                started: false,
                exhausted: false,
                rest: None,
            }),
        }
    }

    fn write(&self, batch: &RecordBatch) -> Result<()> {
        match &mut self.state.lock().file {
            Some(file) => file.write(batch),
            None => Err(EmberError::Internal(format!(
                "checkpoint {} partition written after it was finished",
                self.id
            ))),
        }
    }

    /// Finishes the partition file once the stage's own output is complete: rows the
    /// stage did not pull (or the whole input of `input`, if the `Persist` operator never
    /// ran) are read and written first.
    pub fn finish(&self, input: &Arc<PhysicalPlan>, ctx: &Arc<TaskContext>) -> Result<Kept> {
        let partition = ctx.partition;
        let (started, exhausted, rest) = {
            let mut state = self.state.lock();
            (state.started, state.exhausted, state.rest.take())
        };
        let unread = match (started, exhausted, rest) {
            (_, true, _) => None,
            (true, false, Some(rest)) => Some(rest),
            (true, false, None) => {
                return Err(EmberError::Internal(format!(
                    "checkpoint {} partition {partition}: its input was neither read to the \
                     end nor released",
                    self.id
                )))
            }
            (false, _, _) => Some(operators::execute(input, partition, ctx)?),
        };
        for batch in unread.into_iter().flatten() {
            if ctx.is_cancelled() {
                return Err(EmberError::Execution(format!(
                    "task {}.{partition} was cancelled while writing checkpoint {}",
                    ctx.stage, self.id
                )));
            }
            self.write(&batch?)?;
        }
        let file = self.state.lock().file.take().ok_or_else(|| {
            EmberError::Internal(format!("checkpoint {} finished twice", self.id))
        })?;
        Ok(Kept::Checkpoint {
            info: file.finish()?,
            in_memory: false,
            dropped: Vec::new(),
        })
    }
}

/// Runs the `Persist` node `id` over `input` for the task of `ctx`: a tee, a read of the
/// committed checkpoint, or (outside a stage that keeps it) a plain pass-through.
pub fn execute_persist(
    input: &Arc<PhysicalPlan>,
    id: PersistId,
    partition: usize,
    ctx: &Arc<TaskContext>,
) -> Result<BatchIter> {
    match &ctx.tee {
        None => operators::execute(input, partition, ctx),
        Some(TeeMode::Read) => ctx.persisted.read(ctx.stage, id, partition),
        Some(TeeMode::Write(sink)) => {
            if sink.id != id {
                return Err(EmberError::Internal(format!(
                    "stage {} tees checkpoint {} but its plan persists {id}",
                    ctx.stage, sink.id
                )));
            }
            if std::mem::replace(&mut sink.state.lock().started, true) {
                // Its rows would be written twice.
                return Err(EmberError::Internal(format!(
                    "stage {} runs the Persist node of checkpoint {id} twice",
                    ctx.stage
                )));
            }
            let input = operators::execute(input, partition, ctx)?;
            Ok(Box::new(TeeIter {
                input: Some(input),
                sink: sink.clone(),
            }))
        }
    }
}

/// The `Persist` operator's output: its input's batches, each written to the sink first.
struct TeeIter {
    /// `None` once exhausted.
    input: Option<BatchIter>,
    sink: Arc<TeeSink>,
}

impl Iterator for TeeIter {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        let next = self.input.as_mut()?.next();
        match next {
            Some(Ok(batch)) => Some(self.sink.write(&batch).map(|()| batch)),
            Some(Err(e)) => Some(Err(e)),
            None => {
                self.input = None;
                self.sink.state.lock().exhausted = true;
                None
            }
        }
    }
}

impl Drop for TeeIter {
    /// Dropped before its end: the rest is left to [`TeeSink::finish`].
    fn drop(&mut self) {
        if let Some(rest) = self.input.take() {
            self.sink.state.lock().rest = Some(rest);
        }
    }
}
