//! Splits a map task's output batches into reduce buckets, as the stage's `ExchangeKind` says.
//!
//! Every assignment here must be a pure function of the map partition's rows and their
//! order: when a lost map output is recomputed, the recomputed blocks must hold exactly the
//! rows the lost ones held, or reducers that already read the old blocks and reducers that
//! read the new ones would disagree. So hashing uses a fixed seed (never a per-process random
//! state) and round-robin counts rows over the whole partition, starting at the partition's
//! own offset.

use arrow::array::UInt32Array;
use arrow::compute::take_record_batch;
use arrow::record_batch::RecordBatch;
use datafusion_common::hash_utils::{create_hashes, RandomState};

use ember_planner::physical::ExchangeKind;
use ember_planner::schema::PlanSchema;
use ember_planner::{EmberError, Result};

use super::range::RangePartitioner;
use crate::expr::{create_physical_exprs, PhysicalExprRef};
use crate::udf::FunctionRegistry;

/// Seed of the shuffle hash. Fixed so every process (and every recomputation) sends a key to
/// the same bucket; distinct from the seeds hash tables use, so the rows that land in one
/// bucket do not all collide in the reducer's hash table.
const SHUFFLE_HASH_SEED: u64 = 0x454d_4245_525f_5348; // "EMBER_SH"

/// Decides, for each row of a map task's output, which reduce bucket it goes to.
#[derive(Debug)]
pub enum Partitioner {
    /// Bucket = hash(keys) mod `buckets`. Both sides of a partitioned join must use key
    /// expressions of the same types for equal keys to meet (the planner casts them).
    Hash {
        keys: Vec<PhysicalExprRef>,
        buckets: usize,
    },
    /// Row `i` of map partition `p` goes to `(p + i) % buckets`; `next` is the bucket of the
    /// next row to arrive.
    RoundRobin { buckets: usize, next: usize },
    /// Every row to bucket 0 (`Single`, and `Broadcast`, whose readers read bucket 0 of
    /// every map partition).
    Single,
    /// A global sort's key ranges. Rows are not bucketed one batch at a time: the split
    /// points are only known once every map task has written its sorted run, so the writer
    /// hands the whole run to [`super::range::write_range_map_output`].
    Range(RangePartitioner),
}

impl Partitioner {
    /// A partitioner for map partition `map_partition` of a stage whose output rows have
    /// `schema` (the schema the Exchange's key expressions are written against).
    pub fn try_new(
        kind: &ExchangeKind,
        map_partition: usize,
        schema: &PlanSchema,
        functions: &FunctionRegistry,
    ) -> Result<Self> {
        Ok(match kind {
            ExchangeKind::Hash(exprs, n) => Partitioner::Hash {
                keys: create_physical_exprs(exprs, schema, functions)?,
                buckets: nonzero_buckets(*n, kind)?,
            },
            ExchangeKind::RoundRobin(n) => {
                let buckets = nonzero_buckets(*n, kind)?;
                Partitioner::RoundRobin {
                    buckets,
                    next: map_partition % buckets,
                }
            }
            ExchangeKind::Single | ExchangeKind::Broadcast => Partitioner::Single,
            ExchangeKind::Range { sort, partitions } => Partitioner::Range(
                RangePartitioner::try_new(sort, *partitions, schema, functions)?,
            ),
        })
    }

    /// How many reduce buckets this partitioner writes.
    pub fn num_buckets(&self) -> usize {
        match self {
            Partitioner::Hash { buckets, .. } | Partitioner::RoundRobin { buckets, .. } => *buckets,
            Partitioner::Single => 1,
            Partitioner::Range(range) => range.partitions(),
        }
    }

    /// Splits `batch` into `(bucket, rows)` pieces in ascending bucket order. Rows keep their
    /// input order within a bucket; empty buckets get no piece.
    pub fn partition(&mut self, batch: &RecordBatch) -> Result<Vec<(usize, RecordBatch)>> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(vec![]);
        }
        match self {
            Partitioner::Single => Ok(vec![(0, batch.clone())]),
            Partitioner::Range(_) => Err(EmberError::Internal(
                "a range exchange's rows are written as one sorted run, not bucketed per batch"
                    .to_string(),
            )),
            Partitioner::RoundRobin { buckets, next } => {
                let n = *buckets;
                let start = *next;
                *next = (start + rows % n) % n;
                let assignment: Vec<usize> = (0..rows).map(|i| (start + i) % n).collect();
                split_by_bucket(batch, &assignment, n)
            }
            Partitioner::Hash { keys, buckets } => {
                let n = *buckets;
                let arrays = keys
                    .iter()
                    .map(|k| k.evaluate(batch))
                    .collect::<Result<Vec<_>>>()?;
                let mut hashes = vec![0u64; rows];
                create_hashes(
                    &arrays,
                    &RandomState::with_seed(SHUFFLE_HASH_SEED),
                    &mut hashes,
                )?;
                let n64 = n as u64;
                let assignment: Vec<usize> = hashes.iter().map(|h| (h % n64) as usize).collect();
                split_by_bucket(batch, &assignment, n)
            }
        }
    }
}

fn nonzero_buckets(n: usize, kind: &ExchangeKind) -> Result<usize> {
    if n == 0 {
        return Err(EmberError::Internal(format!(
            "exchange {kind} has zero output partitions"
        )));
    }
    Ok(n)
}

/// Groups the rows of `batch` by `assignment[row]` with one counting sort and one `take`,
/// then hands out zero-copy slices of the reordered batch, one per non-empty bucket.
fn split_by_bucket(
    batch: &RecordBatch,
    assignment: &[usize],
    buckets: usize,
) -> Result<Vec<(usize, RecordBatch)>> {
    let mut counts = vec![0usize; buckets];
    for &b in assignment {
        counts[b] += 1;
    }
    if let Some(only) = counts.iter().position(|&c| c == assignment.len()) {
        return Ok(vec![(only, batch.clone())]);
    }
    let mut offsets = Vec::with_capacity(buckets);
    let mut total = 0usize;
    for &c in &counts {
        offsets.push(total);
        total += c;
    }
    let mut cursor = offsets.clone();
    let mut indices = vec![0u32; assignment.len()];
    for (row, &b) in assignment.iter().enumerate() {
        indices[cursor[b]] = u32::try_from(row).map_err(|_| {
            EmberError::Internal(format!(
                "batch of {} rows is too large to shuffle",
                assignment.len()
            ))
        })?;
        cursor[b] += 1;
    }
    let reordered = take_record_batch(batch, &UInt32Array::from(indices))?;
    Ok(counts
        .iter()
        .enumerate()
        .filter(|(_, &c)| c > 0)
        .map(|(b, &c)| (b, reordered.slice(offsets[b], c)))
        .collect())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use ember_planner::expr::Expr;
    use ember_planner::schema::Column;

    use super::*;

    const PINNED_BUCKET_OF_42: usize = 504_767;

    fn batch(values: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("s", DataType::Utf8, false),
        ]));
        let strings: Vec<String> = values.iter().map(|v| format!("v{v}")).collect();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(values.to_vec())),
                Arc::new(StringArray::from(strings)),
            ],
        )
        .unwrap()
    }

    fn plan_schema(b: &RecordBatch) -> PlanSchema {
        PlanSchema::from_arrow(None, b.schema().as_ref())
    }

    fn keys(piece: &RecordBatch) -> Vec<i64> {
        piece
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .values()
            .to_vec()
    }

    #[test]
    fn round_robin_continues_across_batches_from_partition_offset() {
        let b = batch(&[10, 11, 12, 13, 14]);
        let kind = ExchangeKind::RoundRobin(3);
        let mut p = Partitioner::try_new(&kind, 1, &plan_schema(&b), &Default::default()).unwrap();
        // Rows 0..5 of map partition 1 → buckets 1, 2, 0, 1, 2.
        let pieces = p.partition(&b).unwrap();
        let got: Vec<(usize, Vec<i64>)> = pieces.iter().map(|(k, r)| (*k, keys(r))).collect();
        assert_eq!(
            got,
            vec![(0, vec![12]), (1, vec![10, 13]), (2, vec![11, 14])]
        );
        // The next batch continues at row 5 → bucket (1 + 5) % 3 = 0.
        let pieces = p.partition(&batch(&[15])).unwrap();
        assert_eq!(pieces[0].0, 0);
    }

    #[test]
    fn hash_sends_equal_keys_to_one_bucket_every_time() {
        let values: Vec<i64> = (0..1000).map(|i| i % 37).collect();
        let b = batch(&values);
        let kind = ExchangeKind::Hash(vec![Expr::Column(Column::unqualified("k"))], 4);
        let run = || {
            let mut p =
                Partitioner::try_new(&kind, 0, &plan_schema(&b), &Default::default()).unwrap();
            p.partition(&b).unwrap()
        };
        let first = run();
        let mut seen = std::collections::HashMap::new();
        let mut total = 0;
        for (bucket, piece) in &first {
            total += piece.num_rows();
            for k in keys(piece) {
                assert_eq!(*seen.entry(k).or_insert(*bucket), *bucket, "key {k} split");
            }
        }
        assert_eq!(total, 1000);
        assert!(
            first.len() > 1,
            "37 keys should spread over several buckets"
        );
        let second = run();
        assert_eq!(first, second);
    }

    #[test]
    fn hash_of_a_known_key_is_pinned() {
        // Pins the shuffle hash: if it changed, a job mixing blocks written before and after
        // (recomputation in a long-lived cluster) would split keys, so it must be deliberate.
        let b = batch(&[42]);
        let kind = ExchangeKind::Hash(vec![Expr::Column(Column::unqualified("k"))], 1 << 20);
        let mut p = Partitioner::try_new(&kind, 0, &plan_schema(&b), &Default::default()).unwrap();
        let pieces = p.partition(&b).unwrap();
        assert_eq!(pieces[0].0, PINNED_BUCKET_OF_42);
    }

    #[test]
    fn single_keeps_the_batch_whole() {
        let b = batch(&[1, 2, 3]);
        let mut p = Partitioner::try_new(
            &ExchangeKind::Broadcast,
            5,
            &plan_schema(&b),
            &Default::default(),
        )
        .unwrap();
        let pieces = p.partition(&b).unwrap();
        assert_eq!(pieces.len(), 1);
        assert_eq!(pieces[0].0, 0);
        assert_eq!(pieces[0].1.num_rows(), 3);
        assert!(p.partition(&b.slice(0, 0)).unwrap().is_empty());
    }

    #[test]
    fn zero_buckets_is_an_internal_error() {
        let b = batch(&[1]);
        let err = Partitioner::try_new(
            &ExchangeKind::RoundRobin(0),
            0,
            &plan_schema(&b),
            &Default::default(),
        )
        .unwrap_err();
        assert!(matches!(err, EmberError::Internal(_)), "{err}");
    }

    #[test]
    fn pieces_keep_all_columns() {
        let b = batch(&[1, 2, 3, 4]);
        let mut p = Partitioner::try_new(
            &ExchangeKind::RoundRobin(2),
            0,
            &plan_schema(&b),
            &Default::default(),
        )
        .unwrap();
        let pieces = p.partition(&b).unwrap();
        let s = pieces[1]
            .1
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.value(0), "v2");
        assert_eq!(s.value(1), "v4");
    }
}
