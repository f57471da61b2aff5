//! Group keys → dense group indices.
//!
//! Key columns are encoded with `arrow-row` into one byte string per row, so any number
//! and type of key columns is one hash and one `memcmp` per row. Groups are numbered in
//! order of first appearance, which makes the output order a pure function of the input
//! order (recomputing a lost partition must give the same rows in the same order).

use arrow::array::ArrayRef;
use arrow::datatypes::DataType;
use arrow::row::{RowConverter, Rows, SortField};
use hashbrown::HashTable;

use ember_planner::Result;

pub struct GroupValues {
    converter: RowConverter,
    /// The key of group `i` is `keys.row(i)`.
    keys: Rows,
    hashes: Vec<u64>,
    /// Group indices, looked up by key hash.
    table: HashTable<usize>,
    random: ahash::RandomState,
}

impl GroupValues {
    pub fn try_new(key_types: &[DataType]) -> Result<Self> {
        let converter = RowConverter::new(
            key_types
                .iter()
                .map(|t| SortField::new(t.clone()))
                .collect(),
        )?;
        let keys = converter.empty_rows(0, 0);
        Ok(GroupValues {
            converter,
            keys,
            hashes: Vec::new(),
            table: HashTable::new(),
            random: ahash::RandomState::with_seeds(0x5eed, 0xe3be, 0x61, 0x7),
        })
    }

    /// The number of groups so far.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Writes the group index of every row of `columns` into `groups`, creating groups for
    /// keys not seen before.
    pub fn intern(&mut self, columns: &[ArrayRef], groups: &mut Vec<usize>) -> Result<()> {
        let rows = self.converter.convert_columns(columns)?;
        groups.clear();
        groups.reserve(rows.num_rows());
        let GroupValues {
            keys,
            hashes,
            table,
            random,
            ..
        } = self;
        for row in rows.iter() {
            let hash = random.hash_one(row.data());
            let group = match table.find(hash, |&g| hashes[g] == hash && keys.row(g) == row) {
                Some(&g) => g,
                None => {
                    let g = hashes.len();
                    keys.push(row);
                    hashes.push(hash);
                    table.insert_unique(hash, g, |&g| hashes[g]);
                    g
                }
            };
            groups.push(group);
        }
        Ok(())
    }

    /// The key columns of all groups, in group-index order.
    pub fn emit(&self) -> Result<Vec<ArrayRef>> {
        Ok(self.converter.convert_rows(self.keys.iter())?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};

    use super::*;

    #[test]
    fn numbers_groups_in_first_seen_order_across_batches() {
        let mut g = GroupValues::try_new(&[DataType::Utf8, DataType::Int64]).unwrap();
        let mut out = Vec::new();
        let b1: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![
                Some("x"),
                Some("y"),
                Some("x"),
                None,
            ])),
            Arc::new(Int64Array::from(vec![1, 1, 1, 1])),
        ];
        g.intern(&b1, &mut out).unwrap();
        assert_eq!(out, vec![0, 1, 0, 2]);
        let b2: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![None, Some("x"), Some("x")])),
            Arc::new(Int64Array::from(vec![1, 2, 1])),
        ];
        g.intern(&b2, &mut out).unwrap();
        assert_eq!(out, vec![2, 3, 0]);
        assert_eq!(g.len(), 4);
        let keys = g.emit().unwrap();
        let names = keys[0].as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(
            names.iter().collect::<Vec<_>>(),
            vec![Some("x"), Some("y"), None, Some("x")]
        );
    }
}
