//! People signed in through single sign-on and their personal tokens, in SQLite.

use super::rows::Cells;
use super::{collect, conflict_on_duplicate, first};
use crate::domain::Sha256;
use crate::store::people::{orgs_from_text, orgs_to_text};
use crate::store::{PersonRecord, PersonalTokenRecord, Result, StoreError};
use rusqlite::{params, Row, Transaction};

const TOKEN_COLUMNS: &str = "id, person, name, secret_hash, created_at, expires_at, revoked_at";

fn person(row: &Row) -> Result<PersonRecord> {
    let c = Cells::new(row, "persons", &["id"]);
    Ok(PersonRecord {
        id: c.get("id")?,
        admin: c.get("admin")?,
        orgs: c.parse("orgs", orgs_from_text)?,
        signed_in_at: c.get("signed_in_at")?,
        address: c.get("address")?,
    })
}

fn token(row: &Row) -> Result<PersonalTokenRecord> {
    let c = Cells::new(row, "personal_tokens", &["id"]);
    Ok(PersonalTokenRecord {
        id: c.get("id")?,
        person: c.get("person")?,
        name: c.get("name")?,
        secret_hash: c.parse("secret_hash", Sha256::parse)?,
        created_at: c.get("created_at")?,
        expires_at: c.get("expires_at")?,
        revoked_at: c.get("revoked_at")?,
    })
}

pub(super) fn put_person(tx: &Transaction, p: &PersonRecord) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO persons (id, admin, orgs, signed_in_at, address) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (id) DO UPDATE SET admin = excluded.admin, orgs = excluded.orgs, \
         signed_in_at = excluded.signed_in_at, address = excluded.address",
    )?
    .execute(params![
        p.id,
        p.admin,
        orgs_to_text(&p.orgs),
        p.signed_in_at,
        p.address
    ])?;
    Ok(())
}

pub(super) fn get_person(tx: &Transaction, id: &str) -> Result<Option<PersonRecord>> {
    let mut stmt = tx.prepare_cached(
        "SELECT id, admin, orgs, signed_in_at, address FROM persons WHERE id = ?1",
    )?;
    first(&mut stmt, [id], person)
}

pub(super) fn create_personal_token(tx: &Transaction, t: &PersonalTokenRecord) -> Result<()> {
    if get_person(tx, &t.person)?.is_none() {
        return Err(StoreError::NotFound(format!("person {}", t.person)));
    }
    tx.prepare_cached(&format!(
        "INSERT INTO personal_tokens ({TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
    ))?
    .execute(params![
        t.id,
        t.person,
        t.name,
        t.secret_hash.to_hex(),
        t.created_at,
        t.expires_at,
        t.revoked_at
    ])
    .map_err(conflict_on_duplicate(|| {
        format!(
            "a personal token with id {} or the same secret exists",
            t.id
        )
    }))?;
    Ok(())
}

pub(super) fn list_personal_tokens(
    tx: &Transaction,
    person: &str,
) -> Result<Vec<PersonalTokenRecord>> {
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT {TOKEN_COLUMNS} FROM personal_tokens WHERE person = ?1 ORDER BY created_at, id"
    ))?;
    collect(&mut stmt, [person], token)
}

pub(super) fn find_personal_token(
    tx: &Transaction,
    hash: &Sha256,
) -> Result<Option<PersonalTokenRecord>> {
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT {TOKEN_COLUMNS} FROM personal_tokens WHERE secret_hash = ?1"
    ))?;
    first(&mut stmt, [hash.to_hex()], token)
}

pub(super) fn revoke_personal_token(
    tx: &Transaction,
    person: &str,
    id: &str,
    now: i64,
) -> Result<bool> {
    let changed = tx
        .prepare_cached(
            "UPDATE personal_tokens SET revoked_at = ?3 \
             WHERE person = ?1 AND id = ?2 AND revoked_at IS NULL",
        )?
        .execute(params![person, id, now])?;
    Ok(changed > 0)
}
