//! EXPLAIN ANALYZE and the session's status: a fault plan in, the recovery it caused out —
//! per stage attempts, failures by reason, retried and recomputed partitions.

use std::process::Command;

use arrow::array::{Array, StringArray};
use ember_exec::events::{JobState, RecomputeCause, TaskEndReason};
use ember_frontend::explain_analyze::{explain_analyze, ExplainAnalysis};
use ember_frontend::session::Session;

/// Two stages: the scan with a partial aggregate (stage 0) and the final aggregate reading its
/// shuffle output (the result stage).
const QUERY: &str = "SELECT l_returnflag, count(*) AS n, sum(l_quantity) AS qty \
                     FROM lineitem GROUP BY l_returnflag";

fn tpch_session() -> Session {
    let session = Session::builder()
        .config("ember.sql.shuffle.partitions", "4")
        .build()
        .unwrap();
    session.register_tpch(0.01).unwrap();
    session
}

fn analyze(session: &Session, sql: &str) -> ExplainAnalysis {
    let df = session.sql(sql).unwrap();
    explain_analyze(session, df.plan()).unwrap()
}

/// `EXPLAIN ANALYZE` through SQL: the (plan_type, plan) rows joined as the REPL shows them.
fn explain_analyze_sql(session: &Session, sql: &str) -> String {
    let batches = session
        .sql(&format!("EXPLAIN ANALYZE {sql}"))
        .unwrap()
        .collect()
        .unwrap();
    let mut out = String::new();
    for batch in &batches {
        let kinds = batch
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let texts = batch
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        for i in 0..batch.num_rows() {
            out.push_str(&format!("{}:\n{}\n", kinds.value(i), texts.value(i)));
        }
    }
    out
}

#[test]
fn fault_free_run_shows_one_attempt_per_stage_and_the_result_rows() {
    let session = tpch_session();
    let analysis = analyze(&session, QUERY);
    assert!(analysis.stages.len() >= 2, "{analysis}");
    // l_returnflag has three values: A, N, R.
    assert_eq!(analysis.job.rows, 3, "{analysis}");
    assert_eq!(analysis.job.failed_attempts, 0, "{analysis}");
    assert!(analysis.job.executors_lost.is_empty());
    for stage in &analysis.stages {
        assert_eq!(stage.stage_attempts, 1, "{analysis}");
        assert_eq!(stage.task_attempts, stage.partitions, "{analysis}");
        assert!(stage.failures.is_empty(), "{analysis}");
        assert!(stage.retried_partitions.is_empty(), "{analysis}");
        assert!(stage.recomputed.is_empty(), "{analysis}");
        assert!(stage.wall.is_some(), "events reach the tracker: {analysis}");
    }
    // Stage 0 scans lineitem and writes shuffle blocks; the result stage returns 3 rows.
    let scan = analysis.stage(0).unwrap();
    assert!(scan.rows > 0 && scan.bytes > 0, "{analysis}");
    assert_eq!(analysis.stages.last().unwrap().rows, 3, "{analysis}");

    let text = explain_analyze_sql(&session, QUERY);
    assert!(text.starts_with("job:\nJob "), "{text}");
    assert!(text.contains("3 rows"), "{text}");
    assert!(text.contains("analyzed_stage_graph:\nStage 0 ["), "{text}");
    assert!(
        text.contains(
            "stage attempts: 1, task attempts: 4 (failed: none), retried partitions: none"
        ),
        "{text}"
    );
    assert!(text.contains("recomputed partitions: none"), "{text}");
    assert!(!text.contains("stage attempts: 2"), "{text}");
    // The pipeline of each stage is printed under its annotations, as EXPLAIN prints it.
    assert!(text.contains("Scan"), "{text}");
}

#[test]
fn a_failed_task_shows_as_one_exception_failure_and_its_retry() {
    let session = tpch_session();
    session
        .sql("SET ember.fault.plan = 'fail-task stage=0 partition=0 attempt=0'")
        .unwrap();
    let analysis = analyze(&session, QUERY);
    assert_eq!(analysis.job.rows, 3, "{analysis}");
    assert_eq!(analysis.job.failed_attempts, 1, "{analysis}");
    let scan = analysis.stage(0).unwrap();
    assert_eq!(
        scan.failures,
        vec![(TaskEndReason::ExceptionFailure, 1)],
        "{analysis}"
    );
    assert_eq!(scan.retried_partitions, vec![0], "{analysis}");
    assert_eq!(scan.task_attempts, scan.partitions + 1, "{analysis}");
    // A task retry is not a stage resubmission, nor a recomputation of lost output.
    assert_eq!(scan.stage_attempts, 1, "{analysis}");
    assert!(scan.recomputed.is_empty(), "{analysis}");
    for stage in analysis.stages.iter().skip(1) {
        assert!(stage.failures.is_empty(), "{analysis}");
    }

    let text = explain_analyze_sql(&session, QUERY);
    assert!(
        text.contains("(failed: 1 ExceptionFailure), retried partitions: [0]"),
        "{text}"
    );
    assert!(text.contains("(1 failed)"), "{text}");

    // The DataFrame API gives the same report.
    let text = session.sql(QUERY).unwrap().explain_analyze().unwrap();
    assert!(text.starts_with("== job ==\nJob "), "{text}");
    assert!(
        text.contains("== analyzed_stage_graph ==\nStage 0 ["),
        "{text}"
    );
    assert!(
        text.contains("(failed: 1 ExceptionFailure), retried partitions: [0]"),
        "{text}"
    );
}

#[test]
fn a_lost_shuffle_block_shows_the_recomputed_partition_and_why() {
    let session = tpch_session();
    session
        .sql("SET ember.fault.plan = 'lose-shuffle stage=0 partition=1'")
        .unwrap();
    let analysis = analyze(&session, QUERY);
    assert_eq!(analysis.job.rows, 3, "{analysis}");
    let scan = analysis.stage(0).unwrap();
    assert_eq!(scan.recomputed.len(), 1, "{analysis}");
    assert_eq!(scan.recomputed[0].partitions, vec![1], "{analysis}");
    assert_eq!(
        scan.recomputed[0].cause,
        Some(RecomputeCause::FetchFailed),
        "{analysis}"
    );
    // Only the lost partition ran again, in a second stage attempt.
    assert_eq!(scan.stage_attempts, 2, "{analysis}");
    assert_eq!(scan.task_attempts, scan.partitions + 1, "{analysis}");
    assert!(scan.failures.is_empty(), "{analysis}");
    // The reducers that could not read it failed with FetchFailed and were retried.
    let reducer = analysis.stages.last().unwrap();
    let fetch_failed: usize = reducer
        .failures
        .iter()
        .filter(|(r, _)| *r == TaskEndReason::FetchFailed)
        .map(|(_, n)| n)
        .sum();
    assert!(fetch_failed >= 1, "{analysis}");
    assert!(!reducer.retried_partitions.is_empty(), "{analysis}");

    let text = explain_analyze_sql(&session, QUERY);
    assert!(
        text.contains("recomputed partitions: [1] (FetchFailed)"),
        "{text}"
    );
    assert!(text.contains("stage attempts: 2"), "{text}");
}

#[test]
fn a_job_beyond_max_failures_fails_with_what_its_stages_went_through() {
    let session = tpch_session();
    session.sql("SET ember.task.maxFailures = 2").unwrap();
    session
        .sql(
            "SET ember.fault.plan = 'fail-task stage=0 partition=3 attempt=0; \
             fail-task stage=0 partition=3 attempt=1'",
        )
        .unwrap();
    // EXPLAIN runs when the statement does: `sql` already fails.
    let error = session
        .sql(&format!("EXPLAIN ANALYZE {QUERY}"))
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("EXPLAIN ANALYZE: Job "), "{error}");
    assert!(error.contains(" failed"), "{error}");
    assert!(error.contains("Stage 0: 1 attempt, "), "{error}");
    assert!(error.contains("(2 failed, 1 retried"), "{error}");
    assert!(
        error.contains("\n  error: job ") && error.contains("task 0.3 failed 2 times"),
        "{error}"
    );
    assert!(error.contains("fail-task stage=0 partition=3"), "{error}");
}

#[test]
fn session_status_counts_failures_and_retries_without_an_event_log_file() {
    let session = tpch_session();
    assert!(session.status().jobs.is_empty(), "no job has run yet");
    assert_eq!(
        session.config().get("ember.eventLog.enabled"),
        None,
        "this test is about the default: no log file"
    );
    session.sql(QUERY).unwrap().collect().unwrap();
    session
        .sql("SET ember.fault.plan = 'fail-task stage=0 partition=2 attempt=0'")
        .unwrap();
    session.sql(QUERY).unwrap().collect().unwrap();

    let status = session.status();
    assert_eq!(status.jobs.len(), 2, "{:?}", status.jobs.keys());
    assert!(status.executors.values().any(|e| e.alive));
    let mut jobs = status.jobs.values();
    let clean = jobs.next().unwrap();
    let faulty = jobs.next().unwrap();
    for job in [clean, faulty] {
        assert_eq!(job.state, JobState::Succeeded, "{job}");
        assert!(job.duration_ms.is_some());
    }
    assert_eq!(clean.failed_tasks(), 0, "{clean}");
    let stage = faulty.stage(0).unwrap();
    assert_eq!(stage.count(TaskEndReason::ExceptionFailure), 1, "{faulty}");
    assert_eq!(stage.retried_tasks, 1, "{faulty}");
    assert_eq!(faulty.failed_tasks(), 1, "{faulty}");
    // The live tracker is one object, kept current as jobs run.
    let tracker = session.status_tracker().unwrap();
    assert_eq!(tracker.snapshot(), status);
    assert!(tracker.active_jobs().is_empty());
}

#[test]
fn the_ember_binary_prints_explain_analyze_like_any_explain() {
    let out = Command::new(env!("CARGO_BIN_EXE_ember"))
        .args([
            "--tpch",
            "0.01",
            "--conf",
            "ember.sql.shuffle.partitions=4",
            "-c",
            "SET ember.fault.plan = 'fail-task stage=0 partition=0 attempt=0'",
            "-c",
            &format!("EXPLAIN ANALYZE {QUERY}"),
        ])
        .output()
        .expect("run the ember binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("plan_type"), "{stdout}");
    assert!(stdout.contains("analyzed_stage_graph"), "{stdout}");
    assert!(stdout.contains("1 ExceptionFailure"), "{stdout}");
    assert!(stdout.contains("retried partitions: [0]"), "{stdout}");
}

#[test]
fn a_stage_whose_output_is_cached_shows_it_did_not_run() {
    let session = tpch_session();
    session
        .sql("CACHE TABLE flags AS SELECT l_returnflag, l_quantity FROM lineitem")
        .unwrap()
        .collect()
        .unwrap();
    let text = explain_analyze_sql(
        &session,
        "SELECT l_returnflag, count(*) FROM flags GROUP BY l_returnflag",
    );
    assert!(
        text.contains("not run: its output was already there (cached or checkpointed data)"),
        "{text}"
    );
    // The stages that did run still report their attempts.
    assert!(text.contains("task attempts: 4"), "{text}");
}
