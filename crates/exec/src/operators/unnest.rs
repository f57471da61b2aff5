//! Unnest: one output row per element of a list column, the other columns repeated
//! (`explode` in Spark). NULL and empty lists produce no rows.
//!
//! The work is two index vectors built from the list offsets — which input row each output
//! row copies, and which list element it holds — followed by Arrow `take` on every column.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, RecordBatch, RecordBatchOptions, UInt32Array, UInt64Array,
};
use arrow::buffer::OffsetBuffer;
use arrow::compute::{cast, take};
use arrow::datatypes::ArrowNativeType;
use arrow::datatypes::{DataType, SchemaRef};

use ember_planner::physical::PhysicalPlan;
use ember_planner::schema::PlanSchemaRef;
use ember_planner::table::BatchIter;
use ember_planner::{EmberError, Result};

use crate::context::TaskContext;

pub fn execute_unnest(
    input: &Arc<PhysicalPlan>,
    column: usize,
    schema: &PlanSchemaRef,
    partition: usize,
    ctx: &Arc<TaskContext>,
) -> Result<BatchIter> {
    if column >= schema.len() || column >= input.schema().len() {
        return Err(EmberError::Internal(format!(
            "unnest column {column} out of range for schema {schema}"
        )));
    }
    let schema = schema.to_arrow_ref();
    let input = super::execute(input, partition, ctx)?;
    Ok(Box::new(
        input.map(move |batch| unnest_batch(&batch?, column, &schema)),
    ))
}

fn unnest_batch(batch: &RecordBatch, column: usize, schema: &SchemaRef) -> Result<RecordBatch> {
    let list = batch.column(column);
    let (values, rows, elements) = match list.data_type() {
        DataType::List(_) => {
            let l = list.as_list::<i32>();
            let (rows, elements) = expand(l.offsets(), l.nulls());
            (l.values().clone(), rows, elements)
        }
        DataType::LargeList(_) => {
            let l = list.as_list::<i64>();
            let (rows, elements) = expand(l.offsets(), l.nulls());
            (l.values().clone(), rows, elements)
        }
        other => {
            return Err(EmberError::Execution(format!(
                "unnest expects a list column, got {other}"
            )))
        }
    };
    let rows = UInt32Array::from(rows);
    let elements = UInt64Array::from(elements);
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .enumerate()
        .map(|(i, (c, field))| {
            let out: ArrayRef = if i == column {
                take(values.as_ref(), &elements, None)?
            } else {
                take(c.as_ref(), &rows, None)?
            };
            Ok(if out.data_type() == field.data_type() {
                out
            } else {
                cast(&out, field.data_type())?
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(rows.len())),
    )?)
}

/// For every element of every non-null list: (its row, its index into the values array).
fn expand<O: ArrowNativeType>(
    offsets: &OffsetBuffer<O>,
    nulls: Option<&arrow::buffer::NullBuffer>,
) -> (Vec<u32>, Vec<u64>) {
    let total =
        offsets.last().map_or(0, |l| l.as_usize()) - offsets.first().map_or(0, |f| f.as_usize());
    let mut rows = Vec::with_capacity(total);
    let mut elements = Vec::with_capacity(total);
    for (row, w) in offsets.windows(2).enumerate() {
        if nulls.is_some_and(|n| n.is_null(row)) {
            continue;
        }
        let (start, end) = (w[0].as_usize(), w[1].as_usize());
        rows.extend(std::iter::repeat_n(row as u32, end - start));
        elements.extend((start..end).map(|e| e as u64));
    }
    (rows, elements)
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, ListArray, StringArray};
    use arrow::datatypes::{Field, Int64Type, Schema};
    use ember_planner::schema::PlanSchema;

    use super::super::test_util::*;
    use super::*;

    #[test]
    fn explodes_lists_and_drops_null_and_empty_ones() {
        let lists = ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
            Some(vec![Some(1), Some(2)]),
            None,
            Some(vec![]),
            Some(vec![Some(3), None]),
        ]);
        let input = mem_scan(vec![vec![batch(vec![
            (
                "k",
                Arc::new(StringArray::from(vec!["a", "b", "c", "d"])) as ArrayRef,
            ),
            ("l", Arc::new(lists) as ArrayRef),
        ])]]);
        let schema = Arc::new(PlanSchema::from_arrow(
            None,
            &Schema::new(vec![
                Field::new("k", DataType::Utf8, true),
                Field::new("l", DataType::Int64, true),
            ]),
        ));
        let plan = Arc::new(PhysicalPlan::Unnest {
            input,
            column: 1,
            schema,
        });
        let out = collect(&plan, 0);
        assert_eq!(
            pretty(&out),
            vec![
                "+---+---+",
                "| k | l |",
                "+---+---+",
                "| a | 1 |",
                "| a | 2 |",
                "| d | 3 |",
                "| d |   |",
                "+---+---+",
            ]
        );
        let _ = Int64Array::from(vec![0]);
    }
}
