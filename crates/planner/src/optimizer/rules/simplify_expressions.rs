//! Constant folding and boolean simplification.
//!
//! Literal sub-expressions are evaluated once at planning time instead of once per row, and
//! predicates that become constant remove whole operators:
//!
//! ```text
//! Filter: ((t.d <= (DATE '1998-12-01' - IntervalMonthDayNano(0, 90, 0))) AND true)
//!   TableScan: t
//! ```
//! becomes
//! ```text
//! Filter: (t.d <= DATE '1998-09-02')
//!   TableScan: t
//! ```
//! A filter that folds to `true` disappears; one that folds to `false` or NULL becomes an
//! empty relation. Output names of projections and aggregates are kept (by aliasing the
//! folded expression), so parents still resolve their columns.
//!
//! The planner cannot call the executor, so folding uses `ScalarValue` arithmetic with the
//! same type rules ([`crate::types::binary_types`]) the executor applies; anything that fails
//! to fold (overflow, division by zero, unsupported types) is left for run time.

use std::cmp::Ordering;
use std::sync::Arc;

use datafusion_common::ScalarValue;

use crate::error::Result;
use crate::expr::{conjunction, Expr, Operator, SortExpr};
use crate::logical::{
    Aggregate, EmptyRelation, Filter, Join, LogicalPlan, Projection, Sort, Values,
};
use crate::optimizer::{OptimizerConfig, OptimizerRule, Transformed};
use crate::types;

pub struct SimplifyExpressions;

impl OptimizerRule for SimplifyExpressions {
    fn name(&self) -> &str {
        "simplify_expressions"
    }

    fn rewrite(
        &self,
        plan: Arc<LogicalPlan>,
        _config: &OptimizerConfig,
    ) -> Result<Transformed<Arc<LogicalPlan>>> {
        let mut changed = false;
        let mut simp = |e: &Expr| {
            let s = simplify(e.clone());
            changed |= s != *e;
            s
        };
        let new = match plan.as_ref() {
            LogicalPlan::Filter(f) => {
                let predicate = simp(&f.predicate);
                match &predicate {
                    Expr::Literal(ScalarValue::Boolean(Some(true))) => {
                        return Ok(Transformed::yes(Arc::clone(&f.input)))
                    }
                    Expr::Literal(v) if v.is_null() || *v == ScalarValue::Boolean(Some(false)) => {
                        return Ok(Transformed::yes(Arc::new(LogicalPlan::EmptyRelation(
                            EmptyRelation {
                                produce_one_row: false,
                                schema: Arc::clone(f.input.schema()),
                            },
                        ))))
                    }
                    _ => LogicalPlan::Filter(Filter {
                        input: Arc::clone(&f.input),
                        predicate,
                    }),
                }
            }
            LogicalPlan::Projection(p) => {
                let exprs = p.exprs.iter().map(|e| keep_name(e, simp(e))).collect();
                if !changed {
                    return Ok(Transformed::no(plan));
                }
                LogicalPlan::Projection(Projection::try_new(Arc::clone(&p.input), exprs)?)
            }
            LogicalPlan::Aggregate(a) => {
                let group = a
                    .group_exprs
                    .iter()
                    .map(|e| keep_name(e, simp(e)))
                    .collect();
                let aggr = a.aggr_exprs.iter().map(|e| keep_name(e, simp(e))).collect();
                if !changed {
                    return Ok(Transformed::no(plan));
                }
                LogicalPlan::Aggregate(Aggregate::try_new(Arc::clone(&a.input), group, aggr)?)
            }
            LogicalPlan::Join(j) => {
                let on = j.on.iter().map(|(l, r)| (simp(l), simp(r))).collect();
                let filter = j
                    .filter
                    .as_ref()
                    .map(&mut simp)
                    .filter(|f| !f.is_literal_true());
                changed |= filter.is_none() && j.filter.is_some();
                if !changed {
                    return Ok(Transformed::no(plan));
                }
                LogicalPlan::Join(Join::try_new(
                    Arc::clone(&j.left),
                    Arc::clone(&j.right),
                    on,
                    filter,
                    j.join_type,
                    j.null_aware,
                )?)
            }
            LogicalPlan::Sort(s) => LogicalPlan::Sort(Sort {
                input: Arc::clone(&s.input),
                exprs: s
                    .exprs
                    .iter()
                    .map(|se| SortExpr::new(simp(&se.expr), se.asc, se.nulls_first))
                    .collect(),
                fetch: s.fetch,
            }),
            LogicalPlan::Values(v) => LogicalPlan::Values(Values {
                schema: Arc::clone(&v.schema),
                rows: v
                    .rows
                    .iter()
                    .map(|row| row.iter().map(&mut simp).collect())
                    .collect(),
            }),
            _ => return Ok(Transformed::no(plan)),
        };
        if changed {
            Ok(Transformed::yes(Arc::new(new)))
        } else {
            Ok(Transformed::no(plan))
        }
    }
}

/// Keeps the output name of `old` on its simplified form `new`.
fn keep_name(old: &Expr, new: Expr) -> Expr {
    let name = old.output_name();
    if new.output_name() == name {
        new
    } else {
        new.alias(name)
    }
}

/// Simplifies an expression bottom-up.
pub fn simplify(expr: Expr) -> Expr {
    let r: std::result::Result<Expr, std::convert::Infallible> =
        expr.transform_up(&mut |e| Ok(simplify_node(e)));
    match r {
        Ok(e) => e,
        Err(never) => match never {},
    }
}

fn bool_lit(b: Option<bool>) -> Expr {
    Expr::Literal(ScalarValue::Boolean(b))
}

/// `Some(b)` for a boolean literal (`Some(None)` for a NULL literal).
fn as_bool(e: &Expr) -> Option<Option<bool>> {
    match e {
        Expr::Literal(ScalarValue::Boolean(b)) => Some(*b),
        Expr::Literal(v) if v.is_null() => Some(None),
        _ => None,
    }
}

/// One simplification step on a node whose children are already simplified.
fn simplify_node(e: Expr) -> Expr {
    match e {
        Expr::BinaryExpr { left, op, right } => simplify_binary(*left, op, *right),
        Expr::Not(inner) => match *inner {
            Expr::Literal(ScalarValue::Boolean(b)) => bool_lit(b.map(|b| !b)),
            Expr::Literal(v) if v.is_null() => bool_lit(None),
            Expr::Not(x) => *x,
            Expr::IsNull(x) => Expr::IsNotNull(x),
            Expr::IsNotNull(x) => Expr::IsNull(x),
            Expr::BinaryExpr { left, op, right } if op.negate().is_some() => Expr::BinaryExpr {
                left,
                op: op.negate().unwrap_or(op),
                right,
            },
            other => Expr::Not(Box::new(other)),
        },
        Expr::Negative(inner) => match *inner {
            Expr::Literal(v) => match v.arithmetic_negate() {
                Ok(n) => Expr::Literal(n),
                Err(_) => Expr::Negative(Box::new(Expr::Literal(v))),
            },
            other => Expr::Negative(Box::new(other)),
        },
        Expr::IsNull(inner) => match *inner {
            Expr::Literal(v) => bool_lit(Some(v.is_null())),
            other => Expr::IsNull(Box::new(other)),
        },
        Expr::IsNotNull(inner) => match *inner {
            Expr::Literal(v) => bool_lit(Some(!v.is_null())),
            other => Expr::IsNotNull(Box::new(other)),
        },
        Expr::Cast { expr, data_type } => match *expr {
            Expr::Literal(v) if v.data_type() == data_type => Expr::Literal(v),
            Expr::Literal(v) => match v.cast_to(&data_type) {
                Ok(c) => Expr::Literal(c),
                Err(_) => Expr::Cast {
                    expr: Box::new(Expr::Literal(v)),
                    data_type,
                },
            },
            other => Expr::Cast {
                expr: Box::new(other),
                data_type,
            },
        },
        Expr::Between {
            expr,
            negated,
            low,
            high,
        } => match (expr.as_ref(), low.as_ref(), high.as_ref()) {
            (Expr::Literal(v), Expr::Literal(lo), Expr::Literal(hi)) => {
                let ge = compare(v, Operator::GtEq, lo);
                let le = compare(v, Operator::LtEq, hi);
                match (ge, le) {
                    (Some(a), Some(b)) => {
                        let inside = and3(a, b);
                        bool_lit(if negated { inside.map(|x| !x) } else { inside })
                    }
                    _ => Expr::Between {
                        expr,
                        negated,
                        low,
                        high,
                    },
                }
            }
            _ => Expr::Between {
                expr,
                negated,
                low,
                high,
            },
        },
        Expr::InList {
            expr,
            list,
            negated,
        } => fold_in_list(*expr, list, negated),
        other => other,
    }
}

fn and3(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (Some(true), Some(true)) => Some(true),
        _ => None,
    }
}

fn or3(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(true), _) | (_, Some(true)) => Some(true),
        (Some(false), Some(false)) => Some(false),
        _ => None,
    }
}

fn fold_in_list(expr: Expr, list: Vec<Expr>, negated: bool) -> Expr {
    let all_literal =
        matches!(expr, Expr::Literal(_)) && list.iter().all(|e| matches!(e, Expr::Literal(_)));
    if !all_literal {
        return Expr::InList {
            expr: Box::new(expr),
            list,
            negated,
        };
    }
    let Expr::Literal(v) = &expr else {
        return Expr::InList {
            expr: Box::new(expr),
            list,
            negated,
        };
    };
    // x IN (a, b) == x = a OR x = b, in three-valued logic.
    let mut result = Some(false);
    for item in &list {
        let Expr::Literal(item) = item else {
            continue;
        };
        match compare(v, Operator::Eq, item) {
            Some(eq) => result = or3(result, eq),
            None => {
                return Expr::InList {
                    expr: Box::new(expr),
                    list,
                    negated,
                }
            }
        }
    }
    bool_lit(if negated { result.map(|x| !x) } else { result })
}

fn simplify_binary(left: Expr, op: Operator, right: Expr) -> Expr {
    match op {
        Operator::And => match (as_bool(&left), as_bool(&right)) {
            (Some(a), Some(b)) => return bool_lit(and3(a, b)),
            (Some(Some(true)), _) => return right,
            (_, Some(Some(true))) => return left,
            (Some(Some(false)), _) | (_, Some(Some(false))) => return bool_lit(Some(false)),
            _ => {}
        },
        Operator::Or => match (as_bool(&left), as_bool(&right)) {
            (Some(a), Some(b)) => return bool_lit(or3(a, b)),
            (Some(Some(false)), _) => return right,
            (_, Some(Some(false))) => return left,
            (Some(Some(true)), _) | (_, Some(Some(true))) => return bool_lit(Some(true)),
            _ => {
                if let Some(factored) = factor_common_conjuncts(&left, &right) {
                    return factored;
                }
            }
        },
        _ => {
            if let (Expr::Literal(l), Expr::Literal(r)) = (&left, &right) {
                if let Some(v) = eval_binary(l, op, r) {
                    return Expr::Literal(v);
                }
            }
        }
    }
    Expr::BinaryExpr {
        left: Box::new(left),
        op,
        right: Box::new(right),
    }
}

/// `(k AND a) OR (k AND b)` → `k AND (a OR b)`, and `k OR (k AND b)` → `k`.
///
/// Both identities hold in SQL's three-valued logic. This matters for joins: TPC-H Q19's
/// join key `p_partkey = l_partkey` is repeated inside each OR branch; only once it is
/// factored out can the join run as a hash join instead of a nested loop over both inputs.
fn factor_common_conjuncts(left: &Expr, right: &Expr) -> Option<Expr> {
    let l = left.split_conjunction();
    let r = right.split_conjunction();
    let mut common: Vec<Expr> = Vec::new();
    for e in &l {
        if r.contains(e) && !common.contains(e) {
            common.push((*e).clone());
        }
    }
    if common.is_empty() {
        return None;
    }
    let rest = |side: &[&Expr]| {
        conjunction(
            side.iter()
                .filter(|e| !common.contains(e))
                .map(|e| (*e).clone()),
        )
    };
    // When one side is exactly the common part, absorption leaves just the common part.
    let remainder = match (rest(&l), rest(&r)) {
        (Some(a), Some(b)) => Some(a.or(b)),
        _ => None,
    };
    conjunction(common.into_iter().chain(remainder))
}

/// `l op r` for a comparison, in three-valued logic; `None` when it cannot be evaluated.
fn compare(l: &ScalarValue, op: Operator, r: &ScalarValue) -> Option<Option<bool>> {
    match eval_binary(l, op, r)? {
        ScalarValue::Boolean(b) => Some(b),
        _ => None,
    }
}

/// Evaluates `l op r` on literals with the executor's coercion rules; `None` when it cannot
/// (or should not) be folded.
pub fn eval_binary(l: &ScalarValue, op: Operator, r: &ScalarValue) -> Option<ScalarValue> {
    let (lt, rt, out) = types::binary_types(&l.data_type(), op, &r.data_type()).ok()?;
    if l.is_null() || r.is_null() {
        return ScalarValue::try_from(&out).ok();
    }
    let a = l.cast_to(&lt).ok()?;
    let b = r.cast_to(&rt).ok()?;
    if op.is_comparison() {
        let ord = a.partial_cmp(&b)?;
        let result = match op {
            Operator::Eq => ord == Ordering::Equal,
            Operator::NotEq => ord != Ordering::Equal,
            Operator::Lt => ord == Ordering::Less,
            Operator::LtEq => ord != Ordering::Greater,
            Operator::Gt => ord == Ordering::Greater,
            Operator::GtEq => ord != Ordering::Less,
            _ => return None,
        };
        return Some(ScalarValue::Boolean(Some(result)));
    }
    let value = match op {
        Operator::Plus => a.add_checked(&b).ok()?,
        Operator::Minus => a.sub_checked(&b).ok()?,
        Operator::Multiply => a.mul_checked(&b).ok()?,
        Operator::Divide => a.div(&b).ok()?,
        Operator::Modulo => a.rem(&b).ok()?,
        Operator::StringConcat => match (&a, &b) {
            (ScalarValue::Utf8(Some(x)), ScalarValue::Utf8(Some(y))) => {
                ScalarValue::Utf8(Some(format!("{x}{y}")))
            }
            _ => return None,
        },
        _ => return None,
    };
    if value.data_type() == out {
        Some(value)
    } else {
        value.cast_to(&out).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::{col, lit};
    use crate::optimizer::test_util::{scan, show};
    use crate::optimizer::{apply_rule, OptimizerConfig};
    use arrow::datatypes::{DataType, IntervalMonthDayNano};

    fn date(s: &str) -> Expr {
        Expr::Literal(ScalarValue::Utf8(Some(s.into()))).cast_to(DataType::Date32)
    }

    fn run(plan: Arc<LogicalPlan>) -> String {
        let t = apply_rule(&SimplifyExpressions, plan, &OptimizerConfig::default()).unwrap();
        show(&t.data)
    }

    fn filter(pred: Expr) -> Arc<LogicalPlan> {
        Arc::new(LogicalPlan::Filter(Filter {
            input: scan("t", &["a", "b"]),
            predicate: pred,
        }))
    }

    #[test]
    fn folds_integer_arithmetic_and_comparisons() {
        assert_eq!(simplify(lit(1i64).add(lit(2i64).mul(lit(3i64)))), lit(7i64));
        assert_eq!(simplify(lit(3i64).gt(lit(2i32))), lit(true));
        assert_eq!(simplify(lit(1i64).div(lit(0i64))).to_string(), "(1 / 0)");
    }

    #[test]
    fn folds_decimals_with_result_type() {
        let d = |v: i128, p: u8, s: i8| Expr::Literal(ScalarValue::Decimal128(Some(v), p, s));
        // 1 - 0.06 = 0.94, typed as the executor would type it.
        let e = simplify(lit(1i64).sub(d(6, 2, 2)));
        let expected_type = types::binary_types(
            &DataType::Int64,
            Operator::Minus,
            &DataType::Decimal128(2, 2),
        )
        .unwrap()
        .2;
        assert_eq!(e, Expr::Literal(ScalarValue::Decimal128(Some(94), 22, 2)));
        assert_eq!(DataType::Decimal128(22, 2), expected_type);
    }

    #[test]
    fn folds_date_minus_interval_and_string_to_date_cast() {
        let interval = Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(
            IntervalMonthDayNano::new(0, 90, 0),
        )));
        let plan = filter(
            col("t.a")
                .lt_eq(date("1998-12-01").sub(interval))
                .and(lit(true)),
        );
        assert_eq!(
            show(&plan),
            "Filter: ((t.a <= (CAST('1998-12-01' AS Date32) - IntervalMonthDayNano { months: 0, days: 90, nanoseconds: 0 })) AND true)\n  TableScan: t"
        );
        assert_eq!(
            run(plan),
            "Filter: (t.a <= DATE '1998-09-02')\n  TableScan: t"
        );
    }

    #[test]
    fn common_conjuncts_are_factored_out_of_or() {
        let k = col("a").eq(col("b"));
        let pred = k
            .clone()
            .and(col("x").gt(lit(1i64)))
            .or(k.clone().and(col("y").lt(lit(2i64))))
            .or(k.clone().and(col("z").eq(lit(3i64))));
        assert_eq!(
            simplify(pred).to_string(),
            "((a = b) AND (((x > 1) OR (y < 2)) OR (z = 3)))"
        );
        // Absorption: k OR (k AND x) = k.
        let absorbed = k.clone().or(k.clone().and(col("x").gt(lit(1i64))));
        assert_eq!(simplify(absorbed).to_string(), "(a = b)");
    }

    #[test]
    fn boolean_identities() {
        let a = || col("t.a").gt(lit(1i64));
        assert_eq!(simplify(a().and(lit(true))), a());
        assert_eq!(simplify(lit(false).and(a())), lit(false));
        assert_eq!(simplify(a().or(lit(true))), lit(true));
        assert_eq!(simplify(a().or(lit(false))), a());
        let null = Expr::Literal(ScalarValue::Boolean(None));
        assert_eq!(simplify(null.clone().and(lit(false))), lit(false));
        assert_eq!(simplify(null.clone().or(lit(true))), lit(true));
        assert_eq!(simplify(null.clone().and(lit(true))), null);
        assert_eq!(simplify(a().not()), col("t.a").lt_eq(lit(1i64)));
    }

    #[test]
    fn constant_filters_remove_or_empty_the_input() {
        assert_eq!(run(filter(lit(1i64).lt(lit(2i64)))), "TableScan: t");
        assert_eq!(
            run(filter(lit(2i64).lt(lit(1i64)))),
            "EmptyRelation: produce_one_row=false"
        );
    }

    #[test]
    fn projection_names_survive_folding() {
        let plan = Arc::new(LogicalPlan::Projection(
            Projection::try_new(
                scan("t", &["a"]),
                vec![lit(1i64).add(lit(1i64)), col("t.a")],
            )
            .unwrap(),
        ));
        let before = plan.schema().field(0).name().to_string();
        let t = apply_rule(&SimplifyExpressions, plan, &OptimizerConfig::default()).unwrap();
        assert_eq!(
            show(&t.data),
            "Projection: 2 AS (1 + 1), t.a\n  TableScan: t"
        );
        assert_eq!(t.data.schema().field(0).name(), before);
    }

    #[test]
    fn in_list_and_between_of_literals_fold() {
        assert_eq!(
            simplify(lit(2i64).in_list(vec![lit(1i64), lit(2i64)], false)),
            lit(true)
        );
        assert_eq!(
            simplify(lit(5i64).between(lit(1i64), lit(4i64))),
            lit(false)
        );
    }
}
