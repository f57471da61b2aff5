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
//! | executor lost (killed, or silent past `ember.network.timeout`) | its map outputs are forgotten, its running tasks resubmitted; only the lost partitions still needed are recomputed; the cluster starts a replacement |
//! | a straggler (speculation on)   | a copy runs on another executor; the first to finish wins, the other is killed |
//! | a second attempt finishes after the first committed | its output is discarded (`CommitDenied`) |
//!
//! Everything above is posted to the job's [`EventLog`] (task start/end with typed reasons,
//! stage attempts, recomputed partitions and their cause) and recorded in [`JobMetrics`].
//! Injected faults ([`FaultInjector`]) take the same paths: task faults through the task
//! hook, executor kills and hangs when a stage reaches the planned percentage.
//!
//! Failures stay typed all the way: recovery decisions match on `EmberError` variants (under
//! any `Context` wrapping), never on messages.

pub mod config;
mod dag;
#[cfg(test)]
mod fault_tests;
pub mod metrics;
pub mod stage;
pub mod task;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use arrow::record_batch::RecordBatch;

use ember_planner::physical::PhysicalPlan;
use ember_planner::stages::StageGraph;
use ember_planner::Result;

pub use config::{JobConfig, SpeculationConfig};
pub use metrics::{JobMetrics, StageMetrics, TaskMetrics, TaskStatus};
pub use stage::StageState;
pub use task::{TaskHook, TaskInfo};

use crate::events::EventLog;
use ember_storage::checkpoint::DEFAULT_CHECKPOINT_DIR;

/// Where reliable checkpoints go (an object_store URL or a local path).
pub const CHECKPOINT_DIR_KEY: &str = "ember.checkpoint.dir";
use crate::executor::LocalCluster;
use crate::fault::{FaultInjector, JobShape};
use crate::udf::FunctionRegistry;

/// What a job needs besides the graph and the cluster.
#[derive(Clone)]
pub struct JobContext {
    pub functions: Arc<FunctionRegistry>,
    pub config: JobConfig,
    /// Runs before every task attempt (tests).
    pub hook: Option<Arc<dyn TaskHook>>,
    /// Injected faults (`ember.fault.plan`, `ember.fault.chaos.*`): task faults run before
    /// each attempt, executor faults when a stage reaches their percentage.
    pub faults: Option<Arc<FaultInjector>>,
    /// Where job, stage and task events go (disabled: nothing is recorded).
    pub events: Arc<EventLog>,
    /// `ember.checkpoint.dir`: where reliable checkpoints are written and looked up.
    pub checkpoint_dir: String,
}

impl JobContext {
    pub fn new(functions: Arc<FunctionRegistry>) -> Self {
        JobContext {
            functions,
            config: JobConfig::default(),
            hook: None,
            faults: None,
            events: Arc::new(EventLog::disabled()),
            checkpoint_dir: DEFAULT_CHECKPOINT_DIR.to_string(),
        }
    }

    /// A context from session settings: the scheduler keys ([`JobConfig::from_settings`]),
    /// the fault keys (a fresh injector per job: stage ids restart with every plan) and the
    /// cluster's event log.
    pub fn from_settings(
        functions: Arc<FunctionRegistry>,
        get: impl Fn(&str) -> Option<String>,
        cluster: &LocalCluster,
    ) -> Result<Self> {
        let config = JobConfig::from_settings(&get)?;
        let faults =
            FaultInjector::from_settings(&get, cluster.executor_count(), config.max_task_failures)?;
        let mut ctx = JobContext::new(functions)
            .with_config(config)
            .with_events(cluster.events().clone());
        if let Some(faults) = faults {
            ctx = ctx.with_faults(Arc::new(faults));
        }
        if let Some(dir) = get(CHECKPOINT_DIR_KEY) {
            ctx.checkpoint_dir = dir;
        }
        Ok(ctx)
    }

    pub fn with_faults(mut self, faults: Arc<FaultInjector>) -> Self {
        self.faults = Some(faults);
        self
    }

    pub fn with_events(mut self, events: Arc<EventLog>) -> Self {
        self.events = events;
        self
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
            .field(
                "faults",
                &self.faults.as_ref().map(|f| f.plan().to_string()),
            )
            .field("events", &self.events)
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

/// Whether any stage reads a table or persisted data: jobs over constants only (`SELECT 1`,
/// the rows of `EXPLAIN` collected as a DataFrame) are not the query a fault plan is aimed
/// at, so its faults are not checked against them.
fn reads_data(graph: &StageGraph) -> bool {
    // A stack, not recursion: a stage's pipeline can be thousands of nodes deep.
    let mut pending: Vec<&PhysicalPlan> = graph.stages.iter().map(|s| s.plan.as_ref()).collect();
    while let Some(plan) = pending.pop() {
        if matches!(
            plan,
            PhysicalPlan::Scan(_) | PhysicalPlan::PersistRead { .. }
        ) {
            return true;
        }
        pending.extend(plan.inputs().into_iter().map(|p| p.as_ref()));
    }
    false
}

/// Runs `graph` on `cluster` and returns the result stage's batches in partition order
/// (use [`JobResult::into_batches`] for a flat list).
///
/// Blocks the calling thread (which runs the scheduling loop; tasks run on the cluster's
/// pool). Must not be called from inside the cluster's own pool.
pub fn run_job(graph: &StageGraph, cluster: &LocalCluster, ctx: &JobContext) -> Result<JobResult> {
    if let Some(faults) = ctx.faults.as_ref().filter(|_| reads_data(graph)) {
        faults.plan().check_against(&JobShape {
            stages: graph.stages.iter().map(|s| (s.id, s.partitions)).collect(),
            max_task_failures: ctx.config.max_task_failures,
        })?;
    }
    dag::DagScheduler::new(graph, cluster, ctx)?.run()
}
