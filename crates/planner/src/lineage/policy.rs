//! The knobs of automatic checkpoint placement and the Young–Daly interval they imply.

use crate::error::{EmberError, Result};

/// `true`/`false`: place checkpoints automatically.
pub const AUTO_KEY: &str = "ember.checkpoint.auto";
/// One executor's mean time between failures: seconds, or with a unit (`500ms`, `30s`,
/// `10m`, `1h`, `2d`).
pub const MTBF_KEY: &str = "ember.checkpoint.mtbf";
/// Stages allowed since the last durable point before a checkpoint is forced.
pub const MAX_LINEAGE_DEPTH_KEY: &str = "ember.checkpoint.maxLineageDepth";
/// One executor's checkpoint write throughput: bytes per second, or with a unit
/// (`100MB`, `512k`, `1g`).
pub const WRITE_RATE_KEY: &str = "ember.checkpoint.writeBytesPerSec";
/// The executor count (shared with the cluster configuration).
pub const EXECUTORS_KEY: &str = "ember.executor.instances";

/// How the planner decides where to checkpoint automatically.
///
/// The session builds it from its configuration with [`CheckpointPolicy::from_settings`]
/// (keys [`AUTO_KEY`], [`MTBF_KEY`], [`MAX_LINEAGE_DEPTH_KEY`], [`WRITE_RATE_KEY`],
/// [`EXECUTORS_KEY`]).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointPolicy {
    /// Place checkpoints automatically (`ember.checkpoint.auto`, default true). Explicitly
    /// requested checkpoints are kept either way.
    pub auto: bool,
    /// Mean time between failures of *one* executor, in seconds (`ember.checkpoint.mtbf`,
    /// default 3600: one failure an hour is pessimistic for a machine, which keeps the
    /// model checkpointing long jobs rather than betting on a quiet cluster).
    pub mtbf_secs: f64,
    /// Hard cap on the number of stages since the last durable point
    /// (`ember.checkpoint.maxLineageDepth`, default 20). Guards recovery time and plan size
    /// when statistics are missing or wrong.
    pub max_lineage_depth: usize,
    /// Reliable-checkpoint write throughput of one executor, in bytes per second (default
    /// 100 MB/s: Parquet encoding plus a local or object-store write).
    pub write_bytes_per_sec: f64,
    /// Executors in the cluster (default 1). More executors fail more often together
    /// (cluster MTBF = MTBF ÷ executors) but also recompute and write in parallel.
    pub executors: usize,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        CheckpointPolicy {
            auto: true,
            mtbf_secs: 3600.0,
            max_lineage_depth: 20,
            write_bytes_per_sec: 100e6,
            executors: 1,
        }
    }
}

impl CheckpointPolicy {
    /// Mean time between failures of the whole cluster: any executor failing loses work.
    pub fn cluster_mtbf_secs(&self) -> f64 {
        self.mtbf_secs / self.executors.max(1) as f64
    }

    /// The Young–Daly checkpoint interval for a checkpoint that takes `write_secs` to write:
    /// `√(2 · W · MTBF_cluster)`, the amount of work between checkpoints that minimises
    /// expected time lost to writing plus recomputing after failures.
    pub fn young_daly_interval(&self, write_secs: f64) -> f64 {
        (2.0 * write_secs.max(0.0) * self.cluster_mtbf_secs().max(0.0)).sqrt()
    }

    /// The policy from configuration: `lookup(key)` returns a key's value when set; unset
    /// keys keep their defaults. A malformed value is a config error naming key and value.
    pub fn from_settings(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut policy = CheckpointPolicy::default();
        if let Some(v) = lookup(AUTO_KEY) {
            policy.auto = match v.trim().to_ascii_lowercase().as_str() {
                "true" => true,
                "false" => false,
                _ => return Err(bad_value(AUTO_KEY, &v, "true or false")),
            };
        }
        if let Some(v) = lookup(MTBF_KEY) {
            policy.mtbf_secs = parse_with_unit(&v, DURATION_UNITS)
                .filter(|s| *s > 0.0)
                .ok_or_else(|| {
                    bad_value(MTBF_KEY, &v, "a positive duration such as 3600, 30m or 1h")
                })?;
        }
        if let Some(v) = lookup(MAX_LINEAGE_DEPTH_KEY) {
            policy.max_lineage_depth = v
                .trim()
                .parse()
                .map_err(|_| bad_value(MAX_LINEAGE_DEPTH_KEY, &v, "a whole number of stages"))?;
        }
        if let Some(v) = lookup(WRITE_RATE_KEY) {
            policy.write_bytes_per_sec = parse_with_unit(&v, BYTE_UNITS)
                .filter(|b| *b > 0.0)
                .ok_or_else(|| bad_value(WRITE_RATE_KEY, &v, "a positive size such as 100MB"))?;
        }
        if let Some(v) = lookup(EXECUTORS_KEY) {
            policy.executors = v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| bad_value(EXECUTORS_KEY, &v, "a positive whole number"))?;
        }
        Ok(policy)
    }

    /// How many of a stage's `partitions` tasks run at once.
    pub fn parallelism(&self, partitions: usize) -> usize {
        partitions.min(self.executors).max(1)
    }
}

fn bad_value(key: &str, value: &str, expected: &str) -> EmberError {
    EmberError::Config(format!("{key} = '{value}': expected {expected}"))
}

/// Unit suffixes and their factors, longest suffixes first so `ms` wins over `s`.
const DURATION_UNITS: &[(&str, f64)] = &[
    ("ms", 1e-3),
    ("s", 1.0),
    ("m", 60.0),
    ("h", 3600.0),
    ("d", 86400.0),
];
const BYTE_UNITS: &[(&str, f64)] = &[
    ("kb", 1e3),
    ("mb", 1e6),
    ("gb", 1e9),
    ("k", 1e3),
    ("m", 1e6),
    ("g", 1e9),
    ("b", 1.0),
];

/// A number with an optional unit suffix (case-insensitive), in the base unit.
fn parse_with_unit(value: &str, units: &[(&str, f64)]) -> Option<f64> {
    let v = value.trim().to_ascii_lowercase();
    let (number, factor) = units
        .iter()
        .find_map(|(suffix, factor)| v.strip_suffix(suffix).map(|n| (n.trim(), *factor)))
        .unwrap_or((v.as_str(), 1.0));
    let n: f64 = number.parse().ok()?;
    let scaled = n * factor;
    scaled.is_finite().then_some(scaled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_mtbf_divides_by_executors() {
        let p = CheckpointPolicy {
            mtbf_secs: 3600.0,
            executors: 4,
            ..Default::default()
        };
        assert_eq!(p.cluster_mtbf_secs(), 900.0);
        // √(2 · 0.5 · 900) = 30
        assert!((p.young_daly_interval(0.5) - 30.0).abs() < 1e-9);
    }

    #[test]
    fn settings_override_defaults_and_bad_values_name_the_key() {
        let settings = [
            (AUTO_KEY, "FALSE"),
            (MTBF_KEY, "30m"),
            (MAX_LINEAGE_DEPTH_KEY, "5"),
            (WRITE_RATE_KEY, "250MB"),
            (EXECUTORS_KEY, "4"),
        ];
        let lookup = |k: &str| {
            settings
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.to_string())
        };
        let p = CheckpointPolicy::from_settings(lookup).unwrap();
        assert_eq!(
            p,
            CheckpointPolicy {
                auto: false,
                mtbf_secs: 1800.0,
                max_lineage_depth: 5,
                write_bytes_per_sec: 250e6,
                executors: 4,
            }
        );
        assert_eq!(
            CheckpointPolicy::from_settings(|_| None).unwrap(),
            CheckpointPolicy::default()
        );
        assert_eq!(parse_with_unit("500ms", DURATION_UNITS), Some(0.5));
        assert_eq!(parse_with_unit("3600", DURATION_UNITS), Some(3600.0));
        let err = CheckpointPolicy::from_settings(|k| (k == MTBF_KEY).then(|| "soon".to_string()))
            .unwrap_err();
        assert!(
            err.to_string().contains("ember.checkpoint.mtbf = 'soon'"),
            "{err}"
        );
        let err = CheckpointPolicy::from_settings(|k| (k == MTBF_KEY).then(|| "-1h".to_string()))
            .unwrap_err();
        assert!(matches!(err, EmberError::Config(_)), "{err}");
    }

    #[test]
    fn zero_executors_count_as_one() {
        let p = CheckpointPolicy {
            executors: 0,
            ..Default::default()
        };
        assert_eq!(p.cluster_mtbf_secs(), 3600.0);
        assert_eq!(p.parallelism(8), 1);
    }
}
