//! Rendering plans as indented text for EXPLAIN, shared by logical and physical plans.
//!
//! Plans are DAGs: an iterative DataFrame loop can reuse one node many times and be 1,000+
//! levels deep. So the renderer walks with an explicit stack (no recursion) and prints a
//! shared node's subtree once; later occurrences point back to it.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// A plan node that can be rendered.
pub trait ExplainNode: Sized {
    /// One line describing this node (not its inputs).
    fn describe_node(&self) -> String;
    fn input_nodes(&self) -> Vec<&Arc<Self>>;
}

/// `a, b, c` from displayable items.
pub fn comma_list<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Renders `root` and its inputs, two spaces of indent per level. A node reached a second
/// time (shared subplan) is printed as `<description> [shared #n, shown above]`.
pub fn display_indent<N: ExplainNode>(root: &N) -> String {
    let mut out = String::new();
    let mut seen: HashMap<*const N, usize> = HashMap::new();
    let mut stack: Vec<(&N, usize)> = vec![(root, 0)];
    while let Some((node, depth)) = stack.pop() {
        out.push_str(&"  ".repeat(depth));
        out.push_str(&node.describe_node());
        let key = node as *const N;
        let inputs = node.input_nodes();
        if !inputs.is_empty() {
            if let Some(id) = seen.get(&key) {
                out.push_str(&format!(" [shared #{id}, shown above]\n"));
                continue;
            }
            let id = seen.len() + 1;
            seen.insert(key, id);
        }
        out.push('\n');
        for input in inputs.into_iter().rev() {
            stack.push((input.as_ref(), depth + 1));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::expr::{col, lit};
    use crate::logical::{Filter, LogicalPlan, Union, Values};
    use crate::schema::PlanSchema;

    #[test]
    fn shared_subplans_are_printed_once_and_deep_plans_do_not_overflow() {
        let values = Arc::new(LogicalPlan::Values(Values {
            schema: Arc::new(PlanSchema::empty()),
            rows: vec![],
        }));
        let filtered = Arc::new(LogicalPlan::Filter(Filter {
            input: values,
            predicate: col("x").gt(lit(1i64)),
        }));
        let union = LogicalPlan::Union(Union::try_new(vec![filtered.clone(), filtered]).unwrap());
        assert_eq!(
            union.display_indent(),
            "Union\n  Filter: (x > 1)\n    Values: 0 rows\n  Filter: (x > 1) [shared #2, shown above]\n"
        );

        // A 20,000-level chain renders without recursion.
        let mut plan = Arc::new(LogicalPlan::Values(Values {
            schema: Arc::new(PlanSchema::empty()),
            rows: vec![],
        }));
        for _ in 0..20_000 {
            plan = Arc::new(LogicalPlan::Filter(Filter {
                input: plan,
                predicate: lit(true),
            }));
        }
        assert_eq!(plan.display_indent().lines().count(), 20_001);
        // Dropping a deep Arc chain recurses in Drop; leak it instead of overflowing.
        std::mem::forget(plan);
    }
}
