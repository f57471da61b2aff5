//! Calls of user-defined scalar functions. The UDF is looked up when the expression is
//! compiled (so a missing UDF fails before any row is read); arguments are cast to the
//! UDF's declared argument types, and what the closure returns is checked, since it is
//! user code: a wrong type or length is an error naming the UDF, not a corrupt batch.

use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;

use ember_planner::{exec_err, plan_err, Result};

use super::cast::coerce;
use super::{PhysicalExpr, PhysicalExprRef};
use crate::udf::{FunctionRegistry, ScalarUdf};

pub(crate) fn build(
    name: &str,
    args: Vec<PhysicalExprRef>,
    return_type: &DataType,
    functions: &FunctionRegistry,
) -> Result<PhysicalExprRef> {
    let Some(udf) = functions.get(name) else {
        return plan_err!("unknown function '{name}': no UDF of that name is registered");
    };
    if args.len() != udf.arg_types.len() {
        return plan_err!(
            "UDF '{}' takes {} arguments, got {}",
            udf.name,
            udf.arg_types.len(),
            args.len()
        );
    }
    if &udf.return_type != return_type {
        return plan_err!(
            "UDF '{}' returns {} but the plan expects {return_type}",
            udf.name,
            udf.return_type
        );
    }
    let args = args
        .into_iter()
        .zip(&udf.arg_types)
        .map(|(a, t)| coerce(a, t))
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(UdfExpr { udf, args }))
}

struct UdfExpr {
    udf: Arc<ScalarUdf>,
    args: Vec<PhysicalExprRef>,
}

impl fmt::Debug for UdfExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}({:?})", self.udf, self.args)
    }
}

impl PhysicalExpr for UdfExpr {
    fn data_type(&self) -> &DataType {
        &self.udf.return_type
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        let args = self
            .args
            .iter()
            .map(|a| a.evaluate(batch))
            .collect::<Result<Vec<_>>>()?;
        let out =
            (self.udf.fun)(&args).map_err(|e| e.context(format!("in UDF '{}'", self.udf.name)))?;
        if out.data_type() != &self.udf.return_type {
            return exec_err!(
                "UDF '{}' returned {} but declares {}",
                self.udf.name,
                out.data_type(),
                self.udf.return_type
            );
        }
        if out.len() != batch.num_rows() {
            return exec_err!(
                "UDF '{}' returned {} values for {} rows",
                self.udf.name,
                out.len(),
                batch.num_rows()
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{AsArray, Int32Array};
    use arrow::datatypes::Int64Type;
    use ember_planner::expr::{col, Expr};

    use super::*;
    use crate::expr::test_util::{batch, strings, try_eval_with};

    fn registry() -> FunctionRegistry {
        let r = FunctionRegistry::default();
        r.register(ScalarUdf {
            name: "double_it".into(),
            arg_types: vec![DataType::Int64],
            return_type: DataType::Int64,
            fun: Arc::new(|args| {
                let a = args[0].as_primitive::<Int64Type>();
                Ok(Arc::new(arrow::compute::unary::<_, _, Int64Type>(a, |v| v * 2)) as ArrayRef)
            }),
        });
        r.register(ScalarUdf {
            name: "liar".into(),
            arg_types: vec![DataType::Int64],
            return_type: DataType::Int64,
            fun: Arc::new(|_| Ok(Arc::new(Int32Array::from(vec![1])) as ArrayRef)),
        });
        r
    }

    fn call(name: &str) -> Expr {
        Expr::ScalarUdf {
            name: name.into(),
            args: vec![col("i")],
            return_type: DataType::Int64,
        }
    }

    #[test]
    fn udf_args_are_cast_and_results_checked() {
        let b = batch(vec![(
            "i",
            Arc::new(Int32Array::from(vec![Some(2), None])) as ArrayRef,
        )]);
        let out = try_eval_with(&call("DOUBLE_IT"), &b, &registry()).unwrap();
        assert_eq!(strings(&out), ["4", "NULL"]);
        let err = try_eval_with(&call("liar"), &b, &registry()).unwrap_err();
        assert!(
            err.to_string().contains("UDF 'liar' returned Int32"),
            "{err}"
        );
        let err = try_eval_with(&call("missing"), &b, &registry()).unwrap_err();
        assert!(
            err.to_string().contains("unknown function 'missing'"),
            "{err}"
        );
    }
}
