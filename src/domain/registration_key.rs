//! The org's registration key (the seed's "Organization Serial Code"): 4 groups of 4 characters of
//! Crockford base32, upper case, e.g. `7QKX-M2PA-9D4R-HV0T`; 80 random bits.

use super::{string_newtype, DomainError, Result};
use rand::RngCore;

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RegistrationKey(String);

impl RegistrationKey {
    /// Accepts the canonical form; lower-case letters are taken as their upper-case twins because
    /// people type keys off a screen.
    pub fn parse(s: &str) -> Result<Self> {
        let err = |rule| DomainError::new("registration key", s, rule);
        let upper = s.to_ascii_uppercase();
        let groups: Vec<&str> = upper.split('-').collect();
        if groups.len() != 4 || groups.iter().any(|g| g.len() != 4) {
            return Err(err(
                "must be 4 groups of 4 characters separated by '-', like 7QKX-M2PA-9D4R-HV0T",
            ));
        }
        if !groups
            .iter()
            .all(|g| g.bytes().all(|b| CROCKFORD.contains(&b)))
        {
            return Err(err(
                "may contain only Crockford base32 characters (0-9, A-Z without I, L, O, U)",
            ));
        }
        Ok(Self(upper))
    }

    /// A fresh key of 80 bits from the operating system's random source.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 10];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let bits = u128::from_be_bytes({
            let mut wide = [0u8; 16];
            wide[6..].copy_from_slice(&bytes);
            wide
        });
        let mut out = String::with_capacity(19);
        for i in 0..16 {
            if i > 0 && i % 4 == 0 {
                out.push('-');
            }
            let index = (bits >> (75 - 5 * i)) & 0x1f;
            out.push(CROCKFORD[index as usize] as char);
        }
        Self(out)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// How debug output shows a key, typed or held as text: its first group only, so that a
    /// log line can tell keys apart without holding one.
    pub fn redact(key: &str) -> String {
        format!("{}-****-****-****", key.get(..4).unwrap_or_default())
    }
}
string_newtype!(RegistrationKey);

/// Keys are secrets: debug output must not leak them into logs.
impl std::fmt::Debug for RegistrationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RegistrationKey({})", Self::redact(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn contract_example_parses() {
        assert_eq!(
            RegistrationKey::parse("7QKX-M2PA-9D4R-HV0T")
                .unwrap()
                .as_str(),
            "7QKX-M2PA-9D4R-HV0T"
        );
        assert_eq!(
            RegistrationKey::parse("7qkx-m2pa-9d4r-hv0t")
                .unwrap()
                .as_str(),
            "7QKX-M2PA-9D4R-HV0T"
        );
    }

    #[test]
    fn rejects_bad_forms() {
        for bad in [
            "",
            "7QKX-M2PA-9D4R",
            "7QKX-M2PA-9D4R-HV0",
            "7QKXM2PA9D4RHV0T",
            "7QKX-M2PA-9D4R-HV0I",
            "7QKX-M2PA-9D4R-HV0U",
            "7QKX-M2PA-9D4R-HV0T-",
            "7QKX_M2PA_9D4R_HV0T",
            "7QKX-M2PA-9D4R-HV0Ł",
        ] {
            assert!(RegistrationKey::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn generated_keys_are_valid_and_differ() {
        let a = RegistrationKey::generate();
        let b = RegistrationKey::generate();
        assert_eq!(RegistrationKey::parse(a.as_str()).unwrap(), a);
        assert_ne!(a, b);
    }

    #[test]
    fn debug_hides_the_key() {
        let k = RegistrationKey::parse("7QKX-M2PA-9D4R-HV0T").unwrap();
        assert!(!format!("{k:?}").contains("M2PA"));
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,30}") {
            if let Ok(k) = RegistrationKey::parse(&s) {
                prop_assert_eq!(k.as_str().len(), 19);
            }
        }
    }
}
