//! Dictionary encoding of string and binary columns, with a fast path for short values.
//!
//! Checkpointed strings are mostly flags, codes and categories: a handful of short values
//! repeated millions of times. A value of up to 12 bytes is keyed by the 16 bytes Arrow's
//! view layout gives it (length, then the bytes inline) — for a `Utf8View` column that is the
//! view itself, no bytes are touched — and is looked up first in a small direct-mapped cache
//! of recent keys ([`RecentCodes`]): one multiply, one load, one compare, where a hash map
//! costs a full probe sequence. Longer values and cache misses go through hash maps.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use arrow::array::{Array, AsArray, GenericByteArray, GenericByteViewArray, MAX_INLINE_VIEW_LEN};
use arrow::datatypes::{
    ArrowNativeType, BinaryViewType, ByteArrayType, ByteViewType, DataType, StringViewType,
};

use super::codes::{Code, Codes};
use super::range_codes::RangeCodes;
use super::single_bytes::SingleByteCodes;
use super::values::IntSink;

/// Slots of a [`RecentCodes`] cache (a power of two).
const RECENT_SLOTS: usize = 256;
/// Longest value kept inline in a 16-byte key (Arrow's inline view limit).
const INLINE_MAX: usize = MAX_INLINE_VIEW_LEN as usize;

/// The dictionary of one column chunk and the codes of the current page.
#[derive(Debug, Default)]
pub(super) struct ByteDictionary {
    /// Entries are `PLAIN` encoded byte arrays: u32 length, then the bytes.
    pub(super) pages: DictionaryPages,
    recent: RecentCodes<u128>,
    /// Codes of the one-byte values, by byte.
    single_bytes: SingleByteCodes,
    inline: HashMap<u128, u32, BuildHasherDefault<KeyHasher>>,
    long: HashMap<Box<[u8]>, u32, BuildHasherDefault<KeyHasher>>,
}

/// What a dictionary-encoded column chunk writes: the dictionary page's payload (its entries
/// `PLAIN` encoded) and the codes of the current data page's non-null values.
#[derive(Debug, Default)]
pub(super) struct DictionaryPages {
    pub(super) plain: Vec<u8>,
    pub(super) entries: u32,
    pub(super) codes: Codes,
}

impl DictionaryPages {
    /// Adds an entry, `PLAIN` encoded by `put`, and returns its code.
    fn add(&mut self, put: impl FnOnce(&mut Vec<u8>)) -> u32 {
        put(&mut self.plain);
        self.entries += 1;
        self.codes.fit(self.entries);
        self.entries - 1
    }
}

/// Whether `data_type` is a string or binary type [`ByteDictionary::append`] reads.
pub(super) fn supports(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
    )
}

impl ByteDictionary {
    /// Encodes the non-null values of `array` (a type [`supports`] accepts) into the current
    /// page's codes.
    pub(super) fn append(&mut self, array: &dyn Array) {
        match array.data_type() {
            DataType::Utf8 => self.append_offsets(array.as_string::<i32>()),
            DataType::LargeUtf8 => self.append_offsets(array.as_string::<i64>()),
            DataType::Binary => self.append_offsets(array.as_binary::<i32>()),
            DataType::LargeBinary => self.append_offsets(array.as_binary::<i64>()),
            DataType::Utf8View => self.append_views::<StringViewType>(array.as_string_view()),
            DataType::BinaryView => self.append_views::<BinaryViewType>(array.as_binary_view()),
            other => unreachable!("dictionary encoding of {other} (see `supports`)"),
        }
    }

    fn append_offsets<T: ByteArrayType>(&mut self, array: &GenericByteArray<T>) {
        let offsets = array.value_offsets();
        let data = array.value_data();
        self.pages.codes.reserve(array.len());
        if array.null_count() == 0 && every_value_is_one_byte(offsets) {
            let first = offsets[0].as_usize();
            self.append_single_bytes(&data[first..first + array.len()]);
            return;
        }
        let mut push = |i: usize| {
            let (start, end) = (offsets[i].as_usize(), offsets[i + 1].as_usize());
            let code = if end - start <= INLINE_MAX {
                self.code_of_inline(inline_key_at(data, start, end - start))
            } else {
                self.code_of_long(&data[start..end])
            };
            self.pages.codes.push(code);
        };
        match array.nulls().filter(|n| n.null_count() > 0) {
            None => (0..array.len()).for_each(&mut push),
            Some(nulls) => nulls.valid_indices().for_each(push),
        }
    }

    fn append_views<T: ByteViewType + ?Sized>(&mut self, array: &GenericByteViewArray<T>) {
        let views = array.views();
        let mut push = |i: usize| {
            let view = views[i];
            let len = view as u32 as usize;
            if len <= INLINE_MAX {
                // Padding is zero in views Arrow makes; masking makes it so for any view.
                let code = self.code_of_inline(view & inline_mask(len));
                self.pages.codes.push(code);
            } else {
                let bytes: &[u8] = array.value(i).as_ref();
                let code = self.code_of_long(bytes);
                self.pages.codes.push(code);
            }
        };
        match array.nulls().filter(|n| n.null_count() > 0) {
            None => (0..array.len()).for_each(&mut push),
            Some(nulls) => nulls.valid_indices().for_each(push),
        }
    }

    /// Codes of one-byte values, from a table indexed by the byte ([`SingleByteCodes`]).
    /// A byte not seen before has no code yet, and then the batch's codes are written again
    /// once every byte has one — which only the first batches need.
    fn append_single_bytes(&mut self, bytes: &[u8]) {
        let start = self.pages.codes.len();
        let table = &self.single_bytes;
        let complete = match &mut self.pages.codes {
            Codes::Narrow(codes) => table.extend_narrow(codes, bytes),
            Codes::Wide(codes) => table.extend_wide(codes, bytes),
        };
        if complete {
            return;
        }
        for (i, &byte) in bytes.iter().enumerate() {
            let code = self.single_byte_code(byte);
            self.pages.codes.set(start + i, code);
        }
    }

    #[inline(never)]
    fn single_byte_code(&mut self, byte: u8) -> u32 {
        if let Some(code) = self.single_bytes.get(byte) {
            return code;
        }
        let code = self.code_of_inline(inline_key_at(&[byte], 0, 1));
        self.single_bytes.set(byte, code);
        code
    }

    /// The code of the inline value with key `key` (see [`inline_key_at`]), adding it if new.
    #[inline(always)]
    fn code_of_inline(&mut self, key: u128) -> u32 {
        match self.recent.get(key) {
            Some(code) => code,
            None => self.code_of_inline_slow(key),
        }
    }

    #[inline(never)]
    fn code_of_inline_slow(&mut self, key: u128) -> u32 {
        let code = match self.inline.get(&key) {
            Some(&code) => code,
            None => {
                let len = key as u32 as usize;
                let code = self.add(&key.to_le_bytes()[4..4 + len]);
                self.inline.insert(key, code);
                code
            }
        };
        self.recent.put(key, code);
        code
    }

    fn code_of_long(&mut self, bytes: &[u8]) -> u32 {
        if let Some(&code) = self.long.get(bytes) {
            return code;
        }
        let code = self.add(bytes);
        self.long.insert(bytes.into(), code);
        code
    }

    fn add(&mut self, bytes: &[u8]) -> u32 {
        self.pages.add(|plain| {
            plain.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            plain.extend_from_slice(bytes);
        })
    }
}

/// Whether every value the `offsets` delimit is exactly one byte long. Folds every length's difference from 1 together instead of stopping at the first, so
/// the loop is branch-free and vectorised.
fn every_value_is_one_byte<O: ArrowNativeType>(offsets: &[O]) -> bool {
    let (starts, ends) = (offsets, offsets.get(1..).unwrap_or_default());
    starts.iter().zip(ends).fold(0, |other, (start, end)| {
        other | (end.as_usize().wrapping_sub(start.as_usize()) ^ 1)
    }) == 0
}

/// The 16-byte key of the value of `len` ≤ [`INLINE_MAX`] bytes at `data[start..]`: Arrow's
/// inline view (length in the low 4 bytes, then the bytes, zero padded), so `Utf8View` views
/// are their own keys. Reads a whole 16-byte window and masks it where the buffer allows,
/// rather than copying a variable number of bytes.
#[inline]
fn inline_key_at(data: &[u8], start: usize, len: usize) -> u128 {
    debug_assert!(len <= INLINE_MAX);
    let window = match data.get(start..start + 16) {
        Some(window) => u128::from_le_bytes(window.try_into().expect("16 bytes")),
        None => {
            let mut bytes = [0u8; 16];
            bytes[..len].copy_from_slice(&data[start..start + len]);
            u128::from_le_bytes(bytes)
        }
    };
    ((window << 32) & inline_mask(len)) | len as u128
}

/// The bits of an inline key of a `len`-byte value: its length and its bytes.
#[inline]
fn inline_mask(len: usize) -> u128 {
    u128::MAX >> (96 - 8 * len)
}

/// The dictionary of an INT32 or INT64 column chunk (a few distinct values far apart, like
/// status codes, where codes are much narrower than deltas) and the codes of the current
/// page.
#[derive(Debug)]
pub(super) struct IntDictionary<T> {
    /// Entries are `PLAIN` encoded: little-endian.
    pub(super) pages: DictionaryPages,
    /// Codes by distance from a base, while the values stay close together: made from the
    /// first batch's values, dropped once a value it cannot hold turns up.
    range: Option<RangeCodes>,
    range_tried: bool,
    recent: RecentCodes<T>,
    codes_of: HashMap<T, u32, BuildHasherDefault<KeyHasher>>,
}

/// A physical integer type and its `PLAIN` encoding.
pub(super) trait PlainInt: RecentKey + std::hash::Hash {
    fn put_plain(self, out: &mut Vec<u8>);
    fn to_i64(self) -> i64;
}

impl PlainInt for i32 {
    fn put_plain(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn to_i64(self) -> i64 {
        i64::from(self)
    }
}

impl PlainInt for i64 {
    fn put_plain(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn to_i64(self) -> i64 {
        self
    }
}

/// A key a [`RecentCodes`] cache can hold: folded to 64 bits to pick its slot.
pub(super) trait RecentKey: Copy + Eq + Default {
    fn fold(self) -> u64;
}

impl RecentKey for i32 {
    fn fold(self) -> u64 {
        self as u64
    }
}

impl RecentKey for i64 {
    fn fold(self) -> u64 {
        self as u64
    }
}

impl RecentKey for u128 {
    fn fold(self) -> u64 {
        (self as u64) ^ ((self >> 64) as u64).rotate_left(17)
    }
}

/// A direct-mapped cache from keys to dictionary codes: the fast path of every lookup.
/// Columns worth a dictionary repeat a few values, so nearly every lookup hits; a miss goes to
/// the dictionary's hash map and replaces the slot.
#[derive(Debug)]
pub(super) struct RecentCodes<K> {
    /// `(key, code)`; code `u32::MAX` marks an empty slot (codes stay far below it).
    slots: Box<[(K, u32)]>,
}

impl<K: RecentKey> Default for RecentCodes<K> {
    fn default() -> Self {
        RecentCodes {
            slots: vec![(K::default(), u32::MAX); RECENT_SLOTS].into_boxed_slice(),
        }
    }
}

impl<K: RecentKey> RecentCodes<K> {
    #[inline(always)]
    fn slot(key: K) -> usize {
        // Fibonacci hashing: the top bits of the product depend on every bit of the key.
        (key.fold().wrapping_mul(MULTIPLIER) >> (64 - RECENT_SLOTS.trailing_zeros())) as usize
    }

    #[inline(always)]
    fn get(&self, key: K) -> Option<u32> {
        let (cached, code) = self.slots[Self::slot(key)];
        (cached == key && code != u32::MAX).then_some(code)
    }

    fn put(&mut self, key: K, code: u32) {
        self.slots[Self::slot(key)] = (key, code);
    }

    /// Appends the cached code of the key of each of `values` (`key` makes it) to `codes`,
    /// in order, up to the first key not cached; returns how many it appended. Nothing but
    /// the cache is touched in the loop, so the lookups of consecutive keys overlap; the
    /// values are read as they are (`Decimal128`s, say), not first copied as keys.
    fn fill<S: Copy, C: Code>(
        &self,
        values: &[S],
        key: impl Fn(S) -> K,
        codes: &mut Vec<C>,
    ) -> usize {
        let start = codes.len();
        codes.resize(start + values.len(), C::default());
        let slots = &self.slots[..];
        let mut filled = values.len();
        for (i, (&value, code)) in values.iter().zip(&mut codes[start..]).enumerate() {
            let key = key(value);
            let (cached, cached_code) = slots[Self::slot(key)];
            if cached != key || cached_code == u32::MAX {
                filled = i;
                break;
            }
            *code = C::from_code(cached_code);
        }
        codes.truncate(start + filled);
        filled
    }
}

impl<T: PlainInt> Default for IntDictionary<T> {
    fn default() -> Self {
        IntDictionary {
            pages: DictionaryPages::default(),
            range: None,
            range_tried: false,
            recent: RecentCodes::default(),
            codes_of: HashMap::default(),
        }
    }
}

impl<T: PlainInt> IntSink<T> for IntDictionary<T> {
    /// Encodes the page's next non-null values (`convert` of each of `values`) into the
    /// current page's codes: from the [`RangeCodes`] table in one pass when every value has a
    /// code there; otherwise runs of cached values in [`RecentCodes::fill`]'s tight loop, each
    /// miss in between through the hash map (which also teaches the table the new values).
    /// Either way a value's code is the one its first appearance gave it.
    fn take<S: Copy + 'static>(&mut self, values: &[S], convert: impl Fn(S) -> T + Copy) {
        let key = |value: S| convert(value).to_i64();
        if !self.range_tried && !values.is_empty() {
            self.range_tried = true;
            self.range = RangeCodes::around(values.iter().map(|&v| key(v)));
        }
        let Some(range) = &self.range else {
            return self.take_through_cache(values, convert);
        };
        let start = self.pages.codes.len();
        let complete = match &mut self.pages.codes {
            Codes::Narrow(codes) => range.fill_narrow(values, key, codes),
            Codes::Wide(codes) => range.fill(values, key, codes),
        };
        if complete {
            return;
        }
        self.pages.codes.truncate(start);
        let entries = self.pages.entries;
        self.take_through_cache(values, convert);
        if self.pages.entries == entries {
            // Missed on values the table cannot hold: it would miss on every batch.
            self.range = None;
        }
    }
}

impl<T: PlainInt> IntDictionary<T> {
    fn take_through_cache<S: Copy>(&mut self, values: &[S], convert: impl Fn(S) -> T + Copy) {
        let mut done = 0;
        while done < values.len() {
            let rest = &values[done..];
            done += match &mut self.pages.codes {
                Codes::Narrow(codes) => self.recent.fill(rest, convert, codes),
                Codes::Wide(codes) => self.recent.fill(rest, convert, codes),
            };
            if let Some(&value) = values.get(done) {
                let code = self.code_of_slow(convert(value));
                self.pages.codes.push(code);
                done += 1;
            }
        }
    }

    #[inline(never)]
    fn code_of_slow(&mut self, value: T) -> u32 {
        let code = match self.codes_of.get(&value) {
            Some(&code) => code,
            None => {
                let code = self.pages.add(|plain| value.put_plain(plain));
                self.codes_of.insert(value, code);
                let held = self
                    .range
                    .as_mut()
                    .is_none_or(|r| r.learn(value.to_i64(), code));
                if !held {
                    self.range = None;
                }
                code
            }
        };
        self.recent.put(value, code);
        code
    }
}

/// Appends the non-null values of `array` (a type [`supports`] accepts) to `out` `PLAIN`
/// encoded: a page written after the dictionary outgrew its limit.
pub(super) fn append_plain(array: &dyn Array, out: &mut Vec<u8>) {
    let mut put = |bytes: &[u8]| {
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(bytes);
    };
    let nulls = array.nulls().filter(|n| n.null_count() > 0);
    let valid: Box<dyn Iterator<Item = usize>> = match nulls {
        None => Box::new(0..array.len()),
        Some(nulls) => Box::new(nulls.valid_indices()),
    };
    match array.data_type() {
        DataType::Utf8 => valid.for_each(|i| put(array.as_string::<i32>().value(i).as_bytes())),
        DataType::LargeUtf8 => {
            valid.for_each(|i| put(array.as_string::<i64>().value(i).as_bytes()))
        }
        DataType::Binary => valid.for_each(|i| put(array.as_binary::<i32>().value(i))),
        DataType::LargeBinary => valid.for_each(|i| put(array.as_binary::<i64>().value(i))),
        DataType::Utf8View => valid.for_each(|i| put(array.as_string_view().value(i).as_bytes())),
        DataType::BinaryView => valid.for_each(|i| put(array.as_binary_view().value(i))),
        other => unreachable!("plain encoding of {other} as bytes (see `supports`)"),
    }
}

/// A multiply-rotate hasher for dictionary keys: the keys are short and not adversarial (a
/// task's own data), so SipHash's cost buys nothing here.
#[derive(Debug, Default)]
pub(crate) struct KeyHasher(u64);

const MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

impl KeyHasher {
    #[inline]
    fn mix(&mut self, word: u64) {
        self.0 = (self.0 ^ word).wrapping_mul(MULTIPLIER).rotate_left(26);
    }
}

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        // hashbrown takes its control bits from the top: spread the last mix into them.
        self.0 ^ (self.0 >> 32)
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.mix(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let mut tail = [0u8; 8];
        tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.mix(u64::from_le_bytes(tail) ^ bytes.len() as u64);
    }

    fn write_u128(&mut self, key: u128) {
        self.mix(key as u64);
        self.mix((key >> 64) as u64);
    }

    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }

    fn write_i32(&mut self, n: i32) {
        self.mix(n as u64);
    }

    fn write_i64(&mut self, n: i64) {
        self.mix(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_byte_values_are_coded_by_table_including_new_ones_mid_batch() {
        let mut dictionary = ByteDictionary::default();
        dictionary.append_single_bytes(b"NNONAN");
        dictionary.append_single_bytes(b"RNR");
        assert_eq!(
            dictionary.pages.codes.to_u32s(),
            [0, 0, 1, 0, 2, 0, 3, 0, 3]
        );
        assert_eq!(dictionary.pages.entries, 4);
        assert!(every_value_is_one_byte(&[3i32, 4, 5, 6]));
        assert!(!every_value_is_one_byte(&[3i32, 4, 4, 6]));
        assert!(!every_value_is_one_byte(&[0i64, 2]));
    }

    /// The codes and `PLAIN` entries a dictionary must give `batches`: each value's code is
    /// its order of first appearance.
    fn expected_codes(batches: &[Vec<i64>]) -> (Vec<u32>, Vec<u8>) {
        let mut seen = std::collections::HashMap::new();
        let mut plain = Vec::new();
        let codes = batches
            .iter()
            .flatten()
            .map(|&v| {
                let next = seen.len() as u32;
                *seen.entry(v).or_insert_with(|| {
                    plain.extend_from_slice(&v.to_le_bytes());
                    next
                })
            })
            .collect();
        (codes, plain)
    }

    #[test]
    fn integer_codes_come_from_the_range_table_while_values_stay_close_and_are_the_same_after() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut random = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let quantities = |n: usize, random: &mut dyn FnMut(u64) -> u64| -> Vec<i64> {
            (0..n).map(|_| (random(50) as i64 + 1) * 100).collect()
        };
        // Decimal-like quantities (first batch sets the range), a new value inside it mid
        // stream, then values far outside (the table is given up), then more of the first.
        let mut batches = vec![quantities(1000, &mut random), quantities(1000, &mut random)];
        batches.push([vec![4_321], quantities(500, &mut random)].concat());
        let mut stages = vec![true; 3];
        batches.push(vec![7_000_000, i64::MIN, 100, i64::MAX]);
        batches.push(quantities(800, &mut random));
        stages.extend([false, false]);

        let mut dictionary = IntDictionary::<i64>::default();
        for (i, (batch, table_kept)) in batches.iter().zip(stages).enumerate() {
            // Fed as `i128`s, as a `Decimal128` column is.
            let wide: Vec<i128> = batch.iter().map(|&v| i128::from(v)).collect();
            dictionary.take(&wide, |v| v as i64);
            assert_eq!(dictionary.range.is_some(), table_kept, "after batch {i}");
        }
        let (codes, plain) = expected_codes(&batches);
        assert_eq!(dictionary.pages.codes.to_u32s(), codes);
        assert_eq!(dictionary.pages.plain, plain);

        // A first batch spread too wide never gets a table; the codes are the same.
        let batches = vec![vec![0, 1 << 20, 5], vec![5, 0, 7]];
        let mut dictionary = IntDictionary::<i64>::default();
        for batch in &batches {
            dictionary.take(batch, |v| v);
            assert!(dictionary.range.is_none());
        }
        assert_eq!(dictionary.pages.codes.to_u32s(), expected_codes(&batches).0);

        // INT32 values, and a dictionary of more than 256 entries (wide codes) in range.
        let batches: Vec<Vec<i64>> = vec![
            (0..300).rev().collect(),
            (0..600).map(|v| v % 300).collect(),
        ];
        let mut dictionary = IntDictionary::<i32>::default();
        for batch in &batches {
            let narrow: Vec<i32> = batch.iter().map(|&v| v as i32).collect();
            dictionary.take(&narrow, |v| v);
        }
        assert!(dictionary.range.is_some());
        assert_eq!(dictionary.pages.codes.to_u32s(), expected_codes(&batches).0);
    }
}
