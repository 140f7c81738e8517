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

/// A depot with release 1.0.0 published to all of `stable`, and `n` enrolled devices.
fn fleet_on_release(dir: &std::path::Path, n: usize) -> (Depot, Vec<DeviceEntry>) {
    let depot = open(dir);
    let physics = org(&depot, "physics");
    let payload = dir.join("client.tgz");
    std::fs::write(&payload, b"client 1.0.0").unwrap();
    let v = Version::parse("1.0.0").unwrap();
    let source = PayloadSource::from_path(Platform::LinuxX86_64, payload).unwrap();
    depot.add_release(&actor(), &v, &[source], "").unwrap();
    depot
        .publish(&actor(), &v, &Channel::stable(), 100, &NoProgress)
        .unwrap();
    let devices = (0..n)
        .map(|i| {
            let token = enroll(&depot, &physics.registration_key, &format!("lab-{i}")).device_token;
            depot.device_by_token(&token).unwrap().unwrap()
        })
        .collect();
    (depot, devices)
}

fn halts(depot: &Depot) -> usize {
    depot
        .meta()
        .query_audit(&crate::store::AuditFilter {
            action: Some("rollout.halt".into()),
            ..Default::default()
        })
        .unwrap()
        .len()
}

/// Reports arriving together that each tip the rollout over the threshold halt it once.
#[test]
fn concurrent_failures_halt_the_rollout_once() {
    let dir = tempfile::tempdir().unwrap();
    let (depot, devices) = fleet_on_release(dir.path(), 24);
    let v = Version::parse("1.0.0").unwrap();
    std::thread::scope(|scope| {
        for chunk in devices.chunks(6) {
            let (depot, v) = (&depot, &v);
            scope.spawn(move || {
                for device in chunk {
                    depot
                        .device_event(device, Some(v.clone()), EventKind::Failed, "1603", "x")
                        .unwrap();
                }
            });
        }
    });
    let rollout = depot
        .meta()
        .get_rollout(&v, &Channel::stable())
        .unwrap()
        .unwrap();
    assert!(rollout.paused);
    // Which of the tipping reports takes the lock first is a race: any of their counts.
    let reason = rollout.pause_reason.unwrap();
    assert!(reason.starts_with("halted: "), "{reason}");
    assert!(
        reason.ends_with("devices reported failure (100%)"),
        "{reason}"
    );
    assert_eq!(halts(&depot), 1);
}

/// The halt counts devices: one device failing again and again does not halt the rollout, and
/// a device that failed and then installed counts as installed.
#[test]
fn the_halt_counts_each_device_once_by_its_latest_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let (depot, devices) = fleet_on_release(dir.path(), 12);
    let v = Version::parse("1.0.0").unwrap();
    let report = |device: &DeviceEntry, kind| {
        depot
            .device_event(device, Some(v.clone()), kind, "", "x")
            .unwrap()
    };
    for _ in 0..20 {
        report(&devices[0], EventKind::Failed);
    }
    // Nine installs and a failure: 1 of 10 failed. The failed device then installs, and two
    // others fail: 2 of 12 (16%), under the threshold.
    for d in &devices[1..10] {
        report(d, EventKind::Installed);
    }
    report(&devices[0], EventKind::Installed);
    report(&devices[10], EventKind::Failed);
    report(&devices[11], EventKind::Failed);
    let paused = |depot: &Depot| {
        depot
            .meta()
            .get_rollout(&v, &Channel::stable())
            .unwrap()
            .unwrap()
            .paused
    };
    assert!(!paused(&depot));
    assert_eq!(halts(&depot), 0);
    assert_eq!(
        depot.meta().rollout_counts(&v, &Channel::stable()).unwrap(),
        RolloutCounts {
            offered: 0,
            downloaded: 0,
            installed: 10,
            failed: 2
        }
    );
    // An installed device reports a failure: its latest outcome turns, 3 of 12 (25%).
    report(&devices[1], EventKind::Failed);
    assert!(paused(&depot));
    assert_eq!(halts(&depot), 1);
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
