//! The signed release manifest of CONTRACT 6, and the device's checks of an offer against it.
//!
//! A manifest states, for one org, platform and channel, which releases exist with the sha256 and
//! size of the org's package, which are yanked, and the channel's floor and the org's pin. The
//! server signs its compact JSON text with the depot key when that state changes (never per
//! request) and sends the same text and signature with every update check. The device trusts an
//! offer only through [`check_offer`]: that is what defeats a man in the middle who replays an
//! old manifest (serial), mixes in another org's or platform's releases (names), or freezes a
//! device on a stale answer (expiry), even when TLS is broken.
//!
//! This module never reads a clock (time is passed in), never does I/O, and never panics on
//! manifest or signature text, however malformed or large.

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::domain::{Channel, OrgCode, Platform, Sha256, Version};
use crate::signing::{PublicKey, SigningError, SigningKey};

/// The longest a manifest may be valid: `expires_at - issued_at` (CONTRACT 6).
pub const MAX_MANIFEST_VALIDITY_SECS: i64 = 7 * 24 * 3600;
/// The server re-signs a manifest once less than this is left of its validity, so that a device
/// that checks in rarely still gets an answer days away from expiring.
pub const RESIGN_MARGIN_SECS: i64 = MAX_MANIFEST_VALIDITY_SECS / 2;
/// How far in the future `issued_at` may be: device clocks drift.
pub const MAX_CLOCK_SKEW_SECS: i64 = 5 * 60;
/// A manifest lists every release of one org, platform and channel; far larger is not depot's.
pub const MAX_MANIFEST_BYTES: usize = 1 << 20;

/// Why a manifest could not be issued, or why a device refuses an offer. Each refusal is its own
/// variant so that the agent can report exactly what failed; messages are one line.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("unix time {0} cannot be written as an RFC 3339 time")]
    TimeOutOfRange(i64),
    #[error(
        "the release manifest is {size} bytes; a manifest is at most {MAX_MANIFEST_BYTES} bytes"
    )]
    TooLarge { size: usize },
    #[error("the release manifest's signature does not verify with the pinned key: {0}")]
    Signature(#[source] SigningError),
    #[error("the release manifest is not a valid manifest: {0}")]
    Malformed(#[source] serde_json::Error),
    #[error("the release manifest is for org {found}, not for this device's org {expected}")]
    OtherOrg { expected: OrgCode, found: OrgCode },
    #[error(
        "the release manifest is for platform {found}, not for this device's platform {expected}"
    )]
    OtherPlatform { expected: Platform, found: Platform },
    #[error("the release manifest's {field} {value:?} is not an RFC 3339 time")]
    BadTime { field: &'static str, value: String },
    #[error("the release manifest expired at {expires_at}; a stale answer may be holding this device back")]
    Expired { expires_at: String },
    #[error("the release manifest was issued at {issued_at}, in the future (more than {MAX_CLOCK_SKEW_SECS} s ahead of this device's clock)")]
    IssuedInFuture { issued_at: String },
    #[error("the release manifest is valid from {issued_at} to {expires_at}; at most {MAX_MANIFEST_VALIDITY_SECS} s is allowed")]
    ValidityTooLong {
        issued_at: String,
        expires_at: String,
    },
    #[error("the release manifest has serial {serial}, lower than serial {last_serial} accepted before: an old manifest is being replayed")]
    Replayed { serial: u64, last_serial: u64 },
    #[error("the offered version {version} is not in the release manifest")]
    NotListed { version: Version },
    #[error("the offered package of {version} has sha256 {offered}, but the release manifest says {listed}")]
    DigestMismatch {
        version: Version,
        offered: Sha256,
        listed: Sha256,
    },
    #[error("the offered package of {version} has {offered} bytes, but the release manifest says {listed}")]
    SizeMismatch {
        version: Version,
        offered: u64,
        listed: u64,
    },
    #[error("the offered version {version} is yanked in the release manifest")]
    OfferYanked { version: Version },
    #[error("the offer of {offered} is lower than the installed {current} and is not a rollback")]
    Downgrade { offered: Version, current: Version },
    #[error("the offer is a rollback, but the installed version {} is not listed as yanked in the release manifest", display_current(.current))]
    RollbackNotAllowed { current: Option<Version> },
}

fn display_current(current: &Option<Version>) -> String {
    current
        .as_ref()
        .map_or_else(|| "(none)".to_string(), Version::to_string)
}

pub type Result<T> = std::result::Result<T, ManifestError>;

/// The release manifest, field for field as CONTRACT 6 names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseManifest {
    pub org: OrgCode,
    pub platform: Platform,
    pub channel: Channel,
    /// Increases with every change of what the manifest covers; a device never accepts a lower one.
    pub serial: u64,
    /// RFC 3339, UTC.
    pub issued_at: String,
    /// RFC 3339, UTC; at most [`MAX_MANIFEST_VALIDITY_SECS`] after `issued_at`.
    pub expires_at: String,
    pub min_version: Option<Version>,
    pub pinned_version: Option<Version>,
    pub releases: Vec<ManifestRelease>,
}

/// One release of a manifest. `sha256` and `size` are those of the org's package for the
/// manifest's platform and this version: what the device downloads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestRelease {
    pub version: Version,
    pub sha256: Sha256,
    pub size: u64,
    pub yanked: bool,
}

/// What a manifest says, without its serial and validity: the server compares the state it
/// computes with the last one it signed to know when the serial must increase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestState {
    pub org: OrgCode,
    pub platform: Platform,
    pub channel: Channel,
    pub min_version: Option<Version>,
    pub pinned_version: Option<Version>,
    pub releases: Vec<ManifestRelease>,
}

/// A manifest's exact JSON text and its minisign signature, as sent in `manifest` and
/// `manifest_minisig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedManifest {
    pub json: String,
    pub minisig: String,
}

impl ReleaseManifest {
    /// A manifest of `state` issued at `now_unix` and valid for [`MAX_MANIFEST_VALIDITY_SECS`].
    /// Releases are sorted by version so that the same state always gives the same text.
    pub fn issue(state: ManifestState, serial: u64, now_unix: i64) -> Result<Self> {
        let ManifestState {
            org,
            platform,
            channel,
            min_version,
            pinned_version,
            mut releases,
        } = state;
        releases.sort_by(|a, b| a.version.cmp(&b.version));
        let expires = now_unix
            .checked_add(MAX_MANIFEST_VALIDITY_SECS)
            .ok_or(ManifestError::TimeOutOfRange(now_unix))?;
        Ok(Self {
            org,
            platform,
            channel,
            serial,
            issued_at: format_time(now_unix)?,
            expires_at: format_time(expires)?,
            min_version,
            pinned_version,
            releases,
        })
    }

    /// What this manifest says, without serial and validity.
    pub fn state(&self) -> ManifestState {
        ManifestState {
            org: self.org.clone(),
            platform: self.platform,
            channel: self.channel.clone(),
            min_version: self.min_version.clone(),
            pinned_version: self.pinned_version.clone(),
            releases: self.releases.clone(),
        }
    }

    /// The compact JSON text: exactly what is signed and sent.
    pub fn to_json(&self) -> String {
        // Every field serialises to a JSON string, number, bool, null or array of those, so
        // serialisation cannot fail; the fallback keeps that a refusal rather than a panic.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The JSON text and its signature by the depot key. The trusted comment names the org,
    /// platform, channel and serial, for whoever inspects the signature with `minisign -V`.
    pub fn sign(&self, key: &SigningKey) -> SignedManifest {
        let json = self.to_json();
        let comment = format!(
            "depot release manifest org={} platform={} channel={} serial={} expires_at={}",
            self.org, self.platform, self.channel, self.serial, self.expires_at
        );
        let minisig = key.sign(json.as_bytes(), &comment);
        SignedManifest { json, minisig }
    }

    pub fn issued_at_unix(&self) -> Result<i64> {
        parse_time("issued_at", &self.issued_at)
    }

    pub fn expires_at_unix(&self) -> Result<i64> {
        parse_time("expires_at", &self.expires_at)
    }

    /// Whether the manifest has expired at `now_unix`. A manifest whose `expires_at` cannot be
    /// read counts as expired.
    pub fn is_expired(&self, now_unix: i64) -> bool {
        self.expires_at_unix()
            .map_or(true, |expires| now_unix >= expires)
    }

    /// Whether the server should sign a fresh manifest: less than [`RESIGN_MARGIN_SECS`] is
    /// left (or `expires_at` cannot be read).
    pub fn is_due_for_resign(&self, now_unix: i64) -> bool {
        now_unix >= self.resign_at_unix()
    }

    /// The time from which [`ReleaseManifest::is_due_for_resign`] holds, for keeping beside a
    /// manifest rather than reading `expires_at` again on every check (`i64::MIN`, always due,
    /// when it cannot be read).
    pub fn resign_at_unix(&self) -> i64 {
        self.expires_at_unix().map_or(i64::MIN, |expires| {
            expires.saturating_sub(RESIGN_MARGIN_SECS)
        })
    }

    fn listed(&self, version: &Version) -> Option<&ManifestRelease> {
        self.releases.iter().find(|r| &r.version == version)
    }
}

/// What the device expects a manifest to say, from its own enrollment and state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    pub org: OrgCode,
    pub platform: Platform,
    /// The highest serial accepted before; `None` before the first.
    pub last_serial: Option<u64>,
    /// The installed version; `None` before the first install.
    pub current: Option<Version>,
}

/// The parts of a server's offer that the manifest must confirm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferView {
    pub version: Version,
    pub sha256: Sha256,
    pub size: u64,
    pub rollback: bool,
}

/// The device's checks of an update-check answer (CONTRACT 6 and 7), in this order: size,
/// signature with the pinned key, parse, org and platform, expiry (and an `issued_at` not more
/// than [`MAX_CLOCK_SKEW_SECS`] ahead), validity of at most 7 days, serial not lower than the last
/// accepted, then for an offer: listed with the same sha256 and size, not yanked, not lower than
/// the installed version unless a rollback, and for a rollback the installed version listed as
/// yanked. With no offer the manifest is still checked, so that the caller can record its serial
/// and notice a manifest that stays expired.
///
/// The size is checked before the signature so that an oversized text costs nothing to refuse.
pub fn check_offer(
    manifest_json: &str,
    minisig: &str,
    key: &PublicKey,
    expected: &Expectation,
    offer: Option<&OfferView>,
    now_unix: i64,
) -> Result<ReleaseManifest> {
    if manifest_json.len() > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge {
            size: manifest_json.len(),
        });
    }
    key.verify(manifest_json.as_bytes(), minisig)
        .map_err(ManifestError::Signature)?;
    let manifest: ReleaseManifest =
        serde_json::from_str(manifest_json).map_err(ManifestError::Malformed)?;

    if manifest.org != expected.org {
        return Err(ManifestError::OtherOrg {
            expected: expected.org.clone(),
            found: manifest.org,
        });
    }
    if manifest.platform != expected.platform {
        return Err(ManifestError::OtherPlatform {
            expected: expected.platform,
            found: manifest.platform,
        });
    }

    let issued = manifest.issued_at_unix()?;
    let expires = manifest.expires_at_unix()?;
    if now_unix >= expires {
        return Err(ManifestError::Expired {
            expires_at: manifest.expires_at,
        });
    }
    if issued > now_unix.saturating_add(MAX_CLOCK_SKEW_SECS) {
        return Err(ManifestError::IssuedInFuture {
            issued_at: manifest.issued_at,
        });
    }
    // An expiry before the issue time is no validity window at all.
    if expires < issued || expires - issued > MAX_MANIFEST_VALIDITY_SECS {
        return Err(ManifestError::ValidityTooLong {
            issued_at: manifest.issued_at,
            expires_at: manifest.expires_at,
        });
    }

    if let Some(last_serial) = expected.last_serial {
        if manifest.serial < last_serial {
            return Err(ManifestError::Replayed {
                serial: manifest.serial,
                last_serial,
            });
        }
    }

    if let Some(offer) = offer {
        check_offered_release(&manifest, expected, offer)?;
    }
    Ok(manifest)
}

fn check_offered_release(
    manifest: &ReleaseManifest,
    expected: &Expectation,
    offer: &OfferView,
) -> Result<()> {
    let version = &offer.version;
    let listed = manifest
        .listed(version)
        .ok_or_else(|| ManifestError::NotListed {
            version: version.clone(),
        })?;
    if listed.sha256 != offer.sha256 {
        return Err(ManifestError::DigestMismatch {
            version: version.clone(),
            offered: offer.sha256,
            listed: listed.sha256,
        });
    }
    if listed.size != offer.size {
        return Err(ManifestError::SizeMismatch {
            version: version.clone(),
            offered: offer.size,
            listed: listed.size,
        });
    }
    if listed.yanked {
        return Err(ManifestError::OfferYanked {
            version: version.clone(),
        });
    }
    if offer.rollback {
        let current_yanked = expected
            .current
            .as_ref()
            .and_then(|current| manifest.listed(current))
            .is_some_and(|r| r.yanked);
        if !current_yanked {
            return Err(ManifestError::RollbackNotAllowed {
                current: expected.current.clone(),
            });
        }
    } else if let Some(current) = expected.current.as_ref().filter(|c| version < *c) {
        return Err(ManifestError::Downgrade {
            offered: version.clone(),
            current: current.clone(),
        });
    }
    Ok(())
}

fn format_time(unix: i64) -> Result<String> {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .ok_or(ManifestError::TimeOutOfRange(unix))
}

fn parse_time(field: &'static str, value: &str) -> Result<i64> {
    OffsetDateTime::parse(value, &Rfc3339)
        .map(OffsetDateTime::unix_timestamp)
        .map_err(|_| ManifestError::BadTime {
            field,
            value: value.to_string(),
        })
}

#[cfg(test)]
mod tests;
