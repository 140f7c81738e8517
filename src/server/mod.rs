//! `depot serve`: the HTTP API, downloads and metrics on axum, served by hyper with timeouts,
//! graceful shutdown and optional TLS (rustls).
//!
//! [`router`] builds the whole application from an [`AppState`]; [`serve`] runs it on a bound
//! listener until a shutdown future resolves, then lets in-flight requests (downloads included)
//! finish for a bounded time. Routes are registered through [`ApiRouter`], which takes the path
//! and methods from each handler's `#[utoipa::path]` annotation, so `/openapi.json` cannot drift
//! from the routes. Handlers run store work on the blocking pool. This module must never answer
//! bad input with a 5xx, and never serve a byte that did not come from a published blob or a
//! stored record.

pub mod auth;
pub mod body;
mod connections;
pub mod error;
pub mod extract;
pub mod forwarded;
pub mod hot_path;
pub mod incoming;
pub mod limit;
pub mod metrics;
mod per_address;
pub mod portal;
pub mod routes;

use crate::service::Depot;
use crate::store::{BlobStore, MetaStore};
use auth::TokenCache;
use axum::extract::{Request, State};
use axum::handler::Handler;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter};
use axum::Router;
use body::BlobMaps;
pub use connections::{serve, shutdown_signal, tls_acceptor};
use error::ApiError;
pub use hot_path::App;
use metrics::Metrics;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tower_http::trace::TraceLayer;
use utoipa::openapi::path::{HttpMethod, Paths};

/// Errors that stop the server from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot read {what} {path}: {source}")]
    ReadPem {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no {what}")]
    EmptyPem { what: &'static str, path: PathBuf },
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, ServerError>;

/// Limits and timeouts of the server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Time allowed to read a request's headers (slowloris).
    pub header_read_timeout: Duration,
    /// Time allowed to produce a response's headers. A download's body may stream for longer;
    /// release uploads, which must read their body first, are exempt.
    pub request_timeout: Duration,
    /// After shutdown is asked for, in-flight requests get this long to finish.
    pub shutdown_grace: Duration,
    /// Largest JSON (or other small) request body.
    pub max_body_bytes: usize,
    /// Time a request body may take to arrive, plus its length at [`incoming::MIN_BODY_RATE`].
    pub body_timeout: Duration,
    /// Largest release upload (all its parts together).
    pub max_upload_bytes: u64,
    /// Memory maps of blob files kept open.
    pub mapped_blobs: usize,
    /// Open connections served at once; further ones wait in the listen queue until one ends,
    /// so a flood of connections cannot exhaust file descriptors or memory.
    pub max_connections: usize,
    /// Of those, connections one client address (an IPv6 /64) may hold, and never more than
    /// half of them; trusted proxies are exempt (see [`per_address`]).
    pub max_connections_per_address: usize,
    /// When set, `/metrics` requires it as a bearer token and then labels downloads by org.
    pub metrics_token: Option<metrics::MetricsToken>,
    /// Proxies whose `X-Forwarded-For` names the client (see [`forwarded`]); none by default.
    pub trusted_proxies: forwarded::TrustedProxies,
    /// Threads serving connections, each owning the connections it is given (see
    /// [`connections`]); one per core by default.
    pub connection_workers: usize,
    pub tls: Option<TlsFiles>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(30),
            max_body_bytes: 2 * 1024 * 1024,
            body_timeout: Duration::from_secs(30),
            max_upload_bytes: 4 * 1024 * 1024 * 1024,
            mapped_blobs: body::DEFAULT_MAPPED_BLOBS,
            max_connections: 10_000,
            max_connections_per_address: per_address::DEFAULT_PER_ADDRESS,
            metrics_token: None,
            trusted_proxies: forwarded::TrustedProxies::default(),
            connection_workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            tls: None,
        }
    }
}

/// PEM files of a certificate chain and its private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Bad tokens an address may present per window before it is answered 429.
const AUTH_FAILURES_PER_WINDOW: u32 = 20;
const AUTH_FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Wrong registration keys an address may present per window before enrollment answers 429.
const ENROLL_FAILURES_PER_WINDOW: u32 = 10;
const ENROLL_FAILURE_WINDOW: Duration = Duration::from_secs(600);

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub meta: Arc<dyn MetaStore>,
    pub blobs: Arc<dyn BlobStore>,
    /// The operations behind the API; without it only downloads, releases and infrastructure
    /// endpoints are served.
    pub depot: Option<Arc<Depot>>,
    pub tokens: TokenCache,
    /// Addresses presenting bad tokens.
    pub auth_failures: limit::FailureLimiter,
    /// Addresses presenting wrong registration keys.
    pub enroll_failures: limit::FailureLimiter,
    pub maps: BlobMaps,
    pub metrics: Arc<Metrics>,
    pub options: ServerOptions,
    /// The OpenAPI document, serialized once when the router is built.
    pub openapi_json: std::sync::OnceLock<Arc<str>>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// A server of the whole API over `depot`.
    pub fn with_depot(depot: Arc<Depot>, options: ServerOptions) -> Self {
        let (meta, blobs) = (Arc::clone(depot.meta()), Arc::clone(depot.blobs()));
        Self::build(meta, blobs, Some(depot), options)
    }

    /// A read-only server of downloads and releases straight from the stores.
    pub fn new(
        meta: Arc<dyn MetaStore>,
        blobs: Arc<dyn BlobStore>,
        options: ServerOptions,
    ) -> Self {
        Self::build(meta, blobs, None, options)
    }

    fn build(
        meta: Arc<dyn MetaStore>,
        blobs: Arc<dyn BlobStore>,
        depot: Option<Arc<Depot>>,
        options: ServerOptions,
    ) -> Self {
        AppState(Arc::new(Shared {
            meta,
            blobs,
            depot,
            tokens: TokenCache::default(),
            enroll_failures: limit::FailureLimiter::new(
                ENROLL_FAILURES_PER_WINDOW,
                ENROLL_FAILURE_WINDOW,
            ),
            auth_failures: limit::FailureLimiter::new(
                AUTH_FAILURES_PER_WINDOW,
                AUTH_FAILURE_WINDOW,
            ),
            maps: BlobMaps::new(options.mapped_blobs),
            metrics: Arc::new(Metrics::default()),
            options,
            openapi_json: std::sync::OnceLock::new(),
        }))
    }

    /// Build durations go into `/metrics`; the service reports them here.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }
}

/// The state of the routes that change things: the shared state plus the service, which is
/// always there, so handlers never check for it.
#[derive(Clone)]
pub struct ApiState {
    pub app: AppState,
    pub depot: Arc<Depot>,
}

impl axum::extract::FromRef<ApiState> for AppState {
    fn from_ref(state: &ApiState) -> AppState {
        state.app.clone()
    }
}

/// Builds routes and their OpenAPI description together, from the handlers' `#[utoipa::path]`
/// annotations.
pub struct ApiRouter<S = AppState> {
    router: Router<S>,
    paths: Paths,
}

impl<S: Clone + Send + Sync + 'static> Default for ApiRouter<S> {
    fn default() -> Self {
        Self {
            router: Router::new(),
            paths: Paths::new(),
        }
    }
}

impl<S: Clone + Send + Sync + 'static> ApiRouter<S> {
    /// Serves `handler` at the path and methods its annotation `P` (the `__path_<handler>` type
    /// that `#[utoipa::path]` generates) declares.
    pub fn route<P, H, T>(mut self, handler: H) -> Self
    where
        P: utoipa::Path,
        H: Handler<T, S>,
        T: 'static,
    {
        let path = P::path();
        let methods = P::methods();
        let filter = methods
            .iter()
            .map(method_filter)
            .reduce(MethodFilter::or)
            .unwrap_or(MethodFilter::GET);
        self.router = self.router.route(&path, on(filter, handler));
        self.paths
            .add_path_operation(&path, methods, P::operation());
        self
    }

    /// Applies a layer to the routes added so far.
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: tower::Layer<axum::routing::Route> + Clone + Send + Sync + 'static,
        L::Service: tower::Service<Request, Error = std::convert::Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as tower::Service<Request>>::Response: IntoResponse + 'static,
        <L::Service as tower::Service<Request>>::Future: Send + 'static,
    {
        self.router = self.router.route_layer(layer);
        self
    }

    pub fn merge(mut self, other: ApiRouter<S>) -> Self {
        self.router = self.router.merge(other.router);
        for (path, item) in other.paths.paths {
            match self.paths.paths.get_mut(&path) {
                Some(existing) => merge_path_item(existing, item),
                None => {
                    self.paths.paths.insert(path, item);
                }
            }
        }
        self
    }

    /// Provides the state, giving a router that fits any other.
    pub fn with_state<S2>(self, state: S) -> ApiRouter<S2> {
        ApiRouter {
            router: self.router.with_state(state),
            paths: self.paths,
        }
    }
}

/// Two routers may serve different methods of one path.
fn merge_path_item(into: &mut utoipa::openapi::PathItem, from: utoipa::openapi::PathItem) {
    into.get = into.get.take().or(from.get);
    into.put = into.put.take().or(from.put);
    into.post = into.post.take().or(from.post);
    into.delete = into.delete.take().or(from.delete);
    into.options = into.options.take().or(from.options);
    into.head = into.head.take().or(from.head);
    into.patch = into.patch.take().or(from.patch);
    into.trace = into.trace.take().or(from.trace);
}

fn method_filter(method: &HttpMethod) -> MethodFilter {
    match method {
        HttpMethod::Get => MethodFilter::GET,
        HttpMethod::Post => MethodFilter::POST,
        HttpMethod::Put => MethodFilter::PUT,
        HttpMethod::Delete => MethodFilter::DELETE,
        HttpMethod::Options => MethodFilter::OPTIONS,
        HttpMethod::Head => MethodFilter::HEAD,
        HttpMethod::Patch => MethodFilter::PATCH,
        HttpMethod::Trace => MethodFilter::TRACE,
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "depot", description = "Department installer packages: downloads, orgs, releases, rollouts, tokens, audit."),
    components(schemas(
        error::ErrorBody, error::ErrorDetail,
        routes::public::AgentBinaryView,
        crate::service::views::OrgView, crate::service::views::PackageView,
        crate::service::views::ReleaseView, crate::service::views::PayloadView,
        crate::service::views::ChannelRolloutView, crate::service::views::YankView,
        crate::service::views::TokenView, crate::service::views::AuditView,
        routes::BuildSummary, routes::BuildFailureView, routes::orgs::NewOrg, routes::orgs::OrgUpdate, routes::orgs::OverlayView,
        routes::releases::PublishRequest, routes::releases::PublishView, routes::releases::RolloutRequest,
        routes::releases::YankRequest, routes::releases::ChannelRequest, routes::releases::ChannelView,
        crate::service::ChannelSummary,
        routes::tokens::NewTokenRequest, routes::tokens::CreatedToken,
        routes::identity::MeView, routes::identity::PersonalTokenView,
        routes::identity::NewPersonalTokenRequest, routes::identity::CreatedPersonalToken,
        routes::fleet::UpdateCheck, routes::fleet::DeviceReport,
        crate::service::fleet::EnrollRequest, crate::service::fleet::Enrolled,
        crate::service::fleet::UpdateAnswer, crate::service::fleet::Offer, crate::service::fleet::PackageOffer,
        crate::service::fleet::DeviceView, crate::service::fleet::UsageView, crate::service::fleet::RolloutView, crate::service::fleet::HoldView,
        crate::service::fleet::DeviceView, crate::service::fleet::UsageView, crate::service::fleet::RolloutView, crate::service::UserView,
    )),
    modifiers(&BearerScheme)
)]
struct ApiDoc;

struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
    }
}

/// The application: every route, its middleware and the OpenAPI document, with the update
/// check's own path in front (see [`hot_path`]).
pub fn router(state: AppState) -> App {
    let updates = state.depot.as_ref().map(|depot| ApiState {
        app: state.clone(),
        depot: Arc::clone(depot),
    });
    App::new(routes_with_layers(state), updates)
}

fn routes_with_layers(state: AppState) -> Router {
    let portal = portal::PortalState::for_server(&state);
    let (api, openapi) = api(&state, portal.as_ref());
    let api = match portal {
        Some(portal) => portal::mount(api, portal),
        None => api,
    };
    let json: Arc<str> = openapi.to_json().unwrap_or_default().into();
    // A router built again over the same state serves the same routes, so the first document
    // stays right.
    let _ = state.openapi_json.set(json);
    api.layer(axum::middleware::from_fn_with_state(
        state.clone(),
        incoming::guard,
    ))
    .layer(axum::middleware::from_fn_with_state(
        Arc::clone(&state.metrics),
        metrics::track,
    ))
    .layer(
        TraceLayer::new_for_http()
            .make_span_with(request_span)
            .on_response(
                tower_http::trace::DefaultOnResponse::new()
                    .level(tracing::Level::INFO)
                    .latency_unit(tower_http::LatencyUnit::Millis),
            ),
    )
    .with_state(state)
}

/// The routes and the OpenAPI document that describes exactly them.
pub fn api(
    state: &AppState,
    portal: Option<&portal::PortalState>,
) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    use routes::{audit, directory, downloads, fleet, identity, orgs, public, releases, tokens};
    let timeout = || axum::middleware::from_fn_with_state(state.clone(), request_timeout);
    let mut downloads = ApiRouter::<AppState>::default()
        .route::<downloads::__path_download, _, _>(downloads::download)
        .layer(timeout());
    if let Some(portal) = portal {
        downloads = portal::with_download_sessions(downloads, portal);
    }
    let mut all = ApiRouter::<AppState>::default()
        .route::<public::__path_healthz, _, _>(public::healthz)
        .route::<public::__path_metrics, _, _>(public::metrics)
        .route::<public::__path_openapi, _, _>(public::openapi)
        .route::<releases::__path_list_releases, _, _>(releases::list_releases)
        .route::<releases::__path_show_release, _, _>(releases::show_release)
        .layer(timeout())
        .merge(downloads);
    if let Some(depot) = &state.depot {
        let api_state = ApiState {
            app: state.clone(),
            depot: Arc::clone(depot),
        };
        let managed = ApiRouter::<ApiState>::default()
            .route::<public::__path_signing_key, _, _>(public::signing_key)
            .route::<public::__path_agent_binaries, _, _>(public::agent_binaries)
            .route::<orgs::__path_list_orgs, _, _>(orgs::list_orgs)
            .route::<orgs::__path_create_org, _, _>(orgs::create_org)
            .route::<orgs::__path_get_org, _, _>(orgs::get_org)
            .route::<orgs::__path_put_org, _, _>(orgs::put_org)
            .route::<orgs::__path_delete_org, _, _>(orgs::delete_org)
            .route::<orgs::__path_rotate_key, _, _>(orgs::rotate_key)
            .route::<orgs::__path_delete_file, _, _>(orgs::delete_file)
            .route::<orgs::__path_list_packages, _, _>(orgs::list_packages)
            .route::<releases::__path_rollout, _, _>(releases::rollout)
            .route::<releases::__path_yank, _, _>(releases::yank)
            .route::<releases::__path_put_channel, _, _>(releases::put_channel)
            .route::<releases::__path_list_channels, _, _>(releases::list_channels)
            .route::<tokens::__path_create_token, _, _>(tokens::create_token)
            .route::<tokens::__path_list_tokens, _, _>(tokens::list_tokens)
            .route::<tokens::__path_revoke_token, _, _>(tokens::revoke_token)
            .route::<identity::__path_me, _, _>(identity::me)
            .route::<identity::__path_create_personal_token, _, _>(identity::create_personal_token)
            .route::<identity::__path_revoke_personal_token, _, _>(identity::revoke_personal_token)
            .route::<audit::__path_query_audit, _, _>(audit::query_audit)
            .route::<fleet::__path_list_devices, _, _>(fleet::list_devices)
            .route::<fleet::__path_deactivate_device, _, _>(fleet::deactivate_device)
            .route::<fleet::__path_usage, _, _>(fleet::usage)
            .route::<directory::__path_list_users, _, _>(directory::list_users)
            .route::<fleet::__path_rollouts, _, _>(fleet::rollouts)
            .layer(timeout());
        // The device endpoints answer from memory or with one short store call: a timer per
        // request would cost the update hot path more than it could ever save.
        let devices = ApiRouter::<ApiState>::default()
            .route::<fleet::__path_enroll, _, _>(fleet::enroll)
            .route::<fleet::__path_update_check, _, _>(fleet::update_check)
            .route::<fleet::__path_device_event, _, _>(fleet::device_event);
        let overlay = ApiRouter::<ApiState>::default()
            .route::<orgs::__path_put_file, _, _>(orgs::put_file)
            .layer(incoming::BodyLimit::max(
                crate::org::MAX_OVERLAY_FILE_SIZE as u64,
            ))
            .layer(timeout());
        // Uploads read their whole body and publishing builds every org's packages: both may
        // rightly take longer than the request timeout.
        let long = ApiRouter::<ApiState>::default()
            .route::<releases::__path_upload_release, _, _>(releases::upload_release)
            .layer(incoming::BodyLimit::max(state.options.max_upload_bytes))
            .route::<releases::__path_publish, _, _>(releases::publish);
        all = all.merge(
            managed
                .merge(devices)
                .merge(overlay)
                .merge(long)
                .with_state(api_state),
        );
    }
    let mut openapi = <ApiDoc as utoipa::OpenApi>::openapi();
    openapi.paths = all.paths;
    let router = all
        .router
        .layer(incoming::BodyLimit::max(
            state.options.max_body_bytes as u64,
        ))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed);
    (router, openapi)
}

/// One span per request: method, path (never the query or headers, which may carry secrets)
/// and client address; the response line is logged at INFO inside it.
fn request_span<B>(request: &axum::http::Request<B>) -> tracing::Span {
    // Fields are only formatted when the span is enabled: at the default level nothing here
    // allocates.
    let address = forwarded::client_ip(request.extensions());
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        address = tracing::field::debug(address),
    )
}

async fn no_route() -> ApiError {
    ApiError::NotFound("no such endpoint".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Bounds the time to a response's headers; a download's body streams on afterwards.
async fn request_timeout(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(state.options.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout.into_response(),
    }
}
