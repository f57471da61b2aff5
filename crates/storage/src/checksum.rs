//! A cheap streaming 64-bit checksum for files Ember writes and later verifies (shuffle
//! blocks, checkpoint files). It is not cryptographic: it exists to notice truncated,
//! overwritten or bit-flipped files, at memory speed.
//!
//! The input is read as 8-byte words dealt round-robin to sixteen lanes; each lane updates
//! as `s = rotl((s ^ w) * K, 29)`. For a fixed word that step is a bijection of `s`, so
//! changing any single word (or the length) always changes the result. Sixteen lanes because
//! one is a chain of dependent multiplies (about 2 bytes per cycle): independent lanes are
//! what the CPU overlaps, and sixteen fill two AVX-512 registers, so the compiler turns each
//! 128-byte round into a few vector instructions (AVX2, without a 64-bit multiply, still
//! overlaps them). Measured on this
//! project's machine (AMD EPYC, AVX-512): 4 lanes 19 GB/s, 8 lanes 39, 16 lanes 73 on data
//! in cache, ~42 from memory. A checkpoint is checksummed twice (written, then read back
//! before its commit), so this is paid on every byte of every checkpoint twice.

use std::io::{self, Write};

const K: u64 = 0x9E37_79B9_7F4A_7C15;
const LANES: usize = 16;
/// Bytes per round: one word per lane.
const BLOCK: usize = 8 * LANES;
/// Digits of pi: the lanes' starting states (each lane a different rotation of one).
const SEEDS: [u64; 4] = [
    0x243F_6A88_85A3_08D3,
    0x1319_8A2E_0370_7344,
    0xA409_3822_299F_31D0,
    0x082E_FA98_EC4E_6C89,
];

#[derive(Debug, Clone)]
pub struct Checksum {
    lanes: [u64; LANES],
    tail: [u8; BLOCK],
    tail_len: usize,
    len: u64,
}

impl Default for Checksum {
    fn default() -> Self {
        Checksum {
            lanes: std::array::from_fn(|i| SEEDS[i % SEEDS.len()].rotate_left(8 * i as u32)),
            tail: [0; BLOCK],
            tail_len: 0,
            len: 0,
        }
    }
}

#[inline(always)]
fn mix(state: u64, word: u64) -> u64 {
    (state ^ word).wrapping_mul(K).rotate_left(29)
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

    #[inline(always)]
    fn mix_block(&mut self, block: &[u8; BLOCK]) {
        for (lane, word) in self.lanes.iter_mut().zip(block.as_chunks::<8>().0) {
            *lane = mix(*lane, u64::from_le_bytes(*word));
        }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.tail_len > 0 {
            let take = (BLOCK - self.tail_len).min(data.len());
            self.tail[self.tail_len..self.tail_len + take].copy_from_slice(&data[..take]);
            self.tail_len += take;
            data = &data[take..];
            if self.tail_len < BLOCK {
                return;
            }
            let block = self.tail;
            self.mix_block(&block);
            self.tail_len = 0;
        }
        let (blocks, rest) = data.as_chunks::<BLOCK>();
        for block in blocks {
            self.mix_block(block);
        }
        self.tail[..rest.len()].copy_from_slice(rest);
        self.tail_len = rest.len();
    }

    pub fn finish(&self) -> u64 {
        let mut c = self.clone();
        let mut last = [0u8; BLOCK];
        last[..c.tail_len].copy_from_slice(&c.tail[..c.tail_len]);
        c.mix_block(&last);
        let folded = c.lanes[1..]
            .iter()
            .fold(c.lanes[0], |s, &lane| mix(s, lane));
        // Final avalanche (splitmix64) so nearby inputs give unrelated sums.
        let mut z = mix(folded, c.len);
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
        // A flip in every lane's word of a round, and in the tail after the last round.
        for i in (3..2 * BLOCK).step_by(8).chain([999 - 5]) {
            let mut flipped = data.clone();
            flipped[i] ^= 0x80;
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
