//! The SQLite schema and its migrations, keyed by `PRAGMA user_version`.
//!
//! `MIGRATIONS[i]` takes the schema from version `i` to `i + 1`. A migration, once released, is
//! never edited: a change is a new entry at the end. Each one runs in its own `IMMEDIATE`
//! transaction together with the bump of `user_version`, so a crash or a second process opening
//! the same file at the same moment leaves the schema at one version or the next, never between.
//!
//! Tables are `STRICT`, so a value of the wrong type cannot be stored; versions, digests and
//! names are stored as their canonical text, times as unix seconds, lists as JSON text. Only the
//! SQL that PostgreSQL also understands is used, apart from `STRICT` and `AUTOINCREMENT`.

use crate::store::{Result, StoreError};
use rusqlite::{Connection, TransactionBehavior};

pub(super) const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5, V6, V7, V8];

const V1: &str = r#"
-- One row per counter; `changes` moves with every commit of cacheable state (not the audit log).
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) STRICT;
INSERT INTO meta (key, value) VALUES ('changes', 0);

CREATE TABLE orgs (
    code             TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    contact_email    TEXT,
    seats            INTEGER NOT NULL CHECK (seats >= 0),
    channel          TEXT NOT NULL,
    pinned_version   TEXT,
    backup_include   TEXT NOT NULL,  -- JSON array of patterns
    backup_exclude   TEXT NOT NULL,  -- JSON array of patterns
    settings         TEXT NOT NULL,  -- JSON object of strings
    registration_key TEXT NOT NULL UNIQUE,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
) STRICT;

CREATE TABLE overlays (
    org        TEXT NOT NULL REFERENCES orgs (code) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    bytes      BLOB NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (org, name)
) STRICT;

-- Versions sort by SemVer precedence, which SQL cannot express; the store sorts them in Rust.
CREATE TABLE releases (
    version     TEXT PRIMARY KEY,
    notes       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    yank_reason TEXT,
    yanked_at   INTEGER,
    CHECK ((yank_reason IS NULL) = (yanked_at IS NULL))
) STRICT;

CREATE TABLE release_payloads (
    version   TEXT NOT NULL REFERENCES releases (version) ON DELETE CASCADE,
    platform  TEXT NOT NULL,
    file_name TEXT NOT NULL,
    size      INTEGER NOT NULL,
    sha256    TEXT NOT NULL,
    crc32     INTEGER NOT NULL,
    blob      TEXT NOT NULL,
    part_len  INTEGER NOT NULL,
    modified  INTEGER NOT NULL,
    PRIMARY KEY (version, platform)
) STRICT;

CREATE TABLE rollouts (
    version      TEXT NOT NULL REFERENCES releases (version) ON DELETE CASCADE,
    channel      TEXT NOT NULL,
    percent      INTEGER NOT NULL CHECK (percent BETWEEN 0 AND 100),
    paused       INTEGER NOT NULL CHECK (paused IN (0, 1)),
    pause_reason TEXT,
    published_at INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (version, channel)
) STRICT;

CREATE TABLE channels (
    channel     TEXT PRIMARY KEY,
    min_version TEXT,
    updated_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE packages (
    org           TEXT NOT NULL REFERENCES orgs (code) ON DELETE CASCADE,
    version       TEXT NOT NULL REFERENCES releases (version) ON DELETE CASCADE,
    platform      TEXT NOT NULL,
    file_name     TEXT NOT NULL,
    size          INTEGER NOT NULL,
    sha256        TEXT NOT NULL,
    segments      TEXT NOT NULL,  -- JSON array of {blob, offset, len}
    minisig       TEXT NOT NULL,
    config_sha256 TEXT NOT NULL,
    build_key     TEXT NOT NULL,
    built_at      INTEGER NOT NULL,
    PRIMARY KEY (org, version, platform),
    UNIQUE (org, version, file_name)
) STRICT;
CREATE INDEX packages_version ON packages (version);

CREATE TABLE checksums (
    org        TEXT NOT NULL REFERENCES orgs (code) ON DELETE CASCADE,
    version    TEXT NOT NULL REFERENCES releases (version) ON DELETE CASCADE,
    text       TEXT NOT NULL,
    minisig    TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (org, version)
) STRICT;

-- A partner token dies with its org, so that an org re-created under the same code does not
-- inherit its predecessor's partners.
CREATE TABLE tokens (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'partner')),
    org         TEXT REFERENCES orgs (code) ON DELETE CASCADE,
    secret_hash TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
) STRICT;
CREATE INDEX tokens_org ON tokens (org);

-- History outlives what it talks about: no foreign keys.
CREATE TABLE audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    org     TEXT,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    address TEXT NOT NULL,
    detail  TEXT
) STRICT;
CREATE INDEX audit_org_at ON audit (org, at);
CREATE INDEX audit_at ON audit (at);
"#;

fn user_version(conn: &Connection) -> Result<usize> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    usize::try_from(version).map_err(|_| {
        StoreError::Corrupt(format!(
            "the database's schema version {version} is negative"
        ))
    })
}

/// Brings the schema to the latest version; refuses a database from a newer depot.
pub(super) fn migrate(conn: &mut Connection) -> Result<()> {
    let latest = MIGRATIONS.len();
    // Read first without a write lock: the common case, an up-to-date database, takes none.
    let mut current = user_version(conn)?;
    while current < latest {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Read again under the lock: another process may have migrated meanwhile.
        current = user_version(&tx)?;
        if current >= latest {
            break;
        }
        tx.execute_batch(MIGRATIONS[current])?;
        // PRAGMA takes no bound parameters; the value is our own integer.
        tx.execute_batch(&format!("PRAGMA user_version = {}", current + 1))?;
        tx.commit()?;
        current += 1;
    }
    if current > latest {
        return Err(StoreError::Corrupt(format!(
            "the database has schema version {current}, newer than the {latest} this depot \
             knows; use the depot release that wrote it, or a newer one"
        )));
    }
    Ok(())
}

/// Devices, their update checks and reports, and the signed manifests they are served.
const V2: &str = r#"
CREATE TABLE devices (
    id              TEXT PRIMARY KEY,
    org             TEXT NOT NULL REFERENCES orgs (code) ON DELETE CASCADE,
    hostname        TEXT NOT NULL,
    platform        TEXT NOT NULL,
    os_version      TEXT NOT NULL,
    user            TEXT NOT NULL,
    token_hash      TEXT NOT NULL UNIQUE,
    enrolled_at     INTEGER NOT NULL,
    deactivated_at  INTEGER,
    last_seen_at    INTEGER,
    last_address    TEXT,
    current_version TEXT
) STRICT;
CREATE INDEX devices_by_org ON devices (org, enrolled_at);

-- A device offered a release on a channel, once.
CREATE TABLE offers (
    device_id TEXT NOT NULL,
    version   TEXT NOT NULL,
    channel   TEXT NOT NULL,
    at        INTEGER NOT NULL,
    PRIMARY KEY (version, channel, device_id)
) STRICT;

CREATE TABLE device_events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL,
    org       TEXT NOT NULL,
    version   TEXT,
    channel   TEXT NOT NULL,
    kind      TEXT NOT NULL CHECK (kind IN ('downloaded', 'installed', 'failed')),
    message   TEXT NOT NULL,
    at        INTEGER NOT NULL
) STRICT;
CREATE INDEX device_events_by_release ON device_events (version, channel, kind);

CREATE TABLE manifests (
    org      TEXT NOT NULL,
    platform TEXT NOT NULL,
    channel  TEXT NOT NULL,
    serial   INTEGER NOT NULL,
    json     TEXT NOT NULL,
    minisig  TEXT NOT NULL,
    PRIMARY KEY (org, platform, channel)
) STRICT;
"#;

/// Rollout counts are per device (a device's latest report counts), which this index answers.
const V3: &str = r#"
CREATE INDEX device_events_by_device ON device_events (version, channel, device_id, id);
"#;

/// Rollout counts kept as reports and offers arrive, so that recording a report and reading the
/// counts are lookups by key instead of a scan of every report (tens of milliseconds per report
/// at 10,000 devices). Existing reports and offers are summed once here; from then on the device
/// reports are a history that no count reads, so their indexes go.
const V4: &str = r#"
-- A device's standing on a release and channel: whether it reported the download, and its
-- latest installed-or-failed report.
CREATE TABLE rollout_devices (
    version    TEXT NOT NULL,
    channel    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    downloaded INTEGER NOT NULL CHECK (downloaded IN (0, 1)),
    outcome    TEXT CHECK (outcome IN ('installed', 'failed')),
    PRIMARY KEY (version, channel, device_id)
) STRICT;

-- The offers and the rollout_devices of a release and channel, summed.
CREATE TABLE rollout_counts (
    version    TEXT NOT NULL,
    channel    TEXT NOT NULL,
    offered    INTEGER NOT NULL CHECK (offered >= 0),
    downloaded INTEGER NOT NULL CHECK (downloaded >= 0),
    installed  INTEGER NOT NULL CHECK (installed >= 0),
    failed     INTEGER NOT NULL CHECK (failed >= 0),
    PRIMARY KEY (version, channel)
) STRICT;

INSERT INTO rollout_devices (version, channel, device_id, downloaded, outcome)
SELECT e.version, e.channel, e.device_id,
       max(CASE WHEN e.kind = 'downloaded' THEN 1 ELSE 0 END),
       (SELECT l.kind FROM device_events l
         WHERE l.version = e.version AND l.channel = e.channel AND l.device_id = e.device_id
           AND l.kind IN ('installed', 'failed')
         ORDER BY l.id DESC LIMIT 1)
  FROM device_events e
 WHERE e.version IS NOT NULL
 GROUP BY e.version, e.channel, e.device_id;

INSERT INTO rollout_counts (version, channel, offered, downloaded, installed, failed)
SELECT version, channel, sum(offered), sum(downloaded), sum(installed), sum(failed)
  FROM (SELECT version, channel, count(*) AS offered, 0 AS downloaded, 0 AS installed,
               0 AS failed
          FROM offers
         GROUP BY version, channel
        UNION ALL
        SELECT version, channel, 0, sum(downloaded),
               sum(CASE WHEN outcome = 'installed' THEN 1 ELSE 0 END),
               sum(CASE WHEN outcome = 'failed' THEN 1 ELSE 0 END)
          FROM rollout_devices
         GROUP BY version, channel) AS parts
 GROUP BY version, channel;

DROP INDEX device_events_by_device;
DROP INDEX device_events_by_release;
"#;

/// People signed in through single sign-on, with the roles their last sign-in gave them, and
/// their personal API tokens.
const V5: &str = r#"
CREATE TABLE persons (
    id           TEXT PRIMARY KEY,
    admin        INTEGER NOT NULL CHECK (admin IN (0, 1)),
    orgs         TEXT NOT NULL,
    signed_in_at INTEGER NOT NULL,
    address      TEXT NOT NULL
) STRICT;

CREATE TABLE personal_tokens (
    id          TEXT PRIMARY KEY,
    person      TEXT NOT NULL REFERENCES persons (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    revoked_at  INTEGER
) STRICT;
CREATE INDEX personal_tokens_person ON personal_tokens (person, created_at);
"#;

/// Rule 6 of the halt: reports that count (once per device, release, channel and outcome), the
/// point an admin's resume starts the count anew from, and the holds of single orgs.
const V6: &str = r#"
CREATE TABLE counted_reports (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    version   TEXT NOT NULL,
    channel   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    org       TEXT NOT NULL,
    kind      TEXT NOT NULL CHECK (kind IN ('installed', 'failed')),
    at        INTEGER NOT NULL,
    UNIQUE (version, channel, device_id, kind)
) STRICT;

-- Counted reports up to `after_id` were judged by an admin's resume; the halt counts the rest.
CREATE TABLE halt_baselines (
    version  TEXT NOT NULL,
    channel  TEXT NOT NULL,
    after_id INTEGER NOT NULL,
    PRIMARY KEY (version, channel)
) STRICT;

CREATE TABLE rollout_holds (
    version TEXT NOT NULL,
    channel TEXT NOT NULL,
    org     TEXT NOT NULL,
    reason  TEXT NOT NULL,
    at      INTEGER NOT NULL,
    PRIMARY KEY (version, channel, org)
) STRICT;

CREATE INDEX manifests_by_org_platform ON manifests (org, platform, serial);
"#;

/// The depot agent's executable per platform (CONTRACT 7a); the bytes are a blob.
const V7: &str = r#"
CREATE TABLE agent_binaries (
    platform TEXT PRIMARY KEY,
    sha256   TEXT NOT NULL,
    size     INTEGER NOT NULL CHECK (size >= 0),
    added_at INTEGER NOT NULL
) STRICT;
"#;

/// Directory sync (CONTRACT 10): the org's directory settings, its eligible users, why a device
/// was deactivated, and the flags raised for central IT.
const V8: &str = r#"
ALTER TABLE orgs ADD COLUMN directory TEXT NOT NULL DEFAULT '{}';

CREATE TABLE directory_users (
    org       TEXT NOT NULL REFERENCES orgs (code) ON DELETE CASCADE,
    uid       TEXT NOT NULL,
    name      TEXT,
    mail      TEXT,
    synced_at INTEGER NOT NULL,
    PRIMARY KEY (org, uid)
) STRICT;

CREATE TABLE device_deactivations (
    device_id TEXT PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    reason    TEXT NOT NULL
) STRICT;

CREATE TABLE flags (
    id          INTEGER PRIMARY KEY,
    org         TEXT NOT NULL REFERENCES orgs (code) ON DELETE CASCADE,
    device_id   TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL CHECK (kind IN ('outsider', 'ineligible', 'partner')),
    reason      TEXT NOT NULL,
    raised_by   TEXT NOT NULL,
    raised_at   INTEGER NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('open', 'deactivated', 'dismissed')),
    resolved_by TEXT,
    resolved_at INTEGER,
    note        TEXT
) STRICT;
CREATE INDEX flags_by_device ON flags (device_id, kind);
CREATE INDEX flags_by_org ON flags (org, status);
"#;
