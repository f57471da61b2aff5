//! Ember's storage: table sources (Parquet, CSV, JSON lines, text, memory), shuffle block
//! files, TPC-H data generation, and the fault-tolerance stores: reliable checkpoints
//! (`checkpoint`), executors' cached blocks (`block_store`) and the output commit protocol
//! (`commit`).
//!
//! Every source implements `ember_planner::table::TableSource`: the planner sees a schema
//! and statistics, the executor runs the `ScanPartition`s a scan is split into.

pub mod block_store;
pub mod checkpoint;
pub mod checksum;
pub mod commit;
pub mod csv;
pub mod damage;
pub mod file_scan;
pub mod json;
pub mod line_ranges;
pub mod listing;
pub mod memory;
pub mod parquet;
pub mod shuffle;
pub mod text;
pub mod tpch;
pub mod wire;

pub use crate::block_store::{BlockId, BlockStore, StorageLevel};
pub use crate::checkpoint::{
    Checkpoint, CheckpointStore, CheckpointWriter, Fingerprint, LookupOutcome,
};
pub use crate::commit::{CommitCoordinator, OutputCommitter};
pub use crate::csv::{CsvOptions, CsvTable};
pub use crate::json::JsonTable;
pub use crate::listing::{list_files, ListedFile, SUCCESS_MARKER, WRITE_STARTED_MARKER};
pub use crate::memory::MemTable;
pub use crate::parquet::{write_parquet, ParquetTable, ParquetWriteOptions};
pub use crate::shuffle::{
    map_file_path, read_block, write_block, BlockError, BlockErrorKind, BlockMeta, MapFileWriter,
};
pub use crate::text::TextTable;
pub use crate::tpch::{generate_tpch, write_tpch_parquet};
pub use crate::wire::FileScanResolver;
