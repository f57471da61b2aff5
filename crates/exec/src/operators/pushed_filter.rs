//! Filters pushed into the scan right below them. A `Filter` or `DynamicFilter` (or a chain of
//! them) directly over a table scan becomes the scan's row filter: the scan decodes the
//! columns the conditions read, evaluates them, and decodes the other columns only for the
//! rows that pass (late materialisation, see `ScanPartition::execute_filtered`). The rows and
//! their order are exactly those of the unfused chain.

use std::sync::Arc;

use arrow::array::{BooleanArray, BooleanBufferBuilder, RecordBatch};
use arrow::compute::filter_record_batch;

use ember_planner::expr::Expr;
use ember_planner::physical::{PhysicalPlan, ScanExec};
use ember_planner::schema::{Column, PlanSchema};
use ember_planner::table::{BatchIter, RowFilter};
use ember_planner::Result;

use super::dynamic_filter::key_mask;
use super::filter::{filter_batches, predicate_mask, RowMask};
use super::source::execute_scan_filtered;
use crate::context::TaskContext;

/// Runs `plan` (a filter) as a filtered scan when it is a chain of filters over a scan;
/// `None` when it is not, and the filter runs as its own operator.
pub fn execute_pushed_filter(
    plan: &Arc<PhysicalPlan>,
    partition: usize,
    ctx: &Arc<TaskContext>,
) -> Result<Option<BatchIter>> {
    let Some((scan, conditions)) = filters_over_scan(plan) else {
        return Ok(None);
    };
    let mut columns = Vec::new();
    for condition in &conditions {
        for column in condition.columns() {
            columns.push(scan.schema.index_of_column(&column)?);
        }
    }
    columns.sort_unstable();
    columns.dedup();
    if columns.is_empty() {
        return Ok(None);
    }
    let narrow = PlanSchema::new(
        columns
            .iter()
            .map(|&i| scan.schema.field(i).clone())
            .collect(),
    );
    // The chain's bottom condition first, as the rows flow.
    let bottom_up: Vec<&Condition> = conditions.iter().rev().collect();
    let fixed_len = bottom_up
        .iter()
        .rposition(|c| matches!(c, Condition::Predicate(_)))
        .map_or(0, |last_predicate| last_predicate + 1);
    let mut masks = bottom_up
        .iter()
        .map(|c| c.compile(&narrow, ctx))
        .collect::<Result<Vec<_>>>()?;
    let key_sets = masks.split_off(fixed_len);
    let filter = Box::new(ChainFilter::new(columns, masks, key_sets));
    let rows = execute_scan_filtered(scan, partition, filter)?;
    // A selective filter leaves small batches; coalesce them as a Filter would.
    Ok(Some(filter_batches(
        rows,
        Box::new(|_| Ok(None)),
        ctx.batch_size,
    )))
}

/// One filter of a chain over a scan.
enum Condition<'a> {
    Predicate(&'a Expr),
    /// A `DynamicFilter` node (its key set is shared by node) and its fields.
    Keys {
        node: &'a Arc<PhysicalPlan>,
        keys: &'a [Expr],
        source: &'a Arc<PhysicalPlan>,
        source_keys: &'a [Expr],
    },
}

impl Condition<'_> {
    fn columns(&self) -> Vec<Column> {
        match self {
            Condition::Predicate(predicate) => predicate.column_refs(),
            Condition::Keys { keys, .. } => keys.iter().flat_map(Expr::column_refs).collect(),
        }
    }

    fn compile(&self, schema: &PlanSchema, ctx: &Arc<TaskContext>) -> Result<RowMask> {
        match *self {
            Condition::Predicate(predicate) => predicate_mask(predicate, schema, ctx),
            Condition::Keys {
                node,
                keys,
                source,
                source_keys,
            } => key_mask(node, keys, source, source_keys, schema, ctx),
        }
    }
}

/// The scan under a chain of `Filter`/`DynamicFilter` nodes starting at `plan`, and the
/// chain's conditions from the top down.
fn filters_over_scan(plan: &Arc<PhysicalPlan>) -> Option<(&ScanExec, Vec<Condition<'_>>)> {
    let mut conditions = Vec::new();
    let mut node = plan;
    loop {
        match node.as_ref() {
            PhysicalPlan::Filter { input, predicate } => {
                conditions.push(Condition::Predicate(predicate));
                node = input;
            }
            PhysicalPlan::DynamicFilter {
                input,
                keys,
                source,
                source_keys,
            } => {
                conditions.push(Condition::Keys {
                    node,
                    keys,
                    source,
                    source_keys,
                });
                node = input;
            }
            PhysicalPlan::Scan(scan) if !conditions.is_empty() => return Some((scan, conditions)),
            _ => return None,
        }
    }
}

/// The chain's conditions over the columns a scan decodes first (`columns`, in the scan's
/// output). Each condition sees only the rows the ones before it kept, as in the chain.
///
/// The key-set conditions above the chain's last predicate are reordered as rows flow, the
/// one keeping the smallest share of the rows it saw first (DuckDB reorders its filters
/// the same way). A key-set test can never fail and a conjunction keeps the same rows in
/// any order, so only the work changes: TPC-H Q21 filters lineitem by 729 thousand order
/// keys (half of all rows pass) and by 411 supplier keys (4 % pass); testing the small set
/// first leaves the large one a twenty-fifth of the lookups. Predicates keep their place:
/// one may fail (a division by zero, a bad cast) on a row a condition below it would drop.
struct ChainFilter {
    columns: Vec<usize>,
    /// The chain up to its last predicate, in order.
    fixed: Vec<RowMask>,
    /// The key-set conditions after it, most selective (as measured so far) first.
    key_sets: Vec<CountedMask>,
}

/// A condition and how many rows it has seen and kept.
struct CountedMask {
    mask: RowMask,
    seen: usize,
    kept: usize,
}

impl CountedMask {
    /// The share of its rows this condition keeps; unseen conditions count as keeping all.
    fn pass_rate(&self) -> f64 {
        (self.kept as f64 + 1.0) / (self.seen as f64 + 1.0)
    }
}

impl ChainFilter {
    fn new(columns: Vec<usize>, fixed: Vec<RowMask>, key_sets: Vec<RowMask>) -> Self {
        let key_sets = key_sets
            .into_iter()
            .map(|mask| CountedMask {
                mask,
                seen: 0,
                kept: 0,
            })
            .collect();
        ChainFilter {
            columns,
            fixed,
            key_sets,
        }
    }
}

impl RowFilter for ChainFilter {
    fn columns(&self) -> &[usize] {
        &self.columns
    }

    fn keep(&mut self, batch: &RecordBatch) -> Result<Option<BooleanArray>> {
        let mut kept: Option<BooleanArray> = None;
        for mask in &mut self.fixed {
            kept = and_then(kept, mask, batch)?.0;
        }
        for counted in &mut self.key_sets {
            let (next, seen, passed) = and_then(kept, &mut counted.mask, batch)?;
            counted.seen += seen;
            counted.kept += passed;
            kept = next;
        }
        // Stable: equally selective conditions keep the chain's order.
        self.key_sets
            .sort_by(|a, b| a.pass_rate().total_cmp(&b.pass_rate()));
        Ok(kept)
    }
}

/// Applies `mask` to the rows of `batch` that `kept` selects (all when `None`): the
/// combined selection, how many rows `mask` saw and how many of them it kept.
fn and_then(
    kept: Option<BooleanArray>,
    mask: &mut RowMask,
    batch: &RecordBatch,
) -> Result<(Option<BooleanArray>, usize, usize)> {
    match kept {
        None => {
            let own = mask(batch)?;
            let passed = own.as_ref().map_or(batch.num_rows(), |m| m.true_count());
            Ok((own, batch.num_rows(), passed))
        }
        Some(kept) if kept.true_count() == 0 => Ok((Some(kept), 0, 0)),
        Some(kept) => {
            let survivors = filter_record_batch(batch, &kept)?;
            let seen = survivors.num_rows();
            Ok(match mask(&survivors)? {
                Some(of_survivors) => {
                    let passed = of_survivors.true_count();
                    (Some(narrow_mask(&kept, &of_survivors)), seen, passed)
                }
                None => (Some(kept), seen, seen),
            })
        }
    }
}

/// `kept` with each set bit replaced by the next flag of `of_kept` (a mask over the kept rows).
fn narrow_mask(kept: &BooleanArray, of_kept: &BooleanArray) -> BooleanArray {
    let mut out = BooleanBufferBuilder::new(kept.len());
    out.append_n(kept.len(), false);
    let flags = of_kept.values();
    for (i, row) in kept.values().set_indices().enumerate() {
        if flags.value(i) {
            out.set_bit(row, true);
        }
    }
    BooleanArray::new(out.finish(), None)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use arrow::array::{ArrayRef, AsArray, Int64Array};
    use arrow::datatypes::{Int64Type, SchemaRef};
    use ember_planner::expr::{col, lit, Operator};
    use ember_planner::table::{filter_decoded, ScanPartition};

    use super::super::test_util::*;
    use super::*;

    /// The columns of every row filter a scan partition was read with.
    type FilterLog = Arc<Mutex<Vec<Vec<usize>>>>;

    /// Batches in memory that note the columns of every row filter they are read with.
    #[derive(Debug)]
    struct Recording {
        batches: Vec<RecordBatch>,
        filters: FilterLog,
    }

    impl ScanPartition for Recording {
        fn execute(&self) -> Result<BatchIter> {
            Ok(Box::new(self.batches.clone().into_iter().map(Ok)))
        }
        fn execute_filtered(&self, filter: Box<dyn RowFilter>) -> Result<BatchIter> {
            self.filters.lock().unwrap().push(filter.columns().to_vec());
            Ok(filter_decoded(self.execute()?, filter))
        }
        fn describe(&self) -> String {
            "recording".into()
        }
    }

    /// A one-partition scan of (a, b, c) with a = 0..n, b = 10 * a, c = a % 3.
    fn recorded_scan(n: i64) -> (Arc<PhysicalPlan>, FilterLog) {
        let column = |f: &dyn Fn(i64) -> i64| {
            Arc::new(Int64Array::from((0..n).map(f).collect::<Vec<_>>())) as ArrayRef
        };
        let data = batch(vec![
            ("a", column(&|i| i)),
            ("b", column(&|i| 10 * i)),
            ("c", column(&|i| i % 3)),
        ]);
        let schema: SchemaRef = data.schema();
        let filters = Arc::new(Mutex::new(Vec::new()));
        let scan = mem_scan_with_schema(schema, vec![vec![data.clone()]]);
        let PhysicalPlan::Scan(exec) = scan.as_ref() else {
            unreachable!()
        };
        let mut exec = exec.clone();
        exec.partitions = vec![Arc::new(Recording {
            batches: vec![data],
            filters: Arc::clone(&filters),
        })];
        (Arc::new(PhysicalPlan::Scan(exec)), filters)
    }

    fn filter(input: Arc<PhysicalPlan>, predicate: Expr) -> Arc<PhysicalPlan> {
        Arc::new(PhysicalPlan::Filter { input, predicate })
    }

    #[test]
    fn a_filter_over_a_scan_runs_inside_it_on_its_own_columns() {
        let (scan, filters) = recorded_scan(100);
        let predicate = col("c").eq(lit(1i64));
        let out = collect(&filter(scan, predicate), 0);
        let want: Vec<Option<i64>> = (0..100).filter(|i| i % 3 == 1).map(Some).collect();
        assert_eq!(int_column(&out, 0), want);
        assert_eq!(*filters.lock().unwrap(), vec![vec![2]]);
    }

    #[test]
    fn a_key_filter_over_a_filter_over_a_scan_reads_both_conditions_columns() {
        let (scan, filters) = recorded_scan(100);
        let source = mem_scan(vec![vec![int_batch("k", &[0, 30, 31, 60, 99])]]);
        let plan = Arc::new(PhysicalPlan::DynamicFilter {
            input: filter(scan, col("c").eq(lit(0i64))),
            keys: vec![col("b")],
            source,
            source_keys: vec![Expr::BinaryExpr {
                left: Box::new(col("k")),
                op: Operator::Multiply,
                right: Box::new(lit(10i64)),
            }],
        });
        let out = collect(&plan, 0);
        // b = 10 a is a source key for a in {0, 30, 31, 60, 99}; c = 0 keeps 0, 30, 60, 99.
        assert_eq!(
            int_column(&out, 0),
            vec![Some(0), Some(30), Some(60), Some(99)]
        );
        assert_eq!(*filters.lock().unwrap(), vec![vec![1, 2]]);
    }

    #[test]
    fn a_filter_not_right_above_a_scan_runs_as_its_own_operator() {
        let (scan, filters) = recorded_scan(10);
        let projected = Arc::new(PhysicalPlan::Projection {
            schema: scan.schema().clone(),
            exprs: vec![col("a"), col("b"), col("c")],
            input: scan,
        });
        let out = collect(&filter(projected, col("a").lt(lit(3i64))), 0);
        assert_eq!(int_column(&out, 0), vec![Some(0), Some(1), Some(2)]);
        assert!(filters.lock().unwrap().is_empty());
    }

    /// A condition over column 0 (Int64) that keeps the values `keep` accepts and counts the
    /// rows it is asked about.
    fn counting_mask(keep: fn(i64) -> bool, asked: &Arc<AtomicUsize>) -> RowMask {
        let asked = Arc::clone(asked);
        Box::new(move |batch: &RecordBatch| {
            let values = batch.column(0).as_primitive::<Int64Type>();
            asked.fetch_add(values.len(), Ordering::Relaxed);
            Ok(Some(values.iter().map(|v| v.map(keep)).collect()))
        })
    }

    #[test]
    fn key_set_conditions_after_the_predicates_run_most_selective_first() {
        let [predicate, wide, narrow] = [(); 3].map(|_| Arc::new(AtomicUsize::new(0)));
        let mut chain = ChainFilter::new(
            vec![0],
            vec![counting_mask(|v| v % 2 == 0, &predicate)],
            vec![
                counting_mask(|v| v % 100 != 0, &wide),
                counting_mask(|v| v % 10 == 0, &narrow),
            ],
        );
        let batch = int_batch("a", &(0..1000).collect::<Vec<_>>());
        let want: BooleanArray = (0..1000)
            .map(|v| Some(v % 2 == 0 && v % 100 != 0 && v % 10 == 0))
            .collect();
        // First batch in the chain's order: the wide condition sees every even row.
        assert_eq!(chain.keep(&batch).unwrap(), Some(want.clone()));
        assert_eq!(wide.load(Ordering::Relaxed), 500);
        assert_eq!(narrow.load(Ordering::Relaxed), 490);
        // Then the narrow one (a tenth kept) goes first; the rows kept are the same.
        assert_eq!(chain.keep(&batch).unwrap(), Some(want));
        assert_eq!(narrow.load(Ordering::Relaxed), 490 + 500);
        assert_eq!(wide.load(Ordering::Relaxed), 500 + 100);
        // The predicate stays first throughout.
        assert_eq!(predicate.load(Ordering::Relaxed), 2000);
    }

    #[test]
    fn narrowing_replaces_each_kept_row_by_the_next_flag() {
        let kept = BooleanArray::from(vec![true, false, true, true, false]);
        let of_kept = BooleanArray::from(vec![false, true, true]);
        assert_eq!(
            narrow_mask(&kept, &of_kept),
            BooleanArray::from(vec![false, false, true, true, false])
        );
    }
}
