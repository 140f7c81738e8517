//! The portal: server-rendered HTML pages for partners and Desktop Engineering (CONTRACT 8).
//!
//! Pages read and change state only through the same calls as the API (the [`Depot`] service
//! and the store), so a page can never show or do something the API would not. People sign in
//! with a token through a form; the session lives in server memory (see [`session`]). Every
//! form carries the session's anti-forgery token, and a POST from another origin is refused
//! before it reaches a handler. Pages work without JavaScript and load nothing but
//! `/static/portal.css`; the Content-Security-Policy forbids everything else. This module must
//! never render unescaped input, and never accept a session cookie where a state change would
//! follow from it without the anti-forgery token.

mod admin;
mod files;
mod me;
mod pages;
pub mod session;
mod sso;
mod view;

use super::auth::{Caller, Principal, SessionCaller};
use super::error::ApiError;
use super::incoming::BodyLimit;
use super::AppState;
use crate::domain::OrgCode;
use crate::service::{Actor, Depot};
use axum::extract::multipart::{Field, Multipart};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use session::{Session, Sessions, SESSION_COOKIE};
use std::sync::Arc;

/// What a page request can fail with; shown as a short HTML page with the matching status.
#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    #[error(transparent)]
    Api(#[from] ApiError),
    /// A template did not render: a bug, logged, never shown in detail.
    #[error("page template: {0}")]
    Template(#[from] tera::Error),
    /// Not signed in: go to the sign-in page.
    #[error("sign in first")]
    SignIn,
}

pub type Result<T> = std::result::Result<T, PortalError>;

impl From<crate::domain::DomainError> for PortalError {
    fn from(e: crate::domain::DomainError) -> Self {
        PortalError::Api(e.into())
    }
}

impl From<crate::service::ServiceError> for PortalError {
    fn from(e: crate::service::ServiceError) -> Self {
        PortalError::Api(e.into())
    }
}

impl IntoResponse for PortalError {
    fn into_response(self) -> Response {
        let (status, message) = match &self {
            PortalError::SignIn => return Redirect::to("/login").into_response(),
            PortalError::Template(e) => {
                tracing::error!(error = %e, "portal template failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error".into())
            }
            PortalError::Api(e @ ApiError::Internal(_)) => {
                tracing::error!(error = %e, "portal request failed");
                (e.status(), "internal error".into())
            }
            PortalError::Api(e) => (e.status(), e.to_string()),
        };
        let reason = status.canonical_reason().unwrap_or("Error");
        let body = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{reason} · depot</title><link rel=\"icon\" href=\"data:,\"><link rel=\"stylesheet\" href=\"/static/portal.css\"></head>\
             <body><main><h1>{code} {reason}</h1><p class=\"error\">{message}</p>\
             <p><a href=\"/\">Home</a> · <a href=\"/login\">Sign in</a></p></main></body></html>",
            code = status.as_u16(),
            message = tera::escape_html(&message),
        );
        (status, Html(body)).into_response()
    }
}

/// What every portal handler shares.
#[derive(Clone)]
pub struct PortalState {
    pub app: AppState,
    pub depot: Arc<Depot>,
    sessions: Arc<Sessions>,
    templates: Arc<tera::Tera>,
}

/// A request's signed-in person: the session and its id.
pub struct SignedIn {
    pub id: String,
    pub session: Session,
}

impl SignedIn {
    pub fn caller(&self) -> &Caller {
        &self.session.caller
    }

    /// The audit log's actor for this request.
    pub fn actor(&self, address: String) -> Actor {
        Actor {
            name: self.session.caller.name.clone(),
            address,
        }
    }

    /// A form's anti-forgery token is this session's.
    pub fn check_csrf(&self, presented: &str) -> Result<()> {
        if session::same_secret(presented, &self.session.csrf) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "the form's anti-forgery token is missing or stale; reload the page".into(),
            )
            .into())
        }
    }

    /// A multipart form's first field is this session's anti-forgery token: checked before
    /// any file of a forged request is received.
    pub async fn check_csrf_first(&self, multipart: &mut Multipart) -> Result<()> {
        match multipart.next_field().await.map_err(ApiError::from)? {
            Some(field) if field.name() == Some("csrf") => {
                self.check_csrf(&small_text(field, "csrf", 128).await?)
            }
            _ => Err(
                ApiError::Forbidden("the form's anti-forgery token must come first".into()).into(),
            ),
        }
    }
}

/// A short text field of a multipart form, at most `max` bytes of UTF-8.
pub async fn small_text(field: Field<'_>, name: &str, max: usize) -> Result<String> {
    let bytes = field_bytes(field, max, || format!("{name} is longer than {max} bytes")).await?;
    String::from_utf8(bytes)
        .map_err(|_| ApiError::Invalid(format!("{name} is not UTF-8 text")).into())
}

/// A multipart field's bytes, refused with 413 (saying `too_large()`) past `max` bytes.
pub async fn field_bytes(
    mut field: Field<'_>,
    max: usize,
    too_large: impl FnOnce() -> String,
) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(ApiError::from)? {
        if bytes.len() + chunk.len() > max {
            return Err(ApiError::TooLarge(too_large()).into());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

impl PortalState {
    /// The live session the request's cookie names. A session whose token has been revoked
    /// ends here.
    pub async fn signed_in(&self, headers: &HeaderMap) -> Result<Option<SignedIn>> {
        let Some(id) = session::cookie(headers, SESSION_COOKIE) else {
            return Ok(None);
        };
        let Some(session) = self.sessions.get(id) else {
            return Ok(None);
        };
        let mut session = session;
        let live = match &session.opener {
            session::Opener::Token(hash) => {
                let (app, hash) = (self.app.clone(), *hash);
                pages::blocking(move || app.tokens.find(app.meta.as_ref(), &hash))
                    .await?
                    .is_some()
            }
            // A person has the roles of their latest sign-in, on any replica.
            session::Opener::Person(person) => match sso::current_caller(self, person).await? {
                Some(caller) => {
                    session.caller = caller;
                    true
                }
                None => false,
            },
        };
        if !live {
            self.sessions.remove(id);
            return Ok(None);
        }
        Ok(Some(SignedIn {
            id: id.to_string(),
            session,
        }))
    }

    /// Like [`Self::signed_in`], but a page that needs a session sends the visitor to sign in.
    pub async fn require_signed_in(&self, headers: &HeaderMap) -> Result<SignedIn> {
        self.signed_in(headers).await?.ok_or(PortalError::SignIn)
    }

    pub fn render(&self, name: &str, context: &tera::Context) -> Result<Html<String>> {
        Ok(Html(self.templates.render(name, context)?))
    }

    /// Whether people reach the portal over HTTPS: the server speaks TLS, or its public URL is
    /// https (TLS ended by a proxy in front). Then cookies get `Secure` and pages send HSTS.
    pub fn secure(&self) -> bool {
        self.app.options.tls.is_some() || self.depot.public_url().starts_with("https://")
    }
}

/// The caller may see `org`'s pages; another org's answer 404, as in the API.
pub fn require_org(caller: &Caller, org: &OrgCode) -> Result<()> {
    Ok(super::auth::require_org_admin(caller, org)?)
}

pub fn require_admin(caller: &Caller) -> Result<()> {
    Ok(super::auth::require_admin(caller)?)
}

fn load_templates() -> std::result::Result<tera::Tera, tera::Error> {
    let mut tera = tera::Tera::default();
    tera.add_raw_templates(vec![
        ("base.html", include_str!("templates/base.html")),
        ("home.html", include_str!("templates/home.html")),
        ("login.html", include_str!("templates/login.html")),
        ("org.html", include_str!("templates/org.html")),
        ("policy.html", include_str!("templates/policy.html")),
        ("logout.html", include_str!("templates/logout.html")),
        ("me.html", include_str!("templates/me.html")),
        ("signed_in.html", include_str!("templates/signed_in.html")),
        (
            "signin_failed.html",
            include_str!("templates/signin_failed.html"),
        ),
        ("admin.html", include_str!("templates/admin.html")),
        (
            "audit_table.html",
            include_str!("templates/audit_table.html"),
        ),
    ])?;
    Ok(tera)
}

const STYLESHEET: &str = include_str!("templates/portal.css");

impl PortalState {
    /// The portal of a server that has the service behind it; `None` without one, or when the
    /// templates do not load (the API is then served alone).
    pub fn for_server(state: &AppState) -> Option<PortalState> {
        let depot = state.depot.clone()?;
        let templates = match load_templates() {
            Ok(t) => Arc::new(t),
            Err(e) => {
                tracing::error!(error = %e, "portal templates do not load; serving the API without the portal");
                return None;
            }
        };
        Some(PortalState {
            app: state.clone(),
            depot,
            sessions: Arc::default(),
            templates,
        })
    }
}

/// Lets a portal session cookie authorize the downloads of `routes` (reads only).
pub fn with_download_sessions(
    routes: super::ApiRouter<AppState>,
    portal: &PortalState,
) -> super::ApiRouter<AppState> {
    routes.layer(axum::middleware::from_fn_with_state(
        portal.clone(),
        download_session,
    ))
}

/// Adds the portal's pages to `api`.
pub fn mount(api: Router<AppState>, portal: PortalState) -> Router<AppState> {
    let state = &portal.app;
    let upload_limit = state.options.max_upload_bytes;
    let secure = portal.secure();
    let pages = Router::new()
        .route("/", get(pages::home))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/logout", get(pages::logout_form).post(pages::logout))
        .route("/auth/header", get(sso::header_sign_in))
        .route("/me", get(me::me_page))
        .route("/me/tokens", post(me::create_token))
        .route("/me/tokens/{id}/revoke", post(me::revoke_token))
        .route("/orgs/{org}", get(pages::org_page))
        .route("/orgs/{org}/config", post(pages::save_config))
        .route("/orgs/{org}/backup-policy", get(pages::backup_policy))
        .route(
            "/orgs/{org}/devices/{id}/deactivate",
            post(pages::deactivate),
        )
        .route("/orgs/{org}/rotate-key", post(pages::rotate_key))
        .route("/orgs/{org}/files/remove", post(files::remove))
        .route("/admin", get(admin::admin_page))
        .route("/admin/releases/{version}/publish", post(admin::publish))
        .route("/admin/releases/{version}/yank", post(admin::yank))
        .route("/admin/rollouts/{version}/{channel}", post(admin::rollout))
        .layer(BodyLimit::max(state.options.max_body_bytes as u64))
        .route(
            "/admin/releases",
            post(admin::upload).layer(BodyLimit::max(upload_limit)),
        )
        .route(
            "/orgs/{org}/files",
            post(files::upload).layer(BodyLimit::max(
                (crate::org::MAX_OVERLAY_FILE_SIZE + files::FORM_OVERHEAD) as u64,
            )),
        )
        .route_layer(axum::middleware::from_fn(refuse_cross_origin))
        .layer(axum::middleware::map_response(move |response| {
            security_headers(response, secure)
        }))
        .route("/static/portal.css", get(stylesheet))
        .with_state(portal.clone());
    api.merge(pages)
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        STYLESHEET,
    )
}

const CSP: &str = "default-src 'self'; style-src 'self'; img-src 'self' data:; script-src 'none'; \
                   object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// HSTS for a year, this host only: other hosts of the domain may not all speak TLS.
const HSTS: &str = "max-age=31536000";

async fn security_headers(mut response: Response, secure: bool) -> Response {
    let h = response.headers_mut();
    if secure {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    // Pages show secrets (registration keys) and per-person data: never cache them.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A state-changing request must come from a page of this site: `Sec-Fetch-Site`, `Origin` and
/// `Referer`, when sent, must say so. (The anti-forgery token is checked by each handler too.)
async fn refuse_cross_origin(request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    if let Err(reason) = same_origin(request.headers()) {
        tracing::warn!(reason, path = %request.uri().path(), "cross-origin form post refused");
        return PortalError::Api(ApiError::Forbidden(format!(
            "refused: {reason}; forms must be sent from this site's pages"
        )))
        .into_response();
    }
    next.run(request).await
}

/// The host part (`host[:port]`) of an absolute URL.
fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    Some(rest.split(['/', '?', '#']).next().unwrap_or(rest))
}

fn same_origin(headers: &HeaderMap) -> std::result::Result<(), &'static str> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        if !matches!(site, "same-origin" | "none") {
            return Err("the request came from another site");
        }
    }
    let host = text("host").ok_or("the request has no Host")?;
    if let Some(origin) = text("origin") {
        if url_host(origin) != Some(host) {
            return Err("the Origin is another site");
        }
    } else if let Some(referer) = text("referer") {
        if url_host(referer) != Some(host) {
            return Err("the Referer is another site");
        }
    }
    Ok(())
}

/// Lets the portal session cookie stand in for a bearer token on downloads (reads only).
async fn download_session(
    State(state): State<PortalState>,
    mut request: Request,
    next: Next,
) -> Response {
    let wants = matches!(*request.method(), Method::GET | Method::HEAD)
        && !request.headers().contains_key(header::AUTHORIZATION)
        && session::cookie(request.headers(), SESSION_COOKIE).is_some();
    if wants {
        match state.signed_in(request.headers()).await {
            Ok(Some(signed_in)) => {
                request
                    .extensions_mut()
                    .insert(SessionCaller(signed_in.session.caller));
            }
            Ok(None) => {}
            Err(e) => return e.into_response(),
        }
    }
    next.run(request).await
}

/// What the page header shows of the signed-in person.
#[derive(Debug, serde::Serialize)]
pub struct Me {
    pub name: String,
    pub admin: bool,
    pub org: Option<String>,
    pub csrf: String,
}

impl From<&SignedIn> for Me {
    fn from(s: &SignedIn) -> Self {
        Me {
            name: s.session.caller.name.clone(),
            admin: matches!(s.session.caller.principal, Principal::Admin),
            org: s.session.caller.org().map(ToString::to_string),
            csrf: s.session.csrf.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_load() {
        load_templates().unwrap();
    }

    #[test]
    fn origin_checks() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        let host = ("host", "depot.example:8080");
        assert!(same_origin(&headers(&[host])).is_ok());
        assert!(same_origin(&headers(&[host, ("origin", "http://depot.example:8080")])).is_ok());
        assert!(same_origin(&headers(&[host, ("origin", "http://evil.example:8080")])).is_err());
        assert!(same_origin(&headers(&[host, ("origin", "null")])).is_err());
        assert!(same_origin(&headers(&[
            host,
            ("referer", "http://depot.example:8080/orgs/x")
        ]))
        .is_ok());
        assert!(same_origin(&headers(&[host, ("referer", "http://depot.example:9/x")])).is_err());
        assert!(same_origin(&headers(&[host, ("sec-fetch-site", "cross-site")])).is_err());
        assert!(same_origin(&headers(&[("origin", "http://a")])).is_err());
    }
}
