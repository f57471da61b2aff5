//! The map side of a shuffle: split a task's output into buckets and write one block per
//! non-empty bucket, all into the task's one map file.

use std::path::Path;

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::concat_batches;
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;

use ember_planner::table::BatchIter;
use ember_planner::{EmberError, Result};
use ember_storage::shuffle::{map_file_path, BlockMeta, MapFileWriter};

use super::partitioner::Partitioner;
use crate::context::TaskContext;

/// What a map task produced: one optional block per reduce bucket.
#[derive(Debug, Clone)]
pub struct MapOutput {
    pub blocks: Vec<Option<BlockMeta>>,
    pub rows: usize,
    pub bytes: u64,
}

/// Drains `input` (the stage pipeline for `ctx.partition`), buckets its rows with
/// `partitioner`, and writes the buckets under `dir` (a range partitioner writes its
/// sorted run and sample instead, see [`super::range`]). The file name carries the attempt,
/// so a retried or recomputed task never overwrites a block another reader may be using.
///
/// All of the partition's rows are buffered until the input ends (a block is written in one
/// piece); small pieces of a bucket are merged into batches of about `ctx.batch_size` rows so
/// that reducers do not get thousands of tiny batches.
pub fn write_map_output(
    input: BatchIter,
    mut partitioner: Partitioner,
    dir: &Path,
    ctx: &TaskContext,
) -> Result<MapOutput> {
    if let Partitioner::Range(range) = &partitioner {
        return super::range::write_range_map_output(input, range, dir, ctx);
    }
    let buckets = partitioner.num_buckets();
    let mut pieces: Vec<Vec<RecordBatch>> = vec![Vec::new(); buckets];
    for batch in input {
        if ctx.is_cancelled() {
            return Err(EmberError::Execution(format!(
                "task {}.{} (attempt {}) was cancelled",
                ctx.stage, ctx.partition, ctx.attempt
            )));
        }
        for (bucket, piece) in partitioner.partition(&batch?)? {
            pieces[bucket].push(piece);
        }
    }
    let mut output = MapOutput {
        blocks: Vec::with_capacity(buckets),
        rows: 0,
        bytes: 0,
    };
    let mut file = MapFileWriter::new(map_file_path(dir, ctx.stage, ctx.partition, ctx.attempt));
    for bucket_pieces in pieces {
        let Some(first) = bucket_pieces.first() else {
            output.blocks.push(None);
            continue;
        };
        let schema = first.schema();
        let batches = coalesce(&schema, bucket_pieces, ctx.batch_size)?
            .into_iter()
            .map(compact_views)
            .collect::<Result<Vec<_>>>()?;
        let meta = file.write_block(&schema, &batches)?;
        output.rows += meta.rows;
        output.bytes += meta.bytes;
        output.blocks.push(Some(meta));
    }
    file.finish()?;
    Ok(output)
}

/// Merges runs of small batches into batches of at least `target` rows (the last may be
/// smaller); batches already that large pass through untouched.
fn coalesce(
    schema: &arrow::datatypes::SchemaRef,
    pieces: Vec<RecordBatch>,
    target: usize,
) -> Result<Vec<RecordBatch>> {
    let target = target.max(1);
    let mut out = Vec::new();
    let mut group: Vec<RecordBatch> = Vec::new();
    let mut group_rows = 0;
    let flush = |group: &mut Vec<RecordBatch>, out: &mut Vec<RecordBatch>| -> Result<()> {
        match group.len() {
            0 => {}
            1 => out.append(group),
            _ => {
                out.push(concat_batches(schema, group.iter())?);
                group.clear();
            }
        }
        Ok(())
    };
    for piece in pieces {
        group_rows += piece.num_rows();
        group.push(piece);
        if group_rows >= target {
            flush(&mut group, &mut out)?;
            group_rows = 0;
        }
    }
    flush(&mut group, &mut out)?;
    Ok(out)
}

/// Rewrites string/binary view columns that reference much more buffer space than their
/// values use. A view column out of `take`/`filter`/`slice` keeps every data buffer of its
/// source alive (a join's whole build side, a whole Parquet page), `concat` appends those
/// buffers once per piece, and the IPC writer writes every referenced buffer in full: without
/// this, TPC-H Q18 at SF1 wrote 40 GB of shuffle blocks for 6 M rows.
pub(super) fn compact_views(batch: RecordBatch) -> Result<RecordBatch> {
    let needs_gc = |a: &ArrayRef| match a.data_type() {
        DataType::Utf8View => wasteful(
            a.as_string_view().data_buffers(),
            a.as_string_view().total_buffer_bytes_used(),
        ),
        DataType::BinaryView => wasteful(
            a.as_binary_view().data_buffers(),
            a.as_binary_view().total_buffer_bytes_used(),
        ),
        _ => false,
    };
    if !batch.columns().iter().any(needs_gc) {
        return Ok(batch);
    }
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|a| match a.data_type() {
            DataType::Utf8View if needs_gc(a) => Arc::new(a.as_string_view().gc()) as ArrayRef,
            DataType::BinaryView if needs_gc(a) => Arc::new(a.as_binary_view().gc()) as ArrayRef,
            _ => Arc::clone(a),
        })
        .collect();
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// True when the data buffers hold more than twice the bytes the views point at.
fn wasteful(buffers: &[arrow::buffer::Buffer], used: usize) -> bool {
    let held: usize = buffers.iter().map(|b| b.len()).sum();
    held > 2 * used.max(1024)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int32Array;
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch(n: usize) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int32, false)]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(Int32Array::from_iter_values(0..n as i32))],
        )
        .unwrap()
    }

    #[test]
    fn coalesce_merges_small_pieces_and_keeps_order() {
        let pieces = vec![batch(3), batch(3), batch(10), batch(2), batch(1)];
        let schema = pieces[0].schema();
        let out = coalesce(&schema, pieces, 5).unwrap();
        let sizes: Vec<usize> = out.iter().map(|b| b.num_rows()).collect();
        assert_eq!(sizes, vec![6, 10, 3]);
        let first = out[0]
            .column(0)
            .as_any()
            .downcast_ref::<Int32Array>()
            .unwrap();
        assert_eq!(first.values().to_vec(), vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn compact_views_drops_buffers_a_taken_view_column_still_references() {
        use arrow::array::{StringViewArray, UInt32Array};
        use arrow::compute::take;

        let long: Vec<String> = (0..10_000)
            .map(|i| format!("a-long-string-value-{i:08}"))
            .collect();
        let source = StringViewArray::from_iter_values(long.iter());
        let picked = take(&source, &UInt32Array::from(vec![3, 7]), None).unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new(
            "s",
            DataType::Utf8View,
            false,
        )]));
        let piece = RecordBatch::try_new(schema.clone(), vec![picked]).unwrap();
        // Concatenating pieces appends the source's buffers once per piece.
        let joined = concat_batches(&schema, [&piece, &piece, &piece]).unwrap();
        let held = |b: &RecordBatch| -> usize {
            b.column(0)
                .as_string_view()
                .data_buffers()
                .iter()
                .map(|d| d.len())
                .sum()
        };
        assert!(held(&joined) > 3 * 200_000);
        let compact = compact_views(joined).unwrap();
        assert!(held(&compact) < 1024, "{}", held(&compact));
        let values: Vec<&str> = compact
            .column(0)
            .as_string_view()
            .iter()
            .flatten()
            .collect();
        assert_eq!(values[..2], [long[3].as_str(), long[7].as_str()]);
        assert_eq!(values.len(), 6);
    }
}
