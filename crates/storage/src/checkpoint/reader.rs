//! Reading a committed checkpoint back, one verified partition at a time.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use ember_planner::error::EmberError;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};

use super::manifest::{Fingerprint, Manifest, PartitionInfo};
use super::objects::Objects;
use super::partition_file;
use crate::checksum::Checksum;
use crate::file_scan::BATCH_SIZE;

/// Why a checkpoint partition could not be read. Every kind means the caller must recompute
/// the partition from lineage; the kind says why, for the event log and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointErrorKind {
    /// The file is gone (deleted, or the store lost it).
    Missing,
    /// The file is not the one that was written: size, checksum, rows or decoding differ.
    Corrupt(String),
    /// The store could not be read (I/O or network error), or the partition does not exist.
    Unreadable(String),
}

/// A checkpoint partition that could not be read: no data is ever returned from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointError {
    pub fingerprint: Fingerprint,
    pub partition: usize,
    pub kind: CheckpointErrorKind,
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (fp, p) = (self.fingerprint, self.partition);
        match &self.kind {
            CheckpointErrorKind::Missing => {
                write!(f, "checkpoint {fp} partition {p} is missing")
            }
            CheckpointErrorKind::Corrupt(why) => {
                write!(f, "checkpoint {fp} partition {p} is corrupt: {why}")
            }
            CheckpointErrorKind::Unreadable(why) => {
                write!(f, "checkpoint {fp} partition {p} is unreadable: {why}")
            }
        }
    }
}

impl std::error::Error for CheckpointError {}

impl From<CheckpointError> for EmberError {
    fn from(e: CheckpointError) -> Self {
        EmberError::Execution(e.to_string())
    }
}

/// Checks that `data` is the file described by `info`: the one cheap test that stands
/// between a damaged file and wrong answers.
pub(super) fn verify(data: &[u8], info: &PartitionInfo) -> Result<(), String> {
    verify_sum(data.len() as u64, Checksum::of(data), info)
}

/// [`verify`] for a file whose size and checksum were computed as it was read.
pub(super) fn verify_sum(len: u64, checksum: u64, info: &PartitionInfo) -> Result<(), String> {
    let name = partition_file(info.partition);
    if len != info.bytes {
        return Err(format!(
            "{name} is {len} bytes, the manifest says {}",
            info.bytes
        ));
    }
    if checksum != info.checksum {
        return Err(format!(
            "{name} has checksum {checksum:016x}, the manifest says {:016x}",
            info.checksum
        ));
    }
    Ok(())
}

/// A committed checkpoint whose files were all verified when it was looked up (or that this
/// process just wrote). The plan above it reads partitions from here instead of lineage.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    objects: Objects,
    manifest: Arc<Manifest>,
    schema: SchemaRef,
}

impl Checkpoint {
    pub(super) fn new(objects: Objects, manifest: Manifest) -> Self {
        let schema = Arc::new(manifest.schema.clone());
        Checkpoint {
            objects,
            manifest: Arc::new(manifest),
            schema,
        }
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.manifest.fingerprint
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn num_partitions(&self) -> usize {
        self.manifest.partitions.len()
    }

    pub fn total_rows(&self) -> usize {
        self.manifest.total_rows()
    }

    /// Reads partition `partition`, verifying size, checksum and row count first: a damaged
    /// or vanished file is an error, never data.
    pub fn read_partition(&self, partition: usize) -> Result<Vec<RecordBatch>, CheckpointError> {
        let error = |kind| CheckpointError {
            fingerprint: self.fingerprint(),
            partition,
            kind,
        };
        let info = self.manifest.partitions.get(partition).ok_or_else(|| {
            error(CheckpointErrorKind::Unreadable(format!(
                "the checkpoint has {} partitions",
                self.num_partitions()
            )))
        })?;
        let path = self.objects.path(&format!(
            "{}/{}",
            self.fingerprint(),
            partition_file(partition)
        ));
        let data = self
            .objects
            .get(&path)
            .map_err(|e| error(CheckpointErrorKind::Unreadable(e.to_string())))?
            .ok_or_else(|| error(CheckpointErrorKind::Missing))?;
        verify(&data, info).map_err(|why| error(CheckpointErrorKind::Corrupt(why)))?;
        let batches = self
            .decode(data)
            .map_err(|why| error(CheckpointErrorKind::Corrupt(why)))?;
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        if rows != info.rows {
            return Err(error(CheckpointErrorKind::Corrupt(format!(
                "has {rows} rows, the manifest says {}",
                info.rows
            ))));
        }
        Ok(batches)
    }

    /// Decodes a verified Parquet file into batches of the manifest's schema. Files whose
    /// footer carries no Arrow schema (see `writer::parquet_types_suffice`) are read with the
    /// manifest's schema as the hint; files that carry one (older checkpoints, types Parquet
    /// cannot say alone) are read with it when the hint does not apply.
    fn decode(&self, data: Bytes) -> Result<Vec<RecordBatch>, String> {
        let hinted = ArrowReaderOptions::new().with_schema(self.schema.clone());
        let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(data.clone(), hinted)
            .or_else(|_| ParquetRecordBatchReaderBuilder::try_new(data));
        let reader = builder
            .and_then(|b| b.with_batch_size(BATCH_SIZE).build())
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for batch in reader {
            let batch = batch.map_err(|e| e.to_string())?;
            let batch = if batch.schema() == self.schema {
                batch
            } else {
                RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec())
                    .map_err(|e| format!("does not match the manifest schema: {e}"))?
            };
            out.push(batch);
        }
        Ok(out)
    }
}
