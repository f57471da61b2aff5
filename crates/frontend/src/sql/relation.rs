//! FROM clauses → plans: tables, views, CTEs, derived tables, table functions, `unnest`,
//! and joins (ON, USING, NATURAL, CROSS, comma).

use std::sync::Arc;

use sqlparser::ast::{
    Expr as SqlExpr, FunctionArg, FunctionArgExpr, JoinConstraint, JoinOperator, ObjectName,
    Spanned, TableAlias, TableFactor, TableWithJoins,
};

use ember_planner::expr::{conjunction, BuiltinFunction, Expr, Operator};
use ember_planner::logical::{
    join_schema, CrossJoin, EmptyRelation, Filter, Join, JoinType, LogicalPlan, Projection,
    SubqueryAlias, TableScan, Unnest,
};
use ember_planner::schema::{Column, PlanSchema};
use ember_planner::types::common_type;
use ember_planner::{not_impl_err, plan_err, EmberError, Result};

use super::expr::{string_value, value_to_scalar};
use super::planner::{located, normalize_ident, object_name, object_name_span, Scope, SqlPlanner};

impl SqlPlanner<'_> {
    /// The FROM clause: comma-separated items become cross joins (the optimizer turns them
    /// into hash joins using WHERE's equalities). No FROM reads one empty row.
    pub(crate) fn plan_from(
        &self,
        from: &[TableWithJoins],
        scope: &Scope,
    ) -> Result<Arc<LogicalPlan>> {
        let mut plan: Option<Arc<LogicalPlan>> = None;
        for twj in from {
            let next = self.plan_table_with_joins(twj, scope)?;
            plan = Some(match plan {
                None => next,
                Some(left) => Arc::new(LogicalPlan::CrossJoin(CrossJoin::new(left, next))),
            });
        }
        Ok(plan.unwrap_or_else(|| {
            Arc::new(LogicalPlan::EmptyRelation(EmptyRelation {
                produce_one_row: true,
                schema: Arc::new(PlanSchema::empty()),
            }))
        }))
    }

    fn plan_table_with_joins(
        &self,
        twj: &TableWithJoins,
        scope: &Scope,
    ) -> Result<Arc<LogicalPlan>> {
        let mut left = self.plan_table_factor(&twj.relation, scope)?;
        for join in &twj.joins {
            let right = self.plan_table_factor(&join.relation, scope)?;
            left = self
                .plan_join(left, right, &join.join_operator, scope)
                .map_err(|e| located(e, join.relation.span()))?;
        }
        Ok(left)
    }

    fn plan_table_factor(&self, factor: &TableFactor, scope: &Scope) -> Result<Arc<LogicalPlan>> {
        match factor {
            TableFactor::Table {
                name, alias, args, ..
            } => {
                let plan = match args {
                    None => self.plan_named_relation(name, scope)?,
                    Some(args) => self.plan_table_function(name, &args.args, scope)?,
                };
                self.apply_alias(plan, alias.as_ref())
            }
            TableFactor::Function {
                lateral,
                name,
                args,
                alias,
                ..
            } => {
                if *lateral {
                    return not_impl_err!("LATERAL table functions");
                }
                let plan = self.plan_table_function(name, args, scope)?;
                self.apply_alias(plan, alias.as_ref())
            }
            TableFactor::Derived {
                lateral,
                subquery,
                alias,
                ..
            } => {
                if *lateral {
                    return not_impl_err!("LATERAL derived tables");
                }
                let plan = self.plan_query(subquery, scope)?;
                self.apply_alias(plan, alias.as_ref())
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                let plan = self.plan_table_with_joins(table_with_joins, scope)?;
                self.apply_alias(plan, alias.as_ref())
            }
            TableFactor::UNNEST {
                alias,
                array_exprs,
                with_offset,
                with_ordinality,
                ..
            } => {
                if *with_offset || *with_ordinality {
                    return not_impl_err!("UNNEST .. WITH OFFSET / ORDINALITY");
                }
                let [array] = array_exprs.as_slice() else {
                    return not_impl_err!("UNNEST of several lists");
                };
                let plan = self.plan_unnest_relation(array, scope)?;
                self.apply_alias(plan, alias.as_ref())
            }
            other => not_impl_err!("FROM item {other}"),
        }
    }

    /// A CTE, a view or a table, in that order.
    fn plan_named_relation(&self, name: &ObjectName, scope: &Scope) -> Result<Arc<LogicalPlan>> {
        let table = object_name(name);
        if let Some(plan) = scope.ctes.get(&table) {
            return Ok(Arc::new(LogicalPlan::SubqueryAlias(SubqueryAlias::new(
                Arc::clone(plan),
                table,
            ))));
        }
        if let Some(plan) = self.ctx.get_view(&table) {
            return Ok(Arc::new(LogicalPlan::SubqueryAlias(SubqueryAlias::new(
                plan, table,
            ))));
        }
        match self.ctx.get_table(&table) {
            Some(source) => Ok(Arc::new(LogicalPlan::TableScan(TableScan::try_new(
                table,
                source,
                None,
                vec![],
            )?))),
            None => Err(self.table_not_found(&table, scope, object_name_span(name))),
        }
    }

    /// `read_parquet('path')` and friends: arguments are constants, passed as strings.
    fn plan_table_function(
        &self,
        name: &ObjectName,
        args: &[FunctionArg],
        scope: &Scope,
    ) -> Result<Arc<LogicalPlan>> {
        let func = object_name(name);
        if func == "unnest" {
            let [FunctionArg::Unnamed(FunctionArgExpr::Expr(e))] = args else {
                return plan_err!("unnest(..) takes exactly one list argument");
            };
            return self.plan_unnest_relation(e, scope);
        }
        let mut values = Vec::with_capacity(args.len());
        for a in args {
            let FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) = a else {
                return not_impl_err!("argument {a} of table function {func}");
            };
            let value = match e {
                SqlExpr::Value(v) => match string_value(&v.value) {
                    Some(s) => s,
                    None => value_to_scalar(&v.value, false)?.to_string(),
                },
                other => {
                    return Err(located(
                        EmberError::Plan(format!(
                            "arguments of table function {func} must be literals, got {other}"
                        )),
                        other.span(),
                    ))
                }
            };
            values.push(value);
        }
        let source = self
            .ctx
            .table_function(&func, &values)
            .map_err(|e| located(e, object_name_span(name)))?;
        Ok(Arc::new(LogicalPlan::TableScan(TableScan::try_new(
            func,
            source,
            None,
            vec![],
        )?)))
    }

    /// `FROM unnest(list)`: a one-row relation holding the list, unnested; the column is
    /// named `unnest` unless the alias renames it.
    fn plan_unnest_relation(&self, list: &SqlExpr, scope: &Scope) -> Result<Arc<LogicalPlan>> {
        let one_row = Arc::new(LogicalPlan::EmptyRelation(EmptyRelation {
            produce_one_row: true,
            schema: Arc::new(PlanSchema::empty()),
        }));
        let expr = self.sql_to_expr(list, one_row.schema(), scope)?;
        let projected = Arc::new(LogicalPlan::Projection(Projection::try_new(
            one_row,
            vec![expr.alias("unnest")],
        )?));
        Ok(Arc::new(LogicalPlan::Unnest(
            Unnest::try_new(projected, 0).map_err(|e| located(e, list.span()))?,
        )))
    }

    /// `AS alias [(c1, c2, ..)]`.
    fn apply_alias(
        &self,
        plan: Arc<LogicalPlan>,
        alias: Option<&TableAlias>,
    ) -> Result<Arc<LogicalPlan>> {
        let Some(alias) = alias else {
            return Ok(plan);
        };
        let name = normalize_ident(&alias.name);
        let plan = self.rename_columns(plan, &alias.columns, &name)?;
        Ok(Arc::new(LogicalPlan::SubqueryAlias(SubqueryAlias::new(
            plan, name,
        ))))
    }

    fn plan_join(
        &self,
        left: Arc<LogicalPlan>,
        right: Arc<LogicalPlan>,
        op: &JoinOperator,
        scope: &Scope,
    ) -> Result<Arc<LogicalPlan>> {
        let (join_type, constraint) = match op {
            JoinOperator::Join(c) | JoinOperator::Inner(c) => (JoinType::Inner, c),
            JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => (JoinType::Left, c),
            JoinOperator::Right(c) | JoinOperator::RightOuter(c) => (JoinType::Right, c),
            JoinOperator::FullOuter(c) => (JoinType::Full, c),
            JoinOperator::Semi(c) | JoinOperator::LeftSemi(c) => (JoinType::LeftSemi, c),
            JoinOperator::Anti(c) | JoinOperator::LeftAnti(c) => (JoinType::LeftAnti, c),
            JoinOperator::CrossJoin(JoinConstraint::None) => {
                return Ok(Arc::new(LogicalPlan::CrossJoin(CrossJoin::new(
                    left, right,
                ))))
            }
            other => return not_impl_err!("join kind {other:?}"),
        };
        match constraint {
            JoinConstraint::On(on) => {
                let both = left.schema().join(right.schema());
                let condition = self.sql_to_expr(on, &both, &scope.without_aliases())?;
                plan_join_on(left, right, join_type, condition)
            }
            JoinConstraint::Using(names) => {
                let names: Vec<String> = names.iter().map(object_name).collect();
                plan_join_using(left, right, join_type, &names)
            }
            JoinConstraint::Natural => {
                let names: Vec<String> = left
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().to_string())
                    .filter(|n| right.schema().has_column(&Column::unqualified(n.clone())))
                    .collect();
                if names.is_empty() {
                    return match join_type {
                        JoinType::Inner => Ok(Arc::new(LogicalPlan::CrossJoin(CrossJoin::new(
                            left, right,
                        )))),
                        _ => plan_err!("NATURAL {join_type} JOIN has no common columns"),
                    };
                }
                plan_join_using(left, right, join_type, &names)
            }
            JoinConstraint::None => match join_type {
                JoinType::Inner => Ok(Arc::new(LogicalPlan::CrossJoin(CrossJoin::new(
                    left, right,
                )))),
                _ => plan_err!("{join_type} JOIN needs an ON or USING condition"),
            },
            JoinConstraint::UsingAlias(..) => not_impl_err!("JOIN .. USING (..) AS alias"),
        }
    }
}

/// Splits an ON condition into equi-join keys (one side's columns each) and a residual
/// filter. An inner join with no keys is a cross join with a filter.
fn plan_join_on(
    left: Arc<LogicalPlan>,
    right: Arc<LogicalPlan>,
    join_type: JoinType,
    condition: Expr,
) -> Result<Arc<LogicalPlan>> {
    let both = left.schema().join(right.schema());
    let t = condition.data_type(&both)?;
    if !matches!(
        t,
        arrow::datatypes::DataType::Boolean | arrow::datatypes::DataType::Null
    ) {
        return plan_err!("JOIN condition must be boolean, but {condition} is {t}");
    }
    let mut on = Vec::new();
    let mut rest = Vec::new();
    for conjunct in condition.split_conjunction() {
        match equi_pair(conjunct, left.schema(), right.schema(), &both)? {
            Some(pair) => on.push(pair),
            None => rest.push(conjunct.clone()),
        }
    }
    let filter = conjunction(rest);
    if on.is_empty() && join_type == JoinType::Inner {
        let cross = Arc::new(LogicalPlan::CrossJoin(CrossJoin::new(left, right)));
        return Ok(match filter {
            Some(predicate) => Arc::new(LogicalPlan::Filter(Filter {
                input: cross,
                predicate,
            })),
            None => cross,
        });
    }
    Ok(Arc::new(LogicalPlan::Join(Join::try_new(
        left, right, on, filter, join_type, false,
    )?)))
}

/// `l = r` with `l` reading only left columns and `r` only right ones (either order),
/// cast to a common type when the sides differ.
fn equi_pair(
    e: &Expr,
    left: &PlanSchema,
    right: &PlanSchema,
    both: &PlanSchema,
) -> Result<Option<(Expr, Expr)>> {
    let Expr::BinaryExpr {
        left: a,
        op: Operator::Eq,
        right: b,
    } = e
    else {
        return Ok(None);
    };
    let side = |x: &Expr| -> Option<bool> {
        let cols = x.column_refs();
        if cols.is_empty() || x.contains_subquery() || x.contains_outer_column() {
            return None;
        }
        if cols.iter().all(|c| left.has_column(c)) {
            Some(true)
        } else if cols.iter().all(|c| right.has_column(c)) {
            Some(false)
        } else {
            None
        }
    };
    let (l, r) = match (side(a), side(b)) {
        (Some(true), Some(false)) => (a.as_ref().clone(), b.as_ref().clone()),
        (Some(false), Some(true)) => (b.as_ref().clone(), a.as_ref().clone()),
        _ => return Ok(None),
    };
    let (lt, rt) = (l.data_type(both)?, r.data_type(both)?);
    if lt == rt {
        return Ok(Some((l, r)));
    }
    let t = common_type(&lt, &rt).ok_or_else(|| {
        EmberError::Plan(format!(
            "cannot join {l} ({lt}) with {r} ({rt}): incompatible types"
        ))
    })?;
    let cast = |x: Expr, from: &arrow::datatypes::DataType| {
        if *from == t {
            x
        } else {
            x.cast_to(t.clone())
        }
    };
    Ok(Some((cast(l, &lt), cast(r, &rt))))
}

/// `USING (a, b)`: equi-join on the named columns, then project each of them once (the
/// left's, the right's for RIGHT joins, COALESCE of both for FULL joins) followed by the
/// remaining columns of both sides.
fn plan_join_using(
    left: Arc<LogicalPlan>,
    right: Arc<LogicalPlan>,
    join_type: JoinType,
    names: &[String],
) -> Result<Arc<LogicalPlan>> {
    let mut on = Vec::with_capacity(names.len());
    let mut using_cols = Vec::with_capacity(names.len());
    for name in names {
        let unq = Column::unqualified(name.clone());
        let li = left
            .schema()
            .index_of_column(&unq)
            .map_err(|e| e.context(format!("USING column '{name}' on the left side")))?;
        let ri = right
            .schema()
            .index_of_column(&unq)
            .map_err(|e| e.context(format!("USING column '{name}' on the right side")))?;
        let lc = left.schema().field(li).column();
        let rc = right.schema().field(ri).column();
        on.push(Expr::Column(lc.clone()).eq(Expr::Column(rc.clone())));
        using_cols.push((lc, rc));
    }
    let condition = conjunction(on).ok_or_else(|| EmberError::Plan("USING () is empty".into()))?;
    let schema = join_schema(left.schema(), right.schema(), join_type);
    let joined = plan_join_on(left, right, join_type, condition)?;
    if !join_type.outputs_right() {
        return Ok(joined);
    }
    let mut exprs = Vec::with_capacity(schema.len());
    for (lc, rc) in &using_cols {
        exprs.push(match join_type {
            JoinType::Right => Expr::Column(rc.clone()),
            JoinType::Full => Expr::ScalarFunction {
                func: BuiltinFunction::Coalesce,
                args: vec![Expr::Column(lc.clone()), Expr::Column(rc.clone())],
            }
            .alias(lc.name.clone()),
            _ => Expr::Column(lc.clone()),
        });
    }
    for f in schema.fields() {
        let c = f.column();
        if !using_cols.iter().any(|(l, r)| *l == c || *r == c) {
            exprs.push(Expr::Column(c));
        }
    }
    Ok(Arc::new(LogicalPlan::Projection(Projection::try_new(
        joined, exprs,
    )?)))
}
