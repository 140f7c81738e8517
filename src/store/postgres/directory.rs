//! Directory sync's records in PostgreSQL: eligible users, deactivation reasons, flags.

use super::pool::Queries;
use super::rows::{self, Cells};
use super::{require_org, Result};
use crate::domain::OrgCode;
use crate::store::{DirectoryChange, DirectoryOutcome, DirectoryUser, Flag, FlagKind, FlagStatus};
use postgres::Row;

const FLAG_COLUMNS: &str = "id, org, device_id, kind, reason, raised_by, raised_at, status, \
     resolved_by, resolved_at, note";

fn flag(row: &Row) -> Result<Flag> {
    let c = Cells::new(row, "flags", &[]);
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

pub(super) fn directory_users(db: &mut dyn Queries, org: &OrgCode) -> Result<Vec<DirectoryUser>> {
    let found = db.query(
        "SELECT uid, name, mail FROM directory_users WHERE org = $1 ORDER BY uid",
        &[&org.as_str()],
    )?;
    rows::all(found, |row| {
        let c = Cells::new(row, "directory_users", &["uid"]);
        Ok(DirectoryUser {
            uid: c.get("uid")?,
            name: c.get("name")?,
            mail: c.get("mail")?,
        })
    })
}

pub(super) fn apply_directory_change(
    tx: &mut dyn Queries,
    change: &DirectoryChange,
) -> Result<DirectoryOutcome> {
    require_org(tx, &change.org)?;
    let org = change.org.as_str();
    tx.execute("DELETE FROM directory_users WHERE org = $1", &[&org])?;
    // One statement for the whole group: 50,000 round trips would take longer than the sync.
    let uids: Vec<&str> = change.users.iter().map(|u| u.uid.as_str()).collect();
    let names: Vec<Option<&str>> = change.users.iter().map(|u| u.name.as_deref()).collect();
    let mails: Vec<Option<&str>> = change.users.iter().map(|u| u.mail.as_deref()).collect();
    tx.execute(
        "INSERT INTO directory_users (org, uid, name, mail, synced_at) \
         SELECT $1, u.uid, u.name, u.mail, $5 \
           FROM unnest($2::text[], $3::text[], $4::text[]) AS u (uid, name, mail) \
         ON CONFLICT (org, uid) DO NOTHING",
        &[&org, &uids, &names, &mails, &change.at],
    )?;
    let mut outcome = DirectoryOutcome::default();
    for (id, why) in &change.deactivate {
        let changed = tx.execute(
            "UPDATE devices SET deactivated_at = $3 \
             WHERE org = $1 AND id = $2 AND deactivated_at IS NULL",
            &[&org, id, &change.at],
        )?;
        if changed > 0 {
            tx.execute(
                "INSERT INTO device_deactivations (device_id, reason) VALUES ($1, $2) \
                 ON CONFLICT (device_id) DO UPDATE SET reason = excluded.reason",
                &[id, why],
            )?;
            outcome.deactivated.push(id.clone());
        }
    }
    for f in &change.flags {
        let raised = tx.execute(
            "INSERT INTO flags (org, device_id, kind, reason, raised_by, raised_at, status) \
             SELECT $1, $2, $3, $4, $5, $6, 'open' \
             WHERE EXISTS (SELECT 1 FROM devices WHERE org = $1 AND id = $2) \
               AND NOT EXISTS (SELECT 1 FROM flags WHERE device_id = $2 AND kind = $3)",
            &[
                &org,
                &f.device_id,
                &f.kind.as_str(),
                &f.reason,
                &f.raised_by,
                &change.at,
            ],
        )?;
        if raised > 0 {
            outcome.flagged.push(f.device_id.clone());
        }
    }
    Ok(outcome)
}

pub(super) fn deactivation_reasons(
    db: &mut dyn Queries,
    org: &OrgCode,
) -> Result<Vec<(String, String)>> {
    let found = db.query(
        "SELECT r.device_id, r.reason FROM device_deactivations r \
         JOIN devices d ON d.id = r.device_id WHERE d.org = $1 ORDER BY r.device_id",
        &[&org.as_str()],
    )?;
    rows::all(found, |row| {
        let c = Cells::new(row, "device_deactivations", &["device_id"]);
        Ok((c.get("device_id")?, c.get("reason")?))
    })
}

pub(super) fn list_flags(
    db: &mut dyn Queries,
    org: Option<&OrgCode>,
    status: Option<FlagStatus>,
) -> Result<Vec<Flag>> {
    let org = org.map(OrgCode::as_str);
    let status = status.map(FlagStatus::as_str);
    let found = db.query(
        &format!(
            "SELECT {FLAG_COLUMNS} FROM flags WHERE ($1::text IS NULL OR org = $1) \
             AND ($2::text IS NULL OR status = $2) ORDER BY id DESC"
        ),
        &[&org, &status],
    )?;
    rows::all(found, flag)
}
