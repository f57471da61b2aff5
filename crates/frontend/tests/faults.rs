//! Fault tolerance end to end through the SQL front end: a fault plan set with `SET`, the
//! same answer as without faults, and the recovery read back from the event log — with
//! Ember's own JSON reader, as a user would.

use arrow::util::pretty::pretty_format_batches;
use ember_frontend::session::Session;

const QUERY: &str = "SELECT l_returnflag, l_linestatus, count(*) AS n, sum(l_quantity) AS qty \
                     FROM lineitem GROUP BY l_returnflag, l_linestatus \
                     ORDER BY l_returnflag, l_linestatus";

fn run(session: &Session, sql: &str) -> String {
    let batches = session.sql(sql).unwrap().collect().unwrap();
    pretty_format_batches(&batches).unwrap().to_string()
}

#[test]
fn failed_task_and_lost_shuffle_are_recovered_and_logged() {
    let log_dir = tempfile::tempdir().unwrap();
    let session = Session::builder()
        .config("ember.eventLog.enabled", "true")
        .config("ember.eventLog.dir", log_dir.path().to_str().unwrap())
        .build()
        .unwrap();
    session.register_tpch(0.01).unwrap();
    let expected = run(&session, QUERY);

    session
        .sql("SET ember.fault.plan = 'fail-task stage=0 partition=0 attempt=0; lose-shuffle stage=0 partition=0'")
        .unwrap();
    assert_eq!(
        run(&session, QUERY),
        expected,
        "answer changed under faults"
    );
    session.sql("SET ember.fault.plan = ''").unwrap();

    let log = std::fs::read_dir(log_dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .expect("an event log file");
    let log = log.to_str().unwrap();

    // The injected task failure shows as one ExceptionFailure, and recovery succeeded.
    let reasons = run(
        &session,
        &format!(
            "SELECT reason, count(*) AS n FROM read_json('{log}') \
             WHERE event = 'TaskEnd' GROUP BY reason ORDER BY reason"
        ),
    );
    assert!(reasons.contains("| ExceptionFailure | 1 "), "{reasons}");
    assert!(reasons.contains("| Success "), "{reasons}");

    // The lost map output was recomputed, and only that partition of stage 0.
    let text = std::fs::read_to_string(log).unwrap();
    let recomputed: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["event"] == "PartitionsRecomputed")
        .collect();
    assert!(
        !recomputed.is_empty(),
        "no PartitionsRecomputed event in {text}"
    );
    for event in &recomputed {
        assert_eq!(event["stage"], 0, "{event}");
        assert_eq!(event["partitions"], serde_json::json!([0]), "{event}");
    }
}

#[test]
fn a_fault_the_query_cannot_have_is_an_error_not_a_silent_no_op() {
    let session = Session::builder()
        .config("ember.sql.shuffle.partitions", "4")
        .build()
        .unwrap();
    session.register_tpch(0.01).unwrap();
    let expected = run(&session, QUERY);
    session
        .sql("SET ember.fault.plan = 'fail-task stage=0 partition=0 attempt=0; lose-shuffle stage=7 partition=0'")
        .unwrap();
    let err = session
        .sql(QUERY)
        .and_then(|df| df.collect())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "fault 2 'lose-shuffle stage=7 partition=0' cannot fire: this query has no stage 7"
        ),
        "{err}"
    );
    // Constant queries are not what a plan aims at: they run as they are.
    assert_eq!(
        session.sql("SELECT 1 AS one").unwrap().collect().unwrap()[0].num_rows(),
        1
    );
    // A plan that fits runs, and the session is unharmed by the rejected one.
    session
        .sql("SET ember.fault.plan = 'fail-task stage=0 partition=3 attempt=0'")
        .unwrap();
    assert_eq!(run(&session, QUERY), expected);
}
