//! `depot verify`: re-hash every stored artifact and check every package, checksum file and
//! signature against it. Reads only; repairs nothing.

use super::{Depot, Result};
use crate::domain::Sha256;
use crate::signing::{sha256sums, StreamDigest};
use crate::store::Package;
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
        for key in &stored {
            report.blobs_checked += 1;
            if !self.blobs.verify(key)? {
                report.problems.push(format!(
                    "blob {key} does not match its checksum (changed on disk)"
                ));
            }
        }

        let packages = self.meta.list_packages(None, None)?;
        let public_key = self.public_key();
        // Each payload part is hashed once; every package that starts with it clones the state.
        let mut by_part: BTreeMap<Sha256, Vec<&Package>> = BTreeMap::new();
        for package in &packages {
            report.packages_checked += 1;
            let missing: Vec<_> = package
                .segments
                .iter()
                .filter(|s| !stored.contains(&s.blob))
                .collect();
            if !missing.is_empty() || package.segments.len() != 2 {
                report.problems.push(format!(
                    "package {} refers to a missing blob",
                    package_label(package)
                ));
                continue;
            }
            by_part
                .entry(package.segments[0].blob)
                .or_default()
                .push(package);
        }
        for (part, group) in by_part {
            let prefix = self.read_digest(&part)?;
            for package in group {
                let tail = &package.segments[1];
                let mut digest: StreamDigest = prefix.clone();
                digest.update(&self.blobs.read_range(&tail.blob, tail.offset, tail.len)?);
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

fn package_label(p: &Package) -> String {
    format!("{}/{}/{}", p.org, p.version, p.file_name)
}
