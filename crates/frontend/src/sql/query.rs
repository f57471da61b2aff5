//! Queries → logical plans: WITH, set operations, ORDER BY, LIMIT/OFFSET, VALUES.
//! A single SELECT block is planned in `select.rs`.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field};
use datafusion_common::ScalarValue;
use sqlparser::ast::{
    Expr as SqlExpr, LimitClause, OrderBy, OrderByExpr, OrderByKind, OrderBySort, Query, SetExpr,
    SetOperator, SetQuantifier, Spanned, Value, Values as SqlValues,
};

use ember_planner::expr::{col, lit, max, min, Expr, SortExpr};
use ember_planner::logical::{
    Aggregate, Distinct, Filter, Limit, LogicalPlan, Projection, Sort, Union, Values,
};
use ember_planner::schema::{Column, PlanSchema, QualifiedField};
use ember_planner::types::common_type;
use ember_planner::{not_impl_err, plan_err, EmberError, Result};

use super::planner::{located, normalize_ident, Scope, SqlPlanner};

impl SqlPlanner<'_> {
    /// Plans a whole query (WITH, body, ORDER BY, LIMIT) in `scope`.
    pub(crate) fn plan_query(&self, query: &Query, scope: &Scope) -> Result<Arc<LogicalPlan>> {
        if query.fetch.is_some() && query.limit_clause.is_some() {
            return plan_err!("a query cannot have both LIMIT and FETCH");
        }
        if !query.locks.is_empty() || !query.pipe_operators.is_empty() {
            return not_impl_err!("FOR UPDATE/SHARE and pipe operators");
        }
        let mut scope = scope.without_aliases();
        if let Some(with) = &query.with {
            if with.recursive {
                return not_impl_err!("WITH RECURSIVE");
            }
            for cte in &with.cte_tables {
                let name = normalize_ident(&cte.alias.name);
                let plan = self.plan_query(&cte.query, &scope)?;
                let plan = self.rename_columns(plan, &cte.alias.columns, &name)?;
                scope.ctes.insert(name, plan);
            }
        }
        let plan = match query.body.as_ref() {
            SetExpr::Select(select) => self.plan_select(select, query.order_by.as_ref(), &scope)?,
            body => {
                let plan = self.plan_set_expr(body, &scope)?;
                match &query.order_by {
                    Some(order_by) => self.plan_output_order_by(plan, order_by)?,
                    None => plan,
                }
            }
        };
        self.plan_limit(plan, query)
    }

    fn plan_set_expr(&self, body: &SetExpr, scope: &Scope) -> Result<Arc<LogicalPlan>> {
        match body {
            SetExpr::Select(select) => self.plan_select(select, None, scope),
            SetExpr::Query(q) => self.plan_query(q, scope),
            SetExpr::Values(values) => self.plan_values(values, scope),
            SetExpr::SetOperation {
                left,
                op,
                set_quantifier,
                right,
            } => {
                let left = self.plan_set_expr(left, scope)?;
                let right = self.plan_set_expr(right, scope)?;
                let all = match set_quantifier {
                    SetQuantifier::All => true,
                    SetQuantifier::Distinct | SetQuantifier::None => false,
                    other => return not_impl_err!("set quantifier {other}"),
                };
                self.plan_set_operation(left, *op, all, right)
            }
            SetExpr::Table(t) => {
                let name = t
                    .table_name
                    .as_ref()
                    .map(|i| i.value.clone())
                    .unwrap_or_default();
                not_impl_err!("TABLE {name} as a query; use SELECT * FROM {name}")
            }
            other => not_impl_err!("{other} as a query"),
        }
    }

    /// UNION [ALL] → Union (+ Distinct); INTERSECT / EXCEPT → Distinct over a semi / anti
    /// join on all columns.
    fn plan_set_operation(
        &self,
        left: Arc<LogicalPlan>,
        op: SetOperator,
        all: bool,
        right: Arc<LogicalPlan>,
    ) -> Result<Arc<LogicalPlan>> {
        let (nl, nr) = (left.schema().len(), right.schema().len());
        if nl != nr {
            return plan_err!(
                "{op} inputs have different numbers of columns: {nl} on the left, {nr} on the right"
            );
        }
        let mut types = Vec::with_capacity(nl);
        for (l, r) in left.schema().fields().iter().zip(right.schema().fields()) {
            let t = common_type(l.data_type(), r.data_type()).ok_or_else(|| {
                EmberError::Plan(format!(
                    "{op} column '{}' has incompatible types {} and {}",
                    l.name(),
                    l.data_type(),
                    r.data_type()
                ))
            })?;
            types.push(t);
        }
        let names: Vec<String> = left
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        let left = coerce_columns(left, &types, &names)?;
        let right = coerce_columns(right, &types, &names)?;
        match op {
            SetOperator::Union => {
                let union = Arc::new(LogicalPlan::Union(Union::try_new(vec![left, right])?));
                Ok(if all {
                    union
                } else {
                    Arc::new(LogicalPlan::Distinct(Distinct { input: union }))
                })
            }
            SetOperator::Intersect | SetOperator::Except | SetOperator::Minus => {
                if all {
                    return not_impl_err!("{op} ALL");
                }
                set_difference(left, right, op == SetOperator::Intersect)
            }
        }
    }

    /// `VALUES (..), (..)`: columns `column1`, `column2`, ... of the rows' common types.
    fn plan_values(&self, values: &SqlValues, scope: &Scope) -> Result<Arc<LogicalPlan>> {
        let empty = PlanSchema::empty();
        let mut rows: Vec<Vec<Expr>> = Vec::with_capacity(values.rows.len());
        for row in &values.rows {
            let exprs = row
                .content
                .iter()
                .map(|e| self.sql_to_expr(e, &empty, scope))
                .collect::<Result<Vec<_>>>()?;
            if let Some(first) = rows.first() {
                if first.len() != exprs.len() {
                    return plan_err!(
                        "VALUES rows have different lengths: {} and {}",
                        first.len(),
                        exprs.len()
                    );
                }
            }
            rows.push(exprs);
        }
        let width = rows.first().map_or(0, Vec::len);
        if width == 0 {
            return plan_err!("VALUES needs at least one row with at least one column");
        }
        let mut fields = Vec::with_capacity(width);
        for col in 0..width {
            let mut t = DataType::Null;
            let mut nullable = false;
            for row in &rows {
                let e = &row[col];
                let et = e.data_type(&empty)?;
                nullable |= e.nullable(&empty)?;
                t = common_type(&t, &et).ok_or_else(|| {
                    EmberError::Plan(format!(
                        "VALUES column {} mixes incompatible types {t} and {et}",
                        col + 1
                    ))
                })?;
            }
            for row in rows.iter_mut() {
                if row[col].data_type(&empty)? != t {
                    let e = std::mem::replace(&mut row[col], Expr::Literal(ScalarValue::Null));
                    row[col] = e.cast_to(t.clone());
                }
            }
            fields.push(QualifiedField::new(
                None,
                Field::new(format!("column{}", col + 1), t, nullable),
            ));
        }
        Ok(Arc::new(LogicalPlan::Values(Values {
            schema: Arc::new(PlanSchema::new(fields)),
            rows,
        })))
    }

    /// ORDER BY over a query's output columns only (set operations, VALUES).
    fn plan_output_order_by(
        &self,
        plan: Arc<LogicalPlan>,
        order_by: &OrderBy,
    ) -> Result<Arc<LogicalPlan>> {
        let items = order_by_items(order_by)?;
        let schema = plan.schema().clone();
        let scope = Scope::default();
        let mut exprs = Vec::with_capacity(items.len());
        for item in items {
            let expr = match ordinal(&item.expr)? {
                Some(i) => output_column(&schema, i, &item.expr)?,
                None => self.sql_to_expr(&item.expr, &schema, &scope)?,
            };
            exprs.push(sort_expr(expr, item)?);
        }
        Ok(Arc::new(LogicalPlan::Sort(Sort {
            input: plan,
            exprs,
            fetch: None,
        })))
    }

    fn plan_limit(&self, plan: Arc<LogicalPlan>, query: &Query) -> Result<Arc<LogicalPlan>> {
        let (limit, offset) = match &query.limit_clause {
            Some(LimitClause::LimitOffset {
                limit,
                offset,
                limit_by,
            }) => {
                if !limit_by.is_empty() {
                    return not_impl_err!("LIMIT .. BY");
                }
                (limit.as_ref(), offset.as_ref().map(|o| &o.value))
            }
            Some(LimitClause::OffsetCommaLimit { offset, limit }) => (Some(limit), Some(offset)),
            None => (None, None),
        };
        let limit = match &query.fetch {
            Some(fetch) => {
                if fetch.percent || fetch.with_ties {
                    return not_impl_err!("FETCH .. PERCENT / WITH TIES");
                }
                fetch.quantity.as_ref()
            }
            None => limit,
        };
        let fetch = limit
            .map(|e| count_literal(e, "LIMIT"))
            .transpose()?
            .flatten();
        let skip = offset
            .map(|e| count_literal(e, "OFFSET"))
            .transpose()?
            .flatten()
            .unwrap_or(0);
        if fetch.is_none() && skip == 0 {
            return Ok(plan);
        }
        Ok(Arc::new(LogicalPlan::Limit(Limit {
            input: plan,
            skip,
            fetch,
        })))
    }

    /// `AS t(a, b)`: renames a plan's columns (keeping their order), for derived tables,
    /// CTEs and views.
    pub(crate) fn rename_columns<T: AliasName>(
        &self,
        plan: Arc<LogicalPlan>,
        columns: &[T],
        relation: &str,
    ) -> Result<Arc<LogicalPlan>> {
        if columns.is_empty() {
            return Ok(plan);
        }
        let schema = plan.schema();
        if columns.len() != schema.len() {
            return plan_err!(
                "'{relation}' has {} columns but {} column aliases were given",
                schema.len(),
                columns.len()
            );
        }
        let exprs = schema
            .fields()
            .iter()
            .zip(columns)
            .map(|(f, name)| Expr::Column(f.column()).alias(name.alias_name()))
            .collect();
        Ok(Arc::new(LogicalPlan::Projection(Projection::try_new(
            plan, exprs,
        )?)))
    }
}

/// Anything that names a column in an alias list.
pub(crate) trait AliasName {
    fn alias_name(&self) -> String;
}

impl AliasName for sqlparser::ast::TableAliasColumnDef {
    fn alias_name(&self) -> String {
        normalize_ident(&self.name)
    }
}

impl AliasName for sqlparser::ast::ViewColumnDef {
    fn alias_name(&self) -> String {
        normalize_ident(&self.name)
    }
}

impl AliasName for sqlparser::ast::Ident {
    fn alias_name(&self) -> String {
        normalize_ident(self)
    }
}

/// Casts columns whose type differs from `types[i]`, naming them `names[i]`.
fn coerce_columns(
    plan: Arc<LogicalPlan>,
    types: &[DataType],
    names: &[String],
) -> Result<Arc<LogicalPlan>> {
    let schema = plan.schema();
    let needs_cast = schema
        .fields()
        .iter()
        .zip(types)
        .any(|(f, t)| f.data_type() != t);
    if !needs_cast {
        return Ok(plan);
    }
    let exprs = schema
        .fields()
        .iter()
        .zip(types)
        .zip(names)
        .map(|((f, t), name)| {
            let c = Expr::Column(f.column());
            if f.data_type() == t {
                c
            } else {
                c.cast_to(t.clone()).alias(name.clone())
            }
        })
        .collect();
    Ok(Arc::new(LogicalPlan::Projection(Projection::try_new(
        plan, exprs,
    )?)))
}

/// `left INTERSECT right` (`intersect`) or `left EXCEPT right`: the distinct rows of `left`
/// that are (are not) rows of `right`, where rows match when every column is equal *or both
/// NULL* — set operations compare rows as `DISTINCT` and `GROUP BY` do, not as `=` does. Both
/// sides are tagged (1, 2), unioned and grouped by every column; a group seen on both sides
/// (`min(tag) = 1, max(tag) = 2`) is in the intersection, one seen only on the left
/// (`max(tag) = 1`) in the difference. A join on `=` would drop NULL rows from INTERSECT and
/// keep them in EXCEPT.
fn set_difference(
    left: Arc<LogicalPlan>,
    right: Arc<LogicalPlan>,
    intersect: bool,
) -> Result<Arc<LogicalPlan>> {
    let tagged = |plan: Arc<LogicalPlan>, side: i32| -> Result<Arc<LogicalPlan>> {
        let mut exprs = plan.schema().column_exprs();
        exprs.push(lit(side).alias("__set_side"));
        Ok(Arc::new(LogicalPlan::Projection(Projection::try_new(
            plan, exprs,
        )?)))
    };
    let width = left.schema().len();
    let union = Arc::new(LogicalPlan::Union(Union::try_new(vec![
        tagged(left, 1)?,
        tagged(right, 2)?,
    ])?));
    let columns = union.schema().column_exprs();
    let (keys, side) = (columns[..width].to_vec(), columns[width].clone());
    let grouped = Arc::new(LogicalPlan::Aggregate(Aggregate::try_new(
        union,
        keys.clone(),
        vec![
            min(side.clone()).alias("__set_first"),
            max(side).alias("__set_last"),
        ],
    )?));
    let side_is = |name: &str, value: i32| col(name).eq(lit(value));
    let keep = if intersect {
        side_is("__set_first", 1).and(side_is("__set_last", 2))
    } else {
        side_is("__set_last", 1)
    };
    let kept = Arc::new(LogicalPlan::Filter(Filter {
        input: grouped,
        predicate: keep,
    }));
    Ok(Arc::new(LogicalPlan::Projection(Projection::try_new(
        kept, keys,
    )?)))
}

pub(crate) fn order_by_items(order_by: &OrderBy) -> Result<&[OrderByExpr]> {
    match &order_by.kind {
        OrderByKind::Expressions(items) => Ok(items),
        OrderByKind::All(_) => not_impl_err!("ORDER BY ALL"),
    }
}

/// `ORDER BY 2` / `GROUP BY 1`: the 1-based position, if `e` is an integer literal.
pub(crate) fn ordinal(e: &SqlExpr) -> Result<Option<usize>> {
    match e {
        SqlExpr::Value(v) => match &v.value {
            Value::Number(n, _) => match n.parse::<usize>() {
                Ok(i) if i >= 1 => Ok(Some(i)),
                _ => Err(located(
                    EmberError::Plan(format!("invalid column position {n}: positions start at 1")),
                    e.span(),
                )),
            },
            _ => Ok(None),
        },
        _ => Ok(None),
    }
}

/// The `i`-th (1-based) output column of `schema`.
pub(crate) fn output_column(schema: &PlanSchema, i: usize, e: &SqlExpr) -> Result<Expr> {
    if i > schema.len() {
        return Err(located(
            EmberError::Plan(format!(
                "column position {i} is out of range: the select list has {} columns",
                schema.len()
            )),
            e.span(),
        ));
    }
    Ok(Expr::Column(schema.field(i - 1).column()))
}

/// Direction and NULL placement. Like PostgreSQL and DataFusion, NULLs sort as the largest
/// value: last when ascending, first when descending, unless NULLS FIRST/LAST says otherwise.
pub(crate) fn sort_expr(expr: Expr, item: &OrderByExpr) -> Result<SortExpr> {
    if item.with_fill.is_some() {
        return not_impl_err!("ORDER BY .. WITH FILL");
    }
    let asc = match &item.options.sort {
        None | Some(OrderBySort::Asc) => true,
        Some(OrderBySort::Desc) => false,
        Some(other) => return not_impl_err!("ORDER BY .. {other:?}"),
    };
    let nulls_first = item.options.nulls_first.unwrap_or(!asc);
    Ok(SortExpr::new(expr, asc, nulls_first))
}

/// A LIMIT/OFFSET count: a non-negative integer literal (`LIMIT ALL` / NULL = no limit).
fn count_literal(e: &SqlExpr, what: &str) -> Result<Option<usize>> {
    match e {
        SqlExpr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse::<usize>().map(Some).map_err(|_| {
                located(
                    EmberError::Plan(format!("{what} must be a non-negative integer, got {n}")),
                    e.span(),
                )
            }),
            Value::Null => Ok(None),
            _ => Err(located(
                EmberError::Plan(format!("{what} must be a non-negative integer, got {e}")),
                e.span(),
            )),
        },
        _ => Err(located(
            EmberError::NotImplemented(format!("{what} with a non-literal value: {e}")),
            e.span(),
        )),
    }
}

/// Column references to the first `n` fields of `schema` (drops hidden sort columns).
pub(crate) fn first_columns(schema: &PlanSchema, n: usize) -> Vec<Expr> {
    schema.fields()[..n]
        .iter()
        .map(|f| Expr::Column(Column::new(f.qualifier.clone(), f.name())))
        .collect()
}
