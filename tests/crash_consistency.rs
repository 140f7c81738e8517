//! Crash consistency: `depot build`, `depot serve` receiving an upload and `depot agent run` are
//! killed with SIGKILL at many points. After each kill `depot verify` is clean, whatever is
//! served or installed is whole and verifiable, and re-running the operation completes it.
//! `depot verify` reports every artifact changed on disk and repairs nothing.
//!
//! Kill points are chosen deterministically where the test can see the process's progress (a
//! file reaching a size, a directory appearing) and otherwise by a ladder of delays that grows
//! until a run finishes on its own. Where exactly a kill lands varies from run to run; what the
//! tests assert holds for every landing point.

mod common;

use common::{free_port, Workspace};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A copy of `ws` (keys, database, blobs, templates), so that two histories start from the same
/// state and can be compared byte for byte.
fn copy_workspace(ws: &Workspace) -> Workspace {
    let copy = Workspace {
        dir: tempfile::tempdir().unwrap(),
        env: ws.env.clone(),
    };
    let status = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", ws.dir.path().display()))
        .arg(copy.dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    copy
}

/// Deterministic, incompressible bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ seed.wrapping_mul(0x2545_F491_4F6C_DD1D);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn write_payload(ws: &Workspace, name: &str, len: usize, seed: u64) -> (PathBuf, Vec<u8>) {
    let dir = ws.dir.path().join("payloads");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let bytes = noise(len, seed);
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

/// Spawns `command` quietly.
fn spawn_quiet(mut command: Command) -> Child {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Kills `child` with SIGKILL once `ready` says so (polled every half millisecond), or lets it
/// finish. Returns true when the kill landed, false when the child had already exited (then it
/// must have succeeded).
fn kill_when(mut child: Child, what: &str, mut ready: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{what} failed on its own: {status}");
            return false;
        }
        if ready() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what} neither finished nor reached its kill point"
        );
        std::thread::sleep(Duration::from_micros(500));
    }
    // `Child::kill` is SIGKILL on Unix: no destructor, no handler runs in the child.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    if status.success() {
        // It exited between the last look and the kill.
        return false;
    }
    true
}

/// Starts a fresh run with `spawn` and kills it `step`, `2·step`, ... after its start, until a
/// run finishes before its kill; `after_kill` checks what each kill left. Returns the number of
/// runs killed.
fn kill_on_a_ladder(
    what: &str,
    step: Duration,
    spawn: impl Fn() -> Child,
    mut after_kill: impl FnMut(usize),
) -> usize {
    for rung in 1..=200u32 {
        let deadline = Instant::now() + step * rung;
        if !kill_when(spawn(), what, || Instant::now() >= deadline) {
            return rung as usize - 1;
        }
        after_kill(rung as usize);
    }
    panic!("{what} never finished within 200 rungs of {step:?}");
}

/// An org's exported files of a release: name → bytes.
fn export(ws: &Workspace, org: &str, version: &str) -> BTreeMap<String, Vec<u8>> {
    let out = tempfile::tempdir_in(ws.dir.path()).unwrap();
    ws.ok(&[
        "export",
        "--org",
        org,
        "--release",
        version,
        "--out",
        out.path().to_str().unwrap(),
    ]);
    std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// Checks exported files as a machine receiving them would: `SHA256SUMS` lists exactly the
/// packages with their digests (`sha256sum -c`), every package reads whole with every entry's
/// CRC (`unzip -t`), and the signatures of `SHA256SUMS` and of every package verify with the
/// public key (`minisign -V`).
fn check_export(files: &BTreeMap<String, Vec<u8>>, public_key: &str) -> Result<(), String> {
    let key = minisign::PublicKey::from_base64(public_key).map_err(|e| e.to_string())?;
    let verify = |data: &[u8], sig: &str, what: &str| -> Result<(), String> {
        let sig_text = files.get(sig).ok_or_else(|| format!("{sig} is missing"))?;
        let sig_box = minisign::SignatureBox::from_string(&String::from_utf8_lossy(sig_text))
            .map_err(|e| format!("{sig}: {e}"))?;
        minisign::verify(
            &key,
            &sig_box,
            std::io::Cursor::new(data),
            true,
            false,
            false,
        )
        .map_err(|e| format!("signature of {what} does not verify: {e}"))
    };
    let sums = files.get("SHA256SUMS").ok_or("SHA256SUMS is missing")?;
    verify(sums, "SHA256SUMS.minisig", "SHA256SUMS")?;
    let sums = String::from_utf8(sums.clone()).map_err(|e| e.to_string())?;
    let mut listed = Vec::new();
    for line in sums.lines() {
        let (digest, name) = line
            .split_once("  ")
            .ok_or_else(|| format!("bad SHA256SUMS line {line:?}"))?;
        let bytes = files
            .get(name)
            .ok_or_else(|| format!("{name} is listed but missing"))?;
        if sha256_hex(bytes) != digest {
            return Err(format!("{name}: FAILED (sha256 does not match SHA256SUMS)"));
        }
        zip_test(bytes).map_err(|e| format!("{name}: {e}"))?;
        verify(bytes, &format!("{name}.minisig"), name)?;
        listed.push(name.to_string());
    }
    let packages: Vec<&String> = files.keys().filter(|n| n.ends_with(".zip")).collect();
    if packages.len() != listed.len() || packages.is_empty() {
        return Err(format!(
            "packages {packages:?} but SHA256SUMS lists {listed:?}"
        ));
    }
    Ok(())
}

/// What `unzip -t` does: read every entry to its end, which checks its CRC-32.
fn zip_test(bytes: &[u8]) -> Result<(), String> {
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| e.to_string())?;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| e.to_string())?;
        std::io::copy(&mut entry, &mut std::io::sink())
            .map_err(|e| format!("entry {}: {e}", entry.name()))?;
    }
    Ok(())
}

/// A zip's entries: name → bytes.
fn zip_entries(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    (0..archive.len())
        .filter_map(|i| {
            let mut entry = archive.by_index(i).unwrap();
            if entry.is_dir() {
                return None;
            }
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            Some((entry.name().to_string(), data))
        })
        .collect()
}

/// The files under `dir`: relative path → bytes.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e.path().strip_prefix(dir).unwrap();
            (
                rel.to_string_lossy().replace('\\', "/"),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Makes a read-only blob writable, so that a test can damage it.
fn writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

/// `depot serve` of a workspace as a child process, killed (SIGKILL) on drop.
struct Server {
    child: Child,
    listen: String,
}

impl Server {
    fn start(ws: &Workspace, listen: &str) -> Server {
        let child = spawn_quiet(ws.command(&["serve", "--listen", listen]));
        let started = Instant::now();
        while TcpStream::connect(listen).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "depot serve did not come up on {listen}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Server {
            child,
            listen: listen.to_string(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.listen)
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn admin_token(ws: &Workspace) -> String {
    ws.ok(&["token", "create", "--role", "admin"])
        .trim()
        .to_string()
}

/// `depot verify`'s stdout and whether it passed.
fn verify(ws: &Workspace) -> (bool, String) {
    let out = ws.output(&["verify"]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn assert_verify_clean(ws: &Workspace, when: &str) {
    let (ok, text) = verify(ws);
    assert!(ok, "depot verify is not clean {when}: {text}");
}

// ---------------------------------------------------------------------------------------------
// depot build
// ---------------------------------------------------------------------------------------------

const ORGS: [&str; 4] = ["chem", "phys", "bio", "math"];

#[test]
fn killed_builds_leave_a_verified_store_and_rebuild_to_identical_bytes() {
    let ws = Workspace::init();
    for org in ORGS {
        ws.ok(&["org", "add", org, "--name", org]);
    }
    let mut args = vec!["release".to_string(), "add".into(), "1.0.0".into()];
    for (i, (platform, name)) in [
        ("windows-x86_64", "client.msi"),
        ("macos-aarch64", "client.dmg"),
        ("linux-x86_64", "client.tgz"),
    ]
    .iter()
    .enumerate()
    {
        let (path, _) = write_payload(&ws, name, 3 << 20, i as u64);
        args.push("--payload".into());
        args.push(format!("{platform}={}", path.display()));
    }
    ws.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    ws.ok(&["release", "publish", "1.0.0", "--channel", "stable"]);
    let served_before: BTreeMap<&str, _> = ORGS
        .iter()
        .map(|org| (*org, export(&ws, org, "1.0.0")))
        .collect();

    // A template change makes every package out of date.
    let readme = ws
        .dir
        .path()
        .join("installer-templates/common/README.txt.tera");
    let mut text = std::fs::read_to_string(&readme).unwrap();
    text.push_str("\nRebuilt after a template change.\n");
    std::fs::write(&readme, text).unwrap();

    // The same history without kills, to compare the bytes with.
    let reference = copy_workspace(&ws);
    let started = Instant::now();
    reference.ok(&["build", "--org", "phys"]);
    let one_org = started.elapsed();
    let started = Instant::now();
    reference.ok(&["build"]);
    let all_orgs = started.elapsed();

    let public_key = ws.public_key_line();
    let check = |when: &str| {
        assert_verify_clean(&ws, when);
        for org in ["phys", "default"] {
            let files = export(&ws, org, "1.0.0");
            check_export(&files, &public_key)
                .unwrap_or_else(|e| panic!("{org}'s packages {when}: {e}"));
        }
    };

    let kills_one = kill_on_a_ladder(
        "depot build --org phys",
        (one_org / 10).max(Duration::from_millis(3)),
        || spawn_quiet(ws.command(&["build", "--org", "phys"])),
        |rung| {
            check(&format!(
                "after killing `depot build --org phys` (rung {rung})"
            ))
        },
    );
    let kills_all = kill_on_a_ladder(
        "depot build",
        (all_orgs / 10).max(Duration::from_millis(3)),
        || spawn_quiet(ws.command(&["build"])),
        |rung| check(&format!("after killing `depot build` (rung {rung})")),
    );
    eprintln!("killed `depot build --org phys` {kills_one} times, `depot build` {kills_all} times");
    assert!(kills_one + kills_all > 0, "no build was ever killed");

    // The kills changed nothing but time: the packages are those of an uninterrupted build.
    ws.ok(&["build"]);
    assert_verify_clean(&ws, "after the builds");
    for org in ORGS.iter().chain(&["default"]) {
        let files = export(&ws, org, "1.0.0");
        check_export(&files, &public_key).unwrap();
        assert!(
            files == export(&reference, org, "1.0.0"),
            "{org}'s packages differ from an uninterrupted build's"
        );
        if let Some(before) = served_before.get(org) {
            assert!(&files != before, "{org}'s packages were not rebuilt");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// depot verify
// ---------------------------------------------------------------------------------------------

fn db(ws: &Workspace) -> rusqlite::Connection {
    rusqlite::Connection::open(ws.dir.path().join("artifacts/depot.db")).unwrap()
}

fn blob_path(ws: &Workspace, hex: &str) -> PathBuf {
    ws.dir
        .path()
        .join("artifacts/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
}

/// The payload-part blob of a release's platform.
fn payload_blob(ws: &Workspace, version: &str, platform: &str) -> String {
    db(ws)
        .query_row(
            "SELECT blob FROM release_payloads WHERE version = ?1 AND platform = ?2",
            [version, platform],
            |row| row.get(0),
        )
        .unwrap()
}

/// The tail segment (blob, offset, len) of a package.
fn tail_segment(ws: &Workspace, org: &str, platform: &str) -> (String, u64, u64) {
    let segments: String = db(ws)
        .query_row(
            "SELECT segments FROM packages WHERE org = ?1 AND platform = ?2",
            [org, platform],
            |row| row.get(0),
        )
        .unwrap();
    let segments: serde_json::Value = serde_json::from_str(&segments).unwrap();
    let tail = &segments[1];
    (
        tail["blob"].as_str().unwrap().to_string(),
        tail["offset"].as_u64().unwrap(),
        tail["len"].as_u64().unwrap(),
    )
}

/// Replaces the character at the middle of the signature line of a minisign text.
fn damage_signature(minisig: &str) -> String {
    let mut lines: Vec<String> = minisig.lines().map(str::to_string).collect();
    let line = &mut lines[1];
    let at = line.len() / 2;
    let old = line.as_bytes()[at];
    let new = if old == b'A' { "B" } else { "A" };
    line.replace_range(at..at + 1, new);
    lines.join("\n") + "\n"
}

#[test]
fn verify_reports_every_artifact_changed_on_disk_and_repairs_nothing() {
    let pristine = Workspace::init();
    pristine.ok(&["org", "add", "phys", "--name", "Physics"]);
    let (linux, _) = write_payload(&pristine, "client.tgz", 300_000, 7);
    let (windows, _) = write_payload(&pristine, "client.msi", 200_000, 8);
    let linux_arg = format!("linux-x86_64={}", linux.display());
    let windows_arg = format!("windows-x86_64={}", windows.display());
    pristine.ok(&[
        "release",
        "add",
        "1.0.0",
        "--payload",
        &linux_arg,
        "--payload",
        &windows_arg,
    ]);
    pristine.ok(&["release", "publish", "1.0.0", "--channel", "stable"]);
    // Added but not published: its payload part is stored, no package refers to it yet.
    let (next, _) = write_payload(&pristine, "client-2.tgz", 250_000, 9);
    pristine.ok(&[
        "release",
        "add",
        "2.0.0",
        "--payload",
        &format!("linux-x86_64={}", next.display()),
    ]);
    assert_verify_clean(&pristine, "before any damage");

    type Damage = fn(&Workspace) -> Vec<String>;
    let cases: Vec<(&str, Damage)> = vec![
        ("a byte flipped in a payload part", |ws| {
            let hex = payload_blob(ws, "1.0.0", "linux-x86_64");
            let path = blob_path(ws, &hex);
            writable(&path);
            let mut bytes = std::fs::read(&path).unwrap();
            let at = bytes.len() / 2;
            bytes[at] ^= 0x40;
            std::fs::write(&path, bytes).unwrap();
            vec![hex, "phys/1.0.0/phys-1.0.0-linux-x86_64.zip".into()]
        }),
        ("a byte flipped in a package's own part", |ws| {
            let (hex, offset, len) = tail_segment(ws, "phys", "windows-x86_64");
            let path = blob_path(ws, &hex);
            writable(&path);
            let mut bytes = std::fs::read(&path).unwrap();
            bytes[(offset + len / 2) as usize] ^= 0x01;
            std::fs::write(&path, bytes).unwrap();
            vec![hex, "phys/1.0.0/phys-1.0.0-windows-x86_64.zip".into()]
        }),
        ("a package's blob truncated", |ws| {
            let (hex, offset, _) = tail_segment(ws, "phys", "linux-x86_64");
            let path = blob_path(ws, &hex);
            writable(&path);
            let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            file.set_len(offset + 10).unwrap();
            vec![hex, "phys/1.0.0/phys-1.0.0-linux-x86_64.zip".into()]
        }),
        ("a payload part removed", |ws| {
            let hex = payload_blob(ws, "1.0.0", "windows-x86_64");
            std::fs::remove_file(blob_path(ws, &hex)).unwrap();
            vec![hex, "phys/1.0.0/phys-1.0.0-windows-x86_64.zip".into()]
        }),
        ("the payload part of an unpublished release removed", |ws| {
            let hex = payload_blob(ws, "2.0.0", "linux-x86_64");
            std::fs::remove_file(blob_path(ws, &hex)).unwrap();
            vec![hex, "release 2.0.0".into()]
        }),
        (
            "the payload part of an unpublished release truncated",
            |ws| {
                let hex = payload_blob(ws, "2.0.0", "linux-x86_64");
                let path = blob_path(ws, &hex);
                writable(&path);
                let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                file.set_len(1000).unwrap();
                vec![hex]
            },
        ),
        ("a digest changed in SHA256SUMS", |ws| {
            let conn = db(ws);
            let text: String = conn
                .query_row("SELECT text FROM checksums WHERE org = 'phys'", [], |r| {
                    r.get(0)
                })
                .unwrap();
            let first = text.as_bytes()[0];
            let changed = format!("{}{}", if first == b'0' { '1' } else { '0' }, &text[1..]);
            conn.execute(
                "UPDATE checksums SET text = ?1 WHERE org = 'phys'",
                [changed],
            )
            .unwrap();
            vec!["SHA256SUMS of phys 1.0.0".into()]
        }),
        ("a byte changed in SHA256SUMS.minisig", |ws| {
            let conn = db(ws);
            let sig: String = conn
                .query_row(
                    "SELECT minisig FROM checksums WHERE org = 'phys'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            conn.execute(
                "UPDATE checksums SET minisig = ?1 WHERE org = 'phys'",
                [damage_signature(&sig)],
            )
            .unwrap();
            vec!["SHA256SUMS of phys 1.0.0".into(), "signature".into()]
        }),
        ("a byte changed in a package's .minisig", |ws| {
            let conn = db(ws);
            let where_ = "org = 'phys' AND platform = 'linux-x86_64'";
            let sig: String = conn
                .query_row(
                    &format!("SELECT minisig FROM packages WHERE {where_}"),
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            conn.execute(
                &format!("UPDATE packages SET minisig = ?1 WHERE {where_}"),
                [damage_signature(&sig)],
            )
            .unwrap();
            vec![
                "phys/1.0.0/phys-1.0.0-linux-x86_64.zip".into(),
                "signature".into(),
            ]
        }),
    ];

    for (what, damage) in cases {
        let ws = copy_workspace(&pristine);
        let expected = damage(&ws);
        let snapshot = tree(&ws.dir.path().join("artifacts/blobs"));
        let (ok, text) = verify(&ws);
        assert!(!ok, "depot verify passed with {what}: {text}");
        let mismatches: Vec<&str> = text.lines().filter(|l| l.starts_with("MISMATCH")).collect();
        let named = expected
            .iter()
            .all(|e| mismatches.iter().any(|l| l.contains(e.as_str())));
        assert!(
            named,
            "depot verify did not name {expected:?} for {what}:\n{text}"
        );
        // Nothing was repaired: the damage is still there and still reported.
        assert_eq!(
            tree(&ws.dir.path().join("artifacts/blobs")),
            snapshot,
            "{what}"
        );
        assert!(!verify(&ws).0, "the second verify passed with {what}");
    }

    // An exported package carries what detects a change to it: SHA256SUMS and signatures.
    let files = export(&pristine, "phys", "1.0.0");
    let key = pristine.public_key_line();
    check_export(&files, &key).unwrap();
    let name = "phys-1.0.0-linux-x86_64.zip";
    for (what, change) in [
        (
            "flipped",
            (|b: &mut Vec<u8>| b[1000] ^= 1) as fn(&mut Vec<u8>),
        ),
        ("truncated", |b: &mut Vec<u8>| b.truncate(b.len() - 1)),
    ] {
        let mut damaged = files.clone();
        change(damaged.get_mut(name).unwrap());
        let err = check_export(&damaged, &key).unwrap_err();
        assert!(err.contains(name), "{what}: {err}");
    }
    let mut removed = files.clone();
    removed.remove(name);
    assert!(check_export(&removed, &key).unwrap_err().contains(name));
    let mut resigned = files.clone();
    let sig = String::from_utf8(resigned["SHA256SUMS.minisig"].clone()).unwrap();
    resigned.insert(
        "SHA256SUMS.minisig".into(),
        damage_signature(&sig).into_bytes(),
    );
    assert!(check_export(&resigned, &key).is_err());
}

// ---------------------------------------------------------------------------------------------
// HTTP upload of a release
// ---------------------------------------------------------------------------------------------

const BOUNDARY: &str = "depot-crash-test-boundary";

/// A `POST /v1/releases` as raw bytes: the request head and multipart preamble, the payload, and
/// the closing boundary; sent by hand so that the test knows how much the server was given.
fn upload_request(
    listen: &str,
    token: &str,
    version: &str,
    payload_len: usize,
) -> (Vec<u8>, Vec<u8>) {
    let preamble = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"version\"\r\n\r\n{version}\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"notes\"\r\n\r\nLarge.\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"linux-x86_64\"; filename=\"client.tgz\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    );
    let epilogue = format!("\r\n--{BOUNDARY}--\r\n").into_bytes();
    let head = format!(
        "POST /v1/releases HTTP/1.1\r\nHost: {listen}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{preamble}",
        preamble.len() + payload_len + epilogue.len()
    );
    (head.into_bytes(), epilogue)
}

/// The temp files of uploads and blob writes under the data directory.
fn temp_files(ws: &Workspace, prefix: &str) -> Vec<PathBuf> {
    files_in(&ws.dir.path().join("artifacts/tmp"))
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .collect()
}

fn blob_count(ws: &Workspace) -> usize {
    walkdir::WalkDir::new(ws.dir.path().join("artifacts/blobs"))
        .into_iter()
        .filter(|e| e.as_ref().unwrap().file_type().is_file())
        .count()
}

fn listed_versions(server: &Server) -> Vec<String> {
    let list: serde_json::Value = reqwest::blocking::get(server.url("/v1/releases"))
        .unwrap()
        .json()
        .unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].as_str().unwrap().to_string())
        .collect()
}

/// What the server serves after a kill: a release is listed whole (its payload stored with the
/// uploaded digest) or not at all, every blob is a whole blob, and `depot verify` is clean.
fn check_served_after_upload_kill(ws: &Workspace, server: &Server, payload_sha: &str, when: &str) {
    if listed_versions(server).iter().any(|v| v == "2.0.0") {
        let release: serde_json::Value = reqwest::blocking::get(server.url("/v1/releases/2.0.0"))
            .unwrap()
            .json()
            .unwrap();
        assert!(
            release.to_string().contains(payload_sha),
            "release 2.0.0 is listed {when} without the uploaded payload: {release}"
        );
    }
    // Whatever is under blobs/ is a canonical, whole blob; temp files stay in tmp/.
    for entry in walkdir::WalkDir::new(ws.dir.path().join("artifacts/blobs")) {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            let name = entry.file_name().to_str().unwrap().to_string();
            assert!(
                name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()),
                "a stray file {} is among the blobs {when}",
                entry.path().display()
            );
        }
    }
    assert_verify_clean(ws, when);
}

#[test]
fn killed_server_mid_upload_keeps_no_partial_release_and_the_upload_reruns() {
    let ws = Workspace::init();
    let token = admin_token(&ws);
    let payload = noise(40 << 20, 11);
    let payload_sha = sha256_hex(&payload);
    let half = payload.len() / 2;

    // Where each kill lands, seen from outside: the upload's temp file reaching a size, the
    // payload part being written to its blob, the blob committed.
    enum KillPoint {
        Received(usize),
        StoringPart,
        PartStored,
    }
    let points = [
        KillPoint::Received(2 << 20),
        KillPoint::Received(half),
        KillPoint::Received(payload.len() - (1 << 20)),
        KillPoint::StoringPart,
        KillPoint::PartStored,
    ];
    let mut server = Server::start(&ws, &format!("127.0.0.1:{}", free_port()));
    for (i, point) in points.iter().enumerate() {
        let blobs_before = blob_count(&ws);
        let (head, epilogue) = upload_request(&server.listen, &token, "2.0.0", payload.len());
        let mut stream = TcpStream::connect(&server.listen).unwrap();
        stream.write_all(&head).unwrap();
        let send_until = match point {
            KillPoint::Received(n) => *n,
            _ => payload.len(),
        };
        // The server may already be dead below; the writes then fail, which is fine.
        let _ = stream.write_all(&payload[..send_until]);
        if send_until == payload.len() {
            let _ = stream.write_all(&epilogue);
        }
        let ready = || match point {
            // The temp file lags the socket by the writer's 1 MiB buffer.
            KillPoint::Received(n) => temp_files(&ws, "upload-")
                .iter()
                .any(|p| file_len(p) + (1 << 20) >= *n as u64),
            KillPoint::StoringPart => {
                temp_files(&ws, "blob-").iter().any(|p| file_len(p) > 0)
                    || blob_count(&ws) > blobs_before
            }
            KillPoint::PartStored => blob_count(&ws) > blobs_before,
        };
        let started = Instant::now();
        while !ready() && started.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_micros(500));
        }
        server.kill();
        drop(stream);
        server = Server::start(&ws, &format!("127.0.0.1:{}", free_port()));
        check_served_after_upload_kill(
            &ws,
            &server,
            &payload_sha,
            &format!("after killing the server at point {i}"),
        );
        let committed = listed_versions(&server).iter().any(|v| v == "2.0.0");
        eprintln!(
            "server killed at point {i}: {} temp files left, release {}",
            temp_files(&ws, "").len(),
            if committed { "committed" } else { "absent" }
        );
        if committed {
            // The kill came after the commit: the upload had completed.
            break;
        }
    }

    // A kill leaves its temp files behind; once they are stale, the next start removes them.
    let leftovers = temp_files(&ws, "");
    assert!(
        !leftovers.is_empty(),
        "no kill landed while the upload was received"
    );
    let two_hours_ago = SystemTime::now() - Duration::from_secs(2 * 3600);
    for path in &leftovers {
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
    }
    server.kill();
    let server = Server::start(&ws, &format!("127.0.0.1:{}", free_port()));
    assert_eq!(temp_files(&ws, ""), Vec::<PathBuf>::new());

    // The same upload again succeeds (or finds the release that an upload completed).
    if !listed_versions(&server).iter().any(|v| v == "2.0.0") {
        let form = reqwest::blocking::multipart::Form::new()
            .text("version", "2.0.0")
            .text("notes", "Large.")
            .part(
                "linux-x86_64",
                reqwest::blocking::multipart::Part::bytes(payload.clone()).file_name("client.tgz"),
            );
        let response = reqwest::blocking::Client::new()
            .post(server.url("/v1/releases"))
            .bearer_auth(&token)
            .multipart(form)
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 201, "{:?}", response.text());
    }
    check_served_after_upload_kill(&ws, &server, &payload_sha, "after the upload");
    assert!(listed_versions(&server).iter().any(|v| v == "2.0.0"));
    assert_eq!(temp_files(&ws, "upload-"), Vec::<PathBuf>::new());

    // A client that goes away mid-upload leaves nothing behind.
    for sent in [0, 3 << 20, payload.len()] {
        let (head, _) = upload_request(&server.listen, &token, "3.0.0", payload.len());
        let mut stream = TcpStream::connect(&server.listen).unwrap();
        stream.write_all(&head).unwrap();
        stream.write_all(&payload[..sent]).unwrap();
        let started = Instant::now();
        while temp_files(&ws, "upload-").is_empty()
            && sent > 0
            && started.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(stream);
        let started = Instant::now();
        while !temp_files(&ws, "").is_empty() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "an abandoned upload ({sent} bytes sent) left {:?}",
                temp_files(&ws, "")
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!listed_versions(&server).iter().any(|v| v == "3.0.0"));
    }
    assert_verify_clean(&ws, "after abandoned uploads");
}

// ---------------------------------------------------------------------------------------------
// The agent
// ---------------------------------------------------------------------------------------------

/// A TCP proxy to `upstream` that, while `stall` is set, stops passing a response on after its
/// first `limit` bytes and holds the connection: a download that hangs mid-way, deterministically.
fn stalling_proxy(upstream: String, limit: usize, stall: Arc<AtomicBool>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { continue };
            let Ok(mut server) = TcpStream::connect(&upstream) else {
                continue;
            };
            let mut client_reader = client.try_clone().unwrap();
            let mut server_writer = server.try_clone().unwrap();
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut client_reader, &mut server_writer);
                let _ = server_writer.shutdown(std::net::Shutdown::Write);
            });
            let stall = Arc::clone(&stall);
            std::thread::spawn(move || {
                let mut buf = [0u8; 16384];
                let mut sent = 0usize;
                while let Ok(n) = server.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    while sent >= limit && stall.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    sent += n;
                    if client.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = client.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    address
}

fn agent(args: &[&str]) -> Command {
    let mut command = common::depot();
    command.arg("agent").args(args);
    command
}

fn agent_ok(args: &[&str]) -> String {
    let out = agent(args).output().unwrap();
    assert!(
        out.status.success(),
        "depot agent {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The payloads are random bytes, which the package's own install.sh would refuse: this test is
/// about the agent's own steps being crash-safe, so the install command is `true`.
fn run_once(dir: &Path) -> Command {
    agent(&[
        "run",
        "--once",
        "--install-command",
        "true",
        "--state-dir",
        dir.to_str().unwrap(),
    ])
}

fn agent_status(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&agent_ok(&[
        "status",
        "--state-dir",
        dir.to_str().unwrap(),
        "--json",
    ]))
    .unwrap()
}

/// The version `current` points at.
fn current_version(dir: &Path) -> Option<String> {
    let target = std::fs::read_link(dir.join("current")).ok()?;
    let version = target.file_name()?.to_str()?.to_string();
    assert_eq!(
        target,
        Path::new("versions").join(&version),
        "current points outside versions/"
    );
    Some(version)
}

/// After a kill: `current` points at a version whose files are exactly its package's, and the
/// committed state names such a version too.
fn check_agent(dir: &Path, unpacked: &BTreeMap<&str, BTreeMap<String, Vec<u8>>>, when: &str) {
    let current = current_version(dir).unwrap_or_else(|| panic!("no current version {when}"));
    let committed = agent_status(dir)["current_version"]
        .as_str()
        .unwrap()
        .to_string();
    for version in [&current, &committed] {
        let want = unpacked
            .get(version.as_str())
            .unwrap_or_else(|| panic!("{version} is not a version the agent may be on {when}"));
        assert!(
            &tree(&dir.join("versions").join(version)) == want,
            "versions/{version} is not whole {when}"
        );
    }
}

#[test]
fn killed_agent_keeps_a_whole_current_version_and_the_next_run_completes_the_update() {
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        eprintln!("skipping: the agent test builds linux-x86_64 packages for this machine");
        return;
    }
    let listen = format!("127.0.0.1:{}", free_port());
    let ws = Workspace::init_with_env(&[("DEPOT_PUBLIC_URL", &format!("http://{listen}"))]);
    ws.ok(&[
        "org", "add", "physics", "--name", "Physics", "--seats", "50",
    ]);
    let release = |version: &str, len: usize| {
        let (path, _) = write_payload(&ws, &format!("client-{version}.tgz"), len, len as u64);
        ws.ok(&[
            "release",
            "add",
            version,
            "--payload",
            &format!("linux-x86_64={}", path.display()),
        ]);
        ws.ok(&["release", "publish", version, "--channel", "stable"]);
    };
    release("1.0.0", 100_000);
    let _server = Server::start(&ws, &listen);
    let package = |version: &str| {
        export(&ws, "physics", version)
            .remove(&format!("physics-{version}-linux-x86_64.zip"))
            .unwrap()
    };
    let properties = ws.dir.path().join("deploy.properties");
    std::fs::write(
        &properties,
        &zip_entries(&package("1.0.0"))["deploy.properties"],
    )
    .unwrap();

    let stall = Arc::new(AtomicBool::new(false));
    let proxy = stalling_proxy(listen.clone(), 2 << 20, Arc::clone(&stall));
    let stages = [
        "download hangs",
        "downloaded",
        "unpacking",
        "unpacked",
        "switched",
        "ladder",
    ];
    let agents: Vec<PathBuf> = stages
        .iter()
        .map(|stage| {
            ws.dir
                .path()
                .join(format!("agent-{}", stage.replace(' ', "-")))
        })
        .collect();
    for (dir, stage) in agents.iter().zip(stages) {
        let mut args = vec![
            "enroll",
            "--state-dir",
            dir.to_str().unwrap(),
            "--from",
            properties.to_str().unwrap(),
        ];
        let via_proxy = format!("http://{proxy}");
        if stage == "download hangs" {
            args.extend(["--server", &via_proxy]);
        }
        agent_ok(&args);
    }

    // Every agent runs 1.1.0 before 1.2.0, large, is published.
    release("1.1.0", 200_000);
    std::thread::sleep(Duration::from_millis(300));
    for dir in &agents {
        assert!(run_once(dir).output().unwrap().status.success());
        assert_eq!(current_version(dir).as_deref(), Some("1.1.0"));
    }
    release("1.2.0", 24 << 20);
    std::thread::sleep(Duration::from_millis(300));
    let new_package = package("1.2.0");
    let size = new_package.len() as u64;
    let unpacked: BTreeMap<&str, BTreeMap<String, Vec<u8>>> = [
        ("1.1.0", zip_entries(&package("1.1.0"))),
        ("1.2.0", zip_entries(&new_package)),
    ]
    .into_iter()
    .collect();

    let finish = |dir: &Path, when: &str| {
        let out = run_once(dir).output().unwrap();
        assert!(
            out.status.success(),
            "the run after {when} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(current_version(dir).as_deref(), Some("1.2.0"), "{when}");
        let status = agent_status(dir);
        assert_eq!(status["current_version"], "1.2.0", "{when}");
        assert_eq!(status["previous_version"], "1.1.0", "{when}");
        check_agent(dir, &unpacked, &format!("after the run after {when}"));
        assert_eq!(
            tree(&dir.join("versions/1.1.0")),
            unpacked["1.1.0"],
            "the previous version is not kept whole {when}"
        );
        assert!(files_in(&dir.join("downloads")).is_empty(), "{when}");
    };

    let mut landed = Vec::new();
    for (dir, stage) in agents.iter().zip(stages) {
        let part = dir.join("downloads/physics-1.2.0-linux-x86_64.zip.part");
        let versions = dir.join("versions");
        if stage == "ladder" {
            let kills = kill_on_a_ladder(
                "depot agent run",
                Duration::from_millis(15),
                || spawn_quiet(run_once(dir)),
                |rung| check_agent(dir, &unpacked, &format!("after a kill at rung {rung}")),
            );
            landed.push(format!("{kills} kills on the ladder"));
            finish(dir, "the ladder");
            continue;
        }
        stall.store(stage == "download hangs", Ordering::SeqCst);
        let killed = kill_when(spawn_quiet(run_once(dir)), stage, || match stage {
            "download hangs" => file_len(&part) >= 1 << 20,
            "downloaded" => file_len(&part) == size,
            "unpacking" => versions.join("1.2.0.tmp").exists(),
            "unpacked" => versions.join("1.2.0").exists(),
            _ => current_version(dir).as_deref() == Some("1.2.0"),
        });
        stall.store(false, Ordering::SeqCst);
        if killed {
            landed.push(stage.to_string());
            check_agent(dir, &unpacked, &format!("after a kill when {stage}"));
        }
        if stage == "download hangs" {
            assert!(
                killed && file_len(&part) > 0,
                "the hung download was not killed"
            );
        }
        finish(dir, &format!("a kill when {stage}"));
    }
    eprintln!("agent kills landed: {landed:?}");
}
