//! The default templates, compiled into the binary from `installer-templates/`.
//!
//! A test compares this list with the directory, so a file added there and not here (or the
//! other way round) fails the build's tests instead of silently missing from packages.

macro_rules! embed {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/installer-templates/", $path)))),*]
    };
}

/// `(folder/path, bytes)` of every default template file.
pub(super) const FILES: &[(&str, &[u8])] = embed![
    "common/README.txt.tera",
    "common/backup-selection.txt.tera",
    "common/deploy.properties.tera",
    "linux/detect-user.sh",
    "linux/install.sh.tera",
    "linux/uninstall.sh.tera",
    "macos/detect-user.sh",
    "macos/install.command.tera",
    "macos/uninstall.command.tera",
    "windows/detect-user.ps1",
    "windows/install.cmd",
    "windows/install.ps1.tera",
    "windows/uninstall.ps1.tera",
];
