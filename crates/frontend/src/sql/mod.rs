//! SQL text → [`PlannedStatement`]s: parsing (sqlparser plus Ember's own statements) and
//! planning of queries into logical plans.

mod expr;
mod literal;
pub mod parser;
mod planner;
mod query;
mod relation;
mod select;
pub mod statement;
mod statements;
#[cfg(test)]
mod tests;
mod types;

use std::sync::Arc;

use arrow::datatypes::DataType;
use ember_planner::logical::LogicalPlan;
use ember_planner::table::TableSource;
use ember_planner::Result;

pub use parser::{parse_sql, EmberStatement};
pub use planner::SqlPlanner;
pub use statement::{FileFormat, PlannedStatement};
pub use types::sql_to_arrow_type;

/// What the SQL planner needs to know about the session: tables, views, UDFs.
pub trait ContextProvider {
    /// A table by (case-insensitive) name.
    fn get_table(&self, name: &str) -> Option<Arc<dyn TableSource>>;
    /// A view's plan by (case-insensitive) name.
    fn get_view(&self, name: &str) -> Option<Arc<LogicalPlan>>;
    /// A scalar UDF's argument and return types.
    fn get_udf(&self, name: &str) -> Option<(Vec<DataType>, DataType)>;
    /// A table function in FROM: `read_parquet('path')`, `read_csv(..)`, `read_json(..)`,
    /// `read_text(..)`.
    fn table_function(&self, name: &str, args: &[String]) -> Result<Arc<dyn TableSource>>;
    /// All table and view names, for "did you mean" hints.
    fn table_names(&self) -> Vec<String>;
}

/// Parses and plans `sql` (one or more statements) against the session `ctx`.
pub fn plan_sql(sql: &str, ctx: &dyn ContextProvider) -> Result<Vec<PlannedStatement>> {
    let planner = SqlPlanner::new(ctx);
    let mut out = Vec::new();
    for stmt in parse_sql(sql)? {
        out.extend(planner.plan_statement(&stmt)?);
    }
    Ok(out)
}
