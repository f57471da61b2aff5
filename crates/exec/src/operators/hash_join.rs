//! Hash join: builds a hash table on the right input, streams the left input through it.
//!
//! The build side is read whole (one partition in `Partitioned` mode, every partition in
//! `Broadcast` mode) and concatenated into one batch. Its key columns are hashed column at
//! a time (`create_hashes`, no per-row dynamic dispatch) into a table that maps a hash to
//! the first build row with that hash; further rows with the same hash are chained through
//! `next`, in ascending row order:
//!
//! ```text
//!   map: hash ─► first row        next: row ─► following row with the same hash (+1, 0 = end)
//! ```
//!
//! A probe batch is hashed the same way; each row walks its chain to produce candidate
//! pairs, and the candidates' key values are then compared with Arrow's `eq` kernel (one
//! call per key column per chunk) to discard hash collisions. NULL keys never match: rows
//! with a NULL in any key are left out of the table and never looked up. The shared
//! [`join_stream::JoinStream`] turns verified pairs into output for each join type.

pub(super) mod join_stream;

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use arrow::buffer::NullBuffer;
use arrow::compute::kernels::cmp::eq;
use arrow::compute::{and, cast, concat_batches, filter, take};
use arrow::datatypes::DataType;
use datafusion_common::hash_utils::{create_hashes, RandomState};
use hashbrown::HashTable;

use ember_planner::expr::Expr;
use ember_planner::logical::JoinType;
use ember_planner::physical::{ExchangeKind, JoinMode, PhysicalPlan};
use ember_planner::schema::PlanSchema;
use ember_planner::table::BatchIter;
use ember_planner::types::common_type;
use ember_planner::{internal_err, plan_err, Result};

use self::join_stream::{row_count_u32, JoinFilter, JoinOutput, JoinStream, PairSource};
use super::check_cancelled;
use crate::context::TaskContext;
use crate::expr::{create_physical_expr, PhysicalExprRef};

/// Seed of the join's key hash. It differs from the shuffle's, so the rows of one
/// hash partition (which share `hash % n`) still spread over the whole table.
const JOIN_HASH_STATE: RandomState = RandomState::with_seed(0x6a6f_696e_5f6b_6579);

/// Computes partition `partition` of a `PhysicalPlan::HashJoin`.
pub fn execute_hash_join(
    plan: &Arc<PhysicalPlan>,
    partition: usize,
    ctx: &Arc<TaskContext>,
) -> Result<BatchIter> {
    let PhysicalPlan::HashJoin {
        left,
        right,
        on,
        filter,
        join_type,
        null_aware,
        mode,
        schema,
    } = plan.as_ref()
    else {
        return internal_err!("execute_hash_join called on {}", plan.describe_node());
    };
    if *mode == JoinMode::Broadcast && matches!(join_type, JoinType::Right | JoinType::Full) {
        // Every probe partition would emit the same unmatched build rows.
        return internal_err!("{join_type} join cannot broadcast its build side");
    }
    let keys = JoinKeys::compile(on, left.schema(), right.schema(), ctx)?;
    let filter = compile_filter(filter.as_ref(), left.schema(), right.schema(), ctx)?;

    let build_partitions = match mode {
        JoinMode::Partitioned => vec![partition],
        JoinMode::Broadcast => broadcast_partitions(right),
    };
    let build = collect_build_side(right, &build_partitions, ctx)?;
    let table = JoinHashTable::try_new(build, &keys)?;

    let null_aware = *null_aware && *join_type == JoinType::LeftAnti;
    // NOT IN against a set containing NULL is never true.
    let nothing_passes = null_aware && table.has_null_key;
    let nothing_matches = table.batch.num_rows() == 0
        && matches!(join_type, JoinType::Inner | JoinType::LeftSemi | JoinType::Right);
    if nothing_passes || nothing_matches {
        return Ok(Box::new(std::iter::empty()));
    }

    let probe = super::execute(left, partition, ctx)?;
    let output = JoinOutput {
        join_type: *join_type,
        filter,
        schema: schema.to_arrow_ref(),
        left_width: left.schema().len(),
        batch_size: ctx.batch_size,
    };
    let build = table.batch.clone();
    let pairs = HashPairs {
        drop_null_probe_keys: null_aware && build.num_rows() > 0,
        table,
        keys,
        probe: None,
    };
    Ok(Box::new(JoinStream::try_new(pairs, probe, build, output)?))
}

/// The partitions of a broadcast build side to read. A broadcast Exchange (or its shuffle
/// read) returns all rows from any one partition, so reading more would duplicate them.
pub(super) fn broadcast_partitions(right: &PhysicalPlan) -> Vec<usize> {
    match right {
        PhysicalPlan::Exchange {
            kind: ExchangeKind::Broadcast,
            ..
        }
        | PhysicalPlan::ShuffleRead {
            kind: ExchangeKind::Broadcast,
            ..
        } => vec![0],
        other => (0..other.output_partitions()).collect(),
    }
}

/// Reads `partitions` of the build side into one batch.
pub(super) fn collect_build_side(
    right: &Arc<PhysicalPlan>,
    partitions: &[usize],
    ctx: &Arc<TaskContext>,
) -> Result<RecordBatch> {
    let mut batches = Vec::new();
    for &p in partitions {
        for batch in super::execute(right, p, ctx)? {
            check_cancelled(ctx)?;
            let batch = batch?;
            if batch.num_rows() > 0 {
                batches.push(batch);
            }
        }
    }
    let schema = match batches.first() {
        Some(b) => b.schema(),
        None => right.schema().to_arrow_ref(),
    };
    let build = concat_batches(&schema, &batches)?;
    row_count_u32(build.num_rows(), "the join build side")?;
    Ok(build)
}

/// Compiles the join filter over the joined row (left columns, then right columns).
pub(super) fn compile_filter(
    filter: Option<&Expr>,
    left: &PlanSchema,
    right: &PlanSchema,
    ctx: &TaskContext,
) -> Result<Option<JoinFilter>> {
    filter
        .map(|f| {
            let expr = create_physical_expr(f, &left.join(right), &ctx.functions)?;
            Ok(JoinFilter::new(expr, left, right))
        })
        .transpose()
}

/// The equi-join keys, compiled per side, and the type each pair is compared as.
struct JoinKeys {
    left: Vec<PhysicalExprRef>,
    right: Vec<PhysicalExprRef>,
    types: Vec<DataType>,
}

impl JoinKeys {
    fn compile(on: &[(Expr, Expr)], left: &PlanSchema, right: &PlanSchema, ctx: &TaskContext) -> Result<Self> {
        if on.is_empty() {
            return internal_err!("hash join without equality keys (should be a nested loop join)");
        }
        let mut keys = JoinKeys {
            left: Vec::with_capacity(on.len()),
            right: Vec::with_capacity(on.len()),
            types: Vec::with_capacity(on.len()),
        };
        for (l, r) in on {
            let le = create_physical_expr(l, left, &ctx.functions)?;
            let re = create_physical_expr(r, right, &ctx.functions)?;
            let (lt, rt) = (le.data_type(), re.data_type());
            let Some(t) = common_type(lt, rt) else {
                return plan_err!("join key {l} ({lt}) cannot be compared with {r} ({rt})");
            };
            keys.left.push(le);
            keys.right.push(re);
            keys.types.push(t);
        }
        Ok(keys)
    }

    /// Evaluates one side's keys over `batch`, cast to the comparison types.
    fn evaluate(&self, exprs: &[PhysicalExprRef], batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
        exprs
            .iter()
            .zip(&self.types)
            .map(|(e, t)| {
                let array = e.evaluate(batch)?;
                Ok(if array.data_type() == t {
                    array
                } else {
                    cast(&array, t)?
                })
            })
            .collect()
    }
}

/// Rows whose keys are all non-NULL (`None` = every row).
fn keys_valid(keys: &[ArrayRef]) -> Option<NullBuffer> {
    keys.iter()
        .fold(None, |acc, k| NullBuffer::union(acc.as_ref(), k.logical_nulls().as_ref()))
}

fn hash_keys(keys: &[ArrayRef], rows: usize) -> Result<Vec<u64>> {
    let mut hashes = vec![0; rows];
    create_hashes(keys, &JOIN_HASH_STATE, &mut hashes)?;
    Ok(hashes)
}

/// The build side and its hash index (see the module docs).
struct JoinHashTable {
    batch: RecordBatch,
    /// The build side's key columns, cast to the comparison types.
    keys: Vec<ArrayRef>,
    /// hash → (hash, first build row with that hash).
    map: HashTable<(u64, u32)>,
    /// `next[row]` = the next row with the same hash, plus one; 0 ends the chain.
    next: Vec<u32>,
    has_null_key: bool,
}

impl JoinHashTable {
    fn try_new(batch: RecordBatch, keys: &JoinKeys) -> Result<Self> {
        let rows = batch.num_rows();
        row_count_u32(rows, "the join build side")?;
        let key_arrays = keys.evaluate(&keys.right, &batch)?;
        let hashes = hash_keys(&key_arrays, rows)?;
        let valid = keys_valid(&key_arrays);
        let mut map: HashTable<(u64, u32)> = HashTable::with_capacity(rows);
        let mut next = vec![0u32; rows];
        // Inserting from the last row makes every chain ascend, so output order follows
        // build order.
        for row in (0..rows).rev() {
            if valid.as_ref().is_some_and(|v| v.is_null(row)) {
                continue;
            }
            let hash = hashes[row];
            // `row` < rows ≤ u32::MAX, checked above.
            let row = row as u32;
            match map.find_mut(hash, |&(h, _)| h == hash) {
                Some(entry) => {
                    next[row as usize] = entry.1 + 1;
                    entry.1 = row;
                }
                None => {
                    map.insert_unique(hash, (hash, row), |&(h, _)| h);
                }
            }
        }
        Ok(JoinHashTable {
            batch,
            keys: key_arrays,
            map,
            next,
            has_null_key: valid.is_some_and(|v| v.null_count() > 0),
        })
    }

    /// The first build row whose key hash is `hash`.
    fn first(&self, hash: u64) -> Option<u32> {
        self.map.find(hash, |&(h, _)| h == hash).map(|&(_, row)| row)
    }
}

/// Where the lookup of the current probe batch stands.
struct ProbeState {
    keys: Vec<ArrayRef>,
    hashes: Vec<u64>,
    valid: Option<NullBuffer>,
    /// The probe row being looked up.
    row: usize,
    /// Continuation of `row`'s chain (build row + 1) when a chunk filled up mid-chain.
    chain: u32,
}

/// Candidate pairs from hash-table lookups, verified on key values.
struct HashPairs {
    table: JoinHashTable,
    keys: JoinKeys,
    /// NOT IN: a probe row with a NULL key is unknown, not "not in", once the set is
    /// non-empty.
    drop_null_probe_keys: bool,
    probe: Option<ProbeState>,
}

impl PairSource for HashPairs {
    fn start_batch(&mut self, batch: &RecordBatch, excluded: &mut [bool]) -> Result<()> {
        row_count_u32(batch.num_rows(), "a join probe batch")?;
        let keys = self.keys.evaluate(&self.keys.left, batch)?;
        let hashes = hash_keys(&keys, batch.num_rows())?;
        let valid = keys_valid(&keys);
        if self.drop_null_probe_keys {
            if let Some(v) = &valid {
                for (row, e) in excluded.iter_mut().enumerate() {
                    *e = v.is_null(row);
                }
            }
        }
        self.probe = Some(ProbeState {
            keys,
            hashes,
            valid,
            row: 0,
            chain: 0,
        });
        Ok(())
    }

    fn next_pairs(&mut self, limit: usize) -> Result<Option<(UInt32Array, UInt32Array)>> {
        let Some(state) = self.probe.as_mut() else {
            return internal_err!("hash join probed before a probe batch was started");
        };
        let rows = state.hashes.len();
        if state.row >= rows {
            self.probe = None;
            return Ok(None);
        }
        let table = &self.table;
        let mut probe_idx: Vec<u32> = Vec::with_capacity(limit.min(rows * 2));
        let mut build_idx: Vec<u32> = Vec::with_capacity(limit.min(rows * 2));
        'rows: while state.row < rows {
            let row = state.row;
            let mut pos = if state.chain != 0 {
                state.chain
            } else if state.valid.as_ref().is_some_and(|v| v.is_null(row)) {
                0
            } else {
                table.first(state.hashes[row]).map_or(0, |r| r + 1)
            };
            while pos != 0 {
                if probe_idx.len() >= limit {
                    state.chain = pos;
                    break 'rows;
                }
                let build_row = pos - 1;
                // `row` < rows ≤ u32::MAX, checked in `start_batch`.
                probe_idx.push(row as u32);
                build_idx.push(build_row);
                pos = table.next[build_row as usize];
            }
            state.chain = 0;
            state.row += 1;
        }
        let probe_idx = UInt32Array::from(probe_idx);
        let build_idx = UInt32Array::from(build_idx);
        verify_keys(&state.keys, &table.keys, probe_idx, build_idx).map(Some)
    }
}

/// Keeps the candidate pairs whose key values are equal (drops hash collisions).
fn verify_keys(
    probe_keys: &[ArrayRef],
    build_keys: &[ArrayRef],
    probe_idx: UInt32Array,
    build_idx: UInt32Array,
) -> Result<(UInt32Array, UInt32Array)> {
    if probe_idx.is_empty() {
        return Ok((probe_idx, build_idx));
    }
    let mut equal: Option<BooleanArray> = None;
    for (pk, bk) in probe_keys.iter().zip(build_keys) {
        let l = take(pk.as_ref(), &probe_idx, None)?;
        let r = take(bk.as_ref(), &build_idx, None)?;
        let e = eq(&l, &r)?;
        equal = Some(match equal {
            None => e,
            Some(acc) => and(&acc, &e)?,
        });
    }
    match equal {
        Some(equal) if equal.true_count() < equal.len() => {
            let p = filter(&probe_idx, &equal)?;
            let b = filter(&build_idx, &equal)?;
            match (
                p.as_any().downcast_ref::<UInt32Array>(),
                b.as_any().downcast_ref::<UInt32Array>(),
            ) {
                (Some(p), Some(b)) => Ok((p.clone(), b.clone())),
                _ => internal_err!("filtering UInt32 join indices changed their type"),
            }
        }
        _ => Ok((probe_idx, build_idx)),
    }
}
