//! Plans as plain data, end to end: every TPC-H query (SF 0.01, tables in Parquet files)
//! is planned, and its optimized physical plan and each of its stage plans are serialised to
//! JSON, parsed back with the storage's file resolver, and
//! (a) serialise again to the very same JSON, and
//! (b) run — the stage plans that came back through JSON, as an executor process would get
//!     them — to the reference answer.

mod common;

use std::path::Path;
use std::sync::Arc;

use ember_frontend::execution::PreparedQuery;
use ember_frontend::format::cell_strings;
use ember_frontend::runtime::Runtime;
use ember_frontend::Session;
use ember_planner::logical::LogicalPlan;
use ember_planner::physical::PhysicalPlan;
use ember_planner::stages::build_stage_graph;
use ember_planner::wire::{
    from_json, logical_plan_from_wire, logical_plan_to_wire, physical_plan_from_wire,
    physical_plan_to_wire, to_json, PhysicalNode, WireRoot,
};
use ember_storage::parquet::{write_parquet, ParquetWriteOptions};
use ember_storage::FileScanResolver;

use common::tpch::{assert_matches_answer, sql, QUERIES};

/// Writes the TPC-H tables as Parquet under `dir`, in small row groups so the big tables
/// scan as several partitions (each one a row-group descriptor on the wire).
fn write_tables(dir: &Path, session: &Session) {
    let options = ParquetWriteOptions {
        max_row_group_rows: 8192,
        ..ParquetWriteOptions::default()
    };
    for (name, schema, batches) in
        ember_storage::tpch::generate_tpch(0.01).expect("TPC-H data generation at SF 0.01")
    {
        let path = dir.join(format!("{name}.parquet"));
        write_parquet(&path, &schema, &batches, options).expect("write TPC-H parquet");
        session
            .register_parquet(&name, path.to_str().expect("UTF-8 temp path"))
            .unwrap_or_else(|e| panic!("cannot register {name}: {e}"));
    }
}

/// JSON → plan → JSON; the plan that came back and its JSON (which must equal the input).
fn through_json(name: &str, what: &str, plan: &Arc<PhysicalPlan>) -> Arc<PhysicalPlan> {
    let wire = physical_plan_to_wire(plan)
        .unwrap_or_else(|e| panic!("{name}: {what} does not serialise: {e}"));
    let text = to_json(&wire).unwrap();
    let parsed = from_json(&text).unwrap_or_else(|e| panic!("{name}: {what}: {e}"));
    assert!(matches!(parsed.root, WireRoot::Physical(_)));
    let back = physical_plan_from_wire(&parsed, &FileScanResolver)
        .unwrap_or_else(|e| panic!("{name}: {what} does not deserialise: {e}"));
    let again = to_json(&physical_plan_to_wire(&back).unwrap()).unwrap();
    assert_eq!(
        again, text,
        "{name}: {what} serialises differently after a round trip"
    );
    assert_eq!(
        back.display_indent(),
        plan.display_indent(),
        "{name}: {what}"
    );
    back
}

/// Like [`through_json`] for a logical plan (subqueries included).
fn logical_through_json(name: &str, what: &str, plan: &Arc<LogicalPlan>) {
    let text = to_json(
        &logical_plan_to_wire(plan)
            .unwrap_or_else(|e| panic!("{name}: {what} does not serialise: {e}")),
    )
    .unwrap();
    let back = logical_plan_from_wire(&from_json(&text).unwrap(), &FileScanResolver)
        .unwrap_or_else(|e| panic!("{name}: {what} does not deserialise: {e}"));
    let again = to_json(&logical_plan_to_wire(&back).unwrap()).unwrap();
    assert_eq!(
        again, text,
        "{name}: {what} serialises differently after a round trip"
    );
    assert_eq!(
        back.display_indent(),
        plan.display_indent(),
        "{name}: {what}"
    );
}

#[test]
fn every_tpch_plan_round_trips_through_json_and_runs_to_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let session = Session::new();
    write_tables(dir.path(), &session);
    let runtime = Runtime::default();
    let config = session.config();
    for name in QUERIES {
        let df = session
            .sql(&sql(name))
            .unwrap_or_else(|e| panic!("{name} failed to plan: {e}"));
        let prepared = session
            .prepare(df.plan())
            .unwrap_or_else(|e| panic!("{name} failed to plan: {e}"));

        logical_through_json(name, "the logical plan", &prepared.logical);
        logical_through_json(name, "the optimized logical plan", &prepared.optimized);

        // The whole physical plan: same JSON, and it cuts into the same stages.
        let physical = through_json(name, "the physical plan", &prepared.physical);
        let stages = build_stage_graph(&physical).unwrap();
        assert_eq!(stages.to_string(), prepared.stages.to_string(), "{name}");

        // What cluster mode ships: each stage's plan, rebuilt from its JSON.
        let mut shipped = prepared.stages.clone();
        for stage in &mut shipped.stages {
            let what = format!("stage {} plan", stage.id);
            stage.plan = through_json(name, &what, &stage.plan);
        }
        let run = PreparedQuery {
            stages: shipped,
            physical,
            ..prepared.clone()
        };
        let result = runtime
            .run(&run, &config, session.functions())
            .unwrap_or_else(|e| panic!("{name} failed to run from its wire plan: {e}"));
        let rows = cell_strings(&result.into_batches()).expect("format result");
        assert_matches_answer(name, &rows);
    }
}

#[test]
fn big_tables_ship_one_descriptor_per_row_group_partition() {
    let dir = tempfile::tempdir().unwrap();
    let session = Session::new();
    write_tables(dir.path(), &session);
    let df = session.sql(&sql("q01")).unwrap();
    let prepared = session.prepare(df.plan()).unwrap();
    let wire = physical_plan_to_wire(&prepared.physical).unwrap();
    let scan = wire
        .physical
        .iter()
        .find_map(|n| match n {
            PhysicalNode::Scan(s) => Some(s),
            _ => None,
        })
        .expect("Q1 scans lineitem");
    assert_eq!(scan.table_name, "lineitem");
    assert!(scan.partitions.len() > 1, "{:?}", scan.partitions);
    assert_eq!(wire.sources.len(), 1);
    assert_eq!(wire.sources[0].kind, "parquet");
}

#[test]
fn plans_over_in_memory_tables_are_refused_by_name() {
    let session = Session::new();
    session
        .sql("CREATE TABLE t AS SELECT * FROM (VALUES (1, 'a')) AS v(id, name)")
        .unwrap();
    let df = session.sql("SELECT name FROM t WHERE id > 0").unwrap();
    let prepared = session.prepare(df.plan()).unwrap();
    let err = physical_plan_to_wire(&prepared.physical).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("table t") && msg.contains("memory"),
        "unexpected error: {msg}"
    );
}
