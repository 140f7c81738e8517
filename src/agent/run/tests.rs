//! `run_once` against a scripted server: a real signed manifest, real packages, a real download
//! over TCP; the server's answers are what each test makes them.

use super::*;
use crate::agent::test_server::{Route, TestServer};
use crate::agent::unpack::tests::zip_bytes;
use crate::domain::{Channel, OrgCode};
use crate::signing::SigningKey;
use crate::updates::{ManifestRelease, ManifestState};
use serde_json::{json, Value};

const PLATFORM: &str = "linux-x86_64";

fn v(s: &str) -> Version {
    Version::parse(s).unwrap()
}

struct Package {
    version: Version,
    bytes: Vec<u8>,
    yanked: bool,
}

struct Harness {
    server: TestServer,
    key: SigningKey,
    _tmp: tempfile::TempDir,
    dir: StateDir,
    packages: Vec<Package>,
    serial: u64,
    opts: RunOptions,
}

impl Harness {
    /// An enrolled device of org `physics` with `current` installed (its directory present).
    fn new(current: Option<&str>) -> Self {
        let server = TestServer::start();
        server.json("POST", "/v1/devices/events", 201, &json!({}));
        let key = SigningKey::generate();
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path().join("agent"));
        dir.create().unwrap();
        if let Some(current) = current {
            let path = dir.version_dir(&v(current));
            fs::create_dir(&path).unwrap();
            fs::write(path.join("marker"), current).unwrap();
            switch_current(&dir, Some(&v(current))).unwrap();
        }
        dir.save(&AgentState {
            server_url: server.url.clone(),
            org: OrgCode::parse("physics").unwrap(),
            device_id: "dev-1".into(),
            device_token: "device-token".into(),
            public_key: key.public_key(),
            platform: Platform::parse(PLATFORM).unwrap(),
            enrolled_at: 1_700_000_000,
            last_serial: None,
            last_check: None,
            current_version: current.map(v),
            previous_version: None,
            last_error: None,
        })
        .unwrap();
        Self {
            server,
            key,
            _tmp: tmp,
            dir,
            packages: Vec::new(),
            serial: 10,
            opts: RunOptions::default(),
        }
    }

    /// Publishes a package of `version` on the server (download and `.minisig` routes).
    fn publish(&mut self, version: &str) {
        let bytes = zip_bytes(&[
            ("client.tgz", format!("client {version}").as_bytes(), 0o644),
            ("install.sh", b"#!/bin/sh\nexit 0\n", 0o755),
            ("deploy.properties", b"DEPOT_ORG=physics\n", 0o644),
        ]);
        let file = format!("physics-{version}-{PLATFORM}.zip");
        self.server.route(
            "GET",
            &format!("/v1/download/physics/{version}/{file}"),
            Route::File {
                bytes: bytes.clone(),
                etag: format!("\"{}\"", Sha256::digest(&bytes)),
            },
        );
        self.server.route(
            "GET",
            &format!("/v1/download/physics/{version}/{file}.minisig"),
            Route::Fixed {
                status: 200,
                content_type: "text/plain",
                body: self.key.sign(&bytes, &format!("file:{file}")).into_bytes(),
            },
        );
        self.packages.push(Package {
            version: v(version),
            bytes,
            yanked: false,
        });
    }

    fn yank(&mut self, version: &str) {
        self.packages
            .iter_mut()
            .filter(|p| p.version == v(version))
            .for_each(|p| p.yanked = true);
    }

    fn manifest(&self, org: &str, serial: u64, now: i64) -> (String, String) {
        let state = ManifestState {
            org: OrgCode::parse(org).unwrap(),
            platform: Platform::parse(PLATFORM).unwrap(),
            channel: Channel::parse("stable").unwrap(),
            min_version: None,
            pinned_version: None,
            releases: self
                .packages
                .iter()
                .map(|p| ManifestRelease {
                    version: p.version.clone(),
                    sha256: Sha256::digest(&p.bytes),
                    size: p.bytes.len() as u64,
                    yanked: p.yanked,
                })
                .collect(),
        };
        let signed = ReleaseManifest::issue(state, serial, now)
            .unwrap()
            .sign(&self.key);
        (signed.json, signed.minisig)
    }

    fn offer(&self, version: &str, rollback: bool) -> Value {
        let p = self
            .packages
            .iter()
            .find(|p| p.version == v(version))
            .unwrap();
        let file = format!("physics-{version}-{PLATFORM}.zip");
        json!({
            "version": version, "mandatory": false, "rollback": rollback, "notes": "",
            "package": {
                "url": format!("/v1/download/physics/{version}/{file}"),
                "sha256": Sha256::digest(&p.bytes).to_hex(),
                "size": p.bytes.len(),
                "minisig": format!("/v1/download/physics/{version}/{file}.minisig"),
            }
        })
    }

    /// The server's next answer: `offer` under a fresh manifest of the device's org.
    fn answer(&mut self, offer: Option<Value>) {
        self.serial += 1;
        let (manifest, minisig) = self.manifest("physics", self.serial, unix_now());
        self.answer_with(offer, manifest, minisig);
    }

    fn answer_with(&self, offer: Option<Value>, manifest: String, minisig: String) {
        self.server.json(
            "POST",
            "/v1/update-check",
            200,
            &json!({"offer": offer, "manifest": manifest, "manifest_minisig": minisig}),
        );
    }

    fn run(&self) -> Result<RunOutcome> {
        run_once(self.dir.root(), &self.opts)
    }

    fn state(&self) -> AgentState {
        self.dir.load().unwrap()
    }

    fn events(&self) -> Vec<(String, String, String)> {
        self.server
            .requests_to("/v1/devices/events")
            .iter()
            .map(|r| {
                assert_eq!(r.method, "POST");
                assert_eq!(r.headers["authorization"], "Bearer device-token");
                let e: Value = serde_json::from_slice(&r.body).unwrap();
                (
                    e["kind"].as_str().unwrap().to_string(),
                    e["version"].as_str().unwrap_or("").to_string(),
                    e["message"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    fn listing(&self, path: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    fn assert_untouched(&self, current: &str) {
        assert_eq!(current_target(&self.dir), Some(v(current)));
        assert_eq!(self.state().current_version, Some(v(current)));
        assert_eq!(self.listing(&self.dir.versions()), [current]);
        assert!(self.listing(&self.dir.downloads()).is_empty());
    }
}

fn failed_reason(outcome: RunOutcome) -> String {
    match outcome {
        RunOutcome::Failed { reason, .. } => reason,
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn installs_an_offer_keeps_the_previous_version_and_prunes_older_ones() {
    let mut h = Harness::new(Some("1.0.0"));
    h.publish("1.0.0");
    h.publish("1.1.0");
    h.answer(Some(h.offer("1.1.0", false)));
    assert_eq!(
        h.run().unwrap(),
        RunOutcome::Installed {
            version: v("1.1.0"),
            previous: Some(v("1.0.0"))
        }
    );
    let check: Value =
        serde_json::from_slice(&h.server.requests_to("/v1/update-check")[0].body).unwrap();
    assert_eq!(
        check,
        json!({"platform": PLATFORM, "current_version": "1.0.0"})
    );
    assert_eq!(current_target(&h.dir), Some(v("1.1.0")));
    let unpacked = h.dir.current_link().join("client.tgz");
    assert_eq!(fs::read(unpacked).unwrap(), b"client 1.1.0");
    let state = h.state();
    assert_eq!(state.current_version, Some(v("1.1.0")));
    assert_eq!(state.previous_version, Some(v("1.0.0")));
    assert_eq!(state.last_serial, Some(11));
    assert!(state.last_check.is_some() && state.last_error.is_none());
    assert_eq!(h.listing(&h.dir.versions()), ["1.0.0", "1.1.0"]);
    assert!(h.listing(&h.dir.downloads()).is_empty());
    let kinds: Vec<_> = h.events().into_iter().map(|(k, ver, _)| (k, ver)).collect();
    assert_eq!(
        kinds,
        [
            ("downloaded".to_string(), "1.1.0".to_string()),
            ("installed".to_string(), "1.1.0".to_string())
        ]
    );

    h.publish("1.2.0");
    h.answer(Some(h.offer("1.2.0", false)));
    h.run().unwrap();
    assert_eq!(h.listing(&h.dir.versions()), ["1.1.0", "1.2.0"]);
    let status = crate::agent::status(h.dir.root()).unwrap();
    assert_eq!(status.current_version, Some(v("1.2.0")));
    assert_eq!(status.current_link, Some(v("1.2.0")));
    assert_eq!(status.previous_version, Some(v("1.1.0")));
    assert!(!serde_json::to_string(&status)
        .unwrap()
        .contains("device-token"));
}

#[test]
fn no_offer_records_the_serial_and_a_replayed_manifest_is_refused() {
    let mut h = Harness::new(Some("1.0.0"));
    h.publish("1.0.0");
    h.answer(None);
    assert_eq!(
        h.run().unwrap(),
        RunOutcome::UpToDate {
            version: Some(v("1.0.0"))
        }
    );
    assert_eq!(h.state().last_serial, Some(11));

    let (old, old_sig) = h.manifest("physics", 5, unix_now());
    h.answer_with(None, old, old_sig);
    let reason = failed_reason(h.run().unwrap());
    assert!(reason.contains("replayed"), "{reason}");
    assert_eq!(h.state().last_serial, Some(11));
    assert_eq!(h.state().last_error.as_deref(), Some(reason.as_str()));
    assert_eq!(h.events()[0].0, "failed");
    h.assert_untouched("1.0.0");
}

#[test]
fn a_flipped_byte_is_refused_deleted_and_reported() {
    let mut h = Harness::new(Some("1.0.0"));
    h.publish("1.0.0");
    h.publish("1.1.0");
    h.server.behaviour.lock().unwrap().flip_byte_at = Some(40);
    h.answer(Some(h.offer("1.1.0", false)));
    let reason = failed_reason(h.run().unwrap());
    assert!(reason.contains("sha256 mismatch"), "{reason}");
    h.assert_untouched("1.0.0");
    let events = h.events();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].0.as_str(), events[0].1.as_str()),
        ("failed", "1.1.0")
    );
    assert!(events[0].2.contains("sha256 mismatch"));
}

#[test]
fn manifests_of_another_org_expired_or_forged_are_refused() {
    let mut h = Harness::new(Some("1.0.0"));
    h.publish("1.0.0");
    h.publish("1.1.0");
    let offer = h.offer("1.1.0", false);

    let (other, other_sig) = h.manifest("chemistry", 50, unix_now());
    h.answer_with(Some(offer.clone()), other, other_sig);
    assert!(failed_reason(h.run().unwrap()).contains("org chemistry"));

    let (stale, stale_sig) = h.manifest("physics", 50, unix_now() - 8 * 24 * 3600);
    h.answer_with(Some(offer.clone()), stale, stale_sig);
    let reason = failed_reason(h.run().unwrap());
    assert!(
        reason.contains("expired") && reason.contains("frozen"),
        "{reason}"
    );

    let (good, _) = h.manifest("physics", 50, unix_now());
    let forged = SigningKey::generate().sign(good.as_bytes(), "forged");
    h.answer_with(Some(offer.clone()), good.clone(), forged);
    assert!(failed_reason(h.run().unwrap()).contains("signature"));

    // An offer whose digest the manifest does not confirm.
    let mut tampered = offer;
    tampered["package"]["sha256"] = json!("00".repeat(32));
    let (good, good_sig) = h.manifest("physics", 50, unix_now());
    h.answer_with(Some(tampered), good, good_sig);
    assert!(failed_reason(h.run().unwrap()).contains("sha256"));

    assert_eq!(h.events().len(), 4);
    assert!(h.events().iter().all(|(kind, _, _)| kind == "failed"));
    assert_eq!(h.state().last_serial, None);
    h.assert_untouched("1.0.0");
    assert!(h
        .server
        .requests_to("/v1/download/physics/1.1.0/physics-1.1.0-linux-x86_64.zip")
        .is_empty());
}

#[test]
fn a_downgrade_needs_a_signed_rollback_from_a_yanked_version() {
    let mut h = Harness::new(Some("2.0.0"));
    h.publish("1.0.0");
    h.publish("2.0.0");
    h.answer(Some(h.offer("1.0.0", false)));
    assert!(failed_reason(h.run().unwrap()).contains("lower than the installed"));
    h.answer(Some(h.offer("1.0.0", true)));
    assert!(failed_reason(h.run().unwrap()).contains("not listed as yanked"));
    h.assert_untouched("2.0.0");

    h.yank("2.0.0");
    h.answer(Some(h.offer("1.0.0", true)));
    assert_eq!(
        h.run().unwrap(),
        RunOutcome::Installed {
            version: v("1.0.0"),
            previous: Some(v("2.0.0"))
        }
    );
    assert_eq!(current_target(&h.dir), Some(v("1.0.0")));
}

#[test]
fn the_guard_refuses_a_downgrade_even_past_the_manifest_check() {
    let mut h = Harness::new(None);
    h.publish("1.0.0");
    h.publish("2.0.0");
    let manifest = ReleaseManifest::issue(h.manifest_state(), 1, unix_now()).unwrap();
    let offer: Offer = serde_json::from_value(h.offer("1.0.0", false)).unwrap();
    assert!(downgrade_guard(Some(&v("2.0.0")), &offer, &manifest).is_err());
    let rollback: Offer = serde_json::from_value(h.offer("1.0.0", true)).unwrap();
    assert!(downgrade_guard(Some(&v("2.0.0")), &rollback, &manifest).is_err());
    assert!(downgrade_guard(None, &offer, &manifest).is_ok());
    h.yank("2.0.0");
    let yanked = ReleaseManifest::issue(h.manifest_state(), 2, unix_now()).unwrap();
    assert!(downgrade_guard(Some(&v("2.0.0")), &rollback, &yanked).is_ok());
}

impl Harness {
    fn manifest_state(&self) -> ManifestState {
        let (json, _) = self.manifest("physics", 1, unix_now());
        serde_json::from_str::<ReleaseManifest>(&json)
            .unwrap()
            .state()
    }
}

#[cfg(unix)]
#[test]
fn a_failing_install_command_switches_current_back() {
    let mut h = Harness::new(Some("1.0.0"));
    h.publish("1.0.0");
    h.publish("1.1.0");
    h.opts.install_command = Some("test \"$(cat client.tgz)\" = 'client 1.0.0' || exit 7".into());
    h.answer(Some(h.offer("1.1.0", false)));
    let reason = failed_reason(h.run().unwrap());
    assert!(reason.contains("exit status: 7"), "{reason}");
    h.assert_untouched("1.0.0");
    let kinds: Vec<_> = h.events().into_iter().map(|(k, _, _)| k).collect();
    assert_eq!(kinds, ["downloaded", "failed"]);

    // The same command succeeds for the right version, run in its directory.
    h.opts.install_command = Some("test \"$(cat client.tgz)\" = \"client $DEPOT_VERSION\"".into());
    h.answer(Some(h.offer("1.1.0", false)));
    assert!(matches!(h.run().unwrap(), RunOutcome::Installed { .. }));
    assert_eq!(current_target(&h.dir), Some(v("1.1.0")));
}

#[test]
fn an_interrupted_download_resumes_on_the_next_run() {
    let mut h = Harness::new(Some("1.0.0"));
    h.publish("1.0.0");
    h.publish("1.1.0");
    h.server.behaviour.lock().unwrap().cut_next_file_after = Some(100);
    h.answer(Some(h.offer("1.1.0", false)));
    let err = h.run().unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(
        h.events().is_empty(),
        "a broken connection is not a failed release"
    );
    let part = h
        .dir
        .downloads()
        .join("physics-1.1.0-linux-x86_64.zip.part");
    assert_eq!(fs::metadata(&part).unwrap().len(), 100);
    assert!(h.state().last_error.is_some());

    h.answer(Some(h.offer("1.1.0", false)));
    assert!(matches!(h.run().unwrap(), RunOutcome::Installed { .. }));
    let downloads = h
        .server
        .requests_to("/v1/download/physics/1.1.0/physics-1.1.0-linux-x86_64.zip");
    assert_eq!(downloads.len(), 2);
    assert_eq!(downloads[1].headers["range"], "bytes=100-");
    assert!(h.state().last_error.is_none());
}

#[test]
fn a_deactivated_device_stops_with_a_clear_error() {
    let h = Harness::new(Some("1.0.0"));
    h.server.json(
        "POST",
        "/v1/update-check",
        401,
        &json!({"error": {"code": "unauthorized", "message": "device deactivated"}}),
    );
    let err = h.run().unwrap_err();
    assert!(err.stops_the_agent());
    assert!(err.to_string().contains("device deactivated"), "{err}");
    assert!(h.state().last_error.unwrap().contains("deactivated"));
}

#[test]
fn malformed_or_huge_answers_are_refused_and_reported() {
    let h = Harness::new(Some("1.0.0"));
    for body in [
        b"{not json".to_vec(),
        br#"{"offer": {"version": "x"}, "manifest": "", "manifest_minisig": ""}"#.to_vec(),
        vec![b' '; 5 * 1024 * 1024],
    ] {
        h.server.route(
            "POST",
            "/v1/update-check",
            Route::Fixed {
                status: 200,
                content_type: "application/json",
                body,
            },
        );
        let reason = failed_reason(h.run().unwrap());
        assert!(
            reason.contains("malformed") || reason.contains("larger than"),
            "{reason}"
        );
    }
    assert_eq!(h.events().len(), 3);
    h.assert_untouched("1.0.0");
}

#[test]
fn a_switch_interrupted_by_a_crash_is_undone() {
    let mut h = Harness::new(Some("1.0.0"));
    h.publish("1.0.0");
    // A crash after the switch to 2.0.0 and before the state file was written.
    fs::create_dir(h.dir.version_dir(&v("2.0.0"))).unwrap();
    switch_current(&h.dir, Some(&v("2.0.0"))).unwrap();
    h.answer(None);
    h.run().unwrap();
    assert_eq!(current_target(&h.dir), Some(v("1.0.0")));
}

#[test]
fn a_second_agent_on_the_same_directory_is_turned_away() {
    let h = Harness::new(None);
    let _held = lock(&h.dir).unwrap();
    let err = h.run().unwrap_err();
    assert!(matches!(err, AgentError::Locked { .. }), "{err}");
    assert!(err.is_retryable());
}

#[test]
fn the_first_install_on_an_unknown_version() {
    let mut h = Harness::new(None);
    h.publish("1.0.0");
    // The minisig given inline rather than as a URL.
    let mut offer = h.offer("1.0.0", false);
    offer["package"]["minisig"] = json!(h.key.sign(&h.packages[0].bytes, "inline"));
    h.answer(Some(offer));
    assert_eq!(
        h.run().unwrap(),
        RunOutcome::Installed {
            version: v("1.0.0"),
            previous: None
        }
    );
    let check: Value =
        serde_json::from_slice(&h.server.requests_to("/v1/update-check")[0].body).unwrap();
    assert_eq!(check["current_version"], Value::Null);
}
