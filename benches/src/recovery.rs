//! What the recovery benchmarks read back from a run: which stage is the query's largest
//! (so the fault lands where it costs most, found from a fault-free run rather than
//! hard-coded), which executors are alive (ids are never reused, so a fault plan must name
//! a live one), and how long a hung executor went unnoticed — all from the job metrics and
//! the application's event log, the same records a user would look at.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ember_exec::events::{Event, EventKind, TaskEndReason};
use ember_exec::scheduler::JobMetrics;
use ember_planner::{EmberError, Result};

/// The id of the stage whose tasks took the most time in total (ties: more partitions, then
/// the later stage); `None` for a job without stages.
pub fn largest_stage(metrics: &JobMetrics) -> Option<usize> {
    metrics
        .stages
        .iter()
        .max_by_key(|s| (s.task_time(), s.partitions, s.stage))
        .map(|s| s.stage)
}

/// The event log file (`<app id>.jsonl`) in `dir`; the benches run one application per
/// log dir, so there must be exactly one.
pub fn event_log_file(dir: &Path) -> Result<PathBuf> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| EmberError::io(dir.display().to_string(), e))?;
    let mut logs = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| EmberError::io(dir.display().to_string(), e))?
            .path();
        if path.extension().is_some_and(|x| x == "jsonl") {
            logs.push(path);
        }
    }
    match logs.len() {
        1 => Ok(logs.remove(0)),
        n => Err(EmberError::Execution(format!(
            "expected one event log (*.jsonl) in {}, found {n}",
            dir.display()
        ))),
    }
}

/// Every event of the log at `path`, in posting order.
pub fn read_events(path: &Path) -> Result<Vec<Event>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| EmberError::io(path.display().to_string(), e))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| {
                EmberError::Execution(format!(
                    "{}:{}: not an Ember event: {e}",
                    path.display(),
                    i + 1
                ))
            })
        })
        .collect()
}

/// Executors added and not removed, in id order.
pub fn live_executors(events: &[Event]) -> Vec<usize> {
    let mut live = Vec::new();
    for event in events {
        match &event.kind {
            EventKind::ExecutorAdded { executor, .. } => live.push(*executor),
            EventKind::ExecutorRemoved { executor, .. } => live.retain(|e| e != executor),
            _ => {}
        }
    }
    live.sort_unstable();
    live
}

/// How long executor `executor`, hung by `hang-executor … stage=stage at=at_percent%` in
/// job `job`, went unnoticed: from the moment the fault fired to its `ExecutorRemoved`.
///
/// The scheduler applies executor faults right after the event that moved the stage to the
/// threshold — the stage's submission for 0 %, else the successful `TaskEnd` that brought
/// the count of finished partitions to `at_percent` % — so that event's timestamp is when
/// the executor went silent (to the millisecond the log records). `None` if the fault
/// never fired or the executor was never removed.
pub fn hang_detection_time(
    events: &[Event],
    job: usize,
    stage: usize,
    partitions: usize,
    at_percent: u8,
    executor: usize,
) -> Option<Duration> {
    let reached = |finished: usize| finished * 100 >= at_percent as usize * partitions;
    let mut finished = std::collections::HashSet::new();
    let mut hung_at = None;
    for event in events {
        match &event.kind {
            EventKind::StageSubmitted {
                job: j, stage: s, ..
            } if hung_at.is_none() && *j == job && *s == stage && reached(finished.len()) => {
                hung_at = Some(event.timestamp);
            }
            EventKind::TaskEnd {
                job: j,
                stage: s,
                partition,
                reason: TaskEndReason::Success,
                ..
            } if hung_at.is_none() && *j == job && *s == stage => {
                finished.insert(*partition);
                if reached(finished.len()) {
                    hung_at = Some(event.timestamp);
                }
            }
            EventKind::ExecutorRemoved { executor: e, .. } if *e == executor => {
                return hung_at.map(|at| Duration::from_millis(event.timestamp.saturating_sub(at)));
            }
            _ => {}
        }
    }
    None
}

/// The median of `samples` (the upper one of the middle two for an even count).
pub fn median(samples: &[Duration]) -> Option<Duration> {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len() / 2).copied()
}

#[cfg(test)]
mod tests {
    use ember_exec::scheduler::{StageMetrics, TaskMetrics, TaskStatus};

    use super::*;

    fn at(timestamp: u64, kind: EventKind) -> Event {
        Event { timestamp, kind }
    }

    fn task_end(timestamp: u64, stage: usize, partition: usize, reason: TaskEndReason) -> Event {
        at(
            timestamp,
            EventKind::TaskEnd {
                job: 1,
                stage,
                stage_attempt: 0,
                partition,
                attempt: 0,
                executor: 0,
                speculative: false,
                reason,
                duration_ms: 1,
                rows: 0,
                message: None,
                map_stage: None,
                map_partition: None,
            },
        )
    }

    fn stage(id: usize, partitions: usize, task_ms: &[u64]) -> StageMetrics {
        StageMetrics {
            stage: id,
            partitions,
            attempts: 1,
            tasks: task_ms
                .iter()
                .enumerate()
                .map(|(p, ms)| TaskMetrics {
                    partition: p,
                    attempt: 0,
                    stage_attempt: 0,
                    executor: 0,
                    speculative: false,
                    duration: Duration::from_millis(*ms),
                    rows: 1,
                    bytes: 0,
                    status: TaskStatus::Succeeded,
                })
                .collect(),
        }
    }

    #[test]
    fn largest_stage_is_the_one_with_most_task_time() {
        let metrics = JobMetrics {
            job: 0,
            duration: Duration::from_secs(1),
            stages: vec![
                stage(0, 8, &[10; 8]),
                stage(1, 4, &[30, 30, 30, 30]),
                stage(2, 1, &[5]),
            ],
            executors_lost: vec![],
        };
        assert_eq!(largest_stage(&metrics), Some(1));
    }

    #[test]
    fn live_executors_follow_adds_and_removals() {
        let events = vec![
            at(
                1,
                EventKind::ExecutorAdded {
                    executor: 0,
                    cores: 1,
                },
            ),
            at(
                1,
                EventKind::ExecutorAdded {
                    executor: 1,
                    cores: 1,
                },
            ),
            at(
                2,
                EventKind::ExecutorRemoved {
                    executor: 0,
                    message: "killed".into(),
                },
            ),
            at(
                2,
                EventKind::ExecutorAdded {
                    executor: 2,
                    cores: 1,
                },
            ),
        ];
        assert_eq!(live_executors(&events), vec![1, 2]);
    }

    #[test]
    fn hang_detection_counts_from_the_task_that_reached_the_threshold() {
        let removed = |t| {
            at(
                t,
                EventKind::ExecutorRemoved {
                    executor: 3,
                    message: "no heartbeat".into(),
                },
            )
        };
        let submitted = at(
            100,
            EventKind::StageSubmitted {
                job: 1,
                stage: 2,
                stage_attempt: 0,
                partitions: vec![0, 1, 2, 3],
            },
        );
        let events = vec![
            submitted,
            task_end(150, 2, 0, TaskEndReason::Success),
            task_end(160, 1, 1, TaskEndReason::Success), // another stage
            task_end(170, 2, 1, TaskEndReason::ExceptionFailure),
            task_end(200, 2, 0, TaskEndReason::Success), // same partition again
            task_end(300, 2, 1, TaskEndReason::Success), // 2 of 4 = 50 %
            task_end(400, 2, 2, TaskEndReason::Success),
            removed(1_250),
        ];
        assert_eq!(
            hang_detection_time(&events, 1, 2, 4, 50, 3),
            Some(Duration::from_millis(950))
        );
        // At 0 % the fault fires as the stage is submitted.
        assert_eq!(
            hang_detection_time(&events, 1, 2, 4, 0, 3),
            Some(Duration::from_millis(1_150))
        );
        // Another job's events or a missing removal give no figure.
        assert_eq!(hang_detection_time(&events, 7, 2, 4, 50, 3), None);
        assert_eq!(hang_detection_time(&events[..7], 1, 2, 4, 50, 3), None);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        let ms = Duration::from_millis;
        assert_eq!(median(&[ms(3), ms(1), ms(2)]), Some(ms(2)));
        assert_eq!(median(&[ms(4), ms(1), ms(3), ms(2)]), Some(ms(3)));
        assert_eq!(median(&[]), None);
    }
}
