//! What an update check reads, held in memory. The configuration part (orgs, releases,
//! rollouts, channels, packages) is replaced whole when the store changes; the device index is
//! also changed in place by this process's own enrollments and deactivations, so that a burst of
//! enrollments does not reload every device once per enrollment.

use super::PackageOffer;
use crate::domain::{Channel, OrgCode, Platform, Sha256, Version};
use crate::org::Org;
use crate::service::views::download_path;
use crate::store::{ChannelSettings, MetaStore, Release, Result, Rollout, RolloutHold};
// Every key of these maps comes from the store (token hashes, org codes, device ids), never
// from a client, so a fast hash is safe: a lookup with a client's token hash can find nothing
// it could not find anyway, and no client can make keys collide.
use foldhash::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// An enrolled device that is not deactivated, as an update check needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEntry {
    pub id: String,
    pub org: OrgCode,
    pub platform: Platform,
}

/// A package as an offer and a manifest describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageDigest {
    pub file_name: String,
    pub sha256: Sha256,
    pub size: u64,
    /// The package as an offer shows it, made once per snapshot rather than per answer.
    pub offer: Arc<PackageOffer>,
}

/// The active devices by the SHA-256 of their token, and the token hash of each device id.
/// Deactivated devices are left out: they are refused like unknown ones.
#[derive(Debug, Default)]
pub struct DeviceIndex {
    by_token: HashMap<Sha256, DeviceEntry>,
    token_of: HashMap<String, Sha256>,
}

impl DeviceIndex {
    pub fn by_token(&self, hash: &Sha256) -> Option<&DeviceEntry> {
        self.by_token.get(hash)
    }

    pub fn by_id(&self, id: &str) -> Option<&DeviceEntry> {
        self.token_of.get(id).and_then(|h| self.by_token.get(h))
    }

    pub fn len(&self) -> usize {
        self.by_token.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_token.is_empty()
    }

    pub(super) fn insert(&mut self, token_hash: Sha256, device: DeviceEntry) {
        if let Some(old) = self.token_of.insert(device.id.clone(), token_hash) {
            self.by_token.remove(&old);
        }
        self.by_token.insert(token_hash, device);
    }

    pub(super) fn remove(&mut self, id: &str) {
        if let Some(hash) = self.token_of.remove(id) {
            self.by_token.remove(&hash);
        }
    }
}

pub struct Snapshot {
    /// The store's change counter the configuration was loaded at. Device changes applied in
    /// place leave it alone: they change no manifest.
    pub generation: u64,
    pub orgs: HashMap<OrgCode, Org>,
    /// Newest first.
    pub releases: Vec<Release>,
    pub rollouts: Vec<Rollout>,
    /// Rollouts held for single orgs by the automatic halt (rule 6); almost always empty.
    pub holds: Vec<RolloutHold>,
    pub channels: HashMap<Channel, ChannelSettings>,
    /// Each org's packages (a few per release): looked up without building a key.
    pub packages: HashMap<OrgCode, Vec<(Version, Platform, PackageDigest)>>,
    devices: RwLock<DeviceIndex>,
}

impl Snapshot {
    /// Loads everything; `counter` must have been read before, so that what is loaded is at
    /// least as new as the counter says.
    pub fn load(meta: &dyn MetaStore, counter: u64) -> Result<Self> {
        let orgs: HashMap<OrgCode, Org> = meta
            .list_orgs()?
            .into_iter()
            .map(|o| (o.code.clone(), o))
            .collect();
        let mut channels = HashMap::default();
        for org in orgs.values() {
            let channel = &org.config.channel;
            if !channels.contains_key(channel) {
                if let Some(settings) = meta.get_channel(channel)? {
                    channels.insert(channel.clone(), settings);
                }
            }
        }
        let mut packages: HashMap<OrgCode, Vec<_>> = HashMap::default();
        for p in meta.list_packages(None, None)? {
            let url = download_path(&p.org, &p.version, &p.file_name);
            let digest = PackageDigest {
                offer: Arc::new(PackageOffer {
                    minisig: format!("{url}.minisig"),
                    url,
                    sha256: p.sha256.to_hex(),
                    size: p.size,
                }),
                file_name: p.file_name,
                sha256: p.sha256,
                size: p.size,
            };
            packages
                .entry(p.org)
                .or_default()
                .push((p.version, p.platform, digest));
        }
        let mut devices = DeviceIndex::default();
        for d in meta.list_devices(None)? {
            if d.deactivated_at.is_none() {
                let entry = DeviceEntry {
                    id: d.id,
                    org: d.org,
                    platform: d.platform,
                };
                devices.insert(d.token_hash, entry);
            }
        }
        Ok(Snapshot {
            generation: counter,
            orgs,
            releases: meta.list_releases()?,
            rollouts: meta.list_rollouts()?,
            holds: meta.list_rollout_holds()?,
            channels,
            packages,
            devices: RwLock::new(devices),
        })
    }

    pub fn package(
        &self,
        org: &OrgCode,
        version: &Version,
        platform: Platform,
    ) -> Option<&PackageDigest> {
        self.packages
            .get(org)?
            .iter()
            .find(|(v, p, _)| v == version && *p == platform)
            .map(|(_, _, digest)| digest)
    }

    /// The active devices; hold the guard briefly (the hot path reads it on every request).
    pub fn devices(&self) -> RwLockReadGuard<'_, DeviceIndex> {
        // A panic while the lock was held cannot leave the maps half-changed: every change is
        // one insert or remove.
        self.devices.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn devices_mut(&self) -> RwLockWriteGuard<'_, DeviceIndex> {
        self.devices.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str) -> DeviceEntry {
        DeviceEntry {
            id: id.into(),
            org: OrgCode::parse("physics").unwrap(),
            platform: Platform::LinuxX86_64,
        }
    }

    #[test]
    fn device_index_keeps_both_maps_in_step() {
        let (ta, tb, tc) = (
            Sha256::digest(b"a"),
            Sha256::digest(b"b"),
            Sha256::digest(b"c"),
        );
        let mut index = DeviceIndex::default();
        index.insert(ta, entry("dev_a"));
        index.insert(tb, entry("dev_b"));
        assert_eq!(index.by_token(&ta), Some(&entry("dev_a")));
        assert_eq!(index.by_id("dev_b"), Some(&entry("dev_b")));
        // The same device with another token: the old token stops working.
        index.insert(tc, entry("dev_a"));
        assert_eq!(index.by_token(&ta), None);
        assert_eq!(index.by_id("dev_a"), Some(&entry("dev_a")));
        assert_eq!(index.len(), 2);
        index.remove("dev_a");
        index.remove("dev_unknown");
        assert_eq!((index.by_token(&tc), index.by_id("dev_a")), (None, None));
        assert_eq!(index.len(), 1);
    }
}
