//! CSV tables: a header row (by default), a schema inferred from the first rows of the first
//! file (integers, floats, booleans, `2024-01-31` dates as Date32, timestamps, else strings),
//! one scan partition per file.

use std::any::Any;
use std::fs::File;
use std::io::BufReader;
use std::sync::Arc;

use arrow::csv::reader::Format;
use arrow::csv::ReaderBuilder;
use arrow::datatypes::SchemaRef;
use ember_planner::error::{EmberError, Result};
use ember_planner::table::{BatchIter, ScanPartition, ScanRequest, Statistics, TableSource};
use ember_planner::wire::SourceDescriptor;

use crate::file_scan::{
    columns_to_read, file_partition_from_spec, file_partitions, finish_batch, read_error,
    FileInput, FileOpener, BATCH_SIZE,
};
use crate::listing::{files_identity, list_files, ListedFile};
use crate::wire::{file_specs, to_spec, CsvSpec, FilePartitionSpec};

/// Rows read from the first file to infer the schema.
pub const SCHEMA_INFERENCE_ROWS: usize = 1000;

/// How the CSV files are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsvOptions {
    pub has_header: bool,
    pub delimiter: u8,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            has_header: true,
            delimiter: b',',
        }
    }
}

#[derive(Debug)]
pub struct CsvTable {
    location: String,
    schema: SchemaRef,
    files: Vec<ListedFile>,
    opener: Arc<CsvOpener>,
}

impl CsvTable {
    /// Opens the CSV files at `location` with a header row and `,` as delimiter.
    pub fn try_new(location: &str) -> Result<Self> {
        Self::try_new_with_options(location, CsvOptions::default())
    }

    /// Opens the CSV files at `location`, inferring the schema from the first file.
    pub fn try_new_with_options(location: &str, options: CsvOptions) -> Result<Self> {
        let files = list_files(location)?;
        let first = files
            .first()
            .ok_or_else(|| EmberError::Internal(format!("listing {location} returned no files")))?;
        let path = first.display();
        let file = File::open(&first.path).map_err(|e| EmberError::io(&path, e))?;
        let (schema, _) = Format::default()
            .with_header(options.has_header)
            .with_delimiter(options.delimiter)
            .infer_schema(BufReader::new(file), Some(SCHEMA_INFERENCE_ROWS))
            .map_err(|e| read_error(&path, e))?;
        if schema.fields().is_empty() {
            return Err(EmberError::Plan(format!(
                "no columns found in CSV file {path}"
            )));
        }
        Ok(Self::build(location, files, Arc::new(schema), options))
    }

    /// Opens the CSV files at `location` with a given schema (as `CREATE EXTERNAL TABLE t
    /// (cols...)` declares it) instead of inferring one.
    pub fn try_new_with_schema(
        location: &str,
        schema: SchemaRef,
        options: CsvOptions,
    ) -> Result<Self> {
        let files = list_files(location)?;
        Ok(Self::build(location, files, schema, options))
    }

    fn build(
        location: &str,
        files: Vec<ListedFile>,
        schema: SchemaRef,
        options: CsvOptions,
    ) -> Self {
        CsvTable {
            location: location.to_string(),
            opener: Arc::new(CsvOpener {
                schema: Arc::clone(&schema),
                options,
            }),
            schema,
            files,
        }
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    /// A table over exactly `files` (reopening a plan's source, see [`crate::wire`]).
    pub(crate) fn from_listed(
        location: &str,
        files: Vec<ListedFile>,
        schema: SchemaRef,
        options: CsvOptions,
    ) -> Self {
        Self::build(location, files, schema, options)
    }

    pub(crate) fn partition_from_spec(
        &self,
        spec: &FilePartitionSpec,
    ) -> Result<Arc<dyn ScanPartition>> {
        let opener: Arc<dyn FileOpener> = self.opener.clone();
        file_partition_from_spec(&self.files, &self.schema, opener, "csv", spec)
    }
}

impl TableSource for CsvTable {
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
        let opener: Arc<dyn FileOpener> = self.opener.clone();
        file_partitions(&self.files, &self.schema, request, opener, "csv")
    }

    fn identity(&self) -> String {
        files_identity("csv", &self.files)
    }

    fn kind(&self) -> &str {
        "csv"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn descriptor(&self) -> Result<SourceDescriptor> {
        let spec = CsvSpec {
            location: self.location.clone(),
            files: file_specs(&self.files)?,
            schema: self.schema.as_ref().clone(),
            has_header: self.opener.options.has_header,
            delimiter: self.opener.options.delimiter,
        };
        Ok(SourceDescriptor {
            kind: self.kind().to_string(),
            identity: self.identity(),
            spec: to_spec(&spec)?,
        })
    }
}

#[derive(Debug)]
struct CsvOpener {
    schema: SchemaRef,
    options: CsvOptions,
}

impl FileOpener for CsvOpener {
    fn open(
        &self,
        input: FileInput,
        projection: Option<&[usize]>,
        output: &SchemaRef,
    ) -> Result<BatchIter> {
        let mut builder = ReaderBuilder::new(Arc::clone(&self.schema))
            // Only the range at the start of the file holds the header.
            .with_header(self.options.has_header && input.at_file_start)
            .with_delimiter(self.options.delimiter)
            .with_batch_size(BATCH_SIZE);
        if let Some(columns) = columns_to_read(&self.schema, projection) {
            builder = builder.with_projection(columns);
        }
        let reader = builder.build_buffered(input.reader)?;
        let output = Arc::clone(output);
        Ok(Box::new(
            reader.map(move |batch| finish_batch(batch?, &output)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Date32Array, Int64Array, StringArray};
    use arrow::datatypes::DataType;
    use std::fs;

    fn read_all(
        table: &CsvTable,
        projection: Option<Vec<usize>>,
    ) -> Result<Vec<arrow::record_batch::RecordBatch>> {
        let request = ScanRequest {
            projection,
            target_partitions: 2,
            ..Default::default()
        };
        let mut out = Vec::new();
        for p in table.scan(&request)? {
            for b in p.execute()? {
                out.push(b?);
            }
        }
        Ok(out)
    }

    #[test]
    fn infers_types_and_reads_with_projection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("people.csv");
        fs::write(
            &path,
            "id,name,born,score\n1,ann,2024-01-31,1.5\n2,bob,1999-12-01,2\n",
        )
        .unwrap();
        let table = CsvTable::try_new(path.to_str().unwrap()).unwrap();
        let schema = table.schema();
        assert_eq!(schema.field(0).data_type(), &DataType::Int64);
        assert_eq!(schema.field(1).data_type(), &DataType::Utf8);
        assert_eq!(schema.field(2).data_type(), &DataType::Date32);
        assert_eq!(schema.field(3).data_type(), &DataType::Float64);

        let batches = read_all(&table, Some(vec![2, 1])).unwrap();
        let b = &batches[0];
        assert_eq!(b.schema().field(0).name(), "born");
        let born = b.column(0).as_any().downcast_ref::<Date32Array>().unwrap();
        assert_eq!(born.value(0), 19753); // 2024-01-31
        let names = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(names.value(1), "bob");

        let counted = read_all(&table, Some(vec![])).unwrap();
        assert_eq!(counted.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
        let ids = read_all(&table, None).unwrap();
        let ids = ids[0]
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(ids.len(), 2);
    }

    #[test]
    fn folder_gives_one_partition_per_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.csv"), "x\n1\n2\n").unwrap();
        fs::write(dir.path().join("b.csv"), "x\n3\n").unwrap();
        fs::write(dir.path().join("_SUCCESS"), "").unwrap();
        let table = CsvTable::try_new(dir.path().to_str().unwrap()).unwrap();
        let parts = table.scan(&ScanRequest::default()).unwrap();
        assert_eq!(parts.len(), 2);
        assert!(parts[1].describe().contains("b.csv"));
        let rows: usize = read_all(&table, None)
            .unwrap()
            .iter()
            .map(|b| b.num_rows())
            .sum();
        assert_eq!(rows, 3);
    }

    #[test]
    fn big_file_splits_into_line_aligned_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.csv");
        let mut text = String::from("id,name\n");
        for i in 0..1000 {
            text.push_str(&format!("{i},name{i}\n"));
        }
        fs::write(&path, &text).unwrap();
        let table = CsvTable::try_new(path.to_str().unwrap()).unwrap();
        let request = ScanRequest {
            target_partitions: 4,
            ..Default::default()
        };
        // Small files are not split by default...
        assert_eq!(table.scan(&request).unwrap().len(), 1);
        // ...but with a small minimum the file becomes 4 ranges that together read every
        // row once, in order, with the header only in the first.
        let opener: Arc<dyn FileOpener> = table.opener.clone();
        let parts = crate::file_scan::file_partitions_with_min_split(
            &table.files,
            &table.schema,
            &request,
            opener,
            "csv",
            64,
        )
        .unwrap();
        assert_eq!(parts.len(), 4);
        assert!(parts[1].describe().contains("bytes"));
        let mut ids = Vec::new();
        for p in &parts {
            for b in p.execute().unwrap() {
                let b = b.unwrap();
                let col = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                ids.extend(col.values().iter().copied());
            }
        }
        assert_eq!(ids, (0..1000).collect::<Vec<i64>>());
    }

    #[test]
    fn wrong_column_count_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.csv");
        fs::write(&path, "a,b\n1,2\n3,4,5\n").unwrap();
        // Inference may or may not notice; reading must fail cleanly either way.
        let err = match CsvTable::try_new(path.to_str().unwrap()) {
            Err(e) => e,
            Ok(table) => read_all(&table, None).unwrap_err(),
        };
        let msg = err.to_string();
        assert!(
            msg.contains("failed to read") && msg.contains("bad.csv"),
            "{msg}"
        );
    }

    #[test]
    fn options_without_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.tbl");
        fs::write(&path, "1|a\n2|b\n").unwrap();
        let options = CsvOptions {
            has_header: false,
            delimiter: b'|',
        };
        let table = CsvTable::try_new_with_options(path.to_str().unwrap(), options).unwrap();
        assert_eq!(table.schema().field(0).name(), "column_1");
        let rows: usize = read_all(&table, None)
            .unwrap()
            .iter()
            .map(|b| b.num_rows())
            .sum();
        assert_eq!(rows, 2);
    }
}
