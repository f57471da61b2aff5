//! Physical plans on the wire: one [`PhysicalNode`] per operator, inputs by index into the
//! enclosing [`super::WirePlan`]'s physical table (children first). This is what a driver
//! ships to an executor: a stage's pipeline, with `ShuffleRead`/`PersistRead` leaves.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::expr::{wire_enum, ExprWire, SortExprWire};
use super::logical::JoinTypeWire;
use super::source::PartitionDescriptor;
use super::{post_order, Decoder, Encoder};
use crate::error::{EmberError, Result};
use crate::persist::{PersistId, PersistMode};
use crate::physical::{AggregateMode, ExchangeKind, JoinMode, PhysicalPlan, ScanExec, WriteFormat};
use crate::schema::PlanSchema;

wire_enum!(
    /// [`AggregateMode`] on the wire.
    AggregateModeWire <=> AggregateMode { Partial, Final, Single }
);

wire_enum!(
    /// [`JoinMode`] on the wire.
    JoinModeWire <=> JoinMode { Partitioned, Broadcast }
);

wire_enum!(
    /// [`WriteFormat`] on the wire.
    WriteFormatWire <=> WriteFormat { Parquet }
);

/// [`ExchangeKind`] on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExchangeKindWire {
    Hash(Vec<ExprWire>, usize),
    RoundRobin(usize),
    Single,
    Broadcast,
    Range {
        sort: Vec<SortExprWire>,
        partitions: usize,
    },
}

/// A [`ScanExec`]: the table by reference to the plan's source table, each partition by its
/// descriptor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanNode {
    pub table_name: String,
    pub source: usize,
    pub projection: Option<Vec<usize>>,
    pub filters: Vec<ExprWire>,
    pub partitions: Vec<PartitionDescriptor>,
    pub schema: PlanSchema,
}

/// One [`PhysicalPlan`] node; `input`/`left`/`right`/`inputs` are physical node indices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PhysicalNode {
    Scan(ScanNode),
    Values {
        schema: PlanSchema,
        rows: Vec<Vec<ExprWire>>,
    },
    Filter {
        input: usize,
        predicate: ExprWire,
    },
    DynamicFilter {
        input: usize,
        keys: Vec<ExprWire>,
        source: usize,
        source_keys: Vec<ExprWire>,
    },
    Projection {
        input: usize,
        exprs: Vec<ExprWire>,
        schema: PlanSchema,
    },
    HashAggregate {
        input: usize,
        mode: AggregateModeWire,
        group_exprs: Vec<ExprWire>,
        aggr_exprs: Vec<ExprWire>,
        aggr_input_schema: PlanSchema,
        schema: PlanSchema,
    },
    HashJoin {
        left: usize,
        right: usize,
        on: Vec<(ExprWire, ExprWire)>,
        filter: Option<ExprWire>,
        join_type: JoinTypeWire,
        null_aware: bool,
        mode: JoinModeWire,
        schema: PlanSchema,
    },
    NestedLoopJoin {
        left: usize,
        right: usize,
        filter: Option<ExprWire>,
        join_type: JoinTypeWire,
        schema: PlanSchema,
    },
    Sort {
        input: usize,
        exprs: Vec<SortExprWire>,
        fetch: Option<usize>,
    },
    Limit {
        input: usize,
        skip: usize,
        fetch: Option<usize>,
    },
    Union {
        inputs: Vec<usize>,
        schema: PlanSchema,
    },
    Unnest {
        input: usize,
        column: usize,
        schema: PlanSchema,
    },
    Exchange {
        input: usize,
        kind: ExchangeKindWire,
    },
    ShuffleRead {
        stage: usize,
        kind: ExchangeKindWire,
        map_partitions: usize,
        partitions: usize,
        schema: PlanSchema,
    },
    Write {
        input: usize,
        path: String,
        format: WriteFormatWire,
        job_id: String,
    },
    Persist {
        input: usize,
        id: PersistId,
        mode: PersistMode,
    },
    PersistRead {
        stage: usize,
        id: PersistId,
        mode: PersistMode,
        partitions: usize,
        schema: PlanSchema,
    },
}

impl Encoder {
    /// Adds `plan` and everything below it to the physical table; returns its index.
    pub(crate) fn physical_plan(&mut self, plan: &Arc<PhysicalPlan>) -> Result<usize> {
        let order = post_order(plan, |p: &PhysicalPlan| p.inputs(), &self.physical_ids);
        for node in order {
            let wire = self.physical_node(node)?;
            let id = self.physical.len();
            self.physical.push(wire);
            self.physical_ids.insert(Arc::as_ptr(node), id);
        }
        self.physical_id(plan)
    }

    fn physical_id(&self, plan: &Arc<PhysicalPlan>) -> Result<usize> {
        self.physical_ids
            .get(&Arc::as_ptr(plan))
            .copied()
            .ok_or_else(|| {
                EmberError::Internal(
                    "a physical plan input was not encoded before its parent".to_string(),
                )
            })
    }

    fn exchange_kind(&mut self, kind: &ExchangeKind) -> Result<ExchangeKindWire> {
        Ok(match kind {
            ExchangeKind::Hash(keys, n) => ExchangeKindWire::Hash(self.exprs(keys)?, *n),
            ExchangeKind::RoundRobin(n) => ExchangeKindWire::RoundRobin(*n),
            ExchangeKind::Single => ExchangeKindWire::Single,
            ExchangeKind::Broadcast => ExchangeKindWire::Broadcast,
            ExchangeKind::Range { sort, partitions } => ExchangeKindWire::Range {
                sort: self.sort_exprs(sort)?,
                partitions: *partitions,
            },
        })
    }

    fn scan(&mut self, scan: &ScanExec) -> Result<ScanNode> {
        let partitions = scan
            .partitions
            .iter()
            .map(|p| p.descriptor())
            .collect::<Result<Vec<_>>>()
            .map_err(|e| {
                e.context(format!(
                    "while serialising the scan of table {}",
                    scan.table_name
                ))
            })?;
        Ok(ScanNode {
            table_name: scan.table_name.clone(),
            source: self.source(&scan.table_name, &scan.source)?,
            projection: scan.projection.clone(),
            filters: self.exprs(&scan.filters)?,
            partitions,
            schema: scan.schema.as_ref().clone(),
        })
    }

    fn physical_node(&mut self, plan: &PhysicalPlan) -> Result<PhysicalNode> {
        use PhysicalNode as N;
        let schema = |s: &Arc<PlanSchema>| s.as_ref().clone();
        Ok(match plan {
            PhysicalPlan::Scan(s) => N::Scan(self.scan(s)?),
            PhysicalPlan::Values { schema: s, rows } => N::Values {
                schema: schema(s),
                rows: rows
                    .iter()
                    .map(|row| self.exprs(row))
                    .collect::<Result<_>>()?,
            },
            PhysicalPlan::Filter { input, predicate } => N::Filter {
                input: self.physical_id(input)?,
                predicate: self.expr(predicate)?,
            },
            PhysicalPlan::DynamicFilter {
                input,
                keys,
                source,
                source_keys,
            } => N::DynamicFilter {
                input: self.physical_id(input)?,
                keys: self.exprs(keys)?,
                source: self.physical_id(source)?,
                source_keys: self.exprs(source_keys)?,
            },
            PhysicalPlan::Projection {
                input,
                exprs,
                schema: s,
            } => N::Projection {
                input: self.physical_id(input)?,
                exprs: self.exprs(exprs)?,
                schema: schema(s),
            },
            PhysicalPlan::HashAggregate {
                input,
                mode,
                group_exprs,
                aggr_exprs,
                aggr_input_schema,
                schema: s,
            } => N::HashAggregate {
                input: self.physical_id(input)?,
                mode: (*mode).into(),
                group_exprs: self.exprs(group_exprs)?,
                aggr_exprs: self.exprs(aggr_exprs)?,
                aggr_input_schema: schema(aggr_input_schema),
                schema: schema(s),
            },
            PhysicalPlan::HashJoin {
                left,
                right,
                on,
                filter,
                join_type,
                null_aware,
                mode,
                schema: s,
            } => N::HashJoin {
                left: self.physical_id(left)?,
                right: self.physical_id(right)?,
                on: self.expr_pairs(on)?,
                filter: self.opt_expr(filter)?,
                join_type: (*join_type).into(),
                null_aware: *null_aware,
                mode: (*mode).into(),
                schema: schema(s),
            },
            PhysicalPlan::NestedLoopJoin {
                left,
                right,
                filter,
                join_type,
                schema: s,
            } => N::NestedLoopJoin {
                left: self.physical_id(left)?,
                right: self.physical_id(right)?,
                filter: self.opt_expr(filter)?,
                join_type: (*join_type).into(),
                schema: schema(s),
            },
            PhysicalPlan::Sort {
                input,
                exprs,
                fetch,
            } => N::Sort {
                input: self.physical_id(input)?,
                exprs: self.sort_exprs(exprs)?,
                fetch: *fetch,
            },
            PhysicalPlan::Limit { input, skip, fetch } => N::Limit {
                input: self.physical_id(input)?,
                skip: *skip,
                fetch: *fetch,
            },
            PhysicalPlan::Union { inputs, schema: s } => N::Union {
                inputs: inputs
                    .iter()
                    .map(|i| self.physical_id(i))
                    .collect::<Result<_>>()?,
                schema: schema(s),
            },
            PhysicalPlan::Unnest {
                input,
                column,
                schema: s,
            } => N::Unnest {
                input: self.physical_id(input)?,
                column: *column,
                schema: schema(s),
            },
            PhysicalPlan::Exchange { input, kind } => N::Exchange {
                input: self.physical_id(input)?,
                kind: self.exchange_kind(kind)?,
            },
            PhysicalPlan::ShuffleRead {
                stage,
                kind,
                map_partitions,
                partitions,
                schema: s,
            } => N::ShuffleRead {
                stage: *stage,
                kind: self.exchange_kind(kind)?,
                map_partitions: *map_partitions,
                partitions: *partitions,
                schema: schema(s),
            },
            PhysicalPlan::Write {
                input,
                path,
                format,
                job_id,
            } => N::Write {
                input: self.physical_id(input)?,
                path: path.clone(),
                format: (*format).into(),
                job_id: job_id.clone(),
            },
            PhysicalPlan::Persist { input, id, mode } => N::Persist {
                input: self.physical_id(input)?,
                id: *id,
                mode: *mode,
            },
            PhysicalPlan::PersistRead {
                stage,
                id,
                mode,
                partitions,
                schema: s,
            } => N::PersistRead {
                stage: *stage,
                id: *id,
                mode: *mode,
                partitions: *partitions,
                schema: schema(s),
            },
        })
    }
}

impl Decoder<'_> {
    fn exchange_kind(&self, kind: &ExchangeKindWire) -> Result<ExchangeKind> {
        Ok(match kind {
            ExchangeKindWire::Hash(keys, n) => ExchangeKind::Hash(self.exprs(keys)?, *n),
            ExchangeKindWire::RoundRobin(n) => ExchangeKind::RoundRobin(*n),
            ExchangeKindWire::Single => ExchangeKind::Single,
            ExchangeKindWire::Broadcast => ExchangeKind::Broadcast,
            ExchangeKindWire::Range { sort, partitions } => ExchangeKind::Range {
                sort: self.sort_exprs(sort)?,
                partitions: *partitions,
            },
        })
    }

    fn scan(&mut self, scan: &ScanNode) -> Result<ScanExec> {
        let source = self.source(scan.source)?;
        let partitions = scan
            .partitions
            .iter()
            .map(|p| self.resolver.resolve_partition(&source, p))
            .collect::<Result<Vec<_>>>()
            .map_err(|e| {
                e.context(format!(
                    "while rebuilding the scan of table {}",
                    scan.table_name
                ))
            })?;
        Ok(ScanExec {
            table_name: scan.table_name.clone(),
            source,
            projection: scan.projection.clone(),
            filters: self.exprs(&scan.filters)?,
            partitions,
            schema: Arc::new(scan.schema.clone()),
        })
    }

    pub(crate) fn decode_physical(&mut self, node: &PhysicalNode) -> Result<PhysicalPlan> {
        use PhysicalNode as N;
        let schema = |s: &PlanSchema| Arc::new(s.clone());
        Ok(match node {
            N::Scan(s) => PhysicalPlan::Scan(self.scan(s)?),
            N::Values { schema: s, rows } => PhysicalPlan::Values {
                schema: schema(s),
                rows: rows
                    .iter()
                    .map(|row| self.exprs(row))
                    .collect::<Result<_>>()?,
            },
            N::Filter { input, predicate } => PhysicalPlan::Filter {
                input: self.physical_node(*input)?,
                predicate: self.expr(predicate)?,
            },
            N::DynamicFilter {
                input,
                keys,
                source,
                source_keys,
            } => PhysicalPlan::DynamicFilter {
                input: self.physical_node(*input)?,
                keys: self.exprs(keys)?,
                source: self.physical_node(*source)?,
                source_keys: self.exprs(source_keys)?,
            },
            N::Projection {
                input,
                exprs,
                schema: s,
            } => PhysicalPlan::Projection {
                input: self.physical_node(*input)?,
                exprs: self.exprs(exprs)?,
                schema: schema(s),
            },
            N::HashAggregate {
                input,
                mode,
                group_exprs,
                aggr_exprs,
                aggr_input_schema,
                schema: s,
            } => PhysicalPlan::HashAggregate {
                input: self.physical_node(*input)?,
                mode: (*mode).into(),
                group_exprs: self.exprs(group_exprs)?,
                aggr_exprs: self.exprs(aggr_exprs)?,
                aggr_input_schema: schema(aggr_input_schema),
                schema: schema(s),
            },
            N::HashJoin {
                left,
                right,
                on,
                filter,
                join_type,
                null_aware,
                mode,
                schema: s,
            } => PhysicalPlan::HashJoin {
                left: self.physical_node(*left)?,
                right: self.physical_node(*right)?,
                on: self.expr_pairs(on)?,
                filter: self.opt_expr(filter)?,
                join_type: (*join_type).into(),
                null_aware: *null_aware,
                mode: (*mode).into(),
                schema: schema(s),
            },
            N::NestedLoopJoin {
                left,
                right,
                filter,
                join_type,
                schema: s,
            } => PhysicalPlan::NestedLoopJoin {
                left: self.physical_node(*left)?,
                right: self.physical_node(*right)?,
                filter: self.opt_expr(filter)?,
                join_type: (*join_type).into(),
                schema: schema(s),
            },
            N::Sort {
                input,
                exprs,
                fetch,
            } => PhysicalPlan::Sort {
                input: self.physical_node(*input)?,
                exprs: self.sort_exprs(exprs)?,
                fetch: *fetch,
            },
            N::Limit { input, skip, fetch } => PhysicalPlan::Limit {
                input: self.physical_node(*input)?,
                skip: *skip,
                fetch: *fetch,
            },
            N::Union { inputs, schema: s } => PhysicalPlan::Union {
                inputs: inputs
                    .iter()
                    .map(|i| self.physical_node(*i))
                    .collect::<Result<_>>()?,
                schema: schema(s),
            },
            N::Unnest {
                input,
                column,
                schema: s,
            } => PhysicalPlan::Unnest {
                input: self.physical_node(*input)?,
                column: *column,
                schema: schema(s),
            },
            N::Exchange { input, kind } => PhysicalPlan::Exchange {
                input: self.physical_node(*input)?,
                kind: self.exchange_kind(kind)?,
            },
            N::ShuffleRead {
                stage,
                kind,
                map_partitions,
                partitions,
                schema: s,
            } => PhysicalPlan::ShuffleRead {
                stage: *stage,
                kind: self.exchange_kind(kind)?,
                map_partitions: *map_partitions,
                partitions: *partitions,
                schema: schema(s),
            },
            N::Write {
                input,
                path,
                format,
                job_id,
            } => PhysicalPlan::Write {
                input: self.physical_node(*input)?,
                path: path.clone(),
                format: (*format).into(),
                job_id: job_id.clone(),
            },
            N::Persist { input, id, mode } => PhysicalPlan::Persist {
                input: self.physical_node(*input)?,
                id: *id,
                mode: *mode,
            },
            N::PersistRead {
                stage,
                id,
                mode,
                partitions,
                schema: s,
            } => PhysicalPlan::PersistRead {
                stage: *stage,
                id: *id,
                mode: *mode,
                partitions: *partitions,
                schema: schema(s),
            },
        })
    }
}
