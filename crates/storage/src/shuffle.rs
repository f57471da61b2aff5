//! Shuffle block files: the output of one map task for one reduce partition, stored as an
//! Arrow IPC file in the executor's shuffle directory.
//!
//! A block is written under a hidden temp name and renamed into place, so a reader sees either
//! no block or a complete one. Its [`BlockMeta`] (registered with the map-output tracker)
//! records size and checksum; [`read_block`] verifies both before decoding, so a block that is
//! lost (executor gone, file deleted) or damaged surfaces as a typed [`BlockError`] that the
//! scheduler turns into a fetch failure, instead of wrong rows or a decoder panic.
//!
//! Blocks are uncompressed: they live on local disk, mostly in the page cache, and are read
//! once; decoding is zero-copy from one buffer holding the file.

use std::fmt;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::buffer::Buffer;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::ipc::reader::{read_footer_length, FileDecoder};
use arrow::ipc::writer::FileWriter;
use arrow::ipc::{convert::fb_to_schema, root_as_footer, Block};
use arrow::record_batch::RecordBatch;
use ember_planner::error::{EmberError, Result};
use serde::{Deserialize, Serialize};

use crate::checksum::{Checksum, ChecksumWriter};

/// Where a written block is and what it must look like when read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockMeta {
    pub path: PathBuf,
    pub rows: usize,
    /// File size in bytes.
    pub bytes: u64,
    /// [`Checksum`] of the whole file.
    pub checksum: u64,
}

/// The path of the block written by `attempt` of map task `map_partition` of `stage` for
/// `reduce_partition`: `<dir>/stage-<s>/map-<m>-attempt-<a>/reduce-<r>.arrow`. Attempts get
/// their own folder so a retried or speculative copy never overwrites a block in use.
pub fn block_path(
    dir: &Path,
    stage: usize,
    map_partition: usize,
    reduce_partition: usize,
    attempt: usize,
) -> PathBuf {
    dir.join(format!("stage-{stage}"))
        .join(format!("map-{map_partition}-attempt-{attempt}"))
        .join(format!("reduce-{reduce_partition}.arrow"))
}

/// Why a block could not be read. Every kind means the map output is unusable and must be
/// recomputed; the kind says why, for logs and tests.
#[derive(Debug)]
pub enum BlockErrorKind {
    /// The file does not exist (deleted, or its executor is gone).
    Missing,
    /// The file exists but is not the file that was written (size or checksum differ), or
    /// its contents do not decode.
    Corrupt(String),
    /// The file could not be read for another reason (permissions, I/O error).
    Unreadable(std::io::Error),
}

/// A shuffle block that could not be read, with its path.
#[derive(Debug)]
pub struct BlockError {
    pub path: PathBuf,
    pub kind: BlockErrorKind,
}

impl BlockError {
    pub fn is_missing(&self) -> bool {
        matches!(self.kind, BlockErrorKind::Missing)
    }

    pub fn is_corrupt(&self) -> bool {
        matches!(self.kind, BlockErrorKind::Corrupt(_))
    }

    fn corrupt(path: &Path, why: impl Into<String>) -> Self {
        BlockError {
            path: path.to_path_buf(),
            kind: BlockErrorKind::Corrupt(why.into()),
        }
    }
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match &self.kind {
            BlockErrorKind::Missing => write!(f, "shuffle block {path} is missing"),
            BlockErrorKind::Corrupt(why) => write!(f, "shuffle block {path} is corrupt: {why}"),
            BlockErrorKind::Unreadable(e) => write!(f, "shuffle block {path} is unreadable: {e}"),
        }
    }
}

impl std::error::Error for BlockError {}

impl From<BlockError> for EmberError {
    fn from(e: BlockError) -> Self {
        EmberError::Execution(e.to_string())
    }
}

/// Distinguishes concurrent writers' temp files within one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `batches` as the block file `path` (creating its folder) and returns its meta.
pub fn write_block(path: &Path, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<BlockMeta> {
    let display = path.display().to_string();
    let dir = path.parent().ok_or_else(|| {
        EmberError::Internal(format!("shuffle block path {display} has no folder"))
    })?;
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        EmberError::Internal(format!("shuffle block path {display} has no file name"))
    })?;
    fs::create_dir_all(dir).map_err(|e| EmberError::io(dir.display().to_string(), e))?;
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = write_ipc(&tmp, schema, batches).and_then(|meta| {
        fs::rename(&tmp, path).map_err(|e| EmberError::io(&display, e))?;
        Ok(meta)
    });
    match written {
        Ok((rows, bytes, checksum)) => Ok(BlockMeta {
            path: path.to_path_buf(),
            rows,
            bytes,
            checksum,
        }),
        Err(e) => {
            // Best effort: a leftover temp file is hidden and dies with the shuffle dir.
            let _ = fs::remove_file(&tmp);
            Err(e.context(format!("failed to write shuffle block {display}")))
        }
    }
}

/// Writes the IPC file and returns (rows, bytes, checksum).
fn write_ipc(tmp: &Path, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<(usize, u64, u64)> {
    let io_err = |e| EmberError::io(tmp.display().to_string(), e);
    let file = File::create(tmp).map_err(io_err)?;
    let sink = ChecksumWriter::new(BufWriter::with_capacity(256 * 1024, file));
    let mut writer = FileWriter::try_new(sink, schema)?;
    let mut rows = 0;
    for batch in batches {
        if batch.num_rows() > 0 {
            writer.write(batch)?;
            rows += batch.num_rows();
        }
    }
    writer.finish()?;
    let mut sink = writer.into_inner()?;
    sink.flush().map_err(io_err)?;
    let (_, checksum) = sink.into_parts();
    Ok((rows, checksum.len(), checksum.finish()))
}

/// Reads a block back, verifying it is the file [`write_block`] produced.
pub fn read_block(meta: &BlockMeta) -> Result<Vec<RecordBatch>, BlockError> {
    let path = meta.path.as_path();
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(BlockError {
                path: path.to_path_buf(),
                kind: BlockErrorKind::Missing,
            })
        }
        Err(e) => {
            return Err(BlockError {
                path: path.to_path_buf(),
                kind: BlockErrorKind::Unreadable(e),
            })
        }
    };
    if bytes.len() as u64 != meta.bytes {
        return Err(BlockError::corrupt(
            path,
            format!("size is {} bytes, expected {}", bytes.len(), meta.bytes),
        ));
    }
    let checksum = Checksum::of(&bytes);
    if checksum != meta.checksum {
        return Err(BlockError::corrupt(
            path,
            format!("checksum {checksum:016x}, expected {:016x}", meta.checksum),
        ));
    }
    let batches = decode_ipc_file(Buffer::from_vec(bytes))
        .map_err(|e| BlockError::corrupt(path, e.to_string()))?;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    if rows != meta.rows {
        return Err(BlockError::corrupt(
            path,
            format!("has {rows} rows, expected {}", meta.rows),
        ));
    }
    Ok(batches)
}

/// Decodes a whole IPC file held in one buffer; batches share the buffer (no copy).
fn decode_ipc_file(buffer: Buffer) -> Result<Vec<RecordBatch>, ArrowError> {
    let invalid = |why: &str| ArrowError::IpcError(format!("invalid IPC file: {why}"));
    let len = buffer.len();
    if len < 10 {
        return Err(invalid("too short"));
    }
    let trailer_start = len - 10;
    let mut trailer = [0u8; 10];
    trailer.copy_from_slice(&buffer[trailer_start..]);
    let footer_len = read_footer_length(trailer)?;
    let footer_start = trailer_start
        .checked_sub(footer_len)
        .ok_or_else(|| invalid("footer longer than file"))?;
    let footer = root_as_footer(&buffer[footer_start..trailer_start])
        .map_err(|e| invalid(&e.to_string()))?;
    let schema = Arc::new(fb_to_schema(
        footer.schema().ok_or_else(|| invalid("no schema"))?,
    ));
    let mut decoder = FileDecoder::new(schema, footer.version());
    let slice = |block: &Block| -> Result<Buffer, ArrowError> {
        let offset = usize::try_from(block.offset()).map_err(|_| invalid("negative offset"))?;
        let body = usize::try_from(block.bodyLength()).map_err(|_| invalid("negative length"))?;
        let meta =
            usize::try_from(block.metaDataLength()).map_err(|_| invalid("negative length"))?;
        let end = offset
            .checked_add(body)
            .and_then(|e| e.checked_add(meta))
            .filter(|&e| e <= footer_start)
            .ok_or_else(|| invalid("block outside file"))?;
        Ok(buffer.slice_with_length(offset, end - offset))
    };
    for block in footer.dictionaries().iter().flatten() {
        decoder.read_dictionary(block, &slice(block)?)?;
    }
    let mut out = Vec::new();
    for block in footer.recordBatches().iter().flatten() {
        if let Some(batch) = decoder.read_record_batch(block, &slice(block)?)? {
            out.push(batch);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{DictionaryArray, Int32Array, StringArray};
    use arrow::datatypes::Int32Type;

    fn batches() -> (SchemaRef, Vec<RecordBatch>) {
        let b1 = RecordBatch::try_from_iter([
            ("k", Arc::new(Int32Array::from(vec![1, 2, 3])) as _),
            (
                "s",
                Arc::new(StringArray::from(vec!["a", "bb", "ccc"])) as _,
            ),
        ])
        .unwrap();
        let b2 = RecordBatch::try_from_iter([
            ("k", Arc::new(Int32Array::from(vec![4])) as _),
            ("s", Arc::new(StringArray::from(vec!["d"])) as _),
        ])
        .unwrap();
        (b1.schema(), vec![b1, b2])
    }

    #[test]
    fn roundtrip_and_layout() {
        let dir = tempfile::tempdir().unwrap();
        let path = block_path(dir.path(), 3, 5, 2, 1);
        assert!(path.ends_with("stage-3/map-5-attempt-1/reduce-2.arrow"));
        let (schema, input) = batches();
        let meta = write_block(&path, &schema, &input).unwrap();
        assert_eq!(meta.rows, 4);
        assert_eq!(meta.bytes, fs::metadata(&path).unwrap().len());
        let back = read_block(&meta).unwrap();
        assert_eq!(back, input);
        // No temp files left behind.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn empty_block_and_dictionaries() {
        let dir = tempfile::tempdir().unwrap();
        let (schema, _) = batches();
        let meta = write_block(&dir.path().join("empty.arrow"), &schema, &[]).unwrap();
        assert!(read_block(&meta).unwrap().is_empty());

        let dict: DictionaryArray<Int32Type> = vec!["x", "y", "x"].into_iter().collect();
        let b = RecordBatch::try_from_iter([("d", Arc::new(dict) as _)]).unwrap();
        let meta = write_block(
            &dir.path().join("dict.arrow"),
            &b.schema(),
            std::slice::from_ref(&b),
        )
        .unwrap();
        assert_eq!(read_block(&meta).unwrap(), vec![b]);
    }

    #[test]
    fn missing_block_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let (schema, input) = batches();
        let meta = write_block(&block_path(dir.path(), 0, 0, 0, 0), &schema, &input).unwrap();
        fs::remove_file(&meta.path).unwrap();
        let err = read_block(&meta).unwrap_err();
        assert!(err.is_missing(), "{err}");
        assert!(err.to_string().contains("reduce-0.arrow"));
    }

    #[test]
    fn corrupt_block_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let (schema, input) = batches();
        let meta = write_block(&dir.path().join("b.arrow"), &schema, &input).unwrap();
        let original = fs::read(&meta.path).unwrap();

        // Same size, one flipped bit in the data.
        let mut flipped = original.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0x10;
        fs::write(&meta.path, &flipped).unwrap();
        let err = read_block(&meta).unwrap_err();
        assert!(
            err.is_corrupt() && err.to_string().contains("checksum"),
            "{err}"
        );

        // Truncated.
        fs::write(&meta.path, &original[..original.len() - 7]).unwrap();
        let err = read_block(&meta).unwrap_err();
        assert!(
            err.is_corrupt() && err.to_string().contains("size"),
            "{err}"
        );

        // Garbage whose size and checksum were (wrongly) recorded still fails cleanly.
        let garbage = vec![0xABu8; 64];
        fs::write(&meta.path, &garbage).unwrap();
        let forged = BlockMeta {
            bytes: 64,
            checksum: Checksum::of(&garbage),
            ..meta.clone()
        };
        assert!(read_block(&forged).unwrap_err().is_corrupt());
    }

    #[test]
    fn block_error_converts_to_ember_error() {
        let e = BlockError {
            path: PathBuf::from("/x/reduce-1.arrow"),
            kind: BlockErrorKind::Missing,
        };
        let ember: EmberError = e.into();
        assert!(ember.to_string().contains("/x/reduce-1.arrow"));
    }
}
