//! `depot init`: a config file, a signing keypair, the default templates and an empty data
//! directory. It adds what is missing and never overwrites anything, least of all a key.

use crate::config::{Settings, CONFIG_FILE};
use crate::service::Depot;
use crate::signing::SigningKey;
use crate::templates::TemplateSet;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Signing(#[from] crate::signing::SigningError),
    #[error(transparent)]
    Templates(#[from] crate::templates::TemplateError),
    #[error(transparent)]
    Service(#[from] crate::service::ServiceError),
}

pub type Result<T> = std::result::Result<T, SetupError>;

/// What `init` found and what it made.
#[derive(Debug, Default)]
pub struct InitReport {
    pub created: Vec<PathBuf>,
    pub kept: Vec<PathBuf>,
}

const CONFIG_TEMPLATE: &str = r#"# depot configuration. A command-line flag or DEPOT_* environment variable overrides a setting here.
# Relative paths are relative to this file.

# The URL devices and people reach the server at; it is written into every package.
public_url = "http://127.0.0.1:8080"
# listen = "127.0.0.1:8080"
# data_dir = "artifacts"
# templates = "installer-templates"
# signing_key = "keys/depot.key"     # minisign secret key, mode 0600, outside the data dir
# database = "sqlite://artifacts/depot.db"   # or postgres://user@host/db
# artifacts = "file://artifacts"             # or s3://bucket
# max_upload_bytes = 4294967296
# max_connections = 10000          # served at once by `depot serve`; more wait in the listen queue
# trusted_proxies = ["127.0.0.1"]  # proxies whose X-Forwarded-For names the client
# presign_downloads = 300          # s3:// only: downloads answered with a 302 to a presigned URL

# [server]
# max_connections_per_address = 256   # of max_connections, those one client address may hold
# [metrics]
# token_file = "metrics.token"        # /metrics then needs this bearer token and labels orgs
# Enrollment with the default org's registration key, which every public default installer carries.
# [enroll]
# default_per_address_per_hour = 20   # per client address (429 beyond); raise it for a lab behind NAT
# default_max_devices = 10000         # active devices of the default org (409 beyond)
"#;

/// Creates what is missing for `settings`. `write_config` also writes `./depot.toml` when no
/// config file is in effect.
pub fn init(settings: &Settings, write_config: bool) -> Result<InitReport> {
    let mut report = InitReport::default();
    if write_config && settings.config_file.is_none() {
        let path = PathBuf::from(CONFIG_FILE);
        create_new(&path, CONFIG_TEMPLATE.as_bytes())?;
        report.created.push(path);
    }
    if settings.signing_key.exists() {
        // Loading it checks its mode and format now rather than at the first build.
        SigningKey::load(&settings.signing_key)?;
        report.kept.push(settings.signing_key.clone());
    } else {
        SigningKey::create_files(&settings.signing_key, &settings.public_key)?;
        report.created.push(settings.signing_key.clone());
        report.created.push(settings.public_key.clone());
    }
    if settings.templates.exists() {
        TemplateSet::load(&settings.templates)?;
        report.kept.push(settings.templates.clone());
    } else {
        TemplateSet::write_builtin(&settings.templates)?;
        report.created.push(settings.templates.clone());
    }
    let fresh = !settings.data_dir.exists();
    Depot::create(settings)?;
    if fresh {
        report.created.push(settings.data_dir.clone())
    } else {
        report.kept.push(settings.data_dir.clone())
    }
    Ok(report)
}

fn create_new(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let context = || format!("cannot create {}", path.display());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|source| SetupError::Io {
            context: context(),
            source,
        })?;
    file.write_all(bytes).map_err(|source| SetupError::Io {
        context: context(),
        source,
    })
}
