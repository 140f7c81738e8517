//! `depot agent enroll`: registers this machine with its org and pins the package's public key.
//!
//! Values come from the installer's `deploy.properties` (`--from`); a flag given beside it wins.
//! The public key and the org are pinned from the package, never taken from the server: a server
//! (or a man in the middle) that answers for another org is refused.

use super::http::{ServerClient, ServerUrl};
use super::properties::{DeployProperties, Properties, MAX_PROPERTIES_BYTES};
use super::state::{AgentState, StateDir};
use super::{lock, unix_now, AgentError, Result};
use crate::domain::{OrgCode, Platform, RegistrationKey, Version};
use crate::signing::{digest_reader, PublicKey};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What `depot agent enroll` was given. `None` falls back to `deploy.properties`, then to this
/// machine (platform, host facts).
#[derive(Debug, Clone, Default)]
pub struct EnrollOptions {
    /// The installer package's `deploy.properties`.
    pub from: Option<PathBuf>,
    pub server: Option<ServerUrl>,
    pub registration_key: Option<RegistrationKey>,
    pub public_key: Option<PublicKey>,
    pub platform: Option<Platform>,
    /// The client version installed on this machine, when the caller knows it.
    pub installed_version: Option<Version>,
    /// What the server records about the machine; detected when `None`.
    pub host: Option<HostFacts>,
}

/// What the enrollment request says about the machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostFacts {
    pub hostname: String,
    pub os_version: String,
    pub user: String,
}

impl HostFacts {
    /// Best effort: a fact that cannot be found is `"unknown"`, never an error.
    pub fn detect() -> Self {
        let clean = |s: Option<String>| {
            s.map(|s| {
                s.trim()
                    .chars()
                    .filter(|&c| !c.is_control() && !crate::domain::is_hidden(c))
                    .take(200)
                    .collect::<String>()
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown".into())
        };
        Self {
            hostname: clean(detect_hostname()),
            os_version: clean(detect_os_version()),
            user: clean(
                std::env::var("USER")
                    .or_else(|_| std::env::var("USERNAME"))
                    .ok(),
            ),
        }
    }
}

/// `AGENT_USERNAME` as the package's `detect-user.sh` (`detect-user.ps1` on Windows) in `dir`
/// prints it; `None` when there is no script, it exits non-zero (nobody suitable logged in) or
/// prints no name.
pub fn detected_user(dir: &Path, platform: Platform) -> Option<String> {
    let output = match platform.os() {
        crate::domain::Os::Windows => {
            let script = dir.join("detect-user.ps1");
            if !script.is_file() {
                return None;
            }
            Command::new("powershell.exe")
                .args([
                    "-NoProfile",
                    "-NonInteractive",
                    "-ExecutionPolicy",
                    "Bypass",
                    "-File",
                ])
                .arg(script)
                .output()
        }
        _ => {
            let script = dir.join("detect-user.sh");
            if !script.is_file() {
                return None;
            }
            Command::new("/bin/sh").arg(script).output()
        }
    }
    .ok()
    .filter(|out| out.status.success())?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("AGENT_USERNAME="))
        .map(|u| {
            u.chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect::<String>()
        })
        .filter(|u| !u.is_empty())
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn detect_hostname() -> Option<String> {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .or_else(|| command_output("hostname", &[]))
}

fn detect_os_version() -> Option<String> {
    match std::env::consts::OS {
        "linux" => fs::read_to_string("/etc/os-release").ok().and_then(|text| {
            Properties::parse(&text)
                .ok()?
                .get("PRETTY_NAME")
                .map(|v| v.trim_matches('"').to_string())
        }),
        "macos" => {
            command_output("sw_vers", &["-productVersion"]).map(|v| format!("macOS {}", v.trim()))
        }
        "windows" => command_output("cmd", &["/C", "ver"]),
        _ => None,
    }
}

/// The platform of the running machine, when it is one depot builds for.
pub fn this_platform() -> Option<Platform> {
    let os = match std::env::consts::OS {
        "linux" => "linux",
        "macos" => "macos",
        "windows" => "windows",
        _ => return None,
    };
    Platform::parse(&format!("{os}-{}", std::env::consts::ARCH)).ok()
}

/// The result of an enrollment.
#[derive(Debug, Clone, Serialize)]
pub struct EnrollOutcome {
    pub device_id: String,
    pub org: OrgCode,
    pub server_url: String,
    pub platform: Platform,
    pub public_key_id: String,
    pub current_version: Option<Version>,
    /// The state directory was enrolled already with this server; nothing was sent.
    pub already_enrolled: bool,
}

#[derive(Serialize)]
struct EnrollRequest<'a> {
    registration_key: &'a str,
    hostname: &'a str,
    platform: Platform,
    os_version: &'a str,
    user: &'a str,
}

#[derive(Deserialize)]
struct EnrollAnswer {
    device_id: String,
    device_token: String,
    org: String,
}

/// Enrolls the machine and writes `DIR/state.json`. Enrolling a directory that is enrolled with
/// the same server again is a no-op (installer scripts may run twice); with another server it
/// is refused: remove `state.json` first to move the device.
pub fn enroll(dir: &Path, opts: &EnrollOptions) -> Result<EnrollOutcome> {
    let deploy = match &opts.from {
        Some(path) => read_deploy_properties(path)?,
        None => DeployProperties::default(),
    };
    let server = match (&opts.server, &deploy.server_url) {
        (Some(url), _) => url.clone(),
        (None, Some(url)) => ServerUrl::parse(url)?,
        (None, None) => {
            return Err(AgentError::Missing {
                what: "server URL",
                hint: "give --server or --from a deploy.properties with DEPOT_SERVER_URL",
            })
        }
    };
    let dir = StateDir::new(dir);
    dir.create()?;
    // Held across the check below and the write of the new state: two concurrent enrollments
    // of one directory must not register two devices.
    let _lock = lock(&dir)?;
    if dir.exists() {
        let state = dir.load()?;
        if state.server_url != server.as_str() {
            return Err(AgentError::BadOption {
                field: "--server",
                reason: format!(
                    "{} is already enrolled with {} as device {}; remove {} to enroll it again",
                    dir.root().display(),
                    state.server_url,
                    state.device_id,
                    dir.state_file().display()
                ),
            });
        }
        return Ok(outcome(&state, true));
    }
    let registration_key = opts
        .registration_key
        .clone()
        .or(deploy.registration_key.clone())
        .ok_or(AgentError::Missing {
            what: "registration key",
            hint:
                "give --registration-key or --from a deploy.properties with DEPOT_REGISTRATION_KEY",
        })?;
    let public_key = opts
        .public_key
        .clone()
        .or(deploy.public_key.clone())
        .ok_or(AgentError::Missing {
            what: "public key",
            hint: "it is pinned from the installer package, never fetched from the server: give --public-key or --from a deploy.properties with DEPOT_PUBLIC_KEY",
        })?;
    let platform = opts
        .platform
        .or(deploy.platform)
        .or_else(this_platform)
        .ok_or(AgentError::Missing {
            what: "platform",
            hint: "this machine is not a platform depot builds for; give DEPOT_PLATFORM in deploy.properties",
        })?;
    let current_version = match &opts.installed_version {
        Some(v) => Some(v.clone()),
        None => match &opts.from {
            Some(path) => installed_package_version(path, &deploy)?,
            None => None,
        },
    };
    let host = opts.host.clone().unwrap_or_else(|| {
        let mut host = HostFacts::detect();
        // The package's user-detection script knows who the machine belongs to; the agent
        // runs as root or SYSTEM, whose own name says nothing.
        if let Some(user) = opts
            .from
            .as_deref()
            .and_then(Path::parent)
            .and_then(|dir| detected_user(dir, platform))
        {
            host.user = user;
        }
        host
    });

    let client = ServerClient::new(server.clone(), None);
    let answer = client.post_json(
        "/v1/devices/enroll",
        &EnrollRequest {
            registration_key: registration_key.as_str(),
            hostname: &host.hostname,
            platform,
            os_version: &host.os_version,
            user: &host.user,
        },
    )?;
    let url = server.endpoint("/v1/devices/enroll");
    let answer: EnrollAnswer = match answer.status {
        200 | 201 => answer.json("enroll")?,
        status @ (401 | 403 | 429) => {
            return Err(AgentError::EnrollmentRefused {
                status,
                message: answer.error_message(),
            })
        }
        status => {
            return Err(AgentError::HttpStatus {
                url,
                status,
                message: answer.error_message(),
            })
        }
    };
    let bad = |reason: String| AgentError::BadResponse {
        endpoint: "enroll".into(),
        reason,
    };
    let org = OrgCode::parse(&answer.org).map_err(|e| bad(e.to_string()))?;
    if let Some(expected) = &deploy.org {
        if expected != &org {
            return Err(bad(format!(
                "the server enrolled the device in org {org}, but the installer package is for org {expected}"
            )));
        }
    }
    check_credential("device_id", &answer.device_id, 128).map_err(bad)?;
    check_credential("device_token", &answer.device_token, 512).map_err(bad)?;
    let state = AgentState {
        server_url: server.as_str().to_string(),
        org,
        device_id: answer.device_id,
        device_token: answer.device_token,
        public_key,
        platform,
        enrolled_at: unix_now(),
        last_serial: None,
        last_check: None,
        current_version,
        previous_version: None,
        last_error: None,
    };
    dir.save(&state)?;
    Ok(outcome(&state, false))
}

fn outcome(state: &AgentState, already_enrolled: bool) -> EnrollOutcome {
    EnrollOutcome {
        device_id: state.device_id.clone(),
        org: state.org.clone(),
        server_url: state.server_url.clone(),
        platform: state.platform,
        public_key_id: state.public_key.key_id(),
        current_version: state.current_version.clone(),
        already_enrolled,
    }
}

/// A device id or token goes into a header and a log line: printable ASCII, bounded.
fn check_credential(field: &str, value: &str, max: usize) -> std::result::Result<(), String> {
    if value.is_empty() || value.len() > max || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{field} must be 1-{max} printable ASCII characters"
        ));
    }
    Ok(())
}

fn read_deploy_properties(path: &Path) -> Result<DeployProperties> {
    let file = fs::File::open(path).map_err(AgentError::io("opening", path))?;
    let mut bytes = Vec::new();
    file.take(MAX_PROPERTIES_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(AgentError::io("reading", path))?;
    let wrap = |source| AgentError::Properties {
        path: path.to_path_buf(),
        source,
    };
    DeployProperties::from_properties(&Properties::parse_bytes(&bytes).map_err(wrap)?).map_err(wrap)
}

/// The package's `DEPOT_VERSION` counts as installed only when `deploy.properties` sits in the
/// unpacked package itself: its payload is beside it with the SHA-256 the file names. A copy of
/// `deploy.properties` placed elsewhere before an install proves nothing about what got
/// installed; then the version stays unknown until the first update.
fn installed_package_version(path: &Path, deploy: &DeployProperties) -> Result<Option<Version>> {
    let (Some(version), Some(payload), Some(sha256)) =
        (&deploy.version, &deploy.payload, &deploy.payload_sha256)
    else {
        return Ok(None);
    };
    if payload.is_empty()
        || payload.contains(['/', '\\', ':', '\0'])
        || payload == "."
        || payload == ".."
    {
        return Ok(None);
    }
    let Some(package_dir) = path.parent() else {
        return Ok(None);
    };
    let payload_path = package_dir.join(payload);
    let mut file = match fs::File::open(&payload_path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(AgentError::io("opening", &payload_path)(e)),
    };
    let (digest, _) = digest_reader(&mut file)
        .map_err(|e| AgentError::Io {
            action: "reading",
            path: payload_path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?
        .finish();
    Ok((digest == *sha256).then(|| version.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn the_packages_user_detection_script_names_the_user() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(detected_user(tmp.path(), Platform::LinuxX86_64), None);
        let script = tmp.path().join("detect-user.sh");
        fs::write(
            &script,
            "echo AGENT_USERNAME=ada@example.edu\necho AGENT_USER_HOME=/home/ada\n",
        )
        .unwrap();
        assert_eq!(
            detected_user(tmp.path(), Platform::LinuxX86_64).as_deref(),
            Some("ada@example.edu")
        );
        // Nobody suitable logged in: the script exits 1 and the name stays undetected.
        fs::write(&script, "echo 'No suitable user' >&2\nexit 1\n").unwrap();
        assert_eq!(detected_user(tmp.path(), Platform::LinuxX86_64), None);
    }
    use crate::agent::test_server::TestServer;
    use crate::signing::SigningKey;
    use serde_json::json;

    fn host() -> HostFacts {
        HostFacts {
            hostname: "lab-pc-7".into(),
            os_version: "Ubuntu 24.04".into(),
            user: "ada@example.edu".into(),
        }
    }

    /// An unpacked package directory: payload and deploy.properties side by side.
    fn package_dir(server: &str, key: &PublicKey, org: &str) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let payload = b"the backup client installer";
        fs::write(tmp.path().join("client.tgz"), payload).unwrap();
        fs::write(
            tmp.path().join("deploy.properties"),
            format!(
                "CP_SILENT=true\nDEPOT_SERVER_URL={}\nDEPOT_ORG={org}\n\
                 DEPOT_REGISTRATION_KEY=7QKX-M2PA-9D4R-HV0T\nDEPOT_CHANNEL=stable\n\
                 DEPOT_PUBLIC_KEY={}\nDEPOT_VERSION=11.2.1\nDEPOT_PLATFORM=linux-aarch64\n\
                 DEPOT_PAYLOAD=client.tgz\nDEPOT_PAYLOAD_SHA256={}\n",
                server.replace(':', "\\:"),
                key.to_line(),
                crate::domain::Sha256::digest(payload)
            ),
        )
        .unwrap();
        tmp
    }

    #[test]
    fn enrolls_from_deploy_properties_and_pins_the_package_key() {
        let server = TestServer::start();
        server.json(
            "POST",
            "/v1/devices/enroll",
            201,
            &json!({"device_id": "d-123", "device_token": "tok-secret", "org": "physics"}),
        );
        let key = SigningKey::generate().public_key();
        let package = package_dir(&server.url, &key, "physics");
        let state_dir = tempfile::tempdir().unwrap();
        let opts = EnrollOptions {
            from: Some(package.path().join("deploy.properties")),
            host: Some(host()),
            ..Default::default()
        };
        let outcome = enroll(state_dir.path(), &opts).unwrap();
        assert_eq!(outcome.device_id, "d-123");
        assert!(!outcome.already_enrolled);
        assert_eq!(
            outcome.current_version,
            Some(Version::parse("11.2.1").unwrap())
        );
        assert_eq!(outcome.platform, Platform::parse("linux-aarch64").unwrap());

        let sent = &server.requests_to("/v1/devices/enroll")[0];
        let body: serde_json::Value = serde_json::from_slice(&sent.body).unwrap();
        assert_eq!(
            body,
            json!({"registration_key": "7QKX-M2PA-9D4R-HV0T", "hostname": "lab-pc-7",
                   "platform": "linux-aarch64", "os_version": "Ubuntu 24.04", "user": "ada@example.edu"})
        );
        assert!(!sent.headers.contains_key("authorization"));
        let state = StateDir::new(state_dir.path()).load().unwrap();
        assert_eq!(state.public_key.to_line(), key.to_line());
        assert_eq!(state.device_token, "tok-secret");
        assert_eq!(state.server_url, server.url);

        // Running it again changes nothing and sends nothing.
        let again = enroll(state_dir.path(), &opts).unwrap();
        assert!(again.already_enrolled);
        assert_eq!(server.requests_to("/v1/devices/enroll").len(), 1);
        // Another server is refused while enrolled.
        let other = EnrollOptions {
            server: Some(ServerUrl::parse("https://elsewhere.example").unwrap()),
            ..opts
        };
        assert!(enroll(state_dir.path(), &other).is_err());
    }

    #[test]
    fn flags_override_the_file_and_an_unproven_version_stays_unknown() {
        let server = TestServer::start();
        server.json(
            "POST",
            "/v1/devices/enroll",
            201,
            &json!({"device_id": "d-9", "device_token": "t", "org": "physics"}),
        );
        let file_key = SigningKey::generate().public_key();
        let flag_key = SigningKey::generate().public_key();
        let package = package_dir("https://wrong.example", &file_key, "physics");
        // The payload beside deploy.properties is not the one it names.
        fs::write(package.path().join("client.tgz"), b"something else").unwrap();
        let state_dir = tempfile::tempdir().unwrap();
        let outcome = enroll(
            state_dir.path(),
            &EnrollOptions {
                from: Some(package.path().join("deploy.properties")),
                server: Some(ServerUrl::parse(&server.url).unwrap()),
                public_key: Some(flag_key.clone()),
                registration_key: Some(RegistrationKey::parse("ABCD-EFGH-JKMN-PQRS").unwrap()),
                host: Some(host()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(outcome.current_version, None);
        assert_eq!(outcome.public_key_id, flag_key.key_id());
        let body: serde_json::Value =
            serde_json::from_slice(&server.requests_to("/v1/devices/enroll")[0].body).unwrap();
        assert_eq!(body["registration_key"], "ABCD-EFGH-JKMN-PQRS");
    }

    #[test]
    fn refusals_are_clear_and_leave_no_state() {
        let server = TestServer::start();
        let key = SigningKey::generate().public_key();
        let package = package_dir(&server.url, &key, "physics");
        let opts = EnrollOptions {
            from: Some(package.path().join("deploy.properties")),
            host: Some(host()),
            ..Default::default()
        };
        let cases = [
            (
                403,
                json!({"error": {"code": "forbidden", "message": "wrong registration key"}}),
                "refused the registration key",
            ),
            (
                429,
                json!({"error": {"code": "rate_limited", "message": "slow down"}}),
                "slow down",
            ),
            (
                201,
                json!({"device_id": "d", "device_token": "t", "org": "chemistry"}),
                "for org physics",
            ),
            (
                201,
                json!({"device_id": "d", "device_token": "has space", "org": "physics"}),
                "device_token",
            ),
            (201, json!({"unexpected": true}), "malformed JSON"),
            (500, json!("boom"), "HTTP 500"),
        ];
        for (status, body, needle) in cases {
            server.json("POST", "/v1/devices/enroll", status, &body);
            let state_dir = tempfile::tempdir().unwrap();
            let err = enroll(state_dir.path(), &opts).unwrap_err().to_string();
            assert!(err.contains(needle), "{status} {body}: {err}");
            assert!(!StateDir::new(state_dir.path()).exists());
        }
        let no_key = EnrollOptions {
            server: Some(ServerUrl::parse(&server.url).unwrap()),
            registration_key: Some(RegistrationKey::parse("ABCD-EFGH-JKMN-PQRS").unwrap()),
            ..Default::default()
        };
        let err = enroll(tempfile::tempdir().unwrap().path(), &no_key).unwrap_err();
        assert!(
            err.to_string().contains("never fetched from the server"),
            "{err}"
        );
    }
}
