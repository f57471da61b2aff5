//! Lineage costs (issue 3).
//!
//! - `checkpoint_overhead/{plain, checkpoint, local_checkpoint}`: a Q1-like aggregate over
//!   lineitem (`EMBER_TPCH_SF`, default 0.1; the figures are at SF 1) reading the
//!   filtered Q1 columns plainly, through a reliable checkpoint, or through a local
//!   checkpoint. The checkpoint sits on the aggregate's input — the filtered, projected
//!   lineitem rows — because that is what a user checkpoints: the expensive-to-rebuild data
//!   several analyses will read, not the small aggregate result. Each sample writes a fresh
//!   checkpoint (its own checkpoint folder; a new local-checkpoint id), so the figure is the
//!   eager write cost: encode, write, read back and verify before the commit (the
//!   checkpoint is teed into the aggregate's first stage: each batch is encoded on its way
//!   to the partial aggregate, nothing is read back but the bytes being verified). Spark:
//!   checkpoint 1.68×, localCheckpoint 1.23×; target ≤ 1.10×. Also printed: the
//!   checkpoint's folder (data files, `_manifest.json`, `_SUCCESS`) vs the folder the same
//!   rows make with `COPY … STORED AS PARQUET` (Spark 1.64×; target ≤ 1.0×), and the median
//!   ratio of checkpoint to plain over alternating pairs of runs: on a shared host the
//!   variants' criterion samples, taken minutes apart, drift apart by more than the effect.
//!   `EMBER_PROFILE_VARIANT=plain|checkpoint[:runs]` runs one variant alone and stops, for
//!   `perf record` / `perf stat` of the whole process; `paired[:rounds]` alternates the two
//!   and prints the median of the checkpoint's extra CPU time per run (for A/B comparisons
//!   of two builds).
//! - `long_lineage/plan_per_iteration/{100,1000}`: planning (optimize, physical plan, stage
//!   cutting) iteration n of the join + aggregate loop, divided by n: flat if every pass is
//!   linear in the lineage.
//! - `long_lineage/{run_1000, fail_at_10, fail_at_990}` (`EMBER_LINEAGE_ITERATIONS`
//!   overrides 1000; fault points scale with it): the loop run once, with a reliable
//!   checkpoint every `CHECKPOINT_EVERY` iterations (automatic checkpoints, on by
//!   default, add theirs at the lineage-depth cap); then an executor killed half-way
//!   through iteration 10's and iteration 990's last stage. These runs take a minute or
//!   more each, so they are timed directly (`RUN_SAMPLES` each, median) rather than
//!   through criterion's sampling, and the partitions and stages each killed run recomputed
//!   (from the event log) are printed: wall times on a shared 2-core machine are noisy,
//!   recomputed work is not. Printed per killed run: its time over the fault-free median,
//!   and (from the event log) the time from the executor's removal to the last recomputed
//!   partition's success, with the 990 / 10 ratio of that.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use ember_benches::lineage::{dir_bytes, is_answer, iterate, loop_session, stage_of_prefix};
use ember_benches::recovery::{event_log_file, median, read_events};
use ember_benches::{process_cpu_time, scale_factor, tpch_session_with};
use ember_exec::events::{EventKind, TaskEndReason};
use ember_frontend::prelude::*;
use ember_frontend::Session;

/// The Q1 input: its columns, its filter.
const Q1_INPUT: &str = "SELECT l_returnflag, l_linestatus, l_quantity, l_extendedprice, \
     l_discount, l_tax FROM lineitem WHERE l_shipdate <= DATE '1998-09-02'";
const CHECKPOINT_EVERY: usize = 10;
const RUN_SAMPLES: usize = 3;

/// Whether criterion's command-line filter (`cargo bench --bench lineage -- FILTER`) selects
/// `group`: the set-up of each group (TPC-H data, long runs) is skipped when it does not.
fn selected(group: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    filters.is_empty()
        || filters
            .iter()
            .any(|f| group.contains(f.as_str()) || f.contains(group))
}

fn q1_aggregate(input: &DataFrame) -> DataFrame {
    let price = col("l_extendedprice");
    let disc_price = price.clone().mul(lit(1i64).sub(col("l_discount")));
    input
        .group_by(vec![col("l_returnflag"), col("l_linestatus")])
        .agg(vec![
            sum(col("l_quantity")).alias("sum_qty"),
            sum(price).alias("sum_base_price"),
            sum(disc_price.clone()).alias("sum_disc_price"),
            sum(disc_price.mul(lit(1i64).add(col("l_tax")))).alias("sum_charge"),
            avg(col("l_discount")).alias("avg_disc"),
            count_star().alias("count_order"),
        ])
        .expect("Q1 aggregate")
}

fn checkpoint_overhead(c: &mut Criterion) {
    if !selected("checkpoint_overhead") {
        return;
    }
    let sf = scale_factor().expect("EMBER_TPCH_SF");
    let scratch = tempfile::tempdir().expect("scratch dir");
    let session = tpch_session_with(sf, &[]).expect("TPC-H session");
    let input = session.sql(Q1_INPUT).expect("Q1 input");
    let reference = q1_aggregate(&input).collect().expect("plain run");
    let rows: usize = reference.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 4, "Q1 has four groups");

    let mut group = c.benchmark_group("checkpoint_overhead");
    group.sample_size(10);
    // Per variant: median wall time, and CPU time per run (mean over every run).
    let mut times: Vec<(&str, Duration, Option<Duration>)> = Vec::new();
    let mut timed = |name: &'static str, run: &mut dyn FnMut() -> Measured| {
        let mut samples = Vec::new();
        let mut cpu = Some(Duration::ZERO);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let Measured { wall, cpu: used } = run();
                    cpu = cpu.zip(used).map(|(sum, used)| sum + used);
                    samples.push(wall);
                    total += wall;
                }
                total
            })
        });
        let runs = samples.len().max(1) as u32;
        times.push((
            name,
            median(&samples).unwrap_or_default(),
            cpu.map(|c| c / runs),
        ));
    };

    let mut run_plain = || {
        let (out, measured) = measure(|| q1_aggregate(&input).collect().expect("plain"));
        assert_eq!(out.iter().map(|b| b.num_rows()).sum::<usize>(), 4);
        measured
    };

    let mut sample = 0usize;
    let mut checkpoint_bytes = 0u64;
    let mut run_checkpoint = || {
        // A fresh folder per sample: a committed checkpoint of the same plan would be
        // reused, and the write is what is measured.
        sample += 1;
        let dir = scratch.path().join(format!("ckpt-{sample}"));
        session
            .set_config("ember.checkpoint.dir", &dir.to_string_lossy())
            .expect("checkpoint dir");
        let checkpointed = input.checkpoint();
        let (out, measured) =
            measure(|| q1_aggregate(&checkpointed).collect().expect("checkpoint"));
        assert_eq!(out.iter().map(|b| b.num_rows()).sum::<usize>(), 4);
        checkpoint_bytes = dir_bytes(&dir);
        assert!(
            checkpoint_bytes > 0,
            "no checkpoint written under {}",
            dir.display()
        );
        let _ = std::fs::remove_dir_all(&dir);
        measured
    };
    if let Some((variant, runs)) = profiled_variant() {
        // Profiling one variant alone (`perf record` / `perf stat` of the whole process).
        if variant == "paired" {
            // Both variants alternating in one process: the checkpoint's extra CPU per run,
            // steadier than two processes' figures on a shared host.
            let cpu: Vec<_> = alternate(runs, &mut run_plain, &mut run_checkpoint)
                .into_iter()
                .filter_map(|(plain, checkpoint)| plain.cpu.zip(checkpoint.cpu))
                .map(|(p, c)| (p.as_secs_f64(), c.as_secs_f64()))
                .collect();
            let mut extra: Vec<f64> = cpu.iter().map(|(p, c)| (c - p) * 1e3).collect();
            let mut ratios: Vec<f64> = cpu.iter().map(|(p, c)| c / p).collect();
            println!(
                "paired: {runs} rounds, checkpoint CPU − plain CPU median {:.1} ms, ratio {:.3}",
                median_of(&mut extra),
                median_of(&mut ratios)
            );
            return;
        }
        let run: &mut dyn FnMut() -> Measured = match variant.as_str() {
            "plain" => &mut run_plain,
            "checkpoint" => &mut run_checkpoint,
            other => panic!("EMBER_PROFILE_VARIANT={other}: expected plain, checkpoint or paired"),
        };
        let (wall, cpu): (Vec<_>, Vec<_>) = (0..runs)
            .map(|_| {
                let Measured { wall, cpu } = run();
                (wall, cpu)
            })
            .unzip();
        let cpu: Duration = cpu.into_iter().flatten().sum();
        println!(
            "{variant}: {runs} runs, median {:.1} ms, CPU {:.1} ms per run",
            median(&wall).unwrap_or_default().as_secs_f64() * 1e3,
            cpu.as_secs_f64() * 1e3 / runs as f64
        );
        return;
    }
    timed("plain", &mut run_plain);
    timed("checkpoint", &mut run_checkpoint);

    timed("local_checkpoint", &mut || {
        let kept = input.local_checkpoint();
        let (out, measured) = measure(|| q1_aggregate(&kept).collect().expect("local checkpoint"));
        assert_eq!(out.iter().map(|b| b.num_rows()).sum::<usize>(), 4);
        kept.unpersist();
        measured
    });
    group.finish();

    // Each variant's samples above are taken minutes apart, and this host's speed drifts by
    // more than the effect measured: the ratio of a checkpoint run to the plain run just
    // before it, in alternation, is the steadier figure.
    let pairs = alternate(PAIRED_ROUNDS, &mut run_plain, &mut run_checkpoint);
    let mut paired: (Vec<f64>, Vec<f64>) = (
        pairs
            .iter()
            .map(|(p, c)| c.wall.as_secs_f64() / p.wall.as_secs_f64())
            .collect(),
        pairs
            .iter()
            .filter_map(|(p, c)| p.cpu.zip(c.cpu))
            .map(|(p, c)| c.as_secs_f64() / p.as_secs_f64())
            .collect(),
    );

    // The same rows as plain Parquet, through the output commit protocol.
    let parquet_dir = scratch.path().join("plain-parquet");
    session
        .sql(&format!(
            "COPY ({Q1_INPUT}) TO '{}' STORED AS PARQUET",
            parquet_dir.display()
        ))
        .and_then(|df| df.collect())
        .expect("COPY to Parquet");
    let parquet_bytes = dir_bytes(&parquet_dir);

    let plain = times[0].1.as_secs_f64();
    let plain_cpu = times[0].2.map(|c| c.as_secs_f64());
    println!("checkpoint_overhead at SF {sf} (wall: median; CPU: mean per run, all threads):");
    for (name, t, cpu) in &times {
        let cpu = match (cpu, plain_cpu) {
            (Some(cpu), Some(plain)) => format!(
                "   CPU {:>7.1} ms  {:.2}×",
                cpu.as_secs_f64() * 1e3,
                cpu.as_secs_f64() / plain
            ),
            _ => String::new(),
        };
        println!(
            "  {name:<17} {:>9.1} ms  {:.2}×{cpu}",
            t.as_secs_f64() * 1e3,
            t.as_secs_f64() / plain
        );
    }
    println!(
        "  checkpoint / plain, median of {PAIRED_ROUNDS} alternating pairs: wall {:.2}×, CPU {:.2}×",
        median_of(&mut paired.0),
        median_of(&mut paired.1)
    );
    println!(
        "  checkpoint files {checkpoint_bytes} B vs COPY … STORED AS PARQUET {parquet_bytes} B: {:.2}×",
        checkpoint_bytes as f64 / parquet_bytes.max(1) as f64
    );
}

/// `EMBER_PROFILE_VARIANT=plain|checkpoint[:runs]`: run only that variant of
/// `checkpoint_overhead` (20 times by default) and stop, so a profiler sees it alone.
fn profiled_variant() -> Option<(String, usize)> {
    let value = std::env::var("EMBER_PROFILE_VARIANT").ok()?;
    let (variant, runs) = match value.split_once(':') {
        Some((variant, runs)) => (variant, runs.parse().expect("EMBER_PROFILE_VARIANT runs")),
        None => (value.as_str(), 20),
    };
    Some((variant.to_string(), runs))
}

/// Alternating plain / checkpoint runs for the paired ratio of `checkpoint_overhead`.
const PAIRED_ROUNDS: usize = 11;

/// One run's wall time and the CPU time the process used in it (every thread), over the
/// same span: the query alone, not the set-up before it or the clean-up after (such as
/// deleting a sample's checkpoint folder).
#[derive(Debug, Clone, Copy)]
struct Measured {
    wall: Duration,
    cpu: Option<Duration>,
}

/// Runs `plain` and then `checkpoint`, `rounds` times: each pair measured moments apart,
/// which on a drifting host compares better than two series taken minutes apart.
fn alternate(
    rounds: usize,
    plain: &mut dyn FnMut() -> Measured,
    checkpoint: &mut dyn FnMut() -> Measured,
) -> Vec<(Measured, Measured)> {
    (0..rounds).map(|_| (plain(), checkpoint())).collect()
}

/// Runs `work`, timing it by the wall clock and by the process's CPU clock.
fn measure<T>(work: impl FnOnce() -> T) -> (T, Measured) {
    let (start, before) = (Instant::now(), process_cpu_time());
    let out = work();
    let wall = start.elapsed();
    let cpu = process_cpu_time()
        .zip(before)
        .map(|(after, before)| after - before);
    (out, Measured { wall, cpu })
}

/// The median of `values` (NaN for none).
fn median_of(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn iterations() -> usize {
    std::env::var("EMBER_LINEAGE_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n >= 20)
        .unwrap_or(1000)
}

fn loop_settings() -> Vec<(&'static str, &'static str)> {
    vec![
        ("ember.executor.instances", "4"),
        ("ember.executor.cores", "1"),
        ("ember.sql.shuffle.partitions", "4"),
        ("ember.sql.autoBroadcastJoinThreshold", "0"),
    ]
}

fn plan_per_iteration(c: &mut Criterion) {
    if !selected("long_lineage/plan_per_iteration") {
        return;
    }
    let session = loop_session(4, &loop_settings()).expect("loop session");
    let mut group = c.benchmark_group("long_lineage/plan_per_iteration");
    group.sample_size(10);
    for n in [100usize, 1000] {
        let df = iterate(&session, n, None).expect("loop");
        let mut per_iteration = Vec::new();
        group.bench_function(n.to_string(), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    session.prepare(df.plan()).expect("plan");
                }
                let t = start.elapsed();
                per_iteration.push(t / (iters as u32 * n as u32));
                t
            })
        });
        println!(
            "  plan time per iteration at n={n}: {:.1} µs (median)",
            median(&per_iteration).unwrap_or_default().as_secs_f64() * 1e6
        );
    }
    group.finish();
}

/// What one run of the loop took: wall time, and from its event log the partitions
/// recomputed after a loss, the distinct stages they belong to, and the task time spent
/// recomputing them.
struct LoopRun {
    time: Duration,
    recomputed_partitions: usize,
    recomputed_stages: usize,
    /// From the executor's removal to the end of the last recomputed partition's successful
    /// attempt (event-log timestamps, ms): the recovery itself. The run's extra wall time
    /// over a fault-free run is the other measure, but at ~6 s per run this host's noise
    /// (±0.5 s) swamps it; and the loop's tasks are too short for their own durations (whole
    /// ms) to add up to anything.
    recompute_time: Duration,
}

/// Runs the loop (`n` iterations, checkpoints every `CHECKPOINT_EVERY`) in a fresh session
/// with its own checkpoint and event-log folders under `fault_plan`.
fn run_loop(n: usize, fault_plan: Option<&str>, scratch: &std::path::Path, tag: &str) -> LoopRun {
    let dir = scratch.join(tag);
    let checkpoints = dir.join("checkpoints").to_string_lossy().into_owned();
    let logs = dir.join("events");
    let logs_text = logs.to_string_lossy().into_owned();
    let mut settings = loop_settings();
    settings.push(("ember.checkpoint.dir", &checkpoints));
    settings.push(("ember.eventLog.enabled", "true"));
    settings.push(("ember.eventLog.dir", &logs_text));
    let session = loop_session(4, &settings).expect("loop session");
    let df = iterate(&session, n, Some(CHECKPOINT_EVERY)).expect("loop");
    if let Some(plan) = fault_plan {
        session
            .set_config("ember.fault.plan", plan)
            .expect("fault plan");
    }
    let start = Instant::now();
    let batches = df
        .collect()
        .unwrap_or_else(|e| panic!("loop failed under {fault_plan:?}: {e}"));
    let time = start.elapsed();
    assert!(is_answer(&batches, n), "wrong answer under {fault_plan:?}");
    drop(df);
    drop(session);
    let events = event_log_file(&logs)
        .and_then(|f| read_events(&f))
        .expect("event log");
    let mut stages = HashSet::new();
    let mut recomputed = HashSet::new();
    let mut recomputed_partitions = 0;
    let (mut removed_at, mut recovered_at) = (None, None);
    for e in &events {
        match &e.kind {
            EventKind::ExecutorRemoved { .. } => {
                removed_at.get_or_insert(e.timestamp);
            }
            EventKind::PartitionsRecomputed {
                stage, partitions, ..
            } => {
                stages.insert(*stage);
                recomputed_partitions += partitions.len();
                recomputed.extend(partitions.iter().map(|&p| (*stage, p)));
            }
            EventKind::TaskEnd {
                stage,
                partition,
                reason: TaskEndReason::Success,
                ..
            } if recomputed.contains(&(*stage, *partition)) => recovered_at = Some(e.timestamp),
            _ => {}
        }
    }
    let recompute_ms = match (removed_at, recovered_at) {
        (Some(removed), Some(recovered)) => recovered.saturating_sub(removed),
        _ => 0,
    };
    let _ = std::fs::remove_dir_all(&dir);
    LoopRun {
        time,
        recomputed_partitions,
        recomputed_stages: stages.len(),
        recompute_time: Duration::from_millis(recompute_ms),
    }
}

/// The fault plan killing executor 1 half-way through iteration `at`'s last stage of an
/// `n`-iteration loop.
fn kill_at_iteration(session: &Session, n: usize, at: usize) -> String {
    let whole = session
        .prepare(
            iterate(session, n, Some(CHECKPOINT_EVERY))
                .expect("loop")
                .plan(),
        )
        .expect("plan")
        .stages;
    let prefix = session
        .prepare(
            iterate(session, at, Some(CHECKPOINT_EVERY))
                .expect("loop")
                .plan(),
        )
        .expect("plan")
        .stages;
    let stage = stage_of_prefix(&prefix, &whole)
        .expect("fingerprints")
        .unwrap_or_else(|| panic!("iteration {at}'s stage not found"));
    format!("kill-executor executor=1 stage={stage} at=50%")
}

fn long_lineage_runs(_c: &mut Criterion) {
    if !selected("long_lineage/runs") {
        return;
    }
    let n = iterations();
    let scratch = tempfile::tempdir().expect("scratch dir");
    let planner = loop_session(4, &loop_settings()).expect("loop session");
    let (early, late) = (10usize, n - 10);
    let plans = [
        ("fail_at_10", kill_at_iteration(&planner, n, early)),
        (
            if n == 1000 {
                "fail_at_990"
            } else {
                "fail_late"
            },
            kill_at_iteration(&planner, n, late),
        ),
    ];
    let mut free = Vec::new();
    let mut faulty: Vec<Vec<LoopRun>> = vec![Vec::new(), Vec::new()];
    for s in 0..RUN_SAMPLES {
        free.push(run_loop(n, None, scratch.path(), &format!("free-{s}")).time);
        for (i, (name, plan)) in plans.iter().enumerate() {
            faulty[i].push(run_loop(
                n,
                Some(plan),
                scratch.path(),
                &format!("{name}-{s}"),
            ));
        }
    }
    let base = median(&free).unwrap_or_default();
    println!(
        "long_lineage ({n} iterations, checkpoint every {CHECKPOINT_EVERY}, medians of {RUN_SAMPLES}):"
    );
    println!("  run_{n:<12} {:>9.0} ms", base.as_secs_f64() * 1e3);
    let mut recovery = Vec::new();
    for (i, (name, plan)) in plans.iter().enumerate() {
        let times: Vec<Duration> = faulty[i].iter().map(|r| r.time).collect();
        let t = median(&times).unwrap_or_default();
        let extra = t.saturating_sub(base);
        let works: Vec<Duration> = faulty[i].iter().map(|r| r.recompute_time).collect();
        let work = median(&works).unwrap_or_default();
        recovery.push(work.as_secs_f64());
        let parts: Vec<String> = faulty[i]
            .iter()
            .map(|r| format!("{}p/{}s", r.recomputed_partitions, r.recomputed_stages))
            .collect();
        println!(
            "  {name:<16} {:>9.0} ms  over fault-free {:>6.0} ms  removal to recomputed {:>4.0} ms  \
             recomputed [{}]  ({plan})",
            t.as_secs_f64() * 1e3,
            extra.as_secs_f64() * 1e3,
            work.as_secs_f64() * 1e3,
            parts.join(", ")
        );
    }
    println!(
        "  removal to recomputed, late / early: {:.2}×",
        recovery[1] / recovery[0].max(1e-3)
    );
}

criterion_group!(
    benches,
    checkpoint_overhead,
    plan_per_iteration,
    long_lineage_runs
);
criterion_main!(benches);
