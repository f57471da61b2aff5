//! The driver's record of where every map output lives.
//!
//! A map task's blocks are only trusted once the task has succeeded and the driver has
//! registered them here; reducers look blocks up here, never by listing directories. When an
//! executor is lost or a fetch fails, the affected entries are removed, and "which map
//! partitions of stage S are missing" — the scheduler's recomputation work list — is simply
//! the partitions without an entry.

use std::collections::BTreeMap;

use ember_storage::shuffle::BlockMeta;
use parking_lot::RwLock;

/// The registered output of one successful map task.
#[derive(Debug, Clone, PartialEq)]
pub struct MapStatus {
    /// The executor that holds the blocks (they die with it).
    pub executor: usize,
    /// The task attempt that wrote them.
    pub attempt: usize,
    /// One entry per reduce bucket; `None` for a bucket that received no rows (no block was
    /// written, and reading it yields nothing).
    pub blocks: Vec<Option<BlockMeta>>,
}

impl MapStatus {
    pub fn rows(&self) -> usize {
        self.blocks.iter().flatten().map(|b| b.rows).sum()
    }
}

/// (stage, map partition) → [`MapStatus`], shared by the scheduler and every shuffle reader
/// of a job.
///
/// Every registration gets the next number of a job-wide sequence (the *epoch*). The
/// scheduler notes the epoch when it launches a task; a fetch failure reported by a task
/// about an output registered at or after that epoch concerns an output the task may not
/// have read (the output was already replaced), so it must not unregister the fresh one.
#[derive(Debug, Default)]
pub struct MapOutputTracker {
    inner: RwLock<Outputs>,
}

#[derive(Debug, Default)]
struct Outputs {
    by_partition: BTreeMap<(usize, usize), (MapStatus, u64)>,
    next_epoch: u64,
}

impl Outputs {
    /// The registered map partitions of `stage` below `partitions`, ascending: one seek into
    /// the ordered map, not a lookup per partition. The scheduler asks after every task event
    /// which partitions of every stage are missing, and a job of thousands of stages (a long
    /// DataFrame loop) must answer for its finished ones cheaply.
    fn registered(&self, stage: usize, partitions: usize) -> impl Iterator<Item = usize> + '_ {
        self.by_partition
            .range((stage, 0)..(stage, partitions))
            .map(|(&(_, p), _)| p)
    }
}

impl MapOutputTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the output of a successful map task, replacing any earlier registration.
    pub fn register(&self, stage: usize, map_partition: usize, status: MapStatus) {
        let mut inner = self.inner.write();
        let epoch = inner.next_epoch;
        inner.next_epoch += 1;
        inner
            .by_partition
            .insert((stage, map_partition), (status, epoch));
    }

    pub fn get(&self, stage: usize, map_partition: usize) -> Option<MapStatus> {
        self.inner
            .read()
            .by_partition
            .get(&(stage, map_partition))
            .map(|(s, _)| s.clone())
    }

    /// The epoch the next registration will get.
    pub fn epoch(&self) -> u64 {
        self.inner.read().next_epoch
    }

    /// The epoch at which the current output of (stage, map partition) was registered.
    pub fn registered_at(&self, stage: usize, map_partition: usize) -> Option<u64> {
        self.inner
            .read()
            .by_partition
            .get(&(stage, map_partition))
            .map(|(_, e)| *e)
    }

    /// Forgets one map output (its blocks could not be read). Returns whether it was
    /// registered.
    pub fn unregister(&self, stage: usize, map_partition: usize) -> bool {
        self.inner
            .write()
            .by_partition
            .remove(&(stage, map_partition))
            .is_some()
    }

    /// Forgets every output held by `executor` (it was lost). Returns the (stage, map
    /// partition) pairs that are now missing, in order.
    pub fn unregister_executor(&self, executor: usize) -> Vec<(usize, usize)> {
        let mut inner = self.inner.write();
        let outputs = &mut inner.by_partition;
        let lost: Vec<(usize, usize)> = outputs
            .iter()
            .filter(|(_, (s, _))| s.executor == executor)
            .map(|(k, _)| *k)
            .collect();
        for key in &lost {
            outputs.remove(key);
        }
        lost
    }

    /// Map partitions of `stage` (of `partitions`) with no registered output, ascending.
    pub fn missing_partitions(&self, stage: usize, partitions: usize) -> Vec<usize> {
        let inner = self.inner.read();
        let mut registered = inner.registered(stage, partitions).peekable();
        (0..partitions)
            .filter(|p| registered.next_if_eq(p).is_none())
            .collect()
    }

    pub fn is_complete(&self, stage: usize, partitions: usize) -> bool {
        self.inner.read().registered(stage, partitions).count() == partitions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(executor: usize) -> MapStatus {
        MapStatus {
            executor,
            attempt: 0,
            blocks: vec![None],
        }
    }

    #[test]
    fn tracks_missing_partitions_through_losses() {
        let t = MapOutputTracker::new();
        assert_eq!(t.missing_partitions(0, 3), vec![0, 1, 2]);
        t.register(0, 0, status(0));
        t.register(0, 1, status(1));
        t.register(0, 2, status(0));
        t.register(1, 0, status(0));
        assert!(t.is_complete(0, 3));

        assert!(t.unregister(0, 1));
        assert!(!t.unregister(0, 1));
        assert_eq!(t.missing_partitions(0, 3), vec![1]);

        assert_eq!(t.unregister_executor(0), vec![(0, 0), (0, 2), (1, 0)]);
        assert_eq!(t.missing_partitions(0, 3), vec![0, 1, 2]);
        assert!(t.get(1, 0).is_none());
    }

    #[test]
    fn missing_and_complete_stay_right_when_an_output_is_replaced_or_lost_twice() {
        let t = MapOutputTracker::new();
        t.register(0, 0, status(0));
        t.register(0, 0, status(1)); // a retry's output replaces the first: still one
        assert!(!t.is_complete(0, 2));
        assert_eq!(t.missing_partitions(0, 2), vec![1]);
        t.register(0, 1, status(0));
        assert!(t.is_complete(0, 2));
        assert!(t.missing_partitions(0, 2).is_empty());
        assert_eq!(t.unregister_executor(0), vec![(0, 1)]);
        assert!(!t.unregister(0, 1));
        assert_eq!(t.missing_partitions(0, 2), vec![1]);
        t.register(0, 1, status(1));
        assert!(t.is_complete(0, 2));
    }

    #[test]
    fn registrations_are_numbered_in_order() {
        let t = MapOutputTracker::new();
        assert_eq!(t.epoch(), 0);
        t.register(0, 0, status(0));
        let launched = t.epoch();
        t.register(0, 1, status(0));
        t.register(0, 0, status(1));
        assert_eq!(t.registered_at(0, 1), Some(launched));
        assert!(t.registered_at(0, 0).unwrap() > launched);
        assert_eq!(t.registered_at(5, 0), None);
    }
}
