//! Shared by the `server_*` integration tests: a real server on a random loopback port over a
//! fresh data directory, with fixture orgs, tokens, releases and packages inserted through the
//! store traits.

#![allow(dead_code)]

use depot::domain::{Channel, EntryName, OrgCode, Platform, RegistrationKey, Sha256, Version};
use depot::org::{Org, OrgConfig};
use depot::package::PayloadPart;
use depot::server::{router, serve, AppState, ServerOptions};
use depot::store::{
    BlobStore, Checksums, FsBlobStore, MetaStore, Package, Release, ReleasePayload, Role, Rollout,
    Segment, SqliteStore, TokenRecord,
};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub const ADMIN: &str = "depot_admin_secret";
pub const PHYSICS: &str = "depot_physics_partner_secret";
pub const CHEMISTRY: &str = "depot_chemistry_partner_secret";
pub const REVOKED: &str = "depot_revoked_physics_secret";

/// A package fixture: its bytes as the test expects them, and its record.
pub struct PackageFixture {
    pub bytes: Vec<u8>,
    pub package: Package,
}

pub struct TestApp {
    pub address: SocketAddr,
    pub base: String,
    pub dir: tempfile::TempDir,
    pub meta: Arc<dyn MetaStore>,
    pub blobs: Arc<dyn BlobStore>,
    /// Shutdown trigger; dropping the app also stops the server.
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    pub runtime: tokio::runtime::Runtime,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn client(&self) -> reqwest::blocking::Client {
        reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap()
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> reqwest::blocking::Response {
        let mut request = self.client().get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().unwrap()
    }

    /// Sends `request_line` and headers verbatim, so that no client normalises the path.
    pub fn raw(&self, request: &str) -> (u16, String) {
        let mut stream = std::net::TcpStream::connect(self.address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let text = String::from_utf8_lossy(&response).to_string();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, text)
    }

    /// Stops accepting and waits for the server to finish its grace period.
    pub fn shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            self.runtime.block_on(server).unwrap();
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub fn options() -> ServerOptions {
    ServerOptions {
        shutdown_grace: Duration::from_secs(20),
        ..ServerOptions::default()
    }
}

/// Stores over a fresh data directory, without fixtures.
pub fn stores(dir: &std::path::Path) -> (Arc<dyn MetaStore>, Arc<dyn BlobStore>) {
    let meta: Arc<dyn MetaStore> = Arc::new(SqliteStore::open(&dir.join("depot.db")).unwrap());
    let blobs: Arc<dyn BlobStore> = Arc::new(FsBlobStore::open(dir).unwrap());
    (meta, blobs)
}

/// Starts the server over the stores.
pub fn start(
    dir: tempfile::TempDir,
    meta: Arc<dyn MetaStore>,
    blobs: Arc<dyn BlobStore>,
    options: ServerOptions,
) -> TestApp {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let state = AppState::new(Arc::clone(&meta), Arc::clone(&blobs), options.clone());
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let address = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(async move {
        serve(listener, router(state), &options, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    TestApp {
        address,
        base: format!("http://{address}"),
        dir,
        meta,
        blobs,
        shutdown: Some(tx),
        server: Some(server),
        runtime,
    }
}

pub fn org(code: &str, channel: &str) -> Org {
    let mut config = OrgConfig::new(&format!("Org {code}")).unwrap();
    config.channel = Channel::parse(channel).unwrap();
    Org {
        code: OrgCode::parse(code).unwrap(),
        registration_key: RegistrationKey::generate(),
        config,
        created_at: 1_700_000_000,
        updated_at: 1_700_000_000,
    }
}

pub fn token(id: &str, secret: &str, role: Role, org: Option<&str>) -> TokenRecord {
    TokenRecord {
        id: id.into(),
        name: format!("{id}-name"),
        role,
        org: org.map(|o| OrgCode::parse(o).unwrap()),
        secret_hash: Sha256::digest(secret.as_bytes()),
        created_at: 1_700_000_000,
        revoked_at: None,
    }
}

pub fn blob(blobs: &dyn BlobStore, bytes: &[u8]) -> Sha256 {
    let mut writer = blobs.create().unwrap();
    writer.write_all(bytes).unwrap();
    writer.commit().unwrap().0
}

/// Deterministic bytes that differ at every offset, so a misplaced range cannot match by luck.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    let mut state = 0x9E37_79B9u32 ^ u32::from(seed);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 24) as u8
        })
        .collect()
}

/// The payload part every package of a release and platform starts with: 5 MiB and a bit, so a
/// download crosses the body's 4 MiB chunks and the boundary into the tail.
pub const PAYLOAD_PART_LEN: usize = 5 * 1024 * 1024 + 321;

pub struct Fixtures {
    pub default_linux: PackageFixture,
    pub physics_linux: PackageFixture,
    pub physics_windows: PackageFixture,
    pub chemistry_linux: PackageFixture,
    pub sums_text: String,
}

/// Orgs default (stable), physics (stable), chemistry (beta); tokens; release 11.2.1 (published
/// on stable and beta) with linux and windows payloads, 11.3.0 (published on beta only, linux),
/// 11.4.0 (not published); packages whose tails sit in one shared pack blob.
pub fn insert_fixtures(meta: &dyn MetaStore, blobs: &dyn BlobStore) -> Fixtures {
    for org in [
        org("default", "stable"),
        org("physics", "stable"),
        org("chemistry", "beta"),
    ] {
        meta.create_org(&org).unwrap();
    }
    meta.create_token(&token("tok_admin", ADMIN, Role::Admin, None))
        .unwrap();
    meta.create_token(&token("tok_phys", PHYSICS, Role::Partner, Some("physics")))
        .unwrap();
    meta.create_token(&token(
        "tok_chem",
        CHEMISTRY,
        Role::Partner,
        Some("chemistry"),
    ))
    .unwrap();
    meta.create_token(&token("tok_old", REVOKED, Role::Partner, Some("physics")))
        .unwrap();
    assert!(meta.revoke_token("tok_old", 1_700_000_100).unwrap());

    let linux_part = pattern(PAYLOAD_PART_LEN, 1);
    let windows_part = pattern(PAYLOAD_PART_LEN / 2, 2);
    let linux_blob = blob(blobs, &linux_part);
    let windows_blob = blob(blobs, &windows_part);
    let payload = |platform, blob, len: usize, name: &str| ReleasePayload {
        platform,
        part: PayloadPart {
            file_name: EntryName::parse(name).unwrap(),
            size: len as u64 - 40,
            sha256: Sha256::digest(name.as_bytes()),
            crc32: 7,
            blob,
            part_len: len as u64,
            modified: 1_700_000_000,
        },
    };
    let release = |version: &str, payloads: Vec<ReleasePayload>| Release {
        version: Version::parse(version).unwrap(),
        notes: format!("notes of {version}"),
        created_at: 1_700_000_000,
        payloads,
        yanked: None,
    };
    meta.add_release(&release(
        "11.2.1",
        vec![
            payload(
                Platform::LinuxX86_64,
                linux_blob,
                linux_part.len(),
                "client-linux.tgz",
            ),
            payload(
                Platform::WindowsX86_64,
                windows_blob,
                windows_part.len(),
                "client.msi",
            ),
        ],
    ))
    .unwrap();
    meta.add_release(&release(
        "11.3.0",
        vec![payload(
            Platform::LinuxX86_64,
            linux_blob,
            linux_part.len(),
            "client-linux.tgz",
        )],
    ))
    .unwrap();
    meta.add_release(&release(
        "11.4.0",
        vec![payload(
            Platform::LinuxX86_64,
            linux_blob,
            linux_part.len(),
            "client-linux.tgz",
        )],
    ))
    .unwrap();
    for (version, channel) in [("11.2.1", "stable"), ("11.2.1", "beta"), ("11.3.0", "beta")] {
        meta.put_rollout(&Rollout {
            version: Version::parse(version).unwrap(),
            channel: Channel::parse(channel).unwrap(),
            percent: 100,
            paused: false,
            pause_reason: None,
            published_at: 1_700_000_000,
            updated_at: 1_700_000_000,
        })
        .unwrap();
    }

    // One pack blob holds every tail, as a build batch writes them.
    let tails: Vec<Vec<u8>> = (0..4)
        .map(|i| pattern(70_000 + i * 1000, 10 + i as u8))
        .collect();
    let pack: Vec<u8> = tails.concat();
    let pack_blob = blob(blobs, &pack);
    let mut offset = 0u64;
    let mut make = |org: &str, platform: Platform, part: &[u8], part_blob: Sha256, i: usize| {
        let tail = &tails[i];
        let mut bytes = part.to_vec();
        bytes.extend_from_slice(tail);
        let version = Version::parse("11.2.1").unwrap();
        let org = OrgCode::parse(org).unwrap();
        let file_name = depot::domain::package_file_name(&org, &version, platform);
        let package = Package {
            org,
            version,
            platform,
            minisig: format!("untrusted comment: signature of {file_name}\nRWQ=\n"),
            file_name,
            size: bytes.len() as u64,
            sha256: Sha256::digest(&bytes),
            segments: vec![
                Segment {
                    blob: part_blob,
                    offset: 0,
                    len: part.len() as u64,
                },
                Segment {
                    blob: pack_blob,
                    offset,
                    len: tail.len() as u64,
                },
            ],
            config_sha256: Sha256::digest(b"config"),
            build_key: Sha256::digest(&[i as u8]),
            built_at: 1_700_000_500,
        };
        offset += tail.len() as u64;
        PackageFixture { bytes, package }
    };
    let default_linux = make("default", Platform::LinuxX86_64, &linux_part, linux_blob, 0);
    let physics_linux = make("physics", Platform::LinuxX86_64, &linux_part, linux_blob, 1);
    let physics_windows = make(
        "physics",
        Platform::WindowsX86_64,
        &windows_part,
        windows_blob,
        2,
    );
    let chemistry_linux = make(
        "chemistry",
        Platform::LinuxX86_64,
        &linux_part,
        linux_blob,
        3,
    );
    let all = [
        &default_linux,
        &physics_linux,
        &physics_windows,
        &chemistry_linux,
    ];
    let sums = |org: &str| {
        let mut lines: Vec<String> = all
            .iter()
            .filter(|f| f.package.org.as_str() == org)
            .map(|f| format!("{}  {}\n", f.package.sha256, f.package.file_name))
            .collect();
        lines.sort();
        Checksums {
            org: OrgCode::parse(org).unwrap(),
            version: Version::parse("11.2.1").unwrap(),
            text: lines.concat(),
            minisig: format!("untrusted comment: signature of {org} SHA256SUMS\nRWQ=\n"),
            updated_at: 1_700_000_600,
        }
    };
    let checksums = [sums("default"), sums("physics"), sums("chemistry")];
    let packages: Vec<Package> = all.iter().map(|f| f.package.clone()).collect();
    meta.commit_packages(&packages, &checksums).unwrap();
    let sums_text = checksums[1].text.clone();
    Fixtures {
        default_linux,
        physics_linux,
        physics_windows,
        chemistry_linux,
        sums_text,
    }
}

/// A server with the fixtures.
pub fn spawn_app() -> (TestApp, Fixtures) {
    let dir = tempfile::tempdir().unwrap();
    let (meta, blobs) = stores(dir.path());
    let fixtures = insert_fixtures(meta.as_ref(), blobs.as_ref());
    (start(dir, meta, blobs, options()), fixtures)
}

/// Whether an external tool is present; when it is not, the test fails under CI=true and is
/// skipped (with a reason printed) otherwise.
pub fn tool_available(tool: &str, version_flag: &str) -> bool {
    let found = std::process::Command::new(tool)
        .arg(version_flag)
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{tool} is required in CI but was not found");
        }
        eprintln!("skipping: {tool} is not installed");
    }
    found
}

/// Asserts a contract error body: `{"error":{"code","message"}}`.
pub fn assert_error_json(body: &str, code: Option<&str>) {
    let json: serde_json::Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("not a JSON error body ({e}): {body:?}"));
    let got = json["error"]["code"].as_str().expect("error.code");
    assert!(json["error"]["message"].is_string(), "{body}");
    if let Some(code) = code {
        assert_eq!(got, code, "{body}");
    }
}

/// A server of the whole API over a real `Depot` (keys, built-in templates, SQLite, blobs) with
/// orgs physics (stable) and chemistry (beta), release 11.2.1 published on stable with linux and
/// windows payloads, and tokens.
pub struct FullApp {
    pub app: TestApp,
    pub depot: Arc<depot::service::Depot>,
    pub admin: String,
    pub physics: String,
    pub chemistry: String,
}

pub fn spawn_full_app_with(options: ServerOptions) -> FullApp {
    spawn_full_app_at(options, "http://127.0.0.1:8080")
}

/// [`spawn_full_app_with`], for a server whose public URL (what packages and the portal
/// say people reach it at) is `public_url`.
pub fn spawn_full_app_at(options: ServerOptions, public_url: &str) -> FullApp {
    use depot::service::{Actor, Depot, NoProgress, PayloadSource};
    let dir = tempfile::tempdir().unwrap();
    let settings = depot::demo::settings_for(dir.path(), public_url);
    depot::setup::init(&settings, false).unwrap();
    let depot = Arc::new(Depot::open(&settings).unwrap());
    let actor = Actor {
        name: "test".into(),
        address: "local".into(),
    };
    for (code, channel) in [("physics", "stable"), ("chemistry", "beta")] {
        let mut config = OrgConfig::new(&format!("Department of {code}")).unwrap();
        config.channel = Channel::parse(channel).unwrap();
        config.seats = 50;
        depot
            .add_org(&actor, &OrgCode::parse(code).unwrap(), config)
            .unwrap();
    }
    let payloads = dir.path().join("payloads");
    std::fs::create_dir_all(&payloads).unwrap();
    let mut sources = Vec::new();
    for (platform, name) in [
        (Platform::LinuxX86_64, "client-linux.tgz"),
        (Platform::WindowsX86_64, "client.msi"),
    ] {
        let path = payloads.join(name);
        std::fs::write(&path, pattern(200_000, name.len() as u8)).unwrap();
        sources.push(PayloadSource::from_path(platform, path).unwrap());
    }
    let version = Version::parse("11.2.1").unwrap();
    depot
        .add_release(&actor, &version, &sources, "First release.")
        .unwrap();
    depot
        .publish(&actor, &version, &Channel::stable(), 100, &NoProgress)
        .unwrap();
    let token = |role, org: Option<&str>, name: &str| {
        depot
            .create_token(
                &actor,
                role,
                org.map(|o| OrgCode::parse(o).unwrap()),
                Some(name.into()),
            )
            .unwrap()
            .secret
    };
    let admin = token(Role::Admin, None, "desktop-eng");
    let physics = token(Role::Partner, Some("physics"), "physics-it");
    let chemistry = token(Role::Partner, Some("chemistry"), "chemistry-it");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let state = AppState::with_depot(Arc::clone(&depot), options.clone());
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let address = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(async move {
        serve(listener, router(state), &options, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    let app = TestApp {
        address,
        base: format!("http://{address}"),
        dir,
        meta: Arc::clone(depot.meta()),
        blobs: Arc::clone(depot.blobs()),
        shutdown: Some(tx),
        server: Some(server),
        runtime,
    };
    FullApp {
        app,
        depot,
        admin,
        physics,
        chemistry,
    }
}

pub fn spawn_full_app() -> FullApp {
    spawn_full_app_with(options())
}

impl FullApp {
    /// Sends a request with an optional token and JSON body; returns status and body text.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        json: Option<serde_json::Value>,
    ) -> (u16, String) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.app.client().request(method, self.app.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(json) = json {
            request = request.json(&json);
        }
        let response = request.send().unwrap();
        let status = response.status().as_u16();
        (status, response.text().unwrap())
    }

    pub fn json(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> serde_json::Value {
        let (status, text) = self.call(method, path, token, body);
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {text}"
        );
        serde_json::from_str(&text).unwrap()
    }
}
