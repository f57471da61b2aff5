//! The shape of two-phase aggregation: which state columns a Partial aggregate emits for
//! each aggregate function. The planner needs it to type the shuffle between Partial and
//! Final; the executor's accumulators must produce exactly these columns.

use arrow::datatypes::{DataType, Field};

use crate::error::Result;
use crate::expr::AggregateFunction;
use crate::types;

/// State columns of `func(arg)` in a Partial aggregate's output, in order.
///
/// | function | state |
/// |---|---|
/// | COUNT | count: Int64 |
/// | SUM | sum: SUM's result type |
/// | AVG | sum: SUM's result type, count: Int64 |
/// | MIN / MAX | the argument's type |
pub fn aggregate_state_fields(
    func: AggregateFunction,
    arg_type: &DataType,
    name: &str,
) -> Result<Vec<Field>> {
    Ok(match func {
        AggregateFunction::Count => {
            vec![Field::new(format!("{name}[count]"), DataType::Int64, false)]
        }
        AggregateFunction::Sum => vec![Field::new(
            format!("{name}[sum]"),
            types::sum_type(arg_type)?,
            true,
        )],
        AggregateFunction::Avg => vec![
            Field::new(format!("{name}[sum]"), types::sum_type(arg_type)?, true),
            Field::new(format!("{name}[count]"), DataType::Int64, false),
        ],
        AggregateFunction::Min | AggregateFunction::Max => {
            vec![Field::new(
                format!("{name}[{}]", func.name()),
                arg_type.clone(),
                true,
            )]
        }
    })
}
