//! Synchronous access to the object store that holds checkpoints.
//!
//! Ember's operators and tasks are synchronous, but `object_store` is async. Every call is
//! spawned on one small process-wide tokio runtime and the calling thread waits for it.
//! Spawning (instead of `Runtime::block_on`) keeps this safe to call from any thread, including
//! a thread that is itself inside some other tokio runtime, where `block_on` would panic.
//!
//! A local directory skips the runtime for the calls on a checkpoint's critical path (put,
//! get, size, rename): they are plain file-system calls on the calling thread. Through the
//! runtime, every task writing a partition and the driver reading the files back queued on
//! its one worker and its blocking pool — about a tenth of a checkpointed query's time at
//! TPC-H SF 1, by measurement.

use std::fmt;
use std::future::Future;
use std::io::{self, Read, Write};
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use ember_planner::error::{EmberError, Result};

use crate::checksum::Checksum;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    GetOptions, ObjectStore, PutOptions, PutPayload, RenameOptions, RenameTargetMode,
};
use tokio::runtime::Runtime;

/// Bytes read at a time when a local file is checksummed ([`Objects::checksum`]).
const READ_BUFFER: usize = 128 * 1024;

/// The runtime every object-store call runs on, created on first use and kept for the
/// lifetime of the process (dropping a runtime from inside async code would panic).
fn runtime() -> Result<&'static Runtime> {
    static RUNTIME: OnceLock<std::result::Result<Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("ember-object-store")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| EmberError::Execution(format!("cannot start the object store runtime: {e}")))
}

/// Runs `fut` on the object-store runtime and waits for its result.
fn wait<T: Send + 'static>(
    fut: impl Future<Output = object_store::Result<T>> + Send + 'static,
) -> Result<object_store::Result<T>> {
    // A plain channel, not an executor's `block_on`: callers may themselves run inside an
    // async executor (a test harness, an embedding application), where nesting one panics.
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime()?.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().map_err(|_| {
        EmberError::Internal("object store call did not finish: its task was dropped".into())
    })
}

/// One folder of an object store (a local directory, `file://…`, `memory://…`, or a cloud
/// URL when Ember is built with that store), addressed by paths relative to it.
#[derive(Clone)]
pub(crate) struct Objects {
    store: Arc<dyn ObjectStore>,
    /// The same store when it is a local directory, for direct file-system calls.
    local: Option<Arc<LocalFileSystem>>,
    root: Path,
    /// The location as the user gave it, for error messages.
    url: String,
}

impl fmt::Debug for Objects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Objects").field("url", &self.url).finish()
    }
}

impl Objects {
    /// Opens `location`: a plain path (created if missing), a `file://` URL, or any URL
    /// `object_store::parse_url` understands with the features Ember was built with.
    pub fn open(location: &str) -> Result<Self> {
        let is_url = location.contains("://");
        if !is_url || location.starts_with("file://") {
            let dir = if is_url {
                let url = url::Url::parse(location)
                    .map_err(|e| EmberError::Config(format!("invalid URL '{location}': {e}")))?;
                url.to_file_path().map_err(|_| {
                    EmberError::Config(format!("'{location}' is not a local file URL"))
                })?
            } else {
                FsPath::new(location).to_path_buf()
            };
            std::fs::create_dir_all(&dir)
                .map_err(|e| EmberError::io(dir.display().to_string(), e))?;
            let store = LocalFileSystem::new_with_prefix(&dir)
                .map_err(|e| EmberError::Execution(format!("cannot open '{location}': {e}")))?
                // Removing a checkpoint's last file removes its folder too: vacuum leaves
                // no empty directories behind.
                .with_automatic_cleanup(true);
            let store = Arc::new(store);
            return Ok(Objects {
                store: store.clone(),
                local: Some(store),
                root: Path::default(),
                url: location.to_string(),
            });
        }
        let url = url::Url::parse(location)
            .map_err(|e| EmberError::Config(format!("invalid URL '{location}': {e}")))?;
        let (store, root) = object_store::parse_url(&url).map_err(|e| {
            EmberError::Config(format!(
                "cannot open checkpoint location '{location}': {e} (Ember is built with \
                 local file and in-memory object stores only)"
            ))
        })?;
        Ok(Objects {
            store: Arc::from(store),
            local: None,
            root,
            url: location.to_string(),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The full store path of `relative` (a `/`-separated path below the root).
    pub fn path(&self, relative: &str) -> Path {
        relative
            .split('/')
            .filter(|part| !part.is_empty())
            .fold(self.root.clone(), |path, part| path.join(part))
    }

    /// A path below the root, relative to it (for error messages and listings).
    pub fn relative(&self, path: &Path) -> String {
        match path.prefix_match(&self.root) {
            Some(parts) => parts
                .map(|p| p.as_ref().to_string())
                .collect::<Vec<_>>()
                .join("/"),
            None => path.to_string(),
        }
    }

    fn error(&self, op: &str, path: &Path, e: object_store::Error) -> EmberError {
        EmberError::Execution(format!(
            "checkpoint store {}: cannot {op} {}: {e}",
            self.url,
            self.relative(path)
        ))
    }

    /// The local file behind `path`, when the store is a local directory.
    fn local_file(&self, path: &Path) -> Option<Result<PathBuf>> {
        let local = self.local.as_ref()?;
        Some(
            local
                .path_to_filesystem(path)
                .map_err(|e| self.error("locate", path, e)),
        )
    }

    pub fn io_error(&self, op: &str, path: &Path, e: io::Error) -> EmberError {
        EmberError::Execution(format!(
            "checkpoint store {}: cannot {op} {}: {e}",
            self.url,
            self.relative(path)
        ))
    }

    /// Creates (or truncates) the object `path` as a local file open for reading and
    /// writing, so a caller can stream into it; `None` when the store is not a local
    /// directory. Unlike [`put`](Self::put) this is not atomic: callers write to a temp name
    /// and [`rename`](Self::rename) it when complete.
    pub fn create_local(&self, path: &Path) -> Option<Result<std::fs::File>> {
        let file = self.local_file(path)?;
        Some(file.and_then(|file| create_file(&file).map_err(|e| self.io_error("create", path, e))))
    }

    /// Writes `data` as the object `path`, replacing any previous object. Each store makes a
    /// single put atomic (a local file is staged under a hidden name and renamed; S3 puts
    /// are atomic).
    pub fn put(&self, path: &Path, data: Bytes) -> Result<()> {
        if let Some(file) = self.local_file(path) {
            return put_file(&file?, &data).map_err(|e| self.io_error("write", path, e));
        }
        let store = self.store.clone();
        let location = path.clone();
        wait(async move {
            store
                .put_opts(&location, PutPayload::from(data), PutOptions::default())
                .await
        })?
        .map(|_| ())
        .map_err(|e| self.error("write", path, e))
    }

    /// The whole object, or `None` when it does not exist.
    pub fn get(&self, path: &Path) -> Result<Option<Bytes>> {
        if let Some(file) = self.local_file(path) {
            return match std::fs::read(file?) {
                Ok(data) => Ok(Some(Bytes::from(data))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(self.io_error("read", path, e)),
            };
        }
        let store = self.store.clone();
        let location = path.clone();
        match wait(async move {
            let result = store.get_opts(&location, GetOptions::default()).await?;
            result.bytes().await
        })? {
            Ok(bytes) => Ok(Some(bytes)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("read", path, e)),
        }
    }

    /// The object's size and [`Checksum`], or `None` when it does not exist. A local file is
    /// read through one small buffer rather than whole into memory: a checkpoint's files are
    /// checked right after they are written, and a fresh buffer the size of each file cost
    /// a page fault per 4 KiB. The buffer is [`READ_BUFFER`] bytes, small enough to stay
    /// in L2 cache between the kernel's copy into it and the checksum reading it.
    pub fn checksum(&self, path: &Path) -> Result<Option<(u64, u64)>> {
        let Some(file) = self.local_file(path) else {
            return Ok(self
                .get(path)?
                .map(|data| (data.len() as u64, Checksum::of(&data))));
        };
        let mut file = match std::fs::File::open(file?) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io_error("read", path, e)),
        };
        let mut buffer = vec![0u8; READ_BUFFER];
        let mut sum = Checksum::new();
        loop {
            match file.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => sum.update(&buffer[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io_error("read", path, e)),
            }
        }
        Ok(Some((sum.len(), sum.finish())))
    }

    /// The object's size in bytes, or `None` when it does not exist.
    pub fn size(&self, path: &Path) -> Result<Option<u64>> {
        if let Some(file) = self.local_file(path) {
            return match std::fs::metadata(file?) {
                Ok(meta) if meta.is_file() => Ok(Some(meta.len())),
                Ok(_) => Ok(None),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(self.io_error("stat", path, e)),
            };
        }
        let store = self.store.clone();
        let location = path.clone();
        let options = GetOptions {
            head: true,
            ..GetOptions::default()
        };
        match wait(async move { store.get_opts(&location, options).await.map(|r| r.meta) })? {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("stat", path, e)),
        }
    }

    /// Moves `from` to `to`, replacing `to` if it exists.
    pub fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        if let (Some(source), Some(target)) = (self.local_file(from), self.local_file(to)) {
            let op = || format!("rename to {} from", self.relative(to));
            let (source, target) = (source?, target?);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|e| self.io_error(&op(), from, e))?;
            }
            return std::fs::rename(source, target).map_err(|e| self.io_error(&op(), from, e));
        }
        let store = self.store.clone();
        let (source, target) = (from.clone(), to.clone());
        let options = RenameOptions {
            target_mode: RenameTargetMode::Overwrite,
            ..RenameOptions::default()
        };
        wait(async move { store.rename_opts(&source, &target, options).await })?
            .map_err(|e| self.error(&format!("rename to {} from", self.relative(to)), from, e))
    }

    /// Deletes `path`; a missing object is not an error (deleting is idempotent).
    pub fn delete(&self, path: &Path) -> Result<()> {
        let store = self.store.clone();
        let location = path.clone();
        let result = wait(async move {
            let one = futures::stream::iter([Ok(location)]);
            store
                .delete_stream(Box::pin(one))
                .try_collect::<Vec<_>>()
                .await
        })?;
        match result {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("delete", path, e)),
        }
    }

    /// Every object below `prefix`, recursively, with its size.
    pub fn list(&self, prefix: &Path) -> Result<Vec<(Path, u64)>> {
        let stream = self.store.list(Some(prefix));
        let found = wait(async move { stream.try_collect::<Vec<_>>().await })?
            .map_err(|e| self.error("list", prefix, e))?;
        Ok(found.into_iter().map(|m| (m.location, m.size)).collect())
    }

    /// The names of the folders directly below `prefix`.
    pub fn list_folders(&self, prefix: &Path) -> Result<Vec<String>> {
        let store = self.store.clone();
        let location = prefix.clone();
        let listed = wait(async move { store.list_with_delimiter(Some(&location)).await })?;
        let listed = match listed {
            Ok(listed) => listed,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(self.error("list", prefix, e)),
        };
        Ok(listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect())
    }
}

/// Writes `data` to `file` atomically: to a hidden staging file in the same folder (readers
/// skip names starting with `.`), then renamed over `file`.
fn put_file(file: &FsPath, data: &[u8]) -> io::Result<()> {
    static STAGED: AtomicU64 = AtomicU64::new(0);
    let folder = file.parent().unwrap_or(FsPath::new("."));
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    let staging = folder.join(format!(
        ".{name}.{}-{}.staging",
        std::process::id(),
        STAGED.fetch_add(1, Ordering::Relaxed)
    ));
    let written = create_file(&staging)
        .and_then(|mut f| f.write_all(data))
        .and_then(|()| std::fs::rename(&staging, file));
    if written.is_err() {
        let _ = std::fs::remove_file(&staging);
    }
    written
}

/// Creates (or truncates) `file`, and its folder if missing, open for reading and writing
/// (readable so an injected fault can damage what was written in place).
fn create_file(file: &FsPath) -> io::Result<std::fs::File> {
    if let Some(folder) = file.parent() {
        std::fs::create_dir_all(folder)?;
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_directory_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("new/nested");
        let objects = Objects::open(root.to_str().unwrap()).unwrap();
        let a = objects.path("x/_a.bin");
        let b = objects.path("x/b.bin");
        objects.put(&a, Bytes::from_static(b"hello")).unwrap();
        assert_eq!(objects.size(&a).unwrap(), Some(5));
        let names: Vec<_> = std::fs::read_dir(root.join("x"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["_a.bin"], "no staging file is left behind");
        assert_eq!(
            objects.size(&objects.path("x")).unwrap(),
            None,
            "a folder is no object"
        );
        objects.rename(&a, &b).unwrap();
        assert_eq!(objects.get(&a).unwrap(), None);
        assert_eq!(objects.get(&b).unwrap().as_deref(), Some(&b"hello"[..]));
        assert!(root.join("x/b.bin").is_file(), "objects are plain files");
        assert_eq!(objects.list_folders(&objects.path("")).unwrap(), vec!["x"]);
        let listed = objects.list(&objects.path("x")).unwrap();
        assert_eq!(listed, vec![(b.clone(), 5)]);
        objects.delete(&b).unwrap();
        objects.delete(&b).unwrap();
        assert!(!root.join("x").exists(), "empty folders are cleaned up");
    }

    #[test]
    fn file_and_memory_urls_open() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let objects = Objects::open(&url).unwrap();
        objects
            .put(&objects.path("f"), Bytes::from_static(b"1"))
            .unwrap();
        assert!(dir.path().join("f").is_file());

        let memory = Objects::open("memory:///ckpt").unwrap();
        let p = memory.path("a/b");
        memory.put(&p, Bytes::from_static(b"xy")).unwrap();
        assert_eq!(memory.size(&p).unwrap(), Some(2));
        assert_eq!(memory.relative(&p), "a/b");
    }

    #[test]
    fn unsupported_url_says_why() {
        // Builds without the `aws` object_store feature cannot open S3; the error names the
        // location and why instead of failing later on first use.
        if let Err(e) = Objects::open("s3://bucket/ckpt") {
            let err = e.to_string();
            assert!(err.contains("s3://bucket/ckpt"), "{err}");
        }
        assert!(Objects::open("nosuchscheme://x").is_err());
    }
}
