//! `/admin`, Desktop Engineering's page: releases (upload, publish, yank), rollouts with their
//! progress, version adoption, orgs with seat use, and the audit log with filters.

use super::pages::{blocking, form};
use super::view::{adoption_chart, human_size};
use super::{require_admin, small_text, PortalState, Result, SignedIn};
use crate::domain::{Channel, EntryName, Platform, Version};
use crate::server::auth::ClientAddr;
use crate::server::error::ApiError;
use crate::service::fleet::{RolloutView, UsageView};
use crate::service::views::{AuditView, ReleaseView};
use crate::service::{NoProgress, PayloadSource, MAX_NOTES_LEN};
use crate::store::AuditFilter;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tokio::io::AsyncWriteExt;

/// Audit events the admin page shows at most.
const AUDIT_EVENTS: u32 = 200;

/// The audit filters, as the form sends them (empty fields mean no filter).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct AuditFilters {
    #[serde(default)]
    org: String,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    /// `YYYY-MM-DD` (the date input), RFC 3339, or unix seconds.
    #[serde(default)]
    since: String,
}

impl AuditFilters {
    fn parse(&self) -> std::result::Result<AuditFilter, ApiError> {
        let text = |field: &str, v: &str| -> std::result::Result<Option<String>, ApiError> {
            let v = v.trim();
            if v.len() > 200 || v.chars().any(char::is_control) {
                return Err(ApiError::Invalid(format!(
                    "{field}: at most 200 characters, no control characters"
                )));
            }
            Ok((!v.is_empty()).then(|| v.to_string()))
        };
        let org = match self.org.trim() {
            "" => None,
            code => Some(crate::domain::OrgCode::parse(code)?),
        };
        Ok(AuditFilter {
            org,
            actor: text("actor", &self.actor)?,
            action: text("action", &self.action)?,
            since: match self.since.trim() {
                "" => None,
                s => Some(parse_since(s)?),
            },
            limit: Some(AUDIT_EVENTS),
        })
    }
}

fn parse_since(s: &str) -> std::result::Result<i64, ApiError> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(unix) = s.parse::<i64>() {
        return Ok(unix);
    }
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t.unix_timestamp());
    }
    let day = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, day)
        .map(|d| d.midnight().assume_utc().unix_timestamp())
        .map_err(|_| {
            ApiError::Invalid(format!(
                "since {s:?}: expected a date (2024-05-01), RFC 3339 or unix seconds"
            ))
        })
}

#[derive(Serialize)]
struct OrgRow {
    code: String,
    name: String,
    channel: String,
    usage: UsageView,
}

#[derive(Serialize)]
struct ReleaseRow {
    #[serde(flatten)]
    release: ReleaseView,
    /// Platform and size in words, per payload.
    payloads: Vec<(String, String)>,
}

#[derive(Serialize)]
struct AdminPage {
    releases: Vec<ReleaseRow>,
    rollouts: Vec<RolloutView>,
    /// Versions yanked: their rollouts are over, whatever their percent.
    yanked: Vec<String>,
    channels: Vec<crate::service::ChannelSummary>,
    chart: super::view::Chart,
    orgs: Vec<OrgRow>,
    audit: Vec<AuditView>,
    platforms: Vec<&'static str>,
}

/// `/admin`.
pub async fn admin_page(
    State(state): State<PortalState>,
    headers: HeaderMap,
    filters: std::result::Result<Query<AuditFilters>, axum::extract::rejection::QueryRejection>,
) -> Result<Html<String>> {
    let me = state.require_signed_in(&headers).await?;
    require_admin(me.caller())?;
    let filters = filters
        .map(|Query(f)| f)
        .map_err(|e| ApiError::Invalid(format!("the filters: {}", e.body_text())))?;
    let filter = filters.parse()?;
    let depot = state.depot.clone();
    let page = blocking(move || -> std::result::Result<_, ApiError> {
        let meta = depot.meta();
        let rollouts = meta.list_rollouts()?;
        let mut releases = meta.list_releases()?;
        releases.sort_by(|a, b| b.version.cmp(&a.version));
        let mut adoption: BTreeMap<String, u64> = BTreeMap::new();
        let mut orgs = Vec::new();
        for org in meta.list_orgs()? {
            let usage = depot.usage(&org.code)?;
            for (version, n) in &usage.by_version {
                *adoption.entry(version.clone()).or_default() += n;
            }
            orgs.push(OrgRow {
                code: org.code.to_string(),
                name: org.config.name.clone(),
                channel: org.config.channel.to_string(),
                usage,
            });
        }
        Ok(AdminPage {
            releases: releases
                .iter()
                .map(|r| ReleaseRow {
                    release: ReleaseView::new(r, &rollouts),
                    payloads: r
                        .payloads
                        .iter()
                        .map(|p| (p.platform.to_string(), human_size(p.part.size)))
                        .collect(),
                })
                .collect(),
            rollouts: depot.rollouts()?,
            yanked: releases
                .iter()
                .filter(|r| r.yanked.is_some())
                .map(|r| r.version.to_string())
                .collect(),
            channels: depot.channels()?,
            chart: adoption_chart(adoption),
            orgs,
            audit: meta
                .query_audit(&filter)?
                .iter()
                .map(AuditView::from)
                .collect(),
            platforms: Platform::ALL.iter().map(|p| p.as_str()).collect(),
        })
    })
    .await?;
    let mut context = tera::Context::new();
    context.insert("me", &super::Me::from(&me));
    context.insert("page", &page);
    context.insert("filters", &filters);
    context.insert("flash", &state.sessions.take_flash(&me.id));
    state.render("admin.html", &context)
}

fn version_of(text: &str) -> Result<Version> {
    Version::parse(text).map_err(|_| ApiError::NotFound(format!("release {text}")).into())
}

/// The signed-in admin, with the form's anti-forgery token checked.
async fn admin_form(state: &PortalState, headers: &HeaderMap, csrf: &str) -> Result<SignedIn> {
    let me = state.require_signed_in(headers).await?;
    require_admin(me.caller())?;
    me.check_csrf(csrf)?;
    Ok(me)
}

fn done(state: &PortalState, me: &SignedIn, message: String) -> Response {
    state.sessions.set_flash(&me.id, message);
    Redirect::to("/admin").into_response()
}

#[derive(Deserialize)]
pub struct PublishForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    percent: Option<u8>,
}

/// `POST /admin/releases/{version}/publish`.
pub async fn publish(
    State(state): State<PortalState>,
    ClientAddr(address): ClientAddr,
    headers: HeaderMap,
    Path(version): Path<String>,
    body: std::result::Result<Form<PublishForm>, FormRejection>,
) -> Result<Response> {
    let f = form(body)?;
    let me = admin_form(&state, &headers, &f.csrf).await?;
    let version = version_of(&version)?;
    let channel = Channel::parse(f.channel.trim())?;
    let percent = f.percent.unwrap_or(100);
    let depot = state.depot.clone();
    let actor = me.actor(address);
    let (v, c) = (version.clone(), channel.clone());
    let (_, report) = blocking(move || depot.publish(&actor, &v, &c, percent, &NoProgress)).await?;
    state.app.metrics.observe_build(report.elapsed);
    Ok(done(
        &state,
        &me,
        format!(
            "Published {version} on {channel} at {percent}%: {} packages built, {} unchanged.{}",
            report.built.len(),
            report.unchanged,
            super::view::failures(&report)
        ),
    ))
}

#[derive(Deserialize)]
pub struct YankForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

/// `POST /admin/releases/{version}/yank`.
pub async fn yank(
    State(state): State<PortalState>,
    ClientAddr(address): ClientAddr,
    headers: HeaderMap,
    Path(version): Path<String>,
    body: std::result::Result<Form<YankForm>, FormRejection>,
) -> Result<Response> {
    let f = form(body)?;
    let me = admin_form(&state, &headers, &f.csrf).await?;
    let version = version_of(&version)?;
    let depot = state.depot.clone();
    let actor = me.actor(address);
    let v = version.clone();
    blocking(move || depot.yank(&actor, &v, &f.reason)).await?;
    Ok(done(&state, &me, format!("Yanked {version}.")))
}

#[derive(Deserialize)]
pub struct RolloutForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    percent: Option<u8>,
    /// `pause`, `resume`, or empty to change the percent only.
    #[serde(default)]
    action: String,
}

/// `POST /admin/rollouts/{version}/{channel}`: widen, narrow, pause or resume.
pub async fn rollout(
    State(state): State<PortalState>,
    ClientAddr(address): ClientAddr,
    headers: HeaderMap,
    Path((version, channel)): Path<(String, String)>,
    body: std::result::Result<Form<RolloutForm>, FormRejection>,
) -> Result<Response> {
    let f = form(body)?;
    let me = admin_form(&state, &headers, &f.csrf).await?;
    let version = version_of(&version)?;
    let channel = Channel::parse(&channel)?;
    let paused = match f.action.as_str() {
        "pause" => Some(true),
        "resume" => Some(false),
        "" | "set" => None,
        other => return Err(ApiError::Invalid(format!("unknown rollout action {other:?}")).into()),
    };
    let depot = state.depot.clone();
    let actor = me.actor(address);
    let (v, c) = (version.clone(), channel.clone());
    let r = blocking(move || depot.set_rollout(&actor, &v, &c, f.percent, paused)).await?;
    Ok(done(
        &state,
        &me,
        format!(
            "Rollout of {version} on {channel}: {}%{}.",
            r.percent,
            if r.paused { ", paused" } else { "" }
        ),
    ))
}

/// A payload received into a temp file, deleted when dropped (after the service stored it).
struct Received {
    source: PayloadSource,
    _file: tempfile::TempPath,
}

/// `POST /admin/releases` (multipart): version, notes and one file per platform, read into temp
/// files and handed to `Depot::add_release`. The anti-forgery token must come first, before
/// any file is received.
pub async fn upload(
    State(state): State<PortalState>,
    ClientAddr(address): ClientAddr,
    headers: HeaderMap,
    multipart: std::result::Result<Multipart, MultipartRejection>,
) -> Result<Response> {
    let me = state.require_signed_in(&headers).await?;
    require_admin(me.caller())?;
    let mut multipart = multipart.map_err(ApiError::from)?;
    me.check_csrf_first(&mut multipart).await?;
    let tmp_dir = state.depot.data_dir().join("tmp");
    let limit = state.app.options.max_upload_bytes;
    let mut received = 0u64;
    let mut version = None;
    let mut notes = String::new();
    let mut payloads: Vec<Received> = Vec::new();
    while let Some(mut field) = multipart.next_field().await.map_err(ApiError::from)? {
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "version" => {
                version = Some(Version::parse(
                    small_text(field, "version", 64).await?.trim(),
                )?)
            }
            "notes" => notes = small_text(field, "notes", MAX_NOTES_LEN).await?,
            other => {
                let platform = Platform::parse(other)
                    .map_err(|e| ApiError::Invalid(format!("form field {other:?}: {e}")))?;
                // A file input left empty still sends a part, with no file name.
                let file_name = match field.file_name() {
                    None | Some("") => continue,
                    Some(n) => EntryName::parse(n)?,
                };
                if file_name.as_str().contains('/') {
                    return Err(ApiError::Invalid(format!(
                        "payload name {file_name} must not contain '/'"
                    ))
                    .into());
                }
                let dir = tmp_dir.clone();
                let temp = blocking(move || {
                    std::fs::create_dir_all(&dir)
                        .and_then(|()| tempfile::Builder::new().prefix("upload-").tempfile_in(&dir))
                        .map_err(ApiError::internal)
                })
                .await?;
                let (file, path) = temp.into_parts();
                let mut out =
                    tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::from_std(file));
                while let Some(chunk) = field.chunk().await.map_err(ApiError::from)? {
                    received += chunk.len() as u64;
                    if received > limit {
                        return Err(ApiError::TooLarge(format!(
                            "the upload is larger than {limit} bytes"
                        ))
                        .into());
                    }
                    out.write_all(&chunk).await.map_err(ApiError::internal)?;
                }
                out.flush().await.map_err(ApiError::internal)?;
                payloads.push(Received {
                    source: PayloadSource {
                        platform,
                        file_name,
                        path: path.to_path_buf(),
                    },
                    _file: path,
                });
            }
        }
    }
    let version = version.ok_or_else(|| ApiError::Invalid("the form needs a version".into()))?;
    let depot = state.depot.clone();
    let actor = me.actor(address);
    let v = version.clone();
    let release = blocking(move || {
        let sources: Vec<PayloadSource> = payloads.iter().map(|p| p.source.clone()).collect();
        let release = depot.add_release(&actor, &v, &sources, &notes);
        drop(payloads);
        release
    })
    .await?;
    let platforms: Vec<String> = release
        .payloads
        .iter()
        .map(|p| p.platform.to_string())
        .collect();
    Ok(done(
        &state,
        &me,
        format!(
            "Release {version} added ({}). Publish it on a channel to build the packages.",
            platforms.join(", ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_dates_timestamps_and_seconds() {
        assert_eq!(parse_since("1700000000").unwrap(), 1_700_000_000);
        assert_eq!(parse_since("2024-05-01").unwrap(), 1_714_521_600);
        assert_eq!(parse_since("2024-05-01T00:00:00Z").unwrap(), 1_714_521_600);
        assert!(parse_since("yesterday").is_err());
    }

    #[test]
    fn empty_filters_filter_nothing() {
        let f = AuditFilters::default().parse().unwrap();
        assert!(f.org.is_none() && f.actor.is_none() && f.since.is_none());
        let bad = AuditFilters {
            org: "Not An Org".into(),
            ..Default::default()
        };
        assert!(bad.parse().is_err());
    }
}
