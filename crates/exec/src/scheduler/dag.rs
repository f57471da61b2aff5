//! The DAG scheduler: runs a stage graph on a local cluster, recovering from task failures,
//! lost shuffle blocks and lost executors.
//!
//! It is a single-threaded event loop on the calling thread. Tasks run on the cluster's
//! pool and report back over a channel; all scheduling state lives here and is only touched
//! by the loop, so there are no locks around it:
//!
//! ```text
//! loop:
//!   expire silent executors    → heartbeat timeout: the cluster removes and replaces them
//!   notice dead executors      → forget their map outputs (stages become incomplete)
//!   advance stage states       → queue the missing partitions of every runnable stage
//!   result stage complete?     → done
//!   launch queued tasks on free slots (a retry prefers an executor it has not failed on)
//!   speculate                  → copy stragglers to another executor (if enabled)
//!   wait for a task event      → register output / retry / recompute parent / fail job
//!                                (and report stage progress to the fault injector)
//! ```

mod persist;

use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;

use ember_planner::stages::{StageGraph, StageOutput};
use ember_planner::{EmberError, Result};

use super::metrics::{JobMetrics, StageMetrics, TaskMetrics, TaskStatus};
use super::stage::{AttemptFailure, StageRun, StageState};
use super::task::{run_task, TaskInfo, TaskOutput, TaskSpec};
use super::{JobContext, JobResult};
use crate::events::{EventKind, JobResult as JobOutcome, RecomputeCause, TaskEndReason};
use crate::executor::{LocalCluster, LocalExecutor};
use crate::fault::FaultAction;
use crate::persist::PersistRegistry;
use crate::shuffle::tracker::{MapOutputTracker, MapStatus};
use ember_storage::checkpoint::CheckpointStore;

/// Why an output was lost, and the executor that took it along (for `ExecutorLost`).
type LossCause = (RecomputeCause, Option<usize>);

/// How often the loop wakes up without events to check executor liveness (heartbeats).
const LIVENESS_POLL: Duration = Duration::from_millis(50);

struct RunningTask {
    /// Index of the stage in the graph.
    stage: usize,
    partition: usize,
    attempt: usize,
    stage_attempt: usize,
    executor: usize,
    speculative: bool,
    started: Instant,
    /// The tracker's epoch when the task was launched: map outputs registered later are
    /// newer than anything the task could have looked up before it started.
    launch_epoch: u64,
    cancelled: Arc<AtomicBool>,
}

struct TaskEvent {
    uid: u64,
    result: Result<TaskOutput>,
    duration: Duration,
}

pub(crate) struct DagScheduler<'a> {
    graph: &'a StageGraph,
    cluster: &'a LocalCluster,
    ctx: &'a JobContext,
    job: usize,
    tracker: Arc<MapOutputTracker>,
    runs: Vec<StageRun>,
    /// Child stage indices of each stage index.
    children: Vec<Vec<usize>>,
    /// Parent stage indices of each stage index.
    parents: Vec<Vec<usize>>,
    /// Stage id → stage index.
    index_of: HashMap<usize, usize>,
    results: Vec<Option<Vec<RecordBatch>>>,
    queue: VecDeque<(usize, usize)>,
    running: HashMap<u64, RunningTask>,
    next_uid: u64,
    /// The cluster's executors by id (replacements appear as the cluster starts them).
    executors: Vec<Arc<LocalExecutor>>,
    /// Running tasks per executor.
    busy: Vec<usize>,
    /// Executors the scheduler has handled as lost.
    dead: Vec<bool>,
    tx: Sender<TaskEvent>,
    rx: Receiver<TaskEvent>,
    metrics: Vec<StageMetrics>,
    executors_lost: Vec<usize>,
    started: Instant,
    last_speculation: Instant,
    /// The session's persisted plans (shared with later jobs).
    registry: Arc<PersistRegistry>,
    /// `ember.checkpoint.dir`, opened when the job first needs it.
    checkpoints: Option<CheckpointStore>,
    /// When this job committed each reliable checkpoint: a read failure reported by a task
    /// that started before is about an older (rejected) copy and must not reject this one.
    committed_at: HashMap<u64, Instant>,
}

impl<'a> DagScheduler<'a> {
    pub fn new(
        graph: &'a StageGraph,
        cluster: &'a LocalCluster,
        ctx: &'a JobContext,
    ) -> Result<Self> {
        let (parents, children) = validate(graph)?;
        let (tx, rx) = channel();
        let result_partitions = graph.stages.last().map_or(0, |s| s.partitions);
        let mut scheduler = DagScheduler {
            graph,
            cluster,
            ctx,
            job: cluster.next_job_id(),
            tracker: Arc::new(MapOutputTracker::new()),
            runs: graph
                .stages
                .iter()
                .map(|s| StageRun::new(s.partitions))
                .collect(),
            children,
            parents,
            index_of: graph
                .stages
                .iter()
                .enumerate()
                .map(|(i, s)| (s.id, i))
                .collect(),
            results: (0..result_partitions).map(|_| None).collect(),
            queue: VecDeque::new(),
            running: HashMap::new(),
            next_uid: 0,
            executors: Vec::new(),
            busy: Vec::new(),
            dead: Vec::new(),
            tx,
            rx,
            metrics: graph
                .stages
                .iter()
                .map(|s| StageMetrics {
                    stage: s.id,
                    partitions: s.partitions,
                    attempts: 1,
                    tasks: Vec::new(),
                })
                .collect(),
            executors_lost: Vec::new(),
            started: Instant::now(),
            last_speculation: Instant::now(),
            registry: cluster.persisted().clone(),
            checkpoints: None,
            committed_at: HashMap::new(),
        };
        scheduler.sync_executors();
        Ok(scheduler)
    }

    /// Runs the job to completion or failure. Either way every task it started has ended
    /// and the job's shuffle files are deleted when this returns.
    pub fn run(mut self) -> Result<JobResult> {
        self.ctx.events.post(EventKind::JobStart {
            job: self.job,
            stages: self.graph.stages.iter().map(|s| s.id).collect(),
            description: None,
        });
        let outcome = self.prepare_persisted().and_then(|()| self.drive());
        if let Err(error) = &outcome {
            let message = error.to_string();
            for i in 0..self.runs.len() {
                if let Some(attempt) = self.runs[i].active_attempt.take() {
                    self.post_stage_completed(i, attempt, false, Some(message.clone()));
                }
            }
        }
        self.cancel_and_drain();
        self.release_checkpoint_copies();
        for executor in self.cluster.executors() {
            executor.remove_job_files(self.job);
        }
        let metrics = self.job_metrics();
        self.ctx.events.post(EventKind::JobEnd {
            job: self.job,
            result: if outcome.is_ok() {
                JobOutcome::Succeeded
            } else {
                JobOutcome::Failed
            },
            duration_ms: metrics.duration.as_millis() as u64,
            message: outcome.as_ref().err().map(|e| e.to_string()),
        });
        outcome.map(|partitions| JobResult {
            partitions,
            metrics,
        })
    }

    fn drive(&mut self) -> Result<Vec<Vec<RecordBatch>>> {
        let poll = match &self.ctx.config.speculation {
            Some(s) => LIVENESS_POLL.min(s.interval),
            None => LIVENESS_POLL,
        };
        loop {
            self.cluster.expire_silent_executors();
            self.sync_executors();
            self.notice_dead_executors();
            self.advance()?;
            // Every result, and the checkpoint the result stage tees committed.
            if self.missing(self.graph.stages.len() - 1).is_empty() {
                return Ok(self
                    .results
                    .iter_mut()
                    .map(|r| r.take().unwrap_or_default())
                    .collect());
            }
            self.launch();
            self.speculate();
            if self.running.is_empty() {
                return Err(self.stalled());
            }
            match self.rx.recv_timeout(poll) {
                Ok(event) => self.handle(event)?,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(EmberError::Internal(
                        "task event channel closed while the scheduler holds a sender".into(),
                    ))
                }
            }
        }
    }

    /// Picks up executors the cluster started since the last look (replacements).
    fn sync_executors(&mut self) {
        if self.executors.len() == self.cluster.executor_count() {
            return;
        }
        let known = self.dead.len();
        self.executors = self.cluster.executors();
        let n = self.executors.len();
        self.busy.resize(n, 0);
        // Executors already gone when this job first sees them (lost in an earlier job) are
        // not this job's losses.
        for e in known..n {
            self.dead.push(!self.executors[e].is_alive());
        }
    }

    /// Why nothing can run although the job is not done.
    fn stalled(&self) -> EmberError {
        if self.alive_executors() == 0 {
            return EmberError::ExecutorLost {
                executor: self.executors_lost.last().copied().unwrap_or(0),
                message: format!(
                    "all {} executors are lost; job {} cannot continue",
                    self.dead.len(),
                    self.job
                ),
            };
        }
        let states: Vec<String> = self
            .graph
            .stages
            .iter()
            .zip(&self.runs)
            .map(|(s, r)| format!("stage {}: {:?}", s.id, r.state))
            .collect();
        EmberError::Internal(format!(
            "job {} stalled with no task to run ({})",
            self.job,
            states.join(", ")
        ))
    }

    fn alive_executors(&self) -> usize {
        self.dead.iter().filter(|d| !**d).count()
    }

    /// Partitions of stage `i` without output (or, for a stage that tees a checkpoint,
    /// whose checkpoint file is not written).
    fn missing(&self, i: usize) -> Vec<usize> {
        let stage = &self.graph.stages[i];
        let mut missing = match stage.output {
            StageOutput::Shuffle(_) => self.tracker.missing_partitions(stage.id, stage.partitions),
            StageOutput::Persist { id, .. } => self.registry.missing(id, stage.partitions),
            StageOutput::Result => (0..self.results.len())
                .filter(|p| self.results[*p].is_none())
                .collect(),
        };
        if let Some(tee) = &stage.tee {
            let unwritten = self.registry.missing(tee.id, stage.partitions);
            if !unwritten.is_empty() {
                missing.extend(unwritten);
                missing.sort_unstable();
                missing.dedup();
            }
        }
        missing
    }

    fn is_missing(&self, i: usize, partition: usize) -> bool {
        let stage = &self.graph.stages[i];
        let output_missing = match stage.output {
            StageOutput::Shuffle(_) => self.tracker.get(stage.id, partition).is_none(),
            StageOutput::Persist { id, .. } => !self.registry.is_available(id, partition),
            StageOutput::Result => self.results.get(partition).is_some_and(Option::is_none),
        };
        output_missing
            || stage
                .tee
                .as_ref()
                .is_some_and(|tee| !self.registry.is_available(tee.id, partition))
    }

    /// Whether stage `i` tees a checkpoint that is committed: its tasks read that and
    /// nothing from its parents.
    fn reads_own_checkpoint(&self, i: usize) -> bool {
        self.graph.stages[i]
            .tee
            .as_ref()
            .is_some_and(|tee| self.registry.committed(tee.id).is_some())
    }

    /// Re-derives every stage's state (see the diagram in `stage.rs`), posts stage
    /// submissions and completions, and queues the missing partitions of stages that can
    /// run (posting `PartitionsRecomputed` for those whose output had been lost).
    fn advance(&mut self) -> Result<()> {
        self.commit_ready_checkpoints()?;
        let n = self.graph.stages.len();
        let missing: Vec<Vec<usize>> = (0..n).map(|i| self.missing(i)).collect();
        // A stage is needed if it is incomplete and the result stage depends on it through
        // incomplete stages; completed children never need their parents again.
        let cut: Vec<bool> = (0..n).map(|i| self.reads_own_checkpoint(i)).collect();
        let mut needed = vec![false; n];
        for i in (0..n).rev() {
            needed[i] = !missing[i].is_empty()
                && (i == n - 1 || self.children[i].iter().any(|&c| needed[c] && !cut[c]));
        }
        let mut submitted = Vec::new();
        for i in 0..n {
            if self.runs[i].state == StageState::Failed {
                continue;
            }
            let state = if missing[i].is_empty() {
                StageState::Available
            } else if needed[i]
                && (cut[i] || self.parents[i].iter().all(|&p| missing[p].is_empty()))
            {
                StageState::Running
            } else {
                StageState::Waiting
            };
            self.runs[i].state = state;
            match state {
                StageState::Running => {
                    if self.submit(i, &missing[i]) {
                        submitted.push(i);
                    }
                    // Grouped by cause, in order of first appearance.
                    let mut recomputed: Vec<(LossCause, Vec<usize>)> = Vec::new();
                    let run = &mut self.runs[i];
                    for &p in &missing[i] {
                        if run.in_flight.insert(p) {
                            self.queue.push_back((i, p));
                            if let Some(cause) = run.lost.remove(&p) {
                                match recomputed.iter_mut().find(|(c, _)| *c == cause) {
                                    Some((_, partitions)) => partitions.push(p),
                                    None => recomputed.push((cause, vec![p])),
                                }
                            }
                        }
                    }
                    for ((cause, executor), partitions) in recomputed {
                        self.ctx.events.post(EventKind::PartitionsRecomputed {
                            job: self.job,
                            stage: self.graph.stages[i].id,
                            partitions,
                            cause,
                            executor,
                        });
                    }
                }
                StageState::Available => {
                    if let Some(attempt) = self.runs[i].active_attempt.take() {
                        self.post_stage_completed(i, attempt, true, None);
                    }
                }
                StageState::Waiting => {
                    if let Some(attempt) = self.runs[i].active_attempt.take() {
                        let why = if needed[i] {
                            "a parent stage's output was lost"
                        } else {
                            "its output is no longer needed"
                        }
                        .to_string();
                        self.post_stage_completed(i, attempt, false, Some(why));
                    }
                }
                StageState::Failed => {}
            }
        }
        // Executor faults planned at 0% fire as their stage starts.
        for i in submitted {
            self.report_progress(i)?;
        }
        Ok(())
    }

    /// Announces a stage attempt for running stage `i` unless one is active. Returns
    /// whether it did.
    fn submit(&mut self, i: usize, missing: &[usize]) -> bool {
        let run = &mut self.runs[i];
        if let Some(active) = run.active_attempt {
            if active == run.attempt {
                return false;
            }
            // A fetch failure moved the stage to a new attempt while it kept running.
            run.active_attempt = None;
            let why = "tasks of this attempt hit fetch failures".to_string();
            self.post_stage_completed(i, active, false, Some(why));
        }
        let run = &mut self.runs[i];
        if run.last_submitted == Some(run.attempt) {
            // Submitted again after completing or waiting: lost output is recomputed in a
            // new attempt.
            run.attempt += 1;
        }
        run.last_submitted = Some(run.attempt);
        run.active_attempt = Some(run.attempt);
        self.metrics[i].attempts = run.attempt + 1;
        self.ctx.events.post(EventKind::StageSubmitted {
            job: self.job,
            stage: self.graph.stages[i].id,
            stage_attempt: run.attempt,
            partitions: missing.to_vec(),
        });
        true
    }

    fn post_stage_completed(
        &self,
        i: usize,
        attempt: usize,
        succeeded: bool,
        message: Option<String>,
    ) {
        self.ctx.events.post(EventKind::StageCompleted {
            job: self.job,
            stage: self.graph.stages[i].id,
            stage_attempt: attempt,
            succeeded,
            message,
        });
    }

    /// Tells the fault injector how far stage `i` is and applies the executor faults due.
    fn report_progress(&mut self, i: usize) -> Result<()> {
        let Some(faults) = &self.ctx.faults else {
            return Ok(());
        };
        let stage = &self.graph.stages[i];
        let finished = stage.partitions - self.missing(i).len();
        for action in faults.on_stage_progress(stage.id, finished, stage.partitions) {
            match action {
                FaultAction::KillExecutor(e) => self.cluster.kill_executor(e)?,
                FaultAction::HangExecutor(e) => self.cluster.hang_executor(e)?,
                // Task-level actions are applied by the task hook.
                FaultAction::Fail(_) | FaultAction::Delay(_) | FaultAction::Hang => {}
            }
        }
        Ok(())
    }

    /// Starts queued tasks on free slots. Tasks of stages that stopped running (a parent
    /// lost output meanwhile) or whose output appeared are dropped from the queue;
    /// `advance` queues them again when they can run.
    fn launch(&mut self) {
        let mut waiting = VecDeque::new();
        while let Some((i, p)) = self.queue.pop_front() {
            if self.runs[i].state != StageState::Running || !self.is_missing(i, p) {
                self.runs[i].in_flight.remove(&p);
                continue;
            }
            match self.pick_executor(i, p, &[]) {
                Some(e) => self.spawn(i, p, e, false),
                None => waiting.push_back((i, p)),
            }
        }
        self.queue = waiting;
    }

    /// A live executor with a free slot, never one in `exclude`, preferring ones this task
    /// has not failed on and then the least busy. Falls back to an executor it failed on
    /// only when every live executor is one.
    fn pick_executor(&self, i: usize, p: usize, exclude: &[usize]) -> Option<usize> {
        let failed_on: Vec<usize> = self.runs[i].failed_on(p).collect();
        let n = self.executors.len();
        let free = |e: usize| {
            !self.dead[e] && !exclude.contains(&e) && self.busy[e] < self.executors[e].cores()
        };
        let least_busy = |candidates: &mut dyn Iterator<Item = usize>| {
            candidates.min_by_key(|&e| (self.busy[e] * 1024 / self.executors[e].cores(), e))
        };
        let fresh = least_busy(&mut (0..n).filter(|&e| free(e) && !failed_on.contains(&e)));
        if fresh.is_some() {
            return fresh;
        }
        let all_alive_failed = (0..n)
            .filter(|&e| !self.dead[e])
            .all(|e| failed_on.contains(&e));
        if all_alive_failed {
            least_busy(&mut (0..n).filter(|&e| free(e)))
        } else {
            None
        }
    }

    fn spawn(&mut self, i: usize, partition: usize, executor: usize, speculative: bool) {
        let stage = &self.graph.stages[i];
        let run = &mut self.runs[i];
        let attempt = run.next_task_attempt[partition];
        run.next_task_attempt[partition] += 1;
        let stage_attempt = run.attempt;
        let cancelled = Arc::new(AtomicBool::new(false));
        let spec = TaskSpec {
            info: TaskInfo {
                job: self.job,
                stage: stage.id,
                partition,
                attempt,
                executor,
            },
            plan: stage.plan.clone(),
            output: stage.output.clone(),
            tee: stage.tee.clone(),
            executor: self.executors[executor].clone(),
            functions: self.ctx.functions.clone(),
            tracker: self.tracker.clone(),
            batch_size: self.ctx.config.batch_size,
            hook: self.ctx.hook.clone(),
            faults: self.ctx.faults.clone(),
            cancelled: cancelled.clone(),
            persisted: self.registry.clone(),
            executors: self.executors.clone(),
        };
        let uid = self.next_uid;
        self.next_uid += 1;
        self.running.insert(
            uid,
            RunningTask {
                stage: i,
                partition,
                attempt,
                stage_attempt,
                executor,
                speculative,
                started: Instant::now(),
                launch_epoch: self.tracker.epoch(),
                cancelled,
            },
        );
        self.busy[executor] += 1;
        self.ctx.events.post(EventKind::TaskStart {
            job: self.job,
            stage: stage.id,
            stage_attempt,
            partition,
            attempt,
            executor,
            speculative,
        });
        let tx = self.tx.clone();
        self.cluster.pool().spawn(move || {
            let start = Instant::now();
            let result =
                catch_unwind(AssertUnwindSafe(|| run_task(&spec))).unwrap_or_else(|panic| {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".to_string());
                    Err(EmberError::Internal(format!(
                        "task {}.{} (attempt {}) panicked: {what}",
                        spec.info.stage, spec.info.partition, spec.info.attempt
                    )))
                });
            // The receiver only goes away after every running task has reported.
            let _ = tx.send(TaskEvent {
                uid,
                result,
                duration: start.elapsed(),
            });
        });
    }

    /// Records how a task attempt ended: in the metrics and as a `TaskEnd` event.
    fn record(
        &mut self,
        task: &RunningTask,
        duration: Duration,
        rows: usize,
        bytes: u64,
        status: TaskStatus,
        message: Option<String>,
    ) {
        let (reason, map_stage, map_partition) = match &status {
            TaskStatus::Succeeded => (TaskEndReason::Success, None, None),
            TaskStatus::Failed(_) => (TaskEndReason::ExceptionFailure, None, None),
            TaskStatus::FetchFailed {
                map_stage,
                map_partition,
            } => (
                TaskEndReason::FetchFailed,
                Some(*map_stage),
                Some(*map_partition),
            ),
            TaskStatus::ExecutorLost => (TaskEndReason::ExecutorLost, None, None),
            TaskStatus::Cancelled => (TaskEndReason::TaskKilled, None, None),
            TaskStatus::CommitDenied => (TaskEndReason::CommitDenied, None, None),
        };
        self.ctx.events.post(EventKind::TaskEnd {
            job: self.job,
            stage: self.graph.stages[task.stage].id,
            stage_attempt: task.stage_attempt,
            partition: task.partition,
            attempt: task.attempt,
            executor: task.executor,
            speculative: task.speculative,
            reason,
            duration_ms: duration.as_millis() as u64,
            rows,
            message,
            map_stage,
            map_partition,
        });
        self.metrics[task.stage].tasks.push(TaskMetrics {
            partition: task.partition,
            attempt: task.attempt,
            stage_attempt: task.stage_attempt,
            executor: task.executor,
            speculative: task.speculative,
            duration,
            rows,
            bytes,
            status,
        });
    }

    fn handle(&mut self, event: TaskEvent) -> Result<()> {
        let task = self
            .running
            .remove(&event.uid)
            .ok_or_else(|| EmberError::Internal(format!("event for unknown task {}", event.uid)))?;
        self.busy[task.executor] -= 1;
        // Another attempt of the same partition (a speculative copy) keeps it in flight.
        if !self
            .running
            .values()
            .any(|t| t.stage == task.stage && t.partition == task.partition)
        {
            self.runs[task.stage].in_flight.remove(&task.partition);
        }
        let executor_lost = self.dead[task.executor] || !self.executors[task.executor].is_alive();
        let duration = event.duration;
        match event.result {
            Ok(output) if executor_lost && output.held_by_executor() => {
                let why = "output discarded: its executor was lost".to_string();
                self.record(&task, duration, 0, 0, TaskStatus::ExecutorLost, Some(why));
            }
            Ok(_) if !self.is_missing(task.stage, task.partition) => {
                let why = "another attempt of this partition already delivered its output";
                let status = TaskStatus::CommitDenied;
                self.record(&task, duration, 0, 0, status, Some(why.to_string()));
            }
            Ok(output) => {
                let (rows, bytes) = (output.rows(), output.bytes());
                self.deliver(&task, output)?;
                self.runs[task.stage].durations.push(duration);
                self.record(&task, duration, rows, bytes, TaskStatus::Succeeded, None);
                // The first attempt to finish wins; kill the others of the partition.
                for other in self.running.values() {
                    if other.stage == task.stage && other.partition == task.partition {
                        other.cancelled.store(true, Ordering::SeqCst);
                    }
                }
                self.report_progress(task.stage)?;
            }
            Err(error) => {
                let message = Some(error.to_string());
                match error.root() {
                    EmberError::FetchFailed {
                        stage,
                        map_partition,
                        ..
                    } => {
                        let (map_stage, map_partition) = (*stage, *map_partition);
                        let status = TaskStatus::FetchFailed {
                            map_stage,
                            map_partition,
                        };
                        self.record(&task, duration, 0, 0, status, message);
                        self.on_fetch_failed(&task, map_stage, map_partition, error)?;
                    }
                    EmberError::ExecutorLost { executor, .. } => {
                        let executor = *executor;
                        self.record(&task, duration, 0, 0, TaskStatus::ExecutorLost, message);
                        self.on_executor_lost(executor, "a task reported its executor lost");
                    }
                    _ if executor_lost => {
                        self.record(&task, duration, 0, 0, TaskStatus::ExecutorLost, message)
                    }
                    _ if task.cancelled.load(Ordering::SeqCst) => {
                        self.record(&task, duration, 0, 0, TaskStatus::Cancelled, message)
                    }
                    _ => {
                        let status = TaskStatus::Failed(error.to_string());
                        self.record(&task, duration, 0, 0, status, message);
                        self.on_task_failed(&task, error)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Registers what a successful task produced.
    fn deliver(&mut self, task: &RunningTask, output: TaskOutput) -> Result<()> {
        match output {
            TaskOutput::Map(out) => self.tracker.register(
                self.graph.stages[task.stage].id,
                task.partition,
                MapStatus {
                    executor: task.executor,
                    attempt: task.attempt,
                    blocks: out.blocks,
                },
            ),
            TaskOutput::Persisted { kept, .. } => self.on_persisted(task, kept)?,
            TaskOutput::Result(batches) => {
                if let Some(slot) = self.results.get_mut(task.partition) {
                    slot.get_or_insert(batches);
                }
            }
            TaskOutput::Teed { output, kept } => {
                self.on_persisted(task, kept)?;
                self.deliver(task, *output)?;
            }
        }
        Ok(())
    }

    /// A reducer could not read a block: forget that map output (so `advance` recomputes
    /// exactly that partition before re-running the reducer) and count a failed attempt of
    /// the reducing stage. A failure about an output that was replaced after the reducer
    /// started is stale and changes nothing.
    fn on_fetch_failed(
        &mut self,
        task: &RunningTask,
        map_stage: usize,
        map_partition: usize,
        error: EmberError,
    ) -> Result<()> {
        let stage_id = self.graph.stages[task.stage].id;
        let own_checkpoint = map_stage == stage_id && self.graph.stages[task.stage].tee.is_some();
        let parent = self.parents[task.stage]
            .iter()
            .copied()
            .find(|&p| self.graph.stages[p].id == map_stage)
            .or(own_checkpoint.then_some(task.stage));
        let Some(parent) = parent else {
            self.runs[task.stage].state = StageState::Failed;
            return Err(error.context(format!(
                "internal error: stage {stage_id} reported a fetch failure for stage \
                 {map_stage}, which is not one of its parents"
            )));
        };
        if self.persist_of(parent).is_some() {
            self.on_persisted_unreadable(task, parent, map_partition, &error.to_string())?;
        } else if self
            .tracker
            .registered_at(map_stage, map_partition)
            .is_some_and(|at| at >= task.launch_epoch)
        {
            // The output was recomputed while this task ran; the failure may be about the
            // old copy. Keep the fresh one: the reducer simply runs again (if it fails again,
            // that attempt started after the registration and is believed).
            return Ok(());
        } else if self.tracker.unregister(map_stage, map_partition) {
            self.runs[parent]
                .lost
                .insert(map_partition, (RecomputeCause::FetchFailed, None));
        }
        let run = &mut self.runs[task.stage];
        // Reducers of the same stage attempt failing on the same loss count once.
        if task.stage_attempt == run.attempt {
            run.attempt += 1;
            run.fetch_failed_attempts += 1;
            self.metrics[task.stage].attempts = run.attempt + 1;
            let max = self.ctx.config.max_stage_attempts;
            if run.fetch_failed_attempts >= max {
                run.state = StageState::Failed;
                return Err(error.context(format!(
                    "stage {stage_id} failed: {max} attempts hit fetch failures \
                     (ember.stage.maxConsecutiveAttempts = {max})"
                )));
            }
        }
        Ok(())
    }

    /// A task failed on its own: retry it (elsewhere if possible), or fail the job with the
    /// reason of every attempt once it has failed `max_task_failures` times. Errors that a
    /// retry cannot fix ([`EmberError::is_deterministic`]) fail the job at once.
    fn on_task_failed(&mut self, task: &RunningTask, error: EmberError) -> Result<()> {
        let stage_id = self.graph.stages[task.stage].id;
        let deterministic = error.is_deterministic();
        let run = &mut self.runs[task.stage];
        let failures = &mut run.failures[task.partition];
        failures.push(AttemptFailure {
            attempt: task.attempt,
            executor: task.executor,
            error,
        });
        let max = self.ctx.config.max_task_failures;
        if !deterministic && failures.len() < max {
            return Ok(());
        }
        let count = failures.len();
        run.state = StageState::Failed;
        let last = run.failures[task.partition]
            .pop()
            .ok_or_else(|| EmberError::Internal("failure list emptied".into()))?;
        // Every attempt's reason, each once: the earlier ones listed, the last one as the
        // error itself (its kind is the job's error kind).
        let earlier = run.failure_report(task.partition);
        let earlier = if earlier.is_empty() {
            String::new()
        } else {
            format!("; earlier attempts: {earlier}")
        };
        let why = if deterministic {
            "failed with an error a retry cannot fix".to_string()
        } else {
            format!("failed {count} times (ember.task.maxFailures = {max})")
        };
        Err(last.error.context(format!(
            "job {} aborted: task {stage_id}.{} {why}{earlier}; attempt {} on executor {}",
            self.job, task.partition, last.attempt, last.executor
        )))
    }

    /// Handles every executor that died since the last look, once.
    fn notice_dead_executors(&mut self) {
        for e in 0..self.dead.len() {
            if !self.dead[e] && !self.executors[e].is_alive() {
                self.on_executor_lost(e, "executor exited");
            }
        }
    }

    /// Forgets everything the executor held and stops its tasks; `advance` then resubmits
    /// them and recomputes only the lost map partitions that are still needed. The cluster
    /// removes the executor (if nobody has yet) and starts its replacement.
    fn on_executor_lost(&mut self, executor: usize, why: &str) {
        if self.dead.get(executor).copied().unwrap_or(true) {
            return;
        }
        self.dead[executor] = true;
        self.executors_lost.push(executor);
        self.cluster.remove_executor(executor, why);
        if let Some(faults) = &self.ctx.faults {
            // Releases tasks the injector holds on a hung executor.
            faults.executor_lost(executor);
        }
        self.on_executor_blocks_lost(executor);
        for (stage_id, partition) in self.tracker.unregister_executor(executor) {
            if let Some(&i) = self.index_of.get(&stage_id) {
                self.runs[i]
                    .lost
                    .insert(partition, (RecomputeCause::ExecutorLost, Some(executor)));
            }
        }
        for task in self.running.values().filter(|t| t.executor == executor) {
            task.cancelled.store(true, Ordering::SeqCst);
        }
    }

    /// Speculation: once `quantile` of a running stage's tasks have finished, a task that
    /// has run longer than `multiplier` × their median duration (and `min_task_runtime`)
    /// gets one copy on another executor.
    fn speculate(&mut self) {
        let Some(config) = self.ctx.config.speculation.clone() else {
            return;
        };
        if self.last_speculation.elapsed() < config.interval {
            return;
        }
        self.last_speculation = Instant::now();
        let mut copies = Vec::new();
        for (i, run) in self.runs.iter().enumerate() {
            if run.state != StageState::Running || run.durations.is_empty() {
                continue;
            }
            let total = self.graph.stages[i].partitions;
            let finished = total - self.missing(i).len();
            let min_finished = ((config.quantile * total as f64).floor() as usize).max(1);
            if finished < min_finished {
                continue;
            }
            let mut durations = run.durations.clone();
            durations.sort();
            let median = durations[durations.len() / 2];
            let threshold = median
                .mul_f64(config.multiplier)
                .max(config.min_task_runtime);
            for task in self.running.values() {
                if task.stage == i
                    && !task.speculative
                    && !run.speculated.contains(&task.partition)
                    && task.started.elapsed() > threshold
                    && self.is_missing(i, task.partition)
                {
                    copies.push((i, task.partition, task.executor));
                }
            }
        }
        copies.sort();
        copies.dedup_by_key(|c| (c.0, c.1));
        for (i, p, original) in copies {
            if let Some(e) = self.pick_executor(i, p, &[original]) {
                self.runs[i].speculated.insert(p);
                self.spawn(i, p, e, true);
            }
        }
    }

    /// Stops every running task and waits until all have reported, so no task writes into
    /// the job's shuffle dirs after they are removed.
    fn cancel_and_drain(&mut self) {
        for task in self.running.values() {
            task.cancelled.store(true, Ordering::SeqCst);
        }
        while !self.running.is_empty() {
            match self.rx.recv() {
                Ok(event) => {
                    if let Some(task) = self.running.remove(&event.uid) {
                        self.busy[task.executor] -= 1;
                        // A task that finished anyway still did the work; record it.
                        let (status, message) = match event.result {
                            Ok(_) => (
                                TaskStatus::CommitDenied,
                                "finished after the job had ended".to_string(),
                            ),
                            Err(e) => (TaskStatus::Cancelled, e.to_string()),
                        };
                        self.record(&task, event.duration, 0, 0, status, Some(message));
                    }
                }
                // Cannot happen while we hold a sender; stop waiting rather than spin.
                Err(_) => break,
            }
        }
    }

    fn job_metrics(&self) -> JobMetrics {
        JobMetrics {
            job: self.job,
            duration: self.started.elapsed(),
            stages: self.metrics.clone(),
            executors_lost: self.executors_lost.clone(),
        }
    }
}

/// Checks the graph's shape and returns each stage's parent and child indices.
#[allow(clippy::type_complexity)]
fn validate(graph: &StageGraph) -> Result<(Vec<Vec<usize>>, Vec<Vec<usize>>)> {
    let n = graph.stages.len();
    if n == 0 {
        return Err(EmberError::Internal("stage graph has no stages".into()));
    }
    let mut index: HashMap<usize, usize> = HashMap::new();
    let mut parents = vec![Vec::new(); n];
    let mut children = vec![Vec::new(); n];
    for (i, stage) in graph.stages.iter().enumerate() {
        let is_last = i == n - 1;
        match (&stage.output, is_last) {
            (StageOutput::Result, true)
            | (StageOutput::Shuffle(_), false)
            | (StageOutput::Persist { .. }, false) => {}
            (StageOutput::Result, false) => {
                return Err(EmberError::Internal(format!(
                    "stage {} is a result stage but not the last stage",
                    stage.id
                )))
            }
            (StageOutput::Shuffle(_) | StageOutput::Persist { .. }, true) => {
                return Err(EmberError::Internal(format!(
                    "the last stage {} keeps its output instead of returning the result",
                    stage.id
                )))
            }
        }
        for parent in &stage.parents {
            let p = *index.get(parent).ok_or_else(|| {
                EmberError::Internal(format!(
                    "stage {} reads stage {parent}, which does not come before it",
                    stage.id
                ))
            })?;
            parents[i].push(p);
            children[p].push(i);
        }
        if index.insert(stage.id, i).is_some() {
            return Err(EmberError::Internal(format!(
                "duplicate stage id {}",
                stage.id
            )));
        }
    }
    Ok((parents, children))
}
