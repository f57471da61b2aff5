//! Where checkpoints go when a plan is cut: teed into their one reader, or a stage of
//! their own.

use std::collections::HashMap;
use std::sync::Arc;

use super::*;
use crate::expr::{col, lit};
use crate::fingerprint::{persist_fingerprints, stage_fingerprints};
use crate::lineage::test_util::{exchange, filter, partial_count, scan};
use crate::persist::StorageLevel;
use crate::physical::ExchangeKind;

fn persist(input: Arc<PhysicalPlan>, id: PersistId, mode: PersistMode) -> Arc<PhysicalPlan> {
    Arc::new(PhysicalPlan::Persist { input, id, mode })
}

fn union(inputs: Vec<Arc<PhysicalPlan>>) -> Arc<PhysicalPlan> {
    let schema = inputs[0].schema().clone();
    Arc::new(PhysicalPlan::Union { inputs, schema })
}

/// `count(*)` over `input`: partial counts, a shuffle, the final stage.
fn counted(input: Arc<PhysicalPlan>) -> Arc<PhysicalPlan> {
    exchange(partial_count(input), ExchangeKind::Single)
}

fn filtered_scan() -> Arc<PhysicalPlan> {
    filter(scan("t-v1", Some(1000), 3), col("t.a").gt(lit(1i64)))
}

#[test]
fn a_checkpoint_read_once_is_written_by_the_stage_that_reads_it() {
    let checkpointed = persist(filtered_scan(), 7, PersistMode::Checkpoint);
    let graph = build_stage_graph(&counted(checkpointed)).unwrap();
    assert_eq!(graph.stages.len(), 2, "{graph}");
    let map = &graph.stages[0];
    assert!(matches!(map.output, StageOutput::Shuffle(_)));
    let tee = map.tee.as_ref().expect("the map stage tees the checkpoint");
    assert_eq!((tee.id, tee.mode), (7, PersistMode::Checkpoint));
    assert_eq!(map.persist(), Some((7, PersistMode::Checkpoint)));
    assert!(tee.input.display_indent().starts_with("FilterExec"));
    assert!(map.plan.display_indent().contains("Persist: id=7"));
    assert!(map
        .persisted_plan()
        .display_indent()
        .starts_with("FilterExec"));
    assert!(graph.result_stage().tee.is_none());
    let text = graph.to_string();
    assert!(
        text.contains("Stage 0 [3 tasks, output: shuffle Single, parents: none, tees: persist 7 (reliable checkpoint)]"),
        "{text}"
    );
}

#[test]
fn a_teed_checkpoint_is_named_as_if_it_had_a_stage_of_its_own() {
    let checkpointed = persist(filtered_scan(), 7, PersistMode::Checkpoint);
    // Read twice (a union of it with itself): a stage of its own.
    let own = build_stage_graph(&union(vec![checkpointed.clone(), checkpointed.clone()])).unwrap();
    assert!(matches!(
        own.stages[0].output,
        StageOutput::Persist { id: 7, .. }
    ));
    assert!(own.stages.iter().all(|s| s.tee.is_none()));
    let teed = build_stage_graph(&counted(checkpointed)).unwrap();
    let own_name = stage_fingerprints(&own).unwrap()[0].1;
    assert_eq!(persist_fingerprints(&own).unwrap()[0], Some(own_name));
    assert_eq!(persist_fingerprints(&teed).unwrap()[0], Some(own_name));
    // The teeing stage itself is another stage than the persist stage.
    assert_ne!(stage_fingerprints(&teed).unwrap()[0].1, own_name);
}

#[test]
fn caches_and_checkpoints_read_by_stages_with_other_parents_keep_their_own_stage() {
    let cached = persist(
        filtered_scan(),
        3,
        PersistMode::Cache(StorageLevel::MemoryOnly),
    );
    let graph = build_stage_graph(&counted(cached)).unwrap();
    assert_eq!(graph.stages.len(), 3);
    assert!(graph.stages.iter().all(|s| s.tee.is_none()));

    // The reader also reads another shuffle: once committed, the checkpoint would not be
    // all it needs.
    let checkpointed = persist(filtered_scan(), 4, PersistMode::Checkpoint);
    let other = exchange(scan("u-v1", Some(10), 3), ExchangeKind::RoundRobin(3));
    let graph = build_stage_graph(&counted(union(vec![checkpointed, other]))).unwrap();
    assert!(graph.stages.iter().all(|s| s.tee.is_none()), "{graph}");
    assert!(graph.stages.iter().any(|s| s.output
        == StageOutput::Persist {
            id: 4,
            mode: PersistMode::Checkpoint
        }));
}

#[test]
fn a_checkpoint_of_a_checkpoint_tees_only_the_outer_one() {
    let inner = persist(filtered_scan(), 1, PersistMode::Checkpoint);
    let outer = persist(
        filter(inner, col("t.b").gt(lit(2i64))),
        2,
        PersistMode::Checkpoint,
    );
    let graph = build_stage_graph(&counted(outer)).unwrap();
    assert_eq!(graph.stages.len(), 3, "{graph}");
    assert_eq!(
        graph.stages[0].output,
        StageOutput::Persist {
            id: 1,
            mode: PersistMode::Checkpoint
        }
    );
    assert_eq!(graph.stages[1].tee.as_ref().map(|t| t.id), Some(2));
}

#[test]
fn automatic_checkpoints_are_teed_into_the_stage_they_were_placed_on() {
    // scan (checkpointed by the user) → shuffle → filter → shuffle → result: checkpoint
    // the second map stage too; stage numbers stay those of the plan without it.
    let user = persist(filtered_scan(), 5, PersistMode::Checkpoint);
    let first = exchange(user, ExchangeKind::RoundRobin(3));
    let plan = counted(filter(first, col("t.b").gt(lit(0i64))));
    let before = build_stage_graph(&plan).unwrap();
    assert_eq!(before.stages.len(), 3);
    let automatic = HashMap::from([(1usize, 99u64)]);
    let after = build_stage_graph(&insert_checkpoints(&plan, &automatic).unwrap()).unwrap();
    assert_eq!(after.stages.len(), 3, "{after}");
    assert_eq!(after.stages[0].tee.as_ref().map(|t| t.id), Some(5));
    assert_eq!(after.stages[1].tee.as_ref().map(|t| t.id), Some(99));
    assert_eq!(after.stages[1].output, before.stages[1].output);
    assert_eq!(after.stages[1].parents, vec![0]);
}
