//! Small helpers shared by the optimizer rules: conjunct splitting, column membership and
//! column substitution.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;

use crate::error::Result;
use crate::expr::{conjunction, Expr, Operator};
use crate::logical::{LogicalPlan, Projection};
use crate::schema::{Column, PlanSchema};

/// `a AND b AND c` → `[a, b, c]`, owned.
pub fn split_conjuncts(expr: &Expr) -> Vec<Expr> {
    expr.split_conjunction().into_iter().cloned().collect()
}

/// Whether every column `expr` reads resolves (unambiguously) in `schema`.
pub fn columns_in(expr: &Expr, schema: &PlanSchema) -> bool {
    expr.column_refs()
        .iter()
        .all(|c| matches!(schema.maybe_index_of_column(c), Ok(Some(_))))
}

/// The indices of `schema` read by `exprs`; `None` when some column does not resolve.
pub fn column_indices<'a>(
    exprs: impl IntoIterator<Item = &'a Expr>,
    schema: &PlanSchema,
) -> Option<BTreeSet<usize>> {
    let mut out = BTreeSet::new();
    for e in exprs {
        for c in e.column_refs() {
            match schema.maybe_index_of_column(&c) {
                Ok(Some(i)) => {
                    out.insert(i);
                }
                _ => return None,
            }
        }
    }
    Some(out)
}

/// Replaces every column reference for which `f` returns `Some`.
pub fn replace_columns(expr: Expr, f: &mut impl FnMut(&Column) -> Option<Expr>) -> Expr {
    let r: std::result::Result<Expr, Infallible> = expr.transform_up(&mut |e| {
        Ok(match &e {
            Expr::Column(c) => f(c).unwrap_or(e),
            _ => e,
        })
    });
    match r {
        Ok(e) => e,
        Err(never) => match never {},
    }
}

/// Rewrites references to `from`'s columns into the expressions that produce them at the
/// same position of `to` (e.g. through a SubqueryAlias or Union input).
pub fn rebase_columns(expr: Expr, from: &PlanSchema, to: &PlanSchema) -> Option<Expr> {
    let mut ok = true;
    let e = replace_columns(expr, &mut |c| match from.maybe_index_of_column(c) {
        Ok(Some(i)) if i < to.len() => Some(Expr::Column(to.field(i).column())),
        _ => {
            ok = false;
            None
        }
    });
    ok.then_some(e)
}

/// `OuterColumn(c)` → `Column(c)`: an outer reference seen from the outer query.
pub fn outer_to_column(expr: Expr) -> Expr {
    let r: std::result::Result<Expr, Infallible> = expr.transform_up(&mut |e| {
        Ok(match e {
            Expr::OuterColumn(c, _) => Expr::Column(c),
            e => e,
        })
    });
    match r {
        Ok(e) => e,
        Err(never) => match never {},
    }
}

/// `Filter(conjuncts) over input`, or just `input` when there are no conjuncts.
pub fn filter_over(input: Arc<LogicalPlan>, conjuncts: Vec<Expr>) -> Arc<LogicalPlan> {
    match conjunction(conjuncts) {
        Some(predicate) => Arc::new(LogicalPlan::Filter(crate::logical::Filter {
            input,
            predicate,
        })),
        None => input,
    }
}

/// A projection of `columns` (by qualified reference) over `input`.
pub fn project_columns(input: Arc<LogicalPlan>, columns: &[Column]) -> Result<Arc<LogicalPlan>> {
    let exprs = columns.iter().cloned().map(Expr::Column).collect();
    Ok(Arc::new(LogicalPlan::Projection(Projection::try_new(
        input, exprs,
    )?)))
}

/// A projection that keeps the fields of `input` at `indices`, in that order.
pub fn project_indices(input: Arc<LogicalPlan>, indices: &[usize]) -> Result<Arc<LogicalPlan>> {
    let columns: Vec<Column> = indices
        .iter()
        .map(|&i| input.schema().field(i).column())
        .collect();
    project_columns(input, &columns)
}

/// Whether `p` outputs exactly its input's fields, in order (so it can be dropped).
pub fn is_identity_projection(p: &Projection) -> bool {
    let in_schema = p.input.schema();
    p.exprs.len() == in_schema.len()
        && p.exprs.iter().enumerate().all(|(i, e)| match e {
            Expr::Column(c) => {
                matches!(in_schema.maybe_index_of_column(c), Ok(Some(j)) if j == i)
                    && in_schema.field(i) == p.schema.field(i)
            }
            _ => false,
        })
}

/// Whether an expression may be moved below another operator: it reads only columns, no
/// subqueries or outer references.
pub fn is_movable(expr: &Expr) -> bool {
    !expr.contains_subquery() && !expr.contains_outer_column() && !expr.contains_aggregate()
}

/// `(joined side, leaf side)` of an equality connecting `joined` and `leaf` (both sides
/// must name columns): how join rules turn a predicate into hash-join keys.
pub fn connecting_keys(e: &Expr, joined: &LogicalPlan, leaf: &LogicalPlan) -> Option<(Expr, Expr)> {
    let Expr::BinaryExpr {
        left,
        op: Operator::Eq,
        right,
    } = e
    else {
        return None;
    };
    if left.column_refs().is_empty() || right.column_refs().is_empty() {
        return None;
    }
    let (js, ls) = (joined.schema(), leaf.schema());
    if columns_in(left, js) && columns_in(right, ls) {
        Some((left.as_ref().clone(), right.as_ref().clone()))
    } else if columns_in(right, js) && columns_in(left, ls) {
        Some((right.as_ref().clone(), left.as_ref().clone()))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::{col, lit};
    use crate::optimizer::test_util::scan;

    #[test]
    fn identity_projection_is_detected() {
        let s = scan("t", &["a", "b"]);
        let p = Projection::try_new(Arc::clone(&s), vec![col("t.a"), col("t.b")]).unwrap();
        assert!(is_identity_projection(&p));
        let p = Projection::try_new(Arc::clone(&s), vec![col("t.b"), col("t.a")]).unwrap();
        assert!(!is_identity_projection(&p));
        let p = Projection::try_new(s, vec![col("t.a"), col("t.b").alias("c")]).unwrap();
        assert!(!is_identity_projection(&p));
    }

    #[test]
    fn rebase_maps_columns_by_position() {
        let a = scan("a", &["x", "y"]);
        let b = scan("b", &["p", "q"]);
        let e = rebase_columns(col("a.y").gt(lit(1i64)), a.schema(), b.schema()).unwrap();
        assert_eq!(e.to_string(), "(b.q > 1)");
        assert!(rebase_columns(col("zz"), a.schema(), b.schema()).is_none());
    }
}
