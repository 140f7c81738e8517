//! The README's first command: `depot demo` prepares a working system and serves it.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn demo_prepares_verifiable_packages_and_serves_them() {
    let dir = tempfile::tempdir().unwrap();
    let demo_dir = dir.path().join("demo");
    let listen = format!("127.0.0.1:{}", common::free_port());
    let mut child = common::depot()
        .args([
            "demo",
            "--listen",
            &listen,
            "--payload-mib",
            "1",
            "--dir",
            demo_dir.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let summary: Vec<String> = lines
        .by_ref()
        .map_while(Result::ok)
        .take_while(|l| !l.contains("audit?org="))
        .collect();
    // Keep reading, so the demo never writes into a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let token = |label: &str| {
        summary
            .iter()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap()
            .split_whitespace()
            .last()
            .unwrap()
            .to_string()
    };
    let admin = token("admin ");
    let partner = token("partner physics");

    let base = format!("http://{listen}");
    let client = reqwest::blocking::Client::new();
    let started = Instant::now();
    while client.get(format!("{base}/healthz")).send().is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "demo server did not come up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The public default installer and its checksum line agree.
    let sums = client
        .get(format!("{base}/v1/download/default/11.3.0/SHA256SUMS"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let zip = client
        .get(format!(
            "{base}/v1/download/default/11.3.0/default-11.3.0-linux-x86_64.zip"
        ))
        .send()
        .unwrap();
    assert_eq!(zip.status(), 200);
    let bytes = zip.bytes().unwrap();
    let digest = depot::domain::Sha256::digest(&bytes).to_hex();
    assert!(
        sums.contains(&format!("{digest}  default-11.3.0-linux-x86_64.zip")),
        "{sums}"
    );

    // Department packages need a token of that org; the partner's cannot read another org.
    let physics = format!("{base}/v1/download/physics/11.3.0/physics-11.3.0-windows-x86_64.zip");
    assert_eq!(client.head(&physics).send().unwrap().status(), 401);
    assert_eq!(
        client
            .head(&physics)
            .bearer_auth(&partner)
            .send()
            .unwrap()
            .status(),
        200
    );
    let medicine = format!("{base}/v1/download/medicine/11.3.0/medicine-11.3.0-windows-x86_64.zip");
    assert_eq!(
        client
            .head(&medicine)
            .bearer_auth(&partner)
            .send()
            .unwrap()
            .status(),
        404
    );
    let orgs: serde_json::Value = client
        .get(format!("{base}/v1/orgs"))
        .bearer_auth(&admin)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(orgs.as_array().unwrap().len(), 4, "{orgs}");

    let _ = child.kill();
    let _ = child.wait();

    // The export the demo wrote verifies with the stock tools.
    let export = demo_dir.join("export/physics-11.3.0");
    if common::require_tool("sha256sum") {
        common::run_in(&export, "sha256sum", &["-c", "SHA256SUMS"]);
    }
    if common::require_tool("minisign") {
        let key = std::fs::read_to_string(demo_dir.join("keys/depot.pub")).unwrap();
        let key = key.lines().nth(1).unwrap();
        common::run_in(&export, "minisign", &["-Vm", "SHA256SUMS", "-P", key]);
    }
}
