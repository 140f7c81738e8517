//! The S3 requests of the blob store, as async operations on one bucket. Runs on the store's own
//! runtime; [`super::S3BlobStore`] bridges to the synchronous trait.

use super::{object_key, S3Config, S3Error};
use crate::store::{BlobKey, Composition, Result, Segment, StoreError};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use base64::Engine;
use futures_util::{StreamExt, TryStreamExt};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// S3's smallest part of a multipart upload, except the last.
pub const MIN_PART: u64 = 5 << 20;
/// S3's largest part, copied or uploaded.
const MAX_PART: u64 = 5 << 30;
/// S3's most parts in one upload.
const MAX_PARTS: u64 = 10_000;
/// Parts of uploaded blobs: large enough that a 3 GB payload is a few hundred requests.
const UPLOAD_PART: u64 = 16 << 20;
/// Parts uploaded at once; each is read from the spool file as it is sent, not buffered.
const UPLOADS_IN_FLIGHT: usize = 4;
/// Packages composed at once: each is a handful of small requests, so latency, not bandwidth,
/// bounds a build.
const COMPOSITIONS_IN_FLIGHT: usize = 16;

/// A client bound to one bucket; cheap to clone into a task.
#[derive(Clone)]
pub struct Bucket {
    client: Client,
    name: Arc<str>,
}

impl Bucket {
    pub fn new(config: &S3Config) -> Self {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let credentials = Credentials::new(
            &config.access_key_id,
            &config.secret_access_key,
            config.session_token.clone(),
            None,
            "depot-environment",
        );
        let mut builder = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .http_client(http)
            .region(Region::new(config.region.clone()))
            .credentials_provider(credentials)
            // Objects are named by their SHA-256 and checked against it (a PUT carries it, and
            // `depot verify` re-hashes); the SDK's default CRC32 trailers are not understood by
            // every S3-compatible store.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint) = &config.endpoint {
            // Self-hosted stores rarely have a wildcard DNS name per bucket.
            builder = builder.endpoint_url(endpoint).force_path_style(true);
        }
        Self {
            client: Client::from_conf(builder.build()),
            name: config.bucket.as_str().into(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bucket exists and the credentials may use it.
    pub async fn check(&self) -> Result<()> {
        match self.client.head_bucket().bucket(&*self.name).send().await {
            Ok(_) => Ok(()),
            Err(e) => Err(match status(&e) {
                Some(404) => S3Error::Config {
                    setting: "bucket",
                    rule: format!("bucket {} does not exist; create it first", self.name),
                }
                .into(),
                Some(403) => S3Error::Config {
                    setting: "AWS_ACCESS_KEY_ID",
                    rule: format!("the key may not use bucket {}", self.name),
                }
                .into(),
                _ => request_error("HeadBucket", &*self.name, e),
            }),
        }
    }

    pub async fn create(&self) -> Result<()> {
        if self.check().await.is_ok() {
            return Ok(());
        }
        self.client
            .create_bucket()
            .bucket(&*self.name)
            .send()
            .await
            .map_err(|e| request_error("CreateBucket", &*self.name, e))?;
        Ok(())
    }

    /// Deletes every object, every unfinished upload and the bucket.
    pub async fn delete(&self) -> Result<()> {
        let keys = self.list_keys("").await?;
        futures_util::stream::iter(keys)
            .map(|key| async move {
                self.client
                    .delete_object()
                    .bucket(&*self.name)
                    .key(&key)
                    .send()
                    .await
                    .map_err(|e| request_error("DeleteObject", key, e))
            })
            .buffer_unordered(COMPOSITIONS_IN_FLIGHT)
            .try_collect::<Vec<_>>()
            .await?;
        let uploads = self
            .client
            .list_multipart_uploads()
            .bucket(&*self.name)
            .send()
            .await
            .map_err(|e| request_error("ListMultipartUploads", &*self.name, e))?;
        for upload in uploads.uploads() {
            if let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) {
                self.abort(key, id).await;
            }
        }
        self.client
            .delete_bucket()
            .bucket(&*self.name)
            .send()
            .await
            .map_err(|e| request_error("DeleteBucket", &*self.name, e))?;
        Ok(())
    }

    /// The size of the blob's object, or `None` when there is none.
    pub async fn head(&self, key: &BlobKey) -> Result<Option<u64>> {
        let object = object_key(key);
        match self
            .client
            .head_object()
            .bucket(&*self.name)
            .key(&object)
            .send()
            .await
        {
            Ok(head) => Ok(Some(length(head.content_length(), &object)?)),
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(request_error("HeadObject", object, e)),
        }
    }

    /// The body of the object, or of `range` of it (an empty range: all of it), and its length,
    /// checked to be exactly that range.
    pub async fn get_body(&self, key: &BlobKey, range: Range<u64>) -> Result<(ByteStream, u64)> {
        let object = object_key(key);
        let request = self.client.get_object().bucket(&*self.name).key(&object);
        let request = if range.is_empty() {
            request
        } else {
            request.range(format!("bytes={}-{}", range.start, range.end - 1))
        };
        let output = match request.send().await {
            Ok(output) => output,
            Err(e) => {
                return Err(match status(&e) {
                    Some(404) => StoreError::NotFound(format!("blob {key}")),
                    Some(416) => past_end(key, &range),
                    _ => request_error("GetObject", object, e),
                })
            }
        };
        // A range that runs past the end is answered with what there is: not what was asked.
        let got = length(output.content_length(), &object)?;
        if !range.is_empty() && got != range.end - range.start {
            return Err(past_end(key, &range));
        }
        Ok((output.body, got))
    }

    pub async fn read_all(&self, key: &BlobKey) -> Result<Vec<u8>> {
        let (body, expected) = self.get_body(key, 0..0).await?;
        let object = object_key(key);
        let bytes = collect(body, &object).await?;
        if bytes.len() as u64 != expected {
            return Err(S3Error::SizeMismatch {
                key: object,
                expected,
                actual: bytes.len() as u64,
            }
            .into());
        }
        Ok(bytes)
    }

    pub async fn read_range(&self, key: &BlobKey, range: Range<u64>) -> Result<Vec<u8>> {
        if range.is_empty() {
            // No GET can ask for zero bytes; the offset must still lie within the blob.
            let size = self
                .head(key)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("blob {key}")))?;
            return if range.start <= size {
                Ok(Vec::new())
            } else {
                Err(past_end(key, &range))
            };
        }
        let (body, _) = self.get_body(key, range.clone()).await?;
        let bytes = collect(body, &object_key(key)).await?;
        if bytes.len() as u64 != range.end - range.start {
            return Err(past_end(key, &range));
        }
        Ok(bytes)
    }

    /// Every blob: the objects under `sha256/` with a canonical name.
    pub async fn list(&self) -> Result<Vec<BlobKey>> {
        let mut keys: Vec<BlobKey> = self
            .list_keys("sha256/")
            .await?
            .iter()
            .filter_map(|object| object.strip_prefix("sha256/"))
            .filter(|hex| crate::store::is_lower_hex(hex, 64))
            .filter_map(|hex| BlobKey::parse(hex).ok())
            .collect();
        keys.sort();
        Ok(keys)
    }

    async fn list_keys(&self, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&*self.name)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| request_error("ListObjectsV2", &*self.name, e))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
        }
        Ok(keys)
    }

    /// Uploads the spooled blob `path` as `key` unless that object exists.
    pub async fn upload_file(&self, key: &BlobKey, path: &Path, len: u64) -> Result<()> {
        if self.head(key).await?.is_some() {
            return Ok(());
        }
        if len <= UPLOAD_PART {
            let body = file_body(path, 0, len).await?;
            return self.put(key, body, len).await;
        }
        let part_len = UPLOAD_PART.max(len.div_ceil(MAX_PARTS));
        let parts: Vec<(i32, u64, u64)> = (0..len.div_ceil(part_len))
            .map(|i| {
                let offset = i * part_len;
                (i as i32 + 1, offset, part_len.min(len - offset))
            })
            .collect();
        let object = object_key(key);
        let upload = self.start_upload(&object).await?;
        let result = async {
            let completed = futures_util::stream::iter(parts)
                .map(|(number, offset, part_len)| {
                    let (object, upload) = (&object, &upload);
                    async move {
                        let body = file_body(path, offset, part_len).await?;
                        let output = self
                            .client
                            .upload_part()
                            .bucket(&*self.name)
                            .key(object)
                            .upload_id(upload)
                            .part_number(number)
                            .content_length(part_len as i64)
                            .body(body)
                            .send()
                            .await
                            .map_err(|e| request_error("UploadPart", object.clone(), e))?;
                        Ok::<_, StoreError>(completed_part(number, output.e_tag()))
                    }
                })
                .buffered(UPLOADS_IN_FLIGHT)
                .try_collect::<Vec<_>>()
                .await?;
            self.complete(&object, &upload, completed).await
        }
        .await;
        self.finish_upload(&object, &upload, len, result).await
    }

    /// Stores `body` as `key`; the store rejects it unless its SHA-256 is the key.
    async fn put(&self, key: &BlobKey, body: ByteStream, len: u64) -> Result<()> {
        let object = object_key(key);
        self.client
            .put_object()
            .bucket(&*self.name)
            .key(&object)
            .content_length(len as i64)
            .checksum_sha256(base64::engine::general_purpose::STANDARD.encode(key.as_bytes()))
            .body(body)
            .send()
            .await
            .map_err(|e| request_error("PutObject", object, e))?;
        Ok(())
    }

    /// Makes each package one object, in order; see [`crate::store::BlobStore::compose`].
    pub async fn compose_all(&self, packages: Vec<Composition>) -> Result<Vec<Segment>> {
        futures_util::stream::iter(packages)
            .map(|package| async move { self.compose(package).await })
            .buffered(COMPOSITIONS_IN_FLIGHT)
            .try_collect()
            .await
    }

    /// The package as one object `sha256/<package sha256>`: a multipart upload whose first parts
    /// are copies of the payload part's object, made inside the store, and whose last part is the
    /// tail. S3 wants every part but the last to be 5 MiB at least: a smaller payload part is
    /// read and stored with the tail in one PUT.
    async fn compose(&self, package: Composition) -> Result<Segment> {
        let Composition {
            key,
            size,
            part,
            tail,
        } = package;
        if part.len + tail.len() as u64 != size {
            return Err(StoreError::Corrupt(format!(
                "package {key}: a part of {} and a tail of {} bytes do not make {size}",
                part.len,
                tail.len()
            )));
        }
        let whole = Segment {
            blob: key,
            offset: 0,
            len: size,
        };
        match self.head(&key).await? {
            Some(stored) if stored == size => return Ok(whole),
            Some(stored) => {
                return Err(S3Error::SizeMismatch {
                    key: object_key(&key),
                    expected: size,
                    actual: stored,
                }
                .into())
            }
            None => {}
        }
        if part.len < MIN_PART {
            let mut bytes = self
                .read_range(&part.blob, part.offset..part.offset + part.len)
                .await?;
            bytes.extend_from_slice(&tail);
            self.put(&key, ByteStream::from(bytes), size).await?;
            return Ok(whole);
        }

        let object = object_key(&key);
        let source = format!("{}/{}", self.name, object_key(&part.blob));
        let upload = self.start_upload(&object).await?;
        let result = async {
            // Copies of at most 5 GiB each, all of about the same size so none is below 5 MiB.
            let copies = part.len.div_ceil(MAX_PART);
            let copy_len = part.len.div_ceil(copies);
            let mut completed = Vec::with_capacity(copies as usize + 1);
            for i in 0..copies {
                let start = part.offset + i * copy_len;
                let end = (start + copy_len).min(part.offset + part.len);
                let number = i as i32 + 1;
                let output = self
                    .client
                    .upload_part_copy()
                    .bucket(&*self.name)
                    .key(&object)
                    .upload_id(&upload)
                    .part_number(number)
                    .copy_source(&source)
                    .copy_source_range(format!("bytes={start}-{}", end - 1))
                    .send()
                    .await
                    .map_err(|e| match status(&e) {
                        Some(404) => StoreError::NotFound(format!("blob {}", part.blob)),
                        _ => request_error("UploadPartCopy", object.clone(), e),
                    })?;
                let etag = output.copy_part_result().and_then(|r| r.e_tag());
                completed.push(completed_part(number, etag));
            }
            let number = copies as i32 + 1;
            let output = self
                .client
                .upload_part()
                .bucket(&*self.name)
                .key(&object)
                .upload_id(&upload)
                .part_number(number)
                .content_length(tail.len() as i64)
                .body(ByteStream::from(tail))
                .send()
                .await
                .map_err(|e| request_error("UploadPart", object.clone(), e))?;
            completed.push(completed_part(number, output.e_tag()));
            self.complete(&object, &upload, completed).await
        }
        .await;
        self.finish_upload(&object, &upload, size, result).await?;
        Ok(whole)
    }

    async fn start_upload(&self, object: &str) -> Result<String> {
        let output = self
            .client
            .create_multipart_upload()
            .bucket(&*self.name)
            .key(object)
            .send()
            .await
            .map_err(|e| request_error("CreateMultipartUpload", object, e))?;
        output.upload_id().map(str::to_string).ok_or_else(|| {
            S3Error::Request {
                operation: "CreateMultipartUpload",
                target: object.to_string(),
                message: "the answer has no upload id".into(),
            }
            .into()
        })
    }

    async fn complete(&self, object: &str, upload: &str, parts: Vec<CompletedPart>) -> Result<()> {
        self.client
            .complete_multipart_upload()
            .bucket(&*self.name)
            .key(object)
            .upload_id(upload)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| request_error("CompleteMultipartUpload", object, e))?;
        Ok(())
    }

    /// Aborts the upload when it failed (its parts would otherwise be kept and billed), and
    /// checks the size of the object it made when it succeeded.
    async fn finish_upload(
        &self,
        object: &str,
        upload: &str,
        expected: u64,
        result: Result<()>,
    ) -> Result<()> {
        if let Err(e) = result {
            self.abort(object, upload).await;
            return Err(e);
        }
        let head = self
            .client
            .head_object()
            .bucket(&*self.name)
            .key(object)
            .send()
            .await
            .map_err(|e| request_error("HeadObject", object, e))?;
        let actual = length(head.content_length(), object)?;
        if actual != expected {
            return Err(S3Error::SizeMismatch {
                key: object.to_string(),
                expected,
                actual,
            }
            .into());
        }
        Ok(())
    }

    async fn abort(&self, object: &str, upload: &str) {
        if let Err(e) = self
            .client
            .abort_multipart_upload()
            .bucket(&*self.name)
            .key(object)
            .upload_id(upload)
            .send()
            .await
        {
            tracing::warn!(object, upload, error = %DisplayErrorContext(&e), "could not abort a multipart upload; a lifecycle rule or `garage bucket cleanup-incomplete-uploads` removes its parts");
        }
    }

    /// A URL that GETs the blob without credentials for `ttl`, saving it as `file_name`.
    pub async fn presign_get(
        &self,
        key: &BlobKey,
        file_name: &str,
        ttl: Duration,
    ) -> Result<String> {
        let object = object_key(key);
        let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(ttl).map_err(|e| {
            S3Error::Config {
                setting: "presign_downloads",
                rule: e.to_string(),
            }
        })?;
        let request = self
            .client
            .get_object()
            .bucket(&*self.name)
            .key(&object)
            .response_content_disposition(format!("attachment; filename=\"{file_name}\""))
            .response_content_type("application/zip")
            .presigned(config)
            .await
            .map_err(|e| request_error("presign GetObject", object, e))?;
        Ok(request.uri().to_string())
    }
}

fn completed_part(number: i32, etag: Option<&str>) -> CompletedPart {
    CompletedPart::builder()
        .part_number(number)
        .set_e_tag(etag.map(str::to_string))
        .build()
}

/// `len` bytes of a spooled file from `offset`, read as they are sent.
async fn file_body(path: &Path, offset: u64, len: u64) -> Result<ByteStream> {
    ByteStream::read_from()
        .path(path)
        .offset(offset)
        .length(Length::Exact(len))
        .build()
        .await
        .map_err(|e| {
            crate::store::io_err(format!("read {}", path.display()))(std::io::Error::other(e))
        })
}

async fn collect(body: ByteStream, object: &str) -> Result<Vec<u8>> {
    body.collect()
        .await
        .map(|bytes| bytes.to_vec())
        .map_err(|e| {
            crate::store::io_err(format!("read S3 object {object}"))(std::io::Error::other(e))
        })
}

fn length(content_length: Option<i64>, object: &str) -> Result<u64> {
    content_length
        .and_then(|len| u64::try_from(len).ok())
        .ok_or_else(|| {
            S3Error::Request {
                operation: "HeadObject",
                target: object.to_string(),
                message: "the answer has no Content-Length".into(),
            }
            .into()
        })
}

fn past_end(key: &BlobKey, range: &Range<u64>) -> StoreError {
    StoreError::Corrupt(format!(
        "bytes {}..{} are past the end of blob {key}",
        range.start, range.end
    ))
}

fn status<E>(e: &SdkError<E, HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

fn request_error<E>(
    operation: &'static str,
    target: impl Into<String>,
    e: SdkError<E, HttpResponse>,
) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
{
    S3Error::Request {
        operation,
        target: target.into(),
        message: DisplayErrorContext(&e).to_string(),
    }
    .into()
}
