//! Fault tests: a fault plan (or chaos seed) in, the fault-free answer and the expected
//! recovery out — asserted on the event log and the job metrics. Every job is configured
//! through the same `ember.*` keys a session sets.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use ember_planner::expr::col;
use ember_planner::physical::ExchangeKind;
use ember_planner::stages::{build_stage_graph, StageGraph};

use super::tests::{exchange, expected_rows, rows, source};
use super::*;
use crate::events::{Event, EventKind, EventLog, RecomputeCause, TaskEndReason};
use crate::executor::{ClusterConfig, LocalCluster};

/// scan (3 partitions) → Exchange Hash(k, 4) → result.
fn hash_graph() -> StageGraph {
    build_stage_graph(&exchange(source(), ExchangeKind::Hash(vec![col("k")], 4))).unwrap()
}

/// What one job run left behind.
struct Outcome {
    result: Result<JobResult>,
    events: Vec<Event>,
}

impl Outcome {
    fn ok(&self) -> &JobResult {
        match &self.result {
            Ok(r) => r,
            Err(e) => panic!("job failed: {e}"),
        }
    }

    fn rows(&self) -> Vec<(i64, i64)> {
        let batches: Vec<_> = self.ok().partitions.iter().flatten().cloned().collect();
        rows(&batches)
    }

    fn named(&self, name: &str) -> Vec<&EventKind> {
        self.events
            .iter()
            .filter(|e| e.name() == name)
            .map(|e| &e.kind)
            .collect()
    }

    /// (stage, partition, attempt, executor, speculative, reason) of every TaskEnd.
    fn task_ends(&self) -> Vec<(usize, usize, usize, usize, bool, TaskEndReason)> {
        self.events
            .iter()
            .filter_map(|e| match e.kind {
                EventKind::TaskEnd {
                    stage,
                    partition,
                    attempt,
                    executor,
                    speculative,
                    reason,
                    ..
                } => Some((stage, partition, attempt, executor, speculative, reason)),
                _ => None,
            })
            .collect()
    }

    /// (stage, partitions, cause, executor) of every PartitionsRecomputed.
    fn recomputed(&self) -> Vec<(usize, Vec<usize>, RecomputeCause, Option<usize>)> {
        self.events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::PartitionsRecomputed {
                    stage,
                    partitions,
                    cause,
                    executor,
                    ..
                } => Some((*stage, partitions.clone(), *cause, *executor)),
                _ => None,
            })
            .collect()
    }

    /// Map partitions of `stage` whose successful attempt ran on `executor`.
    fn succeeded_on(&self, stage: usize, executor: usize) -> BTreeSet<usize> {
        self.task_ends()
            .into_iter()
            .filter(|t| t.0 == stage && t.3 == executor && t.5 == TaskEndReason::Success)
            .map(|t| t.1)
            .collect()
    }
}

/// Runs `graph` on a fresh cluster of `instances` × `cores`, configured (cluster, job and
/// faults) from `settings` as a session would, with one event log for both.
fn run(graph: &StageGraph, instances: usize, cores: usize, settings: &[(&str, &str)]) -> Outcome {
    let mut map: HashMap<String, String> = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    map.insert("ember.executor.instances".into(), instances.to_string());
    map.insert("ember.executor.cores".into(), cores.to_string());
    let get = |k: &str| map.get(k).cloned();
    let events = Arc::new(EventLog::in_memory("app-fault-test"));
    let config = ClusterConfig::from_settings(get).unwrap();
    let cluster = LocalCluster::with_event_log(&config, events.clone()).unwrap();
    let ctx = JobContext::from_settings(Arc::default(), get, &cluster).unwrap();
    let result = run_job(graph, &cluster, &ctx);
    if let Some(faults) = &ctx.faults {
        assert!(
            faults.unfired().is_empty(),
            "unfired: {:?}",
            faults.unfired()
        );
    }
    drop(cluster);
    Outcome {
        result,
        events: events.events(),
    }
}

#[test]
fn a_fault_free_job_logs_its_whole_life() {
    let out = run(&hash_graph(), 2, 2, &[]);
    assert_eq!(out.rows(), expected_rows());
    let names: Vec<&str> = out.events.iter().map(Event::name).collect();
    assert_eq!(names.first(), Some(&"ApplicationStart"));
    assert_eq!(names.last(), Some(&"ApplicationEnd"));
    assert_eq!(out.named("ExecutorAdded").len(), 2);
    assert_eq!(out.named("JobStart").len(), 1);
    assert!(matches!(
        out.named("JobEnd")[0],
        EventKind::JobEnd {
            result: crate::events::JobResult::Succeeded,
            ..
        }
    ));
    let submitted: Vec<(usize, usize, Vec<usize>)> = out
        .named("StageSubmitted")
        .into_iter()
        .map(|k| match k {
            EventKind::StageSubmitted {
                stage,
                stage_attempt,
                partitions,
                ..
            } => (*stage, *stage_attempt, partitions.clone()),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(
        submitted,
        vec![(0, 0, vec![0, 1, 2]), (1, 0, vec![0, 1, 2, 3])]
    );
    assert_eq!(out.named("StageCompleted").len(), 2);
    assert_eq!(out.named("TaskStart").len(), 7);
    let ends = out.task_ends();
    assert_eq!(ends.len(), 7);
    assert!(ends.iter().all(|t| t.5 == TaskEndReason::Success && !t.4));
    assert!(out.recomputed().is_empty());
}

#[test]
fn fail_task_is_retried_and_logged_as_an_exception_failure() {
    let plan = "fail-task stage=0 partition=1 attempt=0";
    let out = run(&hash_graph(), 2, 1, &[("ember.fault.plan", plan)]);
    assert_eq!(out.rows(), expected_rows());
    let of_task: Vec<(usize, TaskEndReason)> = out
        .task_ends()
        .into_iter()
        .filter(|t| (t.0, t.1) == (0, 1))
        .map(|t| (t.2, t.5))
        .collect();
    assert_eq!(
        of_task,
        vec![
            (0, TaskEndReason::ExceptionFailure),
            (1, TaskEndReason::Success)
        ]
    );
    // A task failure is not lost output: nothing is recomputed.
    assert!(out.recomputed().is_empty());
}

#[test]
fn lose_shuffle_deletes_the_blocks_and_recomputes_only_that_partition() {
    let plan = "lose-shuffle stage=0 partition=1";
    let out = run(&hash_graph(), 2, 2, &[("ember.fault.plan", plan)]);
    assert_eq!(out.rows(), expected_rows());
    assert_eq!(
        out.recomputed(),
        vec![(0, vec![1], RecomputeCause::FetchFailed, None)]
    );
    assert!(out
        .task_ends()
        .iter()
        .any(|t| t.0 == 1 && t.5 == TaskEndReason::FetchFailed));
    let map = out.ok().metrics.stage(0).unwrap();
    assert_eq!(map.recomputed_partitions(), vec![1]);
    // The map stage ran a second attempt for the lost partition only.
    let resubmitted: Vec<(usize, Vec<usize>)> = out
        .named("StageSubmitted")
        .into_iter()
        .filter_map(|k| match k {
            EventKind::StageSubmitted {
                stage: 0,
                stage_attempt,
                partitions,
                ..
            } if *stage_attempt > 0 => Some((*stage_attempt, partitions.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(resubmitted, vec![(1, vec![1])]);
}

#[test]
fn killed_executor_is_replaced_and_exactly_its_outputs_are_recomputed() {
    let plan = "kill-executor executor=0 stage=1 at=50%";
    let out = run(&hash_graph(), 2, 1, &[("ember.fault.plan", plan)]);
    assert_eq!(out.rows(), expected_rows());

    let held: BTreeSet<usize> = out
        .task_ends()
        .into_iter()
        .filter(|t| t.0 == 0 && t.3 == 0 && t.5 == TaskEndReason::Success)
        .map(|t| t.1)
        .collect();
    assert!(!held.is_empty(), "executor 0 ran map tasks");
    let recomputed = out.recomputed();
    assert_eq!(recomputed.len(), 1, "{recomputed:?}");
    let (stage, partitions, cause, executor) = &recomputed[0];
    assert_eq!(
        (*stage, *cause, *executor),
        (0, RecomputeCause::ExecutorLost, Some(0))
    );
    assert_eq!(partitions.iter().copied().collect::<BTreeSet<_>>(), held);
    let metrics = &out.ok().metrics;
    assert_eq!(
        metrics
            .stage(0)
            .unwrap()
            .recomputed_partitions()
            .into_iter()
            .collect::<BTreeSet<_>>(),
        held
    );
    assert_eq!(metrics.executors_lost, vec![0]);

    // The replacement (executor 2) joined at once.
    let removed = out.named("ExecutorRemoved");
    assert!(matches!(
        removed[..],
        [EventKind::ExecutorRemoved { executor: 0, .. }]
    ));
    let added: Vec<usize> = out
        .named("ExecutorAdded")
        .into_iter()
        .map(|k| match k {
            EventKind::ExecutorAdded { executor, .. } => *executor,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(added, vec![0, 1, 2]);
    // Nothing ran on the dead executor after it was removed.
    let removed_at = out
        .events
        .iter()
        .position(|e| e.name() == "ExecutorRemoved")
        .unwrap();
    assert!(out.events[removed_at..]
        .iter()
        .all(|e| !matches!(e.kind, EventKind::TaskStart { executor: 0, .. })));
}

#[test]
fn hung_executor_is_detected_by_heartbeat_timeout_with_default_settings() {
    // Stage 1's last two tasks are slowed down so that one of them is on executor 0 when it
    // hangs: on a loaded machine both could otherwise finish before the scheduler fires the
    // hang, and then nothing would need the hung executor (the test failed that way once).
    let plan = "hang-executor executor=0 stage=1 at=50%; \
                delay-task stage=1 partition=2 ms=300; delay-task stage=1 partition=3 ms=300";
    let out = run(&hash_graph(), 2, 1, &[("ember.fault.plan", plan)]);
    assert_eq!(out.rows(), expected_rows());

    // The hang fires when stage 1's second task succeeds.
    let hung_at = out
        .events
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::TaskEnd {
                    stage: 1,
                    reason: TaskEndReason::Success,
                    ..
                }
            )
        })
        .nth(1)
        .unwrap()
        .timestamp;
    let removed = out
        .events
        .iter()
        .find(|e| e.name() == "ExecutorRemoved")
        .unwrap();
    match &removed.kind {
        EventKind::ExecutorRemoved {
            executor: 0,
            message,
        } => assert!(message.contains("no heartbeat"), "{message}"),
        other => panic!("{other:?}"),
    }
    let detection = Duration::from_millis(removed.timestamp.saturating_sub(hung_at));
    // Default ember.network.timeout is 1 s; the target is ≤ 2 s.
    assert!(detection >= Duration::from_millis(900), "{detection:?}");
    assert!(detection < Duration::from_secs(5), "{detection:?}");
    // Its outputs were unregistered and recomputed elsewhere.
    let held = out.succeeded_on(0, 0);
    let recomputed: BTreeSet<usize> = out
        .recomputed()
        .into_iter()
        .filter(|r| r.0 == 0 && r.2 == RecomputeCause::ExecutorLost)
        .flat_map(|r| r.1)
        .collect();
    assert_eq!(recomputed, held);
    assert_eq!(out.ok().metrics.executors_lost, vec![0]);
}

#[test]
fn speculation_copies_a_straggler_and_counts_its_result_once() {
    let settings = [
        ("ember.fault.plan", "delay-task stage=1 partition=2 ms=5000"),
        ("ember.speculation", "true"),
        ("ember.speculation.interval", "10ms"),
        ("ember.speculation.minTaskRuntime", "50ms"),
    ];
    let out = run(&hash_graph(), 2, 2, &settings);
    assert_eq!(out.rows(), expected_rows());
    let of_straggler: Vec<(usize, bool, TaskEndReason)> = out
        .task_ends()
        .into_iter()
        .filter(|t| (t.0, t.1) == (1, 2))
        .map(|t| (t.3, t.4, t.5))
        .collect();
    assert_eq!(of_straggler.len(), 2, "{of_straggler:?}");
    let copy = of_straggler
        .iter()
        .find(|t| t.1)
        .expect("a speculative copy");
    let original = of_straggler.iter().find(|t| !t.1).unwrap();
    assert_eq!(copy.2, TaskEndReason::Success);
    assert_eq!(original.2, TaskEndReason::TaskKilled);
    assert_ne!(copy.0, original.0, "the copy runs on another executor");
    let metrics = &out.ok().metrics;
    assert_eq!(metrics.stage(1).unwrap().successes(2), 1);
    assert!(
        metrics.duration < Duration::from_secs(3),
        "the job did not wait for the straggler: {:?}",
        metrics.duration
    );
}

#[test]
fn speculation_is_off_by_default() {
    let plan = "delay-task stage=1 partition=0 ms=300";
    let out = run(&hash_graph(), 2, 2, &[("ember.fault.plan", plan)]);
    assert_eq!(out.rows(), expected_rows());
    assert!(out.task_ends().iter().all(|t| !t.4));
    assert!(out.ok().metrics.duration >= Duration::from_millis(300));
}

/// SPARK-23207: a round-robin repartition whose map output is lost and recomputed must
/// deal exactly the same rows to exactly the same partitions.
#[test]
fn round_robin_after_lost_shuffle_returns_exactly_the_same_rows() {
    let graph = build_stage_graph(&exchange(
        exchange(source(), ExchangeKind::RoundRobin(4)),
        ExchangeKind::Hash(vec![col("v")], 3),
    ))
    .unwrap();
    let clean = run(&graph, 2, 2, &[]);
    let faulty = run(
        &graph,
        3,
        1,
        &[(
            "ember.fault.plan",
            "lose-shuffle stage=0 partition=1; lose-shuffle stage=1 partition=2",
        )],
    );
    assert_eq!(faulty.ok().partitions, clean.ok().partitions);
    assert_eq!(faulty.rows(), expected_rows());
    let recomputed: Vec<(usize, Vec<usize>)> = faulty
        .recomputed()
        .into_iter()
        .map(|r| (r.0, r.1))
        .collect();
    assert!(recomputed.contains(&(1, vec![2])), "{recomputed:?}");
}

#[test]
fn chaos_runs_return_the_fault_free_answer() {
    let graph = build_stage_graph(&exchange(
        exchange(source(), ExchangeKind::Hash(vec![col("k")], 4)),
        ExchangeKind::RoundRobin(2),
    ))
    .unwrap();
    let clean = run(&graph, 3, 1, &[]);
    for seed in 0..6 {
        let seed = seed.to_string();
        let out = run(
            &graph,
            3,
            1,
            &[
                ("ember.fault.chaos.seed", seed.as_str()),
                ("ember.fault.chaos.rate", "0.3"),
                ("ember.executor.heartbeatInterval", "20ms"),
                ("ember.network.timeout", "200ms"),
            ],
        );
        assert_eq!(out.ok().partitions, clean.ok().partitions, "seed {seed}");
    }
}

#[test]
fn beyond_max_failures_the_job_fails_and_logs_it() {
    let plan = "fail-task stage=1 partition=0 attempt=0; fail-task stage=1 partition=0 \
                attempt=1";
    let out = run(
        &hash_graph(),
        2,
        1,
        &[("ember.fault.plan", plan), ("ember.task.maxFailures", "2")],
    );
    let err = out.result.as_ref().unwrap_err().to_string();
    assert!(err.contains("ember.task.maxFailures = 2"), "{err}");
    assert!(matches!(
        out.named("JobEnd")[..],
        [EventKind::JobEnd {
            result: crate::events::JobResult::Failed,
            ..
        }]
    ));
    assert!(out.named("StageCompleted").iter().any(|k| matches!(
        k,
        EventKind::StageCompleted {
            stage: 1,
            succeeded: false,
            ..
        }
    )));
}
