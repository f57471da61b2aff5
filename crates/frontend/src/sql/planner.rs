//! The SQL planner's shared state: the session it asks about tables, and the scope of names
//! (CTEs, enclosing queries' columns) visible while one query block is planned.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use sqlparser::ast::{Ident, ObjectName, ObjectNamePart};
use sqlparser::tokenizer::Span;

use ember_planner::error::closest_name;
use ember_planner::expr::Expr;
use ember_planner::logical::LogicalPlan;
use ember_planner::schema::{Column, PlanSchema, PlanSchemaRef};
use ember_planner::EmberError;

use super::ContextProvider;

/// Turns sqlparser ASTs into logical plans, asking `ctx` about tables, views and UDFs.
pub struct SqlPlanner<'a> {
    pub(crate) ctx: &'a dyn ContextProvider,
}

/// What names a query block can see besides its own FROM clause.
///
/// Cloning a scope shares its `outer_refs` collector: derived tables inside a correlated
/// subquery report their outer references to the same subquery.
#[derive(Clone, Default)]
pub(crate) struct Scope {
    /// Common table expressions in scope (normalised name → plan).
    pub ctes: HashMap<String, Arc<LogicalPlan>>,
    /// Schemas of the enclosing queries, innermost last: where correlated columns resolve.
    pub outer: Vec<PlanSchemaRef>,
    /// Outer columns used by the subquery being planned.
    pub outer_refs: Rc<RefCell<Vec<Column>>>,
    /// Select-list aliases, visible to GROUP BY, HAVING and ORDER BY only.
    pub aliases: Rc<HashMap<String, Expr>>,
}

impl Scope {
    /// The scope of a subquery nested in a query whose rows have `schema`.
    pub fn subquery(&self, schema: &PlanSchema) -> Scope {
        let mut outer = self.outer.clone();
        outer.push(Arc::new(schema.clone()));
        Scope {
            ctes: self.ctes.clone(),
            outer,
            outer_refs: Rc::default(),
            aliases: Rc::default(),
        }
    }

    /// This scope without select-list aliases (for FROM items and WHERE).
    pub fn without_aliases(&self) -> Scope {
        Scope {
            aliases: Rc::default(),
            ..self.clone()
        }
    }

    pub fn record_outer_ref(&self, column: &Column) {
        let mut refs = self.outer_refs.borrow_mut();
        if !refs.contains(column) {
            refs.push(column.clone());
        }
    }
}

impl<'a> SqlPlanner<'a> {
    pub fn new(ctx: &'a dyn ContextProvider) -> Self {
        SqlPlanner { ctx }
    }

    /// The "table 'x' not found. Did you mean 'y'?" error.
    pub(crate) fn table_not_found(&self, name: &str, scope: &Scope, span: Span) -> EmberError {
        let mut names = self.ctx.table_names();
        names.extend(scope.ctes.keys().cloned());
        let hint = closest_name(name, names.iter().map(String::as_str))
            .map(|n| format!(" Did you mean '{n}'?"))
            .unwrap_or_default();
        located(
            EmberError::Plan(format!("table '{name}' not found.{hint}")),
            span,
        )
    }
}

/// An identifier as Ember sees it: unquoted names are case-insensitive (lowercased), quoted
/// names are kept as written.
pub(crate) fn normalize_ident(id: &Ident) -> String {
    match id.quote_style {
        Some(_) => id.value.clone(),
        None => id.value.to_ascii_lowercase(),
    }
}

/// A (possibly qualified) object name as a dotted, normalised string.
pub(crate) fn object_name(name: &ObjectName) -> String {
    name.0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(id) => normalize_ident(id),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// The span of an object name (for error locations).
pub(crate) fn object_name_span(name: &ObjectName) -> Span {
    name.0
        .iter()
        .filter_map(ObjectNamePart::as_ident)
        .map(|id| id.span)
        .reduce(|a, b| a.union(&b))
        .unwrap_or_else(Span::empty)
}

/// Adds "at line L:C" to a user-facing error that does not say where yet.
pub(crate) fn located(err: EmberError, span: Span) -> EmberError {
    let loc = span.start;
    if loc.line == 0 {
        return err;
    }
    let suffix = format!(" (at line {}:{})", loc.line, loc.column);
    match err {
        EmberError::Plan(m) if !m.contains("(at line ") => EmberError::Plan(m + &suffix),
        EmberError::NotImplemented(m) if !m.contains("(at line ") => {
            EmberError::NotImplemented(m + &suffix)
        }
        EmberError::Context { context, source } => EmberError::Context {
            context,
            source: Box::new(located(*source, span)),
        },
        other => other,
    }
}
