//! Late materialisation: a Parquet scan partition read with a row filter decodes the filter's
//! columns first, one row group at a time, and the other columns only for the rows the filter
//! keeps. The reader's row selection skips the other rows without decoding their values, and
//! pages holding none of them without decompressing them.
//!
//! This is what makes a selective predicate or join-key filter cheap on a wide scan: TPC-H
//! Q17 keeps 6,088 of 6 M `lineitem` rows by `l_partkey`, and without it decodes
//! `l_quantity` and `l_extendedprice` for all of them.
//!
//! The parquet crate's own `RowFilter` does the same, but its synchronous reader evaluates the
//! predicate over every row group before returning the first batch, and decodes the filter's
//! columns a second time when the output needs them (as a `Filter` above a scan always does).
//! Here the filter columns are decoded once and their kept rows reused for the output.
//!
//! Skipping pays only when kept rows come in runs: when they are scattered (a date range over
//! unsorted dates), every page is decoded anyway, so the other columns are decoded in full
//! and rows dropped batch by batch, as a filter above a plain scan would — and the next row
//! group is read in lockstep, both decoders advancing together, because neighbouring row
//! groups select alike ([`MIN_SKIP_RUN`]). Which way a row group is read never changes which
//! rows come out, or their order.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, RecordBatchOptions};
use arrow::buffer::BooleanBuffer;
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::SchemaRef;
use ember_planner::error::{EmberError, Result};
use ember_planner::table::{BatchIter, RowFilter};
use parquet::arrow::arrow_reader::RowSelection;

use super::{decode_columns, ParquetFile};
use crate::file_scan::read_error;

/// Reads `chunks` keeping the rows `filter` keeps; `read_columns` maps output positions to
/// table columns (`None` = all, in table order). The filter reads at least one column.
pub(super) fn read_filtered(
    chunks: &[(Arc<ParquetFile>, Vec<usize>)],
    read_columns: Option<&[usize]>,
    output: &SchemaRef,
    filter: Box<dyn RowFilter>,
) -> Result<BatchIter> {
    Ok(Box::new(FilteredScan::new(
        chunks,
        read_columns,
        output,
        filter,
    )?))
}

struct FilteredScan {
    row_groups: VecDeque<(Arc<ParquetFile>, usize)>,
    filter: Box<dyn RowFilter>,
    /// Table columns decoded first (the filter's), and their positions in the output.
    filter_columns: Vec<usize>,
    filter_positions: Vec<usize>,
    /// Table columns decoded for kept rows only, and their positions in the output.
    rest_columns: Vec<usize>,
    rest_positions: Vec<usize>,
    output: SchemaRef,
    current: Option<RowGroupRead>,
    /// Whether the last row group's kept rows came in runs long enough for skipping to pay;
    /// decides how the next one is read (neighbouring row groups select alike).
    skipping_pays: bool,
    /// Rows of the other columns decoded so far (all rows, or only kept ones when skipping).
    rest_rows_decoded: usize,
}

/// Below this many rows per run of kept or dropped rows (on average), skipping costs more
/// than it saves (the parquet crate makes the same call at the same length), and the other
/// columns are decoded in full, in step with the filter's, and rows dropped batch by batch —
/// what a filter above a plain scan does. Decoding a whole row group's filter columns before
/// the others leaves megabytes of batches waiting in memory: TPC-H Q6 (2 % kept, scattered)
/// took 13 % more CPU that way.
const MIN_SKIP_RUN: usize = 32;

/// Counts rows and runs of kept and dropped rows, to tell whether skipping pays.
#[derive(Default)]
struct RunCount {
    rows: usize,
    runs: usize,
}

impl RunCount {
    fn add(&mut self, mask: &BooleanArray) {
        self.rows += mask.len();
        // Each run of kept rows, and the dropped run after it.
        self.runs += 2 * mask.values().set_slices().count();
    }

    fn skipping_pays(&self) -> bool {
        self.rows >= MIN_SKIP_RUN * self.runs.max(1)
    }
}

/// The reading of one row group, after its filter columns were decoded (two-phase) or while
/// they are (lockstep).
struct RowGroupRead {
    phase: Phase,
    /// The file, for errors.
    path: String,
}

enum Phase {
    /// The filter's columns were decoded and filtered; the other columns are decoded only
    /// for kept rows, and handed out in step with the kept rows of the filter's.
    Selective {
        kept: Vec<ArrayRef>,
        kept_rows: usize,
        /// Kept rows already handed out.
        offset: usize,
        rest: BatchIter,
    },
    /// The filter's columns were decoded and filtered; the other columns (if the output
    /// needs any) are decoded in full, batch for batch with them, and rows dropped.
    Decoded {
        decoded: VecDeque<(RecordBatch, BooleanArray)>,
        rest: Option<BatchIter>,
    },
    /// Both decoders advance together, batch by batch; the filter runs as they go.
    Lockstep {
        filter_columns: BatchIter,
        rest: BatchIter,
        runs: RunCount,
    },
}

impl FilteredScan {
    /// A read of `chunks` with `filter`, which reads at least one column.
    fn new(
        chunks: &[(Arc<ParquetFile>, Vec<usize>)],
        read_columns: Option<&[usize]>,
        output: &SchemaRef,
        filter: Box<dyn RowFilter>,
    ) -> Result<Self> {
        let width = output.fields().len();
        let filter_positions = filter.columns().to_vec();
        if let Some(bad) = filter_positions.iter().find(|&&p| p >= width) {
            return Err(EmberError::Internal(format!(
                "a row filter reads column #{bad} of a scan with {width} columns"
            )));
        }
        let table_column = |position: usize| read_columns.map_or(position, |c| c[position]);
        let rest_positions: Vec<usize> = (0..width)
            .filter(|p| !filter_positions.contains(p))
            .collect();
        let row_groups = chunks
            .iter()
            .flat_map(|(file, groups)| groups.iter().map(move |&g| (Arc::clone(file), g)))
            .collect();
        Ok(FilteredScan {
            row_groups,
            filter,
            filter_columns: filter_positions.iter().map(|&p| table_column(p)).collect(),
            rest_columns: rest_positions.iter().map(|&p| table_column(p)).collect(),
            filter_positions,
            rest_positions,
            output: Arc::clone(output),
            current: None,
            skipping_pays: true,
            rest_rows_decoded: 0,
        })
    }

    /// Starts reading a row group: in lockstep when skipping did not pay in the last row
    /// group; otherwise decodes its filter columns and evaluates the filter (`None` when it
    /// keeps no row).
    fn start(&mut self, file: &ParquetFile, row_group: usize) -> Result<Option<RowGroupRead>> {
        let path = file.listed.display();
        let decode = |columns: &[usize], selection| {
            decode_columns(file, &[row_group], Some(columns), selection)
        };
        if !self.skipping_pays && !self.rest_columns.is_empty() {
            return Ok(Some(RowGroupRead {
                phase: Phase::Lockstep {
                    filter_columns: decode(&self.filter_columns, None)?,
                    rest: decode(&self.rest_columns, None)?,
                    runs: RunCount::default(),
                },
                path,
            }));
        }
        let mut decoded = VecDeque::new();
        let mut kept_rows = 0;
        let mut runs = RunCount::default();
        for batch in decode(&self.filter_columns, None)? {
            let batch = batch?;
            let mask = keep(self.filter.as_mut(), &batch)?;
            kept_rows += mask.true_count();
            runs.add(&mask);
            decoded.push_back((batch, mask));
        }
        self.skipping_pays = runs.skipping_pays();
        if kept_rows == 0 {
            return Ok(None);
        }
        if self.rest_columns.is_empty() || !self.skipping_pays {
            let rest = if self.rest_columns.is_empty() {
                None
            } else {
                Some(decode(&self.rest_columns, None)?)
            };
            return Ok(Some(RowGroupRead {
                phase: Phase::Decoded { decoded, rest },
                path,
            }));
        }
        let masks: Vec<BooleanArray> = decoded.iter().map(|(_, m)| m.clone()).collect();
        let kept_batches = decoded
            .iter()
            .filter(|(_, mask)| mask.true_count() > 0)
            .map(|(batch, mask)| filter_record_batch(batch, mask))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let kept = concat_batches(&decoded[0].0.schema(), &kept_batches)?
            .columns()
            .to_vec();
        let rest = decode(&self.rest_columns, Some(RowSelection::from_filters(&masks)))?;
        Ok(Some(RowGroupRead {
            phase: Phase::Selective {
                kept,
                kept_rows,
                offset: 0,
                rest,
            },
            path,
        }))
    }

    /// The next output batch of the row group being read, `None` when it is done.
    fn next_of(&mut self, read: &mut RowGroupRead) -> Option<Result<RecordBatch>> {
        match &mut read.phase {
            Phase::Selective {
                kept,
                kept_rows,
                offset,
                rest,
            } => {
                let batch = match rest.next() {
                    Some(Ok(batch)) => batch,
                    Some(Err(e)) => return Some(Err(e)),
                    None if offset == kept_rows => return None,
                    None => {
                        return Some(Err(EmberError::Internal(format!(
                            "the selective Parquet read returned {offset} of the {kept_rows} \
                             rows the filter kept"
                        ))))
                    }
                };
                let rows = batch.num_rows();
                self.rest_rows_decoded += rows;
                if *offset + rows > *kept_rows {
                    return Some(Err(EmberError::Internal(format!(
                        "the selective Parquet read returned more rows than the {kept_rows} \
                         the filter kept"
                    ))));
                }
                let filter_part: Vec<ArrayRef> =
                    kept.iter().map(|k| k.slice(*offset, rows)).collect();
                *offset += rows;
                Some(self.join(&filter_part, batch.columns(), rows))
            }
            Phase::Decoded { decoded, rest } => loop {
                let (batch, mask) = decoded.pop_front()?;
                match self.decoded_step(&batch, &mask, rest.as_mut()) {
                    Ok(None) => continue,
                    done => return done.transpose(),
                }
            },
            Phase::Lockstep {
                filter_columns,
                rest,
                runs,
            } => loop {
                let Some(batch) = filter_columns.next() else {
                    self.skipping_pays = runs.skipping_pays();
                    return match rest.next() {
                        None => None,
                        Some(Err(e)) => Some(Err(e)),
                        Some(Ok(_)) => Some(Err(EmberError::Internal(
                            "a Parquet read ended the filter's columns before the others"
                                .to_string(),
                        ))),
                    };
                };
                let step = batch.and_then(|batch| {
                    let mask = keep(self.filter.as_mut(), &batch)?;
                    runs.add(&mask);
                    self.decoded_step(&batch, &mask, Some(rest))
                });
                match step {
                    Ok(None) => continue,
                    done => return done.transpose(),
                }
            },
        }
    }

    /// One batch of the filter's columns with its mask: decodes the other columns' batch
    /// beside it (when the output has other columns) and returns the kept rows of both,
    /// `None` when the mask keeps none.
    fn decoded_step(
        &mut self,
        batch: &RecordBatch,
        mask: &BooleanArray,
        rest: Option<&mut BatchIter>,
    ) -> Result<Option<RecordBatch>> {
        let other = rest.map(|rest| next_beside(rest, batch)).transpose()?;
        self.rest_rows_decoded += other.as_ref().map_or(0, RecordBatch::num_rows);
        let kept = mask.true_count();
        if kept == 0 {
            return Ok(None);
        }
        let other_columns = other.as_ref().map_or(&[][..], |b| b.columns());
        let joined = self.join(batch.columns(), other_columns, mask.len())?;
        if kept == mask.len() {
            Ok(Some(joined))
        } else {
            Ok(Some(filter_record_batch(&joined, mask)?))
        }
    }

    /// An output batch from the filter's columns and the other columns, `rows` rows each.
    fn join(
        &self,
        filter_columns: &[ArrayRef],
        rest_columns: &[ArrayRef],
        rows: usize,
    ) -> Result<RecordBatch> {
        let mut columns: Vec<Option<ArrayRef>> = vec![None; self.output.fields().len()];
        for (&position, column) in self.filter_positions.iter().zip(filter_columns) {
            columns[position] = Some(Arc::clone(column));
        }
        for (&position, column) in self.rest_positions.iter().zip(rest_columns) {
            columns[position] = Some(Arc::clone(column));
        }
        let columns: Option<Vec<ArrayRef>> = columns.into_iter().collect();
        let columns = columns.ok_or_else(|| {
            EmberError::Internal("a filtered Parquet read left an output column unfilled".into())
        })?;
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(RecordBatch::try_new_with_options(
            Arc::clone(&self.output),
            columns,
            &options,
        )?)
    }
}

/// The other columns' batch decoded beside the filter columns' `batch` (same rows).
fn next_beside(rest: &mut BatchIter, batch: &RecordBatch) -> Result<RecordBatch> {
    match rest.next() {
        Some(Ok(other)) if other.num_rows() == batch.num_rows() => Ok(other),
        Some(Ok(other)) => Err(EmberError::Internal(format!(
            "a Parquet read returned {} rows of the other columns beside {} of the filter's",
            other.num_rows(),
            batch.num_rows()
        ))),
        Some(Err(e)) => Err(e),
        None => Err(EmberError::Internal(
            "a Parquet read ended the other columns before the filter's".to_string(),
        )),
    }
}

/// The filter's verdict on `batch` as a mask without NULLs, checked.
fn keep(filter: &mut dyn RowFilter, batch: &RecordBatch) -> Result<BooleanArray> {
    let mask = match filter.keep(batch)? {
        Some(mask) => mask,
        None => BooleanArray::new(BooleanBuffer::new_set(batch.num_rows()), None),
    };
    if mask.len() != batch.num_rows() || mask.null_count() > 0 {
        return Err(EmberError::Internal(format!(
            "a row filter returned {} flags ({} NULL) for {} rows",
            mask.len(),
            mask.null_count(),
            batch.num_rows()
        )));
    }
    Ok(mask)
}

impl Iterator for FilteredScan {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(mut read) = self.current.take() {
                match self.next_of(&mut read) {
                    Some(Ok(batch)) => {
                        self.current = Some(read);
                        return Some(Ok(batch));
                    }
                    Some(Err(e)) => {
                        self.row_groups.clear();
                        return Some(Err(read_error(&read.path, e)));
                    }
                    None => {}
                }
            }
            let (file, row_group) = self.row_groups.pop_front()?;
            match self.start(&file, row_group) {
                Ok(read) => self.current = read,
                Err(e) => {
                    self.row_groups.clear();
                    return Some(Err(read_error(&file.listed.display(), e)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
