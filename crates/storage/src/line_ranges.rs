//! Splitting line-oriented files (CSV, JSON lines, text) into byte ranges that scan in
//! parallel, the way Hadoop input splits do.
//!
//! A range `[start, end)` owns exactly the lines that *start* inside it, so consecutive
//! ranges together read every line once, wherever the split points fall:
//! ```text
//!   bytes:   a b c \n d e f \n g h \n
//!   ranges:  [0 ........ 5)[5 .......)
//!   range 0 reads "abc", "def"  (def starts at 4 < 5, so it is range 0's, read to its end)
//!   range 1 skips to the first line starting at or after 5: reads "gh"
//! ```
//! The caveat, as in Spark: a quoted CSV value spanning lines cannot be split correctly,
//! so such files must be read whole.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// A byte range of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

/// Splits a file of `size` bytes into ranges of about `chunk` bytes (the last one may be
/// shorter). Deterministic.
pub fn split_ranges(size: u64, chunk: u64) -> Vec<ByteRange> {
    let chunk = chunk.max(1);
    let mut ranges = Vec::new();
    let mut start = 0;
    while start < size {
        let end = (start + chunk).min(size);
        ranges.push(ByteRange { start, end });
        start = end;
    }
    ranges
}

/// Opens the lines of `path` that start within `range` (`None` = the whole file).
pub fn open_lines(path: &Path, range: Option<ByteRange>) -> io::Result<Box<dyn BufRead + Send>> {
    let mut file = File::open(path)?;
    let Some(range) = range else {
        return Ok(Box::new(BufReader::new(file)));
    };
    let start = line_start_at_or_after(&mut file, range.start)?;
    let end = line_start_at_or_after(&mut file, range.end)?;
    file.seek(SeekFrom::Start(start))?;
    let len = end.saturating_sub(start);
    Ok(Box::new(BufReader::new(file.take(len))))
}

/// The offset of the first line that starts at or after `pos` (the file's end if none).
fn line_start_at_or_after(file: &mut File, pos: u64) -> io::Result<u64> {
    if pos == 0 {
        return Ok(0);
    }
    // A line starts at `pos` exactly when the byte before it is a newline, so scan from there.
    file.seek(SeekFrom::Start(pos - 1))?;
    let skipped = BufReader::new(&mut *file).skip_until(b'\n')?;
    Ok(pos - 1 + skipped as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_in(path: &Path, range: Option<ByteRange>) -> Vec<String> {
        open_lines(path, range)
            .unwrap()
            .lines()
            .map(|l| l.unwrap())
            .collect()
    }

    #[test]
    fn every_split_reads_every_line_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.txt");
        let text = "abc\ndef\n\ngh\nijklmnop\nq";
        std::fs::write(&path, text).unwrap();
        let expected = lines_in(&path, None);
        assert_eq!(expected, vec!["abc", "def", "", "gh", "ijklmnop", "q"]);
        for chunk in 1..=text.len() as u64 + 1 {
            let all: Vec<String> = split_ranges(text.len() as u64, chunk)
                .into_iter()
                .flat_map(|r| lines_in(&path, Some(r)))
                .collect();
            assert_eq!(all, expected, "chunk {chunk}");
        }
    }

    #[test]
    fn ranges_cover_the_file() {
        assert_eq!(
            split_ranges(10, 4),
            vec![
                ByteRange { start: 0, end: 4 },
                ByteRange { start: 4, end: 8 },
                ByteRange { start: 8, end: 10 }
            ]
        );
        assert!(split_ranges(0, 4).is_empty());
    }
}
