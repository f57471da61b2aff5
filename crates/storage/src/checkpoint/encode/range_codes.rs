//! Dictionary codes of integers looked up by their distance from a base.
//!
//! Integer columns worth a dictionary are mostly a few values close together: quantities,
//! percentages, small decimals, codes, years, days. For those a table indexed by `value -
//! base` gives the code with a subtraction, a clamp and a load, in a loop with no branch per
//! value (a value with no code yet is seen once the batch is done, as in the one-byte string
//! path). [`RecentCodes`](super::dictionary) hashes every value and leaves its loop at the
//! first miss; in isolation this is ~2.5× faster on decimal quantities and discounts.
//!
//! While every value with a code lies within 255 steps of each other (discounts, taxes,
//! small counts, status numbers; a step is the first batch's common stride, so quantities
//! held as decimals with two digits of scale, all multiples of 100, count too) and every
//! code fits a byte, the codes are also kept in a byte table, and a narrow page's codes are
//! looked up 64 at a time ([`byte_lookup`]): each value's steps from the window's base,
//! clamped to a byte, are the index.

use super::byte_lookup::{self, NO_CODE as NO_BYTE_CODE};
use super::codes::Code;

/// Values a table covers: 8,192 (16 KiB of codes, beside the batch in L1). Decimals with two
/// digits of scale below 80.00, or dates within 22 years, fit.
pub(crate) const SPAN: usize = 8192;
/// The table's mark for "no code": any value with the top bit set, so that the OR of a
/// batch's codes shows whether one was missing. Codes from here up are never stored.
const NO_CODE: u16 = u16::MAX;

/// Values a byte window covers: index 255, where every value outside is looked up, is
/// always [`NO_BYTE_CODE`].
const WINDOW: usize = 255;
/// Values whose keys are turned into window indexes at a time (on the stack, in L1).
const INDEX_CHUNK: usize = 1024;
/// Keys of the first batch whose common stride the window takes (a wrong guess only costs
/// the window).
const STRIDE_SAMPLE: usize = 256;

/// Codes of the values `base..base + SPAN`, as far as they are known.
#[derive(Debug)]
pub(super) struct RangeCodes {
    base: i64,
    /// `codes[value - base]`; one more entry, always [`NO_CODE`], where every value outside
    /// the range is looked up.
    codes: Box<[u16; SPAN + 1]>,
    /// The same codes a byte each for [`WINDOW`] values a stride apart, while every value
    /// with a code is one of them and every code is below [`NO_BYTE_CODE`].
    window: Option<ByteWindow>,
}

/// Codes a byte each for the keys `base + i * stride`, `i` in `0..WINDOW`.
#[derive(Debug)]
struct ByteWindow {
    base: i64,
    /// The stride's odd factor's inverse modulo 2^64, and its power of two.
    inverse: u64,
    shift: u32,
    codes: Box<[u8; 256]>,
}

impl ByteWindow {
    /// A window centred on the keys `min..=max`, which are `stride` apart or a multiple of
    /// it, if it holds them.
    fn around(min: i64, max: i64, stride: u64) -> Option<Self> {
        let steps = max.abs_diff(min) / stride;
        let slack = (WINDOW as u64).checked_sub(steps + 1)? / 2;
        let base = min.checked_sub(i64::try_from(slack.checked_mul(stride)?).ok()?)?;
        // Every key of the window is representable, so index arithmetic never wraps into it.
        base.checked_add(i64::try_from((WINDOW as u64).checked_mul(stride)?).ok()?)?;
        let shift = stride.trailing_zeros();
        Some(ByteWindow {
            base,
            inverse: inverse_of_odd(stride >> shift),
            shift,
            codes: Box::new([NO_BYTE_CODE; 256]),
        })
    }

    /// `key`'s index: `(key - base) / stride` when that divides exactly and is below
    /// [`WINDOW`], else [`WINDOW`]. Branch-free, so that a batch's indexes vectorise: the
    /// difference times the inverse of the stride's odd factor, rotated right by its power
    /// of two, is the exact quotient when there is one, and otherwise too large to be an
    /// index (Granlund and Montgomery's divisibility test).
    #[inline(always)]
    fn index(&self, key: i64) -> u8 {
        let steps = (key.wrapping_sub(self.base) as u64)
            .wrapping_mul(self.inverse)
            .rotate_right(self.shift);
        steps.min(WINDOW as u64) as u8
    }
}

impl ByteWindow {
    /// [`ByteWindow::index`] of each of `values` into `indexes`, when they are `i128`s
    /// (`Decimal128`s) and AVX-512 is compiled in; returns whether it did. A value is its own
    /// key here, not its conversion to the column's integer type: one outside `i64` is outside
    /// the window (and then takes the general path, which converts it), and one inside is a
    /// key the window learned, which the conversion leaves as it is.
    ///
    /// Why: the general loop narrows each `i128` with a load and an insert per value; here 8
    /// are narrowed by one permute of two registers, and the rest of the index arithmetic
    /// runs 8 wide (encode_speed, quantities: 0.27 → 0.21–0.23 ns per value).
    #[inline]
    fn indexes_of_i128s<S: 'static>(&self, values: &[S], indexes: &mut [u8]) -> bool {
        #[cfg(all(
            target_arch = "x86_64",
            target_feature = "avx512f",
            target_feature = "avx512dq"
        ))]
        if std::any::TypeId::of::<S>() == std::any::TypeId::of::<i128>() {
            // SAFETY: `S` is `i128` (same type, so same layout and length).
            let values: &[i128] =
                unsafe { std::slice::from_raw_parts(values.as_ptr().cast(), values.len()) };
            self.indexes_of_i128s_avx512(values, indexes);
            return true;
        }
        let _ = (values, indexes);
        false
    }

    /// [`ByteWindow::indexes_of_i128s`]: 8 values per step, then the rest one at a time.
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx512f",
        target_feature = "avx512dq"
    ))]
    #[inline]
    fn indexes_of_i128s_avx512(&self, values: &[i128], indexes: &mut [u8]) {
        use std::arch::x86_64::*;
        assert_eq!(values.len(), indexes.len());
        let (eights, rest) = values.as_chunks::<8>();
        // SAFETY: AVX-512 F and DQ are compiled in (the `cfg` above); each step loads the 128
        // bytes of one chunk of 8 values and stores 8 bytes within `indexes` (same length).
        unsafe {
            let base = _mm512_set1_epi64(self.base);
            let inverse = _mm512_set1_epi64(self.inverse as i64);
            let shift = _mm512_set1_epi64(i64::from(self.shift));
            let outside = _mm512_set1_epi64(WINDOW as i64);
            // Qwords 0, 2, …, 14 of the pair of registers: the low halves; 1, 3, …: the high.
            let lows = _mm512_set_epi64(14, 12, 10, 8, 6, 4, 2, 0);
            let highs = _mm512_set_epi64(15, 13, 11, 9, 7, 5, 3, 1);
            for (i, eight) in eights.iter().enumerate() {
                let a = _mm512_loadu_si512(eight.as_ptr().cast());
                let b = _mm512_loadu_si512(eight.as_ptr().add(4).cast());
                let low = _mm512_permutex2var_epi64(a, lows, b);
                let high = _mm512_permutex2var_epi64(a, highs, b);
                // Fits in i64: the high half is the low half's sign.
                let fits = _mm512_cmpeq_epi64_mask(high, _mm512_srai_epi64::<63>(low));
                let steps = _mm512_rorv_epi64(
                    _mm512_mullo_epi64(_mm512_sub_epi64(low, base), inverse),
                    shift,
                );
                let steps = _mm512_mask_blend_epi64(fits, outside, steps);
                // Unsigned saturation to a byte: anything from WINDOW up becomes 255.
                _mm512_mask_cvtusepi64_storeu_epi8(
                    indexes.as_mut_ptr().add(8 * i).cast(),
                    0xFF,
                    steps,
                );
            }
        }
        let done = eights.len() * 8;
        for (index, &value) in indexes[done..].iter_mut().zip(rest) {
            *index = match i64::try_from(value) {
                Ok(key) => self.index(key),
                Err(_) => WINDOW as u8,
            };
        }
    }
}

/// The inverse of odd `a` modulo 2^64, by Newton's iteration: `a` is its own inverse to 3
/// bits, and each step doubles the bits that are right.
fn inverse_of_odd(a: u64) -> u64 {
    debug_assert!(a % 2 == 1);
    (0..5).fold(a, |x, _| {
        x.wrapping_mul(2u64.wrapping_sub(a.wrapping_mul(x)))
    })
}

/// The greatest common divisor of the differences of `keys` from `min` (0 when all equal).
fn common_stride(keys: impl Iterator<Item = i64>, min: i64) -> u64 {
    let mut stride = 0;
    for key in keys.take(STRIDE_SAMPLE) {
        stride = gcd(stride, key.abs_diff(min));
        if stride == 1 {
            break;
        }
    }
    stride
}

/// Stein's binary GCD: shifts and subtractions, no division.
fn gcd(mut a: u64, mut b: u64) -> u64 {
    if a == 0 || b == 0 {
        return a | b;
    }
    let common = (a | b).trailing_zeros();
    a >>= a.trailing_zeros();
    loop {
        b >>= b.trailing_zeros();
        if a > b {
            std::mem::swap(&mut a, &mut b);
        }
        b -= a;
        if b == 0 {
            return a << common;
        }
    }
}

impl RangeCodes {
    /// A table for a column whose first values are `keys`, if they lie within less than
    /// [`SPAN`]: centred on them, so that later values a little outside still fit.
    pub(super) fn around(keys: impl Iterator<Item = i64> + Clone) -> Option<Self> {
        let (min, max) = keys
            .clone()
            .fold((i64::MAX, i64::MIN), |(lo, hi), k| (lo.min(k), hi.max(k)));
        let width = usize::try_from(max.checked_sub(min)?).ok()?;
        let slack = SPAN.checked_sub(width + 1)? / 2;
        let window = ByteWindow::around(min, max, common_stride(keys, min).max(1));
        Some(RangeCodes {
            base: min.saturating_sub(slack as i64),
            codes: Box::new([NO_CODE; SPAN + 1]),
            window,
        })
    }

    /// Where `key`'s code is kept: its slot, or the last one (never a code) outside the range.
    #[inline(always)]
    fn slot(&self, key: i64) -> usize {
        (key.wrapping_sub(self.base) as u64).min(SPAN as u64) as usize
    }

    /// Appends the code of each of `values` (its key is `key(value)`) to `codes`; returns
    /// whether every one had a code. When not, what was appended is to be discarded.
    #[inline]
    pub(super) fn fill<S: Copy, C: Code>(
        &self,
        values: &[S],
        key: impl Fn(S) -> i64,
        codes: &mut Vec<C>,
    ) -> bool {
        let mut all = 0u16;
        codes.extend(values.iter().map(|&value| {
            let code = self.codes[self.slot(key(value))];
            all |= code;
            C::from_code(u32::from(code))
        }));
        all >> 15 == 0
    }

    /// [`RangeCodes::fill`] for a narrow page's codes: through the byte window while there
    /// is one and its lookup is fast. Stops at the first chunk with a missing code.
    #[inline]
    pub(super) fn fill_narrow<S: Copy + 'static>(
        &self,
        values: &[S],
        key: impl Fn(S) -> i64,
        codes: &mut Vec<u8>,
    ) -> bool {
        let Some(window) = self.window.as_ref().filter(|_| byte_lookup::is_fast()) else {
            return self.fill(values, key, codes);
        };
        let mut indexes = [0u8; INDEX_CHUNK];
        for chunk in values.chunks(INDEX_CHUNK) {
            let indexes = &mut indexes[..chunk.len()];
            if !window.indexes_of_i128s(chunk, indexes) {
                for (index, &value) in indexes.iter_mut().zip(chunk) {
                    *index = window.index(key(value));
                }
            }
            if !byte_lookup::lookup(&window.codes, codes, indexes) {
                return false;
            }
        }
        true
    }

    /// Records that `key` has `code`. Returns `false` when the table cannot hold it (the
    /// key is outside the range or the code too large): such a value would miss every time.
    /// A key outside the byte window, or a code too large for it, ends the window.
    pub(super) fn learn(&mut self, key: i64, code: u32) -> bool {
        if let Some(window) = &mut self.window {
            let index = usize::from(window.index(key));
            match u8::try_from(code) {
                Ok(code) if index < WINDOW && code != NO_BYTE_CODE => window.codes[index] = code,
                _ => self.window = None,
            }
        }
        let slot = self.slot(key);
        match u16::try_from(code) {
            Ok(code) if slot < SPAN && code >> 15 == 0 => {
                self.codes[slot] = code;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_is_made_only_for_keys_within_its_span_and_holds_both_ends() {
        assert!(RangeCodes::around([5, 5 + SPAN as i64].into_iter()).is_none());
        assert!(RangeCodes::around([i64::MIN, i64::MAX].into_iter()).is_none());
        assert!(RangeCodes::around(std::iter::empty()).is_none());
        let mut table = RangeCodes::around([100, 5000, 2500].into_iter()).expect("fits");
        assert!(table.learn(100, 0) && table.learn(5000, 1));
        // Centred: room on both sides for values a little outside the first batch's.
        assert!(table.learn(100 - 1000, 2) && table.learn(5000 + 1000, 3));
        assert!(!table.learn(i64::MIN, 4) && !table.learn(i64::MAX, 4));
        assert!(!table.learn(200, 1 << 15), "a code the table cannot hold");

        let mut codes: Vec<u8> = Vec::new();
        assert!(table.fill(&[5000i64, 100, -900, 6000], |v| v, &mut codes));
        assert_eq!(codes, [1, 0, 2, 3]);
        // Unknown, outside the range, or at the extremes: reported missing.
        for missing in [200, i64::MIN, i64::MAX, 100 + SPAN as i64 * 2] {
            let mut codes: Vec<u32> = Vec::new();
            assert!(!table.fill(&[100, missing], |v| v, &mut codes), "{missing}");
        }
    }

    /// The codes of a narrow page through the byte window (where the CPU makes it fast) are
    /// the table's, the window ends when a value or code it cannot hold is learned, and the
    /// table goes on without it.
    #[test]
    fn the_byte_window_gives_the_tables_codes_while_every_code_fits_it() {
        let keys: Vec<i64> = (0..3000).map(|i| 1000 + i * 7 % 11).collect();
        let mut table = RangeCodes::around(keys.iter().copied()).expect("fits");
        let window = table.window.as_ref().expect("11 values apart: a window");
        // Centred on the first keys (1000..=1010), with room on both sides.
        assert!(window.base < 1000 - 100 && window.base + WINDOW as i64 > 1010 + 100);
        for (code, key) in (1000..=1010).enumerate() {
            assert!(table.learn(key, code as u32));
        }
        let check = |table: &RangeCodes, keys: &[i64]| {
            let (mut narrow, mut wide) = (Vec::<u8>::new(), Vec::<u32>::new());
            let complete = table.fill_narrow(keys, |v| v, &mut narrow);
            assert_eq!(complete, table.fill(keys, |v| v, &mut wide));
            if complete {
                let expected: Vec<u8> = wide.iter().map(|&c| c as u8).collect();
                assert_eq!(narrow, expected);
            }
            complete
        };
        assert!(check(&table, &keys));
        // A value with no code yet, inside or outside the window: missing, both ways.
        for missing in [1011, 900, 1000 - 4000, i64::MIN, i64::MAX] {
            assert!(!check(&table, &[1000, missing, 1001]), "{missing}");
        }
        // Learning one more inside keeps the window; one outside it ends it.
        assert!(table.learn(1100, 11));
        assert!(table.window.is_some() && check(&table, &[1100, 1000, 1100]));
        assert!(table.learn(1000 + 2000, 12));
        assert!(table.window.is_none());
        assert!(check(&table, &[3000, 1100, 1005]));

        // Keys spread wider than the window: no window from the start.
        let table = RangeCodes::around([0, 300, 7].into_iter()).expect("fits the table");
        assert!(table.window.is_none());
        // Keys farther apart than the window spans... unless they share a stride.
        let quantities = (1..=50).map(|q| 100 * q);
        let mut table = RangeCodes::around(quantities.clone()).expect("fits the table");
        let window = table.window.as_ref().expect("50 steps of 100: a window");
        assert_eq!((window.inverse.wrapping_mul(25), window.shift), (1, 2));
        for (code, key) in quantities.clone().enumerate() {
            assert!(table.learn(key, code as u32));
        }
        let keys: Vec<i64> = quantities.clone().rev().chain(quantities).collect();
        assert!(check(&table, &keys));
        // Off the stride, below, above, far away: missing.
        for missing in [150, 101, 0, 5100, 100 - 100 * 300, i64::MIN, i64::MAX] {
            assert!(!check(&table, &[100, missing]), "{missing}");
        }
        assert!(table.learn(150, 50) && table.window.is_none());
        assert!(check(&table, &[150, 100, 5000]));

        // A code the window cannot hold (255) ends it too.
        let mut table = RangeCodes::around([0, 10, 3].into_iter()).expect("fits");
        assert!(table.learn(5, 254) && table.window.is_some());
        assert!(table.learn(6, 255) && table.window.is_none());
    }
    #[test]
    fn window_indexes_are_exact_quotients_and_everything_else_is_outside() {
        for stride in [1u64, 2, 3, 64, 100, 1000, 7 << 20] {
            let window = ByteWindow::around(-5 * stride as i64, 5 * stride as i64, stride)
                .expect("11 steps");
            for steps in -300i64..300 {
                for off in [0, 1, stride as i64 / 2, stride as i64 - 1] {
                    let key = window.base + steps * stride as i64 + off;
                    let from_base = key - window.base;
                    let quotient = from_base / stride as i64;
                    let exact = from_base % stride as i64 == 0;
                    let expected = if exact && (0..WINDOW as i64).contains(&quotient) {
                        quotient as u8
                    } else {
                        WINDOW as u8
                    };
                    assert_eq!(window.index(key), expected, "stride {stride} key {key}");
                }
            }
            assert_eq!(window.index(i64::MIN), WINDOW as u8);
            assert_eq!(window.index(i64::MAX), WINDOW as u8);
        }
        assert!(ByteWindow::around(i64::MIN, i64::MIN + 10, 1).is_none());
        assert_eq!(gcd(0, 0), 0);
        assert_eq!(gcd(0, 12), 12);
        assert_eq!(gcd(100, 4900), 100);
        assert_eq!(gcd(12, 18), 6);
        assert_eq!(common_stride([3, 3].into_iter(), 3), 0);
        assert_eq!(common_stride([100, 300, 5000].into_iter(), 100), 100);
    }
    /// `i128` values (`Decimal128`s) get the indexes of the values they are, through
    /// whichever path this build has: a value outside `i64` is outside the window even when
    /// its low half is a key the window knows.
    #[test]
    fn i128_values_index_as_themselves() {
        for (keys, stride) in [(vec![100i64, 200, 5000], 100), (vec![-7, 3, 0], 1)] {
            let min = *keys.iter().min().unwrap();
            let max = *keys.iter().max().unwrap();
            let window = ByteWindow::around(min, max, stride).expect("a window");
            let mut values: Vec<i128> = Vec::new();
            for steps in -20..280i128 {
                let key = i128::from(window.base) + steps * i128::from(stride);
                values.extend([key, key + 1, key - 1]);
            }
            values.extend([
                i128::from(i64::MIN),
                i128::from(i64::MAX),
                (1i128 << 64) + i128::from(window.base),
                -(1i128 << 64) + i128::from(window.base) + 8 * i128::from(stride),
                i128::MAX,
                i128::MIN,
            ]);
            for len in [0, 1, 7, 8, 9, 100, values.len()] {
                let values = &values[..len];
                let expected: Vec<u8> = values
                    .iter()
                    .map(|&v| i64::try_from(v).map_or(WINDOW as u8, |k| window.index(k)))
                    .collect();
                let mut indexes = vec![0u8; len];
                let taken = window.indexes_of_i128s(values, &mut indexes);
                let compiled_in = cfg!(all(
                    target_arch = "x86_64",
                    target_feature = "avx512f",
                    target_feature = "avx512dq"
                ));
                assert_eq!(taken, compiled_in);
                if taken {
                    assert_eq!(indexes, expected, "stride {stride}, {len} values");
                }
            }
            // Other types are not taken.
            assert!(!window.indexes_of_i128s(&[1i64, 2], &mut [0u8; 2]));
        }
    }
}
