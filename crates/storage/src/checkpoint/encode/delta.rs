//! Parquet `DELTA_BINARY_PACKED` for INT32 and INT64 columns.
//!
//! The spec (encodings page, "Delta Encoding"): a header
//! `<block size> <miniblocks per block> <total value count> <first value>` (varints, the
//! first value zigzag), then per block of deltas `<min delta> <miniblock bit widths>
//! <miniblocks>`, each miniblock the deltas minus the block's minimum, bit-packed LSB first
//! at its own width.
//!
//! The block layout is parquet-rs's, and so is the output, byte for byte: 4 miniblocks per
//! block, of 32 deltas for INT32 and of 64 for INT64. (parquet-java and Arrow C++ use 32 for
//! both. Ember reads checkpoints with parquet-rs, whose decoder unpacks 64-bit deltas wider
//! than 32 bits only in batches of 64, one value at a time otherwise; and INT64 pages come
//! out ~1.5% smaller, one block header per 256 deltas instead of per 128.) As parquet-rs
//! does, the last block's minimum is taken over its real deltas only, its last miniblock is
//! padded with zeros, and the miniblocks it does not need get bit width 0 and no bytes. A
//! page of 0 or 1 values is the header alone (first value 0 when there is none).
//!
//! Speed (this runs on every value of every checkpointed integer column): a block's deltas,
//! minimum and offsets are computed in branch-free loops of constant length, which the
//! compiler vectorises; a miniblock's width is the bit length of the OR of its offsets; and
//! the packing is straight-line code specialised to each width. Blocks are packed as a
//! page's values arrive ([`DeltaPage`]). On x86-64 that is
//! compiled a second time for AVX2, chosen at run time: baseline x86-64 (SSE2) has no 64-bit
//! compare, so the INT64 minimum costs several instructions per delta without it (measured
//! ~1.6 ns per INT64 value without, ~0.9 ns with; INT32 ~1.05 and ~1.0).

use std::ops::BitOr;

use super::hybrid::{bit_pack, put_uleb128};
use super::values::IntSink;

/// Miniblocks per block.
const MINIBLOCKS: usize = 4;
/// The most deltas in a block of any type (INT64's), for the sizes of the scratch arrays.
const MAX_BLOCK: usize = 256;

/// Appends the `DELTA_BINARY_PACKED` encoding of `values` (one data page's non-null values)
/// to `out`, in blocks of 256 deltas (4 miniblocks of 64; see the module doc). Deltas wrap
/// (an `i64::MIN` after an `i64::MAX` is a delta of 1), so any values encode, at up to 64
/// bits per delta. Columns are encoded through [`DeltaPage`]; this is the same encoder on
/// one slice.
#[cfg(test)]
pub(super) fn encode_delta_i64(values: &[i64], out: &mut Vec<u8>) {
    encode_whole(values, out, DeltaPage::take);
}

/// [`encode_delta_i64`] for INT32 physical columns, in blocks of 128 deltas (4 miniblocks of
/// 32). Deltas and their minimum are computed with `i32` wrapping arithmetic, so every bit
/// width is at most 32: parquet-rs and parquet-java decode INT32 deltas with `i32` wrapping
/// adds.
#[cfg(test)]
pub(super) fn encode_delta_i32(values: &[i32], out: &mut Vec<u8>) {
    encode_whole(values, out, DeltaPage::take);
}

/// [`encode_delta_i64`] without the AVX2 dispatch, as CPUs without AVX2 run it.
#[cfg(test)]
pub(super) fn encode_delta_i64_portable(values: &[i64], out: &mut Vec<u8>) {
    encode_whole(values, out, |page, values, _| page.take_portable(values));
}

/// [`encode_delta_i32`] without the AVX2 dispatch, as CPUs without AVX2 run it.
#[cfg(test)]
pub(super) fn encode_delta_i32_portable(values: &[i32], out: &mut Vec<u8>) {
    encode_whole(values, out, |page, values, _| page.take_portable(values));
}

/// Encodes `values` as one page through a fresh [`DeltaPage`], fed by `take` (with or
/// without the AVX2 dispatch), and appends the whole page to `out`.
#[cfg(test)]
fn encode_whole<T: DeltaValue>(
    values: &[T],
    out: &mut Vec<u8>,
    take: impl FnOnce(&mut DeltaPage<T>, &[T], fn(T) -> T),
) {
    let mut page = DeltaPage::default();
    take(&mut page, values, |v| v);
    let blocks = page.finish(out);
    out.extend_from_slice(&blocks);
}

/// One data page of a `DELTA_BINARY_PACKED` column, encoded block by block as its values
/// arrive rather than gathered and encoded when the page is full.
///
/// Why: a page's values are a quarter of a megabyte of `i64`s written batch by batch while
/// the rest of the query runs, and by the time the page was full they were mostly out of
/// cache, so the encoder paid to read them back — and the copy that gathered them had
/// written them there. Now a batch's whole blocks are packed straight from the batch,
/// narrowed on the fly, and only the values of blocks that span two batches wait in a
/// block-sized buffer (in L1); the page keeps only the packed bytes.
#[derive(Debug)]
pub(crate) struct DeltaPage<T: DeltaValue> {
    /// The page's values not yet in a block, after the last value of the previous block (the
    /// base of the next delta) at index 0: `pending[..pending_len]`, at most `BLOCK + 1`.
    pending: [T; MAX_BLOCK + 1],
    pending_len: usize,
    /// The page's first value (the header's), once it has one.
    first: Option<T>,
    count: usize,
    /// The finished blocks' bytes.
    blocks: Vec<u8>,
    /// Bytes to reserve for a page's blocks (a full page's worst case, once the page size is
    /// known), so that the buffer never grows in the middle of a page.
    reserve: usize,
}

impl<T: DeltaValue> Default for DeltaPage<T> {
    fn default() -> Self {
        DeltaPage {
            pending: [T::default(); MAX_BLOCK + 1],
            pending_len: 0,
            first: None,
            count: 0,
            blocks: Vec::new(),
            reserve: 0,
        }
    }
}

impl<T: DeltaValue> DeltaPage<T> {
    /// A page encoder whose pages hold up to `rows` values: each page's buffer is reserved
    /// for that many at once (growing it would copy it).
    pub(crate) fn with_page_rows(rows: usize) -> Self {
        let blocks = rows.div_ceil(T::BLOCK);
        DeltaPage {
            reserve: blocks * (10 + MINIBLOCKS + T::BLOCK * size_of::<T>()),
            ..DeltaPage::default()
        }
    }

    /// Appends the header of the page encoded so far to `out` and returns its blocks (the
    /// rest of the page's bytes), leaving the encoder empty for the next page.
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) -> Vec<u8> {
        put_uleb128(T::BLOCK as u64, out);
        put_uleb128(MINIBLOCKS as u64, out);
        put_uleb128(self.count as u64, out);
        put_zigzag(self.first.map_or(0, T::to_i64), out);
        if self.pending_len > 1 {
            let mut offsets = [T::Offset::default(); MAX_BLOCK];
            encode_block(
                &self.pending[..self.pending_len],
                |v| v,
                &mut offsets[..T::BLOCK],
                &mut self.blocks,
            );
        }
        self.pending_len = 0;
        self.first = None;
        self.count = 0;
        std::mem::take(&mut self.blocks)
    }

    /// [`IntSink::take`] on the portable code path, as CPUs without AVX2 run it.
    #[cfg(test)]
    fn take_portable(&mut self, values: &[T]) {
        self.take_blocks(values, |v| v);
    }

    /// Adds `convert` of each of `values` to the page, packing every block it completes.
    #[inline(always)]
    fn take_blocks<S: Copy>(&mut self, values: &[S], convert: impl Fn(S) -> T + Copy) {
        const { assert!(T::BLOCK <= MAX_BLOCK && T::MINIBLOCK % 32 == 0) };
        let Some((&head, mut rest)) = values.split_first() else {
            return;
        };
        if self.blocks.capacity() < self.reserve {
            self.blocks.reserve(self.reserve);
        }
        self.count += values.len();
        if self.first.is_none() {
            let first = convert(head);
            self.first = Some(first);
            self.pending[0] = first;
            self.pending_len = 1;
        } else {
            rest = values;
        }
        // The offsets buffer is shared by the blocks, so it is not zeroed for each.
        let mut offsets = [T::Offset::default(); MAX_BLOCK];
        let offsets = &mut offsets[..T::BLOCK];
        // The block the earlier values started, completed from `pending`.
        if self.pending_len > 1 || rest.len() < T::BLOCK {
            let taken = (T::BLOCK + 1 - self.pending_len).min(rest.len());
            let (now, later) = rest.split_at(taken);
            self.stash(now, convert);
            rest = later;
            if self.pending_len == T::BLOCK + 1 {
                encode_block(&self.pending[..=T::BLOCK], |v| v, offsets, &mut self.blocks);
                self.pending[0] = self.pending[T::BLOCK];
                self.pending_len = 1;
            }
        }
        if rest.is_empty() {
            return;
        }
        // `pending` now holds only the base of the next delta. The first block of `rest`
        // is packed from there; every later whole block straight from `values` (the value
        // before it is the base), without a copy.
        if rest.len() >= T::BLOCK {
            self.stash(&rest[..T::BLOCK], convert);
            encode_block(&self.pending[..=T::BLOCK], |v| v, offsets, &mut self.blocks);
            let whole = (rest.len() - T::BLOCK) / T::BLOCK;
            for k in 0..whole {
                let block = &rest[T::BLOCK - 1 + k * T::BLOCK..][..=T::BLOCK];
                encode_block(block, convert, offsets, &mut self.blocks);
            }
            let done = T::BLOCK * (1 + whole);
            self.pending[0] = convert(rest[done - 1]);
            self.pending_len = 1;
            rest = &rest[done..];
        }
        self.stash(rest, convert);
    }

    /// Appends `convert` of each of `values` (no more than `pending` has room for) to
    /// `pending`.
    #[inline(always)]
    fn stash<S: Copy>(&mut self, values: &[S], convert: impl Fn(S) -> T + Copy) {
        let free = &mut self.pending[self.pending_len..][..values.len()];
        for (slot, &value) in free.iter_mut().zip(values) {
            *slot = convert(value);
        }
        self.pending_len += values.len();
    }
}

impl<T: DeltaValue> IntSink<T> for DeltaPage<T> {
    /// [`DeltaPage::take_blocks`], compiled for AVX2 when the CPU has it (see the module doc).
    fn take<S: Copy + 'static>(&mut self, values: &[S], convert: impl Fn(S) -> T + Copy) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: `take_avx2` requires nothing but AVX2, and this CPU has it.
            return unsafe { take_avx2(self, values, convert) };
        }
        self.take_blocks(values, convert);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn take_avx2<T: DeltaValue, S: Copy>(
    page: &mut DeltaPage<T>,
    values: &[S],
    convert: impl Fn(S) -> T + Copy,
) {
    page.take_blocks(values, convert);
}

/// The integer types a page can hold, with the arithmetic the encoding needs in each.
pub(crate) trait DeltaValue: Copy + Ord + Default + std::fmt::Debug {
    /// Deltas per miniblock (the spec requires a multiple of 32).
    const MINIBLOCK: usize;
    /// Deltas per block.
    const BLOCK: usize = MINIBLOCKS * Self::MINIBLOCK;

    /// A delta's distance from its block's minimum delta: what a miniblock packs.
    type Offset: Copy + Default + BitOr<Output = Self::Offset>;

    fn wrapping_sub(self, other: Self) -> Self;
    /// `self - min` as the unsigned `Offset` (`self >= min`, so it never wraps).
    fn offset_from(self, min: Self) -> Self::Offset;
    /// The bits needed for every offset whose OR is `or`.
    fn width(or: Self::Offset) -> u8;
    /// The value as the header and the block minimum store it (a zigzag varint).
    fn to_i64(self) -> i64;
    /// Packs a miniblock's offsets at `width` (1..=bits of `Self`) into `dst`, which holds
    /// exactly `width` bits per offset.
    fn pack(offsets: &[Self::Offset], width: u8, dst: &mut [u8]);
}

impl DeltaValue for i64 {
    const MINIBLOCK: usize = 64;
    type Offset = u64;

    fn wrapping_sub(self, other: Self) -> Self {
        i64::wrapping_sub(self, other)
    }
    fn offset_from(self, min: Self) -> u64 {
        self.wrapping_sub(min) as u64
    }
    fn width(or: u64) -> u8 {
        (u64::BITS - or.leading_zeros()) as u8
    }
    fn to_i64(self) -> i64 {
        self
    }
    fn pack(offsets: &[u64], width: u8, dst: &mut [u8]) {
        if width <= 32 {
            // The hybrid encoding's kernels: a 32-bit accumulator step per 32 bits.
            bit_pack(offsets, width, dst);
        } else {
            pack_wide(offsets, width, dst);
        }
    }
}

impl DeltaValue for i32 {
    const MINIBLOCK: usize = 32;
    type Offset = u32;

    fn wrapping_sub(self, other: Self) -> Self {
        i32::wrapping_sub(self, other)
    }
    fn offset_from(self, min: Self) -> u32 {
        self.wrapping_sub(min) as u32
    }
    fn width(or: u32) -> u8 {
        (u32::BITS - or.leading_zeros()) as u8
    }
    fn to_i64(self) -> i64 {
        i64::from(self)
    }
    fn pack(offsets: &[u32], width: u8, dst: &mut [u8]) {
        bit_pack(offsets, width, dst);
    }
}

/// Appends the block of the deltas between consecutive `values` (2..=BLOCK + 1 of them),
/// using `offsets` (BLOCK long) for their distances from the minimum. Inlined into both
/// callers ([`DeltaPage`]'s full blocks and its last one), so for full blocks every loop has
/// a constant trip count.
#[inline(always)]
fn encode_block<T: DeltaValue, S: Copy>(
    values: &[S],
    convert: impl Fn(S) -> T + Copy,
    offsets: &mut [T::Offset],
    out: &mut Vec<u8>,
) {
    let n = values.len() - 1;
    debug_assert!((1..=T::BLOCK).contains(&n) && offsets.len() == T::BLOCK);
    let (previous, next) = (&values[..n], &values[1..]);
    let delta = |(&a, &b): (&S, &S)| convert(b).wrapping_sub(convert(a));

    let first = delta((&previous[0], &next[0]));
    let min = previous.iter().zip(next).map(delta).fold(first, Ord::min);

    // Each miniblock's offsets, and its width: the bit length of their OR.
    let used = n.div_ceil(T::MINIBLOCK);
    let mut widths = [0u8; MINIBLOCKS];
    for (k, width) in widths.iter_mut().enumerate().take(used) {
        let range = k * T::MINIBLOCK..((k + 1) * T::MINIBLOCK).min(n);
        let pairs = previous[range.clone()].iter().zip(&next[range.clone()]);
        let mut or = T::Offset::default();
        for (offset, pair) in offsets[range].iter_mut().zip(pairs) {
            *offset = delta(pair).offset_from(min);
            or = or | *offset;
        }
        *width = T::width(or);
    }
    // The last miniblock is padded with offset 0 (the minimum delta).
    offsets[n..].fill(T::Offset::default());

    put_zigzag(min.to_i64(), out);
    out.extend_from_slice(&widths);
    let miniblock_bytes = |width: u8| usize::from(width) * T::MINIBLOCK / 8;
    let body: usize = widths.iter().map(|&w| miniblock_bytes(w)).sum();
    let start = out.len();
    out.resize(start + body, 0);
    let mut dst = &mut out[start..];
    for (miniblock, &width) in offsets.chunks_exact(T::MINIBLOCK).zip(&widths).take(used) {
        let (head, rest) = dst.split_at_mut(miniblock_bytes(width));
        if width > 0 {
            T::pack(miniblock, width, head);
        }
        dst = rest;
    }
}

/// Appends `value` zigzag encoded as a varint (the spec's format for the first value and
/// the block minimums).
fn put_zigzag(value: i64, out: &mut Vec<u8>) {
    put_uleb128(((value << 1) ^ (value >> 63)) as u64, out);
}

/// Packs `u64` offsets (a multiple of 32 of them) at `width` (33..=64) bits into `dst`
/// (`width` bits per offset).
fn pack_wide(offsets: &[u64], width: u8, dst: &mut [u8]) {
    macro_rules! dispatch {
        ($($w:literal)*) => {
            match width {
                $($w => pack_wide_at::<$w>(offsets, dst),)*
                _ => unreachable!("bit width {width} is not in 33..=64"),
            }
        };
    }
    dispatch!(
        33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61
        62 63 64
    );
}

/// [`pack_wide`] for a width known at compile time: 32 offsets (`4 * W` bytes) at a time.
fn pack_wide_at<const W: usize>(offsets: &[u64], dst: &mut [u8]) {
    assert_eq!(offsets.len() * W, dst.len() * 8);
    for (chunk, out) in offsets.chunks_exact(32).zip(dst.chunks_exact_mut(4 * W)) {
        pack32_wide::<W>(chunk.try_into().unwrap(), out);
    }
}

/// Packs 32 offsets of `W` (33..=64) bits into `dst` (`4 * W` bytes) as straight-line code
/// (see the hybrid encoding's `pack_unrolled`): a `u128` accumulator hands over 64 bits at a
/// time, and a last 32 for odd widths.
#[inline(always)]
fn pack32_wide<const W: usize>(src: &[u64; 32], dst: &mut [u8]) {
    let dst = &mut dst[..4 * W];
    let (mut acc, mut bits, mut at) = (0u128, 0, 0);
    macro_rules! unrolled {
        ($($i:literal)*) => {$(
            acc |= u128::from(src[$i]) << bits;
            bits += W;
            if bits >= 64 {
                dst[at..at + 8].copy_from_slice(&(acc as u64).to_le_bytes());
                at += 8;
                acc >>= 64;
                bits -= 64;
            }
        )*};
    }
    unrolled!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31);
    if bits > 0 {
        dst[at..at + 4].copy_from_slice(&(acc as u32).to_le_bytes());
    }
}
