//! The session's executors: a [`LocalCluster`] started on the first query and restarted
//! when `SET ember.executor.*` changes its shape.
//!
//! Starting lazily keeps `Session::new()` free of threads and temp dirs for sessions that
//! only plan (tests, EXPLAIN) and lets `SET` before the first query take effect without a
//! restart.

use std::sync::Arc;

use ember_exec::executor::{ClusterConfig, LocalCluster};
use ember_exec::scheduler::config::JobConfig;
use ember_exec::scheduler::{run_job, JobContext};
use ember_exec::udf::FunctionRegistry;
use ember_planner::Result;
use parking_lot::Mutex;

use crate::config::SessionConfig;
use crate::execution::{PreparedQuery, QueryResult};

#[derive(Default)]
pub struct Runtime {
    cluster: Mutex<Option<(ClusterConfig, Arc<LocalCluster>)>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field(
                "cluster",
                &self.cluster.lock().as_ref().map(|(c, _)| c.clone()),
            )
            .finish()
    }
}

impl Runtime {
    /// The cluster for `config`, started (or restarted with a new shape) if needed.
    pub fn cluster(&self, config: &SessionConfig) -> Result<Arc<LocalCluster>> {
        let wanted = ClusterConfig::from_settings(|k| config.get(k).map(str::to_string))?;
        let mut guard = self.cluster.lock();
        if let Some((shape, cluster)) = guard.as_ref() {
            if *shape == wanted {
                return Ok(cluster.clone());
            }
        }
        let cluster = Arc::new(LocalCluster::new(&wanted)?);
        *guard = Some((wanted, cluster.clone()));
        Ok(cluster)
    }

    /// Runs a planned query to completion.
    pub fn run(
        &self,
        prepared: &PreparedQuery,
        config: &SessionConfig,
        functions: &Arc<FunctionRegistry>,
    ) -> Result<QueryResult> {
        let cluster = self.cluster(config)?;
        let job_config = JobConfig::from_settings(|k| config.get(k).map(str::to_string))?;
        let ctx = JobContext::new(functions.clone()).with_config(job_config);
        let result = run_job(&prepared.stages, &cluster, &ctx)?;
        Ok(QueryResult {
            schema: prepared.schema(),
            partitions: result.partitions,
            metrics: Some(result.metrics),
        })
    }
}
