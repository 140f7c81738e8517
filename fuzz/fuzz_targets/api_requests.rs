//! Request bodies through the whole application (`depot::server::router`, no sockets): release
//! uploads (multipart), enrollment, update checks, device reports, org create and update, and GETs
//! of arbitrary paths. No input may get a 5xx, and every refusal is a JSON error body.

#![no_main]

use axum::body::Body;
use axum::http::{header, Method, Request, Uri};
use depot::org::OrgConfig;
use depot::server::{router, AppState, ServerOptions};
use depot::service::fleet::EnrollRequest;
use depot::service::{Actor, Depot};
use depot::store::Role;
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};

const BOUNDARY: &str = "depotfuzz";

struct App {
    runtime: tokio::runtime::Runtime,
    /// The whole application, the update check's own path included.
    app: depot::server::App,
    admin: String,
    device: String,
}

fn app() -> &'static App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(|| {
        // Kept for the life of the process: the fuzzer exits without running destructors.
        let dir = tempfile::tempdir().expect("temporary directory").keep();
        let settings = depot::demo::settings_for(&dir, "http://127.0.0.1:8080");
        depot::setup::init(&settings, false).expect("init");
        let depot = Arc::new(Depot::open(&settings).expect("open depot"));
        let actor = Actor {
            name: "fuzz".into(),
            address: "local".into(),
        };
        let physics = "physics".parse().expect("org code");
        let config = OrgConfig::new("Department of Physics").expect("config");
        let (org, _) = depot.add_org(&actor, &physics, config).expect("add org");
        let admin = depot
            .create_token(&actor, Role::Admin, None, Some("fuzz-admin".into()))
            .expect("token")
            .secret;
        let enrolled = depot
            .enroll(
                &EnrollRequest {
                    registration_key: org.registration_key.to_string(),
                    hostname: "fuzz-host".into(),
                    platform: "linux-x86_64".into(),
                    os_version: String::new(),
                    user: String::new(),
                },
                "127.0.0.1",
            )
            .expect("enroll");
        let options = ServerOptions {
            max_body_bytes: 64 * 1024,
            max_upload_bytes: 1 << 20,
            ..ServerOptions::default()
        };
        App {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            app: router(AppState::with_depot(depot, options)),
            admin,
            device: enrolled.device_token,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let app = app();
    let json = "application/json";
    let multipart = format!("multipart/form-data; boundary={BOUNDARY}");
    let (method, path, token, content_type, body) = match mode % 7 {
        0 => (
            Method::POST,
            "/v1/releases".to_string(),
            Some(&app.admin),
            multipart.as_str(),
            rest,
        ),
        1 => (Method::POST, "/v1/devices/enroll".into(), None, json, rest),
        2 => (
            Method::POST,
            "/v1/update-check".into(),
            Some(&app.device),
            json,
            rest,
        ),
        3 => (
            Method::POST,
            "/v1/devices/events".into(),
            Some(&app.device),
            json,
            rest,
        ),
        4 => (
            Method::POST,
            "/v1/orgs".into(),
            Some(&app.admin),
            json,
            rest,
        ),
        5 => (
            Method::PUT,
            "/v1/orgs/physics".into(),
            Some(&app.admin),
            json,
            rest,
        ),
        _ => {
            let text = String::from_utf8_lossy(rest);
            let path = text.lines().next().unwrap_or_default().to_string();
            (Method::GET, path, Some(&app.admin), json, &[][..])
        }
    };
    let Ok(uri) = path.parse::<Uri>() else {
        return;
    };
    if uri.path_and_query().is_none() || uri.scheme().is_some() {
        return;
    }
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, content_type);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(Body::from(body.to_vec()))
        .expect("a request of valid parts");
    let (status, bytes) = app.runtime.block_on(async {
        let response = app.app.handle(request).await;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        (status, bytes)
    });
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        !status.is_server_error(),
        "{status} for mode {mode}: {text}"
    );
    if status.is_client_error() {
        let error: serde_json::Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{status} without a JSON body ({e}): {text}"));
        assert!(error["error"]["code"].is_string(), "{status}: {text}");
    }
});
