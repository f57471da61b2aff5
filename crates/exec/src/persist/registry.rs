//! Where the partitions of every persisted plan of a session are.
//!
//! The registry outlives jobs (a table cached by one query is read by the next), so it
//! belongs to the cluster, not to a scheduler. Only locations are kept here; the data lives
//! in executors' block stores (cache, local checkpoint) or in the checkpoint store (reliable
//! checkpoint).
//!
//! A reliable checkpoint's partitions may also have an in-memory copy: the batches the
//! writing task just encoded, kept in its executor's block store for the rest of the writing
//! job so its consumers need not read and decode the files again. That copy is only a
//! shortcut: losing it (executor lost, evicted, job over) never makes a partition missing and
//! is never reported as a lost block — the committed files are the durable copy.

use std::collections::HashMap;
use std::sync::Arc;

use ember_planner::persist::{PersistId, PersistMode};
use ember_storage::checkpoint::{Checkpoint, CheckpointWriter, Fingerprint, PartitionInfo};
use parking_lot::Mutex;

/// What the registry knows about one persisted plan.
#[derive(Debug)]
struct Entry {
    mode: PersistMode,
    /// Executor holding each partition's block (cache, local checkpoint), or for a reliable
    /// checkpoint the executor holding the in-memory copy of the written partition.
    blocks: Vec<Option<usize>>,
    /// Partition files written for a reliable checkpoint not yet committed.
    written: Vec<Option<PartitionInfo>>,
    /// The writer of the reliable checkpoint being built (set by the job that computes it).
    writer: Option<CheckpointWriter>,
    /// The committed reliable checkpoint: every partition is read from it.
    committed: Option<Arc<Checkpoint>>,
    /// How many times each partition's checkpoint file failed verification before a commit
    /// (bounds rewriting onto a store that keeps damaging it).
    unverified: Vec<u32>,
}

impl Entry {
    fn new(mode: PersistMode, partitions: usize) -> Self {
        Entry {
            mode,
            blocks: vec![None; partitions],
            written: vec![None; partitions],
            writer: None,
            committed: None,
            unverified: vec![0; partitions],
        }
    }

    fn available(&self, partition: usize) -> bool {
        match self.mode {
            // Written partitions count before the commit: the scheduler commits as soon as
            // all are written, before any consumer runs.
            PersistMode::Checkpoint => {
                self.committed.is_some() || self.written.get(partition).is_some_and(Option::is_some)
            }
            PersistMode::Cache(_) | PersistMode::LocalCheckpoint => {
                self.blocks.get(partition).is_some_and(Option::is_some)
            }
        }
    }
}

/// Where a partition of a persisted plan can be read.
#[derive(Debug, Clone)]
pub enum PersistedLocation {
    /// In this executor's block store.
    Block { executor: usize },
    /// In a committed reliable checkpoint; `copy` is the executor that may still hold the
    /// partition in memory (read it there first, the files otherwise).
    Checkpoint {
        checkpoint: Arc<Checkpoint>,
        copy: Option<usize>,
    },
}

/// The session's persisted plans. Cheap to share (`Arc`); all methods lock briefly.
#[derive(Debug, Default)]
pub struct PersistRegistry {
    entries: Mutex<HashMap<PersistId, Entry>>,
}

impl PersistRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes sure `id` is known with `partitions` partitions. A plan planned with another
    /// partition count than before (a changed setting) starts over.
    pub fn prepare(&self, id: PersistId, mode: PersistMode, partitions: usize) {
        let mut entries = self.entries.lock();
        let stale = entries
            .get(&id)
            .is_some_and(|e| e.mode != mode || e.blocks.len() != partitions);
        if stale || !entries.contains_key(&id) {
            entries.insert(id, Entry::new(mode, partitions));
        }
    }

    /// Partitions of `id` that must be computed before anyone can read them.
    pub fn missing(&self, id: PersistId, partitions: usize) -> Vec<usize> {
        let entries = self.entries.lock();
        match entries.get(&id) {
            Some(entry) => (0..partitions).filter(|&p| !entry.available(p)).collect(),
            None => (0..partitions).collect(),
        }
    }

    pub fn is_available(&self, id: PersistId, partition: usize) -> bool {
        self.entries
            .lock()
            .get(&id)
            .is_some_and(|e| e.available(partition))
    }

    /// Where partition `partition` of `id` can be read, if anywhere.
    pub fn locate(&self, id: PersistId, partition: usize) -> Option<PersistedLocation> {
        let entries = self.entries.lock();
        let entry = entries.get(&id)?;
        let block = entry.blocks.get(partition).copied().flatten();
        if let Some(checkpoint) = &entry.committed {
            return Some(PersistedLocation::Checkpoint {
                checkpoint: checkpoint.clone(),
                copy: block,
            });
        }
        if entry.mode == PersistMode::Checkpoint {
            // Written but not committed: nobody reads it before the commit.
            return None;
        }
        let executor = block?;
        Some(PersistedLocation::Block { executor })
    }

    /// A task stored partition `partition` of `id` in `executor`'s block store.
    pub fn register_block(&self, id: PersistId, partition: usize, executor: usize) {
        if let Some(slot) = self
            .entries
            .lock()
            .get_mut(&id)
            .and_then(|e| e.blocks.get_mut(partition))
        {
            *slot = Some(executor);
        }
    }

    /// Forgets a block that could not be read (evicted, or its file vanished). Returns the
    /// executor that was supposed to hold it, if the partition is now lost: the in-memory
    /// copy of a reliable checkpoint's partition is forgotten but never lost (the files
    /// still hold it).
    pub fn forget_block(&self, id: PersistId, partition: usize) -> Option<usize> {
        let mut entries = self.entries.lock();
        let entry = entries.get_mut(&id)?;
        let executor = entry.blocks.get_mut(partition).and_then(Option::take);
        executor.filter(|_| entry.mode != PersistMode::Checkpoint)
    }

    /// Forgets every block `executor` held; returns the partitions lost with it (in-memory
    /// copies of reliable checkpoint partitions are forgotten, not lost).
    pub fn remove_executor(&self, executor: usize) -> Vec<(PersistId, usize)> {
        let mut lost = Vec::new();
        for (id, entry) in self.entries.lock().iter_mut() {
            let copies_only = entry.mode == PersistMode::Checkpoint;
            for (p, slot) in entry.blocks.iter_mut().enumerate() {
                if *slot == Some(executor) {
                    *slot = None;
                    if !copies_only {
                        lost.push((*id, p));
                    }
                }
            }
        }
        lost.sort_unstable();
        lost
    }

    /// Drops `id` entirely (`unpersist`); returns whether it was known.
    pub fn remove(&self, id: PersistId) -> bool {
        self.entries.lock().remove(&id).is_some()
    }

    // ----- reliable checkpoints -----

    /// Fingerprints of the committed reliable checkpoints (in use by this session).
    pub fn committed_fingerprints(&self) -> Vec<Fingerprint> {
        let mut out: Vec<Fingerprint> = self
            .entries
            .lock()
            .values()
            .filter_map(|e| e.committed.as_ref().map(|c| c.fingerprint()))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The committed checkpoint of `id`, if any.
    pub fn committed(&self, id: PersistId) -> Option<Arc<Checkpoint>> {
        self.entries.lock().get(&id)?.committed.clone()
    }

    /// Installs a committed checkpoint (just written, or found again by fingerprint).
    pub fn set_committed(&self, id: PersistId, checkpoint: Arc<Checkpoint>) {
        if let Some(entry) = self.entries.lock().get_mut(&id) {
            entry.committed = Some(checkpoint);
            entry.unverified.iter_mut().for_each(|n| *n = 0);
            entry.writer = None;
            entry.written.iter_mut().for_each(|w| *w = None);
        }
    }

    /// The checkpoint of `id` cannot be trusted: nothing of it is read any more, and the
    /// partitions are written again from lineage (with fresh in-memory copies). Returns the
    /// dropped checkpoint.
    pub fn reject(&self, id: PersistId) -> Option<Arc<Checkpoint>> {
        let mut entries = self.entries.lock();
        let entry = entries.get_mut(&id)?;
        entry.written.iter_mut().for_each(|w| *w = None);
        entry.blocks.iter_mut().for_each(|b| *b = None);
        entry.committed.take()
    }

    /// Forgets the in-memory copies of the reliable checkpoint `id` (the writing job is over:
    /// later readers use the files). Returns whether `id` is a reliable checkpoint, so the
    /// caller knows to drop the copies from the executors' block stores.
    pub fn forget_checkpoint_copies(&self, id: PersistId) -> bool {
        let mut entries = self.entries.lock();
        match entries.get_mut(&id) {
            Some(entry) if entry.mode == PersistMode::Checkpoint => {
                entry.blocks.iter_mut().for_each(|b| *b = None);
                true
            }
            _ => false,
        }
    }

    /// Starts (or continues) writing the checkpoint of `id` with `writer`.
    pub fn set_writer(&self, id: PersistId, writer: CheckpointWriter) {
        if let Some(entry) = self.entries.lock().get_mut(&id) {
            entry.writer = Some(writer);
        }
    }

    pub fn writer(&self, id: PersistId) -> Option<CheckpointWriter> {
        self.entries.lock().get(&id)?.writer.clone()
    }

    /// A task wrote partition `info.partition` of the checkpoint of `id`.
    pub fn record_written(&self, id: PersistId, info: PartitionInfo) {
        if let Some(slot) = self
            .entries
            .lock()
            .get_mut(&id)
            .and_then(|e| e.written.get_mut(info.partition))
        {
            *slot = Some(info);
        }
    }

    /// The file of partition `partition` of the checkpoint of `id` failed verification before
    /// the commit: it (and its in-memory copy) no longer counts as written, so the partition
    /// is computed and written again. Returns how many times that partition's file has failed
    /// verification since the checkpoint was last committed.
    pub fn forget_written(&self, id: PersistId, partition: usize) -> u32 {
        let mut entries = self.entries.lock();
        let Some(entry) = entries.get_mut(&id) else {
            return 0;
        };
        if let Some(slot) = entry.written.get_mut(partition) {
            *slot = None;
        }
        if let Some(slot) = entry.blocks.get_mut(partition) {
            *slot = None;
        }
        entry.unverified.get_mut(partition).map_or(0, |n| {
            *n += 1;
            *n
        })
    }

    /// Every partition written and not committed yet: the writer and the partition infos
    /// to commit.
    pub fn ready_to_commit(&self, id: PersistId) -> Option<(CheckpointWriter, Vec<PartitionInfo>)> {
        let entries = self.entries.lock();
        let entry = entries.get(&id)?;
        if entry.committed.is_some() || entry.written.iter().any(Option::is_none) {
            return None;
        }
        let infos = entry.written.iter().flatten().cloned().collect();
        Some((entry.writer.clone()?, infos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ember_planner::persist::StorageLevel;

    #[test]
    fn blocks_are_lost_with_their_executor_only() {
        let registry = PersistRegistry::new();
        let mode = PersistMode::Cache(StorageLevel::MemoryOnly);
        registry.prepare(7, mode, 3);
        assert_eq!(registry.missing(7, 3), vec![0, 1, 2]);
        registry.register_block(7, 0, 0);
        registry.register_block(7, 1, 1);
        registry.register_block(7, 2, 0);
        assert!(registry.missing(7, 3).is_empty());
        assert_eq!(registry.remove_executor(0), vec![(7, 0), (7, 2)]);
        assert_eq!(registry.missing(7, 3), vec![0, 2]);
        assert!(matches!(
            registry.locate(7, 1),
            Some(PersistedLocation::Block { executor: 1 })
        ));
    }

    #[test]
    fn checkpoint_copies_are_read_first_but_never_lost() {
        let registry = PersistRegistry::new();
        registry.prepare(3, PersistMode::Checkpoint, 2);
        registry.register_block(3, 0, 1);
        // Written but not committed: neither the copy nor the files are read yet.
        assert!(registry.locate(3, 0).is_none());
        assert_eq!(registry.missing(3, 2), vec![0, 1]);
        // Losing the executor or the block loses nothing: the files are the durable copy.
        assert!(registry.remove_executor(1).is_empty());
        registry.register_block(3, 1, 0);
        assert_eq!(registry.forget_block(3, 1), None);
        registry.register_block(3, 1, 0);
        assert!(registry.forget_checkpoint_copies(3));
        assert!(!registry.forget_checkpoint_copies(4));
        registry.prepare(5, PersistMode::LocalCheckpoint, 1);
        registry.register_block(5, 0, 0);
        assert!(!registry.forget_checkpoint_copies(5));
        assert_eq!(registry.forget_block(5, 0), Some(0));
    }

    #[test]
    fn a_changed_partition_count_starts_over() {
        let registry = PersistRegistry::new();
        let mode = PersistMode::LocalCheckpoint;
        registry.prepare(1, mode, 2);
        registry.register_block(1, 0, 0);
        registry.register_block(1, 1, 0);
        registry.prepare(1, mode, 2);
        assert!(registry.missing(1, 2).is_empty());
        registry.prepare(1, mode, 4);
        assert_eq!(registry.missing(1, 4), vec![0, 1, 2, 3]);
    }
}
