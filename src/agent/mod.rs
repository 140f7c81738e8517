//! The client updater, `depot agent enroll|run|status` (CONTRACT 7), as library functions the
//! CLI and the end-to-end tests call directly.
//!
//! [`enroll`] registers the machine with its org's registration key and pins the minisign public
//! key that came with the installer package. [`run_once`] checks for an update, verifies the
//! server's signed release manifest before acting on anything, downloads the offered package
//! (resuming a partial download), checks size, SHA-256 and signature against the pinned key,
//! unpacks it safely into `versions/{version}/`, switches `current` atomically, runs the install
//! command and reports each step. [`status`] reads what the agent has committed.
//!
//! The agent must never: fetch its trust anchor from the server, act on an answer whose manifest
//! does not verify, install bytes it has not verified, write outside its state directory,
//! downgrade without a signed rollback, or panic on anything a server or a file can contain. A
//! crash at any point leaves the previous version in place: `state.json` is written last and is
//! the only commit point, and an uncommitted switch of `current` is undone on the next run.

mod download;
mod enroll;
mod http;
mod install;
mod properties;
mod run;
mod state;
mod status;
#[cfg(test)]
mod test_server;
mod unpack;

pub use enroll::{enroll, this_platform, EnrollOptions, EnrollOutcome, HostFacts};
pub use http::ServerUrl;
pub use properties::{DeployProperties, Properties, PropertiesError, MAX_PROPERTIES_BYTES};
pub use run::{run, run_once, RunOptions, RunOutcome};
pub use state::{AgentState, StateDir};
pub use status::{status, AgentStatus};
pub use unpack::{unpack_zip, UnpackLimits};

use std::path::{Path, PathBuf};

/// Everything that can stop the agent or make it refuse an offer. Messages are one line.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{action} {path}: {source}", path = .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}", path = .path.display())]
    Properties {
        path: PathBuf,
        #[source]
        source: PropertiesError,
    },
    #[error("no {what}: {hint}")]
    Missing {
        what: &'static str,
        hint: &'static str,
    },
    #[error("invalid {field}: {reason}")]
    BadOption { field: &'static str, reason: String },
    #[error("server URL {url:?} {reason}")]
    BadServerUrl { url: String, reason: String },
    #[error("{dir} is not enrolled (no state.json); run `depot agent enroll --state-dir {dir}` first", dir = .dir.display())]
    NotEnrolled { dir: PathBuf },
    #[error("state file {path} is unreadable: {reason}; remove it and enroll again", path = .path.display())]
    BadState { path: PathBuf, reason: String },
    #[error("another depot agent is working on {dir}", dir = .dir.display())]
    Locked { dir: PathBuf },
    #[error("the server refused the registration key (HTTP {status}): {message}")]
    EnrollmentRefused { status: u16, message: String },
    #[error("the server refused this device (HTTP {status}: {message}): it was deactivated or its enrollment is gone; enroll again to resume updates")]
    Deactivated { status: u16, message: String },
    #[error("{url} could not be reached: {reason}")]
    Network { url: String, reason: String },
    #[error("{url} answered HTTP {status}: {message}")]
    HttpStatus {
        url: String,
        status: u16,
        message: String,
    },
    #[error("the server's {endpoint} answer is unusable: {reason}")]
    BadResponse { endpoint: String, reason: String },
    #[error("the package was refused: {reason}")]
    PackageRejected { reason: String },
    #[error("the package is unsafe to unpack: {reason}")]
    UnsafePackage { reason: String },
    #[error("the install command failed: {reason}")]
    InstallCommand { reason: String },
}

pub type Result<T> = std::result::Result<T, AgentError>;

impl AgentError {
    fn io<'a>(
        action: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(std::io::Error) -> AgentError + 'a {
        move |source| AgentError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Holds `DIR/agent.lock` for as long as it lives: one agent at a time works on a state
/// directory (a service and a manual `--once` may overlap). The OS releases the lock when the
/// process dies, so a crash never leaves the directory locked.
struct DirLock {
    _file: std::fs::File,
}

fn lock(dir: &StateDir) -> Result<DirLock> {
    let path = dir.lock_file();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(AgentError::io("opening", &path))?;
    match file.try_lock() {
        Ok(()) => Ok(DirLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(AgentError::Locked {
            dir: dir.root().to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(AgentError::io("locking", &path)(e)),
    }
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
