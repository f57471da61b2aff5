//! Bytes looked up in a 256-entry byte table, 64 at a time where the CPU allows: the
//! codes of one-byte strings ([`super::single_bytes`]) and of integers a few apart
//! ([`super::range_codes`]).
//!
//! A lookup per byte is a load per value, about a cycle each however the loop is written
//! (there is no byte gather). With AVX-512 VBMI the whole table fits in four registers and
//! `vpermt2b` looks up 64 bytes in one instruction: a few instructions per 64 values,
//! 0.3 ns → under 0.05 ns per value.

/// The table entry for "no code": a byte with no code yet, or whose code does not fit
/// below it.
pub(super) const NO_CODE: u8 = u8::MAX;

/// Whether [`lookup`] has the fast path here: callers that must first compute the bytes
/// to look up only pay for that when the lookup itself is cheap.
pub(super) fn is_fast() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512vbmi")
            && std::arch::is_x86_feature_detected!("avx512bw")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Appends `table[byte]` for each of `bytes` to `codes`; returns whether none was
/// [`NO_CODE`].
pub(super) fn lookup(table: &[u8; 256], codes: &mut Vec<u8>, bytes: &[u8]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if is_fast() {
        // SAFETY: `lookup_vbmi` requires AVX-512 F, BW and VBMI (BW implies F), and this
        // CPU has them.
        return unsafe { lookup_vbmi(table, codes, bytes) };
    }
    lookup_portable(table, codes, bytes)
}

/// [`lookup`] a byte at a time.
fn lookup_portable(table: &[u8; 256], codes: &mut Vec<u8>, bytes: &[u8]) -> bool {
    let mut highest = 0u8;
    codes.extend(bytes.iter().map(|&byte| {
        let code = table[usize::from(byte)];
        highest = highest.max(code);
        code
    }));
    highest != NO_CODE
}

/// [`lookup`] 64 bytes per step: the table's four 64-byte quarters in four registers, two
/// `vpermt2b` looking up every byte in the low and the high half, and the byte's top bit
/// choosing between them.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
fn lookup_vbmi(table: &[u8; 256], codes: &mut Vec<u8>, bytes: &[u8]) -> bool {
    use std::arch::x86_64::*;

    codes.reserve(bytes.len());
    let start = codes.len();
    let out = codes.spare_capacity_mut().as_mut_ptr().cast::<u8>();
    // SAFETY: every load reads within `table` (four 64-byte quarters of its 256) or within
    // `bytes` (whole chunks, then a masked load of the rest, which touches no byte past the
    // mask); every store writes within the `bytes.len()` bytes of spare capacity reserved
    // above, and `set_len` covers exactly those, all written.
    unsafe {
        let t = table.as_ptr();
        let quarter = |k: usize| _mm512_loadu_si512(t.add(64 * k).cast());
        let (low0, low1, high0, high1) = (quarter(0), quarter(1), quarter(2), quarter(3));
        let lookup = |x: __m512i| {
            let low = _mm512_permutex2var_epi8(low0, x, low1);
            let high = _mm512_permutex2var_epi8(high0, x, high1);
            _mm512_mask_blend_epi8(_mm512_movepi8_mask(x), low, high)
        };
        let none = _mm512_set1_epi8(NO_CODE as i8);
        let mut missing: u64 = 0;
        let (chunks, rest) = bytes.as_chunks::<64>();
        for (i, chunk) in chunks.iter().enumerate() {
            let codes = lookup(_mm512_loadu_si512(chunk.as_ptr().cast()));
            missing |= _mm512_cmpeq_epi8_mask(codes, none);
            _mm512_storeu_si512(out.add(64 * i).cast(), codes);
        }
        if !rest.is_empty() {
            let mask: u64 = (1 << rest.len()) - 1;
            let codes = lookup(_mm512_maskz_loadu_epi8(mask, rest.as_ptr().cast()));
            missing |= _mm512_mask_cmpeq_epi8_mask(mask, codes, none);
            _mm512_mask_storeu_epi8(out.add(64 * chunks.len()).cast(), mask, codes);
        }
        codes.set_len(start + bytes.len());
        missing == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64: reproducible bytes.
    fn bytes(seed: u64, n: usize) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn both_paths_look_up_every_byte_and_notice_missing_codes() {
        // Codes for most bytes, low and high halves alike; none for every seventh.
        let mut table = [NO_CODE; 256];
        for byte in 0..=255u8 {
            if !byte.is_multiple_of(7) {
                table[usize::from(byte)] = byte.wrapping_mul(31) % 255;
            }
        }
        let known = |b: &u8| !b.is_multiple_of(7);
        for n in [0, 1, 63, 64, 65, 127, 200, 8192] {
            for seed in 1..4 {
                let input = bytes(seed * 1000 + n as u64, n);
                // As drawn (mostly with bytes that have no code), and only the known ones.
                let kept: Vec<u8> = input.iter().copied().filter(known).collect();
                for input in [input, kept] {
                    let expected: Vec<u8> = input.iter().map(|&b| table[usize::from(b)]).collect();
                    let complete = input.iter().all(known);
                    let (mut portable, mut chosen) = (vec![9u8; 3], vec![9u8; 3]);
                    let portable_complete = lookup_portable(&table, &mut portable, &input);
                    assert_eq!(portable_complete, complete, "n {n}");
                    assert_eq!(lookup(&table, &mut chosen, &input), complete, "n {n}");
                    assert_eq!(&portable[3..], expected.as_slice(), "n {n}");
                    assert_eq!(chosen, portable, "n {n}");
                }
            }
        }
    }
}
