//! The `depot` command line (CONTRACT 5). It parses arguments and calls the library; it holds no
//! logic of its own beyond presenting results.

/// `println!` through [`output::write_out`]: a closed pipe ends the process quietly.
macro_rules! outln {
    () => {
        $crate::cli::output::write_out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::output::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` through [`output::write_out`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::write_out(format_args!($($arg)*))
    };
}

mod admin;
mod agent;
mod agent_binary;
mod directory;
mod orgs;
mod output;
mod releases;
mod serve;

use crate::config::{Overrides, Settings};
use crate::domain::{Channel, OrgCode, Platform, Version};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "depot",
    version,
    about = "Builds, signs and serves department installer packages and drives client updates"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// The config file (default ./depot.toml when present).
    #[arg(long, global = true, env = "DEPOT_CONFIG")]
    pub config: Option<PathBuf>,
    /// The data directory (default artifacts/ beside the config file, else ./artifacts).
    #[arg(long, global = true, env = "DEPOT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The installer templates (default ./installer-templates).
    #[arg(long, global = true, env = "DEPOT_TEMPLATES")]
    pub templates: Option<PathBuf>,
    /// The metadata database URL (default sqlite://<data-dir>/depot.db).
    #[arg(long, global = true, env = "DEPOT_DATABASE")]
    pub database: Option<String>,
    /// Where artifacts live (default file://<data-dir>).
    #[arg(long, global = true, env = "DEPOT_ARTIFACTS")]
    pub artifacts: Option<String>,
    /// The minisign secret key (default keys/depot.key beside the config file, else ./keys/depot.key).
    #[arg(long, global = true, env = "DEPOT_SIGNING_KEY")]
    pub signing_key: Option<PathBuf>,
    /// The URL clients reach the server at; it goes into every package.
    #[arg(long, global = true, env = "DEPOT_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Machine-readable output for list and show commands.
    #[arg(long, global = true)]
    pub json: bool,
}

impl GlobalArgs {
    pub fn settings(&self) -> anyhow::Result<Settings> {
        Ok(Settings::resolve(&Overrides {
            config: self.config.clone(),
            data_dir: self.data_dir.clone(),
            templates: self.templates.clone(),
            database: self.database.clone(),
            artifacts: self.artifacts.clone(),
            signing_key: self.signing_key.clone(),
            public_url: self.public_url.clone(),
        })?)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Config, signing keypair, built-in templates and an empty data dir; never overwrites a key.
    Init,
    /// A self-contained demo in a fresh temporary directory: payloads, orgs, releases, tokens.
    Demo(admin::DemoArgs),
    /// Serves the API, downloads and portal.
    Serve(serve::ServeArgs),
    /// Orgs (departments): add, list, show, set, remove, rotate-key.
    #[command(subcommand)]
    Org(orgs::OrgCommand),
    /// Client releases: add, list, show, publish, rollout, yank.
    #[command(subcommand)]
    Release(releases::ReleaseCommand),
    /// Channel settings.
    #[command(subcommand)]
    Channel(releases::ChannelCommand),
    /// Builds packages whose inputs changed (all published releases and orgs by default).
    Build(BuildArgs),
    /// API tokens: create, list, revoke.
    #[command(subcommand)]
    Token(admin::TokenCommand),
    /// The signing key.
    #[command(subcommand)]
    Key(admin::KeyCommand),
    /// Writes an org's packages of a release with SHA256SUMS and signatures into a directory.
    Export(ExportArgs),
    /// Re-hashes every stored artifact and checks every signature; non-zero on any mismatch.
    Verify,
    /// The campus directory: sync eligible users (CONTRACT 10).
    #[command(subcommand)]
    Directory(directory::DirectoryCommand),
    /// The client updater: enroll, run, status.
    #[command(subcommand)]
    Agent(Box<agent::AgentCommand>),
    /// The agent executables the packages carry: add, list.
    #[command(subcommand)]
    AgentBinary(agent_binary::AgentBinaryCommand),
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Only this release (default: every published release).
    #[arg(long)]
    pub release: Option<Version>,
    /// Only this org (default: every org).
    #[arg(long)]
    pub org: Option<OrgCode>,
    /// Only this platform (default: every platform of the release).
    #[arg(long)]
    pub platform: Option<Platform>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The org whose packages are written.
    #[arg(long)]
    pub org: OrgCode,
    /// The release.
    #[arg(long)]
    pub release: Version,
    /// The directory to write into (created when absent).
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let global = &cli.global;
    match cli.command {
        Command::Init => admin::init(global),
        Command::Demo(args) => admin::demo(global, args),
        Command::Serve(args) => serve::command(global, args),
        Command::Org(cmd) => orgs::run(global, cmd),
        Command::Release(cmd) => releases::run(global, cmd),
        Command::Channel(cmd) => releases::run_channel(global, cmd),
        Command::Build(args) => releases::build(global, args),
        Command::Token(cmd) => admin::token(global, cmd),
        Command::Key(cmd) => admin::key(global, cmd),
        Command::Export(args) => admin::export(global, args),
        Command::Verify => admin::verify(global),
        Command::Agent(cmd) => agent::run(global, *cmd),
        Command::AgentBinary(cmd) => agent_binary::run(global, cmd),
        Command::Directory(cmd) => directory::run(global, cmd),
    }
}

/// Parses a channel given on the command line.
pub(crate) fn channel_arg(s: &str) -> Result<Channel, String> {
    Channel::parse(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every option and argument of every command says what it is for (`--help`). The agent's
    /// commands are checked with the agent.
    #[test]
    fn every_option_has_help_text() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") || arg.is_hide_set() {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_name() == "agent" || sub.get_name() == "help" {
                    continue;
                }
                if sub.get_about().is_none() && sub.get_long_about().is_none() {
                    missing.push(format!("{path} {} (the command)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "depot", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }
}
