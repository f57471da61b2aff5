//! Orders the inputs of a cluster of inner joins by estimated intermediate sizes.
//!
//! `eliminate_cross_join` keeps the FROM order as far as the join graph allows, so a query
//! that lists the biggest table first joins it before the filters of the small ones have had
//! a chance to shrink anything. This rule flattens a tree of Inner joins and CrossJoins (and
//! the column-only Projections and Filters between them) into its inputs and a pool of
//! conjuncts, then picks a left-deep order greedily: from each possible first input, it
//! repeatedly adds the connected input whose join with what is joined so far is estimated
//! smallest, never a cross join while a connected input remains; the start whose
//! intermediate results add up smallest wins.
//!
//! Join sizes are `|L| · |R| / Π d(k)` over the join's key classes, where `d(k)` — the
//! distinct values of a key — is the smallest row count among the tables whose columns are
//! equated with it (the table the key is a primary key of, for foreign-key joins); see
//! [`column_origin_rows`].
//!
//! ```text
//! Inner Join: on=[l.s = s.s]                      Projection: l.s, l.o, s.s, s.n, n.n
//!   Inner Join: on=[l.o = o.o]                      Inner Join: on=[l.o = o.o]
//!     TableScan: l        (6M rows)       →           Inner Join: on=[l.s = s.s]
//!     TableScan: o      (1.5M rows)                     Inner Join: on=[s.n = n.n]
//!   Inner Join: on=[s.n = n.n]                            TableScan: n  (1 row)
//!     TableScan: s       (10k rows)                       TableScan: s
//!     Filter: n.name = 'X'                              TableScan: l
//!       TableScan: n                                  TableScan: o
//! ```
//! Conjuncts that are not join keys go into a Filter above the rebuilt joins, for
//! `push_down_filter` to place; a Projection restores the cluster's column order. The rule
//! leaves hash-join sides to `join_side_choice`, and a cluster whose current order already
//! is the chosen one (sides aside) is left untouched, so the optimizer reaches a fixed point.

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::Result;
use crate::expr::{conjunction, disjunction, Expr, Operator};
use crate::logical::{CrossJoin, Filter, Join, JoinType, LogicalPlan};
use crate::optimizer::stats::{column_origin_rows, StatsCache};
use crate::optimizer::utils::{
    columns_in, connecting_keys, filter_over, is_movable, project_columns, split_conjuncts,
};
use crate::optimizer::{transform_down, OptimizerConfig, OptimizerRule, Transformed};

/// Clusters with more inputs are left alone: the search is cubic in the input count, and
/// such plans come from generated DataFrame loops rather than hand-written joins.
const MAX_CLUSTER_INPUTS: usize = 16;

pub struct JoinReorder;

impl OptimizerRule for JoinReorder {
    fn name(&self) -> &str {
        "join_reorder"
    }

    fn apply_order(&self) -> Option<crate::optimizer::ApplyOrder> {
        // Walks the plan itself: only whole clusters are reordered (a cluster's inner joins
        // must not be reordered again on their own), and one statistics cache is shared.
        None
    }

    fn rewrite(
        &self,
        plan: Arc<LogicalPlan>,
        _config: &OptimizerConfig,
    ) -> Result<Transformed<Arc<LogicalPlan>>> {
        let mut stats = StatsCache::default();
        // Inner nodes of clusters already handled, kept alive so their addresses stay unique.
        let mut inside: HashMap<*const LogicalPlan, Arc<LogicalPlan>> = HashMap::new();
        transform_down(plan, &mut |node| {
            let root = is_join_node(&node)
                || matches!(node.as_ref(), LogicalPlan::Filter(_)) && is_pass_through(&node);
            if inside.contains_key(&Arc::as_ptr(&node)) || !root {
                return Ok(Transformed::no(node));
            }
            let Some(cluster) = Cluster::flatten(&node) else {
                return Ok(Transformed::no(node));
            };
            let result = match reorder(&cluster, &node, &mut stats) {
                Ok(Some(new)) => Transformed::yes(new),
                // A cluster we cannot rebuild unambiguously (duplicate names) stays as is.
                Ok(None) | Err(_) => Transformed::no(node),
            };
            mark_inside(&result.data, &cluster.leaves, &mut inside);
            Ok(result)
        })
    }
}

/// Inner joins (keyed or not) and cross joins are what a cluster is made of.
fn is_join_node(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Join(j) => j.join_type == JoinType::Inner && !j.null_aware,
        LogicalPlan::CrossJoin(_) => true,
        _ => false,
    }
}

/// A Projection of plain columns or a Filter directly above a join node belongs to the
/// cluster: flattening passes through it.
fn is_pass_through(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Projection(p) => {
            is_join_node(&p.input) && p.exprs.iter().all(|e| matches!(e, Expr::Column(_)))
        }
        LogicalPlan::Filter(f) => is_join_node(&f.input),
        _ => false,
    }
}

/// Records every node of the cluster rooted at `root` above its leaves, so the traversal
/// does not treat them as roots of clusters of their own.
fn mark_inside(
    root: &Arc<LogicalPlan>,
    leaves: &[Arc<LogicalPlan>],
    inside: &mut HashMap<*const LogicalPlan, Arc<LogicalPlan>>,
) {
    let is_leaf = |p: &Arc<LogicalPlan>| leaves.iter().any(|l| Arc::ptr_eq(l, p));
    let mut stack = vec![Arc::clone(root)];
    while let Some(p) = stack.pop() {
        if is_leaf(&p) || inside.contains_key(&Arc::as_ptr(&p)) {
            continue;
        }
        // Joins, the Filters and Projections between them, and the ones a rebuild put on
        // top: everything between the root and the leaves.
        stack.extend(p.inputs().into_iter().cloned());
        inside.insert(Arc::as_ptr(&p), p);
    }
}

/// A flattened cluster: its inputs (left to right) and every condition found in it.
struct Cluster {
    leaves: Vec<Arc<LogicalPlan>>,
    conjuncts: Vec<Expr>,
}

impl Cluster {
    /// `None` when the cluster is too small to reorder or too big to search.
    fn flatten(root: &Arc<LogicalPlan>) -> Option<Cluster> {
        let mut leaves = Vec::new();
        let mut conjuncts = Vec::new();
        let mut stack = vec![Arc::clone(root)];
        while let Some(p) = stack.pop() {
            match p.as_ref() {
                LogicalPlan::Join(j) if is_join_node(&p) => {
                    conjuncts.extend(j.on.iter().map(|(l, r)| l.clone().eq(r.clone())));
                    if let Some(f) = &j.filter {
                        conjuncts.extend(split_conjuncts(f));
                    }
                    stack.push(Arc::clone(&j.right));
                    stack.push(Arc::clone(&j.left));
                }
                LogicalPlan::CrossJoin(j) => {
                    stack.push(Arc::clone(&j.right));
                    stack.push(Arc::clone(&j.left));
                }
                LogicalPlan::Filter(f) if is_pass_through(&p) => {
                    conjuncts.extend(split_conjuncts(&f.predicate));
                    stack.push(Arc::clone(&f.input));
                }
                LogicalPlan::Projection(pr) if is_pass_through(&p) => {
                    stack.push(Arc::clone(&pr.input));
                }
                _ => leaves.push(p),
            }
            if leaves.len() > MAX_CLUSTER_INPUTS {
                return None;
            }
        }
        (leaves.len() >= 2).then_some(Cluster { leaves, conjuncts })
    }

    fn leaf_index(&self, p: &Arc<LogicalPlan>) -> Option<usize> {
        self.leaves.iter().position(|l| Arc::ptr_eq(l, p))
    }

    /// The order in which the current tree joins the leaves, when it is linear (each join
    /// adds one leaf); the first two leaves in either order. `None` for bushy trees.
    fn current_order(&self, node: &Arc<LogicalPlan>) -> Option<Vec<usize>> {
        if let Some(i) = self.leaf_index(node) {
            return Some(vec![i]);
        }
        match node.as_ref() {
            LogicalPlan::Projection(p) => self.current_order(&p.input),
            LogicalPlan::Filter(f) => self.current_order(&f.input),
            LogicalPlan::Join(j) => self.linear(&j.left, &j.right),
            LogicalPlan::CrossJoin(j) => self.linear(&j.left, &j.right),
            _ => None,
        }
    }

    fn linear(&self, left: &Arc<LogicalPlan>, right: &Arc<LogicalPlan>) -> Option<Vec<usize>> {
        let (mut l, r) = (self.current_order(left)?, self.current_order(right)?);
        match (l.len(), r.len()) {
            (_, 1) => {
                l.extend(r);
                Some(l)
            }
            (1, _) => {
                let mut r = r;
                r.extend(l);
                Some(r)
            }
            _ => None,
        }
    }
}

/// Where a plain column of the cluster lives: (leaf, index in the leaf's schema).
type ColumnRef = (usize, usize);
/// The two plain columns an equality compares, when both sides are plain columns.
type ColumnPair = (ColumnRef, ColumnRef);

/// The cluster's join graph with size estimates.
struct JoinGraph {
    rows: Vec<f64>,
    /// One entry per equality between two different leaves.
    edges: Vec<Edge>,
}

struct Edge {
    left_leaf: usize,
    right_leaf: usize,
    /// The key class's distinct values (`None` = unknown: use the smaller side's rows).
    distinct: Option<f64>,
    /// Identifies the key class, so two equalities on one class divide once.
    class: usize,
    /// Upper bounds on the distinct values of each side's column (its table's rows).
    left_bound: Option<f64>,
    right_bound: Option<f64>,
}

/// The leaf (and column index) a plain column expression resolves to, if exactly one.
fn resolve(e: &Expr, leaves: &[Arc<LogicalPlan>]) -> Option<ColumnRef> {
    let Expr::Column(c) = e else { return None };
    let mut found = None;
    for (i, leaf) in leaves.iter().enumerate() {
        match leaf.schema().maybe_index_of_column(c) {
            Ok(Some(idx)) if found.is_none() => found = Some((i, idx)),
            Ok(None) => {}
            _ => return None,
        }
    }
    found
}

/// The single leaf all of `e`'s columns belong to.
fn single_leaf(e: &Expr, leaves: &[Arc<LogicalPlan>]) -> Option<usize> {
    if e.column_refs().is_empty() {
        return None;
    }
    let mut hits = leaves
        .iter()
        .enumerate()
        .filter(|(_, l)| columns_in(e, l.schema()));
    let (i, _) = hits.next()?;
    hits.next().is_none().then_some(i)
}

fn find(parent: &mut [usize], mut x: usize) -> usize {
    while parent[x] != x {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    x
}

impl JoinGraph {
    fn build(cluster: &Cluster, stats: &mut StatsCache) -> Option<JoinGraph> {
        let leaves = &cluster.leaves;
        let rows = leaves
            .iter()
            .map(|l| stats.estimate(l).rows.map(|r| r.max(1) as f64))
            .collect::<Option<Vec<f64>>>()?;
        // Equalities between two leaves, as (left leaf, right leaf, columns when plain).
        let mut pairs: Vec<(usize, usize, Option<ColumnPair>)> = Vec::new();
        for c in &cluster.conjuncts {
            let Expr::BinaryExpr {
                left,
                op: Operator::Eq,
                right,
            } = c
            else {
                continue;
            };
            let (Some(l), Some(r)) = (single_leaf(left, leaves), single_leaf(right, leaves)) else {
                continue;
            };
            if l == r {
                continue;
            }
            let columns = resolve(left, leaves).zip(resolve(right, leaves));
            pairs.push((l, r, columns));
        }
        // Key classes: plain columns equated with each other, transitively.
        let mut ids: HashMap<ColumnRef, usize> = HashMap::new();
        for (_, _, cols) in &pairs {
            if let Some((a, b)) = cols {
                for c in [a, b] {
                    let n = ids.len();
                    ids.entry(*c).or_insert(n);
                }
            }
        }
        let mut parent: Vec<usize> = (0..ids.len()).collect();
        for (_, _, cols) in &pairs {
            if let Some((a, b)) = cols {
                let (ra, rb) = (find(&mut parent, ids[a]), find(&mut parent, ids[b]));
                parent[ra] = rb;
            }
        }
        let mut distinct: HashMap<usize, f64> = HashMap::new();
        for (&(leaf, index), &id) in &ids {
            let class = find(&mut parent, id);
            if let Some(d) = column_origin_rows(&leaves[leaf], index, stats) {
                let d = d.max(1) as f64;
                let entry = distinct.entry(class).or_insert(d);
                *entry = entry.min(d);
            }
        }
        let mut next_class = ids.len();
        let mut edges = Vec::with_capacity(pairs.len());
        for (l, r, cols) in pairs {
            let (class, left_bound, right_bound) = match cols {
                Some((a, b)) => {
                    let bound = |c: ColumnRef, stats: &mut StatsCache| {
                        column_origin_rows(&leaves[c.0], c.1, stats).map(|d| d.max(1) as f64)
                    };
                    (find(&mut parent, ids[&a]), bound(a, stats), bound(b, stats))
                }
                None => {
                    next_class += 1;
                    (next_class, None, None)
                }
            };
            edges.push(Edge {
                left_leaf: l,
                right_leaf: r,
                distinct: distinct.get(&class).copied(),
                class,
                left_bound,
                right_bound,
            });
        }
        Some(JoinGraph { rows, edges })
    }

    /// The estimated rows of joining `leaf` to the set `joined` (of `joined_rows` rows),
    /// and whether any equality connects them.
    fn join_rows(&self, joined: &[bool], joined_rows: f64, leaf: usize) -> (f64, bool) {
        let mut classes: Vec<(usize, f64)> = Vec::new();
        // The distinct key combinations on each side are bounded by the rows of the tables
        // the key columns come from: (partkey, suppkey) has at most |partsupp| values even
        // though each key alone has a large domain. Without this bound, multiplying the
        // per-key domains makes a composite foreign-key join look almost empty.
        let (mut joined_bound, mut leaf_bound) = (None::<f64>, None::<f64>);
        let widen = |acc: &mut Option<f64>, b: Option<f64>| {
            if let Some(b) = b {
                *acc = Some(acc.map_or(b, |a| a.max(b)));
            }
        };
        for e in &self.edges {
            let (joined_side, leaf_side) = if joined[e.left_leaf] && e.right_leaf == leaf {
                (e.left_bound, e.right_bound)
            } else if joined[e.right_leaf] && e.left_leaf == leaf {
                (e.right_bound, e.left_bound)
            } else {
                continue;
            };
            widen(&mut joined_bound, joined_side);
            widen(&mut leaf_bound, leaf_side);
            if classes.iter().any(|(c, _)| *c == e.class) {
                continue;
            }
            let d = e
                .distinct
                .unwrap_or_else(|| joined_rows.min(self.rows[leaf]));
            classes.push((e.class, d.max(1.0)));
        }
        let product = joined_rows * self.rows[leaf];
        let mut divisor: f64 = classes.iter().map(|(_, d)| d).product();
        for bound in [joined_bound, leaf_bound].into_iter().flatten() {
            divisor = divisor.min(bound);
        }
        ((product / divisor.max(1.0)).max(1.0), !classes.is_empty())
    }

    /// The greedy order from `start` and the sum of its intermediate results' rows.
    fn greedy_from(&self, start: usize) -> (Vec<usize>, f64) {
        let n = self.rows.len();
        let mut joined = vec![false; n];
        joined[start] = true;
        let mut order = vec![start];
        let mut rows = self.rows[start];
        let mut cost = 0.0;
        while order.len() < n {
            // (connected, rows) of each candidate; connected ones first, then fewest rows,
            // then the original position.
            let best = (0..n)
                .filter(|&i| !joined[i])
                .map(|i| {
                    let (r, connected) = self.join_rows(&joined, rows, i);
                    (i, r, connected)
                })
                .min_by(|a, b| b.2.cmp(&a.2).then(a.1.total_cmp(&b.1)).then(a.0.cmp(&b.0)));
            let Some((i, r, _)) = best else { break };
            joined[i] = true;
            order.push(i);
            rows = r;
            cost += r;
        }
        (order, cost)
    }

    /// The cheapest greedy order over all starts (ties keep the earlier start).
    fn best_order(&self) -> Vec<usize> {
        let mut best: Option<(Vec<usize>, f64)> = None;
        for start in 0..self.rows.len() {
            let (order, cost) = self.greedy_from(start);
            if best.as_ref().is_none_or(|(_, c)| cost < *c) {
                best = Some((order, cost));
            }
        }
        best.map(|(o, _)| o).unwrap_or_default()
    }
}

fn same_order(a: &[usize], b: &[usize]) -> bool {
    a.len() == b.len()
        && a.len() >= 2
        && ((a[0] == b[0] && a[1] == b[1]) || (a[0] == b[1] && a[1] == b[0]))
        && a[2..] == b[2..]
}

/// Whether a leaf is a bare table (under aliases and projections) with no filter yet: only
/// such leaves get filters derived from disjunctions, so a derived filter, once pushed into
/// the leaf, is never derived again.
fn is_unfiltered_table(leaf: &Arc<LogicalPlan>) -> bool {
    let mut node = Arc::clone(leaf);
    loop {
        let next = match node.as_ref() {
            LogicalPlan::TableScan(scan) => return scan.filters.is_empty(),
            LogicalPlan::SubqueryAlias(a) => Arc::clone(&a.input),
            LogicalPlan::Projection(p) => Arc::clone(&p.input),
            _ => return false,
        };
        node = next;
    }
}

/// `a OR b OR c` → `[a, b, c]`, without recursion on long chains.
fn split_disjuncts(e: &Expr) -> Vec<&Expr> {
    let mut out = Vec::new();
    let mut stack = vec![e];
    while let Some(e) = stack.pop() {
        match e {
            Expr::BinaryExpr {
                left,
                op: Operator::Or,
                right,
            } => {
                stack.push(right);
                stack.push(left);
            }
            e => out.push(e),
        }
    }
    out
}

/// The leaves with filters implied by the cluster's disjunctions. From
/// `(n1.name = 'A' AND n2.name = 'B') OR (n1.name = 'B' AND n2.name = 'A')` (TPC-H Q7) each
/// nation input gets `n1.name = 'A' OR n1.name = 'B'`: every branch restricts that input, so
/// a row of it that passes no branch's restriction can never be part of a result. The
/// disjunction itself stays above the joins.
fn with_derived_filters(cluster: &Cluster) -> Vec<Arc<LogicalPlan>> {
    let disjunctions: Vec<Vec<&Expr>> = cluster
        .conjuncts
        .iter()
        .map(split_disjuncts)
        .filter(|branches| branches.len() > 1)
        .collect();
    cluster
        .leaves
        .iter()
        .map(|leaf| {
            if disjunctions.is_empty() || !is_unfiltered_table(leaf) {
                return Arc::clone(leaf);
            }
            let schema = leaf.schema();
            let implied: Vec<Expr> = disjunctions
                .iter()
                .filter_map(|branches| {
                    let parts = branches
                        .iter()
                        .map(|b| {
                            let own: Vec<Expr> = b
                                .split_conjunction()
                                .into_iter()
                                .filter(|c| {
                                    !c.column_refs().is_empty()
                                        && is_movable(c)
                                        && columns_in(c, schema)
                                })
                                .cloned()
                                .collect();
                            conjunction(own)
                        })
                        .collect::<Option<Vec<Expr>>>()?;
                    disjunction(parts)
                })
                .collect();
            match conjunction(implied) {
                Some(predicate) => Arc::new(LogicalPlan::Filter(Filter {
                    input: Arc::clone(leaf),
                    predicate,
                })),
                None => Arc::clone(leaf),
            }
        })
        .collect()
}

/// The cluster rebuilt in the chosen order, or `None` when the order stays.
fn reorder(
    cluster: &Cluster,
    root: &Arc<LogicalPlan>,
    stats: &mut StatsCache,
) -> Result<Option<Arc<LogicalPlan>>> {
    let leaves = with_derived_filters(cluster);
    let derived = leaves
        .iter()
        .zip(&cluster.leaves)
        .any(|(a, b)| !Arc::ptr_eq(a, b));
    let current = cluster.current_order(root);
    let order = if cluster.leaves.len() >= 3 {
        let with_filters = Cluster {
            leaves: leaves.clone(),
            conjuncts: cluster.conjuncts.clone(),
        };
        JoinGraph::build(&with_filters, stats)
            .map(|g| g.best_order())
            .or_else(|| current.clone())
    } else {
        current.clone()
    };
    let Some(order) = order.filter(|o| o.len() == leaves.len()) else {
        return Ok(None);
    };
    if !derived && current.is_some_and(|c| same_order(&c, &order)) {
        return Ok(None);
    }
    let mut conjuncts = cluster.conjuncts.clone();
    let mut joined = Arc::clone(&leaves[order[0]]);
    for &i in &order[1..] {
        let leaf = Arc::clone(&leaves[i]);
        let mut on = Vec::new();
        let mut rest = Vec::with_capacity(conjuncts.len());
        for c in conjuncts {
            match connecting_keys(&c, &joined, &leaf) {
                Some(keys) => on.push(keys),
                None => rest.push(c),
            }
        }
        conjuncts = rest;
        joined = if on.is_empty() {
            Arc::new(LogicalPlan::CrossJoin(CrossJoin::new(joined, leaf)))
        } else {
            Arc::new(LogicalPlan::Join(Join::try_new(
                joined,
                leaf,
                on,
                None,
                JoinType::Inner,
                false,
            )?))
        };
    }
    let plan = filter_over(joined, conjuncts);
    if plan.schema().fields() == root.schema().fields() {
        return Ok(Some(plan));
    }
    project_columns(plan, &root.schema().columns()).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::{col, lit};
    use crate::logical::Filter;
    use crate::optimizer::test_util::{scan_with_rows, show};
    use crate::optimizer::{apply_rule, OptimizerConfig};

    fn join(l: Arc<LogicalPlan>, r: Arc<LogicalPlan>, on: (&str, &str)) -> Arc<LogicalPlan> {
        Arc::new(LogicalPlan::Join(
            Join::try_new(
                l,
                r,
                vec![(col(on.0), col(on.1))],
                None,
                JoinType::Inner,
                false,
            )
            .unwrap(),
        ))
    }

    fn filter(input: Arc<LogicalPlan>, predicate: Expr) -> Arc<LogicalPlan> {
        Arc::new(LogicalPlan::Filter(Filter { input, predicate }))
    }

    /// lineitem(6M) ⋈ orders(1.5M) ⋈ supplier(10k) ⋈ nation filtered to one name.
    fn fact_first() -> Arc<LogicalPlan> {
        let l = scan_with_rows("l", &["o", "s"], Some(6_000_000));
        let o = scan_with_rows("o", &["o"], Some(1_500_000));
        let s = scan_with_rows("s", &["s", "n"], Some(10_000));
        let n = filter(
            scan_with_rows("n", &["n", "name"], Some(25)),
            col("n.name").eq(lit(7i64)),
        );
        join(
            join(join(l, o, ("l.o", "o.o")), s, ("l.s", "s.s")),
            n,
            ("s.n", "n.n"),
        )
    }

    #[test]
    fn selective_dimension_is_joined_before_the_fact_table() {
        let t = apply_rule(&JoinReorder, fact_first(), &OptimizerConfig::default()).unwrap();
        assert!(t.transformed);
        assert_eq!(
            show(&t.data),
            "Projection: l.o, l.s, o.o, s.s, s.n, n.n, n.name
  Inner Join: on=[l.o = o.o]
    Inner Join: on=[s.s = l.s]
      Inner Join: on=[s.n = n.n]
        TableScan: s
        Filter: (n.name = 7)
          TableScan: n
      TableScan: l
    TableScan: o"
        );
        // Applying the rule again finds the order already chosen.
        let again = apply_rule(&JoinReorder, t.data, &OptimizerConfig::default()).unwrap();
        assert!(!again.transformed);
    }

    #[test]
    fn foreign_key_domain_comes_from_the_primary_key_table() {
        // c(150k) and s(10k) both reference n(25): joining them on the nation key first is a
        // many-to-many blow-up, so s goes to the big fact table l before c does.
        let c = scan_with_rows("c", &["c", "n"], Some(150_000));
        let s = scan_with_rows("s", &["s", "n"], Some(10_000));
        let l = scan_with_rows("l", &["c", "s"], Some(6_000_000));
        let n = filter(
            scan_with_rows("n", &["n"], Some(25)),
            col("n.n").eq(lit(1i64)),
        );
        let ncs = join(join(n, c, ("n.n", "c.n")), s, ("c.n", "s.n"));
        let plan = Arc::new(LogicalPlan::Join(
            Join::try_new(
                ncs,
                l,
                vec![(col("s.s"), col("l.s")), (col("c.c"), col("l.c"))],
                None,
                JoinType::Inner,
                false,
            )
            .unwrap(),
        ));
        let t = apply_rule(&JoinReorder, plan, &OptimizerConfig::default()).unwrap();
        assert!(t.transformed);
        let text = show(&t.data);
        let pos = |name: &str| text.find(&format!("TableScan: {name}")).unwrap();
        // Left-deep: earlier-joined scans print deeper, i.e. later in the text.
        assert!(pos("l") < pos("s"), "{text}");
        assert!(pos("c") < pos("l"), "{text}");
    }

    #[test]
    fn composite_foreign_key_is_not_mistaken_for_a_tiny_join() {
        // TPC-H Q9's shape: l(6M) references ps(800k) by (partkey, suppkey); each key alone
        // has a big domain, but the pair has at most |ps| values, so l ⋈ ps is as big as l
        // and the filtered part (50k) must meet l first.
        let p = scan_with_rows("p", &["p", "name"], Some(200_000));
        let s = scan_with_rows("s", &["s"], Some(10_000));
        let l = scan_with_rows("l", &["p", "s"], Some(6_000_000));
        let ps = scan_with_rows("ps", &["p", "s"], Some(800_000));
        let plan = join(
            join(
                join(filter(p, col("p.name").like(lit("%g%"))), l, ("p.p", "l.p")),
                s,
                ("l.s", "s.s"),
            ),
            ps,
            ("l.s", "ps.s"),
        );
        // The second key of the last join.
        let LogicalPlan::Join(j) = plan.as_ref() else {
            unreachable!()
        };
        let mut on = j.on.clone();
        on.push((col("l.p"), col("ps.p")));
        let plan = Arc::new(LogicalPlan::Join(
            Join::try_new(
                Arc::clone(&j.left),
                Arc::clone(&j.right),
                on,
                None,
                JoinType::Inner,
                false,
            )
            .unwrap(),
        ));
        let t = apply_rule(&JoinReorder, plan, &OptimizerConfig::default()).unwrap();
        assert!(!t.transformed, "{}", show(&t.data));
    }

    #[test]
    fn disjunctions_give_each_input_the_filter_they_imply() {
        // Q7's shape: only rows of n1 named 1 or 2 can satisfy the disjunction.
        let s = scan_with_rows("s", &["s", "n"], Some(10_000));
        let c = scan_with_rows("c", &["c", "n"], Some(150_000));
        let n1 = scan_with_rows("n1", &["n", "name"], Some(25));
        let n2 = scan_with_rows("n2", &["n", "name"], Some(25));
        let plan = join(
            join(join(s, n1, ("s.n", "n1.n")), c, ("s.n", "c.n")),
            n2,
            ("c.n", "n2.n"),
        );
        let either = col("n1.name")
            .eq(lit(1i64))
            .and(col("n2.name").eq(lit(2i64)))
            .or(col("n1.name")
                .eq(lit(2i64))
                .and(col("n2.name").eq(lit(1i64))));
        let plan = filter(plan, either);
        let t = apply_rule(&JoinReorder, plan, &OptimizerConfig::default()).unwrap();
        assert!(t.transformed);
        let text = show(&t.data);
        assert!(
            text.contains("Filter: ((n1.name = 1) OR (n1.name = 2))\n"),
            "{text}"
        );
        assert!(
            text.contains("Filter: ((n2.name = 2) OR (n2.name = 1))\n"),
            "{text}"
        );
        // s and c are not restricted by the disjunction; it stays on top.
        assert_eq!(text.matches("Filter:").count(), 3, "{text}");
        // The derived filters are not derived again.
        let again = apply_rule(&JoinReorder, t.data, &OptimizerConfig::default()).unwrap();
        assert!(!again.transformed, "{}", show(&again.data));
    }

    #[test]
    fn never_cross_joins_while_a_connected_input_remains() {
        // a(1M) ⋈ b(10) ⋈ c(1M); c is the smallest unfiltered choice after b only by a cross.
        let a = scan_with_rows("a", &["k", "j"], Some(1_000_000));
        let b = scan_with_rows("b", &["k"], Some(10));
        let c = scan_with_rows("c", &["j"], Some(5));
        let plan = join(join(a, c, ("a.j", "c.j")), b, ("a.k", "b.k"));
        let t = apply_rule(&JoinReorder, plan, &OptimizerConfig::default()).unwrap();
        assert!(!show(&t.data).contains("CrossJoin"), "{}", show(&t.data));
    }

    #[test]
    fn two_input_joins_and_unknown_sizes_are_left_alone() {
        let two = join(
            scan_with_rows("a", &["k"], Some(1000)),
            scan_with_rows("b", &["k"], Some(10)),
            ("a.k", "b.k"),
        );
        assert!(
            !apply_rule(&JoinReorder, two, &OptimizerConfig::default())
                .unwrap()
                .transformed
        );
        let unknown = join(
            join(
                scan_with_rows("a", &["k"], None),
                scan_with_rows("b", &["k"], Some(10)),
                ("a.k", "b.k"),
            ),
            scan_with_rows("c", &["k"], Some(1)),
            ("b.k", "c.k"),
        );
        assert!(
            !apply_rule(&JoinReorder, unknown, &OptimizerConfig::default())
                .unwrap()
                .transformed
        );
    }
}
