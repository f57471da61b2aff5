//! Built-in scalar functions (`ember_planner::expr::BuiltinFunction`).
//!
//! Each function compiles into a [`FunctionExpr`]: its non-constant arguments plus a kernel
//! over their arrays. Constant arguments that steer the computation (substring bounds,
//! rounding digits, the EXTRACT field, a LIKE-style prefix) are read once at compile time and
//! captured by the kernel, so per batch there is one call and no per-row dispatch.

mod conditional;
mod datetime;
mod math;
mod string;

use std::fmt;

use arrow::array::{Array, ArrayRef};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use datafusion_common::ScalarValue;

use ember_planner::expr::BuiltinFunction;
use ember_planner::{internal_err, plan_err, Result};

use super::{PhysicalExpr, PhysicalExprRef};

pub(crate) fn build(func: BuiltinFunction, args: Vec<PhysicalExprRef>) -> Result<PhysicalExprRef> {
    use BuiltinFunction::*;
    match func {
        Substring | Upper | Lower | Trim | Ltrim | Rtrim | Length | Concat | Split | StartsWith => {
            string::build(func, args)
        }
        Abs | Round | Floor | Ceil | Power | Sqrt => math::build(func, args),
        Coalesce | NullIf | ScalarSubqueryValue => conditional::build(func, args),
        DatePart => datetime::build(args),
    }
}

/// Fails unless `min <= args.len() <= max`.
fn check_arity(
    func: BuiltinFunction,
    args: &[PhysicalExprRef],
    min: usize,
    max: usize,
) -> Result<()> {
    if args.len() < min || args.len() > max {
        let expected = if min == max {
            format!("{min}")
        } else if max == usize::MAX {
            format!("at least {min}")
        } else {
            format!("{min} to {max}")
        };
        return plan_err!(
            "{}() takes {expected} arguments, got {}",
            func.name(),
            args.len()
        );
    }
    Ok(())
}

/// The value of a constant argument, or a plan error saying it must be constant.
fn constant_arg<'a>(
    func: BuiltinFunction,
    arg: &'a PhysicalExprRef,
    what: &str,
) -> Result<&'a ScalarValue> {
    match arg.as_literal() {
        Some(v) => Ok(v),
        None => plan_err!("{}(): {what} must be a constant", func.name()),
    }
}

pub(crate) type Kernel = Box<dyn Fn(&[ArrayRef]) -> Result<ArrayRef> + Send + Sync>;

/// A function call: evaluate the arguments, run the kernel on their arrays.
pub(crate) struct FunctionExpr {
    name: &'static str,
    args: Vec<PhysicalExprRef>,
    return_type: DataType,
    kernel: Kernel,
}

impl FunctionExpr {
    pub(crate) fn new_ref(
        func: BuiltinFunction,
        args: Vec<PhysicalExprRef>,
        return_type: DataType,
        kernel: Kernel,
    ) -> PhysicalExprRef {
        std::sync::Arc::new(FunctionExpr {
            name: func.name(),
            args,
            return_type,
            kernel,
        })
    }
}

impl fmt::Debug for FunctionExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({:?}) -> {}", self.name, self.args, self.return_type)
    }
}

impl PhysicalExpr for FunctionExpr {
    fn data_type(&self) -> &DataType {
        &self.return_type
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        let args = self
            .args
            .iter()
            .map(|a| a.evaluate(batch))
            .collect::<Result<Vec<_>>>()?;
        let out = (self.kernel)(&args)?;
        if out.data_type() != &self.return_type || out.len() != batch.num_rows() {
            return internal_err!(
                "{}() returned {} values of type {} for {} rows of type {}",
                self.name,
                out.len(),
                out.data_type(),
                batch.num_rows(),
                self.return_type
            );
        }
        Ok(out)
    }
}
