//! Broadcast hash tables built once per process and shared by every probe task of a stage.
//!
//! A broadcast join's build side is the same for every probe partition, yet each task used to
//! read it and hash it again: with four probe partitions on two cores, a 700k-row broadcast
//! was hashed four times. Tasks of one stage share one `Arc<PhysicalPlan>` (the stage's plan),
//! so the join node's identity names "this join of this stage of this job": the first task to
//! arrive builds the table while holding the entry's lock, later ones wait for it and reuse
//! it.
//!
//! The key is a `Weak` reference to the join node. It keeps the node's address from being
//! reused while the entry exists, and it dies with the job's plan; dead entries (and their
//! tables) are dropped the next time any broadcast join looks the cache up. Only first task
//! attempts use the cache: a retried attempt rebuilds from the shuffle, so a lost or corrupt
//! broadcast block still surfaces as a fetch failure on the recovery path. In cluster mode
//! every executor process has its own cache (plans arrive per task there, so it simply never
//! hits).

use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError, Weak};

use ember_planner::physical::PhysicalPlan;
use ember_planner::Result;

use super::JoinHashTable;

/// One join node's table; `None` until a task has built it (or after a failed build).
type Slot = Arc<Mutex<Option<Arc<JoinHashTable>>>>;

struct Entry {
    node: Weak<PhysicalPlan>,
    slot: Slot,
}

static CACHE: LazyLock<Mutex<Vec<Entry>>> = LazyLock::new(|| Mutex::new(Vec::new()));

/// A poisoned lock only means another task panicked while building; the data it guards is an
/// `Option` that is either a complete table or `None`, so it is safe to go on.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The slot of `node`, created if missing; prunes the entries of finished jobs.
fn slot_for(node: &Arc<PhysicalPlan>) -> Slot {
    let mut entries = lock(&CACHE);
    entries.retain(|e| e.node.strong_count() > 0);
    if let Some(e) = entries
        .iter()
        .find(|e| std::ptr::eq(e.node.as_ptr(), Arc::as_ptr(node)))
    {
        return Arc::clone(&e.slot);
    }
    let slot: Slot = Arc::new(Mutex::new(None));
    entries.push(Entry {
        node: Arc::downgrade(node),
        slot: Arc::clone(&slot),
    });
    slot
}

/// The table of join `node`, built by `build` unless a task of the same stage already did.
/// A failed build is not cached: the error goes to this task, the next one tries again.
pub(super) fn shared_table(
    node: &Arc<PhysicalPlan>,
    build: impl FnOnce() -> Result<JoinHashTable>,
) -> Result<Arc<JoinHashTable>> {
    let slot = slot_for(node);
    let mut guard = lock(&slot);
    if let Some(table) = guard.as_ref() {
        return Ok(Arc::clone(table));
    }
    let table = Arc::new(build()?);
    *guard = Some(Arc::clone(&table));
    Ok(table)
}

/// Whether a table for `node` is cached (for tests).
#[cfg(test)]
pub(super) fn is_cached(node: &Arc<PhysicalPlan>) -> bool {
    lock(&CACHE)
        .iter()
        .find(|e| std::ptr::eq(e.node.as_ptr(), Arc::as_ptr(node)))
        .is_some_and(|e| lock(&e.slot).is_some())
}

#[cfg(test)]
mod tests {
    use arrow::array::RecordBatch;

    use ember_planner::EmberError;

    use arrow::datatypes::Schema;

    use super::*;
    use crate::operators::test_util::mem_scan_with_schema;

    fn new_node() -> Arc<PhysicalPlan> {
        mem_scan_with_schema(Arc::new(Schema::empty()), vec![vec![]])
    }

    fn empty_table(node: &Arc<PhysicalPlan>) -> Result<JoinHashTable> {
        Ok(JoinHashTable {
            batch: RecordBatch::new_empty(node.schema().to_arrow_ref()),
            keys: vec![],
            map: hashbrown::HashTable::new(),
            next: vec![],
            has_null_key: false,
        })
    }

    #[test]
    fn second_task_reuses_the_first_tasks_table() {
        let node = new_node();
        let first = shared_table(&node, || empty_table(&node)).unwrap();
        let second = shared_table(&node, || panic!("the table must not be built twice")).unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        // Another node (another stage or job) gets its own table.
        let other = new_node();
        let third = shared_table(&other, || empty_table(&other)).unwrap();
        assert!(!Arc::ptr_eq(&first, &third));
    }

    #[test]
    fn failed_builds_are_not_cached_and_finished_jobs_are_dropped() {
        let node = new_node();
        let err = shared_table(&node, || Err(EmberError::Execution("boom".into())));
        assert!(err.is_err());
        assert!(!is_cached(&node));
        shared_table(&node, || empty_table(&node)).unwrap();
        assert!(is_cached(&node));
        let weak = Arc::downgrade(&node);
        drop(node);
        // The next lookup prunes the entry, releasing the table and the node's allocation.
        let other = new_node();
        shared_table(&other, || empty_table(&other)).unwrap();
        assert!(lock(&CACHE)
            .iter()
            .all(|e| !std::ptr::eq(e.node.as_ptr(), weak.as_ptr())));
    }
}
