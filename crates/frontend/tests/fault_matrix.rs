//! The TPC-H × fault matrix (issue 3, "Tests"): every TPC-H query at SF 0.01 under every
//! fault kind returns the fault-free answer, and its event log shows the recovery the fault
//! calls for — no more, no less.
//!
//! | fault | where | recovery the log must show |
//! |---|---|---|
//! | `fail-task` | attempt 0 of the busiest partition of the largest stage | that attempt ends `ExceptionFailure`, a later attempt of the same partition succeeds, nothing is recomputed |
//! | `lose-shuffle` | the busiest map partition of the largest map stage | a reducer ends `FetchFailed` naming it, and exactly it is recomputed |
//! | `kill-executor` | executor 0 at 50% of a multi-task stage | exactly the map outputs it had produced for stages still needed are recomputed |
//! | `delay-task` + speculation | the last partition of the largest multi-task stage | a speculative copy wins, the straggler ends `TaskKilled`, its rows count once |
//! | `hang-executor` | a few queries | the heartbeat timeout removes it, then as for a kill |
//! | chaos | seeds 1..=20, three queries each, all 22 covered | same answers, and the log shows every injected failure |
//! | beyond `maxFailures` | four failed attempts of one task | a clear error listing them; a `COPY` commits nothing |
//!
//! Each query is planned once in a shared session over one generated dataset; each run gets
//! a fresh two-executor cluster and its own event log (see `common::jobs`), so stage and
//! executor ids in a fault plan mean this run's. The fault-free run of a query is computed
//! once and compared with DuckDB's answer; every faulty run is compared with it exactly.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::OnceLock;

use common::jobs::{self, Run};
use common::tpch::{self, QUERIES};
use ember_exec::events::{EventKind, JobResult, RecomputeCause, TaskEndReason};
use ember_exec::fault::Fault;
use ember_frontend::format::cell_strings;
use ember_frontend::Session;
use ember_planner::stages::{Stage, StageGraph, StageOutput};

/// A query planned and run once without faults.
struct Baseline {
    name: &'static str,
    sql: String,
    /// The session it is planned in (see `tpch::session_with_split_tables`).
    session: &'static Session,
    /// The plan of the fault-free run; faults are placed by its stage ids.
    graph: StageGraph,
    ordered: bool,
    /// The fault-free result, in result order.
    rows: Vec<Vec<String>>,
    /// Rows each task produced in the fault-free run, by (stage, partition).
    task_rows: HashMap<(usize, usize), usize>,
}

fn baseline(name: &'static str) -> &'static Baseline {
    static BASELINES: [OnceLock<Baseline>; 22] = [const { OnceLock::new() }; 22];
    let i = QUERIES
        .iter()
        .position(|q| *q == name)
        .unwrap_or_else(|| panic!("{name} is not a TPC-H query"));
    BASELINES[i].get_or_init(|| {
        let sql = tpch::sql(name);
        let session = tpch::session();
        if plan(session, name, &sql)
            .stages
            .iter()
            .any(reads_in_parallel)
        {
            baseline_in(name, session)
        } else {
            // Over single-partition tables a query plans as one task, or as parallel scans
            // feeding one task: run it over the same rows split into partitions, so it
            // has shuffles to lose and (mostly) a parallel stage whose inputs a lost
            // executor held.
            baseline_in(name, tpch::session_with_split_tables())
        }
    })
}

/// Query `name` planned in `session` and run once without faults.
fn baseline_in(name: &'static str, session: &'static Session) -> Baseline {
    let sql = tpch::sql(name);
    let graph = plan(session, name, &sql);
    let run = jobs::run(&graph, session.functions(), &[]);
    let rows = run.rows(name);
    tpch::assert_matches_answer(name, &rows);
    assert_eq!(
        run.fault_evidence(),
        0,
        "{name}: the fault-free run shows failures\n{}",
        run.log_text()
    );
    let task_rows = run
        .task_ends()
        .into_iter()
        .filter(|t| t.reason == TaskEndReason::Success)
        .map(|t| ((t.stage, t.partition), t.rows))
        .collect();
    Baseline {
        name,
        ordered: tpch::is_ordered(&sql),
        sql,
        session,
        graph,
        rows,
        task_rows,
    }
}

/// The stage graph `session` plans for query `name`.
fn plan(session: &Session, name: &str, sql: &str) -> StageGraph {
    let plan = session
        .sql(sql)
        .unwrap_or_else(|e| panic!("{name} failed to plan: {e}"))
        .plan()
        .clone();
    session
        .prepare(&plan)
        .unwrap_or_else(|e| panic!("{name} failed to prepare: {e}"))
        .stages
}

impl Baseline {
    /// Plans the query again and runs it: every run is a job of its own, as when a session
    /// runs the query, and shares no plan node (nor anything keyed by one) with other runs.
    fn run(&self, settings: &[(&str, &str)]) -> Run {
        let graph = plan(self.session, self.name, &self.sql);
        let shape = |g: &StageGraph| -> Vec<(usize, usize, Vec<usize>)> {
            g.stages
                .iter()
                .map(|s| (s.id, s.partitions, s.parents.clone()))
                .collect()
        };
        assert_eq!(
            shape(&graph),
            shape(&self.graph),
            "{}: planning is not deterministic, fault coordinates would be wrong",
            self.name
        );
        jobs::run(&graph, self.session.functions(), settings)
    }

    /// Runs under `plan` (plus `settings`), asserts the fault-free answer and that every
    /// planned fault fired.
    fn run_faulty(&self, plan: &str, settings: &[(&str, &str)]) -> Run {
        let mut all = vec![("ember.fault.plan", plan)];
        all.extend_from_slice(settings);
        let run = self.run(&all);
        let what = format!("{} under '{plan}'", self.name);
        self.assert_same_answer(&run, &what);
        assert!(
            run.unfired.is_empty(),
            "{what}: faults never fired: {:?}\n{}",
            run.unfired,
            run.log_text()
        );
        run
    }

    /// The same rows as the fault-free run: in order when the query orders them, as a
    /// multiset otherwise (so a row counted twice or lost shows).
    fn assert_same_answer(&self, run: &Run, what: &str) {
        let mut actual = run.rows(what);
        let mut expected = self.rows.clone();
        if !self.ordered {
            actual.sort();
            expected.sort();
        }
        assert!(
            actual == expected,
            "{what}: answer differs from the fault-free run\n  actual ({} rows): {:?}\n  \
             expected ({} rows): {:?}\n{}",
            actual.len(),
            actual.iter().take(5).collect::<Vec<_>>(),
            expected.len(),
            expected.iter().take(5).collect::<Vec<_>>(),
            run.log_text()
        );
    }

    fn rows_of(&self, stage: usize, partition: usize) -> usize {
        self.task_rows
            .get(&(stage, partition))
            .copied()
            .unwrap_or(0)
    }

    fn stage_rows(&self, stage: &Stage) -> usize {
        (0..stage.partitions)
            .map(|p| self.rows_of(stage.id, p))
            .sum()
    }

    /// The stage with the most tasks (then the most output rows, then the earliest).
    fn largest(&self, filter: impl Fn(&Stage) -> bool) -> &Stage {
        self.graph
            .stages
            .iter()
            .filter(|s| filter(s))
            .max_by_key(|s| (s.partitions, self.stage_rows(s), std::cmp::Reverse(s.id)))
            .unwrap_or_else(|| panic!("{}: no suitable stage in\n{}", self.name, self.graph))
    }

    /// The partition of `stage` that produced the most rows (the earliest of equals).
    fn busiest_partition(&self, stage: &Stage) -> usize {
        (0..stage.partitions)
            .max_by_key(|&p| (self.rows_of(stage.id, p), std::cmp::Reverse(p)))
            .unwrap_or(0)
    }
}

/// A stage of several tasks that reads other stages' output: what an executor fault
/// strikes, so that the lost executor holds map outputs still needed.
fn reads_in_parallel(stage: &Stage) -> bool {
    stage.partitions >= 2 && !stage.parents.is_empty()
}

fn is_map(stage: &Stage) -> bool {
    matches!(stage.output, StageOutput::Shuffle(_))
}

// ---------------------------------------------------------------------------------------
// The matrix: one function per fault kind, instantiated for every query below.

/// The fault-free run matches DuckDB's answer (checked when the baseline is made).
fn fault_free(name: &'static str) {
    baseline(name);
}

/// Attempt 0 of one task fails: it is retried until it succeeds, and a task failure is not
/// lost output, so nothing is recomputed.
fn fail_task(name: &'static str) {
    let base = baseline(name);
    let stage = base.largest(|_| true);
    let (s, p) = (stage.id, base.busiest_partition(stage));
    let run = base.run_faulty(&format!("fail-task stage={s} partition={p} attempt=0"), &[]);
    let ends = run.task_ends();
    let of_task: Vec<(usize, TaskEndReason)> = ends
        .iter()
        .filter(|t| (t.stage, t.partition) == (s, p))
        .map(|t| (t.attempt, t.reason))
        .collect();
    assert_eq!(
        of_task.first(),
        Some(&(0, TaskEndReason::ExceptionFailure)),
        "{name}: task {s}.{p}\n{}",
        run.log_text()
    );
    assert!(
        of_task
            .iter()
            .any(|&(a, r)| a > 0 && r == TaskEndReason::Success),
        "{name}: task {s}.{p} was not retried to success: {of_task:?}"
    );
    let failures = ends
        .iter()
        .filter(|t| t.reason != TaskEndReason::Success)
        .count();
    assert_eq!(
        failures,
        1,
        "{name}: one injected failure, one failed attempt\n{}",
        run.log_text()
    );
    assert!(
        run.recomputed().is_empty(),
        "{name}: a task failure recomputed partitions: {:?}",
        run.recomputed()
    );
}

/// A map output is deleted after it was registered: a reducer's fetch fails naming it, and
/// exactly that map partition is recomputed.
fn lose_shuffle(name: &'static str) {
    let base = baseline(name);
    let stage = base.largest(is_map);
    let (s, p) = (stage.id, base.busiest_partition(stage));
    assert!(
        base.rows_of(s, p) > 0,
        "{name}: map partition {s}.{p} is empty, losing it tests nothing"
    );
    let run = base.run_faulty(&format!("lose-shuffle stage={s} partition={p}"), &[]);
    let ends = run.task_ends();
    assert!(
        ends.iter()
            .any(|t| t.reason == TaskEndReason::FetchFailed && t.map_output == Some((s, p))),
        "{name}: no FetchFailed naming map output {s}.{p}\n{}\n{}",
        run.log_text(),
        base.graph
    );
    for r in run.recomputed() {
        assert_eq!(
            r.cause,
            RecomputeCause::FetchFailed,
            "{name}: {r:?}\n{}",
            run.log_text()
        );
    }
    assert_eq!(
        run.recomputed_once(),
        BTreeMap::from([(s, BTreeSet::from([p]))]),
        "{name}: exactly the lost map partition is recomputed\n{}",
        run.log_text()
    );
    assert!(
        ends.iter()
            .all(|t| !matches!(t.reason, TaskEndReason::ExceptionFailure)),
        "{name}: a fetch failure is not a task failure\n{}",
        run.log_text()
    );
}

/// The stage an executor fault strikes: the largest that reads in parallel, or for a plan
/// without one (Q6: parallel scans feeding one final task) the largest of several tasks,
/// whose own finished map outputs the executor then holds.
fn executor_fault_stage(base: &Baseline) -> &Stage {
    if base.graph.stages.iter().any(reads_in_parallel) {
        base.largest(reads_in_parallel)
    } else {
        base.largest(|s| s.partitions >= 2)
    }
}

/// After `executor` was lost: each map stage recomputes exactly the partitions the
/// executor had produced, or nothing if it was no longer needed (see `jobs::Loss`), each
/// once, with cause ExecutorLost; nothing runs on the executor afterwards.
fn assert_recomputes_exactly_its_outputs(base: &Baseline, run: &Run, executor: usize) {
    let name = base.name;
    let loss = run.loss_of(&base.graph, executor);
    let actual = run.recomputed_once();
    let log = || run.log_text();
    for (stage, partitions) in &actual {
        assert_eq!(
            loss.held.get(stage),
            Some(partitions),
            "{name}: stage {stage} recomputed {partitions:?}, but executor {executor} had \
             produced {:?} of it\n{}",
            loss.held.get(stage),
            log()
        );
    }
    for stage in &loss.required {
        assert!(
            actual.contains_key(stage),
            "{name}: stage {stage} was still needed but its partitions {:?} on executor \
             {executor} were not recomputed\n{}",
            loss.held[stage],
            log()
        );
    }
    for r in run.recomputed() {
        assert_eq!(
            (r.cause, r.executor),
            (RecomputeCause::ExecutorLost, Some(executor)),
            "{name}: {r:?}"
        );
    }
    let removed_at = run
        .events
        .iter()
        .position(
            |e| matches!(e.kind, EventKind::ExecutorRemoved { executor: x, .. } if x == executor),
        )
        .unwrap_or_else(|| panic!("{name}: executor {executor} was never removed"));
    assert!(
        run.events[removed_at..].iter().all(|e| !matches!(
            e.kind,
            EventKind::TaskStart { executor: x, .. } if x == executor
        )),
        "{name}: a task started on executor {executor} after it was removed\n{}",
        log()
    );
}

/// An executor dies when a multi-task stage is half done. Which executor had produced the
/// map outputs read by then depends on scheduling; a kill of an executor that held none
/// tests nothing, so the kill is repeated on the executors in turn until one held some.
fn kill_executor(name: &'static str) {
    kill_executor_in(baseline(name));
}

fn kill_executor_in(base: &Baseline) {
    const TRIES: usize = 4;
    let name = base.name;
    let s = executor_fault_stage(base).id;
    for executor in (0..2).cycle().take(TRIES) {
        let run = base.run_faulty(
            &format!("kill-executor executor={executor} stage={s} at=50%"),
            &[],
        );
        assert_eq!(
            run.removed(),
            vec![(executor, "killed (fault injection)".to_string())],
            "{name}: exactly executor {executor} is removed"
        );
        assert_recomputes_exactly_its_outputs(base, &run, executor);
        if !run.loss_of(&base.graph, executor).required.is_empty() {
            return;
        }
    }
    panic!(
        "{name}: in {TRIES} runs the killed executor never held map output still needed when \
         stage {s} was half done"
    );
}

/// The first attempt of one task is held back 5 s; with speculation on, a copy runs
/// elsewhere and wins, the straggler is killed, and the job does not wait for it.
fn speculation(name: &'static str) {
    let base = baseline(name);
    let stage = base.largest(|s| s.partitions >= 2);
    let (s, p) = (stage.id, stage.partitions - 1);
    let run = base.run_faulty(
        &format!("delay-task stage={s} partition={p} ms=5000"),
        &[
            ("ember.speculation", "true"),
            ("ember.speculation.interval", "10ms"),
            ("ember.speculation.minTaskRuntime", "50ms"),
        ],
    );
    let of_task: Vec<(usize, bool, TaskEndReason)> = run
        .task_ends()
        .into_iter()
        .filter(|t| (t.stage, t.partition) == (s, p))
        .map(|t| (t.executor, t.speculative, t.reason))
        .collect();
    let straggler: Vec<_> = of_task.iter().filter(|t| !t.1).collect();
    let copies: Vec<_> = of_task.iter().filter(|t| t.1).collect();
    assert!(
        matches!(straggler[..], [(_, _, TaskEndReason::TaskKilled)]),
        "{name}: the delayed attempt of {s}.{p} must be killed: {of_task:?}\n{}",
        run.log_text()
    );
    assert!(
        matches!(copies[..], [(_, _, TaskEndReason::Success)]),
        "{name}: one speculative copy of {s}.{p} must win: {of_task:?}"
    );
    assert_ne!(
        straggler[0].0, copies[0].0,
        "{name}: the copy runs on another executor"
    );
    assert!(
        run.duration_ms() < 4000,
        "{name}: the job waited for the straggler ({} ms)",
        run.duration_ms()
    );
}

macro_rules! fault_matrix {
    ($($q:ident),* $(,)?) => {
        $(
            mod $q {
                #[test]
                fn fault_free_answer_is_the_reference() {
                    super::fault_free(stringify!($q));
                }

                #[test]
                fn fail_task_is_retried() {
                    super::fail_task(stringify!($q));
                }

                #[test]
                fn lost_shuffle_output_is_recomputed() {
                    super::lose_shuffle(stringify!($q));
                }

                #[test]
                fn killed_executor_costs_exactly_its_outputs() {
                    super::kill_executor(stringify!($q));
                }

                #[test]
                fn speculative_copy_beats_a_straggler() {
                    super::speculation(stringify!($q));
                }
            }
        )*
    };
}

fault_matrix!(
    q01, q02, q03, q04, q05, q06, q07, q08, q09, q10, q11, q12, q13, q14, q15, q16, q17, q18, q19,
    q20, q21, q22
);

/// Q13 as Ember plans it at scale: its left join against a much larger side runs as a
/// right join partitioned on the customer key, building on the preserved side (at SF 0.01 a
/// small broadcast threshold makes the sizes count). A killed executor costs exactly the
/// outputs it held, and the answer is the reference.
#[test]
fn q13_as_a_right_join_recovers_a_killed_executor_exactly() {
    static SESSION: OnceLock<Session> = OnceLock::new();
    let session = SESSION.get_or_init(|| {
        let session = tpch::with_tables(tpch::new_session());
        session
            .set_config("ember.sql.autoBroadcastJoinThreshold", "16KB")
            .expect("a broadcast threshold");
        session
    });
    let base = baseline_in("q13", session);
    let join_stage = base
        .graph
        .stages
        .iter()
        .find(|s| {
            s.plan
                .display_indent()
                .contains("HashJoinExec(Partitioned, Right)")
        })
        .unwrap_or_else(|| panic!("q13 is not planned as a right join:\n{}", base.graph));
    assert!(reads_in_parallel(join_stage), "{}", base.graph);
    kill_executor_in(&base);
}

// ---------------------------------------------------------------------------------------
// hang-executor: detection takes the heartbeat timeout (1 s by default), so a few queries.

fn hang_executor(name: &'static str) {
    let base = baseline(name);
    let s = executor_fault_stage(base).id;
    let run = base.run_faulty(&format!("hang-executor executor=0 stage={s} at=50%"), &[]);
    let removed = run.removed();
    assert!(
        matches!(&removed[..], [(0, message)] if message.contains("heartbeat")),
        "{name}: the hung executor 0 is removed by heartbeat timeout: {removed:?}"
    );
    assert_recomputes_exactly_its_outputs(base, &run, 0);
}

mod hang {
    macro_rules! hang_tests {
        ($($q:ident),* $(,)?) => {
            $(
                #[test]
                fn $q() {
                    super::hang_executor(stringify!($q));
                }
            )*
        };
    }

    hang_tests!(q03, q09, q18, q21);
}

// ---------------------------------------------------------------------------------------
// Chaos: random faults of every kind, reproducible from the seed.

/// Queries each chaos seed runs; seeds rotate through the 22 so each gets chaos.
const CHAOS_QUERIES_PER_SEED: usize = 3;
/// Chance per task attempt of a random fault: high enough that every seed's runs see
/// faults, low enough that the jobs finish.
const CHAOS_RATE: &str = "0.3";

fn chaos_queries(seed: u64) -> Vec<&'static str> {
    let first = (seed as usize - 1) * CHAOS_QUERIES_PER_SEED;
    (first..first + CHAOS_QUERIES_PER_SEED)
        .map(|i| QUERIES[i % QUERIES.len()])
        .collect()
}

fn chaos(seed: u64) {
    let seed_text = seed.to_string();
    let settings = [
        ("ember.fault.chaos.seed", seed_text.as_str()),
        ("ember.fault.chaos.rate", CHAOS_RATE),
        // Chaos hangs executors too: detect them quickly.
        ("ember.executor.heartbeatInterval", "20ms"),
        ("ember.network.timeout", "200ms"),
    ];
    let mut evidence = 0;
    let mut injected = Vec::new();
    for name in chaos_queries(seed) {
        let base = baseline(name);
        let run = base.run(&settings);
        let what = format!("{name} under chaos seed {seed}");
        base.assert_same_answer(&run, &what);
        let ends = run.task_ends();
        let removed: Vec<usize> = run.removed().into_iter().map(|r| r.0).collect();
        for injected in &run.injected {
            match injected.fault {
                Fault::FailTask {
                    stage,
                    partition,
                    attempt,
                } => assert!(
                    ends.iter().any(|t| (t.stage, t.partition, t.attempt)
                        == (stage, partition, attempt)
                        && t.reason != TaskEndReason::Success
                        && t.message.as_deref().is_some_and(|m| m.contains("injected"))),
                    "{what}: injected {} is not in the log\n{}",
                    injected.fault,
                    run.log_text()
                ),
                // A hang may strike after the last task a job needed from that executor;
                // the job then ends before the heartbeat timeout could notice.
                Fault::KillExecutor { executor, .. } => assert!(
                    removed.contains(&executor),
                    "{what}: injected {} but executor {executor} was not removed",
                    injected.fault
                ),
                _ => {}
            }
        }
        evidence += run.fault_evidence();
        injected.extend(run.injected.iter().map(|f| format!("{name}: {}", f.fault)));
    }
    assert!(
        evidence > 0,
        "chaos seed {seed} at rate {CHAOS_RATE}: no fault shows in the logs of {:?} \
         (injected: {injected:?})",
        chaos_queries(seed)
    );
}

#[test]
fn chaos_seeds_cover_every_query() {
    let covered: BTreeSet<&str> = (1..=20).flat_map(chaos_queries).collect();
    assert_eq!(covered.len(), QUERIES.len());
}

mod chaos {
    macro_rules! chaos_tests {
        ($($name:ident = $seed:literal),* $(,)?) => {
            $(
                #[test]
                fn $name() {
                    super::chaos($seed);
                }
            )*
        };
    }

    chaos_tests!(
        seed_01 = 1,
        seed_02 = 2,
        seed_03 = 3,
        seed_04 = 4,
        seed_05 = 5,
        seed_06 = 6,
        seed_07 = 7,
        seed_08 = 8,
        seed_09 = 9,
        seed_10 = 10,
        seed_11 = 11,
        seed_12 = 12,
        seed_13 = 13,
        seed_14 = 14,
        seed_15 = 15,
        seed_16 = 16,
        seed_17 = 17,
        seed_18 = 18,
        seed_19 = 19,
        seed_20 = 20,
    );
}

// ---------------------------------------------------------------------------------------
// Beyond maxFailures.

/// Every attempt allowed fails: the job fails with an error naming the limit and every
/// attempt, the log shows the four failures and no fifth attempt.
#[test]
fn beyond_max_failures_the_job_fails_listing_every_attempt() {
    let base = baseline("q03");
    let s = base.largest(|_| true).id;
    let plan: Vec<String> = (0..4)
        .map(|a| format!("fail-task stage={s} partition=0 attempt={a}"))
        .collect();
    let plan = plan.join("; ");
    let run = base.run(&[
        ("ember.fault.plan", plan.as_str()),
        ("ember.task.maxFailures", "4"),
    ]);
    let err = match &run.result {
        Ok(_) => panic!("q03 succeeded although task {s}.0 failed 4 times"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains(&format!(
            "task {s}.0 failed 4 times (ember.task.maxFailures = 4)"
        )),
        "{err}"
    );
    for a in 0..4 {
        assert!(err.contains(&format!("attempt {a} on executor")), "{err}");
    }
    let attempts: Vec<(usize, TaskEndReason)> = run
        .task_ends()
        .into_iter()
        .filter(|t| (t.stage, t.partition) == (s, 0))
        .map(|t| (t.attempt, t.reason))
        .collect();
    assert_eq!(
        attempts,
        (0..4)
            .map(|a| (a, TaskEndReason::ExceptionFailure))
            .collect::<Vec<_>>()
    );
    assert!(
        run.events.iter().any(|e| matches!(
            e.kind,
            EventKind::JobEnd {
                result: JobResult::Failed,
                ..
            }
        )),
        "{}",
        run.log_text()
    );
}

/// A session over the shared TPC-H tables with its own settings (COPY runs on the
/// session's cluster, so its fault plan is set with `SET`).
fn copy_session() -> Session {
    tpch::with_tables(
        Session::builder()
            .config("ember.executor.instances", "2")
            .config("ember.executor.cores", "2")
            .config("ember.sql.shuffle.partitions", "4")
            .build()
            .expect("valid settings"),
    )
}

fn result_stage(session: &Session, sql: &str) -> usize {
    let plan = session.sql(sql).expect("plans").plan().clone();
    session
        .prepare(&plan)
        .expect("prepares")
        .stages
        .result_stage()
        .id
}

/// Every file under `dir`, recursively, relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(rel) = path.strip_prefix(dir) {
                found.push(rel.display().to_string());
            }
        }
    }
    found.sort();
    found
}

#[test]
fn copy_beyond_max_failures_commits_nothing() {
    let session = copy_session();
    let sql = tpch::sql("q03");
    let s = result_stage(&session, &sql);
    let plan: Vec<String> = (0..4)
        .map(|a| format!("fail-task stage={s} partition=0 attempt={a}"))
        .collect();
    session
        .execute_sql(&format!(
            "SET ember.task.maxFailures = 4; SET ember.fault.plan = '{}'",
            plan.join("; ")
        ))
        .expect("SET");
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("q03");
    let query = sql.trim().trim_end_matches(';');
    let err = session
        .execute_sql(&format!(
            "COPY ({query}) TO '{}' STORED AS PARQUET",
            out.display()
        ))
        .expect_err("the COPY must fail")
        .to_string();
    assert!(err.contains("ember.task.maxFailures = 4"), "{err}");
    assert!(err.contains("nothing was committed"), "{err}");
    let left = files_under(&out);
    assert!(
        !left
            .iter()
            .any(|f| f.ends_with("_SUCCESS") || f.ends_with(".parquet")),
        "the failed COPY left {left:?}"
    );
    assert!(!out.exists(), "the folder the COPY created is removed");
}

/// A COPY whose tasks fail, whose shuffle output is lost and whose executor dies mid-write
/// still commits every row exactly once.
#[test]
fn copy_under_faults_writes_every_row_exactly_once() {
    let session = copy_session();
    let query = "SELECT l_orderkey, count(*) AS n, sum(l_quantity) AS qty FROM lineitem \
                 GROUP BY l_orderkey";
    let clean = session
        .sql(query)
        .and_then(|df| df.collect())
        .expect("runs");
    let mut expected = cell_strings(&clean).expect("cells");
    expected.sort();
    let plan = session.sql(query).expect("plans").plan().clone();
    let graph = session.prepare(&plan).expect("prepares").stages;
    let result = graph.result_stage();
    assert!(result.partitions >= 2, "{graph}");
    let map = graph
        .stages
        .iter()
        .find(|s| is_map(s))
        .expect("a shuffle stage")
        .id;
    let s = result.id;
    session
        .execute_sql(&format!(
            "SET ember.fault.plan = 'fail-task stage={s} partition=1 attempt=0; \
             lose-shuffle stage={map} partition=0; kill-executor executor=0 stage={s} at=50%'"
        ))
        .expect("SET");
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("by_order");
    session
        .execute_sql(&format!(
            "COPY ({query}) TO '{}' STORED AS PARQUET",
            out.display()
        ))
        .expect("the COPY recovers");
    let mut names = files_under(&out);
    names.retain(|f| f.ends_with(".parquet") || f.ends_with("_SUCCESS"));
    let mut layout: Vec<String> = (0..result.partitions)
        .map(|p| format!("part-{p:05}.parquet"))
        .collect();
    layout.push("_SUCCESS".to_string());
    layout.sort();
    assert_eq!(names, layout, "one file per partition, then _SUCCESS");
    let back = Session::new()
        .read_parquet(out.to_str().expect("utf-8 path"))
        .and_then(|df| df.collect())
        .expect("the committed folder reads back");
    let mut rows = cell_strings(&back).expect("cells");
    rows.sort();
    assert_eq!(rows.len(), expected.len(), "each row exactly once");
    assert!(
        rows == expected,
        "the committed rows differ from the clean answer"
    );
}
