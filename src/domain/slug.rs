//! Org codes and channel names share one form: 2-32 chars of `[a-z0-9-]`, starting with a letter,
//! no `--`, no trailing `-`.

use super::{string_newtype, DomainError, Result};

fn check_slug(field: &'static str, s: &str) -> Result<()> {
    let err = |rule| Err(DomainError::new(field, s, rule));
    if !(2..=32).contains(&s.len()) {
        return err("must be 2-32 characters long");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return err("may contain only a-z, 0-9 and '-'");
    }
    if !s.as_bytes()[0].is_ascii_lowercase() {
        return err("must start with a letter a-z");
    }
    if s.contains("--") {
        return err("must not contain '--'");
    }
    if s.ends_with('-') {
        return err("must not end with '-'");
    }
    Ok(())
}

/// The code of an org (department); `default` is the central org.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OrgCode(String);

impl OrgCode {
    pub const DEFAULT: &'static str = "default";

    pub fn parse(s: &str) -> Result<Self> {
        check_slug("org code", s)?;
        Ok(Self(s.to_string()))
    }

    /// The central org whose packages are public.
    pub fn default_org() -> Self {
        Self(Self::DEFAULT.to_string())
    }

    pub fn is_default(&self) -> bool {
        self.0 == Self::DEFAULT
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}
string_newtype!(OrgCode);

/// An update channel such as `stable` or `beta`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Channel(String);

impl Channel {
    pub fn parse(s: &str) -> Result<Self> {
        check_slug("channel", s)?;
        Ok(Self(s.to_string()))
    }

    pub fn stable() -> Self {
        Self("stable".to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}
string_newtype!(Channel);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_contract_examples() {
        for ok in [
            "physics",
            "default",
            "ab",
            "a1",
            "chem-lab-2",
            &"a".repeat(32),
        ] {
            assert!(OrgCode::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_each_rule() {
        for bad in [
            "",
            "a",
            "1abc",
            "-abc",
            "ab-",
            "a--b",
            "Physics",
            "phy sics",
            "phy_sics",
            "../etc",
            "a/b",
            "ab\0",
            &"a".repeat(33),
            "é-abc",
        ] {
            let e = OrgCode::parse(bad).unwrap_err();
            assert_eq!(e.field, "org code");
        }
        assert_eq!(Channel::parse("Beta").unwrap_err().field, "channel");
    }

    #[test]
    fn deserialize_goes_through_parse() {
        assert!(serde_json::from_str::<OrgCode>("\"physics\"").is_ok());
        assert!(serde_json::from_str::<OrgCode>("\"../x\"").is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_accepted_values_keep_the_rules(s in "\\PC{0,40}") {
            if let Ok(code) = OrgCode::parse(&s) {
                let v = code.as_str();
                prop_assert!((2..=32).contains(&v.len()));
                prop_assert!(v.as_bytes()[0].is_ascii_lowercase());
                prop_assert!(!v.contains("--") && !v.ends_with('-'));
                prop_assert!(!v.contains('/') && !v.contains('.'));
            }
        }

        #[test]
        fn generated_valid_codes_round_trip(s in "[a-z]([a-z0-9]|-[a-z0-9]){1,15}") {
            let code = OrgCode::parse(&s).unwrap();
            prop_assert_eq!(code.to_string(), s.clone());
            let json = serde_json::to_string(&code).unwrap();
            prop_assert_eq!(serde_json::from_str::<OrgCode>(&json).unwrap(), code);
        }
    }
}
