//! Settings: where each comes from and what it defaults to (CONTRACT 5).
//!
//! A setting comes from the command-line flag, else the environment (`DEPOT_*`, handled by clap),
//! else `depot.toml`, else the default. Relative paths in `depot.toml` are relative to the file.
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
    /// `[directory.ldap]` (CONTRACT 10).
    pub directory: Option<DirectoryFile>,
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
            .unwrap_or_else(|| "artifacts".into());
        let templates = o
            .templates
            .clone()
            .or(file.templates.map(relative))
            .unwrap_or_else(|| "installer-templates".into());
        let signing_key = o
            .signing_key
            .clone()
            .or(file.signing_key.map(relative))
            .unwrap_or_else(|| base.join("keys/depot.key"));
        let database = match o.database.clone().or(file.database) {
            Some(url) => parse_database(&url)?,
            None => DatabaseUrl::Sqlite(data_dir.join("depot.db")),
        };
        let mut artifacts = match o.artifacts.clone().or(file.artifacts) {
            Some(url) => parse_artifacts(&url)?,
            None => ArtifactsUrl::File(data_dir.clone()),
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
        Ok(Settings {
            config_file,
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
            ldap: file.directory.and_then(|d| d.ldap).map(|mut l| {
                l.bind_password_file = l.bind_password_file.map(relative);
                l
            }),
        })
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
