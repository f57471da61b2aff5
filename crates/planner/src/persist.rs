//! Persisted plans: `cache()`, `persist(level)`, `local_checkpoint()` and `checkpoint()`.
//!
//! A [`Persist`] node marks a subplan whose partitions are kept once computed, so later
//! queries (and recovery) read them instead of recomputing the lineage below. The node is a
//! stage boundary: the physical planner turns it into `PhysicalPlan::Persist`, the stage
//! cutter makes its input a stage of its own whose output goes to the block store or the
//! checkpoint store, and consumers read it partition for partition
//! (`PhysicalPlan::PersistRead`). The lineage stays in the plan: a lost cached block or a
//! rejected checkpoint is recomputed from it.
//!
//! Optimizer rules treat the node as a barrier: nothing is pushed into it and no column of
//! its input is pruned, so the persisted data is the same whatever query reads it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a cached partition may be kept (Spark's levels of the same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum StorageLevel {
    /// Memory only; evicted blocks are dropped and recomputed when next needed (`cache()`).
    #[default]
    MemoryOnly,
    /// Memory while it fits; evicted or too-large blocks go to local disk.
    MemoryAndDisk,
    /// Local disk only (no memory pressure, slower reads).
    DiskOnly,
}

impl fmt::Display for StorageLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StorageLevel::MemoryOnly => "MEMORY_ONLY",
            StorageLevel::MemoryAndDisk => "MEMORY_AND_DISK",
            StorageLevel::DiskOnly => "DISK_ONLY",
        })
    }
}

/// How a persisted plan keeps its partitions, and what losing them costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PersistMode {
    /// Blocks in the computing executor's block store; lost with the executor and then
    /// recomputed from lineage.
    Cache(StorageLevel),
    /// Like a disk cache, but meant to cut lineage for iterative jobs: kept in executor
    /// storage; when that executor dies Ember recomputes the partitions from the lineage it
    /// kept (Spark fails the job there).
    LocalCheckpoint,
    /// Parquet files plus a manifest under `ember.checkpoint.dir`, committed atomically once
    /// every partition is written; survives executors and the application (restart reuse by
    /// plan fingerprint).
    Checkpoint,
}

impl fmt::Display for PersistMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PersistMode::Cache(level) => write!(f, "cache {level}"),
            PersistMode::LocalCheckpoint => f.write_str("local checkpoint"),
            PersistMode::Checkpoint => f.write_str("reliable checkpoint"),
        }
    }
}

/// Identifies one persisted plan within a session (the block store's `cache_id`).
pub type PersistId = u64;
