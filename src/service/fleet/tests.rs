//! The fleet's memory: own device changes applied in place, other processes' changes seen after
//! a reload, and manifests kept across restarts and re-signed before they expire.

use super::*;
use crate::domain::Channel;
use crate::service::{NoProgress, PayloadSource};
use crate::updates::{ManifestState, ReleaseManifest, RESIGN_MARGIN_SECS};

fn actor() -> Actor {
    Actor {
        name: "test".into(),
        address: "local".into(),
    }
}

fn open(dir: &std::path::Path) -> Depot {
    let settings = crate::demo::settings_for(dir, "http://127.0.0.1:9");
    crate::setup::init(&settings, false).unwrap();
    Depot::open(&settings).unwrap()
}

fn org(depot: &Depot, code: &str) -> crate::org::Org {
    let code = OrgCode::parse(code).unwrap();
    let config = crate::org::OrgConfig::new("Test org").unwrap();
    depot.add_org(&actor(), &code, config).unwrap();
    depot.org(&code).unwrap()
}

fn enroll(depot: &Depot, key: &RegistrationKey, host: &str) -> Enrolled {
    let request = EnrollRequest {
        registration_key: key.to_string(),
        hostname: host.into(),
        platform: "linux-x86_64".into(),
        os_version: "Debian 12".into(),
        user: "alice".into(),
    };
    depot.enroll(&request, "10.0.0.1").unwrap()
}

fn settle() {
    std::thread::sleep(REFRESH_INTERVAL + Duration::from_millis(20));
}

#[test]
fn own_device_changes_are_applied_in_place_and_others_are_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let depot = open(dir.path());
    let physics = org(&depot, "physics");
    let before = depot.fleet_snapshot().unwrap();

    // Enrolled through this depot: in memory at once, without a reload.
    let a = enroll(&depot, &physics.registration_key, "lab-a");
    assert_eq!(
        depot
            .device_by_token(&a.device_token)
            .unwrap()
            .map(|d| d.id),
        Some(a.device_id.clone())
    );
    settle();
    assert!(Arc::ptr_eq(&before, &depot.fleet_snapshot().unwrap()));

    // Deactivated by another process: refused after the next comparison with the store.
    assert!(depot
        .meta()
        .deactivate_device(&physics.code, &a.device_id, now())
        .unwrap()
        .is_some());
    settle();
    assert_eq!(depot.device_by_token(&a.device_token).unwrap(), None);
    let reloaded = depot.fleet_snapshot().unwrap();
    assert!(!Arc::ptr_eq(&before, &reloaded));

    // Another process's enrollment between the snapshot and this process's own: the snapshot
    // cannot be patched, so it is reloaded and holds both.
    let b = enroll(&depot, &physics.registration_key, "lab-b");
    let foreign_token = "depot_dev_from_another_process";
    depot
        .meta()
        .create_device(&Device {
            id: "dev_foreign".into(),
            org: physics.code.clone(),
            hostname: "lab-f".into(),
            platform: Platform::LinuxX86_64,
            os_version: String::new(),
            user: String::new(),
            token_hash: Sha256::digest(foreign_token.as_bytes()),
            enrolled_at: now(),
            deactivated_at: None,
            last_seen_at: None,
            last_address: None,
            current_version: None,
        })
        .unwrap();
    let c = enroll(&depot, &physics.registration_key, "lab-c");
    for token in [&b.device_token, &c.device_token, &foreign_token.to_string()] {
        assert!(depot.device_by_token(token).unwrap().is_some(), "{token}");
    }
    assert!(!Arc::ptr_eq(&reloaded, &depot.fleet_snapshot().unwrap()));

    // Deactivated through this depot: refused at once.
    depot
        .deactivate_device(&actor(), &physics.code, &c.device_id)
        .unwrap();
    assert!(!matches!(
        depot.device_by_token_in_memory(&c.device_token),
        Some(Some(_))
    ));
    assert_eq!(depot.device_by_token(&c.device_token).unwrap(), None);
    assert!(matches!(
        depot.deactivate_device(&actor(), &physics.code, &c.device_id),
        Err(ServiceError::NotFound(_))
    ));
}

#[test]
fn manifests_survive_restarts_and_are_re_signed_before_they_expire() {
    let dir = tempfile::tempdir().unwrap();
    let payload = dir.path().join("client.tgz");
    std::fs::write(&payload, b"client 1.0.0").unwrap();
    let (device, physics) = {
        let depot = open(dir.path());
        let physics = org(&depot, "physics");
        let v = Version::parse("1.0.0").unwrap();
        let source = PayloadSource::from_path(Platform::LinuxX86_64, payload).unwrap();
        depot.add_release(&actor(), &v, &[source], "").unwrap();
        depot
            .publish(&actor(), &v, &Channel::stable(), 100, &NoProgress)
            .unwrap();
        (
            enroll(&depot, &physics.registration_key, "lab").device_id,
            physics,
        )
    };
    let check = |depot: &Depot| {
        let answer = depot
            .update_check(
                &device,
                Platform::LinuxX86_64,
                None,
                "10.0.0.1".parse().ok(),
            )
            .unwrap();
        let answer: serde_json::Value = serde_json::from_slice(&answer.json).unwrap();
        let (manifest, minisig) = (
            answer["manifest"].as_str().unwrap(),
            answer["manifest_minisig"].as_str().unwrap(),
        );
        depot
            .public_key()
            .verify(manifest.as_bytes(), minisig)
            .unwrap();
        serde_json::from_str::<ReleaseManifest>(manifest).unwrap()
    };
    let first = check(&open(dir.path()));
    assert_eq!(first.releases.len(), 1);
    // A restart with nothing changed serves the stored manifest.
    assert_eq!(check(&open(dir.path())), first);

    // A stored manifest due for a new signature (as if it had been issued days ago) is signed
    // again with a higher serial before a device sees it.
    let depot = open(dir.path());
    let state: ManifestState = first.state();
    let old =
        ReleaseManifest::issue(state, first.serial + 1, now() - RESIGN_MARGIN_SECS - 3600).unwrap();
    let signed = old.sign(depot.signing_key());
    assert!(depot
        .meta()
        .put_manifest(&crate::store::ManifestRecord {
            org: physics.code.clone(),
            platform: Platform::LinuxX86_64,
            channel: Channel::stable(),
            serial: old.serial,
            json: signed.json,
            minisig: signed.minisig,
        })
        .unwrap());
    let renewed = check(&depot);
    assert_eq!(renewed.serial, first.serial + 2);
    assert!(!renewed.is_due_for_resign(now()));
    assert_eq!(renewed.state(), first.state());
}

/// A depot with orgs of `sizes[i]` devices each (`org0`, `org1`, ...), all enrolled an hour
/// before release 1.0.0 is published to all of `stable`, each offered it by an update check.
fn fleet_on_release(dir: &std::path::Path, sizes: &[usize]) -> (Depot, Vec<Vec<DeviceEntry>>) {
    let depot = open(dir);
    let mut orgs = Vec::new();
    for (i, n) in sizes.iter().enumerate() {
        let o = org(&depot, &format!("org{i}"));
        let devices: Vec<DeviceEntry> = (0..*n)
            .map(|d| {
                let device = Device {
                    id: format!("dev_{i}_{d}"),
                    org: o.code.clone(),
                    hostname: format!("lab-{d}"),
                    platform: Platform::LinuxX86_64,
                    os_version: String::new(),
                    user: String::new(),
                    token_hash: Sha256::digest(format!("token-{i}-{d}").as_bytes()),
                    enrolled_at: now() - 3600,
                    deactivated_at: None,
                    last_seen_at: None,
                    last_address: None,
                    current_version: None,
                };
                depot.meta().create_device(&device).unwrap();
                DeviceEntry {
                    id: device.id,
                    org: device.org,
                    platform: device.platform,
                }
            })
            .collect();
        orgs.push(devices);
    }
    depot.invalidate_fleet();
    let payload = dir.join("client.tgz");
    std::fs::write(&payload, b"client 1.0.0").unwrap();
    let v = Version::parse("1.0.0").unwrap();
    let source = PayloadSource::from_path(Platform::LinuxX86_64, payload).unwrap();
    depot.add_release(&actor(), &v, &[source], "").unwrap();
    depot
        .publish(&actor(), &v, &Channel::stable(), 100, &NoProgress)
        .unwrap();
    for device in orgs.iter().flatten() {
        assert_eq!(offered(&depot, device).as_deref(), Some("1.0.0"));
    }
    (depot, orgs)
}

/// The version an update check offers the device, if any.
fn offered(depot: &Depot, device: &DeviceEntry) -> Option<String> {
    let answer = depot
        .update_check(&device.id, Platform::LinuxX86_64, None, None)
        .unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&answer.json).unwrap();
    answer["offer"]["version"].as_str().map(str::to_string)
}

fn audited(depot: &Depot, action: &str) -> usize {
    depot
        .meta()
        .query_audit(&crate::store::AuditFilter {
            action: Some(action.into()),
            ..Default::default()
        })
        .unwrap()
        .len()
}

fn halts(depot: &Depot) -> usize {
    audited(depot, "rollout.halt")
}

fn paused(depot: &Depot) -> bool {
    let v = Version::parse("1.0.0").unwrap();
    depot
        .meta()
        .get_rollout(&v, &Channel::stable())
        .unwrap()
        .unwrap()
        .paused
}

fn report(depot: &Depot, device: &DeviceEntry, version: &str, kind: EventKind) -> Result<()> {
    let v = Version::parse(version).unwrap();
    depot.device_event(device, Some(v), kind, "1603", "x")
}

/// Reports arriving together that each tip the rollout over the threshold hold each org once
/// and pause the channel once.
#[test]
fn concurrent_failures_halt_the_rollout_once() {
    let dir = tempfile::tempdir().unwrap();
    let (depot, orgs) = fleet_on_release(dir.path(), &[8, 8, 8]);
    std::thread::scope(|scope| {
        for devices in &orgs {
            for chunk in devices.chunks(4) {
                let depot = &depot;
                scope.spawn(move || {
                    for device in chunk {
                        report(depot, device, "1.0.0", EventKind::Failed).unwrap();
                    }
                });
            }
        }
    });
    assert!(paused(&depot));
    let reason = depot
        .meta()
        .get_rollout(&Version::parse("1.0.0").unwrap(), &Channel::stable())
        .unwrap()
        .unwrap()
        .pause_reason
        .unwrap();
    assert!(reason.starts_with("halted: "), "{reason}");
    assert!(reason.ends_with("reported failure (100%)"), "{reason}");
    assert_eq!(halts(&depot), 1);
    assert_eq!(audited(&depot, "rollout.hold"), 3, "each org held once");
}

/// Rule 6 by levels: one org's failures hold the release for that org only (the attack of
/// issue 13 through the default key is one org); the channel pauses only when failures come
/// from three orgs; a device counts once per outcome; an admin's resume lifts the holds, and
/// only new counted failures halt again.
#[test]
fn one_org_holds_for_itself_and_three_orgs_pause_the_channel() {
    let dir = tempfile::tempdir().unwrap();
    let (depot, orgs) = fleet_on_release(dir.path(), &[12, 6, 6]);
    let [a, b, c] = [&orgs[0], &orgs[1], &orgs[2]];
    for _ in 0..20 {
        report(&depot, &a[0], "1.0.0", EventKind::Failed).unwrap();
    }
    assert_eq!(
        audited(&depot, "rollout.hold"),
        0,
        "one device, however often"
    );
    for d in &a[1..5] {
        report(&depot, d, "1.0.0", EventKind::Failed).unwrap();
    }
    // Five failed devices of five reporting: org0 is held, nobody else.
    assert_eq!(audited(&depot, "rollout.hold"), 1);
    assert!(!paused(&depot));
    assert_eq!(
        offered(&depot, &a[7]),
        None,
        "org0's devices are not offered it"
    );
    assert_eq!(offered(&depot, &b[0]).as_deref(), Some("1.0.0"));
    let view = depot.rollouts().unwrap();
    assert_eq!(view[0].holds.len(), 1);
    assert_eq!(view[0].holds[0].org, "org0");
    assert!(
        view[0].holds[0].reason.contains("5 of 5"),
        "{:?}",
        view[0].holds
    );

    // The admin resumes: the hold goes; old failures, reported again, change nothing.
    depot
        .set_rollout(
            &actor(),
            &Version::parse("1.0.0").unwrap(),
            &Channel::stable(),
            None,
            Some(false),
        )
        .unwrap();
    assert!(depot.rollouts().unwrap()[0].holds.is_empty());
    assert_eq!(offered(&depot, &a[7]).as_deref(), Some("1.0.0"));
    for d in &a[0..5] {
        report(&depot, d, "1.0.0", EventKind::Failed).unwrap();
    }
    assert_eq!(audited(&depot, "rollout.hold"), 1, "no new counted failure");

    // New failures from three orgs (4 + 3 + 3 of 10 reporting since the resume) pause the
    // channel; org0's four are below its own hold threshold.
    for d in &a[5..9] {
        report(&depot, d, "1.0.0", EventKind::Failed).unwrap();
    }
    for d in b[..3].iter().chain(&c[..2]) {
        report(&depot, d, "1.0.0", EventKind::Failed).unwrap();
    }
    assert!(!paused(&depot), "nine devices");
    report(&depot, &c[2], "1.0.0", EventKind::Failed).unwrap();
    assert!(paused(&depot));
    assert_eq!(halts(&depot), 1);
    assert_eq!(audited(&depot, "rollout.hold"), 1);
    assert_eq!(offered(&depot, &b[5]), None, "paused for everyone");
}

/// A report on a release the device was never offered is refused and changes nothing; a device
/// that enrolled after the rollout began is recorded but not counted.
#[test]
fn reports_count_only_for_offered_releases_from_devices_enrolled_before() {
    let dir = tempfile::tempdir().unwrap();
    let (depot, orgs) = fleet_on_release(dir.path(), &[1]);
    let counts = |depot: &Depot| {
        depot
            .meta()
            .rollout_counts(&Version::parse("1.0.0").unwrap(), &Channel::stable())
            .unwrap()
    };
    depot.flush_checkins().unwrap();
    let before = counts(&depot);
    let refused = report(&depot, &orgs[0][0], "99.0.0", EventKind::Failed).unwrap_err();
    assert!(matches!(refused, ServiceError::NotOffered(_)), "{refused}");

    // Enrolled now, after the rollout began: offered, reported, not counted.
    let org0 = depot.org(&OrgCode::parse("org0").unwrap()).unwrap();
    let late: Vec<DeviceEntry> = (0..10)
        .map(|i| {
            let token = enroll(&depot, &org0.registration_key, &format!("late-{i}")).device_token;
            depot.device_by_token(&token).unwrap().unwrap()
        })
        .collect();
    for device in &late {
        let never = report(&depot, device, "1.0.0", EventKind::Failed).unwrap_err();
        assert!(
            matches!(never, ServiceError::NotOffered(_)),
            "not offered yet"
        );
    }
    assert_eq!(counts(&depot), before, "refused reports change nothing");
    for device in &late {
        assert_eq!(offered(&depot, device).as_deref(), Some("1.0.0"));
        report(&depot, device, "1.0.0", EventKind::Failed).unwrap();
    }
    assert_eq!(counts(&depot).failed, 10, "recorded");
    assert_eq!(audited(&depot, "rollout.hold"), 0, "not counted");
    assert!(!paused(&depot));
}

/// A pause reaches the very next update check on the server that took it, also on the path
/// that answers from memory.
#[test]
fn a_pause_holds_for_the_next_check() {
    let dir = tempfile::tempdir().unwrap();
    let (depot, orgs) = fleet_on_release(dir.path(), &[1]);
    let device = &orgs[0][0];
    let v = Version::parse("1.0.0").unwrap();
    for round in 0..20 {
        // Warm: the snapshot is fresh, so the in-memory path could answer with it.
        assert_eq!(offered(&depot, device).as_deref(), Some("1.0.0"), "{round}");
        depot
            .set_rollout(&actor(), &v, &Channel::stable(), None, Some(true))
            .unwrap();
        assert!(
            depot
                .fresh_snapshot()
                .is_none_or(|snap| snap.rollouts[0].paused),
            "a snapshot from before the pause is not used"
        );
        assert_eq!(offered(&depot, device), None, "{round}");
        depot
            .set_rollout(&actor(), &v, &Channel::stable(), Some(100), Some(false))
            .unwrap();
    }
}

/// Serials grow across an org's channels: after a channel change (and back) the manifest served
/// has a serial above every one served before, so an agent with one last serial follows.
#[test]
fn manifest_serials_grow_across_channel_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (depot, orgs) = fleet_on_release(dir.path(), &[1]);
    let device = &orgs[0][0];
    let serial = |depot: &Depot| {
        let answer = depot
            .update_check(&device.id, Platform::LinuxX86_64, None, None)
            .unwrap();
        let answer: serde_json::Value = serde_json::from_slice(&answer.json).unwrap();
        let manifest: ReleaseManifest =
            serde_json::from_str(answer["manifest"].as_str().unwrap()).unwrap();
        (manifest.channel.to_string(), manifest.serial)
    };
    let code = OrgCode::parse("org0").unwrap();
    let switch = |channel: &str| {
        let mut config = depot.org(&code).unwrap().config;
        config.channel = Channel::parse(channel).unwrap();
        depot.update_org(&actor(), &code, config).unwrap();
    };
    let mut last = serial(&depot);
    for channel in ["beta", "stable", "beta", "stable"] {
        switch(channel);
        let next = serial(&depot);
        assert_eq!(next.0, channel);
        assert!(next.1 > last.1, "{next:?} after {last:?}");
        last = next;
    }
}

#[test]
fn enrollment_secrets_are_redacted_in_debug_output() {
    let key = RegistrationKey::generate();
    let request = EnrollRequest {
        registration_key: key.to_string(),
        hostname: "lab".into(),
        platform: "linux-x86_64".into(),
        os_version: String::new(),
        user: "alice".into(),
    };
    let shown = format!("{request:?}");
    assert!(!shown.contains(key.as_str()), "{shown}");
    assert!(
        shown.contains(&RegistrationKey::redact(key.as_str())),
        "{shown}"
    );
    assert!(shown.contains("alice"), "{shown}");

    let token = format!("{DEVICE_TOKEN_PREFIX}{}", "0123456789abcdef".repeat(2));
    let enrolled = Enrolled {
        device_id: "dev_1".into(),
        device_token: token.clone(),
        org: "physics".into(),
    };
    let shown = format!("{enrolled:?}");
    assert!(!shown.contains(&token), "{shown}");
    assert!(!shown.contains("0123456789"), "{shown}");
    assert!(shown.contains("depot_dev_0123****"), "{shown}");
    assert!(shown.contains("dev_1"), "{shown}");
    // Text that is not a device token shows nothing of itself.
    let odd = Enrolled {
        device_token: "hunter2-secret".into(),
        ..enrolled
    };
    assert!(!format!("{odd:?}").contains("hunter2"));
}
