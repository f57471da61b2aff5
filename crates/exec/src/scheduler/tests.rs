//! Jobs end to end on a local cluster: multi-stage shuffles, determinism, and recovery from
//! lost shuffle blocks, failing tasks and lost executors — each asserted on the answer and on
//! the recovery recorded in the job metrics.

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array};
use arrow::record_batch::RecordBatch;

use ember_planner::expr::col;
use ember_planner::physical::{ExchangeKind, PhysicalPlan};
use ember_planner::stages::{build_stage_graph, StageGraph};
use ember_planner::{EmberError, Result};

use super::*;
use crate::executor::{ClusterConfig, LocalCluster, LocalExecutor};
use crate::operators::test_util::{batch, int_column, mem_scan};
use crate::shuffle::MapOutputTracker;

const MAP_PARTITIONS: usize = 3;
const ROWS_PER_PARTITION: i64 = 50;

/// A scan of 3 partitions; partition p holds rows (k = i % 10, v = p * 1000 + i), in two
/// batches so that round-robin has to continue across batches.
pub(super) fn source() -> Arc<PhysicalPlan> {
    let partitions = (0..MAP_PARTITIONS as i64)
        .map(|p| {
            let rows: Vec<i64> = (0..ROWS_PER_PARTITION).collect();
            rows.chunks(20)
                .map(|chunk| {
                    let k: Vec<i64> = chunk.iter().map(|i| i % 10).collect();
                    let v: Vec<i64> = chunk.iter().map(|i| p * 1000 + i).collect();
                    batch(vec![
                        ("k", Arc::new(Int64Array::from(k)) as ArrayRef),
                        ("v", Arc::new(Int64Array::from(v)) as ArrayRef),
                    ])
                })
                .collect()
        })
        .collect();
    mem_scan(partitions)
}

pub(super) fn exchange(input: Arc<PhysicalPlan>, kind: ExchangeKind) -> Arc<PhysicalPlan> {
    Arc::new(PhysicalPlan::Exchange { input, kind })
}

/// scan → Exchange Hash(k, 4) → (result reads the shuffle): two stages.
fn hash_graph() -> StageGraph {
    build_stage_graph(&exchange(source(), ExchangeKind::Hash(vec![col("k")], 4))).unwrap()
}

/// A cluster that does not replace lost executors (the recovery tests here watch the
/// scheduler alone; `fault_tests` covers replacement).
fn cluster(instances: usize, cores: usize) -> LocalCluster {
    LocalCluster::new(&ClusterConfig {
        instances,
        cores_per_executor: cores,
        replace_lost_executors: false,
        ..ClusterConfig::default()
    })
    .unwrap()
}

fn job_ctx() -> JobContext {
    JobContext::new(Arc::default())
}

/// (k, v) pairs of all rows, sorted.
pub(super) fn rows(batches: &[RecordBatch]) -> Vec<(i64, i64)> {
    let k = int_column(batches, 0);
    let v = int_column(batches, 1);
    let mut rows: Vec<(i64, i64)> = k
        .into_iter()
        .zip(v)
        .map(|(k, v)| (k.unwrap(), v.unwrap()))
        .collect();
    rows.sort();
    rows
}

pub(super) fn expected_rows() -> Vec<(i64, i64)> {
    let mut rows: Vec<(i64, i64)> = (0..MAP_PARTITIONS as i64)
        .flat_map(|p| (0..ROWS_PER_PARTITION).map(move |i| (i % 10, p * 1000 + i)))
        .collect();
    rows.sort();
    rows
}

fn all_rows(result: &JobResult) -> Vec<(i64, i64)> {
    let batches: Vec<RecordBatch> = result.partitions.iter().flatten().cloned().collect();
    rows(&batches)
}

/// A hook that runs `action` once, before the first task of `stage`.
struct OnceBeforeStage<F> {
    stage: usize,
    done: AtomicBool,
    action: F,
}

impl<F> TaskHook for OnceBeforeStage<F>
where
    F: Fn(&MapOutputTracker) -> Result<()> + Send + Sync,
{
    fn before_task(&self, task: &TaskInfo, tracker: &MapOutputTracker) -> Result<()> {
        if task.stage == self.stage && !self.done.swap(true, Ordering::SeqCst) {
            (self.action)(tracker)?;
        }
        Ok(())
    }
}

fn once_before_stage<F>(stage: usize, action: F) -> Arc<dyn TaskHook>
where
    F: Fn(&MapOutputTracker) -> Result<()> + Send + Sync + 'static,
{
    Arc::new(OnceBeforeStage {
        stage,
        done: AtomicBool::new(false),
        action,
    })
}

/// Deletes every block file of one map output.
fn delete_blocks(tracker: &MapOutputTracker, stage: usize, map_partition: usize) -> Result<()> {
    let status = tracker
        .get(stage, map_partition)
        .ok_or_else(|| EmberError::Internal("map output to delete is not registered".into()))?;
    // The map task's blocks share one file.
    for meta in status.blocks.iter().flatten().take(1) {
        std::fs::remove_file(&meta.path)
            .map_err(|e| EmberError::io(meta.path.display().to_string(), e))?;
    }
    Ok(())
}

#[test]
fn hash_shuffle_returns_every_row_with_keys_colocated() {
    let cluster = cluster(2, 2);
    let result = run_job(&hash_graph(), &cluster, &job_ctx()).unwrap();
    assert_eq!(result.partitions.len(), 4);
    assert_eq!(all_rows(&result), expected_rows());

    // Every key lands in exactly one reduce partition.
    let mut owner = std::collections::HashMap::new();
    for (p, batches) in result.partitions.iter().enumerate() {
        for k in int_column(batches, 0) {
            assert_eq!(
                *owner.entry(k).or_insert(p),
                p,
                "key {k:?} in two partitions"
            );
        }
    }
    assert!(
        owner.values().collect::<HashSet<_>>().len() > 1,
        "10 keys should use several partitions"
    );

    let m = &result.metrics;
    assert_eq!(m.stage(0).unwrap().tasks.len(), MAP_PARTITIONS);
    assert_eq!(m.stage(0).unwrap().rows(), 150);
    assert_eq!(m.stage(1).unwrap().rows(), 150);
    assert_eq!(m.task_attempts(), MAP_PARTITIONS + 4);
    assert!(m.stage(0).unwrap().recomputed_partitions().is_empty());
}

#[test]
fn three_stage_job_chains_shuffles() {
    // scan → Hash(k, 4) → RoundRobin(2) → Single: four stages, three shuffles.
    let plan = exchange(
        exchange(
            exchange(source(), ExchangeKind::Hash(vec![col("k")], 4)),
            ExchangeKind::RoundRobin(2),
        ),
        ExchangeKind::Single,
    );
    let graph = build_stage_graph(&plan).unwrap();
    assert_eq!(graph.stages.len(), 4);
    let cluster = cluster(2, 1);
    let result = run_job(&graph, &cluster, &job_ctx()).unwrap();
    assert_eq!(result.partitions.len(), 1);
    assert_eq!(all_rows(&result), expected_rows());
    assert_eq!(result.metrics.stage(1).unwrap().tasks.len(), 4);
    assert_eq!(result.metrics.stage(2).unwrap().tasks.len(), 2);
}

#[test]
fn round_robin_is_deterministic_across_runs() {
    let graph = build_stage_graph(&exchange(source(), ExchangeKind::RoundRobin(4))).unwrap();
    // Different cluster shapes schedule map tasks differently; the output must not care.
    let first = run_job(&graph, &cluster(2, 2), &job_ctx()).unwrap();
    let second = run_job(&graph, &cluster(3, 1), &job_ctx()).unwrap();
    assert_eq!(first.partitions, second.partitions);
    assert_eq!(all_rows(&first), expected_rows());
    // 150 rows over 4 buckets, dealt evenly.
    let sizes: Vec<usize> = first
        .partitions
        .iter()
        .map(|p| p.iter().map(|b| b.num_rows()).sum())
        .collect();
    assert_eq!(sizes, vec![37, 38, 38, 37]);
}

#[test]
fn lost_shuffle_block_recomputes_only_that_map_partition() {
    let hook = once_before_stage(1, |tracker| delete_blocks(tracker, 0, 1));
    let cluster = cluster(2, 2);
    let result = run_job(&hash_graph(), &cluster, &job_ctx().with_hook(hook)).unwrap();
    assert_eq!(all_rows(&result), expected_rows());

    let map = result.metrics.stage(0).unwrap();
    assert_eq!(map.recomputed_partitions(), vec![1]);
    assert_eq!(map.successes(0), 1);
    assert_eq!(map.successes(2), 1);

    let reduce = result.metrics.stage(1).unwrap();
    assert_eq!(
        reduce.attempts, 2,
        "one fetch-failed stage attempt, then success: {:#?}",
        result.metrics
    );
    assert!(reduce.tasks.iter().any(|t| t.status
        == TaskStatus::FetchFailed {
            map_stage: 0,
            map_partition: 1
        }));
    for p in 0..4 {
        assert_eq!(reduce.successes(p), 1, "reduce partition {p}");
    }
}

#[test]
fn corrupt_shuffle_block_is_a_fetch_failure() {
    let hook = once_before_stage(1, |tracker| {
        let status = tracker.get(0, 2).expect("registered");
        for meta in status.blocks.iter().flatten() {
            std::fs::write(&meta.path, b"not an arrow file")
                .map_err(|e| EmberError::io(meta.path.display().to_string(), e))?;
        }
        Ok(())
    });
    let result = run_job(&hash_graph(), &cluster(2, 2), &job_ctx().with_hook(hook)).unwrap();
    assert_eq!(all_rows(&result), expected_rows());
    assert_eq!(
        result.metrics.stage(0).unwrap().recomputed_partitions(),
        vec![2]
    );
}

#[test]
fn repeated_fetch_failures_fail_the_job_with_the_typed_error() {
    /// Deletes map output 0 before every reduce task.
    struct AlwaysDelete;
    impl TaskHook for AlwaysDelete {
        fn before_task(&self, task: &TaskInfo, tracker: &MapOutputTracker) -> Result<()> {
            if task.stage == 1 && tracker.get(0, 0).is_some() {
                delete_blocks(tracker, 0, 0)?;
            }
            Ok(())
        }
    }
    let ctx = job_ctx()
        .with_hook(Arc::new(AlwaysDelete))
        .with_config(JobConfig {
            max_stage_attempts: 2,
            ..JobConfig::default()
        });
    let err = run_job(&hash_graph(), &cluster(1, 1), &ctx).unwrap_err();
    assert!(
        matches!(
            err.root(),
            EmberError::FetchFailed {
                stage: 0,
                map_partition: 0,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("maxConsecutiveAttempts"), "{err}");
}

/// Fails attempts of task (stage, partition) whose attempt number is below `failures`.
struct FailAttempts {
    stage: usize,
    partition: usize,
    failures: usize,
    calls: AtomicUsize,
}

impl TaskHook for FailAttempts {
    fn before_task(&self, task: &TaskInfo, _: &MapOutputTracker) -> Result<()> {
        if task.stage == self.stage && task.partition == self.partition {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if task.attempt < self.failures {
                return Err(EmberError::Execution(format!(
                    "injected failure of attempt {}",
                    task.attempt
                )));
            }
        }
        Ok(())
    }
}

#[test]
fn failing_task_is_retried_on_another_executor() {
    let hook = Arc::new(FailAttempts {
        stage: 0,
        partition: 2,
        failures: 2,
        calls: AtomicUsize::new(0),
    });
    let result = run_job(
        &hash_graph(),
        &cluster(2, 1),
        &job_ctx().with_hook(hook.clone()),
    )
    .unwrap();
    assert_eq!(all_rows(&result), expected_rows());
    assert_eq!(hook.calls.load(Ordering::SeqCst), 3);

    let attempts = result.metrics.stage(0).unwrap().attempts_of(2);
    let statuses: Vec<bool> = attempts
        .iter()
        .map(|t| t.status == TaskStatus::Succeeded)
        .collect();
    assert_eq!(statuses, vec![false, false, true]);
    assert_ne!(
        attempts[0].executor, attempts[1].executor,
        "a retry prefers an executor the task has not failed on"
    );
    assert!(matches!(&attempts[0].status, TaskStatus::Failed(m) if m.contains("injected")));
}

#[test]
fn task_failing_every_attempt_fails_the_job_with_every_reason() {
    let hook = Arc::new(FailAttempts {
        stage: 1,
        partition: 0,
        failures: usize::MAX,
        calls: AtomicUsize::new(0),
    });
    let err = run_job(
        &hash_graph(),
        &cluster(2, 1),
        &job_ctx().with_hook(hook.clone()),
    )
    .unwrap_err();
    assert_eq!(
        hook.calls.load(Ordering::SeqCst),
        4,
        "ember.task.maxFailures = 4"
    );
    assert!(
        matches!(err.root(), EmberError::Execution(m) if m.contains("attempt 3")),
        "{err}"
    );
    let message = err.to_string();
    for attempt in 0..4 {
        assert!(
            message.contains(&format!("injected failure of attempt {attempt}")),
            "{message}"
        );
    }
}

/// Errors the same rows would raise on any executor: planning, and data that does not
/// cast or overflows.
#[test]
fn errors_a_retry_cannot_fix_are_not_retried() {
    type MakeError = fn() -> EmberError;
    struct Fails(AtomicUsize, MakeError);
    impl TaskHook for Fails {
        fn before_task(&self, _: &TaskInfo, _: &MapOutputTracker) -> Result<()> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Err((self.1)())
        }
    }
    let kinds: [(MakeError, &str); 3] = [
        (|| EmberError::Plan("no such column".into()), "Plan error"),
        (
            || EmberError::Data("cannot cast 'abc' to Int32".into()),
            "Data error",
        ),
        (
            || arrow::error::ArrowError::ArithmeticOverflow("1 + i64::MAX".into()).into(),
            "Arithmetic overflow",
        ),
    ];
    for (error, shown) in kinds {
        let hook = Arc::new(Fails(AtomicUsize::new(0), error));
        let err = run_job(
            &hash_graph(),
            &cluster(1, 1),
            &job_ctx().with_hook(hook.clone()),
        )
        .unwrap_err();
        assert!(err.to_string().contains(shown), "{err}");
        assert!(err.to_string().contains("a retry cannot fix"), "{err}");
        assert_eq!(hook.0.load(Ordering::SeqCst), 1, "{err}");
    }
}

#[test]
fn lost_executor_outputs_are_recomputed_elsewhere() {
    let cluster = cluster(2, 2);
    let victim: Arc<LocalExecutor> = cluster.executors()[0].clone();
    let hook = once_before_stage(1, move |_| {
        victim.kill();
        Ok(())
    });
    let result = run_job(&hash_graph(), &cluster, &job_ctx().with_hook(hook)).unwrap();
    assert_eq!(all_rows(&result), expected_rows());
    let m = &result.metrics;
    assert_eq!(m.executors_lost, vec![0]);
    let map = m.stage(0).unwrap();
    // Exactly the map partitions that had run on executor 0 ran again, on executor 1.
    let on_victim: BTreeSet<usize> = map
        .tasks
        .iter()
        .filter(|t| t.executor == 0 && t.status == TaskStatus::Succeeded)
        .map(|t| t.partition)
        .collect();
    let recomputed: BTreeSet<usize> = map.recomputed_partitions().into_iter().collect();
    assert_eq!(recomputed, on_victim);
    assert!(m
        .stage(1)
        .unwrap()
        .tasks
        .iter()
        .filter(|t| t.status == TaskStatus::Succeeded)
        .all(|t| t.executor == 1));
}

#[test]
fn all_executors_lost_fails_with_executor_lost() {
    let cluster = cluster(1, 1);
    let victim = cluster.executors()[0].clone();
    let hook = once_before_stage(1, move |_| {
        victim.kill();
        Ok(())
    });
    let err = run_job(&hash_graph(), &cluster, &job_ctx().with_hook(hook)).unwrap_err();
    assert!(
        matches!(err.root(), EmberError::ExecutorLost { executor: 0, .. }),
        "{err}"
    );
}

#[test]
fn job_files_are_removed_after_the_job() {
    let cluster = cluster(2, 1);
    run_job(&hash_graph(), &cluster, &job_ctx()).unwrap();
    for e in cluster.executors() {
        let leftovers = std::fs::read_dir(e.shuffle_dir()).unwrap().count();
        assert_eq!(leftovers, 0, "executor {} kept shuffle files", e.id());
    }
}
