//! Damaging files on purpose: how injected faults lose shuffle blocks and checkpoint files.
//!
//! The damage is real (the bytes on disk change) so the detection that runs is the production
//! one — checksums, size checks, missing-file errors — not a simulated flag.

use std::fs::OpenOptions;
use std::path::Path;

use ember_planner::{EmberError, Result};
use ember_storage::damage::flip_middle_byte;

pub use super::chaos::Damage;

/// Applies `damage` to the file at `path`.
pub fn damage_file(path: &Path, damage: Damage) -> Result<()> {
    let io = |e| EmberError::io(path.display().to_string(), e);
    match damage {
        Damage::Delete => std::fs::remove_file(path).map_err(io),
        Damage::Truncate => {
            let file = OpenOptions::new().write(true).open(path).map_err(io)?;
            let len = file.metadata().map_err(io)?.len();
            file.set_len(len / 2).map_err(io)
        }
        Damage::Corrupt => {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(io)?;
            flip_middle_byte(&file).map_err(io)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("block");
        std::fs::write(&path, bytes).unwrap();
        (dir, path)
    }

    #[test]
    fn delete_removes_the_file() {
        let (_dir, path) = file_with(b"hello");
        damage_file(&path, Damage::Delete).unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn truncate_halves_the_file() {
        let (_dir, path) = file_with(b"0123456789");
        damage_file(&path, Damage::Truncate).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"01234");
    }

    #[test]
    fn corrupt_flips_one_byte_and_keeps_the_size() {
        let (_dir, path) = file_with(b"0123456789");
        damage_file(&path, Damage::Corrupt).unwrap();
        let after = std::fs::read(&path).unwrap();
        assert_eq!(after.len(), 10);
        let changed: Vec<usize> = (0..10).filter(|&i| after[i] != b"0123456789"[i]).collect();
        assert_eq!(changed, vec![5]);
    }

    #[test]
    fn missing_file_is_an_io_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone");
        let e = damage_file(&path, Damage::Truncate).unwrap_err();
        assert!(e.to_string().contains("gone"), "{e}");
    }
}
