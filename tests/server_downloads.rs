//! Downloads over real HTTP: headers, ranges, conditionals, resume with curl and wget, path
//! attacks, the authorization matrix, audit, `latest` and graceful shutdown.

mod server_support;

use reqwest::header;
use server_support::*;
use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

const PHYSICS_LINUX: &str = "/v1/download/physics/11.2.1/physics-11.2.1-linux-x86_64.zip";
const DEFAULT_LINUX: &str = "/v1/download/default/11.2.1/default-11.2.1-linux-x86_64.zip";

fn range_get(app: &TestApp, path: &str, range: &str) -> reqwest::blocking::Response {
    app.client()
        .get(app.url(path))
        .bearer_auth(ADMIN)
        .header(header::RANGE, range)
        .send()
        .unwrap()
}

#[test]
fn full_download_has_every_header_and_the_exact_bytes() {
    let (app, f) = spawn_app();
    let response = app.get(DEFAULT_LINUX, None);
    assert_eq!(response.status(), 200);
    let h = response.headers().clone();
    let p = &f.default_linux.package;
    assert_eq!(h[header::CONTENT_LENGTH], p.size.to_string().as_str());
    assert_eq!(h[header::CONTENT_TYPE], "application/zip");
    assert_eq!(
        h[header::CONTENT_DISPOSITION],
        "attachment; filename=\"default-11.2.1-linux-x86_64.zip\""
    );
    assert_eq!(h[header::ETAG], format!("\"{}\"", p.sha256).as_str());
    assert_eq!(h[header::LAST_MODIFIED], "Tue, 14 Nov 2023 22:21:40 GMT");
    assert_eq!(h[header::ACCEPT_RANGES], "bytes");
    assert_eq!(h["repr-digest"], p.sha256.repr_digest().as_str());
    let body = response.bytes().unwrap();
    assert_eq!(body.len(), f.default_linux.bytes.len());
    assert!(body[..] == f.default_linux.bytes[..], "bytes differ");
}

#[test]
fn ranges_at_start_middle_end_and_across_segments() {
    let (app, f) = spawn_app();
    let bytes = &f.physics_linux.bytes;
    let len = bytes.len() as u64;
    let boundary = PAYLOAD_PART_LEN as u64;
    let cases: Vec<(String, std::ops::Range<u64>)> = vec![
        ("bytes=0-99".into(), 0..100),
        ("bytes=1000-4194403".into(), 1000..4_194_404),
        (
            format!("bytes={}-{}", boundary - 10, boundary + 9),
            boundary - 10..boundary + 10,
        ),
        (format!("bytes={}-", boundary), boundary..len),
        ("bytes=-100".into(), len - 100..len),
        (format!("bytes={}-{}", len - 1, len + 1000), len - 1..len),
        ("bytes=0-".into(), 0..len),
    ];
    for (range, expected) in cases {
        let response = range_get(&app, PHYSICS_LINUX, &range);
        assert_eq!(response.status(), 206, "{range}");
        assert_eq!(
            response.headers()[header::CONTENT_RANGE],
            format!("bytes {}-{}/{len}", expected.start, expected.end - 1).as_str(),
            "{range}"
        );
        assert_eq!(
            response.headers()[header::CONTENT_LENGTH],
            (expected.end - expected.start).to_string().as_str()
        );
        assert_eq!(
            response.headers()["repr-digest"],
            f.physics_linux.package.sha256.repr_digest().as_str(),
            "Repr-Digest describes the whole representation"
        );
        let body = response.bytes().unwrap();
        assert!(
            body[..] == bytes[expected.start as usize..expected.end as usize],
            "{range}: wrong bytes"
        );
    }
}

#[test]
fn unsatisfiable_multi_and_malformed_ranges() {
    let (app, f) = spawn_app();
    let len = f.physics_linux.bytes.len();
    let response = range_get(&app, PHYSICS_LINUX, &format!("bytes={len}-"));
    assert_eq!(response.status(), 416);
    assert_eq!(
        response.headers()[header::CONTENT_RANGE],
        format!("bytes */{len}").as_str()
    );
    assert_error_json(&response.text().unwrap(), Some("range_not_satisfiable"));
    // Multi-range and malformed ranges are answered with the whole file.
    for range in ["bytes=0-1,5-9", "bytes=9-1", "lines=1-2"] {
        let response = range_get(&app, PHYSICS_LINUX, range);
        assert_eq!(response.status(), 200, "{range}");
        assert_eq!(response.bytes().unwrap().len(), len);
    }
}

#[test]
fn conditional_requests() {
    let (app, f) = spawn_app();
    let etag = format!("\"{}\"", f.physics_linux.package.sha256);
    let client = app.client();
    let send = |headers: &[(header::HeaderName, &str)]| {
        let mut request = client.get(app.url(PHYSICS_LINUX)).bearer_auth(PHYSICS);
        for (k, v) in headers {
            request = request.header(k.clone(), *v);
        }
        request.send().unwrap()
    };
    let response = send(&[(header::IF_NONE_MATCH, &etag)]);
    assert_eq!(response.status(), 304);
    assert_eq!(response.headers()[header::ETAG], etag.as_str());
    assert!(response.bytes().unwrap().is_empty());
    assert_eq!(send(&[(header::IF_NONE_MATCH, "\"other\"")]).status(), 200);

    let response = send(&[(header::RANGE, "bytes=10-19"), (header::IF_RANGE, &etag)]);
    assert_eq!(response.status(), 206);
    assert!(response.bytes().unwrap()[..] == f.physics_linux.bytes[10..20]);
    let response = send(&[
        (header::RANGE, "bytes=10-19"),
        (header::IF_RANGE, "\"stale\""),
    ]);
    assert_eq!(response.status(), 200, "a changed file is sent whole");
    let last_modified = "Tue, 14 Nov 2023 22:21:40 GMT";
    let response = send(&[
        (header::RANGE, "bytes=10-19"),
        (header::IF_RANGE, last_modified),
    ]);
    assert_eq!(response.status(), 206);
    assert_eq!(
        send(&[(header::IF_MODIFIED_SINCE, last_modified)]).status(),
        304
    );
}

#[test]
fn head_has_the_headers_and_no_body() {
    let (app, f) = spawn_app();
    let get = app.get(PHYSICS_LINUX, Some(ADMIN));
    let head = app
        .client()
        .head(app.url(PHYSICS_LINUX))
        .bearer_auth(ADMIN)
        .send()
        .unwrap();
    assert_eq!(head.status(), 200);
    for name in [
        header::CONTENT_LENGTH,
        header::CONTENT_TYPE,
        header::CONTENT_DISPOSITION,
        header::ETAG,
        header::LAST_MODIFIED,
        header::ACCEPT_RANGES,
    ] {
        assert_eq!(
            head.headers().get(&name),
            get.headers().get(&name),
            "{name}"
        );
    }
    assert_eq!(head.headers()["repr-digest"], get.headers()["repr-digest"]);
    assert_eq!(
        head.headers()[header::CONTENT_LENGTH],
        f.physics_linux.bytes.len().to_string().as_str()
    );
    assert!(head.bytes().unwrap().is_empty());
}

#[test]
fn checksums_and_signatures() {
    let (app, f) = spawn_app();
    let response = app.get("/v1/download/physics/11.2.1/SHA256SUMS", Some(PHYSICS));
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()[header::CONTENT_DISPOSITION],
        "attachment; filename=\"SHA256SUMS\""
    );
    assert!(response.headers().contains_key(header::ETAG));
    assert_eq!(response.text().unwrap(), f.sums_text);
    let response = app.get(
        "/v1/download/physics/11.2.1/SHA256SUMS.minisig",
        Some(PHYSICS),
    );
    assert_eq!(response.status(), 200);
    assert!(response.text().unwrap().contains("physics SHA256SUMS"));
    let response = app.get(&format!("{PHYSICS_LINUX}.minisig"), Some(PHYSICS));
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().unwrap(), f.physics_linux.package.minisig);
    // The sums list each package with its real digest.
    assert!(f.sums_text.contains(&format!(
        "{}  physics-11.2.1-windows-x86_64.zip",
        f.physics_windows.package.sha256
    )));
}

#[test]
fn unknown_files_are_404_json() {
    let (app, _) = spawn_app();
    for path in [
        "/v1/download/default/11.2.1/default-11.2.1-macos-aarch64.zip",
        "/v1/download/default/9.9.9/default-9.9.9-linux-x86_64.zip",
        "/v1/download/default/11.2.1/physics-11.2.1-linux-x86_64.zip",
        "/v1/download/nosuch/11.2.1/SHA256SUMS",
        "/v1/download/default/11.2.1/depot.db",
        "/v1/nothing",
    ] {
        let response = app.get(path, Some(ADMIN));
        assert_eq!(response.status(), 404, "{path}");
        assert_error_json(&response.text().unwrap(), Some("not_found"));
    }
    let response = app.client().delete(app.url(DEFAULT_LINUX)).send().unwrap();
    assert_eq!(response.status(), 405);
    assert_error_json(&response.text().unwrap(), Some("method_not_allowed"));
}

#[test]
fn traversal_nul_and_overlong_segments_are_4xx_json() {
    let (app, _) = spawn_app();
    let long = "a".repeat(600);
    let paths = [
        "/v1/download/../../etc/passwd".to_string(),
        "/v1/download/default/11.2.1/../../../depot.db".to_string(),
        "/v1/download/default/11.2.1/..".to_string(),
        "/v1/download/%2e%2e/11.2.1/SHA256SUMS".to_string(),
        "/v1/download/default/%2e%2e/SHA256SUMS".to_string(),
        "/v1/download/default/11.2.1/%2e%2e%2f%2e%2e%2fdepot.db".to_string(),
        "/v1/download/default/11.2.1/..%2F..%2Fdepot.db".to_string(),
        "/v1/download/default%2F..%2F..%2Fetc/11.2.1/passwd".to_string(),
        "/v1/download/default/11.2.1/%2Fetc%2Fpasswd".to_string(),
        "/v1/download/default/11.2.1/SHA256SUMS%00".to_string(),
        "/v1/download/default%00/11.2.1/SHA256SUMS".to_string(),
        "/v1/download/default/11.2.1/%ff%fe".to_string(),
        "/v1/download/default/11.2.1/..%5C..%5Cdepot.db".to_string(),
        format!("/v1/download/{long}/11.2.1/SHA256SUMS"),
        format!("/v1/download/default/{long}/SHA256SUMS"),
        format!("/v1/download/default/11.2.1/{long}"),
        format!("/v1/download/default/latest/{long}"),
    ];
    for path in &paths {
        let (status, text) = app.raw(&format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        ));
        assert!((400..500).contains(&status), "{path}: {status}");
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
        assert_error_json(body, None);
        assert!(!text.contains("root:"), "{path} leaked a file");
        assert!(
            !text.contains("SQLite format"),
            "{path} leaked the database"
        );
    }
}

#[test]
fn authorization_matrix() {
    let (app, _) = spawn_app();
    let cases: [(&str, Option<&str>, u16); 10] = [
        (DEFAULT_LINUX, None, 200),
        (DEFAULT_LINUX, Some(PHYSICS), 200),
        (DEFAULT_LINUX, Some("garbage"), 401),
        (PHYSICS_LINUX, None, 401),
        (PHYSICS_LINUX, Some(ADMIN), 200),
        (PHYSICS_LINUX, Some(PHYSICS), 200),
        (PHYSICS_LINUX, Some(CHEMISTRY), 404),
        (PHYSICS_LINUX, Some(REVOKED), 401),
        (PHYSICS_LINUX, Some("garbage"), 401),
        (
            "/v1/download/physics/11.2.1/SHA256SUMS",
            Some(CHEMISTRY),
            404,
        ),
    ];
    for (path, token, expected) in cases {
        let mut request = app.client().head(app.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().unwrap();
        assert_eq!(response.status(), expected, "{path} with {token:?}");
    }
    // Another org's resource looks exactly like an unknown one.
    let foreign = app.get(PHYSICS_LINUX, Some(CHEMISTRY));
    let unknown = app.get(
        "/v1/download/nosuch/11.2.1/nosuch-11.2.1-linux-x86_64.zip",
        Some(CHEMISTRY),
    );
    assert_eq!(foreign.status(), unknown.status());
    assert_error_json(&foreign.text().unwrap(), Some("not_found"));
    let response = app.get(PHYSICS_LINUX, None);
    assert_eq!(response.status(), 401);
    assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
    assert_error_json(&response.text().unwrap(), Some("unauthorized"));
}

#[test]
fn revocation_by_another_process_applies_at_once() {
    let (app, _) = spawn_app();
    assert_eq!(app.get(PHYSICS_LINUX, Some(PHYSICS)).status(), 200);
    // The CLI revokes through its own connection to the same database.
    let other = depot::store::SqliteStore::open(&app.dir.path().join("depot.db")).unwrap();
    use depot::store::MetaStore;
    assert!(other.revoke_token("tok_phys", 1_800_000_000).unwrap());
    assert_eq!(app.get(PHYSICS_LINUX, Some(PHYSICS)).status(), 401);
}

#[test]
fn department_downloads_are_audited() {
    let (app, f) = spawn_app();
    assert_eq!(app.get(PHYSICS_LINUX, Some(PHYSICS)).status(), 200);
    assert_eq!(range_get(&app, PHYSICS_LINUX, "bytes=5-9").status(), 206);
    assert_eq!(app.get(DEFAULT_LINUX, None).status(), 200);
    let events = app
        .meta
        .query_audit(&depot::store::AuditFilter {
            action: Some("package.download".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    let full = events.iter().find(|e| e.detail.is_none()).unwrap();
    assert_eq!(full.actor, "tok_phys-name");
    assert_eq!(full.org.as_ref().unwrap().as_str(), "physics");
    assert_eq!(full.target, f.physics_linux.package.file_name);
    assert_eq!(full.address, "127.0.0.1");
    let partial = events.iter().find(|e| e.detail.is_some()).unwrap();
    assert_eq!(partial.actor, "tok_admin-name");
    assert_eq!(partial.detail.as_deref(), Some("bytes 5-9"));
}

#[test]
fn latest_redirects() {
    let (app, _) = spawn_app();
    let location = |path: &str, token| {
        let response = app.get(path, token);
        assert_eq!(response.status(), 302, "{path}");
        response.headers()[header::LOCATION]
            .to_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        location("/v1/download/default/latest/linux-x86_64", None),
        DEFAULT_LINUX
    );
    assert_eq!(
        location("/v1/download/default/latest/SHA256SUMS", None),
        "/v1/download/default/11.2.1/SHA256SUMS"
    );
    // chemistry is on beta, where 11.3.0 is published; 11.4.0 is published nowhere.
    assert_eq!(
        location(
            "/v1/download/chemistry/latest/linux-x86_64",
            Some(CHEMISTRY)
        ),
        "/v1/download/chemistry/11.3.0/chemistry-11.3.0-linux-x86_64.zip"
    );
    assert_eq!(
        location(
            "/v1/download/chemistry/latest/linux-x86_64?channel=stable",
            Some(CHEMISTRY)
        ),
        "/v1/download/chemistry/11.2.1/chemistry-11.2.1-linux-x86_64.zip"
    );
    // 11.3.0 has no windows payload: the newest with one is 11.2.1.
    assert_eq!(
        location(
            "/v1/download/chemistry/latest/windows-x86_64",
            Some(CHEMISTRY)
        ),
        "/v1/download/chemistry/11.2.1/chemistry-11.2.1-windows-x86_64.zip"
    );
    assert_eq!(
        app.get("/v1/download/physics/latest/linux-x86_64", None)
            .status(),
        401
    );
    assert_eq!(
        app.get("/v1/download/physics/latest/linux-x86_64", Some(CHEMISTRY))
            .status(),
        404
    );
    let response = app.get("/v1/download/default/latest/macos-aarch64", None);
    assert_eq!(response.status(), 404);
    assert_error_json(&response.text().unwrap(), Some("not_found"));
    let response = app.get(
        "/v1/download/default/latest/linux-x86_64?channel=Bad!",
        None,
    );
    assert!(response.status().is_client_error());
    assert_error_json(&response.text().unwrap(), None);
    // Following the redirect gets the file.
    let followed =
        reqwest::blocking::get(app.url("/v1/download/default/latest/linux-x86_64")).unwrap();
    assert_eq!(followed.status(), 200);
}

/// Writes the first `cut` bytes as an interrupted download would have left them.
fn partial_file(dir: &std::path::Path, name: &str, bytes: &[u8], cut: usize) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, &bytes[..cut]).unwrap();
    path
}

#[test]
fn curl_resumes_an_interrupted_download() {
    if !tool_available("curl", "--version") {
        return;
    }
    let (app, f) = spawn_app();
    let out = tempfile::tempdir().unwrap();
    let path = partial_file(out.path(), "physics.zip", &f.physics_linux.bytes, 1_048_583);
    let status = Command::new("curl")
        .args(["-sS", "--fail", "-C", "-", "-o"])
        .arg(&path)
        .args(["-H", &format!("Authorization: Bearer {PHYSICS}")])
        .arg(app.url(PHYSICS_LINUX))
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        std::fs::read(&path).unwrap() == f.physics_linux.bytes,
        "curl -C - produced wrong bytes"
    );
    let events = app
        .meta
        .query_audit(&depot::store::AuditFilter::default())
        .unwrap();
    assert!(
        events.iter().any(|e| e.detail.as_deref()
            == Some(&*format!(
                "bytes 1048583-{}",
                f.physics_linux.bytes.len() - 1
            ))),
        "the resumed range was requested: {events:?}"
    );
}

#[test]
fn wget_resumes_an_interrupted_download() {
    if !tool_available("wget", "--version") {
        return;
    }
    let (app, f) = spawn_app();
    let out = tempfile::tempdir().unwrap();
    let name = "default-11.2.1-linux-x86_64.zip";
    let path = partial_file(out.path(), name, &f.default_linux.bytes, 4_194_311);
    let status = Command::new("wget")
        .args(["-q", "-c", "-P"])
        .arg(out.path())
        .arg(app.url(DEFAULT_LINUX))
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        std::fs::read(&path).unwrap() == f.default_linux.bytes,
        "wget -c produced wrong bytes"
    );
    // A complete file is left alone: wget asks for the range past its end and gets 416.
    let status = Command::new("wget")
        .args(["-q", "-c", "-P"])
        .arg(out.path())
        .arg(app.url(DEFAULT_LINUX))
        .status()
        .unwrap();
    assert!(status.success());
    assert!(std::fs::read(&path).unwrap() == f.default_linux.bytes);
}

#[test]
fn metrics_and_openapi_describe_downloads() {
    let (app, _) = spawn_app();
    assert_eq!(app.get(DEFAULT_LINUX, None).status(), 200);
    assert_eq!(app.get("/healthz", None).status(), 200);
    let text = app.get("/metrics", None).text().unwrap();
    assert!(
        // Public metrics name no org (not even `default`: see hostile_clients for the token).
        text.contains("depot_downloads_total{platform=\"linux-x86_64\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("route=\"/v1/download/{org}/{version}/{file}\",status=\"200\"}"),
        "{text}"
    );
    assert!(text.contains("depot_bytes_served_total"), "{text}");
    let api: serde_json::Value = app.get("/openapi.json", None).json().unwrap();
    let download = &api["paths"]["/v1/download/{org}/{version}/{file}"];
    assert!(
        download["get"].is_object() && download["head"].is_object(),
        "{api}"
    );
}

#[test]
fn shutdown_lets_an_in_flight_download_finish() {
    let (mut app, f) = spawn_app();
    let mut stream = std::net::TcpStream::connect(app.address).unwrap();
    stream
        .write_all(format!("GET {DEFAULT_LINUX} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    let mut first = vec![0u8; 64 * 1024];
    stream.read_exact(&mut first).unwrap();
    // Ask for shutdown while most of the body is still to come.
    let reader = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).unwrap();
        first.extend_from_slice(&rest);
        first
    });
    app.shutdown();
    let response = reader.join().unwrap();
    let head_end = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(
        response[head_end..] == f.default_linux.bytes[..],
        "the download was cut short"
    );
    assert!(
        std::net::TcpStream::connect(app.address).is_err(),
        "still accepting after shutdown"
    );
}

#[test]
fn repeated_bad_tokens_are_rate_limited() {
    let (app, _) = spawn_app();
    for _ in 0..20 {
        assert_eq!(app.get(PHYSICS_LINUX, Some("depot_guess")).status(), 401);
    }
    let response = app.get(PHYSICS_LINUX, Some("depot_guess"));
    assert_eq!(response.status(), 429);
    assert_error_json(&response.text().unwrap(), Some("rate_limited"));
    assert_eq!(
        app.get(PHYSICS_LINUX, Some(PHYSICS)).status(),
        200,
        "a valid token is never refused for its address"
    );
    assert_eq!(
        app.get(DEFAULT_LINUX, None).status(),
        200,
        "public downloads need no token and are not blocked"
    );
}
