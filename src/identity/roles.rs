//! Roles from directory groups: `admin_groups` and `partner_group_pattern`.

use super::{IdentityError, Result};
use crate::domain::OrgCode;
use std::collections::BTreeSet;

/// The `{org}` placeholder of a partner group pattern.
const ORG_PLACEHOLDER: &str = "{org}";

/// A group name with one `{org}` in it, e.g. `depot-partners-{org}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerPattern {
    prefix: String,
    suffix: String,
}

impl PartnerPattern {
    pub fn parse(pattern: &str) -> Result<Self> {
        let bad = |rule: &str| {
            IdentityError::Config(format!(
                "partner_group_pattern {pattern:?}: {rule}, as in \"depot-partners-{{org}}\""
            ))
        };
        if pattern.matches(ORG_PLACEHOLDER).count() != 1 {
            return Err(bad("needs {org} exactly once"));
        }
        let (prefix, suffix) = pattern
            .split_once(ORG_PLACEHOLDER)
            .ok_or_else(|| bad("needs {org}"))?;
        if prefix.is_empty() && suffix.is_empty() {
            return Err(bad(
                "needs text around {org}, or every group would be an org",
            ));
        }
        Ok(Self {
            prefix: prefix.to_string(),
            suffix: suffix.to_string(),
        })
    }

    /// The org a group makes its members partners of, if it is one of the pattern's.
    pub fn org_of(&self, group: &str) -> Option<OrgCode> {
        let code = group
            .strip_prefix(&self.prefix)?
            .strip_suffix(&self.suffix)?;
        OrgCode::parse(code).ok()
    }
}

/// How groups become roles (`[roles]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRules {
    pub admin_groups: BTreeSet<String>,
    pub partner_pattern: Option<PartnerPattern>,
    /// The portal offers the token field too; `false` leaves only single sign-on.
    pub token_login: bool,
}

impl Default for RoleRules {
    fn default() -> Self {
        Self {
            admin_groups: BTreeSet::new(),
            partner_pattern: None,
            token_login: true,
        }
    }
}

/// What a person's groups give them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roles {
    pub admin: bool,
    pub partner_of: BTreeSet<OrgCode>,
}

impl Roles {
    pub fn is_empty(&self) -> bool {
        !self.admin && self.partner_of.is_empty()
    }

    /// For people and the audit log: `admin`, `partner of physics, chemistry`, or `no role`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.admin {
            parts.push("admin".to_string());
        }
        if !self.partner_of.is_empty() {
            let orgs: Vec<&str> = self.partner_of.iter().map(OrgCode::as_str).collect();
            parts.push(format!("partner of {}", orgs.join(", ")));
        }
        if parts.is_empty() {
            "no role".into()
        } else {
            parts.join("; ")
        }
    }
}

impl RoleRules {
    /// The roles `groups` give. Group names compare exactly, as directories spell them.
    pub fn roles<S: AsRef<str>>(&self, groups: &[S]) -> Roles {
        let mut roles = Roles::default();
        for group in groups.iter().map(AsRef::as_ref) {
            if self.admin_groups.contains(group) {
                roles.admin = true;
            }
            if let Some(org) = self.partner_pattern.as_ref().and_then(|p| p.org_of(group)) {
                roles.partner_of.insert(org);
            }
        }
        roles
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> RoleRules {
        RoleRules {
            admin_groups: ["depot-admins".to_string()].into(),
            partner_pattern: Some(PartnerPattern::parse("depot-partners-{org}").unwrap()),
            token_login: true,
        }
    }

    #[test]
    fn groups_give_roles() {
        let r = rules();
        let roles = r.roles(&[
            "staff",
            "depot-partners-physics",
            "depot-partners-chemistry",
        ]);
        assert!(!roles.admin);
        assert_eq!(
            roles
                .partner_of
                .iter()
                .map(OrgCode::as_str)
                .collect::<Vec<_>>(),
            ["chemistry", "physics"]
        );
        assert_eq!(roles.describe(), "partner of chemistry, physics");
        let admin = r.roles(&["depot-admins"]);
        assert!(admin.admin && admin.partner_of.is_empty());
        // Near misses give nothing: case, a prefix alone, a code that is not one.
        let none = r.roles(&[
            "Depot-Admins",
            "depot-admins-x",
            "depot-partners-",
            "depot-partners-Bad Code",
            "xdepot-partners-physics",
        ]);
        assert!(none.is_empty(), "{none:?}");
        assert_eq!(none.describe(), "no role");
        assert!(RoleRules::default().roles(&["depot-admins"]).is_empty());
    }

    #[test]
    fn patterns() {
        let p = PartnerPattern::parse("cn={org},ou=depot").unwrap();
        assert_eq!(p.org_of("cn=physics,ou=depot").unwrap().as_str(), "physics");
        assert_eq!(p.org_of("cn=physics,ou=other"), None);
        for bad in ["depot-partners", "{org}", "{org}-{org}"] {
            assert!(PartnerPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
