//! The stage graph: the physical plan cut at every Exchange. This is Ember's lineage: each
//! stage says how to compute any one of its partitions from its parents' shuffle outputs, so a
//! lost partition can be recomputed alone, and every fault-tolerance mechanism (retries,
//! recomputation, checkpoints) works on this graph.
//!
//! ```text
//!   Scan → Filter → Exchange(Hash) → Aggregate → Exchange(Single) → Sort
//!   └──────── stage 0 ─────────┘   └──── stage 1 ────────┘      └ stage 2 (result)
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use crate::error::{EmberError, Result};
use crate::lineage::CheckpointDecision;
use crate::persist::{PersistId, PersistMode};
use crate::physical::{ExchangeKind, PhysicalPlan};

/// Where a stage's output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageOutput {
    /// Map stage: rows are split by the kind and written as shuffle blocks.
    Shuffle(ExchangeKind),
    /// Persist stage: each partition is kept as it is (block store or checkpoint store),
    /// read by the consumer partition with the same index.
    Persist { id: PersistId, mode: PersistMode },
    /// The job's last stage: its partitions are the query result, in partition order.
    Result,
}

#[derive(Debug, Clone)]
pub struct Stage {
    pub id: usize,
    /// The pipeline run by each task. Leaves reading parent output are
    /// `PhysicalPlan::ShuffleRead { stage: parent_id, .. }`.
    pub plan: Arc<PhysicalPlan>,
    pub output: StageOutput,
    /// Number of tasks (= partitions of `plan`).
    pub partitions: usize,
    /// Stages whose shuffle output this stage reads.
    pub parents: Vec<usize>,
    /// Whether this stage's output is written as a reliable checkpoint, and why. `None` from
    /// the cutter; set by `crate::lineage::place_checkpoints` (or by the caller, as
    /// `CheckpointDecision::requested`, for an explicit checkpoint).
    pub checkpoint: Option<CheckpointDecision>,
    /// A reliable checkpoint this stage writes as it computes it (see [`StageTee`]).
    pub tee: Option<StageTee>,
}

/// A reliable checkpoint computed inside the stage that reads it instead of in a stage of
/// its own: the stage's plan holds the `PhysicalPlan::Persist` node, whose operator hands
/// each batch to the checkpoint's file on its way up to the rest of the stage.
///
/// A persist stage of its own would hold every partition between the two stages (in
/// memory) and wait for all of them before the reader starts; teeing writes the file while
/// the rows flow, so a checkpoint costs its encoding and little more. Only a checkpoint
/// read by one stage, once, whose only parents are below the checkpoint, is teed: once it
/// is committed, the stage reads it instead of running anything below it, so the lineage
/// is cut for the stage as a whole (see [`build_stage_graph`]).
#[derive(Debug, Clone)]
pub struct StageTee {
    pub id: PersistId,
    pub mode: PersistMode,
    /// The plan below the `Persist` node: what the checkpoint holds.
    pub input: Arc<PhysicalPlan>,
}

impl Stage {
    /// The persisted plan this stage keeps: its output (a persist stage) or its tee.
    pub fn persist(&self) -> Option<(PersistId, PersistMode)> {
        match (&self.output, &self.tee) {
            (StageOutput::Persist { id, mode }, _) => Some((*id, *mode)),
            (_, Some(tee)) => Some((tee.id, tee.mode)),
            _ => None,
        }
    }

    /// The plan whose rows the stage's persisted plan keeps: the whole stage plan for a
    /// persist stage, the part below the `Persist` node for a tee.
    pub fn persisted_plan(&self) -> &Arc<PhysicalPlan> {
        self.tee.as_ref().map_or(&self.plan, |tee| &tee.input)
    }
}

/// Stages in topological order: every parent comes before its children; the last stage is
/// the result stage.
#[derive(Debug, Clone)]
pub struct StageGraph {
    pub stages: Vec<Stage>,
}

impl StageGraph {
    pub fn result_stage(&self) -> &Stage {
        self.stages
            .last()
            .expect("a stage graph has a result stage")
    }

    pub fn stage(&self, id: usize) -> Option<&Stage> {
        self.stages.iter().find(|s| s.id == id)
    }

    /// Stages that read `id`'s output.
    pub fn children_of(&self, id: usize) -> Vec<usize> {
        self.stages
            .iter()
            .filter(|s| s.parents.contains(&id))
            .map(|s| s.id)
            .collect()
    }
}

/// Cuts `plan` at every Exchange. An Exchange node shared by several consumers (the same
/// `Arc`) becomes one stage read by all of them. A reliable checkpoint becomes a stage of its
/// own, unless it can be teed into the one stage that reads it ([`StageTee`]).
pub fn build_stage_graph(plan: &Arc<PhysicalPlan>) -> Result<StageGraph> {
    let separate = cut_stages(plan, &HashSet::new())?;
    let teed = teeable_checkpoints(&separate);
    if teed.is_empty() {
        return Ok(separate);
    }
    cut_stages(plan, &teed)
}

/// Cuts `plan` into stages, leaving the `Persist` nodes of `teed` inside their readers.
fn cut_stages(plan: &Arc<PhysicalPlan>, teed: &HashSet<PersistId>) -> Result<StageGraph> {
    let mut cutter = StageCutter {
        stages: Vec::new(),
        by_exchange: HashMap::new(),
        by_persist: HashMap::new(),
        teed,
        tee: None,
    };
    let (root, parents) = cutter.cut(plan)?;
    let id = cutter.stages.len();
    let tee = cutter.tee.take();
    cutter.stages.push(Stage {
        id,
        partitions: root.output_partitions(),
        plan: root,
        output: StageOutput::Result,
        parents,
        checkpoint: None,
        tee,
    });
    Ok(StageGraph {
        stages: cutter.stages,
    })
}

/// The reliable checkpoints of `graph` (cut without tees) that can be teed into their
/// reader: read once, by one stage whose only parent is the checkpoint's stage (so a
/// committed checkpoint is all the reader needs) and that is not a persist stage itself (a
/// stage tees at most one checkpoint).
fn teeable_checkpoints(graph: &StageGraph) -> HashSet<PersistId> {
    let mut teed = HashSet::new();
    for stage in &graph.stages {
        let StageOutput::Persist {
            id,
            mode: PersistMode::Checkpoint,
        } = stage.output
        else {
            continue;
        };
        let [reader] = graph.children_of(stage.id)[..] else {
            continue;
        };
        let Some(reader) = graph.stage(reader) else {
            continue;
        };
        let reader_persists = matches!(reader.output, StageOutput::Persist { .. });
        if !reader_persists && reader.parents == [stage.id] && persist_reads(&reader.plan, id) == 1
        {
            teed.insert(id);
        }
    }
    teed
}

/// How many `PersistRead`s of `id` running `plan` performs (a node reached twice counts
/// twice, as it runs twice). A stage's plan can be thousands of nodes deep (a long chain of
/// projections), so the stack grows on demand.
#[recursive::recursive]
fn persist_reads(plan: &PhysicalPlan, id: PersistId) -> usize {
    match plan {
        PhysicalPlan::PersistRead { id: read, .. } => usize::from(*read == id),
        _ => plan.inputs().iter().map(|i| persist_reads(i, id)).sum(),
    }
}

struct StageCutter<'a> {
    stages: Vec<Stage>,
    /// Exchange node identity → the stage that computes its input.
    by_exchange: HashMap<*const PhysicalPlan, usize>,
    /// Persist id → the stage that computes it (one stage however often it is read).
    by_persist: HashMap<PersistId, usize>,
    /// Checkpoints left inside their reader's stage.
    teed: &'a HashSet<PersistId>,
    /// The tee met while cutting the stage being built (it belongs to the next stage
    /// pushed: the first stage finished above it).
    tee: Option<StageTee>,
}

impl StageCutter<'_> {
    /// Returns `plan` with Exchanges replaced by ShuffleReads, and the stages it reads.
    /// Recursion depth is the plan's depth (thousands of nodes for a long DataFrame loop),
    /// so the stack grows on demand.
    #[recursive::recursive]
    fn cut(&mut self, plan: &Arc<PhysicalPlan>) -> Result<(Arc<PhysicalPlan>, Vec<usize>)> {
        if let PhysicalPlan::Exchange { input, kind } = plan.as_ref() {
            let key = Arc::as_ptr(plan);
            let stage_id = match self.by_exchange.get(&key) {
                Some(id) => *id,
                None => {
                    let (map_plan, parents) = self.cut(input)?;
                    let id = self.stages.len();
                    let tee = self.tee.take();
                    self.stages.push(Stage {
                        id,
                        partitions: map_plan.output_partitions(),
                        plan: map_plan,
                        output: StageOutput::Shuffle(kind.clone()),
                        parents,
                        checkpoint: None,
                        tee,
                    });
                    self.by_exchange.insert(key, id);
                    id
                }
            };
            let map_partitions = self.stages[stage_id].partitions;
            let read = PhysicalPlan::ShuffleRead {
                stage: stage_id,
                kind: kind.clone(),
                map_partitions,
                partitions: kind.partition_count().unwrap_or(1),
                schema: input.schema().clone(),
            };
            return Ok((Arc::new(read), vec![stage_id]));
        }
        if let PhysicalPlan::Persist { input, id, mode } = plan.as_ref() {
            if self.teed.contains(id) {
                let (input, parents) = self.cut(input)?;
                if let Some(other) = &self.tee {
                    return Err(EmberError::Internal(format!(
                        "checkpoints {} and {id} would be teed into one stage",
                        other.id
                    )));
                }
                self.tee = Some(StageTee {
                    id: *id,
                    mode: *mode,
                    input: input.clone(),
                });
                let persist = PhysicalPlan::Persist {
                    input,
                    id: *id,
                    mode: *mode,
                };
                return Ok((Arc::new(persist), parents));
            }
            let stage_id = match self.by_persist.get(id) {
                Some(stage) => *stage,
                None => {
                    let (persist_plan, parents) = self.cut(input)?;
                    let stage = self.stages.len();
                    let tee = self.tee.take();
                    self.stages.push(Stage {
                        id: stage,
                        partitions: persist_plan.output_partitions(),
                        plan: persist_plan,
                        output: StageOutput::Persist {
                            id: *id,
                            mode: *mode,
                        },
                        parents,
                        checkpoint: None,
                        tee,
                    });
                    self.by_persist.insert(*id, stage);
                    stage
                }
            };
            let read = PhysicalPlan::PersistRead {
                stage: stage_id,
                id: *id,
                mode: *mode,
                partitions: self.stages[stage_id].partitions,
                schema: input.schema().clone(),
            };
            return Ok((Arc::new(read), vec![stage_id]));
        }
        let inputs = plan.inputs();
        if inputs.is_empty() {
            return Ok((plan.clone(), vec![]));
        }
        let mut new_inputs = Vec::with_capacity(inputs.len());
        let mut parents = Vec::new();
        for input in inputs {
            let (p, ps) = self.cut(input)?;
            new_inputs.push(p);
            for s in ps {
                if !parents.contains(&s) {
                    parents.push(s);
                }
            }
        }
        Ok((Arc::new(plan.with_new_inputs(new_inputs)?), parents))
    }
}

impl fmt::Display for StageGraph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for stage in &self.stages {
            let output = match &stage.output {
                StageOutput::Shuffle(kind) => format!("shuffle {kind}"),
                StageOutput::Persist { id, mode } => format!("persist {id} ({mode})"),
                StageOutput::Result => "result".to_string(),
            };
            let parents = if stage.parents.is_empty() {
                "none".to_string()
            } else {
                stage
                    .parents
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let tee = match &stage.tee {
                Some(tee) => format!(", tees: persist {} ({})", tee.id, tee.mode),
                None => String::new(),
            };
            writeln!(
                f,
                "Stage {} [{} tasks, output: {}, parents: {}{tee}]",
                stage.id, stage.partitions, output, parents
            )?;
            for line in stage.plan.display_indent().lines() {
                writeln!(f, "  {line}")?;
            }
        }
        Ok(())
    }
}

/// `plan` with a reliable checkpoint (`PhysicalPlan::Persist`, mode `Checkpoint`) inserted
/// below every Exchange whose stage — numbered as [`build_stage_graph`] numbers them — is a
/// key of `checkpoints`; the value is the persist id to use (stable across jobs, e.g. from
/// the stage's fingerprint, so a later job or a restarted application finds the checkpoint).
///
/// This is how automatic checkpoints run: the chosen map stage tees its rows into the
/// checkpoint store as they are first computed, on their way to the shuffle ([`StageTee`];
/// the stage numbers stay those of the graph without the checkpoint), and recovery and
/// later jobs read the checkpoint instead of the lineage below it.
pub fn insert_checkpoints(
    plan: &Arc<PhysicalPlan>,
    checkpoints: &HashMap<usize, PersistId>,
) -> Result<Arc<PhysicalPlan>> {
    let mut inserter = CheckpointInserter {
        checkpoints,
        next_stage: 0,
        done: HashMap::new(),
        persists_seen: HashMap::new(),
        teed: teeable_checkpoints(&cut_stages(plan, &HashSet::new())?),
    };
    inserter.rewrite(plan)
}

struct CheckpointInserter<'a> {
    checkpoints: &'a HashMap<usize, PersistId>,
    /// The id the cutter would give the next stage.
    next_stage: usize,
    /// Rewritten nodes by identity (shared subplans stay shared, exchanges count once).
    done: HashMap<*const PhysicalPlan, Arc<PhysicalPlan>>,
    /// Persist ids already counted as a stage (the cutter makes one stage per id).
    persists_seen: HashMap<PersistId, ()>,
    /// Checkpoints the cutter tees into their reader: no stage of their own.
    teed: HashSet<PersistId>,
}

impl CheckpointInserter<'_> {
    /// Mirrors `StageCutter::cut`'s traversal order so stage numbers agree. Recursion
    /// depth is the plan's depth, so the stack grows on demand.
    #[recursive::recursive]
    fn rewrite(&mut self, plan: &Arc<PhysicalPlan>) -> Result<Arc<PhysicalPlan>> {
        let key = Arc::as_ptr(plan);
        if let Some(done) = self.done.get(&key) {
            return Ok(done.clone());
        }
        let rewritten = match plan.as_ref() {
            PhysicalPlan::Exchange { input, kind } => {
                let input = self.rewrite(input)?;
                let stage = self.next_stage;
                self.next_stage += 1;
                let input = match self.checkpoints.get(&stage) {
                    Some(id) => Arc::new(PhysicalPlan::Persist {
                        input,
                        id: *id,
                        mode: PersistMode::Checkpoint,
                    }),
                    None => input,
                };
                Arc::new(PhysicalPlan::Exchange {
                    input,
                    kind: kind.clone(),
                })
            }
            PhysicalPlan::Persist { input, id, .. } => {
                let new_input = self.rewrite(input)?;
                if !self.teed.contains(id) && self.persists_seen.insert(*id, ()).is_none() {
                    self.next_stage += 1;
                }
                Arc::new(plan.with_new_inputs(vec![new_input])?)
            }
            _ => {
                let inputs = plan.inputs();
                if inputs.is_empty() {
                    plan.clone()
                } else {
                    let new_inputs = inputs
                        .into_iter()
                        .map(|i| self.rewrite(i))
                        .collect::<Result<Vec<_>>>()?;
                    Arc::new(plan.with_new_inputs(new_inputs)?)
                }
            }
        };
        self.done.insert(key, rewritten.clone());
        Ok(rewritten)
    }
}

#[cfg(test)]
mod tests;
