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
//!
//! The build side is claimed from the executor's memory pool as it is read
//! ([`build_side`]). When the claim is refused, the join becomes a grace hash join
//! ([`grace`]): both inputs are hash-partitioned to disk and joined a partition at a time,
//! with the same rows (in another order) for every join type. Broadcast joins share one
//! table per stage ([`build_cache`]); each probe task charges it to its own reservation
//! while it runs — an overcount when tasks overlap, but one that ends with the tasks (the
//! cache outlives them) and errs towards spilling. A broadcast build side that does not fit
//! takes the grace path in every task that probes it.

mod build_cache;
mod build_side;
mod grace;
pub(super) mod join_stream;
#[cfg(test)]
mod spill_tests;

pub use grace::SPILL_OPERATOR;

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use arrow::buffer::NullBuffer;
use arrow::compute::kernels::cmp::eq;
use arrow::compute::{and, cast, concat_batches, filter, take};
use arrow::datatypes::DataType;
use datafusion_common::hash_utils::{create_hashes, RandomState};
use hashbrown::hash_table::Entry;
use hashbrown::HashTable;

use ember_planner::expr::Expr;
use ember_planner::logical::JoinType;
use ember_planner::physical::{ExchangeKind, JoinMode, PhysicalPlan};
use ember_planner::schema::PlanSchema;
use ember_planner::table::BatchIter;
use ember_planner::types::common_type;
use ember_planner::{internal_err, plan_err, Result};

use self::build_side::{collect_build, BuildSide};
use self::grace::{grace_join, GraceRules, GraceSpec};
use self::join_stream::{row_count_u32, JoinFilter, JoinOutput, JoinStream, PairSource};
use super::check_cancelled;
use crate::context::TaskContext;
use crate::expr::{create_physical_expr, PhysicalExprRef};
use crate::memory::MemoryReservation;
use crate::spill::{arrays_memory, batch_memory};

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

    let null_aware = *null_aware && *join_type == JoinType::LeftAnti;
    let build_partitions = match mode {
        JoinMode::Partitioned if !null_aware => vec![partition],
        // NOT IN asks about the whole set: a NULL (or any row) in another partition changes
        // this partition's answer. Reading every partition is still correct for matching:
        // equal keys hash to the same partition, so the other partitions' rows never match.
        JoinMode::Partitioned => (0..right.output_partitions()).collect(),
        JoinMode::Broadcast => broadcast_partitions(right),
    };
    let rules = GraceRules {
        join_type: *join_type,
        null_aware,
    };
    let mut reservation = ctx.memory.reservation(format!(
        "HashJoin build (task {}.{} attempt {})",
        ctx.stage, ctx.partition, ctx.attempt
    ));
    let collect = |reservation: &mut MemoryReservation| {
        collect_build(right, &build_partitions, &keys, rules, reservation, ctx)
    };
    // Every probe task of a broadcast join builds the same table: share it (see
    // `build_cache`). Retries rebuild, so recovery still reads (and checks) the shuffle.
    let build = if *mode == JoinMode::Broadcast && ctx.attempt == 0 {
        build_cache::shared_build(plan, &mut reservation, collect)?
    } else {
        collect(&mut reservation)?
    };

    let output = JoinOutput {
        join_type: *join_type,
        filter,
        schema: schema.to_arrow_ref(),
        left_width: left.schema().len(),
        batch_size: ctx.batch_size,
    };
    match build {
        BuildSide::InMemory(table) => {
            // NOT IN against a set containing NULL is never true.
            let nothing_passes = null_aware && table.has_null_key;
            let nothing_matches = table.batch.num_rows() == 0
                && matches!(
                    join_type,
                    JoinType::Inner | JoinType::LeftSemi | JoinType::Right
                );
            if nothing_passes || nothing_matches {
                return Ok(Box::new(std::iter::empty()));
            }
            let probe = super::execute(left, partition, ctx)?;
            let build = table.batch.clone();
            let pairs = HashPairs {
                drop_null_probe_keys: null_aware && build.num_rows() > 0,
                table,
                keys,
                probe: None,
            };
            let stream = JoinStream::try_new(pairs, probe, build, output)?;
            Ok(Box::new(ReleaseAtEnd {
                inner: stream,
                reservation: Some(reservation),
            }))
        }
        BuildSide::Spilled(spilled) => {
            if null_aware && spilled.has_null_key {
                return Ok(Box::new(std::iter::empty()));
            }
            let probe = super::execute(left, partition, ctx)?;
            let spec = GraceSpec {
                drop_null_probe_keys: null_aware && spilled.rows > 0,
                keys,
                rules,
                output,
                description: describe_join(*join_type, *mode, on, ctx),
            };
            grace_join(spilled, probe, spec, reservation, ctx)
        }
    }
}

/// `Inner hash join on l.a = r.b (partitioned, task 3.1)`, for errors.
fn describe_join(
    join_type: JoinType,
    mode: JoinMode,
    on: &[(Expr, Expr)],
    ctx: &TaskContext,
) -> String {
    let keys: Vec<String> = on.iter().map(|(l, r)| format!("{l} = {r}")).collect();
    let mode = match mode {
        JoinMode::Partitioned => "partitioned",
        JoinMode::Broadcast => "broadcast",
    };
    format!(
        "{join_type} hash join on {} ({mode}, task {}.{})",
        keys.join(" AND "),
        ctx.stage,
        ctx.partition
    )
}

/// Passes batches through and releases the join's reservation as soon as the last one has
/// been produced (the iterator itself may live on in its consumer).
struct ReleaseAtEnd<I> {
    inner: I,
    reservation: Option<MemoryReservation>,
}

impl<I: Iterator<Item = Result<RecordBatch>>> Iterator for ReleaseAtEnd<I> {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        let next = self.inner.next();
        if next.is_none() {
            self.reservation = None;
        }
        next
    }
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
#[derive(Clone)]
struct JoinKeys {
    left: Vec<PhysicalExprRef>,
    right: Vec<PhysicalExprRef>,
    types: Vec<DataType>,
}

impl JoinKeys {
    fn compile(
        on: &[(Expr, Expr)],
        left: &PlanSchema,
        right: &PlanSchema,
        ctx: &TaskContext,
    ) -> Result<Self> {
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
    keys.iter().fold(None, |acc, k| {
        NullBuffer::union(acc.as_ref(), k.logical_nulls().as_ref())
    })
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
    /// Bytes held: the batch, key columns that are not batch columns, and the index.
    memory: usize,
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
            // One probe per row: `entry` finds the hash's chain or the slot for a new one
            // (a lookup then an insert probed twice for every new hash).
            match map.entry(hash, |&(h, _)| h == hash, |&(h, _)| h) {
                Entry::Occupied(mut entry) => {
                    let head = entry.get_mut();
                    next[row as usize] = head.1 + 1;
                    head.1 = row;
                }
                Entry::Vacant(slot) => {
                    slot.insert((hash, row));
                }
            }
        }
        // Plain column keys share the batch's arrays; only computed or cast keys add bytes.
        let own_keys: Vec<ArrayRef> = key_arrays
            .iter()
            .filter(|k| !batch.columns().iter().any(|c| Arc::ptr_eq(c, k)))
            .cloned()
            .collect();
        let memory =
            batch_memory(&batch) + arrays_memory(&own_keys) + build_side::index_memory(rows);
        Ok(JoinHashTable {
            batch,
            keys: key_arrays,
            map,
            next,
            has_null_key: valid.is_some_and(|v| v.null_count() > 0),
            memory,
        })
    }

    /// The first build row whose key hash is `hash`.
    fn first(&self, hash: u64) -> Option<u32> {
        self.map
            .find(hash, |&(h, _)| h == hash)
            .map(|&(_, row)| row)
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
    table: Arc<JoinHashTable>,
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
        let table = self.table.as_ref();
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

#[cfg(test)]
pub(super) mod tests {
    use arrow::array::{Int32Array, Int64Array, StringArray};

    use ember_planner::expr::col;
    use ember_planner::logical::join_schema;
    use ember_planner::EmberError;

    use super::*;
    use crate::operators::test_util::*;

    /// A scan over `partitions` whose columns are qualified by `name`.
    pub(crate) fn side(name: &str, partitions: Vec<Vec<RecordBatch>>) -> Arc<PhysicalPlan> {
        let plan = mem_scan(partitions);
        let PhysicalPlan::Scan(scan) = plan.as_ref() else {
            unreachable!("mem_scan builds a scan")
        };
        let mut scan = scan.clone();
        scan.table_name = name.to_string();
        scan.schema = Arc::new(scan.schema.with_qualifier(name));
        Arc::new(PhysicalPlan::Scan(scan))
    }

    pub(super) fn ints(values: &[Option<i64>]) -> ArrayRef {
        Arc::new(Int64Array::from(values.to_vec()))
    }

    pub(super) fn strs(values: &[&str]) -> ArrayRef {
        Arc::new(StringArray::from(values.to_vec()))
    }

    pub(super) struct Join {
        pub left: Arc<PhysicalPlan>,
        pub right: Arc<PhysicalPlan>,
        pub on: Vec<(&'static str, &'static str)>,
        pub filter: Option<Expr>,
        pub join_type: JoinType,
        pub null_aware: bool,
        pub mode: JoinMode,
    }

    impl Join {
        pub fn new(left: Arc<PhysicalPlan>, right: Arc<PhysicalPlan>, join_type: JoinType) -> Self {
            Join {
                left,
                right,
                on: vec![("l.a", "r.b")],
                filter: None,
                join_type,
                null_aware: false,
                mode: JoinMode::Partitioned,
            }
        }

        pub fn plan(&self) -> Arc<PhysicalPlan> {
            let schema = join_schema(self.left.schema(), self.right.schema(), self.join_type);
            Arc::new(PhysicalPlan::HashJoin {
                left: self.left.clone(),
                right: self.right.clone(),
                on: self.on.iter().map(|(l, r)| (col(l), col(r))).collect(),
                filter: self.filter.clone(),
                join_type: self.join_type,
                null_aware: self.null_aware,
                mode: self.mode,
                schema: Arc::new(schema),
            })
        }

        fn run_partition(&self, partition: usize, batch_size: usize) -> Result<Vec<RecordBatch>> {
            let ctx = test_ctx_with_batch_size(batch_size);
            self.run_with(partition, &ctx)
        }

        pub fn run_with(
            &self,
            partition: usize,
            ctx: &Arc<TaskContext>,
        ) -> Result<Vec<RecordBatch>> {
            execute_hash_join(&self.plan(), partition, ctx)?.collect()
        }

        fn run(&self) -> Vec<String> {
            pretty(&self.run_partition(0, 8192).unwrap())
        }
    }

    /// l(a, x): keys 1, 2, NULL, 3, 2 in two batches.
    fn left() -> Arc<PhysicalPlan> {
        side(
            "l",
            vec![vec![
                batch(vec![
                    ("a", ints(&[Some(1), Some(2), None])),
                    ("x", strs(&["l1", "l2", "lnull"])),
                ]),
                batch(vec![
                    ("a", ints(&[Some(3), Some(2)])),
                    ("x", strs(&["l3", "l2b"])),
                ]),
            ]],
        )
    }

    /// r(b, y): keys 2, 4, 2, NULL.
    fn right() -> Arc<PhysicalPlan> {
        side(
            "r",
            vec![vec![batch(vec![
                ("b", ints(&[Some(2), Some(4), Some(2), None])),
                ("y", strs(&["r2", "r4", "r2b", "rnull"])),
            ])]],
        )
    }

    #[test]
    fn inner_join_pairs_equal_keys_in_probe_then_build_order() {
        let out = Join::new(left(), right(), JoinType::Inner).run();
        assert_eq!(
            out,
            vec![
                "+---+-----+---+-----+",
                "| a | x   | b | y   |",
                "+---+-----+---+-----+",
                "| 2 | l2  | 2 | r2  |",
                "| 2 | l2  | 2 | r2b |",
                "| 2 | l2b | 2 | r2  |",
                "| 2 | l2b | 2 | r2b |",
                "+---+-----+---+-----+",
            ]
        );
    }

    #[test]
    fn chains_of_matches_longer_than_a_chunk_continue_in_build_order() {
        let left = side(
            "l",
            vec![vec![batch(vec![
                ("a", ints(&[Some(7), Some(1), Some(7), Some(5)])),
                ("x", strs(&["p", "q", "s", "t"])),
            ])]],
        );
        // Key 7 has five rows, 1 two, 5 one; a NULL key is in no chain.
        let keys = [7, 1, 7, 0, 7, 7, 1, 7, 5].map(|k| (k != 0).then_some(k));
        let right = side(
            "r",
            vec![vec![batch(vec![
                ("b", ints(&keys)),
                ("y", strs(&["a", "b", "c", "d", "e", "f", "g", "h", "i"])),
            ])]],
        );
        let join = Join::new(left, right, JoinType::Inner);
        // Chunks of two pairs: chains are cut and resumed.
        let out = join.run_partition(0, 2).unwrap();
        let pairs: Vec<String> = pretty(&out)[3..]
            .iter()
            .filter(|l| l.starts_with("| "))
            .map(|l| l.split('|').map(str::trim).collect::<Vec<_>>().join(" "))
            .collect();
        let want: Vec<String> = [
            "p a", "p c", "p e", "p f", "p h", "q b", "q g", "s a", "s c", "s e", "s f", "s h",
            "t i",
        ]
        .iter()
        .map(|p| {
            let (x, y) = p.split_once(' ').unwrap();
            let key = match x {
                "q" => 1,
                "t" => 5,
                _ => 7,
            };
            format!(" {key} {x} {key} {y} ")
        })
        .collect();
        assert_eq!(pairs, want);
    }

    #[test]
    fn left_join_pads_unmatched_and_null_key_rows_with_nulls() {
        let out = Join::new(left(), right(), JoinType::Left).run();
        assert_eq!(
            out,
            vec![
                "+---+-------+---+-----+",
                "| a | x     | b | y   |",
                "+---+-------+---+-----+",
                "| 2 | l2    | 2 | r2  |",
                "| 2 | l2    | 2 | r2b |",
                "| 1 | l1    |   |     |",
                "|   | lnull |   |     |",
                "| 2 | l2b   | 2 | r2  |",
                "| 2 | l2b   | 2 | r2b |",
                "| 3 | l3    |   |     |",
                "+---+-------+---+-----+",
            ]
        );
    }

    #[test]
    fn right_and_full_joins_emit_unmatched_build_rows_last() {
        let right_out = Join::new(left(), right(), JoinType::Right).run();
        assert_eq!(
            right_out[3..],
            [
                "| 2 | l2  | 2 | r2    |",
                "| 2 | l2  | 2 | r2b   |",
                "| 2 | l2b | 2 | r2    |",
                "| 2 | l2b | 2 | r2b   |",
                "|   |     | 4 | r4    |",
                "|   |     |   | rnull |",
                "+---+-----+---+-------+",
            ]
        );
        let full_out = Join::new(left(), right(), JoinType::Full).run();
        assert_eq!(
            full_out[3..],
            [
                "| 2 | l2    | 2 | r2    |",
                "| 2 | l2    | 2 | r2b   |",
                "| 1 | l1    |   |       |",
                "|   | lnull |   |       |",
                "| 2 | l2b   | 2 | r2    |",
                "| 2 | l2b   | 2 | r2b   |",
                "| 3 | l3    |   |       |",
                "|   |       | 4 | r4    |",
                "|   |       |   | rnull |",
                "+---+-------+---+-------+",
            ]
        );
    }

    #[test]
    fn semi_and_anti_joins_keep_left_rows_once() {
        let semi = Join::new(left(), right(), JoinType::LeftSemi).run();
        assert_eq!(semi[3..], ["| 2 | l2  |", "| 2 | l2b |", "+---+-----+"]);
        let anti = Join::new(left(), right(), JoinType::LeftAnti).run();
        assert_eq!(
            anti[3..],
            [
                "| 1 | l1    |",
                "|   | lnull |",
                "| 3 | l3    |",
                "+---+-------+"
            ]
        );
    }

    #[test]
    fn null_aware_anti_join_follows_not_in_semantics() {
        // The build side holds a NULL: `x NOT IN (2, 4, 2, NULL)` is never true.
        let mut join = Join::new(left(), right(), JoinType::LeftAnti);
        join.null_aware = true;
        assert_eq!(row_count(&join.run_partition(0, 8192).unwrap()), 0);

        // No NULL in the set: the NULL probe key is unknown, so that row is dropped.
        let no_null = side("r", vec![vec![batch(vec![("b", ints(&[Some(2)]))])]]);
        join.right = no_null;
        let out = join.run();
        assert_eq!(out[3..], ["| 1 | l1 |", "| 3 | l3 |", "+---+----+"]);

        // An empty set: every row is NOT IN it, NULL keys included.
        let empty = side("r", vec![vec![batch(vec![("b", ints(&[]))])]]);
        join.right = empty;
        assert_eq!(row_count(&join.run_partition(0, 8192).unwrap()), 5);
    }

    #[test]
    fn partitioned_null_aware_anti_join_sees_the_whole_build_side() {
        let left = side(
            "l",
            vec![
                vec![batch(vec![("a", ints(&[Some(1), None]))])],
                vec![batch(vec![("a", ints(&[Some(2)]))])],
            ],
        );
        let null_elsewhere = side(
            "r",
            vec![
                vec![batch(vec![("b", ints(&[]))])],
                vec![batch(vec![("b", ints(&[None]))])],
            ],
        );
        let mut join = Join::new(left.clone(), null_elsewhere, JoinType::LeftAnti);
        join.null_aware = true;
        assert_eq!(row_count(&join.run_partition(0, 8192).unwrap()), 0);

        // Partition 0's build part is empty but the set is not: the NULL probe key is
        // dropped, 1 is kept.
        join.right = side(
            "r",
            vec![
                vec![batch(vec![("b", ints(&[]))])],
                vec![batch(vec![("b", ints(&[Some(2)]))])],
            ],
        );
        let out = join.run_partition(0, 8192).unwrap();
        assert_eq!(int_column(&out, 0), vec![Some(1)]);
    }

    #[test]
    fn multi_column_keys_of_different_types_are_compared_as_a_common_type() {
        let left = side(
            "l",
            vec![vec![batch(vec![
                ("a", Arc::new(Int32Array::from(vec![1, 1, 2])) as ArrayRef),
                ("s", strs(&["x", "y", "x"])),
            ])]],
        );
        let right = side(
            "r",
            vec![vec![batch(vec![
                ("b", ints(&[Some(1), Some(2), Some(1)])),
                ("t", strs(&["y", "x", "x"])),
            ])]],
        );
        let mut join = Join::new(left, right, JoinType::Inner);
        join.on = vec![("l.a", "r.b"), ("l.s", "r.t")];
        let out = join.run();
        assert_eq!(
            out[3..],
            [
                "| 1 | x | 1 | x |",
                "| 1 | y | 1 | y |",
                "| 2 | x | 2 | x |",
                "+---+---+---+---+",
            ]
        );
    }

    #[test]
    fn incomparable_key_types_are_a_plan_error() {
        let right = side(
            "r",
            vec![vec![batch(vec![(
                "b",
                Arc::new(arrow::array::BooleanArray::from(vec![true])) as ArrayRef,
            )])]],
        );
        let right_date = side(
            "r",
            vec![vec![batch(vec![(
                "b",
                Arc::new(arrow::array::Date32Array::from(vec![1])) as ArrayRef,
            )])]],
        );
        let mut join = Join::new(right_date, right, JoinType::Inner);
        join.on = vec![("r.b", "r.b")];
        // Both sides are named `r`, but each key resolves against its own side.
        let err = join.run_partition(0, 8192).unwrap_err();
        assert!(matches!(err, EmberError::Plan(_)), "{err}");
        assert!(err.to_string().contains("cannot be compared"), "{err}");
    }

    /// r(b, ok): the filter is the boolean column `r.ok`, so it reads the right half of
    /// the joined row.
    fn filtered_right() -> Arc<PhysicalPlan> {
        side(
            "r",
            vec![vec![batch(vec![
                ("b", ints(&[Some(2), Some(2), Some(3), Some(5)])),
                (
                    "ok",
                    Arc::new(arrow::array::BooleanArray::from(vec![
                        Some(false),
                        Some(true),
                        None,
                        Some(true),
                    ])) as ArrayRef,
                ),
            ])]],
        )
    }

    #[test]
    fn filter_decides_matches_for_every_join_type() {
        let run = |join_type| {
            let mut join = Join::new(left(), filtered_right(), join_type);
            join.filter = Some(col("r.ok"));
            join.run()
        };
        // Only build row 1 (b=2, ok=true) passes; b=3 fails (NULL counts as false).
        assert_eq!(
            run(JoinType::Inner)[3..],
            [
                "| 2 | l2  | 2 | true |",
                "| 2 | l2b | 2 | true |",
                "+---+-----+---+------+"
            ]
        );
        let left_out = run(JoinType::Left);
        assert_eq!(
            left_out[3..],
            [
                "| 2 | l2    | 2 | true |",
                "| 1 | l1    |   |      |",
                "|   | lnull |   |      |",
                "| 2 | l2b   | 2 | true |",
                "| 3 | l3    |   |      |",
                "+---+-------+---+------+",
            ]
        );
        let right_out = run(JoinType::Right);
        assert_eq!(
            right_out[3..],
            [
                "| 2 | l2  | 2 | true  |",
                "| 2 | l2b | 2 | true  |",
                "|   |     | 2 | false |",
                "|   |     | 3 |       |",
                "|   |     | 5 | true  |",
                "+---+-----+---+-------+",
            ]
        );
        assert_eq!(
            run(JoinType::LeftSemi)[3..],
            ["| 2 | l2  |", "| 2 | l2b |", "+---+-----+"]
        );
        assert_eq!(
            run(JoinType::LeftAnti)[3..],
            [
                "| 1 | l1    |",
                "|   | lnull |",
                "| 3 | l3    |",
                "+---+-------+"
            ]
        );
    }

    #[test]
    fn filter_comparing_both_sides_keeps_other_suppliers_only() {
        // TPC-H Q21's shape: EXISTS (... l2.orderkey = l1.orderkey AND l2.supp <> l1.supp).
        let l1 = side(
            "l1",
            vec![vec![batch(vec![
                ("okey", ints(&[Some(1), Some(1), Some(2)])),
                ("supp", ints(&[Some(10), Some(11), Some(10)])),
            ])]],
        );
        let l2 = side(
            "l2",
            vec![vec![batch(vec![
                ("okey", ints(&[Some(1), Some(2)])),
                ("supp", ints(&[Some(10), Some(10)])),
            ])]],
        );
        let mut join = Join::new(l1, l2, JoinType::LeftSemi);
        join.on = vec![("l1.okey", "l2.okey")];
        join.filter = Some(col("l2.supp").not_eq(col("l1.supp")));
        let out = join.run_partition(0, 8192).unwrap();
        assert_eq!(int_column(&out, 1), vec![Some(11)]);
    }

    #[test]
    fn small_batch_size_splits_chains_without_changing_rows() {
        // 3 probe rows × 3 build rows with the same key: 9 pairs, 2 per chunk.
        let sevens = || ints(&[Some(7), Some(7), Some(7)]);
        let left = side("l", vec![vec![batch(vec![("a", sevens())])]]);
        // Distinct build payloads `n` show the build order within each probe row.
        let payload = ints(&[Some(0), Some(1), Some(2)]);
        let right = side(
            "r",
            vec![vec![batch(vec![("b", sevens()), ("n", payload)])]],
        );
        let join = Join::new(left, right, JoinType::Inner);
        let small = join.run_partition(0, 2).unwrap();
        assert!(small.iter().all(|b| b.num_rows() <= 2));
        assert_eq!(
            int_column(&small, 2),
            int_column(&join.run_partition(0, 8192).unwrap(), 2)
        );
        assert_eq!(
            int_column(&small, 2),
            [0, 1, 2, 0, 1, 2, 0, 1, 2].map(Some).to_vec()
        );
    }

    fn two_partition_right() -> Arc<PhysicalPlan> {
        side(
            "r",
            vec![
                vec![batch(vec![
                    ("b", ints(&[Some(1)])),
                    ("p", ints(&[Some(0)])),
                ])],
                vec![batch(vec![
                    ("b", ints(&[Some(1)])),
                    ("p", ints(&[Some(1)])),
                ])],
            ],
        )
    }

    fn two_partition_left() -> Arc<PhysicalPlan> {
        side(
            "l",
            vec![
                vec![batch(vec![("a", ints(&[Some(1)]))])],
                vec![batch(vec![("a", ints(&[Some(1)]))])],
            ],
        )
    }

    #[test]
    fn partitioned_mode_builds_from_the_same_right_partition() {
        let join = Join::new(two_partition_left(), two_partition_right(), JoinType::Inner);
        let out = join.run_partition(1, 8192).unwrap();
        assert_eq!(int_column(&out, 2), vec![Some(1)]);
    }

    #[test]
    fn broadcast_mode_builds_from_every_right_partition_once() {
        let mut join = Join::new(two_partition_left(), two_partition_right(), JoinType::Inner);
        join.mode = JoinMode::Broadcast;
        let out = join.run_partition(1, 8192).unwrap();
        assert_eq!(int_column(&out, 2), vec![Some(0), Some(1)]);

        // Through a broadcast Exchange, every partition already holds all rows.
        join.right = Arc::new(PhysicalPlan::Exchange {
            input: two_partition_right(),
            kind: ExchangeKind::Broadcast,
        });
        let out = join.run_partition(0, 8192).unwrap();
        assert_eq!(int_column(&out, 2), vec![Some(0), Some(1)]);
    }

    #[test]
    fn broadcast_probe_tasks_share_one_build_and_retries_rebuild() {
        let mut join = Join::new(two_partition_left(), two_partition_right(), JoinType::Inner);
        join.mode = JoinMode::Broadcast;
        let plan = join.plan();
        let run = |partition: usize, attempt: usize| {
            let mut ctx = test_ctx_with_batch_size(8192);
            Arc::get_mut(&mut ctx).expect("fresh context").attempt = attempt;
            let out: Vec<RecordBatch> = execute_hash_join(&plan, partition, &ctx)
                .unwrap()
                .collect::<Result<_>>()
                .unwrap();
            int_column(&out, 2)
        };
        // A retry does not populate the cache.
        assert_eq!(run(0, 1), vec![Some(0), Some(1)]);
        assert!(!build_cache::is_cached(&plan));
        assert_eq!(run(0, 0), vec![Some(0), Some(1)]);
        assert!(build_cache::is_cached(&plan));
        assert_eq!(run(1, 0), vec![Some(0), Some(1)]);
        // Partitioned joins build per partition and never share.
        let partitioned = Join::new(two_partition_left(), two_partition_right(), JoinType::Inner);
        let plan = partitioned.plan();
        let ctx = test_ctx_with_batch_size(8192);
        execute_hash_join(&plan, 0, &ctx).unwrap().for_each(drop);
        assert!(!build_cache::is_cached(&plan));
    }

    #[test]
    fn broadcast_right_join_is_rejected() {
        let mut join = Join::new(left(), right(), JoinType::Full);
        join.mode = JoinMode::Broadcast;
        let err = join.run_partition(0, 8192).unwrap_err();
        assert!(matches!(err, EmberError::Internal(_)), "{err}");
    }

    #[test]
    fn hash_collisions_are_dropped_by_key_verification() {
        let probe: Vec<ArrayRef> = vec![ints(&[Some(1), Some(2)])];
        let build: Vec<ArrayRef> = vec![ints(&[Some(2), Some(1)])];
        // As if every key had hashed alike: all four pairs are candidates.
        let (p, b) = verify_keys(
            &probe,
            &build,
            UInt32Array::from(vec![0, 0, 1, 1]),
            UInt32Array::from(vec![0, 1, 0, 1]),
        )
        .unwrap();
        assert_eq!(p.values().to_vec(), vec![0, 1]);
        assert_eq!(b.values().to_vec(), vec![1, 0]);
    }

    #[test]
    fn empty_build_side_joins_nothing_but_keeps_left_rows_for_outer_joins() {
        let empty = side(
            "r",
            vec![vec![batch(vec![("b", ints(&[])), ("y", strs(&[]))])]],
        );
        let inner = Join::new(left(), empty.clone(), JoinType::Inner);
        assert_eq!(row_count(&inner.run_partition(0, 8192).unwrap()), 0);
        let outer = Join::new(left(), empty.clone(), JoinType::Left);
        assert_eq!(row_count(&outer.run_partition(0, 8192).unwrap()), 5);
        let anti = Join::new(left(), empty, JoinType::LeftAnti);
        assert_eq!(row_count(&anti.run_partition(0, 8192).unwrap()), 5);
    }
}
