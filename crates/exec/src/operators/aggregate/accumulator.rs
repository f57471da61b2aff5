//! Vectorised accumulators: one object per aggregate expression holds the state of *every*
//! group in flat vectors, and is updated a batch at a time with the batch's group indices,
//! so a dynamic call happens per batch, never per row.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray};
use arrow::datatypes::{
    DataType, Date32Type, Date64Type, Decimal128Type, Float32Type, Float64Type, Int16Type,
    Int32Type, Int64Type, Int8Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};

use ember_planner::expr::AggregateFunction;
use ember_planner::types::{avg_type, sum_type};
use ember_planner::{EmberError, Result};

use super::count::CountAccumulator;
use super::distinct::DistinctAccumulator;
use super::min_max::{MinMaxPrimitive, MinMaxRows};
use super::sum::{AvgAccumulator, SumAccumulator};

/// The per-group state of one aggregate expression.
///
/// `groups[i]` is the group of row `i`; `total_groups` is the number of groups so far
/// (every index in `groups` is below it), so implementations grow their vectors to it.
pub trait GroupsAccumulator: Send {
    /// Folds raw argument values (one array per argument; none for `COUNT(*)`) in.
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        groups: &[usize],
        total_groups: usize,
    ) -> Result<()>;
    /// Folds state columns produced by [`GroupsAccumulator::state`] of Partial aggregates in.
    fn merge_batch(
        &mut self,
        states: &[ArrayRef],
        groups: &[usize],
        total_groups: usize,
    ) -> Result<()>;
    /// Final values, one per group (`total_groups` of the last call, or more if asked).
    fn evaluate(&mut self, total_groups: usize) -> Result<ArrayRef>;
    /// State columns (as `aggregate_state_fields` describes them), one row per group.
    fn state(&mut self, total_groups: usize) -> Result<Vec<ArrayRef>>;
    /// How many state columns `state` returns.
    fn state_columns(&self) -> usize;
    /// Bytes held for the groups so far (for the memory reservation of the aggregate).
    fn size(&self) -> usize;
}

/// The accumulator for `func([DISTINCT] arg)`; `arg_type` is `None` for `COUNT(*)`.
pub fn create_accumulator(
    func: AggregateFunction,
    distinct: bool,
    arg_type: Option<&DataType>,
) -> Result<Box<dyn GroupsAccumulator>> {
    let inner = create_plain(func, arg_type)?;
    // MIN/MAX ignore duplicates anyway.
    if !distinct || matches!(func, AggregateFunction::Min | AggregateFunction::Max) {
        return Ok(inner);
    }
    let arg_type = arg_type
        .ok_or_else(|| EmberError::Plan(format!("{}(DISTINCT) needs an argument", func.name())))?;
    Ok(Box::new(DistinctAccumulator::try_new(arg_type, inner)?))
}

fn create_plain(
    func: AggregateFunction,
    arg_type: Option<&DataType>,
) -> Result<Box<dyn GroupsAccumulator>> {
    let arg =
        || arg_type.ok_or_else(|| EmberError::Plan(format!("{}() needs an argument", func.name())));
    Ok(match func {
        AggregateFunction::Count => Box::new(CountAccumulator::new(arg_type.is_none())),
        AggregateFunction::Sum => create_sum(arg()?)?,
        AggregateFunction::Avg => {
            let arg = arg()?;
            Box::new(AvgAccumulator::try_new(
                create_sum(arg)?,
                sum_type(arg)?,
                avg_type(arg)?,
            )?)
        }
        AggregateFunction::Min => create_min_max::<true>(arg()?)?,
        AggregateFunction::Max => create_min_max::<false>(arg()?)?,
    })
}

fn create_sum(arg: &DataType) -> Result<Box<dyn GroupsAccumulator>> {
    let t = sum_type(arg)?;
    Ok(match t {
        DataType::Int64 => Box::new(SumAccumulator::<Int64Type>::new(t)),
        DataType::UInt64 => Box::new(SumAccumulator::<UInt64Type>::new(t)),
        DataType::Float64 => Box::new(SumAccumulator::<Float64Type>::new(t)),
        DataType::Decimal128(_, _) => Box::new(SumAccumulator::<Decimal128Type>::new(t)),
        other => {
            return Err(EmberError::Internal(format!(
                "SUM of {arg} would be {other}, which has no accumulator"
            )))
        }
    })
}

fn create_min_max<const MIN: bool>(arg: &DataType) -> Result<Box<dyn GroupsAccumulator>> {
    use DataType::*;
    let t = arg.clone();
    Ok(match arg {
        Int8 => Box::new(MinMaxPrimitive::<Int8Type, MIN>::new(t)),
        Int16 => Box::new(MinMaxPrimitive::<Int16Type, MIN>::new(t)),
        Int32 => Box::new(MinMaxPrimitive::<Int32Type, MIN>::new(t)),
        Int64 => Box::new(MinMaxPrimitive::<Int64Type, MIN>::new(t)),
        UInt8 => Box::new(MinMaxPrimitive::<UInt8Type, MIN>::new(t)),
        UInt16 => Box::new(MinMaxPrimitive::<UInt16Type, MIN>::new(t)),
        UInt32 => Box::new(MinMaxPrimitive::<UInt32Type, MIN>::new(t)),
        UInt64 => Box::new(MinMaxPrimitive::<UInt64Type, MIN>::new(t)),
        Float32 => Box::new(MinMaxPrimitive::<Float32Type, MIN>::new(t)),
        Float64 => Box::new(MinMaxPrimitive::<Float64Type, MIN>::new(t)),
        Decimal128(_, _) => Box::new(MinMaxPrimitive::<Decimal128Type, MIN>::new(t)),
        Date32 => Box::new(MinMaxPrimitive::<Date32Type, MIN>::new(t)),
        Date64 => Box::new(MinMaxPrimitive::<Date64Type, MIN>::new(t)),
        Timestamp(TimeUnit::Second, _) => {
            Box::new(MinMaxPrimitive::<TimestampSecondType, MIN>::new(t))
        }
        Timestamp(TimeUnit::Millisecond, _) => {
            Box::new(MinMaxPrimitive::<TimestampMillisecondType, MIN>::new(t))
        }
        Timestamp(TimeUnit::Microsecond, _) => {
            Box::new(MinMaxPrimitive::<TimestampMicrosecondType, MIN>::new(t))
        }
        Timestamp(TimeUnit::Nanosecond, _) => {
            Box::new(MinMaxPrimitive::<TimestampNanosecondType, MIN>::new(t))
        }
        // Strings, booleans, binary, nested types: compared in the row format.
        _ => Box::new(MinMaxRows::<MIN>::try_new(t)?),
    })
}

/// `array` as `target` when they differ only in decimal precision (same stored integers),
/// otherwise cast. Accumulators call it so their inputs have exactly their state type.
pub fn coerce(array: &ArrayRef, target: &DataType) -> Result<ArrayRef> {
    if array.data_type() == target {
        return Ok(array.clone());
    }
    if let (DataType::Decimal128(_, from_scale), DataType::Decimal128(p, s)) =
        (array.data_type(), target)
    {
        if from_scale == s {
            let decimals = array.as_primitive::<Decimal128Type>().clone();
            return Ok(Arc::new(decimals.with_precision_and_scale(*p, *s)?));
        }
    }
    Ok(arrow::compute::cast(array, target)?)
}

/// Checks that a state batch has the expected number of columns.
pub fn expect_states(states: &[ArrayRef], n: usize, what: &str) -> Result<()> {
    if states.len() != n {
        return Err(EmberError::Internal(format!(
            "{what} expects {n} state columns, got {}",
            states.len()
        )));
    }
    Ok(())
}
