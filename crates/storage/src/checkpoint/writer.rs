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
use std::hash::BuildHasherDefault;
use std::io::{BufWriter, Write};
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
use parquet::arrow::{parquet_to_arrow_schema, ArrowSchemaConverter};
use parquet::basic::{Compression, Encoding};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesBuilder};
use parquet::schema::types::ColumnPath;
use rayon::prelude::*;

use super::encode::{holds_with_room, FileEncoder, KeyHasher};
use super::manifest::{Fingerprint, Manifest, PartitionInfo, MANIFEST_VERSION};
use super::objects::Objects;
use super::preallocate::PreallocatedFile;
use super::reader::{self, Checkpoint};
use super::{partition_file, temp_file, WriteFaults, MANIFEST_FILE, SUCCESS_FILE, TEMP_PREFIX};
use crate::checksum::ChecksumWriter;
use crate::damage::flip_middle_byte;
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

    /// Writes `batches` as partition `partition` and returns what the manifest must record
    /// (a [`PartitionWriter`] fed all of them at once).
    pub fn write_partition(
        &self,
        partition: usize,
        attempt: usize,
        batches: &[RecordBatch],
    ) -> Result<PartitionInfo> {
        let mut writer = self.partition_writer(partition, attempt);
        for batch in batches {
            writer.write(batch)?;
        }
        writer.finish()
    }

    /// Starts attempt `attempt`'s file of partition `partition`. The task that computes the
    /// partition feeds it each batch as it is produced, while the batch is still in cache.
    pub fn partition_writer(&self, partition: usize, attempt: usize) -> PartitionWriter {
        PartitionWriter {
            checkpoint: self.clone(),
            partition,
            attempt,
            encoder: None,
            rows: 0,
        }
    }

    /// A file encoder for this checkpoint's partitions, with each column's layout chosen from
    /// a sample of `first` (the partition's first non-empty batch; `None` when it has none).
    fn new_encoder(&self, sink: Sink, first: Option<&RecordBatch>) -> Result<FileEncoder<Sink>> {
        let named = first.map(column_layouts).unwrap_or_default();
        let properties = with_layouts(checkpoint_properties(self.options).into_builder(), &named);
        let layouts = self
            .schema
            .fields()
            .iter()
            .map(|field| {
                named
                    .iter()
                    .find(|(name, _)| name == field.name())
                    .map_or(ColumnLayout::Dictionary, |(_, layout)| *layout)
            })
            .collect();
        Ok(FileEncoder::try_new(
            sink,
            self.schema.clone(),
            layouts,
            properties.build(),
            parquet_types_suffice(&self.schema),
        )?)
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
            let why = match self.objects.checksum(&self.path(&name)) {
                Ok(Some((len, sum))) => reader::verify_sum(len, sum, info).err()?,
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

/// One attempt's file of one partition, encoded as its batches arrive; see
/// [`CheckpointWriter::partition_writer`].
pub struct PartitionWriter {
    checkpoint: CheckpointWriter,
    partition: usize,
    attempt: usize,
    /// Made from the first non-empty batch, whose sample chooses the column layouts.
    encoder: Option<FileEncoder<Sink>>,
    rows: usize,
}

impl std::fmt::Debug for PartitionWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionWriter")
            .field("checkpoint", &self.checkpoint.fingerprint)
            .field("partition", &self.partition)
            .field("attempt", &self.attempt)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl PartitionWriter {
    fn context(&self) -> String {
        format!(
            "failed to write checkpoint {} partition {} (attempt {}) at {}",
            self.checkpoint.fingerprint,
            self.partition,
            self.attempt,
            self.checkpoint.objects.url()
        )
    }

    /// Encodes the partition's next batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let schema = &self.checkpoint.schema;
        let encoded = if batch.schema() == *schema {
            self.encoder_for(batch)?.write(batch)
        } else {
            // Same columns, different field metadata or names from an upstream operator:
            // store them under the checkpoint's schema so every file matches the manifest.
            let conformed = RecordBatch::try_new(schema.clone(), batch.columns().to_vec())
                .map_err(|e| EmberError::from(e).context(self.context()))?;
            self.encoder_for(&conformed)?.write(&conformed)
        };
        encoded.map_err(|e| EmberError::from(e).context(self.context()))?;
        self.rows += batch.num_rows();
        Ok(())
    }

    fn encoder_for(&mut self, batch: &RecordBatch) -> Result<&mut FileEncoder<Sink>> {
        if self.encoder.is_none() {
            let encoder = self
                .sink()
                .and_then(|sink| self.checkpoint.new_encoder(sink, Some(batch)))
                .map_err(|e| e.context(self.context()))?;
            self.encoder = Some(encoder);
        }
        Ok(self.encoder.as_mut().expect("just made"))
    }

    /// The attempt's temp file name.
    fn temp_path(&self) -> object_store::path::Path {
        self.checkpoint
            .path(&temp_file(self.partition, self.attempt))
    }

    /// Where the encoded bytes go: straight into the attempt's temp file in a local store (no
    /// copy of the whole file in memory), into memory for any other store.
    fn sink(&self) -> Result<Sink> {
        let file = match self.checkpoint.objects.create_local(&self.temp_path()) {
            Some(file) => FileSink::Local(BufWriter::with_capacity(
                FILE_BUFFER,
                PreallocatedFile::new(file?),
            )),
            None => FileSink::Memory(Vec::new()),
        };
        Ok(ChecksumWriter::new(file))
    }

    /// Finishes the file and puts it in place: written under a temp name of this attempt and
    /// renamed once complete, so a failed attempt leaves nothing under the final name, and a
    /// retried or speculative attempt of the same partition replaces the file (outputs are
    /// deterministic, so any attempt's file is the right one; [`CheckpointWriter::commit`]
    /// checks sizes). Returns what the manifest must record.
    pub fn finish(mut self) -> Result<PartitionInfo> {
        let context = self.context();
        let temp = self.temp_path();
        let finished = match self.encoder.take() {
            Some(encoder) => Ok(encoder),
            None => self
                .sink()
                .and_then(|sink| self.checkpoint.new_encoder(sink, None)),
        }
        .and_then(|encoder| Ok(encoder.finish()?))
        .and_then(|sink| self.put_in_place(sink, &temp));
        finished.map_err(|e| {
            // Best effort: temp files are hidden and removed by commit or vacuum.
            let _ = self.checkpoint.objects.delete(&temp);
            e.context(context)
        })
    }

    /// Stores the finished file under the attempt's temp name (already there for a local
    /// store) and renames it to the partition's name.
    fn put_in_place(&self, sink: Sink, temp: &object_store::path::Path) -> Result<PartitionInfo> {
        let (checkpoint, partition) = (&self.checkpoint, self.partition);
        let objects = &checkpoint.objects;
        let (file, checksum) = sink.into_parts();
        let info = PartitionInfo {
            partition,
            rows: self.rows,
            bytes: checksum.len(),
            checksum: checksum.finish(),
        };
        // Injected fault: the manifest records the good checksum, so readers and lookups
        // must notice this file is not the one that was written.
        let damaged = checkpoint
            .faults
            .should_damage(checkpoint.fingerprint, partition);
        match file {
            FileSink::Local(file) => {
                let file = file
                    .into_inner()
                    .map_err(|e| e.into_error())
                    .and_then(PreallocatedFile::finish)
                    .map_err(|e| objects.io_error("write", temp, e))?;
                if damaged {
                    flip_middle_byte(&file).map_err(|e| objects.io_error("damage", temp, e))?;
                }
            }
            FileSink::Memory(data) => {
                let data = if damaged { damage(data) } else { data };
                objects.put(temp, Bytes::from(data))?;
            }
        }
        objects.rename(temp, &checkpoint.path(&partition_file(partition)))?;
        Ok(info)
    }
}

/// The write buffer of a local partition file. Pages arrive one buffer at a time (or 8 KiB
/// at a time through the parquet crate's writer, in files it helps encode); a buffer that
/// stays in L2 cache while it fills and the kernel copies it out costs less than one that
/// spills (1 MiB did, beside the query's own data), at one `write` call per 128 KiB, and a
/// page larger than the buffer goes to the kernel without passing through it.
const FILE_BUFFER: usize = 128 * 1024;

/// A partition file's bytes on their way to the store, checksummed and counted.
type Sink = ChecksumWriter<FileSink>;

/// Where a partition file's bytes go while it is encoded; see [`PartitionWriter::sink`].
#[derive(Debug)]
enum FileSink {
    Local(BufWriter<PreallocatedFile>),
    Memory(Vec<u8>),
}

impl Write for FileSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            FileSink::Local(file) => file.write(buf),
            FileSink::Memory(data) => data.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            FileSink::Local(file) => file.write_all(buf),
            FileSink::Memory(data) => data.write_all(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            FileSink::Local(file) => file.flush(),
            FileSink::Memory(_) => Ok(()),
        }
    }
}

/// Parquet writer settings for checkpoint files: the compression of
/// [`crate::parquet::write_parquet`] (so the files are as compact) and the row groups of
/// `options` (a checkpoint store's default: [`super::ROW_GROUP_ROWS`]), without column
/// statistics and page indexes (offset indexes included). Those exist so scans can skip row
/// groups and pages; a checkpoint partition is always read whole, so computing them is
/// wasted work in the task that writes the checkpoint, and leaving them out makes the files
/// smaller than plain Parquet's.
pub(super) fn checkpoint_properties(options: ParquetWriteOptions) -> WriterProperties {
    crate::parquet::writer_properties(options)
        .into_builder()
        .set_statistics_enabled(EnabledStatistics::None)
        // Also what lets Ember's own column chunks (which have none) share a file with
        // the parquet crate's: its footer writer needs every chunk or none to have one.
        .set_offset_index_disabled(true)
        .build()
}

/// Rows of the first batch sampled to choose each column's encoding: enough to tell flags
/// and categories from nearly unique values, and few enough that sampling (a sort or a hash
/// set per column, for every partition file) costs well under a millisecond per checkpoint.
const SAMPLE_ROWS: usize = 2048;
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
/// of its deltas (a few distinct values spread far apart, like status codes), or no wider
/// and cheaper to find (a few values close together, like discounts: see
/// [`cheap_dictionary`]). A nearly
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
        let layout = match integer_values(&sample) {
            Some(values) => {
                let sorted = sorted_distinct(&values);
                // Null is one more dictionary entry.
                let distinct = sorted.len() + usize::from(sample.null_count() > 0);
                let dictionary_bits = bits_for(distinct.saturating_sub(1) as u128);
                let delta_bits = delta_bits(&values);
                let narrower = 2 * dictionary_bits <= delta_bits;
                let no_wider = dictionary_bits <= delta_bits && cheap_dictionary(&sorted, distinct);
                if (narrower || no_wider) && distinct * 2 <= rows {
                    ColumnLayout::Dictionary
                } else {
                    ColumnLayout::Delta
                }
            }
            None => match distinct_values(&sample) {
                None => continue,
                Some(distinct) if distinct as f64 >= NEARLY_UNIQUE * rows as f64 => {
                    ColumnLayout::Plain
                }
                Some(_) => ColumnLayout::Dictionary,
            },
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
/// Hashed with the dictionaries' key hasher: SipHash over every sampled row of every
/// column made choosing the layouts cost 2–4 ms per checkpoint partition.
fn distinct_values(sample: &ArrayRef) -> Option<usize> {
    let converter = RowConverter::new(vec![SortField::new(sample.data_type().clone())]).ok()?;
    let encoded = converter
        .convert_columns(std::slice::from_ref(sample))
        .ok()?;
    let distinct: HashSet<&[u8], BuildHasherDefault<KeyHasher>> =
        encoded.iter().map(|r| r.data()).collect();
    Some(distinct.len())
}

/// The distinct values among `values` (a sample's non-null integers), in order.
fn sorted_distinct(values: &[i128]) -> Vec<i128> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    sorted
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

/// Whether a dictionary of a sample's values (`sorted`, distinct; `distinct` entries with
/// null) is cheaper to encode than their deltas: codes that fit a byte, of values close
/// enough together for the table that gives each code with a subtraction and a load
/// ([`holds_with_room`]). Such codes are looked up and bit-packed a byte at a time, where a
/// delta costs several operations per value (TPC-H's `l_discount` and `l_tax`: ~0.9 ns per
/// value as deltas at 5 bits, less as 4-bit codes).
fn cheap_dictionary(sorted: &[i128], distinct: usize) -> bool {
    match (sorted.first(), sorted.last()) {
        (Some(&low), Some(&high)) => distinct <= 256 && holds_with_room(low, high),
        _ => false,
    }
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
