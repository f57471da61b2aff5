//! Size estimates of logical plans: rows and bytes each node is expected to produce.
//!
//! They drive join side choice (the smaller input becomes the hash join's build side), the
//! physical planner's broadcast decisions and checkpoint placement. They are deliberately
//! simple — table statistics propagated up with fixed selectivities — because all they must
//! do is rank alternatives sensibly.
//!
//! Plans are DAGs and can be thousands of levels deep, so [`StatsCache`] computes estimates
//! with an explicit stack and memoises them by node identity.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::DataType;

use crate::logical::{JoinType, LogicalPlan};
use crate::schema::PlanSchema;

/// The estimated output of one plan node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Estimate {
    pub rows: Option<usize>,
    pub bytes: Option<usize>,
}

/// Fraction of rows a filter keeps.
const FILTER_SELECTIVITY: f64 = 0.5;
/// Fraction of input rows that are distinct groups of a grouped aggregate.
const GROUPS_PER_ROW: f64 = 0.25;
/// Fraction of left rows a semi or anti join keeps.
const SEMI_SELECTIVITY: f64 = 0.5;
/// Average list length assumed by unnest.
const UNNEST_FANOUT: usize = 4;

/// Estimated rows `plan` produces (`None` when no source reports statistics).
pub fn estimate_rows(plan: &Arc<LogicalPlan>) -> Option<usize> {
    StatsCache::default().estimate(plan).rows
}

/// Estimated bytes `plan` produces.
pub fn estimate_bytes(plan: &Arc<LogicalPlan>) -> Option<usize> {
    StatsCache::default().estimate(plan).bytes
}

/// Memoised estimator: keeps every node it estimated alive, so identities stay valid.
#[derive(Default)]
pub struct StatsCache {
    memo: HashMap<*const LogicalPlan, (Arc<LogicalPlan>, Estimate)>,
}

impl StatsCache {
    /// The estimate of `plan`, computing (without recursion) whatever is not cached yet.
    pub fn estimate(&mut self, plan: &Arc<LogicalPlan>) -> Estimate {
        if let Some((_, e)) = self.memo.get(&Arc::as_ptr(plan)) {
            return *e;
        }
        // Post-order over the nodes not yet cached.
        let mut stack: Vec<(Arc<LogicalPlan>, bool)> = vec![(Arc::clone(plan), false)];
        while let Some((node, children_done)) = stack.pop() {
            if self.memo.contains_key(&Arc::as_ptr(&node)) {
                continue;
            }
            if children_done {
                let inputs: Vec<Estimate> = node
                    .inputs()
                    .iter()
                    .map(|i| {
                        self.memo
                            .get(&Arc::as_ptr(i))
                            .map(|(_, e)| *e)
                            .unwrap_or_default()
                    })
                    .collect();
                let e = estimate_node(&node, &inputs);
                self.memo.insert(Arc::as_ptr(&node), (node, e));
            } else {
                let inputs: Vec<Arc<LogicalPlan>> = node.inputs().into_iter().cloned().collect();
                stack.push((node, true));
                for i in inputs {
                    if !self.memo.contains_key(&Arc::as_ptr(&i)) {
                        stack.push((i, false));
                    }
                }
            }
        }
        self.memo
            .get(&Arc::as_ptr(plan))
            .map(|(_, e)| *e)
            .unwrap_or_default()
    }
}

fn scale(rows: Option<usize>, factor: f64) -> Option<usize> {
    rows.map(|r| ((r as f64) * factor).ceil() as usize)
}

/// Average bytes per value of a type, for turning row counts into sizes.
fn type_width(t: &DataType) -> usize {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => 24,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => 24,
        DataType::List(_) | DataType::LargeList(_) => 64,
        DataType::Boolean => 1,
        t => t.primitive_width().unwrap_or(16),
    }
}

/// Average bytes per row of a schema.
pub fn row_width(schema: &PlanSchema) -> usize {
    schema
        .fields()
        .iter()
        .map(|f| type_width(f.data_type()))
        .sum::<usize>()
        .max(1)
}

fn estimate_node(plan: &LogicalPlan, inputs: &[Estimate]) -> Estimate {
    let input_rows = |i: usize| inputs.get(i).and_then(|e| e.rows);
    let rows = match plan {
        LogicalPlan::TableScan(scan) => {
            let stats = scan.source.statistics();
            let full = scan.source.schema();
            let bytes = stats.total_bytes.map(|b| {
                let full_width: usize = full
                    .fields()
                    .iter()
                    .map(|f| type_width(f.data_type()))
                    .sum::<usize>()
                    .max(1);
                let width = row_width(&scan.schema);
                ((b as f64) * (width as f64 / full_width as f64)).ceil() as usize
            });
            return Estimate {
                rows: stats.num_rows,
                bytes: bytes.or_else(|| stats.num_rows.map(|r| r * row_width(&scan.schema))),
            };
        }
        LogicalPlan::Filter(_) => scale(input_rows(0), FILTER_SELECTIVITY),
        LogicalPlan::Projection(_)
        | LogicalPlan::SubqueryAlias(_)
        | LogicalPlan::Repartition(_) => input_rows(0),
        LogicalPlan::Sort(s) => match s.fetch {
            Some(n) => input_rows(0).map(|r| r.min(n)),
            None => input_rows(0),
        },
        LogicalPlan::Limit(l) => match l.fetch {
            Some(n) => Some(input_rows(0).map_or(n, |r| r.saturating_sub(l.skip).min(n))),
            None => input_rows(0).map(|r| r.saturating_sub(l.skip)),
        },
        LogicalPlan::Aggregate(a) if a.group_exprs.is_empty() => Some(1),
        LogicalPlan::Aggregate(_) | LogicalPlan::Distinct(_) => {
            scale(input_rows(0), GROUPS_PER_ROW).map(|r| r.max(1))
        }
        LogicalPlan::Join(j) => {
            let (l, r) = (input_rows(0), input_rows(1));
            match j.join_type {
                JoinType::LeftSemi | JoinType::LeftAnti => scale(l, SEMI_SELECTIVITY),
                // Key joins are mostly foreign-key joins: about as many rows as the larger
                // side; without keys, a filtered product.
                JoinType::Inner if j.on.is_empty() => l.zip(r).map(|(a, b)| a.saturating_mul(b)),
                JoinType::Inner => l.zip(r).map(|(a, b)| a.max(b)),
                JoinType::Left => l.zip(r).map(|(a, b)| a.max(b)).or(l),
                JoinType::Right => l.zip(r).map(|(a, b)| a.max(b)).or(r),
                JoinType::Full => l.zip(r).map(|(a, b)| a.saturating_add(b)),
            }
        }
        LogicalPlan::CrossJoin(_) => input_rows(0)
            .zip(input_rows(1))
            .map(|(a, b)| a.saturating_mul(b)),
        LogicalPlan::Union(_) => inputs
            .iter()
            .try_fold(0usize, |acc, e| e.rows.map(|r| acc.saturating_add(r))),
        LogicalPlan::Values(v) => Some(v.rows.len()),
        LogicalPlan::EmptyRelation(e) => Some(usize::from(e.produce_one_row)),
        LogicalPlan::Unnest(_) => input_rows(0).map(|r| r.saturating_mul(UNNEST_FANOUT)),
    };
    Estimate {
        rows,
        bytes: rows.map(|r| r.saturating_mul(row_width(plan.schema()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::{col, lit};
    use crate::logical::{Aggregate, CrossJoin, Filter, Join, Union};
    use crate::optimizer::test_util::{drop_deep, scan_with_rows};

    #[test]
    fn estimates_propagate_through_operators() {
        let big = scan_with_rows("big", &["a", "b"], Some(1000));
        let small = scan_with_rows("small", &["c"], Some(10));
        assert_eq!(estimate_rows(&big), Some(1000));
        assert_eq!(estimate_bytes(&big), Some(16_000));
        let filtered = Arc::new(LogicalPlan::Filter(Filter {
            input: Arc::clone(&big),
            predicate: col("big.a").gt(lit(1i64)),
        }));
        assert_eq!(estimate_rows(&filtered), Some(500));
        let agg = Arc::new(LogicalPlan::Aggregate(
            Aggregate::try_new(Arc::clone(&big), vec![], vec![crate::expr::count_star()]).unwrap(),
        ));
        assert_eq!(estimate_rows(&agg), Some(1));
        let join = Arc::new(LogicalPlan::Join(
            Join::try_new(
                Arc::clone(&big),
                Arc::clone(&small),
                vec![(col("big.a"), col("small.c"))],
                None,
                JoinType::Inner,
                false,
            )
            .unwrap(),
        ));
        assert_eq!(estimate_rows(&join), Some(1000));
        let cross = Arc::new(LogicalPlan::CrossJoin(CrossJoin::new(big, small)));
        assert_eq!(estimate_rows(&cross), Some(10_000));
    }

    #[test]
    fn unknown_statistics_give_none() {
        let t = scan_with_rows("t", &["a"], None);
        assert_eq!(estimate_rows(&t), None);
    }

    #[test]
    fn deep_shared_plans_are_estimated_in_linear_time() {
        // Each level unions the previous level with itself: 2^200 paths, 200 nodes.
        let mut plan = scan_with_rows("t", &["a"], Some(2));
        for _ in 0..200 {
            let u = Union::try_new(vec![Arc::clone(&plan), Arc::clone(&plan)]).unwrap();
            plan = Arc::new(LogicalPlan::Union(u));
        }
        assert_eq!(estimate_rows(&plan), Some(usize::MAX));
        drop_deep(plan);
    }
}
