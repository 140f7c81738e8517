//! An org's configuration: what its partner sets and what its installers carry (CONTRACT 3).
//!
//! `OrgConfig` is valid by construction: `OrgConfigInput` is what arrives (TOML file, JSON body,
//! web form) and `OrgConfig::try_from` enforces every limit, so that nothing oversized or able to
//! inject a line into `deploy.properties` reaches the templates or the store.

mod overlay;

pub use overlay::{
    check_beside_file, check_beside_payload, check_not_protected, OverlayNameError, PROTECTED_FILES,
};

use crate::domain::{Channel, DomainError, OrgCode, RegistrationKey, Version};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const MAX_PATTERNS: usize = 500;
pub const MAX_PATTERN_LEN: usize = 1024;
pub const MAX_SETTINGS: usize = 100;
pub const MAX_SETTING_VALUE_LEN: usize = 1024;
pub const MAX_NAME_LEN: usize = 200;
/// Overlay files are scripts and images, not payloads.
pub const MAX_OVERLAY_FILE_SIZE: usize = 1024 * 1024;
pub const MAX_OVERLAY_FILES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum OrgError {
    #[error(transparent)]
    Name(#[from] DomainError),
    #[error("invalid {field}: {rule}")]
    Invalid { field: String, rule: String },
    #[error("cannot parse the org file: {0}")]
    Toml(String),
    #[error(transparent)]
    Overlay(#[from] OverlayNameError),
}

fn invalid(field: impl Into<String>, rule: impl Into<String>) -> OrgError {
    OrgError::Invalid {
        field: field.into(),
        rule: rule.into(),
    }
}

/// Which files a device backs up. Exclusions win over inclusions (FIELD-NOTES).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupSelection {
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// The org configuration as it arrives from a partner, before validation.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OrgConfigInput {
    pub name: String,
    #[serde(default)]
    pub contact_email: Option<String>,
    #[serde(default)]
    pub seats: Option<u32>,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub pinned_version: Option<String>,
    #[serde(default)]
    pub backup: BackupSelection,
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

/// A validated org configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrgConfig {
    pub name: String,
    pub contact_email: Option<String>,
    pub seats: u32,
    pub channel: Channel,
    pub pinned_version: Option<Version>,
    pub backup: BackupSelection,
    pub settings: BTreeMap<String, String>,
}

impl OrgConfig {
    /// A new org's configuration: the default backup selection and settings.
    pub fn new(name: &str) -> Result<Self, OrgError> {
        OrgConfig::try_from(OrgConfigInput {
            name: name.to_string(),
            backup: default_backup_selection(),
            settings: default_settings(),
            ..Default::default()
        })
    }

    /// The canonical JSON of the configuration; its SHA-256 is the package's `config_sha256`.
    pub fn canonical_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn to_input(&self) -> OrgConfigInput {
        OrgConfigInput {
            name: self.name.clone(),
            contact_email: self.contact_email.clone(),
            seats: Some(self.seats),
            channel: Some(self.channel.to_string()),
            pinned_version: self.pinned_version.as_ref().map(ToString::to_string),
            backup: self.backup.clone(),
            settings: self.settings.clone(),
        }
    }
}

fn check_text(field: &str, value: &str, max: usize) -> Result<(), OrgError> {
    if value.chars().count() > max {
        return Err(invalid(field, format!("must be at most {max} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(
            field,
            "must not contain control characters or line breaks",
        ));
    }
    Ok(())
}

fn check_patterns(field: &str, patterns: &[String]) -> Result<(), OrgError> {
    if patterns.len() > MAX_PATTERNS {
        return Err(invalid(field, format!("at most {MAX_PATTERNS} patterns")));
    }
    for (i, p) in patterns.iter().enumerate() {
        let field = format!("{field}[{}]", i + 1);
        if p.trim().is_empty() {
            return Err(invalid(field, "a pattern must not be empty"));
        }
        check_text(&field, p, MAX_PATTERN_LEN)?;
        check_regex(&field, p.trim())?;
    }
    Ok(())
}

/// The backup client reads each pattern as a regular expression: one it cannot compile would
/// be shipped to every machine and fail there, so it is refused here with where it breaks.
fn check_regex(field: &str, pattern: &str) -> Result<(), OrgError> {
    if let Err(e) = regex_syntax::Parser::new().parse(pattern) {
        let (offset, kind) = match &e {
            regex_syntax::Error::Parse(e) => (e.span().start.offset, e.kind().to_string()),
            regex_syntax::Error::Translate(e) => (e.span().start.offset, e.kind().to_string()),
            other => (0, other.to_string()),
        };
        let column = pattern[..offset.min(pattern.len())].chars().count() + 1;
        return Err(invalid(
            field,
            format!("{pattern:?} is not a valid regular expression: {kind} at character {column}"),
        ));
    }
    // Size limits the parser does not check.
    regex::Regex::new(pattern).map_err(|e| {
        invalid(
            field,
            format!(
                "{pattern:?} is not a valid regular expression: {}",
                e.to_string().lines().last().unwrap_or_default().trim()
            ),
        )
    })?;
    Ok(())
}

fn check_email(email: &str) -> Result<(), OrgError> {
    check_text("contact_email", email, 254)?;
    let ok = match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !email.contains(char::is_whitespace)
                && !domain.contains('@')
        }
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "contact_email",
            "must be an address like it-help@physics.example.edu",
        ))
    }
}

impl TryFrom<OrgConfigInput> for OrgConfig {
    type Error = OrgError;

    fn try_from(input: OrgConfigInput) -> Result<Self, OrgError> {
        let name = input.name.trim().to_string();
        if name.is_empty() {
            return Err(invalid("name", "must not be empty"));
        }
        check_text("name", &name, MAX_NAME_LEN)?;
        // Names and contacts are shown to identify the org; patterns and settings are paths and
        // values for the client, where a ZWNJ can be part of a real (Persian) folder name.
        crate::domain::check_shown_text("org name", &name)?;
        let contact_email = match input.contact_email.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(e) => {
                check_email(e)?;
                crate::domain::check_shown_text("contact_email", e)?;
                Some(e.to_string())
            }
        };
        check_patterns("backup.include", &input.backup.include)?;
        check_patterns("backup.exclude", &input.backup.exclude)?;
        if input.settings.len() > MAX_SETTINGS {
            return Err(invalid(
                "settings",
                format!("at most {MAX_SETTINGS} settings"),
            ));
        }
        for (key, value) in &input.settings {
            let key_ok = (1..=64).contains(&key.len())
                && key.as_bytes()[0].is_ascii_alphabetic()
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
            if !key_ok {
                return Err(invalid(
                    format!("settings key {key:?}"),
                    "must be 1-64 characters of A-Z, a-z, 0-9, '_', '.', '-', starting with a letter",
                ));
            }
            check_text(&format!("settings.{key}"), value, MAX_SETTING_VALUE_LEN)?;
        }
        Ok(OrgConfig {
            name,
            contact_email,
            seats: input.seats.unwrap_or(0),
            channel: match input.channel.as_deref() {
                None | Some("") => Channel::stable(),
                Some(c) => Channel::parse(c)?,
            },
            pinned_version: match input.pinned_version.as_deref() {
                None | Some("") => None,
                Some(v) => Some(Version::parse(v)?),
            },
            backup: BackupSelection {
                include: input
                    .backup
                    .include
                    .iter()
                    .map(|p| p.trim().to_string())
                    .collect(),
                exclude: input
                    .backup
                    .exclude
                    .iter()
                    .map(|p| p.trim().to_string())
                    .collect(),
            },
            settings: input.settings,
        })
    }
}

/// An org as stored: its code, its configuration and its secret registration key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Org {
    pub code: OrgCode,
    pub registration_key: RegistrationKey,
    #[serde(flatten)]
    pub config: OrgConfig,
    /// Unix seconds.
    pub created_at: i64,
    pub updated_at: i64,
}

/// The TOML file of `depot org set CODE --file ORG.toml`: the configuration plus overlay files,
/// named by their path in the package and read from paths relative to the TOML file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgFile {
    /// What `depot org export` saw; `org set` refuses the file once the org has changed since.
    #[serde(default)]
    pub revision: Option<String>,
    #[serde(flatten)]
    pub config: OrgConfigInput,
    #[serde(default)]
    pub files: BTreeMap<String, std::path::PathBuf>,
}

/// What `depot org export` prints: an `OrgFile` with its revision.
#[derive(Debug, Serialize)]
pub struct OrgFileOut {
    pub revision: String,
    #[serde(flatten)]
    pub config: OrgConfigInput,
    pub files: BTreeMap<String, String>,
}

impl OrgFileOut {
    pub fn to_toml(&self) -> Result<String, OrgError> {
        toml::to_string(self).map_err(|e| OrgError::Toml(e.to_string()))
    }
}

impl OrgFile {
    pub fn parse(text: &str) -> Result<Self, OrgError> {
        toml::from_str(text).map_err(|e| OrgError::Toml(e.to_string().trim().replace('\n', " ")))
    }
}

/// The selection a new org starts with: the user's home, without caches, temp files and data
/// that restores better from elsewhere. Patterns are case-insensitive regular expressions on
/// forward-slash paths, with an optional OS prefix, as the backup client reads them.
pub fn default_backup_selection() -> BackupSelection {
    let lines = |s: &[&str]| s.iter().map(|p| p.to_string()).collect();
    BackupSelection {
        include: lines(&["win:C:/Users/", "mac:/Users/", "linux:/home/"]),
        exclude: lines(&[
            "(?i).*/(Temp|tmp|Cache|Caches|cache)/.*",
            "(?i).*/AppData/Local/(Temp|Microsoft/Windows/INetCache)/.*",
            "(?i)mac:.*/Library/(Caches|Logs|Containers/.*/Data/Library/Caches)/.*",
            "(?i)linux:.*/\\.cache/.*",
            "(?i).*/node_modules/.*",
            "(?i).*/\\.git/objects/.*",
            "(?i).*\\.(vmdk|vdi|vhdx?|qcow2|iso)$",
            "(?i).*\\.(ost|tmp|part|crdownload)$",
            "(?i).*/(\\$Recycle\\.Bin|\\.Trash|\\.Trashes)/.*",
            "(?i).*/(OneDrive|Dropbox|Google Drive|Box)( - [^/]*)?/.*",
        ]),
    }
}

pub fn default_settings() -> BTreeMap<String, String> {
    [
        ("CP_SILENT", "true"),
        ("DEVICE_CLOAKED", "false"),
        ("backup.frequency_minutes", "15"),
        ("backup.retention_days", "90"),
        ("backup.encrypt", "true"),
        ("settings.locked", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_org_has_defaults() {
        let c = OrgConfig::new("Physics").unwrap();
        assert_eq!(c.channel, Channel::stable());
        assert!(!c.backup.exclude.is_empty());
        assert_eq!(OrgConfig::try_from(c.to_input()).unwrap(), c);
    }

    #[test]
    fn rejects_injection_and_oversize() {
        let base = || OrgConfigInput {
            name: "X".into(),
            ..Default::default()
        };
        let mut i = base();
        i.settings.insert(
            "DEPLOYMENT_URL".into(),
            "x\nDEPLOYMENT_URL=https://evil".into(),
        );
        assert!(OrgConfig::try_from(i)
            .unwrap_err()
            .to_string()
            .contains("settings.DEPLOYMENT_URL"));
        let mut i = base();
        i.settings.insert("bad key".into(), "x".into());
        assert!(OrgConfig::try_from(i).is_err());
        let mut i = base();
        i.backup.exclude = vec!["x".repeat(MAX_PATTERN_LEN + 1)];
        assert!(OrgConfig::try_from(i)
            .unwrap_err()
            .to_string()
            .contains("backup.exclude[1]"));
        let mut i = base();
        i.backup.include = vec!["a".into(); MAX_PATTERNS + 1];
        assert!(OrgConfig::try_from(i).is_err());
        let mut i = base();
        i.name = "  ".into();
        assert!(OrgConfig::try_from(i).is_err());
        let mut i = base();
        i.contact_email = Some("not-an-address".into());
        assert!(OrgConfig::try_from(i)
            .unwrap_err()
            .to_string()
            .contains("contact_email"));
        let mut i = base();
        i.channel = Some("Beta!".into());
        assert!(OrgConfig::try_from(i)
            .unwrap_err()
            .to_string()
            .contains("channel"));
    }

    #[test]
    fn patterns_must_compile_as_regular_expressions() {
        let with = |exclude: &str| OrgConfigInput {
            name: "X".into(),
            backup: BackupSelection {
                include: vec!["linux:/home/".into()],
                exclude: vec!["(?i).*\\.iso$".into(), exclude.into()],
            },
            ..Default::default()
        };
        let message = OrgConfig::try_from(with("(?i).*/(.*"))
            .unwrap_err()
            .to_string();
        assert!(message.contains("backup.exclude[2]"), "{message}");
        assert!(message.contains("\"(?i).*/(.*\""), "{message}");
        assert!(
            message.contains("unclosed group at character 8"),
            "{message}"
        );
        let message = OrgConfig::try_from(with("[unclosed"))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("unclosed character class at character 1"),
            "{message}"
        );
        assert!(OrgConfig::try_from(with("(?i).*/(Temp|tmp)/.*")).is_ok());
        // Every default pattern compiles.
        assert!(OrgConfig::new("Physics").is_ok());
    }

    #[test]
    fn toml_file_parses_and_refuses_unknown_fields() {
        let f = OrgFile::parse(
            r#"
name = "Physics"
contact_email = "it@physics.example.edu"
seats = 120
channel = "beta"
[backup]
include = ["mac:/Users/"]
exclude = [".*\\.iso$"]
[settings]
CP_SILENT = "true"
[files]
"detect-user.sh" = "files/detect-user.sh"
"#,
        )
        .unwrap();
        let c = OrgConfig::try_from(f.config).unwrap();
        assert_eq!(c.seats, 120);
        assert_eq!(f.files.len(), 1);
        assert!(OrgFile::parse("name = \"x\"\nsaets = 3\n")
            .unwrap_err()
            .to_string()
            .contains("saets"));
    }
}
