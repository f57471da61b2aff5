//! Scalar user-defined functions: Rust closures over Arrow arrays, registered by name.
//! Plans refer to them by name only, so plans stay plain data.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::DataType;
use parking_lot::RwLock;

use ember_planner::Result;

pub type ScalarFunctionImpl = Arc<dyn Fn(&[ArrayRef]) -> Result<ArrayRef> + Send + Sync>;

#[derive(Clone)]
pub struct ScalarUdf {
    pub name: String,
    /// Argument types; arguments are cast to these before the call.
    pub arg_types: Vec<DataType>,
    pub return_type: DataType,
    pub fun: ScalarFunctionImpl,
}

impl fmt::Debug for ScalarUdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ScalarUdf({}({:?}) -> {})",
            self.name, self.arg_types, self.return_type
        )
    }
}

/// The UDFs of a session, shared with every task.
#[derive(Debug, Default)]
pub struct FunctionRegistry {
    udfs: RwLock<HashMap<String, Arc<ScalarUdf>>>,
}

impl FunctionRegistry {
    pub fn register(&self, udf: ScalarUdf) {
        self.udfs
            .write()
            .insert(udf.name.to_ascii_lowercase(), Arc::new(udf));
    }

    pub fn get(&self, name: &str) -> Option<Arc<ScalarUdf>> {
        self.udfs.read().get(&name.to_ascii_lowercase()).cloned()
    }

    pub fn names(&self) -> Vec<String> {
        self.udfs.read().keys().cloned().collect()
    }
}
