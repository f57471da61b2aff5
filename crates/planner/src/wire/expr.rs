//! Expressions on the wire: a mirror of [`Expr`] whose literals are [`ScalarWire`]s and
//! whose subqueries refer to logical nodes of the enclosing [`super::WirePlan`].

use arrow::datatypes::DataType;
use serde::{Deserialize, Serialize};

use super::scalar::ScalarWire;
use super::{Decoder, Encoder};
use crate::error::Result;
use crate::expr::{AggregateFunction, BuiltinFunction, Expr, Operator, SortExpr, Subquery};
use crate::schema::Column;

/// Declares a field-less mirror of a field-less enum with conversions both ways. Both
/// matches are exhaustive, so a new variant in the original fails to compile here until it
/// is added to the wire form.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $wire:ident <=> $orig:ident { $($variant:ident),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $wire {
            $($variant),*
        }

        impl From<$orig> for $wire {
            fn from(value: $orig) -> Self {
                match value {
                    $($orig::$variant => $wire::$variant),*
                }
            }
        }

        impl From<$wire> for $orig {
            fn from(value: $wire) -> Self {
                match value {
                    $($wire::$variant => $orig::$variant),*
                }
            }
        }
    };
}
pub(crate) use wire_enum;

wire_enum!(
    /// [`Operator`] on the wire.
    OperatorWire <=> Operator {
        Eq, NotEq, Lt, LtEq, Gt, GtEq, Plus, Minus, Multiply, Divide, Modulo, And, Or,
        StringConcat,
    }
);

wire_enum!(
    /// [`BuiltinFunction`] on the wire.
    BuiltinFunctionWire <=> BuiltinFunction {
        Substring, Upper, Lower, Trim, Ltrim, Rtrim, Length, Concat, Split, StartsWith, Abs,
        Round, Floor, Ceil, Power, Sqrt, Coalesce, NullIf, DatePart, ScalarSubqueryValue,
    }
);

wire_enum!(
    /// [`AggregateFunction`] on the wire.
    AggregateFunctionWire <=> AggregateFunction { Count, Sum, Avg, Min, Max }
);

/// A subquery: its plan is logical node `plan` of the enclosing [`super::WirePlan`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubqueryWire {
    pub plan: usize,
    pub outer_refs: Vec<Column>,
}

/// [`Expr`] on the wire, variant for variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExprWire {
    Column(Column),
    OuterColumn {
        column: Column,
        data_type: DataType,
    },
    Literal(ScalarWire),
    Alias {
        expr: Box<ExprWire>,
        name: String,
    },
    BinaryExpr {
        left: Box<ExprWire>,
        op: OperatorWire,
        right: Box<ExprWire>,
    },
    /// A left-deep chain `((first op1 e1) op2 e2) ...` of two or more binary expressions,
    /// kept flat: long `AND`/`OR`/`+` chains would otherwise nest deeper than JSON parsers
    /// accept (serde_json stops at 128 levels). Decodes to exactly the same tree.
    BinaryChain {
        first: Box<ExprWire>,
        rest: Vec<(OperatorWire, ExprWire)>,
    },
    Not(Box<ExprWire>),
    Negative(Box<ExprWire>),
    IsNull(Box<ExprWire>),
    IsNotNull(Box<ExprWire>),
    Between {
        expr: Box<ExprWire>,
        negated: bool,
        low: Box<ExprWire>,
        high: Box<ExprWire>,
    },
    InList {
        expr: Box<ExprWire>,
        list: Vec<ExprWire>,
        negated: bool,
    },
    Like {
        negated: bool,
        expr: Box<ExprWire>,
        pattern: Box<ExprWire>,
        case_insensitive: bool,
    },
    Case {
        operand: Option<Box<ExprWire>>,
        when_then: Vec<(ExprWire, ExprWire)>,
        else_expr: Option<Box<ExprWire>>,
    },
    Cast {
        expr: Box<ExprWire>,
        data_type: DataType,
    },
    ScalarFunction {
        func: BuiltinFunctionWire,
        args: Vec<ExprWire>,
    },
    ScalarUdf {
        name: String,
        args: Vec<ExprWire>,
        return_type: DataType,
    },
    AggregateFunction {
        func: AggregateFunctionWire,
        args: Vec<ExprWire>,
        distinct: bool,
    },
    ScalarSubquery(SubqueryWire),
    InSubquery {
        expr: Box<ExprWire>,
        subquery: SubqueryWire,
        negated: bool,
    },
    Exists {
        subquery: SubqueryWire,
        negated: bool,
    },
    Wildcard {
        qualifier: Option<String>,
    },
}

/// [`SortExpr`] on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SortExprWire {
    pub expr: ExprWire,
    pub asc: bool,
    pub nulls_first: bool,
}

impl Encoder {
    pub(crate) fn expr(&mut self, expr: &Expr) -> Result<ExprWire> {
        use ExprWire as W;
        let bx =
            |e: &Expr, enc: &mut Encoder| -> Result<Box<ExprWire>> { Ok(Box::new(enc.expr(e)?)) };
        Ok(match expr {
            Expr::Column(c) => W::Column(c.clone()),
            Expr::OuterColumn(column, data_type) => W::OuterColumn {
                column: column.clone(),
                data_type: data_type.clone(),
            },
            Expr::Literal(v) => W::Literal(ScalarWire::encode(v)?),
            Expr::Alias(e, name) => W::Alias {
                expr: bx(e, self)?,
                name: name.clone(),
            },
            Expr::BinaryExpr { left, op, right } => {
                // Walk down the left spine: `rest` collects (op, right) from the top.
                let mut rest = vec![(*op, right.as_ref())];
                let mut first = left.as_ref();
                while let Expr::BinaryExpr { left, op, right } = first {
                    rest.push((*op, right.as_ref()));
                    first = left.as_ref();
                }
                if rest.len() == 1 {
                    W::BinaryExpr {
                        left: bx(left, self)?,
                        op: (*op).into(),
                        right: bx(right, self)?,
                    }
                } else {
                    rest.reverse();
                    W::BinaryChain {
                        first: bx(first, self)?,
                        rest: rest
                            .into_iter()
                            .map(|(op, e)| Ok((op.into(), self.expr(e)?)))
                            .collect::<Result<_>>()?,
                    }
                }
            }
            Expr::Not(e) => W::Not(bx(e, self)?),
            Expr::Negative(e) => W::Negative(bx(e, self)?),
            Expr::IsNull(e) => W::IsNull(bx(e, self)?),
            Expr::IsNotNull(e) => W::IsNotNull(bx(e, self)?),
            Expr::Between {
                expr,
                negated,
                low,
                high,
            } => W::Between {
                expr: bx(expr, self)?,
                negated: *negated,
                low: bx(low, self)?,
                high: bx(high, self)?,
            },
            Expr::InList {
                expr,
                list,
                negated,
            } => W::InList {
                expr: bx(expr, self)?,
                list: self.exprs(list)?,
                negated: *negated,
            },
            Expr::Like {
                negated,
                expr,
                pattern,
                case_insensitive,
            } => W::Like {
                negated: *negated,
                expr: bx(expr, self)?,
                pattern: bx(pattern, self)?,
                case_insensitive: *case_insensitive,
            },
            Expr::Case {
                operand,
                when_then,
                else_expr,
            } => W::Case {
                operand: operand.as_deref().map(|e| bx(e, self)).transpose()?,
                when_then: self.expr_pairs(when_then)?,
                else_expr: else_expr.as_deref().map(|e| bx(e, self)).transpose()?,
            },
            Expr::Cast { expr, data_type } => W::Cast {
                expr: bx(expr, self)?,
                data_type: data_type.clone(),
            },
            Expr::ScalarFunction { func, args } => W::ScalarFunction {
                func: (*func).into(),
                args: self.exprs(args)?,
            },
            Expr::ScalarUdf {
                name,
                args,
                return_type,
            } => W::ScalarUdf {
                name: name.clone(),
                args: self.exprs(args)?,
                return_type: return_type.clone(),
            },
            Expr::AggregateFunction {
                func,
                args,
                distinct,
            } => W::AggregateFunction {
                func: (*func).into(),
                args: self.exprs(args)?,
                distinct: *distinct,
            },
            Expr::ScalarSubquery(s) => W::ScalarSubquery(self.subquery(s)?),
            Expr::InSubquery {
                expr,
                subquery,
                negated,
            } => W::InSubquery {
                expr: bx(expr, self)?,
                subquery: self.subquery(subquery)?,
                negated: *negated,
            },
            Expr::Exists { subquery, negated } => W::Exists {
                subquery: self.subquery(subquery)?,
                negated: *negated,
            },
            Expr::Wildcard { qualifier } => W::Wildcard {
                qualifier: qualifier.clone(),
            },
        })
    }

    pub(crate) fn exprs(&mut self, exprs: &[Expr]) -> Result<Vec<ExprWire>> {
        exprs.iter().map(|e| self.expr(e)).collect()
    }

    pub(crate) fn expr_pairs(
        &mut self,
        pairs: &[(Expr, Expr)],
    ) -> Result<Vec<(ExprWire, ExprWire)>> {
        pairs
            .iter()
            .map(|(a, b)| Ok((self.expr(a)?, self.expr(b)?)))
            .collect()
    }

    pub(crate) fn opt_expr(&mut self, expr: &Option<Expr>) -> Result<Option<ExprWire>> {
        expr.as_ref().map(|e| self.expr(e)).transpose()
    }

    pub(crate) fn sort_exprs(&mut self, exprs: &[SortExpr]) -> Result<Vec<SortExprWire>> {
        exprs
            .iter()
            .map(|s| {
                Ok(SortExprWire {
                    expr: self.expr(&s.expr)?,
                    asc: s.asc,
                    nulls_first: s.nulls_first,
                })
            })
            .collect()
    }

    fn subquery(&mut self, subquery: &Subquery) -> Result<SubqueryWire> {
        Ok(SubqueryWire {
            plan: self.logical_plan(&subquery.plan)?,
            outer_refs: subquery.outer_refs.clone(),
        })
    }
}

impl Decoder<'_> {
    pub(crate) fn expr(&self, wire: &ExprWire) -> Result<Expr> {
        use ExprWire as W;
        let bx = |e: &ExprWire| -> Result<Box<Expr>> { Ok(Box::new(self.expr(e)?)) };
        Ok(match wire {
            W::Column(c) => Expr::Column(c.clone()),
            W::OuterColumn { column, data_type } => {
                Expr::OuterColumn(column.clone(), data_type.clone())
            }
            W::Literal(v) => Expr::Literal(v.decode()?),
            W::Alias { expr, name } => Expr::Alias(bx(expr)?, name.clone()),
            W::BinaryExpr { left, op, right } => Expr::BinaryExpr {
                left: bx(left)?,
                op: (*op).into(),
                right: bx(right)?,
            },
            W::BinaryChain { first, rest } => {
                let mut expr = self.expr(first)?;
                for (op, right) in rest {
                    expr = Expr::BinaryExpr {
                        left: Box::new(expr),
                        op: (*op).into(),
                        right: Box::new(self.expr(right)?),
                    };
                }
                expr
            }
            W::Not(e) => Expr::Not(bx(e)?),
            W::Negative(e) => Expr::Negative(bx(e)?),
            W::IsNull(e) => Expr::IsNull(bx(e)?),
            W::IsNotNull(e) => Expr::IsNotNull(bx(e)?),
            W::Between {
                expr,
                negated,
                low,
                high,
            } => Expr::Between {
                expr: bx(expr)?,
                negated: *negated,
                low: bx(low)?,
                high: bx(high)?,
            },
            W::InList {
                expr,
                list,
                negated,
            } => Expr::InList {
                expr: bx(expr)?,
                list: self.exprs(list)?,
                negated: *negated,
            },
            W::Like {
                negated,
                expr,
                pattern,
                case_insensitive,
            } => Expr::Like {
                negated: *negated,
                expr: bx(expr)?,
                pattern: bx(pattern)?,
                case_insensitive: *case_insensitive,
            },
            W::Case {
                operand,
                when_then,
                else_expr,
            } => Expr::Case {
                operand: operand.as_deref().map(bx).transpose()?,
                when_then: self.expr_pairs(when_then)?,
                else_expr: else_expr.as_deref().map(bx).transpose()?,
            },
            W::Cast { expr, data_type } => Expr::Cast {
                expr: bx(expr)?,
                data_type: data_type.clone(),
            },
            W::ScalarFunction { func, args } => Expr::ScalarFunction {
                func: (*func).into(),
                args: self.exprs(args)?,
            },
            W::ScalarUdf {
                name,
                args,
                return_type,
            } => Expr::ScalarUdf {
                name: name.clone(),
                args: self.exprs(args)?,
                return_type: return_type.clone(),
            },
            W::AggregateFunction {
                func,
                args,
                distinct,
            } => Expr::AggregateFunction {
                func: (*func).into(),
                args: self.exprs(args)?,
                distinct: *distinct,
            },
            W::ScalarSubquery(s) => Expr::ScalarSubquery(self.subquery(s)?),
            W::InSubquery {
                expr,
                subquery,
                negated,
            } => Expr::InSubquery {
                expr: bx(expr)?,
                subquery: self.subquery(subquery)?,
                negated: *negated,
            },
            W::Exists { subquery, negated } => Expr::Exists {
                subquery: self.subquery(subquery)?,
                negated: *negated,
            },
            W::Wildcard { qualifier } => Expr::Wildcard {
                qualifier: qualifier.clone(),
            },
        })
    }

    pub(crate) fn exprs(&self, exprs: &[ExprWire]) -> Result<Vec<Expr>> {
        exprs.iter().map(|e| self.expr(e)).collect()
    }

    pub(crate) fn expr_pairs(&self, pairs: &[(ExprWire, ExprWire)]) -> Result<Vec<(Expr, Expr)>> {
        pairs
            .iter()
            .map(|(a, b)| Ok((self.expr(a)?, self.expr(b)?)))
            .collect()
    }

    pub(crate) fn opt_expr(&self, expr: &Option<ExprWire>) -> Result<Option<Expr>> {
        expr.as_ref().map(|e| self.expr(e)).transpose()
    }

    pub(crate) fn sort_exprs(&self, exprs: &[SortExprWire]) -> Result<Vec<SortExpr>> {
        exprs
            .iter()
            .map(|s| Ok(SortExpr::new(self.expr(&s.expr)?, s.asc, s.nulls_first)))
            .collect()
    }

    fn subquery(&self, wire: &SubqueryWire) -> Result<Subquery> {
        Ok(Subquery {
            plan: self.logical_node(wire.plan)?,
            outer_refs: wire.outer_refs.clone(),
        })
    }
}
