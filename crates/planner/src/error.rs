//! Ember's error type, shared by every crate.
//!
//! Errors are sorted by *who must act*: `Sql`/`Plan` are the user's (bad query), `Execution`
//! and `Io` are the environment's (bad files, lost executors), `Internal` is a bug in Ember.
//! Fault-tolerance code matches on the typed variants (`FetchFailed`, `ExecutorLost`), so they
//! must never be flattened into strings on the way up.

use std::fmt;

/// Where in the SQL text a problem is (1-based, as editors count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub line: u64,
    pub column: u64,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}:{}", self.line, self.column)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EmberError {
    /// The SQL text does not parse.
    #[error("SQL error: {0}")]
    Sql(String),
    /// The query parses but cannot be planned: unknown table/column, type errors, ...
    #[error("Plan error: {0}")]
    Plan(String),
    /// Something failed while running a query (bad data in a file, a failed task, ...).
    #[error("Execution error: {0}")]
    Execution(String),
    /// An expression cannot be computed on the rows it was given: a value that does not
    /// cast, an overflow, a scalar subquery with several rows. The same rows fail the same
    /// way on any executor, so a task failing with it is not retried.
    #[error("Data error: {0}")]
    Data(String),
    /// A feature Ember does not support (yet).
    #[error("Not supported: {0}")]
    NotImplemented(String),
    /// A bug in Ember: an invariant the code relies on did not hold.
    #[error("Internal error (a bug in Ember): {0}")]
    Internal(String),
    /// Invalid configuration key or value.
    #[error("Config error: {0}")]
    Config(String),
    #[error("IO error at {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("Parquet error: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// A shuffle block could not be read: the map output is lost and must be recomputed.
    #[error("Fetch failed: shuffle block of stage {stage} map partition {map_partition} (reduce partition {reduce_partition}): {message}")]
    FetchFailed {
        stage: usize,
        map_partition: usize,
        reduce_partition: usize,
        message: String,
    },
    /// The executor running a task went away.
    #[error("Executor {executor} lost: {message}")]
    ExecutorLost { executor: usize, message: String },
    /// Attaches context ("while reading file x") to an inner error, keeping its type.
    #[error("{context}: {source}")]
    Context {
        context: String,
        #[source]
        source: Box<EmberError>,
    },
}

pub type Result<T, E = EmberError> = std::result::Result<T, E>;

impl EmberError {
    pub fn io(path: impl Into<String>, source: std::io::Error) -> Self {
        EmberError::Io {
            path: path.into(),
            source,
        }
    }

    /// Wraps this error with a description of what was being done.
    pub fn context(self, context: impl Into<String>) -> Self {
        EmberError::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }

    /// Whether a retry cannot fix this error: bad SQL, planning, unsupported features,
    /// configuration, and data that does not cast or overflows — the same rows fail the same
    /// way on any executor. Injected faults, I/O and lost executors are worth retrying.
    pub fn is_deterministic(&self) -> bool {
        use arrow::error::ArrowError;
        matches!(
            self.root(),
            EmberError::Sql(_)
                | EmberError::Plan(_)
                | EmberError::NotImplemented(_)
                | EmberError::Config(_)
                | EmberError::Data(_)
                | EmberError::Arrow(
                    ArrowError::CastError(_)
                        | ArrowError::ArithmeticOverflow(_)
                        | ArrowError::DivideByZero
                )
        )
    }

    /// The innermost error, skipping `Context` wrappers.
    pub fn root(&self) -> &EmberError {
        match self {
            EmberError::Context { source, .. } => source.root(),
            other => other,
        }
    }
}

impl From<datafusion_common::DataFusionError> for EmberError {
    fn from(e: datafusion_common::DataFusionError) -> Self {
        match e {
            datafusion_common::DataFusionError::ArrowError(e, _) => EmberError::Arrow(*e),
            other => EmberError::Execution(other.to_string()),
        }
    }
}

#[macro_export]
macro_rules! plan_err {
    ($($arg:tt)*) => { Err($crate::error::EmberError::Plan(format!($($arg)*))) };
}
#[macro_export]
macro_rules! data_err {
    ($($arg:tt)*) => { Err($crate::error::EmberError::Data(format!($($arg)*))) };
}
#[macro_export]
macro_rules! exec_err {
    ($($arg:tt)*) => { Err($crate::error::EmberError::Execution(format!($($arg)*))) };
}
#[macro_export]
macro_rules! internal_err {
    ($($arg:tt)*) => { Err($crate::error::EmberError::Internal(format!($($arg)*))) };
}
#[macro_export]
macro_rules! not_impl_err {
    ($($arg:tt)*) => { Err($crate::error::EmberError::NotImplemented(format!($($arg)*))) };
}

/// The known name closest to `name` (edit distance), for "did you mean" hints.
pub fn closest_name<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = name.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (edit_distance(&lower, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= (c.len().max(name.len()) / 2).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_name_finds_typos() {
        let names = ["l_orderkey", "l_partkey", "l_quantity"];
        assert_eq!(closest_name("l_quantty", names), Some("l_quantity"));
        assert_eq!(closest_name("zzzzzzzz", names), None);
    }
}
