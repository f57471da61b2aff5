//! Projection pruning: every node receives only the columns something above it reads, and
//! table scans read only those columns from storage.
//!
//! The rule is local, so it works on shared (DAG) plans with memoisation: a Projection (or an
//! Aggregate, or a semi join's right side) looks at its input and, when the input produces
//! columns nobody reads, narrows it — by setting `TableScan.projection`, dropping unused
//! expressions or aggregates, or inserting a narrower Projection below a Filter, Sort, Limit,
//! alias, join side or union input. The top-down traversal then meets the inserted Projection
//! and continues pruning below it. Every step strictly removes columns, so the fixed point is
//! reached; Projections that end up selecting all input columns in order are removed.
//!
//! ```text
//! Projection: t.a                               Projection: t.a
//!   Filter: (t.b > 1)                 →           Filter: (t.b > 1)
//!     TableScan: t                                  TableScan: t projection=[a, b]
//! ```
//! Nodes never lose their last column (an empty batch would lose its row count).

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::error::Result;
use crate::expr::Expr;
use crate::logical::{
    Aggregate, CrossJoin, Filter, Join, Limit, LogicalPlan, Partitioning, Projection, Repartition,
    Sort, SubqueryAlias, TableScan, Union,
};
use crate::optimizer::utils::{
    column_indices, is_identity_projection, project_indices, replace_columns,
};
use crate::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule, Transformed};

pub struct PushDownProjection;

impl OptimizerRule for PushDownProjection {
    fn name(&self) -> &str {
        "push_down_projection"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn rewrite(
        &self,
        plan: Arc<LogicalPlan>,
        _config: &OptimizerConfig,
    ) -> Result<Transformed<Arc<LogicalPlan>>> {
        let new = match plan.as_ref() {
            LogicalPlan::Projection(p) => prune_projection(p)?,
            LogicalPlan::Aggregate(a) => prune_aggregate_input(a)?,
            LogicalPlan::Join(j) if !j.join_type.outputs_right() => prune_semi_right(j)?,
            _ => None,
        };
        Ok(match new {
            Some(p) => Transformed::yes(p),
            None => Transformed::no(plan),
        })
    }
}

/// `needed` made non-empty (keeps column 0 of a non-empty input).
fn at_least_one(mut needed: BTreeSet<usize>, len: usize) -> BTreeSet<usize> {
    if needed.is_empty() && len > 0 {
        needed.insert(0);
    }
    needed
}

/// `input` narrowed to `needed` when that removes columns.
fn narrow(input: &Arc<LogicalPlan>, needed: BTreeSet<usize>) -> Result<Option<Arc<LogicalPlan>>> {
    let len = input.schema().len();
    let needed = at_least_one(needed, len);
    if needed.len() >= len {
        return Ok(None);
    }
    let idx: Vec<usize> = needed.into_iter().collect();
    project_indices(Arc::clone(input), &idx).map(Some)
}

fn projection(input: Arc<LogicalPlan>, exprs: &[Expr]) -> Result<Arc<LogicalPlan>> {
    Ok(Arc::new(LogicalPlan::Projection(Projection::try_new(
        input,
        exprs.to_vec(),
    )?)))
}

fn prune_aggregate_input(a: &Aggregate) -> Result<Option<Arc<LogicalPlan>>> {
    let exprs = a.group_exprs.iter().chain(a.aggr_exprs.iter());
    if a.group_exprs
        .iter()
        .chain(a.aggr_exprs.iter())
        .any(Expr::contains_subquery)
    {
        return Ok(None);
    }
    let Some(needed) = column_indices(exprs, a.input.schema()) else {
        return Ok(None);
    };
    match narrow(&a.input, needed)? {
        Some(input) => Ok(Some(Arc::new(LogicalPlan::Aggregate(Aggregate::try_new(
            input,
            a.group_exprs.clone(),
            a.aggr_exprs.clone(),
        )?)))),
        None => Ok(None),
    }
}

fn prune_semi_right(j: &Join) -> Result<Option<Arc<LogicalPlan>>> {
    let rs = j.right.schema();
    let mut needed = BTreeSet::new();
    for (_, r) in &j.on {
        match column_indices([r], rs) {
            Some(s) => needed.extend(s),
            None => return Ok(None),
        }
    }
    if let Some(f) = &j.filter {
        for c in f.column_refs() {
            if let Ok(Some(i)) = rs.maybe_index_of_column(&c) {
                needed.insert(i);
            }
        }
    }
    match narrow(&j.right, needed)? {
        Some(right) => Ok(Some(Arc::new(LogicalPlan::Join(Join::try_new(
            Arc::clone(&j.left),
            right,
            j.on.clone(),
            j.filter.clone(),
            j.join_type,
            j.null_aware,
        )?)))),
        None => Ok(None),
    }
}

/// Indices of `schema` read by `exprs`, or `None` when one does not resolve.
fn with_exprs<'a>(
    mut needed: BTreeSet<usize>,
    exprs: impl IntoIterator<Item = &'a Expr>,
    schema: &crate::schema::PlanSchema,
) -> Option<BTreeSet<usize>> {
    needed.extend(column_indices(exprs, schema)?);
    Some(needed)
}

fn prune_projection(p: &Projection) -> Result<Option<Arc<LogicalPlan>>> {
    if is_identity_projection(p) {
        return Ok(Some(Arc::clone(&p.input)));
    }
    if p.exprs.iter().any(Expr::contains_subquery) {
        return Ok(None);
    }
    let input = &p.input;
    let Some(needed) = column_indices(&p.exprs, input.schema()) else {
        return Ok(None);
    };
    let over = |new_input: Option<Arc<LogicalPlan>>| -> Result<Option<Arc<LogicalPlan>>> {
        match new_input {
            Some(i) => projection(i, &p.exprs).map(Some),
            None => Ok(None),
        }
    };
    match input.as_ref() {
        LogicalPlan::TableScan(scan) => {
            let Some(needed) = with_exprs(needed, &scan.filters, &scan.schema) else {
                return Ok(None);
            };
            let needed = at_least_one(needed, scan.schema.len());
            if needed.len() >= scan.schema.len() {
                return Ok(None);
            }
            let source_idx: Vec<usize> = needed
                .iter()
                .map(|&i| scan.projection.as_ref().map_or(i, |proj| proj[i]))
                .collect();
            let new_scan = Arc::new(LogicalPlan::TableScan(TableScan::try_new(
                scan.table_name.clone(),
                Arc::clone(&scan.source),
                Some(source_idx),
                scan.filters.clone(),
            )?));
            let new = Projection::try_new(new_scan, p.exprs.clone())?;
            if is_identity_projection(&new) {
                return Ok(Some(Arc::clone(&new.input)));
            }
            Ok(Some(Arc::new(LogicalPlan::Projection(new))))
        }
        LogicalPlan::Projection(inner) => {
            if let Some(merged) = merge_projections(p, inner)? {
                return merge_chain(merged).map(Some);
            }
            let needed = at_least_one(needed, inner.exprs.len());
            if needed.len() >= inner.exprs.len() {
                return Ok(None);
            }
            let kept: Vec<Expr> = needed.iter().map(|&i| inner.exprs[i].clone()).collect();
            over(Some(projection(Arc::clone(&inner.input), &kept)?))
        }
        LogicalPlan::Aggregate(a) => {
            let n = a.group_exprs.len();
            let kept: Vec<Expr> = a
                .aggr_exprs
                .iter()
                .enumerate()
                .filter(|(i, _)| needed.contains(&(n + i)))
                .map(|(_, e)| e.clone())
                .collect();
            if kept.len() == a.aggr_exprs.len() || (kept.is_empty() && n == 0) {
                return Ok(None);
            }
            over(Some(Arc::new(LogicalPlan::Aggregate(Aggregate::try_new(
                Arc::clone(&a.input),
                a.group_exprs.clone(),
                kept,
            )?))))
        }
        LogicalPlan::Filter(f) => {
            let Some(needed) = with_exprs(needed, [&f.predicate], f.input.schema()) else {
                return Ok(None);
            };
            if f.predicate.contains_subquery() {
                return Ok(None);
            }
            // Below a filter, a join is narrowed by its sides only: a projection between
            // them would just be swapped above the filter again by `push_down_filter` (the
            // predicate needs both sides, so it stops at the join), and the two rules would
            // undo each other pass after pass.
            let narrowed = match f.input.as_ref() {
                LogicalPlan::Join(j) => narrow_join_sides(j, &needed)?,
                _ => narrow(&f.input, needed)?,
            };
            over(narrowed.map(|i| {
                Arc::new(LogicalPlan::Filter(Filter {
                    input: i,
                    predicate: f.predicate.clone(),
                }))
            }))
        }
        LogicalPlan::Sort(s) => {
            let Some(needed) =
                with_exprs(needed, s.exprs.iter().map(|e| &e.expr), s.input.schema())
            else {
                return Ok(None);
            };
            over(narrow(&s.input, needed)?.map(|i| {
                Arc::new(LogicalPlan::Sort(Sort {
                    input: i,
                    exprs: s.exprs.clone(),
                    fetch: s.fetch,
                }))
            }))
        }
        LogicalPlan::Limit(l) => over(narrow(&l.input, needed)?.map(|i| {
            Arc::new(LogicalPlan::Limit(Limit {
                input: i,
                skip: l.skip,
                fetch: l.fetch,
            }))
        })),
        LogicalPlan::Repartition(r) => {
            let keys: Vec<&Expr> = match &r.partitioning {
                Partitioning::Hash(e, _) => e.iter().collect(),
                Partitioning::RoundRobin(_) => vec![],
            };
            let Some(needed) = with_exprs(needed, keys, r.input.schema()) else {
                return Ok(None);
            };
            over(narrow(&r.input, needed)?.map(|i| {
                Arc::new(LogicalPlan::Repartition(Repartition {
                    input: i,
                    partitioning: r.partitioning.clone(),
                }))
            }))
        }
        LogicalPlan::SubqueryAlias(a) => over(narrow(&a.input, needed)?.map(|i| {
            Arc::new(LogicalPlan::SubqueryAlias(SubqueryAlias::new(
                i,
                a.alias.clone(),
            )))
        })),
        LogicalPlan::Union(u) => {
            let needed = at_least_one(needed, u.schema.len());
            if needed.len() >= u.schema.len() {
                return Ok(None);
            }
            let idx: Vec<usize> = needed.into_iter().collect();
            let inputs = u
                .inputs
                .iter()
                .map(|i| project_indices(Arc::clone(i), &idx))
                .collect::<Result<Vec<_>>>()?;
            over(Some(Arc::new(LogicalPlan::Union(Union::try_new(inputs)?))))
        }
        LogicalPlan::Join(j) => over(narrow_join_sides(j, &needed)?),
        LogicalPlan::CrossJoin(j) => {
            let n_left = j.left.schema().len();
            let left: BTreeSet<usize> = needed.iter().copied().filter(|&i| i < n_left).collect();
            let right: BTreeSet<usize> = needed
                .iter()
                .filter(|&&i| i >= n_left)
                .map(|i| i - n_left)
                .collect();
            let new_left = narrow(&j.left, left)?;
            let new_right = narrow(&j.right, right)?;
            if new_left.is_none() && new_right.is_none() {
                return Ok(None);
            }
            over(Some(Arc::new(LogicalPlan::CrossJoin(CrossJoin::new(
                new_left.unwrap_or_else(|| Arc::clone(&j.left)),
                new_right.unwrap_or_else(|| Arc::clone(&j.right)),
            )))))
        }
        _ => Ok(None),
    }
}

/// `j` with each side narrowed to the columns of `needed` (indices into the join's output)
/// plus its join keys and filter columns; `None` when neither side loses a column. The
/// join's own output keeps the key columns: the projection above drops them.
fn narrow_join_sides(j: &Join, needed: &BTreeSet<usize>) -> Result<Option<Arc<LogicalPlan>>> {
    let n_left = j.left.schema().len();
    let mut left: BTreeSet<usize> = needed.iter().copied().filter(|&i| i < n_left).collect();
    let mut right: BTreeSet<usize> = if j.join_type.outputs_right() {
        needed
            .iter()
            .filter(|&&i| i >= n_left)
            .map(|i| i - n_left)
            .collect()
    } else {
        BTreeSet::new()
    };
    for (l, r) in &j.on {
        let (Some(ls), Some(rs)) = (
            column_indices([l], j.left.schema()),
            column_indices([r], j.right.schema()),
        ) else {
            return Ok(None);
        };
        left.extend(ls);
        right.extend(rs);
    }
    if let Some(f) = &j.filter {
        for c in f.column_refs() {
            if let Ok(Some(i)) = j.left.schema().maybe_index_of_column(&c) {
                left.insert(i);
            } else if let Ok(Some(i)) = j.right.schema().maybe_index_of_column(&c) {
                right.insert(i);
            } else {
                return Ok(None);
            }
        }
    }
    let new_left = narrow(&j.left, left)?;
    let new_right = narrow(&j.right, right)?;
    if new_left.is_none() && new_right.is_none() {
        return Ok(None);
    }
    Ok(Some(Arc::new(LogicalPlan::Join(Join::try_new(
        new_left.unwrap_or_else(|| Arc::clone(&j.left)),
        new_right.unwrap_or_else(|| Arc::clone(&j.right)),
        j.on.clone(),
        j.filter.clone(),
        j.join_type,
        j.null_aware,
    )?))))
}

/// Keeps merging `plan` (just merged) with the column-only projections below it.
///
/// The traversal visits a rewritten node's inputs, not the node again, so without this one
/// merge per pass leaves the next projection of a chain in place — and pushing a filter
/// below a projection while narrowing that filter's input makes a new one each pass: the
/// optimizer then ping-pongs with `push_down_filter` until its pass limit, and the chain
/// never narrows (TPC-H Q20's decorrelated subquery read every partsupp column, comments
/// included). A loop, not recursion: chains can be long in iterative plans.
fn merge_chain(mut plan: Arc<LogicalPlan>) -> Result<Arc<LogicalPlan>> {
    loop {
        let LogicalPlan::Projection(outer) = plan.as_ref() else {
            return Ok(plan);
        };
        let LogicalPlan::Projection(inner) = outer.input.as_ref() else {
            return Ok(plan);
        };
        match merge_projections(outer, inner)? {
            Some(merged) => plan = merged,
            None => return Ok(plan),
        }
    }
}

/// `Projection(outer) over Projection(inner)` → one Projection, when the inner one only
/// renames or selects columns (so nothing is computed twice).
fn merge_projections(outer: &Projection, inner: &Projection) -> Result<Option<Arc<LogicalPlan>>> {
    let simple = inner
        .exprs
        .iter()
        .all(|e| matches!(e.unalias(), Expr::Column(_)));
    if !simple {
        return Ok(None);
    }
    let mut ok = true;
    let exprs: Vec<Expr> = outer
        .exprs
        .iter()
        .map(|e| {
            let name = e.output_name();
            let new = replace_columns(e.clone(), &mut |c| match inner
                .schema
                .maybe_index_of_column(c)
            {
                Ok(Some(i)) => Some(inner.exprs[i].unalias().clone()),
                _ => {
                    ok = false;
                    None
                }
            });
            if new.output_name() == name {
                new
            } else {
                new.alias(name)
            }
        })
        .collect();
    if !ok {
        return Ok(None);
    }
    let Ok(merged) = Projection::try_new(Arc::clone(&inner.input), exprs) else {
        return Ok(None);
    };
    // Only when the result is indistinguishable from the original outer projection.
    if merged.schema != outer.schema {
        return Ok(None);
    }
    if is_identity_projection(&merged) {
        return Ok(Some(Arc::clone(&merged.input)));
    }
    Ok(Some(Arc::new(LogicalPlan::Projection(merged))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::{col, count_star, lit};
    use crate::logical::JoinType;
    use crate::optimizer::test_util::{scan, show};
    use crate::optimizer::{apply_rule, OptimizerConfig};

    fn run(plan: Arc<LogicalPlan>) -> String {
        let mut plan = plan;
        // Several passes, as the optimizer would.
        for _ in 0..5 {
            plan = apply_rule(&PushDownProjection, plan, &OptimizerConfig::default())
                .unwrap()
                .data;
        }
        show(&plan)
    }

    #[test]
    fn scan_reads_only_needed_columns_through_filter() {
        let f = Arc::new(LogicalPlan::Filter(Filter {
            input: scan("t", &["a", "b", "c", "d"]),
            predicate: col("t.b").gt(lit(1i64)),
        }));
        let p = projection(f, &[col("t.a")]).unwrap();
        assert_eq!(
            show(&p),
            "Projection: t.a\n  Filter: (t.b > 1)\n    TableScan: t"
        );
        assert_eq!(
            run(p),
            "Projection: t.a\n  Filter: (t.b > 1)\n    TableScan: t projection=[a, b]"
        );
    }

    #[test]
    fn join_sides_and_aggregate_inputs_are_pruned() {
        let j = Arc::new(LogicalPlan::Join(
            Join::try_new(
                scan("a", &["k", "x", "y"]),
                scan("b", &["k", "z"]),
                vec![(col("a.k"), col("b.k"))],
                None,
                JoinType::Inner,
                false,
            )
            .unwrap(),
        ));
        let agg = Arc::new(LogicalPlan::Aggregate(
            Aggregate::try_new(j, vec![col("a.x")], vec![count_star()]).unwrap(),
        ));
        assert_eq!(
            run(agg),
            "Aggregate: groupBy=[a.x], aggr=[count(*)]
  Projection: a.x
    Inner Join: on=[a.k = b.k]
      TableScan: a projection=[k, x]
      TableScan: b projection=[k]"
        );
    }

    #[test]
    fn semi_join_right_side_keeps_only_keys() {
        let j = Arc::new(LogicalPlan::Join(
            Join::try_new(
                scan("a", &["k"]),
                scan("b", &["k", "z"]),
                vec![(col("a.k"), col("b.k"))],
                None,
                JoinType::LeftSemi,
                false,
            )
            .unwrap(),
        ));
        assert_eq!(
            run(j),
            "LeftSemi Join: on=[a.k = b.k]\n  TableScan: a\n  TableScan: b projection=[k]"
        );
    }

    #[test]
    fn renaming_projections_merge_and_identity_projections_vanish() {
        let inner =
            projection(scan("t", &["a", "b"]), &[col("t.a").alias("x"), col("t.b")]).unwrap();
        let outer = projection(inner, &[col("x")]).unwrap();
        assert_eq!(
            run(outer),
            "Projection: t.a AS x\n  TableScan: t projection=[a]"
        );
        let identity = projection(scan("t", &["a"]), &[col("t.a")]).unwrap();
        assert_eq!(run(identity), "TableScan: t");
    }
}
