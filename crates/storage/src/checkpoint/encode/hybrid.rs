//! The Parquet RLE / bit-packing hybrid encoding (`RLE = 3` in the spec's encodings page):
//! definition levels and dictionary indices.
//!
//! The input is cut into groups of 8 values, counted from the start of the current bit-packed
//! run. A group whose 8 values are equal starts an RLE run, which then takes every following
//! equal value — if the run is long enough to pay for itself ([`min_rle_run`]); other groups
//! are bit-packed, consecutive ones under one header. From 4 bits up these are the choices
//! parquet-rs's `RleEncoder` makes (so the output is byte for byte the same whenever its
//! bit-packed runs are short enough not to hit its 63-group cap). At 1 to 3 bits parquet-rs
//! also starts an RLE run at 8 equal values, which costs more bytes than packing them and,
//! on flags that repeat a few times (a status per order, its lines in a row), several times
//! the encoding time; here such runs stay packed. Runs are found with one comparison of 8
//! values per group instead of a branch per value, and packed by kernels specialised to
//! each bit width.
//!
//! The spec's grammar, for reference:
//!
//! ```text
//! bit-packed-run := varint((groups << 1) | 1) then groups * bit_width bytes (8 values per group, LSB first)
//! rle-run        := varint(count << 1) then the value in ceil(bit_width / 8) little-endian bytes
//! ```

use std::mem::MaybeUninit;
use std::ops::Range;

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
///
/// Values of at most 8 bits (definition levels, codes of dictionaries of up to 256 entries:
/// nearly every dictionary a checkpoint writes) are narrowed to a byte each first, in one
/// vectorised pass: a group of 8 is then one `u64`, tested for uniformity with a multiply and
/// a compare and packed with three shift-and-mask steps, where 8 separate 32-bit values cost
/// several operations each.
pub(crate) fn encode_hybrid(values: &[u32], bit_width: u8, out: &mut Vec<u8>) {
    assert!(bit_width <= 32, "hybrid bit width {bit_width} > 32");
    debug_assert_fits(values, bit_width);
    if bit_width <= 8 {
        let bytes: Vec<u8> = values.iter().map(|&v| v as u8).collect();
        encode_hybrid_bytes(&bytes, bit_width, out);
    } else {
        reserve_for(values.len(), bit_width, out);
        encode_runs(Wide(values), bit_width, out);
    }
}

/// [`encode_hybrid`] of values held a byte each (`bit_width` 0..=8): dictionary codes of
/// dictionaries of up to 256 entries, which are kept as bytes from the start.
pub(crate) fn encode_hybrid_bytes(values: &[u8], bit_width: u8, out: &mut Vec<u8>) {
    assert!(bit_width <= 8, "byte hybrid bit width {bit_width} > 8");
    debug_assert_fits(values, bit_width);
    if bit_width == 0 {
        // Every value is 0: one RLE run, with no value bytes.
        encode_repeated(0, values.len(), 0, out);
        return;
    }
    reserve_for(values.len(), bit_width, out);
    encode_runs(Narrow(values), bit_width, out);
}

/// Checks, in debug builds, that every one of `values` fits in `bit_width` bits.
fn debug_assert_fits<V: Copy + Into<u32>>(values: &[V], bit_width: u8) {
    debug_assert!(
        bit_width >= 32 || values.iter().all(|&v| v.into() >> bit_width == 0),
        "a value does not fit in {bit_width} bits"
    );
}

/// Reserves an upper bound of the packed size of `count` values: each group of 8 costs at
/// most `bit_width` bytes plus a run header when runs alternate; RLE runs only shrink it.
fn reserve_for(count: usize, bit_width: u8, out: &mut Vec<u8>) {
    out.reserve(count.div_ceil(GROUP) * (usize::from(bit_width) + 1) + 16);
}

/// [`encode_hybrid`] with every width taking the `u32` path, for tests to compare the
/// narrow path against.
#[cfg(test)]
pub(super) fn encode_hybrid_wide(values: &[u32], bit_width: u8, out: &mut Vec<u8>) {
    assert!((1..=32).contains(&bit_width));
    encode_runs(Wide(values), bit_width, out);
}

/// The shortest run of equal values worth an RLE run at `bit_width`, never under one group
/// (8 values). An RLE run costs its header and value (2 bytes at the widths where this
/// matters, 1 to 2 bits), so a run must take more than that bit-packed; and when it
/// `splits` a bit-packed run, the rest of that run needs a new header (1 more byte).
fn min_rle_run(bit_width: u8, splits: bool) -> usize {
    let bits: usize = if splits { 24 } else { 16 };
    bits.div_ceil(usize::from(bit_width)).max(GROUP)
}

/// The hybrid encoding of `values`: finds the runs, has `values` pack the groups between.
///
/// The input is cut into groups of 8 counted from the start of the current bit-packed run; a
/// uniform group starts an RLE run that takes every following equal value, if there are
/// [`min_rle_run`] of them or they are all that is left. (A run that starts right after
/// another RLE run only has to pay for itself; see `min_rle_run`.)
fn encode_runs<V: Groups>(values: V, bit_width: u8, out: &mut Vec<u8>) {
    let len = values.len();
    let (min_run, min_run_after_rle) =
        (min_rle_run(bit_width, true), min_rle_run(bit_width, false));
    // Full uniform groups any run long enough to split a bit-packed run starts with (3 at 1
    // bit, else 1).
    let needed = min_run / GROUP;
    // Values such a run needs past its uniform groups (4 at 2 bits, else 0): a uniform group
    // whose run stops sooner would only be looked at and left packed.
    let past = min_run % GROUP;
    let cap = MAX_PACKED_GROUPS * GROUP;
    let mut packed_from = 0; // start of the pending bit-packed run
    let mut at = 0; // start of the next group to look at
    loop {
        // Eight groups at once while none of them starts `needed` uniform groups in the
        // block (nearly always, for codes of values without runs), within the current run's
        // group cap; the groups before the first that does are skipped, and the
        // group-by-group step below takes that one. (A long run that starts in a block's
        // last groups is then seen from the next block: valid, if a few values less
        // compact.)
        if at + BLOCK <= len && at + BLOCK - packed_from <= cap {
            let uniform = values.uniform_groups(at);
            let mut uniform = (1..needed).fold(uniform, |starts, k| starts & (uniform >> k));
            if past > 0 && uniform != 0 {
                // Bit g of `continued` is whether group g + needed - 1's value goes on
                // `past` values into the next group. Kept whatever it says: the groups whose
                // next group is in the next block, and the first group right after an RLE
                // run, which needs no more than its 8 values (`min_run_after_rle`).
                let continued = values.continued_groups(at, past) >> (needed - 1);
                let unknown = !(u8::MAX >> needed) | u8::from(at == packed_from);
                uniform &= continued | unknown;
            }
            if uniform == 0 {
                at += BLOCK;
                if at - packed_from == cap {
                    values.push_bit_packed(packed_from..at, bit_width, out);
                    packed_from = at;
                }
                continue;
            }
            at += GROUP * uniform.trailing_zeros() as usize;
        }
        if at + GROUP > len {
            break;
        }
        let run = values
            .uniform(at..at + GROUP)
            .map(|value| (value, values.run_end(at + GROUP, value)));
        // A run after pending packed groups splits their run; right after an RLE run it
        // does not.
        let worth = if packed_from < at {
            min_run
        } else {
            min_run_after_rle
        };
        match run {
            Some((value, end)) if end - at >= worth || (packed_from == at && end == len) => {
                values.push_bit_packed(packed_from..at, bit_width, out);
                encode_repeated(value, end - at, bit_width, out);
                at = end;
                packed_from = end;
                continue;
            }
            // Too short for its own run: its whole groups stay in the bit-packed run.
            Some((_, end)) => at = (at + GROUP * ((end - at) / GROUP)).min(packed_from + cap),
            None => at += GROUP,
        }
        if at - packed_from == cap {
            values.push_bit_packed(packed_from..at, bit_width, out);
            packed_from = at;
        }
    }

    // Fewer than 8 values are left. On their own and all equal they are a (short) RLE run,
    // cheaper than a padded group when the width exceeds a byte; otherwise they end the
    // bit-packed run, zero padded.
    match values.uniform(at..len) {
        Some(value) if packed_from == at => encode_repeated(value, len - at, bit_width, out),
        _ => values.push_bit_packed(packed_from..len, bit_width, out),
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

/// Values [`Groups::uniform_groups`] looks at in one go: 8 groups.
const BLOCK: usize = 8 * GROUP;

/// What [`encode_runs`] needs of a page of values, in whichever layout they are held.
trait Groups: Copy {
    fn len(self) -> usize;

    /// Which of the 8 groups starting at `at` (`at + BLOCK <= len`) hold 8 equal values: bit
    /// `g` for group `g`. Computed without a branch per value or group (testing one group at
    /// a time, the compiler exits early on the first differing value: a mispredicted branch
    /// per group on codes without runs).
    fn uniform_groups(self, at: usize) -> u8;

    /// Which of the first 7 of the 8 groups starting at `at` (`at + BLOCK <= len`) have
    /// their first `count` values (1..8) in the next group: bit `g` when values `0..count` of
    /// group `g + 1` equal those of group `g`. Bit 7 is 0.
    fn continued_groups(self, at: usize, count: usize) -> u8;

    /// The value of `range` (not empty) when all of its values are equal.
    fn uniform(self, range: Range<usize>) -> Option<u32>;

    /// The end of the run of `value` that continues at `from`.
    fn run_end(self, from: usize, value: u32) -> usize;

    /// Appends the values of `range` (any count; the last group is zero padded) as one
    /// bit-packed run.
    fn push_bit_packed(self, range: Range<usize>, bit_width: u8, out: &mut Vec<u8>);
}

/// Values of any width, one `u32` each.
#[derive(Clone, Copy)]
struct Wide<'a>(&'a [u32]);

impl Groups for Wide<'_> {
    fn len(self) -> usize {
        self.0.len()
    }

    #[inline]
    fn uniform_groups(self, at: usize) -> u8 {
        let block: &[u32; BLOCK] = self.0[at..at + BLOCK].try_into().expect("a block");
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

    fn continued_groups(self, at: usize, count: usize) -> u8 {
        (0..GROUP - 1).fold(0, |mask, g| {
            let (group, next) = (at + g * GROUP, at + (g + 1) * GROUP);
            let same = self.0[group..group + count] == self.0[next..next + count];
            mask | (u8::from(same) << g)
        })
    }

    /// One branch for the whole range rather than one per value, vectorised for a group.
    #[inline]
    fn uniform(self, range: Range<usize>) -> Option<u32> {
        let values = self.0.get(range).filter(|v| !v.is_empty())?;
        let first = values[0];
        (values.iter().fold(0, |diff, &v| diff | (v ^ first)) == 0).then_some(first)
    }

    /// Compared 16 values at a time, so long runs (levels of a page without nulls, sorted
    /// codes) cost little.
    fn run_end(self, from: usize, value: u32) -> usize {
        const STRIDE: usize = 16;
        let values = self.0;
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

    fn push_bit_packed(self, range: Range<usize>, bit_width: u8, out: &mut Vec<u8>) {
        let values = &self.0[range];
        let Some(len) = start_packed_run(values.len(), bit_width, out) else {
            return;
        };
        let start = out.len();
        out.resize(start + len, 0);
        bit_pack(values, bit_width, &mut out[start..]);
    }
}

/// Values of at most 8 bits, one byte each: a group of 8 is one little-endian `u64`.
#[derive(Clone, Copy)]
struct Narrow<'a>(&'a [u8]);

/// A `u64` with every byte 1: a byte times it is that byte in every lane.
const BYTE_LANES: u64 = 0x0101_0101_0101_0101;

impl Narrow<'_> {
    #[inline(always)]
    fn group(self, at: usize) -> u64 {
        u64::from_le_bytes(self.0[at..at + GROUP].try_into().expect("8 bytes"))
    }

    /// [`Groups::uniform_groups`] a group at a time (where AVX-512 is not compiled in, and
    /// in tests).
    #[cfg_attr(
        all(target_arch = "x86_64", target_feature = "avx512bw"),
        allow(dead_code)
    )]
    #[inline]
    fn uniform_groups_portable(self, at: usize) -> u8 {
        (0..8).fold(0, |mask, g| {
            mask | (u8::from(is_uniform_group(self.group(at + g * GROUP))) << g)
        })
    }
}

/// Whether the 8 bytes of `group` are equal: the low byte copied to every lane is the group.
#[inline(always)]
fn is_uniform_group(group: u64) -> bool {
    group == (group & 0xff).wrapping_mul(BYTE_LANES)
}

impl Groups for Narrow<'_> {
    fn len(self) -> usize {
        self.0.len()
    }

    /// With AVX-512 (compiled in, as for the machine it is built on): each group's first
    /// byte copied across the group, and one 64-bit compare per group, for the 8 at once.
    #[inline]
    fn uniform_groups(self, at: usize) -> u8 {
        #[cfg(all(target_arch = "x86_64", target_feature = "avx512bw"))]
        {
            use std::arch::x86_64::*;
            let block: &[u8; BLOCK] = self.0[at..at + BLOCK].try_into().expect("a block");
            // SAFETY: AVX-512 F and BW are compiled in (the `cfg` above); the load reads
            // exactly the 64 bytes of `block`.
            unsafe {
                let values = _mm512_loadu_si512(block.as_ptr().cast());
                // Within each 16-byte lane: byte 0 for the first group, byte 8 for the second.
                let firsts = _mm512_broadcast_i32x4(_mm_set_epi64x(0x0808_0808_0808_0808, 0));
                _mm512_cmpeq_epi64_mask(values, _mm512_shuffle_epi8(values, firsts))
            }
        }
        #[cfg(not(all(target_arch = "x86_64", target_feature = "avx512bw")))]
        self.uniform_groups_portable(at)
    }

    #[inline]
    fn continued_groups(self, at: usize, count: usize) -> u8 {
        let first = u64::MAX >> (64 - 8 * count);
        (0..GROUP - 1).fold(0, |mask, g| {
            let differ = (self.group(at + g * GROUP) ^ self.group(at + (g + 1) * GROUP)) & first;
            mask | (u8::from(differ == 0) << g)
        })
    }

    #[inline]
    fn uniform(self, range: Range<usize>) -> Option<u32> {
        let bytes = self.0.get(range).filter(|b| !b.is_empty())?;
        if let Ok(group) = <[u8; GROUP]>::try_from(bytes) {
            let group = u64::from_le_bytes(group);
            return is_uniform_group(group).then_some(group as u8 as u32);
        }
        let first = bytes[0];
        (bytes.iter().fold(0, |diff, &b| diff | (b ^ first)) == 0).then_some(u32::from(first))
    }

    /// Compared 8 bytes at a time.
    fn run_end(self, from: usize, value: u32) -> usize {
        let lanes = u64::from(value as u8).wrapping_mul(BYTE_LANES);
        let mut at = from;
        while at + GROUP <= self.0.len() && self.group(at) == lanes {
            at += GROUP;
        }
        let rest = &self.0[at..];
        at + rest
            .iter()
            .position(|&b| u32::from(b) != value)
            .unwrap_or(rest.len())
    }

    fn push_bit_packed(self, range: Range<usize>, bit_width: u8, out: &mut Vec<u8>) {
        let bytes = &self.0[range];
        let Some(len) = start_packed_run(bytes.len(), bit_width, out) else {
            return;
        };
        // Packed straight into the reserved room, rather than zeroed and then overwritten.
        let dst = &mut out.spare_capacity_mut()[..len];
        macro_rules! dispatch {
            ($($w:literal)*) => {
                match bit_width {
                    $($w => pack_bytes::<$w>(bytes, dst),)*
                    _ => unreachable!("narrow bit width {bit_width} is not in 1..=8"),
                }
            };
        }
        dispatch!(1 2 3 4 5 6 7 8);
        // SAFETY: `pack_bytes` wrote every one of the `len` bytes after `out.len()` (it
        // writes exactly `W` bytes per group into a `dst` of exactly that many).
        unsafe { out.set_len(out.len() + len) };
    }
}

/// Appends the header of a bit-packed run of `count` values and reserves room for its
/// groups; returns their length in bytes (`None`, appending nothing, for no values).
fn start_packed_run(count: usize, bit_width: u8, out: &mut Vec<u8>) -> Option<usize> {
    if count == 0 {
        return None;
    }
    let groups = count.div_ceil(GROUP);
    put_uleb128(((groups as u64) << 1) | 1, out);
    let len = groups * usize::from(bit_width);
    out.reserve(len);
    Some(len)
}

/// Packs `bytes` (each < 2^W, W 1..=8) LSB first into `dst`, which holds exactly `W` bytes per
/// group of 8, writing every one of them; a last partial group is zero padded.
fn pack_bytes<const W: usize>(bytes: &[u8], dst: &mut [MaybeUninit<u8>]) {
    assert_eq!(dst.len(), bytes.len().div_ceil(GROUP) * W);
    let (groups, last) = bytes.as_chunks::<GROUP>();
    let (whole, tail) = dst.split_at_mut(groups.len() * W);
    for (group, out) in groups.iter().zip(whole.chunks_exact_mut(W)) {
        out.write_copy_of_slice(&pack_group::<W>(u64::from_le_bytes(*group)).to_le_bytes()[..W]);
    }
    if !last.is_empty() {
        let mut padded = [0u8; GROUP];
        padded[..last.len()].copy_from_slice(last);
        let packed = pack_group::<W>(u64::from_le_bytes(padded));
        tail.write_copy_of_slice(&packed.to_le_bytes()[..W]);
    }
}

/// The 8 values of `W` ≤ 8 bits in the bytes of `group` (value `i` in byte `i`), packed LSB
/// first into the low `8 * W` bits: neighbours are joined pairwise, then the pairs, then the
/// halves, each step a shift and two masks on the whole word.
///
/// Where BMI2's `pext` is compiled in and fast (taken with AVX-512 as the sign: AMD's
/// processors before Zen 3 have `pext` but run it in microcode, and no AVX-512), that is one
/// instruction: the low `W` bits of every byte, gathered in order.
#[inline(always)]
fn pack_group<const W: usize>(group: u64) -> u64 {
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "bmi2",
        target_feature = "avx512f"
    ))]
    {
        let low_bits = ((1u64 << W) - 1) * BYTE_LANES;
        // SAFETY: BMI2 is compiled in (the `cfg` above).
        unsafe { std::arch::x86_64::_pext_u64(group, low_bits) }
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        target_feature = "bmi2",
        target_feature = "avx512f"
    )))]
    pack_group_portable::<W>(group)
}

/// [`pack_group`] with shifts and masks (without a fast `pext`, and in tests).
#[cfg_attr(
    all(
        target_arch = "x86_64",
        target_feature = "bmi2",
        target_feature = "avx512f"
    ),
    allow(dead_code)
)]
#[inline(always)]
fn pack_group_portable<const W: usize>(group: u64) -> u64 {
    // Bytes 2k and 2k+1 → 16-bit lane k: value 2k, then value 2k+1 at bit W.
    let pairs = (group & 0x00FF_00FF_00FF_00FF) | ((group & 0xFF00_FF00_FF00_FF00) >> (8 - W));
    // 16-bit lanes (2W bits used) → 32-bit lanes of 4W bits.
    let quads = (pairs & 0x0000_FFFF_0000_FFFF) | ((pairs & 0xFFFF_0000_FFFF_0000) >> (16 - 2 * W));
    // The two halves → 8W bits.
    (quads & 0xFFFF_FFFF) | ((quads >> 32) << (4 * W))
}

/// Packs `values` (each < 2^bit_width, bit_width 1..=32) LSB first into `dst`, which holds
/// exactly `bit_width` bytes per group of 8 values; a last partial group is zero padded.
///
/// Shared with the delta encoder, whose miniblocks pack the same way (INT64 offsets of up to
/// 32 bits straight from their `u64`s).
pub(super) fn bit_pack<V: PackSource>(values: &[V], bit_width: u8, dst: &mut [u8]) {
    macro_rules! dispatch {
        ($($w:literal)*) => {
            match bit_width {
                $($w => pack_all::<$w, V>(values, dst),)*
                _ => unreachable!("bit width {bit_width} is not in 1..=32"),
            }
        };
    }
    dispatch!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32);
}

/// The integers [`bit_pack`] packs: `u32` codes and levels, and the delta encoder's `u64`
/// offsets (below 2^32 whenever they are packed here).
pub(super) trait PackSource: Copy + Default {
    fn widen(self) -> u64;
}

impl PackSource for u32 {
    #[inline(always)]
    fn widen(self) -> u64 {
        u64::from(self)
    }
}

impl PackSource for u64 {
    #[inline(always)]
    fn widen(self) -> u64 {
        self
    }
}

/// [`bit_pack`] for a width known at compile time: 32 values (`4 * W` bytes) per step, then
/// groups of 8 (`W` bytes), the last one from a zero-padded copy if it is partial.
fn pack_all<const W: usize, V: PackSource>(values: &[V], dst: &mut [u8]) {
    assert_eq!(dst.len(), values.len().div_ceil(GROUP) * W);
    let (chunks, rest) = values.as_chunks::<32>();
    let (wide, narrow) = dst.split_at_mut(chunks.len() * 4 * W);
    for (src, out) in chunks.iter().zip(wide.chunks_exact_mut(4 * W)) {
        pack32::<W, V>(src, out);
    }
    let (groups, last) = rest.as_chunks::<GROUP>();
    let mut outs = narrow.chunks_exact_mut(W);
    for (src, out) in groups.iter().zip(&mut outs) {
        pack8::<W, V>(src, out);
    }
    if let Some(out) = outs.next() {
        let mut padded = [V::default(); GROUP];
        padded[..last.len()].copy_from_slice(last);
        pack8::<W, V>(&padded, out);
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
            acc |= src[$i].widen() << bits;
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
fn pack32<const W: usize, V: PackSource>(src: &[V; 32], dst: &mut [u8]) {
    let dst = &mut dst[..4 * W];
    pack_unrolled!(src, dst, W;
        0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31);
}

/// Packs 8 values of `W` bits into `dst` (`W` bytes).
#[inline(always)]
fn pack8<const W: usize, V: PackSource>(src: &[V; 8], dst: &mut [u8]) {
    let dst = &mut dst[..W];
    pack_unrolled!(src, dst, W; 0 1 2 3 4 5 6 7);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The compiled-in paths (AVX-512, `pext`) and the portable ones agree: packing every
    /// width, and finding uniform groups among groups that differ in any one byte.
    #[test]
    fn packing_and_screening_agree_with_their_portable_forms() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..1000 {
            let random = next();
            macro_rules! widths {
                ($($w:literal)*) => {$(
                    let group = random & (((1u64 << $w) - 1) * BYTE_LANES);
                    assert_eq!(pack_group::<$w>(group), pack_group_portable::<$w>(group));
                )*};
            }
            widths!(1 2 3 4 5 6 7 8);
        }
        for _ in 0..1000 {
            let fill = next() as u8;
            let mut bytes = [fill; BLOCK];
            // Make some groups differ in one byte, at any position.
            let changes = next();
            for g in 0..8 {
                if changes >> g & 1 == 1 {
                    let at = g * GROUP + (changes >> (8 + 3 * g)) as usize % GROUP;
                    bytes[at] ^= 1 << (next() % 8);
                }
            }
            let values = Narrow(&bytes);
            assert_eq!(values.uniform_groups(0), values.uniform_groups_portable(0));
            assert_eq!(values.uniform_groups(0), !(changes as u8));
        }
    }
}
