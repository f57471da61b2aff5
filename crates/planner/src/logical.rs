//! Logical plans: what a query computes, independent of how it is partitioned or run.
//!
//! Plans are DAGs: children are `Arc`s, so a DataFrame used twice is one shared node, and
//! passes that must stay linear on iterative jobs memoise by node identity (`Arc::as_ptr`).

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field};

use crate::error::{EmberError, Result};
use crate::expr::{Expr, SortExpr};
use crate::persist::{PersistId, PersistMode};
use crate::schema::{Column, PlanSchema, PlanSchemaRef, QualifiedField};
use crate::table::TableSource;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JoinType {
    Inner,
    Left,
    Right,
    Full,
    /// Left rows with at least one match (EXISTS / IN).
    LeftSemi,
    /// Left rows with no match (NOT EXISTS / NOT IN).
    LeftAnti,
}

impl JoinType {
    /// Only the left side's columns come out of semi and anti joins.
    pub fn outputs_right(self) -> bool {
        !matches!(self, JoinType::LeftSemi | JoinType::LeftAnti)
    }
}

impl fmt::Display for JoinType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JoinType::Inner => "Inner",
            JoinType::Left => "Left",
            JoinType::Right => "Right",
            JoinType::Full => "Full",
            JoinType::LeftSemi => "LeftSemi",
            JoinType::LeftAnti => "LeftAnti",
        })
    }
}

/// How `DataFrame::repartition` redistributes rows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Partitioning {
    /// Row `i` of input partition `p` goes to `(p + i) % n`: deterministic, so a recomputed
    /// map partition sends exactly the same rows to the same reducers (cf. SPARK-23207).
    RoundRobin(usize),
    Hash(Vec<Expr>, usize),
}

#[derive(Debug, Clone)]
pub struct TableScan {
    pub table_name: String,
    pub source: Arc<dyn TableSource>,
    /// Indices into the source schema, `None` = all columns.
    pub projection: Option<Vec<usize>>,
    /// Conjuncts pushed into the scan (inexact: a Filter above still applies them).
    pub filters: Vec<Expr>,
    pub schema: PlanSchemaRef,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Projection {
    pub input: Arc<LogicalPlan>,
    pub exprs: Vec<Expr>,
    pub schema: PlanSchemaRef,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Filter {
    pub input: Arc<LogicalPlan>,
    pub predicate: Expr,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Aggregate {
    pub input: Arc<LogicalPlan>,
    pub group_exprs: Vec<Expr>,
    /// Each is an `Expr::AggregateFunction`, possibly aliased.
    pub aggr_exprs: Vec<Expr>,
    /// Group columns first, then one column per aggregate.
    pub schema: PlanSchemaRef,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sort {
    pub input: Arc<LogicalPlan>,
    pub exprs: Vec<SortExpr>,
    /// Only the first `fetch` rows are needed (ORDER BY .. LIMIT → top-k).
    pub fetch: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Limit {
    pub input: Arc<LogicalPlan>,
    pub skip: usize,
    pub fetch: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Join {
    pub left: Arc<LogicalPlan>,
    pub right: Arc<LogicalPlan>,
    /// Equi-join keys: `(left expr, right expr)` pairs.
    pub on: Vec<(Expr, Expr)>,
    /// Extra non-equi condition over both sides' columns.
    pub filter: Option<Expr>,
    pub join_type: JoinType,
    /// `NOT IN` semantics for anti joins: a NULL key on either side means "unknown", so
    /// the row is not returned.
    pub null_aware: bool,
    pub schema: PlanSchemaRef,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CrossJoin {
    pub left: Arc<LogicalPlan>,
    pub right: Arc<LogicalPlan>,
    pub schema: PlanSchemaRef,
}

/// UNION ALL of inputs with the same column types; the first input names the columns.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Union {
    pub inputs: Vec<Arc<LogicalPlan>>,
    pub schema: PlanSchemaRef,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Distinct {
    pub input: Arc<LogicalPlan>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SubqueryAlias {
    pub input: Arc<LogicalPlan>,
    pub alias: String,
    pub schema: PlanSchemaRef,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Values {
    pub schema: PlanSchemaRef,
    /// Each row holds constant expressions, one per column.
    pub rows: Vec<Vec<Expr>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmptyRelation {
    /// `SELECT 1` without FROM reads one row with no columns.
    pub produce_one_row: bool,
    pub schema: PlanSchemaRef,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Repartition {
    pub input: Arc<LogicalPlan>,
    pub partitioning: Partitioning,
}

/// Turns each element of a list column into its own row (other columns repeated).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Unnest {
    pub input: Arc<LogicalPlan>,
    /// Index of the list column in the input; in the output it holds the element type.
    pub column: usize,
    pub schema: PlanSchemaRef,
}

/// A subplan whose partitions are kept once computed (see [`crate::persist`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Persist {
    pub input: Arc<LogicalPlan>,
    pub id: PersistId,
    pub mode: PersistMode,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LogicalPlan {
    TableScan(TableScan),
    Projection(Projection),
    Filter(Filter),
    Aggregate(Aggregate),
    Sort(Sort),
    Limit(Limit),
    Join(Join),
    CrossJoin(CrossJoin),
    Union(Union),
    Distinct(Distinct),
    SubqueryAlias(SubqueryAlias),
    Values(Values),
    EmptyRelation(EmptyRelation),
    Repartition(Repartition),
    Unnest(Unnest),
    Persist(Persist),
}

impl PartialEq for TableScan {
    fn eq(&self, other: &Self) -> bool {
        self.table_name == other.table_name
            && Arc::ptr_eq(&self.source, &other.source)
            && self.projection == other.projection
            && self.filters == other.filters
    }
}
impl Eq for TableScan {}
impl Hash for TableScan {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.table_name.hash(state);
        self.projection.hash(state);
        self.filters.hash(state);
    }
}

impl TableScan {
    pub fn try_new(
        table_name: impl Into<String>,
        source: Arc<dyn TableSource>,
        projection: Option<Vec<usize>>,
        filters: Vec<Expr>,
    ) -> Result<Self> {
        let table_name = table_name.into();
        let full = source.schema();
        let fields: Vec<QualifiedField> = match &projection {
            Some(p) => p
                .iter()
                .map(|&i| {
                    full.fields().get(i).cloned().ok_or_else(|| {
                        EmberError::Internal(format!(
                            "projection index {i} out of range for table {table_name}"
                        ))
                    })
                })
                .map(|f| f.map(|f| QualifiedField::new(Some(table_name.clone()), f)))
                .collect::<Result<_>>()?,
            None => full
                .fields()
                .iter()
                .map(|f| QualifiedField::new(Some(table_name.clone()), f.clone()))
                .collect(),
        };
        Ok(TableScan {
            table_name,
            source,
            projection,
            filters,
            schema: Arc::new(PlanSchema::new(fields)),
        })
    }
}

impl Projection {
    pub fn try_new(input: Arc<LogicalPlan>, exprs: Vec<Expr>) -> Result<Self> {
        let in_schema = input.schema();
        let fields = exprs
            .iter()
            .map(|e| e.to_field(in_schema))
            .collect::<Result<Vec<_>>>()?;
        Ok(Projection {
            input,
            exprs,
            schema: Arc::new(PlanSchema::new(fields)),
        })
    }
}

impl Aggregate {
    pub fn try_new(
        input: Arc<LogicalPlan>,
        group_exprs: Vec<Expr>,
        aggr_exprs: Vec<Expr>,
    ) -> Result<Self> {
        let in_schema = input.schema();
        let mut fields = Vec::with_capacity(group_exprs.len() + aggr_exprs.len());
        for e in group_exprs.iter().chain(aggr_exprs.iter()) {
            fields.push(e.to_field(in_schema)?);
        }
        Ok(Aggregate {
            input,
            group_exprs,
            aggr_exprs,
            schema: Arc::new(PlanSchema::new(fields)),
        })
    }
}

impl Join {
    pub fn try_new(
        left: Arc<LogicalPlan>,
        right: Arc<LogicalPlan>,
        on: Vec<(Expr, Expr)>,
        filter: Option<Expr>,
        join_type: JoinType,
        null_aware: bool,
    ) -> Result<Self> {
        let schema = join_schema(left.schema(), right.schema(), join_type);
        Ok(Join {
            left,
            right,
            on,
            filter,
            join_type,
            null_aware,
            schema: Arc::new(schema),
        })
    }
}

/// The output schema of a join: outer sides become nullable; semi/anti keep only the left.
pub fn join_schema(left: &PlanSchema, right: &PlanSchema, join_type: JoinType) -> PlanSchema {
    match join_type {
        JoinType::Inner => left.join(right),
        JoinType::Left => left.join(&right.nullable()),
        JoinType::Right => left.nullable().join(right),
        JoinType::Full => left.nullable().join(&right.nullable()),
        JoinType::LeftSemi | JoinType::LeftAnti => left.clone(),
    }
}

impl CrossJoin {
    pub fn new(left: Arc<LogicalPlan>, right: Arc<LogicalPlan>) -> Self {
        let schema = Arc::new(left.schema().join(right.schema()));
        CrossJoin {
            left,
            right,
            schema,
        }
    }
}

impl Union {
    /// Checks that all inputs have the same number of columns; column types are unified
    /// by the caller (the SQL planner casts where needed).
    pub fn try_new(inputs: Vec<Arc<LogicalPlan>>) -> Result<Self> {
        let first = inputs
            .first()
            .ok_or_else(|| EmberError::Internal("UNION of no inputs".into()))?;
        let n = first.schema().len();
        for (i, input) in inputs.iter().enumerate() {
            if input.schema().len() != n {
                return Err(EmberError::Plan(format!(
                    "UNION/INTERSECT/EXCEPT inputs have different column counts: the first has {n}, input {} has {}",
                    i + 1,
                    input.schema().len()
                )));
            }
        }
        // A column is nullable when it is in any input.
        let fields = first
            .schema()
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let nullable = inputs
                    .iter()
                    .any(|p| p.schema().field(i).field.is_nullable());
                QualifiedField::new(
                    f.qualifier.clone(),
                    f.field.as_ref().clone().with_nullable(nullable),
                )
            })
            .collect();
        Ok(Union {
            inputs,
            schema: Arc::new(PlanSchema::new(fields)),
        })
    }
}

impl SubqueryAlias {
    pub fn new(input: Arc<LogicalPlan>, alias: impl Into<String>) -> Self {
        let alias = alias.into();
        let schema = Arc::new(input.schema().with_qualifier(&alias));
        SubqueryAlias {
            input,
            alias,
            schema,
        }
    }
}

impl Unnest {
    pub fn try_new(input: Arc<LogicalPlan>, column: usize) -> Result<Self> {
        let in_schema = input.schema();
        let mut fields = in_schema.fields().to_vec();
        let target = fields
            .get(column)
            .cloned()
            .ok_or_else(|| EmberError::Internal(format!("unnest column {column} out of range")))?;
        let element = match target.data_type() {
            DataType::List(f) | DataType::LargeList(f) => f.data_type().clone(),
            other => {
                return Err(EmberError::Plan(format!(
                    "unnest expects a list column, but '{}' is {other}",
                    target.name()
                )))
            }
        };
        fields[column] = QualifiedField::new(
            target.qualifier.clone(),
            Field::new(target.name(), element, true),
        );
        Ok(Unnest {
            input,
            column,
            schema: Arc::new(PlanSchema::new(fields)),
        })
    }
}

impl LogicalPlan {
    pub fn schema(&self) -> &PlanSchemaRef {
        match self {
            LogicalPlan::TableScan(s) => &s.schema,
            LogicalPlan::Projection(p) => &p.schema,
            LogicalPlan::Filter(f) => f.input.schema(),
            LogicalPlan::Aggregate(a) => &a.schema,
            LogicalPlan::Sort(s) => s.input.schema(),
            LogicalPlan::Limit(l) => l.input.schema(),
            LogicalPlan::Join(j) => &j.schema,
            LogicalPlan::CrossJoin(j) => &j.schema,
            LogicalPlan::Union(u) => &u.schema,
            LogicalPlan::Distinct(d) => d.input.schema(),
            LogicalPlan::SubqueryAlias(s) => &s.schema,
            LogicalPlan::Values(v) => &v.schema,
            LogicalPlan::EmptyRelation(e) => &e.schema,
            LogicalPlan::Repartition(r) => r.input.schema(),
            LogicalPlan::Unnest(u) => &u.schema,
            LogicalPlan::Persist(p) => p.input.schema(),
        }
    }

    pub fn inputs(&self) -> Vec<&Arc<LogicalPlan>> {
        match self {
            LogicalPlan::TableScan(_) | LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => {
                vec![]
            }
            LogicalPlan::Projection(p) => vec![&p.input],
            LogicalPlan::Filter(f) => vec![&f.input],
            LogicalPlan::Aggregate(a) => vec![&a.input],
            LogicalPlan::Sort(s) => vec![&s.input],
            LogicalPlan::Limit(l) => vec![&l.input],
            LogicalPlan::Join(j) => vec![&j.left, &j.right],
            LogicalPlan::CrossJoin(j) => vec![&j.left, &j.right],
            LogicalPlan::Union(u) => u.inputs.iter().collect(),
            LogicalPlan::Distinct(d) => vec![&d.input],
            LogicalPlan::SubqueryAlias(s) => vec![&s.input],
            LogicalPlan::Repartition(r) => vec![&r.input],
            LogicalPlan::Unnest(u) => vec![&u.input],
            LogicalPlan::Persist(p) => vec![&p.input],
        }
    }

    /// The same node over new inputs (same count and order as `inputs()`), with schemas
    /// recomputed where they derive from the inputs.
    pub fn with_new_inputs(&self, inputs: Vec<Arc<LogicalPlan>>) -> Result<LogicalPlan> {
        let mut it = inputs.into_iter();
        let mut next = || {
            it.next()
                .ok_or_else(|| EmberError::Internal("with_new_inputs: too few inputs".into()))
        };
        Ok(match self {
            LogicalPlan::TableScan(_) | LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => {
                self.clone()
            }
            LogicalPlan::Projection(p) => {
                LogicalPlan::Projection(Projection::try_new(next()?, p.exprs.clone())?)
            }
            LogicalPlan::Filter(f) => LogicalPlan::Filter(Filter {
                input: next()?,
                predicate: f.predicate.clone(),
            }),
            LogicalPlan::Aggregate(a) => LogicalPlan::Aggregate(Aggregate::try_new(
                next()?,
                a.group_exprs.clone(),
                a.aggr_exprs.clone(),
            )?),
            LogicalPlan::Sort(s) => LogicalPlan::Sort(Sort {
                input: next()?,
                exprs: s.exprs.clone(),
                fetch: s.fetch,
            }),
            LogicalPlan::Limit(l) => LogicalPlan::Limit(Limit {
                input: next()?,
                skip: l.skip,
                fetch: l.fetch,
            }),
            LogicalPlan::Join(j) => LogicalPlan::Join(Join::try_new(
                next()?,
                next()?,
                j.on.clone(),
                j.filter.clone(),
                j.join_type,
                j.null_aware,
            )?),
            LogicalPlan::CrossJoin(_) => LogicalPlan::CrossJoin(CrossJoin::new(next()?, next()?)),
            LogicalPlan::Union(u) => {
                let n = u.inputs.len();
                let inputs = (0..n).map(|_| next()).collect::<Result<Vec<_>>>()?;
                LogicalPlan::Union(Union::try_new(inputs)?)
            }
            LogicalPlan::Distinct(_) => LogicalPlan::Distinct(Distinct { input: next()? }),
            LogicalPlan::SubqueryAlias(s) => {
                LogicalPlan::SubqueryAlias(SubqueryAlias::new(next()?, s.alias.clone()))
            }
            LogicalPlan::Repartition(r) => LogicalPlan::Repartition(Repartition {
                input: next()?,
                partitioning: r.partitioning.clone(),
            }),
            LogicalPlan::Unnest(u) => LogicalPlan::Unnest(Unnest::try_new(next()?, u.column)?),
            LogicalPlan::Persist(p) => LogicalPlan::Persist(Persist {
                input: next()?,
                id: p.id,
                mode: p.mode,
            }),
        })
    }

    /// The expressions this node evaluates (for rules that inspect or rewrite them).
    pub fn expressions(&self) -> Vec<&Expr> {
        match self {
            LogicalPlan::TableScan(s) => s.filters.iter().collect(),
            LogicalPlan::Projection(p) => p.exprs.iter().collect(),
            LogicalPlan::Filter(f) => vec![&f.predicate],
            LogicalPlan::Aggregate(a) => a.group_exprs.iter().chain(a.aggr_exprs.iter()).collect(),
            LogicalPlan::Sort(s) => s.exprs.iter().map(|s| &s.expr).collect(),
            LogicalPlan::Join(j) => {
                j.on.iter()
                    .flat_map(|(l, r)| [l, r])
                    .chain(j.filter.iter())
                    .collect()
            }
            LogicalPlan::Values(v) => v.rows.iter().flatten().collect(),
            LogicalPlan::Repartition(Repartition {
                partitioning: Partitioning::Hash(e, _),
                ..
            }) => e.iter().collect(),
            _ => vec![],
        }
    }

    /// Output columns as references, for building projections over this plan.
    pub fn output_columns(&self) -> Vec<Column> {
        self.schema().columns()
    }

    /// Multi-line indented rendering used by EXPLAIN (shared subplans printed once).
    pub fn display_indent(&self) -> String {
        crate::display::display_indent(self)
    }

    /// One line describing this node (not its inputs).
    pub fn describe_node(&self) -> String {
        use crate::display::comma_list as list;
        match self {
            LogicalPlan::TableScan(s) => {
                let mut d = format!("TableScan: {}", s.table_name);
                if s.projection.is_some() {
                    let names: Vec<&str> = s.schema.fields().iter().map(|f| f.name()).collect();
                    d.push_str(&format!(" projection=[{}]", names.join(", ")));
                }
                if !s.filters.is_empty() {
                    d.push_str(&format!(" filters=[{}]", list(&s.filters)));
                }
                d
            }
            LogicalPlan::Projection(p) => format!("Projection: {}", list(&p.exprs)),
            LogicalPlan::Filter(f) => format!("Filter: {}", f.predicate),
            LogicalPlan::Aggregate(a) => format!(
                "Aggregate: groupBy=[{}], aggr=[{}]",
                list(&a.group_exprs),
                list(&a.aggr_exprs)
            ),
            LogicalPlan::Sort(s) => match s.fetch {
                Some(n) => format!("Sort: {} fetch={n}", list(&s.exprs)),
                None => format!("Sort: {}", list(&s.exprs)),
            },
            LogicalPlan::Limit(l) => format!(
                "Limit: skip={}, fetch={}",
                l.skip,
                l.fetch.map_or("None".to_string(), |f| f.to_string())
            ),
            LogicalPlan::Join(j) => {
                let on: Vec<String> = j.on.iter().map(|(l, r)| format!("{l} = {r}")).collect();
                let mut d = format!("{} Join: on=[{}]", j.join_type, on.join(", "));
                if let Some(f) = &j.filter {
                    d.push_str(&format!(" filter={f}"));
                }
                if j.null_aware {
                    d.push_str(" null_aware");
                }
                d
            }
            LogicalPlan::CrossJoin(_) => "CrossJoin".to_string(),
            LogicalPlan::Union(_) => "Union".to_string(),
            LogicalPlan::Distinct(_) => "Distinct".to_string(),
            LogicalPlan::SubqueryAlias(s) => format!("SubqueryAlias: {}", s.alias),
            LogicalPlan::Values(v) => format!("Values: {} rows", v.rows.len()),
            LogicalPlan::EmptyRelation(e) => {
                format!("EmptyRelation: produce_one_row={}", e.produce_one_row)
            }
            LogicalPlan::Repartition(r) => match &r.partitioning {
                Partitioning::RoundRobin(n) => format!("Repartition: RoundRobin({n})"),
                Partitioning::Hash(e, n) => format!("Repartition: Hash([{}], {n})", list(e)),
            },
            LogicalPlan::Unnest(u) => {
                format!("Unnest: {}", u.schema.field(u.column).column())
            }
            LogicalPlan::Persist(p) => format!("Persist: id={} {}", p.id, p.mode),
        }
    }
}

impl fmt::Display for LogicalPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display_indent())
    }
}

impl crate::display::ExplainNode for LogicalPlan {
    fn describe_node(&self) -> String {
        LogicalPlan::describe_node(self)
    }
    fn input_nodes(&self) -> Vec<&Arc<Self>> {
        self.inputs()
    }
}
