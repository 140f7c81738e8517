//! Devices, their update checks and reports, and the manifests they are served, in PostgreSQL.
//!
//! Several replicas record check-ins and reports at the same time, so nothing here reads a value
//! to write it back: counts move by `x = x + n` under the row's lock, a device's standing is
//! read `FOR UPDATE`, and an offer counts only when its row is really inserted.

use super::pool::Queries;
use super::rows::{self, to_i64, Cells};
use super::{conflict_on_duplicate, require_org, Result};
use crate::domain::{Channel, OrgCode, Platform, Version};
use crate::store::{
    Checkin, Device, DeviceEvent, EventKind, ManifestRecord, RolloutCounts, StoreError,
};
use postgres::Row;
use std::collections::{BTreeMap, HashSet};

const DEVICE_COLUMNS: &str =
    "id, org, hostname, platform, os_version, user_name, token_hash, enrolled_at, \
     deactivated_at, last_seen_at, last_address, current_version";

fn device(row: &Row) -> Result<Device> {
    let c = Cells::new(row, "devices", &["id"]);
    Ok(Device {
        id: c.get("id")?,
        org: c.parse("org", OrgCode::parse)?,
        hostname: c.get("hostname")?,
        platform: c.parse("platform", Platform::parse)?,
        os_version: c.get("os_version")?,
        user: c.get("user_name")?,
        token_hash: c.sha256("token_hash")?,
        enrolled_at: c.get("enrolled_at")?,
        deactivated_at: c.get("deactivated_at")?,
        last_seen_at: c.get("last_seen_at")?,
        last_address: c.get("last_address")?,
        current_version: c.parse_opt("current_version", Version::parse)?,
    })
}

pub(super) fn create_device(tx: &mut dyn Queries, d: &Device) -> Result<()> {
    require_org(tx, &d.org)?;
    tx.execute(
        &format!(
            "INSERT INTO devices ({DEVICE_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ),
        &[
            &d.id,
            &d.org.as_str(),
            &d.hostname,
            &d.platform.as_str(),
            &d.os_version,
            &d.user,
            &d.token_hash.as_bytes().as_slice(),
            &d.enrolled_at,
            &d.deactivated_at,
            &d.last_seen_at,
            &d.last_address,
            &d.current_version.as_ref().map(ToString::to_string),
        ],
    )
    .map_err(conflict_on_duplicate(|_| format!("device {} exists", d.id)))?;
    Ok(())
}

pub(super) fn list_devices(db: &mut dyn Queries, org: Option<&OrgCode>) -> Result<Vec<Device>> {
    let rows = match org {
        Some(org) => db.query(
            &format!(
                "SELECT {DEVICE_COLUMNS} FROM devices WHERE org = $1 ORDER BY enrolled_at, id"
            ),
            &[&org.as_str()],
        )?,
        None => db.query(
            &format!("SELECT {DEVICE_COLUMNS} FROM devices ORDER BY enrolled_at, id"),
            &[],
        )?,
    };
    rows::all(rows, device)
}

pub(super) fn count_active_devices(db: &mut dyn Queries, org: &OrgCode) -> Result<u64> {
    let row = db.query_opt(
        "SELECT count(*) AS active FROM devices WHERE org = $1 AND deactivated_at IS NULL",
        &[&org.as_str()],
    )?;
    match row {
        Some(row) => Cells::new(&row, "devices", &[]).u64("active"),
        None => Ok(0),
    }
}

pub(super) fn deactivate_device(
    tx: &mut dyn Queries,
    org: &OrgCode,
    id: &str,
    now: i64,
) -> Result<bool> {
    let changed = tx.execute(
        "UPDATE devices SET deactivated_at = $3 \
         WHERE org = $1 AND id = $2 AND deactivated_at IS NULL",
        &[&org.as_str(), &id, &now],
    )?;
    Ok(changed > 0)
}

/// A device's check-ins of one batch, folded as applying them one by one would leave the row:
/// the latest time, the last address, the last version reported.
struct Seen<'a> {
    at: i64,
    address: &'a str,
    version: Option<String>,
}

/// Two statements for the whole batch, whatever its size: the devices' rows, then the offers
/// with the counts of those that are new.
pub(super) fn record_checkins(tx: &mut dyn Queries, checkins: &[Checkin]) -> Result<()> {
    // Sorted by id, so that replicas writing overlapping batches lock rows in one order.
    let mut seen: BTreeMap<&str, Seen> = BTreeMap::new();
    for c in checkins {
        let version = c.version.as_ref().map(ToString::to_string);
        seen.entry(&c.device_id)
            .and_modify(|s| {
                s.at = s.at.max(c.at);
                s.address = &c.address;
                if version.is_some() {
                    s.version.clone_from(&version);
                }
            })
            .or_insert(Seen {
                at: c.at,
                address: &c.address,
                version: version.clone(),
            });
    }
    if !seen.is_empty() {
        let ids: Vec<&str> = seen.keys().copied().collect();
        let ats: Vec<i64> = seen.values().map(|s| s.at).collect();
        let addresses: Vec<&str> = seen.values().map(|s| s.address).collect();
        let versions: Vec<Option<&str>> = seen.values().map(|s| s.version.as_deref()).collect();
        tx.execute(
            "UPDATE devices AS d SET \
               last_seen_at = greatest(coalesce(d.last_seen_at, 0), c.at), \
               last_address = c.address, \
               current_version = coalesce(c.version, d.current_version) \
             FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[]) \
               AS c (id, at, address, version) \
             WHERE d.id = c.id",
            &[&ids, &ats, &addresses, &versions],
        )?;
    }

    // The first offer of a device, release and channel in the batch is the one recorded.
    let mut offered = HashSet::new();
    let (mut devices, mut versions, mut channels, mut ats) = (vec![], vec![], vec![], vec![]);
    for c in checkins {
        let Some((version, channel)) = &c.offered else {
            continue;
        };
        let version = version.to_string();
        if offered.insert((c.device_id.as_str(), version.clone(), channel.as_str())) {
            devices.push(c.device_id.as_str());
            versions.push(version);
            channels.push(channel.as_str());
            ats.push(c.at);
        }
    }
    if !devices.is_empty() {
        tx.execute(
            "WITH new AS ( \
               INSERT INTO offers (device_id, version, channel, at) \
               SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) \
               ON CONFLICT (version, channel, device_id) DO NOTHING \
               RETURNING version, channel) \
             INSERT INTO rollout_counts AS rc \
               (version, channel, offered, downloaded, installed, failed) \
             SELECT version, channel, count(*), 0, 0, 0 FROM new \
             GROUP BY version, channel ORDER BY version, channel \
             ON CONFLICT (version, channel) DO UPDATE SET offered = rc.offered + excluded.offered",
            &[&devices, &versions, &channels, &ats],
        )?;
    }
    Ok(())
}

/// A change of the rollout counts of one release and channel.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    downloaded: i64,
    installed: i64,
    failed: i64,
}

const COUNT_COLUMNS: &str = "version, channel, offered, downloaded, installed, failed";

fn counts(row: &Row) -> Result<RolloutCounts> {
    let c = Cells::new(row, "rollout_counts", &["version", "channel"]);
    Ok(RolloutCounts {
        offered: c.u64("offered")?,
        downloaded: c.u64("downloaded")?,
        installed: c.u64("installed")?,
        failed: c.u64("failed")?,
    })
}

/// Adds `tally` to the counts of a release and channel; returns them as they now stand.
fn add_to_counts(
    tx: &mut dyn Queries,
    version: &str,
    channel: &Channel,
    tally: Tally,
) -> Result<RolloutCounts> {
    let params: [&(dyn postgres::types::ToSql + Sync); 5] = [
        &version,
        &channel.as_str(),
        &tally.downloaded,
        &tally.installed,
        &tally.failed,
    ];
    // An update first: an upsert checks the row it would insert against the CHECK constraints
    // before it finds the conflict, and a device whose outcome turns brings a negative change.
    // Only a first report inserts, and its changes are never negative.
    let updated = tx.query_opt(
        &format!(
            "UPDATE rollout_counts SET downloaded = downloaded + $3, \
             installed = installed + $4, failed = failed + $5 \
             WHERE version = $1 AND channel = $2 RETURNING {COUNT_COLUMNS}"
        ),
        &params,
    )?;
    if let Some(row) = updated {
        return counts(&row);
    }
    // Another replica may insert the row meanwhile: then this adds to it.
    let inserted = tx.query_opt(
        &format!(
            "INSERT INTO rollout_counts AS rc ({COUNT_COLUMNS}) VALUES ($1, $2, 0, $3, $4, $5) \
             ON CONFLICT (version, channel) DO UPDATE SET \
               downloaded = rc.downloaded + excluded.downloaded, \
               installed = rc.installed + excluded.installed, \
               failed = rc.failed + excluded.failed \
             RETURNING {COUNT_COLUMNS}"
        ),
        &params,
    )?;
    rows::first(inserted, counts)?.ok_or_else(|| {
        StoreError::Corrupt(format!(
            "rollout_counts row {version}/{channel}: not written"
        ))
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
            downloaded: i64::from(next.downloaded) - i64::from(self.downloaded),
            installed: is(next, EventKind::Installed) - is(self, EventKind::Installed),
            failed: is(next, EventKind::Failed) - is(self, EventKind::Failed),
        }
    }
}

fn standing(row: &Row) -> Result<Standing> {
    let c = Cells::new(row, "rollout_devices", &["version", "channel", "device_id"]);
    Ok(Standing {
        downloaded: c.get("downloaded")?,
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
    tx: &mut dyn Queries,
    e: &DeviceEvent,
) -> Result<Option<RolloutCounts>> {
    let version = e.version.as_ref().map(ToString::to_string);
    tx.execute(
        "INSERT INTO device_events (device_id, org, version, channel, kind, message, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &e.device_id,
            &e.org.as_str(),
            &version,
            &e.channel.as_str(),
            &e.kind.as_str(),
            &e.message,
            &e.at,
        ],
    )?;
    let Some(version) = version else {
        return Ok(None);
    };
    let key: [&(dyn postgres::types::ToSql + Sync); 3] =
        [&version, &e.channel.as_str(), &e.device_id];
    // The row exists from here on, so that it can be locked: two reports of one device through
    // two replicas must not both start from the same standing.
    tx.execute(
        "INSERT INTO rollout_devices (version, channel, device_id, downloaded, outcome) \
         VALUES ($1, $2, $3, false, NULL) ON CONFLICT DO NOTHING",
        &key,
    )?;
    let before = tx
        .query_opt(
            "SELECT version, channel, device_id, downloaded, outcome FROM rollout_devices \
             WHERE version = $1 AND channel = $2 AND device_id = $3 FOR UPDATE",
            &key,
        )?
        .map(|row| standing(&row))
        .transpose()?
        .unwrap_or_default();
    let after = before.after(e.kind);
    if after != before {
        tx.execute(
            "UPDATE rollout_devices SET downloaded = $4, outcome = $5 \
             WHERE version = $1 AND channel = $2 AND device_id = $3",
            &[
                &version,
                &e.channel.as_str(),
                &e.device_id,
                &after.downloaded,
                &after.outcome.map(EventKind::as_str),
            ],
        )?;
    }
    add_to_counts(tx, &version, &e.channel, before.tally_to(after)).map(Some)
}

/// Counts in devices, not reports, kept by [`append_device_event`] and [`record_checkins`].
pub(super) fn rollout_counts(
    db: &mut dyn Queries,
    version: &Version,
    channel: &Channel,
) -> Result<RolloutCounts> {
    let row = db.query_opt(
        &format!("SELECT {COUNT_COLUMNS} FROM rollout_counts WHERE version = $1 AND channel = $2"),
        &[&version.to_string(), &channel.as_str()],
    )?;
    Ok(rows::first(row, counts)?.unwrap_or_default())
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
    db: &mut dyn Queries,
    org: &OrgCode,
    platform: Platform,
    channel: &Channel,
) -> Result<Option<ManifestRecord>> {
    let row = db.query_opt(
        "SELECT org, platform, channel, serial, json, minisig FROM manifests \
         WHERE org = $1 AND platform = $2 AND channel = $3",
        &[&org.as_str(), &platform.as_str(), &channel.as_str()],
    )?;
    rows::first(row, manifest)
}

pub(super) fn latest_manifest_serial(
    db: &mut dyn Queries,
    org: &OrgCode,
    platform: Platform,
) -> Result<u64> {
    let row = db.query_opt(
        "SELECT coalesce(max(serial), 0) AS serial FROM manifests WHERE org = $1 AND platform = $2",
        &[&org.as_str(), &platform.as_str()],
    )?;
    Ok(row
        .map(|row| Cells::new(&row, "manifests", &["org", "platform"]).u64("serial"))
        .transpose()?
        .unwrap_or(0))
}

/// Replicas signing two channels of one org and platform at once (during a channel change)
/// must not both take the same next serial: the org and platform are locked for the look and
/// the write (a transaction-scoped advisory lock, in a key space of its own).
const MANIFEST_LOCK_CLASS: i32 = 0x6d61_6e69;

pub(super) fn put_manifest(db: &mut dyn Queries, m: &ManifestRecord) -> Result<bool> {
    let serial = to_i64("manifest serial", m.serial)?;
    let key = format!("{}/{}", m.org, m.platform);
    db.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&MANIFEST_LOCK_CLASS, &key],
    )?;
    if latest_manifest_serial(db, &m.org, m.platform)? >= m.serial {
        return Ok(false);
    }
    let changed = db.execute(
        "INSERT INTO manifests AS m (org, platform, channel, serial, json, minisig) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (org, platform, channel) DO UPDATE SET serial = excluded.serial, \
           json = excluded.json, minisig = excluded.minisig \
         WHERE excluded.serial > m.serial",
        &[
            &m.org.as_str(),
            &m.platform.as_str(),
            &m.channel.as_str(),
            &serial,
            &m.json,
            &m.minisig,
        ],
    )?;
    Ok(changed > 0)
}
