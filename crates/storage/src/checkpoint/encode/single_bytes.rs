//! Dictionary codes of one-byte values (flags like `'A'`/`'N'`/`'R'`, very common in
//! checkpointed data) by table lookup: a 256-entry table indexed by the byte, no key to build
//! or hash; a narrow page's codes (a byte each) through [`byte_lookup`], 64 at a time.
//!
//! A byte whose code is 255 has no narrow entry ([`NO_CODE`]): narrow lookups treat it as
//! unknown and leave it to [`SingleByteCodes::get`] (a dictionary of 256 or more entries,
//! whose codes will not stay narrow long anyway).

use super::byte_lookup::{self, NO_CODE};

/// The codes of the one-byte values a column has seen, by byte.
#[derive(Debug)]
pub(super) struct SingleByteCodes {
    /// `u32::MAX`: not seen yet.
    codes: Box<[u32; 256]>,
    /// The same codes a byte each ([`NO_CODE`] where there is none that fits), for narrow
    /// pages.
    narrow: Box<[u8; 256]>,
}

impl Default for SingleByteCodes {
    fn default() -> Self {
        SingleByteCodes {
            codes: Box::new([u32::MAX; 256]),
            narrow: Box::new([NO_CODE; 256]),
        }
    }
}

impl SingleByteCodes {
    /// The code of `byte`, if it has one.
    pub(super) fn get(&self, byte: u8) -> Option<u32> {
        let code = self.codes[usize::from(byte)];
        (code != u32::MAX).then_some(code)
    }

    pub(super) fn set(&mut self, byte: u8, code: u32) {
        self.codes[usize::from(byte)] = code;
        self.narrow[usize::from(byte)] = u8::try_from(code).unwrap_or(NO_CODE);
    }

    /// Appends the code of each of `bytes` to `codes`; returns whether every byte had one
    /// (the rest then hold placeholders to overwrite).
    pub(super) fn extend_wide(&self, codes: &mut Vec<u32>, bytes: &[u8]) -> bool {
        // A missing code, `u32::MAX`, is the only one with its top bit set.
        let mut all = 0u32;
        codes.extend(bytes.iter().map(|&byte| {
            let code = self.codes[usize::from(byte)];
            all |= code;
            code
        }));
        all >> 31 == 0
    }

    /// [`SingleByteCodes::extend_wide`] for a narrow page's codes.
    pub(super) fn extend_narrow(&self, codes: &mut Vec<u8>, bytes: &[u8]) -> bool {
        byte_lookup::lookup(&self.narrow, codes, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_kept_wide_and_narrow_and_code_255_only_wide() {
        let mut table = SingleByteCodes::default();
        for (code, byte) in [b'A', b'N', b'R', 200].into_iter().enumerate() {
            table.set(byte, code as u32);
        }
        table.set(7, 255);
        let mut narrow = Vec::new();
        assert!(table.extend_narrow(&mut narrow, b"ANRRA"));
        assert_eq!(narrow, [0, 1, 2, 2, 0]);
        assert!(table.extend_narrow(&mut narrow, &[200]));
        assert_eq!(narrow.last(), Some(&3));
        // Not seen yet, or a code a narrow entry cannot hold: missing there.
        assert!(!table.extend_narrow(&mut narrow, b"AX"));
        assert!(!table.extend_narrow(&mut narrow, &[7]));
        assert_eq!(table.get(b'X'), None);
        assert_eq!(table.get(7), Some(255));
        let mut wide = Vec::new();
        assert!(table.extend_wide(&mut wide, &[b'N', 7, 200]));
        assert_eq!(wide, [1, 255, 3]);
        assert!(!table.extend_wide(&mut wide, b"X"));
    }
}
