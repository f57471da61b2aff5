//! The 22 TPC-H queries over Parquet at SF 0.1 (`EMBER_TPCH_SF` overrides), end to end:
//! SQL text → plan → run on the local cluster → collected batches.

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

criterion_group!(benches, tpch);
criterion_main!(benches);
