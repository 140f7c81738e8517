//! Names of files that go into a package root or under an org's overlay directory.

use super::{string_newtype, DomainError, Result};

/// A relative path inside a package: `/`-separated components of `[A-Za-z0-9._-]`, none of them
/// empty, `.` or `..`, at most 128 bytes. It can never escape the directory it is joined to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryName(String);

impl EntryName {
    pub fn parse(s: &str) -> Result<Self> {
        let err = |rule| Err(DomainError::new("file name", s, rule));
        if s.is_empty() || s.len() > 128 {
            return err("must be 1-128 characters long");
        }
        for component in s.split('/') {
            if component.is_empty() || component == "." || component == ".." {
                return err("must be a relative path without empty, '.' or '..' components");
            }
            if !component
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            {
                return err(
                    "may contain only A-Z, a-z, 0-9, '.', '_', '-' and '/' between components",
                );
            }
        }
        Ok(Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}
string_newtype!(EntryName);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_and_rejects() {
        for ok in ["detect-user.sh", "custom/logo.png", "README.txt", ".hidden"] {
            assert!(EntryName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a//b",
            "a/",
            "a\\b",
            "C:x",
            "a b",
            "a\0",
            ".",
            &"a".repeat(129),
        ] {
            assert!(EntryName::parse(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn accepted_names_stay_inside(s in "\\PC{0,40}") {
            if let Ok(n) = EntryName::parse(&s) {
                let joined = std::path::Path::new("/root").join(n.as_str());
                prop_assert!(joined.starts_with("/root"));
                prop_assert!(joined.components().all(|c| matches!(c, std::path::Component::Normal(_) | std::path::Component::RootDir)));
            }
        }
    }
}
