//! Leaf operators: table scans and constant rows (`VALUES`).

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::compute::{cast, concat};

use ember_planner::expr::Expr;
use ember_planner::physical::ScanExec;
use ember_planner::schema::{PlanSchema, PlanSchemaRef};
use ember_planner::table::{BatchIter, RowFilter, ScanPartition};
use ember_planner::{EmberError, Result};

use crate::context::TaskContext;
use crate::expr::create_physical_expr;

/// Partition `partition` of a scan is the table source's partition of the same index.
pub fn execute_scan(scan: &ScanExec, partition: usize) -> Result<BatchIter> {
    read_partition(scan, partition, |p| p.execute())
}

/// Partition `partition` of a scan, only the rows `filter` keeps (see
/// [`ScanPartition::execute_filtered`]).
pub fn execute_scan_filtered(
    scan: &ScanExec,
    partition: usize,
    filter: Box<dyn RowFilter>,
) -> Result<BatchIter> {
    read_partition(scan, partition, |p| p.execute_filtered(filter))
}

fn read_partition(
    scan: &ScanExec,
    partition: usize,
    read: impl FnOnce(&dyn ScanPartition) -> Result<BatchIter>,
) -> Result<BatchIter> {
    match scan.partitions.get(partition) {
        Some(p) => read(p.as_ref())
            .map_err(|e| e.context(format!("scanning {} ({})", scan.table_name, p.describe()))),
        // A table with no partitions (no files) still has one, empty, partition.
        None if scan.partitions.is_empty() && partition == 0 => Ok(Box::new(std::iter::empty())),
        None => Err(EmberError::Internal(format!(
            "scan of {} has {} partitions, partition {partition} requested",
            scan.table_name,
            scan.partitions.len()
        ))),
    }
}

/// Evaluates constant rows into one batch. Each value is evaluated over a one-row batch
/// with no columns, so any constant expression (`1 + 2`, `CAST('x' AS ...)`) works.
pub fn execute_values(
    schema: &PlanSchemaRef,
    rows: &[Vec<Expr>],
    ctx: &Arc<TaskContext>,
) -> Result<BatchIter> {
    let arrow_schema = schema.to_arrow_ref();
    if rows.is_empty() {
        return Ok(Box::new(std::iter::empty()));
    }
    let one_row = RecordBatch::try_new_with_options(
        Arc::new(arrow::datatypes::Schema::empty()),
        vec![],
        &RecordBatchOptions::new().with_row_count(Some(1)),
    )?;
    let empty = PlanSchema::empty();
    let mut columns: Vec<Vec<ArrayRef>> = vec![Vec::with_capacity(rows.len()); schema.len()];
    for (r, row) in rows.iter().enumerate() {
        if row.len() != schema.len() {
            return Err(EmberError::Internal(format!(
                "VALUES row {r} has {} values but the schema has {} columns",
                row.len(),
                schema.len()
            )));
        }
        for (c, value) in row.iter().enumerate() {
            let array = create_physical_expr(value, &empty, &ctx.functions)?.evaluate(&one_row)?;
            let target = schema.field(c).data_type();
            let array = if array.data_type() == target {
                array
            } else {
                cast(&array, target)?
            };
            columns[c].push(array);
        }
    }
    let columns = columns
        .iter()
        .map(|parts| {
            let refs: Vec<&dyn arrow::array::Array> = parts.iter().map(|a| a.as_ref()).collect();
            concat(&refs)
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let batch = RecordBatch::try_new_with_options(
        arrow_schema,
        columns,
        &RecordBatchOptions::new().with_row_count(Some(rows.len())),
    )?;
    Ok(Box::new(std::iter::once(Ok(batch))))
}

#[cfg(test)]
mod tests {
    use datafusion_common::ScalarValue;

    use arrow::datatypes::{DataType, Field, Schema};
    use ember_planner::expr::lit;
    use ember_planner::physical::PhysicalPlan;

    use super::super::test_util::*;
    use super::*;

    #[test]
    fn values_are_cast_to_the_schema_types() {
        let schema = Arc::new(PlanSchema::from_arrow(
            None,
            &Schema::new(vec![
                Field::new("a", DataType::Int64, true),
                Field::new("b", DataType::Utf8, true),
            ]),
        ));
        let plan = Arc::new(PhysicalPlan::Values {
            schema,
            rows: vec![
                vec![lit(1i32), lit("x")],
                vec![Expr::Literal(ScalarValue::Null), lit("y")],
            ],
        });
        let out = collect(&plan, 0);
        assert_eq!(out[0].column(0).data_type(), &DataType::Int64);
        assert_eq!(int_column(&out, 0), vec![Some(1), None]);
        assert_eq!(out[0].num_rows(), 2);
    }

    #[test]
    fn values_without_columns_keep_their_row_count() {
        let plan = Arc::new(PhysicalPlan::Values {
            schema: Arc::new(PlanSchema::empty()),
            rows: vec![vec![], vec![], vec![]],
        });
        assert_eq!(row_count(&collect(&plan, 0)), 3);
    }

    #[test]
    fn scan_reads_the_requested_partition() {
        let plan = mem_scan(vec![
            vec![int_batch("a", &[1])],
            vec![int_batch("a", &[2, 3])],
        ]);
        assert_eq!(int_column(&collect(&plan, 1), 0), vec![Some(2), Some(3)]);
    }
}
