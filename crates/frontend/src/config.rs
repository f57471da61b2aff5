//! Session configuration: string keys (as `SET k = v` and `--conf k=v` give them) backed by
//! typed accessors.
//!
//! Known keys are validated when set, so a typo in a value fails at `SET` instead of in the
//! middle of a query. Any other `ember.*` key is kept as a plain string: features added later
//! (fault injection, checkpoints, ...) read their keys from here without this module having to
//! know them first. Keys outside `ember.` are rejected, since nothing would ever read them.

use std::collections::BTreeMap;

use ember_planner::error::closest_name;
use ember_planner::{EmberError, Result};

/// How a known key's value is checked and normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValueKind {
    /// An integer ≥ 1.
    PositiveInt,
    /// A size in bytes: `1048576`, `10MB`, `512k`, ...; `-1` disables (stored as `-1`).
    Bytes,
    /// `true` / `false`.
    Bool,
    /// A positive memory size, Spark-style: `2g`, `512m`, `1048576` (stored in bytes).
    Memory,
    /// Any string.
    Text,
}

struct KnownKey {
    key: &'static str,
    /// `None`: unset unless given (the component using it picks a default that depends on
    /// the machine, e.g. cores per executor).
    default: Option<&'static str>,
    kind: ValueKind,
    doc: &'static str,
}

pub const EXECUTOR_INSTANCES: &str = "ember.executor.instances";
pub const EXECUTOR_CORES: &str = "ember.executor.cores";
pub const EXECUTOR_MEMORY: &str = ember_exec::memory::EXECUTOR_MEMORY_KEY;
pub const SHUFFLE_PARTITIONS: &str = "ember.sql.shuffle.partitions";
pub const BROADCAST_THRESHOLD: &str = "ember.sql.autoBroadcastJoinThreshold";
pub const DYNAMIC_FILTERS: &str = "ember.sql.dynamicJoinFilters";
pub const BATCH_SIZE: &str = "ember.batchSize";
pub const TASK_MAX_FAILURES: &str = "ember.task.maxFailures";
pub const STAGE_MAX_ATTEMPTS: &str = "ember.stage.maxConsecutiveAttempts";
pub const CHECKPOINT_DIR: &str = "ember.checkpoint.dir";
pub const SPECULATION: &str = "ember.speculation";
pub const CHECKPOINT_CLEANUP: &str = "ember.checkpoint.cleanup";

const KNOWN_KEYS: &[KnownKey] = &[
    KnownKey {
        key: EXECUTOR_INSTANCES,
        default: Some("2"),
        kind: ValueKind::PositiveInt,
        doc: "number of in-process executors",
    },
    KnownKey {
        key: EXECUTOR_CORES,
        default: None,
        kind: ValueKind::PositiveInt,
        doc: "task slots per executor (default: available cores / executors)",
    },
    KnownKey {
        key: EXECUTOR_MEMORY,
        default: None,
        kind: ValueKind::Memory,
        doc: "memory budget per executor for sorts, aggregations and join build sides, \
              which spill to disk beyond it, e.g. 2g or 512m (default: half the machine's \
              memory / executors)",
    },
    KnownKey {
        key: SHUFFLE_PARTITIONS,
        default: None,
        kind: ValueKind::PositiveInt,
        doc: "partitions after a shuffle (joins, aggregations) and of generated tables \
              (default: twice the cluster's task slots, executors × cores)",
    },
    KnownKey {
        key: BROADCAST_THRESHOLD,
        default: Some("10485760"),
        kind: ValueKind::Bytes,
        doc: "broadcast a join side smaller than this many bytes (-1 disables)",
    },
    KnownKey {
        key: DYNAMIC_FILTERS,
        default: Some("true"),
        kind: ValueKind::Bool,
        doc: "filter one side of a shuffled join by the keys of its reduced other side \
              before the shuffle (the other side's stage runs first)",
    },
    KnownKey {
        key: BATCH_SIZE,
        default: Some("8192"),
        kind: ValueKind::PositiveInt,
        doc: "target rows per record batch",
    },
    KnownKey {
        key: TASK_MAX_FAILURES,
        default: Some("4"),
        kind: ValueKind::PositiveInt,
        doc: "attempts of a task before its job fails",
    },
    KnownKey {
        key: STAGE_MAX_ATTEMPTS,
        default: Some("4"),
        kind: ValueKind::PositiveInt,
        doc: "stage attempts after lost shuffle output before its job fails",
    },
    KnownKey {
        key: CHECKPOINT_DIR,
        default: Some("ember-checkpoints"),
        kind: ValueKind::Text,
        doc: "where checkpoints are written",
    },
    KnownKey {
        key: CHECKPOINT_CLEANUP,
        default: Some("true"),
        kind: ValueKind::Bool,
        doc: "remove this session's checkpoints when it ends normally (a crashed \
              application's checkpoints stay, so a restart resumes from them)",
    },
    KnownKey {
        key: SPECULATION,
        default: Some("false"),
        kind: ValueKind::Bool,
        doc: "run a second copy of straggling tasks",
    },
];

fn known(key: &str) -> Option<&'static KnownKey> {
    KNOWN_KEYS.iter().find(|k| k.key.eq_ignore_ascii_case(key))
}

/// The configuration of one session. Cheap to clone; a snapshot is taken per query.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Canonical key → normalised value, for every known key and every `ember.*` key set.
    values: BTreeMap<String, String>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            values: KNOWN_KEYS
                .iter()
                .filter_map(|k| Some((k.key.to_string(), k.default?.to_string())))
                .collect(),
        }
    }
}

impl SessionConfig {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value`, validating known keys. Known keys match case-insensitively
    /// and are stored under their canonical spelling.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let key = key.trim();
        let value = value.trim();
        match known(key) {
            Some(k) => {
                let normalised = validate(k, value)?;
                self.values.insert(k.key.to_string(), normalised);
                Ok(())
            }
            None if key.len() > "ember.".len()
                && key[.."ember.".len()].eq_ignore_ascii_case("ember.") =>
            {
                self.values.insert(key.to_string(), value.to_string());
                Ok(())
            }
            None => {
                let hint = closest_name(key, KNOWN_KEYS.iter().map(|k| k.key))
                    .map(|k| format!(" Did you mean '{k}'?"))
                    .unwrap_or_default();
                Err(EmberError::Config(format!(
                    "unknown configuration key '{key}': Ember's keys start with 'ember.'.{hint}"
                )))
            }
        }
    }

    /// The builder form of [`SessionConfig::set`].
    pub fn with(mut self, key: &str, value: &str) -> Result<Self> {
        self.set(key, value)?;
        Ok(self)
    }

    /// The value of `key` (known keys case-insensitively), if set or defaulted.
    pub fn get(&self, key: &str) -> Option<&str> {
        let canonical = known(key).map_or(key, |k| k.key);
        self.values.get(canonical).map(String::as_str)
    }

    /// Every key and value, sorted by key (for `SHOW ALL`); keys whose default depends on
    /// the machine or on other keys show the value in effect.
    pub fn entries(&self) -> Vec<(String, String)> {
        let mut entries = self.values.clone();
        for key in [EXECUTOR_CORES, SHUFFLE_PARTITIONS] {
            if let Some(value) = self.effective(key) {
                entries.entry(key.to_string()).or_insert(value);
            }
        }
        entries.into_iter().collect()
    }

    /// The value of `key` in effect: as set or defaulted, or derived (cores per executor,
    /// shuffle partitions) when its default depends on the machine or on other keys.
    pub fn effective(&self, key: &str) -> Option<String> {
        if let Some(value) = self.get(key) {
            return Some(value.to_string());
        }
        match known(key)?.key {
            EXECUTOR_CORES => {
                Some(ember_exec::executor::default_cores(self.executor_instances()).to_string())
            }
            SHUFFLE_PARTITIONS => Some(self.shuffle_partitions().to_string()),
            _ => None,
        }
    }

    /// A one-line description of a known key (for `SHOW ALL`).
    pub fn describe(key: &str) -> Option<&'static str> {
        known(key).map(|k| k.doc)
    }

    pub fn executor_instances(&self) -> usize {
        self.positive(EXECUTOR_INSTANCES)
    }

    /// The memory budget of each executor in bytes, if set (the cluster picks a default
    /// from the machine's memory otherwise).
    pub fn executor_memory(&self) -> Option<usize> {
        self.get(EXECUTOR_MEMORY).and_then(|v| v.parse().ok())
    }

    /// Task slots per executor, if set.
    pub fn executor_cores(&self) -> Option<usize> {
        self.get(EXECUTOR_CORES).and_then(|v| v.parse().ok())
    }

    /// Partitions after a shuffle: the physical planner's target partition count. Unless
    /// set, twice the cluster's task slots: every slot has a second task to take when
    /// partitions differ in size, and when an executor is lost, the partitions it held are
    /// each a smaller share of the work, recomputed side by side on the survivors (one
    /// partition per slot left a 4 × 1 cluster recomputing a quarter of each stage on one
    /// core while three idled). On the default 2 × 1 cluster of a 2-core machine: 4.
    pub fn shuffle_partitions(&self) -> usize {
        match self.get(SHUFFLE_PARTITIONS) {
            Some(_) => self.positive(SHUFFLE_PARTITIONS),
            None => 2 * self.task_slots(),
        }
    }

    /// Task slots of the cluster this configuration describes: executors × cores each.
    pub fn task_slots(&self) -> usize {
        let instances = self.executor_instances();
        let cores = self
            .executor_cores()
            .unwrap_or_else(|| ember_exec::executor::default_cores(instances));
        instances * cores
    }

    /// The broadcast-join threshold in bytes; 0 when broadcasting is disabled (`-1`).
    pub fn broadcast_threshold_bytes(&self) -> usize {
        self.get(BROADCAST_THRESHOLD)
            .and_then(|v| v.parse::<i64>().ok())
            .map_or(0, |v| usize::try_from(v).unwrap_or(0))
    }

    /// Whether the planner places dynamic join filters.
    pub fn dynamic_filters(&self) -> bool {
        self.get(DYNAMIC_FILTERS) != Some("false")
    }

    pub fn batch_size(&self) -> usize {
        self.positive(BATCH_SIZE)
    }

    pub fn task_max_failures(&self) -> usize {
        self.positive(TASK_MAX_FAILURES)
    }

    /// A known positive-integer key. Values are validated on `set` and defaults are valid,
    /// so the fallback only guards against a corrupted map.
    fn positive(&self, key: &str) -> usize {
        self.get(key)
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|v| *v > 0)
            .unwrap_or(1)
    }
}

/// Checks `value` against the key's kind and returns its normalised form.
fn validate(key: &KnownKey, value: &str) -> Result<String> {
    let invalid = |expected: &str| {
        EmberError::Config(format!(
            "invalid value '{value}' for {}: expected {expected}",
            key.key
        ))
    };
    match key.kind {
        ValueKind::PositiveInt => match value.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n.to_string()),
            _ => Err(invalid("a positive integer")),
        },
        ValueKind::Bytes => parse_bytes(value)
            .map(|b| b.to_string())
            .ok_or_else(|| invalid("a size in bytes such as 10485760 or 10MB, or -1 to disable")),
        ValueKind::Bool => match value.to_ascii_lowercase().as_str() {
            "true" | "on" | "1" => Ok("true".into()),
            "false" | "off" | "0" => Ok("false".into()),
            _ => Err(invalid("true or false")),
        },
        ValueKind::Memory => {
            ember_exec::memory::parse_memory_size(key.key, value).map(|b| b.to_string())
        }
        ValueKind::Text if value.is_empty() => Err(invalid("a non-empty string")),
        ValueKind::Text => Ok(value.to_string()),
    }
}

/// `1048576`, `10MB`, `10m`, `512kb`, `1g`, `-1` → bytes (as Spark reads sizes).
fn parse_bytes(value: &str) -> Option<i64> {
    let v = value.trim().to_ascii_lowercase();
    if v == "-1" {
        return Some(-1);
    }
    let digits_end = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (number, unit) = v.split_at(digits_end);
    let number: i64 = number.parse().ok()?;
    let multiplier: i64 = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(multiplier)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_typed() {
        let c = SessionConfig::new();
        assert_eq!(c.executor_instances(), 2);
        assert_eq!(c.shuffle_partitions(), 2 * c.task_slots());
        assert_eq!(c.broadcast_threshold_bytes(), 10 * 1024 * 1024);
        assert_eq!(c.batch_size(), 8192);
    }

    #[test]
    fn shuffle_partitions_default_to_twice_the_task_slots_unless_set() {
        let mut c = SessionConfig::new();
        c.set(EXECUTOR_INSTANCES, "4").unwrap();
        c.set(EXECUTOR_CORES, "1").unwrap();
        assert_eq!(c.shuffle_partitions(), 8);
        c.set(EXECUTOR_CORES, "3").unwrap();
        assert_eq!(c.shuffle_partitions(), 24);
        assert_eq!(c.get(SHUFFLE_PARTITIONS), None, "derived, not stored");
        assert_eq!(c.effective(SHUFFLE_PARTITIONS).as_deref(), Some("24"));
        assert!(c
            .entries()
            .contains(&(SHUFFLE_PARTITIONS.to_string(), "24".to_string())));
        c.set(SHUFFLE_PARTITIONS, "5").unwrap();
        assert_eq!(c.shuffle_partitions(), 5);
        assert_eq!(c.effective(SHUFFLE_PARTITIONS).as_deref(), Some("5"));
    }

    #[test]
    fn cores_per_executor_show_the_machine_default_when_unset() {
        let c = SessionConfig::new();
        assert_eq!(c.get(EXECUTOR_CORES), None);
        let cores: usize = c.effective(EXECUTOR_CORES).unwrap().parse().unwrap();
        assert_eq!(cores, ember_exec::executor::default_cores(2));
        assert_eq!(c.effective("ember.no.such.key"), None);
    }

    #[test]
    fn set_validates_known_keys() {
        let mut c = SessionConfig::new();
        let err = c.set("ember.executor.instances", "x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Config error: invalid value 'x' for ember.executor.instances: expected a positive integer"
        );
        assert!(c.set("ember.executor.instances", "0").is_err());
        c.set("EMBER.SQL.SHUFFLE.PARTITIONS", "8").unwrap();
        assert_eq!(c.shuffle_partitions(), 8);
        assert_eq!(c.get("ember.sql.shuffle.partitions"), Some("8"));
    }

    #[test]
    fn sizes_accept_units_and_minus_one() {
        let mut c = SessionConfig::new();
        c.set(BROADCAST_THRESHOLD, "1MB").unwrap();
        assert_eq!(c.broadcast_threshold_bytes(), 1 << 20);
        c.set(BROADCAST_THRESHOLD, "-1").unwrap();
        assert_eq!(c.broadcast_threshold_bytes(), 0);
        assert!(c.set(BROADCAST_THRESHOLD, "lots").is_err());
    }

    #[test]
    fn executor_memory_takes_spark_sizes() {
        let mut c = SessionConfig::new();
        assert_eq!(c.executor_memory(), None, "machine-dependent default");
        c.set(EXECUTOR_MEMORY, "512m").unwrap();
        assert_eq!(c.executor_memory(), Some(512 << 20));
        assert_eq!(c.get(EXECUTOR_MEMORY), Some("536870912"));
        c.set(EXECUTOR_MEMORY, "2G").unwrap();
        assert_eq!(c.executor_memory(), Some(2 << 30));
        for bad in ["0", "-1", "much", "12q"] {
            let err = c.set(EXECUTOR_MEMORY, bad).unwrap_err().to_string();
            assert!(err.contains("ember.executor.memory"), "{bad}: {err}");
        }
        assert_eq!(
            c.executor_memory(),
            Some(2 << 30),
            "a bad value changes nothing"
        );
    }

    #[test]
    fn unknown_ember_keys_are_kept_as_strings() {
        let mut c = SessionConfig::new();
        c.set("ember.fault.plan", "fail 1.0").unwrap();
        assert_eq!(c.get("ember.fault.plan"), Some("fail 1.0"));
        assert!(c.entries().iter().any(|(k, _)| k == "ember.fault.plan"));
    }

    #[test]
    fn keys_outside_ember_are_rejected_by_name() {
        let err = SessionConfig::new()
            .set("spark.sql.shuffle.partitions", "3")
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("'spark.sql.shuffle.partitions'"), "{msg}");
        assert!(
            msg.contains("Did you mean 'ember.sql.shuffle.partitions'"),
            "{msg}"
        );
    }
}
