//! The logical optimizer: a list of rules applied until none changes the plan.
//!
//! Each rule says whether it changed anything through [`Transformed`], so the optimizer loops
//! to a fixed point on that flag (bounded by [`OptimizerConfig::max_passes`]) instead of
//! comparing printed plans.
//!
//! Plans are DAGs: a DataFrame used twice is one shared `Arc`. Every traversal here memoises
//! by node identity (`Arc::as_ptr`) so a shared node is rewritten once per pass and stays
//! shared, and every traversal is an explicit-stack loop rather than recursion, so iterative
//! jobs with thousands of nested levels neither blow up exponentially nor overflow the stack.

pub mod rules;
pub mod stats;
pub mod utils;

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::Result;
use crate::logical::LogicalPlan;

/// The result of a rewrite: the (possibly new) value and whether anything changed.
#[derive(Debug, Clone)]
pub struct Transformed<T> {
    pub data: T,
    pub transformed: bool,
}

impl<T> Transformed<T> {
    pub fn yes(data: T) -> Self {
        Transformed {
            data,
            transformed: true,
        }
    }

    pub fn no(data: T) -> Self {
        Transformed {
            data,
            transformed: false,
        }
    }

    pub fn new(data: T, transformed: bool) -> Self {
        Transformed { data, transformed }
    }

    /// Applies `f` to the data, or-ing its flag into ours.
    pub fn and_then(self, f: impl FnOnce(T) -> Result<Transformed<T>>) -> Result<Transformed<T>> {
        let next = f(self.data)?;
        Ok(Transformed::new(
            next.data,
            self.transformed || next.transformed,
        ))
    }
}

/// Knobs of the logical optimizer.
#[derive(Debug, Clone)]
pub struct OptimizerConfig {
    /// Upper bound on full passes over the rule list; the loop usually stops earlier, when a
    /// pass changes nothing.
    pub max_passes: usize,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig { max_passes: 16 }
    }
}

/// How the optimizer walks the plan for a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOrder {
    /// `rewrite` sees each node before its (rewritten) inputs: for rules that push
    /// something down and want to follow it in the same pass.
    TopDown,
    /// `rewrite` sees each node after its inputs were rewritten.
    BottomUp,
}

/// One optimization. With an [`ApplyOrder`], `rewrite` receives one node at a time and the
/// optimizer does the (memoised, iterative) traversal; without one, `rewrite` receives the
/// whole plan and walks it itself.
pub trait OptimizerRule: Send + Sync {
    fn name(&self) -> &str;

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn rewrite(
        &self,
        plan: Arc<LogicalPlan>,
        config: &OptimizerConfig,
    ) -> Result<Transformed<Arc<LogicalPlan>>>;
}

/// Runs rules to a fixed point.
pub struct Optimizer {
    rules: Vec<Arc<dyn OptimizerRule>>,
    config: OptimizerConfig,
}

impl Default for Optimizer {
    fn default() -> Self {
        use rules::*;
        Optimizer::with_rules(vec![
            Arc::new(simplify_expressions::SimplifyExpressions),
            Arc::new(decorrelate_subqueries::DecorrelateSubqueries),
            Arc::new(eliminate_cross_join::EliminateCrossJoin),
            Arc::new(push_down_filter::PushDownFilter),
            Arc::new(join_reorder::JoinReorder),
            Arc::new(push_down_limit::PushDownLimit),
            Arc::new(push_down_projection::PushDownProjection),
            Arc::new(join_side_choice::JoinSideChoice),
        ])
    }
}

impl Optimizer {
    pub fn with_rules(rules: Vec<Arc<dyn OptimizerRule>>) -> Self {
        Optimizer {
            rules,
            config: OptimizerConfig::default(),
        }
    }

    pub fn with_config(mut self, config: OptimizerConfig) -> Self {
        self.config = config;
        self
    }

    pub fn rules(&self) -> &[Arc<dyn OptimizerRule>] {
        &self.rules
    }

    /// Applies every rule in turn, pass after pass, until a pass changes nothing.
    pub fn optimize(&self, plan: Arc<LogicalPlan>) -> Result<Arc<LogicalPlan>> {
        let mut plan = plan;
        for _ in 0..self.config.max_passes.max(1) {
            let mut changed = false;
            for rule in &self.rules {
                let t = apply_rule(rule.as_ref(), plan, &self.config)
                    .map_err(|e| e.context(format!("in optimizer rule '{}'", rule.name())))?;
                changed |= t.transformed;
                plan = t.data;
            }
            if !changed {
                break;
            }
        }
        Ok(plan)
    }
}

/// Applies one rule once over the whole plan, in the order the rule asks for.
pub fn apply_rule(
    rule: &dyn OptimizerRule,
    plan: Arc<LogicalPlan>,
    config: &OptimizerConfig,
) -> Result<Transformed<Arc<LogicalPlan>>> {
    match rule.apply_order() {
        Some(ApplyOrder::TopDown) => transform_down(plan, &mut |p| rule.rewrite(p, config)),
        Some(ApplyOrder::BottomUp) => transform_up(plan, &mut |p| rule.rewrite(p, config)),
        None => rule.rewrite(plan, config),
    }
}

/// Identity of a node within one traversal. The memo table keeps the `Arc` alive, so the
/// address cannot be reused by another node while the table exists.
fn key(plan: &Arc<LogicalPlan>) -> *const LogicalPlan {
    Arc::as_ptr(plan)
}

/// `node` over `new_inputs`, reusing `node` itself when every input is unchanged.
fn rebuild(node: &Arc<LogicalPlan>, new_inputs: Vec<Arc<LogicalPlan>>) -> Result<Arc<LogicalPlan>> {
    let same = node
        .inputs()
        .iter()
        .zip(new_inputs.iter())
        .all(|(a, b)| Arc::ptr_eq(a, b));
    if same {
        Ok(Arc::clone(node))
    } else {
        Ok(Arc::new(node.with_new_inputs(new_inputs)?))
    }
}

enum UpStep {
    Enter(Arc<LogicalPlan>),
    Exit(Arc<LogicalPlan>),
}

/// Rewrites the plan bottom-up: `f` sees each node after its inputs were rewritten. Shared
/// nodes are rewritten once (memoised by identity) and stay shared.
pub fn transform_up(
    plan: Arc<LogicalPlan>,
    f: &mut dyn FnMut(Arc<LogicalPlan>) -> Result<Transformed<Arc<LogicalPlan>>>,
) -> Result<Transformed<Arc<LogicalPlan>>> {
    let mut memo: HashMap<*const LogicalPlan, (Arc<LogicalPlan>, Arc<LogicalPlan>)> =
        HashMap::new();
    let mut stack = vec![UpStep::Enter(plan)];
    let mut results: Vec<Arc<LogicalPlan>> = Vec::new();
    let mut changed = false;
    while let Some(step) = stack.pop() {
        match step {
            UpStep::Enter(node) => {
                if let Some((_, done)) = memo.get(&key(&node)) {
                    results.push(Arc::clone(done));
                    continue;
                }
                let inputs: Vec<Arc<LogicalPlan>> = node.inputs().into_iter().cloned().collect();
                stack.push(UpStep::Exit(node));
                for input in inputs.into_iter().rev() {
                    stack.push(UpStep::Enter(input));
                }
            }
            UpStep::Exit(node) => {
                let n = node.inputs().len();
                let new_inputs = results.split_off(results.len() - n);
                let rebuilt = rebuild(&node, new_inputs)?;
                changed |= !Arc::ptr_eq(&rebuilt, &node);
                let t = f(rebuilt)?;
                changed |= t.transformed;
                memo.insert(key(&node), (node, Arc::clone(&t.data)));
                results.push(t.data);
            }
        }
    }
    let root = results.pop().ok_or_else(|| {
        crate::error::EmberError::Internal("transform_up produced no plan".into())
    })?;
    Ok(Transformed::new(root, changed))
}

enum DownStep {
    Enter(Arc<LogicalPlan>),
    /// (original node, node after `f`, before its inputs are rewritten)
    Exit(Arc<LogicalPlan>, Arc<LogicalPlan>),
}

/// Rewrites the plan top-down: `f` sees each node first, then the traversal continues into
/// the inputs of whatever `f` returned (so a pushed-down filter is followed further down in
/// the same pass). `f` must depend only on the node it is given (it is memoised by identity).
pub fn transform_down(
    plan: Arc<LogicalPlan>,
    f: &mut dyn FnMut(Arc<LogicalPlan>) -> Result<Transformed<Arc<LogicalPlan>>>,
) -> Result<Transformed<Arc<LogicalPlan>>> {
    let mut memo: HashMap<*const LogicalPlan, (Arc<LogicalPlan>, Arc<LogicalPlan>)> =
        HashMap::new();
    let mut stack = vec![DownStep::Enter(plan)];
    let mut results: Vec<Arc<LogicalPlan>> = Vec::new();
    let mut changed = false;
    while let Some(step) = stack.pop() {
        match step {
            DownStep::Enter(node) => {
                if let Some((_, done)) = memo.get(&key(&node)) {
                    results.push(Arc::clone(done));
                    continue;
                }
                let t = f(Arc::clone(&node))?;
                changed |= t.transformed;
                let inputs: Vec<Arc<LogicalPlan>> = t.data.inputs().into_iter().cloned().collect();
                stack.push(DownStep::Exit(node, t.data));
                for input in inputs.into_iter().rev() {
                    stack.push(DownStep::Enter(input));
                }
            }
            DownStep::Exit(original, node) => {
                let n = node.inputs().len();
                let new_inputs = results.split_off(results.len() - n);
                let rebuilt = rebuild(&node, new_inputs)?;
                changed |= !Arc::ptr_eq(&rebuilt, &node);
                memo.insert(key(&original), (original, Arc::clone(&rebuilt)));
                results.push(rebuilt);
            }
        }
    }
    let root = results.pop().ok_or_else(|| {
        crate::error::EmberError::Internal("transform_down produced no plan".into())
    })?;
    Ok(Transformed::new(root, changed))
}

#[cfg(test)]
pub(crate) mod test_util;

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;
    use crate::expr::{col, lit};
    use crate::logical::{CrossJoin, Filter};

    #[test]
    fn transform_up_rewrites_shared_node_once() {
        let scan = scan("t", &["a", "b"]);
        let shared = Arc::new(LogicalPlan::Filter(Filter {
            input: scan,
            predicate: col("t.a").gt(lit(1i64)),
        }));
        let join = Arc::new(LogicalPlan::CrossJoin(CrossJoin::new(
            Arc::clone(&shared),
            Arc::clone(&shared),
        )));
        let mut calls = 0;
        let t = transform_up(join, &mut |p| {
            if matches!(p.as_ref(), LogicalPlan::Filter(_)) {
                calls += 1;
                let LogicalPlan::Filter(f) = p.as_ref() else {
                    unreachable!()
                };
                return Ok(Transformed::yes(Arc::clone(&f.input)));
            }
            Ok(Transformed::no(p))
        })
        .unwrap();
        assert!(t.transformed);
        assert_eq!(calls, 1);
        let LogicalPlan::CrossJoin(j) = t.data.as_ref() else {
            panic!("expected cross join")
        };
        assert!(Arc::ptr_eq(&j.left, &j.right), "sharing must survive");
    }

    #[test]
    fn deep_plans_do_not_overflow_and_stay_linear() {
        // 20 000 nested filters, each level used twice through a shared node would be
        // exponential without memoisation; deep recursion would overflow the stack.
        let mut plan = scan("t", &["a"]);
        for i in 0..20_000i64 {
            plan = Arc::new(LogicalPlan::Filter(Filter {
                input: plan,
                predicate: col("t.a").gt(lit(i)),
            }));
        }
        let mut visited = 0usize;
        let t = transform_down(Arc::clone(&plan), &mut |p| {
            visited += 1;
            Ok(Transformed::no(p))
        })
        .unwrap();
        assert!(!t.transformed);
        assert_eq!(visited, 20_001);
        assert!(Arc::ptr_eq(&t.data, &plan));
        drop_deep(t.data);
        drop_deep(plan);
    }
}

#[cfg(test)]
mod pipeline_tests;
