//! The hash join under a memory budget: every join type gives the in-memory rows (as a
//! multiset; the grace path emits them partition by partition) when the build side spills,
//! spills are counted, files are deleted and the reservation is released.

use std::path::Path;
use std::sync::Arc;

use ember_planner::expr::col;
use ember_planner::logical::JoinType;
use ember_planner::physical::{JoinMode, PhysicalPlan};
use ember_planner::EmberError;

use super::grace::{FANOUT, SPILL_OPERATOR};
use super::tests::{ints, side, strs, Join};
use crate::context::TaskContext;
use crate::memory::{MemoryPool, TaskMemory};
use crate::operators::test_util::{sorted_rows, test_ctx_with_batch_size};

const ALL_TYPES: [JoinType; 6] = [
    JoinType::Inner,
    JoinType::Left,
    JoinType::Right,
    JoinType::Full,
    JoinType::LeftSemi,
    JoinType::LeftAnti,
];

fn budget_ctx(dir: &Path, budget: usize, batch_size: usize) -> Arc<TaskContext> {
    let mut ctx = TaskContext::standalone(Arc::new(crate::udf::FunctionRegistry::default()));
    ctx.batch_size = batch_size;
    ctx.memory = TaskMemory::new(MemoryPool::new(0, budget), dir.join("spill"));
    Arc::new(ctx)
}

/// `rows` rows in batches of 50 over `partitions` partitions: key `key(i)` (NULL where it
/// returns `None`), an int payload `i` and a string payload.
fn table(
    name: &str,
    key_col: &str,
    rows: usize,
    partitions: usize,
    key: impl Fn(usize) -> Option<i64>,
) -> Arc<PhysicalPlan> {
    let (n, s) = match name {
        "l" => ("x", "s"),
        _ => ("y", "t"),
    };
    let mut parts = vec![Vec::new(); partitions];
    let all: Vec<usize> = (0..rows).collect();
    for (c, chunk) in all.chunks(50).enumerate() {
        let keys: Vec<Option<i64>> = chunk.iter().map(|&i| key(i)).collect();
        let payload: Vec<Option<i64>> = chunk.iter().map(|&i| Some(i as i64)).collect();
        let text: Vec<String> = chunk.iter().map(|i| format!("{name}{i:05}")).collect();
        let text: Vec<&str> = text.iter().map(String::as_str).collect();
        parts[c % partitions].push(crate::operators::test_util::batch(vec![
            (key_col, ints(&keys)),
            (n, ints(&payload)),
            (s, strs(&text)),
        ]));
    }
    side(name, parts)
}

/// Left keys 0..97 (NULL every 13th row), right keys spread over 0..131 (NULL every 17th),
/// so both sides have unmatched rows, duplicate keys and NULL keys.
fn left_big(partitions: usize) -> Arc<PhysicalPlan> {
    table("l", "a", 1200, partitions, |i| {
        (i % 13 != 5).then_some((i % 97) as i64)
    })
}

fn right_big(partitions: usize) -> Arc<PhysicalPlan> {
    table("r", "b", 900, partitions, |i| {
        (i % 17 != 3).then_some(((i * 7) % 131) as i64)
    })
}

/// Runs `join` in memory and under `budget`; asserts equal rows, that the budgeted run
/// spilled through the join, deleted its files and released its memory. Returns the
/// spill files written.
fn assert_spilled_join_matches(join: &Join, budget: usize, what: &str) -> usize {
    let expected = join
        .run_with(0, &test_ctx_with_batch_size(64))
        .unwrap_or_else(|e| panic!("{what} in memory: {e}"));
    let dir = tempfile::tempdir().unwrap();
    let ctx = budget_ctx(dir.path(), budget, 64);
    let spilled = join
        .run_with(0, &ctx)
        .unwrap_or_else(|e| panic!("{what} under {budget} bytes: {e}"));
    assert_eq!(sorted_rows(&spilled), sorted_rows(&expected), "{what}");
    assert!(!expected.is_empty() || sorted_rows(&expected).is_empty());
    let files = ctx.memory.pool.operator_spills(SPILL_OPERATOR).files();
    assert!(files > 0, "{what}: the join did not spill");
    assert_eq!(ctx.memory.spills.files(), files, "{what}: task metrics");
    assert!(ctx.memory.spills.bytes() > 0);
    assert!(spilled.iter().all(|b| b.num_rows() <= 64), "{what}");
    let left = std::fs::read_dir(dir.path().join("spill")).map_or(0, |d| d.count());
    assert_eq!(left, 0, "{what}: spill files are deleted");
    assert_eq!(ctx.memory.pool.used(), 0, "{what}: memory is released");
    files
}

#[test]
fn every_join_type_gives_the_in_memory_rows_when_the_build_side_spills() {
    for join_type in ALL_TYPES {
        let join = Join::new(left_big(1), right_big(1), join_type);
        let rows = sorted_rows(&join.run_with(0, &test_ctx_with_batch_size(64)).unwrap());
        assert!(!rows.is_empty(), "{join_type}: the test data joins nothing");
        assert_spilled_join_matches(&join, 32 << 10, &format!("{join_type}"));
    }
}

#[test]
fn residual_filters_and_multi_column_keys_survive_spilling() {
    for join_type in ALL_TYPES {
        let mut join = Join::new(left_big(1), right_big(1), join_type);
        join.filter = Some(col("r.y").gt(col("l.x")));
        assert_spilled_join_matches(&join, 32 << 10, &format!("{join_type} with a filter"));

        let mut join = Join::new(left_big(1), right_big(1), join_type);
        join.on = vec![("l.a", "r.b"), ("l.x", "r.y")];
        assert_spilled_join_matches(&join, 32 << 10, &format!("{join_type} on two keys"));
    }
}

#[test]
fn partitions_that_still_do_not_fit_are_partitioned_again() {
    for join_type in [JoinType::Inner, JoinType::Full, JoinType::LeftAnti] {
        let join = Join::new(left_big(1), right_big(1), join_type);
        // A level-0 partition (~1/16 of the build side) is larger than this budget.
        let files = assert_spilled_join_matches(&join, 3 << 10, &format!("{join_type}"));
        assert!(
            files > 2 * FANOUT,
            "{join_type}: {files} spill files, so no partition was split again"
        );
    }
}

#[test]
fn null_aware_anti_join_decides_on_the_whole_spilled_build_side() {
    // Partitioned NOT IN reads every build partition, here two.
    let mut join = Join::new(left_big(2), right_big(2), JoinType::LeftAnti);
    join.null_aware = true;
    let dir = tempfile::tempdir().unwrap();
    let ctx = budget_ctx(dir.path(), 16 << 10, 64);
    // The build side has NULL keys: NOT IN is never true, whatever spilled.
    assert!(sorted_rows(&join.run_with(0, &ctx).unwrap()).is_empty());
    assert!(ctx.memory.spills.files() > 0);

    // Without NULLs in the set, probe rows with NULL keys are unknown and dropped, rows
    // with keys not in the set are kept.
    join.right = table("r", "b", 900, 2, |i| Some(((i * 7) % 131) as i64 + 40));
    let files = assert_spilled_join_matches(&join, 16 << 10, "NOT IN");
    assert!(files > 0);
    let out = sorted_rows(&join.run_with(0, &test_ctx_with_batch_size(64)).unwrap());
    assert!(!out.is_empty());
}

#[test]
fn broadcast_build_side_over_budget_takes_the_grace_path() {
    for join_type in [JoinType::Inner, JoinType::Left, JoinType::LeftAnti] {
        let mut join = Join::new(left_big(1), right_big(3), join_type);
        join.mode = JoinMode::Broadcast;
        assert_spilled_join_matches(&join, 32 << 10, &format!("broadcast {join_type}"));
    }
}

#[test]
fn a_build_side_that_fits_is_reserved_and_released() {
    let join = Join::new(left_big(1), right_big(1), JoinType::Inner);
    let dir = tempfile::tempdir().unwrap();
    let ctx = budget_ctx(dir.path(), 64 << 20, 64);
    let mut stream = super::execute_hash_join(&join.plan(), 0, &ctx).unwrap();
    let first = stream.next().expect("rows").unwrap();
    assert!(first.num_rows() > 0);
    let held = ctx.memory.pool.used();
    assert!(held > 0, "the build side is reserved while probing");
    stream.for_each(|b| {
        b.unwrap();
    });
    assert_eq!(ctx.memory.pool.used(), 0, "released at the end");
    assert_eq!(
        ctx.memory.spills.files(),
        0,
        "nothing spills with room to spare"
    );
}

#[test]
fn one_hot_key_beyond_the_levels_is_a_clear_error() {
    // Every build row has key 1: no seed splits them.
    let left = table("l", "a", 100, 1, |_| Some(1));
    let right = table("r", "b", 900, 1, |_| Some(1));
    let join = Join::new(left, right, JoinType::Inner);
    let dir = tempfile::tempdir().unwrap();
    let ctx = budget_ctx(dir.path(), 8 << 10, 64);
    let err = join.run_with(0, &ctx).unwrap_err();
    assert!(matches!(err, EmberError::Execution(_)), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("Inner hash join on l.a = r.b")
            && msg.contains("levels of grace partitioning")
            && msg.contains("ember.executor.memory"),
        "{msg}"
    );
    let left = std::fs::read_dir(dir.path().join("spill")).map_or(0, |d| d.count());
    assert_eq!(left, 0, "spill files are deleted after the error");
    assert_eq!(ctx.memory.pool.used(), 0);
}
