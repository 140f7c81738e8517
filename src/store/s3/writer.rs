//! A blob being written to S3: spooled to a local temp file while it is hashed, because its key
//! (its SHA-256) is known only at the end, and uploaded under that key on commit. Dropping the
//! writer removes the spool file and uploads nothing.

use super::Shared;
use crate::store::{io_err, BlobKey, BlobWriter, Result, StoreError};
use sha2::Digest;
use std::io::{self, BufWriter, Write};
use std::sync::Arc;

const WRITE_BUFFER: usize = 256 * 1024;

pub struct S3BlobWriter {
    file: BufWriter<tempfile::NamedTempFile>,
    hasher: sha2::Sha256,
    len: u64,
    /// A write failed: the content is unknown, so it must not be committed.
    failed: bool,
    shared: Arc<Shared>,
}

impl S3BlobWriter {
    pub(super) fn new(shared: Arc<Shared>) -> Result<Self> {
        let file = tempfile::Builder::new()
            .prefix("s3-blob-")
            .tempfile_in(&shared.spool_dir)
            .map_err(io_err(format!(
                "create a spool file in {}",
                shared.spool_dir.display()
            )))?;
        Ok(Self {
            file: BufWriter::with_capacity(WRITE_BUFFER, file),
            hasher: sha2::Sha256::new(),
            len: 0,
            failed: false,
            shared,
        })
    }
}

impl Write for S3BlobWriter {
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

impl BlobWriter for S3BlobWriter {
    fn commit(self: Box<Self>) -> Result<(BlobKey, u64)> {
        let S3BlobWriter {
            file,
            hasher,
            len,
            failed,
            shared,
        } = *self;
        if failed {
            return Err(StoreError::Io {
                context: "commit a blob".into(),
                source: io::Error::other("an earlier write to the blob failed"),
            });
        }
        let key = BlobKey::from_bytes(hasher.finalize().into());
        // No fsync: the spool file is read back at once, and a crash loses the upload with it.
        let spool = file
            .into_inner()
            .map_err(|e| io_err("write a spool file")(e.into_error()))?;
        let (bucket, path) = (shared.bucket.clone(), spool.path().to_path_buf());
        shared
            .run(async move { bucket.upload_file(&key, &path, len).await })
            .map_err(StoreError::from)
            .and_then(|uploaded| uploaded)?;
        drop(spool);
        Ok((key, len))
    }
}
