//! The agent's side of the device endpoints (CONTRACT 6): a blocking HTTP client that caps every
//! answer it reads and turns every status into a typed outcome.
//!
//! The server is not trusted to be well-behaved: a body larger than expected is cut off and
//! refused, JSON that does not parse is an error naming the endpoint, and the device token is
//! only ever sent to the server's own origin.

use super::{AgentError, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

/// A JSON answer larger than this is not one depot sends (a manifest lists every release of a
/// channel: a few hundred bytes each).
const MAX_JSON_BYTES: u64 = 4 * 1024 * 1024;
/// A `.minisig` file is four short lines.
const MAX_MINISIG_BYTES: u64 = 4 * 1024;
/// Enough of an error body to quote its message.
const MAX_ERROR_BYTES: u64 = 16 * 1024;

/// A depot server's base URL: `http(s)://authority[/path]`, kept without a trailing `/`, with no
/// query, fragment, white space or user info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    base: String,
    /// Length of `scheme://authority` in `base`.
    origin_len: usize,
}

impl ServerUrl {
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |reason: &str| AgentError::BadServerUrl {
            url: s.chars().take(200).collect(),
            reason: reason.to_string(),
        };
        let s = s.trim();
        let rest = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
            .ok_or_else(|| bad("must start with https:// or http://"))?;
        if s.len() > 2048 {
            return Err(bad("is longer than 2048 characters"));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("must not contain white space"));
        }
        if s.contains(['?', '#']) {
            return Err(bad("must not have a query or fragment"));
        }
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() {
            return Err(bad("has no host"));
        }
        if authority.contains('@') {
            return Err(bad("must not carry a user name or password"));
        }
        let base = s.trim_end_matches('/').to_string();
        let origin_len = s.len() - rest.len() + authority.len();
        Ok(Self { base, origin_len })
    }

    pub fn as_str(&self) -> &str {
        &self.base
    }

    fn origin(&self) -> &str {
        &self.base[..self.origin_len]
    }

    /// The URL of an API path such as `/v1/update-check`, below the base (which may carry a
    /// path prefix when depot sits behind a reverse proxy).
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    /// Resolves a URL the server sent: absolute, origin-relative (`/v1/...`) or relative to the
    /// base.
    pub fn resolve(&self, reference: &str) -> Result<String> {
        let bad = |reason: &str| AgentError::BadResponse {
            endpoint: "update-check".into(),
            reason: format!(
                "package URL {:?} {reason}",
                reference.chars().take(200).collect::<String>()
            ),
        };
        if reference.is_empty() || reference.len() > 2048 {
            return Err(bad("must be 1-2048 characters"));
        }
        if reference
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(bad("contains white space"));
        }
        if reference.starts_with("https://") || reference.starts_with("http://") {
            Ok(reference.to_string())
        } else if reference.starts_with("//") || reference.contains("://") {
            Err(bad("is not an http(s) URL"))
        } else if reference.starts_with('/') {
            Ok(format!("{}{reference}", self.origin()))
        } else {
            Ok(self.endpoint(reference))
        }
    }

    /// Whether `url` is on this server's origin, so that it may see the device token.
    pub fn same_origin(&self, url: &str) -> bool {
        url.strip_prefix(self.origin())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }
}

impl std::str::FromStr for ServerUrl {
    type Err = AgentError;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl std::fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.base)
    }
}

/// A status and a capped body.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json<T: DeserializeOwned>(&self, endpoint: &str) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| AgentError::BadResponse {
            endpoint: endpoint.to_string(),
            reason: format!("malformed JSON: {e}"),
        })
    }

    /// The `message` of the contract's error body, or a short excerpt of whatever came.
    pub fn error_message(&self) -> String {
        #[derive(serde::Deserialize)]
        struct Envelope {
            error: Inner,
        }
        #[derive(serde::Deserialize)]
        struct Inner {
            message: String,
        }
        let text = match serde_json::from_slice::<Envelope>(&self.body) {
            Ok(e) => e.error.message,
            Err(_) => String::from_utf8_lossy(&self.body).into_owned(),
        };
        let clean: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(300)
            .collect();
        if clean.trim().is_empty() {
            "no message".into()
        } else {
            clean.trim().to_string()
        }
    }
}

/// A connection to one depot server, optionally as an enrolled device.
#[derive(Clone)]
pub struct ServerClient {
    agent: ureq::Agent,
    base: ServerUrl,
    token: Option<String>,
}

impl std::fmt::Debug for ServerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl ServerClient {
    pub fn new(base: ServerUrl, token: Option<String>) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .user_agent(concat!("depot-agent/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .timeout_per_read(Some(Duration::from_secs(120)))
            .max_redirects(5)
            .redirect_auth_headers(ureq::config::RedirectAuthHeaders::SameHost)
            .build()
            .into();
        Self { agent, base, token }
    }

    pub fn base(&self) -> &ServerUrl {
        &self.base
    }

    /// POSTs a JSON body to an API path and reads a capped answer.
    pub fn post_json(&self, path: &str, body: &impl Serialize) -> Result<Answer> {
        let url = self.base.endpoint(path);
        let json = serde_json::to_vec(body).map_err(|e| AgentError::BadResponse {
            endpoint: path.to_string(),
            reason: format!("could not encode the request: {e}"),
        })?;
        let mut request = self
            .agent
            .post(&url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json");
        if let Some(token) = &self.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let response = request.send(&json[..]).map_err(transport(&url))?;
        read_capped(response, MAX_JSON_BYTES, &url)
    }

    /// GETs a URL the server sent; the token goes along only to the server's own origin.
    pub fn get(
        &self,
        url: &str,
        headers: &[(&str, String)],
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let mut request = self.agent.get(url);
        if let (Some(token), true) = (&self.token, self.base.same_origin(url)) {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        request.call().map_err(transport(url))
    }

    /// GETs a small text document, such as a `.minisig` file.
    pub fn get_minisig(&self, url: &str) -> Result<Answer> {
        let response = self.get(url, &[])?;
        read_capped(response, MAX_MINISIG_BYTES, url)
    }
}

/// Reads a body up to `max` bytes; an error status reads only enough to quote its message.
fn read_capped(
    mut response: ureq::http::Response<ureq::Body>,
    max: u64,
    url: &str,
) -> Result<Answer> {
    let status = response.status().as_u16();
    let limit = if (200..300).contains(&status) {
        max
    } else {
        MAX_ERROR_BYTES
    };
    let body = response
        .body_mut()
        .with_config()
        .limit(limit)
        .read_to_vec()
        .map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => AgentError::BadResponse {
                endpoint: url.to_string(),
                reason: format!("the answer is larger than {limit} bytes"),
            },
            other => transport(url)(other),
        })?;
    Ok(Answer { status, body })
}

pub fn transport(url: &str) -> impl FnOnce(ureq::Error) -> AgentError + '_ {
    move |source| AgentError::Network {
        url: url.to_string(),
        reason: source.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls() {
        let url = ServerUrl::parse("https://depot.example.edu/").unwrap();
        assert_eq!(url.as_str(), "https://depot.example.edu");
        assert_eq!(
            url.endpoint("/v1/update-check"),
            "https://depot.example.edu/v1/update-check"
        );
        let prefixed = ServerUrl::parse("http://proxy:8080/depot").unwrap();
        assert_eq!(
            prefixed.endpoint("v1/devices/enroll"),
            "http://proxy:8080/depot/v1/devices/enroll"
        );
        assert_eq!(
            prefixed.resolve("/v1/download/a/1.0.0/f.zip").unwrap(),
            "http://proxy:8080/v1/download/a/1.0.0/f.zip"
        );
        assert_eq!(
            prefixed.resolve("v1/download/x").unwrap(),
            "http://proxy:8080/depot/v1/download/x"
        );
        assert!(prefixed.same_origin("http://proxy:8080/anything"));
        assert!(!prefixed.same_origin("http://proxy:80801/anything"));
        assert!(!prefixed.same_origin("https://proxy:8080/anything"));
        assert!(!prefixed.same_origin("http://proxy:8080.evil.example/x"));
        for bad in [
            "",
            "ftp://x",
            "https://",
            "https://u:p@host",
            "https://h/a b",
            "https://h/?q",
            "depot.example.edu",
        ] {
            assert!(ServerUrl::parse(bad).is_err(), "{bad}");
        }
        for bad in ["", "javascript://x", "//evil.example/x", "a b"] {
            assert!(url.resolve(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_messages_are_short_and_clean() {
        let answer = Answer {
            status: 403,
            body: br#"{"error":{"code":"forbidden","message":"wrong\nregistration key"}}"#.to_vec(),
        };
        assert_eq!(answer.error_message(), "wrong registration key");
        let junk = Answer {
            status: 500,
            body: vec![b'x'; 10_000],
        };
        assert_eq!(junk.error_message().len(), 300);
        assert_eq!(
            Answer {
                status: 502,
                body: vec![]
            }
            .error_message(),
            "no message"
        );
    }
}
