//! API tokens: created once, shown once, stored only as a SHA-256 hash.

use super::{now, Actor, Depot, Result, ServiceError};
use crate::domain::{OrgCode, Sha256};
use crate::store::{Role, TokenRecord};
use rand::RngCore;

/// A token as created: the record, and the secret that is shown once and never stored.
pub struct NewToken {
    pub record: TokenRecord,
    pub secret: String,
}

/// The stored form of a presented token.
pub fn hash_token(secret: &str) -> Sha256 {
    Sha256::digest(secret.as_bytes())
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

impl Depot {
    /// Every API token's record (hashes only, never a secret).
    pub fn tokens(&self) -> Result<Vec<TokenRecord>> {
        Ok(self.meta.list_tokens()?)
    }

    pub fn create_token(
        &self,
        actor: &Actor,
        role: Role,
        org: Option<OrgCode>,
        name: Option<String>,
    ) -> Result<NewToken> {
        match (role, &org) {
            (Role::Admin, Some(_)) => {
                return Err(ServiceError::Invalid(
                    "an admin token has no org; leave --org out".into(),
                ))
            }
            (Role::Partner, None) => {
                return Err(ServiceError::Invalid(
                    "a partner token needs --org CODE".into(),
                ))
            }
            (Role::Partner, Some(code)) => {
                self.org(code)?;
            }
            (Role::Admin, None) => {}
        }
        let id = format!("tok_{}", random_hex(6));
        let name = match name.map(|n| n.trim().to_string()) {
            Some(n) if !n.is_empty() => {
                if n.chars().count() > 64 || n.chars().any(char::is_control) {
                    return Err(ServiceError::Invalid(
                        "token name: at most 64 characters, no control characters".into(),
                    ));
                }
                crate::domain::check_shown_text("token name", &n)?;
                n
            }
            _ => match &org {
                Some(code) => format!("{}-{code}-{}", role.as_str(), &id[4..8]),
                None => format!("{}-{}", role.as_str(), &id[4..8]),
            },
        };
        // 160 random bits; the prefix makes a leaked token recognisable to secret scanners.
        let secret = format!("depot_{}", random_hex(20));
        let record = TokenRecord {
            id,
            name,
            role,
            org,
            secret_hash: hash_token(&secret),
            created_at: now(),
            revoked_at: None,
        };
        self.meta.create_token(&record)?;
        self.audit(
            actor,
            record.org.as_ref(),
            "token.create",
            &record.id,
            Some(record.name.clone()),
        )?;
        Ok(NewToken { record, secret })
    }

    pub fn revoke_token(&self, actor: &Actor, id: &str) -> Result<()> {
        let record = self
            .meta
            .list_tokens()?
            .into_iter()
            .find(|t| t.id == id)
            .ok_or_else(|| ServiceError::NotFound(format!("token {id}")))?;
        if !self.meta.revoke_token(id, now())? {
            return Err(ServiceError::Conflict(format!(
                "token {id} is already revoked"
            )));
        }
        self.audit(
            actor,
            record.org.as_ref(),
            "token.revoke",
            id,
            Some(record.name),
        )
    }

    /// The live token a secret names, if any.
    pub fn authenticate(&self, secret: &str) -> Result<Option<TokenRecord>> {
        Ok(self
            .meta
            .find_token(&hash_token(secret))?
            .filter(|t| t.revoked_at.is_none()))
    }
}
