//! People signed in through single sign-on and their personal tokens, in PostgreSQL.

use super::pool::Queries;
use super::rows::{self, Cells};
use super::{conflict_on_duplicate, Result};
use crate::domain::Sha256;
use crate::store::people::{orgs_from_text, orgs_to_text};
use crate::store::{PersonRecord, PersonalTokenRecord, StoreError};
use postgres::Row;

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
        secret_hash: c.sha256("secret_hash")?,
        created_at: c.get("created_at")?,
        expires_at: c.get("expires_at")?,
        revoked_at: c.get("revoked_at")?,
    })
}

pub(super) fn put_person(tx: &mut dyn Queries, p: &PersonRecord) -> Result<()> {
    tx.execute(
        "INSERT INTO persons (id, admin, orgs, signed_in_at, address) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (id) DO UPDATE SET admin = excluded.admin, orgs = excluded.orgs, \
         signed_in_at = excluded.signed_in_at, address = excluded.address",
        &[
            &p.id,
            &p.admin,
            &orgs_to_text(&p.orgs),
            &p.signed_in_at,
            &p.address,
        ],
    )?;
    Ok(())
}

pub(super) fn get_person(db: &mut dyn Queries, id: &str) -> Result<Option<PersonRecord>> {
    let row = db.query_opt(
        "SELECT id, admin, orgs, signed_in_at, address FROM persons WHERE id = $1",
        &[&id],
    )?;
    rows::first(row, person)
}

pub(super) fn create_personal_token(tx: &mut dyn Queries, t: &PersonalTokenRecord) -> Result<()> {
    // The person's row is held until commit, so that it cannot go meanwhile.
    if tx
        .query_opt(
            "SELECT 1 FROM persons WHERE id = $1 FOR KEY SHARE",
            &[&t.person],
        )?
        .is_none()
    {
        return Err(StoreError::NotFound(format!("person {}", t.person)));
    }
    tx.execute(
        &format!(
            "INSERT INTO personal_tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ),
        &[
            &t.id,
            &t.person,
            &t.name,
            &t.secret_hash.as_bytes().as_slice(),
            &t.created_at,
            &t.expires_at,
            &t.revoked_at,
        ],
    )
    .map_err(conflict_on_duplicate(|_| {
        format!(
            "a personal token with id {} or the same secret exists",
            t.id
        )
    }))?;
    Ok(())
}

pub(super) fn list_personal_tokens(
    db: &mut dyn Queries,
    person: &str,
) -> Result<Vec<PersonalTokenRecord>> {
    db.query(
        &format!(
            "SELECT {TOKEN_COLUMNS} FROM personal_tokens WHERE person = $1 ORDER BY created_at, id"
        ),
        &[&person],
    )?
    .iter()
    .map(token)
    .collect()
}

pub(super) fn find_personal_token(
    db: &mut dyn Queries,
    hash: &Sha256,
) -> Result<Option<PersonalTokenRecord>> {
    let row = db.query_opt(
        &format!("SELECT {TOKEN_COLUMNS} FROM personal_tokens WHERE secret_hash = $1"),
        &[&hash.as_bytes().as_slice()],
    )?;
    rows::first(row, token)
}

pub(super) fn revoke_personal_token(
    tx: &mut dyn Queries,
    person: &str,
    id: &str,
    now: i64,
) -> Result<bool> {
    let changed = tx.execute(
        "UPDATE personal_tokens SET revoked_at = $3 \
         WHERE person = $1 AND id = $2 AND revoked_at IS NULL",
        &[&person, &id, &now],
    )?;
    Ok(changed > 0)
}
