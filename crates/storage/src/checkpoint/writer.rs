//! Writing a reliable checkpoint while its data is first computed.
//!
//! Each task that computes a partition hands its batches to [`CheckpointWriter::
//! write_partition`] on the way out, so the data is never computed a second time just to be
//! saved (Spark's eager `checkpoint()` runs the job twice). The driver collects the returned
//! [`PartitionInfo`]s and calls [`CheckpointWriter::commit`] once every partition succeeded.
//!
//! ```text
//! <fingerprint>/_tmp-part-00003-attempt-1.parquet   written by attempt 1 of partition 3
//!      ──rename──► <fingerprint>/part-00003.parquet  (a retry simply replaces it)
//! commit:   <fingerprint>/_manifest.json, then <fingerprint>/_SUCCESS (last)
//! ```

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use ember_planner::error::{EmberError, Result};
use parquet::arrow::ArrowWriter;

use super::manifest::{Fingerprint, Manifest, PartitionInfo, MANIFEST_VERSION};
use super::objects::Objects;
use super::reader::Checkpoint;
use super::{partition_file, temp_file, WriteFaults, MANIFEST_FILE, SUCCESS_FILE, TEMP_PREFIX};
use crate::checksum::Checksum;
use crate::parquet::{writer_properties, ParquetWriteOptions};

/// Writes the partitions of one checkpoint. Cheap to clone: give each task its own copy.
#[derive(Debug, Clone)]
pub struct CheckpointWriter {
    pub(super) objects: Objects,
    pub(super) fingerprint: Fingerprint,
    pub(super) schema: SchemaRef,
    pub(super) options: ParquetWriteOptions,
    pub(super) faults: Arc<WriteFaults>,
}

impl CheckpointWriter {
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn path(&self, name: &str) -> object_store::path::Path {
        self.objects.path(&format!("{}/{name}", self.fingerprint))
    }

    /// Writes `batches` as partition `partition` and returns what the manifest must record.
    ///
    /// The file goes to a temp name of this attempt and is renamed into place only once
    /// complete, so a failed attempt leaves nothing under the final name, and a retried or
    /// speculative attempt of the same partition replaces the file (outputs are deterministic,
    /// so any attempt's file is the right one; [`commit`](Self::commit) checks sizes).
    pub fn write_partition(
        &self,
        partition: usize,
        attempt: usize,
        batches: &[RecordBatch],
    ) -> Result<PartitionInfo> {
        let final_name = partition_file(partition);
        let context = || {
            format!(
                "failed to write checkpoint {} partition {partition} (attempt {attempt}) at {}",
                self.fingerprint,
                self.objects.url()
            )
        };
        let (data, rows) = self.encode(batches).map_err(|e| e.context(context()))?;
        let info = PartitionInfo {
            partition,
            rows,
            bytes: data.len() as u64,
            checksum: Checksum::of(&data),
        };
        let data = if self.faults.should_damage(self.fingerprint, partition) {
            // Injected fault: the manifest will record the good checksum, so readers and
            // lookups must notice this file is not the one that was written.
            damage(data)
        } else {
            data
        };
        let temp = self.path(&temp_file(partition, attempt));
        self.objects
            .put(&temp, Bytes::from(data))
            .and_then(|()| self.objects.rename(&temp, &self.path(&final_name)))
            .map_err(|e| {
                // Best effort: temp files are hidden and removed by commit or vacuum.
                let _ = self.objects.delete(&temp);
                e.context(context())
            })?;
        Ok(info)
    }

    /// Encodes the batches as one Parquet file with the same settings as
    /// [`crate::parquet::write_parquet`], so checkpoints are no larger than plain Parquet.
    fn encode(&self, batches: &[RecordBatch]) -> Result<(Vec<u8>, usize)> {
        let props = writer_properties(self.options);
        let mut writer = ArrowWriter::try_new(Vec::new(), self.schema.clone(), Some(props))?;
        let mut rows = 0;
        for batch in batches {
            if batch.num_rows() == 0 {
                continue;
            }
            if batch.schema() == self.schema {
                writer.write(batch)?;
            } else {
                // Same columns, different field metadata or names from an upstream operator:
                // store them under the checkpoint's schema so every file matches the manifest.
                let conformed =
                    RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec())?;
                writer.write(&conformed)?;
            }
            rows += batch.num_rows();
        }
        Ok((writer.into_inner()?, rows))
    }

    /// Commits the checkpoint: checks every partition file is in place with the size its
    /// writer reported, writes `_manifest.json`, then `_SUCCESS` last. Until `_SUCCESS`
    /// exists the checkpoint is never used, so a crash at any point leaves nothing half-valid.
    pub fn commit(&self, partitions: Vec<PartitionInfo>, plan: &str) -> Result<Checkpoint> {
        let mut partitions = partitions;
        partitions.sort_by_key(|p| p.partition);
        let manifest = Manifest {
            version: MANIFEST_VERSION,
            fingerprint: self.fingerprint,
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            plan: plan.to_string(),
            schema: self.schema.as_ref().clone(),
            partitions,
        };
        let where_ = || format!("checkpoint {} at {}", self.fingerprint, self.objects.url());
        manifest.check_partitions().map_err(|why| {
            EmberError::Internal(format!(
                "cannot commit {}: partitions must be 0..n once each: {why}",
                where_()
            ))
        })?;
        for info in &manifest.partitions {
            let name = partition_file(info.partition);
            match self.objects.size(&self.path(&name))? {
                Some(size) if size == info.bytes => {}
                Some(size) => {
                    return Err(EmberError::Execution(format!(
                        "cannot commit {}: {name} is {size} bytes, its writer reported {}",
                        where_(),
                        info.bytes
                    )))
                }
                None => {
                    return Err(EmberError::Execution(format!(
                        "cannot commit {}: {name} is missing",
                        where_()
                    )))
                }
            }
        }
        self.objects
            .put(&self.path(MANIFEST_FILE), Bytes::from(manifest.to_json()?))?;
        self.objects.put(&self.path(SUCCESS_FILE), Bytes::new())?;
        // Leftover temp files of failed attempts: hidden, so removing them is only tidying.
        if let Ok(listed) = self
            .objects
            .list(&self.objects.path(&self.fingerprint.to_string()))
        {
            for (path, _) in listed {
                if path.filename().is_some_and(|n| n.starts_with(TEMP_PREFIX)) {
                    let _ = self.objects.delete(&path);
                }
            }
        }
        Ok(Checkpoint::new(self.objects.clone(), manifest))
    }
}

/// Flips the bits of one byte in the middle of `data` (a damaged disk block, a bad copy).
pub(super) fn damage(mut data: Vec<u8>) -> Vec<u8> {
    if data.is_empty() {
        data.push(0);
    } else {
        let middle = data.len() / 2;
        data[middle] ^= 0xFF;
    }
    data
}
