//! Files made by [`FileEncoder`], read back by the parquet crate's reader.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float64Array,
    Int32Array, Int64Array, LargeStringArray, StringArray, StringViewArray,
    TimestampMicrosecondArray, UInt64Array,
};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, Encoding};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::properties::WriterProperties;

use super::super::writer::ColumnLayout::{self, Delta, Dictionary, Plain};
use super::FileEncoder;

/// Rows of the test table: several pages (32 Ki rows each) and row groups.
const ROWS: usize = 100_000;
const ROW_GROUP_ROWS: usize = 40_000;

/// Every column kind: Ember's delta and dictionary encoders, nulls, both physical integer
/// widths, and columns left to the parquet crate (floats, booleans, plain strings).
fn table() -> (RecordBatch, Vec<ColumnLayout>) {
    let n = ROWS as i64;
    let columns: Vec<(&str, ArrayRef, ColumnLayout)> = vec![
        (
            "i32_nulls",
            Arc::new(Int32Array::from_iter(
                (0..n).map(|i| (i % 7 != 3).then_some((i * 37 % 1000) as i32 - 500)),
            )),
            Delta,
        ),
        (
            "i64_extremes",
            Arc::new(Int64Array::from_iter_values((0..n).map(|i| match i % 5 {
                0 => i64::MIN,
                1 => i64::MAX,
                _ => i * 1_000_003,
            }))),
            Delta,
        ),
        (
            "u64",
            Arc::new(UInt64Array::from_iter_values(
                (0..n as u64).map(|i| u64::MAX - i * 3),
            )),
            Delta,
        ),
        (
            "price",
            Arc::new(
                Decimal128Array::from_iter_values((0..n).map(|i| (i * 7919 % 10_000_000) as i128))
                    .with_precision_and_scale(15, 2)
                    .unwrap(),
            ),
            Delta,
        ),
        (
            "small_decimal",
            Arc::new(
                Decimal128Array::from_iter(
                    (0..n).map(|i| (i % 11 != 0).then_some(i as i128 % 999)),
                )
                .with_precision_and_scale(5, 2)
                .unwrap(),
            ),
            Delta,
        ),
        (
            "day",
            Arc::new(Date32Array::from_iter_values(
                (0..n).map(|i| 8000 + (i % 2500) as i32),
            )),
            Delta,
        ),
        (
            "at",
            Arc::new(
                TimestampMicrosecondArray::from_iter_values((0..n).map(|i| i * 1_000_000))
                    .with_timezone("Europe/Paris"),
            ),
            Delta,
        ),
        (
            "status",
            // Two values far apart: dictionary codes (1 bit) beat deltas (31 bits).
            Arc::new(Int64Array::from_iter((0..n).map(|i| {
                (i % 17 != 0).then_some([7, 1_000_000_007][(i * 13 % 2) as usize])
            }))),
            Dictionary,
        ),
        (
            "tiny",
            Arc::new(Int32Array::from_iter_values(
                (0..n).map(|i| (i % 3) as i32 * 100_000),
            )),
            Dictionary,
        ),
        (
            "decimal_codes",
            // 700 distinct decimals: codes start as bytes and widen past the 256th entry,
            // mid-page, read straight from the `Decimal128` values.
            Arc::new(
                Decimal128Array::from_iter(
                    (0..n).map(|i| (i % 9 != 4).then_some((i * 31 % 700) as i128 * 1_000_003)),
                )
                .with_precision_and_scale(15, 2)
                .unwrap(),
            ),
            Dictionary,
        ),
        (
            "flags_after_words",
            // 400 distinct words, then only one-byte values: the one-byte path writes
            // into codes that are already wide.
            Arc::new(StringArray::from_iter_values((0..n).map(|i| {
                if i < n / 2 {
                    format!("w{}", i % 400)
                } else {
                    ["A", "B", "C"][(i % 3) as usize].to_string()
                }
            }))),
            Dictionary,
        ),
        (
            "flag",
            Arc::new(StringArray::from_iter((0..n).map(|i| {
                (i % 13 != 5).then(|| ["A", "N", "R"][(i * 31 % 3) as usize])
            }))),
            Dictionary,
        ),
        (
            "status_flag",
            // One-byte values (their own fast path), but a two-byte one every 30 thousand
            // rows sends the slices holding it down the general path: codes must agree.
            Arc::new(StringArray::from_iter_values((0..n).map(|i| {
                match i % 30_000 {
                    29_999 => "XY",
                    _ => ["O", "F", "P"][(i * 7 % 3) as usize],
                }
            }))),
            Dictionary,
        ),
        (
            "mode",
            Arc::new(StringViewArray::from_iter_values((0..n).map(|i| {
                ["AIR", "TRUCK", "DELIVER IN PERSON", "", "TAKE BACK RETURN"][(i % 5) as usize]
            }))),
            Dictionary,
        ),
        (
            "many",
            // 3000 distinct values: many more than the recent-codes cache has slots, so
            // lookups collide, miss and go to the hash map.
            Arc::new(LargeStringArray::from_iter_values(
                (0..n).map(|i| format!("n-{}", i * 17 % 3000)),
            )),
            Dictionary,
        ),
        (
            "bytes",
            Arc::new(BinaryArray::from_iter_values(
                (0..n).map(|i| vec![(i % 4) as u8; (i % 3) as usize]),
            )),
            Dictionary,
        ),
        (
            "ratio",
            Arc::new(Float64Array::from_iter_values(
                (0..n).map(|i| i as f64 / 3.0),
            )),
            Plain,
        ),
        (
            "ok",
            Arc::new(BooleanArray::from_iter((0..n).map(|i| Some(i % 3 == 0)))),
            Dictionary,
        ),
        (
            "comment",
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| format!("comment {i}")),
            )),
            Plain,
        ),
    ];
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, array, _)| {
            Field::new(*name, array.data_type().clone(), array.null_count() > 0)
        })
        .collect();
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    let batch =
        RecordBatch::try_new(schema, columns.iter().map(|c| c.1.clone()).collect()).unwrap();
    (batch, columns.iter().map(|c| c.2).collect())
}

/// Encodes `batch` in uneven slices, as a task's batches arrive.
fn encode(batch: &RecordBatch, layouts: Vec<ColumnLayout>, properties: WriterProperties) -> Bytes {
    let mut encoder =
        FileEncoder::try_new(Vec::new(), batch.schema(), layouts, properties, false).unwrap();
    let mut offset = 0;
    for size in [1, 1000, 8191, 50_000].into_iter().cycle() {
        if offset == batch.num_rows() {
            break;
        }
        let size = size.min(batch.num_rows() - offset);
        encoder.write(&batch.slice(offset, size)).unwrap();
        offset += size;
    }
    Bytes::from(encoder.finish().unwrap())
}

/// A batch of a string column `s` and an integer column `n` (nullable if it has nulls).
fn strings_and_ints(strings: StringArray, ints: Int64Array) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("s", DataType::Utf8, false),
        Field::new("n", DataType::Int64, ints.null_count() > 0),
    ]));
    RecordBatch::try_new(schema, vec![Arc::new(strings), Arc::new(ints)]).unwrap()
}

/// Writer settings for files of one row group of up to `rows` rows.
fn one_row_group(rows: usize) -> WriterProperties {
    WriterProperties::builder()
        .set_max_row_group_row_count(Some(rows))
        .set_offset_index_disabled(true)
        .build()
}

/// A row group ends at its byte limit as well as at its row limit: long strings, whose
/// pages fill the limit long before the rows do, still round trip.
#[test]
fn row_groups_end_at_their_byte_limit() {
    let rows = 40_000;
    let batch = strings_and_ints(
        StringArray::from_iter_values((0..rows).map(|i| format!("{i:0>200}"))),
        Int64Array::from_iter_values(0..rows as i64),
    );
    let mut encoder = FileEncoder::try_new(
        Vec::new(),
        batch.schema(),
        vec![ColumnLayout::Plain, ColumnLayout::Delta],
        one_row_group(rows),
        false,
    )
    .unwrap();
    let FileEncoder::Columns(columns) = &mut encoder else {
        panic!("a flat schema has a columns encoder");
    };
    columns.max_row_group_bytes = 1 << 20;
    for offset in (0..rows).step_by(4096) {
        encoder
            .write(&batch.slice(offset, 4096.min(rows - offset)))
            .unwrap();
    }
    let (back, metadata) = read(Bytes::from(encoder.finish().unwrap()));
    assert_eq!(back, batch);
    // 8 MB of strings: several row groups of about 1 MiB each, not one of 40,000 rows.
    let groups = metadata.num_row_groups();
    assert!((4..=16).contains(&groups), "{groups} row groups");
}

fn read(file: Bytes) -> (RecordBatch, Arc<ParquetMetaData>) {
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let metadata = builder.metadata().clone();
    let schema = builder.schema().clone();
    let batches: Vec<RecordBatch> = builder.build().unwrap().map(|b| b.unwrap()).collect();
    (concat_batches(&schema, &batches).unwrap(), metadata)
}

fn properties() -> WriterProperties {
    WriterProperties::builder()
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_offset_index_disabled(true)
        .set_statistics_enabled(parquet::file::properties::EnabledStatistics::None)
        .set_compression(Compression::SNAPPY)
        .build()
}

#[test]
fn every_column_kind_round_trips_across_pages_and_row_groups() {
    let (batch, layouts) = table();
    let (back, metadata) = read(encode(&batch, layouts, properties()));
    assert_eq!(back, batch);
    assert_eq!(metadata.num_row_groups(), ROWS.div_ceil(ROW_GROUP_ROWS));

    // Which encoder wrote each chunk: Ember's are uncompressed (delta or dictionary), the
    // parquet crate's compressed with the file's codec.
    let chunk = |name: &str| {
        let index = batch.schema().index_of(name).unwrap();
        metadata.row_group(0).column(index).clone()
    };
    for name in [
        "i32_nulls",
        "i64_extremes",
        "u64",
        "price",
        "small_decimal",
        "day",
        "at",
    ] {
        let chunk = chunk(name);
        assert_eq!(chunk.compression(), Compression::UNCOMPRESSED, "{name}");
        assert!(
            chunk
                .encodings()
                .any(|e| e == Encoding::DELTA_BINARY_PACKED),
            "{name}: {:?}",
            chunk.encodings().collect::<Vec<_>>()
        );
    }
    for name in [
        "status",
        "tiny",
        "decimal_codes",
        "flags_after_words",
        "flag",
        "status_flag",
        "mode",
        "many",
        "bytes",
    ] {
        let chunk = chunk(name);
        assert_eq!(chunk.compression(), Compression::UNCOMPRESSED, "{name}");
        assert!(chunk.dictionary_page_offset().is_some(), "{name}");
        assert!(
            chunk.encodings().any(|e| e == Encoding::RLE_DICTIONARY),
            "{name}"
        );
    }
    for name in ["ratio", "ok", "comment"] {
        assert_eq!(chunk(name).compression(), Compression::SNAPPY, "{name}");
    }
}

#[test]
fn a_file_of_ember_columns_only_is_written_from_its_pages_with_a_full_footer() {
    // Without the columns the parquet crate encodes, the file is written by `ChunkFile`.
    let (table, layouts) = table();
    let keep: Vec<usize> = (0..table.num_columns())
        .filter(|&i| !["ratio", "ok", "comment"].contains(&table.schema().field(i).name().as_str()))
        .collect();
    let batch = table.project(&keep).unwrap();
    let layouts: Vec<ColumnLayout> = keep.iter().map(|&i| layouts[i]).collect();
    let file = encode(&batch, layouts, properties());
    assert_eq!(&file[..4], b"PAR1");
    let (back, metadata) = read(file.clone());
    assert_eq!(back, batch);

    // The footer says what the parquet crate's writer says: every row group where its first
    // chunk starts, chunks back to back, the writer's name, the Arrow schema, column orders.
    assert_eq!(metadata.num_row_groups(), ROWS.div_ceil(ROW_GROUP_ROWS));
    let mut next = 4;
    for (ordinal, group) in metadata.row_groups().iter().enumerate() {
        assert_eq!(group.ordinal(), Some(ordinal as i16));
        assert_eq!(group.file_offset(), Some(next));
        for chunk in group.columns() {
            let (start, length) = chunk.byte_range();
            assert_eq!(start as i64, next);
            assert_eq!(chunk.compression(), Compression::UNCOMPRESSED);
            next += length as i64;
        }
        let chunks: i64 = group.columns().iter().map(|c| c.compressed_size()).sum();
        assert_eq!(group.total_byte_size(), chunks);
    }
    let rows: i64 = metadata.row_groups().iter().map(|g| g.num_rows()).sum();
    assert_eq!(rows, ROWS as i64);
    let footer = u32::from_le_bytes(file[file.len() - 8..file.len() - 4].try_into().unwrap());
    assert_eq!(next as usize + footer as usize + 8, file.len());
    let file_metadata = metadata.file_metadata();
    assert_eq!(file_metadata.num_rows(), ROWS as i64);
    assert!(file_metadata
        .created_by()
        .unwrap()
        .starts_with("parquet-rs"));
    assert!(file_metadata
        .key_value_metadata()
        .unwrap()
        .iter()
        .any(|kv| kv.key == "ARROW:schema"));
    assert_eq!(
        file_metadata.column_orders().map(Vec::len),
        Some(batch.num_columns())
    );
}

#[test]
fn an_outgrown_dictionary_continues_in_fallback_pages() {
    // Unique values: the string dictionary (100-byte values) passes 1 MiB after ~10 thousand
    // rows, the integer one after 131 thousand, inside the one row group, so later pages of
    // those chunks are plain (strings) or delta-packed (integers).
    let n = 200_000;
    let batch = strings_and_ints(
        StringArray::from_iter_values((0..n).map(|i| format!("{i:0>100}"))),
        Int64Array::from_iter((0..n as i64).map(|i| (i % 5 != 0).then_some(i * 7))),
    );
    let (back, metadata) = read(encode(
        &batch,
        vec![Dictionary, Dictionary],
        one_row_group(n),
    ));
    assert_eq!(back, batch);
    let encodings = |column: usize| -> Vec<Encoding> {
        metadata.row_group(0).column(column).encodings().collect()
    };
    assert!(
        encodings(0).contains(&Encoding::RLE_DICTIONARY),
        "{:?}",
        encodings(0)
    );
    assert!(
        encodings(0).contains(&Encoding::PLAIN),
        "{:?}",
        encodings(0)
    );
    assert!(
        encodings(1).contains(&Encoding::RLE_DICTIONARY),
        "{:?}",
        encodings(1)
    );
    assert!(
        encodings(1).contains(&Encoding::DELTA_BINARY_PACKED),
        "{:?}",
        encodings(1)
    );
}

#[test]
fn a_file_without_rows_keeps_its_schema() {
    let (batch, layouts) = table();
    let encoder =
        FileEncoder::try_new(Vec::new(), batch.schema(), layouts, properties(), false).unwrap();
    let (back, metadata) = read(Bytes::from(encoder.finish().unwrap()));
    assert_eq!(back.num_rows(), 0);
    assert_eq!(back.schema(), batch.schema());
    assert_eq!(metadata.num_row_groups(), 0);
}

#[test]
fn nested_columns_are_left_to_the_parquet_writer() {
    let list = arrow::array::ListArray::from_iter_primitive::<arrow::datatypes::Int64Type, _, _>(
        (0..100).map(|i| Some(vec![Some(i), None])),
    );
    let schema = Arc::new(Schema::new(vec![
        Field::new("list", list.data_type().clone(), false),
        Field::new("n", DataType::Int64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(list),
            Arc::new(Int64Array::from_iter_values(0..100)),
        ],
    )
    .unwrap();
    let (back, _) = read(encode(&batch, vec![Dictionary, Delta], properties()));
    assert_eq!(back, batch);
}

#[test]
fn timestamps_in_seconds_are_left_to_the_parquet_writer() {
    // Parquet has no seconds unit: the parquet crate rescales them, Ember must not write raw.
    let seconds = arrow::array::TimestampSecondArray::from_iter_values(0..1000);
    let schema = Arc::new(Schema::new(vec![Field::new(
        "at",
        DataType::Timestamp(TimeUnit::Second, None),
        false,
    )]));
    let batch = RecordBatch::try_new(schema, vec![Arc::new(seconds)]).unwrap();
    let (back, _) = read(encode(&batch, vec![Delta], properties()));
    assert_eq!(back, batch);
}
