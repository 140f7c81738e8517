//! The handlers, one file per resource. Each carries its `#[utoipa::path]` annotation, from
//! which [`super::ApiRouter`] takes its path and methods.

pub mod downloads;
pub mod public;
