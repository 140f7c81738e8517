//! Devices, check-ins, reports and rollout counts, manifests, and two handles on one store.

use super::*;

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

/// A manifest of another channel of the same org and platform must take a serial above every
/// stored one: serials grow across channels.
pub(crate) fn manifest_serials_grow_across_channels(s: &dyn MetaStore) {
    let record = |ch: &str, serial| ManifestRecord {
        org: code("physics"),
        platform: Platform::LinuxX86_64,
        channel: channel(ch),
        serial,
        json: format!("{{\"serial\":{serial}}}"),
        minisig: "sig".into(),
    };
    assert_eq!(
        s.latest_manifest_serial(&code("physics"), Platform::LinuxX86_64)
            .unwrap(),
        0
    );
    assert!(s.put_manifest(&record("stable", 4)).unwrap());
    assert!(!s.put_manifest(&record("beta", 4)).unwrap(), "same serial");
    assert!(!s.put_manifest(&record("beta", 2)).unwrap());
    assert!(s.put_manifest(&record("beta", 5)).unwrap());
    assert!(!s.put_manifest(&record("stable", 5)).unwrap());
    assert!(s.put_manifest(&record("stable", 6)).unwrap());
    assert_eq!(
        s.latest_manifest_serial(&code("physics"), Platform::LinuxX86_64)
            .unwrap(),
        6
    );
    // Another platform has serials of its own.
    assert_eq!(
        s.latest_manifest_serial(&code("physics"), Platform::MacosAarch64)
            .unwrap(),
        0
    );
}

fn rollout_of(version: &str, published_at: i64) -> Rollout {
    Rollout {
        version: ver(version),
        channel: channel("stable"),
        percent: 100,
        paused: false,
        pause_reason: None,
        published_at,
        updated_at: published_at,
    }
}

fn offer(s: &dyn MetaStore, device_id: &str, version: &str) {
    s.record_checkins(&[Checkin {
        device_id: device_id.into(),
        at: 150,
        address: "192.0.2.1".into(),
        version: None,
        platform: Platform::LinuxX86_64,
        offered: Some((ver(version), channel("stable"))),
    }])
    .unwrap();
}

fn report(s: &dyn MetaStore, device_id: &str, org: &str, kind: EventKind) -> ReportOutcome {
    s.record_report(&DeviceEvent {
        device_id: device_id.into(),
        org: code(org),
        version: Some(ver("2.0.0")),
        channel: channel("stable"),
        kind,
        message: String::new(),
        at: 200,
    })
    .unwrap()
}

/// Rule 6's counting: a report on a release never offered is refused and writes nothing; a
/// device enrolled after the rollout began is recorded, not counted; a device counts once per
/// outcome, and the tallies of every org come with each new counted failure.
pub(crate) fn reports_count_once_from_offered_devices_enrolled_before(s: &dyn MetaStore) {
    s.create_org(&org("physics", 10)).unwrap();
    s.create_org(&org("chem", 10)).unwrap();
    s.add_release(&release("2.0.0", 50)).unwrap();
    s.put_rollout(&rollout_of("2.0.0", 100)).unwrap();
    s.create_device(&device("dev_old", "physics", "t1", 90))
        .unwrap();
    s.create_device(&device("dev_chem", "chem", "t2", 90))
        .unwrap();
    s.create_device(&device("dev_new", "physics", "t3", 100))
        .unwrap();

    assert_eq!(
        report(s, "dev_old", "physics", EventKind::Failed),
        ReportOutcome::NotOffered
    );
    assert_eq!(
        s.rollout_counts(&ver("2.0.0"), &channel("stable")).unwrap(),
        RolloutCounts::default(),
        "a refused report writes nothing"
    );
    for id in ["dev_old", "dev_chem", "dev_new"] {
        offer(s, id, "2.0.0");
    }
    let ReportOutcome::Recorded {
        new_counted_failure,
        ..
    } = report(s, "dev_new", "physics", EventKind::Failed)
    else {
        panic!("offered");
    };
    assert!(!new_counted_failure, "enrolled when the rollout began");
    let installed = report(s, "dev_chem", "chem", EventKind::Installed);
    assert!(matches!(
        installed,
        ReportOutcome::Recorded {
            new_counted_failure: false,
            ..
        }
    ));
    let ReportOutcome::Recorded {
        counts,
        new_counted_failure,
        tallies,
    } = report(s, "dev_old", "physics", EventKind::Failed)
    else {
        panic!("offered");
    };
    assert!(new_counted_failure);
    assert_eq!(counts.unwrap().failed, 2, "both failures are recorded");
    assert_eq!(
        tallies,
        [
            CountedTally {
                org: code("chem"),
                installed: 1,
                failed: 0
            },
            CountedTally {
                org: code("physics"),
                installed: 0,
                failed: 1
            },
        ]
    );
    // Once per device and outcome.
    assert!(matches!(
        report(s, "dev_old", "physics", EventKind::Failed),
        ReportOutcome::Recorded {
            new_counted_failure: false,
            ..
        }
    ));
}

/// Holds are kept once; a resume lifts them and starts the count anew.
pub(crate) fn holds_and_resume(s: &dyn MetaStore) {
    s.create_org(&org("physics", 10)).unwrap();
    s.add_release(&release("2.0.0", 50)).unwrap();
    s.put_rollout(&rollout_of("2.0.0", 100)).unwrap();
    for id in ["dev_a", "dev_b"] {
        s.create_device(&device(id, "physics", id, 90)).unwrap();
        offer(s, id, "2.0.0");
    }
    assert!(matches!(
        report(s, "dev_a", "physics", EventKind::Failed),
        ReportOutcome::Recorded {
            new_counted_failure: true,
            ..
        }
    ));
    let hold = RolloutHold {
        version: ver("2.0.0"),
        channel: channel("stable"),
        org: code("physics"),
        reason: "held".into(),
        at: 300,
    };
    let before = s.change_counter().unwrap();
    assert!(s.put_rollout_hold(&hold).unwrap());
    assert!(
        s.change_counter().unwrap() > before,
        "holds are cached state"
    );
    assert!(!s.put_rollout_hold(&hold).unwrap());
    assert_eq!(s.list_rollout_holds().unwrap(), std::slice::from_ref(&hold));
    assert_eq!(
        s.resume_rollout_halt(&ver("2.0.0"), &channel("stable"))
            .unwrap(),
        [hold]
    );
    assert!(s.list_rollout_holds().unwrap().is_empty());
    // Counted before the resume: no longer in the tallies.
    let ReportOutcome::Recorded { tallies, .. } = report(s, "dev_b", "physics", EventKind::Failed)
    else {
        panic!("offered");
    };
    assert_eq!(
        tallies,
        [CountedTally {
            org: code("physics"),
            installed: 0,
            failed: 1
        }]
    );
}

/// `a` and `b` are two handles on one store (two processes, two replicas): each sees the other's
/// commits, and the change counter of each moves when the other writes.
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
