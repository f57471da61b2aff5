//! One module per rule. `Optimizer::default()` (in the parent module) lists them in the
//! order they run within a pass.
pub mod decorrelate_subqueries;
pub mod eliminate_cross_join;
pub mod join_reorder;
pub mod join_side_choice;
pub mod push_down_filter;
pub mod push_down_limit;
pub mod push_down_projection;
pub mod simplify_expressions;
