//! Limit: skips `skip` rows, then passes at most `fetch` rows, within one partition.
//! Once `fetch` rows are out the input is no longer pulled, so `LIMIT 10` over a large scan
//! reads only what it needs.

use std::sync::Arc;

use arrow::array::RecordBatch;

use ember_planner::physical::PhysicalPlan;
use ember_planner::table::BatchIter;
use ember_planner::Result;

use crate::context::TaskContext;

pub fn execute_limit(
    input: &Arc<PhysicalPlan>,
    skip: usize,
    fetch: Option<usize>,
    partition: usize,
    ctx: &Arc<TaskContext>,
) -> Result<BatchIter> {
    if fetch == Some(0) {
        return Ok(Box::new(std::iter::empty()));
    }
    Ok(Box::new(LimitIter {
        input: super::execute(input, partition, ctx)?,
        to_skip: skip,
        remaining: fetch,
    }))
}

struct LimitIter {
    input: BatchIter,
    to_skip: usize,
    /// Rows still allowed out; `None` = unlimited.
    remaining: Option<usize>,
}

impl Iterator for LimitIter {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.remaining == Some(0) {
                return None;
            }
            let batch = match self.input.next()? {
                Ok(b) => b,
                Err(e) => return Some(Err(e)),
            };
            let rows = batch.num_rows();
            if self.to_skip >= rows {
                self.to_skip -= rows;
                continue;
            }
            let offset = std::mem::take(&mut self.to_skip);
            let available = rows - offset;
            let take = self.remaining.map_or(available, |r| r.min(available));
            if let Some(r) = self.remaining.as_mut() {
                *r -= take;
            }
            if take == 0 {
                continue;
            }
            return Some(Ok(if offset == 0 && take == rows {
                batch
            } else {
                batch.slice(offset, take)
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::super::test_util::*;
    use super::*;

    fn limit(input: Arc<PhysicalPlan>, skip: usize, fetch: Option<usize>) -> Arc<PhysicalPlan> {
        Arc::new(PhysicalPlan::Limit { input, skip, fetch })
    }

    fn three_batches() -> Arc<PhysicalPlan> {
        mem_scan(vec![vec![
            int_batch("a", &[1, 2, 3]),
            int_batch("a", &[4, 5]),
            int_batch("a", &[6, 7, 8]),
        ]])
    }

    #[test]
    fn skip_and_fetch_span_batches() {
        let out = collect(&limit(three_batches(), 2, Some(4)), 0);
        assert_eq!(
            int_column(&out, 0),
            vec![Some(3), Some(4), Some(5), Some(6)]
        );
    }

    #[test]
    fn skip_without_fetch_returns_the_rest() {
        let out = collect(&limit(three_batches(), 6, None), 0);
        assert_eq!(int_column(&out, 0), vec![Some(7), Some(8)]);
    }

    #[test]
    fn skip_past_the_end_is_empty() {
        assert_eq!(
            row_count(&collect(&limit(three_batches(), 100, Some(3)), 0)),
            0
        );
    }

    /// Counts how many batches were pulled from it.
    struct Counting(Arc<AtomicUsize>, BatchIter);
    impl Iterator for Counting {
        type Item = Result<RecordBatch>;
        fn next(&mut self) -> Option<Self::Item> {
            self.0.fetch_add(1, Ordering::Relaxed);
            self.1.next()
        }
    }

    #[test]
    fn stops_pulling_input_once_satisfied() {
        let pulls = Arc::new(AtomicUsize::new(0));
        let input: BatchIter = Box::new((0..1000).map(|i| Ok(int_batch("a", &[i]))));
        let mut it = LimitIter {
            input: Box::new(Counting(pulls.clone(), input)),
            to_skip: 1,
            remaining: Some(2),
        };
        let rows: usize = it.by_ref().map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(rows, 2);
        assert_eq!(pulls.load(Ordering::Relaxed), 3);
    }
}
