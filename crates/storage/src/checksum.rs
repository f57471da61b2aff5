//! A cheap streaming 64-bit checksum for files Ember writes and later verifies (shuffle
//! blocks). It is not cryptographic: it exists to notice truncated, overwritten or bit-flipped
//! files, at memory speed.
//!
//! Each 8-byte word `w` updates the state as `s = rotl((s ^ w) * K, 29)`. For a fixed word
//! that step is a bijection of `s`, so changing any single word (or the length) always changes
//! the result.

use std::io::{self, Write};

const K: u64 = 0x9E37_79B9_7F4A_7C15;

#[derive(Debug, Clone)]
pub struct Checksum {
    state: u64,
    tail: [u8; 8],
    tail_len: usize,
    len: u64,
}

impl Default for Checksum {
    fn default() -> Self {
        Checksum {
            state: 0x243F_6A88_85A3_08D3,
            tail: [0; 8],
            tail_len: 0,
            len: 0,
        }
    }
}

impl Checksum {
    pub fn new() -> Self {
        Self::default()
    }

    /// The checksum of `data` in one call.
    pub fn of(data: &[u8]) -> u64 {
        let mut c = Checksum::new();
        c.update(data);
        c.finish()
    }

    #[inline]
    fn mix(&mut self, word: u64) {
        self.state = (self.state ^ word).wrapping_mul(K).rotate_left(29);
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.tail_len > 0 {
            let take = (8 - self.tail_len).min(data.len());
            self.tail[self.tail_len..self.tail_len + take].copy_from_slice(&data[..take]);
            self.tail_len += take;
            data = &data[take..];
            if self.tail_len < 8 {
                return;
            }
            let word = u64::from_le_bytes(self.tail);
            self.mix(word);
            self.tail_len = 0;
        }
        let mut words = data.chunks_exact(8);
        for chunk in &mut words {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(bytes));
        }
        let rest = words.remainder();
        self.tail[..rest.len()].copy_from_slice(rest);
        self.tail_len = rest.len();
    }

    pub fn finish(&self) -> u64 {
        let mut c = self.clone();
        let mut last = [0u8; 8];
        last[..c.tail_len].copy_from_slice(&c.tail[..c.tail_len]);
        c.mix(u64::from_le_bytes(last));
        c.mix(c.len);
        // Final avalanche (splitmix64) so nearby inputs give unrelated sums.
        let mut z = c.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A writer that checksums and counts everything written through it.
#[derive(Debug)]
pub struct ChecksumWriter<W> {
    inner: W,
    checksum: Checksum,
}

impl<W: Write> ChecksumWriter<W> {
    pub fn new(inner: W) -> Self {
        ChecksumWriter {
            inner,
            checksum: Checksum::new(),
        }
    }

    pub fn checksum(&self) -> &Checksum {
        &self.checksum
    }

    pub fn into_parts(self) -> (W, Checksum) {
        (self.inner, self.checksum)
    }
}

impl<W: Write> Write for ChecksumWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.checksum.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_equals_one_shot_at_any_split() {
        let data: Vec<u8> = (0..100u32).map(|i| (i * 37 % 251) as u8).collect();
        let whole = Checksum::of(&data);
        for split in 0..data.len() {
            let mut c = Checksum::new();
            c.update(&data[..split]);
            c.update(&data[split..]);
            assert_eq!(c.finish(), whole, "split at {split}");
        }
    }

    #[test]
    fn detects_bit_flips_and_truncation() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i % 256) as u8).collect();
        let sum = Checksum::of(&data);
        for i in [0, 7, 8, 500, 999] {
            let mut flipped = data.clone();
            flipped[i] ^= 1;
            assert_ne!(Checksum::of(&flipped), sum, "flip at {i}");
        }
        assert_ne!(Checksum::of(&data[..999]), sum);
        // Trailing zero bytes change the length, hence the sum.
        let mut padded = data.clone();
        padded.push(0);
        assert_ne!(Checksum::of(&padded), sum);
    }

    #[test]
    fn writer_checksums_what_it_writes() {
        let mut w = ChecksumWriter::new(Vec::new());
        w.write_all(b"hello ").unwrap();
        w.write_all(b"world").unwrap();
        let (bytes, sum) = w.into_parts();
        assert_eq!(sum.finish(), Checksum::of(&bytes));
        assert_eq!(sum.len(), 11);
    }
}
