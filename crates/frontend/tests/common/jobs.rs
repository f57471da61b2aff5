//! One query job on a fresh local cluster, configured from `ember.*` settings exactly as a
//! session configures its jobs, with an in-memory event log to read the recovery back from.
//!
//! A fresh cluster per job keeps executor ids, stage ids and the log of one run apart from
//! every other run, so a test can say "executor 0" and "stage 3" and mean this job's.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use ember_exec::events::{Event, EventKind, EventLog, RecomputeCause, TaskEndReason};
use ember_exec::executor::{ClusterConfig, LocalCluster};
use ember_exec::fault::{Fault, InjectedFault};
use ember_exec::scheduler::{run_job, JobContext, JobResult};
use ember_exec::udf::FunctionRegistry;
use ember_frontend::format::cell_strings;
use ember_planner::stages::{StageGraph, StageOutput};
use ember_planner::Result;

/// The cluster every job runs on unless its settings say otherwise: two executors, so one
/// can be lost while the other carries on, with two task slots each.
pub const DEFAULT_SETTINGS: [(&str, &str); 2] = [
    ("ember.executor.instances", "2"),
    ("ember.executor.cores", "2"),
];

/// What one job left behind.
pub struct Run {
    pub result: Result<JobResult>,
    pub events: Vec<Event>,
    /// Faults that fired (plan and chaos).
    pub injected: Vec<InjectedFault>,
    /// Plan faults that never fired.
    pub unfired: Vec<Fault>,
}

/// One `TaskEnd` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskEnd {
    pub stage: usize,
    pub partition: usize,
    pub attempt: usize,
    pub executor: usize,
    pub speculative: bool,
    pub reason: TaskEndReason,
    pub rows: usize,
    /// For `FetchFailed`: the map output that could not be read.
    pub map_output: Option<(usize, usize)>,
    /// The error, for every reason but `Success`.
    pub message: Option<String>,
}

/// One `PartitionsRecomputed` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recomputed {
    pub stage: usize,
    pub partitions: Vec<usize>,
    pub cause: RecomputeCause,
    pub executor: Option<usize>,
}

/// Runs `graph` on a fresh cluster configured from [`DEFAULT_SETTINGS`] overridden by
/// `settings` (cluster shape, scheduler limits, `ember.fault.*`).
pub fn run(
    graph: &StageGraph,
    functions: &Arc<FunctionRegistry>,
    settings: &[(&str, &str)],
) -> Run {
    let map: HashMap<String, String> = DEFAULT_SETTINGS
        .iter()
        .chain(settings)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let get = |k: &str| map.get(k).cloned();
    let events = Arc::new(EventLog::in_memory("fault-matrix"));
    let config = ClusterConfig::from_settings(get).expect("valid cluster settings");
    let cluster =
        LocalCluster::with_event_log(&config, events.clone()).expect("a local cluster starts");
    let ctx = JobContext::from_settings(functions.clone(), get, &cluster)
        .expect("valid job and fault settings");
    let result = run_job(graph, &cluster, &ctx);
    let (injected, unfired) = match &ctx.faults {
        Some(faults) => (faults.injected(), faults.unfired()),
        None => (Vec::new(), Vec::new()),
    };
    // Dropping the cluster posts ApplicationEnd and removes its scratch dir.
    drop(cluster);
    Run {
        result,
        events: events.events(),
        injected,
        unfired,
    }
}

impl Run {
    /// The result rows as cell strings, in result order; panics with the job's error.
    pub fn rows(&self, what: &str) -> Vec<Vec<String>> {
        match &self.result {
            Ok(result) => {
                let batches: Vec<_> = result.partitions.iter().flatten().cloned().collect();
                cell_strings(&batches).expect("result cells format")
            }
            Err(e) => panic!("{what}: the job failed: {e}\nevents:\n{}", self.log_text()),
        }
    }

    /// The event log as JSON lines, for assertion messages.
    pub fn log_text(&self) -> String {
        self.events
            .iter()
            .map(|e| serde_json::to_string(e).unwrap_or_else(|err| format!("<{err}>")))
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn task_ends(&self) -> Vec<TaskEnd> {
        self.events.iter().filter_map(task_end).collect()
    }

    pub fn recomputed(&self) -> Vec<Recomputed> {
        self.events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::PartitionsRecomputed {
                    stage,
                    partitions,
                    cause,
                    executor,
                    ..
                } => Some(Recomputed {
                    stage: *stage,
                    partitions: partitions.clone(),
                    cause: *cause,
                    executor: *executor,
                }),
                _ => None,
            })
            .collect()
    }

    /// Every recomputed partition by stage; panics if a partition was recomputed twice
    /// (one loss must cost one recomputation).
    pub fn recomputed_once(&self) -> BTreeMap<usize, BTreeSet<usize>> {
        let mut by_stage: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
        for r in self.recomputed() {
            for p in r.partitions {
                assert!(
                    by_stage.entry(r.stage).or_default().insert(p),
                    "partition {p} of stage {} was recomputed twice\n{}",
                    r.stage,
                    self.log_text()
                );
            }
        }
        by_stage
    }

    /// `(executor, message)` of every `ExecutorRemoved`.
    pub fn removed(&self) -> Vec<(usize, String)> {
        self.events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::ExecutorRemoved { executor, message } => {
                    Some((*executor, message.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// Events that show a fault struck: a task that did not succeed, a lost executor, a
    /// recomputed partition.
    pub fn fault_evidence(&self) -> usize {
        self.events
            .iter()
            .filter(|e| match &e.kind {
                EventKind::TaskEnd { reason, .. } => *reason != TaskEndReason::Success,
                EventKind::ExecutorRemoved { .. } | EventKind::PartitionsRecomputed { .. } => true,
                _ => false,
            })
            .count()
    }

    /// The job's duration from its `JobEnd`.
    pub fn duration_ms(&self) -> u64 {
        self.events
            .iter()
            .find_map(|e| match e.kind {
                EventKind::JobEnd { duration_ms, .. } => Some(duration_ms),
                _ => None,
            })
            .expect("a JobEnd event")
    }

    /// What losing `executor` may and must recompute, derived from the log alone (see
    /// [`Loss`]).
    pub fn loss_of(&self, graph: &StageGraph, executor: usize) -> Loss {
        let removed_at = self
            .events
            .iter()
            .position(|e| {
                matches!(e.kind, EventKind::ExecutorRemoved { executor: x, .. } if x == executor)
            })
            .unwrap_or_else(|| {
                panic!("no ExecutorRemoved for executor {executor}\n{}", self.log_text())
            });
        let ends: Vec<TaskEnd> = self.events[..removed_at]
            .iter()
            .filter_map(task_end)
            .filter(|t| t.reason == TaskEndReason::Success)
            .collect();
        let n = graph.stages.len();
        let mut held = vec![BTreeSet::new(); n];
        let mut missing = Vec::with_capacity(n);
        for (i, stage) in graph.stages.iter().enumerate() {
            let done: BTreeSet<usize> = ends
                .iter()
                .filter(|t| t.stage == stage.id)
                .map(|t| t.partition)
                .collect();
            if matches!(stage.output, StageOutput::Shuffle(_)) {
                held[i] = ends
                    .iter()
                    .filter(|t| t.stage == stage.id && t.executor == executor)
                    .map(|t| t.partition)
                    .collect();
            }
            let gone: BTreeSet<usize> = (0..stage.partitions)
                .filter(|p| !done.contains(p) || held[i].contains(p))
                .collect();
            missing.push(gone);
        }
        let index_of = |id: usize| graph.stages.iter().position(|s| s.id == id);
        let children: Vec<Vec<usize>> = graph
            .stages
            .iter()
            .map(|s| {
                graph
                    .children_of(s.id)
                    .into_iter()
                    .filter_map(index_of)
                    .collect()
            })
            .collect();
        // The scheduler's rule: needed = missing partitions and a needed consumer (or the
        // result itself). Children come after parents, so walk backwards.
        let mut needed = vec![false; n];
        for i in (0..n).rev() {
            needed[i] =
                !missing[i].is_empty() && (i == n - 1 || children[i].iter().any(|&c| needed[c]));
        }
        let started_after: BTreeSet<usize> = self.events[removed_at..]
            .iter()
            .filter_map(|e| match e.kind {
                EventKind::TaskStart { stage, .. } => Some(stage),
                _ => None,
            })
            .collect();
        let mut loss = Loss::default();
        for (i, stage) in graph.stages.iter().enumerate() {
            if held[i].is_empty() {
                continue;
            }
            loss.held.insert(stage.id, held[i].clone());
            let runnable_at_once = needed[i]
                && graph.stages[i]
                    .parents
                    .iter()
                    .filter_map(|&p| index_of(p))
                    .all(|p| missing[p].is_empty());
            let read_later = children[i]
                .iter()
                .any(|&c| started_after.contains(&graph.stages[c].id));
            if runnable_at_once || read_later {
                loss.required.insert(stage.id);
            }
        }
        loss
    }
}

/// What the loss of one executor may and must cost, from the `TaskEnd`s before its
/// `ExecutorRemoved`.
///
/// Each map stage may recompute exactly the partitions the executor had produced
/// (`held`) or nothing — never others, never part of them. It must recompute them when
/// it was needed and runnable the moment the loss was handled (the scheduler decides
/// that before it handles any other event), or when a stage reading it ran a task after
/// the loss (a reader only runs on complete input). A stage whose parents were lost too
/// is only recomputed if still needed once they are back: result tasks that finish
/// meanwhile (a result already delivered is kept, even from the lost executor) can make
/// it unnecessary.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Loss {
    pub held: BTreeMap<usize, BTreeSet<usize>>,
    pub required: BTreeSet<usize>,
}

fn task_end(event: &Event) -> Option<TaskEnd> {
    match &event.kind {
        EventKind::TaskEnd {
            stage,
            partition,
            attempt,
            executor,
            speculative,
            reason,
            rows,
            map_stage,
            map_partition,
            message,
            ..
        } => Some(TaskEnd {
            stage: *stage,
            partition: *partition,
            attempt: *attempt,
            executor: *executor,
            speculative: *speculative,
            reason: *reason,
            rows: *rows,
            map_output: map_stage.zip(*map_partition),
            message: message.clone(),
        }),
        _ => None,
    }
}
