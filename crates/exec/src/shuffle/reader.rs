//! The reduce side of a shuffle: find a reduce partition's blocks through the tracker and
//! stream them in map-partition order.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;

use ember_planner::physical::ExchangeKind;
use ember_planner::table::BatchIter;
use ember_planner::{EmberError, Result};
use ember_storage::shuffle::{read_block, BlockMeta};

use super::tracker::MapOutputTracker;
use crate::context::ShuffleReader;

/// Reads shuffle blocks registered in a job's [`MapOutputTracker`].
///
/// Every way a block can be unavailable — no registered output, a deleted file, a corrupt
/// file — becomes `EmberError::FetchFailed` naming the map partition, because that, and only
/// that, tells the scheduler to recompute the map output instead of retrying the reducer.
#[derive(Debug, Clone)]
pub struct TrackerShuffleReader {
    tracker: Arc<MapOutputTracker>,
}

impl TrackerShuffleReader {
    pub fn new(tracker: Arc<MapOutputTracker>) -> Self {
        TrackerShuffleReader { tracker }
    }
}

impl ShuffleReader for TrackerShuffleReader {
    fn read(
        &self,
        stage: usize,
        kind: &ExchangeKind,
        map_partitions: usize,
        reduce_partition: usize,
    ) -> Result<BatchIter> {
        // Broadcast map tasks write everything to bucket 0, which every reducer reads.
        let bucket = match kind {
            ExchangeKind::Broadcast => 0,
            _ => reduce_partition,
        };
        if let Some(n) = kind.partition_count() {
            if reduce_partition >= n {
                return Err(EmberError::Internal(format!(
                    "reduce partition {reduce_partition} of stage {stage} is out of range: \
                     the exchange {kind} has {n} partitions"
                )));
            }
        }
        if let ExchangeKind::Range { partitions, .. } = kind {
            return super::range::read_range(
                &self.tracker,
                stage,
                *partitions,
                map_partitions,
                reduce_partition,
            );
        }
        // Look every map output up before reading anything, so a missing one fails the task
        // at once instead of after reading the others.
        let mut blocks = Vec::new();
        for map_partition in 0..map_partitions {
            let status =
                self.tracker
                    .get(stage, map_partition)
                    .ok_or_else(|| EmberError::FetchFailed {
                        stage,
                        map_partition,
                        reduce_partition,
                        message: "no output registered for this map partition".to_string(),
                    })?;
            match status.blocks.get(bucket) {
                Some(Some(meta)) => blocks.push((map_partition, meta.clone())),
                Some(None) => {} // the bucket got no rows from this map partition
                None => {
                    return Err(EmberError::Internal(format!(
                        "map output of stage {stage} partition {map_partition} has {} buckets, \
                         reduce partition {reduce_partition} reads bucket {bucket}",
                        status.blocks.len()
                    )))
                }
            }
        }
        Ok(Box::new(BlockStream {
            stage,
            reduce_partition,
            blocks: blocks.into_iter(),
            current: Vec::new().into_iter(),
        }))
    }
}

/// Reads one block at a time, yielding its batches before opening the next.
struct BlockStream {
    stage: usize,
    reduce_partition: usize,
    blocks: std::vec::IntoIter<(usize, BlockMeta)>,
    current: std::vec::IntoIter<RecordBatch>,
}

impl Iterator for BlockStream {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(batch) = self.current.next() {
                return Some(Ok(batch));
            }
            let (map_partition, meta) = self.blocks.next()?;
            match read_block(&meta) {
                Ok(batches) => self.current = batches.into_iter(),
                Err(e) => {
                    // Drop the remaining blocks: the task fails here.
                    self.blocks = Vec::new().into_iter();
                    return Some(Err(EmberError::FetchFailed {
                        stage: self.stage,
                        map_partition,
                        reduce_partition: self.reduce_partition,
                        message: e.to_string(),
                    }));
                }
            }
        }
    }
}
