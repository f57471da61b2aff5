//! The scheduler: runs a [`StageGraph`] on a [`LocalCluster`].
//!
//! Two levels, as in Spark: the DAG level ([`dag`]) decides which stages can run — a stage
//! runs when all its parents' outputs are available — and which partitions must be
//! (re)computed; the task level launches one task per missing partition on a free executor
//! slot and turns each task's outcome into the next step:
//!
//! | outcome                        | what happens                                              |
//! |--------------------------------|-----------------------------------------------------------|
//! | success                        | map output registered / result partition kept              |
//! | task error                     | retried (another executor preferred) up to `max_task_failures`, then the job fails with every attempt's reason |
//! | `FetchFailed{stage, map, ..}`  | that map output is forgotten, only it is recomputed, then the reducer reruns; at most `max_stage_attempts` rounds |
//! | executor lost                  | its map outputs are forgotten; only the lost partitions still needed are recomputed |
//!
//! Failures stay typed all the way: recovery decisions match on `EmberError` variants (under
//! any `Context` wrapping), never on messages.

pub mod config;
mod dag;
pub mod metrics;
pub mod stage;
pub mod task;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use arrow::record_batch::RecordBatch;

use ember_planner::stages::StageGraph;
use ember_planner::Result;

pub use config::JobConfig;
pub use metrics::{JobMetrics, StageMetrics, TaskMetrics, TaskStatus};
pub use stage::StageState;
pub use task::{TaskHook, TaskInfo};

use crate::executor::LocalCluster;
use crate::udf::FunctionRegistry;

/// What a job needs besides the graph and the cluster.
#[derive(Clone)]
pub struct JobContext {
    pub functions: Arc<FunctionRegistry>,
    pub config: JobConfig,
    /// Runs before every task attempt (fault injection, tests).
    pub hook: Option<Arc<dyn TaskHook>>,
}

impl JobContext {
    pub fn new(functions: Arc<FunctionRegistry>) -> Self {
        JobContext {
            functions,
            config: JobConfig::default(),
            hook: None,
        }
    }

    pub fn with_config(mut self, config: JobConfig) -> Self {
        self.config = config;
        self
    }

    pub fn with_hook(mut self, hook: Arc<dyn TaskHook>) -> Self {
        self.hook = Some(hook);
        self
    }
}

impl std::fmt::Debug for JobContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobContext")
            .field("config", &self.config)
            .field("hook", &self.hook.is_some())
            .finish()
    }
}

/// A finished job: the result rows in partition order, and what it took to get them.
#[derive(Debug)]
pub struct JobResult {
    /// The result stage's batches, one list per partition, in partition order.
    pub partitions: Vec<Vec<RecordBatch>>,
    pub metrics: JobMetrics,
}

impl JobResult {
    /// All result batches, partition after partition.
    pub fn into_batches(self) -> Vec<RecordBatch> {
        self.partitions.into_iter().flatten().collect()
    }

    pub fn num_rows(&self) -> usize {
        self.partitions.iter().flatten().map(|b| b.num_rows()).sum()
    }
}

/// Runs `graph` on `cluster` and returns the result stage's batches in partition order
/// (use [`JobResult::into_batches`] for a flat list).
///
/// Blocks the calling thread (which runs the scheduling loop; tasks run on the cluster's
/// pool). Must not be called from inside the cluster's own pool.
pub fn run_job(graph: &StageGraph, cluster: &LocalCluster, ctx: &JobContext) -> Result<JobResult> {
    dag::DagScheduler::new(graph, cluster, ctx)?.run()
}
