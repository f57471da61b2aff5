//! The embedded default cluster: local executors sharing one rayon pool, watched by
//! heartbeats, with lost executors replaced at once.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use ember_planner::{EmberError, Result};

use super::heartbeat::{
    read_duration, HeartbeatReceiver, DEFAULT_HEARTBEAT_INTERVAL, DEFAULT_NETWORK_TIMEOUT,
    HEARTBEAT_INTERVAL_KEY, NETWORK_TIMEOUT_KEY,
};
use super::local::LocalExecutor;
use super::session_dir::SessionDir;
use crate::events::{EventKind, EventLog};
use crate::memory::{default_executor_memory, parse_memory_size, EXECUTOR_MEMORY_KEY};
use crate::persist::PersistRegistry;

pub const EXECUTOR_INSTANCES_KEY: &str = "ember.executor.instances";
pub const EXECUTOR_CORES_KEY: &str = "ember.executor.cores";

/// How many executors a local cluster has, how many task slots each, and how their
/// liveness is watched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `ember.executor.instances` (default 2).
    pub instances: usize,
    /// `ember.executor.cores` (default: available cores / instances, at least 1).
    pub cores_per_executor: usize,
    /// Parent of the session's scratch dir (default: the system temp dir).
    pub local_dir: Option<PathBuf>,
    /// `ember.executor.heartbeatInterval` (default 250ms; a bare number is milliseconds).
    pub heartbeat_interval: Duration,
    /// `ember.network.timeout` (default 1s; a bare number is seconds): an executor silent
    /// this long is declared lost. See [`super::heartbeat`] for why 1 s.
    pub network_timeout: Duration,
    /// Start a new executor whenever one is lost, so capacity stays (a cluster manager
    /// relaunching a worker). Off only in tests that want to run out of executors.
    pub replace_lost_executors: bool,
    /// `ember.executor.memory` in bytes: the budget of each executor's memory pool, shared
    /// by its running tasks (default: half the machine's memory divided among the
    /// executors, see [`default_executor_memory`]).
    pub executor_memory: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        let instances = 2;
        ClusterConfig {
            instances,
            cores_per_executor: default_cores(instances),
            local_dir: None,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            network_timeout: DEFAULT_NETWORK_TIMEOUT,
            replace_lost_executors: true,
            executor_memory: default_executor_memory(instances),
        }
    }
}

/// Task slots per executor when `ember.executor.cores` is not set: the machine's cores
/// shared evenly among the executors, at least one each.
pub fn default_cores(instances: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / instances.max(1)).max(1)
}

impl ClusterConfig {
    /// Reads the `ember.executor.*` and `ember.network.timeout` keys through `get` (e.g. a
    /// session config lookup); missing keys take their defaults.
    pub fn from_settings(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let instances = match get(EXECUTOR_INSTANCES_KEY) {
            Some(v) => parse_positive(EXECUTOR_INSTANCES_KEY, &v)?,
            None => 2,
        };
        let cores_per_executor = match get(EXECUTOR_CORES_KEY) {
            Some(v) => parse_positive(EXECUTOR_CORES_KEY, &v)?,
            None => default_cores(instances),
        };
        let heartbeat_interval = read_duration(
            &get,
            HEARTBEAT_INTERVAL_KEY,
            Duration::from_millis(1),
            DEFAULT_HEARTBEAT_INTERVAL,
        )?;
        let network_timeout = read_duration(
            &get,
            NETWORK_TIMEOUT_KEY,
            Duration::from_secs(1),
            DEFAULT_NETWORK_TIMEOUT,
        )?;
        if heartbeat_interval.is_zero() || network_timeout <= heartbeat_interval {
            return Err(EmberError::Config(format!(
                "{NETWORK_TIMEOUT_KEY} ({network_timeout:?}) must be longer than \
                 {HEARTBEAT_INTERVAL_KEY} ({heartbeat_interval:?}), which must be positive"
            )));
        }
        let executor_memory = match get(EXECUTOR_MEMORY_KEY) {
            Some(v) => parse_memory_size(EXECUTOR_MEMORY_KEY, &v)?,
            None => default_executor_memory(instances),
        };
        Ok(ClusterConfig {
            instances,
            cores_per_executor,
            local_dir: None,
            heartbeat_interval,
            network_timeout,
            replace_lost_executors: true,
            executor_memory,
        })
    }
}

/// Parses a configuration value that must be a positive integer.
pub(crate) fn parse_positive(key: &str, value: &str) -> Result<usize> {
    match value.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(EmberError::Config(format!(
            "invalid value '{value}' for {key}: expected a positive integer"
        ))),
    }
}

/// In-process executors plus the thread pool their tasks run on.
///
/// Executor ids are never reused: a replacement gets the next id, so the event log, the
/// metrics and the map output tracker never confuse a dead executor with its successor.
/// The pool has two threads per task slot: the scheduler never gives a live executor more
/// tasks than it has slots, and the spare threads absorb tasks of a lost or hung executor
/// that have not noticed yet, so its replacement never queues behind them.
pub struct LocalCluster {
    config: ClusterConfig,
    executors: RwLock<Vec<Arc<LocalExecutor>>>,
    /// Executors whose loss was handled (event posted, replacement started).
    removed: Mutex<Vec<bool>>,
    heartbeats: Arc<HeartbeatReceiver>,
    events: Arc<EventLog>,
    pool: rayon::ThreadPool,
    next_job: AtomicUsize,
    /// Where the partitions of the session's persisted plans are (outlives jobs).
    persisted: Arc<PersistRegistry>,
    /// Declared last so it is dropped after the executors and the pool.
    dir: SessionDir,
}

impl std::fmt::Debug for LocalCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCluster")
            .field("executors", &*self.executors.read())
            .field("dir", &self.dir)
            .finish()
    }
}

impl LocalCluster {
    /// A cluster without an event log.
    pub fn new(config: &ClusterConfig) -> Result<Self> {
        Self::with_event_log(config, Arc::new(EventLog::disabled()))
    }

    /// A cluster posting `ApplicationStart` now, `ExecutorAdded`/`ExecutorRemoved` as
    /// executors come and go, and `ApplicationEnd` when dropped.
    pub fn with_event_log(config: &ClusterConfig, events: Arc<EventLog>) -> Result<Self> {
        let instances = config.instances.max(1);
        let cores = config.cores_per_executor.max(1);
        let config = ClusterConfig {
            instances,
            cores_per_executor: cores,
            ..config.clone()
        };
        let dir = SessionDir::create(config.local_dir.as_deref())?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2 * instances * cores)
            .thread_name(|i| format!("ember-task-{i}"))
            .build()
            .map_err(|e| EmberError::Execution(format!("cannot start task threads: {e}")))?;
        if let Some(app_id) = events.app_id() {
            events.post(EventKind::ApplicationStart {
                app_id: app_id.to_string(),
                app_name: "ember".to_string(),
            });
        }
        let cluster = LocalCluster {
            config,
            executors: RwLock::new(Vec::new()),
            removed: Mutex::new(Vec::new()),
            heartbeats: Arc::new(HeartbeatReceiver::new()),
            events,
            pool,
            next_job: AtomicUsize::new(0),
            persisted: Arc::new(PersistRegistry::new()),
            dir,
        };
        for _ in 0..instances {
            cluster.add_executor()?;
        }
        Ok(cluster)
    }

    /// A cluster with the default configuration.
    pub fn with_defaults() -> Result<Self> {
        Self::new(&ClusterConfig::default())
    }

    /// Starts a new executor with the next id and posts `ExecutorAdded`.
    fn add_executor(&self) -> Result<usize> {
        let mut executors = self.executors.write();
        let id = executors.len();
        let cores = self.config.cores_per_executor;
        let executor = Arc::new(
            LocalExecutor::new(id, cores, self.dir.path().join(format!("executor-{id}")))?
                .with_memory_budget(self.config.executor_memory),
        );
        executor.start_heartbeats(self.config.heartbeat_interval, self.heartbeats.clone())?;
        executors.push(executor);
        self.removed.lock().push(false);
        drop(executors);
        self.events.post(EventKind::ExecutorAdded {
            executor: id,
            cores,
        });
        Ok(id)
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// The session's persisted plans (cached blocks, checkpoints).
    pub fn persisted(&self) -> &Arc<PersistRegistry> {
        &self.persisted
    }

    /// Drops persisted plan `id` everywhere (`unpersist`): its blocks on every executor and
    /// its registry entry. A reliable checkpoint's files stay for `VACUUM CHECKPOINTS`.
    pub fn unpersist(&self, id: ember_planner::persist::PersistId) -> bool {
        for executor in self.executors() {
            executor.blocks().remove_all_for(id);
        }
        self.persisted.remove(id)
    }

    /// The cluster's event log (disabled unless built with [`Self::with_event_log`]).
    pub fn events(&self) -> &Arc<EventLog> {
        &self.events
    }

    /// Every executor ever started, indexed by id (lost ones included).
    pub fn executors(&self) -> Vec<Arc<LocalExecutor>> {
        self.executors.read().clone()
    }

    /// Number of executors ever started (the next executor id).
    pub fn executor_count(&self) -> usize {
        self.executors.read().len()
    }

    pub fn executor(&self, id: usize) -> Option<Arc<LocalExecutor>> {
        self.executors.read().get(id).cloned()
    }

    /// Task slots of the live executors.
    pub fn total_slots(&self) -> usize {
        self.executors
            .read()
            .iter()
            .filter(|e| e.is_alive())
            .map(|e| e.cores())
            .sum()
    }

    /// Kills executor `id` (see [`LocalExecutor::kill`]) and handles the loss.
    pub fn kill_executor(&self, id: usize) -> Result<()> {
        self.existing(id)?;
        self.remove_executor(id, "killed (fault injection)");
        Ok(())
    }

    /// Makes executor `id` alive but silent (fault injection); the heartbeat timeout will
    /// find it.
    pub fn hang_executor(&self, id: usize) -> Result<()> {
        self.existing(id)?.hang();
        Ok(())
    }

    fn existing(&self, id: usize) -> Result<Arc<LocalExecutor>> {
        self.executor(id).ok_or_else(|| {
            EmberError::Execution(format!(
                "no executor {id}: the cluster has executors 0 to {}",
                self.executor_count().saturating_sub(1)
            ))
        })
    }

    /// Handles the loss of executor `id` once, whoever noticed it first: kills it (its
    /// files go), posts `ExecutorRemoved` with `why`, and starts a replacement. Returns
    /// whether this call handled it.
    pub fn remove_executor(&self, id: usize, why: &str) -> bool {
        let Some(executor) = self.executor(id) else {
            return false;
        };
        {
            let mut removed = self.removed.lock();
            match removed.get_mut(id) {
                Some(done) if !*done => *done = true,
                _ => return false,
            }
        }
        executor.kill();
        self.heartbeats.forget(id);
        self.events.post(EventKind::ExecutorRemoved {
            executor: id,
            message: why.to_string(),
        });
        if self.config.replace_lost_executors {
            // Failing to start a replacement leaves fewer slots, not a broken job.
            let _ = self.add_executor();
        }
        true
    }

    /// Declares lost every executor silent for longer than `ember.network.timeout` (and
    /// every executor that died without being handled). Returns the executors removed.
    pub fn expire_silent_executors(&self) -> Vec<usize> {
        let timeout = self.config.network_timeout;
        let mut lost = Vec::new();
        for executor in self.executors() {
            let id = executor.id();
            if self.removed.lock().get(id).copied().unwrap_or(true) {
                continue;
            }
            let why = if !executor.is_alive() {
                "executor exited".to_string()
            } else {
                match self.heartbeats.silence(id) {
                    Some(silence) if silence > timeout => format!(
                        "no heartbeat for {} ms ({NETWORK_TIMEOUT_KEY} = {} ms)",
                        silence.as_millis(),
                        timeout.as_millis()
                    ),
                    _ => continue,
                }
            };
            if self.remove_executor(id, &why) {
                lost.push(id);
            }
        }
        lost
    }

    /// The pool that runs tasks.
    pub fn pool(&self) -> &rayon::ThreadPool {
        &self.pool
    }

    /// A fresh job id; shuffle files of different jobs never share a directory.
    pub fn next_job_id(&self) -> usize {
        self.next_job.fetch_add(1, Ordering::Relaxed)
    }

    /// The session's scratch directory.
    pub fn local_dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        // Stop the heartbeat threads (and release hung tasks) before the dir goes away.
        for executor in self.executors.read().iter() {
            executor.kill();
        }
        if let Some(app_id) = self.events.app_id() {
            self.events.post(EventKind::ApplicationEnd {
                app_id: app_id.to_string(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::events::Event;

    fn config(instances: usize, cores: usize) -> ClusterConfig {
        ClusterConfig {
            instances,
            cores_per_executor: cores,
            ..ClusterConfig::default()
        }
    }

    fn names(events: &[Event]) -> Vec<&'static str> {
        events.iter().map(Event::name).collect()
    }

    #[test]
    fn config_reads_keys_and_defaults() {
        let settings: HashMap<&str, &str> = [
            (EXECUTOR_INSTANCES_KEY, "3"),
            (HEARTBEAT_INTERVAL_KEY, "100"),
            (NETWORK_TIMEOUT_KEY, "2"),
        ]
        .into();
        let config =
            ClusterConfig::from_settings(|k| settings.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(config.instances, 3);
        assert!(config.cores_per_executor >= 1);
        assert_eq!(config.heartbeat_interval, Duration::from_millis(100));
        assert_eq!(config.network_timeout, Duration::from_secs(2));
        let defaults = ClusterConfig::from_settings(|_| None).unwrap();
        assert_eq!(defaults.heartbeat_interval, Duration::from_millis(250));
        assert_eq!(defaults.network_timeout, Duration::from_secs(1));

        assert_eq!(defaults.executor_memory, default_executor_memory(2));
        let sized: HashMap<&str, &str> = [(EXECUTOR_MEMORY_KEY, "512m")].into();
        let config = ClusterConfig::from_settings(|k| sized.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(config.executor_memory, 512 << 20);
        let cluster = LocalCluster::new(&ClusterConfig {
            instances: 1,
            ..config
        })
        .unwrap();
        assert_eq!(cluster.executor(0).unwrap().memory().budget(), 512 << 20);
        let bad: HashMap<&str, &str> = [(EXECUTOR_MEMORY_KEY, "lots")].into();
        let err = ClusterConfig::from_settings(|k| bad.get(k).map(|v| v.to_string())).unwrap_err();
        assert!(err.to_string().contains(EXECUTOR_MEMORY_KEY), "{err}");

        let bad: HashMap<&str, &str> = [(EXECUTOR_CORES_KEY, "0")].into();
        let err = ClusterConfig::from_settings(|k| bad.get(k).map(|v| v.to_string())).unwrap_err();
        assert!(
            err.to_string().contains("ember.executor.cores"),
            "error names the key: {err}"
        );
        let inverted: HashMap<&str, &str> = [(NETWORK_TIMEOUT_KEY, "100ms")].into();
        let err =
            ClusterConfig::from_settings(|k| inverted.get(k).map(|v| v.to_string())).unwrap_err();
        assert!(err.to_string().contains(NETWORK_TIMEOUT_KEY), "{err}");
    }

    #[test]
    fn cluster_creates_executors_and_removes_its_dir() {
        let cluster = LocalCluster::new(&config(3, 2)).unwrap();
        assert_eq!(cluster.executors().len(), 3);
        assert_eq!(cluster.total_slots(), 6);
        assert!(cluster.executor(2).unwrap().shuffle_dir().is_dir());
        assert_ne!(cluster.next_job_id(), cluster.next_job_id());
        assert!(cluster.kill_executor(9).is_err());
        let dir = cluster.local_dir().to_path_buf();
        drop(cluster);
        assert!(!dir.exists());
    }

    #[test]
    fn a_killed_executor_is_replaced_at_once_and_logged() {
        let events = Arc::new(EventLog::in_memory("app-cluster-test"));
        let cluster = LocalCluster::with_event_log(&config(2, 1), events.clone()).unwrap();
        cluster.kill_executor(1).unwrap();
        assert!(!cluster.executor(1).unwrap().is_alive());
        assert_eq!(cluster.executor_count(), 3);
        assert!(cluster.executor(2).unwrap().is_alive(), "replacement");
        assert_eq!(cluster.total_slots(), 2, "capacity stays");
        // A second report of the same loss changes nothing.
        assert!(!cluster.remove_executor(1, "again"));
        drop(cluster);
        assert_eq!(
            names(&events.events()),
            vec![
                "ApplicationStart",
                "ExecutorAdded",
                "ExecutorAdded",
                "ExecutorRemoved",
                "ExecutorAdded",
                "ApplicationEnd"
            ]
        );
    }

    #[test]
    fn a_silent_executor_is_expired_after_the_network_timeout() {
        let cluster = LocalCluster::new(&ClusterConfig {
            heartbeat_interval: Duration::from_millis(10),
            network_timeout: Duration::from_millis(60),
            ..config(2, 1)
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            cluster.expire_silent_executors().is_empty(),
            "heartbeating executors stay"
        );
        cluster.hang_executor(0).unwrap();
        let hung_at = std::time::Instant::now();
        let mut lost = Vec::new();
        while lost.is_empty() && hung_at.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
            lost = cluster.expire_silent_executors();
        }
        assert_eq!(lost, vec![0]);
        assert!(hung_at.elapsed() >= Duration::from_millis(45));
        assert!(!cluster.executor(0).unwrap().is_alive());
        assert_eq!(cluster.executor_count(), 3);
    }
}
