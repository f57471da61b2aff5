//! Physical plans: the logical plan with partitioning made explicit.
//!
//! Every node knows how many partitions it produces; an [`PhysicalPlan::Exchange`] marks
//! where rows must move between partitions (a shuffle). The stage cutter
//! (`crate::stages`) cuts the plan at every Exchange; each piece runs as one task per
//! partition. Like logical plans, physical plans are plain data shared through `Arc`s.

pub mod aggregate;
pub mod dynamic_filter;
pub mod planner;

use std::fmt;
use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field, Schema};

use crate::error::{EmberError, Result};
use crate::expr::{Expr, SortExpr};
use crate::logical::JoinType;
use crate::persist::{PersistId, PersistMode};
use crate::schema::{PlanSchema, PlanSchemaRef};
use crate::table::{ScanPartition, TableSource};

/// How an Exchange distributes its input rows to output partitions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ExchangeKind {
    /// By hash of the key expressions (over the Exchange's input schema) into `n` partitions.
    Hash(Vec<Expr>, usize),
    /// Row `i` of map partition `p` goes to `(p + i) % n` — deterministic for recomputation.
    RoundRobin(usize),
    /// Everything into one partition.
    Single,
    /// Every consumer partition reads all of the input (small join build sides).
    Broadcast,
    /// Into `partitions` key ranges of `sort` (over the Exchange's input schema), for a
    /// global sort: output partition `r` holds the keys between split points `r - 1` and `r`,
    /// sorted, so reading the partitions in order reads the whole input sorted. The split
    /// points are computed by every reader from samples the map tasks write with their
    /// sorted runs (a pure function of the input, so recomputation gives the same ranges).
    Range {
        sort: Vec<SortExpr>,
        partitions: usize,
    },
}

impl ExchangeKind {
    /// The number of output partitions; `None` for Broadcast (the consumer decides).
    pub fn partition_count(&self) -> Option<usize> {
        match self {
            ExchangeKind::Hash(_, n)
            | ExchangeKind::RoundRobin(n)
            | ExchangeKind::Range { partitions: n, .. } => Some(*n),
            ExchangeKind::Single => Some(1),
            ExchangeKind::Broadcast => None,
        }
    }
}

impl fmt::Display for ExchangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExchangeKind::Hash(exprs, n) => {
                let keys: Vec<String> = exprs.iter().map(|e| e.to_string()).collect();
                write!(f, "Hash([{}], {n})", keys.join(", "))
            }
            ExchangeKind::RoundRobin(n) => write!(f, "RoundRobin({n})"),
            ExchangeKind::Single => f.write_str("Single"),
            ExchangeKind::Broadcast => f.write_str("Broadcast"),
            ExchangeKind::Range { sort, partitions } => {
                let keys: Vec<String> = sort.iter().map(|e| e.to_string()).collect();
                write!(f, "Range([{}], {partitions})", keys.join(", "))
            }
        }
    }
}

/// Phases of a two-phase aggregation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AggregateMode {
    /// Raw rows in; group keys and accumulator *states* out (e.g. AVG → sum, count).
    Partial,
    /// Output of `Partial` in (group keys first, then states, by position); final values out.
    Final,
    /// Raw rows in, final values out (all rows of a group are already in one partition).
    Single,
}

/// How a hash join gets its build (right) side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JoinMode {
    /// Both sides hash-partitioned on the keys into the same number of partitions.
    Partitioned,
    /// The right side is broadcast whole to every partition of the left side. Only for join
    /// types that never emit unmatched right rows.
    Broadcast,
}

/// The file format a [`PhysicalPlan::Write`] produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteFormat {
    Parquet,
}

impl fmt::Display for WriteFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteFormat::Parquet => f.write_str("parquet"),
        }
    }
}

/// The schema of a [`PhysicalPlan::Write`]: one row per partition, saying which attempt
/// wrote which uncommitted file, so the driver can commit exactly the attempt the scheduler
/// accepted.
pub fn write_result_schema() -> &'static PlanSchemaRef {
    static SCHEMA: OnceLock<PlanSchemaRef> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let arrow = Schema::new(vec![
            Field::new("partition", DataType::Int64, false),
            Field::new("attempt", DataType::Int64, false),
            Field::new("temp_path", DataType::Utf8, false),
            Field::new("rows", DataType::Int64, false),
        ]);
        Arc::new(PlanSchema::from_arrow(None, &arrow))
    })
}

#[derive(Debug, Clone)]
pub struct ScanExec {
    pub table_name: String,
    pub source: Arc<dyn TableSource>,
    pub projection: Option<Vec<usize>>,
    pub filters: Vec<Expr>,
    pub partitions: Vec<Arc<dyn ScanPartition>>,
    pub schema: PlanSchemaRef,
}

/// A physical operator tree. Expressions refer to columns of the node's input schema
/// (for joins: the left schema followed by the right schema).
#[derive(Debug, Clone)]
pub enum PhysicalPlan {
    Scan(ScanExec),
    /// Constant rows, one partition.
    Values {
        schema: PlanSchemaRef,
        rows: Vec<Vec<Expr>>,
    },
    Filter {
        input: Arc<PhysicalPlan>,
        predicate: Expr,
    },
    /// Drops the rows of `input` whose `keys` equal the `source_keys` of no row of `source`
    /// (rows with a NULL key too): rows a join further up can never match. `source` is that
    /// join's other side — a shuffle, read whole at run time — so this node's stage runs
    /// after the source's stage. Placed by [`dynamic_filter::add_dynamic_filters`].
    DynamicFilter {
        input: Arc<PhysicalPlan>,
        /// Over `input`'s schema.
        keys: Vec<Expr>,
        source: Arc<PhysicalPlan>,
        /// Over `source`'s schema, pairwise with `keys`.
        source_keys: Vec<Expr>,
    },
    Projection {
        input: Arc<PhysicalPlan>,
        exprs: Vec<Expr>,
        schema: PlanSchemaRef,
    },
    HashAggregate {
        input: Arc<PhysicalPlan>,
        mode: AggregateMode,
        /// Over the input schema (Partial/Single); in Final mode the input's first
        /// `group_exprs.len()` columns are the keys and these are kept for naming only.
        group_exprs: Vec<Expr>,
        /// Aggregate function expressions over the *original* (pre-Partial) schema.
        aggr_exprs: Vec<Expr>,
        /// The schema the aggregate expressions were written against (the Partial input).
        aggr_input_schema: PlanSchemaRef,
        schema: PlanSchemaRef,
    },
    /// Builds a hash table on `right`, streams `left` through it.
    HashJoin {
        left: Arc<PhysicalPlan>,
        right: Arc<PhysicalPlan>,
        on: Vec<(Expr, Expr)>,
        filter: Option<Expr>,
        join_type: JoinType,
        null_aware: bool,
        mode: JoinMode,
        schema: PlanSchemaRef,
    },
    /// For joins without equi-keys: the right side is broadcast, each left batch is joined
    /// against all of it.
    NestedLoopJoin {
        left: Arc<PhysicalPlan>,
        right: Arc<PhysicalPlan>,
        filter: Option<Expr>,
        join_type: JoinType,
        schema: PlanSchemaRef,
    },
    /// Sorts each partition (a global sort has an Exchange Single below it). With `fetch`,
    /// keeps only the top `fetch` rows (top-k).
    Sort {
        input: Arc<PhysicalPlan>,
        exprs: Vec<SortExpr>,
        fetch: Option<usize>,
    },
    /// Skips and limits rows within each partition.
    Limit {
        input: Arc<PhysicalPlan>,
        skip: usize,
        fetch: Option<usize>,
    },
    /// Partitions of all inputs, one after another.
    Union {
        inputs: Vec<Arc<PhysicalPlan>>,
        schema: PlanSchemaRef,
    },
    Unnest {
        input: Arc<PhysicalPlan>,
        column: usize,
        schema: PlanSchemaRef,
    },
    /// Rows change partitions here: the stage boundary.
    Exchange {
        input: Arc<PhysicalPlan>,
        kind: ExchangeKind,
    },
    /// Reads the shuffle output of stage `stage` (only in cut stage plans, replacing an
    /// Exchange).
    ShuffleRead {
        stage: usize,
        kind: ExchangeKind,
        /// Number of map partitions that wrote the shuffle.
        map_partitions: usize,
        /// Number of partitions this read produces.
        partitions: usize,
        schema: PlanSchemaRef,
    },
    /// Writes each partition of `input` as one file of the output folder `path`, through
    /// the output commit protocol: every task attempt writes its own temp file and returns
    /// one row (see [`write_result_schema`]); the driver commits the accepted attempts.
    /// `job_id` names this write uniquely, so two writes of the same query never share a
    /// fingerprint (a write must never be skipped as "already computed").
    Write {
        input: Arc<PhysicalPlan>,
        path: String,
        format: WriteFormat,
        job_id: String,
    },
    /// The partitions of `input` are kept (block store or checkpoint store) under `id`: a
    /// stage boundary without data movement — partition `p` of the consumer is partition
    /// `p` of `input`. See [`crate::persist`].
    Persist {
        input: Arc<PhysicalPlan>,
        id: PersistId,
        mode: PersistMode,
    },
    /// Reads the kept partitions of the persist stage `stage` (only in cut stage plans,
    /// replacing a Persist).
    PersistRead {
        stage: usize,
        id: PersistId,
        mode: PersistMode,
        partitions: usize,
        schema: PlanSchemaRef,
    },
}

impl PhysicalPlan {
    pub fn schema(&self) -> &PlanSchemaRef {
        match self {
            PhysicalPlan::Scan(s) => &s.schema,
            PhysicalPlan::Values { schema, .. }
            | PhysicalPlan::Projection { schema, .. }
            | PhysicalPlan::HashAggregate { schema, .. }
            | PhysicalPlan::HashJoin { schema, .. }
            | PhysicalPlan::NestedLoopJoin { schema, .. }
            | PhysicalPlan::Union { schema, .. }
            | PhysicalPlan::Unnest { schema, .. }
            | PhysicalPlan::ShuffleRead { schema, .. }
            | PhysicalPlan::PersistRead { schema, .. } => schema,
            PhysicalPlan::Write { .. } => write_result_schema(),
            PhysicalPlan::Filter { input, .. }
            | PhysicalPlan::DynamicFilter { input, .. }
            | PhysicalPlan::Sort { input, .. }
            | PhysicalPlan::Limit { input, .. }
            | PhysicalPlan::Exchange { input, .. }
            | PhysicalPlan::Persist { input, .. } => input.schema(),
        }
    }

    pub fn inputs(&self) -> Vec<&Arc<PhysicalPlan>> {
        match self {
            PhysicalPlan::Scan(_)
            | PhysicalPlan::Values { .. }
            | PhysicalPlan::ShuffleRead { .. }
            | PhysicalPlan::PersistRead { .. } => {
                vec![]
            }
            PhysicalPlan::Filter { input, .. }
            | PhysicalPlan::Projection { input, .. }
            | PhysicalPlan::HashAggregate { input, .. }
            | PhysicalPlan::Sort { input, .. }
            | PhysicalPlan::Limit { input, .. }
            | PhysicalPlan::Unnest { input, .. }
            | PhysicalPlan::Exchange { input, .. }
            | PhysicalPlan::Write { input, .. }
            | PhysicalPlan::Persist { input, .. } => vec![input],
            PhysicalPlan::HashJoin { left, right, .. }
            | PhysicalPlan::NestedLoopJoin { left, right, .. } => vec![left, right],
            PhysicalPlan::DynamicFilter { input, source, .. } => vec![input, source],
            PhysicalPlan::Union { inputs, .. } => inputs.iter().collect(),
        }
    }

    /// The same node over new inputs (same count and order as `inputs()`).
    pub fn with_new_inputs(&self, inputs: Vec<Arc<PhysicalPlan>>) -> Result<PhysicalPlan> {
        let expected = self.inputs().len();
        if inputs.len() != expected {
            return Err(EmberError::Internal(format!(
                "{} expects {expected} inputs, got {}",
                self.describe_node(),
                inputs.len()
            )));
        }
        let mut it = inputs.into_iter();
        let mut next = || it.next().expect("input count checked above");
        Ok(match self {
            PhysicalPlan::Scan(_)
            | PhysicalPlan::Values { .. }
            | PhysicalPlan::ShuffleRead { .. }
            | PhysicalPlan::PersistRead { .. } => self.clone(),
            PhysicalPlan::Filter { predicate, .. } => PhysicalPlan::Filter {
                input: next(),
                predicate: predicate.clone(),
            },
            PhysicalPlan::DynamicFilter {
                keys, source_keys, ..
            } => PhysicalPlan::DynamicFilter {
                input: next(),
                keys: keys.clone(),
                source: next(),
                source_keys: source_keys.clone(),
            },
            PhysicalPlan::Projection { exprs, schema, .. } => PhysicalPlan::Projection {
                input: next(),
                exprs: exprs.clone(),
                schema: schema.clone(),
            },
            PhysicalPlan::HashAggregate {
                mode,
                group_exprs,
                aggr_exprs,
                aggr_input_schema,
                schema,
                ..
            } => PhysicalPlan::HashAggregate {
                input: next(),
                mode: *mode,
                group_exprs: group_exprs.clone(),
                aggr_exprs: aggr_exprs.clone(),
                aggr_input_schema: aggr_input_schema.clone(),
                schema: schema.clone(),
            },
            PhysicalPlan::HashJoin {
                on,
                filter,
                join_type,
                null_aware,
                mode,
                schema,
                ..
            } => PhysicalPlan::HashJoin {
                left: next(),
                right: next(),
                on: on.clone(),
                filter: filter.clone(),
                join_type: *join_type,
                null_aware: *null_aware,
                mode: *mode,
                schema: schema.clone(),
            },
            PhysicalPlan::NestedLoopJoin {
                filter,
                join_type,
                schema,
                ..
            } => PhysicalPlan::NestedLoopJoin {
                left: next(),
                right: next(),
                filter: filter.clone(),
                join_type: *join_type,
                schema: schema.clone(),
            },
            PhysicalPlan::Sort { exprs, fetch, .. } => PhysicalPlan::Sort {
                input: next(),
                exprs: exprs.clone(),
                fetch: *fetch,
            },
            PhysicalPlan::Limit { skip, fetch, .. } => PhysicalPlan::Limit {
                input: next(),
                skip: *skip,
                fetch: *fetch,
            },
            PhysicalPlan::Union { schema, .. } => PhysicalPlan::Union {
                inputs: (0..expected).map(|_| next()).collect(),
                schema: schema.clone(),
            },
            PhysicalPlan::Unnest { column, schema, .. } => PhysicalPlan::Unnest {
                input: next(),
                column: *column,
                schema: schema.clone(),
            },
            PhysicalPlan::Exchange { kind, .. } => PhysicalPlan::Exchange {
                input: next(),
                kind: kind.clone(),
            },
            PhysicalPlan::Write {
                path,
                format,
                job_id,
                ..
            } => PhysicalPlan::Write {
                input: next(),
                path: path.clone(),
                format: *format,
                job_id: job_id.clone(),
            },
            PhysicalPlan::Persist { id, mode, .. } => PhysicalPlan::Persist {
                input: next(),
                id: *id,
                mode: *mode,
            },
        })
    }

    /// How many partitions this node produces.
    pub fn output_partitions(&self) -> usize {
        match self {
            PhysicalPlan::Scan(s) => s.partitions.len().max(1),
            PhysicalPlan::Values { .. } => 1,
            PhysicalPlan::Filter { input, .. }
            | PhysicalPlan::DynamicFilter { input, .. }
            | PhysicalPlan::Projection { input, .. }
            | PhysicalPlan::HashAggregate { input, .. }
            | PhysicalPlan::Sort { input, .. }
            | PhysicalPlan::Limit { input, .. }
            | PhysicalPlan::Unnest { input, .. }
            | PhysicalPlan::Write { input, .. }
            | PhysicalPlan::Persist { input, .. } => input.output_partitions(),
            // The probe (left) side decides; a broadcast right side is read whole.
            PhysicalPlan::HashJoin { left, .. } | PhysicalPlan::NestedLoopJoin { left, .. } => {
                left.output_partitions()
            }
            PhysicalPlan::Union { inputs, .. } => {
                inputs.iter().map(|i| i.output_partitions()).sum()
            }
            PhysicalPlan::Exchange { input, kind } => kind
                .partition_count()
                .unwrap_or_else(|| input.output_partitions()),
            PhysicalPlan::ShuffleRead { partitions, .. }
            | PhysicalPlan::PersistRead { partitions, .. } => *partitions,
        }
    }

    /// Multi-line indented rendering used by EXPLAIN (shared subplans printed once).
    pub fn display_indent(&self) -> String {
        crate::display::display_indent(self)
    }

    /// One line describing this node (not its inputs).
    pub fn describe_node(&self) -> String {
        use crate::display::comma_list as list;
        match self {
            PhysicalPlan::Scan(s) => {
                let names: Vec<&str> = s.schema.fields().iter().map(|f| f.name()).collect();
                let mut d = format!(
                    "ScanExec: {} ({}) partitions={} projection=[{}]",
                    s.table_name,
                    s.source.kind(),
                    s.partitions.len(),
                    names.join(", ")
                );
                if !s.filters.is_empty() {
                    d.push_str(&format!(" filters=[{}]", list(&s.filters)));
                }
                d
            }
            PhysicalPlan::Values { rows, .. } => format!("ValuesExec: {} rows", rows.len()),
            PhysicalPlan::Filter { predicate, .. } => format!("FilterExec: {predicate}"),
            PhysicalPlan::DynamicFilter {
                keys, source_keys, ..
            } => format!(
                "DynamicFilterExec: [{}] in [{}] of the join's other side",
                list(keys),
                list(source_keys)
            ),
            PhysicalPlan::Projection { exprs, .. } => format!("ProjectionExec: {}", list(exprs)),
            PhysicalPlan::HashAggregate {
                mode,
                group_exprs,
                aggr_exprs,
                ..
            } => format!(
                "HashAggregateExec({mode:?}): groupBy=[{}], aggr=[{}]",
                list(group_exprs),
                list(aggr_exprs)
            ),
            PhysicalPlan::HashJoin {
                on,
                filter,
                join_type,
                mode,
                null_aware,
                ..
            } => {
                let keys: Vec<String> = on.iter().map(|(l, r)| format!("{l} = {r}")).collect();
                let mut d = format!(
                    "HashJoinExec({mode:?}, {join_type}): on=[{}]",
                    keys.join(", ")
                );
                if let Some(f) = filter {
                    d.push_str(&format!(" filter={f}"));
                }
                if *null_aware {
                    d.push_str(" null_aware");
                }
                d
            }
            PhysicalPlan::NestedLoopJoin {
                filter, join_type, ..
            } => match filter {
                Some(f) => format!("NestedLoopJoinExec({join_type}): filter={f}"),
                None => format!("NestedLoopJoinExec({join_type})"),
            },
            PhysicalPlan::Sort { exprs, fetch, .. } => match fetch {
                Some(n) => format!("SortExec(TopK {n}): {}", list(exprs)),
                None => format!("SortExec: {}", list(exprs)),
            },
            PhysicalPlan::Limit { skip, fetch, .. } => format!(
                "LimitExec: skip={skip}, fetch={}",
                fetch.map_or("None".to_string(), |f| f.to_string())
            ),
            PhysicalPlan::Union { .. } => "UnionExec".to_string(),
            PhysicalPlan::Unnest { schema, column, .. } => {
                format!("UnnestExec: {}", schema.field(*column).column())
            }
            PhysicalPlan::Exchange { kind, .. } => format!("Exchange: {kind}"),
            PhysicalPlan::ShuffleRead {
                stage,
                kind,
                partitions,
                ..
            } => format!("ShuffleRead: stage={stage} {kind} partitions={partitions}"),
            PhysicalPlan::Write {
                path,
                format,
                job_id,
                ..
            } => format!("WriteExec: {format} to {path} (write {job_id})"),
            PhysicalPlan::Persist { id, mode, .. } => format!("Persist: id={id} {mode}"),
            PhysicalPlan::PersistRead {
                stage,
                id,
                mode,
                partitions,
                ..
            } => format!("PersistRead: stage={stage} id={id} {mode} partitions={partitions}"),
        }
    }
}

impl fmt::Display for PhysicalPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display_indent())
    }
}

impl crate::display::ExplainNode for PhysicalPlan {
    fn describe_node(&self) -> String {
        PhysicalPlan::describe_node(self)
    }
    fn input_nodes(&self) -> Vec<&Arc<Self>> {
        self.inputs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::PlanFingerprinter;
    use crate::lineage::test_util::scan;

    fn write(input: Arc<PhysicalPlan>, job_id: &str) -> Arc<PhysicalPlan> {
        Arc::new(PhysicalPlan::Write {
            input,
            path: "/out".into(),
            format: WriteFormat::Parquet,
            job_id: job_id.into(),
        })
    }

    #[test]
    fn write_keeps_partitions_and_reports_one_row_per_partition() {
        let plan = write(scan("t", Some(100), 3), "w1");
        assert_eq!(plan.output_partitions(), 3);
        let names: Vec<&str> = plan.schema().fields().iter().map(|f| f.name()).collect();
        assert_eq!(names, ["partition", "attempt", "temp_path", "rows"]);
        assert_eq!(
            plan.describe_node(),
            "WriteExec: parquet to /out (write w1)"
        );
        let rebuilt = plan.with_new_inputs(vec![scan("u", Some(10), 5)]).unwrap();
        assert_eq!(rebuilt.output_partitions(), 5);
        assert_eq!(rebuilt.describe_node(), plan.describe_node());
    }

    #[test]
    fn two_writes_of_one_query_have_different_fingerprints() {
        let input = scan("t", Some(100), 2);
        let a = PlanFingerprinter::new().fingerprint(&write(input.clone(), "w1"));
        let b = PlanFingerprinter::new().fingerprint(&write(input, "w2"));
        assert_ne!(a, b);
    }
}
