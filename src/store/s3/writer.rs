//! A blob being written to S3: spooled to a local temp file while it is hashed, because its key
//! (its SHA-256) is known only at the end, and uploaded under that key on commit. Dropping the
//! writer removes the spool file and uploads nothing.

use super::Shared;
use crate::store::hashing_file::HashingFile;
use crate::store::{BlobKey, BlobWriter, Result, StoreError};
use std::io::{self, Write};
use std::sync::Arc;

pub struct S3BlobWriter {
    file: HashingFile,
    shared: Arc<Shared>,
}

impl S3BlobWriter {
    pub(super) fn new(shared: Arc<Shared>) -> Result<Self> {
        Ok(Self {
            file: HashingFile::create_in(&shared.spool_dir, "s3-blob-")?,
            shared,
        })
    }
}

impl Write for S3BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl BlobWriter for S3BlobWriter {
    fn commit(self: Box<Self>) -> Result<(BlobKey, u64)> {
        let S3BlobWriter { file, shared } = *self;
        // No fsync: the spool file is read back at once, and a crash loses the upload with it.
        let (key, len, spool) = file.finish()?;
        let (bucket, path) = (shared.bucket.clone(), spool.path().to_path_buf());
        shared
            .run(async move { bucket.upload_file(&key, &path, len).await })
            .map_err(StoreError::from)
            .and_then(|uploaded| uploaded)?;
        drop(spool);
        Ok((key, len))
    }
}
