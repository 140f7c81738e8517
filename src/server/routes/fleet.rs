//! The device endpoints (enroll, update check, reports) and the fleet views for partners and
//! admins (devices, deactivation, seat use, rollout progress). The decisions live in the
//! service; handlers check access, parse input and shape output.

use super::{actor, blocking};
use crate::domain::{OrgCode, Platform, Version};
use crate::server::auth::{
    require_admin, require_org_access, require_org_admin, Caller, ClientAddr, ClientIp, Principal,
};
use crate::server::error::{ApiError, ApiResult, ErrorBody};
use crate::server::extract::{ApiJson, ApiPath, ApiQuery};
use crate::server::ApiState;
use crate::service::fleet::{
    DeviceFilter, DeviceView, EncodedAnswer, EnrollRequest, Enrolled, RolloutView, UpdateAnswer,
    UsageView,
};
use crate::store::EventKind;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCheck {
    pub platform: String,
    /// `null` before the first install.
    pub current_version: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceReport {
    pub version: Option<String>,
    /// `downloaded`, `installed` or `failed`.
    pub kind: String,
    #[serde(default)]
    pub message: String,
}

/// The id of the device making the request; other callers are refused.
fn device_id(caller: &Caller) -> ApiResult<String> {
    match &caller.principal {
        Principal::Device { device_id, .. } => Ok(device_id.clone()),
        _ => Err(ApiError::Forbidden(
            "this endpoint is for enrolled devices (a device token)".into(),
        )),
    }
}

#[utoipa::path(post, path = "/v1/devices/enroll", tag = "devices", request_body = EnrollRequest,
    responses((status = 201, body = Enrolled), (status = 403, body = ErrorBody, description = "Unknown registration key"),
        (status = 409, body = ErrorBody, description = "seats_exhausted, or enrollment_cap_reached for the default org"),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn enroll(
    State(state): State<ApiState>,
    ClientAddr(address): ClientAddr,
    ApiJson(request): ApiJson<EnrollRequest>,
) -> ApiResult<(StatusCode, Json<Enrolled>)> {
    let ip = address.parse().ok();
    if ip.is_some_and(|ip| state.app.enroll_failures.is_blocked(ip)) {
        return Err(ApiError::RateLimited(
            "too many wrong registration keys from this address; try again later".into(),
        ));
    }
    let depot = state.depot.clone();
    let addr = address.clone();
    match blocking(move || depot.enroll(&request, &addr)).await {
        Ok(enrolled) => Ok((StatusCode::CREATED, Json(enrolled))),
        Err(ApiError::Forbidden(message)) => {
            if let Some(ip) = ip {
                state.app.enroll_failures.record_failure(ip);
            }
            Err(ApiError::Forbidden(message))
        }
        Err(e) => Err(e),
    }
}

#[utoipa::path(post, path = "/v1/update-check", tag = "devices", request_body = UpdateCheck,
    responses((status = 200, body = UpdateAnswer), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update_check(
    State(state): State<ApiState>,
    caller: Caller,
    ClientIp(address): ClientIp,
    ApiJson(check): ApiJson<UpdateCheck>,
) -> ApiResult<Response> {
    answer_update_check(state, &caller, address, check).await
}

/// The update check behind the route and behind the server's own path for it
/// (`crate::server::hot_path`): both answer exactly alike.
pub(crate) async fn answer_update_check(
    state: ApiState,
    caller: &Caller,
    address: Option<std::net::IpAddr>,
    check: UpdateCheck,
) -> ApiResult<Response> {
    let id = device_id(caller)?;
    let (platform, current) = parse_check(&check)?;
    // Answered from memory on the runtime when it can be; the store only when it must.
    let answer = match state
        .depot
        .update_check_in_memory(&id, platform, current.clone(), address)
    {
        Some(answer) => answer?,
        None => blocking(move || state.depot.update_check(&id, platform, current, address)).await?,
    };
    Ok(answer_json(&answer))
}

/// The platform and version an update check names; 422 when either is not one.
pub(crate) fn parse_check(check: &UpdateCheck) -> ApiResult<(Platform, Option<Version>)> {
    let platform = Platform::parse(&check.platform)?;
    let current = check
        .current_version
        .as_deref()
        .map(Version::parse)
        .transpose()?;
    Ok((platform, current))
}

/// The answer as JSON: bytes encoded when the answer was first made, shared by every request
/// that gets the same answer.
pub(crate) fn answer_json(answer: &EncodedAnswer) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        answer.json.clone(),
    )
        .into_response()
}

#[utoipa::path(post, path = "/v1/devices/events", tag = "devices", request_body = DeviceReport,
    responses((status = 204, description = "Recorded"), (status = 401, body = ErrorBody),
        (status = 422, body = ErrorBody, description = "Bad input, or not_offered: a release the device was never offered")),
    security(("bearer" = [])))]
pub async fn device_event(
    State(state): State<ApiState>,
    caller: Caller,
    ClientAddr(address): ClientAddr,
    ApiJson(report): ApiJson<DeviceReport>,
) -> ApiResult<StatusCode> {
    let id = device_id(&caller)?;
    let kind = EventKind::parse(&report.kind)
        .ok_or_else(|| ApiError::Invalid("kind must be downloaded, installed or failed".into()))?;
    let version = report.version.as_deref().map(Version::parse).transpose()?;
    blocking(move || {
        let device = state.depot.device_by_id(&id)?;
        state
            .depot
            .device_event(&device, version, kind, &report.message, &address)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/orgs/{org}/devices", tag = "devices",
    params(("org" = String, Path), DeviceFilter),
    responses((status = 200, body = Vec<DeviceView>), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_devices(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(org): ApiPath<String>,
    ApiQuery(filter): ApiQuery<DeviceFilter>,
) -> ApiResult<Json<Vec<DeviceView>>> {
    let org = OrgCode::parse(&org).map_err(|_| ApiError::not_found(format!("org {org}")))?;
    require_org_admin(&caller, &org)?;
    Ok(Json(
        blocking(move || state.depot.devices(&org, &filter)).await?,
    ))
}

#[utoipa::path(delete, path = "/v1/orgs/{org}/devices/{id}", tag = "devices",
    params(("org" = String, Path), ("id" = String, Path)),
    responses((status = 204, description = "Deactivated"), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn deactivate_device(
    State(state): State<ApiState>,
    caller: Caller,
    address: ClientAddr,
    ApiPath((org, id)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    let org = OrgCode::parse(&org).map_err(|_| ApiError::not_found(format!("org {org}")))?;
    require_org_admin(&caller, &org)?;
    if id.len() > 64 {
        let shown: String = id.chars().take(16).collect();
        return Err(ApiError::not_found(format!("device {shown}…")));
    }
    let actor = actor(&caller, address);
    blocking(move || state.depot.deactivate_device(&actor, &org, &id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/orgs/{org}/usage", tag = "devices", params(("org" = String, Path)),
    responses((status = 200, body = UsageView), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn usage(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(org): ApiPath<String>,
) -> ApiResult<Json<UsageView>> {
    let org = OrgCode::parse(&org).map_err(|_| ApiError::not_found(format!("org {org}")))?;
    require_org_access(&caller, &org)?;
    require_org_admin(&caller, &org)?;
    Ok(Json(blocking(move || state.depot.usage(&org)).await?))
}

#[utoipa::path(get, path = "/v1/rollouts", tag = "releases",
    responses((status = 200, body = Vec<RolloutView>), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn rollouts(
    State(state): State<ApiState>,
    caller: Caller,
) -> ApiResult<Json<Vec<RolloutView>>> {
    require_admin(&caller)?;
    Ok(Json(blocking(move || state.depot.rollouts()).await?))
}
