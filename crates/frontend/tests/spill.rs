//! Spilling end to end: with `ember.executor.memory` far below what sorts, aggregations and
//! hash join build sides hold, TPC-H queries still return the reference answers
//! (shared/tpch/answers/sf0.01), the operators really spilled, and every reserved byte is
//! released afterwards.

mod common;

use std::collections::HashMap;
use std::sync::OnceLock;

use ember_exec::executor::{ClusterConfig, LocalCluster};
use ember_exec::operators::hash_join::SPILL_OPERATOR;
use ember_exec::scheduler::{run_job, JobContext};
use ember_frontend::execution::PreparedQuery;
use ember_frontend::format::cell_strings;
use ember_frontend::Session;

use common::tpch::{assert_matches_answer, sql};

/// One session with the TPC-H SF 0.01 tables and a 1 MiB executor budget.
fn small_memory_session() -> &'static Session {
    static SESSION: OnceLock<Session> = OnceLock::new();
    SESSION.get_or_init(|| tpch_session_with("SET ember.executor.memory = '1m'"))
}

/// A session with the TPC-H SF 0.01 tables after running `set`.
fn tpch_session_with(set: &str) -> Session {
    let session = Session::new();
    session
        .register_tpch(0.01)
        .expect("TPC-H data generation at SF 0.01");
    session
        .execute_sql(set)
        .unwrap_or_else(|e| panic!("{set}: {e}"));
    session
}

fn run_with_small_memory(name: &str) {
    let batches = small_memory_session()
        .sql(&sql(name))
        .and_then(|df| df.collect())
        .unwrap_or_else(|e| panic!("{name} failed with ember.executor.memory = 1m: {e}"));
    assert_matches_answer(name, &cell_strings(&batches).expect("format result"));
}

#[test]
fn q01_with_one_megabyte_per_executor() {
    run_with_small_memory("q01");
}

#[test]
fn q03_with_one_megabyte_per_executor() {
    run_with_small_memory("q03");
}

#[test]
fn q18_with_one_megabyte_per_executor() {
    run_with_small_memory("q18");
}

/// Every other query under the same budget (sorts, aggregations and joins spill; DISTINCT
/// aggregates hold their state over budget).
#[test]
fn the_other_tpch_queries_with_one_megabyte_per_executor() {
    for n in (2..=22).filter(|n| ![3, 18].contains(n)) {
        run_with_small_memory(&format!("q{n:02}"));
    }
}

#[test]
fn bad_memory_setting_names_the_key() {
    let Err(err) = Session::new().execute_sql("SET ember.executor.memory = 'plenty'") else {
        panic!("a bad size is rejected at SET");
    };
    assert!(err.to_string().contains("ember.executor.memory"), "{err}");
}

/// What one query did on a fresh cluster.
struct ClusterRun {
    rows: Vec<Vec<String>>,
    /// Spill files written on all executors, by any operator.
    spilled: usize,
    /// Of those, the ones hash joins wrote (grace partitions).
    join_spilled: usize,
    /// Bytes still reserved after the job.
    held: usize,
}

/// Runs `sql` on a fresh cluster with `memory` per executor.
fn run_on_cluster(sql: &str, memory: &str) -> ClusterRun {
    run_planned_by(small_memory_session(), sql, memory)
}

/// The same TPC-H tables with broadcast joins turned off: every join shuffles both sides.
fn shuffle_join_session() -> &'static Session {
    static SESSION: OnceLock<Session> = OnceLock::new();
    SESSION.get_or_init(|| tpch_session_with("SET ember.sql.autoBroadcastJoinThreshold = -1"))
}

/// Runs `sql`, planned by `session`, on a fresh cluster with `memory` per executor.
fn run_planned_by(session: &Session, sql: &str, memory: &str) -> ClusterRun {
    let df = session.sql(sql).expect("query plans");
    let prepared = PreparedQuery::plan(df.plan(), &session.config()).expect("query plans");
    let settings: HashMap<&str, &str> = [
        ("ember.executor.instances", "2"),
        ("ember.executor.cores", "2"),
        ("ember.executor.memory", memory),
    ]
    .into();
    let get = |k: &str| settings.get(k).map(|v| v.to_string());
    let cluster = LocalCluster::new(&ClusterConfig::from_settings(get).expect("settings"))
        .expect("cluster starts");
    let ctx =
        JobContext::from_settings(session.functions().clone(), get, &cluster).expect("job ctx");
    let result = run_job(&prepared.stages, &cluster, &ctx).expect("job runs");
    let batches: Vec<_> = result.partitions.into_iter().flatten().collect();
    let pools: Vec<_> = cluster
        .executors()
        .iter()
        .map(|e| e.memory().clone())
        .collect();
    ClusterRun {
        rows: cell_strings(&batches).expect("format"),
        spilled: pools.iter().map(|p| p.spills().files()).sum(),
        join_spilled: pools
            .iter()
            .map(|p| p.operator_spills(SPILL_OPERATOR).files())
            .sum(),
        held: pools.iter().map(|p| p.used()).sum(),
    }
}

/// Queries whose joins have big build sides (orders, lineitem, partsupp, customer) — inner
/// joins (Q3, Q5, Q9, Q18), semi and anti joins with a residual filter (Q21), a left outer
/// join (Q13), an anti join (Q22). Under 16 KiB per executor their hash joins take the grace
/// path, both as broadcast joins (SF 0.01 sides are under the broadcast threshold) and as
/// shuffled joins, and still return the reference answers. Shuffled, Q13's left join builds
/// on its preserved side (customer, a quarter of the rows per task) as a right outer join:
/// 4 KiB makes that spill, so the grace path's unmatched build rows are covered too.
#[test]
fn joins_spill_under_the_budget_and_give_the_reference_answers() {
    let sessions = [
        ("broadcast", small_memory_session()),
        ("shuffled", shuffle_join_session()),
    ];
    for name in ["q03", "q05", "q09", "q13", "q18", "q21", "q22"] {
        for (how, session) in sessions {
            let budget = if (name, how) == ("q13", "shuffled") {
                "4k"
            } else {
                "16k"
            };
            let run = run_planned_by(session, &sql(name), budget);
            assert!(
                run.join_spilled > 0,
                "{name} ({how} joins): no hash join spilled under 16 KiB per executor"
            );
            assert_eq!(
                run.held, 0,
                "{name}: reservations are released when tasks end"
            );
            assert_matches_answer(name, &run.rows);
        }
    }
    // With room to spare, the same joins stay in memory.
    let roomy = run_planned_by(shuffle_join_session(), &sql("q03"), "4g");
    assert_eq!(
        roomy.join_spilled, 0,
        "q03 spilled a join with 4 GiB per executor"
    );
    assert_matches_answer("q03", &roomy.rows);
}

#[test]
fn sorts_and_aggregations_spill_under_the_budget_and_release_it() {
    // Q18 aggregates lineitem by order key: thousands of groups per task.
    let run = run_on_cluster(&sql("q18"), "64k");
    assert!(
        run.spilled > 0,
        "Q18 under 64 KiB per executor spilled nothing"
    );
    assert_eq!(run.held, 0, "reservations are released when tasks end");
    assert_matches_answer("q18", &run.rows);

    // A full sort of lineitem by a text column: many runs, merged back in order.
    let sort = "SELECT l_comment, l_orderkey, l_linenumber FROM lineitem \
                ORDER BY l_comment DESC, l_orderkey, l_linenumber";
    let small = run_on_cluster(sort, "1m");
    assert!(small.spilled > 1, "the sort spilled {} runs", small.spilled);
    assert_eq!(small.held, 0);
    let large = run_on_cluster(sort, "4g");
    assert_eq!(large.spilled, 0, "nothing spills with room to spare");
    assert_eq!(small.rows.len(), 60175);
    assert!(
        small.rows == large.rows,
        "spilled sort differs from the in-memory sort"
    );
}
