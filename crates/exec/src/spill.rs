//! Spill files: runs of record batches an operator moves out of memory when its
//! reservation is full, written as Arrow IPC streams under the executor's directory and read
//! back batch by batch.
//!
//! A spill file belongs to one task attempt and is deleted when the [`SpillFile`] (or the
//! reader made from it) is dropped, whether the task finished, failed or was cancelled. If
//! the executor dies first, the files go with its directory.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
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
    let mut writer = SpillWriter::try_new(memory, schema)?;
    for batch in batches {
        writer.write(&batch?)?;
    }
    writer.finish()
}

/// A spill run written a batch at a time, for operators that fill several runs at once
/// (the hash join's grace partitions). The partial file is deleted if the writer is dropped
/// before [`SpillWriter::finish`].
pub struct SpillWriter {
    writer: StreamWriter<BufWriter<File>>,
    /// Owned from creation on, so that a failed or abandoned write still deletes the file.
    file: SpillFile,
    memory: TaskMemory,
    /// Also counted under this operator's name in the executor's pool (see
    /// [`crate::memory::MemoryPool::operator_spills`]).
    operator: Option<&'static str>,
}

impl SpillWriter {
    /// Creates a new run of `schema` in the task's spill directory.
    pub fn try_new(memory: &TaskMemory, schema: &SchemaRef) -> Result<Self> {
        let dir = &memory.spill_dir;
        std::fs::create_dir_all(dir).map_err(|e| EmberError::io(dir.display().to_string(), e))?;
        let n = NEXT_SPILL.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("spill-{}-{n}.arrow", std::process::id()));
        let shown = path.display().to_string();
        let handle = File::create(&path).map_err(|e| EmberError::io(shown.clone(), e))?;
        let file = SpillFile {
            path,
            rows: 0,
            bytes: 0,
        };
        let writer = StreamWriter::try_new(BufWriter::new(handle), schema)
            .map_err(|e| exec_err_at(&shown, format!("cannot write spill file: {e}")))?;
        Ok(SpillWriter {
            writer,
            file,
            memory: memory.clone(),
            operator: None,
        })
    }

    /// Counts the run under `operator` too, so tests and metrics can tell which operator
    /// spilled.
    pub fn for_operator(mut self, operator: &'static str) -> Self {
        self.operator = Some(operator);
        self
    }

    /// Rows written so far.
    pub fn rows(&self) -> usize {
        self.file.rows
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let batch = compact_views(batch.clone())?;
        self.file.rows += batch.num_rows();
        self.writer.write(&batch).map_err(|e| self.arrow_err(e))
    }

    /// Ends the run, flushes it to disk and counts it in the spill metrics.
    pub fn finish(mut self) -> Result<SpillFile> {
        self.writer.finish().map_err(|e| self.arrow_err(e))?;
        let shown = self.file.path.display().to_string();
        // Flush the buffer now: an error here (disk full) must fail the task, not vanish in
        // Drop.
        self.writer
            .get_mut()
            .flush()
            .map_err(|e| EmberError::io(shown.clone(), e))?;
        let SpillWriter {
            mut file,
            memory,
            operator,
            ..
        } = self;
        file.bytes = std::fs::metadata(&file.path)
            .map_err(|e| EmberError::io(shown, e))?
            .len();
        memory.record_spill(file.bytes, file.rows);
        if let Some(operator) = operator {
            memory.record_operator_spill(operator, file.bytes, file.rows);
        }
        Ok(file)
    }

    fn arrow_err(&self, e: arrow::error::ArrowError) -> EmberError {
        exec_err_at(
            &self.file.path.display().to_string(),
            format!("cannot write spill file: {e}"),
        )
    }
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
