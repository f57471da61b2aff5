use std::path::Path;

use arrow::array::{Int32Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use datafusion_common::ScalarValue;
use ember_planner::expr::Expr;
use ember_planner::schema::Column;

use super::*;

fn col(name: &str) -> Expr {
    Expr::Column(Column::unqualified(name))
}

fn lit_i64(v: i64) -> Expr {
    Expr::Literal(ScalarValue::Int64(Some(v)))
}

fn lit_str(v: &str) -> Expr {
    Expr::Literal(ScalarValue::Utf8(Some(v.to_string())))
}

pub(super) fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int32, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("big", DataType::Int64, true),
    ]))
}

/// `rows` rows with id = 0..rows, written in row groups of `group` rows.
pub(super) fn write_file(path: &Path, start: i32, rows: i32, group: usize) {
    let ids: Vec<i32> = (start..start + rows).collect();
    let names: Vec<String> = ids.iter().map(|i| format!("n{i:05}")).collect();
    let bigs: Vec<Option<i64>> = ids
        .iter()
        .map(|&i| (i % 7 != 0).then_some(i as i64 * 10))
        .collect();
    let batch = RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int32Array::from(ids)),
            Arc::new(StringArray::from(names)),
            Arc::new(Int64Array::from(bigs)),
        ],
    )
    .unwrap();
    let options = ParquetWriteOptions {
        max_row_group_rows: group,
        zstd: false,
    };
    write_parquet(path, &schema(), &[batch], options).unwrap();
}

fn collect(table: &ParquetTable, request: &ScanRequest) -> Vec<RecordBatch> {
    table
        .scan(request)
        .unwrap()
        .iter()
        .flat_map(|p| p.execute().unwrap().map(|b| b.unwrap()))
        .collect()
}

fn row_count(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

fn request(filters: Vec<Expr>) -> ScanRequest {
    ScanRequest {
        projection: None,
        filters,
        target_partitions: 3,
        limit: None,
    }
}

#[test]
fn roundtrip_with_statistics_and_projection() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.parquet");
    write_file(&path, 0, 1000, 100);
    let table = ParquetTable::try_new(path.to_str().unwrap()).unwrap();
    assert_eq!(table.schema().fields().len(), 3);
    assert_eq!(table.statistics().num_rows, Some(1000));
    assert!(table.statistics().total_bytes.unwrap() > 0);

    let all = collect(&table, &request(vec![]));
    assert_eq!(row_count(&all), 1000);

    // Projection in a non-file order comes back in the requested order.
    let req = ScanRequest {
        projection: Some(vec![2, 0]),
        ..request(vec![])
    };
    let batches = collect(&table, &req);
    assert_eq!(batches[0].schema().field(0).name(), "big");
    assert_eq!(batches[0].schema().field(1).name(), "id");
    let ids = batches[0]
        .column(1)
        .as_any()
        .downcast_ref::<Int32Array>()
        .unwrap();
    assert_eq!(ids.value(0), 0);

    // Empty projection: row counts only.
    let req = ScanRequest {
        projection: Some(vec![]),
        ..request(vec![])
    };
    let batches = collect(&table, &req);
    assert_eq!(row_count(&batches), 1000);
    assert!(batches.iter().all(|b| b.num_columns() == 0));
}

#[test]
fn partitions_are_balanced_and_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.parquet");
    write_file(&path, 0, 1000, 100);
    let table = ParquetTable::try_new(path.to_str().unwrap()).unwrap();
    let parts = table.scan(&request(vec![])).unwrap();
    assert_eq!(parts.len(), 3);
    let descriptions: Vec<String> = parts.iter().map(|p| p.describe()).collect();
    let again: Vec<String> = table
        .scan(&request(vec![]))
        .unwrap()
        .iter()
        .map(|p| p.describe())
        .collect();
    assert_eq!(descriptions, again);
    // Each partition reads a contiguous range of rows, in order.
    let mut next = 0;
    for p in &parts {
        for batch in p.execute().unwrap() {
            let batch = batch.unwrap();
            let ids = batch
                .column(0)
                .as_any()
                .downcast_ref::<Int32Array>()
                .unwrap();
            for v in ids.values() {
                assert_eq!(*v, next);
                next += 1;
            }
        }
    }
    assert_eq!(next, 1000);
}

#[test]
fn pruning_skips_row_groups() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.parquet");
    write_file(&path, 0, 1000, 100); // 10 row groups: ids 0..99, 100..199, ...
    let table = ParquetTable::try_new(path.to_str().unwrap()).unwrap();
    let groups = |filters: Vec<Expr>| -> Vec<usize> {
        table
            .row_groups_to_read(&filters)
            .into_iter()
            .flat_map(|(_, g)| g)
            .collect()
    };

    // Int32 column against an Int64 literal (coerced).
    assert_eq!(groups(vec![col("id").lt(lit_i64(150))]), vec![0, 1]);
    assert_eq!(groups(vec![lit_i64(850).lt_eq(col("id"))]), vec![8, 9]);
    assert_eq!(groups(vec![col("id").eq(lit_i64(420))]), vec![4]);
    assert_eq!(
        groups(vec![col("id").eq(lit_i64(5000))]),
        Vec::<usize>::new()
    );
    // Conjuncts intersect; ORs unite.
    assert_eq!(
        groups(vec![
            col("id").gt_eq(lit_i64(300)),
            col("id").lt(lit_i64(500))
        ]),
        vec![3, 4]
    );
    assert_eq!(
        groups(vec![col("id")
            .lt(lit_i64(100))
            .or(col("id").gt(lit_i64(950)))]),
        vec![0, 9]
    );
    let between = Expr::Between {
        expr: Box::new(col("id")),
        negated: false,
        low: Box::new(lit_i64(250)),
        high: Box::new(lit_i64(310)),
    };
    assert_eq!(groups(vec![between]), vec![2, 3]);
    let in_list = Expr::InList {
        expr: Box::new(col("id")),
        list: vec![lit_i64(5), lit_i64(705)],
        negated: false,
    };
    assert_eq!(groups(vec![in_list]), vec![0, 7]);
    // Strings.
    assert_eq!(groups(vec![col("name").gt_eq(lit_str("n00900"))]), vec![9]);
    // Not understood: keep everything (NOT, negated IN, unknown column).
    assert_eq!(groups(vec![col("id").lt(lit_i64(150)).not()]).len(), 10);
    assert_eq!(groups(vec![col("nope").lt(lit_i64(1))]).len(), 10);

    // The scan really reads only the kept row groups.
    let batches = collect(&table, &request(vec![col("id").lt(lit_i64(150))]));
    assert_eq!(row_count(&batches), 200);
    let parts = table
        .scan(&request(vec![col("id").eq(lit_i64(5000))]))
        .unwrap();
    assert_eq!(parts.len(), 1);
    assert_eq!(
        row_count(&collect(
            &table,
            &request(vec![col("id").eq(lit_i64(5000))])
        )),
        0
    );
}

#[test]
fn pruning_with_casts_and_nulls_is_conservative() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.parquet");
    write_file(&path, 0, 1000, 100);
    let table = ParquetTable::try_new(path.to_str().unwrap()).unwrap();
    let cast = Expr::Cast {
        expr: Box::new(col("id")),
        data_type: DataType::Decimal128(12, 2),
    };
    let filter = cast.gt(Expr::Literal(ScalarValue::Decimal128(Some(95050), 12, 2)));
    let kept: Vec<usize> = table
        .row_groups_to_read(&[filter])
        .into_iter()
        .flat_map(|(_, g)| g)
        .collect();
    assert_eq!(kept, vec![9]);
    // A nullable column still prunes by its non-null values.
    let kept: Vec<usize> = table
        .row_groups_to_read(&[col("big").gt(lit_i64(9000))])
        .into_iter()
        .flat_map(|(_, g)| g)
        .collect();
    assert_eq!(kept, vec![9]);
}

#[test]
fn folder_of_files_and_schema_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    write_file(&dir.path().join("part-0.parquet"), 0, 100, 50);
    write_file(&dir.path().join("part-1.parquet"), 100, 100, 50);
    let table = ParquetTable::try_new(dir.path().to_str().unwrap()).unwrap();
    assert_eq!(table.statistics().num_rows, Some(200));
    assert_eq!(row_count(&collect(&table, &request(vec![]))), 200);
    assert_eq!(
        table.row_groups_to_read(&[col("id").gt_eq(lit_i64(150))]),
        vec![
            (
                dir.path().join("part-0.parquet").display().to_string(),
                vec![]
            ),
            (
                dir.path().join("part-1.parquet").display().to_string(),
                vec![1]
            ),
        ]
    );

    let other = Arc::new(Schema::new(vec![Field::new("x", DataType::Utf8, false)]));
    let batch =
        RecordBatch::try_new(other.clone(), vec![Arc::new(StringArray::from(vec!["a"]))]).unwrap();
    let bad = dir.path().join("part-2.parquet");
    write_parquet(&bad, &other, &[batch], ParquetWriteOptions::default()).unwrap();
    let err = ParquetTable::try_new(dir.path().to_str().unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("part-2.parquet"), "{err}");
}

#[test]
fn truncated_file_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.parquet");
    write_file(&path, 0, 1000, 100);
    let bytes = std::fs::read(&path).unwrap();
    // Footer cut off.
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = ParquetTable::try_new(path.to_str().unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("failed to read") && err.contains("t.parquet"),
        "{err}"
    );
    // Garbage that is not Parquet at all.
    std::fs::write(&path, b"hello").unwrap();
    assert!(ParquetTable::try_new(path.to_str().unwrap()).is_err());
}

#[test]
fn corrupted_data_pages_fail_at_read_time_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.parquet");
    write_file(&path, 0, 1000, 100);
    let table = ParquetTable::try_new(path.to_str().unwrap()).unwrap();
    // Overwrite the data area (footer stays intact) with garbage.
    let mut bytes = std::fs::read(&path).unwrap();
    let end = bytes.len() / 2;
    for b in &mut bytes[4..end] {
        *b = 0xA5;
    }
    std::fs::write(&path, &bytes).unwrap();
    let mut saw_error = false;
    for p in table.scan(&request(vec![])).unwrap() {
        match p.execute() {
            Err(e) => {
                assert!(e.to_string().contains("t.parquet"), "{e}");
                saw_error = true;
            }
            Ok(iter) => {
                for r in iter {
                    if let Err(e) = r {
                        assert!(e.to_string().contains("t.parquet"), "{e}");
                        saw_error = true;
                        break;
                    }
                }
            }
        }
    }
    assert!(saw_error);
}

#[test]
fn pruning_on_dates_and_decimals() {
    use arrow::array::{Date32Array, Decimal128Array};
    let schema = Arc::new(Schema::new(vec![
        Field::new("d", DataType::Date32, false),
        Field::new("price", DataType::Decimal128(15, 2), false),
    ]));
    // 4 row groups of 10 rows: days 0..39, prices 0.00..39.00 in whole units.
    let days: Vec<i32> = (0..40).collect();
    let prices: Vec<i128> = (0..40).map(|i| i * 100).collect();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Date32Array::from(days)),
            Arc::new(
                Decimal128Array::from(prices)
                    .with_precision_and_scale(15, 2)
                    .unwrap(),
            ),
        ],
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.parquet");
    let options = ParquetWriteOptions {
        max_row_group_rows: 10,
        zstd: true,
    };
    write_parquet(&path, &schema, &[batch], options).unwrap();
    let table = ParquetTable::try_new(path.to_str().unwrap()).unwrap();
    let kept = |f: Expr| -> Vec<usize> {
        table
            .row_groups_to_read(&[f])
            .into_iter()
            .flat_map(|(_, g)| g)
            .collect()
    };
    let date = |v: i32| Expr::Literal(ScalarValue::Date32(Some(v)));
    assert_eq!(kept(col("d").lt(date(15))), vec![0, 1]);
    assert_eq!(kept(col("d").gt_eq(date(30))), vec![3]);
    // A literal of another decimal type (as `0.05`-style SQL literals are).
    let dec = |v: i128, p: u8, s: i8| Expr::Literal(ScalarValue::Decimal128(Some(v), p, s));
    assert_eq!(kept(col("price").gt(dec(2850, 4, 2))), vec![2, 3]);
    let between = Expr::Between {
        expr: Box::new(col("price")),
        negated: false,
        low: Box::new(dec(105, 3, 1)),
        high: Box::new(dec(12, 2, 0)),
    };
    assert_eq!(kept(between), vec![1]);
}
