//! Operands that are either evaluated per batch or constant. Arrow's comparison, arithmetic,
//! LIKE and `zip` kernels take a constant as a one-element `Scalar` and broadcast it
//! themselves, so a literal never becomes a batch-sized array.

use std::fmt;

use arrow::array::{ArrayRef, Datum, Scalar};
use arrow::record_batch::RecordBatch;
use datafusion_common::ScalarValue;

use ember_planner::Result;

use super::PhysicalExprRef;

/// One input of a kernel: a compiled expression, or a constant kept as a scalar.
pub(crate) enum Operand {
    Expr(PhysicalExprRef),
    Scalar {
        value: ScalarValue,
        scalar: Scalar<ArrayRef>,
    },
}

impl fmt::Debug for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operand::Expr(e) => write!(f, "{e:?}"),
            Operand::Scalar { value, .. } => write!(f, "Scalar({value:?})"),
        }
    }
}

impl Operand {
    /// A literal becomes a scalar operand; anything else is evaluated per batch.
    pub(crate) fn new(expr: PhysicalExprRef) -> Result<Self> {
        match expr.as_literal() {
            Some(value) => Ok(Operand::Scalar {
                scalar: value.to_scalar()?,
                value: value.clone(),
            }),
            None => Ok(Operand::Expr(expr)),
        }
    }

    /// An operand that is always evaluated into a full array (for kernels without scalar
    /// support).
    pub(crate) fn array_only(expr: PhysicalExprRef) -> Self {
        Operand::Expr(expr)
    }

    pub(crate) fn is_scalar(&self) -> bool {
        matches!(self, Operand::Scalar { .. })
    }

    pub(crate) fn evaluate(&self, batch: &RecordBatch) -> Result<Evaluated<'_>> {
        Ok(match self {
            Operand::Expr(e) => Evaluated::Array(e.evaluate(batch)?),
            Operand::Scalar { scalar, .. } => Evaluated::Scalar(scalar),
        })
    }

    /// Evaluates into a batch-sized array, broadcasting a constant.
    pub(crate) fn evaluate_array(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        match self {
            Operand::Expr(e) => e.evaluate(batch),
            Operand::Scalar { value, .. } => Ok(value.to_array_of_size(batch.num_rows())?),
        }
    }
}

/// The value of an [`Operand`] for one batch.
pub(crate) enum Evaluated<'a> {
    Array(ArrayRef),
    Scalar(&'a Scalar<ArrayRef>),
}

impl Evaluated<'_> {
    pub(crate) fn datum(&self) -> &dyn Datum {
        match self {
            Evaluated::Array(a) => a,
            Evaluated::Scalar(s) => *s,
        }
    }
}

/// Evaluates two operands for a binary kernel. Two constants would make the kernel return a
/// single element, so then the left one is broadcast (this only happens when constant
/// folding failed, e.g. on overflow, so the kernel reports the error per batch).
pub(crate) fn evaluate_pair<'a>(
    left: &'a Operand,
    right: &'a Operand,
    batch: &RecordBatch,
) -> Result<(Evaluated<'a>, Evaluated<'a>)> {
    let l = if left.is_scalar() && right.is_scalar() {
        Evaluated::Array(left.evaluate_array(batch)?)
    } else {
        left.evaluate(batch)?
    };
    Ok((l, right.evaluate(batch)?))
}
