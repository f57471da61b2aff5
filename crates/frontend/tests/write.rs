//! Exactly-once output: `COPY … TO` and `write_parquet` go through the commit protocol, so
//! retried attempts never leave duplicate or stray files, and a failed job leaves nothing
//! that a reader would take for a result.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array};
use arrow::record_batch::RecordBatch;
use ember_exec::executor::{ClusterConfig, LocalCluster};
use ember_exec::fault::{FaultInjector, FaultPlan};
use ember_exec::scheduler::{run_job, JobContext, TaskHook, TaskInfo};
use ember_exec::shuffle::MapOutputTracker;
use ember_frontend::format::cell_strings;
use ember_frontend::prelude::*;
use ember_frontend::sql::FileFormat;
use ember_frontend::write::{write_plan, WriteSummary};
use ember_storage::commit::OutputCommitter;
use ember_storage::parquet::{write_parquet, ParquetWriteOptions};

/// `t(k, v)`: 300 rows in 3 partitions, `v` unique, `k = v % 7`.
fn session() -> Session {
    let s = Session::builder()
        .config("ember.sql.shuffle.partitions", "4")
        .config("ember.executor.instances", "2")
        .build()
        .unwrap();
    let part = |from: i64| {
        let v: Vec<i64> = (from..from + 100).collect();
        let k: Vec<i64> = v.iter().map(|v| v % 7).collect();
        RecordBatch::try_from_iter([
            ("k", Arc::new(Int64Array::from(k)) as ArrayRef),
            ("v", Arc::new(Int64Array::from(v)) as ArrayRef),
        ])
        .unwrap()
    };
    let batches = vec![vec![part(0)], vec![part(100)], vec![part(200)]];
    s.register_batches("t", batches[0][0].schema(), batches)
        .unwrap();
    s
}

fn sorted_rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let mut rows = cell_strings(batches).unwrap();
    rows.sort();
    rows
}

/// What a fresh session reads back from the folder.
fn read_back(dir: &Path) -> Result<Vec<Vec<String>>> {
    Ok(sorted_rows(
        &Session::new()
            .read_parquet(dir.to_str().unwrap())?
            .collect()?,
    ))
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The folder of a committed write of `n` partitions: exactly its parts and markers.
fn committed_layout(n: usize) -> Vec<String> {
    let mut expected = vec!["_SUCCESS".to_string(), "_ember_write_started".to_string()];
    expected.extend((0..n).map(|p| format!("part-{p:05}.parquet")));
    expected
}

/// Writes `sql`'s result to `out` on a cluster of its own whose tasks run `hook` (built
/// from the id of the write's result stage), as `COPY` does with the session's cluster.
fn write_with_hook(
    s: &Session,
    sql: &str,
    out: &Path,
    hook: impl FnOnce(usize) -> Arc<dyn TaskHook>,
) -> Result<WriteSummary> {
    let plan = s.sql(sql)?.plan().clone();
    let config = s.config();
    let cluster_config = ClusterConfig::from_settings(|k| config.get(k).map(str::to_string))?;
    let cluster = LocalCluster::new(&cluster_config)?;
    let out_str = out.to_str().unwrap().to_string();
    write_plan(&plan, &out_str, FileFormat::Parquet, &config, |prepared| {
        let stage = prepared
            .stages
            .stages
            .last()
            .map(|s| s.id)
            .expect("a plan has a result stage");
        let ctx = JobContext::new(s.functions().clone()).with_hook(hook(stage));
        let result = run_job(&prepared.stages, &cluster, &ctx);
        // The job is over (every attempt has ended) but nothing is committed yet: a
        // reader must refuse the folder rather than read a partial result.
        let err = read_back(out).unwrap_err().to_string();
        assert!(err.contains("incomplete output"), "{err}");
        Ok(result?.partitions)
    })
}

#[test]
fn copy_writes_one_part_per_partition_and_every_row_once() {
    let s = session();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("agg");
    let query = "SELECT k, COUNT(*) AS n, SUM(v) AS total FROM t GROUP BY k";
    s.execute_sql(&format!(
        "COPY ({query}) TO '{}' STORED AS PARQUET",
        out.display()
    ))
    .unwrap();
    // The final aggregate runs in 4 partitions: 4 files, then _SUCCESS; no temp files.
    assert_eq!(names(&out), committed_layout(4));
    let expected = sorted_rows(&s.sql(query).unwrap().collect().unwrap());
    assert_eq!(expected.len(), 7);
    assert_eq!(read_back(&out).unwrap(), expected);

    // A second write into the committed folder is refused and leaves it intact.
    let err = s
        .execute_sql(&format!(
            "COPY (SELECT v FROM t) TO '{}' STORED AS PARQUET",
            out.display()
        ))
        .unwrap_err()
        .to_string();
    assert!(err.contains("already holds data"), "{err}");
    assert_eq!(read_back(&out).unwrap(), expected);
}

#[test]
fn write_parquet_of_a_dataframe_round_trips() {
    let s = session();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rows");
    let df = s
        .table("t")
        .unwrap()
        .filter(col("k").eq(lit(3i64)))
        .unwrap();
    let files = df.write_parquet(out.to_str().unwrap()).unwrap();
    assert_eq!(files, 3, "one file per scan partition");
    assert_eq!(names(&out), committed_layout(3));
    assert_eq!(
        read_back(&out).unwrap(),
        sorted_rows(&df.collect().unwrap())
    );
}

#[test]
fn a_task_failing_once_still_yields_exactly_once_output() {
    let s = session();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let query = "SELECT k, SUM(v) AS total FROM t GROUP BY k";
    let summary = write_with_hook(&s, query, &out, |stage| {
        let plan =
            FaultPlan::parse(&format!("fail-task stage={stage} partition=1 attempt=0")).unwrap();
        Arc::new(FaultInjector::new(plan, 2))
    })
    .unwrap();
    assert_eq!(summary.files, 4);
    assert_eq!(summary.rows, 7);
    assert_eq!(names(&out), committed_layout(4));
    assert_eq!(
        read_back(&out).unwrap(),
        sorted_rows(&s.sql(query).unwrap().collect().unwrap())
    );
}

/// Attempt 0 of one partition writes its whole temp file (with different rows, so a wrong
/// commit would show) and then dies, as when its executor is lost after the write.
struct WriteThenDie {
    dir: PathBuf,
    stage: usize,
    partition: usize,
    fired: Arc<AtomicBool>,
}

impl TaskHook for WriteThenDie {
    fn before_task(&self, task: &TaskInfo, _: &MapOutputTracker) -> Result<()> {
        if (task.stage, task.partition, task.attempt) != (self.stage, self.partition, 0) {
            return Ok(());
        }
        self.fired.store(true, Ordering::SeqCst);
        let temp = OutputCommitter::attach(&self.dir).task_temp_path(task.partition, 0)?;
        let stale = RecordBatch::try_from_iter([
            ("k", Arc::new(Int64Array::from(vec![-1, -1])) as ArrayRef),
            ("v", Arc::new(Int64Array::from(vec![-1, -1])) as ArrayRef),
        ])?;
        write_parquet(
            &temp,
            &stale.schema(),
            &[stale],
            ParquetWriteOptions::default(),
        )?;
        Err(EmberError::Execution(
            "injected: attempt 0 died after writing its file".into(),
        ))
    }
}

#[test]
fn an_attempt_that_wrote_then_died_is_never_committed() {
    let s = session();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let hook_dir = out.clone();
    let fired = Arc::new(AtomicBool::new(false));
    let hook_fired = fired.clone();
    write_with_hook(&s, "SELECT k, v FROM t", &out, |stage| {
        Arc::new(WriteThenDie {
            dir: hook_dir,
            stage,
            partition: 2,
            fired: hook_fired,
        })
    })
    .unwrap();
    assert!(
        fired.load(Ordering::SeqCst),
        "attempt 0 of partition 2 ran and died"
    );
    assert_eq!(names(&out), committed_layout(3), "no _temporary left");
    let rows = read_back(&out).unwrap();
    assert_eq!(rows.len(), 300, "each row exactly once");
    assert_eq!(
        rows,
        sorted_rows(&s.sql("SELECT k, v FROM t").unwrap().collect().unwrap())
    );
}

#[test]
fn a_job_failing_beyond_max_failures_commits_nothing() {
    let s = session();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let err = write_with_hook(&s, "SELECT k, v FROM t", &out, |stage| {
        let faults: Vec<String> = (0..4)
            .map(|a| format!("fail-task stage={stage} partition=0 attempt={a}"))
            .collect();
        Arc::new(FaultInjector::new(
            FaultPlan::parse(&faults.join("; ")).unwrap(),
            2,
        ))
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("ember.task.maxFailures = 4"), "{err}");
    assert!(err.contains("nothing was committed"), "{err}");
    // Partitions 1 and 2 had finished their files; they are gone with the folder.
    assert!(!out.exists(), "the folder the write created is removed");
}

#[test]
fn a_failing_copy_leaves_a_pre_existing_folder_as_it_was() {
    let s = session();
    s.register_udf(
        "boom",
        vec![arrow::datatypes::DataType::Int64],
        arrow::datatypes::DataType::Int64,
        |args: &[ArrayRef]| {
            let v = args[0].as_any().downcast_ref::<Int64Array>().unwrap();
            if v.values().contains(&250) {
                return Err(EmberError::Execution("boom at v = 250".into()));
            }
            Ok(args[0].clone())
        },
    );
    s.set_config("ember.task.maxFailures", "2").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join(".keep"), b"").unwrap();
    let err = s
        .execute_sql(&format!(
            "COPY (SELECT boom(v) AS v FROM t) TO '{}' STORED AS PARQUET",
            out.display()
        ))
        .unwrap_err()
        .to_string();
    assert!(err.contains("boom at v = 250"), "{err}");
    assert!(err.contains("nothing was committed"), "{err}");
    assert_eq!(names(&out), [".keep"]);
}

/// The id `EXPLAIN` prints for the result stage of `sql` (the stage a write wraps).
fn result_stage(s: &Session, sql: &str) -> usize {
    let plan = s.sql(sql).unwrap().plan().clone();
    let prepared = s.prepare(&plan).unwrap();
    prepared.stages.stages.last().unwrap().id
}

#[test]
fn copy_under_a_sql_fault_plan_writes_every_row_once() {
    let s = session();
    let query = "SELECT k, COUNT(*) AS n, SUM(v) AS total FROM t GROUP BY k";
    let expected = sorted_rows(&s.sql(query).unwrap().collect().unwrap());
    let stage = result_stage(&s, query);
    s.execute_sql(&format!(
        "SET ember.fault.plan = 'fail-task stage={stage} partition=1 attempt=0; \
         fail-task stage={stage} partition=3 attempt=0; lose-shuffle stage=0 partition=2'"
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    s.execute_sql(&format!(
        "COPY ({query}) TO '{}' STORED AS PARQUET",
        out.display()
    ))
    .unwrap();
    assert_eq!(names(&out), committed_layout(4));
    assert_eq!(read_back(&out).unwrap(), expected);
}

#[test]
fn copy_failing_beyond_max_failures_under_a_sql_fault_plan_commits_nothing() {
    let s = session();
    let query = "SELECT k, v FROM t";
    let stage = result_stage(&s, query);
    s.execute_sql(&format!(
        "SET ember.task.maxFailures = 2; SET ember.fault.plan = \
         'fail-task stage={stage} partition=0 attempt=0; fail-task stage={stage} partition=0 attempt=1'"
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let err = s
        .execute_sql(&format!(
            "COPY ({query}) TO '{}' STORED AS PARQUET",
            out.display()
        ))
        .unwrap_err()
        .to_string();
    assert!(err.contains("ember.task.maxFailures = 2"), "{err}");
    assert!(err.contains("nothing was committed"), "{err}");
    assert!(!out.exists());
    assert!(read_back(&out).is_err());
}
