//! Executor memory: one [`MemoryPool`] per executor, shared by the tasks running on it, and
//! [`MemoryReservation`]s through which operators that buffer rows claim part of it. Sort
//! and hash aggregate reserve and spill; hash joins reserve their build side and switch to
//! a grace hash join (both inputs partitioned to disk) when it does not fit.
//!
//! Why a pool at all: an operator that holds its whole input (a sort, a hash aggregate with
//! many groups) grows without bound at large scale factors, and the first sign of trouble
//! would otherwise be the kernel's OOM killer taking the whole process. With a budget, an
//! operator learns it is over before that happens and can spill to disk instead (sort,
//! aggregate) or fail with an error that says which setting to raise.
//!
//! The pool is *fair* rather than first-come-first-served: a reservation may hold at most
//! `budget / live reservations`, so one task's huge sort cannot starve the other tasks of the
//! executor into spilling every batch. Spilling operators therefore spill a bit earlier when
//! the executor is busy, and use the whole budget when they run alone.
//!
//! ```text
//!   executor ── MemoryPool (ember.executor.memory) ──┬── reservation "Sort" (task 3.0)
//!                                                    ├── reservation "HashAggregate" (task 3.1)
//!                                                    └── ...    freed when dropped
//! ```

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use ember_planner::{EmberError, Result};

/// The configuration key holding the per-executor budget (`2g`, `512m`, `1048576`).
pub const EXECUTOR_MEMORY_KEY: &str = "ember.executor.memory";

/// Share of the machine's memory that the executors of one process divide among them by
/// default. The rest is left to what the pools do not track: input and shuffle batches in
/// flight, the allocator's slack, and the OS page cache that spill and shuffle files live
/// in.
pub const DEFAULT_MEMORY_FRACTION: f64 = 0.5;

/// The smallest default budget (a machine whose memory cannot be read, tiny containers).
const MIN_DEFAULT_BUDGET: usize = 256 << 20;

/// Assumed machine memory when neither `/proc/meminfo` nor a cgroup limit can be read.
const FALLBACK_MACHINE_MEMORY: usize = 4 << 30;

/// The default `ember.executor.memory`: [`DEFAULT_MEMORY_FRACTION`] of the machine's (or
/// the container's) memory, divided among `executors`, at least 256 MiB. On a 24 GiB machine
/// with the default two executors, each gets 6 GiB.
pub fn default_executor_memory(executors: usize) -> usize {
    let machine = machine_memory().unwrap_or(FALLBACK_MACHINE_MEMORY);
    let share = (machine as f64 * DEFAULT_MEMORY_FRACTION) as usize / executors.max(1);
    share.max(MIN_DEFAULT_BUDGET)
}

/// Physical memory, lowered to the cgroup (v2 or v1) limit when one is set.
fn machine_memory() -> Option<usize> {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| parse_meminfo_total(&text));
    let cgroup = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .filter_map(|p| std::fs::read_to_string(p).ok())
    .find_map(|v| v.trim().parse::<usize>().ok());
    match (total, cgroup) {
        (Some(t), Some(c)) => Some(t.min(c)),
        (t, c) => t.or(c),
    }
}

/// `MemTotal:  24576000 kB` → bytes.
fn parse_meminfo_total(text: &str) -> Option<usize> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Parses a Spark-style memory size: a whole number of bytes, or a number with a unit
/// `k`, `m`, `g`, `t` (optionally followed by `b`, any case): `2g`, `512m`, `1048576`, `64kb`.
/// Decimal numbers are allowed with a unit (`1.5g`). Zero and negative sizes are rejected:
/// an executor without memory could not run any buffering operator.
pub fn parse_memory_size(key: &str, value: &str) -> Result<usize> {
    let invalid = || {
        EmberError::Config(format!(
            "invalid value '{value}' for {key}: expected a positive memory size such as 2g, \
             512m or 1048576 (bytes)"
        ))
    };
    let v = value.trim().to_ascii_lowercase();
    let number_end = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (number, unit) = v.split_at(number_end);
    let multiplier: u64 = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        "t" | "tb" => 1 << 40,
        _ => return Err(invalid()),
    };
    let bytes = if number.contains('.') {
        let n: f64 = number.parse().map_err(|_| invalid())?;
        let b = n * multiplier as f64;
        if !b.is_finite() || b >= usize::MAX as f64 {
            return Err(invalid());
        }
        b as usize
    } else {
        let n: u64 = number.parse().map_err(|_| invalid())?;
        let b = n.checked_mul(multiplier).ok_or_else(invalid)?;
        usize::try_from(b).map_err(|_| invalid())?
    };
    if bytes == 0 {
        return Err(invalid());
    }
    Ok(bytes)
}

/// `1536` → `1.5 KiB`, for error messages.
pub fn human_bytes(bytes: usize) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// What was spilled on one executor (or by one task), for metrics and tests.
#[derive(Debug, Default)]
pub struct SpillCounters {
    /// Spill files written (sorted runs, aggregate state runs).
    files: AtomicUsize,
    /// Bytes written to spill files.
    bytes: AtomicU64,
    /// Rows written to spill files.
    rows: AtomicU64,
}

impl SpillCounters {
    pub fn record(&self, bytes: u64, rows: usize) {
        self.files.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.rows.fetch_add(rows as u64, Ordering::Relaxed);
    }

    pub fn files(&self) -> usize {
        self.files.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
struct PoolState {
    used: usize,
    /// Live reservations (each may hold at most `budget / consumers`).
    consumers: usize,
    peak: usize,
}

/// The memory budget of one executor, shared by its running tasks.
#[derive(Debug)]
pub struct MemoryPool {
    executor: usize,
    budget: usize,
    state: Mutex<PoolState>,
    spills: SpillCounters,
    /// The part of `spills` written by operators that name themselves (the hash join), so
    /// tests and metrics can tell which operator spilled.
    operator_spills: Mutex<Vec<(&'static str, Arc<SpillCounters>)>>,
}

impl MemoryPool {
    /// A pool of `budget` bytes for executor `executor` (named in error messages).
    pub fn new(executor: usize, budget: usize) -> Arc<Self> {
        Arc::new(MemoryPool {
            executor,
            budget,
            state: Mutex::new(PoolState::default()),
            spills: SpillCounters::default(),
            operator_spills: Mutex::new(Vec::new()),
        })
    }

    /// A pool that never refuses (standalone task contexts, tools).
    pub fn unbounded(executor: usize) -> Arc<Self> {
        Self::new(executor, usize::MAX)
    }

    pub fn executor(&self) -> usize {
        self.executor
    }

    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Bytes currently reserved.
    pub fn used(&self) -> usize {
        self.state.lock().used
    }

    /// The most bytes ever reserved at once.
    pub fn peak(&self) -> usize {
        self.state.lock().peak
    }

    /// Everything spilled by the tasks of this executor.
    pub fn spills(&self) -> &SpillCounters {
        &self.spills
    }

    /// What `operator` (e.g. `"HashJoin"`) spilled on this executor; zero counters if it
    /// never did.
    pub fn operator_spills(&self, operator: &str) -> Arc<SpillCounters> {
        self.operator_spills
            .lock()
            .iter()
            .find(|(name, _)| *name == operator)
            .map(|(_, c)| Arc::clone(c))
            .unwrap_or_default()
    }

    fn operator_counters(&self, operator: &'static str) -> Arc<SpillCounters> {
        let mut all = self.operator_spills.lock();
        if let Some((_, c)) = all.iter().find(|(name, _)| *name == operator) {
            return Arc::clone(c);
        }
        let counters = Arc::new(SpillCounters::default());
        all.push((operator, Arc::clone(&counters)));
        counters
    }

    /// A new, empty reservation for `consumer` (an operator name, used in errors). The pool
    /// counts it as a consumer until it is dropped.
    pub fn reservation(self: &Arc<Self>, consumer: impl Into<String>) -> MemoryReservation {
        self.state.lock().consumers += 1;
        MemoryReservation {
            pool: Arc::clone(self),
            consumer: consumer.into(),
            size: 0,
        }
    }
}

/// A claim on part of a [`MemoryPool`]; released when dropped.
pub struct MemoryReservation {
    pool: Arc<MemoryPool>,
    consumer: String,
    size: usize,
}

impl fmt::Debug for MemoryReservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryReservation")
            .field("consumer", &self.consumer)
            .field("size", &self.size)
            .field("executor", &self.pool.executor)
            .finish()
    }
}

impl MemoryReservation {
    /// Bytes held.
    pub fn size(&self) -> usize {
        self.size
    }

    pub fn pool(&self) -> &Arc<MemoryPool> {
        &self.pool
    }

    /// Claims `additional` more bytes, or fails without claiming anything when the pool
    /// is full or this reservation would exceed its fair share. The error names the
    /// consumer, the executor, the sizes and the key to raise, so an operator that cannot
    /// spill can pass it on as is.
    pub fn try_grow(&mut self, additional: usize) -> Result<()> {
        let mut state = self.pool.state.lock();
        let wanted = self.size.saturating_add(additional);
        let fair_share = self.pool.budget / state.consumers.max(1);
        let fits_pool = state
            .used
            .checked_add(additional)
            .is_some_and(|u| u <= self.pool.budget);
        if !fits_pool || wanted > fair_share {
            let used = state.used;
            let consumers = state.consumers;
            drop(state);
            return Err(self.out_of_memory(wanted, used, consumers));
        }
        state.used += additional;
        state.peak = state.peak.max(state.used);
        self.size = wanted;
        Ok(())
    }

    /// Claims `additional` bytes even beyond the budget: for memory an operator cannot do
    /// without (the one batch it is working on), so the accounting stays true.
    pub fn grow(&mut self, additional: usize) {
        let mut state = self.pool.state.lock();
        state.used = state.used.saturating_add(additional);
        state.peak = state.peak.max(state.used);
        self.size = self.size.saturating_add(additional);
    }

    /// Releases `bytes` (at most what is held).
    pub fn shrink(&mut self, bytes: usize) {
        let bytes = bytes.min(self.size);
        let mut state = self.pool.state.lock();
        state.used = state.used.saturating_sub(bytes);
        self.size -= bytes;
    }

    /// Grows or shrinks to exactly `size` bytes; growing can fail like [`Self::try_grow`].
    pub fn try_resize(&mut self, size: usize) -> Result<()> {
        if size > self.size {
            self.try_grow(size - self.size)
        } else {
            self.shrink(self.size - size);
            Ok(())
        }
    }

    /// Grows or shrinks to exactly `size` bytes, beyond the budget if need be.
    pub fn resize(&mut self, size: usize) {
        if size > self.size {
            self.grow(size - self.size);
        } else {
            self.shrink(self.size - size);
        }
    }

    /// Releases everything held; returns how much that was.
    pub fn free(&mut self) -> usize {
        let held = self.size;
        self.shrink(held);
        held
    }

    fn out_of_memory(&self, needed: usize, used: usize, consumers: usize) -> EmberError {
        let budget = self.pool.budget;
        EmberError::Execution(format!(
            "out of memory for {} on executor {}: needed {}, budget {} ({} in use by {} \
             operators, fair share {}) — raise {EXECUTOR_MEMORY_KEY}",
            self.consumer,
            self.pool.executor,
            human_bytes(needed),
            human_bytes(budget),
            human_bytes(used),
            consumers,
            human_bytes(budget / consumers.max(1)),
        ))
    }
}

impl Drop for MemoryReservation {
    fn drop(&mut self) {
        let mut state = self.pool.state.lock();
        state.used = state.used.saturating_sub(self.size);
        state.consumers = state.consumers.saturating_sub(1);
    }
}

/// What a task sees of its executor's memory: the shared pool, where to spill, and its own
/// spill counters (the executor's pool keeps the totals).
#[derive(Debug, Clone)]
pub struct TaskMemory {
    pub pool: Arc<MemoryPool>,
    /// Directory for this task's spill files (created on first spill; dies with the
    /// executor's directory).
    pub spill_dir: PathBuf,
    pub spills: Arc<SpillCounters>,
}

impl TaskMemory {
    pub fn new(pool: Arc<MemoryPool>, spill_dir: PathBuf) -> Self {
        TaskMemory {
            pool,
            spill_dir,
            spills: Arc::default(),
        }
    }

    /// No budget, spills (never needed) under the system temp dir.
    pub fn unbounded() -> Self {
        Self::new(
            MemoryPool::unbounded(0),
            std::env::temp_dir().join("ember-spill"),
        )
    }

    /// A reservation for `consumer` in the executor's pool.
    pub fn reservation(&self, consumer: impl Into<String>) -> MemoryReservation {
        self.pool.reservation(consumer)
    }

    /// Counts one spill file of `bytes` and `rows`, for this task and for the executor.
    pub fn record_spill(&self, bytes: u64, rows: usize) {
        self.spills.record(bytes, rows);
        self.pool.spills.record(bytes, rows);
    }

    /// Counts a spill file already recorded by [`Self::record_spill`] under `operator` in
    /// the executor's pool as well.
    pub fn record_operator_spill(&self, operator: &'static str, bytes: u64, rows: usize) {
        self.pool.operator_counters(operator).record(bytes, rows);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_spark() {
        let p = |v| parse_memory_size(EXECUTOR_MEMORY_KEY, v);
        assert_eq!(p("2g").unwrap(), 2 << 30);
        assert_eq!(p("512M").unwrap(), 512 << 20);
        assert_eq!(p("64kb").unwrap(), 64 << 10);
        assert_eq!(p("1048576").unwrap(), 1 << 20);
        assert_eq!(p("1.5g").unwrap(), 3 << 29);
        for bad in ["", "0", "-1", "lots", "2x", "1.2.3g", "99999999999999t"] {
            let err = p(bad).unwrap_err().to_string();
            assert!(err.contains(EXECUTOR_MEMORY_KEY), "{bad}: {err}");
        }
    }

    #[test]
    fn default_budget_divides_the_machine() {
        let one = default_executor_memory(1);
        let four = default_executor_memory(4);
        assert!(one >= MIN_DEFAULT_BUDGET);
        assert!(four <= one);
        assert_eq!(
            parse_meminfo_total("MemFree: 1 kB\nMemTotal:  2048 kB\n"),
            Some(2 << 20)
        );
    }

    #[test]
    fn reservations_grow_within_the_budget_and_free_on_drop() {
        let pool = MemoryPool::new(7, 1000);
        let mut a = pool.reservation("Sort");
        a.try_grow(600).unwrap();
        assert_eq!(pool.used(), 600);
        let err = a.try_grow(500).unwrap_err().to_string();
        assert!(
            err.contains("out of memory for Sort on executor 7")
                && err.contains("raise ember.executor.memory"),
            "{err}"
        );
        assert_eq!(a.size(), 600, "a failed grow claims nothing");
        a.shrink(100);
        assert_eq!(pool.used(), 500);
        a.try_resize(900).unwrap();
        assert_eq!(pool.peak(), 900);
        drop(a);
        assert_eq!(pool.used(), 0);
    }

    #[test]
    fn each_reservation_gets_a_fair_share() {
        let pool = MemoryPool::new(0, 1000);
        let mut a = pool.reservation("a");
        let mut b = pool.reservation("b");
        a.try_grow(500).unwrap();
        assert!(a.try_grow(1).is_err(), "half of the pool each");
        b.try_grow(400).unwrap();
        drop(b);
        a.try_grow(500).unwrap();
        assert_eq!(pool.used(), 1000);
        // Forced growth is counted but never refused.
        a.grow(10);
        assert_eq!(pool.used(), 1010);
        assert_eq!(a.free(), 1010);
        assert_eq!(pool.used(), 0);
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
