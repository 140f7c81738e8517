//! The update decision of CONTRACT 6: which version, if any, one device is offered.
//!
//! [`decide_update`] is a pure function of the device, its org's policy, its channel's policy and
//! the releases: no I/O, no clock, no randomness, no allocation but the offered version. The
//! server calls it on every update check with state it keeps in memory; the end-to-end tests
//! recompute it with [`bucket`] to know which devices a rollout must reach.
//!
//! # The rules, and how they combine
//!
//! 1. **Eligible** releases are published on the org's channel (`rollout` is `Some`), not yanked,
//!    and carry a payload for the device's platform.
//! 2. A **pin** names the target. A pin to a version that is not eligible (yanked, not published
//!    on the channel, no payload for this platform) offers nothing: the org asked to hold on one
//!    version, and moving it to some other version it did not choose would be the surprise.
//!    Rules 4 and 5 still apply, see below.
//! 3. Otherwise the target is the **highest eligible version whose rollout includes the device**:
//!    `bucket(device, version) < percent`, and a paused rollout includes no one. Each release has
//!    its own buckets, so 10% of one release and 10% of the next are different devices.
//! 4. **Below the channel's `min_version`** the highest eligible version is offered with
//!    `mandatory: true`, whatever the rollout percent. When the org's pin is eligible and meets
//!    the floor, the pin is offered instead (still mandatory): it satisfies both the channel's
//!    floor and the org's hold. A pin below the floor (or not eligible) loses to the floor. When
//!    `min_version` is above every eligible version, the highest eligible one is still offered
//!    as mandatory if it is above the device's version: it is the closest the device can get.
//! 5. **Never lower than the current version**, except when the current version is yanked: then
//!    the device is moved off it to the highest eligible version (or to the org's pin when that
//!    is eligible), with `rollback: true` when that version is lower. This is the only downgrade
//!    there is: a pin below the current version offers nothing (the contract has no other
//!    downgrade); an admin who really wants devices back on the pin yanks the version they run.
//!    Moving off a yanked version ignores rollout percentages, like rule 4, so the offer does not
//!    depend on the device's bucket (and stays monotonic in the percent).
//! 6. Nothing is offered when the target is the current version. A device that reports no
//!    version (just enrolled, nothing installed yet) is offered the pin or its rollout target.
//!
//! Rule 6 of the contract (the automatic halt of a failing rollout) is in `updates::halt`; the
//! caller pauses the rollout for the channel or holds it for one org ([`RolloutState::held`]),
//! which rule 3 then honours.
//!
//! The caller passes every release it knows, yanked ones included: whether the device's current
//! version is yanked is read from this list (a version not in the list is not yanked).

use std::cmp::Ordering;

use sha2::{Digest, Sha256};

use crate::domain::{Channel, Platform, Version};

/// What the decision knows of the device asking.
#[derive(Debug, Clone, Copy)]
pub struct DeviceFacts<'a> {
    pub device_id: &'a str,
    pub platform: Platform,
    /// `None` when the device has no version installed yet.
    pub current: Option<&'a Version>,
}

/// What the decision knows of the device's org.
#[derive(Debug, Clone, Copy)]
pub struct OrgPolicy<'a> {
    /// The org's channel; the caller has already restricted every [`Candidate::rollout`] to it.
    pub channel: &'a Channel,
    pub pinned_version: Option<&'a Version>,
}

/// What the decision knows of the org's channel.
#[derive(Debug, Clone, Copy)]
pub struct ChannelPolicy<'a> {
    pub min_version: Option<&'a Version>,
}

/// One release as the decision sees it (built from store records by the caller).
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub version: &'a Version,
    /// The release has a payload for the device's platform.
    pub has_platform: bool,
    pub yanked: bool,
    /// The rollout of this release on the org's channel; `None`: not published there.
    pub rollout: Option<RolloutState>,
}

/// How far a release is rolled out on one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutState {
    /// 0-100; a value above 100 includes everyone, like 100.
    pub percent: u8,
    pub paused: bool,
    /// The release is held for the device's org (rule 6: its own devices failed too often);
    /// like a pause, but for that org only.
    pub held: bool,
}

impl RolloutState {
    /// Whether this rollout reaches a device whose bucket for the release is `bucket`.
    pub fn includes(&self, bucket: u8) -> bool {
        !self.paused && !self.held && bucket < self.percent
    }
}

/// The answer to an update check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    UpToDate,
    Offer {
        version: Version,
        /// The device runs a version below the channel's `min_version`.
        mandatory: bool,
        /// The offer is lower than the device's version, which is yanked.
        rollback: bool,
    },
}

/// Decides what `device` is offered; see the module documentation for the rules.
pub fn decide_update(
    device: &DeviceFacts,
    org: &OrgPolicy,
    channel: &ChannelPolicy,
    releases: &[Candidate],
) -> Decision {
    let eligible = || {
        releases
            .iter()
            .filter(|c| c.rollout.is_some() && !c.yanked && c.has_platform)
    };
    let highest = || eligible().map(|c| c.version).max();

    let below_min = matches!(
        (device.current, channel.min_version),
        (Some(current), Some(min)) if current < min
    );
    let current_yanked = device
        .current
        .is_some_and(|current| releases.iter().any(|c| c.yanked && c.version == current));
    let meets_floor = |v: &Version| channel.min_version.is_none_or(|min| v >= min);
    let pin = org
        .pinned_version
        .map(|pin| eligible().find(|c| c.version == pin).map(|c| c.version));

    let target = match pin {
        // Rule 4 overrides a pin only when the pin leaves the device below the floor.
        Some(Some(pin)) if !below_min || meets_floor(pin) => Some(pin),
        Some(_) if below_min || current_yanked => highest(),
        Some(_) => None,
        None if below_min || current_yanked => highest(),
        None => rollout_target(device.device_id, eligible()),
    };

    let Some(target) = target else {
        return Decision::UpToDate;
    };
    let Some(current) = device.current else {
        return offer(target, false, false);
    };
    match target.cmp(current) {
        Ordering::Greater => offer(target, below_min, false),
        Ordering::Equal => Decision::UpToDate,
        Ordering::Less if current_yanked => offer(target, false, true),
        Ordering::Less => Decision::UpToDate,
    }
}

fn offer(version: &Version, mandatory: bool, rollback: bool) -> Decision {
    Decision::Offer {
        version: version.clone(),
        mandatory,
        rollback,
    }
}

/// Rule 3: the highest version among `eligible` whose rollout includes the device.
fn rollout_target<'a, 'c: 'a>(
    device_id: &str,
    eligible: impl Iterator<Item = &'a Candidate<'c>>,
) -> Option<&'c Version> {
    let mut best: Option<&'c Version> = None;
    for candidate in eligible {
        let Some(rollout) = candidate.rollout else {
            continue;
        };
        if rollout.paused
            || rollout.held
            || rollout.percent == 0
            || best.is_some_and(|b| b >= candidate.version)
        {
            continue;
        }
        // At 100% every bucket is included: skip the hash, the common case of a finished rollout.
        if rollout.percent >= 100 || rollout.includes(bucket(device_id, candidate.version)) {
            best = Some(candidate.version);
        }
    }
    best
}

/// The device's rollout bucket for a release, 0-99: the first 8 bytes of
/// SHA-256(`device_id:version`) as a big-endian u64, mod 100 (CONTRACT 6).
pub fn bucket(device_id: &str, version: &Version) -> u8 {
    let mut hasher = Sha256::new();
    hasher.update(device_id.as_bytes());
    hasher.update(b":");
    hash_version(&mut hasher, version.semver());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // The remainder is below 100, so the conversion never truncates.
    (u64::from_be_bytes(first) % 100) as u8
}

/// Feeds `version` as its `Display` writes it. Going through `Display` cost more than the rest
/// of the decision: semver's measures what it writes before writing it (for padding), and the
/// check path asks for a bucket on every update check.
fn hash_version(hasher: &mut Sha256, version: &semver::Version) {
    let mut digits = itoa::Buffer::new();
    hasher.update(digits.format(version.major).as_bytes());
    hasher.update(b".");
    hasher.update(digits.format(version.minor).as_bytes());
    hasher.update(b".");
    hasher.update(digits.format(version.patch).as_bytes());
    if !version.pre.is_empty() {
        hasher.update(b"-");
        hasher.update(version.pre.as_str().as_bytes());
    }
    if !version.build.is_empty() {
        hasher.update(b"+");
        hasher.update(version.build.as_str().as_bytes());
    }
}

/// The fewest `installed + failed` reports on which a rollout may halt itself: below that, one
/// or two early failures would be most of the sample.
pub const HALT_MIN_REPORTS: u64 = 10;
/// The failure share that halts a rollout, in percent of `installed + failed`.
pub const HALT_FAILURE_PERCENT: u64 = 20;

/// Rule 6: whether a rollout with these counts must pause itself. Failed reports reach 20% of
/// `installed + failed`, with at least 10 such reports.
pub fn should_halt(installed: u64, failed: u64) -> bool {
    // In u128 so that no count, however absurd, can overflow the comparison.
    let reports = u128::from(installed) + u128::from(failed);
    reports >= u128::from(HALT_MIN_REPORTS)
        && u128::from(failed) * 100 >= reports * u128::from(HALT_FAILURE_PERCENT)
}

#[cfg(test)]
mod tests;
