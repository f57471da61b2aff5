//! The 22 TPC-H queries at scale factor 0.01, each compared with the reference answer
//! computed by DuckDB (shared/tpch/answers/sf0.01): numbers within 0.01, text exactly, rows
//! in order when the query has an ORDER BY (sorted on both sides otherwise).
//!
//! The data is generated in memory once per test binary and shared by all 22 tests. Each
//! query also runs on a copy whose strings are Utf8View, the layout Parquet files written by
//! Arrow-based tools (tpchgen-cli, DataFusion) come back in: comparisons, joins, LIKE,
//! grouping and functions on view columns must give the same answers.

mod common;

use std::sync::OnceLock;

use ember_frontend::format::cell_strings;
use ember_frontend::Session;

use common::tpch::{answer, assert_matches_answer, cells_match, parse_csv, sql};

fn session() -> &'static Session {
    static SESSION: OnceLock<Session> = OnceLock::new();
    SESSION.get_or_init(|| {
        let session = Session::new();
        session
            .register_tpch(0.01)
            .expect("TPC-H data generation at SF 0.01");
        session
    })
}

/// The same tables with every Utf8 column as Utf8View, two partitions each.
fn view_session() -> &'static Session {
    use std::sync::Arc;

    use arrow::compute::cast;
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;

    static SESSION: OnceLock<Session> = OnceLock::new();
    SESSION.get_or_init(|| {
        let session = Session::new();
        let tables = ember_storage::tpch::generate_tpch(0.01).expect("TPC-H data at SF 0.01");
        for (name, schema, batches) in tables {
            let view = |t: &DataType| match t {
                DataType::Utf8 => DataType::Utf8View,
                t => t.clone(),
            };
            let fields: Vec<Field> = schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_data_type(view(f.data_type())))
                .collect();
            let schema = Arc::new(Schema::new(fields));
            let batches: Vec<RecordBatch> = batches
                .iter()
                .map(|b| {
                    let columns = b
                        .columns()
                        .iter()
                        .map(|c| cast(c, &view(c.data_type())).expect("cast to Utf8View"))
                        .collect();
                    RecordBatch::try_new(schema.clone(), columns).expect("view batch")
                })
                .collect();
            let half = batches.len().div_ceil(2);
            let partitions = batches.chunks(half.max(1)).map(<[_]>::to_vec).collect();
            session
                .register_batches(&name, schema, partitions)
                .expect("register view table");
        }
        session
    })
}

/// The same tables as Parquet files of small row groups (2,048 rows, so `lineitem` has 30),
/// read through the Parquet scan: pruning, filters pushed into the scan (late
/// materialisation, both its selective and its batch-by-batch reads) and dynamic join
/// filters over file scans must give the same answers.
fn parquet_session() -> &'static Session {
    use ember_storage::parquet::{write_parquet, ParquetWriteOptions};

    static SESSION: OnceLock<(Session, tempfile::TempDir)> = OnceLock::new();
    let (session, _dir) = SESSION.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temporary folder");
        let session = Session::new();
        let tables = ember_storage::tpch::generate_tpch(0.01).expect("TPC-H data at SF 0.01");
        for (name, schema, batches) in tables {
            let path = dir.path().join(format!("{name}.parquet"));
            let options = ParquetWriteOptions {
                max_row_group_rows: 2048,
                zstd: false,
            };
            write_parquet(&path, &schema, &batches, options).expect("write a TPC-H table");
            session
                .register_parquet(&name, path.to_str().expect("UTF-8 path"))
                .expect("register a Parquet table");
        }
        (session, dir)
    });
    session
}

fn run_query(name: &str) {
    run_query_in(session(), name);
}

fn run_query_on_views(name: &str) {
    run_query_in(view_session(), name);
}

fn run_query_on_parquet(name: &str) {
    run_query_in(parquet_session(), name);
}

fn run_query_in(session: &Session, name: &str) {
    let df = session
        .sql(&sql(name))
        .unwrap_or_else(|e| panic!("{name} failed to plan: {e}"));
    let batches = df
        .collect()
        .unwrap_or_else(|e| panic!("{name} failed to run: {e}"));
    let (header, _) = answer(name);
    let width = df.schema().fields().len();
    assert_eq!(
        width,
        header.len(),
        "{name}: {width} columns, expected {} ({header:?})",
        header.len()
    );
    assert_matches_answer(name, &cell_strings(&batches).expect("format result"));
}

macro_rules! tpch_tests {
    ($($q:ident),* $(,)?) => {
        $(
            #[test]
            fn $q() {
                run_query(stringify!($q));
            }

            mod $q {
                #[test]
                fn on_utf8_views() {
                    super::run_query_on_views(stringify!($q));
                }

                #[test]
                fn from_parquet_files() {
                    super::run_query_on_parquet(stringify!($q));
                }
            }
        )*
    };
}

tpch_tests!(
    q01, q02, q03, q04, q05, q06, q07, q08, q09, q10, q11, q12, q13, q14, q15, q16, q17, q18, q19,
    q20, q21, q22
);

#[test]
fn csv_parser_handles_quotes_and_empty_cells() {
    let rows = parse_csv("a,b,c\n\"x, y\",,\"say \"\"hi\"\"\"\n");
    assert_eq!(rows[1], vec!["x, y", "", "say \"hi\""]);
    assert!(cells_match("0.0500", "0.05"));
    assert!(cells_match("1995-03-15", "1995-03-15"));
    assert!(!cells_match("1.02", "1.00"));
}
