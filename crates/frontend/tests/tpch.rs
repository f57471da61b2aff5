//! The 22 TPC-H queries at scale factor 0.01, each compared with the reference answer
//! computed by DuckDB (shared/tpch/answers/sf0.01): numbers within 0.01, text exactly, rows
//! in order when the query has an ORDER BY (sorted on both sides otherwise).
//!
//! The data is generated in memory once per test binary and shared by all 22 tests.

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

fn run_query(name: &str) {
    let df = session()
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
