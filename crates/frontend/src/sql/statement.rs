//! Statements after planning: what the session executes.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use ember_planner::logical::LogicalPlan;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Parquet,
    Csv,
    Json,
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExplainKind {
    /// Logical (unoptimized and optimized), physical plan and stage graph.
    Plan,
    /// Runs the query and shows per-stage metrics.
    Analyze,
}

#[derive(Debug, Clone)]
pub enum PlannedStatement {
    /// A query (SELECT, VALUES, set operations, ...).
    Query(Arc<LogicalPlan>),
    CreateExternalTable {
        name: String,
        format: FileFormat,
        location: String,
        if_not_exists: bool,
    },
    CreateView {
        name: String,
        plan: Arc<LogicalPlan>,
        or_replace: bool,
    },
    /// `CREATE TABLE t AS SELECT` (in memory).
    CreateTableAs {
        name: String,
        plan: Arc<LogicalPlan>,
        if_not_exists: bool,
        or_replace: bool,
    },
    /// `CREATE TABLE t (col type, ...)` (empty, in memory).
    CreateTable {
        name: String,
        schema: SchemaRef,
        if_not_exists: bool,
    },
    /// `INSERT INTO t ...`: `plan` already projects to the table's full schema (columns
    /// not listed are NULL, types cast to the table's).
    Insert {
        table: String,
        plan: Arc<LogicalPlan>,
    },
    DropTable {
        name: String,
        if_exists: bool,
    },
    DropView {
        name: String,
        if_exists: bool,
    },
    ShowTables,
    Describe {
        name: String,
    },
    Explain {
        kind: ExplainKind,
        plan: Arc<LogicalPlan>,
    },
    Set {
        key: String,
        value: String,
    },
    /// `SHOW key`; `None` = `SHOW ALL`.
    Show {
        key: Option<String>,
    },
    /// `COPY (query) TO 'path' STORED AS PARQUET`.
    Copy {
        plan: Arc<LogicalPlan>,
        path: String,
        format: FileFormat,
    },
    /// `CACHE TABLE t [AS query]`.
    CacheTable {
        name: String,
        plan: Option<Arc<LogicalPlan>>,
    },
    UncacheTable {
        name: String,
    },
    /// `CHECKPOINT TABLE t`.
    CheckpointTable {
        name: String,
    },
    VacuumCheckpoints,
}
