//! The query pipeline every result goes through, whether it came from SQL or the DataFrame
//! API: optimize the logical plan, plan it physically, cut it into stages, run the stages on
//! the session's executors.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use ember_exec::scheduler::JobMetrics;
use ember_planner::lineage::{
    plan_checkpoints, CheckpointPolicy, CheckpointReason, CostInputs, LineageReport,
};
use ember_planner::logical::LogicalPlan;
use ember_planner::optimizer::Optimizer;
use ember_planner::persist::PersistId;
use ember_planner::physical::planner::{create_physical_plan, PhysicalPlannerConfig};
use ember_planner::physical::PhysicalPlan;
use ember_planner::stages::{build_stage_graph, insert_checkpoints, StageGraph, StageOutput};
use ember_planner::Result;

use crate::config::SessionConfig;

/// A query planned all the way down, kept whole so EXPLAIN can show every step.
#[derive(Debug, Clone)]
pub struct PreparedQuery {
    pub logical: Arc<LogicalPlan>,
    pub optimized: Arc<LogicalPlan>,
    pub physical: Arc<PhysicalPlan>,
    pub stages: StageGraph,
    /// Per stage: recompute cost, write cost and whether (and why) it is checkpointed.
    pub lineage: LineageReport,
}

/// Cuts `physical` into stages and places automatic checkpoints (`ember.checkpoint.auto`,
/// DESIGN.md "Checkpoint placement"): every map stage the cost model picks gets a reliable
/// checkpoint below its shuffle, keyed by the stage's fingerprint so later jobs and restarted
/// applications reuse it. Returns the final plan, its stages and the placement report.
fn place_automatic_checkpoints(
    physical: Arc<PhysicalPlan>,
    config: &SessionConfig,
) -> Result<(Arc<PhysicalPlan>, StageGraph, LineageReport)> {
    let policy = CheckpointPolicy::from_settings(|k| config.get(k).map(str::to_string))?;
    let mut stages = build_stage_graph(&physical)?;
    let report = plan_checkpoints(&mut stages, &policy, &CostInputs::default())?;
    let automatic: HashMap<usize, PersistId> = stages
        .stages
        .iter()
        .filter_map(|s| match (&s.output, &s.checkpoint) {
            (StageOutput::Shuffle(_), Some(d)) if d.reason != CheckpointReason::Requested => {
                // The high bit keeps these ids apart from the session's counter.
                Some((s.id, d.fingerprint.0 | (1 << 63)))
            }
            _ => None,
        })
        .collect();
    if automatic.is_empty() {
        return Ok((physical, stages, report));
    }
    let physical = insert_checkpoints(&physical, &automatic)?;
    let mut stages = build_stage_graph(&physical)?;
    let report = plan_checkpoints(&mut stages, &policy, &CostInputs::default())?;
    Ok((physical, stages, report))
}

impl PreparedQuery {
    /// Plans `plan` with the knobs of `config`.
    pub fn plan(plan: &Arc<LogicalPlan>, config: &SessionConfig) -> Result<Self> {
        Self::plan_with_root(plan, config, |physical| physical)
    }

    /// Plans `plan` like [`plan`](Self::plan), with `root` put on top of the physical plan
    /// before it is cut into stages: a write wraps the query's result stage in its
    /// `Write` operator this way, so the query runs exactly as it would for `collect`.
    pub fn plan_with_root(
        plan: &Arc<LogicalPlan>,
        config: &SessionConfig,
        root: impl FnOnce(Arc<PhysicalPlan>) -> Arc<PhysicalPlan>,
    ) -> Result<Self> {
        let optimized = Optimizer::default()
            .optimize(plan.clone())
            .map_err(|e| e.context("while optimizing the query"))?;
        let physical = root(create_physical_plan(&optimized, &physical_config(config))?);
        let (physical, stages, lineage) = place_automatic_checkpoints(physical, config)?;
        Ok(PreparedQuery {
            logical: plan.clone(),
            optimized,
            physical,
            stages,
            lineage,
        })
    }

    /// The schema of the result batches.
    pub fn schema(&self) -> SchemaRef {
        self.logical.schema().to_arrow_ref()
    }

    /// EXPLAIN's sections: (name, text).
    pub fn explain_sections(&self) -> Vec<(&'static str, String)> {
        vec![
            ("logical_plan", self.logical.display_indent()),
            ("optimized_logical_plan", self.optimized.display_indent()),
            ("physical_plan", self.physical.display_indent()),
            ("stage_graph", self.stages.to_string()),
            ("checkpoints", self.lineage.explain()),
        ]
    }
}

/// The physical planner's knobs from the session config.
pub fn physical_config(config: &SessionConfig) -> PhysicalPlannerConfig {
    PhysicalPlannerConfig {
        target_partitions: config.shuffle_partitions(),
        broadcast_threshold_bytes: config.broadcast_threshold_bytes(),
        // A broadcast build side is held whole by every task: at most 1/16 of a set budget.
        relative_broadcast_max_bytes: config.executor_memory().map_or(usize::MAX, |m| m / 16),
        dynamic_filters: config.dynamic_filters(),
    }
}

/// A query's result: the batches of each result partition, in partition order.
#[derive(Debug, Clone)]
pub struct QueryResult {
    pub schema: SchemaRef,
    pub partitions: Vec<Vec<RecordBatch>>,
    /// What running it took (absent for results computed without a job, e.g. SHOW).
    pub metrics: Option<JobMetrics>,
}

impl QueryResult {
    /// All batches, partition after partition.
    pub fn into_batches(self) -> Vec<RecordBatch> {
        self.partitions.into_iter().flatten().collect()
    }

    pub fn num_rows(&self) -> usize {
        self.partitions
            .iter()
            .flatten()
            .map(RecordBatch::num_rows)
            .sum()
    }
}
