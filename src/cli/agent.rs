//! `depot agent enroll|run|status`: the client updater on a device (CONTRACT 7).

use super::output::print_json;
use super::GlobalArgs;
use crate::agent::{self, EnrollOptions, RunOptions, RunOutcome, ServerUrl};
use crate::domain::{Platform, RegistrationKey};
use crate::signing::PublicKey;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Enrolls this machine with its org; values come from the package's deploy.properties.
    Enroll(Box<EnrollArgs>),
    /// Checks for updates, downloads, verifies and installs them.
    Run(RunArgs),
    /// What the agent knows: device, versions, last check.
    Status {
        #[arg(long)]
        state_dir: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct EnrollArgs {
    #[arg(long)]
    pub state_dir: PathBuf,
    /// The installer package's deploy.properties.
    #[arg(long)]
    pub from: Option<PathBuf>,
    #[arg(long)]
    pub server: Option<ServerUrl>,
    #[arg(long)]
    pub registration_key: Option<RegistrationKey>,
    /// The minisign public key line to pin (normally from deploy.properties).
    #[arg(long, value_parser = parse_public_key)]
    pub public_key: Option<PublicKey>,
    /// The platform, when it is not this machine's.
    #[arg(long)]
    pub platform: Option<Platform>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[arg(long)]
    pub state_dir: PathBuf,
    /// Check once and exit (non-zero when an update failed).
    #[arg(long)]
    pub once: bool,
    /// Seconds between checks.
    #[arg(long, default_value_t = 3600)]
    pub interval: u64,
    /// Up to this many random seconds added before each check (default 300; with --once, no
    /// delay unless given, as a scheduler without a random delay of its own needs).
    #[arg(long)]
    pub jitter: Option<u64>,
    /// Run after a new version is unpacked and switched to (DEPOT_VERSION, DEPOT_VERSION_DIR
    /// set); by default the package's own install script (sh ./install.sh on Linux).
    #[arg(long)]
    pub install_command: Option<String>,
}

fn parse_public_key(s: &str) -> Result<PublicKey, String> {
    PublicKey::parse(s).map_err(|e| e.to_string())
}

pub fn run(global: &GlobalArgs, cmd: AgentCommand) -> anyhow::Result<()> {
    match cmd {
        AgentCommand::Enroll(args) => {
            let opts = EnrollOptions {
                from: args.from,
                server: args.server,
                registration_key: args.registration_key,
                public_key: args.public_key,
                platform: args.platform,
                ..EnrollOptions::default()
            };
            let outcome = agent::enroll(&args.state_dir, &opts)?;
            if global.json {
                return print_json(&outcome);
            }
            if outcome.already_enrolled {
                outln!(
                    "already enrolled as device {} of org {}",
                    outcome.device_id,
                    outcome.org
                );
            } else {
                outln!(
                    "enrolled as device {} of org {} at {}",
                    outcome.device_id,
                    outcome.org,
                    outcome.server_url
                );
            }
        }
        AgentCommand::Run(args) => {
            let opts = RunOptions {
                install_command: args.install_command,
                interval: Duration::from_secs(args.interval.max(1)),
                jitter: Duration::from_secs(args.jitter.unwrap_or(300)),
                ..RunOptions::default()
            };
            if !args.once {
                crate::telemetry::init_server();
                match agent::run(&args.state_dir, &opts)? {}
            }
            if let Some(jitter) = args.jitter.filter(|&j| j > 0) {
                use rand::Rng;
                std::thread::sleep(Duration::from_secs(
                    rand::thread_rng().gen_range(0..=jitter),
                ));
            }
            let outcome = agent::run_once(&args.state_dir, &opts)?;
            if global.json {
                print_json(&outcome)?;
            }
            match outcome {
                RunOutcome::UpToDate { version } => {
                    if !global.json {
                        outln!(
                            "up to date ({})",
                            version.map_or_else(|| "no version yet".into(), |v| v.to_string())
                        );
                    }
                }
                RunOutcome::Installed { version, previous } => {
                    if !global.json {
                        let from = previous.map_or_else(String::new, |p| format!(" (was {p})"));
                        outln!("installed {version}{from}");
                    }
                }
                RunOutcome::Failed { version, reason } => {
                    let what = version
                        .map_or_else(|| "the update check".into(), |v| format!("update to {v}"));
                    anyhow::bail!("{what} failed: {reason}");
                }
            }
        }
        AgentCommand::Status { state_dir } => {
            let status = agent::status(&state_dir)?;
            if global.json {
                return print_json(&status);
            }
            outln!(
                "device:   {} of org {} ({})",
                status.device_id,
                status.org,
                status.platform
            );
            outln!("server:   {}", status.server_url);
            outln!("key id:   {}", status.public_key_id);
            outln!(
                "current:  {}",
                status
                    .current_version
                    .map_or_else(|| "-".into(), |v| v.to_string())
            );
            outln!(
                "previous: {}",
                status
                    .previous_version
                    .map_or_else(|| "-".into(), |v| v.to_string())
            );
            outln!(
                "checked:  {}",
                status.last_check.unwrap_or_else(|| "never".into())
            );
            if let Some(e) = status.last_error {
                outln!("error:    {e}");
            }
        }
    }
    Ok(())
}
