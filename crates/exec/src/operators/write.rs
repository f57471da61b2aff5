//! Write: the task side of exactly-once output (`COPY … TO`, `DataFrame::write_parquet`).
//!
//! Each task attempt writes its whole partition to a temp file of its own under the output
//! folder's `_temporary/` (see `ember_storage::commit`) and returns a single row saying
//! which attempt wrote which file. It never renames anything into place: only the driver
//! knows which attempt's result the scheduler accepted, so committing is the driver's job.
//! A retried, speculative or cancelled attempt therefore leaves at most an uncommitted temp
//! file, which readers skip and the job commit (or abort) removes.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};

use ember_planner::physical::{write_result_schema, PhysicalPlan, WriteFormat};
use ember_planner::table::BatchIter;
use ember_planner::{EmberError, Result};
use ember_storage::commit::OutputCommitter;
use ember_storage::parquet::{write_parquet, ParquetWriteOptions};

use crate::context::TaskContext;

/// Builds the (lazy) pipeline that writes partition `partition` of `input` into `path`:
/// nothing is computed or written until the one output row is pulled.
pub fn execute_write(
    input: &Arc<PhysicalPlan>,
    path: &str,
    format: WriteFormat,
    partition: usize,
    ctx: &Arc<TaskContext>,
) -> Result<BatchIter> {
    let input = Arc::clone(input);
    let path = path.to_string();
    let ctx = Arc::clone(ctx);
    Ok(Box::new(std::iter::once_with(move || {
        write_partition(&input, &path, format, partition, &ctx)
    })))
}

/// Computes the partition, writes it to this attempt's temp path and describes the file.
fn write_partition(
    input: &Arc<PhysicalPlan>,
    path: &str,
    format: WriteFormat,
    partition: usize,
    ctx: &Arc<TaskContext>,
) -> Result<RecordBatch> {
    let committer = OutputCommitter::attach(path);
    let temp = committer.task_temp_path(partition, ctx.attempt)?;
    // The whole partition is buffered: `write_parquet` writes a file from a slice of
    // batches (atomically, through a hidden temp name), and a result partition is what a
    // `collect` would hold in memory anyway.
    let mut batches = Vec::new();
    for batch in super::execute(input, partition, ctx)? {
        let batch = batch?;
        if batch.num_rows() > 0 {
            batches.push(batch);
        }
    }
    super::check_cancelled(ctx)?;
    // Every partition gets a file, even an empty one: the job commit checks that each
    // partition committed, and an empty file still carries the schema.
    let schema = input.schema().to_arrow_ref();
    let rows = match format {
        WriteFormat::Parquet => {
            write_parquet(&temp, &schema, &batches, ParquetWriteOptions::default())?
        }
    };
    result_row(partition, ctx.attempt, &temp, rows)
}

/// The one row a write task returns (schema: [`write_result_schema`]).
fn result_row(partition: usize, attempt: usize, temp: &Path, rows: usize) -> Result<RecordBatch> {
    let as_i64 = |what: &str, v: usize| {
        i64::try_from(v).map_err(|_| EmberError::Internal(format!("{what} {v} exceeds i64")))
    };
    let temp = temp.to_str().ok_or_else(|| {
        EmberError::Execution(format!(
            "output temp path {} is not valid UTF-8",
            temp.display()
        ))
    })?;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![as_i64("partition", partition)?])),
        Arc::new(Int64Array::from(vec![as_i64("attempt", attempt)?])),
        Arc::new(StringArray::from(vec![temp])),
        Arc::new(Int64Array::from(vec![as_i64("rows", rows)?])),
    ];
    Ok(RecordBatch::try_new(
        write_result_schema().to_arrow_ref(),
        columns,
    )?)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use arrow::array::Array;
    use ember_storage::commit::TEMPORARY_DIR;

    use super::super::test_util::*;
    use super::*;

    fn write_plan(input: Arc<PhysicalPlan>, dir: &Path) -> Arc<PhysicalPlan> {
        Arc::new(PhysicalPlan::Write {
            input,
            path: dir.to_str().unwrap().to_string(),
            format: WriteFormat::Parquet,
            job_id: "test".into(),
        })
    }

    fn ctx_for(attempt: usize) -> Arc<TaskContext> {
        let ctx = test_ctx();
        let mut owned = TaskContext::standalone(ctx.functions.clone());
        owned.attempt = attempt;
        Arc::new(owned)
    }

    #[test]
    fn each_attempt_writes_its_own_temp_file_and_reports_it() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        OutputCommitter::setup_job(&out).unwrap();
        let plan = write_plan(
            mem_scan(vec![
                vec![int_batch("a", &[1, 2]), int_batch("a", &[3])],
                vec![int_batch("a", &[4])],
            ]),
            &out,
        );
        let mut paths = Vec::new();
        for (partition, attempt, expected_rows) in [(0, 0, 3), (0, 1, 3), (1, 0, 1)] {
            let batches: Vec<RecordBatch> = operators_execute(&plan, partition, attempt);
            assert_eq!(batches.len(), 1);
            let b = &batches[0];
            assert_eq!(b.num_rows(), 1);
            assert_eq!(int_column(&batches, 0), vec![Some(partition as i64)]);
            assert_eq!(int_column(&batches, 1), vec![Some(attempt as i64)]);
            assert_eq!(int_column(&batches, 3), vec![Some(expected_rows)]);
            let temp = b
                .column(2)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .value(0)
                .to_string();
            assert!(temp.contains(TEMPORARY_DIR), "{temp}");
            assert!(Path::new(&temp).is_file(), "{temp}");
            paths.push(temp);
        }
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), 3, "no two attempts share a file: {paths:?}");
        // Nothing is committed by a task.
        let committed: Vec<_> = fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('_'))
            .collect();
        assert!(committed.is_empty(), "{committed:?}");
    }

    #[test]
    fn an_empty_partition_still_writes_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        OutputCommitter::setup_job(&out).unwrap();
        let schema = int_batch("a", &[1]).schema();
        let plan = write_plan(mem_scan_with_schema(schema, vec![vec![]]), &out);
        let batches = operators_execute(&plan, 0, 0);
        assert_eq!(int_column(&batches, 3), vec![Some(0)]);
        let committer = OutputCommitter::attach(&out);
        committer.commit_task(0, 0).unwrap();
        assert!(committer.final_path(0).is_file());
    }

    #[test]
    fn a_cancelled_task_reports_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        OutputCommitter::setup_job(&out).unwrap();
        let plan = write_plan(mem_scan(vec![vec![int_batch("a", &[1])]]), &out);
        let ctx = ctx_for(0);
        ctx.cancelled
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let err = super::super::execute(&plan, 0, &ctx)
            .unwrap()
            .next()
            .unwrap()
            .unwrap_err();
        assert!(err.to_string().contains("cancelled"), "{err}");
    }

    fn operators_execute(
        plan: &Arc<PhysicalPlan>,
        partition: usize,
        attempt: usize,
    ) -> Vec<RecordBatch> {
        super::super::execute(plan, partition, &ctx_for(attempt))
            .unwrap()
            .collect::<Result<Vec<_>>>()
            .unwrap()
    }
}
