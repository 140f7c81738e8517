//! Devices, their update checks and reports, and the manifests they are served, in SQLite.

use super::rows::Cells;
use super::{collect, first, require_org};
use crate::domain::{Channel, OrgCode, Platform, Sha256, Version};
use crate::store::{
    Checkin, Device, DeviceEvent, EventKind, ManifestRecord, Result, RolloutCounts, StoreError,
};
use rusqlite::{params, Row, Transaction};

const DEVICE_COLUMNS: &str =
    "id, org, hostname, platform, os_version, user, token_hash, enrolled_at, \
     deactivated_at, last_seen_at, last_address, current_version";

fn device(row: &Row) -> Result<Device> {
    let c = Cells::new(row, "devices", &["id"]);
    Ok(Device {
        id: c.get("id")?,
        org: c.parse("org", OrgCode::parse)?,
        hostname: c.get("hostname")?,
        platform: c.parse("platform", Platform::parse)?,
        os_version: c.get("os_version")?,
        user: c.get("user")?,
        token_hash: c.parse("token_hash", Sha256::parse)?,
        enrolled_at: c.get("enrolled_at")?,
        deactivated_at: c.get("deactivated_at")?,
        last_seen_at: c.get("last_seen_at")?,
        last_address: c.get("last_address")?,
        current_version: c.parse_opt("current_version", Version::parse)?,
    })
}

pub(super) fn create_device(tx: &Transaction, d: &Device) -> Result<()> {
    require_org(tx, &d.org)?;
    tx.prepare_cached(&format!(
        "INSERT INTO devices ({DEVICE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
    ))?
    .execute(params![
        d.id,
        d.org.as_str(),
        d.hostname,
        d.platform.as_str(),
        d.os_version,
        d.user,
        d.token_hash.to_hex(),
        d.enrolled_at,
        d.deactivated_at,
        d.last_seen_at,
        d.last_address,
        d.current_version.as_ref().map(ToString::to_string),
    ])
    .map_err(super::conflict_on_duplicate(|| format!("device {} exists", d.id)))?;
    Ok(())
}

pub(super) fn list_devices(tx: &Transaction, org: Option<&OrgCode>) -> Result<Vec<Device>> {
    match org {
        Some(org) => {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {DEVICE_COLUMNS} FROM devices WHERE org = ?1 ORDER BY enrolled_at, id"
            ))?;
            collect(&mut stmt, [org.as_str()], device)
        }
        None => {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {DEVICE_COLUMNS} FROM devices ORDER BY enrolled_at, id"
            ))?;
            collect(&mut stmt, [], device)
        }
    }
}

pub(super) fn count_active_devices(tx: &Transaction, org: &OrgCode) -> Result<u64> {
    let n: i64 = tx
        .prepare_cached("SELECT count(*) FROM devices WHERE org = ?1 AND deactivated_at IS NULL")?
        .query_row([org.as_str()], |row| row.get(0))?;
    Ok(n.max(0) as u64)
}

pub(super) fn deactivate_device(
    tx: &Transaction,
    org: &OrgCode,
    id: &str,
    now: i64,
) -> Result<bool> {
    let changed = tx
        .prepare_cached(
            "UPDATE devices SET deactivated_at = ?3 WHERE org = ?1 AND id = ?2 AND deactivated_at IS NULL",
        )?
        .execute(params![org.as_str(), id, now])?;
    Ok(changed > 0)
}

pub(super) fn record_checkins(tx: &Transaction, checkins: &[Checkin]) -> Result<()> {
    let mut seen = tx.prepare_cached(
        "UPDATE devices SET last_seen_at = max(coalesce(last_seen_at, 0), ?2), last_address = ?3, \
         current_version = coalesce(?4, current_version) WHERE id = ?1",
    )?;
    let mut offered = tx.prepare_cached(
        "INSERT INTO offers (device_id, version, channel, at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (version, channel, device_id) DO NOTHING",
    )?;
    for c in checkins {
        seen.execute(params![
            c.device_id,
            c.at,
            c.address,
            c.version.as_ref().map(ToString::to_string)
        ])?;
        if let Some((version, channel)) = &c.offered {
            let version = version.to_string();
            let first_offer =
                offered.execute(params![c.device_id, version, channel.as_str(), c.at])? > 0;
            if first_offer {
                add_to_counts(
                    tx,
                    &version,
                    channel,
                    Tally {
                        offered: 1,
                        ..Tally::default()
                    },
                )?;
            }
        }
    }
    Ok(())
}

/// A change of the rollout counts of one release and channel.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    offered: i64,
    downloaded: i64,
    installed: i64,
    failed: i64,
}

/// Adds `tally` to the counts of a release and channel; returns them as they now stand.
fn add_to_counts(
    tx: &Transaction,
    version: &str,
    channel: &Channel,
    tally: Tally,
) -> Result<RolloutCounts> {
    let params = params![
        version,
        channel.as_str(),
        tally.offered,
        tally.downloaded,
        tally.installed,
        tally.failed
    ];
    // An update, then an insert when there was no row: an upsert would not do, because SQLite
    // checks the row it would insert (a negative change, for a device whose outcome turns)
    // against the CHECK constraints before it finds the conflict.
    let updated = first(
        &mut tx.prepare_cached(
            "UPDATE rollout_counts SET offered = offered + ?3, downloaded = downloaded + ?4, \
             installed = installed + ?5, failed = failed + ?6 \
             WHERE version = ?1 AND channel = ?2 \
             RETURNING version, channel, offered, downloaded, installed, failed",
        )?,
        params,
        counts,
    )?;
    if let Some(counts) = updated {
        return Ok(counts);
    }
    first(
        &mut tx.prepare_cached(
            "INSERT INTO rollout_counts (version, channel, offered, downloaded, installed, failed) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             RETURNING version, channel, offered, downloaded, installed, failed",
        )?,
        params,
        counts,
    )?
    .ok_or_else(|| {
        StoreError::Corrupt(format!(
            "rollout_counts row {version}/{channel}: not written"
        ))
    })
}

fn counts(row: &Row) -> Result<RolloutCounts> {
    let c = Cells::new(row, "rollout_counts", &["version", "channel"]);
    Ok(RolloutCounts {
        offered: c.u64("offered")?,
        downloaded: c.u64("downloaded")?,
        installed: c.u64("installed")?,
        failed: c.u64("failed")?,
    })
}

/// A device's standing on a release and channel, as `rollout_devices` keeps it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Standing {
    downloaded: bool,
    /// The latest installed-or-failed report.
    outcome: Option<EventKind>,
}

impl Standing {
    fn after(self, kind: EventKind) -> Self {
        match kind {
            EventKind::Downloaded => Self {
                downloaded: true,
                ..self
            },
            EventKind::Installed | EventKind::Failed => Self {
                outcome: Some(kind),
                ..self
            },
        }
    }

    /// What moving from `self` to `next` changes in the counts.
    fn tally_to(self, next: Self) -> Tally {
        let is = |s: Self, kind| i64::from(s.outcome == Some(kind));
        Tally {
            offered: 0,
            downloaded: i64::from(next.downloaded) - i64::from(self.downloaded),
            installed: is(next, EventKind::Installed) - is(self, EventKind::Installed),
            failed: is(next, EventKind::Failed) - is(self, EventKind::Failed),
        }
    }
}

fn standing(row: &Row) -> Result<Standing> {
    let c = Cells::new(row, "rollout_devices", &["version", "channel", "device_id"]);
    let downloaded: i64 = c.get("downloaded")?;
    Ok(Standing {
        downloaded: downloaded != 0,
        outcome: c.parse_opt("outcome", |text| {
            EventKind::parse(text)
                .filter(|k| *k != EventKind::Downloaded)
                .ok_or_else(|| format!("{text:?} is not installed or failed"))
        })?,
    })
}

/// Records a report and, in the same transaction, the device's standing and the counts it moves:
/// a few lookups by key, however many reports there are. Returns the counts of the report's
/// release and channel as they now stand, or `None` for a report that names no release.
pub(super) fn append_device_event(
    tx: &Transaction,
    e: &DeviceEvent,
) -> Result<Option<RolloutCounts>> {
    let version = e.version.as_ref().map(ToString::to_string);
    tx.prepare_cached(
        "INSERT INTO device_events (device_id, org, version, channel, kind, message, at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        e.device_id,
        e.org.as_str(),
        version,
        e.channel.as_str(),
        e.kind.as_str(),
        e.message,
        e.at,
    ])?;
    let Some(version) = version else {
        return Ok(None);
    };
    let key = params![version, e.channel.as_str(), e.device_id];
    let before = first(
        &mut tx.prepare_cached(
            "SELECT version, channel, device_id, downloaded, outcome FROM rollout_devices \
             WHERE version = ?1 AND channel = ?2 AND device_id = ?3",
        )?,
        key,
        standing,
    )?
    .unwrap_or_default();
    let after = before.after(e.kind);
    if after != before {
        tx.prepare_cached(
            "INSERT INTO rollout_devices (version, channel, device_id, downloaded, outcome) \
             VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (version, channel, device_id) DO UPDATE SET \
               downloaded = excluded.downloaded, outcome = excluded.outcome",
        )?
        .execute(params![
            version,
            e.channel.as_str(),
            e.device_id,
            after.downloaded,
            after.outcome.map(EventKind::as_str),
        ])?;
    }
    add_to_counts(tx, &version, &e.channel, before.tally_to(after)).map(Some)
}

/// Counts in devices, not reports, kept by [`append_device_event`] and [`record_checkins`].
pub(super) fn rollout_counts(
    tx: &Transaction,
    version: &Version,
    channel: &Channel,
) -> Result<RolloutCounts> {
    let mut stmt = tx.prepare_cached(
        "SELECT version, channel, offered, downloaded, installed, failed FROM rollout_counts \
         WHERE version = ?1 AND channel = ?2",
    )?;
    Ok(first(
        &mut stmt,
        params![version.to_string(), channel.as_str()],
        counts,
    )?
    .unwrap_or_default())
}

fn manifest(row: &Row) -> Result<ManifestRecord> {
    let c = Cells::new(row, "manifests", &["org", "platform", "channel"]);
    Ok(ManifestRecord {
        org: c.parse("org", OrgCode::parse)?,
        platform: c.parse("platform", Platform::parse)?,
        channel: c.parse("channel", Channel::parse)?,
        serial: c.u64("serial")?,
        json: c.get("json")?,
        minisig: c.get("minisig")?,
    })
}

pub(super) fn get_manifest(
    tx: &Transaction,
    org: &OrgCode,
    platform: Platform,
    channel: &Channel,
) -> Result<Option<ManifestRecord>> {
    let mut stmt = tx.prepare_cached(
        "SELECT org, platform, channel, serial, json, minisig FROM manifests \
         WHERE org = ?1 AND platform = ?2 AND channel = ?3",
    )?;
    first(
        &mut stmt,
        params![org.as_str(), platform.as_str(), channel.as_str()],
        manifest,
    )
}

pub(super) fn latest_manifest_serial(
    tx: &Transaction,
    org: &OrgCode,
    platform: Platform,
) -> Result<u64> {
    let serial: i64 = tx
        .prepare_cached(
            "SELECT coalesce(max(serial), 0) FROM manifests WHERE org = ?1 AND platform = ?2",
        )?
        .query_row(params![org.as_str(), platform.as_str()], |row| row.get(0))?;
    Ok(serial.max(0) as u64)
}

pub(super) fn put_manifest(tx: &Transaction, m: &ManifestRecord) -> Result<bool> {
    let serial = super::to_i64("manifest serial", m.serial)?;
    // The write lock is held (IMMEDIATE), so nothing signs between this look and the write.
    if latest_manifest_serial(tx, &m.org, m.platform)? >= m.serial {
        return Ok(false);
    }
    let changed = tx
        .prepare_cached(
            "INSERT INTO manifests (org, platform, channel, serial, json, minisig) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (org, platform, channel) DO UPDATE SET serial = excluded.serial, json = excluded.json, \
             minisig = excluded.minisig WHERE excluded.serial > manifests.serial",
        )?
        .execute(params![m.org.as_str(), m.platform.as_str(), m.channel.as_str(), serial, m.json, m.minisig])?;
    Ok(changed > 0)
}
