//! A byte table of dictionary codes for integers a common stride apart, indexed without a
//! division or a branch: what lets [`super::range_codes`] look a narrow page's codes up 64
//! at a time ([`super::byte_lookup`]).
//!
//! A window holds [`WINDOW`] keys `base + i * stride`. A key's index is the exact quotient
//! of its distance from the base by the stride, or [`WINDOW`] ("outside") when there is
//! none below it; the stride is the first batch's common one (its GCD), so quantities held
//! as decimals with two digits of scale (all multiples of 100) fit as well as small counts.

use super::byte_lookup::NO_CODE;

/// Keys a window covers: index 255, where every key outside is looked up, is always
/// [`NO_CODE`].
pub(super) const WINDOW: usize = 255;
/// Keys of the first batch whose common stride the window takes (a wrong guess only costs
/// the window).
const STRIDE_SAMPLE: usize = 256;

/// Codes a byte each for the keys `base + i * stride`, `i` in `0..WINDOW`.
#[derive(Debug)]
pub(super) struct ByteWindow {
    pub(super) base: i64,
    /// The stride's odd factor's inverse modulo 2^64, and its power of two.
    pub(super) inverse: u64,
    pub(super) shift: u32,
    /// Codes by index; [`NO_CODE`] where there is none.
    pub(super) codes: Box<[u8; 256]>,
}

impl ByteWindow {
    /// A window centred on the keys `min..=max`, which are `stride` apart or a multiple of
    /// it, if it holds them.
    pub(super) fn around(min: i64, max: i64, stride: u64) -> Option<Self> {
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
            codes: Box::new([NO_CODE; 256]),
        })
    }

    /// `key`'s index: `(key - base) / stride` when that divides exactly and is below
    /// [`WINDOW`], else [`WINDOW`]. Branch-free, so that a batch's indexes vectorise: the
    /// difference times the inverse of the stride's odd factor, rotated right by its power
    /// of two, is the exact quotient when there is one, and otherwise too large to be an
    /// index (Granlund and Montgomery's divisibility test).
    #[inline(always)]
    pub(super) fn index(&self, key: i64) -> u8 {
        let steps = (key.wrapping_sub(self.base) as u64)
            .wrapping_mul(self.inverse)
            .rotate_right(self.shift);
        steps.min(WINDOW as u64) as u8
    }

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
    pub(super) fn indexes_of_i128s<S: 'static>(&self, values: &[S], indexes: &mut [u8]) -> bool {
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
pub(super) fn common_stride(keys: impl Iterator<Item = i64>, min: i64) -> u64 {
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

#[cfg(test)]
mod tests {
    use super::*;

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
