//! The device's check of a signed release manifest (`check_offer`). The fuzzed JSON is signed
//! with the pinned key, so the checks behind the signature are reached; whatever is accepted must
//! be for this device's org and platform, current, and never behind the last serial.

#![no_main]

use depot::domain::{OrgCode, Platform, Version};
use depot::signing::SigningKey;
use depot::updates::{check_offer, Expectation, OfferView, ReleaseManifest};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// 2027-01-15T08:00:00Z, inside the validity of the seed manifests.
const NOW: i64 = 1_800_000_000;
const LAST_SERIAL: u64 = 3;

fn key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(SigningKey::generate)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(json) = std::str::from_utf8(rest) else {
        return;
    };
    let key = key();
    let expected = Expectation {
        org: OrgCode::parse("physics").expect("a valid org code"),
        platform: Platform::LinuxX86_64,
        last_serial: Some(LAST_SERIAL),
        current: (mode & 1 == 1).then(|| Version::parse("11.2.1").expect("a valid version")),
    };
    // The offer the server claims, taken from the manifest itself (so that it can match) or
    // from nowhere; bit 1 turns it into a rollback, bit 2 disturbs its size.
    let offer = serde_json::from_str::<ReleaseManifest>(json)
        .ok()
        .and_then(|m| m.releases.first().cloned())
        .map(|r| OfferView {
            version: r.version,
            sha256: r.sha256,
            size: r.size ^ u64::from(mode >> 2 & 1),
            rollback: mode & 2 == 2,
        });
    let minisig = key.sign(json.as_bytes(), "depot fuzz manifest");
    let public = key.public_key();
    if let Ok(manifest) = check_offer(json, &minisig, &public, &expected, offer.as_ref(), NOW) {
        assert_eq!(manifest.org, expected.org);
        assert_eq!(manifest.platform, expected.platform);
        assert!(manifest.serial >= LAST_SERIAL);
        assert!(!manifest.is_expired(NOW));
        if let Some(offer) = &offer {
            let listed = manifest
                .releases
                .iter()
                .find(|r| r.version == offer.version);
            let listed = listed.expect("an accepted offer is listed");
            assert_eq!((listed.sha256, listed.size), (offer.sha256, offer.size));
        }
    }
    // The same text under a signature of other bytes is always refused.
    let other = key.sign(b"something else", "depot fuzz manifest");
    assert!(check_offer(json, &other, &public, &expected, offer.as_ref(), NOW).is_err());
});
