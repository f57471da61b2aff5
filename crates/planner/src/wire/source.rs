//! Table sources and scan partitions on the wire.
//!
//! A scan holds `Arc<dyn TableSource>` and `Arc<dyn ScanPartition>`: behaviour, not data. On
//! the wire a source is a [`SourceDescriptor`] (its kind, its identity and a format-specific
//! spec, e.g. the exact files with their sizes and modification times) and each partition a
//! [`PartitionDescriptor`] (e.g. a file and a byte range, or row groups). The receiving
//! process turns them back into objects through a [`ScanResolver`] — `ember-storage`
//! implements one for its file sources — as datafusion-proto does with its extension codec.
//!
//! Sources whose data lives only in this process (in-memory tables) have no descriptor: the
//! default trait methods return a `NotImplemented` error naming the source.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::table::{ScanPartition, TableSource};

/// What another process needs to reopen a table: written by `TableSource::descriptor`,
/// read by a [`ScanResolver`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceDescriptor {
    /// `TableSource::kind()` ("parquet", "csv", ...): selects the resolver's decoder.
    pub kind: String,
    /// `TableSource::identity()` when the plan was made. A resolver must refuse a source
    /// whose data no longer has this identity: recomputing a lost partition from changed
    /// input would silently give a different answer.
    pub identity: String,
    /// Format-specific content (files, options, schema), defined by the source's crate.
    pub spec: serde_json::Value,
}

/// One scan partition as data (e.g. a file path and byte range), defined by the source's
/// crate and read back by its [`ScanResolver`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PartitionDescriptor(pub serde_json::Value);

/// Turns descriptors back into sources and partitions in the process that runs the plan.
///
/// Each source of a plan is resolved once and shared by every scan that read it when the
/// plan was encoded, so `Arc::ptr_eq` between scans survives the trip.
pub trait ScanResolver {
    /// Reopens the table `desc` describes. Must fail if its identity changed.
    fn resolve_source(&self, desc: &SourceDescriptor) -> Result<Arc<dyn TableSource>>;

    /// Rebuilds one partition of a scan of `source` (a value `resolve_source` returned).
    fn resolve_partition(
        &self,
        source: &Arc<dyn TableSource>,
        desc: &PartitionDescriptor,
    ) -> Result<Arc<dyn ScanPartition>>;
}
