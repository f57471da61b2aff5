//! The scheduler's view of one stage while a job runs.
//!
//! A stage is a state machine. Its state is re-derived after every event from two facts —
//! which of its partitions have output (the map output tracker, or the driver's result
//! buffer) and whether its parents are complete — so recovery needs no special paths: losing
//! an output simply makes a stage incomplete again.
//!
//! ```text
//!                      ┌────────── output lost (executor lost, or a child's fetch failed) ──┐
//!                      ▼                                                                    │
//!   Waiting ── all parents Available ──► Running ── every partition has output ──► Available
//!      ▲                                  │   │
//!      └── a parent's output was lost ────┘   └── a task failed max_task_failures times, or
//!                                                 max_stage_attempts fetch-failed attempts ──► Failed
//! ```
//!
//! * `Waiting`: not all parents are complete (or nothing downstream needs this stage now).
//! * `Running`: every missing partition is queued or running; only missing partitions are
//!   (re)submitted, so recovery recomputes exactly what was lost.
//! * `Available`: every partition's output is registered.
//! * `Failed`: the job fails with the typed error that caused it.
//!
//! Entering `Running` posts `StageSubmitted` for a stage attempt (a stage submitted again
//! after its output was lost gets a new attempt number); leaving it posts `StageCompleted`
//! (succeeded when it became `Available`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ember_planner::EmberError;

use crate::events::RecomputeCause;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageState {
    Waiting,
    Running,
    Available,
    Failed,
}

/// One failed attempt of a task, kept so a job that gives up can report every reason.
#[derive(Debug)]
pub(crate) struct AttemptFailure {
    pub attempt: usize,
    pub executor: usize,
    pub error: EmberError,
}

#[derive(Debug)]
pub(crate) struct StageRun {
    pub state: StageState,
    /// Current stage attempt; tasks launched in an older attempt that report a fetch failure
    /// do not start yet another attempt.
    pub attempt: usize,
    /// Stage attempts that ended in fetch failures.
    pub fetch_failed_attempts: usize,
    /// Partitions queued or running.
    pub in_flight: BTreeSet<usize>,
    /// Next task attempt number per partition (attempt numbers name shuffle files, so they
    /// never repeat within a job).
    pub next_task_attempt: Vec<usize>,
    /// The task's own failures per partition (not fetch failures or executor loss).
    pub failures: Vec<Vec<AttemptFailure>>,
    /// The stage attempt announced with `StageSubmitted` and not yet completed.
    pub active_attempt: Option<usize>,
    /// The last stage attempt announced; a stage submitted again after it completed (its
    /// output was lost) starts a new attempt.
    pub last_submitted: Option<usize>,
    /// Partitions whose output existed and was lost, with why (and the lost executor):
    /// when they are queued again, a `PartitionsRecomputed` event says so.
    pub lost: BTreeMap<usize, (RecomputeCause, Option<usize>)>,
    /// Durations of the successful task attempts (speculation compares against them).
    pub durations: Vec<Duration>,
    /// Partitions that already got a speculative copy.
    pub speculated: BTreeSet<usize>,
}

impl StageRun {
    pub fn new(partitions: usize) -> Self {
        StageRun {
            state: StageState::Waiting,
            attempt: 0,
            fetch_failed_attempts: 0,
            in_flight: BTreeSet::new(),
            next_task_attempt: vec![0; partitions],
            failures: (0..partitions).map(|_| Vec::new()).collect(),
            active_attempt: None,
            last_submitted: None,
            lost: BTreeMap::new(),
            durations: Vec::new(),
            speculated: BTreeSet::new(),
        }
    }

    /// Executors where `partition` failed before: a retry prefers the others.
    pub fn failed_on(&self, partition: usize) -> impl Iterator<Item = usize> + '_ {
        self.failures
            .get(partition)
            .into_iter()
            .flatten()
            .map(|f| f.executor)
    }

    /// One line per failed attempt of `partition`, for the job's error message.
    pub fn failure_report(&self, partition: usize) -> String {
        self.failures
            .get(partition)
            .into_iter()
            .flatten()
            .map(|f| {
                format!(
                    "attempt {} on executor {}: {}",
                    f.attempt, f.executor, f.error
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}
