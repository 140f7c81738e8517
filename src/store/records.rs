//! The records the metadata store keeps. Plain data; every name in them is a domain type.

use crate::domain::{Channel, EntryName, OrgCode, Platform, Sha256, Version};
use crate::package::PayloadPart;
use serde::{Deserialize, Serialize};

/// A file an org adds to its packages (CONTRACT 3), replacing a template output of the same name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay {
    pub name: EntryName,
    pub bytes: Vec<u8>,
    pub updated_at: i64,
}

/// A client release: one payload per platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Release {
    pub version: Version,
    pub notes: String,
    /// Unix seconds; also the timestamp of every entry of its packages.
    pub created_at: i64,
    pub payloads: Vec<ReleasePayload>,
    pub yanked: Option<Yank>,
}

impl Release {
    pub fn payload(&self, platform: Platform) -> Option<&PayloadPart> {
        self.payloads
            .iter()
            .find(|p| p.platform == platform)
            .map(|p| &p.part)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleasePayload {
    pub platform: Platform,
    pub part: PayloadPart,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Yank {
    pub reason: String,
    pub at: i64,
}

/// A release published on a channel, and how far its rollout reaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rollout {
    pub version: Version,
    pub channel: Channel,
    /// 0-100.
    pub percent: u8,
    pub paused: bool,
    /// Why it is paused: an admin's action or the automatic halt.
    pub pause_reason: Option<String>,
    pub published_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelSettings {
    pub channel: Channel,
    /// Devices below it get a mandatory update.
    pub min_version: Option<Version>,
    pub updated_at: i64,
}

/// A stretch of a blob. A package is the concatenation of its segments: the payload part shared
/// by every package of its release and platform, then the package's own tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub blob: Sha256,
    pub offset: u64,
    pub len: u64,
}

/// A built, signed department (or default) installer package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Package {
    pub org: OrgCode,
    pub version: Version,
    pub platform: Platform,
    /// `{org}-{version}-{platform}.zip`.
    pub file_name: String,
    pub size: u64,
    pub sha256: Sha256,
    pub segments: Vec<Segment>,
    /// The `<package>.minisig` file's text.
    pub minisig: String,
    pub config_sha256: Sha256,
    /// Digest of every input of the build; a rebuild with the same key is skipped.
    pub build_key: Sha256,
    pub built_at: i64,
}

/// `SHA256SUMS` and `SHA256SUMS.minisig` of an org and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksums {
    pub org: OrgCode,
    pub version: Version,
    pub text: String,
    pub minisig: String,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Partner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Partner => "partner",
        }
    }
}

/// An API token. Only the SHA-256 of its secret is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenRecord {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// The org of a partner token.
    pub org: Option<OrgCode>,
    #[serde(skip)]
    pub secret_hash: Sha256,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// Who did what, to what, from where, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEvent {
    /// Assigned by the store.
    pub id: i64,
    pub at: i64,
    /// The token name, `cli:<user>` for the command line, `device:<id>` for a device.
    pub actor: String,
    pub org: Option<OrgCode>,
    /// Dotted, e.g. `org.update`, `release.publish`, `package.download`.
    pub action: String,
    pub target: String,
    /// The client address; `local` for the command line.
    pub address: String,
    /// Free text such as a yank or halt reason.
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub org: Option<OrgCode>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub since: Option<i64>,
    /// Newest first, at most this many (the store caps it).
    pub limit: Option<u32>,
}

impl AuditFilter {
    pub const DEFAULT_LIMIT: u32 = 100;
    pub const MAX_LIMIT: u32 = 1000;

    /// How many events a query returns at most: the asked limit, 100 when none, never more than
    /// 1000. Every store answers alike.
    pub fn effective_limit(&self) -> u32 {
        self.limit
            .unwrap_or(Self::DEFAULT_LIMIT)
            .min(Self::MAX_LIMIT)
    }
}

/// An enrolled client machine. Its token is stored only as a hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    pub id: String,
    pub org: OrgCode,
    pub hostname: String,
    pub platform: Platform,
    pub os_version: String,
    pub user: String,
    #[serde(skip)]
    pub token_hash: Sha256,
    pub enrolled_at: i64,
    pub deactivated_at: Option<i64>,
    pub last_seen_at: Option<i64>,
    pub last_address: Option<String>,
    pub current_version: Option<Version>,
}

/// One update check of a device, recorded in batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkin {
    pub device_id: String,
    pub at: i64,
    pub address: String,
    pub version: Option<Version>,
    pub platform: Platform,
    /// The version offered to the device on the channel, if any.
    pub offered: Option<(Version, Channel)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Downloaded,
    Installed,
    Failed,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Downloaded => "downloaded",
            EventKind::Installed => "installed",
            EventKind::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            EventKind::Downloaded,
            EventKind::Installed,
            EventKind::Failed,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// What a device reported about a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEvent {
    pub device_id: String,
    pub org: OrgCode,
    pub version: Option<Version>,
    pub channel: Channel,
    pub kind: EventKind,
    pub message: String,
    pub at: i64,
}

/// How far a rollout has got: devices offered it, and reports by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RolloutCounts {
    pub offered: u64,
    pub downloaded: u64,
    pub installed: u64,
    pub failed: u64,
}

/// The last signed release manifest of an org, platform and channel; its serial only grows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRecord {
    pub org: OrgCode,
    pub platform: Platform,
    pub channel: Channel,
    pub serial: u64,
    pub json: String,
    pub minisig: String,
}

/// A rollout held for one org by the automatic halt (rule 6): that org's devices are not offered
/// the release on the channel until an admin resumes the rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RolloutHold {
    pub version: Version,
    pub channel: Channel,
    pub org: OrgCode,
    pub reason: String,
    pub at: i64,
}

/// One org's counted reports (rule 6) on a release and channel since the last resume, in
/// devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountedTally {
    pub org: OrgCode,
    pub installed: u64,
    pub failed: u64,
}

/// What recording a device's report did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportOutcome {
    /// The device was never offered the release on the channel: nothing was recorded.
    NotOffered,
    Recorded {
        /// [`super::MetaStore::rollout_counts`] as this commit left them; `None` for a report
        /// that names no release.
        counts: Option<RolloutCounts>,
        /// The report is a failure that counts (rule 6) and had not been counted before.
        new_counted_failure: bool,
        /// With a new counted failure, every org's counted reports since the last resume
        /// (empty otherwise: nothing can tip the halt).
        tallies: Vec<CountedTally>,
    },
}

/// The depot agent's executable for a platform (CONTRACT 7a): a blob named by its SHA-256,
/// carried by every package of that platform built after it was added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentBinary {
    pub platform: Platform,
    /// The executable's SHA-256, which is also its blob key.
    pub sha256: Sha256,
    pub size: u64,
    pub added_at: i64,
}

/// A person of an org's group of eligible users, as the last directory sync saw them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirectoryUser {
    /// The directory's `uid` (the campus id), lower case.
    pub uid: String,
    pub name: Option<String>,
    pub mail: Option<String>,
}

/// Why a device was flagged for central IT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlagKind {
    /// Enrolled by someone outside the org's group of eligible users.
    Outsider,
    /// Its user left the group, and the org flags instead of deactivating.
    Ineligible,
    /// A partner reported it as unauthorized.
    Partner,
}

impl FlagKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FlagKind::Outsider => "outsider",
            FlagKind::Ineligible => "ineligible",
            FlagKind::Partner => "partner",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [FlagKind::Outsider, FlagKind::Ineligible, FlagKind::Partner]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// Where a flag stands: open until central IT resolves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlagStatus {
    Open,
    Deactivated,
    Dismissed,
}

impl FlagStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FlagStatus::Open => "open",
            FlagStatus::Deactivated => "deactivated",
            FlagStatus::Dismissed => "dismissed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            FlagStatus::Open,
            FlagStatus::Deactivated,
            FlagStatus::Dismissed,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// A device brought to central IT's attention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flag {
    pub id: u64,
    pub org: OrgCode,
    pub device_id: String,
    pub kind: FlagKind,
    pub reason: String,
    pub raised_by: String,
    pub raised_at: i64,
    pub status: FlagStatus,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<i64>,
    pub note: Option<String>,
}

/// A flag to raise; `id` and the resolution come later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFlag {
    pub device_id: String,
    pub kind: FlagKind,
    pub reason: String,
    pub raised_by: String,
}

/// What one directory sync changes in one org, applied in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryChange {
    pub org: OrgCode,
    /// The whole group as the directory has it now; replaces the stored one.
    pub users: Vec<DirectoryUser>,
    /// Active devices to deactivate, with the reason shown beside them.
    pub deactivate: Vec<(String, String)>,
    pub flags: Vec<NewFlag>,
    pub at: i64,
}

/// What [`DirectoryChange`] did: the devices really deactivated and flags really raised (a
/// device deactivated meanwhile, or flagged already for the same kind, is left out).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectoryOutcome {
    pub deactivated: Vec<String>,
    pub flagged: Vec<String>,
}
