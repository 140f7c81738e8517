//! The build pipeline end to end through the `depot` binary, checked with the stock tools users
//! have: `unzip -t`, Python's `zipfile`, `sha256sum -c`, `minisign -V`.

mod common;

use common::{payloads, require_tool, Workspace};
use std::fs;

#[test]
fn publish_builds_signed_packages_that_stock_tools_verify() {
    let ws = Workspace::init();
    ws.ok(&[
        "org",
        "add",
        "physics",
        "--name",
        "Physical Sciences Division",
        "--seats",
        "250",
    ]);
    let paths = payloads(&ws, "1.0.0", 1);
    ws.ok(&[
        "release",
        "add",
        "1.0.0",
        "--payload",
        &paths[0],
        "--payload",
        &paths[1],
        "--payload",
        &paths[2],
    ]);
    ws.ok(&["release", "publish", "1.0.0", "--channel", "stable"]);
    let out = ws.dir.path().join("export");
    ws.ok(&[
        "export",
        "--org",
        "physics",
        "--release",
        "1.0.0",
        "--out",
        out.to_str().unwrap(),
    ]);

    let mut names: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "SHA256SUMS",
            "SHA256SUMS.minisig",
            "physics-1.0.0-linux-x86_64.zip",
            "physics-1.0.0-linux-x86_64.zip.minisig",
            "physics-1.0.0-macos-aarch64.zip",
            "physics-1.0.0-macos-aarch64.zip.minisig",
            "physics-1.0.0-windows-x86_64.zip",
            "physics-1.0.0-windows-x86_64.zip.minisig",
        ]
    );

    if require_tool("sha256sum") {
        common::run_in(&out, "sha256sum", &["-c", "SHA256SUMS"]);
    }
    let key = ws.public_key_line();
    if require_tool("minisign") {
        common::run_in(&out, "minisign", &["-Vm", "SHA256SUMS", "-P", &key]);
        for n in names.iter().filter(|n| n.ends_with(".zip")) {
            common::run_in(&out, "minisign", &["-Vm", n, "-P", &key]);
        }
    }
    if require_tool("unzip") {
        for n in names.iter().filter(|n| n.ends_with(".zip")) {
            common::run_in(&out, "unzip", &["-t", n]);
        }
    }
    if require_tool("python3") {
        let check = r#"
import json, sys, zipfile
path, payload_path, org, version, platform = sys.argv[1:6]
z = zipfile.ZipFile(path)
assert z.testzip() is None
infos = z.infolist()
payload = open(payload_path, 'rb').read()
assert infos[0].filename == payload_path.rsplit('/', 1)[1], infos[0].filename
assert z.read(infos[0]) == payload
assert infos[0].compress_type == zipfile.ZIP_STORED
names = [i.filename for i in infos]
assert names[1:] == sorted(names[1:]), names
meta = json.loads(z.read('depot-package.json'))
assert meta['org'] == org and meta['version'] == version and meta['platform'] == platform, meta
assert meta['payload']['size'] == len(payload)
import hashlib
assert meta['payload']['sha256'] == hashlib.sha256(payload).hexdigest()
props = z.read('deploy.properties').decode()
assert 'DEPOT_ORG=' + org in props, props
for i in infos:
    mode = (i.external_attr >> 16) & 0o777
    want = 0o755 if i.filename.endswith(('.sh', '.command')) else 0o644
    assert mode == want, (i.filename, oct(mode))
"#;
        for (platform, payload) in [("linux-x86_64", &paths[2]), ("windows-x86_64", &paths[0])] {
            let zip = out.join(format!("physics-1.0.0-{platform}.zip"));
            let payload = payload.split_once('=').unwrap().1;
            common::run_in(
                &out,
                "python3",
                &[
                    "-c",
                    check,
                    zip.to_str().unwrap(),
                    payload,
                    "physics",
                    "1.0.0",
                    platform,
                ],
            );
        }
    }
    ws.ok(&["verify"]);
}

#[test]
fn packages_are_deterministic_and_follow_config_changes() {
    let ws = Workspace::init();
    ws.ok(&["org", "add", "chem", "--name", "Chemistry"]);
    let paths = payloads(&ws, "2.0.0", 1);
    ws.ok(&["release", "add", "2.0.0", "--payload", &paths[2]]);
    ws.ok(&[
        "release",
        "publish",
        "2.0.0",
        "--channel",
        "stable",
        "--rollout",
        "10",
    ]);
    let first = ws.export_bytes("chem", "2.0.0", "chem-2.0.0-linux-x86_64.zip");

    // A config change rebuilds the org's packages with the new selection in them.
    let original = ws.ok(&["org", "show", "chem", "--json"]);
    fs::write(
        ws.dir.path().join("chem.toml"),
        "name = \"Chemistry\"\n[backup]\ninclude = [\"linux:/home/\"]\nexclude = [\"(?i).*\\\\.gjf$\"]\n",
    )
    .unwrap();
    ws.ok(&["org", "set", "chem", "--file", "chem.toml"]);
    let changed = ws.export_bytes("chem", "2.0.0", "chem-2.0.0-linux-x86_64.zip");
    assert_ne!(first, changed);
    assert!(common::zip_entry(&changed, "backup-selection.txt").contains(".gjf$"));

    // Setting the original configuration back gives byte-identical packages.
    let v: serde_json::Value = serde_json::from_str(&original).unwrap();
    let toml = format!(
        "name = {}\nseats = {}\nchannel = {}\n[backup]\ninclude = {}\nexclude = {}\n[settings]\n{}",
        v["name"],
        v["seats"],
        v["channel"],
        v["backup"]["include"],
        v["backup"]["exclude"],
        v["settings"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, val)| format!("{k:?} = {val}\n"))
            .collect::<String>()
    );
    fs::write(ws.dir.path().join("chem.toml"), toml).unwrap();
    ws.ok(&["org", "set", "chem", "--file", "chem.toml"]);
    let again = ws.export_bytes("chem", "2.0.0", "chem-2.0.0-linux-x86_64.zip");
    assert!(
        first == again,
        "rebuilding the same inputs gave different bytes"
    );

    // Building again with nothing changed builds nothing.
    let out = ws.output(&["build"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("0 packages built"),
        "{out:?}"
    );
    ws.ok(&["verify"]);
}

#[test]
fn overlay_files_replace_template_outputs_and_cannot_escape() {
    let ws = Workspace::init();
    ws.ok(&["org", "add", "library", "--name", "Library"]);
    let paths = payloads(&ws, "3.0.0", 1);
    ws.ok(&["release", "add", "3.0.0", "--payload", &paths[1]]);
    ws.ok(&["release", "publish", "3.0.0", "--channel", "stable"]);
    fs::create_dir_all(ws.dir.path().join("files")).unwrap();
    fs::write(
        ws.dir.path().join("files/detect.sh"),
        "#!/bin/sh\necho AGENT_USERNAME=custom\n",
    )
    .unwrap();
    fs::write(
        ws.dir.path().join("lib.toml"),
        "name = \"Library\"\n[files]\n\"detect-user.sh\" = \"files/detect.sh\"\n",
    )
    .unwrap();
    ws.ok(&["org", "set", "library", "--file", "lib.toml"]);
    let zip = ws.export_bytes("library", "3.0.0", "library-3.0.0-macos-aarch64.zip");
    assert!(common::zip_entry(&zip, "detect-user.sh").contains("AGENT_USERNAME=custom"));

    for evil in ["../escape.sh", "/etc/cron.d/x", "a/../../b", "dir\\\\x.sh"] {
        fs::write(
            ws.dir.path().join("evil.toml"),
            format!("name = \"Library\"\n[files]\n\"{evil}\" = \"files/detect.sh\"\n"),
        )
        .unwrap();
        let err = ws.fails(&["org", "set", "library", "--file", "evil.toml"]);
        assert!(err.contains("file name"), "{evil}: {err}");
    }
    // Nothing changed: the package is the same as before the refused attempts.
    assert!(zip == ws.export_bytes("library", "3.0.0", "library-3.0.0-macos-aarch64.zip"));
}

#[test]
fn bad_input_gives_one_line_errors_and_changes_nothing() {
    let ws = Workspace::init();
    let paths = payloads(&ws, "1.0.0", 1);
    let before = ws.ok(&["release", "list", "--json"]);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["org", "add", "Physics", "--name", "x"], "org code"),
        (vec!["org", "add", "a--b", "--name", "x"], "org code"),
        (
            vec!["org", "add", "physics", "--name", "x", "--channel", "Beta!"],
            "channel",
        ),
        (
            vec!["release", "add", "1.0", "--payload", &paths[0]],
            "version",
        ),
        (
            vec!["release", "add", "1.0.0", "--payload", "windows-arm=x.msi"],
            "platform",
        ),
        (
            vec![
                "release",
                "add",
                "1.0.0",
                "--payload",
                "linux-x86_64=/nonexistent/client.tgz",
            ],
            "nonexistent",
        ),
        (
            vec!["release", "publish", "9.9.9", "--channel", "stable"],
            "not found",
        ),
        (
            vec![
                "release",
                "publish",
                "1.0.0",
                "--channel",
                "stable",
                "--rollout",
                "101",
            ],
            "101",
        ),
        (
            vec![
                "export",
                "--org",
                "nosuch",
                "--release",
                "1.0.0",
                "--out",
                "x",
            ],
            "not found",
        ),
        (
            vec!["org", "set", "default", "--file", "missing.toml"],
            "missing.toml",
        ),
    ];
    for (args, needle) in cases {
        let err = ws.fails(&args);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: not one line: {err}"
        );
    }
    fs::write(
        ws.dir.path().join("bad.toml"),
        "name = \"x\"\n[settings]\nKEY = \"a\\nDEPLOYMENT_URL=https://evil\"\n",
    )
    .unwrap();
    assert!(ws
        .fails(&["org", "set", "default", "--file", "bad.toml"])
        .contains("settings.KEY"));
    fs::write(ws.dir.path().join("bad.toml"), "name = [1, 2\n").unwrap();
    assert!(ws
        .fails(&["org", "set", "default", "--file", "bad.toml"])
        .contains("bad.toml"));
    assert_eq!(before, ws.ok(&["release", "list", "--json"]));
}

#[test]
fn template_errors_name_the_file_and_line_and_publish_nothing() {
    let ws = Workspace::init();
    let paths = payloads(&ws, "1.0.0", 1);
    ws.ok(&["release", "add", "1.0.0", "--payload", &paths[2]]);
    let script = ws
        .dir
        .path()
        .join("installer-templates/linux/install.sh.tera");
    let mut text = fs::read_to_string(&script).unwrap();
    text.push_str("\necho {{ org.no_such_field }}\n");
    let line = text.lines().count();
    fs::write(&script, text).unwrap();
    let err = ws.fails(&["release", "publish", "1.0.0", "--channel", "stable"]);
    assert!(err.contains("linux/install.sh.tera"), "{err}");
    assert!(err.contains(&format!("line {line}")), "{err}");
    let listed = ws.ok(&["release", "list", "--json"]);
    assert!(
        listed.contains("\"channels\": []"),
        "the failed publish must not open a rollout: {listed}"
    );
}

#[test]
fn init_never_overwrites_the_key_and_refuses_a_readable_one() {
    let ws = Workspace::init();
    let key = fs::read(ws.dir.path().join("keys/depot.key")).unwrap();
    ws.ok(&["init"]);
    assert_eq!(key, fs::read(ws.dir.path().join("keys/depot.key")).unwrap());
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(
        ws.dir.path().join("keys/depot.key"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let err = ws.fails(&["org", "list"]);
    assert!(err.contains("chmod 600"), "{err}");
}

#[test]
fn tokens_are_shown_once_and_stored_hashed() {
    let ws = Workspace::init();
    ws.ok(&["org", "add", "physics", "--name", "Physics"]);
    let secret = ws.ok(&[
        "token", "create", "--role", "partner", "--org", "physics", "--name", "psd-it",
    ]);
    let secret = secret.trim();
    assert!(secret.starts_with("depot_") && secret.len() > 30);
    let db = fs::read(ws.dir.path().join("artifacts/depot.db")).unwrap();
    assert!(
        !db.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "the token is stored in clear"
    );
    let list = ws.ok(&["token", "list", "--json"]);
    assert!(list.contains("psd-it") && !list.contains(secret));
    let id = serde_json::from_str::<serde_json::Value>(&list).unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    ws.ok(&["token", "revoke", &id]);
    assert!(ws
        .ok(&["token", "list", "--json"])
        .contains("revoked_at\": \"2"));
    assert!(ws
        .fails(&["token", "create", "--role", "partner"])
        .contains("--org"));
}
