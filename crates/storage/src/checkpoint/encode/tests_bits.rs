//! Tests of the bit-level encoders ([`delta`](super::delta), [`hybrid`](super::hybrid)):
//! every output is decoded by the parquet crate's own decoders, and compared with what the
//! parquet crate's encoders write for the same values (byte for byte where the layouts are
//! the same, by size otherwise). Data comes from a fixed-seed xorshift, so failures repeat.

use ::parquet::data_type::{DataType, Int32Type, Int64Type};
use ::parquet::encodings::decoding::{Decoder, DeltaBitPackDecoder};
use ::parquet::encodings::encoding::{DeltaBitPackEncoder, Encoder};
use ::parquet::encodings::rle::{RleDecoder, RleEncoder};
use bytes::Bytes;

use super::delta::{
    encode_delta_i32, encode_delta_i32_portable, encode_delta_i64, encode_delta_i64_portable,
    DeltaPage,
};
use super::hybrid::{
    bit_width, encode_hybrid, encode_hybrid_bytes, encode_hybrid_wide, encode_repeated,
    MAX_PACKED_GROUPS,
};
use super::values::IntSink;

/// Page sizes around every boundary: bit-packed groups (8), miniblocks (32, 64), blocks
/// (128, 256; a page of n values has n - 1 deltas).
const LENGTHS: &[usize] = &[
    0, 1, 2, 7, 8, 9, 31, 32, 33, 64, 65, 66, 127, 128, 129, 130, 255, 256, 257, 258, 1000, 100_000,
];

/// Bytes prepended to `out` before encoding: the encoders must append, not overwrite.
const PREFIX: &[u8] = &[0xAB, 0xCD];

/// xorshift64: deterministic, good enough to scatter bits.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// A value below `bound` (> 0).
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.below(from.len() as u64) as usize]
    }
}

/// Named INT64 pages of `n` values.
fn i64_pages(n: usize, rng: &mut Rng) -> Vec<(&'static str, Vec<i64>)> {
    let extremes = [i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX];
    let mut sorted = Vec::with_capacity(n);
    let mut at = 1_700_000_000_000_000i64;
    for _ in 0..n {
        at += rng.below(1000) as i64;
        sorted.push(at);
    }
    let mut descending = Vec::with_capacity(n);
    let mut at = -5i64;
    for _ in 0..n {
        at -= rng.below(70_000) as i64;
        descending.push(at);
    }
    vec![
        ("constant", vec![-42; n]),
        ("arithmetic", (0..n as i64).map(|i| 7 * i - 3).collect()),
        ("sorted", sorted),
        ("descending", descending),
        (
            "small range",
            (0..n).map(|_| rng.below(100) as i64 - 50).collect(),
        ),
        ("full range", (0..n).map(|_| rng.next() as i64).collect()),
        ("extremes", (0..n).map(|_| rng.pick(&extremes)).collect()),
        (
            "alternating extremes",
            (0..n)
                .map(|i| if i % 2 == 0 { i64::MIN } else { i64::MAX })
                .collect(),
        ),
        (
            "mixed widths",
            mixed_widths(n, 64, rng).iter().map(|&v| v as i64).collect(),
        ),
    ]
}

/// Named INT32 pages of `n` values.
fn i32_pages(n: usize, rng: &mut Rng) -> Vec<(&'static str, Vec<i32>)> {
    let extremes = [i32::MIN, i32::MIN + 1, -1, 0, 1, i32::MAX - 1, i32::MAX];
    let mut sorted = Vec::with_capacity(n);
    let mut at = 19_000i32;
    for _ in 0..n {
        at = at.wrapping_add(rng.below(3) as i32);
        sorted.push(at);
    }
    vec![
        ("constant", vec![7; n]),
        ("arithmetic", (0..n as i32).map(|i| 1 - 5 * i).collect()),
        ("sorted", sorted),
        (
            "small range",
            (0..n).map(|_| rng.below(100) as i32 - 50).collect(),
        ),
        ("full range", (0..n).map(|_| rng.next() as i32).collect()),
        ("extremes", (0..n).map(|_| rng.pick(&extremes)).collect()),
        (
            "alternating extremes",
            (0..n)
                .map(|i| if i % 2 == 0 { i32::MIN } else { i32::MAX })
                .collect(),
        ),
        (
            "mixed widths",
            mixed_widths(n, 32, rng).iter().map(|&v| v as i32).collect(),
        ),
    ]
}

/// Values whose width changes every 32 values (through every width 0..=`max_width`), so the
/// miniblocks of a page between them use every packing kernel.
fn mixed_widths(n: usize, max_width: u32, rng: &mut Rng) -> Vec<u64> {
    (0..n)
        .map(|i| {
            let width = (i / 32) as u32 % (max_width + 1);
            rng.next().checked_shr(64 - width).unwrap_or(0)
        })
        .collect()
}

/// `values` encoded by `encode` after [`PREFIX`], which must survive; the encoding alone.
fn encoded<T>(values: &[T], encode: impl Fn(&[T], &mut Vec<u8>)) -> Vec<u8> {
    let mut out = PREFIX.to_vec();
    encode(values, &mut out);
    assert_eq!(&out[..PREFIX.len()], PREFIX, "the prefix was overwritten");
    out.split_off(PREFIX.len())
}

/// Decodes a `DELTA_BINARY_PACKED` page of `n` values with the parquet crate, checking it
/// ends exactly where the encoding does. (A macro: the decoder's bounds name `num` traits.)
macro_rules! parquet_delta_decode {
    ($ty:ty, $page:expr, $n:expr) => {{
        let page: &[u8] = &$page;
        let n: usize = $n;
        let mut decoder = DeltaBitPackDecoder::<$ty>::new();
        decoder.set_data(Bytes::copy_from_slice(page), n).unwrap();
        let mut values = vec![Default::default(); n];
        assert_eq!(decoder.get(&mut values).unwrap(), n);
        assert_eq!(
            decoder.get_offset(),
            page.len(),
            "the decoder stopped elsewhere"
        );
        values
    }};
}

/// The bit widths of the first block of a delta page (after the header and the minimum).
fn first_block_widths(page: &[u8]) -> [u8; 4] {
    // Five varints: block size, miniblocks, count, first value, minimum delta.
    let mut at = 0;
    for _ in 0..5 {
        while page[at] >= 0x80 {
            at += 1;
        }
        at += 1;
    }
    page[at..at + 4].try_into().unwrap()
}

/// The parquet crate's `DELTA_BINARY_PACKED` encoding of `values`.
fn parquet_delta_encode<T: DataType>(values: &[T::T]) -> Vec<u8> {
    let mut encoder = DeltaBitPackEncoder::<T>::new();
    encoder.put(values).unwrap();
    encoder.flush_buffer().unwrap().to_vec()
}

#[test]
fn encode_delta_i64_round_trips_and_matches_parquet() {
    let mut rng = Rng::new(0x1234_5678);
    for &n in LENGTHS {
        for (name, values) in i64_pages(n, &mut rng) {
            let page = encoded(&values, encode_delta_i64);
            let decoded = parquet_delta_decode!(Int64Type, &page, n);
            assert!(decoded == values, "{name}, {n} values: decoded differently");
            // Same block layout as parquet-rs's INT64 writer, so the same bytes.
            let theirs = parquet_delta_encode::<Int64Type>(&values);
            assert!(
                page == theirs,
                "{name}, {n} values: differs from parquet-rs"
            );
        }
    }
}

#[test]
fn encode_delta_i32_round_trips_and_matches_parquet() {
    let mut rng = Rng::new(0x9e37_79b9);
    for &n in LENGTHS {
        for (name, values) in i32_pages(n, &mut rng) {
            let page = encoded(&values, encode_delta_i32);
            let decoded = parquet_delta_decode!(Int32Type, &page, n);
            assert!(decoded == values, "{name}, {n} values: decoded differently");
            // Same block layout as parquet-rs's INT32 writer, so the same bytes.
            let theirs = parquet_delta_encode::<Int32Type>(&values);
            assert!(
                page == theirs,
                "{name}, {n} values: differs from parquet-rs"
            );
        }
    }
}

#[test]
fn encode_delta_portable_code_writes_the_same_pages() {
    // On x86-64 with AVX2 the tests above ran the AVX2 build; this checks the build that
    // CPUs without it run (on other CPUs the two are the same code).
    let mut rng = Rng::new(31);
    for &n in LENGTHS {
        for (name, values) in i64_pages(n, &mut rng) {
            let portable = encoded(&values, encode_delta_i64_portable);
            assert!(
                portable == encoded(&values, encode_delta_i64),
                "{name}, {n} values"
            );
        }
        for (name, values) in i32_pages(n, &mut rng) {
            let portable = encoded(&values, encode_delta_i32_portable);
            assert!(
                portable == encoded(&values, encode_delta_i32),
                "{name}, {n} values"
            );
        }
    }
}

#[test]
fn a_delta_page_fed_in_pieces_is_the_page_encoded_whole() {
    // Columns hand a page its values batch by batch (and a decimal column's as `i128`s
    // narrowed on the way in); blocks are packed as they fill, across batch boundaries.
    let mut rng = Rng::new(77);
    let mut page = DeltaPage::<i64>::with_page_rows(100_000);
    for &n in LENGTHS {
        for (name, values) in i64_pages(n, &mut rng) {
            let wide: Vec<i128> = values.iter().map(|&v| i128::from(v)).collect();
            let mut rest = &wide[..];
            while !rest.is_empty() {
                // Pieces within a block and pieces of many blocks (packed from the piece).
                let most = if rng.below(2) == 0 { 300 } else { 3000 };
                let piece = (1 + rng.below(most) as usize).min(rest.len());
                let (now, later) = rest.split_at(piece);
                page.take(now, |v| v as i64);
                rest = later;
            }
            // The page is reused, as a column's is from one page to the next.
            let mut out = PREFIX.to_vec();
            let blocks = page.finish(&mut out);
            out.extend_from_slice(&blocks);
            assert!(
                out[PREFIX.len()..] == encoded(&values, encode_delta_i64),
                "{name}, {n} values"
            );
        }
    }
    let mut page = DeltaPage::<i32>::default();
    for &n in LENGTHS {
        for (name, values) in i32_pages(n, &mut rng) {
            for piece in values.chunks(129) {
                page.take(piece, |v| v);
            }
            let mut out = Vec::new();
            let blocks = page.finish(&mut out);
            out.extend_from_slice(&blocks);
            assert!(
                out == encoded(&values, encode_delta_i32),
                "{name}, {n} values"
            );
        }
    }
}

#[test]
fn encode_delta_empty_and_single_pages_are_header_only() {
    // Block size (256 = varint 0x80 0x02 for INT64, 128 = 0x80 0x01 for INT32), 4
    // miniblocks, the count, the first value zigzag encoded (0 when there is none).
    assert_eq!(encoded(&[], encode_delta_i64), [0x80, 0x02, 4, 0, 0]);
    assert_eq!(encoded(&[], encode_delta_i32), [0x80, 0x01, 4, 0, 0]);
    assert_eq!(encoded(&[-2], encode_delta_i64), [0x80, 0x02, 4, 1, 3]);
    assert_eq!(
        encoded(&[i32::MIN], encode_delta_i32),
        parquet_delta_encode::<Int32Type>(&[i32::MIN])
    );
    let max = encoded(&[i64::MAX], encode_delta_i64);
    assert_eq!(parquet_delta_decode!(Int64Type, &max, 1), [i64::MAX]);
}

#[test]
fn encode_delta_wraps_the_deltas_of_extreme_values() {
    // MIN, MAX alternate: deltas -1 and 1 (wrapping), offsets 0 and 2 — width 2, not 64.
    let values: Vec<i64> = (0..64)
        .map(|i| if i % 2 == 0 { i64::MIN } else { i64::MAX })
        .collect();
    let page = encoded(&values, encode_delta_i64);
    assert_eq!(
        first_block_widths(&page),
        [2, 0, 0, 0],
        "63 deltas: one miniblock of 64"
    );
    assert_eq!(parquet_delta_decode!(Int64Type, &page, 64), values);
    // Deltas MIN, MIN + 1, MAX - 1 and 1 span the whole range: one 64-bit miniblock.
    let values = [0, i64::MIN, 1, i64::MAX, i64::MIN];
    let page = encoded(&values, encode_delta_i64);
    assert_eq!(first_block_widths(&page), [64, 0, 0, 0]);
    assert_eq!(
        page.len(),
        5 + 10 + 4 + 64 * 8,
        "header, minimum, widths, 64 × 64 bits"
    );
    assert_eq!(parquet_delta_decode!(Int64Type, &page, 5), values);
    // INT32 deltas wrap in 32 bits: never wider than 32.
    let values = [i32::MIN, i32::MAX, 0, i32::MIN, -1, i32::MAX];
    let page = encoded(&values, encode_delta_i32);
    assert_eq!(first_block_widths(&page), [32, 0, 0, 0]);
    assert_eq!(
        parquet_delta_decode!(Int32Type, &page, values.len()),
        values
    );
}

#[test]
fn encode_delta_packs_every_width() {
    let mut rng = Rng::new(5);
    for width in 0..=64u32 {
        // Deltas from 0 to 2^width - 1 (wrapping), so offsets need exactly `width` bits.
        let mask = u64::MAX.checked_shr(64 - width).unwrap_or(0);
        let mut deltas: Vec<u64> = (0..99).map(|_| rng.next() & mask).collect();
        deltas[3] = 0;
        deltas[40] = mask;
        let values: Vec<i64> = std::iter::once(-3i64)
            .chain(deltas.iter().scan(-3i64, |at, &d| {
                *at = at.wrapping_add(d as i64);
                Some(*at)
            }))
            .collect();
        let page = encoded(&values, encode_delta_i64);
        assert_eq!(first_block_widths(&page), [width as u8, width as u8, 0, 0]);
        assert_eq!(
            parquet_delta_decode!(Int64Type, &page, values.len()),
            values
        );
        assert!(
            page == parquet_delta_encode::<Int64Type>(&values),
            "width {width}"
        );
        if width <= 32 {
            let values: Vec<i32> = values.iter().map(|&v| v as i32).collect();
            let page = encoded(&values, encode_delta_i32);
            // 32 + 32 + 32 + 3 deltas: the 0 and the mask are in the first two miniblocks.
            let widths = first_block_widths(&page);
            assert_eq!(widths[..2], [width as u8; 2]);
            assert!(widths[2..].iter().all(|&w| w <= width as u8));
            assert_eq!(
                parquet_delta_decode!(Int32Type, &page, values.len()),
                values
            );
            assert!(
                page == parquet_delta_encode::<Int32Type>(&values),
                "width {width}"
            );
        }
    }
}

/// The widths the hybrid encoding is tested at: levels, dictionary indices, the limit.
const WIDTHS: &[u8] = &[0, 1, 2, 3, 7, 8, 13, 20, 32];

/// Named pages of `n` values below 2^`width`.
fn hybrid_pages(n: usize, width: u8, rng: &mut Rng) -> Vec<(&'static str, Vec<u32>)> {
    let max = (1u64 << width) - 1;
    let random = |rng: &mut Rng| (rng.next() & max) as u32;
    let runs = |rng: &mut Rng, longest: u64| {
        let mut values = Vec::with_capacity(n);
        while values.len() < n {
            let (len, value) = (1 + rng.below(longest) as usize, random(rng));
            values.extend(std::iter::repeat_n(value, len.min(n - values.len())));
        }
        values
    };
    let fixed_runs = |rng: &mut Rng, len: usize| {
        let mut values = Vec::with_capacity(n);
        let mut value = 0;
        while values.len() < n {
            // A new value each run (where the width allows two).
            let next = random(rng);
            value = if next == value && max > 0 {
                next ^ 1
            } else {
                next
            };
            values.extend(std::iter::repeat_n(value, len.min(n - values.len())));
        }
        values
    };
    vec![
        ("zeros", vec![0; n]),
        ("max", vec![max as u32; n]),
        ("random", (0..n).map(|_| random(rng)).collect()),
        (
            "alternating",
            (0..n)
                .map(|i| if i % 2 == 0 { 0 } else { max as u32 })
                .collect(),
        ),
        ("short runs", runs(rng, 12)),
        ("long runs", runs(rng, 300)),
        ("runs of 7", fixed_runs(rng, 7)),
        ("runs of 9", fixed_runs(rng, 9)),
        ("runs of 16", fixed_runs(rng, 16)),
        (
            "sparse nulls",
            (0..n)
                .map(|_| if rng.below(50) == 0 { 0 } else { max as u32 })
                .collect(),
        ),
        ("sorted", {
            let mut values: Vec<u32> = (0..n).map(|_| random(rng)).collect();
            values.sort_unstable();
            values
        }),
    ]
}

/// One run of a hybrid encoding.
#[derive(Debug, PartialEq)]
enum Run {
    Rle { count: u64, value: u32 },
    Packed { groups: u64 },
}

/// Splits a hybrid encoding into its runs, checking each is complete.
fn parse_runs(mut bytes: &[u8], width: u8) -> Vec<Run> {
    let mut runs = Vec::new();
    while !bytes.is_empty() {
        let mut header = 0u64;
        let mut shift = 0;
        loop {
            let byte = bytes[0];
            bytes = &bytes[1..];
            header |= u64::from(byte & 0x7f) << shift;
            shift += 7;
            if byte < 0x80 {
                break;
            }
        }
        if header & 1 == 1 {
            let groups = header >> 1;
            bytes = &bytes[groups as usize * usize::from(width)..];
            runs.push(Run::Packed { groups });
        } else {
            let value_bytes = usize::from(width).div_ceil(8);
            let mut value = [0u8; 4];
            value[..value_bytes].copy_from_slice(&bytes[..value_bytes]);
            bytes = &bytes[value_bytes..];
            runs.push(Run::Rle {
                count: header >> 1,
                value: u32::from_le_bytes(value),
            });
        }
    }
    runs
}

/// Checks the run structure of the encoding of `n` values: no empty runs, no run longer
/// than the limits, and padding (fewer than 8 values) only at the end of a last packed run.
fn check_runs(page: &[u8], width: u8, n: usize) {
    let runs = parse_runs(page, width);
    let mut total = 0;
    for run in &runs {
        match *run {
            Run::Rle { count, .. } => {
                assert!((1..=i32::MAX as u64).contains(&count));
                total += count;
            }
            Run::Packed { groups } => {
                assert!((1..=MAX_PACKED_GROUPS as u64).contains(&groups));
                total += groups * 8;
            }
        }
    }
    let padding = total - n as u64;
    assert!(padding < 8, "{padding} values of padding");
    if padding > 0 {
        assert!(
            matches!(runs.last(), Some(Run::Packed { .. })),
            "padding in an RLE run"
        );
    }
}

/// Decodes a hybrid encoding of `n` values with the parquet crate.
fn parquet_hybrid_decode(page: &[u8], width: u8, n: usize) -> Vec<u32> {
    let mut decoder = RleDecoder::new(width);
    decoder.set_data(Bytes::copy_from_slice(page)).unwrap();
    let mut values = vec![0u32; n];
    assert_eq!(decoder.get_batch(&mut values).unwrap(), n);
    values
}

/// The parquet crate's hybrid encoding of `values`.
fn parquet_hybrid_encode(values: &[u32], width: u8) -> Vec<u8> {
    let mut encoder = RleEncoder::new(width, 1024);
    for &value in values {
        encoder.put(u64::from(value));
    }
    encoder.consume()
}

#[test]
fn encode_hybrid_round_trips_and_matches_parquet() {
    let mut rng = Rng::new(0xdead_beef);
    let mut sizes = (0usize, 0usize);
    for &width in WIDTHS {
        for &n in LENGTHS {
            for (name, values) in hybrid_pages(n, width, &mut rng) {
                let page = encoded(&values, |v, out| encode_hybrid(v, width, out));
                check_runs(&page, width, n);
                let decoded = parquet_hybrid_decode(&page, width, n);
                assert!(
                    decoded == values,
                    "{name}, width {width}, {n} values: decoded differently"
                );
                let theirs = parquet_hybrid_encode(&values, width);
                // From 3 bits up parquet-rs makes the same choices, but ends a bit-packed
                // run at 63 groups (504 values), where this encoder goes on to
                // MAX_PACKED_GROUPS. At 1 and 2 bits it also makes RLE runs of 8 to 23
                // values, which this encoder packs: smaller on flags, a little larger (a
                // few bytes, 2 % at most) on some run lengths; never much larger.
                if width >= 3 && n <= 504 {
                    assert!(
                        page == theirs,
                        "{name}, width {width}, {n} values: differs from parquet-rs"
                    );
                } else {
                    assert!(
                        page.len() <= theirs.len() + theirs.len() / 50 + 4,
                        "{name}, width {width}, {n} values: {} bytes, parquet-rs {}",
                        page.len(),
                        theirs.len()
                    );
                }
                sizes.0 += page.len();
                sizes.1 += theirs.len();
            }
        }
    }
    assert!(
        sizes.0 <= sizes.1,
        "hybrid pages: {} bytes, parquet-rs {}",
        sizes.0,
        sizes.1
    );
}

#[test]
fn narrow_widths_encode_as_the_u32_path_does() {
    // Widths up to 8 go through bytes; the bytes written must be exactly those of the
    // general path, runs, padding and run caps included.
    let mut rng = Rng::new(0x5eed);
    for width in 1..=8u8 {
        for n in [0, 1, 7, 8, 9, 63, 64, 65, 1000, MAX_PACKED_GROUPS * 8 + 77] {
            for (name, values) in hybrid_pages(n, width, &mut rng) {
                let narrow = encoded(&values, |v, out| encode_hybrid(v, width, out));
                let wide = encoded(&values, |v, out| encode_hybrid_wide(v, width, out));
                assert!(narrow == wide, "{name}, width {width}, {n} values");
            }
        }
    }
}

#[test]
fn encode_hybrid_packs_every_width() {
    let mut rng = Rng::new(77);
    for width in 0..=32u8 {
        let max = (1u64 << width) - 1;
        for n in [5, 8, 40, 1003] {
            let values: Vec<u32> = (0..n).map(|_| (rng.next() & max) as u32).collect();
            let page = encoded(&values, |v, out| encode_hybrid(v, width, out));
            check_runs(&page, width, n);
            assert_eq!(
                parquet_hybrid_decode(&page, width, n),
                values,
                "width {width}, {n} values"
            );
        }
    }
}

#[test]
fn encode_hybrid_gives_runs_their_own_rle_run_only_where_it_saves_bytes() {
    let mixed = [0u32, 1, 0, 1, 0, 1, 0, 1];
    let page_of = |parts: &[&[u32]], width: u8| {
        let values: Vec<u32> = parts.concat();
        let page = encoded(&values, |v, out| encode_hybrid(v, width, out));
        check_runs(&page, width, values.len());
        assert_eq!(parquet_hybrid_decode(&page, width, values.len()), values);
        parse_runs(&page, width)
    };
    // 16 equal 1-bit values inside packed data take 2 bytes packed; as an RLE run, 2 bytes
    // and a new packed header after it. They stay packed.
    let ones = [1u32; 16];
    assert_eq!(
        page_of(&[&mixed, &ones, &mixed], 1),
        [Run::Packed { groups: 4 }]
    );
    // At 2 bits they take 4 bytes packed: an RLE run is smaller.
    assert_eq!(
        page_of(&[&mixed, &ones, &mixed], 2),
        [
            Run::Packed { groups: 1 },
            Run::Rle {
                count: 16,
                value: 1
            },
            Run::Packed { groups: 1 },
        ]
    );
    // Right after an RLE run no packed run is split: 9 equal 2-bit values (18 bits) are
    // their own run too, as parquet-rs would make them.
    assert_eq!(
        page_of(&[&[3; 30], &[2; 9], &mixed], 2),
        [
            Run::Rle {
                count: 30,
                value: 3
            },
            Run::Rle { count: 9, value: 2 },
            Run::Packed { groups: 1 },
        ]
    );
}

#[test]
fn encode_hybrid_finds_the_shortest_worthwhile_runs_anywhere_in_a_block() {
    // Pages long enough for the encoder's screening of 8 groups at a time, with a run of
    // 2-bit values starting at each group of the second block: 12 values pay for an RLE run
    // that splits a packed run (24 bits), 11 do not.
    let mixed: Vec<u32> = (0..200).map(|i| i % 3).collect();
    for group in 0..8 {
        for (count, worth) in [(11, false), (12, true), (13, true)] {
            let start = 64 + 8 * group;
            let values = [&mixed[..start], &vec![3; count][..], &mixed[..70]].concat();
            let narrow: Vec<u8> = values.iter().map(|&v| v as u8).collect();
            let pages = [
                encoded(&narrow, |v, out| encode_hybrid_bytes(v, 2, out)),
                encoded(&values, |v, out| encode_hybrid_wide(v, 2, out)),
            ];
            for page in pages {
                check_runs(&page, 2, values.len());
                assert_eq!(parquet_hybrid_decode(&page, 2, values.len()), values);
                let rle = parse_runs(&page, 2)
                    .into_iter()
                    .filter(|run| matches!(run, Run::Rle { .. }))
                    .collect::<Vec<_>>();
                let expected = if worth {
                    vec![Run::Rle {
                        count: count as u64,
                        value: 3,
                    }]
                } else {
                    vec![]
                };
                assert_eq!(rle, expected, "a run of {count} at group {group}");
            }
        }
    }
    // Right after an RLE run a run needs only its own 8 values, also when the screening
    // sees it first.
    let values = [&[1; 64][..], &[2; 9][..], &mixed[..80]].concat();
    let narrow: Vec<u8> = values.iter().map(|&v| v as u8).collect();
    let page = encoded(&narrow, |v, out| encode_hybrid_bytes(v, 2, out));
    assert_eq!(parquet_hybrid_decode(&page, 2, values.len()), values);
    assert_eq!(
        parse_runs(&page, 2)[..2],
        [
            Run::Rle {
                count: 64,
                value: 1
            },
            Run::Rle { count: 9, value: 2 },
        ]
    );
}

#[test]
fn encode_hybrid_long_runs_are_single_runs() {
    let n = (1 << 21) + 5;
    for &width in &[1u8, 3, 8, 20, 32] {
        let max = ((1u64 << width) - 1) as u32;
        // 3 odd values, a run of over 2^21 (starting off a group boundary), then 2 more.
        let mut values = vec![1, 0, 1];
        values.extend(std::iter::repeat_n(max, n));
        values.extend([0, 1]);
        let page = encoded(&values, |v, out| encode_hybrid(v, width, out));
        check_runs(&page, width, values.len());
        let runs = parse_runs(&page, width);
        // One packed group holding the first 8 values, the rest of the run, a padded group.
        assert_eq!(runs.len(), 3, "width {width}: {runs:?}");
        assert_eq!(
            runs[1],
            Run::Rle {
                count: n as u64 - 5,
                value: max
            }
        );
        assert_eq!(parquet_hybrid_decode(&page, width, values.len()), values);
    }
}

#[test]
fn encode_hybrid_splits_packed_runs_at_the_limit() {
    let values: Vec<u32> = (0..MAX_PACKED_GROUPS * 8 * 2 + 3)
        .map(|i| (i % 2) as u32)
        .collect();
    let page = encoded(&values, |v, out| encode_hybrid(v, 1, out));
    let runs = parse_runs(&page, 1);
    let groups = MAX_PACKED_GROUPS as u64;
    assert_eq!(
        runs,
        [
            Run::Packed { groups },
            Run::Packed { groups },
            Run::Packed { groups: 1 }
        ]
    );
    assert_eq!(parquet_hybrid_decode(&page, 1, values.len()), values);
}

#[test]
fn encode_repeated_is_one_rle_run() {
    for &width in WIDTHS {
        let value = ((1u64 << width) - 1) as u32;
        for count in [1, 7, 8, 9, 1000, (1 << 20) + 1] {
            let mut page = Vec::new();
            encode_repeated(value, count, width, &mut page);
            assert_eq!(
                parse_runs(&page, width),
                [Run::Rle {
                    count: count as u64,
                    value
                }]
            );
            assert_eq!(
                parquet_hybrid_decode(&page, width, count),
                vec![value; count]
            );
            let mut same = Vec::new();
            encode_hybrid(&vec![value; count], width, &mut same);
            assert_eq!(page, same, "width {width}, {count} values");
        }
    }
    let mut page = PREFIX.to_vec();
    encode_repeated(1, 0, 1, &mut page);
    assert_eq!(page, PREFIX, "no values, no run");
    // Past i32::MAX a run is split (readers keep counts in 32 bits); nothing is allocated.
    let mut page = Vec::new();
    encode_repeated(5, i32::MAX as usize + 10, 3, &mut page);
    assert_eq!(
        parse_runs(&page, 3),
        [
            Run::Rle {
                count: i32::MAX as u64,
                value: 5
            },
            Run::Rle {
                count: 10,
                value: 5
            }
        ]
    );
}

#[test]
fn encode_hybrid_bit_width() {
    assert_eq!(bit_width(0), 0);
    assert_eq!(bit_width(1), 1);
    assert_eq!(bit_width(2), 2);
    assert_eq!(bit_width(3), 2);
    assert_eq!(bit_width(255), 8);
    assert_eq!(bit_width(256), 9);
    assert_eq!(bit_width(u32::MAX), 32);
}

/// Release-mode timings, run by hand:
/// `cargo test --release -p ember-storage encode_speed -- --ignored --nocapture`.
/// Pages of 64Ki values (in cache, as the checkpoint writer encodes them) and of 1Mi.
#[test]
#[ignore = "a timing, not a test"]
fn encode_speed() {
    for n in [1 << 16, 1 << 20] {
        println!("{n} values per page:");
        time_encoders(n);
    }
}

/// Prints the ns per value of each encoder, and of the parquet crate's, on pages of `n`.
fn time_encoders(n: usize) {
    use std::hint::black_box;
    use std::time::Instant;

    /// The fastest of 30 runs: the machine's noise only ever adds time.
    fn time(name: &str, values: usize, mut encode: impl FnMut(&mut Vec<u8>)) {
        let mut out = Vec::new();
        encode(&mut out); // warm up, and size the buffer
        let bytes = out.len();
        let mut best = f64::MAX;
        for _ in 0..30 {
            out.clear();
            let start = Instant::now();
            encode(black_box(&mut out));
            best = best.min(start.elapsed().as_nanos() as f64 / values as f64);
        }
        println!("  {name:<46} {best:>6.2} ns/value  {bytes:>9} bytes");
    }

    let mut rng = Rng::new(42);
    let mut at = 0i64;
    let timestamps: Vec<i64> = (0..n)
        .map(|_| {
            at += rng.below(1 << 10) as i64;
            at
        })
        .collect();
    let wide: Vec<i64> = (0..n).map(|_| (rng.next() >> 40) as i64).collect();
    let full: Vec<i64> = (0..n).map(|_| rng.next() as i64).collect();
    let ids: Vec<i32> = (0..n as i32).collect();
    let wide32: Vec<i32> = (0..n).map(|_| (rng.next() >> 40) as i32).collect();

    for (name, values) in [
        ("i64 sorted, steps < 2^10", &timestamps),
        ("i64 random 24-bit", &wide),
        ("i64 full range", &full),
    ] {
        time(&format!("delta {name}"), n, |out| {
            encode_delta_i64(values, out)
        });
        time(&format!("  parquet-rs delta {name}"), n, |out| {
            out.extend_from_slice(&parquet_delta_encode::<Int64Type>(values))
        });
    }
    // Decimal(15, 2) prices as Arrow holds them (`i128`), narrowed on their way in.
    let decimals: Vec<i128> = wide.iter().map(|&v| i128::from(v)).collect();
    time("delta i64 random 24-bit, from i128 batches", n, |out| {
        let mut page = DeltaPage::<i64>::default();
        for batch in decimals.chunks(8192) {
            page.take(batch, |v| v as i64);
        }
        let blocks = page.finish(out);
        out.extend_from_slice(&blocks);
    });
    for (name, values) in [("i32 0..n", &ids), ("i32 random 24-bit", &wide32)] {
        time(&format!("delta {name}"), n, |out| {
            encode_delta_i32(values, out)
        });
        time(&format!("  parquet-rs delta {name}"), n, |out| {
            out.extend_from_slice(&parquet_delta_encode::<Int32Type>(values))
        });
    }
    for width in [1u8, 2, 4, 8, 13, 20] {
        let max = (1u64 << width) - 1;
        let random: Vec<u32> = (0..n).map(|_| (rng.next() & max) as u32).collect();
        let mut runs = Vec::with_capacity(n);
        while runs.len() < n {
            let len = (1 + rng.below(40) as usize).min(n - runs.len());
            runs.extend(std::iter::repeat_n((rng.next() & max) as u32, len));
        }
        for (name, values) in [("random", &random), ("runs of 1..40", &runs)] {
            time(&format!("hybrid width {width}, {name}"), n, |out| {
                encode_hybrid(values, width, out)
            });
            time(
                &format!("  parquet-rs hybrid width {width}, {name}"),
                n,
                |out| out.extend_from_slice(&parquet_hybrid_encode(values, width)),
            );
        }
    }
    let levels: Vec<u32> = (0..n).map(|_| u32::from(rng.below(100) != 0)).collect();
    time("hybrid width 1, 1% nulls", n, |out| {
        encode_hybrid(&levels, 1, out)
    });
    let ones = vec![1; n];
    time("hybrid width 1, no nulls", n, |out| {
        encode_hybrid(&ones, 1, out)
    });
    // TPC-H's l_linestatus / l_returnflag codes: 1 to 7 lines per order, one value per
    // order (status) or per line for half the orders (return flag).
    let (mut status, mut flag) = (Vec::with_capacity(n), Vec::with_capacity(n));
    while status.len() < n {
        let lines = (1 + rng.below(7) as usize).min(n - status.len());
        let (old, shipped) = (rng.below(2) as u8, rng.below(2) == 0);
        status.extend(std::iter::repeat_n(old, lines));
        for _ in 0..lines {
            flag.push(if shipped { rng.below(2) as u8 } else { 2 });
        }
    }
    // Decimal(15, 2) discounts (0.00 to 0.10) and quantities (1.00 to 50.00) as Arrow holds
    // them, to dictionary codes, batch by batch, the page's codes cleared as a page's are.
    let discounts: Vec<i128> = (0..n).map(|_| i128::from(rng.below(11))).collect();
    let quantities: Vec<i128> = (0..n)
        .map(|_| 100 * i128::from(1 + rng.below(50)))
        .collect();
    for (name, values) in [("discounts", &discounts), ("quantities", &quantities)] {
        let mut dictionary = super::dictionary::IntDictionary::<i64>::default();
        time(
            &format!("int dictionary codes, {name} from i128"),
            n,
            |_| {
                dictionary.pages.codes.clear();
                for batch in values.chunks(8192) {
                    dictionary.take(batch, |v| v as i64);
                }
            },
        );
    }
    // The flags' bytes themselves ('F'/'O', 'A'/'N'/'R') to their dictionary codes.
    let letters: Vec<u8> = flag.iter().map(|&f| b"ANR"[usize::from(f)]).collect();
    let mut table = super::single_bytes::SingleByteCodes::default();
    for (code, &letter) in b"ANR".iter().enumerate() {
        table.set(letter, code as u32);
    }
    time("single-byte codes, flag letters", n, |out| {
        assert!(table.extend_narrow(out, &letters));
    });
    time("hybrid bytes width 1, status per order", n, |out| {
        encode_hybrid_bytes(&status, 1, out)
    });
    time("hybrid bytes width 2, flag per line or order", n, |out| {
        encode_hybrid_bytes(&flag, 2, out)
    });
    let random: Vec<u8> = (0..n).map(|_| rng.below(50) as u8).collect();
    time("hybrid bytes width 6, random below 50", n, |out| {
        encode_hybrid_bytes(&random, 6, out)
    });
}
