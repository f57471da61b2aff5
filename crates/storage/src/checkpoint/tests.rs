use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use super::*;
use crate::parquet::{write_parquet, ParquetWriteOptions};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("s", DataType::Utf8, true),
    ]))
}

fn batch(from: i64, n: i64) -> RecordBatch {
    let keys: Vec<i64> = (from..from + n).collect();
    let names: Vec<Option<String>> = keys
        .iter()
        .map(|k| (k % 3 != 0).then(|| format!("name-{k}")))
        .collect();
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from(keys)),
            Arc::new(StringArray::from(names)),
        ],
    )
    .unwrap()
}

/// Three partitions: two batches, one batch, and an empty one.
fn partitions() -> Vec<Vec<RecordBatch>> {
    vec![
        vec![batch(0, 100), batch(100, 50)],
        vec![batch(1000, 10)],
        vec![],
    ]
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

fn store(dir: &Path) -> CheckpointStore {
    CheckpointStore::open(dir.join("ckpt").to_str().unwrap()).unwrap()
}

/// Writes and commits `partitions()` as `fp`.
fn write_checkpoint(store: &CheckpointStore, fp: Fingerprint) -> Checkpoint {
    let writer = store.begin(fp, schema()).unwrap();
    let infos = partitions()
        .iter()
        .enumerate()
        .map(|(p, batches)| writer.write_partition(p, 0, batches).unwrap())
        .collect();
    writer.commit(infos, "Aggregate: k").unwrap()
}

fn valid(outcome: LookupOutcome) -> Checkpoint {
    match outcome {
        LookupOutcome::Valid(c) => c,
        other => panic!("expected a valid checkpoint, got {other:?}"),
    }
}

fn rejected(outcome: LookupOutcome) -> String {
    match outcome {
        LookupOutcome::Rejected { reason } => reason,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn folder(dir: &Path, fp: Fingerprint) -> std::path::PathBuf {
    dir.join("ckpt").join(fp.to_string())
}

#[test]
fn round_trip_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let fp = Fingerprint(42);
    let store = store(dir.path());
    assert!(matches!(store.lookup(fp).unwrap(), LookupOutcome::Absent));
    let written = write_checkpoint(&store, fp);
    assert_eq!(written.total_rows(), 160);

    // A new store on the same folder (a restarted application) finds and verifies it.
    let reopened = CheckpointStore::open(dir.path().join("ckpt").to_str().unwrap()).unwrap();
    let found = valid(reopened.lookup(fp).unwrap());
    assert_eq!(found.num_partitions(), 3);
    assert_eq!(found.schema(), &schema());
    assert_eq!(found.manifest().plan, "Aggregate: k");
    assert_eq!(found.manifest().partitions[0].rows, 150);
    for (p, expected) in partitions().iter().enumerate() {
        let back = found.read_partition(p).unwrap();
        let expected = arrow::compute::concat_batches(&schema(), expected).unwrap();
        let back = arrow::compute::concat_batches(&schema(), &back).unwrap();
        assert_eq!(back, expected, "partition {p}");
    }
    let err = found.read_partition(3).unwrap_err();
    assert!(
        matches!(err.kind, CheckpointErrorKind::Unreadable(_)),
        "{err}"
    );

    // Layout: data files, manifest, _SUCCESS; no temp files left.
    let mut names: Vec<String> = fs::read_dir(folder(dir.path(), fp))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "_SUCCESS",
            "_manifest.json",
            "part-00000.parquet",
            "part-00001.parquet",
            "part-00002.parquet"
        ]
    );
}

#[test]
fn files_are_no_larger_than_plain_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = write_checkpoint(&store(dir.path()), Fingerprint(1));
    let plain = dir.path().join("plain.parquet");
    write_parquet(
        &plain,
        &schema(),
        &partitions()[0],
        ParquetWriteOptions::default(),
    )
    .unwrap();
    let plain_size = fs::metadata(&plain).unwrap().len();
    assert!(
        checkpoint.manifest().partitions[0].bytes <= plain_size,
        "{} > {plain_size}",
        checkpoint.manifest().partitions[0].bytes
    );
}

#[test]
fn retried_attempt_replaces_the_partition() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let fp = Fingerprint(7);
    let writer = store.begin(fp, schema()).unwrap();
    // Attempt 0 wrote something else before failing; attempt 1 is the one reported.
    writer.write_partition(0, 0, &[batch(0, 5)]).unwrap();
    let info = writer.write_partition(0, 1, &[batch(0, 20)]).unwrap();
    assert_eq!(info.rows, 20);
    let checkpoint = writer.commit(vec![info], "p").unwrap();
    assert_eq!(rows(&checkpoint.read_partition(0).unwrap()), 20);
    let leftovers = fs::read_dir(folder(dir.path(), fp))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("_tmp")
        })
        .count();
    assert_eq!(leftovers, 0, "temp files of attempts are removed by commit");
    valid(store.lookup(fp).unwrap());
}

#[test]
fn uncommitted_checkpoint_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let fp = Fingerprint(9);
    let writer = store.begin(fp, schema()).unwrap();
    writer.write_partition(0, 0, &[batch(0, 5)]).unwrap();
    let reason = rejected(store.lookup(fp).unwrap());
    assert!(reason.contains("no _SUCCESS"), "{reason}");

    // A manifest without _SUCCESS (killed between the two writes) is still not committed.
    write_checkpoint(&store, fp);
    fs::remove_file(folder(dir.path(), fp).join("_SUCCESS")).unwrap();
    assert!(rejected(store.lookup(fp).unwrap()).contains("no _SUCCESS"));
}

#[test]
fn corrupt_file_is_rejected_and_never_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let fp = Fingerprint(10);
    let checkpoint = write_checkpoint(&store, fp);
    store.corrupt_partition_file(fp, 1).unwrap();
    let reason = rejected(store.lookup(fp).unwrap());
    assert!(
        reason.contains("part-00001.parquet has checksum"),
        "{reason}"
    );
    // A Checkpoint obtained before the damage refuses to return data from it.
    let err = checkpoint.read_partition(1).unwrap_err();
    assert!(matches!(err.kind, CheckpointErrorKind::Corrupt(_)), "{err}");
    assert!(err.to_string().contains("partition 1"), "{err}");
    // Undamaged partitions are still readable.
    assert_eq!(rows(&checkpoint.read_partition(0).unwrap()), 150);
}

#[test]
fn truncated_or_missing_file_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let fp = Fingerprint(11);
    let checkpoint = write_checkpoint(&store, fp);
    let file = folder(dir.path(), fp).join("part-00000.parquet");
    let data = fs::read(&file).unwrap();
    fs::write(&file, &data[..data.len() - 10]).unwrap();
    let reason = rejected(store.lookup(fp).unwrap());
    assert!(reason.contains("truncated"), "{reason}");
    let err = checkpoint.read_partition(0).unwrap_err();
    assert!(matches!(err.kind, CheckpointErrorKind::Corrupt(_)), "{err}");

    store.delete_partition_file(fp, 0).unwrap();
    let reason = rejected(store.lookup(fp).unwrap());
    assert!(reason.contains("part-00000.parquet is missing"), "{reason}");
    let err = checkpoint.read_partition(0).unwrap_err();
    assert_eq!(err.kind, CheckpointErrorKind::Missing);
    let ember: ember_planner::EmberError = err.into();
    assert!(ember.to_string().contains("missing"));
}

#[test]
fn bad_manifest_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let fp = Fingerprint(12);
    write_checkpoint(&store, fp);
    let manifest = folder(dir.path(), fp).join(MANIFEST_FILE);
    fs::write(&manifest, b"{ truncated").unwrap();
    assert!(rejected(store.lookup(fp).unwrap()).contains("unreadable manifest"));
    fs::remove_file(&manifest).unwrap();
    assert!(rejected(store.lookup(fp).unwrap()).contains("no _manifest.json"));
}

#[test]
fn corrupt_writes_fault_damages_each_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let fp = Fingerprint(13);
    store.set_corrupt_writes(true);
    let checkpoint = write_checkpoint(&store, fp);
    assert!(rejected(store.lookup(fp).unwrap()).contains("checksum"));
    assert!(checkpoint.read_partition(0).is_err());
    // Recovery rewrites the checkpoint: this time the files are intact.
    write_checkpoint(&store, fp);
    let found = valid(store.lookup(fp).unwrap());
    assert_eq!(rows(&found.read_partition(0).unwrap()), 150);
}

#[test]
fn commit_checks_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let fp = Fingerprint(14);
    let writer = store.begin(fp, schema()).unwrap();
    let p0 = writer.write_partition(0, 0, &[batch(0, 5)]).unwrap();
    let p2 = writer.write_partition(2, 0, &[batch(0, 5)]).unwrap();
    let err = writer.commit(vec![p0, p2], "x").unwrap_err().to_string();
    assert!(err.contains("0..n"), "{err}");
    // Reported but never written (the file was lost before commit).
    let ghost = PartitionInfo { partition: 1, ..p0 };
    store.delete_partition_file(fp, 0).unwrap();
    let err = writer.commit(vec![ghost, p0], "x").unwrap_err().to_string();
    assert!(err.contains("part-00000.parquet is missing"), "{err}");
    assert!(rejected(store.lookup(fp).unwrap()).contains("no _SUCCESS"));
}

#[test]
fn begin_clears_a_rejected_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let fp = Fingerprint(15);
    write_checkpoint(&store, fp);
    store.corrupt_partition_file(fp, 2).unwrap();
    let writer = store.begin(fp, schema()).unwrap();
    assert!(!folder(dir.path(), fp).join("_SUCCESS").exists());
    assert!(!folder(dir.path(), fp).join("part-00002.parquet").exists());
    let info = writer.write_partition(0, 0, &[batch(0, 3)]).unwrap();
    let checkpoint = writer.commit(vec![info], "one partition").unwrap();
    assert_eq!(
        valid(store.lookup(fp).unwrap()).num_partitions(),
        checkpoint.num_partitions()
    );
}

#[test]
fn vacuum_keeps_live_checkpoints_and_foreign_folders() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    for fp in [1, 2, 3] {
        write_checkpoint(&store, Fingerprint(fp));
    }
    // An abandoned, uncommitted checkpoint is also garbage.
    store
        .begin(Fingerprint(4), schema())
        .unwrap()
        .write_partition(0, 0, &[batch(0, 1)])
        .unwrap();
    let foreign = dir.path().join("ckpt/notes");
    fs::create_dir_all(&foreign).unwrap();
    fs::write(foreign.join("readme.txt"), b"mine").unwrap();

    let keep: HashSet<Fingerprint> = [Fingerprint(2)].into();
    let removed = store.vacuum(&keep).unwrap();
    assert_eq!(
        removed,
        vec![Fingerprint(1), Fingerprint(3), Fingerprint(4)]
    );
    assert_eq!(store.fingerprints().unwrap(), vec![Fingerprint(2)]);
    for fp in [1, 3, 4] {
        assert!(!folder(dir.path(), Fingerprint(fp)).exists(), "{fp}");
    }
    assert!(foreign.join("readme.txt").exists());
    valid(store.lookup(Fingerprint(2)).unwrap());
    assert!(store.remove(Fingerprint(2)).unwrap());
    assert!(!store.remove(Fingerprint(2)).unwrap());
    assert!(store.vacuum(&HashSet::new()).unwrap().is_empty());
}

#[test]
fn works_on_a_non_local_object_store() {
    let store = CheckpointStore::open("memory:///checkpoints").unwrap();
    let fp = Fingerprint(99);
    write_checkpoint(&store, fp);
    let found = valid(store.lookup(fp).unwrap());
    assert_eq!(found.read_partition(1).unwrap(), vec![batch(1000, 10)]);
    store.corrupt_partition_file(fp, 1).unwrap();
    assert!(rejected(store.lookup(fp).unwrap()).contains("checksum"));
    assert_eq!(store.vacuum(&HashSet::new()).unwrap(), vec![fp]);
}

#[test]
fn file_url_and_default_dir_name() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("viaurl").display());
    let store = CheckpointStore::open(&url).unwrap();
    write_checkpoint(&store, Fingerprint(5));
    assert!(dir
        .path()
        .join("viaurl/0000000000000005/_SUCCESS")
        .is_file());
    assert_eq!(DEFAULT_CHECKPOINT_DIR, "./ember-checkpoints");
}

#[test]
fn tasks_write_partitions_concurrently() {
    fn shareable<T: Send + Sync>() {}
    shareable::<CheckpointStore>();
    shareable::<CheckpointWriter>();
    shareable::<Checkpoint>();

    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let fp = Fingerprint(77);
    let writer = store.begin(fp, schema()).unwrap();
    let handles: Vec<_> = (0..8)
        .map(|p| {
            let writer = writer.clone();
            std::thread::spawn(move || {
                // Every partition also has a failed first attempt that is overwritten.
                writer.write_partition(p, 0, &[batch(0, 1)]).unwrap();
                writer
                    .write_partition(p, 1, &[batch(p as i64 * 100, 100)])
                    .unwrap()
            })
        })
        .collect();
    let infos = handles.into_iter().map(|h| h.join().unwrap()).collect();
    writer.commit(infos, "8 partitions").unwrap();
    let found = valid(store.lookup(fp).unwrap());
    assert_eq!(found.total_rows(), 800);
    for p in 0..8 {
        assert_eq!(
            found.read_partition(p).unwrap(),
            vec![batch(p as i64 * 100, 100)]
        );
    }
}

/// TPC-H-like columns: a nearly unique price, repeated flags and quantities, dates,
/// decimals, nulls.
fn typed_batch(n: usize) -> RecordBatch {
    use arrow::array::{Date32Array, Decimal128Array, Float64Array};
    let schema = Arc::new(Schema::new(vec![
        Field::new("price", DataType::Decimal128(15, 2), false),
        Field::new("flag", DataType::Utf8, false),
        Field::new("qty", DataType::Float64, true),
        Field::new("day", DataType::Date32, false),
    ]));
    let price: Decimal128Array = (0..n as i128)
        .map(|i| Some(i * 7919 % 1_000_003))
        .collect::<Decimal128Array>()
        .with_precision_and_scale(15, 2)
        .unwrap();
    let flag = StringArray::from_iter_values((0..n).map(|i| ["A", "N", "R"][i % 3]));
    let qty: Float64Array = (0..n)
        .map(|i| (i % 7 != 0).then_some((i % 50) as f64))
        .collect();
    let day = Date32Array::from_iter_values((0..n).map(|i| 9000 + (i % 2500) as i32));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(price),
            Arc::new(flag),
            Arc::new(qty),
            Arc::new(day),
        ],
    )
    .unwrap()
}

#[test]
fn integer_like_columns_are_delta_packed_unless_few_and_close_and_unique_ones_lose_their_dictionary(
) {
    use writer::ColumnLayout::{Delta, Plain};
    let n = 20_000;
    let typed = typed_batch(n);
    let codes =
        Int64Array::from_iter_values((0..n as i64).map(|i| [7, 1_000_000_007][i as usize % 2]));
    let names = StringArray::from_iter_values((0..n).map(|i| format!("customer#{i}")));
    // A few values close together in no order (a discount: 0.00 to 0.10)...
    let discount =
        arrow::array::Decimal128Array::from_iter_values((0..n as i128).map(|i| i * 7 % 11))
            .with_precision_and_scale(15, 2)
            .unwrap();
    // ...as many spread too far apart for the code table...
    let spread = Int64Array::from_iter_values((0..n as i64).map(|i| i * 37 % 200 * 50));
    // ...and a few sorted: rising by 0 or 1, their deltas take a bit.
    let steps = Int64Array::from_iter_values((0..n as i64).map(|i| i / 500));
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(
            typed
                .schema()
                .fields()
                .iter()
                .cloned()
                .chain([
                    Arc::new(Field::new("code", DataType::Int64, false)),
                    Arc::new(Field::new("name", DataType::Utf8, false)),
                    Arc::new(Field::new("discount", DataType::Decimal128(15, 2), false)),
                    Arc::new(Field::new("spread", DataType::Int64, false)),
                    Arc::new(Field::new("steps", DataType::Int64, false)),
                ])
                .collect::<Vec<_>>(),
        )),
        typed
            .columns()
            .iter()
            .cloned()
            .chain([
                Arc::new(codes) as _,
                Arc::new(names) as _,
                Arc::new(discount) as _,
                Arc::new(spread) as _,
                Arc::new(steps) as _,
            ])
            .collect(),
    )
    .unwrap();
    // price (decimal) and day (date) are integers to Parquet: delta packed; flag keeps its
    // dictionary; qty (float, repeated) keeps it too; code has two values far apart, so its
    // dictionary codes (1 bit) beat its deltas (31 bits); name is a unique string. The
    // discount's codes (4 bits) are no wider than its deltas (5 bits) and come from the
    // range table: a dictionary. The spread values' codes (8 bits) are no wider either
    // (deltas: 15 bits), but too far apart for the table and not half as wide: deltas. The
    // steps' deltas (1 bit) are narrower than codes.
    assert_eq!(
        writer::column_layouts(&batch),
        vec![
            ("price".to_string(), Delta),
            ("day".to_string(), Delta),
            ("name".to_string(), Plain),
            ("spread".to_string(), Delta),
            ("steps".to_string(), Delta),
        ]
    );
    // Too few rows to judge: every column keeps the default.
    assert!(writer::column_layouts(&typed_batch(10)).is_empty());
}

#[test]
fn files_skip_the_arrow_schema_only_when_parquet_types_say_it_all() {
    use arrow::datatypes::TimeUnit;
    let plain = typed_batch(1).schema();
    assert!(writer::parquet_types_suffice(&plain));
    for needs_hint in [
        DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
        DataType::LargeUtf8,
        DataType::Timestamp(TimeUnit::Microsecond, Some("+01:00".into())),
        DataType::Duration(TimeUnit::Second),
    ] {
        let schema = Schema::new(vec![Field::new("x", needs_hint.clone(), true)]);
        assert!(!writer::parquet_types_suffice(&schema), "{needs_hint}");
    }
}

/// Both kinds of file (with and without the Arrow schema in the footer) read back exactly,
/// under the manifest's schema, after a restart.
#[test]
fn typed_and_dictionary_columns_round_trip() {
    use arrow::array::{Array, DictionaryArray, Int32Array};
    use arrow::datatypes::Int32Type;
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let typed = typed_batch(20_000);
    let dict: DictionaryArray<Int32Type> = vec!["x", "y", "x", "z"].into_iter().collect();
    let dict_schema = Arc::new(Schema::new(vec![
        Field::new("d", dict.data_type().clone(), false),
        Field::new("i", DataType::Int32, false),
    ]));
    let dict_batch = RecordBatch::try_new(
        dict_schema.clone(),
        vec![Arc::new(dict), Arc::new(Int32Array::from(vec![1, 2, 3, 4]))],
    )
    .unwrap();
    for (fp, batch) in [
        (Fingerprint(71), typed),
        (Fingerprint(72), dict_batch),
        (Fingerprint(73), integer_like_batch(5_000)),
    ] {
        let writer = store.begin(fp, batch.schema()).unwrap();
        let info = writer
            .write_partition(0, 0, std::slice::from_ref(&batch))
            .unwrap();
        assert!(writer.verify_written(&[info]).is_empty());
        writer.commit(vec![info], "t").unwrap();
        let reopened = CheckpointStore::open(dir.path().join("ckpt").to_str().unwrap()).unwrap();
        let back = valid(reopened.lookup(fp).unwrap())
            .read_partition(0)
            .unwrap();
        let back = arrow::compute::concat_batches(&batch.schema(), &back).unwrap();
        assert_eq!(back, batch, "{fp}");
    }
}

/// Every integer-like type the delta layout takes, with nulls and extreme values.
fn integer_like_batch(n: usize) -> RecordBatch {
    use arrow::array::{
        Decimal64Array, Int8Array, TimestampMicrosecondArray, UInt32Array, UInt64Array,
    };
    let int8 = Int8Array::from_iter((0..n).map(|i| (i % 5 != 0).then_some(i as i8)));
    let uint64 = UInt64Array::from_iter_values((0..n as u64).map(|i| i.wrapping_mul(u64::MAX / 7)));
    let uint32 =
        UInt32Array::from_iter_values((0..n as u32).map(|i| i.wrapping_mul(2_654_435_761)));
    let micros = TimestampMicrosecondArray::from_iter_values(
        (0..n as i64).map(|i| 1_700_000_000_000_000 + i * 997),
    )
    .with_timezone("+01:00");
    let money =
        Decimal64Array::from_iter((0..n as i64).map(|i| (i % 3 != 0).then_some(i * 13 - 500)))
            .with_precision_and_scale(12, 2)
            .unwrap();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(int8),
        Arc::new(uint64),
        Arc::new(uint32),
        Arc::new(micros),
        Arc::new(money),
    ];
    let fields: Vec<Field> = ["int8", "uint64", "uint32", "micros", "money"]
        .iter()
        .zip(&columns)
        .map(|(name, c)| Field::new(*name, c.data_type().clone(), true))
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

#[test]
fn typed_files_are_smaller_than_plain_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let batch = typed_batch(200_000);
    let writer = store(dir.path())
        .begin(Fingerprint(5), batch.schema())
        .unwrap();
    let info = writer
        .write_partition(0, 0, std::slice::from_ref(&batch))
        .unwrap();
    let plain = dir.path().join("plain.parquet");
    write_parquet(
        &plain,
        &batch.schema(),
        &[batch],
        ParquetWriteOptions::default(),
    )
    .unwrap();
    let plain_size = fs::metadata(&plain).unwrap().len();
    assert!(info.bytes < plain_size, "{} >= {plain_size}", info.bytes);
}

#[test]
fn verification_before_commit_finds_damaged_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let fp = Fingerprint(9);
    let writer = store.begin(fp, schema()).unwrap();
    let infos: Vec<PartitionInfo> = partitions()
        .iter()
        .enumerate()
        .map(|(p, batches)| writer.write_partition(p, 0, batches).unwrap())
        .collect();
    assert!(writer.verify_written(&infos).is_empty());
    store.corrupt_partition_file(fp, 0).unwrap();
    store.delete_partition_file(fp, 2).unwrap();
    let bad = writer.verify_written(&infos);
    let partitions: Vec<usize> = bad.iter().map(|(p, _)| *p).collect();
    assert_eq!(partitions, vec![0, 2], "{bad:?}");
    assert!(bad[0].1.contains("checksum"), "{}", bad[0].1);
    assert!(bad[1].1.contains("missing"), "{}", bad[1].1);
}
