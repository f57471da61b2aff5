//! In-memory tables: what `CREATE TABLE AS`, `INSERT INTO` and `register_table(batches)` make.
//!
//! The partitions sit behind a lock so `INSERT INTO` can append while the table is shared.
//! A scan takes a snapshot (cheap: batches are reference counted), so a running or
//! re-executed scan partition always returns the same rows even if an insert happens meanwhile.
//! Every change bumps a version that is part of the table's identity, so a checkpoint made
//! from an older version is never reused.

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::compute::cast;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use ember_planner::error::{EmberError, Result};
use ember_planner::table::{BatchIter, ScanPartition, ScanRequest, Statistics, TableSource};
use parking_lot::RwLock;

use crate::file_scan::project_schema;

/// Appends beyond this many partitions go into the smallest existing one, so many small
/// inserts do not turn into many tiny tasks.
pub const MAX_APPEND_PARTITIONS: usize = 32;

static NEXT_TABLE_ID: AtomicU64 = AtomicU64::new(1);

#[derive(Debug)]
struct State {
    partitions: Vec<Vec<RecordBatch>>,
    version: u64,
}

#[derive(Debug)]
pub struct MemTable {
    id: u64,
    schema: SchemaRef,
    state: RwLock<State>,
}

impl MemTable {
    /// A table with the given partitions. Batches are conformed to `schema` (same column
    /// count; types cast where they differ; the table's field names).
    pub fn try_new(schema: SchemaRef, partitions: Vec<Vec<RecordBatch>>) -> Result<Self> {
        let partitions = partitions
            .into_iter()
            .map(|p| {
                p.iter()
                    .map(|b| conform(&schema, b))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(MemTable {
            id: NEXT_TABLE_ID.fetch_add(1, Ordering::Relaxed),
            schema,
            state: RwLock::new(State {
                partitions,
                version: 0,
            }),
        })
    }

    /// An empty table (`CREATE TABLE t (...)`).
    pub fn empty(schema: SchemaRef) -> Self {
        // No batches to conform: cannot fail.
        MemTable {
            id: NEXT_TABLE_ID.fetch_add(1, Ordering::Relaxed),
            schema,
            state: RwLock::new(State {
                partitions: vec![],
                version: 0,
            }),
        }
    }

    /// Appends rows (`INSERT INTO`) and returns how many. The new batches become a new
    /// partition, or join the smallest one once there are [`MAX_APPEND_PARTITIONS`].
    pub fn append(&self, batches: Vec<RecordBatch>) -> Result<usize> {
        let batches = batches
            .iter()
            .filter(|b| b.num_rows() > 0)
            .map(|b| conform(&self.schema, b))
            .collect::<Result<Vec<_>>>()?;
        let rows = batches.iter().map(|b| b.num_rows()).sum();
        if rows == 0 {
            return Ok(0);
        }
        let mut state = self.state.write();
        if state.partitions.len() < MAX_APPEND_PARTITIONS {
            state.partitions.push(batches);
        } else {
            let smallest = (0..state.partitions.len())
                .min_by_key(|&i| {
                    state.partitions[i]
                        .iter()
                        .map(|b| b.num_rows())
                        .sum::<usize>()
                })
                .unwrap_or(0);
            state.partitions[smallest].extend(batches);
        }
        state.version += 1;
        Ok(rows)
    }

    /// A snapshot of the partitions.
    pub fn partitions(&self) -> Vec<Vec<RecordBatch>> {
        self.state.read().partitions.clone()
    }

    /// Bumped by every change.
    pub fn version(&self) -> u64 {
        self.state.read().version
    }
}

/// Gives `batch` the table's schema, casting columns whose type differs.
fn conform(schema: &SchemaRef, batch: &RecordBatch) -> Result<RecordBatch> {
    if batch.num_columns() != schema.fields().len() {
        return Err(EmberError::Plan(format!(
            "table has {} columns but the rows have {}",
            schema.fields().len(),
            batch.num_columns()
        )));
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(Arc::clone(column))
            } else {
                cast(column, field.data_type()).map_err(|e| {
                    EmberError::Plan(format!(
                        "cannot store a {} value in column {} of type {}: {e}",
                        column.data_type(),
                        field.name(),
                        field.data_type()
                    ))
                })
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(Arc::clone(schema), columns, &options)
        .map_err(|e| EmberError::Plan(format!("rows do not fit the table's schema: {e}")))
}

impl TableSource for MemTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn statistics(&self) -> Statistics {
        let state = self.state.read();
        let batches = state.partitions.iter().flatten();
        let (rows, bytes) = batches.fold((0, 0), |(r, b), batch| {
            (r + batch.num_rows(), b + batch.get_array_memory_size())
        });
        Statistics {
            num_rows: Some(rows),
            total_bytes: Some(bytes),
        }
    }

    fn scan(&self, request: &ScanRequest) -> Result<Vec<Arc<dyn ScanPartition>>> {
        let output = project_schema(&self.schema, request.projection.as_deref())?;
        let mut partitions = self.partitions();
        if partitions.is_empty() {
            partitions.push(vec![]);
        }
        Ok(partitions
            .into_iter()
            .enumerate()
            .map(|(index, batches)| {
                Arc::new(MemPartition {
                    index,
                    batches,
                    projection: request.projection.clone(),
                    output: Arc::clone(&output),
                }) as Arc<dyn ScanPartition>
            })
            .collect())
    }

    fn identity(&self) -> String {
        format!("memory:{}:v{}", self.id, self.version())
    }

    fn kind(&self) -> &str {
        "memory"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[derive(Debug)]
struct MemPartition {
    index: usize,
    batches: Vec<RecordBatch>,
    projection: Option<Vec<usize>>,
    output: SchemaRef,
}

impl ScanPartition for MemPartition {
    fn execute(&self) -> Result<BatchIter> {
        let batches = self.batches.clone();
        let projection = self.projection.clone();
        let output = Arc::clone(&self.output);
        Ok(Box::new(batches.into_iter().map(move |batch| {
            let columns = match &projection {
                Some(p) => p.iter().map(|&i| Arc::clone(batch.column(i))).collect(),
                None => batch.columns().to_vec(),
            };
            let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
            Ok(RecordBatch::try_new_with_options(
                Arc::clone(&output),
                columns,
                &options,
            )?)
        })))
    }

    fn describe(&self) -> String {
        let rows: usize = self.batches.iter().map(|b| b.num_rows()).sum();
        format!(
            "memory partition {} ({} batches, {rows} rows)",
            self.index,
            self.batches.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Int32Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Utf8, true),
        ]))
    }

    fn batch(a: Vec<i64>, b: Vec<&str>) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from(a)),
                Arc::new(StringArray::from(b)),
            ],
        )
        .unwrap()
    }

    fn scan_rows(table: &MemTable, projection: Option<Vec<usize>>) -> Vec<RecordBatch> {
        let request = ScanRequest {
            projection,
            ..Default::default()
        };
        table
            .scan(&request)
            .unwrap()
            .iter()
            .flat_map(|p| p.execute().unwrap().map(|b| b.unwrap()))
            .collect()
    }

    #[test]
    fn scan_with_projection_and_statistics() {
        let table = MemTable::try_new(
            schema(),
            vec![
                vec![batch(vec![1, 2], vec!["x", "y"])],
                vec![batch(vec![3], vec!["z"])],
            ],
        )
        .unwrap();
        assert_eq!(table.statistics().num_rows, Some(3));
        assert_eq!(table.scan(&ScanRequest::default()).unwrap().len(), 2);
        let out = scan_rows(&table, Some(vec![1]));
        assert_eq!(out[0].schema().field(0).name(), "b");
        let counted = scan_rows(&table, Some(vec![]));
        assert_eq!(counted.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
        assert!(counted.iter().all(|b| b.num_columns() == 0));
    }

    #[test]
    fn append_casts_bumps_identity_and_snapshots() {
        let table = MemTable::empty(schema());
        assert_eq!(table.scan(&ScanRequest::default()).unwrap().len(), 1);
        let before = table.identity();
        let partitions = table.scan(&ScanRequest::default()).unwrap();

        // Int32 values go into the Int64 column; field names come from the table.
        let other = RecordBatch::try_from_iter([
            ("x", Arc::new(Int32Array::from(vec![7, 8])) as _),
            ("y", Arc::new(StringArray::from(vec![Some("p"), None])) as _),
        ])
        .unwrap();
        assert_eq!(table.append(vec![other]).unwrap(), 2);
        assert_ne!(table.identity(), before);
        let rows = scan_rows(&table, None);
        assert_eq!(rows[0].schema(), schema());
        let a = rows[0]
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(a.value(1), 8);
        // A partition planned before the insert still sees the old rows.
        let old: usize = partitions[0]
            .execute()
            .unwrap()
            .map(|b| b.unwrap().num_rows())
            .sum();
        assert_eq!(old, 0);
    }

    #[test]
    fn append_rejects_wrong_shape() {
        let table = MemTable::empty(schema());
        let narrow = RecordBatch::try_from_iter([(
            "x",
            Arc::new(Int64Array::from(vec![1])) as Arc<dyn Array>,
        )])
        .unwrap();
        assert!(table.append(vec![narrow]).is_err());
        let nulls = RecordBatch::try_from_iter([
            ("a", Arc::new(Int64Array::from(vec![None, Some(1)])) as _),
            ("b", Arc::new(StringArray::from(vec!["a", "b"])) as _),
        ])
        .unwrap();
        // `a` is declared NOT NULL.
        let err = table.append(vec![nulls]).unwrap_err().to_string();
        assert!(err.contains("schema"), "{err}");
    }

    #[test]
    fn many_appends_stay_bounded() {
        let table = MemTable::empty(schema());
        for i in 0..(MAX_APPEND_PARTITIONS as i64 + 5) {
            table.append(vec![batch(vec![i], vec!["v"])]).unwrap();
        }
        assert_eq!(table.partitions().len(), MAX_APPEND_PARTITIONS);
        assert_eq!(table.statistics().num_rows, Some(MAX_APPEND_PARTITIONS + 5));
    }
}
