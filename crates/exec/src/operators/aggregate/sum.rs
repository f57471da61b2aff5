//! SUM and AVG. AVG is a SUM plus a COUNT whose quotient is taken at the end, which is also
//! exactly its two-column Partial state.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanBufferBuilder, Decimal128Array, PrimitiveArray,
};
use arrow::buffer::NullBuffer;
use arrow::compute::kernels::numeric::div;
use arrow::datatypes::{ArrowPrimitiveType, DataType, Decimal128Type, Float64Type, Int64Type};

use ember_planner::{EmberError, Result};

use super::accumulator::{coerce, expect_states, GroupsAccumulator};
use super::count::CountAccumulator;
use super::lanes::{add_in_lanes, FEW_GROUPS};

/// A SUM result type's native value: adds that report overflow as a flag, so the per-row
/// loop carries no branch and no error value; the flag is checked once per batch.
pub trait SumNative: Copy + Default {
    /// Whether the sum is the same whatever the order of the adds (integers; not floats),
    /// so rows may be added in lanes ([`super::lanes`]).
    const EXACT: bool;

    /// `self + v`, and whether it overflowed (never, for floats).
    fn overflowing_sum(self, v: Self) -> (Self, bool);
}

macro_rules! integer_sum_native {
    ($($t:ty),*) => {$(
        impl SumNative for $t {
            const EXACT: bool = true;

            #[inline]
            fn overflowing_sum(self, v: Self) -> (Self, bool) {
                self.overflowing_add(v)
            }
        }
    )*};
}
integer_sum_native!(i64, u64, i128);

impl SumNative for f64 {
    const EXACT: bool = false;

    #[inline]
    fn overflowing_sum(self, v: Self) -> (Self, bool) {
        (self + v, false)
    }
}

/// Sums in the SUM result type `T` (Int64, UInt64, Float64 or Decimal128(38, s)); a group
/// that saw no non-NULL value sums to NULL.
pub struct SumAccumulator<T: ArrowPrimitiveType> {
    data_type: DataType,
    sums: Vec<T::Native>,
    /// Groups that saw a non-NULL value, one bit each: with millions of groups the bitmap
    /// stays in cache, where a `Vec<bool>` cost every row a second cache miss.
    seen: BooleanBufferBuilder,
}

impl<T: ArrowPrimitiveType> SumAccumulator<T>
where
    T::Native: SumNative,
{
    pub fn new(data_type: DataType) -> Self {
        SumAccumulator {
            data_type,
            sums: Vec::new(),
            seen: BooleanBufferBuilder::new(0),
        }
    }

    /// Grows the state to `n` groups.
    fn grow(&mut self, n: usize) {
        if self.sums.len() < n {
            self.sums.resize(n, T::Native::default());
        }
        if self.seen.len() < n {
            self.seen.append_n(n - self.seen.len(), false);
        }
    }

    fn add(&mut self, values: &ArrayRef, groups: &[usize], total_groups: usize) -> Result<()> {
        self.grow(total_groups);
        let values = coerce(values, &self.data_type)?;
        let values = values
            .as_primitive_opt::<T>()
            .ok_or_else(|| EmberError::Internal(format!("SUM input is not {}", self.data_type)))?;
        let mut overflowed = false;
        let mut add = |g: usize, v: T::Native| {
            let (sum, o) = self.sums[g].overflowing_sum(v);
            self.sums[g] = sum;
            overflowed |= o;
            self.seen.set_bit(g, true);
        };
        match values.nulls().filter(|n| n.null_count() > 0) {
            None if T::Native::EXACT && total_groups <= FEW_GROUPS => {
                let mut seen = [false; FEW_GROUPS];
                let values = values.values().iter().copied();
                overflowed = add_in_lanes(&mut self.sums, Some(&mut seen), groups, values);
                for (g, _) in seen.iter().enumerate().filter(|(_, &s)| s) {
                    self.seen.set_bit(g, true);
                }
            }
            None => {
                for (&g, &v) in groups.iter().zip(values.values().iter()) {
                    add(g, v);
                }
            }
            Some(nulls) => {
                for (i, (&g, &v)) in groups.iter().zip(values.values().iter()).enumerate() {
                    if nulls.is_valid(i) {
                        add(g, v);
                    }
                }
            }
        }
        if overflowed {
            // The sums are garbage now, but the query fails: nothing reads them.
            return Err(EmberError::Execution(format!(
                "SUM overflowed {}",
                self.data_type
            )));
        }
        Ok(())
    }

    fn take(&mut self, total_groups: usize) -> Result<ArrayRef> {
        self.grow(total_groups);
        let nulls = NullBuffer::new(self.seen.finish());
        let array = PrimitiveArray::<T>::new(std::mem::take(&mut self.sums).into(), Some(nulls))
            .with_data_type(self.data_type.clone());
        Ok(Arc::new(array))
    }
}

impl<T: ArrowPrimitiveType> GroupsAccumulator for SumAccumulator<T>
where
    T::Native: SumNative,
{
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        groups: &[usize],
        total_groups: usize,
    ) -> Result<()> {
        expect_states(values, 1, "SUM arguments")?;
        self.add(&values[0], groups, total_groups)
    }

    fn merge_batch(
        &mut self,
        states: &[ArrayRef],
        groups: &[usize],
        total_groups: usize,
    ) -> Result<()> {
        expect_states(states, 1, "SUM")?;
        self.add(&states[0], groups, total_groups)
    }

    fn evaluate(&mut self, total_groups: usize) -> Result<ArrayRef> {
        self.take(total_groups)
    }

    fn state(&mut self, total_groups: usize) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.take(total_groups)?])
    }

    fn state_columns(&self) -> usize {
        1
    }

    fn size(&self) -> usize {
        self.sums.capacity() * std::mem::size_of::<T::Native>() + self.seen.capacity() / 8
    }
}

/// AVG = SUM / COUNT, as Float64 for integers and floats, and as a decimal with 4 more
/// fractional digits (rounded half away from zero) for decimals.
pub struct AvgAccumulator {
    sum: Box<dyn GroupsAccumulator>,
    count: CountAccumulator,
    sum_type: DataType,
    output_type: DataType,
}

impl AvgAccumulator {
    pub fn try_new(
        sum: Box<dyn GroupsAccumulator>,
        sum_type: DataType,
        output_type: DataType,
    ) -> Result<Self> {
        match (&sum_type, &output_type) {
            (DataType::Decimal128(_, s), DataType::Decimal128(_, out)) if out >= s => {}
            (t, DataType::Float64) if !matches!(t, DataType::Decimal128(_, _)) => {}
            _ => {
                return Err(EmberError::Internal(format!(
                    "AVG cannot turn a {sum_type} sum into {output_type}"
                )))
            }
        }
        Ok(AvgAccumulator {
            sum,
            count: CountAccumulator::new(false),
            sum_type,
            output_type,
        })
    }
}

impl GroupsAccumulator for AvgAccumulator {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        groups: &[usize],
        total_groups: usize,
    ) -> Result<()> {
        self.sum.update_batch(values, groups, total_groups)?;
        self.count.update_batch(values, groups, total_groups)
    }

    fn merge_batch(
        &mut self,
        states: &[ArrayRef],
        groups: &[usize],
        total_groups: usize,
    ) -> Result<()> {
        expect_states(states, 2, "AVG")?;
        self.sum.merge_batch(&states[..1], groups, total_groups)?;
        self.count.merge_batch(&states[1..], groups, total_groups)
    }

    fn evaluate(&mut self, total_groups: usize) -> Result<ArrayRef> {
        let sums = self.sum.evaluate(total_groups)?;
        let counts = self.count.evaluate(total_groups)?;
        let counts = counts.as_primitive::<Int64Type>();
        match (&self.sum_type, &self.output_type) {
            (DataType::Decimal128(_, scale), DataType::Decimal128(p, out_scale)) => {
                decimal_average(
                    sums.as_primitive::<Decimal128Type>(),
                    counts,
                    out_scale - scale,
                )
                .and_then(|a| Ok(a.with_precision_and_scale(*p, *out_scale)?))
                .map(|a| Arc::new(a) as ArrayRef)
            }
            _ => {
                // Groups with count 0 have a NULL sum, so their quotient is NULL too.
                let sums = arrow::compute::cast(&sums, &DataType::Float64)?;
                let counts = arrow::compute::cast(counts, &DataType::Float64)?;
                let avg = div(&sums, &counts)?;
                debug_assert_eq!(avg.data_type(), &Float64Type::DATA_TYPE);
                Ok(avg)
            }
        }
    }

    fn state(&mut self, total_groups: usize) -> Result<Vec<ArrayRef>> {
        let mut state = self.sum.state(total_groups)?;
        state.extend(self.count.state(total_groups)?);
        Ok(state)
    }

    fn state_columns(&self) -> usize {
        2
    }

    fn size(&self) -> usize {
        self.sum.size() + self.count.size()
    }
}

/// `sum / count` with `extra_digits` more fractional digits, rounded half away from zero.
fn decimal_average(
    sums: &PrimitiveArray<Decimal128Type>,
    counts: &PrimitiveArray<Int64Type>,
    extra_digits: i8,
) -> Result<Decimal128Array> {
    let factor = 10i128
        .checked_pow(extra_digits as u32)
        .ok_or_else(|| EmberError::Internal(format!("AVG rescale by 10^{extra_digits}")))?;
    let out: Decimal128Array = sums
        .iter()
        .zip(counts.values().iter())
        .map(|(sum, &count)| match sum {
            Some(sum) if count > 0 => {
                let scaled = sum.checked_mul(factor).ok_or_else(|| {
                    EmberError::Execution("AVG overflowed Decimal128 while rescaling".into())
                })?;
                let count = count as i128;
                let (q, r) = (scaled / count, scaled % count);
                // |r| * 2 >= count means the fraction is at least one half.
                let round = if r.abs() * 2 >= count {
                    scaled.signum()
                } else {
                    0
                };
                Ok(Some(q + round))
            }
            _ => Ok(None),
        })
        .collect::<Result<_>>()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use arrow::array::{Float64Array, Int32Array, Int64Array};

    use super::*;

    #[test]
    fn sum_skips_nulls_and_is_null_for_empty_groups() {
        let mut acc = SumAccumulator::<Int64Type>::new(DataType::Int64);
        let v: ArrayRef = Arc::new(Int32Array::from(vec![Some(1), None, Some(5), Some(2)]));
        acc.update_batch(&[v], &[0, 1, 0, 2], 4).unwrap();
        let out = acc.evaluate(4).unwrap();
        let out = out.as_primitive::<Int64Type>();
        assert_eq!(
            out.iter().collect::<Vec<_>>(),
            vec![Some(6), None, Some(2), None]
        );
    }

    #[test]
    fn sum_overflow_is_an_error() {
        let mut acc = SumAccumulator::<Int64Type>::new(DataType::Int64);
        let v: ArrayRef = Arc::new(Int64Array::from(vec![i64::MAX, 1]));
        let err = acc.update_batch(&[v], &[0, 0], 1).unwrap_err();
        assert!(err.to_string().contains("overflow"), "{err}");
    }

    #[test]
    fn float_average_merges_partial_states() {
        let mut partial = AvgAccumulator::try_new(
            Box::new(SumAccumulator::<Int64Type>::new(DataType::Int64)),
            DataType::Int64,
            DataType::Float64,
        )
        .unwrap();
        let v: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 4]));
        partial.update_batch(&[v], &[0, 0, 1], 3).unwrap();
        let state = partial.state(3).unwrap();
        let mut fin = AvgAccumulator::try_new(
            Box::new(SumAccumulator::<Int64Type>::new(DataType::Int64)),
            DataType::Int64,
            DataType::Float64,
        )
        .unwrap();
        fin.merge_batch(&state, &[0, 1, 2], 3).unwrap();
        fin.merge_batch(&state, &[0, 1, 2], 3).unwrap();
        let out = fin.evaluate(3).unwrap();
        let out = out.as_any().downcast_ref::<Float64Array>().unwrap();
        assert_eq!(
            out.iter().collect::<Vec<_>>(),
            vec![Some(1.5), Some(4.0), None]
        );
    }

    #[test]
    fn decimal_average_rounds_half_away_from_zero() {
        let sums = Decimal128Array::from(vec![Some(5), Some(-5), Some(1), None]);
        let counts = Int64Array::from(vec![3, 3, 8, 0]);
        // 0.05/3 = 0.0166.. → 0.016667 with 4 more digits on scale 2; 0.01/8 = 0.00125 → 0.001250
        let out = decimal_average(&sums, &counts, 4).unwrap();
        assert_eq!(
            out.iter().collect::<Vec<_>>(),
            vec![Some(16667), Some(-16667), Some(1250), None]
        );
    }
}
