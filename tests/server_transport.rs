//! The transport: TLS with rustls, the header read timeout, and refusal of bad TLS material.

mod server_support;

use server_support::*;
use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn serves_https_when_given_a_certificate() {
    if !tool_available("openssl", "version") || !tool_available("curl", "--version") {
        return;
    }
    let pem = tempfile::tempdir().unwrap();
    let (cert, key) = (pem.path().join("cert.pem"), pem.path().join("key.pem"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-days",
            "1",
        ])
        .output()
        .unwrap()
        .status;
    assert!(status.success());
    let dir = tempfile::tempdir().unwrap();
    let (meta, blobs) = stores(dir.path());
    let fixtures = insert_fixtures(meta.as_ref(), blobs.as_ref());
    let app = start(
        dir,
        meta,
        blobs,
        depot::server::ServerOptions {
            tls: Some(depot::server::TlsFiles {
                cert: cert.clone(),
                key,
            }),
            ..options()
        },
    );
    let port = app.address.port();
    let out = pem.path().join("download.zip");
    let status = Command::new("curl")
        .args(["-sS", "--fail", "--cacert"])
        .arg(&cert)
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1"), "-o"])
        .arg(&out)
        .arg(format!(
            "https://localhost:{port}/v1/download/default/11.2.1/default-11.2.1-linux-x86_64.zip"
        ))
        .status()
        .unwrap();
    assert!(status.success());
    assert!(std::fs::read(&out).unwrap() == fixtures.default_linux.bytes);
    // Plain HTTP on the TLS port gets nothing served.
    let (status, _) = app.raw("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(status, 0);
}

#[test]
fn bad_tls_material_is_refused_at_start() {
    let pem = tempfile::tempdir().unwrap();
    let empty = pem.path().join("empty.pem");
    std::fs::write(&empty, "not a pem file\n").unwrap();
    let files = depot::server::TlsFiles {
        cert: empty.clone(),
        key: empty.clone(),
    };
    let error = depot::server::tls_acceptor(&files)
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("empty.pem holds no certificate"), "{error}");
    let missing = depot::server::TlsFiles {
        cert: pem.path().join("missing.pem"),
        key: empty,
    };
    let error = depot::server::tls_acceptor(&missing)
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("missing.pem"), "{error}");
}

#[test]
fn slow_headers_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let (meta, blobs) = stores(dir.path());
    let app = start(
        dir,
        meta,
        blobs,
        depot::server::ServerOptions {
            header_read_timeout: Duration::from_millis(500),
            ..options()
        },
    );
    let mut stream = std::net::TcpStream::connect(app.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut rest = Vec::new();
    // The server closes the connection (possibly after a 408) instead of waiting forever.
    let _ = stream.read_to_end(&mut rest);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
