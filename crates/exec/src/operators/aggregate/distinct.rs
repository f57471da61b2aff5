//! DISTINCT aggregates (`COUNT(DISTINCT x)`, `SUM(DISTINCT x)`, ...): a set of seen
//! (group, value) pairs in front of the plain accumulator, which then only sees each
//! value's first occurrence per group. Runs only in Single mode (all rows of a group in one
//! partition), because the set is not a mergeable state.

use arrow::array::{Array, ArrayRef, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::DataType;
use arrow::row::{RowConverter, Rows, SortField};
use hashbrown::HashTable;

use ember_planner::{EmberError, Result};

use super::accumulator::{expect_states, GroupsAccumulator};

pub struct DistinctAccumulator {
    converter: RowConverter,
    /// Entry `i` is (group, value row `i` of `values`, hash).
    groups: Vec<usize>,
    values: Rows,
    hashes: Vec<u64>,
    table: HashTable<usize>,
    random: ahash::RandomState,
    inner: Box<dyn GroupsAccumulator>,
}

impl DistinctAccumulator {
    pub fn try_new(arg_type: &DataType, inner: Box<dyn GroupsAccumulator>) -> Result<Self> {
        let converter = RowConverter::new(vec![SortField::new(arg_type.clone())])?;
        let values = converter.empty_rows(0, 0);
        Ok(DistinctAccumulator {
            converter,
            groups: Vec::new(),
            values,
            hashes: Vec::new(),
            table: HashTable::new(),
            random: ahash::RandomState::with_seeds(0xd157, 0x1c7, 0x5e7, 0x11),
            inner,
        })
    }
}

impl GroupsAccumulator for DistinctAccumulator {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        groups: &[usize],
        total_groups: usize,
    ) -> Result<()> {
        expect_states(values, 1, "DISTINCT aggregate arguments")?;
        let array = &values[0];
        let rows = self
            .converter
            .convert_columns(std::slice::from_ref(array))?;
        let nulls = array.logical_nulls();
        let mut first_rows: Vec<u32> = Vec::new();
        let mut first_groups: Vec<usize> = Vec::new();
        let DistinctAccumulator {
            groups: seen_groups,
            values: seen_values,
            hashes,
            table,
            random,
            ..
        } = self;
        for (i, &g) in groups.iter().enumerate() {
            if nulls.as_ref().is_some_and(|n| n.is_null(i)) {
                continue;
            }
            let row = rows.row(i);
            let hash = random.hash_one((g, row.data()));
            let known = table
                .find(hash, |&e| {
                    hashes[e] == hash && seen_groups[e] == g && seen_values.row(e) == row
                })
                .is_some();
            if !known {
                let e = hashes.len();
                seen_groups.push(g);
                seen_values.push(row);
                hashes.push(hash);
                table.insert_unique(hash, e, |&e| hashes[e]);
                first_rows.push(i as u32);
                first_groups.push(g);
            }
        }
        let firsts = take(array.as_ref(), &UInt32Array::from(first_rows), None)?;
        self.inner
            .update_batch(&[firsts], &first_groups, total_groups)
    }

    fn merge_batch(&mut self, _: &[ArrayRef], _: &[usize], _: usize) -> Result<()> {
        Err(EmberError::Internal(
            "DISTINCT aggregates have no mergeable state; they must run in Single mode".into(),
        ))
    }

    fn evaluate(&mut self, total_groups: usize) -> Result<ArrayRef> {
        self.inner.evaluate(total_groups)
    }

    fn state(&mut self, _: usize) -> Result<Vec<ArrayRef>> {
        Err(EmberError::Internal(
            "DISTINCT aggregates have no mergeable state; they must run in Single mode".into(),
        ))
    }

    fn state_columns(&self) -> usize {
        0
    }

    fn size(&self) -> usize {
        self.groups.capacity() * std::mem::size_of::<usize>()
            + self.values.size()
            + self.hashes.capacity() * std::mem::size_of::<u64>()
            + self.table.capacity() * std::mem::size_of::<usize>()
            + self.inner.size()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::Int64Type;

    use super::super::count::CountAccumulator;
    use super::*;

    #[test]
    fn counts_each_value_once_per_group_across_batches() {
        let mut acc =
            DistinctAccumulator::try_new(&DataType::Int64, Box::new(CountAccumulator::new(false)))
                .unwrap();
        let b1: ArrayRef = Arc::new(Int64Array::from(vec![
            Some(1),
            Some(1),
            Some(2),
            None,
            Some(1),
        ]));
        acc.update_batch(&[b1], &[0, 0, 0, 0, 1], 2).unwrap();
        let b2: ArrayRef = Arc::new(Int64Array::from(vec![2, 3, 1]));
        acc.update_batch(&[b2], &[0, 0, 1], 2).unwrap();
        let out = acc.evaluate(2).unwrap();
        assert_eq!(
            out.as_primitive::<Int64Type>().values().to_vec(),
            vec![3, 1]
        );
    }
}
