//! The events of Ember's event log, with the exact JSON shape issue 3 fixes.
//!
//! Every line is one flat JSON object: `"event"` names the kind, `"timestamp"` is ms since the
//! Unix epoch, and the other keys are camelCase (`"stageAttempt"`, `"speculative"`, …). Keys
//! mean the same thing in every kind — `"partitions"` is always a list of partition numbers,
//! `"reason"` is always a typed task end reason, free text is always `"message"` — so Ember's
//! own JSON reader infers one schema for the whole log and
//! `SELECT reason, count(*) FROM read_json('…') WHERE event = 'TaskEnd' GROUP BY reason`
//! works.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// One logged event: when, and what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Milliseconds since the Unix epoch.
    pub timestamp: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    /// Stamps `kind` with the current time.
    pub fn now(kind: EventKind) -> Self {
        Event {
            timestamp: now_ms(),
            kind,
        }
    }

    /// The `"event"` name, e.g. `TaskEnd`.
    pub fn name(&self) -> &'static str {
        self.kind.name()
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// How a task attempt ended; decides the recovery (see the scheduler).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TaskEndReason {
    Success,
    /// The task raised an error; counts toward `ember.task.maxFailures`.
    ExceptionFailure,
    /// The task could not read a parent's shuffle block; the map output is recomputed.
    FetchFailed,
    /// The executor running it was lost.
    ExecutorLost,
    /// Stopped by the driver: the job failed, or a speculative copy won.
    TaskKilled,
    /// The output commit was refused because another attempt of the partition committed.
    CommitDenied,
}

/// Why partitions were computed again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RecomputeCause {
    /// A reducer could not read their shuffle blocks.
    FetchFailed,
    /// The executor holding their output (shuffle files, cached blocks, local checkpoints)
    /// was lost.
    ExecutorLost,
    /// A cached block was missing.
    CacheBlockLost,
    /// A reliable checkpoint was rejected (bad checksum, no `_SUCCESS`).
    CheckpointRejected,
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JobResult {
    Succeeded,
    Failed,
}

/// The kinds of event, tagged by `"event"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event")]
pub enum EventKind {
    #[serde(rename_all = "camelCase")]
    ApplicationStart { app_id: String, app_name: String },
    #[serde(rename_all = "camelCase")]
    JobStart {
        job: usize,
        /// Stage ids of the job's graph, in topological order.
        stages: Vec<usize>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
    },
    /// A stage attempt begins; `partitions` are the ones it will compute (all of them at
    /// first, only the missing ones when it is resubmitted).
    #[serde(rename_all = "camelCase")]
    StageSubmitted {
        job: usize,
        stage: usize,
        stage_attempt: usize,
        partitions: Vec<usize>,
    },
    /// A stage attempt ends; `message` says why when it failed.
    #[serde(rename_all = "camelCase")]
    StageCompleted {
        job: usize,
        stage: usize,
        stage_attempt: usize,
        succeeded: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    TaskStart {
        job: usize,
        stage: usize,
        stage_attempt: usize,
        partition: usize,
        attempt: usize,
        executor: usize,
        speculative: bool,
    },
    #[serde(rename_all = "camelCase")]
    TaskEnd {
        job: usize,
        stage: usize,
        stage_attempt: usize,
        partition: usize,
        attempt: usize,
        executor: usize,
        speculative: bool,
        reason: TaskEndReason,
        duration_ms: u64,
        /// Rows the attempt produced (0 unless it succeeded).
        #[serde(default)]
        rows: usize,
        /// The error, for every reason but `Success`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        /// For `FetchFailed`: the map output that could not be read.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        map_stage: Option<usize>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        map_partition: Option<usize>,
    },
    #[serde(rename_all = "camelCase")]
    ExecutorAdded { executor: usize, cores: usize },
    #[serde(rename_all = "camelCase")]
    ExecutorRemoved { executor: usize, message: String },
    /// Partitions of `stage` whose output existed once and is computed again.
    #[serde(rename_all = "camelCase")]
    PartitionsRecomputed {
        job: usize,
        stage: usize,
        partitions: Vec<usize>,
        cause: RecomputeCause,
        /// The lost executor, for `ExecutorLost`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        executor: Option<usize>,
    },
    /// A reliable checkpoint was committed (`_SUCCESS` written).
    #[serde(rename_all = "camelCase")]
    CheckpointWritten {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        job: Option<usize>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stage: Option<usize>,
        /// Where it lives (a directory or object store URL).
        path: String,
        fingerprint: String,
        num_partitions: usize,
        rows: u64,
        bytes: u64,
    },
    /// A committed checkpoint with a matching fingerprint replaced its lineage.
    #[serde(rename_all = "camelCase")]
    CheckpointReused {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        job: Option<usize>,
        path: String,
        fingerprint: String,
    },
    /// A checkpoint could not be trusted and is recomputed instead of read.
    #[serde(rename_all = "camelCase")]
    CheckpointRejected {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        job: Option<usize>,
        path: String,
        message: String,
    },
    /// A cached partition was missing where the block store should have held it.
    #[serde(rename_all = "camelCase")]
    CacheBlockLost {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        job: Option<usize>,
        /// The cached dataset (table name or plan fingerprint).
        cache: String,
        partition: usize,
        executor: usize,
    },
    #[serde(rename_all = "camelCase")]
    JobEnd {
        job: usize,
        result: JobResult,
        duration_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    #[serde(rename_all = "camelCase")]
    ApplicationEnd { app_id: String },
}

impl EventKind {
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::ApplicationStart { .. } => "ApplicationStart",
            EventKind::JobStart { .. } => "JobStart",
            EventKind::StageSubmitted { .. } => "StageSubmitted",
            EventKind::StageCompleted { .. } => "StageCompleted",
            EventKind::TaskStart { .. } => "TaskStart",
            EventKind::TaskEnd { .. } => "TaskEnd",
            EventKind::ExecutorAdded { .. } => "ExecutorAdded",
            EventKind::ExecutorRemoved { .. } => "ExecutorRemoved",
            EventKind::PartitionsRecomputed { .. } => "PartitionsRecomputed",
            EventKind::CheckpointWritten { .. } => "CheckpointWritten",
            EventKind::CheckpointReused { .. } => "CheckpointReused",
            EventKind::CheckpointRejected { .. } => "CheckpointRejected",
            EventKind::CacheBlockLost { .. } => "CacheBlockLost",
            EventKind::JobEnd { .. } => "JobEnd",
            EventKind::ApplicationEnd { .. } => "ApplicationEnd",
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn line(kind: EventKind) -> Value {
        let text = serde_json::to_string(&Event {
            timestamp: 1234,
            kind,
        })
        .unwrap();
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn task_end_has_the_issue_field_names() {
        let v = line(EventKind::TaskEnd {
            job: 1,
            stage: 2,
            stage_attempt: 1,
            partition: 3,
            attempt: 4,
            executor: 0,
            speculative: true,
            reason: TaskEndReason::FetchFailed,
            duration_ms: 12,
            rows: 0,
            message: Some("block gone".into()),
            map_stage: Some(1),
            map_partition: Some(7),
        });
        assert_eq!(
            v,
            json!({
                "timestamp": 1234, "event": "TaskEnd", "job": 1, "stage": 2, "stageAttempt": 1,
                "partition": 3, "attempt": 4, "executor": 0, "speculative": true,
                "reason": "FetchFailed", "durationMs": 12, "rows": 0, "message": "block gone",
                "mapStage": 1, "mapPartition": 7
            })
        );
    }

    #[test]
    fn every_reason_serializes_as_its_name() {
        for (reason, name) in [
            (TaskEndReason::Success, "Success"),
            (TaskEndReason::ExceptionFailure, "ExceptionFailure"),
            (TaskEndReason::FetchFailed, "FetchFailed"),
            (TaskEndReason::ExecutorLost, "ExecutorLost"),
            (TaskEndReason::TaskKilled, "TaskKilled"),
            (TaskEndReason::CommitDenied, "CommitDenied"),
        ] {
            assert_eq!(serde_json::to_value(reason).unwrap(), json!(name));
        }
    }

    #[test]
    fn partitions_recomputed_has_stage_partitions_cause() {
        let v = line(EventKind::PartitionsRecomputed {
            job: 0,
            stage: 1,
            partitions: vec![0, 3],
            cause: RecomputeCause::ExecutorLost,
            executor: Some(2),
        });
        assert_eq!(v["event"], "PartitionsRecomputed");
        assert_eq!(v["stage"], 1);
        assert_eq!(v["partitions"], json!([0, 3]));
        assert_eq!(v["cause"], "ExecutorLost");
        assert_eq!(v["executor"], 2);
    }

    #[test]
    fn names_match_the_serialized_tag_and_lines_parse_back() {
        let kinds = vec![
            EventKind::ApplicationStart {
                app_id: "app-1".into(),
                app_name: "ember".into(),
            },
            EventKind::JobStart {
                job: 0,
                stages: vec![0, 1],
                description: None,
            },
            EventKind::StageSubmitted {
                job: 0,
                stage: 0,
                stage_attempt: 0,
                partitions: vec![0, 1],
            },
            EventKind::StageCompleted {
                job: 0,
                stage: 0,
                stage_attempt: 0,
                succeeded: true,
                message: None,
            },
            EventKind::TaskStart {
                job: 0,
                stage: 0,
                stage_attempt: 0,
                partition: 0,
                attempt: 0,
                executor: 0,
                speculative: false,
            },
            EventKind::ExecutorAdded {
                executor: 0,
                cores: 2,
            },
            EventKind::ExecutorRemoved {
                executor: 0,
                message: "heartbeat timeout".into(),
            },
            EventKind::CheckpointWritten {
                job: Some(0),
                stage: Some(1),
                path: "/tmp/c".into(),
                fingerprint: "abc".into(),
                num_partitions: 4,
                rows: 10,
                bytes: 100,
            },
            EventKind::CheckpointReused {
                job: None,
                path: "/tmp/c".into(),
                fingerprint: "abc".into(),
            },
            EventKind::CheckpointRejected {
                job: None,
                path: "/tmp/c".into(),
                message: "checksum mismatch".into(),
            },
            EventKind::CacheBlockLost {
                job: Some(0),
                cache: "t".into(),
                partition: 1,
                executor: 2,
            },
            EventKind::JobEnd {
                job: 0,
                result: JobResult::Failed,
                duration_ms: 5,
                message: Some("boom".into()),
            },
            EventKind::ApplicationEnd {
                app_id: "app-1".into(),
            },
        ];
        for kind in kinds {
            let event = Event { timestamp: 1, kind };
            let text = serde_json::to_string(&event).unwrap();
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["event"], event.name(), "{text}");
            assert_eq!(v["timestamp"], 1, "{text}");
            let back: Event = serde_json::from_str(&text).unwrap();
            assert_eq!(back, event);
        }
    }
}
