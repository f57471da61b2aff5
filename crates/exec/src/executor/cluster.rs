//! The embedded default cluster: N local executors sharing one rayon pool.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ember_planner::{EmberError, Result};

use super::local::LocalExecutor;
use super::session_dir::SessionDir;

pub const EXECUTOR_INSTANCES_KEY: &str = "ember.executor.instances";
pub const EXECUTOR_CORES_KEY: &str = "ember.executor.cores";

/// How many executors a local cluster has and how many task slots each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `ember.executor.instances` (default 2).
    pub instances: usize,
    /// `ember.executor.cores` (default: available cores / instances, at least 1).
    pub cores_per_executor: usize,
    /// Parent of the session's scratch dir (default: the system temp dir).
    pub local_dir: Option<PathBuf>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        let instances = 2;
        ClusterConfig {
            instances,
            cores_per_executor: default_cores(instances),
            local_dir: None,
        }
    }
}

fn default_cores(instances: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / instances.max(1)).max(1)
}

impl ClusterConfig {
    /// Reads the `ember.executor.*` keys through `get` (e.g. a session config lookup);
    /// missing keys take their defaults.
    pub fn from_settings(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let instances = match get(EXECUTOR_INSTANCES_KEY) {
            Some(v) => parse_positive(EXECUTOR_INSTANCES_KEY, &v)?,
            None => 2,
        };
        let cores_per_executor = match get(EXECUTOR_CORES_KEY) {
            Some(v) => parse_positive(EXECUTOR_CORES_KEY, &v)?,
            None => default_cores(instances),
        };
        Ok(ClusterConfig {
            instances,
            cores_per_executor,
            local_dir: None,
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

/// In-process executors plus the thread pool their tasks run on. The pool has one thread
/// per task slot, so the scheduler — which never gives an executor more tasks than it has
/// slots — never queues work behind a busy thread.
pub struct LocalCluster {
    executors: Vec<Arc<LocalExecutor>>,
    pool: rayon::ThreadPool,
    next_job: AtomicUsize,
    /// Declared last so it is dropped after the executors and the pool.
    dir: SessionDir,
}

impl std::fmt::Debug for LocalCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCluster")
            .field("executors", &self.executors)
            .field("dir", &self.dir)
            .finish()
    }
}

impl LocalCluster {
    pub fn new(config: &ClusterConfig) -> Result<Self> {
        let instances = config.instances.max(1);
        let cores = config.cores_per_executor.max(1);
        let dir = SessionDir::create(config.local_dir.as_deref())?;
        let executors = (0..instances)
            .map(|id| {
                LocalExecutor::new(id, cores, dir.path().join(format!("executor-{id}")))
                    .map(Arc::new)
            })
            .collect::<Result<Vec<_>>>()?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(instances * cores)
            .thread_name(|i| format!("ember-task-{i}"))
            .build()
            .map_err(|e| EmberError::Execution(format!("cannot start task threads: {e}")))?;
        Ok(LocalCluster {
            executors,
            pool,
            next_job: AtomicUsize::new(0),
            dir,
        })
    }

    /// A cluster with the default configuration.
    pub fn with_defaults() -> Result<Self> {
        Self::new(&ClusterConfig::default())
    }

    pub fn executors(&self) -> &[Arc<LocalExecutor>] {
        &self.executors
    }

    pub fn executor(&self, id: usize) -> Option<&Arc<LocalExecutor>> {
        self.executors.get(id)
    }

    /// Total task slots over all executors (alive or not).
    pub fn total_slots(&self) -> usize {
        self.executors.iter().map(|e| e.cores()).sum()
    }

    /// Kills executor `id` (see [`LocalExecutor::kill`]).
    pub fn kill_executor(&self, id: usize) -> Result<()> {
        match self.executors.get(id) {
            Some(e) => {
                e.kill();
                Ok(())
            }
            None => Err(EmberError::Execution(format!(
                "no executor {id}: the cluster has {} executors",
                self.executors.len()
            ))),
        }
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn config_reads_keys_and_defaults() {
        let settings: HashMap<&str, &str> = [(EXECUTOR_INSTANCES_KEY, "3")].into();
        let config =
            ClusterConfig::from_settings(|k| settings.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(config.instances, 3);
        assert!(config.cores_per_executor >= 1);

        let bad: HashMap<&str, &str> = [(EXECUTOR_CORES_KEY, "0")].into();
        let err = ClusterConfig::from_settings(|k| bad.get(k).map(|v| v.to_string())).unwrap_err();
        assert!(
            err.to_string().contains("ember.executor.cores"),
            "error names the key: {err}"
        );
    }

    #[test]
    fn cluster_creates_executors_and_removes_its_dir() {
        let config = ClusterConfig {
            instances: 3,
            cores_per_executor: 2,
            local_dir: None,
        };
        let cluster = LocalCluster::new(&config).unwrap();
        assert_eq!(cluster.executors().len(), 3);
        assert_eq!(cluster.total_slots(), 6);
        assert_eq!(cluster.pool().current_num_threads(), 6);
        assert!(cluster.executor(2).unwrap().shuffle_dir().is_dir());
        assert_ne!(cluster.next_job_id(), cluster.next_job_id());
        cluster.kill_executor(1).unwrap();
        assert!(!cluster.executor(1).unwrap().is_alive());
        assert!(cluster.kill_executor(9).is_err());
        let dir = cluster.local_dir().to_path_buf();
        drop(cluster);
        assert!(!dir.exists());
    }
}
