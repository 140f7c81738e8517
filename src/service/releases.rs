//! Releases, their publication on channels, rollouts, yanks and channel minimums.

use super::{io_err, now, Actor, BuildReport, BuildScope, Depot, Progress, Result, ServiceError};
use crate::domain::{Channel, EntryName, Platform, Version};
use crate::package::{scan_payload, write_payload_part, PayloadPart};
use crate::store::{ChannelSettings, Release, ReleasePayload, Rollout};
use std::path::PathBuf;

/// Release notes are shown to people and devices; keep them to a page.
pub const MAX_NOTES_LEN: usize = 64 * 1024;

/// A payload to add: the client installer for one platform, read from a local file.
#[derive(Debug, Clone)]
pub struct PayloadSource {
    pub platform: Platform,
    /// The name it gets in the package root.
    pub file_name: EntryName,
    pub path: PathBuf,
}

impl PayloadSource {
    /// A payload named after its file.
    pub fn from_path(platform: Platform, path: PathBuf) -> Result<Self> {
        let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
            ServiceError::Invalid(format!(
                "payload path {} has no usable file name",
                path.display()
            ))
        })?;
        Ok(PayloadSource {
            platform,
            file_name: EntryName::parse(name)?,
            path,
        })
    }
}

impl Depot {
    pub fn release(&self, version: &Version) -> Result<Release> {
        self.meta
            .get_release(version)?
            .ok_or_else(|| ServiceError::NotFound(format!("release {version}")))
    }

    /// Adds a release: each payload is read twice (once to learn its size and checksums, once
    /// to copy it behind its zip header into the payload part that every package shares).
    pub fn add_release(
        &self,
        actor: &Actor,
        version: &Version,
        payloads: &[PayloadSource],
        notes: &str,
    ) -> Result<Release> {
        if payloads.is_empty() {
            return Err(ServiceError::Invalid(
                "a release needs at least one payload (--payload PLATFORM=PATH)".into(),
            ));
        }
        for (i, p) in payloads.iter().enumerate() {
            if payloads[..i].iter().any(|q| q.platform == p.platform) {
                return Err(ServiceError::Invalid(format!(
                    "two payloads for {}",
                    p.platform
                )));
            }
            if p.file_name.as_str().contains('/') {
                return Err(ServiceError::Invalid(format!(
                    "payload name {} must not contain '/'",
                    p.file_name
                )));
            }
        }
        if notes.len() > MAX_NOTES_LEN {
            return Err(ServiceError::Invalid(format!(
                "release notes are longer than {MAX_NOTES_LEN} bytes"
            )));
        }
        // Notes are text of lines; a NUL or other control character is not text, and
        // PostgreSQL would refuse the NUL only after the payloads were stored.
        if notes
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(ServiceError::Invalid(
                "release notes must not contain control characters other than line breaks and tabs"
                    .into(),
            ));
        }
        crate::domain::check_shown_text("release notes", notes)?;
        if self.meta.get_release(version)?.is_some() {
            return Err(ServiceError::Conflict(format!(
                "release {version} already exists"
            )));
        }
        let created_at = now();
        let mut parts = Vec::with_capacity(payloads.len());
        for source in payloads {
            let part = self.store_payload(source, created_at)?;
            parts.push(ReleasePayload {
                platform: source.platform,
                part,
            });
        }
        parts.sort_by_key(|p| p.platform);
        let release = Release {
            version: version.clone(),
            notes: notes.to_string(),
            created_at,
            payloads: parts,
            yanked: None,
        };
        self.meta.add_release(&release)?;
        let platforms: Vec<&str> = release
            .payloads
            .iter()
            .map(|p| p.platform.as_str())
            .collect();
        self.audit(
            actor,
            None,
            "release.add",
            &version.to_string(),
            Some(platforms.join(",")),
        )?;
        Ok(release)
    }

    fn store_payload(&self, source: &PayloadSource, modified: i64) -> Result<PayloadPart> {
        let open = || {
            std::fs::File::open(&source.path).map_err(io_err(format!(
                "cannot read payload {}",
                source.path.display()
            )))
        };
        let facts = scan_payload(&mut std::io::BufReader::with_capacity(1 << 20, open()?))?;
        let mut writer = self.blobs.create()?;
        let part_len = write_payload_part(
            &source.file_name,
            &facts,
            modified,
            &mut std::io::BufReader::with_capacity(1 << 20, open()?),
            &mut writer,
        )?;
        let (blob, _) = writer.commit()?;
        Ok(PayloadPart {
            file_name: source.file_name.clone(),
            size: facts.size,
            sha256: facts.sha256,
            crc32: facts.crc32,
            blob,
            part_len,
            modified,
        })
    }

    /// Builds every org's packages of the release, then opens its rollout on the channel.
    /// Re-running it after a crash completes it.
    pub fn publish(
        &self,
        actor: &Actor,
        version: &Version,
        channel: &Channel,
        percent: u8,
        progress: &dyn Progress,
    ) -> Result<(Rollout, BuildReport)> {
        check_percent(percent)?;
        let release = self.release(version)?;
        if let Some(yank) = &release.yanked {
            return Err(ServiceError::Conflict(format!(
                "release {version} is yanked ({}); it cannot be published",
                yank.reason
            )));
        }
        let report = self.build_unaudited(
            actor,
            &BuildScope {
                release: Some(version.clone()),
                ..Default::default()
            },
            progress,
        )?;
        // When no org's package could be built (a template error, which every org meets),
        // nothing is published and no rollout opens.
        if let (Some(first), true) = (
            report.failed.first(),
            report.built.is_empty() && report.unchanged == 0,
        ) {
            return Err(ServiceError::Conflict(format!(
                "release {version} is not published: no org's packages could be built \
                 (org {}, {}: {})",
                first.org, first.platform, first.error
            )));
        }
        let at = now();
        let rollout = match self.meta.get_rollout(version, channel)? {
            Some(existing) => Rollout {
                percent,
                updated_at: at,
                ..existing
            },
            None => Rollout {
                version: version.clone(),
                channel: channel.clone(),
                percent,
                paused: false,
                pause_reason: None,
                published_at: at,
                updated_at: at,
            },
        };
        self.meta.put_rollout(&rollout)?;
        self.invalidate_fleet();
        let mut detail = format!(
            "channel {channel} at {percent}%; {} packages built",
            report.built.len()
        );
        if !report.failed.is_empty() {
            let orgs: Vec<&str> = report.failed.iter().map(|f| f.org.as_str()).collect();
            detail.push_str(&format!("; failed for {}", orgs.join(", ")));
        }
        self.audit(
            actor,
            None,
            "release.publish",
            &version.to_string(),
            Some(detail),
        )?;
        Ok((rollout, report))
    }

    /// Widens, narrows, pauses or resumes a rollout.
    pub fn set_rollout(
        &self,
        actor: &Actor,
        version: &Version,
        channel: &Channel,
        percent: Option<u8>,
        paused: Option<bool>,
    ) -> Result<Rollout> {
        if let Some(p) = percent {
            check_percent(p)?;
        }
        let mut rollout = self.meta.get_rollout(version, channel)?.ok_or_else(|| {
            ServiceError::NotFound(format!("rollout of release {version} on channel {channel}"))
        })?;
        if let Some(p) = percent {
            rollout.percent = p;
        }
        match paused {
            Some(true) if !rollout.paused => {
                rollout.paused = true;
                rollout.pause_reason = Some(format!("paused by {}", actor.name));
            }
            Some(false) => {
                rollout.paused = false;
                rollout.pause_reason = None;
            }
            _ => {}
        }
        rollout.updated_at = now();
        self.meta.put_rollout(&rollout)?;
        // A resume is the admin's judgement of the failures so far: the holds go, and only
        // failures counted from now on can halt the rollout again.
        let lifted = if paused == Some(false) {
            self.meta.resume_rollout_halt(version, channel)?
        } else {
            Vec::new()
        };
        // Before the answer: the very next update check on this server must see the change.
        self.invalidate_fleet();
        for hold in &lifted {
            self.audit(
                actor,
                Some(&hold.org),
                "rollout.hold.lift",
                &format!("{version} on {channel}"),
                Some(format!("lifted by resume: {}", hold.reason)),
            )?;
        }
        let detail = format!(
            "channel {channel}: {}%{}",
            rollout.percent,
            if rollout.paused { ", paused" } else { "" }
        );
        self.audit(
            actor,
            None,
            "rollout.update",
            &version.to_string(),
            Some(detail),
        )?;
        Ok(rollout)
    }

    pub fn yank(&self, actor: &Actor, version: &Version, reason: &str) -> Result<Release> {
        let reason = reason.trim();
        if reason.chars().count() > 500 || reason.chars().any(char::is_control) {
            return Err(ServiceError::Invalid(
                "yank reason: at most 500 characters on one line".into(),
            ));
        }
        crate::domain::check_shown_text("yank reason", reason)?;
        let reason = if reason.is_empty() {
            "no reason given"
        } else {
            reason
        };
        let release = self.meta.yank_release(version, reason, now())?;
        self.audit(
            actor,
            None,
            "release.yank",
            &version.to_string(),
            Some(reason.to_string()),
        )?;
        Ok(release)
    }

    /// Every channel in use (a published release or an org on it) or with settings, by name.
    pub fn channels(&self) -> Result<Vec<ChannelSummary>> {
        let releases = self.meta.list_releases()?;
        let rollouts = self.meta.list_rollouts()?;
        let orgs = self.meta.list_orgs()?;
        let mut names: Vec<Channel> = rollouts
            .iter()
            .map(|r| r.channel.clone())
            .chain(orgs.iter().map(|o| o.config.channel.clone()))
            .collect();
        names.push(Channel::stable());
        names.sort();
        names.dedup();
        let mut out = Vec::new();
        for channel in names {
            let settings = self.meta.get_channel(&channel)?;
            let mut published: Vec<&Version> = rollouts
                .iter()
                .filter(|r| r.channel == channel)
                .filter(|r| {
                    releases
                        .iter()
                        .any(|rel| rel.version == r.version && rel.yanked.is_none())
                })
                .map(|r| &r.version)
                .collect();
            published.sort_by(|a, b| b.cmp(a));
            let on: Vec<String> = orgs
                .iter()
                .filter(|o| o.config.channel == channel)
                .map(|o| o.code.to_string())
                .collect();
            if published.is_empty() && on.is_empty() && settings.is_none() {
                continue;
            }
            out.push(ChannelSummary {
                channel: channel.to_string(),
                min_version: settings
                    .as_ref()
                    .and_then(|s| s.min_version.as_ref())
                    .map(ToString::to_string),
                updated_at: settings.map(|s| super::views::rfc3339(s.updated_at)),
                releases: published.iter().map(ToString::to_string).collect(),
                orgs: on,
            });
        }
        Ok(out)
    }

    /// Devices on the channel below `min_version` get a mandatory update; `None` lifts it.
    /// The version must be a release published (and not yanked) on the channel, and the channel
    /// one in use: a typo (`stabel`, `11.3.9`) would otherwise be saved and do nothing.
    pub fn set_channel_min_version(
        &self,
        actor: &Actor,
        channel: &Channel,
        min_version: Option<Version>,
    ) -> Result<ChannelSettings> {
        let in_use = self
            .meta
            .list_rollouts()?
            .iter()
            .any(|r| &r.channel == channel)
            || self
                .meta
                .list_orgs()?
                .iter()
                .any(|o| &o.config.channel == channel);
        if !in_use && min_version.is_some() {
            return Err(ServiceError::Invalid(format!(
                "channel {channel} is not in use: no release is published on it and no org is on it"
            )));
        }
        if let Some(v) = &min_version {
            let release = self
                .meta
                .get_release(v)?
                .ok_or_else(|| ServiceError::Invalid(format!("release {v} does not exist")))?;
            if let Some(yank) = &release.yanked {
                return Err(ServiceError::Invalid(format!(
                    "release {v} is yanked ({}): it cannot be a minimum version",
                    yank.reason
                )));
            }
            if self.meta.get_rollout(v, channel)?.is_none() {
                return Err(ServiceError::Invalid(format!(
                    "release {v} is not published on channel {channel}"
                )));
            }
        }
        let settings = ChannelSettings {
            channel: channel.clone(),
            min_version,
            updated_at: now(),
        };
        self.meta.put_channel(&settings)?;
        let detail = settings
            .min_version
            .as_ref()
            .map_or_else(|| "none".to_string(), ToString::to_string);
        self.audit(
            actor,
            None,
            "channel.min_version",
            channel.as_str(),
            Some(detail),
        )?;
        Ok(settings)
    }
}

/// A channel as `depot channel list`, `GET /v1/channels` and the admin page show it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ChannelSummary {
    pub channel: String,
    pub min_version: Option<String>,
    /// When its settings last changed; `None` when it never had any.
    pub updated_at: Option<String>,
    /// Published, non-yanked releases on it, newest first.
    pub releases: Vec<String>,
    /// Orgs on it.
    pub orgs: Vec<String>,
}

fn check_percent(percent: u8) -> Result<()> {
    if percent > 100 {
        return Err(ServiceError::Invalid(format!(
            "rollout percent {percent} must be 0-100"
        )));
    }
    Ok(())
}
