//! Cache, local checkpoints and reliable checkpoints end to end: the same answers as without
//! them, and — read from the event log — that kept partitions are read instead of
//! recomputed, that lost ones are recomputed (only those), that a corrupt checkpoint is
//! rejected, and that a restarted session reuses a committed checkpoint.

mod common;

use std::path::Path;

use common::event_files::{events, named};
use ember_frontend::prelude::*;
use ember_planner::stages::StageGraph;
use serde_json::Value;
use tempfile::TempDir;

const QUERY: &str = "SELECT l_orderkey, l_partkey, l_quantity FROM lineitem WHERE l_quantity > 10";

/// The aggregate the executor-loss tests checkpoint.
const GROUPED: &str = "SELECT l_partkey, sum(l_quantity) AS q FROM lineitem GROUP BY l_partkey";

/// Makes the next job kill executor 1 as `stage` starts.
fn kill_executor_1_when_starting(session: &Session, stage: usize) {
    session
        .sql(&format!(
            "SET ember.fault.plan = 'kill-executor executor=1 stage={stage} at=0%'"
        ))
        .unwrap();
}

fn session(log_dir: &Path, checkpoint_dir: &Path) -> Session {
    let session = Session::builder()
        .config("ember.eventLog.enabled", "true")
        .config("ember.eventLog.dir", log_dir.to_str().unwrap())
        .config("ember.checkpoint.dir", checkpoint_dir.to_str().unwrap())
        .build()
        .unwrap();
    session.register_tpch(0.01).unwrap();
    session
}

/// A session over TPC-H SF 0.01 with its own event-log and checkpoint folders, which live
/// as long as the returned `TempDir`s.
fn fresh_session() -> (TempDir, TempDir, Session) {
    let logs = tempfile::tempdir().unwrap();
    let checkpoints = tempfile::tempdir().unwrap();
    let session = session(logs.path(), checkpoints.path());
    (logs, checkpoints, session)
}

/// The last job id in the log.
fn last_job(events: &[Value]) -> u64 {
    named(events, "JobStart")
        .last()
        .and_then(|e| e["job"].as_u64())
        .expect("a job ran")
}

/// Stage ids submitted in `job`.
fn submitted(events: &[Value], job: u64) -> Vec<u64> {
    named(events, "StageSubmitted")
        .into_iter()
        .filter(|e| e["job"] == job)
        .map(|e| e["stage"].as_u64().unwrap())
        .collect()
}

/// The stage of a DataFrame's stage graph that keeps its persisted plan (a persist stage,
/// or the stage a checkpoint is teed into), and the stages reading its output.
fn persist_stage(df: &DataFrame) -> (usize, Vec<usize>) {
    let keeper = keeping_stage(df);
    (keeper.id, keeper.children)
}

struct Keeper {
    id: usize,
    children: Vec<usize>,
    /// The stages computing the kept rows: the persist stage and what it reads, or what the
    /// teeing stage reads (the teeing stage runs on when its checkpoint is read).
    lineage: Vec<usize>,
    teed: bool,
}

fn keeping_stage(df: &DataFrame) -> Keeper {
    let graph: StageGraph = df.session().prepare(df.plan()).unwrap().stages;
    let stage = graph
        .stages
        .iter()
        .find(|s| s.persist().is_some())
        .expect("a stage keeping the persisted plan");
    let mut lineage = stage.parents.clone();
    if stage.tee.is_none() {
        lineage.push(stage.id);
    }
    Keeper {
        id: stage.id,
        children: graph.children_of(stage.id),
        lineage,
        teed: stage.tee.is_some(),
    }
}

/// Whether any stage of `lineage` ran in `job`.
fn lineage_ran(events: &[Value], job: u64, lineage: &[usize]) -> bool {
    submitted(events, job)
        .iter()
        .any(|s| lineage.contains(&(*s as usize)))
}

fn sorted_rows(df: &DataFrame) -> Vec<String> {
    let batches = df.collect().unwrap();
    let text = arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string();
    let mut rows: Vec<String> = text.lines().map(str::to_string).collect();
    rows.sort();
    rows
}

#[test]
fn a_cached_dataframe_is_read_not_recomputed_and_lost_blocks_are_recomputed() {
    let (logs, _checkpoints, session) = fresh_session();
    let plain = session.sql(QUERY).unwrap();
    let expected = sorted_rows(&plain);
    let cached = plain.cache();
    let (persist, consumers) = persist_stage(&cached);

    assert_eq!(sorted_rows(&cached), expected);
    let first = events(logs.path());
    let caching_job = last_job(&first);
    assert!(submitted(&first, caching_job).contains(&(persist as u64)));

    // The second query reads the blocks: the persist stage (the scan) does not run.
    assert_eq!(sorted_rows(&cached), expected);
    let second = events(logs.path());
    let job = last_job(&second);
    assert!(
        !submitted(&second, job).contains(&(persist as u64)),
        "the cached stage ran again: {:?}",
        submitted(&second, job)
    );

    // Which partitions did executor 0 hold? They are lost with it, and only they are
    // recomputed.
    let held: Vec<u64> = named(&second, "TaskEnd")
        .into_iter()
        .filter(|e| {
            e["job"] == caching_job
                && e["stage"] == persist as u64
                && e["reason"] == "Success"
                && e["executor"] == 0
        })
        .map(|e| e["partition"].as_u64().unwrap())
        .collect();
    assert!(!held.is_empty(), "executor 0 computed no cached partition");
    let consumer = consumers[0];
    session
        .sql(&format!(
            "SET ember.fault.plan = 'kill-executor executor=0 stage={consumer} at=0%'"
        ))
        .unwrap();
    assert_eq!(
        sorted_rows(&cached),
        expected,
        "answer changed after losing blocks"
    );
    session.sql("SET ember.fault.plan = ''").unwrap();

    let third = events(logs.path());
    let job = last_job(&third);
    let mut lost: Vec<u64> = named(&third, "CacheBlockLost")
        .into_iter()
        .filter(|e| e["job"] == job)
        .map(|e| e["partition"].as_u64().unwrap())
        .collect();
    lost.sort_unstable();
    let mut held = held;
    held.sort_unstable();
    assert_eq!(
        lost, held,
        "CacheBlockLost must name exactly executor 0's blocks"
    );
    let mut recomputed: Vec<u64> = named(&third, "PartitionsRecomputed")
        .into_iter()
        .filter(|e| e["job"] == job && e["stage"] == persist as u64)
        .flat_map(|e| e["partitions"].as_array().unwrap().clone())
        .map(|p| p.as_u64().unwrap())
        .collect();
    recomputed.sort_unstable();
    assert_eq!(recomputed, held, "only the lost partitions are recomputed");

    // unpersist: the scan runs again.
    let plain_again = cached.unpersist();
    assert_eq!(sorted_rows(&plain_again), expected);
    let fourth = events(logs.path());
    assert!(!named(&fourth, "JobStart").is_empty());
}

/// A session whose QUERY was checkpointed by one job, and what that job left.
struct Written {
    logs: tempfile::TempDir,
    checkpoints: tempfile::TempDir,
    session: Session,
    /// QUERY's rows without a checkpoint, sorted.
    expected: Vec<String>,
    checkpointed: DataFrame,
    /// The stage that writes the checkpoint (teed into the job's result stage).
    persist: usize,
    /// The stages below the checkpoint.
    lineage: Vec<usize>,
    fingerprint: String,
}

/// Checkpoints GROUPED in a fresh session: the rows are the plain ones and exactly one
/// checkpoint was written, by the stage that reads it.
fn write_checkpoint() -> Written {
    let (logs, checkpoints, session) = fresh_session();
    let expected = sorted_rows(&session.sql(GROUPED).unwrap());
    let checkpointed = session.sql(GROUPED).unwrap().checkpoint();
    let keeper = keeping_stage(&checkpointed);
    assert!(keeper.teed, "read once, by one stage: teed");
    assert!(!keeper.lineage.is_empty());
    assert_eq!(sorted_rows(&checkpointed), expected);
    let log = events(logs.path());
    let written = named(&log, "CheckpointWritten");
    assert_eq!(written.len(), 1, "{written:?}");
    let fingerprint = written[0]["fingerprint"].as_str().unwrap().to_string();
    Written {
        logs,
        checkpoints,
        session,
        expected,
        checkpointed,
        persist: keeper.id,
        lineage: keeper.lineage,
        fingerprint,
    }
}

#[test]
fn a_checkpoint_is_written_once_reused_and_a_corrupt_one_is_rejected() {
    let Written {
        logs,
        checkpoints,
        session,
        expected,
        checkpointed,
        lineage,
        fingerprint,
        ..
    } = write_checkpoint();
    let folder = checkpoints.path().join(&fingerprint);
    assert!(folder.join("_SUCCESS").exists());
    assert!(folder.join("_manifest.json").exists());
    assert!(folder.join("part-00000.parquet").exists());

    // Read, not recomputed: the lineage below the checkpoint does not run.
    assert_eq!(sorted_rows(&checkpointed), expected);
    let log = events(logs.path());
    let job = last_job(&log);
    assert!(!lineage_ran(&log, job, &lineage));
    assert!(named(&log, "CheckpointReused")
        .iter()
        .any(|e| e["job"] == job));

    // A checkpoint damaged on write is rejected on read and written again from lineage.
    session
        .sql("SET ember.fault.plan = 'corrupt-checkpoint'")
        .unwrap();
    let damaged = session
        .sql("SELECT l_orderkey, l_quantity FROM lineitem WHERE l_quantity < 5")
        .unwrap();
    let expected_damaged = sorted_rows(&damaged);
    assert_eq!(sorted_rows(&damaged.checkpoint()), expected_damaged);
    session.sql("SET ember.fault.plan = ''").unwrap();
    let log = events(logs.path());
    let job = last_job(&log);
    let rejected: Vec<_> = named(&log, "CheckpointRejected")
        .into_iter()
        .filter(|e| e["job"] == job)
        .collect();
    assert_eq!(rejected.len(), 1, "{log:?}");
    let recomputed: Vec<_> = named(&log, "PartitionsRecomputed")
        .into_iter()
        .filter(|e| e["job"] == job && e["cause"] == "CheckpointRejected")
        .collect();
    assert!(
        !recomputed.is_empty(),
        "no recomputation after the rejection"
    );
    // The damaged files are found when read back before the commit, so the damaged
    // checkpoint is never committed: one commit in that job, of the rewritten files.
    let written: Vec<_> = named(&log, "CheckpointWritten")
        .into_iter()
        .filter(|e| e["job"] == job)
        .collect();
    assert_eq!(written.len(), 1, "{written:?}");
    assert!(
        rejected[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("checksum")),
        "{:?}",
        rejected[0]
    );
}

/// The first byte-flipped file of the committed checkpoint under `dir`.
fn damage_a_checkpoint_file(dir: &Path, fingerprint: &str) {
    let file = dir.join(fingerprint).join("part-00000.parquet");
    let mut data = std::fs::read(&file).unwrap();
    let middle = data.len() / 2;
    data[middle] ^= 0xFF;
    std::fs::write(&file, data).unwrap();
}

/// The writing job reads its partitions from memory; every later job reads the files, so a
/// file damaged after the commit is noticed there: rejected, never read, recomputed.
#[test]
fn a_checkpoint_file_damaged_after_its_commit_is_rejected_by_the_next_job() {
    let Written {
        logs,
        checkpoints,
        session: _session,
        expected,
        checkpointed,
        persist,
        lineage,
        fingerprint,
    } = write_checkpoint();
    damage_a_checkpoint_file(checkpoints.path(), &fingerprint);

    assert_eq!(sorted_rows(&checkpointed), expected);
    let log = events(logs.path());
    let job = last_job(&log);
    let in_job = |name: &str| -> Vec<Value> {
        named(&log, name)
            .into_iter()
            .filter(|e| e["job"] == job)
            .cloned()
            .collect()
    };
    let rejected = in_job("CheckpointRejected");
    assert_eq!(rejected.len(), 1, "{log:?}");
    assert!(
        rejected[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("checksum")),
        "{rejected:?}"
    );
    assert!(in_job("PartitionsRecomputed")
        .iter()
        .any(|e| e["stage"] == persist as u64 && e["cause"] == "CheckpointRejected"));
    assert_eq!(in_job("CheckpointWritten").len(), 1);

    // The rewritten checkpoint is good: the job after reads it without recomputing.
    assert_eq!(sorted_rows(&checkpointed), expected);
    let log = events(logs.path());
    let job = last_job(&log);
    assert!(!lineage_ran(&log, job, &lineage));
    assert!(!named(&log, "CheckpointRejected")
        .iter()
        .any(|e| e["job"] == job));
}

/// A checkpoint read twice has a stage of its own, whose tasks keep in-memory copies of
/// what they wrote for the writing job's readers. An executor lost while those run takes its
/// copies with it; its partitions are read from the committed files instead — nothing is
/// recomputed.
#[test]
fn a_checkpoint_copy_lost_with_its_executor_is_read_from_the_files() {
    let (logs, _checkpoints, session) = fresh_session();
    let plain = session.sql(GROUPED).unwrap();
    let expected = sorted_rows(&plain.union(&plain).unwrap());
    let checkpointed = plain.checkpoint();
    let twice = checkpointed.union(&checkpointed).unwrap();
    let keeper = keeping_stage(&twice);
    assert!(!keeper.teed, "read twice: a stage of its own");
    let (persist, consumers) = (keeper.id, keeper.children);
    kill_executor_1_when_starting(&session, consumers[0]);
    assert_eq!(sorted_rows(&twice), expected);
    session.sql("SET ember.fault.plan = ''").unwrap();
    let log = events(logs.path());
    let job = last_job(&log);
    let on_lost_executor = named(&log, "TaskEnd").into_iter().any(|e| {
        e["job"] == job
            && e["stage"] == persist as u64
            && e["reason"] == "Success"
            && e["executor"] == 1
    });
    assert!(on_lost_executor, "executor 1 wrote no checkpoint partition");
    assert!(named(&log, "ExecutorRemoved")
        .iter()
        .any(|e| e["executor"] == 1));
    let in_job = |name: &str| {
        named(&log, name)
            .into_iter()
            .filter(|e| e["job"] == job)
            .count()
    };
    assert_eq!(in_job("CheckpointWritten"), 1);
    assert_eq!(in_job("CheckpointRejected"), 0);
    assert_eq!(
        in_job("CacheBlockLost"),
        0,
        "a checkpoint copy is not a lost block"
    );
    assert!(!named(&log, "PartitionsRecomputed")
        .iter()
        .any(|e| e["job"] == job && e["stage"] == persist as u64));
}

#[test]
fn a_restarted_session_reuses_committed_checkpoints_and_vacuum_removes_unused_ones() {
    let logs = tempfile::tempdir().unwrap();
    let checkpoints = tempfile::tempdir().unwrap();
    // Inputs with a stable identity (files): generated in-memory tables differ per session.
    let data = tempfile::tempdir().unwrap();
    let lineitem = data.path().join("lineitem");
    let session_over_files = |logs: &Path| {
        let s = session(logs, checkpoints.path());
        s.register_parquet("lineitem", lineitem.to_str().unwrap())
            .unwrap();
        s
    };
    {
        let writer = session(logs.path(), checkpoints.path());
        writer
            .sql(&format!(
                "COPY (SELECT * FROM lineitem) TO '{}' STORED AS PARQUET",
                lineitem.display()
            ))
            .unwrap()
            .collect()
            .unwrap();
    }
    let expected;
    {
        // A session that "crashes": no cleanup of its checkpoints.
        let first = session_over_files(logs.path());
        first.sql("SET ember.checkpoint.cleanup = false").unwrap();
        let df = first.sql(GROUPED).unwrap();
        expected = sorted_rows(&df);
        assert_eq!(sorted_rows(&df.checkpoint()), expected);
    }
    let folders = |dir: &Path| std::fs::read_dir(dir).unwrap().count();
    assert_eq!(folders(checkpoints.path()), 1);

    let restarted_logs = tempfile::tempdir().unwrap();
    let second = session_over_files(restarted_logs.path());
    let df = second.sql(GROUPED).unwrap().checkpoint();
    let lineage = keeping_stage(&df).lineage;
    assert!(!lineage.is_empty());
    assert_eq!(sorted_rows(&df), expected);
    let log = events(restarted_logs.path());
    assert_eq!(named(&log, "CheckpointReused").len(), 1, "{log:?}");
    assert!(named(&log, "CheckpointWritten").is_empty());
    assert!(!lineage_ran(&log, last_job(&log), &lineage));

    // A checkpoint of another plan, then VACUUM in a session that uses only the first.
    let other = second
        .sql("SELECT count(*) AS n FROM lineitem")
        .unwrap()
        .checkpoint();
    other.collect().unwrap();
    assert_eq!(folders(checkpoints.path()), 2);
    let other_plan_only = session_over_files(tempfile::tempdir().unwrap().path());
    let keep = other_plan_only.sql(GROUPED).unwrap().checkpoint();
    keep.collect().unwrap();
    let message = other_plan_only.sql("VACUUM CHECKPOINTS").unwrap().collect();
    assert!(message.is_ok());
    assert_eq!(
        folders(checkpoints.path()),
        1,
        "vacuum keeps only the one in use"
    );
    assert_eq!(sorted_rows(&keep), expected);

    // Session end (cleanup on by default) removes the session's checkpoints.
    drop(keep);
    drop(other_plan_only);
    drop(df);
    drop(other);
    drop(second);
    assert_eq!(folders(checkpoints.path()), 0, "cleanup at session end");
}

#[test]
fn sql_cache_uncache_and_checkpoint_table() {
    let (logs, _checkpoints, session) = fresh_session();
    let message = |sql: &str| -> String {
        match session.execute_sql(sql).unwrap().pop() {
            Some(StatementResult::Message(m)) => m,
            other => panic!("{sql}: expected a message, got {other:?}"),
        }
    };
    let rows = |sql: &str| -> String {
        let batches = session.sql(sql).unwrap().collect().unwrap();
        arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string()
    };
    let totals = "SELECT count(*) AS n, sum(l_quantity) AS q FROM big";
    let agg = "SELECT l_returnflag, count(*) AS n FROM lineitem GROUP BY l_returnflag";

    let m = message(&format!("CACHE TABLE big AS {QUERY}"));
    assert!(m.starts_with("Table 'big' cached ("), "{m}");
    let cached_answer = rows(totals);
    let log = events(logs.path());
    let job = last_job(&log);
    // The query read the cache: only the aggregation stages ran.
    let first_job = named(&log, "JobStart")[0]["job"].as_u64().unwrap();
    assert!(submitted(&log, job).len() < submitted(&log, first_job).len());

    assert_eq!(message("UNCACHE TABLE big"), "Table 'big' uncached.");
    assert_eq!(
        rows(totals),
        cached_answer,
        "the view still answers after UNCACHE"
    );
    let err = session.execute_sql("UNCACHE TABLE big").unwrap_err();
    assert!(err.to_string().contains("not cached"), "{err}");
    let err = session.execute_sql("UNCACHE TABLE nope").unwrap_err();
    assert!(err.to_string().contains("unknown table 'nope'"), "{err}");

    // CACHE TABLE of an existing table, and CHECKPOINT TABLE of a view.
    let before = rows(agg);
    assert!(message("CACHE TABLE lineitem").starts_with("Table 'lineitem' cached ("));
    assert_eq!(rows(agg), before);
    message("UNCACHE TABLE lineitem");
    message(&format!("CREATE VIEW v AS {agg}"));
    let m = message("CHECKPOINT TABLE v");
    assert!(m.contains("checkpointed (3 rows)"), "{m}");
    assert_eq!(
        rows("SELECT * FROM v ORDER BY l_returnflag"),
        rows(&format!("{agg} ORDER BY l_returnflag"))
    );
    let log = events(logs.path());
    assert_eq!(named(&log, "CheckpointWritten").len(), 1);
    assert!(!named(&log, "CheckpointReused").is_empty());
    let m = message("VACUUM CHECKPOINTS");
    assert!(m.starts_with("Removed 0 unused checkpoints"), "{m}");
}

#[test]
fn a_local_checkpoint_lost_with_its_executor_is_recomputed_from_lineage() {
    let (logs, _checkpoints, session) = fresh_session();
    let plain = session.sql(GROUPED).unwrap();
    let expected = sorted_rows(&plain);
    let local = plain.local_checkpoint();
    let (persist, consumers) = persist_stage(&local);
    assert_eq!(sorted_rows(&local), expected);
    kill_executor_1_when_starting(&session, consumers[0]);
    assert_eq!(
        sorted_rows(&local),
        expected,
        "Spark fails here; Ember recomputes"
    );
    let log = events(logs.path());
    let job = last_job(&log);
    assert!(named(&log, "CacheBlockLost")
        .iter()
        .any(|e| e["job"] == job));
    let recomputed: Vec<_> = named(&log, "PartitionsRecomputed")
        .into_iter()
        .filter(|e| e["job"] == job && e["stage"] == persist as u64)
        .collect();
    assert!(!recomputed.is_empty(), "{log:?}");
    assert!(recomputed.iter().all(|e| e["cause"] == "ExecutorLost"));
}

#[test]
fn automatic_checkpoints_cut_deep_lineage_and_are_reused() {
    let (logs, _checkpoints, session) = fresh_session();
    let query = "SELECT o_orderpriority, count(*) AS n FROM \
                 (SELECT o_orderkey, o_orderpriority, sum(l_quantity) AS q \
                  FROM orders JOIN lineitem ON o_orderkey = l_orderkey \
                  GROUP BY o_orderkey, o_orderpriority) t \
                 WHERE q > 100 GROUP BY o_orderpriority ORDER BY o_orderpriority";
    let expected = sorted_rows(&session.sql(query).unwrap());
    assert!(named(&events(logs.path()), "CheckpointWritten").is_empty());

    // A depth cap of 1 stage: every stage above the first is beyond it.
    session
        .sql("SET ember.checkpoint.maxLineageDepth = 1")
        .unwrap();
    let df = session.sql(query).unwrap();
    let explain = df.explain().unwrap();
    assert!(explain.contains("== checkpoints =="), "{explain}");
    assert!(explain.contains("Persist: id="), "{explain}");
    assert_eq!(sorted_rows(&df), expected);
    let log = events(logs.path());
    let job = last_job(&log);
    let written = named(&log, "CheckpointWritten")
        .into_iter()
        .filter(|e| e["job"] == job)
        .count();
    assert!(written > 0, "no automatic checkpoint was written");

    // The same query again reads them instead of recomputing their lineage.
    assert_eq!(sorted_rows(&session.sql(query).unwrap()), expected);
    let log = events(logs.path());
    let job = last_job(&log);
    let reused = named(&log, "CheckpointReused")
        .into_iter()
        .filter(|e| e["job"] == job)
        .count();
    assert_eq!(reused, written);
    assert!(named(&log, "CheckpointWritten")
        .iter()
        .all(|e| e["job"] != job));
}

/// The rows a job's `CheckpointWritten` events say were written.
fn written_rows(events: &[Value], job: u64) -> Vec<u64> {
    named(events, "CheckpointWritten")
        .into_iter()
        .filter(|e| e["job"] == job)
        .map(|e| e["rows"].as_u64().unwrap())
        .collect()
}

/// A teed checkpoint is written by the stage that reads it; when that stage stops reading
/// early (a limit), the rest of its input is still written: the checkpoint holds every row,
/// and the next job reads them all from it.
#[test]
fn a_teed_checkpoint_holds_every_row_when_its_reader_stops_early() {
    let (logs, _checkpoints, session) = fresh_session();
    let plain = session.sql(QUERY).unwrap();
    let expected = sorted_rows(&plain);
    let all_rows = plain.count().unwrap() as u64;
    let checkpointed = plain.checkpoint();
    let first_five = checkpointed.limit(5).unwrap();
    assert!(keeping_stage(&first_five).teed);
    let rows: usize = first_five
        .collect()
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(rows, 5);
    let log = events(logs.path());
    assert_eq!(written_rows(&log, last_job(&log)), vec![all_rows]);

    assert_eq!(sorted_rows(&checkpointed), expected);
    let log = events(logs.path());
    let job = last_job(&log);
    assert!(named(&log, "CheckpointReused")
        .iter()
        .any(|e| e["job"] == job));
    assert!(written_rows(&log, job).is_empty());
}

/// An executor lost while a teed checkpoint is being written: exactly the partitions it
/// had finished are run again (their shuffle output went with it; their files are kept but
/// rewritten, identical), the checkpoint is committed once, whole, and the answer is the
/// plain one.
#[test]
fn an_executor_lost_while_a_checkpoint_is_teed_leaves_it_whole() {
    let (logs, _checkpoints, session) = fresh_session();
    let grouped = "SELECT l_partkey, count(*) AS n FROM lineitem \
                   WHERE l_quantity > 10 GROUP BY l_partkey";
    let expected = sorted_rows(&session.sql(grouped).unwrap());
    // Eight partitions, so both executors have finished some when half are done.
    let input = session.sql(QUERY).unwrap().repartition(8).unwrap();
    let all_rows = input.count().unwrap() as u64;
    let df = input
        .checkpoint()
        .group_by(vec![col("l_partkey")])
        .agg(vec![count_star().alias("n")])
        .unwrap();
    let keeper = keeping_stage(&df);
    assert!(keeper.teed);
    session
        .sql(&format!(
            "SET ember.fault.plan = 'kill-executor executor=1 stage={} at=50%'",
            keeper.id
        ))
        .unwrap();
    assert_eq!(sorted_rows(&df), expected);
    session.sql("SET ember.fault.plan = ''").unwrap();
    let log = events(logs.path());
    let job = last_job(&log);
    let in_keeper = |e: &&Value| e["job"] == job && e["stage"] == keeper.id as u64;
    let mut finished_on_lost: Vec<u64> = named(&log, "TaskEnd")
        .into_iter()
        .filter(in_keeper)
        .filter(|e| e["executor"] == 1 && e["reason"] == "Success")
        .map(|e| e["partition"].as_u64().unwrap())
        .collect();
    finished_on_lost.sort_unstable();
    assert!(!finished_on_lost.is_empty(), "executor 1 finished nothing");
    let mut recomputed: Vec<u64> = named(&log, "PartitionsRecomputed")
        .into_iter()
        .filter(in_keeper)
        .inspect(|e| assert_eq!(e["cause"], "ExecutorLost"))
        .flat_map(|e| e["partitions"].as_array().unwrap().clone())
        .map(|p| p.as_u64().unwrap())
        .collect();
    recomputed.sort_unstable();
    assert_eq!(recomputed, finished_on_lost);
    assert_eq!(written_rows(&log, job), vec![all_rows]);
}
