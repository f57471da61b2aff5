//! Reading a hash join's build side under the executor's memory budget.
//!
//! Every build batch is claimed from the task's [`MemoryReservation`] as it arrives, and the
//! hash index is claimed (estimated from the row count) before it is built. As long as the
//! claims succeed, the join runs in memory exactly as before. The first refused claim
//! switches the join to the grace path (see [`super::grace`]): the batches read so far and
//! the rest of the build input are hash-partitioned into spill files, nothing of the build
//! side stays in memory, and the reservation is released.
//!
//! ```text
//!   build batches ──try_grow──► in memory ──(input ends, index fits)──► JoinHashTable
//!                      │ refused
//!                      ▼
//!         grace partitions on disk (buffered batches first, then the rest of the input)
//! ```

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::compute::concat;
use arrow::datatypes::SchemaRef;

use ember_planner::physical::PhysicalPlan;
use ember_planner::table::BatchIter;
use ember_planner::{internal_err, Result};

use super::grace::{GraceRules, Partitioner, Side, SpilledBuild};
use super::{JoinHashTable, JoinKeys};
use crate::context::TaskContext;
use crate::memory::MemoryReservation;
use crate::operators::check_cancelled;
use crate::spill::batch_memory;

/// The build side of one join task: a hash table in memory, or grace partitions on disk.
pub(crate) enum BuildSide {
    InMemory(Arc<JoinHashTable>),
    Spilled(SpilledBuild),
}

/// Reads `partitions` of `right` into a hash table, or into grace partitions once the
/// reservation refuses to grow (see the module docs).
pub(super) fn collect_build(
    right: &Arc<PhysicalPlan>,
    partitions: &[usize],
    keys: &JoinKeys,
    rules: GraceRules,
    reservation: &mut MemoryReservation,
    ctx: &Arc<TaskContext>,
) -> Result<BuildSide> {
    let mut input = build_input(right, partitions, ctx);
    let mut batches = Vec::new();
    let mut rows = 0usize;
    while let Some(batch) = input.next() {
        check_cancelled(ctx)?;
        let batch = batch?;
        if batch.num_rows() == 0 {
            continue;
        }
        rows += batch.num_rows();
        let bytes = batch_memory(&batch);
        batches.push(batch);
        if reservation.try_grow(bytes).is_err() {
            return spill_build(batches, input, right, keys, rules, reservation, ctx);
        }
    }
    if reservation.try_grow(index_memory(rows)).is_err() {
        let rest = std::iter::empty();
        return spill_build(batches, rest, right, keys, rules, reservation, ctx);
    }
    let schema = match batches.first() {
        Some(b) => b.schema(),
        None => right.schema().to_arrow_ref(),
    };
    let table = JoinHashTable::try_new(concat_columns(&schema, batches)?, keys)?;
    // The index estimate and the measured table differ a little; the table is built, so
    // the accounting follows it even if that is slightly over the budget.
    reservation.resize(table.memory);
    Ok(BuildSide::InMemory(Arc::new(table)))
}

/// The build input: `partitions` of `right`, one after the other, started lazily.
fn build_input<'a>(
    right: &'a Arc<PhysicalPlan>,
    partitions: &'a [usize],
    ctx: &'a Arc<TaskContext>,
) -> impl Iterator<Item = Result<RecordBatch>> + 'a {
    partitions.iter().flat_map(move |&p| -> BatchIter {
        match crate::operators::execute(right, p, ctx) {
            Ok(batches) => batches,
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    })
}

/// Moves the buffered build batches and the rest of the build input into grace partitions.
fn spill_build(
    buffered: Vec<RecordBatch>,
    rest: impl Iterator<Item = Result<RecordBatch>>,
    right: &PhysicalPlan,
    keys: &JoinKeys,
    rules: GraceRules,
    reservation: &mut MemoryReservation,
    ctx: &Arc<TaskContext>,
) -> Result<BuildSide> {
    let mut partitioner = Partitioner::new(keys, Side::Build, 0, rules, None, &ctx.memory);
    let mut rows = 0;
    for batch in buffered {
        // Each batch is dropped once written, so memory falls as the partitions fill.
        rows += batch.num_rows();
        partitioner.push(&batch)?;
    }
    reservation.free();
    for batch in rest {
        check_cancelled(ctx)?;
        let batch = batch?;
        rows += batch.num_rows();
        partitioner.push(&batch)?;
    }
    let has_null_key = partitioner.has_null_key();
    let (schema, partitions) = partitioner.finish()?;
    Ok(BuildSide::Spilled(SpilledBuild {
        partitions,
        rows,
        has_null_key,
        schema: schema.unwrap_or_else(|| right.schema().to_arrow_ref()),
    }))
}

/// Bytes of the hash index over `rows` build rows: the `hashbrown` table of (hash, row)
/// entries with one control byte each, at its load factor of 7/8, plus the `next` chain.
pub(super) fn index_memory(rows: usize) -> usize {
    let buckets = if rows < 8 {
        8
    } else {
        (rows.saturating_mul(8) / 7).next_power_of_two()
    };
    let entry = std::mem::size_of::<(u64, u32)>() + 1;
    buckets
        .saturating_mul(entry)
        .saturating_add(rows.saturating_mul(std::mem::size_of::<u32>()))
}

/// Concatenates `batches` one column at a time, releasing each column's pieces as soon as
/// it is copied: the peak is the build side plus one column, where `concat_batches` would
/// hold two copies of the whole build side at once.
pub(super) fn concat_columns(
    schema: &SchemaRef,
    mut batches: Vec<RecordBatch>,
) -> Result<RecordBatch> {
    if batches.len() == 1 {
        if let Some(batch) = batches.pop() {
            return Ok(batch);
        }
    }
    if batches.is_empty() {
        return Ok(RecordBatch::new_empty(Arc::clone(schema)));
    }
    let width = schema.fields().len();
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let mut pieces: Vec<Vec<ArrayRef>> = (0..width)
        .map(|_| Vec::with_capacity(batches.len()))
        .collect();
    for batch in batches {
        if batch.num_columns() != width {
            return internal_err!(
                "join build batch has {} columns, expected {width}",
                batch.num_columns()
            );
        }
        for (column, piece) in pieces.iter_mut().zip(batch.columns()) {
            column.push(Arc::clone(piece));
        }
    }
    let mut columns = Vec::with_capacity(width);
    for column in pieces {
        let refs: Vec<&dyn Array> = column.iter().map(|a| a.as_ref()).collect();
        columns.push(concat(&refs)?);
    }
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &options,
    )?)
}

#[cfg(test)]
mod tests {
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn index_estimate_covers_the_table_and_the_chain() {
        assert_eq!(index_memory(0), 8 * 17);
        // 1000 rows need 1143 buckets at 7/8 load: 2048 buckets of 17 bytes, 4000 of chain.
        assert_eq!(index_memory(1000), 2048 * 17 + 4000);
    }

    #[test]
    fn column_wise_concat_keeps_rows_in_order() {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        let batch = |v: Vec<i64>| {
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(v))]).unwrap()
        };
        let out = concat_columns(&schema, vec![batch(vec![1, 2]), batch(vec![3])]).unwrap();
        let values = out.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(values.values().to_vec(), vec![1, 2, 3]);
        assert_eq!(concat_columns(&schema, vec![]).unwrap().num_rows(), 0);
    }
}
