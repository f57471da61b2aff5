//! COUNT(*) and COUNT(x): one Int64 per group.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use arrow::datatypes::Int64Type;

use ember_planner::{EmberError, Result};

use super::accumulator::{expect_states, GroupsAccumulator};
use super::lanes::{add_in_lanes, FEW_GROUPS};

pub struct CountAccumulator {
    /// COUNT(*) counts rows; COUNT(x) counts non-NULL values of x.
    count_rows: bool,
    counts: Vec<i64>,
}

impl CountAccumulator {
    pub fn new(count_rows: bool) -> Self {
        CountAccumulator {
            count_rows,
            counts: Vec::new(),
        }
    }

    fn take(&mut self, total_groups: usize) -> ArrayRef {
        self.counts.resize(total_groups.max(self.counts.len()), 0);
        Arc::new(Int64Array::from(std::mem::take(&mut self.counts)))
    }
}

impl GroupsAccumulator for CountAccumulator {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        groups: &[usize],
        total_groups: usize,
    ) -> Result<()> {
        self.counts.resize(total_groups, 0);
        let nulls = if self.count_rows {
            None
        } else {
            let value = values.first().ok_or_else(|| {
                EmberError::Internal("COUNT(x) was given no argument values".into())
            })?;
            value.logical_nulls()
        };
        match nulls {
            None if total_groups <= FEW_GROUPS => {
                add_in_lanes(&mut self.counts, None, groups, std::iter::repeat(1i64));
            }
            None => {
                for &g in groups {
                    self.counts[g] += 1;
                }
            }
            Some(nulls) => {
                for (i, &g) in groups.iter().enumerate() {
                    self.counts[g] += i64::from(nulls.is_valid(i));
                }
            }
        }
        Ok(())
    }

    fn merge_batch(
        &mut self,
        states: &[ArrayRef],
        groups: &[usize],
        total_groups: usize,
    ) -> Result<()> {
        expect_states(states, 1, "COUNT")?;
        self.counts.resize(total_groups, 0);
        let partial = states[0].as_primitive_opt::<Int64Type>().ok_or_else(|| {
            EmberError::Internal(format!(
                "COUNT state must be Int64, got {}",
                states[0].data_type()
            ))
        })?;
        // NULL states cannot come from a Partial COUNT; the stored value 0 under a null slot
        // is skipped all the same by reading through the validity.
        for (i, &g) in groups.iter().enumerate() {
            if partial.is_valid(i) {
                self.counts[g] += partial.value(i);
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, total_groups: usize) -> Result<ArrayRef> {
        Ok(self.take(total_groups))
    }

    fn state(&mut self, total_groups: usize) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.take(total_groups)])
    }

    fn state_columns(&self) -> usize {
        1
    }

    fn size(&self) -> usize {
        self.counts.capacity() * std::mem::size_of::<i64>()
    }
}
