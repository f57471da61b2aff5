//! Pieces every file source shares: projecting schemas and batches (including the empty
//! projection of `COUNT(*)`), tagging errors with the file they came from, and the
//! one-partition-per-file scan used by the row-oriented formats (CSV, JSON lines, text).

use std::fmt;
use std::io::BufRead;
use std::sync::Arc;

use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use ember_planner::error::{EmberError, Result};
use ember_planner::table::{BatchIter, ScanPartition, ScanRequest};
use ember_planner::wire::PartitionDescriptor;

use crate::line_ranges::{open_lines, split_ranges, ByteRange};
use crate::listing::ListedFile;
use crate::wire::{path_text, to_spec, FilePartitionSpec};

/// Rows per batch that file readers produce.
pub const BATCH_SIZE: usize = 8192;

/// Wraps `e` with the path being read, keeping the inner error's type.
pub fn read_error(path: &str, e: impl Into<EmberError>) -> EmberError {
    e.into().context(format!("failed to read {path}"))
}

/// Checks a scan projection against a schema and returns the projected schema.
pub fn project_schema(schema: &SchemaRef, projection: Option<&[usize]>) -> Result<SchemaRef> {
    match projection {
        None => Ok(Arc::clone(schema)),
        Some(indices) => {
            if let Some(bad) = indices.iter().find(|&&i| i >= schema.fields().len()) {
                return Err(EmberError::Internal(format!(
                    "scan projection index {bad} out of range for a table with {} columns",
                    schema.fields().len()
                )));
            }
            Ok(Arc::new(schema.project(indices)?))
        }
    }
}

/// The columns a reader must decode to serve `projection`.
///
/// An empty projection (`SELECT COUNT(*)`) still needs row counts, and not every reader can
/// count rows without a column, so it decodes the first column and [`finish_batch`] drops it.
pub fn columns_to_read(schema: &Schema, projection: Option<&[usize]>) -> Option<Vec<usize>> {
    match projection {
        Some([]) if !schema.fields().is_empty() => Some(vec![0]),
        Some(p) => Some(p.to_vec()),
        None => None,
    }
}

/// Gives a batch decoded with [`columns_to_read`] exactly the promised output schema
/// (dropping the helper column of an empty projection and any file-level metadata).
pub fn finish_batch(batch: RecordBatch, output: &SchemaRef) -> Result<RecordBatch> {
    let columns = if output.fields().is_empty() {
        vec![]
    } else {
        batch.columns().to_vec()
    };
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(output),
        columns,
        &options,
    )?)
}

/// What a row-oriented format reads: a whole file or the lines of one byte range of it.
pub struct FileInput {
    pub reader: Box<dyn BufRead + Send>,
    /// True when the input begins at the file's first byte (so it holds a CSV header).
    pub at_file_start: bool,
}

/// How a row-oriented format decodes its input.
pub trait FileOpener: fmt::Debug + Send + Sync {
    /// Decodes `input`, producing batches with exactly `output` as schema.
    fn open(
        &self,
        input: FileInput,
        projection: Option<&[usize]>,
        output: &SchemaRef,
    ) -> Result<BatchIter>;
}

/// A scan partition that reads one file, or the lines of one byte range of it.
#[derive(Debug)]
pub struct FilePartition {
    pub file: ListedFile,
    pub range: Option<ByteRange>,
    pub projection: Option<Vec<usize>>,
    pub output: SchemaRef,
    pub opener: Arc<dyn FileOpener>,
    pub kind: &'static str,
}

impl ScanPartition for FilePartition {
    fn execute(&self) -> Result<BatchIter> {
        let path = self.file.display();
        let reader = open_lines(&self.file.path, self.range)
            .map_err(|e| read_error(&path, EmberError::io(&path, e)))?;
        let input = FileInput {
            reader,
            at_file_start: self.range.is_none_or(|r| r.start == 0),
        };
        let inner = self
            .opener
            .open(input, self.projection.as_deref(), &self.output)
            .map_err(|e| read_error(&path, e))?;
        Ok(Box::new(
            inner.map(move |r| r.map_err(|e| read_error(&path, e))),
        ))
    }

    fn describe(&self) -> String {
        match self.range {
            None => format!("{} {}", self.kind, self.file.display()),
            Some(r) => format!(
                "{} {} bytes {}..{}",
                self.kind,
                self.file.display(),
                r.start,
                r.end
            ),
        }
    }

    fn descriptor(&self) -> Result<PartitionDescriptor> {
        let spec = FilePartitionSpec {
            path: path_text(&self.file.path)?,
            range: self.range.map(|r| (r.start, r.end)),
            projection: self.projection.clone(),
        };
        Ok(PartitionDescriptor(to_spec(&spec)?))
    }
}

/// Rebuilds the partition a [`FilePartition`]'s descriptor describes, for the table whose
/// files, schema and opener are given (see [`crate::wire`]).
pub(crate) fn file_partition_from_spec(
    files: &[ListedFile],
    schema: &SchemaRef,
    opener: Arc<dyn FileOpener>,
    kind: &'static str,
    spec: &FilePartitionSpec,
) -> Result<Arc<dyn ScanPartition>> {
    let file = files
        .iter()
        .find(|f| f.path.to_str() == Some(spec.path.as_str()))
        .ok_or_else(|| {
            EmberError::Plan(format!(
                "a {kind} scan partition reads {}, which is not a file of its table",
                spec.path
            ))
        })?;
    Ok(Arc::new(FilePartition {
        file: file.clone(),
        range: spec.byte_range(),
        projection: spec.projection.clone(),
        output: project_schema(schema, spec.projection.as_deref())?,
        opener,
        kind,
    }))
}

/// Files smaller than this are never split: a range costs a task, and tasks have overhead.
pub const MIN_SPLIT_BYTES: u64 = 8 << 20;

/// Scan partitions for line-oriented files: one per file, except that files much bigger than
/// their share of `target_partitions` are split into line-aligned byte ranges.
pub fn file_partitions(
    files: &[ListedFile],
    schema: &SchemaRef,
    request: &ScanRequest,
    opener: Arc<dyn FileOpener>,
    kind: &'static str,
) -> Result<Vec<Arc<dyn ScanPartition>>> {
    file_partitions_with_min_split(files, schema, request, opener, kind, MIN_SPLIT_BYTES)
}

pub(crate) fn file_partitions_with_min_split(
    files: &[ListedFile],
    schema: &SchemaRef,
    request: &ScanRequest,
    opener: Arc<dyn FileOpener>,
    kind: &'static str,
    min_split: u64,
) -> Result<Vec<Arc<dyn ScanPartition>>> {
    let projection = request.projection.as_deref();
    let output = project_schema(schema, projection)?;
    let total: u64 = files.iter().map(|f| f.size).sum();
    let target = request.target_partitions.max(1) as u64;
    let chunk = total.div_ceil(target).max(min_split);
    let mut partitions: Vec<Arc<dyn ScanPartition>> = Vec::new();
    for f in files {
        let ranges: Vec<Option<ByteRange>> = if f.size > chunk + chunk / 4 {
            split_ranges(f.size, chunk).into_iter().map(Some).collect()
        } else {
            vec![None]
        };
        for range in ranges {
            partitions.push(Arc::new(FilePartition {
                file: f.clone(),
                range,
                projection: projection.map(<[usize]>::to_vec),
                output: Arc::clone(&output),
                opener: Arc::clone(&opener),
                kind,
            }));
        }
    }
    Ok(partitions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int32Array;
    use arrow::datatypes::{DataType, Field};

    #[test]
    fn empty_projection_keeps_row_count() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int32, false),
            Field::new("b", DataType::Int32, false),
        ]));
        assert_eq!(columns_to_read(&schema, Some(&[])), Some(vec![0]));
        let out = project_schema(&schema, Some(&[])).unwrap();
        let read = RecordBatch::try_new(
            Arc::new(schema.project(&[0]).unwrap()),
            vec![Arc::new(Int32Array::from(vec![1, 2, 3]))],
        )
        .unwrap();
        let batch = finish_batch(read, &out).unwrap();
        assert_eq!(batch.num_columns(), 0);
        assert_eq!(batch.num_rows(), 3);
    }

    #[test]
    fn bad_projection_is_an_internal_error() {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int32, false)]));
        let err = project_schema(&schema, Some(&[3])).unwrap_err();
        assert!(matches!(err, EmberError::Internal(_)), "{err}");
    }
}
