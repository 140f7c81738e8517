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
        /// The org's code: lower-case letters, digits and '-' (it names the packages).
        code: OrgCode,
        /// The department's name, as people read it.
        #[arg(long)]
        name: String,
        /// Who to ask about this org's machines.
        #[arg(long)]
        contact_email: Option<String>,
        /// Licensed seats (0: no limit shown).
        #[arg(long)]
        seats: Option<u32>,
        /// The update channel (default stable).
        #[arg(long)]
        channel: Option<Channel>,
    },
    /// Lists the orgs.
    List,
    /// Shows an org's configuration, overlay files and revision.
    Show {
        /// The org's code.
        code: OrgCode,
    },
    /// Replaces the org's configuration (and overlay files) from a TOML file; rebuilds its packages.
    /// A file with a `revision` (from `org export`) is refused once the org has changed since.
    Set {
        /// The org's code.
        code: OrgCode,
        /// The TOML file (as `depot org export` writes it).
        #[arg(long)]
        file: PathBuf,
        /// Overwrite even when the org changed since the file's revision.
        #[arg(long)]
        force: bool,
    },
    /// Prints the org's configuration as TOML that `org set --file` takes back, with its revision.
    Export {
        /// The org's code.
        code: OrgCode,
        /// Also write CODE.toml and its overlay files (under files/) into this directory.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Removes an org with its overlays and packages.
    Remove {
        /// The org's code.
        code: OrgCode,
    },
    /// A new registration key; enrolled devices keep working, new enrollments need the new key.
    RotateKey {
        /// The org's code.
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
        OrgCommand::Show { code } => {
            show(global, &OrgView::from(&depot.org(&code)?))?;
            if !global.json {
                for o in depot.overlays(&code)? {
                    outln!("overlay file:     {} ({} bytes)", o.name, o.bytes.len());
                }
                outln!("revision:         {}", depot.org_revision(&code)?);
            }
        }
        OrgCommand::Export { code, out } => {
            let org = depot.org(&code)?;
            let revision = depot.org_revision(&code)?;
            let overlays = depot.overlays(&code)?;
            let files = overlays
                .iter()
                .map(|o| (o.name.to_string(), format!("files/{}", o.name)))
                .collect();
            let text = crate::org::OrgFileOut {
                revision,
                config: org.config.to_input(),
                files,
            }
            .to_toml()?;
            match out {
                Some(dir) => {
                    for o in &overlays {
                        let path = dir.join("files").join(o.name.as_str());
                        if let Some(parent) = path.parent() {
                            std::fs::create_dir_all(parent)
                                .with_context(|| format!("cannot create {}", parent.display()))?;
                        }
                        std::fs::write(&path, &o.bytes)
                            .with_context(|| format!("cannot write {}", path.display()))?;
                    }
                    let path = dir.join(format!("{code}.toml"));
                    std::fs::write(&path, &text)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    eprintln!(
                        "wrote {} and {} overlay files",
                        path.display(),
                        overlays.len()
                    );
                }
                None => {
                    print!("{text}");
                    if !overlays.is_empty() {
                        eprintln!(
                            "{} overlay files are named under [files] but not written: give --out DIR",
                            overlays.len()
                        );
                    }
                }
            }
        }
        OrgCommand::Set { code, file, force } => {
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
            let (org, report) = match (&org_file.revision, force) {
                (Some(revision), false) => {
                    depot.replace_org_at(&actor, &code, revision, config, &overlays)?
                }
                _ => depot.replace_org(&actor, &code, config, &overlays)?,
            };
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
