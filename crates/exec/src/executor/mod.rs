//! Executors: where tasks run.
//!
//! The embedded default is a [`LocalCluster`] of in-process [`LocalExecutor`]s, each with its
//! own task slots, shuffle directory and heartbeat thread, so that losing one behaves like
//! losing a node: its shuffle files disappear, its heartbeats stop, and the scheduler must
//! recompute what it held from lineage while a replacement takes its slots.

pub mod cluster;
pub mod heartbeat;
pub mod local;
pub mod session_dir;

pub use cluster::{default_cores, ClusterConfig, LocalCluster};
pub use heartbeat::{HeartbeatReceiver, HEARTBEAT_INTERVAL_KEY, NETWORK_TIMEOUT_KEY};
pub use local::{ExecutorState, LocalExecutor};
