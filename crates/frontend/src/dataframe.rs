//! The DataFrame API: a logical plan plus the session that runs it.
//!
//! Every method builds the same [`LogicalPlan`] nodes the SQL planner builds for the
//! equivalent clause, so a DataFrame query and its SQL twin optimize, plan and run alike.
//! Methods check names and types as they go (a misspelt column fails at `filter`, not at
//! `collect`), and nothing runs until `collect`, `show`, `count` or `write_parquet`.
//!
//! ```
//! use std::sync::Arc;
//! use arrow::array::{ArrayRef, Int64Array, StringArray};
//! use arrow::record_batch::RecordBatch;
//! use ember_frontend::prelude::*;
//!
//! let session = Session::new();
//! let batch = RecordBatch::try_from_iter(vec![
//!     ("city", Arc::new(StringArray::from(vec!["Oslo", "Lima", "Oslo"])) as ArrayRef),
//!     ("temp", Arc::new(Int64Array::from(vec![3, 20, 5])) as ArrayRef),
//! ])
//! .unwrap();
//! session.register_batches("weather", batch.schema(), vec![vec![batch]]).unwrap();
//!
//! let warmest = session
//!     .table("weather").unwrap()
//!     .group_by(vec![col("city")])
//!     .agg(vec![max(col("temp")).alias("warmest")]).unwrap()
//!     .sort(vec![col("city").sort(true, false)]).unwrap();
//! let text = warmest.to_table_string().unwrap();
//! assert!(text.contains("| Lima | 20      |"), "{text}");
//! assert!(text.contains("| Oslo | 5       |"), "{text}");
//! ```

use std::sync::Arc;

use arrow::array::{Array, Int64Array};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use ember_planner::expr::{count_star, Expr, SortExpr};
use ember_planner::logical::{
    Aggregate, Distinct, Filter, Join, JoinType, Limit, LogicalPlan, Partitioning, Projection,
    Repartition, Sort, SubqueryAlias, Union,
};
use ember_planner::persist::{PersistMode, StorageLevel};
use ember_planner::schema::{Column, PlanSchemaRef};
use ember_planner::types::common_type;
use ember_planner::{EmberError, Result};

use crate::execution::QueryResult;
use crate::format::format_table;
use crate::session::Session;
use crate::sql::FileFormat;

/// A lazily evaluated query.
#[derive(Debug, Clone)]
pub struct DataFrame {
    session: Session,
    plan: Arc<LogicalPlan>,
}

impl DataFrame {
    pub fn new(session: Session, plan: Arc<LogicalPlan>) -> Self {
        DataFrame { session, plan }
    }

    /// The logical plan this DataFrame computes.
    pub fn plan(&self) -> &Arc<LogicalPlan> {
        &self.plan
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The Arrow schema of the result.
    pub fn schema(&self) -> SchemaRef {
        self.plan.schema().to_arrow_ref()
    }

    /// The schema with table qualifiers, as column references resolve against it.
    pub fn plan_schema(&self) -> &PlanSchemaRef {
        self.plan.schema()
    }

    fn derive(&self, plan: LogicalPlan) -> DataFrame {
        DataFrame::new(self.session.clone(), Arc::new(plan))
    }

    /// Rows for which `predicate` is true (`WHERE`).
    pub fn filter(&self, predicate: Expr) -> Result<DataFrame> {
        if predicate.contains_aggregate() {
            return Err(EmberError::Plan(format!(
                "filter predicate {predicate} contains an aggregate: filter after agg() instead"
            )));
        }
        let t = predicate.data_type(self.plan.schema())?;
        if !matches!(t, DataType::Boolean | DataType::Null) {
            return Err(EmberError::Plan(format!(
                "filter predicate {predicate} must be boolean, but it is {t}"
            )));
        }
        Ok(self.derive(LogicalPlan::Filter(Filter {
            input: self.plan.clone(),
            predicate,
        })))
    }

    /// Computes `exprs` for every row (`SELECT`). `col("*")`-style wildcards are expanded;
    /// aggregate expressions make this a global aggregation, as in SQL.
    pub fn select(&self, exprs: Vec<Expr>) -> Result<DataFrame> {
        let exprs = self.expand_wildcards(exprs)?;
        if exprs.iter().any(Expr::contains_aggregate) {
            return self.aggregate(vec![], exprs);
        }
        Ok(self.derive(LogicalPlan::Projection(Projection::try_new(
            self.plan.clone(),
            exprs,
        )?)))
    }

    /// Keeps the named columns, in that order.
    pub fn select_columns(&self, names: &[&str]) -> Result<DataFrame> {
        self.select(names.iter().map(|n| ember_planner::expr::col(n)).collect())
    }

    /// Adds column `name` computed by `expr`, or replaces the column of that name in place.
    pub fn with_column(&self, name: &str, expr: Expr) -> Result<DataFrame> {
        if expr.contains_aggregate() {
            return Err(EmberError::Plan(format!(
                "with_column('{name}', {expr}): aggregates need group_by(..).agg(..)"
            )));
        }
        let mut replaced = false;
        let mut exprs: Vec<Expr> = self
            .plan
            .schema()
            .fields()
            .iter()
            .map(|f| {
                if f.name().eq_ignore_ascii_case(name) && !replaced {
                    replaced = true;
                    expr.clone().alias(name)
                } else {
                    Expr::Column(f.column())
                }
            })
            .collect();
        if !replaced {
            exprs.push(expr.alias(name));
        }
        Ok(self.derive(LogicalPlan::Projection(Projection::try_new(
            self.plan.clone(),
            exprs,
        )?)))
    }

    /// Starts a grouped aggregation: `df.group_by(keys).agg(aggregates)`.
    pub fn group_by(&self, exprs: Vec<Expr>) -> GroupedData {
        GroupedData {
            df: self.clone(),
            group_exprs: exprs,
        }
    }

    /// `GROUP BY group_exprs` computing `aggr_exprs`. The result has the group columns
    /// first, then one column per aggregate expression. An aggregate expression may
    /// combine aggregates (`sum(a) / count(a)`); it is computed over the aggregates' results.
    pub fn aggregate(&self, group_exprs: Vec<Expr>, aggr_exprs: Vec<Expr>) -> Result<DataFrame> {
        for g in &group_exprs {
            if g.contains_aggregate() {
                return Err(EmberError::Plan(format!(
                    "group_by expression {g} must not contain an aggregate"
                )));
            }
        }
        // Aggregates that are the whole expression go straight into the Aggregate node;
        // the others are split into inner aggregates and an outer projection.
        let mut inner: Vec<Expr> = Vec::new();
        let mut needs_projection = false;
        for e in &aggr_exprs {
            match e.unalias() {
                Expr::AggregateFunction { .. } => push_unique(&mut inner, e.clone()),
                _ if e.contains_aggregate() => {
                    needs_projection = true;
                    collect_aggregates(e, &mut inner);
                }
                _ => {
                    return Err(EmberError::Plan(format!(
                        "{e} is not an aggregate: put it in group_by(..) or wrap it in an aggregate such as max({e})"
                    )))
                }
            }
        }
        let aggregate = Aggregate::try_new(self.plan.clone(), group_exprs.clone(), inner)?;
        let aggregate = Arc::new(LogicalPlan::Aggregate(aggregate));
        if !needs_projection {
            return Ok(DataFrame::new(self.session.clone(), aggregate));
        }
        let group_columns = aggregate.schema().fields()[..group_exprs.len()]
            .iter()
            .map(|f| Expr::Column(f.column()));
        let outer = aggr_exprs
            .into_iter()
            .map(|e| {
                let name = e.output_name();
                let rewritten = e.unalias().clone().transform_up(&mut |node| {
                    Ok::<_, EmberError>(match &node {
                        Expr::AggregateFunction { .. } => {
                            Expr::Column(Column::unqualified(node.output_name()))
                        }
                        _ => node,
                    })
                })?;
                Ok(rewritten.alias(name))
            })
            .collect::<Result<Vec<_>>>()?;
        let exprs: Vec<Expr> = group_columns.chain(outer).collect();
        Ok(self.derive(LogicalPlan::Projection(Projection::try_new(
            aggregate, exprs,
        )?)))
    }

    /// Joins with `right` on pairs of equal columns (`(left column, right column)`).
    /// Semi and anti joins return only this DataFrame's columns.
    pub fn join(
        &self,
        right: &DataFrame,
        join_type: JoinType,
        on: &[(&str, &str)],
    ) -> Result<DataFrame> {
        let on = on
            .iter()
            .map(|(l, r)| (ember_planner::expr::col(l), ember_planner::expr::col(r)))
            .collect();
        self.join_on(right, join_type, on, None)
    }

    /// Joins on equal expression pairs plus an optional extra condition over both sides.
    pub fn join_on(
        &self,
        right: &DataFrame,
        join_type: JoinType,
        on: Vec<(Expr, Expr)>,
        filter: Option<Expr>,
    ) -> Result<DataFrame> {
        let (ls, rs) = (self.plan.schema(), right.plan.schema());
        for (l, r) in &on {
            let lt = l
                .data_type(ls)
                .map_err(|e| e.context("in the join's left key"))?;
            let rt = r
                .data_type(rs)
                .map_err(|e| e.context("in the join's right key"))?;
            if common_type(&lt, &rt).is_none() {
                return Err(EmberError::Plan(format!(
                    "cannot join on {l} = {r}: {lt} and {rt} are not comparable"
                )));
            }
        }
        if on.is_empty() && filter.is_none() {
            return Err(EmberError::Plan(
                "a join needs at least one pair of key columns or a condition; use cross_join for a cartesian product".into(),
            ));
        }
        let join = Join::try_new(
            self.plan.clone(),
            right.plan.clone(),
            on,
            filter,
            join_type,
            false,
        )?;
        if let Some(f) = &join.filter {
            let both = ls.join(rs);
            f.data_type(&both)?;
        }
        Ok(self.derive(LogicalPlan::Join(join)))
    }

    /// Every row of this DataFrame paired with every row of `right`.
    pub fn cross_join(&self, right: &DataFrame) -> Result<DataFrame> {
        Ok(self.derive(LogicalPlan::CrossJoin(
            ember_planner::logical::CrossJoin::new(self.plan.clone(), right.plan.clone()),
        )))
    }

    /// Gives the columns a new qualifier (`FROM ... AS alias`), e.g. before a self-join.
    pub fn alias(&self, alias: &str) -> Result<DataFrame> {
        Ok(self.derive(LogicalPlan::SubqueryAlias(SubqueryAlias::new(
            self.plan.clone(),
            alias,
        ))))
    }

    /// Sorts by the keys (`col("x").sort(asc, nulls_first)`).
    pub fn sort(&self, exprs: Vec<SortExpr>) -> Result<DataFrame> {
        if exprs.is_empty() {
            return Err(EmberError::Plan("sort needs at least one key".into()));
        }
        for s in &exprs {
            s.expr.data_type(self.plan.schema())?;
        }
        Ok(self.derive(LogicalPlan::Sort(Sort {
            input: self.plan.clone(),
            exprs,
            fetch: None,
        })))
    }

    /// The first `n` rows.
    pub fn limit(&self, n: usize) -> Result<DataFrame> {
        Ok(self.derive(LogicalPlan::Limit(Limit {
            input: self.plan.clone(),
            skip: 0,
            fetch: Some(n),
        })))
    }

    /// Skips `skip` rows, then keeps up to `fetch` (`OFFSET` / `LIMIT`).
    pub fn offset_limit(&self, skip: usize, fetch: Option<usize>) -> Result<DataFrame> {
        Ok(self.derive(LogicalPlan::Limit(Limit {
            input: self.plan.clone(),
            skip,
            fetch,
        })))
    }

    /// Removes duplicate rows.
    pub fn distinct(&self) -> Result<DataFrame> {
        Ok(self.derive(LogicalPlan::Distinct(Distinct {
            input: self.plan.clone(),
        })))
    }

    /// The rows of both DataFrames (`UNION ALL`), matched by position. Columns of
    /// different types are cast to a common type; this DataFrame names the columns.
    pub fn union(&self, other: &DataFrame) -> Result<DataFrame> {
        let (ls, rs) = (self.plan.schema(), other.plan.schema());
        if ls.len() != rs.len() {
            return Err(EmberError::Plan(format!(
                "union of DataFrames with {} and {} columns: both need the same number",
                ls.len(),
                rs.len()
            )));
        }
        let mut types = Vec::with_capacity(ls.len());
        for (l, r) in ls.fields().iter().zip(rs.fields()) {
            let t = common_type(l.data_type(), r.data_type()).ok_or_else(|| {
                EmberError::Plan(format!(
                    "union: column '{}' is {} on one side and {} on the other",
                    l.name(),
                    l.data_type(),
                    r.data_type()
                ))
            })?;
            types.push(t);
        }
        let left = cast_columns(&self.plan, &types)?;
        let right = cast_columns(&other.plan, &types)?;
        Ok(self.derive(LogicalPlan::Union(Union::try_new(vec![left, right])?)))
    }

    /// `UNION` (without ALL): the rows of both, duplicates removed.
    pub fn union_distinct(&self, other: &DataFrame) -> Result<DataFrame> {
        self.union(other)?.distinct()
    }

    /// Spreads the rows evenly over `n` partitions (round robin, deterministic).
    pub fn repartition(&self, n: usize) -> Result<DataFrame> {
        self.repartition_with(Partitioning::RoundRobin(n))
    }

    /// Puts rows with equal `keys` into the same of `n` partitions.
    pub fn repartition_by_hash(&self, n: usize, keys: Vec<Expr>) -> Result<DataFrame> {
        for k in &keys {
            k.data_type(self.plan.schema())?;
        }
        self.repartition_with(Partitioning::Hash(keys, n))
    }

    fn repartition_with(&self, partitioning: Partitioning) -> Result<DataFrame> {
        let n = match &partitioning {
            Partitioning::RoundRobin(n) | Partitioning::Hash(_, n) => *n,
        };
        if n == 0 {
            return Err(EmberError::Plan(
                "repartition needs at least one partition".into(),
            ));
        }
        Ok(self.derive(LogicalPlan::Repartition(Repartition {
            input: self.plan.clone(),
            partitioning,
        })))
    }

    // ------------------------------------------------------------------------------------
    // Persisting: keep the partitions once computed (see `crate::persist`).

    /// Keeps the partitions in executor memory once the first query computes them
    /// (`persist(StorageLevel::MemoryOnly)`); later queries read them. A partition lost with
    /// its executor is recomputed from lineage. Lazy, as in Spark.
    ///
    /// ```
    /// use ember_frontend::prelude::*;
    ///
    /// let session = Session::new();
    /// let df = session.sql("SELECT * FROM (VALUES (1), (2), (3)) AS t(x)").unwrap().cache();
    /// assert_eq!(df.count().unwrap(), 3); // computes and caches
    /// assert_eq!(df.filter(col("x").gt(lit(1i64))).unwrap().count().unwrap(), 2); // reads the cache
    /// ```
    pub fn cache(&self) -> DataFrame {
        self.persist(StorageLevel::MemoryOnly)
    }

    /// Keeps the partitions at `level` in the executors' block stores once computed.
    pub fn persist(&self, level: StorageLevel) -> DataFrame {
        self.with_plan(
            self.session
                .persisted_plan(&self.plan, PersistMode::Cache(level)),
        )
    }

    /// Drops the kept partitions (of `cache`/`persist`/`local_checkpoint`) and returns the
    /// DataFrame that computes them from lineage again.
    pub fn unpersist(&self) -> DataFrame {
        self.with_plan(self.session.unpersisted_plan(&self.plan))
    }

    /// A reliable checkpoint: each partition is written as Parquet under
    /// `ember.checkpoint.dir` (a path or object-store URL) while the first query computes it,
    /// with a manifest committed atomically; later queries (and recovery, and a restarted
    /// application with the same plan and inputs) read it instead of the lineage below.
    pub fn checkpoint(&self) -> DataFrame {
        self.with_plan(
            self.session
                .persisted_plan(&self.plan, PersistMode::Checkpoint),
        )
    }

    /// Keeps the partitions in executor storage (memory and local disk) to cut lineage
    /// cheaply. If an executor dies, Ember recomputes its partitions from the lineage it
    /// kept (where Spark fails the job).
    pub fn local_checkpoint(&self) -> DataFrame {
        self.with_plan(
            self.session
                .persisted_plan(&self.plan, PersistMode::LocalCheckpoint),
        )
    }

    fn with_plan(&self, plan: Arc<LogicalPlan>) -> DataFrame {
        DataFrame::new(self.session.clone(), plan)
    }

    // ------------------------------------------------------------------------------------
    // Actions: these run the query.

    /// Runs the query and returns all rows.
    pub fn collect(&self) -> Result<Vec<RecordBatch>> {
        Ok(self.execute()?.into_batches())
    }

    /// Runs the query, keeping the result partitions apart.
    pub fn execute(&self) -> Result<QueryResult> {
        self.session.execute_plan(&self.plan)
    }

    /// Runs the query and renders the result as an aligned text table.
    pub fn to_table_string(&self) -> Result<String> {
        let batches = self.collect()?;
        format_table(&self.schema(), &batches)
    }

    /// Prints the first 20 rows as a table (as Spark's `show()` does).
    pub fn show(&self) -> Result<()> {
        self.show_n(20)
    }

    /// Prints the first `n` rows as a table.
    pub fn show_n(&self, n: usize) -> Result<()> {
        print!("{}", self.limit(n)?.to_table_string()?);
        Ok(())
    }

    /// The query's plans: logical, optimized, physical and the stage graph.
    pub fn explain(&self) -> Result<String> {
        let prepared = self.session.prepare(&self.plan)?;
        let mut out = String::new();
        for (name, text) in prepared.explain_sections() {
            out.push_str(&format!("== {name} ==\n{}\n", text.trim_end()));
        }
        Ok(out)
    }

    /// Runs the query, discarding its rows, and returns the stage graph annotated with what
    /// running it took (attempts, failures by reason, retries, recomputed partitions and
    /// why, output, time): the text `EXPLAIN ANALYZE` prints.
    pub fn explain_analyze(&self) -> Result<String> {
        Ok(crate::explain_analyze::explain_analyze(&self.session, &self.plan)?.to_string())
    }

    /// The number of rows.
    pub fn count(&self) -> Result<usize> {
        let counted = self.aggregate(vec![], vec![count_star().alias("count")])?;
        let batches = counted.collect()?;
        let mut total = 0usize;
        for b in &batches {
            let counts = b
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .ok_or_else(|| EmberError::Internal("COUNT(*) did not return Int64".into()))?;
            for i in 0..counts.len() {
                total += usize::try_from(counts.value(i)).unwrap_or(0);
            }
        }
        Ok(total)
    }

    /// Writes the result as Parquet files into folder `path` (`part-00000.parquet`, ...,
    /// one per result partition, then `_SUCCESS`) through the output commit protocol, so
    /// retried or failed tasks never leave duplicate or partial files, and returns how many
    /// files were written.
    pub fn write_parquet(&self, path: &str) -> Result<usize> {
        Ok(self
            .session
            .write_plan(&self.plan, path, FileFormat::Parquet)?
            .files)
    }

    /// `*` and `t.*` → the columns they stand for.
    fn expand_wildcards(&self, exprs: Vec<Expr>) -> Result<Vec<Expr>> {
        let schema = self.plan.schema();
        let mut out = Vec::with_capacity(exprs.len());
        for e in exprs {
            match &e {
                Expr::Wildcard { qualifier } => {
                    let before = out.len();
                    out.extend(
                        schema
                            .fields()
                            .iter()
                            .filter(|f| match qualifier {
                                None => true,
                                Some(q) => f
                                    .qualifier
                                    .as_deref()
                                    .is_some_and(|fq| fq.eq_ignore_ascii_case(q)),
                            })
                            .map(|f| Expr::Column(f.column())),
                    );
                    if out.len() == before {
                        return Err(EmberError::Plan(format!("{e} matches no columns")));
                    }
                }
                Expr::Column(c) if c.name == "*" => {
                    let wildcard = Expr::Wildcard {
                        qualifier: c.relation.clone(),
                    };
                    out.extend(self.expand_wildcards(vec![wildcard])?);
                }
                _ => out.push(e),
            }
        }
        Ok(out)
    }
}

/// `df.group_by(keys)`, waiting for its aggregates.
#[derive(Debug, Clone)]
pub struct GroupedData {
    df: DataFrame,
    group_exprs: Vec<Expr>,
}

impl GroupedData {
    /// Computes `aggr_exprs` per group; see [`DataFrame::aggregate`].
    pub fn agg(self, aggr_exprs: Vec<Expr>) -> Result<DataFrame> {
        self.df.aggregate(self.group_exprs, aggr_exprs)
    }

    /// The number of rows per group, in a column `count`.
    pub fn count(self) -> Result<DataFrame> {
        self.agg(vec![count_star().alias("count")])
    }
}

fn push_unique(list: &mut Vec<Expr>, e: Expr) {
    if !list.contains(&e) {
        list.push(e);
    }
}

/// Every aggregate call inside `e` (not looking inside aggregates).
fn collect_aggregates(e: &Expr, out: &mut Vec<Expr>) {
    e.visit(&mut |node| {
        if matches!(node, Expr::AggregateFunction { .. }) {
            push_unique(out, node.clone());
            false
        } else {
            true
        }
    });
}

/// `plan` with each column cast to `types` where its type differs.
fn cast_columns(plan: &Arc<LogicalPlan>, types: &[DataType]) -> Result<Arc<LogicalPlan>> {
    let fields = plan.schema().fields();
    if fields.iter().zip(types).all(|(f, t)| f.data_type() == t) {
        return Ok(plan.clone());
    }
    let exprs = fields
        .iter()
        .zip(types)
        .map(|(f, t)| {
            let c = Expr::Column(f.column());
            if f.data_type() == t {
                c
            } else {
                c.cast_to(t.clone()).alias(f.name())
            }
        })
        .collect();
    Ok(Arc::new(LogicalPlan::Projection(Projection::try_new(
        plan.clone(),
        exprs,
    )?)))
}
