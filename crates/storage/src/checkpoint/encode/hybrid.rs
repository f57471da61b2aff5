//! The Parquet RLE / bit-packing hybrid encoding (`RLE = 3` in the spec's encodings page):
//! definition levels and dictionary indices.
//!
//! The input is cut into groups of 8 values, counted from the start of the current bit-packed
//! run. A group whose 8 values are equal starts an RLE run, which then takes every following
//! equal value; other groups are bit-packed, consecutive ones under one header. These are the
//! choices parquet-rs's `RleEncoder` makes (so the output is byte for byte the same whenever
//! its bit-packed runs are short enough not to hit its 63-group cap), found with one
//! comparison of 8 values per group instead of a branch per value, and packed by kernels
//! specialised to each bit width.
//!
//! The spec's grammar, for reference:
//!
//! ```text
//! bit-packed-run := varint((groups << 1) | 1) then groups * bit_width bytes (8 values per group, LSB first)
//! rle-run        := varint(count << 1) then the value in ceil(bit_width / 8) little-endian bytes
//! ```

/// Values per bit-packed group: the spec packs values 8 at a time, so a group of 8 `w`-bit
/// values is exactly `w` bytes.
const GROUP: usize = 8;

/// The most groups one bit-packed run holds. The header is a varint, so the spec sets no
/// limit; this one bounds what a reader buffers per run (parquet-java allocates an `int[]`
/// of the run's values and computes its byte length in an `int`) and keeps the run within
/// L2 cache between finding its end and packing it, at a cost of 2 header bytes per 32,768
/// values (parquet-rs pays 1 byte per 504).
pub(super) const MAX_PACKED_GROUPS: usize = 4096;

/// The longest RLE run: Arrow C++ reads a run header as a `u32` varint and rejects counts
/// above `i32::MAX`, and parquet-rs keeps the count in a `u32`. Longer runs are split.
const MAX_RLE_RUN: usize = i32::MAX as usize;

/// Number of bits needed for `max_value` (0 for 0).
pub(crate) fn bit_width(max_value: u32) -> u8 {
    (u32::BITS - max_value.leading_zeros()) as u8
}

/// Appends the hybrid encoding of `values` (each < 2^bit_width, bit_width 0..=32) to `out`,
/// without any length prefix: callers add the 4-byte length of V1 definition levels, or the
/// bit-width byte of dictionary indices.
///
/// Uses RLE runs for repeated values (8 or more equal values from a group boundary) and
/// bit-packed groups of 8 otherwise; the last group is padded with zeros, which readers skip
/// because they know the number of values from the page header.
pub(crate) fn encode_hybrid(values: &[u32], bit_width: u8, out: &mut Vec<u8>) {
    assert!(bit_width <= 32, "hybrid bit width {bit_width} > 32");
    debug_assert!(
        bit_width == 32 || values.iter().all(|&v| v >> bit_width == 0),
        "a value does not fit in {bit_width} bits"
    );
    if bit_width == 0 {
        // Every value is 0: one RLE run, with no value bytes.
        encode_repeated(0, values.len(), 0, out);
        return;
    }
    // An upper bound for packed data (each group of 8 costs at most `bit_width` bytes plus
    // a run header when runs alternate); RLE runs only shrink it.
    out.reserve(values.len().div_ceil(GROUP) * (usize::from(bit_width) + 1) + 16);

    let mut packed_from = 0; // start of the pending bit-packed run
    let mut at = 0; // start of the next group to look at
    loop {
        // Eight groups at once while none of them is uniform (nearly always, for codes of
        // values without runs), within the current run's group cap; the groups before the
        // first uniform one are skipped, and the group-by-group step below takes that one.
        if let Some(block) = values.get(at..at + BLOCK) {
            if at + BLOCK - packed_from <= MAX_PACKED_GROUPS * GROUP {
                let uniform = uniform_groups(block.try_into().expect("a block"));
                if uniform == 0 {
                    at += BLOCK;
                    if at - packed_from == MAX_PACKED_GROUPS * GROUP {
                        push_bit_packed(&values[packed_from..at], bit_width, out);
                        packed_from = at;
                    }
                    continue;
                }
                at += GROUP * uniform.trailing_zeros() as usize;
            }
        }
        let Some(group) = values.get(at..at + GROUP) else {
            break;
        };
        let first = group[0];
        if is_uniform(group) {
            let end = run_end(values, at + GROUP, first);
            push_bit_packed(&values[packed_from..at], bit_width, out);
            encode_repeated(first, end - at, bit_width, out);
            at = end;
            packed_from = end;
        } else {
            at += GROUP;
            if at - packed_from == MAX_PACKED_GROUPS * GROUP {
                push_bit_packed(&values[packed_from..at], bit_width, out);
                packed_from = at;
            }
        }
    }

    // Fewer than 8 values are left. On their own and all equal they are a (short) RLE run,
    // cheaper than a padded group when the width exceeds a byte; otherwise they end the
    // bit-packed run, zero padded.
    let tail = &values[at..];
    if packed_from == at && !tail.is_empty() && is_uniform(tail) {
        encode_repeated(tail[0], tail.len(), bit_width, out);
    } else {
        push_bit_packed(&values[packed_from..], bit_width, out);
    }
}

/// Appends the hybrid encoding of `count` copies of `value`: a single RLE run (split only
/// past `i32::MAX` values), e.g. the definition levels of a page without nulls.
pub(crate) fn encode_repeated(value: u32, count: usize, bit_width: u8, out: &mut Vec<u8>) {
    assert!(bit_width <= 32, "hybrid bit width {bit_width} > 32");
    debug_assert!(bit_width == 32 || value >> bit_width == 0);
    let value_bytes = usize::from(bit_width).div_ceil(8);
    let mut left = count;
    while left > 0 {
        let run = left.min(MAX_RLE_RUN);
        put_uleb128((run as u64) << 1, out);
        // All 4 bytes, then drop the unused: a fixed-size copy instead of a `memcpy` call.
        out.extend_from_slice(&value.to_le_bytes());
        out.truncate(out.len() - (4 - value_bytes));
        left -= run;
    }
}

/// Appends `value` as an unsigned LEB128 varint (the spec's "varint-encode").
pub(super) fn put_uleb128(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Values [`uniform_groups`] looks at in one go: 8 groups.
const BLOCK: usize = 8 * GROUP;

/// Which of the 8 groups of `block` hold 8 equal values: bit `g` for group `g`. The groups'
/// differences are ORed in fixed-size loops and compared once each, so the test costs no
/// branch per value or group (testing one group at a time, the compiler exits early on the
/// first differing value: a mispredicted branch per group on codes without runs).
#[inline]
fn uniform_groups(block: &[u32; BLOCK]) -> u8 {
    let mut differs = [0u32; GROUP];
    for (g, group) in block.as_chunks::<GROUP>().0.iter().enumerate() {
        for &v in group {
            differs[g] |= v ^ group[0];
        }
    }
    differs
        .iter()
        .enumerate()
        .fold(0, |mask, (g, &d)| mask | (u8::from(d == 0) << g))
}

/// Whether all of `values` are equal: one branch for the whole slice rather than one per
/// value, and vectorised for a group of 8.
#[inline]
fn is_uniform(values: &[u32]) -> bool {
    let first = values[0];
    values.iter().fold(0, |diff, &v| diff | (v ^ first)) == 0
}

/// The end of the run of `value` in `values` that continues at `from`, compared 16 values
/// at a time so long runs (levels of a page without nulls, sorted codes) cost little.
fn run_end(values: &[u32], from: usize, value: u32) -> usize {
    const STRIDE: usize = 16;
    let mut at = from;
    while let Some(chunk) = values.get(at..at + STRIDE) {
        if chunk.iter().fold(0, |diff, &v| diff | (v ^ value)) != 0 {
            break;
        }
        at += STRIDE;
    }
    let rest = &values[at..];
    at + rest.iter().position(|&v| v != value).unwrap_or(rest.len())
}

/// Appends `values` (any count; the last group is zero padded) as one bit-packed run.
fn push_bit_packed(values: &[u32], bit_width: u8, out: &mut Vec<u8>) {
    if values.is_empty() {
        return;
    }
    let groups = values.len().div_ceil(GROUP);
    put_uleb128(((groups as u64) << 1) | 1, out);
    let start = out.len();
    out.resize(start + groups * usize::from(bit_width), 0);
    bit_pack(values, bit_width, &mut out[start..]);
}

/// Packs `values` (each < 2^bit_width, bit_width 1..=32) LSB first into `dst`, which holds
/// exactly `bit_width` bytes per group of 8 values; a last partial group is zero padded.
///
/// Shared with the delta encoder, whose miniblocks pack the same way (INT64 offsets of up to
/// 32 bits narrowed to `u32` first).
pub(super) fn bit_pack(values: &[u32], bit_width: u8, dst: &mut [u8]) {
    macro_rules! dispatch {
        ($($w:literal)*) => {
            match bit_width {
                $($w => pack_all::<$w>(values, dst),)*
                _ => unreachable!("bit width {bit_width} is not in 1..=32"),
            }
        };
    }
    dispatch!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32);
}

/// [`bit_pack`] for a width known at compile time: 32 values (`4 * W` bytes) per step, then
/// groups of 8 (`W` bytes), the last one from a zero-padded copy if it is partial.
fn pack_all<const W: usize>(values: &[u32], dst: &mut [u8]) {
    assert_eq!(dst.len(), values.len().div_ceil(GROUP) * W);
    let (chunks, rest) = values.as_chunks::<32>();
    let (wide, narrow) = dst.split_at_mut(chunks.len() * 4 * W);
    for (src, out) in chunks.iter().zip(wide.chunks_exact_mut(4 * W)) {
        pack32::<W>(src, out);
    }
    let (groups, last) = rest.as_chunks::<GROUP>();
    let mut outs = narrow.chunks_exact_mut(W);
    for (src, out) in groups.iter().zip(&mut outs) {
        pack8::<W>(src, out);
    }
    if let Some(out) = outs.next() {
        let mut padded = [0u32; GROUP];
        padded[..last.len()].copy_from_slice(last);
        pack8::<W>(&padded, out);
    }
}

/// Packs the values `$i…` of `$src` at `$width` bits into `$dst`, LSB first, as straight-line
/// code: a `u64` accumulator takes each value and hands its low 32 bits to `$dst` whenever
/// they are complete. A loop would keep the bit position in a register and branch on it per
/// value; unrolled, with the width constant, every shift and store offset is a constant.
/// `$dst` must hold exactly the packed bytes (a multiple of 8 values is whole bytes).
macro_rules! pack_unrolled {
    ($src:expr, $dst:expr, $width:expr; $($i:literal)*) => {{
        let (src, dst) = ($src, $dst);
        let (mut acc, mut bits, mut at) = (0u64, 0, 0);
        $(
            acc |= u64::from(src[$i]) << bits;
            bits += $width;
            if bits >= 32 {
                dst[at..at + 4].copy_from_slice(&(acc as u32).to_le_bytes());
                at += 4;
                acc >>= 32;
                bits -= 32;
            }
        )*
        let tail = bits / 8;
        dst[at..at + tail].copy_from_slice(&(acc as u32).to_le_bytes()[..tail]);
    }};
}

/// Packs 32 values of `W` bits into `dst` (`4 * W` bytes).
#[inline(always)]
fn pack32<const W: usize>(src: &[u32; 32], dst: &mut [u8]) {
    let dst = &mut dst[..4 * W];
    pack_unrolled!(src, dst, W;
        0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31);
}

/// Packs 8 values of `W` bits into `dst` (`W` bytes).
#[inline(always)]
fn pack8<const W: usize>(src: &[u32; 8], dst: &mut [u8]) {
    let dst = &mut dst[..W];
    pack_unrolled!(src, dst, W; 0 1 2 3 4 5 6 7);
}
