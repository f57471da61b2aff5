//! How the planner sees tables: a schema, size statistics, and a way to split a scan into
//! partitions. Sources (Parquet, CSV, in-memory, ...) implement [`TableSource`] in
//! `ember-storage`; the planner never reads files itself.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use arrow::array::BooleanArray;
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use crate::error::{EmberError, Result};
use crate::expr::Expr;
use crate::wire::{PartitionDescriptor, SourceDescriptor};

/// A stream of record batches: what every operator and scan produces.
pub type BatchIter = Box<dyn Iterator<Item = Result<RecordBatch>> + Send>;

/// Size estimates that drive join side choice and checkpoint placement.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Statistics {
    pub num_rows: Option<usize>,
    pub total_bytes: Option<usize>,
}

/// What a scan asks of a table.
#[derive(Debug, Clone, Default)]
pub struct ScanRequest {
    /// Indices of the table's columns to read (`None` = all), in output order.
    pub projection: Option<Vec<usize>>,
    /// Conjuncts over the table's columns. Sources may use them to skip data (row groups,
    /// files) but need not apply them exactly: a `Filter` above the scan always remains.
    pub filters: Vec<Expr>,
    /// Desired number of partitions (a hint).
    pub target_partitions: usize,
    /// At most this many rows are needed (a hint).
    pub limit: Option<usize>,
}

/// One partition of a scan: a unit of work a task can read on its own.
pub trait ScanPartition: fmt::Debug + Send + Sync {
    /// Reads the partition. Must return the same rows in the same order every time
    /// (recomputation after a failure relies on it).
    fn execute(&self) -> Result<BatchIter>;
    /// A short description for EXPLAIN (file name and row groups, ...).
    fn describe(&self) -> String;

    /// Reads the partition, keeping only the rows `filter` keeps, in the same order as
    /// [`execute`](Self::execute). Columnar sources override it to decode the filter's columns
    /// first and the others only for kept rows (late materialisation); this default decodes
    /// every column and then drops rows.
    fn execute_filtered(&self, filter: Box<dyn RowFilter>) -> Result<BatchIter> {
        Ok(filter_decoded(self.execute()?, filter))
    }

    /// This partition as plain data, so a plan can run in another process (see
    /// [`crate::wire`]). Only partitions of sources that other processes can open have one.
    fn descriptor(&self) -> Result<PartitionDescriptor> {
        Err(EmberError::NotImplemented(format!(
            "scan partition '{}' cannot be sent to another process: its data lives only in this one",
            self.describe()
        )))
    }
}

/// A row predicate a scan applies while it reads (see [`ScanPartition::execute_filtered`]).
pub trait RowFilter: Send {
    /// Positions, in the scan's output schema, of the columns the filter reads: distinct,
    /// ascending, and at least one.
    fn columns(&self) -> &[usize];

    /// Which rows of `batch` — exactly the [`columns`](Self::columns), in that order — to keep:
    /// a mask without NULLs, or `None` to keep every row.
    fn keep(&mut self, batch: &RecordBatch) -> Result<Option<BooleanArray>>;
}

/// Applies `filter` to whole decoded batches (what a source without late materialisation
/// does).
pub fn filter_decoded(input: BatchIter, mut filter: Box<dyn RowFilter>) -> BatchIter {
    let columns = filter.columns().to_vec();
    Box::new(input.filter_map(move |batch| {
        let batch = match batch {
            Ok(batch) => batch,
            Err(e) => return Some(Err(e)),
        };
        let kept = batch
            .project(&columns)
            .map_err(EmberError::from)
            .and_then(|narrow| filter.keep(&narrow));
        match kept {
            Ok(None) => Some(Ok(batch)),
            Ok(Some(mask)) if mask.true_count() == 0 => None,
            Ok(Some(mask)) => Some(filter_record_batch(&batch, &mask).map_err(Into::into)),
            Err(e) => Some(Err(e)),
        }
    }))
}

pub trait TableSource: fmt::Debug + Send + Sync {
    /// The full schema of the table.
    fn schema(&self) -> SchemaRef;

    fn statistics(&self) -> Statistics {
        Statistics::default()
    }

    /// Splits a scan into partitions. Each partition yields batches with the projected schema.
    fn scan(&self, request: &ScanRequest) -> Result<Vec<Arc<dyn ScanPartition>>>;

    /// A stable identity of the data (paths, sizes, modification times), for fingerprints:
    /// a checkpoint is reused only if its inputs are unchanged.
    fn identity(&self) -> String;

    /// The format's name for EXPLAIN ("parquet", "csv", "memory", ...).
    fn kind(&self) -> &str;

    fn as_any(&self) -> &dyn Any;

    /// This table as plain data, so a plan reading it can run in another process (see
    /// [`crate::wire`]). In-memory tables have none: their rows exist only here.
    fn descriptor(&self) -> Result<SourceDescriptor> {
        Err(EmberError::NotImplemented(format!(
            "a {} table cannot be sent to another process: its data lives only in this one",
            self.kind()
        )))
    }
}
