//! `EXPLAIN ANALYZE`: run the query, throw the rows away, and show what running it took — the
//! stage graph EXPLAIN prints, each stage annotated with its attempts, failures by reason,
//! speculative copies, recomputed partitions and why, output and time, under one job line.
//!
//! Two sources, each used for what only it knows:
//! - the scheduler's [`JobMetrics`] for the job just run: every task attempt with its typed
//!   end, rows, shuffle bytes and running time (always there, exactly this job);
//! - the application's [`StatusTracker`](ember_exec::events::StatusTracker) (built from the
//!   event log) for what only events carry: why partitions were recomputed and how long each
//!   stage attempt ran from submission to completion.
//!
//! ```text
//! Job 0 succeeded in 12.4 ms: 4 rows, 2 stages, 9 task attempts (1 failed), executors lost: none
//! Stage 0 [4 tasks, output: shuffle hash(l_returnflag@0) into 4, parents: none]
//!   stage attempts: 1, task attempts: 5 (failed: 1 ExceptionFailure), retried partitions: [0]
//!   speculative copies: 0, recomputed partitions: none
//!   output: 120 rows, 3.1 KiB shuffled; wall time 6 ms, task time 9.8 ms
//!   HashAggregate: …
//! ```

use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::time::Duration;

use ember_exec::events::{JobState, JobStatus, RecomputeCause, TaskEndReason};
use ember_exec::scheduler::{JobMetrics, StageMetrics, TaskStatus};
use ember_planner::logical::LogicalPlan;
use ember_planner::stages::{StageGraph, StageOutput};
use ember_planner::{EmberError, Result};

use crate::session::Session;

/// Runs `plan` on `session`'s executors, discarding its rows, and analyses the job.
///
/// The query runs under the session's settings, fault plan included, so
/// `SET ember.fault.plan = 'fail-task …'` followed by `EXPLAIN ANALYZE …` shows the failure
/// and its retry. A job that fails returns its error, as the query would, with what the
/// job's stages went through before it gave up.
pub fn explain_analyze(session: &Session, plan: &Arc<LogicalPlan>) -> Result<ExplainAnalysis> {
    let prepared = session.prepare(plan)?;
    let result = session
        .run_prepared(&prepared)
        .map_err(|e| with_failed_job(session, e))?;
    let rows = result.num_rows();
    let metrics = result.metrics.ok_or_else(|| {
        EmberError::Internal("EXPLAIN ANALYZE: the query ran without job metrics".into())
    })?;
    let status = session
        .status_tracker()
        .and_then(|tracker| tracker.job(metrics.job));
    Ok(ExplainAnalysis::new(
        &prepared.stages,
        &metrics,
        rows,
        status.as_ref(),
    ))
}

/// Adds the stages of the session's latest failed job (attempts, failed and retried tasks,
/// recomputations) to `error`, so a failed EXPLAIN ANALYZE still shows how far it got.
fn with_failed_job(session: &Session, error: EmberError) -> EmberError {
    let failed = session.status_tracker().and_then(|tracker| {
        tracker
            .snapshot()
            .jobs
            .into_values()
            .rev()
            .find(|j| j.state == JobState::Failed)
    });
    match failed {
        Some(mut job) => {
            // The error is printed after the context (`context: error`), once, under the
            // stages like the job's own error line.
            job.message = None;
            error.context(format!(
                "EXPLAIN ANALYZE: {}\n  error",
                job.to_string().trim_end()
            ))
        }
        None => error,
    }
}

/// What one run of a query took: the job line and one annotated block per stage.
#[derive(Debug, Clone, PartialEq)]
pub struct ExplainAnalysis {
    pub job: JobSummary,
    /// In stage-graph (topological) order.
    pub stages: Vec<StageAnalysis>,
}

/// The job line.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSummary {
    pub job: usize,
    pub duration: Duration,
    /// Rows of the result (returned and discarded).
    pub rows: usize,
    pub stages: usize,
    pub task_attempts: usize,
    pub failed_attempts: usize,
    /// Executors found dead while the job ran.
    pub executors_lost: Vec<usize>,
}

/// One stage of the graph and what running it took.
#[derive(Debug, Clone, PartialEq)]
pub struct StageAnalysis {
    pub stage: usize,
    /// The stage's lines as EXPLAIN prints them: header, then the pipeline.
    pub explain: String,
    pub partitions: usize,
    /// 1, plus one per resubmission (fetch failures, lost output).
    pub stage_attempts: usize,
    pub task_attempts: usize,
    /// Failed attempts by reason, in [`FAILURE_REASONS`] order, reasons with none left out.
    pub failures: Vec<(TaskEndReason, usize)>,
    /// Attempts stopped on purpose (the job failed, or a speculative copy won).
    pub killed: usize,
    /// Attempts whose output was refused because another attempt of the partition committed.
    pub commit_denied: usize,
    pub speculative: usize,
    /// Speculative copies that finished first.
    pub speculative_won: usize,
    /// Partitions with a failed attempt that a later attempt ran again, ascending.
    pub retried_partitions: Vec<usize>,
    /// Partitions whose finished output was lost and computed again.
    pub recomputed: Vec<RecomputedPartitions>,
    /// Rows output by successful attempts (a recomputed partition counts each time).
    pub rows: usize,
    /// Shuffle bytes written by successful attempts (0 for the result stage).
    pub bytes: u64,
    /// Submission to completion, summed over stage attempts; `None` without events.
    pub wall: Option<Duration>,
    /// Running time of every task attempt, summed.
    pub task_time: Duration,
}

/// A batch of recomputed partitions and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecomputedPartitions {
    pub partitions: Vec<usize>,
    /// `None` when no event said why (the metrics only show the partition succeeded twice).
    pub cause: Option<RecomputeCause>,
    /// The lost executor, when the cause is `ExecutorLost`.
    pub executor: Option<usize>,
}

/// The end reasons that count as failures, in the order they are printed.
pub const FAILURE_REASONS: [TaskEndReason; 3] = [
    TaskEndReason::ExceptionFailure,
    TaskEndReason::FetchFailed,
    TaskEndReason::ExecutorLost,
];

impl ExplainAnalysis {
    /// Combines the graph that ran, the job's metrics and (when events were recorded) the
    /// tracker's view of the same job.
    pub fn new(
        graph: &StageGraph,
        metrics: &JobMetrics,
        rows: usize,
        status: Option<&JobStatus>,
    ) -> Self {
        let explain = stage_blocks(graph);
        let stages: Vec<StageAnalysis> = graph
            .stages
            .iter()
            .zip(explain)
            .map(|(stage, explain)| {
                let stage_metrics = metrics.stage(stage.id);
                let stage_status = status.and_then(|s| s.stage(stage.id));
                analyse_stage(
                    stage.id,
                    stage.partitions,
                    explain,
                    stage_metrics,
                    stage_status,
                )
            })
            .collect();
        let failed_attempts = stages
            .iter()
            .flat_map(|s| s.failures.iter().map(|(_, n)| n))
            .sum();
        ExplainAnalysis {
            job: JobSummary {
                job: metrics.job,
                duration: metrics.duration,
                rows,
                stages: stages.len(),
                task_attempts: metrics.task_attempts(),
                failed_attempts,
                executors_lost: metrics.executors_lost.clone(),
            },
            stages,
        }
    }

    pub fn stage(&self, id: usize) -> Option<&StageAnalysis> {
        self.stages.iter().find(|s| s.stage == id)
    }

    /// The EXPLAIN-style sections `(name, text)`: the SQL statement prints them as rows.
    pub fn sections(&self) -> Vec<(&'static str, String)> {
        let mut graph = String::new();
        for stage in &self.stages {
            // Writing to a String cannot fail.
            let _ = write!(graph, "{stage}");
        }
        vec![
            ("job", self.job.to_string()),
            ("analyzed_stage_graph", graph),
        ]
    }
}

/// The sections as `== name ==` blocks, like `DataFrame::explain`.
impl fmt::Display for ExplainAnalysis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, text) in self.sections() {
            writeln!(f, "== {name} ==\n{}", text.trim_end())?;
        }
        Ok(())
    }
}

impl fmt::Display for JobSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lost = if self.executors_lost.is_empty() {
            "none".to_string()
        } else {
            list(&self.executors_lost)
        };
        writeln!(
            f,
            "Job {} succeeded in {}: {}, {} stage{}, {} task attempt{} ({} failed), executors lost: {lost}",
            self.job,
            millis(self.duration),
            crate::format::rows_label(self.rows),
            self.stages,
            plural(self.stages),
            self.task_attempts,
            plural(self.task_attempts),
            self.failed_attempts,
        )
    }
}

impl fmt::Display for StageAnalysis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut lines = self.explain.lines();
        if let Some(header) = lines.next() {
            writeln!(f, "{header}")?;
        }
        if self.task_attempts == 0 {
            // Zeros for attempts, rows and times would read as a stage that ran and did
            // nothing.
            writeln!(
                f,
                "  not run: its output was already there (cached or checkpointed data)"
            )?;
            for line in lines {
                writeln!(f, "{line}")?;
            }
            return Ok(());
        }
        let failed: usize = self.failures.iter().map(|(_, n)| n).sum();
        let mut failures = if failed == 0 {
            "none".to_string()
        } else {
            self.failures
                .iter()
                .map(|(reason, n)| format!("{n} {reason:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if self.killed > 0 {
            failures.push_str(&format!("; killed: {}", self.killed));
        }
        if self.commit_denied > 0 {
            failures.push_str(&format!("; commit denied: {}", self.commit_denied));
        }
        let retried = if self.retried_partitions.is_empty() {
            "none".to_string()
        } else {
            list(&self.retried_partitions)
        };
        writeln!(
            f,
            "  stage attempts: {}, task attempts: {} (failed: {failures}), retried partitions: {retried}",
            self.stage_attempts, self.task_attempts,
        )?;
        let recomputed = if self.recomputed.is_empty() {
            "none".to_string()
        } else {
            self.recomputed
                .iter()
                .map(RecomputedPartitions::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(
            f,
            "  speculative copies: {} ({} won), recomputed partitions: {recomputed}",
            self.speculative, self.speculative_won,
        )?;
        let bytes = if self.bytes > 0 {
            format!(", {} shuffled", human_bytes(self.bytes))
        } else {
            String::new()
        };
        let wall = self
            .wall
            .map_or_else(|| "n/a".to_string(), |d| format!("{} ms", d.as_millis()));
        writeln!(
            f,
            "  output: {}{bytes}; wall time {wall}, task time {}",
            crate::format::rows_label(self.rows),
            millis(self.task_time),
        )?;
        for line in lines {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

impl fmt::Display for RecomputedPartitions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", list(&self.partitions))?;
        match (self.cause, self.executor) {
            (Some(cause), Some(e)) => write!(f, " ({cause:?}, executor {e})"),
            (Some(cause), None) => write!(f, " ({cause:?})"),
            (None, _) => write!(f, " (cause not recorded)"),
        }
    }
}

/// One stage's numbers from its metrics and, when present, its status.
fn analyse_stage(
    stage: usize,
    partitions: usize,
    explain: String,
    metrics: Option<&StageMetrics>,
    status: Option<&ember_exec::events::StageStatus>,
) -> StageAnalysis {
    let tasks = metrics.map_or(&[][..], |m| m.tasks.as_slice());
    let count = |reason: TaskEndReason| {
        tasks
            .iter()
            .filter(|t| end_reason(&t.status) == reason)
            .count()
    };
    let failures = FAILURE_REASONS
        .iter()
        .map(|&r| (r, count(r)))
        .filter(|(_, n)| *n > 0)
        .collect();
    // A failed attempt was retried when a later attempt of its partition started.
    let mut retried: Vec<usize> = tasks
        .iter()
        .filter(|t| FAILURE_REASONS.contains(&end_reason(&t.status)))
        .filter(|failed| {
            tasks
                .iter()
                .any(|t| t.partition == failed.partition && t.attempt > failed.attempt)
        })
        .map(|t| t.partition)
        .collect();
    retried.sort_unstable();
    retried.dedup();
    let recomputed = match status {
        Some(s) => s
            .recomputations
            .iter()
            .map(|r| RecomputedPartitions {
                partitions: r.partitions.clone(),
                cause: Some(r.cause),
                executor: r.executor,
            })
            .collect(),
        None => {
            let partitions = metrics
                .map(StageMetrics::recomputed_partitions)
                .unwrap_or_default();
            if partitions.is_empty() {
                Vec::new()
            } else {
                vec![RecomputedPartitions {
                    partitions,
                    cause: None,
                    executor: None,
                }]
            }
        }
    };
    let succeeded = || tasks.iter().filter(|t| t.status == TaskStatus::Succeeded);
    StageAnalysis {
        stage,
        explain,
        partitions,
        stage_attempts: metrics.map_or(0, |m| m.attempts),
        task_attempts: tasks.len(),
        failures,
        killed: count(TaskEndReason::TaskKilled),
        commit_denied: count(TaskEndReason::CommitDenied),
        speculative: tasks.iter().filter(|t| t.speculative).count(),
        speculative_won: succeeded().filter(|t| t.speculative).count(),
        retried_partitions: retried,
        recomputed,
        rows: succeeded().map(|t| t.rows).sum(),
        bytes: succeeded().map(|t| t.bytes).sum(),
        wall: status.map(|s| Duration::from_millis(s.wall_ms)),
        task_time: tasks.iter().map(|t| t.duration).sum(),
    }
}

/// The event log's name for how a task attempt ended.
fn end_reason(status: &TaskStatus) -> TaskEndReason {
    match status {
        TaskStatus::Succeeded => TaskEndReason::Success,
        TaskStatus::Failed(_) => TaskEndReason::ExceptionFailure,
        TaskStatus::FetchFailed { .. } => TaskEndReason::FetchFailed,
        TaskStatus::ExecutorLost => TaskEndReason::ExecutorLost,
        TaskStatus::Cancelled => TaskEndReason::TaskKilled,
        TaskStatus::CommitDenied => TaskEndReason::CommitDenied,
    }
}

/// Each stage's lines of the stage graph as EXPLAIN prints it (header, then the indented
/// pipeline), so EXPLAIN ANALYZE shows stages exactly as EXPLAIN does. A stage block starts
/// at every unindented line; should the shapes ever disagree, a plain header is used.
fn stage_blocks(graph: &StageGraph) -> Vec<String> {
    let text = graph.to_string();
    let mut blocks: Vec<String> = Vec::new();
    for line in text.lines() {
        match blocks.last_mut() {
            Some(block) if line.starts_with(char::is_whitespace) => {
                block.push_str(line);
                block.push('\n');
            }
            _ => blocks.push(format!("{line}\n")),
        }
    }
    if blocks.len() == graph.stages.len() {
        return blocks;
    }
    graph
        .stages
        .iter()
        .map(|s| {
            let output = match &s.output {
                StageOutput::Result => "result",
                _ => "intermediate",
            };
            let mut block = format!(
                "Stage {} [{} tasks, output: {output}]\n",
                s.id, s.partitions
            );
            for line in s.plan.display_indent().lines() {
                block.push_str(&format!("  {line}\n"));
            }
            block
        })
        .collect()
}

fn list(values: &[usize]) -> String {
    format!("{values:?}")
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// `1536` → `1.5 KiB`.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use ember_exec::events::{Event, EventKind, Status};
    use ember_exec::scheduler::TaskMetrics;

    use super::*;

    /// A two-stage graph over a two-partition table: scan + partial aggregate, then the
    /// final aggregate.
    fn graph() -> StageGraph {
        use arrow::array::{Int64Array, RecordBatch};
        use arrow::datatypes::{DataType, Field, Schema};

        let session = Session::new();
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let part = |v: i64| {
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![v]))]).unwrap()
        };
        session
            .register_batches("t", schema.clone(), vec![vec![part(1)], vec![part(2)]])
            .unwrap();
        let df = session
            .sql("SELECT id, count(*) FROM t GROUP BY id")
            .unwrap();
        session.prepare(df.plan()).unwrap().stages
    }

    fn task(
        partition: usize,
        attempt: usize,
        speculative: bool,
        status: TaskStatus,
    ) -> TaskMetrics {
        let ok = status == TaskStatus::Succeeded;
        TaskMetrics {
            partition,
            attempt,
            stage_attempt: 0,
            executor: 0,
            speculative,
            duration: Duration::from_millis(2),
            rows: if ok { 10 } else { 0 },
            bytes: if ok { 1000 } else { 0 },
            status,
        }
    }

    /// Stage 0: partition 0 fails once and is retried; partition 1 is computed twice
    /// (recomputed); the original of partition 1's first run loses to a speculative copy.
    fn metrics(graph: &StageGraph) -> JobMetrics {
        let stages = graph
            .stages
            .iter()
            .map(|s| StageMetrics {
                stage: s.id,
                partitions: s.partitions,
                attempts: 1,
                tasks: (0..s.partitions)
                    .map(|p| task(p, 0, false, TaskStatus::Succeeded))
                    .collect(),
            })
            .collect::<Vec<_>>();
        let mut metrics = JobMetrics {
            job: 7,
            duration: Duration::from_millis(25),
            stages,
            executors_lost: vec![1],
        };
        let first = &mut metrics.stages[0];
        first.attempts = 2;
        first.tasks = vec![
            task(0, 0, false, TaskStatus::Failed("boom".into())),
            task(0, 1, false, TaskStatus::Succeeded),
            task(1, 1, true, TaskStatus::Succeeded),
            task(1, 0, false, TaskStatus::Cancelled),
            task(1, 2, false, TaskStatus::Succeeded),
        ];
        metrics
    }

    #[test]
    fn counts_failures_retries_speculation_and_output_from_the_metrics() {
        let graph = graph();
        assert!(graph.stages.len() >= 2, "{graph}");
        let analysis = ExplainAnalysis::new(&graph, &metrics(&graph), 2, None);
        let s0 = &analysis.stages[0];
        assert_eq!(s0.stage_attempts, 2);
        assert_eq!(s0.task_attempts, 5);
        assert_eq!(s0.failures, vec![(TaskEndReason::ExceptionFailure, 1)]);
        assert_eq!(s0.retried_partitions, vec![0]);
        assert_eq!((s0.killed, s0.commit_denied), (1, 0));
        assert_eq!((s0.speculative, s0.speculative_won), (1, 1));
        assert_eq!((s0.rows, s0.bytes), (30, 3000));
        assert_eq!(s0.task_time, Duration::from_millis(10));
        // Without events the cause is unknown, but the metrics still show partition 1 ran
        // to success twice.
        assert_eq!(
            s0.recomputed,
            vec![RecomputedPartitions {
                partitions: vec![1],
                cause: None,
                executor: None
            }]
        );
        assert_eq!(s0.wall, None);
        assert_eq!(analysis.job.failed_attempts, 1);
        assert_eq!(analysis.job.executors_lost, vec![1]);

        let text = analysis.to_string();
        assert!(
            text.starts_with("== job ==\nJob 7 succeeded in 25.0 ms: 2 rows"),
            "{text}"
        );
        assert!(text.contains("executors lost: [1]"), "{text}");
        assert!(
            text.contains(
                "  stage attempts: 2, task attempts: 5 (failed: 1 ExceptionFailure; killed: 1), \
                 retried partitions: [0]\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "speculative copies: 1 (1 won), recomputed partitions: [1] (cause not recorded)"
            ),
            "{text}"
        );
        assert!(
            text.contains("output: 30 rows, 2.9 KiB shuffled; wall time n/a"),
            "{text}"
        );
    }

    #[test]
    fn takes_recompute_causes_and_wall_time_from_the_job_status() {
        let graph = graph();
        let at = |timestamp, kind| Event { timestamp, kind };
        let events = vec![
            at(
                100,
                EventKind::StageSubmitted {
                    job: 7,
                    stage: 0,
                    stage_attempt: 0,
                    partitions: vec![0, 1],
                },
            ),
            at(
                130,
                EventKind::StageCompleted {
                    job: 7,
                    stage: 0,
                    stage_attempt: 0,
                    succeeded: true,
                    message: None,
                },
            ),
            at(
                150,
                EventKind::PartitionsRecomputed {
                    job: 7,
                    stage: 0,
                    partitions: vec![1],
                    cause: RecomputeCause::ExecutorLost,
                    executor: Some(1),
                },
            ),
        ];
        let status = Status::from_events(&events);
        let job = status.job(7).unwrap();
        let analysis = ExplainAnalysis::new(&graph, &metrics(&graph), 2, Some(job));
        let s0 = &analysis.stages[0];
        assert_eq!(s0.wall, Some(Duration::from_millis(30)));
        assert_eq!(s0.recomputed[0].cause, Some(RecomputeCause::ExecutorLost));
        let text = analysis.to_string();
        assert!(
            text.contains("recomputed partitions: [1] (ExecutorLost, executor 1)"),
            "{text}"
        );
        assert!(text.contains("wall time 30 ms"), "{text}");
    }

    #[test]
    fn every_stage_block_is_the_explain_block_with_annotations_under_its_header() {
        let graph = graph();
        let blocks = stage_blocks(&graph);
        assert_eq!(blocks.len(), graph.stages.len());
        assert_eq!(blocks.concat(), graph.to_string());
        let analysis = ExplainAnalysis::new(&graph, &metrics(&graph), 2, None);
        let (_, text) = &analysis.sections()[1];
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("Stage 0 ["), "{text}");
        assert!(lines[1].starts_with("  stage attempts: "), "{text}");
        assert!(lines[2].starts_with("  speculative copies: "), "{text}");
        assert!(lines[3].starts_with("  output: "), "{text}");
        // Then the stage's pipeline, exactly as EXPLAIN prints it.
        assert_eq!(lines[4], blocks[0].lines().nth(1).unwrap(), "{text}");
    }

    #[test]
    fn bytes_are_printed_in_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.0 MiB");
    }
}
