//! Logical expressions: what the SQL front end and the DataFrame API build, what optimizer
//! rules rewrite, and what the executor compiles into vectorised evaluators.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion_common::ScalarValue;

use crate::logical::LogicalPlan;
use crate::schema::Column;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    Plus,
    Minus,
    Multiply,
    Divide,
    Modulo,
    And,
    Or,
    /// String concatenation `||`.
    StringConcat,
}

impl Operator {
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            Operator::Eq
                | Operator::NotEq
                | Operator::Lt
                | Operator::LtEq
                | Operator::Gt
                | Operator::GtEq
        )
    }

    pub fn is_arithmetic(self) -> bool {
        matches!(
            self,
            Operator::Plus
                | Operator::Minus
                | Operator::Multiply
                | Operator::Divide
                | Operator::Modulo
        )
    }

    /// `a op b` == `b op.swap() a`, for comparisons.
    pub fn swap(self) -> Option<Operator> {
        Some(match self {
            Operator::Eq => Operator::Eq,
            Operator::NotEq => Operator::NotEq,
            Operator::Lt => Operator::Gt,
            Operator::LtEq => Operator::GtEq,
            Operator::Gt => Operator::Lt,
            Operator::GtEq => Operator::LtEq,
            _ => return None,
        })
    }

    /// `NOT (a op b)` == `a op.negate() b`, for comparisons.
    pub fn negate(self) -> Option<Operator> {
        Some(match self {
            Operator::Eq => Operator::NotEq,
            Operator::NotEq => Operator::Eq,
            Operator::Lt => Operator::GtEq,
            Operator::LtEq => Operator::Gt,
            Operator::Gt => Operator::LtEq,
            Operator::GtEq => Operator::Lt,
            _ => return None,
        })
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operator::Eq => "=",
            Operator::NotEq => "<>",
            Operator::Lt => "<",
            Operator::LtEq => "<=",
            Operator::Gt => ">",
            Operator::GtEq => ">=",
            Operator::Plus => "+",
            Operator::Minus => "-",
            Operator::Multiply => "*",
            Operator::Divide => "/",
            Operator::Modulo => "%",
            Operator::And => "AND",
            Operator::Or => "OR",
            Operator::StringConcat => "||",
        })
    }
}

/// Built-in scalar functions. UDFs are `Expr::ScalarUdf`, looked up by name at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BuiltinFunction {
    // strings
    Substring,
    Upper,
    Lower,
    Trim,
    Ltrim,
    Rtrim,
    Length,
    Concat,
    Split,
    StartsWith,
    // math
    Abs,
    Round,
    Floor,
    Ceil,
    Power,
    Sqrt,
    // null handling
    Coalesce,
    NullIf,
    // dates: EXTRACT(field FROM d) is `DatePart` with a literal field name first.
    DatePart,
    /// `(row_count, value)` of an uncorrelated scalar subquery, aggregated to one row:
    /// `value`, or an error when the subquery returned more than one row. Placed by the
    /// subquery decorrelation, not callable from SQL.
    ScalarSubqueryValue,
}

impl BuiltinFunction {
    pub fn from_name(name: &str) -> Option<Self> {
        use BuiltinFunction::*;
        Some(match name.to_ascii_lowercase().as_str() {
            "substring" | "substr" => Substring,
            "upper" => Upper,
            "lower" => Lower,
            "trim" | "btrim" => Trim,
            "ltrim" => Ltrim,
            "rtrim" => Rtrim,
            "length" | "char_length" | "character_length" => Length,
            "concat" => Concat,
            "split" | "string_to_array" | "split_string" => Split,
            "starts_with" => StartsWith,
            "abs" => Abs,
            "round" => Round,
            "floor" => Floor,
            "ceil" | "ceiling" => Ceil,
            "power" | "pow" => Power,
            "sqrt" => Sqrt,
            "coalesce" => Coalesce,
            "nullif" => NullIf,
            "date_part" | "extract" => DatePart,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        use BuiltinFunction::*;
        match self {
            Substring => "substring",
            Upper => "upper",
            Lower => "lower",
            Trim => "trim",
            Ltrim => "ltrim",
            Rtrim => "rtrim",
            Length => "length",
            Concat => "concat",
            Split => "split",
            StartsWith => "starts_with",
            Abs => "abs",
            Round => "round",
            Floor => "floor",
            Ceil => "ceil",
            Power => "power",
            Sqrt => "sqrt",
            Coalesce => "coalesce",
            NullIf => "nullif",
            DatePart => "date_part",
            ScalarSubqueryValue => "scalar_subquery_value",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AggregateFunction {
    Count,
    Sum,
    Avg,
    Min,
    Max,
}

impl AggregateFunction {
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "count" => AggregateFunction::Count,
            "sum" => AggregateFunction::Sum,
            "avg" | "mean" => AggregateFunction::Avg,
            "min" => AggregateFunction::Min,
            "max" => AggregateFunction::Max,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            AggregateFunction::Count => "count",
            AggregateFunction::Sum => "sum",
            AggregateFunction::Avg => "avg",
            AggregateFunction::Min => "min",
            AggregateFunction::Max => "max",
        }
    }
}

/// A sort key: expression, direction and where NULLs go.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SortExpr {
    pub expr: Expr,
    pub asc: bool,
    pub nulls_first: bool,
}

impl SortExpr {
    pub fn new(expr: Expr, asc: bool, nulls_first: bool) -> Self {
        SortExpr {
            expr,
            asc,
            nulls_first,
        }
    }
}

impl fmt::Display for SortExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}",
            self.expr,
            if self.asc { "ASC" } else { "DESC" },
            if self.nulls_first {
                "NULLS FIRST"
            } else {
                "NULLS LAST"
            }
        )
    }
}

/// A subquery inside an expression, with the outer columns it refers to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subquery {
    pub plan: Arc<LogicalPlan>,
    /// Columns of the enclosing query used inside (empty = uncorrelated).
    pub outer_refs: Vec<Column>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Expr {
    Column(Column),
    /// A column of an enclosing query, seen from inside a correlated subquery.
    OuterColumn(Column, DataType),
    Literal(ScalarValue),
    Alias(Box<Expr>, String),
    BinaryExpr {
        left: Box<Expr>,
        op: Operator,
        right: Box<Expr>,
    },
    Not(Box<Expr>),
    Negative(Box<Expr>),
    IsNull(Box<Expr>),
    IsNotNull(Box<Expr>),
    Between {
        expr: Box<Expr>,
        negated: bool,
        low: Box<Expr>,
        high: Box<Expr>,
    },
    InList {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    Like {
        negated: bool,
        expr: Box<Expr>,
        pattern: Box<Expr>,
        case_insensitive: bool,
    },
    /// `CASE [operand] WHEN .. THEN .. [ELSE ..] END`
    Case {
        operand: Option<Box<Expr>>,
        when_then: Vec<(Expr, Expr)>,
        else_expr: Option<Box<Expr>>,
    },
    Cast {
        expr: Box<Expr>,
        data_type: DataType,
    },
    ScalarFunction {
        func: BuiltinFunction,
        args: Vec<Expr>,
    },
    /// A user-defined scalar function, resolved by name at execution.
    ScalarUdf {
        name: String,
        args: Vec<Expr>,
        return_type: DataType,
    },
    AggregateFunction {
        func: AggregateFunction,
        /// Empty for `COUNT(*)`.
        args: Vec<Expr>,
        distinct: bool,
    },
    ScalarSubquery(Subquery),
    InSubquery {
        expr: Box<Expr>,
        subquery: Subquery,
        negated: bool,
    },
    Exists {
        subquery: Subquery,
        negated: bool,
    },
    /// `*` or `t.*` in a projection, expanded by the planner.
    Wildcard {
        qualifier: Option<String>,
    },
}

impl Expr {
    pub fn alias(self, name: impl Into<String>) -> Expr {
        match self {
            Expr::Alias(inner, _) => Expr::Alias(inner, name.into()),
            e => Expr::Alias(Box::new(e), name.into()),
        }
    }

    /// The expression without a top-level alias.
    pub fn unalias(&self) -> &Expr {
        match self {
            Expr::Alias(e, _) => e.unalias(),
            e => e,
        }
    }

    pub fn binary(self, op: Operator, right: Expr) -> Expr {
        Expr::BinaryExpr {
            left: Box::new(self),
            op,
            right: Box::new(right),
        }
    }

    pub fn eq(self, other: Expr) -> Expr {
        self.binary(Operator::Eq, other)
    }
    pub fn not_eq(self, other: Expr) -> Expr {
        self.binary(Operator::NotEq, other)
    }
    pub fn lt(self, other: Expr) -> Expr {
        self.binary(Operator::Lt, other)
    }
    pub fn lt_eq(self, other: Expr) -> Expr {
        self.binary(Operator::LtEq, other)
    }
    pub fn gt(self, other: Expr) -> Expr {
        self.binary(Operator::Gt, other)
    }
    pub fn gt_eq(self, other: Expr) -> Expr {
        self.binary(Operator::GtEq, other)
    }
    pub fn and(self, other: Expr) -> Expr {
        self.binary(Operator::And, other)
    }
    pub fn or(self, other: Expr) -> Expr {
        self.binary(Operator::Or, other)
    }
    #[allow(clippy::should_implement_trait)]
    pub fn add(self, other: Expr) -> Expr {
        self.binary(Operator::Plus, other)
    }
    #[allow(clippy::should_implement_trait)]
    pub fn sub(self, other: Expr) -> Expr {
        self.binary(Operator::Minus, other)
    }
    #[allow(clippy::should_implement_trait)]
    pub fn mul(self, other: Expr) -> Expr {
        self.binary(Operator::Multiply, other)
    }
    #[allow(clippy::should_implement_trait)]
    pub fn div(self, other: Expr) -> Expr {
        self.binary(Operator::Divide, other)
    }
    #[allow(clippy::should_implement_trait)]
    pub fn not(self) -> Expr {
        Expr::Not(Box::new(self))
    }
    pub fn is_null(self) -> Expr {
        Expr::IsNull(Box::new(self))
    }
    pub fn is_not_null(self) -> Expr {
        Expr::IsNotNull(Box::new(self))
    }
    pub fn cast_to(self, data_type: DataType) -> Expr {
        Expr::Cast {
            expr: Box::new(self),
            data_type,
        }
    }
    pub fn like(self, pattern: Expr) -> Expr {
        Expr::Like {
            negated: false,
            expr: Box::new(self),
            pattern: Box::new(pattern),
            case_insensitive: false,
        }
    }
    pub fn between(self, low: Expr, high: Expr) -> Expr {
        Expr::Between {
            expr: Box::new(self),
            negated: false,
            low: Box::new(low),
            high: Box::new(high),
        }
    }
    pub fn in_list(self, list: Vec<Expr>, negated: bool) -> Expr {
        Expr::InList {
            expr: Box::new(self),
            list,
            negated,
        }
    }
    pub fn sort(self, asc: bool, nulls_first: bool) -> SortExpr {
        SortExpr::new(self, asc, nulls_first)
    }

    /// The direct children of this expression (subquery plans are not expression children).
    pub fn children(&self) -> Vec<&Expr> {
        match self {
            Expr::Column(_)
            | Expr::OuterColumn(..)
            | Expr::Literal(_)
            | Expr::Wildcard { .. }
            | Expr::ScalarSubquery(_)
            | Expr::Exists { .. } => vec![],
            Expr::Alias(e, _)
            | Expr::Not(e)
            | Expr::Negative(e)
            | Expr::IsNull(e)
            | Expr::IsNotNull(e)
            | Expr::Cast { expr: e, .. } => vec![e],
            Expr::InSubquery { expr, .. } => vec![expr],
            Expr::BinaryExpr { left, right, .. } => vec![left, right],
            Expr::Between {
                expr, low, high, ..
            } => vec![expr, low, high],
            Expr::InList { expr, list, .. } => {
                let mut v = vec![expr.as_ref()];
                v.extend(list.iter());
                v
            }
            Expr::Like { expr, pattern, .. } => vec![expr, pattern],
            Expr::Case {
                operand,
                when_then,
                else_expr,
            } => {
                let mut v: Vec<&Expr> = operand.iter().map(|e| e.as_ref()).collect();
                for (w, t) in when_then {
                    v.push(w);
                    v.push(t);
                }
                v.extend(else_expr.iter().map(|e| e.as_ref()));
                v
            }
            Expr::ScalarFunction { args, .. }
            | Expr::ScalarUdf { args, .. }
            | Expr::AggregateFunction { args, .. } => args.iter().collect(),
        }
    }

    /// Rebuilds this expression bottom-up, applying `f` to every node after its children.
    /// `f` returns `Some(new)` to replace a node. Subquery plans are left untouched.
    pub fn transform_up<E>(self, f: &mut impl FnMut(Expr) -> Result<Expr, E>) -> Result<Expr, E> {
        let rebuilt = self.map_children(&mut |c| c.transform_up(f))?;
        f(rebuilt)
    }

    /// Rebuilds this expression with each direct child replaced by `f(child)`.
    pub fn map_children<E>(self, f: &mut impl FnMut(Expr) -> Result<Expr, E>) -> Result<Expr, E> {
        let bx = |e: Box<Expr>,
                  f: &mut dyn FnMut(Expr) -> Result<Expr, E>|
         -> Result<Box<Expr>, E> { Ok(Box::new(f(*e)?)) };
        Ok(match self {
            e @ (Expr::Column(_)
            | Expr::OuterColumn(..)
            | Expr::Literal(_)
            | Expr::Wildcard { .. }
            | Expr::ScalarSubquery(_)
            | Expr::Exists { .. }) => e,
            Expr::Alias(e, n) => Expr::Alias(bx(e, f)?, n),
            Expr::Not(e) => Expr::Not(bx(e, f)?),
            Expr::Negative(e) => Expr::Negative(bx(e, f)?),
            Expr::IsNull(e) => Expr::IsNull(bx(e, f)?),
            Expr::IsNotNull(e) => Expr::IsNotNull(bx(e, f)?),
            Expr::Cast { expr, data_type } => Expr::Cast {
                expr: bx(expr, f)?,
                data_type,
            },
            Expr::InSubquery {
                expr,
                subquery,
                negated,
            } => Expr::InSubquery {
                expr: bx(expr, f)?,
                subquery,
                negated,
            },
            Expr::BinaryExpr { left, op, right } => Expr::BinaryExpr {
                left: bx(left, f)?,
                op,
                right: bx(right, f)?,
            },
            Expr::Between {
                expr,
                negated,
                low,
                high,
            } => Expr::Between {
                expr: bx(expr, f)?,
                negated,
                low: bx(low, f)?,
                high: bx(high, f)?,
            },
            Expr::InList {
                expr,
                list,
                negated,
            } => Expr::InList {
                expr: bx(expr, f)?,
                list: list.into_iter().map(&mut *f).collect::<Result<_, E>>()?,
                negated,
            },
            Expr::Like {
                negated,
                expr,
                pattern,
                case_insensitive,
            } => Expr::Like {
                negated,
                expr: bx(expr, f)?,
                pattern: bx(pattern, f)?,
                case_insensitive,
            },
            Expr::Case {
                operand,
                when_then,
                else_expr,
            } => Expr::Case {
                operand: operand.map(|e| bx(e, f)).transpose()?,
                when_then: when_then
                    .into_iter()
                    .map(|(w, t)| Ok((f(w)?, f(t)?)))
                    .collect::<Result<_, E>>()?,
                else_expr: else_expr.map(|e| bx(e, f)).transpose()?,
            },
            Expr::ScalarFunction { func, args } => Expr::ScalarFunction {
                func,
                args: args.into_iter().map(&mut *f).collect::<Result<_, E>>()?,
            },
            Expr::ScalarUdf {
                name,
                args,
                return_type,
            } => Expr::ScalarUdf {
                name,
                args: args.into_iter().map(&mut *f).collect::<Result<_, E>>()?,
                return_type,
            },
            Expr::AggregateFunction {
                func,
                args,
                distinct,
            } => Expr::AggregateFunction {
                func,
                args: args.into_iter().map(&mut *f).collect::<Result<_, E>>()?,
                distinct,
            },
        })
    }

    /// Visits every node (pre-order); `f` returns false to skip a node's children.
    pub fn visit(&self, f: &mut impl FnMut(&Expr) -> bool) {
        if f(self) {
            for c in self.children() {
                c.visit(f);
            }
        }
    }

    /// True when any node satisfies `pred`.
    pub fn exists(&self, pred: &mut impl FnMut(&Expr) -> bool) -> bool {
        let mut found = false;
        self.visit(&mut |e| {
            if found {
                return false;
            }
            if pred(e) {
                found = true;
                return false;
            }
            true
        });
        found
    }

    /// The columns this expression reads (not counting subqueries' own columns).
    pub fn column_refs(&self) -> Vec<Column> {
        let mut out = Vec::new();
        self.visit(&mut |e| {
            if let Expr::Column(c) = e {
                if !out.contains(c) {
                    out.push(c.clone());
                }
            }
            true
        });
        out
    }

    pub fn contains_aggregate(&self) -> bool {
        self.exists(&mut |e| matches!(e, Expr::AggregateFunction { .. }))
    }

    pub fn contains_subquery(&self) -> bool {
        self.exists(&mut |e| {
            matches!(
                e,
                Expr::ScalarSubquery(_) | Expr::InSubquery { .. } | Expr::Exists { .. }
            )
        })
    }

    pub fn contains_outer_column(&self) -> bool {
        self.exists(&mut |e| matches!(e, Expr::OuterColumn(..)))
    }

    /// The column name this expression gets in a projection when not aliased.
    pub fn output_name(&self) -> String {
        match self {
            Expr::Alias(_, name) => name.clone(),
            Expr::Column(c) => c.name.clone(),
            other => other.to_string(),
        }
    }

    /// `a AND b AND c` → `[a, b, c]`.
    pub fn split_conjunction(&self) -> Vec<&Expr> {
        match self {
            Expr::BinaryExpr {
                left,
                op: Operator::And,
                right,
            } => {
                let mut v = left.split_conjunction();
                v.extend(right.split_conjunction());
                v
            }
            Expr::Alias(e, _) => e.split_conjunction(),
            e => vec![e],
        }
    }

    pub fn is_literal_true(&self) -> bool {
        matches!(self, Expr::Literal(ScalarValue::Boolean(Some(true))))
    }
}

/// `[a, b, c]` → `a AND b AND c`; `None` when empty.
pub fn conjunction(exprs: impl IntoIterator<Item = Expr>) -> Option<Expr> {
    exprs.into_iter().reduce(Expr::and)
}

/// `[a, b, c]` → `a OR b OR c`; `None` when empty.
pub fn disjunction(exprs: impl IntoIterator<Item = Expr>) -> Option<Expr> {
    exprs.into_iter().reduce(Expr::or)
}

fn fmt_list(f: &mut fmt::Formatter<'_>, items: &[Expr]) -> fmt::Result {
    for (i, e) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{e}")?;
    }
    Ok(())
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Column(c) => write!(f, "{c}"),
            Expr::OuterColumn(c, _) => write!(f, "outer({c})"),
            Expr::Literal(v) => match v {
                ScalarValue::Utf8(Some(s))
                | ScalarValue::LargeUtf8(Some(s))
                | ScalarValue::Utf8View(Some(s)) => {
                    write!(f, "'{}'", s.replace('\'', "''"))
                }
                ScalarValue::Date32(Some(_)) => write!(f, "DATE '{v}'"),
                v if v.is_null() => f.write_str("NULL"),
                v => write!(f, "{v}"),
            },
            Expr::Alias(e, name) => write!(f, "{e} AS {name}"),
            Expr::BinaryExpr { left, op, right } => write!(f, "({left} {op} {right})"),
            Expr::Not(e) => write!(f, "NOT {e}"),
            Expr::Negative(e) => write!(f, "(- {e})"),
            Expr::IsNull(e) => write!(f, "{e} IS NULL"),
            Expr::IsNotNull(e) => write!(f, "{e} IS NOT NULL"),
            Expr::Between {
                expr,
                negated,
                low,
                high,
            } => write!(
                f,
                "{expr} {}BETWEEN {low} AND {high}",
                if *negated { "NOT " } else { "" }
            ),
            Expr::InList {
                expr,
                list,
                negated,
            } => {
                write!(f, "{expr} {}IN (", if *negated { "NOT " } else { "" })?;
                fmt_list(f, list)?;
                f.write_str(")")
            }
            Expr::Like {
                negated,
                expr,
                pattern,
                case_insensitive,
            } => write!(
                f,
                "{expr} {}{} {pattern}",
                if *negated { "NOT " } else { "" },
                if *case_insensitive { "ILIKE" } else { "LIKE" }
            ),
            Expr::Case {
                operand,
                when_then,
                else_expr,
            } => {
                f.write_str("CASE")?;
                if let Some(o) = operand {
                    write!(f, " {o}")?;
                }
                for (w, t) in when_then {
                    write!(f, " WHEN {w} THEN {t}")?;
                }
                if let Some(e) = else_expr {
                    write!(f, " ELSE {e}")?;
                }
                f.write_str(" END")
            }
            Expr::Cast { expr, data_type } => write!(f, "CAST({expr} AS {data_type})"),
            Expr::ScalarFunction { func, args } => {
                write!(f, "{}(", func.name())?;
                fmt_list(f, args)?;
                f.write_str(")")
            }
            Expr::ScalarUdf { name, args, .. } => {
                write!(f, "{name}(")?;
                fmt_list(f, args)?;
                f.write_str(")")
            }
            Expr::AggregateFunction {
                func,
                args,
                distinct,
            } => {
                write!(f, "{}(", func.name())?;
                if *distinct {
                    f.write_str("DISTINCT ")?;
                }
                if args.is_empty() {
                    f.write_str("*")?;
                }
                fmt_list(f, args)?;
                f.write_str(")")
            }
            Expr::ScalarSubquery(_) => f.write_str("(<subquery>)"),
            Expr::InSubquery { expr, negated, .. } => write!(
                f,
                "{expr} {}IN (<subquery>)",
                if *negated { "NOT " } else { "" }
            ),
            Expr::Exists { negated, .. } => {
                write!(
                    f,
                    "{}EXISTS (<subquery>)",
                    if *negated { "NOT " } else { "" }
                )
            }
            Expr::Wildcard { qualifier } => match qualifier {
                Some(q) => write!(f, "{q}.*"),
                None => f.write_str("*"),
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Builders for the DataFrame API.

/// A column by (optionally qualified) name: `col("l_quantity")`, `col("l.l_quantity")`.
pub fn col(name: &str) -> Expr {
    Expr::Column(Column::from_qualified_name(name))
}

/// A literal value.
pub fn lit(value: impl Literal) -> Expr {
    Expr::Literal(value.into_scalar())
}

/// Values that can be written as literals.
pub trait Literal {
    fn into_scalar(self) -> ScalarValue;
}

macro_rules! impl_literal {
    ($t:ty, $variant:ident) => {
        impl Literal for $t {
            fn into_scalar(self) -> ScalarValue {
                ScalarValue::$variant(Some(self))
            }
        }
    };
}
impl_literal!(bool, Boolean);
impl_literal!(i32, Int32);
impl_literal!(i64, Int64);
impl_literal!(f64, Float64);
impl_literal!(String, Utf8);

impl Literal for &str {
    fn into_scalar(self) -> ScalarValue {
        ScalarValue::Utf8(Some(self.to_string()))
    }
}

impl Literal for ScalarValue {
    fn into_scalar(self) -> ScalarValue {
        self
    }
}

fn agg(func: AggregateFunction, e: Expr) -> Expr {
    Expr::AggregateFunction {
        func,
        args: vec![e],
        distinct: false,
    }
}

pub fn sum(e: Expr) -> Expr {
    agg(AggregateFunction::Sum, e)
}
pub fn avg(e: Expr) -> Expr {
    agg(AggregateFunction::Avg, e)
}
pub fn min(e: Expr) -> Expr {
    agg(AggregateFunction::Min, e)
}
pub fn max(e: Expr) -> Expr {
    agg(AggregateFunction::Max, e)
}
pub fn count(e: Expr) -> Expr {
    agg(AggregateFunction::Count, e)
}
pub fn count_star() -> Expr {
    Expr::AggregateFunction {
        func: AggregateFunction::Count,
        args: vec![],
        distinct: false,
    }
}
pub fn count_distinct(e: Expr) -> Expr {
    Expr::AggregateFunction {
        func: AggregateFunction::Count,
        args: vec![e],
        distinct: true,
    }
}
pub fn and(a: Expr, b: Expr) -> Expr {
    a.and(b)
}
pub fn or(a: Expr, b: Expr) -> Expr {
    a.or(b)
}
pub fn not(a: Expr) -> Expr {
    a.not()
}
/// A built-in scalar function call, e.g. `func(BuiltinFunction::Upper, vec![col("name")])`.
pub fn func(f: BuiltinFunction, args: Vec<Expr>) -> Expr {
    Expr::ScalarFunction { func: f, args }
}
