//! Directory sync against a real slapd (CONTRACT 10): a user removed from the group loses their
//! device at once, an outsider's device is flagged, a group emptied by mistake is held, and a
//! directory that is down or refuses the bind changes nothing.

mod directory_support;

use depot::config::LdapSettings;
use depot::domain::OrgCode;
use depot::org::{OnIneligible, OrgConfig, OrgConfigInput};
use depot::service::fleet::{DeviceFilter, EnrollRequest};
use depot::service::{Actor, Depot};
use directory_support::*;

struct Fixture {
    depot: Depot,
    _dir: tempfile::TempDir,
}

fn ldap(url: &str, dir: &std::path::Path, password: &str) -> LdapSettings {
    LdapSettings {
        url: url.to_string(),
        bind_dn: SERVICE_DN.into(),
        bind_password_file: Some(password_file(dir, password)),
        user_base: format!("ou=people,{SUFFIX}"),
        group_base: format!("ou=groups,{SUFFIX}"),
        sync_interval_seconds: 300,
    }
}

fn fixture(url: &str, password: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = depot::demo::settings_for(dir.path(), "http://127.0.0.1:9");
    depot::setup::init(&settings, false).unwrap();
    settings.ldap = Some(ldap(url, dir.path(), password));
    let depot = Depot::open(&settings).unwrap();
    Fixture { depot, _dir: dir }
}

fn add_org(depot: &Depot, code: &str, group: &str, on: OnIneligible) -> OrgCode {
    let code = OrgCode::parse(code).unwrap();
    let config = OrgConfig::try_from(OrgConfigInput {
        name: code.to_string(),
        users_group: Some(group.into()),
        on_ineligible: Some(on),
        ..Default::default()
    })
    .unwrap();
    depot.add_org(&Actor::cli(), &code, config).unwrap();
    code
}

/// Enrolls a device of `user`; returns its id and token.
fn enroll(depot: &Depot, org: &OrgCode, user: &str) -> (String, String) {
    let key = depot.org(org).unwrap().registration_key.to_string();
    let e = depot
        .enroll(
            &EnrollRequest {
                registration_key: key,
                hostname: format!("{user}-laptop"),
                platform: "linux-x86_64".into(),
                os_version: "12".into(),
                user: user.into(),
            },
            "127.0.0.1",
        )
        .unwrap();
    (e.device_id, e.device_token)
}

fn state(depot: &Depot, org: &OrgCode, id: &str) -> (String, Option<String>) {
    let v = depot
        .devices(org, &DeviceFilter::default())
        .unwrap()
        .into_iter()
        .find(|d| d.id == id)
        .unwrap();
    (v.state.to_string(), v.deactivated_reason)
}

#[test]
fn sync_follows_the_groups() {
    let Some(slapd) = slapd() else { return };
    let f = fixture(&slapd.url, SERVICE_PW);
    let d = &f.depot;
    let physics = add_org(d, "physics", "physics-users", OnIneligible::Deactivate);
    // A posixGroup, named by its DN, in an org that flags instead of deactivating.
    let chem = add_org(
        d,
        "chem",
        &format!("cn=chem-users,ou=groups,{SUFFIX}"),
        OnIneligible::Flag,
    );
    let (alice, alice_token) = enroll(d, &physics, "alice");
    let (bob, bob_token) = enroll(d, &physics, "EXAMPLE\\bob");
    let (mallory, _) = enroll(d, &physics, "mallory");
    let (carol, _) = enroll(d, &chem, "carol@example.edu");
    let (dave, _) = enroll(d, &chem, "dave");

    let report = d.directory_sync(&Actor::cli(), None, false).unwrap();
    let p = report.orgs.iter().find(|o| o.org == "physics").unwrap();
    assert_eq!(p.added, vec!["alice", "bob"]);
    assert!(p.deactivated.is_empty());
    assert_eq!(p.flagged, vec![mallory.clone()]);
    let c = report.orgs.iter().find(|o| o.org == "chem").unwrap();
    assert_eq!(c.added, vec!["carol", "dave"]);
    assert!(c.flagged.is_empty());
    assert_eq!(state(d, &physics, &mallory).0, "flagged");
    assert_eq!(state(d, &physics, &bob).0, "active");
    let users = d.directory_users(&physics).unwrap();
    assert_eq!(users.len(), 2);
    assert_eq!(users[0].mail.as_deref(), Some("alice@example.edu"));
    assert_eq!(users[0].name.as_deref(), Some("Alice Archer"));
    assert_eq!(users[0].devices, vec![alice.clone()]);
    assert_eq!(users[1].devices, vec![bob.clone()]);

    // Bob leaves physics, Erin joins; Dave leaves chem.
    slapd.modify(&format!(
        "dn: cn=physics-users,ou=groups,{SUFFIX}\nchangetype: modify\ndelete: member\n\
         member: uid=bob,ou=people,{SUFFIX}\n-\nadd: member\nmember: uid=erin,ou=people,{SUFFIX}\n\n\
         dn: cn=chem-users,ou=groups,{SUFFIX}\nchangetype: modify\ndelete: memberUid\nmemberUid: dave\n"
    ));
    let report = d.directory_sync(&Actor::cli(), None, false).unwrap();
    let p = report.orgs.iter().find(|o| o.org == "physics").unwrap();
    assert_eq!(p.added, vec!["erin"]);
    assert_eq!(p.removed, vec!["bob"]);
    assert_eq!(p.deactivated, vec![bob.clone()]);
    assert!(
        p.flagged.is_empty(),
        "mallory is flagged once: {:?}",
        p.flagged
    );
    // At once: the token is refused from the next request on.
    assert!(d.device_by_token(&bob_token).unwrap().is_none());
    assert!(d.device_by_token(&alice_token).unwrap().is_some());
    let (s, why) = state(d, &physics, &bob);
    assert_eq!(s, "deactivated");
    assert!(why.unwrap().contains("left group physics-users"));
    let c = report.orgs.iter().find(|o| o.org == "chem").unwrap();
    assert_eq!(c.removed, vec!["dave"]);
    assert!(c.deactivated.is_empty());
    assert_eq!(c.flagged, vec![dave.clone()]);
    assert_eq!(state(d, &chem, &dave).0, "flagged");
    assert_eq!(state(d, &chem, &carol).0, "active");
}

#[test]
fn a_group_emptied_by_mistake_waits_for_confirmation() {
    let Some(slapd) = slapd() else { return };
    let f = fixture(&slapd.url, SERVICE_PW);
    let d = &f.depot;
    let library = add_org(d, "library", "lib-users", OnIneligible::Deactivate);
    let (frank, frank_token) = enroll(d, &library, "frank");
    d.directory_sync(&Actor::cli(), Some(&library), false)
        .unwrap();
    slapd.modify(&format!(
        "dn: cn=lib-users,ou=groups,{SUFFIX}\nchangetype: modify\nreplace: member\n\
         member: uid=grace,ou=people,{SUFFIX}\n"
    ));
    let report = d
        .directory_sync(&Actor::cli(), Some(&library), false)
        .unwrap();
    let held = report.orgs[0].held.as_deref().unwrap();
    assert!(held.contains("shrank from 3 to 1"), "{held}");
    assert!(held.contains("--confirm-shrink"), "{held}");
    assert_eq!(d.directory_users(&library).unwrap().len(), 3);
    assert!(d.device_by_token(&frank_token).unwrap().is_some());
    let report = d
        .directory_sync(&Actor::cli(), Some(&library), true)
        .unwrap();
    assert_eq!(report.orgs[0].deactivated, vec![frank]);
    assert_eq!(d.directory_users(&library).unwrap().len(), 1);
}

#[test]
fn failures_change_nothing_and_say_why() {
    let Some(slapd) = slapd() else { return };
    // Wrong credentials.
    let f = fixture(&slapd.url, "wrong-password");
    let org = add_org(
        &f.depot,
        "physics",
        "physics-users",
        OnIneligible::Deactivate,
    );
    enroll(&f.depot, &org, "mallory");
    let err = f
        .depot
        .directory_sync(&Actor::cli(), None, false)
        .unwrap_err();
    assert!(err.to_string().contains("refused the bind"), "{err}");
    assert!(err.to_string().contains("nothing changed"), "{err}");
    assert!(f.depot.directory_users(&org).unwrap().is_empty());

    // A vanished group fails the whole sync, before anything is written.
    let f = fixture(&slapd.url, SERVICE_PW);
    let org = add_org(
        &f.depot,
        "physics",
        "physics-users",
        OnIneligible::Deactivate,
    );
    let (mallory, _) = enroll(&f.depot, &org, "mallory");
    add_org(&f.depot, "gone", "no-such-group", OnIneligible::Deactivate);
    let err = f
        .depot
        .directory_sync(&Actor::cli(), None, false)
        .unwrap_err();
    assert!(err.to_string().contains("no-such-group"), "{err}");
    assert!(f.depot.directory_users(&org).unwrap().is_empty());
    assert_eq!(state(&f.depot, &org, &mallory).0, "active");

    // The directory down: a port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let f = fixture(&format!("ldap://127.0.0.1:{port}"), SERVICE_PW);
    add_org(
        &f.depot,
        "physics",
        "physics-users",
        OnIneligible::Deactivate,
    );
    let err = f
        .depot
        .directory_sync(&Actor::cli(), None, false)
        .unwrap_err();
    assert!(
        err.to_string().contains("cannot reach the directory"),
        "{err}"
    );
}
