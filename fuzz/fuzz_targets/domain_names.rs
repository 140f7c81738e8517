//! Every validated name of the domain: parsing arbitrary text never panics, and whatever is
//! accepted prints back to text that parses to the same value.

#![no_main]

use depot::domain::{Channel, EntryName, OrgCode, Platform, RegistrationKey, Sha256, Version};
use libfuzzer_sys::fuzz_target;

fn round_trip<T: PartialEq + std::fmt::Debug>(
    text: &str,
    parse: impl Fn(&str) -> Option<T>,
    print: impl Fn(&T) -> String,
) {
    if let Some(value) = parse(text) {
        let printed = print(&value);
        let again = parse(&printed);
        assert_eq!(
            again.as_ref(),
            Some(&value),
            "{text:?} printed as {printed:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    round_trip(text, |s| OrgCode::parse(s).ok(), ToString::to_string);
    round_trip(text, |s| Channel::parse(s).ok(), ToString::to_string);
    round_trip(text, |s| Version::parse(s).ok(), ToString::to_string);
    round_trip(text, |s| Platform::parse(s).ok(), ToString::to_string);
    round_trip(text, |s| EntryName::parse(s).ok(), ToString::to_string);
    round_trip(text, |s| Sha256::parse(s).ok(), ToString::to_string);
    // The key's Debug is redacted, so compare through its text.
    if let Ok(key) = RegistrationKey::parse(text) {
        let printed = key.as_ref().to_string();
        let again = RegistrationKey::parse(&printed).map(|k| k.as_ref().to_string());
        assert_eq!(again.ok().as_deref(), Some(printed.as_str()));
    }
    // Serde goes through the same rules as `parse`.
    if let Ok(json) = serde_json::to_string(text) {
        let direct = Version::parse(text).is_ok();
        let via_serde = serde_json::from_str::<Version>(&json).is_ok();
        assert_eq!(direct, via_serde, "{text:?}");
    }
});
