//! Directory sync's records in SQLite: eligible users, deactivation reasons, flags.

use super::collect;
use super::rows::Cells;
use crate::domain::OrgCode;
use crate::store::{
    DirectoryChange, DirectoryOutcome, DirectoryUser, Flag, FlagKind, FlagStatus, Result,
};
use rusqlite::{params, Row, Transaction};

const FLAG_COLUMNS: &str = "id, org, device_id, kind, reason, raised_by, raised_at, status, \
     resolved_by, resolved_at, note";

fn flag(row: &Row) -> Result<Flag> {
    let c = Cells::new(row, "flags", &["id"]);
    let id: i64 = c.get("id")?;
    Ok(Flag {
        id: u64::try_from(id).map_err(|_| c.corrupt("id", "negative"))?,
        org: c.parse("org", OrgCode::parse)?,
        device_id: c.get("device_id")?,
        kind: c.parse("kind", |s| FlagKind::parse(s).ok_or("unknown kind"))?,
        reason: c.get("reason")?,
        raised_by: c.get("raised_by")?,
        raised_at: c.get("raised_at")?,
        status: c.parse("status", |s| FlagStatus::parse(s).ok_or("unknown status"))?,
        resolved_by: c.get("resolved_by")?,
        resolved_at: c.get("resolved_at")?,
        note: c.get("note")?,
    })
}

pub(super) fn directory_users(tx: &Transaction, org: &OrgCode) -> Result<Vec<DirectoryUser>> {
    let mut stmt = tx.prepare_cached(
        "SELECT uid, name, mail FROM directory_users WHERE org = ?1 ORDER BY uid",
    )?;
    collect(&mut stmt, [org.as_str()], |row| {
        let c = Cells::new(row, "directory_users", &["uid"]);
        Ok(DirectoryUser {
            uid: c.get("uid")?,
            name: c.get("name")?,
            mail: c.get("mail")?,
        })
    })
}

pub(super) fn apply_directory_change(
    tx: &Transaction,
    change: &DirectoryChange,
) -> Result<DirectoryOutcome> {
    super::require_org(tx, &change.org)?;
    let org = change.org.as_str();
    tx.prepare_cached("DELETE FROM directory_users WHERE org = ?1")?
        .execute([org])?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO directory_users (org, uid, name, mail, synced_at) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (org, uid) DO NOTHING",
    )?;
    for u in &change.users {
        insert.execute(params![org, u.uid, u.name, u.mail, change.at])?;
    }
    let mut outcome = DirectoryOutcome::default();
    let mut deactivate = tx.prepare_cached(
        "UPDATE devices SET deactivated_at = ?3 WHERE org = ?1 AND id = ?2 AND deactivated_at IS NULL",
    )?;
    let mut reason = tx.prepare_cached(
        "INSERT INTO device_deactivations (device_id, reason) VALUES (?1, ?2) \
         ON CONFLICT (device_id) DO UPDATE SET reason = excluded.reason",
    )?;
    for (id, why) in &change.deactivate {
        if deactivate.execute(params![org, id, change.at])? > 0 {
            reason.execute(params![id, why])?;
            outcome.deactivated.push(id.clone());
        }
    }
    let mut raise = tx.prepare_cached(
        "INSERT INTO flags (org, device_id, kind, reason, raised_by, raised_at, status) \
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, 'open' \
         WHERE EXISTS (SELECT 1 FROM devices WHERE org = ?1 AND id = ?2) \
           AND NOT EXISTS (SELECT 1 FROM flags WHERE device_id = ?2 AND kind = ?3)",
    )?;
    for f in &change.flags {
        let raised = raise.execute(params![
            org,
            f.device_id,
            f.kind.as_str(),
            f.reason,
            f.raised_by,
            change.at
        ])?;
        if raised > 0 {
            outcome.flagged.push(f.device_id.clone());
        }
    }
    Ok(outcome)
}

pub(super) fn deactivation_reasons(
    tx: &Transaction,
    org: &OrgCode,
) -> Result<Vec<(String, String)>> {
    let mut stmt = tx.prepare_cached(
        "SELECT r.device_id, r.reason FROM device_deactivations r \
         JOIN devices d ON d.id = r.device_id WHERE d.org = ?1 ORDER BY r.device_id",
    )?;
    collect(&mut stmt, [org.as_str()], |row| {
        let c = Cells::new(row, "device_deactivations", &["device_id"]);
        Ok((c.get("device_id")?, c.get("reason")?))
    })
}

pub(super) fn list_flags(
    tx: &Transaction,
    org: Option<&OrgCode>,
    status: Option<FlagStatus>,
) -> Result<Vec<Flag>> {
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT {FLAG_COLUMNS} FROM flags WHERE (?1 IS NULL OR org = ?1) \
         AND (?2 IS NULL OR status = ?2) ORDER BY id DESC"
    ))?;
    collect(
        &mut stmt,
        params![org.map(OrgCode::as_str), status.map(FlagStatus::as_str)],
        flag,
    )
}
