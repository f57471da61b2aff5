//! The key set of a dynamic join filter: the distinct non-NULL keys of the join's source side,
//! probed once per row of the filtered side — on TPC-H Q17, 12 M probes against 204 part keys,
//! so the probe's speed is the filter's cost.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, BooleanBufferBuilder, Int64Array};
use arrow::buffer::{BooleanBuffer, NullBuffer};
use arrow::compute::{cast_with_options, CastOptions};
use arrow::datatypes::{DataType, Int64Type};
use arrow::row::{RowConverter, SortField};
use hashbrown::HashSet;

use ember_planner::expr::Expr;
use ember_planner::physical::PhysicalPlan;
use ember_planner::{EmberError, Result};

use super::check_cancelled;
use super::hash_join::broadcast_partitions;
use crate::context::TaskContext;
use crate::expr::create_physical_exprs;

/// The distinct non-NULL keys of the source side.
pub(crate) enum KeySet {
    /// One integer key, widened to `i64`.
    Int(IntKeys),
    /// Two integer keys (TPC-H's `(partkey, suppkey)`), widened to `i64` and packed into one
    /// `u128`: a hash of 16 bytes per probe, where the arrow-row encoding of the pair cost a
    /// row conversion per batch, a boxed key per entry and a byte-slice hash per probe (Q9 at
    /// SF 10 filters 8 M partsupp rows by 3.3 M lineitem pairs).
    IntPair(HashSet<u128>),
    /// Any keys, as arrow-row encodings of the source's key types.
    Rows {
        converter: RowConverter,
        types: Vec<DataType>,
        set: HashSet<Box<[u8]>>,
    },
}

fn is_small_integer(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
    )
}

/// `array` as `to`; values that do not fit become NULL (they cannot equal any source key).
fn cast_keys(array: &ArrayRef, to: &DataType) -> Result<ArrayRef> {
    if array.data_type() == to {
        return Ok(Arc::clone(array));
    }
    let options = CastOptions {
        safe: true,
        ..Default::default()
    };
    Ok(cast_with_options(array, to, &options)?)
}

impl KeySet {
    pub(crate) fn build(
        source: &Arc<PhysicalPlan>,
        keys: &[Expr],
        ctx: &Arc<TaskContext>,
    ) -> Result<Self> {
        let exprs = create_physical_exprs(keys, source.schema(), &ctx.functions)?;
        let types: Vec<DataType> = exprs.iter().map(|e| e.data_type().clone()).collect();
        let mut set = if types.len() == 1 && is_small_integer(&types[0]) {
            KeySet::Int(IntKeys::Sparse(HashSet::new()))
        } else if types.len() == 2 && types.iter().all(is_small_integer) {
            KeySet::IntPair(HashSet::new())
        } else {
            KeySet::Rows {
                converter: RowConverter::new(
                    types.iter().map(|t| SortField::new(t.clone())).collect(),
                )?,
                types,
                set: HashSet::new(),
            }
        };
        for p in broadcast_partitions(source) {
            for batch in super::execute(source, p, ctx)? {
                check_cancelled(ctx)?;
                let batch = batch?;
                let arrays = exprs
                    .iter()
                    .map(|e| e.evaluate(&batch))
                    .collect::<Result<Vec<_>>>()?;
                set.insert(&arrays)?;
            }
        }
        if let KeySet::Int(keys) = &mut set {
            keys.densify();
        }
        Ok(set)
    }

    fn insert(&mut self, arrays: &[ArrayRef]) -> Result<()> {
        match self {
            KeySet::Int(IntKeys::Sparse(set)) => {
                let keys = cast_keys(&arrays[0], &DataType::Int64)?;
                set.extend(keys.as_primitive::<Int64Type>().iter().flatten());
            }
            KeySet::Int(IntKeys::Dense { .. }) => {
                return Err(EmberError::Internal(
                    "keys added to a dynamic filter's key set after it was finished".into(),
                ))
            }
            KeySet::IntPair(set) => {
                let (first, second, valid) = int_pair(arrays)?;
                match valid {
                    None => set.extend(
                        first
                            .values()
                            .iter()
                            .zip(second.values())
                            .map(|(&a, &b)| pack(a, b)),
                    ),
                    Some(valid) => set.extend(
                        valid
                            .valid_indices()
                            .map(|i| pack(first.values()[i], second.values()[i])),
                    ),
                }
            }
            KeySet::Rows { converter, set, .. } => {
                let rows = converter.convert_columns(arrays)?;
                let valid = all_valid(arrays);
                for (i, row) in rows.iter().enumerate() {
                    if valid.as_ref().is_none_or(|v| v.is_valid(i)) {
                        set.insert(row.as_ref().into());
                    }
                }
            }
        }
        Ok(())
    }

    /// Per row of `arrays` (the target's keys): whether the key is in the set.
    pub(crate) fn contains(&self, arrays: &[ArrayRef]) -> Result<BooleanArray> {
        match self {
            KeySet::Int(set) => {
                let keys = cast_keys(&arrays[0], &DataType::Int64)?;
                Ok(set.contains(keys.as_primitive::<Int64Type>()))
            }
            KeySet::IntPair(set) => {
                let (first, second, valid) = int_pair(arrays)?;
                let (first, second) = (first.values(), second.values());
                let found = BooleanBuffer::collect_bool(first.len(), |i| {
                    set.contains(&pack(first[i], second[i]))
                });
                Ok(BooleanArray::new(
                    match valid {
                        Some(valid) => &found & valid.inner(),
                        None => found,
                    },
                    None,
                ))
            }
            KeySet::Rows {
                converter,
                types,
                set,
            } => {
                let cast = arrays
                    .iter()
                    .zip(types)
                    .map(|(a, t)| cast_keys(a, t))
                    .collect::<Result<Vec<_>>>()?;
                let encoded = converter.convert_columns(&cast)?;
                let valid = all_valid(&cast);
                let found = BooleanBuffer::collect_bool(encoded.num_rows(), |i| {
                    valid.as_ref().is_none_or(|v| v.is_valid(i))
                        && set.contains(encoded.row(i).as_ref())
                });
                Ok(BooleanArray::new(found, None))
            }
        }
    }
}

/// Two integer key columns widened to `i64` (values that do not fit become NULL), and which
/// rows have both keys (`None`: all do).
fn int_pair(arrays: &[ArrayRef]) -> Result<(Int64Array, Int64Array, Option<NullBuffer>)> {
    let [first, second] = arrays else {
        return Err(EmberError::Internal(format!(
            "a pair key set probed with {} key columns",
            arrays.len()
        )));
    };
    let first = cast_keys(first, &DataType::Int64)?;
    let second = cast_keys(second, &DataType::Int64)?;
    let valid = all_valid(&[Arc::clone(&first), Arc::clone(&second)]);
    Ok((
        first.as_primitive::<Int64Type>().clone(),
        second.as_primitive::<Int64Type>().clone(),
        valid,
    ))
}

/// The two keys of a row as one value: each keeps its 64 bits, so distinct pairs stay
/// distinct.
#[inline]
fn pack(first: i64, second: i64) -> u128 {
    (u128::from(first as u64) << 64) | u128::from(second as u64)
}

/// Which rows have no NULL key (valid in all of `arrays`); `None` when none has a NULL.
fn all_valid(arrays: &[ArrayRef]) -> Option<NullBuffer> {
    arrays.iter().fold(None, |acc, a| {
        NullBuffer::union(acc.as_ref(), a.logical_nulls().as_ref())
    })
}

/// One integer key's distinct values.
pub(crate) enum IntKeys {
    /// A hash set (while building, and for keys spread too thin for a bitmap).
    Sparse(HashSet<i64>),
    /// A bitmap over `min ..= min + bits.len() - 1`: a probe is a bounds check and a bit
    /// test, several times faster than hashing (dense surrogate keys are the common case).
    Dense { min: i64, bits: BooleanBuffer },
}

/// A bitmap is used when the keys' range has at most this many values...
const DENSE_MIN_RANGE: u64 = 1 << 20;
/// ...or at most this many per key (a bitmap then costs at most 8 bytes a key).
const DENSE_VALUES_PER_KEY: u64 = 64;

impl IntKeys {
    /// Turns a set whose keys are dense enough into a bitmap.
    fn densify(&mut self) {
        let IntKeys::Sparse(set) = self else {
            return;
        };
        let (Some(&min), Some(&max)) = (set.iter().min(), set.iter().max()) else {
            return;
        };
        let range = max.abs_diff(min).saturating_add(1);
        if range > DENSE_MIN_RANGE.max(DENSE_VALUES_PER_KEY * set.len() as u64) {
            return;
        }
        let mut bits = BooleanBufferBuilder::new(range as usize);
        bits.append_n(range as usize, false);
        for &k in set.iter() {
            bits.set_bit(k.abs_diff(min) as usize, true);
        }
        *self = IntKeys::Dense {
            min,
            bits: bits.finish(),
        };
    }

    /// Per key of `keys`: whether it is in the set (NULL never is).
    fn contains(&self, keys: &Int64Array) -> BooleanArray {
        let values = keys.values();
        let found = match self {
            IntKeys::Sparse(set) => {
                BooleanBuffer::collect_bool(values.len(), |i| set.contains(&values[i]))
            }
            IntKeys::Dense { min, bits } => {
                let len = bits.len() as u64;
                BooleanBuffer::collect_bool(values.len(), |i| {
                    let offset = values[i].wrapping_sub(*min) as u64;
                    // SAFETY: `offset < len`, the bitmap's length, is checked first.
                    offset < len && unsafe { bits.value_unchecked(offset as usize) }
                })
            }
        };
        let found = match keys.nulls() {
            Some(nulls) => &found & nulls.inner(),
            None => found,
        };
        BooleanArray::new(found, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_of(values: &[i64]) -> IntKeys {
        let mut keys = IntKeys::Sparse(values.iter().copied().collect());
        keys.densify();
        keys
    }

    fn probe(keys: &IntKeys, values: Vec<Option<i64>>) -> Vec<bool> {
        let found = keys.contains(&Int64Array::from(values));
        found.iter().map(|b| b.unwrap()).collect()
    }

    #[test]
    fn dense_keys_become_a_bitmap_that_answers_like_the_set() {
        let values = [5, 7, 8, 1_000];
        let keys = keys_of(&values);
        assert!(matches!(keys, IntKeys::Dense { min: 5, .. }));
        let probes = vec![
            Some(4),
            Some(5),
            Some(6),
            Some(8),
            Some(1_000),
            Some(1_001),
            None,
            Some(i64::MIN),
            Some(i64::MAX),
            Some(-5),
        ];
        let want: Vec<bool> = probes
            .iter()
            .map(|p| p.is_some_and(|p| values.contains(&p)))
            .collect();
        assert_eq!(probe(&keys, probes), want);
    }

    #[test]
    fn keys_spread_too_thin_stay_a_hash_set_and_answer_the_same() {
        let values = [i64::MIN, -3, 0, 1 << 40, i64::MAX];
        let keys = keys_of(&values);
        assert!(matches!(keys, IntKeys::Sparse(_)));
        let probes = vec![
            Some(i64::MIN),
            Some(-3),
            Some(-2),
            None,
            Some(1 << 40),
            Some(1),
        ];
        assert_eq!(
            probe(&keys, probes),
            vec![true, true, false, false, true, false]
        );
    }

    #[test]
    fn integer_pairs_match_exactly_the_source_pairs_of_any_integer_width() {
        use arrow::array::{Int32Array, UInt16Array};
        let source: [ArrayRef; 2] = [
            Arc::new(Int64Array::from(vec![
                Some(1),
                Some(1),
                Some(-7),
                None,
                Some(i64::MAX),
            ])),
            Arc::new(Int32Array::from(vec![
                Some(2),
                Some(3),
                Some(4),
                Some(5),
                Some(-1),
            ])),
        ];
        let mut set = KeySet::IntPair(HashSet::new());
        set.insert(&source).unwrap();
        let KeySet::IntPair(pairs) = &set else {
            unreachable!()
        };
        assert_eq!(pairs.len(), 4, "the pair with a NULL key is left out");
        let probe: [ArrayRef; 2] = [
            Arc::new(Int32Array::from(vec![
                Some(1),
                Some(1),
                Some(2),
                Some(-7),
                None,
                Some(1),
                Some(3),
            ])),
            Arc::new(UInt16Array::from(vec![
                Some(2),
                Some(3),
                Some(1),
                Some(4),
                Some(5),
                None,
                Some(2),
            ])),
        ];
        let found = |probe: &[ArrayRef]| -> Vec<bool> {
            let found = set.contains(probe).unwrap();
            found.iter().map(|b| b.unwrap()).collect()
        };
        // (1,2) and (1,3) are there, (2,1) is not (order matters), (-7,4) is; NULLs never
        // match, and (3,2) mixes two source rows.
        assert_eq!(
            found(&probe),
            vec![true, true, false, true, false, false, false]
        );
        // i64::MAX in the first key and -1 in the second keep all their bits.
        let extreme: [ArrayRef; 2] = [
            Arc::new(Int64Array::from(vec![i64::MAX, i64::MAX, -1])),
            Arc::new(Int64Array::from(vec![-1, 1, i64::MAX])),
        ];
        assert_eq!(found(&extreme), vec![true, false, false]);
    }

    #[test]
    fn an_empty_set_matches_nothing() {
        let keys = keys_of(&[]);
        assert_eq!(probe(&keys, vec![Some(0), None]), vec![false, false]);
    }
}
