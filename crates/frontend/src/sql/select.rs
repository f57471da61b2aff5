//! One SELECT block → plan: FROM, WHERE, `unnest` in the select list, GROUP BY / aggregates /
//! HAVING, the projection, DISTINCT and ORDER BY.
//!
//! Aggregation follows DataFusion: an `Aggregate` computes the group expressions and every
//! aggregate used anywhere (select list, HAVING, ORDER BY); the expressions above it are then
//! rewritten to read the Aggregate's output columns, named by `Expr::output_name()`.
//! ```text
//! SELECT a, sum(b) AS s FROM t GROUP BY a HAVING sum(b) > 1 ORDER BY max(c)
//!   Projection: t.a, s                     (drops the hidden sort column)
//!     Sort: max(t.c) ASC NULLS LAST
//!       Projection: t.a, sum(t.b) AS s, max(t.c)
//!         Filter: sum(t.b) > 1
//!           Aggregate: groupBy=[t.a], aggr=[sum(t.b), max(t.c)]
//!             TableScan: t
//! ```

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use sqlparser::ast::{
    Distinct as SqlDistinct, Expr as SqlExpr, FunctionArg, FunctionArgExpr, FunctionArguments,
    GroupByExpr, OrderBy, Select, SelectItem, SelectItemQualifiedWildcardKind, Spanned,
    WildcardAdditionalOptions,
};

use ember_planner::expr::Expr;
use ember_planner::logical::{Aggregate, Distinct, Filter, LogicalPlan, Projection, Sort, Unnest};
use ember_planner::schema::{Column, PlanSchema};
use ember_planner::{not_impl_err, plan_err, EmberError, Result};

use super::planner::{located, normalize_ident, object_name, Scope, SqlPlanner};
use super::query::{first_columns, order_by_items, ordinal, sort_expr};

impl SqlPlanner<'_> {
    /// Plans a SELECT block, including the enclosing query's ORDER BY (which may refer to
    /// columns and aggregates that are not in the select list).
    pub(crate) fn plan_select(
        &self,
        select: &Select,
        order_by: Option<&OrderBy>,
        scope: &Scope,
    ) -> Result<Arc<LogicalPlan>> {
        check_unsupported_clauses(select)?;
        let scope = scope.without_aliases();
        let mut input = self.plan_from(&select.from, &scope)?;

        if let Some(where_sql) = &select.selection {
            let predicate = self.sql_to_expr(where_sql, input.schema(), &scope)?;
            if predicate.contains_aggregate() {
                return Err(located(
                    EmberError::Plan(format!(
                        "aggregate functions are not allowed in WHERE: {predicate}"
                    )),
                    where_sql.span(),
                ));
            }
            check_boolean(&predicate, input.schema(), "WHERE")?;
            input = Arc::new(LogicalPlan::Filter(Filter { input, predicate }));
        }

        let (input_with_unnest, items) =
            self.plan_unnest_items(&select.projection, input, &scope)?;
        input = input_with_unnest;
        let from_schema = input.schema().clone();

        // The select list over the FROM rows.
        let mut select_exprs = Vec::new();
        for item in &items {
            match item {
                PlannedItem::Expr(e) => select_exprs.push(e.clone()),
                PlannedItem::Sql(item) => {
                    for e in self.plan_select_item(item, &from_schema, &scope)? {
                        // Type errors name the expression and where it is.
                        e.data_type(&from_schema)
                            .map_err(|err| located(err, item.span()))?;
                        select_exprs.push(e);
                    }
                }
            }
        }
        if select_exprs.is_empty() {
            return plan_err!("SELECT list is empty");
        }

        // Aliases are visible to GROUP BY, HAVING and ORDER BY.
        let aliases: HashMap<String, Expr> = select_exprs
            .iter()
            .filter_map(|e| match e {
                Expr::Alias(inner, name) => Some((name.clone(), inner.as_ref().clone())),
                _ => None,
            })
            .collect();
        let alias_scope = Scope {
            aliases: Rc::new(aliases),
            ..scope.clone()
        };

        let group_exprs = self.plan_group_by(
            &select.group_by,
            &select_exprs,
            &from_schema,
            &scope,
            &alias_scope,
        )?;
        let having = select
            .having
            .as_ref()
            .map(|h| self.sql_to_expr(h, &from_schema, &alias_scope))
            .transpose()?;

        // ORDER BY items that are expressions over the FROM rows (not ordinals or output names).
        let output_names: Vec<String> = select_exprs.iter().map(Expr::output_name).collect();
        let order_items = match order_by {
            Some(o) => order_by_items(o)?,
            None => &[],
        };
        let mut order_targets = Vec::with_capacity(order_items.len());
        for item in order_items {
            let target = if let Some(i) = ordinal(&item.expr)? {
                OrderTarget::Output(i, &item.expr)
            } else if let Some(i) = output_name_match(&item.expr, &output_names) {
                OrderTarget::Output(i + 1, &item.expr)
            } else {
                OrderTarget::Expr(self.sql_to_expr(&item.expr, &from_schema, &alias_scope)?)
            };
            order_targets.push(target);
        }

        let is_aggregate = !group_exprs.is_empty()
            || having.is_some()
            || select_exprs.iter().any(Expr::contains_aggregate)
            || order_targets
                .iter()
                .any(|t| matches!(t, OrderTarget::Expr(e) if e.contains_aggregate()));

        let mut having = having;
        if is_aggregate {
            let mut aggr_exprs: Vec<Expr> = Vec::new();
            let all =
                select_exprs
                    .iter()
                    .chain(having.iter())
                    .chain(order_targets.iter().filter_map(|t| match t {
                        OrderTarget::Expr(e) => Some(e),
                        OrderTarget::Output(..) => None,
                    }));
            for e in all {
                collect_aggregates(e, &mut aggr_exprs);
            }
            let agg = Aggregate::try_new(input, group_exprs.clone(), aggr_exprs.clone())?;
            let agg_schema = agg.schema.clone();
            input = Arc::new(LogicalPlan::Aggregate(agg));
            let rewriter = AggregateRewriter::new(&group_exprs, &aggr_exprs, &agg_schema);
            select_exprs = select_exprs
                .into_iter()
                .map(|e| rewriter.rewrite_checked(e, "select list"))
                .collect::<Result<_>>()?;
            having = having
                .map(|h| rewriter.rewrite_checked(h, "HAVING"))
                .transpose()?;
            for t in order_targets.iter_mut() {
                if let OrderTarget::Expr(e) = t {
                    *e = rewriter.rewrite_checked(e.clone(), "ORDER BY")?;
                }
            }
        }

        if let Some(predicate) = having {
            check_boolean(&predicate, input.schema(), "HAVING")?;
            input = Arc::new(LogicalPlan::Filter(Filter { input, predicate }));
        }

        // Projection, plus hidden columns for ORDER BY expressions not in the select list.
        let visible = select_exprs.len();
        let pre_projection = input.schema().clone();
        let mut proj_exprs = select_exprs;
        let distinct = match &select.distinct {
            None | Some(SqlDistinct::All) => false,
            Some(SqlDistinct::Distinct) => true,
            Some(SqlDistinct::On(_)) => return not_impl_err!("SELECT DISTINCT ON (..)"),
        };
        let mut sort_keys: Vec<Expr> = Vec::with_capacity(order_targets.len());
        let mut hidden: Vec<Expr> = Vec::new();
        for target in &order_targets {
            match target {
                OrderTarget::Output(i, sql) => sort_keys.push(output_position(*i, visible, sql)?),
                OrderTarget::Expr(e) => {
                    if let Some(i) = proj_exprs[..visible]
                        .iter()
                        .position(|p| p.unalias() == e.unalias())
                    {
                        sort_keys.push(Expr::Column(Column::unqualified(format!("#{i}"))));
                    } else if distinct {
                        return plan_err!(
                            "for SELECT DISTINCT, ORDER BY expressions must appear in the select list: {e}"
                        );
                    } else {
                        // Resolve against the pre-projection rows; it is projected alongside.
                        e.data_type(&pre_projection)?;
                        let pos = visible + hidden.len();
                        hidden.push(e.clone());
                        sort_keys.push(Expr::Column(Column::unqualified(format!("#{pos}"))));
                    }
                }
            }
        }
        proj_exprs.extend(hidden.iter().cloned());
        let projection =
            Projection::try_new(input, proj_exprs).map_err(|e| e.context("in the select list"))?;
        let out_schema = projection.schema.clone();
        let mut plan = Arc::new(LogicalPlan::Projection(projection));
        if distinct {
            plan = Arc::new(LogicalPlan::Distinct(Distinct { input: plan }));
        }
        if !order_targets.is_empty() {
            let exprs = sort_keys
                .into_iter()
                .zip(order_items)
                .map(|(k, item)| sort_expr(resolve_position(k, &out_schema)?, item))
                .collect::<Result<Vec<_>>>()?;
            plan = Arc::new(LogicalPlan::Sort(Sort {
                input: plan,
                exprs,
                fetch: None,
            }));
        }
        if !hidden.is_empty() {
            let exprs = first_columns(&out_schema, visible);
            plan = Arc::new(LogicalPlan::Projection(Projection::try_new(plan, exprs)?));
        }
        Ok(plan)
    }

    /// One select item → expressions (wildcards expand to several).
    fn plan_select_item(
        &self,
        item: &SelectItem,
        schema: &PlanSchema,
        scope: &Scope,
    ) -> Result<Vec<Expr>> {
        match item {
            SelectItem::UnnamedExpr(e) => Ok(vec![self.sql_to_expr(e, schema, scope)?]),
            SelectItem::ExprWithAlias { expr, alias } => Ok(vec![self
                .sql_to_expr(expr, schema, scope)?
                .alias(normalize_ident(alias))]),
            SelectItem::Wildcard(opts) => {
                check_wildcard_options(opts)?;
                if schema.is_empty() {
                    return plan_err!("SELECT * with no FROM clause");
                }
                Ok(schema
                    .fields()
                    .iter()
                    .map(|f| Expr::Column(f.column()))
                    .collect())
            }
            SelectItem::QualifiedWildcard(kind, opts) => {
                check_wildcard_options(opts)?;
                let SelectItemQualifiedWildcardKind::ObjectName(name) = kind else {
                    return not_impl_err!("{item}");
                };
                let qualifier = object_name(name);
                let cols: Vec<Expr> = schema
                    .fields()
                    .iter()
                    .filter(|f| {
                        f.qualifier
                            .as_deref()
                            .is_some_and(|q| q.eq_ignore_ascii_case(&qualifier))
                    })
                    .map(|f| Expr::Column(f.column()))
                    .collect();
                if cols.is_empty() {
                    return Err(located(
                        EmberError::Plan(format!("'{qualifier}.*' matches no table in FROM")),
                        item.span(),
                    ));
                }
                Ok(cols)
            }
            SelectItem::ExprWithAliases { .. } => not_impl_err!("multiple aliases: {item}"),
        }
    }

    /// GROUP BY items: ordinals and select-list aliases refer to select expressions; other
    /// expressions are over the FROM rows.
    fn plan_group_by(
        &self,
        group_by: &GroupByExpr,
        select_exprs: &[Expr],
        schema: &PlanSchema,
        scope: &Scope,
        alias_scope: &Scope,
    ) -> Result<Vec<Expr>> {
        let items = match group_by {
            GroupByExpr::Expressions(items, modifiers) => {
                if !modifiers.is_empty() {
                    return not_impl_err!("GROUP BY .. WITH ROLLUP/CUBE/TOTALS");
                }
                items
            }
            GroupByExpr::All(modifiers) => {
                if !modifiers.is_empty() {
                    return not_impl_err!("GROUP BY ALL .. WITH ROLLUP/CUBE/TOTALS");
                }
                return Ok(select_exprs
                    .iter()
                    .filter(|e| !e.contains_aggregate())
                    .map(|e| e.unalias().clone())
                    .collect());
            }
        };
        let mut out: Vec<Expr> = Vec::with_capacity(items.len());
        for item in items {
            let expr = if let Some(i) = ordinal(item)? {
                let e = select_exprs.get(i - 1).ok_or_else(|| {
                    located(
                        EmberError::Plan(format!(
                            "GROUP BY position {i} is out of range: the select list has {} columns",
                            select_exprs.len()
                        )),
                        item.span(),
                    )
                })?;
                e.unalias().clone()
            } else {
                // Columns of FROM win over aliases of the same name (as in PostgreSQL).
                match self.sql_to_expr(item, schema, scope) {
                    Ok(e) => e,
                    Err(first) => match self.sql_to_expr(item, schema, alias_scope) {
                        Ok(e) => e,
                        Err(_) => return Err(first),
                    },
                }
            };
            if expr.contains_aggregate() {
                return Err(located(
                    EmberError::Plan(format!(
                        "aggregate functions are not allowed in GROUP BY: {expr}"
                    )),
                    item.span(),
                ));
            }
            if !out.contains(&expr) {
                out.push(expr);
            }
        }
        Ok(out)
    }

    /// `SELECT unnest(list) [AS x], ...`: projects the list next to the input's columns and
    /// unnests it; the item then reads the unnested column.
    fn plan_unnest_items<'s>(
        &self,
        items: &'s [SelectItem],
        input: Arc<LogicalPlan>,
        scope: &Scope,
    ) -> Result<(Arc<LogicalPlan>, Vec<PlannedItem<'s>>)> {
        let mut out = Vec::with_capacity(items.len());
        let mut plan = input;
        let mut unnested = false;
        for item in items {
            let (expr, alias) = match item {
                SelectItem::UnnamedExpr(e) => (e, None),
                SelectItem::ExprWithAlias { expr, alias } => (expr, Some(normalize_ident(alias))),
                _ => {
                    out.push(PlannedItem::Sql(item));
                    continue;
                }
            };
            let Some(arg) = unnest_argument(expr)? else {
                out.push(PlannedItem::Sql(item));
                continue;
            };
            if unnested {
                return Err(located(
                    EmberError::NotImplemented("more than one unnest(..) in a select list".into()),
                    expr.span(),
                ));
            }
            unnested = true;
            let list = self.sql_to_expr(arg, plan.schema(), scope)?;
            let name = alias.unwrap_or_else(|| format!("unnest({list})"));
            let mut exprs = plan.schema().column_exprs();
            let index = exprs.len();
            exprs.push(list.alias(name.clone()));
            let projected = Arc::new(LogicalPlan::Projection(Projection::try_new(plan, exprs)?));
            plan = Arc::new(LogicalPlan::Unnest(
                Unnest::try_new(projected, index).map_err(|e| located(e, expr.span()))?,
            ));
            out.push(PlannedItem::Expr(Expr::Column(Column::unqualified(name))));
        }
        Ok((plan, out))
    }
}

/// A select item, either still SQL or already planned (an unnested column).
enum PlannedItem<'s> {
    Sql(&'s SelectItem),
    Expr(Expr),
}

/// What an ORDER BY item sorts by.
enum OrderTarget<'q> {
    /// A 1-based select-list position (from an ordinal or an output name).
    Output(usize, &'q SqlExpr),
    /// An expression over the FROM rows (rewritten over the aggregate when grouping).
    Expr(Expr),
}

/// The argument of `unnest(x)`, if `e` is such a call.
fn unnest_argument(e: &SqlExpr) -> Result<Option<&SqlExpr>> {
    let SqlExpr::Function(f) = e else {
        return Ok(None);
    };
    let is_unnest = f
        .name
        .0
        .last()
        .and_then(|p| p.as_ident())
        .is_some_and(|id| normalize_ident(id) == "unnest");
    if !is_unnest {
        return Ok(None);
    }
    match &f.args {
        FunctionArguments::List(list) if list.args.len() == 1 => match &list.args[0] {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(arg)) => Ok(Some(arg)),
            _ => plan_err!("unnest(..) takes one list expression"),
        },
        _ => plan_err!("unnest(..) takes exactly one argument"),
    }
}

/// An ORDER BY item that is a bare name of an output column (alias or column name).
fn output_name_match(e: &SqlExpr, names: &[String]) -> Option<usize> {
    let SqlExpr::Identifier(id) = e else {
        return None;
    };
    let name = normalize_ident(id);
    let matches: Vec<usize> = names
        .iter()
        .enumerate()
        .filter(|(_, n)| **n == name)
        .map(|(i, _)| i)
        .collect();
    // Ambiguous names fall through to normal resolution, which reports them.
    (matches.len() == 1).then(|| matches[0])
}

/// A placeholder `#i` for the i-th projected column, resolved once the projection exists.
fn output_position(i: usize, visible: usize, sql: &SqlExpr) -> Result<Expr> {
    if i > visible {
        return Err(located(
            EmberError::Plan(format!(
                "ORDER BY position {i} is out of range: the select list has {visible} columns"
            )),
            sql.span(),
        ));
    }
    Ok(Expr::Column(Column::unqualified(format!("#{}", i - 1))))
}

fn resolve_position(placeholder: Expr, schema: &PlanSchema) -> Result<Expr> {
    match &placeholder {
        Expr::Column(c) if c.relation.is_none() && c.name.starts_with('#') => {
            let i: usize = c.name[1..]
                .parse()
                .map_err(|_| EmberError::Internal(format!("bad sort placeholder {c}")))?;
            let f = schema.fields().get(i).ok_or_else(|| {
                EmberError::Internal(format!("sort placeholder {c} out of range"))
            })?;
            Ok(Expr::Column(Column::new(f.qualifier.clone(), f.name())))
        }
        _ => Ok(placeholder),
    }
}

/// Collects each distinct aggregate call in `e` (not looking into subqueries).
fn collect_aggregates(e: &Expr, out: &mut Vec<Expr>) {
    e.visit(&mut |node| {
        if let Expr::AggregateFunction { .. } = node {
            if !out.contains(node) {
                out.push(node.clone());
            }
            return false;
        }
        true
    });
}

/// Rewrites expressions over the FROM rows into expressions over an Aggregate's output.
struct AggregateRewriter<'a> {
    /// (expression computed by the Aggregate, the column that holds it)
    computed: Vec<(&'a Expr, Column)>,
    schema: &'a PlanSchema,
}

impl<'a> AggregateRewriter<'a> {
    fn new(group: &'a [Expr], aggr: &'a [Expr], schema: &'a PlanSchema) -> Self {
        let computed = group
            .iter()
            .chain(aggr.iter())
            .zip(schema.fields())
            .map(|(e, f)| (e, f.column()))
            .collect();
        AggregateRewriter { computed, schema }
    }

    fn rewrite(&self, e: Expr) -> Result<Expr> {
        if let Some((_, c)) = self.computed.iter().find(|(g, _)| **g == e) {
            return Ok(Expr::Column(c.clone()));
        }
        e.map_children(&mut |c| self.rewrite(c))
    }

    /// Rewrites `e` and checks that every column it still reads is an Aggregate output.
    fn rewrite_checked(&self, e: Expr, clause: &str) -> Result<Expr> {
        let rewritten = self.rewrite(e)?;
        for c in rewritten.column_refs() {
            if !self.schema.has_column(&c) {
                return plan_err!(
                    "column '{c}' in the {clause} must appear in the GROUP BY clause or be used in an aggregate function"
                );
            }
        }
        Ok(rewritten)
    }
}

fn check_boolean(predicate: &Expr, schema: &PlanSchema, clause: &str) -> Result<()> {
    let t = predicate.data_type(schema)?;
    if !matches!(
        t,
        arrow::datatypes::DataType::Boolean | arrow::datatypes::DataType::Null
    ) {
        return plan_err!("{clause} condition must be boolean, but {predicate} is {t}");
    }
    Ok(())
}

fn check_wildcard_options(opts: &WildcardAdditionalOptions) -> Result<()> {
    if opts.opt_ilike.is_some()
        || opts.opt_exclude.is_some()
        || opts.opt_except.is_some()
        || opts.opt_replace.is_some()
        || opts.opt_rename.is_some()
    {
        return not_impl_err!("wildcard options (EXCLUDE, EXCEPT, REPLACE, RENAME, ILIKE)");
    }
    Ok(())
}

fn check_unsupported_clauses(select: &Select) -> Result<()> {
    let unsupported = [
        (select.top.is_some(), "TOP"),
        (select.into.is_some(), "SELECT INTO"),
        (!select.lateral_views.is_empty(), "LATERAL VIEW"),
        (select.prewhere.is_some(), "PREWHERE"),
        (!select.connect_by.is_empty(), "CONNECT BY"),
        (!select.cluster_by.is_empty(), "CLUSTER BY"),
        (!select.distribute_by.is_empty(), "DISTRIBUTE BY"),
        (!select.sort_by.is_empty(), "SORT BY"),
        (!select.named_window.is_empty(), "WINDOW"),
        (select.qualify.is_some(), "QUALIFY"),
    ];
    for (present, what) in unsupported {
        if present {
            return not_impl_err!("{what} in SELECT");
        }
    }
    Ok(())
}
