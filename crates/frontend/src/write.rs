//! The driver side of exactly-once output: `COPY (…) TO 'dir' STORED AS PARQUET` and
//! `DataFrame::write_parquet` run here.
//!
//! A write is an ordinary job whose result stage is wrapped in a `Write` operator, so the
//! scheduler runs it with all its usual recovery (retries, recomputed shuffle output, lost
//! executors) and knows nothing about files:
//!
//! ```text
//! driver  setup_job          dir/_ember_write_started        readers now refuse dir
//! tasks   Write operator     dir/_temporary/<attempt>/part-<p>.parquet, one row back each
//! driver  per partition p    the attempt whose row the scheduler accepted asks the
//!                            CommitCoordinator; granted → renamed to dir/part-<p>.parquet
//! driver  commit_job         _temporary removed (every other attempt's file), _SUCCESS last
//!         on any failure     abort_job: nothing this write made is left to read
//! ```
//!
//! The scheduler drains every running task before it returns, so no attempt is still
//! writing when the driver commits or aborts.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arrow::array::{Array, Int64Array, RecordBatch, StringArray};
use ember_planner::logical::LogicalPlan;
use ember_planner::physical::{PhysicalPlan, WriteFormat};
use ember_planner::{EmberError, Result};
use ember_storage::commit::{CommitCoordinator, OutputCommitter, TaskCommit, TEMPORARY_DIR};

use crate::config::SessionConfig;
use crate::execution::PreparedQuery;
use crate::sql::FileFormat;

/// What a committed write produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteSummary {
    /// Committed data files (one per result partition).
    pub files: usize,
    pub rows: usize,
}

/// One task attempt's report: the row the `Write` operator returns.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AttemptReport {
    partition: usize,
    attempt: usize,
    temp_path: String,
    rows: usize,
}

/// Writes the result of `plan` into folder `path` through the commit protocol.
///
/// `run` executes the prepared job and returns the result stage's batches per partition:
/// the session passes its own runtime; tests pass a scheduler with a fault hook. If the job
/// or the commit fails, everything the write made is removed and the error says so.
pub fn write_plan(
    plan: &Arc<LogicalPlan>,
    path: &str,
    format: FileFormat,
    config: &SessionConfig,
    run: impl FnOnce(&PreparedQuery) -> Result<Vec<Vec<RecordBatch>>>,
) -> Result<WriteSummary> {
    let format = write_format(format, path)?;
    if Path::new(path).is_file() {
        return Err(EmberError::Plan(format!(
            "cannot write to '{path}': it is a file, expected a folder"
        )));
    }
    let committer = OutputCommitter::setup_job(path)?;
    let job_id = new_write_id();
    let outcome = PreparedQuery::plan_with_root(plan, config, |input| {
        Arc::new(PhysicalPlan::Write {
            input,
            path: path.to_string(),
            format,
            job_id: job_id.clone(),
        })
    })
    .and_then(|prepared| run(&prepared))
    .and_then(|partitions| commit(&committer, &partitions));
    match outcome {
        Ok(summary) => Ok(summary),
        Err(error) => {
            let cleanup = match committer.abort_job() {
                Ok(()) => "nothing was committed".to_string(),
                Err(e) => format!("cleaning up the partial output also failed: {e}"),
            };
            Err(error.context(format!("writing to '{path}' failed; {cleanup}")))
        }
    }
}

/// The formats the `Write` operator can produce.
fn write_format(format: FileFormat, path: &str) -> Result<WriteFormat> {
    match format {
        FileFormat::Parquet => Ok(WriteFormat::Parquet),
        other => Err(EmberError::NotImplemented(format!(
            "writing to '{path}' as {other:?}: only PARQUET output is supported"
        ))),
    }
}

/// A name no other write of this or any other process uses (it enters the plan's
/// fingerprint, so a write is never mistaken for an earlier, identical one).
fn new_write_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Commits the job from the scheduler's accepted results: for each partition exactly the
/// reported attempt is renamed into place; then `_SUCCESS` is written last.
fn commit(committer: &OutputCommitter, partitions: &[Vec<RecordBatch>]) -> Result<WriteSummary> {
    let coordinator = CommitCoordinator::new();
    let temp_root = committer.dir().join(TEMPORARY_DIR);
    let mut rows = 0;
    for (partition, batches) in partitions.iter().enumerate() {
        let reports = read_reports(batches)?;
        let [report] = reports.as_slice() else {
            return Err(EmberError::Internal(format!(
                "write task for partition {partition} returned {} reports, expected one",
                reports.len()
            )));
        };
        if report.partition != partition || !Path::new(&report.temp_path).starts_with(&temp_root) {
            return Err(EmberError::Internal(format!(
                "result partition {partition} holds the report of partition {} at {}",
                report.partition, report.temp_path
            )));
        }
        if !coordinator.can_commit(partition, report.attempt) {
            // A second attempt of an already granted partition: discard its file.
            committer.abort_task(partition, report.attempt)?;
            continue;
        }
        match committer.commit_task(partition, report.attempt)? {
            TaskCommit::Committed => rows += report.rows,
            TaskCommit::AlreadyCommitted => {
                return Err(EmberError::Internal(format!(
                    "partition {partition} of {} was committed before its accepted attempt {}",
                    committer.dir().display(),
                    report.attempt
                )))
            }
        }
    }
    committer.commit_job(partitions.len())?;
    Ok(WriteSummary {
        files: partitions.len(),
        rows,
    })
}

/// Decodes the `Write` operator's rows (schema: `write_result_schema`).
fn read_reports(batches: &[RecordBatch]) -> Result<Vec<AttemptReport>> {
    fn column<T: 'static>(batch: &RecordBatch, i: usize) -> Result<&T> {
        batch
            .columns()
            .get(i)
            .and_then(|c| c.as_any().downcast_ref::<T>())
            .ok_or_else(|| {
                EmberError::Internal(format!(
                    "write task report has an unexpected schema: {}",
                    batch.schema()
                ))
            })
    }
    let as_usize = |what: &str, v: i64| {
        usize::try_from(v).map_err(|_| {
            EmberError::Internal(format!("write task reported a negative {what}: {v}"))
        })
    };
    let mut reports = Vec::new();
    for batch in batches {
        let partition = column::<Int64Array>(batch, 0)?;
        let attempt = column::<Int64Array>(batch, 1)?;
        let temp_path = column::<StringArray>(batch, 2)?;
        let rows = column::<Int64Array>(batch, 3)?;
        for i in 0..batch.num_rows() {
            if partition.is_null(i) || attempt.is_null(i) || temp_path.is_null(i) {
                return Err(EmberError::Internal(
                    "write task report has a null field".into(),
                ));
            }
            reports.push(AttemptReport {
                partition: as_usize("partition", partition.value(i))?,
                attempt: as_usize("attempt", attempt.value(i))?,
                temp_path: temp_path.value(i).to_string(),
                rows: as_usize("row count", rows.value(i))?,
            });
        }
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::ArrayRef;
    use ember_planner::physical::write_result_schema;
    use ember_storage::parquet::{write_parquet, ParquetWriteOptions};
    use ember_storage::SUCCESS_MARKER;

    /// What a write task does: its file under the attempt's temp path, and its report.
    fn attempt(c: &OutputCommitter, partition: usize, attempt: usize) -> RecordBatch {
        let path = c.task_temp_path(partition, attempt).unwrap();
        let data = RecordBatch::try_from_iter([(
            "v",
            Arc::new(Int64Array::from(vec![partition as i64])) as ArrayRef,
        )])
        .unwrap();
        write_parquet(
            &path,
            &data.schema(),
            &[data],
            ParquetWriteOptions::default(),
        )
        .unwrap();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![partition as i64])),
            Arc::new(Int64Array::from(vec![attempt as i64])),
            Arc::new(StringArray::from(vec![path.to_str().unwrap()])),
            Arc::new(Int64Array::from(vec![1])),
        ];
        RecordBatch::try_new(write_result_schema().to_arrow_ref(), columns).unwrap()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn commits_exactly_the_accepted_attempts_and_drops_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let c = OutputCommitter::setup_job(&out).unwrap();
        // Partition 0: attempt 0 failed after writing, attempt 1 was accepted.
        attempt(&c, 0, 0);
        let accepted0 = attempt(&c, 0, 1);
        let accepted1 = attempt(&c, 1, 0);
        let summary = commit(&c, &[vec![accepted0], vec![accepted1]]).unwrap();
        assert_eq!(summary, WriteSummary { files: 2, rows: 2 });
        assert_eq!(
            names(&out),
            [
                SUCCESS_MARKER,
                "_ember_write_started",
                "part-00000.parquet",
                "part-00001.parquet"
            ]
        );
    }

    #[test]
    fn a_partition_without_its_report_is_never_committed() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let c = OutputCommitter::setup_job(&out).unwrap();
        let report = attempt(&c, 1, 0);
        // The report of partition 1 where partition 0's belongs.
        let err = commit(&c, &[vec![report]]).unwrap_err();
        assert!(matches!(err, EmberError::Internal(_)), "{err}");
        let err = commit(&c, &[vec![]]).unwrap_err().to_string();
        assert!(err.contains("0 reports"), "{err}");
        assert!(!out.join(SUCCESS_MARKER).exists());
    }

    #[test]
    fn other_formats_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let plan = Arc::new(LogicalPlan::EmptyRelation(
            ember_planner::logical::EmptyRelation {
                produce_one_row: true,
                schema: Arc::new(ember_planner::schema::PlanSchema::empty()),
            },
        ));
        let err = write_plan(
            &plan,
            out.to_str().unwrap(),
            FileFormat::Csv,
            &SessionConfig::default(),
            |_| unreachable!("nothing runs"),
        )
        .unwrap_err();
        assert!(matches!(err, EmberError::NotImplemented(_)), "{err}");
        assert!(!out.exists());
    }
}
