//! The operations of depot, shared by the command line, the HTTP API and the portal.
//!
//! `Depot` owns the stores, the templates and the signing key, and every state change goes
//! through one of its methods, which records an audit event naming the actor. Methods are
//! synchronous and may block (hashing, zip, SQLite): the server calls them through
//! `spawn_blocking`. Nothing here knows about HTTP or clap.

mod agent_binaries;
mod build;
mod directory;
mod export;
pub mod fleet;
mod orgs;
mod releases;
mod tokens;
mod verify;
pub mod views;

pub use agent_binaries::{agent_entry_name, AgentBinarySource, MAX_AGENT_BINARY_BYTES};
pub use build::{BuildFailure, BuildReport, BuildScope, BuiltPackage, NoProgress, Progress};
pub use directory::{DirectorySyncReport, OrgSyncReport, UserView};
pub use export::ExportedFile;
pub use releases::{ChannelSummary, PayloadSource, MAX_NOTES_LEN};
pub use tokens::{hash_token, NewToken};
pub use verify::VerifyReport;

use crate::config::{ArtifactsUrl, DatabaseUrl, Settings};
use crate::domain::{DomainError, OrgCode};
use crate::org::OrgError;
use crate::signing::{PublicKey, SigningError, SigningKey};
use crate::store::{
    AuditEvent, BlobStore, FsBlobStore, MetaStore, PgStore, SqliteStore, StoreError,
};
use crate::templates::{TemplateError, TemplateSet};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Name(#[from] DomainError),
    #[error(transparent)]
    Org(#[from] OrgError),
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Forbidden(String),
    /// A device report on a release it was never offered (rule 6): nothing was recorded.
    #[error("{0}")]
    NotOffered(String),
    /// An org with `seats` set has as many active devices as seats.
    #[error("{0}")]
    SeatsExhausted(String),
    /// The default org has as many active devices as `[enroll] default_max_devices`.
    #[error("{0}")]
    EnrollmentCap(String),
    /// Too many enrollments from one address with the default org's public key.
    #[error("{0}")]
    RateLimited(String),
    /// The settings name a data directory or database that does not exist: only `depot init`
    /// (and `demo`) creates one, so that a mistyped path never becomes an empty depot.
    #[error("{0}")]
    NotInitialised(String),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Package(#[from] crate::package::PackageError),
    #[error(transparent)]
    Signing(#[from] SigningError),
    #[error(transparent)]
    Store(StoreError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("directory sync failed, nothing changed: {0}")]
    Directory(#[from] crate::directory::DirectoryError),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ServiceError::NotFound(what),
            StoreError::Conflict(msg) => ServiceError::Conflict(msg),
            other => ServiceError::Store(other),
        }
    }
}

pub type Result<T> = std::result::Result<T, ServiceError>;

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServiceError {
    let context = context.into();
    move |source| ServiceError::Io { context, source }
}

/// Who asks for a change, and from where: what the audit log records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// A token's name, `cli:<user>`, or `device:<id>`.
    pub name: String,
    /// The client address, or `local` for the command line.
    pub address: String,
}

impl Actor {
    /// The person running the command line on this machine: `cli:alice@host`. Under `sudo` the
    /// person is the one who ran sudo.
    pub fn cli() -> Self {
        let env = |name: &str| std::env::var(name).ok();
        Actor {
            name: cli_actor_name(
                env("SUDO_USER")
                    .or_else(|| env("USER"))
                    .or_else(|| env("LOGNAME"))
                    .or_else(os_user),
                os_host(),
            ),
            address: "local".into(),
        }
    }
}

/// `cli:user@host`; a part that cannot be found is `unknown`. Only the characters of a user
/// and host name are kept, so the audit log's actor stays one plain token.
fn cli_actor_name(user: Option<String>, host: Option<String>) -> String {
    let clean = |s: Option<String>| {
        let s: String = s
            .unwrap_or_default()
            .chars()
            .filter(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '$'))
            .take(64)
            .collect();
        if s.is_empty() {
            "unknown".to_string()
        } else {
            s
        }
    };
    format!("cli:{}@{}", clean(user), clean(host))
}

/// The name of the effective user, from the password database.
#[cfg(unix)]
fn os_user() -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call, `buf` outlives the use of `pwd`'s fields, and
    // getpwuid_r is the reentrant form.
    let rc = unsafe {
        libc::getpwuid_r(
            libc::geteuid(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: pw_name points into `buf`, NUL-terminated by getpwuid_r.
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

#[cfg(not(unix))]
fn os_user() -> Option<String> {
    std::env::var("USERNAME").ok()
}

/// This machine's host name.
#[cfg(unix)]
pub(crate) fn os_host() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; the name is NUL-terminated when it fits.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..len]).into_owned())
}

#[cfg(not(unix))]
pub(crate) fn os_host() -> Option<String> {
    std::env::var("COMPUTERNAME").ok()
}

/// The time now, in unix seconds.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

pub struct Depot {
    meta: Arc<dyn MetaStore>,
    blobs: Arc<dyn BlobStore>,
    templates: TemplateSet,
    key: SigningKey,
    public_url: String,
    data_dir: PathBuf,
    identity: crate::identity::IdentityConfig,
    /// The campus directory to sync eligible users from (`[directory.ldap]`).
    ldap: Option<crate::config::LdapSettings>,
    /// Hash states of payload parts already read: a long-running server rebuilds an org's
    /// packages without another pass over the payloads. Blobs are immutable, so entries never go stale.
    fleet: fleet::Fleet,
    part_digests: std::sync::Mutex<
        std::collections::HashMap<crate::domain::Sha256, crate::signing::StreamDigest>,
    >,
}

impl Depot {
    /// Creates the data directory when it is absent, then opens it: `depot init` and `demo`.
    pub fn create(settings: &Settings) -> Result<Self> {
        std::fs::create_dir_all(&settings.data_dir).map_err(io_err(format!(
            "cannot create data dir {}",
            settings.data_dir.display()
        )))?;
        if let DatabaseUrl::Sqlite(path) = &settings.database {
            if !path.exists() {
                SqliteStore::open(path)?;
            }
        }
        if let ArtifactsUrl::File(dir) = &settings.artifacts {
            std::fs::create_dir_all(dir).map_err(io_err(format!(
                "cannot create artifacts dir {}",
                dir.display()
            )))?;
        }
        Self::open(settings)
    }

    /// Opens the existing stores and loads the key and templates named by the settings. A data
    /// directory, SQLite database or artifacts directory that does not exist is an error naming
    /// the path looked at. The templates directory is used when it exists; otherwise the
    /// built-in defaults are.
    pub fn open(settings: &Settings) -> Result<Self> {
        let missing = |what: &str, path: &std::path::Path| {
            let config = match &settings.config_file {
                Some(file) => format!(" (settings from {})", file.display()),
                None => {
                    " (no config file: ./depot.toml is absent and --config was not given)".into()
                }
            };
            ServiceError::NotInitialised(format!(
                "no {what} at {}{config}; run `depot init` to create one, or give --config or --data-dir",
                path.display()
            ))
        };
        if !settings.data_dir.is_dir() {
            return Err(missing("data directory", &settings.data_dir));
        }
        if let DatabaseUrl::Sqlite(path) = &settings.database {
            if !path.is_file() {
                return Err(missing("database", path));
            }
        }
        if let ArtifactsUrl::File(dir) = &settings.artifacts {
            if !dir.is_dir() {
                return Err(missing("artifacts directory", dir));
            }
        }
        let meta: Arc<dyn MetaStore> = match &settings.database {
            DatabaseUrl::Sqlite(path) => Arc::new(SqliteStore::open(path)?),
            DatabaseUrl::Postgres(url) => Arc::new(PgStore::connect(url)?),
        };
        let blobs: Arc<dyn BlobStore> = match &settings.artifacts {
            ArtifactsUrl::File(dir) => {
                let store = FsBlobStore::open(dir)?;
                // A writer killed mid-write (SIGKILL, power loss) leaves its temp file in tmp/;
                // nothing else would ever remove it. Uploads stage there too (the data dir).
                match store.remove_stale_temp() {
                    Ok(0) => {}
                    Ok(removed) => tracing::info!(removed, "removed stale temp files"),
                    Err(e) => tracing::warn!(error = %e, "could not remove stale temp files"),
                }
                Arc::new(store)
            }
            ArtifactsUrl::S3 {
                bucket,
                presign_downloads,
            } => {
                // Blobs are spooled here before they are uploaded under their hash; a writer
                // killed mid-spool leaves its file (and an incomplete multipart upload, which a
                // lifecycle rule of the bucket removes).
                let spool = settings.data_dir.join("tmp");
                if spool.is_dir() {
                    match crate::store::remove_stale_files(&spool) {
                        Ok(0) => {}
                        Ok(removed) => tracing::info!(removed, "removed stale spool files"),
                        Err(e) => tracing::warn!(error = %e, "could not remove stale spool files"),
                    }
                }
                let mut config =
                    crate::store::S3Config::from_env(bucket, spool).map_err(StoreError::from)?;
                config.presign_downloads = *presign_downloads;
                Arc::new(crate::store::S3BlobStore::open(config)?)
            }
        };
        let key = SigningKey::load(&settings.signing_key)?;
        let templates = if settings.templates.is_dir() {
            TemplateSet::load(&settings.templates)?
        } else {
            TemplateSet::builtin()
        };
        let depot = Depot {
            meta,
            blobs,
            templates,
            key,
            public_url: settings.public_url.clone(),
            data_dir: settings.data_dir.clone(),
            identity: settings.identity.clone(),
            ldap: settings.ldap.clone(),
            part_digests: Default::default(),
            fleet: Default::default(),
        };
        depot.set_enroll_limits(settings.enroll);
        depot.ensure_default_org()?;
        Ok(depot)
    }

    pub fn meta(&self) -> &Arc<dyn MetaStore> {
        &self.meta
    }

    pub fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }

    pub fn public_key(&self) -> PublicKey {
        self.key.public_key()
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// Single sign-on and the rules that turn directory groups into roles.
    pub fn identity(&self) -> &crate::identity::IdentityConfig {
        &self.identity
    }

    /// The audit events `filter` selects, newest first.
    pub fn audit_events(
        &self,
        filter: &crate::store::AuditFilter,
    ) -> Result<Vec<crate::store::AuditEvent>> {
        Ok(self.meta.query_audit(filter)?)
    }

    pub(crate) fn audit(
        &self,
        actor: &Actor,
        org: Option<&OrgCode>,
        action: &str,
        target: &str,
        detail: Option<String>,
    ) -> Result<()> {
        self.meta.append_audit(&AuditEvent {
            id: 0,
            at: now(),
            actor: actor.name.clone(),
            org: org.cloned(),
            action: action.to_string(),
            target: target.to_string(),
            address: actor.address.clone(),
            detail,
        })?;
        Ok(())
    }
}

impl Drop for Depot {
    /// Check-ins still buffered are written before the store closes.
    fn drop(&mut self) {
        if let Err(e) = self.flush_checkins() {
            tracing::warn!(error = %e, "check-ins buffered at shutdown could not be recorded");
        }
    }
}

#[cfg(test)]
mod actor_tests {
    use super::*;

    #[test]
    fn cli_actor_names_user_and_host() {
        assert_eq!(
            cli_actor_name(Some("alice".into()), Some("lab-7.example.edu".into())),
            "cli:alice@lab-7.example.edu"
        );
        assert_eq!(cli_actor_name(None, None), "cli:unknown@unknown");
        assert_eq!(
            cli_actor_name(Some("eve\u{202e} x".into()), Some("h\nost".into())),
            "cli:evex@host"
        );
    }

    #[cfg(unix)]
    #[test]
    fn the_os_knows_this_user_and_host() {
        assert!(os_user().is_some_and(|u| !u.is_empty()));
        assert!(os_host().is_some_and(|h| !h.is_empty()));
        let actor = Actor::cli();
        assert!(actor.name.starts_with("cli:"), "{}", actor.name);
        assert!(!actor.name.contains("unknown"), "{}", actor.name);
    }
}
