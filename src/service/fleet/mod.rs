//! Client machines: enrollment, update checks, reports, deactivation, seat use and rollout
//! progress (CONTRACT 6).
//!
//! The update check is the hot path: thousands of devices ask every few minutes. Everything it
//! needs (device tokens, orgs, releases, rollouts, channels, package digests, signed manifests)
//! is held in memory in a [`Snapshot`] that is reloaded when the store's change counter moves
//! (looked at no more than every [`REFRESH_INTERVAL`]), the decision is the pure
//! [`crate::updates::decide_update`], and the check-in it records goes into a buffer that a
//! background thread writes in batches. Manifests are signed when what they say changes, never
//! per request.

mod checkins;
mod encoded;
mod enroll_gate;
mod manifests;
mod snapshot;
#[cfg(test)]
mod tests;

pub use checkins::{CheckinBuffer, CheckinRef};
pub use encoded::{EncodedAnswer, EncodedManifest, JsonText};
pub use snapshot::{DeviceEntry, DeviceIndex, Snapshot};

use super::{now, Actor, Depot, Result, ServiceError};
use crate::domain::{OrgCode, Platform, RegistrationKey, Sha256, Version};
use crate::store::{Device, DeviceEvent, EventKind, ReportOutcome, RolloutCounts, RolloutHold};
use crate::updates::{
    channel_must_pause, decide_update, hold_reason, org_must_hold, pause_reason, Candidate,
    ChannelPolicy, Decision, DeviceFacts, OrgPolicy, OrgTally, RolloutState,
};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// How stale the in-memory state may be relative to changes made by other processes.
pub const REFRESH_INTERVAL: Duration = Duration::from_millis(100);
const MAX_FIELD_LEN: usize = 255;
/// Device tokens start with this; API tokens do not, so a request's token is looked up in one
/// place only.
pub const DEVICE_TOKEN_PREFIX: &str = "depot_dev_";
const MAX_MESSAGE_LEN: usize = 2000;

/// The in-memory state of the fleet; one per `Depot`.
#[derive(Default)]
pub struct Fleet {
    current: RwLock<Option<Current>>,
    manifests: manifests::ManifestCache,
    pub(crate) checkins: CheckinBuffer,
    /// Serialises snapshot reloads (so that a burst of requests reloads once) with the
    /// application of this process's own device changes.
    reload: Mutex<()>,
    /// Serialises the automatic halt, so that two reports tipping it at once halt it once.
    halting: Mutex<()>,
    /// Limits on enrollment with the default org's public registration key.
    enroll: enroll_gate::EnrollGate,
}

/// The snapshot in use, the store's change counter it is known to be up to date with, and
/// when that was last compared with the store.
#[derive(Clone)]
struct Current {
    snapshot: Arc<Snapshot>,
    counter: u64,
    checked: Instant,
}

/// An agent's enrollment. Its `Debug` shows the registration key's first group only.
#[derive(Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    pub registration_key: String,
    pub hostname: String,
    pub platform: String,
    #[serde(default)]
    pub os_version: String,
    #[serde(default)]
    pub user: String,
}

impl std::fmt::Debug for EnrollRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollRequest")
            .field(
                "registration_key",
                &RegistrationKey::redact(&self.registration_key),
            )
            .field("hostname", &self.hostname)
            .field("platform", &self.platform)
            .field("os_version", &self.os_version)
            .field("user", &self.user)
            .finish()
    }
}

/// An enrolled device's credentials. Its `Debug` shows the token's first characters only.
#[derive(Clone, Serialize, utoipa::ToSchema)]
pub struct Enrolled {
    pub device_id: String,
    pub device_token: String,
    pub org: String,
}

impl std::fmt::Debug for Enrolled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrolled")
            .field("device_id", &self.device_id)
            .field("device_token", &redact_device_token(&self.device_token))
            .field("org", &self.org)
            .finish()
    }
}

/// A device token as debug output shows it: the prefix and four characters, enough to tell
/// tokens apart in a log, far too few to guess the rest (20 random bytes).
fn redact_device_token(token: &str) -> String {
    let shown = DEVICE_TOKEN_PREFIX.len() + 4;
    match token.get(..shown) {
        Some(start) if token.starts_with(DEVICE_TOKEN_PREFIX) => format!("{start}****"),
        _ => "****".to_string(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PackageOffer {
    pub url: String,
    pub sha256: String,
    pub size: u64,
    /// URL of the package's `.minisig`.
    pub minisig: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Offer {
    pub version: String,
    pub mandatory: bool,
    pub rollback: bool,
    pub notes: String,
    #[schema(value_type = PackageOffer)]
    pub package: Arc<PackageOffer>,
}

/// A device found by its token for an update check, with the snapshot it was found in.
pub struct CheckingDevice {
    snap: Arc<Snapshot>,
    token_hash: Sha256,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UpdateAnswer {
    pub offer: Option<Offer>,
    /// The signed release manifest (JSON text, CONTRACT 6).
    #[schema(value_type = String)]
    pub manifest: JsonText,
    /// The manifest's minisign signature.
    #[schema(value_type = String)]
    pub manifest_minisig: JsonText,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeviceView {
    pub id: String,
    pub org: String,
    pub hostname: String,
    pub user: String,
    pub platform: String,
    pub os_version: String,
    pub current_version: Option<String>,
    pub enrolled_at: String,
    pub last_seen_at: Option<String>,
    pub last_address: Option<String>,
    pub active: bool,
    /// `active`, `flagged` (an open flag awaits central IT) or `deactivated`.
    pub state: &'static str,
    /// Why the directory sync or central IT deactivated it, where recorded.
    pub deactivated_reason: Option<String>,
}

impl From<&Device> for DeviceView {
    fn from(d: &Device) -> Self {
        use super::views::rfc3339;
        DeviceView {
            id: d.id.clone(),
            org: d.org.to_string(),
            hostname: d.hostname.clone(),
            user: d.user.clone(),
            platform: d.platform.to_string(),
            os_version: d.os_version.clone(),
            current_version: d.current_version.as_ref().map(ToString::to_string),
            enrolled_at: rfc3339(d.enrolled_at),
            last_seen_at: d.last_seen_at.map(rfc3339),
            last_address: d.last_address.clone(),
            active: d.deactivated_at.is_none(),
            state: if d.deactivated_at.is_none() {
                "active"
            } else {
                "deactivated"
            },
            deactivated_reason: None,
        }
    }
}

/// Filters of `GET /v1/orgs/{org}/devices`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
pub struct DeviceFilter {
    pub platform: Option<String>,
    pub version: Option<String>,
    pub active: Option<bool>,
    /// A substring of the host or user name.
    pub q: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UsageView {
    pub org: String,
    /// Licensed seats; 0 means none were set.
    pub seats: u32,
    pub enrolled: u64,
    /// Active devices that checked in within the last 30 days.
    pub active_30d: u64,
    /// Active devices beyond the seats.
    pub over_seats: u64,
    pub by_version: std::collections::BTreeMap<String, u64>,
    pub by_platform: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RolloutView {
    pub version: String,
    pub channel: String,
    pub percent: u8,
    pub paused: bool,
    pub pause_reason: Option<String>,
    /// Orgs whose devices are not offered the release (rule 6), with why.
    pub holds: Vec<HoldView>,
    pub offered: u64,
    pub downloaded: u64,
    pub installed: u64,
    pub failed: u64,
}

/// A rollout held for one org by the automatic halt.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HoldView {
    pub org: String,
    pub reason: String,
    pub since: String,
}

/// The active device with this id and its org; its platform must be the one asked about.
fn device_and_org<'a>(
    snap: &'a Snapshot,
    device_id: &str,
    platform: Platform,
) -> Result<(DeviceEntry, &'a crate::org::Org)> {
    let device = snap
        .devices()
        .by_id(device_id)
        .cloned()
        .ok_or_else(|| ServiceError::NotFound(format!("active device {device_id}")))?;
    let org = org_for(snap, &device, platform)?;
    Ok((device, org))
}

/// What a decision offers the device: the release's notes and its package for the platform.
fn offer_of(
    snap: &Snapshot,
    org: &crate::org::Org,
    platform: Platform,
    decision: &Decision,
) -> Result<Option<Offer>> {
    let Decision::Offer {
        version,
        mandatory,
        rollback,
    } = decision
    else {
        return Ok(None);
    };
    let package = snap
        .package(&org.code, version, platform)
        .ok_or_else(|| ServiceError::NotFound(format!("package of {version}")))?;
    let notes = snap
        .releases
        .iter()
        .find(|r| &r.version == version)
        .map(|r| r.notes.clone())
        .unwrap_or_default();
    Ok(Some(Offer {
        version: version.to_string(),
        mandatory: *mandatory,
        rollback: *rollback,
        notes,
        package: Arc::clone(&package.offer),
    }))
}

/// The device's org, once the platform it asks for is the one it enrolled with.
fn org_for<'a>(
    snap: &'a Snapshot,
    device: &DeviceEntry,
    platform: Platform,
) -> Result<&'a crate::org::Org> {
    if platform != device.platform {
        return Err(ServiceError::Invalid(format!(
            "platform {platform} is not this device's enrolled platform {}",
            device.platform
        )));
    }
    snap.orgs
        .get(&device.org)
        .ok_or_else(|| ServiceError::NotFound(format!("org {}", device.org)))
}

/// The pure decision (CONTRACT 6) for a device of `org` with the state of `snap`.
fn decide(
    snap: &Snapshot,
    device_id: &str,
    org: &crate::org::Org,
    platform: Platform,
    current: Option<&Version>,
) -> Decision {
    let channel = &org.config.channel;
    let min_version = snap
        .channels
        .get(channel)
        .and_then(|c| c.min_version.as_ref());
    let candidates: Vec<Candidate<'_>> = snap
        .releases
        .iter()
        .map(|r| Candidate {
            version: &r.version,
            has_platform: snap.package(&org.code, &r.version, platform).is_some(),
            yanked: r.yanked.is_some(),
            rollout: snap
                .rollouts
                .iter()
                .find(|o| &o.channel == channel && o.version == r.version)
                .map(|o| RolloutState {
                    percent: o.percent,
                    paused: o.paused,
                    held: snap.holds.iter().any(|h| {
                        h.org == org.code && &h.channel == channel && h.version == r.version
                    }),
                }),
        })
        .collect();
    decide_update(
        &DeviceFacts {
            device_id,
            platform,
            current,
        },
        &OrgPolicy {
            channel,
            pinned_version: org.config.pinned_version.as_ref(),
        },
        &ChannelPolicy { min_version },
        &candidates,
    )
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

fn clean_field(field: &str, value: &str, required: bool) -> Result<String> {
    let value = value.trim();
    if required && value.is_empty() {
        return Err(ServiceError::Invalid(format!("{field} must not be empty")));
    }
    if value.chars().count() > MAX_FIELD_LEN || value.chars().any(char::is_control) {
        return Err(ServiceError::Invalid(format!(
            "{field} must be at most {MAX_FIELD_LEN} characters without control characters"
        )));
    }
    if crate::domain::find_hidden(value).is_some() {
        return Err(ServiceError::Invalid(format!(
            "{field} {value:?} {}",
            crate::domain::HIDDEN_RULE
        )));
    }
    Ok(value.to_string())
}

impl Depot {
    fn current(&self) -> Option<Current> {
        self.fleet
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The in-memory state if it is fresh enough to use without asking the store.
    pub fn fresh_snapshot(&self) -> Option<Arc<Snapshot>> {
        let guard = self.fleet.current.read().unwrap_or_else(|p| p.into_inner());
        let current = guard.as_ref()?;
        (current.checked.elapsed() < REFRESH_INTERVAL).then(|| Arc::clone(&current.snapshot))
    }

    /// The active device a device token names, from memory alone; `None` when the snapshot is
    /// due for a comparison with the store.
    pub fn device_by_token_in_memory(&self, secret: &str) -> Option<Option<DeviceEntry>> {
        let hash = Sha256::digest(secret.as_bytes());
        Some(self.fresh_snapshot()?.devices().by_token(&hash).cloned())
    }

    /// The active device a device token names, as the update hot path holds on to it: found
    /// from memory alone, or `None` when the snapshot is due for a comparison with the store or
    /// no active device has this token (the caller then takes the general path, which says why).
    pub fn device_checking_in(&self, secret: &str) -> Option<CheckingDevice> {
        let token_hash = Sha256::digest(secret.as_bytes());
        let snap = self.fresh_snapshot()?;
        let known = snap.devices().by_token(&token_hash).is_some();
        known.then_some(CheckingDevice { snap, token_hash })
    }

    /// [`Depot::update_check_in_memory`] for a device found by [`Depot::device_checking_in`],
    /// without looking it up again: `None` when the manifest is due for a signature or the
    /// device went away since, which need the general path.
    pub fn update_check_of(
        &self,
        device: &CheckingDevice,
        platform: Platform,
        current: Option<Version>,
        address: Option<IpAddr>,
    ) -> Option<Result<EncodedAnswer>> {
        let snap = &device.snap;
        let devices = snap.devices();
        let entry = devices.by_token(&device.token_hash)?;
        let org = match org_for(snap, entry, platform) {
            Ok(org) => org,
            Err(e) => return Some(Err(e)),
        };
        let signed = self.cached_manifest(snap, org, platform)?;
        Some(self.answer(snap, entry, org, platform, current, address, signed))
    }

    /// The in-memory state, reloaded when another process (or this one) changed the store.
    pub fn fleet_snapshot(&self) -> Result<Arc<Snapshot>> {
        if let Some(snapshot) = self.fresh_snapshot() {
            return Ok(snapshot);
        }
        let _reloading = self.fleet.reload.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.current();
        if let Some(c) = current
            .as_ref()
            .filter(|c| c.checked.elapsed() < REFRESH_INTERVAL)
        {
            return Ok(Arc::clone(&c.snapshot));
        }
        let counter = self.meta.change_counter()?;
        let snapshot = match current {
            Some(c) if c.counter == counter => c.snapshot,
            _ => Arc::new(Snapshot::load(self.meta.as_ref(), counter)?),
        };
        *self
            .fleet
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(Current {
            snapshot: Arc::clone(&snapshot),
            counter,
            checked: Instant::now(),
        });
        Ok(snapshot)
    }

    /// Forgets the in-memory state after a change this process made, so the next request sees it.
    /// Under the reload lock: a reload that read the change counter before the change committed
    /// finishes first and is then dropped, instead of installing its older state afterwards (for
    /// 100 ms a pause would not hold).
    pub(crate) fn invalidate_fleet(&self) {
        let _reloading = self.fleet.reload.lock().unwrap_or_else(|p| p.into_inner());
        *self
            .fleet
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Applies a device change this process committed, which left the store's change counter
    /// at `counter`, to the in-memory index. When the counter shows that another commit came
    /// between the snapshot and this one, the snapshot is dropped instead and reloaded whole.
    fn apply_device_change(&self, counter: u64, change: impl FnOnce(&mut DeviceIndex)) {
        let _reloading = self.fleet.reload.lock().unwrap_or_else(|p| p.into_inner());
        let mut slot = self
            .fleet
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner());
        match slot.as_mut() {
            Some(c) if c.counter + 1 == counter => {
                change(&mut c.snapshot.devices_mut());
                c.counter = counter;
            }
            // A reload read the counter after this commit: it holds the change already.
            Some(c) if c.counter >= counter => {}
            _ => *slot = None,
        }
    }

    /// Drops devices this process deactivated in a commit that left the counter at `counter`
    /// (the directory sync), so their tokens are refused from the next request on.
    pub(crate) fn forget_devices(&self, counter: u64, ids: &[String]) {
        self.apply_device_change(counter, |devices| {
            for id in ids {
                devices.remove(id);
            }
        });
    }

    /// The enrolled, active device a device token names.
    pub fn device_by_token(&self, secret: &str) -> Result<Option<DeviceEntry>> {
        let hash = Sha256::digest(secret.as_bytes());
        Ok(self.fleet_snapshot()?.devices().by_token(&hash).cloned())
    }

    /// The active device with this id.
    pub fn device_by_id(&self, id: &str) -> Result<DeviceEntry> {
        self.fleet_snapshot()?
            .devices()
            .by_id(id)
            .cloned()
            .ok_or_else(|| ServiceError::NotFound(format!("active device {id}")))
    }

    /// Sets the limits on enrollment with the default org's registration key.
    pub fn set_enroll_limits(&self, limits: crate::config::EnrollLimits) {
        self.fleet.enroll.set_limits(limits);
    }

    /// Enrolls a machine with its org's current registration key. The default org's key is in
    /// every public installer: its enrollments are limited per address (429) and in number
    /// (409); an org with `seats` set refuses enrollment beyond them (409 `seats_exhausted`).
    pub fn enroll(&self, request: &EnrollRequest, address: &str) -> Result<Enrolled> {
        let key = RegistrationKey::parse(&request.registration_key)
            .map_err(|_| ServiceError::Forbidden("unknown registration key".into()))?;
        let platform = Platform::parse(&request.platform)?;
        let hostname = clean_field("hostname", &request.hostname, true)?;
        let os_version = clean_field("os_version", &request.os_version, false)?;
        let user = clean_field("user", &request.user, false)?;
        let org = self
            .meta
            .find_org_by_key(&key)?
            .ok_or_else(|| ServiceError::Forbidden("unknown registration key".into()))?;
        let is_default = org.code == OrgCode::default_org();
        if is_default && !self.fleet.enroll.admit_default(address) {
            return Err(ServiceError::RateLimited(format!(
                "too many enrollments from {address} with the default registration key in the \
                 last hour (at most {}; an operator raises `[enroll] \
                 default_per_address_per_hour` for a lab behind one address)",
                self.fleet.enroll.limits().default_per_address_per_hour
            )));
        }
        let created = self.enroll_into(&org, platform, hostname, os_version, user, address);
        if is_default && created.is_err() {
            self.fleet.enroll.give_back(address);
        }
        created
    }

    fn enroll_into(
        &self,
        org: &crate::org::Org,
        platform: Platform,
        hostname: String,
        os_version: String,
        user: String,
        address: &str,
    ) -> Result<Enrolled> {
        let active = self.meta.count_active_devices(&org.code)?;
        let seats = u64::from(org.config.seats);
        if seats > 0 && active >= seats {
            return Err(ServiceError::SeatsExhausted(format!(
                "org {} has {active} active devices for its {seats} seats; deactivate a device \
                 or ask for more seats",
                org.code
            )));
        }
        let cap = self.fleet.enroll.limits().default_max_devices;
        if org.code == OrgCode::default_org() && active >= cap {
            return Err(ServiceError::EnrollmentCap(format!(
                "the default org has {active} active devices, its limit (`[enroll] \
                 default_max_devices`); use your department's installer"
            )));
        }
        let id = format!("dev_{}", random_hex(8));
        let token = format!("{DEVICE_TOKEN_PREFIX}{}", random_hex(20));
        let device = Device {
            id: id.clone(),
            org: org.code.clone(),
            hostname,
            platform,
            os_version,
            user,
            token_hash: Sha256::digest(token.as_bytes()),
            enrolled_at: now(),
            deactivated_at: None,
            last_seen_at: None,
            last_address: Some(address.to_string()),
            current_version: None,
        };
        let counter = self.meta.create_device(&device)?;
        self.apply_device_change(counter, |devices| {
            devices.insert(
                device.token_hash,
                DeviceEntry {
                    id: id.clone(),
                    org: org.code.clone(),
                    platform,
                },
            )
        });
        let actor = Actor {
            name: format!("device:{id}"),
            address: address.to_string(),
        };
        self.audit(
            &actor,
            Some(&org.code),
            "device.enroll",
            &id,
            Some(format!("{} ({platform})", device.hostname)),
        )?;
        Ok(Enrolled {
            device_id: id,
            device_token: token,
            org: org.code.to_string(),
        })
    }

    /// The update decision and signed manifest for a device; records the check-in (`address`
    /// is `None` when the client's address is not known).
    pub fn update_check(
        &self,
        device_id: &str,
        platform: Platform,
        current: Option<Version>,
        address: Option<IpAddr>,
    ) -> Result<EncodedAnswer> {
        let snap = self.fleet_snapshot()?;
        let (device, org) = device_and_org(&snap, device_id, platform)?;
        let signed = self.manifest_for(&snap, org, platform)?;
        self.answer(&snap, &device, org, platform, current, address, signed)
    }

    /// [`Depot::update_check`] from memory alone, for the async hot path: `None` when the
    /// snapshot is due for a reload or the manifest for a signature, which need the store.
    pub fn update_check_in_memory(
        &self,
        device_id: &str,
        platform: Platform,
        current: Option<Version>,
        address: Option<IpAddr>,
    ) -> Option<Result<EncodedAnswer>> {
        let snap = self.fresh_snapshot()?;
        let (device, org) = match device_and_org(&snap, device_id, platform) {
            Ok(found) => found,
            Err(e) => return Some(Err(e)),
        };
        let signed = self.cached_manifest(&snap, org, platform)?;
        Some(self.answer(&snap, &device, org, platform, current, address, signed))
    }

    #[allow(clippy::too_many_arguments)]
    fn answer(
        &self,
        snap: &Snapshot,
        device: &DeviceEntry,
        org: &crate::org::Org,
        platform: Platform,
        current: Option<Version>,
        address: Option<IpAddr>,
        signed: EncodedManifest,
    ) -> Result<EncodedAnswer> {
        let channel = &org.config.channel;
        let decision = decide(snap, &device.id, org, platform, current.as_ref());
        let offered = match &decision {
            Decision::UpToDate => None,
            Decision::Offer { version, .. } => Some(version),
        };
        let answer = signed.answer(snap.generation, &decision, || {
            Ok(UpdateAnswer {
                offer: offer_of(snap, org, platform, &decision)?,
                manifest: signed.json.clone(),
                manifest_minisig: signed.minisig.clone(),
            })
        })?;
        self.fleet.checkins.push(
            CheckinRef {
                device_id: &device.id,
                at: now(),
                address,
                version: current.as_ref(),
                platform,
                offered: offered.map(|v| (v, channel)),
            },
            &self.meta,
        );
        Ok(answer)
    }

    /// A device's report on a release (rule 6). A report on a release the device was never
    /// offered on its channel is refused and changes nothing. A counted failure (see
    /// `MetaStore::record_report`) may hold the release for the device's org, or pause it for
    /// the channel.
    pub fn device_event(
        &self,
        device: &DeviceEntry,
        version: Option<Version>,
        kind: EventKind,
        message: &str,
        address: &str,
    ) -> Result<()> {
        if message.chars().count() > MAX_MESSAGE_LEN {
            return Err(ServiceError::Invalid(format!(
                "message must be at most {MAX_MESSAGE_LEN} characters"
            )));
        }
        let snap = self.fleet_snapshot()?;
        let channel = snap
            .orgs
            .get(&device.org)
            .map(|o| o.config.channel.clone())
            .ok_or_else(|| ServiceError::NotFound(format!("org {}", device.org)))?;
        let event = DeviceEvent {
            device_id: device.id.clone(),
            org: device.org.clone(),
            version: version.clone(),
            channel: channel.clone(),
            kind,
            message: crate::domain::strip_hidden(message)
                .chars()
                .filter(|c| !c.is_control() || *c == ' ')
                .collect(),
            at: now(),
        };
        let mut outcome = self.meta.record_report(&event)?;
        if outcome == ReportOutcome::NotOffered {
            // The offer the report answers may still wait in this server's check-in buffer (the
            // documented balancer sends one client's requests to one replica).
            self.flush_checkins()?;
            outcome = self.meta.record_report(&event)?;
        }
        let tallies = match outcome {
            ReportOutcome::NotOffered => {
                return Err(ServiceError::NotOffered(format!(
                    "this device was never offered {} on channel {channel}: a report is only \
                     taken for a release the server offered it",
                    version
                        .as_ref()
                        .map_or_else(String::new, ToString::to_string)
                )))
            }
            ReportOutcome::Recorded {
                new_counted_failure: true,
                tallies,
                ..
            } => tallies,
            ReportOutcome::Recorded { .. } => return Ok(()),
        };
        let Some(version) = version else {
            return Ok(());
        };
        let tallies: Vec<OrgTally> = tallies
            .into_iter()
            .map(|t| OrgTally {
                org: t.org,
                installed: t.installed,
                failed: t.failed,
            })
            .collect();
        self.apply_halt(&version, &channel, &device.org, &tallies, address)
    }

    /// Holds the release for `org` and pauses it for the channel, as far as `tallies` (the
    /// counted reports since the last resume) call for.
    fn apply_halt(
        &self,
        version: &Version,
        channel: &crate::domain::Channel,
        org: &OrgCode,
        tallies: &[OrgTally],
        address: &str,
    ) -> Result<()> {
        let actor = Actor {
            name: "depot".into(),
            address: address.to_string(),
        };
        let target = format!("{version} on {channel}");
        // Only the decisions and their writes are serialised, so that two reports tipping the
        // rollout at once hold or pause it (and audit it) once.
        let _halting = self.fleet.halting.lock().unwrap_or_else(|p| p.into_inner());
        let mut changed = false;
        if let Some(tally) = tallies.iter().find(|t| &t.org == org) {
            if org_must_hold(tally) {
                let reason = hold_reason(tally);
                let hold = RolloutHold {
                    version: version.clone(),
                    channel: channel.clone(),
                    org: org.clone(),
                    reason: reason.clone(),
                    at: now(),
                };
                if self.meta.put_rollout_hold(&hold)? {
                    changed = true;
                    self.audit(&actor, Some(org), "rollout.hold", &target, Some(reason))?;
                }
            }
        }
        if channel_must_pause(tallies) {
            if let Some(mut rollout) = self.meta.get_rollout(version, channel)? {
                if !rollout.paused {
                    let reason = pause_reason(tallies);
                    rollout.paused = true;
                    rollout.pause_reason = Some(reason.clone());
                    rollout.updated_at = now();
                    self.meta.put_rollout(&rollout)?;
                    changed = true;
                    self.audit(&actor, None, "rollout.halt", &target, Some(reason))?;
                }
            }
        }
        if changed {
            self.invalidate_fleet();
        }
        Ok(())
    }

    pub fn devices(&self, org: &OrgCode, filter: &DeviceFilter) -> Result<Vec<DeviceView>> {
        self.org(org)?;
        let platform = filter
            .platform
            .as_deref()
            .map(Platform::parse)
            .transpose()?;
        let version = filter.version.as_deref().map(Version::parse).transpose()?;
        let q = filter.q.as_deref().map(str::to_lowercase);
        let reasons: std::collections::HashMap<String, String> =
            self.meta.deactivation_reasons(org)?.into_iter().collect();
        let open_flags = self
            .meta
            .list_flags(Some(org), Some(crate::store::FlagStatus::Open))?;
        let flagged: std::collections::HashSet<&str> =
            open_flags.iter().map(|f| f.device_id.as_str()).collect();
        Ok(self
            .meta
            .list_devices(Some(org))?
            .iter()
            .filter(|d| platform.is_none_or(|p| d.platform == p))
            .filter(|d| {
                version
                    .as_ref()
                    .is_none_or(|v| d.current_version.as_ref() == Some(v))
            })
            .filter(|d| {
                filter
                    .active
                    .is_none_or(|a| a == d.deactivated_at.is_none())
            })
            .filter(|d| {
                q.as_deref().is_none_or(|q| {
                    d.hostname.to_lowercase().contains(q) || d.user.to_lowercase().contains(q)
                })
            })
            .map(|d| {
                let mut view = DeviceView::from(d);
                view.deactivated_reason = reasons.get(&d.id).cloned();
                if view.active && flagged.contains(d.id.as_str()) {
                    view.state = "flagged";
                }
                view
            })
            .collect())
    }

    /// Deactivates a device at once: its next request is refused.
    pub fn deactivate_device(&self, actor: &Actor, org: &OrgCode, id: &str) -> Result<()> {
        let Some(counter) = self.meta.deactivate_device(org, id, now())? else {
            return Err(ServiceError::NotFound(format!(
                "active device {id} of org {org}"
            )));
        };
        self.apply_device_change(counter, |devices| devices.remove(id));
        self.audit(actor, Some(org), "device.deactivate", id, None)
    }

    pub fn usage(&self, code: &OrgCode) -> Result<UsageView> {
        let org = self.org(code)?;
        let devices = self.meta.list_devices(Some(code))?;
        let active: Vec<&Device> = devices
            .iter()
            .filter(|d| d.deactivated_at.is_none())
            .collect();
        let month_ago = now() - 30 * 24 * 3600;
        let mut usage = UsageView {
            org: code.to_string(),
            seats: org.config.seats,
            enrolled: active.len() as u64,
            active_30d: active
                .iter()
                .filter(|d| d.last_seen_at.is_some_and(|t| t >= month_ago))
                .count() as u64,
            over_seats: if org.config.seats > 0 {
                (active.len() as u64).saturating_sub(org.config.seats.into())
            } else {
                0
            },
            by_version: Default::default(),
            by_platform: Default::default(),
        };
        for d in &active {
            let version = d
                .current_version
                .as_ref()
                .map_or_else(|| "unknown".to_string(), ToString::to_string);
            *usage.by_version.entry(version).or_default() += 1;
            *usage.by_platform.entry(d.platform.to_string()).or_default() += 1;
        }
        Ok(usage)
    }

    /// Every rollout with its progress, newest release first.
    pub fn rollouts(&self) -> Result<Vec<RolloutView>> {
        let holds = self.meta.list_rollout_holds()?;
        self.meta
            .list_rollouts()?
            .into_iter()
            .map(|r| {
                let RolloutCounts {
                    offered,
                    downloaded,
                    installed,
                    failed,
                } = self.meta.rollout_counts(&r.version, &r.channel)?;
                Ok(RolloutView {
                    version: r.version.to_string(),
                    channel: r.channel.to_string(),
                    percent: r.percent,
                    paused: r.paused,
                    holds: holds
                        .iter()
                        .filter(|h| h.version == r.version && h.channel == r.channel)
                        .map(|h| HoldView {
                            org: h.org.to_string(),
                            reason: h.reason.clone(),
                            since: super::views::rfc3339(h.at),
                        })
                        .collect(),
                    pause_reason: r.pause_reason,
                    offered,
                    downloaded,
                    installed,
                    failed,
                })
            })
            .collect()
    }

    /// Writes buffered check-ins now (clean shutdown, tests).
    pub fn flush_checkins(&self) -> Result<()> {
        Ok(self.fleet.checkins.flush(self.meta.as_ref())?)
    }
}
