//! Hash aggregation in three modes (see `AggregateMode`):
//!
//! ```text
//!   Single:  raw rows ──update──► accumulators ──evaluate──► keys, final values
//!   Partial: raw rows ──update──► accumulators ──state─────► keys, state columns ─┐ shuffle
//!   Final:   keys, state columns ──merge──► accumulators ──evaluate──► keys, final values ◄┘
//! ```
//!
//! Each input batch is mapped to dense group indices ([`group_values::GroupValues`]), then
//! every accumulator folds the whole batch in with those indices. The state columns a
//! Partial aggregate emits are exactly `ember_planner::physical::aggregate::aggregate_state_fields`.
//!
//! The group table is held in the executor's memory pool; when it outgrows its reservation,
//! a Partial aggregate emits its states early and starts over, and a Final or Single one
//! spills its states sorted by key and merges the runs at the end (see [`stream`]).

pub mod accumulator;
pub mod count;
pub mod distinct;
pub mod group_columns;
pub mod group_values;
mod lanes;
pub mod min_max;
mod stream;
pub mod sum;

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::compute::cast;
use arrow::datatypes::{DataType, SchemaRef};

use ember_planner::expr::{AggregateFunction, Expr};
use ember_planner::physical::{AggregateMode, PhysicalPlan};
use ember_planner::schema::PlanSchema;
use ember_planner::table::BatchIter;
use ember_planner::{EmberError, Result};

use crate::context::TaskContext;
use crate::expr::{create_physical_expr, create_physical_exprs, PhysicalExprRef};

use self::accumulator::{create_accumulator, GroupsAccumulator};
use self::group_values::{new_group_values, GroupValues};
use self::stream::AggregateStream;

/// One aggregate expression: where its inputs come from and its accumulator.
struct AggregateSlot {
    /// Argument evaluators (Partial/Single); empty for `COUNT(*)`.
    args: Vec<PhysicalExprRef>,
    /// First state column in the input (Final) and in a spilled state batch (any mode).
    state_offset: usize,
    accumulator: Box<dyn GroupsAccumulator>,
    /// Whether the accumulator's state can be emitted and merged back (not DISTINCT).
    mergeable: bool,
}

pub fn execute_aggregate(
    plan: &Arc<PhysicalPlan>,
    partition: usize,
    ctx: &Arc<TaskContext>,
) -> Result<BatchIter> {
    let PhysicalPlan::HashAggregate {
        input,
        mode,
        group_exprs,
        aggr_exprs,
        aggr_input_schema,
        schema,
    } = plan.as_ref()
    else {
        return Err(EmberError::Internal(format!(
            "execute_aggregate called on {}",
            plan.describe_node()
        )));
    };
    let mode = *mode;
    let input_schema = input.schema();

    // Group keys: expressions over raw rows, or the leading columns of Partial output.
    let group_count = group_exprs.len();
    let group_eval: Vec<PhysicalExprRef> = match mode {
        AggregateMode::Partial | AggregateMode::Single => {
            create_physical_exprs(group_exprs, input_schema, &ctx.functions)?
        }
        AggregateMode::Final => Vec::new(),
    };
    let key_types: Vec<_> = match mode {
        AggregateMode::Final => {
            if input_schema.len() < group_count {
                return Err(EmberError::Internal(format!(
                    "Final aggregate expects {group_count} key columns, input has {}",
                    input_schema.len()
                )));
            }
            (0..group_count)
                .map(|i| input_schema.field(i).data_type().clone())
                .collect()
        }
        _ => group_eval.iter().map(|e| e.data_type().clone()).collect(),
    };

    let mut slots = Vec::with_capacity(aggr_exprs.len());
    let mut state_offset = group_count;
    for expr in aggr_exprs {
        let slot = create_slot(expr, mode, aggr_input_schema, state_offset, ctx)?;
        state_offset += slot.accumulator.state_columns();
        slots.push(slot);
    }
    if mode == AggregateMode::Final && state_offset != input_schema.len() {
        return Err(EmberError::Internal(format!(
            "Final aggregate expects {state_offset} input columns (keys then states), input has {}",
            input_schema.len()
        )));
    }
    let groups = if group_count == 0 {
        None
    } else {
        Some(new_group_values(&key_types)?)
    };
    let aggregation = Aggregation {
        mode,
        group_count,
        group_eval,
        key_types,
        slots,
        groups,
        group_ids: Vec::new(),
        out_schema: schema.to_arrow_ref(),
        schema: schema.to_string(),
    };
    let input = super::execute(input, partition, ctx)?;
    Ok(Box::new(AggregateStream::new(aggregation, input, ctx)))
}

/// The group table of one aggregate task: group keys → group indices, and the
/// accumulators holding every group's state.
pub(crate) struct Aggregation {
    mode: AggregateMode,
    group_count: usize,
    group_eval: Vec<PhysicalExprRef>,
    key_types: Vec<DataType>,
    slots: Vec<AggregateSlot>,
    /// `None` without GROUP BY (one group).
    groups: Option<Box<dyn GroupValues>>,
    group_ids: Vec<usize>,
    out_schema: SchemaRef,
    /// The output schema as text, for error messages.
    schema: String,
}

impl Aggregation {
    /// Folds one input batch into the groups.
    fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let mode = self.mode;
        let total_groups = match self.groups.as_mut() {
            Some(groups) => {
                let keys = match mode {
                    AggregateMode::Final => batch.columns()[..self.group_count].to_vec(),
                    _ => self
                        .group_eval
                        .iter()
                        .map(|e| e.evaluate(batch))
                        .collect::<Result<Vec<_>>>()?,
                };
                groups.intern(&keys, &mut self.group_ids)?;
                groups.num_groups()
            }
            None => {
                // Without GROUP BY every row is in the one group 0.
                self.group_ids.clear();
                self.group_ids.resize(batch.num_rows(), 0);
                1
            }
        };
        for slot in &mut self.slots {
            match mode {
                AggregateMode::Final => {
                    let end = slot.state_offset + slot.accumulator.state_columns();
                    let states = &batch.columns()[slot.state_offset..end];
                    slot.accumulator
                        .merge_batch(states, &self.group_ids, total_groups)?;
                }
                _ => {
                    let values = slot
                        .args
                        .iter()
                        .map(|a| a.evaluate(batch))
                        .collect::<Result<Vec<_>>>()?;
                    slot.accumulator
                        .update_batch(&values, &self.group_ids, total_groups)?;
                }
            }
        }
        Ok(())
    }

    /// Bytes held by the group table and the accumulators.
    fn size(&self) -> usize {
        self.groups.as_ref().map_or(0, |g| g.size())
            + self
                .slots
                .iter()
                .map(|s| s.accumulator.size())
                .sum::<usize>()
            + self.group_ids.capacity() * std::mem::size_of::<usize>()
    }

    fn mode(&self) -> AggregateMode {
        self.mode
    }

    fn has_group_by(&self) -> bool {
        self.group_count > 0
    }

    /// Whether the groups can be written out as state and merged back later.
    fn spillable(&self) -> bool {
        self.has_group_by() && self.slots.iter().all(|s| s.mergeable)
    }

    fn key_types(&self) -> &[DataType] {
        &self.key_types
    }

    fn group_count(&self) -> usize {
        self.group_count
    }

    /// The output for every group so far (final values; states in Partial mode), and an
    /// empty table afterwards.
    fn emit(&mut self) -> Result<RecordBatch> {
        // SQL: an aggregate without GROUP BY returns one row even over no input.
        let (mut columns, total_groups) = match &self.groups {
            Some(groups) => (groups.emit()?, groups.num_groups()),
            None => (Vec::new(), 1),
        };
        for slot in &mut self.slots {
            match self.mode {
                AggregateMode::Partial => columns.extend(slot.accumulator.state(total_groups)?),
                _ => columns.push(slot.accumulator.evaluate(total_groups)?),
            }
        }
        self.reset()?;
        self.finish(columns, total_groups)
    }

    /// Keys (in the output's key types) and state columns of every group so far, and an
    /// empty table afterwards: what a spilled run holds. Column `slot.state_offset` is the
    /// first state column of a slot, as in a Final aggregate's input.
    fn emit_state(&mut self) -> Result<(Vec<ArrayRef>, usize)> {
        let Some(groups) = &self.groups else {
            return Err(EmberError::Internal(
                "an aggregate without GROUP BY has no state to spill".into(),
            ));
        };
        let total_groups = groups.num_groups();
        let mut columns = self.cast_keys(groups.emit()?)?;
        for slot in &mut self.slots {
            columns.extend(slot.accumulator.state(total_groups)?);
        }
        self.reset()?;
        Ok((columns, total_groups))
    }

    /// Merges state rows sorted by key (`group_ids` numbers their distinct keys, `keys` has
    /// one row per group) and evaluates the final values of those groups.
    fn merge_sorted(
        &mut self,
        keys: Vec<ArrayRef>,
        states: &RecordBatch,
        group_ids: &[usize],
        total_groups: usize,
    ) -> Result<RecordBatch> {
        let mut columns = keys;
        for slot in &mut self.slots {
            let end = slot.state_offset + slot.accumulator.state_columns();
            let slot_states = states
                .columns()
                .get(slot.state_offset..end)
                .ok_or_else(|| {
                    EmberError::Internal(format!(
                        "spilled aggregate state has {} columns, expected at least {end}",
                        states.num_columns()
                    ))
                })?;
            slot.accumulator
                .merge_batch(slot_states, group_ids, total_groups)?;
            columns.push(slot.accumulator.evaluate(total_groups)?);
        }
        self.finish(columns, total_groups)
    }

    fn reset(&mut self) -> Result<()> {
        if self.groups.is_some() {
            self.groups = Some(new_group_values(&self.key_types)?);
        }
        self.group_ids = Vec::new();
        Ok(())
    }

    /// Keys come back from the row format in their logical type; match the schema exactly.
    fn cast_keys(&self, mut keys: Vec<ArrayRef>) -> Result<Vec<ArrayRef>> {
        for (key, field) in keys.iter_mut().zip(self.out_schema.fields().iter()) {
            if key.data_type() != field.data_type() {
                *key = cast(key, field.data_type())?;
            }
        }
        Ok(keys)
    }

    /// The output batch from key and value columns, checked against the schema.
    fn finish(&self, columns: Vec<ArrayRef>, total_groups: usize) -> Result<RecordBatch> {
        let mode = self.mode;
        if columns.len() != self.out_schema.fields().len() {
            return Err(EmberError::Internal(format!(
                "{mode:?} aggregate produced {} columns, its schema has {}",
                columns.len(),
                self.out_schema.fields().len()
            )));
        }
        let group_count = self.group_count;
        let mut columns = columns;
        let values = columns.split_off(group_count);
        let mut columns = self.cast_keys(columns)?;
        columns.extend(values);
        RecordBatch::try_new_with_options(
            self.out_schema.clone(),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(total_groups)),
        )
        .map_err(|e| {
            EmberError::Internal(format!(
                "{mode:?} aggregate output does not match its schema {}: {e}",
                self.schema
            ))
        })
    }
}

fn create_slot(
    expr: &Expr,
    mode: AggregateMode,
    aggr_input_schema: &PlanSchema,
    state_offset: usize,
    ctx: &TaskContext,
) -> Result<AggregateSlot> {
    let Expr::AggregateFunction {
        func,
        args,
        distinct,
    } = expr.unalias()
    else {
        return Err(EmberError::Internal(format!(
            "aggregate expression expected, got {expr}"
        )));
    };
    if *distinct
        && mode != AggregateMode::Single
        && !matches!(func, AggregateFunction::Min | AggregateFunction::Max)
    {
        return Err(EmberError::Internal(format!(
            "{expr} is DISTINCT and must run in a Single aggregate, not {mode:?}"
        )));
    }
    let arg_type = match (func, args.first()) {
        (AggregateFunction::Count, None) => None,
        (_, Some(a)) => Some(a.data_type(aggr_input_schema)?),
        (_, None) => {
            return Err(EmberError::Plan(format!("{expr} needs an argument")));
        }
    };
    let accumulator = create_accumulator(*func, *distinct, arg_type.as_ref())?;
    let args = match mode {
        AggregateMode::Final => Vec::new(),
        _ => args
            .iter()
            .map(|a| create_physical_expr(a, aggr_input_schema, &ctx.functions))
            .collect::<Result<Vec<_>>>()?,
    };
    let mergeable = !*distinct || matches!(func, AggregateFunction::Min | AggregateFunction::Max);
    Ok(AggregateSlot {
        args,
        state_offset,
        accumulator,
        mergeable,
    })
}

/// Zero-copy slices of at most `batch_size` rows.
pub(crate) fn split(batch: RecordBatch, batch_size: usize) -> impl Iterator<Item = RecordBatch> {
    let rows = batch.num_rows();
    let chunks = rows.div_ceil(batch_size).max(1);
    (0..chunks).map(move |i| {
        let start = i * batch_size;
        batch.slice(start, batch_size.min(rows - start))
    })
}

#[cfg(test)]
mod tests {
    use arrow::array::{ArrayRef, Decimal128Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use ember_planner::expr::{avg, col, count, count_distinct, count_star, max, min, sum};
    use ember_planner::physical::aggregate::aggregate_state_fields;
    use ember_planner::schema::{PlanSchemaRef, QualifiedField};

    use super::super::test_util::*;
    use super::*;

    /// (k: Utf8, v: Int64, d: Decimal(15,2)) over two partitions.
    fn sales() -> Arc<PhysicalPlan> {
        let b = |k: Vec<Option<&str>>, v: Vec<Option<i64>>, d: Vec<Option<i128>>| {
            batch(vec![
                ("k", Arc::new(StringArray::from(k)) as ArrayRef),
                ("v", Arc::new(Int64Array::from(v)) as ArrayRef),
                (
                    "d",
                    Arc::new(
                        Decimal128Array::from(d)
                            .with_precision_and_scale(15, 2)
                            .unwrap(),
                    ) as ArrayRef,
                ),
            ])
        };
        mem_scan(vec![
            vec![
                b(
                    vec![Some("b"), Some("a"), Some("b")],
                    vec![Some(1), Some(2), None],
                    vec![Some(100), Some(250), Some(1)],
                ),
                b(
                    vec![None, Some("a")],
                    vec![Some(7), Some(2)],
                    vec![None, Some(5)],
                ),
            ],
            vec![b(
                vec![Some("a"), Some("c")],
                vec![Some(10), Some(3)],
                vec![Some(1), None],
            )],
        ])
    }

    /// The output schema an aggregate of `aggs` grouped by `groups` has over `input`.
    fn final_schema(input: &PlanSchema, groups: &[Expr], aggs: &[Expr]) -> PlanSchemaRef {
        let fields = groups
            .iter()
            .chain(aggs)
            .map(|e| e.to_field(input).unwrap())
            .collect();
        Arc::new(PlanSchema::new(fields))
    }

    fn partial_schema(input: &PlanSchema, groups: &[Expr], aggs: &[Expr]) -> PlanSchemaRef {
        let mut fields: Vec<QualifiedField> =
            groups.iter().map(|e| e.to_field(input).unwrap()).collect();
        for e in aggs {
            let Expr::AggregateFunction { func, args, .. } = e.unalias() else {
                panic!("not an aggregate: {e}")
            };
            let arg_type = match args.first() {
                Some(a) => a.data_type(input).unwrap(),
                None => DataType::Int64,
            };
            for f in aggregate_state_fields(*func, &arg_type, &e.output_name()).unwrap() {
                fields.push(QualifiedField::new(None, Arc::new(f)));
            }
        }
        Arc::new(PlanSchema::new(fields))
    }

    fn aggregate(
        input: Arc<PhysicalPlan>,
        mode: AggregateMode,
        groups: Vec<Expr>,
        aggs: Vec<Expr>,
    ) -> Arc<PhysicalPlan> {
        let aggr_input_schema = input.schema().clone();
        let schema = match mode {
            AggregateMode::Partial => partial_schema(&aggr_input_schema, &groups, &aggs),
            _ => final_schema(&aggr_input_schema, &groups, &aggs),
        };
        Arc::new(PhysicalPlan::HashAggregate {
            input,
            mode,
            group_exprs: groups,
            aggr_exprs: aggs,
            aggr_input_schema,
            schema,
        })
    }

    /// Partial per partition → Exchange Single → Final, as the planner builds it.
    fn two_phase(groups: Vec<Expr>, aggs: Vec<Expr>) -> Arc<PhysicalPlan> {
        let raw = sales();
        let partial = aggregate(
            raw.clone(),
            AggregateMode::Partial,
            groups.clone(),
            aggs.clone(),
        );
        let exchange = Arc::new(PhysicalPlan::Exchange {
            input: partial,
            kind: ember_planner::physical::ExchangeKind::Single,
        });
        Arc::new(PhysicalPlan::HashAggregate {
            input: exchange,
            mode: AggregateMode::Final,
            schema: final_schema(raw.schema(), &groups, &aggs),
            group_exprs: groups,
            aggr_exprs: aggs,
            aggr_input_schema: raw.schema().clone(),
        })
    }

    fn all_aggregates() -> Vec<Expr> {
        vec![
            count_star(),
            count(col("v")),
            sum(col("v")),
            avg(col("v")),
            min(col("k")),
            max(col("d")),
            sum(col("d")),
            avg(col("d")),
        ]
    }

    #[test]
    fn two_phase_equals_single_phase() {
        let single = aggregate(
            Arc::new(PhysicalPlan::Exchange {
                input: sales(),
                kind: ember_planner::physical::ExchangeKind::Single,
            }),
            AggregateMode::Single,
            vec![col("k")],
            all_aggregates(),
        );
        let expected = vec![
            "+---+----------+----------+--------+--------+--------+--------+--------+----------+",
            "| k | count(*) | count(v) | sum(v) | avg(v) | min(k) | max(d) | sum(d) | avg(d)   |",
            "+---+----------+----------+--------+--------+--------+--------+--------+----------+",
            "| b | 2        | 1        | 1      | 1.0    | b      | 1.00   | 1.01   | 0.505000 |",
            "| a | 3        | 3        | 14     | 4.666… | a      | 2.50   | 2.56   | 0.853333 |",
            "|   | 1        | 1        | 7      | 7.0    |        |        |        |          |",
            "| c | 1        | 1        | 3      | 3.0    | c      |        |        |          |",
            "+---+----------+----------+--------+--------+--------+--------+--------+----------+",
        ];
        let shorten = |lines: Vec<String>| -> Vec<String> {
            lines
                .into_iter()
                .map(|l| l.replace("4.666666666666667", "4.666…"))
                .collect()
        };
        let single_out = shorten(pretty(&collect(&single, 0)));
        let two_phase_out = shorten(pretty(&collect(
            &two_phase(vec![col("k")], all_aggregates()),
            0,
        )));
        // pretty-printing pads to the widest value; compare content, not widths.
        let squash = |lines: &[String]| -> Vec<String> {
            lines
                .iter()
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect()
        };
        let expected: Vec<String> = expected.into_iter().map(String::from).collect();
        assert_eq!(
            squash(&single_out)[3..7],
            squash(&expected)[3..7],
            "{single_out:#?}"
        );
        assert_eq!(squash(&two_phase_out), squash(&single_out));
    }

    #[test]
    fn partial_output_matches_the_planned_state_schema() {
        let plan = aggregate(
            sales(),
            AggregateMode::Partial,
            vec![col("k")],
            all_aggregates(),
        );
        let out = collect(&plan, 0);
        assert_eq!(out[0].schema(), plan.schema().to_arrow_ref());
        // Groups of partition 0 in first-seen order: b, a, NULL.
        assert_eq!(out[0].num_rows(), 3);
    }

    #[test]
    fn no_group_by_over_no_rows_gives_one_row() {
        let empty = mem_scan_with_schema(sales().schema().to_arrow_ref(), vec![vec![]]);
        let plan = aggregate(
            empty,
            AggregateMode::Single,
            vec![],
            vec![count_star(), sum(col("v")), max(col("k"))],
        );
        let out = collect(&plan, 0);
        assert_eq!(
            pretty(&out),
            vec![
                "+----------+--------+--------+",
                "| count(*) | sum(v) | max(k) |",
                "+----------+--------+--------+",
                "| 0        |        |        |",
                "+----------+--------+--------+",
            ]
        );
    }

    #[test]
    fn global_two_phase_aggregate_merges_all_partitions() {
        let plan = two_phase(vec![], vec![count_star(), sum(col("v")), min(col("v"))]);
        let out = collect(&plan, 0);
        assert_eq!(int_column(&out, 0), vec![Some(7)]);
        assert_eq!(int_column(&out, 1), vec![Some(25)]);
        assert_eq!(int_column(&out, 2), vec![Some(1)]);
    }

    #[test]
    fn group_by_with_no_rows_gives_no_rows() {
        let empty = mem_scan_with_schema(sales().schema().to_arrow_ref(), vec![vec![]]);
        let plan = aggregate(
            empty,
            AggregateMode::Single,
            vec![col("k")],
            vec![count_star()],
        );
        assert_eq!(row_count(&collect(&plan, 0)), 0);
    }

    #[test]
    fn count_distinct_in_single_mode() {
        let input = Arc::new(PhysicalPlan::Exchange {
            input: sales(),
            kind: ember_planner::physical::ExchangeKind::Single,
        });
        let plan = aggregate(
            input,
            AggregateMode::Single,
            vec![],
            vec![count_distinct(col("v")), count_distinct(col("k"))],
        );
        let out = collect(&plan, 0);
        // v: 1, 2, 7, 10, 3 (NULL ignored); k: a, b, c.
        assert_eq!(int_column(&out, 0), vec![Some(5)]);
        assert_eq!(int_column(&out, 1), vec![Some(3)]);
    }

    #[test]
    fn distinct_aggregate_outside_single_mode_is_rejected() {
        let plan = aggregate(
            sales(),
            AggregateMode::Partial,
            vec![],
            vec![count_distinct(col("v"))],
        );
        let err = super::super::execute(&plan, 0, &test_ctx()).err().unwrap();
        assert!(matches!(err, EmberError::Internal(_)), "{err}");
    }

    #[test]
    fn many_groups_are_split_into_batches_in_first_seen_order() {
        let values: Vec<i64> = (0..25).map(|i| (i * 7) % 10).collect();
        let plan = aggregate(
            mem_scan(vec![vec![int_batch("g", &values)]]),
            AggregateMode::Single,
            vec![col("g")],
            vec![count_star()],
        );
        let out = collect_with(&plan, 0, &test_ctx_with_batch_size(4));
        assert_eq!(
            out.iter().map(|b| b.num_rows()).collect::<Vec<_>>(),
            vec![4, 4, 2]
        );
        let expected: Vec<Option<i64>> = [0, 7, 4, 1, 8, 5, 2, 9, 6, 3]
            .iter()
            .map(|v| Some(*v))
            .collect();
        assert_eq!(int_column(&out, 0), expected);
        let _ = Field::new("unused", DataType::Null, true);
        let _ = Schema::empty();
    }

    #[test]
    fn aggregates_over_expressions_in_two_phases() {
        use ember_planner::expr::lit;
        let aggs = vec![
            sum(col("v").mul(lit(2i64))).alias("twice"),
            avg(col("d").mul(col("d"))),
        ];
        let plan = two_phase(vec![col("k")], aggs);
        let out = collect(&plan, 0);
        // Group a: v = 2, 2, 10 → 28; d = 2.50, 0.05, 0.01 → squares 6.2500, 0.0025, 0.0001.
        assert_eq!(out[0].schema().field(1).name(), "twice");
        let a = pretty(&out)
            .into_iter()
            .find(|l| l.starts_with("| a"))
            .unwrap();
        let cells: Vec<&str> = a.split('|').map(str::trim).collect();
        assert_eq!(cells[2], "28");
        assert_eq!(cells[3], "2.08420000");
    }
}
