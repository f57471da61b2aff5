//! What happened while a job ran: every task attempt, where it ran, how long it took and how
//! it ended. EXPLAIN ANALYZE prints it; fault tests assert recovery on it (which partitions
//! were recomputed, how many attempts a task needed).

use std::fmt;
use std::time::Duration;

/// How one task attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskStatus {
    Succeeded,
    /// The task's own failure (counts toward `max_task_failures`).
    Failed(String),
    /// The task could not read a parent's shuffle block; the map output was recomputed.
    FetchFailed {
        map_stage: usize,
        map_partition: usize,
    },
    /// The executor running it was lost; its output (if any) was discarded.
    ExecutorLost,
    /// Killed by the driver: the job failed, or another attempt of the partition won.
    Cancelled,
    /// Finished after another attempt of the partition had already delivered its output;
    /// this one was discarded.
    CommitDenied,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskMetrics {
    pub partition: usize,
    /// The task attempt number (0 for the first run of the partition, counting
    /// recomputations).
    pub attempt: usize,
    /// Stage attempt the task belonged to (bumped by fetch failures).
    pub stage_attempt: usize,
    pub executor: usize,
    /// A speculative copy of a straggler.
    pub speculative: bool,
    pub duration: Duration,
    /// Rows the task produced (written to shuffle, or returned for a result stage).
    pub rows: usize,
    /// Shuffle bytes written (0 for result tasks).
    pub bytes: u64,
    pub status: TaskStatus,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageMetrics {
    pub stage: usize,
    pub partitions: usize,
    /// Stage attempts: 1, plus one for every round of fetch failures its tasks hit and for
    /// every resubmission after its output was lost.
    pub attempts: usize,
    /// Every task attempt, in the order they finished.
    pub tasks: Vec<TaskMetrics>,
}

impl StageMetrics {
    /// How many attempts of `partition` succeeded (more than 1 = recomputed).
    pub fn successes(&self, partition: usize) -> usize {
        self.tasks
            .iter()
            .filter(|t| t.partition == partition && t.status == TaskStatus::Succeeded)
            .count()
    }

    /// All attempts of `partition`, in finishing order.
    pub fn attempts_of(&self, partition: usize) -> Vec<&TaskMetrics> {
        self.tasks
            .iter()
            .filter(|t| t.partition == partition)
            .collect()
    }

    /// Partitions whose output was computed more than once (lost and recomputed).
    pub fn recomputed_partitions(&self) -> Vec<usize> {
        (0..self.partitions)
            .filter(|p| self.successes(*p) > 1)
            .collect()
    }

    /// Rows output by the successful attempts (counting recomputations once each).
    pub fn rows(&self) -> usize {
        self.tasks
            .iter()
            .filter(|t| t.status == TaskStatus::Succeeded)
            .map(|t| t.rows)
            .sum()
    }

    /// Sum of all task attempts' running time.
    pub fn task_time(&self) -> Duration {
        self.tasks.iter().map(|t| t.duration).sum()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobMetrics {
    pub job: usize,
    pub duration: Duration,
    /// One entry per stage of the graph, in graph order.
    pub stages: Vec<StageMetrics>,
    /// Executors found dead while the job ran.
    pub executors_lost: Vec<usize>,
}

impl JobMetrics {
    pub fn stage(&self, id: usize) -> Option<&StageMetrics> {
        self.stages.iter().find(|s| s.stage == id)
    }

    /// Total task attempts over all stages.
    pub fn task_attempts(&self) -> usize {
        self.stages.iter().map(|s| s.tasks.len()).sum()
    }
}

impl fmt::Display for JobMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Job {} finished in {:.3?}", self.job, self.duration)?;
        for s in &self.stages {
            let failed = s
                .tasks
                .iter()
                .filter(|t| t.status != TaskStatus::Succeeded)
                .count();
            writeln!(
                f,
                "  Stage {}: {} partitions, {} attempts, {} tasks ({} failed), {} rows, task time {:.3?}",
                s.stage,
                s.partitions,
                s.attempts,
                s.tasks.len(),
                failed,
                s.rows(),
                s.task_time()
            )?;
            let recomputed = s.recomputed_partitions();
            if !recomputed.is_empty() {
                writeln!(f, "    recomputed partitions: {recomputed:?}")?;
            }
        }
        if !self.executors_lost.is_empty() {
            writeln!(f, "  executors lost: {:?}", self.executors_lost)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(partition: usize, status: TaskStatus) -> TaskMetrics {
        TaskMetrics {
            partition,
            attempt: 0,
            stage_attempt: 0,
            executor: 0,
            speculative: false,
            duration: Duration::from_millis(1),
            rows: 10,
            bytes: 0,
            status,
        }
    }

    #[test]
    fn recomputed_partitions_count_only_successes() {
        let s = StageMetrics {
            stage: 0,
            partitions: 3,
            attempts: 1,
            tasks: vec![
                task(0, TaskStatus::Succeeded),
                task(1, TaskStatus::Failed("boom".into())),
                task(1, TaskStatus::Succeeded),
                task(2, TaskStatus::Succeeded),
                task(2, TaskStatus::Succeeded),
            ],
        };
        assert_eq!(s.recomputed_partitions(), vec![2]);
        assert_eq!(s.attempts_of(1).len(), 2);
        assert_eq!(s.rows(), 40);
    }
}
