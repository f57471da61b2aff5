//! Page headers in Thrift's compact protocol, as the Parquet spec's `PageHeader` struct.
//!
//! Ember's encoders keep each finished page in its own buffer and write it to the file from
//! there; the parquet crate's page writer only takes a page together with the stream it
//! goes to (copying the page into a chunk buffer first). The headers Ember writes are two
//! fixed shapes — a V1 data page and a `PLAIN` dictionary page, no statistics or CRC — so
//! they are written here directly: a dozen fields, byte for byte what the parquet crate
//! writes for the same page (tested).

use parquet::basic::{Encoding, PageType};
use parquet::errors::{ParquetError, Result};

/// Room for the longest header made here (29 bytes; see the test of the largest sizes).
const MAX_LEN: usize = 32;

/// Compact-protocol field types.
const I32: u8 = 5;
const STRUCT: u8 = 12;
const BOOL_FALSE: u8 = 2;

/// One encoded page header.
pub(super) struct PageHeader {
    bytes: [u8; MAX_LEN],
    len: usize,
    /// Field id of the last field written in the struct being written (Thrift's compact
    /// protocol writes field ids as deltas from it).
    last_field: i16,
}

impl PageHeader {
    /// The header of a V1 data page of `payload` bytes holding `num_values` values (nulls
    /// included) in `encoding`, levels (if any) `RLE` encoded.
    pub(super) fn data(payload: usize, num_values: usize, encoding: Encoding) -> Result<Self> {
        let mut header = PageHeader::start(PageType::DATA_PAGE, payload)?;
        header.struct_field(5);
        header.i32_field(1, i32_of(num_values)?);
        header.i32_field(2, encoding as i32);
        header.i32_field(3, Encoding::RLE as i32); // definition levels
        header.i32_field(4, Encoding::RLE as i32); // repetition levels
        Ok(header.finish())
    }

    /// The header of a `PLAIN` dictionary page of `payload` bytes holding `num_values`
    /// entries, not sorted.
    pub(super) fn dictionary(payload: usize, num_values: usize) -> Result<Self> {
        let mut header = PageHeader::start(PageType::DICTIONARY_PAGE, payload)?;
        header.struct_field(7);
        header.i32_field(1, i32_of(num_values)?);
        header.i32_field(2, Encoding::PLAIN as i32);
        header.field(3, BOOL_FALSE); // is_sorted
        Ok(header.finish())
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// The fields every page header starts with; the page's own struct follows.
    fn start(page_type: PageType, payload: usize) -> Result<Self> {
        let mut header = PageHeader {
            bytes: [0; MAX_LEN],
            len: 0,
            last_field: 0,
        };
        let size = i32_of(payload)?;
        header.i32_field(1, page_type as i32);
        // Uncompressed and compressed sizes: checkpoint pages are not compressed.
        header.i32_field(2, size);
        header.i32_field(3, size);
        Ok(header)
    }

    /// Closes the page's struct and the header's.
    fn finish(mut self) -> Self {
        self.push(0);
        self.push(0);
        self
    }

    fn field(&mut self, id: i16, field_type: u8) {
        let delta = id - self.last_field;
        debug_assert!(
            (1..=15).contains(&delta),
            "field ids here ascend by 1 to 15"
        );
        self.push(((delta as u8) << 4) | field_type);
        self.last_field = id;
    }

    /// A struct field's header: the struct's own fields follow, their ids counted afresh.
    fn struct_field(&mut self, id: i16) {
        self.field(id, STRUCT);
        self.last_field = 0;
    }

    fn i32_field(&mut self, id: i16, value: i32) {
        self.field(id, I32);
        // Zigzag, then a varint.
        let mut zigzag = ((value << 1) ^ (value >> 31)) as u32;
        while zigzag >= 0x80 {
            self.push(zigzag as u8 | 0x80);
            zigzag >>= 7;
        }
        self.push(zigzag as u8);
    }

    fn push(&mut self, byte: u8) {
        self.bytes[self.len] = byte;
        self.len += 1;
    }
}

/// A page's size or value count as the `i32` Parquet stores it.
fn i32_of(n: usize) -> Result<i32> {
    i32::try_from(n).map_err(|_| {
        ParquetError::General(format!(
            "a page of {n} bytes or values is past Parquet's limit of {}",
            i32::MAX
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use parquet::column::page::{CompressedPage, Page, PageWriter};
    use parquet::file::writer::{SerializedPageWriter, TrackedWrite};

    /// The bytes the parquet crate writes before `page`'s payload.
    fn parquet_header(page: Page) -> Vec<u8> {
        let payload = page.buffer().len();
        let mut sink = TrackedWrite::new(Vec::new());
        SerializedPageWriter::new(&mut sink)
            .write_page(CompressedPage::new(page, payload))
            .unwrap();
        let mut written = sink.into_inner().unwrap();
        written.truncate(written.len() - payload);
        written
    }

    #[test]
    fn headers_are_the_parquet_crates_byte_for_byte() {
        let payloads = [0usize, 1, 63, 64, 127, 128, 70_000];
        let counts = [0usize, 1, 63, 64, 127, 128, 70_000, 1 << 30];
        for &payload in &payloads {
            for &values in &counts {
                for encoding in [
                    Encoding::PLAIN,
                    Encoding::RLE_DICTIONARY,
                    Encoding::DELTA_BINARY_PACKED,
                ] {
                    let page = Page::DataPage {
                        buf: Bytes::from(vec![0; payload]),
                        num_values: values as u32,
                        encoding,
                        def_level_encoding: Encoding::RLE,
                        rep_level_encoding: Encoding::RLE,
                        statistics: None,
                    };
                    let ours = PageHeader::data(payload, values, encoding).unwrap();
                    let expected = parquet_header(page);
                    assert_eq!(ours.as_bytes(), expected, "{payload} {values} {encoding}");
                }
                let page = Page::DictionaryPage {
                    buf: Bytes::from(vec![0; payload]),
                    num_values: values as u32,
                    encoding: Encoding::PLAIN,
                    is_sorted: false,
                };
                let ours = PageHeader::dictionary(payload, values).unwrap();
                assert_eq!(ours.as_bytes(), parquet_header(page), "{payload} {values}");
            }
        }
    }

    #[test]
    fn the_largest_sizes_fit_and_larger_ones_are_errors() {
        let max = i32::MAX as usize;
        let header = PageHeader::data(max, max, Encoding::DELTA_BINARY_PACKED).unwrap();
        // The type (2 bytes), two sizes (1 + 5 each), the struct's field header, its
        // num_values (1 + 5) and three enums (2 each), two stop bytes.
        assert_eq!(header.as_bytes().len(), 2 + 2 * 6 + 1 + 6 + 3 * 2 + 2);
        assert!(PageHeader::dictionary(max, max).is_ok());
        let error = PageHeader::data(max + 1, 1, Encoding::PLAIN).err().unwrap();
        assert!(error.to_string().contains("2147483648"), "{error}");
        assert!(PageHeader::dictionary(1, max + 1).is_err());
    }
}
