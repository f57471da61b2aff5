//! `[NOT] LIKE` / `ILIKE` on Arrow's LIKE kernels. A constant pattern stays a scalar, which
//! lets the kernel turn `'%BRASS'` into an `ends_with` scan instead of a regex.

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::compute::kernels::comparison as kernels;
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use datafusion_common::ScalarValue;

use ember_planner::types::is_string;
use ember_planner::{plan_err, Result};

use super::binary::null_of;
use super::cast::coerce;
use super::datum::{evaluate_pair, Operand};
use super::{PhysicalExpr, PhysicalExprRef};

pub(crate) fn build(
    expr: PhysicalExprRef,
    pattern: PhysicalExprRef,
    negated: bool,
    case_insensitive: bool,
) -> Result<PhysicalExprRef> {
    let (et, pt) = (expr.data_type().clone(), pattern.data_type().clone());
    if et == DataType::Null || pt == DataType::Null {
        return null_of(&DataType::Boolean);
    }
    if !is_string(&et) || !is_string(&pt) {
        return plan_err!("LIKE needs strings, got {et} LIKE {pt}");
    }
    if let Some(
        ScalarValue::Utf8(Some(p))
        | ScalarValue::LargeUtf8(Some(p))
        | ScalarValue::Utf8View(Some(p)),
    ) = pattern.as_literal()
    {
        check_escapes(p)?;
    }
    // The kernels want both sides of one string type.
    let pattern = coerce(pattern, &et)?;
    Ok(Arc::new(LikeExpr {
        expr: Operand::array_only(expr),
        pattern: Operand::new(pattern)?,
        negated,
        case_insensitive,
    }))
}

/// A pattern may not end in an unpaired escape character (`\`): it escapes nothing, and
/// the kernels would quietly match it as a literal backslash or not at all (Spark and
/// PostgreSQL reject it too).
fn check_escapes(pattern: &str) -> Result<()> {
    let trailing = pattern.chars().rev().take_while(|c| *c == '\\').count();
    if trailing % 2 == 1 {
        return plan_err!(
            "LIKE pattern '{pattern}' ends with the escape character \\, which escapes \
             nothing (write \\\\ for a literal backslash)"
        );
    }
    Ok(())
}

#[derive(Debug)]
struct LikeExpr {
    expr: Operand,
    pattern: Operand,
    negated: bool,
    case_insensitive: bool,
}

impl PhysicalExpr for LikeExpr {
    fn data_type(&self) -> &DataType {
        &DataType::Boolean
    }
    fn evaluate(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        let (e, p) = evaluate_pair(&self.expr, &self.pattern, batch)?;
        let (e, p) = (e.datum(), p.datum());
        let out = match (self.negated, self.case_insensitive) {
            (false, false) => kernels::like(e, p)?,
            (true, false) => kernels::nlike(e, p)?,
            (false, true) => kernels::ilike(e, p)?,
            (true, true) => kernels::nilike(e, p)?,
        };
        Ok(Arc::new(out))
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::StringArray;
    use ember_planner::expr::{col, lit, Expr};

    use super::*;
    use crate::expr::test_util::{batch, eval_bools};

    fn parts() -> RecordBatch {
        batch(vec![(
            "p_type",
            Arc::new(StringArray::from(vec![
                Some("STANDARD POLISHED BRASS"),
                Some("PROMO BURNISHED COPPER"),
                None,
                Some("small brass"),
            ])) as ArrayRef,
        )])
    }

    #[test]
    fn like_suffix_prefix_and_negation() {
        assert_eq!(
            eval_bools(&col("p_type").like(lit("%BRASS")), &parts()),
            vec![Some(true), Some(false), None, Some(false)]
        );
        assert_eq!(
            eval_bools(&col("p_type").like(lit("PROMO%")), &parts()),
            vec![Some(false), Some(true), None, Some(false)]
        );
        let not_like = Expr::Like {
            negated: true,
            expr: Box::new(col("p_type")),
            pattern: Box::new(lit("%BRASS")),
            case_insensitive: false,
        };
        assert_eq!(
            eval_bools(&not_like, &parts()),
            vec![Some(false), Some(true), None, Some(true)]
        );
    }

    #[test]
    fn a_pattern_ending_in_an_unpaired_escape_is_an_error() {
        let e = crate::expr::test_util::eval_err(&col("p_type").like(lit("PROMO\\")), &parts());
        assert!(e.contains("ends with the escape character"), "{e}");
        // An escaped backslash at the end is a literal backslash: fine.
        assert_eq!(
            eval_bools(&col("p_type").like(lit("%\\\\")), &parts()),
            vec![Some(false), Some(false), None, Some(false)]
        );
        assert_eq!(
            eval_bools(&col("p_type").like(lit("%\\%")), &parts()),
            vec![Some(false), Some(false), None, Some(false)]
        );
    }

    #[test]
    fn ilike_ignores_case_and_underscore_matches_one_char() {
        let ilike = Expr::Like {
            negated: false,
            expr: Box::new(col("p_type")),
            pattern: Box::new(lit("%bras_")),
            case_insensitive: true,
        };
        assert_eq!(
            eval_bools(&ilike, &parts()),
            vec![Some(true), Some(false), None, Some(true)]
        );
    }
}
