//! The management API over real HTTP with a real `Depot`: orgs (PUT round trip), overlays,
//! keys, releases (multipart upload, publish, rollout, yank), channels, tokens, audit, the
//! authorization matrix and the OpenAPI document.

mod server_support;

use serde_json::{json, Value};
use server_support::*;
use std::collections::BTreeSet;

#[test]
fn org_crud_and_put_round_trip() {
    let f = spawn_full_app();
    let admin = Some(f.admin.as_str());
    let physics = Some(f.physics.as_str());

    let created = f.call(
        "POST",
        "/v1/orgs",
        admin,
        Some(json!({"code": "biology", "name": "Biology", "seats": 10})),
    );
    assert_eq!(created.0, 201, "{}", created.1);
    let org: Value = serde_json::from_str(&created.1).unwrap();
    assert_eq!(org["code"], "biology");
    assert_eq!(org["channel"], "stable");
    assert!(
        !org["backup"]["exclude"].as_array().unwrap().is_empty(),
        "defaults apply"
    );
    let (status, body) = f.call(
        "POST",
        "/v1/orgs",
        admin,
        Some(json!({"code": "biology", "name": "B"})),
    );
    assert_eq!(status, 409);
    assert_error_json(&body, Some("conflict"));
    let (status, body) = f.call(
        "POST",
        "/v1/orgs",
        admin,
        Some(json!({"code": "Bad Code", "name": "B"})),
    );
    assert_eq!(status, 422);
    assert!(body.contains("org code"), "{body}");
    assert_eq!(
        f.call(
            "POST",
            "/v1/orgs",
            physics,
            Some(json!({"code": "zoo", "name": "Z"}))
        )
        .0,
        403
    );

    let all = f.json("GET", "/v1/orgs", admin, None);
    let codes: BTreeSet<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        BTreeSet::from(["default", "physics", "chemistry", "biology"])
    );
    let own = f.json("GET", "/v1/orgs", physics, None);
    assert_eq!(own.as_array().unwrap().len(), 1);
    assert_eq!(own[0]["code"], "physics");

    // PUT takes back exactly what GET gave, with changes.
    let mut org = f.json("GET", "/v1/orgs/physics", physics, None);
    org["name"] = json!("Physics and Astronomy");
    org["backup"]["exclude"] = json!(["(?i).*\\.iso$"]);
    let updated = f.json("PUT", "/v1/orgs/physics", physics, Some(org.clone()));
    assert_eq!(updated["name"], "Physics and Astronomy");
    assert_eq!(updated["registration_key"], org["registration_key"]);
    assert_eq!(updated["created_at"], org["created_at"]);
    let again = f.json("GET", "/v1/orgs/physics", physics, None);
    assert_eq!(again, updated);

    let mut changed = again.clone();
    changed["code"] = json!("physics2");
    assert_eq!(
        f.call("PUT", "/v1/orgs/physics", physics, Some(changed)).0,
        422
    );
    let mut changed = again.clone();
    changed["registration_key"] = json!("7QKX-M2PA-9D4R-HV0T");
    assert_eq!(
        f.call("PUT", "/v1/orgs/physics", physics, Some(changed)).0,
        422
    );
    let mut stale = again.clone();
    stale["updated_at"] = json!("2001-01-01T00:00:00Z");
    let (status, body) = f.call("PUT", "/v1/orgs/physics", physics, Some(stale));
    assert_eq!(status, 409);
    assert_error_json(&body, Some("conflict"));
    let mut seats = again.clone();
    seats["seats"] = json!(999);
    assert_eq!(
        f.call("PUT", "/v1/orgs/physics", physics, Some(seats.clone()))
            .0,
        403
    );
    assert_eq!(
        f.json("PUT", "/v1/orgs/physics", admin, Some(seats))["seats"],
        999
    );
    let mut unknown = f.json("GET", "/v1/orgs/physics", admin, None);
    unknown["colour"] = json!("blue");
    assert_eq!(
        f.call("PUT", "/v1/orgs/physics", admin, Some(unknown)).0,
        422
    );
    let mut injected = f.json("GET", "/v1/orgs/physics", admin, None);
    injected["settings"]["DEPLOYMENT_URL"] = json!("x\nDEPLOYMENT_URL=https://evil");
    let (status, body) = f.call("PUT", "/v1/orgs/physics", admin, Some(injected));
    assert_eq!(status, 422);
    assert_error_json(&body, Some("invalid"));

    // Malformed bodies are 4xx JSON.
    let client = f.app.client();
    let response = client
        .put(f.app.url("/v1/orgs/physics"))
        .bearer_auth(&f.admin)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_error_json(&response.text().unwrap(), Some("bad_request"));
    let response = client
        .put(f.app.url("/v1/orgs/physics"))
        .bearer_auth(&f.admin)
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(response.status(), 415);
    let response = client
        .put(f.app.url("/v1/orgs/physics"))
        .bearer_auth(&f.admin)
        .header("content-type", "application/json")
        .body(vec![b' '; 3 * 1024 * 1024])
        .send()
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_error_json(&response.text().unwrap(), Some("too_large"));

    assert_eq!(f.call("DELETE", "/v1/orgs/biology", physics, None).0, 403);
    assert_eq!(f.call("DELETE", "/v1/orgs/biology", admin, None).0, 204);
    assert_eq!(f.call("GET", "/v1/orgs/biology", admin, None).0, 404);
    assert_eq!(f.call("DELETE", "/v1/orgs/default", admin, None).0, 409);
}

#[test]
fn rotate_key_overlays_and_packages() {
    let f = spawn_full_app();
    let physics = Some(f.physics.as_str());
    let before = f.json("GET", "/v1/orgs/physics", physics, None);
    let packages = f.json("GET", "/v1/orgs/physics/packages", physics, None);
    assert_eq!(packages.as_array().unwrap().len(), 2, "{packages}");
    let rotated = f.json("POST", "/v1/orgs/physics/rotate-key", physics, None);
    assert_ne!(rotated["registration_key"], before["registration_key"]);
    let after_rotate = f.json("GET", "/v1/orgs/physics/packages", physics, None);
    assert_ne!(
        after_rotate[0]["sha256"], packages[0]["sha256"],
        "packages carry the key: rebuilt"
    );

    let client = f.app.client();
    let put = |name: &str, bytes: Vec<u8>| {
        client
            .put(f.app.url(&format!("/v1/orgs/physics/files/{name}")))
            .bearer_auth(&f.physics)
            .body(bytes)
            .send()
            .unwrap()
    };
    let response = put(
        "detect-user.sh",
        b"#!/bin/sh\necho AGENT_USERNAME=$USER@physics\n".to_vec(),
    );
    assert_eq!(response.status(), 200);
    let overlay: Value = response.json().unwrap();
    assert_eq!(overlay["rebuilt"]["built"].as_array().unwrap().len(), 2);
    let response = put("custom%2Flogo.png", vec![1, 2, 3]);
    assert_eq!(
        response.status(),
        200,
        "an encoded slash names a file in a folder"
    );
    assert_eq!(response.json::<Value>().unwrap()["name"], "custom/logo.png");
    // (`..` itself is normalised away by HTTP clients; the raw request below sends it.)
    for bad in [
        "a%2F..%2Fb",
        "%2E%2E%2Fx",
        "bad%20name",
        "depot-package.json",
    ] {
        let response = put(bad, vec![1]);
        assert_eq!(response.status(), 422, "{bad}");
        assert_error_json(&response.text().unwrap(), Some("invalid"));
    }
    for raw in ["/v1/orgs/physics/files/..", "/v1/orgs/physics/files/%2e%2e"] {
        let (status, text) = f.app.raw(&format!(
            "PUT {raw} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
            f.physics
        ));
        assert_eq!(status, 422, "{raw}: {text}");
    }
    let response = put("big.bin", vec![0; depot::org::MAX_OVERLAY_FILE_SIZE + 1]);
    assert_eq!(response.status(), 413);
    let response = client
        .put(f.app.url("/v1/orgs/physics/files/x.sh"))
        .bearer_auth(&f.chemistry)
        .body(vec![0; depot::org::MAX_OVERLAY_FILE_SIZE + 1])
        .send()
        .unwrap();
    assert_eq!(
        response.status(),
        404,
        "access is decided before the body is read"
    );
    assert_eq!(
        f.call(
            "DELETE",
            "/v1/orgs/physics/files/detect-user.sh",
            physics,
            None
        )
        .0,
        204
    );
    assert_eq!(
        f.call(
            "DELETE",
            "/v1/orgs/physics/files/detect-user.sh",
            physics,
            None
        )
        .0,
        404
    );

    let events = f.json("GET", "/v1/audit?org=physics", physics, None);
    let actions: BTreeSet<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in ["org.rotate_key", "org.overlay.put", "org.overlay.delete"] {
        assert!(
            actions.contains(action),
            "{action} missing from {actions:?}"
        );
    }
    assert!(events
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["actor"] == "physics-it" && e["address"] == "127.0.0.1"));
}

#[test]
fn releases_upload_publish_rollout_yank_and_channels() {
    let f = spawn_full_app();
    let admin = Some(f.admin.as_str());
    let list = f.json("GET", "/v1/releases", None, None);
    assert_eq!(list[0]["version"], "11.2.1");
    assert_eq!(list[0]["channels"][0]["channel"], "stable");
    assert_eq!(
        f.json("GET", "/v1/releases/11.2.1", None, None)["notes"],
        "First release."
    );
    assert_eq!(f.call("GET", "/v1/releases/9.9.9", None, None).0, 404);
    assert_eq!(
        f.call("GET", "/v1/releases/not-a-version", None, None).0,
        404
    );

    let payload = pattern(300_000, 42);
    let form = || {
        reqwest::blocking::multipart::Form::new()
            .text("version", "11.3.0")
            .text("notes", "Second release.")
            .part(
                "linux-x86_64",
                reqwest::blocking::multipart::Part::bytes(payload.clone())
                    .file_name("client-linux.tgz"),
            )
    };
    let upload = |token: &str, form: reqwest::blocking::multipart::Form| {
        let response = f
            .app
            .client()
            .post(f.app.url("/v1/releases"))
            .bearer_auth(token)
            .multipart(form)
            .send()
            .unwrap();
        (response.status().as_u16(), response.text().unwrap())
    };
    assert_eq!(upload(&f.physics, form()).0, 403);
    let (status, body) = upload(&f.admin, form());
    assert_eq!(status, 201, "{body}");
    let release: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(release["payloads"][0]["name"], "client-linux.tgz");
    assert_eq!(release["payloads"][0]["size"], 300_000);
    assert_eq!(
        release["payloads"][0]["sha256"],
        depot::domain::Sha256::digest(&payload).to_hex()
    );
    let (status, body) = upload(&f.admin, form());
    assert_eq!(status, 409, "{body}");
    let no_version = reqwest::blocking::multipart::Form::new().part(
        "linux-x86_64",
        reqwest::blocking::multipart::Part::bytes(vec![1]).file_name("x.tgz"),
    );
    assert_eq!(upload(&f.admin, no_version).0, 422);
    let bad_part = reqwest::blocking::multipart::Form::new()
        .text("version", "11.3.1")
        .part(
            "plan9-mips",
            reqwest::blocking::multipart::Part::bytes(vec![1]).file_name("x"),
        );
    assert_eq!(upload(&f.admin, bad_part).0, 422);
    let nul_notes = reqwest::blocking::multipart::Form::new()
        .text("version", "11.3.2")
        .text("notes", "line one\nnul \0 here")
        .part(
            "linux-x86_64",
            reqwest::blocking::multipart::Part::bytes(vec![1]).file_name("x.tgz"),
        );
    let (status, body) = upload(&f.admin, nul_notes);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("control characters"), "{body}");
    assert_eq!(f.call("GET", "/v1/releases/11.3.2", None, None).0, 404);
    let traversal = reqwest::blocking::multipart::Form::new()
        .text("version", "11.3.1")
        .part(
            "linux-x86_64",
            reqwest::blocking::multipart::Part::bytes(vec![1]).file_name("../../x"),
        );
    assert_eq!(upload(&f.admin, traversal).0, 422);

    // Publish builds every org's package; the downloads verify with the served key.
    let published = f.json(
        "POST",
        "/v1/releases/11.3.0/publish",
        admin,
        Some(json!({"channel": "stable", "rollout_percent": 25})),
    );
    assert_eq!(published["release"]["channels"][0]["percent"], 25);
    assert_eq!(published["rebuilt"]["built"].as_array().unwrap().len(), 3);
    let package_path = "/v1/download/physics/11.3.0/physics-11.3.0-linux-x86_64.zip";
    let response = f.app.get(package_path, Some(&f.physics));
    assert_eq!(response.status(), 200);
    let etag = response.headers()["etag"].to_str().unwrap().to_string();
    let bytes = response.bytes().unwrap();
    assert_eq!(
        etag,
        format!("\"{}\"", depot::domain::Sha256::digest(&bytes))
    );
    if tool_available("minisign", "-v") {
        let dir = tempfile::tempdir().unwrap();
        let key = f.app.get("/v1/signing-key", None).text().unwrap();
        std::fs::write(dir.path().join("depot.pub"), key).unwrap();
        std::fs::write(dir.path().join("p.zip"), &bytes).unwrap();
        std::fs::write(
            dir.path().join("p.zip.minisig"),
            f.app
                .get(&format!("{package_path}.minisig"), Some(&f.physics))
                .text()
                .unwrap(),
        )
        .unwrap();
        let status = std::process::Command::new("minisign")
            .args(["-Vq", "-m"])
            .arg(dir.path().join("p.zip"))
            .arg("-p")
            .arg(dir.path().join("depot.pub"))
            .status()
            .unwrap();
        assert!(
            status.success(),
            "the served signature verifies with the served key"
        );
    }

    let view = f.json(
        "PUT",
        "/v1/releases/11.3.0/rollout",
        admin,
        Some(json!({"channel": "stable", "percent": 50, "paused": true})),
    );
    assert_eq!(view["channels"][0]["percent"], 50);
    assert_eq!(view["channels"][0]["paused"], true);
    let (status, _) = f.call(
        "PUT",
        "/v1/releases/11.3.0/rollout",
        admin,
        Some(json!({"channel": "stable", "percent": 101})),
    );
    assert_eq!(status, 422);
    assert_eq!(
        f.call(
            "PUT",
            "/v1/releases/11.3.0/rollout",
            admin,
            Some(json!({"channel": "nosuch"}))
        )
        .0,
        404
    );
    let yanked = f.json(
        "POST",
        "/v1/releases/11.3.0/yank",
        admin,
        Some(json!({"reason": "crashes on start"})),
    );
    assert_eq!(yanked["yanked"]["reason"], "crashes on start");
    // A yanked release is no longer `latest`.
    let response = f.app.get("/v1/download/default/latest/linux-x86_64", None);
    assert_eq!(
        response.headers()["location"],
        "/v1/download/default/11.2.1/default-11.2.1-linux-x86_64.zip"
    );
    let channel = f.json(
        "PUT",
        "/v1/channels/stable",
        admin,
        Some(json!({"min_version": "11.2.1"})),
    );
    assert_eq!(channel["min_version"], "11.2.1");
    assert_eq!(
        f.call(
            "PUT",
            "/v1/channels/stable",
            admin,
            Some(json!({"min_version": "eleven"}))
        )
        .0,
        422
    );

    let actions: BTreeSet<String> = f
        .json("GET", "/v1/audit", admin, None)
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    for action in [
        "release.add",
        "release.publish",
        "rollout.update",
        "release.yank",
        "channel.min_version",
    ] {
        assert!(
            actions.contains(action),
            "{action} missing from {actions:?}"
        );
    }
}

#[test]
fn uploads_over_the_limit_are_413() {
    let f = spawn_full_app_with(depot::server::ServerOptions {
        max_upload_bytes: 100_000,
        ..options()
    });
    let form = reqwest::blocking::multipart::Form::new()
        .text("version", "12.0.0")
        .part(
            "linux-x86_64",
            reqwest::blocking::multipart::Part::bytes(vec![0u8; 150_000]).file_name("client.tgz"),
        );
    let response = f
        .app
        .client()
        .post(f.app.url("/v1/releases"))
        .bearer_auth(&f.admin)
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_error_json(&response.text().unwrap(), Some("too_large"));
    assert_eq!(f.call("GET", "/v1/releases/12.0.0", None, None).0, 404);
    let leftovers: Vec<_> = std::fs::read_dir(f.depot.data_dir().join("tmp"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("upload-"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[test]
fn tokens_are_created_listed_and_revoked_at_once() {
    let f = spawn_full_app();
    let admin = Some(f.admin.as_str());
    let (status, body) = f.call(
        "POST",
        "/v1/tokens",
        admin,
        Some(json!({"role": "partner", "org": "chemistry", "name": "chem-laptop"})),
    );
    assert_eq!(status, 201, "{body}");
    let created: Value = serde_json::from_str(&body).unwrap();
    let secret = created["token"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(
        f.call("GET", "/v1/orgs/chemistry", Some(&secret), None).0,
        200
    );
    let list = f.json("GET", "/v1/tokens", admin, None);
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["id"] == id.as_str()));
    assert!(
        !list.to_string().contains(&secret),
        "secrets are never listed"
    );
    assert_eq!(
        f.call("DELETE", &format!("/v1/tokens/{id}"), admin, None).0,
        204
    );
    assert_eq!(
        f.call("GET", "/v1/orgs/chemistry", Some(&secret), None).0,
        401
    );
    assert_eq!(
        f.call("DELETE", &format!("/v1/tokens/{id}"), admin, None).0,
        409
    );
    assert_eq!(
        f.call("DELETE", "/v1/tokens/tok_nosuch", admin, None).0,
        404
    );
    assert_eq!(
        f.call(
            "POST",
            "/v1/tokens",
            admin,
            Some(json!({"role": "partner"}))
        )
        .0,
        422,
        "a partner token needs an org"
    );
    assert_eq!(
        f.call("POST", "/v1/tokens", admin, Some(json!({"role": "root"})))
            .0,
        422
    );
    assert_eq!(
        f.call(
            "POST",
            "/v1/tokens",
            Some(&f.physics),
            Some(json!({"role": "admin"}))
        )
        .0,
        403
    );
}

#[test]
fn audit_filters_and_partner_scope() {
    let f = spawn_full_app();
    let admin = Some(f.admin.as_str());
    let physics = Some(f.physics.as_str());
    assert_eq!(
        f.app
            .get(
                "/v1/download/physics/11.2.1/physics-11.2.1-linux-x86_64.zip",
                physics
            )
            .status(),
        200
    );
    let downloads = f.json("GET", "/v1/audit?action=package.download", admin, None);
    assert_eq!(downloads.as_array().unwrap().len(), 1);
    assert_eq!(downloads[0]["actor"], "physics-it");
    assert_eq!(downloads[0]["org"], "physics");
    let by_actor = f.json("GET", "/v1/audit?actor=physics-it", admin, None);
    assert!(by_actor
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["actor"] == "physics-it"));
    let own = f.json("GET", "/v1/audit", physics, None);
    assert!(!own.as_array().unwrap().is_empty());
    assert!(
        own.as_array()
            .unwrap()
            .iter()
            .all(|e| e["org"] == "physics"),
        "{own}"
    );
    assert_eq!(
        f.call("GET", "/v1/audit?org=chemistry", physics, None).0,
        404
    );
    let future = f.json("GET", "/v1/audit?since=2999-01-01T00:00:00Z", admin, None);
    assert!(future.as_array().unwrap().is_empty());
    let (status, body) = f.call("GET", "/v1/audit?since=yesterday", admin, None);
    assert_eq!(status, 422);
    assert_error_json(&body, Some("invalid"));
    assert_eq!(f.call("GET", "/v1/audit?bogus=1", admin, None).0, 400);
    assert_eq!(f.call("GET", "/v1/audit", None, None).0, 401);
}

/// Each endpoint × admin, own-org partner, other-org partner, anonymous. Device tokens arrive
/// with the updates issue.
#[test]
fn authorization_matrix() {
    let f = spawn_full_app();
    let org = || json!({"name": "Physics", "seats": 50});
    // (method, path, body, [admin, own partner (physics), other partner (chemistry), anonymous])
    let cases: Vec<(&str, &str, Option<Value>, [u16; 4])> = vec![
        ("GET", "/healthz", None, [200, 200, 200, 200]),
        ("GET", "/metrics", None, [200, 200, 200, 200]),
        ("GET", "/openapi.json", None, [200, 200, 200, 200]),
        ("GET", "/v1/signing-key", None, [200, 200, 200, 200]),
        ("GET", "/v1/releases", None, [200, 200, 200, 200]),
        ("GET", "/v1/releases/11.2.1", None, [200, 200, 200, 200]),
        ("GET", "/v1/orgs", None, [200, 200, 200, 401]),
        ("GET", "/v1/orgs/physics", None, [200, 200, 404, 401]),
        (
            "GET",
            "/v1/orgs/physics/packages",
            None,
            [200, 200, 404, 401],
        ),
        ("PUT", "/v1/orgs/physics", Some(org()), [200, 200, 404, 401]),
        (
            "POST",
            "/v1/orgs",
            Some(json!({"code": "geo", "name": "Geo"})),
            [201, 403, 403, 401],
        ),
        ("DELETE", "/v1/orgs/geo", None, [204, 403, 403, 401]),
        (
            "DELETE",
            "/v1/orgs/physics/files/none.sh",
            None,
            [404, 404, 404, 401],
        ),
        ("GET", "/v1/tokens", None, [200, 403, 403, 401]),
        (
            "DELETE",
            "/v1/tokens/tok_nosuch",
            None,
            [404, 403, 403, 401],
        ),
        (
            "POST",
            "/v1/releases/11.2.1/publish",
            Some(json!({"channel": "stable"})),
            [200, 403, 403, 401],
        ),
        (
            "PUT",
            "/v1/releases/11.2.1/rollout",
            Some(json!({"channel": "stable", "percent": 100})),
            [200, 403, 403, 401],
        ),
        (
            "PUT",
            "/v1/channels/stable",
            Some(json!({"min_version": null})),
            [200, 403, 403, 401],
        ),
        ("GET", "/v1/audit", None, [200, 200, 200, 401]),
        ("GET", "/v1/audit?org=physics", None, [200, 200, 404, 401]),
        (
            "GET",
            "/v1/download/physics/11.2.1/SHA256SUMS",
            None,
            [200, 200, 404, 401],
        ),
        (
            "GET",
            "/v1/download/default/11.2.1/SHA256SUMS",
            None,
            [200, 200, 200, 200],
        ),
        (
            "POST",
            "/v1/orgs/physics/rotate-key",
            None,
            [200, 200, 404, 401],
        ),
    ];
    let callers = [
        Some(f.admin.as_str()),
        Some(f.physics.as_str()),
        Some(f.chemistry.as_str()),
        None,
    ];
    for (method, path, body, expected) in cases {
        // The admin goes last so that its changes (creating, deleting) do not change what the
        // partners see.
        for i in [1, 2, 3, 0] {
            let (status, text) = f.call(method, path, callers[i], body.clone());
            assert_eq!(status, expected[i], "{method} {path} as caller {i}: {text}");
            if status >= 400 {
                assert_error_json(&text, None);
            }
        }
    }
    // Yank last: it changes what the other cases see.
    let yank = Some(json!({"reason": "test"}));
    for (i, expected) in [(1, 403), (2, 403), (3, 401), (0, 200)] {
        assert_eq!(
            f.call("POST", "/v1/releases/11.2.1/yank", callers[i], yank.clone())
                .0,
            expected
        );
    }
}

#[test]
fn openapi_describes_every_route_and_resolves_every_reference() {
    let f = spawn_full_app();
    let api: Value = f.app.get("/openapi.json", None).json().unwrap();
    let paths = api["paths"].as_object().unwrap();
    for expected in [
        "/v1/download/{org}/{version}/{file}",
        "/v1/orgs",
        "/v1/orgs/{org}",
        "/v1/orgs/{org}/files/{name}",
        "/v1/orgs/{org}/rotate-key",
        "/v1/orgs/{org}/packages",
        "/v1/releases",
        "/v1/releases/{version}",
        "/v1/releases/{version}/publish",
        "/v1/releases/{version}/rollout",
        "/v1/releases/{version}/yank",
        "/v1/channels/{channel}",
        "/v1/channels",
        "/v1/tokens",
        "/v1/tokens/{id}",
        "/v1/me",
        "/v1/me/tokens",
        "/v1/me/tokens/{id}",
        "/v1/audit",
        "/v1/signing-key",
        "/v1/agent-binaries",
        "/healthz",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(paths.contains_key(expected), "{expected} is not documented");
    }
    // Every documented operation is routed: none falls through to "no such endpoint".
    for (path, item) in paths {
        let concrete = path
            .replace("{org}", "physics")
            .replace("{version}", "11.2.1")
            .replace("{file}", "SHA256SUMS")
            .replace("{name}", "x.sh")
            .replace("{channel}", "stable")
            .replace("{id}", "tok_x");
        for method in item.as_object().unwrap().keys() {
            if method == "parameters" {
                continue;
            }
            let (status, text) = f.call(&method.to_uppercase(), &concrete, None, None);
            assert!(
                status != 405 && !text.contains("no such endpoint"),
                "{method} {path} is documented but not routed: {status} {text}"
            );
        }
    }
    // Every schema reference resolves.
    let text = api.to_string();
    let schemas = api["components"]["schemas"].as_object().unwrap();
    for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = &reference[..reference.find('"').unwrap()];
        assert!(schemas.contains_key(name), "unresolved $ref {name}");
    }
}

#[test]
fn backup_patterns_that_do_not_compile_are_refused() {
    let f = spawn_full_app();
    let physics = Some(f.physics.as_str());
    let before = f.json("GET", "/v1/orgs/physics", physics, None);
    for (pattern, said) in [
        ("(?i).*/(.*", "unclosed group at character 8"),
        ("[unclosed", "unclosed character class at character 1"),
    ] {
        let mut org = before.clone();
        org["backup"]["include"] = json!(["linux:/home/", pattern]);
        let (status, body) = f.call("PUT", "/v1/orgs/physics", physics, Some(org));
        assert_eq!(status, 422, "{body}");
        assert_error_json(&body, None);
        assert!(body.contains("backup.include[2]"), "{body}");
        assert!(body.contains(said), "{body}");
    }
    assert_eq!(f.json("GET", "/v1/orgs/physics", physics, None), before);
}

#[test]
fn channel_minimums_need_a_live_release_and_a_channel_in_use() {
    let f = spawn_full_app();
    let admin = Some(f.admin.as_str());
    let refused = |channel: &str, version: &str, said: &str| {
        let (status, body) = f.call(
            "PUT",
            &format!("/v1/channels/{channel}"),
            admin,
            Some(json!({ "min_version": version })),
        );
        assert_eq!(status, 422, "{body}");
        assert!(body.contains(said), "{body}");
    };
    refused("stabel", "11.2.1", "channel stabel is not in use");
    refused("stable", "11.9.0", "release 11.9.0 does not exist");
    // chemistry's channel is in use, but 11.2.1 is not published there.
    refused("beta", "11.2.1", "not published on channel beta");
    let set = f.json(
        "PUT",
        "/v1/channels/stable",
        admin,
        Some(json!({"min_version": "11.2.1"})),
    );
    assert_eq!(set["min_version"], "11.2.1");

    let channels = f.json("GET", "/v1/channels", admin, None);
    let stable = channels
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == "stable")
        .unwrap();
    assert_eq!(stable["min_version"], "11.2.1");
    assert_eq!(stable["releases"], json!(["11.2.1"]));
    assert!(stable["orgs"]
        .as_array()
        .unwrap()
        .contains(&json!("physics")));
    let beta = channels
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == "beta")
        .unwrap();
    assert_eq!(beta["orgs"], json!(["chemistry"]));
    assert!(beta["min_version"].is_null());
    assert_eq!(
        f.call("GET", "/v1/channels", Some(f.physics.as_str()), None)
            .0,
        403
    );

    f.json(
        "POST",
        "/v1/releases/11.2.1/yank",
        admin,
        Some(json!({"reason": "bad build"})),
    );
    refused("stable", "11.2.1", "release 11.2.1 is yanked (bad build)");
}

#[test]
fn latest_is_the_newest_release_fully_rolled_out_or_the_pinned_one() {
    use depot::domain::{Channel, OrgCode, Platform, Version};
    use depot::service::{Actor, NoProgress, PayloadSource};
    let f = spawn_full_app();
    let admin = Some(f.admin.as_str());
    let physics = Some(f.physics.as_str());
    let actor = Actor {
        name: "test".into(),
        address: "local".into(),
    };
    let payload = f.app.dir.path().join("payloads/client-linux.tgz");
    let next = Version::parse("11.3.0").unwrap();
    f.depot
        .add_release(
            &actor,
            &next,
            &[PayloadSource::from_path(Platform::LinuxX86_64, payload).unwrap()],
            "Next.",
        )
        .unwrap();
    f.depot
        .publish(&actor, &next, &Channel::stable(), 10, &NoProgress)
        .unwrap();
    let latest = || {
        let response = f
            .app
            .get("/v1/download/physics/latest/linux-x86_64", physics);
        assert_eq!(response.status(), 302);
        response.headers()["location"].to_str().unwrap().to_string()
    };
    let old = "/v1/download/physics/11.2.1/physics-11.2.1-linux-x86_64.zip";
    let new = "/v1/download/physics/11.3.0/physics-11.3.0-linux-x86_64.zip";
    assert_eq!(latest(), old, "at 10% it is not latest");
    let rollout = |body: Value| f.json("PUT", "/v1/releases/11.3.0/rollout", admin, Some(body));
    rollout(json!({"channel": "stable", "percent": 100, "paused": true}));
    assert_eq!(latest(), old, "paused at 100% it is not latest");
    rollout(json!({"channel": "stable", "percent": 100, "paused": false}));
    assert_eq!(latest(), new);

    // A pinned org gets its pin.
    let code = OrgCode::parse("physics").unwrap();
    let mut config = f.depot.org(&code).unwrap().config;
    config.pinned_version = Some(Version::parse("11.2.1").unwrap());
    f.depot.update_org(&actor, &code, config.clone()).unwrap();
    assert_eq!(latest(), old);
    config.pinned_version = None;
    f.depot.update_org(&actor, &code, config).unwrap();

    f.json(
        "POST",
        "/v1/releases/11.3.0/yank",
        admin,
        Some(json!({"reason": "eats files"})),
    );
    assert_eq!(latest(), old);
}

/// Issue 13 item 2: a partner's overlay named like a payload could stop a release for every org
/// (the upload answered 500, the publish failed everywhere). Now the upload is refused, and an
/// overlay that collides with a payload named later fails its own org's packages only.
#[test]
fn an_overlay_named_like_a_payload_fails_only_its_org() {
    let f = spawn_full_app();
    let admin = Some(f.admin.as_str());
    let put = |name: &str| {
        let response = f
            .app
            .client()
            .put(f.app.url(&format!("/v1/orgs/physics/files/{name}")))
            .bearer_auth(&f.physics)
            .body(b"not the client".to_vec())
            .send()
            .unwrap();
        (response.status().as_u16(), response.text().unwrap())
    };
    // The payload names of 11.2.1 are public on /v1/releases.
    for name in ["client.msi", "Client-Linux.TGZ", "client.msi%2Fx"] {
        let (status, body) = put(name);
        assert_eq!(status, 422, "{name}: {body}");
        assert!(body.contains("payload"), "{body}");
    }
    // Item 9: the files carrying depot's settings cannot be replaced.
    for name in [
        "deploy.properties",
        "Deploy.Properties",
        "depot-package.json",
    ] {
        let (status, body) = put(name);
        assert_eq!(status, 422, "{name}: {body}");
        assert!(body.contains("may not replace"), "{body}");
    }
    // A name no release uses yet is accepted, then the admin's next release uses it.
    let (status, body) = put("client-next.tgz");
    assert_eq!(status, 200, "{body}");
    let form = reqwest::blocking::multipart::Form::new()
        .text("version", "11.3.0")
        .part(
            "linux-x86_64",
            reqwest::blocking::multipart::Part::bytes(pattern(100_000, 9))
                .file_name("client-next.tgz"),
        );
    let response = f
        .app
        .client()
        .post(f.app.url("/v1/releases"))
        .bearer_auth(&f.admin)
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(response.status(), 201);
    let (status, body) = f.call(
        "POST",
        "/v1/releases/11.3.0/publish",
        admin,
        Some(json!({"channel": "stable"})),
    );
    assert_eq!(status, 200, "{body}");
    let published: Value = serde_json::from_str(&body).unwrap();
    let built: Vec<&str> = published["rebuilt"]["built"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_str().unwrap())
        .collect();
    assert_eq!(
        built,
        [
            "chemistry-11.3.0-linux-x86_64.zip",
            "default-11.3.0-linux-x86_64.zip"
        ],
        "{body}"
    );
    let failed = published["rebuilt"]["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{body}");
    assert_eq!(failed[0]["org"], "physics");
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .contains("client-next.tgz"),
        "{body}"
    );
    // The other orgs' packages are served; physics has none of 11.3.0 and keeps 11.2.1's.
    let response = f.app.get(
        "/v1/download/chemistry/11.3.0/chemistry-11.3.0-linux-x86_64.zip",
        Some(&f.chemistry),
    );
    assert_eq!(response.status(), 200);
    let response = f.app.get(
        "/v1/download/default/11.3.0/default-11.3.0-linux-x86_64.zip",
        None,
    );
    assert_eq!(response.status(), 200);
    let packages = f.json("GET", "/v1/orgs/physics/packages", admin, None);
    assert!(packages
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["version"] == "11.2.1"));
    let events = f.json(
        "GET",
        "/v1/audit?org=physics&action=packages.build_failed",
        admin,
        None,
    );
    assert_eq!(events.as_array().unwrap().len(), 1, "{events}");
    assert_eq!(events[0]["target"], "11.3.0");
}

/// Issue 13 item 10: bidi and invisible characters disguised names (`lab\u{202E}gpj.exe` shows
/// as `labexe.jpg`). They are refused at input.
#[test]
fn bidi_and_invisible_characters_are_refused() {
    let f = spawn_full_app();
    let admin = Some(f.admin.as_str());
    let key = f.json("GET", "/v1/orgs/physics", admin, None)["registration_key"]
        .as_str()
        .unwrap()
        .to_string();
    let enroll =
        |hostname: &str, user: &str, os_version: &str| {
            f.call(
            "POST",
            "/v1/devices/enroll",
            None,
            Some(json!({"registration_key": key, "hostname": hostname, "platform": "linux-x86_64",
                "os_version": os_version, "user": user})),
        )
        };
    for (hostname, user, os) in [
        ("lab\u{202E}gpj.exe", "alice", "Ubuntu 24.04"),
        ("lab-1", "ali\u{200B}ce", "Ubuntu 24.04"),
        ("lab-1", "alice", "\u{FEFF}Ubuntu 24.04"),
        ("lab-1", "alice\u{2066}", "Ubuntu"),
    ] {
        let (status, body) = enroll(hostname, user, os);
        assert_eq!(status, 422, "{body}");
        assert!(body.contains("invisible or text-direction"), "{body}");
    }
    let (status, body) = enroll("lab-1", "Zoë", "Ubuntu 24.04");
    assert_eq!(status, 201, "{body}");

    let mut org = f.json("GET", "/v1/orgs/physics", admin, None);
    org["name"] = json!("Physics \u{202E}scisyhP");
    let (status, body) = f.call("PUT", "/v1/orgs/physics", admin, Some(org));
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("invisible"), "{body}");
    let (status, body) = f.call(
        "POST",
        "/v1/tokens",
        admin,
        Some(json!({"role": "admin", "name": "desk\u{200F}top"})),
    );
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("invisible"), "{body}");
}
