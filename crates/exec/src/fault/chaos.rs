//! Chaos: random faults of every kind, reproducible from a seed.
//!
//! Each task attempt's fate is a pure function of `(seed, stage, partition, attempt)` — not of
//! timing, thread interleaving or how many faults fired before — so a failing chaos run is
//! replayed exactly by re-running with the same seed, however the scheduler orders tasks.

use ember_planner::{EmberError, Result};

/// `SET ember.fault.chaos.seed = N`.
pub const CHAOS_SEED_KEY: &str = "ember.fault.chaos.seed";
/// `SET ember.fault.chaos.rate = R` (0..1): chance per task attempt of a random fault.
pub const CHAOS_RATE_KEY: &str = "ember.fault.chaos.rate";

/// Shortest and longest random straggler delay.
const MIN_DELAY_MS: u64 = 5;
const MAX_DELAY_MS: u64 = 100;

/// Seed and rate of random fault injection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChaosConfig {
    pub seed: u64,
    /// Probability in 0..=1 that a task attempt gets a fault.
    pub rate: f64,
}

/// How a chaos-lost shuffle output is damaged: every way a block can go bad must lead to the
/// same recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// The file is gone.
    Delete,
    /// The file is cut in half (a crash mid-write, a full disk).
    Truncate,
    /// One byte in the middle is flipped (bit rot); the size is unchanged.
    Corrupt,
}

/// What chaos decided for one task attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChaosFault {
    /// The attempt fails with an error.
    Fail,
    /// The attempt is held back this many milliseconds.
    Delay(u64),
    /// The map output this attempt writes is damaged once a later task could read it.
    LoseOutput(Damage),
    /// The executor running this attempt dies.
    KillExecutor,
    /// The executor running this attempt goes silent.
    HangExecutor,
    /// Reliable checkpoint files written from now on are damaged once each.
    CorruptCheckpoints,
}

impl ChaosConfig {
    /// Validates the rate: a rate outside 0..=1 is a configuration mistake, not a clamp.
    pub fn new(seed: u64, rate: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&rate) {
            return Err(EmberError::Config(format!(
                "{CHAOS_RATE_KEY} must be between 0 and 1, found {rate}"
            )));
        }
        Ok(ChaosConfig { seed, rate })
    }

    /// Reads the chaos keys. Chaos is on when a seed is set; the rate defaults to 0.1 then.
    /// A rate without a seed is an error rather than silently doing nothing.
    pub fn from_settings(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let rate = match get(CHAOS_RATE_KEY) {
            Some(text) => Some(text.trim().parse::<f64>().map_err(|_| {
                EmberError::Config(format!(
                    "{CHAOS_RATE_KEY} must be a number between 0 and 1, found '{text}'"
                ))
            })?),
            None => None,
        };
        let seed = match get(CHAOS_SEED_KEY) {
            Some(text) => text.trim().parse::<u64>().map_err(|_| {
                EmberError::Config(format!(
                    "{CHAOS_SEED_KEY} must be a non-negative integer, found '{text}'"
                ))
            })?,
            None if rate.is_some() => {
                return Err(EmberError::Config(format!(
                "{CHAOS_RATE_KEY} is set but {CHAOS_SEED_KEY} is not; set a seed to enable chaos"
            )))
            }
            None => return Ok(None),
        };
        Self::new(seed, rate.unwrap_or(0.1)).map(Some)
    }

    /// The fault (if any) for one task attempt: deterministic in its four inputs. The kind is
    /// drawn with weights favouring task-level faults, which are cheap to recover from;
    /// executor loss and checkpoint corruption are rarer.
    pub fn decide(&self, stage: usize, partition: usize, attempt: usize) -> Option<ChaosFault> {
        let mut rng = SplitMix64::for_task(self.seed, stage, partition, attempt);
        if rng.next_f64() >= self.rate {
            return None;
        }
        // Weights: fail 3, delay 3, lose output 3, kill 1, hang 1, corrupt checkpoints 1.
        let fault = match rng.below(12) {
            0..=2 => ChaosFault::Fail,
            3..=5 => ChaosFault::Delay(MIN_DELAY_MS + rng.below(MAX_DELAY_MS - MIN_DELAY_MS + 1)),
            6..=8 => ChaosFault::LoseOutput(match rng.below(3) {
                0 => Damage::Delete,
                1 => Damage::Truncate,
                _ => Damage::Corrupt,
            }),
            9 => ChaosFault::KillExecutor,
            10 => ChaosFault::HangExecutor,
            _ => ChaosFault::CorruptCheckpoints,
        };
        Some(fault)
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and good enough to pick faults. Not
/// cryptographic.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// A generator whose stream depends on all four coordinates; each is mixed in through a
    /// full SplitMix64 round so nearby tasks get unrelated streams.
    pub fn for_task(seed: u64, stage: usize, partition: usize, attempt: usize) -> Self {
        let mut h = mix(seed);
        for x in [stage, partition, attempt] {
            h = mix(h ^ (x as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93));
        }
        SplitMix64::new(h)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.state)
    }

    /// Uniform in [0, 1) with 53 bits of precision.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in 0..n (0 when n is 0); the modulo bias is negligible for small n.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// The SplitMix64 output function.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(chaos: &ChaosConfig) -> Vec<Option<ChaosFault>> {
        let mut out = Vec::new();
        for stage in 0..4 {
            for partition in 0..16 {
                for attempt in 0..3 {
                    out.push(chaos.decide(stage, partition, attempt));
                }
            }
        }
        out
    }

    #[test]
    fn same_seed_same_faults() {
        let a = ChaosConfig::new(42, 0.3).unwrap();
        assert_eq!(schedule(&a), schedule(&a.clone()));
        // Asking in a different order changes nothing: decisions are pure.
        let forward = a.decide(3, 15, 2);
        let _ = schedule(&a);
        assert_eq!(a.decide(3, 15, 2), forward);
    }

    #[test]
    fn different_seed_different_faults() {
        let a = schedule(&ChaosConfig::new(1, 0.3).unwrap());
        let b = schedule(&ChaosConfig::new(2, 0.3).unwrap());
        assert_ne!(a, b);
    }

    #[test]
    fn rate_controls_how_many_attempts_get_faults() {
        let count = |rate: f64| {
            schedule(&ChaosConfig::new(7, rate).unwrap())
                .iter()
                .filter(|f| f.is_some())
                .count()
        };
        assert_eq!(count(0.0), 0);
        assert_eq!(count(1.0), 4 * 16 * 3);
        let third = count(0.3);
        // 192 draws at p = 0.3: mean 57.6, sd ≈ 6.3.
        assert!((30..=85).contains(&third), "{third}");
    }

    #[test]
    fn every_kind_occurs() {
        let faults = schedule(&ChaosConfig::new(9, 1.0).unwrap());
        let has = |pred: fn(&ChaosFault) -> bool| faults.iter().flatten().any(pred);
        assert!(has(|f| matches!(f, ChaosFault::Fail)));
        assert!(has(
            |f| matches!(f, ChaosFault::Delay(ms) if (MIN_DELAY_MS..=MAX_DELAY_MS).contains(ms))
        ));
        assert!(has(|f| matches!(f, ChaosFault::LoseOutput(Damage::Delete))));
        assert!(has(|f| matches!(
            f,
            ChaosFault::LoseOutput(Damage::Truncate)
        )));
        assert!(has(|f| matches!(
            f,
            ChaosFault::LoseOutput(Damage::Corrupt)
        )));
        assert!(has(|f| matches!(f, ChaosFault::KillExecutor)));
        assert!(has(|f| matches!(f, ChaosFault::HangExecutor)));
        assert!(has(|f| matches!(f, ChaosFault::CorruptCheckpoints)));
    }

    #[test]
    fn settings_are_validated() {
        let get = |seed: Option<&str>, rate: Option<&str>| {
            let (seed, rate) = (seed.map(String::from), rate.map(String::from));
            ChaosConfig::from_settings(move |k| match k {
                CHAOS_SEED_KEY => seed.clone(),
                CHAOS_RATE_KEY => rate.clone(),
                _ => None,
            })
        };
        assert_eq!(get(None, None).unwrap(), None);
        assert_eq!(
            get(Some("5"), Some("0.25")).unwrap(),
            Some(ChaosConfig {
                seed: 5,
                rate: 0.25
            })
        );
        assert_eq!(get(Some("5"), None).unwrap().map(|c| c.rate), Some(0.1));
        assert!(get(Some("5"), Some("1.5")).is_err());
        assert!(get(Some("x"), None).is_err());
        assert!(get(None, Some("0.2")).is_err());
    }

    #[test]
    fn next_f64_is_in_unit_interval() {
        let mut rng = SplitMix64::new(0);
        for _ in 0..10_000 {
            let x = rng.next_f64();
            assert!((0.0..1.0).contains(&x));
        }
    }
}
