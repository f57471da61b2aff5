//! A streaming Parquet encoder for checkpoint files.
//!
//! A checkpoint is written on the critical path of the job that first computes its data, so
//! encoding speed is the checkpoint's cost. The parquet crate's `ArrowWriter` spends about
//! 10 ns per value even on plain pages (levels, per-value encoder calls, page buffers), and a
//! hash-table insert per value for dictionaries — more than the query that produced the data.
//! This module encodes the columns that dominate checkpoints itself, a page at a time in tight
//! loops, and leaves the rest to the parquet crate's column writers in the same file:
//!
//! - integer-like columns (integers, dates, times, timestamps, decimals up to 18 digits) as
//!   `DELTA_BINARY_PACKED` ([`delta`]), or, when the layout sample says dictionary codes are
//!   much narrower than deltas, as a dictionary;
//! - strings and binaries laid out as dictionaries: a `PLAIN` dictionary page plus
//!   `RLE_DICTIONARY` data pages ([`dictionary`], [`hybrid`]);
//! - a dictionary that outgrows its limit continues in `PLAIN` (bytes) or delta (integers)
//!   pages, as parquet-rs and parquet-java fall back.
//!
//! Pages are uncompressed and carry no statistics: a checkpoint partition is always read
//! whole, and bit-packed pages leave a compressor little to find. Page headers are written
//! as the parquet crate writes them ([`page_header`]) and the footer by its metadata writer,
//! so the files are ordinary Parquet that any reader opens. A file whose every column Ember
//! encodes is written from the pages' own buffers ([`chunk_file`]); otherwise the parquet
//! crate's file writer takes Ember's chunks beside its own.
//!
//! Batches are encoded as the task produces them ([`FileEncoder::write`]), while they are
//! still in cache, rather than after the whole partition is computed.

mod byte_lookup;
mod byte_window;
mod chunk_file;
mod codes;
mod column;
pub(crate) mod delta;
mod dictionary;
pub(crate) mod hybrid;
mod page_header;
mod range_codes;
mod single_bytes;
#[cfg(test)]
mod tests_bits;
mod values;

use std::io::{self, Write};
use std::sync::Arc;

use arrow::array::{new_empty_array, ArrayRef};
use arrow::datatypes::{Field, SchemaRef};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_writer::{
    compute_leaves, ArrowColumnWriter, ArrowRowGroupWriterFactory, ArrowWriterOptions,
};
use parquet::arrow::ArrowWriter;
use parquet::basic::Type as PhysicalType;
use parquet::errors::{ParquetError, Result};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::{ColumnDescriptor, SchemaDescriptor};

use super::writer::ColumnLayout;
use chunk_file::ChunkFile;
use column::{ColumnChunk, Values};
pub(super) use dictionary::KeyHasher;
pub(super) use range_codes::holds_with_room;

/// Encodes record batches, as they come, into one Parquet file written to `W`.
pub(super) enum FileEncoder<W: Write + Send> {
    /// Flat schemas: Ember's column encoders where they apply, the parquet crate's elsewhere.
    Columns(ColumnsEncoder<W>),
    /// Nested columns (their levels are the parquet crate's business): its writer throughout.
    Arrow(ArrowWriter<W>),
}

impl<W: Write + Send> FileEncoder<W> {
    /// An encoder for `schema`; `layouts` gives each top-level column's layout by index (as
    /// chosen from a sample of the first batch), `properties` the parquet crate's settings for
    /// the columns it encodes.
    pub(super) fn try_new(
        sink: W,
        schema: SchemaRef,
        layouts: Vec<ColumnLayout>,
        properties: WriterProperties,
        skip_arrow_metadata: bool,
    ) -> Result<Self> {
        let max_row_group_rows = properties.max_row_group_row_count().unwrap_or(usize::MAX);
        let options = ArrowWriterOptions::new()
            .with_properties(properties)
            .with_skip_arrow_metadata(skip_arrow_metadata);
        if schema.fields().iter().any(|f| f.data_type().is_nested()) {
            let writer = ArrowWriter::try_new_with_options(sink, schema, options)?;
            return Ok(FileEncoder::Arrow(writer));
        }
        // The parquet crate's writer on a sink that drops everything, for the Parquet schema
        // and footer metadata it derives from the Arrow schema.
        let (probe, _) =
            ArrowWriter::try_new_with_options(io::sink(), schema.clone(), options.clone())?
                .into_serialized_writer()?;
        let plans: Vec<_> = schema
            .fields()
            .iter()
            .zip(probe.schema_descr().columns())
            .zip(layouts)
            .map(|((field, descr), layout)| new_values(field, descr, layout).map(|_| layout))
            .collect();
        let output = if plans.iter().all(Option::is_some) {
            let descr = SchemaDescriptor::new(probe.schema_descr().root_schema_ptr());
            Output::Chunks(ChunkFile::new(
                sink,
                Arc::new(descr),
                probe.properties().clone(),
            )?)
        } else {
            let writer = ArrowWriter::try_new_with_options(sink, schema.clone(), options)?;
            let (file, factory) = writer.into_serialized_writer()?;
            Output::Parquet { file, factory }
        };
        Ok(FileEncoder::Columns(ColumnsEncoder {
            schema,
            output,
            plans,
            row_group: None,
            row_groups: 0,
            max_row_group_rows: max_row_group_rows.max(1),
            max_row_group_bytes: MAX_ROW_GROUP_BYTES,
        }))
    }

    /// Encodes `batch` (of the encoder's schema).
    pub(super) fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        match self {
            FileEncoder::Columns(encoder) => encoder.write(batch),
            FileEncoder::Arrow(writer) => writer.write(batch),
        }
    }

    /// Finishes the file and returns its sink.
    pub(super) fn finish(self) -> Result<W> {
        match self {
            FileEncoder::Columns(encoder) => encoder.finish(),
            FileEncoder::Arrow(writer) => writer.into_inner(),
        }
    }
}

/// Fresh value encoders for `field` under `layout`, or `None` when the parquet crate
/// encodes it: Ember encodes integer-like columns (as deltas or dictionaries) and string or
/// binary columns laid out as dictionaries.
fn new_values(field: &Field, descr: &ColumnDescriptor, layout: ColumnLayout) -> Option<Values> {
    let probe = new_empty_array(field.data_type());
    match (layout, descr.physical_type()) {
        (ColumnLayout::Delta, PhysicalType::INT32) => {
            values::visit_i32(probe.as_ref(), &mut Vec::new()).then(Values::delta32)
        }
        (ColumnLayout::Delta, PhysicalType::INT64) => {
            values::visit_i64(probe.as_ref(), &mut Vec::new()).then(Values::delta64)
        }
        (ColumnLayout::Dictionary, PhysicalType::INT32) => {
            values::visit_i32(probe.as_ref(), &mut Vec::new()).then(Values::ints32_dictionary)
        }
        (ColumnLayout::Dictionary, PhysicalType::INT64) => {
            values::visit_i64(probe.as_ref(), &mut Vec::new()).then(Values::ints64_dictionary)
        }
        (ColumnLayout::Dictionary, PhysicalType::BYTE_ARRAY)
            if dictionary::supports(field.data_type()) =>
        {
            Some(Values::bytes_dictionary())
        }
        _ => None,
    }
}

/// The encoder of a flat schema.
pub(super) struct ColumnsEncoder<W: Write + Send> {
    schema: SchemaRef,
    output: Output<W>,
    /// Per column: its layout when Ember encodes it (see [`new_values`]).
    plans: Vec<Option<ColumnLayout>>,
    row_group: Option<RowGroup>,
    row_groups: usize,
    max_row_group_rows: usize,
    /// [`MAX_ROW_GROUP_BYTES`] (smaller in tests).
    max_row_group_bytes: usize,
}

/// Where a flat schema's row groups are written.
enum Output<W: Write + Send> {
    /// Ember encodes every column: pages go from their own buffers to the file.
    Chunks(ChunkFile<W>),
    /// The parquet crate encodes some column: its file writer, which takes Ember's chunks
    /// through a reader beside its own.
    Parquet {
        file: SerializedFileWriter<W>,
        factory: ArrowRowGroupWriterFactory,
    },
}

impl<W: Write + Send> Output<W> {
    fn schema_descr(&self) -> &SchemaDescriptor {
        match self {
            Output::Chunks(file) => file.schema_descr(),
            Output::Parquet { file, .. } => file.schema_descr(),
        }
    }
}

/// Encoded bytes a row group holds in memory before it is written, whatever its rows: wide
/// rows (long strings) end a row group early rather than buffer hundreds of megabytes per
/// partition file being written.
const MAX_ROW_GROUP_BYTES: usize = 64 << 20;

/// The row group being encoded.
struct RowGroup {
    columns: Vec<ColumnEncoder>,
    rows: usize,
}

impl RowGroup {
    /// The encoded bytes its columns hold so far (finished pages, for Ember's own).
    fn buffered_bytes(&self) -> usize {
        self.columns
            .iter()
            .map(|column| match column {
                ColumnEncoder::Ember(chunk) => chunk.buffered_bytes(),
                ColumnEncoder::Parquet(writer) => writer.memory_size(),
            })
            .sum()
    }
}

enum ColumnEncoder {
    // Both boxed: the variants are hundreds of bytes, and of very different sizes.
    Ember(Box<ColumnChunk>),
    Parquet(Box<ArrowColumnWriter>),
}

impl<W: Write + Send> ColumnsEncoder<W> {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let row_group = match &mut self.row_group {
                Some(row_group) => row_group,
                None => self.row_group.insert(self.new_row_group()?),
            };
            let take = (batch.num_rows() - offset).min(self.max_row_group_rows - row_group.rows);
            for ((column, array), field) in row_group
                .columns
                .iter_mut()
                .zip(batch.columns())
                .zip(self.schema.fields())
            {
                let array = array.slice(offset, take);
                match column {
                    ColumnEncoder::Ember(chunk) => chunk.write(array.as_ref())?,
                    ColumnEncoder::Parquet(writer) => write_leaves(writer, field, &array)?,
                }
            }
            row_group.rows += take;
            offset += take;
            if row_group.rows == self.max_row_group_rows
                || row_group.buffered_bytes() >= self.max_row_group_bytes
            {
                self.flush_row_group()?;
            }
        }
        Ok(())
    }

    fn new_row_group(&self) -> Result<RowGroup> {
        // The parquet crate makes writers for every column at once, each with its buffers:
        // only made when some column needs one.
        let mut writers = match &self.output {
            Output::Parquet { factory, .. } => factory.create_column_writers(self.row_groups)?,
            Output::Chunks(_) => Vec::new(),
        }
        .into_iter();
        let columns = self
            .schema
            .fields()
            .iter()
            .zip(self.output.schema_descr().columns())
            .zip(&self.plans)
            .map(|((field, descr), plan)| {
                let writer = writers.next();
                match plan.and_then(|layout| new_values(field, descr, layout)) {
                    Some(values) => Ok(ColumnEncoder::Ember(Box::new(ColumnChunk::new(
                        descr.clone(),
                        values,
                    )))),
                    None => writer
                        .map(|writer| ColumnEncoder::Parquet(Box::new(writer)))
                        .ok_or_else(|| no_writer(field)),
                }
            })
            .collect::<Result<_>>()?;
        Ok(RowGroup { columns, rows: 0 })
    }

    fn flush_row_group(&mut self) -> Result<()> {
        let Some(row_group) = self.row_group.take() else {
            return Ok(());
        };
        match &mut self.output {
            Output::Chunks(file) => {
                let chunks = row_group
                    .columns
                    .into_iter()
                    .zip(self.schema.fields())
                    .map(|(column, field)| match column {
                        ColumnEncoder::Ember(chunk) => chunk.close(),
                        ColumnEncoder::Parquet(_) => Err(no_writer(field)),
                    })
                    .collect::<Result<_>>()?;
                file.write_row_group(chunks, row_group.rows)?;
            }
            Output::Parquet { file, .. } => {
                let mut writer = file.next_row_group()?;
                for column in row_group.columns {
                    match column {
                        ColumnEncoder::Ember(chunk) => {
                            let chunk = chunk.close()?;
                            writer.append_column(&chunk.bytes, chunk.close_result()?)?;
                        }
                        ColumnEncoder::Parquet(column) => {
                            column.close()?.append_to_row_group(&mut writer)?
                        }
                    }
                }
                writer.close()?;
            }
        }
        self.row_groups += 1;
        Ok(())
    }

    fn finish(mut self) -> Result<W> {
        self.flush_row_group()?;
        match self.output {
            Output::Chunks(file) => file.finish(),
            Output::Parquet { file, .. } => file.into_inner(),
        }
    }
}

/// The error of a column planned for the parquet crate's encoders in a file without them.
fn no_writer(field: &Field) -> ParquetError {
    ParquetError::General(format!("no writer for checkpoint column {}", field.name()))
}

fn write_leaves(
    writer: &mut ArrowColumnWriter,
    field: &Arc<Field>,
    array: &ArrayRef,
) -> Result<()> {
    for leaf in compute_leaves(field, array)? {
        writer.write(&leaf)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
