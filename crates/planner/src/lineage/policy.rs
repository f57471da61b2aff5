//! The knobs of automatic checkpoint placement and the Young–Daly interval they imply.

/// How the planner decides where to checkpoint automatically.
///
/// The session fills it from `ember.checkpoint.auto`, `ember.checkpoint.mtbf`,
/// `ember.checkpoint.maxLineageDepth`, the checkpoint write rate and the executor count.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointPolicy {
    /// Place checkpoints automatically (`ember.checkpoint.auto`, default true). Explicitly
    /// requested checkpoints are kept either way.
    pub auto: bool,
    /// Mean time between failures of *one* executor, in seconds (`ember.checkpoint.mtbf`,
    /// default 3600: one failure an hour is pessimistic for a machine, which keeps the
    /// model checkpointing long jobs rather than betting on a quiet cluster).
    pub mtbf_secs: f64,
    /// Hard cap on the number of stages since the last durable point
    /// (`ember.checkpoint.maxLineageDepth`, default 20). Guards recovery time and plan size
    /// when statistics are missing or wrong.
    pub max_lineage_depth: usize,
    /// Reliable-checkpoint write throughput of one executor, in bytes per second (default
    /// 100 MB/s: Parquet encoding plus a local or object-store write).
    pub write_bytes_per_sec: f64,
    /// Executors in the cluster (default 1). More executors fail more often together
    /// (cluster MTBF = MTBF ÷ executors) but also recompute and write in parallel.
    pub executors: usize,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        CheckpointPolicy {
            auto: true,
            mtbf_secs: 3600.0,
            max_lineage_depth: 20,
            write_bytes_per_sec: 100e6,
            executors: 1,
        }
    }
}

impl CheckpointPolicy {
    /// Mean time between failures of the whole cluster: any executor failing loses work.
    pub fn cluster_mtbf_secs(&self) -> f64 {
        self.mtbf_secs / self.executors.max(1) as f64
    }

    /// The Young–Daly checkpoint interval for a checkpoint that takes `write_secs` to write:
    /// `√(2 · W · MTBF_cluster)`, the amount of work between checkpoints that minimises
    /// expected time lost to writing plus recomputing after failures.
    pub fn young_daly_interval(&self, write_secs: f64) -> f64 {
        (2.0 * write_secs.max(0.0) * self.cluster_mtbf_secs().max(0.0)).sqrt()
    }

    /// How many of a stage's `partitions` tasks run at once.
    pub fn parallelism(&self, partitions: usize) -> usize {
        partitions.min(self.executors).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_mtbf_divides_by_executors() {
        let p = CheckpointPolicy {
            mtbf_secs: 3600.0,
            executors: 4,
            ..Default::default()
        };
        assert_eq!(p.cluster_mtbf_secs(), 900.0);
        // √(2 · 0.5 · 900) = 30
        assert!((p.young_daly_interval(0.5) - 30.0).abs() < 1e-9);
    }

    #[test]
    fn zero_executors_count_as_one() {
        let p = CheckpointPolicy {
            executors: 0,
            ..Default::default()
        };
        assert_eq!(p.cluster_mtbf_secs(), 3600.0);
        assert_eq!(p.parallelism(8), 1);
    }
}
