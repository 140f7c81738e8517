//! Signed release manifests: made when what they say changes (or before they expire), kept in
//! memory, and stored so that serials only grow, across restarts and processes.

use super::encoded::EncodedManifest;
use super::snapshot::Snapshot;
use crate::domain::{Channel, OrgCode, Platform};
use crate::org::Org;
use crate::service::{now, Depot, Result, ServiceError};
use crate::store::ManifestRecord;
use crate::updates::{ManifestRelease, ManifestState, ReleaseManifest, SignedManifest};
use std::collections::HashMap;
use std::sync::Mutex;

struct Cached {
    platform: Platform,
    channel: Channel,
    /// The snapshot generation it was checked against.
    generation: u64,
    /// When it is due for a new signature, read once from the manifest.
    resign_at: i64,
    manifest: ReleaseManifest,
    signed: EncodedManifest,
}

impl Cached {
    fn new(
        platform: Platform,
        channel: &Channel,
        generation: u64,
        manifest: ReleaseManifest,
        signed: EncodedManifest,
    ) -> Self {
        Cached {
            platform,
            channel: channel.clone(),
            generation,
            resign_at: manifest.resign_at_unix(),
            manifest,
            signed,
        }
    }
}

/// By org, then a short list of (platform, channel): the hot path finds its entry without
/// building a key.
#[derive(Default)]
pub struct ManifestCache {
    entries: Mutex<HashMap<OrgCode, Vec<Cached>>>,
}

fn find<'a>(
    entries: &'a HashMap<OrgCode, Vec<Cached>>,
    org: &Org,
    platform: Platform,
) -> Option<&'a Cached> {
    entries
        .get(&org.code)?
        .iter()
        .find(|c| c.platform == platform && c.channel == org.config.channel)
}

/// Stores a manifest in place of the org's entry for its platform and channel.
fn store(entries: &mut HashMap<OrgCode, Vec<Cached>>, org: &OrgCode, cached: Cached) {
    let list = entries.entry(org.clone()).or_default();
    match list
        .iter_mut()
        .find(|c| c.platform == cached.platform && c.channel == cached.channel)
    {
        Some(slot) => *slot = cached,
        None => list.push(cached),
    }
}

fn state_of(snap: &Snapshot, org: &Org, platform: Platform) -> ManifestState {
    let channel = &org.config.channel;
    let mut releases: Vec<ManifestRelease> = snap
        .releases
        .iter()
        .filter(|r| {
            snap.rollouts
                .iter()
                .any(|o| &o.channel == channel && o.version == r.version)
        })
        .filter_map(|r| {
            snap.package(&org.code, &r.version, platform)
                .map(|p| ManifestRelease {
                    version: r.version.clone(),
                    sha256: p.sha256,
                    size: p.size,
                    yanked: r.yanked.is_some(),
                })
        })
        .collect();
    releases.sort_by(|a, b| a.version.cmp(&b.version));
    ManifestState {
        org: org.code.clone(),
        platform,
        channel: channel.clone(),
        min_version: snap
            .channels
            .get(channel)
            .and_then(|c| c.min_version.clone()),
        pinned_version: org.config.pinned_version.clone(),
        releases,
    }
}

impl Depot {
    /// The signed manifest if the cache holds it for this snapshot and it is not due for a new
    /// signature.
    pub(super) fn cached_manifest(
        &self,
        snap: &Snapshot,
        org: &Org,
        platform: Platform,
    ) -> Option<EncodedManifest> {
        let entries = self.fleet.manifests.entries.lock().ok()?;
        let cached = find(&entries, org, platform)?;
        (cached.generation == snap.generation && now() < cached.resign_at)
            .then(|| cached.signed.clone())
    }

    pub(super) fn manifest_for(
        &self,
        snap: &Snapshot,
        org: &Org,
        platform: Platform,
    ) -> Result<EncodedManifest> {
        let channel = &org.config.channel;
        let at = now();
        let mut entries = self
            .fleet
            .manifests
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(c) = find(&entries, org, platform) {
            if c.generation == snap.generation && at < c.resign_at {
                return Ok(c.signed.clone());
            }
        }
        let state = state_of(snap, org, platform);
        let fresh = |m: &ReleaseManifest| m.state() == state && !m.is_due_for_resign(at);
        // Serials grow across the channels of an org and platform: the manifest a device is
        // served must be the one signed last, whatever its channel. After a channel change (or
        // back) the new channel's manifest is signed anew, with a serial above the old
        // channel's, so that an agent keeping one last serial follows the change without a
        // refusal, and a man in the middle replaying the other channel's manifest (or an older
        // one of this channel) shows a serial lower than the last accepted: refused. The
        // manifest names its channel, but the agent cannot know which channel is right (the
        // answer around the manifest is not signed); the order of serials is what it can trust.
        let mut latest = self.meta.latest_manifest_serial(&org.code, platform)?;
        if let Some(c) = entries.get_mut(&org.code).and_then(|list| {
            list.iter_mut()
                .find(|c| c.platform == platform && &c.channel == channel)
        }) {
            if fresh(&c.manifest) && c.manifest.serial >= latest {
                c.generation = snap.generation;
                return Ok(c.signed.clone());
            }
        }
        // Another process (a replica, or this one before a restart) may have signed it already.
        for attempt in 0..3 {
            if attempt > 0 {
                latest = self.meta.latest_manifest_serial(&org.code, platform)?;
            }
            let stored = self.meta.get_manifest(&org.code, platform, channel)?;
            let stored_manifest = stored
                .as_ref()
                .and_then(|s| serde_json::from_str::<ReleaseManifest>(&s.json).ok());
            if let (Some(record), Some(manifest)) = (&stored, &stored_manifest) {
                if fresh(manifest) && record.serial >= latest {
                    let signed = EncodedManifest::from(&SignedManifest {
                        json: record.json.clone(),
                        minisig: record.minisig.clone(),
                    });
                    store(
                        &mut entries,
                        &org.code,
                        Cached::new(
                            platform,
                            channel,
                            snap.generation,
                            manifest.clone(),
                            signed.clone(),
                        ),
                    );
                    return Ok(signed);
                }
            }
            let serial = stored.as_ref().map_or(0, |s| s.serial).max(latest) + 1;
            let manifest = ReleaseManifest::issue(state.clone(), serial, at)
                .map_err(|e| ServiceError::Invalid(format!("cannot issue a manifest: {e}")))?;
            let signed = manifest.sign(&self.key);
            let record = ManifestRecord {
                org: org.code.clone(),
                platform,
                channel: channel.clone(),
                serial,
                json: signed.json.clone(),
                minisig: signed.minisig.clone(),
            };
            if self.meta.put_manifest(&record)? {
                let signed = EncodedManifest::from(&signed);
                store(
                    &mut entries,
                    &org.code,
                    Cached::new(platform, channel, snap.generation, manifest, signed.clone()),
                );
                return Ok(signed);
            }
        }
        Err(ServiceError::Conflict(
            "the release manifest changed under three attempts to sign it".into(),
        ))
    }
}
