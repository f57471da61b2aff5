//! The [`Session`]: one user's view of Ember — configuration, catalog, UDFs and the executors
//! queries run on. SQL text and DataFrames both end up here to be run.
//!
//! A `Session` is a cheap handle (`Clone` shares the same state), so every [`DataFrame`] can
//! carry the session it was built in and run itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion_common::ScalarValue;
use ember_exec::events::{Status, StatusTracker};
use ember_exec::udf::{FunctionRegistry, ScalarFunctionImpl, ScalarUdf};
use ember_planner::error::closest_name;
use ember_planner::expr::Expr;
use ember_planner::logical::{EmptyRelation, LogicalPlan, TableScan, Values};
use ember_planner::persist::{PersistId, PersistMode, StorageLevel};
use ember_planner::schema::PlanSchema;
use ember_planner::table::TableSource;
use ember_planner::{EmberError, Result};
use parking_lot::RwLock;

use crate::catalog::{Catalog, CatalogEntry};
use crate::config::SessionConfig;
use crate::dataframe::DataFrame;
use crate::execution::{PreparedQuery, QueryResult};
use crate::runtime::Runtime;
use crate::sources;
use crate::split::split_statements;
use crate::sql::statement::ExplainKind;
use crate::sql::{plan_sql, ContextProvider, FileFormat, PlannedStatement};
use crate::write::WriteSummary;

/// What one SQL statement produced, for the REPL and scripts.
#[derive(Debug, Clone)]
pub enum StatementResult {
    /// A result set (queries, SHOW, DESCRIBE, EXPLAIN).
    Rows(QueryResult),
    /// A statement without rows (DDL, SET, INSERT): what it did.
    Message(String),
}

/// Builds a [`Session`] with configuration set up front.
#[derive(Debug, Default)]
pub struct SessionBuilder {
    config: SessionConfig,
    /// The first invalid setting, reported by `build` so calls can be chained.
    error: Option<EmberError>,
}

impl SessionBuilder {
    /// Sets a configuration key (see [`SessionConfig::set`]).
    pub fn config(mut self, key: &str, value: &str) -> Self {
        if self.error.is_none() {
            if let Err(e) = self.config.set(key, value) {
                self.error = Some(e);
            }
        }
        self
    }

    pub fn build(self) -> Result<Session> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(Session::with_config(self.config)),
        }
    }
}

struct SessionState {
    config: RwLock<SessionConfig>,
    catalog: RwLock<Catalog>,
    functions: Arc<FunctionRegistry>,
    runtime: Runtime,
    /// The next id for a persisted plan (`cache()`, `checkpoint()`, `CACHE TABLE`, ...).
    next_persist_id: AtomicU64,
}

impl Drop for SessionState {
    /// `ember.checkpoint.cleanup`: a session that ends normally removes the checkpoints it
    /// wrote. A crashed application never gets here, so its checkpoints stay for a restart.
    fn drop(&mut self) {
        let config = self.config.read();
        if config.get(crate::config::CHECKPOINT_CLEANUP) != Some("true") {
            return;
        }
        if let Some(cluster) = self.runtime.current_cluster() {
            let dir = config
                .get(crate::config::CHECKPOINT_DIR)
                .unwrap_or(ember_storage::checkpoint::DEFAULT_CHECKPOINT_DIR);
            crate::persist::remove_session_checkpoints(&cluster, dir);
        }
    }
}

/// An Ember session.
///
/// ```
/// use ember_frontend::prelude::*;
///
/// let session = Session::new();
/// let df = session.sql("SELECT 1 + 1 AS two").unwrap();
/// let batches = df.collect().unwrap();
/// assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
/// ```
#[derive(Clone)]
pub struct Session {
    state: Arc<SessionState>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("tables", &self.state.catalog.read().names())
            .finish()
    }
}

impl Default for Session {
    fn default() -> Self {
        Session::new()
    }
}

impl Session {
    /// A session with the default configuration.
    pub fn new() -> Self {
        Session::with_config(SessionConfig::default())
    }

    pub fn builder() -> SessionBuilder {
        SessionBuilder::default()
    }

    pub fn with_config(config: SessionConfig) -> Self {
        Session {
            state: Arc::new(SessionState {
                config: RwLock::new(config),
                catalog: RwLock::new(Catalog::new()),
                functions: Arc::new(FunctionRegistry::default()),
                runtime: Runtime::default(),
                next_persist_id: AtomicU64::new(1),
            }),
        }
    }

    pub(crate) fn catalog(&self) -> &RwLock<Catalog> {
        &self.state.catalog
    }

    pub(crate) fn runtime(&self) -> &Runtime {
        &self.state.runtime
    }

    /// A fresh id for a persisted plan, unique in this session.
    pub(crate) fn next_persist_id(&self) -> PersistId {
        self.state.next_persist_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A snapshot of the configuration.
    pub fn config(&self) -> SessionConfig {
        self.state.config.read().clone()
    }

    /// Changes a configuration key, as `SET key = value` does.
    pub fn set_config(&self, key: &str, value: &str) -> Result<()> {
        self.state.config.write().set(key, value)
    }

    pub fn functions(&self) -> &Arc<FunctionRegistry> {
        &self.state.functions
    }

    // ------------------------------------------------------------------------------------
    // Catalog

    /// Registers (or replaces) a table under `name`.
    pub fn register_table(&self, name: &str, source: Arc<dyn TableSource>) -> Result<()> {
        self.state
            .catalog
            .write()
            .register_table(name, source, true)
    }

    /// Registers the Parquet file, folder or glob at `path` as table `name`.
    pub fn register_parquet(&self, name: &str, path: &str) -> Result<()> {
        self.register_table(name, sources::open(FileFormat::Parquet, path)?)
    }

    /// Registers CSV files (with a header row) at `path` as table `name`.
    pub fn register_csv(&self, name: &str, path: &str) -> Result<()> {
        self.register_table(name, sources::open(FileFormat::Csv, path)?)
    }

    /// Registers JSON-lines files at `path` as table `name`.
    pub fn register_json(&self, name: &str, path: &str) -> Result<()> {
        self.register_table(name, sources::open(FileFormat::Json, path)?)
    }

    /// Registers in-memory record batches (one partition per inner `Vec`) as table `name`.
    pub fn register_batches(
        &self,
        name: &str,
        schema: SchemaRef,
        partitions: Vec<Vec<RecordBatch>>,
    ) -> Result<()> {
        self.register_table(name, sources::memory(schema, partitions)?)
    }

    /// Generates the eight TPC-H tables at scale factor `sf` in memory and registers them.
    pub fn register_tpch(&self, sf: f64) -> Result<()> {
        for (name, source) in sources::tpch(sf, self.config().shuffle_partitions())? {
            self.register_table(&name, source)?;
        }
        Ok(())
    }

    /// Removes a table or view; `Ok(false)` when there was none.
    pub fn deregister(&self, name: &str) -> Result<bool> {
        let mut catalog = self.state.catalog.write();
        match catalog.get(name) {
            Some(CatalogEntry::View(_)) => catalog.drop_view(name),
            Some(CatalogEntry::Table(_)) => catalog.drop_table(name),
            None => Ok(false),
        }
    }

    /// Names of all tables and views.
    pub fn table_names(&self) -> Vec<String> {
        self.state.catalog.read().names()
    }

    /// The DataFrame reading table or view `name`.
    pub fn table(&self, name: &str) -> Result<DataFrame> {
        let catalog = self.state.catalog.read();
        if let Some(plan) = catalog.plan_of(name) {
            return Ok(DataFrame::new(self.clone(), plan));
        }
        match catalog.get(name) {
            Some(CatalogEntry::Table(source)) => {
                let scan =
                    TableScan::try_new(name.to_ascii_lowercase(), source.clone(), None, vec![])?;
                Ok(DataFrame::new(
                    self.clone(),
                    Arc::new(LogicalPlan::TableScan(scan)),
                ))
            }
            Some(CatalogEntry::View(plan)) => Ok(DataFrame::new(self.clone(), plan.clone())),
            None => Err(unknown_table(name, &catalog.names())),
        }
    }

    /// Registers a scalar UDF: `f` receives the argument arrays (already cast to
    /// `arg_types`) and returns an array of `return_type` with one value per row.
    pub fn register_udf<F>(&self, name: &str, arg_types: Vec<DataType>, return_type: DataType, f: F)
    where
        F: Fn(&[ArrayRef]) -> Result<ArrayRef> + Send + Sync + 'static,
    {
        let fun: ScalarFunctionImpl = Arc::new(f);
        self.state.functions.register(ScalarUdf {
            name: name.to_ascii_lowercase(),
            arg_types,
            return_type,
            fun,
        });
    }

    // ------------------------------------------------------------------------------------
    // Reading files directly

    /// A DataFrame over Parquet files (a file, a folder or a glob).
    pub fn read_parquet(&self, path: &str) -> Result<DataFrame> {
        self.read(FileFormat::Parquet, path)
    }

    pub fn read_csv(&self, path: &str) -> Result<DataFrame> {
        self.read(FileFormat::Csv, path)
    }

    pub fn read_json(&self, path: &str) -> Result<DataFrame> {
        self.read(FileFormat::Json, path)
    }

    /// One row per line, in a column named `line`.
    pub fn read_text(&self, path: &str) -> Result<DataFrame> {
        self.read(FileFormat::Text, path)
    }

    fn read(&self, format: FileFormat, path: &str) -> Result<DataFrame> {
        let source = sources::open(format, path)?;
        let name = sources::table_name_for(path);
        let scan = TableScan::try_new(name, source, None, vec![])?;
        Ok(DataFrame::new(
            self.clone(),
            Arc::new(LogicalPlan::TableScan(scan)),
        ))
    }

    // ------------------------------------------------------------------------------------
    // SQL

    /// Runs every statement of `sql` and returns the last one's result as a DataFrame.
    /// A final query stays lazy (run it with `collect`/`show`); statements before it run
    /// now. DDL and SET give an empty DataFrame.
    pub fn sql(&self, sql: &str) -> Result<DataFrame> {
        let pieces = split_statements(sql);
        if pieces.is_empty() {
            return Err(EmberError::Sql("no SQL statement to run".into()));
        }
        let mut last = None;
        for piece in &pieces {
            for statement in plan_sql(piece, self)? {
                last = Some(self.statement_to_dataframe(statement)?);
            }
        }
        last.ok_or_else(|| EmberError::Sql("no SQL statement to run".into()))
    }

    /// Runs every statement of `sql`, collecting each one's result (for scripts and the
    /// REPL). Stops at the first error.
    pub fn execute_sql(&self, sql: &str) -> Result<Vec<StatementResult>> {
        let mut results = Vec::new();
        self.execute_sql_each(sql, |r| {
            results.push(r);
            Ok(())
        })?;
        Ok(results)
    }

    /// Like [`Session::execute_sql`], but hands each statement's result to `on_result` as
    /// soon as it is ready, so a script prints earlier results before a later error.
    pub fn execute_sql_each(
        &self,
        sql: &str,
        mut on_result: impl FnMut(StatementResult) -> Result<()>,
    ) -> Result<()> {
        for piece in split_statements(sql) {
            for statement in plan_sql(&piece, self)? {
                on_result(self.execute_statement(statement)?)?;
            }
        }
        Ok(())
    }

    /// Runs one planned statement to completion.
    pub fn execute_statement(&self, statement: PlannedStatement) -> Result<StatementResult> {
        match statement {
            PlannedStatement::Query(plan) => Ok(StatementResult::Rows(self.execute_plan(&plan)?)),
            other => match self.run_command(other)? {
                CommandOutput::Rows(table) => Ok(StatementResult::Rows(table.into_result()?)),
                CommandOutput::Message(m) => Ok(StatementResult::Message(m)),
            },
        }
    }

    fn statement_to_dataframe(&self, statement: PlannedStatement) -> Result<DataFrame> {
        match statement {
            PlannedStatement::Query(plan) => Ok(DataFrame::new(self.clone(), plan)),
            other => match self.run_command(other)? {
                CommandOutput::Rows(table) => Ok(DataFrame::new(self.clone(), table.into_plan())),
                CommandOutput::Message(_) => Ok(DataFrame::new(self.clone(), empty_plan())),
            },
        }
    }

    /// Plans and runs a logical plan on the session's executors.
    pub fn execute_plan(&self, plan: &Arc<LogicalPlan>) -> Result<QueryResult> {
        let config = self.config();
        let prepared = PreparedQuery::plan(plan, &config)?;
        self.state
            .runtime
            .run(&prepared, &config, &self.state.functions)
    }

    /// Writes the result of `plan` into folder `path` through the output commit protocol
    /// (see [`crate::write`]): exactly one file per result partition, `_SUCCESS` last, and
    /// nothing left behind if the job fails.
    pub(crate) fn write_plan(
        &self,
        plan: &Arc<LogicalPlan>,
        path: &str,
        format: FileFormat,
    ) -> Result<WriteSummary> {
        let config = self.config();
        crate::write::write_plan(plan, path, format, &config, |prepared| {
            let result = self
                .state
                .runtime
                .run(prepared, &config, &self.state.functions)?;
            Ok(result.partitions)
        })
    }

    /// Plans `plan` down to the stage graph without running it (for EXPLAIN).
    pub fn prepare(&self, plan: &Arc<LogicalPlan>) -> Result<PreparedQuery> {
        PreparedQuery::plan(plan, &self.config())
    }

    /// Runs an already planned query (EXPLAIN ANALYZE reports on the graph it ran).
    pub(crate) fn run_prepared(&self, prepared: &PreparedQuery) -> Result<QueryResult> {
        self.state
            .runtime
            .run(prepared, &self.config(), &self.state.functions)
    }

    // ------------------------------------------------------------------------------------
    // Monitoring

    /// What the session's application has done so far — jobs, stages, task attempts with
    /// failed/retried counts, recomputed partitions, executors, checkpoints — built from the
    /// cluster's event stream whether or not `ember.eventLog.enabled` writes it to a file.
    /// Empty before the first query. Changing `ember.executor.*` or `ember.eventLog.*`
    /// starts a new application, whose status starts afresh.
    pub fn status(&self) -> Status {
        self.status_tracker()
            .map(|t| t.snapshot())
            .unwrap_or_default()
    }

    /// The live tracker behind [`Session::status`], once a query has started the cluster.
    pub fn status_tracker(&self) -> Option<Arc<StatusTracker>> {
        self.state
            .runtime
            .current_cluster()?
            .events()
            .status_tracker()
    }

    /// Every statement except queries.
    fn run_command(&self, statement: PlannedStatement) -> Result<CommandOutput> {
        use PlannedStatement as S;
        match statement {
            S::Query(plan) => Ok(CommandOutput::Rows(StringTable::from_result(
                self.execute_plan(&plan)?,
            )?)),
            S::CreateExternalTable {
                name,
                format,
                location,
                if_not_exists,
            } => {
                if if_not_exists && self.exists(&name) {
                    return Ok(CommandOutput::Message(format!(
                        "Table '{name}' already exists."
                    )));
                }
                let source = sources::open(format, &location)?;
                self.state
                    .catalog
                    .write()
                    .register_table(&name, source, false)?;
                Ok(CommandOutput::Message(format!("Table '{name}' created.")))
            }
            S::CreateView {
                name,
                plan,
                or_replace,
            } => {
                self.state
                    .catalog
                    .write()
                    .register_view(&name, plan, or_replace)?;
                Ok(CommandOutput::Message(format!("View '{name}' created.")))
            }
            S::CreateTableAs {
                name,
                plan,
                if_not_exists,
                or_replace,
            } => {
                if if_not_exists && self.exists(&name) {
                    return Ok(CommandOutput::Message(format!(
                        "Table '{name}' already exists."
                    )));
                }
                if !or_replace && self.exists(&name) {
                    return Err(EmberError::Plan(format!("table '{name}' already exists")));
                }
                let result = self.execute_plan(&plan)?;
                let rows = result.num_rows();
                let source = sources::memory(result.schema.clone(), result.partitions)?;
                self.state
                    .catalog
                    .write()
                    .register_table(&name, source, or_replace)?;
                Ok(CommandOutput::Message(format!(
                    "Table '{name}' created with {}.",
                    crate::format::rows_label(rows)
                )))
            }
            S::CreateTable {
                name,
                schema,
                if_not_exists,
            } => {
                if if_not_exists && self.exists(&name) {
                    return Ok(CommandOutput::Message(format!(
                        "Table '{name}' already exists."
                    )));
                }
                let source = sources::memory(schema, vec![])?;
                self.state
                    .catalog
                    .write()
                    .register_table(&name, source, false)?;
                Ok(CommandOutput::Message(format!("Table '{name}' created.")))
            }
            S::Insert { table, plan } => {
                let target = self
                    .state
                    .catalog
                    .read()
                    .table(&table)
                    .ok_or_else(|| unknown_table(&table, &self.table_names()))?;
                let result = self.execute_plan(&plan)?;
                let rows = result.num_rows();
                sources::append(&table, &target, result.into_batches())?;
                Ok(CommandOutput::Message(format!(
                    "Inserted {} into '{table}'.",
                    crate::format::rows_label(rows)
                )))
            }
            S::DropTable { name, if_exists } => {
                let dropped = self.state.catalog.write().drop_table(&name)?;
                if !dropped && !if_exists {
                    return Err(unknown_table(&name, &self.table_names()));
                }
                Ok(CommandOutput::Message(if dropped {
                    format!("Table '{name}' dropped.")
                } else {
                    format!("Table '{name}' does not exist.")
                }))
            }
            S::DropView { name, if_exists } => {
                let dropped = self.state.catalog.write().drop_view(&name)?;
                if !dropped && !if_exists {
                    return Err(EmberError::Plan(format!("view '{name}' not found")));
                }
                Ok(CommandOutput::Message(if dropped {
                    format!("View '{name}' dropped.")
                } else {
                    format!("View '{name}' does not exist.")
                }))
            }
            S::ShowTables => {
                let rows = self
                    .state
                    .catalog
                    .read()
                    .list()
                    .into_iter()
                    .map(|(name, kind)| vec![name, kind.to_string()])
                    .collect();
                Ok(CommandOutput::Rows(StringTable::new(
                    &["table_name", "table_type"],
                    rows,
                )))
            }
            S::Describe { name } => self.describe(&name).map(CommandOutput::Rows),
            S::Explain { kind, plan } => match kind {
                ExplainKind::Plan => {
                    let prepared = self.prepare(&plan)?;
                    let rows = prepared
                        .explain_sections()
                        .into_iter()
                        .map(|(k, v)| vec![k.to_string(), v.trim_end().to_string()])
                        .collect();
                    Ok(CommandOutput::Rows(StringTable::new(
                        &["plan_type", "plan"],
                        rows,
                    )))
                }
                ExplainKind::Analyze => {
                    let rows = crate::explain_analyze::explain_analyze(self, &plan)?
                        .sections()
                        .into_iter()
                        .map(|(k, v)| vec![k.to_string(), v.trim_end().to_string()])
                        .collect();
                    Ok(CommandOutput::Rows(StringTable::new(
                        &["plan_type", "plan"],
                        rows,
                    )))
                }
            },
            S::Set { key, value } => {
                self.set_config(&key, &value)?;
                Ok(CommandOutput::Message(format!("{key} = {value}")))
            }
            S::Show { key } => {
                let config = self.config();
                let rows = match key {
                    None => config
                        .entries()
                        .into_iter()
                        .map(|(k, v)| vec![k, v])
                        .collect(),
                    Some(key) => match config.effective(&key) {
                        Some(v) => vec![vec![key.clone(), v]],
                        None => {
                            return Err(EmberError::Config(format!(
                                "configuration key '{key}' is not set (SHOW ALL lists every key)"
                            )))
                        }
                    },
                };
                Ok(CommandOutput::Rows(StringTable::new(
                    &["key", "value"],
                    rows,
                )))
            }
            S::Copy { plan, path, format } => {
                let written = self.write_plan(&plan, &path, format)?;
                Ok(CommandOutput::Message(format!(
                    "Wrote {} to {path} ({} files).",
                    crate::format::rows_label(written.rows),
                    written.files
                )))
            }
            S::CacheTable { name, plan } => {
                let mode = PersistMode::Cache(StorageLevel::MemoryOnly);
                let rows = self.persist_table(&name, plan, mode)?;
                Ok(CommandOutput::Message(format!(
                    "Table '{name}' cached ({}).",
                    crate::format::rows_label(rows)
                )))
            }
            S::UncacheTable { name } => {
                self.unpersist_table(&name)?;
                Ok(CommandOutput::Message(format!("Table '{name}' uncached.")))
            }
            S::CheckpointTable { name } => {
                let rows = self.persist_table(&name, None, PersistMode::Checkpoint)?;
                Ok(CommandOutput::Message(format!(
                    "Table '{name}' checkpointed ({}) under {}.",
                    crate::format::rows_label(rows),
                    self.checkpoint_dir()
                )))
            }
            S::VacuumCheckpoints => {
                let removed = self.vacuum_checkpoints()?;
                Ok(CommandOutput::Message(format!(
                    "Removed {removed} unused checkpoint{} from {}.",
                    if removed == 1 { "" } else { "s" },
                    self.checkpoint_dir()
                )))
            }
        }
    }

    fn exists(&self, name: &str) -> bool {
        self.state.catalog.read().get(name).is_some()
    }

    fn describe(&self, name: &str) -> Result<StringTable> {
        let catalog = self.state.catalog.read();
        let fields: Vec<Arc<Field>> = match catalog.get(name) {
            Some(CatalogEntry::Table(t)) => t.schema().fields().iter().cloned().collect(),
            Some(CatalogEntry::View(v)) => v
                .schema()
                .fields()
                .iter()
                .map(|f| f.field.clone())
                .collect(),
            None => return Err(unknown_table(name, &catalog.names())),
        };
        let rows = fields
            .iter()
            .map(|f| {
                vec![
                    f.name().clone(),
                    f.data_type().to_string(),
                    if f.is_nullable() { "YES" } else { "NO" }.to_string(),
                ]
            })
            .collect();
        Ok(StringTable::new(
            &["column_name", "data_type", "is_nullable"],
            rows,
        ))
    }
}

/// "table 'x' not found", with the closest known name as a hint.
fn unknown_table(name: &str, known: &[String]) -> EmberError {
    let hint = closest_name(name, known.iter().map(String::as_str))
        .map(|n| format!(" Did you mean '{n}'?"))
        .unwrap_or_default();
    EmberError::Plan(format!("table '{name}' not found.{hint}"))
}

/// The plan of a statement without rows: no columns, no rows.
fn empty_plan() -> Arc<LogicalPlan> {
    Arc::new(LogicalPlan::EmptyRelation(EmptyRelation {
        produce_one_row: false,
        schema: Arc::new(PlanSchema::empty()),
    }))
}

enum CommandOutput {
    Rows(StringTable),
    Message(String),
}

/// A small all-text result (SHOW, DESCRIBE, EXPLAIN): becomes either batches (REPL) or a
/// `Values` plan (a DataFrame the caller can query further).
struct StringTable {
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl StringTable {
    fn new(columns: &[&str], rows: Vec<Vec<String>>) -> Self {
        StringTable {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows,
        }
    }

    fn from_result(result: QueryResult) -> Result<Self> {
        let columns = result
            .schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let rows = crate::format::cell_strings(&result.into_batches())?;
        Ok(StringTable { columns, rows })
    }

    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(c, DataType::Utf8, false))
                .collect::<Vec<_>>(),
        ))
    }

    fn into_result(self) -> Result<QueryResult> {
        let schema = self.schema();
        let columns: Vec<ArrayRef> = (0..self.columns.len())
            .map(|i| {
                Arc::new(StringArray::from_iter_values(
                    self.rows
                        .iter()
                        .map(|r| r.get(i).map_or("", String::as_str)),
                )) as ArrayRef
            })
            .collect();
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        Ok(QueryResult {
            schema,
            partitions: vec![vec![batch]],
            metrics: None,
        })
    }

    fn into_plan(self) -> Arc<LogicalPlan> {
        let schema = Arc::new(PlanSchema::from_arrow(None, &self.schema()));
        let width = self.columns.len();
        let rows = self
            .rows
            .into_iter()
            .map(|r| {
                (0..width)
                    .map(|i| {
                        Expr::Literal(ScalarValue::Utf8(Some(
                            r.get(i).cloned().unwrap_or_default(),
                        )))
                    })
                    .collect()
            })
            .collect();
        Arc::new(LogicalPlan::Values(Values { schema, rows }))
    }
}

impl ContextProvider for Session {
    fn get_table(&self, name: &str) -> Option<Arc<dyn TableSource>> {
        self.state.catalog.read().table(name)
    }

    fn get_view(&self, name: &str) -> Option<Arc<LogicalPlan>> {
        self.state.catalog.read().plan_of(name)
    }

    fn get_udf(&self, name: &str) -> Option<(Vec<DataType>, DataType)> {
        self.state
            .functions
            .get(name)
            .map(|u| (u.arg_types.clone(), u.return_type.clone()))
    }

    fn table_function(&self, name: &str, args: &[String]) -> Result<Arc<dyn TableSource>> {
        let format = match name.to_ascii_lowercase().as_str() {
            "read_parquet" => FileFormat::Parquet,
            "read_csv" => FileFormat::Csv,
            "read_json" => FileFormat::Json,
            "read_text" => FileFormat::Text,
            other => {
                let known = ["read_parquet", "read_csv", "read_json", "read_text"];
                let hint = closest_name(other, known)
                    .map(|n| format!(" Did you mean '{n}'?"))
                    .unwrap_or_default();
                return Err(EmberError::Plan(format!(
                    "unknown table function '{other}'.{hint}"
                )));
            }
        };
        match args {
            [path] => sources::open(format, path),
            _ => Err(EmberError::Plan(format!(
                "{name} takes one argument, a path or glob in quotes; got {}",
                args.len()
            ))),
        }
    }

    fn table_names(&self) -> Vec<String> {
        self.state.catalog.read().names()
    }
}
