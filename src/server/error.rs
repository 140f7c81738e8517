//! The API's errors and their one wire form, `{"error":{"code","message"}}` (CONTRACT 6).
//!
//! Every handler returns [`ApiError`] on failure, and every rejection of axum's own extractors is
//! mapped into it, so a client never sees another error shape. Bad input is a 4xx. An internal
//! error is logged here with its whole cause chain and answered `500 internal` with no detail:
//! this module must never put a path, a SQL message or a secret into a response.

use crate::domain::DomainError;
use crate::service::ServiceError;
use crate::store::StoreError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::error::Error as StdError;

/// An error answered to an API client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed request: syntax, encoding, missing parts.
    #[error("{0}")]
    BadRequest(String),
    /// Well-formed but invalid values (a name breaking a rule, a percent over 100).
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// Unknown, or another org's, resource.
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A `Range` outside the representation; answered with `Content-Range: bytes */len`.
    #[error("range not satisfiable: the representation has {len} bytes")]
    RangeNotSatisfiable { len: u64 },
    #[error("{0}")]
    RateLimited(String),
    #[error("the request took too long")]
    Timeout,
    /// A 4xx whose code says more than its status (`seats_exhausted`, `not_offered`).
    #[error("{message}")]
    Coded {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    #[error("internal error: {0}")]
    Internal(#[source] Box<dyn StdError + Send + Sync>),
}

pub type ApiResult<T> = std::result::Result<T, ApiError>;

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, snake_case.
    pub code: &'static str,
    /// For people; may change.
    pub message: String,
}

impl ApiError {
    pub fn internal(e: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        ApiError::Internal(e.into())
    }

    pub fn not_found(what: impl std::fmt::Display) -> Self {
        ApiError::NotFound(format!("{what} not found"))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Timeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Coded { status, .. } => *status,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Invalid(_) => "invalid",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::TooLarge(_) => "too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::RangeNotSatisfiable { .. } => "range_not_satisfiable",
            ApiError::RateLimited(_) => "rate_limited",
            ApiError::Timeout => "timeout",
            ApiError::Coded { code, .. } => code,
            ApiError::Internal(_) => "internal",
        }
    }
}

/// `error: cause: cause ...`, for the log.
pub fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = match &self {
            ApiError::Internal(cause) => {
                tracing::error!(error = %error_chain(cause.as_ref()), "internal error");
                "internal error; the server log has the details".to_string()
            }
            other => other.to_string(),
        };
        let status = self.status();
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message,
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        match self {
            ApiError::RangeNotSatisfiable { len } => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                    headers.insert(header::CONTENT_RANGE, v);
                }
            }
            ApiError::Unauthorized(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"depot\""),
                );
            }
            _ => {}
        }
        response
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        ApiError::Invalid(e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::not_found(what),
            StoreError::Conflict(message) => ApiError::Conflict(message),
            other => ApiError::internal(other),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Name(e) => ApiError::Invalid(e.to_string()),
            ServiceError::Org(e) => ApiError::Invalid(e.to_string()),
            ServiceError::Invalid(message) => ApiError::Invalid(message),
            ServiceError::NotFound(what) => ApiError::not_found(what),
            ServiceError::Conflict(message) => ApiError::Conflict(message),
            ServiceError::Forbidden(message) => ApiError::Forbidden(message),
            ServiceError::NotOffered(message) => ApiError::Coded {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "not_offered",
                message,
            },
            ServiceError::SeatsExhausted(message) => ApiError::Coded {
                status: StatusCode::CONFLICT,
                code: "seats_exhausted",
                message,
            },
            ServiceError::EnrollmentCap(message) => ApiError::Coded {
                status: StatusCode::CONFLICT,
                code: "enrollment_cap_reached",
                message,
            },
            ServiceError::RateLimited(message) => ApiError::RateLimited(message),
            // Templates, packaging, signing, storage: the server's own state, not the request.
            other => ApiError::internal(other),
        }
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::internal(e)
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> Self {
        use axum::extract::rejection::JsonRejection as J;
        match r {
            J::JsonDataError(e) => ApiError::Invalid(e.body_text()),
            J::JsonSyntaxError(e) => ApiError::BadRequest(e.body_text()),
            J::MissingJsonContentType(_) => {
                ApiError::UnsupportedMediaType("expected Content-Type: application/json".into())
            }
            J::BytesRejection(e) => body_rejection(e.status(), e.body_text()),
            other => ApiError::BadRequest(other.body_text()),
        }
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(r: axum::extract::rejection::PathRejection) -> Self {
        ApiError::BadRequest(r.body_text())
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(r: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::BadRequest(r.body_text())
    }
}

impl From<axum::extract::multipart::MultipartRejection> for ApiError {
    fn from(r: axum::extract::multipart::MultipartRejection) -> Self {
        ApiError::UnsupportedMediaType(r.body_text())
    }
}

impl From<axum::extract::multipart::MultipartError> for ApiError {
    fn from(e: axum::extract::multipart::MultipartError) -> Self {
        body_rejection(e.status(), e.body_text())
    }
}

impl From<axum::extract::rejection::BytesRejection> for ApiError {
    fn from(r: axum::extract::rejection::BytesRejection) -> Self {
        body_rejection(r.status(), r.body_text())
    }
}

/// Reading a body fails with 413 when it passes the limit; anything else the client sent wrong.
fn body_rejection(status: StatusCode, text: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::TooLarge(text)
    } else {
        ApiError::BadRequest(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(e: ApiError) -> (StatusCode, serde_json::Value, Response) {
        let response = e.into_response();
        let status = response.status();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 16).await.unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap(),
            Response::from_parts(parts, axum::body::Body::empty()),
        )
    }

    #[tokio::test]
    async fn contract_shape() {
        let (status, json, _) = body_of(ApiError::not_found("org physics")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(json["error"]["code"], "not_found");
        assert_eq!(json["error"]["message"], "org physics not found");
    }

    #[tokio::test]
    async fn internal_hides_its_cause() {
        let cause = std::io::Error::other("/secret/path/depot.db is locked");
        let (status, json, _) = body_of(ApiError::internal(cause)).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(json["error"]["code"], "internal");
        assert!(!json.to_string().contains("secret"));
    }

    #[tokio::test]
    async fn range_error_names_the_length() {
        let (status, _, response) = body_of(ApiError::RangeNotSatisfiable { len: 42 }).await;
        assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(response.headers()[header::CONTENT_RANGE], "bytes */42");
    }

    #[test]
    fn store_errors_map_to_statuses() {
        assert_eq!(
            ApiError::from(StoreError::NotFound("x".into())).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            ApiError::from(StoreError::Conflict("x".into())).status(),
            StatusCode::CONFLICT
        );
        assert_eq!(
            ApiError::from(StoreError::Corrupt("x".into())).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
