//! One in-process executor: a number of task slots, a private shuffle directory and a
//! heartbeat thread.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use ember_planner::{EmberError, Result};

use super::heartbeat::HeartbeatReceiver;
use crate::memory::MemoryPool;
use ember_storage::block_store::BlockStore;

/// Memory for cached blocks per executor when the session does not say otherwise; larger
/// `MemoryAndDisk` blocks go to the executor's disk, larger `MemoryOnly` ones are not kept.
pub const DEFAULT_STORAGE_MEMORY: usize = 1 << 30;

/// Where an executor is in its life.
///
/// ```text
///   Alive ── hang (fault injection) ──► Hung ── declared lost (heartbeat timeout) ──► Lost
///     └──────────────── kill (fault injection, cluster shutdown) ─────────────────────┘
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutorState {
    Alive,
    /// Alive but silent: sends no heartbeats and its tasks make no progress.
    Hung,
    Lost,
}

/// An in-process stand-in for a worker node. Its shuffle files are its own: killing it
/// deletes them, exactly what losing a machine does to the outputs it held, so the recovery
/// paths run for real in tests.
#[derive(Debug)]
pub struct LocalExecutor {
    id: usize,
    cores: usize,
    shuffle_dir: PathBuf,
    state: Mutex<ExecutorState>,
    /// Signalled on every state change (wakes the heartbeat thread and hung tasks).
    changed: Condvar,
    heartbeat: Mutex<Option<JoinHandle<()>>>,
    /// `ember.executor.memory`, shared by the tasks running here.
    memory: Arc<MemoryPool>,
    /// Cached partitions and local checkpoints kept here; they die with the executor.
    blocks: BlockStore,
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
            state: Mutex::new(ExecutorState::Alive),
            changed: Condvar::new(),
            heartbeat: Mutex::new(None),
            memory: MemoryPool::unbounded(id),
            blocks: BlockStore::new(shuffle_dir.join("blocks"), DEFAULT_STORAGE_MEMORY),
            shuffle_dir,
        })
    }

    /// The same executor with a memory budget of `budget` bytes for its tasks' buffering
    /// operators (unbounded otherwise).
    pub fn with_memory_budget(mut self, budget: usize) -> Self {
        self.memory = MemoryPool::new(self.id, budget);
        self
    }

    /// The same executor keeping at most `bytes` of cached blocks in memory.
    pub fn with_storage_memory(mut self, bytes: usize) -> Self {
        self.blocks = BlockStore::new(self.shuffle_dir.join("blocks"), bytes);
        self
    }

    /// Cached partitions and local checkpoints held by this executor.
    pub fn blocks(&self) -> &BlockStore {
        &self.blocks
    }

    /// The memory pool shared by the tasks of this executor.
    pub fn memory(&self) -> &Arc<MemoryPool> {
        &self.memory
    }

    /// Where this executor's tasks write spill files (inside its directory, so the files
    /// disappear with the executor).
    pub fn spill_dir(&self) -> PathBuf {
        self.shuffle_dir.join("spill")
    }

    /// Starts the thread that reports to `receiver` every `interval` while the executor is
    /// alive; it pauses while hung and ends when the executor is lost.
    pub fn start_heartbeats(
        self: &Arc<Self>,
        interval: Duration,
        receiver: Arc<HeartbeatReceiver>,
    ) -> Result<()> {
        receiver.beat(self.id);
        let this = Arc::clone(self);
        let handle = std::thread::Builder::new()
            .name(format!("ember-heartbeat-{}", self.id))
            .spawn(move || this.heartbeat_loop(interval, &receiver))
            .map_err(|e| {
                EmberError::Execution(format!(
                    "cannot start the heartbeat thread of executor {}: {e}",
                    self.id
                ))
            })?;
        *self.heartbeat.lock() = Some(handle);
        Ok(())
    }

    fn heartbeat_loop(&self, interval: Duration, receiver: &HeartbeatReceiver) {
        let mut state = self.state.lock();
        loop {
            match *state {
                ExecutorState::Lost => return,
                ExecutorState::Alive => receiver.beat(self.id),
                ExecutorState::Hung => {}
            }
            self.changed.wait_for(&mut state, interval);
        }
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

    pub fn state(&self) -> ExecutorState {
        *self.state.lock()
    }

    /// True until the executor is lost (a hung executor is still "alive": only the
    /// heartbeat timeout finds it out).
    pub fn is_alive(&self) -> bool {
        self.state() != ExecutorState::Lost
    }

    pub fn is_hung(&self) -> bool {
        self.state() == ExecutorState::Hung
    }

    /// Fails with `ExecutorLost` if the executor is dead: tasks call this before and after
    /// running so that output produced on a lost node is never reported as good.
    pub fn check_alive(&self) -> Result<()> {
        if self.is_alive() {
            Ok(())
        } else {
            Err(EmberError::ExecutorLost {
                executor: self.id,
                message: "executor was lost".to_string(),
            })
        }
    }

    /// Simulates losing the node: the executor stops accepting tasks, stops heartbeating
    /// and its shuffle files are deleted. Returns whether it was alive (hung counts) until
    /// now, so callers handle each loss once.
    pub fn kill(&self) -> bool {
        let was_alive = {
            let mut state = self.state.lock();
            let was_alive = *state != ExecutorState::Lost;
            *state = ExecutorState::Lost;
            was_alive
        };
        self.changed.notify_all();
        self.blocks.clear();
        let _ = std::fs::remove_dir_all(&self.shuffle_dir);
        if let Some(handle) = self.heartbeat.lock().take() {
            // The heartbeat thread never calls back into `kill`, so this cannot deadlock;
            // it only fails if the thread panicked, which changes nothing here.
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
        was_alive
    }

    /// Makes the executor alive but silent: no heartbeats, no task progress. Only a live
    /// executor can hang; returns whether it did.
    pub fn hang(&self) -> bool {
        let mut state = self.state.lock();
        if *state != ExecutorState::Alive {
            return false;
        }
        *state = ExecutorState::Hung;
        true
    }

    /// Blocks the calling task for as long as the executor is hung (it is released when the
    /// executor is declared lost). Returns immediately otherwise.
    pub fn wait_while_hung(&self) {
        let mut state = self.state.lock();
        while *state == ExecutorState::Hung {
            self.changed.wait(&mut state);
        }
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

        assert!(exec.kill());
        assert!(!exec.kill(), "a loss is reported once");
        assert!(!exec.is_alive());
        assert!(!job_dir.exists());
        match exec.check_alive() {
            Err(EmberError::ExecutorLost { executor: 3, .. }) => {}
            other => panic!("expected ExecutorLost, got {other:?}"),
        }
    }

    #[test]
    fn hung_executor_stops_heartbeating_and_holds_tasks_until_lost() {
        let dir = SessionDir::create(None).unwrap();
        let exec = Arc::new(LocalExecutor::new(0, 1, dir.path().join("e0")).unwrap());
        let receiver = Arc::new(HeartbeatReceiver::new());
        exec.start_heartbeats(Duration::from_millis(5), receiver.clone())
            .unwrap();
        std::thread::sleep(Duration::from_millis(30));
        assert!(receiver.silence(0).unwrap() < Duration::from_millis(25));

        assert!(exec.hang());
        assert!(exec.is_alive() && exec.is_hung());
        let task = {
            let exec = exec.clone();
            std::thread::spawn(move || {
                exec.wait_while_hung();
                exec.check_alive().is_err()
            })
        };
        std::thread::sleep(Duration::from_millis(60));
        assert!(
            receiver.silence(0).unwrap() >= Duration::from_millis(40),
            "no heartbeats while hung"
        );
        assert!(
            !task.is_finished(),
            "a hung executor's task makes no progress"
        );
        assert!(exec.kill());
        assert!(task.join().unwrap(), "released as lost");
    }
}
