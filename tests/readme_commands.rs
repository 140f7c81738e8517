//! The README's download and verify commands, run as written (issue 21 item 8): the block after
//! `<!-- readme-test: download -->` runs under `sh -e` with real curl, sha256sum and minisign
//! against a test server; only the README's address is replaced by the test server's.

mod common;
mod server_support;

use server_support::*;

fn block(readme: &str, marker: &str) -> String {
    let from = readme
        .find(marker)
        .unwrap_or_else(|| panic!("README.md has no {marker}"));
    let rest = &readme[from..];
    let start = rest.find("```sh\n").expect("a sh block after the marker") + 6;
    let end = rest[start..].find("```").expect("the block ends") + start;
    rest[start..end].to_string()
}

#[test]
fn readme_download_and_verify_commands_work_as_written() {
    if !["curl", "sha256sum", "minisign"]
        .iter()
        .all(|tool| common::require_tool(tool))
    {
        return;
    }
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let commands = block(&readme, "<!-- readme-test: download -->");
    assert!(commands.contains("curl"), "{commands}");
    let f = spawn_full_app();
    let script = commands.replace("http://127.0.0.1:8080", &f.app.base);
    // `depot` on PATH, as the README assumes; run where the full app keeps its key.
    let bin = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_depot"), bin.path().join("depot")).unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = || {
        std::process::Command::new("sh")
            .args(["-e", "-c", &script])
            .current_dir(f.app.dir.path())
            .env("TOKEN", &f.physics)
            .env("PATH", &path)
            .env_remove("DEPOT_CONFIG")
            .env_remove("DEPOT_DATA_DIR")
            .output()
            .unwrap()
    };
    let out = run();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the README's commands failed:\n{script}\n{said}"
    );
    let file = f.app.dir.path().join("physics-11.2.1-windows-x86_64.zip");
    assert!(file.is_file(), "{said}");
    assert!(
        said.contains("physics-11.2.1-windows-x86_64.zip: OK"),
        "{said}"
    );
    assert!(
        said.contains("Signature and comment signature verified"),
        "{said}"
    );

    // Resuming: a partial file is completed by running the commands again.
    let whole = std::fs::read(&file).unwrap();
    std::fs::write(&file, &whole[..whole.len() / 3]).unwrap();
    for name in [
        "SHA256SUMS",
        "SHA256SUMS.minisig",
        "physics-11.2.1-windows-x86_64.zip.minisig",
    ] {
        std::fs::remove_file(f.app.dir.path().join(name)).unwrap();
    }
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&file).unwrap(), whole);
}
