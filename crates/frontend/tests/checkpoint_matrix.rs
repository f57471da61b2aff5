//! The checkpoint row of the fault matrix: every TPC-H query at SF 0.01 with automatic
//! checkpoints at every map stage beyond the first (`ember.checkpoint.maxLineageDepth = 1`)
//! and the `corrupt-checkpoint` fault (each checkpoint file is damaged once as written).
//! The answer must be the reference answer, every damaged checkpoint must be rejected — never
//! read nor committed — and written again from lineage, and the next run must reuse the good checkpoints
//! instead of recomputing their lineage.

mod common;

use common::event_files::events;
use common::tpch::{assert_matches_answer, sql, with_tables, QUERIES};
use ember_frontend::format::cell_strings;
use ember_frontend::session::Session;
use serde_json::Value;

fn count(events: &[Value], name: &str, job: u64) -> usize {
    events
        .iter()
        .filter(|e| e["event"] == name && e["job"] == job)
        .count()
}

fn run(session: &Session, name: &str) -> Vec<Vec<String>> {
    let batches = session
        .sql(&sql(name))
        .and_then(|df| df.collect())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    cell_strings(&batches).unwrap()
}

#[test]
fn corrupt_checkpoints_are_rejected_rewritten_and_then_reused_for_every_query() {
    let mut checkpointed = 0;
    for name in QUERIES {
        let logs = tempfile::tempdir().unwrap();
        let checkpoints = tempfile::tempdir().unwrap();
        let session = with_tables(
            Session::builder()
                .config("ember.eventLog.enabled", "true")
                .config("ember.eventLog.dir", logs.path().to_str().unwrap())
                .config("ember.checkpoint.dir", checkpoints.path().to_str().unwrap())
                .config("ember.checkpoint.maxLineageDepth", "1")
                .build()
                .unwrap(),
        );

        session
            .sql("SET ember.fault.plan = 'corrupt-checkpoint'")
            .unwrap();
        assert_matches_answer(name, &run(&session, name));
        let log = events(logs.path());
        let written = count(&log, "CheckpointWritten", 0);
        let rejected = count(&log, "CheckpointRejected", 0);
        if written == 0 {
            // A plan too shallow for any checkpoint (e.g. one scan and one aggregate).
            assert_eq!(rejected, 0, "{name}");
            continue;
        }
        checkpointed += 1;
        // Every checkpoint was damaged once: each was rejected when its files were read
        // back before the commit, rewritten from lineage, and committed once (a damaged
        // checkpoint is never committed).
        assert!(
            rejected >= 1,
            "{name}: nothing rejected of {written} written"
        );
        assert_eq!(
            written, rejected,
            "{name}: {written} written, {rejected} rejected"
        );
        let recomputed = log
            .iter()
            .filter(|e| e["event"] == "PartitionsRecomputed" && e["cause"] == "CheckpointRejected")
            .count();
        assert!(
            recomputed >= rejected,
            "{name}: rejected but not recomputed"
        );

        // Without faults the good checkpoints are read instead of their lineage.
        session.sql("SET ember.fault.plan = ''").unwrap();
        assert_matches_answer(name, &run(&session, name));
        let log = events(logs.path());
        assert_eq!(count(&log, "CheckpointWritten", 1), 0, "{name}");
        assert_eq!(count(&log, "CheckpointRejected", 1), 0, "{name}");
        assert_eq!(count(&log, "CheckpointReused", 1), rejected, "{name}");
    }
    assert!(
        checkpointed >= 15,
        "only {checkpointed} queries had a checkpoint"
    );
}
