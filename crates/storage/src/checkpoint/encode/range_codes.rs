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
//! small counts, status numbers; a step is the first batch's common stride) and every code
//! fits a byte, the codes are also kept in a [`ByteWindow`], and a narrow page's codes are
//! looked up 64 at a time ([`byte_lookup`]).

use super::byte_lookup::{self, NO_CODE as NO_BYTE_CODE};
use super::byte_window::{common_stride, ByteWindow, WINDOW};
use super::codes::Code;

/// Values a table covers: 8,192 (16 KiB of codes, beside the batch in L1). Decimals with two
/// digits of scale below 80.00, or dates within 22 years, fit.
const SPAN: usize = 8192;
/// The table's mark for "no code": any value with the top bit set, so that the OR of a
/// batch's codes shows whether one was missing. Codes from here up are never stored.
const NO_CODE: u16 = u16::MAX;

/// Values whose keys are turned into window indexes at a time (on the stack, in L1).
const INDEX_CHUNK: usize = 1024;

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

/// Whether sampled values from `low` to `high` sit well inside one table: within half its
/// span, so that later values a little outside the sample's still have codes there.
pub(in crate::checkpoint) fn holds_with_room(low: i128, high: i128) -> bool {
    high - low < (SPAN / 2) as i128
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
}
