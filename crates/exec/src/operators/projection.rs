//! Projection: evaluates one expression per output column.

use std::sync::Arc;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::compute::cast;
use arrow::datatypes::SchemaRef;

use ember_planner::expr::Expr;
use ember_planner::physical::PhysicalPlan;
use ember_planner::schema::PlanSchemaRef;
use ember_planner::table::BatchIter;
use ember_planner::{EmberError, Result};

use crate::context::TaskContext;
use crate::expr::{create_physical_exprs, PhysicalExprRef};

pub fn execute_projection(
    input: &Arc<PhysicalPlan>,
    exprs: &[Expr],
    schema: &PlanSchemaRef,
    partition: usize,
    ctx: &Arc<TaskContext>,
) -> Result<BatchIter> {
    if exprs.len() != schema.len() {
        return Err(EmberError::Internal(format!(
            "projection has {} expressions but its schema has {} columns",
            exprs.len(),
            schema.len()
        )));
    }
    let exprs = create_physical_exprs(exprs, input.schema(), &ctx.functions)?;
    let schema = schema.to_arrow_ref();
    let input = super::execute(input, partition, ctx)?;
    Ok(Box::new(
        input.map(move |batch| project(&batch?, &exprs, &schema)),
    ))
}

/// Evaluates `exprs` over `batch` into a batch of `schema`. A result whose type differs
/// from the schema's (e.g. an untyped NULL literal) is cast, so the batch always carries
/// exactly the types the plan promised.
pub fn project(
    batch: &RecordBatch,
    exprs: &[PhysicalExprRef],
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let columns = exprs
        .iter()
        .zip(schema.fields())
        .map(|(e, field)| {
            let array = e.evaluate(batch)?;
            if array.data_type() == field.data_type() {
                Ok(array)
            } else {
                Ok(cast(&array, field.data_type())?)
            }
        })
        .collect::<Result<Vec<_>>>()?;
    RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
    .map_err(|e| EmberError::Internal(format!("projection output does not match its schema: {e}")))
}

#[cfg(test)]
mod tests {
    use arrow::array::{ArrayRef, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion_common::ScalarValue;
    use ember_planner::expr::{col, lit};
    use ember_planner::schema::PlanSchema;

    use super::super::test_util::*;
    use super::*;

    #[test]
    fn reorders_renames_and_adds_constants() {
        let input = mem_scan(vec![vec![batch(vec![
            ("a", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
            ("b", Arc::new(StringArray::from(vec!["x", "y"])) as ArrayRef),
        ])]]);
        let schema = Arc::new(PlanSchema::from_arrow(
            None,
            &Schema::new(vec![
                Field::new("b2", DataType::Utf8, true),
                Field::new("a", DataType::Int64, true),
                Field::new("seven", DataType::Int64, false),
                Field::new("nothing", DataType::Utf8, true),
            ]),
        ));
        let plan = Arc::new(PhysicalPlan::Projection {
            input,
            exprs: vec![
                col("b").alias("b2"),
                col("a"),
                lit(7i64),
                Expr::Literal(ScalarValue::Null),
            ],
            schema,
        });
        let out = collect(&plan, 0);
        assert_eq!(
            pretty(&out),
            vec![
                "+----+---+-------+---------+",
                "| b2 | a | seven | nothing |",
                "+----+---+-------+---------+",
                "| x  | 1 | 7     |         |",
                "| y  | 2 | 7     |         |",
                "+----+---+-------+---------+",
            ]
        );
    }

    #[test]
    fn empty_projection_keeps_row_count() {
        let plan = Arc::new(PhysicalPlan::Projection {
            input: mem_scan(vec![vec![int_batch("a", &[1, 2, 3])]]),
            exprs: vec![],
            schema: Arc::new(PlanSchema::empty()),
        });
        assert_eq!(row_count(&collect(&plan, 0)), 3);
    }
}
