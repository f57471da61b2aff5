//! The 22 TPC-H queries over Parquet at SF 0.1 (`EMBER_TPCH_SF` overrides), end to end:
//! SQL text → plan → run on the local cluster → collected batches.
//!
//! `ft-overhead-sf*/{event_log_off, event_log_on}`: all 22 queries in one sample, with the
//! event log off (the default) and on (one JSON line per task, stage and job event, written
//! to a temp folder): what monitoring costs on the total. Shuffle blocks (checksummed IPC
//! files every exchange writes, which lineage recovery reads) cannot be switched off; their
//! share is read from a profile (see issue 4's notes).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use ember_benches::{scale_factor, tpch_query, tpch_session};

fn tpch(c: &mut Criterion) {
    let sf = scale_factor().expect("scale factor");
    let session = tpch_session(sf).expect("TPC-H data");
    let mut group = c.benchmark_group(format!("tpch-sf{sf}"));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    for n in 1..=22 {
        let sql = tpch_query(n).expect("query text");
        group.bench_function(format!("q{n:02}"), |b| {
            b.iter(|| {
                let batches = session
                    .sql(&sql)
                    .and_then(|df| df.collect())
                    .unwrap_or_else(|e| panic!("q{n:02} failed: {e}"));
                std::hint::black_box(batches)
            })
        });
    }
    group.finish();
}

fn fault_tolerance_overhead(c: &mut Criterion) {
    let sf = scale_factor().expect("scale factor");
    let session = tpch_session(sf).expect("TPC-H data");
    let queries: Vec<String> = (1..=22)
        .map(|n| tpch_query(n).expect("query text"))
        .collect();
    let events = tempfile::tempdir().expect("event log dir");
    let mut group = c.benchmark_group(format!("ft-overhead-sf{sf}"));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    for (name, enabled) in [("event_log_off", "false"), ("event_log_on", "true")] {
        session
            .set_config("ember.eventLog.dir", &events.path().to_string_lossy())
            .and_then(|()| session.set_config("ember.eventLog.enabled", enabled))
            .expect("event log settings");
        group.bench_function(name, |b| {
            b.iter(|| {
                for (n, sql) in queries.iter().enumerate() {
                    let batches = session
                        .sql(sql)
                        .and_then(|df| df.collect())
                        .unwrap_or_else(|e| panic!("q{:02} failed: {e}", n + 1));
                    std::hint::black_box(batches);
                }
            })
        });
    }
    group.finish();
    let logged = ember_benches::lineage::dir_bytes(events.path());
    assert!(logged > 0, "the event log was on but nothing was written");
}

criterion_group!(benches, tpch, fault_tolerance_overhead);
criterion_main!(benches);
