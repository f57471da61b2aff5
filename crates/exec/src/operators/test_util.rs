//! Helpers for operator tests: an in-memory table whose partitions are given batches, and
//! functions to run a plan and read its output.

use std::any::Any;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use ember_planner::physical::{PhysicalPlan, ScanExec};
use ember_planner::schema::PlanSchema;
use ember_planner::table::{BatchIter, ScanPartition, ScanRequest, TableSource};
use ember_planner::Result;

use crate::context::TaskContext;
use crate::udf::FunctionRegistry;

#[derive(Debug)]
pub struct MemTable {
    pub schema: SchemaRef,
    pub partitions: Vec<Vec<RecordBatch>>,
}

#[derive(Debug)]
pub struct MemPartition(pub Vec<RecordBatch>);

impl ScanPartition for MemPartition {
    fn execute(&self) -> Result<BatchIter> {
        Ok(Box::new(self.0.clone().into_iter().map(Ok)))
    }
    fn describe(&self) -> String {
        format!("{} batches", self.0.len())
    }
}

impl TableSource for MemTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn scan(&self, _: &ScanRequest) -> Result<Vec<Arc<dyn ScanPartition>>> {
        Ok(self
            .partitions
            .iter()
            .map(|p| Arc::new(MemPartition(p.clone())) as Arc<dyn ScanPartition>)
            .collect())
    }
    fn identity(&self) -> String {
        "memory".into()
    }
    fn kind(&self) -> &str {
        "memory"
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A scan over `partitions`; every batch must have the schema of the first one.
pub fn mem_scan(partitions: Vec<Vec<RecordBatch>>) -> Arc<PhysicalPlan> {
    let schema = partitions
        .iter()
        .flatten()
        .next()
        .expect("test tables need at least one batch")
        .schema();
    mem_scan_with_schema(schema, partitions)
}

pub fn mem_scan_with_schema(
    schema: SchemaRef,
    partitions: Vec<Vec<RecordBatch>>,
) -> Arc<PhysicalPlan> {
    let table = Arc::new(MemTable {
        schema: schema.clone(),
        partitions,
    });
    let parts = table.scan(&ScanRequest::default()).unwrap();
    Arc::new(PhysicalPlan::Scan(ScanExec {
        table_name: "t".into(),
        source: table,
        projection: None,
        filters: vec![],
        partitions: parts,
        schema: Arc::new(PlanSchema::from_arrow(Some("t"), &schema)),
    }))
}

pub fn test_ctx() -> Arc<TaskContext> {
    Arc::new(TaskContext::standalone(Arc::new(
        FunctionRegistry::default(),
    )))
}

pub fn test_ctx_with_batch_size(batch_size: usize) -> Arc<TaskContext> {
    let mut ctx = TaskContext::standalone(Arc::new(FunctionRegistry::default()));
    ctx.batch_size = batch_size;
    Arc::new(ctx)
}

/// Runs one partition of `plan` to completion.
pub fn collect(plan: &Arc<PhysicalPlan>, partition: usize) -> Vec<RecordBatch> {
    collect_with(plan, partition, &test_ctx())
}

pub fn collect_with(
    plan: &Arc<PhysicalPlan>,
    partition: usize,
    ctx: &Arc<TaskContext>,
) -> Vec<RecordBatch> {
    super::execute(plan, partition, ctx)
        .unwrap()
        .collect::<Result<Vec<_>>>()
        .unwrap()
}

pub fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
        .collect();
    RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .unwrap()
}

pub fn int_batch(name: &str, values: &[i64]) -> RecordBatch {
    batch(vec![(
        name,
        Arc::new(Int64Array::from(values.to_vec())) as ArrayRef,
    )])
}

/// Column `index` of all batches as Int64 values.
pub fn int_column(batches: &[RecordBatch], index: usize) -> Vec<Option<i64>> {
    batches
        .iter()
        .flat_map(|b| {
            let col = arrow::compute::cast(b.column(index), &DataType::Int64).unwrap();
            let col = col.as_any().downcast_ref::<Int64Array>().unwrap().clone();
            (0..col.len())
                .map(|i| col.is_valid(i).then(|| col.value(i)))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The batches as a pretty-printed table, one line per string, for readable assertions.
pub fn pretty(batches: &[RecordBatch]) -> Vec<String> {
    arrow::util::pretty::pretty_format_batches(batches)
        .unwrap()
        .to_string()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The data rows of [`pretty`], sorted: the batches' multiset of rows, for operators whose
/// output order is not defined (hash joins and aggregates, spilled or not).
pub fn sorted_rows(batches: &[RecordBatch]) -> Vec<String> {
    let mut lines: Vec<String> = pretty(batches)
        .into_iter()
        .filter(|l| l.starts_with('|'))
        .skip(1)
        .collect();
    lines.sort();
    lines
}

pub fn row_count(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}
