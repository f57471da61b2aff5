//! Turns comma joins (a Filter over CrossJoins) into keyed inner hash joins.
//!
//! SQL's `FROM a, b, c WHERE a.x = b.x AND b.y = c.y` plans as a Filter over nested
//! CrossJoins; executing that literally is a cartesian product. This rule flattens the
//! CrossJoins (and Inner joins) under a Filter into a list of inputs plus a pool of
//! conjuncts, then rebuilds the joins greedily: starting from the first input, it always
//! joins next an input connected to what is already joined by an equality, moving every such
//! equality into the join keys. Only inputs connected to nothing are cross-joined.
//!
//! ```text
//! Filter: a.x = c.x AND c.y = b.y AND a.v > 1     Projection: a.x, a.v, b.y, c.x, c.y
//!   CrossJoin                                        Filter: (a.v > 1)
//!     CrossJoin                            →           Inner Join: on=[c.y = b.y]
//!       TableScan: a                                     Inner Join: on=[a.x = c.x]
//!       TableScan: b                                       TableScan: a
//!     TableScan: c                                         TableScan: c
//!                                                        TableScan: b
//! ```
//! A Projection restores the original column order when the join order changed. The
//! remaining conjuncts stay in the Filter for `push_down_filter` to move into the inputs.

use std::sync::Arc;

use crate::error::Result;
use crate::expr::Expr;
use crate::logical::{CrossJoin, Join, JoinType, LogicalPlan};
use crate::optimizer::utils::{connecting_keys, filter_over, project_columns, split_conjuncts};
use crate::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule, Transformed};

pub struct EliminateCrossJoin;

impl OptimizerRule for EliminateCrossJoin {
    fn name(&self) -> &str {
        "eliminate_cross_join"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn rewrite(
        &self,
        plan: Arc<LogicalPlan>,
        _config: &OptimizerConfig,
    ) -> Result<Transformed<Arc<LogicalPlan>>> {
        let LogicalPlan::Filter(filter) = plan.as_ref() else {
            return Ok(Transformed::no(plan));
        };
        let mut conjuncts = split_conjuncts(&filter.predicate);
        let Some((leaves, crosses)) = flatten(&filter.input, &mut conjuncts) else {
            return Ok(Transformed::no(plan));
        };
        match reorder(leaves, conjuncts, &filter.input, crosses) {
            Ok(Some(new)) => Ok(Transformed::yes(new)),
            // A plan we cannot rebuild unambiguously (duplicate column names) stays as is.
            Ok(None) | Err(_) => Ok(Transformed::no(plan)),
        }
    }
}

/// The inputs of the CrossJoin/Inner-join tree under a Filter, with the inner joins'
/// conditions added to `conjuncts`, and the number of CrossJoins. `None` when the tree has
/// no CrossJoin.
fn flatten(
    root: &Arc<LogicalPlan>,
    conjuncts: &mut Vec<Expr>,
) -> Option<(Vec<Arc<LogicalPlan>>, usize)> {
    let mut leaves = Vec::new();
    let mut crosses = 0;
    let mut stack = vec![Arc::clone(root)];
    while let Some(p) = stack.pop() {
        match p.as_ref() {
            LogicalPlan::CrossJoin(j) => {
                crosses += 1;
                stack.push(Arc::clone(&j.right));
                stack.push(Arc::clone(&j.left));
            }
            LogicalPlan::Join(j) if j.join_type == JoinType::Inner && !j.null_aware => {
                conjuncts.extend(j.on.iter().map(|(l, r)| l.clone().eq(r.clone())));
                if let Some(f) = &j.filter {
                    conjuncts.extend(split_conjuncts(f));
                }
                stack.push(Arc::clone(&j.right));
                stack.push(Arc::clone(&j.left));
            }
            _ => leaves.push(p),
        }
    }
    (crosses > 0).then_some((leaves, crosses))
}

fn reorder(
    leaves: Vec<Arc<LogicalPlan>>,
    mut conjuncts: Vec<Expr>,
    original: &Arc<LogicalPlan>,
    crosses_before: usize,
) -> Result<Option<Arc<LogicalPlan>>> {
    let mut crosses_after = 0;
    let mut remaining = leaves.into_iter();
    let Some(mut joined) = remaining.next() else {
        return Ok(None);
    };
    let mut remaining: Vec<Arc<LogicalPlan>> = remaining.collect();
    while !remaining.is_empty() {
        let pick = remaining.iter().position(|leaf| {
            conjuncts
                .iter()
                .any(|c| connecting_keys(c, &joined, leaf).is_some())
        });
        let leaf = remaining.remove(pick.unwrap_or(0));
        let mut on = Vec::new();
        let mut rest = Vec::with_capacity(conjuncts.len());
        for c in conjuncts {
            match connecting_keys(&c, &joined, &leaf) {
                Some(keys) => on.push(keys),
                None => rest.push(c),
            }
        }
        conjuncts = rest;
        joined = if on.is_empty() {
            crosses_after += 1;
            Arc::new(LogicalPlan::CrossJoin(CrossJoin::new(joined, leaf)))
        } else {
            Arc::new(LogicalPlan::Join(Join::try_new(
                joined,
                leaf,
                on,
                None,
                JoinType::Inner,
                false,
            )?))
        };
    }
    if crosses_after >= crosses_before {
        // Nothing became a keyed join: keep the original (and report no change).
        return Ok(None);
    }
    let plan = filter_over(joined, conjuncts);
    if plan.schema().fields() == original.schema().fields() {
        return Ok(Some(plan));
    }
    project_columns(plan, &original.schema().columns()).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::{col, lit};
    use crate::logical::Filter;
    use crate::optimizer::test_util::{scan, show};
    use crate::optimizer::{apply_rule, OptimizerConfig};

    fn cross(l: Arc<LogicalPlan>, r: Arc<LogicalPlan>) -> Arc<LogicalPlan> {
        Arc::new(LogicalPlan::CrossJoin(CrossJoin::new(l, r)))
    }

    #[test]
    fn comma_join_becomes_keyed_joins_in_connected_order() {
        let input = cross(
            cross(scan("a", &["x", "v"]), scan("b", &["y"])),
            scan("c", &["x", "y"]),
        );
        let plan = Arc::new(LogicalPlan::Filter(Filter {
            input,
            predicate: col("a.x")
                .eq(col("c.x"))
                .and(col("c.y").eq(col("b.y")))
                .and(col("a.v").gt(lit(1i64))),
        }));
        let t = apply_rule(&EliminateCrossJoin, plan, &OptimizerConfig::default()).unwrap();
        assert!(t.transformed);
        assert_eq!(
            show(&t.data),
            "Projection: a.x, a.v, b.y, c.x, c.y
  Filter: (a.v > 1)
    Inner Join: on=[c.y = b.y]
      Inner Join: on=[a.x = c.x]
        TableScan: a
        TableScan: c
      TableScan: b"
        );
    }

    #[test]
    fn unconnected_inputs_stay_cross_joined() {
        let plan = Arc::new(LogicalPlan::Filter(Filter {
            input: cross(scan("a", &["x"]), scan("b", &["y"])),
            predicate: col("a.x").gt(col("b.y")),
        }));
        let t = apply_rule(&EliminateCrossJoin, plan, &OptimizerConfig::default()).unwrap();
        assert!(!t.transformed);
        assert_eq!(
            show(&t.data),
            "Filter: (a.x > b.y)\n  CrossJoin\n    TableScan: a\n    TableScan: b"
        );
    }
}
