//! Fault injection: declarative fault plans, seeded chaos, and the injector the scheduler
//! consults, so every recovery path of Ember can be driven on purpose and replayed exactly.
//!
//! - [`plan`]: the `ember.fault.plan` text (`fail-task stage=1 partition=0 attempt=0; …`).
//! - [`chaos`]: `ember.fault.chaos.{seed,rate}`, random faults decided per task attempt.
//! - [`injector`]: the thread-safe [`FaultInjector`] that fires each fault once and records it.
//! - [`hook`]: the injector as a scheduler `TaskHook` (task failures, delays, hangs, lost
//!   shuffle blocks).
//! - [`damage`]: deleting, truncating and corrupting real files.

pub mod chaos;
pub mod damage;
pub mod hook;
pub mod injector;
pub mod plan;

pub use chaos::{ChaosConfig, ChaosFault, Damage, CHAOS_RATE_KEY, CHAOS_SEED_KEY};
pub use damage::damage_file;
pub use injector::{FaultAction, FaultInjector, FaultSource, InjectedFault, ShuffleLoss};
pub use plan::{Fault, FaultPlan, JobShape, FAULT_PLAN_KEY};
