//! Blocker 3 of issue 21: `--config` from another directory uses the data beside the file, and
//! no command but `init` and `demo` creates a data directory or database.

mod common;

use common::{depot, Workspace};

#[test]
fn config_from_another_directory_finds_the_data_beside_it() {
    let ws = Workspace::init();
    ws.ok(&["org", "add", "physics", "--name", "Physics"]);
    let config = ws.dir.path().join("depot.toml");
    let elsewhere = tempfile::tempdir().unwrap();
    let out = depot()
        .current_dir(elsewhere.path())
        .env_remove("DEPOT_CONFIG")
        .env_remove("DEPOT_DATA_DIR")
        .args(["--config", config.to_str().unwrap(), "org", "list"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("physics"));
    let out = depot()
        .current_dir(elsewhere.path())
        .env_remove("DEPOT_CONFIG")
        .env_remove("DEPOT_DATA_DIR")
        .args(["--config", config.to_str().unwrap(), "release", "list"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Nothing was made where the command ran.
    assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);

    // `verify` says what it checked.
    let out = depot()
        .current_dir(elsewhere.path())
        .env_remove("DEPOT_CONFIG")
        .env_remove("DEPOT_DATA_DIR")
        .args(["--config", config.to_str().unwrap(), "verify"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stderr);
    let data_dir = ws.dir.path().join("artifacts");
    assert!(
        said.contains(&format!("data dir:   {}", data_dir.display())),
        "{said}"
    );
    assert!(
        said.contains(&format!("sqlite://{}", data_dir.join("depot.db").display())),
        "{said}"
    );
    assert!(said.contains("public URL: http://127.0.0.1:8080"), "{said}");
}

#[test]
fn a_missing_data_dir_fails_naming_the_path_and_is_not_created() {
    let empty = tempfile::tempdir().unwrap();
    for args in [
        vec!["org", "list"],
        vec!["release", "list"],
        vec!["verify"],
        vec!["token", "list"],
    ] {
        let out = depot()
            .current_dir(empty.path())
            .env_remove("DEPOT_CONFIG")
            .env_remove("DEPOT_DATA_DIR")
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        let message = String::from_utf8_lossy(&out.stderr);
        assert!(
            message.contains("no data directory at artifacts"),
            "{args:?}: {message}"
        );
        assert!(message.contains("depot init"), "{message}");
    }
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0);

    // A data dir that exists but holds no database is not a fresh depot either.
    let ws = Workspace::init();
    let other = ws.dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let message = ws.fails(&["--data-dir", other.to_str().unwrap(), "org", "list"]);
    assert!(
        message.contains(&format!(
            "no database at {}",
            other.join("depot.db").display()
        )),
        "{message}"
    );
    assert!(!other.join("depot.db").exists());
}
