//! Header single sign-on (`GET /auth/header`): a Shibboleth SP or mod_auth_mellon in front
//! names the person and their groups in configured headers (`[sso.header]`).
//!
//! The headers are believed only when the connection comes from one of `trusted_proxies`;
//! from any other peer the sign-in is refused and recorded, whatever the headers say. Every
//! refusal is a page in words a person can pass to the help desk, with a reference that finds
//! the detail in the log; none opens a session. This module must never read the headers of a
//! request whose peer is not a trusted proxy.

use super::pages::blocking;
use super::session::{self, Opener, SESSION_COOKIE, SESSION_LIFETIME};
use super::{PortalState, Result};
use crate::identity::{split_groups, PersonId, SignInFailure};
use crate::server::auth::{Caller, ClientAddr};
use crate::server::error::ApiError;
use crate::server::routes::identity::person_caller;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;

/// The caller `person` is now: the roles of their latest sign-in, `None` without one.
pub async fn current_caller(portal: &PortalState, person: &str) -> Result<Option<Caller>> {
    let (depot, id) = (portal.depot.clone(), person.to_string());
    let found = blocking(move || depot.person(&id)).await?;
    Ok(found.as_ref().and_then(person_caller))
}

/// A refused sign-in: the page (no session), and the audit event and log line with the detail.
async fn refuse(
    state: &PortalState,
    address: &str,
    person: Option<&str>,
    message: &str,
    reason: &str,
) -> Result<Response> {
    let reference = session::random_id()[..10].to_string();
    tracing::warn!(reference, reason, person, address, "sign-in refused");
    {
        let (depot, address, person, detail) = (
            state.depot.clone(),
            address.to_string(),
            person.map(str::to_string),
            format!("{reason} (reference {reference})"),
        );
        blocking(move || depot.sign_in_failed(person.as_deref(), &address, &detail)).await?;
    }
    refusal_page(state, message, &reference)
}

/// The page of a sign-in that opened no session.
pub fn refusal_page(state: &PortalState, message: &str, reference: &str) -> Result<Response> {
    let mut context = tera::Context::new();
    context.insert("message", message);
    context.insert("reference", reference);
    context.insert("at", &crate::service::views::rfc3339(crate::service::now()));
    let page = state.render("signin_failed.html", &context)?;
    Ok((StatusCode::FORBIDDEN, page).into_response())
}

/// `GET /auth/header`: signs in the person a trusted proxy names.
pub async fn header_sign_in(
    State(state): State<PortalState>,
    ClientAddr(address): ClientAddr,
    extensions: Extensions,
    headers: HeaderMap,
) -> Result<Response> {
    let Some(config) = state.depot.identity().header.clone() else {
        return Err(ApiError::NotFound("header sign-in is not configured".into()).into());
    };
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip());
    if !peer.is_some_and(|p| state.app.options.trusted_proxies.contains(p)) {
        return refuse(
            &state,
            &address,
            None,
            "This sign-in did not come through the university's sign-in service, so depot \
             cannot believe it. Use the sign-in link on depot's sign-in page.",
            &format!(
                "sign-in headers from {}, which is not a trusted proxy",
                peer.map_or_else(|| "an unknown peer".to_string(), |p| p.to_string())
            ),
        )
        .await;
    }
    let text = |name: &str| headers.get(name).map(|v| v.to_str().map(str::to_string));
    let user = match text(&config.user) {
        Some(Ok(user)) if !user.trim().is_empty() => user,
        Some(Err(_)) => {
            return refuse(
                &state,
                &address,
                None,
                "The university's sign-in service sent your name in a form depot cannot read.",
                &format!("header {} is not visible ASCII", config.user),
            )
            .await
        }
        _ => {
            return refuse(
                &state,
                &address,
                None,
                "The university's sign-in service did not say who you are.",
                &format!("no {} header from the proxy", config.user),
            )
            .await
        }
    };
    let person = match PersonId::parse(&user) {
        Ok(p) => p,
        Err(e) => {
            return refuse(
                &state,
                &address,
                None,
                "The university's sign-in service sent a name depot cannot use.",
                &format!("header {}: {e}", config.user),
            )
            .await
        }
    };
    let groups =
        match config.groups.as_deref().map(text) {
            Some(Some(Ok(list))) => split_groups(&list),
            Some(Some(Err(_))) => return refuse(
                &state,
                &address,
                Some(person.as_str()),
                "The university's sign-in service sent your groups in a form depot cannot read.",
                "the groups header is not visible ASCII",
            )
            .await,
            _ => Vec::new(),
        };
    let outcome = {
        let (depot, person, address) = (state.depot.clone(), person.clone(), address.clone());
        blocking(move || depot.sign_in(&person, &groups, &address)).await?
    };
    let record = match outcome {
        Ok(record) => record,
        Err(SignInFailure::NoRole { person }) => {
            // The event is the service's (auth.sign_in_failed, "no role"); the page is ours.
            let reference = session::random_id()[..10].to_string();
            tracing::info!(reference, %person, "signed in without a role");
            return refusal_page(
                &state,
                &format!(
                    "You signed in as {person}, but none of your directory groups gives you a \
                     role in depot. Ask your department's IT lead or the help desk to add you to \
                     your department's depot group."
                ),
                &reference,
            );
        }
    };
    let Some(caller) = person_caller(&record) else {
        return Err(ApiError::Forbidden("no role".into()).into());
    };
    let to = match caller.org() {
        Some(org) => format!("/orgs/{org}"),
        None => "/admin".into(),
    };
    let id = state
        .sessions
        .create(caller, Opener::Person(record.id.clone()));
    // The sign-in arrives at the end of redirects that began at the IdP, another site, so a
    // browser would not send the SameSite=Strict cookie on a redirect onwards: this page moves
    // on itself, a navigation of our own site that carries it.
    let roles = crate::identity::Roles {
        admin: record.admin,
        partner_of: record.orgs.iter().cloned().collect(),
    };
    let mut context = tera::Context::new();
    context.insert("landing", &to);
    context.insert("person", &record.id);
    context.insert("roles", &roles.describe());
    let page = state.render("signed_in.html", &context)?;
    Ok((
        [(
            header::SET_COOKIE,
            session::set_cookie(SESSION_COOKIE, &id, SESSION_LIFETIME, state.secure()),
        )],
        page,
    )
        .into_response())
}
