//! Heartbeats: how the driver tells a live executor from a silent one.
//!
//! Every local executor runs a thread that reports to the cluster's [`HeartbeatReceiver`]
//! every `ember.executor.heartbeatInterval`; the driver declares an executor lost when its
//! last heartbeat is older than `ember.network.timeout`. In-process executors get the same
//! treatment as remote ones so that a *hung* executor (alive but silent: a GC pause, a
//! wedged disk) is detected the way a cluster would detect it, not by peeking at a flag.
//!
//! Defaults: 250 ms interval, 1 s timeout. Spark uses 10 s / 120 s, which is why a hung
//! executor takes Spark two minutes to notice; issue 3 asks for detection within 2 s with
//! defaults. A 1 s timeout spans four missed heartbeats, so one slow beat (a busy core on a
//! 2-core machine) does not kill a healthy executor, and detection (timeout plus one
//! scheduler poll) stays well under 2 s.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use ember_planner::{EmberError, Result};

pub const HEARTBEAT_INTERVAL_KEY: &str = "ember.executor.heartbeatInterval";
pub const NETWORK_TIMEOUT_KEY: &str = "ember.network.timeout";
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(250);
pub const DEFAULT_NETWORK_TIMEOUT: Duration = Duration::from_secs(1);

/// The driver's side: when each executor was last heard from.
#[derive(Debug, Default)]
pub struct HeartbeatReceiver {
    last: Mutex<HashMap<usize, Instant>>,
}

impl HeartbeatReceiver {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a heartbeat from `executor` (registration counts as the first one).
    pub fn beat(&self, executor: usize) {
        self.last.lock().insert(executor, Instant::now());
    }

    /// Time since `executor`'s last heartbeat; `None` for an executor never registered.
    pub fn silence(&self, executor: usize) -> Option<Duration> {
        self.last.lock().get(&executor).map(Instant::elapsed)
    }

    /// Stops tracking a removed executor.
    pub fn forget(&self, executor: usize) {
        self.last.lock().remove(&executor);
    }
}

/// Parses a duration setting: `250ms`, `1s`, `2min`/`2m`, `1h`, or a bare number in
/// `bare_unit` (Spark reads a bare `ember.network.timeout` as seconds but a bare heartbeat
/// interval as milliseconds; callers pass the unit their key uses).
pub fn parse_duration(key: &str, value: &str, bare_unit: Duration) -> Result<Duration> {
    let text = value.trim().to_ascii_lowercase();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale = match unit.trim() {
        "" => Some(bare_unit),
        "ms" => Some(Duration::from_millis(1)),
        "s" | "sec" | "secs" => Some(Duration::from_secs(1)),
        "m" | "min" | "mins" => Some(Duration::from_secs(60)),
        "h" => Some(Duration::from_secs(3600)),
        _ => None,
    };
    match (number.parse::<f64>(), scale) {
        (Ok(n), Some(scale)) if n.is_finite() && n >= 0.0 => Ok(scale.mul_f64(n)),
        _ => Err(EmberError::Config(format!(
            "invalid value '{value}' for {key}: expected a duration like 250ms, 1s or 2min"
        ))),
    }
}

/// Reads a duration key through `get`, with its default.
pub(crate) fn read_duration(
    get: &impl Fn(&str) -> Option<String>,
    key: &str,
    bare_unit: Duration,
    default: Duration,
) -> Result<Duration> {
    match get(key) {
        Some(v) => parse_duration(key, &v, bare_unit),
        None => Ok(default),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_bare_numbers() {
        let ms = Duration::from_millis(1);
        let s = Duration::from_secs(1);
        assert_eq!(parse_duration("k", "250ms", s).unwrap(), 250 * ms);
        assert_eq!(parse_duration("k", " 2s ", ms).unwrap(), 2 * s);
        assert_eq!(parse_duration("k", "1.5s", ms).unwrap(), 1500 * ms);
        assert_eq!(parse_duration("k", "2min", ms).unwrap(), 120 * s);
        assert_eq!(parse_duration("k", "120", s).unwrap(), 120 * s);
        assert_eq!(parse_duration("k", "120", ms).unwrap(), 120 * ms);
        let e = parse_duration("ember.network.timeout", "soon", s).unwrap_err();
        assert!(e.to_string().contains("ember.network.timeout"), "{e}");
        assert!(parse_duration("k", "-1s", s).is_err());
        assert!(parse_duration("k", "5 parsecs", s).is_err());
    }

    #[test]
    fn receiver_measures_silence() {
        let r = HeartbeatReceiver::new();
        assert!(r.silence(0).is_none());
        r.beat(0);
        std::thread::sleep(Duration::from_millis(20));
        assert!(r.silence(0).unwrap() >= Duration::from_millis(20));
        r.beat(0);
        assert!(r.silence(0).unwrap() < Duration::from_millis(20));
        r.forget(0);
        assert!(r.silence(0).is_none());
    }
}
