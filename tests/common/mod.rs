//! Helpers shared by the integration tests: a workspace with an initialised depot, the binary,
//! sample payloads, and the stock tools.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// The `depot` binary under test.
pub fn depot() -> Command {
    Command::new(env!("CARGO_BIN_EXE_depot"))
}

/// True when `tool` is on PATH. Missing tools fail the test under CI=true and skip it otherwise.
pub fn require_tool(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{tool} is required under CI=true but is not installed");
        }
        eprintln!("skipping the {tool} checks: {tool} is not installed");
    }
    found
}

pub fn run_in(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A temporary directory with `depot init` done in it; commands run there with its defaults.
pub struct Workspace {
    pub dir: tempfile::TempDir,
    /// Environment every command of this workspace gets (e.g. `DEPOT_PUBLIC_URL`).
    pub env: Vec<(String, String)>,
}

impl Workspace {
    pub fn init() -> Self {
        Self::init_with_env(&[])
    }

    pub fn init_with_env(env: &[(&str, &str)]) -> Self {
        let ws = Workspace {
            dir: tempfile::tempdir().unwrap(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        ws.ok(&["init"]);
        ws
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = depot();
        cmd.current_dir(self.dir.path())
            .args(args)
            .env_remove("DEPOT_CONFIG")
            .env_remove("DEPOT_DATA_DIR")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd
    }

    pub fn output(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "depot {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a command that must fail; returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            !out.status.success(),
            "depot {args:?} should have failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub fn public_key_line(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("keys/depot.pub")).unwrap();
        text.lines().nth(1).unwrap().trim().to_string()
    }

    /// Exports an org's packages of a release and returns one file's bytes.
    pub fn export_bytes(&self, org: &str, version: &str, file: &str) -> Vec<u8> {
        let out = tempfile::tempdir_in(self.dir.path()).unwrap();
        self.ok(&[
            "export",
            "--org",
            org,
            "--release",
            version,
            "--out",
            out.path().to_str().unwrap(),
        ]);
        std::fs::read(out.path().join(file)).unwrap()
    }
}

/// Writes sample payloads of `mib` MiB for windows-x86_64, macos-aarch64 and linux-x86_64;
/// returns `PLATFORM=PATH` arguments in that order.
pub fn payloads(ws: &Workspace, version: &str, mib: usize) -> Vec<String> {
    let dir = ws.dir.path().join("payloads").join(version);
    std::fs::create_dir_all(&dir).unwrap();
    [
        ("windows-x86_64", "msi"),
        ("macos-aarch64", "dmg"),
        ("linux-x86_64", "tgz"),
    ]
    .iter()
    .enumerate()
    .map(|(i, (platform, ext))| {
        let path = dir.join(format!("client-{version}.{ext}"));
        let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ (i as u64 + 1) ^ version.len() as u64;
        let bytes: Vec<u8> = (0..mib * 1024 * 1024)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        std::fs::write(&path, bytes).unwrap();
        format!("{platform}={}", path.display())
    })
    .collect()
}

/// The text of one entry of a zip held in memory.
pub fn zip_entry(zip: &[u8], name: &str) -> String {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    let mut entry = archive.by_name(name).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
    text
}

/// A loopback port nothing listens on right now, for a server started as a child process.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
