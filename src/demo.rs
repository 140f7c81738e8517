//! `depot demo`: a whole working system in a fresh directory, made through the same library
//! calls as real use. The payloads are synthetic sample files (random bytes named like client
//! installers), and the summary says so.

use crate::config::Settings;
use crate::domain::{Channel, EntryName, OrgCode, Platform, Version};
use crate::org::{BackupSelection, OrgConfig, OrgConfigInput};
use crate::service::{Actor, Depot, NewToken, PayloadSource, Progress};
use crate::store::Role;
use rand::{RngCore, SeedableRng};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Setup(#[from] crate::setup::SetupError),
    #[error(transparent)]
    Service(#[from] crate::service::ServiceError),
    #[error(transparent)]
    Org(#[from] crate::org::OrgError),
    #[error(transparent)]
    Name(#[from] crate::domain::DomainError),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, DemoError>;

/// What the demo made, for the summary and for tests.
pub struct DemoReport {
    pub dir: PathBuf,
    pub settings: Settings,
    pub orgs: Vec<OrgCode>,
    pub releases: Vec<(Version, u8)>,
    pub packages_built: usize,
    pub export_dir: PathBuf,
    pub admin_token: NewToken,
    pub partner_token: NewToken,
    pub public_key_line: String,
}

pub const PLATFORMS: [(Platform, &str); 3] = [
    (Platform::WindowsX86_64, "msi"),
    (Platform::MacosAarch64, "dmg"),
    (Platform::LinuxX86_64, "tgz"),
];

/// Settings of a demo rooted at `dir`, serving at `public_url`.
pub fn settings_for(dir: &Path, public_url: &str) -> Settings {
    Settings {
        config_file: None,
        data_dir: dir.join("artifacts"),
        templates: dir.join("installer-templates"),
        database: crate::config::DatabaseUrl::Sqlite(dir.join("artifacts/depot.db")),
        artifacts: crate::config::ArtifactsUrl::File(dir.join("artifacts")),
        signing_key: dir.join("keys/depot.key"),
        public_key: dir.join("keys/depot.pub"),
        public_url: public_url.to_string(),
        listen: None,
        max_upload_bytes: 4 * 1024 * 1024 * 1024,
        max_connections: 10_000,
        trusted_proxies: Vec::new(),
        identity: Default::default(),
        max_connections_per_address: crate::config::DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
        metrics_token_file: None,
        enroll: Default::default(),
        ldap: None,
    }
}

/// Builds the demo in `dir` (which should be empty): keys, templates, sample payloads, three
/// orgs, two releases (11.2.1 at 100%, 11.3.0 at 25% on stable), tokens, and an export.
pub fn prepare(
    dir: &Path,
    public_url: &str,
    payload_mib: u64,
    progress: &dyn Progress,
) -> Result<DemoReport> {
    let settings = settings_for(dir, public_url);
    crate::setup::init(&settings, false)?;
    let depot = Depot::create(&settings)?;
    let actor = Actor {
        name: "demo".into(),
        address: "local".into(),
    };

    let mut orgs = Vec::new();
    for (code, config, overlays) in sample_orgs()? {
        if !code.is_default() {
            depot.add_org(&actor, &code, config.clone())?;
            orgs.push(code.clone());
        }
        depot.replace_org(&actor, &code, config, &overlays)?;
    }

    let payload_dir = dir.join("payloads");
    let stable = Channel::stable();
    let mut releases = Vec::new();
    let mut packages_built = 0;
    for (version, percent, notes) in [
        ("11.2.1", 100u8, "Fixes restores of files with long paths on Windows; faster scans of large home folders."),
        ("11.3.0", 25u8, "New: pause backups on metered networks. Staged rollout: 25% of devices first."),
    ] {
        let version = Version::parse(version)?;
        let sources = write_sample_payloads(&payload_dir, &version, payload_mib)?;
        depot.add_release(&actor, &version, &sources, notes)?;
        let (_, report) = depot.publish(&actor, &version, &stable, percent, progress)?;
        packages_built += report.built.len();
        releases.push((version, percent));
    }

    let export_dir = dir.join("export/physics-11.3.0");
    let physics = OrgCode::parse("physics")?;
    depot.export(&physics, &Version::parse("11.3.0")?, &export_dir)?;

    let admin_token = depot.create_token(&actor, Role::Admin, None, Some("demo-admin".into()))?;
    let partner_token = depot.create_token(
        &actor,
        Role::Partner,
        Some(physics),
        Some("demo-physics-partner".into()),
    )?;
    Ok(DemoReport {
        dir: dir.to_path_buf(),
        public_key_line: depot.public_key().to_line(),
        settings,
        orgs,
        releases,
        packages_built,
        export_dir,
        admin_token,
        partner_token,
    })
}

fn write_sample_payloads(dir: &Path, version: &Version, mib: u64) -> Result<Vec<PayloadSource>> {
    std::fs::create_dir_all(dir).map_err(|source| DemoError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut sources = Vec::new();
    for (i, (platform, ext)) in PLATFORMS.iter().enumerate() {
        let name = format!(
            "sample-backup-client-{version}-{}.{ext}",
            platform.arch().as_str()
        );
        let path = dir.join(&name);
        let io = |source| DemoError::Io {
            path: path.clone(),
            source,
        };
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path).map_err(io)?);
        let mut rng = rand::rngs::StdRng::seed_from_u64(version.semver().minor * 10 + i as u64);
        let mut chunk = vec![0u8; 1 << 20];
        for _ in 0..mib.max(1) {
            rng.fill_bytes(&mut chunk);
            file.write_all(&chunk).map_err(io)?;
        }
        file.flush().map_err(io)?;
        sources.push(PayloadSource {
            platform: *platform,
            file_name: EntryName::parse(&name)?,
            path,
        });
    }
    Ok(sources)
}

type SampleOrg = (OrgCode, OrgConfig, Vec<(EntryName, Vec<u8>)>);

fn sample_orgs() -> Result<Vec<SampleOrg>> {
    let base = crate::org::default_backup_selection();
    let with = |extra_exclude: &[&str]| BackupSelection {
        include: base.include.clone(),
        exclude: base
            .exclude
            .iter()
            .cloned()
            .chain(extra_exclude.iter().map(|s| s.to_string()))
            .collect(),
    };
    // The backup service's own server and each org's deployment policy (FIELD-NOTES).
    let settings = |policy: &str, pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        crate::org::default_settings()
            .into_iter()
            .chain(
                [
                    ("DEPLOYMENT_URL", "https://backup.example.edu:4285"),
                    ("DEPLOYMENT_POLICY_TOKEN", policy),
                ]
                .into_iter()
                .chain(pairs.iter().copied())
                .map(|(k, v)| (k.to_string(), v.to_string())),
            )
            .collect()
    };
    let org = |code: &str, input: OrgConfigInput| -> Result<(OrgCode, OrgConfig)> {
        Ok((OrgCode::parse(code)?, OrgConfig::try_from(input)?))
    };
    let (physics, physics_config) = org(
        "physics",
        OrgConfigInput {
            name: "Physical Sciences Division".into(),
            contact_email: Some("psd-it@example.edu".into()),
            seats: Some(250),
            channel: Some("stable".into()),
            pinned_version: None,
            backup: with(&[
                "(?i).*\\.(h5|hdf5|fits|root)$",
                "(?i).*/(scratch|simulation-output)/.*",
            ]),
            settings: settings(
                "5f0c2a9e-8d41-4c3b-9a7e-2b6d1e4f8a10",
                &[("backup.frequency_minutes", "60")],
            ),
            ..Default::default()
        },
    )?;
    let (medicine, medicine_config) = org(
        "medicine",
        OrgConfigInput {
            name: "Biological Sciences Division - Medicine".into(),
            contact_email: Some("bsd-desktop@example.edu".into()),
            seats: Some(1200),
            channel: Some("stable".into()),
            pinned_version: None,
            backup: with(&["(?i).*/Epic/Temp/.*", "(?i).*\\.(dcm|nii)$"]),
            settings: settings(
                "b7e3d5c1-2f6a-4e89-8c0d-9a1b3c5e7f24",
                &[("DEVICE_CLOAKED", "true"), ("backup.retention_days", "365")],
            ),
            ..Default::default()
        },
    )?;
    let (library, library_config) = org(
        "library",
        OrgConfigInput {
            name: "University Library".into(),
            contact_email: Some("lib-systems@example.edu".into()),
            seats: Some(80),
            channel: Some("stable".into()),
            pinned_version: None,
            backup: with(&["(?i).*/Zotero/storage/.*\\.pdf$"]),
            settings: settings("0d9a8b7c-6e5f-4a3b-8c2d-1e0f9a8b7c6d", &[]),
            ..Default::default()
        },
    )?;
    let (default, default_config) = org(
        "default",
        OrgConfigInput {
            name: "Default installers (central IT)".into(),
            contact_email: Some("desktop-engineering@example.edu".into()),
            seats: Some(0),
            channel: Some("stable".into()),
            pinned_version: None,
            backup: base.clone(),
            settings: settings("9c1e7a3f-0b2d-4f6e-a8c4-3d5b7e9f1a2c", &[]),
            ..Default::default()
        },
    )?;
    let detect_user = EntryName::parse("detect-user.sh")?;
    let library_script = b"#!/bin/sh\n# Library: staff log in with their CNetID; student workers share lab accounts and are not backed up.\nuser=$(stat -f%Su /dev/console 2>/dev/null || who | awk 'NR==1{print $1}')\ncase \"$user\" in\n  ''|root|_mbsetupuser|labstudent*) exit 1 ;;\nesac\necho \"AGENT_USERNAME=${user}@example.edu\"\necho \"AGENT_USER_HOME=$(eval echo ~\"$user\")\"\n".to_vec();
    Ok(vec![
        (default, default_config, vec![]),
        (physics, physics_config, vec![]),
        (medicine, medicine_config, vec![]),
        (library, library_config, vec![(detect_user, library_script)]),
    ])
}

/// The summary printed after `prepare`.
pub fn summary(report: &DemoReport, base_url: &str) -> String {
    let key = &report.public_key_line;
    let export = report.export_dir.display();
    let admin = &report.admin_token.secret;
    let partner = &report.partner_token.secret;
    let newest = report
        .releases
        .last()
        .map(|(v, _)| v.to_string())
        .unwrap_or_default();
    let releases: Vec<String> = report
        .releases
        .iter()
        .map(|(v, p)| format!("{v} on stable at {p}%"))
        .collect();
    let orgs: Vec<String> = report.orgs.iter().map(ToString::to_string).collect();
    format!(
        "depot demo in {dir}\n\
         \n\
         made:\n\
         - signing key        {dir}/keys/depot.key (public: {dir}/keys/depot.pub)\n\
         - sample payloads    {dir}/payloads (synthetic random bytes named like client installers)\n\
         - orgs               default, {orgs}\n\
         - releases           {releases}\n\
         - packages built     {built}\n\
         - export             {export}\n\
         \n\
         verify the export with the stock tools:\n\
         \x20 cd {export} && sha256sum -c SHA256SUMS\n\
         \x20 minisign -Vm SHA256SUMS -P {key}\n\
         \x20 minisign -Vm physics-{newest}-linux-x86_64.zip -P {key}\n\
         \x20 unzip -l physics-{newest}-linux-x86_64.zip\n\
         \n\
         tokens (shown once):\n\
         \x20 admin            {admin}\n\
         \x20 partner physics  {partner}\n\
         \n\
         try:\n\
         \x20 curl -sO {base_url}/v1/download/default/{newest}/default-{newest}-linux-x86_64.zip\n\
         \x20 curl -s -H 'Authorization: Bearer {partner}' -OJ {base_url}/v1/download/physics/latest/windows-x86_64 -L\n\
         \x20 curl -s -H 'Authorization: Bearer {admin}' {base_url}/v1/orgs\n\
         \x20 curl -s -H 'Authorization: Bearer {admin}' '{base_url}/v1/audit?org=physics'\n",
        dir = report.dir.display(),
        orgs = orgs.join(", "),
        releases = releases.join("; "),
        built = report.packages_built,
    )
}
