//! The DataFrame API end to end: each operation gives the rows its SQL twin gives.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use ember_frontend::format::cell_strings;
use ember_frontend::prelude::*;

fn session() -> Session {
    let s = Session::new();
    let people = RecordBatch::try_from_iter(vec![
        (
            "id",
            Arc::new(Int64Array::from(vec![1, 2, 3, 4])) as ArrayRef,
        ),
        (
            "name",
            Arc::new(StringArray::from(vec!["ann", "bob", "cid", "dee"])),
        ),
        (
            "city",
            Arc::new(StringArray::from(vec![
                Some("oslo"),
                Some("lima"),
                Some("oslo"),
                None,
            ])),
        ),
    ])
    .unwrap();
    let visits = RecordBatch::try_from_iter(vec![
        (
            "person",
            Arc::new(Int64Array::from(vec![1, 1, 2, 5])) as ArrayRef,
        ),
        ("spent", Arc::new(Int64Array::from(vec![10, 20, 5, 7]))),
    ])
    .unwrap();
    s.register_batches("people", people.schema(), vec![vec![people]])
        .unwrap();
    s.register_batches("visits", visits.schema(), vec![vec![visits]])
        .unwrap();
    s
}

/// Result rows as text, sorted (for comparisons that do not depend on order).
fn rows(df: &DataFrame) -> Vec<Vec<String>> {
    let mut rows = cell_strings(&df.collect().unwrap()).unwrap();
    rows.sort();
    rows
}

fn sql_rows(s: &Session, sql: &str) -> Vec<Vec<String>> {
    rows(&s.sql(sql).unwrap())
}

#[test]
fn filter_select_with_column_match_sql() {
    let s = session();
    let df = s
        .table("people")
        .unwrap()
        .filter(col("id").gt(lit(1i64)))
        .unwrap()
        .with_column("id2", col("id").mul(lit(2i64)))
        .unwrap()
        .select(vec![col("name"), col("id2")])
        .unwrap();
    assert_eq!(
        rows(&df),
        sql_rows(&s, "SELECT name, id * 2 AS id2 FROM people WHERE id > 1")
    );
    assert_eq!(df.schema().field(1).name(), "id2");
}

#[test]
fn group_by_agg_with_computed_aggregates() {
    let s = session();
    let df = s
        .table("visits")
        .unwrap()
        .group_by(vec![col("person")])
        .agg(vec![
            sum(col("spent")).alias("total"),
            sum(col("spent")).div(count_star()).alias("avg_spent"),
        ])
        .unwrap();
    assert_eq!(
        rows(&df),
        vec![
            vec!["1", "30", "15"],
            vec!["2", "5", "5"],
            vec!["5", "7", "7"]
        ]
    );
}

#[test]
fn joins_by_column_pairs() {
    let s = session();
    let people = s.table("people").unwrap();
    let visits = s.table("visits").unwrap();
    let inner = people
        .join(&visits, JoinType::Inner, &[("id", "person")])
        .unwrap()
        .select(vec![col("name"), col("spent")])
        .unwrap();
    assert_eq!(
        rows(&inner),
        sql_rows(
            &s,
            "SELECT name, spent FROM people JOIN visits ON id = person"
        )
    );
    let anti = people
        .join(&visits, JoinType::LeftAnti, &[("id", "person")])
        .unwrap()
        .select_columns(&["name"])
        .unwrap();
    assert_eq!(rows(&anti), vec![vec!["cid"], vec!["dee"]]);
}

#[test]
fn sort_limit_distinct_union_repartition_count() {
    let s = session();
    let people = s.table("people").unwrap();
    let sorted = people
        .sort(vec![col("name").sort(false, true)])
        .unwrap()
        .limit(2)
        .unwrap()
        .select_columns(&["name"])
        .unwrap();
    let ordered = cell_strings(&sorted.collect().unwrap()).unwrap();
    assert_eq!(ordered, vec![vec!["dee"], vec!["cid"]]);

    let cities = people
        .select_columns(&["city"])
        .unwrap()
        .distinct()
        .unwrap();
    assert_eq!(cities.count().unwrap(), 3);

    let twice = people.union(&people).unwrap();
    assert_eq!(twice.count().unwrap(), 8);
    assert_eq!(twice.union_distinct(&people).unwrap().count().unwrap(), 4);

    let spread = twice.repartition(3).unwrap();
    assert_eq!(spread.count().unwrap(), 8);
    assert_eq!(rows(&spread), rows(&twice));
}

#[test]
fn explain_shows_every_planning_step() {
    let s = session();
    let text = s
        .table("visits")
        .unwrap()
        .group_by(vec![col("person")])
        .count()
        .unwrap()
        .explain()
        .unwrap();
    for section in [
        "== logical_plan ==",
        "== optimized_logical_plan ==",
        "== physical_plan ==",
        "== stage_graph ==",
    ] {
        assert!(text.contains(section), "{text}");
    }
    assert!(text.contains("Stage 0"), "{text}");
}

#[test]
fn parquet_written_by_one_session_is_read_by_another() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("people");
    let out = out.to_str().unwrap();
    let s = session();
    let files = s.table("people").unwrap().write_parquet(out).unwrap();
    assert!(files >= 1);
    let back = Session::new().read_parquet(out).unwrap();
    assert_eq!(rows(&back), rows(&s.table("people").unwrap()));
    // A second write into a non-empty folder is refused rather than mixing results.
    let err = s.table("people").unwrap().write_parquet(out).unwrap_err();
    assert!(err.to_string().contains("already holds data"), "{err}");
}

#[test]
fn udfs_are_callable_from_sql() {
    let s = session();
    s.register_udf(
        "twice",
        vec![DataType::Int64],
        DataType::Int64,
        |args: &[ArrayRef]| {
            let a = args[0]
                .as_any()
                .downcast_ref::<Int64Array>()
                .ok_or_else(|| EmberError::Execution("twice expects BIGINT".into()))?;
            let out: Int64Array = a.iter().map(|v| v.map(|v| v * 2)).collect();
            Ok(Arc::new(out) as ArrayRef)
        },
    );
    assert_eq!(
        sql_rows(&s, "SELECT twice(id) FROM people WHERE id < 3"),
        vec![vec!["2"], vec!["4"]]
    );
}

#[test]
fn sql_results_are_dataframes_that_compose() {
    let s = session();
    let df = s
        .sql("SELECT city, COUNT(*) AS n FROM people GROUP BY city")
        .unwrap();
    let filtered = df.filter(col("n").gt(lit(1i64))).unwrap();
    assert_eq!(rows(&filtered), vec![vec!["oslo", "2"]]);
    // DDL gives an empty DataFrame; SHOW gives rows that can be queried further.
    assert_eq!(
        s.sql("CREATE VIEW v AS SELECT 1 AS x")
            .unwrap()
            .count()
            .unwrap(),
        0
    );
    let tables = s.sql("SHOW TABLES").unwrap();
    assert_eq!(
        rows(&tables.filter(col("table_type").eq(lit("view"))).unwrap()),
        vec![vec!["v", "view"]]
    );
}

#[test]
fn csv_and_json_files_are_tables() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("t.csv");
    std::fs::write(&csv, "a,b\n1,x\n2,y\n").unwrap();
    let json = dir.path().join("t.json");
    std::fs::write(&json, "{\"a\": 1}\n{\"a\": 5}\n").unwrap();
    let s = Session::new();
    assert_eq!(
        s.read_csv(csv.to_str().unwrap()).unwrap().count().unwrap(),
        2
    );
    s.register_json("j", json.to_str().unwrap()).unwrap();
    assert_eq!(sql_rows(&s, "SELECT SUM(a) FROM j"), vec![vec!["6"]]);
    let q = format!(
        "SELECT b FROM read_csv('{}') WHERE a = 2",
        csv.to_str().unwrap()
    );
    assert_eq!(sql_rows(&s, &q), vec![vec!["y"]]);
}
