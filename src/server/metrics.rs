//! Counters for `/metrics`, in the Prometheus text exposition format.
//!
//! Requests are labelled by route template (`/v1/download/{org}/{version}/{file}`), never by the
//! raw path, so that a scanner requesting random URLs cannot grow the label set; unmatched paths
//! share one label. Nothing here blocks or allocates per byte: the bytes-served counter is a
//! single atomic the download body adds to. Counters every request touches are [`Sharded`]:
//! with connections served on every core, one shared atomic would bounce between them.
//!
//! `/metrics` is public, and the API hides whether another org exists: so downloads are shown
//! by platform alone, unless the operator configured a [`MetricsToken`], which the scraper
//! then presents and is shown the counts by org too.

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// Upper bounds, in seconds, of the build-duration histogram buckets.
const BUILD_BUCKETS: [f64; 10] = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

#[derive(Default)]
pub struct Metrics {
    /// By route template, then by method and status: counting a request that was seen before
    /// takes two read locks and an atomic add, and allocates nothing.
    requests: RwLock<HashMap<Box<str>, RouteCounts>>,
    in_flight: Sharded,
    bytes_served: Arc<AtomicU64>,
    downloads: Mutex<BTreeMap<(String, String), u64>>,
    builds: Mutex<Histogram>,
}

/// A route's counts, by method and status.
type RouteCounts = RwLock<Vec<Arc<RequestCount>>>;

/// The count of one method, route and status, which a busy route may hold on to (see
/// [`Metrics::request_counter`]) to count without looking it up.
pub struct RequestCount {
    method: &'static str,
    status: u16,
    count: Sharded,
}

impl RequestCount {
    pub fn add_one(&self) {
        self.count.add(1);
    }
}

/// Shards of a counter per thread, each on a cache line of its own; the value is their sum.
#[derive(Default)]
struct Sharded {
    shards: [Padded; SHARDS],
}

const SHARDS: usize = 8;

#[derive(Default)]
#[repr(align(64))]
struct Padded(AtomicI64);

impl Sharded {
    fn add(&self, n: i64) {
        thread_local! {
            // Threads take shards in turn, so a handful of busy threads never share one.
            static SHARD: usize = {
                static NEXT: AtomicUsize = AtomicUsize::new(0);
                NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS
            };
        }
        let shard = SHARD.try_with(|s| *s).unwrap_or(0);
        self.shards[shard].0.fetch_add(n, Ordering::Relaxed);
    }

    fn get(&self) -> i64 {
        self.shards
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .sum()
    }
}

#[derive(Default)]
struct Histogram {
    /// Cumulative counts are computed when rendering; these are per bucket, plus +Inf last.
    buckets: [u64; BUILD_BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl Metrics {
    /// The counter a download body adds the bytes it hands to the connection to.
    pub fn bytes_served(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.bytes_served)
    }

    /// A package download started (200 or 206 to a GET).
    pub fn count_download(&self, org: &str, platform: &str) {
        *lock(&self.downloads)
            .entry((org.to_string(), platform.to_string()))
            .or_default() += 1;
    }

    /// A package build finished; the service reports its duration here.
    pub fn observe_build(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let mut h = lock(&self.builds);
        let bucket = BUILD_BUCKETS
            .iter()
            .position(|&le| seconds <= le)
            .unwrap_or(BUILD_BUCKETS.len());
        h.buckets[bucket] += 1;
        h.sum += seconds;
        h.count += 1;
    }

    /// A request is being handled (the in-flight gauge).
    pub fn request_started(&self) {
        self.in_flight.add(1);
    }

    /// A request was answered: counted by method, route template and status.
    pub fn request_finished(&self, method: &'static str, route: &str, status: u16) {
        self.in_flight.add(-1);
        self.count_request(method, route, status);
    }

    /// A request counted on `counter` (from [`Metrics::request_counter`]) was answered.
    pub fn request_finished_on(&self, counter: &RequestCount) {
        self.in_flight.add(-1);
        counter.add_one();
    }

    fn count_request(&self, method: &'static str, route: &str, status: u16) {
        {
            let routes = read(&self.requests);
            if let Some(counts) = routes.get(route) {
                if let Some(c) = read(counts)
                    .iter()
                    .find(|c| c.method == method && c.status == status)
                {
                    c.add_one();
                    return;
                }
            }
        }
        self.request_counter(method, route, status).add_one();
    }

    /// The counter of one method, route and status, for a route that counts without looking
    /// it up each time. A count of zero is not shown.
    pub fn request_counter(
        &self,
        method: &'static str,
        route: &str,
        status: u16,
    ) -> Arc<RequestCount> {
        let mut routes = self.requests.write().unwrap_or_else(|p| p.into_inner());
        let counts = routes.entry(route.into()).or_default();
        let mut counts = counts.write().unwrap_or_else(|p| p.into_inner());
        match counts
            .iter()
            .find(|c| c.method == method && c.status == status)
        {
            Some(c) => Arc::clone(c),
            None => {
                let c = Arc::new(RequestCount {
                    method,
                    status,
                    count: Sharded::default(),
                });
                counts.push(Arc::clone(&c));
                c
            }
        }
    }

    /// Request counts in a stable order: method, route, status.
    fn request_counts(&self) -> BTreeMap<(&'static str, String, u16), u64> {
        let routes = read(&self.requests);
        let mut sorted = BTreeMap::new();
        for (route, counts) in routes.iter() {
            for c in read(counts).iter() {
                let n = c.count.get();
                if n > 0 {
                    sorted.insert((c.method, route.to_string(), c.status), n as u64);
                }
            }
        }
        sorted
    }

    /// The exposition text; downloads labelled by org only with `Labels::WithOrgs`.
    pub fn render(&self, labels: Labels) -> String {
        let mut out = String::with_capacity(4096);
        let _ = self.write_to(&mut out, labels);
        out
    }

    fn write_to(&self, out: &mut String, labels: Labels) -> std::fmt::Result {
        writeln!(out, "# HELP depot_http_requests_total HTTP requests answered, by route template and status.")?;
        writeln!(out, "# TYPE depot_http_requests_total counter")?;
        for ((method, route, status), n) in self.request_counts() {
            writeln!(
                out,
                "depot_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                escape(&route)
            )?;
        }
        writeln!(
            out,
            "# HELP depot_http_requests_in_flight HTTP requests being handled."
        )?;
        writeln!(out, "# TYPE depot_http_requests_in_flight gauge")?;
        writeln!(
            out,
            "depot_http_requests_in_flight {}",
            self.in_flight.get()
        )?;
        writeln!(
            out,
            "# HELP depot_bytes_served_total Download body bytes handed to connections."
        )?;
        writeln!(out, "# TYPE depot_bytes_served_total counter")?;
        writeln!(
            out,
            "depot_bytes_served_total {}",
            self.bytes_served.load(Ordering::Relaxed)
        )?;
        let downloads = lock(&self.downloads);
        match labels {
            Labels::WithOrgs => {
                writeln!(
                    out,
                    "# HELP depot_downloads_total Package downloads started, by org and platform."
                )?;
                writeln!(out, "# TYPE depot_downloads_total counter")?;
                for ((org, platform), n) in downloads.iter() {
                    writeln!(
                        out,
                        "depot_downloads_total{{org=\"{org}\",platform=\"{platform}\"}} {n}"
                    )?;
                }
            }
            Labels::Public => {
                writeln!(
                    out,
                    "# HELP depot_downloads_total Package downloads started, by platform."
                )?;
                writeln!(out, "# TYPE depot_downloads_total counter")?;
                let mut by_platform = BTreeMap::<&str, u64>::new();
                for ((_, platform), n) in downloads.iter() {
                    *by_platform.entry(platform).or_default() += n;
                }
                for (platform, n) in by_platform {
                    writeln!(out, "depot_downloads_total{{platform=\"{platform}\"}} {n}")?;
                }
            }
        }
        drop(downloads);
        let h = lock(&self.builds);
        writeln!(
            out,
            "# HELP depot_build_duration_seconds Duration of package builds."
        )?;
        writeln!(out, "# TYPE depot_build_duration_seconds histogram")?;
        let mut cumulative = 0;
        for (i, le) in BUILD_BUCKETS.iter().enumerate() {
            cumulative += h.buckets[i];
            writeln!(
                out,
                "depot_build_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}"
            )?;
        }
        writeln!(
            out,
            "depot_build_duration_seconds_bucket{{le=\"+Inf\"}} {}",
            h.count
        )?;
        writeln!(out, "depot_build_duration_seconds_sum {}", h.sum)?;
        writeln!(out, "depot_build_duration_seconds_count {}", h.count)
    }
}

/// Which labels a rendering may show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Labels {
    /// For anyone: nothing that names an org.
    Public,
    /// For the holder of the metrics token: downloads by org as well.
    WithOrgs,
}

/// The bearer token `/metrics` requires when configured (`[metrics] token_file`). Its `Debug`
/// leaves the secret out.
#[derive(Clone)]
pub struct MetricsToken(Arc<str>);

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsToken(<redacted>)")
    }
}

/// Why the metrics token could not be had.
#[derive(Debug, thiserror::Error)]
pub enum MetricsTokenError {
    #[error("cannot read the metrics token file {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the metrics token file {path} must hold one token of 16 to 4096 printable characters"
    )]
    Malformed { path: std::path::PathBuf },
}

impl MetricsToken {
    /// The token: the file's text without surrounding whitespace.
    pub fn parse(text: &str) -> Option<Self> {
        let token = text.trim();
        ((16..=4096).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_graphic()))
            .then(|| MetricsToken(token.into()))
    }

    /// Reads the token from `path` (blocking).
    pub fn read(path: &std::path::Path) -> Result<Self, MetricsTokenError> {
        let text = std::fs::read_to_string(path).map_err(|source| MetricsTokenError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).ok_or_else(|| MetricsTokenError::Malformed {
            path: path.to_path_buf(),
        })
    }

    /// Whether the request presents this token as `Authorization: Bearer`, compared in time
    /// that does not depend on where a wrong one differs.
    pub fn presented_in(&self, headers: &axum::http::HeaderMap) -> bool {
        let presented = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        presented.is_some_and(|p| {
            p.len() == self.0.len()
                && p.bytes()
                    .zip(self.0.bytes())
                    .fold(0u8, |acc, (x, y)| acc | (x ^ y))
                    == 0
        })
    }
}

/// Counters stay usable after a panic elsewhere: a count is never half-written.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

/// Label values are route templates we wrote, but escape them as the format asks anyway.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Middleware: counts every answered request by method, route template and status.
pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    // Methods outside the standard set would otherwise become labels of their own.
    let method = match *request.method() {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    };
    // The route template is shared with the request (an `Arc`), so keeping it is free.
    let route = request.extensions().get::<MatchedPath>().cloned();
    metrics.request_started();
    let response = next.run(request).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    metrics.request_finished(method, route, response.status().as_u16());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family() {
        let m = Metrics::default();
        m.count_request("GET", "/v1/download/{org}/{version}/{file}", 206);
        m.count_download("physics", "linux-x86_64");
        m.count_download("chemistry", "linux-x86_64");
        m.bytes_served().fetch_add(10, Ordering::Relaxed);
        m.observe_build(Duration::from_millis(300));
        m.observe_build(Duration::from_secs(1000));
        let public = m.render(Labels::Public);
        assert!(public.contains("depot_downloads_total{platform=\"linux-x86_64\"} 2\n"));
        assert!(
            !public.contains("physics") && !public.contains("org="),
            "{public}"
        );
        let text = m.render(Labels::WithOrgs);
        assert!(text.contains(
            "depot_http_requests_total{method=\"GET\",route=\"/v1/download/{org}/{version}/{file}\",status=\"206\"} 1"
        ));
        assert!(text.contains("depot_downloads_total{org=\"physics\",platform=\"linux-x86_64\"} 1"));
        assert!(text.contains("depot_bytes_served_total 10"));
        assert!(text.contains("depot_build_duration_seconds_bucket{le=\"0.25\"} 0"));
        assert!(text.contains("depot_build_duration_seconds_bucket{le=\"0.5\"} 1"));
        assert!(text.contains("depot_build_duration_seconds_bucket{le=\"300\"} 1"));
        assert!(text.contains("depot_build_duration_seconds_bucket{le=\"+Inf\"} 2"));
        assert!(text.contains("depot_build_duration_seconds_count 2"));
    }

    #[test]
    fn counts_from_many_threads_add_up_and_a_held_counter_shows_only_once_used() {
        let m = Arc::new(Metrics::default());
        let held = m.request_counter("POST", "/v1/update-check", 200);
        assert!(
            !m.render(Labels::Public).contains("/v1/update-check"),
            "a zero count is not shown"
        );
        let threads: Vec<_> = (0..12)
            .map(|_| {
                let (m, held) = (Arc::clone(&m), Arc::clone(&held));
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        m.request_started();
                        m.request_finished_on(&held);
                        m.request_started();
                        m.request_finished("POST", "/v1/update-check", 401);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = m.render(Labels::Public);
        assert!(text.contains(
            "depot_http_requests_total{method=\"POST\",route=\"/v1/update-check\",status=\"200\"} 12000\n"
        ));
        assert!(text.contains(
            "depot_http_requests_total{method=\"POST\",route=\"/v1/update-check\",status=\"401\"} 12000\n"
        ));
        assert!(text.contains("depot_http_requests_in_flight 0\n"));
    }

    #[test]
    fn the_token_is_one_long_printable_word_and_must_match_exactly() {
        let token = MetricsToken::parse("  prometheus-scrape-0123456789\n").unwrap();
        assert!(format!("{token:?}").contains("redacted"));
        let mut headers = axum::http::HeaderMap::new();
        assert!(!token.presented_in(&headers));
        for (value, ok) in [
            ("Bearer prometheus-scrape-0123456789", true),
            ("Bearer prometheus-scrape-0123456788", false),
            ("Bearer prometheus-scrape-012345678", false),
            ("prometheus-scrape-0123456789", false),
        ] {
            headers.insert(axum::http::header::AUTHORIZATION, value.parse().unwrap());
            assert_eq!(token.presented_in(&headers), ok, "{value}");
        }
        for bad in ["", "short", "two words here, long enough"] {
            assert!(MetricsToken::parse(bad).is_none(), "{bad:?}");
        }
    }
}
