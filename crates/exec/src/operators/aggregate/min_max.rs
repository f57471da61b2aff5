//! MIN and MAX. Primitive types (numbers, decimals, dates, timestamps) compare native values
//! in flat vectors; every other type (strings, booleans, nested) compares its `arrow-row`
//! encoding, whose byte order is the value order.

use std::sync::Arc;

use arrow::array::{new_null_array, Array, ArrayRef, AsArray, PrimitiveArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{ArrowNativeTypeOp, ArrowPrimitiveType, DataType};
use arrow::row::{OwnedRow, RowConverter, SortField};

use ember_planner::{EmberError, Result};

use super::accumulator::{coerce, expect_states, GroupsAccumulator};

fn name<const MIN: bool>() -> &'static str {
    if MIN {
        "MIN"
    } else {
        "MAX"
    }
}

pub struct MinMaxPrimitive<T: ArrowPrimitiveType, const MIN: bool> {
    data_type: DataType,
    values: Vec<T::Native>,
    seen: Vec<bool>,
}

impl<T: ArrowPrimitiveType, const MIN: bool> MinMaxPrimitive<T, MIN> {
    pub fn new(data_type: DataType) -> Self {
        MinMaxPrimitive {
            data_type,
            values: Vec::new(),
            seen: Vec::new(),
        }
    }

    #[inline]
    fn fold(&mut self, g: usize, v: T::Native) {
        // Floats compare by total order: NaN is larger than every number, as in Spark.
        let better = if MIN {
            v.is_lt(self.values[g])
        } else {
            v.is_gt(self.values[g])
        };
        if !self.seen[g] || better {
            self.values[g] = v;
            self.seen[g] = true;
        }
    }

    fn add(&mut self, values: &ArrayRef, groups: &[usize], total_groups: usize) -> Result<()> {
        self.values.resize(total_groups, T::Native::default());
        self.seen.resize(total_groups, false);
        let values = coerce(values, &self.data_type)?;
        let values = values.as_primitive_opt::<T>().ok_or_else(|| {
            EmberError::Internal(format!("{} input is not {}", name::<MIN>(), self.data_type))
        })?;
        match values.nulls().filter(|n| n.null_count() > 0) {
            None => {
                for (&g, &v) in groups.iter().zip(values.values().iter()) {
                    self.fold(g, v);
                }
            }
            Some(nulls) => {
                for (i, (&g, &v)) in groups.iter().zip(values.values().iter()).enumerate() {
                    if nulls.is_valid(i) {
                        self.fold(g, v);
                    }
                }
            }
        }
        Ok(())
    }

    fn take(&mut self, total_groups: usize) -> ArrayRef {
        let n = total_groups.max(self.values.len());
        self.values.resize(n, T::Native::default());
        self.seen.resize(n, false);
        let nulls = NullBuffer::from(std::mem::take(&mut self.seen));
        Arc::new(
            PrimitiveArray::<T>::new(std::mem::take(&mut self.values).into(), Some(nulls))
                .with_data_type(self.data_type.clone()),
        )
    }
}

impl<T: ArrowPrimitiveType, const MIN: bool> GroupsAccumulator for MinMaxPrimitive<T, MIN> {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        groups: &[usize],
        total_groups: usize,
    ) -> Result<()> {
        expect_states(values, 1, name::<MIN>())?;
        self.add(&values[0], groups, total_groups)
    }

    fn merge_batch(
        &mut self,
        states: &[ArrayRef],
        groups: &[usize],
        total_groups: usize,
    ) -> Result<()> {
        self.update_batch(states, groups, total_groups)
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
        self.values.capacity() * std::mem::size_of::<T::Native>() + self.seen.capacity()
    }
}

/// MIN/MAX of any type through its row encoding (one owned row per group).
pub struct MinMaxRows<const MIN: bool> {
    data_type: DataType,
    converter: RowConverter,
    best: Vec<Option<OwnedRow>>,
    /// Bytes of the rows in `best`.
    row_bytes: usize,
}

impl<const MIN: bool> MinMaxRows<MIN> {
    pub fn try_new(data_type: DataType) -> Result<Self> {
        let converter =
            RowConverter::new(vec![SortField::new(data_type.clone())]).map_err(|e| {
                EmberError::NotImplemented(format!("{} of {data_type}: {e}", name::<MIN>()))
            })?;
        Ok(MinMaxRows {
            data_type,
            converter,
            best: Vec::new(),
            row_bytes: 0,
        })
    }

    fn add(&mut self, values: &ArrayRef, groups: &[usize], total_groups: usize) -> Result<()> {
        self.best.resize(total_groups, None);
        let values = coerce(values, &self.data_type)?;
        let rows = self
            .converter
            .convert_columns(std::slice::from_ref(&values))?;
        let nulls = values.logical_nulls();
        for (i, &g) in groups.iter().enumerate() {
            if nulls.as_ref().is_some_and(|n| n.is_null(i)) {
                continue;
            }
            let row = rows.row(i);
            let better = match &self.best[g] {
                None => true,
                Some(cur) if MIN => row < cur.row(),
                Some(cur) => row > cur.row(),
            };
            if better {
                let old = self.best[g].replace(row.owned());
                self.row_bytes += row.data().len();
                self.row_bytes -= old.map_or(0, |o| o.row().data().len());
            }
        }
        Ok(())
    }

    fn take(&mut self, total_groups: usize) -> Result<ArrayRef> {
        let n = total_groups.max(self.best.len());
        self.best.resize(n, None);
        let null_rows = self
            .converter
            .convert_columns(&[new_null_array(&self.data_type, 1)])?;
        let null_row = null_rows.row(0);
        let best = std::mem::take(&mut self.best);
        self.row_bytes = 0;
        let mut out = self.converter.convert_rows(
            best.iter()
                .map(|b| b.as_ref().map_or(null_row, |r| r.row())),
        )?;
        out.pop()
            .ok_or_else(|| EmberError::Internal("row converter returned no column".into()))
    }
}

impl<const MIN: bool> GroupsAccumulator for MinMaxRows<MIN> {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        groups: &[usize],
        total_groups: usize,
    ) -> Result<()> {
        expect_states(values, 1, name::<MIN>())?;
        self.add(&values[0], groups, total_groups)
    }

    fn merge_batch(
        &mut self,
        states: &[ArrayRef],
        groups: &[usize],
        total_groups: usize,
    ) -> Result<()> {
        self.update_batch(states, groups, total_groups)
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
        self.best.capacity() * std::mem::size_of::<Option<OwnedRow>>() + self.row_bytes
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Float64Array, StringArray};
    use arrow::datatypes::Float64Type;

    use super::*;

    #[test]
    fn primitive_min_and_max_skip_nulls() {
        let v: ArrayRef = Arc::new(Float64Array::from(vec![
            Some(2.0),
            None,
            Some(-1.0),
            Some(f64::NAN),
        ]));
        let groups = [0, 1, 0, 0];
        let mut min = MinMaxPrimitive::<Float64Type, true>::new(DataType::Float64);
        min.update_batch(std::slice::from_ref(&v), &groups, 2)
            .unwrap();
        let mut max = MinMaxPrimitive::<Float64Type, false>::new(DataType::Float64);
        max.update_batch(&[v], &groups, 2).unwrap();
        let min = min.evaluate(2).unwrap();
        let min = min.as_primitive::<Float64Type>();
        assert_eq!(min.value(0), -1.0);
        assert!(min.is_null(1));
        let max = max.evaluate(2).unwrap();
        assert!(max.as_primitive::<Float64Type>().value(0).is_nan());
    }

    #[test]
    fn string_min_and_max_merge_states() {
        let v: ArrayRef = Arc::new(StringArray::from(vec![
            Some("pear"),
            Some("apple"),
            None,
            Some("zoo"),
        ]));
        let mut partial = MinMaxRows::<false>::try_new(DataType::Utf8).unwrap();
        partial.update_batch(&[v], &[0, 0, 1, 2], 3).unwrap();
        let state = partial.state(3).unwrap();
        let mut fin = MinMaxRows::<false>::try_new(DataType::Utf8).unwrap();
        fin.merge_batch(&state, &[0, 1, 2], 3).unwrap();
        let extra: ArrayRef = Arc::new(StringArray::from(vec!["apricot"]));
        fin.merge_batch(&[extra], &[2], 4).unwrap();
        let out = fin.evaluate(4).unwrap();
        let out = out.as_string::<i32>();
        assert_eq!(
            out.iter().collect::<Vec<_>>(),
            vec![Some("pear"), None, Some("zoo"), None]
        );
    }
}
