//! The `depot` binary: parse the command line, run it, print a one-line reason on failure.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = match depot::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            // Usage errors, like every other failure, are one line on stderr.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            eprintln!("depot: {}", first.strip_prefix("error: ").unwrap_or(first));
            return std::process::ExitCode::from(2);
        }
    };
    depot::telemetry::init_cli();
    match depot::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("depot: {}", one_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, without repeating a cause its parent already quotes.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line.replace('\n', " ")
}
