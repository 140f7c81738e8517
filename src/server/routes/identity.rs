//! `/v1/me`: who the caller is, their roles, and a person's personal API tokens. A personal
//! token acts as its person with the roles of the person's latest sign-in; this file also turns
//! such a token, or a person, into a [`Caller`].

use super::blocking;
use crate::identity::{IdentityError, PERSONAL_TOKEN_PREFIX};
use crate::server::auth::{bearer_secret, Caller, ClientAddr, Principal};
use crate::server::error::{ApiError, ApiResult};
use crate::server::extract::{ApiJson, ApiPath};
use crate::server::{ApiState, AppState};
use crate::store::{PersonRecord, PersonalTokenRecord};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};

impl From<IdentityError> for ApiError {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::Invalid(m) => ApiError::Invalid(m),
            IdentityError::NotFound(m) => ApiError::NotFound(m),
            IdentityError::Config(m) => ApiError::Internal(m.into()),
            IdentityError::Service(e) => e.into(),
        }
    }
}

/// The caller a person is: an admin when a group made them one, else a partner of the first of
/// their orgs. `None` for a person with no role.
pub fn person_caller(person: &PersonRecord) -> Option<Caller> {
    let principal = if person.admin {
        Principal::Admin
    } else {
        Principal::Partner(person.orgs.first()?.clone())
    };
    Some(Caller {
        principal,
        name: person.id.clone(),
    })
}

/// The person a personal token acts for: `None` when it is unknown, revoked or expired.
async fn token_person(state: &AppState, secret: &str) -> ApiResult<Option<PersonRecord>> {
    let Some(depot) = state.depot.clone() else {
        return Ok(None);
    };
    let secret = secret.to_string();
    blocking(move || depot.person_of_token(&secret)).await
}

/// The caller a personal token names (see [`crate::server::auth::authenticate`]): `None` when
/// the token is not live, 403 when its person has no role any more.
pub async fn personal_token_caller(state: &AppState, secret: &str) -> ApiResult<Option<Caller>> {
    match token_person(state, secret).await? {
        None => Ok(None),
        Some(person) => person_caller(&person).map(Some).ok_or_else(|| {
            ApiError::Forbidden(format!(
                "{} has no role in depot since their last sign-in; their personal tokens act \
                 with no rights until a sign-in shows a group again",
                person.id
            ))
        }),
    }
}

/// The person behind the request's personal token, if it presents one.
async fn request_person(state: &AppState, headers: &HeaderMap) -> ApiResult<Option<PersonRecord>> {
    match bearer_secret(headers)? {
        Some(secret) if secret.starts_with(PERSONAL_TOKEN_PREFIX) => {
            token_person(state, secret).await
        }
        _ => Ok(None),
    }
}

fn rfc3339(at: i64) -> String {
    crate::service::views::rfc3339(at)
}

/// A personal token as listed: never its secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PersonalTokenView {
    pub id: String,
    pub name: String,
    pub created_at: String,
    pub expires_at: String,
    pub revoked_at: Option<String>,
}

impl From<&PersonalTokenRecord> for PersonalTokenView {
    fn from(t: &PersonalTokenRecord) -> Self {
        PersonalTokenView {
            id: t.id.clone(),
            name: t.name.clone(),
            created_at: rfc3339(t.created_at),
            expires_at: rfc3339(t.expires_at),
            revoked_at: t.revoked_at.map(rfc3339),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MeView {
    /// The audit log's name for the caller: a person's id, or an admin-made token's name.
    pub name: String,
    /// The person's id (campus id) when the caller is a person; `null` for admin-made tokens.
    pub person: Option<String>,
    /// `admin`, and `partner:{org}` for each org.
    pub roles: Vec<String>,
    /// The person's personal tokens, revoked and expired ones too.
    pub tokens: Vec<PersonalTokenView>,
}

fn roles_of(caller: &Caller, person: Option<&PersonRecord>) -> Vec<String> {
    match person {
        Some(p) => {
            let mut roles: Vec<String> = Vec::new();
            if p.admin {
                roles.push("admin".into());
            }
            roles.extend(p.orgs.iter().map(|o| format!("partner:{o}")));
            roles
        }
        None => match &caller.principal {
            Principal::Admin => vec!["admin".into()],
            Principal::Partner(org) => vec![format!("partner:{org}")],
            Principal::Device { org, .. } => vec![format!("device:{org}")],
        },
    }
}

#[utoipa::path(get, path = "/v1/me", tag = "identity",
    responses((status = 200, body = MeView), (status = 401, body = crate::server::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn me(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
) -> ApiResult<Json<MeView>> {
    let person = request_person(&state.app, &headers).await?;
    let tokens = match &person {
        Some(p) => {
            let (depot, id) = (state.depot.clone(), p.id.clone());
            blocking(move || depot.list_personal_tokens(&id)).await?
        }
        None => Vec::new(),
    };
    Ok(Json(MeView {
        name: caller.name.clone(),
        roles: roles_of(&caller, person.as_ref()),
        person: person.map(|p| p.id),
        tokens: tokens.iter().map(PersonalTokenView::from).collect(),
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPersonalTokenRequest {
    pub name: String,
    /// 1 to 365.
    pub days: u32,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedPersonalToken {
    /// The secret: shown this once, never again.
    pub token: String,
    #[serde(flatten)]
    pub record: PersonalTokenView,
}

fn only_people() -> ApiError {
    ApiError::Forbidden(
        "personal tokens belong to people who sign in through single sign-on; this caller is \
         not one"
            .into(),
    )
}

#[utoipa::path(post, path = "/v1/me/tokens", tag = "identity", request_body = NewPersonalTokenRequest,
    responses((status = 201, body = CreatedPersonalToken), (status = 403, body = crate::server::error::ErrorBody),
        (status = 422, body = crate::server::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_personal_token(
    State(state): State<ApiState>,
    _caller: Caller,
    ClientAddr(address): ClientAddr,
    headers: HeaderMap,
    ApiJson(request): ApiJson<NewPersonalTokenRequest>,
) -> ApiResult<(StatusCode, Json<CreatedPersonalToken>)> {
    let person = request_person(&state.app, &headers)
        .await?
        .ok_or_else(only_people)?;
    let depot = state.depot.clone();
    let new = blocking(move || {
        depot.create_personal_token(&person.id, &request.name, request.days, &address)
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedPersonalToken {
            token: new.secret,
            record: PersonalTokenView::from(&new.record),
        }),
    ))
}

#[utoipa::path(delete, path = "/v1/me/tokens/{id}", tag = "identity",
    params(("id" = String, Path, description = "the personal token's id")),
    responses((status = 204), (status = 403, body = crate::server::error::ErrorBody),
        (status = 404, body = crate::server::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke_personal_token(
    State(state): State<ApiState>,
    _caller: Caller,
    ClientAddr(address): ClientAddr,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let person = request_person(&state.app, &headers)
        .await?
        .ok_or_else(only_people)?;
    let depot = state.depot.clone();
    blocking(move || depot.revoke_personal_token(&person.id, &id, &address)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OrgCode;

    fn person(admin: bool, orgs: &[&str]) -> PersonRecord {
        PersonRecord {
            id: "jdoe".into(),
            admin,
            orgs: orgs.iter().map(|o| OrgCode::parse(o).unwrap()).collect(),
            signed_in_at: 0,
            address: "127.0.0.1".into(),
        }
    }

    #[test]
    fn a_person_is_the_caller_their_roles_make() {
        assert_eq!(
            person_caller(&person(true, &["physics"]))
                .unwrap()
                .principal,
            Principal::Admin
        );
        assert_eq!(
            person_caller(&person(false, &["chemistry", "physics"]))
                .unwrap()
                .principal,
            Principal::Partner(OrgCode::parse("chemistry").unwrap())
        );
        assert_eq!(person_caller(&person(false, &[])), None);
    }
}
