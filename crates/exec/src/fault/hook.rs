//! The injector as the scheduler's [`TaskHook`]: the task-level half of fault injection,
//! usable without any scheduler change.
//!
//! Before each task attempt runs, the hook damages the shuffle blocks of any map output due
//! to be lost (deleting, truncating or corrupting the real files, so the reducer's own
//! checks raise the fetch failure), then applies the attempt's faults: an error for `Fail`,
//! a sleep for `Delay`, and for a task on a hung executor a block until the executor is
//! declared lost. Executor kills need the cluster and stage progress, so the scheduler
//! applies [`FaultInjector::on_stage_progress`] itself.

use std::io::ErrorKind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ember_planner::{EmberError, Result};

use super::damage::damage_file;
use super::injector::{FaultAction, FaultInjector};
use crate::scheduler::task::{TaskHook, TaskInfo};
use crate::shuffle::tracker::MapOutputTracker;

impl TaskHook for FaultInjector {
    fn before_task(&self, task: &TaskInfo, tracker: &MapOutputTracker) -> Result<()> {
        self.before_task_cancellable(task, tracker, &AtomicBool::new(false))
    }
}

/// How often a delayed task looks at its cancel flag.
const DELAY_SLICE: Duration = Duration::from_millis(5);

impl FaultInjector {
    /// [`TaskHook::before_task`] for a task that can be killed meanwhile: an injected delay
    /// ends early once `cancelled` is set, so a straggler whose speculative copy already
    /// won does not hold its thread (and the job's end) for the rest of the delay.
    pub fn before_task_cancellable(
        &self,
        task: &TaskInfo,
        tracker: &MapOutputTracker,
        cancelled: &AtomicBool,
    ) -> Result<()> {
        for loss in self.take_losses(|s, p| tracker.get(s, p).is_some()) {
            let Some(status) = tracker.get(loss.stage, loss.partition) else {
                continue; // unregistered meanwhile: already lost
            };
            // A map task's blocks share one file: damage it once (flipping the same byte
            // twice would undo the damage).
            let mut files: Vec<&std::path::Path> = status
                .blocks
                .iter()
                .flatten()
                .map(|m| m.path.as_path())
                .collect();
            files.sort();
            files.dedup();
            for path in files {
                match damage_file(path, loss.damage) {
                    Ok(()) => {}
                    // Already gone (its executor died): the loss happened anyway.
                    Err(EmberError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(e.context(format!(
                            "injecting lose-shuffle stage={} partition={}",
                            loss.stage, loss.partition
                        )))
                    }
                }
            }
        }
        let actions = self.on_task_start(task.stage, task.partition, task.attempt, task.executor);
        for action in actions {
            match action {
                FaultAction::Fail(message) => return Err(EmberError::Execution(message)),
                FaultAction::Delay(ms) => {
                    let until = Instant::now() + Duration::from_millis(ms);
                    while !cancelled.load(Ordering::SeqCst) {
                        let left = until.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        std::thread::sleep(left.min(DELAY_SLICE));
                    }
                }
                FaultAction::Hang => {
                    let released = self.wait_while_hung(task.executor);
                    let message = if released {
                        "hung executor was declared lost".to_string()
                    } else {
                        "hung executor was never declared lost (hang detection did not fire \
                         within the injector's hang limit)"
                            .to_string()
                    };
                    return Err(EmberError::ExecutorLost {
                        executor: task.executor,
                        message,
                    });
                }
                // Not produced by on_task_start; the scheduler applies executor faults.
                FaultAction::KillExecutor(_) | FaultAction::HangExecutor(_) => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ember_storage::shuffle::BlockMeta;

    use super::*;
    use crate::fault::{ChaosConfig, FaultPlan};
    use crate::shuffle::tracker::MapStatus;

    fn info(stage: usize, partition: usize, attempt: usize, executor: usize) -> TaskInfo {
        TaskInfo {
            job: 0,
            stage,
            partition,
            attempt,
            executor,
        }
    }

    fn register(
        tracker: &MapOutputTracker,
        dir: &std::path::Path,
        stage: usize,
        p: usize,
    ) -> std::path::PathBuf {
        let path = dir.join(format!("s{stage}-m{p}.arrow"));
        std::fs::write(&path, b"block bytes").unwrap();
        tracker.register(
            stage,
            p,
            MapStatus {
                executor: 0,
                attempt: 0,
                blocks: vec![
                    Some(BlockMeta {
                        path: path.clone(),
                        rows: 1,
                        offset: 0,
                        bytes: 11,
                        checksum: 0,
                    }),
                    None,
                ],
            },
        );
        path
    }

    #[test]
    fn fail_task_becomes_an_execution_error() {
        let inj = FaultInjector::new(
            FaultPlan::parse("fail-task stage=2 partition=0 attempt=0").unwrap(),
            2,
        );
        let tracker = MapOutputTracker::new();
        let e = inj.before_task(&info(2, 0, 0, 1), &tracker).unwrap_err();
        assert!(matches!(e, EmberError::Execution(_)), "{e:?}");
        assert!(inj.before_task(&info(2, 0, 1, 0), &tracker).is_ok());
    }

    #[test]
    fn lose_shuffle_deletes_the_registered_blocks_before_the_next_task() {
        let dir = tempfile::tempdir().unwrap();
        let inj = FaultInjector::new(
            FaultPlan::parse("lose-shuffle stage=0 partition=1").unwrap(),
            2,
        );
        let tracker = MapOutputTracker::new();
        inj.before_task(&info(0, 0, 0, 0), &tracker).unwrap();
        let kept = register(&tracker, dir.path(), 0, 0);
        let lost = register(&tracker, dir.path(), 0, 1);
        inj.before_task(&info(1, 0, 0, 0), &tracker).unwrap();
        assert!(kept.exists());
        assert!(!lost.exists());
        assert!(inj.unfired().is_empty());
        // Firing again is a no-op even though the file is gone.
        inj.before_task(&info(1, 1, 0, 0), &tracker).unwrap();
    }

    #[test]
    fn chaos_loses_the_output_its_attempt_wrote() {
        // Find a seed where stage 0 partition 0 attempt 0 loses its output.
        let seed = (0..10_000u64)
            .find(|&s| {
                matches!(
                    ChaosConfig::new(s, 1.0).unwrap().decide(0, 0, 0),
                    Some(crate::fault::ChaosFault::LoseOutput(_))
                )
            })
            .unwrap();
        let chaos = ChaosConfig::new(seed, 1.0).unwrap();
        let inj = FaultInjector::new(FaultPlan::default(), 2).with_chaos(chaos);
        let dir = tempfile::tempdir().unwrap();
        let tracker = MapOutputTracker::new();
        // Chaos may also fail or delay later attempts; only the loss matters here.
        let _ = inj.before_task(&info(0, 0, 0, 0), &tracker);
        let path = register(&tracker, dir.path(), 0, 0);
        let _ = inj.before_task(&info(1, 0, 0, 1), &tracker);
        let damaged = !path.exists() || std::fs::read(&path).unwrap() != b"block bytes";
        assert!(damaged);
    }
}
