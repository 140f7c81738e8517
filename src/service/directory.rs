//! Directory sync (CONTRACT 10): reads every org's group first, then applies each org's plan in
//! one transaction, so that a directory that fails mid-sync changes nothing.

use super::{now, Actor, Depot, Result, ServiceError};
use crate::directory::{ldap::normalize_dn, plan_org, LdapDirectory, OrgPlan, PlanInput};
use crate::domain::OrgCode;
use crate::store::DirectoryUser;
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// What a sync did in one org.
#[derive(Debug, Clone, Serialize)]
pub struct OrgSyncReport {
    pub org: String,
    pub group: String,
    pub users: usize,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub deactivated: Vec<String>,
    pub flagged: Vec<String>,
    /// Set when the group shrank by more than half: nothing was applied.
    pub held: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DirectorySyncReport {
    pub orgs: Vec<OrgSyncReport>,
}

impl Depot {
    /// Syncs every org with a `users_group` (or only `only`). `confirm_shrink` applies a group
    /// that shrank by more than half, which is otherwise held.
    pub fn directory_sync(
        &self,
        actor: &Actor,
        only: Option<&OrgCode>,
        confirm_shrink: bool,
    ) -> Result<DirectorySyncReport> {
        let settings = self
            .ldap
            .as_ref()
            .ok_or(crate::directory::DirectoryError::NotConfigured)?;
        let orgs: Vec<_> = match only {
            Some(code) => vec![self.org(code)?],
            None => self.meta.list_orgs()?,
        };
        let orgs: Vec<_> = orgs
            .into_iter()
            .filter(|o| o.config.users_group.is_some())
            .collect();
        if let Some(code) = only {
            if orgs.is_empty() {
                return Err(ServiceError::Invalid(format!(
                    "org {code} has no users_group to sync"
                )));
            }
        }
        // Everything is read before anything is written.
        let mut directory = LdapDirectory::connect(settings)?;
        let people = directory.people()?;
        let by_uid: HashMap<&str, &crate::directory::Person> =
            people.values().map(|p| (p.uid.as_str(), p)).collect();
        let mut fetched = Vec::new();
        for org in &orgs {
            let name = org.config.users_group.clone().unwrap_or_default();
            let group = directory.group(&name)?;
            let mut seen = HashSet::new();
            let mut members = Vec::new();
            let dns = group
                .member_dns
                .iter()
                .filter_map(|dn| people.get(&normalize_dn(dn)));
            let uids = group
                .member_uids
                .iter()
                .filter_map(|u| by_uid.get(u.to_lowercase().as_str()).copied());
            for p in dns.chain(uids) {
                if seen.insert(p.uid.clone()) {
                    members.push(DirectoryUser {
                        uid: p.uid.clone(),
                        name: p.name.clone(),
                        mail: p.mail.clone(),
                    });
                }
            }
            fetched.push((org, name, members));
        }
        drop(directory);
        let mut reports = Vec::new();
        for (org, group, members) in fetched {
            let previous = self.meta.directory_users(&org.code)?;
            let devices = self.meta.list_devices(Some(&org.code))?;
            let users = members.len();
            let plan = plan_org(PlanInput {
                org: &org.code,
                group: &group,
                on_ineligible: org.config.on_ineligible,
                members,
                previous: &previous,
                devices: &devices,
                confirm_shrink,
                actor: &actor.name,
                now: now(),
            });
            let mut report = OrgSyncReport {
                org: org.code.to_string(),
                group: group.clone(),
                users,
                added: vec![],
                removed: vec![],
                deactivated: vec![],
                flagged: vec![],
                held: None,
            };
            match plan {
                OrgPlan::Held { previous, now } => {
                    let why = format!(
                        "group {group} shrank from {previous} to {now} people since the last sync; \
                         nothing was changed: run `depot directory sync --org {} --confirm-shrink` \
                         if this is right",
                        org.code
                    );
                    self.audit(
                        actor,
                        Some(&org.code),
                        "directory.sync_held",
                        &group,
                        Some(why.clone()),
                    )?;
                    report.held = Some(why);
                }
                OrgPlan::Apply {
                    change,
                    added,
                    removed,
                } => {
                    let reasons: HashMap<String, String> =
                        change.deactivate.iter().cloned().collect();
                    let flag_reasons: HashMap<String, String> = change
                        .flags
                        .iter()
                        .map(|f| (f.device_id.clone(), f.reason.clone()))
                        .collect();
                    let (outcome, counter) = self.meta.apply_directory_change(&change)?;
                    self.forget_devices(counter, &outcome.deactivated);
                    for uid in &added {
                        self.audit(actor, Some(&org.code), "directory.user_added", uid, None)?;
                    }
                    for uid in &removed {
                        self.audit(actor, Some(&org.code), "directory.user_removed", uid, None)?;
                    }
                    for id in &outcome.deactivated {
                        self.audit(
                            actor,
                            Some(&org.code),
                            "device.deactivate",
                            id,
                            reasons.get(id).cloned(),
                        )?;
                    }
                    for id in &outcome.flagged {
                        self.audit(
                            actor,
                            Some(&org.code),
                            "device.flag",
                            id,
                            flag_reasons.get(id).cloned(),
                        )?;
                    }
                    report.added = added;
                    report.removed = removed;
                    report.deactivated = outcome.deactivated;
                    report.flagged = outcome.flagged;
                }
            }
            reports.push(report);
        }
        Ok(DirectorySyncReport { orgs: reports })
    }

    /// `GET /v1/orgs/{org}/users`: the org's eligible users with their devices' ids.
    pub fn directory_users(&self, code: &OrgCode) -> Result<Vec<UserView>> {
        self.org(code)?;
        let devices = self.meta.list_devices(Some(code))?;
        let mut by_user: HashMap<String, Vec<String>> = HashMap::new();
        for d in &devices {
            by_user
                .entry(crate::directory::normalize_user(&d.user))
                .or_default()
                .push(d.id.clone());
        }
        Ok(self
            .meta
            .directory_users(code)?
            .into_iter()
            .map(|u| UserView {
                devices: by_user.remove(&u.uid).unwrap_or_default(),
                id: u.uid,
                name: u.name,
                mail: u.mail,
            })
            .collect())
    }
}

/// An eligible user as `GET /v1/orgs/{org}/users` shows them.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: String,
    pub name: Option<String>,
    pub mail: Option<String>,
    /// Ids of the devices enrolled under this user.
    pub devices: Vec<String>,
}
