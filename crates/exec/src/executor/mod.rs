//! Executors: where tasks run.
//!
//! The embedded default is a [`LocalCluster`] of in-process [`LocalExecutor`]s, each with its
//! own task slots and shuffle directory, so that losing one behaves like losing a node: its
//! shuffle files disappear and the scheduler must recompute them from lineage.

pub mod cluster;
pub mod local;
pub mod session_dir;

pub use cluster::{ClusterConfig, LocalCluster};
pub use local::LocalExecutor;
