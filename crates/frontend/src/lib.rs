//! Ember's front end: the [`Session`] users start from, the [`DataFrame`] API, SQL → logical
//! plans, the catalog, configuration, and the pieces of the `ember` binary (REPL, output
//! formats).
//!
//! ```
//! use ember_frontend::prelude::*;
//!
//! let session = Session::new();
//! session.sql("CREATE TABLE t AS SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS v(id, name)").unwrap();
//! let rows: usize = session
//!     .table("t").unwrap()
//!     .filter(col("id").gt(lit(1i64))).unwrap()
//!     .collect().unwrap()
//!     .iter()
//!     .map(|b| b.num_rows())
//!     .sum();
//! assert_eq!(rows, 1);
//! ```

pub mod allocator;
pub mod catalog;
pub mod config;
pub mod dataframe;
pub mod execution;
pub mod explain_analyze;
pub mod format;
pub mod persist;
pub mod repl;
pub mod runtime;
pub mod session;
pub mod sources;
pub mod split;
pub mod sql;
pub mod write;

pub use dataframe::{DataFrame, GroupedData};
pub use session::{Session, SessionBuilder, StatementResult};

/// Everything a DataFrame program needs: `use ember_frontend::prelude::*;`.
pub mod prelude {
    pub use crate::config::SessionConfig;
    pub use crate::dataframe::{DataFrame, GroupedData};
    pub use crate::session::{Session, StatementResult};
    pub use ember_planner::expr::{
        and, avg, col, count, count_distinct, count_star, func, lit, max, min, not, or, sum,
        BuiltinFunction, Expr, SortExpr,
    };
    pub use ember_planner::logical::JoinType;
    pub use ember_planner::persist::StorageLevel;
    pub use ember_planner::{EmberError, Result};
}
