//! What one sync changes in one org: pure, no I/O, no clock.
//!
//! - A device whose user was in the stored group and is not in the new one: deactivated, or
//!   flagged (`ineligible`) when the org says `on_ineligible = "flag"`.
//! - A device whose user is in neither (enrolled by an outsider, or the first sync cannot tell):
//!   flagged (`outsider`). A flag of a kind is raised once per device.
//! - A group that shrinks by more than half since the last sync is held, and changes nothing,
//!   until an admin confirms it: an emptied group is more often a mistake than a mass departure.

use super::normalize_user;
use crate::domain::OrgCode;
use crate::org::OnIneligible;
use crate::store::{Device, DirectoryChange, DirectoryUser, FlagKind, NewFlag};
use std::collections::HashSet;

pub struct PlanInput<'a> {
    pub org: &'a OrgCode,
    pub group: &'a str,
    pub on_ineligible: OnIneligible,
    /// The group's people as the directory has them now.
    pub members: Vec<DirectoryUser>,
    /// As the last sync stored them.
    pub previous: &'a [DirectoryUser],
    pub devices: &'a [Device],
    /// An admin confirmed a shrink of more than half.
    pub confirm_shrink: bool,
    pub actor: &'a str,
    pub now: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrgPlan {
    /// Nothing is applied until an admin confirms.
    Held { previous: usize, now: usize },
    Apply {
        change: DirectoryChange,
        added: Vec<String>,
        removed: Vec<String>,
    },
}

pub fn plan_org(input: PlanInput<'_>) -> OrgPlan {
    let now_uids: HashSet<&str> = input.members.iter().map(|u| u.uid.as_str()).collect();
    let before: HashSet<&str> = input.previous.iter().map(|u| u.uid.as_str()).collect();
    if !input.confirm_shrink && !before.is_empty() && now_uids.len() * 2 < before.len() {
        return OrgPlan::Held {
            previous: before.len(),
            now: now_uids.len(),
        };
    }
    let mut added: Vec<String> = now_uids
        .difference(&before)
        .map(|s| s.to_string())
        .collect();
    let mut removed: Vec<String> = before
        .difference(&now_uids)
        .map(|s| s.to_string())
        .collect();
    added.sort();
    removed.sort();
    let mut deactivate = Vec::new();
    let mut flags = Vec::new();
    for d in input.devices.iter().filter(|d| d.deactivated_at.is_none()) {
        let user = normalize_user(&d.user);
        if now_uids.contains(user.as_str()) {
            continue;
        }
        if before.contains(user.as_str()) {
            let reason = format!("user {user} left group {}", input.group);
            match input.on_ineligible {
                OnIneligible::Deactivate => deactivate.push((d.id.clone(), reason)),
                OnIneligible::Flag => flags.push(NewFlag {
                    device_id: d.id.clone(),
                    kind: FlagKind::Ineligible,
                    reason,
                    raised_by: input.actor.to_string(),
                }),
            }
        } else {
            flags.push(NewFlag {
                device_id: d.id.clone(),
                kind: FlagKind::Outsider,
                reason: format!(
                    "enrolled by {:?}, who is not in group {}",
                    d.user, input.group
                ),
                raised_by: input.actor.to_string(),
            });
        }
    }
    let mut users = input.members;
    users.sort_by(|a, b| a.uid.cmp(&b.uid));
    users.dedup_by(|a, b| a.uid == b.uid);
    OrgPlan::Apply {
        change: DirectoryChange {
            org: input.org.clone(),
            users,
            deactivate,
            flags,
            at: input.now,
        },
        added,
        removed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Platform, Sha256};

    fn user(uid: &str) -> DirectoryUser {
        DirectoryUser {
            uid: uid.into(),
            name: None,
            mail: None,
        }
    }

    fn device(id: &str, user: &str) -> Device {
        Device {
            id: id.into(),
            org: OrgCode::parse("physics").unwrap(),
            hostname: format!("{id}-host"),
            platform: Platform::parse("linux-x86_64").unwrap(),
            os_version: "x".into(),
            user: user.into(),
            token_hash: Sha256::digest(id.as_bytes()),
            enrolled_at: 1,
            deactivated_at: None,
            last_seen_at: None,
            last_address: None,
            current_version: None,
        }
    }

    fn run(on: OnIneligible, members: &[&str], previous: &[&str], confirm: bool) -> OrgPlan {
        let org = OrgCode::parse("physics").unwrap();
        let previous: Vec<_> = previous.iter().map(|u| user(u)).collect();
        let devices = vec![
            device("d1", "EXAMPLE\\alice"),
            device("d2", "bob@example.edu"),
            device("d3", "mallory"),
        ];
        plan_org(PlanInput {
            org: &org,
            group: "physics-users",
            on_ineligible: on,
            members: members.iter().map(|u| user(u)).collect(),
            previous: &previous,
            devices: &devices,
            confirm_shrink: confirm,
            actor: "directory",
            now: 10,
        })
    }

    #[test]
    fn leaver_deactivated_outsider_flagged() {
        let OrgPlan::Apply {
            change,
            added,
            removed,
        } = run(
            OnIneligible::Deactivate,
            &["alice", "carol"],
            &["alice", "bob"],
            false,
        )
        else {
            panic!("held")
        };
        assert_eq!(added, vec!["carol"]);
        assert_eq!(removed, vec!["bob"]);
        assert_eq!(change.deactivate.len(), 1);
        assert_eq!(change.deactivate[0].0, "d2");
        assert_eq!(change.flags.len(), 1);
        assert_eq!(change.flags[0].device_id, "d3");
        assert_eq!(change.flags[0].kind, FlagKind::Outsider);
    }

    #[test]
    fn flag_mode_flags_the_leaver() {
        let OrgPlan::Apply { change, .. } = run(
            OnIneligible::Flag,
            &["alice", "carol"],
            &["alice", "bob"],
            false,
        ) else {
            panic!("held")
        };
        assert!(change.deactivate.is_empty());
        let kinds: Vec<_> = change
            .flags
            .iter()
            .map(|f| (f.device_id.as_str(), f.kind))
            .collect();
        assert_eq!(
            kinds,
            vec![("d2", FlagKind::Ineligible), ("d3", FlagKind::Outsider)]
        );
    }

    #[test]
    fn shrink_by_more_than_half_is_held_until_confirmed() {
        assert_eq!(
            run(
                OnIneligible::Deactivate,
                &[],
                &["alice", "bob", "carol"],
                false
            ),
            OrgPlan::Held {
                previous: 3,
                now: 0
            }
        );
        // Exactly half is not "more than half".
        assert!(matches!(
            run(
                OnIneligible::Deactivate,
                &["alice"],
                &["alice", "bob"],
                false
            ),
            OrgPlan::Apply { .. }
        ));
        let OrgPlan::Apply { change, .. } = run(
            OnIneligible::Deactivate,
            &[],
            &["alice", "bob", "carol"],
            true,
        ) else {
            panic!("held after confirmation")
        };
        assert_eq!(change.deactivate.len(), 2);
    }
}
