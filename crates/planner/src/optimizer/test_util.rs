//! Helpers for optimizer tests: a schema-only table source with row-count statistics and
//! builders for small plans.

use std::any::Any;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::error::Result;
use crate::logical::{LogicalPlan, TableScan};
use crate::table::{ScanPartition, ScanRequest, Statistics, TableSource};

#[derive(Debug)]
pub struct TestTable {
    pub schema: SchemaRef,
    pub rows: Option<usize>,
}

impl TableSource for TestTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn statistics(&self) -> Statistics {
        Statistics {
            num_rows: self.rows,
            total_bytes: self.rows.map(|r| r * 8 * self.schema.fields().len()),
        }
    }

    fn scan(&self, _request: &ScanRequest) -> Result<Vec<Arc<dyn ScanPartition>>> {
        Ok(vec![])
    }

    fn identity(&self) -> String {
        "test".into()
    }

    fn kind(&self) -> &str {
        "test"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A table whose columns are all Int64, with `rows` rows in its statistics.
pub fn table(columns: &[&str], rows: Option<usize>) -> Arc<dyn TableSource> {
    let fields: Vec<Field> = columns
        .iter()
        .map(|c| Field::new(*c, DataType::Int64, true))
        .collect();
    Arc::new(TestTable {
        schema: Arc::new(Schema::new(fields)),
        rows,
    })
}

/// A full scan of an Int64 table named `name` (no statistics).
pub fn scan(name: &str, columns: &[&str]) -> Arc<LogicalPlan> {
    scan_with_rows(name, columns, None)
}

pub fn scan_with_rows(name: &str, columns: &[&str], rows: Option<usize>) -> Arc<LogicalPlan> {
    Arc::new(LogicalPlan::TableScan(
        TableScan::try_new(name, table(columns, rows), None, vec![]).expect("valid scan"),
    ))
}

/// Drops a very deep plan without recursing once per level.
pub fn drop_deep(plan: Arc<LogicalPlan>) {
    let mut stack = vec![plan];
    while let Some(p) = stack.pop() {
        if let Ok(node) = Arc::try_unwrap(p) {
            stack.extend(node.inputs().into_iter().cloned());
        }
    }
}

/// The plan's EXPLAIN text, trimmed, for before/after assertions.
pub fn show(plan: &LogicalPlan) -> String {
    plan.display_indent().trim_end().to_string()
}
