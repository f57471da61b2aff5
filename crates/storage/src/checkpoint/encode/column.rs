//! One column chunk encoded by Ember: its pages, definition levels and chunk metadata.

use std::io::{Chain, Read};

use arrow::array::Array;
use bytes::buf::Reader;
use bytes::{Buf, Bytes};
use parquet::basic::{Compression, Encoding};
use parquet::column::page::{CompressedPage, Page, PageWriteSpec, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::ColumnChunkMetaData;
use parquet::file::reader::{ChunkReader, Length};
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

use super::codes::Codes;
use super::dictionary::{self, ByteDictionary, DictionaryPages, IntDictionary};
use super::{delta, hybrid, values};

/// Rows per data page. Pages bound the memory a reader decodes at once; 32 Ki values of
/// at most 8 bytes keep a page under 256 KiB before packing.
pub(super) const PAGE_ROWS: usize = 32 * 1024;
/// Dictionary page size past which a column's later pages are `PLAIN` (parquet-rs's default
/// `dictionary_page_size_limit`).
const DICTIONARY_LIMIT: usize = 1024 * 1024;

/// How a column's values are encoded.
#[derive(Debug)]
pub(super) enum Values {
    /// `DELTA_BINARY_PACKED` of an INT32 column: the current page's non-null values.
    Delta32(Vec<i32>),
    /// `DELTA_BINARY_PACKED` of an INT64 column.
    Delta64(Vec<i64>),
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
        page: Vec<i32>,
        spilled: bool,
    },
    /// `RLE_DICTIONARY` codes of an INT64 column; past the limit, delta pages.
    Ints64 {
        dictionary: IntDictionary<i64>,
        page: Vec<i64>,
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

    pub(super) fn ints32_dictionary() -> Self {
        Values::Ints32 {
            dictionary: IntDictionary::default(),
            page: Vec::new(),
            spilled: false,
        }
    }

    pub(super) fn ints64_dictionary() -> Self {
        Values::Ints64 {
            dictionary: IntDictionary::default(),
            page: Vec::new(),
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

    /// Appends the current page's values to `out`, clears them, and returns their encoding.
    fn encode_page(&mut self, out: &mut Vec<u8>) -> Encoding {
        match self {
            Values::Delta32(page)
            | Values::Ints32 {
                page,
                spilled: true,
                ..
            } => {
                delta::encode_delta_i32(page, out);
                page.clear();
                Encoding::DELTA_BINARY_PACKED
            }
            Values::Delta64(page)
            | Values::Ints64 {
                page,
                spilled: true,
                ..
            } => {
                delta::encode_delta_i64(page, out);
                page.clear();
                Encoding::DELTA_BINARY_PACKED
            }
            Values::Bytes {
                spilled: Some(page),
                ..
            } => {
                out.extend_from_slice(page);
                page.clear();
                Encoding::PLAIN
            }
            Values::Bytes { dictionary, .. } => encode_codes(&mut dictionary.pages, out),
            Values::Ints32 { dictionary, .. } => encode_codes(&mut dictionary.pages, out),
            Values::Ints64 { dictionary, .. } => encode_codes(&mut dictionary.pages, out),
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

/// The buffer size a column's previous chunk needed: each new chunk allocates it up front,
/// so its buffer never grows by reallocation (copies, and fresh pages the kernel must zero —
/// both showed in the checkpoint bench's profile).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct SizeHint {
    chunk: usize,
}

/// A column chunk being encoded: whole pages go to `pages` as they fill.
pub(super) struct ColumnChunk {
    descr: ColumnDescPtr,
    values: Values,
    /// Definition levels of the current page, once it has a null (until then all are 1).
    levels: Option<Vec<u32>>,
    page_rows: usize,
    rows: usize,
    pages: TrackedWrite<Vec<u8>>,
    encodings: Vec<Encoding>,
}

impl ColumnChunk {
    pub(super) fn new(descr: ColumnDescPtr, values: Values, hint: SizeHint) -> Self {
        ColumnChunk {
            descr,
            values,
            levels: None,
            page_rows: 0,
            rows: 0,
            // A little over the last chunk: chunks of one column are alike in size.
            pages: TrackedWrite::new(Vec::with_capacity(hint.chunk + hint.chunk / 8)),
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
        let encoding = self.values.encode_page(&mut buf);
        let size = buf.len();
        let page = Page::DataPage {
            buf: Bytes::from(buf),
            num_values: self.page_rows as u32,
            encoding,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        };
        write_page(&mut self.pages, page, size)?;
        if !self.encodings.contains(&encoding) {
            self.encodings.push(encoding);
        }
        self.page_rows = 0;
        self.values.spill_large_dictionary();
        Ok(())
    }

    /// Finishes the chunk: its bytes (dictionary page first), what the row group records, and
    /// the sizes the column's next chunk should reserve.
    pub(super) fn close(mut self) -> Result<(ChunkBytes, ColumnCloseResult, SizeHint)> {
        self.flush_page()?;
        let pages = Bytes::from(self.pages.into_inner()?);
        let mut encodings = vec![Encoding::RLE];
        // The dictionary page must come first, but is complete only now: it is written on
        // its own, and the data pages follow it when the chunk is read.
        let (head, dictionary_page_offset) = match self.values.into_dictionary() {
            Some(dictionary) => {
                let size = dictionary.plain.len();
                let mut head = TrackedWrite::new(Vec::with_capacity(size + 64));
                let page = Page::DictionaryPage {
                    buf: Bytes::from(dictionary.plain),
                    num_values: dictionary.entries,
                    encoding: Encoding::PLAIN,
                    is_sorted: false,
                };
                encodings.push(Encoding::PLAIN);
                write_page(&mut head, page, size)?;
                (Bytes::from(head.into_inner()?), Some(0))
            }
            None => (Bytes::new(), None),
        };
        let data_page_offset = head.len() as i64;
        let hint = SizeHint { chunk: pages.len() };
        let bytes = ChunkBytes { head, pages };
        for encoding in self.encodings {
            if !encodings.contains(&encoding) {
                encodings.push(encoding);
            }
        }
        let metadata = ColumnChunkMetaData::builder(self.descr)
            .set_encodings(encodings)
            .set_compression(Compression::UNCOMPRESSED)
            .set_num_values(self.rows as i64)
            .set_total_compressed_size(bytes.len() as i64)
            .set_total_uncompressed_size(bytes.len() as i64)
            .set_data_page_offset(data_page_offset)
            .set_dictionary_page_offset(dictionary_page_offset)
            .build()?;
        let close = ColumnCloseResult {
            bytes_written: bytes.len(),
            rows_written: self.rows as u64,
            metadata,
            bloom_filter: None,
            column_index: None,
            offset_index: None,
        };
        Ok((bytes, close, hint))
    }
}

/// A finished column chunk: its dictionary page (if any), then its data pages, kept as two
/// buffers and read as one, so the data pages are not copied behind the dictionary page.
pub(super) struct ChunkBytes {
    head: Bytes,
    pages: Bytes,
}

impl Length for ChunkBytes {
    fn len(&self) -> u64 {
        (self.head.len() + self.pages.len()) as u64
    }
}

impl ChunkReader for ChunkBytes {
    type T = Chain<Reader<Bytes>, Reader<Bytes>>;

    fn get_read(&self, start: u64) -> Result<Self::T> {
        let (head, pages) = self.split_at(start)?;
        Ok(head.reader().chain(pages.reader()))
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
                self.len()
            )));
        }
        Ok(Bytes::from(bytes))
    }
}

impl ChunkBytes {
    /// The head's and the pages' bytes from `start` on.
    fn split_at(&self, start: u64) -> Result<(Bytes, Bytes)> {
        let start = usize::try_from(start).unwrap_or(usize::MAX);
        let head = self.head.len();
        match start.checked_sub(head) {
            None => Ok((self.head.slice(start..), self.pages.clone())),
            Some(into_pages) if into_pages <= self.pages.len() => {
                Ok((Bytes::new(), self.pages.slice(into_pages..)))
            }
            Some(_) => Err(ParquetError::EOF(format!(
                "offset {start} past the end of a {} byte chunk",
                self.len()
            ))),
        }
    }
}

fn write_page(sink: &mut TrackedWrite<Vec<u8>>, page: Page, size: usize) -> Result<PageWriteSpec> {
    SerializedPageWriter::new(sink).write_page(CompressedPage::new(page, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_reads_as_its_head_then_its_pages_from_any_offset() {
        let chunk = ChunkBytes {
            head: Bytes::from_static(b"dict"),
            pages: Bytes::from_static(b"pages"),
        };
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
