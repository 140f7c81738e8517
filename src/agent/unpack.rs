//! Unpacks a verified package zip into a fresh directory, refusing every entry that could write
//! outside it or surprise the installer (zip-slip).
//!
//! The package was verified against the pinned key before it gets here, but the unpacker still
//! trusts nothing in it: an entry name is accepted only as plain `/`-separated components (no
//! absolute path, drive letter, `..`, `.`, backslash, NUL or control character), symlink entries
//! are refused, two names that a case-insensitive file system would merge are refused (the zip
//! reader itself silently keeps only the last of two equal names, so the central directory is
//! counted independently), and the number of entries and the unpacked bytes are capped, with
//! each entry held to its declared size.

use super::{AgentError, Result};
use std::collections::HashSet;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// Limits on what one package may unpack to.
#[derive(Debug, Clone, Copy)]
pub struct UnpackLimits {
    pub max_entries: usize,
    pub max_total_bytes: u64,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_total_bytes: 16 * 1024 * 1024 * 1024,
        }
    }
}

/// Unpacks the zip at `zip_path` into `dest`, which must not exist yet. On error `dest` may hold
/// a partial tree; the caller removes it.
pub fn unpack_zip(zip_path: &Path, dest: &Path, limits: UnpackLimits) -> Result<u64> {
    let refuse = |reason: String| AgentError::UnsafePackage { reason };
    let mut file = fs::File::open(zip_path).map_err(AgentError::io("opening", zip_path))?;
    let mut archive = zip::ZipArchive::new(io::BufReader::new(&mut file))
        .map_err(|e| refuse(format!("not a readable zip: {e}")))?;
    let directory_records = count_central_records(archive.central_directory_start(), zip_path)?;
    if directory_records != archive.len() {
        return Err(refuse(format!(
            "the zip names {directory_records} entries but only {} distinct names: duplicate entry names",
            archive.len()
        )));
    }
    if archive.len() > limits.max_entries {
        return Err(refuse(format!(
            "{} entries, more than the {} allowed",
            archive.len(),
            limits.max_entries
        )));
    }

    // Check every name and the declared sizes before writing anything.
    let mut folded = HashSet::with_capacity(archive.len());
    let mut declared_total: u64 = 0;
    for index in 0..archive.len() {
        let entry = archive
            .by_index_raw(index)
            .map_err(|e| refuse(format!("entry {index}: {e}")))?;
        let name = entry.name();
        check_entry_name(name).map_err(|why| refuse(format!("entry {name:?}: {why}")))?;
        if entry.is_symlink() {
            return Err(refuse(format!("entry {name:?} is a symbolic link")));
        }
        if !folded.insert(name.trim_end_matches('/').to_lowercase()) {
            return Err(refuse(format!(
                "entry {name:?} collides with another entry on a case-insensitive file system"
            )));
        }
        declared_total = declared_total.saturating_add(entry.size());
    }
    if declared_total > limits.max_total_bytes {
        return Err(refuse(format!(
            "unpacks to {declared_total} bytes, more than the {} allowed",
            limits.max_total_bytes
        )));
    }

    fs::create_dir(dest).map_err(AgentError::io("creating", dest))?;
    let mut written: u64 = 0;
    for index in 0..archive.len() {
        let mut entry = archive
            .by_index(index)
            .map_err(|e| refuse(format!("entry {index}: {e}")))?;
        let name = entry.name().to_string();
        let target = dest.join(&name);
        if entry.is_dir() {
            fs::create_dir_all(&target).map_err(AgentError::io("creating", &target))?;
            continue;
        }
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(AgentError::io("creating", parent))?;
        }
        let declared = entry.size();
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .map_err(AgentError::io("creating", &target))?;
        // One byte more than declared tells a lying header from an honest one.
        let copied = io::copy(&mut (&mut entry).take(declared + 1), &mut out)
            .map_err(|e| refuse(format!("entry {name:?} could not be read: {e}")))?;
        if copied != declared {
            return Err(refuse(format!(
                "entry {name:?} holds {copied} bytes but declares {declared}"
            )));
        }
        written += copied;
        set_mode(&out, entry.unix_mode())
            .map_err(AgentError::io("setting the mode of", &target))?;
        out.sync_all().map_err(AgentError::io("writing", &target))?;
    }
    Ok(written)
}

/// Why an entry name cannot be unpacked, if it cannot.
fn check_entry_name(name: &str) -> std::result::Result<(), &'static str> {
    if name.is_empty() || name.len() > 1024 {
        return Err("the name must be 1-1024 bytes long");
    }
    if name.contains('\\') {
        return Err("backslashes are not allowed in entry names");
    }
    if name.chars().any(|c| c.is_control()) {
        return Err("control characters are not allowed in entry names");
    }
    if name.starts_with('/') {
        return Err("absolute paths are not allowed");
    }
    // A directory entry ends in one `/`; every component before it must be a plain name.
    let path = name.strip_suffix('/').unwrap_or(name);
    for component in path.split('/') {
        match component {
            "" => return Err("empty path components are not allowed"),
            "." | ".." => return Err("'.' and '..' components are not allowed"),
            // `C:x` is drive-relative on Windows; `a:b` an alternate data stream on NTFS.
            c if c.contains(':') => return Err("':' is not allowed in entry names"),
            _ => {}
        }
    }
    Ok(())
}

/// The number of records in the central directory, read from the file itself.
fn count_central_records(start: u64, zip_path: &Path) -> Result<usize> {
    const CENTRAL_SIGNATURE: [u8; 4] = *b"PK\x01\x02";
    let mut file = fs::File::open(zip_path).map_err(AgentError::io("opening", zip_path))?;
    file.seek(SeekFrom::Start(start))
        .map_err(AgentError::io("reading", zip_path))?;
    let mut reader = io::BufReader::new(file);
    let mut count = 0;
    let mut header = [0u8; 46];
    loop {
        match reader.read_exact(&mut header) {
            Ok(()) if header[..4] == CENTRAL_SIGNATURE => {}
            // The end-of-central-directory records (or the file's end) follow the last one.
            Ok(()) => return Ok(count),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(count),
            Err(e) => return Err(AgentError::io("reading", zip_path)(e)),
        }
        let len = |at: usize| i64::from(u16::from_le_bytes([header[at], header[at + 1]]));
        let variable = len(28) + len(30) + len(32);
        reader
            .seek_relative(variable)
            .map_err(AgentError::io("reading", zip_path))?;
        count += 1;
    }
}

/// Executable entries stay executable; nothing gets set-uid, set-gid or write access for others.
#[cfg(unix)]
fn set_mode(file: &fs::File, mode: Option<u32>) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let executable = mode.is_some_and(|m| m & 0o111 != 0);
    file.set_permissions(fs::Permissions::from_mode(if executable {
        0o755
    } else {
        0o644
    }))
}

#[cfg(not(unix))]
fn set_mode(_file: &fs::File, _mode: Option<u32>) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;
    use zip::write::SimpleFileOptions;

    /// A zip of `(name, contents, unix mode)` entries; a name ending in `/` is a directory.
    pub(crate) fn zip_bytes(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        for &(name, data, mode) in entries {
            let options = SimpleFileOptions::default().unix_permissions(mode);
            if name.ends_with('/') {
                writer.add_directory(name, options).unwrap();
            } else {
                writer.start_file(name, options).unwrap();
                writer.write_all(data).unwrap();
            }
        }
        writer.finish().unwrap().into_inner()
    }

    fn unpack(bytes: &[u8]) -> (tempfile::TempDir, Result<u64>) {
        let tmp = tempfile::tempdir().unwrap();
        let zip = tmp.path().join("p.zip");
        fs::write(&zip, bytes).unwrap();
        let result = unpack_zip(&zip, &tmp.path().join("out"), UnpackLimits::default());
        (tmp, result)
    }

    fn refused(bytes: &[u8], needle: &str) {
        let (tmp, result) = unpack(bytes);
        match result {
            Err(AgentError::UnsafePackage { reason }) => {
                assert!(reason.contains(needle), "{reason:?} lacks {needle:?}")
            }
            other => panic!("expected a refusal containing {needle:?}, got {other:?}"),
        }
        // Nothing escaped the destination.
        let outside: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n != "p.zip" && n != "out")
            .collect();
        assert!(outside.is_empty(), "{outside:?}");
    }

    #[test]
    fn installs_a_good_package() {
        let bytes = zip_bytes(&[
            ("client-11.2.1.tgz", b"payload bytes", 0o644),
            ("install.sh", b"#!/bin/sh\n", 0o755),
            ("custom/", b"", 0o755),
            ("custom/detect-user.sh", b"echo user\n", 0o755),
            ("deploy.properties", b"DEPOT_ORG=physics\n", 0o644),
        ]);
        let (tmp, result) = unpack(&bytes);
        assert_eq!(result.unwrap(), 13 + 10 + 10 + 18);
        let out = tmp.path().join("out");
        assert_eq!(
            fs::read(out.join("client-11.2.1.tgz")).unwrap(),
            b"payload bytes"
        );
        assert_eq!(
            fs::read(out.join("custom/detect-user.sh")).unwrap(),
            b"echo user\n"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &str| fs::metadata(out.join(p)).unwrap().permissions().mode() & 0o7777;
            assert_eq!(mode("install.sh"), 0o755);
            assert_eq!(mode("deploy.properties"), 0o644);
        }
    }

    #[test]
    fn refuses_zip_slip_names() {
        for (name, needle) in [
            ("../evil.sh", "'..'"),
            ("a/../../evil.sh", "'..'"),
            ("/etc/evil", "absolute"),
            ("a\\..\\evil", "backslash"),
            ("C:evil", "':'"),
            ("a//b", "empty"),
            ("./a", "'.'"),
            ("a\u{1}b", "control"),
        ] {
            refused(
                &zip_bytes(&[("ok.txt", b"x", 0o644), (name, b"evil", 0o644)]),
                needle,
            );
        }
    }

    #[test]
    fn refuses_symlink_entries() {
        let mut writer = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        writer
            .add_symlink("link", "/etc/passwd", SimpleFileOptions::default())
            .unwrap();
        writer
            .start_file("link/x", SimpleFileOptions::default())
            .unwrap();
        writer.write_all(b"evil").unwrap();
        refused(&writer.finish().unwrap().into_inner(), "symbolic link");
    }

    #[test]
    fn refuses_duplicate_names() {
        // The writer refuses equal names, so write two and give the second the first one's name
        // in both its local and its central header.
        let mut bytes = zip_bytes(&[("aaaa", b"good", 0o644), ("bbbb", b"evil", 0o644)]);
        let positions: Vec<usize> = bytes
            .windows(4)
            .enumerate()
            .filter(|(_, w)| *w == b"bbbb")
            .map(|(i, _)| i)
            .collect();
        assert_eq!(positions.len(), 2);
        for at in positions {
            bytes[at..at + 4].copy_from_slice(b"aaaa");
        }
        refused(&bytes, "duplicate");
        refused(
            &zip_bytes(&[("Setup.exe", b"good", 0o644), ("setup.EXE", b"evil", 0o644)]),
            "case-insensitive",
        );
        refused(
            &zip_bytes(&[("dir/", b"", 0o755), ("DIR/", b"", 0o755)]),
            "case-insensitive",
        );
    }

    #[test]
    fn caps_entries_and_bytes() {
        let bytes = zip_bytes(&[("a", &[0u8; 1000], 0o644), ("b", &[0u8; 1000], 0o644)]);
        let tmp = tempfile::tempdir().unwrap();
        let zip = tmp.path().join("p.zip");
        fs::write(&zip, &bytes).unwrap();
        let small = UnpackLimits {
            max_entries: 10,
            max_total_bytes: 1500,
        };
        let err = unpack_zip(&zip, &tmp.path().join("o1"), small).unwrap_err();
        assert!(err.to_string().contains("more than the 1500"), "{err}");
        let few = UnpackLimits {
            max_entries: 1,
            max_total_bytes: 1 << 20,
        };
        let err = unpack_zip(&zip, &tmp.path().join("o2"), few).unwrap_err();
        assert!(err.to_string().contains("2 entries"), "{err}");
        assert!(!tmp.path().join("o1").exists() && !tmp.path().join("o2").exists());
    }

    #[test]
    fn refuses_garbage() {
        refused(b"this is not a zip file at all", "not a readable zip");
    }
}
