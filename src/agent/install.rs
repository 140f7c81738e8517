//! Installing an unpacked version: the atomic switch of `DIR/current`, the optional install
//! command, and pruning old versions.
//!
//! `current` is a symlink to `versions/{version}` (relative, so that the state directory can be
//! moved). It is switched by creating `current.tmp` and renaming it over `current`, which is
//! atomic on POSIX: a reader sees the old target or the new one, never no link.

use super::state::{sync_dir, StateDir};
use super::{AgentError, Result};
use crate::domain::Version;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How much of the install command's output a failure report quotes.
const LOG_TAIL_BYTES: u64 = 600;

/// The version `current` points at, when it points at a well-formed `versions/{version}`.
pub fn current_target(dir: &StateDir) -> Option<Version> {
    let target = fs::read_link(dir.current_link()).ok()?;
    let mut components = target.components();
    match (components.next(), components.next(), components.next()) {
        (Some(first), Some(name), None) if first.as_os_str() == "versions" => {
            Version::parse(name.as_os_str().to_str()?).ok()
        }
        _ => None,
    }
}

/// Points `current` at `versions/{version}`, or removes it for `None`, atomically.
pub fn switch_current(dir: &StateDir, version: Option<&Version>) -> Result<()> {
    let link = dir.current_link();
    let Some(version) = version else {
        return match fs::remove_file(&link) {
            Ok(()) => sync_dir(dir.root()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(AgentError::io("removing", &link)(e)),
        };
    };
    let tmp = dir.root().join("current.tmp");
    // A leftover from a crash between the two steps below.
    let _ = fs::remove_file(&tmp);
    let target = Path::new("versions").join(version.to_string());
    symlink_dir(&target, &tmp).map_err(AgentError::io("creating the symlink", &tmp))?;
    fs::rename(&tmp, &link).map_err(AgentError::io("switching", &link))?;
    sync_dir(dir.root())
}

#[cfg(unix)]
fn symlink_dir(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(windows)]
fn symlink_dir(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::windows::fs::symlink_dir(target, link)
}

/// Runs the install command for a freshly switched version: through the platform shell, in the
/// version's directory, with `DEPOT_VERSION` and `DEPOT_VERSION_DIR` set, its output appended to
/// `DIR/install.log`. A non-zero exit, a signal or the timeout is an error quoting the log's tail.
pub fn run_install_command(
    dir: &StateDir,
    command: &str,
    version: &Version,
    timeout: Duration,
) -> Result<()> {
    let version_dir = absolute(&dir.version_dir(version))?;
    let log_path = dir.install_log();
    // Appended to: the log keeps every install's output, the failure quotes this one's tail.
    let mut log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(AgentError::io("opening", &log_path))?;
    {
        use std::io::Write;
        writeln!(log, "--- {version}: {command}").map_err(AgentError::io("writing", &log_path))?;
    }
    let log_err = log
        .try_clone()
        .map_err(AgentError::io("opening", &log_path))?;
    let mut child = shell(command)
        .current_dir(&version_dir)
        .env("DEPOT_VERSION", version.to_string())
        .env("DEPOT_VERSION_DIR", &version_dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(|e| AgentError::InstallCommand {
            reason: format!("could not start `{command}`: {e}"),
        })?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(AgentError::InstallCommand {
                    reason: format!(
                        "`{command}` did not finish within {} s and was killed{}",
                        timeout.as_secs(),
                        log_tail(&log_path)
                    ),
                });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => {
                return Err(AgentError::InstallCommand {
                    reason: format!("waiting for `{command}` failed: {e}"),
                })
            }
        }
    };
    if status.success() {
        Ok(())
    } else {
        Err(AgentError::InstallCommand {
            reason: format!("`{command}` failed ({status}){}", log_tail(&log_path)),
        })
    }
}

#[cfg(unix)]
fn shell(command: &str) -> Command {
    let mut c = Command::new("/bin/sh");
    c.arg("-c").arg(command);
    c
}

#[cfg(windows)]
fn shell(command: &str) -> Command {
    let mut c = Command::new("cmd");
    c.arg("/C").arg(command);
    c
}

/// `": <last lines of the log>"`, or nothing when the log is empty or unreadable.
fn log_tail(path: &Path) -> String {
    let Ok(mut file) = fs::File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(LOG_TAIL_BYTES);
    let mut tail = Vec::new();
    if std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(start)).is_err()
        || file.read_to_end(&mut tail).is_err()
    {
        return String::new();
    }
    let text = String::from_utf8_lossy(&tail);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(AgentError::io("resolving", path))
}

/// Removes every entry of `versions/` other than the current and previous versions: older
/// versions, failed attempts and `.tmp` leftovers of a crash.
pub fn prune_versions(dir: &StateDir, keep: &[&Version]) -> Result<()> {
    let versions = dir.versions();
    let entries = fs::read_dir(&versions).map_err(AgentError::io("listing", &versions))?;
    let keep: Vec<String> = keep.iter().map(|v| v.to_string()).collect();
    for entry in entries {
        let entry = entry.map_err(AgentError::io("listing", &versions))?;
        let name = entry.file_name();
        if keep.iter().any(|k| name.as_os_str() == k.as_str()) {
            continue;
        }
        remove_tree(&entry.path())?;
    }
    Ok(())
}

/// Removes a directory tree or a file; a missing path is fine.
pub fn remove_tree(path: &Path) -> Result<()> {
    let result = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    result.map_err(AgentError::io("removing", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn state_dir() -> (tempfile::TempDir, StateDir) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path().join("agent"));
        dir.create().unwrap();
        (tmp, dir)
    }

    #[test]
    fn switch_is_atomic_and_reversible() {
        let (_tmp, dir) = state_dir();
        assert_eq!(current_target(&dir), None);
        for version in ["1.0.0", "1.1.0"] {
            fs::create_dir(dir.version_dir(&v(version))).unwrap();
            fs::write(dir.version_dir(&v(version)).join("marker"), version).unwrap();
        }
        switch_current(&dir, Some(&v("1.0.0"))).unwrap();
        assert_eq!(current_target(&dir), Some(v("1.0.0")));
        switch_current(&dir, Some(&v("1.1.0"))).unwrap();
        assert_eq!(current_target(&dir), Some(v("1.1.0")));
        assert_eq!(
            fs::read_to_string(dir.current_link().join("marker")).unwrap(),
            "1.1.0"
        );
        assert!(!dir.root().join("current.tmp").exists());
        // A crash left a stale current.tmp behind: the next switch still works.
        symlink_dir(Path::new("versions/9.9.9"), &dir.root().join("current.tmp")).unwrap();
        switch_current(&dir, Some(&v("1.0.0"))).unwrap();
        assert_eq!(current_target(&dir), Some(v("1.0.0")));
        switch_current(&dir, None).unwrap();
        assert!(fs::symlink_metadata(dir.current_link()).is_err());
        switch_current(&dir, None).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn install_command_sees_its_version_and_failures_quote_the_log() {
        let (_tmp, dir) = state_dir();
        let version = v("2.0.0");
        fs::create_dir(dir.version_dir(&version)).unwrap();
        run_install_command(
            &dir,
            "echo \"$DEPOT_VERSION $DEPOT_VERSION_DIR\" > seen && pwd >> seen",
            &version,
            Duration::from_secs(10),
        )
        .unwrap();
        let seen = fs::read_to_string(dir.version_dir(&version).join("seen")).unwrap();
        let abs = std::path::absolute(dir.version_dir(&version)).unwrap();
        assert!(
            seen.starts_with(&format!("2.0.0 {}", abs.display())),
            "{seen}"
        );

        let err = run_install_command(
            &dir,
            "echo msiexec said 1603 >&2; exit 3",
            &version,
            Duration::from_secs(10),
        )
        .unwrap_err();
        let message = err.to_string();
        assert!(message.contains("exit status: 3"), "{message}");
        assert!(message.contains("msiexec said 1603"), "{message}");

        let started = Instant::now();
        let err = run_install_command(&dir, "sleep 30", &version, Duration::from_millis(200))
            .unwrap_err();
        assert!(err.to_string().contains("did not finish"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn prune_keeps_current_and_previous_only() {
        let (_tmp, dir) = state_dir();
        for name in ["1.0.0", "1.1.0", "1.2.0", "1.3.0.tmp"] {
            fs::create_dir(dir.versions().join(name)).unwrap();
        }
        prune_versions(&dir, &[&v("1.2.0"), &v("1.1.0")]).unwrap();
        let mut left: Vec<_> = fs::read_dir(dir.versions())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["1.1.0", "1.2.0"]);
    }
}
