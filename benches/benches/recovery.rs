//! Fault-tolerance costs (issue 3), on a local cluster of 4 executors × 1 core at SF 0.1
//! (`EMBER_TPCH_SF` overrides; the figures are at SF 1), with the default partition
//! count: twice the task slots, 8:
//!
//! - `recovery/q18`, `recovery/q9`: the query fault-free, and with one executor killed when
//!   the query's largest stage is 50 % done (`kill-executor executor=E stage=S at=50%`). The
//!   largest stage is the one with the most task time in a fault-free run of the same
//!   query, found at start-up. Spark local-cluster[4,1]: 1.70 (Q18), 1.43 (Q9); target ≤ 1.25.
//! - `hang_detection/default`: an executor hung (alive, silent) as Q18's largest stage starts
//!   (`at=0%`: the hung executor is then sure to hold one of its tasks, so the job cannot
//!   finish before the hang is noticed — the scheduler only checks heartbeats while a job
//!   runs); the measured time is from the hang to its `ExecutorRemoved` in the event log,
//!   with default heartbeat settings. Spark: 127 s default; target ≤ 2 s.
//!
//! Every faulty run must give the fault-free answer and must actually lose the executor;
//! the medians, the ratio and the detection time are printed at the end of each group.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use ember_benches::recovery::{
    event_log_file, hang_detection_time, largest_stage, live_executors, median, read_events,
};
use ember_benches::{scale_factor, tpch_query, tpch_session_with};
use ember_exec::events::{Event, EventKind, TaskEndReason};
use ember_exec::scheduler::JobMetrics;
use ember_frontend::execution::QueryResult;
use ember_frontend::format::cell_strings;
use ember_frontend::Session;

/// When in the largest stage the executor is killed.
const KILL_AT_PERCENT: u8 = 50;
/// When in the largest stage the executor hangs (see the module doc).
const HANG_AT_PERCENT: u8 = 0;
const SAMPLES: usize = 10;

/// One session on a 4 × 1 local cluster whose event log goes to a private folder.
struct Bench {
    session: Session,
    log_dir: PathBuf,
}

impl Bench {
    fn new(sf: f64) -> Self {
        let log_dir =
            std::env::temp_dir().join(format!("ember-recovery-bench-{}", std::process::id()));
        // A leftover folder from a crashed run with the same pid would hold a second log.
        let _ = std::fs::remove_dir_all(&log_dir);
        let dir = log_dir.to_string_lossy().into_owned();
        let session = tpch_session_with(
            sf,
            &[
                ("ember.executor.instances", "4"),
                ("ember.executor.cores", "1"),
                ("ember.eventLog.enabled", "true"),
                ("ember.eventLog.dir", &dir),
            ],
        )
        .expect("TPC-H session");
        Bench { session, log_dir }
    }

    /// Runs `sql` under `fault_plan` (none: fault-free) and times it from SQL text to the
    /// collected result. Also returns the executors this run lost: a job's metrics also
    /// list executors that were already dead when it started, which are filtered out here.
    fn run(&self, sql: &str, fault_plan: Option<&str>) -> Run {
        let live_before = live_executors(&self.events());
        self.session
            .set_config("ember.fault.plan", fault_plan.unwrap_or(""))
            .expect("fault plan");
        let start = Instant::now();
        let result = self
            .session
            .sql(sql)
            .and_then(|df| df.execute())
            .unwrap_or_else(|e| panic!("query failed under fault plan {fault_plan:?}: {e}"));
        let elapsed = start.elapsed();
        self.session
            .set_config("ember.fault.plan", "")
            .expect("clear fault plan");
        let lost = metrics(&result)
            .executors_lost
            .iter()
            .copied()
            .filter(|e| live_before.contains(e))
            .collect();
        Run {
            elapsed,
            result,
            lost,
        }
    }

    /// The application's events so far (none before the first query starts the cluster).
    fn events(&self) -> Vec<Event> {
        if !self.log_dir.exists() {
            return Vec::new();
        }
        event_log_file(&self.log_dir)
            .and_then(|path| read_events(&path))
            .expect("event log")
    }

    /// A live executor to fault: ids are never reused, so the one killed last time is gone.
    fn live_executor(&self) -> usize {
        live_executors(&self.events())
            .first()
            .copied()
            .expect("a live executor")
    }
}

/// One timed query run.
struct Run {
    elapsed: Duration,
    result: QueryResult,
    /// Executors that were alive when the run started and lost during it.
    lost: Vec<usize>,
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.log_dir);
    }
}

fn metrics(result: &QueryResult) -> &JobMetrics {
    result.metrics.as_ref().expect("a query runs as a job")
}

fn answer(result: &QueryResult) -> Vec<Vec<String>> {
    let batches: Vec<_> = result.partitions.iter().flatten().cloned().collect();
    cell_strings(&batches).expect("printable result")
}

/// The fault-free answer and where to strike: the largest stage and its partition count.
struct Target {
    answer: Vec<Vec<String>>,
    stage: usize,
    partitions: usize,
}

fn target(bench: &Bench, sql: &str, name: &str) -> Target {
    let Run {
        elapsed,
        result: reference,
        ..
    } = bench.run(sql, None);
    let m = metrics(&reference);
    let stage = largest_stage(m).expect("a stage");
    let partitions = m.stage(stage).map_or(0, |s| s.partitions);
    eprintln!(
        "{name}: fault-free reference run {elapsed:.2?}; largest stage {stage} \
         ({partitions} partitions)\n{m}"
    );
    Target {
        answer: answer(&reference),
        stage,
        partitions,
    }
}

/// The recovery story of job `job` as the event log tells it: executors removed and
/// added, stage attempts and recomputed partitions, with ms since the job started.
fn recovery_events(events: &[Event], job: usize) -> Vec<String> {
    let Some(start) = events
        .iter()
        .position(|e| matches!(&e.kind, EventKind::JobStart { job: j, .. } if *j == job))
    else {
        return Vec::new();
    };
    let t0 = events[start].timestamp;
    let mut lines = Vec::new();
    for event in &events[start..] {
        let at = event.timestamp.saturating_sub(t0);
        let line = match &event.kind {
            EventKind::JobEnd { job: j, .. } if *j == job => {
                lines.push(format!("{at:>6} ms JobEnd"));
                break;
            }
            EventKind::ExecutorRemoved { executor, message } => {
                format!("ExecutorRemoved {executor}: {message}")
            }
            EventKind::ExecutorAdded { executor, .. } => format!("ExecutorAdded {executor}"),
            EventKind::StageSubmitted {
                job: j,
                stage,
                stage_attempt,
                partitions,
            } if *j == job => {
                format!("StageSubmitted {stage}.{stage_attempt} partitions {partitions:?}")
            }
            EventKind::StageCompleted {
                job: j,
                stage,
                stage_attempt,
                succeeded,
                ..
            } if *j == job => {
                format!("StageCompleted {stage}.{stage_attempt} succeeded={succeeded}")
            }
            EventKind::PartitionsRecomputed {
                job: j,
                stage,
                partitions,
                cause,
                ..
            } if *j == job => {
                format!("PartitionsRecomputed stage {stage} {partitions:?} ({cause:?})")
            }
            EventKind::TaskEnd {
                job: j,
                stage,
                partition,
                executor,
                reason,
                duration_ms,
                ..
            } if *j == job && *reason != TaskEndReason::Success => format!(
                "TaskEnd {stage}.{partition} on {executor}: {reason:?} after {duration_ms} ms"
            ),
            _ => continue,
        };
        lines.push(format!("{at:>6} ms {line}"));
    }
    lines
}

fn configure(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    // Each run takes seconds: one run per sample, one warm-up run.
    group.sample_size(SAMPLES);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_millis(1));
    group.measurement_time(Duration::from_secs(1));
}

fn recovery(c: &mut Criterion) {
    let sf = scale_factor().expect("scale factor");
    let bench = Bench::new(sf);
    for (n, name) in [(18, "q18"), (9, "q9")] {
        let sql = tpch_query(n).expect("query text");
        let target = target(&bench, &sql, name);
        let mut fault_free = Vec::new();
        let mut killed = Vec::new();
        let mut paired = Vec::new();
        let mut group = c.benchmark_group(format!("recovery/{name}"));
        configure(&mut group);
        group.bench_function("fault_free", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let run = bench.run(&sql, None);
                    assert_eq!(answer(&run.result), target.answer, "{name} answer changed");
                    if !run.lost.is_empty() {
                        eprintln!(
                            "{name}: fault-free run lost executors {:?} (heartbeats starved?)",
                            run.lost
                        );
                    }
                    fault_free.push(run.elapsed);
                    total += run.elapsed;
                }
                total
            })
        });
        group.bench_function(format!("kill_executor_{KILL_AT_PERCENT}pct"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    // An untimed fault-free run right before, for a ratio that background
                    // load drifting between the two benchmarks does not skew.
                    let reference = bench.run(&sql, None);
                    let executor = bench.live_executor();
                    let plan = format!(
                        "kill-executor executor={executor} stage={} at={KILL_AT_PERCENT}%",
                        target.stage
                    );
                    let run = bench.run(&sql, Some(&plan));
                    assert_eq!(
                        answer(&run.result),
                        target.answer,
                        "{name} answer changed under '{plan}'"
                    );
                    let m = metrics(&run.result);
                    assert!(
                        run.lost.contains(&executor),
                        "'{plan}' did not lose executor {executor}:\n{m}"
                    );
                    if killed.is_empty() {
                        eprintln!("{name} under '{plan}': {:.2?}\n{m}", run.elapsed);
                        for line in recovery_events(&bench.events(), m.job) {
                            eprintln!("  {line}");
                        }
                    }
                    killed.push(run.elapsed);
                    paired.push(run.elapsed.as_secs_f64() / reference.elapsed.as_secs_f64());
                    total += run.elapsed;
                }
                total
            })
        });
        group.finish();
        if let (Some(free), Some(kill)) = (median(&fault_free), median(&killed)) {
            paired.sort_by(f64::total_cmp);
            eprintln!(
                "recovery/{name} at SF {sf}: fault-free median {free:.3?}, \
                 kill-executor at {KILL_AT_PERCENT}% of stage {} median {kill:.3?}, \
                 ratio {:.2}; median of {} paired ratios (kill run / fault-free run just \
                 before it) {:.2} (Spark local-cluster[4,1]: {}; target <= 1.25)",
                target.stage,
                kill.as_secs_f64() / free.as_secs_f64(),
                paired.len(),
                paired[paired.len() / 2],
                if n == 18 { "1.70" } else { "1.43" },
            );
        }
    }
}

fn hang_detection(c: &mut Criterion) {
    let sf = scale_factor().expect("scale factor");
    let bench = Bench::new(sf);
    let sql = tpch_query(18).expect("query text");
    let target = target(&bench, &sql, "q18");
    let mut detections = Vec::new();
    let mut group = c.benchmark_group("hang_detection");
    configure(&mut group);
    group.bench_function("default", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let executor = bench.live_executor();
                let plan = format!(
                    "hang-executor executor={executor} stage={} at={HANG_AT_PERCENT}%",
                    target.stage
                );
                let run = bench.run(&sql, Some(&plan));
                assert_eq!(
                    answer(&run.result),
                    target.answer,
                    "q18 answer changed under '{plan}'"
                );
                let job = metrics(&run.result).job;
                let detection = hang_detection_time(
                    &bench.events(),
                    job,
                    target.stage,
                    target.partitions,
                    HANG_AT_PERCENT,
                    executor,
                )
                .unwrap_or_else(|| {
                    panic!("'{plan}': no ExecutorRemoved for executor {executor} after the hang in job {job}")
                });
                if detections.is_empty() {
                    eprintln!(
                        "q18 under '{plan}': query {:.2?}, hang detected after {detection:.3?}",
                        run.elapsed
                    );
                }
                detections.push(detection);
                total += detection;
            }
            total
        })
    });
    group.finish();
    if let Some(detection) = median(&detections) {
        eprintln!(
            "hang_detection/default at SF {sf}: median {detection:.3?} from hang to \
             ExecutorRemoved over {} runs (Spark: 127 s default; target <= 2 s)",
            detections.len()
        );
    }
}

criterion_group!(benches, recovery, hang_detection);
criterion_main!(benches);
