//! Writing record batches to one Parquet file, atomically: the data goes to a hidden temp file
//! next to the target, which is renamed into place only once complete, so a reader never sees
//! a half-written file under the final name.

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::Path;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use ember_planner::error::{EmberError, Result};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

/// Knobs for [`write_parquet`].
#[derive(Debug, Clone, Copy)]
pub struct ParquetWriteOptions {
    /// Rows per row group: smaller groups prune finer and split into more scan partitions.
    pub max_row_group_rows: usize,
    /// Zstd when true (smaller files), Snappy otherwise (faster).
    pub zstd: bool,
}

impl Default for ParquetWriteOptions {
    fn default() -> Self {
        ParquetWriteOptions {
            max_row_group_rows: 128 * 1024,
            zstd: false,
        }
    }
}

/// Writes `batches` as the Parquet file `path` and returns the number of rows written.
pub fn write_parquet(
    path: &Path,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    options: ParquetWriteOptions,
) -> Result<usize> {
    let display = path.display().to_string();
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| EmberError::Plan(format!("not a file path: {display}")))?;
    let tmp = path.with_file_name(format!(".{file_name}.tmp"));
    let result = write_to(&tmp, schema, batches, options)
        .and_then(|rows| {
            fs::rename(&tmp, path).map_err(|e| EmberError::io(&display, e))?;
            Ok(rows)
        })
        .map_err(|e| e.context(format!("failed to write {display}")));
    if result.is_err() {
        // Best effort: the temp name is hidden from readers anyway.
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_to(
    tmp: &Path,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    options: ParquetWriteOptions,
) -> Result<usize> {
    let file = File::create(tmp).map_err(|e| EmberError::io(tmp.display().to_string(), e))?;
    let props = writer_properties(options);
    let mut writer = ArrowWriter::try_new(BufWriter::new(file), schema.clone(), Some(props))?;
    let mut rows = 0;
    for batch in batches {
        writer.write(batch)?;
        rows += batch.num_rows();
    }
    let inner = writer.into_inner()?;
    let file = inner
        .into_inner()
        .map_err(|e| EmberError::io(tmp.display().to_string(), e.into_error()))?;
    file.sync_all()
        .map_err(|e| EmberError::io(tmp.display().to_string(), e))?;
    Ok(rows)
}

/// The Parquet writer settings for `options`, shared with every other Parquet writer in Ember
/// (checkpoints) so their files are exactly as compact as a plain [`write_parquet`].
pub(crate) fn writer_properties(options: ParquetWriteOptions) -> WriterProperties {
    let compression = if options.zstd {
        Compression::ZSTD(ZstdLevel::default())
    } else {
        Compression::SNAPPY
    };
    WriterProperties::builder()
        .set_max_row_group_row_count(Some(options.max_row_group_rows.max(1)))
        .set_compression(compression)
        .build()
}
