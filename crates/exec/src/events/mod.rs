//! Monitoring: the event log (JSON lines, one file per application) and the status tracker
//! built from it.
//!
//! - [`event`]: the typed events with the field names issue 3 fixes (`"event"`, `"stage"`,
//!   `"stageAttempt"`, `"reason"`, …).
//! - [`log`]: [`EventLog`], writing `<ember.eventLog.dir>/<app id>.jsonl` and keeping events in
//!   memory for tests and listeners.
//! - [`status`]: [`StatusTracker`], jobs / stages / tasks with failure, retry and
//!   recomputation counts, for EXPLAIN ANALYZE and the web UI.

pub mod event;
pub mod log;
pub mod status;

pub use event::{now_ms, Event, EventKind, JobResult, RecomputeCause, TaskEndReason};
pub use log::{
    new_application_id, EventListener, EventLog, DEFAULT_EVENT_LOG_DIR, EVENT_LOG_DIR_KEY,
    EVENT_LOG_ENABLED_KEY,
};
pub use status::{
    CheckpointOutcome, ExecutorStatus, JobState, JobStatus, Recomputation, StageState, StageStatus,
    Status, StatusTracker, TaskRecord,
};
