//! The reliable checkpoint store: partitions of a computed plan saved as Parquet in an object
//! store (a local folder, `file://`, or a cloud URL), so the plan above can read them instead
//! of recomputing their lineage — after a failure, or in a later session (restart).
//!
//! A checkpoint is one folder per [`Fingerprint`] (plan + input identity, computed by the
//! caller):
//!
//! ```text
//! <dir>/<fingerprint>/part-00000.parquet …   one file per partition, written by tasks
//!                    /_manifest.json          schema, partitions, rows, sizes, checksums
//!                    /_SUCCESS                written last: the commit point
//! ```
//!
//! Lifecycle: [`CheckpointStore::begin`] → each task streams its partition's batches into a
//! [`PartitionWriter`] (Ember's own Parquet column encoders, `encode`)
//! → the driver reads the files back ([`CheckpointWriter::verify_written`]; damaged ones are
//! rewritten) → the driver calls [`CheckpointWriter::commit`]. Later, [`CheckpointStore::lookup`] returns
//! a [`Checkpoint`] only when `_SUCCESS` and the manifest exist and every file has the size and
//! checksum the manifest records; anything else is [`LookupOutcome::Rejected`] (recompute, and
//! never read it). [`CheckpointStore::vacuum`] removes checkpoints no plan needs any more.

mod encode;
mod manifest;
mod objects;
mod preallocate;
mod reader;
mod writer;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use ember_planner::error::{EmberError, Result};
use parking_lot::Mutex;

pub use manifest::{Fingerprint, Manifest, PartitionInfo, MANIFEST_VERSION};
pub use reader::{Checkpoint, CheckpointError, CheckpointErrorKind};
pub use writer::{CheckpointWriter, PartitionWriter};

use crate::parquet::ParquetWriteOptions;
use objects::Objects;

/// Where checkpoints go when `ember.checkpoint.dir` is not set.
pub const DEFAULT_CHECKPOINT_DIR: &str = "./ember-checkpoints";
/// The manifest's file name inside a checkpoint folder.
pub const MANIFEST_FILE: &str = "_manifest.json";
/// The commit marker, written last (the same name Spark and Hadoop use).
pub const SUCCESS_FILE: &str = crate::listing::SUCCESS_MARKER;
/// Prefix of the hidden names attempts write before renaming into place. Temp files sit next
/// to the final ones (no temp folder) so removing a checkpoint's files leaves no empty folder.
const TEMP_PREFIX: &str = "_tmp-";

/// The file name of partition `partition`.
pub fn partition_file(partition: usize) -> String {
    format!("part-{partition:05}.parquet")
}

/// The temp name attempt `attempt` of `partition` writes before renaming.
fn temp_file(partition: usize, attempt: usize) -> String {
    format!("{TEMP_PREFIX}part-{partition:05}-attempt-{attempt}.parquet")
}

/// What [`CheckpointStore::lookup`] found for a fingerprint.
#[derive(Debug, Clone)]
pub enum LookupOutcome {
    /// Nothing was ever written (or it was removed): compute, and checkpoint if wanted.
    Absent,
    /// Something is there but must not be read (no `_SUCCESS`, bad manifest, missing,
    /// truncated or corrupt file). The caller recomputes and may rewrite it.
    Rejected { reason: String },
    /// Complete and verified.
    Valid(Checkpoint),
}

/// The `corrupt-checkpoint` fault: while armed, every checkpoint file written is damaged
/// once (the first write of each fingerprint/partition), so the rewrite after the rejection
/// succeeds and the test can check recovery.
#[derive(Debug, Default)]
pub(crate) struct WriteFaults {
    armed: AtomicBool,
    damaged: Mutex<HashSet<(Fingerprint, usize)>>,
}

impl WriteFaults {
    fn should_damage(&self, fingerprint: Fingerprint, partition: usize) -> bool {
        self.armed.load(Ordering::SeqCst) && self.damaged.lock().insert((fingerprint, partition))
    }
}

/// Rows per row group of a checkpoint file (at most; see also the encoder's byte limit):
/// 1 Mi, the parquet crate's and DataFusion's default, where files `COPY` writes have 128 Ki
/// for finer pruning and more scan partitions. A checkpoint partition is read whole, so
/// smaller groups prune nothing, and each one restarts every column's dictionary and
/// encoders: the SF 1 lineage bench's checkpoint cost 2–5 ms less CPU per run with 1 Mi.
pub const ROW_GROUP_ROWS: usize = 1024 * 1024;

/// The checkpoints under one location. Cheap to clone; clones share the fault switch.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    objects: Objects,
    options: ParquetWriteOptions,
    faults: Arc<WriteFaults>,
}

impl CheckpointStore {
    /// Opens `location`: a local path (created if missing), a `file://` URL, `memory://`, or
    /// an `s3://…` URL when Ember is built with object_store's `aws` feature.
    pub fn open(location: &str) -> Result<Self> {
        Ok(CheckpointStore {
            objects: Objects::open(location)?,
            options: ParquetWriteOptions {
                max_row_group_rows: ROW_GROUP_ROWS,
                ..ParquetWriteOptions::default()
            },
            faults: Arc::default(),
        })
    }

    /// Uses `options` for the Parquet files written from now on (default: those of
    /// [`crate::parquet::write_parquet`], with [`ROW_GROUP_ROWS`]).
    pub fn with_write_options(mut self, options: ParquetWriteOptions) -> Self {
        self.options = options;
        self
    }

    pub fn url(&self) -> &str {
        self.objects.url()
    }

    fn path(&self, fingerprint: Fingerprint, name: &str) -> object_store::path::Path {
        self.objects.path(&format!("{fingerprint}/{name}"))
    }

    /// Starts writing the checkpoint `fingerprint` of data with `schema`. Whatever an earlier
    /// (rejected or crashed) attempt left under that fingerprint is removed first, so the
    /// new files are never mixed with old ones. Call once, on the driver.
    pub fn begin(&self, fingerprint: Fingerprint, schema: SchemaRef) -> Result<CheckpointWriter> {
        self.remove(fingerprint)?;
        Ok(self.writer(fingerprint, schema))
    }

    /// A writer for a checkpoint another process [`begin`](Self::begin)s: what a task in a
    /// separate executor process uses. Removes nothing.
    pub fn writer(&self, fingerprint: Fingerprint, schema: SchemaRef) -> CheckpointWriter {
        CheckpointWriter {
            objects: self.objects.clone(),
            fingerprint,
            schema,
            options: self.options,
            faults: self.faults.clone(),
        }
    }

    /// Finds the checkpoint `fingerprint` and verifies every file (size and checksum) before
    /// answering `Valid`: a checkpoint that would fail half-way through a later job is
    /// rejected now, while recomputing it is still a planning decision.
    pub fn lookup(&self, fingerprint: Fingerprint) -> Result<LookupOutcome> {
        let listed = self
            .objects
            .list(&self.objects.path(&fingerprint.to_string()))?;
        if listed.is_empty() {
            return Ok(LookupOutcome::Absent);
        }
        let reject = |reason: String| {
            Ok(LookupOutcome::Rejected {
                reason: format!("checkpoint {fingerprint} at {}: {reason}", self.url()),
            })
        };
        let size_of = |name: &str| {
            let path = self.path(fingerprint, name);
            listed.iter().find(|(p, _)| *p == path).map(|(_, s)| *s)
        };
        if size_of(SUCCESS_FILE).is_none() {
            return reject(format!(
                "no {SUCCESS_FILE} (its writer did not finish or was killed)"
            ));
        }
        let Some(json) = self.objects.get(&self.path(fingerprint, MANIFEST_FILE))? else {
            return reject(format!("no {MANIFEST_FILE}"));
        };
        let manifest = match Manifest::from_json(&json) {
            Ok(m) => m,
            Err(why) => return reject(why),
        };
        if manifest.fingerprint != fingerprint {
            return reject(format!(
                "its manifest is for fingerprint {}",
                manifest.fingerprint
            ));
        }
        for info in &manifest.partitions {
            let name = partition_file(info.partition);
            match size_of(&name) {
                None => return reject(format!("{name} is missing")),
                Some(size) if size != info.bytes => {
                    return reject(format!(
                        "{name} is {size} bytes, the manifest says {} (truncated or replaced)",
                        info.bytes
                    ))
                }
                Some(_) => {}
            }
            let Some(data) = self.objects.get(&self.path(fingerprint, &name))? else {
                return reject(format!("{name} is missing"));
            };
            if let Err(why) = reader::verify(&data, info) {
                return reject(why);
            }
        }
        Ok(LookupOutcome::Valid(Checkpoint::new(
            self.objects.clone(),
            manifest,
        )))
    }

    /// The fingerprints of every checkpoint folder in the store, committed or not, sorted.
    pub fn fingerprints(&self) -> Result<Vec<Fingerprint>> {
        let mut out: Vec<Fingerprint> = self
            .objects
            .list_folders(&self.objects.path(""))?
            .iter()
            .filter_map(|name| name.parse().ok())
            .collect();
        out.sort();
        Ok(out)
    }

    /// Removes the checkpoint `fingerprint`; returns whether there was anything to remove.
    /// `_SUCCESS` goes first, so a concurrent lookup sees an uncommitted checkpoint (rejected)
    /// rather than a committed one with files missing.
    pub fn remove(&self, fingerprint: Fingerprint) -> Result<bool> {
        let listed = self
            .objects
            .list(&self.objects.path(&fingerprint.to_string()))?;
        if listed.is_empty() {
            return Ok(false);
        }
        self.objects.delete(&self.path(fingerprint, SUCCESS_FILE))?;
        self.objects
            .delete(&self.path(fingerprint, MANIFEST_FILE))?;
        for (path, _) in &listed {
            self.objects.delete(path)?;
        }
        Ok(true)
    }

    /// Removes every checkpoint not in `keep` (the ones some live plan can still use) and
    /// returns the removed fingerprints. Folders whose names are not fingerprints are not
    /// Ember's and are left alone.
    pub fn vacuum(&self, keep: &HashSet<Fingerprint>) -> Result<Vec<Fingerprint>> {
        let mut removed = Vec::new();
        for fingerprint in self.fingerprints()? {
            if !keep.contains(&fingerprint) && self.remove(fingerprint)? {
                removed.push(fingerprint);
            }
        }
        Ok(removed)
    }

    /// Fault injection (`corrupt-checkpoint`): while `on`, each checkpoint file written
    /// through this store (or its clones and writers) is damaged the first time it is written.
    pub fn set_corrupt_writes(&self, on: bool) {
        self.faults.armed.store(on, Ordering::SeqCst);
    }

    /// Fault injection: damages one byte of an existing partition file (same size, wrong
    /// checksum), as a bad disk or a bad copy would.
    pub fn corrupt_partition_file(&self, fingerprint: Fingerprint, partition: usize) -> Result<()> {
        let path = self.path(fingerprint, &partition_file(partition));
        let data = self.objects.get(&path)?.ok_or_else(|| {
            EmberError::Execution(format!(
                "cannot corrupt checkpoint {fingerprint} partition {partition}: no such file"
            ))
        })?;
        self.objects
            .put(&path, Bytes::from(writer::damage(data.to_vec())))
    }

    /// Fault injection: deletes one partition file of a checkpoint.
    pub fn delete_partition_file(&self, fingerprint: Fingerprint, partition: usize) -> Result<()> {
        self.objects
            .delete(&self.path(fingerprint, &partition_file(partition)))
    }
}
