//! Lineage cost model and automatic checkpoint placement.
//!
//! Recovery recomputes lost output from lineage, so a long or expensive lineage makes every
//! failure expensive; a reliable checkpoint cuts it at the price of writing the data. This
//! module prices both per stage of a [`StageGraph`](crate::stages::StageGraph) and places
//! checkpoints by the Young–Daly rule with a lineage-depth cap (DESIGN.md, "Checkpoint
//! placement"):
//!
//! - [`cost`]: `c(s)`, a stage's estimated work and output size, from statistics and
//!   operator weights, or from measured task times of an earlier run with the same
//!   fingerprint ([`CostInputs`]);
//! - [`policy`]: [`CheckpointPolicy`], the configuration and the Young–Daly interval;
//! - [`placement`]: `R(s)`, `W(s)`, the rule, and the decisions recorded in each
//!   `Stage::checkpoint`;
//! - [`explain`]: one EXPLAIN line per stage with its figures and the reason for each
//!   checkpoint.

pub mod cost;
pub mod explain;
pub mod placement;
pub mod policy;

#[cfg(test)]
pub(crate) mod test_util;
#[cfg(test)]
mod tests;

pub use cost::{CostInputs, MeasuredStage, OperatorWeights, Size, StageWork};
pub use placement::{
    place_checkpoints, plan_checkpoints, CheckpointDecision, CheckpointReason, LineageReport,
    StageCost, StageLineage,
};
pub use policy::CheckpointPolicy;
