//! One in-process executor: a number of task slots and a private shuffle directory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use ember_planner::{EmberError, Result};

/// An in-process stand-in for a worker node. Its shuffle files are its own: killing it
/// deletes them, exactly what losing a machine does to the outputs it held, so the recovery
/// paths run for real in tests.
#[derive(Debug)]
pub struct LocalExecutor {
    id: usize,
    cores: usize,
    shuffle_dir: PathBuf,
    alive: AtomicBool,
}

impl LocalExecutor {
    /// An executor with `cores` task slots whose shuffle files live under `shuffle_dir`
    /// (created if missing).
    pub fn new(id: usize, cores: usize, shuffle_dir: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(&shuffle_dir)
            .map_err(|e| EmberError::io(shuffle_dir.display().to_string(), e))?;
        Ok(LocalExecutor {
            id,
            cores: cores.max(1),
            shuffle_dir,
            alive: AtomicBool::new(true),
        })
    }

    pub fn id(&self) -> usize {
        self.id
    }

    /// Number of tasks the executor runs at once.
    pub fn cores(&self) -> usize {
        self.cores
    }

    pub fn shuffle_dir(&self) -> &Path {
        &self.shuffle_dir
    }

    /// Where this executor keeps the shuffle blocks of one job.
    pub fn job_shuffle_dir(&self, job: usize) -> PathBuf {
        self.shuffle_dir.join(format!("job-{job}"))
    }

    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    /// Fails with `ExecutorLost` if the executor is dead: tasks call this before and after
    /// running so that output produced on a lost node is never reported as good.
    pub fn check_alive(&self) -> Result<()> {
        if self.is_alive() {
            Ok(())
        } else {
            Err(EmberError::ExecutorLost {
                executor: self.id,
                message: "executor was killed".to_string(),
            })
        }
    }

    /// Simulates losing the node: the executor stops accepting tasks and its shuffle files
    /// are deleted. The driver notices on its next liveness check and recomputes what was
    /// lost.
    pub fn kill(&self) {
        self.alive.store(false, Ordering::SeqCst);
        let _ = std::fs::remove_dir_all(&self.shuffle_dir);
    }

    /// Deletes the shuffle files of a finished job (best effort: leftovers die with the
    /// session directory).
    pub fn remove_job_files(&self, job: usize) {
        let _ = std::fs::remove_dir_all(self.job_shuffle_dir(job));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::session_dir::SessionDir;

    #[test]
    fn kill_deletes_shuffle_files_and_reports_loss() {
        let dir = SessionDir::create(None).unwrap();
        let exec = LocalExecutor::new(3, 0, dir.path().join("executor-3")).unwrap();
        assert_eq!(exec.cores(), 1, "at least one slot");
        let job_dir = exec.job_shuffle_dir(7);
        std::fs::create_dir_all(&job_dir).unwrap();
        std::fs::write(job_dir.join("block"), b"rows").unwrap();
        exec.check_alive().unwrap();

        exec.kill();
        assert!(!exec.is_alive());
        assert!(!job_dir.exists());
        match exec.check_alive() {
            Err(EmberError::ExecutorLost { executor: 3, .. }) => {}
            other => panic!("expected ExecutorLost, got {other:?}"),
        }
    }
}
