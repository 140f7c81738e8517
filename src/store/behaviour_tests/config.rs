//! Orgs, overlays, releases, rollouts, channels, packages, tokens, audit and the change counter.

use super::*;

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

pub(crate) fn agent_binaries(s: &dyn MetaStore) {
    assert_eq!(s.list_agent_binaries().unwrap(), vec![]);
    let binary = |platform, bytes: &[u8], at| AgentBinary {
        platform,
        sha256: Sha256::digest(bytes),
        size: bytes.len() as u64,
        added_at: at,
    };
    let linux = binary(Platform::LinuxX86_64, b"agent 1", 10);
    let windows = binary(Platform::WindowsX86_64, b"agent.exe 1", 10);
    s.put_agent_binaries(&[windows.clone(), linux.clone()])
        .unwrap();
    let mut expected = vec![linux.clone(), windows.clone()];
    expected.sort_by_key(|b| b.platform);
    assert_eq!(s.list_agent_binaries().unwrap(), expected);
    // Adding a platform again replaces its executable; the others stay.
    let linux2 = binary(Platform::LinuxX86_64, b"agent 2, larger", 20);
    let before = s.change_counter().unwrap();
    s.put_agent_binaries(std::slice::from_ref(&linux2)).unwrap();
    assert!(s.change_counter().unwrap() > before);
    let listed = s.list_agent_binaries().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.contains(&linux2) && listed.contains(&windows));
    assert!(!listed.contains(&linux));
}
