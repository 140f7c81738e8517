//! Secrets stay out of logs, and the signing key file must be private.
//!
//! A real `depot serve` runs with `RUST_LOG=trace`, once with the human log format and once with
//! JSON lines, while requests carry every kind of secret depot handles: admin and partner bearer
//! tokens (good, wrong and malformed), the registration key (right, wrong, and a near miss that
//! fails to parse), device tokens on enrollment answers, update checks, events and downloads,
//! tokens in query strings, a portal sign-in with the token in a form body and the session cookie
//! it sets, a token created over the API and a key rotation. The CLI commands that print or take
//! secrets, and the agent, run at trace level too. No secret may appear in any of those logs,
//! not even in pieces (a wire dump writes 16 bytes a line), while the names and ids the design
//! shows (token ids, the first group of a registration key) may.

mod common;

use common::Workspace;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The log settings under test: everything, in both formats.
fn verbose(cmd: &mut Command, format: LogFormat) -> &mut Command {
    cmd.env("RUST_LOG", "trace")
        .env("DEPOT_LOG_FORMAT", format.as_env())
}

#[derive(Clone, Copy, Debug)]
enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    fn as_env(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// One secret and the part of it that must never be logged: the random part after any public
/// prefix (`depot_`), checked as every window of `window` characters, so that a secret cut
/// into lines or columns is still found.
struct Secret {
    label: String,
    random: String,
    window: usize,
}

impl Secret {
    fn token(label: impl Into<String>, value: &str) -> Self {
        let random = value.strip_prefix("depot_").unwrap_or(value);
        Secret {
            label: label.into(),
            random: random.to_string(),
            window: 12,
        }
    }

    /// A registration key: 16 random characters in 4 groups; the first group may be shown.
    fn registration_key(label: impl Into<String>, value: &str) -> Self {
        assert_eq!(value.len(), 19, "{value}");
        Secret {
            label: label.into(),
            random: value.to_string(),
            window: 9,
        }
    }

    /// The first window of this secret found in `log`, if any.
    fn found_in<'a>(&'a self, log: &str) -> Option<&'a str> {
        let chars: Vec<(usize, char)> = self.random.char_indices().collect();
        let window = self.window.min(chars.len());
        (0..=chars.len() - window).find_map(|i| {
            let start = chars[i].0;
            let end = chars
                .get(i + window)
                .map_or(self.random.len(), |(at, _)| *at);
            let piece = &self.random[start..end];
            log.contains(piece).then_some(piece)
        })
    }
}

fn assert_no_secret(what: &str, log: &str, secrets: &[Secret]) {
    assert!(
        !log.trim().is_empty(),
        "{what}: the log is empty, so the check would prove nothing"
    );
    for secret in secrets {
        if let Some(piece) = secret.found_in(log) {
            let line = log.lines().find(|l| l.contains(piece)).unwrap_or_default();
            panic!(
                "{what}: the log shows {} (piece {piece:?}) in:\n{line}",
                secret.label
            );
        }
    }
}

/// `depot serve` on a free loopback port, its stdout and stderr going to one file; killed on drop.
struct Server {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Server {
    fn start(ws: &Workspace, format: LogFormat) -> Server {
        let log = ws.dir.path().join(format!("serve-{}.log", format.as_env()));
        let file = std::fs::File::create(&log).unwrap();
        let child = verbose(
            &mut ws.command(&["serve", "--listen", "127.0.0.1:0"]),
            format,
        )
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
        let mut server = Server {
            child,
            base: String::new(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        server.base = loop {
            let text = server.log_text();
            if let Some(at) = text.find("depot serving on http://") {
                let rest = &text[at + "depot serving on ".len()..];
                let end = rest.find([' ', '"', '\n']).unwrap_or(rest.len());
                break rest[..end].to_string();
            }
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("depot serve exited ({status}): {text}");
            }
            assert!(
                Instant::now() < deadline,
                "depot serve did not start: {text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        server
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the server with SIGTERM (so shutdown logging runs too) and returns its whole log.
    fn stop(mut self) -> String {
        // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "depot serve did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.log_text()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a CLI command at trace level in `format`; asserts success; returns (stdout, stderr).
fn cli(ws: &Workspace, format: LogFormat, args: &[&str]) -> (String, String) {
    let out = verbose(&mut ws.command(args), format).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "depot {args:?} failed: {stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

fn payload(ws: &Workspace, name: &str, seed: u8) -> String {
    let path = ws.dir.path().join(name);
    let bytes: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed)
        .collect();
    std::fs::write(&path, bytes).unwrap();
    format!("linux-x86_64={}", path.display())
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn json(response: reqwest::blocking::Response, want: u16) -> serde_json::Value {
    let status = response.status().as_u16();
    let text = response.text().unwrap();
    assert_eq!(status, want, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// A well-formed token that depot never issued.
fn unknown_token() -> String {
    let mut bytes = [0u8; 20];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut bytes)
        .unwrap();
    format!(
        "depot_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// Replaces the last character of a registration key with one Crockford base32 never uses, so
/// the key fails to parse while 15 of its 16 characters are the real ones.
fn near_miss(key: &str) -> String {
    format!("{}U", &key[..key.len() - 1])
}

fn scenario(format: LogFormat) {
    let ws = Workspace::init();
    let mut secrets = Vec::new();
    let mut cli_logs = String::new();
    let mut run = |args: &[&str]| {
        let (out, err) = cli(&ws, format, args);
        cli_logs.push_str(&err);
        out
    };

    run(&[
        "org", "add", "physics", "--name", "Physics", "--seats", "20",
    ]);
    run(&["org", "add", "chemistry", "--name", "Chemistry"]);
    let v1 = payload(&ws, "client-1.0.0.tgz", 1);
    run(&["release", "add", "1.0.0", "--payload", &v1]);
    run(&["release", "publish", "1.0.0", "--channel", "stable"]);
    let v2 = payload(&ws, "client-1.1.0.tgz", 2);
    run(&["release", "add", "1.1.0", "--payload", &v2]);
    let admin = run(&["token", "create", "--role", "admin", "--name", "desk-eng"])
        .trim()
        .to_string();
    let partner = run(&[
        "token", "create", "--role", "partner", "--org", "physics", "--name", "phys-it",
    ])
    .trim()
    .to_string();
    assert!(admin.starts_with("depot_") && partner.starts_with("depot_"));
    secrets.push(Secret::token("the admin token", &admin));
    secrets.push(Secret::token("the partner token", &partner));
    let shown = run(&["org", "show", "physics"]);
    let key = shown
        .lines()
        .find_map(|l| l.strip_prefix("registration key:"))
        .unwrap()
        .trim()
        .to_string();
    let shown_json: serde_json::Value =
        serde_json::from_str(&run(&["org", "show", "physics", "--json"])).unwrap();
    assert_eq!(shown_json["registration_key"], key.as_str());
    secrets.push(Secret::registration_key("the registration key", &key));
    let chemistry: serde_json::Value =
        serde_json::from_str(&run(&["org", "show", "chemistry", "--json"])).unwrap();
    let chemistry_key = chemistry["registration_key"].as_str().unwrap().to_string();
    secrets.push(Secret::registration_key(
        "chemistry's registration key",
        &chemistry_key,
    ));

    let server = Server::start(&ws, format);
    let c = client();
    let wrong = unknown_token();
    secrets.push(Secret::token("an unknown token", &wrong));

    // Bearer tokens, good, wrong, malformed, in other schemes and in query strings.
    for (token, want) in [(&admin, 200), (&partner, 200), (&wrong, 401)] {
        let status = c
            .get(server.url("/v1/orgs"))
            .bearer_auth(token)
            .send()
            .unwrap();
        assert_eq!(status.status().as_u16(), want);
    }
    for header in [
        format!("Bearer {admin}x"),
        format!("bearer  {partner}"),
        format!("Basic {admin}"),
        format!("Token token={partner}"),
        admin.clone(),
    ] {
        let status = c
            .get(server.url("/v1/orgs"))
            .header("authorization", header)
            .send()
            .unwrap()
            .status();
        assert!(status.as_u16() < 500, "{status}");
    }
    for path in [
        format!("/v1/orgs?token={admin}"),
        format!("/v1/audit?access_token={partner}"),
        format!("/v1/download/physics/latest/linux-x86_64?token={partner}"),
        format!("/v1/no-such-route?registration_key={key}"),
        format!("/login?token={admin}"),
    ] {
        let status = c.get(server.url(&path)).send().unwrap().status();
        assert!(status.as_u16() < 500, "{path}: {status}");
    }

    // Enrollment: the right key, a wrong one, a near miss that fails to parse, a wrong type.
    let enroll = |registration_key: serde_json::Value| {
        c.post(server.url("/v1/devices/enroll"))
            .json(&serde_json::json!({
                "registration_key": registration_key,
                "hostname": "lab-pc-1",
                "platform": "linux-x86_64",
                "os_version": "Debian 12",
                "user": "alice",
            }))
            .send()
            .unwrap()
    };
    let enrolled = json(enroll(key.as_str().into()), 201);
    let device = enrolled["device_token"].as_str().unwrap().to_string();
    let device_id = enrolled["device_id"].as_str().unwrap().to_string();
    secrets.push(Secret::token("the device token", &device));
    let second = json(enroll(key.as_str().into()), 201);
    let device2 = second["device_token"].as_str().unwrap().to_string();
    secrets.push(Secret::token("a second device token", &device2));
    assert_eq!(enroll(chemistry_key.as_str().into()).status().as_u16(), 201);
    let wrong_key = near_miss(&key).replace('U', "Z");
    if wrong_key != key {
        secrets.push(Secret::registration_key("a wrong key", &wrong_key));
        assert_eq!(enroll(wrong_key.as_str().into()).status().as_u16(), 403);
    }
    let typo = near_miss(&key);
    let status = enroll(typo.as_str().into()).status().as_u16();
    assert!((400..500).contains(&status), "{status}");
    let status = c
        .post(server.url("/v1/devices/enroll"))
        .header("content-type", "application/json")
        .body(format!("{{\"registration_key\":\"{key}\",\"hostname\":5}}"))
        .send()
        .unwrap()
        .status();
    assert!(status.is_client_error(), "{status}");
    let status = c
        .post(server.url("/v1/devices/enroll"))
        .header("content-type", "application/json")
        .body(format!("{{\"registration_key\":\"{key}\""))
        .send()
        .unwrap()
        .status();
    assert!(status.is_client_error(), "{status}");

    // A device's traffic: update checks, an event, a download, a bad token.
    let check = |token: &str, version: &str| {
        c.post(server.url("/v1/update-check"))
            .bearer_auth(token)
            .json(&serde_json::json!({"platform": "linux-x86_64", "current_version": version}))
            .send()
            .unwrap()
    };
    let answer = json(check(&device, "0.9.0"), 200);
    let url = answer["offer"]["package"]["url"]
        .as_str()
        .unwrap()
        .to_string();
    let url = if url.starts_with('/') {
        server.url(&url)
    } else {
        url
    };
    let download = c.get(&url).bearer_auth(&device).send().unwrap();
    assert_eq!(download.status().as_u16(), 200);
    download.bytes().unwrap();
    let event = c
        .post(server.url("/v1/devices/events"))
        .bearer_auth(&device)
        .json(&serde_json::json!({"version": "1.0.0", "kind": "installed", "message": "ok"}))
        .send()
        .unwrap();
    assert!(event.status().is_success(), "{}", event.status());
    assert_eq!(check(&device2, "1.0.0").status().as_u16(), 200);
    assert_eq!(check(&wrong, "1.0.0").status().as_u16(), 401);
    assert!(check(&device, "not-a-version").status().is_client_error());

    // Admin work over the API: a new token, publishing, a rollout, a key rotation.
    let created = json(
        c.post(server.url("/v1/tokens"))
            .bearer_auth(&admin)
            .json(&serde_json::json!({"role": "partner", "org": "chemistry", "name": "chem-it"}))
            .send()
            .unwrap(),
        201,
    );
    let api_token = created["secret"]
        .as_str()
        .or(created["token"].as_str())
        .unwrap_or_else(|| panic!("no secret in {created}"))
        .to_string();
    secrets.push(Secret::token("a token created over the API", &api_token));
    json(
        c.get(server.url("/v1/orgs/chemistry"))
            .bearer_auth(&api_token)
            .send()
            .unwrap(),
        200,
    );
    let published = c
        .post(server.url("/v1/releases/1.1.0/publish"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"channel": "stable", "rollout_percent": 10}))
        .send()
        .unwrap();
    assert!(published.status().is_success(), "{}", published.status());
    let rollout = c
        .put(server.url("/v1/releases/1.1.0/rollout"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"channel": "stable", "percent": 100, "paused": false}))
        .send()
        .unwrap();
    assert!(rollout.status().is_success(), "{}", rollout.status());
    let rotated = json(
        c.post(server.url("/v1/orgs/physics/rotate-key"))
            .bearer_auth(&partner)
            .send()
            .unwrap(),
        200,
    );
    let new_key = rotated["registration_key"].as_str().unwrap().to_string();
    assert_ne!(new_key, key);
    secrets.push(Secret::registration_key("the rotated key", &new_key));
    assert_eq!(enroll(key.as_str().into()).status().as_u16(), 403);
    json(enroll(new_key.as_str().into()), 201);
    json(
        c.get(server.url("/v1/orgs/physics"))
            .bearer_auth(&admin)
            .send()
            .unwrap(),
        200,
    );
    let gone = c
        .delete(server.url(&format!("/v1/orgs/physics/devices/{device_id}")))
        .bearer_auth(&partner)
        .send()
        .unwrap();
    assert!(gone.status().is_success(), "{}", gone.status());
    assert_eq!(check(&device, "1.0.0").status().as_u16(), 401);

    // The portal: the token in a form body, then the session cookie it sets.
    let form = c.get(server.url("/login")).send().unwrap().text().unwrap();
    let csrf = form
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();
    let bad = c
        .post(server.url("/login"))
        .form(&[("token", wrong.as_str()), ("csrf", &csrf)])
        .send()
        .unwrap();
    assert!(bad.status().is_client_error(), "{}", bad.status());
    let form = c.get(server.url("/login")).send().unwrap().text().unwrap();
    let csrf = form
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();
    let signed_in = c
        .post(server.url("/login"))
        .form(&[("token", partner.as_str()), ("csrf", &csrf)])
        .send()
        .unwrap();
    assert_eq!(signed_in.status().as_u16(), 303, "portal sign-in");
    let session = signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let (name, rest) = v.split_once('=')?;
            let value = rest.split(';').next()?;
            (!value.is_empty() && name.contains("session")).then(|| value.to_string())
        })
        .expect("a session cookie");
    secrets.push(Secret::token("the portal session id", &session));
    let page = c.get(server.url("/orgs/physics")).send().unwrap();
    assert_eq!(page.status().as_u16(), 200);
    page.text().unwrap();

    // The agent: takes the key on its command line, holds a device token.
    let state = ws.dir.path().join("agent");
    let public_key = std::fs::read_to_string(ws.dir.path().join("keys/depot.pub")).unwrap();
    let public_key = public_key.lines().nth(1).unwrap().trim().to_string();
    let state_arg = state.to_str().unwrap();
    let (_, agent_enroll_log) = cli(
        &ws,
        format,
        &[
            "agent",
            "enroll",
            "--state-dir",
            state_arg,
            "--server",
            &server.base,
            "--registration-key",
            &new_key,
            "--public-key",
            &public_key,
            "--platform",
            "linux-x86_64",
        ],
    );
    let agent_state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("state.json")).unwrap()).unwrap();
    let agent_token = agent_state["device_token"].as_str().unwrap().to_string();
    secrets.push(Secret::token("the agent's device token", &agent_token));
    // Asking for the HTTP client's wire dump by name must not bring it back either.
    let out = verbose(
        // Random payload bytes: the package's own install.sh would refuse them, and this
        // test is about logs, not installs.
        &mut ws.command(&[
            "agent",
            "run",
            "--once",
            "--install-command",
            "true",
            "--state-dir",
            state_arg,
        ]),
        format,
    )
    .env("RUST_LOG", "trace,ureq_proto=trace")
    .stdin(Stdio::null())
    .output()
    .unwrap();
    let agent_run_log = String::from_utf8_lossy(&out.stderr).into_owned();
    let agent_out = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && agent_out.contains("installed 1.1.0"),
        "the agent did not update: {agent_out}{agent_run_log}"
    );

    // CLI commands that list, print or take secrets, after all of the above.
    run(&["token", "list"]);
    run(&["token", "list", "--json"]);
    run(&["org", "list", "--json"]);
    run(&["org", "show", "chemistry"]);
    run(&["org", "rotate-key", "chemistry"]);

    let server_log = server.stop();
    assert!(
        server_log.contains("/v1/update-check") && server_log.contains("/login"),
        "the server log does not show the requests, so it proves nothing: {server_log}"
    );
    assert!(
        server_log.contains("DEBUG"),
        "RUST_LOG=trace did not reach the server"
    );
    if let LogFormat::Json = format {
        for line in server_log.lines().filter(|l| l.starts_with('{')) {
            serde_json::from_str::<serde_json::Value>(line)
                .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        }
    }
    let what = |who: &str| format!("{who} ({format:?} logs)");
    assert_no_secret(&what("depot serve"), &server_log, &secrets);
    assert_no_secret(&what("the CLI"), &cli_logs, &secrets);
    assert_no_secret(&what("depot agent enroll"), &agent_enroll_log, &secrets);
    assert_no_secret(&what("depot agent run"), &agent_run_log, &secrets);
    // The design shows names and ids in logs; make sure the check above is not vacuous.
    assert!(server_log.contains("/v1/devices/enroll"));
}

#[test]
fn no_secret_reaches_the_text_logs() {
    scenario(LogFormat::Text);
}

#[test]
fn no_secret_reaches_the_json_logs() {
    scenario(LogFormat::Json);
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn the_signing_key_is_private_and_serve_refuses_it_otherwise() {
    use std::os::unix::fs::PermissionsExt;
    let ws = Workspace::init();
    let key = ws.dir.path().join("keys/depot.key");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&key), 0o600, "depot init writes the key 0600");
    assert_eq!(
        mode(key.parent().unwrap()) & 0o077,
        0,
        "its directory is private"
    );
    for bad in [0o640, 0o604, 0o620, 0o660, 0o644] {
        chmod(&key, bad);
        let out = ws
            .command(&["serve", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "served with a {bad:o} key: {err}");
        assert!(
            err.contains(&format!("{bad:04o}"))
                && err.contains("chmod 600")
                && err.contains("keys/depot.key"),
            "{bad:o}: {err}"
        );
        assert!(!err.contains("depot serving on"), "{err}");
        // The refusal itself must not leak the key it refused.
        let text = std::fs::read_to_string(&key).unwrap();
        let line = text.lines().nth(1).unwrap();
        assert!(!err.contains(&line[20..60]), "{err}");
    }
    // A key readable by its owner only (0400) is fine.
    chmod(&key, 0o400);
    let mut server = ws
        .command(&["serve", "--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = server.stderr.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("depot serving on") {
        let n = stderr.read(&mut buf).unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    server.kill().unwrap();
    server.wait().unwrap();
}

/// Types that carry a secret to or from a client show it redacted in debug output, so that a
/// `?value` in a log line or an error message cannot leak it.
#[test]
fn debug_output_hides_secrets() {
    use depot::server::auth::{Caller, Principal};
    use depot::server::portal::session::Sessions;
    const KEY: &str = "7QKX-M2PA-9D4R-HV0T";
    const TOKEN: &str = "depot_0123456789abcdef0123456789abcdef01234567";
    let hides_key = |debug: String| {
        assert!(
            !debug.contains("M2PA") && !debug.contains("HV0T"),
            "{debug}"
        );
        assert!(debug.contains("7QKX-****"), "{debug}");
    };

    hides_key(format!(
        "{:?}",
        depot::domain::RegistrationKey::parse(KEY).unwrap()
    ));
    let view: depot::service::views::OrgView = serde_json::from_value(serde_json::json!({
        "code": "physics", "name": "Physics", "contact_email": null, "seats": 5,
        "channel": "stable", "pinned_version": null, "backup": {"include": [], "exclude": []},
        "settings": {}, "registration_key": KEY, "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z", "contact": {}, "users_group": null,
        "partners_group": null, "on_ineligible": "deactivate", "stale_after_days": 7,
    }))
    .unwrap();
    hides_key(format!("{view:?}"));
    let update: depot::server::routes::orgs::OrgUpdate =
        serde_json::from_value(serde_json::json!({"name": "Physics", "registration_key": KEY}))
            .unwrap();
    hides_key(format!("{update:?}"));
    let context = depot::templates::OrgContext {
        code: "physics".into(),
        name: "Physics".into(),
        registration_key: KEY.into(),
        contact: String::new(),
        channel: "stable".into(),
        backup: depot::templates::BackupContext {
            include: vec![],
            exclude: vec![],
        },
        settings: Default::default(),
        vendor_settings: Default::default(),
    };
    hides_key(format!("{context:?}"));

    let created = depot::server::routes::tokens::CreatedToken {
        token: TOKEN.into(),
        record: depot::service::views::TokenView {
            id: "tok_1".into(),
            name: "desk-eng".into(),
            role: "admin".into(),
            org: None,
            created_at: "2026-01-01T00:00:00Z".into(),
            revoked_at: None,
        },
    };
    let debug = format!("{created:?}");
    assert!(
        !debug.contains("0123456789") && debug.contains("tok_1"),
        "{debug}"
    );

    let sessions = Sessions::default();
    let id = sessions.create(
        Caller {
            principal: Principal::Admin,
            name: "desk-eng".into(),
        },
        depot::server::portal::session::Opener::Token(depot::domain::Sha256::digest(
            TOKEN.as_bytes(),
        )),
    );
    let session = sessions.get(&id).unwrap();
    let debug = format!("{session:?}");
    assert!(
        !debug.contains(&session.csrf) && !debug.contains(&id) && debug.contains("desk-eng"),
        "{debug}"
    );
}
