//! The automatic halt's records in SQLite (rule 6): counted reports, resume baselines and the
//! holds of single orgs.

use super::fleet;
use super::rows::Cells;
use super::{collect, first};
use crate::domain::{Channel, OrgCode, Version};
use crate::store::{CountedTally, DeviceEvent, EventKind, ReportOutcome, Result, RolloutHold};
use rusqlite::{params, Row, Transaction};

pub(super) fn record_report(tx: &Transaction, e: &DeviceEvent) -> Result<ReportOutcome> {
    let Some(version) = e.version.as_ref() else {
        let counts = fleet::append_device_event(tx, e)?;
        return Ok(ReportOutcome::Recorded {
            counts,
            new_counted_failure: false,
            tallies: Vec::new(),
        });
    };
    let version_text = version.to_string();
    let offered = first(
        &mut tx.prepare_cached(
            "SELECT 1 FROM offers WHERE version = ?1 AND channel = ?2 AND device_id = ?3",
        )?,
        params![version_text, e.channel.as_str(), e.device_id],
        |_| Ok(()),
    )?
    .is_some();
    if !offered {
        return Ok(ReportOutcome::NotOffered);
    }
    let counts = fleet::append_device_event(tx, e)?;
    let mut new_counted_failure = false;
    if e.kind != EventKind::Downloaded {
        // A device that enrolled once the rollout was running came with a package of a release
        // at least as new, or was enrolled to report: either way its word is not an update's.
        let enrolled_before: Option<i64> = tx
            .prepare_cached(
                "SELECT count(*) FROM devices d JOIN rollouts r ON r.version = ?2 AND r.channel = ?3 \
                 WHERE d.id = ?1 AND d.enrolled_at < r.published_at",
            )?
            .query_row(params![e.device_id, version_text, e.channel.as_str()], |row| {
                row.get(0)
            })?;
        if enrolled_before.unwrap_or(0) > 0 {
            let inserted =
                tx.prepare_cached(
                    "INSERT INTO counted_reports (version, channel, device_id, org, kind, at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                     ON CONFLICT (version, channel, device_id, kind) DO NOTHING",
                )?
                .execute(params![
                    version_text,
                    e.channel.as_str(),
                    e.device_id,
                    e.org.as_str(),
                    e.kind.as_str(),
                    e.at
                ])? > 0;
            new_counted_failure = inserted && e.kind == EventKind::Failed;
        }
    }
    let tallies = if new_counted_failure {
        counted_tallies(tx, &version_text, &e.channel)?
    } else {
        Vec::new()
    };
    Ok(ReportOutcome::Recorded {
        counts,
        new_counted_failure,
        tallies,
    })
}

fn tally(row: &Row) -> Result<CountedTally> {
    let c = Cells::new(row, "counted_reports", &["org"]);
    Ok(CountedTally {
        org: c.parse("org", OrgCode::parse)?,
        installed: c.u64("installed")?,
        failed: c.u64("failed")?,
    })
}

/// Per org, the counted reports since the last resume: one range of the unique index.
fn counted_tallies(
    tx: &Transaction,
    version: &str,
    channel: &Channel,
) -> Result<Vec<CountedTally>> {
    let mut stmt = tx.prepare_cached(
        "SELECT org, sum(kind = 'installed') AS installed, sum(kind = 'failed') AS failed \
         FROM counted_reports WHERE version = ?1 AND channel = ?2 AND id > coalesce( \
           (SELECT after_id FROM halt_baselines WHERE version = ?1 AND channel = ?2), 0) \
         GROUP BY org ORDER BY org",
    )?;
    collect(&mut stmt, params![version, channel.as_str()], tally)
}

fn hold(row: &Row) -> Result<RolloutHold> {
    let c = Cells::new(row, "rollout_holds", &["version", "channel", "org"]);
    Ok(RolloutHold {
        version: c.parse("version", Version::parse)?,
        channel: c.parse("channel", Channel::parse)?,
        org: c.parse("org", OrgCode::parse)?,
        reason: c.get("reason")?,
        at: c.get("at")?,
    })
}

pub(super) fn put_rollout_hold(tx: &Transaction, h: &RolloutHold) -> Result<bool> {
    let inserted = tx
        .prepare_cached(
            "INSERT INTO rollout_holds (version, channel, org, reason, at) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (version, channel, org) DO NOTHING",
        )?
        .execute(params![
            h.version.to_string(),
            h.channel.as_str(),
            h.org.as_str(),
            h.reason,
            h.at
        ])?;
    Ok(inserted > 0)
}

pub(super) fn list_rollout_holds(tx: &Transaction) -> Result<Vec<RolloutHold>> {
    let mut stmt = tx.prepare_cached(
        "SELECT version, channel, org, reason, at FROM rollout_holds ORDER BY at, version, channel, org",
    )?;
    collect(&mut stmt, [], hold)
}

pub(super) fn resume_rollout_halt(
    tx: &Transaction,
    version: &Version,
    channel: &Channel,
) -> Result<Vec<RolloutHold>> {
    let version = version.to_string();
    let mut stmt = tx.prepare_cached(
        "DELETE FROM rollout_holds WHERE version = ?1 AND channel = ?2 \
         RETURNING version, channel, org, reason, at",
    )?;
    let lifted = collect(&mut stmt, params![version, channel.as_str()], hold)?;
    tx.prepare_cached(
        "INSERT INTO halt_baselines (version, channel, after_id) \
         VALUES (?1, ?2, (SELECT coalesce(max(id), 0) FROM counted_reports)) \
         ON CONFLICT (version, channel) DO UPDATE SET after_id = excluded.after_id",
    )?
    .execute(params![version, channel.as_str()])?;
    Ok(lifted)
}
