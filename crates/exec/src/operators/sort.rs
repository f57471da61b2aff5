//! Sort: orders each partition by the sort keys; with `fetch`, keeps only the top rows.
//!
//! Input batches are buffered untouched; only the key columns are evaluated and sorted,
//! and output rows are gathered from the buffered batches with `interleave`, so non-key
//! columns are copied once. A single key uses Arrow's `sort_to_indices`; several keys are
//! encoded with `arrow-row` so comparing two rows is one `memcmp`.
//!
//! Top-k (`fetch = k`) never holds much more than `max(2k, batch_size)` rows: whenever the
//! buffer grows past that, it is sorted and cut down to its best `k` rows.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::compute::{concat, interleave_record_batch, sort_to_indices, SortOptions};
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, SortField};

use ember_planner::expr::SortExpr;
use ember_planner::physical::PhysicalPlan;
use ember_planner::table::BatchIter;
use ember_planner::{EmberError, Result};

use crate::context::TaskContext;
use crate::expr::{create_physical_expr, PhysicalExprRef};

use super::check_cancelled;

pub fn execute_sort(
    input: &Arc<PhysicalPlan>,
    exprs: &[SortExpr],
    fetch: Option<usize>,
    partition: usize,
    ctx: &Arc<TaskContext>,
) -> Result<BatchIter> {
    let keys = exprs
        .iter()
        .map(|s| {
            Ok(SortKey {
                expr: create_physical_expr(&s.expr, input.schema(), &ctx.functions)?,
                options: SortOptions {
                    descending: !s.asc,
                    nulls_first: s.nulls_first,
                },
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut sorter = Sorter {
        keys,
        schema: input.schema().to_arrow_ref(),
        batches: Vec::new(),
        key_columns: Vec::new(),
        rows: 0,
    };
    let batch_size = ctx.batch_size.max(1);
    let compact_at = fetch.map(|k| (2 * k).max(batch_size));
    for batch in super::execute(input, partition, ctx)? {
        check_cancelled(ctx)?;
        sorter.push(batch?)?;
        if let (Some(k), Some(limit)) = (fetch, compact_at) {
            if sorter.rows > limit {
                sorter.compact(k)?;
            }
        }
    }
    let order = sorter.sorted_positions(fetch)?;
    let output = order
        .chunks(batch_size)
        .map(|chunk| gather(&sorter.schema, &sorter.batches, chunk))
        .collect::<Result<Vec<_>>>()?;
    Ok(Box::new(output.into_iter().map(Ok)))
}

struct SortKey {
    expr: PhysicalExprRef,
    options: SortOptions,
}

/// The buffered input of one sort: batches and, per batch, its evaluated key columns.
struct Sorter {
    keys: Vec<SortKey>,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    key_columns: Vec<Vec<ArrayRef>>,
    rows: usize,
}

impl Sorter {
    fn push(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let keys = self
            .keys
            .iter()
            .map(|k| k.expr.evaluate(&batch))
            .collect::<Result<Vec<_>>>()?;
        self.rows += batch.num_rows();
        self.key_columns.push(keys);
        self.batches.push(batch);
        Ok(())
    }

    /// Replaces the buffer by its best `k` rows, in order, as one batch.
    fn compact(&mut self, k: usize) -> Result<()> {
        let order = self.sorted_positions(Some(k))?;
        let best = gather(&self.schema, &self.batches, &order)?;
        self.batches.clear();
        self.key_columns.clear();
        self.rows = 0;
        self.push(best)
    }

    /// (batch, row) of the buffered rows in sorted order; only the first `limit` if given.
    fn sorted_positions(&self, limit: Option<usize>) -> Result<Vec<(usize, usize)>> {
        let mut positions = Vec::with_capacity(self.rows);
        for (b, batch) in self.batches.iter().enumerate() {
            positions.extend((0..batch.num_rows()).map(|r| (b, r)));
        }
        if self.keys.is_empty() || positions.is_empty() {
            positions.truncate(limit.unwrap_or(usize::MAX));
            return Ok(positions);
        }
        let columns = (0..self.keys.len())
            .map(|k| {
                let parts: Vec<&dyn Array> = self
                    .key_columns
                    .iter()
                    .map(|cols| cols[k].as_ref())
                    .collect();
                Ok(concat(&parts)?)
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        let order: Vec<usize> = if columns.len() == 1 {
            sort_to_indices(&columns[0], Some(self.keys[0].options), limit)?
                .values()
                .iter()
                .map(|i| *i as usize)
                .collect()
        } else {
            self.sort_rows(&columns, limit)?
        };
        Ok(order.into_iter().map(|i| positions[i]).collect())
    }

    /// Sorts by several keys through the row format; ties keep input order.
    fn sort_rows(&self, columns: &[ArrayRef], limit: Option<usize>) -> Result<Vec<usize>> {
        let fields = columns
            .iter()
            .zip(&self.keys)
            .map(|(c, k)| SortField::new_with_options(c.data_type().clone(), k.options))
            .collect();
        let rows = RowConverter::new(fields)?.convert_columns(columns)?;
        let mut order: Vec<usize> = (0..rows.num_rows()).collect();
        let cmp = |a: &usize, b: &usize| rows.row(*a).cmp(&rows.row(*b)).then(a.cmp(b));
        match limit {
            Some(k) if k < order.len() => {
                if k == 0 {
                    return Ok(vec![]);
                }
                order.select_nth_unstable_by(k - 1, cmp);
                order.truncate(k);
                order.sort_unstable_by(cmp);
            }
            _ => order.sort_unstable_by(cmp),
        }
        Ok(order)
    }
}

/// Gathers rows `positions` (batch, row) of `batches` into one batch.
fn gather(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    positions: &[(usize, usize)],
) -> Result<RecordBatch> {
    if schema.fields().is_empty() || batches.is_empty() {
        if !positions.is_empty() && batches.is_empty() {
            return Err(EmberError::Internal(
                "sort gathers rows from no batches".into(),
            ));
        }
        return Ok(RecordBatch::try_new_with_options(
            schema.clone(),
            vec![],
            &RecordBatchOptions::new().with_row_count(Some(positions.len())),
        )?);
    }
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    Ok(interleave_record_batch(&refs, positions)?)
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, StringArray};
    use ember_planner::expr::col;

    use super::super::test_util::*;
    use super::*;

    fn people() -> Arc<PhysicalPlan> {
        let b = |names: Vec<Option<&str>>, ages: Vec<Option<i64>>| {
            batch(vec![
                ("name", Arc::new(StringArray::from(names)) as ArrayRef),
                ("age", Arc::new(Int64Array::from(ages)) as ArrayRef),
            ])
        };
        mem_scan(vec![vec![
            b(
                vec![Some("c"), Some("a"), None],
                vec![Some(30), None, Some(20)],
            ),
            b(
                vec![Some("b"), Some("a"), Some("d")],
                vec![Some(30), Some(40), Some(10)],
            ),
        ]])
    }

    fn sort(exprs: Vec<SortExpr>, fetch: Option<usize>) -> Arc<PhysicalPlan> {
        Arc::new(PhysicalPlan::Sort {
            input: people(),
            exprs,
            fetch,
        })
    }

    #[test]
    fn single_key_honours_direction_and_null_placement() {
        let out = collect(&sort(vec![col("age").sort(false, true)], None), 0);
        assert_eq!(
            int_column(&out, 1),
            vec![None, Some(40), Some(30), Some(30), Some(20), Some(10)]
        );
        let out = collect(&sort(vec![col("age").sort(true, false)], None), 0);
        assert_eq!(
            int_column(&out, 1),
            vec![Some(10), Some(20), Some(30), Some(30), Some(40), None]
        );
    }

    #[test]
    fn several_keys_sort_lexicographically() {
        let out = collect(
            &sort(
                vec![col("age").sort(false, false), col("name").sort(true, true)],
                None,
            ),
            0,
        );
        assert_eq!(
            pretty(&out),
            vec![
                "+------+-----+",
                "| name | age |",
                "+------+-----+",
                "| a    | 40  |",
                "| b    | 30  |",
                "| c    | 30  |",
                "|      | 20  |",
                "| d    | 10  |",
                "| a    |     |",
                "+------+-----+",
            ]
        );
    }

    #[test]
    fn top_k_keeps_the_best_rows_across_compactions() {
        // Batch size 1 forces a compaction after nearly every input batch.
        let input: Vec<RecordBatch> = (0..50).map(|i| int_batch("v", &[(i * 37) % 50])).collect();
        let plan = Arc::new(PhysicalPlan::Sort {
            input: mem_scan(vec![input]),
            exprs: vec![col("v").sort(false, false)],
            fetch: Some(3),
        });
        let out = collect_with(&plan, 0, &test_ctx_with_batch_size(1));
        assert_eq!(int_column(&out, 0), vec![Some(49), Some(48), Some(47)]);
        let multi = Arc::new(PhysicalPlan::Sort {
            input: mem_scan(vec![(0..50)
                .map(|i| int_batch("v", &[(i * 37) % 50]))
                .collect()]),
            exprs: vec![col("v").sort(true, false), col("v").sort(true, false)],
            fetch: Some(2),
        });
        let out = collect_with(&multi, 0, &test_ctx_with_batch_size(1));
        assert_eq!(int_column(&out, 0), vec![Some(0), Some(1)]);
    }

    #[test]
    fn output_is_split_into_batches() {
        let out = collect_with(
            &sort(vec![col("name").sort(true, true)], None),
            0,
            &test_ctx_with_batch_size(4),
        );
        assert_eq!(
            out.iter().map(|b| b.num_rows()).collect::<Vec<_>>(),
            vec![4, 2]
        );
    }
}
