//! The device endpoints over a real server: enrollment, the update decision as devices see it,
//! signed manifests, reports and the automatic halt, deactivation, usage, and bad input.

use depot::domain::{Channel, OrgCode, Platform, Version};
use depot::server::{router, serve, AppState, ServerOptions};
use depot::service::{Actor, Depot, NoProgress, PayloadSource};
use depot::updates::{bucket, ReleaseManifest};
use reqwest::blocking::Client;
use serde_json::{json, Value};
use std::sync::Arc;

struct App {
    base: String,
    depot: Arc<Depot>,
    admin: String,
    _dir: tempfile::TempDir,
    _runtime: tokio::runtime::Runtime,
}

fn actor() -> Actor {
    Actor {
        name: "test".into(),
        address: "local".into(),
    }
}

fn start() -> App {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let settings = depot::demo::settings_for(dir.path(), &base);
    depot::setup::init(&settings, false).unwrap();
    let depot = Arc::new(Depot::open(&settings).unwrap());
    let admin = depot
        .create_token(&actor(), depot::store::Role::Admin, None, None)
        .unwrap()
        .secret;
    let options = ServerOptions::default();
    let state = AppState::with_depot(Arc::clone(&depot), options.clone());
    runtime.spawn(
        async move { serve(listener, router(state), &options, std::future::pending()).await },
    );
    App {
        base,
        depot,
        admin,
        _dir: dir,
        _runtime: runtime,
    }
}

impl App {
    fn org(&self, code: &str, seats: u32) -> OrgCode {
        let code = OrgCode::parse(code).unwrap();
        let mut config = depot::org::OrgConfig::new("Test org").unwrap();
        config.seats = seats;
        self.depot.add_org(&actor(), &code, config).unwrap();
        code
    }

    fn release(&self, version: &str, percent: u8) {
        let path = self._dir.path().join(format!("client-{version}.tgz"));
        std::fs::write(&path, format!("client {version}").repeat(1000)).unwrap();
        let v = Version::parse(version).unwrap();
        let source = PayloadSource::from_path(Platform::LinuxX86_64, path).unwrap();
        self.depot
            .add_release(&actor(), &v, &[source], "notes")
            .unwrap();
        self.depot
            .publish(&actor(), &v, &Channel::stable(), percent, &NoProgress)
            .unwrap();
    }

    fn key(&self, org: &OrgCode) -> String {
        self.depot.org(org).unwrap().registration_key.to_string()
    }

    fn enroll(&self, key: &str, host: &str) -> reqwest::blocking::Response {
        Client::new()
            .post(format!("{}/v1/devices/enroll", self.base))
            .json(
                &json!({"registration_key": key, "hostname": host, "platform": "linux-x86_64",
                          "os_version": "Debian 12", "user": "alice"}),
            )
            .send()
            .unwrap()
    }

    /// Enrolls a device; returns (id, token).
    fn device(&self, key: &str, host: &str) -> (String, String) {
        let resp = self.enroll(key, host);
        assert_eq!(resp.status(), 201);
        let body: Value = resp.json().unwrap();
        (
            body["device_id"].as_str().unwrap().into(),
            body["device_token"].as_str().unwrap().into(),
        )
    }

    fn check(&self, token: &str, current: Option<&str>) -> (u16, Value) {
        let resp = Client::new()
            .post(format!("{}/v1/update-check", self.base))
            .bearer_auth(token)
            .json(&json!({"platform": "linux-x86_64", "current_version": current}))
            .send()
            .unwrap();
        (resp.status().as_u16(), resp.json().unwrap_or(Value::Null))
    }

    fn get(&self, path: &str) -> Value {
        let resp = Client::new()
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.admin)
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        resp.json().unwrap()
    }

    fn report(&self, token: &str, version: &str, kind: &str) -> u16 {
        Client::new()
            .post(format!("{}/v1/devices/events", self.base))
            .bearer_auth(token)
            .json(&json!({"version": version, "kind": kind, "message": "exit code 1603"}))
            .send()
            .unwrap()
            .status()
            .as_u16()
    }

    /// The status of a request with `token`.
    fn status(&self, method: reqwest::Method, path: &str, token: &str) -> u16 {
        Client::new()
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .unwrap()
            .status()
            .as_u16()
    }

    /// Lets the server see changes made through the service directly.
    fn settle(&self) {
        std::thread::sleep(std::time::Duration::from_millis(150));
    }
}

#[test]
fn enrollment_keys_rate_limit_rotation_and_seats() {
    let app = start();
    let physics = app.org("physics", 1);
    let key = app.key(&physics);
    let (id, token) = app.device(&key, "lab-01");
    assert!(id.starts_with("dev_") && token.starts_with("depot_dev_"));
    // Beyond the one seat: refused, with a code that says why.
    let beyond = app.enroll(&key, "lab-02");
    assert_eq!(beyond.status(), 409);
    let body: Value = beyond.json().unwrap();
    assert_eq!(body["error"]["code"], "seats_exhausted", "{body}");
    let usage = app.get("/v1/orgs/physics/usage");
    assert_eq!(
        (
            usage["seats"].as_u64(),
            usage["enrolled"].as_u64(),
            usage["over_seats"].as_u64()
        ),
        (Some(1), Some(1), Some(0))
    );
    // The default org's cap is a 409 too.
    app.depot.set_enroll_limits(depot::config::EnrollLimits {
        default_per_address_per_hour: 100,
        default_max_devices: 1,
    });
    let default_key = app.key(&OrgCode::default_org());
    app.device(&default_key, "anon-1");
    let capped = app.enroll(&default_key, "anon-2");
    assert_eq!(capped.status(), 409);
    let body: Value = capped.json().unwrap();
    assert_eq!(body["error"]["code"], "enrollment_cap_reached", "{body}");

    // Rotation: the old key stops at once; enrolled devices keep working.
    let mut config = app.depot.org(&physics).unwrap().config;
    config.seats = 2;
    app.depot.update_org(&actor(), &physics, config).unwrap();
    app.depot.rotate_key(&actor(), &physics).unwrap();
    assert_eq!(app.enroll(&key, "lab-03").status(), 403);
    app.settle();
    assert_eq!(app.check(&token, None).0, 200);
    assert_eq!(app.enroll(&app.key(&physics), "lab-03").status(), 201);

    // Wrong keys are 403, then 429 from that address.
    let statuses: Vec<u16> = (0..12)
        .map(|_| app.enroll("AAAA-BBBB-CCCC-DDDD", "x").status().as_u16())
        .collect();
    assert!(statuses[..9].iter().all(|&s| s == 403), "{statuses:?}");
    assert_eq!(*statuses.last().unwrap(), 429, "{statuses:?}");
}

/// Issue 13, item 5: one host guessing tokens behind a NAT must not lock out the others. After
/// the address has used up its bad tokens, unknown tokens get 429 but valid admin and device
/// tokens from that address keep working.
#[test]
fn bad_tokens_from_an_address_never_lock_out_valid_ones() {
    let app = start();
    let physics = app.org("physics", 10);
    app.release("1.0.0", 100);
    let (_, device) = app.device(&app.key(&physics), "lab-01");
    app.settle();
    assert_eq!(app.check(&device, None).0, 200);
    let statuses: Vec<u16> = (0..25)
        .map(|i| {
            app.status(
                reqwest::Method::GET,
                "/v1/orgs",
                &format!("depot_guess_{i}"),
            )
        })
        .collect();
    assert_eq!(statuses[0], 401, "{statuses:?}");
    assert_eq!(*statuses.last().unwrap(), 429, "{statuses:?}");
    assert_eq!(
        app.check("depot_dev_guess", None).0,
        429,
        "unknown device token"
    );

    assert_eq!(
        app.status(reqwest::Method::GET, "/v1/orgs", &app.admin),
        200
    );
    let (status, answer) = app.check(&device, None);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["offer"]["version"], "1.0.0", "{answer}");
    assert_eq!(app.check(&device, Some("1.0.0")).0, 200);
    assert_eq!(
        app.status(reqwest::Method::GET, "/v1/orgs", "depot_guess_again"),
        429
    );
}

#[test]
fn a_rollout_reaches_exactly_the_devices_its_buckets_name() {
    let app = start();
    let org = app.org("chem", 0);
    app.release("1.0.0", 100);
    let key = app.key(&org);
    let devices: Vec<(String, String)> = (0..40)
        .map(|i| app.device(&key, &format!("host-{i}")))
        .collect();
    app.release("1.1.0", 30);
    app.settle();
    let v11 = Version::parse("1.1.0").unwrap();
    let public_key = app.depot.public_key();
    let mut serials = Vec::new();
    for (id, token) in &devices {
        let (status, answer) = app.check(token, Some("1.0.0"));
        assert_eq!(status, 200, "{answer}");
        let expected = bucket(id, &v11) < 30;
        assert_eq!(
            answer["offer"].is_object(),
            expected,
            "device {id}: {answer}"
        );
        if expected {
            assert_eq!(answer["offer"]["version"], "1.1.0");
            assert_eq!(answer["offer"]["mandatory"], false);
            assert!(answer["offer"]["package"]["url"]
                .as_str()
                .unwrap()
                .ends_with("chem-1.1.0-linux-x86_64.zip"));
        }
        let manifest = answer["manifest"].as_str().unwrap();
        public_key
            .verify(
                manifest.as_bytes(),
                answer["manifest_minisig"].as_str().unwrap(),
            )
            .unwrap();
        let m: ReleaseManifest = serde_json::from_str(manifest).unwrap();
        assert_eq!(
            (m.org.as_str(), m.platform, m.releases.len()),
            ("chem", Platform::LinuxX86_64, 2)
        );
        serials.push(m.serial);
    }
    // Signed once for all of them: the state did not change.
    assert!(serials.windows(2).all(|w| w[0] == w[1]), "{serials:?}");

    // Paused: nobody. A channel minimum: everybody, mandatory.
    app.depot
        .set_rollout(&actor(), &v11, &Channel::stable(), None, Some(true))
        .unwrap();
    app.settle();
    assert!(devices
        .iter()
        .all(|(_, t)| app.check(t, Some("1.0.0")).1["offer"].is_null()));
    app.depot
        .set_channel_min_version(&actor(), &Channel::stable(), Some(v11.clone()))
        .unwrap();
    app.settle();
    for (_, token) in &devices {
        let (_, answer) = app.check(token, Some("1.0.0"));
        assert_eq!(
            (
                answer["offer"]["version"].as_str(),
                answer["offer"]["mandatory"].as_bool()
            ),
            (Some("1.1.0"), Some(true))
        );
    }
    // A changed manifest has a higher serial.
    let (_, answer) = app.check(&devices[0].1, Some("1.0.0"));
    let m: ReleaseManifest = serde_json::from_str(answer["manifest"].as_str().unwrap()).unwrap();
    assert!(m.serial > serials[0] && m.min_version == Some(v11.clone()));

    // Yanked: devices on it are offered the highest eligible version as a rollback.
    app.depot.yank(&actor(), &v11, "bad build").unwrap();
    app.settle();
    let (_, answer) = app.check(&devices[0].1, Some("1.1.0"));
    assert_eq!(
        (
            answer["offer"]["version"].as_str(),
            answer["offer"]["rollback"].as_bool()
        ),
        (Some("1.0.0"), Some(true))
    );
}

/// Issue 13, item 1, the attack: the default org's registration key is in every public
/// installer; 10 anonymous enrollments and 10 `failed` reports (also for a version never
/// offered, also after an admin's resume) used to pause a release for every org. Now a report
/// on a release the device was never offered is 422, devices enrolled after the rollout began
/// do not count, one org's failures can only hold the release for that org, and the default
/// key's enrollments are limited per address.
#[test]
fn anonymous_default_devices_cannot_halt_a_rollout() {
    let app = start();
    let bio = app.org("bio", 0);
    app.release("2.0.0", 100);
    let bio_device = app.device(&app.key(&bio), "bio-1");
    app.depot.set_enroll_limits(depot::config::EnrollLimits {
        default_per_address_per_hour: 10,
        default_max_devices: 10_000,
    });
    let default_key = app.key(&OrgCode::default_org());
    let attackers: Vec<(String, String)> = (0..10)
        .map(|i| app.device(&default_key, &format!("anon-{i}")))
        .collect();
    let refused = app.enroll(&default_key, "anon-10");
    assert_eq!(refused.status(), 429, "the address used up its hour");

    let paused = || {
        let rollouts = app.get("/v1/rollouts");
        let r = rollouts.as_array().unwrap()[0].clone();
        (r["paused"].as_bool().unwrap(), r)
    };
    // Never offered: 422 with a code that says so, nothing recorded.
    for (_, token) in &attackers {
        for version in ["2.0.0", "99.0.0"] {
            let resp = Client::new()
                .post(format!("{}/v1/devices/events", app.base))
                .bearer_auth(token)
                .json(&json!({"version": version, "kind": "failed", "message": "x"}))
                .send()
                .unwrap();
            assert_eq!(resp.status(), 422);
            let body: Value = resp.json().unwrap();
            assert_eq!(body["error"]["code"], "not_offered", "{body}");
        }
    }
    let (is_paused, r) = paused();
    assert!(!is_paused, "{r}");
    assert_eq!(r["failed"], 0, "{r}");

    // Offered by a check, but enrolled after the rollout began: recorded, not counted.
    for (_, token) in &attackers {
        assert_eq!(app.check(token, None).1["offer"]["version"], "2.0.0");
        assert_eq!(app.report(token, "2.0.0", "failed"), 204);
    }
    let (is_paused, r) = paused();
    assert!(!is_paused, "{r}");
    assert_eq!(r["failed"], 10, "recorded: {r}");
    assert_eq!(r["holds"], json!([]), "{r}");
    assert_eq!(
        app.check(&bio_device.1, None).1["offer"]["version"],
        "2.0.0"
    );

    // After a resume, more of the same changes nothing either.
    app.depot
        .set_rollout(
            &actor(),
            &Version::parse("2.0.0").unwrap(),
            &Channel::stable(),
            None,
            Some(false),
        )
        .unwrap();
    for (_, token) in &attackers {
        assert_eq!(app.report(token, "2.0.0", "failed"), 204);
        assert_eq!(app.report(token, "99.0.0", "failed"), 422);
    }
    assert!(!paused().0);
    assert_eq!(
        app.get("/v1/audit?action=rollout.halt")
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        app.check(&bio_device.1, None).1["offer"]["version"],
        "2.0.0"
    );
}

#[test]
fn deactivation_stops_a_device_and_check_ins_are_recorded() {
    let app = start();
    let org = app.org("bio", 0);
    app.release("2.0.0", 100);
    let key = app.key(&org);
    let devices: Vec<(String, String)> =
        (0..4).map(|i| app.device(&key, &format!("h{i}"))).collect();

    // Check-ins are recorded (batched) with address and version.
    app.check(&devices[3].1, Some("2.0.0"));
    app.depot.flush_checkins().unwrap();
    let listed = app.get("/v1/orgs/bio/devices?q=h3");
    assert_eq!(listed[0]["current_version"], "2.0.0", "{listed}");
    assert_eq!(listed[0]["last_address"], "127.0.0.1");

    let (id, token) = &devices[0];
    let resp = Client::new()
        .delete(format!("{}/v1/orgs/bio/devices/{id}", app.base))
        .bearer_auth(&app.admin)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(app.check(token, Some("2.0.0")).0, 401);
    assert_eq!(app.get("/v1/orgs/bio/usage")["enrolled"], 3);
}

#[test]
fn bad_input_on_device_endpoints_is_4xx() {
    let app = start();
    let org = app.org("geo", 0);
    app.release("1.0.0", 100);
    let (_, token) = app.device(&app.key(&org), "g1");
    let partner = app
        .depot
        .create_token(
            &actor(),
            depot::store::Role::Partner,
            Some(org.clone()),
            None,
        )
        .unwrap()
        .secret;
    let post = |path: &str, token: Option<&str>, body: String| {
        let mut req = Client::new()
            .post(format!("{}{path}", app.base))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().unwrap_or(Value::Null);
        (status, body)
    };
    let cases: Vec<(&str, Option<&str>, String)> = vec![
        ("/v1/update-check", Some(&token), "{".into()),
        ("/v1/update-check", Some(&token), "[]".into()),
        ("/v1/update-check", Some(&token), json!({"platform": "beos", "current_version": "1.0.0"}).to_string()),
        ("/v1/update-check", Some(&token), json!({"platform": "macos-aarch64", "current_version": null}).to_string()),
        ("/v1/update-check", Some(&token), json!({"platform": "linux-x86_64", "current_version": "v1"}).to_string()),
        ("/v1/update-check", Some(&token), json!({"platform": "linux-x86_64", "extra": 1}).to_string()),
        ("/v1/update-check", None, json!({"platform": "linux-x86_64"}).to_string()),
        ("/v1/update-check", Some("depot_dev_nope"), json!({"platform": "linux-x86_64"}).to_string()),
        ("/v1/update-check", Some(&partner), json!({"platform": "linux-x86_64"}).to_string()),
        ("/v1/devices/events", Some(&token), json!({"version": "1.0.0", "kind": "exploded"}).to_string()),
        ("/v1/devices/events", Some(&token), json!({"version": "1.0.0", "kind": "failed", "message": "x".repeat(5000)}).to_string()),
        ("/v1/devices/enroll", None, json!({"registration_key": "x"}).to_string()),
        ("/v1/devices/enroll", None, json!({"registration_key": app.key(&org), "hostname": "a\u{0}b", "platform": "linux-x86_64"}).to_string()),
        ("/v1/devices/enroll", None, json!({"registration_key": app.key(&org), "hostname": "h", "platform": "plan9"}).to_string()),
        // An oversized enroll body is answered 413 before it is read, and the connection closed
        // while such a client may still be writing (so it can see a reset instead of the
        // answer): hostile_clients::a_declared_length_past_the_route_limit_is_413_before_any_body
        // sends its headers alone and reads the 413.
    ];
    for (path, token, body) in cases {
        let shown = body.chars().take(60).collect::<String>();
        let (status, answer) = post(path, token, body);
        assert!((400..500).contains(&status), "{path} {shown}: {status}");
        assert!(
            answer["error"]["code"].is_string(),
            "{path} {shown}: {answer}"
        );
    }
    // A long device id cut for the message, not inside a character.
    let id = format!("a{}", "é".repeat(40));
    let path = format!("/v1/orgs/geo/devices/{id}");
    assert_eq!(app.status(reqwest::Method::DELETE, &path, &app.admin), 404);
}

#[test]
fn pin_counts_usage_filters_and_access() {
    let app = start();
    let astro = app.org("astro", 0);
    let other = app.org("other", 0);
    app.release("1.0.0", 100);
    app.release("1.1.0", 100);
    app.release("1.2.0", 0);
    let key = app.key(&astro);
    let devices: Vec<(String, String)> = (0..3)
        .map(|i| app.device(&key, &format!("star-{i}")))
        .collect();
    let current = [Some("1.0.0"), Some("1.1.0"), None];
    let (_, answer) = app.check(&devices[0].1, current[0]);
    assert_eq!(answer["offer"]["version"], "1.1.0", "{answer}");
    let serial = |answer: &Value| {
        serde_json::from_str::<ReleaseManifest>(answer["manifest"].as_str().unwrap())
            .unwrap()
            .serial
    };
    let unpinned = serial(&answer);

    // A pin wins over the rollout: 1.2.0 reaches no one by percent, everyone by the pin.
    let mut config = app.depot.org(&astro).unwrap().config;
    config.pinned_version = Some(Version::parse("1.2.0").unwrap());
    app.depot.update_org(&actor(), &astro, config).unwrap();
    app.settle();
    for ((_, token), current) in devices.iter().zip(current) {
        let (status, answer) = app.check(token, current);
        assert_eq!(status, 200);
        assert_eq!(answer["offer"]["version"], "1.2.0", "{answer}");
        let m: ReleaseManifest =
            serde_json::from_str(answer["manifest"].as_str().unwrap()).unwrap();
        assert_eq!(m.pinned_version, Some(Version::parse("1.2.0").unwrap()));
        assert!(m.serial > unpinned);
    }

    // Reports count in devices: one machine failing again and again is one failure, and does
    // not halt the rollout on its own.
    assert_eq!(app.report(&devices[0].1, "1.2.0", "downloaded"), 204);
    assert_eq!(app.report(&devices[0].1, "1.2.0", "installed"), 204);
    for _ in 0..12 {
        assert_eq!(app.report(&devices[1].1, "1.2.0", "failed"), 204);
    }
    app.depot.flush_checkins().unwrap();
    let rollouts = app.get("/v1/rollouts");
    let r = rollouts
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["version"] == "1.2.0" && r["channel"] == "stable")
        .unwrap();
    assert_eq!(
        [
            &r["offered"],
            &r["downloaded"],
            &r["installed"],
            &r["failed"],
            &r["paused"]
        ],
        [&json!(3), &json!(1), &json!(1), &json!(1), &json!(false)],
        "{r}"
    );

    // Usage and the device list, from the recorded check-ins.
    let usage = app.get("/v1/orgs/astro/usage");
    assert_eq!(
        (
            &usage["enrolled"],
            &usage["active_30d"],
            &usage["over_seats"]
        ),
        (&json!(3), &json!(3), &json!(0)),
        "{usage}"
    );
    assert_eq!(
        usage["by_version"],
        json!({"1.0.0": 1, "1.1.0": 1, "unknown": 1})
    );
    assert_eq!(usage["by_platform"], json!({"linux-x86_64": 3}));
    let listed = app.get("/v1/orgs/astro/devices?version=1.1.0&platform=linux-x86_64");
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["hostname"], "star-1");
    assert_eq!(app.get("/v1/orgs/astro/devices?active=false"), json!([]));
    assert_eq!(
        app.get("/v1/orgs/astro/devices?q=STAR")
            .as_array()
            .unwrap()
            .len(),
        3
    );
    for bad in ["platform=beos", "version=v1", "active=maybe"] {
        let status = app.status(
            reqwest::Method::GET,
            &format!("/v1/orgs/astro/devices?{bad}"),
            &app.admin,
        );
        assert!((400..500).contains(&status), "{bad}: {status}");
    }

    // Access: another org's partner sees nothing (404); a device administers nothing (403).
    let outsider = app
        .depot
        .create_token(&actor(), depot::store::Role::Partner, Some(other), None)
        .unwrap()
        .secret;
    let device = &devices[2];
    let get = reqwest::Method::GET;
    let delete = reqwest::Method::DELETE;
    let deactivate = format!("/v1/orgs/astro/devices/{}", device.0);
    assert_eq!(
        app.status(get.clone(), "/v1/orgs/astro/devices", &outsider),
        404
    );
    assert_eq!(
        app.status(get.clone(), "/v1/orgs/astro/usage", &outsider),
        404
    );
    assert_eq!(app.status(delete.clone(), &deactivate, &outsider), 404);
    assert_eq!(app.status(get.clone(), "/v1/rollouts", &outsider), 403);
    assert_eq!(
        app.status(get.clone(), "/v1/orgs/astro/devices", &device.1),
        403
    );
    assert_eq!(
        app.status(
            delete.clone(),
            "/v1/orgs/astro/devices/dev_nope",
            &app.admin
        ),
        404
    );

    // Deactivated by another process (the CLI on the same database): refused within moments.
    assert!(app
        .depot
        .meta()
        .deactivate_device(&astro, &device.0, 0)
        .unwrap()
        .is_some());
    app.settle();
    assert_eq!(app.check(&device.1, None).0, 401);
    assert_eq!(app.report(&device.1, "1.2.0", "failed"), 401);
    assert_eq!(app.status(delete, &deactivate, &app.admin), 404);
    assert_eq!(app.get("/v1/orgs/astro/usage")["enrolled"], 2);
}
