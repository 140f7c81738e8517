//! `GET|HEAD /v1/download/{org}/{version}/{file}`: packages, their signatures and the checksum
//! files, with the HTTP semantics download tools rely on (CONTRACT 6), and the `latest`
//! redirects.
//!
//! Every path segment goes through a domain type before anything is looked up: the org through
//! `OrgCode`, the version through `Version`, the file through [`DownloadFile`], which accepts only
//! the four shapes of files a release directory holds, named after that same org and version.
//! Nothing here builds a file path from a request: bytes come from blobs named by the package
//! record. Access is decided by [`require_org_access`] before the record is read, so an
//! anonymous or foreign caller learns nothing about another org's packages. Every GET of a
//! department package is an audit event, also when it is answered with a redirect to a
//! presigned URL of the object store (`presign_downloads`): a short-lived URL for the one
//! object, handed out only after the same access check.

use crate::domain::{OrgCode, Platform, Sha256, Version};
use crate::server::auth::{require_org_access, Caller, ClientAddr};
use crate::server::body::DownloadBody;
use crate::server::error::{ApiError, ApiResult};
use crate::server::extract::ApiPath;
use crate::server::AppState;
use crate::service::views::recommended;
use crate::store::{AuditEvent, Segment};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use std::ops::Range;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const CHECKSUMS: &str = "SHA256SUMS";
pub const CHECKSUMS_SIGNATURE: &str = "SHA256SUMS.minisig";
const SIGNATURE_SUFFIX: &str = ".minisig";
const LATEST: &str = "latest";

/// The files of an org's release directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownloadFile {
    /// `{org}-{version}-{platform}.zip`
    Package(Platform),
    /// `{org}-{version}-{platform}.zip.minisig`
    PackageSignature(Platform),
    Checksums,
    ChecksumsSignature,
}

impl DownloadFile {
    /// The file `name` of `org`'s release `version`; `None` for anything else, including a
    /// package name of another org or version.
    pub fn parse(org: &OrgCode, version: &Version, name: &str) -> Option<Self> {
        match name {
            CHECKSUMS => return Some(Self::Checksums),
            CHECKSUMS_SIGNATURE => return Some(Self::ChecksumsSignature),
            _ => {}
        }
        let (package, signature) = match name.strip_suffix(SIGNATURE_SUFFIX) {
            Some(package) => (package, true),
            None => (name, false),
        };
        let platform = package
            .strip_prefix(org.as_str())?
            .strip_prefix('-')?
            .strip_prefix(version.to_string().as_str())?
            .strip_prefix('-')?
            .strip_suffix(".zip")?;
        let platform = Platform::parse(platform).ok()?;
        Some(if signature {
            Self::PackageSignature(platform)
        } else {
            Self::Package(platform)
        })
    }
}

/// What is being served, with its validators.
struct Representation {
    file_name: String,
    content_type: &'static str,
    len: u64,
    sha256: Sha256,
    last_modified: i64,
    content: Content,
}

enum Content {
    Segments(Vec<Segment>),
    Text(Bytes),
}

impl Representation {
    fn text(file_name: String, text: String, last_modified: i64) -> Self {
        let bytes = Bytes::from(text);
        Representation {
            file_name,
            content_type: "text/plain; charset=utf-8",
            len: bytes.len() as u64,
            sha256: Sha256::digest(&bytes),
            last_modified,
            content: Content::Text(bytes),
        }
    }

    fn etag(&self) -> String {
        format!("\"{}\"", self.sha256.to_hex())
    }

    fn last_modified(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.last_modified.max(0) as u64)
    }
}

/// How a GET or HEAD is answered, from its conditional and range headers (RFC 9110 13, 14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    NotModified,
    Full,
    Partial(Range<u64>),
    Unsatisfiable,
}

/// Decides the answer. Multi-range requests get the whole representation (RFC 9110 allows a
/// server to ignore `Range`); so do malformed ranges, a failed `If-Range`, and HEAD requests.
pub fn plan(
    method: &Method,
    headers: &HeaderMap,
    etag: &str,
    last_modified: SystemTime,
    len: u64,
) -> Plan {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if let Some(if_none_match) = text(header::IF_NONE_MATCH) {
        if etag_list_matches(if_none_match, etag) {
            return Plan::NotModified;
        }
    } else if let Some(since) =
        text(header::IF_MODIFIED_SINCE).and_then(|d| httpdate::parse_http_date(d).ok())
    {
        if last_modified <= since {
            return Plan::NotModified;
        }
    }
    if method != Method::GET {
        return Plan::Full;
    }
    let Some(range) = text(header::RANGE) else {
        return Plan::Full;
    };
    if let Some(if_range) = text(header::IF_RANGE) {
        let still_current = if if_range.starts_with('"') {
            // A strong comparison: ranges of a different representation must not be spliced.
            if_range == etag
        } else if if_range.starts_with("W/") {
            false
        } else {
            httpdate::parse_http_date(if_range).is_ok_and(|date| date == last_modified)
        };
        if !still_current {
            return Plan::Full;
        }
    }
    match parse_range(range, len) {
        RangeSpec::Ignore => Plan::Full,
        RangeSpec::Unsatisfiable => Plan::Unsatisfiable,
        RangeSpec::Bytes(r) => Plan::Partial(r),
    }
}

/// `If-None-Match` uses the weak comparison: `W/"x"` matches `"x"`.
fn etag_list_matches(list: &str, etag: &str) -> bool {
    list.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

#[derive(Debug, PartialEq, Eq)]
enum RangeSpec {
    Ignore,
    Unsatisfiable,
    Bytes(Range<u64>),
}

/// One `bytes=` range: `a-b`, `a-` or `-n`.
fn parse_range(value: &str, len: u64) -> RangeSpec {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeSpec::Ignore;
    };
    if spec.contains(',') {
        return RangeSpec::Ignore;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeSpec::Ignore;
    };
    let number = |s: &str| {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            // Digits beyond u64 mean "further than any file": saturate.
            Some(s.parse::<u64>().unwrap_or(u64::MAX))
        } else {
            None
        }
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => match number(suffix) {
            None => RangeSpec::Ignore,
            Some(0) => RangeSpec::Unsatisfiable,
            Some(_) if len == 0 => RangeSpec::Unsatisfiable,
            Some(n) => RangeSpec::Bytes(len.saturating_sub(n)..len),
        },
        (start, end) => {
            let Some(start) = number(start) else {
                return RangeSpec::Ignore;
            };
            let end = match end {
                "" => None,
                e => match number(e) {
                    Some(e) if e >= start => Some(e),
                    _ => return RangeSpec::Ignore,
                },
            };
            if start >= len {
                return RangeSpec::Unsatisfiable;
            }
            let end = end.map_or(len, |e| e.saturating_add(1).min(len));
            RangeSpec::Bytes(start..end)
        }
    }
}

fn not_found(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::NotFound(format!("no such {what}: {e}"))
}

/// The answer to a download, prepared on the blocking pool.
enum Prepared {
    Answer(Box<Representation>, Plan, Option<DownloadBody>),
    Redirect(String),
}

#[utoipa::path(
    method(get, head),
    path = "/v1/download/{org}/{version}/{file}",
    tag = "downloads",
    params(
        ("org" = String, Path, description = "Org code; `default` is public"),
        ("version" = String, Path, description = "Release version, or `latest`"),
        ("file" = String, Path, description = "`{org}-{version}-{platform}.zip`, its `.minisig`, `SHA256SUMS` or `SHA256SUMS.minisig`; after `latest`, a platform or `SHA256SUMS`"),
        ("channel" = Option<String>, Query, description = "For `latest`: the channel to look at instead of the org's"),
    ),
    responses(
        (status = 200, description = "The file", content_type = "application/octet-stream"),
        (status = 206, description = "The requested range"),
        (status = 302, description = "`latest`: the concrete URL; a package with `presign_downloads`: a presigned URL of the object store"),
        (status = 304, description = "Not modified"),
        (status = 401, description = "A department file without a token", body = crate::server::error::ErrorBody),
        (status = 404, description = "Unknown, or another org's", body = crate::server::error::ErrorBody),
        (status = 416, description = "Range not satisfiable", body = crate::server::error::ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub async fn download(
    State(state): State<AppState>,
    method: Method,
    caller: Option<Caller>,
    ClientAddr(address): ClientAddr,
    ApiPath((org, version, file)): ApiPath<(String, String, String)>,
    query: axum::extract::RawQuery,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let org = OrgCode::parse(&org).map_err(|e| not_found("org", e))?;
    if !org.is_default() {
        let caller = caller
            .as_ref()
            .ok_or_else(|| ApiError::Unauthorized("department downloads need a token".into()))?;
        require_org_access(caller, &org)?;
    }
    let target = if version == LATEST {
        Target::Latest(
            LatestFile::parse(&file)?,
            latest_channel(query.0.as_deref())?,
        )
    } else {
        let version = Version::parse(&version).map_err(|e| not_found("version", e))?;
        let file = DownloadFile::parse(&org, &version, &file)
            .ok_or_else(|| ApiError::NotFound(format!("no file {file:?} in {org} {version}")))?;
        Target::File(version, file)
    };

    let actor = caller.as_ref().map(|c| c.name.clone());
    let private = !org.is_default();
    let blocking_state = state.clone();
    let is_get = method == Method::GET;
    let prepared = tokio::task::spawn_blocking(move || -> ApiResult<Prepared> {
        let state = blocking_state;
        let (version, file) = match target {
            Target::Latest(file, channel) => {
                return latest(&state, &org, file, channel).map(Prepared::Redirect)
            }
            Target::File(version, file) => (version, file),
        };
        let meta = state.meta.as_ref();
        let representation = match file {
            DownloadFile::Package(platform) | DownloadFile::PackageSignature(platform) => {
                let name = crate::domain::package_file_name(&org, &version, platform);
                let package = meta
                    .get_package(&org, &version, &name)?
                    .ok_or_else(|| ApiError::not_found(format!("package {name}")))?;
                if let DownloadFile::PackageSignature(_) = file {
                    Representation::text(
                        format!("{name}{SIGNATURE_SUFFIX}"),
                        package.minisig,
                        package.built_at,
                    )
                } else {
                    Representation {
                        file_name: name,
                        content_type: "application/zip",
                        len: package.size,
                        sha256: package.sha256,
                        last_modified: package.built_at,
                        content: Content::Segments(package.segments),
                    }
                }
            }
            DownloadFile::Checksums | DownloadFile::ChecksumsSignature => {
                let sums = meta
                    .get_checksums(&org, &version)?
                    .ok_or_else(|| ApiError::not_found(format!("checksums of {org} {version}")))?;
                if file == DownloadFile::Checksums {
                    Representation::text(CHECKSUMS.into(), sums.text, sums.updated_at)
                } else {
                    Representation::text(CHECKSUMS_SIGNATURE.into(), sums.minisig, sums.updated_at)
                }
            }
        };
        let plan = plan(
            &method,
            &headers,
            &representation.etag(),
            representation.last_modified(),
            representation.len,
        );
        let range = match &plan {
            Plan::Full => 0..representation.len,
            Plan::Partial(range) => range.clone(),
            Plan::NotModified => return Ok(Prepared::Answer(Box::new(representation), plan, None)),
            Plan::Unsatisfiable => {
                return Err(ApiError::RangeNotSatisfiable {
                    len: representation.len,
                })
            }
        };
        // An object store set to offload downloads sends the bytes itself, Range included.
        let offload = match (&representation.content, is_get, file) {
            (Content::Segments(segments), true, DownloadFile::Package(_)) => {
                match segments.as_slice() {
                    [whole] if whole.offset == 0 && whole.len == representation.len => state
                        .blobs
                        .download_url(&whole.blob, &representation.file_name)?,
                    _ => None,
                }
            }
            _ => None,
        };
        let body = if offload.is_some() {
            None
        } else if is_get {
            Some(match &representation.content {
                Content::Segments(segments) => DownloadBody::open(
                    &state.blobs,
                    &state.maps,
                    segments,
                    range.clone(),
                    state.metrics.bytes_served(),
                )?,
                Content::Text(text) => DownloadBody::text(
                    text.slice(range.start as usize..range.end as usize),
                    state.metrics.bytes_served(),
                ),
            })
        } else {
            None
        };
        if let (true, DownloadFile::Package(platform)) = (is_get, file) {
            if range.start == 0 {
                state
                    .metrics
                    .count_download(org.as_str(), platform.as_str());
            }
            if !org.is_default() {
                let partial = matches!(plan, Plan::Partial(_));
                meta.append_audit(&AuditEvent {
                    id: 0,
                    at: time::OffsetDateTime::now_utc().unix_timestamp(),
                    actor: actor.unwrap_or_else(|| "anonymous".into()),
                    org: Some(org.clone()),
                    action: "package.download".into(),
                    target: representation.file_name.clone(),
                    address,
                    detail: partial
                        .then(|| format!("bytes {}-{}", range.start, range.end.saturating_sub(1))),
                })?;
            }
        }
        if let Some(url) = offload {
            return Ok(Prepared::Redirect(url));
        }
        Ok(Prepared::Answer(Box::new(representation), plan, body))
    })
    .await??;

    match prepared {
        Prepared::Redirect(location) => Ok(redirect(&location)),
        Prepared::Answer(representation, plan, body) => {
            Ok(respond(&representation, plan, body, private))
        }
    }
}

enum Target {
    File(Version, DownloadFile),
    Latest(LatestFile, Option<crate::domain::Channel>),
}

/// What `latest` can point at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LatestFile {
    Package(Platform),
    Checksums,
}

impl LatestFile {
    fn parse(name: &str) -> ApiResult<Self> {
        if name == CHECKSUMS {
            return Ok(Self::Checksums);
        }
        Platform::parse(name)
            .map(Self::Package)
            .map_err(|e| not_found("file after latest (a platform or SHA256SUMS)", e))
    }
}

/// `?channel=C`; other query parameters are ignored.
fn latest_channel(query: Option<&str>) -> ApiResult<Option<crate::domain::Channel>> {
    let Some(query) = query else { return Ok(None) };
    for pair in query.split('&') {
        if let Some(value) = pair.strip_prefix("channel=") {
            return crate::domain::Channel::parse(value)
                .map(Some)
                .map_err(ApiError::from);
        }
    }
    Ok(None)
}

/// The concrete URL `latest` stands for. Blocking.
fn latest(
    state: &AppState,
    org: &OrgCode,
    file: LatestFile,
    channel: Option<crate::domain::Channel>,
) -> ApiResult<String> {
    let meta = state.meta.as_ref();
    let org_record = meta
        .get_org(org)?
        .ok_or_else(|| ApiError::not_found(format!("org {org}")))?;
    // `?channel=` asks about that channel; otherwise the org's pin, else its channel.
    let pinned = match channel {
        Some(_) => None,
        None => org_record.config.pinned_version.clone(),
    };
    let channel = channel.unwrap_or(org_record.config.channel);
    let releases = meta.list_releases()?;
    let rollouts = meta.list_rollouts()?;
    let platform = match file {
        LatestFile::Package(p) => Some(p),
        LatestFile::Checksums => None,
    };
    let release = recommended(&releases, &rollouts, pinned.as_ref(), &channel, platform)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "no release fully rolled out on channel {channel}{}",
                platform.map(|p| format!(" for {p}")).unwrap_or_default()
            ))
        })?;
    let name = match file {
        LatestFile::Package(p) => crate::domain::package_file_name(org, &release.version, p),
        LatestFile::Checksums => CHECKSUMS.to_string(),
    };
    Ok(format!("/v1/download/{org}/{}/{name}", release.version))
}

fn redirect(location: &str) -> Response {
    let mut response = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn respond(
    rep: &Representation,
    plan: Plan,
    body: Option<DownloadBody>,
    private: bool,
) -> Response {
    let mut headers = HeaderMap::new();
    let mut put = |name, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    put(header::ETAG, rep.etag());
    put(
        header::LAST_MODIFIED,
        httpdate::fmt_http_date(rep.last_modified()),
    );
    // A rebuild (new org configuration) changes a package under the same URL: revalidate.
    put(
        header::CACHE_CONTROL,
        if private {
            "private, no-cache"
        } else {
            "no-cache"
        }
        .to_string(),
    );
    if plan == Plan::NotModified {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    put(header::ACCEPT_RANGES, "bytes".into());
    put(header::CONTENT_TYPE, rep.content_type.into());
    put(
        header::CONTENT_DISPOSITION,
        format!("attachment; filename=\"{}\"", rep.file_name),
    );
    put(header::X_CONTENT_TYPE_OPTIONS, "nosniff".into());
    put(
        header::HeaderName::from_static("repr-digest"),
        rep.sha256.repr_digest(),
    );
    let (status, range) = match plan {
        Plan::Partial(range) => {
            put(
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{}", range.start, range.end - 1, rep.len),
            );
            (StatusCode::PARTIAL_CONTENT, range)
        }
        _ => (StatusCode::OK, 0..rep.len),
    };
    put(
        header::CONTENT_LENGTH,
        (range.end - range.start).to_string(),
    );
    let body = body.map_or_else(Body::empty, Body::new);
    (status, headers, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn file_names() {
        let org = OrgCode::parse("physics").unwrap();
        let ver = v("11.2.1");
        let parse = |n| DownloadFile::parse(&org, &ver, n);
        assert_eq!(
            parse("physics-11.2.1-windows-x86_64.zip"),
            Some(DownloadFile::Package(Platform::WindowsX86_64))
        );
        assert_eq!(
            parse("physics-11.2.1-macos-aarch64.zip.minisig"),
            Some(DownloadFile::PackageSignature(Platform::MacosAarch64))
        );
        assert_eq!(parse("SHA256SUMS"), Some(DownloadFile::Checksums));
        assert_eq!(
            parse("SHA256SUMS.minisig"),
            Some(DownloadFile::ChecksumsSignature)
        );
        for bad in [
            "chemistry-11.2.1-windows-x86_64.zip",
            "physics-11.2.0-windows-x86_64.zip",
            "physics-11.2.1-windows-x86_64.tar",
            "physics-11.2.1-windows.zip",
            "physics-11.2.1-windows-x86_64.zip.minisig.minisig",
            "../physics-11.2.1-windows-x86_64.zip",
            "sha256sums",
            "",
            "depot.db",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn ranges() {
        use RangeSpec::*;
        assert_eq!(parse_range("bytes=0-99", 1000), Bytes(0..100));
        assert_eq!(parse_range("bytes=500-", 1000), Bytes(500..1000));
        assert_eq!(parse_range("bytes=-100", 1000), Bytes(900..1000));
        assert_eq!(parse_range("bytes=-5000", 1000), Bytes(0..1000));
        assert_eq!(parse_range("bytes=990-5000", 1000), Bytes(990..1000));
        assert_eq!(parse_range("bytes=999-999", 1000), Bytes(999..1000));
        assert_eq!(
            parse_range("bytes=0-99999999999999999999999", 1000),
            Bytes(0..1000)
        );
        assert_eq!(parse_range("bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        for ignored in [
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=5-1",
            "bytes=a-b",
            "bytes=-",
            "bytes=--1",
            "bytes=0",
        ] {
            assert_eq!(parse_range(ignored, 1000), Ignore, "{ignored}");
        }
    }

    #[test]
    fn conditionals() {
        let etag = "\"abc\"";
        let lm = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let lm_text = httpdate::fmt_http_date(lm);
        let with = |pairs: &[(header::HeaderName, &str)]| {
            let mut h = HeaderMap::new();
            for (k, val) in pairs {
                h.insert(k.clone(), HeaderValue::from_str(val).unwrap());
            }
            plan(&Method::GET, &h, etag, lm, 1000)
        };
        assert_eq!(with(&[]), Plan::Full);
        assert_eq!(
            with(&[(header::IF_NONE_MATCH, "\"abc\"")]),
            Plan::NotModified
        );
        assert_eq!(
            with(&[(header::IF_NONE_MATCH, "\"x\", W/\"abc\"")]),
            Plan::NotModified
        );
        assert_eq!(with(&[(header::IF_NONE_MATCH, "*")]), Plan::NotModified);
        assert_eq!(with(&[(header::IF_NONE_MATCH, "\"x\"")]), Plan::Full);
        assert_eq!(
            with(&[(header::IF_MODIFIED_SINCE, &lm_text)]),
            Plan::NotModified
        );
        assert_eq!(
            with(&[
                (header::IF_NONE_MATCH, "\"x\""),
                (header::IF_MODIFIED_SINCE, &lm_text)
            ]),
            Plan::Full,
            "If-None-Match wins over If-Modified-Since"
        );
        assert_eq!(
            with(&[(header::RANGE, "bytes=10-19")]),
            Plan::Partial(10..20)
        );
        assert_eq!(
            with(&[
                (header::RANGE, "bytes=10-19"),
                (header::IF_RANGE, "\"abc\"")
            ]),
            Plan::Partial(10..20)
        );
        assert_eq!(
            with(&[
                (header::RANGE, "bytes=10-19"),
                (header::IF_RANGE, "\"old\"")
            ]),
            Plan::Full
        );
        assert_eq!(
            with(&[
                (header::RANGE, "bytes=10-19"),
                (header::IF_RANGE, "W/\"abc\"")
            ]),
            Plan::Full
        );
        assert_eq!(
            with(&[(header::RANGE, "bytes=10-19"), (header::IF_RANGE, &lm_text)]),
            Plan::Partial(10..20)
        );
        assert_eq!(
            with(&[
                (header::RANGE, "bytes=10-19"),
                (header::IF_RANGE, "Sun, 06 Nov 1994 08:49:37 GMT")
            ]),
            Plan::Full
        );
        assert_eq!(with(&[(header::RANGE, "bytes=5000-")]), Plan::Unsatisfiable);
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_static("bytes=0-1"));
        assert_eq!(
            plan(&Method::HEAD, &h, etag, lm, 1000),
            Plan::Full,
            "HEAD ignores Range"
        );
    }
}
