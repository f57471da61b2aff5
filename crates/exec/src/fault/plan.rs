//! The declarative fault plan: `SET ember.fault.plan = 'fault; fault; …'`.
//!
//! A plan names faults by the same coordinates the scheduler and `EXPLAIN` use (stage ids,
//! partition numbers, task attempt numbers, executor ids), so a fault test reads like the
//! failure it reproduces. The text form is fixed by issue 3 and round-trips through
//! [`FaultPlan`]'s `Display`:
//!
//! ```text
//! fail-task stage=S partition=P attempt=A
//! kill-executor executor=E stage=S at=X%
//! hang-executor executor=E stage=S at=X%
//! delay-task stage=S partition=P ms=D
//! lose-shuffle stage=S partition=P
//! corrupt-checkpoint
//! ```
//!
//! Keywords and keys are case-insensitive, keys may come in any order, spaces around `=` and
//! `;` are ignored, and `at` takes `50%` or `50`.

use std::fmt;
use std::str::FromStr;

use ember_planner::{EmberError, Result};

/// `SET ember.fault.plan = '…'`.
pub const FAULT_PLAN_KEY: &str = "ember.fault.plan";

/// One fault of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Attempt `attempt` of task (`stage`, `partition`) fails with an error.
    FailTask {
        stage: usize,
        partition: usize,
        attempt: usize,
    },
    /// Executor `executor` dies (slots, cached blocks, local checkpoints and shuffle files
    /// gone) once `at_percent` % of stage `stage`'s tasks have finished.
    KillExecutor {
        executor: usize,
        stage: usize,
        at_percent: u8,
    },
    /// Executor `executor` stays alive but goes silent (no heartbeats, no progress) once
    /// `at_percent` % of stage `stage`'s tasks have finished.
    HangExecutor {
        executor: usize,
        stage: usize,
        at_percent: u8,
    },
    /// The first attempt of task (`stage`, `partition`) is held back `ms` milliseconds before
    /// it runs: a straggler, for speculation.
    DelayTask {
        stage: usize,
        partition: usize,
        ms: u64,
    },
    /// The shuffle output of map task (`stage`, `partition`) is deleted after it was
    /// registered, so a reducer hits a fetch failure.
    LoseShuffle { stage: usize, partition: usize },
    /// Every reliable checkpoint file written from now on is damaged once.
    CorruptCheckpoint,
}

impl Fault {
    /// The plan keyword of this fault, e.g. `fail-task`.
    pub fn keyword(&self) -> &'static str {
        self.kind().keyword()
    }

    fn kind(&self) -> FaultKind {
        match self {
            Fault::FailTask { .. } => FaultKind::FailTask,
            Fault::KillExecutor { .. } => FaultKind::KillExecutor,
            Fault::HangExecutor { .. } => FaultKind::HangExecutor,
            Fault::DelayTask { .. } => FaultKind::DelayTask,
            Fault::LoseShuffle { .. } => FaultKind::LoseShuffle,
            Fault::CorruptCheckpoint => FaultKind::CorruptCheckpoint,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keyword = self.keyword();
        match self {
            Fault::FailTask {
                stage,
                partition,
                attempt,
            } => write!(
                f,
                "{keyword} stage={stage} partition={partition} attempt={attempt}"
            ),
            Fault::KillExecutor {
                executor,
                stage,
                at_percent,
            }
            | Fault::HangExecutor {
                executor,
                stage,
                at_percent,
            } => write!(
                f,
                "{keyword} executor={executor} stage={stage} at={at_percent}%"
            ),
            Fault::DelayTask {
                stage,
                partition,
                ms,
            } => write!(f, "{keyword} stage={stage} partition={partition} ms={ms}"),
            Fault::LoseShuffle { stage, partition } => {
                write!(f, "{keyword} stage={stage} partition={partition}")
            }
            Fault::CorruptCheckpoint => f.write_str(keyword),
        }
    }
}

/// An ordered list of faults; empty means "no injected faults".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultPlan {
    pub faults: Vec<Fault>,
}

impl FaultPlan {
    pub fn new(faults: Vec<Fault>) -> Self {
        FaultPlan { faults }
    }

    pub fn is_empty(&self) -> bool {
        self.faults.is_empty()
    }

    /// Parses the `ember.fault.plan` text. Errors are `EmberError::Config` naming the fault
    /// (1-based, with its text), the key and what was expected.
    pub fn parse(text: &str) -> Result<Self> {
        let mut faults = Vec::new();
        for (i, raw) in text
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .enumerate()
        {
            let fault = parse_fault(raw).map_err(|why| {
                EmberError::Config(format!(
                    "invalid {FAULT_PLAN_KEY}: fault {} '{raw}': {why}",
                    i + 1
                ))
            })?;
            faults.push(fault);
        }
        Ok(FaultPlan { faults })
    }

    /// Reads `ember.fault.plan` from session settings; unset means an empty plan.
    pub fn from_settings(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        match get(FAULT_PLAN_KEY) {
            Some(text) => Self::parse(&text),
            None => Ok(FaultPlan::default()),
        }
    }

    /// Checks executor ids against the cluster, so a plan naming executor 7 of a 4-executor
    /// cluster is rejected up front instead of silently never firing.
    pub fn validate(&self, executors: usize) -> Result<()> {
        for (i, fault) in self.faults.iter().enumerate() {
            if let Fault::KillExecutor { executor, .. } | Fault::HangExecutor { executor, .. } =
                fault
            {
                if *executor >= executors {
                    return Err(EmberError::Config(format!(
                        "invalid {FAULT_PLAN_KEY}: fault {} '{fault}': executor {executor} does \
                         not exist (the cluster has executors 0 to {})",
                        i + 1,
                        executors.saturating_sub(1)
                    )));
                }
            }
        }
        Ok(())
    }
}

/// What a fault plan is checked against when a job starts: the job's stages as `EXPLAIN`
/// numbers them, with their task counts, and the attempts a task may make.
pub struct JobShape {
    /// `(stage id, tasks)` of every stage.
    pub stages: Vec<(usize, usize)>,
    /// `ember.task.maxFailures`: attempts are numbered `0 .. max_task_failures`.
    pub max_task_failures: usize,
}

impl FaultPlan {
    /// Checks every fault against the job about to run, so a fault naming a stage, task or
    /// attempt the job does not have is an error instead of silently never firing (the
    /// plan applies to every job run while it is set; stage ids restart with each).
    pub fn check_against(&self, job: &JobShape) -> Result<()> {
        for (i, fault) in self.faults.iter().enumerate() {
            let (stage, partition, attempt) = match *fault {
                Fault::FailTask {
                    stage,
                    partition,
                    attempt,
                } => (stage, Some(partition), Some(attempt)),
                Fault::DelayTask {
                    stage, partition, ..
                }
                | Fault::LoseShuffle { stage, partition } => (stage, Some(partition), None),
                Fault::KillExecutor { stage, .. } | Fault::HangExecutor { stage, .. } => {
                    (stage, None, None)
                }
                Fault::CorruptCheckpoint => continue,
            };
            let why = match job.stages.iter().find(|(id, _)| *id == stage) {
                None => Some(format!(
                    "this query has no stage {stage} (its {} {}; EXPLAIN lists them)",
                    if job.stages.len() == 1 {
                        "only stage is"
                    } else {
                        "stages are"
                    },
                    id_ranges(job.stages.iter().map(|(id, _)| *id))
                )),
                Some((_, tasks)) if partition.is_some_and(|p| p >= *tasks) => Some(format!(
                    "stage {stage} of this query has {tasks} task{} (partitions 0 to {})",
                    if *tasks == 1 { "" } else { "s" },
                    tasks.saturating_sub(1)
                )),
                _ if attempt.is_some_and(|a| a >= job.max_task_failures) => Some(format!(
                    "attempt {} never runs: ember.task.maxFailures = {} allows attempts 0 to {}",
                    attempt.unwrap_or_default(),
                    job.max_task_failures,
                    job.max_task_failures.saturating_sub(1)
                )),
                _ => None,
            };
            if let Some(why) = why {
                return Err(EmberError::Config(format!(
                    "{FAULT_PLAN_KEY}: fault {} '{fault}' cannot fire: {why}",
                    i + 1
                )));
            }
        }
        Ok(())
    }
}

/// `0 to 3`, or `0 to 2, 5` for ids with gaps.
fn id_ranges(ids: impl Iterator<Item = usize>) -> String {
    let mut ids: Vec<usize> = ids.collect();
    ids.sort_unstable();
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let start = ids[i];
        while i + 1 < ids.len() && ids[i + 1] == ids[i] + 1 {
            i += 1;
        }
        parts.push(if ids[i] == start {
            start.to_string()
        } else {
            format!("{start} to {}", ids[i])
        });
        i += 1;
    }
    parts.join(", ")
}

impl fmt::Display for FaultPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, fault) in self.faults.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{fault}")?;
        }
        Ok(())
    }
}

impl FromStr for FaultPlan {
    type Err = EmberError;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FaultKind {
    FailTask,
    KillExecutor,
    HangExecutor,
    DelayTask,
    LoseShuffle,
    CorruptCheckpoint,
}

const KINDS: [FaultKind; 6] = [
    FaultKind::FailTask,
    FaultKind::KillExecutor,
    FaultKind::HangExecutor,
    FaultKind::DelayTask,
    FaultKind::LoseShuffle,
    FaultKind::CorruptCheckpoint,
];

impl FaultKind {
    fn keyword(self) -> &'static str {
        match self {
            FaultKind::FailTask => "fail-task",
            FaultKind::KillExecutor => "kill-executor",
            FaultKind::HangExecutor => "hang-executor",
            FaultKind::DelayTask => "delay-task",
            FaultKind::LoseShuffle => "lose-shuffle",
            FaultKind::CorruptCheckpoint => "corrupt-checkpoint",
        }
    }

    /// The keys this kind takes, in their canonical order.
    fn keys(self) -> &'static [&'static str] {
        match self {
            FaultKind::FailTask => &["stage", "partition", "attempt"],
            FaultKind::KillExecutor | FaultKind::HangExecutor => &["executor", "stage", "at"],
            FaultKind::DelayTask => &["stage", "partition", "ms"],
            FaultKind::LoseShuffle => &["stage", "partition"],
            FaultKind::CorruptCheckpoint => &[],
        }
    }
}

/// Parses one fault; the error is the reason only (the caller adds which fault).
fn parse_fault(text: &str) -> std::result::Result<Fault, String> {
    let normalized = join_equals(text);
    let mut tokens = normalized.split_whitespace();
    let keyword = tokens
        .next()
        .ok_or_else(|| "empty fault".to_string())?
        .to_ascii_lowercase();
    let kind = KINDS
        .iter()
        .copied()
        .find(|k| k.keyword() == keyword)
        .ok_or_else(|| {
            let names: Vec<&str> = KINDS.iter().map(|k| k.keyword()).collect();
            format!(
                "unknown fault '{keyword}' (expected one of {})",
                names.join(", ")
            )
        })?;
    let allowed = kind.keys();
    let mut values: Vec<Option<&str>> = vec![None; allowed.len()];
    for token in tokens {
        if allowed.is_empty() {
            return Err(format!("unexpected '{token}' ({keyword} takes no keys)"));
        }
        let (key, value) = token
            .split_once('=')
            .ok_or_else(|| format!("expected key=value, found '{token}'"))?;
        let key_lower = key.to_ascii_lowercase();
        let slot = allowed
            .iter()
            .position(|k| *k == key_lower)
            .ok_or_else(|| format!("unknown key '{key}' (expected {})", allowed.join(", ")))?;
        if values[slot].is_some() {
            return Err(format!("{key_lower} is given twice"));
        }
        if value.is_empty() {
            return Err(format!("{key_lower} has no value"));
        }
        values[slot] = Some(value);
    }
    let get = |key: &str| -> std::result::Result<&str, String> {
        let slot = allowed
            .iter()
            .position(|k| *k == key)
            .ok_or_else(|| format!("internal: {key} is not a key of {keyword}"))?;
        values[slot].ok_or_else(|| {
            let example = match key {
                "at" => "at=X%".to_string(),
                "ms" => "ms=D".to_string(),
                other => format!("{other}=N"),
            };
            format!("missing {example}")
        })
    };
    let number = |key: &str| -> std::result::Result<usize, String> {
        get(key)?
            .parse::<usize>()
            .map_err(|_| format!("{key} must be a number"))
    };
    let fault = match kind {
        FaultKind::FailTask => Fault::FailTask {
            stage: number("stage")?,
            partition: number("partition")?,
            attempt: number("attempt")?,
        },
        FaultKind::KillExecutor => Fault::KillExecutor {
            executor: number("executor")?,
            stage: number("stage")?,
            at_percent: percent(get("at")?)?,
        },
        FaultKind::HangExecutor => Fault::HangExecutor {
            executor: number("executor")?,
            stage: number("stage")?,
            at_percent: percent(get("at")?)?,
        },
        FaultKind::DelayTask => Fault::DelayTask {
            stage: number("stage")?,
            partition: number("partition")?,
            ms: get("ms")?
                .parse::<u64>()
                .map_err(|_| "ms must be a number of milliseconds".to_string())?,
        },
        FaultKind::LoseShuffle => Fault::LoseShuffle {
            stage: number("stage")?,
            partition: number("partition")?,
        },
        FaultKind::CorruptCheckpoint => Fault::CorruptCheckpoint,
    };
    Ok(fault)
}

/// `50%` or `50` → 50; anything outside 0..=100 is an error.
fn percent(value: &str) -> std::result::Result<u8, String> {
    let digits = value.strip_suffix('%').unwrap_or(value).trim();
    match digits.parse::<u8>() {
        Ok(p) if p <= 100 => Ok(p),
        _ => Err(format!(
            "at must be a percentage from 0 to 100 (like at=50%), found '{value}'"
        )),
    }
}

/// Removes whitespace around `=` so `stage = 1` tokenizes like `stage=1`.
fn join_equals(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '=' {
            while out.ends_with(char::is_whitespace) {
                out.pop();
            }
            out.push('=');
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        match FaultPlan::parse(text) {
            Ok(plan) => panic!("'{text}' parsed as {plan:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn parses_every_fault_kind() {
        let plan = FaultPlan::parse(
            "fail-task stage=1 partition=2 attempt=0; kill-executor executor=1 stage=3 at=50%; \
             hang-executor executor=2 stage=0 at=75; delay-task stage=4 partition=0 ms=250; \
             lose-shuffle stage=2 partition=5; corrupt-checkpoint",
        )
        .unwrap();
        assert_eq!(
            plan.faults,
            vec![
                Fault::FailTask {
                    stage: 1,
                    partition: 2,
                    attempt: 0
                },
                Fault::KillExecutor {
                    executor: 1,
                    stage: 3,
                    at_percent: 50
                },
                Fault::HangExecutor {
                    executor: 2,
                    stage: 0,
                    at_percent: 75
                },
                Fault::DelayTask {
                    stage: 4,
                    partition: 0,
                    ms: 250
                },
                Fault::LoseShuffle {
                    stage: 2,
                    partition: 5
                },
                Fault::CorruptCheckpoint,
            ]
        );
    }

    #[test]
    fn tolerates_whitespace_case_and_key_order() {
        let plan = FaultPlan::parse(
            "  FAIL-TASK  Attempt = 1\tstage=0   PARTITION=3 ;;\n Corrupt-Checkpoint ; ",
        )
        .unwrap();
        assert_eq!(
            plan.faults,
            vec![
                Fault::FailTask {
                    stage: 0,
                    partition: 3,
                    attempt: 1
                },
                Fault::CorruptCheckpoint
            ]
        );
        assert!(FaultPlan::parse("").unwrap().is_empty());
        assert!(FaultPlan::parse(" ; ").unwrap().is_empty());
    }

    #[test]
    fn display_round_trips() {
        let text = "fail-task stage=1 partition=2 attempt=3; kill-executor executor=0 stage=1 \
                    at=100%; hang-executor executor=1 stage=2 at=0%; delay-task stage=0 \
                    partition=1 ms=10; lose-shuffle stage=0 partition=0; corrupt-checkpoint";
        let plan: FaultPlan = text.parse().unwrap();
        assert_eq!(plan.to_string(), text);
        assert_eq!(FaultPlan::parse(&plan.to_string()).unwrap(), plan);
    }

    #[test]
    fn errors_name_the_fault_the_key_and_the_expectation() {
        assert!(
            err("fail-task stage=0 partition=0 attempt=0; kill-executor executor=x")
                .contains("fault 2 'kill-executor executor=x': executor must be a number")
        );
        assert!(err("fail-task stage=1 partition=2")
            .contains("fault 1 'fail-task stage=1 partition=2': missing attempt=N"));
        assert!(err("kill-executor executor=0 stage=1 at=150%")
            .contains("at must be a percentage from 0 to 100"));
        assert!(err("kill-executor executor=0 stage=1").contains("missing at=X%"));
        assert!(err("explode stage=1").contains("unknown fault 'explode' (expected one of"));
        assert!(err("lose-shuffle stage=1 partition=2 attempt=0")
            .contains("unknown key 'attempt' (expected stage, partition)"));
        assert!(err("lose-shuffle stage=1 stage=2").contains("stage is given twice"));
        assert!(err("delay-task stage=1 partition=2 ms=soon").contains("ms must be a number"));
        assert!(err("delay-task stage 1").contains("expected key=value, found 'stage'"));
        assert!(err("corrupt-checkpoint now").contains("takes no keys"));
        assert!(err("fail-task stage= partition=1 attempt=0").contains("stage must be a number"));
        assert!(err("fail-task stage=-1 partition=1 attempt=0").contains("stage must be a number"));
        let e = FaultPlan::parse("fail-task").unwrap_err();
        assert!(matches!(e, EmberError::Config(_)), "{e:?}");
    }

    #[test]
    fn validate_rejects_unknown_executors() {
        let plan = FaultPlan::parse("kill-executor executor=4 stage=0 at=10%").unwrap();
        assert!(plan.validate(5).is_ok());
        let e = plan.validate(4).unwrap_err().to_string();
        assert!(e.contains("executor 4 does not exist"), "{e}");
    }

    #[test]
    fn faults_the_job_cannot_have_are_rejected_when_it_starts() {
        let job = JobShape {
            stages: vec![(0, 4), (1, 4), (2, 1)],
            max_task_failures: 4,
        };
        let check = |text: &str| FaultPlan::parse(text).unwrap().check_against(&job);
        assert!(check("fail-task stage=1 partition=3 attempt=3; corrupt-checkpoint").is_ok());
        assert!(check("kill-executor executor=0 stage=2 at=50%").is_ok());
        let rejected = |text: &str, why: &str| {
            let e = check(text).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        };
        rejected(
            "delay-task stage=0 partition=0 ms=1; fail-task stage=9 partition=0 attempt=0",
            "fault 2 'fail-task stage=9 partition=0 attempt=0' cannot fire: this query has no \
             stage 9 (its stages are 0 to 2",
        );
        rejected(
            "lose-shuffle stage=2 partition=1",
            "stage 2 of this query has 1 task (partitions 0 to 0)",
        );
        rejected(
            "fail-task stage=0 partition=0 attempt=4",
            "attempt 4 never runs: ember.task.maxFailures = 4",
        );
        rejected("hang-executor executor=0 stage=3 at=0%", "no stage 3");
    }

    #[test]
    fn id_ranges_name_runs_and_gaps() {
        assert_eq!(id_ranges([0, 1, 2, 3].into_iter()), "0 to 3");
        assert_eq!(id_ranges([5, 0, 1, 2, 7].into_iter()), "0 to 2, 5, 7");
        assert_eq!(id_ranges([4].into_iter()), "4");
    }

    #[test]
    fn reads_from_settings() {
        let plan = FaultPlan::from_settings(|k| {
            (k == FAULT_PLAN_KEY).then(|| "lose-shuffle stage=0 partition=1".to_string())
        })
        .unwrap();
        assert_eq!(plan.faults.len(), 1);
        assert!(FaultPlan::from_settings(|_| None).unwrap().is_empty());
    }
}
