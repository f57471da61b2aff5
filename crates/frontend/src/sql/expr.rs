//! SQL expressions → [`Expr`]: columns (with correlated outer columns), literals, operators,
//! functions, aggregates and subqueries.

use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion_common::ScalarValue;
use sqlparser::ast::{
    BinaryOperator, CastKind, CeilFloorKind, DateTimeField, DuplicateTreatment, Expr as SqlExpr,
    Function, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, InTarget, Query, Spanned,
    TrimWhereField, UnaryOperator, Value,
};
use sqlparser::tokenizer::Span;

use ember_planner::error::closest_name;
use ember_planner::expr::{lit, AggregateFunction, BuiltinFunction, Expr, Operator, Subquery};
use ember_planner::schema::{Column, PlanSchema};
use ember_planner::{not_impl_err, plan_err, EmberError, Result};

use super::literal::{date_literal, interval_literal, number_literal};
use super::planner::{located, normalize_ident, Scope, SqlPlanner};
use super::types::sql_to_arrow_type;

impl SqlPlanner<'_> {
    /// Plans `sql` over rows of `schema`. Errors say where in the SQL text they are.
    pub(crate) fn sql_to_expr(
        &self,
        sql: &SqlExpr,
        schema: &PlanSchema,
        scope: &Scope,
    ) -> Result<Expr> {
        self.sql_to_expr_inner(sql, schema, scope)
            .map_err(|e| located(e, sql.span()))
    }

    fn sql_to_expr_inner(&self, sql: &SqlExpr, schema: &PlanSchema, scope: &Scope) -> Result<Expr> {
        let plan = |e: &SqlExpr| self.sql_to_expr(e, schema, scope);
        let boxed = |e: &SqlExpr| plan(e).map(Box::new);
        Ok(match sql {
            SqlExpr::Identifier(id) => self.resolve_column(
                Column::unqualified(normalize_ident(id)),
                id.span,
                schema,
                scope,
            )?,
            SqlExpr::CompoundIdentifier(ids) => {
                let span = Span::union_iter(ids.iter().map(|i| i.span));
                let col = compound_column(ids)?;
                self.resolve_column(col, span, schema, scope)?
            }
            SqlExpr::Value(v) => Expr::Literal(value_to_scalar(&v.value, false)?),
            SqlExpr::TypedString(ts) => {
                let text = string_value(&ts.value.value).ok_or_else(|| {
                    EmberError::Plan(format!("expected a string literal in {sql}"))
                })?;
                let data_type = sql_to_arrow_type(&ts.data_type)?;
                match data_type {
                    DataType::Date32 => Expr::Literal(date_literal(&text)?),
                    other => Expr::Literal(ScalarValue::Utf8(Some(text))).cast_to(other),
                }
            }
            SqlExpr::Interval(iv) => {
                let text = match iv.value.as_ref() {
                    SqlExpr::Value(v) => match &v.value {
                        Value::Number(n, _) => n.clone(),
                        other => string_value(other).ok_or_else(|| {
                            EmberError::Plan(format!("expected a string in {sql}"))
                        })?,
                    },
                    _ => return not_impl_err!("INTERVAL of a non-literal value: {sql}"),
                };
                if iv.last_field.is_some() {
                    return not_impl_err!("INTERVAL ranges (e.g. YEAR TO MONTH): {sql}");
                }
                let unit = iv.leading_field.as_ref().map(field_name);
                Expr::Literal(interval_literal(&text, unit.as_deref())?)
            }
            SqlExpr::Nested(e) => plan(e)?,
            SqlExpr::UnaryOp { op, expr } => match (op, expr.as_ref()) {
                (UnaryOperator::Minus, SqlExpr::Value(v))
                    if matches!(v.value, Value::Number(..)) =>
                {
                    Expr::Literal(value_to_scalar(&v.value, true)?)
                }
                (UnaryOperator::Minus, e) => Expr::Negative(boxed(e)?),
                (UnaryOperator::Plus, e) => plan(e)?,
                (UnaryOperator::Not, e) => Expr::Not(boxed(e)?),
                (op, _) => return not_impl_err!("unary operator {op} in {sql}"),
            },
            SqlExpr::BinaryOp { left, op, right } => {
                let op = binary_operator(op, sql)?;
                Expr::BinaryExpr {
                    left: boxed(left)?,
                    op,
                    right: boxed(right)?,
                }
            }
            SqlExpr::IsNull(e) => Expr::IsNull(boxed(e)?),
            SqlExpr::IsNotNull(e) => Expr::IsNotNull(boxed(e)?),
            // `x IS TRUE` is never NULL: COALESCE(x, false).
            SqlExpr::IsTrue(e) => is_true(plan(e)?),
            SqlExpr::IsNotTrue(e) => is_true(plan(e)?).not(),
            SqlExpr::IsFalse(e) => is_true(plan(e)?.not()),
            SqlExpr::IsNotFalse(e) => is_true(plan(e)?.not()).not(),
            SqlExpr::IsDistinctFrom(a, b) => is_distinct_from(plan(a)?, plan(b)?),
            SqlExpr::IsNotDistinctFrom(a, b) => is_distinct_from(plan(a)?, plan(b)?).not(),
            // `x = ANY (subquery)` is `x IN (subquery)`, and `x <> ALL (subquery)` is
            // `x NOT IN (subquery)`, NULLs included; other comparisons are not supported.
            SqlExpr::AnyOp {
                left,
                compare_op: BinaryOperator::Eq,
                right,
                ..
            }
            | SqlExpr::AllOp {
                left,
                compare_op: BinaryOperator::NotEq,
                right,
            } if matches!(right.as_ref(), SqlExpr::Subquery(_)) => {
                let SqlExpr::Subquery(q) = right.as_ref() else {
                    unreachable!("matched above")
                };
                let negated = matches!(sql, SqlExpr::AllOp { .. });
                self.in_subquery(plan(left)?, q, negated, schema, scope)?
            }
            SqlExpr::Between {
                expr,
                negated,
                low,
                high,
            } => Expr::Between {
                expr: boxed(expr)?,
                negated: *negated,
                low: boxed(low)?,
                high: boxed(high)?,
            },
            SqlExpr::In {
                expr,
                target,
                negated,
                ..
            } => match target {
                InTarget::List(list) => Expr::InList {
                    expr: boxed(expr)?,
                    list: list.iter().map(plan).collect::<Result<_>>()?,
                    negated: *negated,
                },
                InTarget::Subquery(q) => {
                    self.in_subquery(plan(expr)?, q, *negated, schema, scope)?
                }
                _ => return not_impl_err!("IN with this kind of target: {sql}"),
            },
            SqlExpr::Like {
                negated,
                any,
                expr,
                pattern,
                escape_char,
            }
            | SqlExpr::ILike {
                negated,
                any,
                expr,
                pattern,
                escape_char,
            } => {
                if *any || escape_char.is_some() {
                    return not_impl_err!("LIKE ANY / LIKE .. ESCAPE: {sql}");
                }
                Expr::Like {
                    negated: *negated,
                    expr: boxed(expr)?,
                    pattern: boxed(pattern)?,
                    case_insensitive: matches!(sql, SqlExpr::ILike { .. }),
                }
            }
            SqlExpr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => Expr::Case {
                operand: operand.as_deref().map(boxed).transpose()?,
                when_then: conditions
                    .iter()
                    .map(|cw| Ok((plan(&cw.condition)?, plan(&cw.result)?)))
                    .collect::<Result<_>>()?,
                else_expr: else_result.as_deref().map(boxed).transpose()?,
            },
            SqlExpr::Cast {
                kind,
                expr,
                data_type,
                format,
            } => {
                if format.is_some() {
                    return not_impl_err!("CAST .. FORMAT: {sql}");
                }
                if matches!(kind, CastKind::TryCast | CastKind::SafeCast) {
                    return not_impl_err!("TRY_CAST / SAFE_CAST: {sql}");
                }
                plan(expr)?.cast_to(sql_to_arrow_type(data_type)?)
            }
            SqlExpr::Extract { field, expr, .. } => Expr::ScalarFunction {
                func: BuiltinFunction::DatePart,
                args: vec![
                    Expr::Literal(ScalarValue::Utf8(Some(field_name(field)))),
                    plan(expr)?,
                ],
            },
            SqlExpr::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                let mut args = vec![plan(expr)?];
                args.push(match substring_from {
                    Some(f) => plan(f)?,
                    None => Expr::Literal(ScalarValue::Int64(Some(1))),
                });
                if let Some(n) = substring_for {
                    args.push(plan(n)?);
                }
                Expr::ScalarFunction {
                    func: BuiltinFunction::Substring,
                    args,
                }
            }
            SqlExpr::Trim {
                trim_where,
                trim_what,
                expr,
                trim_characters,
            } => {
                if trim_characters.is_some() {
                    return not_impl_err!("TRIM with a character list: {sql}");
                }
                let func = match trim_where {
                    None | Some(TrimWhereField::Both) => BuiltinFunction::Trim,
                    Some(TrimWhereField::Leading) => BuiltinFunction::Ltrim,
                    Some(TrimWhereField::Trailing) => BuiltinFunction::Rtrim,
                };
                let mut args = vec![plan(expr)?];
                if let Some(w) = trim_what {
                    args.push(plan(w)?);
                }
                Expr::ScalarFunction { func, args }
            }
            SqlExpr::Ceil { expr, field } | SqlExpr::Floor { expr, field } => {
                let func = if matches!(sql, SqlExpr::Ceil { .. }) {
                    BuiltinFunction::Ceil
                } else {
                    BuiltinFunction::Floor
                };
                match field {
                    CeilFloorKind::DateTimeField(DateTimeField::NoDateTime) => {}
                    _ => return not_impl_err!("CEIL/FLOOR with a unit or scale: {sql}"),
                }
                Expr::ScalarFunction {
                    func,
                    args: vec![plan(expr)?],
                }
            }
            SqlExpr::Function(f) => self.plan_function(f, schema, scope)?,
            SqlExpr::Subquery(q) => {
                let subquery = self.plan_subquery(q, schema, scope)?;
                if subquery.plan.schema().len() != 1 {
                    return plan_err!(
                        "scalar subquery must return exactly one column, it returns {}",
                        subquery.plan.schema().len()
                    );
                }
                Expr::ScalarSubquery(subquery)
            }
            SqlExpr::Exists { subquery, negated } => Expr::Exists {
                subquery: self.plan_subquery(subquery, schema, scope)?,
                negated: *negated,
            },
            SqlExpr::Array(arr) => {
                let items = arr.elem.iter().map(plan).collect::<Result<Vec<_>>>()?;
                array_literal(items, sql)?
            }
            SqlExpr::Wildcard(_) | SqlExpr::QualifiedWildcard(..) => {
                return plan_err!("'*' is only allowed in the select list and in COUNT(*)")
            }
            other => return not_impl_err!("SQL expression {other}"),
        })
    }

    /// Resolves a column: in this query's FROM first, then in enclosing queries (correlated
    /// subqueries), innermost first. Select-list aliases come after the FROM columns.
    fn resolve_column(
        &self,
        column: Column,
        span: Span,
        schema: &PlanSchema,
        scope: &Scope,
    ) -> Result<Expr> {
        if let Some(i) = schema.maybe_index_of_column(&column)? {
            return Ok(Expr::Column(schema.field(i).column()));
        }
        if column.relation.is_none() {
            if let Some(e) = scope.aliases.get(&column.name) {
                return Ok(e.clone());
            }
        }
        for outer in scope.outer.iter().rev() {
            if let Some(i) = outer.maybe_index_of_column(&column)? {
                let field = outer.field(i);
                let resolved = field.column();
                scope.record_outer_ref(&resolved);
                return Ok(Expr::OuterColumn(resolved, field.data_type().clone()));
            }
        }
        match schema.index_of_column(&column) {
            Err(e) => Err(located(e, span)),
            Ok(_) => Err(EmberError::Internal(format!(
                "column {column} both missing and present"
            ))),
        }
    }

    /// Plans a subquery with the current row schema as its outer scope. Outer references
    /// that reach further out are also reported to the enclosing subquery.
    pub(crate) fn plan_subquery(
        &self,
        query: &Query,
        schema: &PlanSchema,
        scope: &Scope,
    ) -> Result<Subquery> {
        let inner = scope.subquery(schema);
        let plan = self.plan_query(query, &inner)?;
        let outer_refs = inner.outer_refs.borrow().clone();
        for r in &outer_refs {
            if !schema.has_column(r) {
                scope.record_outer_ref(r);
            }
        }
        Ok(Subquery { plan, outer_refs })
    }

    /// `expr [NOT] IN (query)`.
    fn in_subquery(
        &self,
        expr: Expr,
        query: &Query,
        negated: bool,
        schema: &PlanSchema,
        scope: &Scope,
    ) -> Result<Expr> {
        let subquery = self.plan_subquery(query, schema, scope)?;
        if subquery.plan.schema().len() != 1 {
            return plan_err!(
                "IN subquery must return exactly one column, it returns {}",
                subquery.plan.schema().len()
            );
        }
        Ok(Expr::InSubquery {
            expr: Box::new(expr),
            subquery,
            negated,
        })
    }

    fn plan_function(&self, f: &Function, schema: &PlanSchema, scope: &Scope) -> Result<Expr> {
        let name = f
            .name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(normalize_ident)
            .unwrap_or_else(|| f.name.to_string().to_ascii_lowercase());
        if f.over.is_some() {
            return not_impl_err!("window function {name}(..) OVER (..)");
        }
        if !f.within_group.is_empty() || f.null_treatment.is_some() {
            return not_impl_err!("WITHIN GROUP / NULLS clauses on {name}");
        }
        let filter = f
            .filter
            .as_ref()
            .map(|c| self.sql_to_expr(c, schema, scope))
            .transpose()?;
        if let Some(c) = &filter {
            if AggregateFunction::from_name(&name).is_none() {
                return plan_err!(
                    "FILTER (WHERE ..) is only allowed on aggregate functions, not on {name}()"
                );
            }
            if c.contains_aggregate() {
                return plan_err!("aggregate functions are not allowed in FILTER (WHERE ..): {c}");
            }
        }
        let (args, distinct) = match &f.args {
            FunctionArguments::None => (vec![], false),
            FunctionArguments::Subquery(_) => {
                return not_impl_err!("a subquery as the argument of {name}")
            }
            FunctionArguments::List(list) => {
                if !list.clauses.is_empty() {
                    return not_impl_err!("clauses inside the arguments of {name}");
                }
                (
                    list.args.iter().collect::<Vec<_>>(),
                    matches!(list.duplicate_treatment, Some(DuplicateTreatment::Distinct)),
                )
            }
        };
        let mut star = false;
        let mut planned = Vec::with_capacity(args.len());
        for a in &args {
            match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => {
                    planned.push(self.sql_to_expr(e, schema, scope)?)
                }
                FunctionArg::Unnamed(FunctionArgExpr::Wildcard) => star = true,
                other => return not_impl_err!("function argument {other} in {name}"),
            }
        }

        if let Some(func) = AggregateFunction::from_name(&name) {
            if star {
                if func != AggregateFunction::Count || !planned.is_empty() || distinct {
                    return plan_err!("'*' is only allowed as COUNT(*)");
                }
                // COUNT(*) FILTER (WHERE c) counts the rows where c holds.
                let args = filter
                    .map(|c| vec![only_where(c, lit(1i64))])
                    .unwrap_or_default();
                return Ok(Expr::AggregateFunction {
                    func,
                    args,
                    distinct: false,
                });
            }
            if planned.len() != 1 {
                return plan_err!(
                    "{}() takes one argument, got {}",
                    func.name(),
                    planned.len()
                );
            }
            if let Some(inner) = planned.iter().find(|a| a.contains_aggregate()) {
                return plan_err!("aggregate functions cannot be nested: {inner} inside {name}");
            }
            // Every aggregate skips NULL inputs, so `agg(x) FILTER (WHERE c)` is
            // `agg(CASE WHEN c THEN x END)`: rows failing c (or where c is NULL) are skipped.
            let args = match filter {
                Some(c) => planned
                    .into_iter()
                    .map(|a| only_where(c.clone(), a))
                    .collect(),
                None => planned,
            };
            return Ok(Expr::AggregateFunction {
                func,
                args,
                distinct,
            });
        }
        if star {
            return plan_err!("'*' is not a valid argument of {name}()");
        }
        if distinct {
            return plan_err!("DISTINCT is only allowed in aggregate functions, not in {name}()");
        }
        if let Some((arg_types, return_type)) = self.ctx.get_udf(&name) {
            if arg_types.len() != planned.len() {
                return plan_err!(
                    "function {name}() takes {} arguments, got {}",
                    arg_types.len(),
                    planned.len()
                );
            }
            let args = planned
                .into_iter()
                .zip(arg_types)
                .map(|(a, t)| match a.data_type(schema) {
                    Ok(actual) if actual == t => Ok(a),
                    Ok(_) => Ok(a.cast_to(t)),
                    // Outer columns and the like are typed later; leave them alone.
                    Err(e) if a.contains_outer_column() => {
                        let _ = e;
                        Ok(a)
                    }
                    Err(e) => Err(e),
                })
                .collect::<Result<Vec<_>>>()?;
            return Ok(Expr::ScalarUdf {
                name,
                args,
                return_type,
            });
        }
        if let Some(func) = BuiltinFunction::from_name(&name) {
            return Ok(Expr::ScalarFunction {
                func,
                args: planned,
            });
        }
        if name == "unnest" {
            return plan_err!("unnest(..) is only allowed as a whole select-list item or in FROM");
        }
        let known = [
            "count",
            "sum",
            "avg",
            "min",
            "max",
            "substring",
            "upper",
            "lower",
            "trim",
            "ltrim",
            "rtrim",
            "length",
            "concat",
            "split",
            "starts_with",
            "abs",
            "round",
            "floor",
            "ceil",
            "power",
            "sqrt",
            "coalesce",
            "nullif",
            "date_part",
        ];
        let hint = closest_name(&name, known)
            .map(|n| format!(" Did you mean '{n}'?"))
            .unwrap_or_default();
        plan_err!("unknown function '{name}'.{hint}")
    }
}

/// `a.b` → column b of relation a; `s.a.b` → column b of relation `s.a`.
fn compound_column(ids: &[Ident]) -> Result<Column> {
    let names: Vec<String> = ids.iter().map(normalize_ident).collect();
    match names.as_slice() {
        [name] => Ok(Column::unqualified(name.clone())),
        [rel @ .., name] if !rel.is_empty() => Ok(Column::new(Some(rel.join(".")), name.clone())),
        _ => plan_err!("empty column name"),
    }
}

fn binary_operator(op: &BinaryOperator, sql: &SqlExpr) -> Result<Operator> {
    Ok(match op {
        BinaryOperator::Plus => Operator::Plus,
        BinaryOperator::Minus => Operator::Minus,
        BinaryOperator::Multiply => Operator::Multiply,
        BinaryOperator::Divide => Operator::Divide,
        BinaryOperator::Modulo => Operator::Modulo,
        BinaryOperator::StringConcat => Operator::StringConcat,
        BinaryOperator::Gt => Operator::Gt,
        BinaryOperator::Lt => Operator::Lt,
        BinaryOperator::GtEq => Operator::GtEq,
        BinaryOperator::LtEq => Operator::LtEq,
        BinaryOperator::Eq => Operator::Eq,
        BinaryOperator::NotEq => Operator::NotEq,
        BinaryOperator::And => Operator::And,
        BinaryOperator::Or => Operator::Or,
        other => return not_impl_err!("binary operator {other} in {sql}"),
    })
}

fn is_true(e: Expr) -> Expr {
    Expr::ScalarFunction {
        func: BuiltinFunction::Coalesce,
        args: vec![e, Expr::Literal(ScalarValue::Boolean(Some(false)))],
    }
}

/// `a IS DISTINCT FROM b` = `(a <> b OR a IS NULL OR b IS NULL) AND NOT (a IS NULL AND b IS NULL)`,
/// made NULL-free with COALESCE.
fn is_distinct_from(a: Expr, b: Expr) -> Expr {
    let differ = is_true(a.clone().not_eq(b.clone()));
    let one_null = a.clone().is_null().or(b.clone().is_null());
    let both_null = a.is_null().and(b.is_null());
    differ.or(one_null).and(both_null.not())
}

/// The lowercase name of a date/time field (`YEAR` → "year").
pub(crate) fn field_name(field: &DateTimeField) -> String {
    field.to_string().to_ascii_lowercase()
}

/// The text of a string literal of any quoting style.
pub(crate) fn string_value(v: &Value) -> Option<String> {
    match v {
        Value::SingleQuotedString(s)
        | Value::DoubleQuotedString(s)
        | Value::EscapedStringLiteral(s)
        | Value::NationalStringLiteral(s)
        | Value::TripleSingleQuotedString(s)
        | Value::TripleDoubleQuotedString(s)
        | Value::UnicodeStringLiteral(s) => Some(s.clone()),
        Value::DollarQuotedString(s) => Some(s.value.clone()),
        _ => None,
    }
}

/// A SQL literal value; `negate` applies a leading minus to numbers.
pub(crate) fn value_to_scalar(v: &Value, negate: bool) -> Result<ScalarValue> {
    Ok(match v {
        Value::Number(n, _) => number_literal(n, negate)?,
        Value::Boolean(b) => ScalarValue::Boolean(Some(*b)),
        Value::Null => ScalarValue::Null,
        Value::Placeholder(p) => return not_impl_err!("query parameters ({p})"),
        other => match string_value(other) {
            Some(s) => ScalarValue::Utf8(Some(s)),
            None => return not_impl_err!("literal {other}"),
        },
    })
}

/// `[1, 2, 3]` of constants → a list literal.
fn array_literal(items: Vec<Expr>, sql: &SqlExpr) -> Result<Expr> {
    let mut values = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Expr::Literal(v) => values.push(v),
            _ => return not_impl_err!("array of non-constant elements: {sql}"),
        }
    }
    let mut element_type = DataType::Null;
    for v in &values {
        element_type = ember_planner::types::common_type(&element_type, &v.data_type())
            .ok_or_else(|| {
                EmberError::Plan(format!("array elements have incompatible types in {sql}"))
            })?;
    }
    let values = values
        .into_iter()
        .map(|v| {
            if v.data_type() == element_type {
                Ok(v)
            } else {
                v.cast_to(&element_type).map_err(EmberError::from)
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let list = ScalarValue::new_list(&values, &element_type, true);
    Ok(Expr::Literal(ScalarValue::List(Arc::clone(&list))))
}

/// `CASE WHEN condition THEN value END`: `value` where `condition` holds, NULL elsewhere.
fn only_where(condition: Expr, value: Expr) -> Expr {
    Expr::Case {
        operand: None,
        when_then: vec![(condition, value)],
        else_expr: None,
    }
}
