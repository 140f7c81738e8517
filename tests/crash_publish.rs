//! A publish killed with SIGKILL at any moment leaves a consistent store: `depot verify` is clean,
//! only complete packages are listed, and re-running the publish completes it.

mod common;

use common::{payloads, Workspace};
use std::time::Instant;

#[test]
fn kill_during_publish_leaves_the_previous_state_and_rerun_completes() {
    let ws = Workspace::init();
    for i in 0..12 {
        ws.ok(&[
            "org",
            "add",
            &format!("dept{i}"),
            "--name",
            &format!("Department {i}"),
        ]);
    }
    let paths = payloads(&ws, "1.0.0", 24);
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

    // How long an uninterrupted publish takes on this machine, to spread the kills over it.
    let timing = Workspace::init();
    for i in 0..12 {
        timing.ok(&["org", "add", &format!("dept{i}"), "--name", "x"]);
    }
    let tpaths = payloads(&timing, "1.0.0", 24);
    timing.ok(&[
        "release",
        "add",
        "1.0.0",
        "--payload",
        &tpaths[0],
        "--payload",
        &tpaths[1],
        "--payload",
        &tpaths[2],
    ]);
    let started = Instant::now();
    timing.ok(&["release", "publish", "1.0.0", "--channel", "stable"]);
    let full = started.elapsed();

    for step in 1..=6u32 {
        let mut child = ws
            .command(&["release", "publish", "1.0.0", "--channel", "stable"])
            .spawn()
            .unwrap();
        std::thread::sleep(full * step / 7);
        let _ = child.kill();
        let _ = child.wait();
        ws.ok(&["verify"]);
        // Whatever was committed is whole: the packages listed agree with SHA256SUMS.
        let out = ws.dir.path().join(format!("after-kill-{step}"));
        if ws
            .output(&[
                "export",
                "--org",
                "dept0",
                "--release",
                "1.0.0",
                "--out",
                out.to_str().unwrap(),
            ])
            .status
            .success()
            && common::require_tool("sha256sum")
        {
            common::run_in(&out, "sha256sum", &["-c", "--strict", "SHA256SUMS"]);
        }
    }
    ws.ok(&["release", "publish", "1.0.0", "--channel", "stable"]);
    ws.ok(&["verify"]);
    let out = ws.dir.path().join("final");
    ws.ok(&[
        "export",
        "--org",
        "dept11",
        "--release",
        "1.0.0",
        "--out",
        out.to_str().unwrap(),
    ]);
    if common::require_tool("sha256sum") {
        common::run_in(&out, "sha256sum", &["-c", "SHA256SUMS"]);
    }
}
