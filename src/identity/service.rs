//! The identity operations on [`Depot`]: sign-in, sign-out, personal tokens. Each records its
//! audit event with the person's id and address.

use super::{IdentityError, PersonId, Result, Roles};
use crate::domain::OrgCode;
use crate::service::{hash_token, now, Actor, Depot};
use crate::store::{PersonRecord, PersonalTokenRecord};
use rand::RngCore;

/// A personal token's secret starts with this, which tells it from admin-made tokens.
pub const PERSONAL_TOKEN_PREFIX: &str = "depotp_";
/// The longest a personal token may live.
pub const MAX_TOKEN_DAYS: u32 = 365;
const MAX_TOKEN_NAME: usize = 64;

/// A personal token as created: the secret is shown once and never stored.
pub struct NewPersonalToken {
    pub record: PersonalTokenRecord,
    pub secret: String,
}

/// Why a sign-in was refused: said to the person in words they can pass to the help desk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInFailure {
    /// The person's groups give no role in depot.
    NoRole { person: PersonId },
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

impl Depot {
    /// Signs `person` in with the roles `groups` give now, recorded on the person (so their
    /// tokens follow). `Ok(None)` with an `auth.sign_in_failed` event when there is no role.
    pub fn sign_in(
        &self,
        person: &PersonId,
        groups: &[String],
        address: &str,
    ) -> Result<std::result::Result<PersonRecord, SignInFailure>> {
        let roles = self.identity().roles.roles(groups);
        // Groups of orgs that do not exist give nothing.
        let existing: std::collections::BTreeSet<OrgCode> = self
            .meta()
            .list_orgs()?
            .into_iter()
            .map(|o| o.code)
            .collect();
        let roles = Roles {
            admin: roles.admin,
            partner_of: roles
                .partner_of
                .into_iter()
                .filter(|o| existing.contains(o))
                .collect(),
        };
        let record = PersonRecord {
            id: person.to_string(),
            admin: roles.admin,
            orgs: roles.partner_of.iter().cloned().collect(),
            signed_in_at: now(),
            address: address.to_string(),
        };
        // Recorded with no role too: the person's tokens lose what the groups no longer give.
        self.meta().put_person(&record)?;
        let actor = Actor {
            name: person.to_string(),
            address: address.to_string(),
        };
        if roles.is_empty() {
            self.audit(
                &actor,
                None,
                "auth.sign_in_failed",
                person.as_str(),
                Some(format!("no role: groups {}", groups.join(";"))),
            )?;
            return Ok(Err(SignInFailure::NoRole {
                person: person.clone(),
            }));
        }
        self.audit(
            &actor,
            None,
            "auth.sign_in",
            person.as_str(),
            Some(roles.describe()),
        )?;
        Ok(Ok(record))
    }

    /// Records a refused sign-in: `person` when it is known, and the reason.
    pub fn sign_in_failed(&self, person: Option<&str>, address: &str, reason: &str) -> Result<()> {
        let actor = Actor {
            name: person.unwrap_or("anonymous").to_string(),
            address: address.to_string(),
        };
        self.audit(
            &actor,
            None,
            "auth.sign_in_failed",
            person.unwrap_or("-"),
            Some(reason.to_string()),
        )?;
        Ok(())
    }

    pub fn sign_out(&self, person: &str, address: &str) -> Result<()> {
        let actor = Actor {
            name: person.to_string(),
            address: address.to_string(),
        };
        self.audit(&actor, None, "auth.sign_out", person, None)?;
        Ok(())
    }

    /// The person as their latest sign-in left them.
    pub fn person(&self, id: &str) -> Result<Option<PersonRecord>> {
        Ok(self.meta().get_person(id)?)
    }

    /// A new personal token of `person`, living `days` (1 to 365) days.
    pub fn create_personal_token(
        &self,
        person: &str,
        name: &str,
        days: u32,
        address: &str,
    ) -> Result<NewPersonalToken> {
        let name = name.trim();
        if name.is_empty()
            || name.chars().count() > MAX_TOKEN_NAME
            || name.chars().any(char::is_control)
        {
            return Err(IdentityError::Invalid(format!(
                "a token's name: 1 to {MAX_TOKEN_NAME} characters, no control characters"
            )));
        }
        if !(1..=MAX_TOKEN_DAYS).contains(&days) {
            return Err(IdentityError::Invalid(format!(
                "a personal token lives 1 to {MAX_TOKEN_DAYS} days, not {days}"
            )));
        }
        let created_at = now();
        let secret = format!("{PERSONAL_TOKEN_PREFIX}{}", random_hex(20));
        let record = PersonalTokenRecord {
            id: format!("ptk_{}", random_hex(6)),
            person: person.to_string(),
            name: name.to_string(),
            secret_hash: hash_token(&secret),
            created_at,
            expires_at: created_at + i64::from(days) * 86_400,
            revoked_at: None,
        };
        self.meta().create_personal_token(&record)?;
        let actor = Actor {
            name: person.to_string(),
            address: address.to_string(),
        };
        self.audit(
            &actor,
            None,
            "token.create",
            &record.id,
            Some(format!("personal token {}", record.name)),
        )?;
        Ok(NewPersonalToken { record, secret })
    }

    pub fn list_personal_tokens(&self, person: &str) -> Result<Vec<PersonalTokenRecord>> {
        Ok(self.meta().list_personal_tokens(person)?)
    }

    /// Revokes one of `person`'s own live tokens.
    pub fn revoke_personal_token(&self, person: &str, id: &str, address: &str) -> Result<()> {
        if !self.meta().revoke_personal_token(person, id, now())? {
            return Err(IdentityError::NotFound(format!("live personal token {id}")));
        }
        let actor = Actor {
            name: person.to_string(),
            address: address.to_string(),
        };
        self.audit(
            &actor,
            None,
            "token.revoke",
            id,
            Some("personal token".into()),
        )?;
        Ok(())
    }

    /// The person a live, unexpired personal token acts for, as their latest sign-in left them.
    pub fn person_of_token(&self, secret: &str) -> Result<Option<PersonRecord>> {
        let Some(token) = self.meta().find_personal_token(&hash_token(secret))? else {
            return Ok(None);
        };
        if token.revoked_at.is_some() || token.expires_at <= now() {
            return Ok(None);
        }
        self.person(&token.person)
    }
}
