//! Logical plans on the wire: one [`LogicalNode`] per plan node, inputs by index into the
//! enclosing [`super::WirePlan`]'s logical table (children first).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::expr::{ExprWire, SortExprWire};
use super::{post_order, Decoder, Encoder};
use crate::error::Result;
use crate::logical::{
    Aggregate, CrossJoin, Distinct, EmptyRelation, Filter, Join, JoinType, Limit, LogicalPlan,
    Partitioning, Persist, Projection, Repartition, Sort, SubqueryAlias, TableScan, Union, Unnest,
    Values,
};
use crate::persist::{PersistId, PersistMode};
use crate::schema::PlanSchema;

super::expr::wire_enum!(
    /// [`JoinType`] on the wire.
    JoinTypeWire <=> JoinType { Inner, Left, Right, Full, LeftSemi, LeftAnti }
);

/// [`Partitioning`] on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PartitioningWire {
    RoundRobin(usize),
    Hash(Vec<ExprWire>, usize),
}

/// One [`LogicalPlan`] node; `input`/`left`/`right`/`inputs` are logical node indices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LogicalNode {
    TableScan {
        table_name: String,
        /// Index into the plan's source table.
        source: usize,
        projection: Option<Vec<usize>>,
        filters: Vec<ExprWire>,
        schema: PlanSchema,
    },
    Projection {
        input: usize,
        exprs: Vec<ExprWire>,
        schema: PlanSchema,
    },
    Filter {
        input: usize,
        predicate: ExprWire,
    },
    Aggregate {
        input: usize,
        group_exprs: Vec<ExprWire>,
        aggr_exprs: Vec<ExprWire>,
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
    Join {
        left: usize,
        right: usize,
        on: Vec<(ExprWire, ExprWire)>,
        filter: Option<ExprWire>,
        join_type: JoinTypeWire,
        null_aware: bool,
        schema: PlanSchema,
    },
    CrossJoin {
        left: usize,
        right: usize,
        schema: PlanSchema,
    },
    Union {
        inputs: Vec<usize>,
        schema: PlanSchema,
    },
    Distinct {
        input: usize,
    },
    SubqueryAlias {
        input: usize,
        alias: String,
        schema: PlanSchema,
    },
    Values {
        schema: PlanSchema,
        rows: Vec<Vec<ExprWire>>,
    },
    EmptyRelation {
        produce_one_row: bool,
        schema: PlanSchema,
    },
    Repartition {
        input: usize,
        partitioning: PartitioningWire,
    },
    Unnest {
        input: usize,
        column: usize,
        schema: PlanSchema,
    },
    Persist {
        input: usize,
        id: PersistId,
        mode: PersistMode,
    },
}

impl Encoder {
    /// Adds `plan` and everything below it (not yet encoded) to the logical table; returns
    /// its index.
    pub(crate) fn logical_plan(&mut self, plan: &Arc<LogicalPlan>) -> Result<usize> {
        let order = post_order(plan, |p: &LogicalPlan| p.inputs(), &self.logical_ids);
        for node in order {
            let wire = self.logical_node(node)?;
            let id = self.logical.len();
            self.logical.push(wire);
            self.logical_ids.insert(Arc::as_ptr(node), id);
        }
        self.logical_id(plan)
    }

    fn logical_id(&self, plan: &Arc<LogicalPlan>) -> Result<usize> {
        self.logical_ids
            .get(&Arc::as_ptr(plan))
            .copied()
            .ok_or_else(|| {
                crate::error::EmberError::Internal(
                    "a logical plan input was not encoded before its parent".to_string(),
                )
            })
    }

    fn logical_node(&mut self, plan: &LogicalPlan) -> Result<LogicalNode> {
        use LogicalNode as N;
        let schema = |s: &Arc<PlanSchema>| s.as_ref().clone();
        Ok(match plan {
            LogicalPlan::TableScan(s) => N::TableScan {
                table_name: s.table_name.clone(),
                source: self.source(&s.table_name, &s.source)?,
                projection: s.projection.clone(),
                filters: self.exprs(&s.filters)?,
                schema: schema(&s.schema),
            },
            LogicalPlan::Projection(p) => N::Projection {
                input: self.logical_id(&p.input)?,
                exprs: self.exprs(&p.exprs)?,
                schema: schema(&p.schema),
            },
            LogicalPlan::Filter(f) => N::Filter {
                input: self.logical_id(&f.input)?,
                predicate: self.expr(&f.predicate)?,
            },
            LogicalPlan::Aggregate(a) => N::Aggregate {
                input: self.logical_id(&a.input)?,
                group_exprs: self.exprs(&a.group_exprs)?,
                aggr_exprs: self.exprs(&a.aggr_exprs)?,
                schema: schema(&a.schema),
            },
            LogicalPlan::Sort(s) => N::Sort {
                input: self.logical_id(&s.input)?,
                exprs: self.sort_exprs(&s.exprs)?,
                fetch: s.fetch,
            },
            LogicalPlan::Limit(l) => N::Limit {
                input: self.logical_id(&l.input)?,
                skip: l.skip,
                fetch: l.fetch,
            },
            LogicalPlan::Join(j) => N::Join {
                left: self.logical_id(&j.left)?,
                right: self.logical_id(&j.right)?,
                on: self.expr_pairs(&j.on)?,
                filter: self.opt_expr(&j.filter)?,
                join_type: j.join_type.into(),
                null_aware: j.null_aware,
                schema: schema(&j.schema),
            },
            LogicalPlan::CrossJoin(c) => N::CrossJoin {
                left: self.logical_id(&c.left)?,
                right: self.logical_id(&c.right)?,
                schema: schema(&c.schema),
            },
            LogicalPlan::Union(u) => N::Union {
                inputs: u
                    .inputs
                    .iter()
                    .map(|i| self.logical_id(i))
                    .collect::<Result<_>>()?,
                schema: schema(&u.schema),
            },
            LogicalPlan::Distinct(d) => N::Distinct {
                input: self.logical_id(&d.input)?,
            },
            LogicalPlan::SubqueryAlias(s) => N::SubqueryAlias {
                input: self.logical_id(&s.input)?,
                alias: s.alias.clone(),
                schema: schema(&s.schema),
            },
            LogicalPlan::Values(v) => N::Values {
                schema: schema(&v.schema),
                rows: v
                    .rows
                    .iter()
                    .map(|row| self.exprs(row))
                    .collect::<Result<_>>()?,
            },
            LogicalPlan::EmptyRelation(e) => N::EmptyRelation {
                produce_one_row: e.produce_one_row,
                schema: schema(&e.schema),
            },
            LogicalPlan::Repartition(r) => N::Repartition {
                input: self.logical_id(&r.input)?,
                partitioning: match &r.partitioning {
                    Partitioning::RoundRobin(n) => PartitioningWire::RoundRobin(*n),
                    Partitioning::Hash(keys, n) => PartitioningWire::Hash(self.exprs(keys)?, *n),
                },
            },
            LogicalPlan::Unnest(u) => N::Unnest {
                input: self.logical_id(&u.input)?,
                column: u.column,
                schema: schema(&u.schema),
            },
            LogicalPlan::Persist(p) => N::Persist {
                input: self.logical_id(&p.input)?,
                id: p.id,
                mode: p.mode,
            },
        })
    }
}

impl Decoder<'_> {
    pub(crate) fn decode_logical(&mut self, node: &LogicalNode) -> Result<LogicalPlan> {
        use LogicalNode as N;
        let schema = |s: &PlanSchema| Arc::new(s.clone());
        Ok(match node {
            N::TableScan {
                table_name,
                source,
                projection,
                filters,
                schema: s,
            } => LogicalPlan::TableScan(TableScan {
                table_name: table_name.clone(),
                source: self.source(*source)?,
                projection: projection.clone(),
                filters: self.exprs(filters)?,
                schema: schema(s),
            }),
            N::Projection {
                input,
                exprs,
                schema: s,
            } => LogicalPlan::Projection(Projection {
                input: self.logical_node(*input)?,
                exprs: self.exprs(exprs)?,
                schema: schema(s),
            }),
            N::Filter { input, predicate } => LogicalPlan::Filter(Filter {
                input: self.logical_node(*input)?,
                predicate: self.expr(predicate)?,
            }),
            N::Aggregate {
                input,
                group_exprs,
                aggr_exprs,
                schema: s,
            } => LogicalPlan::Aggregate(Aggregate {
                input: self.logical_node(*input)?,
                group_exprs: self.exprs(group_exprs)?,
                aggr_exprs: self.exprs(aggr_exprs)?,
                schema: schema(s),
            }),
            N::Sort {
                input,
                exprs,
                fetch,
            } => LogicalPlan::Sort(Sort {
                input: self.logical_node(*input)?,
                exprs: self.sort_exprs(exprs)?,
                fetch: *fetch,
            }),
            N::Limit { input, skip, fetch } => LogicalPlan::Limit(Limit {
                input: self.logical_node(*input)?,
                skip: *skip,
                fetch: *fetch,
            }),
            N::Join {
                left,
                right,
                on,
                filter,
                join_type,
                null_aware,
                schema: s,
            } => LogicalPlan::Join(Join {
                left: self.logical_node(*left)?,
                right: self.logical_node(*right)?,
                on: self.expr_pairs(on)?,
                filter: self.opt_expr(filter)?,
                join_type: (*join_type).into(),
                null_aware: *null_aware,
                schema: schema(s),
            }),
            N::CrossJoin {
                left,
                right,
                schema: s,
            } => LogicalPlan::CrossJoin(CrossJoin {
                left: self.logical_node(*left)?,
                right: self.logical_node(*right)?,
                schema: schema(s),
            }),
            N::Union { inputs, schema: s } => LogicalPlan::Union(Union {
                inputs: inputs
                    .iter()
                    .map(|i| self.logical_node(*i))
                    .collect::<Result<_>>()?,
                schema: schema(s),
            }),
            N::Distinct { input } => LogicalPlan::Distinct(Distinct {
                input: self.logical_node(*input)?,
            }),
            N::SubqueryAlias {
                input,
                alias,
                schema: s,
            } => LogicalPlan::SubqueryAlias(SubqueryAlias {
                input: self.logical_node(*input)?,
                alias: alias.clone(),
                schema: schema(s),
            }),
            N::Values { schema: s, rows } => LogicalPlan::Values(Values {
                schema: schema(s),
                rows: rows
                    .iter()
                    .map(|row| self.exprs(row))
                    .collect::<Result<_>>()?,
            }),
            N::EmptyRelation {
                produce_one_row,
                schema: s,
            } => LogicalPlan::EmptyRelation(EmptyRelation {
                produce_one_row: *produce_one_row,
                schema: schema(s),
            }),
            N::Repartition {
                input,
                partitioning,
            } => LogicalPlan::Repartition(Repartition {
                input: self.logical_node(*input)?,
                partitioning: match partitioning {
                    PartitioningWire::RoundRobin(n) => Partitioning::RoundRobin(*n),
                    PartitioningWire::Hash(keys, n) => Partitioning::Hash(self.exprs(keys)?, *n),
                },
            }),
            N::Unnest {
                input,
                column,
                schema: s,
            } => LogicalPlan::Unnest(Unnest {
                input: self.logical_node(*input)?,
                column: *column,
                schema: schema(s),
            }),
            N::Persist { input, id, mode } => LogicalPlan::Persist(Persist {
                input: self.logical_node(*input)?,
                id: *id,
                mode: *mode,
            }),
        })
    }
}
