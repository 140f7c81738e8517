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
        depot
            .public_key()
            .verify(answer.manifest.as_bytes(), &answer.manifest_minisig)
            .unwrap();
        serde_json::from_str::<ReleaseManifest>(&answer.manifest).unwrap()
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
