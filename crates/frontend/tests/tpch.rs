//! The 22 TPC-H queries at scale factor 0.01, each compared with the reference answer
//! computed by DuckDB (shared/tpch/answers/sf0.01): numbers within 0.01, text exactly, rows
//! in order when the query has an ORDER BY (sorted on both sides otherwise).
//!
//! The data is generated in memory once per test binary and shared by all 22 tests.

use std::path::PathBuf;
use std::sync::OnceLock;

use ember_frontend::format::cell_strings;
use ember_frontend::Session;

fn shared_dir() -> PathBuf {
    // The repository is checked out with `shared/` next to its root.
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tpch")
}

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

/// Parses CSV as written by DuckDB: a header, `"`-quoted fields with `""` escapes.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, in_quotes) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            ('"', true) => in_quotes = false,
            ('"', false) if field.is_empty() => in_quotes = true,
            (',', false) => row.push(std::mem::take(&mut field)),
            ('\n', false) => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            ('\r', false) => {}
            (c, _) => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

fn cells_match(actual: &str, expected: &str) -> bool {
    if actual == expected {
        return true;
    }
    match (actual.parse::<f64>(), expected.parse::<f64>()) {
        (Ok(a), Ok(e)) => (a - e).abs() <= 0.01 + 1e-12 * e.abs(),
        _ => false,
    }
}

fn run_query(name: &str) {
    let dir = shared_dir();
    let sql_path = dir.join("queries").join(format!("{name}.sql"));
    let sql = std::fs::read_to_string(&sql_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", sql_path.display()));
    let answer_path = dir.join("answers/sf0.01").join(format!("{name}.csv"));
    let answer = std::fs::read_to_string(&answer_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", answer_path.display()));

    let df = session()
        .sql(&sql)
        .unwrap_or_else(|e| panic!("{name} failed to plan: {e}"));
    let batches = df
        .collect()
        .unwrap_or_else(|e| panic!("{name} failed to run: {e}"));
    let mut actual = cell_strings(&batches).expect("format result");
    let mut expected = parse_csv(&answer);
    let header = expected.remove(0);

    let width = df.schema().fields().len();
    assert_eq!(
        width,
        header.len(),
        "{name}: {width} columns, expected {} ({header:?})",
        header.len()
    );
    if !sql.to_ascii_lowercase().contains("order by") {
        actual.sort();
        expected.sort();
    }
    assert_eq!(
        actual.len(),
        expected.len(),
        "{name}: {} rows, expected {}\nfirst rows: {:?}",
        actual.len(),
        expected.len(),
        actual.iter().take(3).collect::<Vec<_>>()
    );
    for (i, (a, e)) in actual.iter().zip(&expected).enumerate() {
        let same = a.len() == e.len() && a.iter().zip(e).all(|(x, y)| cells_match(x, y));
        assert!(
            same,
            "{name}: row {i} differs\n  actual:   {a:?}\n  expected: {e:?}\n  columns:  {header:?}"
        );
    }
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
