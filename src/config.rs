//! Settings: where each comes from and what it defaults to (CONTRACT 5).
//!
//! A setting comes from the command-line flag, else the environment (`DEPOT_*`, handled by clap),
//! else `depot.toml`, else the default. Every relative path in `depot.toml` (and every default
//! path, when a config file is in effect) is relative to the file's directory, so that
//! `depot --config /srv/depot/depot.toml ...` finds the same data from any working directory.
//! Paths given as flags or environment variables are relative to the working directory.
//! Nothing here opens a store or a key: it only decides paths and addresses.

use ipnet::IpNet;
use serde::Deserialize;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config: {0}")]
    Identity(#[from] crate::identity::IdentityError),
    #[error("invalid {setting} {value:?}: {rule}")]
    Invalid {
        setting: &'static str,
        value: String,
        rule: &'static str,
    },
}

pub type Result<T> = std::result::Result<T, ConfigError>;

pub const CONFIG_FILE: &str = "depot.toml";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 256;

/// `depot.toml`. Every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub data_dir: Option<PathBuf>,
    pub templates: Option<PathBuf>,
    pub database: Option<String>,
    pub artifacts: Option<String>,
    pub signing_key: Option<PathBuf>,
    pub public_url: Option<String>,
    pub listen: Option<String>,
    pub max_upload_bytes: Option<u64>,
    pub max_connections: Option<usize>,
    /// Seconds: answer package downloads with a redirect to a presigned URL of the object store.
    pub presign_downloads: Option<u64>,
    /// Addresses or networks (`10.0.0.0/8`) of the proxies in front of `depot serve`.
    pub trusted_proxies: Option<Vec<String>>,
    /// Single sign-on (CONTRACT 9).
    pub sso: Option<crate::identity::SsoFile>,
    pub roles: Option<crate::identity::RolesFile>,
    pub server: Option<ServerSection>,
    pub metrics: Option<MetricsSection>,
    /// `[enroll]`: limits on enrollment with the default org's public registration key.
    pub enroll: Option<EnrollFile>,
    /// `[directory.ldap]` (CONTRACT 10).
    pub directory: Option<DirectoryFile>,
}

/// `[server]` of `depot.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Connections one client address may hold at once (trusted proxies exempt).
    pub max_connections_per_address: Option<usize>,
}

/// `[metrics]` of `depot.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// A file holding the bearer token `/metrics` then requires; with it, downloads are
    /// labelled by org.
    pub token_file: Option<PathBuf>,
}

/// `[enroll]` in `depot.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollFile {
    pub default_per_address_per_hour: Option<u32>,
    pub default_max_devices: Option<u64>,
}

/// Limits on enrollment with the default org's registration key, which every public default
/// installer carries (CONTRACT 6 rule 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnrollLimits {
    /// Enrollments one client address may make into the default org per hour (429 beyond); a
    /// lab behind one NAT address raises it.
    pub default_per_address_per_hour: u32,
    /// Active devices the default org may have (409 beyond).
    pub default_max_devices: u64,
}

impl Default for EnrollLimits {
    fn default() -> Self {
        Self {
            default_per_address_per_hour: 20,
            default_max_devices: 10_000,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryFile {
    pub ldap: Option<LdapSettings>,
}

/// Where the campus directory is and how depot reads it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapSettings {
    /// `ldap://host:port` or `ldaps://host:port`.
    pub url: String,
    pub bind_dn: String,
    /// A file holding the bind password; `DEPOT_LDAP_PASSWORD` wins over it.
    pub bind_password_file: Option<PathBuf>,
    /// People (uid, mail, displayName) live below it.
    pub user_base: String,
    /// Groups (groupOfNames with member DNs, posixGroup with memberUid) live below it.
    pub group_base: String,
    #[serde(default = "default_sync_interval")]
    pub sync_interval_seconds: u64,
}

fn default_sync_interval() -> u64 {
    300
}

/// What the command line (and its environment variables) said; `None` where nothing was given.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub templates: Option<PathBuf>,
    pub database: Option<String>,
    pub artifacts: Option<String>,
    pub signing_key: Option<PathBuf>,
    pub public_url: Option<String>,
}

/// Where the metadata lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

/// Where the artifact blobs live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactsUrl {
    File(PathBuf),
    S3 {
        bucket: String,
        /// Package downloads are answered with a 302 to a presigned URL of the object that
        /// lives this long, so that the store (or a CDN before it) sends the bytes.
        presign_downloads: Option<std::time::Duration>,
    },
}

impl ArtifactsUrl {
    /// Sets `presign_downloads` (the config key, or `--presign-downloads SECONDS`); only S3
    /// objects have URLs to redirect to.
    pub fn presign_downloads(&mut self, seconds: u64) -> Result<()> {
        let lifetime = parse_presign_downloads(seconds)?;
        match self {
            ArtifactsUrl::S3 {
                presign_downloads, ..
            } => {
                *presign_downloads = Some(lifetime);
                Ok(())
            }
            ArtifactsUrl::File(_) => Err(ConfigError::Invalid {
                setting: "presign_downloads",
                value: seconds.to_string(),
                rule: "needs s3:// artifacts: a local file has no URL to redirect to",
            }),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// The `depot.toml` in effect, if any.
    pub config_file: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub templates: PathBuf,
    pub database: DatabaseUrl,
    pub artifacts: ArtifactsUrl,
    pub signing_key: PathBuf,
    pub public_key: PathBuf,
    /// The URL devices and people reach the server at; it goes into every package.
    pub public_url: String,
    pub listen: Option<String>,
    pub max_upload_bytes: u64,
    /// Connections `depot serve` serves at once; more wait in the listen queue.
    pub max_connections: usize,
    /// Proxies whose `X-Forwarded-For` names the client; none by default, so the header is
    /// ignored unless an operator says which peers write it.
    pub trusted_proxies: Vec<IpNet>,
    /// Single sign-on and roles from directory groups.
    pub identity: crate::identity::IdentityConfig,
    /// Of `max_connections`, those one client address may hold.
    pub max_connections_per_address: usize,
    /// The file of the bearer token `/metrics` requires; public, without org labels, if none.
    pub metrics_token_file: Option<PathBuf>,
    pub enroll: EnrollLimits,
    /// The directory to sync eligible users from, if any.
    pub ldap: Option<LdapSettings>,
}

impl Settings {
    /// Resolves every setting; reads `depot.toml` (the `--config` one, else `./depot.toml` when present).
    pub fn resolve(overrides: &Overrides) -> Result<Self> {
        let path = overrides.config.clone().or_else(|| {
            let default = PathBuf::from(CONFIG_FILE);
            default.is_file().then_some(default)
        });
        let (file, base) = match &path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.clone(),
                    source,
                })?;
                let file: ConfigFile = toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: p.clone(),
                    message: e.message().to_string(),
                })?;
                let base = p.parent().map(Path::to_path_buf).unwrap_or_default();
                (file, base)
            }
            None => (ConfigFile::default(), PathBuf::new()),
        };
        Self::from_parts(overrides, file, &base, path)
    }

    fn from_parts(
        o: &Overrides,
        file: ConfigFile,
        base: &Path,
        config_file: Option<PathBuf>,
    ) -> Result<Self> {
        let relative = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let data_dir = o
            .data_dir
            .clone()
            .or(file.data_dir.map(relative))
            .unwrap_or_else(|| base.join("artifacts"));
        let templates = o
            .templates
            .clone()
            .or(file.templates.map(relative))
            .unwrap_or_else(|| base.join("installer-templates"));
        let signing_key = o
            .signing_key
            .clone()
            .or(file.signing_key.map(relative))
            .unwrap_or_else(|| base.join("keys/depot.key"));
        let database = match (o.database.clone(), file.database) {
            (Some(url), _) => parse_database(&url)?,
            (None, Some(url)) => match parse_database(&url)? {
                DatabaseUrl::Sqlite(path) => DatabaseUrl::Sqlite(relative(path)),
                other => other,
            },
            (None, None) => DatabaseUrl::Sqlite(data_dir.join("depot.db")),
        };
        let mut artifacts = match (o.artifacts.clone(), file.artifacts) {
            (Some(url), _) => parse_artifacts(&url)?,
            (None, Some(url)) => match parse_artifacts(&url)? {
                ArtifactsUrl::File(dir) => ArtifactsUrl::File(relative(dir)),
                other => other,
            },
            (None, None) => ArtifactsUrl::File(data_dir.clone()),
        };
        if let Some(seconds) = file.presign_downloads {
            artifacts.presign_downloads(seconds)?;
        }
        let public_url = o
            .public_url
            .clone()
            .or(file.public_url)
            .unwrap_or_else(|| format!("http://{DEFAULT_LISTEN}"));
        let public_url = parse_public_url(&public_url)?;
        let trusted_proxies = file
            .trusted_proxies
            .unwrap_or_default()
            .iter()
            .map(|entry| parse_trusted_proxy(entry))
            .collect::<Result<_>>()?;
        let identity =
            crate::identity::IdentityConfig::resolve(file.sso.as_ref(), file.roles.as_ref())?;
        let server = file.server.unwrap_or_default();
        let metrics_token_file = file.metrics.and_then(|m| m.token_file).map(relative);
        let enroll_file = file.enroll.unwrap_or_default();
        let defaults = EnrollLimits::default();
        let enroll = EnrollLimits {
            default_per_address_per_hour: enroll_file
                .default_per_address_per_hour
                .unwrap_or(defaults.default_per_address_per_hour),
            default_max_devices: enroll_file
                .default_max_devices
                .unwrap_or(defaults.default_max_devices),
        };
        Ok(Settings {
            config_file,
            enroll,
            public_key: signing_key.with_extension("pub"),
            data_dir,
            templates,
            database,
            artifacts,
            signing_key,
            public_url,
            listen: file.listen,
            max_upload_bytes: file.max_upload_bytes.unwrap_or(4 * 1024 * 1024 * 1024),
            max_connections: file.max_connections.unwrap_or(10_000).max(1),
            trusted_proxies,
            identity,
            max_connections_per_address: server
                .max_connections_per_address
                .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_ADDRESS)
                .max(1),
            metrics_token_file,
            ldap: file.directory.and_then(|d| d.ldap).map(|mut l| {
                l.bind_password_file = l.bind_password_file.map(relative);
                l
            }),
        })
    }
}

impl Settings {
    /// What `depot serve` and `depot verify` say they use, one `name: value` line each.
    pub fn describe(&self) -> String {
        let database = match &self.database {
            DatabaseUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
            // The URL may carry a password: only its scheme and host part after '@' are shown.
            DatabaseUrl::Postgres(url) => match url.rsplit_once('@') {
                Some((_, host)) => format!("postgres://...@{host}"),
                None => url.clone(),
            },
        };
        let artifacts = match &self.artifacts {
            ArtifactsUrl::File(dir) => format!("file://{}", dir.display()),
            ArtifactsUrl::S3 { bucket, .. } => format!("s3://{bucket}"),
        };
        let config = self
            .config_file
            .as_ref()
            .map_or_else(|| "none".to_string(), |p| p.display().to_string());
        format!(
            "config:     {config}\ndata dir:   {}\ndatabase:   {database}\nartifacts:  {artifacts}\npublic URL: {}",
            self.data_dir.display(),
            self.public_url
        )
    }
}

fn parse_database(url: &str) -> Result<DatabaseUrl> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        if !path.is_empty() {
            return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
        }
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(DatabaseUrl::Postgres(url.to_string()));
    }
    Err(ConfigError::Invalid {
        setting: "database",
        value: url.to_string(),
        rule: "must be sqlite://PATH or postgres://user@host/db",
    })
}

fn parse_artifacts(url: &str) -> Result<ArtifactsUrl> {
    if let Some(path) = url.strip_prefix("file://") {
        if !path.is_empty() {
            return Ok(ArtifactsUrl::File(PathBuf::from(path)));
        }
    }
    if let Some(bucket) = url.strip_prefix("s3://") {
        let bucket = bucket.trim_end_matches('/');
        if !bucket.is_empty() && !bucket.contains('/') {
            return Ok(ArtifactsUrl::S3 {
                bucket: bucket.to_string(),
                presign_downloads: None,
            });
        }
    }
    Err(ConfigError::Invalid {
        setting: "artifacts",
        value: url.to_string(),
        rule: "must be file://DIR or s3://bucket",
    })
}

/// A comma-separated list of trusted proxies, as `--trusted-proxies` takes it.
pub fn parse_trusted_proxies(list: &str) -> Result<Vec<IpNet>> {
    list.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(parse_trusted_proxy)
        .collect()
}

/// A proxy's address (`10.0.0.5`, `::1`) or network (`10.0.0.0/8`).
fn parse_trusted_proxy(entry: &str) -> Result<IpNet> {
    entry
        .parse::<IpNet>()
        .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| ConfigError::Invalid {
            setting: "trusted_proxies",
            value: entry.to_string(),
            rule: "must be IP addresses or networks in CIDR form (10.0.0.5, 10.0.0.0/8, ::1)",
        })
}

/// The lifetime of presigned download URLs, as `presign_downloads` and `--presign-downloads`
/// take it: 1 second to 7 days (the longest SigV4 allows).
pub fn parse_presign_downloads(seconds: u64) -> Result<std::time::Duration> {
    if (1..=crate::store::MAX_PRESIGN.as_secs()).contains(&seconds) {
        Ok(std::time::Duration::from_secs(seconds))
    } else {
        Err(ConfigError::Invalid {
            setting: "presign_downloads",
            value: seconds.to_string(),
            rule: "must be 1 to 604800 seconds",
        })
    }
}

/// The public URL goes into scripts and properties files: keep it to a plain http(s) origin and path.
fn parse_public_url(url: &str) -> Result<String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let ok = match rest {
        Some(rest) => {
            !rest.is_empty()
                && !rest.starts_with('/')
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~:/[]@%".contains(&b))
        }
        None => false,
    };
    if ok {
        Ok(url.trim_end_matches('/').to_string())
    } else {
        Err(ConfigError::Invalid {
            setting: "public_url",
            value: url.to_string(),
            rule: "must be an http:// or https:// URL without spaces, quotes or query",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enroll_limits_come_from_the_enroll_table_or_default() {
        let file: ConfigFile =
            toml::from_str("[enroll]\ndefault_per_address_per_hour = 500\n").unwrap();
        let s = Settings::from_parts(&Overrides::default(), file, Path::new(""), None).unwrap();
        assert_eq!(
            s.enroll,
            EnrollLimits {
                default_per_address_per_hour: 500,
                default_max_devices: EnrollLimits::default().default_max_devices,
            }
        );
        assert!(toml::from_str::<ConfigFile>("[enroll]\nper_hour = 5\n").is_err());
    }

    #[test]
    fn flag_beats_file_beats_default() {
        let file = ConfigFile {
            data_dir: Some("data".into()),
            public_url: Some("https://depot.example.edu".into()),
            ..Default::default()
        };
        let o = Overrides {
            data_dir: Some("/srv/depot".into()),
            ..Default::default()
        };
        let s = Settings::from_parts(&o, file, Path::new("/etc/depot"), None).unwrap();
        assert_eq!(s.data_dir, PathBuf::from("/srv/depot"));
        assert_eq!(
            s.database,
            DatabaseUrl::Sqlite("/srv/depot/depot.db".into())
        );
        assert_eq!(s.artifacts, ArtifactsUrl::File("/srv/depot".into()));
        assert_eq!(s.public_url, "https://depot.example.edu");
        assert_eq!(s.signing_key, PathBuf::from("/etc/depot/keys/depot.key"));
        assert_eq!(s.public_key, PathBuf::from("/etc/depot/keys/depot.pub"));

        let s = Settings::from_parts(
            &Overrides::default(),
            ConfigFile::default(),
            Path::new(""),
            None,
        )
        .unwrap();
        assert_eq!(s.data_dir, PathBuf::from("artifacts"));
        assert_eq!(s.public_url, "http://127.0.0.1:8080");
    }

    #[test]
    fn paths_in_a_config_file_are_relative_to_its_directory() {
        let file: ConfigFile = toml::from_str(
            "database = \"sqlite://db/depot.db\"\nartifacts = \"file://blobs\"\ntemplates = \"t\"",
        )
        .unwrap();
        let s = Settings::from_parts(&Overrides::default(), file, Path::new("/srv/depot"), None)
            .unwrap();
        assert_eq!(
            s.database,
            DatabaseUrl::Sqlite("/srv/depot/db/depot.db".into())
        );
        assert_eq!(s.artifacts, ArtifactsUrl::File("/srv/depot/blobs".into()));
        assert_eq!(s.templates, PathBuf::from("/srv/depot/t"));
        // Defaults follow the file too: a config without data_dir keeps its data beside it.
        let s = Settings::from_parts(
            &Overrides::default(),
            ConfigFile::default(),
            Path::new("/srv/depot"),
            None,
        )
        .unwrap();
        assert_eq!(s.data_dir, PathBuf::from("/srv/depot/artifacts"));
        assert_eq!(
            s.database,
            DatabaseUrl::Sqlite("/srv/depot/artifacts/depot.db".into())
        );
        assert_eq!(s.templates, PathBuf::from("/srv/depot/installer-templates"));
        // A flag is the caller's: relative to the working directory.
        let o = Overrides {
            database: Some("sqlite://here.db".into()),
            ..Default::default()
        };
        let s =
            Settings::from_parts(&o, ConfigFile::default(), Path::new("/srv/depot"), None).unwrap();
        assert_eq!(s.database, DatabaseUrl::Sqlite("here.db".into()));
    }

    #[test]
    fn trusted_proxies_are_addresses_or_networks() {
        let parsed = parse_trusted_proxies(" 127.0.0.1, 10.0.0.0/8,::1 ,").unwrap();
        let expected: Vec<IpNet> = ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]
            .iter()
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(parsed, expected);
        assert!(parse_trusted_proxies("").unwrap().is_empty());
        for bad in ["localhost", "10.0.0.0/33", "10.0.0", "*"] {
            let message = parse_trusted_proxies(bad).unwrap_err().to_string();
            assert!(message.contains("trusted_proxies"), "{message}");
        }
        let file: ConfigFile = toml::from_str("trusted_proxies = [\"10.1.0.0/16\"]").unwrap();
        let s = Settings::from_parts(&Overrides::default(), file, Path::new(""), None).unwrap();
        assert_eq!(
            s.trusted_proxies,
            vec!["10.1.0.0/16".parse::<IpNet>().unwrap()]
        );
        let file: ConfigFile = toml::from_str("trusted_proxies = [\"proxy\"]").unwrap();
        assert!(Settings::from_parts(&Overrides::default(), file, Path::new(""), None).is_err());
        let s = Settings::from_parts(
            &Overrides::default(),
            ConfigFile::default(),
            Path::new(""),
            None,
        )
        .unwrap();
        assert!(s.trusted_proxies.is_empty());
    }

    #[test]
    fn server_and_metrics_sections() {
        let file: ConfigFile = toml::from_str(
            "[server]\nmax_connections_per_address = 16\n[metrics]\ntoken_file = \"metrics.token\"\n",
        )
        .unwrap();
        let s = Settings::from_parts(&Overrides::default(), file, Path::new("/etc/depot"), None)
            .unwrap();
        assert_eq!(s.max_connections_per_address, 16);
        assert_eq!(
            s.metrics_token_file,
            Some(PathBuf::from("/etc/depot/metrics.token"))
        );
        let s = Settings::from_parts(
            &Overrides::default(),
            ConfigFile::default(),
            Path::new(""),
            None,
        )
        .unwrap();
        assert_eq!(s.max_connections_per_address, 256);
        assert_eq!(s.metrics_token_file, None);
        assert!(toml::from_str::<ConfigFile>("[server]\nmax_conections = 1\n").is_err());
    }

    #[test]
    fn presign_downloads_lifetime() {
        assert_eq!(parse_presign_downloads(300).unwrap().as_secs(), 300);
        for bad in [0, 604_801] {
            let message = parse_presign_downloads(bad).unwrap_err().to_string();
            assert!(message.contains("presign_downloads"), "{message}");
        }
        let file: ConfigFile =
            toml::from_str("artifacts = \"s3://depot\"\npresign_downloads = 60").unwrap();
        let s = Settings::from_parts(&Overrides::default(), file, Path::new(""), None).unwrap();
        assert_eq!(
            s.artifacts,
            ArtifactsUrl::S3 {
                bucket: "depot".into(),
                presign_downloads: Some(std::time::Duration::from_secs(60)),
            }
        );
        let file: ConfigFile = toml::from_str("presign_downloads = 60").unwrap();
        let message = Settings::from_parts(&Overrides::default(), file, Path::new(""), None)
            .unwrap_err()
            .to_string();
        assert!(message.contains("s3://"), "{message}");
    }

    #[test]
    fn rejects_bad_urls() {
        assert!(parse_database("mysql://x").is_err());
        assert!(parse_artifacts("s3://").is_err());
        assert!(parse_public_url("ftp://x").is_err());
        assert!(parse_public_url("https://x\"; rm -rf /").is_err());
        assert_eq!(
            parse_artifacts("s3://bucket").unwrap(),
            ArtifactsUrl::S3 {
                bucket: "bucket".into(),
                presign_downloads: None,
            }
        );
        assert!(matches!(
            parse_database("postgres://depot@db/depot").unwrap(),
            DatabaseUrl::Postgres(_)
        ));
    }
}
