//! Who is calling: bearer tokens turned into a [`Caller`], and the one place where access to an
//! org's resources is decided.
//!
//! A token is looked up by the SHA-256 of the presented secret, in a cache of the live tokens
//! that is reloaded whenever the metadata store's change counter moves (the CLI revokes tokens in
//! the same database while the server runs) or the server itself changes a token. Access rules:
//! an admin reaches everything; a partner or a device only its own org, and another org's
//! resources answer 404, exactly as unknown ones, so that their existence does not leak.
//! This module must never log or return a presented secret.

use super::error::{ApiError, ApiResult};
use super::AppState;
use crate::domain::{OrgCode, Sha256};
use crate::store::{MetaStore, Role, TokenRecord};
use axum::extract::{FromRef, FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::RwLock;

/// Longer presented secrets are refused before hashing; real ones are about 50 characters.
const MAX_SECRET_LEN: usize = 256;

/// What a caller may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// Desktop Engineering: everything.
    Admin,
    /// A divisional IT partner: its own org.
    Partner(OrgCode),
    /// An enrolled client machine: its own org's downloads and the update endpoints.
    Device { org: OrgCode, device_id: String },
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub principal: Principal,
    /// The actor name the audit log records: the token's name, or `device:<id>`.
    pub name: String,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        matches!(self.principal, Principal::Admin)
    }

    /// The org a partner or device is bound to; `None` for an admin.
    pub fn org(&self) -> Option<&OrgCode> {
        match &self.principal {
            Principal::Admin => None,
            Principal::Partner(org) | Principal::Device { org, .. } => Some(org),
        }
    }

    fn from_token(token: &TokenRecord) -> Option<Self> {
        let principal = match (token.role, &token.org) {
            (Role::Admin, _) => Principal::Admin,
            (Role::Partner, Some(org)) => Principal::Partner(org.clone()),
            // A partner token without an org cannot be created; treat a stored one as invalid.
            (Role::Partner, None) => return None,
        };
        Some(Caller {
            principal,
            name: token.name.clone(),
        })
    }
}

/// The caller may act on `org`'s resources; another org's are answered as unknown (404).
pub fn require_org_access(caller: &Caller, org: &OrgCode) -> ApiResult<()> {
    match caller.org() {
        None => Ok(()),
        Some(own) if own == org => Ok(()),
        Some(_) => Err(ApiError::not_found(format!("org {org}"))),
    }
}

/// Admin-only operations: a valid token without the role is 403.
pub fn require_admin(caller: &Caller) -> ApiResult<()> {
    if caller.is_admin() {
        Ok(())
    } else {
        Err(ApiError::Forbidden("this needs an admin token".into()))
    }
}

/// Partner-level operations on an org: admins and that org's partner. Devices are 403 on their
/// own org (they may download, not administer) and 404 on others.
pub fn require_org_admin(caller: &Caller, org: &OrgCode) -> ApiResult<()> {
    require_org_access(caller, org)?;
    match caller.principal {
        Principal::Device { .. } => Err(ApiError::Forbidden(
            "a device token cannot administer its org".into(),
        )),
        _ => Ok(()),
    }
}

/// The live tokens by secret hash, reloaded when the store changes.
#[derive(Default)]
pub struct TokenCache {
    snapshot: RwLock<Option<Snapshot>>,
}

struct Snapshot {
    counter: u64,
    by_hash: HashMap<Sha256, TokenRecord>,
}

impl TokenCache {
    /// The live token with this secret hash. Blocking: one cheap store call, plus a reload of
    /// the token list when the store has changed since the last one.
    pub fn find(
        &self,
        meta: &dyn MetaStore,
        hash: &Sha256,
    ) -> crate::store::Result<Option<TokenRecord>> {
        let counter = meta.change_counter()?;
        if let Some(snapshot) = self.read().as_ref() {
            if snapshot.counter == counter {
                return Ok(snapshot.by_hash.get(hash).cloned());
            }
        }
        let by_hash: HashMap<Sha256, TokenRecord> = meta
            .list_tokens()?
            .into_iter()
            .filter(|t| t.revoked_at.is_none())
            .map(|t| (t.secret_hash, t))
            .collect();
        let found = by_hash.get(hash).cloned();
        *self.write() = Some(Snapshot { counter, by_hash });
        Ok(found)
    }

    /// Forget everything: the server itself created or revoked a token, which the store's
    /// counter need not show to the process that made the change.
    pub fn invalidate(&self) {
        *self.write() = None;
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Option<Snapshot>> {
        self.snapshot.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Option<Snapshot>> {
        self.snapshot.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// The presented bearer secret: `None` without an `Authorization` header, 401 when it is not a
/// well-formed bearer credential.
pub(crate) fn bearer_secret(headers: &HeaderMap) -> ApiResult<Option<&str>> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || ApiError::Unauthorized("expected Authorization: Bearer <token>".into());
    let value = value.to_str().map_err(|_| bad())?;
    let (scheme, secret) = value.trim().split_once(' ').ok_or_else(bad)?;
    let secret = secret.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || secret.is_empty() || secret.len() > MAX_SECRET_LEN
    {
        return Err(bad());
    }
    Ok(Some(secret))
}

/// The caller the request's credentials name: `None` when it presents none, 401 when they are
/// unknown, revoked or malformed, 429 when they are unknown and its address has presented too
/// many bad ones lately (a valid token is never refused for its address).
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    address: Option<IpAddr>,
) -> ApiResult<Option<Caller>> {
    let Some(secret) = bearer_secret(headers)? else {
        return Ok(None);
    };
    // The token is looked up before the address's record is asked: a valid one always works, so
    // guesses from one host behind a NAT do not lock out the others.
    let found = if secret.starts_with(crate::service::fleet::DEVICE_TOKEN_PREFIX) {
        // Device tokens: the update hot path, answered from the fleet's memory when it is fresh.
        match state.depot.clone() {
            Some(depot) => {
                let device = match depot.device_by_token_in_memory(secret) {
                    Some(device) => device,
                    None => {
                        let secret = secret.to_string();
                        tokio::task::spawn_blocking(move || depot.device_by_token(&secret))
                            .await?
                            .map_err(ApiError::from)?
                    }
                };
                device.map(|d| Caller {
                    name: format!("device:{}", d.id),
                    principal: Principal::Device {
                        org: d.org,
                        device_id: d.id,
                    },
                })
            }
            None => None,
        }
    } else if secret.starts_with(crate::identity::PERSONAL_TOKEN_PREFIX) {
        // A person's token: the person's roles as their latest sign-in left them.
        super::routes::identity::personal_token_caller(state, secret).await?
    } else {
        let hash = Sha256::digest(secret.as_bytes());
        let shared = state.clone();
        tokio::task::spawn_blocking(move || shared.tokens.find(shared.meta.as_ref(), &hash))
            .await??
            .as_ref()
            .and_then(Caller::from_token)
    };
    match found {
        Some(caller) => Ok(Some(caller)),
        None => {
            let Some(address) = address else {
                return Err(ApiError::Unauthorized("unknown or revoked token".into()));
            };
            if state.auth_failures.is_blocked(address) {
                return Err(ApiError::RateLimited(
                    "too many bad tokens from this address; try again later".into(),
                ));
            }
            state.auth_failures.record_failure(address);
            Err(ApiError::Unauthorized("unknown or revoked token".into()))
        }
    }
}

/// The client's address: the peer, or the client a trusted proxy forwarded the request for.
fn peer(parts: &Parts) -> Option<IpAddr> {
    super::forwarded::client_ip(&parts.extensions)
}

impl<S> FromRequestParts<S> for Caller
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<Self> {
        let state = &AppState::from_ref(state);
        authenticate(state, &parts.headers, peer(parts))
            .await?
            .ok_or_else(|| {
                ApiError::Unauthorized("this needs a token: Authorization: Bearer <token>".into())
            })
    }
}

/// `Option<Caller>`: anonymous callers are `None`; bad credentials are still 401.
impl<S> OptionalFromRequestParts<S> for Caller
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<Option<Self>> {
        let state = &AppState::from_ref(state);
        let found = authenticate(state, &parts.headers, peer(parts)).await?;
        // A portal session stands in for a token on reads only (downloads from the pages).
        if found.is_none() && matches!(parts.method, Method::GET | Method::HEAD) {
            return Ok(parts.extensions.get::<SessionCaller>().map(|s| s.0.clone()));
        }
        Ok(found)
    }
}

/// Stands in for a bearer token on `GET`/`HEAD` of `/v1/download/...`: the caller of a live
/// portal session, put in the request's extensions by the portal's layer. It lives here, not in
/// the portal, so that authentication does not depend on the portal (which depends on it).
#[derive(Debug, Clone)]
pub struct SessionCaller(pub Caller);

/// The client's address as the audit log records it: the peer, or behind a trusted proxy the
/// client it forwarded the request for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAddr(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(ClientAddr(peer(parts).map_or_else(
            || "unknown".to_string(),
            |ip| ip.to_string(),
        )))
    }
}

/// The client's IP address, unformatted, for the update hot path: `None` when the connection's
/// address is not known (requests not from a socket, in tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(ClientIp(peer(parts)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn caller(principal: Principal) -> Caller {
        Caller {
            principal,
            name: "t".into(),
        }
    }

    #[test]
    fn org_access_matrix() {
        let physics = OrgCode::parse("physics").unwrap();
        let chemistry = OrgCode::parse("chemistry").unwrap();
        let admin = caller(Principal::Admin);
        let partner = caller(Principal::Partner(physics.clone()));
        let device = caller(Principal::Device {
            org: physics.clone(),
            device_id: "d1".into(),
        });
        assert!(require_org_access(&admin, &chemistry).is_ok());
        assert!(require_org_access(&partner, &physics).is_ok());
        assert!(matches!(
            require_org_access(&partner, &chemistry),
            Err(ApiError::NotFound(_))
        ));
        assert!(require_org_access(&device, &physics).is_ok());
        assert!(matches!(
            require_org_admin(&device, &physics),
            Err(ApiError::Forbidden(_))
        ));
        assert!(matches!(
            require_org_admin(&device, &chemistry),
            Err(ApiError::NotFound(_))
        ));
        assert!(matches!(
            require_admin(&partner),
            Err(ApiError::Forbidden(_))
        ));
        assert!(require_admin(&admin).is_ok());
    }

    #[test]
    fn bearer_parsing() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            bearer_secret(&h).map(|s| s.map(str::to_string))
        };
        assert_eq!(bearer_secret(&HeaderMap::new()).unwrap(), None);
        assert_eq!(with("Bearer abc").unwrap().as_deref(), Some("abc"));
        assert_eq!(with("bearer  abc ").unwrap().as_deref(), Some("abc"));
        for bad in [
            "Basic abc",
            "Bearer",
            "Bearer ",
            "abc",
            &format!("Bearer {}", "x".repeat(300)),
        ] {
            assert!(matches!(with(bad), Err(ApiError::Unauthorized(_))), "{bad}");
        }
    }
}
