//! `depot agent-binary add|list`: the depot agent's executables the packages carry (CONTRACT 7a).

use super::output::{human_size, print_json, print_table};
use super::GlobalArgs;
use crate::domain::Platform;
use crate::service::{Actor, AgentBinarySource, Depot};
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum AgentBinaryCommand {
    /// Stores the agent executable per platform; every org's packages are rebuilt to carry it.
    Add {
        /// PLATFORM=PATH, e.g. linux-x86_64=./target/release/depot; one per platform.
        #[arg(required = true, value_parser = parse_binary)]
        binaries: Vec<(Platform, PathBuf)>,
    },
    /// The stored agent executables: platform, SHA-256, size.
    List,
}

fn parse_binary(s: &str) -> Result<(Platform, PathBuf), String> {
    let (platform, path) = s
        .split_once('=')
        .ok_or("expected PLATFORM=PATH, e.g. linux-x86_64=./target/release/depot")?;
    let platform = Platform::parse(platform).map_err(|e| e.to_string())?;
    if path.is_empty() {
        return Err("the executable's path is empty".into());
    }
    Ok((platform, PathBuf::from(path)))
}

pub fn run(global: &GlobalArgs, cmd: AgentBinaryCommand) -> anyhow::Result<()> {
    let depot = Depot::open(&global.settings()?)?;
    match cmd {
        AgentBinaryCommand::Add { binaries } => {
            let sources: Vec<AgentBinarySource> = binaries
                .into_iter()
                .map(|(platform, path)| AgentBinarySource { platform, path })
                .collect();
            let (added, report) = depot.add_agent_binaries(&Actor::cli(), &sources)?;
            if global.json {
                return print_json(&added);
            }
            for b in &added {
                outln!("{}: {} ({})", b.platform, b.sha256, human_size(b.size));
            }
            outln!(
                "{} packages rebuilt, {} unchanged",
                report.built.len(),
                report.unchanged
            );
        }
        AgentBinaryCommand::List => {
            let binaries = depot.agent_binaries()?;
            if global.json {
                return print_json(&binaries);
            }
            let rows: Vec<Vec<String>> = binaries
                .iter()
                .map(|b| {
                    vec![
                        b.platform.to_string(),
                        b.sha256.to_string(),
                        b.size.to_string(),
                    ]
                })
                .collect();
            print_table(&["PLATFORM", "SHA256", "SIZE"], &rows);
        }
    }
    Ok(())
}
