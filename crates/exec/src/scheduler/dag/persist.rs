//! The scheduler's side of persisted plans (see `crate::persist`): preparing their stages at
//! job start (reusing committed checkpoints), registering what persist tasks kept,
//! committing reliable checkpoints once every partition is written, and turning lost blocks
//! and rejected checkpoints into recomputation.

use std::sync::Arc;
use std::time::Instant;

use ember_planner::fingerprint::persist_fingerprints;
use ember_planner::persist::{PersistId, PersistMode};
use ember_planner::{EmberError, Result};
use ember_storage::block_store::BlockId;
use ember_storage::checkpoint::{CheckpointStore, Fingerprint, LookupOutcome};

use super::{DagScheduler, RunningTask};
use crate::events::{EventKind, RecomputeCause};
use crate::persist::Kept;

/// How many times one checkpoint partition is rewritten after its file failed verification
/// before the job gives up (a store that damages every write); as `ember.task.maxFailures`.
const MAX_UNVERIFIED_WRITES: u32 = 4;

impl DagScheduler<'_> {
    /// The persisted plan stage `i` keeps, if it is a persist stage or tees a checkpoint.
    pub(super) fn persist_of(&self, i: usize) -> Option<(PersistId, PersistMode)> {
        self.graph.stages[i].persist()
    }

    fn checkpoint_store(&mut self) -> Result<CheckpointStore> {
        if let Some(store) = &self.checkpoints {
            return Ok(store.clone());
        }
        let store = CheckpointStore::open(&self.ctx.checkpoint_dir)
            .map_err(|e| e.context("cannot open ember.checkpoint.dir"))?;
        self.checkpoints = Some(store.clone());
        Ok(store)
    }

    /// Registers every persist stage of the graph. A reliable checkpoint already committed
    /// (earlier in this session, or by an earlier application with the same plan and inputs)
    /// replaces its lineage; anything else under that fingerprint is rejected and the
    /// checkpoint is written afresh by this job.
    pub(super) fn prepare_persisted(&mut self) -> Result<()> {
        let stages: Vec<(usize, PersistId, PersistMode)> = (0..self.graph.stages.len())
            .filter_map(|i| self.persist_of(i).map(|(id, mode)| (i, id, mode)))
            .collect();
        if stages.is_empty() {
            return Ok(());
        }
        let fingerprints = persist_fingerprints(self.graph)?;
        for (i, id, mode) in stages {
            let partitions = self.graph.stages[i].partitions;
            self.registry.prepare(id, mode, partitions);
            if mode != PersistMode::Checkpoint {
                continue;
            }
            let Some(fingerprint) = fingerprints[i] else {
                return Err(EmberError::Internal(format!(
                    "stage {} keeps a checkpoint but has no checkpoint fingerprint",
                    self.graph.stages[i].id
                )));
            };
            let fingerprint = Fingerprint(fingerprint.0);
            let store = self.checkpoint_store()?;
            let path = format!("{}/{fingerprint}", store.url());
            if self.registry.committed(id).is_some() {
                self.post_reused(&path, fingerprint);
                continue;
            }
            match store.lookup(fingerprint)? {
                LookupOutcome::Valid(checkpoint) if checkpoint.num_partitions() == partitions => {
                    self.registry.set_committed(id, Arc::new(checkpoint));
                    self.post_reused(&path, fingerprint);
                    continue;
                }
                LookupOutcome::Valid(checkpoint) => self.post_rejected(
                    &path,
                    format!(
                        "it has {} partitions, the plan now has {partitions}",
                        checkpoint.num_partitions()
                    ),
                ),
                LookupOutcome::Rejected { reason } => self.post_rejected(&path, reason),
                LookupOutcome::Absent => {}
            }
            let schema = self.graph.stages[i]
                .persisted_plan()
                .schema()
                .to_arrow_ref();
            let writer = store.begin(fingerprint, schema)?;
            self.registry.set_writer(id, writer);
        }
        Ok(())
    }

    fn post_reused(&self, path: &str, fingerprint: Fingerprint) {
        self.ctx.events.post(EventKind::CheckpointReused {
            job: Some(self.job),
            path: path.to_string(),
            fingerprint: fingerprint.to_string(),
        });
    }

    fn post_rejected(&self, path: &str, message: String) {
        self.ctx.events.post(EventKind::CheckpointRejected {
            job: Some(self.job),
            path: path.to_string(),
            message,
        });
    }

    /// Registers what a successful persist task kept.
    pub(super) fn on_persisted(&mut self, task: &RunningTask, kept: Kept) -> Result<()> {
        let Some((id, _)) = self.persist_of(task.stage) else {
            return Err(EmberError::Internal(format!(
                "stage {} returned persisted output but is not a persist stage",
                self.graph.stages[task.stage].id
            )));
        };
        match kept {
            Kept::Block { dropped } => {
                self.registry
                    .register_block(id, task.partition, task.executor);
                self.blocks_dropped(dropped);
            }
            Kept::Checkpoint {
                info,
                in_memory,
                dropped,
            } => {
                if let (Some(faults), Some(store)) = (&self.ctx.faults, &self.checkpoints) {
                    if let Some(writer) = self.registry.writer(id) {
                        let fingerprint = writer.fingerprint();
                        let file = format!("{fingerprint}/{}", info.partition);
                        if faults.corrupt_checkpoint(&file) {
                            store.corrupt_partition_file(fingerprint, info.partition)?;
                        }
                    }
                }
                if in_memory {
                    self.registry
                        .register_block(id, task.partition, task.executor);
                }
                self.registry.record_written(id, info);
                self.blocks_dropped(dropped);
            }
        }
        Ok(())
    }

    /// `MemoryOnly` blocks evicted by a put are lost.
    fn blocks_dropped(&mut self, dropped: Vec<BlockId>) {
        for block in dropped {
            if let Some(executor) = self.registry.forget_block(block.cache_id, block.partition) {
                self.block_lost(block.cache_id, block.partition, executor, None);
            }
        }
    }

    /// A cached block is gone: post `CacheBlockLost`, and if this job computes it, remember
    /// why its partition will be recomputed.
    fn block_lost(
        &mut self,
        id: PersistId,
        partition: usize,
        executor: usize,
        cause: Option<RecomputeCause>,
    ) {
        self.ctx.events.post(EventKind::CacheBlockLost {
            job: Some(self.job),
            cache: id.to_string(),
            partition,
            executor,
        });
        let stage = (0..self.graph.stages.len())
            .find(|&i| self.persist_of(i).is_some_and(|(pid, _)| pid == id));
        if let Some(i) = stage {
            let cause = cause.unwrap_or(RecomputeCause::CacheBlockLost);
            let from = (cause == RecomputeCause::ExecutorLost).then_some(executor);
            self.runs[i].lost.insert(partition, (cause, from));
        }
    }

    /// Commits every reliable checkpoint whose partitions are all written, before any
    /// consumer reads it; posts `CheckpointWritten`.
    pub(super) fn commit_ready_checkpoints(&mut self) -> Result<()> {
        for i in 0..self.graph.stages.len() {
            let Some((id, PersistMode::Checkpoint)) = self.persist_of(i) else {
                continue;
            };
            let Some((writer, infos)) = self.registry.ready_to_commit(id) else {
                continue;
            };
            let bad = writer.verify_written(&infos);
            if !bad.is_empty() {
                self.reject_unverified(i, id, writer.fingerprint(), bad)?;
                continue;
            }
            let stage = &self.graph.stages[i];
            let checkpoint = writer.commit(infos, &stage.persisted_plan().display_indent())?;
            self.ctx.events.post(EventKind::CheckpointWritten {
                job: Some(self.job),
                stage: Some(stage.id),
                path: format!("{}/{}", self.ctx.checkpoint_dir, checkpoint.fingerprint()),
                fingerprint: checkpoint.fingerprint().to_string(),
                num_partitions: checkpoint.num_partitions(),
                rows: checkpoint.total_rows() as u64,
                bytes: checkpoint.manifest().total_bytes(),
            });
            self.registry.set_committed(id, Arc::new(checkpoint));
            self.committed_at.insert(id, Instant::now());
        }
        Ok(())
    }

    /// Files of the checkpoint of `id` (stage `i`) read back damaged or not at all before the
    /// commit: the checkpoint is rejected (`CheckpointRejected`) and those partitions are
    /// computed and written again from lineage; the good files stay and the commit waits.
    fn reject_unverified(
        &mut self,
        i: usize,
        id: PersistId,
        fingerprint: Fingerprint,
        bad: Vec<(usize, String)>,
    ) -> Result<()> {
        let store = self.checkpoint_store()?;
        let reasons: Vec<String> = bad.iter().map(|(_, why)| why.clone()).collect();
        self.post_rejected(
            &format!("{}/{fingerprint}", store.url()),
            format!("written files failed verification: {}", reasons.join("; ")),
        );
        for (partition, why) in bad {
            let failures = self.registry.forget_written(id, partition);
            if failures >= MAX_UNVERIFIED_WRITES {
                return Err(EmberError::Execution(format!(
                    "checkpoint {fingerprint} at {}: partition {partition} was written \
                     {failures} times and its file failed verification every time; last: {why}",
                    store.url()
                )));
            }
            self.runs[i]
                .lost
                .insert(partition, (RecomputeCause::CheckpointRejected, None));
        }
        Ok(())
    }

    /// A consumer could not read partition `partition` of persist stage `parent`: the block
    /// is forgotten (`CacheBlockLost`) or the whole checkpoint rejected
    /// (`CheckpointRejected`: it is written again from lineage).
    pub(super) fn on_persisted_unreadable(
        &mut self,
        task: &RunningTask,
        parent: usize,
        partition: usize,
        why: &str,
    ) -> Result<()> {
        let Some((id, mode)) = self.persist_of(parent) else {
            return Ok(());
        };
        if mode == PersistMode::Checkpoint {
            if self
                .committed_at
                .get(&id)
                .is_some_and(|at| task.started < *at)
            {
                // Stale: the reader started before the current checkpoint was committed.
                return Ok(());
            }
            let Some(rejected) = self.registry.reject(id) else {
                return Ok(());
            };
            let store = self.checkpoint_store()?;
            let fingerprint = rejected.fingerprint();
            self.post_rejected(&format!("{}/{fingerprint}", store.url()), why.to_string());
            let schema = rejected.schema().clone();
            self.registry
                .set_writer(id, store.begin(fingerprint, schema)?);
            for p in 0..self.graph.stages[parent].partitions {
                self.runs[parent]
                    .lost
                    .insert(p, (RecomputeCause::CheckpointRejected, None));
            }
            return Ok(());
        }
        if let Some(executor) = self.registry.forget_block(id, partition) {
            self.block_lost(id, partition, executor, None);
        }
        Ok(())
    }

    /// The job is over: the in-memory copies of the reliable checkpoints it wrote are dropped
    /// from every executor (later jobs read the committed files; a reliable checkpoint does
    /// not hold executor memory the way a cache does).
    pub(super) fn release_checkpoint_copies(&mut self) {
        for i in 0..self.graph.stages.len() {
            let Some((id, PersistMode::Checkpoint)) = self.persist_of(i) else {
                continue;
            };
            if self.registry.forget_checkpoint_copies(id) {
                for executor in self.cluster.executors() {
                    executor.blocks().remove_all_for(id);
                }
            }
        }
    }

    /// `executor` is lost: so are the blocks it kept.
    pub(super) fn on_executor_blocks_lost(&mut self, executor: usize) {
        for (id, partition) in self.registry.remove_executor(executor) {
            self.block_lost(id, partition, executor, Some(RecomputeCause::ExecutorLost));
        }
    }
}
