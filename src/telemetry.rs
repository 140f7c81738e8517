//! Logging set-up: human-readable by default, JSON lines when `DEPOT_LOG_FORMAT=json`, level from
//! `RUST_LOG` (default `info` for the server, `warn` for other commands). Whatever `RUST_LOG`
//! says, no target that writes secrets (tokens, registration keys) into the log is enabled.

use tracing_subscriber::EnvFilter;

/// Targets silenced whatever `RUST_LOG` asks. ureq-proto (the agent's HTTP client) writes every
/// byte it sends and receives as a hex dump at TRACE, so `RUST_LOG=trace` would put the device
/// token (Authorization header, enrollment answer) and the registration key (enrollment body)
/// into the agent's log. It logs nothing above DEBUG, and its DEBUG lines name protocol states
/// only, so turning it off loses nothing an operator needs.
const NEVER_LOGGED: &[&str] = &["ureq_proto=off"];

fn init(default_level: &str) {
    let mut filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // A directive added later replaces one of RUST_LOG's for the same target.
    for directive in NEVER_LOGGED.iter().filter_map(|d| d.parse().ok()) {
        filter = filter.add_directive(directive);
    }
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
