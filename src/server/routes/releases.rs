//! `/v1/releases` and `/v1/channels`: the public release list, and for admins release upload,
//! publication, rollouts, yanks and channel minimums.
//!
//! An upload is a multipart form: `version`, `notes`, and one file part per platform named by
//! the platform (`linux-x86_64`) with the payload's file name as its filename. File parts are
//! streamed to temp files under the data directory while they are hashed, never held in memory;
//! the whole upload is capped at `max_upload_bytes` (413), and the temp files disappear whatever
//! happens. The service then stores each payload; the digest it computes must equal the one
//! taken while receiving.

use super::{actor, blocking, BuildSummary};
use crate::domain::{Channel, EntryName, Platform, Sha256, Version};
use crate::server::auth::{require_admin, Caller, ClientAddr};
use crate::server::error::{ApiError, ApiResult};
use crate::server::extract::{ApiJson, ApiPath};
use crate::server::{ApiState, AppState};
use crate::service::views::{rfc3339, ReleaseView};
use crate::service::{NoProgress, PayloadSource, MAX_NOTES_LEN};
use axum::extract::multipart::{Field, Multipart, MultipartRejection};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use tokio::io::AsyncWriteExt;

fn version_of(v: &str) -> ApiResult<Version> {
    Version::parse(v).map_err(|e| ApiError::NotFound(format!("no such release: {e}")))
}

/// A release with its channels, read fresh. Blocking.
fn release_view(state: &AppState, version: &Version) -> ApiResult<ReleaseView> {
    let release = state
        .meta
        .get_release(version)?
        .ok_or_else(|| ApiError::not_found(format!("release {version}")))?;
    Ok(ReleaseView::new(&release, &state.meta.list_rollouts()?))
}

#[utoipa::path(get, path = "/v1/releases", tag = "releases",
    responses((status = 200, body = Vec<ReleaseView>, description = "Newest first")))]
pub async fn list_releases(State(state): State<AppState>) -> ApiResult<Json<Vec<ReleaseView>>> {
    let views = blocking(move || -> ApiResult<_> {
        let rollouts = state.meta.list_rollouts()?;
        Ok(state
            .meta
            .list_releases()?
            .iter()
            .map(|r| ReleaseView::new(r, &rollouts))
            .collect())
    })
    .await?;
    Ok(Json(views))
}

#[utoipa::path(get, path = "/v1/releases/{version}", tag = "releases", params(("version" = String, Path)),
    responses((status = 200, body = ReleaseView), (status = 404, body = crate::server::error::ErrorBody)))]
pub async fn show_release(
    State(state): State<AppState>,
    ApiPath(version): ApiPath<String>,
) -> ApiResult<Json<ReleaseView>> {
    let version = version_of(&version)?;
    Ok(Json(
        blocking(move || release_view(&state, &version)).await?,
    ))
}

/// A payload received into a temp file.
struct Received {
    source: PayloadSource,
    sha256: Sha256,
    /// Deleted on drop, after the service has stored the payload.
    _file: tempfile::TempPath,
}

/// Reads a small text part, refusing more than `max` bytes.
async fn small_text(mut field: Field<'_>, name: &str, max: usize) -> ApiResult<String> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await? {
        if bytes.len() + chunk.len() > max {
            return Err(ApiError::TooLarge(format!(
                "the {name} part is longer than {max} bytes"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes)
        .map_err(|_| ApiError::Invalid(format!("the {name} part is not UTF-8 text")))
}

/// Streams a file part into a temp file under `tmp_dir`, hashing it; `received` counts the
/// upload's bytes against `limit`.
async fn receive_payload(
    mut field: Field<'_>,
    platform: Platform,
    tmp_dir: std::path::PathBuf,
    received: &mut u64,
    limit: u64,
) -> ApiResult<Received> {
    let file_name = field.file_name().ok_or_else(|| {
        ApiError::Invalid(format!(
            "the {platform} part needs a filename (the payload's name)"
        ))
    })?;
    let file_name = EntryName::parse(file_name)?;
    if file_name.as_str().contains('/') {
        return Err(ApiError::Invalid(format!(
            "payload name {file_name} must not contain '/'"
        )));
    }
    let temp = blocking(move || {
        tempfile::Builder::new()
            .prefix("upload-")
            .tempfile_in(&tmp_dir)
            .map_err(ApiError::internal)
    })
    .await?;
    let (std_file, path) = temp.into_parts();
    let mut file =
        tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::from_std(std_file));
    let mut hasher = sha2::Sha256::new();
    while let Some(chunk) = field.chunk().await? {
        *received += chunk.len() as u64;
        if *received > limit {
            return Err(ApiError::TooLarge(format!(
                "the upload is larger than {limit} bytes"
            )));
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(ApiError::internal)?;
    }
    file.flush().await.map_err(ApiError::internal)?;
    Ok(Received {
        source: PayloadSource {
            platform,
            file_name,
            path: path.to_path_buf(),
        },
        sha256: Sha256::from_bytes(hasher.finalize().into()),
        _file: path,
    })
}

#[utoipa::path(post, path = "/v1/releases", tag = "releases",
    request_body(content_type = "multipart/form-data", description = "`version`, `notes`, and one file part per platform, named by the platform, with the payload's file name"),
    responses((status = 201, body = ReleaseView), (status = 409, body = crate::server::error::ErrorBody),
        (status = 413, body = crate::server::error::ErrorBody), (status = 422, body = crate::server::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn upload_release(
    State(state): State<ApiState>,
    caller: Result<Caller, ApiError>,
    address: ClientAddr,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<(StatusCode, Json<ReleaseView>)> {
    let mut multipart = multipart?;
    let outcome = match caller.and_then(|c| require_admin(&c).map(|()| c)) {
        Ok(caller) => receive_release(state, &caller, address, &mut multipart).await,
        Err(e) => Err(e),
    };
    // Also after a 413: the client may still be sending, and closing on unread bytes resets
    // the connection before it reads the answer. The drain is bounded.
    if outcome.is_err() {
        drain(&mut multipart).await;
    }
    outcome
}

/// Bounds on reading the rest of a refused upload.
const DRAIN_BYTES: u64 = 64 * 1024 * 1024;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads (and drops) what is left of a refused upload, within bounds, so that a client still
/// sending its body can read the answer instead of seeing the connection reset.
async fn drain(multipart: &mut Multipart) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut read = 0u64;
        while let Ok(Some(mut field)) = multipart.next_field().await {
            while let Ok(Some(chunk)) = field.chunk().await {
                read += chunk.len() as u64;
                if read > DRAIN_BYTES {
                    return;
                }
            }
        }
    })
    .await;
}

async fn receive_release(
    state: ApiState,
    caller: &Caller,
    address: ClientAddr,
    multipart: &mut Multipart,
) -> ApiResult<(StatusCode, Json<ReleaseView>)> {
    let tmp_dir = state.depot.data_dir().join("tmp");
    let limit = state.app.options.max_upload_bytes;
    let mut received = 0u64;
    let mut version: Option<Version> = None;
    let mut notes = String::new();
    let mut payloads: Vec<Received> = Vec::new();
    while let Some(field) = multipart.next_field().await? {
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "version" => {
                let v = Version::parse(small_text(field, "version", 64).await?.trim())?;
                let meta = std::sync::Arc::clone(state.depot.meta());
                let probe = v.clone();
                // Refuse an existing version before receiving gigabytes for it.
                if blocking(move || meta.get_release(&probe)).await?.is_some() {
                    return Err(ApiError::Conflict(format!("release {v} already exists")));
                }
                version = Some(v);
            }
            "notes" => notes = small_text(field, "notes", MAX_NOTES_LEN).await?,
            other => {
                let platform = Platform::parse(other)
                    .map_err(|e| ApiError::Invalid(format!("multipart part {other:?}: {e}")))?;
                if payloads.iter().any(|p| p.source.platform == platform) {
                    return Err(ApiError::Invalid(format!("two payloads for {platform}")));
                }
                payloads.push(
                    receive_payload(field, platform, tmp_dir.clone(), &mut received, limit).await?,
                );
            }
        }
    }
    let version =
        version.ok_or_else(|| ApiError::Invalid("the form needs a version part".into()))?;
    if payloads.is_empty() {
        return Err(ApiError::Invalid(
            "the form needs at least one payload part named by its platform".into(),
        ));
    }
    let actor = actor(caller, address);
    let view = blocking(move || -> ApiResult<_> {
        let sources: Vec<PayloadSource> = payloads.iter().map(|p| p.source.clone()).collect();
        let release = state
            .depot
            .add_release(&actor, &version, &sources, &notes)?;
        for p in &payloads {
            let stored = release.payload(p.source.platform).map(|part| part.sha256);
            if stored != Some(p.sha256) {
                return Err(ApiError::internal(format!(
                    "payload {} of release {version} was stored with another digest than received",
                    p.source.platform
                )));
            }
        }
        drop(payloads);
        release_view(&state.app, &version)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    pub channel: String,
    /// 0-100; 100 when omitted.
    pub rollout_percent: Option<u8>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PublishView {
    pub release: ReleaseView,
    pub rebuilt: BuildSummary,
}

#[utoipa::path(post, path = "/v1/releases/{version}/publish", tag = "releases", params(("version" = String, Path)),
    request_body = PublishRequest,
    responses((status = 200, body = PublishView, description = "Built for every org and opened on the channel; repeating it completes an interrupted publish"),
        (status = 404, body = crate::server::error::ErrorBody), (status = 409, body = crate::server::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn publish(
    State(state): State<ApiState>,
    caller: Caller,
    address: ClientAddr,
    ApiPath(version): ApiPath<String>,
    ApiJson(request): ApiJson<PublishRequest>,
) -> ApiResult<Json<PublishView>> {
    require_admin(&caller)?;
    let version = version_of(&version)?;
    let channel = Channel::parse(&request.channel)?;
    let percent = request.rollout_percent.unwrap_or(100);
    let actor = actor(&caller, address);
    let view = blocking(move || -> ApiResult<_> {
        let (_, report) = state
            .depot
            .publish(&actor, &version, &channel, percent, &NoProgress)?;
        state.app.metrics.observe_build(report.elapsed);
        Ok(PublishView {
            release: release_view(&state.app, &version)?,
            rebuilt: BuildSummary::from(&report),
        })
    })
    .await?;
    Ok(Json(view))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutRequest {
    pub channel: String,
    pub percent: Option<u8>,
    pub paused: Option<bool>,
}

#[utoipa::path(put, path = "/v1/releases/{version}/rollout", tag = "releases", params(("version" = String, Path)),
    request_body = RolloutRequest,
    responses((status = 200, body = ReleaseView), (status = 404, body = crate::server::error::ErrorBody),
        (status = 422, body = crate::server::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn rollout(
    State(state): State<ApiState>,
    caller: Caller,
    address: ClientAddr,
    ApiPath(version): ApiPath<String>,
    ApiJson(request): ApiJson<RolloutRequest>,
) -> ApiResult<Json<ReleaseView>> {
    require_admin(&caller)?;
    let version = version_of(&version)?;
    let channel = Channel::parse(&request.channel)?;
    let actor = actor(&caller, address);
    let view = blocking(move || -> ApiResult<_> {
        state
            .depot
            .set_rollout(&actor, &version, &channel, request.percent, request.paused)?;
        release_view(&state.app, &version)
    })
    .await?;
    Ok(Json(view))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct YankRequest {
    #[serde(default)]
    pub reason: String,
}

#[utoipa::path(post, path = "/v1/releases/{version}/yank", tag = "releases", params(("version" = String, Path)),
    request_body = YankRequest,
    responses((status = 200, body = ReleaseView), (status = 404, body = crate::server::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn yank(
    State(state): State<ApiState>,
    caller: Caller,
    address: ClientAddr,
    ApiPath(version): ApiPath<String>,
    ApiJson(request): ApiJson<YankRequest>,
) -> ApiResult<Json<ReleaseView>> {
    require_admin(&caller)?;
    let version = version_of(&version)?;
    let actor = actor(&caller, address);
    let view = blocking(move || -> ApiResult<_> {
        state.depot.yank(&actor, &version, &request.reason)?;
        release_view(&state.app, &version)
    })
    .await?;
    Ok(Json(view))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelRequest {
    /// Devices below it get a mandatory update; null lifts it.
    pub min_version: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChannelView {
    pub channel: String,
    pub min_version: Option<String>,
    pub updated_at: String,
}

#[utoipa::path(put, path = "/v1/channels/{channel}", tag = "releases", params(("channel" = String, Path)),
    request_body = ChannelRequest,
    responses((status = 200, body = ChannelView), (status = 422, body = crate::server::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_channel(
    State(state): State<ApiState>,
    caller: Caller,
    address: ClientAddr,
    ApiPath(channel): ApiPath<String>,
    ApiJson(request): ApiJson<ChannelRequest>,
) -> ApiResult<Json<ChannelView>> {
    require_admin(&caller)?;
    let channel = Channel::parse(&channel)
        .map_err(|e| ApiError::NotFound(format!("no such channel: {e}")))?;
    let min_version = request
        .min_version
        .as_deref()
        .map(Version::parse)
        .transpose()?;
    let actor = actor(&caller, address);
    let settings = blocking(move || {
        state
            .depot
            .set_channel_min_version(&actor, &channel, min_version)
    })
    .await?;
    Ok(Json(ChannelView {
        channel: settings.channel.to_string(),
        min_version: settings.min_version.as_ref().map(ToString::to_string),
        updated_at: rfc3339(settings.updated_at),
    }))
}

#[utoipa::path(get, path = "/v1/channels", tag = "releases",
    responses((status = 200, body = [crate::service::ChannelSummary], description = "Channels in use: minimum version, published releases, orgs")),
    security(("bearer" = [])))]
pub async fn list_channels(
    State(state): State<ApiState>,
    caller: Caller,
) -> ApiResult<Json<Vec<crate::service::ChannelSummary>>> {
    require_admin(&caller)?;
    Ok(Json(blocking(move || state.depot.channels()).await?))
}
