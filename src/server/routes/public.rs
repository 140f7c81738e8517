//! Public endpoints without a token: health, metrics, the OpenAPI document.

use crate::server::error::ApiError;
use crate::server::metrics::Labels;
use crate::server::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

#[utoipa::path(get, path = "/healthz", tag = "public",
    responses((status = 200, description = "The server answers and its metadata store works", content_type = "text/plain")))]
pub async fn healthz(
    State(state): State<AppState>,
) -> crate::server::error::ApiResult<&'static str> {
    let meta = Arc::clone(&state.meta);
    tokio::task::spawn_blocking(move || meta.change_counter()).await??;
    Ok("ok\n")
}

#[utoipa::path(get, path = "/metrics", tag = "public",
    responses(
        (status = 200, description = "Prometheus text exposition; downloads by org only with the metrics token", content_type = "text/plain"),
        (status = 401, description = "A metrics token is configured and this is not it", body = crate::server::error::ErrorBody),
    ))]
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let labels = match &state.options.metrics_token {
        None => Labels::Public,
        Some(token) if token.presented_in(&headers) => Labels::WithOrgs,
        Some(_) => {
            return ApiError::Unauthorized(
                "/metrics needs the metrics token: Authorization: Bearer <token>".into(),
            )
            .into_response()
        }
    };
    let mut response = state.metrics.render(labels).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

#[utoipa::path(get, path = "/openapi.json", tag = "public",
    responses((status = 200, description = "This API, as OpenAPI 3.1", content_type = "application/json")))]
pub async fn openapi(State(state): State<AppState>) -> Response {
    let json = state.openapi_json.get().map_or("{}", |j| j);
    let mut response = json.to_string().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[utoipa::path(get, path = "/v1/signing-key", tag = "public",
    responses((status = 200, description = "The minisign public key file depot signs with", content_type = "text/plain")))]
pub async fn signing_key(State(state): State<crate::server::ApiState>) -> Response {
    let mut response = state.depot.public_key().to_file_text().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// One platform's depot agent executable, as packages of that platform carry it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct AgentBinaryView {
    pub platform: String,
    /// Hex SHA-256 of the executable.
    pub sha256: String,
    pub size: u64,
}

/// Public: the executables ship in the `default` org's packages, which are public anyway, and a
/// desktop engineer (or a machine) comparing an installed agent's hash needs no token for it.
#[utoipa::path(get, path = "/v1/agent-binaries", tag = "public",
    responses((status = 200, body = Vec<AgentBinaryView>, description = "The agent executable per platform")))]
pub async fn agent_binaries(
    State(state): State<crate::server::ApiState>,
) -> crate::server::error::ApiResult<axum::Json<Vec<AgentBinaryView>>> {
    let depot = Arc::clone(&state.depot);
    let binaries = super::blocking(move || depot.agent_binaries()).await?;
    Ok(axum::Json(
        binaries
            .into_iter()
            .map(|b| AgentBinaryView {
                platform: b.platform.to_string(),
                sha256: b.sha256.to_hex(),
                size: b.size,
            })
            .collect(),
    ))
}
