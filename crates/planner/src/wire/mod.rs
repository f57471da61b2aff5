//! Plans as plain serialisable data, so a stage's physical plan can be shipped to an executor
//! process in cluster mode (as Ballista ships DataFusion plans with datafusion-proto; Ember
//! uses serde + JSON instead of protobuf).
//!
//! Plans and expressions are already plain data except for three things, which this module
//! gives a wire form:
//! - literals (`ScalarValue` has no serde): [`ScalarWire`];
//! - table sources and scan partitions (trait objects): [`SourceDescriptor`] and
//!   [`PartitionDescriptor`], turned back into objects by a [`ScanResolver`];
//! - sharing: plans are DAGs (a DataFrame used twice, an Exchange read by two consumers is
//!   one `Arc`), and the stage cutter and the fingerprints key on node identity. A
//!   [`WirePlan`] is therefore a table of nodes, children before parents, that refer to
//!   each other by index; a node shared in memory is one entry, and decoding makes it one
//!   `Arc` again. Sources are a table too, so two scans of one table still share it.
//!
//! ```text
//! WirePlan { version, sources: [SourceDescriptor], logical: [LogicalNode],
//!            physical: [PhysicalNode], root: Physical(i) | Logical(i) }
//! ```
//! Logical nodes appear in a physical plan only as subqueries inside expressions.
//!
//! Encoding walks plans with an explicit stack and decoding is one pass over the node
//! tables, so deep plans (long iterative jobs) do not overflow the stack. [`to_json`]
//! writes canonical JSON (object keys sorted), so equal plans give byte-identical text.

mod expr;
mod logical;
mod physical;
mod scalar;
mod source;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{EmberError, Result};
use crate::logical::LogicalPlan;
use crate::physical::PhysicalPlan;
use crate::table::TableSource;

pub use expr::{ExprWire, SortExprWire, SubqueryWire};
pub use logical::LogicalNode;
pub use physical::{ExchangeKindWire, PhysicalNode, ScanNode};
pub use scalar::ScalarWire;
pub use source::{PartitionDescriptor, ScanResolver, SourceDescriptor};

/// The wire format version this code writes and reads.
pub const WIRE_VERSION: u32 = 1;

/// Which node table the root is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireRoot {
    Logical(usize),
    Physical(usize),
}

/// A logical or physical plan as plain data (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WirePlan {
    pub version: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceDescriptor>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logical: Vec<LogicalNode>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub physical: Vec<PhysicalNode>,
    pub root: WireRoot,
}

/// Encodes a physical plan (e.g. one stage's pipeline).
pub fn physical_plan_to_wire(plan: &Arc<PhysicalPlan>) -> Result<WirePlan> {
    let mut encoder = Encoder::default();
    let root = encoder.physical_plan(plan)?;
    Ok(encoder.finish(WireRoot::Physical(root)))
}

/// Rebuilds a physical plan, reopening its sources through `resolver`.
pub fn physical_plan_from_wire(
    wire: &WirePlan,
    resolver: &dyn ScanResolver,
) -> Result<Arc<PhysicalPlan>> {
    let mut decoder = Decoder::new(wire, resolver)?;
    match wire.root {
        WireRoot::Physical(root) => decoder.physical_plan(root),
        WireRoot::Logical(_) => Err(EmberError::Plan(
            "expected a physical plan on the wire, found a logical plan".to_string(),
        )),
    }
}

/// Encodes a logical plan.
pub fn logical_plan_to_wire(plan: &Arc<LogicalPlan>) -> Result<WirePlan> {
    let mut encoder = Encoder::default();
    let root = encoder.logical_plan(plan)?;
    Ok(encoder.finish(WireRoot::Logical(root)))
}

/// Rebuilds a logical plan, reopening its sources through `resolver`.
pub fn logical_plan_from_wire(
    wire: &WirePlan,
    resolver: &dyn ScanResolver,
) -> Result<Arc<LogicalPlan>> {
    let decoder = Decoder::new(wire, resolver)?;
    match wire.root {
        WireRoot::Logical(root) => decoder.logical_node(root),
        WireRoot::Physical(_) => Err(EmberError::Plan(
            "expected a logical plan on the wire, found a physical plan".to_string(),
        )),
    }
}

/// Canonical JSON text of `wire`: object keys sorted, so equal plans give equal bytes.
pub fn to_json(wire: &WirePlan) -> Result<String> {
    let value = serde_json::to_value(wire)
        .map_err(|e| EmberError::Internal(format!("cannot serialise a plan to JSON: {e}")))?;
    Ok(value.to_string())
}

/// Parses JSON written by [`to_json`].
pub fn from_json(text: &str) -> Result<WirePlan> {
    serde_json::from_str(text).map_err(|e| EmberError::Plan(format!("invalid plan JSON: {e}")))
}

/// Builds the node tables. Every map is keyed by node identity, so a node shared in memory is
/// encoded once.
#[derive(Default)]
pub(crate) struct Encoder {
    sources: Vec<SourceDescriptor>,
    source_ids: HashMap<*const (), usize>,
    logical: Vec<LogicalNode>,
    logical_ids: HashMap<*const LogicalPlan, usize>,
    physical: Vec<PhysicalNode>,
    physical_ids: HashMap<*const PhysicalPlan, usize>,
}

impl Encoder {
    fn finish(self, root: WireRoot) -> WirePlan {
        WirePlan {
            version: WIRE_VERSION,
            sources: self.sources,
            logical: self.logical,
            physical: self.physical,
            root,
        }
    }

    /// The index of `source` in the source table, adding its descriptor on first sight.
    pub(crate) fn source(
        &mut self,
        table_name: &str,
        source: &Arc<dyn TableSource>,
    ) -> Result<usize> {
        let key = Arc::as_ptr(source) as *const ();
        if let Some(id) = self.source_ids.get(&key) {
            return Ok(*id);
        }
        let descriptor = source
            .descriptor()
            .map_err(|e| e.context(format!("while serialising the scan of table {table_name}")))?;
        let id = self.sources.len();
        self.sources.push(descriptor);
        self.source_ids.insert(key, id);
        Ok(id)
    }
}

/// Children first, each node once, skipping nodes already encoded: the order a node table
/// must be written in. Iterative, so plan depth is not limited by the stack.
fn post_order<'a, T>(
    root: &'a Arc<T>,
    inputs: impl Fn(&'a T) -> Vec<&'a Arc<T>>,
    done: &HashMap<*const T, usize>,
) -> Vec<&'a Arc<T>> {
    let mut order = Vec::new();
    let mut emitted: HashSet<*const T> = HashSet::new();
    let mut stack: Vec<(&'a Arc<T>, bool)> = vec![(root, false)];
    while let Some((node, expanded)) = stack.pop() {
        let key = Arc::as_ptr(node);
        if done.contains_key(&key) || emitted.contains(&key) {
            continue;
        }
        if expanded {
            emitted.insert(key);
            order.push(node);
        } else {
            stack.push((node, true));
            for child in inputs(node.as_ref()).into_iter().rev() {
                stack.push((child, false));
            }
        }
    }
    order
}

/// Rebuilds objects from the node tables. Logical nodes are decoded up front (physical
/// expressions refer to them as subqueries); sources are resolved once each, on first use.
pub(crate) struct Decoder<'a> {
    wire: &'a WirePlan,
    resolver: &'a dyn ScanResolver,
    sources: Vec<Option<Arc<dyn TableSource>>>,
    logical: Vec<Arc<LogicalPlan>>,
    physical: Vec<Arc<PhysicalPlan>>,
}

impl<'a> Decoder<'a> {
    fn new(wire: &'a WirePlan, resolver: &'a dyn ScanResolver) -> Result<Self> {
        if wire.version != WIRE_VERSION {
            return Err(EmberError::Plan(format!(
                "plan wire format version {} is not supported (this Ember reads version {WIRE_VERSION})",
                wire.version
            )));
        }
        let mut decoder = Decoder {
            wire,
            resolver,
            sources: vec![None; wire.sources.len()],
            logical: Vec::with_capacity(wire.logical.len()),
            physical: Vec::with_capacity(wire.physical.len()),
        };
        for node in &wire.logical {
            let plan = decoder.decode_logical(node)?;
            decoder.logical.push(Arc::new(plan));
        }
        Ok(decoder)
    }

    pub(crate) fn source(&mut self, id: usize) -> Result<Arc<dyn TableSource>> {
        let slot = self.sources.get(id).ok_or_else(|| {
            EmberError::Plan(format!(
                "plan refers to source {id}, but it lists {} sources",
                self.wire.sources.len()
            ))
        })?;
        if let Some(source) = slot {
            return Ok(Arc::clone(source));
        }
        let desc = &self.wire.sources[id];
        let source = self
            .resolver
            .resolve_source(desc)
            .map_err(|e| e.context(format!("while reopening a {} table of a plan", desc.kind)))?;
        self.sources[id] = Some(Arc::clone(&source));
        Ok(source)
    }

    /// An already decoded logical node: references must point backwards.
    pub(crate) fn logical_node(&self, id: usize) -> Result<Arc<LogicalPlan>> {
        self.logical.get(id).cloned().ok_or_else(|| {
            EmberError::Plan(format!(
                "plan refers to logical node {id} before it is defined ({} defined so far)",
                self.logical.len()
            ))
        })
    }

    /// An already decoded physical node: references must point backwards.
    pub(crate) fn physical_node(&self, id: usize) -> Result<Arc<PhysicalPlan>> {
        self.physical.get(id).cloned().ok_or_else(|| {
            EmberError::Plan(format!(
                "plan refers to physical node {id} before it is defined ({} defined so far)",
                self.physical.len()
            ))
        })
    }

    fn physical_plan(&mut self, root: usize) -> Result<Arc<PhysicalPlan>> {
        let wire = self.wire;
        for node in &wire.physical {
            let plan = self.decode_physical(node)?;
            self.physical.push(Arc::new(plan));
        }
        self.physical_node(root)
    }
}

#[cfg(test)]
mod tests;
