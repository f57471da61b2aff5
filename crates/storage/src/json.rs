//! JSON-lines tables (one object per line): schema inferred from the first rows of the first
//! file, one scan partition per file. Only the projected fields are decoded: the reader is
//! given the projected schema and skips the other keys.

use std::any::Any;
use std::fs::File;
use std::io::BufReader;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::json::reader::infer_json_schema;
use arrow::json::ReaderBuilder;
use ember_planner::error::{EmberError, Result};
use ember_planner::table::{BatchIter, ScanPartition, ScanRequest, Statistics, TableSource};
use ember_planner::wire::SourceDescriptor;

use crate::file_scan::{
    columns_to_read, file_partition_from_spec, file_partitions, finish_batch, read_error,
    FileInput, FileOpener, BATCH_SIZE,
};
use crate::listing::{files_identity, list_files, ListedFile};
use crate::wire::{file_specs, to_spec, FilePartitionSpec, JsonSpec};

/// Lines read from the first file to infer the schema.
pub const SCHEMA_INFERENCE_ROWS: usize = 1000;

#[derive(Debug)]
pub struct JsonTable {
    location: String,
    schema: SchemaRef,
    files: Vec<ListedFile>,
    opener: Arc<JsonOpener>,
}

impl JsonTable {
    /// Opens the JSON-lines files at `location`, inferring the schema from the first file.
    pub fn try_new(location: &str) -> Result<Self> {
        let files = list_files(location)?;
        let first = files
            .first()
            .ok_or_else(|| EmberError::Internal(format!("listing {location} returned no files")))?;
        let path = first.display();
        let file = File::open(&first.path).map_err(|e| EmberError::io(&path, e))?;
        let (schema, _) = infer_json_schema(BufReader::new(file), Some(SCHEMA_INFERENCE_ROWS))
            .map_err(|e| read_error(&path, e))?;
        if schema.fields().is_empty() {
            return Err(EmberError::Plan(format!(
                "no fields found in JSON file {path}"
            )));
        }
        Ok(Self::try_new_with_schema_and_files(
            location,
            files,
            Arc::new(schema),
        ))
    }

    /// Opens the JSON-lines files at `location` with a declared schema.
    pub fn try_new_with_schema(location: &str, schema: SchemaRef) -> Result<Self> {
        let files = list_files(location)?;
        Ok(Self::try_new_with_schema_and_files(location, files, schema))
    }

    fn try_new_with_schema_and_files(
        location: &str,
        files: Vec<ListedFile>,
        schema: SchemaRef,
    ) -> Self {
        JsonTable {
            location: location.to_string(),
            opener: Arc::new(JsonOpener {
                schema: Arc::clone(&schema),
            }),
            schema,
            files,
        }
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    /// A table over exactly `files` (reopening a plan's source, see [`crate::wire`]).
    pub(crate) fn from_listed(location: &str, files: Vec<ListedFile>, schema: SchemaRef) -> Self {
        Self::try_new_with_schema_and_files(location, files, schema)
    }

    pub(crate) fn partition_from_spec(
        &self,
        spec: &FilePartitionSpec,
    ) -> Result<Arc<dyn ScanPartition>> {
        let opener: Arc<dyn FileOpener> = self.opener.clone();
        file_partition_from_spec(&self.files, &self.schema, opener, "json", spec)
    }
}

impl TableSource for JsonTable {
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
        file_partitions(&self.files, &self.schema, request, opener, "json")
    }

    fn identity(&self) -> String {
        files_identity("json", &self.files)
    }

    fn kind(&self) -> &str {
        "json"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn descriptor(&self) -> Result<SourceDescriptor> {
        let spec = JsonSpec {
            location: self.location.clone(),
            files: file_specs(&self.files)?,
            schema: self.schema.as_ref().clone(),
        };
        Ok(SourceDescriptor {
            kind: self.kind().to_string(),
            identity: self.identity(),
            spec: to_spec(&spec)?,
        })
    }
}

#[derive(Debug)]
struct JsonOpener {
    schema: SchemaRef,
}

impl FileOpener for JsonOpener {
    fn open(
        &self,
        input: FileInput,
        projection: Option<&[usize]>,
        output: &SchemaRef,
    ) -> Result<BatchIter> {
        let read_schema = match columns_to_read(&self.schema, projection) {
            Some(columns) => Arc::new(self.schema.project(&columns)?),
            None => Arc::clone(&self.schema),
        };
        let reader = ReaderBuilder::new(read_schema)
            .with_batch_size(BATCH_SIZE)
            .build(input.reader)?;
        let output = Arc::clone(output);
        Ok(Box::new(
            reader.map(move |batch| finish_batch(batch?, &output)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Int64Array, StringArray};
    use arrow::datatypes::DataType;
    use arrow::record_batch::RecordBatch;
    use std::fs;

    fn read_all(table: &JsonTable, projection: Option<Vec<usize>>) -> Result<Vec<RecordBatch>> {
        let request = ScanRequest {
            projection,
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
    fn infers_schema_and_projects() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.json");
        fs::write(
            &path,
            "{\"id\": 1, \"kind\": \"a\"}\n{\"id\": 2, \"kind\": \"b\", \"extra\": true}\n",
        )
        .unwrap();
        let table = JsonTable::try_new(path.to_str().unwrap()).unwrap();
        let schema = table.schema();
        let id = schema.field_with_name("id").unwrap();
        assert_eq!(id.data_type(), &DataType::Int64);
        let id_index = schema.index_of("id").unwrap();
        let kind_index = schema.index_of("kind").unwrap();

        let batches = read_all(&table, Some(vec![kind_index, id_index])).unwrap();
        let b = &batches[0];
        assert_eq!(b.num_columns(), 2);
        let kinds = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(kinds.value(1), "b");
        let ids = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(ids.value(0), 1);

        let counted = read_all(&table, Some(vec![])).unwrap();
        assert_eq!(counted.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
    }

    #[test]
    fn bad_json_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("a.json");
        fs::write(&good, "{\"id\": 1}\n").unwrap();
        let bad = dir.path().join("b.json");
        fs::write(&bad, "{\"id\": 2}\n{\"id\": \n").unwrap();
        let table = JsonTable::try_new(dir.path().to_str().unwrap()).unwrap();
        let msg = read_all(&table, None).unwrap_err().to_string();
        assert!(
            msg.contains("failed to read") && msg.contains("b.json"),
            "{msg}"
        );
    }
}
