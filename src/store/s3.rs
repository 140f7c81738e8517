//! The S3-compatible blob store: the same content-addressed blobs as the filesystem store, as
//! objects `sha256/<hex>` of one bucket (Garage, MinIO, Ceph RGW, AWS S3), so that any number of
//! `depot serve` replicas share them.
//!
//! [`BlobStore`] is synchronous, and is called from the CLI and from the blocking threads of the
//! server's runtime. The store therefore owns a small tokio runtime of its own: every request is
//! spawned onto it and waited for on a plain channel, which is safe from any thread that may
//! block (it never enters a runtime, so it cannot panic with "runtime within runtime"). Object
//! bodies are pumped by tasks on that runtime into bounded channels, so a download or a hash pass
//! holds a few chunks in memory, never a whole blob.
//!
//! Content addressing makes writes idempotent: an object is uploaded only when its key is absent,
//! and its content is checked by the store against the SHA-256 it is named by (a single PUT
//! carries `x-amz-checksum-sha256`). Packages are composed by the store itself ([`compose`]):
//! the payload part is copied object-to-object, so its bytes never pass through depot again.
//! This module never deletes or overwrites an object.
//!
//! [`compose`]: BlobStore::compose

mod bucket;
mod stream;
mod writer;

use super::{BlobKey, BlobStore, BlobStream, BlobWriter, Composition, Result, Segment, StoreError};
use bucket::Bucket;
use std::future::Future;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Errors of the S3 store; a missing object is [`StoreError::NotFound`] instead.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error("S3 setting {setting}: {rule}")]
    Config { setting: &'static str, rule: String },
    #[error("S3 {operation} {target}: {message}")]
    Request {
        operation: &'static str,
        target: String,
        message: String,
    },
    #[error("S3 object {key} holds {actual} bytes where {expected} were expected")]
    SizeMismatch {
        key: String,
        expected: u64,
        actual: u64,
    },
    #[error("the S3 client's runtime: {0}")]
    Runtime(std::io::Error),
    #[error("the S3 client's runtime stopped before the request finished")]
    RuntimeStopped,
}

/// The longest a presigned URL may live (S3's SigV4 limit).
pub const MAX_PRESIGN: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Where the bucket is and how to reach it.
#[derive(Clone)]
pub struct S3Config {
    pub bucket: BucketName,
    /// `DEPOT_S3_ENDPOINT`: an S3-compatible store's URL (path-style addressing); `None` for AWS.
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    /// Where writers spool a blob before it is uploaded under its hash.
    pub spool_dir: PathBuf,
    /// Package downloads are answered with a redirect to a presigned URL that lives this long.
    pub presign_downloads: Option<Duration>,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("spool_dir", &self.spool_dir)
            .field("presign_downloads", &self.presign_downloads)
            .finish()
    }
}

impl S3Config {
    /// The bucket's settings from the environment (CONTRACT 5): `DEPOT_S3_ENDPOINT`,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` (else
    /// `AWS_DEFAULT_REGION`).
    pub fn from_env(bucket: &str, spool_dir: PathBuf) -> std::result::Result<Self, S3Error> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let required = |name: &'static str| {
            var(name).ok_or(S3Error::Config {
                setting: name,
                rule: "must be set in the environment for s3:// artifacts".into(),
            })
        };
        let endpoint = var("DEPOT_S3_ENDPOINT")
            .map(|e| parse_endpoint(&e))
            .transpose()?;
        let region = match var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")) {
            Some(region) => region,
            None => required("AWS_REGION")?,
        };
        Ok(Self {
            bucket: BucketName::parse(bucket)?,
            endpoint,
            region,
            access_key_id: required("AWS_ACCESS_KEY_ID")?,
            secret_access_key: required("AWS_SECRET_ACCESS_KEY")?,
            session_token: var("AWS_SESSION_TOKEN"),
            spool_dir,
            presign_downloads: None,
        })
    }
}

fn parse_endpoint(url: &str) -> std::result::Result<String, S3Error> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => {
            Ok(url.trim_end_matches('/').to_string())
        }
        _ => Err(S3Error::Config {
            setting: "DEPOT_S3_ENDPOINT",
            rule: format!("{url:?} must be an http:// or https:// URL"),
        }),
    }
}

/// An S3 bucket name: 3 to 63 characters of `[a-z0-9.-]`, starting and ending with a letter or
/// digit, no `..` (the rules every S3 implementation accepts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketName(String);

impl BucketName {
    pub fn parse(name: &str) -> std::result::Result<Self, S3Error> {
        let edge_ok =
            |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let ok = (3..=63).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            && edge_ok(name.chars().next())
            && edge_ok(name.chars().last())
            && !name.contains("..");
        if ok {
            Ok(Self(name.to_string()))
        } else {
            Err(S3Error::Config {
                setting: "bucket",
                rule: format!(
                    "{name:?} must be 3-63 characters of a-z, 0-9, '.' and '-', starting and ending with a letter or digit"
                ),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for BucketName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The object key of a blob.
fn object_key(key: &BlobKey) -> String {
    format!("sha256/{}", key.to_hex())
}

/// The runtime the S3 client runs on. Dropping it must not wait for, or panic on, tasks still
/// running (it may be dropped on a thread of another runtime), hence `shutdown_background`.
struct Background(Option<tokio::runtime::Runtime>);

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// What the store, its writers and its open streams share; a stream keeps it (and so the
/// runtime its body arrives on) alive.
struct Shared {
    bucket: Bucket,
    handle: tokio::runtime::Handle,
    spool_dir: PathBuf,
    presign_downloads: Option<Duration>,
    _runtime: Background,
}

impl Shared {
    /// Runs `task` on the store's runtime and waits for it on this thread.
    fn run<T, F>(&self, task: F) -> std::result::Result<T, S3Error>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            // The waiter is gone only if its thread died; nobody is left to tell.
            let _ = tx.send(task.await);
        });
        rx.recv().map_err(|_| S3Error::RuntimeStopped)
    }
}

/// Content-addressed blobs as objects `sha256/<hex>` in one S3 bucket.
#[derive(Clone)]
pub struct S3BlobStore {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for S3BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3BlobStore")
            .field("bucket", &self.shared.bucket.name())
            .finish_non_exhaustive()
    }
}

/// Threads of the store's runtime: requests are I/O-bound, and the CPU work (hashing) happens on
/// the callers' threads.
const RUNTIME_THREADS: usize = 2;

impl S3BlobStore {
    /// Connects to the bucket and checks that it is there and the credentials are accepted.
    pub fn open(config: S3Config) -> Result<Self> {
        std::fs::create_dir_all(&config.spool_dir).map_err(super::io_err(format!(
            "create {}",
            config.spool_dir.display()
        )))?;
        if let Some(ttl) = config.presign_downloads {
            if ttl.is_zero() || ttl > MAX_PRESIGN {
                return Err(S3Error::Config {
                    setting: "presign_downloads",
                    rule: format!("must be 1 to {} seconds", MAX_PRESIGN.as_secs()),
                }
                .into());
            }
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(RUNTIME_THREADS)
            .thread_name("depot-s3")
            .enable_all()
            .build()
            .map_err(S3Error::Runtime)?;
        let shared = Shared {
            bucket: Bucket::new(&config),
            handle: runtime.handle().clone(),
            spool_dir: config.spool_dir,
            presign_downloads: config.presign_downloads,
            _runtime: Background(Some(runtime)),
        };
        let store = Self {
            shared: Arc::new(shared),
        };
        let bucket = store.shared.bucket.clone();
        store.shared.run(async move { bucket.check().await })??;
        Ok(store)
    }

    /// Creates the bucket unless it exists (tests, first set-up); `open` needs it to exist.
    pub fn create_bucket(config: &S3Config) -> Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(S3Error::Runtime)?;
        let bucket = Bucket::new(config);
        runtime.block_on(bucket.create())?;
        Ok(())
    }

    /// Removes every object and the bucket itself; for tests' scratch buckets.
    pub fn delete_bucket(self) -> Result<()> {
        let bucket = self.shared.bucket.clone();
        self.shared.run(async move { bucket.delete().await })??;
        Ok(())
    }

    fn run<T, F>(&self, task: F) -> Result<T>
    where
        F: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        self.shared.run(task)?
    }
}

/// The end of `len` bytes at `offset`, which a corrupt segment could push past `u64`.
fn end_of(key: &BlobKey, offset: u64, len: u64) -> Result<u64> {
    offset.checked_add(len).ok_or_else(|| {
        StoreError::Corrupt(format!(
            "{len} bytes at offset {offset} of blob {key} overflow"
        ))
    })
}

impl BlobStore for S3BlobStore {
    fn create(&self) -> Result<Box<dyn BlobWriter>> {
        Ok(Box::new(writer::S3BlobWriter::new(Arc::clone(
            &self.shared,
        ))?))
    }

    fn read(&self, key: &BlobKey) -> Result<Vec<u8>> {
        let (bucket, key) = (self.shared.bucket.clone(), *key);
        self.run(async move { bucket.read_all(&key).await })
    }

    fn read_range(&self, key: &BlobKey, offset: u64, len: u64) -> Result<Vec<u8>> {
        let end = end_of(key, offset, len)?;
        let (bucket, key) = (self.shared.bucket.clone(), *key);
        self.run(async move { bucket.read_range(&key, offset..end).await })
    }

    fn open_file(&self, _key: &BlobKey) -> Result<Option<std::fs::File>> {
        Ok(None)
    }

    fn reader(&self, key: &BlobKey) -> Result<Box<dyn Read + Send>> {
        // The whole object (no range): one GET, whose length comes with it.
        let (bucket, key) = (self.shared.bucket.clone(), *key);
        let (body, size) = self.run(async move { bucket.get_body(&key, 0..0).await })?;
        Ok(Box::new(stream::ChannelReader::new(
            stream::pump(&self.shared.handle, body, size),
            Arc::clone(&self.shared),
        )))
    }

    fn stream_range(&self, key: &BlobKey, offset: u64, len: u64) -> Result<BlobStream> {
        let end = end_of(key, offset, len)?;
        if len == 0 {
            return Ok(Box::pin(futures_util::stream::empty()));
        }
        let (bucket, key) = (self.shared.bucket.clone(), *key);
        let (body, _) = self.run(async move { bucket.get_body(&key, offset..end).await })?;
        Ok(stream::into_stream(
            stream::pump(&self.shared.handle, body, len),
            Arc::clone(&self.shared),
        ))
    }

    fn list(&self) -> Result<Vec<BlobKey>> {
        let bucket = self.shared.bucket.clone();
        self.run(async move { bucket.list().await })
    }

    fn size(&self, key: &BlobKey) -> Result<u64> {
        let (bucket, key) = (self.shared.bucket.clone(), *key);
        self.run(async move {
            bucket
                .head(&key)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("blob {key}")))
        })
    }

    fn compose(&self, packages: Vec<Composition>) -> Result<Option<Vec<Segment>>> {
        let bucket = self.shared.bucket.clone();
        self.run(async move { bucket.compose_all(packages).await.map(Some) })
    }

    fn download_url(&self, key: &BlobKey, file_name: &str) -> Result<Option<String>> {
        let Some(ttl) = self.shared.presign_downloads else {
            return Ok(None);
        };
        let (bucket, key, file_name) = (self.shared.bucket.clone(), *key, file_name.to_string());
        self.run(async move { bucket.presign_get(&key, &file_name, ttl).await.map(Some) })
    }
}

#[cfg(test)]
pub(crate) mod tests;
