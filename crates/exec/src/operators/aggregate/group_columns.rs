//! Several key columns of common types, kept column by column.
//!
//! The row format ([`super::group_values::RowGroupValues`]) encodes every input row into a
//! byte string before hashing it — Q1's two one-letter string keys cost more to encode
//! than to aggregate. Here a batch is hashed column at a time (`create_hashes`), each
//! row is matched to a group by hash alone, and the matches are then verified column at a
//! time against the groups' stored keys: one dynamic call per column and batch, and only
//! a new group's key is copied.
//!
//! ```text
//!   hashes ──probe by hash──► candidate group per row (new groups appended on the way)
//!          ──verify column by column──► rows whose candidate differs (hash collisions)
//!          ──slow path: probe with a full key comparison, append if still missing
//! ```

use std::sync::Arc;

use arrow::array::{
    make_view, Array, ArrayRef, AsArray, BinaryArray, BinaryViewArray, GenericByteViewArray,
    LargeBinaryArray, LargeStringArray, PrimitiveArray, StringArray, StringViewArray,
    MAX_INLINE_VIEW_LEN,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{
    ArrowPrimitiveType, ByteViewType, DataType, Date32Type, Date64Type, Decimal128Type, Int16Type,
    Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use datafusion_common::hash_utils::{create_hashes, RandomState};
use hashbrown::HashTable;

use ember_planner::{EmberError, Result};

use super::group_values::GroupValues;

/// Not the seed of the hash shuffle or the join: within one partition of a hash exchange
/// those hashes share their low bits, which would crowd this table's buckets.
const GROUP_HASH_STATE: RandomState = RandomState::with_seed(0x6167_675f_6b65_7973);

/// Whether every key type has a column-wise store (otherwise use the row format).
pub fn supports(key_types: &[DataType]) -> bool {
    key_types.iter().all(|t| new_key_column(t).is_some())
}

/// The stored keys of one group column.
trait KeyColumn: Send {
    /// Appends row `row` of `array` as the key of the next group.
    fn append(&mut self, array: &dyn Array, row: usize) -> Result<()>;
    /// For each `(row, group)` pair still marked equal, whether row `row` of `array`
    /// equals the key of `group`; clears the mark where it does not.
    fn verify(&self, array: &dyn Array, pairs: &[(usize, usize)], equal: &mut [bool])
        -> Result<()>;
    /// Whether row `row` of `array` equals the key of `group` (the collision slow path).
    fn equals(&self, array: &dyn Array, row: usize, group: usize) -> Result<bool>;
    /// All groups' keys.
    fn emit(&self) -> Result<ArrayRef>;
    fn size(&self) -> usize;
}

fn new_key_column(t: &DataType) -> Option<Box<dyn KeyColumn>> {
    let t = t.clone();
    Some(match &t {
        DataType::Int8 => Box::new(PrimitiveKeys::<Int8Type>::new(t)),
        DataType::Int16 => Box::new(PrimitiveKeys::<Int16Type>::new(t)),
        DataType::Int32 => Box::new(PrimitiveKeys::<Int32Type>::new(t)),
        DataType::Int64 => Box::new(PrimitiveKeys::<Int64Type>::new(t)),
        DataType::UInt8 => Box::new(PrimitiveKeys::<UInt8Type>::new(t)),
        DataType::UInt16 => Box::new(PrimitiveKeys::<UInt16Type>::new(t)),
        DataType::UInt32 => Box::new(PrimitiveKeys::<UInt32Type>::new(t)),
        DataType::UInt64 => Box::new(PrimitiveKeys::<UInt64Type>::new(t)),
        DataType::Date32 => Box::new(PrimitiveKeys::<Date32Type>::new(t)),
        DataType::Date64 => Box::new(PrimitiveKeys::<Date64Type>::new(t)),
        DataType::Decimal128(_, _) => Box::new(PrimitiveKeys::<Decimal128Type>::new(t)),
        DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView => Box::new(BytesKeys::new(t)),
        _ => return None,
    })
}

/// Group keys of several supported columns (see [`supports`]).
pub struct ColumnGroupValues {
    columns: Vec<Box<dyn KeyColumn>>,
    /// (hash, group); several groups may share a hash.
    table: HashTable<(u64, usize)>,
    num_groups: usize,
    hashes: Vec<u64>,
    /// (row, candidate group) of the rows matched by hash only, in the current batch.
    pairs: Vec<(usize, usize)>,
    equal: Vec<bool>,
}

impl ColumnGroupValues {
    pub fn try_new(key_types: &[DataType]) -> Result<Self> {
        let columns = key_types
            .iter()
            .map(|t| {
                new_key_column(t).ok_or_else(|| {
                    EmberError::Internal(format!("no column-wise group key store for {t}"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ColumnGroupValues {
            columns,
            table: HashTable::new(),
            num_groups: 0,
            hashes: Vec::new(),
            pairs: Vec::new(),
            equal: Vec::new(),
        })
    }

    fn append_group(&mut self, arrays: &[ArrayRef], row: usize, hash: u64) -> Result<usize> {
        for (column, array) in self.columns.iter_mut().zip(arrays) {
            column.append(array.as_ref(), row)?;
        }
        let g = self.num_groups;
        self.num_groups += 1;
        self.table.insert_unique(hash, (hash, g), |&(h, _)| h);
        Ok(g)
    }

    fn row_equals(&self, arrays: &[ArrayRef], row: usize, group: usize) -> Result<bool> {
        for (column, array) in self.columns.iter().zip(arrays) {
            if !column.equals(array.as_ref(), row, group)? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

impl GroupValues for ColumnGroupValues {
    fn intern(&mut self, columns: &[ArrayRef], groups: &mut Vec<usize>) -> Result<()> {
        if columns.len() != self.columns.len() {
            return Err(EmberError::Internal(format!(
                "group table of {} key columns given {}",
                self.columns.len(),
                columns.len()
            )));
        }
        let rows = columns.first().map_or(0, |c| c.len());
        groups.clear();
        if rows == 0 {
            return Ok(());
        }
        let mut hashes = std::mem::take(&mut self.hashes);
        hashes.clear();
        hashes.resize(rows, 0);
        create_hashes(columns, &GROUP_HASH_STATE, &mut hashes)?;

        // 1. Candidate group by hash; a row whose hash is new starts a group of its own.
        let mut pairs = std::mem::take(&mut self.pairs);
        pairs.clear();
        for (row, &hash) in hashes.iter().enumerate() {
            let group = match self.table.find(hash, |&(h, _)| h == hash) {
                Some(&(_, g)) => {
                    pairs.push((row, g));
                    g
                }
                None => self.append_group(columns, row, hash)?,
            };
            groups.push(group);
        }

        // 2. Verify the hash matches column by column.
        let mut equal = std::mem::take(&mut self.equal);
        equal.clear();
        equal.resize(pairs.len(), true);
        for (column, array) in self.columns.iter().zip(columns) {
            column.verify(array.as_ref(), &pairs, &mut equal)?;
        }

        // 3. Hash collisions: find the group with the full key, or start one.
        for (&(row, _), _) in pairs.iter().zip(&equal).filter(|(_, &eq)| !eq) {
            let hash = hashes[row];
            let found = {
                let mut found = None;
                for &(h, g) in self.table.iter_hash(hash) {
                    if h == hash && self.row_equals(columns, row, g)? {
                        found = Some(g);
                        break;
                    }
                }
                found
            };
            groups[row] = match found {
                Some(g) => g,
                None => self.append_group(columns, row, hash)?,
            };
        }
        self.hashes = hashes;
        self.pairs = pairs;
        self.equal = equal;
        Ok(())
    }

    fn num_groups(&self) -> usize {
        self.num_groups
    }

    fn emit(&self) -> Result<Vec<ArrayRef>> {
        self.columns.iter().map(|c| c.emit()).collect()
    }

    fn size(&self) -> usize {
        self.columns.iter().map(|c| c.size()).sum::<usize>()
            + self.table.capacity() * std::mem::size_of::<(u64, usize)>()
            + self.hashes.capacity() * 8
            + self.pairs.capacity() * std::mem::size_of::<(usize, usize)>()
            + self.equal.capacity()
    }
}

fn downcast_error(expected: &DataType, got: &DataType) -> EmberError {
    EmberError::Internal(format!(
        "group key of type {got} in a {expected} key column"
    ))
}

/// Keys of a primitive column; a NULL key is stored as the default value with `valid` false.
struct PrimitiveKeys<T: ArrowPrimitiveType> {
    data_type: DataType,
    values: Vec<T::Native>,
    valid: Vec<bool>,
}

impl<T: ArrowPrimitiveType> PrimitiveKeys<T> {
    fn new(data_type: DataType) -> Self {
        PrimitiveKeys {
            data_type,
            values: Vec::new(),
            valid: Vec::new(),
        }
    }

    fn array<'a>(&self, array: &'a dyn Array) -> Result<&'a PrimitiveArray<T>> {
        array
            .as_primitive_opt::<T>()
            .ok_or_else(|| downcast_error(&self.data_type, array.data_type()))
    }
}

impl<T: ArrowPrimitiveType> KeyColumn for PrimitiveKeys<T> {
    fn append(&mut self, array: &dyn Array, row: usize) -> Result<()> {
        let array = self.array(array)?;
        let valid = array.is_valid(row);
        self.values.push(if valid {
            array.value(row)
        } else {
            T::Native::default()
        });
        self.valid.push(valid);
        Ok(())
    }

    fn verify(
        &self,
        array: &dyn Array,
        pairs: &[(usize, usize)],
        equal: &mut [bool],
    ) -> Result<()> {
        let array = self.array(array)?;
        let values = array.values();
        match array.nulls().filter(|n| n.null_count() > 0) {
            None => {
                for (&(row, g), eq) in pairs.iter().zip(equal.iter_mut()) {
                    *eq &= self.valid[g] && self.values[g] == values[row];
                }
            }
            Some(nulls) => {
                for (&(row, g), eq) in pairs.iter().zip(equal.iter_mut()) {
                    let valid = nulls.is_valid(row);
                    *eq &= self.valid[g] == valid && (!valid || self.values[g] == values[row]);
                }
            }
        }
        Ok(())
    }

    fn equals(&self, array: &dyn Array, row: usize, group: usize) -> Result<bool> {
        let array = self.array(array)?;
        let valid = array.is_valid(row);
        Ok(self.valid[group] == valid && (!valid || self.values[group] == array.value(row)))
    }

    fn emit(&self) -> Result<ArrayRef> {
        let nulls = NullBuffer::from(self.valid.clone());
        let nulls = (nulls.null_count() > 0).then_some(nulls);
        Ok(Arc::new(
            PrimitiveArray::<T>::new(self.values.clone().into(), nulls)
                .with_data_type(self.data_type.clone()),
        ))
    }

    fn size(&self) -> usize {
        self.values.capacity() * std::mem::size_of::<T::Native>() + self.valid.capacity()
    }
}

/// Keys of a string or binary column (any offset size or view), as concatenated bytes.
struct BytesKeys {
    data_type: DataType,
    /// Group `g`'s key is `data[offsets[g]..offsets[g + 1]]`.
    offsets: Vec<usize>,
    data: Vec<u8>,
    valid: Vec<bool>,
    /// Group `g`'s key as the head of an Arrow view ([`view_head`]), so that a view column's
    /// rows are checked against it with one 16-byte compare: the whole key when it is at
    /// most 12 bytes (flags, codes, short names: most group keys), else its length and
    /// first 4 bytes, which reject nearly every mismatch before the bytes are compared.
    heads: Vec<u128>,
}

/// Longest value an Arrow view holds inline.
const INLINE_VIEW_MAX: usize = MAX_INLINE_VIEW_LEN as usize;

/// The part of an Arrow view that depends only on the value: the whole view for values of
/// at most [`INLINE_VIEW_MAX`] bytes (length, then the bytes, zero padded), else the low 8
/// bytes (length and 4-byte prefix; buffer index and offset zero).
fn view_head(value: &[u8]) -> u128 {
    make_view(value, 0, 0)
}

/// [`view_head`] of the value a view `view` describes, read from the view alone.
fn head_of_view(view: u128) -> u128 {
    let len = view as u32 as usize;
    if len <= INLINE_VIEW_MAX {
        // Arrow requires (and validates) zero padding after an inline value.
        view
    } else {
        view & u128::from(u64::MAX)
    }
}

/// One row's bytes, or `None` for NULL, of any supported string or binary array.
fn bytes_at(array: &dyn Array, row: usize) -> Option<Option<&[u8]>> {
    if array.is_null(row) {
        return Some(None);
    }
    let any = array.as_any();
    let value: &[u8] = if let Some(a) = any.downcast_ref::<StringArray>() {
        a.value(row).as_bytes()
    } else if let Some(a) = any.downcast_ref::<StringViewArray>() {
        a.value(row).as_bytes()
    } else if let Some(a) = any.downcast_ref::<LargeStringArray>() {
        a.value(row).as_bytes()
    } else if let Some(a) = any.downcast_ref::<BinaryArray>() {
        a.value(row)
    } else if let Some(a) = any.downcast_ref::<BinaryViewArray>() {
        a.value(row)
    } else if let Some(a) = any.downcast_ref::<LargeBinaryArray>() {
        a.value(row)
    } else {
        return None;
    };
    Some(Some(value))
}

impl BytesKeys {
    fn new(data_type: DataType) -> Self {
        BytesKeys {
            data_type,
            offsets: vec![0],
            data: Vec::new(),
            valid: Vec::new(),
            heads: Vec::new(),
        }
    }

    /// [`KeyColumn::verify`] for a view array: the row's view against the group's head, and
    /// the bytes only for long values whose length and prefix match.
    fn verify_views<T: ByteViewType + ?Sized>(
        &self,
        array: &GenericByteViewArray<T>,
        pairs: &[(usize, usize)],
        equal: &mut [bool],
    ) {
        let views = array.views();
        let nulls = array.nulls().filter(|n| n.null_count() > 0);
        for (&(row, g), eq) in pairs.iter().zip(equal.iter_mut()) {
            if !*eq {
                continue;
            }
            if nulls.is_some_and(|n| n.is_null(row)) {
                *eq = !self.valid[g];
                continue;
            }
            let view = views[row];
            *eq = self.valid[g]
                && head_of_view(view) == self.heads[g]
                && (view as u32 as usize <= INLINE_VIEW_MAX
                    || self.key(g) == Some(array.value(row).as_ref()));
        }
    }

    fn key(&self, group: usize) -> Option<&[u8]> {
        self.valid[group].then(|| &self.data[self.offsets[group]..self.offsets[group + 1]])
    }

    fn value<'a>(&self, array: &'a dyn Array, row: usize) -> Result<Option<&'a [u8]>> {
        bytes_at(array, row).ok_or_else(|| downcast_error(&self.data_type, array.data_type()))
    }
}

impl KeyColumn for BytesKeys {
    fn append(&mut self, array: &dyn Array, row: usize) -> Result<()> {
        let value = self.value(array, row)?;
        self.data.extend_from_slice(value.unwrap_or_default());
        self.offsets.push(self.data.len());
        self.valid.push(value.is_some());
        self.heads.push(view_head(value.unwrap_or_default()));
        Ok(())
    }

    fn verify(
        &self,
        array: &dyn Array,
        pairs: &[(usize, usize)],
        equal: &mut [bool],
    ) -> Result<()> {
        // One downcast per batch, then a tight loop over the pairs.
        macro_rules! check {
            ($a:expr, |$r:ident| $bytes:expr) => {{
                let a = $a;
                for (&(row, g), eq) in pairs.iter().zip(equal.iter_mut()) {
                    if *eq {
                        let $r = row;
                        let value = if a.is_valid(row) { Some($bytes) } else { None };
                        *eq = self.key(g) == value;
                    }
                }
            }};
        }
        let any = array.as_any();
        if let Some(a) = any.downcast_ref::<StringViewArray>() {
            self.verify_views(a, pairs, equal)
        } else if let Some(a) = any.downcast_ref::<StringArray>() {
            check!(a, |r| a.value(r).as_bytes())
        } else if let Some(a) = any.downcast_ref::<LargeStringArray>() {
            check!(a, |r| a.value(r).as_bytes())
        } else if let Some(a) = any.downcast_ref::<BinaryViewArray>() {
            self.verify_views(a, pairs, equal)
        } else if let Some(a) = any.downcast_ref::<BinaryArray>() {
            check!(a, |r| a.value(r))
        } else if let Some(a) = any.downcast_ref::<LargeBinaryArray>() {
            check!(a, |r| a.value(r))
        } else {
            return Err(downcast_error(&self.data_type, array.data_type()));
        }
        Ok(())
    }

    fn equals(&self, array: &dyn Array, row: usize, group: usize) -> Result<bool> {
        Ok(self.key(group) == self.value(array, row)?)
    }

    fn emit(&self) -> Result<ArrayRef> {
        let keys = (0..self.valid.len()).map(|g| self.key(g));
        Ok(match &self.data_type {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                let strings = keys
                    .map(|k| k.map(std::str::from_utf8).transpose())
                    .collect::<std::result::Result<Vec<Option<&str>>, _>>()
                    .map_err(|e| {
                        EmberError::Internal(format!("a string group key is not UTF-8: {e}"))
                    })?;
                match &self.data_type {
                    DataType::Utf8 => Arc::new(StringArray::from(strings)) as ArrayRef,
                    DataType::LargeUtf8 => Arc::new(LargeStringArray::from(strings)),
                    _ => Arc::new(StringViewArray::from(strings)),
                }
            }
            DataType::Binary => Arc::new(BinaryArray::from(keys.collect::<Vec<_>>())),
            DataType::LargeBinary => Arc::new(LargeBinaryArray::from(keys.collect::<Vec<_>>())),
            _ => Arc::new(BinaryViewArray::from(keys.collect::<Vec<_>>())),
        })
    }

    fn size(&self) -> usize {
        self.offsets.capacity() * std::mem::size_of::<usize>()
            + self.data.capacity()
            + self.valid.capacity()
            + self.heads.capacity() * std::mem::size_of::<u128>()
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Date32Array, Int64Array};

    use super::*;

    fn utf8(values: &[Option<&str>]) -> ArrayRef {
        Arc::new(StringArray::from(values.to_vec()))
    }

    fn view(values: &[Option<&str>]) -> ArrayRef {
        Arc::new(StringViewArray::from(values.to_vec()))
    }

    #[test]
    fn string_and_number_keys_group_in_first_seen_order_with_nulls() {
        let types = [DataType::Utf8View, DataType::Int64, DataType::Utf8];
        assert!(supports(&types));
        let mut g = ColumnGroupValues::try_new(&types).unwrap();
        let mut out = Vec::new();
        let b1 = vec![
            view(&[Some("A"), Some("N"), Some("A"), None, Some("A")]),
            Arc::new(Int64Array::from(vec![
                Some(1),
                Some(1),
                Some(1),
                Some(1),
                None,
            ])) as ArrayRef,
            utf8(&[Some("x"), Some("x"), Some("x"), Some("x"), Some("x")]),
        ];
        g.intern(&b1, &mut out).unwrap();
        assert_eq!(out, vec![0, 1, 0, 2, 3]);
        let b2 = vec![
            view(&[None, Some("A"), Some("A")]),
            Arc::new(Int64Array::from(vec![Some(1), None, Some(1)])) as ArrayRef,
            utf8(&[Some("x"), Some("x"), Some("y")]),
        ];
        g.intern(&b2, &mut out).unwrap();
        assert_eq!(out, vec![2, 3, 4]);
        let keys = g.emit().unwrap();
        assert_eq!(keys[0].data_type(), &DataType::Utf8View);
        assert_eq!(
            keys[0].as_string_view().iter().collect::<Vec<_>>(),
            vec![Some("A"), Some("N"), None, Some("A"), Some("A")]
        );
        assert_eq!(
            keys[1]
                .as_primitive::<Int64Type>()
                .iter()
                .collect::<Vec<_>>(),
            vec![Some(1), Some(1), Some(1), None, Some(1)]
        );
        assert_eq!(
            keys[2].as_string::<i32>().iter().collect::<Vec<_>>(),
            vec![Some("x"), Some("x"), Some("x"), Some("x"), Some("y")]
        );
    }

    #[test]
    fn rows_with_equal_hashes_but_different_keys_get_their_own_groups() {
        let types = [DataType::Date32, DataType::Utf8];
        let batch = |d: Vec<i32>, s: &[Option<&str>]| {
            vec![Arc::new(Date32Array::from(d)) as ArrayRef, utf8(s)]
        };
        let hash_of = |b: &[ArrayRef]| {
            let mut h = vec![0u64; 1];
            create_hashes(b, &GROUP_HASH_STATE, &mut h).unwrap();
            h[0]
        };
        // Re-keys every group under one hash, as if all keys collided with it.
        let collide = |g: &mut ColumnGroupValues, hash: u64| {
            let groups: Vec<usize> = g.table.iter().map(|&(_, grp)| grp).collect();
            g.table.clear();
            for grp in groups {
                g.table.insert_unique(hash, (hash, grp), |&(h, _)| h);
            }
        };
        let mut g = ColumnGroupValues::try_new(&types).unwrap();
        let mut out = Vec::new();
        let first = batch(vec![10, 10, 11], &[Some("a"), Some("b"), Some("a")]);
        g.intern(&first, &mut out).unwrap();
        assert_eq!(out, vec![0, 1, 2]);
        // An existing key among colliding groups is found by its full key.
        let existing = batch(vec![10], &[Some("b")]);
        collide(&mut g, hash_of(&existing));
        g.intern(&existing, &mut out).unwrap();
        assert_eq!(out, vec![1]);
        // A new key whose hash collides with every group starts its own group, once.
        let new = batch(vec![12], &[None]);
        collide(&mut g, hash_of(&new));
        g.intern(&new, &mut out).unwrap();
        assert_eq!(out, vec![3]);
        g.intern(&new, &mut out).unwrap();
        assert_eq!(out, vec![3]);
        assert_eq!(g.num_groups(), 4);
    }

    #[test]
    fn view_keys_are_told_apart_by_head_and_then_by_bytes_among_colliding_groups() {
        let types = [DataType::Utf8View];
        let keys = [
            Some("shared-prefix-and-length-1"),
            Some("shared-prefix-and-length-2"),
            Some("twelve-bytes"),
            Some("twelve-byteZ"),
            Some(""),
            None,
        ];
        let mut g = ColumnGroupValues::try_new(&types).unwrap();
        let mut out = Vec::new();
        g.intern(&[view(&keys)], &mut out).unwrap();
        assert_eq!(out, vec![0, 1, 2, 3, 4, 5]);
        // Each key, hashed as if it collided with every group, still finds its own group.
        for (expected, key) in keys.iter().enumerate() {
            let row = [view(&[*key])];
            let mut h = vec![0u64; 1];
            create_hashes(&row, &GROUP_HASH_STATE, &mut h).unwrap();
            let groups: Vec<usize> = g.table.iter().map(|&(_, grp)| grp).collect();
            g.table.clear();
            for grp in groups {
                g.table.insert_unique(h[0], (h[0], grp), |&(h, _)| h);
            }
            g.intern(&row, &mut out).unwrap();
            assert_eq!(out, vec![expected], "{key:?}");
        }
        assert_eq!(g.num_groups(), keys.len());
    }
}
