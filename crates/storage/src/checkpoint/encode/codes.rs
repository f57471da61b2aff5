//! The dictionary codes of a data page, a byte each while they fit in one.
//!
//! Nearly every dictionary a checkpoint writes has at most 256 entries (flags, categories,
//! small-domain numbers: a column with more distinct values than that is usually delta
//! packed or plain). Its codes are kept as bytes: a quarter of the memory traffic of `u32`
//! codes, and the hybrid encoder packs bytes as they are (`encode_hybrid_bytes`) instead of
//! narrowing them first. The first code of 256 or more widens the page's codes to `u32`.

/// The codes of the current data page's non-null values.
#[derive(Debug)]
pub(super) enum Codes {
    /// Every code is below 256: the dictionary has at most 256 entries.
    Narrow(Vec<u8>),
    Wide(Vec<u32>),
}

impl Default for Codes {
    fn default() -> Self {
        Codes::Narrow(Vec::new())
    }
}

/// How one code is held: `u8` in a narrow page, `u32` in a wide one.
pub(super) trait Code: Copy + Default {
    /// `code`, which fits (a narrow page only ever receives codes below 256) — except a
    /// placeholder for a code not known yet, which is overwritten before it is read.
    fn from_code(code: u32) -> Self;
}

impl Code for u8 {
    #[inline(always)]
    fn from_code(code: u32) -> Self {
        code as u8
    }
}

impl Code for u32 {
    #[inline(always)]
    fn from_code(code: u32) -> Self {
        code
    }
}

impl Codes {
    pub(super) fn len(&self) -> usize {
        match self {
            Codes::Narrow(codes) => codes.len(),
            Codes::Wide(codes) => codes.len(),
        }
    }

    /// Drops the codes from `len` on.
    pub(super) fn truncate(&mut self, len: usize) {
        match self {
            Codes::Narrow(codes) => codes.truncate(len),
            Codes::Wide(codes) => codes.truncate(len),
        }
    }

    pub(super) fn clear(&mut self) {
        match self {
            Codes::Narrow(codes) => codes.clear(),
            Codes::Wide(codes) => codes.clear(),
        }
    }

    pub(super) fn reserve(&mut self, additional: usize) {
        match self {
            Codes::Narrow(codes) => codes.reserve(additional),
            Codes::Wide(codes) => codes.reserve(additional),
        }
    }

    /// Appends `code`, which must be below the dictionary's entry count as last passed to
    /// [`Codes::fit`].
    #[inline]
    pub(super) fn push(&mut self, code: u32) {
        match self {
            Codes::Narrow(codes) => {
                debug_assert!(code < 256, "code {code} in a narrow page");
                codes.push(code as u8)
            }
            Codes::Wide(codes) => codes.push(code),
        }
    }

    /// Overwrites the code at `index`.
    pub(super) fn set(&mut self, index: usize, code: u32) {
        match self {
            Codes::Narrow(codes) => {
                debug_assert!(code < 256, "code {code} in a narrow page");
                codes[index] = code as u8
            }
            Codes::Wide(codes) => codes[index] = code,
        }
    }

    /// Makes the page able to hold every code of a dictionary of `entries` entries: widens
    /// it once there are more than 256.
    pub(super) fn fit(&mut self, entries: u32) {
        if let Codes::Narrow(codes) = self {
            if entries > 256 {
                *self = Codes::Wide(codes.iter().map(|&c| u32::from(c)).collect());
            }
        }
    }

    /// The codes, widened (tests compare them).
    #[cfg(test)]
    pub(super) fn to_u32s(&self) -> Vec<u32> {
        match self {
            Codes::Narrow(codes) => codes.iter().map(|&c| u32::from(c)).collect(),
            Codes::Wide(codes) => codes.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_stay_bytes_up_to_256_entries_and_widen_with_their_values_after() {
        let mut codes = Codes::default();
        for code in 0..256 {
            codes.fit(code + 1);
            codes.push(code);
        }
        assert!(matches!(codes, Codes::Narrow(_)));
        codes.fit(257);
        codes.push(256);
        codes.set(0, 300);
        assert!(matches!(codes, Codes::Wide(_)));
        let expected: Vec<u32> = [300].into_iter().chain(1..257).collect();
        assert_eq!(codes.to_u32s(), expected);
        assert_eq!(codes.len(), 257);
        codes.clear();
        assert_eq!(codes.len(), 0);
    }
}
