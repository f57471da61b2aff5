//! Scheduler limits, read from the session's `ember.*` settings.

use crate::executor::cluster::parse_positive;
use ember_planner::Result;

pub const MAX_TASK_FAILURES_KEY: &str = "ember.task.maxFailures";
pub const MAX_STAGE_ATTEMPTS_KEY: &str = "ember.stage.maxConsecutiveAttempts";
pub const BATCH_SIZE_KEY: &str = "ember.batchSize";

#[derive(Debug, Clone, PartialEq, Eq)]
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
}

impl Default for JobConfig {
    fn default() -> Self {
        JobConfig {
            max_task_failures: 4,
            max_stage_attempts: 4,
            batch_size: 8192,
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
        })
    }
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
    }
}
