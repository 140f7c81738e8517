//! The agent's unpacking of a package zip: arbitrary bytes never panic, and nothing is ever
//! written outside the destination directory, whatever the entry names say.

#![no_main]

use depot::agent::{unpack_zip, UnpackLimits};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

/// Every path under `root` that is not the package or inside `dest`.
fn strays(root: &Path, dest: &Path, zip: &Path, found: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path == zip || path.starts_with(dest) {
            continue;
        }
        found.push(path.display().to_string());
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            strays(&path, dest, zip, found);
        }
    }
}

fn no_symlinks(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let kind = entry.file_type().expect("file type");
        assert!(
            !kind.is_symlink(),
            "{} is a symbolic link",
            entry.path().display()
        );
        if kind.is_dir() {
            no_symlinks(&entry.path());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let root = tempfile::tempdir().expect("a temporary directory");
    let zip = root.path().join("package.zip");
    std::fs::write(&zip, data).expect("writing the package");
    // The destination sits one level down, so that `../x` would land in `root` and be seen.
    let dest = root.path().join("versions").join("1.0.0");
    std::fs::create_dir(root.path().join("versions")).expect("versions dir");
    let limits = UnpackLimits {
        max_entries: 64,
        max_total_bytes: 1 << 20,
    };
    let _ = unpack_zip(&zip, &dest, limits);
    let mut found = Vec::new();
    strays(root.path(), &dest, &zip, &mut found);
    found.retain(|p| Path::new(p) != root.path().join("versions"));
    assert!(
        found.is_empty(),
        "written outside the destination: {found:?}"
    );
    no_symlinks(&dest);
});
