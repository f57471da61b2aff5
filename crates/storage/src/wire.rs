//! File sources on the wire: the specs Ember's file tables put in their
//! [`SourceDescriptor`]s and [`PartitionDescriptor`]s, and [`FileScanResolver`], which turns
//! them back into tables and scan partitions in the process that runs a plan.
//!
//! A source is described by its exact file list (path, size, modification time), not by the
//! location it was listed from: a partition recomputed after a failure must read the very
//! same bytes. Reopening re-stats every file and refuses one that changed since the plan was
//! made, instead of silently computing a different answer.
//!
//! | kind | source spec | partition spec |
//! |---|---|---|
//! | parquet | location, files | chunks (file path, row groups), columns to decode, output schema |
//! | csv | location, files, schema, header, delimiter | file path, byte range, projection |
//! | json | location, files, schema | file path, byte range, projection |
//! | text | location, files | file path, byte range, projection |

use std::path::PathBuf;
use std::sync::Arc;

use arrow::datatypes::Schema;
use ember_planner::error::{EmberError, Result};
use ember_planner::table::{ScanPartition, TableSource};
use ember_planner::wire::{PartitionDescriptor, ScanResolver, SourceDescriptor};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::csv::{CsvOptions, CsvTable};
use crate::json::JsonTable;
use crate::line_ranges::ByteRange;
use crate::listing::ListedFile;
use crate::parquet::ParquetTable;
use crate::text::TextTable;

/// A listed file with what identifies its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSpec {
    pub path: String,
    pub size: u64,
    /// Nanoseconds since the epoch, as a string (JSON numbers lose precision past 2^53).
    pub modified_nanos: String,
}

impl FileSpec {
    pub fn from_listed(file: &ListedFile) -> Result<Self> {
        Ok(FileSpec {
            path: path_text(&file.path)?,
            size: file.size,
            modified_nanos: file.modified_nanos.to_string(),
        })
    }

    /// Stats the file again; an error if it is gone or changed since it was described.
    pub fn reopen(&self) -> Result<ListedFile> {
        let listed = ListedFile::stat(PathBuf::from(&self.path))?;
        let modified = listed.modified_nanos.to_string();
        if listed.size != self.size || modified != self.modified_nanos {
            return Err(EmberError::Execution(format!(
                "{} changed since the plan was made (size {} -> {}, modified {} -> {}): \
                 refusing to read different data than the plan was made for",
                self.path, self.size, listed.size, self.modified_nanos, modified
            )));
        }
        Ok(listed)
    }
}

/// A path as UTF-8 text; a plan cannot carry any other.
pub fn path_text(path: &std::path::Path) -> Result<String> {
    path.to_str().map(str::to_string).ok_or_else(|| {
        EmberError::NotImplemented(format!(
            "file {} cannot be sent to another process: its path is not UTF-8",
            path.display()
        ))
    })
}

pub fn file_specs(files: &[ListedFile]) -> Result<Vec<FileSpec>> {
    files.iter().map(FileSpec::from_listed).collect()
}

fn reopen_all(files: &[FileSpec]) -> Result<Vec<ListedFile>> {
    files.iter().map(FileSpec::reopen).collect()
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ParquetSpec {
    pub location: String,
    pub files: Vec<FileSpec>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CsvSpec {
    pub location: String,
    pub files: Vec<FileSpec>,
    pub schema: Schema,
    pub has_header: bool,
    pub delimiter: u8,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct JsonSpec {
    pub location: String,
    pub files: Vec<FileSpec>,
    pub schema: Schema,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TextSpec {
    pub location: String,
    pub files: Vec<FileSpec>,
}

/// Some row groups of one Parquet file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParquetChunkSpec {
    pub path: String,
    pub row_groups: Vec<usize>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ParquetPartitionSpec {
    pub chunks: Vec<ParquetChunkSpec>,
    /// Table column indices to decode (`None` = all).
    pub read_columns: Option<Vec<usize>>,
    pub output: Schema,
}

/// One file of a row-oriented table, or a byte range of it.
#[derive(Debug, Serialize, Deserialize)]
pub struct FilePartitionSpec {
    pub path: String,
    /// `(start, end)` byte offsets; `None` = the whole file.
    pub range: Option<(u64, u64)>,
    pub projection: Option<Vec<usize>>,
}

impl FilePartitionSpec {
    pub fn byte_range(&self) -> Option<ByteRange> {
        self.range.map(|(start, end)| ByteRange { start, end })
    }
}

/// A spec as the JSON value a descriptor carries.
pub fn to_spec(spec: &impl Serialize) -> Result<serde_json::Value> {
    serde_json::to_value(spec)
        .map_err(|e| EmberError::Internal(format!("cannot serialise a source spec: {e}")))
}

fn from_spec<T: DeserializeOwned>(what: &str, value: &serde_json::Value) -> Result<T> {
    serde_json::from_value(value.clone())
        .map_err(|e| EmberError::Plan(format!("invalid {what} in a plan: {e}")))
}

/// The [`ScanResolver`] for Ember's file sources (Parquet, CSV, JSON lines, text).
///
/// Each call reopens the files (Parquet footers included); a plan's sources are resolved
/// once per decoded plan.
#[derive(Debug, Default, Clone, Copy)]
pub struct FileScanResolver;

impl ScanResolver for FileScanResolver {
    fn resolve_source(&self, desc: &SourceDescriptor) -> Result<Arc<dyn TableSource>> {
        let source: Arc<dyn TableSource> = match desc.kind.as_str() {
            "parquet" => {
                let spec: ParquetSpec = from_spec("parquet source", &desc.spec)?;
                Arc::new(ParquetTable::from_listed(
                    &spec.location,
                    reopen_all(&spec.files)?,
                )?)
            }
            "csv" => {
                let spec: CsvSpec = from_spec("csv source", &desc.spec)?;
                let options = CsvOptions {
                    has_header: spec.has_header,
                    delimiter: spec.delimiter,
                };
                Arc::new(CsvTable::from_listed(
                    &spec.location,
                    reopen_all(&spec.files)?,
                    Arc::new(spec.schema),
                    options,
                ))
            }
            "json" => {
                let spec: JsonSpec = from_spec("json source", &desc.spec)?;
                Arc::new(JsonTable::from_listed(
                    &spec.location,
                    reopen_all(&spec.files)?,
                    Arc::new(spec.schema),
                ))
            }
            "text" => {
                let spec: TextSpec = from_spec("text source", &desc.spec)?;
                Arc::new(TextTable::from_listed(
                    &spec.location,
                    reopen_all(&spec.files)?,
                ))
            }
            other => {
                return Err(EmberError::NotImplemented(format!(
                    "cannot reopen a {other} table: the file resolver knows parquet, csv, json and text"
                )))
            }
        };
        let identity = source.identity();
        if identity != desc.identity {
            return Err(EmberError::Execution(format!(
                "a {} table reopened with identity {identity}, but the plan was made for {}",
                desc.kind, desc.identity
            )));
        }
        Ok(source)
    }

    fn resolve_partition(
        &self,
        source: &Arc<dyn TableSource>,
        desc: &PartitionDescriptor,
    ) -> Result<Arc<dyn ScanPartition>> {
        let any = source.as_any();
        if let Some(table) = any.downcast_ref::<ParquetTable>() {
            return table.partition_from_spec(&from_spec("parquet partition", &desc.0)?);
        }
        let spec: FilePartitionSpec = from_spec("file partition", &desc.0)?;
        if let Some(table) = any.downcast_ref::<CsvTable>() {
            table.partition_from_spec(&spec)
        } else if let Some(table) = any.downcast_ref::<JsonTable>() {
            table.partition_from_spec(&spec)
        } else if let Some(table) = any.downcast_ref::<TextTable>() {
            table.partition_from_spec(&spec)
        } else {
            Err(EmberError::Internal(format!(
                "the file resolver was asked for a partition of a {} table it did not open",
                source.kind()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field};
    use arrow::record_batch::RecordBatch;
    use ember_planner::table::ScanRequest;

    use super::*;
    use crate::memory::MemTable;
    use crate::parquet::{write_parquet, ParquetWriteOptions};

    fn rows_of(partition: &Arc<dyn ScanPartition>) -> Vec<RecordBatch> {
        partition
            .execute()
            .unwrap()
            .collect::<Result<Vec<_>>>()
            .unwrap()
    }

    /// Describes every partition of a scan, sends source and partitions through JSON text,
    /// reopens them, and checks they describe themselves identically and read the same rows.
    fn round_trip(source: Arc<dyn TableSource>, request: &ScanRequest) -> usize {
        let desc = source.descriptor().unwrap();
        let text = serde_json::to_string(&desc).unwrap();
        let parsed: SourceDescriptor = serde_json::from_str(&text).unwrap();
        let reopened = FileScanResolver.resolve_source(&parsed).unwrap();
        assert_eq!(
            serde_json::to_string(&reopened.descriptor().unwrap()).unwrap(),
            text
        );
        assert_eq!(reopened.schema(), source.schema());
        let partitions = source.scan(request).unwrap();
        for partition in &partitions {
            let pdesc = partition.descriptor().unwrap();
            let ptext = serde_json::to_string(&pdesc).unwrap();
            let parsed: PartitionDescriptor = serde_json::from_str(&ptext).unwrap();
            let rebuilt = FileScanResolver
                .resolve_partition(&reopened, &parsed)
                .unwrap();
            assert_eq!(
                serde_json::to_string(&rebuilt.descriptor().unwrap()).unwrap(),
                ptext
            );
            assert_eq!(rebuilt.describe(), partition.describe());
            assert_eq!(rows_of(&rebuilt), rows_of(partition));
        }
        partitions.len()
    }

    fn people() -> (Arc<Schema>, RecordBatch) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, false),
        ]));
        let ids: Vec<i64> = (0..1000).collect();
        let names: Vec<String> = ids.iter().map(|i| format!("n{i}")).collect();
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StringArray::from(names)),
            ],
        )
        .unwrap();
        (schema, batch)
    }

    fn write_people_parquet(dir: &Path) {
        let (schema, batch) = people();
        let options = ParquetWriteOptions {
            max_row_group_rows: 100,
            zstd: false,
        };
        for name in ["a.parquet", "b.parquet"] {
            write_parquet(
                &dir.join(name),
                &schema,
                std::slice::from_ref(&batch),
                options,
            )
            .unwrap();
        }
    }

    #[test]
    fn parquet_row_group_partitions_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        write_people_parquet(dir.path());
        let table = ParquetTable::try_new(dir.path().to_str().unwrap()).unwrap();
        let request = ScanRequest {
            projection: Some(vec![1, 0]),
            target_partitions: 5,
            ..Default::default()
        };
        assert_eq!(round_trip(Arc::new(table), &request), 5);
        let table = ParquetTable::try_new(dir.path().to_str().unwrap()).unwrap();
        let count_star = ScanRequest {
            projection: Some(vec![]),
            target_partitions: 2,
            ..Default::default()
        };
        round_trip(Arc::new(table), &count_star);
    }

    #[test]
    fn row_oriented_formats_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("t.csv");
        let mut text = String::from("id;name\n");
        for i in 0..500 {
            text.push_str(&format!("{i};n{i}\n"));
        }
        fs::write(&csv, &text).unwrap();
        let options = CsvOptions {
            has_header: true,
            delimiter: b';',
        };
        let request = ScanRequest {
            projection: Some(vec![1]),
            target_partitions: 2,
            ..Default::default()
        };
        let table = CsvTable::try_new_with_options(csv.to_str().unwrap(), options).unwrap();
        round_trip(Arc::new(table), &request);

        let json = dir.path().join("t.json");
        fs::write(
            &json,
            "{\"id\": 1, \"name\": \"a\"}\n{\"id\": 2, \"name\": \"b\"}\n",
        )
        .unwrap();
        let table = JsonTable::try_new(json.to_str().unwrap()).unwrap();
        round_trip(Arc::new(table), &request);

        let table = TextTable::try_new(csv.to_str().unwrap()).unwrap();
        round_trip(Arc::new(table), &ScanRequest::default());
    }

    #[test]
    fn byte_range_partitions_keep_their_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.txt");
        let text: String = (0..2000).map(|i| format!("line {i}\n")).collect();
        fs::write(&path, text).unwrap();
        let table = TextTable::try_new(path.to_str().unwrap()).unwrap();
        let spec = FilePartitionSpec {
            path: path.to_str().unwrap().to_string(),
            range: Some((100, 5000)),
            projection: None,
        };
        let part = table.partition_from_spec(&spec).unwrap();
        assert!(
            part.describe().contains("bytes 100..5000"),
            "{}",
            part.describe()
        );
        let back: FilePartitionSpec = serde_json::from_value(part.descriptor().unwrap().0).unwrap();
        assert_eq!(back.range, Some((100, 5000)));
        let rows: usize = rows_of(&part).iter().map(|b| b.num_rows()).sum();
        assert!(rows > 0 && rows < 2000, "{rows}");
    }

    #[test]
    fn changed_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.txt");
        fs::write(&path, "a\nb\n").unwrap();
        let table = TextTable::try_new(path.to_str().unwrap()).unwrap();
        let desc = table.descriptor().unwrap();
        fs::write(&path, "a\nb\nc\n").unwrap();
        let err = FileScanResolver.resolve_source(&desc).unwrap_err();
        assert!(
            err.to_string().contains("changed since the plan was made"),
            "{err}"
        );

        fs::remove_file(&path).unwrap();
        let err = FileScanResolver.resolve_source(&desc).unwrap_err();
        assert!(err.to_string().contains("log.txt"), "{err}");
    }

    #[test]
    fn foreign_partitions_and_memory_tables_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        write_people_parquet(dir.path());
        let a = dir.path().join("a.parquet");
        let table: Arc<dyn TableSource> =
            Arc::new(ParquetTable::try_new(a.to_str().unwrap()).unwrap());
        let other = dir.path().join("b.parquet").to_str().unwrap().to_string();
        let (schema, _) = people();
        let spec = ParquetPartitionSpec {
            chunks: vec![ParquetChunkSpec {
                path: other,
                row_groups: vec![0],
            }],
            read_columns: None,
            output: schema.as_ref().clone(),
        };
        let desc = PartitionDescriptor(to_spec(&spec).unwrap());
        let err = FileScanResolver
            .resolve_partition(&table, &desc)
            .unwrap_err();
        assert!(err.to_string().contains("not a file of table"), "{err}");

        let spec = ParquetPartitionSpec {
            chunks: vec![ParquetChunkSpec {
                path: a.to_str().unwrap().to_string(),
                row_groups: vec![99],
            }],
            read_columns: None,
            output: schema.as_ref().clone(),
        };
        let desc = PartitionDescriptor(to_spec(&spec).unwrap());
        let err = FileScanResolver
            .resolve_partition(&table, &desc)
            .unwrap_err();
        assert!(err.to_string().contains("row group 99"), "{err}");

        let memory = MemTable::empty(schema);
        let err = memory.descriptor().unwrap_err();
        assert!(matches!(err, EmberError::NotImplemented(_)), "{err}");
        let unknown = SourceDescriptor {
            kind: "memory".into(),
            identity: String::new(),
            spec: serde_json::Value::Null,
        };
        assert!(FileScanResolver.resolve_source(&unknown).is_err());
    }
}
