//! Grace hash join: the path a join takes when its build side does not fit its memory share.
//!
//! Both inputs are hash-partitioned on the join keys into [`FANOUT`] spill files each, with a
//! seed of their own (neither the shuffle's, whose partitions all share `hash % n`, nor the
//! hash table's), so equal keys land in the same partition number on both sides. Partition
//! pairs are then joined one at a time with the ordinary in-memory join, holding only one
//! build partition in memory. A build partition that still does not fit is partitioned again
//! with the next level's seed, up to [`MAX_LEVELS`] levels; beyond that the rows almost
//! certainly share one key and no further split helps, so the join fails with an error that
//! says so.
//!
//! ```text
//!   build ──► B0 B1 … B15      probe ──► P0 P1 … P15       (level 0, seed 0)
//!   join(B0,P0), join(B1,P1), …
//!        B7 too big ──► B7.0 … B7.15, P7 ──► P7.0 … P7.15  (level 1, seed 1)
//! ```
//!
//! Every join type gives the rows of the in-memory path (the order differs: partition by
//! partition). Unmatched rows are found per partition, which is enough because a row can
//! only match rows of its own partition. Rows with a NULL key never match: they are dropped
//! where the join type does not output them unmatched, and otherwise spread round-robin so
//! they cannot pile up in one partition. NOT IN needs two facts about the *whole* build
//! side — whether it has a NULL key (then nothing passes, decided before probing) and
//! whether it is empty — which are taken while the build side is partitioned.

use std::sync::Arc;

use arrow::array::{Array, RecordBatch, UInt32Array};
use arrow::compute::{take_record_batch, BatchCoalescer};
use arrow::datatypes::SchemaRef;
use datafusion_common::hash_utils::{create_hashes, RandomState};

use ember_planner::logical::JoinType;
use ember_planner::table::BatchIter;
use ember_planner::{EmberError, Result};

use super::build_side::{concat_columns, index_memory};
use super::join_stream::{JoinOutput, JoinStream};
use super::{keys_valid, HashPairs, JoinHashTable, JoinKeys};
use crate::context::TaskContext;
use crate::memory::{human_bytes, MemoryReservation, TaskMemory, EXECUTOR_MEMORY_KEY};
use crate::operators::check_cancelled;
use crate::spill::{SpillFile, SpillWriter};

/// Partitions per level. 16 keeps the open files and the small per-partition writes
/// modest while cutting a partition to 1/16 per level.
pub(crate) const FANOUT: usize = 16;

/// Levels of partitioning before a build partition that still does not fit is an error:
/// 16⁴ = 65536 partitions, far beyond what any key distribution short of one hot key needs.
pub(crate) const MAX_LEVELS: usize = 4;

/// The name join spills are counted under (see `MemoryPool::operator_spills`).
pub const SPILL_OPERATOR: &str = "HashJoin";

/// Base of the per-level partitioning seeds.
const GRACE_SEED: u64 = 0x6772_6163_655f_6a6e;

/// Which input a partitioner splits (they evaluate different key expressions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Build,
    Probe,
}

/// What the join type needs from rows that cannot match.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GraceRules {
    pub join_type: JoinType,
    pub null_aware: bool,
}

impl GraceRules {
    /// Build rows with a NULL key are output (unmatched) by Right and Full joins only.
    fn build_keeps_null_keys(&self) -> bool {
        matches!(self.join_type, JoinType::Right | JoinType::Full)
    }

    /// Probe rows with a NULL key are output (unmatched) by Left, Full and plain anti
    /// joins; NOT IN drops them once the build side is non-empty, which a spilled one is.
    fn probe_keeps_null_keys(&self) -> bool {
        match self.join_type {
            JoinType::Left | JoinType::Full => true,
            JoinType::LeftAnti => !self.null_aware,
            _ => false,
        }
    }

    /// Whether a probe partition matters when its build partition is empty.
    fn probe_matters_alone(&self) -> bool {
        matches!(
            self.join_type,
            JoinType::Left | JoinType::Full | JoinType::LeftAnti
        )
    }

    /// Whether a build partition matters when its probe partition is empty.
    fn build_matters_alone(&self) -> bool {
        matches!(self.join_type, JoinType::Right | JoinType::Full)
    }

    fn keeps_null_keys(&self, side: Side) -> bool {
        match side {
            Side::Build => self.build_keeps_null_keys(),
            Side::Probe => self.probe_keeps_null_keys(),
        }
    }
}

/// The build side after it was partitioned to disk.
pub(crate) struct SpilledBuild {
    /// One file per partition; `None` where no row went.
    pub partitions: Vec<Option<SpillFile>>,
    /// Build rows read (before NULL keys were dropped).
    pub rows: usize,
    /// Whether any build row had a NULL key.
    pub has_null_key: bool,
    /// Schema of the build batches.
    pub schema: SchemaRef,
}

/// Splits the batches of one side by the hash of their join keys into [`FANOUT`] runs.
pub(crate) struct Partitioner<'a> {
    keys: &'a JoinKeys,
    side: Side,
    level: usize,
    state: RandomState,
    rules: GraceRules,
    /// Partitions that take rows; rows of the others are dropped (nothing to join with).
    accept: Vec<bool>,
    writers: Vec<Option<SpillWriter>>,
    memory: &'a TaskMemory,
    schema: Option<SchemaRef>,
    /// Round-robin position for rows with a NULL key.
    next_null: usize,
    has_null_key: bool,
}

impl<'a> Partitioner<'a> {
    /// A partitioner for level `level`; `accept = None` takes rows for every partition.
    pub fn new(
        keys: &'a JoinKeys,
        side: Side,
        level: usize,
        rules: GraceRules,
        accept: Option<Vec<bool>>,
        memory: &'a TaskMemory,
    ) -> Self {
        Partitioner {
            keys,
            side,
            level,
            state: RandomState::with_seed(level_seed(level)),
            rules,
            accept: accept.unwrap_or_else(|| vec![true; FANOUT]),
            writers: (0..FANOUT).map(|_| None).collect(),
            memory,
            schema: None,
            next_null: 0,
            has_null_key: false,
        }
    }

    pub fn has_null_key(&self) -> bool {
        self.has_null_key
    }

    /// Writes each row of `batch` to its partition's run.
    pub fn push(&mut self, batch: &RecordBatch) -> Result<()> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(());
        }
        if self.schema.is_none() {
            self.schema = Some(batch.schema());
        }
        let exprs = match self.side {
            Side::Build => &self.keys.right,
            Side::Probe => &self.keys.left,
        };
        let keys = self.keys.evaluate(exprs, batch)?;
        let mut hashes = vec![0u64; rows];
        create_hashes(&keys, &self.state, &mut hashes)?;
        let valid = keys_valid(&keys);
        let keep_nulls = self.rules.keeps_null_keys(self.side);
        let mut indices: Vec<Vec<u32>> = vec![Vec::new(); FANOUT];
        for (row, hash) in hashes.iter().enumerate() {
            let partition = if valid.as_ref().is_some_and(|v| v.is_null(row)) {
                self.has_null_key = true;
                if !keep_nulls {
                    continue;
                }
                self.next_null = (self.next_null + 1) % FANOUT;
                self.next_null
            } else {
                partition_of(*hash)
            };
            if self.accept[partition] {
                // `row` < the batch's rows, which the join limits to u32.
                indices[partition].push(row as u32);
            }
        }
        for (partition, rows_of) in indices.into_iter().enumerate() {
            if rows_of.is_empty() {
                continue;
            }
            let part = if rows_of.len() == rows {
                batch.clone()
            } else {
                take_record_batch(batch, &UInt32Array::from(rows_of))?
            };
            self.writer(partition, &part.schema())?.write(&part)?;
        }
        Ok(())
    }

    fn writer(&mut self, partition: usize, schema: &SchemaRef) -> Result<&mut SpillWriter> {
        let slot = &mut self.writers[partition];
        if slot.is_none() {
            *slot = Some(SpillWriter::try_new(self.memory, schema)?.for_operator(SPILL_OPERATOR));
        }
        slot.as_mut().ok_or_else(|| {
            EmberError::Internal(format!(
                "grace partition {partition} (level {}) has no spill writer",
                self.level
            ))
        })
    }

    /// Closes the runs: the schema of the rows seen (if any) and one file per partition.
    pub fn finish(self) -> Result<(Option<SchemaRef>, Vec<Option<SpillFile>>)> {
        let files = self
            .writers
            .into_iter()
            .map(|w| w.map(SpillWriter::finish).transpose())
            .collect::<Result<Vec<_>>>()?;
        Ok((self.schema, files))
    }
}

/// The seed of level `level`. Seeds that differ in a few bits (`base + level`) give
/// correlated partition numbers with the engine's hash, so a partition would not split at
/// the next level: each level's seed is a full 64-bit mix (splitmix64) of its number.
fn level_seed(level: usize) -> u64 {
    let mut z = GRACE_SEED.wrapping_add((level as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A partition number from the top bits of the hash, multiplied once more (Fibonacci
/// hashing) so that every bit of the hash counts.
fn partition_of(hash: u64) -> usize {
    const _: () = assert!(FANOUT.is_power_of_two());
    let bits = FANOUT.trailing_zeros();
    (hash.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - bits)) as usize
}

/// What every partition's join needs.
pub(crate) struct GraceSpec {
    pub keys: JoinKeys,
    pub rules: GraceRules,
    /// The output every partition's [`JoinStream`] produces (cloned per partition).
    pub output: JoinOutput,
    /// NOT IN with a non-empty build side: probe rows with a NULL key are unknown.
    pub drop_null_probe_keys: bool,
    /// Names the join in errors.
    pub description: String,
}

/// One pair of runs still to join.
struct PendingPartition {
    build: Option<SpillFile>,
    probe: Option<SpillFile>,
    level: usize,
    /// Names the partition in errors: `7` at level 0, `7.3` at level 1, …
    path: String,
}

/// Partitions the probe input like the build side was, then returns the join of the
/// partition pairs.
pub(crate) fn grace_join(
    build: SpilledBuild,
    probe: BatchIter,
    spec: GraceSpec,
    reservation: MemoryReservation,
    ctx: &Arc<TaskContext>,
) -> Result<BatchIter> {
    let accept = accepted_probe_partitions(&build.partitions, spec.rules);
    let mut partitioner = Partitioner::new(
        &spec.keys,
        Side::Probe,
        0,
        spec.rules,
        Some(accept),
        &ctx.memory,
    );
    for batch in probe {
        check_cancelled(ctx)?;
        partitioner.push(&batch?)?;
    }
    let (probe_schema, probes) = partitioner.finish()?;
    let build_schema = build.schema;
    let mut join = GraceJoin {
        pending: Vec::new(),
        current: None,
        reservation,
        build_schema,
        probe_schema,
        spec,
        ctx: Arc::clone(ctx),
    };
    join.push_pending(build.partitions, probes, 0, "");
    Ok(Box::new(join))
}

fn accepted_probe_partitions(builds: &[Option<SpillFile>], rules: GraceRules) -> Vec<bool> {
    builds
        .iter()
        .map(|b| b.is_some() || rules.probe_matters_alone())
        .collect()
}

/// Joins the pending partition pairs one at a time (see the module docs).
struct GraceJoin {
    /// Stack of partitions still to join; the next one is last.
    pending: Vec<PendingPartition>,
    current: Option<JoinStream<HashPairs>>,
    /// Holds the current partition's build side.
    reservation: MemoryReservation,
    build_schema: SchemaRef,
    /// `None` if no probe row was spilled.
    probe_schema: Option<SchemaRef>,
    spec: GraceSpec,
    ctx: Arc<TaskContext>,
}

impl GraceJoin {
    /// Queues the partition pairs of one level, first partition on top.
    fn push_pending(
        &mut self,
        builds: Vec<Option<SpillFile>>,
        probes: Vec<Option<SpillFile>>,
        level: usize,
        parent: &str,
    ) {
        let rules = self.spec.rules;
        let pairs: Vec<PendingPartition> = builds
            .into_iter()
            .zip(probes)
            .enumerate()
            .filter(|(_, (b, p))| match (b, p) {
                (Some(_), Some(_)) => true,
                (Some(_), None) => rules.build_matters_alone(),
                (None, Some(_)) => rules.probe_matters_alone(),
                (None, None) => false,
            })
            .map(|(i, (build, probe))| PendingPartition {
                build,
                probe,
                level,
                path: if parent.is_empty() {
                    i.to_string()
                } else {
                    format!("{parent}.{i}")
                },
            })
            .collect();
        self.pending.extend(pairs.into_iter().rev());
    }

    /// Loads the build run of `partition` into a hash table and starts probing it, or
    /// partitions the pair again if the build run does not fit.
    fn open(&mut self, mut partition: PendingPartition) -> Result<()> {
        check_cancelled(&self.ctx)?;
        let mut reader: BatchIter = match partition.build.take() {
            Some(file) => file.into_reader()?,
            None => Box::new(std::iter::empty()),
        };
        let mut batches = Vec::new();
        let mut rows = 0;
        let mut refused = None;
        for batch in reader.by_ref() {
            let batch = batch?;
            rows += batch.num_rows();
            let bytes = read_batch_memory(&batch);
            batches.push(batch);
            if let Err(e) = self.reservation.try_grow(bytes) {
                refused = Some(e);
                break;
            }
        }
        if refused.is_none() {
            refused = self.reservation.try_grow(index_memory(rows)).err();
        }
        if let Some(refused) = refused {
            return self.repartition(partition, batches, reader, refused);
        }
        let table = JoinHashTable::try_new(
            concat_columns(&self.build_schema, batches)?,
            &self.spec.keys,
        )?;
        self.reservation.resize(table.memory);
        let probe: BatchIter = match (partition.probe, &self.probe_schema) {
            (Some(file), Some(schema)) => Box::new(Coalesce::new(
                file.into_reader()?,
                Arc::clone(schema),
                self.spec.output.batch_size,
            )),
            _ => Box::new(std::iter::empty()),
        };
        let build = table.batch.clone();
        let pairs = HashPairs {
            table: Arc::new(table),
            keys: self.spec.keys.clone(),
            drop_null_probe_keys: self.spec.drop_null_probe_keys,
            probe: None,
        };
        self.current = Some(JoinStream::try_new(
            pairs,
            probe,
            build,
            self.spec.output.clone(),
        )?);
        Ok(())
    }

    /// Splits a partition whose build run did not fit into the next level's partitions.
    fn repartition(
        &mut self,
        partition: PendingPartition,
        buffered: Vec<RecordBatch>,
        rest: BatchIter,
        refused: EmberError,
    ) -> Result<()> {
        let level = partition.level + 1;
        if level >= MAX_LEVELS {
            let held = self.reservation.size();
            return Err(EmberError::Execution(format!(
                "{}: build partition {} still needs more than {} after {MAX_LEVELS} levels of \
                 grace partitioning ({refused}); its rows probably share one join key — raise \
                 {EXECUTOR_MEMORY_KEY}",
                self.spec.description,
                partition.path,
                human_bytes(held),
            )));
        }
        let memory = self.ctx.memory.clone();
        let rules = self.spec.rules;
        let mut builds =
            Partitioner::new(&self.spec.keys, Side::Build, level, rules, None, &memory);
        for batch in buffered {
            builds.push(&batch)?;
        }
        self.reservation.free();
        for batch in rest {
            check_cancelled(&self.ctx)?;
            builds.push(&batch?)?;
        }
        let (_, builds) = builds.finish()?;
        let accept = accepted_probe_partitions(&builds, rules);
        let mut probes = Partitioner::new(
            &self.spec.keys,
            Side::Probe,
            level,
            rules,
            Some(accept),
            &memory,
        );
        if let Some(file) = partition.probe {
            for batch in file.into_reader()? {
                check_cancelled(&self.ctx)?;
                probes.push(&batch?)?;
            }
        }
        let (_, probes) = probes.finish()?;
        self.push_pending(builds, probes, level, &partition.path);
        Ok(())
    }

    fn advance(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            if let Some(stream) = self.current.as_mut() {
                match stream.next() {
                    Some(batch) => return batch.map(Some),
                    None => {
                        self.current = None;
                        self.reservation.free();
                    }
                }
            }
            let Some(next) = self.pending.pop() else {
                return Ok(None);
            };
            self.open(next)?;
        }
    }
}

impl Iterator for GraceJoin {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.advance() {
            Ok(batch) => batch.map(Ok),
            Err(e) => {
                // Dropping the pending runs deletes their files.
                self.pending.clear();
                self.current = None;
                self.reservation.free();
                Some(Err(e))
            }
        }
    }
}

/// Bytes of a batch read back from a spill run. The IPC reader places all of a batch's
/// buffers in one allocation, which `spill::batch_memory` would count once per buffer (a
/// several-fold overcount for the small per-partition batches); the bytes the batch's
/// slices cover are the true size.
fn read_batch_memory(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|c| {
            c.to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| c.get_array_memory_size())
        })
        .sum()
}

/// Glues the small per-partition slices read back from a run into `batch_size` batches,
/// so probing a spilled partition costs no more per row than probing the original input.
struct Coalesce {
    input: BatchIter,
    coalescer: BatchCoalescer,
    finished: bool,
}

impl Coalesce {
    fn new(input: BatchIter, schema: SchemaRef, batch_size: usize) -> Self {
        Coalesce {
            input,
            coalescer: BatchCoalescer::new(schema, batch_size.max(1)),
            finished: false,
        }
    }
}

impl Iterator for Coalesce {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(batch) = self.coalescer.next_completed_batch() {
                return Some(Ok(batch));
            }
            if self.finished {
                return None;
            }
            let step = match self.input.next() {
                Some(Ok(batch)) => self.coalescer.push_batch(batch),
                Some(Err(e)) => return Some(Err(e)),
                None => {
                    self.finished = true;
                    self.coalescer.finish_buffered_batch()
                }
            };
            if let Err(e) = step {
                self.finished = true;
                return Some(Err(e.into()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{ArrayRef, Int64Array};

    use super::*;

    fn partitions_at(level: usize, keys: &[i64]) -> Vec<usize> {
        let array: ArrayRef = Arc::new(Int64Array::from(keys.to_vec()));
        let mut hashes = vec![0u64; keys.len()];
        create_hashes(
            &[array],
            &RandomState::with_seed(level_seed(level)),
            &mut hashes,
        )
        .unwrap();
        hashes.into_iter().map(partition_of).collect()
    }

    #[test]
    fn one_partition_splits_evenly_at_the_next_level() {
        let keys: Vec<i64> = (0..32_000).collect();
        for level in 0..MAX_LEVELS - 1 {
            // The keys of one partition at `level`…
            let first = partitions_at(level, &keys);
            let ours: Vec<i64> = keys
                .iter()
                .zip(&first)
                .filter(|(_, p)| **p == 3)
                .map(|(k, _)| *k)
                .collect();
            assert!(
                (1500..2500).contains(&ours.len()),
                "level {level}: {}",
                ours.len()
            );
            // …spread over all partitions of the next level, none with more than 1/8.
            let mut counts = [0usize; FANOUT];
            for p in partitions_at(level + 1, &ours) {
                counts[p] += 1;
            }
            assert!(
                counts.iter().all(|&c| c > 0 && c < ours.len() / 8),
                "level {level}: {counts:?}"
            );
        }
    }
}
