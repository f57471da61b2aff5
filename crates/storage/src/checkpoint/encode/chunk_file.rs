//! A Parquet file of column chunks Ember encoded itself, written from the pages' own buffers.
//!
//! The parquet crate's file writer takes a finished chunk only through a reader, and copies it
//! 8 KiB at a time through a stack buffer into its own write buffer: with the copy of each
//! page into a chunk buffer before that, three copies of every byte before the kernel's. When
//! Ember encodes every column of a file (the common case: integers, decimals, dates and
//! low-cardinality strings), this writer hands each page's buffers to the sink as they are
//! and writes the footer with the parquet crate's metadata writer, so the file is the same
//! Parquet the crate's writer makes.

use std::io::Write;

use parquet::errors::Result;
use parquet::file::metadata::{
    FileMetaData, ParquetMetaData, ParquetMetaDataWriter, RowGroupMetaData,
};
use parquet::file::properties::WriterPropertiesPtr;
use parquet::file::reader::Length;
use parquet::schema::types::{SchemaDescPtr, SchemaDescriptor};

use super::column::EncodedChunk;

/// The bytes a Parquet file starts and ends with.
const MAGIC: &[u8; 4] = b"PAR1";

pub(super) struct ChunkFile<W: Write> {
    sink: W,
    /// Bytes written so far: the next chunk's offset.
    written: u64,
    schema: SchemaDescPtr,
    /// Created-by, writer version and key-value metadata (the Arrow schema) for the footer.
    properties: WriterPropertiesPtr,
    row_groups: Vec<RowGroupMetaData>,
}

impl<W: Write> ChunkFile<W> {
    /// Starts a file of `schema` in `sink`.
    pub(super) fn new(
        mut sink: W,
        schema: SchemaDescPtr,
        properties: WriterPropertiesPtr,
    ) -> Result<Self> {
        sink.write_all(MAGIC)?;
        Ok(ChunkFile {
            sink,
            written: MAGIC.len() as u64,
            schema,
            properties,
            row_groups: Vec::new(),
        })
    }

    pub(super) fn schema_descr(&self) -> &SchemaDescriptor {
        &self.schema
    }

    /// Writes a row group of `rows` rows: one chunk per column, in schema order.
    pub(super) fn write_row_group(&mut self, chunks: Vec<EncodedChunk>, rows: usize) -> Result<()> {
        let start = self.written;
        let mut columns = Vec::with_capacity(chunks.len());
        for chunk in &chunks {
            columns.push(chunk.metadata(self.written)?);
            for part in chunk.bytes.parts() {
                self.sink.write_all(part)?;
            }
            self.written += chunk.bytes.len();
        }
        let row_group = RowGroupMetaData::builder(self.schema.clone())
            .set_column_metadata(columns)
            .set_total_byte_size((self.written - start) as i64)
            .set_num_rows(rows as i64)
            .set_ordinal(self.row_groups.len() as i16)
            .set_file_offset(start as i64)
            .build()?;
        self.row_groups.push(row_group);
        Ok(())
    }

    /// Writes the footer (file metadata, its length, the magic bytes) and returns the sink.
    pub(super) fn finish(mut self) -> Result<W> {
        let rows = self.row_groups.iter().map(|g| g.num_rows()).sum();
        let properties = &self.properties;
        let file = FileMetaData::new(
            properties.writer_version().as_num(),
            rows,
            Some(properties.created_by().to_string()),
            properties.key_value_metadata().cloned(),
            self.schema.clone(),
            // The metadata writer fills in every column's order.
            None,
        );
        let metadata = ParquetMetaData::new(file, self.row_groups);
        // Into memory first: the metadata writer buffers its output and would flush it to
        // the sink when dropped, where a write error is lost.
        let mut footer = Vec::new();
        ParquetMetaDataWriter::new(&mut footer, &metadata)
            .with_write_path_in_schema(properties.write_path_in_schema())
            .finish()?;
        self.sink.write_all(&footer)?;
        self.sink.flush()?;
        Ok(self.sink)
    }
}
