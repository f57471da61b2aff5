//! Dictionary codes of integers looked up by their distance from a base.
//!
//! Integer columns worth a dictionary are mostly a few values close together: quantities,
//! percentages, small decimals, codes, years, days. For those a table indexed by `value -
//! base` gives the code with a subtraction, a clamp and a load, in a loop with no branch per
//! value (a value with no code yet is seen once the batch is done, as in the one-byte string
//! path). [`RecentCodes`](super::dictionary) hashes every value and leaves its loop at the
//! first miss; in isolation this is ~2.5× faster on decimal quantities and discounts.

use super::codes::Code;

/// Values a table covers: 8,192 (16 KiB of codes, beside the batch in L1). Decimals with two
/// digits of scale below 80.00, or dates within 22 years, fit.
pub(crate) const SPAN: usize = 8192;
/// The table's mark for "no code": any value with the top bit set, so that the OR of a
/// batch's codes shows whether one was missing. Codes from here up are never stored.
const NO_CODE: u16 = u16::MAX;

/// Codes of the values `base..base + SPAN`, as far as they are known.
#[derive(Debug)]
pub(super) struct RangeCodes {
    base: i64,
    /// `codes[value - base]`; one more entry, always [`NO_CODE`], where every value outside
    /// the range is looked up.
    codes: Box<[u16; SPAN + 1]>,
}

impl RangeCodes {
    /// A table for a column whose first values are `keys`, if they lie within less than
    /// [`SPAN`]: centred on them, so that later values a little outside still fit.
    pub(super) fn around(keys: impl Iterator<Item = i64>) -> Option<Self> {
        let (min, max) = keys.fold((i64::MAX, i64::MIN), |(lo, hi), k| (lo.min(k), hi.max(k)));
        let width = usize::try_from(max.checked_sub(min)?).ok()?;
        let slack = SPAN.checked_sub(width + 1)? / 2;
        Some(RangeCodes {
            base: min.saturating_sub(slack as i64),
            codes: Box::new([NO_CODE; SPAN + 1]),
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

    /// Records that `key` has `code`. Returns `false` when the table cannot hold it (the
    /// key is outside the range or the code too large): such a value would miss every time.
    pub(super) fn learn(&mut self, key: i64, code: u32) -> bool {
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
}
