//! One module per rule.
pub mod decorrelate_subqueries;
pub mod simplify_expressions;
