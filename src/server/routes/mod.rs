//! The handlers, one file per resource. Each carries its `#[utoipa::path]` annotation, from
//! which [`super::ApiRouter`] takes its path and methods. State changes go through the service
//! (`Depot`), which records the audit event naming the [`Actor`]; handlers only check access,
//! parse input and shape output.

pub mod audit;
pub mod directory;
pub mod downloads;
pub mod fleet;
pub mod identity;
pub mod orgs;
pub mod public;
pub mod releases;
pub mod tokens;

use super::auth::{Caller, ClientAddr};
use super::error::{ApiError, ApiResult};
use crate::service::{Actor, BuildReport};
use serde::Serialize;

/// Runs blocking work (SQLite, hashing, zip) on the blocking pool, inside the request's span.
pub(crate) async fn blocking<T, E>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> ApiResult<T>
where
    T: Send + 'static,
    E: Into<ApiError> + Send + 'static,
{
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(work))
        .await?
        .map_err(Into::into)
}

/// The audit log's actor for a request.
pub(crate) fn actor(caller: &Caller, ClientAddr(address): ClientAddr) -> Actor {
    Actor {
        name: caller.name.clone(),
        address,
    }
}

/// What a change rebuilt.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BuildSummary {
    /// File names of the packages built anew.
    pub built: Vec<String>,
    /// Packages whose inputs had not changed.
    pub unchanged: usize,
    /// Orgs whose packages failed to build (the others were built and published).
    pub failed: Vec<BuildFailureView>,
}

/// An org whose packages of this change were not built, and why.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BuildFailureView {
    pub org: String,
    pub version: String,
    pub platform: String,
    pub error: String,
}

impl From<&BuildReport> for BuildSummary {
    fn from(report: &BuildReport) -> Self {
        BuildSummary {
            built: report.built.iter().map(|p| p.file_name.clone()).collect(),
            unchanged: report.unchanged,
            failed: report
                .failed
                .iter()
                .map(|f| BuildFailureView {
                    org: f.org.to_string(),
                    version: f.version.to_string(),
                    platform: f.platform.to_string(),
                    error: f.error.clone(),
                })
                .collect(),
        }
    }
}
