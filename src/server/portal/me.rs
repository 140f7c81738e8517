//! `/me`: who you are, your roles, and your personal API tokens (create, shown once; list;
//! revoke). Tokens are a person's only: a session opened with a token has none.

use super::pages::{blocking, form};
use super::session::Opener;
use super::{Me, PortalState, Result, SignedIn};
use crate::identity::MAX_TOKEN_DAYS;
use crate::server::auth::{ClientAddr, Principal};
use crate::server::error::ApiError;
use crate::service::views::rfc3339;
use crate::store::PersonalTokenRecord;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};

#[derive(Serialize)]
struct TokenRow {
    id: String,
    name: String,
    created_at: String,
    expires_at: String,
    revoked_at: Option<String>,
    expired: bool,
}

#[derive(Serialize, Default)]
struct MePage {
    roles: String,
    person: Option<String>,
    signed_in_at: Option<String>,
    tokens: Vec<TokenRow>,
    max_days: u32,
    new_name: Option<String>,
    new_secret: Option<String>,
}

fn person_of(me: &SignedIn) -> Option<String> {
    match &me.session.opener {
        Opener::Person(id) => Some(id.clone()),
        Opener::Token(_) => None,
    }
}

async fn page(state: &PortalState, me: &SignedIn) -> Result<MePage> {
    let Some(person) = person_of(me) else {
        let roles = match &me.caller().principal {
            Principal::Admin => "admin".to_string(),
            Principal::Partner(org) => format!("partner of {org}"),
            Principal::Device { org, .. } => format!("device of {org}"),
        };
        return Ok(MePage {
            roles,
            max_days: MAX_TOKEN_DAYS,
            ..MePage::default()
        });
    };
    let depot = state.depot.clone();
    let (record, tokens) = blocking(move || -> std::result::Result<_, ApiError> {
        Ok((depot.person(&person)?, depot.list_personal_tokens(&person)?))
    })
    .await?;
    let record = record.ok_or(super::PortalError::SignIn)?;
    let now = crate::service::now();
    let mut roles = Vec::new();
    if record.admin {
        roles.push("admin".to_string());
    }
    if !record.orgs.is_empty() {
        let orgs: Vec<&str> = record.orgs.iter().map(|o| o.as_str()).collect();
        roles.push(format!("partner of {}", orgs.join(", ")));
    }
    Ok(MePage {
        roles: roles.join("; "),
        person: Some(record.id.clone()),
        signed_in_at: Some(rfc3339(record.signed_in_at)),
        tokens: tokens
            .iter()
            .map(|t: &PersonalTokenRecord| TokenRow {
                id: t.id.clone(),
                name: t.name.clone(),
                created_at: rfc3339(t.created_at),
                expires_at: rfc3339(t.expires_at),
                revoked_at: t.revoked_at.map(rfc3339),
                expired: t.expires_at <= now,
            })
            .collect(),
        max_days: MAX_TOKEN_DAYS,
        new_name: None,
        new_secret: None,
    })
}

fn render(state: &PortalState, me: &SignedIn, page: &MePage) -> Result<Html<String>> {
    let mut context = tera::Context::new();
    context.insert("me", &Me::from(me));
    context.insert("flash", &state.sessions.take_flash(&me.id));
    context.insert("page", page);
    state.render("me.html", &context)
}

/// `GET /me`.
pub async fn me_page(State(state): State<PortalState>, headers: HeaderMap) -> Result<Html<String>> {
    let me = state.require_signed_in(&headers).await?;
    let page = page(&state, &me).await?;
    render(&state, &me, &page)
}

#[derive(Deserialize)]
pub struct NewTokenForm {
    #[serde(default)]
    csrf: String,
    name: String,
    days: u32,
}

/// `POST /me/tokens`: the new token's secret is on this answer only.
pub async fn create_token(
    State(state): State<PortalState>,
    ClientAddr(address): ClientAddr,
    headers: HeaderMap,
    body: std::result::Result<axum::Form<NewTokenForm>, FormRejection>,
) -> Result<Response> {
    let me = state.require_signed_in(&headers).await?;
    let NewTokenForm { csrf, name, days } = form(body)?;
    me.check_csrf(&csrf)?;
    let person = person_of(&me).ok_or_else(|| {
        ApiError::Forbidden(
            "personal tokens are for people who sign in through single sign-on".into(),
        )
    })?;
    let depot = state.depot.clone();
    let new = blocking(move || depot.create_personal_token(&person, &name, days, &address)).await?;
    let mut page = page(&state, &me).await?;
    page.new_name = Some(new.record.name);
    page.new_secret = Some(new.secret);
    Ok(render(&state, &me, &page)?.into_response())
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

/// `POST /me/tokens/{id}/revoke`.
pub async fn revoke_token(
    State(state): State<PortalState>,
    ClientAddr(address): ClientAddr,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: std::result::Result<axum::Form<CsrfOnly>, FormRejection>,
) -> Result<Response> {
    let me = state.require_signed_in(&headers).await?;
    me.check_csrf(&body.map(|axum::Form(f)| f.csrf).unwrap_or_default())?;
    let person =
        person_of(&me).ok_or_else(|| ApiError::NotFound(format!("personal token {id}")))?;
    let depot = state.depot.clone();
    let shown = id.clone();
    blocking(move || depot.revoke_personal_token(&person, &id, &address)).await?;
    state
        .sessions
        .set_flash(&me.id, format!("Token {shown} revoked."));
    Ok(Redirect::to("/me").into_response())
}
