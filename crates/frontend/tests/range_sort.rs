//! A global ORDER BY runs in parallel: each partition is sorted, a range exchange gives
//! every output partition one key range, and the partitions in order are the sorted
//! result — also when a sort map output is lost and recomputed.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Decimal128Type, Int32Type, Int64Type};
use arrow::util::pretty::pretty_format_batches;
use ember_frontend::session::Session;

/// Every lineitem row, by price descending, then order and line number ascending: a total
/// order, so the answer is one exact list of rows.
const QUERY: &str = "SELECT l_extendedprice, l_orderkey, l_linenumber, l_shipmode FROM lineitem \
                     ORDER BY l_extendedprice DESC, l_orderkey, l_linenumber";

fn session(partitions: usize) -> Session {
    let session = Session::builder()
        .config("ember.sql.shuffle.partitions", &partitions.to_string())
        .build()
        .unwrap();
    session.register_tpch(0.01).unwrap();
    session
}

fn table(batches: &[RecordBatch]) -> String {
    pretty_format_batches(batches).unwrap().to_string()
}

/// (price, order key, line number) of every row, in output order.
fn keys(batches: &[RecordBatch]) -> Vec<(i128, i64, i64)> {
    let int = |a: &dyn Array, row: usize| -> i64 {
        a.as_primitive_opt::<Int64Type>()
            .map(|c| c.value(row))
            .or_else(|| {
                a.as_primitive_opt::<Int32Type>()
                    .map(|c| c.value(row) as i64)
            })
            .expect("an integer column")
    };
    let mut out = Vec::new();
    for b in batches {
        let price = b.column(0).as_primitive::<Decimal128Type>();
        for row in 0..b.num_rows() {
            out.push((
                price.value(row),
                int(b.column(1).as_ref(), row),
                int(b.column(2).as_ref(), row),
            ));
        }
    }
    out
}

#[test]
fn order_by_over_many_partitions_returns_exactly_the_sorted_rows() {
    let parallel = session(6);
    let explain = parallel.sql(QUERY).unwrap().explain().unwrap();
    assert!(
        explain.contains(
            "Exchange: Range([lineitem.l_extendedprice DESC NULLS FIRST, lineitem.l_orderkey \
             ASC NULLS LAST, lineitem.l_linenumber ASC NULLS LAST], 6)"
        ),
        "{explain}"
    );
    let result = parallel.sql(QUERY).unwrap().execute().unwrap();
    assert_eq!(result.partitions.len(), 6);
    let non_empty = result
        .partitions
        .iter()
        .filter(|p| p.iter().any(|b| b.num_rows() > 0))
        .count();
    assert!(non_empty >= 5, "only {non_empty} of 6 partitions got rows");
    let batches = result.into_batches();

    let got = keys(&batches);
    let count = parallel
        .sql("SELECT count(*) FROM lineitem")
        .unwrap()
        .collect()
        .unwrap();
    let count = count[0].column(0).as_primitive::<Int64Type>().value(0) as usize;
    assert_eq!(got.len(), count);
    let mut expected = got.clone();
    expected.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    assert!(got == expected, "rows are not in ORDER BY order");

    // The single-partition plan (a plain sort) gives the same table, row for row.
    let serial = session(1);
    let single = serial.sql(QUERY).unwrap().collect().unwrap();
    assert_eq!(table(&batches), table(&single));
}

#[test]
fn order_by_with_nulls_and_ties_matches_the_single_partition_sort() {
    // o_orderpriority has 5 values (ties across split points); NULLIF makes NULLs.
    let query = "SELECT NULLIF(o_orderpriority, '3-MEDIUM') AS p, o_orderkey FROM orders \
                 ORDER BY p DESC NULLS LAST, o_orderkey";
    let parallel = session(4).sql(query).unwrap().collect().unwrap();
    let serial = session(1).sql(query).unwrap().collect().unwrap();
    assert_eq!(table(&parallel), table(&serial));
    let query = "SELECT NULLIF(o_orderpriority, '3-MEDIUM') AS p, o_orderkey FROM orders \
                 ORDER BY p ASC NULLS FIRST, o_orderkey DESC";
    let parallel = session(4).sql(query).unwrap().collect().unwrap();
    let serial = session(1).sql(query).unwrap().collect().unwrap();
    assert_eq!(table(&parallel), table(&serial));
}

#[test]
fn lost_sort_shuffle_is_recomputed_and_the_answer_is_unchanged() {
    let log_dir = tempfile::tempdir().unwrap();
    let session = Session::builder()
        .config("ember.sql.shuffle.partitions", "4")
        .config("ember.eventLog.enabled", "true")
        .config("ember.eventLog.dir", log_dir.path().to_str().unwrap())
        .build()
        .unwrap();
    session.register_tpch(0.01).unwrap();
    let expected = table(&session.sql(QUERY).unwrap().collect().unwrap());

    // Stage 0 scans and sorts each partition and writes the range exchange.
    session
        .sql("SET ember.fault.plan = 'lose-shuffle stage=0 partition=1'")
        .unwrap();
    let got = table(&session.sql(QUERY).unwrap().collect().unwrap());
    session.sql("SET ember.fault.plan = ''").unwrap();
    assert!(got == expected, "answer changed after a lost sort shuffle");

    let log = std::fs::read_dir(log_dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .expect("an event log file");
    let text = std::fs::read_to_string(log).unwrap();
    let recomputed: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["event"] == "PartitionsRecomputed")
        .collect();
    assert!(!recomputed.is_empty(), "no recomputation logged: {text}");
    for event in &recomputed {
        assert_eq!(event["stage"], 0, "{event}");
        assert_eq!(event["partitions"], serde_json::json!([1]), "{event}");
    }
}
