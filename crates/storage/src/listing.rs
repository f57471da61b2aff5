//! Turns a user-supplied location (a file, a folder or a glob) into the sorted list of data
//! files a table reads.
//!
//! Folders are walked recursively and names starting with `_` or `.` are skipped, as Spark and
//! Hive do: they are markers (`_SUCCESS`) or temp files of writers in progress. A folder that
//! an Ember write started (`_ember_write_started`) but never committed (`_SUCCESS`) is refused,
//! so a half-written output is never read as if it were complete.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use ember_planner::error::{EmberError, Result};

/// Marker an Ember writer creates in an output folder before writing any data file.
pub const WRITE_STARTED_MARKER: &str = "_ember_write_started";
/// Marker an Ember writer creates once every data file of the output is in place.
pub const SUCCESS_MARKER: &str = "_SUCCESS";

/// One data file of a table, with what its identity depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedFile {
    pub path: PathBuf,
    pub size: u64,
    /// Modification time in nanoseconds since the epoch (0 when the platform has none).
    pub modified_nanos: u128,
}

impl ListedFile {
    pub(crate) fn stat(path: PathBuf) -> Result<Self> {
        let meta =
            fs::metadata(&path).map_err(|e| EmberError::io(path.display().to_string(), e))?;
        let modified_nanos = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        Ok(ListedFile {
            path,
            size: meta.len(),
            modified_nanos,
        })
    }

    /// The path as text, for error messages and EXPLAIN.
    pub fn display(&self) -> String {
        self.path.display().to_string()
    }
}

/// A stable description of a file list (paths, sizes, modification times), used as a table's
/// identity in plan fingerprints.
pub fn files_identity(kind: &str, files: &[ListedFile]) -> String {
    let mut out = format!("{kind}[");
    for (i, f) in files.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!("{}:{}:{}", f.display(), f.size, f.modified_nanos));
    }
    out.push(']');
    out
}

/// True for names a reader must ignore: markers and hidden/temp files.
fn is_hidden(name: &str) -> bool {
    name.starts_with('_') || name.starts_with('.')
}

fn has_glob_chars(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Expands `location` (a file, a folder, or a glob pattern) into a sorted list of data files.
pub fn list_files(location: &str) -> Result<Vec<ListedFile>> {
    let path = Path::new(location);
    let mut files = Vec::new();
    if path.is_file() {
        files.push(path.to_path_buf());
    } else if path.is_dir() {
        walk_dir(path, &mut files)?;
    } else if has_glob_chars(location) {
        let paths = glob::glob(location)
            .map_err(|e| EmberError::Plan(format!("invalid glob pattern '{location}': {e}")))?;
        let literal_prefix_len = path
            .components()
            .take_while(|c| !has_glob_chars(&c.as_os_str().to_string_lossy()))
            .count();
        for entry in paths {
            let p = entry.map_err(|e| {
                let p = e.path().display().to_string();
                EmberError::io(p, e.into())
            })?;
            // Only the parts the pattern matched can be markers; the literal prefix (which
            // may itself be a hidden folder such as a temp dir) is the user's choice.
            let hidden = p
                .components()
                .skip(literal_prefix_len)
                .filter_map(|c| c.as_os_str().to_str())
                .any(is_hidden);
            if hidden {
                continue;
            }
            if p.is_dir() {
                walk_dir(&p, &mut files)?;
            } else {
                files.push(p);
            }
        }
    } else {
        return Err(EmberError::Plan(format!(
            "no such file or directory: {location}"
        )));
    }
    files.sort();
    files.dedup();
    if files.is_empty() {
        return Err(EmberError::Plan(format!(
            "no data files found at {location} (names starting with '_' or '.' are skipped)"
        )));
    }
    files.into_iter().map(ListedFile::stat).collect()
}

/// Collects the data files under `dir`, recursively, refusing incomplete Ember outputs.
fn walk_dir(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let io_err = |e| EmberError::io(dir.display().to_string(), e);
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err)? {
        entries.push(entry.map_err(io_err)?);
    }
    let names: Vec<String> = entries
        .iter()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if names.iter().any(|n| n == WRITE_STARTED_MARKER) && !names.iter().any(|n| n == SUCCESS_MARKER)
    {
        return Err(EmberError::Execution(format!(
            "incomplete output at {} (no {SUCCESS_MARKER})",
            dir.display()
        )));
    }
    for (entry, name) in entries.iter().zip(&names) {
        if is_hidden(name) {
            continue;
        }
        let path = entry.path();
        let file_type = entry
            .file_type()
            .map_err(|e| EmberError::io(path.display().to_string(), e))?;
        if file_type.is_dir() || (file_type.is_symlink() && path.is_dir()) {
            walk_dir(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(path, b"x").unwrap();
    }

    fn names(files: &[ListedFile], root: &Path) -> Vec<String> {
        files
            .iter()
            .map(|f| f.path.strip_prefix(root).unwrap().display().to_string())
            .collect()
    }

    #[test]
    fn folder_is_walked_sorted_and_skips_markers() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        touch(&root.join("b.csv"));
        touch(&root.join("a.csv"));
        touch(&root.join("sub/c.csv"));
        touch(&root.join("_SUCCESS"));
        touch(&root.join(".a.csv.crc"));
        touch(&root.join("_temporary/x.csv"));
        let files = list_files(root.to_str().unwrap()).unwrap();
        assert_eq!(names(&files, root), vec!["a.csv", "b.csv", "sub/c.csv"]);
    }

    #[test]
    fn single_file_and_glob() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        touch(&root.join("x1.json"));
        touch(&root.join("x2.json"));
        touch(&root.join("y.csv"));
        touch(&root.join("_x3.json"));
        touch(&root.join("_tmp/x4.json"));
        let one = list_files(root.join("y.csv").to_str().unwrap()).unwrap();
        assert_eq!(names(&one, root), vec!["y.csv"]);
        let pattern = format!("{}/*.json", root.display());
        let globbed = list_files(&pattern).unwrap();
        assert_eq!(names(&globbed, root), vec!["x1.json", "x2.json"]);
        let nested = format!("{}/*/*.json", root.display());
        assert!(list_files(&nested).is_err(), "files under _tmp are skipped");
    }

    #[test]
    fn incomplete_ember_output_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        touch(&root.join(WRITE_STARTED_MARKER));
        touch(&root.join("part-00000.parquet"));
        let err = list_files(root.to_str().unwrap()).unwrap_err().to_string();
        assert!(err.contains("incomplete output at"), "{err}");
        assert!(err.contains("no _SUCCESS"), "{err}");
        touch(&root.join(SUCCESS_MARKER));
        assert_eq!(list_files(root.to_str().unwrap()).unwrap().len(), 1);
    }

    #[test]
    fn empty_or_missing_location_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        touch(&dir.path().join("_SUCCESS"));
        let loc = dir.path().to_str().unwrap();
        let err = list_files(loc).unwrap_err().to_string();
        assert!(err.contains(loc), "{err}");
        let missing = format!("{loc}/nope.parquet");
        let err = list_files(&missing).unwrap_err().to_string();
        assert!(err.contains(&missing), "{err}");
    }

    #[test]
    fn identity_changes_with_size() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.csv");
        touch(&f);
        let before = files_identity("csv", &list_files(f.to_str().unwrap()).unwrap());
        fs::write(&f, b"longer").unwrap();
        let after = files_identity("csv", &list_files(f.to_str().unwrap()).unwrap());
        assert_ne!(before, after);
    }
}
