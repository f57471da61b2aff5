//! Scheduler limits, read from the session's `ember.*` settings.

use std::time::Duration;

use crate::executor::cluster::parse_positive;
use crate::executor::heartbeat::read_duration;
use ember_planner::{EmberError, Result};

pub const MAX_TASK_FAILURES_KEY: &str = "ember.task.maxFailures";
pub const MAX_STAGE_ATTEMPTS_KEY: &str = "ember.stage.maxConsecutiveAttempts";
pub const BATCH_SIZE_KEY: &str = "ember.batchSize";
pub const SPECULATION_KEY: &str = "ember.speculation";
pub const SPECULATION_INTERVAL_KEY: &str = "ember.speculation.interval";
pub const SPECULATION_MULTIPLIER_KEY: &str = "ember.speculation.multiplier";
pub const SPECULATION_QUANTILE_KEY: &str = "ember.speculation.quantile";
pub const SPECULATION_MIN_RUNTIME_KEY: &str = "ember.speculation.minTaskRuntime";

/// When a straggler gets a second copy (Spark 4's rule and defaults): once `quantile` of a
/// stage's tasks have finished, a task running longer than `multiplier` × the median
/// duration of the finished ones (and longer than `min_task_runtime`) is copied to another
/// executor; checked every `interval`.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeculationConfig {
    pub interval: Duration,
    pub multiplier: f64,
    pub quantile: f64,
    pub min_task_runtime: Duration,
}

impl Default for SpeculationConfig {
    fn default() -> Self {
        SpeculationConfig {
            interval: Duration::from_millis(100),
            multiplier: 3.0,
            quantile: 0.9,
            min_task_runtime: Duration::from_millis(100),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct JobConfig {
    /// A task that fails this many times fails the job (`ember.task.maxFailures`, default 4).
    /// Fetch failures and executor loss are not the task's fault and do not count.
    pub max_task_failures: usize,
    /// A stage whose tasks hit fetch failures in this many stage attempts fails the job
    /// (`ember.stage.maxConsecutiveAttempts`, default 4): it bounds recompute loops when a
    /// map output keeps getting lost.
    pub max_stage_attempts: usize,
    /// Target rows per batch for operators and shuffle blocks (`ember.batchSize`, 8192).
    pub batch_size: usize,
    /// `ember.speculation` (default off) and its `.interval`, `.multiplier`, `.quantile`,
    /// `.minTaskRuntime`: `Some` when speculation is on.
    pub speculation: Option<SpeculationConfig>,
}

impl Default for JobConfig {
    fn default() -> Self {
        JobConfig {
            max_task_failures: 4,
            max_stage_attempts: 4,
            batch_size: 8192,
            speculation: None,
        }
    }
}

impl JobConfig {
    /// Reads the keys through `get` (e.g. a session config lookup); missing keys take their
    /// defaults.
    pub fn from_settings(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let defaults = JobConfig::default();
        let read = |key: &str, default: usize| match get(key) {
            Some(v) => parse_positive(key, &v),
            None => Ok(default),
        };
        Ok(JobConfig {
            max_task_failures: read(MAX_TASK_FAILURES_KEY, defaults.max_task_failures)?,
            max_stage_attempts: read(MAX_STAGE_ATTEMPTS_KEY, defaults.max_stage_attempts)?,
            batch_size: read(BATCH_SIZE_KEY, defaults.batch_size)?,
            speculation: speculation_from_settings(&get)?,
        })
    }
}

fn speculation_from_settings(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Option<SpeculationConfig>> {
    let on = match get(SPECULATION_KEY) {
        None => false,
        Some(v) => match v.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "on" | "yes" => true,
            "false" | "0" | "off" | "no" => false,
            _ => {
                return Err(EmberError::Config(format!(
                    "{SPECULATION_KEY} must be true or false, found '{v}'"
                )))
            }
        },
    };
    if !on {
        return Ok(None);
    }
    let d = SpeculationConfig::default();
    let number = |key: &str, default: f64, valid: fn(f64) -> bool, what: &str| match get(key) {
        None => Ok(default),
        Some(v) => match v.trim().parse::<f64>() {
            Ok(x) if valid(x) => Ok(x),
            _ => Err(EmberError::Config(format!(
                "invalid value '{v}' for {key}: expected {what}"
            ))),
        },
    };
    let ms = Duration::from_millis(1);
    let interval = read_duration(get, SPECULATION_INTERVAL_KEY, ms, d.interval)?;
    if interval.is_zero() {
        return Err(EmberError::Config(format!(
            "{SPECULATION_INTERVAL_KEY} must be positive"
        )));
    }
    Ok(Some(SpeculationConfig {
        interval,
        multiplier: number(
            SPECULATION_MULTIPLIER_KEY,
            d.multiplier,
            |x| x.is_finite() && x >= 1.0,
            "a number of at least 1",
        )?,
        quantile: number(
            SPECULATION_QUANTILE_KEY,
            d.quantile,
            |x| x > 0.0 && x <= 1.0,
            "a fraction in (0, 1]",
        )?,
        min_task_runtime: read_duration(get, SPECULATION_MIN_RUNTIME_KEY, ms, d.min_task_runtime)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_keys_with_defaults_and_rejects_zero() {
        let c =
            JobConfig::from_settings(|k| (k == MAX_TASK_FAILURES_KEY).then(|| "2".into())).unwrap();
        assert_eq!(c.max_task_failures, 2);
        assert_eq!(c.max_stage_attempts, 4);
        let err =
            JobConfig::from_settings(|k| (k == BATCH_SIZE_KEY).then(|| "0".into())).unwrap_err();
        assert!(err.to_string().contains(BATCH_SIZE_KEY), "{err}");
        assert!(c.speculation.is_none(), "speculation is off by default");
    }

    #[test]
    fn reads_speculation_keys() {
        let on = JobConfig::from_settings(|k| match k {
            SPECULATION_KEY => Some("true".into()),
            SPECULATION_MULTIPLIER_KEY => Some("1.5".into()),
            SPECULATION_MIN_RUNTIME_KEY => Some("20ms".into()),
            _ => None,
        })
        .unwrap();
        let s = on.speculation.unwrap();
        assert_eq!(s.multiplier, 1.5);
        assert_eq!(s.quantile, 0.9);
        assert_eq!(s.interval, Duration::from_millis(100));
        assert_eq!(s.min_task_runtime, Duration::from_millis(20));
        let bad = JobConfig::from_settings(|k| match k {
            SPECULATION_KEY => Some("true".into()),
            SPECULATION_QUANTILE_KEY => Some("1.5".into()),
            _ => None,
        })
        .unwrap_err();
        assert!(bad.to_string().contains(SPECULATION_QUANTILE_KEY), "{bad}");
    }
}
