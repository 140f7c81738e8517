//! A department package's tail: its own entries, then the central directory (the payload's
//! record first) and the end records. It is built from the payload part's description alone and
//! never touches the payload's bytes, so its cost does not depend on the payload's size.

use super::zip_layout::{
    local_header_len, write_central_header, write_end_records, write_local_header, EntryRecord,
    Timestamp, Zip64Threshold,
};
use super::{PackageEntry, PackageError, PayloadPart, Result};
use std::collections::BTreeSet;

/// Builds the bytes that follow `part` to make a complete package of `entries`.
///
/// Entries are written in name order, whatever order they come in; each is Stored, dated
/// `part.modified`, mode 0755 for `*.sh`/`*.command` and 0644 otherwise. Refuses a duplicate name,
/// an entry named like the payload, and a name that is both a file and a folder of another entry
/// (no extractor can create both). Refuses a `part` whose length does not match the header this
/// module writes for it, as the central directory would then point into the wrong bytes.
pub fn build_tail(part: &PayloadPart, entries: &[PackageEntry]) -> Result<Vec<u8>> {
    build_tail_at(part, entries, Zip64Threshold::STANDARD)
}

pub(super) fn build_tail_at(
    part: &PayloadPart,
    entries: &[PackageEntry],
    zip64: Zip64Threshold,
) -> Result<Vec<u8>> {
    let time = Timestamp::from_unix(part.modified);
    let payload = EntryRecord {
        name: part.file_name.as_str(),
        crc32: part.crc32,
        size: part.size,
        offset: 0,
    };
    let expected_len = local_header_len(&payload, time, zip64).checked_add(part.size);
    if expected_len != Some(part.part_len) {
        return Err(PackageError::PartMismatch {
            name: part.file_name.clone(),
            part_len: part.part_len,
            size: part.size,
        });
    }
    let entries = in_package_order(part, entries)?;

    let data_len: usize = entries.iter().map(|e| e.bytes.len()).sum();
    let mut tail = Vec::with_capacity(data_len + 256 * (entries.len() + 1));
    let mut records = Vec::with_capacity(entries.len() + 1);
    records.push(payload);
    for entry in entries {
        let record = EntryRecord {
            name: entry.name.as_str(),
            crc32: crc32fast::hash(&entry.bytes),
            size: entry.bytes.len() as u64,
            offset: part.part_len + tail.len() as u64,
        };
        write_local_header(&record, time, zip64, &mut tail);
        tail.extend_from_slice(&entry.bytes);
        records.push(record);
    }

    let cd_start = tail.len();
    for record in &records {
        write_central_header(record, time, zip64, &mut tail);
    }
    let cd_offset = part.part_len + cd_start as u64;
    let cd_size = (tail.len() - cd_start) as u64;
    write_end_records(records.len() as u64, cd_offset, cd_size, zip64, &mut tail);
    Ok(tail)
}

/// The entries sorted by name, once every name is known to be extractable beside the others.
fn in_package_order<'a>(
    part: &PayloadPart,
    entries: &'a [PackageEntry],
) -> Result<Vec<&'a PackageEntry>> {
    let mut names = BTreeSet::from([part.file_name.as_str()]);
    for entry in entries {
        if !names.insert(entry.name.as_str()) {
            return Err(if entry.name == part.file_name {
                PackageError::EntryIsPayload(entry.name.clone())
            } else {
                PackageError::DuplicateEntry(entry.name.clone())
            });
        }
    }
    for name in &names {
        let mut folders = name.match_indices('/').map(|(i, _)| &name[..i]);
        if let Some(file) = folders.find(|folder| names.contains(folder)) {
            return Err(PackageError::FileIsFolder {
                file: file.to_string(),
                inside: name.to_string(),
            });
        }
    }
    let mut sorted: Vec<&PackageEntry> = entries.iter().collect();
    sorted.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    Ok(sorted)
}
