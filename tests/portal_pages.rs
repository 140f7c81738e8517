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
    for platform in ["windows-x86_64", "macos-aarch64", "linux-x86_64"] {
        let file = format!("default-11.3.0-{platform}.zip");
        assert!(
            html.contains(&format!("href=\"/v1/download/default/11.3.0/{file}\"")),
            "{file}"
        );
        assert!(html.contains(&format!("/v1/download/default/11.3.0/{file}.minisig")));
    }
    let package = p
        .depot
        .meta()
        .get_package(
            &depot::domain::OrgCode::default_org(),
            &depot::domain::Version::parse("11.3.0").unwrap(),
            "default-11.3.0-linux-x86_64.zip",
        )
        .unwrap()
        .unwrap();
    assert!(html.contains(&package.sha256.to_hex()));
    assert!(html.contains("sha256sum -c SHA256SUMS"));
    assert!(html.contains(&format!(
        "minisign -Vm default-11.3.0-windows-x86_64.zip -P {}",
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
    // Even a good token waits out the window.
    assert_eq!(sign_in(&c, &p, &p.admin_token).status(), 429);
}
