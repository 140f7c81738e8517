//! `depot verify`: re-hash every stored artifact and check every release payload, package,
//! checksum file and signature against it. Reads only; repairs nothing.
//!
//! A damaged artifact (changed, truncated, removed, unreadable) is a problem to report, not an
//! error that ends the run: one broken blob must not hide what else is broken. Only a failure of
//! the metadata store stops it.

use super::{Depot, Result};
use crate::domain::Sha256;
use crate::signing::{sha256sums, PublicKey, StreamDigest};
use crate::store::{Package, Segment};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Default, serde::Serialize)]
pub struct VerifyReport {
    pub blobs_checked: usize,
    pub packages_checked: usize,
    pub checksum_files_checked: usize,
    /// One line per problem found; empty when all is well.
    pub problems: Vec<String>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Depot {
    pub fn verify(&self) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let stored: BTreeSet<Sha256> = self.blobs.list()?.into_iter().collect();
        let packages = self.meta.list_packages(None, None)?;
        // A package composed by the object store is a blob of its own, read once below for
        // both of its digests (on S3, each read is the whole download).
        let composed: BTreeSet<Sha256> = packages
            .iter()
            .filter_map(|p| match p.segments.as_slice() {
                [whole] if is_whole_package(p, whole) => Some(whole.blob),
                _ => None,
            })
            .collect();
        for key in &stored {
            report.blobs_checked += 1;
            if composed.contains(key) {
                continue;
            }
            match self.blobs.verify(key) {
                Ok(true) => {}
                Ok(false) => report.problems.push(format!(
                    "blob {key} does not match its checksum (changed on disk)"
                )),
                Err(e) => report
                    .problems
                    .push(format!("blob {key} cannot be checked: {e}")),
            }
        }

        // A release's payload parts must be there before any package refers to them: an added,
        // unpublished release is published from them later.
        for release in self.meta.list_releases()? {
            for payload in &release.payloads {
                let blob = &payload.part.blob;
                let label = format!(
                    "release {} payload {} ({})",
                    release.version, payload.platform, payload.part.file_name
                );
                if !stored.contains(blob) {
                    report
                        .problems
                        .push(format!("{label}: its blob {blob} is missing"));
                } else if let Ok(size) = self.blobs.size(blob) {
                    if size != payload.part.part_len {
                        report.problems.push(format!(
                            "{label}: its blob {blob} holds {size} bytes, not {}",
                            payload.part.part_len
                        ));
                    }
                }
            }
        }

        let public_key = self.public_key();
        // Each payload part is hashed once; every package that starts with it clones the state.
        let mut by_part: BTreeMap<Sha256, Vec<&Package>> = BTreeMap::new();
        for package in &packages {
            report.packages_checked += 1;
            if let [whole] = package.segments.as_slice() {
                if let Some(problem) = self.check_composed(package, whole, &stored, &public_key) {
                    report.problems.push(problem);
                }
                continue;
            }
            if package.segments.len() != 2 {
                report.problems.push(format!(
                    "package {} has {} segments, not a payload part and a tail, nor one blob",
                    package_label(package),
                    package.segments.len()
                ));
                continue;
            }
            let missing: Vec<String> = package
                .segments
                .iter()
                .filter(|s| !stored.contains(&s.blob))
                .map(|s| s.blob.to_string())
                .collect();
            if !missing.is_empty() {
                report.problems.push(format!(
                    "package {} refers to the missing blob {}",
                    package_label(package),
                    missing.join(", ")
                ));
                continue;
            }
            by_part
                .entry(package.segments[0].blob)
                .or_default()
                .push(package);
        }
        for (part, group) in by_part {
            let prefix = match self.read_digest(&part) {
                Ok(prefix) => prefix,
                Err(e) => {
                    for package in group {
                        report.problems.push(format!(
                            "package {}: its payload part {part} cannot be read: {e}",
                            package_label(package)
                        ));
                    }
                    continue;
                }
            };
            for package in group {
                let tail = &package.segments[1];
                let tail_bytes = match self.blobs.read_range(&tail.blob, tail.offset, tail.len) {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        report.problems.push(format!(
                            "package {}: its part in blob {} cannot be read: {e}",
                            package_label(package),
                            tail.blob
                        ));
                        continue;
                    }
                };
                let mut digest: StreamDigest = prefix.clone();
                digest.update(&tail_bytes);
                let (sha256, prehash) = digest.finish();
                if sha256 != package.sha256 {
                    report.problems.push(format!(
                        "package {} does not match its recorded SHA-256",
                        package_label(package)
                    ));
                } else if let Err(e) = public_key.verify_prehashed(&prehash, &package.minisig) {
                    report.problems.push(format!(
                        "package {}: signature does not verify: {e}",
                        package_label(package)
                    ));
                }
            }
        }

        let mut groups: BTreeMap<(String, String), Vec<(String, Sha256)>> = BTreeMap::new();
        for p in &packages {
            groups
                .entry((p.org.to_string(), p.version.to_string()))
                .or_default()
                .push((p.file_name.clone(), p.sha256));
        }
        for ((org, version), files) in groups {
            report.checksum_files_checked += 1;
            let label = format!("SHA256SUMS of {org} {version}");
            let (Ok(org_code), Ok(v)) = (
                crate::domain::OrgCode::parse(&org),
                crate::domain::Version::parse(&version),
            ) else {
                continue;
            };
            match self.meta.get_checksums(&org_code, &v)? {
                None => report.problems.push(format!("{label} is missing")),
                Some(c) => {
                    if c.text != sha256sums(&files) {
                        report
                            .problems
                            .push(format!("{label} does not list the stored packages"));
                    }
                    if let Err(e) = public_key.verify(c.text.as_bytes(), &c.minisig) {
                        report
                            .problems
                            .push(format!("{label}: signature does not verify: {e}"));
                    }
                }
            }
        }
        Ok(report)
    }
}

impl Depot {
    /// A package composed by the object store: one blob named by its SHA-256, whose BLAKE2b the
    /// signature covers. `None` when all is well, else the problem.
    fn check_composed(
        &self,
        package: &Package,
        whole: &Segment,
        stored: &BTreeSet<Sha256>,
        public_key: &PublicKey,
    ) -> Option<String> {
        let label = package_label(package);
        if !is_whole_package(package, whole) {
            return Some(format!(
                "package {label} is one segment that is not its own blob"
            ));
        }
        if !stored.contains(&whole.blob) {
            return Some(format!(
                "package {label} refers to the missing blob {}",
                whole.blob
            ));
        }
        let digest = match self.read_digest(&whole.blob) {
            Ok(digest) => digest,
            Err(e) => return Some(format!("package {label} cannot be read: {e}")),
        };
        let (sha256, prehash) = digest.finish();
        if sha256 != whole.blob {
            return Some(format!(
                "blob {} does not match its checksum (changed on disk)",
                whole.blob
            ));
        }
        public_key
            .verify_prehashed(&prehash, &package.minisig)
            .err()
            .map(|e| format!("package {label}: signature does not verify: {e}"))
    }
}

/// Whether `whole`, a package's only segment, is the package itself: its own blob, whole.
fn is_whole_package(package: &Package, whole: &Segment) -> bool {
    whole.blob == package.sha256 && whole.offset == 0 && whole.len == package.size
}

fn package_label(p: &Package) -> String {
    format!("{}/{}/{}", p.org, p.version, p.file_name)
}
