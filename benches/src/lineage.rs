//! The iterative DataFrame loop of the long-lineage benchmark (issue 3) and the figures it
//! reports: each iteration joins the previous result with a small `step` table and
//! aggregates per key, feeding the next, so iteration `n`'s plan carries the lineage of all
//! `n` iterations. Also the byte count of a folder, to compare checkpoint files with plain
//! Parquet.

use std::path::Path;
use std::sync::Arc;

use std::collections::BTreeSet;

use arrow::array::{Array, ArrayRef, Int64Array};
use arrow::record_batch::RecordBatch;
use ember_frontend::prelude::*;
use ember_planner::fingerprint::stage_fingerprints;
use ember_planner::stages::{StageGraph, StageOutput};

/// Keys of the iterated state; each iteration adds 1 to every key's value.
pub const KEYS: i64 = 64;

/// A session with `settings` where `state(k, v)` holds v = 0 and `step(wk, w)` holds w = 1
/// for every key, both in `partitions` partitions.
pub fn loop_session(partitions: usize, settings: &[(&str, &str)]) -> Result<Session> {
    let session = settings
        .iter()
        .fold(crate::session_builder(), |b, (key, value)| {
            b.config(key, value)
        })
        .build()?;
    let partitions = partitions.max(1);
    for (name, key, value, v) in [("state", "k", "v", 0i64), ("step", "wk", "w", 1)] {
        let mut batches = Vec::with_capacity(partitions);
        for p in 0..partitions as i64 {
            let keys: Vec<i64> = (0..KEYS).filter(|k| k % partitions as i64 == p).collect();
            let values = vec![v; keys.len()];
            let batch = RecordBatch::try_from_iter(vec![
                (key, Arc::new(Int64Array::from(keys)) as ArrayRef),
                (value, Arc::new(Int64Array::from(values)) as ArrayRef),
            ])?;
            batches.push(vec![batch]);
        }
        let schema = batches[0][0].schema();
        session.register_batches(name, schema, batches)?;
    }
    Ok(session)
}

/// One iteration: join with `step` and aggregate per key (v' = v + 1).
pub fn join_aggregate(prev: &DataFrame, step: &DataFrame) -> Result<DataFrame> {
    prev.join(step, JoinType::Inner, &[("k", "wk")])?
        .group_by(vec![col("k")])
        .agg(vec![sum(col("v").add(col("w"))).alias("v")])
}

/// `n` iterations of [`join_aggregate`] from `state`; with `checkpoint_every = Some(k)` the
/// result of every k-th iteration is reliably checkpointed (what automatic placement with
/// a depth cap does, spelled out by the user).
pub fn iterate(session: &Session, n: usize, checkpoint_every: Option<usize>) -> Result<DataFrame> {
    let step = session.table("step")?;
    let mut df = session.table("state")?;
    for i in 1..=n {
        df = join_aggregate(&df, &step)?;
        if checkpoint_every.is_some_and(|k| k > 0 && i % k == 0) {
            df = df.checkpoint();
        }
    }
    Ok(df)
}

/// Whether `batches` are the loop's answer after `n` iterations: every key once, v = n.
pub fn is_answer(batches: &[RecordBatch], n: usize) -> bool {
    let mut seen = 0usize;
    let mut keys = BTreeSet::new();
    for batch in batches {
        let (Some(k), Some(v)) = (
            batch
                .column_by_name("k")
                .and_then(|c| c.as_any().downcast_ref::<Int64Array>()),
            batch
                .column_by_name("v")
                .and_then(|c| c.as_any().downcast_ref::<Int64Array>()),
        ) else {
            return false;
        };
        if k.null_count() > 0 || v.values().iter().any(|x| *x != n as i64) {
            return false;
        }
        seen += batch.num_rows();
        keys.extend(k.values().iter().copied());
    }
    seen == KEYS as usize && keys.into_iter().eq(0..KEYS)
}

/// The id, in `whole`, of the last map (shuffle or persist) stage of `prefix` — the stage
/// that finishes iteration `i` when `prefix` is the loop's first `i` iterations and `whole`
/// a longer run of the same loop. Stages are matched by fingerprint, which depends only on
/// a stage's plan and inputs, not on stage numbering.
pub fn stage_of_prefix(prefix: &StageGraph, whole: &StageGraph) -> Result<Option<usize>> {
    let last_map = prefix
        .stages
        .iter()
        .rev()
        .find(|s| !matches!(s.output, StageOutput::Result))
        .map(|s| s.id);
    let Some(last_map) = last_map else {
        return Ok(None);
    };
    let prefix_fps = stage_fingerprints(prefix)?;
    let Some((_, wanted)) = prefix_fps.iter().find(|(id, _)| *id == last_map) else {
        return Ok(None);
    };
    Ok(stage_fingerprints(whole)?
        .into_iter()
        .find(|(_, fp)| fp == wanted)
        .map(|(id, _)| id))
}

/// Total size of the files under `dir` (recursively); 0 if it does not exist.
pub fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => pending.push(entry.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loop_adds_one_per_iteration_and_prefix_stages_are_found_in_longer_runs() {
        let session = loop_session(2, &[("ember.sql.autoBroadcastJoinThreshold", "0")]).unwrap();
        let df = iterate(&session, 3, None).unwrap();
        assert!(is_answer(&df.collect().unwrap(), 3));
        assert!(!is_answer(&df.collect().unwrap(), 2));
        let whole = session.prepare(df.plan()).unwrap().stages;
        let prefix = session
            .prepare(iterate(&session, 2, None).unwrap().plan())
            .unwrap()
            .stages;
        let found = stage_of_prefix(&prefix, &whole).unwrap().expect("found");
        assert!(found < whole.stages.len() - 1);
    }

    #[test]
    fn dir_bytes_sums_nested_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("a").join("x"), [0u8; 10]).unwrap();
        std::fs::write(dir.path().join("y"), [0u8; 5]).unwrap();
        assert_eq!(dir_bytes(dir.path()), 15);
        assert_eq!(dir_bytes(&dir.path().join("missing")), 0);
    }
}
