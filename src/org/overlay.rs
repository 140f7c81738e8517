//! What an overlay file may be named. An overlay may replace an installer file the templates
//! produce (that is what it is for), but not the files that carry depot's own settings, and it
//! may not collide with a release's payload or with another file of the package when the zip is
//! extracted: not by the same name, not by a name differing only in case (Windows and macOS
//! file systems ignore case), and not as a file that is also another's folder.

use crate::domain::EntryName;

/// Files depot writes from the org's configuration: settings go through the configuration, so
/// that a partner cannot point its devices at another server or key inside a depot-signed package;
/// and the agent executable Desktop Engineering adds (CONTRACT 7a), which runs as root.
pub const PROTECTED_FILES: [&str; 4] = [
    "deploy.properties",
    "depot-package.json",
    "depot",
    "depot.exe",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverlayNameError {
    #[error(
        "overlay file {name} may not replace {protected}: depot writes it from the org's \
         configuration (change the org's settings instead)"
    )]
    Protected {
        name: String,
        protected: &'static str,
    },
    #[error(
        "overlay file {name} collides with the payload {payload} of release {version} \
         ({why}); the package holds the payload under its own name, so rename the overlay"
    )]
    Payload {
        name: String,
        payload: String,
        version: String,
        why: &'static str,
    },
    #[error("overlay file {name} collides with {file} in the package ({why})")]
    File {
        name: String,
        file: String,
        why: &'static str,
    },
}

/// How two entry names collide once extracted, or `None`. Names are ASCII (`EntryName`).
fn collision(a: &str, b: &str) -> Option<&'static str> {
    let (a, b) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
    let inside = |file: &str, other: &str| {
        other.len() > file.len() && other.starts_with(file) && other.as_bytes()[file.len()] == b'/'
    };
    if a == b {
        Some("the same name, ignoring case")
    } else if inside(&a, &b) || inside(&b, &a) {
        Some("one would have to be both a file and the folder of the other")
    } else {
        None
    }
}

/// Refuses the names of the files depot writes itself, in any case and as folders.
pub fn check_not_protected(name: &EntryName) -> Result<(), OverlayNameError> {
    match PROTECTED_FILES
        .iter()
        .find(|p| collision(name.as_str(), p).is_some())
    {
        Some(protected) => Err(OverlayNameError::Protected {
            name: name.to_string(),
            protected,
        }),
        None => Ok(()),
    }
}

/// Refuses a name that collides with a release's payload.
pub fn check_beside_payload(
    name: &EntryName,
    payload: &str,
    version: &str,
) -> Result<(), OverlayNameError> {
    match collision(name.as_str(), payload) {
        Some(why) => Err(OverlayNameError::Payload {
            name: name.to_string(),
            payload: payload.to_string(),
            version: version.to_string(),
            why,
        }),
        None => Ok(()),
    }
}

/// Refuses a name that collides with another file of the package (a template's output or
/// another overlay); the exact same name is a replacement and is fine.
pub fn check_beside_file(name: &EntryName, file: &str) -> Result<(), OverlayNameError> {
    if name.as_str() == file {
        return Ok(());
    }
    match collision(name.as_str(), file) {
        Some(why) => Err(OverlayNameError::File {
            name: name.to_string(),
            file: file.to_string(),
            why,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> EntryName {
        EntryName::parse(s).unwrap()
    }

    #[test]
    fn protected_files_in_any_case_and_as_folders() {
        for bad in [
            "deploy.properties",
            "Deploy.Properties",
            "DEPOT-PACKAGE.JSON",
            "deploy.properties/x",
            "depot",
            "DEPOT.EXE",
        ] {
            let err = check_not_protected(&n(bad)).unwrap_err().to_string();
            assert!(err.contains("may not replace"), "{bad}: {err}");
        }
        for ok in [
            "detect-user.sh",
            "custom/deploy.properties",
            "deploy.properties.txt",
        ] {
            assert!(check_not_protected(&n(ok)).is_ok(), "{ok}");
        }
    }

    #[test]
    fn payload_and_file_collisions() {
        assert!(check_beside_payload(&n("client.msi"), "client.msi", "1.0.0").is_err());
        assert!(check_beside_payload(&n("Client.MSI"), "client.msi", "1.0.0").is_err());
        assert!(check_beside_payload(&n("client.msi/a"), "client.msi", "1.0.0").is_err());
        assert!(check_beside_payload(&n("client.msi.txt"), "client.msi", "1.0.0").is_ok());
        assert!(check_beside_file(&n("install.sh"), "install.sh").is_ok());
        assert!(check_beside_file(&n("Install.sh"), "install.sh").is_err());
        assert!(check_beside_file(&n("custom"), "custom/logo.png").is_err());
        assert!(check_beside_file(&n("customs/a"), "custom/logo.png").is_ok());
    }
}
