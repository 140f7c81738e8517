//! Header single sign-on through a real nginx in front, standing in for the Shibboleth SP: it
//! sets `X-Remote-User` and `X-Remote-Groups` (from the test's `X-Sp-*` headers, as the SP
//! would from its session) and forwards to `depot serve`, which trusts only 127.0.0.1. A client
//! on 127.0.0.2 that forges the headers straight to depot is refused. Personal tokens are
//! created on `/me` and used with curl, and lose their rights when a sign-in shows the person
//! lost their group. Skipped without nginx (a failure under CI=true).

mod portal_support;

use depot::identity::IdentityConfig;
use depot::server::forwarded::TrustedProxies;
use depot::server::{router, serve, AppState, ServerOptions};
use depot::service::Depot;
use depot::store::AuditFilter;
use portal_support::{between, csrf};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

struct Setup {
    /// depot itself.
    direct: String,
    /// nginx in front.
    proxy: String,
    depot: Arc<Depot>,
    _runtime: tokio::runtime::Runtime,
    nginx: Child,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = self.nginx.kill();
        let _ = self.nginx.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn have_nginx() -> bool {
    let found = Command::new("nginx")
        .arg("-v")
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("nginx is needed for the header SSO tests under CI=true");
        }
        eprintln!("skipped: nginx is not installed");
    }
    found
}

const CONFIG: &str = "[sso.header]\nuser = \"X-Remote-User\"\ngroups = \"X-Remote-Groups\"\n\
    provider = \"Example University\"\n\
    [roles]\nadmin_groups = [\"depot-admins\"]\npartner_group_pattern = \"depot-partners-{org}\"\n";

fn start() -> Option<Setup> {
    start_with(CONFIG)
}

fn start_with(config: &str) -> Option<Setup> {
    if !have_nginx() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let direct = format!("http://{}", listener.local_addr().unwrap());
    let proxy_port = free_port();
    let proxy = format!("http://127.0.0.1:{proxy_port}");
    let report = depot::demo::prepare(dir.path(), &proxy, 1, &depot::service::NoProgress).unwrap();
    let mut settings = report.settings.clone();
    #[derive(serde::Deserialize)]
    struct File {
        sso: Option<depot::identity::SsoFile>,
        roles: Option<depot::identity::RolesFile>,
    }
    let file: File = toml::from_str(config).unwrap();
    settings.identity = IdentityConfig::resolve(file.sso.as_ref(), file.roles.as_ref()).unwrap();
    let depot = Arc::new(Depot::open(&settings).unwrap());
    let options = ServerOptions {
        trusted_proxies: TrustedProxies::new(["127.0.0.1/32".parse().unwrap()]),
        ..ServerOptions::default()
    };
    let state = AppState::with_depot(Arc::clone(&depot), options.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    runtime.spawn(async move {
        serve(listener, router(state), &options, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    let nginx = start_nginx(dir.path(), proxy_port, &direct);
    let setup = Setup {
        direct,
        proxy,
        depot,
        _runtime: runtime,
        nginx,
        _dir: dir,
        _stop: stop,
    };
    wait_up(&format!("{}/healthz", setup.proxy), dir_log(&setup));
    Some(setup)
}

fn dir_log(setup: &Setup) -> std::path::PathBuf {
    setup._dir.path().join("nginx/error.log")
}

fn wait_up(url: &str, log: std::path::PathBuf) {
    for _ in 0..200 {
        if reqwest::blocking::get(url).is_ok_and(|r| r.status().is_success()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "{url} did not come up: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// nginx as the SP would be configured: it sets the identity headers itself (replacing
/// whatever the client sent) and forwards the client's address.
fn start_nginx(dir: &Path, port: u16, upstream: &str) -> Child {
    let server = format!(
        "server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass {upstream};\n      \
         proxy_set_header Host $host:$server_port;\n      \
         proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n      \
         proxy_set_header X-Remote-User $http_x_sp_user;\n      \
         proxy_set_header X-Remote-Groups $http_x_sp_groups;\n    }}\n  }}"
    );
    run_nginx(&dir.join("nginx"), &server)
}

/// nginx with the shipped `contrib/nginx/depot-locations.conf` in front of `upstream`.
fn start_shipped_nginx(dir: &Path, port: u16, upstream: &str) -> Child {
    let locations =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/nginx/depot-locations.conf");
    let upstream = upstream.trim_start_matches("http://");
    let server = format!(
        "upstream depot {{ server {upstream}; }}\n  server {{\n    listen 127.0.0.1:{port};\n    \
         include {};\n  }}",
        locations.display()
    );
    run_nginx(&dir.join("shipped-nginx"), &server)
}

fn run_nginx(root: &Path, server: &str) -> Child {
    let root = root.to_path_buf();
    let temp = root.join("temp");
    std::fs::create_dir_all(&temp).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o777)).unwrap();
    let t = temp.display();
    let config = format!(
        "worker_processes 1;\ndaemon off;\npid {root}/nginx.pid;\nerror_log {root}/error.log warn;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {t}/body;\n  proxy_temp_path {t}/proxy;\n  \
         fastcgi_temp_path {t}/fastcgi;\n  uwsgi_temp_path {t}/uwsgi;\n  scgi_temp_path {t}/scgi;\n\
         {server}\n}}\n",
        root = root.display(),
    );
    std::fs::write(root.join("nginx.conf"), config).unwrap();
    Command::new("nginx")
        .arg("-p")
        .arg(&root)
        .arg("-e")
        .arg(root.join("error.log"))
        .arg("-c")
        .arg(root.join("nginx.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx")
}

fn client(local: Option<IpAddr>) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .local_address(local)
        .build()
        .unwrap()
}

/// Signs in through nginx as `user` with `groups`: the status, the landing page, the session.
fn sign_in(s: &Setup, user: &str, groups: &str) -> (u16, Option<String>, Option<String>, String) {
    let r = client(None)
        .get(format!("{}/auth/header", s.proxy))
        .header("X-Sp-User", user)
        .header("X-Sp-Groups", groups)
        // The client's own attempt at the headers: nginx replaces them.
        .header("X-Remote-Groups", "depot-admins")
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let session = session_cookie(&r);
    let body = r.text().unwrap();
    // The page moves on by itself (a redirect would lose the SameSite=Strict cookie after the
    // IdP's cross-site hops).
    let landing =
        between(&body, "<a id=\"landing\" href=\"", "\"").map(|l| l.replace("&#x2F;", "/"));
    if let Some(to) = &landing {
        assert!(
            body.contains(&format!(
                "http-equiv=\"refresh\" content=\"0;url={}",
                to.replace('/', "&#x2F;")
            )),
            "{body}"
        );
    }
    (status, landing, session, body)
}

fn session_cookie(r: &reqwest::blocking::Response) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("depot_session="))
        .map(|v| v.split(';').next().unwrap().to_string())
        .filter(|v| !v.is_empty())
}

fn page(s: &Setup, path: &str, session: &str) -> (u16, String) {
    let r = client(None)
        .get(format!("{}{path}", s.proxy))
        .header("Cookie", format!("depot_session={session}"))
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

fn post(s: &Setup, path: &str, session: &str, form: &[(&str, &str)]) -> (u16, String) {
    let r = client(None)
        .post(format!("{}{path}", s.proxy))
        .header("Cookie", format!("depot_session={session}"))
        .form(form)
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

/// `curl` with a bearer token: the status and body.
fn curl(url: &str, token: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}", "-H"])
        .arg(format!("Authorization: Bearer {token}"))
        .arg(url)
        .output()
        .expect("curl");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_string())
}

fn audit(s: &Setup, action: &str) -> Vec<depot::store::AuditEvent> {
    s.depot
        .meta()
        .query_audit(&AuditFilter {
            action: Some(action.into()),
            ..AuditFilter::default()
        })
        .unwrap()
}

#[test]
fn a_partner_signs_in_through_the_proxy_and_their_token_follows_their_groups() {
    let Some(s) = start() else { return };
    // The sign-in page offers the provider.
    let login = client(None)
        .get(format!("{}/login", s.proxy))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(login.contains("Sign in with Example University"), "{login}");

    let (status, location, session, _) = sign_in(
        &s,
        "jdoe",
        "staff; depot-partners-physics ;depot-partners-nosuchorg",
    );
    assert_eq!(status, 200);
    // nginx replaced the client's own X-Remote-Groups: a partner, not an admin.
    assert_eq!(location.as_deref(), Some("/orgs/physics"));
    let session = session.expect("a session");
    let (status, org_page) = page(&s, "/orgs/physics", &session);
    assert_eq!(status, 200, "{org_page}");
    let (status, me) = page(&s, "/me", &session);
    assert_eq!(status, 200);
    assert!(me.contains("partner of physics"), "{me}");
    let token_csrf = csrf(&me);

    // A token of more than 365 days is refused, with words.
    let (status, body) = post(
        &s,
        "/me/tokens",
        &session,
        &[("csrf", &token_csrf), ("name", "laptop"), ("days", "400")],
    );
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("365"), "{body}");
    let (status, created) = post(
        &s,
        "/me/tokens",
        &session,
        &[("csrf", &token_csrf), ("name", "laptop"), ("days", "30")],
    );
    assert_eq!(status, 200, "{created}");
    let token = between(&created, "<code id=\"new-token\">", "<")
        .expect("the new token, shown once")
        .to_string();
    assert!(token.starts_with("depotp_"), "{token}");
    // Shown once: the list shows its name, never the secret again.
    let (_, me) = page(&s, "/me", &session);
    assert!(me.contains("laptop") && !me.contains(&token), "{me}");

    // Used with curl, straight to depot: the person's roles.
    let (status, body) = curl(&format!("{}/v1/me", s.direct), &token);
    assert_eq!(status, 200, "{body}");
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(view["person"], "jdoe");
    assert_eq!(view["roles"], serde_json::json!(["partner:physics"]));
    assert_eq!(view["tokens"][0]["name"], "laptop");
    assert_eq!(
        curl(&format!("{}/v1/orgs/physics", s.direct), &token).0,
        200
    );
    assert_eq!(
        curl(&format!("{}/v1/orgs/chemistry", s.direct), &token).0,
        404
    );

    // The directory drops the group; the next sign-in shows it: no role, no session.
    let (status, _, again, body) = sign_in(&s, "jdoe", "staff");
    assert_eq!(status, 403, "{body}");
    assert!(again.is_none());
    assert!(body.contains("none of your directory groups"), "{body}");
    // The token and the old session lost the role with the person.
    let (status, body) = curl(&format!("{}/v1/orgs/physics", s.direct), &token);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("no role"), "{body}");
    let (status, _) = page(&s, "/orgs/physics", &session);
    assert_eq!(status, 303);

    // Audited with the person's id and the address nginx forwarded.
    let signed_in = audit(&s, "auth.sign_in");
    assert_eq!(signed_in.len(), 1);
    assert_eq!(signed_in[0].actor, "jdoe");
    assert_eq!(signed_in[0].address, "127.0.0.1");
    let failed = audit(&s, "auth.sign_in_failed");
    assert_eq!(failed.len(), 1);
    assert!(failed[0].detail.as_deref().unwrap().contains("no role"));

    // Back in the group: the same token works again; revoked on /me, it is dead for good.
    let (status, _, session, _) = sign_in(&s, "jdoe", "depot-partners-physics");
    assert_eq!(status, 200);
    let session = session.unwrap();
    assert_eq!(
        curl(&format!("{}/v1/orgs/physics", s.direct), &token).0,
        200
    );
    let (_, me) = page(&s, "/me", &session);
    let id = between(&me, "<tr data-token=\"", "\"").unwrap().to_string();
    let (status, _) = post(
        &s,
        &format!("/me/tokens/{id}/revoke"),
        &session,
        &[("csrf", &csrf(&me))],
    );
    assert_eq!(status, 303);
    assert_eq!(curl(&format!("{}/v1/me", s.direct), &token).0, 401);
}

#[test]
fn an_admin_group_lands_on_admin_and_sign_out_is_audited() {
    let Some(s) = start() else { return };
    let (status, location, session, _) = sign_in(&s, "asmith", "depot-admins");
    assert_eq!(status, 200);
    assert_eq!(location.as_deref(), Some("/admin"));
    let session = session.unwrap();
    let (status, admin) = page(&s, "/admin", &session);
    assert_eq!(status, 200);
    let (status, _) = post(&s, "/logout", &session, &[("csrf", &csrf(&admin))]);
    assert_eq!(status, 303);
    assert_eq!(page(&s, "/admin", &session).0, 303);
    let out = audit(&s, "auth.sign_out");
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].actor, "asmith");
    assert_eq!(out[0].address, "127.0.0.1");
    // No sign-in headers at all: refused with words, never a session.
    let (status, _, session, body) = sign_in(&s, "", "");
    assert_eq!(status, 403);
    assert!(session.is_none());
    assert!(body.contains("did not say who you are"), "{body}");
}

#[test]
fn forged_sign_in_headers_straight_to_depot_are_refused() {
    let Some(s) = start() else { return };
    let forger = client(Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))));
    let r = forger
        .get(format!("{}/auth/header", s.direct))
        .header("X-Remote-User", "asmith")
        .header("X-Remote-Groups", "depot-admins")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert!(session_cookie(&r).is_none());
    let body = r.text().unwrap();
    assert!(
        body.contains("did not come through the university"),
        "{body}"
    );
    assert!(body.contains("reference"), "{body}");
    let failed = audit(&s, "auth.sign_in_failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].address, "127.0.0.2");
    assert!(
        failed[0]
            .detail
            .as_deref()
            .unwrap()
            .contains("not a trusted proxy"),
        "{:?}",
        failed[0]
    );
    // Nobody was signed in or recorded as the forged person.
    assert!(s.depot.person("asmith").unwrap().is_none());
    assert!(audit(&s, "auth.sign_in").is_empty());
}

/// The shipped nginx locations drop a client's own identity headers: through them, forged
/// headers reach depot as no headers at all (before the fix they passed through, and depot,
/// trusting nginx, signed the forger in as an admin).
#[test]
fn the_shipped_nginx_config_drops_a_clients_identity_headers() {
    let Some(s) = start() else { return };
    let port = free_port();
    let mut nginx = start_shipped_nginx(s._dir.path(), port, &s.direct);
    let base = format!("http://127.0.0.1:{port}");
    wait_up(
        &format!("{base}/healthz"),
        s._dir.path().join("shipped-nginx/error.log"),
    );
    let r = client(None)
        .get(format!("{base}/auth/header"))
        .header("X-Remote-User", "asmith")
        .header("X-Remote-Groups", "depot-admins")
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let session = session_cookie(&r);
    let body = r.text().unwrap();
    let _ = nginx.kill();
    let _ = nginx.wait();
    assert_eq!(status, 403, "{body}");
    assert!(session.is_none());
    assert!(body.contains("did not say who you are"), "{body}");
    assert!(audit(&s, "auth.sign_in").is_empty());
}

/// `token_login = false`: the sign-in page offers only single sign-on, and a token posted to it
/// anyway opens no session.
#[test]
fn token_login_off_leaves_only_single_sign_on() {
    let config = format!("{CONFIG}token_login = false\n");
    let Some(s) = start_with(&config) else { return };
    let login = client(None)
        .get(format!("{}/login", s.proxy))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(login.contains("Sign in with Example University"), "{login}");
    assert!(!login.contains("name=\"token\""), "{login}");
    let admin = s
        .depot
        .create_token(
            &depot::service::Actor::cli(),
            depot::store::Role::Admin,
            None,
            Some("ci".into()),
        )
        .unwrap();
    let r = client(None)
        .post(format!("{}/login", s.proxy))
        .form(&[("token", admin.secret.as_str()), ("csrf", "x")])
        .header("Cookie", "depot_login=x")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert!(session_cookie(&r).is_none());
    // Tokens still work for automation.
    assert_eq!(curl(&format!("{}/v1/orgs", s.direct), &admin.secret).0, 200);
}
