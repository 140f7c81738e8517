//! Export: an org's packages of a release as ordinary files, with SHA256SUMS and signatures, for
//! a file share. The only place where a package is written out whole.

use super::{io_err, Depot, Result, ServiceError};
use crate::domain::{OrgCode, Version};
use crate::store::Package;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, serde::Serialize)]
pub struct ExportedFile {
    pub path: PathBuf,
    pub size: u64,
}

impl Depot {
    /// Writes the package's bytes, segment by segment, to `out`.
    pub fn copy_package(&self, package: &Package, out: &mut dyn Write) -> Result<u64> {
        let mut written = 0;
        for segment in &package.segments {
            match self.blobs.open_file(&segment.blob)? {
                Some(mut file) => {
                    file.seek(SeekFrom::Start(segment.offset))
                        .map_err(io_err("cannot read package blob"))?;
                    let copied = std::io::copy(&mut file.take(segment.len), out)
                        .map_err(io_err(format!("cannot write {}", package.file_name)))?;
                    if copied != segment.len {
                        return Err(short_blob(segment, package));
                    }
                }
                None => {
                    // Streamed: a composed package on an object store is one blob of the
                    // whole package. Segments that start inside a blob (tails in a pack) are
                    // small; skipping to them reads a few KiB.
                    let mut reader = self.blobs.reader(&segment.blob)?;
                    std::io::copy(
                        &mut (&mut reader).take(segment.offset),
                        &mut std::io::sink(),
                    )
                    .map_err(io_err("cannot read package blob"))?;
                    let copied = std::io::copy(&mut reader.take(segment.len), out)
                        .map_err(io_err(format!("cannot write {}", package.file_name)))?;
                    if copied != segment.len {
                        return Err(short_blob(segment, package));
                    }
                }
            }
            written += segment.len;
        }
        Ok(written)
    }

    /// Writes the org's packages of the release, their `.minisig` files, `SHA256SUMS` and
    /// `SHA256SUMS.minisig` into `out_dir`; each file appears whole or not at all.
    pub fn export(
        &self,
        org: &OrgCode,
        version: &Version,
        out_dir: &Path,
    ) -> Result<Vec<ExportedFile>> {
        self.org(org)?;
        self.release(version)?;
        let packages = self.meta.list_packages(Some(org), Some(version))?;
        let checksums = self.meta.get_checksums(org, version)?;
        let checksums = match (packages.is_empty(), checksums) {
            (false, Some(c)) => c,
            _ => {
                return Err(ServiceError::NotFound(format!(
                    "packages of org {org} for release {version} (publish the release or run depot build)"
                )))
            }
        };
        std::fs::create_dir_all(out_dir)
            .map_err(io_err(format!("cannot create {}", out_dir.display())))?;
        let mut exported = Vec::new();
        for package in &packages {
            let path = write_atomically(out_dir, &package.file_name, |f| {
                self.copy_package(package, f).map(|_| ())
            })?;
            exported.push(ExportedFile {
                path,
                size: package.size,
            });
            let sig_name = format!("{}.minisig", package.file_name);
            let path = write_text(out_dir, &sig_name, &package.minisig)?;
            exported.push(ExportedFile {
                path,
                size: package.minisig.len() as u64,
            });
        }
        for (name, text) in [
            ("SHA256SUMS", &checksums.text),
            ("SHA256SUMS.minisig", &checksums.minisig),
        ] {
            let path = write_text(out_dir, name, text)?;
            exported.push(ExportedFile {
                path,
                size: text.len() as u64,
            });
        }
        Ok(exported)
    }
}

fn write_text(dir: &Path, name: &str, text: &str) -> Result<PathBuf> {
    write_atomically(dir, name, |f| {
        f.write_all(text.as_bytes())
            .map_err(io_err(format!("cannot write {name}")))
    })
}

fn write_atomically(
    dir: &Path,
    name: &str,
    fill: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<PathBuf> {
    let target = dir.join(name);
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(io_err(format!("cannot write in {}", dir.display())))?;
    {
        let mut buffered = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
        fill(&mut buffered)?;
        buffered
            .flush()
            .map_err(io_err(format!("cannot write {}", target.display())))?;
    }
    tmp.as_file()
        .sync_all()
        .map_err(io_err(format!("cannot sync {}", target.display())))?;
    set_mode_0644(tmp.path())?;
    tmp.persist(&target)
        .map_err(|e| io_err(format!("cannot write {}", target.display()))(e.error))?;
    Ok(target)
}

/// Exported files are for sharing; a temp file starts out 0600.
fn set_mode_0644(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
        .map_err(io_err(format!("cannot set mode of {}", path.display())))
}

fn short_blob(segment: &crate::store::Segment, package: &Package) -> ServiceError {
    ServiceError::Store(crate::store::StoreError::Corrupt(format!(
        "blob {} is shorter than package {} needs",
        segment.blob, package.file_name
    )))
}
