//! State built once per process from a plan node and shared by every task of its stage: the
//! key set of a dynamic join filter, read from the whole of the join's other side, and a
//! broadcast join's hash table (`hash_join::build_cache`).
//!
//! Tasks of one stage share one `Arc<PhysicalPlan>` (the stage's plan), so a node's identity
//! names "this operator of this stage of this job": the first task to arrive builds the
//! state while holding the entry's lock, later ones wait for it and reuse it. The key is a
//! `Weak` reference to the node, which keeps its address from being reused while the entry
//! exists and dies with the job's plan; dead entries are dropped on the next lookup.
//!
//! Callers use it for first task attempts only: a retried attempt rebuilds from its inputs,
//! so a lost or corrupt shuffle block still surfaces as a fetch failure on the recovery path.

use std::any::Any;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError, Weak};

use ember_planner::physical::PhysicalPlan;
use ember_planner::{EmberError, Result};

/// Whatever a caller keeps for a node.
pub(crate) type Built = Arc<dyn Any + Send + Sync>;

/// One node's state; `None` until a task has built it (or after a failed build).
pub(crate) type Slot = Arc<Mutex<Option<Built>>>;

struct Entry {
    node: Weak<PhysicalPlan>,
    slot: Slot,
}

static CACHE: LazyLock<Mutex<Vec<Entry>>> = LazyLock::new(|| Mutex::new(Vec::new()));

/// A poisoned lock only means another task panicked while building; the data it guards is an
/// `Option` that is either complete state or `None`, so it is safe to go on.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The slot of `node`, created if missing; prunes the entries of finished jobs. Callers
/// with their own protocol (the broadcast join's, which also remembers "too large")
/// hold its lock while they build.
pub(crate) fn node_slot(node: &Arc<PhysicalPlan>) -> Slot {
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

/// What is kept for `node`, without creating an entry (for tests).
#[cfg(test)]
pub(crate) fn peek(node: &Arc<PhysicalPlan>) -> Option<Built> {
    lock(&CACHE)
        .iter()
        .find(|e| std::ptr::eq(e.node.as_ptr(), Arc::as_ptr(node)))
        .and_then(|e| lock(&e.slot).clone())
}

/// The state of `node`, built by `build` unless a task of the same stage already did. A
/// failed build is not cached: the error goes to this task, the next one tries again.
pub(crate) fn shared<T: Send + Sync + 'static>(
    node: &Arc<PhysicalPlan>,
    build: impl FnOnce() -> Result<T>,
) -> Result<Arc<T>> {
    let slot = node_slot(node);
    let mut guard = lock(&slot);
    if let Some(built) = guard.as_ref() {
        return Arc::clone(built).downcast::<T>().map_err(|_| {
            EmberError::Internal(format!(
                "shared state of {} has another type",
                node.describe_node()
            ))
        });
    }
    let built = Arc::new(build()?);
    *guard = Some(Arc::clone(&built) as Built);
    Ok(built)
}

#[cfg(test)]
mod tests {
    use arrow::datatypes::Schema;

    use super::*;
    use crate::operators::test_util::mem_scan_with_schema;

    fn new_node() -> Arc<PhysicalPlan> {
        mem_scan_with_schema(Arc::new(Schema::empty()), vec![vec![]])
    }

    #[test]
    fn second_task_reuses_the_first_tasks_state_and_other_nodes_get_their_own() {
        let node = new_node();
        let first = shared(&node, || Ok(1u32)).unwrap();
        let second = shared::<u32>(&node, || panic!("built twice")).unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        let other = new_node();
        assert_eq!(*shared(&other, || Ok(2u32)).unwrap(), 2);
    }

    #[test]
    fn failed_builds_are_not_cached_and_finished_jobs_are_dropped() {
        let node = new_node();
        assert!(shared::<u32>(&node, || Err(EmberError::Execution("boom".into()))).is_err());
        assert_eq!(*shared(&node, || Ok(3u32)).unwrap(), 3);
        let weak = Arc::downgrade(&node);
        drop(node);
        let other = new_node();
        shared(&other, || Ok(4u32)).unwrap();
        assert!(lock(&CACHE)
            .iter()
            .all(|e| !std::ptr::eq(e.node.as_ptr(), weak.as_ptr())));
    }
}
