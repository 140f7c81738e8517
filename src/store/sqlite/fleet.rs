//! Devices, their update checks and reports, and the manifests they are served, in SQLite.

use super::rows::Cells;
use super::{collect, first, require_org};
use crate::domain::{Channel, OrgCode, Platform, Sha256, Version};
use crate::store::{
    Checkin, Device, DeviceEvent, ManifestRecord, Result, RolloutCounts, StoreError,
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
            offered.execute(params![
                c.device_id,
                version.to_string(),
                channel.as_str(),
                c.at
            ])?;
        }
    }
    Ok(())
}

pub(super) fn append_device_event(tx: &Transaction, e: &DeviceEvent) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO device_events (device_id, org, version, channel, kind, message, at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        e.device_id,
        e.org.as_str(),
        e.version.as_ref().map(ToString::to_string),
        e.channel.as_str(),
        e.kind.as_str(),
        e.message,
        e.at,
    ])?;
    Ok(())
}

/// Counts in devices, not reports: an agent that keeps failing reports again at every check.
/// For installed and failed, a device's latest report of the two is the one that counts.
pub(super) fn rollout_counts(
    tx: &Transaction,
    version: &Version,
    channel: &Channel,
) -> Result<RolloutCounts> {
    let v = version.to_string();
    let key = params![v, channel.as_str()];
    let count = |sql: &str| -> Result<u64> {
        let n: i64 = tx.prepare_cached(sql)?.query_row(key, |row| row.get(0))?;
        Ok(n.max(0) as u64)
    };
    let mut counts = RolloutCounts {
        offered: count("SELECT count(*) FROM offers WHERE version = ?1 AND channel = ?2")?,
        downloaded: count(
            "SELECT count(DISTINCT device_id) FROM device_events \
             WHERE version = ?1 AND channel = ?2 AND kind = 'downloaded'",
        )?,
        ..Default::default()
    };
    let mut stmt = tx.prepare_cached(
        "SELECT e.kind, count(*) FROM device_events e \
         WHERE e.version = ?1 AND e.channel = ?2 AND e.kind IN ('installed', 'failed') \
           AND e.id = (SELECT max(l.id) FROM device_events l \
                       WHERE l.version = e.version AND l.channel = e.channel \
                         AND l.device_id = e.device_id AND l.kind IN ('installed', 'failed')) \
         GROUP BY e.kind",
    )?;
    let mut rows = stmt.query(key)?;
    while let Some(row) = rows.next()? {
        let kind: String = row.get(0)?;
        let n: i64 = row.get(1)?;
        let n = n.max(0) as u64;
        match kind.as_str() {
            "installed" => counts.installed = n,
            "failed" => counts.failed = n,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "device_events: unexpected kind {other:?}"
                )))
            }
        }
    }
    Ok(counts)
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

pub(super) fn put_manifest(tx: &Transaction, m: &ManifestRecord) -> Result<bool> {
    let serial = super::to_i64("manifest serial", m.serial)?;
    let changed = tx
        .prepare_cached(
            "INSERT INTO manifests (org, platform, channel, serial, json, minisig) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (org, platform, channel) DO UPDATE SET serial = excluded.serial, json = excluded.json, \
             minisig = excluded.minisig WHERE excluded.serial > manifests.serial",
        )?
        .execute(params![m.org.as_str(), m.platform.as_str(), m.channel.as_str(), serial, m.json, m.minisig])?;
    Ok(changed > 0)
}
