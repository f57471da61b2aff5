//! Persisted plans at run time: `cache()` / `persist(level)` / `local_checkpoint()` blocks in
//! executors' block stores, and reliable checkpoints in the checkpoint store.
//!
//! A persist stage (`StageOutput::Persist`) runs like any stage; its task keeps its partition
//! ([`store_partition`]) instead of shuffling it, and the driver records where
//! ([`PersistRegistry`]). Consumers read partition `p` through [`PersistedReader`]; a
//! partition that is not where the registry says (its executor died, the block was evicted,
//! a checkpoint file fails its checksum) surfaces as a fetch failure of the persist stage,
//! so the scheduler's ordinary recovery recomputes exactly the lost partitions from the
//! lineage the plan still holds.
//!
//! A reliable checkpoint read once, by one stage, is usually teed into that stage ([`tee`]):
//! its rows are written as they flow through, and nothing is held between stages. Otherwise
//! its stage's task writes its partition's Parquet file and also keeps the batches in its
//! executor's memory (when they fit without evicting anything), so the consumers of the
//! writing job read them from there instead of reading and decoding the file just written;
//! every later reader (a later job, a restarted application, a consumer whose copy is gone
//! with its executor) reads the committed files. The files are written and committed before
//! any consumer runs either way, so the lineage is cut all the same.

mod registry;
mod tee;

use std::sync::Arc;

use arrow::record_batch::RecordBatch;

use ember_planner::persist::{PersistId, PersistMode, StorageLevel};
use ember_planner::table::BatchIter;
use ember_planner::{EmberError, Result};
use ember_storage::block_store::{BlockId, BlockLocation};
use ember_storage::checkpoint::{PartitionInfo, PartitionWriter};

pub use registry::{PersistRegistry, PersistedLocation};
pub use tee::{execute_persist, TeeMode, TeeSink};

use crate::executor::LocalExecutor;

/// Reads kept partitions of persisted plans (what `PhysicalPlan::PersistRead` runs).
pub trait PersistedReader: Send + Sync {
    /// All rows of partition `partition` of persisted plan `id`, computed by stage `stage`.
    /// Anything unreadable is `EmberError::FetchFailed` for that stage and partition.
    fn read(&self, stage: usize, id: PersistId, partition: usize) -> Result<BatchIter>;
}

/// For tasks that read no persisted plan (tests, standalone plans).
pub struct NoPersisted;

impl PersistedReader for NoPersisted {
    fn read(&self, stage: usize, id: PersistId, _: usize) -> Result<BatchIter> {
        Err(EmberError::Internal(format!(
            "plan reads persisted plan {id} (stage {stage}) but this task has no persisted reader"
        )))
    }
}

/// Reads through the session's registry from any executor's block store or the committed
/// checkpoint.
pub struct RegistryReader {
    registry: Arc<PersistRegistry>,
    executors: Vec<Arc<LocalExecutor>>,
}

impl RegistryReader {
    pub fn new(registry: Arc<PersistRegistry>, executors: Vec<Arc<LocalExecutor>>) -> Self {
        RegistryReader {
            registry,
            executors,
        }
    }
}

fn lost(stage: usize, id: PersistId, partition: usize, why: String) -> EmberError {
    EmberError::FetchFailed {
        stage,
        map_partition: partition,
        reduce_partition: partition,
        message: format!("persisted plan {id} partition {partition}: {why}"),
    }
}

impl PersistedReader for RegistryReader {
    fn read(&self, stage: usize, id: PersistId, partition: usize) -> Result<BatchIter> {
        let batches = match self.registry.locate(id, partition) {
            None => return Err(lost(stage, id, partition, "not available".into())),
            Some(PersistedLocation::Block { executor }) => {
                let block = self
                    .executors
                    .get(executor)
                    .filter(|e| e.is_alive())
                    .and_then(|e| e.blocks().get(BlockId::new(id, partition)));
                block.ok_or_else(|| {
                    lost(
                        stage,
                        id,
                        partition,
                        format!("block missing on executor {executor}"),
                    )
                })?
            }
            Some(PersistedLocation::Checkpoint { checkpoint, copy }) => {
                let in_memory = copy
                    .and_then(|executor| self.executors.get(executor))
                    .filter(|e| e.is_alive())
                    .and_then(|e| e.blocks().get(BlockId::new(id, partition)));
                match in_memory {
                    Some(batches) => batches,
                    None => checkpoint.read_partition(partition).map_err(|e| {
                        lost(stage, id, partition, format!("checkpoint rejected: {e}"))
                    })?,
                }
            }
        };
        Ok(Box::new(batches.into_iter().map(Ok)))
    }
}

/// What a persist task kept, for the driver to register.
#[derive(Debug)]
pub enum Kept {
    /// In the executor's block store; `dropped` are `MemoryOnly` blocks evicted for it.
    Block { dropped: Vec<BlockId> },
    /// Written as a file of the reliable checkpoint being built; `in_memory` when the batches
    /// were also kept in the executor's block store for the writing job's consumers, and
    /// `dropped` as for `Block`.
    Checkpoint {
        info: PartitionInfo,
        in_memory: bool,
        dropped: Vec<BlockId>,
    },
}

/// Keeps the batches of a just-written checkpoint partition in `executor`'s memory when they
/// fit beside what is there: the copy is a shortcut for this job's consumers, so it does not
/// make room by evicting cached blocks nor go to disk (the file already is there). Returns
/// whether it was kept, and the `MemoryOnly` blocks a concurrent put squeezed out anyway
/// (the scheduler reports those lost, as for any put).
fn keep_copy(
    executor: &LocalExecutor,
    block: BlockId,
    batches: Vec<RecordBatch>,
) -> Result<(bool, Vec<BlockId>)> {
    let blocks = executor.blocks();
    let bytes: usize = batches.iter().map(|b| b.get_array_memory_size()).sum();
    if blocks.memory_used().saturating_add(bytes) > blocks.memory_limit() {
        return Ok((false, Vec::new()));
    }
    let outcome = blocks.put(block, batches, StorageLevel::MemoryOnly)?;
    Ok((outcome.stored.is_some(), outcome.dropped))
}

/// The file of partition `partition` of a reliable checkpoint being written, when `mode` is
/// [`PersistMode::Checkpoint`]: the task that computes the partition feeds it each batch as
/// it is produced, then hands it to [`store_partition`].
pub fn checkpoint_file(
    registry: &PersistRegistry,
    id: PersistId,
    mode: PersistMode,
    partition: usize,
    attempt: usize,
) -> Result<Option<PartitionWriter>> {
    if mode != PersistMode::Checkpoint {
        return Ok(None);
    }
    let writer = registry.writer(id).ok_or_else(|| {
        EmberError::Internal(format!(
            "no checkpoint writer for persisted plan {id}: the job did not begin it"
        ))
    })?;
    Ok(Some(writer.partition_writer(partition, attempt)))
}

/// Keeps partition `partition` of persisted plan `id` on `executor` (or in the checkpoint
/// being written: `file`, from [`checkpoint_file`], holds it encoded) as the task that
/// computed it finishes.
pub fn store_partition(
    executor: &LocalExecutor,
    id: PersistId,
    mode: PersistMode,
    partition: usize,
    batches: Vec<RecordBatch>,
    file: Option<PartitionWriter>,
) -> Result<Kept> {
    let level = match mode {
        PersistMode::Cache(level) => level,
        // Spark keeps local checkpoints in memory and on disk as well.
        PersistMode::LocalCheckpoint => StorageLevel::MemoryAndDisk,
        PersistMode::Checkpoint => {
            let file = file.ok_or_else(|| {
                EmberError::Internal(format!(
                    "checkpoint partition {partition} of persisted plan {id} has no file"
                ))
            })?;
            let info = file.finish()?;
            let (in_memory, dropped) = keep_copy(executor, BlockId::new(id, partition), batches)?;
            return Ok(Kept::Checkpoint {
                info,
                in_memory,
                dropped,
            });
        }
    };
    let block = BlockId::new(id, partition);
    let outcome = executor.blocks().put(block, batches.clone(), level)?;
    if outcome.stored.is_some() {
        return Ok(Kept::Block {
            dropped: outcome.dropped,
        });
    }
    // A MEMORY_ONLY block larger than the whole storage memory: Spark would not cache it and
    // recompute it on every read. The consumer of this stage reads it right after, so it goes
    // to local disk instead of being recomputed in a loop.
    let fallback = executor
        .blocks()
        .put(block, batches, StorageLevel::DiskOnly)?;
    match fallback.stored {
        Some(BlockLocation::Disk | BlockLocation::Memory) => Ok(Kept::Block {
            dropped: outcome.dropped,
        }),
        None => Err(EmberError::ExecutorLost {
            executor: executor.id(),
            message: format!("executor lost while storing {block}"),
        }),
    }
}
