//! The records of people who sign in through single sign-on, and of their personal API tokens.

use crate::domain::{OrgCode, Sha256};
use serde::Serialize;

/// A person as their last sign-in showed them: the roles their directory groups gave then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PersonRecord {
    /// The campus id the identity provider names them by.
    pub id: String,
    pub admin: bool,
    /// The orgs they are a partner of, sorted, without repeats.
    pub orgs: Vec<OrgCode>,
    pub signed_in_at: i64,
    /// The address of that sign-in.
    pub address: String,
}

/// A personal API token. Only the SHA-256 of its secret is stored; it acts with its person's
/// current roles, never with roles of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PersonalTokenRecord {
    pub id: String,
    pub person: String,
    pub name: String,
    #[serde(skip)]
    pub secret_hash: Sha256,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

/// `orgs` as one column: codes separated by spaces (an org code has none).
pub(crate) fn orgs_to_text(orgs: &[OrgCode]) -> String {
    orgs.iter()
        .map(OrgCode::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) fn orgs_from_text(text: &str) -> std::result::Result<Vec<OrgCode>, String> {
    text.split_whitespace()
        .map(|code| OrgCode::parse(code).map_err(|e| e.to_string()))
        .collect()
}
