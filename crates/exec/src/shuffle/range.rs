//! Range exchange: a global ORDER BY in N parallel partitions whose concatenation, in
//! partition order, is the sorted input.
//!
//! Spark samples the input in a separate job to pick split points, computing the input
//! twice. Ember picks them after the map side instead, so the input is computed once:
//!
//! ```text
//! map task m (its partition already sorted by the Sort below the Exchange)
//!   block 0      sample: every (rows / S)-th key as arrow-row bytes, the rows it stands
//!                for, and the chunk it falls in; plus the run's last key (weight 0)
//!   block 1..=C  the sorted run cut into C chunks, each row carrying its key bytes
//!
//! reduce task r
//!   1. read block 0 of every map output, compute the N - 1 split points from all samples
//!      (the same samples give the same split points in every reader)
//!   2. from each map output read only the chunks overlapping [split(r-1), split(r)), and
//!      binary-search each for exactly the rows in that range
//!   3. k-way merge the per-map runs by key bytes, ties in map-partition order
//! ```
//!
//! Keys are encoded with `arrow-row`, whose byte order is the sort order, so neither the
//! split points nor the merge need the sort expressions on the reduce side: a reader only
//! compares bytes. Every step is a pure function of the map outputs, and a map output is a
//! pure function of its (sorted) input, so a recomputed map output yields the same samples,
//! the same split points and the same rows per reducer — the determinism lineage recovery
//! relies on. Rows with equal keys always land in one partition (never split across a
//! bound), which keeps this true even if a recomputed run orders ties differently.
//!
//! A block that cannot be read raises `FetchFailed` for its map partition, exactly like the
//! hash shuffle, so the scheduler recomputes just that map output.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, LargeBinaryArray, RecordBatch, RecordBatchOptions, UInt32Array,
    UInt64Array,
};
use arrow::compute::{concat_batches, interleave_record_batch, take_record_batch, SortOptions};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::row::{RowConverter, Rows, SortField};

use ember_planner::expr::SortExpr;
use ember_planner::schema::PlanSchema;
use ember_planner::table::BatchIter;
use ember_planner::{EmberError, Result};
use ember_storage::shuffle::{map_file_path, read_block, BlockMeta, MapFileWriter};

use super::tracker::{MapOutputTracker, MapStatus};
use super::writer::{compact_views, MapOutput};
use crate::context::TaskContext;
use crate::expr::{create_physical_expr, PhysicalExprRef};
use crate::udf::FunctionRegistry;

/// Name of the key-bytes column appended to every chunk block (dropped by the reader).
const KEY_COLUMN: &str = "__ember_range_key";

/// Samples each map task writes per output partition. The split point of a reducer can be
/// off by at most one sample's rows per map task, so 32 keeps every reducer within about
/// 1/32 of its fair share per map task, while the samples every reducer reads stay small.
const SAMPLES_PER_PARTITION: usize = 32;

/// Chunks a map task cuts its run into per output partition, so a reducer reads little
/// more than its own key range (at most two partly used chunks per map task) instead of
/// every map task's whole run.
const CHUNKS_PER_PARTITION: usize = 4;

/// No chunk smaller than this (unless the run is): small runs should not become many files.
const MIN_CHUNK_ROWS: usize = 4096;

/// Rows per batch the reader's merge produces.
const OUTPUT_BATCH_ROWS: usize = 8192;

/// The map side of a range exchange: how to compute a row's sort key.
#[derive(Debug)]
pub struct RangePartitioner {
    keys: Vec<PhysicalExprRef>,
    options: Vec<SortOptions>,
    partitions: usize,
}

impl RangePartitioner {
    /// A partitioner for rows of `schema` (the Exchange's input) sorted by `sort`, into
    /// `partitions` ranges.
    pub fn try_new(
        sort: &[SortExpr],
        partitions: usize,
        schema: &PlanSchema,
        functions: &FunctionRegistry,
    ) -> Result<Self> {
        if partitions == 0 {
            return Err(EmberError::Internal(
                "range exchange has zero output partitions".to_string(),
            ));
        }
        if sort.is_empty() {
            return Err(EmberError::Internal(
                "range exchange has no sort keys".to_string(),
            ));
        }
        let keys = sort
            .iter()
            .map(|s| create_physical_expr(&s.expr, schema, functions))
            .collect::<Result<Vec<_>>>()?;
        let options = sort
            .iter()
            .map(|s| SortOptions {
                descending: !s.asc,
                nulls_first: s.nulls_first,
            })
            .collect();
        Ok(RangePartitioner {
            keys,
            options,
            partitions,
        })
    }

    pub fn partitions(&self) -> usize {
        self.partitions
    }

    /// The arrow-row encoding of every row's sort key: comparing the bytes of two rows
    /// compares them in the sort's order.
    fn key_rows(&self, batch: &RecordBatch) -> Result<Rows> {
        let columns = self
            .keys
            .iter()
            .map(|k| k.evaluate(batch))
            .collect::<Result<Vec<ArrayRef>>>()?;
        let fields = columns
            .iter()
            .zip(&self.options)
            .map(|(c, o)| SortField::new_with_options(c.data_type().clone(), *o))
            .collect();
        Ok(RowConverter::new(fields)?.convert_columns(&columns)?)
    }
}

/// Where the samples and chunks of one map task's run start: sample `s` is row
/// `positions[s]`, chunk `c` covers samples `c * per_chunk ..` (a chunk starts at a sample).
#[derive(Debug, PartialEq)]
struct RunLayout {
    /// Row positions of the samples, ascending, starting at 0; `rows` is appended as an end.
    positions: Vec<usize>,
    per_chunk: usize,
    chunks: usize,
}

impl RunLayout {
    fn new(rows: usize, partitions: usize) -> Self {
        let samples = rows
            .min(SAMPLES_PER_PARTITION.saturating_mul(partitions))
            .max(1);
        let positions: Vec<usize> = (0..=samples)
            .map(|s| ((s as u128 * rows as u128) / samples as u128) as usize)
            .collect();
        let wanted = rows
            .div_ceil(MIN_CHUNK_ROWS)
            .clamp(1, CHUNKS_PER_PARTITION.saturating_mul(partitions).max(1))
            .min(samples);
        let per_chunk = samples.div_ceil(wanted);
        RunLayout {
            positions,
            per_chunk,
            chunks: samples.div_ceil(per_chunk),
        }
    }

    fn samples(&self) -> usize {
        self.positions.len() - 1
    }

    /// Row range `[start, end)` of chunk `c`.
    fn chunk_rows(&self, c: usize) -> (usize, usize) {
        let first = c * self.per_chunk;
        let end = ((c + 1) * self.per_chunk).min(self.samples());
        (self.positions[first], self.positions[end])
    }
}

/// Drains `input` (the sorted partition `ctx.partition`) and writes it as a range
/// exchange's map output: block 0 holds the sample, blocks 1.. the chunks of the run. An
/// empty partition writes nothing (`blocks == [None]`).
pub fn write_range_map_output(
    input: BatchIter,
    partitioner: &RangePartitioner,
    dir: &Path,
    ctx: &TaskContext,
) -> Result<MapOutput> {
    let mut batches = Vec::new();
    let mut schema = None;
    for batch in input {
        if ctx.is_cancelled() {
            return Err(EmberError::Execution(format!(
                "task {}.{} (attempt {}) was cancelled",
                ctx.stage, ctx.partition, ctx.attempt
            )));
        }
        let batch = batch?;
        schema.get_or_insert_with(|| batch.schema());
        if batch.num_rows() > 0 {
            batches.push(batch);
        }
    }
    let (Some(schema), false) = (schema, batches.is_empty()) else {
        return Ok(MapOutput {
            blocks: vec![None],
            rows: 0,
            bytes: 0,
        });
    };
    let mut run = concat_batches(&schema, &batches)?;
    drop(batches);
    let mut keys = partitioner.key_rows(&run)?;
    if !is_sorted(&keys) {
        // The Sort below the Exchange orders rows as arrow's sort kernels do; should that
        // ever disagree with the row format for some type, reorder here rather than let a
        // reader's binary search silently drop rows. A stable sort keeps ties in input order.
        let mut order: Vec<usize> = (0..keys.num_rows()).collect();
        order.sort_by(|a, b| keys.row(*a).cmp(&keys.row(*b)));
        let indices = order
            .into_iter()
            .map(|i| u32::try_from(i).map_err(|_| too_large(run.num_rows())))
            .collect::<Result<UInt32Array>>()?;
        run = take_record_batch(&run, &indices)?;
        keys = partitioner.key_rows(&run)?;
    }

    let rows = run.num_rows();
    let layout = RunLayout::new(rows, partitioner.partitions);
    let mut output = MapOutput {
        blocks: Vec::with_capacity(1 + layout.chunks),
        rows,
        bytes: 0,
    };
    let mut file = MapFileWriter::new(map_file_path(dir, ctx.stage, ctx.partition, ctx.attempt));
    let mut write = |schema: &SchemaRef, batches: &[RecordBatch]| -> Result<()> {
        let meta = file.write_block(schema, batches)?;
        output.bytes += meta.bytes;
        output.blocks.push(Some(meta));
        Ok(())
    };

    let sample = sample_batch(&keys, &layout)?;
    write(&sample.schema(), std::slice::from_ref(&sample))?;

    let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(
        KEY_COLUMN,
        DataType::LargeBinary,
        false,
    )));
    let chunk_schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    let batch_size = ctx.batch_size.max(1);
    for c in 0..layout.chunks {
        let (start, end) = layout.chunk_rows(c);
        let mut pieces = Vec::new();
        let mut at = start;
        while at < end {
            let len = batch_size.min(end - at);
            let key_bytes = LargeBinaryArray::from_iter_values((at..at + len).map(|i| keys.row(i)));
            let mut columns = run.slice(at, len).columns().to_vec();
            columns.push(Arc::new(key_bytes));
            pieces.push(compact_views(RecordBatch::try_new(
                Arc::clone(&chunk_schema),
                columns,
            )?)?);
            at += len;
        }
        write(&chunk_schema, &pieces)?;
    }
    file.finish()?;
    Ok(output)
}

fn is_sorted(keys: &Rows) -> bool {
    (1..keys.num_rows()).all(|i| keys.row(i - 1) <= keys.row(i))
}

fn too_large(rows: usize) -> EmberError {
    EmberError::Internal(format!(
        "a sorted run of {rows} rows is too large to shuffle"
    ))
}

/// Columns of the sample block.
fn sample_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("key", DataType::LargeBinary, false),
        Field::new("rows", DataType::UInt64, false),
        Field::new("chunk", DataType::UInt32, false),
    ]))
}

/// One row per sample (its key, the rows from it to the next sample, its chunk), then the
/// run's last key with weight 0 and chunk `chunks`, which closes the last chunk's key span.
fn sample_batch(keys: &Rows, layout: &RunLayout) -> Result<RecordBatch> {
    let samples = layout.samples();
    let last = keys.num_rows() - 1;
    let key = LargeBinaryArray::from_iter_values(
        layout.positions[..samples]
            .iter()
            .chain(std::iter::once(&last))
            .map(|&p| keys.row(p)),
    );
    let weights = UInt64Array::from_iter_values(
        layout
            .positions
            .windows(2)
            .map(|w| (w[1] - w[0]) as u64)
            .chain(std::iter::once(0)),
    );
    let chunk = (0..=samples)
        .map(|s| {
            u32::try_from(if s < samples {
                s / layout.per_chunk
            } else {
                layout.chunks
            })
        })
        .collect::<std::result::Result<UInt32Array, _>>()
        .map_err(|_| too_large(keys.num_rows()))?;
    Ok(RecordBatch::try_new(
        sample_schema(),
        vec![Arc::new(key), Arc::new(weights), Arc::new(chunk)],
    )?)
}

/// The sample of one map output, as read back.
struct MapSample {
    keys: LargeBinaryArray,
    weights: UInt64Array,
    chunks: UInt32Array,
}

impl MapSample {
    fn from_batches(batches: &[RecordBatch]) -> Result<Self> {
        let batch = concat_batches(&sample_schema(), batches)?;
        let keys = batch.column(0).as_binary_opt::<i64>().cloned();
        let weights = batch
            .column(1)
            .as_primitive_opt::<arrow::datatypes::UInt64Type>()
            .cloned();
        let chunks = batch
            .column(2)
            .as_primitive_opt::<arrow::datatypes::UInt32Type>()
            .cloned();
        match (keys, weights, chunks) {
            (Some(keys), Some(weights), Some(chunks)) if !keys.is_empty() => Ok(MapSample {
                keys,
                weights,
                chunks,
            }),
            _ => Err(EmberError::Internal(format!(
                "range exchange sample block has schema {:?} and {} rows",
                batch.schema(),
                batch.num_rows()
            ))),
        }
    }

    /// Chunks (0-based) whose key span can overlap `range`. A chunk's keys lie between its
    /// first sample's key and the next chunk's first key (or the run's last key).
    fn chunks_overlapping(&self, range: &KeyRange) -> Vec<usize> {
        let mut firsts: Vec<(usize, &[u8])> = Vec::new();
        for i in 0..self.keys.len() {
            let chunk = self.chunks.value(i) as usize;
            if firsts.last().is_none_or(|(c, _)| *c != chunk) {
                firsts.push((chunk, self.keys.value(i)));
            }
        }
        firsts
            .windows(2)
            .filter(|w| range.overlaps(w[0].1, w[1].1))
            .map(|w| w[0].0)
            .collect()
    }
}

/// The keys of one output partition: `lower <= key < upper`, `None` meaning unbounded.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KeyRange {
    lower: Option<Vec<u8>>,
    upper: Option<Vec<u8>>,
}

impl KeyRange {
    /// Whether some key in `[first, last]` falls in this range.
    fn overlaps(&self, first: &[u8], last: &[u8]) -> bool {
        self.lower.as_deref().is_none_or(|l| last >= l)
            && self.upper.as_deref().is_none_or(|u| first < u)
    }

    /// Row range `[start, end)` of the sorted `keys` that falls in this range.
    fn rows_in(&self, keys: &LargeBinaryArray) -> (usize, usize) {
        let start = self
            .lower
            .as_deref()
            .map_or(0, |l| first_not_below(keys, l));
        let end = self
            .upper
            .as_deref()
            .map_or(keys.len(), |u| first_not_below(keys, u));
        (start, end.max(start))
    }
}

/// The first row of the sorted `keys` whose key is `>= bound` (binary search).
fn first_not_below(keys: &LargeBinaryArray, bound: &[u8]) -> usize {
    let (mut lo, mut hi) = (0, keys.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if keys.value(mid) < bound {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Where a split point falls: at a key, or past every key (the partitions after it are
/// empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Split<'a> {
    Key(&'a [u8]),
    End,
}

/// The `partitions - 1` split points of weighted samples `(key, rows)`. A sample stands for
/// the rows from its key up to the next sample of its map task, so the rows "before" a
/// distinct key are estimated as the weight of all samples with smaller keys. Split `r - 1`
/// (the lower bound of partition `r`) is the distinct key — or `End`, past every key — whose
/// rows-before is nearest to `r / partitions` of all rows (ties go to the later candidate).
/// The splits never decrease, and they depend only on the multiset of samples, so every
/// reader, given the same map outputs, computes the same splits.
fn split_points<'a>(mut samples: Vec<(&'a [u8], u64)>, partitions: usize) -> Vec<Split<'a>> {
    samples.sort_unstable();
    // (split candidate, weight of the samples before it), ascending.
    let mut candidates: Vec<(Split<'a>, u128)> = Vec::with_capacity(samples.len() + 1);
    let mut before: u128 = 0;
    for (key, weight) in &samples {
        if candidates
            .last()
            .is_none_or(|(last, _)| *last != Split::Key(key))
        {
            candidates.push((Split::Key(key), before));
        }
        before += *weight as u128;
    }
    let total = before;
    candidates.push((Split::End, total));

    let n = partitions as u128;
    let mut splits = Vec::with_capacity(partitions.saturating_sub(1));
    let mut at = 0;
    for r in 1..n {
        // Compare scaled by n: candidate i is `candidates[i].1 * n` away from 0, the target
        // is `r * total`. `End` (before = total >= every target) bounds the search.
        let target = r * total;
        while at + 1 < candidates.len() && candidates[at].1 * n < target {
            at += 1;
        }
        let mut pick = at;
        if at > 0 && candidates[at].1 * n > target {
            let over = candidates[at].1 * n - target;
            let under = target.saturating_sub(candidates[at - 1].1 * n);
            if under < over {
                pick = at - 1;
            }
        }
        splits.push(candidates[pick].0);
    }
    splits
}

/// The key range of partition `reduce` given the split points, or `None` when it is empty.
fn key_range(splits: &[Split], reduce: usize) -> Option<KeyRange> {
    let lower = match reduce.checked_sub(1).map(|i| splits.get(i).copied()) {
        None => None,
        Some(Some(Split::Key(k))) => Some(k.to_vec()),
        Some(Some(Split::End)) | Some(None) => return None,
    };
    let upper = match splits.get(reduce) {
        Some(Split::Key(k)) => Some(k.to_vec()),
        Some(Split::End) | None => None,
    };
    if let (Some(l), Some(u)) = (&lower, &upper) {
        if l >= u {
            return None;
        }
    }
    Some(KeyRange { lower, upper })
}

/// Reads reduce partition `reduce` of the range exchange written by `stage`: its key range
/// of every map output, merged into one sorted stream.
pub fn read_range(
    tracker: &MapOutputTracker,
    stage: usize,
    partitions: usize,
    map_partitions: usize,
    reduce: usize,
) -> Result<BatchIter> {
    let fetch_failed = |map_partition: usize, message: String| EmberError::FetchFailed {
        stage,
        map_partition,
        reduce_partition: reduce,
        message,
    };
    // Look every map output up before reading anything, so a missing one fails at once.
    let statuses = (0..map_partitions)
        .map(|m| {
            tracker.get(stage, m).ok_or_else(|| {
                fetch_failed(m, "no output registered for this map partition".to_string())
            })
        })
        .collect::<Result<Vec<MapStatus>>>()?;
    let read =
        |m: usize, meta: &BlockMeta| read_block(meta).map_err(|e| fetch_failed(m, e.to_string()));
    let block = |m: usize, status: &MapStatus, b: usize| -> Result<Option<BlockMeta>> {
        match status.blocks.get(b) {
            Some(meta) => Ok(meta.clone()),
            None => Err(EmberError::Internal(format!(
                "range map output of stage {stage} partition {m} has {} blocks, reduce \
                 partition {reduce} reads block {b}",
                status.blocks.len()
            ))),
        }
    };

    let mut samples: Vec<(usize, MapSample)> = Vec::new();
    for (m, status) in statuses.iter().enumerate() {
        if let Some(meta) = block(m, status, 0)? {
            samples.push((m, MapSample::from_batches(&read(m, &meta)?)?));
        }
    }
    let weighted = samples
        .iter()
        .flat_map(|(_, s)| (0..s.keys.len()).map(|i| (s.keys.value(i), s.weights.value(i))))
        .collect();
    let splits = split_points(weighted, partitions);
    let Some(range) = key_range(&splits, reduce) else {
        return Ok(Box::new(std::iter::empty()));
    };

    let mut runs: Vec<Vec<RecordBatch>> = Vec::new();
    for (m, sample) in &samples {
        let mut run = Vec::new();
        for chunk in sample.chunks_overlapping(&range) {
            let Some(meta) = block(*m, &statuses[*m], 1 + chunk)? else {
                return Err(EmberError::Internal(format!(
                    "range map output of stage {stage} partition {m} has no block for \
                     chunk {chunk}"
                )));
            };
            for batch in read(*m, &meta)? {
                let keys = key_column(&batch)?;
                let (start, end) = range.rows_in(keys);
                if end > start {
                    run.push(batch.slice(start, end - start));
                }
            }
        }
        if !run.is_empty() {
            runs.push(run);
        }
    }
    merge_runs(runs)
}

fn key_column(batch: &RecordBatch) -> Result<&LargeBinaryArray> {
    batch
        .columns()
        .last()
        .and_then(|c| c.as_binary_opt::<i64>())
        .ok_or_else(|| {
            EmberError::Internal(format!(
                "range exchange chunk block has no key column: {:?}",
                batch.schema()
            ))
        })
}

/// The batch without its trailing key column.
fn without_key(batch: &RecordBatch) -> Result<RecordBatch> {
    let keep: Vec<usize> = (0..batch.num_columns().saturating_sub(1)).collect();
    Ok(batch.project(&keep)?)
}

/// Merges sorted runs (each a list of batches with a trailing key column) into one sorted
/// stream without the key column. Equal keys come out in run order, then row order, so the
/// output is a pure function of the runs.
fn merge_runs(runs: Vec<Vec<RecordBatch>>) -> Result<BatchIter> {
    if runs.len() <= 1 {
        let batches = runs
            .into_iter()
            .flatten()
            .map(|b| without_key(&b))
            .collect::<Result<Vec<_>>>()?;
        return Ok(Box::new(batches.into_iter().map(Ok)));
    }
    let mut batches: Vec<RecordBatch> = Vec::new();
    let mut keys: Vec<LargeBinaryArray> = Vec::new();
    // For each run, the indices (into `batches`) of its batches, in order.
    let mut run_batches: Vec<Vec<usize>> = Vec::new();
    for run in runs {
        let mut ids = Vec::with_capacity(run.len());
        for batch in run {
            keys.push(key_column(&batch)?.clone());
            ids.push(batches.len());
            batches.push(without_key(&batch)?);
        }
        run_batches.push(ids);
    }
    let total: usize = batches.iter().map(|b| b.num_rows()).sum();
    let mut order: Vec<(usize, usize)> = Vec::with_capacity(total);
    {
        // Heap entries: (key, run, position of the batch within the run, row).
        let mut heap = BinaryHeap::with_capacity(run_batches.len());
        for (run, ids) in run_batches.iter().enumerate() {
            if let Some(&b) = ids.first() {
                heap.push(Reverse((keys[b].value(0), run, 0usize, 0usize)));
            }
        }
        while let Some(Reverse((_, run, at, row))) = heap.pop() {
            let b = run_batches[run][at];
            order.push((b, row));
            let next = if row + 1 < keys[b].len() {
                Some((at, row + 1))
            } else if at + 1 < run_batches[run].len() {
                Some((at + 1, 0))
            } else {
                None
            };
            if let Some((at, row)) = next {
                let b = run_batches[run][at];
                heap.push(Reverse((keys[b].value(row), run, at, row)));
            }
        }
    }
    Ok(Box::new(Interleaved {
        batches,
        order,
        at: 0,
    }))
}

/// Gathers `order` (batch, row) from `batches`, `OUTPUT_BATCH_ROWS` rows per output batch.
struct Interleaved {
    batches: Vec<RecordBatch>,
    order: Vec<(usize, usize)>,
    at: usize,
}

impl Iterator for Interleaved {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.order.len() {
            return None;
        }
        let end = (self.at + OUTPUT_BATCH_ROWS).min(self.order.len());
        let indices = &self.order[self.at..end];
        self.at = end;
        let first = self.batches.first()?;
        if first.num_columns() == 0 {
            let options = RecordBatchOptions::new().with_row_count(Some(indices.len()));
            return Some(
                RecordBatch::try_new_with_options(first.schema(), vec![], &options)
                    .map_err(EmberError::from),
            );
        }
        let refs: Vec<&RecordBatch> = self.batches.iter().collect();
        Some(interleave_record_batch(&refs, indices).map_err(EmberError::from))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use arrow::array::{Int64Array, StringArray};
    use arrow::compute::{lexsort_to_indices, take, SortColumn};
    use arrow::util::display::array_value_to_string;

    use ember_planner::expr::col;

    use super::*;
    use crate::context::NoShuffle;

    fn key(v: u8) -> Vec<u8> {
        vec![v]
    }

    fn splits_of(samples: &[(Vec<u8>, u64)], partitions: usize) -> Vec<Option<KeyRange>> {
        let weighted = samples.iter().map(|(k, w)| (k.as_slice(), *w)).collect();
        let splits = split_points(weighted, partitions);
        assert_eq!(splits.len(), partitions - 1);
        (0..partitions).map(|r| key_range(&splits, r)).collect()
    }

    fn range(lower: Option<u8>, upper: Option<u8>) -> Option<KeyRange> {
        Some(KeyRange {
            lower: lower.map(key),
            upper: upper.map(key),
        })
    }

    #[test]
    fn split_points_follow_the_sample_weights() {
        // Keys 0..100, one row each, given out of order: quartiles at 25, 50, 75.
        let samples: Vec<(Vec<u8>, u64)> = (0..100u8).rev().map(|k| (key(k), 1)).collect();
        assert_eq!(
            splits_of(&samples, 4),
            vec![
                range(None, Some(25)),
                range(Some(25), Some(50)),
                range(Some(50), Some(75)),
                range(Some(75), None)
            ]
        );
        // Key 1 stands for 30 of 40 rows: it starts partition 1, which then takes the rest.
        let heavy = vec![(key(0), 5), (key(1), 30), (key(2), 5), (key(3), 0)];
        assert_eq!(
            splits_of(&heavy, 4),
            vec![
                range(None, Some(1)),
                range(Some(1), Some(2)),
                None,
                range(Some(2), None)
            ]
        );
    }

    #[test]
    fn equal_keys_all_go_to_one_partition() {
        let samples: Vec<(Vec<u8>, u64)> = (0..8).map(|_| (key(7), 10)).collect();
        assert_eq!(
            splits_of(&samples, 4),
            vec![range(None, Some(7)), range(Some(7), None), None, None]
        );
    }

    #[test]
    fn fewer_distinct_keys_than_partitions_leave_partitions_empty() {
        assert_eq!(
            splits_of(&[(key(3), 10)], 3),
            vec![range(None, Some(3)), range(Some(3), None), None]
        );
        assert_eq!(splits_of(&[], 2), vec![range(None, None), None]);
    }

    #[test]
    fn rows_in_a_range_are_found_by_binary_search() {
        let keys = LargeBinaryArray::from_iter_values([1u8, 2, 2, 2, 3, 5].map(|k| [k]));
        let rows = |l, u| range(l, u).unwrap().rows_in(&keys);
        assert_eq!(rows(Some(2), Some(3)), (1, 4));
        assert_eq!(rows(None, Some(2)), (0, 1));
        assert_eq!(rows(Some(4), None), (5, 6));
        assert_eq!(rows(Some(3), Some(4)), (4, 5));
        assert_eq!(rows(Some(6), None), (6, 6));
        assert_eq!(rows(None, None), (0, 6));
        assert!(range(Some(2), Some(3)).unwrap().overlaps(&[1], &[2]));
        assert!(!range(Some(2), Some(3)).unwrap().overlaps(&[3], &[9]));
        assert!(!range(Some(2), Some(3)).unwrap().overlaps(&[0], &[1]));
    }

    #[test]
    fn run_layout_covers_every_row_once() {
        for (rows, partitions) in [(1, 4), (10, 2), (5 * 4096, 3), (100_000, 4), (7, 1)] {
            let layout = RunLayout::new(rows, partitions);
            assert!(layout.samples() <= rows.max(1));
            let mut next = 0;
            for c in 0..layout.chunks {
                let (start, end) = layout.chunk_rows(c);
                assert_eq!(start, next, "{rows} rows, {partitions} partitions");
                assert!(end > start);
                next = end;
            }
            assert_eq!(next, rows);
        }
        let layout = RunLayout::new(100_000, 4);
        assert_eq!((layout.samples(), layout.chunks), (128, 16));
    }

    // ---- map side → tracker → reduce side ----

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("s", DataType::Utf8, false),
            Field::new("id", DataType::Int64, false),
        ]))
    }

    /// A batch of (k, s, id) rows; ids are unique across a test so rows can be told apart.
    fn rows(values: &[(Option<i64>, &str, i64)]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(values.iter().map(|v| v.0).collect::<Int64Array>()),
                Arc::new(StringArray::from_iter_values(values.iter().map(|v| v.1))),
                Arc::new(values.iter().map(|v| Some(v.2)).collect::<Int64Array>()),
            ],
        )
        .unwrap()
    }

    fn ctx(partition: usize, attempt: usize) -> TaskContext {
        TaskContext {
            stage: 0,
            partition,
            attempt,
            batch_size: 700,
            functions: Arc::new(FunctionRegistry::default()),
            shuffle: Arc::new(NoShuffle),
            cancelled: Arc::new(AtomicBool::new(false)),
            ..TaskContext::standalone(Arc::new(FunctionRegistry::default()))
        }
    }

    struct Shuffle {
        _dir: tempfile::TempDir,
        tracker: MapOutputTracker,
        maps: usize,
        partitions: usize,
    }

    impl Shuffle {
        /// Writes one map output per entry of `maps` (rows in any order: the writer sorts
        /// an unsorted run itself) and registers it.
        fn write(maps: &[Vec<RecordBatch>], sort: &[SortExpr], partitions: usize) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let tracker = MapOutputTracker::new();
            let plan_schema = PlanSchema::from_arrow(None, &schema());
            let partitioner =
                RangePartitioner::try_new(sort, partitions, &plan_schema, &Default::default())
                    .unwrap();
            for (m, batches) in maps.iter().enumerate() {
                let input: BatchIter = Box::new(batches.clone().into_iter().map(Ok));
                let out =
                    write_range_map_output(input, &partitioner, dir.path(), &ctx(m, 0)).unwrap();
                let expected: usize = batches.iter().map(|b| b.num_rows()).sum();
                assert_eq!(out.rows, expected);
                tracker.register(
                    0,
                    m,
                    MapStatus {
                        executor: 0,
                        attempt: 0,
                        blocks: out.blocks,
                    },
                );
            }
            Shuffle {
                _dir: dir,
                tracker,
                maps: maps.len(),
                partitions,
            }
        }

        fn read(&self, reduce: usize) -> Result<Vec<RecordBatch>> {
            read_range(&self.tracker, 0, self.partitions, self.maps, reduce)?.collect()
        }

        fn read_all(&self) -> Vec<Vec<RecordBatch>> {
            (0..self.partitions)
                .map(|r| self.read(r).unwrap())
                .collect()
        }
    }

    /// Each output row as "k|s|id" text.
    fn render(batches: &[RecordBatch]) -> Vec<String> {
        let mut out = Vec::new();
        for b in batches {
            for row in 0..b.num_rows() {
                let cells: Vec<String> = b
                    .columns()
                    .iter()
                    .map(|c| array_value_to_string(c, row).unwrap())
                    .collect();
                out.push(cells.join("|"));
            }
        }
        out
    }

    /// The key columns (`k`, `s`) of rows rendered by [`render`].
    fn keys_of(rendered: &[String]) -> Vec<String> {
        rendered
            .iter()
            .map(|r| r.rsplit_once('|').unwrap().0.to_string())
            .collect()
    }

    /// Checks that the partitions, read in order, are exactly the input sorted by `sort`
    /// (on columns k and s), computed independently with `lexsort_to_indices`.
    fn assert_sorted(maps: &[Vec<RecordBatch>], sort: &[SortExpr], parts: &[Vec<RecordBatch>]) {
        let all: Vec<RecordBatch> = maps.iter().flatten().cloned().collect();
        let input = concat_batches(&schema(), &all).unwrap();
        let columns: Vec<SortColumn> = sort
            .iter()
            .map(|s| {
                let name = s.expr.to_string();
                let idx = schema().index_of(name.trim_start_matches('#')).unwrap();
                SortColumn {
                    values: Arc::clone(input.column(idx)),
                    options: Some(SortOptions {
                        descending: !s.asc,
                        nulls_first: s.nulls_first,
                    }),
                }
            })
            .collect();
        let indices = lexsort_to_indices(&columns, None).unwrap();
        let expected_cols = input
            .columns()
            .iter()
            .map(|c| take(c, &indices, None).unwrap())
            .collect();
        let expected = RecordBatch::try_new(schema(), expected_cols).unwrap();
        let got: Vec<RecordBatch> = parts.iter().flatten().cloned().collect();
        let (expected, got) = (render(&[expected]), render(&got));
        // Only the sort keys' order is defined (the `s` column breaks no ties unless it is a
        // key), so compare key columns in order and whole rows as a multiset.
        let sort_keys = |rows: &[String]| -> Vec<String> {
            rows.iter()
                .map(|r| {
                    let cells: Vec<&str> = r.split('|').collect();
                    sort.iter()
                        .map(|s| match s.expr.to_string().as_str() {
                            "k" => cells[0],
                            _ => cells[1],
                        })
                        .collect::<Vec<_>>()
                        .join("|")
                })
                .collect()
        };
        assert_eq!(sort_keys(&got), sort_keys(&expected));
        let (mut a, mut b) = (got.clone(), expected.clone());
        a.sort();
        b.sort();
        assert_eq!(a, b, "rows differ");
        let _ = keys_of;
    }

    fn k(asc: bool, nulls_first: bool) -> SortExpr {
        col("k").sort(asc, nulls_first)
    }

    /// Three maps with keys `i % modulus` (and some NULLs), in no particular order.
    fn maps(rows_per_map: i64, modulus: i64) -> Vec<Vec<RecordBatch>> {
        (0..3)
            .map(|m| {
                let values: Vec<(Option<i64>, &str, i64)> = (0..rows_per_map)
                    .map(|i| {
                        let id = m * rows_per_map + i;
                        let k = (id * 7919 % 1000 % modulus, id % 11 == 0);
                        (
                            if k.1 { None } else { Some(k.0) },
                            ["x", "y", "z"][(id % 3) as usize],
                            id,
                        )
                    })
                    .collect();
                vec![
                    rows(&values[..values.len() / 2]),
                    rows(&values[values.len() / 2..]),
                ]
            })
            .collect()
    }

    #[test]
    fn partitions_in_order_are_the_sorted_input() {
        for sort in [
            vec![k(true, false)],
            vec![k(true, true)],
            vec![k(false, true)],
            vec![k(false, false)],
            vec![col("s").sort(true, false), k(false, true)],
        ] {
            let input = maps(400, 1000);
            let shuffle = Shuffle::write(&input, &sort, 4);
            let parts = shuffle.read_all();
            assert_sorted(&input, &sort, &parts);
            // Distinct-ish keys spread over every partition.
            for (r, p) in parts.iter().enumerate() {
                let n: usize = p.iter().map(|b| b.num_rows()).sum();
                assert!(n > 100, "partition {r} of {sort:?} got {n} rows");
            }
        }
    }

    #[test]
    fn ties_never_straddle_a_split_point() {
        // Five distinct keys (plus NULL) over 4 partitions: every key lives in one partition.
        let input = maps(300, 5);
        let sort = vec![k(true, true)];
        let parts = Shuffle::write(&input, &sort, 4).read_all();
        assert_sorted(&input, &sort, &parts);
        let mut owner = std::collections::HashMap::new();
        for (r, p) in parts.iter().enumerate() {
            for row in render(p) {
                let key = row.split('|').next().unwrap().to_string();
                assert_eq!(*owner.entry(key.clone()).or_insert(r), r, "key {key} split");
            }
        }
    }

    #[test]
    fn all_equal_keys_and_empty_maps() {
        let same: Vec<(Option<i64>, &str, i64)> = (0..50).map(|i| (Some(4), "s", i)).collect();
        let input = vec![
            vec![],
            vec![rows(&same)],
            vec![rows(&same[..0])],
            vec![rows(&same)],
        ];
        let sort = vec![k(true, false)];
        let shuffle = Shuffle::write(&input, &sort, 3);
        assert_eq!(shuffle.tracker.get(0, 0).unwrap().blocks, vec![None]);
        let parts = shuffle.read_all();
        assert_sorted(&input, &sort, &parts);
        let counts: Vec<usize> = parts
            .iter()
            .map(|p| p.iter().map(|b| b.num_rows()).sum())
            .collect();
        assert_eq!(counts, vec![0, 100, 0]);

        let nothing = Shuffle::write(&[vec![], vec![]], &sort, 2);
        assert!(nothing.read_all().iter().all(|p| p.is_empty()));
    }

    #[test]
    fn a_large_run_is_chunked_and_readers_skip_chunks_outside_their_range() {
        let input = maps(12_000, 1_000_000);
        let sort = vec![k(true, false)];
        let shuffle = Shuffle::write(&input, &sort, 3);
        let status = shuffle.tracker.get(0, 0).unwrap();
        assert!(status.blocks.len() > 3, "{} blocks", status.blocks.len());
        assert_sorted(&input, &sort, &shuffle.read_all());
        // Reducer 0 reads only the first chunks: cutting the last chunk off every map file
        // does not disturb it, but fails the last reducer with a fetch failure.
        for m in 0..3 {
            let status = shuffle.tracker.get(0, m).unwrap();
            let last = status.blocks.last().unwrap().as_ref().unwrap();
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&last.path)
                .unwrap();
            file.set_len(last.offset).unwrap();
        }
        assert!(shuffle.read(0).is_ok());
        let err = shuffle.read(2).unwrap_err();
        assert!(
            matches!(
                err,
                EmberError::FetchFailed {
                    stage: 0,
                    map_partition: 0,
                    reduce_partition: 2,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn a_lost_sample_or_missing_output_is_a_fetch_failure() {
        let input = maps(100, 1000);
        let sort = vec![k(true, false)];
        let shuffle = Shuffle::write(&input, &sort, 2);
        let sample = shuffle.tracker.get(0, 1).unwrap().blocks[0]
            .clone()
            .unwrap();
        std::fs::remove_file(&sample.path).unwrap();
        let err = shuffle.read(0).unwrap_err();
        assert!(
            matches!(
                err,
                EmberError::FetchFailed {
                    map_partition: 1,
                    ..
                }
            ),
            "{err:?}"
        );
        shuffle.tracker.unregister(0, 2);
        let err = shuffle.read(1).unwrap_err();
        assert!(
            matches!(
                err,
                EmberError::FetchFailed {
                    map_partition: 2,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn a_recomputed_map_output_gives_every_reducer_the_same_rows() {
        let input = maps(500, 50);
        let sort = vec![k(false, false)];
        let shuffle = Shuffle::write(&input, &sort, 3);
        let before = shuffle.read_all();
        // Recompute map 1 as attempt 1, from its rows in a different order.
        let mut reversed: Vec<RecordBatch> = input[1].clone();
        reversed.reverse();
        let plan_schema = PlanSchema::from_arrow(None, &schema());
        let partitioner =
            RangePartitioner::try_new(&sort, 3, &plan_schema, &Default::default()).unwrap();
        let out = write_range_map_output(
            Box::new(reversed.into_iter().map(Ok)),
            &partitioner,
            shuffle._dir.path(),
            &ctx(1, 1),
        )
        .unwrap();
        let old = shuffle.tracker.get(0, 1).unwrap();
        assert_eq!(
            read_block(old.blocks[0].as_ref().unwrap()).unwrap(),
            read_block(out.blocks[0].as_ref().unwrap()).unwrap(),
            "samples differ"
        );
        shuffle.tracker.register(
            0,
            1,
            MapStatus {
                executor: 0,
                attempt: 1,
                blocks: out.blocks,
            },
        );
        let after = shuffle.read_all();
        for (r, (a, b)) in before.iter().zip(&after).enumerate() {
            let (mut a, mut b) = (render(a), render(b));
            a.sort();
            b.sort();
            assert_eq!(a, b, "partition {r} changed");
        }
    }

    #[test]
    fn merge_orders_equal_keys_by_run_then_row() {
        let chunk = |keys: &[u8], ids: &[i64]| {
            let schema = Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, false),
                Field::new(KEY_COLUMN, DataType::LargeBinary, false),
            ]));
            RecordBatch::try_new(
                schema,
                vec![
                    Arc::new(Int64Array::from(ids.to_vec())),
                    Arc::new(LargeBinaryArray::from_iter_values(
                        keys.iter().map(|k| [*k]),
                    )),
                ],
            )
            .unwrap()
        };
        let runs = vec![
            vec![chunk(&[1, 3], &[10, 11]), chunk(&[3, 5], &[12, 13])],
            vec![chunk(&[0, 3, 3], &[20, 21, 22])],
            vec![chunk(&[3], &[30])],
        ];
        let out: Vec<RecordBatch> = merge_runs(runs).unwrap().collect::<Result<_>>().unwrap();
        assert_eq!(out[0].num_columns(), 1);
        let ids: Vec<i64> = out
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_primitive::<arrow::datatypes::Int64Type>()
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(ids, vec![20, 10, 11, 12, 21, 22, 30, 13]);
    }
}
