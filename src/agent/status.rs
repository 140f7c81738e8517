//! `depot agent status`: what the agent has committed, without the device token.

use super::install::current_target;
use super::state::StateDir;
use super::Result;
use crate::domain::{OrgCode, Platform, Version};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The agent's state for people and scripts (`--json`). Times are RFC 3339.
#[derive(Debug, Clone, Serialize)]
pub struct AgentStatus {
    pub state_dir: PathBuf,
    pub server_url: String,
    pub org: OrgCode,
    pub device_id: String,
    pub platform: Platform,
    /// The key id of the pinned minisign public key (16 hex digits).
    pub public_key_id: String,
    pub enrolled_at: Option<String>,
    pub current_version: Option<Version>,
    pub previous_version: Option<Version>,
    /// The version `DIR/current` points at; differs from `current_version` only while a run is
    /// installing, or after a crash in the middle of one (the next run undoes it).
    pub current_link: Option<Version>,
    pub last_manifest_serial: Option<u64>,
    pub last_check: Option<String>,
    pub last_error: Option<String>,
}

/// Reads the state directory; takes no lock, as `state.json` is replaced atomically.
pub fn status(dir: &Path) -> Result<AgentStatus> {
    let dir = StateDir::new(dir);
    let state = dir.load()?;
    Ok(AgentStatus {
        state_dir: dir.root().to_path_buf(),
        server_url: state.server_url,
        org: state.org,
        device_id: state.device_id,
        platform: state.platform,
        public_key_id: state.public_key.key_id(),
        enrolled_at: rfc3339(state.enrolled_at),
        current_version: state.current_version,
        previous_version: state.previous_version,
        current_link: current_target(&dir),
        last_manifest_serial: state.last_serial,
        last_check: state.last_check.and_then(rfc3339),
        last_error: state.last_error,
    })
}

pub(super) fn rfc3339(unix: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}
