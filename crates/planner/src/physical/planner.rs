//! Logical → physical planning: chooses partition counts, inserts Exchanges where the
//! distribution of rows must change, splits aggregations into Partial/Final, and picks
//! broadcast or partitioned joins.
//!
//! ```text
//! Aggregate(g; sum(x))            HashAggregate(Final)
//!   Scan t             ──►          Exchange Hash([g], n)
//!                                     HashAggregate(Partial)
//!                                       ScanExec t (one partition per row-group split)
//! ```
//!
//! The logical plan is a DAG; planning memoises by node identity so a subplan used twice
//! becomes one physical node (and so one stage, computed once).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::Field;

use crate::error::{EmberError, Result};
use crate::expr::{AggregateFunction, Expr};
use crate::logical::{self, JoinType, LogicalPlan, Partitioning};
use crate::optimizer::stats::{column_origin_rows, StatsCache};
use crate::physical::aggregate::aggregate_state_fields;
use crate::physical::dynamic_filter::{add_dynamic_filters, REDUCED_FRACTION};
use crate::physical::{AggregateMode, ExchangeKind, JoinMode, PhysicalPlan, ScanExec};
use crate::schema::{PlanSchema, QualifiedField};
use crate::table::ScanRequest;
use crate::types;

/// Knobs of physical planning (from the session config).
#[derive(Debug, Clone)]
pub struct PhysicalPlannerConfig {
    /// Partitions after a shuffle (`ember.sql.shuffle.partitions`).
    pub target_partitions: usize,
    /// Broadcast a join's build side when its estimated size is below this
    /// (`ember.sql.autoBroadcastJoinThreshold`).
    pub broadcast_threshold_bytes: usize,
    /// The largest build side broadcast above the threshold by the relative rule (see
    /// `broadcast_pays`); a fraction of the executor memory when that is set, since a
    /// broadcast build side cannot be split across tasks like a partitioned one.
    pub relative_broadcast_max_bytes: usize,
    /// Whether dynamic join filters are placed (`ember.sql.dynamicJoinFilters`, see
    /// [`add_dynamic_filters`]); then a reduced probe side is better served by a shuffled
    /// join whose build side it filters than by broadcasting a build side above the
    /// threshold.
    pub dynamic_filters: bool,
}

impl Default for PhysicalPlannerConfig {
    fn default() -> Self {
        PhysicalPlannerConfig {
            target_partitions: 4,
            broadcast_threshold_bytes: 10 * 1024 * 1024,
            relative_broadcast_max_bytes: usize::MAX,
            dynamic_filters: true,
        }
    }
}

/// A build side above the broadcast threshold is still broadcast against a much larger
/// probe side, up to this multiple of the threshold (see `broadcast_pays`): it bounds the
/// hash table every probe task holds.
const RELATIVE_BROADCAST_CAP: usize = 16;

/// A left outer join builds its hash table on the preserved side when the other side is
/// estimated more than this many times larger (see `builds_on_preserved_side`).
const OUTER_BUILD_RATIO: usize = 2;

/// … and the other side is at least this fraction of the broadcast threshold: a small
/// dimension table is still best broadcast whatever the preserved side's size.
const OUTER_BUILD_MIN_FRACTION: usize = 16;

/// Plans `plan` for execution, with dynamic join filters when `config` says so.
pub fn create_physical_plan(
    plan: &Arc<LogicalPlan>,
    config: &PhysicalPlannerConfig,
) -> Result<Arc<PhysicalPlan>> {
    let physical = PhysicalPlanner {
        config,
        memo: HashMap::new(),
        estimates: HashMap::new(),
        stats: StatsCache::default(),
    }
    .plan(plan)?;
    if config.dynamic_filters {
        add_dynamic_filters(&physical)
    } else {
        Ok(physical)
    }
}

struct PhysicalPlanner<'a> {
    config: &'a PhysicalPlannerConfig,
    memo: HashMap<*const LogicalPlan, Arc<PhysicalPlan>>,
    /// Output size estimates by logical node identity (see [`estimated_bytes`]).
    estimates: HashMap<*const LogicalPlan, Option<usize>>,
    /// Row estimates for [`PhysicalPlanner::is_reduced`], memoised across joins for the same
    /// reason as `estimates`.
    stats: StatsCache,
}

impl PhysicalPlanner<'_> {
    #[recursive::recursive]
    fn plan(&mut self, plan: &Arc<LogicalPlan>) -> Result<Arc<PhysicalPlan>> {
        let key = Arc::as_ptr(plan);
        if let Some(p) = self.memo.get(&key) {
            return Ok(p.clone());
        }
        let physical = self.plan_node(plan)?;
        self.memo.insert(key, physical.clone());
        Ok(physical)
    }

    fn partitions(&self) -> usize {
        self.config.target_partitions.max(1)
    }

    fn plan_node(&mut self, plan: &Arc<LogicalPlan>) -> Result<Arc<PhysicalPlan>> {
        Ok(Arc::new(match plan.as_ref() {
            LogicalPlan::TableScan(scan) => {
                let partitions = scan.source.scan(&ScanRequest {
                    projection: scan.projection.clone(),
                    filters: scan.filters.clone(),
                    target_partitions: self.partitions(),
                    limit: None,
                })?;
                PhysicalPlan::Scan(ScanExec {
                    table_name: scan.table_name.clone(),
                    source: scan.source.clone(),
                    projection: scan.projection.clone(),
                    filters: scan.filters.clone(),
                    partitions,
                    schema: scan.schema.clone(),
                })
            }
            LogicalPlan::Projection(p) => PhysicalPlan::Projection {
                input: self.plan(&p.input)?,
                exprs: p.exprs.clone(),
                schema: p.schema.clone(),
            },
            LogicalPlan::Filter(f) => PhysicalPlan::Filter {
                input: self.plan(&f.input)?,
                predicate: f.predicate.clone(),
            },
            LogicalPlan::SubqueryAlias(a) => {
                // Re-qualify the columns: a projection of every input column under the alias.
                let input = self.plan(&a.input)?;
                let exprs = a
                    .input
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| Expr::Column(f.column()))
                    .collect();
                PhysicalPlan::Projection {
                    input,
                    exprs,
                    schema: a.schema.clone(),
                }
            }
            LogicalPlan::Aggregate(a) => return self.plan_aggregate(a),
            LogicalPlan::Distinct(d) => {
                let group_exprs = d
                    .input
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| Expr::Column(f.column()))
                    .collect();
                let agg = logical::Aggregate::try_new(d.input.clone(), group_exprs, vec![])?;
                return self.plan_aggregate(&agg);
            }
            LogicalPlan::Sort(s) => {
                let input = self.plan(&s.input)?;
                let sorted = |input| PhysicalPlan::Sort {
                    input,
                    exprs: s.exprs.clone(),
                    fetch: s.fetch,
                };
                if input.output_partitions() <= 1 {
                    sorted(input)
                } else if s.fetch.is_some() {
                    // Top-k: each partition keeps its best k rows, so gathering them into one
                    // partition and sorting again is cheap.
                    let local = Arc::new(sorted(input));
                    sorted(Arc::new(PhysicalPlan::Exchange {
                        input: local,
                        kind: ExchangeKind::Single,
                    }))
                } else {
                    // A full sort stays parallel: each partition is sorted, then a range
                    // exchange hands output partition r the r-th key range of every sorted
                    // run, merged (the reader merges; no Sort above). The partitions in
                    // order are the sorted result.
                    PhysicalPlan::Exchange {
                        input: Arc::new(sorted(input)),
                        kind: ExchangeKind::Range {
                            sort: s.exprs.clone(),
                            partitions: self.partitions(),
                        },
                    }
                }
            }
            LogicalPlan::Limit(l) => {
                let input = self.plan(&l.input)?;
                if input.output_partitions() <= 1 {
                    PhysicalPlan::Limit {
                        input,
                        skip: l.skip,
                        fetch: l.fetch,
                    }
                } else {
                    // Each partition keeps at most skip + fetch rows, then one partition
                    // applies the real limit.
                    let local = match l.fetch {
                        Some(f) => Arc::new(PhysicalPlan::Limit {
                            input,
                            skip: 0,
                            fetch: Some(f + l.skip),
                        }),
                        None => input,
                    };
                    PhysicalPlan::Limit {
                        input: Arc::new(PhysicalPlan::Exchange {
                            input: local,
                            kind: ExchangeKind::Single,
                        }),
                        skip: l.skip,
                        fetch: l.fetch,
                    }
                }
            }
            LogicalPlan::Join(j) => return self.plan_join(j),
            LogicalPlan::CrossJoin(j) => {
                let left = self.plan(&j.left)?;
                let right = self.plan(&j.right)?;
                PhysicalPlan::NestedLoopJoin {
                    right: self.broadcast_for(&left, right),
                    left,
                    filter: None,
                    join_type: JoinType::Inner,
                    schema: j.schema.clone(),
                }
            }
            LogicalPlan::Union(u) => PhysicalPlan::Union {
                inputs: u
                    .inputs
                    .iter()
                    .map(|i| self.plan(i))
                    .collect::<Result<_>>()?,
                schema: u.schema.clone(),
            },
            LogicalPlan::Values(v) => PhysicalPlan::Values {
                schema: v.schema.clone(),
                rows: v.rows.clone(),
            },
            LogicalPlan::EmptyRelation(e) => PhysicalPlan::Values {
                schema: e.schema.clone(),
                rows: if e.produce_one_row {
                    vec![vec![]]
                } else {
                    vec![]
                },
            },
            LogicalPlan::Persist(p) => PhysicalPlan::Persist {
                input: self.plan(&p.input)?,
                id: p.id,
                mode: p.mode,
            },
            LogicalPlan::Repartition(r) => PhysicalPlan::Exchange {
                input: self.plan(&r.input)?,
                kind: match &r.partitioning {
                    Partitioning::RoundRobin(n) => ExchangeKind::RoundRobin((*n).max(1)),
                    Partitioning::Hash(exprs, n) => ExchangeKind::Hash(exprs.clone(), (*n).max(1)),
                },
            },
            LogicalPlan::Unnest(u) => PhysicalPlan::Unnest {
                input: self.plan(&u.input)?,
                column: u.column,
                schema: u.schema.clone(),
            },
        }))
    }

    /// The right side of a broadcast join: an Exchange Broadcast, unless the left side has a
    /// single partition (then the join task reads the right side itself).
    fn broadcast_for(
        &self,
        left: &Arc<PhysicalPlan>,
        right: Arc<PhysicalPlan>,
    ) -> Arc<PhysicalPlan> {
        if left.output_partitions() <= 1 && right.output_partitions() <= 1 {
            right
        } else {
            Arc::new(PhysicalPlan::Exchange {
                input: right,
                kind: ExchangeKind::Broadcast,
            })
        }
    }

    /// Whether to broadcast `join`'s build side of `right` estimated bytes: always below the
    /// threshold; above it, while the threshold allows broadcasts at all, when shipping the
    /// build side to every probe partition moves fewer bytes than shuffling the probe side
    /// (`n × right ≤ left`), up to [`RELATIVE_BROADCAST_CAP`] × the threshold. Without the
    /// relative rule a fixed threshold makes plans change with the data size: at TPC-H SF 10
    /// the filtered orders ⋈ customer side of Q8 (about 1 M rows) no longer fits 10 MiB, and
    /// the join shuffled all 60 M lineitem rows (3.1 GiB) instead of broadcasting 10 MiB.
    /// Not against a reduced probe side when dynamic filters are on: shuffled, the build side
    /// is filtered by the probe side's keys before its shuffle, which beats shipping it whole.
    fn broadcast_pays(&mut self, join: &logical::Join, right: usize) -> bool {
        let threshold = self.config.broadcast_threshold_bytes;
        if right <= threshold {
            return true;
        }
        if self.config.dynamic_filters && self.is_reduced(join) {
            return false;
        }
        let left = estimated_bytes(&join.left, &mut self.estimates);
        threshold > 0
            && right <= threshold.saturating_mul(RELATIVE_BROADCAST_CAP)
            && right <= self.config.relative_broadcast_max_bytes
            && left.is_some_and(|left| right.saturating_mul(self.partitions()) <= left)
    }

    /// Whether the join's left (probe) side is estimated at most [`REDUCED_FRACTION`] of the
    /// domain of its first key — filtered or semi-joined down, the case where a dynamic
    /// filter from it shrinks the build side's shuffle.
    fn is_reduced(&mut self, join: &logical::Join) -> bool {
        let Some(Expr::Column(key)) = join.on.first().map(|(l, _)| l.unalias()) else {
            return false;
        };
        let Ok(index) = join.left.schema().index_of_column(key) else {
            return false;
        };
        let rows = self.stats.estimate(&join.left).rows;
        let domain = column_origin_rows(&join.left, index, &mut self.stats);
        rows.zip(domain)
            .is_some_and(|(rows, domain)| rows as f64 <= domain as f64 * REDUCED_FRACTION)
    }

    /// Whether a left outer join is better run with its preserved (left) side as the hash
    /// table: the other side is estimated more than [`OUTER_BUILD_RATIO`] times larger, so
    /// building on it (broadcast to every executor, or shuffled) costs more than shuffling
    /// both sides and building on the small one. TPC-H Q13's `customer LEFT JOIN orders`:
    /// 150 thousand customers against 1.5 million orders, ten per customer, whose chains
    /// in a broadcast orders table made every probe a run of cache misses.
    fn builds_on_preserved_side(&mut self, join: &logical::Join) -> bool {
        if join.join_type != JoinType::Left || join.on.is_empty() || join.null_aware {
            return false;
        }
        let left = estimated_bytes(&join.left, &mut self.estimates);
        let right = estimated_bytes(&join.right, &mut self.estimates);
        left.zip(right).is_some_and(|(left, right)| {
            right > self.config.broadcast_threshold_bytes / OUTER_BUILD_MIN_FRACTION
                && right / OUTER_BUILD_RATIO > left
        })
    }

    /// Plans a left outer join as the right outer join with the inputs swapped — the hash
    /// join builds on its right input and emits the build rows nothing matched — under a
    /// projection that restores the left join's column order. Right joins never broadcast,
    /// so both sides are shuffled on the keys.
    fn plan_as_right_join(&mut self, join: &logical::Join) -> Result<Arc<PhysicalPlan>> {
        let swapped = logical::Join::try_new(
            Arc::clone(&join.right),
            Arc::clone(&join.left),
            join.on
                .iter()
                .map(|(l, r)| (r.clone(), l.clone()))
                .collect(),
            join.filter.clone(),
            JoinType::Right,
            false,
        )?;
        Ok(Arc::new(PhysicalPlan::Projection {
            input: self.plan_join(&swapped)?,
            exprs: join.schema.column_exprs(),
            schema: join.schema.clone(),
        }))
    }

    fn plan_aggregate(&mut self, agg: &logical::Aggregate) -> Result<Arc<PhysicalPlan>> {
        let input = self.plan(&agg.input)?;
        let n = self.partitions();
        let single = |input: Arc<PhysicalPlan>| PhysicalPlan::HashAggregate {
            input,
            mode: AggregateMode::Single,
            group_exprs: agg.group_exprs.clone(),
            aggr_exprs: agg.aggr_exprs.clone(),
            aggr_input_schema: agg.input.schema().clone(),
            schema: agg.schema.clone(),
        };
        if input.output_partitions() <= 1 || groups_are_colocated(&input, &agg.group_exprs) {
            return Ok(Arc::new(single(input)));
        }
        let has_distinct = agg
            .aggr_exprs
            .iter()
            .any(|e| matches!(e.unalias(), Expr::AggregateFunction { distinct: true, .. }));
        if has_distinct {
            // All rows of a group must meet in one partition before distinct counting.
            let kind = if agg.group_exprs.is_empty() {
                ExchangeKind::Single
            } else {
                ExchangeKind::Hash(agg.group_exprs.clone(), n)
            };
            let exchanged = Arc::new(PhysicalPlan::Exchange { input, kind });
            return Ok(Arc::new(single(exchanged)));
        }
        let partial_schema = Arc::new(partial_aggregate_schema(agg)?);
        let partial = Arc::new(PhysicalPlan::HashAggregate {
            input,
            mode: AggregateMode::Partial,
            group_exprs: agg.group_exprs.clone(),
            aggr_exprs: agg.aggr_exprs.clone(),
            aggr_input_schema: agg.input.schema().clone(),
            schema: partial_schema.clone(),
        });
        let kind = if agg.group_exprs.is_empty() {
            ExchangeKind::Single
        } else {
            let keys = partial_schema.fields()[..agg.group_exprs.len()]
                .iter()
                .map(|f| Expr::Column(f.column()))
                .collect();
            ExchangeKind::Hash(keys, n)
        };
        Ok(Arc::new(PhysicalPlan::HashAggregate {
            input: Arc::new(PhysicalPlan::Exchange {
                input: partial,
                kind,
            }),
            mode: AggregateMode::Final,
            group_exprs: agg.group_exprs.clone(),
            aggr_exprs: agg.aggr_exprs.clone(),
            aggr_input_schema: agg.input.schema().clone(),
            schema: agg.schema.clone(),
        }))
    }

    fn plan_join(&mut self, join: &logical::Join) -> Result<Arc<PhysicalPlan>> {
        if self.builds_on_preserved_side(join) {
            return self.plan_as_right_join(join);
        }
        let left = self.plan(&join.left)?;
        let right = self.plan(&join.right)?;
        if join.on.is_empty() {
            if !matches!(
                join.join_type,
                JoinType::Inner | JoinType::Left | JoinType::LeftSemi | JoinType::LeftAnti
            ) {
                return Err(EmberError::NotImplemented(format!(
                    "{} join without equality keys",
                    join.join_type
                )));
            }
            return Ok(Arc::new(PhysicalPlan::NestedLoopJoin {
                right: self.broadcast_for(&left, right),
                left,
                filter: join.filter.clone(),
                join_type: join.join_type,
                schema: join.schema.clone(),
            }));
        }
        let broadcastable = matches!(
            join.join_type,
            JoinType::Inner | JoinType::Left | JoinType::LeftSemi | JoinType::LeftAnti
        );
        let small_right = estimated_bytes(&join.right, &mut self.estimates)
            .is_some_and(|right| self.broadcast_pays(join, right));
        let both_single = left.output_partitions() <= 1 && right.output_partitions() <= 1;
        let (left, right, mode) = if broadcastable && (small_right || both_single) {
            let right = self.broadcast_for(&left, right);
            (left, right, JoinMode::Broadcast)
        } else {
            let (left_keys, right_keys) = hash_keys(join)?;
            let n = self.partitions();
            // A side already hash-partitioned on exactly these keys into `n` partitions
            // (the output of an earlier partitioned join on the same key) is not shuffled
            // again: both shuffles use the same hash, so partition p holds the same keys.
            let shuffled = |input: Arc<PhysicalPlan>, keys: Vec<Expr>| {
                if hash_partitionings(&input)
                    .iter()
                    .any(|(k, m)| *m == n && *k == keys)
                {
                    input
                } else {
                    Arc::new(PhysicalPlan::Exchange {
                        input,
                        kind: ExchangeKind::Hash(keys, n),
                    })
                }
            };
            let left = shuffled(left, left_keys);
            let right = shuffled(right, right_keys);
            (left, right, JoinMode::Partitioned)
        };
        Ok(Arc::new(PhysicalPlan::HashJoin {
            left,
            right,
            on: join.on.clone(),
            filter: join.filter.clone(),
            join_type: join.join_type,
            null_aware: join.null_aware,
            mode,
            schema: join.schema.clone(),
        }))
    }
}

/// A hash partitioning of a plan's output: key expressions over its output schema and the
/// partition count. Rows with equal keys sit in the same partition.
type HashPartitioning = (Vec<Expr>, usize);

/// Every hash partitioning known to hold for `plan`'s output: an Exchange Hash, carried up
/// through the operators that keep rows in their partitions and the key columns (filters,
/// projections that pass the key columns through, joins). A partitioned inner join holds both
/// sides' partitionings at once: each output row is in the partition of its left row and of
/// its right row. Several can hold, so a consumer asks whether any of them fits (Spark's
/// `EnsureRequirements` reasons the same way).
///
/// An aggregate's output is deliberately not followed: the shuffle a join puts above it is
/// what that join's dynamic filter reads — in TPC-H Q18 the few order keys left by
/// `HAVING sum(l_quantity) > 300`, which filter both big scans. Joining on the aggregate's
/// output where it is would leave the filter only the unfiltered keys below the aggregate.
#[recursive::recursive]
fn hash_partitionings(plan: &PhysicalPlan) -> Vec<HashPartitioning> {
    match plan {
        PhysicalPlan::Exchange {
            kind: ExchangeKind::Hash(keys, n),
            ..
        } => vec![(keys.clone(), *n)],
        PhysicalPlan::Filter { input, .. } | PhysicalPlan::DynamicFilter { input, .. } => {
            hash_partitionings(input)
        }
        PhysicalPlan::Projection {
            input,
            exprs,
            schema,
        } => renamed(hash_partitionings(input), |key| {
            // Each key must be a column the projection passes through; it is then known
            // by the projection's output name for it.
            let position = exprs.iter().position(|e| e.unalias() == key)?;
            Some(Expr::Column(schema.fields().get(position)?.column()))
        }),
        PhysicalPlan::HashJoin {
            left,
            right,
            join_type,
            mode,
            ..
        } => {
            // Probe rows stay in their partitions; the build side's partitioning holds only
            // when it was not broadcast and its columns are never NULL-extended.
            let keeps_left = matches!(
                join_type,
                JoinType::Inner | JoinType::Left | JoinType::LeftSemi | JoinType::LeftAnti
            );
            let keeps_right = *mode == JoinMode::Partitioned
                && matches!(join_type, JoinType::Inner | JoinType::Right);
            let mut found = if keeps_left {
                hash_partitionings(left)
            } else {
                Vec::new()
            };
            if keeps_right {
                found.extend(hash_partitionings(right));
            }
            found
        }
        _ => Vec::new(),
    }
}

/// Whether all rows of every group of `group_exprs` already sit in one partition of
/// `input`: it is hash-partitioned on keys that are all among the group expressions (rows
/// equal on every group expression are equal on those keys). The aggregate then runs in one
/// phase where the rows are, without a shuffle — e.g. TPC-H Q10 groups by `c_custkey` (and
/// columns depending on it) right after a join partitioned on `o_custkey = c_custkey`.
fn groups_are_colocated(input: &PhysicalPlan, group_exprs: &[Expr]) -> bool {
    hash_partitionings(input).iter().any(|(keys, _)| {
        !keys.is_empty()
            && keys
                .iter()
                .all(|key| group_exprs.iter().any(|g| g.unalias() == key))
    })
}

/// The partitionings whose every key `rename` maps to an output expression.
fn renamed(
    partitionings: Vec<HashPartitioning>,
    rename: impl Fn(&Expr) -> Option<Expr>,
) -> Vec<HashPartitioning> {
    partitionings
        .into_iter()
        .filter_map(|(keys, n)| Some((keys.iter().map(&rename).collect::<Option<_>>()?, n)))
        .collect()
}

/// Shuffle keys for both sides of a join, cast to a common type per key pair: rows that are
/// equal must hash equally even when one side is Int32 and the other Int64.
fn hash_keys(join: &logical::Join) -> Result<(Vec<Expr>, Vec<Expr>)> {
    let (ls, rs) = (join.left.schema(), join.right.schema());
    let mut left_keys = Vec::with_capacity(join.on.len());
    let mut right_keys = Vec::with_capacity(join.on.len());
    for (l, r) in &join.on {
        let (lt, rt) = (l.data_type(ls)?, r.data_type(rs)?);
        let common = types::common_type(&lt, &rt).ok_or_else(|| {
            EmberError::Plan(format!(
                "join keys {l} ({lt}) and {r} ({rt}) have incompatible types"
            ))
        })?;
        left_keys.push(if lt == common {
            l.clone()
        } else {
            l.clone().cast_to(common.clone())
        });
        right_keys.push(if rt == common {
            r.clone()
        } else {
            r.clone().cast_to(common)
        });
    }
    Ok((left_keys, right_keys))
}

/// Group columns (as the final aggregate names them) followed by every aggregate's state
/// columns.
fn partial_aggregate_schema(agg: &logical::Aggregate) -> Result<PlanSchema> {
    let mut fields: Vec<QualifiedField> = agg.schema.fields()[..agg.group_exprs.len()].to_vec();
    for e in &agg.aggr_exprs {
        let (func, args) = match e.unalias() {
            Expr::AggregateFunction { func, args, .. } => (*func, args),
            other => {
                return Err(EmberError::Internal(format!(
                    "aggregate expression expected, got {other}"
                )))
            }
        };
        let arg_type = match (func, args.first()) {
            (AggregateFunction::Count, _) | (_, None) => arrow::datatypes::DataType::Int64,
            (_, Some(a)) => a.data_type(agg.input.schema())?,
        };
        for f in aggregate_state_fields(func, &arg_type, &e.output_name())? {
            fields.push(QualifiedField::new(None, Arc::new(f) as Arc<Field>));
        }
    }
    Ok(PlanSchema::new(fields))
}

/// A rough size estimate of a logical plan's output, for broadcast decisions.
///
/// Iterative (an explicit post-order stack) and memoised by node identity in `memo`: the
/// planner asks once per join, and an iterative DataFrame loop puts its whole lineage under
/// each join's side — a union of the previous result with itself doubles the tree at every
/// iteration — so a plain recursive walk is quadratic on chains, exponential on shared DAGs
/// and overflows the stack at a few thousand nodes.
fn estimated_bytes(
    plan: &Arc<LogicalPlan>,
    memo: &mut HashMap<*const LogicalPlan, Option<usize>>,
) -> Option<usize> {
    let mut stack: Vec<(&Arc<LogicalPlan>, bool)> = vec![(plan, false)];
    while let Some((node, inputs_done)) = stack.pop() {
        let key = Arc::as_ptr(node);
        if memo.contains_key(&key) {
            continue;
        }
        let inputs = node.inputs();
        if !inputs_done {
            stack.push((node, true));
            stack.extend(
                inputs
                    .into_iter()
                    .filter(|i| !memo.contains_key(&Arc::as_ptr(i)))
                    .map(|i| (i, false)),
            );
            continue;
        }
        let input_bytes: Vec<Option<usize>> = inputs
            .iter()
            .map(|i| memo.get(&Arc::as_ptr(i)).copied().flatten())
            .collect();
        memo.insert(key, node_bytes(node, &input_bytes));
    }
    memo.get(&Arc::as_ptr(plan)).copied().flatten()
}

/// One node's estimate from its inputs' estimates (in `inputs()` order).
fn node_bytes(plan: &LogicalPlan, inputs: &[Option<usize>]) -> Option<usize> {
    let input = |i: usize| inputs.get(i).copied().flatten();
    Some(match plan {
        LogicalPlan::TableScan(s) => {
            let bytes = s.source.statistics().total_bytes?;
            let total_cols = s.source.schema().fields().len().max(1);
            let cols = s.projection.as_ref().map_or(total_cols, |p| p.len());
            let projected = bytes * cols / total_cols;
            if s.filters.is_empty() {
                projected
            } else {
                projected / 2
            }
        }
        LogicalPlan::Filter(_) => input(0)? / 2,
        LogicalPlan::Values(v) => v.rows.len() * 64,
        LogicalPlan::EmptyRelation(_) => 0,
        LogicalPlan::Join(_) => input(0)?.max(input(1)?),
        LogicalPlan::CrossJoin(_) => input(0)?.saturating_mul(input(1)?.max(1)),
        // Saturating: a loop unioning its previous result with itself doubles the estimate
        // at every iteration.
        LogicalPlan::Union(_) => inputs
            .iter()
            .try_fold(0usize, |total, b| Some(total.saturating_add((*b)?)))?,
        _ => inputs.iter().copied().max().flatten()?,
    })
}

#[cfg(test)]
mod tests {
    use std::any::Any;

    use arrow::datatypes::{DataType, Schema, SchemaRef};

    use super::*;
    use crate::expr::{col, lit, sum};
    use crate::logical::{Aggregate, Filter, Join, Sort, TableScan};
    use crate::stages::{build_stage_graph, StageOutput};
    use crate::table::{BatchIter, ScanPartition, Statistics, TableSource};

    /// A table with a fixed number of (empty) partitions and a declared size.
    #[derive(Debug)]
    struct TestTable {
        schema: SchemaRef,
        partitions: usize,
        bytes: usize,
    }

    #[derive(Debug)]
    struct EmptyPartition;

    impl ScanPartition for EmptyPartition {
        fn execute(&self) -> Result<BatchIter> {
            Ok(Box::new(std::iter::empty()))
        }
        fn describe(&self) -> String {
            "empty".into()
        }
    }

    impl TableSource for TestTable {
        fn schema(&self) -> SchemaRef {
            self.schema.clone()
        }
        fn statistics(&self) -> Statistics {
            Statistics {
                // Two 8-byte columns.
                num_rows: Some(self.bytes / 16),
                total_bytes: Some(self.bytes),
            }
        }
        fn scan(&self, _: &ScanRequest) -> Result<Vec<Arc<dyn crate::table::ScanPartition>>> {
            Ok((0..self.partitions)
                .map(|_| Arc::new(EmptyPartition) as Arc<dyn ScanPartition>)
                .collect())
        }
        fn identity(&self) -> String {
            "test".into()
        }
        fn kind(&self) -> &str {
            "test"
        }
        fn as_any(&self) -> &dyn Any {
            self
        }
    }

    fn scan(name: &str, partitions: usize, bytes: usize) -> Arc<LogicalPlan> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("v", DataType::Int64, true),
        ]));
        let source = Arc::new(TestTable {
            schema,
            partitions,
            bytes,
        });
        Arc::new(LogicalPlan::TableScan(
            TableScan::try_new(name, source, None, vec![]).unwrap(),
        ))
    }

    fn config() -> PhysicalPlannerConfig {
        PhysicalPlannerConfig {
            target_partitions: 3,
            broadcast_threshold_bytes: 1000,
            relative_broadcast_max_bytes: usize::MAX,
            dynamic_filters: true,
        }
    }

    /// `left ⋈ right` on the one key pair `on` (qualified column names).
    fn key_join(
        left: Arc<LogicalPlan>,
        right: Arc<LogicalPlan>,
        on: (&str, &str),
        join_type: JoinType,
    ) -> Arc<LogicalPlan> {
        let join = Join::try_new(
            left,
            right,
            vec![(col(on.0), col(on.1))],
            None,
            join_type,
            false,
        )
        .unwrap();
        Arc::new(LogicalPlan::Join(join))
    }

    #[test]
    fn aggregate_is_split_into_partial_exchange_final() {
        let agg = Arc::new(LogicalPlan::Aggregate(
            Aggregate::try_new(scan("t", 4, 10), vec![col("k")], vec![sum(col("v"))]).unwrap(),
        ));
        let physical = create_physical_plan(&agg, &config()).unwrap();
        let text = physical.display_indent();
        assert_eq!(
            text,
            "HashAggregateExec(Final): groupBy=[k], aggr=[sum(v)]\n\
             \x20 Exchange: Hash([t.k], 3)\n\
             \x20   HashAggregateExec(Partial): groupBy=[k], aggr=[sum(v)]\n\
             \x20     ScanExec: t (test) partitions=4 projection=[k, v]\n"
        );
        // The partial output carries the key, then SUM's state.
        let partial = &physical.inputs()[0].inputs()[0];
        let names: Vec<&str> = partial.schema().fields().iter().map(|f| f.name()).collect();
        assert_eq!(names, ["k", "sum(v)[sum]"]);
        assert_eq!(physical.output_partitions(), 3);
    }

    #[test]
    fn join_on_an_already_partitioned_key_shuffles_only_the_other_side() {
        let big = |name| scan(name, 2, 1_000_000);
        let ab = key_join(big("a"), big("b"), ("a.k", "b.k"), JoinType::Inner);
        let same_key = key_join(ab.clone(), big("c"), ("a.k", "c.k"), JoinType::LeftSemi);
        let plan = create_physical_plan(&same_key, &config())
            .unwrap()
            .display_indent();
        assert_eq!(
            plan.matches("Exchange: Hash([a.k], 3)").count(),
            1,
            "{plan}"
        );
        assert!(plan.contains("Exchange: Hash([c.k], 3)"), "{plan}");

        // A different key (or a join whose right rows are kept) must still shuffle.
        let other_key = key_join(ab, big("c"), ("a.v", "c.k"), JoinType::Inner);
        let plan = create_physical_plan(&other_key, &config())
            .unwrap()
            .display_indent();
        assert!(plan.contains("Exchange: Hash([a.v], 3)"), "{plan}");
    }

    #[test]
    fn aggregate_over_rows_partitioned_on_its_group_keys_runs_in_one_phase() {
        let big = |name| scan(name, 2, 1_000_000);
        let grouped = |join_type, groups: Vec<Expr>| {
            let join = key_join(big("a"), big("b"), ("a.k", "b.k"), join_type);
            let agg = Aggregate::try_new(join, groups, vec![sum(col("a.v"))]).unwrap();
            create_physical_plan(&Arc::new(LogicalPlan::Aggregate(agg)), &config())
                .unwrap()
                .display_indent()
        };
        // An inner join partitioned on a.k = b.k leaves rows partitioned on both keys, so
        // grouping by either (alone or with other columns) needs no shuffle.
        for groups in [
            vec![col("a.k")],
            vec![col("b.k")],
            vec![col("b.v"), col("b.k")],
        ] {
            let plan = grouped(JoinType::Inner, groups);
            assert!(plan.starts_with("HashAggregateExec(Single)"), "{plan}");
            assert_eq!(plan.matches("Exchange").count(), 2, "{plan}");
        }
        // Grouping by a column the rows are not partitioned on still shuffles.
        let plan = grouped(JoinType::Inner, vec![col("a.v")]);
        assert!(plan.starts_with("HashAggregateExec(Final)"), "{plan}");
        assert!(plan.contains("Exchange: Hash([a.v], 3)"), "{plan}");
        // A left join NULL-extends b.k in every partition: grouping by it must shuffle,
        // grouping by the preserved side's key need not.
        let plan = grouped(JoinType::Left, vec![col("b.k")]);
        assert!(plan.starts_with("HashAggregateExec(Final)"), "{plan}");
        let plan = grouped(JoinType::Left, vec![col("a.k")]);
        assert!(plan.starts_with("HashAggregateExec(Single)"), "{plan}");
    }

    #[test]
    fn left_join_against_a_much_larger_side_builds_on_the_preserved_side() {
        let left_join = |left_bytes, right_bytes| {
            let (s, b) = (scan("s", 2, left_bytes), scan("b", 2, right_bytes));
            let join = key_join(s, b, ("s.k", "b.k"), JoinType::Left);
            let mut config = config();
            config.broadcast_threshold_bytes = 10_000_000;
            let physical = create_physical_plan(&join, &config).unwrap();
            (physical.schema().clone(), physical.display_indent())
        };
        // Q13's shape: the preserved side is small, the other side large (but below the
        // broadcast threshold): a right join partitioned on the keys, building on `s`.
        let (schema, plan) = left_join(1_000_000, 5_000_000);
        assert!(
            plan.contains("HashJoinExec(Partitioned, Right): on=[b.k = s.k]"),
            "{plan}"
        );
        assert!(
            plan.starts_with("ProjectionExec: s.k, s.v, b.k, b.v"),
            "{plan}"
        );
        let names: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| f.column().to_string())
            .collect();
        assert_eq!(names, ["s.k", "s.v", "b.k", "b.v"]);
        // Comparable sizes, or a small dimension table, stay a broadcast left join.
        for (left, right) in [(1_000_000, 1_500_000), (10_000, 100_000)] {
            let (_, plan) = left_join(left, right);
            assert!(plan.contains("HashJoinExec(Broadcast, Left)"), "{plan}");
        }
    }

    #[test]
    fn a_join_on_an_aggregates_keys_still_shuffles_it_for_the_dynamic_filter() {
        // TPC-H Q18's shape: orders semi-joined with lineitem's order keys kept by a HAVING
        // filter. The aggregate's output is partitioned on l.k already, but the shuffle
        // above the filter is what the dynamic filter on orders reads: the few kept keys.
        let grouped = Arc::new(LogicalPlan::Aggregate(
            Aggregate::try_new(
                scan("l", 2, 1_000_000),
                vec![col("l.k")],
                vec![sum(col("l.v"))],
            )
            .unwrap(),
        ));
        let having = Arc::new(LogicalPlan::Filter(Filter {
            input: grouped,
            predicate: col("sum(l.v)").gt(lit(300i64)),
        }));
        let join = key_join(
            scan("o", 2, 1_000_000),
            having,
            ("o.k", "l.k"),
            JoinType::LeftSemi,
        );
        let mut config = config();
        config.broadcast_threshold_bytes = 0;
        let plan = create_physical_plan(&join, &config)
            .unwrap()
            .display_indent();
        let lines: Vec<&str> = plan.lines().map(str::trim).collect();
        let filtered_keys_shuffled = lines
            .windows(2)
            .any(|w| w[0] == "Exchange: Hash([l.k], 3)" && w[1].starts_with("FilterExec"));
        assert!(filtered_keys_shuffled, "{plan}");
        assert!(plan.contains("DynamicFilterExec: [o.k] in [l.k]"), "{plan}");
    }

    #[test]
    fn small_build_side_is_broadcast_large_is_shuffled() {
        let join = |right_bytes| {
            let (a, b) = (scan("a", 2, 1_000_000), scan("b", 2, right_bytes));
            let j = key_join(a, b, ("a.k", "b.k"), JoinType::Inner);
            create_physical_plan(&j, &config()).unwrap()
        };
        let small = join(100).display_indent();
        assert!(
            small.starts_with("HashJoinExec(Broadcast, Inner)"),
            "{small}"
        );
        assert!(small.contains("Exchange: Broadcast"), "{small}");
        let large = join(1_000_000).display_indent();
        assert!(
            large.starts_with("HashJoinExec(Partitioned, Inner)"),
            "{large}"
        );
        assert!(large.contains("Exchange: Hash([a.k], 3)"), "{large}");
        assert!(large.contains("Exchange: Hash([b.k], 3)"), "{large}");
    }

    /// `left ⋈ right` on `k`, planned with `config`.
    fn plan_key_join(
        left: Arc<LogicalPlan>,
        right: Arc<LogicalPlan>,
        config: &PhysicalPlannerConfig,
    ) -> Arc<PhysicalPlan> {
        let j = key_join(left, right, ("a.k", "b.k"), JoinType::Inner);
        create_physical_plan(&j, config).unwrap()
    }

    fn join_mode(plan: &PhysicalPlan) -> JoinMode {
        match plan {
            PhysicalPlan::HashJoin { mode, .. } => *mode,
            other => panic!("expected a hash join, got {}", other.display_indent()),
        }
    }

    #[test]
    fn a_reduced_probe_side_keeps_a_build_side_above_the_threshold_shuffled_and_filtered() {
        let plan_with = |dynamic_filters: bool| {
            let filtered = Arc::new(LogicalPlan::Filter(Filter {
                input: scan("a", 2, 1_000_000),
                predicate: col("a.v").eq(lit(5i64)),
            }));
            let config = PhysicalPlannerConfig {
                dynamic_filters,
                ..config()
            };
            plan_key_join(filtered, scan("b", 2, 12_000), &config)
        };
        let mode = join_mode;
        // Without dynamic filters the relative rule broadcasts b (3 × 12 kB ≤ 100 kB of a).
        assert_eq!(mode(&plan_with(false)), JoinMode::Broadcast);
        // With them, b is shuffled — and filtered by a's keys before its shuffle.
        let plan = plan_with(true);
        assert_eq!(mode(&plan), JoinMode::Partitioned);
        let text = plan.display_indent();
        assert!(text.contains("DynamicFilterExec: [b.k] in [a.k]"), "{text}");
    }

    #[test]
    fn build_side_above_the_threshold_is_broadcast_only_against_a_much_larger_probe_side() {
        let mode = |left_bytes, right_bytes, threshold| {
            let config = PhysicalPlannerConfig {
                broadcast_threshold_bytes: threshold,
                ..config()
            };
            join_mode(&plan_key_join(
                scan("a", 2, left_bytes),
                scan("b", 2, right_bytes),
                &config,
            ))
        };
        // 5 × the threshold, against a probe side 200 × larger: 3 partitions × 5000 ≤ 1 M.
        assert_eq!(mode(1_000_000, 5_000, 1000), JoinMode::Broadcast);
        // The same build side against a probe side only 2 × larger: shuffling is cheaper.
        assert_eq!(mode(10_000, 5_000, 1000), JoinMode::Partitioned);
        // Beyond RELATIVE_BROADCAST_CAP × the threshold, never.
        assert_eq!(mode(1_000_000_000, 20_000, 1000), JoinMode::Partitioned);
        // A disabled threshold disables the relative rule too.
        assert_eq!(mode(1_000_000_000, 1, 0), JoinMode::Partitioned);
        // And so does an executor memory too small to hold the build side.
        let config = PhysicalPlannerConfig {
            relative_broadcast_max_bytes: 4_000,
            ..config()
        };
        let plan = plan_key_join(scan("a", 2, 1_000_000), scan("b", 2, 5_000), &config);
        assert_eq!(join_mode(&plan), JoinMode::Partitioned);
    }

    #[test]
    fn global_sort_gathers_into_one_partition() {
        let sort = Arc::new(LogicalPlan::Sort(Sort {
            input: scan("t", 4, 10),
            exprs: vec![col("v").sort(false, true)],
            fetch: Some(5),
        }));
        let physical = create_physical_plan(&sort, &config()).unwrap();
        assert_eq!(physical.output_partitions(), 1);
        assert!(physical
            .display_indent()
            .contains("  Exchange: Single\n    SortExec(TopK 5)"));
    }

    #[test]
    fn full_sort_runs_in_parallel_through_a_range_exchange() {
        let sort = Arc::new(LogicalPlan::Sort(Sort {
            input: scan("t", 4, 10),
            exprs: vec![col("v").sort(false, true), col("k").sort(true, false)],
            fetch: None,
        }));
        let physical = create_physical_plan(&sort, &config()).unwrap();
        assert_eq!(physical.output_partitions(), 3);
        let text = physical.display_indent();
        assert!(
            text.starts_with(
                "Exchange: Range([v DESC NULLS FIRST, k ASC NULLS LAST], 3)\n  \
                 SortExec: v DESC NULLS FIRST, k ASC NULLS LAST\n    ScanExec: t"
            ),
            "{text}"
        );
        let graph = build_stage_graph(&physical).unwrap();
        assert_eq!(graph.stages.len(), 2);
        assert!(matches!(
            &graph.stages[0].output,
            StageOutput::Shuffle(ExchangeKind::Range { partitions: 3, .. })
        ));
        assert_eq!(graph.result_stage().partitions, 3);
    }

    #[test]
    fn stage_graph_cuts_at_exchanges_and_shares_reused_subplans() {
        // The same filtered scan feeds both sides of a self-join: one map stage per side's
        // exchange, but the shared logical node is planned once.
        let filtered = Arc::new(LogicalPlan::Filter(Filter {
            input: scan("t", 2, 1_000_000),
            predicate: col("v").gt(lit(1i64)),
        }));
        let agg = Arc::new(LogicalPlan::Aggregate(
            Aggregate::try_new(filtered.clone(), vec![col("k")], vec![sum(col("v"))]).unwrap(),
        ));
        let physical = create_physical_plan(&agg, &config()).unwrap();
        let graph = build_stage_graph(&physical).unwrap();
        assert_eq!(graph.stages.len(), 2);
        assert_eq!(graph.stages[0].partitions, 2);
        assert!(matches!(
            graph.stages[0].output,
            StageOutput::Shuffle(ExchangeKind::Hash(_, 3))
        ));
        assert_eq!(graph.result_stage().parents, vec![0]);
        assert_eq!(graph.result_stage().partitions, 3);
        let text = graph.to_string();
        assert!(
            text.contains("Stage 1 [3 tasks, output: result, parents: 0]"),
            "{text}"
        );
        assert!(text.contains("ShuffleRead: stage=0"), "{text}");
    }

    /// A union of the previous plan with itself, 3,000 times: a DAG of 3,001 nodes whose
    /// tree would have 2^3000 leaves. The size estimate visits each node once, saturates
    /// instead of overflowing, and runs on a 2 MiB test thread without recursion.
    #[test]
    fn size_estimates_are_memoised_iterative_and_saturating_on_deep_shared_dags() {
        let mut plan = scan("t", 1, 10);
        for _ in 0..3000 {
            plan = Arc::new(LogicalPlan::Union(
                crate::logical::Union::try_new(vec![plan.clone(), plan]).unwrap(),
            ));
        }
        let mut memo = HashMap::new();
        assert_eq!(estimated_bytes(&plan, &mut memo), Some(usize::MAX));
        assert_eq!(memo.len(), 3001);
        // Planning the whole chain (recursive, stack grown on demand) also finishes.
        let physical = create_physical_plan(&plan, &config()).unwrap();
        assert_eq!(physical.inputs().len(), 2);
    }
}
