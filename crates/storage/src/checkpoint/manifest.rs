//! The manifest of a reliable checkpoint: everything needed to decide, without trusting the
//! data files, whether a checkpoint is complete and intact, and to read it without lineage.
//!
//! It is JSON (`_manifest.json`) so a person can inspect a checkpoint folder; checksums are
//! hex strings because JSON readers other than serde lose precision above 2^53.

use std::fmt;
use std::str::FromStr;

use arrow::datatypes::Schema;
use ember_planner::error::{EmberError, Result};
use serde::{Deserialize, Serialize};

/// The manifest format this code writes and reads. 3: file checksums are the sixteen-lane
/// [`crate::checksum::Checksum`] (2 had four lanes, 1 one); an older checkpoint is rejected
/// (and rewritten) rather than read with checksums that cannot match.
pub const MANIFEST_VERSION: u32 = 3;

/// What a checkpoint is of: a hash the caller computes from the plan and the identity of its
/// input files, so a checkpoint is reused only for the very same data. Its 16-digit hex form
/// names the checkpoint's folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Fingerprint(pub u64);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl FromStr for Fingerprint {
    type Err = EmberError;

    /// Parses exactly the 16-digit hex form `Display` writes; anything else (a folder some
    /// other tool put in the checkpoint dir) is not a fingerprint.
    fn from_str(s: &str) -> Result<Self> {
        if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(EmberError::Plan(format!(
                "'{s}' is not a checkpoint fingerprint (16 hex digits)"
            )));
        }
        u64::from_str_radix(s, 16)
            .map(Fingerprint)
            .map_err(|e| EmberError::Plan(format!("bad fingerprint '{s}': {e}")))
    }
}

impl From<Fingerprint> for String {
    fn from(f: Fingerprint) -> String {
        f.to_string()
    }
}

impl TryFrom<String> for Fingerprint {
    type Error = EmberError;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

/// One written partition file, as its writer saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionInfo {
    pub partition: usize,
    pub rows: usize,
    /// File size in bytes.
    pub bytes: u64,
    /// [`crate::checksum::Checksum`] of the whole file.
    #[serde(with = "hex_u64")]
    pub checksum: u64,
}

/// The content of `_manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub fingerprint: Fingerprint,
    /// When the checkpoint was committed (RFC 3339, UTC).
    pub created: String,
    /// What was checkpointed, for people and EXPLAIN (not used for matching).
    pub plan: String,
    pub schema: Schema,
    /// Partition `i` is `partitions[i]`.
    pub partitions: Vec<PartitionInfo>,
}

impl Manifest {
    pub fn total_rows(&self) -> usize {
        self.partitions.iter().map(|p| p.rows).sum()
    }

    pub fn total_bytes(&self) -> u64 {
        self.partitions.iter().map(|p| p.bytes).sum()
    }

    pub fn to_json(&self) -> Result<Vec<u8>> {
        serde_json::to_vec_pretty(self)
            .map_err(|e| EmberError::Internal(format!("cannot encode checkpoint manifest: {e}")))
    }

    /// Parses a manifest and checks it is one this code can trust: a known version, and
    /// partitions numbered `0..n` in order.
    pub fn from_json(data: &[u8]) -> std::result::Result<Self, String> {
        let manifest: Manifest =
            serde_json::from_slice(data).map_err(|e| format!("unreadable manifest: {e}"))?;
        if manifest.version != MANIFEST_VERSION {
            return Err(format!(
                "manifest version {} (this Ember reads {MANIFEST_VERSION})",
                manifest.version
            ));
        }
        manifest.check_partitions()?;
        Ok(manifest)
    }

    /// Partitions must be exactly `0..n`, in order.
    pub fn check_partitions(&self) -> std::result::Result<(), String> {
        for (i, info) in self.partitions.iter().enumerate() {
            if info.partition != i {
                return Err(format!(
                    "manifest lists partition {} at position {i}",
                    info.partition
                ));
            }
        }
        Ok(())
    }
}

/// Serialises a u64 as 16 hex digits.
mod hex_u64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{v:016x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let s = String::deserialize(d)?;
        u64::from_str_radix(&s, 16).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field};

    fn manifest() -> Manifest {
        Manifest {
            version: MANIFEST_VERSION,
            fingerprint: Fingerprint(0xdead_beef),
            created: "2026-01-01T00:00:00Z".into(),
            plan: "Aggregate".into(),
            schema: Schema::new(vec![
                Field::new("k", DataType::Int64, false),
                Field::new("d", DataType::Decimal128(15, 2), true),
            ]),
            partitions: vec![
                PartitionInfo {
                    partition: 0,
                    rows: 3,
                    bytes: 100,
                    checksum: u64::MAX,
                },
                PartitionInfo {
                    partition: 1,
                    rows: 0,
                    bytes: 50,
                    checksum: 1,
                },
            ],
        }
    }

    #[test]
    fn json_round_trip_keeps_full_u64_checksums() {
        let m = manifest();
        let json = m.to_json().unwrap();
        let text = String::from_utf8(json.clone()).unwrap();
        assert!(text.contains("\"00000000deadbeef\""), "{text}");
        assert!(text.contains("\"ffffffffffffffff\""), "{text}");
        assert_eq!(Manifest::from_json(&json).unwrap(), m);
        assert_eq!(m.total_rows(), 3);
    }

    #[test]
    fn bad_manifests_are_refused() {
        let mut m = manifest();
        m.partitions.swap(0, 1);
        let err = Manifest::from_json(&m.to_json().unwrap()).unwrap_err();
        assert!(err.contains("partition 1 at position 0"), "{err}");
        let mut m = manifest();
        m.version = 99;
        assert!(Manifest::from_json(&m.to_json().unwrap()).is_err());
        assert!(Manifest::from_json(b"{not json").is_err());
    }

    #[test]
    fn fingerprint_text_form() {
        let f = Fingerprint(0xab);
        assert_eq!(f.to_string(), "00000000000000ab");
        assert_eq!("00000000000000ab".parse::<Fingerprint>().unwrap(), f);
        assert!("ab".parse::<Fingerprint>().is_err());
        assert!("_temporary000000".parse::<Fingerprint>().is_err());
    }
}
