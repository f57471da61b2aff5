//! Text tables: one row per line, in a single `line` column (Utf8), like Spark's
//! `spark.read.text`. Line endings (`\n`, `\r\n`) are not part of the value.

use std::any::Any;
use std::io::{BufRead, Lines};
use std::sync::Arc;

use arrow::array::{ArrayRef, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use ember_planner::error::{EmberError, Result};
use ember_planner::table::{BatchIter, ScanPartition, ScanRequest, Statistics, TableSource};
use ember_planner::wire::SourceDescriptor;

use crate::file_scan::{
    file_partition_from_spec, file_partitions, FileInput, FileOpener, BATCH_SIZE,
};
use crate::listing::{files_identity, list_files, ListedFile};
use crate::wire::{file_specs, to_spec, FilePartitionSpec, TextSpec};

/// The name of a text table's only column.
pub const LINE_COLUMN: &str = "line";

#[derive(Debug)]
pub struct TextTable {
    location: String,
    schema: SchemaRef,
    files: Vec<ListedFile>,
}

impl TextTable {
    pub fn try_new(location: &str) -> Result<Self> {
        Ok(Self::from_listed(location, list_files(location)?))
    }

    /// A table over exactly `files` (also for reopening a plan's source, see
    /// [`crate::wire`]).
    pub(crate) fn from_listed(location: &str, files: Vec<ListedFile>) -> Self {
        TextTable {
            location: location.to_string(),
            schema: Arc::new(Schema::new(vec![Field::new(
                LINE_COLUMN,
                DataType::Utf8,
                false,
            )])),
            files,
        }
    }

    pub(crate) fn partition_from_spec(
        &self,
        spec: &FilePartitionSpec,
    ) -> Result<Arc<dyn ScanPartition>> {
        file_partition_from_spec(
            &self.files,
            &self.schema,
            Arc::new(TextOpener),
            "text",
            spec,
        )
    }

    pub fn location(&self) -> &str {
        &self.location
    }
}

impl TableSource for TextTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn statistics(&self) -> Statistics {
        Statistics {
            num_rows: None,
            total_bytes: Some(self.files.iter().map(|f| f.size as usize).sum()),
        }
    }

    fn scan(&self, request: &ScanRequest) -> Result<Vec<Arc<dyn ScanPartition>>> {
        file_partitions(
            &self.files,
            &self.schema,
            request,
            Arc::new(TextOpener),
            "text",
        )
    }

    fn identity(&self) -> String {
        files_identity("text", &self.files)
    }

    fn kind(&self) -> &str {
        "text"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn descriptor(&self) -> Result<SourceDescriptor> {
        let spec = TextSpec {
            location: self.location.clone(),
            files: file_specs(&self.files)?,
        };
        Ok(SourceDescriptor {
            kind: self.kind().to_string(),
            identity: self.identity(),
            spec: to_spec(&spec)?,
        })
    }
}

#[derive(Debug)]
struct TextOpener;

impl FileOpener for TextOpener {
    fn open(
        &self,
        input: FileInput,
        _projection: Option<&[usize]>,
        output: &SchemaRef,
    ) -> Result<BatchIter> {
        Ok(Box::new(LineBatches {
            lines: input.reader.lines(),
            output: Arc::clone(output),
            done: false,
        }))
    }
}

/// Groups a file's lines into batches of [`BATCH_SIZE`].
struct LineBatches {
    lines: Lines<Box<dyn BufRead + Send>>,
    /// Either the `line` column or no column at all (`COUNT(*)`).
    output: SchemaRef,
    done: bool,
}

impl Iterator for LineBatches {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let mut builder = StringBuilder::new();
        let mut rows = 0;
        while rows < BATCH_SIZE {
            match self.lines.next() {
                Some(Ok(line)) => {
                    builder.append_value(line);
                    rows += 1;
                }
                Some(Err(e)) => {
                    self.done = true;
                    // The partition adds the path.
                    return Some(Err(EmberError::Execution(format!("cannot read line: {e}"))));
                }
                None => {
                    self.done = true;
                    break;
                }
            }
        }
        if rows == 0 {
            return None;
        }
        let column: ArrayRef = Arc::new(builder.finish());
        let columns = if self.output.fields().is_empty() {
            vec![]
        } else {
            vec![column]
        };
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        Some(
            RecordBatch::try_new_with_options(Arc::clone(&self.output), columns, &options)
                .map_err(EmberError::from),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, StringArray};
    use std::fs;

    fn lines_of(table: &TextTable, projection: Option<Vec<usize>>) -> Result<(usize, Vec<String>)> {
        let request = ScanRequest {
            projection,
            ..Default::default()
        };
        let mut rows = 0;
        let mut values = Vec::new();
        for p in table.scan(&request)? {
            for b in p.execute()? {
                let b = b?;
                rows += b.num_rows();
                if b.num_columns() == 1 {
                    let col = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
                    values.extend((0..col.len()).map(|i| col.value(i).to_string()));
                }
            }
        }
        Ok((rows, values))
    }

    #[test]
    fn one_row_per_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.txt");
        fs::write(&path, "first\r\nsecond\n\nlast").unwrap();
        let table = TextTable::try_new(path.to_str().unwrap()).unwrap();
        let (rows, values) = lines_of(&table, None).unwrap();
        assert_eq!(rows, 4);
        assert_eq!(values, vec!["first", "second", "", "last"]);
        let (rows, values) = lines_of(&table, Some(vec![])).unwrap();
        assert_eq!((rows, values.len()), (4, 0));
    }

    #[test]
    fn many_lines_are_batched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.txt");
        let text: String = (0..BATCH_SIZE + 10).map(|i| format!("{i}\n")).collect();
        fs::write(&path, text).unwrap();
        let table = TextTable::try_new(path.to_str().unwrap()).unwrap();
        let parts = table.scan(&ScanRequest::default()).unwrap();
        let sizes: Vec<usize> = parts[0]
            .execute()
            .unwrap()
            .map(|b| b.unwrap().num_rows())
            .collect();
        assert_eq!(sizes, vec![BATCH_SIZE, 10]);
    }

    #[test]
    fn invalid_utf8_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bin.txt");
        fs::write(&path, [b'o', b'k', b'\n', 0xff, 0xfe, b'\n']).unwrap();
        let table = TextTable::try_new(path.to_str().unwrap()).unwrap();
        let msg = lines_of(&table, None).unwrap_err().to_string();
        assert!(msg.contains("bin.txt"), "{msg}");
    }
}
