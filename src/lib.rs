//! depot builds department-specific installer packages for an enterprise backup client, signs
//! them, serves them from a versioned download endpoint and drives pushed client updates.
//!
//! Data flows one way through the modules: `domain` (validated names) and `org` (an org's
//! configuration) → `templates` (render) → `package` (zip assembly) → `signing` (checksums,
//! minisign) → `store` (metadata and artifact blobs behind traits) → `pipeline` (release add,
//! publish, build, export, verify) → `server` (HTTP) → `updates` (the rollout decision) →
//! `agent` (the client). `cli` only parses arguments and calls the library.

pub mod agent;
pub mod cli;
pub mod config;
pub mod demo;
pub mod directory;
pub mod domain;
pub mod identity;
pub mod org;
pub mod package;
pub mod server;
pub mod service;
pub mod setup;
pub mod signing;
pub mod store;
pub mod telemetry;
pub mod templates;
pub mod updates;
