//! The operations of depot, shared by the command line, the HTTP API and the portal.
//!
//! `Depot` owns the stores, the templates and the signing key, and every state change goes
//! through one of its methods, which records an audit event naming the actor. Methods are
//! synchronous and may block (hashing, zip, SQLite): the server calls them through
//! `spawn_blocking`. Nothing here knows about HTTP or clap.

mod build;
mod directory;
mod export;
pub mod fleet;
mod orgs;
mod releases;
mod tokens;
mod verify;
pub mod views;

pub use build::{BuildReport, BuildScope, BuiltPackage, NoProgress, Progress};
pub use directory::{DirectorySyncReport, OrgSyncReport, UserView};
pub use export::ExportedFile;
pub use releases::{PayloadSource, MAX_NOTES_LEN};
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
    /// The person running the command line on this machine.
    pub fn cli() -> Self {
        let user = std::env::var("SUDO_USER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "unknown".into());
        Actor {
            name: format!("cli:{user}"),
            address: "local".into(),
        }
    }
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
    /// Opens the stores and loads the key and templates named by the settings. The templates
    /// directory is used when it exists; otherwise the built-in defaults are.
    pub fn open(settings: &Settings) -> Result<Self> {
        std::fs::create_dir_all(&settings.data_dir).map_err(io_err(format!(
            "cannot create data dir {}",
            settings.data_dir.display()
        )))?;
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
            ldap: settings.ldap.clone(),
            part_digests: Default::default(),
            fleet: Default::default(),
        };
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
