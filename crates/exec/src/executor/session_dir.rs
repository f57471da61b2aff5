//! A scratch directory that lives exactly as long as a local cluster.
//!
//! Local executors keep their shuffle files here; removing the directory when the cluster is
//! dropped means an ended session leaves nothing behind in the temp dir.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use ember_planner::{EmberError, Result};

/// Distinguishes directories made by one process within the same clock tick.
static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug)]
pub struct SessionDir {
    path: PathBuf,
}

impl SessionDir {
    /// Creates a fresh, uniquely named directory under `parent` (the system temp dir if
    /// `None`).
    pub fn create(parent: Option<&Path>) -> Result<Self> {
        let parent = parent.map_or_else(std::env::temp_dir, Path::to_path_buf);
        std::fs::create_dir_all(&parent)
            .map_err(|e| EmberError::io(parent.display().to_string(), e))?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        loop {
            let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
            let path = parent.join(format!("ember-{}-{nanos:x}-{n}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(SessionDir { path }),
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
}
