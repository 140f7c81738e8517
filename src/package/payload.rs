//! The payload part: the payload's local header followed by its bytes, written once per release
//! and platform. Writing it takes two passes over the source, because the local header carries
//! the CRC and size before the data (no data descriptor): `scan_payload` learns them, then
//! `write_payload_part` copies the bytes and proves they are still the bytes that were scanned.

use super::zip_layout::{
    local_header_len, write_local_header, EntryRecord, Timestamp, Zip64Threshold,
};
use super::{PackageError, Result};
use crate::domain::{EntryName, Sha256};
use sha2::Digest;
use std::io::{ErrorKind, Read, Write};

/// Size, SHA-256 and CRC-32 of a payload, from one pass over its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadFacts {
    pub size: u64,
    pub sha256: Sha256,
    pub crc32: u32,
}

/// One pass over a payload: size, SHA-256, CRC-32.
pub fn scan_payload(reader: &mut dyn Read) -> Result<PayloadFacts> {
    let mut facts = RunningFacts::default();
    for_each_chunk(reader, |chunk| {
        facts.update(chunk);
        Ok(())
    })?;
    Ok(facts.finish())
}

/// Writes the payload part (local header, then the bytes copied from `reader`) to `out` and
/// returns its length. Fails with [`PackageError::PayloadChanged`] when the bytes copied are not
/// the ones `facts` describes (the source changed between the passes); `out` then holds a partial
/// part that the caller must discard. `modified` is the entries' time in unix seconds.
pub fn write_payload_part(
    file_name: &EntryName,
    facts: &PayloadFacts,
    modified: i64,
    reader: &mut dyn Read,
    out: &mut dyn Write,
) -> Result<u64> {
    write_payload_part_at(
        file_name,
        facts,
        modified,
        reader,
        out,
        Zip64Threshold::STANDARD,
    )
}

pub(super) fn write_payload_part_at(
    file_name: &EntryName,
    facts: &PayloadFacts,
    modified: i64,
    reader: &mut dyn Read,
    out: &mut dyn Write,
    zip64: Zip64Threshold,
) -> Result<u64> {
    let record = EntryRecord {
        name: file_name.as_str(),
        crc32: facts.crc32,
        size: facts.size,
        offset: 0,
    };
    let time = Timestamp::from_unix(modified);
    let mut header = Vec::with_capacity(local_header_len(&record, time, zip64) as usize);
    write_local_header(&record, time, zip64, &mut header);
    let write_err = |source| PackageError::Io {
        context: "cannot write the payload part",
        source,
    };
    out.write_all(&header).map_err(write_err)?;

    // SHA-256 is checked too, not only the CRC the header needs: the sha256 is what depot
    // advertises for the payload, and a CRC is easy to match on purpose.
    let mut copied = RunningFacts::default();
    for_each_chunk(reader, |chunk| {
        if copied.size + chunk.len() as u64 > facts.size {
            return Err(PackageError::PayloadChanged(format!(
                "it now holds more than the {} bytes scanned",
                facts.size
            )));
        }
        copied.update(chunk);
        out.write_all(chunk).map_err(write_err)
    })?;
    out.flush().map_err(write_err)?;
    let copied = copied.finish();
    if copied.size != facts.size {
        return Err(PackageError::PayloadChanged(format!(
            "{} bytes were scanned but {} copied",
            facts.size, copied.size
        )));
    }
    if copied != *facts {
        return Err(PackageError::PayloadChanged(format!(
            "its content changed (sha256 {} scanned, {} copied)",
            facts.sha256, copied.sha256
        )));
    }
    Ok(header.len() as u64 + facts.size)
}

#[derive(Default)]
struct RunningFacts {
    size: u64,
    sha256: sha2::Sha256,
    crc32: crc32fast::Hasher,
}

impl RunningFacts {
    fn update(&mut self, chunk: &[u8]) {
        self.size += chunk.len() as u64;
        self.sha256.update(chunk);
        self.crc32.update(chunk);
    }

    fn finish(self) -> PayloadFacts {
        PayloadFacts {
            size: self.size,
            sha256: Sha256::from_bytes(self.sha256.finalize().into()),
            crc32: self.crc32.finalize(),
        }
    }
}

/// Feeds `reader` to `f` in chunks until the end of the stream.
fn for_each_chunk(reader: &mut dyn Read, mut f: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => f(&buf[..n])?,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(PackageError::Io {
                    context: "cannot read the payload",
                    source,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name() -> EntryName {
        EntryName::parse("client.msi").unwrap()
    }

    #[test]
    fn scan_known_answer() {
        let facts = scan_payload(&mut &b"abc"[..]).unwrap();
        assert_eq!(facts.size, 3);
        assert_eq!(facts.sha256, Sha256::digest(b"abc"));
        assert_eq!(facts.crc32, 0x3524_41c2);
    }

    #[test]
    fn part_is_header_then_bytes() {
        let data = vec![7u8; 300_000];
        let facts = scan_payload(&mut &data[..]).unwrap();
        let mut out = Vec::new();
        let len =
            write_payload_part(&name(), &facts, 1_700_000_000, &mut &data[..], &mut out).unwrap();
        assert_eq!(len, out.len() as u64);
        assert_eq!(&out[..4], b"PK\x03\x04");
        assert_eq!(&out[out.len() - data.len()..], &data[..]);
    }

    #[test]
    fn refuses_a_source_that_changed() {
        let facts = scan_payload(&mut &b"original bytes"[..]).unwrap();
        for changed in [&b"original bytes!"[..], b"original byte", b"original BYTES"] {
            let err = write_payload_part(&name(), &facts, 0, &mut &changed[..], &mut Vec::new())
                .unwrap_err();
            assert!(matches!(err, PackageError::PayloadChanged(_)), "{err}");
        }
    }

    #[test]
    fn refuses_same_size_and_crc_with_other_content() {
        // Only the SHA-256 comparison can catch this one: same size, CRC forged to match.
        let facts = scan_payload(&mut &b"abcd"[..]).unwrap();
        let forged = PayloadFacts {
            sha256: Sha256::digest(b"something else"),
            ..facts
        };
        let err = write_payload_part(&name(), &forged, 0, &mut &b"abcd"[..], &mut Vec::new())
            .unwrap_err();
        assert!(err.to_string().contains("content changed"), "{err}");
    }
}
