//! Turns subquery expressions into joins, so the executor only ever runs joins.
//!
//! Forms handled (all that TPC-H uses), in Filter predicates and (scalar) in projections:
//!
//! * `x [NOT] IN (SELECT v ...)` → LeftSemi join on `x = v` (NOT IN: null-aware LeftAnti).
//! * `[NOT] EXISTS (SELECT ... WHERE inner.k = outer.k AND inner.j <> outer.j)` → LeftSemi /
//!   LeftAnti join: correlated equalities become join keys, other correlated predicates the
//!   join filter; uncorrelated predicates stay inside.
//! * uncorrelated scalar subquery → CrossJoin with its single row: a global aggregate as it
//!   is, anything else aggregated to (row count, value) first, so no rows give NULL and two
//!   rows an error, as SQL says, instead of the join dropping or repeating outer rows.
//! * correlated scalar subquery with an aggregate → the aggregate grouped by the correlated
//!   inner columns, Left-joined on them (a missing group means "aggregate over no rows": COUNT
//!   is coalesced to 0, others are NULL as SQL says).
//!
//! ```text
//! Filter: o.k > 0 AND EXISTS (<subquery>)         Filter: (o.k > 0)
//!   TableScan: o                                    LeftSemi Join: on=[o.k = __sq_1.__key0]
//!   subquery:                              →          TableScan: o
//!   Projection: l.k, l.v                              SubqueryAlias: __sq_1
//!     Filter: l.k = outer(o.k) AND l.v > 1              Projection: l.k AS __key0
//!       TableScan: l                                      Filter: (l.v > 1)
//!                                                           TableScan: l
//! ```
//! The subquery side is always projected to fresh names under a fresh alias (`__sq_N`), so
//! it can never clash with outer columns even when both read the same table (TPC-H Q17, Q22).
//! Nested subqueries are decorrelated inside-out.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion_common::ScalarValue;

use crate::error::{EmberError, Result};
use crate::expr::{
    col, count_star, func, max, AggregateFunction, BuiltinFunction, Expr, Operator, Subquery,
};
use crate::logical::{
    Aggregate, CrossJoin, Join, JoinType, LogicalPlan, Projection, SubqueryAlias,
};
use crate::not_impl_err;
use crate::optimizer::utils::{
    columns_in, filter_over, outer_to_column, project_columns, replace_columns, split_conjuncts,
};
use crate::optimizer::{transform_up, OptimizerConfig, OptimizerRule, Transformed};
use crate::schema::Column;

pub struct DecorrelateSubqueries;

impl OptimizerRule for DecorrelateSubqueries {
    fn name(&self) -> &str {
        "decorrelate_subqueries"
    }

    fn apply_order(&self) -> Option<crate::optimizer::ApplyOrder> {
        None
    }

    fn rewrite(
        &self,
        plan: Arc<LogicalPlan>,
        _config: &OptimizerConfig,
    ) -> Result<Transformed<Arc<LogicalPlan>>> {
        let names = existing_aliases(&plan);
        if !names.has_subqueries {
            return Ok(Transformed::no(plan));
        }
        let mut ctx = Decorrelator {
            taken: names.aliases,
            next: 1,
        };
        ctx.decorrelate(plan)
    }
}

struct PlanNames {
    aliases: HashSet<String>,
    has_subqueries: bool,
}

/// Aliases already used in the plan (fresh ones must not collide) and whether there is
/// anything to do.
fn existing_aliases(plan: &Arc<LogicalPlan>) -> PlanNames {
    let mut out = PlanNames {
        aliases: HashSet::new(),
        has_subqueries: false,
    };
    let mut seen = HashSet::new();
    let mut stack = vec![Arc::clone(plan)];
    while let Some(p) = stack.pop() {
        if !seen.insert(Arc::as_ptr(&p)) {
            continue;
        }
        if let LogicalPlan::SubqueryAlias(a) = p.as_ref() {
            out.aliases.insert(a.alias.clone());
        }
        out.has_subqueries |= p.expressions().iter().any(|e| e.contains_subquery());
        stack.extend(p.inputs().into_iter().cloned());
    }
    out
}

/// Whether any expression of the plan refers to an enclosing query.
fn has_outer_refs(plan: &Arc<LogicalPlan>) -> bool {
    let mut seen = HashSet::new();
    let mut stack = vec![Arc::clone(plan)];
    while let Some(p) = stack.pop() {
        if !seen.insert(Arc::as_ptr(&p)) {
            continue;
        }
        if p.expressions().iter().any(|e| e.contains_outer_column()) {
            return true;
        }
        stack.extend(p.inputs().into_iter().cloned());
    }
    false
}

struct Decorrelator {
    taken: HashSet<String>,
    next: usize,
}

/// A subquery conjunct that becomes a semi or anti join.
struct SemiJoin {
    subquery: Subquery,
    /// The outer value of `x IN (...)`; `None` for EXISTS.
    in_expr: Option<Expr>,
    negated: bool,
}

impl Decorrelator {
    fn fresh_alias(&mut self) -> String {
        loop {
            let name = format!("__sq_{}", self.next);
            self.next += 1;
            if self.taken.insert(name.clone()) {
                return name;
            }
        }
    }

    fn decorrelate(&mut self, plan: Arc<LogicalPlan>) -> Result<Transformed<Arc<LogicalPlan>>> {
        transform_up(plan, &mut |node| self.rewrite_node(node))
    }

    fn rewrite_node(&mut self, node: Arc<LogicalPlan>) -> Result<Transformed<Arc<LogicalPlan>>> {
        if !node.expressions().iter().any(|e| e.contains_subquery()) {
            return Ok(Transformed::no(node));
        }
        match node.as_ref() {
            LogicalPlan::Filter(f) => self
                .rewrite_filter(&f.input, &f.predicate)
                .map(Transformed::yes),
            LogicalPlan::Projection(p) => {
                let mut input = Arc::clone(&p.input);
                let mut exprs = Vec::with_capacity(p.exprs.len());
                for e in &p.exprs {
                    let name = e.output_name();
                    let new = self.replace_scalar_subqueries(e.clone(), &mut input)?;
                    exprs.push(if new.output_name() == name {
                        new
                    } else {
                        new.alias(name)
                    });
                }
                Ok(Transformed::yes(Arc::new(LogicalPlan::Projection(
                    Projection::try_new(input, exprs)?,
                ))))
            }
            other => not_impl_err!(
                "subqueries are supported in WHERE, HAVING and SELECT lists, not in: {}",
                other.describe_node()
            ),
        }
    }

    /// `Filter(predicate) over input` with every subquery conjunct turned into a join.
    fn rewrite_filter(
        &mut self,
        input: &Arc<LogicalPlan>,
        predicate: &Expr,
    ) -> Result<Arc<LogicalPlan>> {
        let mut plain = Vec::new();
        let mut semis = Vec::new();
        let mut scalars = Vec::new();
        for conjunct in split_conjuncts(predicate) {
            match classify(conjunct) {
                Conjunct::Plain(e) => plain.push(e),
                Conjunct::Semi(s) => semis.push(s),
                Conjunct::Scalar(e) => scalars.push(e),
            }
        }
        // Plain conjuncts stay directly over the input, where cross-join elimination and
        // filter push-down find them.
        let mut plan = filter_over(Arc::clone(input), plain);
        for semi in semis {
            plan = self.semi_join(plan, semi)?;
        }
        let mut post = Vec::with_capacity(scalars.len());
        for e in scalars {
            post.push(self.replace_scalar_subqueries(e, &mut plan)?);
        }
        let plan = filter_over(plan, post);
        if plan.schema().len() != input.schema().len() {
            // Scalar subqueries added columns: restore the Filter's schema.
            return project_columns(plan, &input.schema().columns());
        }
        Ok(plan)
    }

    /// Replaces every scalar subquery in `expr` with a column of a join added over `input`.
    fn replace_scalar_subqueries(
        &mut self,
        expr: Expr,
        input: &mut Arc<LogicalPlan>,
    ) -> Result<Expr> {
        expr.transform_up(&mut |e| match e {
            Expr::ScalarSubquery(sq) => self.scalar_join(input, sq),
            Expr::Exists { .. } | Expr::InSubquery { .. } => not_impl_err!(
                "EXISTS / IN subqueries are supported only as top-level AND-ed conditions, not in: {e}"
            ),
            e => Ok(e),
        })
    }

    /// Decorrelates the subquery's own plan first (inner subqueries are rewritten before
    /// outer ones).
    fn prepare(&mut self, sq: &Subquery) -> Result<Arc<LogicalPlan>> {
        Ok(self.decorrelate(Arc::clone(&sq.plan))?.data)
    }

    fn semi_join(&mut self, left: Arc<LogicalPlan>, semi: SemiJoin) -> Result<Arc<LogicalPlan>> {
        let plan = self.prepare(&semi.subquery)?;
        let alias = self.fresh_alias();
        let join_type = if semi.negated {
            JoinType::LeftAnti
        } else {
            JoinType::LeftSemi
        };
        let null_aware = semi.negated && semi.in_expr.is_some();

        if !has_outer_refs(&plan) {
            let (right, on) = match semi.in_expr {
                Some(x) => {
                    let value = first_column(&plan)?;
                    let right = aliased(&alias, plan, vec![value.alias("__value")])?;
                    (right, vec![(x, alias_col(&alias, "__value"))])
                }
                None => (
                    Arc::new(LogicalPlan::SubqueryAlias(SubqueryAlias::new(plan, &alias))),
                    vec![],
                ),
            };
            return Ok(Arc::new(LogicalPlan::Join(Join::try_new(
                left, right, on, None, join_type, null_aware,
            )?)));
        }

        // Correlated: find the projected value (IN) and the body under the projections.
        let (value, body) = match semi.in_expr {
            Some(_) => match plan.as_ref() {
                LogicalPlan::Projection(p) => {
                    let v = p
                        .exprs
                        .first()
                        .map(|e| e.unalias().clone())
                        .ok_or_else(|| EmberError::Plan("IN subquery returns no columns".into()))?;
                    (Some(v), Arc::clone(&p.input))
                }
                other => {
                    return not_impl_err!(
                        "correlated IN subquery of this shape: {}",
                        other.describe_node()
                    )
                }
            },
            None => (None, strip_for_exists(plan)),
        };
        let (body, correlated) = split_correlated_filter(body)?;
        let mut keys_outer = Vec::new();
        let mut keys_inner = Vec::new();
        let mut others = Vec::new();
        for c in correlated {
            match split_equality(&c) {
                Some((outer, inner)) => {
                    keys_outer.push(outer);
                    keys_inner.push(inner);
                }
                None => others.push(c),
            }
        }
        // Right side: the value, the inner keys and the inner columns the join filter reads,
        // under fresh names.
        let mut exprs = Vec::new();
        let mut on = Vec::new();
        if let (Some(x), Some(v)) = (semi.in_expr, value) {
            exprs.push(v.alias("__value"));
            on.push((x, alias_col(&alias, "__value")));
        }
        for (i, (outer, inner)) in keys_outer.into_iter().zip(keys_inner).enumerate() {
            let name = format!("__key{i}");
            exprs.push(inner.alias(&name));
            on.push((outer, alias_col(&alias, &name)));
        }
        let mut filter_cols: Vec<Column> = Vec::new();
        let filter = crate::expr::conjunction(others.into_iter().map(|e| {
            let e = replace_columns(e, &mut |c| {
                let j = match filter_cols.iter().position(|x| x == c) {
                    Some(j) => j,
                    None => {
                        filter_cols.push(c.clone());
                        filter_cols.len() - 1
                    }
                };
                Some(alias_col(&alias, &format!("__c{j}")))
            });
            outer_to_column(e)
        }));
        for (j, c) in filter_cols.iter().enumerate() {
            exprs.push(Expr::Column(c.clone()).alias(format!("__c{j}")));
        }
        check_outer_side(&left, on.iter().map(|(o, _)| o))?;
        let right = if exprs.is_empty() {
            Arc::new(LogicalPlan::SubqueryAlias(SubqueryAlias::new(body, &alias)))
        } else {
            aliased(&alias, body, exprs)?
        };
        Ok(Arc::new(LogicalPlan::Join(Join::try_new(
            left, right, on, filter, join_type, null_aware,
        )?)))
    }

    /// Joins the scalar subquery's single value onto `input`; returns the expression that
    /// replaces the subquery.
    fn scalar_join(&mut self, input: &mut Arc<LogicalPlan>, sq: Subquery) -> Result<Expr> {
        let plan = self.prepare(&sq)?;
        let alias = self.fresh_alias();
        if !has_outer_refs(&plan) {
            let (plan, value) = single_row_value(plan)?;
            let right = aliased(&alias, plan, vec![value.alias("__value")])?;
            *input = Arc::new(LogicalPlan::CrossJoin(CrossJoin::new(
                Arc::clone(input),
                right,
            )));
            return Ok(alias_col(&alias, "__value"));
        }
        // Correlated: [Projection(value)] over Aggregate (no grouping) over the body.
        let (value, agg) = match plan.as_ref() {
            LogicalPlan::Projection(p) => match p.input.as_ref() {
                LogicalPlan::Aggregate(a) => (p.exprs.first().cloned(), a.clone()),
                other => return unsupported_scalar(other),
            },
            LogicalPlan::Aggregate(a) => (
                a.schema.fields().first().map(|f| Expr::Column(f.column())),
                a.clone(),
            ),
            other => return unsupported_scalar(other),
        };
        let value = value
            .ok_or_else(|| EmberError::Plan("scalar subquery returns no columns".into()))?
            .unalias()
            .clone();
        if !agg.group_exprs.is_empty() {
            return not_impl_err!("correlated scalar subquery with GROUP BY");
        }
        let (body, correlated) = split_correlated_filter(Arc::clone(&agg.input))?;
        let mut on_outer = Vec::new();
        let mut groups = Vec::new();
        for c in correlated {
            match split_equality(&c) {
                Some((outer, inner)) => {
                    on_outer.push(outer);
                    groups.push(inner);
                }
                None => {
                    return not_impl_err!(
                        "correlated scalar subquery with a non-equality correlated condition: {c}"
                    )
                }
            }
        }
        check_outer_side(input, on_outer.iter())?;
        let count_bug = is_count_output(&value, &agg);
        let n_groups = groups.len();
        let grouped = Arc::new(LogicalPlan::Aggregate(Aggregate::try_new(
            body,
            groups,
            agg.aggr_exprs.clone(),
        )?));
        let mut exprs = vec![value.alias("__value")];
        for i in 0..n_groups {
            exprs.push(Expr::Column(grouped.schema().field(i).column()).alias(format!("__key{i}")));
        }
        let right = aliased(&alias, grouped, exprs)?;
        let on = on_outer
            .into_iter()
            .enumerate()
            .map(|(i, o)| (o, alias_col(&alias, &format!("__key{i}"))))
            .collect();
        *input = Arc::new(LogicalPlan::Join(Join::try_new(
            Arc::clone(input),
            right,
            on,
            None,
            JoinType::Left,
            false,
        )?));
        let column = alias_col(&alias, "__value");
        Ok(if count_bug {
            // No inner rows for this outer row: COUNT over nothing is 0, not NULL.
            Expr::ScalarFunction {
                func: BuiltinFunction::Coalesce,
                args: vec![column, Expr::Literal(ScalarValue::Int64(Some(0)))],
            }
        } else {
            column
        })
    }
}

fn unsupported_scalar<T>(node: &LogicalPlan) -> Result<T> {
    not_impl_err!(
        "correlated scalar subquery must compute one aggregate; found {}",
        node.describe_node()
    )
}

enum Conjunct {
    Plain(Expr),
    Semi(SemiJoin),
    Scalar(Expr),
}

fn classify(e: Expr) -> Conjunct {
    match e {
        Expr::Exists { subquery, negated } => Conjunct::Semi(SemiJoin {
            subquery,
            in_expr: None,
            negated,
        }),
        Expr::InSubquery {
            expr,
            subquery,
            negated,
        } if !expr.contains_subquery() => Conjunct::Semi(SemiJoin {
            subquery,
            in_expr: Some(*expr),
            negated,
        }),
        Expr::Not(inner)
            if matches!(
                inner.as_ref(),
                Expr::Exists { .. } | Expr::InSubquery { .. }
            ) =>
        {
            match classify(*inner) {
                Conjunct::Semi(mut s) => {
                    s.negated = !s.negated;
                    Conjunct::Semi(s)
                }
                Conjunct::Plain(e) => Conjunct::Scalar(Expr::Not(Box::new(e))),
                Conjunct::Scalar(e) => Conjunct::Scalar(Expr::Not(Box::new(e))),
            }
        }
        e if e.contains_subquery() => Conjunct::Scalar(e),
        e => Conjunct::Plain(e),
    }
}

/// EXISTS only asks whether rows exist: projections, sorts, DISTINCT and aliases above the
/// body do not matter.
fn strip_for_exists(mut plan: Arc<LogicalPlan>) -> Arc<LogicalPlan> {
    loop {
        let next = match plan.as_ref() {
            LogicalPlan::Projection(p) => Arc::clone(&p.input),
            LogicalPlan::Sort(s) => Arc::clone(&s.input),
            LogicalPlan::Distinct(d) => Arc::clone(&d.input),
            _ => return plan,
        };
        plan = next;
    }
}

/// Splits the correlated conjuncts off the body's top Filter. Correlation anywhere else is
/// not supported.
fn split_correlated_filter(body: Arc<LogicalPlan>) -> Result<(Arc<LogicalPlan>, Vec<Expr>)> {
    let (input, conjuncts) = match body.as_ref() {
        LogicalPlan::Filter(f) => (Arc::clone(&f.input), split_conjuncts(&f.predicate)),
        _ => (Arc::clone(&body), vec![]),
    };
    if has_outer_refs(&input) {
        return not_impl_err!(
            "correlated subquery whose outer references are not in its WHERE clause (under {})",
            input.describe_node()
        );
    }
    let (correlated, rest): (Vec<Expr>, Vec<Expr>) = conjuncts
        .into_iter()
        .partition(|c| c.contains_outer_column());
    Ok((filter_over(input, rest), correlated))
}

/// `inner = outer` (either order) → `(outer as outer-query expr, inner expr)`.
fn split_equality(e: &Expr) -> Option<(Expr, Expr)> {
    let Expr::BinaryExpr {
        left,
        op: Operator::Eq,
        right,
    } = e
    else {
        return None;
    };
    let outer_only = |x: &Expr| x.contains_outer_column() && x.column_refs().is_empty();
    let inner_only = |x: &Expr| !x.contains_outer_column() && !x.column_refs().is_empty();
    if outer_only(left) && inner_only(right) {
        Some((
            outer_to_column(left.as_ref().clone()),
            right.as_ref().clone(),
        ))
    } else if outer_only(right) && inner_only(left) {
        Some((
            outer_to_column(right.as_ref().clone()),
            left.as_ref().clone(),
        ))
    } else {
        None
    }
}

/// The outer side of the join keys must be columns of the query right outside.
fn check_outer_side<'a>(
    left: &Arc<LogicalPlan>,
    exprs: impl Iterator<Item = &'a Expr>,
) -> Result<()> {
    for e in exprs {
        if !columns_in(e, left.schema()) {
            return not_impl_err!("subquery correlated with a query more than one level up ({e})");
        }
    }
    Ok(())
}

fn first_column(plan: &Arc<LogicalPlan>) -> Result<Expr> {
    plan.schema()
        .fields()
        .first()
        .map(|f| Expr::Column(f.column()))
        .ok_or_else(|| EmberError::Plan("subquery returns no columns".into()))
}

/// An uncorrelated scalar subquery as a plan of exactly one row, and the expression of its
/// value over that row. A global aggregate (under projections) already is one row. Anything
/// else could return none — the value is then NULL and the outer rows must stay, where a
/// cross join with no rows would drop them all — or several, which is an error rather than a
/// cross join repeating every outer row: it is aggregated to its row count and its value
/// (the largest, which with at most one row is the row's), checked when it runs.
fn single_row_value(plan: Arc<LogicalPlan>) -> Result<(Arc<LogicalPlan>, Expr)> {
    let value = first_column(&plan)?;
    if always_one_row(&plan) {
        return Ok((plan, value));
    }
    let counted = Aggregate::try_new(
        plan,
        vec![],
        vec![count_star().alias("__rows"), max(value).alias("__value")],
    )?;
    let checked = func(
        BuiltinFunction::ScalarSubqueryValue,
        vec![col("__rows"), col("__value")],
    );
    Ok((Arc::new(LogicalPlan::Aggregate(counted)), checked))
}

/// Whether `plan` returns exactly one row whatever its input: a global aggregate, a
/// one-row `VALUES` or `SELECT` without `FROM`, possibly renamed or projected.
fn always_one_row(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::Aggregate(a) => a.group_exprs.is_empty(),
        LogicalPlan::EmptyRelation(e) => e.produce_one_row,
        LogicalPlan::Values(v) => v.rows.len() == 1,
        LogicalPlan::Projection(p) => always_one_row(&p.input),
        LogicalPlan::SubqueryAlias(s) => always_one_row(&s.input),
        _ => false,
    }
}

fn alias_col(alias: &str, name: &str) -> Expr {
    Expr::Column(Column::new(Some(alias), name))
}

/// `SubqueryAlias(alias, Projection(exprs, input))`.
fn aliased(alias: &str, input: Arc<LogicalPlan>, exprs: Vec<Expr>) -> Result<Arc<LogicalPlan>> {
    let p = Arc::new(LogicalPlan::Projection(Projection::try_new(input, exprs)?));
    Ok(Arc::new(LogicalPlan::SubqueryAlias(SubqueryAlias::new(
        p, alias,
    ))))
}

/// Whether the subquery's value is exactly a COUNT of its aggregate (the "COUNT bug": over
/// no rows it must be 0, but a Left join yields NULL).
fn is_count_output(value: &Expr, agg: &Aggregate) -> bool {
    let Expr::Column(c) = value else {
        return false;
    };
    agg.aggr_exprs.iter().any(|a| {
        a.output_name() == c.name
            && matches!(
                a.unalias(),
                Expr::AggregateFunction {
                    func: AggregateFunction::Count,
                    ..
                }
            )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::{col, count_star, lit, min};
    use crate::logical::Filter;
    use crate::optimizer::test_util::{scan, show};
    use crate::optimizer::{apply_rule, OptimizerConfig};
    use arrow::datatypes::DataType;

    fn ucol(name: &str) -> Expr {
        Expr::Column(Column::unqualified(name))
    }

    fn outer(name: &str) -> Expr {
        Expr::OuterColumn(Column::from_qualified_name(name), DataType::Int64)
    }

    fn subquery(plan: Arc<LogicalPlan>) -> Subquery {
        let mut outer_refs = vec![];
        let mut stack = vec![Arc::clone(&plan)];
        while let Some(p) = stack.pop() {
            for e in p.expressions() {
                e.visit(&mut |x| {
                    if let Expr::OuterColumn(c, _) = x {
                        outer_refs.push(c.clone());
                    }
                    true
                });
            }
            stack.extend(p.inputs().into_iter().cloned());
        }
        Subquery { plan, outer_refs }
    }

    fn filter(input: Arc<LogicalPlan>, predicate: Expr) -> Arc<LogicalPlan> {
        Arc::new(LogicalPlan::Filter(Filter { input, predicate }))
    }

    fn project(input: Arc<LogicalPlan>, exprs: Vec<Expr>) -> Arc<LogicalPlan> {
        Arc::new(LogicalPlan::Projection(
            Projection::try_new(input, exprs).unwrap(),
        ))
    }

    fn run(plan: Arc<LogicalPlan>) -> String {
        let t = apply_rule(&DecorrelateSubqueries, plan, &OptimizerConfig::default()).unwrap();
        assert!(t.transformed);
        show(&t.data)
    }

    #[test]
    fn uncorrelated_in_becomes_semi_join_and_not_in_null_aware_anti() {
        let sub = project(scan("l", &["k", "v"]), vec![col("l.k")]);
        let pred = Expr::InSubquery {
            expr: Box::new(col("o.k")),
            subquery: subquery(Arc::clone(&sub)),
            negated: false,
        };
        let plan = filter(scan("o", &["k"]), col("o.k").gt(lit(0i64)).and(pred));
        assert_eq!(
            run(plan),
            "LeftSemi Join: on=[o.k = __sq_1.__value]
  Filter: (o.k > 0)
    TableScan: o
  SubqueryAlias: __sq_1
    Projection: l.k AS __value
      Projection: l.k
        TableScan: l"
        );
        let pred = Expr::InSubquery {
            expr: Box::new(col("o.k")),
            subquery: subquery(sub),
            negated: true,
        };
        let out = run(filter(scan("o", &["k"]), pred));
        assert!(
            out.starts_with("LeftAnti Join: on=[o.k = __sq_1.__value] null_aware"),
            "{out}"
        );
    }

    #[test]
    fn correlated_exists_pulls_equalities_into_keys_and_the_rest_into_the_filter() {
        // TPC-H Q21 shape: EXISTS (l2.k = l1.k AND l2.s <> l1.s AND l2.v > 1)
        let body = filter(
            scan("l2", &["k", "s", "v"]),
            col("l2.k")
                .eq(outer("l1.k"))
                .and(col("l2.s").not_eq(outer("l1.s")))
                .and(col("l2.v").gt(lit(1i64))),
        );
        let sub = project(body, vec![col("l2.k"), col("l2.s"), col("l2.v")]);
        let plan = filter(
            scan("l1", &["k", "s"]),
            Expr::Exists {
                subquery: subquery(sub),
                negated: true,
            },
        );
        assert_eq!(
            run(plan),
            "LeftAnti Join: on=[l1.k = __sq_1.__key0] filter=(__sq_1.__c0 <> l1.s)
  TableScan: l1
  SubqueryAlias: __sq_1
    Projection: l2.k AS __key0, l2.s AS __c0
      Filter: (l2.v > 1)
        TableScan: l2"
        );
    }

    #[test]
    fn uncorrelated_scalar_subquery_becomes_cross_join() {
        let agg = Arc::new(LogicalPlan::Aggregate(
            Aggregate::try_new(scan("t", &["a"]), vec![], vec![min(col("t.a"))]).unwrap(),
        ));
        let sub = project(agg, vec![ucol("min(t.a)")]);
        let plan = filter(
            scan("t", &["a", "b"]),
            col("t.a").eq(Expr::ScalarSubquery(subquery(sub))),
        );
        assert_eq!(
            run(plan),
            "Projection: t.a, t.b
  Filter: (t.a = __sq_1.__value)
    CrossJoin
      TableScan: t
      SubqueryAlias: __sq_1
        Projection: min(t.a) AS __value
          Projection: min(t.a)
            Aggregate: groupBy=[], aggr=[min(t.a)]
              TableScan: t"
        );
    }

    #[test]
    fn uncorrelated_scalar_subquery_of_any_rows_is_aggregated_to_one_checked_row() {
        let sub = project(
            filter(scan("t", &["a"]), col("t.a").gt(lit(1i64))),
            vec![col("t.a")],
        );
        let plan = project(
            scan("u", &["b"]),
            vec![col("u.b"), Expr::ScalarSubquery(subquery(sub))],
        );
        assert_eq!(
            run(plan),
            "Projection: u.b, __sq_1.__value AS (<subquery>)
  CrossJoin
    TableScan: u
    SubqueryAlias: __sq_1
      Projection: scalar_subquery_value(__rows, __value) AS __value
        Aggregate: groupBy=[], aggr=[count(*) AS __rows, max(t.a) AS __value]
          Projection: t.a
            Filter: (t.a > 1)
              TableScan: t"
        );
    }

    #[test]
    fn correlated_scalar_aggregate_becomes_grouped_left_join() {
        // TPC-H Q17 shape: l.q < (SELECT 0.2 * avg(l.q) FROM l WHERE l.p = outer(p.k))
        let inner = filter(scan("l", &["p", "q"]), col("l.p").eq(outer("p.k")));
        let agg = Arc::new(LogicalPlan::Aggregate(
            Aggregate::try_new(inner, vec![], vec![crate::expr::avg(col("l.q"))]).unwrap(),
        ));
        let sub = project(agg, vec![lit(2.0f64).mul(ucol("avg(l.q)"))]);
        let outer_plan = Arc::new(LogicalPlan::Join(
            Join::try_new(
                scan("l", &["p", "q"]),
                scan("p", &["k"]),
                vec![(col("l.p"), col("p.k"))],
                None,
                JoinType::Inner,
                false,
            )
            .unwrap(),
        ));
        let plan = filter(
            outer_plan,
            col("l.q").lt(Expr::ScalarSubquery(subquery(sub))),
        );
        assert_eq!(
            run(plan),
            "Projection: l.p, l.q, p.k
  Filter: (l.q < __sq_1.__value)
    Left Join: on=[p.k = __sq_1.__key0]
      Inner Join: on=[l.p = p.k]
        TableScan: l
        TableScan: p
      SubqueryAlias: __sq_1
        Projection: (2 * avg(l.q)) AS __value, l.p AS __key0
          Aggregate: groupBy=[l.p], aggr=[avg(l.q)]
            TableScan: l"
        );
    }

    #[test]
    fn correlated_count_is_coalesced_to_zero() {
        let inner = filter(scan("l", &["p"]), col("l.p").eq(outer("o.k")));
        let agg = Arc::new(LogicalPlan::Aggregate(
            Aggregate::try_new(inner, vec![], vec![count_star()]).unwrap(),
        ));
        let sub = project(agg, vec![ucol("count(*)")]);
        let plan = filter(
            scan("o", &["k"]),
            Expr::ScalarSubquery(subquery(sub)).eq(lit(0i64)),
        );
        let out = run(plan);
        assert!(
            out.contains("Filter: (coalesce(__sq_1.__value, 0) = 0)"),
            "{out}"
        );
    }

    #[test]
    fn nested_subqueries_are_decorrelated_inside_out() {
        // TPC-H Q20 shape: s IN (SELECT ps.s FROM ps WHERE ps.q > (SELECT sum(l.q) FROM l
        // WHERE l.s = outer(ps.s)))
        let inner = filter(scan("l", &["s", "q"]), col("l.s").eq(outer("ps.s")));
        let agg = Arc::new(LogicalPlan::Aggregate(
            Aggregate::try_new(inner, vec![], vec![crate::expr::sum(col("l.q"))]).unwrap(),
        ));
        let scalar = project(agg, vec![ucol("sum(l.q)")]);
        let mid = project(
            filter(
                scan("ps", &["s", "q"]),
                col("ps.q").gt(Expr::ScalarSubquery(subquery(scalar))),
            ),
            vec![col("ps.s")],
        );
        let plan = filter(
            scan("s", &["s"]),
            Expr::InSubquery {
                expr: Box::new(col("s.s")),
                subquery: Subquery {
                    plan: mid,
                    outer_refs: vec![],
                },
                negated: false,
            },
        );
        let out = run(plan);
        assert!(!out.contains("subquery"), "{out}");
        assert!(
            out.starts_with("LeftSemi Join: on=[s.s = __sq_2.__value]"),
            "{out}"
        );
        assert!(
            out.contains("Left Join: on=[ps.s = __sq_1.__key0]"),
            "{out}"
        );
    }

    #[test]
    fn scalar_subquery_in_projection_keeps_the_column_name() {
        let agg = Arc::new(LogicalPlan::Aggregate(
            Aggregate::try_new(scan("u", &["a"]), vec![], vec![count_star()]).unwrap(),
        ));
        let sub = project(agg, vec![ucol("count(*)")]);
        let p = project(
            scan("t", &["a"]),
            vec![col("t.a"), Expr::ScalarSubquery(subquery(sub)).alias("n")],
        );
        let out = run(p);
        assert!(
            out.starts_with("Projection: t.a, __sq_1.__value AS n\n  CrossJoin"),
            "{out}"
        );
    }
}
