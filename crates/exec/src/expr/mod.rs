//! Vectorised evaluation of expressions over record batches.
//!
//! A logical [`Expr`] is compiled once per task against its input schema into a
//! [`PhysicalExpr`] tree: columns resolved to indices, implicit casts inserted (by the
//! rules in `ember_planner::types`), UDFs looked up, constant subtrees folded to literals.
//! Evaluation then runs Arrow kernels on whole arrays — no per-row dispatch.
//!
//! The type an evaluator returns is the type `Expr::data_type` promised the planner;
//! [`create_physical_expr`] checks that once per compilation, so a disagreement is an
//! `Internal` error at plan time rather than a wrong schema at run time.

mod binary;
mod case;
mod cast;
mod datum;
mod decimal;
mod functions;
mod in_list;
mod like;
mod udf;
mod unary;

#[cfg(test)]
mod test_util;

use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray};
use arrow::datatypes::{DataType, Schema};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion_common::ScalarValue;

use ember_planner::expr::Expr;
use ember_planner::schema::PlanSchema;
use ember_planner::{internal_err, EmberError, Result};

use crate::udf::FunctionRegistry;

pub use cast::cast_array;

pub trait PhysicalExpr: Send + Sync + fmt::Debug {
    /// The type of the arrays `evaluate` returns.
    fn data_type(&self) -> &DataType;
    /// Evaluates over every row of `batch`; the result has `batch.num_rows()` entries.
    fn evaluate(&self, batch: &RecordBatch) -> Result<ArrayRef>;
    /// The value, when this expression is a constant. Lets parents pass constants to
    /// kernels as scalars instead of materialising an array per batch.
    fn as_literal(&self) -> Option<&ScalarValue> {
        None
    }
}

pub type PhysicalExprRef = Arc<dyn PhysicalExpr>;

/// Compiles `expr`, written against `schema`, into an evaluator.
pub fn create_physical_expr(
    expr: &Expr,
    schema: &PlanSchema,
    functions: &FunctionRegistry,
) -> Result<PhysicalExprRef> {
    let physical = build(expr, schema, functions)?;
    let promised = expr.data_type(schema)?;
    if physical.data_type() != &promised {
        return internal_err!(
            "the evaluator of {expr} returns {} but its schema type is {promised}",
            physical.data_type()
        );
    }
    Ok(physical)
}

/// Compiles a list of expressions against one schema.
pub fn create_physical_exprs(
    exprs: &[Expr],
    schema: &PlanSchema,
    functions: &FunctionRegistry,
) -> Result<Vec<PhysicalExprRef>> {
    exprs
        .iter()
        .map(|e| create_physical_expr(e, schema, functions))
        .collect()
}

/// Evaluates an expression without input columns (VALUES rows, constant folding).
/// UDFs are not available here: they are looked up per session at execution.
pub fn evaluate_constant(expr: &Expr) -> Result<ScalarValue> {
    let physical = create_physical_expr(expr, &PlanSchema::empty(), &FunctionRegistry::default())?;
    if let Some(v) = physical.as_literal() {
        return Ok(v.clone());
    }
    let array = physical.evaluate(&one_row_batch()?)?;
    Ok(ScalarValue::try_from_array(&array, 0)?)
}

/// Evaluates a boolean predicate; NULL counts as false (as WHERE does).
pub fn evaluate_predicate(
    predicate: &dyn PhysicalExpr,
    batch: &RecordBatch,
) -> Result<BooleanArray> {
    let array = predicate.evaluate(batch)?;
    let bools = array
        .as_any()
        .downcast_ref::<BooleanArray>()
        .ok_or_else(|| {
            EmberError::Execution(format!(
                "predicate must be boolean, got {}",
                array.data_type()
            ))
        })?;
    Ok(if bools.null_count() > 0 {
        arrow::compute::prep_null_mask_filter(bools)
    } else {
        bools.clone()
    })
}

/// A batch with one row and no columns: what constant expressions are evaluated over.
fn one_row_batch() -> Result<RecordBatch> {
    Ok(RecordBatch::try_new_with_options(
        Arc::new(Schema::empty()),
        vec![],
        &RecordBatchOptions::new().with_row_count(Some(1)),
    )?)
}

/// True when `expr` reads no column and calls nothing whose result may vary per call, so
/// it can be evaluated once at compile time.
fn is_constant(expr: &Expr) -> bool {
    !expr.exists(&mut |e| {
        matches!(
            e,
            Expr::Column(_)
                | Expr::OuterColumn(..)
                | Expr::ScalarUdf { .. }
                | Expr::AggregateFunction { .. }
                | Expr::ScalarSubquery(_)
                | Expr::InSubquery { .. }
                | Expr::Exists { .. }
                | Expr::Wildcard { .. }
        )
    })
}

/// Replaces a constant evaluator by its value. A constant that fails to evaluate (say
/// `CAST('x' AS INT)` in a CASE branch no row reaches) is kept as is: the error belongs to
/// the rows that would evaluate it, if any.
fn fold(physical: PhysicalExprRef) -> PhysicalExprRef {
    let folded = one_row_batch()
        .and_then(|batch| physical.evaluate(&batch))
        .and_then(|array| Ok(ScalarValue::try_from_array(&array, 0)?));
    match folded {
        Ok(value) if &value.data_type() == physical.data_type() => {
            Arc::new(LiteralExpr::new(value))
        }
        _ => physical,
    }
}

/// Compiles one node (children first), folding constant subtrees.
fn build(
    expr: &Expr,
    schema: &PlanSchema,
    functions: &FunctionRegistry,
) -> Result<PhysicalExprRef> {
    let physical = build_node(expr, schema, functions)?;
    if physical.as_literal().is_none() && !matches!(expr, Expr::Alias(..)) && is_constant(expr) {
        return Ok(fold(physical));
    }
    Ok(physical)
}

fn build_node(
    expr: &Expr,
    schema: &PlanSchema,
    functions: &FunctionRegistry,
) -> Result<PhysicalExprRef> {
    let child = |e: &Expr| build(e, schema, functions);
    match expr {
        Expr::Column(c) => {
            let index = schema.index_of_column(c)?;
            Ok(Arc::new(ColumnExpr {
                index,
                data_type: schema.field(index).data_type().clone(),
            }))
        }
        Expr::Literal(v) => Ok(Arc::new(LiteralExpr::new(v.clone()))),
        Expr::Alias(e, _) => child(e),
        Expr::BinaryExpr { left, op, right } => binary::build(child(left)?, *op, child(right)?),
        Expr::Not(e) => unary::not(child(e)?),
        Expr::Negative(e) => unary::negative(child(e)?),
        Expr::IsNull(e) => Ok(unary::is_null(child(e)?, false)),
        Expr::IsNotNull(e) => Ok(unary::is_null(child(e)?, true)),
        Expr::Between {
            expr,
            negated,
            low,
            high,
        } => binary::between(child(expr)?, child(low)?, child(high)?, *negated),
        Expr::InList {
            expr,
            list,
            negated,
        } => {
            let list = list.iter().map(child).collect::<Result<Vec<_>>>()?;
            in_list::build(child(expr)?, list, *negated)
        }
        Expr::Like {
            negated,
            expr,
            pattern,
            case_insensitive,
        } => like::build(child(expr)?, child(pattern)?, *negated, *case_insensitive),
        Expr::Case {
            operand,
            when_then,
            else_expr,
        } => {
            let operand = operand.as_deref().map(child).transpose()?;
            let when_then = when_then
                .iter()
                .map(|(w, t)| Ok((child(w)?, child(t)?)))
                .collect::<Result<Vec<_>>>()?;
            let else_expr = else_expr.as_deref().map(child).transpose()?;
            case::build(operand, when_then, else_expr)
        }
        Expr::Cast { expr, data_type } => cast::build(child(expr)?, data_type),
        Expr::ScalarFunction { func, args } => {
            let args = args.iter().map(child).collect::<Result<Vec<_>>>()?;
            functions::build(*func, args)
        }
        Expr::ScalarUdf {
            name,
            args,
            return_type,
        } => {
            let args = args.iter().map(child).collect::<Result<Vec<_>>>()?;
            udf::build(name, args, return_type, functions)
        }
        Expr::OuterColumn(c, _) => internal_err!(
            "outer column {c} reached execution: the correlated subquery was not decorrelated"
        ),
        Expr::AggregateFunction { .. } => internal_err!(
            "aggregate {expr} reached expression evaluation: the planner computes aggregates \
             in an Aggregate operator"
        ),
        Expr::ScalarSubquery(_) | Expr::InSubquery { .. } | Expr::Exists { .. } => {
            internal_err!(
                "subquery {expr} reached execution: the planner rewrites subqueries into joins"
            )
        }
        Expr::Wildcard { .. } => {
            internal_err!("wildcard {expr} reached execution: the planner expands it")
        }
    }
}

#[derive(Debug)]
pub struct ColumnExpr {
    pub index: usize,
    pub data_type: DataType,
}

impl PhysicalExpr for ColumnExpr {
    fn data_type(&self) -> &DataType {
        &self.data_type
    }
    fn evaluate(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        if self.index >= batch.num_columns() {
            return internal_err!(
                "column #{} is out of range: the batch has {} columns",
                self.index,
                batch.num_columns()
            );
        }
        Ok(batch.column(self.index).clone())
    }
}

#[derive(Debug)]
pub struct LiteralExpr {
    pub value: ScalarValue,
    pub data_type: DataType,
}

impl LiteralExpr {
    pub fn new(value: ScalarValue) -> Self {
        LiteralExpr {
            data_type: value.data_type(),
            value,
        }
    }
}

impl PhysicalExpr for LiteralExpr {
    fn data_type(&self) -> &DataType {
        &self.data_type
    }
    fn evaluate(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        Ok(self.value.to_array_of_size(batch.num_rows())?)
    }
    fn as_literal(&self) -> Option<&ScalarValue> {
        Some(&self.value)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Date32Array, Decimal128Array, Int64Array, StringArray};
    use arrow::datatypes::IntervalMonthDayNano;
    use ember_planner::expr::{col, func, lit, sum, BuiltinFunction as F, Operator};
    use ember_planner::schema::Column;

    use super::test_util::{batch, empty_batch, eval, strings, try_eval};
    use super::*;

    #[test]
    fn evaluate_constant_folds_date_arithmetic() {
        // date '1998-12-01' - interval '90' day
        let e = lit(ScalarValue::Date32(Some(10561))).sub(lit(ScalarValue::IntervalMonthDayNano(
            Some(IntervalMonthDayNano::new(0, 90, 0)),
        )));
        assert_eq!(
            evaluate_constant(&e).unwrap(),
            ScalarValue::Date32(Some(10471))
        );
        assert_eq!(
            evaluate_constant(&lit(1i64).add(lit(2i64))).unwrap(),
            ScalarValue::Int64(Some(3))
        );
        let err = evaluate_constant(&col("x")).unwrap_err();
        assert!(err.to_string().contains("'x' not found"), "{err}");
    }

    #[test]
    fn literals_broadcast_to_the_batch() {
        let out = eval(&lit("a"), &empty_batch(4));
        assert_eq!(strings(&out), ["a", "a", "a", "a"]);
    }

    #[test]
    fn unsupported_variants_are_internal_errors() {
        let b = empty_batch(1);
        let outer = Expr::OuterColumn(Column::unqualified("o"), DataType::Int64);
        let err = try_eval(&outer, &b).unwrap_err();
        assert!(matches!(err, EmberError::Internal(_)), "{err}");
        assert!(err.to_string().contains("decorrelated"), "{err}");
        let err = try_eval(&sum(lit(1i64)), &b).unwrap_err();
        assert!(matches!(err, EmberError::Internal(_)), "{err}");
    }

    /// Every kind of expression evaluates to exactly the type `Expr::data_type` promises
    /// (the test helper asserts it on each evaluation).
    #[test]
    fn evaluated_types_match_planned_types() {
        let b = batch(vec![
            (
                "price",
                Arc::new(
                    Decimal128Array::from(vec![Some(12345), None])
                        .with_precision_and_scale(15, 2)
                        .unwrap(),
                ) as ArrayRef,
            ),
            (
                "qty",
                Arc::new(Int64Array::from(vec![Some(3), Some(0)])) as ArrayRef,
            ),
            (
                "day",
                Arc::new(Date32Array::from(vec![Some(9000), None])) as ArrayRef,
            ),
            (
                "name",
                Arc::new(StringArray::from(vec![Some("abc"), None])) as ArrayRef,
            ),
        ]);
        let exprs = vec![
            col("price").mul(lit(1i64).sub(col("price"))),
            col("price").div(col("qty")),
            col("price").binary(
                Operator::Modulo,
                lit(ScalarValue::Decimal128(Some(7), 2, 1)),
            ),
            col("qty").div(lit(2i64)),
            col("qty").add(lit(1.5)),
            col("price").add(lit(0.5)),
            col("day").sub(col("day")),
            col("day").add(lit(ScalarValue::IntervalMonthDayNano(Some(
                IntervalMonthDayNano::new(1, 0, 0),
            )))),
            col("name").binary(Operator::StringConcat, col("qty")),
            func(F::Round, vec![col("price"), lit(1i64)]),
            func(F::Abs, vec![col("qty")]),
            func(F::Coalesce, vec![col("price"), lit(0i64)]),
            func(F::NullIf, vec![col("qty"), lit(0i64)]),
            func(F::Length, vec![col("name")]),
            func(F::Split, vec![col("name"), lit("b")]),
            func(F::DatePart, vec![lit("year"), col("day")]),
            Expr::Case {
                operand: None,
                when_then: vec![(col("qty").gt(lit(1i64)), col("price"))],
                else_expr: Some(Box::new(lit(0i64))),
            },
            Expr::Negative(Box::new(col("price"))),
            col("qty").cast_to(DataType::Decimal128(10, 3)),
            lit(ScalarValue::Null).add(col("qty")),
        ];
        for e in exprs {
            try_eval(&e, &b).unwrap_or_else(|err| panic!("{e}: {err}"));
        }
    }
}
