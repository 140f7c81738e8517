//! `GET /v1/audit`: the audit log, newest first, filtered by org, actor, action and time.
//! Admins see every event; a partner only its own org's (asking for another org is 404, as for
//! every other resource of another org).

use super::blocking;
use crate::domain::OrgCode;
use crate::server::auth::{require_org_admin, Caller, Principal};
use crate::server::error::{ApiError, ApiResult};
use crate::server::extract::ApiQuery;
use crate::server::ApiState;
use crate::service::views::AuditView;
use crate::store::AuditFilter;
use axum::extract::State;
use axum::Json;
use serde::Deserialize;

/// Most events one answer holds; the store may cap lower.
const MAX_LIMIT: u32 = 1000;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only this org's events.
    pub org: Option<String>,
    /// Only this actor's (a token name, `cli:<user>`, `device:<id>`).
    pub actor: Option<String>,
    /// Only this action, e.g. `package.download`.
    pub action: Option<String>,
    /// Only events at or after this time: RFC 3339 or unix seconds.
    pub since: Option<String>,
    /// At most this many events (default and maximum 1000).
    pub limit: Option<u32>,
}

fn parse_since(since: &str) -> ApiResult<i64> {
    if let Ok(unix) = since.parse::<i64>() {
        return Ok(unix);
    }
    time::OffsetDateTime::parse(since, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| {
            ApiError::Invalid(format!(
                "since {since:?}: expected RFC 3339 (2024-05-01T00:00:00Z) or unix seconds"
            ))
        })
}

fn short_text(field: &str, value: Option<String>) -> ApiResult<Option<String>> {
    match value {
        Some(v) if v.len() > 200 || v.chars().any(char::is_control) => Err(ApiError::Invalid(
            format!("{field}: at most 200 characters, no control characters"),
        )),
        other => Ok(other),
    }
}

#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = Vec<AuditView>, description = "Newest first"),
        (status = 404, body = crate::server::error::ErrorBody), (status = 422, body = crate::server::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn query_audit(
    State(state): State<ApiState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Vec<AuditView>>> {
    let org = query
        .org
        .as_deref()
        .map(|o| OrgCode::parse(o).map_err(|e| ApiError::NotFound(format!("no such org: {e}"))))
        .transpose()?;
    let org = match (&caller.principal, org) {
        (Principal::Admin, org) => org,
        (Principal::Partner(own), None) => Some(own.clone()),
        (_, Some(org)) => {
            require_org_admin(&caller, &org)?;
            Some(org)
        }
        (Principal::Device { org, .. }, None) => {
            require_org_admin(&caller, org)?;
            None
        }
    };
    let filter = AuditFilter {
        org,
        actor: short_text("actor", query.actor)?,
        action: short_text("action", query.action)?,
        since: query.since.as_deref().map(parse_since).transpose()?,
        limit: Some(query.limit.unwrap_or(MAX_LIMIT).clamp(1, MAX_LIMIT)),
    };
    let events = blocking(move || state.depot.audit_events(&filter)).await?;
    Ok(Json(events.iter().map(AuditView::from).collect()))
}
