//! A temp file hashed as it is written: the first half of writing a content-addressed blob,
//! whose name (its SHA-256) is known only once the last byte is in. Each blob store finishes it
//! its own way (the filesystem renames it into place, S3 uploads it). Dropping it before
//! [`HashingFile::finish`] removes the file.

use super::{io_err, BlobKey, Result, StoreError};
use sha2::Digest;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use tempfile::NamedTempFile;

/// Writes are buffered this much before a system call; package tails arrive in small pieces.
pub(crate) const WRITE_BUFFER: usize = 256 * 1024;

pub(crate) struct HashingFile {
    file: BufWriter<NamedTempFile>,
    hasher: sha2::Sha256,
    len: u64,
    /// A write failed: the content is unknown, so it must never be finished.
    failed: bool,
}

impl HashingFile {
    /// A new empty file in `dir`, named `<prefix>...`.
    pub(crate) fn create_in(dir: &Path, prefix: &str) -> Result<Self> {
        let file = tempfile::Builder::new()
            .prefix(prefix)
            .tempfile_in(dir)
            .map_err(io_err(format!("create a temp file in {}", dir.display())))?;
        Ok(Self {
            file: BufWriter::with_capacity(WRITE_BUFFER, file),
            hasher: sha2::Sha256::new(),
            len: 0,
            failed: false,
        })
    }

    /// The content's key and length, and the file with every byte written to it (not fsynced);
    /// an error when any write failed.
    pub(crate) fn finish(self) -> Result<(BlobKey, u64, NamedTempFile)> {
        if self.failed {
            return Err(StoreError::Io {
                context: "commit a blob".into(),
                source: io::Error::other("an earlier write to the blob failed"),
            });
        }
        let key = BlobKey::from_bytes(self.hasher.finalize().into());
        let file = self
            .file
            .into_inner()
            .map_err(|e| io_err("write a blob")(e.into_error()))?;
        Ok((key, self.len, file))
    }
}

impl Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.file.write(buf) {
            Ok(n) => {
                self.hasher.update(&buf[..n]);
                self.len += n as u64;
                Ok(n)
            }
            Err(e) => {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.failed = true;
                }
                Err(e)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush().inspect_err(|_| self.failed = true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_content_by_its_sha256_and_keeps_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = HashingFile::create_in(dir.path(), "t-").unwrap();
        let content = vec![7u8; WRITE_BUFFER * 3 + 5];
        file.write_all(&content).unwrap();
        let (key, len, temp) = file.finish().unwrap();
        assert_eq!(key, BlobKey::digest(&content));
        assert_eq!(len, content.len() as u64);
        assert_eq!(std::fs::read(temp.path()).unwrap(), content);
    }

    #[test]
    fn after_a_failed_write_it_cannot_be_finished() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = HashingFile::create_in(dir.path(), "t-").unwrap();
        // As a write the disk refused leaves it: what the file holds is unknown.
        file.failed = true;
        file.write_all(b"x").unwrap();
        assert!(file.finish().is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn dropped_unfinished_it_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = HashingFile::create_in(dir.path(), "t-").unwrap();
        file.write_all(b"half").unwrap();
        drop(file);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
