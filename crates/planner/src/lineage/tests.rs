//! Placement tests: which stages get checkpoints, why, and what EXPLAIN says about them.

use std::sync::Arc;

use super::test_util::{chain, exchange, filter, partial_count, scan, shuffle_read, stage};
use super::*;
use crate::expr::{col, lit};
use crate::fingerprint::stage_fingerprints;
use crate::physical::{ExchangeKind, PhysicalPlan};
use crate::stages::{build_stage_graph, StageGraph, StageOutput};

fn checkpointed(graph: &StageGraph) -> Vec<usize> {
    graph
        .stages
        .iter()
        .filter(|s| s.checkpoint.is_some())
        .map(|s| s.id)
        .collect()
}

#[test]
fn a_long_chain_of_cheap_stages_is_cut_exactly_past_the_depth_cap() {
    let mut graph = chain(50, Some(10), 1);
    let policy = CheckpointPolicy::default();
    let decisions = place_checkpoints(&mut graph, &policy).unwrap();
    // Stage 20 is the 21st stage since the scan: depth 21 > 20. After it, counting restarts.
    let ids: Vec<usize> = decisions.iter().map(|d| d.stage).collect();
    assert_eq!(ids, vec![20, 41]);
    for d in &decisions {
        assert_eq!(
            d.reason,
            CheckpointReason::LineageDepth { depth: 21, cap: 20 }
        );
        assert_eq!(d.cost.depth, 21);
    }
    assert_eq!(checkpointed(&graph), ids);
    // The decision names the stage's fingerprint, so the checkpoint can be found again.
    let fps = stage_fingerprints(&graph).unwrap();
    assert_eq!(decisions[0].fingerprint, fps[20].1);
}

#[test]
fn an_expensive_stage_with_a_small_output_gets_a_young_daly_checkpoint() {
    // Counting a billion rows: ~80 s of work, one row out, so a checkpoint costs only its
    // commit (0.05 s) and the Young–Daly interval is √(2 · 0.05 · 3600) ≈ 19 s.
    let source = scan("big@v1", Some(1_000_000_000), 1);
    let count = partial_count(source);
    let result = filter(shuffle_read(0, 1, &count), col("count").gt(lit(0i64)));
    let mut graph = StageGraph {
        stages: vec![
            stage(0, count, vec![], StageOutput::Shuffle(ExchangeKind::Single)),
            stage(1, result, vec![0], StageOutput::Result),
        ],
    };
    let decisions = place_checkpoints(&mut graph, &CheckpointPolicy::default()).unwrap();
    assert_eq!(decisions.len(), 1);
    let d = &decisions[0];
    assert_eq!(d.stage, 0);
    let CheckpointReason::YoungDaly { interval } = d.reason else {
        panic!("expected a Young–Daly checkpoint, got {:?}", d.reason);
    };
    assert!(
        (interval - 360f64.sqrt()).abs() < 1e-3,
        "interval {interval}"
    );
    let r = d.cost.r.unwrap();
    assert!(r > 60.0 && r < 100.0, "R = {r}");
    assert!(d.cost.w.unwrap() < 0.06);
}

#[test]
fn an_expensive_stage_with_a_large_output_is_not_worth_checkpointing() {
    // Filtering a billion rows: as much work, but 8 GB out — writing it (80 s) makes the
    // interval √(2 · 80 · 3600) ≈ 760 s, far above the work at risk.
    let source = scan("big@v1", Some(1_000_000_000), 1);
    let map = filter(Arc::clone(&source), col("t.a").gt(lit(0i64)));
    let result = filter(shuffle_read(0, 1, &source), col("t.b").gt(lit(0i64)));
    let mut graph = StageGraph {
        stages: vec![
            stage(0, map, vec![], StageOutput::Shuffle(ExchangeKind::Single)),
            stage(1, result, vec![0], StageOutput::Result),
        ],
    };
    let report = plan_checkpoints(
        &mut graph,
        &CheckpointPolicy::default(),
        &CostInputs::default(),
    )
    .unwrap();
    assert!(report.decisions().is_empty());
    let w = report.stages[0].cost.w.unwrap();
    assert!(w > 70.0, "W = {w}");
}

#[test]
fn more_executors_mean_a_shorter_interval() {
    // A hundred executors fail a hundred times as often together (cluster MTBF 36 s), so
    // the same write cost justifies a checkpoint after less work.
    let policy = CheckpointPolicy {
        executors: 100,
        ..Default::default()
    };
    let one = CheckpointPolicy::default();
    assert!(policy.young_daly_interval(1.0) < one.young_daly_interval(1.0));
}

#[test]
fn auto_off_places_nothing_but_keeps_requested_checkpoints() {
    let mut graph = chain(50, Some(10), 1);
    graph.stages[5].checkpoint = Some(CheckpointDecision::requested(5));
    let policy = CheckpointPolicy {
        auto: false,
        ..Default::default()
    };
    let decisions = place_checkpoints(&mut graph, &policy).unwrap();
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0].stage, 5);
    assert_eq!(decisions[0].reason, CheckpointReason::Requested);
    // Placement filled in what the caller could not know.
    assert_ne!(decisions[0].fingerprint.0, 0);
    assert_eq!(decisions[0].cost.depth, 6);
    assert_eq!(checkpointed(&graph), vec![5]);
}

#[test]
fn a_requested_checkpoint_is_a_durable_point_for_the_depth_cap() {
    let mut graph = chain(40, Some(10), 1);
    graph.stages[10].checkpoint = Some(CheckpointDecision::requested(10));
    let decisions = place_checkpoints(&mut graph, &CheckpointPolicy::default()).unwrap();
    let got: Vec<(usize, CheckpointReason)> =
        decisions.into_iter().map(|d| (d.stage, d.reason)).collect();
    assert_eq!(
        got,
        vec![
            (10, CheckpointReason::Requested),
            (31, CheckpointReason::LineageDepth { depth: 21, cap: 20 }),
        ]
    );
}

#[test]
fn placing_again_redecides_automatic_checkpoints() {
    let mut graph = chain(30, Some(10), 1);
    let policy = CheckpointPolicy::default();
    let first = place_checkpoints(&mut graph, &policy).unwrap();
    assert_eq!(place_checkpoints(&mut graph, &policy).unwrap(), first);
    // Turning auto off afterwards removes the automatic ones.
    let off = CheckpointPolicy {
        auto: false,
        ..Default::default()
    };
    assert!(place_checkpoints(&mut graph, &off).unwrap().is_empty());
    assert!(checkpointed(&graph).is_empty());
}

#[test]
fn measured_task_times_override_the_estimate() {
    // A cheap-looking stage that took 1000 s last time is worth a checkpoint now.
    let mut graph = chain(3, Some(10), 1);
    let fps = stage_fingerprints(&graph).unwrap();
    let mut inputs = CostInputs::default();
    inputs.measured.insert(
        fps[1].1,
        MeasuredStage {
            task_secs: 1000.0,
            output_bytes: Some(1000.0),
        },
    );
    let report = plan_checkpoints(&mut graph, &CheckpointPolicy::default(), &inputs).unwrap();
    let ids: Vec<usize> = report.decisions().iter().map(|d| d.stage).collect();
    assert_eq!(ids, vec![1]);
    assert_eq!(report.stages[1].cost.c, Some(1000.0));
}

#[test]
fn without_statistics_only_the_depth_cap_applies() {
    let mut graph = chain(30, None, 1);
    let report = plan_checkpoints(
        &mut graph,
        &CheckpointPolicy::default(),
        &CostInputs::default(),
    )
    .unwrap();
    let ids: Vec<usize> = report.decisions().iter().map(|d| d.stage).collect();
    assert_eq!(ids, vec![20]);
    assert_eq!(report.stages[3].cost.c, None);
    assert!(report.explain_lines()[3].starts_with("Stage 3: c=? R=? W=?"));
}

#[test]
fn recompute_cost_sums_non_durable_parents() {
    // 0 → 1, 0 → 2, (1, 2) → 3: R(3) = c(3) + R(1) + R(2), each of which includes R(0).
    let source = scan("t@v1", Some(1_000_000), 2);
    let left = filter(shuffle_read(0, 2, &source), col("t.a").gt(lit(1i64)));
    let right = filter(shuffle_read(0, 2, &source), col("t.a").gt(lit(2i64)));
    let union = Arc::new(PhysicalPlan::Union {
        schema: Arc::clone(source.schema()),
        inputs: vec![shuffle_read(1, 2, &source), shuffle_read(2, 2, &source)],
    });
    let rr = || StageOutput::Shuffle(ExchangeKind::RoundRobin(2));
    let mut graph = StageGraph {
        stages: vec![
            stage(0, source, vec![], rr()),
            stage(1, left, vec![0], rr()),
            stage(2, right, vec![0], rr()),
            stage(3, union, vec![1, 2], StageOutput::Result),
        ],
    };
    let report = plan_checkpoints(
        &mut graph,
        &CheckpointPolicy::default(),
        &CostInputs::default(),
    )
    .unwrap();
    let cost = |i: usize| report.stages[i].cost;
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * a.abs().max(1.0);
    assert!(close(cost(0).r.unwrap(), cost(0).c.unwrap()));
    assert!(close(
        cost(1).r.unwrap(),
        cost(1).c.unwrap() + cost(0).r.unwrap()
    ));
    assert!(close(
        cost(3).r.unwrap(),
        cost(3).c.unwrap() + cost(1).r.unwrap() + cost(2).r.unwrap()
    ));
    assert_eq!(cost(3).depth, 3);
    // Reading more bytes costs more: the scan stage's work is not zero.
    assert!(cost(0).c.unwrap() > 0.0);
}

#[test]
fn decisions_render_in_explain_text() {
    let mut graph = chain(25, Some(10), 1);
    let report = plan_checkpoints(
        &mut graph,
        &CheckpointPolicy::default(),
        &CostInputs::default(),
    )
    .unwrap();
    let lines = report.explain_lines();
    assert_eq!(lines.len(), 25);
    assert!(lines[20].starts_with("Stage 20: c="), "{}", lines[20]);
    assert!(
        lines[20].ends_with(" → checkpoint (lineage depth 21 > 20)"),
        "{}",
        lines[20]
    );
    assert!(!lines[19].contains('→'), "{}", lines[19]);
    let text = report.explain();
    assert!(
        text.starts_with("Checkpoints: auto (MTBF 3600s ÷ 1 executor(s), max lineage depth 20)\n")
    );
    assert_eq!(text.lines().count(), 26);
}

#[test]
fn a_five_thousand_stage_chain_is_placed_in_one_pass() {
    let n = 5000;
    let mut graph = chain(n, Some(10), 1);
    let decisions = place_checkpoints(&mut graph, &CheckpointPolicy::default()).unwrap();
    let ids: Vec<usize> = decisions.iter().map(|d| d.stage).collect();
    // Every 21st stage from stage 20; never the result stage.
    let expected: Vec<usize> = (20..n - 1).step_by(21).collect();
    assert_eq!(ids, expected);
}

#[test]
fn placement_works_on_a_cut_physical_plan() {
    // Scan → Filter → Exchange(Hash) → partial count → Exchange(Single) → result.
    let source = scan("big@v1", Some(1_000_000_000), 4);
    let filtered = filter(source, col("t.a").gt(lit(0i64)));
    let hashed = exchange(filtered, ExchangeKind::Hash(vec![col("t.a")], 4));
    let counted = partial_count(hashed);
    let plan = exchange(counted, ExchangeKind::Single);
    let mut graph = build_stage_graph(&plan).unwrap();
    assert_eq!(graph.stages.len(), 3);
    let policy = CheckpointPolicy {
        executors: 4,
        ..Default::default()
    };
    let report = plan_checkpoints(&mut graph, &policy, &CostInputs::default()).unwrap();
    // The count stage accumulates the scan's lineage and writes four rows: checkpoint it.
    let ids: Vec<usize> = report.decisions().iter().map(|d| d.stage).collect();
    assert_eq!(ids, vec![1]);
    assert!(graph.stages[1].checkpoint.is_some());
    assert!(graph.stages[2].checkpoint.is_none());
}
