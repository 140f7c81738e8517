//! Behaviour every [`MetaStore`] and [`BlobStore`] must show, written against the traits so that
//! each backend runs the same suite: `meta_store_tests!(expr)` and `blob_store_tests!(expr)`
//! expand to one `#[test]` per behaviour, where `expr` makes a `(guard, store)` pair per test (the
//! guard keeps a temp dir or a scratch database alive). [`sees_other_handles_commits`] takes two
//! handles on one store (two processes, or two replicas) and is called by each backend's tests.

use super::*;
use crate::domain::{Platform, RegistrationKey};
use crate::org::{Org, OrgConfig};
use crate::package::PayloadPart;
use std::io::Write;

// ---------------------------------------------------------------------------------------------
// Fixtures

pub(crate) fn code(s: &str) -> OrgCode {
    OrgCode::parse(s).unwrap()
}

pub(crate) fn ver(s: &str) -> Version {
    Version::parse(s).unwrap()
}

pub(crate) fn channel(s: &str) -> Channel {
    Channel::parse(s).unwrap()
}

pub(crate) fn org(c: &str, now: i64) -> Org {
    let mut config = OrgConfig::new(&format!("Department of {c}")).unwrap();
    config.contact_email = Some(format!("it@{c}.example.edu"));
    config.seats = 40;
    config.settings.insert(
        "DEPLOYMENT_URL".into(),
        "https://backup.example.edu:4285".into(),
    );
    Org {
        code: code(c),
        registration_key: RegistrationKey::generate(),
        config,
        created_at: now,
        updated_at: now,
    }
}

fn payload(version: &str, platform: Platform) -> ReleasePayload {
    let payload_name = format!("client-{version}-{platform}.bin");
    ReleasePayload {
        platform,
        part: PayloadPart {
            file_name: EntryName::parse(&payload_name).unwrap(),
            size: 3_000_000_000,
            sha256: Sha256::digest(payload_name.as_bytes()),
            crc32: 0xdead_beef,
            blob: Sha256::digest(format!("part {payload_name}").as_bytes()),
            part_len: 3_000_000_080,
            modified: 1_700_000_000,
        },
    }
}

/// A release with payloads for two platforms, in platform order.
pub(crate) fn release(version: &str, created_at: i64) -> Release {
    Release {
        version: ver(version),
        notes: format!("Release {version}\n\n- fixes"),
        created_at,
        payloads: vec![
            payload(version, Platform::WindowsX86_64),
            payload(version, Platform::MacosAarch64),
        ],
        yanked: None,
    }
}

pub(crate) fn package(org: &str, version: &str, platform: Platform, built_at: i64) -> Package {
    let org = code(org);
    let version = ver(version);
    let file_name = crate::domain::package_file_name(&org, &version, platform);
    Package {
        segments: vec![
            Segment {
                blob: Sha256::digest(b"payload part"),
                offset: 0,
                len: 3_000_000_080,
            },
            Segment {
                blob: Sha256::digest(b"tail pack"),
                offset: 4096,
                len: 2048,
            },
        ],
        size: 3_000_002_128,
        sha256: Sha256::digest(file_name.as_bytes()),
        minisig: format!("untrusted comment: signature\nRW...{file_name}\n"),
        config_sha256: Sha256::digest(b"config"),
        build_key: Sha256::digest(format!("build {built_at}").as_bytes()),
        built_at,
        org,
        version,
        platform,
        file_name,
    }
}

pub(crate) fn checksums(org: &str, version: &str, text: &str, at: i64) -> Checksums {
    Checksums {
        org: code(org),
        version: ver(version),
        text: text.to_string(),
        minisig: format!("untrusted comment: sums\n{text}"),
        updated_at: at,
    }
}

pub(crate) fn token(id: &str, role: Role, org: Option<&str>, at: i64) -> TokenRecord {
    TokenRecord {
        id: id.to_string(),
        name: format!("token {id}"),
        role,
        org: org.map(code),
        secret_hash: Sha256::digest(format!("secret of {id}").as_bytes()),
        created_at: at,
        revoked_at: None,
    }
}

pub(crate) fn event(at: i64, actor: &str, org: Option<&str>, action: &str) -> AuditEvent {
    AuditEvent {
        id: 0,
        at,
        actor: actor.to_string(),
        org: org.map(code),
        action: action.to_string(),
        target: format!("target of {action}"),
        address: "192.0.2.7".to_string(),
        detail: Some("why".to_string()),
    }
}

fn is_not_found<T: std::fmt::Debug>(r: Result<T>, needle: &str) -> bool {
    match r {
        Err(StoreError::NotFound(what)) => what.contains(needle),
        other => panic!("expected NotFound({needle}), got {other:?}"),
    }
}

fn conflict_message<T: std::fmt::Debug>(r: Result<T>) -> String {
    match r {
        Err(StoreError::Conflict(message)) => message,
        other => panic!("expected Conflict, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// MetaStore

/// One `#[test]` per `MetaStore` behaviour; `$make` evaluates to `(guard, store)`.
macro_rules! meta_store_tests {
    ($make:expr) => {
        $crate::store::behaviour_tests::meta_store_tests!(@each $make;
            org_round_trip,
            create_org_conflicts,
            update_org_config,
            set_registration_key,
            delete_org_cascades,
            overlays,
            releases_newest_first,
            yank_release,
            rollouts,
            channels,
            commit_packages,
            commit_packages_is_atomic,
            tokens,
            audit_filters_and_order,
            audit_limit,
            change_counter_moves_on_writes,
            devices_and_checkins,
            device_events_and_counts,
            rollout_counts_agree_with_a_recount,
            manifest_serials_only_grow,
        );
    };
    (@each $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let (_guard, store) = $make;
                $crate::store::behaviour_tests::$name(&store);
            }
        )*
    };
}
pub(crate) use meta_store_tests;

pub(crate) fn org_round_trip(s: &dyn MetaStore) {
    assert!(s.list_orgs().unwrap().is_empty());
    let physics = org("physics", 100);
    let mut chem = org("chemistry", 101);
    chem.config.pinned_version = Some(ver("11.2.1"));
    chem.config.channel = channel("beta");
    chem.config.contact_email = None;
    s.create_org(&physics).unwrap();
    s.create_org(&chem).unwrap();
    assert_eq!(s.get_org(&code("physics")).unwrap(), Some(physics.clone()));
    assert_eq!(s.get_org(&code("chemistry")).unwrap(), Some(chem.clone()));
    assert_eq!(s.get_org(&code("nobody")).unwrap(), None);
    assert_eq!(s.list_orgs().unwrap(), vec![chem, physics]);
}

pub(crate) fn create_org_conflicts(s: &dyn MetaStore) {
    let physics = org("physics", 100);
    s.create_org(&physics).unwrap();
    let again = org("physics", 200);
    let message = conflict_message(s.create_org(&again));
    assert!(
        message.contains("physics") && message.contains("exists"),
        "{message}"
    );

    let mut twin = org("chemistry", 200);
    twin.registration_key = physics.registration_key.clone();
    let message = conflict_message(s.create_org(&twin));
    assert!(message.contains("registration key"), "{message}");
    // The secret itself never goes into an error message.
    assert!(
        !message.contains(physics.registration_key.as_str()),
        "{message}"
    );
    assert_eq!(s.list_orgs().unwrap(), vec![physics]);
}

pub(crate) fn update_org_config(s: &dyn MetaStore) {
    let physics = org("physics", 100);
    s.create_org(&physics).unwrap();
    let mut config = physics.config.clone();
    config.name = "Physics & Astronomy".into();
    config.backup.exclude.push("(?i).*\\.bak$".into());
    config
        .settings
        .insert("backup.retention_days".into(), "30".into());
    config.pinned_version = Some(ver("11.3.0-beta.1"));
    config.seats = 0;
    let updated = s.update_org_config(&physics.code, &config, 500).unwrap();
    assert_eq!(updated.config, config);
    assert_eq!(updated.created_at, 100);
    assert_eq!(updated.updated_at, 500);
    assert_eq!(updated.registration_key, physics.registration_key);
    assert_eq!(s.get_org(&physics.code).unwrap(), Some(updated));
    assert!(is_not_found(
        s.update_org_config(&code("ghost"), &config, 600),
        "org ghost"
    ));
}

pub(crate) fn set_registration_key(s: &dyn MetaStore) {
    let physics = org("physics", 100);
    let chem = org("chemistry", 100);
    s.create_org(&physics).unwrap();
    s.create_org(&chem).unwrap();
    let fresh = RegistrationKey::generate();
    let rotated = s.set_registration_key(&physics.code, &fresh, 300).unwrap();
    assert_eq!(rotated.registration_key, fresh);
    assert_eq!(rotated.updated_at, 300);
    assert_eq!(rotated.config, physics.config);
    assert_eq!(s.get_org(&physics.code).unwrap(), Some(rotated));

    let message =
        conflict_message(s.set_registration_key(&physics.code, &chem.registration_key, 400));
    assert!(message.contains("registration key"), "{message}");
    assert_eq!(
        s.get_org(&physics.code).unwrap().unwrap().registration_key,
        fresh
    );
    assert!(is_not_found(
        s.set_registration_key(&code("ghost"), &RegistrationKey::generate(), 500),
        "org ghost"
    ));
}

pub(crate) fn delete_org_cascades(s: &dyn MetaStore) {
    let physics = org("physics", 100);
    let chem = org("chemistry", 100);
    s.create_org(&physics).unwrap();
    s.create_org(&chem).unwrap();
    s.add_release(&release("11.2.1", 50)).unwrap();
    let script = EntryName::parse("detect-user.sh").unwrap();
    s.put_overlay(&physics.code, &script, b"#!/bin/sh\n", 110)
        .unwrap();
    s.put_overlay(&chem.code, &script, b"#!/bin/sh\n", 110)
        .unwrap();
    s.commit_packages(
        &[
            package("physics", "11.2.1", Platform::MacosAarch64, 120),
            package("chemistry", "11.2.1", Platform::MacosAarch64, 120),
        ],
        &[
            checksums("physics", "11.2.1", "a  b\n", 120),
            checksums("chemistry", "11.2.1", "c  d\n", 120),
        ],
    )
    .unwrap();
    s.create_token(&token("t-phys", Role::Partner, Some("physics"), 130))
        .unwrap();
    s.create_token(&token("t-admin", Role::Admin, None, 130))
        .unwrap();
    s.append_audit(&event(140, "cli:root", Some("physics"), "org.update"))
        .unwrap();

    s.delete_org(&physics.code).unwrap();
    assert_eq!(s.get_org(&physics.code).unwrap(), None);
    assert!(s.list_overlays(&physics.code).unwrap().is_empty());
    assert!(s
        .list_packages(Some(&physics.code), None)
        .unwrap()
        .is_empty());
    assert_eq!(
        s.get_checksums(&physics.code, &ver("11.2.1")).unwrap(),
        None
    );
    // A partner token must not outlive its org: an org re-created under the same code would
    // otherwise be open to its predecessor's partner.
    assert_eq!(
        s.find_token(&token("t-phys", Role::Partner, Some("physics"), 0).secret_hash)
            .unwrap(),
        None
    );
    let ids: Vec<String> = s.list_tokens().unwrap().into_iter().map(|t| t.id).collect();
    assert_eq!(ids, vec!["t-admin".to_string()]);
    // The audit log is history: it keeps the deleted org's events.
    let filter = AuditFilter {
        org: Some(physics.code.clone()),
        ..Default::default()
    };
    assert_eq!(s.query_audit(&filter).unwrap().len(), 1);
    // Everything of the other org is untouched.
    assert_eq!(s.list_overlays(&chem.code).unwrap().len(), 1);
    assert_eq!(s.list_packages(Some(&chem.code), None).unwrap().len(), 1);
    assert!(s
        .get_checksums(&chem.code, &ver("11.2.1"))
        .unwrap()
        .is_some());

    assert!(is_not_found(s.delete_org(&physics.code), "org physics"));
}

pub(crate) fn overlays(s: &dyn MetaStore) {
    let physics = org("physics", 100);
    s.create_org(&physics).unwrap();
    let logo = EntryName::parse("custom/logo.png").unwrap();
    let script = EntryName::parse("detect-user.sh").unwrap();
    s.put_overlay(&physics.code, &script, b"#!/bin/sh\necho v1\n", 110)
        .unwrap();
    s.put_overlay(&physics.code, &logo, &[0x89, b'P', b'N', b'G', 0, 255], 120)
        .unwrap();
    s.put_overlay(&physics.code, &script, b"#!/bin/sh\necho v2\n", 130)
        .unwrap();
    assert_eq!(
        s.list_overlays(&physics.code).unwrap(),
        vec![
            Overlay {
                name: logo.clone(),
                bytes: vec![0x89, b'P', b'N', b'G', 0, 255],
                updated_at: 120,
            },
            Overlay {
                name: script.clone(),
                bytes: b"#!/bin/sh\necho v2\n".to_vec(),
                updated_at: 130,
            },
        ]
    );
    // An overlay is part of the org's configuration: changing one marks the org changed.
    assert_eq!(s.get_org(&physics.code).unwrap().unwrap().updated_at, 130);

    assert!(s.delete_overlay(&physics.code, &logo, 140).unwrap());
    assert!(!s.delete_overlay(&physics.code, &logo, 150).unwrap());
    assert_eq!(s.get_org(&physics.code).unwrap().unwrap().updated_at, 140);
    let names: Vec<EntryName> = s
        .list_overlays(&physics.code)
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    assert_eq!(names, vec![script.clone()]);

    assert!(is_not_found(
        s.put_overlay(&code("ghost"), &script, b"x", 160),
        "org ghost"
    ));
    assert!(!s.delete_overlay(&code("ghost"), &script, 160).unwrap());
    assert!(s.list_overlays(&code("ghost")).unwrap().is_empty());

    for i in 1..crate::org::MAX_OVERLAY_FILES {
        let name = EntryName::parse(&format!("extra-{i:02}.txt")).unwrap();
        s.put_overlay(&physics.code, &name, b"x", 170).unwrap();
    }
    let one_too_many = EntryName::parse("one-too-many.txt").unwrap();
    let message = conflict_message(s.put_overlay(&physics.code, &one_too_many, b"x", 180));
    assert!(message.contains("overlay"), "{message}");
    // Replacing an existing file is still allowed at the limit.
    s.put_overlay(&physics.code, &script, b"v3", 190).unwrap();
}

pub(crate) fn releases_newest_first(s: &dyn MetaStore) {
    let versions = [
        "9.1.0",
        "10.0.0-beta.10",
        "10.0.0",
        "2.0.0",
        "10.0.0-beta.2",
    ];
    for (i, v) in versions.iter().enumerate() {
        s.add_release(&release(v, 1000 + i as i64)).unwrap();
    }
    let listed: Vec<String> = s
        .list_releases()
        .unwrap()
        .iter()
        .map(|r| r.version.to_string())
        .collect();
    assert_eq!(
        listed,
        [
            "10.0.0",
            "10.0.0-beta.10",
            "10.0.0-beta.2",
            "9.1.0",
            "2.0.0"
        ]
    );
    assert_eq!(
        s.get_release(&ver("10.0.0-beta.2")).unwrap(),
        Some(release("10.0.0-beta.2", 1004))
    );
    assert_eq!(s.get_release(&ver("1.0.0")).unwrap(), None);

    let message = conflict_message(s.add_release(&release("9.1.0", 2000)));
    assert!(message.contains("9.1.0"), "{message}");
    assert_eq!(
        s.get_release(&ver("9.1.0")).unwrap().unwrap().created_at,
        1000
    );

    let mut no_payloads = release("12.0.0", 3000);
    no_payloads.payloads.clear();
    no_payloads.notes = String::new();
    s.add_release(&no_payloads).unwrap();
    assert_eq!(s.get_release(&ver("12.0.0")).unwrap(), Some(no_payloads));

    let mut twice = release("13.0.0", 4000);
    twice
        .payloads
        .push(payload("13.0.0", Platform::MacosAarch64));
    conflict_message(s.add_release(&twice));
    assert_eq!(s.get_release(&ver("13.0.0")).unwrap(), None);
}

pub(crate) fn yank_release(s: &dyn MetaStore) {
    s.add_release(&release("11.2.1", 100)).unwrap();
    let yanked = s
        .yank_release(&ver("11.2.1"), "corrupts the archive index", 200)
        .unwrap();
    assert_eq!(
        yanked.yanked,
        Some(Yank {
            reason: "corrupts the archive index".into(),
            at: 200
        })
    );
    assert_eq!(yanked.payloads, release("11.2.1", 100).payloads);
    assert_eq!(s.get_release(&ver("11.2.1")).unwrap(), Some(yanked));
    assert!(is_not_found(
        s.yank_release(&ver("1.0.0"), "x", 300),
        "release 1.0.0"
    ));
}

pub(crate) fn rollouts(s: &dyn MetaStore) {
    s.add_release(&release("11.2.1", 100)).unwrap();
    s.add_release(&release("11.3.0-beta.1", 100)).unwrap();
    let stable = Rollout {
        version: ver("11.2.1"),
        channel: channel("stable"),
        percent: 10,
        paused: false,
        pause_reason: None,
        published_at: 200,
        updated_at: 200,
    };
    let beta = Rollout {
        version: ver("11.3.0-beta.1"),
        channel: channel("beta"),
        percent: 100,
        paused: false,
        pause_reason: None,
        published_at: 210,
        updated_at: 210,
    };
    s.put_rollout(&stable).unwrap();
    s.put_rollout(&beta).unwrap();
    assert_eq!(
        s.get_rollout(&stable.version, &stable.channel).unwrap(),
        Some(stable.clone())
    );
    assert_eq!(
        s.get_rollout(&stable.version, &channel("beta")).unwrap(),
        None
    );
    let paused = Rollout {
        percent: 25,
        paused: true,
        pause_reason: Some("automatic halt: 3 of 12 installs failed".into()),
        updated_at: 300,
        ..stable.clone()
    };
    s.put_rollout(&paused).unwrap();
    assert_eq!(
        s.get_rollout(&stable.version, &stable.channel).unwrap(),
        Some(paused.clone())
    );
    assert_eq!(s.list_rollouts().unwrap(), vec![beta, paused]);

    let orphan = Rollout {
        version: ver("1.0.0"),
        ..stable.clone()
    };
    assert!(is_not_found(s.put_rollout(&orphan), "release 1.0.0"));
    let too_far = Rollout {
        percent: 101,
        ..stable
    };
    conflict_message(s.put_rollout(&too_far));
}

pub(crate) fn channels(s: &dyn MetaStore) {
    let stable = channel("stable");
    assert_eq!(s.get_channel(&stable).unwrap(), None);
    let settings = ChannelSettings {
        channel: stable.clone(),
        min_version: Some(ver("11.0.0")),
        updated_at: 100,
    };
    s.put_channel(&settings).unwrap();
    assert_eq!(s.get_channel(&stable).unwrap(), Some(settings));
    let cleared = ChannelSettings {
        channel: stable.clone(),
        min_version: None,
        updated_at: 200,
    };
    s.put_channel(&cleared).unwrap();
    assert_eq!(s.get_channel(&stable).unwrap(), Some(cleared));
    assert_eq!(s.get_channel(&channel("beta")).unwrap(), None);
}

pub(crate) fn commit_packages(s: &dyn MetaStore) {
    s.create_org(&org("physics", 1)).unwrap();
    s.create_org(&org("chemistry", 1)).unwrap();
    s.add_release(&release("11.2.1", 1)).unwrap();
    s.add_release(&release("11.10.0", 1)).unwrap();
    let p_old_mac = package("physics", "11.2.1", Platform::MacosAarch64, 10);
    let p_old_win = package("physics", "11.2.1", Platform::WindowsX86_64, 10);
    let p_new_mac = package("physics", "11.10.0", Platform::MacosAarch64, 10);
    let c_old_mac = package("chemistry", "11.2.1", Platform::MacosAarch64, 10);
    s.commit_packages(
        &[
            p_old_win.clone(),
            c_old_mac.clone(),
            p_new_mac.clone(),
            p_old_mac.clone(),
        ],
        &[
            checksums("physics", "11.2.1", "v1\n", 10),
            checksums("physics", "11.10.0", "v1\n", 10),
        ],
    )
    .unwrap();

    let physics = code("physics");
    // By org, then newest version first, then platform.
    assert_eq!(
        s.list_packages(None, None).unwrap(),
        vec![
            c_old_mac.clone(),
            p_new_mac.clone(),
            p_old_win.clone(),
            p_old_mac.clone()
        ]
    );
    assert_eq!(
        s.list_packages(Some(&physics), Some(&ver("11.2.1")))
            .unwrap(),
        vec![p_old_win.clone(), p_old_mac.clone()]
    );
    assert_eq!(
        s.list_packages(None, Some(&ver("11.2.1"))).unwrap(),
        vec![c_old_mac, p_old_win.clone(), p_old_mac.clone()]
    );
    assert_eq!(
        s.get_package(&physics, &ver("11.2.1"), &p_old_mac.file_name)
            .unwrap(),
        Some(p_old_mac.clone())
    );
    // A file name of another version or org is not this one's.
    assert_eq!(
        s.get_package(&physics, &ver("11.10.0"), &p_old_mac.file_name)
            .unwrap(),
        None
    );
    assert_eq!(
        s.get_package(&code("chemistry"), &ver("11.2.1"), &p_old_mac.file_name)
            .unwrap(),
        None
    );

    // A rebuild replaces the package and the checksums of its org and version.
    let rebuilt = package("physics", "11.2.1", Platform::MacosAarch64, 20);
    s.commit_packages(
        std::slice::from_ref(&rebuilt),
        &[checksums("physics", "11.2.1", "v2\n", 20)],
    )
    .unwrap();
    assert_eq!(
        s.list_packages(Some(&physics), Some(&ver("11.2.1")))
            .unwrap(),
        vec![p_old_win, rebuilt]
    );
    assert_eq!(
        s.get_checksums(&physics, &ver("11.2.1")).unwrap(),
        Some(checksums("physics", "11.2.1", "v2\n", 20))
    );
    assert_eq!(
        s.get_checksums(&physics, &ver("11.10.0")).unwrap(),
        Some(checksums("physics", "11.10.0", "v1\n", 10))
    );
    assert_eq!(
        s.get_checksums(&code("chemistry"), &ver("11.2.1")).unwrap(),
        None
    );
    s.commit_packages(&[], &[]).unwrap();
}

pub(crate) fn commit_packages_is_atomic(s: &dyn MetaStore) {
    s.create_org(&org("physics", 1)).unwrap();
    s.add_release(&release("11.2.1", 1)).unwrap();
    let good = package("physics", "11.2.1", Platform::MacosAarch64, 10);
    let unknown_org = package("ghost", "11.2.1", Platform::MacosAarch64, 10);
    assert!(is_not_found(
        s.commit_packages(
            &[good.clone(), unknown_org],
            &[checksums("physics", "11.2.1", "x\n", 10)]
        ),
        "org ghost"
    ));
    let unknown_release = package("physics", "12.0.0", Platform::MacosAarch64, 10);
    assert!(is_not_found(
        s.commit_packages(&[good.clone(), unknown_release], &[]),
        "release 12.0.0"
    ));
    assert!(is_not_found(
        s.commit_packages(
            std::slice::from_ref(&good),
            &[checksums("ghost", "11.2.1", "x\n", 10)]
        ),
        "org ghost"
    ));
    assert!(s.list_packages(None, None).unwrap().is_empty());
    assert_eq!(
        s.get_checksums(&code("physics"), &ver("11.2.1")).unwrap(),
        None
    );
}

pub(crate) fn tokens(s: &dyn MetaStore) {
    s.create_org(&org("physics", 1)).unwrap();
    let admin = token("tok-admin", Role::Admin, None, 10);
    let partner = token("tok-phys", Role::Partner, Some("physics"), 20);
    s.create_token(&admin).unwrap();
    s.create_token(&partner).unwrap();
    assert_eq!(
        s.list_tokens().unwrap(),
        vec![admin.clone(), partner.clone()]
    );
    assert_eq!(
        s.find_token(&partner.secret_hash).unwrap(),
        Some(partner.clone())
    );
    assert_eq!(s.find_token(&Sha256::digest(b"guess")).unwrap(), None);

    let same_id = TokenRecord {
        secret_hash: Sha256::digest(b"other secret"),
        ..admin.clone()
    };
    conflict_message(s.create_token(&same_id));
    let same_secret = TokenRecord {
        id: "tok-other".into(),
        ..admin.clone()
    };
    conflict_message(s.create_token(&same_secret));
    let orphan = token("tok-ghost", Role::Partner, Some("ghost"), 30);
    assert!(is_not_found(s.create_token(&orphan), "org ghost"));

    assert!(s.revoke_token("tok-phys", 40).unwrap());
    assert!(!s.revoke_token("tok-phys", 50).unwrap());
    assert!(!s.revoke_token("tok-unknown", 50).unwrap());
    // A revoked token is still found, with its revocation time: the caller refuses it and can say
    // why.
    let revoked = TokenRecord {
        revoked_at: Some(40),
        ..partner
    };
    assert_eq!(
        s.find_token(&revoked.secret_hash).unwrap(),
        Some(revoked.clone())
    );
    assert_eq!(s.list_tokens().unwrap(), vec![admin, revoked]);
}

pub(crate) fn audit_filters_and_order(s: &dyn MetaStore) {
    let events = [
        event(100, "cli:root", None, "release.add"),
        event(200, "alice", Some("physics"), "org.update"),
        event(200, "bob", Some("chemistry"), "org.update"),
        event(300, "device:42", Some("physics"), "package.download"),
        event(400, "alice", Some("physics"), "org.rotate-key"),
    ];
    for e in &events {
        s.append_audit(e).unwrap();
    }
    let all = s.query_audit(&AuditFilter::default()).unwrap();
    assert_eq!(all.len(), 5);
    // Newest first; the store assigns increasing ids, which also order events of one second.
    let order: Vec<(i64, &str)> = all.iter().map(|e| (e.at, e.actor.as_str())).collect();
    assert_eq!(
        order,
        [
            (400, "alice"),
            (300, "device:42"),
            (200, "bob"),
            (200, "alice"),
            (100, "cli:root")
        ]
    );
    assert!(all.windows(2).all(|w| w[0].id > w[1].id));
    let stored_oldest = all.last().unwrap();
    assert_eq!(
        AuditEvent {
            id: 0,
            ..stored_oldest.clone()
        },
        events[0]
    );

    let query = |f: AuditFilter| -> Vec<i64> {
        s.query_audit(&f)
            .unwrap()
            .into_iter()
            .map(|e| e.at)
            .collect()
    };
    assert_eq!(
        query(AuditFilter {
            org: Some(code("physics")),
            ..Default::default()
        }),
        [400, 300, 200]
    );
    assert_eq!(
        query(AuditFilter {
            actor: Some("alice".into()),
            ..Default::default()
        }),
        [400, 200]
    );
    assert_eq!(
        query(AuditFilter {
            action: Some("org.update".into()),
            ..Default::default()
        }),
        [200, 200]
    );
    assert_eq!(
        query(AuditFilter {
            since: Some(300),
            ..Default::default()
        }),
        [400, 300]
    );
    assert_eq!(
        query(AuditFilter {
            org: Some(code("physics")),
            actor: Some("alice".into()),
            action: Some("org.update".into()),
            since: Some(150),
            limit: None,
        }),
        [200]
    );
    assert_eq!(
        query(AuditFilter {
            limit: Some(2),
            ..Default::default()
        }),
        [400, 300]
    );
    assert!(query(AuditFilter {
        org: Some(code("nobody")),
        ..Default::default()
    })
    .is_empty());
}

pub(crate) fn audit_limit(s: &dyn MetaStore) {
    for at in 0..1100 {
        s.append_audit(&event(at, "device:1", Some("physics"), "package.download"))
            .unwrap();
    }
    let count = |limit| {
        s.query_audit(&AuditFilter {
            limit,
            ..Default::default()
        })
        .unwrap()
        .len()
    };
    assert_eq!(count(None), 100);
    assert_eq!(count(Some(5000)), 1000);
    assert_eq!(count(Some(1000)), 1000);
    assert_eq!(count(Some(7)), 7);
    assert_eq!(s.query_audit(&AuditFilter::default()).unwrap()[0].at, 1099);
}

pub(crate) fn change_counter_moves_on_writes(s: &dyn MetaStore) {
    let start = s.change_counter().unwrap();
    s.list_orgs().unwrap();
    assert_eq!(s.change_counter().unwrap(), start);
    s.create_org(&org("physics", 1)).unwrap();
    let after_org = s.change_counter().unwrap();
    assert_ne!(after_org, start);
    s.add_release(&release("11.2.1", 1)).unwrap();
    assert_ne!(s.change_counter().unwrap(), after_org);
}

/// `a` and `b` are two handles on one store (two processes, two replicas): each sees the other's
/// commits, and the change counter of each moves when the other writes.
fn device(id: &str, org: &str, token: &str, at: i64) -> Device {
    Device {
        id: id.into(),
        org: code(org),
        hostname: format!("{id}.example.edu"),
        platform: Platform::LinuxX86_64,
        os_version: "Debian 12".into(),
        user: "alice".into(),
        token_hash: Sha256::digest(token.as_bytes()),
        enrolled_at: at,
        deactivated_at: None,
        last_seen_at: None,
        last_address: None,
        current_version: None,
    }
}

pub(crate) fn devices_and_checkins(s: &dyn MetaStore) {
    let physics = org("physics", 100);
    s.create_org(&physics).unwrap();
    assert_eq!(
        s.find_org_by_key(&physics.registration_key)
            .unwrap()
            .unwrap()
            .code,
        code("physics")
    );
    assert!(s
        .find_org_by_key(&RegistrationKey::generate())
        .unwrap()
        .is_none());
    let after_a = s
        .create_device(&device("dev_a", "physics", "ta", 10))
        .unwrap();
    assert_eq!(after_a, s.change_counter().unwrap());
    let after_b = s
        .create_device(&device("dev_b", "physics", "tb", 11))
        .unwrap();
    assert_eq!(after_b, after_a + 1, "one commit, one step of the counter");
    assert_eq!(s.count_active_devices(&code("physics")).unwrap(), 2);
    assert!(s
        .create_device(&device("dev_c", "nosuch", "tc", 12))
        .is_err());
    assert!(s
        .create_device(&device("dev_a", "physics", "tz", 13))
        .is_err());
    let counter = s.change_counter().unwrap();
    s.record_checkins(&[
        Checkin {
            device_id: "dev_a".into(),
            at: 50,
            address: "10.0.0.5".into(),
            version: Some(ver("1.0.0")),
            platform: Platform::LinuxX86_64,
            offered: Some((ver("1.1.0"), channel("stable"))),
        },
        Checkin {
            device_id: "dev_a".into(),
            at: 40,
            address: "10.0.0.6".into(),
            version: None,
            platform: Platform::LinuxX86_64,
            offered: Some((ver("1.1.0"), channel("stable"))),
        },
    ])
    .unwrap();
    assert_eq!(
        s.change_counter().unwrap(),
        counter,
        "check-ins must not flush caches"
    );
    let listed = s.list_devices(Some(&code("physics"))).unwrap();
    assert_eq!(
        listed.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["dev_a", "dev_b"]
    );
    assert_eq!(
        (listed[0].last_seen_at, listed[0].current_version.clone()),
        (Some(50), Some(ver("1.0.0")))
    );
    assert_eq!(
        s.rollout_counts(&ver("1.1.0"), &channel("stable"))
            .unwrap()
            .offered,
        1
    );
    let before = s.change_counter().unwrap();
    assert_eq!(
        s.deactivate_device(&code("physics"), "dev_b", 60).unwrap(),
        Some(before + 1)
    );
    assert_eq!(
        s.deactivate_device(&code("physics"), "dev_b", 61).unwrap(),
        None
    );
    assert_eq!(
        s.deactivate_device(&code("chemistry"), "dev_a", 61)
            .unwrap(),
        None
    );
    assert_eq!(s.count_active_devices(&code("physics")).unwrap(), 1);
    assert_eq!(s.list_devices(None).unwrap()[1].deactivated_at, Some(60));
}

pub(crate) fn device_events_and_counts(s: &dyn MetaStore) {
    s.create_org(&org("physics", 100)).unwrap();
    for (i, kind) in [
        EventKind::Installed,
        EventKind::Failed,
        EventKind::Installed,
        EventKind::Downloaded,
    ]
    .into_iter()
    .enumerate()
    {
        s.append_device_event(&DeviceEvent {
            device_id: format!("dev_{i}"),
            org: code("physics"),
            version: Some(ver("2.0.0")),
            channel: channel("stable"),
            kind,
            message: String::new(),
            at: i as i64,
        })
        .unwrap();
    }
    let counts = s.rollout_counts(&ver("2.0.0"), &channel("stable")).unwrap();
    assert_eq!(
        counts,
        RolloutCounts {
            offered: 0,
            downloaded: 1,
            installed: 2,
            failed: 1
        }
    );
    // Counted in devices: dev_1 keeps failing, then installs; dev_0 downloads twice, then fails.
    let report = |device: &str, kind, at| {
        s.append_device_event(&DeviceEvent {
            device_id: device.into(),
            org: code("physics"),
            version: Some(ver("2.0.0")),
            channel: channel("stable"),
            kind,
            message: String::new(),
            at,
        })
        .unwrap()
    };
    report("dev_1", EventKind::Failed, 10);
    report("dev_1", EventKind::Failed, 11);
    report("dev_0", EventKind::Downloaded, 12);
    report("dev_0", EventKind::Downloaded, 13);
    assert_eq!(
        s.rollout_counts(&ver("2.0.0"), &channel("stable")).unwrap(),
        RolloutCounts {
            offered: 0,
            downloaded: 2,
            installed: 2,
            failed: 1
        }
    );
    report("dev_1", EventKind::Installed, 14);
    report("dev_0", EventKind::Failed, 15);
    assert_eq!(
        s.rollout_counts(&ver("2.0.0"), &channel("stable")).unwrap(),
        RolloutCounts {
            offered: 0,
            downloaded: 2,
            installed: 2,
            failed: 1
        }
    );
    report("dev_2", EventKind::Failed, 16);
    assert_eq!(
        s.rollout_counts(&ver("2.0.0"), &channel("stable")).unwrap(),
        RolloutCounts {
            offered: 0,
            downloaded: 2,
            installed: 1,
            failed: 2
        }
    );
    assert_eq!(
        s.rollout_counts(&ver("2.0.0"), &channel("beta")).unwrap(),
        RolloutCounts::default()
    );
}

/// The counts a store keeps as reports and offers arrive are those a recount of everything it
/// was told gives, after each step: devices failing then installing, installing then failing,
/// repeating themselves, reporting on two releases and two channels, and reports naming no
/// release.
pub(crate) fn rollout_counts_agree_with_a_recount(s: &dyn MetaStore) {
    use std::collections::{BTreeMap, BTreeSet};
    type Key = (Version, Channel);
    #[derive(Default)]
    struct Model {
        offers: BTreeSet<(Key, String)>,
        downloaded: BTreeSet<(Key, String)>,
        latest: BTreeMap<(Key, String), EventKind>,
    }
    impl Model {
        fn counts(&self, key: &Key) -> RolloutCounts {
            let of = |k: &(Key, String)| &k.0 == key;
            RolloutCounts {
                offered: self.offers.iter().filter(|k| of(k)).count() as u64,
                downloaded: self.downloaded.iter().filter(|k| of(k)).count() as u64,
                installed: self
                    .latest
                    .iter()
                    .filter(|(k, v)| of(k) && **v == EventKind::Installed)
                    .count() as u64,
                failed: self
                    .latest
                    .iter()
                    .filter(|(k, v)| of(k) && **v == EventKind::Failed)
                    .count() as u64,
            }
        }
    }

    let keys: Vec<Key> = [("2.0.0", "stable"), ("2.0.0", "beta"), ("2.1.0", "stable")]
        .into_iter()
        .map(|(v, c)| (ver(v), channel(c)))
        .collect();
    let kinds = [
        EventKind::Downloaded,
        EventKind::Installed,
        EventKind::Failed,
    ];
    let mut model = Model::default();
    let mut at = 0;
    let mut report = |model: &mut Model, device: &str, key: Option<&Key>, kind: EventKind| {
        at += 1;
        let returned = s
            .append_device_event(&DeviceEvent {
                device_id: device.into(),
                org: code("physics"),
                version: key.map(|k| k.0.clone()),
                channel: key.map_or_else(|| channel("stable"), |k| k.1.clone()),
                kind,
                message: format!("report {at}"),
                at,
            })
            .unwrap();
        let Some(key) = key else {
            assert_eq!(returned, None, "a report naming no release has no counts");
            return;
        };
        let id = (key.clone(), device.to_string());
        match kind {
            EventKind::Downloaded => {
                model.downloaded.insert(id);
            }
            EventKind::Installed | EventKind::Failed => {
                model.latest.insert(id, kind);
            }
        }
        assert_eq!(
            returned,
            Some(model.counts(key)),
            "{device} {kind:?} on {key:?}: the counts returned by the write"
        );
    };

    // Scripted: a failure then an install counts as installed, and the reverse as failed.
    let stable = &keys[0];
    report(&mut model, "dev_a", Some(stable), EventKind::Failed);
    report(&mut model, "dev_a", Some(stable), EventKind::Failed);
    report(&mut model, "dev_a", Some(stable), EventKind::Installed);
    report(&mut model, "dev_b", Some(stable), EventKind::Installed);
    report(&mut model, "dev_b", Some(stable), EventKind::Failed);
    report(&mut model, "dev_b", Some(stable), EventKind::Downloaded);
    report(&mut model, "dev_b", Some(stable), EventKind::Downloaded);
    report(&mut model, "dev_b", None, EventKind::Failed);
    assert_eq!(
        s.rollout_counts(&stable.0, &stable.1).unwrap(),
        RolloutCounts {
            offered: 0,
            downloaded: 1,
            installed: 1,
            failed: 1
        }
    );

    // Mixed: a fixed pseudo-random sequence over few devices, so that most reports repeat or
    // overturn an earlier one; offers arrive in batches in between, some of them again.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: usize| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as usize % n
    };
    for round in 0..300 {
        let device = format!("dev_{}", next(7));
        let key = (next(10) > 0).then(|| &keys[next(keys.len())]);
        report(&mut model, &device, key, kinds[next(kinds.len())]);
        if round % 25 == 0 {
            let batch: Vec<Checkin> = (0..6)
                .map(|_| {
                    let key = &keys[next(keys.len())];
                    Checkin {
                        device_id: format!("dev_{}", next(7)),
                        at: round,
                        address: "10.0.0.1".into(),
                        version: None,
                        platform: Platform::LinuxX86_64,
                        offered: Some(key.clone()),
                    }
                })
                .collect();
            s.record_checkins(&batch).unwrap();
            for c in batch {
                model
                    .offers
                    .insert((c.offered.unwrap(), c.device_id.clone()));
            }
        }
    }
    for key in &keys {
        let counts = s.rollout_counts(&key.0, &key.1).unwrap();
        assert_eq!(counts, model.counts(key), "{key:?}");
        assert!(
            counts.installed + counts.failed > 0,
            "the sequence covers {key:?}"
        );
    }
    assert_eq!(
        s.rollout_counts(&ver("2.1.0"), &channel("beta")).unwrap(),
        RolloutCounts::default()
    );
}

pub(crate) fn manifest_serials_only_grow(s: &dyn MetaStore) {
    let record = |serial| ManifestRecord {
        org: code("physics"),
        platform: Platform::MacosAarch64,
        channel: channel("stable"),
        serial,
        json: format!("{{\"serial\":{serial}}}"),
        minisig: "sig".into(),
    };
    assert!(s
        .get_manifest(&code("physics"), Platform::MacosAarch64, &channel("stable"))
        .unwrap()
        .is_none());
    assert!(s.put_manifest(&record(1)).unwrap());
    assert!(s.put_manifest(&record(3)).unwrap());
    assert!(!s.put_manifest(&record(3)).unwrap());
    assert!(!s.put_manifest(&record(2)).unwrap());
    assert_eq!(
        s.get_manifest(&code("physics"), Platform::MacosAarch64, &channel("stable"))
            .unwrap()
            .unwrap(),
        record(3)
    );
}

pub(crate) fn sees_other_handles_commits(a: &dyn MetaStore, b: &dyn MetaStore) {
    let before = b.change_counter().unwrap();
    let physics = org("physics", 1);
    a.create_org(&physics).unwrap();
    assert_eq!(b.get_org(&physics.code).unwrap(), Some(physics.clone()));
    let after_org = b.change_counter().unwrap();
    assert_ne!(after_org, before);

    b.add_release(&release("11.2.1", 1)).unwrap();
    assert_eq!(a.list_releases().unwrap(), vec![release("11.2.1", 1)]);
    assert_ne!(a.change_counter().unwrap(), after_org);
    let settled = b.change_counter().unwrap();
    assert_eq!(a.change_counter().unwrap(), settled);

    a.revoke_token("nobody", 2).unwrap();
    b.create_token(&token("tok", Role::Partner, Some("physics"), 3))
        .unwrap();
    assert!(a.revoke_token("tok", 4).unwrap());
    assert_eq!(
        b.list_tokens().unwrap()[0].revoked_at,
        Some(4),
        "b reads a's revocation"
    );
}

// ---------------------------------------------------------------------------------------------
// BlobStore

/// One `#[test]` per `BlobStore` behaviour; `$make` evaluates to `(guard, store)`.
macro_rules! blob_store_tests {
    ($make:expr) => {
        $crate::store::behaviour_tests::blob_store_tests!(@each $make;
            blob_round_trip,
            blob_empty,
            blob_dedupe,
            blob_uncommitted_leaves_nothing,
            blob_read_range_bounds,
            blob_missing,
        );
    };
    (@each $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let (_guard, store) = $make;
                $crate::store::behaviour_tests::$name(&store);
            }
        )*
    };
}
pub(crate) use blob_store_tests;

fn put(s: &dyn BlobStore, data: &[u8]) -> (BlobKey, u64) {
    let mut w = s.create().unwrap();
    // Pieces of uneven size, as a zip writer produces them.
    for piece in data.chunks(7777) {
        w.write_all(piece).unwrap();
    }
    w.commit().unwrap()
}

fn sample(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

pub(crate) fn blob_round_trip(s: &dyn BlobStore) {
    let data = sample(1_000_003);
    let (key, size) = put(s, &data);
    assert_eq!(key, Sha256::digest(&data));
    assert_eq!(size, data.len() as u64);
    assert_eq!(s.size(&key).unwrap(), size);
    assert_eq!(s.read(&key).unwrap(), data);
    assert!(s.verify(&key).unwrap());
    assert_eq!(s.list().unwrap(), vec![key]);
    if let Some(mut file) = s.open_file(&key).unwrap() {
        let mut read = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut read).unwrap();
        assert_eq!(read, data);
    }
}

pub(crate) fn blob_empty(s: &dyn BlobStore) {
    let (key, size) = put(s, b"");
    assert_eq!(
        key.to_hex(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(size, 0);
    assert_eq!(s.read(&key).unwrap(), b"");
    assert_eq!(s.read_range(&key, 0, 0).unwrap(), b"");
}

pub(crate) fn blob_dedupe(s: &dyn BlobStore) {
    let (a, _) = put(s, b"same content");
    let (b, _) = put(s, b"same content");
    let (c, _) = put(s, b"other content");
    assert_eq!(a, b);
    assert_ne!(a, c);
    let mut expected = vec![a, c];
    expected.sort();
    assert_eq!(s.list().unwrap(), expected);
    assert_eq!(s.read(&a).unwrap(), b"same content");
}

pub(crate) fn blob_uncommitted_leaves_nothing(s: &dyn BlobStore) {
    let mut w = s.create().unwrap();
    w.write_all(&sample(600_000)).unwrap();
    w.flush().unwrap();
    drop(w);
    assert!(s.list().unwrap().is_empty());
    assert!(matches!(
        s.read(&Sha256::digest(&sample(600_000))),
        Err(StoreError::NotFound(_))
    ));
}

pub(crate) fn blob_read_range_bounds(s: &dyn BlobStore) {
    let data = sample(10_000);
    let (key, _) = put(s, &data);
    assert_eq!(s.read_range(&key, 0, 10_000).unwrap(), data);
    assert_eq!(s.read_range(&key, 2, 3).unwrap(), &data[2..5]);
    assert_eq!(s.read_range(&key, 9_990, 10).unwrap(), &data[9_990..]);
    assert_eq!(s.read_range(&key, 10_000, 0).unwrap(), b"");
    for (offset, len) in [
        (9_999, 2),
        (10_000, 1),
        (10_001, 0),
        (0, 10_001),
        (u64::MAX, 2),
        (2, u64::MAX),
    ] {
        assert!(
            s.read_range(&key, offset, len).is_err(),
            "{len} bytes at {offset}"
        );
    }
}

pub(crate) fn blob_missing(s: &dyn BlobStore) {
    let key = Sha256::digest(b"never stored");
    assert!(matches!(s.read(&key), Err(StoreError::NotFound(_))));
    assert!(matches!(s.size(&key), Err(StoreError::NotFound(_))));
    assert!(matches!(s.verify(&key), Err(StoreError::NotFound(_))));
    assert!(matches!(
        s.read_range(&key, 0, 0),
        Err(StoreError::NotFound(_))
    ));
}
