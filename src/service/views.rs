//! The JSON shapes of depot's resources, shared by the HTTP API and `--json` output of the
//! command line, so that `depot org show --json` prints what `GET /v1/orgs/{org}` gives.

use crate::domain::{Channel, OrgCode, Platform, Version};
use crate::org::{BackupSelection, Org};
use crate::store::{AuditEvent, Package, Release, Rollout, TokenRecord};
use serde::Serialize;
use std::collections::BTreeMap;

/// Unix seconds as RFC 3339 text.
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// An org as the API and `--json` show it. Its `Debug` shows the registration key's first group
/// only.
#[derive(Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct OrgView {
    pub code: String,
    pub name: String,
    pub contact_email: Option<String>,
    pub seats: u32,
    pub channel: String,
    pub pinned_version: Option<String>,
    #[schema(value_type = Object)]
    pub backup: BackupSelection,
    pub settings: BTreeMap<String, String>,
    pub registration_key: String,
    pub created_at: String,
    pub updated_at: String,
    /// The client contact; its `email` is `contact_email`.
    pub contact: crate::org::Contact,
    pub users_group: Option<String>,
    pub partners_group: Option<String>,
    pub on_ineligible: crate::org::OnIneligible,
    pub stale_after_days: u32,
}

impl std::fmt::Debug for OrgView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrgView")
            .field("code", &self.code)
            .field("name", &self.name)
            .field("contact_email", &self.contact_email)
            .field("seats", &self.seats)
            .field("channel", &self.channel)
            .field("pinned_version", &self.pinned_version)
            .field("backup", &self.backup)
            .field("settings", &self.settings)
            .field(
                "registration_key",
                &crate::domain::RegistrationKey::redact(&self.registration_key),
            )
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

impl From<&Org> for OrgView {
    fn from(org: &Org) -> Self {
        OrgView {
            code: org.code.to_string(),
            name: org.config.name.clone(),
            contact_email: org.config.contact_email.clone(),
            seats: org.config.seats,
            channel: org.config.channel.to_string(),
            pinned_version: org.config.pinned_version.as_ref().map(ToString::to_string),
            backup: org.config.backup.clone(),
            settings: org.config.settings.clone(),
            registration_key: org.registration_key.to_string(),
            created_at: rfc3339(org.created_at),
            updated_at: rfc3339(org.updated_at),
            contact: crate::org::Contact {
                email: org.config.contact_email.clone(),
                ..org.config.contact.clone()
            },
            users_group: org.config.users_group.clone(),
            partners_group: org.config.partners_group.clone(),
            on_ineligible: org.config.on_ineligible,
            stale_after_days: org.config.stale_after_days,
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PayloadView {
    pub platform: String,
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ChannelRolloutView {
    pub channel: String,
    pub percent: u8,
    pub paused: bool,
    pub pause_reason: Option<String>,
    pub published_at: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct YankView {
    pub reason: String,
    pub at: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReleaseView {
    pub version: String,
    pub notes: String,
    pub created_at: String,
    pub yanked: Option<YankView>,
    pub payloads: Vec<PayloadView>,
    pub channels: Vec<ChannelRolloutView>,
}

impl ReleaseView {
    pub fn new(release: &Release, rollouts: &[Rollout]) -> Self {
        ReleaseView {
            version: release.version.to_string(),
            notes: release.notes.clone(),
            created_at: rfc3339(release.created_at),
            yanked: release.yanked.as_ref().map(|y| YankView {
                reason: y.reason.clone(),
                at: rfc3339(y.at),
            }),
            payloads: release
                .payloads
                .iter()
                .map(|p| PayloadView {
                    platform: p.platform.to_string(),
                    name: p.part.file_name.to_string(),
                    size: p.part.size,
                    sha256: p.part.sha256.to_hex(),
                })
                .collect(),
            channels: rollouts
                .iter()
                .filter(|r| r.version == release.version)
                .map(|r| ChannelRolloutView {
                    channel: r.channel.to_string(),
                    percent: r.percent,
                    paused: r.paused,
                    pause_reason: r.pause_reason.clone(),
                    published_at: rfc3339(r.published_at),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PackageView {
    pub org: String,
    pub version: String,
    pub platform: String,
    pub file_name: String,
    pub size: u64,
    pub sha256: String,
    /// Path of the download, relative to the server's public URL.
    pub url: String,
    pub minisig_url: String,
    pub built_at: String,
}

impl From<&Package> for PackageView {
    fn from(p: &Package) -> Self {
        let url = download_path(&p.org, &p.version, &p.file_name);
        PackageView {
            org: p.org.to_string(),
            version: p.version.to_string(),
            platform: p.platform.to_string(),
            file_name: p.file_name.clone(),
            size: p.size,
            sha256: p.sha256.to_hex(),
            minisig_url: format!("{url}.minisig"),
            url,
            built_at: rfc3339(p.built_at),
        }
    }
}

/// `/v1/download/{org}/{version}/{file}`.
pub fn download_path(org: &OrgCode, version: &Version, file: &str) -> String {
    format!("/v1/download/{org}/{version}/{file}")
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub role: String,
    pub org: Option<String>,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

impl From<&TokenRecord> for TokenView {
    fn from(t: &TokenRecord) -> Self {
        TokenView {
            id: t.id.clone(),
            name: t.name.clone(),
            role: t.role.as_str().to_string(),
            org: t.org.as_ref().map(ToString::to_string),
            created_at: rfc3339(t.created_at),
            revoked_at: t.revoked_at.map(rfc3339),
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditView {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub org: Option<String>,
    pub action: String,
    pub target: String,
    pub address: String,
    pub detail: Option<String>,
}

impl From<&AuditEvent> for AuditView {
    fn from(e: &AuditEvent) -> Self {
        AuditView {
            id: e.id,
            at: rfc3339(e.at),
            actor: e.actor.clone(),
            org: e.org.as_ref().map(ToString::to_string),
            action: e.action.clone(),
            target: e.target.clone(),
            address: e.address.clone(),
            detail: e.detail.clone(),
        }
    }
}

/// Used by `latest` lookups and the portal's recommended installers: the newest non-yanked
/// release fully rolled out (100%, not paused) on a channel, with a payload for the platform
/// (any platform when `None`). A release still at 10% is not what a new machine should get.
pub fn newest_published<'a>(
    releases: &'a [Release],
    rollouts: &[Rollout],
    channel: &Channel,
    platform: Option<Platform>,
) -> Option<&'a Release> {
    releases
        .iter()
        .filter(|r| r.yanked.is_none())
        .filter(|r| {
            rollouts.iter().any(|o| {
                &o.channel == channel && o.version == r.version && o.percent == 100 && !o.paused
            })
        })
        .filter(|r| platform.is_none_or(|p| r.payload(p).is_some()))
        .max_by(|a, b| a.version.cmp(&b.version))
}

/// What an org's machines should be installed from: its pinned version when it has one (and
/// it is not yanked and carries the platform), else the newest fully rolled out on `channel`.
pub fn recommended<'a>(
    releases: &'a [Release],
    rollouts: &[Rollout],
    pinned: Option<&crate::domain::Version>,
    channel: &Channel,
    platform: Option<Platform>,
) -> Option<&'a Release> {
    match pinned {
        Some(v) => releases
            .iter()
            .filter(|r| &r.version == v && r.yanked.is_none())
            .find(|r| platform.is_none_or(|p| r.payload(p).is_some())),
        None => newest_published(releases, rollouts, channel, platform),
    }
}

/// A release's rollout on a channel, as a person reads it.
pub fn rollout_state(release: &Release, rollout: Option<&Rollout>) -> String {
    if release.yanked.is_some() {
        return "yanked".into();
    }
    match rollout {
        None => "not published on this channel".into(),
        Some(r) if r.paused => format!("paused at {}%", r.percent),
        Some(r) if r.percent == 100 => "complete".into(),
        Some(r) => format!("rolling out ({}%)", r.percent),
    }
}

#[cfg(test)]
mod recommended_tests {
    use super::*;
    use crate::domain::Version;
    use crate::store::Yank;

    fn release(v: &str, yanked: bool) -> Release {
        Release {
            version: Version::parse(v).unwrap(),
            notes: String::new(),
            created_at: 0,
            payloads: Vec::new(),
            yanked: yanked.then(|| Yank {
                reason: "broken".into(),
                at: 0,
            }),
        }
    }

    fn rollout(v: &str, percent: u8, paused: bool) -> Rollout {
        Rollout {
            version: Version::parse(v).unwrap(),
            channel: Channel::stable(),
            percent,
            paused,
            pause_reason: None,
            published_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn newest_fully_rolled_out_or_pinned() {
        let releases = [
            release("4.0.0", true),
            release("3.0.0", false),
            release("2.0.0", false),
            release("1.0.0", false),
        ];
        let rollouts = [
            rollout("4.0.0", 100, false),
            rollout("3.0.0", 10, false),
            rollout("2.0.0", 100, true),
            rollout("1.0.0", 100, false),
        ];
        let stable = Channel::stable();
        let pick = |pinned: Option<&str>| {
            let pinned = pinned.map(|v| Version::parse(v).unwrap());
            recommended(&releases, &rollouts, pinned.as_ref(), &stable, None)
                .map(|r| r.version.to_string())
        };
        assert_eq!(pick(None).as_deref(), Some("1.0.0"));
        assert_eq!(pick(Some("3.0.0")).as_deref(), Some("3.0.0"));
        assert_eq!(pick(Some("4.0.0")), None);
        let beta = Channel::parse("beta").unwrap();
        assert!(newest_published(&releases, &rollouts, &beta, None).is_none());
        let states: Vec<String> = releases
            .iter()
            .zip(&rollouts)
            .map(|(r, o)| rollout_state(r, Some(o)))
            .collect();
        assert_eq!(
            states,
            ["yanked", "rolling out (10%)", "paused at 100%", "complete"]
        );
    }
}
