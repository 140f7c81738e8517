//! The portal in headless Chromium driven over WebDriver: sign in through the form, download an
//! installer from the page, edit the exclude list and see the package rebuilt, upload an
//! overlay file through the file input, cross-org refusal, a forged cross-site POST refused,
//! the admin page's rollout state, and no console errors. Needs `chromium` and `chromedriver`
//! (Debian: chromium, chromium-driver); without them the test fails under CI=true and is
//! skipped otherwise.

mod portal_support;

use fantoccini::{Client, ClientBuilder, Locator};
use portal_support::*;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// chromedriver on a free loopback port, or `None` (with the reason) when it is not installed.
fn start_driver() -> Option<(Driver, u16)> {
    let found = Command::new("chromedriver")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found || !Path::new(CHROMIUM).exists() {
        let reason =
            "chromium or chromedriver is not installed (apt-get install chromium chromium-driver)";
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{reason}");
        }
        eprintln!("skipping the browser test: {reason}");
        return None;
    }
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let driver = Driver(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Some((driver, port))
}

async fn browser(port: u16, profile: &Path, downloads: &Path) -> Client {
    // The WebDriver client links rustls; pick its provider (the test talks plain HTTP anyway).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let capabilities = serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage",
                format!("--user-data-dir={}", profile.display()),
            ],
            "prefs": {
                "download.default_directory": downloads.display().to_string(),
                "download.prompt_for_download": false,
                "safebrowsing.enabled": false,
            },
        },
        "goog:loggingPrefs": { "browser": "ALL" },
    });
    let serde_json::Value::Object(capabilities) = capabilities else {
        unreachable!()
    };
    ClientBuilder::rustls()
        .unwrap()
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .unwrap()
}

/// The browser's console entries at level SEVERE since the last call.
async fn console_errors(c: &Client, port: u16) -> Vec<String> {
    let id = c.session_id().await.unwrap().unwrap();
    let log: serde_json::Value = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/session/{id}/se/log"))
        .json(&serde_json::json!({"type": "browser"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    log["value"]
        .as_array()
        .expect("a browser log")
        .iter()
        .filter(|e| e["level"] == "SEVERE")
        .map(|e| e["message"].to_string())
        .collect()
}

async fn sign_in(c: &Client, base: &str, token: &str) {
    c.goto(&format!("{base}/login")).await.unwrap();
    c.find(Locator::Css("input[name=token]"))
        .await
        .unwrap()
        .send_keys(token)
        .await
        .unwrap();
    c.find(Locator::Css("form[action='/login'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // Signed in: the page header names the person.
    c.wait()
        .for_element(Locator::Css("span.who"))
        .await
        .unwrap();
}

async fn shown_sha(c: &Client, file: &str) -> String {
    c.find(Locator::Css(&format!("code[data-file='{file}']")))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A page of another site that posts a form to the portal as soon as it loads.
fn serve_attacker(runtime: &tokio::runtime::Runtime, target: String) -> String {
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let page = format!(
        "<!doctype html><html><body><form method=\"post\" action=\"{target}\">\
         <input name=\"name\" value=\"pwned\"><input name=\"exclude\" value=\".*\">\
         <input name=\"csrf\" value=\"guess\"></form>\
         <script>document.forms[0].submit()</script></body></html>"
    );
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let page = page.clone();
            async move { axum::response::Html(page) }
        }),
    );
    runtime.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

#[test]
fn portal_in_a_real_browser() {
    let Some((_driver, port)) = start_driver() else {
        return;
    };
    let p = start();
    let profile = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    let uploads = tempfile::tempdir().unwrap();
    let attacker = serve_attacker(&p.runtime, format!("{}/orgs/physics/config", p.url));
    let base = p.url.clone();
    p.runtime.block_on(async {
        let c = browser(port, profile.path(), downloads.path()).await;

        // Sign in through the form: the partner lands on its org's page.
        sign_in(&c, &base, &p.partner_token).await;
        assert_eq!(c.current_url().await.unwrap().path(), "/orgs/physics");

        // Download an installer by clicking its link.
        let file = "physics-11.3.0-linux-x86_64.zip";
        let sha_before = shown_sha(&c, file).await;
        c.find(Locator::Css(&format!("a[href$='/{file}']")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let landed = downloads.path().join(file);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !landed.exists() {
            assert!(Instant::now() < deadline, "the download did not land");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let bytes = std::fs::read(&landed).unwrap();
        assert_eq!(depot::domain::Sha256::digest(&bytes).to_hex(), sha_before);

        // Add an exclusion through the form: the package is rebuilt and the page says so.
        let exclude = c
            .find(Locator::Css("textarea[name=exclude]"))
            .await
            .unwrap();
        exclude.send_keys("\n(?i).*\\.bak$").await.unwrap();
        c.find(Locator::Css("form[action='/orgs/physics/config'] button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let flash = c
            .wait()
            .for_element(Locator::Css("p.flash"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(flash.starts_with("Saved. Rebuilt"), "{flash}");
        let sha_rebuilt = shown_sha(&c, file).await;
        assert_ne!(sha_rebuilt, sha_before);

        // Upload an overlay file through the file input: listed, and the package rebuilt.
        let script = uploads.path().join("detect-user.sh");
        std::fs::write(&script, "#!/bin/sh\necho lab-user\n").unwrap();
        c.find(Locator::Css("#overlay-file"))
            .await
            .unwrap()
            .send_keys(&script.display().to_string())
            .await
            .unwrap();
        c.find(Locator::Css("form[action='/orgs/physics/files'] button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        c.wait()
            .for_element(Locator::Css("tr[data-name='detect-user.sh']"))
            .await
            .unwrap();
        let flash = c
            .find(Locator::Css("p.flash"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            flash.starts_with("Stored overlay file detect-user.sh (24 bytes). Rebuilt"),
            "{flash}"
        );
        let sha_after = shown_sha(&c, file).await;
        assert_ne!(sha_after, sha_rebuilt);
        let errors = console_errors(&c, port).await;
        assert!(errors.is_empty(), "console errors: {errors:?}");

        // Another org's page is refused.
        c.goto(&format!("{base}/orgs/medicine")).await.unwrap();
        let body = c
            .find(Locator::Css("h1"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(body.starts_with("404"), "{body}");

        // A forged cross-site POST is refused, and changes nothing.
        c.goto(&attacker).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let url = c.current_url().await.unwrap();
            if url.path() == "/orgs/physics/config" {
                break;
            }
            assert!(Instant::now() < deadline, "the forged form did not post");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let body = c
            .find(Locator::Css("h1"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(body.starts_with("403"), "{body}");
        c.goto(&format!("{base}/orgs/physics")).await.unwrap();
        assert_eq!(shown_sha(&c, file).await, sha_after);
        let name = c.find(Locator::Css("input[name=name]")).await.unwrap();
        assert_eq!(
            name.prop("value").await.unwrap().as_deref(),
            Some("Physical Sciences Division")
        );
        console_errors(&c, port).await; // the 404 and 403 above are expected entries

        // Sign out, sign in as an admin: the admin page shows the rollout's state.
        c.find(Locator::Css("form[action='/logout'] button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        c.wait()
            .for_element(Locator::Css("a[href='/login']"))
            .await
            .unwrap();
        sign_in(&c, &base, &p.admin_token).await;
        assert_eq!(c.current_url().await.unwrap().path(), "/admin");
        let row = c
            .find(Locator::Css(
                "tr[data-version='11.3.0'][data-channel='stable']",
            ))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(row.contains("25%") && row.contains("rolling out"), "{row}");
        c.find(Locator::Css(
            "tr[data-version='11.3.0'] button[value=pause]",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
        // The answer to the form carries the one-time message; wait for that page.
        let flash = c
            .wait()
            .for_element(Locator::Css("p.flash"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(flash.contains("paused"), "{flash}");
        let row = c
            .find(Locator::Css(
                "tr[data-version='11.3.0'][data-channel='stable']",
            ))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(row.contains("paused"), "{row}");
        let chart = c.find(Locator::Css("#adoption")).await.unwrap();
        assert!(chart.text().await.unwrap().contains("Version adoption"));
        let errors = console_errors(&c, port).await;
        assert!(errors.is_empty(), "console errors: {errors:?}");
        c.close().await.unwrap();
    });
}
