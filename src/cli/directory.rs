//! `depot directory sync`: eligible users from the campus directory (CONTRACT 10).

use super::output::print_json;
use super::GlobalArgs;
use crate::domain::OrgCode;
use crate::service::{Actor, Depot};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum DirectoryCommand {
    /// Reads each org's users_group and applies it: users added and removed, devices of people
    /// who left deactivated (or flagged), devices of outsiders flagged.
    Sync {
        /// Only this org (default: every org that names a users_group).
        #[arg(long)]
        org: Option<OrgCode>,
        /// Applies a group that shrank by more than half since the last sync (otherwise held).
        #[arg(long)]
        confirm_shrink: bool,
    },
}

pub fn run(global: &GlobalArgs, cmd: DirectoryCommand) -> anyhow::Result<()> {
    match cmd {
        DirectoryCommand::Sync {
            org,
            confirm_shrink,
        } => {
            let depot = Depot::open(&global.settings()?)?;
            let report = depot.directory_sync(&Actor::cli(), org.as_ref(), confirm_shrink)?;
            if global.json {
                return print_json(&report);
            }
            let list = |v: &[String]| {
                if v.is_empty() {
                    "-".to_string()
                } else {
                    v.join(", ")
                }
            };
            for o in &report.orgs {
                if let Some(why) = &o.held {
                    outln!("{}: HELD: {why}", o.org);
                    continue;
                }
                outln!(
                    "{}: {} users in {}; added: {}; removed: {}; devices deactivated: {}; flagged: {}",
                    o.org,
                    o.users,
                    o.group,
                    list(&o.added),
                    list(&o.removed),
                    list(&o.deactivated),
                    list(&o.flagged)
                );
            }
            Ok(())
        }
    }
}
