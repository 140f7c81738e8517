//! The `[sso]` and `[roles]` tables of `depot.toml`, and what they resolve to.

use super::{IdentityError, PartnerPattern, Result, RoleRules};
use serde::Deserialize;

/// `[sso]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsoFile {
    pub header: Option<HeaderSsoFile>,
}

/// `[sso.header]`: a Shibboleth SP (or mod_auth_mellon) in front names the person in headers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderSsoFile {
    pub user: String,
    pub groups: Option<String>,
    /// The name on the sign-in button ("Sign in with {provider}").
    pub provider: Option<String>,
}

/// `[roles]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolesFile {
    #[serde(default)]
    pub admin_groups: Vec<String>,
    pub partner_group_pattern: Option<String>,
    pub token_login: Option<bool>,
}

/// Header SSO: the (lower-case) names of the headers the proxy sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderSso {
    pub user: String,
    pub groups: Option<String>,
    pub provider: String,
}

/// Everything identity needs to know from the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityConfig {
    pub roles: RoleRules,
    pub header: Option<HeaderSso>,
}

/// A header name as HTTP allows it (RFC 9110 token characters), lower-cased.
fn header_name(setting: &str, name: &str) -> Result<String> {
    let name = name.trim();
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(IdentityError::Config(format!(
            "sso.header.{setting} {name:?} is not a header name"
        )));
    }
    Ok(name.to_ascii_lowercase())
}

impl IdentityConfig {
    pub fn resolve(sso: Option<&SsoFile>, roles: Option<&RolesFile>) -> Result<Self> {
        let roles = roles.cloned().unwrap_or_default();
        let rules = RoleRules {
            admin_groups: roles
                .admin_groups
                .iter()
                .map(|g| g.trim().to_string())
                .filter(|g| !g.is_empty())
                .collect(),
            partner_pattern: roles
                .partner_group_pattern
                .as_deref()
                .map(PartnerPattern::parse)
                .transpose()?,
            token_login: roles.token_login.unwrap_or(true),
        };
        let header = match sso.and_then(|s| s.header.as_ref()) {
            None => None,
            Some(h) => Some(HeaderSso {
                user: header_name("user", &h.user)?,
                groups: h
                    .groups
                    .as_deref()
                    .map(|g| header_name("groups", g))
                    .transpose()?,
                provider: h
                    .provider
                    .clone()
                    .filter(|p| !p.trim().is_empty())
                    .unwrap_or_else(|| "university sign-in".into()),
            }),
        };
        if !rules.token_login && header.is_none() {
            return Err(IdentityError::Config(
                "roles.token_login = false needs [sso.header]: nobody could sign in".into(),
            ));
        }
        Ok(IdentityConfig {
            roles: rules,
            header,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        sso: Option<SsoFile>,
        roles: Option<RolesFile>,
    }

    fn resolve(text: &str) -> Result<IdentityConfig> {
        let file: File = toml::from_str(text).unwrap();
        IdentityConfig::resolve(file.sso.as_ref(), file.roles.as_ref())
    }

    #[test]
    fn the_contract_example_resolves() {
        let c = resolve(
            "[sso.header]\nuser = \"X-Remote-User\"\ngroups = \"X-Remote-Groups\"\n\
             [roles]\nadmin_groups = [\"depot-admins\"]\n\
             partner_group_pattern = \"depot-partners-{org}\"\ntoken_login = false\n",
        )
        .unwrap();
        let header = c.header.unwrap();
        assert_eq!(header.user, "x-remote-user");
        assert_eq!(header.groups.as_deref(), Some("x-remote-groups"));
        assert!(!c.roles.token_login);
        assert!(c.roles.roles(&["depot-partners-physics"]).partner_of.len() == 1);
        assert_eq!(resolve("").unwrap(), IdentityConfig::default());
    }

    #[test]
    fn bad_settings_are_refused() {
        for bad in [
            "[sso.header]\nuser = \"X Remote\"\n",
            "[roles]\npartner_group_pattern = \"partners\"\n",
            "[roles]\ntoken_login = false\n",
        ] {
            assert!(resolve(bad).is_err(), "{bad}");
        }
    }
}
