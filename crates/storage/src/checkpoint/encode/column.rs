//! One column chunk encoded by Ember: its pages, definition levels and chunk metadata.

use std::io::Read;

use arrow::array::Array;
use bytes::{Buf, Bytes};
use parquet::basic::{Compression, Encoding};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::ColumnChunkMetaData;
use parquet::file::reader::{ChunkReader, Length};
use parquet::schema::types::ColumnDescPtr;

use super::codes::Codes;
use super::delta::DeltaPage;
use super::dictionary::{self, ByteDictionary, DictionaryPages, IntDictionary};
use super::page_header::PageHeader;
use super::{hybrid, values};

/// Rows per data page. Pages bound the memory a reader decodes at once; 32 Ki values of
/// at most 8 bytes keep a page under 256 KiB before packing.
pub(super) const PAGE_ROWS: usize = 32 * 1024;
/// Dictionary page size past which a column's later pages are `PLAIN` (parquet-rs's default
/// `dictionary_page_size_limit`).
const DICTIONARY_LIMIT: usize = 1024 * 1024;

/// How a column's values are encoded.
#[derive(Debug)]
pub(super) enum Values {
    /// `DELTA_BINARY_PACKED` of an INT32 column: the current page, encoded as it comes.
    Delta32(DeltaPage<i32>),
    /// `DELTA_BINARY_PACKED` of an INT64 column.
    Delta64(DeltaPage<i64>),
    /// `RLE_DICTIONARY` codes of a byte-array column; once the dictionary outgrows
    /// [`DICTIONARY_LIMIT`], `PLAIN` pages (`spilled`), as parquet-rs and parquet-java do.
    /// The dictionary page stays: the earlier pages refer to it.
    Bytes {
        dictionary: ByteDictionary,
        spilled: Option<Vec<u8>>,
    },
    /// `RLE_DICTIONARY` codes of an INT32 column; past the limit, delta pages.
    Ints32 {
        dictionary: IntDictionary<i32>,
        page: DeltaPage<i32>,
        spilled: bool,
    },
    /// `RLE_DICTIONARY` codes of an INT64 column; past the limit, delta pages.
    Ints64 {
        dictionary: IntDictionary<i64>,
        page: DeltaPage<i64>,
        spilled: bool,
    },
}

impl Values {
    pub(super) fn bytes_dictionary() -> Self {
        Values::Bytes {
            dictionary: ByteDictionary::default(),
            spilled: None,
        }
    }

    pub(super) fn delta32() -> Self {
        Values::Delta32(DeltaPage::with_page_rows(PAGE_ROWS))
    }

    pub(super) fn delta64() -> Self {
        Values::Delta64(DeltaPage::with_page_rows(PAGE_ROWS))
    }

    pub(super) fn ints32_dictionary() -> Self {
        Values::Ints32 {
            dictionary: IntDictionary::default(),
            page: DeltaPage::with_page_rows(PAGE_ROWS),
            spilled: false,
        }
    }

    pub(super) fn ints64_dictionary() -> Self {
        Values::Ints64 {
            dictionary: IntDictionary::default(),
            page: DeltaPage::with_page_rows(PAGE_ROWS),
            spilled: false,
        }
    }

    fn append(&mut self, array: &dyn Array) {
        let accepted = match self {
            Values::Delta32(page) => values::visit_i32(array, page),
            Values::Delta64(page) => values::visit_i64(array, page),
            Values::Bytes {
                dictionary,
                spilled: None,
            } => {
                dictionary.append(array);
                true
            }
            Values::Bytes {
                spilled: Some(page),
                ..
            } => {
                dictionary::append_plain(array, page);
                true
            }
            // Once spilled, values gather for a delta page; until then they are coded as
            // they are read.
            Values::Ints32 {
                page,
                spilled: true,
                ..
            } => values::visit_i32(array, page),
            Values::Ints32 { dictionary, .. } => values::visit_i32(array, dictionary),
            Values::Ints64 {
                page,
                spilled: true,
                ..
            } => values::visit_i64(array, page),
            Values::Ints64 { dictionary, .. } => values::visit_i64(array, dictionary),
        };
        debug_assert!(accepted, "column type changed between batches");
    }

    /// Finishes the current page's values: appends their encoding to `out`, or the start of
    /// it with the rest returned as a buffer of its own (a delta page's blocks, already
    /// packed: copying them behind the header would only move bytes). Returns the encoding.
    fn encode_page(&mut self, out: &mut Vec<u8>) -> (Encoding, Option<Vec<u8>>) {
        let delta = Encoding::DELTA_BINARY_PACKED;
        match self {
            Values::Delta32(page)
            | Values::Ints32 {
                page,
                spilled: true,
                ..
            } => (delta, Some(page.finish(out))),
            Values::Delta64(page)
            | Values::Ints64 {
                page,
                spilled: true,
                ..
            } => (delta, Some(page.finish(out))),
            Values::Bytes {
                spilled: Some(page),
                ..
            } => {
                out.extend_from_slice(page);
                page.clear();
                (Encoding::PLAIN, None)
            }
            Values::Bytes { dictionary, .. } => (encode_codes(&mut dictionary.pages, out), None),
            Values::Ints32 { dictionary, .. } => (encode_codes(&mut dictionary.pages, out), None),
            Values::Ints64 { dictionary, .. } => (encode_codes(&mut dictionary.pages, out), None),
        }
    }

    /// Switches a dictionary column whose dictionary outgrew its limit to its fallback pages.
    fn spill_large_dictionary(&mut self) {
        let too_large = self
            .dictionary()
            .is_some_and(|pages| pages.plain.len() > DICTIONARY_LIMIT);
        if !too_large {
            return;
        }
        match self {
            Values::Bytes { spilled, .. } => {
                spilled.get_or_insert_with(Vec::new);
            }
            Values::Ints32 { spilled, .. } | Values::Ints64 { spilled, .. } => *spilled = true,
            Values::Delta32(_) | Values::Delta64(_) => {}
        }
    }

    fn dictionary(&self) -> Option<&DictionaryPages> {
        match self {
            Values::Bytes { dictionary, .. } => Some(&dictionary.pages),
            Values::Ints32 { dictionary, .. } => Some(&dictionary.pages),
            Values::Ints64 { dictionary, .. } => Some(&dictionary.pages),
            Values::Delta32(_) | Values::Delta64(_) => None,
        }
    }

    /// The chunk's dictionary, once its last page is written.
    fn into_dictionary(self) -> Option<DictionaryPages> {
        match self {
            Values::Bytes { dictionary, .. } => Some(dictionary.pages),
            Values::Ints32 { dictionary, .. } => Some(dictionary.pages),
            Values::Ints64 { dictionary, .. } => Some(dictionary.pages),
            Values::Delta32(_) | Values::Delta64(_) => None,
        }
    }
}

/// Appends a dictionary data page's payload (bit width, then the hybrid-encoded codes) to
/// `out` and clears the codes. The width is that of the largest code the dictionary has
/// given so far, as parquet-rs writes it: a bound on the page's codes known without
/// scanning them.
fn encode_codes(pages: &mut DictionaryPages, out: &mut Vec<u8>) -> Encoding {
    let width = hybrid::bit_width(pages.entries.saturating_sub(1));
    out.push(width);
    match &pages.codes {
        Codes::Narrow(codes) => hybrid::encode_hybrid_bytes(codes, width, out),
        Codes::Wide(codes) => hybrid::encode_hybrid(codes, width, out),
    }
    pages.codes.clear();
    Encoding::RLE_DICTIONARY
}

/// A column chunk being encoded: each finished page stays in its own buffers (header, then
/// payload) until the row group is written, and goes to the file from there.
pub(super) struct ColumnChunk {
    descr: ColumnDescPtr,
    values: Values,
    /// Definition levels of the current page, once it has a null (until then all are 1).
    levels: Option<Vec<u32>>,
    page_rows: usize,
    rows: usize,
    pages: ChunkParts,
    encodings: Vec<Encoding>,
}

impl ColumnChunk {
    pub(super) fn new(descr: ColumnDescPtr, values: Values) -> Self {
        ColumnChunk {
            descr,
            values,
            levels: None,
            page_rows: 0,
            rows: 0,
            pages: ChunkParts::default(),
            encodings: Vec::new(),
        }
    }

    /// Encodes `array` (the column's next rows).
    pub(super) fn write(&mut self, array: &dyn Array) -> Result<()> {
        let mut offset = 0;
        while offset < array.len() {
            let take = (array.len() - offset).min(PAGE_ROWS - self.page_rows);
            let slice = array.slice(offset, take);
            self.append_levels(slice.as_ref());
            self.values.append(slice.as_ref());
            self.page_rows += take;
            self.rows += take;
            offset += take;
            if self.page_rows == PAGE_ROWS {
                self.flush_page()?;
            }
        }
        Ok(())
    }

    /// The bytes of the chunk's finished pages.
    pub(super) fn buffered_bytes(&self) -> usize {
        self.pages.len
    }

    fn nullable(&self) -> bool {
        self.descr.max_def_level() > 0
    }

    fn append_levels(&mut self, array: &dyn Array) {
        let nulls = array.nulls().filter(|n| n.null_count() > 0);
        let page_rows = self.page_rows;
        match (&mut self.levels, nulls) {
            (None, None) => {}
            (Some(levels), None) => levels.resize(levels.len() + array.len(), 1),
            (levels, Some(nulls)) => {
                let levels = levels.get_or_insert_with(|| vec![1; page_rows]);
                levels.extend(nulls.iter().map(u32::from));
            }
        }
    }

    fn flush_page(&mut self) -> Result<()> {
        if self.page_rows == 0 {
            return Ok(());
        }
        // Empty: each encoder reserves its page's worst case in one go, and growing a
        // pre-sized buffer would copy all of it (mimalloc's `realloc` copies the whole old
        // block, not just the bytes in use).
        let mut buf = Vec::new();
        if self.nullable() {
            // V1 pages prefix the levels with their byte length: filled in once known.
            buf.extend_from_slice(&[0; 4]);
            match self.levels.take() {
                None => hybrid::encode_repeated(1, self.page_rows, 1, &mut buf),
                Some(page) => hybrid::encode_hybrid(&page, 1, &mut buf),
            }
            let length = (buf.len() - 4) as u32;
            buf[..4].copy_from_slice(&length.to_le_bytes());
        }
        let (encoding, rest) = self.values.encode_page(&mut buf);
        let size = buf.len() + rest.as_ref().map_or(0, Vec::len);
        let header = PageHeader::data(size, self.page_rows, encoding)?;
        self.pages.push_page(&header, buf);
        if let Some(rest) = rest {
            self.pages.push(Bytes::from(rest));
        }
        if !self.encodings.contains(&encoding) {
            self.encodings.push(encoding);
        }
        self.page_rows = 0;
        self.values.spill_large_dictionary();
        Ok(())
    }

    /// Finishes the chunk: its pages, dictionary page first.
    pub(super) fn close(mut self) -> Result<EncodedChunk> {
        self.flush_page()?;
        let mut encodings = vec![Encoding::RLE];
        // The dictionary page must come first, but is complete only now.
        let mut bytes = ChunkParts::default();
        if let Some(dictionary) = self.values.into_dictionary() {
            let header =
                PageHeader::dictionary(dictionary.plain.len(), dictionary.entries as usize)?;
            bytes.push_page(&header, dictionary.plain);
            encodings.push(Encoding::PLAIN);
        }
        let dictionary_len = bytes.len;
        bytes.append(self.pages);
        for encoding in self.encodings {
            if !encodings.contains(&encoding) {
                encodings.push(encoding);
            }
        }
        Ok(EncodedChunk {
            descr: self.descr,
            bytes,
            dictionary_len,
            encodings,
            rows: self.rows,
        })
    }
}

/// A finished column chunk Ember encoded: its pages, and what the row group records of it.
pub(super) struct EncodedChunk {
    descr: ColumnDescPtr,
    pub(super) bytes: ChunkParts,
    /// Bytes of the dictionary page at the chunk's start; 0 without one.
    dictionary_len: usize,
    encodings: Vec<Encoding>,
    rows: usize,
}

impl EncodedChunk {
    /// The chunk's metadata when its first byte is at `offset` in the file.
    pub(super) fn metadata(&self, offset: u64) -> Result<ColumnChunkMetaData> {
        let offset = offset as i64;
        let len = self.bytes.len as i64;
        ColumnChunkMetaData::builder(self.descr.clone())
            .set_encodings(self.encodings.clone())
            .set_compression(Compression::UNCOMPRESSED)
            .set_num_values(self.rows as i64)
            .set_total_compressed_size(len)
            .set_total_uncompressed_size(len)
            .set_data_page_offset(offset + self.dictionary_len as i64)
            .set_dictionary_page_offset((self.dictionary_len > 0).then_some(offset))
            .build()
    }

    /// The chunk as the parquet crate's row group writer takes one it did not encode: read
    /// through [`ChunkParts`]' [`ChunkReader`], offsets counted from the chunk's start.
    pub(super) fn close_result(&self) -> Result<ColumnCloseResult> {
        Ok(ColumnCloseResult {
            bytes_written: self.bytes.len as u64,
            rows_written: self.rows as u64,
            metadata: self.metadata(0)?,
            bloom_filter: None,
            column_index: None,
            offset_index: None,
        })
    }
}

/// A column chunk's bytes as the buffers they were encoded in: each page's header, then its
/// payload, in file order. Written out buffer by buffer, never copied into one.
#[derive(Debug, Default)]
pub(super) struct ChunkParts {
    parts: Vec<Bytes>,
    len: usize,
}

impl ChunkParts {
    fn push_page(&mut self, header: &PageHeader, payload: Vec<u8>) {
        self.push(Bytes::copy_from_slice(header.as_bytes()));
        self.push(Bytes::from(payload));
    }

    fn push(&mut self, part: Bytes) {
        self.len += part.len();
        self.parts.push(part);
    }

    fn append(&mut self, other: ChunkParts) {
        self.len += other.len;
        self.parts.extend(other.parts);
    }

    /// The buffers, in file order.
    pub(super) fn parts(&self) -> &[Bytes] {
        &self.parts
    }
}

impl Length for ChunkParts {
    fn len(&self) -> u64 {
        self.len as u64
    }
}

impl ChunkReader for ChunkParts {
    type T = PartsReader;

    fn get_read(&self, start: u64) -> Result<PartsReader> {
        let mut skip = usize::try_from(start).unwrap_or(usize::MAX);
        if skip > self.len {
            return Err(ParquetError::EOF(format!(
                "offset {start} past the end of a {} byte chunk",
                self.len
            )));
        }
        let mut rest = Vec::with_capacity(self.parts.len());
        for part in &self.parts {
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            rest.push(part.slice(skip..));
            skip = 0;
        }
        Ok(PartsReader {
            parts: rest.into_iter(),
            current: Bytes::new(),
        })
    }

    /// Not on the writing path (`append_column` streams through [`Self::get_read`]), so
    /// it simply collects from there.
    fn get_bytes(&self, start: u64, length: usize) -> Result<Bytes> {
        let mut bytes = Vec::with_capacity(length);
        self.get_read(start)?
            .take(length as u64)
            .read_to_end(&mut bytes)?;
        if bytes.len() < length {
            return Err(ParquetError::EOF(format!(
                "{length} bytes at {start} of a {} byte chunk",
                self.len
            )));
        }
        Ok(Bytes::from(bytes))
    }
}

/// Reads a [`ChunkParts`]' buffers one after another.
pub(super) struct PartsReader {
    parts: std::vec::IntoIter<Bytes>,
    current: Bytes,
}

impl Read for PartsReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.parts.next() {
                Some(part) => self.current = part,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_reads_as_its_parts_in_order_from_any_offset() {
        let mut chunk = ChunkParts::default();
        for part in [&b"di"[..], b"ct", b"", b"pag", b"es"] {
            chunk.push(Bytes::from_static(part));
        }
        assert_eq!(chunk.len(), 9);
        for start in 0..=9u64 {
            let mut read = Vec::new();
            chunk
                .get_read(start)
                .unwrap()
                .read_to_end(&mut read)
                .unwrap();
            assert_eq!(read, &b"dictpages"[start as usize..]);
            for length in 0..=(9 - start as usize) {
                let bytes = chunk.get_bytes(start, length).unwrap();
                assert_eq!(bytes, &b"dictpages"[start as usize..][..length]);
            }
        }
        assert!(chunk.get_read(10).is_err());
        assert!(chunk.get_bytes(5, 5).is_err());
    }
}
