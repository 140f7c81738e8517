//! The update check's own path in front of the router.
//!
//! `POST /v1/update-check` is most of what a server answers: every client machine asks every few
//! hours, and a university's fleet is tens of thousands of them. Through the router, the routing,
//! the boxed per-route services, their extension maps and the layers cost a third of a check's
//! instructions, so [`App`] hands this one request straight to its handler. What the router's
//! layers do for every request is done here too, the same way: the request is counted in
//! `/metrics` under its route, logged in its span at INFO with its latency, and its body held to
//! the same limit and deadline ([`super::incoming`]); authentication, parsing and the answer are the route's own
//! ([`fleet::answer_update_check`]). A device token found in memory skips building a caller and
//! looking the device up a second time; anything else (no token, another kind, an unknown one, an
//! address refused for bad tokens, a manifest due for a signature) takes the route's steps.
//! Every other request, and this path with any other method, goes through the router. This module
//! must never answer a request differently from the route.

use super::auth::{authenticate, bearer_secret};
use super::error::{ApiError, ApiResult};
use super::extract::{parse_json, require_json};
use super::metrics::{Metrics, RequestCount};
use super::routes::fleet::{self, UpdateCheck};
use super::{forwarded, incoming, ApiState};
use crate::service::fleet::{CheckingDevice, DEVICE_TOKEN_PREFIX};
use axum::body::{Body, Bytes};
use axum::http::{Method, Request};
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

/// The route answered here.
pub const UPDATE_CHECK: &str = "/v1/update-check";

/// What `serve` runs: the router, and the update check's own path in front of it.
#[derive(Clone)]
pub struct App {
    router: Router,
    /// `None` when the server has no depot (downloads only): the router answers everything.
    updates: Option<UpdateChecks>,
}

#[derive(Clone)]
struct UpdateChecks {
    state: ApiState,
    /// Most checks are answered 200: their count, found once.
    answered: Arc<RequestCount>,
}

impl App {
    pub(super) fn new(router: Router, updates: Option<ApiState>) -> Self {
        let updates = updates.map(|state| UpdateChecks {
            answered: state.app.metrics.request_counter("POST", UPDATE_CHECK, 200),
            state,
        });
        App { router, updates }
    }

    /// The router alone, as every request but update checks sees it.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Answers one request. Never fails: errors are responses.
    pub async fn handle<B>(&self, request: Request<B>) -> Response
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        match &self.updates {
            Some(checks)
                if request.method() == Method::POST && request.uri().path() == UPDATE_CHECK =>
            {
                update_check(checks, request).await
            }
            _ => {
                let result =
                    tower::ServiceExt::oneshot(self.router.clone(), request.map(Body::new)).await;
                match result {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            }
        }
    }
}

/// The route's layers, unrolled: metrics, span and response log, body limit.
async fn update_check<B>(checks: &UpdateChecks, request: Request<B>) -> Response
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let state = &checks.state;
    let metrics: &Metrics = &state.app.metrics;
    metrics.request_started();
    // Spans cost formatting only when enabled, which at the default level they are not.
    let span = if tracing::enabled!(tracing::Level::INFO) {
        super::request_span(&request)
    } else {
        tracing::Span::none()
    };
    let started = (!span.is_disabled()).then(Instant::now);
    let answered = if started.is_some() {
        answer(state, request).instrument(span.clone()).await
    } else {
        answer(state, request).await
    };
    let response = answered.unwrap_or_else(IntoResponse::into_response);
    let status = response.status().as_u16();
    if status == 200 {
        metrics.request_finished_on(&checks.answered);
    } else {
        metrics.request_finished("POST", UPDATE_CHECK, status);
    }
    if let Some(started) = started {
        // As tower-http's `DefaultOnResponse` words it for every other route.
        tracing::info!(
            parent: &span,
            latency = format_args!("{} ms", started.elapsed().as_millis()),
            status,
            "finished processing request"
        );
    }
    response
}

/// The same steps, in the same order, as the route's extractors: the caller, the client's
/// address, then the JSON body.
async fn answer<B>(state: &ApiState, request: Request<B>) -> ApiResult<Response>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let (parts, body) = request.into_parts();
    let address = forwarded::client_ip(&parts.extensions);
    if let Some(device) = device_checking_in(state, &parts.headers) {
        // Authentication would succeed: the rest, as the route does it, without a caller.
        require_json(&parts.headers)?;
        let body = read_body(state, &parts.headers, body).await?;
        let check: UpdateCheck = parse_json(&body)?;
        let (platform, current) = fleet::parse_check(&check)?;
        if let Some(answer) = state
            .depot
            .update_check_of(&device, platform, current, address)
        {
            return Ok(fleet::answer_json(&answer?));
        }
        // The manifest is due for a signature: the route's way, with the store.
        let caller = authenticate(&state.app, &parts.headers, address)
            .await?
            .ok_or_else(needs_token)?;
        return fleet::answer_update_check(state.clone(), &caller, address, check).await;
    }
    let caller = authenticate(&state.app, &parts.headers, address)
        .await?
        .ok_or_else(needs_token)?;
    require_json(&parts.headers)?;
    let body = read_body(state, &parts.headers, body).await?;
    let check: UpdateCheck = parse_json(&body)?;
    fleet::answer_update_check(state.clone(), &caller, address, check).await
}

fn needs_token() -> ApiError {
    ApiError::Unauthorized("this needs a token: Authorization: Bearer <token>".into())
}

/// The device a well-formed device token names, found in memory: then authentication cannot
/// fail (a valid token is never refused for its address). `None` sends the request the route's
/// way, which answers every other case.
fn device_checking_in(state: &ApiState, headers: &axum::http::HeaderMap) -> Option<CheckingDevice> {
    let secret = bearer_secret(headers).ok()??;
    if !secret.starts_with(DEVICE_TOKEN_PREFIX) {
        return None;
    }
    state.depot.device_checking_in(secret)
}

/// The whole body, under the route's limit and deadline (see [`incoming`]).
async fn read_body<B>(
    state: &ApiState,
    headers: &axum::http::HeaderMap,
    body: B,
) -> ApiResult<Bytes>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let options = &state.app.options;
    incoming::read_limited(headers, body, options.max_body_bytes, options.body_timeout).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Channel, OrgCode, Platform, Version};
    use crate::service::fleet::EnrollRequest;
    use crate::service::{Actor, Depot, NoProgress, PayloadSource};
    use crate::store::Role;
    use axum::extract::ConnectInfo;
    use axum::http::header;
    use http_body_util::BodyExt;
    use std::sync::Arc;

    fn actor() -> Actor {
        Actor {
            name: "test".into(),
            address: "local".into(),
        }
    }

    /// A depot with one org, a release at 100% and a newer one at 50%, and two devices.
    fn fleet(dir: &std::path::Path) -> (App, Vec<String>, String) {
        let settings = crate::demo::settings_for(dir, "http://127.0.0.1:1");
        crate::setup::init(&settings, false).unwrap();
        let depot = Arc::new(Depot::open(&settings).unwrap());
        let org = OrgCode::parse("physics").unwrap();
        let config = crate::org::OrgConfig::new("Physics").unwrap();
        let (org, _) = depot.add_org(&actor(), &org, config).unwrap();
        for (version, percent) in [("1.0.0", 100), ("1.1.0", 50)] {
            let path = dir.join(format!("client-{version}.tgz"));
            std::fs::write(&path, version.repeat(1000)).unwrap();
            let version = Version::parse(version).unwrap();
            let source = PayloadSource::from_path(Platform::LinuxX86_64, path).unwrap();
            depot
                .add_release(&actor(), &version, &[source], "notes")
                .unwrap();
            depot
                .publish(&actor(), &version, &Channel::stable(), percent, &NoProgress)
                .unwrap();
        }
        let devices = (0..6)
            .map(|i| {
                let request = EnrollRequest {
                    registration_key: org.registration_key.to_string(),
                    hostname: format!("host-{i}"),
                    platform: "linux-x86_64".into(),
                    os_version: String::new(),
                    user: String::new(),
                };
                depot.enroll(&request, "127.0.0.1").unwrap().device_token
            })
            .collect();
        let partner = depot
            .create_token(&actor(), Role::Partner, Some(org.code.clone()), None)
            .unwrap()
            .secret;
        let options = super::super::ServerOptions {
            max_body_bytes: 1024,
            ..Default::default()
        };
        let app = super::super::router(super::super::AppState::with_depot(depot, options));
        (app, devices, partner)
    }

    fn request(token: Option<&str>, content_type: Option<&str>, body: &str) -> Request<Body> {
        let mut builder = Request::post(UPDATE_CHECK).extension(ConnectInfo(
            std::net::SocketAddr::from(([127, 0, 0, 9], 4000)),
        ));
        if let Some(token) = token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(content_type) = content_type {
            builder = builder.header(header::CONTENT_TYPE, content_type);
        }
        builder.body(Body::from(body.to_string())).unwrap()
    }

    async fn status_and_body(response: Response) -> (u16, Bytes) {
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, body)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answers_exactly_as_the_route_does() {
        let dir = tempfile::tempdir().unwrap();
        let (app, devices, partner) = fleet(dir.path());
        let json = Some("application/json");
        let check =
            |current: &str| format!(r#"{{"platform":"linux-x86_64","current_version":{current}}}"#);
        let mut cases: Vec<(Option<&str>, Option<&str>, String)> = Vec::new();
        for device in &devices {
            cases.push((Some(device), json, check("\"1.0.0\"")));
            cases.push((Some(device), json, check("null")));
        }
        let device = Some(devices[0].as_str());
        cases.extend([
            (device, json, check("\"1.1.0\"")),
            (None, json, check("null")),
            (Some("depot_dev_unknown"), json, check("null")),
            (Some(partner.as_str()), json, check("null")),
            (device, None, check("null")),
            (device, Some("text/plain"), check("null")),
            (device, json, "{".into()),
            (device, json, r#"{"platform":"beos"}"#.into()),
            (
                device,
                json,
                r#"{"platform":"linux-x86_64","extra":1}"#.into(),
            ),
            (
                device,
                json,
                format!(r#"{{"platform":"{}"}}"#, "x".repeat(2000)),
            ),
        ]);
        let mut offers = 0;
        for (token, content_type, body) in &cases {
            let own = status_and_body(app.handle(request(*token, *content_type, body)).await).await;
            let routed = tower::ServiceExt::oneshot(
                app.router().clone(),
                request(*token, *content_type, body),
            )
            .await
            .unwrap();
            let routed = status_and_body(routed).await;
            assert_eq!(own, routed, "{token:?} {content_type:?} {body}");
            offers += usize::from(own.0 == 200 && !own.1.starts_with(br#"{"offer":null"#));
        }
        // The cases are not all alike: offers, no offers, and (below) every kind of refusal.
        assert!(offers > 0 && offers < cases.len());
        let metrics = app
            .updates
            .as_ref()
            .unwrap()
            .state
            .app
            .metrics
            .render(crate::server::metrics::Labels::Public);
        for status in [200, 401, 403, 413, 415, 400, 422] {
            assert!(
                metrics.contains(&format!(
                    "depot_http_requests_total{{method=\"POST\",route=\"/v1/update-check\",status=\"{status}\"}}"
                )),
                "{status} not counted:\n{metrics}"
            );
        }
        assert!(metrics.contains("depot_http_requests_in_flight 0"));

        // An address refused for bad tokens (issue 13 item 5) is refused further bad tokens,
        // while a good token still works, alike on both paths.
        let good = || request(device, json, &check("null"));
        let wrong = || request(Some("depot_dev_wrong"), json, &check("null"));
        for _ in 0..1000 {
            let bad = app
                .handle(request(Some("depot_dev_wrong"), json, &check("null")))
                .await;
            if bad.status() == 429 {
                break;
            }
        }
        let own = status_and_body(app.handle(good()).await).await;
        let routed = tower::ServiceExt::oneshot(app.router().clone(), good())
            .await
            .unwrap();
        assert_eq!(own.0, 200);
        assert_eq!(own, status_and_body(routed).await);
        let own = status_and_body(app.handle(wrong()).await).await;
        let routed = tower::ServiceExt::oneshot(app.router().clone(), wrong())
            .await
            .unwrap();
        assert_eq!(own.0, 429);
        assert_eq!(own, status_and_body(routed).await);
    }
}
