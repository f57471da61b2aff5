//! The session's executors: a [`LocalCluster`] started on the first query and restarted
//! when `SET ember.executor.*` changes its shape.
//!
//! Starting lazily keeps `Session::new()` free of threads and temp dirs for sessions that
//! only plan (tests, EXPLAIN) and lets `SET` before the first query take effect without a
//! restart.

use std::sync::Arc;

use ember_exec::events::{new_application_id, EventLog};
use ember_exec::executor::{ClusterConfig, LocalCluster};
use ember_exec::scheduler::{run_job, JobContext};
use ember_exec::udf::FunctionRegistry;
use ember_planner::Result;
use parking_lot::Mutex;

use crate::config::SessionConfig;
use crate::execution::{PreparedQuery, QueryResult};

/// What decides whether the running cluster can be reused: its shape and where its
/// application's event log goes (`ember.eventLog.enabled`, `ember.eventLog.dir`).
type ClusterKey = (ClusterConfig, Option<String>, Option<String>);

#[derive(Default)]
pub struct Runtime {
    cluster: Mutex<Option<(ClusterKey, Arc<LocalCluster>)>>,
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
    /// The running cluster, if a query started one (never starts one: asking for status
    /// must not spin up executors or restart them with new settings).
    pub fn current_cluster(&self) -> Option<Arc<LocalCluster>> {
        self.cluster.lock().as_ref().map(|(_, c)| c.clone())
    }

    /// The cluster for `config`, started (or restarted with a new shape) if needed.
    pub fn cluster(&self, config: &SessionConfig) -> Result<Arc<LocalCluster>> {
        let get = |k: &str| config.get(k).map(str::to_string);
        let shape = ClusterConfig::from_settings(get)?;
        let wanted = (
            shape.clone(),
            get("ember.eventLog.enabled"),
            get("ember.eventLog.dir"),
        );
        let mut guard = self.cluster.lock();
        if let Some((key, cluster)) = guard.as_ref() {
            if *key == wanted {
                return Ok(cluster.clone());
            }
        }
        // Drop the old cluster first so its ApplicationEnd is logged before the new start.
        *guard = None;
        let events = EventLog::from_settings(get, &new_application_id())?;
        let cluster = Arc::new(LocalCluster::with_event_log(&shape, Arc::new(events))?);
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
        let ctx = JobContext::from_settings(
            functions.clone(),
            |k| config.get(k).map(str::to_string),
            &cluster,
        )?;
        let result = run_job(&prepared.stages, &cluster, &ctx)?;
        Ok(QueryResult {
            schema: prepared.schema(),
            partitions: result.partitions,
            metrics: Some(result.metrics),
        })
    }
}
