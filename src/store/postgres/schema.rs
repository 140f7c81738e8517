//! The PostgreSQL schema and its migrations, recorded in `schema_migrations`.
//!
//! `MIGRATIONS[i]` is migration `i + 1`. A migration, once released, is never edited: a change
//! is a new entry at the end. All pending migrations run in one transaction that first takes
//! [`MIGRATION_LOCK`] with `pg_advisory_xact_lock`, so replicas starting at the same moment wait
//! for each other and find the work done, and a failed migration leaves nothing half-applied
//! (PostgreSQL's DDL is transactional).
//!
//! Migration 1 holds what the SQLite schema means after its V4 (rollout counters kept as reports
//! and offers arrive), in PostgreSQL's own types: `bigint` times and sizes with `CHECK`s where
//! the records are unsigned, `boolean` flags, `bytea` SHA-256 digests of exactly 32 bytes,
//! `jsonb` lists and maps, identity columns for the audit log and device reports. Versions stay
//! text: SemVer precedence is not an SQL order, so the store sorts them in Rust.

use super::pool::{Conn, Queries};
use super::Result;
use crate::store::StoreError;

/// The `pg_advisory_xact_lock` key migrations hold ("depot" in ASCII, then 1).
pub(super) const MIGRATION_LOCK: i64 = 0x6465_706f_7401;

pub(super) const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5];

const V1: &str = r#"
-- One row per counter; `changes` moves with every commit of cacheable state (not the audit log,
-- check-ins, reports or manifests), and each move is announced with NOTIFY depot_changes.
CREATE TABLE meta (
    key   text PRIMARY KEY,
    value bigint NOT NULL
);
INSERT INTO meta (key, value) VALUES ('changes', 0);

CREATE TABLE orgs (
    code             text PRIMARY KEY,
    name             text NOT NULL,
    contact_email    text,
    seats            bigint NOT NULL CHECK (seats BETWEEN 0 AND 4294967295),
    channel          text NOT NULL,
    pinned_version   text,
    backup_include   jsonb NOT NULL CHECK (jsonb_typeof(backup_include) = 'array'),
    backup_exclude   jsonb NOT NULL CHECK (jsonb_typeof(backup_exclude) = 'array'),
    settings         jsonb NOT NULL CHECK (jsonb_typeof(settings) = 'object'),
    registration_key text NOT NULL UNIQUE,
    created_at       bigint NOT NULL,
    updated_at       bigint NOT NULL
);

CREATE TABLE overlays (
    org        text NOT NULL REFERENCES orgs (code) ON DELETE CASCADE,
    name       text NOT NULL,
    bytes      bytea NOT NULL,
    updated_at bigint NOT NULL,
    PRIMARY KEY (org, name)
);

CREATE TABLE releases (
    version     text PRIMARY KEY,
    notes       text NOT NULL,
    created_at  bigint NOT NULL,
    yank_reason text,
    yanked_at   bigint,
    CHECK ((yank_reason IS NULL) = (yanked_at IS NULL))
);

CREATE TABLE release_payloads (
    version   text NOT NULL REFERENCES releases (version) ON DELETE CASCADE,
    platform  text NOT NULL,
    file_name text NOT NULL,
    size      bigint NOT NULL CHECK (size >= 0),
    sha256    bytea NOT NULL CHECK (length(sha256) = 32),
    crc32     bigint NOT NULL CHECK (crc32 BETWEEN 0 AND 4294967295),
    blob      bytea NOT NULL CHECK (length(blob) = 32),
    part_len  bigint NOT NULL CHECK (part_len >= 0),
    modified  bigint NOT NULL,
    PRIMARY KEY (version, platform)
);

CREATE TABLE rollouts (
    version      text NOT NULL REFERENCES releases (version) ON DELETE CASCADE,
    channel      text NOT NULL,
    percent      smallint NOT NULL CHECK (percent BETWEEN 0 AND 100),
    paused       boolean NOT NULL,
    pause_reason text,
    published_at bigint NOT NULL,
    updated_at   bigint NOT NULL,
    PRIMARY KEY (version, channel)
);

CREATE TABLE channels (
    channel     text PRIMARY KEY,
    min_version text,
    updated_at  bigint NOT NULL
);

CREATE TABLE packages (
    org           text NOT NULL REFERENCES orgs (code) ON DELETE CASCADE,
    version       text NOT NULL REFERENCES releases (version) ON DELETE CASCADE,
    platform      text NOT NULL,
    file_name     text NOT NULL,
    size          bigint NOT NULL CHECK (size >= 0),
    sha256        bytea NOT NULL CHECK (length(sha256) = 32),
    segments      jsonb NOT NULL CHECK (jsonb_typeof(segments) = 'array'),
    minisig       text NOT NULL,
    config_sha256 bytea NOT NULL CHECK (length(config_sha256) = 32),
    build_key     bytea NOT NULL CHECK (length(build_key) = 32),
    built_at      bigint NOT NULL,
    PRIMARY KEY (org, version, platform),
    UNIQUE (org, version, file_name)
);
CREATE INDEX packages_version ON packages (version);

CREATE TABLE checksums (
    org        text NOT NULL REFERENCES orgs (code) ON DELETE CASCADE,
    version    text NOT NULL REFERENCES releases (version) ON DELETE CASCADE,
    text       text NOT NULL,
    minisig    text NOT NULL,
    updated_at bigint NOT NULL,
    PRIMARY KEY (org, version)
);

-- A partner token dies with its org, so that an org re-created under the same code does not
-- inherit its predecessor's partners.
CREATE TABLE tokens (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    role        text NOT NULL CHECK (role IN ('admin', 'partner')),
    org         text REFERENCES orgs (code) ON DELETE CASCADE,
    secret_hash bytea NOT NULL UNIQUE CHECK (length(secret_hash) = 32),
    created_at  bigint NOT NULL,
    revoked_at  bigint
);
CREATE INDEX tokens_org ON tokens (org);

-- History outlives what it talks about: no foreign keys. The indexes end in id so that
-- "newest first" (at DESC, id DESC) is read off them without a sort.
CREATE TABLE audit (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      bigint NOT NULL,
    actor   text NOT NULL,
    org     text,
    action  text NOT NULL,
    target  text NOT NULL,
    address text NOT NULL,
    detail  text
);
CREATE INDEX audit_org_at ON audit (org, at, id);
CREATE INDEX audit_at ON audit (at, id);

CREATE TABLE devices (
    id              text PRIMARY KEY,
    org             text NOT NULL REFERENCES orgs (code) ON DELETE CASCADE,
    hostname        text NOT NULL,
    platform        text NOT NULL,
    os_version      text NOT NULL,
    user_name       text NOT NULL,
    token_hash      bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    enrolled_at     bigint NOT NULL,
    deactivated_at  bigint,
    last_seen_at    bigint,
    last_address    text,
    current_version text
);
CREATE INDEX devices_by_org ON devices (org, enrolled_at, id);

-- A device offered a release on a channel, once.
CREATE TABLE offers (
    device_id text NOT NULL,
    version   text NOT NULL,
    channel   text NOT NULL,
    at        bigint NOT NULL,
    PRIMARY KEY (version, channel, device_id)
);

-- What devices reported: a history that no count reads, hence no index.
CREATE TABLE device_events (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id text NOT NULL,
    org       text NOT NULL,
    version   text,
    channel   text NOT NULL,
    kind      text NOT NULL CHECK (kind IN ('downloaded', 'installed', 'failed')),
    message   text NOT NULL,
    at        bigint NOT NULL
);

CREATE TABLE manifests (
    org      text NOT NULL,
    platform text NOT NULL,
    channel  text NOT NULL,
    serial   bigint NOT NULL CHECK (serial >= 0),
    json     text NOT NULL,
    minisig  text NOT NULL,
    PRIMARY KEY (org, platform, channel)
);

-- A device's standing on a release and channel: whether it reported the download, and its
-- latest installed-or-failed report.
CREATE TABLE rollout_devices (
    version    text NOT NULL,
    channel    text NOT NULL,
    device_id  text NOT NULL,
    downloaded boolean NOT NULL,
    outcome    text CHECK (outcome IN ('installed', 'failed')),
    PRIMARY KEY (version, channel, device_id)
);

-- The offers and the rollout_devices of a release and channel, summed.
CREATE TABLE rollout_counts (
    version    text NOT NULL,
    channel    text NOT NULL,
    offered    bigint NOT NULL CHECK (offered >= 0),
    downloaded bigint NOT NULL CHECK (downloaded >= 0),
    installed  bigint NOT NULL CHECK (installed >= 0),
    failed     bigint NOT NULL CHECK (failed >= 0),
    PRIMARY KEY (version, channel)
);
"#;

/// People signed in through single sign-on, with the roles their last sign-in gave them, and
/// their personal API tokens (SQLite's V5).
const V2: &str = r#"
CREATE TABLE persons (
    id           text PRIMARY KEY,
    admin        boolean NOT NULL,
    orgs         text NOT NULL,
    signed_in_at bigint NOT NULL,
    address      text NOT NULL
);

CREATE TABLE personal_tokens (
    id          text PRIMARY KEY,
    person      text NOT NULL REFERENCES persons (id) ON DELETE CASCADE,
    name        text NOT NULL,
    secret_hash bytea NOT NULL UNIQUE CHECK (length(secret_hash) = 32),
    created_at  bigint NOT NULL,
    expires_at  bigint NOT NULL,
    revoked_at  bigint
);
CREATE INDEX personal_tokens_person ON personal_tokens (person, created_at);
"#;

/// Rule 6 of the halt: reports that count (once per device, release, channel and outcome), the
/// point an admin's resume starts the count anew from, and the holds of single orgs.
const V3: &str = r#"
CREATE TABLE counted_reports (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    version   text NOT NULL,
    channel   text NOT NULL,
    device_id text NOT NULL,
    org       text NOT NULL,
    kind      text NOT NULL CHECK (kind IN ('installed', 'failed')),
    at        bigint NOT NULL,
    UNIQUE (version, channel, device_id, kind)
);

-- Counted reports up to `after_id` were judged by an admin's resume; the halt counts the rest.
CREATE TABLE halt_baselines (
    version  text NOT NULL,
    channel  text NOT NULL,
    after_id bigint NOT NULL,
    PRIMARY KEY (version, channel)
);

CREATE TABLE rollout_holds (
    version text NOT NULL,
    channel text NOT NULL,
    org     text NOT NULL,
    reason  text NOT NULL,
    at      bigint NOT NULL,
    PRIMARY KEY (version, channel, org)
);

CREATE INDEX manifests_by_org_platform ON manifests (org, platform, serial);
"#;

/// Directory sync (CONTRACT 10): the org's directory settings, its eligible users, why a device
/// was deactivated, and the flags raised for central IT.
const V5: &str = r#"
ALTER TABLE orgs ADD COLUMN directory jsonb NOT NULL DEFAULT '{}';

CREATE TABLE directory_users (
    org       text NOT NULL REFERENCES orgs (code) ON DELETE CASCADE,
    uid       text NOT NULL,
    name      text,
    mail      text,
    synced_at bigint NOT NULL,
    PRIMARY KEY (org, uid)
);

CREATE TABLE device_deactivations (
    device_id text PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    reason    text NOT NULL
);

CREATE TABLE flags (
    id          bigserial PRIMARY KEY,
    org         text NOT NULL REFERENCES orgs (code) ON DELETE CASCADE,
    device_id   text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('outsider', 'ineligible', 'partner')),
    reason      text NOT NULL,
    raised_by   text NOT NULL,
    raised_at   bigint NOT NULL,
    status      text NOT NULL CHECK (status IN ('open', 'deactivated', 'dismissed')),
    resolved_by text,
    resolved_at bigint,
    note        text
);
CREATE INDEX flags_by_device ON flags (device_id, kind);
CREATE INDEX flags_by_org ON flags (org, status);
"#;

/// Brings the schema to the latest version; refuses a database from a newer depot. Returns the
/// migrations it applied.
pub(super) fn migrate(conn: &mut Conn) -> Result<Vec<usize>> {
    let latest = MIGRATIONS.len();
    let mut tx = conn.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )?;
    let current: i32 = tx
        .query_opt(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )?
        .map(|row| row.try_get(0))
        .transpose()?
        .unwrap_or(0);
    let current = usize::try_from(current)
        .map_err(|_| StoreError::Corrupt(format!("schema_migrations holds version {current}")))?;
    if current > latest {
        return Err(StoreError::Corrupt(format!(
            "the database has schema version {current}, newer than the {latest} this depot \
             knows; use the depot release that wrote it, or a newer one"
        )));
    }
    let mut applied = Vec::new();
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(current) {
        let version = index + 1;
        tx.batch_execute(migration)?;
        let number = i32::try_from(version)
            .map_err(|_| StoreError::Corrupt(format!("migration number {version}")))?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&number],
        )?;
        applied.push(version);
    }
    tx.commit()?;
    Ok(applied)
}

/// The depot agent's executable per platform (CONTRACT 7a); the bytes are a blob.
const V4: &str = r#"
CREATE TABLE agent_binaries (
    platform text PRIMARY KEY,
    sha256   bytea NOT NULL,
    size     bigint NOT NULL CHECK (size >= 0),
    added_at bigint NOT NULL
);
"#;
