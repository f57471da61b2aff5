//! The event log: every event goes to the in-memory list (tests, the status tracker,
//! EXPLAIN ANALYZE) and, when `ember.eventLog.enabled`, to `<dir>/<application id>.jsonl`.
//!
//! Each event is written as one line and flushed before `post` returns, so a crashed or
//! killed application still leaves a log up to its last event — the log is most wanted
//! exactly when something went wrong.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use ember_planner::{EmberError, Result};

use super::event::{Event, EventKind};
use super::status::StatusTracker;

/// `SET ember.eventLog.enabled = true`.
pub const EVENT_LOG_ENABLED_KEY: &str = "ember.eventLog.enabled";
/// `SET ember.eventLog.dir = 'path'`.
pub const EVENT_LOG_DIR_KEY: &str = "ember.eventLog.dir";
/// Where logs go when enabled without a dir (relative to the working directory, like the
/// default checkpoint dir).
pub const DEFAULT_EVENT_LOG_DIR: &str = "ember-events";

/// Receives every posted event, in posting order. Called with the log's lock held, so a
/// listener must be quick and must not call back into the [`EventLog`].
pub trait EventListener: Send + Sync {
    fn on_event(&self, event: &Event);
}

/// Shared handle; cloning shares the same log.
#[derive(Clone)]
pub struct EventLog {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    app_id: String,
    file: Option<FileSink>,
    events: Mutex<Vec<Event>>,
    listeners: Mutex<Vec<Arc<dyn EventListener>>>,
    /// The application's status, attached on first request (see [`EventLog::status_tracker`]).
    tracker: OnceLock<Arc<StatusTracker>>,
}

struct FileSink {
    path: PathBuf,
    file: Mutex<File>,
    /// The first write failure; later events are still attempted.
    error: Mutex<Option<String>>,
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            None => f.write_str("EventLog(disabled)"),
            Some(inner) => f
                .debug_struct("EventLog")
                .field("app_id", &inner.app_id)
                .field("path", &inner.file.as_ref().map(|s| &s.path))
                .finish(),
        }
    }
}

impl EventLog {
    /// Records nothing: `post` is a no-op and `events()` is empty.
    pub fn disabled() -> Self {
        EventLog { inner: None }
    }

    /// Keeps events in memory only (tests, the status tracker without a log dir).
    pub fn in_memory(app_id: impl Into<String>) -> Self {
        EventLog {
            inner: Some(Arc::new(Inner {
                app_id: app_id.into(),
                file: None,
                events: Mutex::new(Vec::new()),
                listeners: Mutex::new(Vec::new()),
                tracker: OnceLock::new(),
            })),
        }
    }

    /// Keeps events in memory and appends them to `<dir>/<app_id>.jsonl`, creating `dir`.
    pub fn to_dir(dir: impl AsRef<Path>, app_id: impl Into<String>) -> Result<Self> {
        let app_id = app_id.into();
        validate_app_id(&app_id)?;
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| {
            EmberError::io(dir.display().to_string(), e)
                .context(format!("creating the event log dir ({EVENT_LOG_DIR_KEY})"))
        })?;
        let path = dir.join(format!("{app_id}.jsonl"));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| {
                EmberError::io(path.display().to_string(), e).context("opening the event log")
            })?;
        Ok(EventLog {
            inner: Some(Arc::new(Inner {
                app_id,
                file: Some(FileSink {
                    path,
                    file: Mutex::new(file),
                    error: Mutex::new(None),
                }),
                events: Mutex::new(Vec::new()),
                listeners: Mutex::new(Vec::new()),
                tracker: OnceLock::new(),
            })),
        })
    }

    /// Builds the log the session settings ask for: a file log when
    /// `ember.eventLog.enabled` is true, else an in-memory one (the status tracker and
    /// EXPLAIN ANALYZE work either way).
    pub fn from_settings(get: impl Fn(&str) -> Option<String>, app_id: &str) -> Result<Self> {
        let enabled = match get(EVENT_LOG_ENABLED_KEY) {
            None => false,
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "on" | "yes" => true,
                "false" | "0" | "off" | "no" => false,
                _ => {
                    return Err(EmberError::Config(format!(
                        "{EVENT_LOG_ENABLED_KEY} must be true or false, found '{v}'"
                    )))
                }
            },
        };
        if enabled {
            let dir = get(EVENT_LOG_DIR_KEY).unwrap_or_else(|| DEFAULT_EVENT_LOG_DIR.to_string());
            Self::to_dir(dir, app_id)
        } else {
            Ok(Self::in_memory(app_id))
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    pub fn app_id(&self) -> Option<&str> {
        self.inner.as_ref().map(|i| i.app_id.as_str())
    }

    /// The log file, when writing one.
    pub fn path(&self) -> Option<&Path> {
        self.inner
            .as_ref()
            .and_then(|i| i.file.as_ref())
            .map(|s| s.path.as_path())
    }

    /// Stamps `kind` with the current time and posts it.
    pub fn post(&self, kind: EventKind) {
        if self.inner.is_some() {
            self.post_event(Event::now(kind));
        }
    }

    /// Posts an already stamped event. A write failure does not fail the caller (losing the
    /// log must not lose the query); it is kept and reported by [`EventLog::check`].
    pub fn post_event(&self, event: Event) {
        let Some(inner) = &self.inner else { return };
        // The memory list's lock orders events: file lines, the list and listeners all see
        // the same order even when tasks post concurrently.
        let mut events = inner.events.lock();
        if let Some(sink) = &inner.file {
            sink.write(&event);
        }
        for listener in inner.listeners.lock().iter() {
            listener.on_event(&event);
        }
        events.push(event);
    }

    /// Every event posted so far, in order.
    pub fn events(&self) -> Vec<Event> {
        self.inner
            .as_ref()
            .map(|i| i.events.lock().clone())
            .unwrap_or_default()
    }

    /// Events posted so far that satisfy `pred` (cheaper than cloning them all).
    pub fn events_where(&self, pred: impl Fn(&Event) -> bool) -> Vec<Event> {
        self.inner
            .as_ref()
            .map(|i| {
                i.events
                    .lock()
                    .iter()
                    .filter(|e| pred(e))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Registers a listener; it first receives every event already posted, so a listener
    /// added late (the web UI) still sees the whole application.
    pub fn add_listener(&self, listener: Arc<dyn EventListener>) {
        let Some(inner) = &self.inner else { return };
        let events = inner.events.lock();
        for event in events.iter() {
            listener.on_event(event);
        }
        inner.listeners.lock().push(listener);
    }

    /// The application's live status (jobs, stages, tasks, failures, retries), kept by one
    /// [`StatusTracker`] listening to this log. Attached on the first call and fed every
    /// event posted before it, so whoever asks first — EXPLAIN ANALYZE, `Session::status`,
    /// the web UI — sees the whole application, whether or not a log file is written.
    /// `None` for a disabled log, which records nothing.
    pub fn status_tracker(&self) -> Option<Arc<StatusTracker>> {
        let inner = self.inner.as_ref()?;
        let tracker = inner.tracker.get_or_init(|| {
            let tracker = Arc::new(StatusTracker::new());
            self.add_listener(tracker.clone());
            tracker
        });
        Some(tracker.clone())
    }

    /// The first write error, if writing the log file ever failed.
    pub fn check(&self) -> Result<()> {
        let Some(sink) = self.inner.as_ref().and_then(|i| i.file.as_ref()) else {
            return Ok(());
        };
        match sink.error.lock().as_ref() {
            None => Ok(()),
            Some(message) => Err(EmberError::Execution(format!(
                "writing the event log {} failed: {message}",
                sink.path.display()
            ))),
        }
    }
}

impl FileSink {
    fn write(&self, event: &Event) {
        let result = serde_json::to_vec(event)
            .map_err(|e| e.to_string())
            .and_then(|mut line| {
                line.push(b'\n');
                let mut file = self.file.lock();
                // One write_all per line on an append-mode file, then flush to the OS: a
                // crash after `post` returns cannot lose the event.
                file.write_all(&line)
                    .and_then(|()| file.flush())
                    .map_err(|e| e.to_string())
            });
        if let Err(message) = result {
            self.error.lock().get_or_insert(message);
        }
    }
}

/// The id becomes a file name: no separators or parent references.
fn validate_app_id(app_id: &str) -> Result<()> {
    let ok = !app_id.is_empty()
        && app_id != "."
        && app_id != ".."
        && app_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(EmberError::Internal(format!(
            "application id '{app_id}' is not a safe file name"
        )))
    }
}

/// A fresh application id, `app-<yyyyMMddHHmmss>-<pid>-<n>` (Spark's shape plus the process
/// id, so concurrent processes sharing a log dir never collide).
pub fn new_application_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "app-{}-{}-{n:04}",
        chrono::Utc::now().format("%Y%m%d%H%M%S"),
        std::process::id()
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::io::BufRead;

    use serde_json::Value;

    use super::*;
    use crate::events::event::TaskEndReason;

    fn task_end(partition: usize, reason: TaskEndReason) -> EventKind {
        EventKind::TaskEnd {
            job: 0,
            stage: 1,
            stage_attempt: 0,
            partition,
            attempt: 0,
            executor: 2,
            speculative: false,
            reason,
            duration_ms: 3,
            rows: 0,
            message: (reason != TaskEndReason::Success).then(|| "boom".to_string()),
            map_stage: None,
            map_partition: None,
        }
    }

    fn lines(path: &Path) -> Vec<Value> {
        std::io::BufReader::new(File::open(path).unwrap())
            .lines()
            .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
            .collect()
    }

    #[test]
    fn writes_one_json_object_per_line_with_the_exact_keys() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::to_dir(dir.path().join("events"), "app-test-1").unwrap();
        log.post(EventKind::ApplicationStart {
            app_id: "app-test-1".into(),
            app_name: "t".into(),
        });
        log.post(task_end(4, TaskEndReason::ExceptionFailure));
        log.post(EventKind::PartitionsRecomputed {
            job: 0,
            stage: 0,
            partitions: vec![1, 2],
            cause: crate::events::RecomputeCause::FetchFailed,
            executor: None,
        });
        let path = dir.path().join("events").join("app-test-1.jsonl");
        assert_eq!(log.path(), Some(path.as_path()));
        // Written and flushed before post returned: read it while the log is still open.
        let values = lines(&path);
        assert_eq!(values.len(), 3);
        let keys =
            |v: &Value| -> BTreeSet<String> { v.as_object().unwrap().keys().cloned().collect() };
        assert_eq!(values[0]["event"], "ApplicationStart");
        let task_keys: BTreeSet<String> = [
            "timestamp",
            "event",
            "job",
            "stage",
            "stageAttempt",
            "partition",
            "attempt",
            "executor",
            "speculative",
            "reason",
            "durationMs",
            "rows",
            "message",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(keys(&values[1]), task_keys);
        assert_eq!(values[1]["reason"], "ExceptionFailure");
        assert_eq!(values[1]["message"], "boom");
        let recompute_keys: BTreeSet<String> =
            ["timestamp", "event", "job", "stage", "partitions", "cause"]
                .into_iter()
                .map(String::from)
                .collect();
        assert_eq!(keys(&values[2]), recompute_keys);
        assert!(values[2]["timestamp"].as_u64().unwrap() > 1_600_000_000_000);
        // The lines parse back into the same events.
        let back: Vec<Event> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(back, log.events());
        log.check().unwrap();
    }

    #[test]
    fn disabled_log_records_nothing() {
        let log = EventLog::disabled();
        log.post(task_end(0, TaskEndReason::Success));
        assert!(log.events().is_empty());
        assert!(!log.is_enabled());
        assert!(log.path().is_none());
    }

    #[test]
    fn from_settings_chooses_file_or_memory() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let on = EventLog::from_settings(
            |k| match k {
                EVENT_LOG_ENABLED_KEY => Some("TRUE".into()),
                EVENT_LOG_DIR_KEY => Some(d.clone()),
                _ => None,
            },
            "app-x",
        )
        .unwrap();
        assert_eq!(on.path(), Some(dir.path().join("app-x.jsonl").as_path()));
        let off = EventLog::from_settings(|_| None, "app-y").unwrap();
        assert!(off.is_enabled() && off.path().is_none());
        let bad = EventLog::from_settings(
            |k| (k == EVENT_LOG_ENABLED_KEY).then(|| "maybe".into()),
            "app-z",
        );
        assert!(matches!(bad, Err(EmberError::Config(_))));
        assert!(EventLog::to_dir(dir.path(), "../escape").is_err());
    }

    #[test]
    fn concurrent_posts_keep_whole_lines_and_one_order() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::to_dir(dir.path(), "app-par").unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        log.post(task_end(t * 100 + i, TaskEndReason::Success));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let file_partitions: Vec<u64> = lines(&dir.path().join("app-par.jsonl"))
            .iter()
            .map(|v| v["partition"].as_u64().unwrap())
            .collect();
        let memory_partitions: Vec<u64> = log
            .events()
            .iter()
            .map(|e| match e.kind {
                EventKind::TaskEnd { partition, .. } => partition as u64,
                _ => u64::MAX,
            })
            .collect();
        assert_eq!(file_partitions.len(), 200);
        assert_eq!(file_partitions, memory_partitions);
    }

    #[test]
    fn late_listeners_see_earlier_events() {
        struct Count(Mutex<usize>);
        impl EventListener for Count {
            fn on_event(&self, _: &Event) {
                *self.0.lock() += 1;
            }
        }
        let log = EventLog::in_memory("app-l");
        log.post(task_end(0, TaskEndReason::Success));
        let count = Arc::new(Count(Mutex::new(0)));
        log.add_listener(count.clone());
        log.post(task_end(1, TaskEndReason::Success));
        assert_eq!(*count.0.lock(), 2);
        assert_eq!(
            log.events_where(|e| matches!(e.kind, EventKind::TaskEnd { partition: 1, .. }))
                .len(),
            1
        );
    }

    #[test]
    fn status_tracker_follows_a_log_without_a_file() {
        let log = EventLog::in_memory("app-status");
        log.post(task_end(0, TaskEndReason::ExceptionFailure));
        let tracker = log.status_tracker().expect("an enabled log has a tracker");
        log.post(task_end(0, TaskEndReason::Success));
        // One tracker per log, fed the event posted before it was asked for and the one after.
        assert!(Arc::ptr_eq(&tracker, &log.status_tracker().unwrap()));
        let status = tracker.snapshot();
        let stage = status.job(0).unwrap().stage(1).unwrap();
        assert_eq!(stage.tasks.len(), 2);
        assert_eq!(stage.failed_tasks(), 1);
        assert!(log.path().is_none());
        assert!(EventLog::disabled().status_tracker().is_none());
    }

    #[test]
    fn application_ids_are_unique_safe_file_names() {
        let a = new_application_id();
        let b = new_application_id();
        assert_ne!(a, b);
        assert!(a.starts_with("app-"));
        validate_app_id(&a).unwrap();
    }
}
