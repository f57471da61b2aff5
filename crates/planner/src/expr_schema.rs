//! Types and nullability of expressions over a plan schema.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field};

use crate::error::{EmberError, Result};
use crate::expr::{AggregateFunction, BuiltinFunction, Expr};
use crate::schema::{PlanSchema, QualifiedField};
use crate::types;

impl Expr {
    /// The Arrow type this expression evaluates to over rows of `schema`.
    pub fn data_type(&self, schema: &PlanSchema) -> Result<DataType> {
        use DataType::*;
        Ok(match self {
            Expr::Column(c) => schema.field(schema.index_of_column(c)?).data_type().clone(),
            Expr::OuterColumn(_, t) => t.clone(),
            Expr::Literal(v) => v.data_type(),
            Expr::Alias(e, _) => e.data_type(schema)?,
            Expr::BinaryExpr { left, op, right } => {
                let (l, r) = (left.data_type(schema)?, right.data_type(schema)?);
                types::binary_types(&l, *op, &r)
                    .map_err(|e| e.context(format!("in expression {self}")))?
                    .2
            }
            Expr::Not(_)
            | Expr::IsNull(_)
            | Expr::IsNotNull(_)
            | Expr::Between { .. }
            | Expr::InList { .. }
            | Expr::Like { .. }
            | Expr::InSubquery { .. }
            | Expr::Exists { .. } => Boolean,
            Expr::Negative(e) => {
                let t = e.data_type(schema)?;
                // Only types with a numeric negation; `-date` or `-'abc'` is a plan error
                // here rather than a failure in the middle of a query.
                if !(types::is_numeric(&t) || matches!(t, Null | Interval(_) | Duration(_))) {
                    return Err(EmberError::Plan(format!("cannot negate {t} in {self}")));
                }
                t
            }
            Expr::Case {
                when_then,
                else_expr,
                ..
            } => {
                let mut t = Null;
                for (_, then) in when_then {
                    t = unify(&t, &then.data_type(schema)?, self)?;
                }
                if let Some(e) = else_expr {
                    t = unify(&t, &e.data_type(schema)?, self)?;
                }
                t
            }
            Expr::Cast { data_type, .. } => data_type.clone(),
            Expr::ScalarFunction { func, args } => function_type(*func, args, schema, self)?,
            Expr::ScalarUdf { return_type, .. } => return_type.clone(),
            Expr::AggregateFunction { func, args, .. } => {
                let arg = match args.first() {
                    Some(a) => a.data_type(schema)?,
                    None => Null,
                };
                match func {
                    AggregateFunction::Count => Int64,
                    AggregateFunction::Sum => types::sum_type(&arg)?,
                    AggregateFunction::Avg => types::avg_type(&arg)?,
                    AggregateFunction::Min | AggregateFunction::Max => arg,
                }
            }
            Expr::ScalarSubquery(sq) => sq
                .plan
                .schema()
                .fields()
                .first()
                .map(|f| f.data_type().clone())
                .ok_or_else(|| EmberError::Plan("scalar subquery returns no columns".into()))?,
            Expr::Wildcard { .. } => {
                return Err(EmberError::Internal(
                    "wildcard must be expanded before typing".into(),
                ))
            }
        })
    }

    /// Whether this expression can be NULL. Conservative: `true` unless provably not.
    pub fn nullable(&self, schema: &PlanSchema) -> Result<bool> {
        Ok(match self {
            Expr::Column(c) => schema.field(schema.index_of_column(c)?).field.is_nullable(),
            Expr::Literal(v) => v.is_null(),
            Expr::Alias(e, _) | Expr::Negative(e) | Expr::Not(e) => e.nullable(schema)?,
            Expr::IsNull(_) | Expr::IsNotNull(_) | Expr::Exists { .. } => false,
            // Division by zero yields NULL, so / and % are nullable whatever their inputs.
            Expr::BinaryExpr { left, right, op } => {
                left.nullable(schema)?
                    || right.nullable(schema)?
                    || matches!(
                        op,
                        crate::expr::Operator::Divide | crate::expr::Operator::Modulo
                    )
            }
            Expr::Cast { expr, .. } => expr.nullable(schema)?,
            Expr::AggregateFunction {
                func: AggregateFunction::Count,
                ..
            } => false,
            _ => true,
        })
    }

    /// The output field of this expression when projected over `schema`.
    pub fn to_field(&self, schema: &PlanSchema) -> Result<QualifiedField> {
        let data_type = self.data_type(schema)?;
        let nullable = self.nullable(schema)?;
        let qualifier = match self {
            Expr::Column(c) => schema.field(schema.index_of_column(c)?).qualifier.clone(),
            _ => None,
        };
        Ok(QualifiedField::new(
            qualifier,
            Arc::new(Field::new(self.output_name(), data_type, nullable)),
        ))
    }
}

fn unify(a: &DataType, b: &DataType, expr: &Expr) -> Result<DataType> {
    types::common_type(a, b).ok_or_else(|| {
        EmberError::Plan(format!(
            "branches of {expr} have incompatible types {a} and {b}"
        ))
    })
}

fn function_type(
    func: BuiltinFunction,
    args: &[Expr],
    schema: &PlanSchema,
    expr: &Expr,
) -> Result<DataType> {
    use BuiltinFunction::*;
    use DataType::*;
    let arg_type = |i: usize| -> Result<DataType> {
        args.get(i)
            .ok_or_else(|| {
                EmberError::Plan(format!(
                    "{}() is missing argument {} in {expr}",
                    func.name(),
                    i + 1
                ))
            })?
            .data_type(schema)
    };
    Ok(match func {
        Substring | Upper | Lower | Trim | Ltrim | Rtrim | Concat => Utf8,
        Length => Int32,
        Split => List(Arc::new(Field::new("item", Utf8, true))),
        StartsWith => Boolean,
        Abs | Round | Floor | Ceil => {
            let t = arg_type(0)?;
            if !types::is_numeric(&t) && t != Null {
                return Err(EmberError::Plan(format!(
                    "{}() expects a number, got {t} in {expr}",
                    func.name()
                )));
            }
            t
        }
        Power | Sqrt => Float64,
        Coalesce => {
            let mut t = Null;
            for i in 0..args.len() {
                t = unify(&t, &arg_type(i)?, expr)?;
            }
            t
        }
        NullIf => arg_type(0)?,
        DatePart => Int32,
        ScalarSubqueryValue => arg_type(1)?,
    })
}
