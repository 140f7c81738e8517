//! `depot agent run`: check, verify, download, install, report; once or in a loop with jitter.
//!
//! Order of trust: the answer's release manifest is verified with the pinned key (and against
//! the org, platform, expiry and last serial) before the offer is looked at; the package is
//! verified (size, SHA-256, signature by the pinned key) before a byte of it is unpacked; the
//! state file is written only after `current` points at a version that installed. Whatever
//! fails about an offer is reported as a `failed` event and leaves the installed version alone.

use super::download::{download, verify_package, DownloadPaths};
use super::http::{ServerClient, ServerUrl};
use super::install::{
    current_target, prune_versions, remove_tree, run_install_command, switch_current,
};
use super::state::{sync_dir, AgentState, StateDir};
use super::unpack::{unpack_zip, UnpackLimits};
use super::{lock, unix_now, AgentError, Result};
use crate::domain::{package_file_name, Platform, Sha256, Version};
use crate::updates::{check_offer, Expectation, ManifestError, OfferView, ReleaseManifest};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::Path;
use std::time::Duration;

/// How `run`/`run_once` behave.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Run through the platform shell in the new version's directory after the switch, with
    /// `DEPOT_VERSION` and `DEPOT_VERSION_DIR` set; a non-zero exit undoes the switch. `None`
    /// runs the package's own install script (`sh ./install.sh` on Linux).
    pub install_command: Option<String>,
    pub install_timeout: Duration,
    /// Time between checks in [`run`].
    pub interval: Duration,
    /// A random extra delay of up to this much before each check, so that a fleet does not
    /// check in at the same second.
    pub jitter: Duration,
    pub unpack_limits: UnpackLimits,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            install_command: None,
            install_timeout: Duration::from_secs(30 * 60),
            interval: Duration::from_secs(3600),
            jitter: Duration::from_secs(300),
            unpack_limits: UnpackLimits::default(),
        }
    }
}

/// What one check did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RunOutcome {
    /// The manifest verified and nothing is to be installed.
    UpToDate { version: Option<Version> },
    /// `version` is installed and current; `previous` is kept beside it.
    Installed {
        version: Version,
        previous: Option<Version>,
    },
    /// The answer or the offered package was refused, or the install failed; nothing changed.
    /// It was reported to the server as a `failed` event.
    Failed {
        version: Option<Version>,
        reason: String,
    },
}

#[derive(Serialize)]
struct CheckRequest<'a> {
    platform: Platform,
    current_version: Option<&'a Version>,
}

#[derive(Deserialize)]
struct CheckAnswer {
    offer: Option<serde_json::Value>,
    manifest: String,
    manifest_minisig: String,
}

/// The server's `offer`; `mandatory` and `notes` change nothing the agent does.
#[derive(Debug, Deserialize)]
struct Offer {
    version: Version,
    #[serde(default)]
    rollback: bool,
    package: OfferedPackage,
}

#[derive(Debug, Deserialize)]
struct OfferedPackage {
    url: String,
    sha256: Sha256,
    size: u64,
    /// The `.minisig` text, or the URL of the `.minisig` file.
    minisig: String,
}

impl Offer {
    fn view(&self) -> OfferView {
        OfferView {
            version: self.version.clone(),
            sha256: self.package.sha256,
            size: self.package.size,
            rollback: self.rollback,
        }
    }
}

#[derive(Serialize)]
struct Event<'a> {
    version: Option<&'a Version>,
    kind: &'static str,
    message: &'a str,
}

/// One update check and, when there is an offer, its installation. `Err` is for what stops the
/// agent or should be retried later untouched (not enrolled, deactivated, network down, another
/// agent running); everything about a refused offer is `Ok(RunOutcome::Failed)`.
pub fn run_once(dir: &Path, opts: &RunOptions) -> Result<RunOutcome> {
    let dir = StateDir::new(dir);
    // Before the lock, whose file would not open in a directory that was never enrolled.
    if !dir.exists() {
        return Err(AgentError::NotEnrolled {
            dir: dir.root().to_path_buf(),
        });
    }
    let _lock = lock(&dir)?;
    let mut state = dir.load()?;
    undo_uncommitted_switch(&dir, &state)?;
    let client = ServerClient::new(
        ServerUrl::parse(&state.server_url)?,
        Some(state.device_token.clone()),
    );
    let result = check_and_apply(&dir, &client, &mut state, opts);
    if let Ok(RunOutcome::Installed { version, .. }) = &result {
        // The server learns the new version now, not at the next hourly check.
        let check_in = CheckRequest {
            platform: state.platform,
            current_version: Some(version),
        };
        if let Err(e) = client.post_json("/v1/update-check", &check_in) {
            tracing::warn!(error = %e, "could not report the new version");
        }
    }
    match &result {
        Ok(RunOutcome::Failed { reason, .. }) => state.last_error = Some(reason.clone()),
        Ok(_) => state.last_error = None,
        Err(e) => state.last_error = Some(e.to_string()),
    }
    // The commit point: after a successful install `current` already points at the new version.
    dir.save(&state)?;
    result
}

fn check_and_apply(
    dir: &StateDir,
    client: &ServerClient,
    state: &mut AgentState,
    opts: &RunOptions,
) -> Result<RunOutcome> {
    let answer = match client.post_json(
        "/v1/update-check",
        &CheckRequest {
            platform: state.platform,
            current_version: state.current_version.as_ref(),
        },
    ) {
        // An oversized answer is an answer that fails a check, not a network problem.
        Err(e @ AgentError::BadResponse { .. }) => {
            return refuse(client, state, None, e.to_string())
        }
        other => other?,
    };
    match answer.status {
        200 => {}
        status @ (401 | 403) => {
            return Err(AgentError::Deactivated {
                status,
                message: answer.error_message(),
            })
        }
        status => {
            return Err(AgentError::HttpStatus {
                url: client.base().endpoint("/v1/update-check"),
                status,
                message: answer.error_message(),
            })
        }
    }
    let now = unix_now();
    state.last_check = Some(now);
    let answer: CheckAnswer = match answer.json("update-check") {
        Ok(answer) => answer,
        Err(e) => return refuse(client, state, None, e.to_string()),
    };
    let offer: Option<Offer> = match answer.offer.map(serde_json::from_value).transpose() {
        Ok(offer) => offer,
        Err(e) => {
            return refuse(
                client,
                state,
                None,
                format!("the server's offer is malformed: {e}"),
            )
        }
    };
    let expect = Expectation {
        org: state.org.clone(),
        platform: state.platform,
        last_serial: state.last_serial,
        current: state.current_version.clone(),
    };
    let manifest = match check_offer(
        &answer.manifest,
        &answer.manifest_minisig,
        &state.public_key,
        &expect,
        offer.as_ref().map(Offer::view).as_ref(),
        now,
    ) {
        Ok(manifest) => manifest,
        Err(e) => {
            let version = offer.as_ref().map(|o| o.version.clone());
            return refuse(client, state, version, manifest_refusal(&e));
        }
    };
    state.last_serial = Some(state.last_serial.unwrap_or(0).max(manifest.serial));
    let Some(offer) = offer else {
        return Ok(RunOutcome::UpToDate {
            version: state.current_version.clone(),
        });
    };
    if state.current_version.as_ref() == Some(&offer.version) {
        return Ok(RunOutcome::UpToDate {
            version: Some(offer.version),
        });
    }
    if let Err(reason) = downgrade_guard(state.current_version.as_ref(), &offer, &manifest) {
        return refuse(client, state, Some(offer.version), reason);
    }
    match apply_offer(dir, client, state, &offer, opts) {
        Ok(outcome) => Ok(outcome),
        Err(e) if e.is_retryable() => Err(e),
        Err(e) => refuse(client, state, Some(offer.version), e.to_string()),
    }
}

/// Belt and braces beside `check_offer`: a lower version only as a signed rollback away from a
/// yanked current version.
fn downgrade_guard(
    current: Option<&Version>,
    offer: &Offer,
    manifest: &ReleaseManifest,
) -> std::result::Result<(), String> {
    let Some(current) = current else {
        return Ok(());
    };
    if &offer.version >= current {
        return Ok(());
    }
    let yanked = manifest
        .releases
        .iter()
        .any(|r| &r.version == current && r.yanked);
    if offer.rollback && yanked {
        Ok(())
    } else {
        Err(format!(
            "refusing a downgrade from {current} to {}: only a rollback away from a yanked version is allowed",
            offer.version
        ))
    }
}

/// Reports a refusal to the server and turns it into the outcome; the installed version is
/// untouched. A deactivated device still stops the agent.
fn refuse(
    client: &ServerClient,
    state: &AgentState,
    version: Option<Version>,
    reason: String,
) -> Result<RunOutcome> {
    let reported = version.as_ref().or(state.current_version.as_ref());
    report(client, reported, "failed", &reason)?;
    Ok(RunOutcome::Failed { version, reason })
}

fn manifest_refusal(e: &ManifestError) -> String {
    match e {
        ManifestError::Expired { .. } => format!(
            "{e} (the device may be frozen by someone between it and the server replaying an old answer)"
        ),
        _ => e.to_string(),
    }
}

/// Posts an event. Only a refused token matters here (it stops the agent); any other failure to
/// report is logged, since the outcome itself is already decided.
fn report(
    client: &ServerClient,
    version: Option<&Version>,
    kind: &'static str,
    message: &str,
) -> Result<()> {
    let message: String = message.chars().take(1000).collect();
    match client.post_json(
        "/v1/devices/events",
        &Event {
            version,
            kind,
            message: &message,
        },
    ) {
        Ok(answer) if matches!(answer.status, 401 | 403) => Err(AgentError::Deactivated {
            status: answer.status,
            message: answer.error_message(),
        }),
        Ok(answer) if !(200..300).contains(&answer.status) => {
            tracing::warn!(kind, status = answer.status, error = %answer.error_message(), "the server refused an event report");
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::warn!(kind, error = %e, "could not report an event");
            Ok(())
        }
    }
}

fn apply_offer(
    dir: &StateDir,
    client: &ServerClient,
    state: &mut AgentState,
    offer: &Offer,
    opts: &RunOptions,
) -> Result<RunOutcome> {
    let version = &offer.version;
    let file_name = package_file_name(&state.org, version, state.platform);
    let url = client.base().resolve(&offer.package.url)?;
    let minisig = fetch_minisig(client, &offer.package.minisig)?;
    let downloads = dir.downloads();
    fs::create_dir_all(&downloads).map_err(AgentError::io("creating", &downloads))?;
    discard_other_downloads(&downloads, &file_name)?;

    let paths = DownloadPaths::new(&downloads, &file_name);
    let verified = download(client, &url, &paths, offer.package.size).and_then(|_| {
        verify_package(
            &paths.part,
            offer.package.size,
            &offer.package.sha256,
            &state.public_key,
            &minisig,
        )
    });
    if let Err(e) = verified {
        // A broken connection keeps its partial file for the resume; anything else about the
        // bytes means they must go.
        if !e.is_retryable() {
            paths.discard()?;
        }
        return Err(e);
    }
    report(
        client,
        Some(version),
        "downloaded",
        &format!("{file_name} verified"),
    )?;

    let installed = install_package(dir, &paths.part, version, state.platform, opts);
    paths.discard()?;
    installed?;

    let previous = state.current_version.replace(version.clone());
    state.previous_version = previous.clone();
    state.last_error = None;
    // Commit before reporting and pruning: from here on the new version is the installed one.
    dir.save(state)?;
    report(
        client,
        Some(version),
        "installed",
        &format!("{version} is current"),
    )?;
    let keep: Vec<&Version> = std::iter::once(version).chain(previous.as_ref()).collect();
    if let Err(e) = prune_versions(dir, &keep) {
        tracing::warn!(error = %e, "could not remove old versions");
    }
    Ok(RunOutcome::Installed {
        version: version.clone(),
        previous,
    })
}

/// Unpacks into `versions/{version}.tmp`, renames it into place, switches `current` and runs the
/// install command; on any failure `current` points where it pointed before and the new tree is
/// gone.
fn install_package(
    dir: &StateDir,
    zip: &Path,
    version: &Version,
    platform: Platform,
    opts: &RunOptions,
) -> Result<()> {
    let versions = dir.versions();
    let staging = versions.join(format!("{version}.tmp"));
    let target = dir.version_dir(version);
    remove_tree(&staging)?;
    // Not current (`undo_uncommitted_switch` saw to that), so a stale tree of this version
    // from an earlier failed attempt can go.
    remove_tree(&target)?;
    if let Err(e) = unpack_zip(zip, &staging, opts.unpack_limits) {
        remove_tree(&staging)?;
        return Err(e);
    }
    sync_dir(&staging)?;
    fs::rename(&staging, &target).map_err(AgentError::io("renaming", &staging))?;
    sync_dir(&versions)?;

    let before = current_target(dir);
    switch_current(dir, Some(version))?;
    let command = match &opts.install_command {
        Some(command) => command.clone(),
        None => package_install_command(&target, platform)?,
    };
    {
        if let Err(e) = run_install_command(dir, &command, version, opts.install_timeout) {
            switch_current(dir, before.as_ref())?;
            remove_tree(&target)?;
            return Err(e);
        }
    }
    Ok(())
}

/// The unpacked package's own install script, run as a person would run it by hand (CONTRACT
/// 7a); the agent's environment, `DEPOT_ROOT` included, passes through to it.
fn package_install_command(version_dir: &Path, platform: Platform) -> Result<String> {
    use crate::domain::Os;
    let (script, command) = match platform.os() {
        Os::Linux => ("install.sh", "sh ./install.sh"),
        Os::Macos => ("install.command", "/bin/bash ./install.command"),
        Os::Windows => (
            "install.ps1",
            "powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -File .\\install.ps1",
        ),
    };
    if version_dir.join(script).is_file() {
        Ok(command.to_string())
    } else {
        Err(AgentError::InstallCommand {
            reason: format!("the package has no {script} to install it with"),
        })
    }
}

/// `package.minisig` is the signature text itself or the URL of the `.minisig` file.
fn fetch_minisig(client: &ServerClient, minisig: &str) -> Result<String> {
    if minisig.trim_start().starts_with("untrusted comment:") {
        return Ok(minisig.to_string());
    }
    let url = client.base().resolve(minisig)?;
    let answer = client.get_minisig(&url)?;
    match answer.status {
        200 => String::from_utf8(answer.body).map_err(|_| AgentError::PackageRejected {
            reason: "the .minisig file is not text".into(),
        }),
        status @ (401 | 403) => Err(AgentError::Deactivated {
            status,
            message: answer.error_message(),
        }),
        status => Err(AgentError::HttpStatus {
            url,
            status,
            message: answer.error_message(),
        }),
    }
}

/// Partial downloads of versions no longer offered only take space.
fn discard_other_downloads(downloads: &Path, keep: &str) -> Result<()> {
    let entries = fs::read_dir(downloads).map_err(AgentError::io("listing", downloads))?;
    for entry in entries {
        let entry = entry.map_err(AgentError::io("listing", downloads))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with(keep) {
            remove_tree(&entry.path())?;
        }
    }
    Ok(())
}

/// `state.json` is the truth; `current` pointing elsewhere is a switch that a crash interrupted
/// before the commit, and is undone.
fn undo_uncommitted_switch(dir: &StateDir, state: &AgentState) -> Result<()> {
    let committed = state
        .current_version
        .as_ref()
        .filter(|v| dir.version_dir(v).is_dir());
    if current_target(dir).as_ref() != committed {
        switch_current(dir, committed)?;
    }
    Ok(())
}

/// Checks forever, every `interval` plus up to `jitter`, until an error that retrying cannot fix
/// (not enrolled, deactivated, a broken state file or server URL).
pub fn run(dir: &Path, opts: &RunOptions) -> Result<std::convert::Infallible> {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let mut jitter = || {
        let max = opts.jitter.as_millis().min(u128::from(u64::MAX)) as u64;
        Duration::from_millis(if max == 0 { 0 } else { rng.gen_range(0..=max) })
    };
    std::thread::sleep(jitter());
    loop {
        match run_once(dir, opts) {
            Ok(outcome) => tracing::info!(?outcome, "update check done"),
            Err(e) if e.stops_the_agent() => return Err(e),
            Err(e) => tracing::warn!(error = %e, "update check failed; retrying later"),
        }
        std::thread::sleep(opts.interval + jitter());
    }
}

impl AgentError {
    /// Whether the same run later may succeed with nothing changed on the device: the network,
    /// an overloaded server, another agent holding the lock.
    pub fn is_retryable(&self) -> bool {
        match self {
            AgentError::Network { .. } | AgentError::Locked { .. } => true,
            AgentError::HttpStatus { status, .. } => *status >= 500 || matches!(status, 408 | 429),
            _ => false,
        }
    }

    /// Whether [`run`] must stop instead of trying again at the next interval.
    pub fn stops_the_agent(&self) -> bool {
        matches!(
            self,
            AgentError::NotEnrolled { .. }
                | AgentError::Deactivated { .. }
                | AgentError::BadState { .. }
                | AgentError::BadServerUrl { .. }
        )
    }
}

#[cfg(test)]
mod tests;
