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
    let address = f.app.address;
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let answered = |stream: &mut TcpStream| {
        stream
            .set_read_timeout(Some(Duration::from_millis(700)))
            .unwrap();
        stream.write_all(request).unwrap();
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
    };
    let mut held: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(address).unwrap())
        .collect();
    assert!(
        answered(&mut held[0]),
        "a connection within the limit is served"
    );

    // The kernel completes the handshake, but the server does not take the connection up.
    let mut third = TcpStream::connect(address).unwrap();
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
