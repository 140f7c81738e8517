//! Zip assembly of installer packages (CONTRACT 4).

use crate::domain::{EntryName, Sha256};
use serde::{Deserialize, Serialize};

/// The first part of every package of a release and platform, written once when the release is
/// added: the payload's zip local header followed by the payload's bytes. Every department
/// package of that release and platform begins with exactly these bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadPart {
    /// The payload's original file name, its name in the zip root.
    pub file_name: EntryName,
    /// Size of the payload itself.
    pub size: u64,
    /// SHA-256 of the payload itself.
    pub sha256: Sha256,
    pub crc32: u32,
    /// The blob holding the part (local header + payload bytes).
    pub blob: Sha256,
    /// Length of the part: local header + payload.
    pub part_len: u64,
    /// Unix seconds used for every entry's timestamp (the release's creation time).
    pub modified: i64,
}
