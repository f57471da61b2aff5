//! Ember's executor side: vectorised expression evaluation, Arrow operators, shuffle,
//! the task runtime, local executors and the scheduler that runs a stage graph.

pub mod context;
pub mod events;
pub mod executor;
pub mod expr;
pub mod fault;
pub mod memory;
pub mod operators;
pub mod persist;
pub mod scheduler;
pub mod shuffle;
pub mod spill;
pub mod udf;

pub use context::TaskContext;
