//! Identity: people who sign in through the university's single sign-on, the roles their
//! directory groups give them, and their personal API tokens (CONTRACT 9).
//!
//! Roles are never stored on their own: each sign-in evaluates the person's groups against
//! [`RoleRules`] and records the outcome on the person, and a personal token always acts with
//! the roles of its person's latest sign-in, so a person who lost a group loses it on their
//! tokens too. Who the person is comes from a layer in front (the server checks the SSO headers
//! came from a trusted proxy); this module trusts what it is handed and must never decide from
//! anything a client chose itself.

mod config;
mod roles;
mod service;

pub use config::{HeaderSso, IdentityConfig, RolesFile, SsoFile};
pub use roles::{PartnerPattern, RoleRules, Roles};
pub use service::{NewPersonalToken, SignInFailure, MAX_TOKEN_DAYS, PERSONAL_TOKEN_PREFIX};

/// What an identity operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Bad input from the person (a token name, an expiry).
    #[error("{0}")]
    Invalid(String),
    /// A configuration value that cannot work.
    #[error("{0}")]
    Config(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error(transparent)]
    Service(#[from] crate::service::ServiceError),
}

impl From<crate::store::StoreError> for IdentityError {
    fn from(e: crate::store::StoreError) -> Self {
        IdentityError::Service(e.into())
    }
}

pub type Result<T> = std::result::Result<T, IdentityError>;

/// A person's id (the campus id): what the identity provider names them by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PersonId(String);

/// Longest person id accepted.
pub const MAX_PERSON_ID_LEN: usize = 128;

impl PersonId {
    /// Trimmed; 1 to 128 characters; no control characters, spaces or `;`.
    pub fn parse(text: &str) -> Result<Self> {
        let id = text.trim();
        if id.is_empty() {
            return Err(IdentityError::Invalid("the person's id is empty".into()));
        }
        if id.chars().count() > MAX_PERSON_ID_LEN {
            return Err(IdentityError::Invalid(format!(
                "the person's id is longer than {MAX_PERSON_ID_LEN} characters"
            )));
        }
        if id
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == ';')
        {
            return Err(IdentityError::Invalid(
                "the person's id holds spaces, control characters or ';'".into(),
            ));
        }
        Ok(PersonId(id.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for PersonId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The groups of a `;`-separated list (the SSO header's form), trimmed, empty ones left out.
pub fn split_groups(list: &str) -> Vec<String> {
    list.split(';')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn person_ids() {
        assert_eq!(PersonId::parse(" jdoe ").unwrap().as_str(), "jdoe");
        assert_eq!(
            PersonId::parse("jdoe@example.edu").unwrap().to_string(),
            "jdoe@example.edu"
        );
        for bad in ["", "  ", "j doe", "a;b", "a\u{0}b", &"x".repeat(129)] {
            assert!(PersonId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn groups_split_on_semicolons() {
        assert_eq!(
            split_groups(" depot-admins ;; staff;"),
            vec!["depot-admins".to_string(), "staff".to_string()]
        );
        assert!(split_groups("").is_empty());
    }
}
