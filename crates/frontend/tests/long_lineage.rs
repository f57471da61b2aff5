//! Long lineage (issue 3): iterative DataFrame loops — each iteration joins the previous
//! result with a small table and aggregates it, feeding the next — must build, optimize,
//! plan, cut into stages, fingerprint, EXPLAIN and drop at 1,000 iterations without
//! overflowing a 2 MiB test-thread stack, keep the planning work per iteration flat
//! (plans are shared DAGs and every pass memoises), including a loop whose iteration reads
//! the previous DataFrame twice, and give the answer computed another way.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array};
use arrow::record_batch::RecordBatch;
use common::event_files::{events, named};
use ember_frontend::format::cell_strings;
use ember_frontend::prelude::*;
use ember_planner::fingerprint::PlanFingerprinter;
use ember_planner::lineage::{plan_checkpoints, CheckpointPolicy, CostInputs};
use ember_planner::logical::LogicalPlan;

/// Keys of the iterated state; each iteration adds 1 to every key's value.
const KEYS: i64 = 16;
/// Partitions of the input tables and of every shuffle, so joins and aggregates exchange.
const PARTITIONS: usize = 4;

type Step = fn(&DataFrame, &DataFrame) -> DataFrame;

/// A session where joins shuffle (no broadcast) over `PARTITIONS` partitions, with
/// `state(k, v)`: v = 0 for every key, and `step(wk, w)`: w = 1 for every key.
fn session() -> Session {
    session_with(&[])
}

/// [`session`] with extra settings.
fn session_with(settings: &[(&str, &str)]) -> Session {
    let partitions = PARTITIONS.to_string();
    let session = [
        ("ember.sql.shuffle.partitions", partitions.as_str()),
        ("ember.sql.autoBroadcastJoinThreshold", "0"),
    ]
    .iter()
    .chain(settings)
    .fold(Session::builder(), |b, (k, v)| b.config(k, v))
    .build()
    .unwrap();
    let table = |key: &str, value: &str, v: i64| {
        let per = KEYS / PARTITIONS as i64;
        let partitions: Vec<Vec<RecordBatch>> = (0..PARTITIONS as i64)
            .map(|p| {
                let keys: Vec<i64> = (p * per..(p + 1) * per).collect();
                let values = vec![v; keys.len()];
                vec![RecordBatch::try_from_iter(vec![
                    (key, Arc::new(Int64Array::from(keys)) as ArrayRef),
                    (value, Arc::new(Int64Array::from(values)) as ArrayRef),
                ])
                .unwrap()]
            })
            .collect();
        (partitions[0][0].schema(), partitions)
    };
    let (schema, parts) = table("k", "v", 0);
    session.register_batches("state", schema, parts).unwrap();
    let (schema, parts) = table("wk", "w", 1);
    session.register_batches("step", schema, parts).unwrap();
    session
}

/// One iteration: join with `step` and aggregate per key, v' = v + w = v + 1.
fn join_aggregate(prev: &DataFrame, step: &DataFrame) -> DataFrame {
    prev.join(step, JoinType::Inner, &[("k", "wk")])
        .unwrap()
        .group_by(vec![col("k")])
        .agg(vec![sum(col("v").add(col("w"))).alias("v")])
        .unwrap()
}

/// One iteration reading the previous DataFrame twice (a union of it with itself): every
/// key appears twice, `max` keeps v' = v + 1. Without shared-DAG planning its plan tree
/// doubles at every iteration.
fn reuse_twice(prev: &DataFrame, step: &DataFrame) -> DataFrame {
    prev.union(prev)
        .unwrap()
        .join(step, JoinType::Inner, &[("k", "wk")])
        .unwrap()
        .group_by(vec![col("k")])
        .agg(vec![max(col("v").add(col("w"))).alias("v")])
        .unwrap()
}

const LOOPS: [(&str, Step); 2] = [
    ("join_aggregate", join_aggregate),
    ("reuse_twice", reuse_twice),
];

fn iterate(session: &Session, n: usize, f: Step) -> DataFrame {
    let step = session.table("step").unwrap();
    let mut df = session.table("state").unwrap();
    for _ in 0..n {
        df = f(&df, &step);
    }
    df
}

/// The answer computed another way: every key's value is the number of iterations.
fn expected(n: usize) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = (0..KEYS)
        .map(|k| vec![k.to_string(), n.to_string()])
        .collect();
    rows.sort();
    rows
}

fn sorted_rows(df: &DataFrame) -> Vec<Vec<String>> {
    let mut rows = cell_strings(&df.collect().unwrap()).unwrap();
    rows.sort();
    rows
}

/// Distinct nodes of a logical plan DAG (by identity), walked with an explicit stack.
fn distinct_logical_nodes(plan: &Arc<LogicalPlan>) -> usize {
    let mut seen: HashSet<*const LogicalPlan> = HashSet::new();
    let mut stack = vec![plan];
    while let Some(node) = stack.pop() {
        if seen.insert(Arc::as_ptr(node)) {
            stack.extend(node.inputs());
        }
    }
    seen.len()
}

/// Deterministic planning work for one query: distinct nodes of the optimized logical
/// plan, physical nodes the fingerprinter hashes (each once, memoised), and stages.
fn planning_work(session: &Session, df: &DataFrame) -> [usize; 3] {
    let prepared = session.prepare(df.plan()).unwrap();
    let mut fingerprinter = PlanFingerprinter::new();
    fingerprinter.fingerprint(&prepared.physical);
    [
        distinct_logical_nodes(&prepared.optimized),
        fingerprinter.nodes_hashed(),
        prepared.stages.stages.len(),
    ]
}

/// Planning 1,000 iterations (both loops) on the 2 MiB test thread: optimize, physical
/// plan, stage cutting, stage fingerprints and checkpoint placement, every EXPLAIN section,
/// and dropping the deep `Arc` chains — none may overflow the stack.
#[test]
fn a_thousand_iterations_plan_explain_and_drop_without_overflow() {
    for (name, f) in LOOPS {
        let session = session();
        let df = iterate(&session, 1000, f);
        let mut prepared = session.prepare(df.plan()).unwrap();
        // Each iteration shuffles at least once (join and aggregate share the key).
        assert!(
            prepared.stages.stages.len() > 1000,
            "{name}: {} stages",
            prepared.stages.stages.len()
        );
        let report = plan_checkpoints(
            &mut prepared.stages,
            &CheckpointPolicy::default(),
            &CostInputs::default(),
        )
        .unwrap();
        assert_eq!(report.stages.len(), prepared.stages.stages.len());
        for (section, text) in prepared.explain_sections() {
            assert!(!text.is_empty(), "{name}: empty {section}");
        }
        drop(prepared);
        drop(df);
        drop(session);
    }
}

/// Planning work grows by the same amount at every iteration (after the first few, where
/// the optimizer may still fold the base tables differently): linear, not quadratic or
/// exponential, for both loops. Then the 100-iteration result is the reference answer.
#[test]
fn planning_work_per_iteration_is_flat_over_100_iterations() {
    for (name, f) in LOOPS {
        let session = session();
        let step = session.table("step").unwrap();
        let mut df = session.table("state").unwrap();
        let mut work = Vec::new();
        for _ in 0..100 {
            df = f(&df, &step);
            work.push(planning_work(&session, &df));
        }
        let delta = |i: usize| -> [usize; 3] {
            let (a, b) = (work[i - 1], work[i]);
            [b[0] - a[0], b[1] - a[1], b[2] - a[2]]
        };
        // Automatic checkpoints (default depth cap) add a persist stage every few
        // iterations, so the per-iteration work is periodic rather than constant: bound it
        // by what iterations 10..30 needed, and it must not grow afterwards.
        let mut steady = [0usize; 3];
        for i in 10..30 {
            let d = delta(i);
            assert!(
                d[0] > 0 && d[1] > 0,
                "{name}: iteration {i} added no nodes: {d:?}"
            );
            for c in 0..3 {
                steady[c] = steady[c].max(d[c]);
            }
        }
        for i in 30..100 {
            let d = delta(i);
            assert!(
                (0..3).all(|c| d[c] <= steady[c]),
                "{name}: planning work per iteration grew at iteration {i}: {d:?} > {steady:?} ({:?} → {:?})",
                work[i - 1],
                work[i]
            );
        }
        // Linear overall: 100 iterations cost at most 100 × the steady per-iteration work.
        assert!(
            work[99][1] <= 100 * steady[1] + work[0][1],
            "{name}: {:?}",
            work[99]
        );
        assert_eq!(sorted_rows(&df), expected(100), "{name}");
    }
}

/// A 30-iteration loop run with automatic checkpoints and a small lineage-depth cap
/// (`ember.checkpoint.maxLineageDepth`): the placement puts a checkpoint at least every
/// `cap` stages, each explained by its reason, the run writes them (`CheckpointWritten` in
/// the event log) and gives the reference answer, and running it again reads them.
#[test]
fn thirty_iterations_with_automatic_checkpoints_every_few_stages() {
    let cap = 4;
    for (name, f) in LOOPS {
        let logs = tempfile::tempdir().unwrap();
        let checkpoints = tempfile::tempdir().unwrap();
        let cap_text = cap.to_string();
        let session = session_with(&[
            ("ember.checkpoint.maxLineageDepth", cap_text.as_str()),
            ("ember.checkpoint.dir", checkpoints.path().to_str().unwrap()),
            ("ember.eventLog.enabled", "true"),
            ("ember.eventLog.dir", logs.path().to_str().unwrap()),
        ]);
        let df = iterate(&session, 30, f);
        let prepared = session.prepare(df.plan()).unwrap();
        let report = &prepared.lineage;
        let text = report.explain();
        // The cap holds everywhere: no stage sits more than `cap` stages (plus the one
        // that is itself checkpointed) above a durable point, so the 60-stage chain of 30
        // iterations is cut many times and recovery cost stays bounded at any iteration.
        for s in &report.stages {
            assert!(s.cost.depth <= cap + 1, "{name}: stage {}\n{text}", s.stage);
        }
        let decided = report
            .stages
            .iter()
            .filter(|s| s.checkpoint.is_some())
            .count();
        assert!(decided >= 10, "{name}: {decided} checkpoints\n{text}");
        assert!(text.contains(&format!("max lineage depth {cap}")), "{text}");
        assert_eq!(text.matches("→ checkpoint (").count(), decided, "{text}");
        let recompute = |range: &[ember_planner::lineage::StageLineage]| {
            range.iter().filter_map(|s| s.cost.r).fold(0.0f64, f64::max)
        };
        let n = report.stages.len();
        assert!(
            recompute(&report.stages[n - 10..]) <= recompute(&report.stages[..n - 10]),
            "{name}: recompute cost grows along the loop\n{text}"
        );

        assert_eq!(sorted_rows(&df), expected(30), "{name}");
        let written = count_events(logs.path(), "CheckpointWritten");
        assert!(written >= 10, "{name}: {written} checkpoints written");
        // The second run reads them instead of the lineage.
        assert_eq!(sorted_rows(&df), expected(30), "{name}");
        let reused = count_events(logs.path(), "CheckpointReused");
        assert!(reused > 0, "{name}: no checkpoint reused");
    }
}

/// Events named `name` in the event logs under `dir`.
fn count_events(dir: &std::path::Path, name: &str) -> usize {
    named(&events(dir), name).len()
}
