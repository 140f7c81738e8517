//! An org's overlay files on its page: upload one (multipart form) and remove one, through
//! `Depot::put_overlay` and `Depot::delete_overlay`, the calls behind
//! `PUT|DELETE /v1/orgs/{org}/files/{name}`, with the same name rule ([`EntryName`]) and the
//! same size limit. Each change rebuilds the org's packages and says what it rebuilt. This
//! module must never write a file that did not pass both checks, nor receive a forged upload's
//! file before refusing it.

use super::pages::{blocking, org_code, render_org};
use super::view::{human_size, rebuilt};
use super::{field_bytes, require_org, small_text, PortalError, PortalState, Result, SignedIn};
use crate::domain::{EntryName, OrgCode};
use crate::org::MAX_OVERLAY_FILE_SIZE;
use crate::server::auth::ClientAddr;
use crate::server::error::ApiError;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

/// The upload form's body may exceed the file's limit by this much: the anti-forgery token,
/// the name field and the multipart framing.
pub const FORM_OVERHEAD: usize = 16 * 1024;

/// What the upload form asked for.
struct Upload {
    name: EntryName,
    bytes: Vec<u8>,
}

/// Reads the upload form after its anti-forgery token: `file` (at most the API's limit) and
/// an optional `name`, the file's own name when empty. Browsers send a file's base name only,
/// so a name with folders (`custom/logo.png`) comes through the `name` field.
async fn read_upload(mut multipart: Multipart) -> Result<Upload> {
    let mut name = String::new();
    let mut file: Option<(String, Vec<u8>)> = None;
    while let Some(field) = multipart.next_field().await.map_err(ApiError::from)? {
        match field.name().unwrap_or_default() {
            "name" => name = small_text(field, "name", 256).await?.trim().to_string(),
            "file" => {
                let file_name = field.file_name().unwrap_or_default().to_string();
                let bytes = field_bytes(field, MAX_OVERLAY_FILE_SIZE, || {
                    format!(
                        "the file is larger than {}, the limit of an overlay file",
                        human_size(MAX_OVERLAY_FILE_SIZE as u64)
                    )
                })
                .await?;
                file = Some((file_name, bytes));
            }
            other => return Err(ApiError::Invalid(format!("unknown form field {other:?}")).into()),
        }
    }
    let (file_name, bytes) = match file {
        Some((file_name, bytes)) if !file_name.is_empty() || !bytes.is_empty() => {
            (file_name, bytes)
        }
        _ => return Err(ApiError::Invalid("choose a file to upload".into()).into()),
    };
    let name = if name.is_empty() { file_name } else { name };
    Ok(Upload {
        name: EntryName::parse(&name)?,
        bytes,
    })
}

/// A mistake in the form (a bad name, a file too large) is shown on the org's page with the
/// matching status; anything else answers as usual.
async fn on_page(
    state: &PortalState,
    me: &SignedIn,
    code: OrgCode,
    result: Result<Response>,
) -> Result<Response> {
    match result {
        Err(PortalError::Api(e @ (ApiError::Invalid(_) | ApiError::TooLarge(_)))) => {
            let page = render_org(state, me, code, None, Some(e.to_string())).await?;
            Ok((e.status(), page).into_response())
        }
        other => other,
    }
}

/// `POST /orgs/{org}/files` (multipart): stores an overlay file and rebuilds the packages.
pub async fn upload(
    State(state): State<PortalState>,
    ClientAddr(address): ClientAddr,
    headers: HeaderMap,
    Path(code): Path<String>,
    multipart: std::result::Result<Multipart, MultipartRejection>,
) -> Result<Response> {
    let me = state.require_signed_in(&headers).await?;
    let code = org_code(&code)?;
    require_org(me.caller(), &code)?;
    let mut multipart = multipart.map_err(ApiError::from)?;
    me.check_csrf_first(&mut multipart).await?;
    let result = async {
        let Upload { name, bytes } = read_upload(multipart).await?;
        let depot = state.depot.clone();
        let actor = me.actor(address);
        let (org, file) = (code.clone(), name.clone());
        let size = bytes.len() as u64;
        let report = blocking(move || depot.put_overlay(&actor, &org, &file, &bytes)).await?;
        state.app.metrics.observe_build(report.elapsed);
        state.sessions.set_flash(
            &me.id,
            format!(
                "Stored overlay file {name} ({}). {}",
                human_size(size),
                rebuilt(&report)
            ),
        );
        Ok(Redirect::to(&format!("/orgs/{code}")).into_response())
    }
    .await;
    on_page(&state, &me, code, result).await
}

#[derive(Default, Deserialize)]
pub struct RemoveForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

/// `POST /orgs/{org}/files/remove`: removes an overlay file and rebuilds the packages.
pub async fn remove(
    State(state): State<PortalState>,
    ClientAddr(address): ClientAddr,
    headers: HeaderMap,
    Path(code): Path<String>,
    body: std::result::Result<Form<RemoveForm>, FormRejection>,
) -> Result<Response> {
    let me = state.require_signed_in(&headers).await?;
    let code = org_code(&code)?;
    require_org(me.caller(), &code)?;
    // An unreadable body carries no token: refused as a forgery.
    let RemoveForm { csrf, name } = body.map(|Form(f)| f).unwrap_or_default();
    me.check_csrf(&csrf)?;
    let result = async {
        let name = EntryName::parse(name.trim())?;
        let depot = state.depot.clone();
        let actor = me.actor(address);
        let (org, file) = (code.clone(), name.clone());
        let report = blocking(move || depot.delete_overlay(&actor, &org, &file)).await?;
        state.app.metrics.observe_build(report.elapsed);
        state.sessions.set_flash(
            &me.id,
            format!("Removed overlay file {name}. {}", rebuilt(&report)),
        );
        Ok(Redirect::to(&format!("/orgs/{code}")).into_response())
    }
    .await;
    on_page(&state, &me, code, result).await
}
