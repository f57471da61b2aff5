//! The status tracker: jobs, stages and tasks as the event log tells them.
//!
//! It is built only from events — never from scheduler internals — so what EXPLAIN ANALYZE,
//! the web UI and tests see is exactly what the log says happened, and replaying a log file
//! gives the same picture as watching the application live.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use parking_lot::Mutex;

use super::event::{Event, EventKind, JobResult, RecomputeCause, TaskEndReason};
use super::log::EventListener;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Running,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageState {
    /// Known from `JobStart` but never submitted.
    Pending,
    Running,
    Succeeded,
    Failed,
}

/// One task attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    pub partition: usize,
    pub attempt: usize,
    pub stage_attempt: usize,
    pub executor: usize,
    pub speculative: bool,
    pub start_ms: u64,
    /// `None` while running.
    pub reason: Option<TaskEndReason>,
    pub duration_ms: Option<u64>,
    pub rows: usize,
    pub message: Option<String>,
}

/// One batch of recomputed partitions and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recomputation {
    pub partitions: Vec<usize>,
    pub cause: RecomputeCause,
    pub executor: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StageStatus {
    pub stage: usize,
    pub state: StageState,
    /// Stage attempts submitted (1 + resubmissions after fetch failures or lost output).
    pub attempts: usize,
    /// Every task attempt, in start order.
    pub tasks: Vec<TaskRecord>,
    /// Attempts started for a partition whose previous attempt had failed.
    pub retried_tasks: usize,
    pub recomputations: Vec<Recomputation>,
    /// Last failure message of a failed stage attempt.
    pub message: Option<String>,
    /// Milliseconds spent in finished stage attempts, submission to completion, summed. A
    /// stage resubmitted after its output was lost adds only the resubmitted attempt, not
    /// the time its children ran in between.
    pub wall_ms: u64,
    /// When the attempt now running was submitted.
    pub running_since_ms: Option<u64>,
}

impl StageStatus {
    fn new(stage: usize) -> Self {
        StageStatus {
            stage,
            state: StageState::Pending,
            attempts: 0,
            tasks: Vec::new(),
            retried_tasks: 0,
            recomputations: Vec::new(),
            message: None,
            wall_ms: 0,
            running_since_ms: None,
        }
    }

    /// Task attempts that ended with `reason`.
    pub fn count(&self, reason: TaskEndReason) -> usize {
        self.tasks
            .iter()
            .filter(|t| t.reason == Some(reason))
            .count()
    }

    /// Task attempts that failed (killed and commit-denied attempts are not failures: they
    /// lost a race or were stopped on purpose).
    pub fn failed_tasks(&self) -> usize {
        self.count(TaskEndReason::ExceptionFailure)
            + self.count(TaskEndReason::FetchFailed)
            + self.count(TaskEndReason::ExecutorLost)
    }

    pub fn speculative_tasks(&self) -> usize {
        self.tasks.iter().filter(|t| t.speculative).count()
    }

    pub fn running_tasks(&self) -> usize {
        self.tasks.iter().filter(|t| t.reason.is_none()).count()
    }

    /// Every partition recomputed, whatever the cause, ascending.
    pub fn recomputed_partitions(&self) -> Vec<usize> {
        let set: BTreeSet<usize> = self
            .recomputations
            .iter()
            .flat_map(|r| r.partitions.iter().copied())
            .collect();
        set.into_iter().collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct JobStatus {
    pub job: usize,
    pub state: JobState,
    pub description: Option<String>,
    pub start_ms: u64,
    pub duration_ms: Option<u64>,
    pub message: Option<String>,
    /// By stage id.
    pub stages: BTreeMap<usize, StageStatus>,
}

impl JobStatus {
    pub fn stage(&self, id: usize) -> Option<&StageStatus> {
        self.stages.get(&id)
    }

    pub fn task_attempts(&self) -> usize {
        self.stages.values().map(|s| s.tasks.len()).sum()
    }

    pub fn failed_tasks(&self) -> usize {
        self.stages.values().map(StageStatus::failed_tasks).sum()
    }
}

/// Per-stage attempts, failures and recomputed partitions: the EXPLAIN ANALYZE summary.
impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
        };
        write!(f, "Job {} {state}", self.job)?;
        if let Some(ms) = self.duration_ms {
            write!(f, " in {ms} ms")?;
        }
        writeln!(f)?;
        for s in self.stages.values() {
            write!(
                f,
                "  Stage {}: {} attempt{}, {} tasks ({} failed, {} retried",
                s.stage,
                s.attempts,
                if s.attempts == 1 { "" } else { "s" },
                s.tasks.len(),
                s.failed_tasks(),
                s.retried_tasks,
            )?;
            let killed = s.count(TaskEndReason::TaskKilled);
            if killed > 0 {
                write!(f, ", {killed} killed")?;
            }
            let speculative = s.speculative_tasks();
            if speculative > 0 {
                write!(f, ", {speculative} speculative")?;
            }
            writeln!(f, ")")?;
            for r in &s.recomputations {
                write!(
                    f,
                    "    recomputed partitions {:?} ({:?}",
                    r.partitions, r.cause
                )?;
                if let Some(e) = r.executor {
                    write!(f, ", executor {e}")?;
                }
                writeln!(f, ")")?;
            }
        }
        if let Some(message) = &self.message {
            writeln!(f, "  error: {message}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorStatus {
    pub executor: usize,
    pub cores: usize,
    pub alive: bool,
    pub removed_because: Option<String>,
}

/// What happened to checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointOutcome {
    Written,
    Reused,
    Rejected(String),
}

/// A snapshot of the application's status.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Status {
    pub app_id: Option<String>,
    pub jobs: BTreeMap<usize, JobStatus>,
    pub executors: BTreeMap<usize, ExecutorStatus>,
    /// (checkpoint path, outcome), in order.
    pub checkpoints: Vec<(String, CheckpointOutcome)>,
    /// (cache name, partition, executor) of every lost cached block.
    pub cache_blocks_lost: Vec<(String, usize, usize)>,
}

impl Status {
    /// Replays events (e.g. a log file read back).
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        let mut status = Status::default();
        for event in events {
            status.apply(event);
        }
        status
    }

    pub fn job(&self, job: usize) -> Option<&JobStatus> {
        self.jobs.get(&job)
    }

    /// Folds one event in. Events about a job or stage never announced (a log that starts
    /// mid-application) create it, so nothing is dropped.
    pub fn apply(&mut self, event: &Event) {
        let at = event.timestamp;
        match &event.kind {
            EventKind::ApplicationStart { app_id, .. } => self.app_id = Some(app_id.clone()),
            EventKind::ApplicationEnd { .. } => {}
            EventKind::JobStart {
                job,
                stages,
                description,
            } => {
                let status = self.job_mut(*job, at);
                status.description = description.clone();
                status.start_ms = at;
                for &s in stages {
                    status
                        .stages
                        .entry(s)
                        .or_insert_with(|| StageStatus::new(s));
                }
            }
            EventKind::JobEnd {
                job,
                result,
                duration_ms,
                message,
            } => {
                let status = self.job_mut(*job, at);
                status.state = match result {
                    JobResult::Succeeded => JobState::Succeeded,
                    JobResult::Failed => JobState::Failed,
                };
                status.duration_ms = Some(*duration_ms);
                status.message = message.clone();
            }
            EventKind::StageSubmitted { job, stage, .. } => {
                let s = self.stage_mut(*job, *stage, at);
                s.attempts += 1;
                s.state = StageState::Running;
                s.running_since_ms = Some(at);
            }
            EventKind::StageCompleted {
                job,
                stage,
                succeeded,
                message,
                ..
            } => {
                let s = self.stage_mut(*job, *stage, at);
                if let Some(since) = s.running_since_ms.take() {
                    s.wall_ms += at.saturating_sub(since);
                }
                s.state = if *succeeded {
                    StageState::Succeeded
                } else {
                    StageState::Failed
                };
                if message.is_some() {
                    s.message = message.clone();
                }
            }
            EventKind::TaskStart {
                job,
                stage,
                stage_attempt,
                partition,
                attempt,
                executor,
                speculative,
            } => {
                let s = self.stage_mut(*job, *stage, at);
                let previous = s
                    .tasks
                    .iter()
                    .rev()
                    .find(|t| t.partition == *partition && t.reason.is_some());
                let after_failure = previous.is_some_and(|t| {
                    !matches!(
                        t.reason,
                        Some(TaskEndReason::Success) | Some(TaskEndReason::TaskKilled)
                    )
                });
                if !*speculative && after_failure {
                    s.retried_tasks += 1;
                }
                s.tasks.push(TaskRecord {
                    partition: *partition,
                    attempt: *attempt,
                    stage_attempt: *stage_attempt,
                    executor: *executor,
                    speculative: *speculative,
                    start_ms: at,
                    reason: None,
                    duration_ms: None,
                    rows: 0,
                    message: None,
                });
            }
            EventKind::TaskEnd {
                job,
                stage,
                stage_attempt,
                partition,
                attempt,
                executor,
                speculative,
                reason,
                duration_ms,
                rows,
                message,
                ..
            } => {
                let s = self.stage_mut(*job, *stage, at);
                let open = s.tasks.iter().rposition(|t| {
                    t.reason.is_none()
                        && t.partition == *partition
                        && t.attempt == *attempt
                        && t.speculative == *speculative
                });
                let index = match open {
                    Some(i) => i,
                    // An end without a start (log began mid-task): record it anyway.
                    None => {
                        s.tasks.push(TaskRecord {
                            partition: *partition,
                            attempt: *attempt,
                            stage_attempt: *stage_attempt,
                            executor: *executor,
                            speculative: *speculative,
                            start_ms: at.saturating_sub(*duration_ms),
                            reason: None,
                            duration_ms: None,
                            rows: 0,
                            message: None,
                        });
                        s.tasks.len() - 1
                    }
                };
                let task = &mut s.tasks[index];
                task.reason = Some(*reason);
                task.duration_ms = Some(*duration_ms);
                task.rows = *rows;
                task.message = message.clone();
            }
            EventKind::PartitionsRecomputed {
                job,
                stage,
                partitions,
                cause,
                executor,
            } => {
                self.stage_mut(*job, *stage, at)
                    .recomputations
                    .push(Recomputation {
                        partitions: partitions.clone(),
                        cause: *cause,
                        executor: *executor,
                    });
            }
            EventKind::ExecutorAdded { executor, cores } => {
                self.executors.insert(
                    *executor,
                    ExecutorStatus {
                        executor: *executor,
                        cores: *cores,
                        alive: true,
                        removed_because: None,
                    },
                );
            }
            EventKind::ExecutorRemoved { executor, message } => {
                let e = self
                    .executors
                    .entry(*executor)
                    .or_insert_with(|| ExecutorStatus {
                        executor: *executor,
                        cores: 0,
                        alive: true,
                        removed_because: None,
                    });
                e.alive = false;
                e.removed_because = Some(message.clone());
            }
            EventKind::CheckpointWritten { path, .. } => self
                .checkpoints
                .push((path.clone(), CheckpointOutcome::Written)),
            EventKind::CheckpointReused { path, .. } => self
                .checkpoints
                .push((path.clone(), CheckpointOutcome::Reused)),
            EventKind::CheckpointRejected { path, message, .. } => self
                .checkpoints
                .push((path.clone(), CheckpointOutcome::Rejected(message.clone()))),
            EventKind::CacheBlockLost {
                cache,
                partition,
                executor,
                ..
            } => self
                .cache_blocks_lost
                .push((cache.clone(), *partition, *executor)),
        }
    }

    fn job_mut(&mut self, job: usize, at: u64) -> &mut JobStatus {
        self.jobs.entry(job).or_insert_with(|| JobStatus {
            job,
            state: JobState::Running,
            description: None,
            start_ms: at,
            duration_ms: None,
            message: None,
            stages: BTreeMap::new(),
        })
    }

    fn stage_mut(&mut self, job: usize, stage: usize, at: u64) -> &mut StageStatus {
        self.job_mut(job, at)
            .stages
            .entry(stage)
            .or_insert_with(|| StageStatus::new(stage))
    }
}

/// A live [`Status`], kept current as an [`EventListener`] on the event log.
#[derive(Debug, Default)]
pub struct StatusTracker {
    status: Mutex<Status>,
}

impl StatusTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of the current status.
    pub fn snapshot(&self) -> Status {
        self.status.lock().clone()
    }

    pub fn job(&self, job: usize) -> Option<JobStatus> {
        self.status.lock().jobs.get(&job).cloned()
    }

    /// Ids of jobs still running.
    pub fn active_jobs(&self) -> Vec<usize> {
        self.status
            .lock()
            .jobs
            .values()
            .filter(|j| j.state == JobState::Running)
            .map(|j| j.job)
            .collect()
    }
}

impl EventListener for StatusTracker {
    fn on_event(&self, event: &Event) {
        self.status.lock().apply(event);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::events::EventLog;

    fn start(stage: usize, partition: usize, attempt: usize, speculative: bool) -> EventKind {
        EventKind::TaskStart {
            job: 0,
            stage,
            stage_attempt: 0,
            partition,
            attempt,
            executor: partition % 2,
            speculative,
        }
    }

    fn end(
        stage: usize,
        partition: usize,
        attempt: usize,
        speculative: bool,
        reason: TaskEndReason,
    ) -> EventKind {
        EventKind::TaskEnd {
            job: 0,
            stage,
            stage_attempt: 0,
            partition,
            attempt,
            executor: partition % 2,
            speculative,
            reason,
            duration_ms: 10,
            rows: if reason == TaskEndReason::Success {
                5
            } else {
                0
            },
            message: None,
            map_stage: None,
            map_partition: None,
        }
    }

    /// Job 0: stage 0 (2 partitions) → stage 1 (2 partitions). Partition 1 of stage 0 fails
    /// once and is retried; a fetch failure in stage 1 makes stage 0 recompute partition 0;
    /// stage 1 partition 1 gets a speculative copy that wins.
    fn scenario() -> Vec<EventKind> {
        use TaskEndReason::*;
        vec![
            EventKind::ExecutorAdded {
                executor: 0,
                cores: 2,
            },
            EventKind::ExecutorAdded {
                executor: 1,
                cores: 2,
            },
            EventKind::JobStart {
                job: 0,
                stages: vec![0, 1],
                description: Some("q".into()),
            },
            EventKind::StageSubmitted {
                job: 0,
                stage: 0,
                stage_attempt: 0,
                partitions: vec![0, 1],
            },
            start(0, 0, 0, false),
            start(0, 1, 0, false),
            end(0, 0, 0, false, Success),
            end(0, 1, 0, false, ExceptionFailure),
            start(0, 1, 1, false),
            end(0, 1, 1, false, Success),
            EventKind::StageCompleted {
                job: 0,
                stage: 0,
                stage_attempt: 0,
                succeeded: true,
                message: None,
            },
            EventKind::StageSubmitted {
                job: 0,
                stage: 1,
                stage_attempt: 0,
                partitions: vec![0, 1],
            },
            start(1, 0, 0, false),
            start(1, 1, 0, false),
            end(1, 0, 0, false, FetchFailed),
            EventKind::PartitionsRecomputed {
                job: 0,
                stage: 0,
                partitions: vec![0],
                cause: RecomputeCause::FetchFailed,
                executor: None,
            },
            EventKind::StageSubmitted {
                job: 0,
                stage: 0,
                stage_attempt: 1,
                partitions: vec![0],
            },
            start(0, 0, 1, false),
            end(0, 0, 1, false, Success),
            EventKind::StageCompleted {
                job: 0,
                stage: 0,
                stage_attempt: 1,
                succeeded: true,
                message: None,
            },
            start(1, 0, 1, false),
            start(1, 1, 1, true),
            end(1, 1, 1, true, Success),
            end(1, 1, 0, false, TaskKilled),
            end(1, 0, 1, false, Success),
            EventKind::StageCompleted {
                job: 0,
                stage: 1,
                stage_attempt: 0,
                succeeded: true,
                message: None,
            },
            EventKind::ExecutorRemoved {
                executor: 1,
                message: "killed by fault plan".into(),
            },
            EventKind::JobEnd {
                job: 0,
                result: JobResult::Succeeded,
                duration_ms: 42,
                message: None,
            },
        ]
    }

    #[test]
    fn counts_attempts_failures_retries_and_recomputations() {
        let events: Vec<Event> = scenario()
            .into_iter()
            .enumerate()
            .map(|(i, kind)| Event {
                timestamp: i as u64,
                kind,
            })
            .collect();
        let status = Status::from_events(&events);
        let job = status.job(0).unwrap();
        assert_eq!(job.state, JobState::Succeeded);
        assert_eq!(job.task_attempts(), 8);
        assert_eq!(job.failed_tasks(), 2);

        let s0 = job.stage(0).unwrap();
        assert_eq!(s0.attempts, 2);
        assert_eq!(s0.tasks.len(), 4);
        assert_eq!(s0.failed_tasks(), 1);
        // The retry after the failure counts; the recomputation after a success does not.
        assert_eq!(s0.retried_tasks, 1);
        assert_eq!(s0.recomputed_partitions(), vec![0]);
        assert_eq!(s0.state, StageState::Succeeded);
        // Submitted at 3, completed at 10; resubmitted at 16, completed at 19. The time stage
        // 1 ran in between is not stage 0's.
        assert_eq!(s0.wall_ms, 7 + 3);
        assert_eq!(s0.running_since_ms, None);

        let s1 = job.stage(1).unwrap();
        assert_eq!(s1.attempts, 1);
        assert_eq!(s1.count(TaskEndReason::FetchFailed), 1);
        assert_eq!(s1.count(TaskEndReason::TaskKilled), 1);
        assert_eq!(s1.speculative_tasks(), 1);
        assert_eq!(s1.retried_tasks, 1);
        assert_eq!(s1.running_tasks(), 0);
        assert_eq!(s1.state, StageState::Succeeded);
        assert_eq!(s1.wall_ms, 25 - 11);
        // The killed original and the winning speculative copy are told apart.
        let p1: Vec<(bool, Option<TaskEndReason>)> = s1
            .tasks
            .iter()
            .filter(|t| t.partition == 1)
            .map(|t| (t.speculative, t.reason))
            .collect();
        assert_eq!(
            p1,
            vec![
                (false, Some(TaskEndReason::TaskKilled)),
                (true, Some(TaskEndReason::Success))
            ]
        );

        assert!(!status.executors[&1].alive);
        assert!(status.executors[&0].alive);

        let text = job.to_string();
        assert!(
            text.contains("Stage 0: 2 attempts, 4 tasks (1 failed, 1 retried)"),
            "{text}"
        );
        assert!(
            text.contains("recomputed partitions [0] (FetchFailed)"),
            "{text}"
        );
        assert!(text.contains("1 killed, 1 speculative"), "{text}");
    }

    #[test]
    fn live_tracker_matches_replay_of_the_log() {
        let log = EventLog::in_memory("app-status");
        let tracker = Arc::new(StatusTracker::new());
        log.post(scenario()[0].clone());
        // Added late: still sees the first event.
        log.add_listener(tracker.clone());
        for kind in scenario().into_iter().skip(1) {
            log.post(kind);
        }
        assert_eq!(tracker.snapshot(), Status::from_events(&log.events()));
        assert!(tracker.active_jobs().is_empty());
        assert_eq!(tracker.job(0).unwrap().stages.len(), 2);
    }
}
