//! Broadcast hash tables built once per process and shared by every probe task of a stage
//! (entries kept by `operators::shared_build`, keyed by the join node).
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

use std::sync::Arc;

use ember_planner::physical::PhysicalPlan;
use ember_planner::Result;

use super::build_side::BuildSide;
use super::JoinHashTable;
use crate::memory::MemoryReservation;
use crate::operators::shared_build::{lock, node_slot};

/// What the first task learned about one join node's build side.
enum Cached {
    Table(Arc<JoinHashTable>),
    /// The build side did not fit the first builder's memory share: it took the grace path,
    /// so later tasks build (or spill) on their own, in parallel, instead of queueing on the
    /// slot's lock for a table that will not come.
    TooLarge,
}

/// The build side of join `node`: the table a task of the same stage already built, or
/// whatever `build` makes of it. A table found in the cache is charged to `reservation` (the
/// memory is in use while this task probes it, whoever built it). A failed build is not
/// cached: the error goes to this task, the next one tries again. A build that spilled is
/// returned to this task only, and tells the tasks after it to build their own.
pub(super) fn shared_build(
    node: &Arc<PhysicalPlan>,
    reservation: &mut MemoryReservation,
    build: impl FnOnce(&mut MemoryReservation) -> Result<BuildSide>,
) -> Result<BuildSide> {
    let slot = node_slot(node);
    let mut guard = lock(&slot);
    match guard.as_ref().and_then(|b| b.downcast_ref::<Cached>()) {
        Some(Cached::Table(table)) => {
            reservation.grow(table.memory);
            return Ok(BuildSide::InMemory(Arc::clone(table)));
        }
        Some(Cached::TooLarge) => {
            drop(guard);
            return build(reservation);
        }
        None => {}
    }
    let built = build(reservation)?;
    *guard = Some(Arc::new(match &built {
        BuildSide::InMemory(table) => Cached::Table(Arc::clone(table)),
        BuildSide::Spilled(_) => Cached::TooLarge,
    }));
    Ok(built)
}

/// Whether a table for `node` is cached (for tests).
#[cfg(test)]
pub(super) fn is_cached(node: &Arc<PhysicalPlan>) -> bool {
    crate::operators::shared_build::peek(node)
        .is_some_and(|b| matches!(b.downcast_ref::<Cached>(), Some(Cached::Table(_))))
}

#[cfg(test)]
mod tests {
    use arrow::array::RecordBatch;
    use arrow::datatypes::Schema;

    use ember_planner::EmberError;

    use super::*;
    use crate::memory::MemoryPool;
    use crate::operators::hash_join::grace::SpilledBuild;
    use crate::operators::test_util::mem_scan_with_schema;

    fn new_node() -> Arc<PhysicalPlan> {
        mem_scan_with_schema(Arc::new(Schema::empty()), vec![vec![]])
    }

    fn table(node: &Arc<PhysicalPlan>, memory: usize) -> Result<BuildSide> {
        Ok(BuildSide::InMemory(Arc::new(JoinHashTable {
            batch: RecordBatch::new_empty(node.schema().to_arrow_ref()),
            keys: vec![],
            map: hashbrown::HashTable::new(),
            next: vec![],
            has_null_key: false,
            memory,
        })))
    }

    fn in_memory(build: BuildSide) -> Arc<JoinHashTable> {
        match build {
            BuildSide::InMemory(t) => t,
            BuildSide::Spilled(_) => panic!("expected an in-memory table"),
        }
    }

    #[test]
    fn second_task_reuses_the_first_tasks_table_and_is_charged_for_it() {
        let pool = MemoryPool::new(0, 1 << 20);
        let mut first_res = pool.reservation("first");
        let node = new_node();
        let first = in_memory(shared_build(&node, &mut first_res, |_| table(&node, 100)).unwrap());
        let mut second_res = pool.reservation("second");
        let second = in_memory(
            shared_build(&node, &mut second_res, |_| {
                panic!("the table must not be built twice")
            })
            .unwrap(),
        );
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(
            second_res.size(),
            100,
            "a cache hit charges the shared table"
        );
        // Another node (another stage or job) gets its own table.
        let other = new_node();
        let third = in_memory(shared_build(&other, &mut first_res, |_| table(&other, 0)).unwrap());
        assert!(!Arc::ptr_eq(&first, &third));
    }

    #[test]
    fn failed_builds_are_not_cached() {
        // Pruning the entries of finished jobs is `shared_build`'s, tested there.
        let pool = MemoryPool::unbounded(0);
        let mut res = pool.reservation("t");
        let node = new_node();
        let err = shared_build(&node, &mut res, |_| {
            Err(EmberError::Execution("boom".into()))
        });
        assert!(err.is_err());
        assert!(!is_cached(&node));
        shared_build(&node, &mut res, |_| table(&node, 0)).unwrap();
        assert!(is_cached(&node));
    }

    #[test]
    fn a_spilled_build_makes_later_tasks_build_their_own() {
        let pool = MemoryPool::unbounded(0);
        let mut res = pool.reservation("t");
        let node = new_node();
        let spilled = || {
            Ok(BuildSide::Spilled(SpilledBuild {
                partitions: vec![],
                rows: 1,
                has_null_key: false,
                schema: Arc::new(Schema::empty()),
            }))
        };
        let first = shared_build(&node, &mut res, |_| spilled()).unwrap();
        assert!(matches!(first, BuildSide::Spilled(_)));
        assert!(!is_cached(&node));
        // The next task builds again (now with room, say) and is not cached either.
        let mut built = false;
        let second = shared_build(&node, &mut res, |_| {
            built = true;
            table(&node, 0)
        })
        .unwrap();
        assert!(built && matches!(second, BuildSide::InMemory(_)));
        assert!(!is_cached(&node));
    }
}
