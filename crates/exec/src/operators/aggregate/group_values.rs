//! Group keys → dense group indices.
//!
//! Groups are numbered in
//! order of first appearance, which makes the output order a pure function of the input
//! order (recomputing a lost partition must give the same rows in the same order).

use std::hash::Hash;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, PrimitiveArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, Date64Type, Int16Type, Int32Type, Int64Type,
    Int8Type, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow::row::{RowConverter, Rows, SortField};
use hashbrown::hash_table::Entry;
use hashbrown::HashTable;

use ember_planner::{EmberError, Result};

use super::group_columns::{self, ColumnGroupValues};

/// Maps key rows to group indices.
pub trait GroupValues: Send {
    /// Writes the group index of every row of `columns` into `groups`, creating groups for
    /// keys not seen before.
    fn intern(&mut self, columns: &[ArrayRef], groups: &mut Vec<usize>) -> Result<()>;
    /// The number of groups so far.
    fn num_groups(&self) -> usize;
    /// The key columns of all groups, in group-index order.
    fn emit(&self) -> Result<Vec<ArrayRef>>;
    /// Bytes held by the table (for the memory reservation of the aggregate).
    fn size(&self) -> usize;
}

fn random_state() -> ahash::RandomState {
    ahash::RandomState::with_seeds(0x5eed, 0xe3be, 0x61, 0x7)
}

/// The fastest group table for `key_types`: a single integer or date key is hashed as
/// its native value; integers, dates, decimals, strings and binaries in any combination
/// are kept column-wise ([`ColumnGroupValues`]); anything else goes through the row format.
pub fn new_group_values(key_types: &[DataType]) -> Result<Box<dyn GroupValues>> {
    Ok(match key_types {
        [DataType::Int8] => Box::new(PrimitiveGroupValues::<Int8Type>::default()),
        [DataType::Int16] => Box::new(PrimitiveGroupValues::<Int16Type>::default()),
        [DataType::Int32] => Box::new(PrimitiveGroupValues::<Int32Type>::default()),
        [DataType::Int64] => Box::new(PrimitiveGroupValues::<Int64Type>::default()),
        [DataType::UInt8] => Box::new(PrimitiveGroupValues::<UInt8Type>::default()),
        [DataType::UInt16] => Box::new(PrimitiveGroupValues::<UInt16Type>::default()),
        [DataType::UInt32] => Box::new(PrimitiveGroupValues::<UInt32Type>::default()),
        [DataType::UInt64] => Box::new(PrimitiveGroupValues::<UInt64Type>::default()),
        [DataType::Date32] => Box::new(PrimitiveGroupValues::<Date32Type>::default()),
        [DataType::Date64] => Box::new(PrimitiveGroupValues::<Date64Type>::default()),
        _ if group_columns::supports(key_types) => Box::new(ColumnGroupValues::try_new(key_types)?),
        _ => Box::new(RowGroupValues::try_new(key_types)?),
    })
}

/// Any number and type of key columns, encoded with `arrow-row` into one byte string per
/// row: one hash and one `memcmp` per row.
pub struct RowGroupValues {
    converter: RowConverter,
    /// The key of group `i` is `keys.row(i)`.
    keys: Rows,
    /// Table entries carry the hash so probing rarely touches `keys`.
    table: HashTable<(u64, usize)>,
    random: ahash::RandomState,
}

impl RowGroupValues {
    pub fn try_new(key_types: &[DataType]) -> Result<Self> {
        let converter = RowConverter::new(
            key_types
                .iter()
                .map(|t| SortField::new(t.clone()))
                .collect(),
        )?;
        let keys = converter.empty_rows(0, 0);
        Ok(RowGroupValues {
            converter,
            keys,
            table: HashTable::new(),
            random: random_state(),
        })
    }
}

impl GroupValues for RowGroupValues {
    fn intern(&mut self, columns: &[ArrayRef], groups: &mut Vec<usize>) -> Result<()> {
        let rows = self.converter.convert_columns(columns)?;
        groups.clear();
        groups.reserve(rows.num_rows());
        let RowGroupValues {
            keys,
            table,
            random,
            ..
        } = self;
        for (i, row) in rows.iter().enumerate() {
            // A key repeated on consecutive rows (clustered input) reuses the previous group.
            if i > 0 && rows.row(i - 1) == row {
                if let Some(&g) = groups.last() {
                    groups.push(g);
                    continue;
                }
            }
            let hash = random.hash_one(row.data());
            let group = match table.find(hash, |&(h, g)| h == hash && keys.row(g) == row) {
                Some(&(_, g)) => g,
                None => {
                    let g = keys.num_rows();
                    keys.push(row);
                    table.insert_unique(hash, (hash, g), |&(h, _)| h);
                    g
                }
            };
            groups.push(group);
        }
        Ok(())
    }

    fn num_groups(&self) -> usize {
        self.keys.num_rows()
    }

    fn emit(&self) -> Result<Vec<ArrayRef>> {
        Ok(self.converter.convert_rows(self.keys.iter())?)
    }

    fn size(&self) -> usize {
        self.keys.size() + self.table.capacity() * std::mem::size_of::<(u64, usize)>()
    }
}

/// One integer-like key column: the table holds (value, group) pairs, so a lookup touches
/// one cache line, and NULL is its own group.
pub struct PrimitiveGroupValues<T: ArrowPrimitiveType> {
    values: Vec<T::Native>,
    null_group: Option<usize>,
    table: HashTable<(T::Native, usize)>,
    random: ahash::RandomState,
    data_type: Option<DataType>,
}

impl<T: ArrowPrimitiveType> Default for PrimitiveGroupValues<T> {
    fn default() -> Self {
        PrimitiveGroupValues {
            values: Vec::new(),
            null_group: None,
            table: HashTable::new(),
            random: random_state(),
            data_type: None,
        }
    }
}

impl<T> GroupValues for PrimitiveGroupValues<T>
where
    T: ArrowPrimitiveType,
    T::Native: Hash + Eq,
{
    fn intern(&mut self, columns: &[ArrayRef], groups: &mut Vec<usize>) -> Result<()> {
        let [column] = columns else {
            return Err(EmberError::Internal(format!(
                "single-key group table given {} key columns",
                columns.len()
            )));
        };
        let keys = column.as_primitive_opt::<T>().ok_or_else(|| {
            EmberError::Internal(format!(
                "group key of type {} in a {} table",
                column.data_type(),
                T::DATA_TYPE
            ))
        })?;
        if self.data_type.is_none() {
            self.data_type = Some(column.data_type().clone());
        }
        groups.clear();
        groups.reserve(keys.len());
        let PrimitiveGroupValues {
            values,
            null_group,
            table,
            random,
            ..
        } = self;
        // Sorted or clustered input (lineitem by l_orderkey) repeats a key on consecutive
        // rows: the previous row's group is reused without hashing or probing, which also
        // keeps a table larger than the cache off the path.
        let mut previous: Option<(T::Native, usize)> = None;
        let mut lookup = |values: &mut Vec<T::Native>, v: T::Native| -> usize {
            if let Some((k, g)) = previous {
                if k == v {
                    return g;
                }
            }
            let hash = random.hash_one(v);
            // One probe whether the key is new or not (`find` then `insert_unique` probed
            // twice for every new group: most rows of a high-cardinality key).
            let group = match table.entry(hash, |&(k, _)| k == v, |(k, _)| random.hash_one(k)) {
                Entry::Occupied(entry) => entry.get().1,
                Entry::Vacant(slot) => {
                    let g = values.len();
                    values.push(v);
                    slot.insert((v, g));
                    g
                }
            };
            previous = Some((v, group));
            group
        };
        match keys.nulls().filter(|n| n.null_count() > 0) {
            None => groups.extend(keys.values().iter().map(|&v| lookup(values, v))),
            Some(nulls) => {
                for (i, &v) in keys.values().iter().enumerate() {
                    let group = if nulls.is_null(i) {
                        *null_group.get_or_insert_with(|| {
                            values.push(T::Native::default());
                            values.len() - 1
                        })
                    } else {
                        lookup(values, v)
                    };
                    groups.push(group);
                }
            }
        }
        Ok(())
    }

    fn num_groups(&self) -> usize {
        self.values.len()
    }

    fn emit(&self) -> Result<Vec<ArrayRef>> {
        let nulls = self.null_group.map(|ng| {
            NullBuffer::from(
                (0..self.values.len())
                    .map(|g| g != ng)
                    .collect::<Vec<bool>>(),
            )
        });
        let array = PrimitiveArray::<T>::new(self.values.clone().into(), nulls)
            .with_data_type(self.data_type.clone().unwrap_or(T::DATA_TYPE));
        Ok(vec![Arc::new(array)])
    }

    fn size(&self) -> usize {
        self.values.capacity() * std::mem::size_of::<T::Native>()
            + self.table.capacity() * std::mem::size_of::<(T::Native, usize)>()
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int32Array, Int64Array, StringArray};

    use super::*;

    #[test]
    fn numbers_groups_in_first_seen_order_across_batches() {
        let mut g = new_group_values(&[DataType::Utf8, DataType::Int64]).unwrap();
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
        assert_eq!(g.num_groups(), 4);
        let keys = g.emit().unwrap();
        let names = keys[0].as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(
            names.iter().collect::<Vec<_>>(),
            vec![Some("x"), Some("y"), None, Some("x")]
        );
    }

    #[test]
    fn repeated_consecutive_keys_reuse_their_group_and_nulls_do_not_confuse_it() {
        for key_types in [
            vec![DataType::Int64],
            vec![DataType::Int64, DataType::Int64],
        ] {
            let mut g = new_group_values(&key_types).unwrap();
            let mut out = Vec::new();
            let b1: ArrayRef = Arc::new(Int64Array::from(vec![
                Some(7),
                Some(7),
                None,
                Some(7),
                Some(3),
                Some(3),
                Some(7),
            ]));
            let columns = vec![b1; key_types.len()];
            g.intern(&columns, &mut out).unwrap();
            assert_eq!(out, vec![0, 0, 1, 0, 2, 2, 0], "{key_types:?}");
            // The next batch starts without a previous row: 3 is found in the table.
            let b2: ArrayRef = Arc::new(Int64Array::from(vec![3, 3, 9]));
            let columns = vec![b2; key_types.len()];
            g.intern(&columns, &mut out).unwrap();
            assert_eq!(out, vec![2, 2, 3], "{key_types:?}");
            assert_eq!(g.num_groups(), 4);
        }
    }

    #[test]
    fn single_integer_keys_use_the_primitive_table_with_a_null_group() {
        let mut g = new_group_values(&[DataType::Int32]).unwrap();
        let mut out = Vec::new();
        let b1: ArrayRef = Arc::new(Int32Array::from(vec![Some(5), None, Some(5), Some(-1)]));
        g.intern(&[b1], &mut out).unwrap();
        assert_eq!(out, vec![0, 1, 0, 2]);
        let b2: ArrayRef = Arc::new(Int32Array::from(vec![None, Some(-1), Some(9)]));
        g.intern(&[b2], &mut out).unwrap();
        assert_eq!(out, vec![1, 2, 3]);
        let keys = g.emit().unwrap();
        let keys = keys[0].as_any().downcast_ref::<Int32Array>().unwrap();
        assert_eq!(
            keys.iter().collect::<Vec<_>>(),
            vec![Some(5), None, Some(-1), Some(9)]
        );
    }
}
