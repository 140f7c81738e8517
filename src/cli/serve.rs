//! `depot serve`: opens the store named by the settings and serves it until SIGTERM or Ctrl-C.

use crate::config::Settings;
use crate::server::forwarded::TrustedProxies;
use crate::server::metrics::MetricsToken;
use crate::server::{router, serve, shutdown_signal, AppState, ServerOptions, TlsFiles};
use crate::service::Depot;
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8080, or `listen` in depot.toml).
    #[arg(long, env = "DEPOT_LISTEN")]
    pub listen: Option<String>,
    /// PEM certificate chain; serves HTTPS with --tls-key.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Proxies (addresses or CIDR networks, comma-separated) whose X-Forwarded-For names the
    /// client; replaces `trusted_proxies` in depot.toml. Default: none.
    #[arg(long, env = "DEPOT_TRUSTED_PROXIES", value_name = "LIST")]
    pub trusted_proxies: Option<String>,
    /// With s3:// artifacts: answer package downloads with a 302 to a presigned URL of the
    /// object, valid this many seconds; replaces `presign_downloads` in depot.toml.
    #[arg(long, env = "DEPOT_PRESIGN_DOWNLOADS", value_name = "SECONDS")]
    pub presign_downloads: Option<u64>,
    /// Connections one client address may hold at once (trusted proxies exempt); replaces
    /// `[server] max_connections_per_address` in depot.toml. Default 256.
    #[arg(long, env = "DEPOT_MAX_CONNECTIONS_PER_ADDRESS", value_name = "N")]
    pub max_connections_per_address: Option<usize>,
    /// A file holding the bearer token `/metrics` then requires (and labels downloads by org);
    /// replaces `[metrics] token_file` in depot.toml. Default: none, metrics public without orgs.
    #[arg(long, env = "DEPOT_METRICS_TOKEN_FILE", value_name = "FILE")]
    pub metrics_token_file: Option<PathBuf>,
    /// Enrollments one client address may make per hour with the default org's public
    /// registration key; replaces `[enroll] default_per_address_per_hour` (default 20).
    #[arg(long, env = "DEPOT_ENROLL_PER_ADDRESS_PER_HOUR", value_name = "N")]
    pub enroll_per_address_per_hour: Option<u32>,
    /// Active devices the default org may have; replaces `[enroll] default_max_devices`
    /// (default 10000).
    #[arg(long, env = "DEPOT_ENROLL_DEFAULT_MAX_DEVICES", value_name = "N")]
    pub enroll_default_max_devices: Option<u64>,
}

pub fn command(global: &super::GlobalArgs, args: ServeArgs) -> anyhow::Result<()> {
    let mut settings = global.settings()?;
    if let Some(list) = &args.trusted_proxies {
        settings.trusted_proxies = crate::config::parse_trusted_proxies(list)?;
    }
    if let Some(n) = args.max_connections_per_address {
        settings.max_connections_per_address = n.max(1);
    }
    if let Some(path) = args.metrics_token_file {
        settings.metrics_token_file = Some(path);
    }
    if let Some(seconds) = args.presign_downloads {
        settings.artifacts.presign_downloads(seconds)?;
    }
    if let Some(n) = args.enroll_per_address_per_hour {
        settings.enroll.default_per_address_per_hour = n;
    }
    if let Some(n) = args.enroll_default_max_devices {
        settings.enroll.default_max_devices = n;
    }
    let listen = args
        .listen
        .or_else(|| settings.listen.clone())
        .unwrap_or_else(|| crate::config::DEFAULT_LISTEN.to_string());
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        _ => None,
    };
    run(&settings, &listen, tls)
}

/// Serves the depot of `settings` on `listen` until a shutdown signal.
pub fn run(settings: &Settings, listen: &str, tls: Option<TlsFiles>) -> anyhow::Result<()> {
    crate::telemetry::init_server();
    let depot = Arc::new(Depot::open(settings)?);
    let metrics_token = settings
        .metrics_token_file
        .as_deref()
        .map(MetricsToken::read)
        .transpose()?;
    eprintln!("{}", settings.describe());
    let options = ServerOptions {
        max_connections_per_address: settings.max_connections_per_address,
        metrics_token,
        tls,
        max_upload_bytes: settings.max_upload_bytes,
        max_connections: settings.max_connections,
        trusted_proxies: TrustedProxies::new(settings.trusted_proxies.iter().copied()),
        ..ServerOptions::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let served = Arc::clone(&depot);
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let address = listener.local_addr()?;
        let scheme = if options.tls.is_some() {
            "https"
        } else {
            "http"
        };
        tracing::info!(%address, "depot serving on {scheme}://{address}");
        eprintln!("depot serving on {scheme}://{address} (Ctrl-C to stop)");
        let state = AppState::with_depot(served, options.clone());
        serve(listener, router(state), &options, shutdown_signal()).await?;
        anyhow::Ok(())
    })?;
    // Check-ins buffered for batching are written before the process ends, off the runtime:
    // a store may block (PostgreSQL's client runs a runtime of its own).
    drop(runtime);
    depot.flush_checkins()?;
    Ok(())
}
