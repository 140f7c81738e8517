//! What the `depot` binary prints and records about itself: a closed pipe ends it quietly, its
//! audit actor names the person and host, and an org whose packages fail is reported.

mod common;

use common::Workspace;
use depot::store::{AuditFilter, MetaStore, SqliteStore};
use std::process::Stdio;

/// Issue 13 item 11: `depot release list | true` panicked with "failed printing to stdout".
#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    let ws = Workspace::init();
    for i in 0..3 {
        ws.ok(&["org", "add", &format!("org{i}"), "--name", "An org"]);
    }
    for args in [
        &["org", "list"][..],
        &["--json", "org", "list"][..],
        &["key", "show"][..],
    ] {
        let mut child = ws
            .command(args)
            .env("RUST_BACKTRACE", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before the command has started writing.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?} {stderr}", out.status);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.contains("Broken pipe"), "{args:?}: {stderr}");
    }
}

/// Issue 13 item 12: the audit actor of the command line was `cli:unknown`.
#[test]
fn the_audit_actor_names_the_user_and_host() {
    let ws = Workspace::init();
    let out = ws
        .command(&["org", "add", "physics", "--name", "Physics"])
        .env("USER", "alice")
        .env_remove("SUDO_USER")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta = SqliteStore::open(&ws.dir.path().join("artifacts/depot.db")).unwrap();
    let events = meta
        .query_audit(&AuditFilter {
            action: Some("org.create".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(events.len(), 1);
    let actor = &events[0].actor;
    let host = actor
        .strip_prefix("cli:alice@")
        .unwrap_or_else(|| panic!("{actor}"));
    assert!(!host.is_empty() && host != "unknown", "{actor}");
}

/// Issue 13 item 2: an org whose packages fail is named on stderr, the others are built, and
/// the command exits non-zero.
#[test]
fn a_failing_org_is_reported_and_the_others_are_built() {
    let ws = Workspace::init();
    let dir = ws.dir.path();
    ws.ok(&["org", "add", "physics", "--name", "Physics"]);
    ws.ok(&["org", "add", "chemistry", "--name", "Chemistry"]);
    std::fs::write(dir.join("overlay.bin"), "not the client").unwrap();
    std::fs::write(
        dir.join("physics.toml"),
        "name = \"Physics\"\n[files]\n\"client-next.tgz\" = \"overlay.bin\"\n",
    )
    .unwrap();
    ws.ok(&["org", "set", "physics", "--file", "physics.toml"]);
    std::fs::write(dir.join("client-next.tgz"), vec![7u8; 4096]).unwrap();
    ws.ok(&[
        "release",
        "add",
        "1.0.0",
        "--payload",
        "linux-x86_64=client-next.tgz",
    ]);
    let out = ws.output(&["release", "publish", "1.0.0", "--channel", "stable"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("org physics: packages not built") && stderr.contains("client-next.tgz"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("published"));
    let built = ws.ok(&["build", "--org", "chemistry"]);
    assert!(
        built.is_empty(),
        "chemistry's package was built by the publish: {built}"
    );
    let meta = SqliteStore::open(&dir.join("artifacts/depot.db")).unwrap();
    let packages = meta.list_packages(None, None).unwrap();
    let orgs: Vec<&str> = packages.iter().map(|p| p.org.as_str()).collect();
    assert!(
        orgs.contains(&"chemistry") && orgs.contains(&"default"),
        "{orgs:?}"
    );
    assert!(!orgs.contains(&"physics"), "{orgs:?}");
}
