//! Resumable package download into `DIR/downloads/` and its verification against the offer and
//! the pinned key.
//!
//! A download goes to `{file}.part`; an interrupted one resumes with `Range: bytes=N-` and, when
//! the first answer carried a strong `ETag`, `If-Range`, so that a file changed on the server is
//! fetched whole instead of being spliced. The body is held to the offered size. Nothing here
//! trusts the bytes until [`verify_package`] has checked size, SHA-256 and the minisign
//! signature; on any mismatch the caller deletes the file.

use super::http::{transport, ServerClient};
use super::{AgentError, Result};
use crate::domain::Sha256;
use crate::signing::{digest_reader, PublicKey, SigningError};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The files of one download, all inside `downloads/`, named from validated domain values.
#[derive(Debug, Clone)]
pub struct DownloadPaths {
    pub part: PathBuf,
    pub etag: PathBuf,
}

impl DownloadPaths {
    pub fn new(downloads: &Path, file_name: &str) -> Self {
        Self {
            part: downloads.join(format!("{file_name}.part")),
            etag: downloads.join(format!("{file_name}.etag")),
        }
    }

    /// Removes the partial file and its ETag; missing files are fine.
    pub fn discard(&self) -> Result<()> {
        for path in [&self.part, &self.etag] {
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(AgentError::io("removing", path)(e)),
            }
        }
        Ok(())
    }
}

/// Brings `paths.part` to `size` bytes from `url`, resuming what an earlier run left. Returns
/// the number of bytes fetched in this call.
pub fn download(client: &ServerClient, url: &str, paths: &DownloadPaths, size: u64) -> Result<u64> {
    let mut have = match fs::metadata(&paths.part) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(AgentError::io("reading", &paths.part)(e)),
    };
    if have > size {
        paths.discard()?;
        have = 0;
    }
    if have == size && size > 0 {
        return Ok(0);
    }
    // Two attempts: the second one starts over when the server refuses the range.
    for _ in 0..2 {
        let mut headers = Vec::new();
        if have > 0 {
            headers.push(("Range", format!("bytes={have}-")));
            if let Some(etag) = read_etag(&paths.etag) {
                headers.push(("If-Range", etag));
            }
        }
        let mut response = client.get(url, &headers)?;
        let status = response.status().as_u16();
        let append = match status {
            206 if have > 0 => {
                if content_range_start(&response) != Some(have) {
                    paths.discard()?;
                    have = 0;
                    continue;
                }
                true
            }
            200 => {
                have = 0;
                store_etag(&paths.etag, response.headers().get("etag"))?;
                false
            }
            416 if have > 0 => {
                paths.discard()?;
                have = 0;
                continue;
            }
            401 | 403 => {
                return Err(AgentError::Deactivated {
                    status,
                    message: "the package download was refused".into(),
                })
            }
            _ => {
                return Err(AgentError::HttpStatus {
                    url: url.to_string(),
                    status,
                    message: "the package download failed".into(),
                })
            }
        };
        let mut file = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(&paths.part)
            .map_err(AgentError::io("opening", &paths.part))?;
        let remaining = size - have;
        // One byte more than offered tells an oversized body from an exact one.
        let mut body = response.body_mut().as_reader().take(remaining + 1);
        let fetched = copy_keeping_progress(&mut body, &mut file, &paths.part, url)?;
        if fetched > remaining {
            paths.discard()?;
            return Err(AgentError::PackageRejected {
                reason: format!("the server sent more than the offered {size} bytes"),
            });
        }
        if fetched < remaining {
            return Err(AgentError::Network {
                url: url.to_string(),
                reason: format!(
                    "the download ended after {} of {size} bytes; it resumes on the next run",
                    have + fetched
                ),
            });
        }
        return Ok(fetched);
    }
    Err(AgentError::HttpStatus {
        url: url.to_string(),
        status: 416,
        message: "the server refused the range of a fresh download".into(),
    })
}

/// Copies until the body ends; bytes already written stay on disk (synced) when the connection
/// breaks, which is what makes the next attempt a resume.
fn copy_keeping_progress(
    body: &mut impl Read,
    file: &mut fs::File,
    path: &Path,
    url: &str,
) -> Result<u64> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = file.sync_all();
                return Err(transport(url)(ureq::Error::Io(e)));
            }
        };
        file.write_all(&buf[..n])
            .map_err(AgentError::io("writing", path))?;
        total += n as u64;
    }
    file.sync_all().map_err(AgentError::io("writing", path))?;
    Ok(total)
}

/// The first byte position of a `Content-Range: bytes N-M/T` header.
fn content_range_start(response: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    let value = response.headers().get("content-range")?.to_str().ok()?;
    let range = value.trim().strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}

/// Keeps a strong ETag for `If-Range`; a weak or odd one is dropped, as `If-Range` needs strong.
fn store_etag(path: &Path, value: Option<&ureq::http::HeaderValue>) -> Result<()> {
    let strong = value
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| is_strong_etag(v));
    match strong {
        Some(etag) => fs::write(path, etag).map_err(AgentError::io("writing", path)),
        None => match fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(AgentError::io("removing", path)(e)),
        },
    }
}

fn read_etag(path: &Path) -> Option<String> {
    let mut text = String::new();
    fs::File::open(path)
        .ok()?
        .take(256)
        .read_to_string(&mut text)
        .ok()?;
    let text = text.trim();
    is_strong_etag(text).then(|| text.to_string())
}

fn is_strong_etag(v: &str) -> bool {
    v.len() >= 2
        && v.len() <= 200
        && v.starts_with('"')
        && v.ends_with('"')
        && v.bytes().all(|b| b.is_ascii_graphic())
}

/// Checks a complete download against the offer: exact size, SHA-256, and the minisign signature
/// made by the pinned key.
pub fn verify_package(
    path: &Path,
    size: u64,
    sha256: &Sha256,
    key: &PublicKey,
    minisig: &str,
) -> Result<()> {
    let rejected = |reason: String| AgentError::PackageRejected { reason };
    let actual = fs::metadata(path)
        .map_err(AgentError::io("reading", path))?
        .len();
    if actual != size {
        return Err(rejected(format!(
            "size mismatch: offered {size} bytes, got {actual}"
        )));
    }
    let mut file = fs::File::open(path).map_err(AgentError::io("opening", path))?;
    let (digest, prehash) = digest_reader(&mut file)
        .map_err(|e| match e {
            SigningError::Read(source) => AgentError::io("reading", path)(source),
            other => rejected(other.to_string()),
        })?
        .finish();
    if &digest != sha256 {
        return Err(rejected(format!(
            "sha256 mismatch: offered {sha256}, got {digest}"
        )));
    }
    key.verify_prehashed(&prehash, minisig).map_err(|e| {
        rejected(format!(
            "minisign signature check against the pinned key failed: {e}"
        ))
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::http::ServerUrl;
    use crate::agent::test_server::{Route, TestServer};
    use crate::signing::SigningKey;

    struct Fixture {
        server: TestServer,
        client: ServerClient,
        bytes: Vec<u8>,
        sha256: Sha256,
        key: SigningKey,
        minisig: String,
        _tmp: tempfile::TempDir,
        paths: DownloadPaths,
        url: String,
    }

    fn fixture(size: usize) -> Fixture {
        let bytes: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        let sha256 = Sha256::digest(&bytes);
        let key = SigningKey::generate();
        let minisig = key.sign(&bytes, "file:pkg.zip");
        let server = TestServer::start();
        server.route(
            "GET",
            "/v1/download/physics/1.0.0/pkg.zip",
            Route::File {
                bytes: bytes.clone(),
                etag: format!("\"{sha256}\""),
            },
        );
        let client = ServerClient::new(ServerUrl::parse(&server.url).unwrap(), Some("tok".into()));
        let tmp = tempfile::tempdir().unwrap();
        let paths = DownloadPaths::new(tmp.path(), "pkg.zip");
        let url = client
            .base()
            .resolve("/v1/download/physics/1.0.0/pkg.zip")
            .unwrap();
        Fixture {
            server,
            client,
            bytes,
            sha256,
            key,
            minisig,
            _tmp: tmp,
            paths,
            url,
        }
    }

    #[test]
    fn downloads_and_verifies_with_the_token() {
        let f = fixture(300_000);
        let size = f.bytes.len() as u64;
        assert_eq!(download(&f.client, &f.url, &f.paths, size).unwrap(), size);
        verify_package(
            &f.paths.part,
            size,
            &f.sha256,
            &f.key.public_key(),
            &f.minisig,
        )
        .unwrap();
        let requests = f.server.requests_to("/v1/download/physics/1.0.0/pkg.zip");
        assert_eq!(requests.len(), 1);
        assert_eq!(
            requests[0].headers.get("authorization").map(String::as_str),
            Some("Bearer tok")
        );
        assert!(!requests[0].headers.contains_key("range"));
        // A complete file from an earlier run is not fetched again.
        assert_eq!(download(&f.client, &f.url, &f.paths, size).unwrap(), 0);
    }

    #[test]
    fn an_interrupted_download_resumes_with_range_and_if_range() {
        let f = fixture(500_000);
        let size = f.bytes.len() as u64;
        f.server.behaviour.lock().unwrap().cut_next_file_after = Some(123_456);
        let err = download(&f.client, &f.url, &f.paths, size).unwrap_err();
        assert!(matches!(err, AgentError::Network { .. }), "{err}");
        assert_eq!(fs::metadata(&f.paths.part).unwrap().len(), 123_456);

        let fetched = download(&f.client, &f.url, &f.paths, size).unwrap();
        assert_eq!(fetched, size - 123_456);
        let requests = f.server.requests_to("/v1/download/physics/1.0.0/pkg.zip");
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[1].headers["range"], "bytes=123456-");
        assert_eq!(requests[1].headers["if-range"], format!("\"{}\"", f.sha256));
        assert_eq!(fs::read(&f.paths.part).unwrap(), f.bytes);
        verify_package(
            &f.paths.part,
            size,
            &f.sha256,
            &f.key.public_key(),
            &f.minisig,
        )
        .unwrap();
    }

    #[test]
    fn a_changed_file_is_fetched_whole_instead_of_spliced() {
        let f = fixture(10_000);
        let size = f.bytes.len() as u64;
        // A partial file whose ETag no longer matches: the server answers 200 with everything.
        fs::write(&f.paths.part, vec![0xAA; 4000]).unwrap();
        fs::write(&f.paths.etag, "\"an-older-etag\"").unwrap();
        assert_eq!(download(&f.client, &f.url, &f.paths, size).unwrap(), size);
        assert_eq!(fs::read(&f.paths.part).unwrap(), f.bytes);
        // A partial file longer than the offer starts over as well.
        fs::write(&f.paths.part, vec![0; 20_000]).unwrap();
        assert_eq!(download(&f.client, &f.url, &f.paths, size).unwrap(), size);
        assert_eq!(fs::read(&f.paths.part).unwrap(), f.bytes);
    }

    #[test]
    fn a_flipped_byte_or_a_foreign_signature_is_refused() {
        let f = fixture(50_000);
        let size = f.bytes.len() as u64;
        f.server.behaviour.lock().unwrap().flip_byte_at = Some(40_000);
        download(&f.client, &f.url, &f.paths, size).unwrap();
        let err = verify_package(
            &f.paths.part,
            size,
            &f.sha256,
            &f.key.public_key(),
            &f.minisig,
        )
        .unwrap_err();
        assert!(err.to_string().contains("sha256 mismatch"), "{err}");

        // Right bytes, right digest, but signed by another key.
        fs::write(&f.paths.part, &f.bytes).unwrap();
        let other = SigningKey::generate().sign(&f.bytes, "file:pkg.zip");
        let err = verify_package(&f.paths.part, size, &f.sha256, &f.key.public_key(), &other)
            .unwrap_err();
        assert!(err.to_string().contains("pinned key"), "{err}");
        let err = verify_package(
            &f.paths.part,
            size + 1,
            &f.sha256,
            &f.key.public_key(),
            &f.minisig,
        )
        .unwrap_err();
        assert!(err.to_string().contains("size mismatch"), "{err}");
    }

    #[test]
    fn a_body_longer_than_the_offer_is_cut_and_refused() {
        let f = fixture(10_000);
        let err = download(&f.client, &f.url, &f.paths, 5_000).unwrap_err();
        assert!(matches!(err, AgentError::PackageRejected { .. }), "{err}");
        assert!(!f.paths.part.exists());
    }

    #[test]
    fn refusals_of_the_server_are_typed() {
        let f = fixture(10);
        let missing = f
            .client
            .base()
            .resolve("/v1/download/physics/9.9.9/x.zip")
            .unwrap();
        let err = download(&f.client, &missing, &f.paths, 10).unwrap_err();
        assert!(
            matches!(err, AgentError::HttpStatus { status: 404, .. }),
            "{err}"
        );
        f.server.json("GET", "/gone", 401, &serde_json::json!({}));
        let gone = f.client.base().resolve("/gone").unwrap();
        let err = download(&f.client, &gone, &f.paths, 10).unwrap_err();
        assert!(
            matches!(err, AgentError::Deactivated { status: 401, .. }),
            "{err}"
        );
    }
}
