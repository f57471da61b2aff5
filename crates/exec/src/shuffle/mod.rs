//! Shuffle: how rows cross a stage boundary.
//!
//! A map task runs its stage's pipeline for one partition and splits the output into reduce
//! buckets ([`partitioner`]); each non-empty bucket becomes one block file in the executor's
//! shuffle dir ([`writer`]). The driver's [`tracker::MapOutputTracker`] remembers, for every
//! (stage, map partition), which executor holds which blocks. A reduce task reads its bucket
//! from every map partition in map-partition order ([`reader`]); a block that cannot be read
//! raises `EmberError::FetchFailed`, which tells the scheduler exactly which map output to
//! recompute. A global sort's [`range`] exchange writes each map task's sorted run with a
//! key sample instead of buckets; its readers pick their key range from all samples.

pub mod partitioner;
pub mod range;
pub mod reader;
pub mod tracker;
pub mod writer;

pub use partitioner::Partitioner;
pub use reader::TrackerShuffleReader;
pub use tracker::{MapOutputTracker, MapStatus};
pub use writer::{write_map_output, MapOutput};
