//! What a stage costs: the estimated work to compute it and the rows and bytes it produces.
//!
//! Checkpoint placement weighs recomputation against writing, so both must be in the same
//! unit: seconds. A stage's work is the sum over its operators of (rows or bytes in) × a
//! per-operator weight, from table statistics propagated up the plan with fixed selectivities
//! (the same spirit as the logical optimizer's estimates: they need to rank, not predict).
//! Measured task times of an earlier run of the same stage (same fingerprint) replace the
//! estimate through [`CostInputs::measured`], which is how the scheduler refines the model.
//!
//! Estimates are `Option`s: a source without statistics makes everything above it unknown,
//! and placement then relies on the lineage-depth cap alone rather than on invented numbers.

use std::collections::HashMap;
use std::sync::Arc;

use crate::fingerprint::Fingerprint;
use crate::logical::JoinType;
use crate::optimizer::stats::row_width;
use crate::physical::{AggregateMode, ExchangeKind, JoinMode, PhysicalPlan};
use crate::schema::PlanSchema;

/// Fraction of rows a filter keeps.
const FILTER_SELECTIVITY: f64 = 0.5;
/// Fraction of input rows that are distinct groups of a grouped Partial/Single aggregate.
const GROUPS_PER_ROW: f64 = 0.25;
/// Fraction of left rows a semi or anti join keeps.
const SEMI_SELECTIVITY: f64 = 0.5;
/// Fraction of row pairs a nested-loop join's filter keeps.
const NESTED_LOOP_SELECTIVITY: f64 = 0.1;
/// Average list length assumed by unnest.
const UNNEST_FANOUT: f64 = 4.0;

/// Per-operator costs in seconds per row (or per byte for I/O), for one core.
///
/// Defaults are rough single-core figures for Arrow kernels on a current machine; what
/// matters is their ratio (a hash join row costs more than a filter row), since placement
/// compares work against write cost measured in the same seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorWeights {
    /// Reading and decoding a scan's projected bytes (default ≈ 400 MB/s).
    pub scan_secs_per_byte: f64,
    /// Fetching and decoding shuffle blocks (default ≈ 500 MB/s).
    pub shuffle_read_secs_per_byte: f64,
    /// Encoding and writing shuffle blocks on the map side (default ≈ 300 MB/s).
    pub shuffle_write_secs_per_byte: f64,
    pub filter_secs_per_row: f64,
    /// Per row *and* per output expression.
    pub projection_secs_per_row_expr: f64,
    pub aggregate_secs_per_row: f64,
    pub join_build_secs_per_row: f64,
    pub join_probe_secs_per_row: f64,
    /// Per (left row, right row) pair.
    pub nested_loop_secs_per_pair: f64,
    /// Per row and per comparison level (× log2 of the partition's rows).
    pub sort_secs_per_row_level: f64,
    pub unnest_secs_per_row: f64,
}

impl Default for OperatorWeights {
    fn default() -> Self {
        OperatorWeights {
            scan_secs_per_byte: 1.0 / 400e6,
            shuffle_read_secs_per_byte: 1.0 / 500e6,
            shuffle_write_secs_per_byte: 1.0 / 300e6,
            filter_secs_per_row: 5e-9,
            projection_secs_per_row_expr: 3e-9,
            aggregate_secs_per_row: 40e-9,
            join_build_secs_per_row: 80e-9,
            join_probe_secs_per_row: 40e-9,
            nested_loop_secs_per_pair: 5e-9,
            sort_secs_per_row_level: 8e-9,
            unnest_secs_per_row: 20e-9,
        }
    }
}

/// What an earlier run of a stage measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeasuredStage {
    /// Sum of the stage's successful task times, in seconds (total work, not wall time).
    pub task_secs: f64,
    /// Bytes the stage wrote (shuffle or result), when known.
    pub output_bytes: Option<f64>,
}

/// Everything the cost model reads besides the plan and the policy.
#[derive(Debug, Clone, PartialEq)]
pub struct CostInputs {
    pub weights: OperatorWeights,
    /// Measured runs by stage fingerprint; they override the estimate of that stage.
    pub measured: HashMap<Fingerprint, MeasuredStage>,
    /// Fixed cost of committing a reliable checkpoint (manifest, checksums, `_SUCCESS`), in
    /// seconds, added to every write-cost estimate. Keeps an empty output from looking free.
    pub checkpoint_commit_secs: f64,
}

impl Default for CostInputs {
    fn default() -> Self {
        CostInputs {
            weights: OperatorWeights::default(),
            measured: HashMap::new(),
            checkpoint_commit_secs: 0.05,
        }
    }
}

/// Estimated size of a node's or stage's output.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Size {
    pub rows: Option<f64>,
    pub bytes: Option<f64>,
}

/// The cost-model view of one stage, before parallelism and lineage are applied.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StageWork {
    /// Total work over all tasks, in seconds (unknown without statistics).
    pub work_secs: Option<f64>,
    /// What the stage outputs.
    pub output: Size,
}

/// One node's estimate: its output and its own work (inputs excluded).
#[derive(Debug, Clone, Copy, Default)]
struct NodeEstimate {
    size: Size,
    work: Option<f64>,
}

fn finite(v: f64) -> f64 {
    if v.is_nan() {
        0.0
    } else {
        v.min(f64::MAX)
    }
}

fn rows_to_bytes(rows: Option<f64>, schema: &PlanSchema) -> Option<f64> {
    rows.map(|r| finite(r * row_width(schema) as f64))
}

/// Estimates the work and output of a stage's plan.
///
/// `parent_outputs` gives the output size of every stage a `ShuffleRead` may read; a read of
/// an unknown stage is an unknown size. Walks the plan with an explicit stack and counts
/// each distinct node (by identity) once.
pub fn estimate_stage(
    plan: &Arc<PhysicalPlan>,
    output: Option<&ExchangeKind>,
    parent_outputs: &HashMap<usize, Size>,
    weights: &OperatorWeights,
) -> StageWork {
    let mut memo: HashMap<*const PhysicalPlan, NodeEstimate> = HashMap::new();
    // Post-order; nodes are borrowed from `plan`, which outlives the walk.
    let mut stack: Vec<(&Arc<PhysicalPlan>, bool)> = vec![(plan, false)];
    let mut total_work = Some(0.0);
    while let Some((node, inputs_done)) = stack.pop() {
        let key = Arc::as_ptr(node);
        if memo.contains_key(&key) {
            continue;
        }
        if inputs_done {
            let inputs: Vec<NodeEstimate> = node
                .inputs()
                .iter()
                .map(|i| memo.get(&Arc::as_ptr(i)).copied().unwrap_or_default())
                .collect();
            let e = estimate_node(node, &inputs, parent_outputs, weights);
            total_work = total_work.zip(e.work).map(|(a, b)| finite(a + b));
            memo.insert(key, e);
        } else {
            stack.push((node, true));
            for input in node.inputs() {
                if !memo.contains_key(&Arc::as_ptr(input)) {
                    stack.push((input, false));
                }
            }
        }
    }
    let out = memo
        .get(&Arc::as_ptr(plan))
        .map(|e| e.size)
        .unwrap_or_default();
    if output.is_some() {
        // Map side: every output byte is encoded and written as a shuffle block.
        let write = out.bytes.map(|b| b * weights.shuffle_write_secs_per_byte);
        total_work = total_work.zip(write).map(|(a, b)| finite(a + b));
    }
    StageWork {
        work_secs: total_work,
        output: out,
    }
}

fn estimate_node(
    node: &PhysicalPlan,
    inputs: &[NodeEstimate],
    parent_outputs: &HashMap<usize, Size>,
    w: &OperatorWeights,
) -> NodeEstimate {
    let rows_in = |i: usize| inputs.get(i).and_then(|e| e.size.rows);
    let per_row = |rows: Option<f64>, weight: f64| rows.map(|r| finite(r * weight));
    let schema = node.schema();
    let partitions = node.output_partitions().max(1) as f64;
    let (rows, work) = match node {
        PhysicalPlan::Scan(s) => {
            let stats = s.source.statistics();
            let rows = stats.num_rows.map(|r| r as f64);
            let full = PlanSchema::from_arrow(None, &s.source.schema());
            let bytes = match stats.total_bytes {
                // Only the projected columns are read.
                Some(b) => {
                    Some(b as f64 * row_width(schema) as f64 / row_width(&full).max(1) as f64)
                }
                None => rows_to_bytes(rows, schema),
            };
            let size = Size { rows, bytes };
            return NodeEstimate {
                size,
                work: per_row(bytes, w.scan_secs_per_byte),
            };
        }
        PhysicalPlan::ShuffleRead {
            stage,
            kind,
            partitions,
            ..
        } => {
            let size = parent_outputs.get(stage).copied().unwrap_or_default();
            // A broadcast is read whole by every consumer partition.
            let copies = match kind {
                ExchangeKind::Broadcast => (*partitions).max(1) as f64,
                _ => 1.0,
            };
            return NodeEstimate {
                size,
                work: per_row(size.bytes, w.shuffle_read_secs_per_byte * copies),
            };
        }
        // Kept partitions are read back as they are (memory, local disk or Parquet).
        PhysicalPlan::PersistRead { stage, .. } => {
            let size = parent_outputs.get(stage).copied().unwrap_or_default();
            return NodeEstimate {
                size,
                work: per_row(size.bytes, w.shuffle_read_secs_per_byte),
            };
        }
        PhysicalPlan::Values { rows, .. } => (Some(rows.len() as f64), Some(0.0)),
        PhysicalPlan::Filter { .. } | PhysicalPlan::DynamicFilter { .. } => (
            rows_in(0).map(|r| r * FILTER_SELECTIVITY),
            per_row(rows_in(0), w.filter_secs_per_row),
        ),
        PhysicalPlan::Projection { exprs, .. } => (
            rows_in(0),
            per_row(
                rows_in(0),
                w.projection_secs_per_row_expr * exprs.len().max(1) as f64,
            ),
        ),
        PhysicalPlan::HashAggregate {
            mode, group_exprs, ..
        } => {
            let rows = match (mode, group_exprs.is_empty()) {
                // One row per partition (Partial) or in all (Final/Single).
                (AggregateMode::Partial, true) => Some(partitions),
                (_, true) => Some(1.0),
                (AggregateMode::Final, false) => rows_in(0),
                (_, false) => rows_in(0).map(|r| (r * GROUPS_PER_ROW).max(1.0)),
            };
            (rows, per_row(rows_in(0), w.aggregate_secs_per_row))
        }
        PhysicalPlan::HashJoin {
            join_type, mode, ..
        } => {
            let (l, r) = (rows_in(0), rows_in(1));
            let rows = match join_type {
                JoinType::LeftSemi | JoinType::LeftAnti => l.map(|l| l * SEMI_SELECTIVITY),
                JoinType::Inner => l.zip(r).map(|(a, b)| a.max(b)),
                JoinType::Left => l.zip(r).map(|(a, b)| a.max(b)).or(l),
                JoinType::Right => l.zip(r).map(|(a, b)| a.max(b)).or(r),
                JoinType::Full => l.zip(r).map(|(a, b)| a + b),
            };
            // A broadcast build side is hashed again by every task.
            let builds = match mode {
                JoinMode::Broadcast => partitions,
                JoinMode::Partitioned => 1.0,
            };
            let work = per_row(l, w.join_probe_secs_per_row)
                .zip(per_row(r, w.join_build_secs_per_row * builds))
                .map(|(a, b)| finite(a + b));
            (rows, work)
        }
        PhysicalPlan::NestedLoopJoin {
            filter, join_type, ..
        } => {
            let pairs = rows_in(0).zip(rows_in(1)).map(|(a, b)| finite(a * b));
            let rows = match join_type {
                JoinType::LeftSemi | JoinType::LeftAnti => rows_in(0).map(|l| l * SEMI_SELECTIVITY),
                _ if filter.is_some() => pairs.map(|p| p * NESTED_LOOP_SELECTIVITY),
                _ => pairs,
            };
            (rows, per_row(pairs, w.nested_loop_secs_per_pair))
        }
        PhysicalPlan::Sort { fetch, .. } => {
            let r = rows_in(0);
            let levels = r.map(|r| (r / partitions).max(2.0).log2()).unwrap_or(1.0);
            let rows = match fetch {
                Some(n) => r.map(|r| r.min(*n as f64 * partitions)),
                None => r,
            };
            (rows, per_row(r, w.sort_secs_per_row_level * levels))
        }
        PhysicalPlan::Limit { skip, fetch, .. } => {
            let kept = rows_in(0).map(|r| (r - *skip as f64 * partitions).max(0.0));
            let rows = match fetch {
                Some(n) => {
                    Some(kept.map_or(*n as f64 * partitions, |k| k.min(*n as f64 * partitions)))
                }
                None => kept,
            };
            (rows, Some(0.0))
        }
        PhysicalPlan::Union { .. } => (
            inputs
                .iter()
                .try_fold(0.0, |acc, e| e.size.rows.map(|r| finite(acc + r))),
            Some(0.0),
        ),
        PhysicalPlan::Unnest { .. } => {
            let rows = rows_in(0).map(|r| finite(r * UNNEST_FANOUT));
            (rows, per_row(rows, w.unnest_secs_per_row))
        }
        // Stage plans have no Exchanges (the cutter replaced them); if one is estimated
        // anyway, it moves its input unchanged and its cost is the shuffle's.
        PhysicalPlan::Exchange { .. } => {
            let bytes = inputs.first().and_then(|e| e.size.bytes);
            return NodeEstimate {
                size: Size {
                    rows: rows_in(0),
                    bytes,
                },
                work: per_row(
                    bytes,
                    w.shuffle_write_secs_per_byte + w.shuffle_read_secs_per_byte,
                ),
            };
        }
        // Operators without a dedicated arm (added after this module): assumed to pass
        // their first input's rows through at no extra cost.
        #[allow(unreachable_patterns)]
        _ => (rows_in(0), Some(0.0)),
    };
    let rows = rows.map(finite);
    NodeEstimate {
        size: Size {
            rows,
            bytes: rows_to_bytes(rows, schema),
        },
        work,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::{col, lit};
    use crate::lineage::test_util::{filter, partial_count, scan, shuffle_read};
    use crate::physical::ScanExec;

    fn work(plan: &Arc<PhysicalPlan>, parents: &HashMap<usize, Size>) -> StageWork {
        estimate_stage(plan, None, parents, &OperatorWeights::default())
    }

    #[test]
    fn statistics_propagate_through_operators() {
        let source = scan("t@v1", Some(1000), 2);
        let s = work(&source, &HashMap::new());
        assert_eq!(s.output.rows, Some(1000.0));
        assert_eq!(s.output.bytes, Some(16_000.0));
        let f = work(
            &filter(Arc::clone(&source), col("t.a").gt(lit(1i64))),
            &HashMap::new(),
        );
        assert_eq!(f.output.rows, Some(500.0));
        assert!(f.work_secs.unwrap() > s.work_secs.unwrap());
        // One row per partition out of a global partial aggregate.
        let c = work(&partial_count(source), &HashMap::new());
        assert_eq!(c.output.rows, Some(2.0));
    }

    #[test]
    fn a_projected_scan_reads_only_its_columns() {
        let full = scan("t@v1", Some(1000), 1);
        let PhysicalPlan::Scan(s) = full.as_ref() else {
            unreachable!("scan() builds a scan")
        };
        let narrow = Arc::new(PhysicalPlan::Scan(ScanExec {
            projection: Some(vec![0]),
            schema: Arc::new(PlanSchema::new(vec![s.schema.field(0).clone()])),
            ..s.clone()
        }));
        let (a, b) = (work(&full, &HashMap::new()), work(&narrow, &HashMap::new()));
        assert_eq!(b.output.bytes, Some(8000.0));
        assert!(b.work_secs.unwrap() < a.work_secs.unwrap());
    }

    #[test]
    fn shuffle_reads_take_their_size_from_the_parent_stage() {
        let source = scan("t@v1", Some(10), 1);
        let read = shuffle_read(7, 1, &source);
        let parents = HashMap::from([(
            7,
            Size {
                rows: Some(1e6),
                bytes: Some(16e6),
            },
        )]);
        let w = work(&read, &parents);
        assert_eq!(w.output.rows, Some(1e6));
        assert!((w.work_secs.unwrap() - 16e6 / 500e6).abs() < 1e-12);
        // An unknown parent is an unknown size, not zero.
        assert_eq!(work(&read, &HashMap::new()).work_secs, None);
    }

    #[test]
    fn map_stages_pay_for_writing_their_shuffle() {
        let source = scan("t@v1", Some(1_000_000), 1);
        let weights = OperatorWeights::default();
        let none = HashMap::new();
        let result = estimate_stage(&source, None, &none, &weights);
        let map = estimate_stage(&source, Some(&ExchangeKind::Single), &none, &weights);
        let extra = map.work_secs.unwrap() - result.work_secs.unwrap();
        assert!((extra - 16e6 * weights.shuffle_write_secs_per_byte).abs() < 1e-12);
    }
}
