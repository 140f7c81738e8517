//! `depot release ...`, `depot channel ...` and `depot build`.

use super::output::{human_size, print_json, print_table, BuildBar};
use super::{channel_arg, BuildArgs, GlobalArgs};
use crate::domain::{Channel, Platform, Version};
use crate::service::views::ReleaseView;
use crate::service::{Actor, BuildScope, Depot, PayloadSource, MAX_NOTES_LEN};
use anyhow::Context;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum ReleaseCommand {
    /// Adds a release from one payload (client installer) per platform.
    Add {
        /// The release version (semver, e.g. 11.2.1).
        version: Version,
        /// PLATFORM=PATH, e.g. windows-x86_64=./CrashPlan_11.2.1_Win64.msi; repeat per platform.
        #[arg(long = "payload", required = true, value_parser = parse_payload)]
        payloads: Vec<(Platform, PathBuf)>,
        /// A file with the release notes.
        #[arg(long)]
        notes: Option<PathBuf>,
    },
    /// Lists releases with their channels and yank state.
    List,
    /// Shows one release: payloads, channels, rollouts.
    Show {
        /// The release version (semver, e.g. 11.2.1).
        version: Version,
    },
    /// Builds every org's packages and opens the rollout on the channel; re-run it to complete a crashed publish.
    Publish {
        /// The release version (semver, e.g. 11.2.1).
        version: Version,
        /// The channel to publish on (e.g. stable, beta).
        #[arg(long, value_parser = channel_arg)]
        channel: Channel,
        /// Percent of the channel's devices offered it at first (default 100).
        #[arg(long = "rollout", default_value_t = 100, value_parser = clap::value_parser!(u8).range(0..=100))]
        percent: u8,
    },
    /// Changes a rollout: widen or narrow it, pause or resume it.
    Rollout {
        /// The release version (semver, e.g. 11.2.1).
        version: Version,
        /// The channel of the rollout.
        #[arg(long, value_parser = channel_arg)]
        channel: Channel,
        /// The new percent of the channel's devices (0-100).
        #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100), required_unless_present_any = ["pause", "resume"], conflicts_with_all = ["pause", "resume"])]
        percent: Option<u8>,
        /// Stop offering it; devices that have it keep it.
        #[arg(long, conflicts_with = "resume")]
        pause: bool,
        /// Offer it again at its percent.
        #[arg(long)]
        resume: bool,
    },
    /// Withdraws a release: no device is offered it, devices on it are rolled back.
    Yank {
        /// The release version (semver, e.g. 11.2.1).
        version: Version,
        /// Why, for the audit log and the portal's pages.
        #[arg(long, default_value = "")]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ChannelCommand {
    /// Sets the channel's minimum version: devices below it get a mandatory update.
    Set {
        /// The channel (one in use: a release published on it or an org on it).
        #[arg(value_parser = channel_arg)]
        channel: Channel,
        /// A release published on the channel and not yanked.
        #[arg(long)]
        min_version: Version,
    },
    /// Channels in use: minimum version, published releases and orgs.
    List,
}

fn parse_payload(s: &str) -> Result<(Platform, PathBuf), String> {
    let (platform, path) = s
        .split_once('=')
        .ok_or("expected PLATFORM=PATH, e.g. linux-x86_64=./client.tgz")?;
    let platform = Platform::parse(platform).map_err(|e| e.to_string())?;
    if path.is_empty() {
        return Err("the payload path is empty".into());
    }
    Ok((platform, PathBuf::from(path)))
}

pub fn run(global: &GlobalArgs, cmd: ReleaseCommand) -> anyhow::Result<()> {
    let depot = Depot::open(&global.settings()?)?;
    let actor = Actor::cli();
    match cmd {
        ReleaseCommand::Add {
            version,
            payloads,
            notes,
        } => {
            let notes = match notes {
                Some(path) => {
                    let size = std::fs::metadata(&path)
                        .with_context(|| format!("cannot read notes {}", path.display()))?
                        .len();
                    anyhow::ensure!(
                        size <= MAX_NOTES_LEN as u64,
                        "notes {}: longer than {MAX_NOTES_LEN} bytes",
                        path.display()
                    );
                    std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read notes {}", path.display()))?
                }
                None => String::new(),
            };
            let sources = payloads
                .into_iter()
                .map(|(platform, path)| {
                    anyhow::ensure!(
                        path.is_file(),
                        "payload {platform}: {} is not a readable file",
                        path.display()
                    );
                    Ok(PayloadSource::from_path(platform, path)?)
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let release = depot.add_release(&actor, &version, &sources, &notes)?;
            show(global, &ReleaseView::new(&release, &[]))?;
        }
        ReleaseCommand::List => {
            let rollouts = depot.meta().list_rollouts()?;
            let views: Vec<ReleaseView> = depot
                .meta()
                .list_releases()?
                .iter()
                .map(|r| ReleaseView::new(r, &rollouts))
                .collect();
            if global.json {
                return print_json(&views);
            }
            let rows = views
                .iter()
                .map(|r| {
                    let channels: Vec<String> = r
                        .channels
                        .iter()
                        .map(|c| {
                            format!(
                                "{} {}%{}",
                                c.channel,
                                c.percent,
                                if c.paused { " paused" } else { "" }
                            )
                        })
                        .collect();
                    vec![
                        r.version.clone(),
                        r.created_at.clone(),
                        r.payloads
                            .iter()
                            .map(|p| p.platform.as_str())
                            .collect::<Vec<_>>()
                            .join(","),
                        if channels.is_empty() {
                            "-".into()
                        } else {
                            channels.join("; ")
                        },
                        r.yanked
                            .as_ref()
                            .map_or_else(String::new, |y| format!("yanked: {}", y.reason)),
                    ]
                })
                .collect::<Vec<_>>();
            print_table(
                &["VERSION", "CREATED", "PLATFORMS", "CHANNELS", "STATE"],
                &rows,
            );
        }
        ReleaseCommand::Show { version } => {
            let rollouts = depot.meta().list_rollouts()?;
            show(
                global,
                &ReleaseView::new(&depot.release(&version)?, &rollouts),
            )?;
        }
        ReleaseCommand::Publish {
            version,
            channel,
            percent,
        } => {
            let bar = BuildBar::new();
            let (rollout, report) = depot.publish(&actor, &version, &channel, percent, &bar)?;
            outln!(
                "release {version} published on {} at {}%",
                rollout.channel,
                rollout.percent
            );
            super::orgs::report_build(&report)?;
        }
        ReleaseCommand::Rollout {
            version,
            channel,
            percent,
            pause,
            resume,
        } => {
            let paused = if pause {
                Some(true)
            } else if resume {
                Some(false)
            } else {
                None
            };
            let r = depot.set_rollout(&actor, &version, &channel, percent, paused)?;
            outln!(
                "release {version} on {}: {}%{}",
                r.channel,
                r.percent,
                r.pause_reason
                    .map_or_else(String::new, |why| format!(", paused ({why})"))
            );
        }
        ReleaseCommand::Yank { version, reason } => {
            let release = depot.yank(&actor, &version, &reason)?;
            outln!(
                "release {version} yanked: {}",
                release.yanked.map(|y| y.reason).unwrap_or_default()
            );
        }
    }
    Ok(())
}

fn show(global: &GlobalArgs, release: &ReleaseView) -> anyhow::Result<()> {
    if global.json {
        return print_json(release);
    }
    outln!("version:  {}", release.version);
    outln!("created:  {}", release.created_at);
    if let Some(y) = &release.yanked {
        outln!("yanked:   {} ({})", y.at, y.reason);
    }
    for p in &release.payloads {
        outln!(
            "payload:  {:<16} {} {} sha256 {}",
            p.platform,
            p.name,
            human_size(p.size),
            p.sha256
        );
    }
    for c in &release.channels {
        let paused = c
            .pause_reason
            .as_ref()
            .map_or_else(String::new, |why| format!(", paused ({why})"));
        outln!(
            "channel:  {} {}%{paused}, published {}",
            c.channel,
            c.percent,
            c.published_at
        );
    }
    if !release.notes.is_empty() {
        outln!("notes:\n{}", release.notes);
    }
    Ok(())
}

pub fn run_channel(global: &GlobalArgs, cmd: ChannelCommand) -> anyhow::Result<()> {
    let depot = Depot::open(&global.settings()?)?;
    match cmd {
        ChannelCommand::Set {
            channel,
            min_version,
        } => {
            let s = depot.set_channel_min_version(&Actor::cli(), &channel, Some(min_version))?;
            outln!(
                "channel {}: minimum version {}",
                s.channel,
                s.min_version.map(|v| v.to_string()).unwrap_or_default()
            );
        }
        ChannelCommand::List => {
            let channels = depot.channels()?;
            if global.json {
                return print_json(&channels);
            }
            let rows = channels
                .iter()
                .map(|c| {
                    vec![
                        c.channel.clone(),
                        c.min_version.clone().unwrap_or_else(|| "-".into()),
                        c.releases.join(","),
                        c.orgs.join(","),
                    ]
                })
                .collect::<Vec<_>>();
            print_table(&["CHANNEL", "MIN VERSION", "RELEASES", "ORGS"], &rows);
        }
    }
    Ok(())
}

pub fn build(global: &GlobalArgs, args: BuildArgs) -> anyhow::Result<()> {
    let depot = Depot::open(&global.settings()?)?;
    let scope = BuildScope {
        release: args.release,
        org: args.org,
        platform: args.platform,
    };
    let bar = BuildBar::new();
    let report = depot.build(&Actor::cli(), &scope, &bar)?;
    if global.json {
        return print_json(&report);
    }
    for p in &report.built {
        outln!("{}  {}  {}", p.sha256, human_size(p.size), p.file_name);
    }
    if report.built.is_empty() && report.unchanged == 0 && report.failed.is_empty() {
        eprintln!("nothing to build: no published release in scope (publish one with depot release publish)");
    }
    super::orgs::report_build(&report)
}
