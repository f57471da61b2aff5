//! Damaging a file on purpose, for injected faults (a corrupt shuffle block or checkpoint
//! file). The bytes on disk change, so the detection that runs is the production one —
//! checksums and size checks — not a simulated flag.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};

/// Flips every bit of the byte in the middle of `file`, keeping its size; an empty file
/// (nothing to flip, and no valid content anyway) gets one garbage byte instead.
pub fn flip_middle_byte(mut file: &File) -> std::io::Result<()> {
    let len = file.metadata()?.len();
    if len == 0 {
        return file.write_all(&[0xFF]);
    }
    let middle = len / 2;
    let mut byte = [0u8; 1];
    file.seek(SeekFrom::Start(middle))?;
    file.read_exact(&mut byte)?;
    file.seek(SeekFrom::Start(middle))?;
    file.write_all(&[byte[0] ^ 0xFF])
}
