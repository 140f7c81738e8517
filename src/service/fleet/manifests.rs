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
    /// The snapshot generation it was checked against.
    generation: u64,
    manifest: ReleaseManifest,
    signed: EncodedManifest,
}

#[derive(Default)]
pub struct ManifestCache {
    entries: Mutex<HashMap<(OrgCode, Platform, Channel), Cached>>,
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
        let key = (org.code.clone(), platform, org.config.channel.clone());
        let entries = self.fleet.manifests.entries.lock().ok()?;
        let cached = entries.get(&key)?;
        (cached.generation == snap.generation && !cached.manifest.is_due_for_resign(now()))
            .then(|| cached.signed.clone())
    }

    pub(super) fn manifest_for(
        &self,
        snap: &Snapshot,
        org: &Org,
        platform: Platform,
    ) -> Result<EncodedManifest> {
        let key = (org.code.clone(), platform, org.config.channel.clone());
        let at = now();
        let mut entries = self
            .fleet
            .manifests
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(c) = entries.get(&key) {
            if c.generation == snap.generation && !c.manifest.is_due_for_resign(at) {
                return Ok(c.signed.clone());
            }
        }
        let state = state_of(snap, org, platform);
        let fresh = |m: &ReleaseManifest| m.state() == state && !m.is_due_for_resign(at);
        if let Some(c) = entries.get_mut(&key) {
            if fresh(&c.manifest) {
                c.generation = snap.generation;
                return Ok(c.signed.clone());
            }
        }
        // Another process (a replica, or this one before a restart) may have signed it already.
        for _attempt in 0..3 {
            let stored = self.meta.get_manifest(&key.0, platform, &key.2)?;
            let stored_manifest = stored
                .as_ref()
                .and_then(|s| serde_json::from_str::<ReleaseManifest>(&s.json).ok());
            if let (Some(record), Some(manifest)) = (&stored, &stored_manifest) {
                if fresh(manifest) {
                    let signed = EncodedManifest::from(&SignedManifest {
                        json: record.json.clone(),
                        minisig: record.minisig.clone(),
                    });
                    entries.insert(
                        key,
                        Cached {
                            generation: snap.generation,
                            manifest: manifest.clone(),
                            signed: signed.clone(),
                        },
                    );
                    return Ok(signed);
                }
            }
            let serial = stored.as_ref().map_or(1, |s| s.serial + 1);
            let manifest = ReleaseManifest::issue(state.clone(), serial, at)
                .map_err(|e| ServiceError::Invalid(format!("cannot issue a manifest: {e}")))?;
            let signed = manifest.sign(&self.key);
            let record = ManifestRecord {
                org: key.0.clone(),
                platform,
                channel: key.2.clone(),
                serial,
                json: signed.json.clone(),
                minisig: signed.minisig.clone(),
            };
            if self.meta.put_manifest(&record)? {
                let signed = EncodedManifest::from(&signed);
                entries.insert(
                    key,
                    Cached {
                        generation: snap.generation,
                        manifest,
                        signed: signed.clone(),
                    },
                );
                return Ok(signed);
            }
        }
        Err(ServiceError::Conflict(
            "the release manifest changed under three attempts to sign it".into(),
        ))
    }
}
