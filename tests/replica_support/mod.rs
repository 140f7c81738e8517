//! A cluster for the replica tests: three `depot serve` processes (the real binary) on one
//! shared store, and nginx in front of them configured with the shipped
//! `contrib/nginx/depot-locations.conf` and the upstream of `contrib/nginx/depot.conf`.
//!
//! The shared store is either one SQLite data directory, or a PostgreSQL database and a Garage
//! bucket of the test's own (from `DEPOT_TEST_POSTGRES` and `DEPOT_TEST_S3_ENDPOINT`, see
//! `scripts/test-postgres.sh` and `scripts/test-garage.sh`), dropped when the test ends.

#![allow(dead_code)]

use crate::common::{free_port, Workspace};
use serde_json::{json, Value};
use std::net::IpAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const REPLICAS: usize = 3;
/// Every replica must serve a change made through another within this.
pub const PROPAGATION_LIMIT: Duration = Duration::from_secs(1);

/// Where the replicas keep their state.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    /// One SQLite database and blob directory, shared by processes on one machine.
    SqliteDataDir,
    /// PostgreSQL and an S3 bucket on Garage, as a scaled-out site runs.
    PostgresGarage,
}

/// A database and bucket made for one test, removed when it is dropped.
struct ScratchServices {
    admin_url: String,
    database: String,
    s3: depot::store::S3Config,
}

impl ScratchServices {
    /// `None`, with the reason printed, when the services are not configured; under CI=true
    /// that is a failure.
    fn create() -> Option<(Self, Vec<(String, String)>)> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let (Some(admin_url), Some(endpoint)) =
            (var("DEPOT_TEST_POSTGRES"), var("DEPOT_TEST_S3_ENDPOINT"))
        else {
            let reason = "DEPOT_TEST_POSTGRES and DEPOT_TEST_S3_ENDPOINT are not both set \
                (eval \"$(scripts/test-postgres.sh start)\"; eval \"$(scripts/test-garage.sh start)\")";
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("the PostgreSQL + Garage replica tests need their services under CI=true: {reason}");
            }
            eprintln!("skipping the PostgreSQL + Garage replica test: {reason}");
            return None;
        };
        let suffix = format!("{:016x}", rand::random::<u64>());
        let database = format!("depot_test_{suffix}");
        let mut admin = postgres::Client::connect(&admin_url, postgres::NoTls)
            .unwrap_or_else(|e| panic!("cannot connect to DEPOT_TEST_POSTGRES: {e}"));
        admin
            .batch_execute(&format!("CREATE DATABASE {database}"))
            .unwrap();
        let (server, _) = admin_url
            .rsplit_once('/')
            .expect("DEPOT_TEST_POSTGRES is postgres://USER:PASS@HOST:PORT/DB");
        let database_url = format!("{server}/{database}");
        let bucket = format!("depot-test-{suffix}");
        let region = var("AWS_REGION").unwrap_or_else(|| "garage".into());
        let access_key = var("AWS_ACCESS_KEY_ID").expect("AWS_ACCESS_KEY_ID");
        let secret_key = var("AWS_SECRET_ACCESS_KEY").expect("AWS_SECRET_ACCESS_KEY");
        let s3 = depot::store::S3Config {
            bucket: depot::store::BucketName::parse(&bucket).unwrap(),
            endpoint: Some(endpoint.clone()),
            region: region.clone(),
            access_key_id: access_key.clone(),
            secret_access_key: secret_key.clone(),
            session_token: None,
            spool_dir: std::env::temp_dir().join(format!("depot-test-spool-{suffix}")),
            presign_downloads: None,
        };
        depot::store::S3BlobStore::create_bucket(&s3).unwrap();
        let env = vec![
            ("DEPOT_DATABASE".to_string(), database_url),
            ("DEPOT_ARTIFACTS".to_string(), format!("s3://{bucket}")),
            ("DEPOT_S3_ENDPOINT".to_string(), endpoint),
            ("AWS_REGION".to_string(), region),
            ("AWS_ACCESS_KEY_ID".to_string(), access_key),
            ("AWS_SECRET_ACCESS_KEY".to_string(), secret_key),
        ];
        let services = ScratchServices {
            admin_url,
            database,
            s3,
        };
        Some((services, env))
    }
}

impl Drop for ScratchServices {
    fn drop(&mut self) {
        // Runs after the replicas are gone: a cluster drops its fields in declaration order.
        let dropped =
            postgres::Client::connect(&self.admin_url, postgres::NoTls).and_then(|mut c| {
                c.batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.database
                ))
            });
        if let Err(e) = dropped {
            eprintln!("could not drop the test database {}: {e}", self.database);
        }
        let deleted = depot::store::S3BlobStore::open(self.s3.clone())
            .and_then(depot::store::S3BlobStore::delete_bucket);
        if let Err(e) = deleted {
            eprintln!("could not delete the test bucket {}: {e}", self.s3.bucket);
        }
        let _ = std::fs::remove_dir_all(&self.s3.spool_dir);
    }
}

/// One `depot serve` process.
pub struct Replica {
    pub base: String,
    child: Option<Child>,
}

impl Replica {
    /// SIGKILL: no graceful shutdown, nothing flushed.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// nginx in front of the replicas.
pub struct Balancer {
    pub base: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three replicas on one store, with a published release 1.0.0 and release 1.1.0 published on
/// `stable` at 0 %, org `physics`, and an admin token.
pub struct Cluster {
    pub replicas: Vec<Replica>,
    pub balancer: Option<Balancer>,
    pub ws: Workspace,
    pub admin: String,
    pub registration_key: String,
    pub backend: Backend,
    // Last: the database and bucket go after the processes that use them.
    services: Option<ScratchServices>,
}

impl Cluster {
    /// `None` (the test is skipped) when the backend's services are not there.
    pub fn start(backend: Backend, with_balancer: bool) -> Option<Cluster> {
        let (services, mut env) = match backend {
            Backend::SqliteDataDir => (None, Vec::new()),
            Backend::PostgresGarage => {
                let (services, env) = ScratchServices::create()?;
                (Some(services), env)
            }
        };
        let balancer_port = free_port();
        env.push((
            "DEPOT_PUBLIC_URL".into(),
            format!("http://127.0.0.1:{balancer_port}"),
        ));
        env.push(("RUST_LOG".into(), "warn".into()));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let ws = Workspace::init_with_env(&env);
        ws.ok(&[
            "org", "add", "physics", "--name", "Physics", "--seats", "1000",
        ]);
        for (version, percent) in [("1.0.0", "100"), ("1.1.0", "0")] {
            let payload = ws.dir.path().join(format!("client-{version}.tgz"));
            std::fs::write(&payload, format!("client {version} ").repeat(4096)).unwrap();
            let payload = format!("linux-x86_64={}", payload.display());
            ws.ok(&["release", "add", version, "--payload", &payload]);
            ws.ok(&[
                "release",
                "publish",
                version,
                "--channel",
                "stable",
                "--rollout",
                percent,
            ]);
        }
        let admin = last_line(&ws.ok(&["token", "create", "--role", "admin", "--name", "ops"]));
        let org: Value =
            serde_json::from_str(&ws.ok(&["org", "show", "physics", "--json"])).unwrap();
        let registration_key = org["registration_key"].as_str().unwrap().to_string();
        let replicas: Vec<Replica> = (0..REPLICAS).map(|_| start_replica(&ws)).collect();
        let balancer =
            with_balancer.then(|| start_balancer(balancer_port, &replicas_ports(&replicas)));
        Some(Cluster {
            replicas,
            balancer,
            ws,
            admin,
            registration_key,
            backend,
            services,
        })
    }

    pub fn balancer(&self) -> &str {
        &self
            .balancer
            .as_ref()
            .expect("started with a balancer")
            .base
    }

    /// Enrolls a device of `physics` through `base`; returns (device id, device token).
    pub fn enroll(
        &self,
        base: &str,
        client: &reqwest::blocking::Client,
        host: &str,
    ) -> (String, String) {
        let (status, body) = call(
            client,
            "POST",
            &format!("{base}/v1/devices/enroll"),
            None,
            Some(json!({
                "registration_key": self.registration_key, "hostname": host,
                "platform": "linux-x86_64", "os_version": "Debian 12", "user": "tester",
            })),
        );
        assert_eq!(status, 201, "enroll {host} through {base}: {body}");
        let enrolled: Value = serde_json::from_str(&body).unwrap();
        (
            enrolled["device_id"].as_str().unwrap().to_string(),
            enrolled["device_token"].as_str().unwrap().to_string(),
        )
    }
}

fn replicas_ports(replicas: &[Replica]) -> Vec<u16> {
    replicas
        .iter()
        .map(|r| r.base.rsplit(':').next().unwrap().parse().unwrap())
        .collect()
}

fn last_line(text: &str) -> String {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap()
        .trim()
        .to_string()
}

/// A replica of the workspace's store that trusts the balancer on 127.0.0.1 to name clients.
fn start_replica(ws: &Workspace) -> Replica {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log = std::fs::File::create(ws.dir.path().join(format!("replica-{port}.log"))).unwrap();
    let child = ws
        .command(&[
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--trusted-proxies",
            "127.0.0.1",
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let replica = Replica {
        base,
        child: Some(child),
    };
    wait_healthy(
        &replica.base,
        &ws.dir.path().join(format!("replica-{port}.log")),
    );
    replica
}

fn wait_healthy(base: &str, log: &Path) {
    let client = client(None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if client
            .get(format!("{base}/healthz"))
            .send()
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "{base} did not become healthy: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// nginx on `port` with the shipped upstream (its replica addresses replaced by `replicas`)
/// and the shipped locations.
fn start_balancer(port: u16, replicas: &[u16]) -> Balancer {
    let contrib = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/nginx");
    let shipped = std::fs::read_to_string(contrib.join("depot.conf")).unwrap();
    let upstream = upstream_block(&shipped, replicas);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let temp = root.join("temp");
    std::fs::create_dir(&temp).unwrap();
    // Run as root, nginx's workers are `nobody`: they must reach their buffers.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o777)).unwrap();
    let t = temp.display();
    let config = format!(
        "worker_processes 1;\ndaemon off;\npid {root}/nginx.pid;\nerror_log {root}/error.log warn;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {t}/body;\n  proxy_temp_path {t}/proxy;\n  \
         fastcgi_temp_path {t}/fastcgi;\n  uwsgi_temp_path {t}/uwsgi;\n  scgi_temp_path {t}/scgi;\n\
         {upstream}\n  server {{\n    listen 127.0.0.1:{port};\n    include {locations};\n  }}\n}}\n",
        root = root.display(),
        locations = contrib.join("depot-locations.conf").display(),
    );
    std::fs::write(root.join("nginx.conf"), config).unwrap();
    let child = Command::new("nginx")
        .arg("-p")
        .arg(&root)
        .arg("-e")
        .arg(root.join("error.log"))
        .arg("-c")
        .arg(root.join("nginx.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx");
    let balancer = Balancer {
        base: format!("http://127.0.0.1:{port}"),
        child,
        dir,
    };
    wait_healthy(&balancer.base, &root.join("error.log"));
    balancer
}

/// The `upstream depot { ... }` block of the shipped config, its example replica addresses
/// (127.0.0.1:8081, :8082, ...) replaced by the test's.
fn upstream_block(config: &str, replicas: &[u16]) -> String {
    let start = config
        .find("upstream depot {")
        .expect("an upstream depot block");
    let end = start
        + config[start..]
            .find("\n}")
            .expect("the end of the upstream block")
        + 2;
    let mut block = config[start..end].to_string();
    let shipped = block.matches("server 127.0.0.1:808").count();
    assert_eq!(
        shipped,
        replicas.len(),
        "the shipped upstream lists {shipped} replicas"
    );
    for (i, port) in replicas.iter().enumerate() {
        block = block.replace(
            &format!("server 127.0.0.1:{}", 8081 + i),
            &format!("server 127.0.0.1:{port}"),
        );
    }
    block
}

/// A client; `local` picks the loopback address it connects from, so that the balancer (and
/// its per-address hashing) sees different clients.
pub fn client(local: Option<IpAddr>) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .local_address(local)
        .build()
        .unwrap()
}

/// Sends a request; returns the status and body, or status 0 and the error for a transport
/// failure.
pub fn call(
    client: &reqwest::blocking::Client,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, String) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = client.request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    match request.send() {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.text().unwrap_or_default())
        }
        Err(e) => (0, format!("{e:?}")),
    }
}

/// Polls `done` until it holds; returns how long that took, or `None` after `limit`.
pub fn within(limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if done() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `depot_http_requests_total` of one route on a replica, over every status.
pub fn requests_served(base: &str, route: &str) -> u64 {
    request_counts(base, route)
        .iter()
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The `depot_http_requests_total` lines of one route on a replica (one per method and status).
pub fn request_counts(base: &str, route: &str) -> Vec<String> {
    let text = client(None)
        .get(format!("{base}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let label = format!("route=\"{route}\"");
    text.lines()
        .filter(|l| l.starts_with("depot_http_requests_total{") && l.contains(&label))
        .map(str::to_string)
        .collect()
}
