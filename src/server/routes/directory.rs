//! `GET /v1/orgs/{org}/users`: the org's eligible users as the last directory sync stored them.

use super::blocking;
use crate::domain::OrgCode;
use crate::server::auth::{require_org_access, require_org_admin, Caller};
use crate::server::error::{ApiError, ApiResult, ErrorBody};
use crate::server::extract::ApiPath;
use crate::server::ApiState;
use crate::service::UserView;
use axum::extract::State;
use axum::Json;

#[utoipa::path(get, path = "/v1/orgs/{org}/users", tag = "orgs", params(("org" = String, Path)),
    responses((status = 200, body = Vec<UserView>), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_users(
    State(state): State<ApiState>,
    caller: Caller,
    ApiPath(org): ApiPath<String>,
) -> ApiResult<Json<Vec<UserView>>> {
    let org = OrgCode::parse(&org).map_err(|_| ApiError::not_found(format!("org {org}")))?;
    require_org_access(&caller, &org)?;
    require_org_admin(&caller, &org)?;
    Ok(Json(
        blocking(move || state.depot.directory_users(&org)).await?,
    ))
}
