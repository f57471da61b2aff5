//! The placement rule: one pass over the stage graph in topological order.
//!
//! For each stage `s`:
//! - `c(s)` = its work ÷ the tasks that run at once (wall-clock seconds);
//! - `R(s)` = `c(s) + Σ R(p)` over parents `p` that are not durable — what losing `s`'s
//!   output costs to rebuild. A parent shared by two paths is counted once per path, so on
//!   diamond-shaped lineages `R` is an upper bound, erring towards an earlier checkpoint;
//! - `W(s)` = output bytes ÷ (write rate × tasks at once) + the commit's fixed cost;
//! - `depth(s)` = stages on the longest non-durable path ending at `s`.
//!
//! `s` is checkpointed when `R(s) ≥ √(2 · W(s) · MTBF_cluster)` (Young–Daly) or
//! `depth(s) > max_lineage_depth`. A checkpointed stage is durable: its children start
//! counting afresh. The result stage is never checkpointed automatically (its output goes
//! to the caller, not to a child). Each stage is visited once and looks only at its direct
//! parents, so the pass is linear in stages + edges and never recurses.

use std::collections::HashMap;

use crate::error::{EmberError, Result};
use crate::fingerprint::{stage_fingerprints, Fingerprint};
use crate::persist::PersistMode;
use crate::stages::{StageGraph, StageOutput};

use super::cost::{estimate_stage, CostInputs, Size};
use super::policy::CheckpointPolicy;

/// Why a stage is checkpointed.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckpointReason {
    /// The caller asked for it (`DataFrame::checkpoint()`, `CHECKPOINT TABLE`).
    Requested,
    /// The work since the last durable point reached the Young–Daly interval (seconds).
    YoungDaly { interval: f64 },
    /// The lineage since the last durable point grew deeper than the cap.
    LineageDepth { depth: usize, cap: usize },
}

/// The cost-model figures of one stage, in seconds (`None` = unknown: no statistics).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StageCost {
    /// Estimated time to compute the stage from its inputs.
    pub c: Option<f64>,
    /// Estimated time to rebuild the stage's output from the last durable points.
    pub r: Option<f64>,
    /// Estimated time to write the stage's output as a reliable checkpoint.
    pub w: Option<f64>,
    /// Stages since the last durable point, this one included.
    pub depth: usize,
}

/// A checkpoint the planner placed (or kept, when requested).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointDecision {
    pub stage: usize,
    /// The stage's fingerprint: names the checkpoint so a later run can reuse it.
    pub fingerprint: Fingerprint,
    pub cost: StageCost,
    pub reason: CheckpointReason,
}

impl CheckpointDecision {
    /// Marks `stage` for an explicit checkpoint before placement runs; placement keeps it
    /// and fills in the fingerprint and costs.
    pub fn requested(stage: usize) -> Self {
        CheckpointDecision {
            stage,
            fingerprint: Fingerprint(0),
            cost: StageCost::default(),
            reason: CheckpointReason::Requested,
        }
    }
}

/// The cost model's view of one stage, for EXPLAIN and for the scheduler.
#[derive(Debug, Clone, PartialEq)]
pub struct StageLineage {
    pub stage: usize,
    pub fingerprint: Fingerprint,
    pub cost: StageCost,
    /// Estimated output size (rows, bytes).
    pub output: Size,
    pub checkpoint: Option<CheckpointReason>,
}

/// The outcome of placement over a whole graph, one entry per stage in graph order.
#[derive(Debug, Clone, PartialEq)]
pub struct LineageReport {
    pub policy: CheckpointPolicy,
    pub stages: Vec<StageLineage>,
}

impl LineageReport {
    /// The checkpoints, in stage order.
    pub fn decisions(&self) -> Vec<CheckpointDecision> {
        self.stages
            .iter()
            .filter_map(|s| {
                s.checkpoint.as_ref().map(|reason| CheckpointDecision {
                    stage: s.stage,
                    fingerprint: s.fingerprint,
                    cost: s.cost,
                    reason: reason.clone(),
                })
            })
            .collect()
    }
}

/// Places checkpoints with the default cost inputs, records them in each
/// `Stage::checkpoint`, and returns them in stage order.
pub fn place_checkpoints(
    graph: &mut StageGraph,
    policy: &CheckpointPolicy,
) -> Result<Vec<CheckpointDecision>> {
    Ok(plan_checkpoints(graph, policy, &CostInputs::default())?.decisions())
}

/// The full placement pass: costs every stage, decides, writes the decisions into
/// `Stage::checkpoint` (requested checkpoints are kept, earlier automatic ones are
/// re-decided) and returns the per-stage report. Stages must be in topological order.
pub fn plan_checkpoints(
    graph: &mut StageGraph,
    policy: &CheckpointPolicy,
    inputs: &CostInputs,
) -> Result<LineageReport> {
    let fingerprints = stage_fingerprints(graph)?;
    let mut index: HashMap<usize, usize> = HashMap::with_capacity(graph.stages.len());
    let mut report: Vec<StageLineage> = Vec::with_capacity(graph.stages.len());
    let mut durable: Vec<bool> = Vec::with_capacity(graph.stages.len());

    for (i, (stage, (_, fingerprint))) in graph.stages.iter_mut().zip(fingerprints).enumerate() {
        let mut parent_outputs: HashMap<usize, Size> = HashMap::new();
        let mut parents: Vec<usize> = Vec::with_capacity(stage.parents.len());
        for p in &stage.parents {
            // stage_fingerprints already checked that parents come first.
            let pi = *index.get(p).ok_or_else(|| {
                EmberError::Internal(format!("stage {} reads unknown stage {p}", stage.id))
            })?;
            parent_outputs.insert(*p, report[pi].output);
            parents.push(pi);
        }

        let shuffle_kind = match &stage.output {
            StageOutput::Shuffle(kind) => Some(kind),
            StageOutput::Persist { .. } | StageOutput::Result => None,
        };
        let estimate = estimate_stage(&stage.plan, shuffle_kind, &parent_outputs, &inputs.weights);
        let measured = inputs.measured.get(&fingerprint);
        let work = measured.map(|m| m.task_secs).or(estimate.work_secs);
        let output = Size {
            rows: estimate.output.rows,
            bytes: measured
                .and_then(|m| m.output_bytes)
                .or(estimate.output.bytes),
        };

        let parallel = policy.parallelism(stage.partitions) as f64;
        let c = work.map(|w| w / parallel);
        let w = if policy.write_bytes_per_sec > 0.0 {
            output.bytes.map(|b| {
                b / (policy.write_bytes_per_sec * parallel) + inputs.checkpoint_commit_secs
            })
        } else {
            None
        };
        let mut r = c;
        let mut depth_below = 0;
        for &pi in &parents {
            if durable[pi] {
                continue;
            }
            r = r.zip(report[pi].cost.r).map(|(a, b)| (a + b).min(f64::MAX));
            depth_below = depth_below.max(report[pi].cost.depth);
        }
        let cost = StageCost {
            c,
            r,
            w,
            depth: depth_below + 1,
        };

        // An explicit `checkpoint()` is a durable point like a requested one.
        let requested = matches!(
            stage.checkpoint.as_ref().map(|d| &d.reason),
            Some(CheckpointReason::Requested)
        ) || matches!(stage.persist(), Some((_, PersistMode::Checkpoint)));
        let reason = if requested {
            Some(CheckpointReason::Requested)
        } else if policy.auto && shuffle_kind.is_some() {
            decide(policy, &cost)
        } else {
            None
        };

        stage.checkpoint = reason.as_ref().map(|reason| CheckpointDecision {
            stage: stage.id,
            fingerprint,
            cost,
            reason: reason.clone(),
        });
        durable.push(reason.is_some());
        index.insert(stage.id, i);
        report.push(StageLineage {
            stage: stage.id,
            fingerprint,
            cost,
            output,
            checkpoint: reason,
        });
    }
    Ok(LineageReport {
        policy: policy.clone(),
        stages: report,
    })
}

/// The automatic rule for one stage: Young–Daly when its figures are known, else (or also)
/// the depth cap.
fn decide(policy: &CheckpointPolicy, cost: &StageCost) -> Option<CheckpointReason> {
    if let (Some(r), Some(w)) = (cost.r, cost.w) {
        let interval = policy.young_daly_interval(w);
        if r > 0.0 && r >= interval {
            return Some(CheckpointReason::YoungDaly { interval });
        }
    }
    if cost.depth > policy.max_lineage_depth {
        return Some(CheckpointReason::LineageDepth {
            depth: cost.depth,
            cap: policy.max_lineage_depth,
        });
    }
    None
}
