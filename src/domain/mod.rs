//! Validated names of the domain (CONTRACT section 2).
//!
//! Every value of these types is valid by construction: the only ways in are `parse`/`FromStr`
//! and `Deserialize`, which enforce every rule. Nothing here does I/O. A name never reaches a file
//! path unless it went through one of these types first.

mod digest;
mod error;
mod file_name;
mod platform;
mod registration_key;
mod slug;
mod text;
mod version;

pub use digest::Sha256;
pub use error::{DomainError, Result};
pub use file_name::EntryName;
pub use platform::{Arch, Os, Platform};
pub use registration_key::RegistrationKey;
pub use slug::{Channel, OrgCode};
pub use text::{check_shown_text, find_hidden, is_hidden, strip_hidden, HIDDEN_RULE};
pub use version::Version;

/// The file name of a package: `{org}-{version}-{platform}.zip` (CONTRACT 2).
pub fn package_file_name(org: &OrgCode, version: &Version, platform: Platform) -> String {
    format!("{org}-{version}-{platform}.zip")
}

/// Implements `Display`, `AsRef<str>`, `FromStr` and serde (through `parse`) for a string newtype.
macro_rules! string_newtype {
    ($ty:ident) => {
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl std::str::FromStr for $ty {
            type Err = $crate::domain::DomainError;
            fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(
                d: D,
            ) -> std::result::Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use string_newtype;
