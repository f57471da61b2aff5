//! Puts the smaller input of each join on the right: the hash join builds its table from the
//! right input (and may broadcast it), so the right side should be the one that fits.
//!
//! Sizes come from [`crate::optimizer::stats`] (table statistics propagated up). Inner joins
//! and cross joins are swapped when the right side is estimated strictly larger; Right joins
//! always become Left joins with the inputs swapped (the executor streams the left side). A
//! Projection above restores the original column order.
//!
//! ```text
//! Inner Join: on=[s.k = b.k]             Projection: s.k, b.k
//!   TableScan: s      (10 rows)    →       Inner Join: on=[b.k = s.k]
//!   TableScan: b   (1000 rows)               TableScan: b
//!                                            TableScan: s
//! ```

use std::sync::Arc;

use crate::error::Result;
use crate::logical::{CrossJoin, Join, JoinType, LogicalPlan};
use crate::optimizer::stats::{Estimate, StatsCache};
use crate::optimizer::utils::project_columns;
use crate::optimizer::{transform_up, OptimizerConfig, OptimizerRule, Transformed};

pub struct JoinSideChoice;

impl OptimizerRule for JoinSideChoice {
    fn name(&self) -> &str {
        "join_side_choice"
    }

    fn apply_order(&self) -> Option<crate::optimizer::ApplyOrder> {
        // Walks the plan itself, to share one memoised statistics cache across all joins.
        None
    }

    fn rewrite(
        &self,
        plan: Arc<LogicalPlan>,
        _config: &OptimizerConfig,
    ) -> Result<Transformed<Arc<LogicalPlan>>> {
        let mut stats = StatsCache::default();
        transform_up(plan, &mut |node| choose_sides(node, &mut stats))
    }
}

/// Whether `right` is estimated strictly larger than `left` (bytes when both are known,
/// else rows). Unknown sizes never cause a swap.
fn right_is_larger(left: Estimate, right: Estimate) -> bool {
    match (left.bytes, right.bytes) {
        (Some(l), Some(r)) => r > l,
        _ => matches!((left.rows, right.rows), (Some(l), Some(r)) if r > l),
    }
}

fn choose_sides(
    node: Arc<LogicalPlan>,
    stats: &mut StatsCache,
) -> Result<Transformed<Arc<LogicalPlan>>> {
    let swapped = match node.as_ref() {
        LogicalPlan::Join(j) => {
            let swap = match j.join_type {
                JoinType::Right => true,
                JoinType::Inner => {
                    right_is_larger(stats.estimate(&j.left), stats.estimate(&j.right))
                }
                _ => false,
            };
            if !swap {
                None
            } else {
                let join_type = match j.join_type {
                    JoinType::Right => JoinType::Left,
                    t => t,
                };
                Some(LogicalPlan::Join(Join::try_new(
                    Arc::clone(&j.right),
                    Arc::clone(&j.left),
                    j.on.iter().map(|(l, r)| (r.clone(), l.clone())).collect(),
                    j.filter.clone(),
                    join_type,
                    j.null_aware,
                )?))
            }
        }
        LogicalPlan::CrossJoin(j) => {
            right_is_larger(stats.estimate(&j.left), stats.estimate(&j.right)).then(|| {
                LogicalPlan::CrossJoin(CrossJoin::new(Arc::clone(&j.right), Arc::clone(&j.left)))
            })
        }
        _ => None,
    };
    let Some(swapped) = swapped else {
        stats.estimate(&node);
        return Ok(Transformed::no(node));
    };
    let restored = project_columns(Arc::new(swapped), &node.schema().columns())?;
    stats.estimate(&restored);
    Ok(Transformed::yes(restored))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::col;
    use crate::optimizer::test_util::{scan_with_rows, show};
    use crate::optimizer::{apply_rule, OptimizerConfig};

    fn join(t: JoinType, l: Arc<LogicalPlan>, r: Arc<LogicalPlan>) -> Arc<LogicalPlan> {
        Arc::new(LogicalPlan::Join(
            Join::try_new(l, r, vec![(col("s.k"), col("b.k"))], None, t, false).unwrap(),
        ))
    }

    #[test]
    fn smaller_input_becomes_the_build_side() {
        let plan = join(
            JoinType::Inner,
            scan_with_rows("s", &["k"], Some(10)),
            scan_with_rows("b", &["k"], Some(1000)),
        );
        let t = apply_rule(&JoinSideChoice, plan, &OptimizerConfig::default()).unwrap();
        assert!(t.transformed);
        assert_eq!(
            show(&t.data),
            "Projection: s.k, b.k\n  Inner Join: on=[b.k = s.k]\n    TableScan: b\n    TableScan: s"
        );
        // Stable: a second application changes nothing.
        let again = apply_rule(&JoinSideChoice, t.data, &OptimizerConfig::default()).unwrap();
        assert!(!again.transformed);
    }

    #[test]
    fn right_join_becomes_left_join() {
        let plan = join(
            JoinType::Right,
            scan_with_rows("s", &["k"], Some(1000)),
            scan_with_rows("b", &["k"], Some(10)),
        );
        let t = apply_rule(&JoinSideChoice, plan, &OptimizerConfig::default()).unwrap();
        assert_eq!(
            show(&t.data),
            "Projection: s.k, b.k\n  Left Join: on=[b.k = s.k]\n    TableScan: b\n    TableScan: s"
        );
    }

    #[test]
    fn unknown_sizes_keep_the_order() {
        let plan = join(
            JoinType::Inner,
            scan_with_rows("s", &["k"], None),
            scan_with_rows("b", &["k"], Some(10)),
        );
        let t = apply_rule(&JoinSideChoice, plan, &OptimizerConfig::default()).unwrap();
        assert!(!t.transformed);
    }
}
