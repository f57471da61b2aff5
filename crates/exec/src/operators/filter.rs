//! Filter: keeps the rows where the predicate is true (NULL counts as false).
//!
//! Selective predicates leave many tiny batches, which make every operator above pay its
//! per-batch overhead again and again; survivors are therefore copied straight into
//! batches of about `ctx.batch_size` rows (Arrow's `BatchCoalescer`).

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::array::{BooleanArray, RecordBatch};
use arrow::compute::BatchCoalescer;

use ember_planner::expr::Expr;
use ember_planner::physical::PhysicalPlan;
use ember_planner::schema::PlanSchema;
use ember_planner::table::BatchIter;
use ember_planner::Result;

use crate::context::TaskContext;
use crate::expr::{create_physical_expr, evaluate_predicate};

pub fn execute_filter(
    input: &Arc<PhysicalPlan>,
    predicate: &Expr,
    partition: usize,
    ctx: &Arc<TaskContext>,
) -> Result<BatchIter> {
    let mask = predicate_mask(predicate, input.schema(), ctx)?;
    let input = super::execute(input, partition, ctx)?;
    Ok(filter_batches(input, mask, ctx.batch_size))
}

/// The rows of `schema`-shaped batches where `predicate` is true.
pub(crate) fn predicate_mask(
    predicate: &Expr,
    schema: &PlanSchema,
    ctx: &TaskContext,
) -> Result<RowMask> {
    let predicate = create_physical_expr(predicate, schema, &ctx.functions)?;
    Ok(Box::new(move |batch| {
        evaluate_predicate(predicate.as_ref(), batch).map(Some)
    }))
}

/// Says which rows of a batch to keep; `None` keeps them all (no mask is built or applied).
pub(crate) type RowMask = Box<dyn FnMut(&RecordBatch) -> Result<Option<BooleanArray>> + Send>;

/// Keeps the rows of `input` that `mask` selects, in batches of about `batch_size` rows.
pub(crate) fn filter_batches(input: BatchIter, mask: RowMask, batch_size: usize) -> BatchIter {
    Box::new(FilterIter {
        input,
        mask,
        batch_size: batch_size.max(1),
        coalescer: None,
        ready: VecDeque::new(),
        finished: false,
    })
}

struct FilterIter {
    input: BatchIter,
    mask: RowMask,
    batch_size: usize,
    /// Built for the schema of the batches it receives: the coalescer assumes every batch
    /// has exactly its column types, and sources may differ from the plan schema in details
    /// (field names, nullability) that the rest of the pipeline tolerates.
    coalescer: Option<BatchCoalescer>,
    /// Completed batches of a replaced coalescer, emitted first.
    ready: VecDeque<RecordBatch>,
    finished: bool,
}

impl FilterIter {
    fn filter(&mut self, batch: RecordBatch) -> Result<()> {
        let mask = (self.mask)(&batch)?;
        let same_schema = self
            .coalescer
            .as_ref()
            .is_some_and(|c| c.schema() == batch.schema());
        if !same_schema {
            self.flush()?;
            // Batches already half the target size pass through without a copy.
            self.coalescer = Some(
                BatchCoalescer::new(batch.schema(), self.batch_size)
                    .with_biggest_coalesce_batch_size(Some(self.batch_size / 2)),
            );
        }
        if let Some(c) = self.coalescer.as_mut() {
            match mask {
                Some(mask) => c.push_batch_with_filter(batch, &mask)?,
                None => c.push_batch(batch)?,
            }
        }
        Ok(())
    }

    /// Moves every row buffered in the current coalescer to `ready`.
    fn flush(&mut self) -> Result<()> {
        if let Some(c) = self.coalescer.as_mut() {
            c.finish_buffered_batch()?;
            while let Some(b) = c.next_completed_batch() {
                self.ready.push_back(b);
            }
        }
        Ok(())
    }

    fn next_completed(&mut self) -> Option<RecordBatch> {
        self.ready.pop_front().or_else(|| {
            self.coalescer
                .as_mut()
                .and_then(|c| c.next_completed_batch())
        })
    }
}

impl Iterator for FilterIter {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(b) = self.next_completed() {
                return Some(Ok(b));
            }
            if self.finished {
                return None;
            }
            match self.input.next() {
                Some(Ok(batch)) => {
                    if let Err(e) = self.filter(batch) {
                        self.finished = true;
                        return Some(Err(e));
                    }
                }
                Some(Err(e)) => {
                    self.finished = true;
                    return Some(Err(e));
                }
                None => {
                    self.finished = true;
                    if let Err(e) = self.flush() {
                        return Some(Err(e));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{ArrayRef, BooleanArray, Int64Array};
    use ember_planner::expr::{col, lit};

    use super::super::test_util::*;
    use super::*;

    fn flagged(values: &[i64], flags: &[Option<bool>]) -> RecordBatch {
        batch(vec![
            ("v", Arc::new(Int64Array::from(values.to_vec())) as ArrayRef),
            (
                "keep",
                Arc::new(BooleanArray::from(flags.to_vec())) as ArrayRef,
            ),
        ])
    }

    #[test]
    fn keeps_true_rows_and_drops_false_and_null() {
        let scan = mem_scan(vec![vec![
            flagged(&[1, 2, 3], &[Some(true), Some(false), None]),
            flagged(&[4, 5], &[Some(true), Some(true)]),
        ]]);
        let plan = Arc::new(PhysicalPlan::Filter {
            input: scan,
            predicate: col("keep"),
        });
        let out = collect(&plan, 0);
        assert_eq!(int_column(&out, 0), vec![Some(1), Some(4), Some(5)]);
        // Tiny survivors are coalesced into one batch.
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn output_batches_respect_the_target_size() {
        let batches: Vec<RecordBatch> = (0..10)
            .map(|i| flagged(&[i, i + 100], &[Some(true), Some(false)]))
            .collect();
        let plan = Arc::new(PhysicalPlan::Filter {
            input: mem_scan(vec![batches]),
            predicate: col("keep"),
        });
        let out = collect_with(&plan, 0, &test_ctx_with_batch_size(4));
        let sizes: Vec<usize> = out.iter().map(|b| b.num_rows()).collect();
        assert_eq!(sizes, vec![4, 4, 2]);
        assert_eq!(int_column(&out, 0), (0..10).map(Some).collect::<Vec<_>>());
    }

    #[test]
    fn constant_false_predicate_yields_no_rows() {
        let plan = Arc::new(PhysicalPlan::Filter {
            input: mem_scan(vec![vec![flagged(&[1], &[Some(true)])]]),
            predicate: lit(false),
        });
        assert_eq!(row_count(&collect(&plan, 0)), 0);
    }

    #[test]
    fn non_boolean_predicate_is_an_error() {
        let plan = Arc::new(PhysicalPlan::Filter {
            input: mem_scan(vec![vec![flagged(&[1], &[Some(true)])]]),
            predicate: col("v"),
        });
        let mut it = super::super::execute(&plan, 0, &test_ctx()).unwrap();
        assert!(it.next().unwrap().is_err());
    }

    #[test]
    fn batches_with_differing_schemas_are_not_mixed() {
        let renamed = flagged(&[3, 4], &[Some(true), Some(true)]);
        let renamed = RecordBatch::try_new(
            Arc::new(arrow::datatypes::Schema::new(vec![
                arrow::datatypes::Field::new("v2", arrow::datatypes::DataType::Int64, false),
                arrow::datatypes::Field::new("keep", arrow::datatypes::DataType::Boolean, true),
            ])),
            renamed.columns().to_vec(),
        )
        .unwrap();
        let plan = Arc::new(PhysicalPlan::Filter {
            input: mem_scan(vec![vec![
                flagged(&[1, 2], &[Some(true), Some(false)]),
                renamed,
                flagged(&[5], &[Some(true)]),
            ]]),
            predicate: col("keep"),
        });
        let out = collect(&plan, 0);
        assert_eq!(
            int_column(&out, 0),
            vec![Some(1), Some(3), Some(4), Some(5)]
        );
        assert_eq!(out.len(), 3);
    }
}
