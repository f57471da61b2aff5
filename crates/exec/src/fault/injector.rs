//! The fault injector: answers the scheduler's "should something go wrong now?" questions
//! from a [`FaultPlan`] and optional [`ChaosConfig`], and records what it injected.
//!
//! The scheduler asks at four points, each a place where a real failure can strike:
//!
//! | question | asked when | answers |
//! |---|---|---|
//! | [`FaultInjector::on_task_start`] | a task attempt starts | `Fail`, `Delay`, `Hang` |
//! | [`FaultInjector::on_stage_progress`] | a stage's finished-task count changes | `KillExecutor`, `HangExecutor` |
//! | [`FaultInjector::shuffle_to_lose`] | a map stage's outputs are registered | map partitions to lose |
//! | [`FaultInjector::corrupt_checkpoint`] | a reliable checkpoint file was written | damage it? |
//!
//! Every plan fault fires at most once; chaos faults are decided per task attempt (pure in
//! seed, stage, partition, attempt) and executor-level chaos faults fire at most once per
//! injector. One injector serves one job: stage ids restart with every plan.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use ember_planner::Result;

use super::chaos::{ChaosConfig, ChaosFault, Damage};
use super::plan::{Fault, FaultPlan};

/// How long a task on a hung executor stays blocked if the scheduler never declares the
/// executor lost. Only a safety net against a scheduler without hang detection: Spark's
/// default detection takes about 120 s, Ember's target is 2 s.
const DEFAULT_HANG_LIMIT: Duration = Duration::from_secs(120);

/// What the scheduler (or the task hook) must do to inject a fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultAction {
    /// Fail the attempt with this message, as if the task raised it.
    Fail(String),
    /// Hold the attempt back this many milliseconds before it runs.
    Delay(u64),
    /// The attempt runs on a hung executor: it must make no progress and send nothing until
    /// the executor is declared lost ([`FaultInjector::executor_lost`]).
    Hang,
    /// Kill this executor now: its slots, cached blocks, local checkpoints and shuffle files
    /// are gone.
    KillExecutor(usize),
    /// This executor stops heartbeating and making progress but stays "alive".
    HangExecutor(usize),
}

/// Where an injected fault came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultSource {
    Plan,
    Chaos,
}

/// One fault that actually fired, in plan syntax, for tests and the event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InjectedFault {
    pub source: FaultSource,
    pub fault: Fault,
}

/// A map output to damage, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShuffleLoss {
    pub stage: usize,
    pub partition: usize,
    pub damage: Damage,
}

#[derive(Debug, Default)]
struct State {
    /// Per plan fault: has it fired?
    fired: Vec<bool>,
    /// Map outputs chaos decided to lose, not yet handed out.
    chaos_losses: Vec<ShuffleLoss>,
    /// Executor faults chaos decided at a task start: (stage, action), delivered at the next
    /// progress report.
    chaos_executor_faults: Vec<(usize, FaultAction)>,
    /// Chaos has used its one executor fault.
    chaos_executor_fault_used: bool,
    /// Executors that were told to hang and have not been declared lost.
    hung: BTreeSet<usize>,
    /// Last reported completion percentage of each stage.
    progress: HashMap<usize, u8>,
    /// Checkpoint files written from now on are damaged (plan or chaos).
    corrupt_armed: bool,
    /// Checkpoint files already damaged (each is damaged once).
    corrupted: Vec<String>,
    corrupted_set: HashSet<String>,
    injected: Vec<InjectedFault>,
}

/// Thread-safe: the scheduler loop, task threads and checkpoint writers share one `Arc`.
#[derive(Debug)]
pub struct FaultInjector {
    plan: FaultPlan,
    chaos: Option<ChaosConfig>,
    /// Executors in the cluster; chaos never takes out the only one.
    executors: usize,
    /// Chaos never fails the attempt that would exhaust `ember.task.maxFailures`: random
    /// faults must test recovery, not end the job.
    max_task_failures: usize,
    hang_limit: Duration,
    state: Mutex<State>,
    released: Condvar,
}

impl FaultInjector {
    /// An injector for `plan` on a cluster of `executors`, without chaos, assuming the
    /// default `ember.task.maxFailures` of 4.
    pub fn new(plan: FaultPlan, executors: usize) -> Self {
        let corrupt_armed = plan.faults.contains(&Fault::CorruptCheckpoint);
        let fired = vec![false; plan.faults.len()];
        FaultInjector {
            plan,
            chaos: None,
            executors,
            max_task_failures: 4,
            hang_limit: DEFAULT_HANG_LIMIT,
            state: Mutex::new(State {
                fired,
                corrupt_armed,
                ..State::default()
            }),
            released: Condvar::new(),
        }
    }

    /// Reads `ember.fault.plan` and the chaos keys; `None` when neither is set, so the
    /// scheduler can skip fault injection entirely.
    pub fn from_settings(
        get: impl Fn(&str) -> Option<String>,
        executors: usize,
        max_task_failures: usize,
    ) -> Result<Option<Self>> {
        let plan = FaultPlan::from_settings(&get)?;
        plan.validate(executors)?;
        let chaos = ChaosConfig::from_settings(&get)?;
        if plan.is_empty() && chaos.is_none() {
            return Ok(None);
        }
        let mut injector =
            FaultInjector::new(plan, executors).with_max_task_failures(max_task_failures);
        if let Some(chaos) = chaos {
            injector = injector.with_chaos(chaos);
        }
        Ok(Some(injector))
    }

    pub fn with_chaos(mut self, chaos: ChaosConfig) -> Self {
        self.chaos = Some(chaos);
        self
    }

    pub fn with_max_task_failures(mut self, max: usize) -> Self {
        self.max_task_failures = max;
        self
    }

    pub fn with_hang_limit(mut self, limit: Duration) -> Self {
        self.hang_limit = limit;
        self
    }

    pub fn plan(&self) -> &FaultPlan {
        &self.plan
    }

    pub fn chaos(&self) -> Option<&ChaosConfig> {
        self.chaos.as_ref()
    }

    /// A task attempt is starting on `executor`. A hung executor's tasks only hang; otherwise
    /// plan faults for this attempt fire (each once), then chaos decides.
    pub fn on_task_start(
        &self,
        stage: usize,
        partition: usize,
        attempt: usize,
        executor: usize,
    ) -> Vec<FaultAction> {
        let mut state = self.state.lock();
        if state.hung.contains(&executor) {
            return vec![FaultAction::Hang];
        }
        let mut actions = Vec::new();
        for (i, fault) in self.plan.faults.iter().enumerate() {
            if state.fired[i] {
                continue;
            }
            let action = match *fault {
                Fault::FailTask {
                    stage: s,
                    partition: p,
                    attempt: a,
                } if (s, p, a) == (stage, partition, attempt) => {
                    FaultAction::Fail(format!("injected fault: {fault} (on executor {executor})"))
                }
                Fault::DelayTask {
                    stage: s,
                    partition: p,
                    ms,
                } if (s, p) == (stage, partition) => FaultAction::Delay(ms),
                _ => continue,
            };
            state.fired[i] = true;
            state.injected.push(InjectedFault {
                source: FaultSource::Plan,
                fault: *fault,
            });
            actions.push(action);
        }
        if let Some(chaos) = &self.chaos {
            if let Some(decision) = chaos.decide(stage, partition, attempt) {
                self.apply_chaos(
                    &mut state,
                    chaos,
                    decision,
                    stage,
                    partition,
                    attempt,
                    executor,
                    &mut actions,
                );
            }
        }
        actions
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_chaos(
        &self,
        state: &mut State,
        chaos: &ChaosConfig,
        decision: ChaosFault,
        stage: usize,
        partition: usize,
        attempt: usize,
        executor: usize,
        actions: &mut Vec<FaultAction>,
    ) {
        let record = |state: &mut State, fault: Fault| {
            state.injected.push(InjectedFault {
                source: FaultSource::Chaos,
                fault,
            })
        };
        match decision {
            ChaosFault::Fail if attempt + 1 < self.max_task_failures => {
                let fault = Fault::FailTask {
                    stage,
                    partition,
                    attempt,
                };
                record(state, fault);
                actions.push(FaultAction::Fail(format!(
                    "injected chaos fault (seed {}): {fault} (on executor {executor})",
                    chaos.seed
                )));
            }
            ChaosFault::Fail => {}
            ChaosFault::Delay(ms) => {
                record(
                    state,
                    Fault::DelayTask {
                        stage,
                        partition,
                        ms,
                    },
                );
                actions.push(FaultAction::Delay(ms));
            }
            // Recorded when handed out: the output may never be written (a result stage,
            // a failed attempt).
            ChaosFault::LoseOutput(damage) => state.chaos_losses.push(ShuffleLoss {
                stage,
                partition,
                damage,
            }),
            ChaosFault::KillExecutor | ChaosFault::HangExecutor => {
                if self.executors > 1 && !state.chaos_executor_fault_used {
                    state.chaos_executor_fault_used = true;
                    let action = if decision == ChaosFault::KillExecutor {
                        FaultAction::KillExecutor(executor)
                    } else {
                        FaultAction::HangExecutor(executor)
                    };
                    state.chaos_executor_faults.push((stage, action));
                }
            }
            ChaosFault::CorruptCheckpoints => {
                if !state.corrupt_armed {
                    state.corrupt_armed = true;
                    record(state, Fault::CorruptCheckpoint);
                }
            }
        }
    }

    /// `finished` of `total` tasks of `stage` are done. Returns the executor faults due now:
    /// plan faults whose `at` threshold is reached (each once) and any executor fault chaos
    /// decided since the last report.
    pub fn on_stage_progress(
        &self,
        stage: usize,
        finished: usize,
        total: usize,
    ) -> Vec<FaultAction> {
        let mut state = self.state.lock();
        // An empty stage is complete.
        let percent = (finished.min(total) * 100)
            .checked_div(total)
            .map_or(100, |p| p as u8);
        state.progress.insert(stage, percent);
        let mut actions = Vec::new();
        for (i, fault) in self.plan.faults.iter().enumerate() {
            if state.fired[i] {
                continue;
            }
            let (executor, hang) = match *fault {
                Fault::KillExecutor {
                    executor,
                    stage: s,
                    at_percent,
                } if s == stage && reached(finished, total, at_percent) => (executor, false),
                Fault::HangExecutor {
                    executor,
                    stage: s,
                    at_percent,
                } if s == stage && reached(finished, total, at_percent) => (executor, true),
                _ => continue,
            };
            state.fired[i] = true;
            state.injected.push(InjectedFault {
                source: FaultSource::Plan,
                fault: *fault,
            });
            actions.push(executor_action(&mut state, executor, hang));
        }
        for (decided_in, action) in std::mem::take(&mut state.chaos_executor_faults) {
            let at_percent = state.progress.get(&decided_in).copied().unwrap_or(0);
            let (executor, hang) = match action {
                FaultAction::HangExecutor(e) => (e, true),
                FaultAction::KillExecutor(e) => (e, false),
                _ => continue,
            };
            let fault = if hang {
                Fault::HangExecutor {
                    executor,
                    stage: decided_in,
                    at_percent,
                }
            } else {
                Fault::KillExecutor {
                    executor,
                    stage: decided_in,
                    at_percent,
                }
            };
            state.injected.push(InjectedFault {
                source: FaultSource::Chaos,
                fault,
            });
            actions.push(executor_action(&mut state, executor, hang));
        }
        actions
    }

    /// Map partitions of `stage` to lose now (the scheduler deletes their blocks); each loss
    /// is handed out once.
    pub fn shuffle_to_lose(&self, stage: usize) -> Vec<usize> {
        self.take_losses(|s, _| s == stage)
            .into_iter()
            .map(|loss| loss.partition)
            .collect()
    }

    /// Losses whose map output exists now (`registered(stage, partition)`), with how to damage
    /// them; each is handed out once. Used by the task hook, which sees the map output
    /// tracker but not the stage graph.
    pub fn take_losses(&self, registered: impl Fn(usize, usize) -> bool) -> Vec<ShuffleLoss> {
        let mut state = self.state.lock();
        let mut losses = Vec::new();
        for (i, fault) in self.plan.faults.iter().enumerate() {
            if let Fault::LoseShuffle { stage, partition } = *fault {
                if !state.fired[i] && registered(stage, partition) {
                    state.fired[i] = true;
                    state.injected.push(InjectedFault {
                        source: FaultSource::Plan,
                        fault: *fault,
                    });
                    losses.push(ShuffleLoss {
                        stage,
                        partition,
                        damage: Damage::Delete,
                    });
                }
            }
        }
        let (due, later): (Vec<ShuffleLoss>, Vec<ShuffleLoss>) =
            std::mem::take(&mut state.chaos_losses)
                .into_iter()
                .partition(|l| registered(l.stage, l.partition));
        state.chaos_losses = later;
        for loss in due {
            state.injected.push(InjectedFault {
                source: FaultSource::Chaos,
                fault: Fault::LoseShuffle {
                    stage: loss.stage,
                    partition: loss.partition,
                },
            });
            losses.push(loss);
        }
        losses
    }

    /// A reliable checkpoint file was just written: should it be damaged? True once per file
    /// (by path or any stable name) while corruption is armed, so the rewrite after the
    /// rejection is left intact and recovery terminates.
    pub fn corrupt_checkpoint(&self, file: &str) -> bool {
        let mut state = self.state.lock();
        if !state.corrupt_armed || !state.corrupted_set.insert(file.to_string()) {
            return false;
        }
        state.corrupted.push(file.to_string());
        // The plan's corrupt-checkpoint counts as injected when it first takes effect.
        if let Some(i) = self
            .plan
            .faults
            .iter()
            .position(|f| *f == Fault::CorruptCheckpoint)
        {
            if !state.fired[i] {
                state.fired[i] = true;
                state.injected.push(InjectedFault {
                    source: FaultSource::Plan,
                    fault: Fault::CorruptCheckpoint,
                });
            }
        }
        true
    }

    /// Whether checkpoint corruption is armed (by the plan's `corrupt-checkpoint` or by
    /// chaos). Lets a checkpoint store with its own "damage writes" switch follow the
    /// injector; [`FaultInjector::corrupt_checkpoint`] is the per-file decision.
    pub fn corrupts_checkpoints(&self) -> bool {
        self.state.lock().corrupt_armed
    }

    /// The scheduler declared `executor` lost: a hung executor's blocked tasks are released
    /// (they then fail as lost).
    pub fn executor_lost(&self, executor: usize) {
        let mut state = self.state.lock();
        if state.hung.remove(&executor) {
            self.released.notify_all();
        }
    }

    pub fn is_hung(&self, executor: usize) -> bool {
        self.state.lock().hung.contains(&executor)
    }

    /// Blocks the calling task while `executor` is hung, up to the hang limit. Returns true
    /// if the executor was declared lost, false if the limit ran out first.
    pub fn wait_while_hung(&self, executor: usize) -> bool {
        let deadline = Instant::now() + self.hang_limit;
        let mut state = self.state.lock();
        while state.hung.contains(&executor) {
            if self.released.wait_until(&mut state, deadline).timed_out() {
                return !state.hung.contains(&executor);
            }
        }
        true
    }

    /// Every fault that fired, in firing order.
    pub fn injected(&self) -> Vec<InjectedFault> {
        self.state.lock().injected.clone()
    }

    /// Checkpoint files damaged so far, in order.
    pub fn corrupted_checkpoints(&self) -> Vec<String> {
        self.state.lock().corrupted.clone()
    }

    /// Plan faults that never fired (their task, stage or output never came up): a fault
    /// test can assert this is empty to prove its plan actually did something.
    pub fn unfired(&self) -> Vec<Fault> {
        let state = self.state.lock();
        self.plan
            .faults
            .iter()
            .zip(&state.fired)
            .filter(|(_, fired)| !**fired)
            .map(|(f, _)| *f)
            .collect()
    }
}

fn reached(finished: usize, total: usize, at_percent: u8) -> bool {
    // Integer form of finished / total >= at / 100, exact for every total.
    finished.min(total) * 100 >= at_percent as usize * total
}

fn executor_action(state: &mut State, executor: usize, hang: bool) -> FaultAction {
    if hang {
        state.hung.insert(executor);
        FaultAction::HangExecutor(executor)
    } else {
        FaultAction::KillExecutor(executor)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn injector(plan: &str) -> FaultInjector {
        FaultInjector::new(FaultPlan::parse(plan).unwrap(), 4)
    }

    #[test]
    fn fail_task_fires_on_its_attempt_only_once() {
        let inj = injector("fail-task stage=1 partition=2 attempt=1");
        assert!(inj.on_task_start(1, 2, 0, 0).is_empty());
        let actions = inj.on_task_start(1, 2, 1, 3);
        assert_eq!(actions.len(), 1);
        match &actions[0] {
            FaultAction::Fail(m) => {
                assert!(m.contains("fail-task stage=1 partition=2 attempt=1"), "{m}");
                assert!(m.contains("executor 3"), "{m}");
            }
            other => panic!("{other:?}"),
        }
        assert!(inj.on_task_start(1, 2, 1, 3).is_empty());
        assert_eq!(inj.injected().len(), 1);
        assert!(inj.unfired().is_empty());
    }

    #[test]
    fn delay_fires_once_for_the_first_attempt_that_starts() {
        let inj = injector("delay-task stage=0 partition=1 ms=300");
        assert!(inj.on_task_start(0, 0, 0, 0).is_empty());
        assert_eq!(inj.on_task_start(0, 1, 0, 0), vec![FaultAction::Delay(300)]);
        assert!(inj.on_task_start(0, 1, 1, 1).is_empty());
    }

    #[test]
    fn executor_faults_fire_once_when_their_percentage_is_reached() {
        let inj = injector(
            "kill-executor executor=2 stage=3 at=50%; hang-executor executor=1 stage=3 at=100%",
        );
        assert!(inj.on_stage_progress(3, 0, 4).is_empty());
        assert!(inj.on_stage_progress(3, 1, 4).is_empty());
        assert!(inj.on_stage_progress(2, 4, 4).is_empty(), "other stage");
        assert_eq!(
            inj.on_stage_progress(3, 2, 4),
            vec![FaultAction::KillExecutor(2)]
        );
        assert!(inj.on_stage_progress(3, 3, 4).is_empty());
        assert_eq!(
            inj.on_stage_progress(3, 4, 4),
            vec![FaultAction::HangExecutor(1)]
        );
        assert!(inj.on_stage_progress(3, 4, 4).is_empty());
        // A hung executor's tasks hang, others run.
        assert!(inj.is_hung(1));
        assert_eq!(inj.on_task_start(4, 0, 0, 1), vec![FaultAction::Hang]);
        assert!(inj.on_task_start(4, 0, 0, 0).is_empty());
        inj.executor_lost(1);
        assert!(!inj.is_hung(1));
        assert!(inj.on_task_start(4, 1, 0, 1).is_empty());
    }

    #[test]
    fn at_zero_fires_at_stage_start_and_odd_totals_round_correctly() {
        let inj = injector(
            "kill-executor executor=0 stage=0 at=0%; kill-executor executor=1 stage=1 at=34%",
        );
        assert_eq!(
            inj.on_stage_progress(0, 0, 7),
            vec![FaultAction::KillExecutor(0)]
        );
        // 1/3 = 33.3% < 34%; 2/3 reaches it.
        assert!(inj.on_stage_progress(1, 1, 3).is_empty());
        assert_eq!(
            inj.on_stage_progress(1, 2, 3),
            vec![FaultAction::KillExecutor(1)]
        );
    }

    #[test]
    fn lose_shuffle_fires_once_after_the_output_exists() {
        let inj = injector("lose-shuffle stage=0 partition=3");
        assert!(inj.take_losses(|_, _| false).is_empty(), "not written yet");
        let losses = inj.take_losses(|s, p| (s, p) == (0, 3));
        assert_eq!(
            losses,
            vec![ShuffleLoss {
                stage: 0,
                partition: 3,
                damage: Damage::Delete
            }]
        );
        assert!(inj.take_losses(|_, _| true).is_empty());
        assert!(inj.shuffle_to_lose(0).is_empty());

        let inj = injector("lose-shuffle stage=1 partition=0; lose-shuffle stage=2 partition=1");
        assert_eq!(inj.shuffle_to_lose(2), vec![1]);
        assert_eq!(inj.shuffle_to_lose(2), Vec::<usize>::new());
        assert_eq!(inj.unfired().len(), 1);
    }

    #[test]
    fn corrupt_checkpoint_damages_each_file_once() {
        let inj = injector("corrupt-checkpoint");
        assert!(inj.corrupts_checkpoints());
        assert!(!injector("lose-shuffle stage=0 partition=0").corrupts_checkpoints());
        assert!(inj.corrupt_checkpoint("ckpt/a/part-0.parquet"));
        assert!(inj.corrupt_checkpoint("ckpt/a/part-1.parquet"));
        assert!(
            !inj.corrupt_checkpoint("ckpt/a/part-0.parquet"),
            "rewrite is left intact"
        );
        assert_eq!(inj.corrupted_checkpoints().len(), 2);
        assert_eq!(inj.injected().len(), 1);
        assert!(!injector("").corrupt_checkpoint("x"));
    }

    #[test]
    fn hung_task_is_released_when_the_executor_is_declared_lost() {
        let inj = Arc::new(injector("hang-executor executor=1 stage=0 at=0%"));
        inj.on_stage_progress(0, 0, 2);
        let waiter = {
            let inj = inj.clone();
            std::thread::spawn(move || inj.wait_while_hung(1))
        };
        std::thread::sleep(Duration::from_millis(20));
        inj.executor_lost(1);
        assert!(waiter.join().unwrap());
        let limited = injector("hang-executor executor=0 stage=0 at=0%")
            .with_hang_limit(Duration::from_millis(10));
        limited.on_stage_progress(0, 0, 1);
        assert!(!limited.wait_while_hung(0), "limit ran out");
    }

    /// Runs a fixed workload against a chaos injector and returns what it injected.
    fn chaos_run(seed: u64) -> (Vec<InjectedFault>, Vec<Vec<FaultAction>>) {
        let inj = FaultInjector::new(FaultPlan::default(), 3)
            .with_chaos(ChaosConfig::new(seed, 0.5).unwrap());
        let mut actions = Vec::new();
        for stage in 0..3 {
            for partition in 0..8 {
                for attempt in 0..4 {
                    actions.push(inj.on_task_start(stage, partition, attempt, partition % 3));
                }
                actions.push(inj.on_stage_progress(stage, partition + 1, 8));
            }
            inj.take_losses(|s, _| s == stage);
        }
        (inj.injected(), actions)
    }

    #[test]
    fn chaos_is_deterministic_per_seed() {
        assert_eq!(chaos_run(11), chaos_run(11));
        assert_ne!(chaos_run(11).0, chaos_run(12).0);
    }

    #[test]
    fn chaos_never_fails_the_last_allowed_attempt_and_kills_at_most_one_executor() {
        for seed in 0..20 {
            let (injected, actions) = chaos_run(seed);
            assert!(injected
                .iter()
                .all(|f| !matches!(f.fault, Fault::FailTask { attempt: 3, .. })));
            let executor_faults = actions
                .iter()
                .flatten()
                .filter(|a| {
                    matches!(
                        a,
                        FaultAction::KillExecutor(_) | FaultAction::HangExecutor(_)
                    )
                })
                .count();
            assert!(executor_faults <= 1, "seed {seed}: {executor_faults}");
        }
        // A single-executor cluster never loses its executor to chaos.
        let inj = FaultInjector::new(FaultPlan::default(), 1)
            .with_chaos(ChaosConfig::new(3, 1.0).unwrap());
        for p in 0..64 {
            inj.on_task_start(0, p, 0, 0);
            assert!(inj.on_stage_progress(0, p, 64).is_empty());
        }
    }

    #[test]
    fn from_settings_is_none_without_faults() {
        assert!(FaultInjector::from_settings(|_| None, 2, 4)
            .unwrap()
            .is_none());
        let inj = FaultInjector::from_settings(
            |k| (k == "ember.fault.chaos.seed").then(|| "1".to_string()),
            2,
            4,
        )
        .unwrap()
        .unwrap();
        assert_eq!(inj.chaos().map(|c| c.seed), Some(1));
        assert!(FaultInjector::from_settings(
            |k| (k == "ember.fault.plan").then(|| "kill-executor executor=5 stage=0 at=1%".into()),
            2,
            4
        )
        .is_err());
    }
}
