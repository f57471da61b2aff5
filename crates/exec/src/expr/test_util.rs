//! Helpers for expression tests: build a batch, compile and evaluate an `Expr` over it, and
//! check on every evaluation that the result has the type the planner promised.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray};
use arrow::datatypes::{Field, Schema};
use arrow::record_batch::RecordBatch;

use ember_planner::expr::Expr;
use ember_planner::schema::PlanSchema;
use ember_planner::Result;

use super::create_physical_expr;
use crate::udf::FunctionRegistry;

/// A batch of nullable columns named as given.
pub(crate) fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, a)| Field::new(*name, a.data_type().clone(), true))
        .collect();
    let arrays = columns.into_iter().map(|(_, a)| a).collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).expect("valid test batch")
}

/// A batch with `rows` rows and no columns.
pub(crate) fn empty_batch(rows: usize) -> RecordBatch {
    RecordBatch::try_new_with_options(
        Arc::new(Schema::empty()),
        vec![],
        &arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .expect("valid empty batch")
}

pub(crate) fn try_eval_with(
    expr: &Expr,
    batch: &RecordBatch,
    functions: &FunctionRegistry,
) -> Result<ArrayRef> {
    let schema = PlanSchema::from_arrow(None, batch.schema().as_ref());
    let physical = create_physical_expr(expr, &schema, functions)?;
    let promised = expr.data_type(&schema)?;
    let out = physical.evaluate(batch)?;
    assert_eq!(out.data_type(), &promised, "evaluated type of {expr}");
    assert_eq!(out.len(), batch.num_rows(), "result length of {expr}");
    Ok(out)
}

pub(crate) fn try_eval(expr: &Expr, batch: &RecordBatch) -> Result<ArrayRef> {
    try_eval_with(expr, batch, &FunctionRegistry::default())
}

pub(crate) fn eval(expr: &Expr, batch: &RecordBatch) -> ArrayRef {
    try_eval(expr, batch).unwrap_or_else(|e| panic!("evaluating {expr}: {e}"))
}

pub(crate) fn eval_err(expr: &Expr, batch: &RecordBatch) -> String {
    match try_eval(expr, batch) {
        Ok(a) => panic!("expected {expr} to fail, got {a:?}"),
        Err(e) => e.to_string(),
    }
}

/// Evaluates a boolean expression into `Option<bool>`s.
pub(crate) fn eval_bools(expr: &Expr, batch: &RecordBatch) -> Vec<Option<bool>> {
    let out = eval(expr, batch);
    let b = out
        .as_any()
        .downcast_ref::<BooleanArray>()
        .unwrap_or_else(|| panic!("{expr} is not boolean"));
    b.iter().collect()
}

/// Renders each value of `array` as text (NULL as "NULL"), for compact assertions.
pub(crate) fn strings(array: &ArrayRef) -> Vec<String> {
    let formatter =
        arrow::util::display::ArrayFormatter::try_new(array.as_ref(), &Default::default())
            .expect("formattable array");
    (0..array.len())
        .map(|i| {
            if array.is_null(i) {
                "NULL".to_string()
            } else {
                formatter.value(i).to_string()
            }
        })
        .collect()
}
