//! Portal sign-in sessions: kept in server memory, named by a random id in an HttpOnly,
//! SameSite=Strict cookie, each with its own anti-forgery token.
//!
//! A session remembers the hash of the token that opened it, never the token itself; every use
//! checks that the token is still live, so revoking it (API or command line) ends the session.
//! Sessions expire after [`SESSION_LIFETIME`] and end at logout. This module must never log or
//! render a session id or a token.

use super::super::auth::Caller;
use crate::domain::Sha256;
use axum::http::{header, HeaderMap};
use rand::RngCore;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "depot_session";
/// The cookie that carries the sign-in form's anti-forgery token before there is a session.
pub const LOGIN_COOKIE: &str = "depot_login";
/// A session ends this long after sign-in, used or not.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// Sessions kept at most; beyond it the oldest is dropped (a flood of sign-ins cannot grow memory).
const MAX_SESSIONS: usize = 10_000;

/// What opened a session, checked again at every use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opener {
    /// A token (its SHA-256): the session ends when the token is revoked.
    Token(Sha256),
    /// A person signed in through single sign-on (their id): the session has the roles of the
    /// person's latest sign-in, and ends when they have none.
    Person(String),
}

/// A signed-in person. Its `Debug` leaves out the anti-forgery token.
#[derive(Clone)]
pub struct Session {
    pub caller: Caller,
    pub opener: Opener,
    /// The anti-forgery token every form of this session carries.
    pub csrf: String,
    /// A one-time message for the next page (what a save rebuilt).
    pub flash: Option<String>,
    created: Instant,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("caller", &self.caller)
            .field("opener", &self.opener)
            .field("csrf", &"<redacted>")
            .field("flash", &self.flash)
            .field("created", &self.created)
            .finish()
    }
}

/// The live sessions by id.
#[derive(Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
}

/// A fresh random identifier: 256 bits as hex.
pub fn random_id() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Equal strings, compared in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, Secure when people reach the portal over
/// HTTPS (see `PortalState::secure`).
pub fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> String {
    format!(
        "{name}={value}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{}",
        max_age.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// A `Set-Cookie` value that deletes the cookie.
pub fn clear_cookie(name: &str, secure: bool) -> String {
    set_cookie(name, "", Duration::ZERO, secure)
}

impl Sessions {
    /// Opens a session for `caller`; returns its id.
    pub fn create(&self, caller: Caller, opener: Opener) -> String {
        let id = random_id();
        let now = Instant::now();
        let mut sessions = self.lock();
        sessions.retain(|_, s| now.duration_since(s.created) < SESSION_LIFETIME);
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(k, _)| k.clone())
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            id.clone(),
            Session {
                caller,
                opener,
                csrf: random_id(),
                flash: None,
                created: now,
            },
        );
        id
    }

    /// The unexpired session with this id.
    pub fn get(&self, id: &str) -> Option<Session> {
        let mut sessions = self.lock();
        match sessions.get(id) {
            Some(s) if s.created.elapsed() < SESSION_LIFETIME => Some(s.clone()),
            Some(_) => {
                sessions.remove(id);
                None
            }
            None => None,
        }
    }

    /// Takes the session's one-time message.
    pub fn take_flash(&self, id: &str) -> Option<String> {
        self.lock().get_mut(id).and_then(|s| s.flash.take())
    }

    pub fn set_flash(&self, id: &str, message: String) {
        if let Some(s) = self.lock().get_mut(id) {
            s.flash = Some(message);
        }
    }

    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.by_id.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::auth::Principal;
    use axum::http::HeaderValue;

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; depot_session=abc"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "depot"), None);
    }

    #[test]
    fn sessions_open_flash_and_end() {
        let sessions = Sessions::default();
        let caller = Caller {
            principal: Principal::Admin,
            name: "a".into(),
        };
        let id = sessions.create(caller.clone(), Opener::Token(Sha256::digest(b"t")));
        let s = sessions.get(&id).unwrap();
        assert_eq!(s.caller, caller);
        assert_eq!(s.csrf.len(), 64);
        sessions.set_flash(&id, "built".into());
        assert_eq!(sessions.take_flash(&id).as_deref(), Some("built"));
        assert_eq!(sessions.take_flash(&id), None);
        sessions.remove(&id);
        assert!(sessions.get(&id).is_none());
        assert!(sessions.get("nope").is_none());
    }

    #[test]
    fn secrets_compare() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
        let c = set_cookie(SESSION_COOKIE, "x", SESSION_LIFETIME, true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.ends_with("Secure"));
    }
}
