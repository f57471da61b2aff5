//! Gives a sort under a limit its row budget, so it keeps a top-k heap instead of sorting
//! everything (ORDER BY .. LIMIT k).
//!
//! ```text
//! Limit: skip=5, fetch=10                 Limit: skip=5, fetch=10
//!   Projection: t.a             →           Projection: t.a
//!     Sort: t.a ASC NULLS LAST                Sort: t.a ASC NULLS LAST fetch=15
//!       TableScan: t                            TableScan: t
//! ```
//! Projections (one output row per input row) are looked through; the Limit itself stays,
//! because it also applies `skip` and the final cut across partitions.

use std::sync::Arc;

use crate::error::Result;
use crate::logical::{LogicalPlan, Projection, Sort, SubqueryAlias};
use crate::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule, Transformed};

pub struct PushDownLimit;

impl OptimizerRule for PushDownLimit {
    fn name(&self) -> &str {
        "push_down_limit"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn rewrite(
        &self,
        plan: Arc<LogicalPlan>,
        _config: &OptimizerConfig,
    ) -> Result<Transformed<Arc<LogicalPlan>>> {
        let LogicalPlan::Limit(limit) = plan.as_ref() else {
            return Ok(Transformed::no(plan));
        };
        let Some(fetch) = limit.fetch else {
            return Ok(Transformed::no(plan));
        };
        let budget = fetch.saturating_add(limit.skip);
        match with_sort_fetch(&limit.input, budget)? {
            Some(input) => Ok(Transformed::yes(Arc::new(LogicalPlan::Limit(
                crate::logical::Limit {
                    input,
                    skip: limit.skip,
                    fetch: limit.fetch,
                },
            )))),
            None => Ok(Transformed::no(plan)),
        }
    }
}

/// `plan` with the first Sort under its row-preserving nodes limited to `budget` rows;
/// `None` when there is no such Sort or it already has a budget at least as tight.
fn with_sort_fetch(plan: &Arc<LogicalPlan>, budget: usize) -> Result<Option<Arc<LogicalPlan>>> {
    Ok(match plan.as_ref() {
        LogicalPlan::Sort(s) if s.fetch.is_none_or(|f| f > budget) => {
            Some(Arc::new(LogicalPlan::Sort(Sort {
                input: Arc::clone(&s.input),
                exprs: s.exprs.clone(),
                fetch: Some(budget),
            })))
        }
        LogicalPlan::Projection(p) => match with_sort_fetch(&p.input, budget)? {
            Some(input) => Some(Arc::new(LogicalPlan::Projection(Projection::try_new(
                input,
                p.exprs.clone(),
            )?))),
            None => None,
        },
        LogicalPlan::SubqueryAlias(a) => with_sort_fetch(&a.input, budget)?.map(|input| {
            Arc::new(LogicalPlan::SubqueryAlias(SubqueryAlias::new(
                input,
                a.alias.clone(),
            )))
        }),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::col;
    use crate::logical::Limit;
    use crate::optimizer::test_util::{scan, show};
    use crate::optimizer::{apply_rule, OptimizerConfig};

    #[test]
    fn limit_over_sort_becomes_top_k() {
        let sort = Arc::new(LogicalPlan::Sort(Sort {
            input: scan("t", &["a", "b"]),
            exprs: vec![col("t.a").sort(true, false)],
            fetch: None,
        }));
        let proj = Arc::new(LogicalPlan::Projection(
            Projection::try_new(sort, vec![col("t.a")]).unwrap(),
        ));
        let plan = Arc::new(LogicalPlan::Limit(Limit {
            input: proj,
            skip: 5,
            fetch: Some(10),
        }));
        let t = apply_rule(&PushDownLimit, plan, &OptimizerConfig::default()).unwrap();
        assert!(t.transformed);
        assert_eq!(
            show(&t.data),
            "Limit: skip=5, fetch=10
  Projection: t.a
    Sort: t.a ASC NULLS LAST fetch=15
      TableScan: t"
        );
        // Applying it again changes nothing.
        let again = apply_rule(&PushDownLimit, t.data, &OptimizerConfig::default()).unwrap();
        assert!(!again.transformed);
    }
}
