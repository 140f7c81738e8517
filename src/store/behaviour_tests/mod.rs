//! Behaviour every [`MetaStore`] and [`BlobStore`] must show, written against the traits so that
//! each backend runs the same suite: `meta_store_tests!(expr)` and `blob_store_tests!(expr)`
//! expand to one `#[test]` per behaviour, where `expr` makes a `(guard, store)` pair per test (the
//! guard keeps a temp dir or a scratch database alive). [`sees_other_handles_commits`] takes two
//! handles on one store (two processes, or two replicas) and is called by each backend's tests.

use super::*;
use crate::domain::{Platform, RegistrationKey};
use crate::org::{Org, OrgConfig};
use crate::package::PayloadPart;
use std::io::Write;

mod blobs;
mod config;
mod fleet;
mod people;

pub(crate) use blobs::*;
pub(crate) use config::*;
pub(crate) use fleet::*;
pub(crate) use people::*;

// ---------------------------------------------------------------------------------------------
// Fixtures

pub(crate) fn code(s: &str) -> OrgCode {
    OrgCode::parse(s).unwrap()
}

pub(crate) fn ver(s: &str) -> Version {
    Version::parse(s).unwrap()
}

pub(crate) fn channel(s: &str) -> Channel {
    Channel::parse(s).unwrap()
}

pub(crate) fn org(c: &str, now: i64) -> Org {
    let mut config = OrgConfig::new(&format!("Department of {c}")).unwrap();
    config.contact_email = Some(format!("it@{c}.example.edu"));
    config.seats = 40;
    config.settings.insert(
        "DEPLOYMENT_URL".into(),
        "https://backup.example.edu:4285".into(),
    );
    Org {
        code: code(c),
        registration_key: RegistrationKey::generate(),
        config,
        created_at: now,
        updated_at: now,
    }
}

fn payload(version: &str, platform: Platform) -> ReleasePayload {
    let payload_name = format!("client-{version}-{platform}.bin");
    ReleasePayload {
        platform,
        part: PayloadPart {
            file_name: EntryName::parse(&payload_name).unwrap(),
            size: 3_000_000_000,
            sha256: Sha256::digest(payload_name.as_bytes()),
            crc32: 0xdead_beef,
            blob: Sha256::digest(format!("part {payload_name}").as_bytes()),
            part_len: 3_000_000_080,
            modified: 1_700_000_000,
        },
    }
}

/// A release with payloads for two platforms, in platform order.
pub(crate) fn release(version: &str, created_at: i64) -> Release {
    Release {
        version: ver(version),
        notes: format!("Release {version}\n\n- fixes"),
        created_at,
        payloads: vec![
            payload(version, Platform::WindowsX86_64),
            payload(version, Platform::MacosAarch64),
        ],
        yanked: None,
    }
}

pub(crate) fn package(org: &str, version: &str, platform: Platform, built_at: i64) -> Package {
    let org = code(org);
    let version = ver(version);
    let file_name = crate::domain::package_file_name(&org, &version, platform);
    Package {
        segments: vec![
            Segment {
                blob: Sha256::digest(b"payload part"),
                offset: 0,
                len: 3_000_000_080,
            },
            Segment {
                blob: Sha256::digest(b"tail pack"),
                offset: 4096,
                len: 2048,
            },
        ],
        size: 3_000_002_128,
        sha256: Sha256::digest(file_name.as_bytes()),
        minisig: format!("untrusted comment: signature\nRW...{file_name}\n"),
        config_sha256: Sha256::digest(b"config"),
        build_key: Sha256::digest(format!("build {built_at}").as_bytes()),
        built_at,
        org,
        version,
        platform,
        file_name,
    }
}

pub(crate) fn checksums(org: &str, version: &str, text: &str, at: i64) -> Checksums {
    Checksums {
        org: code(org),
        version: ver(version),
        text: text.to_string(),
        minisig: format!("untrusted comment: sums\n{text}"),
        updated_at: at,
    }
}

pub(crate) fn token(id: &str, role: Role, org: Option<&str>, at: i64) -> TokenRecord {
    TokenRecord {
        id: id.to_string(),
        name: format!("token {id}"),
        role,
        org: org.map(code),
        secret_hash: Sha256::digest(format!("secret of {id}").as_bytes()),
        created_at: at,
        revoked_at: None,
    }
}

pub(crate) fn event(at: i64, actor: &str, org: Option<&str>, action: &str) -> AuditEvent {
    AuditEvent {
        id: 0,
        at,
        actor: actor.to_string(),
        org: org.map(code),
        action: action.to_string(),
        target: format!("target of {action}"),
        address: "192.0.2.7".to_string(),
        detail: Some("why".to_string()),
    }
}

fn is_not_found<T: std::fmt::Debug>(r: Result<T>, needle: &str) -> bool {
    match r {
        Err(StoreError::NotFound(what)) => what.contains(needle),
        other => panic!("expected NotFound({needle}), got {other:?}"),
    }
}

fn conflict_message<T: std::fmt::Debug>(r: Result<T>) -> String {
    match r {
        Err(StoreError::Conflict(message)) => message,
        other => panic!("expected Conflict, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// MetaStore

/// One `#[test]` per `MetaStore` behaviour; `$make` evaluates to `(guard, store)`.
macro_rules! meta_store_tests {
    ($make:expr) => {
        $crate::store::behaviour_tests::meta_store_tests!(@each $make;
            org_round_trip,
            create_org_conflicts,
            update_org_config,
            set_registration_key,
            delete_org_cascades,
            overlays,
            releases_newest_first,
            yank_release,
            rollouts,
            channels,
            commit_packages,
            commit_packages_is_atomic,
            tokens,
            audit_filters_and_order,
            audit_limit,
            change_counter_moves_on_writes,
            devices_and_checkins,
            device_events_and_counts,
            rollout_counts_agree_with_a_recount,
            manifest_serials_only_grow,
            people_and_personal_tokens,
            manifest_serials_grow_across_channels,
            reports_count_once_from_offered_devices_enrolled_before,
            holds_and_resume,
            agent_binaries,
        );
    };
    (@each $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let (_guard, store) = $make;
                $crate::store::behaviour_tests::$name(&store);
            }
        )*
    };
}
pub(crate) use meta_store_tests;

// ---------------------------------------------------------------------------------------------
// BlobStore

/// One `#[test]` per `BlobStore` behaviour; `$make` evaluates to `(guard, store)`.
macro_rules! blob_store_tests {
    ($make:expr) => {
        $crate::store::behaviour_tests::blob_store_tests!(@each $make;
            blob_round_trip,
            blob_empty,
            blob_dedupe,
            blob_uncommitted_leaves_nothing,
            blob_read_range_bounds,
            blob_missing,
        );
    };
    (@each $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let (_guard, store) = $make;
                $crate::store::behaviour_tests::$name(&store);
            }
        )*
    };
}
pub(crate) use blob_store_tests;
