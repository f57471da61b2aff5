//! Round trips through the wire format with a test source whose descriptor names a
//! table and whose partitions are numbered.

use std::any::Any;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion_common::ScalarValue;
use serde_json::json;

use super::*;
use crate::expr::{col, count_star, lit, sum, BuiltinFunction, Expr, Subquery};
use crate::logical::{Filter, JoinType, Projection, TableScan};
use crate::persist::{PersistMode, StorageLevel};
use crate::physical::{AggregateMode, ExchangeKind, JoinMode, ScanExec, WriteFormat};
use crate::schema::{Column, PlanSchema};
use crate::stages::build_stage_graph;
use crate::table::{BatchIter, ScanPartition, ScanRequest};

#[derive(Debug)]
struct NamedTable {
    name: String,
    schema: SchemaRef,
    serialisable: bool,
}

#[derive(Debug)]
struct Part(u64);

impl ScanPartition for Part {
    fn execute(&self) -> Result<BatchIter> {
        Ok(Box::new(std::iter::empty()))
    }
    fn describe(&self) -> String {
        format!("part {}", self.0)
    }
    fn descriptor(&self) -> Result<PartitionDescriptor> {
        Ok(PartitionDescriptor(json!({ "part": self.0 })))
    }
}

impl TableSource for NamedTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
    fn scan(&self, _request: &ScanRequest) -> Result<Vec<Arc<dyn ScanPartition>>> {
        Ok(vec![Arc::new(Part(0)), Arc::new(Part(1))])
    }
    fn identity(&self) -> String {
        format!("named:{}", self.name)
    }
    fn kind(&self) -> &str {
        if self.serialisable {
            "named"
        } else {
            "memory"
        }
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn descriptor(&self) -> Result<SourceDescriptor> {
        if !self.serialisable {
            return Err(EmberError::NotImplemented(
                "a memory table cannot be sent to another process".into(),
            ));
        }
        Ok(SourceDescriptor {
            kind: "named".into(),
            identity: self.identity(),
            spec: json!({ "name": self.name, "schema": self.schema.as_ref() }),
        })
    }
}

/// Reopens [`NamedTable`]s and counts how often, to check sources are resolved once.
#[derive(Default)]
struct Resolver {
    opened: std::sync::Mutex<usize>,
}

impl ScanResolver for Resolver {
    fn resolve_source(&self, desc: &SourceDescriptor) -> Result<Arc<dyn TableSource>> {
        *self.opened.lock().unwrap() += 1;
        let name = desc.spec["name"].as_str().unwrap().to_string();
        let schema: Schema = serde_json::from_value(desc.spec["schema"].clone()).unwrap();
        Ok(Arc::new(NamedTable {
            name,
            schema: Arc::new(schema),
            serialisable: true,
        }))
    }

    fn resolve_partition(
        &self,
        _source: &Arc<dyn TableSource>,
        desc: &PartitionDescriptor,
    ) -> Result<Arc<dyn ScanPartition>> {
        let part = desc.0["part"]
            .as_u64()
            .ok_or_else(|| EmberError::Plan(format!("bad partition {}", desc.0)))?;
        Ok(Arc::new(Part(part)))
    }
}

fn table(name: &str, serialisable: bool) -> Arc<dyn TableSource> {
    Arc::new(NamedTable {
        name: name.into(),
        schema: Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Decimal128(15, 2), true),
        ])),
        serialisable,
    })
}

fn scan(name: &str, source: &Arc<dyn TableSource>) -> Arc<PhysicalPlan> {
    Arc::new(PhysicalPlan::Scan(ScanExec {
        table_name: name.into(),
        source: Arc::clone(source),
        projection: Some(vec![0, 1]),
        filters: vec![col("a").gt(lit(3i64))],
        partitions: source.scan(&ScanRequest::default()).unwrap(),
        schema: Arc::new(PlanSchema::from_arrow(Some(name), &source.schema())),
    }))
}

fn json_of(plan: &Arc<PhysicalPlan>) -> String {
    to_json(&physical_plan_to_wire(plan).unwrap()).unwrap()
}

/// JSON → plan → JSON must give the same text.
fn physical_round_trip(plan: &Arc<PhysicalPlan>) -> Arc<PhysicalPlan> {
    let text = json_of(plan);
    let back = physical_plan_from_wire(&from_json(&text).unwrap(), &Resolver::default()).unwrap();
    assert_eq!(json_of(&back), text);
    assert_eq!(back.display_indent(), plan.display_indent());
    back
}

/// A plan using every physical operator, with a shuffled side read by two joins.
fn every_operator(source: &Arc<dyn TableSource>) -> Arc<PhysicalPlan> {
    let t = scan("t", source);
    let schema = Arc::clone(t.schema());
    let shuffled = Arc::new(PhysicalPlan::Exchange {
        input: Arc::new(PhysicalPlan::Filter {
            input: t,
            predicate: col("t.a").is_not_null(),
        }),
        kind: ExchangeKind::Hash(vec![col("t.a")], 4),
    });
    let joined = Arc::new(PhysicalPlan::HashJoin {
        left: Arc::clone(&shuffled),
        right: Arc::clone(&shuffled),
        on: vec![(col("t.a"), col("t.a"))],
        filter: Some(col("t.b").lt(lit(ScalarValue::Decimal128(Some(150), 15, 2)))),
        join_type: JoinType::LeftSemi,
        null_aware: true,
        mode: JoinMode::Partitioned,
        schema: Arc::clone(&schema),
    });
    let nested = Arc::new(PhysicalPlan::NestedLoopJoin {
        left: joined,
        right: Arc::new(PhysicalPlan::Exchange {
            input: Arc::new(PhysicalPlan::Values {
                schema: Arc::clone(&schema),
                rows: vec![vec![lit(1i64), lit(ScalarValue::Decimal128(None, 15, 2))]],
            }),
            kind: ExchangeKind::Broadcast,
        }),
        filter: None,
        join_type: JoinType::Inner,
        schema: Arc::new(schema.join(&schema)),
    });
    let projected = Arc::new(PhysicalPlan::Projection {
        input: nested,
        exprs: vec![col("t.a"), col("t.b")],
        schema: Arc::clone(&schema),
    });
    let partial = Arc::new(PhysicalPlan::HashAggregate {
        input: projected,
        mode: AggregateMode::Partial,
        group_exprs: vec![col("t.a")],
        aggr_exprs: vec![sum(col("t.b")), count_star()],
        aggr_input_schema: Arc::clone(&schema),
        schema: Arc::clone(&schema),
    });
    let union = Arc::new(PhysicalPlan::Union {
        inputs: vec![
            Arc::new(PhysicalPlan::Exchange {
                input: partial,
                kind: ExchangeKind::RoundRobin(3),
            }),
            Arc::new(PhysicalPlan::Persist {
                input: Arc::new(PhysicalPlan::Exchange {
                    input: scan("t", source),
                    kind: ExchangeKind::Range {
                        sort: vec![col("t.a").sort(false, true)],
                        partitions: 2,
                    },
                }),
                id: 7,
                mode: PersistMode::Cache(StorageLevel::MemoryAndDisk),
            }),
        ],
        schema: Arc::clone(&schema),
    });
    let sorted = Arc::new(PhysicalPlan::Sort {
        input: Arc::new(PhysicalPlan::Exchange {
            input: union,
            kind: ExchangeKind::Single,
        }),
        exprs: vec![col("t.a").sort(true, false)],
        fetch: Some(10),
    });
    Arc::new(PhysicalPlan::Write {
        input: Arc::new(PhysicalPlan::Limit {
            input: sorted,
            skip: 1,
            fetch: Some(5),
        }),
        path: "/out".into(),
        format: WriteFormat::Parquet,
        job_id: "w1".into(),
    })
}

#[test]
fn every_physical_operator_round_trips_and_sharing_survives() {
    let source = table("t", true);
    let plan = every_operator(&source);
    let back = physical_round_trip(&plan);

    // The shuffled side read by both join inputs is one node again, so the stage cutter
    // still makes one stage of it.
    let mut node = back.as_ref();
    let join = loop {
        if let PhysicalPlan::HashJoin { left, right, .. } = node {
            break (left, right);
        }
        node = node.inputs()[0];
    };
    assert!(Arc::ptr_eq(join.0, join.1));
    let stages = |p: &Arc<PhysicalPlan>| build_stage_graph(p).unwrap().stages.len();
    assert_eq!(stages(&back), stages(&plan));

    // The two scans of `t` share one source, resolved once.
    let resolver = Resolver::default();
    physical_plan_from_wire(&physical_plan_to_wire(&plan).unwrap(), &resolver).unwrap();
    assert_eq!(*resolver.opened.lock().unwrap(), 1);
    assert_eq!(physical_plan_to_wire(&plan).unwrap().sources.len(), 1);
}

#[test]
fn cut_stage_plans_round_trip() {
    let plan = every_operator(&table("t", true));
    for stage in build_stage_graph(&plan).unwrap().stages {
        physical_round_trip(&stage.plan);
    }
    let read = Arc::new(PhysicalPlan::PersistRead {
        stage: 3,
        id: 9,
        mode: PersistMode::Checkpoint,
        partitions: 4,
        schema: Arc::clone(plan.schema()),
    });
    physical_round_trip(&read);
}

#[test]
fn in_memory_tables_are_refused_with_the_table_name() {
    let plan = scan("people", &table("people", false));
    let err = physical_plan_to_wire(&plan).unwrap_err();
    assert!(matches!(err.root(), EmberError::NotImplemented(_)), "{err}");
    assert!(err.to_string().contains("table people"), "{err}");
}

/// One of each expression variant, including a correlated subquery.
fn every_expr() -> Vec<Expr> {
    let sub_source = table("s", true);
    let sub_scan = Arc::new(LogicalPlan::TableScan(
        TableScan::try_new("s", sub_source, None, vec![]).unwrap(),
    ));
    let correlated = Arc::new(LogicalPlan::Filter(Filter {
        input: sub_scan,
        predicate: col("s.a").eq(Expr::OuterColumn(
            Column::from_qualified_name("t.a"),
            DataType::Int64,
        )),
    }));
    let subquery = Subquery {
        plan: correlated,
        outer_refs: vec![Column::from_qualified_name("t.a")],
    };
    vec![
        col("t.a").add(lit(1i64)).alias("x"),
        col("a").not().is_null().is_not_null(),
        Expr::Negative(Box::new(col("a"))),
        col("a").between(lit(1i64), lit(2i64)),
        col("a").in_list(vec![lit(1i64), lit(ScalarValue::Null)], true),
        Expr::Like {
            negated: true,
            expr: Box::new(col("c")),
            pattern: Box::new(lit("%x_")),
            case_insensitive: true,
        },
        Expr::Case {
            operand: Some(Box::new(col("a"))),
            when_then: vec![(lit(1i64), lit("one"))],
            else_expr: Some(Box::new(lit(ScalarValue::Utf8(None)))),
        },
        col("d").cast_to(DataType::Date32),
        Expr::ScalarFunction {
            func: BuiltinFunction::DatePart,
            args: vec![lit("year"), lit(ScalarValue::Date32(Some(9000)))],
        },
        Expr::ScalarUdf {
            name: "my_udf".into(),
            args: vec![col("a")],
            return_type: DataType::Float64,
        },
        Expr::AggregateFunction {
            func: crate::expr::AggregateFunction::Avg,
            args: vec![col("a")],
            distinct: true,
        },
        Expr::ScalarSubquery(subquery.clone()),
        Expr::InSubquery {
            expr: Box::new(col("a")),
            subquery: subquery.clone(),
            negated: false,
        },
        Expr::Exists {
            subquery,
            negated: true,
        },
        Expr::Wildcard {
            qualifier: Some("t".into()),
        },
        lit(ScalarValue::IntervalMonthDayNano(Some(
            arrow::datatypes::IntervalMonthDayNano::new(1, 2, 3),
        ))),
    ]
}

#[test]
fn every_expression_round_trips_inside_a_logical_plan() {
    let source = table("t", true);
    let scan = Arc::new(LogicalPlan::TableScan(
        TableScan::try_new("t", Arc::clone(&source), Some(vec![1, 0]), vec![]).unwrap(),
    ));
    let exprs = every_expr();
    let schema = Arc::new(PlanSchema::new(
        exprs
            .iter()
            .enumerate()
            .map(|(i, _)| {
                crate::schema::QualifiedField::new(
                    None,
                    Field::new(format!("c{i}"), DataType::Null, true),
                )
            })
            .collect(),
    ));
    let plan = Arc::new(LogicalPlan::Projection(Projection {
        input: scan,
        exprs: exprs.clone(),
        schema,
    }));
    let wire = logical_plan_to_wire(&plan).unwrap();
    let text = to_json(&wire).unwrap();
    // Three subqueries share one plan: encoded once.
    assert_eq!(wire.logical.len(), 4, "{text}");
    let back = logical_plan_from_wire(&from_json(&text).unwrap(), &Resolver::default()).unwrap();
    assert_eq!(
        to_json(&logical_plan_to_wire(&back).unwrap()).unwrap(),
        text
    );
    let LogicalPlan::Projection(p) = back.as_ref() else {
        panic!("expected a projection, got {back:?}");
    };
    // Expressions without scans compare equal; subqueries hold a reopened source, which
    // is a different object (TableScan equality is by source identity).
    for (a, b) in p.exprs.iter().zip(&exprs) {
        if !matches!(
            b,
            Expr::ScalarSubquery(_) | Expr::InSubquery { .. } | Expr::Exists { .. }
        ) {
            assert_eq!(a, b);
        }
    }
    assert_eq!(back.display_indent(), plan.display_indent());
}

#[test]
fn deep_plans_do_not_overflow_the_stack() {
    let mut plan = scan("t", &table("t", true));
    for i in 0..20_000 {
        plan = Arc::new(PhysicalPlan::Limit {
            input: plan,
            skip: 0,
            fetch: Some(i),
        });
    }
    let wire = physical_plan_to_wire(&plan).unwrap();
    assert_eq!(wire.physical.len(), 20_001);
    let back = physical_plan_from_wire(&wire, &Resolver::default()).unwrap();
    assert_eq!(back.output_partitions(), 2);
    // Dropping a chain of 20 000 Arcs recurses; unwind both by hand.
    for p in [plan, back] {
        let mut next = Some(p);
        while let Some(p) = next.take() {
            if let Ok(node) = Arc::try_unwrap(p) {
                next = node.inputs().first().map(|i| Arc::clone(i));
            }
        }
    }
}

#[test]
fn malformed_documents_are_plan_errors() {
    let mut wire = physical_plan_to_wire(&scan("t", &table("t", true))).unwrap();
    wire.root = WireRoot::Physical(5);
    let err = physical_plan_from_wire(&wire, &Resolver::default()).unwrap_err();
    assert!(err.to_string().contains("physical node 5"), "{err}");

    wire.root = WireRoot::Physical(0);
    wire.version = 99;
    let err = physical_plan_from_wire(&wire, &Resolver::default()).unwrap_err();
    assert!(err.to_string().contains("version 99"), "{err}");

    wire.version = WIRE_VERSION;
    wire.physical.push(PhysicalNode::Filter {
        input: 3,
        predicate: ExprWire::Column(Column::unqualified("a")),
    });
    wire.root = WireRoot::Physical(1);
    let err = physical_plan_from_wire(&wire, &Resolver::default()).unwrap_err();
    assert!(err.to_string().contains("before it is defined"), "{err}");

    let err = logical_plan_from_wire(&wire, &Resolver::default()).unwrap_err();
    assert!(err.to_string().contains("found a physical plan"), "{err}");
    assert!(from_json("{\"version\":1}").is_err());
}

#[test]
fn long_left_deep_chains_stay_flat_in_json() {
    let mut predicate = col("a").eq(lit(0i64));
    for i in 1..500i64 {
        predicate = predicate.or(col("a").eq(lit(i)).and(col("b").is_not_null()));
    }
    let plan = Arc::new(PhysicalPlan::Filter {
        input: scan("t", &table("t", true)),
        predicate: predicate.clone(),
    });
    let back = physical_round_trip(&plan);
    let PhysicalPlan::Filter { predicate: p, .. } = back.as_ref() else {
        panic!("expected a filter, got {back:?}");
    };
    assert_eq!(p, &predicate);
    // A single binary expression keeps its plain form.
    let mut encoder = Encoder::default();
    let wire = encoder.expr(&col("a").add(lit(1i64))).unwrap();
    assert!(matches!(wire, ExprWire::BinaryExpr { .. }), "{wire:?}");
}
