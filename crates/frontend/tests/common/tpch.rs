//! TPC-H at scale factor 0.01: the query texts, the reference answers computed by DuckDB
//! (shared/tpch/answers/sf0.01) and one generated dataset shared by every test of a binary.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use arrow::record_batch::RecordBatch;
use ember_frontend::Session;
use ember_planner::table::TableSource;

/// The 22 query names, `q01` to `q22`.
pub const QUERIES: [&str; 22] = [
    "q01", "q02", "q03", "q04", "q05", "q06", "q07", "q08", "q09", "q10", "q11", "q12", "q13",
    "q14", "q15", "q16", "q17", "q18", "q19", "q20", "q21", "q22",
];

fn shared_dir() -> PathBuf {
    // The repository is checked out with `shared/` next to its root.
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tpch")
}

/// A session with default settings but a fixed partition count: the default follows the
/// machine's cores, and the fault tests (plans naming partitions, chaos seeds whose faults
/// land on particular tasks) were written for four.
pub fn new_session() -> Session {
    Session::builder()
        .config("ember.sql.shuffle.partitions", "4")
        .build()
        .expect("a session with four shuffle partitions")
}

/// The eight tables, generated once per test binary and registered in every session a test
/// asks for, so sessions with different settings query the same data.
fn tables() -> &'static Vec<(String, Arc<dyn TableSource>)> {
    static TABLES: OnceLock<Vec<(String, Arc<dyn TableSource>)>> = OnceLock::new();
    TABLES.get_or_init(|| {
        let partitions = new_session().config().shuffle_partitions();
        ember_frontend::sources::tpch(0.01, partitions).expect("TPC-H data generation at SF 0.01")
    })
}

/// `session` with the TPC-H tables registered.
pub fn with_tables(session: Session) -> Session {
    for (name, source) in tables() {
        session
            .register_table(name, source.clone())
            .unwrap_or_else(|e| panic!("cannot register {name}: {e}"));
    }
    session
}

/// A session with default settings (but four partitions) and the TPC-H tables, shared by a whole test binary; use
/// it to plan, not to change settings.
pub fn session() -> &'static Session {
    static SESSION: OnceLock<Session> = OnceLock::new();
    SESSION.get_or_init(|| with_tables(new_session()))
}

/// Like [`session`], with every table cut into `ember.sql.shuffle.partitions` partitions
/// of consecutive rows. The default layout deals whole generated batches out, so at SF 0.01
/// the tables smaller than one batch (all but lineitem, orders and customer) have a single
/// partition, and queries over only those (Q2, Q11, Q16) plan as one task: nothing to
/// shuffle, no executor to lose. Split, they get map stages like the others.
pub fn session_with_split_tables() -> &'static Session {
    static SESSION: OnceLock<Session> = OnceLock::new();
    SESSION.get_or_init(|| {
        let session = new_session();
        let n = session.config().shuffle_partitions();
        for (name, schema, batches) in
            ember_storage::tpch::generate_tpch(0.01).expect("TPC-H data generation at SF 0.01")
        {
            session
                .register_batches(&name, schema, split_rows(&batches, n))
                .unwrap_or_else(|e| panic!("cannot register {name}: {e}"));
        }
        session
    })
}

/// `batches` cut into `n` partitions of consecutive rows, as equal as they come (trailing
/// partitions of a tiny table may be empty).
fn split_rows(batches: &[RecordBatch], n: usize) -> Vec<Vec<RecordBatch>> {
    let n = n.max(1);
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let per = total.div_ceil(n).max(1);
    let mut parts = vec![Vec::new(); n];
    let mut row = 0;
    for batch in batches {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let take = (per - row % per).min(batch.num_rows() - offset);
            parts[(row / per).min(n - 1)].push(batch.slice(offset, take));
            offset += take;
            row += take;
        }
    }
    parts
}

/// The SQL text of query `name` (e.g. `q07`).
pub fn sql(name: &str) -> String {
    let path = shared_dir().join("queries").join(format!("{name}.sql"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Whether the query fixes its row order (then rows are compared in order, else sorted).
pub fn is_ordered(sql: &str) -> bool {
    sql.to_ascii_lowercase().contains("order by")
}

/// The reference answer of query `name`: its header and rows.
pub fn answer(name: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let path = shared_dir()
        .join("answers/sf0.01")
        .join(format!("{name}.csv"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut rows = parse_csv(&text);
    assert!(!rows.is_empty(), "{}: no header", path.display());
    let header = rows.remove(0);
    (header, rows)
}

/// Asserts that `actual` (rows as cell strings, in result order) is the reference answer of
/// `name`: numbers within 0.01, text exactly, in order when the query has an ORDER BY.
pub fn assert_matches_answer(name: &str, actual: &[Vec<String>]) {
    let (header, mut expected) = answer(name);
    let mut actual = actual.to_vec();
    if !is_ordered(&sql(name)) {
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

/// Parses CSV as written by DuckDB: a header, `"`-quoted fields with `""` escapes.
pub fn parse_csv(text: &str) -> Vec<Vec<String>> {
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

/// Equal text, or numbers within 0.01 (DuckDB and Ember round differently).
pub fn cells_match(actual: &str, expected: &str) -> bool {
    if actual == expected {
        return true;
    }
    match (actual.parse::<f64>(), expected.parse::<f64>()) {
        (Ok(a), Ok(e)) => (a - e).abs() <= 0.01 + 1e-12 * e.abs(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int64Array};

    use super::*;

    #[test]
    fn split_rows_keeps_every_row_once_in_order() {
        let batch = |from: i64, len: i64| {
            let v: ArrayRef = Arc::new(Int64Array::from((from..from + len).collect::<Vec<_>>()));
            RecordBatch::try_from_iter([("v", v)]).unwrap()
        };
        let parts = split_rows(&[batch(0, 5), batch(5, 6)], 4);
        let sizes: Vec<usize> = parts
            .iter()
            .map(|p| p.iter().map(RecordBatch::num_rows).sum())
            .collect();
        assert_eq!(sizes, vec![3, 3, 3, 2]);
        let values: Vec<i64> = parts
            .iter()
            .flatten()
            .flat_map(|b| {
                let a = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                a.values().to_vec()
            })
            .collect();
        assert_eq!(values, (0..11).collect::<Vec<_>>());
        let tiny = split_rows(&[batch(0, 2)], 4);
        assert_eq!(tiny.iter().filter(|p| !p.is_empty()).count(), 2);
    }
}
