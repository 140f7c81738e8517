//! `depot org ...`

use super::output::{print_json, print_table};
use super::GlobalArgs;
use crate::domain::{Channel, EntryName, OrgCode};
use crate::org::{OrgConfig, OrgFile, MAX_OVERLAY_FILE_SIZE};
use crate::service::views::OrgView;
use crate::service::{Actor, BuildReport, Depot};
use anyhow::Context;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Creates an org with a fresh registration key and builds its packages.
    Add {
        code: OrgCode,
        #[arg(long)]
        name: String,
        #[arg(long)]
        contact_email: Option<String>,
        #[arg(long)]
        seats: Option<u32>,
        #[arg(long)]
        channel: Option<Channel>,
    },
    List,
    Show {
        code: OrgCode,
    },
    /// Replaces the org's configuration (and overlay files) from a TOML file; rebuilds its packages.
    Set {
        code: OrgCode,
        #[arg(long)]
        file: PathBuf,
    },
    Remove {
        code: OrgCode,
    },
    /// A new registration key; enrolled devices keep working, new enrollments need the new key.
    RotateKey {
        code: OrgCode,
    },
}

pub fn run(global: &GlobalArgs, cmd: OrgCommand) -> anyhow::Result<()> {
    let depot = Depot::open(&global.settings()?)?;
    let actor = Actor::cli();
    match cmd {
        OrgCommand::Add {
            code,
            name,
            contact_email,
            seats,
            channel,
        } => {
            let mut input = OrgConfig::new(&name)?.to_input();
            input.contact_email = contact_email;
            input.seats = seats;
            input.channel = channel.map(|c| c.to_string());
            let (org, report) = depot.add_org(&actor, &code, OrgConfig::try_from(input)?)?;
            show(global, &OrgView::from(&org))?;
            report_build(&report)?;
        }
        OrgCommand::List => {
            let orgs = depot.meta().list_orgs()?;
            let views: Vec<OrgView> = orgs.iter().map(OrgView::from).collect();
            if global.json {
                return print_json(&views);
            }
            let rows = views
                .iter()
                .map(|o| {
                    vec![
                        o.code.clone(),
                        o.name.clone(),
                        o.channel.clone(),
                        o.seats.to_string(),
                        o.contact_email.clone().unwrap_or_default(),
                    ]
                })
                .collect::<Vec<_>>();
            print_table(&["CODE", "NAME", "CHANNEL", "SEATS", "CONTACT"], &rows);
        }
        OrgCommand::Show { code } => show(global, &OrgView::from(&depot.org(&code)?))?,
        OrgCommand::Set { code, file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let org_file = OrgFile::parse(&text).with_context(|| format!("{}", file.display()))?;
            let config = OrgConfig::try_from(org_file.config)
                .with_context(|| format!("{}", file.display()))?;
            // Read and check every overlay before changing anything.
            let base = file.parent().map(PathBuf::from).unwrap_or_default();
            let mut overlays = Vec::new();
            for (name, path) in &org_file.files {
                let name = EntryName::parse(name)
                    .with_context(|| format!("{}: [files]", file.display()))?;
                let path = if path.is_absolute() {
                    path.clone()
                } else {
                    base.join(path)
                };
                let size = std::fs::metadata(&path)
                    .with_context(|| format!("overlay {name}: cannot read {}", path.display()))?
                    .len();
                anyhow::ensure!(
                    size <= MAX_OVERLAY_FILE_SIZE as u64,
                    "overlay {name}: {} is {size} bytes; the limit is {MAX_OVERLAY_FILE_SIZE}",
                    path.display()
                );
                let bytes = std::fs::read(&path)
                    .with_context(|| format!("overlay {name}: cannot read {}", path.display()))?;
                overlays.push((name, bytes));
            }
            let (org, report) = depot.replace_org(&actor, &code, config, &overlays)?;
            show(global, &OrgView::from(&org))?;
            report_build(&report)?;
        }
        OrgCommand::Remove { code } => {
            depot.remove_org(&actor, &code)?;
            eprintln!("org {code} removed");
        }
        OrgCommand::RotateKey { code } => {
            let (org, report) = depot.rotate_key(&actor, &code)?;
            outln!("{}", org.registration_key);
            report_build(&report)?;
        }
    }
    Ok(())
}

fn show(global: &GlobalArgs, org: &OrgView) -> anyhow::Result<()> {
    if global.json {
        return print_json(org);
    }
    outln!("code:             {}", org.code);
    outln!("name:             {}", org.name);
    outln!(
        "contact:          {}",
        org.contact_email.as_deref().unwrap_or("-")
    );
    outln!("seats:            {}", org.seats);
    outln!("channel:          {}", org.channel);
    outln!(
        "pinned version:   {}",
        org.pinned_version.as_deref().unwrap_or("-")
    );
    outln!("registration key: {}", org.registration_key);
    outln!(
        "include:          {}",
        org.backup.include.join("\n                  ")
    );
    outln!(
        "exclude:          {}",
        org.backup.exclude.join("\n                  ")
    );
    for (k, v) in &org.settings {
        outln!("setting:          {k} = {v}");
    }
    outln!("updated:          {}", org.updated_at);
    Ok(())
}

pub(super) fn report_build(report: &BuildReport) -> anyhow::Result<()> {
    if !report.built.is_empty() || report.unchanged > 0 {
        eprintln!(
            "{} packages built, {} unchanged ({:.2} s)",
            report.built.len(),
            report.unchanged,
            report.elapsed.as_secs_f64()
        );
    }
    for f in &report.failed {
        eprintln!(
            "org {}: packages not built ({} {}): {}",
            f.org, f.version, f.platform, f.error
        );
    }
    if !report.failed.is_empty() {
        let orgs: Vec<&str> = report.failed.iter().map(|f| f.org.as_str()).collect();
        anyhow::bail!(
            "the packages of {} failed to build (the other orgs' were built)",
            orgs.join(", ")
        );
    }
    Ok(())
}
