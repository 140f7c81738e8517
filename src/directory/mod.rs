//! The campus directory (CONTRACT 10): who is eligible for the service, read from LDAP, and what
//! a sync changes.
//!
//! [`ldap`] reads people and groups and nothing else: it never writes to the directory and
//! never touches the store. [`plan`] decides, from what the directory says now and what the
//! last sync stored, which devices to deactivate or flag; it is pure, so the rules are tested
//! without a directory. The service (`Depot::directory_sync`) applies a plan in one transaction.

pub mod ldap;
pub mod plan;

pub use ldap::{DirectoryError, Group, LdapDirectory, Person};
pub use plan::{plan_org, OrgPlan, PlanInput};

/// How a device's reported user is compared with a directory uid: `EXAMPLE\alice`,
/// `alice@example.edu` and `Alice` are all `alice`.
pub fn normalize_user(user: &str) -> String {
    let user = user.trim();
    let user = user.rsplit('\\').next().unwrap_or(user);
    let user = user.split('@').next().unwrap_or(user);
    user.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::normalize_user;

    #[test]
    fn user_spellings_meet() {
        assert_eq!(normalize_user("EXAMPLE\\Alice"), "alice");
        assert_eq!(normalize_user("alice@example.edu"), "alice");
        assert_eq!(normalize_user(" bob "), "bob");
    }
}
