//! Zip assembly of installer packages (CONTRACT 4).
//!
//! A package is `[payload part][tail]`. The payload part (the payload's local header and its
//! bytes) is the same for every org of a release and platform, so it is written once, when the
//! release is added ([`scan_payload`], then [`write_payload_part`]). Each department package is
//! that part followed by its own small tail ([`build_tail`]): its entries, the central directory
//! and the end records, with Zip64 records wherever a size, offset or count needs them.
//!
//! Building a tail must never read or copy the payload's bytes: it works from the
//! [`PayloadPart`]'s description alone, so its cost depends on the department's entries only.
//! The module does no I/O beyond the readers and writers it is handed. Its output is
//! deterministic: the same inputs give the same bytes, whatever order the entries come in.
//!
//! All entries are Stored. The payload must be (CONTRACT 4: byte for byte); the department's
//! entries are a few KiB of text next to a payload of hundreds of MB, so deflating them would
//! save nothing worth having, and would tie every package's bytes (and signatures) to the exact
//! output of a compressor version. Why the zip records are written here and not by the `zip`
//! crate's writer: see `zip_layout`.

mod descriptor;
mod payload;
mod tail;
mod zip_layout;

#[cfg(test)]
mod tests;

pub use descriptor::{PackageDescriptor, PayloadDescriptor};
pub use payload::{scan_payload, write_payload_part, PayloadFacts};
pub use tail::build_tail;

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

/// One file of a package besides the payload: a rendered template, an overlay file or the
/// descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageEntry {
    pub name: EntryName,
    pub bytes: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("{context}: {source}")]
    Io {
        context: &'static str,
        source: std::io::Error,
    },
    #[error("the payload changed while it was being stored: {0}")]
    PayloadChanged(String),
    #[error("package entry {0} appears more than once")]
    DuplicateEntry(EntryName),
    #[error("package entry {0} has the payload's name")]
    EntryIsPayload(EntryName),
    #[error("package entry {file} cannot be both a file and the folder of {inside}")]
    FileIsFolder { file: String, inside: String },
    #[error(
        "the stored payload part of {name} is {part_len} bytes, which does not match a \
         {size}-byte payload behind depot's local header"
    )]
    PartMismatch {
        name: EntryName,
        part_len: u64,
        size: u64,
    },
}

pub type Result<T> = std::result::Result<T, PackageError>;
