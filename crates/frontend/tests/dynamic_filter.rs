//! Dynamic join filters: where the planner puts them, that they shrink the shuffles they
//! sit below, that answers do not change (TPC-H, and the join types where dropping rows
//! would be wrong), and that a lost source shuffle is recovered like any other.

mod common;

use common::jobs;
use common::tpch::{self, assert_matches_answer};
use ember_frontend::explain_analyze::{explain_analyze, ExplainAnalysis};
use ember_frontend::format::cell_strings;
use ember_frontend::Session;

const DYNAMIC_FILTERS: &str = "ember.sql.dynamicJoinFilters";

/// At SF 0.01 every join side fits the broadcast threshold; without broadcasts the joins are
/// shuffled as they are at SF 1 and above, which is where dynamic filters go.
fn session(dynamic_filters: bool) -> Session {
    tpch::with_tables(
        Session::builder()
            .config(
                DYNAMIC_FILTERS,
                if dynamic_filters { "true" } else { "false" },
            )
            .config("ember.sql.autoBroadcastJoinThreshold", "-1")
            .build()
            .unwrap(),
    )
}

fn analyze(session: &Session, sql: &str) -> ExplainAnalysis {
    let df = session.sql(sql).unwrap();
    explain_analyze(session, df.plan()).unwrap()
}

/// Rows written by the map stages whose pipeline scans `table` (without a join filter
/// reading it from elsewhere), summed.
fn rows_shuffled_from(analysis: &ExplainAnalysis, table: &str) -> usize {
    analysis
        .stages
        .iter()
        .filter(|s| s.explain.contains(&format!("ScanExec: {table} ")))
        .filter(|s| s.explain.contains("output: shuffle"))
        .map(|s| s.rows)
        .sum()
}

fn result_rows(session: &Session, sql: &str) -> Vec<Vec<String>> {
    let batches = session.sql(sql).unwrap().collect().unwrap();
    cell_strings(&batches).unwrap()
}

/// EXPLAIN's text, every section.
fn explain(session: &Session, sql: &str) -> String {
    result_rows(session, &format!("EXPLAIN {sql}"))
        .concat()
        .join("\n")
}

/// The queries whose reduced join sides make the planner place filters, and the table whose
/// shuffle the filter shrinks.
const FILTERED: [(&str, &str); 4] = [
    ("q04", "lineitem"),
    ("q18", "lineitem"),
    ("q20", "lineitem"),
    ("q21", "lineitem"),
];

#[test]
fn filters_shrink_the_probe_side_shuffle_and_keep_the_answers() {
    let with = session(true);
    let without = session(false);
    for (query, table) in FILTERED {
        let sql = tpch::sql(query);
        let text = explain(&with, &sql);
        assert!(
            text.contains("DynamicFilterExec"),
            "{query}: no dynamic filter planned:\n{text}"
        );
        let filtered = analyze(&with, &sql);
        let plain = analyze(&without, &sql);
        let (a, b) = (
            rows_shuffled_from(&filtered, table),
            rows_shuffled_from(&plain, table),
        );
        assert!(
            a * 2 < b,
            "{query}: {table} rows shuffled with filters {a}, without {b}\n{filtered}"
        );
        assert_matches_answer(query, &result_rows(&with, &sql));
    }
}

#[test]
fn all_tpch_answers_are_unchanged() {
    let with = session(true);
    for query in tpch::QUERIES {
        assert_matches_answer(query, &result_rows(&with, &tpch::sql(query)));
    }
}

#[test]
fn turned_off_no_filter_is_planned() {
    let without = session(false);
    let text = explain(&without, &tpch::sql("q04"));
    assert!(!text.contains("DynamicFilterExec"), "{text}");
}

/// The join types where the filtered side's unmatched rows matter: the preserved side of an
/// outer join and the right side of NOT IN (a NULL there empties the result) are never
/// filtered, so the answers match the unfiltered plan's exactly.
#[test]
fn outer_and_null_aware_joins_keep_the_rows_they_need() {
    let with = session(true);
    let without = session(false);
    let queries = [
        // Reduced left side, right side filtered: allowed for a left join's right side.
        "SELECT o_orderkey, count(l_orderkey) FROM orders LEFT JOIN lineitem \
         ON o_orderkey = l_orderkey AND l_quantity > 45 \
         WHERE o_orderdate < DATE '1992-03-01' GROUP BY o_orderkey ORDER BY o_orderkey",
        // Reduced right side of a left join: the left (preserved) side must stay whole.
        "SELECT count(*), count(o_orderkey) FROM lineitem LEFT JOIN \
         (SELECT o_orderkey FROM orders WHERE o_orderdate < DATE '1992-03-01') o \
         ON l_orderkey = o_orderkey",
        // NOT IN with a reduced outer side: the subquery side keeps its NULL-relevant rows.
        "SELECT count(*) FROM orders WHERE o_orderdate < DATE '1992-03-01' AND o_orderkey \
         NOT IN (SELECT CASE WHEN l_linenumber = 7 THEN NULL ELSE l_orderkey END FROM lineitem)",
        "SELECT count(*) FROM orders WHERE o_orderdate < DATE '1992-03-01' AND o_orderkey \
         NOT IN (SELECT l_orderkey FROM lineitem WHERE l_quantity > 49)",
        // Semi and anti joins through EXISTS.
        "SELECT count(*) FROM orders WHERE o_orderdate < DATE '1992-06-01' AND EXISTS \
         (SELECT 1 FROM lineitem WHERE l_orderkey = o_orderkey AND l_quantity > 40)",
        "SELECT count(*) FROM orders WHERE o_orderdate < DATE '1992-06-01' AND NOT EXISTS \
         (SELECT 1 FROM lineitem WHERE l_orderkey = o_orderkey AND l_quantity > 40)",
    ];
    for sql in queries {
        let mut a = result_rows(&with, sql);
        let mut b = result_rows(&without, sql);
        a.sort();
        b.sort();
        assert_eq!(a, b, "{sql}");
        assert!(!a.is_empty(), "{sql}");
    }
}

/// The filter's source is a shuffle like any other: when its blocks are lost, the reading
/// task's fetch failure makes the scheduler recompute the lost map output, and the answer is
/// the fault-free one.
#[test]
fn a_lost_source_shuffle_is_recomputed() {
    let session = session(true);
    let sql = tpch::sql("q04");
    let plan = session.sql(&sql).unwrap().plan().clone();
    let graph = session.prepare(&plan).unwrap().stages;
    // The source stage: the one a dynamic filter's stage reads besides its own input.
    let filtered = graph
        .stages
        .iter()
        .find(|s| s.plan.display_indent().contains("DynamicFilterExec"))
        .expect("Q4 has a dynamic filter");
    let source = *filtered
        .parents
        .iter()
        .max()
        .expect("the filtered stage reads its source");
    let fault = format!("lose-shuffle stage={source} partition=0");
    let run = jobs::run(
        &graph,
        session.functions(),
        &[("ember.fault.plan", fault.as_str())],
    );
    assert_matches_answer("q04", &run.rows("Q4 with a lost source shuffle"));
    let recomputed = run.recomputed_once();
    assert_eq!(
        recomputed
            .get(&source)
            .map(|p| p.iter().copied().collect::<Vec<_>>()),
        Some(vec![0]),
        "only the lost map partition of the source stage is recomputed: {recomputed:?}"
    );
}

/// A filter reads its source's stage; it must never make the planner compute a subplan
/// twice — every table is scanned as often as in the plan without filters.
#[test]
fn no_subplan_is_computed_twice() {
    let scans = |session: &Session, query: &str| {
        let plan = session.sql(&tpch::sql(query)).unwrap().plan().clone();
        let graph = session.prepare(&plan).unwrap().stages;
        let count = graph
            .stages
            .iter()
            .map(|s| s.plan.display_indent().matches("ScanExec:").count())
            .sum::<usize>();
        (count, graph)
    };
    let (with, without) = (session(true), session(false));
    for query in tpch::QUERIES {
        let (filtered, graph) = scans(&with, query);
        let (plain, _) = scans(&without, query);
        assert_eq!(
            filtered, plain,
            "{query}: scans with filters vs without\n{graph}"
        );
    }
}

/// Broadcast joins: the small side's keys filter the big side only right above its scan,
/// where the scan can skip decoding the rows they drop (late materialisation).
#[test]
fn a_reduced_broadcast_side_filters_the_scan_under_the_join() {
    let session = tpch::with_tables(Session::new());
    let text = explain(&session, &tpch::sql("q17"));
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let joins: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| {
            l.starts_with(
                "HashJoinExec(Broadcast, Inner): on=[lineitem.l_partkey = part.p_partkey]",
            )
        })
        .map(|(i, _)| i)
        .collect();
    assert!(!joins.is_empty(), "no broadcast join:\n{text}");
    for i in joins {
        assert!(
            lines[i + 1].starts_with("DynamicFilterExec: [lineitem.l_partkey] in [part.p_partkey]")
                && lines[i + 2].starts_with("ScanExec: lineitem"),
            "the join's probe scan is not filtered:\n{text}"
        );
    }
    // Every part is a key of Q14's join: nothing to filter.
    let text = explain(&session, &tpch::sql("q14"));
    assert!(!text.contains("DynamicFilterExec"), "{text}");
    for query in ["q17", "q14", "q19", "q09"] {
        assert_matches_answer(query, &result_rows(&session, &tpch::sql(query)));
    }
}
