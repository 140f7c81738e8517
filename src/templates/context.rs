//! What a template sees (CONTRACT 3): plain serialisable data, built once per package.

use crate::domain::{Platform, Sha256, Version};
use crate::org::Org;
use serde::Serialize;
use std::collections::BTreeMap;

/// The prefix of the keys depot itself writes into `deploy.properties`; an org setting cannot
/// take one of them over.
pub const DEPOT_KEY_PREFIX: &str = "DEPOT_";

#[derive(Debug, Clone, Serialize)]
pub struct RenderContext {
    pub org: OrgContext,
    pub release: ReleaseContext,
    pub platform: PlatformContext,
    pub payload: PayloadContext,
    pub server: ServerContext,
    /// The minisign public key: the base64 line of `depot.pub`.
    pub signing_key: String,
}

/// The org as templates see it. Its `Debug` shows the registration key's first group only.
#[derive(Clone, Serialize)]
pub struct OrgContext {
    pub code: String,
    pub name: String,
    pub registration_key: String,
    /// The org's contact address; empty when it has none.
    pub contact: String,
    pub channel: String,
    pub backup: BackupContext,
    /// Every setting of the org, vendor keys and depot's own policy keys alike.
    pub settings: BTreeMap<String, String>,
    /// The settings the backup client reads at install: upper-case keys (`CP_SILENT`,
    /// `DEPLOYMENT_URL`, ...), without any `DEPOT_*` key, which depot alone writes.
    pub vendor_settings: BTreeMap<String, String>,
}

impl std::fmt::Debug for OrgContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrgContext")
            .field("code", &self.code)
            .field("name", &self.name)
            .field(
                "registration_key",
                &crate::domain::RegistrationKey::redact(&self.registration_key),
            )
            .field("contact", &self.contact)
            .field("channel", &self.channel)
            .field("backup", &self.backup)
            .field("settings", &self.settings)
            .field("vendor_settings", &self.vendor_settings)
            .finish()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BackupContext {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReleaseContext {
    pub version: String,
    pub notes: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlatformContext {
    /// `windows-x86_64`
    pub name: String,
    /// `windows`
    pub os: String,
    /// `x86_64`
    pub arch: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PayloadContext {
    pub file_name: String,
    /// 64 lower-case hex characters.
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerContext {
    pub public_url: String,
}

/// A key the backup client reads: `[A-Z][A-Z0-9_]*`, and not one of depot's own.
pub fn is_vendor_key(key: &str) -> bool {
    let mut bytes = key.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_uppercase())
        && bytes.all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && !key.starts_with(DEPOT_KEY_PREFIX)
}

impl RenderContext {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        org: &Org,
        version: &Version,
        notes: &str,
        platform: Platform,
        payload_file_name: &str,
        payload_sha256: &Sha256,
        payload_size: u64,
        public_url: &str,
        signing_key_line: &str,
    ) -> Self {
        let config = &org.config;
        RenderContext {
            org: OrgContext {
                code: org.code.to_string(),
                name: config.name.clone(),
                registration_key: org.registration_key.as_str().to_string(),
                contact: config.contact_email.clone().unwrap_or_default(),
                channel: config.channel.to_string(),
                backup: BackupContext {
                    include: config.backup.include.clone(),
                    exclude: config.backup.exclude.clone(),
                },
                settings: config.settings.clone(),
                vendor_settings: config
                    .settings
                    .iter()
                    .filter(|(k, _)| is_vendor_key(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            },
            release: ReleaseContext {
                version: version.to_string(),
                notes: notes.to_string(),
            },
            platform: PlatformContext {
                name: platform.as_str().to_string(),
                os: platform.os().as_str().to_string(),
                arch: platform.arch().as_str().to_string(),
            },
            payload: PayloadContext {
                file_name: payload_file_name.to_string(),
                sha256: payload_sha256.to_hex(),
                size: payload_size,
            },
            server: ServerContext {
                public_url: public_url.to_string(),
            },
            signing_key: signing_key_line.trim().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_keys() {
        for k in ["CP_SILENT", "DEPLOYMENT_URL", "SSL_WHITELIST", "X1"] {
            assert!(is_vendor_key(k), "{k}");
        }
        for k in [
            "",
            "backup.encrypt",
            "Cp_Silent",
            "DEPOT_SERVER_URL",
            "1X",
            "A-B",
            "A.B",
        ] {
            assert!(!is_vendor_key(k), "{k}");
        }
    }
}
