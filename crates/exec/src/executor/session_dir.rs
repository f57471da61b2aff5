//! A scratch directory that lives exactly as long as a local cluster.
//!
//! Local executors keep their shuffle files here; removing the directory when the cluster is
//! dropped means an ended session leaves nothing behind in the temp dir. A process that is
//! killed cannot remove its directory, so each directory holds a `.lock` file its process
//! keeps locked, and creating a directory first removes the ones whose lock nobody holds any
//! more: a crashed or killed session's shuffle files do not pile up in the temp dir (the
//! leftover scratch directories Spark users clean by hand). The lock, not the process id,
//! says whether the owner lives, so a directory shared between containers is safe too.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use ember_planner::{EmberError, Result};

/// Distinguishes directories made by one process within the same clock tick.
static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// Held locked by the process that owns the directory, for as long as it lives.
const LOCK_FILE: &str = ".lock";

#[derive(Debug)]
pub struct SessionDir {
    path: PathBuf,
    /// Locked while this process lives; the OS releases it when the process ends.
    _lock: Option<File>,
}

impl SessionDir {
    /// Creates a fresh, uniquely named directory under `parent` (the system temp dir if
    /// `None`), after removing the directories of sessions whose process has ended.
    pub fn create(parent: Option<&Path>) -> Result<Self> {
        let parent = parent.map_or_else(std::env::temp_dir, Path::to_path_buf);
        std::fs::create_dir_all(&parent)
            .map_err(|e| EmberError::io(parent.display().to_string(), e))?;
        remove_abandoned(&parent);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        loop {
            let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
            let path = parent.join(format!("ember-{}-{nanos:x}-{n}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => {
                    let lock = lock_dir(&path);
                    return Ok(SessionDir { path, _lock: lock });
                }
                // Another process picked the same name: try the next counter value.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(EmberError::io(path.display().to_string(), e)),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Creates `dir`'s lock file, locked: locked under a temporary name first and renamed, so a
/// sweeping process never finds `.lock` unlocked while this one is still setting it up. A
/// file system without locks gets no lock file: the directory is then never swept.
fn lock_dir(dir: &Path) -> Option<File> {
    let staging = dir.join(".lock.new");
    let file = File::create(&staging).ok()?;
    file.try_lock().ok()?;
    std::fs::rename(&staging, dir.join(LOCK_FILE)).ok()?;
    Some(file)
}

/// Removes the session directories under `parent` whose lock file no process holds. Best
/// effort: anything unreadable, unlockable or not named like a session directory is left.
fn remove_abandoned(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_str().is_some_and(is_session_dir_name) {
            continue;
        }
        let dir = entry.path();
        // No lock file: made by an older Ember, or still being created. Leave it.
        let Ok(lock) = File::open(dir.join(LOCK_FILE)) else {
            continue;
        };
        if lock.try_lock().is_ok() {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// `ember-<pid>-<hex>-<n>`, as [`SessionDir::create`] names directories.
fn is_session_dir_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("ember-") else {
        return false;
    };
    let parts: Vec<&str> = rest.split('-').collect();
    matches!(parts[..], [pid, nanos, n]
        if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())
            && !nanos.is_empty() && nanos.bytes().all(|b| b.is_ascii_hexdigit())
            && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

impl Drop for SessionDir {
    fn drop(&mut self) {
        // Best effort: a failure to clean up temp files must not turn into a panic.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_is_unique_and_removed_on_drop() {
        let a = SessionDir::create(None).unwrap();
        let b = SessionDir::create(None).unwrap();
        assert_ne!(a.path(), b.path());
        std::fs::write(a.path().join("f"), b"x").unwrap();
        let path = a.path().to_path_buf();
        drop(a);
        assert!(!path.exists());
        assert!(b.path().is_dir());
    }

    #[test]
    fn abandoned_directories_are_removed_and_live_ones_kept() {
        let parent = tempfile::tempdir().unwrap();
        let live = SessionDir::create(Some(parent.path())).unwrap();
        // A killed session's directory: its lock file is there, nobody holds it.
        let abandoned = parent.path().join("ember-4242-18eb9d8563fc60fe-0");
        std::fs::create_dir_all(abandoned.join("executor-0")).unwrap();
        std::fs::write(
            abandoned.join("executor-0/stage-0-map-0-attempt-0.arrow"),
            b"x",
        )
        .unwrap();
        File::create(abandoned.join(LOCK_FILE)).unwrap();
        // Not Ember's, or from an Ember before lock files: never touched.
        let foreign = parent.path().join("ember-notes");
        let unlocked_old = parent.path().join("ember-4243-18eb9d8563fc60fe-1");
        std::fs::create_dir_all(&foreign).unwrap();
        std::fs::create_dir_all(&unlocked_old).unwrap();

        let next = SessionDir::create(Some(parent.path())).unwrap();
        assert!(!abandoned.exists(), "the abandoned directory is removed");
        assert!(live.path().is_dir(), "a live session's directory stays");
        assert!(next.path().is_dir());
        assert!(foreign.is_dir() && unlocked_old.is_dir());
    }

    #[test]
    fn session_directory_names_are_recognised_exactly() {
        assert!(is_session_dir_name("ember-123-18eb9d8563fc60fe-0"));
        for other in [
            "ember-notes",
            "ember-123-xyz-0",
            "ember-123-abc",
            "ember--abc-0",
            "ember-1-abc-0-1",
            "spark-123-abc-0",
        ] {
            assert!(!is_session_dir_name(other), "{other}");
        }
    }
}
