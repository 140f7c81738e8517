//! Counters for `/metrics`, in the Prometheus text exposition format.
//!
//! Requests are labelled by route template (`/v1/download/{org}/{version}/{file}`), never by the
//! raw path, so that a scanner requesting random URLs cannot grow the label set; unmatched paths
//! share one label. Nothing here blocks or allocates per byte: the bytes-served counter is a
//! single atomic the download body adds to.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds, in seconds, of the build-duration histogram buckets.
const BUILD_BUCKETS: [f64; 10] = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    in_flight: AtomicI64,
    bytes_served: Arc<AtomicU64>,
    downloads: Mutex<BTreeMap<(String, String), u64>>,
    builds: Mutex<Histogram>,
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

    fn count_request(&self, method: &str, route: &str, status: u16) {
        *lock(&self.requests)
            .entry((method.to_string(), route.to_string(), status))
            .or_default() += 1;
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let _ = self.write_to(&mut out);
        out
    }

    fn write_to(&self, out: &mut String) -> std::fmt::Result {
        writeln!(out, "# HELP depot_http_requests_total HTTP requests answered, by route template and status.")?;
        writeln!(out, "# TYPE depot_http_requests_total counter")?;
        for ((method, route, status), n) in lock(&self.requests).iter() {
            writeln!(
                out,
                "depot_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                escape(route)
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
            self.in_flight.load(Ordering::Relaxed)
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
        writeln!(
            out,
            "# HELP depot_downloads_total Package downloads started, by org and platform."
        )?;
        writeln!(out, "# TYPE depot_downloads_total counter")?;
        for ((org, platform), n) in lock(&self.downloads).iter() {
            writeln!(
                out,
                "depot_downloads_total{{org=\"{org}\",platform=\"{platform}\"}} {n}"
            )?;
        }
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

/// Counters stay usable after a panic elsewhere: a count is never half-written.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    // Methods outside the standard set would otherwise become labels of their own.
    let method = match request.method().as_str() {
        m @ ("GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "PATCH" | "OPTIONS") => m,
        _ => "OTHER",
    }
    .to_string();
    metrics.in_flight.fetch_add(1, Ordering::Relaxed);
    let response = next.run(request).await;
    metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
    metrics.count_request(&method, &route, response.status().as_u16());
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
        m.bytes_served().fetch_add(10, Ordering::Relaxed);
        m.observe_build(Duration::from_millis(300));
        m.observe_build(Duration::from_secs(1000));
        let text = m.render();
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
}
