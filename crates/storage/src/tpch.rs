//! TPC-H data, generated in process with `tpchgen` (the spec's dbgen, ported to Rust), so
//! tests, benches and `ember --tpch SF` need no files.
//!
//! Column names and types follow the spec: keys Int64, money and quantities
//! Decimal128(15, 2), dates Date32. Strings are plain Utf8 (tpchgen makes Utf8View), the
//! string type the rest of Ember and its literals use.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::thread;

use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use ember_planner::error::{EmberError, Result};
use tpchgen::generators::{
    CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator,
    PartSuppGenerator, RegionGenerator, SupplierGenerator,
};
use tpchgen_arrow::{
    CustomerArrow, LineItemArrow, NationArrow, OrderArrow, PartArrow, PartSuppArrow,
    RecordBatchIterator, RegionArrow, SupplierArrow,
};

use crate::file_scan::BATCH_SIZE;
use crate::parquet::{write_parquet, ParquetWriteOptions};

/// The eight TPC-H tables, in the order [`generate_tpch`] returns them.
pub const TPCH_TABLES: [&str; 8] = [
    "nation", "region", "part", "supplier", "partsupp", "customer", "orders", "lineitem",
];

/// Generates all eight tables at `scale_factor` (1.0 ≈ 1 GB of text data):
/// `(name, schema, batches)` for each.
pub fn generate_tpch(scale_factor: f64) -> Result<Vec<(String, SchemaRef, Vec<RecordBatch>)>> {
    check_scale_factor(scale_factor)?;
    TPCH_TABLES
        .iter()
        .map(|name| {
            let (schema, batches) = generate_table(name, scale_factor)?;
            Ok((name.to_string(), schema, batches))
        })
        .collect()
}

/// Writes each table as `<dir>/<table>.parquet` (for benches), one table in memory at a time.
pub fn write_tpch_parquet(scale_factor: f64, dir: &Path) -> Result<()> {
    check_scale_factor(scale_factor)?;
    fs::create_dir_all(dir).map_err(|e| EmberError::io(dir.display().to_string(), e))?;
    for name in TPCH_TABLES {
        let (schema, batches) = generate_table(name, scale_factor)?;
        write_parquet(
            &dir.join(format!("{name}.parquet")),
            &schema,
            &batches,
            ParquetWriteOptions::default(),
        )?;
    }
    Ok(())
}

fn check_scale_factor(scale_factor: f64) -> Result<()> {
    if scale_factor.is_finite() && scale_factor > 0.0 {
        Ok(())
    } else {
        Err(EmberError::Plan(format!(
            "invalid TPC-H scale factor {scale_factor}: expected a positive number"
        )))
    }
}

/// Generates one table, by name.
pub fn generate_table(name: &str, sf: f64) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let parts = parallel_parts(sf);
    let batches = match name {
        "nation" => generate(1, |p, n| NationArrow::new(NationGenerator::new(sf, p, n))),
        "region" => generate(1, |p, n| RegionArrow::new(RegionGenerator::new(sf, p, n))),
        "part" => generate(parts, |p, n| PartArrow::new(PartGenerator::new(sf, p, n))),
        "supplier" => generate(parts, |p, n| {
            SupplierArrow::new(SupplierGenerator::new(sf, p, n))
        }),
        "partsupp" => generate(parts, |p, n| {
            PartSuppArrow::new(PartSuppGenerator::new(sf, p, n))
        }),
        "customer" => generate(parts, |p, n| {
            CustomerArrow::new(CustomerGenerator::new(sf, p, n))
        }),
        "orders" => generate(parts, |p, n| OrderArrow::new(OrderGenerator::new(sf, p, n))),
        "lineitem" => generate(parts, |p, n| {
            LineItemArrow::new(LineItemGenerator::new(sf, p, n))
        }),
        other => {
            return Err(EmberError::Plan(format!(
                "unknown TPC-H table '{other}' (expected one of {})",
                TPCH_TABLES.join(", ")
            )))
        }
    };
    let (schema, batches) = batches;
    let schema = plain_strings(&schema);
    let batches = batches
        .into_iter()
        .map(|b| to_schema(&schema, &b))
        .collect::<Result<Vec<_>>>()?;
    Ok((schema, batches))
}

/// Threads to generate with: one part per core for big scale factors, else one.
fn parallel_parts(sf: f64) -> i32 {
    if sf < 0.5 {
        return 1;
    }
    thread::available_parallelism()
        .map(|n| n.get().min(16) as i32)
        .unwrap_or(1)
}

/// Runs `parts` generators (tpchgen parts are 1-based) on threads and concatenates their
/// batches in part order: the same rows, in the same order, as one generator would give.
fn generate<I, F>(parts: i32, make: F) -> (SchemaRef, Vec<RecordBatch>)
where
    I: RecordBatchIterator + WithBatchSize,
    F: Fn(i32, i32) -> I + Sync,
{
    let make = &make;
    let outputs: Vec<(SchemaRef, Vec<RecordBatch>)> = if parts <= 1 {
        let it = make(1, 1).with_batch_size_hint();
        vec![(Arc::clone(it.schema()), it.collect())]
    } else {
        thread::scope(|scope| {
            let handles: Vec<_> = (1..=parts)
                .map(|p| {
                    scope.spawn(move || {
                        let it = make(p, parts).with_batch_size_hint();
                        (Arc::clone(it.schema()), it.collect::<Vec<_>>())
                    })
                })
                .collect();
            handles
                .into_iter()
                // A generator thread only panics on a tpchgen bug; surface it as such.
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        })
    };
    let schema = outputs
        .first()
        .map(|(s, _)| Arc::clone(s))
        .unwrap_or_else(|| Arc::new(Schema::empty()));
    let batches = outputs.into_iter().flat_map(|(_, b)| b).collect();
    (schema, batches)
}

/// Sets Ember's batch size on any tpchgen-arrow iterator.
trait WithBatchSize: Sized {
    fn with_batch_size_hint(self) -> Self;
}

macro_rules! impl_with_batch_size {
    ($($t:ty),*) => {$(
        impl WithBatchSize for $t {
            fn with_batch_size_hint(self) -> Self {
                self.with_batch_size(BATCH_SIZE)
            }
        }
    )*};
}

impl_with_batch_size!(
    NationArrow,
    RegionArrow,
    PartArrow,
    SupplierArrow,
    PartSuppArrow,
    CustomerArrow,
    OrderArrow,
    LineItemArrow
);

/// The schema with every Utf8View field as Utf8.
fn plain_strings(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8View => f.as_ref().clone().with_data_type(DataType::Utf8),
            _ => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

fn to_schema(schema: &SchemaRef, batch: &RecordBatch) -> Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(Arc::clone(c))
            } else {
                cast(c, f.data_type()).map_err(EmberError::from)
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parquet::ParquetTable;
    use ember_planner::table::TableSource;

    #[test]
    fn sf_001_has_the_spec_row_counts_and_types() {
        let tables = generate_tpch(0.01).unwrap();
        let rows = |name: &str| -> usize {
            let (_, _, batches) = tables.iter().find(|(n, _, _)| n == name).unwrap();
            batches.iter().map(|b| b.num_rows()).sum()
        };
        assert_eq!(rows("nation"), 25);
        assert_eq!(rows("region"), 5);
        assert_eq!(rows("part"), 2000);
        assert_eq!(rows("supplier"), 100);
        assert_eq!(rows("partsupp"), 8000);
        assert_eq!(rows("customer"), 1500);
        assert_eq!(rows("orders"), 15000);
        assert_eq!(rows("lineitem"), 60175);

        let (_, schema, batches) = tables.iter().find(|(n, _, _)| n == "lineitem").unwrap();
        assert_eq!(schema.field(0).name(), "l_orderkey");
        assert_eq!(
            schema
                .field_with_name("l_extendedprice")
                .unwrap()
                .data_type(),
            &DataType::Decimal128(15, 2)
        );
        assert_eq!(
            schema.field_with_name("l_shipdate").unwrap().data_type(),
            &DataType::Date32
        );
        assert_eq!(
            schema.field_with_name("l_returnflag").unwrap().data_type(),
            &DataType::Utf8
        );
        assert!(batches
            .iter()
            .all(|b| b.schema() == *schema && b.num_rows() <= BATCH_SIZE));
    }

    /// TPC-H Q6 computed directly over the generated arrays matches the reference answer
    /// (/work/shared/tpch/answers/sf0.01/q06.csv: 1193053.23), so the data is the data the
    /// answers were made from.
    #[test]
    fn sf_001_lineitem_reproduces_q6_answer() {
        use arrow::array::{Array, Date32Array, Decimal128Array};
        let (schema, batches) = generate_table("lineitem", 0.01).unwrap();
        let idx = |n: &str| schema.index_of(n).unwrap();
        let (ship, disc, qty, price) = (
            idx("l_shipdate"),
            idx("l_discount"),
            idx("l_quantity"),
            idx("l_extendedprice"),
        );
        let (from, to) = (8766, 9131); // 1994-01-01, 1995-01-01 as days since the epoch
        let mut revenue: i128 = 0; // scale 4
        for b in &batches {
            let ship = b
                .column(ship)
                .as_any()
                .downcast_ref::<Date32Array>()
                .unwrap();
            let dec = |i: usize| {
                b.column(i)
                    .as_any()
                    .downcast_ref::<Decimal128Array>()
                    .unwrap()
            };
            let (disc, qty, price) = (dec(disc), dec(qty), dec(price));
            for r in 0..b.num_rows() {
                let d = disc.value(r);
                if ship.value(r) >= from
                    && ship.value(r) < to
                    && (5..=7).contains(&d)
                    && qty.value(r) < 2400
                {
                    revenue += price.value(r) * d;
                }
            }
        }
        // Round half up to 2 decimals.
        assert_eq!((revenue + 50) / 100, 119305323);
    }

    #[test]
    fn parallel_generation_matches_serial() {
        let (_, serial) = generate(1, |p, n| OrderArrow::new(OrderGenerator::new(0.01, p, n)));
        let (_, parallel) = generate(3, |p, n| OrderArrow::new(OrderGenerator::new(0.01, p, n)));
        let serial = arrow::compute::concat_batches(&serial[0].schema(), &serial).unwrap();
        let parallel = arrow::compute::concat_batches(&parallel[0].schema(), &parallel).unwrap();
        assert_eq!(serial, parallel);
    }

    #[test]
    fn parquet_files_for_benches() {
        let dir = tempfile::tempdir().unwrap();
        write_tpch_parquet(0.01, dir.path()).unwrap();
        let table =
            ParquetTable::try_new(dir.path().join("lineitem.parquet").to_str().unwrap()).unwrap();
        assert_eq!(table.statistics().num_rows, Some(60175));
        assert!(generate_tpch(0.0).is_err());
        assert!(generate_table("nope", 0.01).is_err());
    }
}
