//! `depot org export` round-trips through `org set --file`, and `org set` refuses a file whose
//! revision is stale unless `--force` (issue 21 item 7); CLI paths of items 4 and 5.

mod common;

use common::Workspace;
use std::fs;

#[test]
fn export_round_trips_and_a_stale_revision_is_refused() {
    let ws = Workspace::init();
    ws.ok(&[
        "org", "add", "physics", "--name", "Physics", "--seats", "40",
    ]);
    let dir = ws.dir.path();
    fs::create_dir_all(dir.join("overlay")).unwrap();
    fs::write(
        dir.join("overlay/detect-user.sh"),
        "#!/bin/sh\necho alice\n",
    )
    .unwrap();
    let before_json = ws.ok(&["org", "show", "physics", "--json"]);
    let exported = ws.ok(&["org", "export", "physics"]);
    assert!(exported.contains("revision = "), "{exported}");
    assert!(exported.contains("[files]\n"), "{exported}");
    assert!(
        exported.contains("backup.frequency_minutes"),
        "defaults kept: {exported}"
    );
    // Setting the export back changes nothing.
    fs::write(dir.join("physics.toml"), &exported).unwrap();
    ws.ok(&["org", "set", "physics", "--file", "physics.toml"]);
    assert_eq!(
        without_updated(&ws.ok(&["org", "show", "physics", "--json"])),
        without_updated(&before_json)
    );
    assert_eq!(ws.ok(&["org", "export", "physics"]), exported);

    // Someone changes the org (here an overlay): the old export is stale.
    fs::write(
        dir.join("with-overlay.toml"),
        exported.replace(
            "[files]\n",
            "[files]\n\"detect-user.sh\" = \"overlay/detect-user.sh\"\n",
        ),
    )
    .unwrap();
    ws.ok(&["org", "set", "physics", "--file", "with-overlay.toml"]);
    let show = ws.ok(&["org", "show", "physics"]);
    assert!(
        show.contains("overlay file:     detect-user.sh (21 bytes)"),
        "{show}"
    );
    let refused = ws.fails(&["org", "set", "physics", "--file", "physics.toml"]);
    assert!(refused.contains("changed since revision"), "{refused}");
    assert!(refused.contains("--force"), "{refused}");
    assert!(ws
        .ok(&["org", "show", "physics"])
        .contains("detect-user.sh"));
    ws.ok(&["org", "set", "physics", "--file", "physics.toml", "--force"]);
    assert!(!ws
        .ok(&["org", "show", "physics"])
        .contains("detect-user.sh"));

    // An export with --out carries its overlay files and round-trips them.
    ws.ok(&[
        "org",
        "set",
        "physics",
        "--file",
        "with-overlay.toml",
        "--force",
    ]);
    let out = dir.join("exported");
    ws.ok(&["org", "export", "physics", "--out", out.to_str().unwrap()]);
    assert_eq!(
        fs::read_to_string(out.join("files/detect-user.sh")).unwrap(),
        "#!/bin/sh\necho alice\n"
    );
    let file = out.join("physics.toml");
    ws.ok(&["org", "set", "physics", "--file", file.to_str().unwrap()]);
    assert!(ws
        .ok(&["org", "show", "physics"])
        .contains("detect-user.sh"));

    // Item 4 from the command line: a pattern that does not compile is refused.
    let bad = exported.replace("linux:/home/", "[unclosed");
    fs::write(dir.join("bad.toml"), bad).unwrap();
    let message = ws.fails(&["org", "set", "physics", "--file", "bad.toml", "--force"]);
    assert!(
        message.contains("\"[unclosed\" is not a valid regular expression"),
        "{message}"
    );
}

/// An org's JSON without `updated_at`, which moves on every save.
fn without_updated(json: &str) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(json).unwrap();
    v.as_object_mut().unwrap().remove("updated_at");
    v
}

#[test]
fn channel_set_and_list_from_the_command_line() {
    let ws = Workspace::init();
    ws.ok(&[
        "org",
        "add",
        "chem",
        "--name",
        "Chemistry",
        "--channel",
        "beta",
    ]);
    let message = ws.fails(&["channel", "set", "stabel", "--min-version", "1.0.0"]);
    assert!(
        message.contains("channel stabel is not in use"),
        "{message}"
    );
    let message = ws.fails(&["channel", "set", "beta", "--min-version", "1.0.0"]);
    assert!(
        message.contains("release 1.0.0 does not exist"),
        "{message}"
    );
    let list = ws.ok(&["channel", "list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("beta") && l.contains("chem")),
        "{list}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ws.ok(&["channel", "list", "--json"])).unwrap();
    assert!(json
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["channel"] == "beta"));
}
