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
    /// The org's client contact; `contact.email` is `contact_email` under its newer name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<Contact>,
    /// The directory group (DN or cn) of the people eligible for the service (CONTRACT 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partners_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_ineligible: Option<OnIneligible>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale_after_days: Option<u32>,
}

/// What happens to a device whose user left the org's group of eligible users.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnIneligible {
    /// Its token is refused from its next request on.
    #[default]
    Deactivate,
    /// Central IT is asked to decide (an open flag).
    Flag,
}

impl OnIneligible {
    pub fn as_str(self) -> &'static str {
        match self {
            OnIneligible::Deactivate => "deactivate",
            OnIneligible::Flag => "flag",
        }
    }

    fn is_default(&self) -> bool {
        *self == OnIneligible::Deactivate
    }
}

/// An org's client contact.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

impl Contact {
    /// Only the address (kept as `contact_email`), or nothing: what orgs had before contacts.
    fn has_only_email(&self) -> bool {
        self.name.is_none() && self.phone.is_none()
    }
}

pub const DEFAULT_STALE_AFTER_DAYS: u32 = 7;
const MAX_STALE_AFTER_DAYS: u32 = 365;
const MAX_GROUP_LEN: usize = 1000;

fn is_default_stale(days: &u32) -> bool {
    *days == DEFAULT_STALE_AFTER_DAYS
}

/// The fields of CONTRACT 10 that the stores keep together as one JSON value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryFields {
    #[serde(default)]
    pub users_group: Option<String>,
    #[serde(default)]
    pub partners_group: Option<String>,
    #[serde(default)]
    pub on_ineligible: Option<OnIneligible>,
    #[serde(default)]
    pub stale_after_days: Option<u32>,
    #[serde(default)]
    pub contact_name: Option<String>,
    #[serde(default)]
    pub contact_phone: Option<String>,
}

impl OrgConfigInput {
    /// Puts stored directory fields beside the columns' fields (the stores' rows).
    pub fn with_directory_fields(mut self, fields: DirectoryFields) -> Self {
        self.users_group = fields.users_group;
        self.partners_group = fields.partners_group;
        self.on_ineligible = fields.on_ineligible;
        self.stale_after_days = fields.stale_after_days;
        if fields.contact_name.is_some() || fields.contact_phone.is_some() {
            self.contact = Some(Contact {
                name: fields.contact_name,
                email: None,
                phone: fields.contact_phone,
            });
        }
        self
    }
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
    /// Name and phone; the address is `contact_email` (`email` stays `None` here, so that one
    /// fact has one place). Left out of the canonical JSON when empty, so that orgs from before
    /// contacts keep their `config_sha256`.
    #[serde(skip_serializing_if = "Contact::has_only_email")]
    pub contact: Contact,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users_group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partners_group: Option<String>,
    #[serde(skip_serializing_if = "OnIneligible::is_default")]
    pub on_ineligible: OnIneligible,
    #[serde(skip_serializing_if = "is_default_stale")]
    pub stale_after_days: u32,
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
            contact: (!self.contact.has_only_email()).then(|| self.contact.clone()),
            users_group: self.users_group.clone(),
            partners_group: self.partners_group.clone(),
            on_ineligible: (!self.on_ineligible.is_default()).then_some(self.on_ineligible),
            stale_after_days: (!is_default_stale(&self.stale_after_days))
                .then_some(self.stale_after_days),
        }
    }

    /// What the stores keep as the org's `directory` JSON.
    pub fn directory_fields(&self) -> DirectoryFields {
        DirectoryFields {
            users_group: self.users_group.clone(),
            partners_group: self.partners_group.clone(),
            on_ineligible: Some(self.on_ineligible),
            stale_after_days: Some(self.stale_after_days),
            contact_name: self.contact.name.clone(),
            contact_phone: self.contact.phone.clone(),
        }
    }
}

/// An optional text field: trimmed, empty means absent.
fn optional_text(field: &str, value: Option<&str>, max: usize) -> Result<Option<String>, OrgError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => {
            check_text(field, v, max)?;
            Ok(Some(v.to_string()))
        }
    }
}

fn check_phone(phone: &str) -> Result<(), OrgError> {
    let ok = phone
        .chars()
        .all(|c| c.is_ascii_digit() || " +-().x/".contains(c))
        && phone.chars().any(|c| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "contact.phone",
            "must be a telephone number like +1 773-702-1234",
        ))
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
    check_email_field("contact_email", email)
}

fn check_email_field(field: &str, email: &str) -> Result<(), OrgError> {
    check_text(field, email, 254)?;
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
            field,
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
        let contact_in = input.contact.unwrap_or_default();
        let contact_email = match (contact_email, optional_text("contact.email", contact_in.email.as_deref(), 254)?) {
            (Some(a), Some(b)) if a != b => {
                return Err(invalid(
                    "contact.email",
                    "differs from contact_email, which is the same address under its older name: give one of them",
                ))
            }
            (Some(a), _) => Some(a),
            (None, Some(b)) => {
                check_email_field("contact.email", &b)?;
                Some(b)
            }
            (None, None) => None,
        };
        let contact_phone = optional_text("contact.phone", contact_in.phone.as_deref(), 50)?;
        if let Some(p) = &contact_phone {
            check_phone(p)?;
        }
        let contact = Contact {
            name: optional_text("contact.name", contact_in.name.as_deref(), MAX_NAME_LEN)?,
            email: None,
            phone: contact_phone,
        };
        let users_group =
            optional_text("users_group", input.users_group.as_deref(), MAX_GROUP_LEN)?;
        let partners_group = optional_text(
            "partners_group",
            input.partners_group.as_deref(),
            MAX_GROUP_LEN,
        )?;
        let stale_after_days = input.stale_after_days.unwrap_or(DEFAULT_STALE_AFTER_DAYS);
        if !(1..=MAX_STALE_AFTER_DAYS).contains(&stale_after_days) {
            return Err(invalid(
                "stale_after_days",
                format!("must be 1 to {MAX_STALE_AFTER_DAYS} days"),
            ));
        }
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
            contact,
            users_group,
            partners_group,
            on_ineligible: input.on_ineligible.unwrap_or_default(),
            stale_after_days,
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
    fn directory_fields_round_trip_and_contact_email_is_contact_email() {
        let f = OrgFile::parse(
            r#"
name = "Physics"
contact_email = "it@physics.example.edu"
users_group = "cn=physics-users,ou=groups,dc=example,dc=edu"
partners_group = "physics-partners"
on_ineligible = "flag"
stale_after_days = 14
contact = { name = "Pat Lee", phone = "+1 773-702-1234" }
"#,
        )
        .unwrap();
        let c = OrgConfig::try_from(f.config).unwrap();
        assert_eq!(c.on_ineligible, OnIneligible::Flag);
        assert_eq!(c.stale_after_days, 14);
        assert_eq!(c.contact_email.as_deref(), Some("it@physics.example.edu"));
        assert_eq!(c.contact.name.as_deref(), Some("Pat Lee"));
        let text = toml::to_string(&c.to_input()).unwrap();
        let again = OrgConfig::try_from(OrgFile::parse(&text).unwrap().config).unwrap();
        assert_eq!(again, c);
        let stored = OrgConfigInput {
            name: "Physics".into(),
            contact_email: c.contact_email.clone(),
            ..Default::default()
        }
        .with_directory_fields(c.directory_fields());
        assert_eq!(OrgConfig::try_from(stored).unwrap().contact, c.contact);
        // The new spelling alone works; the two spellings disagreeing is refused.
        let mut i = OrgConfigInput {
            name: "X".into(),
            contact: Some(Contact {
                email: Some("a@b.example.edu".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            OrgConfig::try_from(i.clone())
                .unwrap()
                .contact_email
                .as_deref(),
            Some("a@b.example.edu")
        );
        i.contact_email = Some("c@d.example.edu".into());
        assert!(OrgConfig::try_from(i)
            .unwrap_err()
            .to_string()
            .contains("contact.email"));
        // Orgs from before keep their canonical JSON (and so their config_sha256).
        let old = OrgConfig::new("Physics").unwrap();
        assert!(!old.canonical_json().contains("stale_after_days"));
        assert!(!old.canonical_json().contains("contact\""));
        let bad = OrgConfigInput {
            name: "X".into(),
            stale_after_days: Some(0),
            ..Default::default()
        };
        assert!(OrgConfig::try_from(bad)
            .unwrap_err()
            .to_string()
            .contains("stale_after_days"));
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
