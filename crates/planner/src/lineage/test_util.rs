//! Builders for lineage and fingerprint tests: physical plans over a schema-only table whose
//! identity and statistics the test chooses, and hand-made stage graphs.

use std::any::Any;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::error::Result;
use crate::expr::Expr;
use crate::physical::{AggregateMode, ExchangeKind, PhysicalPlan, ScanExec};
use crate::schema::{PlanSchema, PlanSchemaRef};
use crate::stages::{Stage, StageGraph, StageOutput};
use crate::table::{BatchIter, ScanPartition, ScanRequest, Statistics, TableSource};

/// A table of Int64 columns `a`, `b` with the given identity and row count.
#[derive(Debug)]
pub struct IdTable {
    pub schema: SchemaRef,
    pub identity: String,
    pub rows: Option<usize>,
}

#[derive(Debug)]
pub struct NumberedPartition(pub usize);

impl ScanPartition for NumberedPartition {
    fn execute(&self) -> Result<BatchIter> {
        Ok(Box::new(std::iter::empty()))
    }
    fn describe(&self) -> String {
        format!("part-{}", self.0)
    }
}

impl TableSource for IdTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
    fn statistics(&self) -> Statistics {
        Statistics {
            num_rows: self.rows,
            total_bytes: self.rows.map(|r| r * 16),
        }
    }
    fn scan(&self, _request: &ScanRequest) -> Result<Vec<Arc<dyn ScanPartition>>> {
        Ok(vec![])
    }
    fn identity(&self) -> String {
        self.identity.clone()
    }
    fn kind(&self) -> &str {
        "test"
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A scan of table `t` (columns `a`, `b`) with `partitions` partitions.
pub fn scan(identity: &str, rows: Option<usize>, partitions: usize) -> Arc<PhysicalPlan> {
    let arrow = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Int64, false),
        Field::new("b", DataType::Int64, true),
    ]));
    let schema: PlanSchemaRef = Arc::new(PlanSchema::from_arrow(Some("t"), &arrow));
    let source = Arc::new(IdTable {
        schema: arrow,
        identity: identity.to_string(),
        rows,
    });
    Arc::new(PhysicalPlan::Scan(ScanExec {
        table_name: "t".into(),
        source,
        projection: None,
        filters: vec![],
        partitions: (0..partitions)
            .map(|i| Arc::new(NumberedPartition(i)) as Arc<dyn ScanPartition>)
            .collect(),
        schema,
    }))
}

pub fn filter(input: Arc<PhysicalPlan>, predicate: Expr) -> Arc<PhysicalPlan> {
    Arc::new(PhysicalPlan::Filter { input, predicate })
}

pub fn exchange(input: Arc<PhysicalPlan>, kind: ExchangeKind) -> Arc<PhysicalPlan> {
    Arc::new(PhysicalPlan::Exchange { input, kind })
}

/// A global aggregate without groups (`COUNT(*)`-like): many rows in, one per partition out.
pub fn partial_count(input: Arc<PhysicalPlan>) -> Arc<PhysicalPlan> {
    let schema = Arc::new(PlanSchema::from_arrow(
        None,
        &Schema::new(vec![Field::new("count", DataType::Int64, false)]),
    ));
    Arc::new(PhysicalPlan::HashAggregate {
        aggr_input_schema: Arc::clone(input.schema()),
        input,
        mode: AggregateMode::Partial,
        group_exprs: vec![],
        aggr_exprs: vec![crate::expr::count_star()],
        schema,
    })
}

/// Reads the shuffle output of `stage` (schema of `like`).
pub fn shuffle_read(stage: usize, partitions: usize, like: &PhysicalPlan) -> Arc<PhysicalPlan> {
    Arc::new(PhysicalPlan::ShuffleRead {
        stage,
        kind: ExchangeKind::RoundRobin(partitions),
        map_partitions: partitions,
        partitions,
        schema: Arc::clone(like.schema()),
    })
}

/// A stage reading its parents; the last stage of a graph should use `StageOutput::Result`.
pub fn stage(
    id: usize,
    plan: Arc<PhysicalPlan>,
    parents: Vec<usize>,
    output: StageOutput,
) -> Stage {
    Stage {
        id,
        partitions: plan.output_partitions(),
        plan,
        output,
        parents,
        checkpoint: None,
        tee: None,
    }
}

/// A chain of `n` stages: a scan of `rows` rows, then `n - 1` stages each filtering the
/// previous stage's shuffle output; the last is the result stage.
pub fn chain(n: usize, rows: Option<usize>, partitions: usize) -> StageGraph {
    let source = scan("t-v1", rows, partitions);
    let mut stages = Vec::with_capacity(n);
    for id in 0..n {
        let plan = if id == 0 {
            Arc::clone(&source)
        } else {
            let pred = crate::expr::col("t.a").gt(crate::expr::lit(id as i64));
            filter(shuffle_read(id - 1, partitions, &source), pred)
        };
        let output = if id + 1 == n {
            StageOutput::Result
        } else {
            StageOutput::Shuffle(ExchangeKind::RoundRobin(partitions))
        };
        let parents = if id == 0 { vec![] } else { vec![id - 1] };
        stages.push(stage(id, plan, parents, output));
    }
    StageGraph { stages }
}

/// Drops a very deep plan without recursing once per level.
pub fn drop_deep(plan: Arc<PhysicalPlan>) {
    let mut stack = vec![plan];
    while let Some(p) = stack.pop() {
        if let Ok(node) = Arc::try_unwrap(p) {
            stack.extend(node.inputs().into_iter().cloned());
        }
    }
}
