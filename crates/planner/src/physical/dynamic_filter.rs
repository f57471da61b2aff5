//! Dynamic join filters (semi-join reduction; DuckDB's join filter pushdown, Spark's runtime
//! filters): when one side of a partitioned join is known to be reduced — filtered, or the
//! survivors of a HAVING — its keys are read at run time and filter the *other* side before
//! that side is shuffled. TPC-H Q4 is the model: 57k orders of one quarter against 3.8M late
//! lineitems; without the filter all 3.8M lineitems are hashed, written, read and probed to
//! find the ~150k that belong to those orders.
//!
//! The filter is a [`PhysicalPlan::DynamicFilter`] placed as low as it can go in the target
//! side — through projections, filters, shuffles, aggregates grouped by the key and inner
//! joins (into both of their sides, by key equivalence) — so it runs in the map stage, before
//! the rows are encoded as shuffle blocks. Its `source` is the join's other side's Exchange
//! (the same node the join reads, so the same stage), which makes the target's stage a child
//! of the source's stage: the source is computed first, like a broadcast.
//!
//! A broadcast join's small side filters the big side too, but only where the filter lands
//! on the big side's table scan (there is no shuffle to save): the scan then decodes its other
//! columns only for rows whose keys the small side has (late materialisation). TPC-H Q17's
//! `lineitem` scan keeps 6,088 of 6 M rows by the 204 parts of one brand and container.
//!
//! It is an optimisation only: the join above still matches keys, so the filter may keep
//! rows it could drop (the operator turns itself off when it drops too little), but it must
//! never drop a row the join could match. That is why it only goes where the join type
//! allows, never into a subplan shared with another consumer, never below a top-k or limit.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::error::Result;
use crate::expr::Expr;
use crate::logical::JoinType;
use crate::optimizer::stats::{selectivity, GROUPS_PER_ROW, SEMI_SELECTIVITY};
use crate::physical::{AggregateMode, ExchangeKind, JoinMode, PhysicalPlan};
use crate::schema::PlanSchema;

/// A source side counts as reduced when its estimated rows are at most this fraction of its
/// key's domain (the rows of the table the key comes from). An unfiltered dimension table
/// (all orders against lineitem) would filter nothing and only cost a hash set.
pub(crate) const REDUCED_FRACTION: f64 = 0.6;

/// Source sides estimated larger than this are not worth a per-executor key set.
const MAX_SOURCE_ROWS: f64 = 20_000_000.0;

/// `plan` with dynamic filters below the partitioned joins whose one side is reduced.
pub fn add_dynamic_filters(plan: &Arc<PhysicalPlan>) -> Result<Arc<PhysicalPlan>> {
    let mut rewriter = Rewriter {
        parents: count_parents(plan),
        done: HashMap::new(),
        shared: HashSet::new(),
        estimates: HashMap::new(),
        domains: HashMap::new(),
    };
    rewriter.rewrite(plan)
}

/// How many parents each node has (shared subplans have more than one).
fn count_parents(plan: &Arc<PhysicalPlan>) -> HashMap<*const PhysicalPlan, usize> {
    let mut parents: HashMap<*const PhysicalPlan, usize> = HashMap::new();
    let mut visited: HashSet<*const PhysicalPlan> = HashSet::new();
    let mut stack = vec![Arc::clone(plan)];
    while let Some(node) = stack.pop() {
        if !visited.insert(Arc::as_ptr(&node)) {
            continue;
        }
        for input in node.inputs() {
            *parents.entry(Arc::as_ptr(input)).or_default() += 1;
            stack.push(Arc::clone(input));
        }
    }
    parents
}

/// The join side whose keys filter the other side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// The left side's keys filter the right side.
    LeftFiltersRight,
    RightFiltersLeft,
}

/// A single-input node a filter passes: its input, the keys over the input's schema (`None`
/// when a key is computed by the node) and whether a shuffle lies above the input.
type PassThrough<'a> = (&'a Arc<PhysicalPlan>, Option<Vec<usize>>, bool);

/// The source of a filter: an Exchange and the key columns over its schema.
struct Source {
    exchange: Arc<PhysicalPlan>,
    keys: Vec<Expr>,
}

/// A memoised figure, with the node it is about kept alive so its identity stays unique.
type Memo = (Arc<PhysicalPlan>, Option<f64>);

struct Rewriter {
    parents: HashMap<*const PhysicalPlan, usize>,
    /// Rewritten nodes by original identity: shared subplans stay shared.
    done: HashMap<*const PhysicalPlan, Arc<PhysicalPlan>>,
    /// Rewritten nodes that have several parents: filters never go into them.
    shared: HashSet<*const PhysicalPlan>,
    /// Estimated rows by node identity, with the node kept alive so the identity stays
    /// unique.
    estimates: HashMap<*const PhysicalPlan, Memo>,
    /// [`Rewriter::domain_rows`] by (node identity, column), the node kept alive likewise.
    domains: HashMap<(*const PhysicalPlan, usize), Memo>,
}

impl Rewriter {
    /// Rewrites inputs first, then places a filter for `plan` if it is a suitable join.
    /// Recursion depth is the plan's depth, so the stack grows on demand.
    #[recursive::recursive]
    fn rewrite(&mut self, plan: &Arc<PhysicalPlan>) -> Result<Arc<PhysicalPlan>> {
        let key = Arc::as_ptr(plan);
        if let Some(done) = self.done.get(&key) {
            return Ok(Arc::clone(done));
        }
        let inputs = plan.inputs();
        let rewritten = if inputs.is_empty() {
            Arc::clone(plan)
        } else {
            let new_inputs = inputs
                .iter()
                .map(|i| self.rewrite(i))
                .collect::<Result<Vec<_>>>()?;
            let unchanged = new_inputs
                .iter()
                .zip(&inputs)
                .all(|(n, o)| Arc::ptr_eq(n, o));
            let node = if unchanged {
                Arc::clone(plan)
            } else {
                Arc::new(plan.with_new_inputs(new_inputs)?)
            };
            self.with_join_filter(node)?
        };
        if self.parents.get(&key).copied().unwrap_or(0) > 1 {
            self.shared.insert(Arc::as_ptr(&rewritten));
        }
        self.done.insert(key, Arc::clone(&rewritten));
        Ok(rewritten)
    }

    /// `node` with a dynamic filter pushed into one side, when it is a partitioned hash
    /// join with a reduced side whose keys are plain columns.
    fn with_join_filter(&mut self, node: Arc<PhysicalPlan>) -> Result<Arc<PhysicalPlan>> {
        let PhysicalPlan::HashJoin {
            left,
            right,
            on,
            join_type,
            null_aware,
            mode,
            ..
        } = node.as_ref()
        else {
            return Ok(node);
        };
        let Some(direction) = self.direction(left, right, on, *join_type, *null_aware) else {
            return Ok(node);
        };
        // A broadcast join's right side is the small one every task reads whole: it filters
        // the left (into its scan, see `wrap`), never the other way round.
        if *mode == JoinMode::Broadcast && direction != Direction::RightFiltersLeft {
            return Ok(node);
        }
        let (source_side, target_side, source_exprs, target_exprs): (_, _, Vec<_>, Vec<_>) =
            match direction {
                Direction::LeftFiltersRight => (
                    left,
                    right,
                    on.iter().map(|(l, _)| l).collect(),
                    on.iter().map(|(_, r)| r).collect(),
                ),
                Direction::RightFiltersLeft => (
                    right,
                    left,
                    on.iter().map(|(_, r)| r).collect(),
                    on.iter().map(|(l, _)| l).collect(),
                ),
            };
        let (Some(source_keys), Some(target_keys)) = (
            column_indices(source_side.schema(), &source_exprs),
            column_indices(target_side.schema(), &target_exprs),
        ) else {
            return Ok(node);
        };
        let Some(source) = find_source(source_side, &source_keys) else {
            return Ok(node);
        };
        let Some(filtered) = self.push(target_side, &target_keys, &source, false) else {
            return Ok(node);
        };
        // The source now has two readers, the join and the filter: a filter pushed later
        // from further up must not rebuild it below the join only, or the filter would
        // read the old copy and its stage would run twice.
        self.shared.insert(Arc::as_ptr(&source.exchange));
        let new_inputs = match direction {
            Direction::LeftFiltersRight => vec![Arc::clone(left), filtered],
            Direction::RightFiltersLeft => vec![filtered, Arc::clone(right)],
        };
        Ok(Arc::new(node.with_new_inputs(new_inputs)?))
    }

    /// Which side filters which, if any: the join type must allow dropping the target's
    /// unmatched rows, and the source must be estimated reduced against its key's domain
    /// (the smaller of two candidate sources wins).
    fn direction(
        &mut self,
        left: &Arc<PhysicalPlan>,
        right: &Arc<PhysicalPlan>,
        on: &[(Expr, Expr)],
        join_type: JoinType,
        null_aware: bool,
    ) -> Option<Direction> {
        // Unmatched rows of the target side must never reach the output. A null-aware anti
        // join (NOT IN) looks at the right side's NULL keys, so its right side stays whole.
        let right_droppable = match join_type {
            JoinType::Inner | JoinType::LeftSemi | JoinType::Left => true,
            JoinType::LeftAnti => !null_aware,
            JoinType::Right | JoinType::Full => false,
        };
        let left_droppable = matches!(
            join_type,
            JoinType::Inner | JoinType::LeftSemi | JoinType::Right
        );
        let mut candidates = Vec::new();
        if right_droppable {
            let first_key = on.first().map(|(l, _)| l);
            if let Some(rows) = self.reduced_rows(left, first_key) {
                candidates.push((rows, Direction::LeftFiltersRight));
            }
        }
        if left_droppable {
            let first_key = on.first().map(|(_, r)| r);
            if let Some(rows) = self.reduced_rows(right, first_key) {
                candidates.push((rows, Direction::RightFiltersLeft));
            }
        }
        candidates
            .into_iter()
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, d)| d)
    }

    /// The estimated rows of `side` when it is a reduced source for `key`: at most
    /// [`REDUCED_FRACTION`] of the key's domain and at most [`MAX_SOURCE_ROWS`].
    fn reduced_rows(&mut self, side: &Arc<PhysicalPlan>, key: Option<&Expr>) -> Option<f64> {
        let index = column_indices(side.schema(), &[key?])?[0];
        let rows = self.estimate(side)?;
        let domain = self.domain_rows(side, index)?;
        (rows <= domain * REDUCED_FRACTION && rows <= MAX_SOURCE_ROWS).then_some(rows)
    }

    /// Pushes a filter on the columns `keys` of `node` as deep as it may go; `None` when it
    /// found no place below a shuffle (a filter right under the join would only repeat the
    /// join's own key lookup). `below_exchange` says whether a shuffle has been passed.
    #[recursive::recursive]
    fn push(
        &mut self,
        node: &Arc<PhysicalPlan>,
        keys: &[usize],
        source: &Source,
        below_exchange: bool,
    ) -> Option<Arc<PhysicalPlan>> {
        let here = || wrap(node, keys, source, below_exchange);
        if self.shared.contains(&Arc::as_ptr(node)) {
            return here();
        }
        let rebuilt =
            |inputs: Vec<Arc<PhysicalPlan>>| node.with_new_inputs(inputs).ok().map(Arc::new);
        let through: Option<PassThrough> = match node.as_ref() {
            // Right above a leaf the plain filter goes first: it is cheaper per row than a
            // key lookup and leaves fewer rows to look up.
            PhysicalPlan::Filter { input, .. } if input.inputs().is_empty() => None,
            PhysicalPlan::Filter { input, .. }
            | PhysicalPlan::Sort {
                input, fetch: None, ..
            } => Some((input, Some(keys.to_vec()), below_exchange)),
            PhysicalPlan::Exchange { input, .. } => Some((input, Some(keys.to_vec()), true)),
            PhysicalPlan::Projection { input, exprs, .. } => {
                let mapped = keys
                    .iter()
                    .map(|&k| column_index(input.schema(), exprs.get(k)?))
                    .collect();
                Some((input, mapped, below_exchange))
            }
            PhysicalPlan::HashAggregate {
                input,
                mode,
                group_exprs,
                ..
            } => {
                let mapped = keys
                    .iter()
                    .map(|&k| {
                        let group = group_exprs.get(k)?;
                        match mode {
                            // The input is the partial output: keys first, by position.
                            AggregateMode::Final => Some(k),
                            AggregateMode::Partial | AggregateMode::Single => {
                                column_index(input.schema(), group)
                            }
                        }
                    })
                    .collect();
                Some((input, mapped, below_exchange))
            }
            _ => None,
        };
        if let Some((input, mapped, below)) = through {
            return match mapped.and_then(|m| self.push(input, &m, source, below)) {
                Some(inner) => rebuilt(vec![inner]),
                None => here(),
            };
        }
        match node.as_ref() {
            PhysicalPlan::DynamicFilter {
                input,
                source: other,
                ..
            } => {
                let inner = self.push(input, keys, source, below_exchange)?;
                rebuilt(vec![inner, Arc::clone(other)])
            }
            PhysicalPlan::HashJoin {
                left,
                right,
                on,
                join_type,
                ..
            } => {
                let pushed =
                    self.push_into_join(left, right, on, *join_type, keys, source, below_exchange);
                match pushed {
                    Some((l, r)) => rebuilt(vec![l, r]),
                    None => here(),
                }
            }
            _ => here(),
        }
    }

    /// Pushes into the sides of a join: the side that owns the key columns when the join
    /// keeps that side's unmatched rows out or carries their keys unchanged, and for inner
    /// and semi joins also the other side through the equi-keys. `None` if neither moved.
    #[allow(clippy::too_many_arguments)]
    fn push_into_join(
        &mut self,
        left: &Arc<PhysicalPlan>,
        right: &Arc<PhysicalPlan>,
        on: &[(Expr, Expr)],
        join_type: JoinType,
        keys: &[usize],
        source: &Source,
        below_exchange: bool,
    ) -> Option<(Arc<PhysicalPlan>, Arc<PhysicalPlan>)> {
        let left_len = left.schema().len();
        let (left_keys, right_keys): (Option<Vec<usize>>, Option<Vec<usize>>) =
            if keys.iter().all(|&k| k < left_len) {
                let through = matches!(join_type, JoinType::Inner | JoinType::LeftSemi)
                    .then(|| equivalent_keys(keys, on, left.schema(), right.schema(), true))
                    .flatten();
                let own = matches!(
                    join_type,
                    JoinType::Inner | JoinType::Left | JoinType::LeftSemi | JoinType::LeftAnti
                );
                (own.then(|| keys.to_vec()), through)
            } else if keys.iter().all(|&k| k >= left_len) {
                let own: Vec<usize> = keys.iter().map(|&k| k - left_len).collect();
                let through = (join_type == JoinType::Inner)
                    .then(|| equivalent_keys(&own, on, left.schema(), right.schema(), false))
                    .flatten();
                let own = matches!(join_type, JoinType::Inner | JoinType::Right).then_some(own);
                (through, own)
            } else {
                (None, None)
            };
        let new_left = left_keys.and_then(|k| self.push(left, &k, source, below_exchange));
        let new_right = right_keys.and_then(|k| self.push(right, &k, source, below_exchange));
        if new_left.is_none() && new_right.is_none() {
            return None;
        }
        Some((
            new_left.unwrap_or_else(|| Arc::clone(left)),
            new_right.unwrap_or_else(|| Arc::clone(right)),
        ))
    }

    /// An upper bound on the distinct values of column `index` of `plan`: the rows of the
    /// table (or the input of the aggregate) it comes from, followed down through operators
    /// that pass the column through. Unlike the optimizer's bound, filters and aggregates do
    /// not lower it: it is the domain a reduced side is compared against. Memoised along the
    /// whole walk, so a long lineage is walked once, not once per join above it.
    fn domain_rows(&mut self, plan: &Arc<PhysicalPlan>, index: usize) -> Option<f64> {
        let mut walked = Vec::new();
        let mut node = Arc::clone(plan);
        let mut index = index;
        let rows = loop {
            if let Some((_, rows)) = self.domains.get(&(Arc::as_ptr(&node), index)) {
                break *rows;
            }
            let step = domain_step(&node, index);
            walked.push((node, index));
            match step {
                DomainStep::Done(rows) => break rows,
                DomainStep::Below(input, i) => (node, index) = (input, i),
            }
        };
        for (node, index) in walked {
            self.domains
                .insert((Arc::as_ptr(&node), index), (node, rows));
        }
        rows
    }

    /// Estimated output rows of `plan` (memoised; `None` without statistics).
    #[recursive::recursive]
    fn estimate(&mut self, plan: &Arc<PhysicalPlan>) -> Option<f64> {
        let key = Arc::as_ptr(plan);
        if let Some((_, e)) = self.estimates.get(&key) {
            return *e;
        }
        let input = |this: &mut Self, i: &Arc<PhysicalPlan>| this.estimate(i);
        let rows = match plan.as_ref() {
            PhysicalPlan::Scan(s) => s.source.statistics().num_rows.map(|r| r as f64),
            PhysicalPlan::Values { rows, .. } => Some(rows.len() as f64),
            PhysicalPlan::Filter {
                input: i,
                predicate,
            } => input(self, i).map(|r| r * selectivity(predicate)),
            PhysicalPlan::DynamicFilter { input: i, .. }
            | PhysicalPlan::Projection { input: i, .. }
            | PhysicalPlan::Sort { input: i, .. }
            | PhysicalPlan::Exchange { input: i, .. }
            | PhysicalPlan::Persist { input: i, .. } => input(self, i),
            PhysicalPlan::Limit {
                input: i, fetch, ..
            } => {
                let r = input(self, i);
                match fetch {
                    Some(n) => Some(r.map_or(*n as f64, |r| r.min(*n as f64))),
                    None => r,
                }
            }
            PhysicalPlan::HashAggregate {
                input: i,
                mode,
                group_exprs,
                ..
            } => {
                let r = input(self, i);
                match (mode, group_exprs.is_empty()) {
                    (_, true) => Some(1.0),
                    (AggregateMode::Final, false) => r,
                    (_, false) => r.map(|r| (r * GROUPS_PER_ROW).max(1.0)),
                }
            }
            PhysicalPlan::HashJoin {
                left,
                right,
                on,
                join_type,
                ..
            } => {
                let (l, r) = (input(self, left), input(self, right));
                // Equi-join: |L|·|R| / distinct keys, the key domain being the smaller of the
                // two columns' (a foreign key ranges over its primary key's table).
                let domain = on.first().and_then(|(lk, rk)| {
                    let li = column_index(left.schema(), lk)?;
                    let ri = column_index(right.schema(), rk)?;
                    Some(
                        self.domain_rows(left, li)?
                            .min(self.domain_rows(right, ri)?),
                    )
                });
                let matched = l.zip(r).map(|(a, b)| match domain {
                    Some(d) => a * b / d.max(1.0),
                    None => a.max(b),
                });
                match join_type {
                    JoinType::LeftSemi | JoinType::LeftAnti => l.map(|l| l * SEMI_SELECTIVITY),
                    JoinType::Inner => matched,
                    JoinType::Left => matched.zip(l).map(|(m, l)| m.max(l)),
                    JoinType::Right => matched.zip(r).map(|(m, r)| m.max(r)),
                    JoinType::Full => l.zip(r).map(|(a, b)| a + b),
                }
            }
            PhysicalPlan::Union { inputs, .. } => {
                let mut total = Some(0.0);
                for i in inputs {
                    total = total.zip(input(self, i)).map(|(a, b)| a + b);
                }
                total
            }
            _ => None,
        };
        self.estimates.insert(key, (Arc::clone(plan), rows));
        rows
    }
}

/// The filter on columns `keys` of `node`, placed on top of it — only when a shuffle lies
/// above (`below_exchange`), where dropping rows saves the shuffle, or when `node` is a scan
/// that can skip its other columns for the rows the filter drops.
fn wrap(
    node: &Arc<PhysicalPlan>,
    keys: &[usize],
    source: &Source,
    below_exchange: bool,
) -> Option<Arc<PhysicalPlan>> {
    if !below_exchange && !scan_with_other_columns(node, keys) {
        return None;
    }
    let schema = node.schema();
    let keys = keys
        .iter()
        .map(|&k| unambiguous_column(schema, k))
        .collect::<Option<Vec<_>>>()?;
    Some(Arc::new(PhysicalPlan::DynamicFilter {
        input: Arc::clone(node),
        keys,
        source: Arc::clone(&source.exchange),
        source_keys: source.keys.clone(),
    }))
}

/// Whether `node` is a table scan, possibly under filters, that reads columns besides `keys`.
/// A key filter on it is pushed into the scan (`execute_filtered`), which then decodes the
/// other columns only for rows whose keys the source has: worth it even with no shuffle
/// above, as under a broadcast join (TPC-H Q17 keeps 6,088 of 6 M `lineitem` rows by part).
fn scan_with_other_columns(node: &PhysicalPlan, keys: &[usize]) -> bool {
    match node {
        PhysicalPlan::Scan(scan) => {
            let mut distinct = keys.to_vec();
            distinct.sort_unstable();
            distinct.dedup();
            scan.schema.len() > distinct.len()
        }
        PhysicalPlan::Filter { input, .. } | PhysicalPlan::DynamicFilter { input, .. } => {
            scan_with_other_columns(input, keys)
        }
        _ => false,
    }
}

/// Column `index` of `schema` as an expression, if its name resolves to exactly that field.
fn unambiguous_column(schema: &PlanSchema, index: usize) -> Option<Expr> {
    let column = schema.fields().get(index)?.column();
    (schema.index_of_column(&column).ok()? == index).then_some(Expr::Column(column))
}

/// The index in `schema` of `expr` when it is a plain column (aliases looked through).
fn column_index(schema: &PlanSchema, expr: &Expr) -> Option<usize> {
    match expr.unalias() {
        Expr::Column(c) => schema.index_of_column(c).ok(),
        _ => None,
    }
}

fn column_indices(schema: &PlanSchema, exprs: &[&Expr]) -> Option<Vec<usize>> {
    exprs.iter().map(|e| column_index(schema, e)).collect()
}

/// The columns on the other side of a join equated with `keys` by the join's `on` pairs;
/// `from_left` says which side `keys` index.
fn equivalent_keys(
    keys: &[usize],
    on: &[(Expr, Expr)],
    left: &PlanSchema,
    right: &PlanSchema,
    from_left: bool,
) -> Option<Vec<usize>> {
    keys.iter()
        .map(|&k| {
            on.iter().find_map(|(l, r)| {
                let (l, r) = (column_index(left, l)?, column_index(right, r)?);
                match from_left {
                    true if l == k => Some(r),
                    false if r == k => Some(l),
                    _ => None,
                }
            })
        })
        .collect()
}

/// The Exchange whose rows hold (a superset of) the key values of `side`'s columns `keys`,
/// found through the operators that only pass or drop rows of one input: the filter's key
/// set is built from it, and a superset never drops a row the join could match.
fn find_source(side: &Arc<PhysicalPlan>, keys: &[usize]) -> Option<Source> {
    match side.as_ref() {
        PhysicalPlan::Exchange {
            kind: ExchangeKind::Hash(..) | ExchangeKind::Broadcast,
            ..
        } => {
            let schema = side.schema();
            let keys = keys
                .iter()
                .map(|&k| unambiguous_column(schema, k))
                .collect::<Option<Vec<_>>>()?;
            Some(Source {
                exchange: Arc::clone(side),
                keys,
            })
        }
        PhysicalPlan::Filter { input, .. } | PhysicalPlan::DynamicFilter { input, .. } => {
            find_source(input, keys)
        }
        PhysicalPlan::Projection { input, exprs, .. } => {
            let mapped = keys
                .iter()
                .map(|&k| column_index(input.schema(), exprs.get(k)?))
                .collect::<Option<Vec<_>>>()?;
            find_source(input, &mapped)
        }
        PhysicalPlan::HashAggregate {
            input,
            mode: AggregateMode::Final,
            group_exprs,
            ..
        } if keys.iter().all(|&k| k < group_exprs.len()) => find_source(input, keys),
        PhysicalPlan::HashJoin {
            left,
            right,
            join_type,
            mode: JoinMode::Partitioned,
            ..
        } => {
            let left_len = left.schema().len();
            if keys.iter().all(|&k| k < left_len)
                && matches!(
                    join_type,
                    JoinType::Inner | JoinType::Left | JoinType::LeftSemi | JoinType::LeftAnti
                )
            {
                find_source(left, keys)
            } else if keys.iter().all(|&k| k >= left_len) && *join_type == JoinType::Inner {
                let own: Vec<usize> = keys.iter().map(|&k| k - left_len).collect();
                find_source(right, &own)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// One step of [`Rewriter::domain_rows`]'s walk down a column.
enum DomainStep {
    /// The walk ends: the table's rows, or `None` where the column is computed.
    Done(Option<f64>),
    /// The column is column `.1` of input `.0`.
    Below(Arc<PhysicalPlan>, usize),
}

/// Where column `index` of `node` comes from, one operator down.
fn domain_step(node: &PhysicalPlan, index: usize) -> DomainStep {
    let below = |input: &Arc<PhysicalPlan>, index: Option<usize>| match index {
        Some(i) => DomainStep::Below(Arc::clone(input), i),
        None => DomainStep::Done(None),
    };
    match node {
        PhysicalPlan::Scan(s) => DomainStep::Done(s.source.statistics().num_rows.map(|r| r as f64)),
        PhysicalPlan::Filter { input, .. }
        | PhysicalPlan::DynamicFilter { input, .. }
        | PhysicalPlan::Sort { input, .. }
        | PhysicalPlan::Limit { input, .. }
        | PhysicalPlan::Exchange { input, .. }
        | PhysicalPlan::Persist { input, .. } => below(input, Some(index)),
        PhysicalPlan::Projection { input, exprs, .. } => below(
            input,
            exprs
                .get(index)
                .and_then(|e| column_index(input.schema(), e)),
        ),
        PhysicalPlan::HashAggregate {
            input,
            mode,
            group_exprs,
            ..
        } => {
            let mapped = group_exprs.get(index).and_then(|group| match mode {
                // The input is the partial output: keys first, by position.
                AggregateMode::Final => Some(index),
                AggregateMode::Partial | AggregateMode::Single => {
                    column_index(input.schema(), group)
                }
            });
            below(input, mapped)
        }
        PhysicalPlan::HashJoin { left, right, .. } => {
            let left_len = left.schema().len();
            if index < left_len {
                below(left, Some(index))
            } else {
                below(right, Some(index - left_len))
            }
        }
        _ => DomainStep::Done(None),
    }
}
