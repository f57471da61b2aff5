//! Iterative `Drop` for plan DAGs.
//!
//! A long DataFrame loop builds `Arc` chains tens of thousands of nodes deep, and the
//! compiler's drop glue frees them recursively (node → `Arc` → node, several frames per
//! level): without this, the logical plan of a 10,000-iteration join + aggregate loop
//! overflowed a 2 MiB thread stack when dropped. Here a node being dropped first moves the
//! inputs it owns alone out of its fields (leaving a shared leaf behind) and frees them
//! from a loop that does the same to each, so drop glue never nests. Inputs shared with
//! other owners (the common case: a DataFrame reused) are left alone and cost nothing.

use std::sync::{Arc, OnceLock};

use crate::logical::{EmptyRelation, LogicalPlan};
use crate::physical::PhysicalPlan;
use crate::schema::PlanSchema;

/// A plan node type whose inputs can be detached for an iterative drop.
trait DeepDrop: Sized {
    /// The node's input fields.
    fn inputs_mut(&mut self) -> Vec<&mut Arc<Self>>;
    /// A shared leaf put in place of a detached input.
    fn placeholder() -> Arc<Self>;
}

/// Moves the inputs `node` owns alone onto `stack`.
fn detach<T: DeepDrop>(node: &mut T, stack: &mut Vec<Arc<T>>) {
    for input in node.inputs_mut() {
        if Arc::strong_count(input) == 1 && Arc::weak_count(input) == 0 {
            stack.push(std::mem::replace(input, T::placeholder()));
        }
    }
}

/// Frees `node`'s exclusively owned inputs without recursion.
fn drop_inputs<T: DeepDrop>(node: &mut T) {
    let mut stack = Vec::new();
    detach(node, &mut stack);
    while let Some(mut next) = stack.pop() {
        if let Some(inner) = Arc::get_mut(&mut next) {
            detach(inner, &mut stack);
        }
        // `next` now has only shared inputs: dropping it does not nest.
    }
}

impl DeepDrop for LogicalPlan {
    fn inputs_mut(&mut self) -> Vec<&mut Arc<Self>> {
        match self {
            LogicalPlan::TableScan(_) | LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => {
                vec![]
            }
            LogicalPlan::Projection(p) => vec![&mut p.input],
            LogicalPlan::Filter(f) => vec![&mut f.input],
            LogicalPlan::Aggregate(a) => vec![&mut a.input],
            LogicalPlan::Sort(s) => vec![&mut s.input],
            LogicalPlan::Limit(l) => vec![&mut l.input],
            LogicalPlan::Join(j) => vec![&mut j.left, &mut j.right],
            LogicalPlan::CrossJoin(j) => vec![&mut j.left, &mut j.right],
            LogicalPlan::Union(u) => u.inputs.iter_mut().collect(),
            LogicalPlan::Distinct(d) => vec![&mut d.input],
            LogicalPlan::SubqueryAlias(s) => vec![&mut s.input],
            LogicalPlan::Repartition(r) => vec![&mut r.input],
            LogicalPlan::Unnest(u) => vec![&mut u.input],
            LogicalPlan::Persist(p) => vec![&mut p.input],
        }
    }

    fn placeholder() -> Arc<Self> {
        static LEAF: OnceLock<Arc<LogicalPlan>> = OnceLock::new();
        LEAF.get_or_init(|| {
            Arc::new(LogicalPlan::EmptyRelation(EmptyRelation {
                produce_one_row: false,
                schema: Arc::new(PlanSchema::empty()),
            }))
        })
        .clone()
    }
}

impl DeepDrop for PhysicalPlan {
    fn inputs_mut(&mut self) -> Vec<&mut Arc<Self>> {
        match self {
            PhysicalPlan::Scan(_)
            | PhysicalPlan::Values { .. }
            | PhysicalPlan::ShuffleRead { .. }
            | PhysicalPlan::PersistRead { .. } => vec![],
            PhysicalPlan::Filter { input, .. }
            | PhysicalPlan::Projection { input, .. }
            | PhysicalPlan::HashAggregate { input, .. }
            | PhysicalPlan::Sort { input, .. }
            | PhysicalPlan::Limit { input, .. }
            | PhysicalPlan::Unnest { input, .. }
            | PhysicalPlan::Exchange { input, .. }
            | PhysicalPlan::Write { input, .. }
            | PhysicalPlan::Persist { input, .. } => vec![input],
            PhysicalPlan::HashJoin { left, right, .. }
            | PhysicalPlan::NestedLoopJoin { left, right, .. } => vec![left, right],
            PhysicalPlan::DynamicFilter { input, source, .. } => vec![input, source],
            PhysicalPlan::Union { inputs, .. } => inputs.iter_mut().collect(),
        }
    }

    fn placeholder() -> Arc<Self> {
        static LEAF: OnceLock<Arc<PhysicalPlan>> = OnceLock::new();
        LEAF.get_or_init(|| {
            Arc::new(PhysicalPlan::Values {
                schema: Arc::new(PlanSchema::empty()),
                rows: vec![],
            })
        })
        .clone()
    }
}

impl Drop for LogicalPlan {
    fn drop(&mut self) {
        drop_inputs(self);
    }
}

impl Drop for PhysicalPlan {
    fn drop(&mut self) {
        drop_inputs(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logical::{Filter, Union};

    fn leaf() -> Arc<LogicalPlan> {
        LogicalPlan::placeholder()
    }

    /// 200,000 filters over each other: recursive drop glue would need well over 2 MiB.
    #[test]
    fn a_very_deep_chain_drops_on_a_small_stack() {
        let mut plan = leaf();
        for _ in 0..200_000 {
            plan = Arc::new(LogicalPlan::Filter(Filter {
                input: plan,
                predicate: crate::expr::lit(true),
            }));
        }
        let handle = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || drop(plan))
            .unwrap();
        handle.join().unwrap();
    }

    /// Inputs shared with another owner survive the drop of one of their consumers.
    #[test]
    fn shared_inputs_are_left_to_their_other_owners() {
        let shared = Arc::new(LogicalPlan::Union(
            Union::try_new(vec![leaf(), leaf()]).unwrap(),
        ));
        let consumer = Arc::new(LogicalPlan::Union(
            Union::try_new(vec![shared.clone(), shared.clone()]).unwrap(),
        ));
        drop(consumer);
        assert_eq!(Arc::strong_count(&shared), 1);
        assert_eq!(shared.inputs().len(), 2);
    }
}
