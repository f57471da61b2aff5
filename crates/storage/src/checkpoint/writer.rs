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

use std::collections::HashSet;
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use bytes::Bytes;
use ember_planner::error::{EmberError, Result};
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::arrow::{parquet_to_arrow_schema, ArrowSchemaConverter, ArrowWriter};
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use super::manifest::{Fingerprint, Manifest, PartitionInfo, MANIFEST_VERSION};
use super::objects::Objects;
use super::reader::{self, Checkpoint};
use super::{partition_file, temp_file, WriteFaults, MANIFEST_FILE, SUCCESS_FILE, TEMP_PREFIX};
use crate::checksum::Checksum;
use crate::parquet::ParquetWriteOptions;

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

    /// Encodes the batches as one Parquet file (see [`checkpoint_properties`]).
    fn encode(&self, batches: &[RecordBatch]) -> Result<(Vec<u8>, usize)> {
        let mut properties = checkpoint_properties(self.options).into_builder();
        if let Some(first) = batches.iter().find(|b| b.num_rows() > 0) {
            for column in nearly_unique_columns(first) {
                properties = properties.set_column_dictionary_enabled(column.into(), false);
            }
        }
        let options = ArrowWriterOptions::new()
            .with_properties(properties.build())
            .with_skip_arrow_metadata(parquet_types_suffice(&self.schema));
        let mut writer =
            ArrowWriter::try_new_with_options(Vec::new(), self.schema.clone(), options)?;
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

    /// Reads every partition file back from the store and checks it is byte for byte the
    /// file its writer encoded (size and checksum), before the checkpoint is committed.
    ///
    /// The writing job's consumers read the partitions from memory, not from these files, so
    /// without this a file damaged on its way to storage would go unnoticed until some later
    /// job (or a restarted application) needed it — after the lineage that could rebuild it
    /// cheaply was given up. Verifying costs reading the bytes once (no Parquet decoding);
    /// files are checked in parallel. Returns the partitions whose files are missing, damaged
    /// or unreadable, with why; the caller rewrites those from lineage.
    pub fn verify_written(&self, partitions: &[PartitionInfo]) -> Vec<(usize, String)> {
        let check = |info: &PartitionInfo| -> Option<(usize, String)> {
            let name = partition_file(info.partition);
            let why = match self.objects.get(&self.path(&name)) {
                Ok(Some(data)) => reader::verify(&data, info).err()?,
                Ok(None) => format!("{name} is missing"),
                Err(e) => format!("{name} cannot be read back: {e}"),
            };
            Some((info.partition, why))
        };
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(partitions.len());
        if threads <= 1 {
            return partitions.iter().filter_map(check).collect();
        }
        let chunk = partitions.len().div_ceil(threads);
        let mut bad: Vec<(usize, String)> = std::thread::scope(|scope| {
            let handles: Vec<_> = partitions
                .chunks(chunk)
                .map(|part| {
                    let handle =
                        scope.spawn(move || part.iter().filter_map(check).collect::<Vec<_>>());
                    (part, handle)
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|(part, handle)| {
                    handle.join().unwrap_or_else(|_| {
                        // Not verified is not good: those files are rewritten.
                        part.iter()
                            .map(|p| (p.partition, "its verification panicked".to_string()))
                            .collect()
                    })
                })
                .collect()
        });
        bad.sort();
        bad
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

/// Parquet writer settings for checkpoint files: the same row groups and compression as
/// [`crate::parquet::write_parquet`] (so the files are as compact), without column
/// statistics and page indexes. Those exist so scans can skip row groups and pages; a
/// checkpoint partition is always read whole, so computing them is wasted work in the task
/// that writes the checkpoint, and leaving them out makes the files smaller than plain
/// Parquet's.
pub(super) fn checkpoint_properties(options: ParquetWriteOptions) -> WriterProperties {
    crate::parquet::writer_properties(options)
        .into_builder()
        .set_statistics_enabled(EnabledStatistics::None)
        .build()
}

/// Rows of the first batch sampled to estimate a column's cardinality.
const DICTIONARY_SAMPLE_ROWS: usize = 8192;
/// Distinct values per sampled row above which a column is written without a dictionary.
const NEARLY_UNIQUE: f64 = 0.9;

/// The top-level primitive columns of `batch` that are nearly unique in its first
/// [`DICTIONARY_SAMPLE_ROWS`] rows (prices, keys, timestamps): written without a dictionary.
///
/// Parquet writers dictionary-encode every column by default: each value is hashed into a
/// dictionary until it exceeds its page-size limit, and only then do they fall back to plain
/// encoding — for a column of mostly distinct values that is a hash insert per value (the
/// largest single cost of encoding a checkpoint, by profile) for a dictionary as large as the
/// data it replaces. Columns with repeats (flags, dates, quantities, categories) keep their
/// dictionary, which is what makes them small.
pub(super) fn nearly_unique_columns(batch: &RecordBatch) -> Vec<String> {
    let rows = batch.num_rows().min(DICTIONARY_SAMPLE_ROWS);
    if rows < 64 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if field.data_type().is_nested() {
            continue;
        }
        let sample = column.slice(0, rows);
        let Ok(converter) = RowConverter::new(vec![SortField::new(field.data_type().clone())])
        else {
            continue;
        };
        let Ok(encoded) = converter.convert_columns(&[sample]) else {
            continue;
        };
        let distinct: HashSet<&[u8]> = encoded.iter().map(|r| r.data()).collect();
        if distinct.len() as f64 >= NEARLY_UNIQUE * rows as f64 {
            out.push(field.name().clone());
        }
    }
    out
}

/// Whether Parquet's own column types say all of `schema` (names and Arrow types come back
/// unchanged when read without a hint). Then the Arrow schema Parquet writers embed in every
/// footer (an IPC copy of the schema, base64) is redundant with the manifest, which records
/// the schema and is what readers conform to, and it is left out. Types that need it (e.g.
/// dictionaries, large strings, time zones) keep it.
pub(super) fn parquet_types_suffice(schema: &Schema) -> bool {
    let Ok(descriptor) = ArrowSchemaConverter::new().convert(schema) else {
        return false;
    };
    let Ok(back) = parquet_to_arrow_schema(&descriptor, None) else {
        return false;
    };
    back.fields().len() == schema.fields().len()
        && back
            .fields()
            .iter()
            .zip(schema.fields())
            .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type())
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
