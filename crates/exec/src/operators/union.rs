//! Union: the partitions of all inputs, one after another. Partition `p` of the union is
//! partition `p - offset` of the input that owns it, so no rows move and a union adds no
//! work beyond renaming columns to the union's schema.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::cast;

use ember_planner::physical::PhysicalPlan;
use ember_planner::schema::PlanSchemaRef;
use ember_planner::table::BatchIter;
use ember_planner::{EmberError, Result};

use crate::context::TaskContext;

pub fn execute_union(
    inputs: &[Arc<PhysicalPlan>],
    schema: &PlanSchemaRef,
    partition: usize,
    ctx: &Arc<TaskContext>,
) -> Result<BatchIter> {
    let mut offset = 0;
    for input in inputs {
        let n = input.output_partitions();
        if partition < offset + n {
            let schema = schema.to_arrow_ref();
            let iter = super::execute(input, partition - offset, ctx)?;
            return Ok(Box::new(iter.map(move |b| conform(b?, &schema))));
        }
        offset += n;
    }
    Err(EmberError::Internal(format!(
        "union has {offset} partitions, partition {partition} requested"
    )))
}

/// Relabels `batch` with the union's `schema` (the first input's names); inputs were
/// coerced by the planner, so a remaining type difference is only a cast.
pub fn conform(batch: RecordBatch, schema: &arrow::datatypes::SchemaRef) -> Result<RecordBatch> {
    if batch.schema().as_ref() == schema.as_ref() {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c.clone())
            } else {
                cast(c, f.data_type())
            }
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )?)
}

#[cfg(test)]
mod tests {
    use arrow::array::{ArrayRef, Int32Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use ember_planner::schema::PlanSchema;

    use super::super::test_util::*;
    use super::*;

    #[test]
    fn partitions_map_to_inputs_in_order_with_the_union_schema() {
        let a = mem_scan(vec![vec![int_batch("a", &[1])], vec![int_batch("a", &[2])]]);
        let b = mem_scan(vec![vec![batch(vec![(
            "b",
            Arc::new(Int32Array::from(vec![3, 4])) as ArrayRef,
        )])]]);
        let schema = Arc::new(PlanSchema::from_arrow(
            None,
            &Schema::new(vec![Field::new("u", DataType::Int64, true)]),
        ));
        let plan = Arc::new(PhysicalPlan::Union {
            inputs: vec![a, b],
            schema,
        });
        assert_eq!(plan.output_partitions(), 3);
        assert_eq!(int_column(&collect(&plan, 1), 0), vec![Some(2)]);
        let last = collect(&plan, 2);
        assert_eq!(int_column(&last, 0), vec![Some(3), Some(4)]);
        assert_eq!(last[0].schema().field(0).name(), "u");
        assert_eq!(last[0].column(0).data_type(), &DataType::Int64);
    }
}
