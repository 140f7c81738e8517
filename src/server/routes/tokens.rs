//! `/v1/tokens`: API tokens, for admins. A new token's secret is in the creation answer only;
//! the store keeps its hash. Creating or revoking one clears the server's token cache at once.

use super::{actor, blocking};
use crate::domain::OrgCode;
use crate::server::auth::{require_admin, Caller, ClientAddr};
use crate::server::error::{ApiError, ApiResult};
use crate::server::extract::{ApiJson, ApiPath};
use crate::server::ApiState;
use crate::service::views::TokenView;
use crate::store::Role;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTokenRequest {
    /// `admin` or `partner`.
    #[schema(value_type = String)]
    pub role: Role,
    /// The org of a partner token.
    pub org: Option<String>,
    pub name: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    /// The secret: shown this once, never again.
    pub token: String,
    #[serde(flatten)]
    pub record: TokenView,
}

/// The secret is for the response body only, never for debug output.
impl std::fmt::Debug for CreatedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedToken")
            .field("token", &"<redacted>")
            .field("record", &self.record)
            .finish()
    }
}

#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", request_body = NewTokenRequest,
    responses((status = 201, body = CreatedToken), (status = 403, body = crate::server::error::ErrorBody),
        (status = 422, body = crate::server::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_token(
    State(state): State<ApiState>,
    caller: Caller,
    address: ClientAddr,
    ApiJson(request): ApiJson<NewTokenRequest>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    require_admin(&caller)?;
    let org = request.org.as_deref().map(OrgCode::parse).transpose()?;
    let actor = actor(&caller, address);
    let app = state.app.clone();
    let new = blocking(move || {
        state
            .depot
            .create_token(&actor, request.role, org, request.name)
    })
    .await?;
    app.tokens.invalidate();
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: new.secret,
            record: TokenView::from(&new.record),
        }),
    ))
}

#[utoipa::path(get, path = "/v1/tokens", tag = "tokens",
    responses((status = 200, body = Vec<TokenView>), (status = 403, body = crate::server::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_tokens(
    State(state): State<ApiState>,
    caller: Caller,
) -> ApiResult<Json<Vec<TokenView>>> {
    require_admin(&caller)?;
    let tokens = blocking(move || state.depot.tokens()).await?;
    Ok(Json(tokens.iter().map(TokenView::from).collect()))
}

#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "tokens", params(("id" = String, Path)),
    responses((status = 204, description = "Revoked at once"), (status = 404, body = crate::server::error::ErrorBody),
        (status = 409, body = crate::server::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke_token(
    State(state): State<ApiState>,
    caller: Caller,
    address: ClientAddr,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    require_admin(&caller)?;
    if id.len() > 64 {
        return Err(ApiError::NotFound("no such token".into()));
    }
    let actor = actor(&caller, address);
    let app = state.app.clone();
    blocking(move || state.depot.revoke_token(&actor, &id)).await?;
    app.tokens.invalidate();
    Ok(StatusCode::NO_CONTENT)
}
