//! The agent end to end: a real `depot serve`, real `depot agent` processes in temp dirs,
//! packages built by the pipeline, and a proxy that damages or cuts downloads.

mod common;

use common::{free_port, payloads, Workspace};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `depot serve` in the workspace, killed on drop.
struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(ws: &Workspace, listen: &str) -> Server {
    let child = ws.command(&["serve", "--listen", listen]).spawn().unwrap();
    let started = Instant::now();
    while TcpStream::connect(listen).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "depot serve did not come up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Server { child }
}

#[derive(Clone, Copy, PartialEq)]
enum Damage {
    /// Flip one byte of every response longer than 600,000 bytes.
    FlipByte,
    /// Cut the first long response after 300,000 bytes; pass later ones whole.
    CutOnce,
}

/// A TCP proxy to `upstream` that damages long responses; returns its address and the request
/// heads it saw.
fn proxy(upstream: String, damage: Damage) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&requests);
    let cut_done = Arc::new(Mutex::new(false));
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { continue };
            let Ok(mut server) = TcpStream::connect(&upstream) else {
                continue;
            };
            let (seen, cut_done) = (Arc::clone(&seen), Arc::clone(&cut_done));
            let mut client_reader = client.try_clone().unwrap();
            let mut server_writer = server.try_clone().unwrap();
            std::thread::spawn(move || {
                let mut buf = [0u8; 16384];
                while let Ok(n) = client_reader.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    seen.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                    if server_writer.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
            std::thread::spawn(move || {
                let mut buf = [0u8; 16384];
                let mut sent = 0usize;
                while let Ok(n) = server.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let chunk = &mut buf[..n];
                    match damage {
                        Damage::FlipByte if sent < 600_000 && sent + n >= 600_000 => {
                            chunk[600_000 - sent] ^= 0x01
                        }
                        Damage::CutOnce if sent + n >= 300_000 => {
                            let mut done = cut_done.lock().unwrap();
                            if !*done {
                                *done = true;
                                let _ = client.write_all(&chunk[..300_000 - sent]);
                                let _ = client.shutdown(std::net::Shutdown::Both);
                                return;
                            }
                        }
                        _ => {}
                    }
                    sent += n;
                    if client.write_all(chunk).is_err() {
                        break;
                    }
                }
                let _ = client.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (address, requests)
}

fn agent(args: &[&str]) -> std::process::Output {
    let mut command = common::depot();
    command.args(["agent"]).args(args);
    // This test is about transport and trust; its payloads are random bytes that the package's
    // install.sh would refuse. The install script is tested by `package_installs_and_schedules_the_agent`.
    if args.first() == Some(&"run") {
        command.args(["--install-command", "true"]);
    }
    command.output().unwrap()
}

fn agent_ok(args: &[&str]) -> String {
    let out = agent(args);
    assert!(
        out.status.success(),
        "depot agent {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn status(dir: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&agent_ok(&[
        "status",
        "--state-dir",
        dir.to_str().unwrap(),
        "--json",
    ]))
    .unwrap()
}

#[test]
fn agents_enroll_update_refuse_damage_resume_roll_back_and_stop_when_deactivated() {
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        eprintln!(
            "skipping: the end-to-end agent test builds linux-x86_64 packages for this machine"
        );
        return;
    }
    let listen = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{listen}");
    let ws = Workspace::init_with_env(&[("DEPOT_PUBLIC_URL", &base)]);
    ws.ok(&[
        "org", "add", "physics", "--name", "Physics", "--seats", "10",
    ]);
    let v1 = payloads(&ws, "1.0.0", 1);
    ws.ok(&["release", "add", "1.0.0", "--payload", &v1[2]]);
    ws.ok(&["release", "publish", "1.0.0", "--channel", "stable"]);
    let admin = ws
        .ok(&["token", "create", "--role", "admin"])
        .trim()
        .to_string();
    let _server = serve(&ws, &listen);

    // The installer package as a machine receives it.
    let export = ws.dir.path().join("export");
    ws.ok(&[
        "export",
        "--org",
        "physics",
        "--release",
        "1.0.0",
        "--out",
        export.to_str().unwrap(),
    ]);
    let package = ws.dir.path().join("package");
    common::run_in(
        ws.dir.path(),
        "unzip",
        &[
            "-q",
            export
                .join("physics-1.0.0-linux-x86_64.zip")
                .to_str()
                .unwrap(),
            "-d",
            package.to_str().unwrap(),
        ],
    );
    let properties = package.join("deploy.properties");
    let enroll = |dir: &std::path::Path, server: Option<&str>| {
        let mut args = vec![
            "enroll",
            "--state-dir",
            dir.to_str().unwrap(),
            "--from",
            properties.to_str().unwrap(),
        ];
        if let Some(server) = server {
            args.extend(["--server", server]);
        }
        agent_ok(&args)
    };

    let a = ws.dir.path().join("agent-a");
    enroll(&a, None);
    assert_eq!(status(&a)["current_version"], "1.0.0");
    assert!(
        agent_ok(&["run", "--once", "--state-dir", a.to_str().unwrap()]).contains("up to date")
    );

    // A new release reaches the device: downloaded, verified, unpacked, switched.
    let v11 = payloads(&ws, "1.1.0", 1);
    ws.ok(&["release", "add", "1.1.0", "--payload", &v11[2]]);
    ws.ok(&["release", "publish", "1.1.0", "--channel", "stable"]);
    std::thread::sleep(Duration::from_millis(300));
    let out = agent_ok(&["run", "--once", "--state-dir", a.to_str().unwrap()]);
    assert!(out.contains("installed 1.1.0"), "{out}");
    let st = status(&a);
    assert_eq!(
        (
            st["current_version"].as_str(),
            st["previous_version"].as_str()
        ),
        (Some("1.1.0"), Some("1.0.0"))
    );
    assert!(a.join("versions/1.1.0/client-1.1.0.tgz").is_file());
    assert_eq!(
        std::fs::read_link(a.join("current"))
            .unwrap()
            .file_name()
            .unwrap(),
        "1.1.0"
    );

    // A proxy that flips one byte of the package: refused, reported, nothing installed.
    let (flipping, _) = proxy(listen.clone(), Damage::FlipByte);
    let b = ws.dir.path().join("agent-b");
    enroll(&b, Some(&format!("http://{flipping}")));
    let out = agent(&["run", "--once", "--state-dir", b.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("1.1.0")
            && (err.contains("sha256") || err.contains("SHA-256") || err.contains("signature")),
        "{err}"
    );
    assert!(!b.join("versions/1.1.0").exists());
    assert_eq!(status(&b)["current_version"], "1.0.0");

    // A download cut in the middle resumes with a Range request on the next run.
    let (cutting, requests) = proxy(listen.clone(), Damage::CutOnce);
    let c = ws.dir.path().join("agent-c");
    enroll(&c, Some(&format!("http://{cutting}")));
    assert!(
        !agent(&["run", "--once", "--state-dir", c.to_str().unwrap()])
            .status
            .success()
    );
    assert!(
        agent_ok(&["run", "--once", "--state-dir", c.to_str().unwrap()])
            .contains("installed 1.1.0")
    );
    let heads = requests.lock().unwrap().join("\n").to_ascii_lowercase();
    let resumed_from: Vec<u64> = heads
        .lines()
        .filter_map(|l| l.strip_prefix("range: bytes="))
        .filter_map(|r| r.trim_end_matches('-').parse().ok())
        .collect();
    assert!(
        resumed_from.iter().any(|&from| from > 100_000),
        "the second download did not resume: {heads}"
    );

    // The failed report of agent B reached the rollout counts.
    let client = reqwest::blocking::Client::new();
    let rollouts: serde_json::Value = client
        .get(format!("{base}/v1/rollouts"))
        .bearer_auth(&admin)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let r11 = rollouts
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["version"] == "1.1.0")
        .unwrap()
        .clone();
    assert!(
        r11["failed"].as_u64().unwrap() >= 1 && r11["installed"].as_u64().unwrap() >= 2,
        "{rollouts}"
    );

    // Yanking 1.1.0 rolls devices on it back to 1.0.0.
    ws.ok(&["release", "yank", "1.1.0", "--reason", "crashes on login"]);
    std::thread::sleep(Duration::from_millis(300));
    let out = agent_ok(&["run", "--once", "--state-dir", a.to_str().unwrap()]);
    assert!(out.contains("installed 1.0.0"), "{out}");

    // Deactivation takes effect on the device's next request.
    let device = status(&a)["device_id"].as_str().unwrap().to_string();
    let resp = client
        .delete(format!("{base}/v1/orgs/physics/devices/{device}"))
        .bearer_auth(&admin)
        .send()
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let out = agent(&["run", "--once", "--state-dir", a.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("deactivated"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A vendor client `.tgz` whose install.sh records the version it installed under DEPOT_ROOT.
fn vendor_tgz(ws: &Workspace, version: &str) -> String {
    let dir = ws.dir.path().join("vendor").join(version);
    let inner = dir.join("client");
    std::fs::create_dir_all(&inner).unwrap();
    std::fs::write(
        inner.join("install.sh"),
        format!(
            "#!/bin/sh\nset -eu\nmkdir -p \"$DEPOT_ROOT/opt/client\"\n\
             echo \"{version} $*\" > \"$DEPOT_ROOT/opt/client/installed\"\n"
        ),
    )
    .unwrap();
    let tgz = dir.join(format!("client-{version}.tgz"));
    common::run_in(&dir, "tar", &["-czf", tgz.to_str().unwrap(), "client"]);
    format!("linux-x86_64={}", tgz.display())
}

/// Contract 7a on Linux, for real: the package carries the real agent; its install.sh installs
/// the client, the agent and the systemd units under DEPOT_ROOT and enrolls; the units verify;
/// the unit's own command updates the machine to a newer release through the new package's
/// install.sh; uninstall.sh removes what install.sh wrote.
#[test]
fn package_installs_and_schedules_the_agent() {
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        eprintln!("skipping: the test installs a linux-x86_64 package on this machine");
        return;
    }
    let listen = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{listen}");
    let ws = Workspace::init_with_env(&[("DEPOT_PUBLIC_URL", &base)]);
    ws.ok(&[
        "org", "add", "physics", "--name", "Physics", "--seats", "10",
    ]);
    let agent_exe = env!("CARGO_BIN_EXE_depot");
    let v1 = vendor_tgz(&ws, "1.0.0");
    ws.ok(&["release", "add", "1.0.0", "--payload", &v1]);
    ws.ok(&["release", "publish", "1.0.0", "--channel", "stable"]);
    // Added after the release: the current release's packages are rebuilt to carry it.
    let added = ws.ok(&["agent-binary", "add", &format!("linux-x86_64={agent_exe}")]);
    assert!(added.contains("packages rebuilt"), "{added}");
    let exe_bytes = std::fs::read(agent_exe).unwrap();
    let exe_sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&exe_bytes))
    };
    assert!(ws.ok(&["agent-binary", "list"]).contains(&exe_sha));
    let _server = serve(&ws, &listen);
    let listed: serde_json::Value = reqwest::blocking::get(format!("{base}/v1/agent-binaries"))
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(listed[0]["platform"], "linux-x86_64");
    assert_eq!(listed[0]["sha256"], exe_sha.as_str());
    assert_eq!(listed[0]["size"], exe_bytes.len() as u64);

    let export = ws.dir.path().join("export");
    ws.ok(&[
        "export",
        "--org",
        "physics",
        "--release",
        "1.0.0",
        "--out",
        export.to_str().unwrap(),
    ]);
    let package = ws.dir.path().join("package");
    common::run_in(
        ws.dir.path(),
        "unzip",
        &[
            "-q",
            export
                .join("physics-1.0.0-linux-x86_64.zip")
                .to_str()
                .unwrap(),
            "-d",
            package.to_str().unwrap(),
        ],
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&package.join("depot")), 0o755);
    assert_eq!(std::fs::read(package.join("depot")).unwrap(), exe_bytes);

    let root = ws.dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let out = std::process::Command::new("sh")
        .arg("./install.sh")
        .current_dir(&package)
        .env("DEPOT_ROOT", &root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "install.sh failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let installed = std::fs::read_to_string(root.join("opt/client/installed")).unwrap();
    assert!(installed.starts_with("1.0.0 -q"), "{installed}");
    let bin = root.join("usr/local/bin/depot");
    assert_eq!(mode(&bin), 0o755);
    assert_eq!(std::fs::read(&bin).unwrap(), exe_bytes);
    let state = root.join("var/lib/depot-agent");
    assert!(state.join("state.json").is_file());
    let units = root.join("etc/systemd/system");
    let service = std::fs::read_to_string(units.join("depot-agent.service")).unwrap();
    let timer = std::fs::read_to_string(units.join("depot-agent.timer")).unwrap();
    assert!(
        timer.contains("RandomizedDelaySec=") && timer.contains("Persistent=true"),
        "{timer}"
    );

    // The units as systemd reads them, against the installed tree; the tree borrows the
    // host's own units (sysinit.target, timers.target) that they depend on.
    std::fs::create_dir_all(root.join("usr/lib/systemd")).unwrap();
    let _ = std::os::unix::fs::symlink(
        "/usr/lib/systemd/system",
        root.join("usr/lib/systemd/system"),
    );
    match std::process::Command::new("systemd-analyze")
        .args(["verify", "--root", root.to_str().unwrap()])
        .arg(units.join("depot-agent.service"))
        .arg(units.join("depot-agent.timer"))
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "systemd-analyze verify: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("skipping systemd-analyze verify: {e}")
        }
        Err(e) => panic!("systemd-analyze is needed under CI: {e}"),
    }

    // A newer release; the timer's command, run once, installs it through its install.sh.
    let v2 = vendor_tgz(&ws, "1.1.0");
    ws.ok(&["release", "add", "1.1.0", "--payload", &v2]);
    ws.ok(&["release", "publish", "1.1.0", "--channel", "stable"]);
    std::thread::sleep(Duration::from_millis(300));
    let exec = service
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    // The unit names the machine's paths; the machine here is the tree under DEPOT_ROOT.
    let words: Vec<String> = exec
        .split_whitespace()
        .map(|w| {
            if w.starts_with('/') {
                format!("{}{w}", root.display())
            } else {
                w.to_string()
            }
        })
        .collect();
    let out = std::process::Command::new(&words[0])
        .args(&words[1..])
        .env("DEPOT_ROOT", &root)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("installed 1.1.0"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let installed = std::fs::read_to_string(root.join("opt/client/installed")).unwrap();
    assert!(installed.starts_with("1.1.0"), "{installed}");
    let log = std::fs::read_to_string(state.join("install.log")).unwrap();
    assert!(log.contains("Installing backup client 1.1.0"), "{log}");
    let st = status(&state);
    assert_eq!(st["current_version"], "1.1.0");
    assert_eq!(st["last_error"], serde_json::Value::Null);

    // Not enrolled: said so, not a lock file error.
    let out = agent(&[
        "run",
        "--once",
        "--state-dir",
        root.join("nowhere").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("not enrolled"),
        "{err}"
    );

    let out = std::process::Command::new("sh")
        .arg("./uninstall.sh")
        .current_dir(&package)
        .env("DEPOT_ROOT", &root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for gone in [
        bin,
        state,
        units.join("depot-agent.service"),
        units.join("depot-agent.timer"),
    ] {
        assert!(!gone.exists(), "{} is still there", gone.display());
    }
}

/// Issue 13, item 3: an org's channel change, pin and unpin used to freeze its agents (the new
/// channel's manifest had a serial of its own, lower than the last accepted, so the agent
/// refused it as a replay and reported `failed`). Now serials grow across an org's channels:
/// the agent follows every change, with one last serial and no refusal.
#[test]
fn agents_follow_channel_changes_pins_and_unpins() {
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        eprintln!(
            "skipping: the end-to-end agent test builds linux-x86_64 packages for this machine"
        );
        return;
    }
    let listen = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{listen}");
    let ws = Workspace::init_with_env(&[("DEPOT_PUBLIC_URL", &base)]);
    ws.ok(&["org", "add", "physics", "--name", "Physics"]);
    let v1 = payloads(&ws, "1.0.0", 1);
    ws.ok(&["release", "add", "1.0.0", "--payload", &v1[2]]);
    ws.ok(&["release", "publish", "1.0.0", "--channel", "stable"]);
    ws.ok(&["release", "publish", "1.0.0", "--channel", "beta"]);
    let v11 = payloads(&ws, "1.1.0", 1);
    ws.ok(&["release", "add", "1.1.0", "--payload", &v11[2]]);
    ws.ok(&["release", "publish", "1.1.0", "--channel", "beta"]);
    let v12 = payloads(&ws, "1.2.0", 1);
    ws.ok(&["release", "add", "1.2.0", "--payload", &v12[2]]);
    ws.ok(&["release", "publish", "1.2.0", "--channel", "stable"]);
    ws.ok(&["release", "publish", "1.2.0", "--channel", "beta"]);
    let admin = ws
        .ok(&["token", "create", "--role", "admin"])
        .trim()
        .to_string();
    let _server = serve(&ws, &listen);
    let client = reqwest::blocking::Client::new();

    let export = ws.dir.path().join("export");
    ws.ok(&[
        "export",
        "--org",
        "physics",
        "--release",
        "1.0.0",
        "--out",
        export.to_str().unwrap(),
    ]);
    let package = ws.dir.path().join("package");
    common::run_in(
        ws.dir.path(),
        "unzip",
        &[
            "-q",
            export
                .join("physics-1.0.0-linux-x86_64.zip")
                .to_str()
                .unwrap(),
            "-d",
            package.to_str().unwrap(),
        ],
    );
    let a = ws.dir.path().join("agent-a");
    agent_ok(&[
        "enroll",
        "--state-dir",
        a.to_str().unwrap(),
        "--from",
        package.join("deploy.properties").to_str().unwrap(),
    ]);
    // Changes go through the API: the server that takes one answers the next check with it.
    let change = |edit: &dyn Fn(&mut serde_json::Value)| {
        let url = format!("{base}/v1/orgs/physics");
        let mut org: serde_json::Value = client
            .get(&url)
            .bearer_auth(&admin)
            .send()
            .unwrap()
            .json()
            .unwrap();
        edit(&mut org);
        let resp = client
            .put(&url)
            .bearer_auth(&admin)
            .json(&org)
            .send()
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.text().unwrap());
    };
    let run = || agent_ok(&["run", "--once", "--state-dir", a.to_str().unwrap()]);
    let serial = || status(&a)["last_manifest_serial"].as_u64().unwrap();
    let no_error = |step: &str| {
        let st = status(&a);
        assert!(st["last_error"].is_null(), "{step}: {st}");
    };

    // Pinned to 1.0.0 on stable: up to date.
    change(&|org| org["pinned_version"] = "1.0.0".into());
    assert!(run().contains("up to date"));
    no_error("pinned");
    let mut last = serial();

    // To beta, pin kept: still 1.0.0, on a manifest of beta with a higher serial.
    change(&|org| org["channel"] = "beta".into());
    assert!(run().contains("up to date"));
    no_error("to beta");
    assert!(
        serial() > last,
        "the beta manifest's serial follows stable's"
    );
    last = serial();

    // Pinned to 1.1.0, which only beta has.
    change(&|org| org["pinned_version"] = "1.1.0".into());
    let out = run();
    assert!(out.contains("installed 1.1.0"), "{out}");
    no_error("pin 1.1.0");
    assert!(serial() > last);
    last = serial();

    // Back to stable: 1.1.0 is not there; the pin offers nothing, and the agent accepts the
    // stable manifest signed now (its old one had a lower serial than beta's).
    change(&|org| org["channel"] = "stable".into());
    assert!(run().contains("up to date"));
    no_error("back to stable");
    assert!(serial() > last);
    last = serial();

    // Unpinned: the rollout target of stable, 1.2.0.
    change(&|org| org["pinned_version"] = serde_json::Value::Null);
    let out = run();
    assert!(out.contains("installed 1.2.0"), "{out}");
    no_error("unpinned");
    assert!(serial() > last);
}
