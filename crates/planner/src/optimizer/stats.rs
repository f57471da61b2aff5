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

use crate::expr::{Expr, Operator};
use crate::logical::{Join, JoinType, LogicalPlan};
use crate::schema::PlanSchema;

/// The estimated output of one plan node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Estimate {
    pub rows: Option<usize>,
    pub bytes: Option<usize>,
}

/// Fraction of rows a predicate we cannot analyse keeps.
const FILTER_SELECTIVITY: f64 = 0.5;
/// Fraction kept by `x = constant` (and by each element of an IN list).
const EQ_SELECTIVITY: f64 = 0.1;
/// Fraction kept by one range bound (`x < c`, `x >= c`).
const RANGE_SELECTIVITY: f64 = 1.0 / 3.0;
/// Fraction kept by `BETWEEN` and by a `LIKE` pattern.
const BETWEEN_SELECTIVITY: f64 = 0.25;
/// No estimate drops below this fraction: a filter is never assumed to remove everything.
const MIN_SELECTIVITY: f64 = 1e-4;
/// Fraction of input rows that are distinct groups of a grouped aggregate.
pub(crate) const GROUPS_PER_ROW: f64 = 0.25;
/// Fraction of left rows a semi or anti join keeps.
pub(crate) const SEMI_SELECTIVITY: f64 = 0.5;
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
    /// [`column_origin_rows`] of each (node, column index) a walk has passed: a later walk
    /// stops at the first one it meets. Every join asks for its keys' origins, and in an
    /// iterative DataFrame loop a key traces back through every earlier iteration, so
    /// without this, estimating the whole plan is quadratic in the loop's length.
    origins: HashMap<ColumnOf, (Arc<LogicalPlan>, Option<usize>)>,
}

/// A column of a plan node: the node's identity and the column's index in its schema.
type ColumnOf = (*const LogicalPlan, usize);

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
                let mut e = estimate_node(&node, &inputs);
                if let LogicalPlan::Join(join) = node.as_ref() {
                    if let Some(rows) = self.key_join_rows(join, &inputs) {
                        e.rows = Some(rows);
                        e.bytes = Some(rows.saturating_mul(row_width(node.schema())));
                    }
                }
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

    /// The rows of an inner equi-join, `|L| · |R| / d`, where `d` — the distinct values of
    /// the key — is the smaller of the two key columns' origin row counts
    /// ([`column_origin_rows`]): for a foreign-key join, the primary-key table's rows. So a
    /// fact table joined to a filtered dimension keeps the dimension's fraction of its rows
    /// (TPC-H Q9: lineitem ⋈ the quarter of parts named like '%green%' is a quarter of
    /// lineitem) instead of all of them, which is what makes a later join see it as reduced
    /// and filter, rather than broadcast, the other side. With several keys, the product of
    /// their `d`s is bounded by the rows each side's key columns come from, as in
    /// `join_reorder` (a composite foreign key is not a near-empty join). `None` (keep the
    /// shape-only estimate) for other join types, or when a key is computed or has no
    /// statistics.
    fn key_join_rows(&mut self, join: &Join, inputs: &[Estimate]) -> Option<usize> {
        if join.join_type != JoinType::Inner || join.on.is_empty() {
            return None;
        }
        let (left, right) = (inputs.first()?.rows?, inputs.get(1)?.rows?);
        let mut divisor = 1f64;
        let (mut left_bound, mut right_bound) = (0f64, 0f64);
        for (l, r) in &join.on {
            let l = self.key_origin_rows(&join.left, l)?;
            let r = self.key_origin_rows(&join.right, r)?;
            divisor *= l.min(r);
            left_bound = left_bound.max(l);
            right_bound = right_bound.max(r);
        }
        let divisor = divisor.min(left_bound).min(right_bound).max(1.0);
        let rows = (left as f64) * (right as f64) / divisor;
        Some(rows.clamp(1.0, usize::MAX as f64).ceil() as usize)
    }

    /// [`column_origin_rows`] of `key` when it is a plain column of `side`.
    fn key_origin_rows(&mut self, side: &Arc<LogicalPlan>, key: &Expr) -> Option<f64> {
        let Expr::Column(column) = key.unalias() else {
            return None;
        };
        let index = side.schema().maybe_index_of_column(column).ok()??;
        column_origin_rows(side, index, self).map(|d| d.max(1) as f64)
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

/// The fraction of rows `predicate` is expected to keep, from its shape alone (no column
/// statistics): equalities with a constant are selective, range bounds less so, and
/// conjunctions multiply. It only has to rank plans sensibly: a relation filtered by
/// `name = 'ASIA'` must look much smaller than one filtered by `date >= d`, so join
/// ordering starts from it.
pub fn selectivity(predicate: &Expr) -> f64 {
    predicate_selectivity(predicate).clamp(MIN_SELECTIVITY, 1.0)
}

fn is_constant(e: &Expr) -> bool {
    e.column_refs().is_empty() && !e.contains_subquery() && !e.contains_outer_column()
}

fn predicate_selectivity(e: &Expr) -> f64 {
    match e {
        Expr::Alias(inner, _) => predicate_selectivity(inner),
        Expr::BinaryExpr { left, op, right } => match op {
            // A conjunction may be arbitrarily long; split it instead of recursing on it.
            Operator::And => e
                .split_conjunction()
                .into_iter()
                .map(predicate_selectivity)
                .product(),
            Operator::Or => {
                let (l, r) = (predicate_selectivity(left), predicate_selectivity(right));
                l + r - l * r
            }
            Operator::Eq if is_constant(left) || is_constant(right) => EQ_SELECTIVITY,
            Operator::NotEq if is_constant(left) || is_constant(right) => 1.0 - EQ_SELECTIVITY,
            Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq
                if is_constant(left) || is_constant(right) =>
            {
                RANGE_SELECTIVITY
            }
            _ => FILTER_SELECTIVITY,
        },
        Expr::Not(inner) => 1.0 - predicate_selectivity(inner),
        Expr::IsNull(_) => EQ_SELECTIVITY,
        Expr::IsNotNull(_) => 1.0 - EQ_SELECTIVITY,
        Expr::Between { negated, .. } => negate_if(*negated, BETWEEN_SELECTIVITY),
        Expr::Like { negated, .. } => negate_if(*negated, BETWEEN_SELECTIVITY),
        Expr::InList { list, negated, .. } => negate_if(
            *negated,
            (EQ_SELECTIVITY * list.len() as f64).min(FILTER_SELECTIVITY),
        ),
        _ => FILTER_SELECTIVITY,
    }
}

fn negate_if(negated: bool, s: f64) -> f64 {
    if negated {
        1.0 - s
    } else {
        s
    }
}

/// An upper bound on the distinct values of column `index` of `plan`: the row count of the
/// table (or aggregate) the column comes from, followed down through operators that pass
/// columns through unchanged. A foreign key such as `lineitem.l_suppkey` is bounded by
/// `lineitem`'s rows only; join ordering takes the minimum over all columns equated with it
/// (`supplier.s_suppkey`), which gives the key domain's real size. `None` when the column is
/// computed or its source reports no statistics.
pub fn column_origin_rows(
    plan: &Arc<LogicalPlan>,
    index: usize,
    stats: &mut StatsCache,
) -> Option<usize> {
    let min_opt = |a: Option<usize>, b: Option<usize>| match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    // The index in `input` of the column `expr` passes through, if it is a plain column.
    let passed_column =
        |input: &Arc<LogicalPlan>, expr: Option<&Expr>| match expr.map(Expr::unalias) {
            Some(Expr::Column(c)) => input.schema().maybe_index_of_column(c).ok().flatten(),
            _ => None,
        };
    // The nodes passed on the way down, with the column's index there and the bound the
    // node itself sets (an aggregate's groups bound its keys).
    let mut path: Vec<(Arc<LogicalPlan>, usize, Option<usize>)> = Vec::new();
    let mut node = Arc::clone(plan);
    let mut index = index;
    // What the walk found below the last node on `path`.
    let mut below = loop {
        if let Some((_, known)) = stats.origins.get(&(Arc::as_ptr(&node), index)) {
            break *known;
        }
        let (next, local) = match node.as_ref() {
            LogicalPlan::TableScan(scan) => {
                let rows = scan.source.statistics().num_rows;
                path.push((node, index, None));
                break rows;
            }
            LogicalPlan::Filter(f) => ((Arc::clone(&f.input), index), None),
            LogicalPlan::Sort(s) => ((Arc::clone(&s.input), index), None),
            LogicalPlan::Limit(l) => ((Arc::clone(&l.input), index), None),
            LogicalPlan::Repartition(r) => ((Arc::clone(&r.input), index), None),
            LogicalPlan::Distinct(d) => ((Arc::clone(&d.input), index), None),
            LogicalPlan::SubqueryAlias(a) => ((Arc::clone(&a.input), index), None),
            LogicalPlan::Projection(p) => match passed_column(&p.input, p.exprs.get(index)) {
                Some(i) => ((Arc::clone(&p.input), i), None),
                None => {
                    path.push((node, index, None));
                    break None;
                }
            },
            LogicalPlan::Aggregate(a) => {
                let groups = stats.estimate(&node).rows;
                match passed_column(&a.input, a.group_exprs.get(index)) {
                    Some(i) => ((Arc::clone(&a.input), i), groups),
                    None => {
                        path.push((node, index, groups));
                        break None;
                    }
                }
            }
            LogicalPlan::Join(j) => side_of(&j.left, &j.right, index),
            LogicalPlan::CrossJoin(j) => side_of(&j.left, &j.right, index),
            _ => {
                let rows = stats.estimate(&node).rows;
                path.push((node, index, None));
                break rows;
            }
        };
        path.push((node, index, local));
        (node, index) = next;
    };
    // Each node's answer is its own bound and everything below it.
    for (node, index, local) in path.into_iter().rev() {
        below = min_opt(local, below);
        stats
            .origins
            .insert((Arc::as_ptr(&node), index), (node, below));
    }
    below
}

/// The input of a join (`left` then `right` columns) that column `index` comes from, and its
/// index there; joins set no bound of their own.
fn side_of(
    left: &Arc<LogicalPlan>,
    right: &Arc<LogicalPlan>,
    index: usize,
) -> ((Arc<LogicalPlan>, usize), Option<usize>) {
    let left_len = left.schema().len();
    if index < left_len {
        ((Arc::clone(left), index), None)
    } else {
        ((Arc::clone(right), index - left_len), None)
    }
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
        LogicalPlan::Filter(f) => scale(input_rows(0), selectivity(&f.predicate)),
        LogicalPlan::Projection(_)
        | LogicalPlan::SubqueryAlias(_)
        | LogicalPlan::Repartition(_)
        | LogicalPlan::Persist(_) => input_rows(0),
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
                // side (refined from the keys' domains by `StatsCache::key_join_rows` where
                // they are plain columns); without keys, a filtered product.
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
        // One range bound keeps a third.
        assert_eq!(estimate_rows(&filtered), Some(334));
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
    fn key_joins_keep_the_filtered_dimension_s_fraction_of_the_fact_table() {
        let inner = |l: &Arc<LogicalPlan>, r: &Arc<LogicalPlan>, on: Vec<(Expr, Expr)>| {
            Arc::new(LogicalPlan::Join(
                Join::try_new(
                    Arc::clone(l),
                    Arc::clone(r),
                    on,
                    None,
                    JoinType::Inner,
                    false,
                )
                .unwrap(),
            ))
        };
        let fact = scan_with_rows("fact", &["dim_key", "a", "b"], Some(10_000));
        let dim = scan_with_rows("dim", &["key"], Some(100));
        // `key = constant` keeps a tenth of the dimension: 10 of its 100 keys.
        let some_dims = Arc::new(LogicalPlan::Filter(Filter {
            input: Arc::clone(&dim),
            predicate: col("dim.key").eq(lit(7i64)),
        }));
        let on = || vec![(col("fact.dim_key"), col("dim.key"))];
        // Foreign key to primary key: each fact row matches one of 100 keys, 10 of which are
        // left, so a tenth of the fact rows; the whole dimension keeps them all.
        assert_eq!(estimate_rows(&inner(&fact, &some_dims, on())), Some(1_000));
        assert_eq!(estimate_rows(&inner(&fact, &dim, on())), Some(10_000));
        // Two keys into a 500-row bridge table: the key pairs are bounded by the bridge's
        // rows, not by the product of each key's domain (which would make it near empty).
        let bridge = scan_with_rows("bridge", &["x", "y"], Some(500));
        let pair = vec![
            (col("fact.a"), col("bridge.x")),
            (col("fact.b"), col("bridge.y")),
        ];
        assert_eq!(estimate_rows(&inner(&fact, &bridge, pair)), Some(10_000));
        // A computed key says nothing about its domain: the larger input, as before.
        let computed = vec![(col("fact.a").add(lit(1i64)), col("dim.key"))];
        assert_eq!(
            estimate_rows(&inner(&fact, &some_dims, computed)),
            Some(10_000)
        );
    }

    #[test]
    fn selectivity_follows_the_predicate_shape() {
        let eq = col("t.a").eq(lit(1i64));
        let range = col("t.a").gt_eq(lit(1i64));
        assert!((selectivity(&eq) - EQ_SELECTIVITY).abs() < 1e-9);
        assert!((selectivity(&range) - RANGE_SELECTIVITY).abs() < 1e-9);
        // Conjunctions multiply, disjunctions add (minus the overlap).
        let both = eq.clone().and(range.clone());
        assert!((selectivity(&both) - EQ_SELECTIVITY * RANGE_SELECTIVITY).abs() < 1e-9);
        let either = col("t.a").eq(lit(1i64)).or(col("t.a").eq(lit(2i64)));
        assert!((selectivity(&either) - 0.19).abs() < 1e-9);
        assert!((selectivity(&eq.not()) - (1.0 - EQ_SELECTIVITY)).abs() < 1e-9);
        // Comparing two columns says nothing about either: the default applies.
        let cols = col("t.a").lt(col("t.b"));
        assert!((selectivity(&cols) - FILTER_SELECTIVITY).abs() < 1e-9);
        // Never zero, however many conjuncts.
        let many = (0..20).fold(lit(true), |acc, i| acc.and(col("t.a").eq(lit(i as i64))));
        assert!(selectivity(&many) >= MIN_SELECTIVITY);
    }

    #[test]
    fn column_origin_follows_columns_down_to_their_table() {
        let big = scan_with_rows("big", &["a", "b"], Some(1000));
        let small = scan_with_rows("small", &["c"], Some(10));
        let filtered = Arc::new(LogicalPlan::Filter(Filter {
            input: Arc::clone(&small),
            predicate: col("small.c").gt(lit(1i64)),
        }));
        let join = Arc::new(LogicalPlan::Join(
            Join::try_new(
                Arc::clone(&big),
                filtered,
                vec![(col("big.a"), col("small.c"))],
                None,
                JoinType::Inner,
                false,
            )
            .unwrap(),
        ));
        let mut stats = StatsCache::default();
        // A filter does not shrink the key domain: small.c still has up to 10 values.
        assert_eq!(column_origin_rows(&join, 2, &mut stats), Some(10));
        assert_eq!(column_origin_rows(&join, 1, &mut stats), Some(1000));
        // A grouped aggregate bounds its key by its own (estimated) group count.
        let agg = Arc::new(LogicalPlan::Aggregate(
            Aggregate::try_new(big, vec![col("big.b")], vec![crate::expr::count_star()]).unwrap(),
        ));
        assert_eq!(column_origin_rows(&agg, 0, &mut stats), Some(250));
        // An aggregate result column is bounded by the group count as well.
        assert_eq!(column_origin_rows(&agg, 1, &mut stats), Some(250));
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
