use std::path::Path;

use arrow::array::AsArray;
use arrow::datatypes::Int32Type;

use super::super::tests::{schema, write_file};
use super::super::ParquetPartition;
use super::*;
use crate::listing::list_files;

/// A file of rows `0..rows` in row groups of `group` rows, in a folder that lives as long as
/// the returned guard.
fn one_file(rows: i32, group: usize) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.parquet");
    write_file(&path, 0, rows, group);
    (dir, path)
}

/// Every row group of every file at `location`.
fn chunks_of(location: &Path) -> Vec<(Arc<ParquetFile>, Vec<usize>)> {
    list_files(location.to_str().unwrap())
        .unwrap()
        .into_iter()
        .map(|listed| {
            let file = ParquetFile::open(listed).unwrap();
            let groups = file.reader_meta.metadata().num_row_groups();
            (Arc::new(file), (0..groups).collect())
        })
        .collect()
}

/// A filter from a closure over the filter's columns; it checks that it is handed exactly
/// those columns.
struct FnFilter<F> {
    columns: Vec<usize>,
    keep: F,
}

impl<F> RowFilter for FnFilter<F>
where
    F: FnMut(&RecordBatch) -> Result<Option<BooleanArray>> + Send,
{
    fn columns(&self) -> &[usize] {
        &self.columns
    }

    fn keep(&mut self, batch: &RecordBatch) -> Result<Option<BooleanArray>> {
        assert_eq!(
            batch.num_columns(),
            self.columns.len(),
            "the filter got columns it did not ask for"
        );
        (self.keep)(batch)
    }
}

fn filter_on<F>(columns: Vec<usize>, keep: F) -> Box<dyn RowFilter>
where
    F: FnMut(&RecordBatch) -> Result<Option<BooleanArray>> + Send + 'static,
{
    Box::new(FnFilter { columns, keep })
}

/// A filter on an Int32 column at batch position 0.
fn ids_where(column: usize, keep: fn(i32) -> bool) -> Box<dyn RowFilter> {
    filter_on(vec![column], move |batch| {
        let ids = batch.column(0).as_primitive::<Int32Type>();
        Ok(Some(ids.values().iter().map(|&i| Some(keep(i))).collect()))
    })
}

fn output_schema(read_columns: &[usize]) -> SchemaRef {
    Arc::new(schema().project(read_columns).unwrap())
}

fn scan(
    location: &Path,
    read_columns: &[usize],
    filter: Box<dyn RowFilter>,
) -> (FilteredScan, SchemaRef) {
    let output = output_schema(read_columns);
    let scan = FilteredScan::new(&chunks_of(location), Some(read_columns), &output, filter);
    (scan.unwrap(), output)
}

/// The scan's batches, and for each the way its row group was being read.
fn drain(scan: &mut FilteredScan) -> (Vec<RecordBatch>, Vec<&'static str>) {
    let mut batches = Vec::new();
    let mut phases = Vec::new();
    while let Some(batch) = scan.next() {
        batches.push(batch.unwrap());
        phases.push(match scan.current.as_ref().map(|r| &r.phase) {
            Some(Phase::Selective { .. }) => "selective",
            Some(Phase::Decoded { .. }) => "decoded",
            Some(Phase::Lockstep { .. }) => "lockstep",
            None => "none",
        });
    }
    (batches, phases)
}

/// What the plain scan gives, filtered afterwards by `keep` on the id column.
fn expected(
    location: &Path,
    read_columns: &[usize],
    id_position: usize,
    keep: fn(i32) -> bool,
) -> Vec<RecordBatch> {
    let output = output_schema(read_columns);
    chunks_of(location)
        .iter()
        .flat_map(|(file, groups)| {
            ParquetPartition::read_chunk(file, groups, Some(read_columns), Arc::clone(&output))
                .unwrap()
                .map(|b| b.unwrap())
                .collect::<Vec<_>>()
        })
        .map(|batch| {
            let ids = batch.column(id_position).as_primitive::<Int32Type>();
            let mask: BooleanArray = ids.values().iter().map(|&i| Some(keep(i))).collect();
            filter_record_batch(&batch, &mask).unwrap()
        })
        .collect()
}

fn concat_all(schema: &SchemaRef, batches: &[RecordBatch]) -> RecordBatch {
    arrow::compute::concat_batches(schema, batches).unwrap()
}

#[test]
fn a_sparse_filter_decodes_the_other_columns_only_for_the_rows_it_keeps() {
    let (_dir, path) = one_file(10_000, 1_000);
    let keep: fn(i32) -> bool = |i| (2_500..2_600).contains(&i);
    // Output (big, name, id): the filter's column is the last one.
    let (mut filtered, output) = scan(&path, &[2, 1, 0], ids_where(2, keep));
    let (batches, phases) = drain(&mut filtered);
    let got = concat_all(&output, &batches);
    assert_eq!(
        got,
        concat_all(&output, &expected(&path, &[2, 1, 0], 2, keep))
    );
    assert_eq!(got.num_rows(), 100);
    assert!(phases.iter().all(|p| *p == "selective"), "{phases:?}");
    assert_eq!(filtered.rest_rows_decoded, 100);
}

#[test]
fn a_scattered_filter_decodes_everything_and_reads_in_lockstep_after_one_row_group() {
    let (_dir, path) = one_file(10_000, 1_000);
    let keep: fn(i32) -> bool = |i| i % 3 == 0;
    let (mut filtered, output) = scan(&path, &[0, 1, 2], ids_where(0, keep));
    let (batches, phases) = drain(&mut filtered);
    assert_eq!(
        concat_all(&output, &batches),
        concat_all(&output, &expected(&path, &[0, 1, 2], 0, keep))
    );
    assert_eq!(phases.first(), Some(&"decoded"));
    assert_eq!(phases.last(), Some(&"lockstep"));
    assert!(!phases.contains(&"selective"), "{phases:?}");
    assert_eq!(filtered.rest_rows_decoded, 10_000);
}

#[test]
fn reads_switch_between_skipping_and_lockstep_as_the_selection_changes() {
    let (_dir, path) = one_file(6_000, 1_000);
    // Scattered in the first half, one run per row group in the second.
    let keep: fn(i32) -> bool = |i| {
        if i < 3_000 {
            i % 2 == 0
        } else {
            i % 1_000 < 50
        }
    };
    let (mut filtered, output) = scan(&path, &[1, 0], ids_where(1, keep));
    let (batches, phases) = drain(&mut filtered);
    assert_eq!(
        concat_all(&output, &batches),
        concat_all(&output, &expected(&path, &[1, 0], 1, keep))
    );
    assert!(phases.contains(&"lockstep"), "{phases:?}");
    assert_eq!(phases.last(), Some(&"selective"), "{phases:?}");
}

#[test]
fn filters_over_several_files_repeated_columns_and_all_or_no_rows_match_a_plain_read() {
    let dir = tempfile::tempdir().unwrap();
    write_file(&dir.path().join("a.parquet"), 0, 3_000, 700);
    write_file(&dir.path().join("b.parquet"), 3_000, 2_000, 900);
    // (output columns, position of the id column, which ids to keep)
    type Case = (&'static [usize], usize, fn(i32) -> bool);
    let cases: [Case; 4] = [
        (&[0, 2, 0], 2, |i| i % 1_000 < 10),
        (&[0], 0, |i| i % 5 == 1),
        (&[1, 2, 0], 2, |_| true),
        (&[2, 0], 1, |_| false),
    ];
    for (columns, id_position, keep) in cases {
        let (mut filtered, output) = scan(dir.path(), columns, ids_where(id_position, keep));
        let (batches, _) = drain(&mut filtered);
        assert_eq!(
            concat_all(&output, &batches),
            concat_all(&output, &expected(dir.path(), columns, id_position, keep)),
            "columns {columns:?}"
        );
    }
}

#[test]
fn a_filter_on_two_columns_including_nulls_sees_both() {
    let (_dir, path) = one_file(4_000, 1_000);
    // Output (id, name, big); keep rows whose big is not NULL and whose id ends in 0..4.
    let filter = filter_on(vec![0, 2], |batch| {
        let ids = batch.column(0).as_primitive::<Int32Type>();
        let bigs = batch.column(1);
        Ok(Some(
            (0..batch.num_rows())
                .map(|r| Some(bigs.is_valid(r) && ids.value(r) % 10 < 5))
                .collect(),
        ))
    });
    let (mut filtered, _) = scan(&path, &[0, 1, 2], filter);
    let (batches, _) = drain(&mut filtered);
    let ids: Vec<i32> = batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int32Type>().values().to_vec())
        .collect();
    let want: Vec<i32> = (0..4_000).filter(|i| i % 7 != 0 && i % 10 < 5).collect();
    assert_eq!(ids, want);
    assert!(batches.iter().all(|b| b.column(2).null_count() == 0));
}

#[test]
fn a_filter_that_keeps_everything_without_a_mask_reads_every_row() {
    let (_dir, path) = one_file(2_500, 1_000);
    let (mut filtered, _) = scan(&path, &[1, 0], filter_on(vec![1], |_| Ok(None)));
    let (batches, _) = drain(&mut filtered);
    assert_eq!(
        batches.iter().map(RecordBatch::num_rows).sum::<usize>(),
        2_500
    );
}

#[test]
fn a_failing_filter_stops_the_read_with_the_file_named() {
    let (_dir, path) = one_file(3_000, 1_000);
    let filter = filter_on(vec![0], |_| {
        Err(EmberError::Execution("the predicate broke".to_string()))
    });
    let (mut filtered, _) = scan(&path, &[0, 1], filter);
    let error = filtered.next().unwrap().unwrap_err().to_string();
    assert!(error.contains("the predicate broke"), "{error}");
    assert!(error.contains("t.parquet"), "{error}");
    assert!(filtered.next().is_none());
}

#[test]
fn a_mask_of_the_wrong_length_is_an_error_not_a_panic() {
    let (_dir, path) = one_file(100, 1_000);
    let filter = filter_on(vec![0], |_| Ok(Some(BooleanArray::from(vec![true]))));
    let (mut filtered, _) = scan(&path, &[0, 1], filter);
    let error = filtered.next().unwrap().unwrap_err().to_string();
    assert!(error.contains("1 flags"), "{error}");
}
