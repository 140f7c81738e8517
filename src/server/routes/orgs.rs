//! `/v1/orgs`: org configuration, overlay files, registration keys and packages, for admins and
//! each org's partner.
//!
//! `PUT /v1/orgs/{org}` takes back exactly what `GET` gave: the fields it cannot change (code,
//! registration key, timestamps) may be sent back unchanged and are then ignored; a changed one
//! is refused, a changed `updated_at` as a conflict (the copy is stale). A partner may not
//! change `seats`. Overlay file names travel in one path segment; a name with a directory
//! (`custom/logo.png`) is sent with its slash encoded (`custom%2Flogo.png`) and still goes
//! through `EntryName`.

use super::{actor, blocking, BuildSummary};
use crate::domain::{EntryName, OrgCode};
use crate::org::{
    default_backup_selection, default_settings, BackupSelection, OrgConfig, OrgConfigInput,
};
use crate::server::auth::{require_admin, require_org_admin, Caller, ClientAddr};
use crate::server::error::{ApiError, ApiResult};
use crate::server::extract::{ApiJson, ApiPath};
use crate::server::ApiState;
use crate::service::views::{rfc3339, OrgView, PackageView};
use crate::service::ServiceError;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

fn org_code(code: &str) -> ApiResult<OrgCode> {
    OrgCode::parse(code).map_err(|e| ApiError::NotFound(format!("no such org: {e}")))
}

/// A new org: its code and configuration. Omitted backup selection and settings get the
/// defaults every new org starts with.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrg {
    pub code: String,
    pub name: String,
    pub contact_email: Option<String>,
    pub seats: Option<u32>,
    pub channel: Option<String>,
    pub pinned_version: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub backup: Option<BackupSelection>,
    pub settings: Option<BTreeMap<String, String>>,
    /// The org's client contact `{name, email, phone}`.
    #[serde(default)]
    pub contact: Option<crate::org::Contact>,
    /// The directory group of the people eligible for the service.
    #[serde(default)]
    pub users_group: Option<String>,
    #[serde(default)]
    pub partners_group: Option<String>,
    #[serde(default)]
    pub on_ineligible: Option<crate::org::OnIneligible>,
    #[serde(default)]
    pub stale_after_days: Option<u32>,
}

/// What `GET /v1/orgs/{org}` gave, with changes. Its `Debug` shows the registration key's first
/// group only.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgUpdate {
    /// Immutable: ignored when unchanged.
    pub code: Option<String>,
    /// Immutable (see `rotate-key`): ignored when unchanged.
    pub registration_key: Option<String>,
    /// Immutable: ignored when unchanged.
    pub created_at: Option<String>,
    /// Ignored when unchanged; a different value means the copy is stale (409).
    pub updated_at: Option<String>,
    pub name: String,
    pub contact_email: Option<String>,
    /// Admins only; omitted keeps the current value.
    pub seats: Option<u32>,
    pub channel: Option<String>,
    pub pinned_version: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub backup: BackupSelection,
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    /// The org's client contact `{name, email, phone}`.
    #[serde(default)]
    pub contact: Option<crate::org::Contact>,
    /// The directory group of the people eligible for the service.
    #[serde(default)]
    pub users_group: Option<String>,
    #[serde(default)]
    pub partners_group: Option<String>,
    #[serde(default)]
    pub on_ineligible: Option<crate::org::OnIneligible>,
    #[serde(default)]
    pub stale_after_days: Option<u32>,
}

impl std::fmt::Debug for OrgUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrgUpdate")
            .field("code", &self.code)
            .field(
                "registration_key",
                &self
                    .registration_key
                    .as_deref()
                    .map(crate::domain::RegistrationKey::redact),
            )
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .field("name", &self.name)
            .field("contact_email", &self.contact_email)
            .field("seats", &self.seats)
            .field("channel", &self.channel)
            .field("pinned_version", &self.pinned_version)
            .field("backup", &self.backup)
            .field("settings", &self.settings)
            .field("contact", &self.contact)
            .field("users_group", &self.users_group)
            .field("partners_group", &self.partners_group)
            .field("on_ineligible", &self.on_ineligible)
            .field("stale_after_days", &self.stale_after_days)
            .finish()
    }
}

/// An overlay file as stored.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OverlayView {
    pub name: String,
    pub size: usize,
    pub rebuilt: BuildSummary,
}

#[utoipa::path(get, path = "/v1/orgs", tag = "orgs",
    responses((status = 200, body = Vec<OrgView>, description = "All orgs for an admin; a partner's own"),
        (status = 401, body = crate::server::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_orgs(
    State(state): State<ApiState>,
    caller: Caller,
) -> ApiResult<Json<Vec<OrgView>>> {
    let own = match &caller.principal {
        crate::server::auth::Principal::Admin => None,
        crate::server::auth::Principal::Partner(org) => Some(org.clone()),
        crate::server::auth::Principal::Device { .. } => {
            return Err(ApiError::Forbidden(
                "a device token cannot list orgs".into(),
            ))
        }
    };
    let orgs = blocking(move || state.depot.meta().list_orgs()).await?;
    Ok(Json(
        orgs.iter()
            .filter(|o| own.as_ref().is_none_or(|own| &o.code == own))
            .map(OrgView::from)
            .collect(),
    ))
}

#[utoipa::path(post, path = "/v1/orgs", tag = "orgs", request_body = NewOrg,
    responses((status = 201, body = OrgView), (status = 403, body = crate::server::error::ErrorBody),
        (status = 409, body = crate::server::error::ErrorBody), (status = 422, body = crate::server::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_org(
    State(state): State<ApiState>,
    caller: Caller,
    address: ClientAddr,
    ApiJson(new): ApiJson<NewOrg>,
) -> ApiResult<(StatusCode, Json<OrgView>)> {
    require_admin(&caller)?;
    let code = OrgCode::parse(&new.code)?;
    let config = OrgConfig::try_from(OrgConfigInput {
        name: new.name,
        contact_email: new.contact_email,
        seats: new.seats,
        channel: new.channel,
        pinned_version: new.pinned_version,
        backup: new.backup.unwrap_or_else(default_backup_selection),
        settings: new.settings.unwrap_or_else(default_settings),
        contact: new.contact,
        users_group: new.users_group,
        partners_group: new.partners_group,
        on_ineligible: new.on_ineligible,
        stale_after_days: new.stale_after_days,
    })
    .map_err(ServiceError::from)?;
    let actor = actor(&caller, address);
    let app = state.app.clone();
    let (org, report) = blocking(move || state.depot.add_org(&actor, &code, config)).await?;
    app.metrics.observe_build(report.elapsed);
    Ok((StatusCode::CREATED, Json(OrgView::from(&org))))
}

#[utoipa::path(get, path = "/v1/orgs/{org}", tag = "orgs", params(("org" = String, Path)),
    responses((status = 200, body = OrgView), (status = 404, body = crate::server::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_org(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(code): ApiPath<String>,
) -> ApiResult<Json<OrgView>> {
    let code = org_code(&code)?;
    require_org_admin(&caller, &code)?;
    let org = blocking(move || state.depot.org(&code)).await?;
    Ok(Json(OrgView::from(&org)))
}

#[utoipa::path(put, path = "/v1/orgs/{org}", tag = "orgs", params(("org" = String, Path)), request_body = OrgUpdate,
    responses((status = 200, body = OrgView), (status = 403, body = crate::server::error::ErrorBody),
        (status = 404, body = crate::server::error::ErrorBody), (status = 409, body = crate::server::error::ErrorBody),
        (status = 422, body = crate::server::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_org(
    State(state): State<ApiState>,
    caller: Caller,
    address: ClientAddr,
    ApiPath(code): ApiPath<String>,
    ApiJson(update): ApiJson<OrgUpdate>,
) -> ApiResult<Json<OrgView>> {
    let code = org_code(&code)?;
    require_org_admin(&caller, &code)?;
    let actor = actor(&caller, address);
    let is_admin = caller.is_admin();
    let app = state.app.clone();
    let (org, report) = blocking(move || -> ApiResult<_> {
        let current = state.depot.org(&code)?;
        let refuse = |field: &str| {
            ApiError::Invalid(format!(
                "{field} cannot be changed through PUT; send back the value GET gave"
            ))
        };
        if update
            .code
            .as_deref()
            .is_some_and(|c| c != current.code.as_str())
        {
            return Err(refuse("code"));
        }
        if update
            .registration_key
            .as_deref()
            .is_some_and(|k| k != current.registration_key.as_str())
        {
            return Err(ApiError::Invalid(
                "registration_key cannot be set; POST /v1/orgs/{org}/rotate-key makes a new one"
                    .into(),
            ));
        }
        if update
            .created_at
            .as_deref()
            .is_some_and(|t| t != rfc3339(current.created_at))
        {
            return Err(refuse("created_at"));
        }
        if update
            .updated_at
            .as_deref()
            .is_some_and(|t| t != rfc3339(current.updated_at))
        {
            return Err(ApiError::Conflict(format!(
                "org {code} changed since this copy was read (updated_at is now {}); GET it again",
                rfc3339(current.updated_at)
            )));
        }
        let seats = update.seats.unwrap_or(current.config.seats);
        if !is_admin && seats != current.config.seats {
            return Err(ApiError::Forbidden("only an admin can change seats".into()));
        }
        let config = OrgConfig::try_from(OrgConfigInput {
            name: update.name,
            contact_email: update.contact_email,
            seats: Some(seats),
            channel: update.channel,
            pinned_version: update.pinned_version,
            backup: update.backup,
            settings: update.settings,
            contact: update.contact,
            users_group: update.users_group,
            partners_group: update.partners_group,
            on_ineligible: update.on_ineligible,
            stale_after_days: update.stale_after_days,
        })
        .map_err(ServiceError::from)?;
        Ok(state.depot.update_org(&actor, &code, config)?)
    })
    .await?;
    app.metrics.observe_build(report.elapsed);
    Ok(Json(OrgView::from(&org)))
}

#[utoipa::path(delete, path = "/v1/orgs/{org}", tag = "orgs", params(("org" = String, Path)),
    responses((status = 204, description = "Removed with its overlays and packages"),
        (status = 403, body = crate::server::error::ErrorBody), (status = 404, body = crate::server::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_org(
    State(state): State<ApiState>,
    caller: Caller,
    address: ClientAddr,
    ApiPath(code): ApiPath<String>,
) -> ApiResult<StatusCode> {
    require_admin(&caller)?;
    let code = org_code(&code)?;
    let actor = actor(&caller, address);
    blocking(move || state.depot.remove_org(&actor, &code)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/orgs/{org}/rotate-key", tag = "orgs", params(("org" = String, Path)),
    responses((status = 200, body = OrgView, description = "The org with its new registration key"),
        (status = 404, body = crate::server::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn rotate_key(
    State(state): State<ApiState>,
    caller: Caller,
    address: ClientAddr,
    ApiPath(code): ApiPath<String>,
) -> ApiResult<Json<OrgView>> {
    let code = org_code(&code)?;
    require_org_admin(&caller, &code)?;
    let actor = actor(&caller, address);
    let app = state.app.clone();
    let (org, report) = blocking(move || state.depot.rotate_key(&actor, &code)).await?;
    app.metrics.observe_build(report.elapsed);
    Ok(Json(OrgView::from(&org)))
}

fn overlay_name(name: &str) -> ApiResult<EntryName> {
    Ok(EntryName::parse(name)?)
}

#[utoipa::path(put, path = "/v1/orgs/{org}/files/{name}", tag = "orgs",
    params(("org" = String, Path), ("name" = String, Path, description = "File name in the package; encode '/' as %2F")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, body = OverlayView), (status = 413, body = crate::server::error::ErrorBody),
        (status = 422, body = crate::server::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_file(
    State(state): State<ApiState>,
    caller: Caller,
    address: ClientAddr,
    ApiPath((code, name)): ApiPath<(String, String)>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Json<OverlayView>> {
    let code = org_code(&code)?;
    require_org_admin(&caller, &code)?;
    let name = overlay_name(&name)?;
    let bytes = body?;
    let actor = actor(&caller, address);
    let app = state.app.clone();
    let size = bytes.len();
    let view_name = name.to_string();
    let report = blocking(move || state.depot.put_overlay(&actor, &code, &name, &bytes)).await?;
    app.metrics.observe_build(report.elapsed);
    Ok(Json(OverlayView {
        name: view_name,
        size,
        rebuilt: BuildSummary::from(&report),
    }))
}

#[utoipa::path(delete, path = "/v1/orgs/{org}/files/{name}", tag = "orgs",
    params(("org" = String, Path), ("name" = String, Path)),
    responses((status = 204, description = "Removed; the org's packages were rebuilt"),
        (status = 404, body = crate::server::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_file(
    State(state): State<ApiState>,
    caller: Caller,
    address: ClientAddr,
    ApiPath((code, name)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    let code = org_code(&code)?;
    require_org_admin(&caller, &code)?;
    let name = overlay_name(&name)?;
    let actor = actor(&caller, address);
    let app = state.app.clone();
    let report = blocking(move || state.depot.delete_overlay(&actor, &code, &name)).await?;
    app.metrics.observe_build(report.elapsed);
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/orgs/{org}/packages", tag = "orgs", params(("org" = String, Path)),
    responses((status = 200, body = Vec<PackageView>), (status = 404, body = crate::server::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_packages(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(code): ApiPath<String>,
) -> ApiResult<Json<Vec<PackageView>>> {
    let code = org_code(&code)?;
    require_org_admin(&caller, &code)?;
    let packages = blocking(move || -> ApiResult<_> {
        state.depot.org(&code)?;
        Ok(state.depot.meta().list_packages(Some(&code), None)?)
    })
    .await?;
    Ok(Json(packages.iter().map(PackageView::from).collect()))
}
