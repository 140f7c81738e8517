//! The portal's pages over a real server and a demo depot: content, sign-in and sessions,
//! anti-forgery and origin checks, cross-org refusal, the configuration form rebuilding
//! packages, downloads with the session cookie, the admin page and escaping.

mod portal_support;

use portal_support::*;
use reqwest::blocking::{Client, Response};
use reqwest::header;
use reqwest::StatusCode;

fn client() -> Client {
    Client::builder().cookie_store(true).build().unwrap()
}

fn no_redirects() -> Client {
    Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn get(c: &Client, p: &Portal, path: &str) -> Response {
    c.get(format!("{}{path}", p.url)).send().unwrap()
}

/// Signs in through the form; returns the page the browser lands on.
fn sign_in(c: &Client, p: &Portal, token: &str) -> Response {
    let form = get(c, p, "/login").text().map(|t| decode(&t)).unwrap();
    c.post(format!("{}/login", p.url))
        .form(&[("token", token), ("csrf", &csrf(&form))])
        .send()
        .unwrap()
}

fn config_form(html: &str, exclude: &str) -> Vec<(String, String)> {
    let field = |name: &str| {
        between(html, &format!("name=\"{name}\" rows=\""), "</textarea>")
            .and_then(|s| s.split_once('>'))
            .map(|(_, v)| v.to_string())
            .unwrap()
    };
    let input = |name: &str| {
        between(html, &format!("name=\"{name}\""), ">")
            .and_then(|s| between(s, "value=\"", "\""))
            .unwrap_or("")
            .to_string()
    };
    // The page escapes; a browser sends the unescaped text back.
    let unescape = |s: String| {
        s.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&#x27;", "'")
            .replace("&#x2F;", "/")
            .replace("&amp;", "&")
    };
    vec![
        ("csrf".into(), csrf(html)),
        ("name".into(), unescape(input("name"))),
        ("contact_email".into(), unescape(input("contact_email"))),
        ("include".into(), unescape(field("include"))),
        ("exclude".into(), exclude.to_string()),
        ("settings".into(), unescape(field("settings"))),
    ]
}

#[test]
fn home_page_lists_default_installers_with_verify_commands() {
    let p = start();
    let r = get(&client(), &p, "/");
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(h[header::REFERRER_POLICY], "same-origin");
    let html = r.text().map(|t| decode(&t)).unwrap();
    // 11.3.0 is at 25%: the installers offered are those of 11.2.1, fully rolled out.
    assert!(!html.contains("default-11.3.0-"), "{html}");
    for platform in ["windows-x86_64", "macos-aarch64", "linux-x86_64"] {
        let file = format!("default-11.2.1-{platform}.zip");
        assert!(
            html.contains(&format!("href=\"/v1/download/default/11.2.1/{file}\"")),
            "{file}"
        );
        assert!(html.contains(&format!("/v1/download/default/11.2.1/{file}.minisig")));
    }
    let package = p
        .depot
        .meta()
        .get_package(
            &depot::domain::OrgCode::default_org(),
            &depot::domain::Version::parse("11.2.1").unwrap(),
            "default-11.2.1-linux-x86_64.zip",
        )
        .unwrap()
        .unwrap();
    assert!(html.contains(&package.sha256.to_hex()));
    assert!(html.contains("sha256sum -c SHA256SUMS"));
    assert!(html.contains(&format!(
        "minisign -Vm default-11.2.1-windows-x86_64.zip -P {}",
        p.depot.public_key().to_line()
    )));
    assert!(html.contains("href=\"/orgs/default/backup-policy\""));
    assert!(!html.contains("<script"), "pages carry no script");
    let css = get(&client(), &p, "/static/portal.css");
    assert_eq!(css.status(), 200);
    assert!(css.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/css"));

    // The default backup policy is public and generated from the default org's configuration.
    let policy = get(&client(), &p, "/orgs/default/backup-policy");
    assert_eq!(policy.status(), 200);
    let policy = policy.text().map(|t| decode(&t)).unwrap();
    assert!(policy.contains("node_modules"));
    assert!(policy.contains("Exclusions win over inclusions"));
    // Another org's is not public.
    let r = get(&no_redirects(), &p, "/orgs/physics/backup-policy");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[header::LOCATION], "/login");
}

#[test]
fn sign_in_sessions_and_refusals() {
    let p = start();
    // The cookie's attributes, seen on the sign-in answer itself.
    let raw = no_redirects();
    let form = get(&raw, &p, "/login").text().map(|t| decode(&t)).unwrap();
    let r = raw
        .post(format!("{}/login", p.url))
        .form(&[("token", p.partner_token.as_str()), ("csrf", &csrf(&form))])
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[header::LOCATION], "/orgs/physics");
    let session = r
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("depot_session="))
        .unwrap();
    assert!(session.contains("HttpOnly") && session.contains("SameSite=Strict"));
    assert!(!session.contains("Secure"), "plain HTTP: no Secure flag");

    // A bad token: 401 and the form again; no token field or no anti-forgery token: refused.
    let c = client();
    let r = sign_in(&c, &p, "depot_0000");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r
        .text()
        .map(|t| decode(&t))
        .unwrap()
        .contains("unknown or revoked"));
    let r = c
        .post(format!("{}/login", p.url))
        .form(&[("token", p.partner_token.as_str())])
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // The partner lands on its org's page.
    let c = client();
    let r = sign_in(&c, &p, &p.partner_token);
    assert_eq!(r.status(), 200);
    assert_eq!(r.url().path(), "/orgs/physics");
    let html = r.text().map(|t| decode(&t)).unwrap();
    let org = p
        .depot
        .org(&depot::domain::OrgCode::parse("physics").unwrap())
        .unwrap();
    assert!(html.contains("Physical Sciences Division"));
    assert!(html.contains("<details>"));
    assert!(html.contains(&org.registration_key.to_string()));
    for version in ["11.3.0", "11.2.1"] {
        assert!(html.contains(&format!(
            "href=\"/v1/download/physics/{version}/physics-{version}-linux-x86_64.zip\""
        )));
        assert!(html.contains(&format!("/v1/download/physics/{version}/SHA256SUMS")));
    }
    assert!(html.contains("name=\"include\"") && html.contains("name=\"exclude\""));
    assert!(html.contains("id=\"devices\"") && html.contains("Seats:"));
    assert!(
        html.contains("org.update"),
        "the audit log shows the org's events"
    );

    // Another org's page is unknown to a partner, the admin page forbidden.
    assert_eq!(get(&c, &p, "/orgs/medicine").status(), 404);
    assert_eq!(get(&c, &p, "/orgs/no-such-org").status(), 404);
    assert_eq!(get(&c, &p, "/admin").status(), 403);
    assert_eq!(get(&c, &p, "/orgs/medicine/backup-policy").status(), 404);
    assert_eq!(get(&c, &p, "/orgs/physics/backup-policy").status(), 200);
    // Without a session, the org page sends you to sign in.
    let r = get(&no_redirects(), &p, "/orgs/physics");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    // Downloads work with the session cookie; without it, another org's package needs a token.
    let link = "/v1/download/physics/11.3.0/physics-11.3.0-linux-x86_64.zip";
    let r = get(&c, &p, link);
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()[header::CONTENT_DISPOSITION],
        "attachment; filename=\"physics-11.3.0-linux-x86_64.zip\""
    );
    let bytes = r.bytes().unwrap();
    assert_eq!(
        depot::domain::Sha256::digest(&bytes).to_hex(),
        shown_sha256(&html, "physics-11.3.0-linux-x86_64.zip").unwrap()
    );
    let head = c.head(format!("{}{link}", p.url)).send().unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(get(&client(), &p, link).status(), 401);
    assert_eq!(
        get(
            &c,
            &p,
            "/v1/download/medicine/11.3.0/medicine-11.3.0-linux-x86_64.zip"
        )
        .status(),
        404
    );
    // State-changing API calls take bearer tokens only.
    let r = c
        .post(format!("{}/v1/orgs/physics/rotate-key", p.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);

    // Logout needs the anti-forgery token, then ends the session.
    let r = c.post(format!("{}/logout", p.url)).send().unwrap();
    assert_eq!(r.status(), 403);
    let r = c
        .post(format!("{}/logout", p.url))
        .form(&[("csrf", csrf(&html))])
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.url().path(), "/");
    assert_eq!(get(&c, &p, "/orgs/physics").url().path(), "/login");
    assert_eq!(get(&c, &p, link).status(), 401);

    // Revoking the token ends its sessions.
    let c = client();
    assert_eq!(sign_in(&c, &p, &p.partner_token).status(), 200);
    let id = p
        .depot
        .meta()
        .list_tokens()
        .unwrap()
        .into_iter()
        .find(|t| t.name == "demo-physics-partner")
        .unwrap()
        .id;
    let actor = depot::service::Actor::cli();
    p.depot.revoke_token(&actor, &id).unwrap();
    assert_eq!(get(&c, &p, "/orgs/physics").url().path(), "/login");
    assert_eq!(sign_in(&client(), &p, &p.partner_token).status(), 401);
}

#[test]
fn configuration_form_rebuilds_packages_and_refuses_forgeries() {
    let p = start();
    let c = client();
    let html = sign_in(&c, &p, &p.partner_token)
        .text()
        .map(|t| decode(&t))
        .unwrap();
    let file = "physics-11.3.0-linux-x86_64.zip";
    let before = shown_sha256(&html, file).unwrap();
    let exclude = format!(
        "{}\n(?i).*\\.bak$\n",
        between(
            &html,
            "name=\"exclude\" rows=\"10\" spellcheck=\"false\">",
            "</textarea>"
        )
        .unwrap()
        .replace("&#x2F;", "/")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
    );
    let form = config_form(&html, &exclude);
    let url = format!("{}/orgs/physics/config", p.url);

    // Forgeries: no token, a wrong token, another origin, another site.
    let without: Vec<_> = form.iter().filter(|(k, _)| k != "csrf").cloned().collect();
    assert_eq!(c.post(&url).form(&without).send().unwrap().status(), 403);
    let mut wrong = form.clone();
    wrong[0].1 = "0".repeat(64);
    assert_eq!(c.post(&url).form(&wrong).send().unwrap().status(), 403);
    let r = c
        .post(&url)
        .header(header::ORIGIN, "http://evil.example")
        .form(&form)
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = c
        .post(&url)
        .header("sec-fetch-site", "cross-site")
        .form(&form)
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    // Nothing changed.
    let again = get(&c, &p, "/orgs/physics")
        .text()
        .map(|t| decode(&t))
        .unwrap();
    assert_eq!(shown_sha256(&again, file).unwrap(), before);

    // A good save rebuilds and says what it rebuilt.
    let r = c
        .post(&url)
        .header(header::ORIGIN, p.url.as_str())
        .form(&form)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.url().path(), "/orgs/physics");
    let after_html = r.text().map(|t| decode(&t)).unwrap();
    assert!(after_html.contains("Saved. Rebuilt"), "{after_html}");
    assert!(after_html.contains(file));
    let after = shown_sha256(&after_html, file).unwrap();
    assert_ne!(after, before, "the package changed");
    let stored = p
        .depot
        .meta()
        .get_package(
            &depot::domain::OrgCode::parse("physics").unwrap(),
            &depot::domain::Version::parse("11.3.0").unwrap(),
            file,
        )
        .unwrap()
        .unwrap();
    assert_eq!(stored.sha256.to_hex(), after);
    let policy = get(&c, &p, "/orgs/physics/backup-policy")
        .text()
        .map(|t| decode(&t))
        .unwrap();
    assert!(policy.contains("(?i).*\\.bak$"));
    // The demo sets physics to back up hourly; retention and encryption keep the defaults.
    assert!(
        policy.contains("<th>Frequency</th><td>every 60 minutes</td>"),
        "{policy}"
    );
    assert!(
        policy.contains("<th>Retention</th><td>deleted files and old versions kept 90 days</td>"),
        "{policy}"
    );
    assert!(
        policy.contains("<th>Encryption</th><td>on: backups are encrypted</td>"),
        "{policy}"
    );

    // Bad input is shown on the form, kept, and changes nothing.
    let mut bad = config_form(&after_html, &exclude);
    bad[5].1 = "no equals sign here".into();
    let r = c.post(&url).form(&bad).send().unwrap();
    assert_eq!(r.status(), 422);
    let text = r.text().map(|t| decode(&t)).unwrap();
    assert!(text.contains("expected KEY=value"));
    assert!(text.contains("no equals sign here"));

    // Everything is escaped.
    let mut named = config_form(&after_html, &exclude);
    named[1].1 = "<script>alert(1)</script> & Co".into();
    let r = c.post(&url).form(&named).send().unwrap();
    let text = r.text().unwrap();
    assert!(!text.contains("<script>alert(1)"));
    assert!(text.contains("&lt;script&gt;alert(1)&lt;&#x2F;script&gt; &amp; Co"));
}

#[test]
fn admin_page_shows_rollouts_adoption_orgs_and_filtered_audit() {
    let p = start();
    let c = client();
    let r = sign_in(&c, &p, &p.admin_token);
    assert_eq!(r.url().path(), "/admin");
    assert_eq!(r.status(), 200);
    let html = r.text().map(|t| decode(&t)).unwrap();
    let row = between(
        &html,
        "data-version=\"11.3.0\" data-channel=\"stable\">",
        "</tr>",
    )
    .unwrap();
    assert!(row.contains("25%") && row.contains("rolling out"), "{row}");
    assert!(html.contains("id=\"adoption\""));
    for org in ["physics", "medicine", "default"] {
        assert!(html.contains(&format!("href=\"/orgs/{org}\"")), "{org}");
    }
    assert!(html.contains("release.publish"));
    assert!(html.contains("enctype=\"multipart/form-data\""));

    // Pause through the form; the page shows it.
    let r = c
        .post(format!("{}/admin/rollouts/11.3.0/stable", p.url))
        .form(&[
            ("csrf", csrf(&html).as_str()),
            ("percent", "25"),
            ("action", "pause"),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().map(|t| decode(&t)).unwrap();
    assert!(html.contains("Rollout of 11.3.0 on stable: 25%, paused."));
    let row = between(
        &html,
        "data-version=\"11.3.0\" data-channel=\"stable\">",
        "</tr>",
    )
    .unwrap();
    assert!(row.contains("paused by demo-admin"), "{row}");

    // Audit filters.
    let filtered = get(
        &c,
        &p,
        "/admin?org=&actor=&action=rollout.update&since=2020-01-01",
    )
    .text()
    .unwrap();
    let audit = between(&filtered, "<section id=\"audit\">", "</section>").unwrap();
    assert!(audit.contains("rollout.update"));
    assert!(!audit.contains("release.publish"));
    assert_eq!(get(&c, &p, "/admin?since=yesterday").status(), 422);

    // Upload a release through the multipart form, then publish it.
    let payload = vec![7u8; 4096];
    let form = reqwest::blocking::multipart::Form::new()
        .text("csrf", csrf(&html))
        .text("version", "11.4.0")
        .text("notes", "from the portal")
        .part(
            "linux-x86_64",
            reqwest::blocking::multipart::Part::bytes(payload.clone()).file_name("client.tgz"),
        )
        .part(
            "windows-x86_64",
            reqwest::blocking::multipart::Part::bytes(Vec::new()).file_name(""),
        );
    let r = c
        .post(format!("{}/admin/releases", p.url))
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().map(|t| decode(&t)).unwrap();
    assert!(
        html.contains("Release 11.4.0 added (linux-x86_64)"),
        "{html}"
    );
    let r = c
        .post(format!("{}/admin/releases/11.4.0/publish", p.url))
        .form(&[
            ("csrf", csrf(&html).as_str()),
            ("channel", "beta"),
            ("percent", "10"),
        ])
        .send()
        .unwrap();
    let html = r.text().map(|t| decode(&t)).unwrap();
    assert!(html.contains("Published 11.4.0 on beta at 10%"), "{html}");
    assert!(html.contains("data-version=\"11.4.0\" data-channel=\"beta\""));
    // The upload without the anti-forgery token first is refused.
    let form = reqwest::blocking::multipart::Form::new().text("version", "11.5.0");
    let r = c
        .post(format!("{}/admin/releases", p.url))
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[test]
fn failed_sign_ins_are_rate_limited_per_address() {
    let p = start();
    let c = client();
    let mut statuses = Vec::new();
    for _ in 0..25 {
        statuses.push(sign_in(&c, &p, "depot_wrong").status());
    }
    assert_eq!(statuses[0], 401);
    assert_eq!(*statuses.last().unwrap(), 429);
    // A good token still signs in: the block is for unknown tokens only (issue 13, item 5).
    assert_eq!(sign_in(&c, &p, &p.admin_token).status(), 200);
    assert_eq!(sign_in(&client(), &p, "depot_wrong").status(), 429);
}

/// A partner token of `org`, made as `depot token create` would.
fn partner_of(p: &Portal, org: &str) -> String {
    p.depot
        .create_token(
            &depot::service::Actor::cli(),
            depot::store::Role::Partner,
            Some(depot::domain::OrgCode::parse(org).unwrap()),
            Some(format!("{org}-partner")),
        )
        .unwrap()
        .secret
}

fn page(c: &Client, p: &Portal, path: &str) -> String {
    let r = get(c, p, path);
    assert_eq!(r.status(), 200, "{path}");
    r.text().map(|t| decode(&t)).unwrap()
}

fn org(p: &Portal, code: &str) -> depot::org::Org {
    p.depot
        .org(&depot::domain::OrgCode::parse(code).unwrap())
        .unwrap()
}

fn stored_sha256(p: &Portal, code: &str, file: &str) -> String {
    p.depot
        .meta()
        .get_package(
            &depot::domain::OrgCode::parse(code).unwrap(),
            &depot::domain::Version::parse("11.3.0").unwrap(),
            file,
        )
        .unwrap()
        .unwrap()
        .sha256
        .to_hex()
}

fn overlay_names(p: &Portal, code: &str) -> Vec<String> {
    p.depot
        .meta()
        .list_overlays(&depot::domain::OrgCode::parse(code).unwrap())
        .unwrap()
        .iter()
        .map(|o| o.name.to_string())
        .collect()
}

#[test]
fn registration_key_rotation_through_the_form() {
    let p = start();
    let c = client();
    let html = sign_in(&c, &p, &p.partner_token)
        .text()
        .map(|t| decode(&t))
        .unwrap();
    assert!(html.contains("action=\"/orgs/physics/rotate-key\""));
    let old = org(&p, "physics").registration_key.to_string();
    let file = "physics-11.3.0-linux-x86_64.zip";
    let sha_before = stored_sha256(&p, "physics", file);
    let url = format!("{}/orgs/physics/rotate-key", p.url);

    // Forgeries change nothing: no token, a wrong one, another origin.
    assert_eq!(c.post(&url).send().unwrap().status(), 403);
    let wrong = "0".repeat(64);
    let r = c.post(&url).form(&[("csrf", &wrong)]).send().unwrap();
    assert_eq!(r.status(), 403);
    let r = c
        .post(&url)
        .header(header::ORIGIN, "http://evil.example")
        .form(&[("csrf", csrf(&html))])
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    // Another org's partner, with a good token of its own session, is told there is no such org.
    let other = client();
    let other_html = sign_in(&other, &p, &partner_of(&p, "medicine"))
        .text()
        .map(|t| decode(&t))
        .unwrap();
    let r = other
        .post(&url)
        .form(&[("csrf", csrf(&other_html))])
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(org(&p, "physics").registration_key.to_string(), old);
    assert_eq!(stored_sha256(&p, "physics", file), sha_before);

    // The partner replaces the key: the page shows the new one and what was rebuilt.
    let r = c.post(&url).form(&[("csrf", csrf(&html))]).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.url().path(), "/orgs/physics");
    let html = r.text().map(|t| decode(&t)).unwrap();
    let new = org(&p, "physics").registration_key.to_string();
    assert_ne!(new, old);
    let flash = between(&html, "<p class=\"flash\" role=\"status\">", "</p>").unwrap();
    assert!(
        flash.contains(&format!("New registration key: {new}.")),
        "{flash}"
    );
    assert!(flash.contains("Rebuilt") && flash.contains(file), "{flash}");
    assert!(html.contains(&format!("<code class=\"key\">{new}</code>")));
    assert!(!html.contains(&old));
    assert_ne!(stored_sha256(&p, "physics", file), sha_before);
    assert!(html.contains("org.rotate_key"), "the audit log shows it");
    // The old key enrolls no machine any more; the new one does.
    let enroll = |key: &str| {
        p.depot.enroll(
            &depot::service::fleet::EnrollRequest {
                registration_key: key.to_string(),
                hostname: "lab-1".into(),
                platform: "linux-x86_64".into(),
                os_version: String::new(),
                user: String::new(),
            },
            "127.0.0.1",
        )
    };
    assert!(enroll(&old).is_err());
    assert_eq!(enroll(&new).unwrap().org, "physics");

    // An admin may replace any org's key.
    let admin = client();
    let admin_html = sign_in(&admin, &p, &p.admin_token)
        .text()
        .map(|t| decode(&t))
        .unwrap();
    let before = org(&p, "medicine").registration_key.to_string();
    let r = admin
        .post(format!("{}/orgs/medicine/rotate-key", p.url))
        .form(&[("csrf", csrf(&admin_html))])
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_ne!(org(&p, "medicine").registration_key.to_string(), before);
}

fn overlay_form(
    csrf: &str,
    name: Option<&str>,
    file_name: &str,
    bytes: Vec<u8>,
) -> reqwest::blocking::multipart::Form {
    let mut form = reqwest::blocking::multipart::Form::new().text("csrf", csrf.to_string());
    form = form.part(
        "file",
        reqwest::blocking::multipart::Part::bytes(bytes).file_name(file_name.to_string()),
    );
    if let Some(name) = name {
        form = form.text("name", name.to_string());
    }
    form
}

#[test]
fn overlay_files_upload_and_removal_through_the_form() {
    let p = start();
    let c = client();
    let html = sign_in(&c, &p, &p.partner_token)
        .text()
        .map(|t| decode(&t))
        .unwrap();
    let files = between(&html, "<section id=\"files\">", "</section>").unwrap();
    assert!(files.contains("No overlay files."));
    assert!(files.contains("enctype=\"multipart/form-data\""));
    assert!(files.contains("at most 1.0 MiB"));
    let token = csrf(&html);
    let file = "physics-11.3.0-linux-x86_64.zip";
    let sha_before = stored_sha256(&p, "physics", file);
    let upload = format!("{}/orgs/physics/files", p.url);
    let script = b"#!/bin/sh\necho lab-user\n".to_vec();

    // Refused, and nothing changed: forged or missing tokens, another origin, another org's
    // partner, bad names, a file over the API's limit, a name depot writes itself, no file.
    let send = |c: &Client, form| c.post(&upload).multipart(form).send().unwrap();
    let r = send(
        &c,
        overlay_form(&"0".repeat(64), None, "a.sh", script.clone()),
    );
    assert_eq!(r.status(), 403);
    let no_token = reqwest::blocking::multipart::Form::new().part(
        "file",
        reqwest::blocking::multipart::Part::bytes(script.clone()).file_name("a.sh"),
    );
    assert_eq!(send(&c, no_token).status(), 403);
    let r = c
        .post(&upload)
        .header("sec-fetch-site", "cross-site")
        .multipart(overlay_form(&token, None, "a.sh", script.clone()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let other = client();
    let other_html = sign_in(&other, &p, &partner_of(&p, "medicine"))
        .text()
        .map(|t| decode(&t))
        .unwrap();
    let r = send(
        &other,
        overlay_form(&csrf(&other_html), None, "a.sh", script.clone()),
    );
    assert_eq!(r.status(), 404);
    for (name, file_name) in [
        (Some("../evil.sh"), "a.sh"),
        (Some("custom//x.sh"), "a.sh"),
        (None, "my script.sh"),
    ] {
        let r = send(&c, overlay_form(&token, name, file_name, script.clone()));
        assert_eq!(r.status(), 422, "{name:?} {file_name}");
        let text = r.text().map(|t| decode(&t)).unwrap();
        let error = between(&text, "<p class=\"error\" role=\"alert\">", "</p>").unwrap();
        assert!(
            error.starts_with("invalid file name") && error.contains("relative path")
                || error.contains("may contain only"),
            "{error}"
        );
        assert!(
            text.contains("<section id=\"files\">"),
            "shown on the org page"
        );
    }
    let big = vec![b'x'; depot::org::MAX_OVERLAY_FILE_SIZE + 1];
    let r = send(&c, overlay_form(&token, None, "big.bin", big));
    assert_eq!(r.status(), 413);
    let text = r.text().map(|t| decode(&t)).unwrap();
    assert!(text.contains("larger than 1.0 MiB"), "{text}");
    let r = send(
        &c,
        overlay_form(&token, Some("depot-package.json"), "a.json", b"{}".to_vec()),
    );
    assert_eq!(r.status(), 422);
    assert!(r
        .text()
        .map(|t| decode(&t))
        .unwrap()
        .contains("may not replace depot-package.json"));
    // Issue 13 item 9: nor deploy.properties; the page says what may be replaced.
    let r = send(
        &c,
        overlay_form(&token, Some("deploy.properties"), "a.txt", b"x=1".to_vec()),
    );
    assert_eq!(r.status(), 422);
    let text = r.text().map(|t| decode(&t)).unwrap();
    assert!(text.contains("may not replace deploy.properties"), "{text}");
    let listed = between(&text, "<div id=\"replaceable\">", "</div>").unwrap();
    assert!(listed.contains("<code>install.sh</code>"), "{listed}");
    assert!(listed.contains("<code>detect-user.ps1</code>"), "{listed}");
    assert!(
        listed.contains("Never replaced: <code>deploy.properties</code>"),
        "{listed}"
    );
    let r = send(&c, overlay_form(&token, None, "", Vec::new()));
    assert_eq!(r.status(), 422);
    assert!(r.text().unwrap().contains("choose a file"));
    assert!(overlay_names(&p, "physics").is_empty());
    assert_eq!(stored_sha256(&p, "physics", file), sha_before);

    // A good upload, named with a folder: stored, listed, in the rebuilt package.
    let r = send(
        &c,
        overlay_form(
            &token,
            Some("custom/detect-user.sh"),
            "detect.sh",
            script.clone(),
        ),
    );
    assert_eq!(r.status(), 200);
    assert_eq!(r.url().path(), "/orgs/physics");
    let html = r.text().map(|t| decode(&t)).unwrap();
    let flash = between(&html, "<p class=\"flash\" role=\"status\">", "</p>").unwrap();
    assert!(
        flash.starts_with("Stored overlay file custom/detect-user.sh (24 bytes). Rebuilt"),
        "{flash}"
    );
    assert!(flash.contains(file));
    let row = between(&html, "data-name=\"custom/detect-user.sh\">", "</tr>").unwrap();
    assert!(row.contains(&depot::domain::Sha256::digest(&script).to_hex()));
    assert_eq!(overlay_names(&p, "physics"), ["custom/detect-user.sh"]);
    let sha_after = stored_sha256(&p, "physics", file);
    assert_ne!(sha_after, sha_before);
    let zip = get(&c, &p, &format!("/v1/download/physics/11.3.0/{file}"))
        .bytes()
        .unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip.to_vec())).unwrap();
    let mut entry = archive.by_name("custom/detect-user.sh").unwrap();
    let mut inside = Vec::new();
    std::io::Read::read_to_end(&mut entry, &mut inside).unwrap();
    assert_eq!(inside, script);
    // Without a name, the file's own name.
    let r = send(
        &c,
        overlay_form(&token, Some(""), "ca.pem", b"cert".to_vec()),
    );
    assert_eq!(r.status(), 200);
    assert_eq!(
        overlay_names(&p, "physics"),
        ["ca.pem", "custom/detect-user.sh"]
    );

    // Removal: the same refusals, then the file goes and the packages are rebuilt.
    let remove = format!("{}/orgs/physics/files/remove", p.url);
    let r = c.post(&remove).form(&[("name", "ca.pem")]).send().unwrap();
    assert_eq!(r.status(), 403);
    let r = c
        .post(&remove)
        .form(&[("csrf", csrf(&other_html).as_str()), ("name", "ca.pem")])
        .send()
        .unwrap();
    assert_eq!(r.status(), 403, "another session's token");
    let r = other
        .post(&remove)
        .form(&[("csrf", csrf(&other_html).as_str()), ("name", "ca.pem")])
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = c
        .post(&remove)
        .form(&[("csrf", token.as_str()), ("name", "../ca.pem")])
        .send()
        .unwrap();
    assert_eq!(r.status(), 422);
    assert!(r.text().unwrap().contains("invalid file name"));
    let r = c
        .post(&remove)
        .form(&[("csrf", token.as_str()), ("name", "missing.txt")])
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(overlay_names(&p, "physics").len(), 2);
    let r = c
        .post(&remove)
        .form(&[("csrf", token.as_str()), ("name", "custom/detect-user.sh")])
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().map(|t| decode(&t)).unwrap();
    assert!(
        html.contains("Removed overlay file custom/detect-user.sh. Rebuilt"),
        "{html}"
    );
    assert!(!html.contains("data-name=\"custom/detect-user.sh\""));
    assert_eq!(overlay_names(&p, "physics"), ["ca.pem"]);
    assert!(html.contains("org.overlay.delete") && html.contains("org.overlay.put"));
}

#[test]
fn devices_deactivate_and_adoption_chart() {
    let p = start();
    let key = org(&p, "physics").registration_key.to_string();
    let mut ids = Vec::new();
    for host in ["lab-1", "lab-2"] {
        let enrolled = p
            .depot
            .enroll(
                &depot::service::fleet::EnrollRequest {
                    registration_key: key.clone(),
                    hostname: host.into(),
                    platform: "linux-x86_64".into(),
                    os_version: "Debian 12".into(),
                    user: "ada".into(),
                },
                "192.0.2.7",
            )
            .unwrap();
        ids.push(enrolled.device_id);
    }
    p.depot
        .update_check(
            &ids[0],
            depot::domain::Platform::LinuxX86_64,
            Some(depot::domain::Version::parse("11.2.1").unwrap()),
            "192.0.2.7".parse().ok(),
        )
        .unwrap();
    p.depot.flush_checkins().unwrap();

    // The admin page charts adoption as inline SVG, drawn on the server.
    let admin = client();
    let html = sign_in(&admin, &p, &p.admin_token)
        .text()
        .map(|t| decode(&t))
        .unwrap();
    let chart = between(&html, "<svg class=\"chart\"", "</svg>").unwrap();
    assert!(chart.contains("2 in all"), "{chart}");
    assert!(
        chart.contains("<title>11.2.1: 1</title>") && chart.contains("<title>unknown: 1</title>")
    );

    // The partner sees its devices and deactivates one through the form.
    let c = client();
    let html = sign_in(&c, &p, &p.partner_token)
        .text()
        .map(|t| decode(&t))
        .unwrap();
    let devices = between(&html, "<section id=\"devices\">", "</section>").unwrap();
    assert!(
        devices.contains("lab-1") && devices.contains("lab-2") && devices.contains("192.0.2.7")
    );
    assert!(devices.contains("11.2.1"));
    // Messages name devices by id: so does the table.
    for id in &ids {
        assert!(
            devices.contains(&format!("<td class=\"device-id\"><code>{id}</code></td>")),
            "{devices}"
        );
    }
    let url = format!("{}/orgs/physics/devices/{}/deactivate", p.url, ids[1]);
    assert_eq!(c.post(&url).send().unwrap().status(), 403);
    let other = client();
    let other_html = sign_in(&other, &p, &partner_of(&p, "medicine"))
        .text()
        .map(|t| decode(&t))
        .unwrap();
    let r = other
        .post(&url)
        .form(&[("csrf", csrf(&other_html))])
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = c.post(&url).form(&[("csrf", csrf(&html))]).send().unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().map(|t| decode(&t)).unwrap();
    assert!(html.contains(&format!("Device {} deactivated.", ids[1])));
    assert!(html.contains("deactivated</td>"));
    assert!(
        html.contains("<strong>1</strong> enrolled"),
        "seat use counts active devices"
    );
    // Twice: the device is no longer active.
    let r = c.post(&url).form(&[("csrf", csrf(&html))]).send().unwrap();
    assert_eq!(r.status(), 404);
}

#[test]
fn logout_page_and_yank_form() {
    let p = start();
    let r = get(&no_redirects(), &p, "/logout");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[header::LOCATION], "/");
    let c = client();
    sign_in(&c, &p, &p.admin_token);
    let html = page(&c, &p, "/logout");
    assert!(html.contains("action=\"/logout\"") && html.contains("demo-admin"));

    // Yank through the admin page's form: the release shows the reason, offers no publish.
    let html = page(&c, &p, "/admin");
    let r = c
        .post(format!("{}/admin/releases/11.2.1/yank", p.url))
        .form(&[("csrf", csrf(&html).as_str()), ("reason", "breaks VPN")])
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().map(|t| decode(&t)).unwrap();
    assert!(html.contains("Yanked 11.2.1."));
    assert!(html.contains("breaks VPN"));
    assert!(!html.contains("action=\"/admin/releases/11.2.1/publish\""));
    assert!(p
        .depot
        .meta()
        .get_release(&depot::domain::Version::parse("11.2.1").unwrap())
        .unwrap()
        .unwrap()
        .yanked
        .is_some());
}

#[test]
fn a_pattern_that_does_not_compile_is_shown_and_kept_on_the_form() {
    let p = start();
    let c = client();
    let html = sign_in(&c, &p, &p.partner_token)
        .text()
        .map(|t| decode(&t))
        .unwrap();
    let form = config_form(&html, "(?i).*\\.bak$\n[unclosed\n");
    let r = c
        .post(format!("{}/orgs/physics/config", p.url))
        .form(&form)
        .send()
        .unwrap();
    assert_eq!(r.status(), 422);
    let text = r.text().map(|t| decode(&t)).unwrap();
    assert!(
        text.contains("\"[unclosed\" is not a valid regular expression: unclosed character class at character 1"),
        "{text}"
    );
    let kept = between(
        &text,
        "name=\"exclude\" rows=\"10\" spellcheck=\"false\">",
        "</textarea>",
    )
    .unwrap();
    assert!(kept.contains("(?i).*\\.bak$\n[unclosed"), "{kept}");
    let stored = p
        .depot
        .org(&depot::domain::OrgCode::parse("physics").unwrap())
        .unwrap();
    assert!(!stored
        .config
        .backup
        .exclude
        .iter()
        .any(|e| e == "[unclosed"));
}

#[test]
fn rollout_labels_say_complete_yanked_and_recommended() {
    use depot::domain::Version;
    use depot::service::Actor;
    let p = start();
    let admin = client();
    let page = sign_in(&admin, &p, &p.admin_token)
        .text()
        .map(|t| decode(&t))
        .unwrap();
    let row = |page: &str, version: &str| {
        between(
            page,
            &format!("<tr class=\"rollout\" data-version=\"{version}\""),
            "</tr>",
        )
        .unwrap()
        .to_string()
    };
    // The demo has 11.2.1 at 100% and 11.3.0 at 25% on stable.
    let done = row(&page, "11.2.1");
    assert!(done.contains(">complete<"), "{done}");
    assert!(!done.contains("rolling out"), "{done}");
    assert!(row(&page, "11.3.0").contains(">rolling out<"));
    assert!(
        page.contains("<tr class=\"channel\" data-channel=\"stable\">"),
        "{page}"
    );

    let partner = client();
    let org = sign_in(&partner, &p, &p.partner_token)
        .text()
        .map(|t| decode(&t))
        .unwrap();
    let heading = |page: &str, version: &str| {
        between(page, &format!("<h3>{version}"), "</h3>")
            .unwrap()
            .to_string()
    };
    assert!(
        heading(&org, "11.3.0").contains("rolling out (25%)"),
        "{org}"
    );
    assert!(!heading(&org, "11.3.0").contains("recommended"));
    assert!(heading(&org, "11.2.1").contains("recommended"));
    assert!(heading(&org, "11.2.1").contains("complete"));

    let actor = Actor {
        name: "test".into(),
        address: "local".into(),
    };
    p.depot
        .yank(
            &actor,
            &Version::parse("11.3.0").unwrap(),
            "corrupts the cache",
        )
        .unwrap();
    let page = get(&admin, &p, "/admin")
        .text()
        .map(|t| decode(&t))
        .unwrap();
    let yanked = row(&page, "11.3.0");
    assert!(yanked.contains(">yanked<"), "{yanked}");
    assert!(!yanked.contains("rolling out"), "{yanked}");
    assert!(!yanked.contains("value=\"set\""), "{yanked}");
    assert!(!yanked.contains("value=\"pause\""), "{yanked}");
    let org = get(&partner, &p, "/orgs/physics")
        .text()
        .map(|t| decode(&t))
        .unwrap();
    assert!(heading(&org, "11.3.0").contains("yanked"));
    assert!(org.contains("Yanked: corrupts the cache."), "{org}");
}
