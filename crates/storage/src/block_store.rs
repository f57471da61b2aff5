//! The per-executor block store that holds cached partitions (`cache()`, `persist(level)`,
//! `local_checkpoint()`).
//!
//! Blocks live in memory, on the executor's local disk (Arrow IPC files written with the
//! shuffle block helpers, so they are checksummed too), or both, as their [`StorageLevel`]
//! says. Memory is bounded: when a new block does not fit, the least recently used blocks make
//! room — `MemoryAndDisk` blocks move to disk, `MemoryOnly` blocks are dropped. A dropped,
//! deleted or damaged block simply reads as `None`: the caller recomputes the partition from
//! lineage, exactly as after losing the executor ([`BlockStore::clear`]).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use arrow::record_batch::RecordBatch;
use ember_planner::error::{EmberError, Result};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::shuffle::{read_block, write_block, BlockMeta};

/// Where a cached partition may be kept; defined with the plan node that asks for it.
pub use ember_planner::persist::StorageLevel;

/// One cached partition: partition `partition` of the cached plan `cache_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BlockId {
    pub cache_id: u64,
    pub partition: usize,
}

impl BlockId {
    pub fn new(cache_id: u64, partition: usize) -> Self {
        BlockId {
            cache_id,
            partition,
        }
    }
}

impl std::fmt::Display for BlockId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cache {} partition {}", self.cache_id, self.partition)
    }
}

/// Where a stored block is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockLocation {
    Memory,
    Disk,
}

/// What a [`BlockStore::put`] did, so the executor can report lost blocks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOutcome {
    /// Where the new block went; `None` when a `MemoryOnly` block is larger than the whole
    /// memory budget (not cached; it will be recomputed when needed, as in Spark).
    pub stored: Option<BlockLocation>,
    /// `MemoryOnly` blocks dropped to make room: they are lost.
    pub dropped: Vec<BlockId>,
    /// `MemoryAndDisk` blocks moved to disk to make room: still available.
    pub spilled: Vec<BlockId>,
}

#[derive(Debug)]
struct MemoryBlock {
    batches: Vec<RecordBatch>,
    bytes: usize,
    level: StorageLevel,
    last_used: u64,
}

#[derive(Debug, Default)]
struct State {
    memory: HashMap<BlockId, MemoryBlock>,
    disk: HashMap<BlockId, BlockMeta>,
    memory_used: usize,
    /// Logical clock for least-recently-used order.
    tick: u64,
    /// Bumped by `clear`, so a disk write that raced with it is not registered.
    epoch: u64,
}

impl State {
    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    fn remove_memory(&mut self, id: &BlockId) -> Option<MemoryBlock> {
        let block = self.memory.remove(id)?;
        self.memory_used -= block.bytes;
        Some(block)
    }
}

/// One executor's cached blocks. Thread-safe: tasks of the executor share it.
#[derive(Debug)]
pub struct BlockStore {
    dir: PathBuf,
    memory_limit: usize,
    state: Mutex<State>,
}

/// The bytes a block keeps alive in memory.
fn memory_size(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.get_array_memory_size()).sum()
}

impl BlockStore {
    /// A block store writing disk blocks under `dir` (created when first needed; the store
    /// owns the `cache-*` folders it creates there) and keeping at most `memory_limit_bytes`
    /// of blocks in memory.
    pub fn new(dir: impl Into<PathBuf>, memory_limit_bytes: usize) -> Self {
        BlockStore {
            dir: dir.into(),
            memory_limit: memory_limit_bytes,
            state: Mutex::new(State::default()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn memory_limit(&self) -> usize {
        self.memory_limit
    }

    pub fn memory_used(&self) -> usize {
        self.state.lock().memory_used
    }

    fn disk_path(&self, id: BlockId) -> PathBuf {
        self.dir
            .join(format!("cache-{}", id.cache_id))
            .join(format!("part-{}.arrow", id.partition))
    }

    /// Writes a block file. Empty blocks carry no schema, so they never go to disk.
    fn write_disk(&self, id: BlockId, batches: &[RecordBatch]) -> Result<BlockMeta> {
        let schema = match batches.first() {
            Some(b) => b.schema(),
            None => {
                return Err(EmberError::Internal(format!(
                    "empty block {id} cannot be written to disk"
                )))
            }
        };
        write_block(&self.disk_path(id), &schema, batches)
            .map_err(|e| e.context(format!("failed to store {id} on disk")))
    }

    /// Stores `batches` as block `id` (replacing an older copy) at `level`.
    pub fn put(
        &self,
        id: BlockId,
        batches: Vec<RecordBatch>,
        level: StorageLevel,
    ) -> Result<PutOutcome> {
        self.remove(id);
        let bytes = memory_size(&batches);
        // Empty partitions cost nothing in memory and have no schema to write a file with.
        let to_disk = !batches.is_empty()
            && match level {
                StorageLevel::DiskOnly => true,
                StorageLevel::MemoryAndDisk => bytes > self.memory_limit,
                StorageLevel::MemoryOnly => false,
            };
        if to_disk {
            let epoch = self.state.lock().epoch;
            let meta = self.write_disk(id, &batches)?;
            let mut state = self.state.lock();
            if state.epoch != epoch {
                // The store was cleared (executor lost) while writing: the block is gone.
                drop(state);
                let _ = fs::remove_file(&meta.path);
                return Ok(PutOutcome::default());
            }
            state.disk.insert(id, meta);
            return Ok(PutOutcome {
                stored: Some(BlockLocation::Disk),
                ..PutOutcome::default()
            });
        }
        if bytes > self.memory_limit {
            return Ok(PutOutcome::default());
        }
        let mut outcome = PutOutcome {
            stored: Some(BlockLocation::Memory),
            ..PutOutcome::default()
        };
        let mut state = self.state.lock();
        while state.memory_used + bytes > self.memory_limit {
            let Some(victim) = state
                .memory
                .iter()
                .min_by_key(|(_, b)| b.last_used)
                .map(|(id, _)| *id)
            else {
                break;
            };
            let Some(block) = state.remove_memory(&victim) else {
                break;
            };
            if block.level == StorageLevel::MemoryAndDisk && !block.batches.is_empty() {
                // Spilling under the lock keeps a reader from missing a block in transit;
                // spills are rare next to reads.
                match self.write_disk(victim, &block.batches) {
                    Ok(meta) => {
                        state.disk.insert(victim, meta);
                        outcome.spilled.push(victim);
                    }
                    Err(_) => outcome.dropped.push(victim),
                }
            } else {
                outcome.dropped.push(victim);
            }
        }
        let last_used = state.next_tick();
        state.memory_used += bytes;
        state.memory.insert(
            id,
            MemoryBlock {
                batches,
                bytes,
                level,
                last_used,
            },
        );
        Ok(outcome)
    }

    /// The block's batches, or `None` when it is not here (never stored, evicted, deleted,
    /// damaged, or the store was cleared): the caller recomputes it from lineage.
    pub fn get(&self, id: BlockId) -> Option<Vec<RecordBatch>> {
        let meta = {
            let mut state = self.state.lock();
            let tick = state.next_tick();
            if let Some(block) = state.memory.get_mut(&id) {
                block.last_used = tick;
                return Some(block.batches.clone());
            }
            state.disk.get(&id)?.clone()
        };
        match read_block(&meta) {
            Ok(batches) => Some(batches),
            Err(_) => {
                // Deleted or damaged on disk: forget it so it is reported as lost once.
                let mut state = self.state.lock();
                if state.disk.get(&id) == Some(&meta) {
                    state.disk.remove(&id);
                }
                None
            }
        }
    }

    /// Where block `id` is, without reading it.
    pub fn location(&self, id: BlockId) -> Option<BlockLocation> {
        let state = self.state.lock();
        if state.memory.contains_key(&id) {
            Some(BlockLocation::Memory)
        } else if state.disk.contains_key(&id) {
            Some(BlockLocation::Disk)
        } else {
            None
        }
    }

    /// Every block held, sorted: what this executor would lose if it died.
    pub fn block_ids(&self) -> Vec<BlockId> {
        let state = self.state.lock();
        let mut ids: Vec<BlockId> = state
            .memory
            .keys()
            .chain(state.disk.keys())
            .copied()
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Removes block `id`; returns whether it was held.
    pub fn remove(&self, id: BlockId) -> bool {
        let (in_memory, on_disk) = {
            let mut state = self.state.lock();
            (state.remove_memory(&id).is_some(), state.disk.remove(&id))
        };
        if let Some(meta) = &on_disk {
            let _ = fs::remove_file(&meta.path);
        }
        in_memory || on_disk.is_some()
    }

    /// Removes every block of `cache_id` (`unpersist()`); returns how many were held.
    pub fn remove_all_for(&self, cache_id: u64) -> usize {
        let ids: Vec<BlockId> = self
            .block_ids()
            .into_iter()
            .filter(|id| id.cache_id == cache_id)
            .collect();
        let removed = ids.into_iter().filter(|id| self.remove(*id)).count();
        let _ = fs::remove_dir(self.dir.join(format!("cache-{cache_id}")));
        removed
    }

    /// Drops every block, in memory and on disk: what losing the executor does. Returns the
    /// blocks that were lost.
    pub fn clear(&self) -> Vec<BlockId> {
        let lost = self.block_ids();
        let disk = {
            let mut state = self.state.lock();
            state.memory.clear();
            state.memory_used = 0;
            state.epoch += 1;
            std::mem::take(&mut state.disk)
        };
        for meta in disk.values() {
            let _ = fs::remove_file(&meta.path);
        }
        for id in &lost {
            let _ = fs::remove_dir(self.dir.join(format!("cache-{}", id.cache_id)));
        }
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use std::sync::Arc;

    fn block(n: usize) -> Vec<RecordBatch> {
        let values: Vec<i64> = (0..n as i64).collect();
        vec![RecordBatch::try_from_iter([("v", Arc::new(Int64Array::from(values)) as _)]).unwrap()]
    }

    /// A budget that fits `blocks` blocks of `block(1000)`.
    fn budget(blocks: usize) -> usize {
        memory_size(&block(1000)) * blocks
    }

    fn id(p: usize) -> BlockId {
        BlockId::new(1, p)
    }

    #[test]
    fn shared_by_an_executor_s_tasks() {
        fn shareable<T: Send + Sync>() {}
        shareable::<BlockStore>();
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(BlockStore::new(dir.path(), budget(3)));
        let handles: Vec<_> = (0..8)
            .map(|p| {
                let store = store.clone();
                std::thread::spawn(move || {
                    store
                        .put(id(p), block(1000), StorageLevel::MemoryAndDisk)
                        .unwrap();
                    store.get(id(p)).is_some()
                })
            })
            .collect();
        assert!(handles.into_iter().all(|h| h.join().unwrap()));
        assert!(store.memory_used() <= store.memory_limit());
        for p in 0..8 {
            assert_eq!(store.get(id(p)), Some(block(1000)), "block {p}");
        }
    }

    #[test]
    fn memory_only_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::new(dir.path(), budget(4));
        let out = store
            .put(id(0), block(1000), StorageLevel::MemoryOnly)
            .unwrap();
        assert_eq!(out.stored, Some(BlockLocation::Memory));
        assert_eq!(store.get(id(0)), Some(block(1000)));
        assert_eq!(store.memory_used(), budget(1));
        assert_eq!(store.get(id(1)), None);
        // Replacing a block does not count it twice.
        store
            .put(id(0), block(1000), StorageLevel::MemoryOnly)
            .unwrap();
        assert_eq!(store.memory_used(), budget(1));
    }

    #[test]
    fn memory_only_evicts_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::new(dir.path(), budget(2));
        store
            .put(id(0), block(1000), StorageLevel::MemoryOnly)
            .unwrap();
        store
            .put(id(1), block(1000), StorageLevel::MemoryOnly)
            .unwrap();
        assert!(store.get(id(0)).is_some()); // 0 is now more recent than 1
        let out = store
            .put(id(2), block(1000), StorageLevel::MemoryOnly)
            .unwrap();
        assert_eq!(out.dropped, vec![id(1)]);
        assert!(out.spilled.is_empty());
        assert_eq!(store.get(id(1)), None, "evicted: the caller recomputes it");
        assert!(store.get(id(0)).is_some() && store.get(id(2)).is_some());
        assert!(store.memory_used() <= store.memory_limit());

        // Larger than the whole budget: not cached at all.
        let out = store
            .put(id(3), block(5000), StorageLevel::MemoryOnly)
            .unwrap();
        assert_eq!(out.stored, None);
        assert_eq!(store.get(id(3)), None);
    }

    #[test]
    fn memory_and_disk_spills_instead_of_dropping() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::new(dir.path(), budget(1));
        store
            .put(id(0), block(1000), StorageLevel::MemoryAndDisk)
            .unwrap();
        let out = store
            .put(id(1), block(1000), StorageLevel::MemoryAndDisk)
            .unwrap();
        assert_eq!(out.spilled, vec![id(0)]);
        assert_eq!(store.location(id(0)), Some(BlockLocation::Disk));
        assert_eq!(store.location(id(1)), Some(BlockLocation::Memory));
        assert_eq!(store.get(id(0)), Some(block(1000)));
        assert!(dir.path().join("cache-1/part-0.arrow").is_file());

        // Too large for memory: straight to disk.
        let out = store
            .put(id(2), block(3000), StorageLevel::MemoryAndDisk)
            .unwrap();
        assert_eq!(out.stored, Some(BlockLocation::Disk));
        assert_eq!(store.get(id(2)), Some(block(3000)));
        assert_eq!(store.block_ids(), vec![id(0), id(1), id(2)]);
    }

    #[test]
    fn disk_only_uses_no_memory_and_detects_loss() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::new(dir.path(), budget(1));
        let out = store
            .put(id(0), block(100), StorageLevel::DiskOnly)
            .unwrap();
        assert_eq!(out.stored, Some(BlockLocation::Disk));
        assert_eq!(store.memory_used(), 0);
        assert_eq!(store.get(id(0)), Some(block(100)));

        // A damaged file is never returned, and the block is then forgotten.
        let path = dir.path().join("cache-1/part-0.arrow");
        let mut data = fs::read(&path).unwrap();
        let middle = data.len() / 2;
        data[middle] ^= 0xFF;
        fs::write(&path, data).unwrap();
        assert_eq!(store.get(id(0)), None);
        assert_eq!(store.location(id(0)), None);

        store
            .put(id(1), block(100), StorageLevel::DiskOnly)
            .unwrap();
        fs::remove_file(dir.path().join("cache-1/part-1.arrow")).unwrap();
        assert_eq!(store.get(id(1)), None);

        // Empty partitions are kept (in memory: they have no schema to write).
        let out = store
            .put(id(2), Vec::new(), StorageLevel::DiskOnly)
            .unwrap();
        assert_eq!(out.stored, Some(BlockLocation::Memory));
        assert_eq!(store.get(id(2)), Some(Vec::new()));
    }

    #[test]
    fn unpersist_and_clear_delete_everything() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::new(dir.path(), budget(2));
        store
            .put(id(0), block(1000), StorageLevel::MemoryOnly)
            .unwrap();
        store
            .put(id(1), block(1000), StorageLevel::DiskOnly)
            .unwrap();
        store
            .put(BlockId::new(2, 0), block(10), StorageLevel::DiskOnly)
            .unwrap();
        store
            .put(BlockId::new(2, 1), block(10), StorageLevel::MemoryAndDisk)
            .unwrap();

        assert_eq!(store.remove_all_for(2), 2);
        assert!(!dir.path().join("cache-2").exists());
        assert_eq!(store.block_ids(), vec![id(0), id(1)]);

        let lost = store.clear();
        assert_eq!(lost, vec![id(0), id(1)]);
        assert_eq!(store.get(id(0)), None);
        assert_eq!(store.get(id(1)), None);
        assert_eq!(store.memory_used(), 0);
        assert!(
            !dir.path().join("cache-1").exists(),
            "disk blocks are deleted"
        );
        assert!(store.block_ids().is_empty());
        assert!(!store.remove(id(0)));
    }
}
