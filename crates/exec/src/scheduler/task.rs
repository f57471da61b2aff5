//! One task: one partition of one stage, run on an executor's slot.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;

use ember_planner::physical::PhysicalPlan;
use ember_planner::stages::{StageOutput, StageTee};
use ember_planner::table::BatchIter;
use ember_planner::{EmberError, Result};

use crate::context::TaskContext;
use crate::executor::LocalExecutor;
use crate::fault::FaultInjector;
use crate::memory::TaskMemory;
use crate::operators;
use crate::persist::{
    checkpoint_file, store_partition, Kept, PersistRegistry, RegistryReader, TeeMode, TeeSink,
};
use crate::shuffle::reader::TrackerShuffleReader;
use crate::shuffle::tracker::MapOutputTracker;
use crate::shuffle::writer::{write_map_output, MapOutput};
use crate::shuffle::Partitioner;
use crate::udf::FunctionRegistry;

/// Which task attempt is about to run, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskInfo {
    pub job: usize,
    pub stage: usize,
    pub partition: usize,
    pub attempt: usize,
    pub executor: usize,
}

/// Called on the executor right before every task attempt runs. Fault injection uses it
/// (fail an attempt, delete a shuffle block through the tracker); an error it returns fails
/// the attempt exactly as if the task itself had raised it, so the recovery paths that run
/// are the real ones.
pub trait TaskHook: Send + Sync {
    fn before_task(&self, task: &TaskInfo, tracker: &MapOutputTracker) -> Result<()>;
}

/// Everything a task needs, owned, so it can move to a pool thread.
pub(crate) struct TaskSpec {
    pub info: TaskInfo,
    pub plan: Arc<PhysicalPlan>,
    pub output: StageOutput,
    /// The checkpoint the stage tees, if any.
    pub tee: Option<StageTee>,
    pub executor: Arc<LocalExecutor>,
    pub functions: Arc<FunctionRegistry>,
    pub tracker: Arc<MapOutputTracker>,
    pub batch_size: usize,
    pub hook: Option<Arc<dyn TaskHook>>,
    /// The job's fault injector; it runs before `hook`.
    pub faults: Option<Arc<FaultInjector>>,
    pub cancelled: Arc<AtomicBool>,
    /// The session's persisted plans: where persist tasks register output and reads look.
    pub persisted: Arc<PersistRegistry>,
    /// Every executor of the cluster (persisted blocks are read from their owners).
    pub executors: Vec<Arc<LocalExecutor>>,
}

/// What a successful task hands back to the driver.
#[derive(Debug)]
pub(crate) enum TaskOutput {
    /// Blocks written by a map task (registered by the driver, not the task).
    Map(MapOutput),
    /// A partition of a persisted plan, kept where [`Kept`] says.
    Persisted { kept: Kept, rows: usize, bytes: u64 },
    /// A result partition's rows.
    Result(Vec<RecordBatch>),
    /// The stage's output, and the partition of the checkpoint it tees.
    Teed { output: Box<TaskOutput>, kept: Kept },
}

impl TaskOutput {
    /// Whether the output lives on the executor that made it (shuffle files, blocks), so
    /// is gone if that executor is lost.
    pub fn held_by_executor(&self) -> bool {
        match self {
            TaskOutput::Map(_)
            | TaskOutput::Persisted {
                kept: Kept::Block { .. },
                ..
            } => true,
            TaskOutput::Persisted { .. } | TaskOutput::Result(_) => false,
            TaskOutput::Teed { output, .. } => output.held_by_executor(),
        }
    }

    pub fn rows(&self) -> usize {
        match self {
            TaskOutput::Map(m) => m.rows,
            TaskOutput::Persisted { rows, .. } => *rows,
            TaskOutput::Result(batches) => batches.iter().map(|b| b.num_rows()).sum(),
            TaskOutput::Teed { output, .. } => output.rows(),
        }
    }

    pub fn bytes(&self) -> u64 {
        match self {
            TaskOutput::Map(m) => m.bytes,
            TaskOutput::Persisted { bytes, .. } => *bytes,
            TaskOutput::Result(_) => 0,
            TaskOutput::Teed { output, .. } => output.bytes(),
        }
    }
}

/// Runs the task's pipeline and delivers its output. Errors keep their type (a fetch
/// failure stays `FetchFailed`), because the scheduler's recovery depends on it.
pub(crate) fn run_task(spec: &TaskSpec) -> Result<TaskOutput> {
    let info = &spec.info;
    spec.executor.check_alive()?;
    if let Some(faults) = &spec.faults {
        faults.before_task_cancellable(info, &spec.tracker, &spec.cancelled)?;
    }
    if let Some(hook) = &spec.hook {
        hook.before_task(info, &spec.tracker)?;
    }
    // Killed while held back by a hook (a delayed straggler whose copy already won).
    if spec.cancelled.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(cancelled(info));
    }
    let ctx = Arc::new(TaskContext {
        stage: info.stage,
        partition: info.partition,
        attempt: info.attempt,
        batch_size: spec.batch_size,
        functions: spec.functions.clone(),
        shuffle: Arc::new(TrackerShuffleReader::new(spec.tracker.clone())),
        persisted: Arc::new(RegistryReader::new(
            spec.persisted.clone(),
            spec.executors.clone(),
        )),
        cancelled: spec.cancelled.clone(),
        memory: TaskMemory::new(spec.executor.memory().clone(), spec.executor.spill_dir()),
        tee: spec
            .tee
            .as_ref()
            .map(|tee| tee_mode(spec, tee))
            .transpose()?,
    });
    let input = operators::execute(&spec.plan, info.partition, &ctx)?;
    let output = match &spec.output {
        StageOutput::Shuffle(kind) => {
            let partitioner =
                Partitioner::try_new(kind, info.partition, spec.plan.schema(), &spec.functions)?;
            let dir = spec.executor.job_shuffle_dir(info.job);
            TaskOutput::Map(write_map_output(input, partitioner, &dir, &ctx)?)
        }
        StageOutput::Persist { id, mode } => {
            let mut file =
                checkpoint_file(&spec.persisted, *id, *mode, info.partition, info.attempt)?;
            let batches = collect(input, &ctx, info, |batch| match &mut file {
                Some(file) => file.write(batch),
                None => Ok(()),
            })?;
            let rows = batches.iter().map(|b| b.num_rows()).sum();
            let bytes = batches
                .iter()
                .map(|b| b.get_array_memory_size() as u64)
                .sum();
            let kept = store_partition(&spec.executor, *id, *mode, info.partition, batches, file)?;
            TaskOutput::Persisted { kept, rows, bytes }
        }
        StageOutput::Result => TaskOutput::Result(collect(input, &ctx, info, |_| Ok(()))?),
    };
    // After the stage's output: the operators above the tee are done with its rows.
    let output = match (&spec.tee, &ctx.tee) {
        (Some(tee), Some(TeeMode::Write(sink))) => TaskOutput::Teed {
            kept: sink.finish(&tee.input, &ctx)?,
            output: Box::new(output),
        },
        _ => output,
    };
    // A hung executor sends nothing: the result is held until the driver gives up on the
    // executor, and then, like output made on any executor that died meanwhile (its files
    // are gone), it is not trusted.
    spec.executor.wait_while_hung();
    spec.executor.check_alive()?;
    Ok(output)
}

/// How the task's teed checkpoint runs: read from the committed checkpoint, or written as
/// its rows are computed.
fn tee_mode(spec: &TaskSpec, tee: &StageTee) -> Result<TeeMode> {
    let partition = spec.info.partition;
    if spec.persisted.locate(tee.id, partition).is_some() {
        return Ok(TeeMode::Read);
    }
    let file = checkpoint_file(
        &spec.persisted,
        tee.id,
        tee.mode,
        partition,
        spec.info.attempt,
    )?
    .ok_or_else(|| {
        EmberError::Internal(format!(
            "stage {} tees persisted plan {} ({}), which is not a reliable checkpoint",
            spec.info.stage, tee.id, tee.mode
        ))
    })?;
    Ok(TeeMode::Write(Arc::new(TeeSink::new(tee.id, file))))
}

/// Drains a task's pipeline into its non-empty batches, handing each to `each` as it comes,
/// and stopping if the task is killed.
fn collect(
    input: BatchIter,
    ctx: &TaskContext,
    info: &TaskInfo,
    mut each: impl FnMut(&RecordBatch) -> Result<()>,
) -> Result<Vec<RecordBatch>> {
    let mut batches = Vec::new();
    for batch in input {
        if ctx.is_cancelled() {
            return Err(cancelled(info));
        }
        let batch = batch?;
        if batch.num_rows() > 0 {
            each(&batch)?;
            batches.push(batch);
        }
    }
    Ok(batches)
}

fn cancelled(info: &TaskInfo) -> EmberError {
    EmberError::Execution(format!(
        "task {}.{} (attempt {}) was cancelled",
        info.stage, info.partition, info.attempt
    ))
}
