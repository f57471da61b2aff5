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

use arrow::array::{ArrayRef, AsArray};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Decimal128Type, Decimal32Type, Decimal64Type, Int64Type, Schema,
    SchemaRef, UInt64Type,
};
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use bytes::Bytes;
use ember_planner::error::{EmberError, Result};
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::arrow::{parquet_to_arrow_schema, ArrowSchemaConverter, ArrowWriter};
use parquet::basic::{Compression, Encoding};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesBuilder};
use parquet::schema::types::ColumnPath;
use rayon::prelude::*;

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
            properties = with_layouts(properties, &column_layouts(first));
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
    /// files are checked in parallel (rayon). Returns the partitions whose files are missing, damaged
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
        let mut bad: Vec<(usize, String)> = partitions.par_iter().filter_map(check).collect();
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

/// Rows of the first batch sampled to choose each column's encoding.
const SAMPLE_ROWS: usize = 8192;
/// Distinct values per sampled row above which a column is written without a dictionary.
const NEARLY_UNIQUE: f64 = 0.9;

/// How a checkpoint file stores one column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ColumnLayout {
    /// Parquet's default: dictionary encoded (falling back to plain when the dictionary
    /// grows too large), compressed.
    Dictionary,
    /// Plain encoded and compressed, no dictionary: nearly unique values (prices,
    /// comments), where a dictionary only costs a hash insert per value.
    Plain,
    /// `DELTA_BINARY_PACKED`, uncompressed: integer-like columns (integers, dates, times,
    /// timestamps, decimals up to 18 digits) stored as bit-packed differences between
    /// neighbours — no hashing, and bit packing leaves nothing for a compressor to find.
    Delta,
}

/// Chooses each top-level column's [`ColumnLayout`] from the first [`SAMPLE_ROWS`] rows of
/// `batch`; columns not listed (nested ones, or all of them when the sample is too small
/// to judge) keep [`ColumnLayout::Dictionary`].
///
/// Parquet writers dictionary-encode every column by default. For a checkpoint, which is
/// written on the critical path of the job that first computes it and read back whole,
/// that is the largest cost of encoding (a hash insert per value, by profile): an
/// integer-like column is delta-packed instead, which is several times cheaper and about
/// as small — unless the sample says its dictionary codes would be under half the width
/// of its deltas (a few distinct values spread far apart, like status codes). A nearly
/// unique column of another type loses its dictionary; the rest keep theirs, which is what
/// makes flags and categories small.
pub(super) fn column_layouts(batch: &RecordBatch) -> Vec<(String, ColumnLayout)> {
    let rows = batch.num_rows().min(SAMPLE_ROWS);
    if rows < 64 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if field.data_type().is_nested() {
            continue;
        }
        let sample = column.slice(0, rows);
        let Some(distinct) = distinct_values(&sample) else {
            continue;
        };
        let layout = match integer_values(&sample) {
            Some(values) => {
                let dictionary_bits = bits_for(distinct.saturating_sub(1) as u128);
                if 2 * dictionary_bits <= delta_bits(&values) && distinct * 2 <= rows {
                    ColumnLayout::Dictionary
                } else {
                    ColumnLayout::Delta
                }
            }
            None if distinct as f64 >= NEARLY_UNIQUE * rows as f64 => ColumnLayout::Plain,
            None => ColumnLayout::Dictionary,
        };
        if layout != ColumnLayout::Dictionary {
            out.push((field.name().clone(), layout));
        }
    }
    out
}

/// Applies `layouts` to the checkpoint writer `properties`.
fn with_layouts(
    mut properties: WriterPropertiesBuilder,
    layouts: &[(String, ColumnLayout)],
) -> WriterPropertiesBuilder {
    for (name, layout) in layouts {
        let column = ColumnPath::from(name.as_str());
        properties = match layout {
            ColumnLayout::Dictionary => properties,
            ColumnLayout::Plain => properties.set_column_dictionary_enabled(column, false),
            ColumnLayout::Delta => properties
                .set_column_dictionary_enabled(column.clone(), false)
                .set_column_encoding(column.clone(), Encoding::DELTA_BINARY_PACKED)
                .set_column_compression(column, Compression::UNCOMPRESSED),
        };
    }
    properties
}

/// The number of distinct values in `sample`, or `None` for a type rows cannot encode.
fn distinct_values(sample: &ArrayRef) -> Option<usize> {
    let converter = RowConverter::new(vec![SortField::new(sample.data_type().clone())]).ok()?;
    let encoded = converter
        .convert_columns(std::slice::from_ref(sample))
        .ok()?;
    let distinct: HashSet<&[u8]> = encoded.iter().map(|r| r.data()).collect();
    Some(distinct.len())
}

/// The non-null values of an integer-like column as Parquet stores them (INT32 or INT64),
/// or `None` for any other type.
fn integer_values(sample: &ArrayRef) -> Option<Vec<i128>> {
    let parquet_integer = match sample.data_type() {
        DataType::Decimal32(_, _) | DataType::Decimal64(_, _) => true,
        DataType::Decimal128(precision, _) => *precision <= 18,
        data_type => {
            data_type.is_integer()
                || data_type.is_temporal() && !matches!(data_type, DataType::Interval(_))
        }
    };
    if !parquet_integer {
        return None;
    }
    let values = match sample.data_type() {
        DataType::Decimal32(_, _) => non_null::<Decimal32Type>(sample),
        DataType::Decimal64(_, _) => non_null::<Decimal64Type>(sample),
        DataType::Decimal128(_, _) => non_null::<Decimal128Type>(sample),
        DataType::UInt64 => non_null::<UInt64Type>(sample),
        // Every other integer-like type widens to Int64 losslessly (a decimal would be
        // rescaled by the cast, hence its raw values above).
        _ => non_null::<Int64Type>(&arrow::compute::cast(sample, &DataType::Int64).ok()?),
    };
    Some(values)
}

fn non_null<T: ArrowPrimitiveType>(array: &ArrayRef) -> Vec<i128>
where
    T::Native: Into<i128>,
{
    array
        .as_primitive::<T>()
        .iter()
        .flatten()
        .map(Into::into)
        .collect()
}

/// Bits per value of `DELTA_BINARY_PACKED` for `values`: the width of the range of
/// neighbours' differences (an upper bound: the encoder picks widths per 32 values).
fn delta_bits(values: &[i128]) -> u32 {
    let deltas = values.windows(2).map(|w| w[1] - w[0]);
    let (low, high) = deltas.fold((i128::MAX, i128::MIN), |(lo, hi), d| (lo.min(d), hi.max(d)));
    if low > high {
        return 0;
    }
    bits_for((high - low) as u128)
}

/// Bits needed to write every number from 0 to `max`.
fn bits_for(max: u128) -> u32 {
    u128::BITS - max.leading_zeros()
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
