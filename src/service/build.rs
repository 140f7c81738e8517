//! Building packages: render, assemble, hash and sign every package a change calls for, publish
//! them in one transaction.
//!
//! The cost of a build is one pass over each payload part involved (to get the SHA-256 and
//! BLAKE2b states of the shared prefix) plus, per package, a render and a small tail: the
//! states are cloned and fed only the tail. Tails of one build go into one pack blob, fsynced
//! once. A package whose inputs are unchanged (same build key) is not rebuilt.
//!
//! An error in one org's package (a template that does not render with its settings, an overlay
//! that collides with a payload added after it) fails that org's packages of the build only:
//! the other orgs' are published, and the failure is reported and audited per org.
//!
//! A store that composes objects itself (S3) gets each package as its payload part and tail
//! instead, and makes it one object named by its SHA-256, copying the part inside the store:
//! such packages are one segment, served and presigned as ordinary objects.

use super::{now, Actor, Depot, Result, ServiceError};
use crate::domain::{package_file_name, OrgCode, Platform, Sha256, Version};
use crate::org::{check_beside_file, check_beside_payload, check_not_protected, Org, OrgError};
use crate::package::{build_tail, PackageDescriptor, PackageEntry, PayloadDescriptor, PayloadPart};
use crate::signing::{digest_reader, sha256sums, StreamDigest};
use crate::store::{BlobWriter, Checksums, Composition, Overlay, Package, Release, Segment};
use crate::templates::RenderContext;
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Bumped whenever the package layout changes, so that every package is rebuilt.
const LAYOUT_VERSION: &str = "depot-package-layout-1";

/// The most bytes of tails held before they go to the store: an agent executable in every tail
/// makes each one tens of MB.
const COMPOSE_BATCH_BYTES: usize = 256 << 20;

/// Packages handed to the store at once to be composed: enough for the store to keep its
/// requests in flight, few enough that their tails are a few MiB.
const COMPOSE_BATCH: usize = 64;

/// What to build; `None` means all. Only published, non-yanked releases are built unless a
/// release is named.
#[derive(Debug, Clone, Default)]
pub struct BuildScope {
    pub release: Option<Version>,
    pub org: Option<OrgCode>,
    pub platform: Option<Platform>,
}

/// Receives build progress; the CLI shows a bar, the server counts nothing.
pub trait Progress: Sync {
    fn begin(&self, _total: u64) {}
    fn advance(&self, _packages: u64) {}
    fn finish(&self) {}
}

pub struct NoProgress;
impl Progress for NoProgress {}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BuiltPackage {
    pub org: OrgCode,
    pub version: Version,
    pub platform: Platform,
    pub file_name: String,
    pub size: u64,
    pub sha256: Sha256,
}

/// An org whose packages of a build were not built: none of them is published, its previous
/// packages stay served. The first error met, with the package it was met in.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BuildFailure {
    pub org: OrgCode,
    pub version: Version,
    pub platform: Platform,
    pub error: String,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct BuildReport {
    pub built: Vec<BuiltPackage>,
    /// Packages whose inputs had not changed.
    pub unchanged: usize,
    /// One entry per org whose packages failed to build.
    pub failed: Vec<BuildFailure>,
    #[serde(skip)]
    pub elapsed: Duration,
}

/// One org's inputs, loaded once per build.
struct OrgInputs {
    org: Org,
    overlays: Vec<Overlay>,
    config_sha256: Sha256,
}

struct Job<'a> {
    inputs: &'a OrgInputs,
    build_key: Sha256,
    /// The agent executable the package carries (CONTRACT 7a), when one was added.
    agent: Option<std::sync::Arc<PackageEntry>>,
}

struct Built {
    package: Package,
    tail: Bytes,
}

/// Where the built packages of one build go: composed by the store, else their tails appended
/// to one pack blob, created when the first tail arrives.
#[derive(Default)]
struct Stored {
    packages: Vec<Package>,
    pending: Vec<Built>,
    pack: Option<Box<dyn BlobWriter>>,
    pack_len: u64,
    /// Indices in `packages` of those whose tail is in the pack.
    packed: Vec<usize>,
}

impl Depot {
    /// Builds what `scope` names whose inputs changed since the last build.
    pub fn build(
        &self,
        actor: &Actor,
        scope: &BuildScope,
        progress: &dyn Progress,
    ) -> Result<BuildReport> {
        let report = self.build_unaudited(actor, scope, progress)?;
        if !report.built.is_empty() {
            let target = scope
                .release
                .as_ref()
                .map_or_else(|| "all".to_string(), ToString::to_string);
            let detail = format!(
                "{} packages built, {} unchanged",
                report.built.len(),
                report.unchanged
            );
            self.audit(
                actor,
                scope.org.as_ref(),
                "packages.build",
                &target,
                Some(detail),
            )?;
        }
        Ok(report)
    }

    /// Builds without auditing what was built (the caller's own event says it); an org whose
    /// packages failed is audited here, as `packages.build_failed`.
    pub(crate) fn build_unaudited(
        &self,
        actor: &Actor,
        scope: &BuildScope,
        progress: &dyn Progress,
    ) -> Result<BuildReport> {
        let started = Instant::now();
        let _lock = self.meta.lock_builds()?;
        let releases = self.releases_in_scope(scope)?;
        let orgs = self.org_inputs(scope.org.as_ref())?;
        let mut agents = self.agent_entries()?;

        let mut plans = Vec::new();
        let mut unchanged = 0;
        for release in &releases {
            let existing: BTreeMap<(OrgCode, Platform), Sha256> = self
                .meta
                .list_packages(scope.org.as_ref(), Some(&release.version))?
                .into_iter()
                .map(|p| ((p.org, p.platform), p.build_key))
                .collect();
            for payload in &release.payloads {
                if scope.platform.is_some_and(|p| p != payload.platform) {
                    continue;
                }
                let mut jobs = Vec::new();
                for inputs in &orgs {
                    let build_key = self.build_key(
                        release,
                        payload.platform,
                        &payload.part,
                        inputs,
                        &agents.key(payload.platform),
                    );
                    if existing.get(&(inputs.org.code.clone(), payload.platform))
                        == Some(&build_key)
                    {
                        unchanged += 1;
                    } else {
                        jobs.push(Job {
                            inputs,
                            build_key,
                            agent: agents.entry(self, payload.platform)?,
                        });
                    }
                }
                if !jobs.is_empty() {
                    plans.push((release, payload.platform, &payload.part, jobs));
                }
            }
        }

        let total: usize = plans.iter().map(|(_, _, _, jobs)| jobs.len()).sum();
        let mut report = BuildReport {
            unchanged,
            ..Default::default()
        };
        if total == 0 {
            report.elapsed = started.elapsed();
            return Ok(report);
        }
        progress.begin(total as u64);
        let mut stored = Stored {
            packages: Vec::with_capacity(total),
            ..Default::default()
        };
        let mut failed: BTreeMap<OrgCode, BuildFailure> = BTreeMap::new();
        for (release, platform, part, jobs) in &plans {
            let prefix = self.digest_blob(&part.blob)?;
            self.build_jobs(release, *platform, part, &prefix, jobs, |job, built| {
                let org = &job.inputs.org.code;
                match built {
                    Ok(built) if !failed.contains_key(org) => {
                        stored.pending.push(built);
                        let pending_bytes: usize =
                            stored.pending.iter().map(|b| b.tail.len()).sum();
                        if stored.pending.len() >= COMPOSE_BATCH
                            || pending_bytes >= COMPOSE_BATCH_BYTES
                        {
                            self.store_pending(&mut stored)?;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(org = %org, version = %release.version, platform = %platform,
                            error = %e, "an org's package failed to build");
                        failed.entry(org.clone()).or_insert_with(|| BuildFailure {
                            org: org.clone(),
                            version: release.version.clone(),
                            platform: *platform,
                            error: e.to_string(),
                        });
                    }
                }
                progress.advance(1);
                Ok(())
            })?;
        }
        self.store_pending(&mut stored)?;
        if let Some(pack) = stored.pack.take() {
            let (pack_key, _) = pack.commit()?;
            for &i in &stored.packed {
                stored.packages[i].segments[1].blob = pack_key;
            }
        }
        let mut packages = stored.packages;
        // A failed org keeps its previous packages: none of this build's is published. Their
        // tails may sit in the pack, unreferenced, like those of a build that crashed.
        packages.retain(|p| !failed.contains_key(&p.org));
        if !packages.is_empty() {
            let checksums = self.checksums_after(&packages)?;
            self.meta.commit_packages(&packages, &checksums)?;
        }
        progress.finish();
        for failure in failed.values() {
            self.audit(
                actor,
                Some(&failure.org),
                "packages.build_failed",
                &failure.version.to_string(),
                Some(format!("{}: {}", failure.platform, failure.error)),
            )?;
        }
        report.failed = failed.into_values().collect();

        report.built = packages
            .into_iter()
            .map(|p| BuiltPackage {
                org: p.org,
                version: p.version,
                platform: p.platform,
                file_name: p.file_name,
                size: p.size,
                sha256: p.sha256,
            })
            .collect();
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// Has the store compose the pending packages; what it does not compose goes into the pack.
    fn store_pending(&self, stored: &mut Stored) -> Result<()> {
        if stored.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut stored.pending);
        let compositions = pending
            .iter()
            .map(|built| Composition {
                key: built.package.sha256,
                size: built.package.size,
                part: built.package.segments[0],
                tail: built.tail.clone(),
            })
            .collect();
        if let Some(composed) = self.blobs.compose(compositions)? {
            if composed.len() != pending.len() {
                return Err(ServiceError::Store(crate::store::StoreError::Corrupt(
                    format!(
                        "the store composed {} of {} packages",
                        composed.len(),
                        pending.len()
                    ),
                )));
            }
            for (built, segment) in pending.into_iter().zip(composed) {
                let mut package = built.package;
                package.segments = vec![segment];
                stored.packages.push(package);
            }
            return Ok(());
        }
        let pack = match &mut stored.pack {
            Some(pack) => pack,
            None => stored.pack.insert(self.blobs.create()?),
        };
        for built in pending {
            use std::io::Write;
            pack.write_all(&built.tail)
                .map_err(super::io_err("cannot write package pack"))?;
            let mut package = built.package;
            package.segments[1].offset = stored.pack_len;
            stored.pack_len += built.tail.len() as u64;
            stored.packed.push(stored.packages.len());
            stored.packages.push(package);
        }
        Ok(())
    }

    fn releases_in_scope(&self, scope: &BuildScope) -> Result<Vec<Release>> {
        match &scope.release {
            Some(version) => {
                let release = self
                    .meta
                    .get_release(version)?
                    .ok_or_else(|| ServiceError::NotFound(format!("release {version}")))?;
                if scope.platform.is_some_and(|p| release.payload(p).is_none()) {
                    return Err(ServiceError::NotFound(format!(
                        "payload for {} in release {version}",
                        scope.platform.map_or("", Platform::as_str)
                    )));
                }
                Ok(vec![release])
            }
            None => {
                let published: BTreeSet<Version> = self
                    .meta
                    .list_rollouts()?
                    .into_iter()
                    .map(|r| r.version)
                    .collect();
                Ok(self
                    .meta
                    .list_releases()?
                    .into_iter()
                    .filter(|r| r.yanked.is_none() && published.contains(&r.version))
                    .collect())
            }
        }
    }

    fn org_inputs(&self, only: Option<&OrgCode>) -> Result<Vec<OrgInputs>> {
        let orgs = match only {
            Some(code) => vec![self
                .meta
                .get_org(code)?
                .ok_or_else(|| ServiceError::NotFound(format!("org {code}")))?],
            None => self.meta.list_orgs()?,
        };
        orgs.into_iter()
            .map(|org| {
                let overlays = self.meta.list_overlays(&org.code)?;
                let config_sha256 = config_digest(&org, &overlays);
                Ok(OrgInputs {
                    org,
                    overlays,
                    config_sha256,
                })
            })
            .collect()
    }

    /// Everything a package's bytes depend on.
    fn build_key(
        &self,
        release: &Release,
        platform: Platform,
        part: &PayloadPart,
        inputs: &OrgInputs,
        agent_sha256: &str,
    ) -> Sha256 {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for field in [
            LAYOUT_VERSION,
            &self.templates.digest().to_hex(),
            &inputs.config_sha256.to_hex(),
            inputs.org.code.as_str(),
            inputs.org.registration_key.as_str(),
            &release.version.to_string(),
            &release.notes,
            &release.created_at.to_string(),
            platform.as_str(),
            &serde_json::to_string(part).unwrap_or_default(),
            &self.public_url,
            &self.key.public_key().to_line(),
            agent_sha256,
        ] {
            h.update((field.len() as u64).to_be_bytes());
            h.update(field.as_bytes());
        }
        Sha256::from_bytes(h.finalize().into())
    }

    /// The hash states of a blob, for a payload part: the one pass over the payload per build
    /// (none when this process has read the part before).
    pub(crate) fn digest_blob(&self, key: &Sha256) -> Result<StreamDigest> {
        const MAX_CACHED: usize = 256;
        if let Some(digest) = self
            .part_digests
            .lock()
            .ok()
            .and_then(|c| c.get(key).cloned())
        {
            return Ok(digest);
        }
        let digest = self.read_digest(key)?;
        if let Ok(mut cache) = self.part_digests.lock() {
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            cache.insert(*key, digest.clone());
        }
        Ok(digest)
    }

    /// The hash states of a blob, read from the store now, as it streams.
    pub(crate) fn read_digest(&self, key: &Sha256) -> Result<StreamDigest> {
        Ok(digest_reader(&mut self.blobs.reader(key)?)?)
    }

    /// Builds the jobs of one release and platform on every core, handing each package (or the
    /// error of its org) to `sink` on this thread in job order, so that the pack's layout is
    /// deterministic. An error `sink` returns stops the build.
    fn build_jobs(
        &self,
        release: &Release,
        platform: Platform,
        part: &PayloadPart,
        prefix: &StreamDigest,
        jobs: &[Job<'_>],
        mut sink: impl FnMut(&Job<'_>, Result<Built>) -> Result<()>,
    ) -> Result<()> {
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(jobs.len())
            .max(1);
        let next = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::sync_channel::<(usize, Result<Built>)>(workers * 4);
            for _ in 0..workers {
                let tx = tx.clone();
                let next = &next;
                scope.spawn(move || loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    let built = self.build_one(release, platform, part, prefix, job);
                    if tx.send((i, built)).is_err() {
                        break;
                    }
                });
            }
            drop(tx);
            let mut waiting = BTreeMap::new();
            let mut expected = 0;
            for (i, built) in rx {
                waiting.insert(i, built);
                while let Some(built) = waiting.remove(&expected) {
                    if let Err(e) = sink(&jobs[expected], built) {
                        // Stop the workers: they see no more jobs.
                        next.store(jobs.len(), Ordering::Relaxed);
                        return Err(e);
                    }
                    expected += 1;
                }
            }
            Ok(())
        })
    }

    fn build_one(
        &self,
        release: &Release,
        platform: Platform,
        part: &PayloadPart,
        prefix: &StreamDigest,
        job: &Job<'_>,
    ) -> Result<Built> {
        let org = &job.inputs.org;
        let ctx = RenderContext::new(
            org,
            &release.version,
            &release.notes,
            platform,
            part.file_name.as_str(),
            &part.sha256,
            part.size,
            &self.public_url,
            &self.key.public_key().to_line(),
        );
        let mut entries: BTreeMap<String, PackageEntry> = self
            .templates
            .render(platform.os(), &ctx)?
            .into_iter()
            .map(|f| {
                (
                    f.name.to_string(),
                    PackageEntry {
                        name: f.name,
                        bytes: f.bytes,
                    },
                )
            })
            .collect();
        let template_names: Vec<String> = entries.keys().cloned().collect();
        for overlay in &job.inputs.overlays {
            if self.belongs_to_another_os(&overlay.name, platform.os()) {
                continue;
            }
            // Checked at upload too, but a payload named later, or an overlay stored by an
            // older depot, meets the rules only here.
            check_not_protected(&overlay.name).map_err(OrgError::from)?;
            check_beside_payload(
                &overlay.name,
                part.file_name.as_str(),
                &release.version.to_string(),
            )
            .map_err(OrgError::from)?;
            for file in &template_names {
                check_beside_file(&overlay.name, file).map_err(OrgError::from)?;
            }
            let entry = PackageEntry {
                name: overlay.name.clone(),
                bytes: overlay.bytes.clone(),
            };
            entries.insert(overlay.name.to_string(), entry);
        }
        // After the overlays: a partner's file never replaces the agent Desktop Engineering built.
        if let Some(agent) = &job.agent {
            entries.insert(agent.name.to_string(), PackageEntry::clone(agent));
        }
        let descriptor = PackageDescriptor {
            org: org.code.clone(),
            version: release.version.clone(),
            platform,
            payload: PayloadDescriptor {
                name: part.file_name.to_string(),
                sha256: part.sha256,
                size: part.size,
            },
            config_sha256: job.inputs.config_sha256,
            server_url: self.public_url.clone(),
        };
        let descriptor_name = crate::domain::EntryName::parse(PackageDescriptor::FILE_NAME)?;
        entries.insert(
            descriptor_name.to_string(),
            PackageEntry {
                name: descriptor_name,
                bytes: descriptor.to_json_bytes(),
            },
        );
        let entries: Vec<PackageEntry> = entries.into_values().collect();
        let tail = build_tail(part, &entries)?;

        let mut digest = prefix.clone();
        digest.update(&tail);
        let (sha256, prehash) = digest.finish();
        let file_name = package_file_name(&org.code, &release.version, platform);
        let comment = format!("timestamp:{}\tfile:{file_name}\thashed", release.created_at);
        let minisig = self.key.sign_prehashed(&prehash, &comment);
        let size = part.part_len + tail.len() as u64;
        let package = Package {
            org: org.code.clone(),
            version: release.version.clone(),
            platform,
            file_name,
            size,
            sha256,
            segments: vec![
                Segment {
                    blob: part.blob,
                    offset: 0,
                    len: part.part_len,
                },
                // The pack's key and offset are known once the pack is written.
                Segment {
                    blob: part.blob,
                    offset: 0,
                    len: tail.len() as u64,
                },
            ],
            minisig,
            config_sha256: job.inputs.config_sha256,
            build_key: job.build_key,
            built_at: now(),
        };
        Ok(Built {
            package,
            tail: Bytes::from(tail),
        })
    }

    /// The SHA256SUMS of every (org, version) the new packages touch, over the new packages and
    /// the stored ones they do not replace.
    fn checksums_after(&self, new: &[Package]) -> Result<Vec<Checksums>> {
        let mut groups: BTreeMap<(OrgCode, Version), BTreeMap<Platform, (String, Sha256)>> =
            BTreeMap::new();
        for p in new {
            groups
                .entry((p.org.clone(), p.version.clone()))
                .or_default();
        }
        for (org, version) in groups.keys().cloned().collect::<Vec<_>>() {
            let files = groups.entry((org.clone(), version.clone())).or_default();
            for p in self.meta.list_packages(Some(&org), Some(&version))? {
                files.insert(p.platform, (p.file_name, p.sha256));
            }
        }
        for p in new {
            if let Some(files) = groups.get_mut(&(p.org.clone(), p.version.clone())) {
                files.insert(p.platform, (p.file_name.clone(), p.sha256));
            }
        }
        let created: BTreeMap<Version, i64> = new
            .iter()
            .map(|p| (p.version.clone(), p.built_at))
            .collect();
        groups
            .into_iter()
            .map(|((org, version), files)| {
                let files: Vec<(String, Sha256)> = files.into_values().collect();
                let text = sha256sums(&files);
                let comment = format!("file:SHA256SUMS\torg:{org}\tversion:{version}");
                let minisig = self.key.sign(text.as_bytes(), &comment);
                let updated_at = created.get(&version).copied().unwrap_or_else(now);
                Ok(Checksums {
                    org,
                    version,
                    text,
                    minisig,
                    updated_at,
                })
            })
            .collect()
    }
}

impl Depot {
    /// An overlay file named like a template output of another OS family and of none of
    /// `os`'s (a Linux `detect-user.sh` in a Windows package) stays out of `os`'s packages.
    fn belongs_to_another_os(
        &self,
        name: &crate::domain::EntryName,
        os: crate::domain::Os,
    ) -> bool {
        use crate::domain::Os;
        let output_of = |os| self.templates.output_names(os).any(|n| n == name);
        !output_of(os)
            && [Os::Windows, Os::Macos, Os::Linux]
                .into_iter()
                .any(output_of)
    }
}

/// The digest of an org's configuration as its packages carry it: settings and overlay files.
fn config_digest(org: &Org, overlays: &[Overlay]) -> Sha256 {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(org.config.canonical_json().as_bytes());
    for overlay in overlays {
        h.update(b"\0overlay\0");
        h.update(overlay.name.as_str().as_bytes());
        h.update(Sha256::digest(&overlay.bytes).as_bytes());
    }
    Sha256::from_bytes(h.finalize().into())
}
