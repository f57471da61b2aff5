//! What a running task can see: which partition it computes, the UDFs, shuffle input.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ember_planner::physical::ExchangeKind;
use ember_planner::table::BatchIter;
use ember_planner::Result;

use crate::memory::TaskMemory;
use crate::persist::{NoPersisted, PersistedReader, TeeMode};
use crate::udf::FunctionRegistry;

/// Reads shuffle blocks written by an earlier stage (implemented by the shuffle layer).
pub trait ShuffleReader: Send + Sync {
    /// All rows of reduce partition `reduce_partition` of `stage`'s output: block
    /// `reduce_partition` of every map partition (for `Broadcast`: every block of every map
    /// partition). A missing or corrupt block must surface as `EmberError::FetchFailed`.
    fn read(
        &self,
        stage: usize,
        kind: &ExchangeKind,
        map_partitions: usize,
        reduce_partition: usize,
    ) -> Result<BatchIter>;
}

pub struct TaskContext {
    pub stage: usize,
    pub partition: usize,
    pub attempt: usize,
    /// Target rows per batch produced by operators that build new batches.
    pub batch_size: usize,
    pub functions: Arc<FunctionRegistry>,
    pub shuffle: Arc<dyn ShuffleReader>,
    /// Reads partitions of persisted plans (cache, checkpoints).
    pub persisted: Arc<dyn PersistedReader>,
    /// Set when the task is killed (speculation loser, executor lost); operators check it
    /// between batches.
    pub cancelled: Arc<AtomicBool>,
    /// The executor's memory pool and where this task spills (sort, aggregate).
    pub memory: TaskMemory,
    /// What the stage's teed checkpoint does in this task (`None`: the stage tees none).
    pub tee: Option<TeeMode>,
}

impl TaskContext {
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }
}

/// A shuffle reader for plans without shuffles (tests, single-stage plans).
pub struct NoShuffle;

impl ShuffleReader for NoShuffle {
    fn read(&self, stage: usize, _: &ExchangeKind, _: usize, _: usize) -> Result<BatchIter> {
        Err(ember_planner::EmberError::Internal(format!(
            "plan reads shuffle output of stage {stage} but this task has no shuffle reader"
        )))
    }
}

impl TaskContext {
    /// A context for running one partition of a plan with no shuffle input.
    pub fn standalone(functions: Arc<FunctionRegistry>) -> Self {
        TaskContext {
            stage: 0,
            partition: 0,
            attempt: 0,
            batch_size: 8192,
            functions,
            shuffle: Arc::new(NoShuffle),
            persisted: Arc::new(NoPersisted),
            cancelled: Arc::new(AtomicBool::new(false)),
            memory: TaskMemory::unbounded(),
            tee: None,
        }
    }
}
