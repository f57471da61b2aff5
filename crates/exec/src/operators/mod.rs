//! Arrow operators: one module per operator, and [`execute`], which builds the iterator
//! pipeline for one partition of a physical plan.
//!
//! Operators are plain synchronous iterators of record batches: each pulls from its input's
//! iterator when it needs more rows, so a task is a single pipeline driven from the top.
//! Parallelism comes from running many tasks at once, not from inside an operator.

pub mod aggregate;
pub mod dynamic_filter;
pub mod filter;
pub mod hash_join;
pub(crate) mod key_set;
pub mod limit;
pub mod nested_loop_join;
pub mod projection;
pub mod pushed_filter;
pub(crate) mod shared_build;
pub mod sort;
pub mod source;
pub mod union;
pub mod unnest;
pub mod write;

#[cfg(test)]
pub(crate) mod test_util;

use std::sync::Arc;

use arrow::record_batch::RecordBatch;

use ember_planner::physical::{ExchangeKind, PhysicalPlan};
use ember_planner::table::BatchIter;
use ember_planner::{EmberError, Result};

use crate::context::TaskContext;

/// Builds the batch iterator that computes partition `partition` of `plan`.
///
/// The plan must already be cut into stages: an `Exchange` that really moves rows between
/// partitions (Hash, RoundRobin) is the scheduler's job and is rejected here; `Single` and
/// `Broadcast` exchanges are run in-process by concatenating every input partition, which is
/// what their consumer would read anyway.
pub fn execute(
    plan: &Arc<PhysicalPlan>,
    partition: usize,
    ctx: &Arc<TaskContext>,
) -> Result<BatchIter> {
    let partitions = plan.output_partitions();
    if partition >= partitions {
        return Err(EmberError::Internal(format!(
            "partition {partition} requested from a plan with {partitions} partitions: {}",
            plan.describe_node()
        )));
    }
    let iter = match plan.as_ref() {
        PhysicalPlan::Scan(scan) => source::execute_scan(scan, partition)?,
        PhysicalPlan::Values { schema, rows } => source::execute_values(schema, rows, ctx)?,
        PhysicalPlan::ShuffleRead {
            stage,
            kind,
            map_partitions,
            ..
        } => ctx.shuffle.read(*stage, kind, *map_partitions, partition)?,
        PhysicalPlan::PersistRead { stage, id, .. } => {
            ctx.persisted.read(*stage, *id, partition)?
        }
        // Teed into this stage, or (a plan run directly) nothing to keep: pass through.
        PhysicalPlan::Persist { input, id, .. } => {
            crate::persist::execute_persist(input, *id, partition, ctx)?
        }
        PhysicalPlan::Filter { input, predicate } => {
            match pushed_filter::execute_pushed_filter(plan, partition, ctx)? {
                Some(rows) => rows,
                None => filter::execute_filter(input, predicate, partition, ctx)?,
            }
        }
        PhysicalPlan::DynamicFilter { .. } => {
            match pushed_filter::execute_pushed_filter(plan, partition, ctx)? {
                Some(rows) => rows,
                None => dynamic_filter::execute_dynamic_filter(plan, partition, ctx)?,
            }
        }
        PhysicalPlan::Projection {
            input,
            exprs,
            schema,
        } => projection::execute_projection(input, exprs, schema, partition, ctx)?,
        PhysicalPlan::HashAggregate { .. } => aggregate::execute_aggregate(plan, partition, ctx)?,
        PhysicalPlan::Sort {
            input,
            exprs,
            fetch,
        } => sort::execute_sort(input, exprs, *fetch, partition, ctx)?,
        PhysicalPlan::Limit { input, skip, fetch } => {
            limit::execute_limit(input, *skip, *fetch, partition, ctx)?
        }
        PhysicalPlan::Union { inputs, schema } => {
            union::execute_union(inputs, schema, partition, ctx)?
        }
        PhysicalPlan::Unnest {
            input,
            column,
            schema,
        } => unnest::execute_unnest(input, *column, schema, partition, ctx)?,
        PhysicalPlan::HashJoin { .. } => hash_join::execute_hash_join(plan, partition, ctx)?,
        PhysicalPlan::NestedLoopJoin { .. } => {
            nested_loop_join::execute_nested_loop_join(plan, partition, ctx)?
        }
        PhysicalPlan::Write {
            input,
            path,
            format,
            ..
        } => write::execute_write(input, path, *format, partition, ctx)?,
        PhysicalPlan::Exchange { input, kind } => match kind {
            ExchangeKind::Single | ExchangeKind::Broadcast => {
                let inputs = (0..input.output_partitions())
                    .map(|p| execute(input, p, ctx))
                    .collect::<Result<Vec<_>>>()?;
                Box::new(inputs.into_iter().flatten())
            }
            other => {
                return Err(EmberError::Internal(format!(
                    "Exchange {other} reached the operator layer; plans must be cut into stages \
                     (Exchange replaced by ShuffleRead) before execution"
                )))
            }
        },
    };
    Ok(Box::new(Cancellable {
        inner: iter,
        ctx: Arc::clone(ctx),
        done: false,
    }))
}

/// Stops a pipeline once its task is cancelled (speculation loser, lost executor): the next
/// pull returns an error instead of doing more work, and nothing after it.
struct Cancellable {
    inner: BatchIter,
    ctx: Arc<TaskContext>,
    done: bool,
}

impl Iterator for Cancellable {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.ctx.is_cancelled() {
            self.done = true;
            return Some(Err(EmberError::Execution(format!(
                "task {}.{} (attempt {}) was cancelled",
                self.ctx.stage, self.ctx.partition, self.ctx.attempt
            ))));
        }
        let next = self.inner.next();
        if matches!(next, Some(Err(_)) | None) {
            // An operator is not required to be fused after an error; we make every
            // pipeline stop at the first one.
            self.done = true;
        }
        next
    }
}

/// Checks cancellation inside operators that consume their whole input before emitting
/// (sort, aggregate), so a killed task stops between input batches.
pub(crate) fn check_cancelled(ctx: &TaskContext) -> Result<()> {
    if ctx.is_cancelled() {
        Err(EmberError::Execution(format!(
            "task {}.{} (attempt {}) was cancelled",
            ctx.stage, ctx.partition, ctx.attempt
        )))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::test_util::*;
    use super::*;

    #[test]
    fn cancelled_task_stops_with_an_error() {
        let plan = mem_scan(vec![vec![int_batch("a", &[1, 2]), int_batch("a", &[3])]]);
        let ctx = test_ctx();
        let mut it = execute(&plan, 0, &ctx).unwrap();
        assert!(it.next().unwrap().is_ok());
        ctx.cancelled.store(true, Ordering::Relaxed);
        let err = it.next().unwrap().unwrap_err();
        assert!(err.to_string().contains("cancelled"), "{err}");
        assert!(it.next().is_none());
    }

    #[test]
    fn partition_out_of_range_is_an_internal_error() {
        let plan = mem_scan(vec![vec![int_batch("a", &[1])]]);
        let err = execute(&plan, 3, &test_ctx()).err().unwrap();
        assert!(matches!(err, EmberError::Internal(_)), "{err}");
    }

    #[test]
    fn single_exchange_concatenates_input_partitions() {
        let scan = mem_scan(vec![
            vec![int_batch("a", &[1])],
            vec![int_batch("a", &[2, 3])],
        ]);
        let plan = Arc::new(PhysicalPlan::Exchange {
            input: scan,
            kind: ExchangeKind::Single,
        });
        assert_eq!(
            int_column(&collect(&plan, 0), 0),
            vec![Some(1), Some(2), Some(3)]
        );
    }

    /// Filter → Projection → Sort → Limit over two input batches, with real expressions.
    #[test]
    fn pipeline_of_operators_with_expressions() {
        use ember_planner::expr::{col, lit};
        use ember_planner::schema::PlanSchema;

        let scan = mem_scan(vec![vec![
            int_batch("v", &[5, 1, 8]),
            int_batch("v", &[3, 9, 2]),
        ]]);
        let filter = Arc::new(PhysicalPlan::Filter {
            input: scan.clone(),
            predicate: col("v").gt(lit(2i64)),
        });
        let doubled = col("v").mul(lit(2i64)).alias("d");
        let schema = Arc::new(PlanSchema::new(vec![doubled
            .to_field(scan.schema())
            .unwrap()]));
        let projection = Arc::new(PhysicalPlan::Projection {
            input: filter,
            exprs: vec![doubled],
            schema,
        });
        let sort = Arc::new(PhysicalPlan::Sort {
            input: projection,
            exprs: vec![col("d").sort(false, false)],
            fetch: None,
        });
        let limit = Arc::new(PhysicalPlan::Limit {
            input: sort,
            skip: 1,
            fetch: Some(2),
        });
        assert_eq!(int_column(&collect(&limit, 0), 0), vec![Some(16), Some(10)]);
    }
}
