//! Stable fingerprints of physical plans and stages.
//!
//! A checkpoint written by one run may be read by a later one (a restarted application
//! resumes where its checkpoints are), so it must be reused only when the plan that made it
//! *and* the data that plan read are unchanged. The fingerprint therefore covers every node's
//! structure, expressions (their Display text), schemas (names, types, nullability) and, for
//! scans, [`TableSource::identity`](crate::table::TableSource::identity) — paths, sizes and
//! modification times — plus the partition descriptions.
//!
//! Fingerprints must mean the same thing in another process, so they are FNV-1a over a
//! canonical byte encoding, never `std`'s randomly seeded hasher.
//!
//! Plans are DAGs that iterative jobs make 1,000+ levels deep: [`PlanFingerprinter`] walks
//! them with an explicit stack and memoises by node identity, so each distinct node is hashed
//! once and a shared node costs nothing the second time.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::sync::Arc;

use crate::error::{EmberError, Result};
use crate::physical::{ExchangeKind, PhysicalPlan};
use crate::schema::PlanSchema;
use crate::stages::{StageGraph, StageOutput};

/// A 64-bit plan fingerprint. Displayed as 16 hex digits (the form stored in manifests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub u64);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl Fingerprint {
    /// Parses the 16-hex-digit form written by `Display` (e.g. from a checkpoint manifest).
    pub fn parse(s: &str) -> Result<Fingerprint> {
        u64::from_str_radix(s.trim(), 16)
            .map(Fingerprint)
            .map_err(|e| EmberError::Execution(format!("invalid plan fingerprint '{s}': {e}")))
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
/// Ends every string field. UTF-8 text never contains 0xff, so `("ab","c")` and
/// `("a","bc")` encode differently.
const STRING_END: u8 = 0xff;

/// FNV-1a, 64 bit: tiny, fixed, and identical in every process and on every platform
/// (integers are fed little-endian).
#[derive(Debug, Clone)]
pub struct Fnv1a64(u64);

impl Default for Fnv1a64 {
    fn default() -> Self {
        Fnv1a64(FNV_OFFSET)
    }
}

impl Fnv1a64 {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn bytes(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(FNV_PRIME);
        }
    }

    pub fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }

    pub fn usize(&mut self, v: usize) {
        self.u64(v as u64);
    }

    /// A string field, terminated so that adjacent fields cannot run into each other.
    pub fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
        self.bytes(&[STRING_END]);
    }

    /// The Display text of `v` as one string field, without allocating it.
    pub fn display(&mut self, v: &dyn fmt::Display) {
        // Writing into the hasher cannot fail.
        let _ = write!(self, "{v}");
        self.bytes(&[STRING_END]);
    }

    /// A list of Display values, prefixed by its length.
    pub fn display_list<T: fmt::Display>(&mut self, items: &[T]) {
        self.usize(items.len());
        for item in items {
            self.display(item);
        }
    }

    pub fn finish(&self) -> Fingerprint {
        Fingerprint(self.0)
    }
}

impl fmt::Write for Fnv1a64 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.bytes(s.as_bytes());
        Ok(())
    }
}

/// Hashes a schema: qualifier, name, type and nullability of every field, in order.
fn hash_schema(h: &mut Fnv1a64, schema: &PlanSchema) {
    h.usize(schema.fields().len());
    for f in schema.fields() {
        match &f.qualifier {
            Some(q) => {
                h.bytes(&[1]);
                h.str(q);
            }
            None => h.bytes(&[0]),
        }
        h.str(f.name());
        // Debug is exact (e.g. `Decimal128(15, 2)`, `Timestamp(Microsecond, None)`).
        let _ = write!(h, "{:?}", f.data_type());
        h.bytes(&[STRING_END]);
        h.bytes(&[u8::from(f.field.is_nullable())]);
    }
}

fn hash_exchange_kind(h: &mut Fnv1a64, kind: &ExchangeKind) {
    // Display carries the variant, keys (for Range: with direction and null placement)
    // and partition count.
    h.display(kind);
}

fn hash_opt_usize(h: &mut Fnv1a64, v: Option<usize>) {
    match v {
        Some(n) => {
            h.bytes(&[1]);
            h.usize(n);
        }
        None => h.bytes(&[0]),
    }
}

/// Computes fingerprints of physical plan nodes, memoised by node identity.
///
/// The memo keeps every hashed node alive, so a node address can never be reused by a
/// different node while this fingerprinter exists.
#[derive(Default)]
pub struct PlanFingerprinter {
    memo: HashMap<*const PhysicalPlan, (Arc<PhysicalPlan>, Fingerprint)>,
    /// Fingerprints of stages, substituted for `ShuffleRead { stage }` so a stage's
    /// fingerprint depends on what its parents compute, not on how stages are numbered.
    stage_fingerprints: HashMap<usize, Fingerprint>,
}

impl PlanFingerprinter {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many distinct nodes have been hashed (each exactly once).
    pub fn nodes_hashed(&self) -> usize {
        self.memo.len()
    }

    /// Makes `ShuffleRead { stage: id }` hash as the fingerprint of stage `id`.
    pub fn set_stage_fingerprint(&mut self, id: usize, fp: Fingerprint) {
        self.stage_fingerprints.insert(id, fp);
    }

    /// The fingerprint of `plan` and its whole input subtree. Iterative post-order: never
    /// recurses, whatever the plan's depth.
    pub fn fingerprint(&mut self, plan: &Arc<PhysicalPlan>) -> Fingerprint {
        if let Some((_, fp)) = self.memo.get(&Arc::as_ptr(plan)) {
            return *fp;
        }
        let mut stack: Vec<(Arc<PhysicalPlan>, bool)> = vec![(Arc::clone(plan), false)];
        while let Some((node, inputs_done)) = stack.pop() {
            let key = Arc::as_ptr(&node);
            if self.memo.contains_key(&key) {
                continue;
            }
            if inputs_done {
                let fp = self.hash_node(&node);
                self.memo.insert(key, (node, fp));
            } else {
                let pending: Vec<Arc<PhysicalPlan>> = node
                    .inputs()
                    .into_iter()
                    .filter(|i| !self.memo.contains_key(&Arc::as_ptr(i)))
                    .cloned()
                    .collect();
                stack.push((node, true));
                stack.extend(pending.into_iter().map(|i| (i, false)));
            }
        }
        self.memo
            .get(&Arc::as_ptr(plan))
            .map(|(_, fp)| *fp)
            .unwrap_or(Fingerprint(FNV_OFFSET))
    }

    /// A reference to another stage's output: its fingerprint when known, else its id.
    fn hash_stage_ref(&self, h: &mut Fnv1a64, stage: usize) {
        match self.stage_fingerprints.get(&stage) {
            Some(fp) => {
                h.bytes(&[1]);
                h.u64(fp.0);
            }
            None => {
                h.bytes(&[0]);
                h.usize(stage);
            }
        }
    }

    /// Hashes one node whose inputs are all memoised.
    fn hash_node(&self, node: &PhysicalPlan) -> Fingerprint {
        let mut h = Fnv1a64::new();
        match node {
            PhysicalPlan::Scan(s) => {
                h.str("Scan");
                h.str(&s.table_name);
                h.str(s.source.kind());
                h.str(&s.source.identity());
                match &s.projection {
                    Some(p) => {
                        h.bytes(&[1]);
                        h.usize(p.len());
                        p.iter().for_each(|i| h.usize(*i));
                    }
                    None => h.bytes(&[0]),
                }
                h.display_list(&s.filters);
                h.usize(s.partitions.len());
                for p in &s.partitions {
                    h.str(&p.describe());
                }
            }
            PhysicalPlan::Values { rows, .. } => {
                h.str("Values");
                h.usize(rows.len());
                for row in rows {
                    h.display_list(row);
                }
            }
            PhysicalPlan::Filter { predicate, .. } => {
                h.str("Filter");
                h.display(predicate);
            }
            PhysicalPlan::DynamicFilter {
                keys, source_keys, ..
            } => {
                h.str("DynamicFilter");
                h.display_list(keys);
                h.display_list(source_keys);
            }
            PhysicalPlan::Projection { exprs, .. } => {
                h.str("Projection");
                h.display_list(exprs);
            }
            PhysicalPlan::HashAggregate {
                mode,
                group_exprs,
                aggr_exprs,
                aggr_input_schema,
                ..
            } => {
                h.str("HashAggregate");
                let _ = write!(h, "{mode:?}");
                h.bytes(&[STRING_END]);
                h.display_list(group_exprs);
                h.display_list(aggr_exprs);
                hash_schema(&mut h, aggr_input_schema);
            }
            PhysicalPlan::HashJoin {
                on,
                filter,
                join_type,
                null_aware,
                mode,
                ..
            } => {
                h.str("HashJoin");
                h.usize(on.len());
                for (l, r) in on {
                    h.display(l);
                    h.display(r);
                }
                h.display_list(filter.as_slice());
                h.display(join_type);
                h.bytes(&[u8::from(*null_aware)]);
                let _ = write!(h, "{mode:?}");
                h.bytes(&[STRING_END]);
            }
            PhysicalPlan::NestedLoopJoin {
                filter, join_type, ..
            } => {
                h.str("NestedLoopJoin");
                h.display_list(filter.as_slice());
                h.display(join_type);
            }
            PhysicalPlan::Sort { exprs, fetch, .. } => {
                h.str("Sort");
                h.display_list(exprs);
                hash_opt_usize(&mut h, *fetch);
            }
            PhysicalPlan::Limit { skip, fetch, .. } => {
                h.str("Limit");
                h.usize(*skip);
                hash_opt_usize(&mut h, *fetch);
            }
            PhysicalPlan::Union { .. } => h.str("Union"),
            PhysicalPlan::Unnest { column, .. } => {
                h.str("Unnest");
                h.usize(*column);
            }
            PhysicalPlan::Exchange { kind, .. } => {
                h.str("Exchange");
                hash_exchange_kind(&mut h, kind);
            }
            PhysicalPlan::ShuffleRead {
                stage,
                kind,
                map_partitions,
                partitions,
                ..
            } => {
                h.str("ShuffleRead");
                self.hash_stage_ref(&mut h, *stage);
                hash_exchange_kind(&mut h, kind);
                h.usize(*map_partitions);
                h.usize(*partitions);
            }
            // Persist ids are per session; a checkpoint is found again in a later session by
            // what it computes, so only the mode is hashed.
            PhysicalPlan::Persist { mode, .. } => {
                h.str("Persist");
                h.display(mode);
            }
            PhysicalPlan::PersistRead {
                stage,
                mode,
                partitions,
                ..
            } => {
                h.str("PersistRead");
                self.hash_stage_ref(&mut h, *stage);
                h.display(mode);
                h.usize(*partitions);
            }
            // Operators without a dedicated arm (added after this module) are hashed by
            // their EXPLAIN line, which names every parameter of the node.
            #[allow(unreachable_patterns)]
            other => {
                h.str("Node");
                h.str(&other.describe_node());
            }
        }
        hash_schema(&mut h, node.schema());
        let inputs = node.inputs();
        h.usize(inputs.len());
        for input in inputs {
            let fp = self
                .memo
                .get(&Arc::as_ptr(input))
                .map(|(_, fp)| *fp)
                .unwrap_or(Fingerprint(FNV_OFFSET));
            h.u64(fp.0);
        }
        h.finish()
    }
}

/// The fingerprint of one plan (a fresh memo; use [`PlanFingerprinter`] to share one).
pub fn plan_fingerprint(plan: &Arc<PhysicalPlan>) -> Fingerprint {
    PlanFingerprinter::new().fingerprint(plan)
}

/// The fingerprint of every stage, in the graph's order: its map-side plan (with each
/// `ShuffleRead` standing for its parent stage's fingerprint), its output and its parents'
/// fingerprints. Two stages get the same fingerprint only if they compute the same rows from
/// the same inputs, whatever their ids. Stages must be in topological order.
pub fn stage_fingerprints(graph: &StageGraph) -> Result<Vec<(usize, Fingerprint)>> {
    Ok(fingerprint_stages(graph)?
        .into_iter()
        .map(|(id, stage, _)| (id, stage))
        .collect())
}

/// Per stage, in the graph's order, the fingerprint of the persisted plan it keeps (see
/// `Stage::persist`), if any: what names a reliable checkpoint in the store. A checkpoint
/// teed into its reader's stage gets the fingerprint its own persist stage would have had,
/// so the same rows are found whichever way a plan was cut.
pub fn persist_fingerprints(graph: &StageGraph) -> Result<Vec<Option<Fingerprint>>> {
    Ok(fingerprint_stages(graph)?
        .into_iter()
        .map(|(_, _, kept)| kept)
        .collect())
}

fn fingerprint_stages(
    graph: &StageGraph,
) -> Result<Vec<(usize, Fingerprint, Option<Fingerprint>)>> {
    let mut fp = PlanFingerprinter::new();
    let mut out = Vec::with_capacity(graph.stages.len());
    for stage in &graph.stages {
        let mut parents = Vec::with_capacity(stage.parents.len());
        for parent in &stage.parents {
            let parent_fp = fp.stage_fingerprints.get(parent).copied().ok_or_else(|| {
                EmberError::Internal(format!(
                    "stage {} reads stage {parent}, which does not come before it in the stage graph",
                    stage.id
                ))
            })?;
            parents.push(parent_fp);
        }
        let plan_fp = fp.fingerprint(&stage.plan);
        let stage_fp = hash_stage(&parents, plan_fp, &stage.output, stage.partitions);
        let kept_fp = match &stage.tee {
            Some(tee) => {
                let own_stage = StageOutput::Persist {
                    id: tee.id,
                    mode: tee.mode,
                };
                let input_fp = fp.fingerprint(&tee.input);
                Some(hash_stage(&parents, input_fp, &own_stage, stage.partitions))
            }
            None => stage.persist().map(|_| stage_fp),
        };
        fp.set_stage_fingerprint(stage.id, stage_fp);
        out.push((stage.id, stage_fp, kept_fp));
    }
    Ok(out)
}

/// A stage's fingerprint from its parents' fingerprints, its plan's, its output and its
/// partition count.
fn hash_stage(
    parents: &[Fingerprint],
    plan: Fingerprint,
    output: &StageOutput,
    partitions: usize,
) -> Fingerprint {
    let mut h = Fnv1a64::new();
    h.str("Stage");
    h.usize(parents.len());
    for parent in parents {
        h.u64(parent.0);
    }
    h.u64(plan.0);
    match output {
        StageOutput::Shuffle(kind) => {
            h.str("shuffle");
            hash_exchange_kind(&mut h, kind);
        }
        StageOutput::Persist { mode, .. } => {
            h.str("persist");
            h.display(mode);
        }
        StageOutput::Result => h.str("result"),
    }
    h.usize(partitions);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::{col, lit};
    use crate::lineage::test_util::{chain, drop_deep, exchange, filter, scan, shuffle_read};
    use crate::physical::ExchangeKind;
    use crate::stages::build_stage_graph;

    fn fnv(s: &str) -> u64 {
        let mut h = Fnv1a64::new();
        h.bytes(s.as_bytes());
        h.finish().0
    }

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        // From the FNV reference test suite: the algorithm, and so every stored fingerprint,
        // is the same in every process.
        assert_eq!(fnv(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv("foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn fingerprints_round_trip_through_text() {
        let fp = Fingerprint(0x0123_4567_89ab_cdef);
        assert_eq!(fp.to_string(), "0123456789abcdef");
        assert_eq!(Fingerprint::parse("0123456789abcdef").unwrap(), fp);
        assert!(Fingerprint::parse("not hex").is_err());
    }

    fn query(identity: &str, threshold: i64) -> Arc<PhysicalPlan> {
        let s = scan(identity, Some(100), 2);
        let f = filter(s, col("t.a").gt(lit(threshold)));
        exchange(f, ExchangeKind::Hash(vec![col("t.a")], 4))
    }

    #[test]
    fn equal_plans_have_equal_fingerprints() {
        // Built twice: no shared nodes, same content.
        assert_eq!(
            plan_fingerprint(&query("t@v1", 1)),
            plan_fingerprint(&query("t@v1", 1))
        );
    }

    #[test]
    fn a_changed_literal_changes_the_fingerprint() {
        assert_ne!(
            plan_fingerprint(&query("t@v1", 1)),
            plan_fingerprint(&query("t@v1", 2))
        );
    }

    #[test]
    fn a_changed_input_identity_changes_the_fingerprint() {
        // Same plan, but a file of the table changed (size or mtime in the identity).
        assert_ne!(
            plan_fingerprint(&query("t@v1", 1)),
            plan_fingerprint(&query("t@v2", 1))
        );
    }

    #[test]
    fn exchange_kind_and_partitioning_are_part_of_the_fingerprint() {
        let s = scan("t@v1", Some(100), 2);
        let four = exchange(Arc::clone(&s), ExchangeKind::RoundRobin(4));
        let eight = exchange(Arc::clone(&s), ExchangeKind::RoundRobin(8));
        assert_ne!(plan_fingerprint(&four), plan_fingerprint(&eight));
        assert_ne!(
            plan_fingerprint(&scan("t@v1", Some(100), 2)),
            plan_fingerprint(&scan("t@v1", Some(100), 3))
        );
    }

    #[test]
    fn range_exchange_direction_and_null_placement_are_part_of_the_fingerprint() {
        let s = scan("t@v1", Some(100), 2);
        let range = |asc, nulls_first| {
            let sort = vec![col("t.a").sort(asc, nulls_first)];
            plan_fingerprint(&exchange(
                Arc::clone(&s),
                ExchangeKind::Range {
                    sort,
                    partitions: 4,
                },
            ))
        };
        assert_ne!(range(true, true), range(false, true));
        assert_ne!(range(true, true), range(true, false));
        assert_eq!(range(true, true), range(true, true));
    }

    #[test]
    fn a_deep_shared_dag_is_hashed_once_per_node_without_recursion() {
        // Each level filters the union of the previous level with itself: 2^2000 paths,
        // 4,001 distinct nodes. A recursive or unmemoised walk would overflow the test
        // thread's stack or never finish.
        let levels = 2000;
        let mut plan = scan("t@v1", Some(10), 1);
        for i in 0..levels {
            let union = Arc::new(PhysicalPlan::Union {
                schema: Arc::clone(plan.schema()),
                inputs: vec![Arc::clone(&plan), Arc::clone(&plan)],
            });
            plan = filter(union, col("t.a").gt(lit(i as i64)));
        }
        let mut fp = PlanFingerprinter::new();
        let first = fp.fingerprint(&plan);
        assert_eq!(fp.nodes_hashed(), 2 * levels + 1);
        // Memoised: asking again hashes nothing new.
        assert_eq!(fp.fingerprint(&plan), first);
        assert_eq!(fp.nodes_hashed(), 2 * levels + 1);
        drop(fp);
        drop_deep(plan);
    }

    #[test]
    fn stage_fingerprints_follow_parents_not_stage_numbers() {
        let a = stage_fingerprints(&chain(3, Some(10), 2)).unwrap();
        let b = stage_fingerprints(&chain(3, Some(10), 2)).unwrap();
        assert_eq!(a, b);
        let fps: Vec<Fingerprint> = a.iter().map(|(_, fp)| *fp).collect();
        assert_ne!(fps[0], fps[1]);
        assert_ne!(fps[1], fps[2]);

        // A change in the first stage's input changes every downstream stage's fingerprint,
        // although their own plans (filter over a ShuffleRead of stage n-1) are identical.
        let mut changed = chain(3, Some(10), 2);
        changed.stages[0].plan = scan("t-v2", Some(10), 2);
        let c = stage_fingerprints(&changed).unwrap();
        for ((_, x), (_, y)) in a.iter().zip(&c) {
            assert_ne!(x, y);
        }
    }

    #[test]
    fn stage_fingerprints_reject_a_parent_that_comes_later() {
        let mut graph = chain(2, Some(10), 1);
        let source = scan("t-v1", Some(10), 1);
        graph.stages[0].plan = shuffle_read(1, 1, &source);
        graph.stages[0].parents = vec![1];
        let err = stage_fingerprints(&graph).unwrap_err();
        assert!(matches!(err, EmberError::Internal(_)), "{err}");
    }

    #[test]
    fn stages_cut_from_equal_plans_have_equal_fingerprints() {
        let a = build_stage_graph(&query("t@v1", 1)).unwrap();
        let b = build_stage_graph(&query("t@v1", 1)).unwrap();
        let c = build_stage_graph(&query("t@v1", 5)).unwrap();
        let fa = stage_fingerprints(&a).unwrap();
        assert_eq!(fa, stage_fingerprints(&b).unwrap());
        assert_ne!(fa, stage_fingerprints(&c).unwrap());
    }
}
