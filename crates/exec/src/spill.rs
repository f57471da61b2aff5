//! Spill files: runs of record batches an operator moves out of memory when its
//! reservation is full, written as Arrow IPC streams under the executor's directory and read
//! back batch by batch.
//!
//! A spill file belongs to one task attempt and is deleted when the [`SpillFile`] (or the
//! reader made from it) is dropped, whether the task finished, failed or was cancelled. If
//! the executor dies first, the files go with its directory.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;

use ember_planner::table::BatchIter;
use ember_planner::{EmberError, Result};

use crate::memory::TaskMemory;

/// Distinguishes the spill files of one process.
static NEXT_SPILL: AtomicUsize = AtomicUsize::new(0);

/// One run of batches on disk; the file is removed on drop.
#[derive(Debug)]
pub struct SpillFile {
    path: PathBuf,
    rows: usize,
    bytes: u64,
}

impl SpillFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Reads the run back, one batch at a time; the file is deleted once the reader is
    /// dropped.
    pub fn into_reader(self) -> Result<BatchIter> {
        let file = File::open(&self.path)
            .map_err(|e| EmberError::io(self.path.display().to_string(), e))?;
        let reader = StreamReader::try_new(BufReader::new(file), None).map_err(|e| {
            EmberError::Execution(format!(
                "cannot read spill file {}: {e}",
                self.path.display()
            ))
        })?;
        Ok(Box::new(SpillReader { reader, file: self }))
    }
}

impl Drop for SpillFile {
    fn drop(&mut self) {
        // Best effort: a leftover file dies with the executor's directory.
        let _ = std::fs::remove_file(&self.path);
    }
}

struct SpillReader {
    reader: StreamReader<BufReader<File>>,
    /// Kept so the file is deleted when reading ends.
    file: SpillFile,
}

impl Iterator for SpillReader {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        let next = self.reader.next()?;
        Some(next.map_err(|e| {
            EmberError::Execution(format!(
                "cannot read spill file {}: {e}",
                self.file.path.display()
            ))
        }))
    }
}

/// Writes `batches` (all of schema `schema`) as one spill run in the task's spill directory
/// and counts it in the task's and executor's spill metrics.
pub fn write_spill(
    memory: &TaskMemory,
    schema: &SchemaRef,
    batches: impl IntoIterator<Item = Result<RecordBatch>>,
) -> Result<SpillFile> {
    let dir = &memory.spill_dir;
    std::fs::create_dir_all(dir).map_err(|e| EmberError::io(dir.display().to_string(), e))?;
    let n = NEXT_SPILL.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("spill-{}-{n}.arrow", std::process::id()));
    let shown = path.display().to_string();
    let io_err = |e: std::io::Error| EmberError::io(shown.clone(), e);
    let arrow_err =
        |e: arrow::error::ArrowError| exec_err_at(&shown, format!("cannot write spill file: {e}"));
    let file = File::create(&path).map_err(io_err)?;
    // Owned from here on, so that a failed write still deletes the partial file.
    let mut spill = SpillFile {
        path,
        rows: 0,
        bytes: 0,
    };
    let mut writer = StreamWriter::try_new(BufWriter::new(file), schema).map_err(arrow_err)?;
    for batch in batches {
        let batch = compact_views(batch?)?;
        spill.rows += batch.num_rows();
        writer.write(&batch).map_err(arrow_err)?;
    }
    writer.finish().map_err(arrow_err)?;
    // Flush the buffer now: an error here (disk full) must fail the task, not vanish in Drop.
    writer
        .into_inner()
        .map_err(arrow_err)?
        .into_inner()
        .map_err(|e| io_err(e.into_error()))?;
    spill.bytes = std::fs::metadata(&spill.path).map_err(io_err)?.len();
    memory.record_spill(spill.bytes, spill.rows);
    Ok(spill)
}

fn exec_err_at(path: &str, message: String) -> EmberError {
    EmberError::Execution(format!("{message} ({path})"))
}

/// Rewrites string/binary view columns so they hold only the bytes their values use: a view
/// column gathered by `interleave`/`take` still references every data buffer of its sources,
/// and the IPC writer would write all of them for every spilled batch.
fn compact_views(batch: RecordBatch) -> Result<RecordBatch> {
    let is_view = |a: &ArrayRef| matches!(a.data_type(), DataType::Utf8View | DataType::BinaryView);
    if !batch.columns().iter().any(is_view) {
        return Ok(batch);
    }
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|a| match a.data_type() {
            DataType::Utf8View => Arc::new(a.as_string_view().gc()) as ArrayRef,
            DataType::BinaryView => Arc::new(a.as_binary_view().gc()) as ArrayRef,
            _ => Arc::clone(a),
        })
        .collect();
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// Bytes a batch holds in memory, for reservations. Shared buffers (slices of a larger
/// batch) are counted in full: an overestimate that errs on the side of spilling.
pub fn batch_memory(batch: &RecordBatch) -> usize {
    batch.get_array_memory_size()
}

/// Bytes held by `arrays` (e.g. evaluated sort keys).
pub fn arrays_memory(arrays: &[ArrayRef]) -> usize {
    arrays.iter().map(|a| a.get_array_memory_size()).sum()
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, StringViewArray};
    use arrow::compute::take;
    use arrow::datatypes::{Field, Schema};

    use super::*;
    use crate::memory::MemoryPool;

    fn memory(dir: &Path) -> TaskMemory {
        TaskMemory::new(MemoryPool::new(0, 1 << 20), dir.join("spill"))
    }

    #[test]
    fn a_run_round_trips_and_is_deleted_after_reading() {
        let tmp = tempfile::tempdir().unwrap();
        let mem = memory(tmp.path());
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        let batches = (0..3).map(|i| {
            Ok(RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(Int64Array::from(vec![Some(i), None]))],
            )?)
        });
        let run = write_spill(&mem, &schema, batches).unwrap();
        assert_eq!(run.rows(), 6);
        assert!(run.bytes() > 0);
        let path = run.path().to_path_buf();
        assert!(path.exists());
        assert_eq!(mem.spills.files(), 1);
        assert_eq!(mem.pool.spills().rows(), 6);
        let back: Vec<RecordBatch> = run.into_reader().unwrap().map(|b| b.unwrap()).collect();
        assert_eq!(back.len(), 3);
        assert_eq!(
            back[2]
                .column(0)
                .as_primitive::<arrow::datatypes::Int64Type>()
                .value(0),
            2
        );
        assert!(!path.exists(), "deleted once read");
    }

    #[test]
    fn view_columns_are_compacted_before_writing() {
        let tmp = tempfile::tempdir().unwrap();
        let mem = memory(tmp.path());
        let long: Vec<String> = (0..2000).map(|i| format!("{i:0>100}")).collect();
        let big = StringViewArray::from_iter_values(long.iter());
        let one = take(&big, &arrow::array::UInt32Array::from(vec![7]), None).unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8View, true)]));
        let batch = RecordBatch::try_new(schema.clone(), vec![one]).unwrap();
        let run = write_spill(&mem, &schema, [Ok(batch)]).unwrap();
        assert!(
            run.bytes() < 4096,
            "wrote {} bytes for one value",
            run.bytes()
        );
        let back: Vec<RecordBatch> = run.into_reader().unwrap().map(|b| b.unwrap()).collect();
        assert_eq!(back[0].column(0).as_string_view().value(0), long[7]);
    }
}
