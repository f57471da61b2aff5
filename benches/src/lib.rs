//! Shared set-up for Ember's benchmarks: TPC-H data as Parquet, generated once per scale
//! factor into a cache folder under the target dir, and the 22 query texts; [`recovery`]
//! reads back what a fault-injected run did.

use std::path::{Path, PathBuf};

use ember_frontend::Session;
use ember_planner::{EmberError, Result};
use ember_storage::tpch::{write_tpch_parquet, TPCH_TABLES};

pub mod lineage;
pub mod recovery;

/// Benchmarks measure Ember as the `ember` binary runs it: on mimalloc, keeping freed memory
/// ([`ember_frontend::allocator`]). The system allocator hands large buffers back to the
/// kernel and faults them in afresh on the next query, which on small VMs costs more than
/// some operators do.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A session builder for benchmarks; every bench session starts here.
pub fn session_builder() -> ember_frontend::SessionBuilder {
    ember_frontend::allocator::keep_freed_memory();
    Session::builder()
}

/// Written after all eight tables, so an interrupted generation is redone, not reused.
const COMPLETE_MARKER: &str = "_COMPLETE";

/// CPU time this process has used so far (user + system, every thread, exited ones
/// included), to the nanosecond (`CLOCK_PROCESS_CPUTIME_ID`); `None` where the clock cannot
/// be read. On a shared 2-core machine wall times swing by tens of percent between runs; the
/// CPU a run burns varies far less, so benchmarks print it beside the wall time.
pub fn process_cpu_time() -> Option<std::time::Duration> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec for the call's duration.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) };
    let seconds = u64::try_from(now.tv_sec).ok()?;
    let nanos = u32::try_from(now.tv_nsec).ok()?;
    (status == 0).then(|| std::time::Duration::new(seconds, nanos))
}

/// The scale factor to benchmark at: `EMBER_TPCH_SF`, else 0.1.
pub fn scale_factor() -> Result<f64> {
    match std::env::var("EMBER_TPCH_SF") {
        Ok(v) => v
            .parse::<f64>()
            .ok()
            .filter(|sf| *sf > 0.0 && sf.is_finite())
            .ok_or_else(|| {
                EmberError::Config(format!(
                    "EMBER_TPCH_SF='{v}': expected a positive number such as 0.1"
                ))
            }),
        Err(_) => Ok(0.1),
    }
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The folder holding TPC-H Parquet files at `sf`, generating them on first use.
pub fn tpch_parquet_dir(sf: f64) -> Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let dir = target.join("ember-bench-data").join(format!("tpch-sf{sf}"));
    if !dir.join(COMPLETE_MARKER).exists() {
        write_tpch_parquet(sf, &dir)?;
        std::fs::write(dir.join(COMPLETE_MARKER), b"")
            .map_err(|e| EmberError::io(dir.display().to_string(), e))?;
    }
    Ok(dir)
}

/// A session with the eight TPC-H tables registered from Parquet at `sf`.
pub fn tpch_session(sf: f64) -> Result<Session> {
    let dir = tpch_parquet_dir(sf)?;
    let session = session_builder().build()?;
    for name in TPCH_TABLES {
        let path = dir.join(format!("{name}.parquet"));
        session.register_parquet(name, &path.to_string_lossy())?;
    }
    Ok(session)
}

/// A session with `settings` applied before anything runs (so the executors start with
/// the shape they ask for) and the eight TPC-H tables registered from Parquet at `sf`.
pub fn tpch_session_with(sf: f64, settings: &[(&str, &str)]) -> Result<Session> {
    let dir = tpch_parquet_dir(sf)?;
    let session = settings
        .iter()
        .fold(session_builder(), |b, (key, value)| b.config(key, value))
        .build()?;
    for name in TPCH_TABLES {
        let path = dir.join(format!("{name}.parquet"));
        session.register_parquet(name, &path.to_string_lossy())?;
    }
    Ok(session)
}

/// The text of TPC-H query `n` (1..=22) from the shared query folder.
pub fn tpch_query(n: usize) -> Result<String> {
    let path = workspace_root()
        .join("../shared/tpch/queries")
        .join(format!("q{n:02}.sql"));
    std::fs::read_to_string(&path).map_err(|e| EmberError::io(path.display().to_string(), e))
}
