//! Parquet tables: a file list read through the footer metadata, split into scan partitions by
//! row groups, with projection pushed into the decoder and row groups pruned by statistics.

mod late;
mod pruning;
mod writer;

use std::any::Any;
use std::fs::File;
use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use ember_planner::error::{EmberError, Result};
use ember_planner::table::{
    filter_decoded, BatchIter, RowFilter, ScanPartition, ScanRequest, Statistics, TableSource,
};
use ember_planner::wire::{PartitionDescriptor, SourceDescriptor};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
};
use parquet::arrow::ProjectionMask;

use crate::file_scan::{columns_to_read, finish_batch, project_schema, read_error, BATCH_SIZE};
use crate::listing::{files_identity, list_files, ListedFile};
use crate::wire::{
    file_specs, path_text, to_spec, ParquetChunkSpec, ParquetPartitionSpec, ParquetSpec,
};

pub use pruning::prune_row_groups;
pub(crate) use writer::writer_properties;
pub use writer::{write_parquet, ParquetWriteOptions};

/// One Parquet file with its decoded footer, loaded once when the table is created.
#[derive(Debug)]
struct ParquetFile {
    listed: ListedFile,
    reader_meta: ArrowReaderMetadata,
}

impl ParquetFile {
    fn open(listed: ListedFile) -> Result<Self> {
        let path = listed.display();
        let file =
            File::open(&listed.path).map_err(|e| read_error(&path, EmberError::io(&path, e)))?;
        let reader_meta = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new())
            .map_err(|e| read_error(&path, e))?;
        Ok(ParquetFile {
            listed,
            reader_meta,
        })
    }

    fn schema(&self) -> &SchemaRef {
        self.reader_meta.schema()
    }
}

/// A table backed by one or more Parquet files with the same schema.
#[derive(Debug)]
pub struct ParquetTable {
    location: String,
    schema: SchemaRef,
    files: Vec<Arc<ParquetFile>>,
}

impl ParquetTable {
    /// Opens the Parquet files at `location` (a file, a folder or a glob) and reads their
    /// footers. The schema is the first file's; every other file must have the same columns.
    pub fn try_new(location: &str) -> Result<Self> {
        Self::from_listed(location, list_files(location)?)
    }

    /// A table over exactly `listed` (also for reopening a plan's source, see
    /// [`crate::wire`]).
    pub(crate) fn from_listed(location: &str, listed: Vec<ListedFile>) -> Result<Self> {
        let files = listed
            .into_iter()
            .map(|f| ParquetFile::open(f).map(Arc::new))
            .collect::<Result<Vec<_>>>()?;
        let first = files
            .first()
            .ok_or_else(|| EmberError::Internal(format!("listing {location} returned no files")))?;
        let mut fields: Vec<Field> = first
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_metadata(Default::default()))
            .collect();
        for file in &files[1..] {
            let other = file.schema();
            let same = other.fields().len() == fields.len()
                && other
                    .fields()
                    .iter()
                    .zip(&fields)
                    .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
            if !same {
                return Err(EmberError::Plan(format!(
                    "schema of {} differs from the schema of {}: {:?} vs {:?}",
                    file.listed.display(),
                    first.listed.display(),
                    other
                        .fields()
                        .iter()
                        .map(|f| (f.name(), f.data_type()))
                        .collect::<Vec<_>>(),
                    fields
                        .iter()
                        .map(|f| (f.name(), f.data_type()))
                        .collect::<Vec<_>>(),
                )));
            }
            // A column may hold nulls if it does so in any file.
            for (field, o) in fields.iter_mut().zip(other.fields()) {
                if o.is_nullable() && !field.is_nullable() {
                    *field = field.clone().with_nullable(true);
                }
            }
        }
        Ok(ParquetTable {
            location: location.to_string(),
            schema: Arc::new(Schema::new(fields)),
            files,
        })
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    /// The row groups a scan with `filters` reads, per file (after statistics pruning).
    pub fn row_groups_to_read(
        &self,
        filters: &[ember_planner::expr::Expr],
    ) -> Vec<(String, Vec<usize>)> {
        self.files
            .iter()
            .map(|f| {
                let keep = prune_row_groups(filters, f.schema(), f.reader_meta.metadata());
                let groups = keep
                    .iter()
                    .enumerate()
                    .filter_map(|(i, k)| k.then_some(i))
                    .collect();
                (f.listed.display(), groups)
            })
            .collect()
    }
}

impl ParquetTable {
    /// Rebuilds the partition a [`ParquetPartition`]'s descriptor describes; its files must
    /// be files of this table.
    pub(crate) fn partition_from_spec(
        &self,
        spec: &ParquetPartitionSpec,
    ) -> Result<Arc<dyn ScanPartition>> {
        let chunks = spec
            .chunks
            .iter()
            .map(|chunk| {
                let file = self
                    .files
                    .iter()
                    .find(|f| f.listed.path.to_str() == Some(chunk.path.as_str()))
                    .ok_or_else(|| {
                        EmberError::Plan(format!(
                            "a parquet scan partition reads {}, which is not a file of table {}",
                            chunk.path, self.location
                        ))
                    })?;
                let groups = file.reader_meta.metadata().num_row_groups();
                if let Some(bad) = chunk.row_groups.iter().find(|&&g| g >= groups) {
                    return Err(EmberError::Plan(format!(
                        "a parquet scan partition reads row group {bad} of {}, which has {groups}",
                        chunk.path
                    )));
                }
                Ok((Arc::clone(file), chunk.row_groups.clone()))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Arc::new(ParquetPartition {
            chunks,
            read_columns: spec.read_columns.clone(),
            output: Arc::new(spec.output.clone()),
        }))
    }
}

/// A unit of scan work: one row group of one file, with its compressed size.
struct RowGroupUnit {
    file: usize,
    row_group: usize,
    bytes: u64,
}

/// Splits `units` (in file order) into at most `target` contiguous groups of similar byte
/// size. Deterministic: the same units always give the same groups.
fn balance_by_bytes(units: Vec<RowGroupUnit>, target: usize) -> Vec<Vec<RowGroupUnit>> {
    let target = target.max(1) as u128;
    let total: u128 = units.iter().map(|u| u.bytes.max(1) as u128).sum();
    let mut groups: Vec<Vec<RowGroupUnit>> = Vec::new();
    let mut current_index = None;
    let mut before: u128 = 0;
    for unit in units {
        // The partition a unit belongs to is where its first byte falls.
        let index = (before * target / total.max(1)).min(target - 1);
        before += unit.bytes.max(1) as u128;
        if current_index != Some(index) {
            groups.push(Vec::new());
            current_index = Some(index);
        }
        if let Some(last) = groups.last_mut() {
            last.push(unit);
        }
    }
    groups
}

impl TableSource for ParquetTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn statistics(&self) -> Statistics {
        let mut rows = 0usize;
        let mut bytes = 0usize;
        for f in &self.files {
            for rg in f.reader_meta.metadata().row_groups() {
                rows += usize::try_from(rg.num_rows()).unwrap_or(0);
                bytes += usize::try_from(rg.total_byte_size()).unwrap_or(0);
            }
        }
        Statistics {
            num_rows: Some(rows),
            total_bytes: Some(bytes),
        }
    }

    fn scan(&self, request: &ScanRequest) -> Result<Vec<Arc<dyn ScanPartition>>> {
        let output = project_schema(&self.schema, request.projection.as_deref())?;
        let read_columns = columns_to_read(&self.schema, request.projection.as_deref());
        let mut units = Vec::new();
        for (file_index, f) in self.files.iter().enumerate() {
            let metadata = f.reader_meta.metadata();
            let keep = prune_row_groups(&request.filters, f.schema(), metadata);
            for (rg_index, rg) in metadata.row_groups().iter().enumerate() {
                if keep.get(rg_index).copied().unwrap_or(true) {
                    units.push(RowGroupUnit {
                        file: file_index,
                        row_group: rg_index,
                        bytes: u64::try_from(rg.compressed_size()).unwrap_or(0),
                    });
                }
            }
        }
        let groups = balance_by_bytes(units, request.target_partitions);
        let mut partitions: Vec<Arc<dyn ScanPartition>> = Vec::with_capacity(groups.len().max(1));
        for group in groups {
            let mut chunks: Vec<(Arc<ParquetFile>, Vec<usize>)> = Vec::new();
            for unit in group {
                match chunks.last_mut() {
                    Some((file, rgs)) if Arc::ptr_eq(file, &self.files[unit.file]) => {
                        rgs.push(unit.row_group)
                    }
                    _ => chunks.push((Arc::clone(&self.files[unit.file]), vec![unit.row_group])),
                }
            }
            partitions.push(Arc::new(ParquetPartition {
                chunks,
                read_columns: read_columns.clone(),
                output: Arc::clone(&output),
            }));
        }
        if partitions.is_empty() {
            // Everything was pruned: one partition that reads nothing keeps plans uniform.
            partitions.push(Arc::new(ParquetPartition {
                chunks: vec![],
                read_columns,
                output,
            }));
        }
        Ok(partitions)
    }

    fn identity(&self) -> String {
        let listed: Vec<ListedFile> = self.files.iter().map(|f| f.listed.clone()).collect();
        files_identity("parquet", &listed)
    }

    fn kind(&self) -> &str {
        "parquet"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn descriptor(&self) -> Result<SourceDescriptor> {
        let listed: Vec<ListedFile> = self.files.iter().map(|f| f.listed.clone()).collect();
        let spec = ParquetSpec {
            location: self.location.clone(),
            files: file_specs(&listed)?,
        };
        Ok(SourceDescriptor {
            kind: self.kind().to_string(),
            identity: self.identity(),
            spec: to_spec(&spec)?,
        })
    }
}

/// Some row groups of some files, read in file order.
#[derive(Debug)]
struct ParquetPartition {
    chunks: Vec<(Arc<ParquetFile>, Vec<usize>)>,
    /// Table column indices to decode, in output order (`None` = all).
    read_columns: Option<Vec<usize>>,
    output: SchemaRef,
}

/// Decodes `columns` (table column indices, in output order, repeats allowed; `None` = all)
/// of `row_groups` of `file`, only the rows `selection` selects if there is one.
fn decode_columns(
    file: &ParquetFile,
    row_groups: &[usize],
    columns: Option<&[usize]>,
    selection: Option<RowSelection>,
) -> Result<BatchIter> {
    let path = file.listed.display();
    let handle = File::open(&file.listed.path).map_err(|e| EmberError::io(&path, e))?;
    let mut builder =
        ParquetRecordBatchReaderBuilder::new_with_metadata(handle, file.reader_meta.clone())
            .with_row_groups(row_groups.to_vec())
            .with_batch_size(BATCH_SIZE);
    if let Some(selection) = selection {
        builder = builder.with_row_selection(selection);
    }
    // The decoder returns projected columns in file order; `reorder` restores the order the
    // caller asked for.
    let mut reorder = None;
    if let Some(columns) = columns {
        let mut sorted = columns.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let positions: Vec<usize> = columns
            .iter()
            .map(|c| sorted.binary_search(c).unwrap_or(0))
            .collect();
        let mask = ProjectionMask::roots(file.reader_meta.parquet_schema(), sorted.clone());
        builder = builder.with_projection(mask);
        if positions.iter().enumerate().any(|(i, &p)| i != p) || positions.len() != sorted.len() {
            reorder = Some(positions);
        }
    }
    let reader = builder.build()?;
    Ok(Box::new(reader.map(move |batch| {
        let batch = batch?;
        Ok(match &reorder {
            Some(positions) => batch.project(positions)?,
            None => batch,
        })
    })))
}

impl ParquetPartition {
    fn read_chunk(
        file: &ParquetFile,
        row_groups: &[usize],
        read_columns: Option<&[usize]>,
        output: SchemaRef,
    ) -> Result<BatchIter> {
        let batches = decode_columns(file, row_groups, read_columns, None)?;
        Ok(Box::new(
            batches.map(move |batch| finish_batch(batch?, &output)),
        ))
    }
}

impl ScanPartition for ParquetPartition {
    fn execute(&self) -> Result<BatchIter> {
        let chunks = self.chunks.clone();
        let read_columns = self.read_columns.clone();
        let output = Arc::clone(&self.output);
        // Files are opened lazily, one at a time, as the consumer pulls batches.
        let iter = chunks.into_iter().flat_map(move |(file, rgs)| {
            let path = file.listed.display();
            let inner: BatchIter =
                match Self::read_chunk(&file, &rgs, read_columns.as_deref(), Arc::clone(&output)) {
                    Ok(it) => it,
                    Err(e) => Box::new(std::iter::once(Err(e))),
                };
            inner.map(move |r| r.map_err(|e| read_error(&path, e)))
        });
        Ok(Box::new(iter))
    }

    fn execute_filtered(&self, filter: Box<dyn RowFilter>) -> Result<BatchIter> {
        if filter.columns().is_empty() {
            // Nothing to decode first: a filter of constants sees whole batches.
            return Ok(filter_decoded(self.execute()?, filter));
        }
        late::read_filtered(
            &self.chunks,
            self.read_columns.as_deref(),
            &self.output,
            filter,
        )
    }

    fn describe(&self) -> String {
        if self.chunks.is_empty() {
            return "parquet: no row groups (all pruned)".to_string();
        }
        let parts: Vec<String> = self
            .chunks
            .iter()
            .map(|(f, rgs)| format!("{} row groups {:?}", f.listed.display(), rgs))
            .collect();
        format!("parquet: {}", parts.join(", "))
    }

    fn descriptor(&self) -> Result<PartitionDescriptor> {
        let chunks = self
            .chunks
            .iter()
            .map(|(file, row_groups)| {
                Ok(ParquetChunkSpec {
                    path: path_text(&file.listed.path)?,
                    row_groups: row_groups.clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let spec = ParquetPartitionSpec {
            chunks,
            read_columns: self.read_columns.clone(),
            output: self.output.as_ref().clone(),
        };
        Ok(PartitionDescriptor(to_spec(&spec)?))
    }
}

#[cfg(test)]
mod tests;
