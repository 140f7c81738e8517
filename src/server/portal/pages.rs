//! The public home page, sign-in and sign-out, and an org's pages (installers, configuration,
//! devices, audit, backup policy).

use super::session::{self, LOGIN_COOKIE, SESSION_COOKIE, SESSION_LIFETIME};
use super::view::{self, group_by_release, Installer, OverlayFile};
use super::{require_org, Me, PortalError, PortalState, Result, SignedIn};
use crate::domain::{OrgCode, Platform, Sha256};
use crate::org::{BackupSelection, Org, OrgConfig, MAX_OVERLAY_FILES, MAX_OVERLAY_FILE_SIZE};
use crate::server::auth::ClientAddr;
use crate::server::auth::{Caller, Principal};
use crate::server::error::ApiError;
use crate::service::fleet::{DeviceFilter, DeviceView, UsageView};
use crate::service::views::{download_path, newest_published, AuditView, OrgView};
use crate::store::{AuditFilter, Role};
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{AppendHeaders, Html, IntoResponse, Redirect, Response};
use axum::Form;
use serde::{Deserialize, Serialize};
use std::time::Duration;

pub(super) use crate::server::routes::blocking;

/// Audit events an org page shows.
const ORG_AUDIT_EVENTS: u32 = 50;
/// The sign-in form's anti-forgery cookie lives this long.
const LOGIN_FORM_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// A form body, or 422 naming what is wrong with it.
pub(super) fn form<T>(body: std::result::Result<Form<T>, FormRejection>) -> Result<T> {
    body.map(|Form(t)| t)
        .map_err(|e| ApiError::Invalid(format!("the form: {}", e.body_text())).into())
}

pub(super) fn org_code(code: &str) -> Result<OrgCode> {
    // An invalid code cannot name an org: answer as for an unknown one.
    OrgCode::parse(code).map_err(|_| ApiError::NotFound(format!("org {code}")).into())
}

fn context(me: Option<&SignedIn>) -> tera::Context {
    let mut context = tera::Context::new();
    if let Some(me) = me {
        context.insert("me", &Me::from(me));
    }
    context
}

/// Where a person lands after signing in.
fn landing(caller: &Caller) -> String {
    match caller.org() {
        Some(org) => format!("/orgs/{org}"),
        None => "/admin".into(),
    }
}

#[derive(Serialize)]
struct HomePage {
    version_count: usize,
    installers: Vec<Installer>,
    sums: Vec<(String, String)>,
    public_key: String,
}

/// `/`: the default installers of the newest release per platform.
pub async fn home(State(state): State<PortalState>, headers: HeaderMap) -> Result<Html<String>> {
    let me = state.signed_in(&headers).await?;
    let depot = state.depot.clone();
    let page = blocking(move || -> std::result::Result<_, ApiError> {
        let meta = depot.meta();
        let default = depot.org(&OrgCode::default_org())?;
        let (releases, rollouts) = (meta.list_releases()?, meta.list_rollouts()?);
        let packages = meta.list_packages(Some(&default.code), None)?;
        let mut installers = Vec::new();
        let mut sums: Vec<(String, String)> = Vec::new();
        for platform in Platform::ALL {
            let Some(release) = newest_published(
                &releases,
                &rollouts,
                &default.config.channel,
                Some(platform),
            ) else {
                continue;
            };
            let Some(package) = packages
                .iter()
                .find(|p| p.version == release.version && p.platform == platform)
            else {
                continue;
            };
            let version = release.version.to_string();
            if !sums.iter().any(|(v, _)| *v == version) {
                sums.push((
                    version,
                    download_path(&default.code, &release.version, "SHA256SUMS"),
                ));
            }
            installers.push(Installer::from(package));
        }
        Ok(HomePage {
            version_count: sums.len(),
            installers,
            sums,
            public_key: depot.public_key().to_line(),
        })
    })
    .await?;
    let mut context = context(me.as_ref());
    context.insert("page", &page);
    state.render("home.html", &context)
}

/// `GET /login`: the sign-in form, or straight on for someone signed in.
pub async fn login_form(State(state): State<PortalState>, headers: HeaderMap) -> Result<Response> {
    if let Some(me) = state.signed_in(&headers).await? {
        return Ok(Redirect::to(&landing(me.caller())).into_response());
    }
    let csrf = session::random_id();
    let page = render_login(&state, &csrf, None)?;
    let cookie = session::set_cookie(LOGIN_COOKIE, &csrf, LOGIN_FORM_LIFETIME, state.secure());
    Ok(([(header::SET_COOKIE, cookie)], page).into_response())
}

fn render_login(state: &PortalState, csrf: &str, error: Option<&str>) -> Result<Html<String>> {
    let mut context = tera::Context::new();
    context.insert("csrf", csrf);
    context.insert("error", &error);
    let identity = state.depot.identity();
    context.insert("token_login", &identity.roles.token_login);
    context.insert(
        "sso_provider",
        &identity.header.as_ref().map(|h| h.provider.clone()),
    );
    state.render("login.html", &context)
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /login`: a good token opens a session; bad ones count toward the address's limit, and
/// past it are 429.
pub async fn login(
    State(state): State<PortalState>,
    ClientAddr(address): ClientAddr,
    headers: HeaderMap,
    body: std::result::Result<Form<LoginForm>, FormRejection>,
) -> Result<Response> {
    let ip: Option<std::net::IpAddr> = address.parse().ok();
    if !state.depot.identity().roles.token_login {
        return Err(ApiError::Forbidden(
            "signing in with a token is turned off here; use the university's sign-in".into(),
        )
        .into());
    }
    let expected = session::cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    let LoginForm { token, csrf } = form(body)?;
    if expected.is_empty() || !session::same_secret(&csrf, expected) {
        return Err(ApiError::Forbidden(
            "the sign-in form is stale or was not sent from this site; reload it".into(),
        )
        .into());
    }
    let secret = token.trim().to_string();
    let record = if secret.is_empty() || secret.len() > 256 {
        None
    } else {
        let depot = state.depot.clone();
        let probe = secret.clone();
        blocking(move || depot.authenticate(&probe)).await?
    };
    let caller = record.and_then(|r| {
        let principal = match (r.role, r.org) {
            (Role::Admin, _) => Principal::Admin,
            (Role::Partner, Some(org)) => Principal::Partner(org),
            (Role::Partner, None) => return None,
        };
        Some(Caller {
            principal,
            name: r.name,
        })
    });
    let Some(caller) = caller else {
        // Only an unknown token is refused for its address: a valid one always signs in, so
        // guesses from one host behind a NAT do not lock out the others.
        if let Some(a) = ip {
            if state.app.auth_failures.is_blocked(a) {
                return Err(ApiError::RateLimited(
                    "too many failed sign-ins from this address; try again later".into(),
                )
                .into());
            }
            state.app.auth_failures.record_failure(a);
        }
        let page = render_login(&state, expected, Some("That token is unknown or revoked."))?;
        return Ok((StatusCode::UNAUTHORIZED, page).into_response());
    };
    let to = landing(&caller);
    let id = state.sessions.create(
        caller,
        session::Opener::Token(Sha256::digest(secret.as_bytes())),
    );
    let secure = state.secure();
    Ok((
        AppendHeaders([
            (
                header::SET_COOKIE,
                session::set_cookie(SESSION_COOKIE, &id, SESSION_LIFETIME, secure),
            ),
            (
                header::SET_COOKIE,
                session::clear_cookie(LOGIN_COOKIE, secure),
            ),
        ]),
        Redirect::to(&to),
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `GET /logout`: a page with the sign-out button (signing out changes state, so it is a
/// form), or home for someone not signed in.
pub async fn logout_form(State(state): State<PortalState>, headers: HeaderMap) -> Result<Response> {
    match state.signed_in(&headers).await? {
        Some(me) => Ok(state
            .render("logout.html", &context(Some(&me)))?
            .into_response()),
        None => Ok(Redirect::to("/").into_response()),
    }
}

/// `POST /logout`: ends the session.
pub async fn logout(
    State(state): State<PortalState>,
    ClientAddr(address): ClientAddr,
    headers: HeaderMap,
    body: std::result::Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response> {
    let me = state.require_signed_in(&headers).await?;
    // An unreadable body carries no token: refused as a forgery.
    me.check_csrf(&body.map(|Form(f)| f.csrf).unwrap_or_default())?;
    state.sessions.remove(&me.id);
    if let session::Opener::Person(person) = &me.session.opener {
        let (depot, person) = (state.depot.clone(), person.clone());
        blocking(move || depot.sign_out(&person, &address)).await?;
    }
    Ok((
        [(
            header::SET_COOKIE,
            session::clear_cookie(SESSION_COOKIE, state.secure()),
        )],
        Redirect::to("/"),
    )
        .into_response())
}

/// The configuration form's fields, as text.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ConfigForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    contact_email: String,
    #[serde(default)]
    include: String,
    #[serde(default)]
    exclude: String,
    #[serde(default)]
    settings: String,
}

impl ConfigForm {
    fn of(org: &Org) -> Self {
        let c = &org.config;
        ConfigForm {
            csrf: String::new(),
            name: c.name.clone(),
            contact_email: c.contact_email.clone().unwrap_or_default(),
            include: c.backup.include.join("\n"),
            exclude: c.backup.exclude.join("\n"),
            settings: c
                .settings
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    /// The configuration it asks for: the org's current one with the form's fields replaced.
    fn apply(&self, current: &OrgConfig) -> std::result::Result<OrgConfig, String> {
        let mut input = current.to_input();
        input.name = self.name.clone();
        input.contact_email = Some(self.contact_email.clone());
        input.backup = BackupSelection {
            include: view::lines(&self.include),
            exclude: view::lines(&self.exclude),
        };
        input.settings = view::settings_lines(&self.settings)?;
        OrgConfig::try_from(input).map_err(|e| e.to_string())
    }
}

#[derive(Serialize)]
struct OrgPage {
    org: OrgView,
    releases: Vec<view::ReleaseInstallers>,
    devices: Vec<DeviceView>,
    usage: UsageView,
    audit: Vec<AuditView>,
    public_key: String,
    overlays: Vec<OverlayFile>,
    overlay_limit: String,
    max_overlay_files: usize,
    /// Per OS, the installer files an overlay may replace.
    replaceable: Vec<(&'static str, Vec<String>)>,
    /// Files depot writes itself, which no overlay may replace.
    protected: Vec<&'static str>,
}

fn org_page_data(
    state: &PortalState,
    code: OrgCode,
) -> impl FnOnce() -> std::result::Result<(OrgPage, Org), ApiError> + Send + 'static {
    let depot = state.depot.clone();
    move || {
        let meta = depot.meta();
        let org = depot.org(&code)?;
        let releases = meta.list_releases()?;
        let rollouts = meta.list_rollouts()?;
        let channel = &org.config.channel;
        let recommended = crate::service::views::recommended(
            &releases,
            &rollouts,
            org.config.pinned_version.as_ref(),
            channel,
            None,
        )
        .map(|r| r.version.clone());
        let state = |v: &crate::domain::Version| match releases.iter().find(|r| &r.version == v) {
            Some(r) => view::ReleaseState {
                yank_reason: r.yanked.as_ref().map(|y| y.reason.clone()),
                rollout: crate::service::views::rollout_state(
                    r,
                    rollouts
                        .iter()
                        .find(|o| &o.version == v && &o.channel == channel),
                ),
                recommended: recommended.as_ref() == Some(v),
            },
            None => view::ReleaseState::default(),
        };
        let packages = group_by_release(&code, meta.list_packages(Some(&code), None)?, state);
        let page = OrgPage {
            org: OrgView::from(&org),
            releases: packages,
            devices: depot.devices(&code, &DeviceFilter::default())?,
            usage: depot.usage(&code)?,
            audit: meta
                .query_audit(&AuditFilter {
                    org: Some(code.clone()),
                    limit: Some(ORG_AUDIT_EVENTS),
                    ..Default::default()
                })?
                .iter()
                .map(AuditView::from)
                .collect(),
            public_key: depot.public_key().to_line(),
            overlays: meta
                .list_overlays(&code)?
                .iter()
                .map(OverlayFile::from)
                .collect(),
            overlay_limit: view::human_size(MAX_OVERLAY_FILE_SIZE as u64),
            max_overlay_files: MAX_OVERLAY_FILES,
            replaceable: depot
                .replaceable_files()
                .into_iter()
                .map(|(os, names)| (os.as_str(), names))
                .collect(),
            protected: crate::org::PROTECTED_FILES.to_vec(),
        };
        Ok((page, org))
    }
}

pub(super) async fn render_org(
    state: &PortalState,
    me: &SignedIn,
    code: OrgCode,
    submitted: Option<&ConfigForm>,
    error: Option<String>,
) -> Result<Html<String>> {
    let (page, org) = blocking(org_page_data(state, code)).await?;
    let mut context = context(Some(me));
    context.insert("page", &page);
    context.insert("form", submitted.unwrap_or(&ConfigForm::of(&org)));
    context.insert("error", &error);
    context.insert("flash", &state.sessions.take_flash(&me.id));
    state.render("org.html", &context)
}

/// `/orgs/{org}`.
pub async fn org_page(
    State(state): State<PortalState>,
    headers: HeaderMap,
    Path(code): Path<String>,
) -> Result<Html<String>> {
    let me = state.require_signed_in(&headers).await?;
    let code = org_code(&code)?;
    require_org(me.caller(), &code)?;
    render_org(&state, &me, code, None, None).await
}

/// `POST /orgs/{org}/config`: saves the configuration and rebuilds the org's packages.
pub async fn save_config(
    State(state): State<PortalState>,
    ClientAddr(address): ClientAddr,
    headers: HeaderMap,
    Path(code): Path<String>,
    body: std::result::Result<Form<ConfigForm>, FormRejection>,
) -> Result<Response> {
    let me = state.require_signed_in(&headers).await?;
    let code = org_code(&code)?;
    require_org(me.caller(), &code)?;
    let submitted = form(body)?;
    me.check_csrf(&submitted.csrf)?;
    let current = {
        let depot = state.depot.clone();
        let code = code.clone();
        blocking(move || depot.org(&code)).await?
    };
    let config = match submitted.apply(&current.config) {
        Ok(config) => config,
        Err(message) => {
            let page = render_org(&state, &me, code, Some(&submitted), Some(message)).await?;
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
        }
    };
    let depot = state.depot.clone();
    let actor = me.actor(address);
    let target = code.clone();
    let (_, report) = blocking(move || depot.update_org(&actor, &target, config)).await?;
    state.app.metrics.observe_build(report.elapsed);
    state
        .sessions
        .set_flash(&me.id, format!("Saved. {}", view::rebuilt(&report)));
    Ok(Redirect::to(&format!("/orgs/{code}")).into_response())
}

/// `POST /orgs/{org}/rotate-key`: a new registration key, built into the org's packages at
/// once (`Depot::rotate_key`, as `POST /v1/orgs/{org}/rotate-key`). The one-time message
/// shows the new key to the person who asked for it.
pub async fn rotate_key(
    State(state): State<PortalState>,
    ClientAddr(address): ClientAddr,
    headers: HeaderMap,
    Path(code): Path<String>,
    body: std::result::Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response> {
    let me = state.require_signed_in(&headers).await?;
    let code = org_code(&code)?;
    require_org(me.caller(), &code)?;
    // An unreadable body carries no token: refused as a forgery.
    me.check_csrf(&body.map(|Form(f)| f.csrf).unwrap_or_default())?;
    let depot = state.depot.clone();
    let actor = me.actor(address);
    let target = code.clone();
    let (org, report) = blocking(move || depot.rotate_key(&actor, &target)).await?;
    state.app.metrics.observe_build(report.elapsed);
    state.sessions.set_flash(
        &me.id,
        format!(
            "New registration key: {}. Machines enroll with it from now on; enrolled machines \
             keep working. {}",
            org.registration_key,
            view::rebuilt(&report)
        ),
    );
    Ok(Redirect::to(&format!("/orgs/{code}")).into_response())
}

/// `POST /orgs/{org}/devices/{id}/deactivate`.
pub async fn deactivate(
    State(state): State<PortalState>,
    ClientAddr(address): ClientAddr,
    headers: HeaderMap,
    Path((code, id)): Path<(String, String)>,
    body: std::result::Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response> {
    let me = state.require_signed_in(&headers).await?;
    let code = org_code(&code)?;
    require_org(me.caller(), &code)?;
    // An unreadable body carries no token: refused as a forgery.
    me.check_csrf(&body.map(|Form(f)| f.csrf).unwrap_or_default())?;
    let depot = state.depot.clone();
    let actor = me.actor(address);
    let org = code.clone();
    let device = id.clone();
    blocking(move || depot.deactivate_device(&actor, &org, &device)).await?;
    state
        .sessions
        .set_flash(&me.id, format!("Device {id} deactivated."));
    Ok(Redirect::to(&format!("/orgs/{code}")).into_response())
}

/// One backup pattern, explained.
#[derive(Serialize)]
struct Rule {
    pattern: String,
    /// `Windows`, `macOS`, `Linux`, or every system.
    systems: &'static str,
    case_insensitive: bool,
}

impl Rule {
    fn of(pattern: &str) -> Rule {
        let (case_insensitive, rest) = match pattern.strip_prefix("(?i)") {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        let systems = if rest.starts_with("win:") {
            "Windows"
        } else if rest.starts_with("mac:") {
            "macOS"
        } else if rest.starts_with("linux:") {
            "Linux"
        } else {
            "all systems"
        };
        Rule {
            pattern: pattern.to_string(),
            systems,
            case_insensitive,
        }
    }
}

#[derive(Serialize)]
struct PolicyPage {
    code: String,
    name: String,
    contact_email: Option<String>,
    updated_at: String,
    include: Vec<Rule>,
    exclude: Vec<Rule>,
    /// Frequency, retention and encryption, as the installers configure the client.
    schedule: Vec<(&'static str, String)>,
}

/// The backup settings a person asks about first, in words; `not set` where the org has none.
fn schedule(settings: &std::collections::BTreeMap<String, String>) -> Vec<(&'static str, String)> {
    let get = |key: &str| settings.get(key).map(|v| v.trim().to_string());
    vec![
        (
            "Frequency",
            get("backup.frequency_minutes")
                .map_or_else(|| "not set".into(), |m| format!("every {m} minutes")),
        ),
        (
            "Retention",
            get("backup.retention_days").map_or_else(
                || "not set".into(),
                |d| format!("deleted files and old versions kept {d} days"),
            ),
        ),
        (
            "Encryption",
            match get("backup.encrypt").as_deref() {
                Some("true") => "on: backups are encrypted".into(),
                Some("false") => "off".into(),
                Some(other) => other.to_string(),
                None => "not set".into(),
            },
        ),
    ]
}

/// `/orgs/{org}/backup-policy`: public for `default`, else for those who may see the org.
pub async fn backup_policy(
    State(state): State<PortalState>,
    headers: HeaderMap,
    Path(code): Path<String>,
) -> Result<Html<String>> {
    let code = org_code(&code)?;
    let me = state.signed_in(&headers).await?;
    if !code.is_default() {
        let me = me.as_ref().ok_or(PortalError::SignIn)?;
        require_org(me.caller(), &code)?;
    }
    let depot = state.depot.clone();
    let org = blocking(move || depot.org(&code)).await?;
    let view = OrgView::from(&org);
    let page = PolicyPage {
        code: view.code,
        name: view.name,
        contact_email: view.contact_email,
        updated_at: view.updated_at,
        include: org
            .config
            .backup
            .include
            .iter()
            .map(|p| Rule::of(p))
            .collect(),
        exclude: org
            .config
            .backup
            .exclude
            .iter()
            .map(|p| Rule::of(p))
            .collect(),
        schedule: schedule(&org.config.settings),
    };
    let mut context = context(me.as_ref());
    context.insert("page", &page);
    state.render("policy.html", &context)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_explained() {
        let r = Rule::of("(?i)mac:.*/Library/Caches/.*");
        assert_eq!((r.systems, r.case_insensitive), ("macOS", true));
        let r = Rule::of("win:C:/Users/");
        assert_eq!((r.systems, r.case_insensitive), ("Windows", false));
        assert_eq!(Rule::of(".*\\.iso$").systems, "all systems");
    }

    #[test]
    fn config_form_round_trips() {
        let config = OrgConfig::new("Physics").unwrap();
        let org = Org {
            code: OrgCode::parse("physics").unwrap(),
            registration_key: crate::domain::RegistrationKey::generate(),
            config: config.clone(),
            created_at: 0,
            updated_at: 0,
        };
        let form = ConfigForm::of(&org);
        assert_eq!(form.apply(&config).unwrap(), config);
        let bad = ConfigForm {
            settings: "oops".into(),
            ..ConfigForm::of(&org)
        };
        assert!(bad.apply(&config).unwrap_err().contains("KEY=value"));
    }
}
