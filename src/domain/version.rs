//! Client release versions: SemVer 2.0, ordered by SemVer precedence (build metadata ignored).

use super::{DomainError, Result};
use std::cmp::Ordering;

/// A release version. Equality and order follow SemVer precedence, so `1.0.0+a == 1.0.0+b`; build
/// metadata is refused on input for that reason, since two files would otherwise share a name.
#[derive(Debug, Clone)]
pub struct Version(semver::Version);

impl Version {
    pub fn parse(s: &str) -> Result<Self> {
        let err = |rule| DomainError::new("version", s, rule);
        if s.len() > 64 {
            return Err(err("must be at most 64 characters"));
        }
        let v = semver::Version::parse(s)
            .map_err(|_| err("must be a SemVer 2.0 version such as 11.2.1 or 11.3.0-beta.1"))?;
        if !v.build.is_empty() {
            return Err(err("must not carry build metadata (+...)"));
        }
        Ok(Self(v))
    }

    pub fn semver(&self) -> &semver::Version {
        &self.0
    }

    pub fn is_prerelease(&self) -> bool {
        !self.0.pre.is_empty()
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Version {}
impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.cmp_precedence(&other.0)
    }
}
impl std::hash::Hash for Version {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.major.hash(state);
        self.0.minor.hash(state);
        self.0.patch.hash(state);
        self.0.pre.hash(state);
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
impl std::str::FromStr for Version {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}
impl serde::Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}
impl<'de> serde::Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn precedence_orders_prereleases_first() {
        let v = |s| Version::parse(s).unwrap();
        assert!(v("11.3.0-beta.1") < v("11.3.0"));
        assert!(v("11.3.0-beta.2") < v("11.3.0-beta.10"));
        assert!(v("11.2.1") < v("11.3.0-beta.1"));
        assert!(v("2.0.0") < v("10.0.0"));
    }

    #[test]
    fn rejects_non_semver() {
        for bad in [
            "",
            "11",
            "11.2",
            "v11.2.1",
            "11.2.1.4",
            "01.2.3",
            "1.2.3+build",
            "1.2.3-",
            "../1.2.3",
        ] {
            assert_eq!(Version::parse(bad).unwrap_err().field, "version", "{bad}");
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,80}") {
            let _ = Version::parse(&s);
        }

        #[test]
        fn order_matches_numeric_triples(a in (0u64..50, 0u64..50, 0u64..50), b in (0u64..50, 0u64..50, 0u64..50)) {
            let va = Version::parse(&format!("{}.{}.{}", a.0, a.1, a.2)).unwrap();
            let vb = Version::parse(&format!("{}.{}.{}", b.0, b.1, b.2)).unwrap();
            prop_assert_eq!(va.cmp(&vb), a.cmp(&b));
            prop_assert_eq!(Version::parse(&va.to_string()).unwrap(), va);
        }
    }
}
