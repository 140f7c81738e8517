//! Reads people and groups from an LDAP directory with `ldap3`: a simple bind, then paged
//! searches. Blocking: call it off the async runtime. Reads only.

use crate::config::LdapSettings;
use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{ldap_escape, LdapConn, LdapConnSettings, Scope, SearchEntry};
use std::collections::HashMap;
use std::time::Duration;

/// Entries per page: below slapd's default size limit of 500.
const PAGE_SIZE: i32 = 400;

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("cannot reach the directory at {url}: {message}")]
    Connect { url: String, message: String },
    #[error("the directory refused the bind as {bind_dn}: {message}")]
    Bind { bind_dn: String, message: String },
    #[error("searching {base} failed: {message}")]
    Search { base: String, message: String },
    #[error("group {0} is not in the directory (vanished or misspelled)")]
    GroupMissing(String),
    #[error("cannot read the bind password: {0}")]
    Password(String),
    #[error("no [directory.ldap] in depot.toml")]
    NotConfigured,
}

pub type Result<T> = std::result::Result<T, DirectoryError>;

/// A person below `user_base`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub dn: String,
    pub uid: String,
    pub name: Option<String>,
    pub mail: Option<String>,
}

/// A group's members as the directory names them: DNs (`member`, `uniqueMember`) and uids
/// (`memberUid`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    pub dn: String,
    pub member_dns: Vec<String>,
    pub member_uids: Vec<String>,
}

/// DNs compare case-insensitively and without spaces around the separators.
pub fn normalize_dn(dn: &str) -> String {
    dn.split(',')
        .map(|rdn| {
            rdn.split_once('=')
                .map(|(a, v)| format!("{}={}", a.trim(), v.trim()))
                .unwrap_or_else(|| rdn.trim().to_string())
        })
        .collect::<Vec<_>>()
        .join(",")
        .to_lowercase()
}

/// A bound connection to the directory.
pub struct LdapDirectory {
    conn: LdapConn,
    settings: LdapSettings,
}

impl LdapDirectory {
    /// Connects and binds with the settings' account; the password comes from
    /// `DEPOT_LDAP_PASSWORD`, else `bind_password_file`.
    pub fn connect(settings: &LdapSettings) -> Result<Self> {
        let password = match std::env::var("DEPOT_LDAP_PASSWORD") {
            Ok(p) => p,
            Err(_) => match &settings.bind_password_file {
                Some(path) => std::fs::read_to_string(path)
                    .map_err(|e| DirectoryError::Password(format!("{}: {e}", path.display())))?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
                None => {
                    return Err(DirectoryError::Password(
                        "set bind_password_file or DEPOT_LDAP_PASSWORD".into(),
                    ))
                }
            },
        };
        let conn_settings = LdapConnSettings::new().set_conn_timeout(Duration::from_secs(10));
        let mut conn = LdapConn::with_settings(conn_settings, &settings.url).map_err(|e| {
            DirectoryError::Connect {
                url: settings.url.clone(),
                message: e.to_string(),
            }
        })?;
        conn.simple_bind(&settings.bind_dn, &password)
            .and_then(|r| r.success())
            .map_err(|e| DirectoryError::Bind {
                bind_dn: settings.bind_dn.clone(),
                message: e.to_string(),
            })?;
        Ok(LdapDirectory {
            conn,
            settings: settings.clone(),
        })
    }

    fn paged(
        &mut self,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Vec<SearchEntry>> {
        let fail = |e: ldap3::LdapError| DirectoryError::Search {
            base: base.to_string(),
            message: e.to_string(),
        };
        let adapters: Vec<Box<dyn Adapter<_, _>>> = vec![
            Box::new(EntriesOnly::new()),
            Box::new(PagedResults::new(PAGE_SIZE)),
        ];
        let mut search = self
            .conn
            .streaming_search_with(adapters, base, scope, filter, attrs.to_vec())
            .map_err(fail)?;
        let mut entries = Vec::new();
        while let Some(entry) = search.next().map_err(fail)? {
            entries.push(SearchEntry::construct(entry));
        }
        search.result().success().map_err(fail)?;
        Ok(entries)
    }

    /// Everyone below `user_base` with a uid, by normalized DN.
    pub fn people(&mut self) -> Result<HashMap<String, Person>> {
        let base = self.settings.user_base.clone();
        let entries = self.paged(
            &base,
            Scope::Subtree,
            "(uid=*)",
            &["uid", "mail", "displayName", "cn"],
        )?;
        let first = |e: &SearchEntry, a: &str| e.attrs.get(a).and_then(|v| v.first()).cloned();
        Ok(entries
            .iter()
            .filter_map(|e| {
                let uid = first(e, "uid")?.to_lowercase();
                Some((
                    normalize_dn(&e.dn),
                    Person {
                        dn: e.dn.clone(),
                        uid,
                        name: first(e, "displayName").or_else(|| first(e, "cn")),
                        mail: first(e, "mail"),
                    },
                ))
            })
            .collect())
    }

    /// The group named by a DN, or by its cn below `group_base`.
    pub fn group(&mut self, name: &str) -> Result<Group> {
        const ATTRS: &[&str] = &["member", "uniqueMember", "memberUid"];
        let entries = if name.contains('=') {
            match self.paged(name, Scope::Base, "(objectClass=*)", ATTRS) {
                Ok(entries) => entries,
                // noSuchObject
                Err(DirectoryError::Search { message, .. }) if message.contains("rc=32") => {
                    Vec::new()
                }
                Err(e) => return Err(e),
            }
        } else {
            let base = self.settings.group_base.clone();
            let filter = format!(
                "(&(cn={})(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup)))",
                ldap_escape(name)
            );
            self.paged(&base, Scope::Subtree, &filter, ATTRS)?
        };
        let Some(entry) = entries.into_iter().next() else {
            return Err(DirectoryError::GroupMissing(name.to_string()));
        };
        let values = |a: &str| entry.attrs.get(a).cloned().unwrap_or_default();
        let mut member_dns = values("member");
        member_dns.extend(values("uniqueMember"));
        Ok(Group {
            dn: entry.dn.clone(),
            member_dns,
            member_uids: values("memberUid"),
        })
    }
}
