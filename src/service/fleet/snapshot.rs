//! What an update check reads, held in memory and replaced whole when the store changes.

use crate::domain::{Channel, OrgCode, Platform, Sha256, Version};
use crate::org::Org;
use crate::store::{ChannelSettings, MetaStore, Release, Result, Rollout};
use std::collections::HashMap;

/// A device as an update check needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEntry {
    pub id: String,
    pub org: OrgCode,
    pub platform: Platform,
    pub active: bool,
}

/// A package as an offer and a manifest describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageDigest {
    pub file_name: String,
    pub sha256: Sha256,
    pub size: u64,
}

pub struct Snapshot {
    /// The store's change counter this was loaded at.
    pub counter: u64,
    pub orgs: HashMap<OrgCode, Org>,
    /// Newest first.
    pub releases: Vec<Release>,
    pub rollouts: Vec<Rollout>,
    pub channels: HashMap<Channel, ChannelSettings>,
    pub packages: HashMap<(OrgCode, Version, Platform), PackageDigest>,
    /// Devices by the SHA-256 of their token.
    pub devices: HashMap<Sha256, DeviceEntry>,
    /// The same devices by id.
    pub devices_by_id: HashMap<String, DeviceEntry>,
}

impl Snapshot {
    pub fn load(meta: &dyn MetaStore, counter: u64) -> Result<Self> {
        let orgs: HashMap<OrgCode, Org> = meta
            .list_orgs()?
            .into_iter()
            .map(|o| (o.code.clone(), o))
            .collect();
        let mut channels = HashMap::new();
        for org in orgs.values() {
            let channel = &org.config.channel;
            if !channels.contains_key(channel) {
                if let Some(settings) = meta.get_channel(channel)? {
                    channels.insert(channel.clone(), settings);
                }
            }
        }
        let packages = meta
            .list_packages(None, None)?
            .into_iter()
            .map(|p| {
                let digest = PackageDigest {
                    file_name: p.file_name,
                    sha256: p.sha256,
                    size: p.size,
                };
                ((p.org, p.version, p.platform), digest)
            })
            .collect();
        let mut devices = HashMap::new();
        let mut devices_by_id = HashMap::new();
        for d in meta.list_devices(None)? {
            let entry = DeviceEntry {
                active: d.deactivated_at.is_none(),
                id: d.id,
                org: d.org,
                platform: d.platform,
            };
            devices_by_id.insert(entry.id.clone(), entry.clone());
            devices.insert(d.token_hash, entry);
        }
        Ok(Snapshot {
            counter,
            orgs,
            releases: meta.list_releases()?,
            rollouts: meta.list_rollouts()?,
            channels,
            packages,
            devices,
            devices_by_id,
        })
    }

    pub fn package(
        &self,
        org: &OrgCode,
        version: &Version,
        platform: Platform,
    ) -> Option<&PackageDigest> {
        self.packages.get(&(org.clone(), version.clone(), platform))
    }
}
