//! Logging set-up: human-readable by default, JSON lines when `DEPOT_LOG_FORMAT=json`, level from
//! `RUST_LOG` (default `info` for the server, `warn` for other commands).

use tracing_subscriber::EnvFilter;

fn init(default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let json = std::env::var("DEPOT_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second initialisation (tests) is harmless; ignore its error.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// For commands: only warnings and errors unless RUST_LOG says otherwise.
pub fn init_cli() {
    init("warn");
}

/// For the server: request logs at info.
pub fn init_server() {
    init("info,tower_http=info");
}
