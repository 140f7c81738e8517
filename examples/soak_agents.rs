//! The simulated fleet of `benches/soak.sh`: enrolls `--agents` devices, then every one of them
//! checks for updates every `--interval` seconds, give or take `--jitter` of it, until
//! `--duration` is over. A device offered an update reports it `downloaded` and `installed` and
//! runs the new version from then on, so a widening rollout shows up as event traffic. Every
//! answer is counted by endpoint and status, every transport error by endpoint; the summary
//! ends with a `RESULT {json}` line for the script.
//!
//! It only ever talks to a loopback address (it refuses any other server) and never runs past
//! its duration plus one request timeout: it is a benchmark, not a load-testing tool to aim at
//! someone's server.

use anyhow::{bail, Context};
use clap::Parser;
use futures_util::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Parser)]
#[command(about = "Simulated depot agents for the soak benchmark (loopback only)")]
struct Args {
    /// The depot server, e.g. http://127.0.0.1:18190; must be a loopback address.
    #[arg(long)]
    server: reqwest::Url,
    /// Registration keys; agent i enrolls with key i mod their number.
    #[arg(long = "registration-key", required = true)]
    registration_keys: Vec<String>,
    #[arg(long, default_value_t = 10_000)]
    agents: usize,
    /// Seconds of checking in, after enrollment.
    #[arg(long, default_value_t = 120.0)]
    duration: f64,
    /// Mean seconds between two checks of one agent.
    #[arg(long, default_value_t = 10.0)]
    interval: f64,
    /// Each wait is the interval times 1 ± this fraction, uniformly.
    #[arg(long, default_value_t = 0.5)]
    jitter: f64,
    /// The version every agent runs at enrollment.
    #[arg(long, default_value = "1.0.0")]
    start_version: String,
    #[arg(long, default_value = "linux-x86_64")]
    platform: String,
    /// Enrollments in flight at once.
    #[arg(long, default_value_t = 32)]
    enroll_concurrency: usize,
    /// Seconds between progress lines on stderr.
    #[arg(long, default_value_t = 10.0)]
    progress: f64,
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);
/// Failures kept verbatim for the summary; the rest are only counted.
const ERROR_SAMPLES: usize = 5;

/// What one agent (or the enrollment phase) saw.
#[derive(Default)]
struct Tally {
    /// (endpoint, HTTP status); status 0 is no usable answer (refused, reset, timed out, unreadable).
    answers: BTreeMap<(&'static str, u16), u64>,
    /// Update-check round trips, in microseconds.
    check_micros: Vec<u32>,
    offers: u64,
    /// Agents with at least one successful check.
    checked_in: u64,
    error_samples: Vec<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        for (key, n) in other.answers {
            *self.answers.entry(key).or_default() += n;
        }
        self.check_micros.extend(other.check_micros);
        self.offers += other.offers;
        self.checked_in += other.checked_in;
        let room = ERROR_SAMPLES.saturating_sub(self.error_samples.len());
        self.error_samples
            .extend(other.error_samples.into_iter().take(room));
    }

    fn errors(&self) -> u64 {
        self.answers
            .iter()
            .filter(|((_, status), _)| !(200..300).contains(status))
            .map(|(_, n)| n)
            .sum()
    }

    fn requests(&self) -> u64 {
        self.answers.values().sum()
    }

    /// Counts one answer; a non-2xx one is also counted in `progress.errors`.
    fn count(&mut self, endpoint: &'static str, outcome: &Outcome, progress: &Progress) {
        let status = match outcome {
            Outcome::Status(status) => *status,
            Outcome::Failed(message) => {
                if self.error_samples.len() < ERROR_SAMPLES {
                    self.error_samples.push(format!("{endpoint}: {message}"));
                }
                0
            }
        };
        *self.answers.entry((endpoint, status)).or_default() += 1;
        progress.requests.fetch_add(1, Ordering::Relaxed);
        if !(200..300).contains(&status) {
            progress.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

enum Outcome {
    Status(u16),
    /// No answer (refused, reset, timed out) or one that does not parse.
    Failed(String),
}

#[derive(Default)]
struct Progress {
    requests: AtomicU64,
    errors: AtomicU64,
    events: AtomicU64,
}

#[derive(Deserialize)]
struct Enrolled {
    device_token: String,
}

#[derive(Deserialize)]
struct CheckAnswer {
    offer: Option<Offer>,
}

#[derive(Deserialize)]
struct Offer {
    version: String,
}

/// Sends a request; the status and, on 2xx, the body.
async fn send(request: reqwest::RequestBuilder) -> (Outcome, Option<bytes::Bytes>) {
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            match response.bytes().await {
                Ok(body) if (200..300).contains(&status) => (Outcome::Status(status), Some(body)),
                Ok(_) => (Outcome::Status(status), None),
                Err(e) => (Outcome::Failed(error_chain(&e)), None),
            }
        }
        Err(e) => (Outcome::Failed(error_chain(&e)), None),
    }
}

/// Reads a 2xx answer's JSON; an answer that does not parse counts as an error, not a success.
fn parse<T: serde::de::DeserializeOwned>(
    (outcome, body): (Outcome, Option<bytes::Bytes>),
) -> (Outcome, Option<T>) {
    match body.map(|b| serde_json::from_slice::<T>(&b)) {
        Some(Ok(value)) => (outcome, Some(value)),
        Some(Err(e)) => (Outcome::Failed(format!("unreadable answer: {e}")), None),
        None => (outcome, None),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

struct Fleet {
    client: reqwest::Client,
    base: reqwest::Url,
    args: Args,
    progress: Progress,
}

impl Fleet {
    fn url(&self, path: &str) -> reqwest::Url {
        let mut url = self.base.clone();
        url.set_path(path);
        url
    }

    async fn enroll(&self, i: usize, tally: &mut Tally) -> Option<String> {
        let key = &self.args.registration_keys[i % self.args.registration_keys.len()];
        let body = serde_json::json!({
            "registration_key": key,
            "hostname": format!("soak-{i:05}"),
            "platform": self.args.platform,
            "os_version": "Debian 12",
            "user": format!("user{i}"),
        });
        let request = self.client.post(self.url("/v1/devices/enroll")).json(&body);
        let (outcome, enrolled) = parse::<Enrolled>(send(request).await);
        tally.count("enroll", &outcome, &self.progress);
        enrolled.map(|e| e.device_token)
    }

    /// One agent's life: checks with jitter until `deadline`, installing what it is offered.
    async fn agent(&self, token: String, seed: u64, deadline: Instant) -> Tally {
        let mut tally = Tally::default();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut version = self.args.start_version.clone();
        let interval = Duration::from_secs_f64(self.args.interval);
        // The first check falls anywhere in the first interval, so the fleet starts spread out.
        let mut wait = interval.mul_f64(rng.gen::<f64>());
        let mut checked_in = false;
        while Instant::now() + wait < deadline {
            tokio::time::sleep(wait).await;
            wait = interval.mul_f64(1.0 + self.args.jitter * (rng.gen::<f64>() * 2.0 - 1.0));
            let body =
                serde_json::json!({"platform": self.args.platform, "current_version": version});
            let started = std::time::Instant::now();
            let request = self
                .client
                .post(self.url("/v1/update-check"))
                .bearer_auth(&token)
                .json(&body);
            let (outcome, answer) = parse::<CheckAnswer>(send(request).await);
            let micros = started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
            tally.count("update-check", &outcome, &self.progress);
            let Some(CheckAnswer { offer }) = answer else {
                continue;
            };
            tally.check_micros.push(micros);
            checked_in = true;
            let Some(offer) = offer else { continue };
            tally.offers += 1;
            let mut installed = true;
            for kind in ["downloaded", "installed"] {
                let report =
                    serde_json::json!({"version": offer.version, "kind": kind, "message": "soak"});
                let request = self
                    .client
                    .post(self.url("/v1/devices/events"))
                    .bearer_auth(&token)
                    .json(&report);
                let (outcome, ok) = send(request).await;
                tally.count("events", &outcome, &self.progress);
                self.progress.events.fetch_add(1, Ordering::Relaxed);
                installed &= ok.is_some();
            }
            if installed {
                version = offer.version;
            }
        }
        tally.checked_in = u64::from(checked_in);
        tally
    }
}

/// Only loopback servers: this program exists to measure depot on this machine.
fn require_loopback(url: &reqwest::Url) -> anyhow::Result<()> {
    let host = url.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback || url.scheme() != "http" {
        bail!("--server must be an http:// loopback address (127.0.0.0/8, ::1 or localhost), not {url}");
    }
    Ok(())
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[rank]) / 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    require_loopback(&args.server)?;
    if !(args.duration > 0.0 && args.interval > 0.0 && (0.0..1.0).contains(&args.jitter)) {
        bail!("--duration and --interval must be positive and --jitter in [0, 1)");
    }
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        // depot closes a connection that stays idle for its header read timeout (10 s); a
        // pooled connection reused at that moment fails without the server having seen the
        // request, which would count as depot's error. Real agents connect per check anyway.
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .build()
        .context("building the HTTP client")?;
    let fleet = Arc::new(Fleet {
        client,
        base: args.server.clone(),
        progress: Progress::default(),
        args,
    });
    let agents = fleet.args.agents;

    let started = std::time::Instant::now();
    let mut total = Tally::default();
    let enrolled: Vec<(usize, Option<String>, Tally)> = futures_util::stream::iter(0..agents)
        .map(|i| {
            let fleet = Arc::clone(&fleet);
            async move {
                let mut tally = Tally::default();
                let token = fleet.enroll(i, &mut tally).await;
                (i, token, tally)
            }
        })
        .buffer_unordered(fleet.args.enroll_concurrency.max(1))
        .collect()
        .await;
    let mut tokens = Vec::with_capacity(agents);
    for (i, token, tally) in enrolled {
        total.merge(tally);
        tokens.extend(token.map(|t| (i, t)));
    }
    eprintln!(
        "enrolled {} of {agents} agents in {:.1} s",
        tokens.len(),
        started.elapsed().as_secs_f64()
    );
    if tokens.is_empty() {
        bail!("no agent could enroll: {:?}", total.error_samples);
    }
    // The script starts the admin's timeline on this line.
    println!("READY {}", tokens.len());
    std::io::stdout().flush()?;

    let run_started = Instant::now();
    let deadline = run_started + Duration::from_secs_f64(fleet.args.duration);
    let tasks: Vec<_> = tokens
        .into_iter()
        .map(|(i, token)| {
            let fleet = Arc::clone(&fleet);
            tokio::spawn(async move { fleet.agent(token, i as u64, deadline).await })
        })
        .collect();
    let reporter = {
        let fleet = Arc::clone(&fleet);
        tokio::spawn(async move {
            let every = Duration::from_secs_f64(fleet.args.progress.max(0.5));
            let mut tick = tokio::time::interval_at(run_started + every, every);
            loop {
                tick.tick().await;
                let p = &fleet.progress;
                eprintln!(
                    "t={:>5.0}s requests={} events={} errors={}",
                    run_started.elapsed().as_secs_f64(),
                    p.requests.load(Ordering::Relaxed),
                    p.events.load(Ordering::Relaxed),
                    p.errors.load(Ordering::Relaxed),
                );
            }
        })
    };
    let enroll_requests = total.requests();
    for task in tasks {
        total.merge(task.await.context("an agent task panicked")?);
    }
    reporter.abort();
    let run_seconds = run_started.elapsed().as_secs_f64();

    total.check_micros.sort_unstable();
    let checks = total.check_micros.len();
    let run_requests = total.requests() - enroll_requests;
    println!(
        "agents:            {} enrolled, {} checked in",
        agents, total.checked_in
    );
    println!(
        "run:               {run_seconds:.1} s, {run_requests} requests ({:.0}/s)",
        run_requests as f64 / run_seconds
    );
    println!(
        "update checks:     {checks} ok, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&total.check_micros, 0.5),
        percentile(&total.check_micros, 0.99),
        percentile(&total.check_micros, 1.0),
    );
    println!("offers taken:      {}", total.offers);
    for ((endpoint, status), n) in &total.answers {
        let what = if *status == 0 {
            "no answer".to_string()
        } else {
            status.to_string()
        };
        println!("  {endpoint:<13} {what:<16} {n}");
    }
    for sample in &total.error_samples {
        println!("  error: {sample}");
    }
    let answers: BTreeMap<String, u64> = total
        .answers
        .iter()
        .map(|((endpoint, status), n)| (format!("{endpoint} {status}"), *n))
        .collect();
    let result = serde_json::json!({
        "agents": agents,
        "checked_in": total.checked_in,
        "requests": total.requests(),
        "errors": total.errors(),
        "checks": checks,
        "offers": total.offers,
        "run_seconds": run_seconds,
        "p50_ms": percentile(&total.check_micros, 0.5),
        "p99_ms": percentile(&total.check_micros, 0.99),
        "answers": answers,
    });
    println!("RESULT {result}");
    std::io::stdout().flush()?;
    Ok(())
}
