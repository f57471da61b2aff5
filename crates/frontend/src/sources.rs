//! Turning what the user names (a format and a path, a set of batches, a TPC-H scale) into
//! table sources. (Writing results out is `crate::write`.)

use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use ember_planner::table::TableSource;
use ember_planner::{EmberError, Result};
use ember_storage::csv::CsvTable;
use ember_storage::json::JsonTable;
use ember_storage::memory::MemTable;
use ember_storage::parquet::ParquetTable;
use ember_storage::text::TextTable;

use crate::sql::FileFormat;

/// Opens the files at `location` (a file, a folder or a glob) as a table of `format`.
pub fn open(format: FileFormat, location: &str) -> Result<Arc<dyn TableSource>> {
    let source: Arc<dyn TableSource> = match format {
        FileFormat::Parquet => Arc::new(ParquetTable::try_new(location)?),
        FileFormat::Csv => Arc::new(CsvTable::try_new(location)?),
        FileFormat::Json => Arc::new(JsonTable::try_new(location)?),
        FileFormat::Text => Arc::new(TextTable::try_new(location)?),
    };
    Ok(source)
}

/// An in-memory table with the given partitions.
pub fn memory(
    schema: SchemaRef,
    partitions: Vec<Vec<RecordBatch>>,
) -> Result<Arc<dyn TableSource>> {
    Ok(Arc::new(MemTable::try_new(schema, partitions)?))
}

/// Appends rows to table `name` (`INSERT INTO`); only in-memory tables accept rows.
pub fn append(
    name: &str,
    target: &Arc<dyn TableSource>,
    batches: Vec<RecordBatch>,
) -> Result<usize> {
    match target.as_any().downcast_ref::<MemTable>() {
        Some(table) => table.append(batches),
        None => Err(EmberError::NotImplemented(format!(
            "INSERT INTO '{name}': it is a {} table; only tables made with CREATE TABLE accept inserts",
            target.kind()
        ))),
    }
}

/// The eight TPC-H tables at scale factor `sf`, in memory, each split into `partitions`
/// partitions so scans run in parallel.
pub fn tpch(sf: f64, partitions: usize) -> Result<Vec<(String, Arc<dyn TableSource>)>> {
    if !(sf > 0.0 && sf.is_finite()) {
        return Err(EmberError::Config(format!(
            "invalid TPC-H scale factor {sf}: expected a positive number such as 0.1"
        )));
    }
    ember_storage::tpch::generate_tpch(sf)?
        .into_iter()
        .map(|(name, schema, batches)| {
            let parts = split_round_robin(batches, partitions.max(1));
            Ok((name, memory(schema, parts)?))
        })
        .collect()
}

/// Deals batches out to `n` partitions in turn.
fn split_round_robin(batches: Vec<RecordBatch>, n: usize) -> Vec<Vec<RecordBatch>> {
    let mut parts = vec![Vec::new(); n.min(batches.len()).max(1)];
    let len = parts.len();
    for (i, b) in batches.into_iter().enumerate() {
        parts[i % len].push(b);
    }
    parts
}

/// A table name for a path read directly (`read_parquet("data/trips.parquet")` → `trips`):
/// the file or folder name without extension, used to qualify its columns.
pub fn table_name_for(path: &str) -> String {
    // The last path component that is not a glob pattern: `logs/*.json` → `logs`.
    let last = Path::new(path)
        .components()
        .rev()
        .filter_map(|c| c.as_os_str().to_str())
        .find(|c| !c.contains(['*', '?', '[']) && *c != "." && *c != "..")
        .unwrap_or("");
    let stem = last.split('.').next().unwrap_or(last);
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .to_ascii_lowercase();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        format!("t_{name}")
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_come_from_the_file_name() {
        assert_eq!(table_name_for("data/trips.parquet"), "trips");
        assert_eq!(table_name_for("/x/out/"), "out");
        assert_eq!(table_name_for("logs/*.json"), "logs");
        assert_eq!(table_name_for("2024-data.csv"), "t_2024_data");
    }
}
