//! Ember's planner: expressions, logical plans, the optimizer, physical plans and the stage
//! graph (lineage). It knows tables only through [`table::TableSource`].

mod deep_drop;
pub mod display;
pub mod error;
pub mod expr;
pub mod expr_schema;
pub mod fingerprint;
pub mod lineage;
pub mod logical;
pub mod optimizer;
pub mod persist;
pub mod physical;
pub mod schema;
pub mod stages;
pub mod table;
pub mod types;
pub mod wire;

pub use error::{EmberError, Result};
