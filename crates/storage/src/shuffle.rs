//! Shuffle block files: the output of one map task for each reduce partition, stored as Arrow
//! IPC files in the executor's shuffle directory — one physical file per map task attempt,
//! holding its blocks one after another ([`MapFileWriter`]).
//!
//! One file per map task rather than per (map, reduce) pair: creating files was what the
//! shuffle cost most in the kernel. A TPC-H run at SF 1 created ~1,500 files and folders a
//! run; ext4 scans past recently deleted inodes to allocate each new one, and a profile of the
//! 22 queries put 15 % of all samples there (`find_inode_bit`, `recently_deleted`).
//!
//! A map file is written under a hidden temp name and renamed into place when its last block
//! is written. Each block's [`BlockMeta`] (registered with the map-output tracker) records its
//! offset, size and checksum; [`read_block`] verifies them before decoding, so a block that is
//! lost (executor gone, file deleted or truncated) or damaged surfaces as a typed
//! [`BlockError`] that the scheduler turns into a fetch failure, instead of wrong rows or a
//! decoder panic.
//!
//! Blocks are uncompressed: they live on local disk, mostly in the page cache, and are read
//! once; decoding is zero-copy from one buffer holding the block.

use std::fmt;
use std::fs::{self, File};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
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
    /// Where the block starts in its file (blocks of one map task share a file).
    #[serde(default)]
    pub offset: u64,
    /// Block size in bytes.
    pub bytes: u64,
    /// [`Checksum`] of the block's bytes.
    pub checksum: u64,
}

/// The file holding the blocks written by `attempt` of map task `map_partition` of `stage`:
/// `<dir>/stage-<s>-map-<m>-attempt-<a>.arrow`. Attempts get their own file so a retried or
/// speculative copy never overwrites blocks in use.
///
/// One folder for all stages, not one per stage: a folder is an inode like a file, and
/// creating inodes is what a job of thousands of small stages spends its time on (ext4
/// scans past recently deleted inodes for each new one). A 100-iteration DataFrame loop
/// spent about half of its CPU in the kernel's inode allocation, half of that in `mkdir`.
pub fn map_file_path(dir: &Path, stage: usize, map_partition: usize, attempt: usize) -> PathBuf {
    dir.join(format!(
        "stage-{stage}-map-{map_partition}-attempt-{attempt}.arrow"
    ))
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

/// Writes blocks one after another into one file (see the module docs): each block is a
/// whole Arrow IPC file of its own, so it decodes from its byte range alone.
#[derive(Debug)]
pub struct MapFileWriter {
    path: PathBuf,
    /// The temp file being written, opened with the first block.
    file: Option<(PathBuf, BufWriter<File>)>,
    offset: u64,
}

impl MapFileWriter {
    /// A writer of the file `path` (its folder is created with the first block).
    pub fn new(path: PathBuf) -> Self {
        MapFileWriter {
            path,
            file: None,
            offset: 0,
        }
    }

    /// Appends `batches` as the next block and returns its meta.
    pub fn write_block(
        &mut self,
        schema: &SchemaRef,
        batches: &[RecordBatch],
    ) -> Result<BlockMeta> {
        let display = self.path.display().to_string();
        let written = self.append(schema, batches);
        let (rows, bytes, checksum) = written.map_err(|e| {
            self.abandon();
            e.context(format!("failed to write shuffle block in {display}"))
        })?;
        let meta = BlockMeta {
            path: self.path.clone(),
            rows,
            offset: self.offset,
            bytes,
            checksum,
        };
        self.offset += bytes;
        Ok(meta)
    }

    fn append(&mut self, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<(usize, u64, u64)> {
        if self.file.is_none() {
            self.file = Some(create_temp(&self.path)?);
        }
        let (_, file) = self.file.as_mut().expect("just opened");
        let mut writer = FileWriter::try_new(ChecksumWriter::new(BlockSink(file)), schema)?;
        let mut rows = 0;
        for batch in batches {
            if batch.num_rows() > 0 {
                writer.write(batch)?;
                rows += batch.num_rows();
            }
        }
        writer.finish()?;
        let (_, checksum) = writer.into_inner()?.into_parts();
        Ok((rows, checksum.len(), checksum.finish()))
    }

    /// Puts the file in place under its name; the metas returned so far point there.
    pub fn finish(mut self) -> Result<()> {
        let Some((tmp, file)) = self.file.take() else {
            return Ok(());
        };
        let display = self.path.display().to_string();
        let placed = file
            .into_inner()
            .map_err(|e| EmberError::io(&display, e.into_error()))
            .and_then(|_| fs::rename(&tmp, &self.path).map_err(|e| EmberError::io(&display, e)));
        if placed.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        placed
    }

    /// Best effort: a leftover temp file is hidden and dies with the shuffle dir.
    fn abandon(&mut self) {
        if let Some((tmp, _)) = self.file.take() {
            let _ = fs::remove_file(tmp);
        }
    }
}

impl Drop for MapFileWriter {
    /// A writer dropped without [`finish`](Self::finish) (its task failed) leaves no temp file.
    fn drop(&mut self) {
        self.abandon();
    }
}

/// One block's way into its map file. The IPC writer flushes when it finishes a block;
/// that flush stops here, so the file's buffer is written out when it fills or when the file
/// is finished, not once per block.
struct BlockSink<'a>(&'a mut BufWriter<File>);

impl Write for BlockSink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.0.write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Creates the folder of `path` and a hidden temp file beside it.
fn create_temp(path: &Path) -> Result<(PathBuf, BufWriter<File>)> {
    let display = path.display().to_string();
    let dir = path.parent().ok_or_else(|| {
        EmberError::Internal(format!("shuffle file path {display} has no folder"))
    })?;
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        EmberError::Internal(format!("shuffle file path {display} has no file name"))
    })?;
    fs::create_dir_all(dir).map_err(|e| EmberError::io(dir.display().to_string(), e))?;
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let file = File::create(&tmp).map_err(|e| EmberError::io(tmp.display().to_string(), e))?;
    Ok((tmp, BufWriter::with_capacity(256 * 1024, file)))
}

/// Writes `batches` as the only block of the file `path` (creating its folder) and returns
/// its meta: for blocks that live alone, like a block store's spilled blocks.
pub fn write_block(path: &Path, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<BlockMeta> {
    let mut writer = MapFileWriter::new(path.to_path_buf());
    let meta = writer.write_block(schema, batches)?;
    writer.finish()?;
    Ok(meta)
}

/// Reads a block back, verifying it is the block that was written.
pub fn read_block(meta: &BlockMeta) -> Result<Vec<RecordBatch>, BlockError> {
    let path = meta.path.as_path();
    let bytes = read_range(meta)?;
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

/// The block's bytes: missing if its file is gone, corrupt if the file is too short to hold
/// them.
fn read_range(meta: &BlockMeta) -> Result<Vec<u8>, BlockError> {
    let io = |e: std::io::Error| BlockError {
        path: meta.path.clone(),
        kind: if e.kind() == std::io::ErrorKind::NotFound {
            BlockErrorKind::Missing
        } else {
            BlockErrorKind::Unreadable(e)
        },
    };
    let mut file = File::open(&meta.path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let end = meta.offset.saturating_add(meta.bytes);
    if size < end {
        return Err(BlockError::corrupt(
            &meta.path,
            format!("file size is {size} bytes, but the block ends at byte {end}"),
        ));
    }
    file.seek(SeekFrom::Start(meta.offset)).map_err(io)?;
    let mut bytes = vec![0; meta.bytes as usize];
    file.read_exact(&mut bytes).map_err(io)?;
    Ok(bytes)
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
    fn blocks_of_a_map_task_share_one_file_and_read_back_by_range() {
        let dir = tempfile::tempdir().unwrap();
        let path = map_file_path(dir.path(), 3, 5, 1);
        assert!(path.ends_with("stage-3-map-5-attempt-1.arrow"));
        let (schema, input) = batches();
        let mut file = MapFileWriter::new(path.clone());
        let first = file.write_block(&schema, &input).unwrap();
        let second = file.write_block(&schema, &input[1..]).unwrap();
        let third = file.write_block(&schema, &[]).unwrap();
        // Nothing under the final name until the file is finished.
        assert!(!path.exists());
        file.finish().unwrap();
        assert_eq!((first.rows, second.rows, third.rows), (4, 1, 0));
        assert_eq!(first.offset, 0);
        assert_eq!(second.offset, first.bytes);
        assert_eq!(third.offset, first.bytes + second.bytes);
        assert_eq!(
            third.offset + third.bytes,
            fs::metadata(&path).unwrap().len()
        );
        assert_eq!(read_block(&second).unwrap(), input[1..].to_vec());
        assert_eq!(read_block(&first).unwrap(), input);
        assert!(read_block(&third).unwrap().is_empty());
        // One file, no temp files left behind.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn an_unfinished_map_file_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = map_file_path(dir.path(), 0, 0, 0);
        let (schema, input) = batches();
        let mut file = MapFileWriter::new(path.clone());
        file.write_block(&schema, &input).unwrap();
        drop(file);
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 0);
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
        let meta = write_block(&map_file_path(dir.path(), 0, 7, 0), &schema, &input).unwrap();
        fs::remove_file(&meta.path).unwrap();
        let err = read_block(&meta).unwrap_err();
        assert!(err.is_missing(), "{err}");
        assert!(err.to_string().contains("map-7-attempt-0.arrow"));
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

        // A later block of a shared file that a truncation cut off.
        let later = BlockMeta {
            offset: 40,
            ..meta.clone()
        };
        fs::write(&meta.path, &original).unwrap();
        let err = read_block(&later).unwrap_err();
        assert!(
            err.is_corrupt() && err.to_string().contains("ends at byte"),
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
