use super::*;
use proptest::prelude::*;

const NOW: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

fn v(s: &str) -> Version {
    Version::parse(s).unwrap()
}

fn org(s: &str) -> OrgCode {
    OrgCode::parse(s).unwrap()
}

fn release(version: &str, yanked: bool) -> ManifestRelease {
    ManifestRelease {
        version: v(version),
        sha256: Sha256::digest(version.as_bytes()),
        size: 1000 + version.len() as u64,
        yanked,
    }
}

fn state() -> ManifestState {
    ManifestState {
        org: org("physics"),
        platform: Platform::LinuxX86_64,
        channel: Channel::parse("stable").unwrap(),
        min_version: Some(v("11.0.0")),
        pinned_version: None,
        releases: vec![
            release("12.0.0", true),
            release("11.2.1", false),
            release("12.1.0", false),
        ],
    }
}

fn manifest(serial: u64) -> ReleaseManifest {
    ReleaseManifest::issue(state(), serial, NOW).unwrap()
}

fn expectation() -> Expectation {
    Expectation {
        org: org("physics"),
        platform: Platform::LinuxX86_64,
        last_serial: Some(5),
        current: Some(v("11.2.1")),
    }
}

fn offer_of(version: &str) -> OfferView {
    let r = release(version, false);
    OfferView {
        version: r.version,
        sha256: r.sha256,
        size: r.size,
        rollback: false,
    }
}

/// Signs `m` and runs `check_offer` an hour after it was issued.
fn check(
    key: &SigningKey,
    m: &ReleaseManifest,
    expected: &Expectation,
    offer: Option<&OfferView>,
) -> Result<ReleaseManifest> {
    let signed = m.sign(key);
    check_offer(
        &signed.json,
        &signed.minisig,
        &key.public_key(),
        expected,
        offer,
        NOW + 3600,
    )
}

#[test]
fn issue_sets_the_validity_window_and_sorts_releases() {
    let m = manifest(7);
    assert_eq!(m.issued_at, "2026-01-01T00:00:00Z");
    assert_eq!(m.expires_at, "2026-01-08T00:00:00Z");
    assert_eq!(m.issued_at_unix().unwrap(), NOW);
    assert_eq!(
        m.expires_at_unix().unwrap(),
        NOW + MAX_MANIFEST_VALIDITY_SECS
    );
    let versions: Vec<String> = m.releases.iter().map(|r| r.version.to_string()).collect();
    assert_eq!(versions, ["11.2.1", "12.0.0", "12.1.0"]);
    let mut sorted_state = state();
    sorted_state
        .releases
        .sort_by(|a, b| a.version.cmp(&b.version));
    assert_eq!(m.state(), sorted_state);
}

#[test]
fn issue_refuses_unrepresentable_times() {
    assert!(matches!(
        ReleaseManifest::issue(state(), 1, i64::MAX),
        Err(ManifestError::TimeOutOfRange(_))
    ));
    assert!(matches!(
        ReleaseManifest::issue(state(), 1, 300_000_000_000),
        Err(ManifestError::TimeOutOfRange(_))
    ));
}

#[test]
fn json_has_exactly_the_contract_fields() {
    let m = manifest(7);
    let json = m.to_json();
    assert!(
        !json.contains('\n') && !json.contains(": "),
        "not compact: {json}"
    );
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "channel",
            "expires_at",
            "issued_at",
            "min_version",
            "org",
            "pinned_version",
            "platform",
            "releases",
            "serial"
        ]
    );
    assert_eq!(value["platform"], "linux-x86_64");
    assert_eq!(value["pinned_version"], serde_json::Value::Null);
    assert_eq!(
        value["releases"][0],
        serde_json::json!({
            "version": "11.2.1",
            "sha256": Sha256::digest(b"11.2.1").to_hex(),
            "size": 1006,
            "yanked": false
        })
    );
    let back: ReleaseManifest = serde_json::from_str(&json).unwrap();
    assert_eq!(back, m);
    assert_eq!(back.to_json(), json);
}

#[test]
fn unknown_fields_are_refused() {
    let mut value: serde_json::Value = serde_json::from_str(&manifest(1).to_json()).unwrap();
    value["extra"] = serde_json::json!(1);
    assert!(serde_json::from_str::<ReleaseManifest>(&value.to_string()).is_err());
}

#[test]
fn expiry_and_resign_thresholds() {
    let m = manifest(1);
    let expires = NOW + MAX_MANIFEST_VALIDITY_SECS;
    assert!(!m.is_expired(NOW));
    assert!(!m.is_expired(expires - 1));
    assert!(m.is_expired(expires));
    assert!(!m.is_due_for_resign(expires - RESIGN_MARGIN_SECS - 1));
    assert!(m.is_due_for_resign(expires - RESIGN_MARGIN_SECS));
    assert_eq!(m.resign_at_unix(), expires - RESIGN_MARGIN_SECS);
    let mut broken = m;
    broken.expires_at = "next week".into();
    assert!(broken.is_expired(NOW));
    assert!(broken.is_due_for_resign(NOW));
    assert_eq!(broken.resign_at_unix(), i64::MIN, "always due");
}

#[test]
fn a_good_offer_is_accepted() {
    let key = SigningKey::generate();
    let m = manifest(7);
    let got = check(&key, &m, &expectation(), Some(&offer_of("12.1.0"))).unwrap();
    assert_eq!(got, m);
    // Without an offer the manifest itself is still checked and returned.
    assert_eq!(check(&key, &m, &expectation(), None).unwrap(), m);
    // The first manifest a device sees, and a fresh device with nothing installed.
    let fresh = Expectation {
        last_serial: None,
        current: None,
        ..expectation()
    };
    assert!(check(&key, &m, &fresh, Some(&offer_of("11.2.1"))).is_ok());
}

#[test]
fn the_same_serial_is_accepted_again() {
    let key = SigningKey::generate();
    let expected = Expectation {
        last_serial: Some(7),
        ..expectation()
    };
    assert!(check(&key, &manifest(7), &expected, None).is_ok());
}

#[test]
fn refuses_a_replayed_older_serial() {
    let key = SigningKey::generate();
    let err = check(&key, &manifest(4), &expectation(), None).unwrap_err();
    assert!(matches!(
        err,
        ManifestError::Replayed {
            serial: 4,
            last_serial: 5
        }
    ));
    assert!(err.to_string().contains("replayed"), "{err}");
}

#[test]
fn refuses_another_orgs_manifest() {
    let key = SigningKey::generate();
    let mut m = manifest(7);
    m.org = org("chemistry");
    let err = check(&key, &m, &expectation(), Some(&offer_of("12.1.0"))).unwrap_err();
    assert!(matches!(err, ManifestError::OtherOrg { .. }), "{err}");
    assert!(err.to_string().contains("chemistry"), "{err}");
}

#[test]
fn refuses_another_platforms_manifest() {
    let key = SigningKey::generate();
    let mut m = manifest(7);
    m.platform = Platform::WindowsX86_64;
    let err = check(&key, &m, &expectation(), Some(&offer_of("12.1.0"))).unwrap_err();
    assert!(matches!(err, ManifestError::OtherPlatform { .. }), "{err}");
}

#[test]
fn refuses_an_expired_manifest() {
    let key = SigningKey::generate();
    let signed = manifest(7).sign(&key);
    let at = |now| {
        check_offer(
            &signed.json,
            &signed.minisig,
            &key.public_key(),
            &expectation(),
            None,
            now,
        )
    };
    let expires = NOW + MAX_MANIFEST_VALIDITY_SECS;
    assert!(at(expires - 1).is_ok());
    let err = at(expires).unwrap_err();
    assert!(matches!(err, ManifestError::Expired { .. }), "{err}");
    assert!(err.to_string().contains("2026-01-08T00:00:00Z"), "{err}");
}

#[test]
fn refuses_a_manifest_issued_in_the_future() {
    let key = SigningKey::generate();
    let signed = manifest(7).sign(&key);
    let at = |now| {
        check_offer(
            &signed.json,
            &signed.minisig,
            &key.public_key(),
            &expectation(),
            None,
            now,
        )
    };
    assert!(at(NOW - MAX_CLOCK_SKEW_SECS).is_ok());
    let err = at(NOW - MAX_CLOCK_SKEW_SECS - 1).unwrap_err();
    assert!(matches!(err, ManifestError::IssuedInFuture { .. }), "{err}");
}

#[test]
fn refuses_a_validity_window_over_seven_days() {
    let key = SigningKey::generate();
    let mut m = manifest(7);
    m.expires_at = "2026-01-08T00:00:01Z".into();
    let err = check(&key, &m, &expectation(), None).unwrap_err();
    assert!(
        matches!(err, ManifestError::ValidityTooLong { .. }),
        "{err}"
    );
    // Expiring before it was issued is no window either.
    let mut m = manifest(7);
    m.issued_at = "2026-01-01T01:04:00Z".into();
    m.expires_at = "2026-01-01T01:02:00Z".into();
    let signed = m.sign(&key);
    let err = check_offer(
        &signed.json,
        &signed.minisig,
        &key.public_key(),
        &expectation(),
        None,
        NOW + 3600,
    )
    .unwrap_err();
    assert!(
        matches!(err, ManifestError::ValidityTooLong { .. }),
        "{err}"
    );
}

#[test]
fn refuses_unreadable_times() {
    let key = SigningKey::generate();
    let mut m = manifest(7);
    m.issued_at = "yesterday".into();
    let err = check(&key, &m, &expectation(), None).unwrap_err();
    assert!(
        matches!(
            err,
            ManifestError::BadTime {
                field: "issued_at",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn refuses_a_bad_signature() {
    let key = SigningKey::generate();
    let signed = manifest(7).sign(&key);
    let check_with = |json: &str, minisig: &str, public: &PublicKey| {
        check_offer(json, minisig, public, &expectation(), None, NOW + 60)
    };
    // Another key.
    let other = SigningKey::generate();
    let err = check_with(&signed.json, &signed.minisig, &other.public_key()).unwrap_err();
    assert!(matches!(err, ManifestError::Signature(_)), "{err}");
    // One changed byte of the manifest: serial 7 becomes 9, which would otherwise pass.
    let tampered = signed.json.replace("\"serial\":7", "\"serial\":9");
    assert_ne!(tampered, signed.json);
    let err = check_with(&tampered, &signed.minisig, &key.public_key()).unwrap_err();
    assert!(
        matches!(err, ManifestError::Signature(SigningError::BadSignature)),
        "{err}"
    );
    // The signature of another (older) manifest.
    let older = manifest(6).sign(&key);
    let err = check_with(&signed.json, &older.minisig, &key.public_key()).unwrap_err();
    assert!(matches!(err, ManifestError::Signature(_)), "{err}");
    // Not a signature at all.
    let err = check_with(&signed.json, "", &key.public_key()).unwrap_err();
    assert!(matches!(err, ManifestError::Signature(_)), "{err}");
}

#[test]
fn refuses_an_oversized_manifest_before_verifying() {
    let key = SigningKey::generate();
    let mut m = manifest(7);
    m.releases = (0..20_000)
        .map(|i| release(&format!("1.0.{i}"), false))
        .collect();
    let err = check(&key, &m, &expectation(), None).unwrap_err();
    assert!(matches!(err, ManifestError::TooLarge { .. }), "{err}");
}

#[test]
fn refuses_a_signed_text_that_is_not_a_manifest() {
    let key = SigningKey::generate();
    for text in ["", "{}", "[1,2]", "{\"org\":\"physics\"}"] {
        let minisig = key.sign(text.as_bytes(), "x");
        let err =
            check_offer(text, &minisig, &key.public_key(), &expectation(), None, NOW).unwrap_err();
        assert!(matches!(err, ManifestError::Malformed(_)), "{text}: {err}");
    }
}

#[test]
fn refuses_an_offer_not_listed() {
    let key = SigningKey::generate();
    let err = check(
        &key,
        &manifest(7),
        &expectation(),
        Some(&offer_of("13.0.0")),
    )
    .unwrap_err();
    assert!(matches!(err, ManifestError::NotListed { .. }), "{err}");
}

#[test]
fn refuses_an_offer_with_another_digest_or_size() {
    let key = SigningKey::generate();
    let m = manifest(7);
    let mut offer = offer_of("12.1.0");
    offer.sha256 = Sha256::digest(b"evil");
    let err = check(&key, &m, &expectation(), Some(&offer)).unwrap_err();
    assert!(matches!(err, ManifestError::DigestMismatch { .. }), "{err}");

    let mut offer = offer_of("12.1.0");
    offer.size += 1;
    let err = check(&key, &m, &expectation(), Some(&offer)).unwrap_err();
    assert!(matches!(err, ManifestError::SizeMismatch { .. }), "{err}");
}

#[test]
fn refuses_an_offer_of_a_yanked_version() {
    let key = SigningKey::generate();
    let mut offer = offer_of("12.0.0");
    offer.sha256 = release("12.0.0", true).sha256;
    let err = check(&key, &manifest(7), &expectation(), Some(&offer)).unwrap_err();
    assert!(matches!(err, ManifestError::OfferYanked { .. }), "{err}");
}

#[test]
fn refuses_a_downgrade_that_is_not_a_rollback() {
    let key = SigningKey::generate();
    let expected = Expectation {
        current: Some(v("12.1.0")),
        ..expectation()
    };
    let err = check(&key, &manifest(7), &expected, Some(&offer_of("11.2.1"))).unwrap_err();
    assert!(matches!(err, ManifestError::Downgrade { .. }), "{err}");
}

#[test]
fn a_rollback_needs_the_current_version_listed_as_yanked() {
    let key = SigningKey::generate();
    let m = manifest(7);
    let mut rollback = offer_of("11.2.1");
    rollback.rollback = true;

    // Current 12.0.0 is listed as yanked: accepted.
    let on_yanked = Expectation {
        current: Some(v("12.0.0")),
        ..expectation()
    };
    assert!(check(&key, &m, &on_yanked, Some(&rollback)).is_ok());

    // Current 12.1.0 is listed but not yanked; 12.5.0 is not listed; nothing installed.
    for current in [Some(v("12.1.0")), Some(v("12.5.0")), None] {
        let expected = Expectation {
            current: current.clone(),
            ..expectation()
        };
        let err = check(&key, &m, &expected, Some(&rollback)).unwrap_err();
        assert!(
            matches!(err, ManifestError::RollbackNotAllowed { .. }),
            "{current:?}: {err}"
        );
    }
}

#[test]
fn refusal_messages_are_one_line() {
    let key = SigningKey::generate();
    let err = check(&key, &manifest(4), &expectation(), None).unwrap_err();
    assert!(!err.to_string().contains('\n'));
    let err = ManifestError::RollbackNotAllowed { current: None };
    assert!(err.to_string().contains("(none)"), "{err}");
}

proptest! {
    #[test]
    fn check_offer_never_panics(json in "\\PC{0,400}", minisig in "\\PC{0,300}", now in any::<i64>()) {
        let key = SigningKey::generate();
        let _ = check_offer(&json, &minisig, &key.public_key(), &expectation(), Some(&offer_of("12.1.0")), now);
    }

    #[test]
    fn check_offer_never_panics_on_signed_garbage(json in "\\PC{0,400}", now in any::<i64>()) {
        // Signed by the pinned key, so that parsing and every later check see the text.
        let key = SigningKey::generate();
        let minisig = key.sign(json.as_bytes(), "t");
        prop_assert!(check_offer(&json, &minisig, &key.public_key(), &expectation(), None, now).is_err());
    }

    #[test]
    fn check_offer_never_panics_on_signed_manifests_with_odd_fields(
        serial in any::<u64>(),
        issued in any::<i64>(),
        expires in any::<i64>(),
        now in any::<i64>(),
        last_serial in any::<Option<u64>>(),
        rollback in any::<bool>(),
    ) {
        let key = SigningKey::generate();
        let mut m = manifest(serial);
        m.issued_at = format_time(issued.rem_euclid(250_000_000_000)).unwrap();
        m.expires_at = format_time(expires.rem_euclid(250_000_000_000)).unwrap();
        let signed = m.sign(&key);
        let expected = Expectation { last_serial, ..expectation() };
        let mut offer = offer_of("12.1.0");
        offer.rollback = rollback;
        let _ = check_offer(&signed.json, &signed.minisig, &key.public_key(), &expected, Some(&offer), now);
    }
}
