//! The agent's state directory: `state.json` (what the device is and what it last accepted),
//! `downloads/`, `versions/{version}/` and the `current` symlink.
//!
//! `state.json` holds the device token, so it is written with mode 0600, and always atomically
//! (temp file, fsync, rename, fsync of the directory): it is the commit point of every change,
//! written last, so that a crash leaves either the old state or the new one, never a mix.

use super::{AgentError, Result};
use crate::domain::{OrgCode, Platform, Version};
use crate::signing::PublicKey;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A state file larger than this was not written by the agent.
const MAX_STATE_BYTES: u64 = 256 * 1024;

/// What the agent knows and has committed. The device token is a secret: `Debug` hides it and
/// [`AgentStatus`](super::AgentStatus) never carries it.
#[derive(Clone, Serialize, Deserialize)]
pub struct AgentState {
    /// Base URL of the depot server, without a trailing `/`.
    pub server_url: String,
    pub org: OrgCode,
    pub device_id: String,
    pub device_token: String,
    /// The minisign public key pinned at enrollment, from the installer package.
    #[serde(with = "public_key_line")]
    pub public_key: PublicKey,
    pub platform: Platform,
    /// Unix seconds.
    pub enrolled_at: i64,
    /// The highest release-manifest serial accepted so far; a lower one is a replay.
    #[serde(default)]
    pub last_serial: Option<u64>,
    /// Unix seconds of the last update check that got an answer.
    #[serde(default)]
    pub last_check: Option<i64>,
    #[serde(default)]
    pub current_version: Option<Version>,
    #[serde(default)]
    pub previous_version: Option<Version>,
    /// Why the last run failed; cleared by the next run that succeeds.
    #[serde(default)]
    pub last_error: Option<String>,
}

impl std::fmt::Debug for AgentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentState")
            .field("server_url", &self.server_url)
            .field("org", &self.org)
            .field("device_id", &self.device_id)
            .field("device_token", &"<redacted>")
            .field("public_key", &self.public_key)
            .field("platform", &self.platform)
            .field("last_serial", &self.last_serial)
            .field("current_version", &self.current_version)
            .field("previous_version", &self.previous_version)
            .field("last_error", &self.last_error)
            .finish_non_exhaustive()
    }
}

mod public_key_line {
    use crate::signing::PublicKey;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(key: &PublicKey, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&key.to_line())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PublicKey, D::Error> {
        let line = String::deserialize(d)?;
        PublicKey::parse(&line).map_err(serde::de::Error::custom)
    }
}

/// The paths of a state directory. Every name below it is fixed or built from validated domain
/// types; nothing the server sends becomes a path.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn state_file(&self) -> PathBuf {
        self.root.join("state.json")
    }

    pub fn lock_file(&self) -> PathBuf {
        self.root.join("agent.lock")
    }

    pub fn downloads(&self) -> PathBuf {
        self.root.join("downloads")
    }

    pub fn versions(&self) -> PathBuf {
        self.root.join("versions")
    }

    pub fn version_dir(&self, version: &Version) -> PathBuf {
        self.versions().join(version.to_string())
    }

    pub fn current_link(&self) -> PathBuf {
        self.root.join("current")
    }

    pub fn install_log(&self) -> PathBuf {
        self.root.join("install.log")
    }

    /// Creates the directory tree; the root is private to the user (0700), as it holds the
    /// device token.
    pub fn create(&self) -> Result<()> {
        create_private_dir(&self.root)?;
        for dir in [self.downloads(), self.versions()] {
            fs::create_dir_all(&dir).map_err(AgentError::io("creating", &dir))?;
        }
        Ok(())
    }

    /// The enrolled state, or [`AgentError::NotEnrolled`] when there is none.
    pub fn load(&self) -> Result<AgentState> {
        let path = self.state_file();
        let file = match fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(AgentError::NotEnrolled {
                    dir: self.root.clone(),
                })
            }
            Err(e) => return Err(AgentError::io("opening", &path)(e)),
        };
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(file, MAX_STATE_BYTES + 1),
            &mut bytes,
        )
        .map_err(AgentError::io("reading", &path))?;
        if bytes.len() as u64 > MAX_STATE_BYTES {
            return Err(AgentError::BadState {
                path,
                reason: format!("larger than {MAX_STATE_BYTES} bytes"),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| AgentError::BadState {
            path,
            reason: e.to_string(),
        })
    }

    pub fn exists(&self) -> bool {
        self.state_file().exists()
    }

    /// Writes `state.json` atomically with mode 0600: a reader (or a crash) sees the old file
    /// or the new one.
    pub fn save(&self, state: &AgentState) -> Result<()> {
        let path = self.state_file();
        let json = serde_json::to_vec_pretty(state).map_err(|e| AgentError::BadState {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        // tempfile creates the file 0600 on Unix, before any byte of the token is in it.
        let mut tmp = tempfile::Builder::new()
            .prefix(".state.json.")
            .tempfile_in(&self.root)
            .map_err(AgentError::io("creating a temporary file in", &self.root))?;
        tmp.write_all(&json)
            .and_then(|()| tmp.write_all(b"\n"))
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(AgentError::io("writing", tmp.path()))?;
        tmp.persist(&path)
            .map_err(|e| AgentError::io("replacing", &path)(e.error))?;
        sync_dir(&self.root)
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(AgentError::io("creating", dir))
}

/// Makes a rename or a new entry in `dir` durable. Windows has no directory handles to sync and
/// orders metadata updates itself.
pub(super) fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(AgentError::io("syncing", dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample_state() -> AgentState {
        AgentState {
            server_url: "http://127.0.0.1:1".into(),
            org: OrgCode::parse("physics").unwrap(),
            device_id: "dev-1".into(),
            device_token: "secret-token".into(),
            public_key: crate::signing::SigningKey::generate().public_key(),
            platform: Platform::parse("linux-x86_64").unwrap(),
            enrolled_at: 1_700_000_000,
            last_serial: Some(7),
            last_check: None,
            current_version: Some(Version::parse("11.2.1").unwrap()),
            previous_version: None,
            last_error: None,
        }
    }

    #[test]
    fn save_load_round_trip_is_private_and_atomic() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path().join("agent"));
        assert!(matches!(dir.load(), Err(AgentError::NotEnrolled { .. })));
        dir.create().unwrap();
        let state = sample_state();
        dir.save(&state).unwrap();
        let back = dir.load().unwrap();
        assert_eq!(back.device_token, "secret-token");
        assert_eq!(back.public_key.to_line(), state.public_key.to_line());
        assert_eq!(back.current_version, state.current_version);
        assert!(!format!("{back:?}").contains("secret-token"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir.state_file()), 0o600);
            assert_eq!(mode(dir.root()), 0o700);
        }
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(dir.root())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().all(|n| !n.starts_with(".state")), "{names:?}");
    }

    #[test]
    fn corrupt_or_huge_state_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path());
        fs::write(dir.state_file(), b"{not json").unwrap();
        assert!(matches!(dir.load(), Err(AgentError::BadState { .. })));
        fs::write(dir.state_file(), vec![b' '; MAX_STATE_BYTES as usize + 10]).unwrap();
        let err = dir.load().unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err}");
    }
}
