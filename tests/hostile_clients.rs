//! Hostile clients against a real server on loopback: idle and slowloris connections must not
//! starve a normal client and must be cut off by the header read timeout; oversized bodies get
//! 413, junk bodies and junk tokens a 4xx JSON error, and repeated bad credentials from one
//! address a 429; connections beyond the server's limit wait for a free slot. Every loop is
//! bounded.

mod server_support;

use serde_json::json;
use server_support::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const HEADER_TIMEOUT: Duration = Duration::from_millis(1000);
const MAX_BODY: usize = 64 * 1024;
const IDLE: usize = 200;
const SLOW: usize = 50;
/// What "promptly" means for one request of the normal client on a busy test machine.
const PROMPT: Duration = Duration::from_secs(2);

fn hostile_options() -> depot::server::ServerOptions {
    depot::server::ServerOptions {
        header_read_timeout: HEADER_TIMEOUT,
        max_body_bytes: MAX_BODY,
        ..options()
    }
}

/// Whether the server has closed `stream`: it reads to the end (maybe after a 408) or is reset,
/// rather than blocking until the read timeout.
fn closed_by_server(mut stream: &TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut sink = Vec::new();
    match stream.read_to_end(&mut sink) {
        Ok(_) => true,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn idle_and_slow_connections_do_not_starve_a_normal_client() {
    let f = spawn_full_app_with(hostile_options());
    let address = f.app.address;
    let package = f
        .json("GET", "/v1/orgs/physics/packages", Some(&f.admin), None)
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["platform"] == "linux-x86_64" && p["version"] == "11.2.1")
        .cloned()
        .unwrap();
    let download = format!(
        "/{}",
        package["url"].as_str().unwrap().trim_start_matches('/')
    );
    let expected_len = package["size"].as_u64().unwrap();

    let idle: Vec<TcpStream> = (0..IDLE)
        .map(|_| TcpStream::connect(address).unwrap())
        .collect();
    let slow: Vec<TcpStream> = (0..SLOW)
        .map(|_| TcpStream::connect(address).unwrap())
        .collect();

    // Slowloris: one header byte per connection every 100 ms for three header timeouts.
    let trickle = std::thread::spawn(move || {
        let mut slow = slow;
        let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ";
        let started = Instant::now();
        let mut sent = 0;
        while started.elapsed() < HEADER_TIMEOUT * 3 {
            for stream in &mut slow {
                let byte = request.get(sent).copied().unwrap_or(b'a');
                // A write fails once the server has closed the connection; that is the point.
                let _ = stream.write_all(&[byte]);
            }
            sent += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
        slow
    });

    std::thread::sleep(Duration::from_millis(200));
    let client = f.app.client();
    for round in 0..5 {
        let started = Instant::now();
        let response = client
            .get(f.app.url(&download))
            .bearer_auth(&f.physics)
            .send()
            .unwrap();
        assert_eq!(response.status(), 200, "round {round}");
        let body = response.bytes().unwrap();
        assert_eq!(body.len() as u64, expected_len);
        assert!(
            started.elapsed() < PROMPT,
            "download took {:?}",
            started.elapsed()
        );

        let started = Instant::now();
        let response = client
            .get(f.app.url("/v1/orgs"))
            .bearer_auth(&f.admin)
            .send()
            .unwrap();
        assert_eq!(response.status(), 200);
        let orgs: serde_json::Value = response.json().unwrap();
        assert!(orgs.as_array().is_some_and(|o| !o.is_empty()));
        assert!(
            started.elapsed() < PROMPT,
            "JSON answer took {:?}",
            started.elapsed()
        );
    }

    let slow = trickle.join().unwrap();
    let still_open = slow.iter().filter(|s| !closed_by_server(s)).count();
    assert_eq!(still_open, 0, "slowloris connections left open");
    // The idle ones have had far longer than the header timeout by now.
    let idle_open = idle.iter().filter(|s| !closed_by_server(s)).count();
    assert_eq!(idle_open, 0, "idle connections left open");

    // And the server still answers afterwards.
    assert_eq!(f.call("GET", "/healthz", None, None).0, 200);
}

#[test]
fn oversized_json_bodies_get_413() {
    let f = spawn_full_app_with(hostile_options());
    let name = "a".repeat(MAX_BODY + 1);
    let body = serde_json::to_vec(&json!({"code": "biology", "name": name})).unwrap();
    let client = f.app.client();

    // With a Content-Length...
    let response = client
        .post(f.app.url("/v1/orgs"))
        .bearer_auth(&f.admin)
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_error_json(&response.text().unwrap(), None);

    // ...and chunked, where the limit must hold while reading.
    let response = client
        .post(f.app.url("/v1/devices/enroll"))
        .header("content-type", "application/json")
        .body(reqwest::blocking::Body::new(std::io::Cursor::new(body)))
        .send()
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_error_json(&response.text().unwrap(), None);

    // The org was not created.
    assert_eq!(
        f.call("GET", "/v1/orgs/biology", Some(&f.admin), None).0,
        404
    );
}

#[test]
fn junk_bodies_and_junk_tokens_get_4xx_json() {
    let f = spawn_full_app_with(hostile_options());
    let client = f.app.client();
    let junk_bodies: [(&str, &[u8]); 6] = [
        ("application/json", b"{not json"),
        ("application/json", b"\xff\xfe\x00binary"),
        ("application/json", b"[]"),
        ("application/json", b"{\"code\": 7, \"name\": null}"),
        ("text/plain", b"{\"code\":\"zoo\",\"name\":\"Zoo\"}"),
        ("application/json", b""),
    ];
    for (path, token) in [
        ("/v1/orgs", Some(f.admin.as_str())),
        ("/v1/devices/enroll", None),
        ("/v1/tokens", Some(f.admin.as_str())),
    ] {
        for (content_type, body) in junk_bodies {
            let mut request = client
                .post(f.app.url(path))
                .header("content-type", content_type)
                .body(body.to_vec());
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().unwrap();
            let status = response.status();
            let text = response.text().unwrap();
            assert!(
                status.is_client_error(),
                "{path} {content_type} {body:?}: {status} {text}"
            );
            assert_error_json(&text, None);
        }
    }
    // A multipart upload that is not one.
    let response = client
        .post(f.app.url("/v1/releases"))
        .bearer_auth(&f.admin)
        .header("content-type", "multipart/form-data; boundary=x")
        .body("--x\r\nnonsense")
        .send()
        .unwrap();
    let status = response.status();
    let text = response.text().unwrap();
    assert!(status.is_client_error(), "{status} {text}");
    assert_error_json(&text, None);

    // Junk tokens: fewer than the rate limit allows, so each is a plain 401.
    let long = format!("depot_{}", "x".repeat(10_000));
    let junk_tokens = [
        "Bearer",
        "Bearer ",
        "Bearer junk",
        "Bearer depot_",
        "bearer depot_nope",
        "Basic YWRtaW46YWRtaW4=",
        &format!("Bearer {long}"),
        "Bearer depot_\tx",
    ];
    for value in junk_tokens {
        let response = client
            .get(f.app.url("/v1/orgs"))
            .header("authorization", value)
            .send()
            .unwrap();
        let status = response.status();
        let text = response.text().unwrap();
        assert!(status.is_client_error(), "{value:.40}: {status} {text}");
        assert_error_json(&text, None);
    }
    // Bytes no HTTP client library would send; hyper itself may refuse them, without JSON.
    for value in ["Bearer été", "Bearer depot_\u{7f}", "Bearer \u{0}"] {
        let (status, text) = f.app.raw(&format!(
            "GET /v1/orgs HTTP/1.1\r\nHost: x\r\nAuthorization: {value}\r\nConnection: close\r\n\r\n"
        ));
        assert!((400..500).contains(&status), "{value:?}: {text}");
    }
}

#[test]
fn repeated_bad_tokens_and_keys_from_one_address_get_429() {
    let f = spawn_full_app_with(hostile_options());
    let statuses: Vec<u16> = (0..25)
        .map(|i| {
            f.call("GET", "/v1/orgs", Some(&format!("depot_wrong_{i}")), None)
                .0
        })
        .collect();
    assert_eq!(statuses[0], 401, "{statuses:?}");
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    let (status, body) = f.call("GET", "/v1/orgs", Some("depot_wrong_again"), None);
    assert_eq!(status, 429);
    assert_error_json(&body, None);

    let enroll = |key: &str| {
        f.call(
            "POST",
            "/v1/devices/enroll",
            None,
            Some(json!({"registration_key": key, "hostname": "lab-1", "platform": "linux-x86_64"})),
        )
    };
    let statuses: Vec<u16> = (0..15)
        .map(|i| enroll(&format!("AAAA-BBBB-CCCC-{i:04}")).0)
        .collect();
    assert_eq!(statuses[0], 403, "{statuses:?}");
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
}

#[test]
fn connections_beyond_the_limit_wait_until_one_ends() {
    let f = spawn_full_app_with(depot::server::ServerOptions {
        max_connections: 2,
        // Long enough that the held connections are not cut off during the test.
        header_read_timeout: Duration::from_secs(30),
        ..options()
    });
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let answered = |stream: &mut TcpStream| {
        stream
            .set_read_timeout(Some(Duration::from_millis(700)))
            .unwrap();
        stream.write_all(request).unwrap();
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
    };
    // From two addresses: one address may hold only half of the slots.
    let mut held: Vec<TcpStream> = ["127.0.0.1", "127.0.0.2"]
        .iter()
        .map(|source| connect_from(&f, source))
        .collect();
    assert!(
        answered(&mut held[0]),
        "a connection within the limit is served"
    );

    // The kernel completes the handshake, but the server does not take the connection up.
    let mut third = connect_from(&f, "127.0.0.3");
    assert!(!answered(&mut third), "a third connection must wait");

    // When one of the two ends, the waiting connection is served, its request intact.
    drop(held.remove(1));
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut head = [0u8; 12];
    third.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
}

/// Sends `head` (a request's line and headers, without the blank line) and `body`, then reads
/// until the server closes: the status and the whole answer. Panics when the server neither
/// answers nor closes within 10 s.
fn send_and_read(mut stream: TcpStream, head: &str, body: &[u8]) -> (u16, String) {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(format!("{head}\r\n\r\n").as_bytes())
        .unwrap();
    stream.write_all(body).unwrap();
    read_answer(stream)
}

fn read_answer(mut stream: TcpStream) -> (u16, String) {
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .expect("the server neither answered nor closed the connection");
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// A device token of the physics org, enrolled through the API.
fn enroll_device(f: &FullApp) -> String {
    let org = f.json("GET", "/v1/orgs/physics", Some(&f.admin), None);
    let enrolled = f.json(
        "POST",
        "/v1/devices/enroll",
        None,
        Some(json!({
            "registration_key": org["registration_key"],
            "hostname": "lab-1", "platform": "linux-x86_64", "os_version": "", "user": ""
        })),
    );
    enrolled["device_token"].as_str().unwrap().to_string()
}

/// The server answers a too-large declared body from its headers alone: not a byte of the body
/// is sent here, and the answer must still come (before, JSON routes answered 408 after the
/// request timeout and device routes waited for the body for ever).
#[test]
fn a_declared_length_past_the_route_limit_is_413_before_any_body() {
    let f = spawn_full_app_with(depot::server::ServerOptions {
        max_upload_bytes: 1 << 20,
        ..hostile_options()
    });
    let device = enroll_device(&f);
    let too_big = |limit: usize| limit + 1;
    let cases = [
        ("POST /v1/devices/enroll", None, too_big(MAX_BODY)),
        (
            "POST /v1/update-check",
            Some(device.as_str()),
            too_big(MAX_BODY),
        ),
        (
            "POST /v1/devices/events",
            Some(device.as_str()),
            too_big(MAX_BODY),
        ),
        ("POST /v1/orgs", Some(f.admin.as_str()), too_big(MAX_BODY)),
        (
            "PUT /v1/orgs/physics/files/readme.txt",
            Some(f.admin.as_str()),
            too_big(depot::org::MAX_OVERLAY_FILE_SIZE),
        ),
        (
            "POST /v1/releases",
            Some(f.admin.as_str()),
            too_big(1 << 20),
        ),
        ("POST /login", None, too_big(MAX_BODY)),
    ];
    for (request, token, length) in cases {
        let auth = token.map_or(String::new(), |t| format!("\r\nAuthorization: Bearer {t}"));
        let content_type = if request.contains("releases") {
            "multipart/form-data; boundary=x"
        } else if request.contains("login") {
            "application/x-www-form-urlencoded"
        } else {
            "application/json"
        };
        let head = format!(
            "{request} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {length}{auth}"
        );
        let (status, text) = send_and_read(TcpStream::connect(f.app.address).unwrap(), &head, b"");
        assert_eq!(status, 413, "{request}: {text}");
        if !request.contains("login") {
            let body = text.split_once("\r\n\r\n").unwrap().1;
            assert_error_json(body, Some("too_large"));
        }
    }
    // Within the limit the same routes take a body as before.
    let (status, text) = f.call(
        "POST",
        "/v1/update-check",
        Some(&device),
        Some(json!({"platform": "linux-x86_64", "current_version": null})),
    );
    assert_eq!(status, 200, "{text}");
}

/// A body that stops coming is answered 408 once its deadline passes, on every kind of route:
/// the update check's own path, the device routes (which had no timeout at all) and the API.
#[test]
fn a_body_that_stops_coming_gets_its_deadline() {
    let f = spawn_full_app_with(depot::server::ServerOptions {
        body_timeout: Duration::from_millis(500),
        ..hostile_options()
    });
    let device = enroll_device(&f);
    for (request, token) in [
        ("POST /v1/update-check", Some(device.as_str())),
        ("POST /v1/devices/enroll", None),
        ("POST /v1/devices/events", Some(device.as_str())),
        ("POST /v1/orgs", Some(f.admin.as_str())),
    ] {
        let auth = token.map_or(String::new(), |t| format!("\r\nAuthorization: Bearer {t}"));
        let head = format!(
            "{request} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100{auth}"
        );
        // Ten of the hundred bytes, then silence.
        let (status, text) = send_and_read(
            TcpStream::connect(f.app.address).unwrap(),
            &head,
            b"{\"platfor",
        );
        assert_eq!(status, 408, "{request}: {text}");
    }
    assert_eq!(f.call("GET", "/healthz", None, None).0, 200);
}

/// A connection to the server from `source` (a loopback address).
fn connect_from(f: &FullApp, source: &str) -> TcpStream {
    let address = f.app.address;
    let source: std::net::SocketAddr = format!("{source}:0").parse().unwrap();
    let stream = f
        .app
        .runtime
        .block_on(async move {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(source)?;
            socket.connect(address).await
        })
        .unwrap()
        .into_std()
        .unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
}

/// Four slow enrolls from one address used to take every slot of a server with
/// `max_connections = 4`, and `/healthz` from anywhere else waited in the listen queue. The
/// configured share (here the default, 256) is capped at half of `max_connections`.
#[test]
fn one_address_holds_only_its_share_of_the_connections() {
    let f = spawn_full_app_with(depot::server::ServerOptions {
        // One address's share is then 2 (half), below the default of 256.
        max_connections: 4,
        // The held connections must not be cut off while the test runs.
        header_read_timeout: Duration::from_secs(60),
        body_timeout: Duration::from_secs(60),
        ..options()
    });
    let slow_enroll = |stream: &mut TcpStream| {
        stream
            .write_all(
                b"POST /v1/devices/enroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                  Content-Length: 200\r\n\r\n{\"registration_key\":",
            )
            .unwrap();
    };
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = connect_from(&f, "127.0.0.1");
        slow_enroll(&mut stream);
        held.push(stream);
    }
    // The third and fourth from that address are told so and closed, without being served.
    for _ in 0..2 {
        let stream = connect_from(&f, "127.0.0.1");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let (status, text) = read_answer(stream);
        assert_eq!(status, 429, "{text}");
        assert_error_json(text.split_once("\r\n\r\n").unwrap().1, Some("rate_limited"));
    }
    // Another address is served at once.
    let (status, text) = send_and_read(
        connect_from(&f, "127.0.0.2"),
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close",
        b"",
    );
    assert_eq!(status, 200, "{text}");
    // When a held connection ends, its address may open another.
    drop(held.pop());
    let mut served = None;
    for _ in 0..50 {
        let mut stream = connect_from(&f, "127.0.0.1");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut head = [0u8; 12];
        // A refused connection may be reset rather than closed: its request went unread.
        let status = stream.read_exact(&mut head).ok().map(|()| head);
        if status.as_ref() == Some(b"HTTP/1.1 200") {
            served = Some(200);
            break;
        }
        // The server notices the closed connection on its own schedule.
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(served, Some(200));
}

/// Downloads a physics package, so that the download counter has an org to name.
fn download_a_physics_package(f: &FullApp) {
    let packages = f.json("GET", "/v1/orgs/physics/packages", Some(&f.admin), None);
    let url = packages[0]["url"].as_str().unwrap().to_string();
    let response = f.app.get(&url, Some(&f.physics));
    assert_eq!(response.status(), 200);
    response.bytes().unwrap();
}

/// `/metrics` is public, and the API never says whether another org exists: anonymous
/// metrics count downloads by platform alone.
#[test]
fn public_metrics_name_no_org() {
    let f = spawn_full_app();
    download_a_physics_package(&f);
    let (status, text) = f.call("GET", "/metrics", None, None);
    assert_eq!(status, 200);
    assert!(
        text.contains("depot_downloads_total{platform=\"linux-x86_64\"} 1\n")
            || text.contains("depot_downloads_total{platform=\"windows-x86_64\"} 1\n"),
        "{text}"
    );
    assert!(
        !text.contains("physics") && !text.contains("org="),
        "{text}"
    );
}

/// With a metrics token configured, `/metrics` wants it, and then shows downloads by org.
#[test]
fn metrics_with_a_token_require_it_and_show_orgs() {
    let token = "scrape-7f3a9c0e5b1d42a8";
    let f = spawn_full_app_with(depot::server::ServerOptions {
        metrics_token: depot::server::metrics::MetricsToken::parse(token),
        ..options()
    });
    download_a_physics_package(&f);
    for presented in [
        None,
        Some("scrape-7f3a9c0e5b1d42a9"),
        Some(f.admin.as_str()),
    ] {
        let (status, text) = f.call("GET", "/metrics", presented, None);
        assert_eq!(status, 401, "{presented:?}: {text}");
        assert!(!text.contains("physics"));
        assert_error_json(&text, Some("unauthorized"));
    }
    let (status, text) = f.call("GET", "/metrics", Some(token), None);
    assert_eq!(status, 200);
    assert!(
        text.contains("depot_downloads_total{org=\"physics\",platform="),
        "{text}"
    );
}

/// What the portal's sign-in sets: the `Set-Cookie` values and the HSTS header of the form,
/// then of a good sign-in.
fn sign_in_headers(f: &FullApp) -> (Vec<String>, Option<String>) {
    let client = f.app.client();
    let form = client.get(f.app.url("/login")).send().unwrap();
    assert_eq!(form.status(), 200);
    let mut cookies: Vec<String> = form
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let hsts = form
        .headers()
        .get("strict-transport-security")
        .map(|v| v.to_str().unwrap().to_string());
    let login_cookie = cookies[0].split(';').next().unwrap().to_string();
    let csrf = login_cookie.split_once('=').unwrap().1.to_string();
    let signed_in = client
        .post(f.app.url("/login"))
        .header("cookie", &login_cookie)
        .form(&[("token", f.admin.as_str()), ("csrf", csrf.as_str())])
        .send()
        .unwrap();
    assert_eq!(signed_in.status(), 303, "sign-in");
    cookies.extend(
        signed_in
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string()),
    );
    assert!(
        cookies.iter().any(|c| c.starts_with("depot_session=")),
        "{cookies:?}"
    );
    (cookies, hsts)
}

/// Behind the documented nginx set-up TLS ends at the proxy and depot speaks plain HTTP; its
/// public URL says https, and that is what decides `Secure` cookies and HSTS.
#[test]
fn an_https_public_url_makes_cookies_secure_and_pages_send_hsts() {
    let behind_tls = spawn_full_app_at(options(), "https://depot.example.edu");
    let (cookies, hsts) = sign_in_headers(&behind_tls);
    for cookie in &cookies {
        assert!(cookie.contains("; Secure"), "{cookie}");
    }
    assert_eq!(hsts.as_deref(), Some("max-age=31536000"));
    let page = behind_tls.app.get("/", None);
    assert!(page.headers().contains_key("strict-transport-security"));

    // Over plain HTTP end to end, neither (a browser would drop a Secure cookie over http).
    let plain = spawn_full_app_at(options(), "http://127.0.0.1:8080");
    let (cookies, hsts) = sign_in_headers(&plain);
    assert!(cookies.iter().all(|c| !c.contains("Secure")), "{cookies:?}");
    assert_eq!(hsts, None);
}
