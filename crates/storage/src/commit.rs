//! The file side of exactly-once output (`COPY … TO`, `write_parquet`, `CREATE TABLE AS`),
//! the Hadoop/Spark commit protocol:
//!
//! ```text
//! driver   setup_job(dir)        dir/_ember_write_started        (readers now refuse dir)
//! task     task_temp_path(p, a)  dir/_temporary/<a>/part-<p>.parquet   (each attempt its own)
//! task     can_commit(p, a)? ──► CommitCoordinator (driver): first asker wins per partition
//! task     commit_task(p, a)     rename to dir/part-<p>.parquet  (only the authorised attempt)
//! driver   commit_job(n)         all n parts present → remove _temporary → dir/_SUCCESS last
//!          abort_job()           remove everything this job wrote
//! ```
//!
//! Retries and speculative copies write to their own temp paths, so they never collide; only
//! one attempt per partition renames into place, so no row is written twice; and until
//! `_SUCCESS` exists, [`crate::listing`] reports the folder as incomplete instead of reading a
//! partial result.

use std::collections::HashMap;
use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use ember_planner::error::{EmberError, Result};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::listing::{SUCCESS_MARKER, WRITE_STARTED_MARKER};

/// Folder of task attempts' uncommitted files.
pub const TEMPORARY_DIR: &str = "_temporary";

/// The committed file name of `partition`.
pub fn part_file_name(partition: usize) -> String {
    format!("part-{partition:05}.parquet")
}

/// True for the names [`part_file_name`] produces: what `abort_job` may delete.
fn is_part_file_name(name: &str) -> bool {
    name.strip_prefix("part-")
        .and_then(|rest| rest.strip_suffix(".parquet"))
        .is_some_and(|digits| digits.len() >= 5 && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// What [`OutputCommitter::commit_task`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskCommit {
    /// This attempt's file is now the partition's output.
    Committed,
    /// The partition was already committed (by an attempt whose success report was lost);
    /// this attempt's file was discarded, so the partition is still written exactly once.
    AlreadyCommitted,
}

fn io_err(path: &Path, e: std::io::Error) -> EmberError {
    EmberError::io(path.display().to_string(), e)
}

/// Removes a folder tree; one that is already gone is fine.
fn remove_tree(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(io_err(path, e)),
        _ => Ok(()),
    }
}

/// Removes a file; one that is already gone is fine.
fn remove_file(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(io_err(path, e)),
        _ => Ok(()),
    }
}

/// Writes an (empty) marker file and makes it durable before returning.
fn write_marker(path: &Path) -> Result<()> {
    let mut file = fs::File::create(path).map_err(|e| io_err(path, e))?;
    file.flush().map_err(|e| io_err(path, e))?;
    file.sync_all().map_err(|e| io_err(path, e))
}

/// The output folder of one write job. Plain data: the driver creates it with
/// [`setup_job`](Self::setup_job); tasks (in any process) use [`attach`](Self::attach).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputCommitter {
    dir: PathBuf,
    /// Whether `setup_job` created `dir` (then `abort_job` removes it too).
    created_dir: bool,
}

impl OutputCommitter {
    /// Prepares `dir` for a new output: refuses a folder that already holds data or a
    /// committed output (Spark's default `ErrorIfExists`), clears what a crashed earlier
    /// write left (hidden temp files, markers), and marks the write as started.
    pub fn setup_job(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        let created_dir = !dir.exists();
        if !created_dir {
            let entries = fs::read_dir(&dir).map_err(|e| io_err(&dir, e))?;
            for entry in entries {
                let name = entry.map_err(|e| io_err(&dir, e))?.file_name();
                let name = name.to_string_lossy();
                if name == SUCCESS_MARKER || !(name.starts_with('_') || name.starts_with('.')) {
                    return Err(EmberError::Plan(format!(
                        "output folder {} already holds data ({name}); remove it or choose \
                         another folder",
                        dir.display()
                    )));
                }
            }
            remove_tree(&dir.join(TEMPORARY_DIR))?;
        }
        fs::create_dir_all(dir.join(TEMPORARY_DIR)).map_err(|e| io_err(&dir, e))?;
        write_marker(&dir.join(WRITE_STARTED_MARKER))?;
        Ok(OutputCommitter { dir, created_dir })
    }

    /// The committer of a job the driver already set up: what a task uses.
    pub fn attach(dir: impl Into<PathBuf>) -> Self {
        OutputCommitter {
            dir: dir.into(),
            created_dir: false,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where `attempt` of `partition` writes its file (its folder is created): a path no
    /// other attempt uses and readers skip.
    pub fn task_temp_path(&self, partition: usize, attempt: usize) -> Result<PathBuf> {
        let folder = self.dir.join(TEMPORARY_DIR).join(attempt.to_string());
        fs::create_dir_all(&folder).map_err(|e| io_err(&folder, e))?;
        Ok(folder.join(part_file_name(partition)))
    }

    fn temp_path(&self, partition: usize, attempt: usize) -> PathBuf {
        self.dir
            .join(TEMPORARY_DIR)
            .join(attempt.to_string())
            .join(part_file_name(partition))
    }

    /// Where `partition`'s committed file is.
    pub fn final_path(&self, partition: usize) -> PathBuf {
        self.dir.join(part_file_name(partition))
    }

    /// Moves the attempt's file into place. Call only after the driver's
    /// [`CommitCoordinator::can_commit`] said yes. The move never replaces a committed file
    /// (a hard link fails if the name exists), so even a wrongly authorised second attempt
    /// cannot duplicate or swap a partition.
    pub fn commit_task(&self, partition: usize, attempt: usize) -> Result<TaskCommit> {
        let temp = self.temp_path(partition, attempt);
        let target = self.final_path(partition);
        if !temp.is_file() {
            return Err(EmberError::Execution(format!(
                "cannot commit partition {partition} attempt {attempt}: its output {} is missing",
                temp.display()
            )));
        }
        let outcome = match fs::hard_link(&temp, &target) {
            Ok(()) => TaskCommit::Committed,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => TaskCommit::AlreadyCommitted,
            // File systems without hard links: a rename guarded by an existence check.
            Err(_) if target.exists() => TaskCommit::AlreadyCommitted,
            Err(_) => {
                fs::rename(&temp, &target).map_err(|e| io_err(&target, e))?;
                return Ok(TaskCommit::Committed);
            }
        };
        remove_file(&temp)?;
        Ok(outcome)
    }

    /// Discards the attempt's file (failed, killed, or denied the commit).
    pub fn abort_task(&self, partition: usize, attempt: usize) -> Result<()> {
        remove_file(&self.temp_path(partition, attempt))?;
        // The attempt's folder, if now empty; other partitions' files keep it alive.
        let _ = fs::remove_dir(self.dir.join(TEMPORARY_DIR).join(attempt.to_string()));
        Ok(())
    }

    /// Commits the job once every one of `num_partitions` partitions is committed: removes
    /// `_temporary` and writes `_SUCCESS` last, the point from which readers see the output.
    pub fn commit_job(&self, num_partitions: usize) -> Result<()> {
        let missing: Vec<usize> = (0..num_partitions)
            .filter(|&p| !self.final_path(p).is_file())
            .collect();
        if !missing.is_empty() {
            return Err(EmberError::Execution(format!(
                "cannot commit the output at {}: partitions {missing:?} were never committed",
                self.dir.display()
            )));
        }
        remove_tree(&self.dir.join(TEMPORARY_DIR))?;
        write_marker(&self.dir.join(SUCCESS_MARKER))
    }

    /// Removes everything the job wrote (temp files, committed parts, markers, and the
    /// folder if the job created it), so a failed job leaves nothing to read.
    pub fn abort_job(&self) -> Result<()> {
        remove_tree(&self.dir.join(TEMPORARY_DIR))?;
        if self.dir.is_dir() {
            for entry in fs::read_dir(&self.dir).map_err(|e| io_err(&self.dir, e))? {
                let entry = entry.map_err(|e| io_err(&self.dir, e))?;
                if is_part_file_name(&entry.file_name().to_string_lossy()) {
                    remove_file(&entry.path())?;
                }
            }
        }
        remove_file(&self.dir.join(SUCCESS_MARKER))?;
        remove_file(&self.dir.join(WRITE_STARTED_MARKER))?;
        if self.created_dir {
            // Only if empty: never delete files this job did not write.
            let _ = fs::remove_dir(&self.dir);
        }
        Ok(())
    }
}

/// The driver's arbiter of which task attempt may commit each partition (Spark's
/// `OutputCommitCoordinator`): the first attempt to ask wins; every other attempt is denied
/// (and ends as `CommitDenied`) unless the winner fails before committing.
#[derive(Debug, Default)]
pub struct CommitCoordinator {
    winners: Mutex<HashMap<usize, usize>>,
}

impl CommitCoordinator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `attempt` may commit `partition`. Asking again with the winning attempt
    /// answers yes again (a retried RPC must not deny the winner).
    pub fn can_commit(&self, partition: usize, attempt: usize) -> bool {
        *self.winners.lock().entry(partition).or_insert(attempt) == attempt
    }

    /// Reports that `attempt` of `partition` failed (or its executor was lost). If it was the
    /// authorised attempt, the partition is open again for the next attempt to ask. Call it
    /// only for attempts that did not finish their commit: a committed partition stays
    /// committed (and [`OutputCommitter::commit_task`] would refuse to replace it anyway).
    pub fn attempt_failed(&self, partition: usize, attempt: usize) {
        let mut winners = self.winners.lock();
        if winners.get(&partition) == Some(&attempt) {
            winners.remove(&partition);
        }
    }

    /// The attempt authorised to commit `partition`, if any.
    pub fn authorized(&self, partition: usize) -> Option<usize> {
        self.winners.lock().get(&partition).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listing::list_files;
    use crate::parquet::{write_parquet, ParquetWriteOptions};
    use arrow::array::Int64Array;
    use arrow::record_batch::RecordBatch;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use std::sync::Arc;

    fn rows(from: i64, n: i64) -> RecordBatch {
        let values: Vec<i64> = (from..from + n).collect();
        RecordBatch::try_from_iter([("v", Arc::new(Int64Array::from(values)) as _)]).unwrap()
    }

    /// What a task does: write its rows to its attempt's temp path.
    fn run_attempt(c: &OutputCommitter, partition: usize, attempt: usize, batch: &RecordBatch) {
        let path = c.task_temp_path(partition, attempt).unwrap();
        write_parquet(
            &path,
            &batch.schema(),
            std::slice::from_ref(batch),
            ParquetWriteOptions::default(),
        )
        .unwrap();
    }

    /// Every value in the committed output, read the way a table would list it.
    fn read_output(dir: &Path) -> Result<Vec<i64>> {
        let mut values = Vec::new();
        for file in list_files(dir.to_str().unwrap())? {
            let reader =
                ParquetRecordBatchReaderBuilder::try_new(fs::File::open(&file.path).unwrap())?
                    .build()?;
            for batch in reader {
                let batch = batch?;
                let col = batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap();
                values.extend(col.values().iter().copied());
            }
        }
        values.sort();
        Ok(values)
    }

    #[test]
    fn two_attempts_of_one_partition_commit_once() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let committer = OutputCommitter::setup_job(&out).unwrap();
        let coordinator = CommitCoordinator::new();
        // Partition 0: the original and a speculative copy both finish.
        run_attempt(&committer, 0, 0, &rows(0, 10));
        run_attempt(&committer, 0, 1, &rows(0, 10));
        run_attempt(&committer, 1, 0, &rows(10, 5));
        assert!(coordinator.can_commit(0, 1));
        assert!(!coordinator.can_commit(0, 0), "second asker is denied");
        assert!(coordinator.can_commit(0, 1), "the winner may ask again");
        let task = OutputCommitter::attach(&out);
        assert_eq!(task.commit_task(0, 1).unwrap(), TaskCommit::Committed);
        task.abort_task(0, 0).unwrap();
        assert!(coordinator.can_commit(1, 0));
        assert_eq!(task.commit_task(1, 0).unwrap(), TaskCommit::Committed);

        // Before commit_job, readers refuse the folder.
        let err = read_output(&out).unwrap_err().to_string();
        assert!(err.contains("incomplete output"), "{err}");

        committer.commit_job(2).unwrap();
        assert_eq!(read_output(&out).unwrap(), (0..15).collect::<Vec<_>>());
        let mut names: Vec<String> = fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec![
                "_SUCCESS",
                "_ember_write_started",
                "part-00000.parquet",
                "part-00001.parquet"
            ]
        );
    }

    #[test]
    fn a_second_commit_never_replaces_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let committer = OutputCommitter::setup_job(dir.path().join("out")).unwrap();
        run_attempt(&committer, 0, 0, &rows(0, 3));
        run_attempt(&committer, 0, 1, &rows(100, 3));
        assert_eq!(committer.commit_task(0, 0).unwrap(), TaskCommit::Committed);
        assert_eq!(
            committer.commit_task(0, 1).unwrap(),
            TaskCommit::AlreadyCommitted
        );
        assert!(!committer.temp_path(0, 1).exists());
        committer.commit_job(1).unwrap();
        assert_eq!(read_output(committer.dir()).unwrap(), vec![0, 1, 2]);
        // An attempt that wrote nothing cannot commit.
        let err = committer.commit_task(1, 0).unwrap_err().to_string();
        assert!(err.contains("is missing"), "{err}");
    }

    #[test]
    fn winner_that_dies_before_committing_releases_the_partition() {
        let coordinator = CommitCoordinator::new();
        assert!(coordinator.can_commit(3, 0));
        coordinator.attempt_failed(3, 1); // not the winner: no effect
        assert!(!coordinator.can_commit(3, 1));
        coordinator.attempt_failed(3, 0);
        assert_eq!(coordinator.authorized(3), None);
        assert!(coordinator.can_commit(3, 1));
        assert!(!coordinator.can_commit(3, 2));
    }

    #[test]
    fn concurrent_askers_get_exactly_one_yes() {
        let coordinator = Arc::new(CommitCoordinator::new());
        let handles: Vec<_> = (0..8)
            .map(|attempt| {
                let c = coordinator.clone();
                std::thread::spawn(move || c.can_commit(0, attempt))
            })
            .collect();
        let yes = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|&granted| granted)
            .count();
        assert_eq!(yes, 1);
    }

    #[test]
    fn aborted_job_leaves_nothing_readable() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let committer = OutputCommitter::setup_job(&out).unwrap();
        run_attempt(&committer, 0, 0, &rows(0, 3));
        run_attempt(&committer, 1, 0, &rows(3, 3));
        committer.commit_task(0, 0).unwrap();
        committer.abort_job().unwrap();
        assert!(!out.exists(), "the folder the job created is gone");
        assert!(read_output(&out).is_err());

        // In a folder that existed before, only the job's own files go.
        let existing = dir.path().join("existing");
        fs::create_dir_all(&existing).unwrap();
        fs::write(existing.join(".keep"), b"").unwrap();
        let committer = OutputCommitter::setup_job(&existing).unwrap();
        run_attempt(&committer, 0, 0, &rows(0, 3));
        committer.commit_task(0, 0).unwrap();
        committer.abort_job().unwrap();
        let left: Vec<_> = fs::read_dir(&existing)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, vec![".keep"]);
        let err = read_output(&existing).unwrap_err().to_string();
        assert!(err.contains("no data files"), "{err}");
    }

    #[test]
    fn job_without_commit_is_incomplete_and_missing_parts_block_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let committer = OutputCommitter::setup_job(&out).unwrap();
        run_attempt(&committer, 0, 0, &rows(0, 3));
        committer.commit_task(0, 0).unwrap();
        let err = committer.commit_job(2).unwrap_err().to_string();
        assert!(err.contains("partitions [1] were never committed"), "{err}");
        assert!(!out.join(SUCCESS_MARKER).exists());
        let err = read_output(&out).unwrap_err().to_string();
        assert!(err.contains("incomplete output"), "{err}");

        // A new job into the same folder: refused while data is there.
        let err = OutputCommitter::setup_job(&out).unwrap_err().to_string();
        assert!(err.contains("already holds data"), "{err}");
    }

    #[test]
    fn setup_clears_leftovers_of_a_crashed_write() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        fs::create_dir_all(out.join("_temporary/0")).unwrap();
        fs::write(out.join("_temporary/0/part-00000.parquet"), b"stale").unwrap();
        fs::write(out.join(WRITE_STARTED_MARKER), b"").unwrap();
        let committer = OutputCommitter::setup_job(&out).unwrap();
        assert!(!out.join("_temporary/0").exists());
        run_attempt(&committer, 0, 0, &rows(0, 2));
        committer.commit_task(0, 0).unwrap();
        committer.commit_job(1).unwrap();
        assert_eq!(read_output(&out).unwrap(), vec![0, 1]);
    }

    #[test]
    fn part_file_names() {
        assert_eq!(part_file_name(7), "part-00007.parquet");
        assert!(is_part_file_name("part-00007.parquet"));
        assert!(is_part_file_name("part-123456.parquet"));
        assert!(!is_part_file_name("part-7.parquet"));
        assert!(!is_part_file_name("data.parquet"));
    }
}
