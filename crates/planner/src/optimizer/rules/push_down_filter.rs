//! Moves filters as close to the data as they can go, so fewer rows flow through joins,
//! aggregates and shuffles, and table scans can skip data.
//!
//! Each conjunct goes down on its own: through projections (columns replaced by the
//! expressions that compute them), aliases, sorts, DISTINCT and repartitions; into the sides
//! of joins that keep its semantics (inner: either side; left: only left-side conjuncts;
//! semi/anti: the left side); through aggregates when it reads group columns only; into every
//! input of a UNION; finally into `TableScan.filters`, where sources may use it to skip row
//! groups. Scan filters are inexact, so the Filter above the scan stays.
//!
//! ```text
//! Filter: (x.a > 1) AND (x.b = 2)             Projection: t.a AS a, t.b AS b
//!   Projection: t.a AS a, t.b AS b      →       Filter: ((t.a > 1) AND (t.b = 2))
//!     TableScan: t                                  TableScan: t filters=[(t.a > 1), (t.b = 2)]
//! ```
//! Join conditions in ON (`Join.filter`) that read one side only are pushed into that side
//! when the join type allows it.

use std::sync::Arc;

use crate::error::Result;
use crate::expr::{conjunction, Expr, Operator};
use crate::logical::{
    Aggregate, CrossJoin, Distinct, Filter, Join, JoinType, LogicalPlan, Projection, Repartition,
    Sort, SubqueryAlias, TableScan, Union,
};
use crate::optimizer::utils::{
    columns_in, filter_over, is_movable, rebase_columns, replace_columns, split_conjuncts,
};
use crate::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule, Transformed};

pub struct PushDownFilter;

impl OptimizerRule for PushDownFilter {
    fn name(&self) -> &str {
        "push_down_filter"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn rewrite(
        &self,
        plan: Arc<LogicalPlan>,
        _config: &OptimizerConfig,
    ) -> Result<Transformed<Arc<LogicalPlan>>> {
        match plan.as_ref() {
            LogicalPlan::Filter(f) => push_filter(f, &plan),
            LogicalPlan::Join(j) if j.filter.is_some() => push_join_filter(j, &plan),
            _ => Ok(Transformed::no(plan)),
        }
    }
}

/// Which conjuncts go where.
struct Split {
    pushed: Vec<Expr>,
    kept: Vec<Expr>,
}

fn split_by(conjuncts: Vec<Expr>, mut f: impl FnMut(&Expr) -> Option<Expr>) -> Split {
    let mut s = Split {
        pushed: vec![],
        kept: vec![],
    };
    for c in conjuncts {
        match is_movable(&c).then(|| f(&c)).flatten() {
            Some(p) => s.pushed.push(p),
            None => s.kept.push(c),
        }
    }
    s
}

fn push_filter(f: &Filter, plan: &Arc<LogicalPlan>) -> Result<Transformed<Arc<LogicalPlan>>> {
    let conjuncts = split_conjuncts(&f.predicate);
    let input = &f.input;
    let unchanged = || Ok(Transformed::no(Arc::clone(plan)));
    let rebuilt = |node: LogicalPlan, kept: Vec<Expr>| {
        Ok(Transformed::yes(filter_over(Arc::new(node), kept)))
    };
    match input.as_ref() {
        LogicalPlan::Filter(inner) => {
            let mut all = split_conjuncts(&inner.predicate);
            all.extend(conjuncts);
            Ok(Transformed::yes(filter_over(Arc::clone(&inner.input), all)))
        }
        LogicalPlan::Projection(p) => {
            let s = split_by(conjuncts, |c| {
                let mut ok = true;
                let e = replace_columns(c.clone(), &mut |col| match p
                    .schema
                    .maybe_index_of_column(col)
                {
                    Ok(Some(i)) if is_movable(&p.exprs[i]) => Some(p.exprs[i].unalias().clone()),
                    _ => {
                        ok = false;
                        None
                    }
                });
                ok.then_some(e)
            });
            if s.pushed.is_empty() {
                return unchanged();
            }
            let below = filter_over(Arc::clone(&p.input), s.pushed);
            rebuilt(
                LogicalPlan::Projection(Projection::try_new(below, p.exprs.clone())?),
                s.kept,
            )
        }
        LogicalPlan::SubqueryAlias(a) => {
            let s = split_by(conjuncts, |c| {
                rebase_columns(c.clone(), &a.schema, a.input.schema())
            });
            if s.pushed.is_empty() {
                return unchanged();
            }
            let below = filter_over(Arc::clone(&a.input), s.pushed);
            rebuilt(
                LogicalPlan::SubqueryAlias(SubqueryAlias::new(below, a.alias.clone())),
                s.kept,
            )
        }
        LogicalPlan::Sort(sort) if sort.fetch.is_none() => {
            let s = split_by(conjuncts, |c| Some(c.clone()));
            if s.pushed.is_empty() {
                return unchanged();
            }
            rebuilt(
                LogicalPlan::Sort(Sort {
                    input: filter_over(Arc::clone(&sort.input), s.pushed),
                    exprs: sort.exprs.clone(),
                    fetch: None,
                }),
                s.kept,
            )
        }
        LogicalPlan::Distinct(d) => {
            let s = split_by(conjuncts, |c| Some(c.clone()));
            if s.pushed.is_empty() {
                return unchanged();
            }
            rebuilt(
                LogicalPlan::Distinct(Distinct {
                    input: filter_over(Arc::clone(&d.input), s.pushed),
                }),
                s.kept,
            )
        }
        LogicalPlan::Repartition(r) => {
            let s = split_by(conjuncts, |c| Some(c.clone()));
            if s.pushed.is_empty() {
                return unchanged();
            }
            rebuilt(
                LogicalPlan::Repartition(Repartition {
                    input: filter_over(Arc::clone(&r.input), s.pushed),
                    partitioning: r.partitioning.clone(),
                }),
                s.kept,
            )
        }
        LogicalPlan::Aggregate(a) => {
            let n_groups = a.group_exprs.len();
            let s = split_by(conjuncts, |c| {
                let mut ok = !c.column_refs().is_empty();
                let e = replace_columns(c.clone(), &mut |col| match a
                    .schema
                    .maybe_index_of_column(col)
                {
                    Ok(Some(i)) if i < n_groups => Some(a.group_exprs[i].unalias().clone()),
                    _ => {
                        ok = false;
                        None
                    }
                });
                ok.then_some(e)
            });
            if s.pushed.is_empty() {
                return unchanged();
            }
            let below = filter_over(Arc::clone(&a.input), s.pushed);
            rebuilt(
                LogicalPlan::Aggregate(Aggregate::try_new(
                    below,
                    a.group_exprs.clone(),
                    a.aggr_exprs.clone(),
                )?),
                s.kept,
            )
        }
        LogicalPlan::Union(u) => {
            let s = split_by(conjuncts, |c| {
                u.inputs
                    .iter()
                    .all(|i| rebase_columns(c.clone(), &u.schema, i.schema()).is_some())
                    .then(|| c.clone())
            });
            if s.pushed.is_empty() {
                return unchanged();
            }
            let inputs = u
                .inputs
                .iter()
                .map(|i| {
                    let rebased = s
                        .pushed
                        .iter()
                        .filter_map(|c| rebase_columns(c.clone(), &u.schema, i.schema()))
                        .collect();
                    filter_over(Arc::clone(i), rebased)
                })
                .collect();
            rebuilt(LogicalPlan::Union(Union::try_new(inputs)?), s.kept)
        }
        LogicalPlan::Join(j) => push_into_join(j, conjuncts, plan),
        LogicalPlan::CrossJoin(j) => {
            let mut left = vec![];
            let mut right = vec![];
            let mut kept = vec![];
            for c in conjuncts {
                let movable = is_movable(&c) && !c.column_refs().is_empty();
                if movable && columns_in(&c, j.left.schema()) {
                    left.push(c);
                } else if movable && columns_in(&c, j.right.schema()) {
                    right.push(c);
                } else {
                    kept.push(c);
                }
            }
            if left.is_empty() && right.is_empty() {
                return unchanged();
            }
            rebuilt(
                LogicalPlan::CrossJoin(CrossJoin::new(
                    filter_over(Arc::clone(&j.left), left),
                    filter_over(Arc::clone(&j.right), right),
                )),
                kept,
            )
        }
        LogicalPlan::TableScan(scan) => {
            let mut filters = scan.filters.clone();
            for c in &conjuncts {
                if is_movable(c)
                    && !c.column_refs().is_empty()
                    && columns_in(c, &scan.schema)
                    && !filters.contains(c)
                {
                    filters.push(c.clone());
                }
            }
            if filters.len() == scan.filters.len() {
                return unchanged();
            }
            let new_scan = TableScan {
                filters,
                ..scan.clone()
            };
            // Scan filters are hints: the Filter stays.
            Ok(Transformed::yes(Arc::new(LogicalPlan::Filter(Filter {
                input: Arc::new(LogicalPlan::TableScan(new_scan)),
                predicate: f.predicate.clone(),
            }))))
        }
        _ => unchanged(),
    }
}

/// Where a conjunct over a join's output may go.
enum Side {
    Left,
    Right,
    /// An equality between the sides: a new join key `(left, right)`.
    Key(Expr, Expr),
    Stay,
}

fn side_of(c: &Expr, j: &Join) -> Side {
    if !is_movable(c) || c.column_refs().is_empty() {
        return Side::Stay;
    }
    let (ls, rs) = (j.left.schema(), j.right.schema());
    if columns_in(c, ls) {
        return Side::Left;
    }
    if j.join_type.outputs_right() && columns_in(c, rs) {
        return Side::Right;
    }
    if let Expr::BinaryExpr {
        left,
        op: Operator::Eq,
        right,
    } = c
    {
        let has_cols = !left.column_refs().is_empty() && !right.column_refs().is_empty();
        if has_cols && columns_in(left, ls) && columns_in(right, rs) {
            return Side::Key(left.as_ref().clone(), right.as_ref().clone());
        }
        if has_cols && columns_in(right, ls) && columns_in(left, rs) {
            return Side::Key(right.as_ref().clone(), left.as_ref().clone());
        }
    }
    Side::Stay
}

/// A Filter over a join: conjuncts go to the sides the join type allows.
fn push_into_join(
    j: &Join,
    conjuncts: Vec<Expr>,
    plan: &Arc<LogicalPlan>,
) -> Result<Transformed<Arc<LogicalPlan>>> {
    let (to_left, to_right, keys) = match j.join_type {
        JoinType::Inner => (true, true, true),
        JoinType::Left | JoinType::LeftSemi | JoinType::LeftAnti => (true, false, false),
        JoinType::Right => (false, true, false),
        JoinType::Full => (false, false, false),
    };
    let mut left = vec![];
    let mut right = vec![];
    let mut on = j.on.clone();
    let mut kept = vec![];
    for c in conjuncts {
        match side_of(&c, j) {
            Side::Left if to_left => left.push(c),
            Side::Right if to_right => right.push(c),
            Side::Key(l, r) if keys && !j.null_aware => on.push((l, r)),
            _ => kept.push(c),
        }
    }
    if left.is_empty() && right.is_empty() && on.len() == j.on.len() {
        return Ok(Transformed::no(Arc::clone(plan)));
    }
    let join = Join::try_new(
        filter_over(Arc::clone(&j.left), left),
        filter_over(Arc::clone(&j.right), right),
        on,
        j.filter.clone(),
        j.join_type,
        j.null_aware,
    )?;
    Ok(Transformed::yes(filter_over(
        Arc::new(LogicalPlan::Join(join)),
        kept,
    )))
}

/// A join's own ON condition: conjuncts over one side go into that side when rows the
/// condition rejects would not be emitted anyway.
fn push_join_filter(j: &Join, plan: &Arc<LogicalPlan>) -> Result<Transformed<Arc<LogicalPlan>>> {
    let Some(filter) = &j.filter else {
        return Ok(Transformed::no(Arc::clone(plan)));
    };
    let (to_left, to_right) = match j.join_type {
        JoinType::Inner => (true, true),
        JoinType::Left | JoinType::LeftSemi | JoinType::LeftAnti => (false, true),
        JoinType::Right => (true, false),
        JoinType::Full => (false, false),
    };
    let mut left = vec![];
    let mut right = vec![];
    let mut kept = vec![];
    for c in split_conjuncts(filter) {
        let movable = is_movable(&c) && !c.column_refs().is_empty();
        if movable && to_left && columns_in(&c, j.left.schema()) {
            left.push(c);
        } else if movable && to_right && columns_in(&c, j.right.schema()) {
            right.push(c);
        } else {
            kept.push(c);
        }
    }
    if left.is_empty() && right.is_empty() {
        return Ok(Transformed::no(Arc::clone(plan)));
    }
    let join = Join::try_new(
        filter_over(Arc::clone(&j.left), left),
        filter_over(Arc::clone(&j.right), right),
        j.on.clone(),
        conjunction(kept),
        j.join_type,
        j.null_aware,
    )?;
    Ok(Transformed::yes(Arc::new(LogicalPlan::Join(join))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::{col, lit, sum};
    use crate::optimizer::test_util::{scan, show};
    use crate::optimizer::{apply_rule, OptimizerConfig};

    fn filter(input: Arc<LogicalPlan>, predicate: Expr) -> Arc<LogicalPlan> {
        Arc::new(LogicalPlan::Filter(Filter { input, predicate }))
    }

    fn run(plan: Arc<LogicalPlan>) -> String {
        let t = apply_rule(&PushDownFilter, plan, &OptimizerConfig::default()).unwrap();
        show(&t.data)
    }

    fn join(l: Arc<LogicalPlan>, r: Arc<LogicalPlan>, t: JoinType) -> Arc<LogicalPlan> {
        Arc::new(LogicalPlan::Join(
            Join::try_new(l, r, vec![(col("a.k"), col("b.k"))], None, t, false).unwrap(),
        ))
    }

    #[test]
    fn through_projection_and_alias_into_scan() {
        let p = Arc::new(LogicalPlan::Projection(
            Projection::try_new(
                scan("t", &["a", "b"]),
                vec![col("t.a").alias("a"), col("t.b").alias("b")],
            )
            .unwrap(),
        ));
        let alias = Arc::new(LogicalPlan::SubqueryAlias(SubqueryAlias::new(p, "x")));
        let plan = filter(
            alias,
            col("x.a").gt(lit(1i64)).and(col("x.b").eq(lit(2i64))),
        );
        assert_eq!(
            run(plan),
            "SubqueryAlias: x
  Projection: t.a AS a, t.b AS b
    Filter: ((t.a > 1) AND (t.b = 2))
      TableScan: t filters=[(t.a > 1), (t.b = 2)]"
        );
    }

    #[test]
    fn inner_join_takes_both_sides_left_join_only_left() {
        let pred = col("a.v")
            .gt(lit(1i64))
            .and(col("b.w").lt(lit(5i64)))
            .and(col("a.v").gt(col("b.w")));
        let inner = filter(
            join(
                scan("a", &["k", "v"]),
                scan("b", &["k", "w"]),
                JoinType::Inner,
            ),
            pred.clone(),
        );
        assert_eq!(
            run(inner),
            "Filter: (a.v > b.w)
  Inner Join: on=[a.k = b.k]
    Filter: (a.v > 1)
      TableScan: a filters=[(a.v > 1)]
    Filter: (b.w < 5)
      TableScan: b filters=[(b.w < 5)]"
        );
        let left = filter(
            join(
                scan("a", &["k", "v"]),
                scan("b", &["k", "w"]),
                JoinType::Left,
            ),
            pred,
        );
        assert_eq!(
            run(left),
            "Filter: ((b.w < 5) AND (a.v > b.w))
  Left Join: on=[a.k = b.k]
    Filter: (a.v > 1)
      TableScan: a filters=[(a.v > 1)]
    TableScan: b"
        );
    }

    #[test]
    fn through_aggregate_only_on_group_columns() {
        let agg = Arc::new(LogicalPlan::Aggregate(
            Aggregate::try_new(
                scan("t", &["g", "v"]),
                vec![col("t.g")],
                vec![sum(col("t.v"))],
            )
            .unwrap(),
        ));
        let sum_col = Expr::Column(crate::schema::Column::unqualified("sum(t.v)"));
        let plan = filter(agg, col("t.g").eq(lit(1i64)).and(sum_col.gt(lit(10i64))));
        assert_eq!(
            run(plan),
            "Filter: (sum(t.v) > 10)
  Aggregate: groupBy=[t.g], aggr=[sum(t.v)]
    Filter: (t.g = 1)
      TableScan: t filters=[(t.g = 1)]"
        );
    }

    #[test]
    fn on_clause_conditions_go_to_the_inner_side() {
        let j = Arc::new(LogicalPlan::Join(
            Join::try_new(
                scan("a", &["k"]),
                scan("b", &["k", "w"]),
                vec![(col("a.k"), col("b.k"))],
                Some(col("b.w").gt(lit(1i64))),
                JoinType::LeftSemi,
                false,
            )
            .unwrap(),
        ));
        assert_eq!(
            run(j),
            "LeftSemi Join: on=[a.k = b.k]
  TableScan: a
  Filter: (b.w > 1)
    TableScan: b filters=[(b.w > 1)]"
        );
    }

    #[test]
    fn into_every_union_input() {
        let u = Arc::new(LogicalPlan::Union(
            Union::try_new(vec![scan("a", &["x"]), scan("b", &["y"])]).unwrap(),
        ));
        assert_eq!(
            run(filter(u, col("a.x").gt(lit(0i64)))),
            "Union
  Filter: (a.x > 0)
    TableScan: a filters=[(a.x > 0)]
  Filter: (b.y > 0)
    TableScan: b filters=[(b.y > 0)]"
        );
    }
}
