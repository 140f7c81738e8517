//! The shared metadata store: PostgreSQL, chosen by `--database postgres://user:pass@host/db`, so
//! that several `depot serve` replicas (and the CLI) work on one database.
//!
//! Same meaning as [`super::SqliteStore`], method by method: every method is one transaction, and
//! writes of cacheable state bump the `changes` counter in their own transaction. Writes run at
//! PostgreSQL's READ COMMITTED; where SQLite relied on its single writer (a check before an
//! insert, a count before a limit, a read of a device's standing before its change) the row is
//! locked or the constraint decides, so that replicas writing at once give the same results as
//! one after the other. A write that meets a deadlock, or a connection that turns out to be dead
//! before the commit was sent, is retried on a fresh connection; a failed commit is not (it may
//! have happened). Reads are single statements, each one snapshot.
//!
//! [`MetaStore::change_counter`] is answered from memory while a listener connection hears the
//! `NOTIFY depot_changes` every bumping commit sends (see `changes`), so a change made through
//! one replica reaches the caches of all within milliseconds. [`MetaStore::lock_builds`] is a
//! session-level `pg_advisory_lock` on a connection of its own, held by the returned guard:
//! released when the guard drops, and by the server when the process dies.
//!
//! Connections are plain TCP or unix sockets (no TLS): run PostgreSQL on the same host or a
//! private network, or behind a TLS tunnel.

mod agent_binaries;
mod build_lock;
mod changes;
mod directory;
mod fleet;
mod halt;
mod people;
mod pool;
mod rows;
mod schema;

use super::{
    AuditEvent, AuditFilter, BuildLock, ChannelSettings, Checksums, MetaStore, Overlay, Package,
    Release, Rollout, StoreError, TokenRecord,
};
use crate::domain::{Channel, EntryName, OrgCode, RegistrationKey, Sha256, Version};
use crate::org::{Org, OrgConfig, MAX_OVERLAY_FILES};
use changes::Changes;
use pool::{Conn, Pool, Queries, Tx};
use postgres::error::SqlState;
use postgres::types::{Json, ToSql};
use postgres::Config;
use rows::{to_i64, ORG_COLUMNS, PACKAGE_COLUMNS, ROLLOUT_COLUMNS, TOKEN_COLUMNS};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

type Result<T> = super::Result<T>;

/// Connections a store opens for its calls at most (the change listener and a held build lock
/// have one each besides).
pub const MAX_CONNECTIONS: usize = 10;

/// A write is tried this many times when it meets a deadlock or a dead connection.
const ATTEMPTS: u32 = 3;

/// What went wrong talking to PostgreSQL.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("{}", with_cause(.0))]
    Db(#[from] postgres::Error),
    #[error("the database URL is not valid: {}", with_cause(.0))]
    Url(postgres::Error),
    #[error("all {connections} connections to PostgreSQL stayed busy for {waited:?}")]
    Busy {
        connections: usize,
        waited: Duration,
    },
    #[error("the server closed the connection")]
    Closed,
}

/// The error and what the server said: the error alone reads "db error".
fn with_cause(e: &postgres::Error) -> String {
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        StoreError::Postgres(PgError::Db(e))
    }
}

/// The SQLSTATE of a database error.
fn sql_state(e: &StoreError) -> Option<&SqlState> {
    match e {
        StoreError::Postgres(PgError::Db(e)) => e.code(),
        _ => None,
    }
}

/// Maps a UNIQUE or PRIMARY KEY violation to `Conflict(message(constraint name))`; other errors
/// pass through.
fn conflict_on_duplicate(
    message: impl FnOnce(&str) -> String,
) -> impl FnOnce(StoreError) -> StoreError {
    move |e| match &e {
        StoreError::Postgres(PgError::Db(db)) if db.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            let constraint = db
                .as_db_error()
                .and_then(|d| d.constraint())
                .unwrap_or_default();
            StoreError::Conflict(message(constraint))
        }
        _ => e,
    }
}

/// The PostgreSQL [`MetaStore`].
pub struct PgStore {
    pool: Pool,
    config: Config,
    /// `None` when the store was opened without a listener: every counter read is a query.
    changes: Option<Changes>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("PgStore")
            .field("hosts", &self.config.get_hosts())
            .field("dbname", &self.config.get_dbname())
            .field("user", &self.config.get_user())
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:pass@host:port/db`), brings its
    /// schema up to date and starts the change listener.
    pub fn connect(url: &str) -> Result<Self> {
        Self::open(url, true)
    }

    fn open(url: &str, listen: bool) -> Result<Self> {
        let mut config: Config = url
            .parse()
            .map_err(|e| StoreError::Postgres(PgError::Url(e)))?;
        if config.get_application_name().is_none() {
            config.application_name("depot");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        // A server gone without a word (a dead host, a dropped route) is noticed in about a
        // minute instead of the two hours of the kernel's default.
        config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .keepalives_interval(Duration::from_secs(10))
            .keepalives_retries(3);
        let pool = Pool::new(config.clone(), MAX_CONNECTIONS);
        let applied = schema::migrate(pool.get()?.conn())?;
        if !applied.is_empty() {
            tracing::info!(?applied, "applied PostgreSQL schema migrations");
        }
        let changes = if listen {
            Some(Changes::start(config.clone())?)
        } else {
            None
        };
        Ok(Self {
            pool,
            config,
            changes,
        })
    }

    /// Runs `f` on a connection, once more on a fresh one when the connection was dead.
    fn read<T>(&self, mut f: impl FnMut(&mut dyn Queries) -> Result<T>) -> Result<T> {
        let mut attempt = 1;
        loop {
            let mut conn = self.pool.get()?;
            match f(&mut *conn) {
                Err(e) if attempt < ATTEMPTS && self.worth_retrying(&e, &mut conn) => attempt += 1,
                outcome => return outcome,
            }
        }
    }

    /// Runs `f` in one write transaction and, when `bump`, moves the change counter and
    /// announces it in the same transaction; returns the counter as the commit left it.
    fn transact<T>(
        &self,
        bump: bool,
        f: &mut dyn FnMut(&mut Tx<'_>) -> Result<T>,
    ) -> Result<(T, Option<u64>)> {
        let mut attempt = 1;
        loop {
            let mut conn = self.pool.get()?;
            let error = match attempt_once(&mut conn, bump, f) {
                Ok((tx, out, counter)) => {
                    // Not retried: a commit whose answer was lost may have happened.
                    tx.commit()?;
                    if let (Some(counter), Some(changes)) = (counter, &self.changes) {
                        changes.saw(counter);
                    }
                    return Ok((out, counter));
                }
                Err(e) => e,
            };
            if attempt < ATTEMPTS && self.worth_retrying(&error, &mut conn) {
                attempt += 1;
                continue;
            }
            return Err(error);
        }
    }

    /// A write of cacheable state.
    fn write<T>(&self, mut f: impl FnMut(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        Ok(self.transact(true, &mut f)?.0)
    }

    /// [`Self::write`], also giving the change counter as this commit left it.
    fn write_counted<T>(&self, mut f: impl FnMut(&mut Tx<'_>) -> Result<T>) -> Result<(T, u64)> {
        match self.transact(true, &mut f)? {
            (out, Some(counter)) => Ok((out, counter)),
            (_, None) => Err(StoreError::Corrupt(
                "meta row changes: not moved by a write".into(),
            )),
        }
    }

    /// A write of records no cache holds (check-ins, reports, manifests): leaves the counter.
    fn write_unversioned<T>(&self, mut f: impl FnMut(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        Ok(self.transact(false, &mut f)?.0)
    }

    /// Deadlocks (replicas locking rows in different orders) and connections found dead before
    /// anything was committed are worth another try.
    fn worth_retrying(&self, e: &StoreError, conn: &mut Conn) -> bool {
        // A terminated or restarting server says so (57P0x) before it closes the connection.
        let ended = conn.is_closed()
            || sql_state(e).is_some_and(|s| {
                s.code().starts_with("08")
                    || matches!(
                        *s,
                        SqlState::ADMIN_SHUTDOWN
                            | SqlState::CRASH_SHUTDOWN
                            | SqlState::CANNOT_CONNECT_NOW
                    )
            });
        if ended {
            conn.mark_broken();
            tracing::warn!(error = %e, "PostgreSQL connection lost; retrying on a new one");
            self.pool.discard_idle();
            return true;
        }
        matches!(
            sql_state(e),
            Some(&SqlState::T_R_DEADLOCK_DETECTED | &SqlState::T_R_SERIALIZATION_FAILURE)
        )
    }

    fn read_counter(&self) -> Result<u64> {
        self.read(|db| {
            let row = db.query_opt(changes::READ_COUNTER, &[])?;
            changes::parse_counter(row.map(|r| r.try_get(0)).transpose()?)
        })
    }
}

/// Begins a transaction on `conn`, runs `f` and, when `bump`, moves and announces the counter.
fn attempt_once<'c, T>(
    conn: &'c mut Conn,
    bump: bool,
    f: &mut dyn FnMut(&mut Tx<'_>) -> Result<T>,
) -> Result<(Tx<'c>, T, Option<u64>)> {
    let mut tx = conn.transaction()?;
    let out = f(&mut tx)?;
    let counter = if bump {
        // Last, so that the counter row (which every bumping write needs) is locked briefly.
        let row = tx.query_opt(
            &format!(
                "WITH bumped AS (UPDATE meta SET value = value + 1 WHERE key = 'changes' \
                 RETURNING value) \
                 SELECT value, pg_notify('{}', value::text) FROM bumped",
                changes::CHANNEL
            ),
            &[],
        )?;
        Some(changes::parse_counter(
            row.map(|r| r.try_get("value")).transpose()?,
        )?)
    } else {
        None
    };
    Ok((tx, out, counter))
}

/// That the org exists, holding it until the transaction ends: without the lock an org deleted
/// by another replica between this check and the write that refers to it failed the write on
/// its foreign key. `KEY SHARE` is the lock the key check itself takes: it holds off only a
/// deletion (or a change of the code), which then waits and takes the new rows with it.
fn require_org(db: &mut dyn Queries, code: &OrgCode) -> Result<()> {
    if db
        .query_opt(
            "SELECT 1 FROM orgs WHERE code = $1 FOR KEY SHARE",
            &[&code.as_str()],
        )?
        .is_some()
    {
        Ok(())
    } else {
        Err(StoreError::NotFound(format!("org {code}")))
    }
}

fn require_release(db: &mut dyn Queries, version: &Version) -> Result<()> {
    if db
        .query_opt(
            "SELECT 1 FROM releases WHERE version = $1",
            &[&version.to_string()],
        )?
        .is_some()
    {
        Ok(())
    } else {
        Err(StoreError::NotFound(format!("release {version}")))
    }
}

fn load_org(db: &mut dyn Queries, code: &OrgCode) -> Result<Option<Org>> {
    let row = db.query_opt(
        &format!("SELECT {ORG_COLUMNS} FROM orgs WHERE code = $1"),
        &[&code.as_str()],
    )?;
    rows::first(row, rows::org)
}

/// Like [`load_org`], for an org the transaction just changed.
fn reload_org(db: &mut dyn Queries, code: &OrgCode) -> Result<Org> {
    load_org(db, code)?.ok_or_else(|| StoreError::NotFound(format!("org {code}")))
}

/// The registration key is a secret: the message names the org that holds it, not the key.
fn registration_key_owner(db: &mut dyn Queries, key: &RegistrationKey) -> Result<Option<String>> {
    db.query_opt(
        "SELECT code FROM orgs WHERE registration_key = $1",
        &[&key.as_str()],
    )?
    .map(|row| row.try_get(0).map_err(StoreError::from))
    .transpose()
}

fn key_taken(owner: &str) -> StoreError {
    StoreError::Conflict(format!(
        "that registration key is already used by org {owner}; generate another"
    ))
}

/// A key another transaction took between the check and the write: the owner is not known.
fn key_taken_meanwhile(code: &OrgCode) -> impl FnOnce(&str) -> String + '_ {
    move |constraint| {
        if constraint == "orgs_registration_key_key" {
            "that registration key is already used by another org; generate another".into()
        } else {
            format!("org {code} already exists")
        }
    }
}

/// Releases with their payloads, newest first; one release when `only` is given. One statement,
/// so one snapshot.
fn load_releases(db: &mut dyn Queries, only: Option<&Version>) -> Result<Vec<Release>> {
    let select = format!(
        "SELECT {} FROM releases r LEFT JOIN release_payloads p ON p.version = r.version",
        rows::RELEASE_COLUMNS
    );
    let found = match only {
        Some(version) => db.query(
            &format!("{select} WHERE r.version = $1"),
            &[&version.to_string()],
        )?,
        None => db.query(&select, &[])?,
    };
    let mut releases: Vec<Release> = Vec::new();
    // Keyed by the stored text: versions differing only in build metadata are distinct rows.
    let mut index: HashMap<String, usize> = HashMap::new();
    for row in &found {
        let (release, payload) = rows::release_with_payload(row)?;
        let text: String = row.try_get("version")?;
        let at = *index.entry(text).or_insert_with(|| {
            releases.push(release);
            releases.len() - 1
        });
        if let Some(payload) = payload {
            releases[at].payloads.push(payload);
        }
    }
    for release in &mut releases {
        release.payloads.sort_by_key(|p| p.platform);
    }
    releases.sort_by(|a, b| b.version.cmp(&a.version));
    Ok(releases)
}

/// A `WHERE` clause of the conditions that apply, with their values bound in order.
#[derive(Default)]
struct Filter {
    conditions: Vec<String>,
    values: Vec<Box<dyn ToSql + Sync>>,
}

impl Filter {
    /// Adds a value and returns its placeholder.
    fn bind(&mut self, value: impl ToSql + Sync + 'static) -> String {
        self.values.push(Box::new(value));
        format!("${}", self.values.len())
    }

    /// Adds `<column_and_operator> <value>`, e.g. `require("at >=", since)`.
    fn require(&mut self, column_and_operator: &str, value: impl ToSql + Sync + 'static) {
        let placeholder = self.bind(value);
        self.conditions
            .push(format!("{column_and_operator} {placeholder}"));
    }

    fn where_clause(&self) -> String {
        if self.conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.conditions.join(" AND "))
        }
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.values.iter().map(|v| v.as_ref()).collect()
    }
}

impl MetaStore for PgStore {
    fn create_org(&self, org: &Org) -> Result<()> {
        let c = &org.config;
        let include = Json(&c.backup.include);
        let exclude = Json(&c.backup.exclude);
        let settings = Json(&c.settings);
        let directory = Json(c.directory_fields());
        let pinned = c.pinned_version.as_ref().map(ToString::to_string);
        self.write(|tx| {
            if load_org(tx, &org.code)?.is_some() {
                return Err(StoreError::Conflict(format!(
                    "org {} already exists",
                    org.code
                )));
            }
            if let Some(owner) = registration_key_owner(tx, &org.registration_key)? {
                return Err(key_taken(&owner));
            }
            tx.execute(
                &format!(
                    "INSERT INTO orgs ({ORG_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
                ),
                &[
                    &org.code.as_str(),
                    &c.name,
                    &c.contact_email,
                    &i64::from(c.seats),
                    &c.channel.as_str(),
                    &pinned,
                    &include,
                    &exclude,
                    &settings,
                    &org.registration_key.as_str(),
                    &org.created_at,
                    &org.updated_at,
                    &directory,
                ],
            )
            .map_err(conflict_on_duplicate(key_taken_meanwhile(&org.code)))?;
            Ok(())
        })
    }

    fn get_org(&self, code: &OrgCode) -> Result<Option<Org>> {
        self.read(|db| load_org(db, code))
    }

    fn list_orgs(&self) -> Result<Vec<Org>> {
        self.read(|db| {
            let found = db.query(
                &format!("SELECT {ORG_COLUMNS} FROM orgs ORDER BY code"),
                &[],
            )?;
            rows::all(found, rows::org)
        })
    }

    fn update_org_config(&self, code: &OrgCode, config: &OrgConfig, now: i64) -> Result<Org> {
        let include = Json(&config.backup.include);
        let exclude = Json(&config.backup.exclude);
        let settings = Json(&config.settings);
        let directory = Json(config.directory_fields());
        let pinned = config.pinned_version.as_ref().map(ToString::to_string);
        self.write(|tx| {
            let changed = tx.execute(
                "UPDATE orgs SET name = $2, contact_email = $3, seats = $4, channel = $5, \
                 pinned_version = $6, backup_include = $7, backup_exclude = $8, \
                 settings = $9, updated_at = $10, directory = $11 WHERE code = $1",
                &[
                    &code.as_str(),
                    &config.name,
                    &config.contact_email,
                    &i64::from(config.seats),
                    &config.channel.as_str(),
                    &pinned,
                    &include,
                    &exclude,
                    &settings,
                    &now,
                    &directory,
                ],
            )?;
            if changed == 0 {
                return Err(StoreError::NotFound(format!("org {code}")));
            }
            reload_org(tx, code)
        })
    }

    fn set_registration_key(&self, code: &OrgCode, key: &RegistrationKey, now: i64) -> Result<Org> {
        self.write(|tx| {
            require_org(tx, code)?;
            match registration_key_owner(tx, key)? {
                Some(owner) if owner != code.as_str() => return Err(key_taken(&owner)),
                _ => {}
            }
            tx.execute(
                "UPDATE orgs SET registration_key = $2, updated_at = $3 WHERE code = $1",
                &[&code.as_str(), &key.as_str(), &now],
            )
            .map_err(conflict_on_duplicate(key_taken_meanwhile(code)))?;
            reload_org(tx, code)
        })
    }

    fn delete_org(&self, code: &OrgCode) -> Result<()> {
        self.write(|tx| {
            // Overlays, packages, checksums, partner tokens and devices go with it (ON DELETE
            // CASCADE).
            let deleted = tx.execute("DELETE FROM orgs WHERE code = $1", &[&code.as_str()])?;
            if deleted == 0 {
                return Err(StoreError::NotFound(format!("org {code}")));
            }
            Ok(())
        })
    }

    fn put_overlay(&self, code: &OrgCode, name: &EntryName, bytes: &[u8], now: i64) -> Result<()> {
        self.write(|tx| {
            // The org's row lock serialises uploads to one org, so that two at once cannot both
            // pass the limit below.
            tx.query_opt(
                "SELECT 1 FROM orgs WHERE code = $1 FOR UPDATE",
                &[&code.as_str()],
            )?
            .ok_or_else(|| StoreError::NotFound(format!("org {code}")))?;
            let row = tx
                .query_opt(
                    "SELECT count(*) AS files, coalesce(bool_or(name = $2), false) AS replaces \
                     FROM overlays WHERE org = $1",
                    &[&code.as_str(), &name.as_str()],
                )?
                .ok_or_else(|| StoreError::Corrupt("overlays: no count".into()))?;
            let count = rows::Cells::new(&row, "overlays", &[]).u64("files")?;
            let replaces: bool = row.try_get("replaces")?;
            if !replaces && count >= MAX_OVERLAY_FILES as u64 {
                return Err(StoreError::Conflict(format!(
                    "org {code} already has {count} overlay files, the most it may have; \
                     remove one first"
                )));
            }
            tx.execute(
                "INSERT INTO overlays (org, name, bytes, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (org, name) DO UPDATE \
                 SET bytes = excluded.bytes, updated_at = excluded.updated_at",
                &[&code.as_str(), &name.as_str(), &bytes, &now],
            )?;
            // An overlay is part of the org's configuration: its packages are now out of date.
            tx.execute(
                "UPDATE orgs SET updated_at = $2 WHERE code = $1",
                &[&code.as_str(), &now],
            )?;
            Ok(())
        })
    }

    fn delete_overlay(&self, code: &OrgCode, name: &EntryName, now: i64) -> Result<bool> {
        self.write(|tx| {
            let deleted = tx.execute(
                "DELETE FROM overlays WHERE org = $1 AND name = $2",
                &[&code.as_str(), &name.as_str()],
            )?;
            if deleted > 0 {
                tx.execute(
                    "UPDATE orgs SET updated_at = $2 WHERE code = $1",
                    &[&code.as_str(), &now],
                )?;
            }
            Ok(deleted > 0)
        })
    }

    fn list_overlays(&self, code: &OrgCode) -> Result<Vec<Overlay>> {
        self.read(|db| {
            let found = db.query(
                "SELECT org, name, bytes, updated_at FROM overlays WHERE org = $1 ORDER BY name",
                &[&code.as_str()],
            )?;
            rows::all(found, rows::overlay)
        })
    }

    fn add_release(&self, release: &Release) -> Result<()> {
        let version = release.version.to_string();
        self.write(|tx| {
            tx.execute(
                "INSERT INTO releases (version, notes, created_at, yank_reason, yanked_at) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &version,
                    &release.notes,
                    &release.created_at,
                    &release.yanked.as_ref().map(|y| y.reason.as_str()),
                    &release.yanked.as_ref().map(|y| y.at),
                ],
            )
            .map_err(conflict_on_duplicate(|_| {
                format!("release {version} already exists")
            }))?;
            for payload in &release.payloads {
                let part = &payload.part;
                tx.execute(
                    "INSERT INTO release_payloads \
                     (version, platform, file_name, size, sha256, crc32, blob, part_len, modified) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    &[
                        &version,
                        &payload.platform.as_str(),
                        &part.file_name.as_str(),
                        &to_i64("payload size", part.size)?,
                        &part.sha256.as_bytes().as_slice(),
                        &i64::from(part.crc32),
                        &part.blob.as_bytes().as_slice(),
                        &to_i64("payload part length", part.part_len)?,
                        &part.modified,
                    ],
                )
                .map_err(conflict_on_duplicate(|_| {
                    format!(
                        "release {version} has more than one payload for {}",
                        payload.platform
                    )
                }))?;
            }
            Ok(())
        })
    }

    fn get_release(&self, version: &Version) -> Result<Option<Release>> {
        self.read(|db| Ok(load_releases(db, Some(version))?.pop()))
    }

    fn list_releases(&self) -> Result<Vec<Release>> {
        self.read(|db| load_releases(db, None))
    }

    fn yank_release(&self, version: &Version, reason: &str, now: i64) -> Result<Release> {
        self.write(|tx| {
            // A second yank may correct the reason; the release was withdrawn at the first.
            let changed = tx.execute(
                "UPDATE releases SET yank_reason = $2, yanked_at = coalesce(yanked_at, $3) \
                 WHERE version = $1",
                &[&version.to_string(), &reason, &now],
            )?;
            if changed == 0 {
                return Err(StoreError::NotFound(format!("release {version}")));
            }
            load_releases(tx, Some(version))?
                .pop()
                .ok_or_else(|| StoreError::NotFound(format!("release {version}")))
        })
    }

    fn put_rollout(&self, rollout: &Rollout) -> Result<()> {
        if rollout.percent > 100 {
            return Err(StoreError::Conflict(format!(
                "a rollout reaches 0-100 percent of devices, not {}",
                rollout.percent
            )));
        }
        self.write(|tx| {
            require_release(tx, &rollout.version)?;
            tx.execute(
                &format!(
                    "INSERT INTO rollouts ({ROLLOUT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (version, channel) DO UPDATE SET percent = excluded.percent, \
                     paused = excluded.paused, pause_reason = excluded.pause_reason, \
                     published_at = excluded.published_at, updated_at = excluded.updated_at"
                ),
                &[
                    &rollout.version.to_string(),
                    &rollout.channel.as_str(),
                    &i16::from(rollout.percent),
                    &rollout.paused,
                    &rollout.pause_reason,
                    &rollout.published_at,
                    &rollout.updated_at,
                ],
            )?;
            Ok(())
        })
    }

    fn get_rollout(&self, version: &Version, channel: &Channel) -> Result<Option<Rollout>> {
        self.read(|db| {
            let row = db.query_opt(
                &format!(
                    "SELECT {ROLLOUT_COLUMNS} FROM rollouts WHERE version = $1 AND channel = $2"
                ),
                &[&version.to_string(), &channel.as_str()],
            )?;
            rows::first(row, rows::rollout)
        })
    }

    /// Newest release first, then by channel.
    fn list_rollouts(&self) -> Result<Vec<Rollout>> {
        let mut rollouts = self.read(|db| {
            let found = db.query(&format!("SELECT {ROLLOUT_COLUMNS} FROM rollouts"), &[])?;
            rows::all(found, rows::rollout)
        })?;
        rollouts.sort_by(|a, b| {
            b.version
                .cmp(&a.version)
                .then_with(|| a.channel.cmp(&b.channel))
        });
        Ok(rollouts)
    }

    fn get_channel(&self, channel: &Channel) -> Result<Option<ChannelSettings>> {
        self.read(|db| {
            let row = db.query_opt(
                "SELECT channel, min_version, updated_at FROM channels WHERE channel = $1",
                &[&channel.as_str()],
            )?;
            rows::first(row, rows::channel_settings)
        })
    }

    fn put_channel(&self, settings: &ChannelSettings) -> Result<()> {
        let min_version = settings.min_version.as_ref().map(ToString::to_string);
        self.write(|tx| {
            tx.execute(
                "INSERT INTO channels (channel, min_version, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (channel) DO UPDATE \
                 SET min_version = excluded.min_version, updated_at = excluded.updated_at",
                &[
                    &settings.channel.as_str(),
                    &min_version,
                    &settings.updated_at,
                ],
            )?;
            Ok(())
        })
    }

    fn commit_packages(&self, packages: &[Package], checksums: &[Checksums]) -> Result<()> {
        let orgs: BTreeSet<&OrgCode> = packages
            .iter()
            .map(|p| &p.org)
            .chain(checksums.iter().map(|c| &c.org))
            .collect();
        let versions: BTreeSet<&Version> = packages
            .iter()
            .map(|p| &p.version)
            .chain(checksums.iter().map(|c| &c.version))
            .collect();
        self.write(|tx| {
            // Named checks instead of a bare foreign key violation.
            for org in &orgs {
                require_org(tx, org)?;
            }
            for version in &versions {
                require_release(tx, version)?;
            }
            for p in packages {
                tx.execute(
                    &format!(
                        "INSERT INTO packages ({PACKAGE_COLUMNS}) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                         ON CONFLICT (org, version, platform) DO UPDATE SET \
                         file_name = excluded.file_name, size = excluded.size, \
                         sha256 = excluded.sha256, segments = excluded.segments, \
                         minisig = excluded.minisig, config_sha256 = excluded.config_sha256, \
                         build_key = excluded.build_key, built_at = excluded.built_at"
                    ),
                    &[
                        &p.org.as_str(),
                        &p.version.to_string(),
                        &p.platform.as_str(),
                        &p.file_name,
                        &to_i64("package size", p.size)?,
                        &p.sha256.as_bytes().as_slice(),
                        &Json(&p.segments),
                        &p.minisig,
                        &p.config_sha256.as_bytes().as_slice(),
                        &p.build_key.as_bytes().as_slice(),
                        &p.built_at,
                    ],
                )
                .map_err(conflict_on_duplicate(|_| {
                    format!(
                        "org {} release {} already has another package named {}",
                        p.org, p.version, p.file_name
                    )
                }))?;
            }
            for c in checksums {
                tx.execute(
                    "INSERT INTO checksums (org, version, text, minisig, updated_at) \
                     VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (org, version) DO UPDATE SET text = excluded.text, \
                     minisig = excluded.minisig, updated_at = excluded.updated_at",
                    &[
                        &c.org.as_str(),
                        &c.version.to_string(),
                        &c.text,
                        &c.minisig,
                        &c.updated_at,
                    ],
                )?;
            }
            Ok(())
        })
    }

    /// By org, then newest version first, then platform.
    fn list_packages(
        &self,
        org: Option<&OrgCode>,
        version: Option<&Version>,
    ) -> Result<Vec<Package>> {
        let mut filter = Filter::default();
        if let Some(org) = org {
            filter.require("org =", org.as_str().to_string());
        }
        if let Some(version) = version {
            filter.require("version =", version.to_string());
        }
        let sql = format!(
            "SELECT {PACKAGE_COLUMNS} FROM packages {}",
            filter.where_clause()
        );
        let mut packages =
            self.read(|db| rows::all(db.query(&sql, &filter.params())?, rows::package))?;
        packages.sort_by(|a, b| {
            a.org
                .cmp(&b.org)
                .then_with(|| b.version.cmp(&a.version))
                .then_with(|| a.platform.cmp(&b.platform))
        });
        Ok(packages)
    }

    fn get_package(
        &self,
        org: &OrgCode,
        version: &Version,
        file_name: &str,
    ) -> Result<Option<Package>> {
        self.read(|db| {
            let row = db.query_opt(
                &format!(
                    "SELECT {PACKAGE_COLUMNS} FROM packages \
                     WHERE org = $1 AND version = $2 AND file_name = $3"
                ),
                &[&org.as_str(), &version.to_string(), &file_name],
            )?;
            rows::first(row, rows::package)
        })
    }

    fn get_checksums(&self, org: &OrgCode, version: &Version) -> Result<Option<Checksums>> {
        self.read(|db| {
            let row = db.query_opt(
                "SELECT org, version, text, minisig, updated_at FROM checksums \
                 WHERE org = $1 AND version = $2",
                &[&org.as_str(), &version.to_string()],
            )?;
            rows::first(row, rows::checksums)
        })
    }

    fn create_token(&self, token: &TokenRecord) -> Result<()> {
        self.write(|tx| {
            if let Some(org) = &token.org {
                require_org(tx, org)?;
            }
            tx.execute(
                &format!(
                    "INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                ),
                &[
                    &token.id,
                    &token.name,
                    &token.role.as_str(),
                    &token.org.as_ref().map(OrgCode::as_str),
                    &token.secret_hash.as_bytes().as_slice(),
                    &token.created_at,
                    &token.revoked_at,
                ],
            )
            .map_err(conflict_on_duplicate(|_| {
                format!(
                    "a token with id {} or with the same secret exists",
                    token.id
                )
            }))?;
            Ok(())
        })
    }

    /// Oldest first.
    fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        self.read(|db| {
            let found = db.query(
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at, id"),
                &[],
            )?;
            rows::all(found, rows::token)
        })
    }

    /// Finds revoked tokens too, with their `revoked_at`: the caller refuses them (and can say
    /// why).
    fn find_token(&self, secret_hash: &Sha256) -> Result<Option<TokenRecord>> {
        self.read(|db| {
            let row = db.query_opt(
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE secret_hash = $1"),
                &[&secret_hash.as_bytes().as_slice()],
            )?;
            rows::first(row, rows::token)
        })
    }

    fn revoke_token(&self, id: &str, now: i64) -> Result<bool> {
        self.write(|tx| {
            let changed = tx.execute(
                "UPDATE tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                &[&id, &now],
            )?;
            Ok(changed > 0)
        })
    }

    fn put_person(&self, person: &super::PersonRecord) -> Result<()> {
        self.write_unversioned(|tx| people::put_person(tx, person))
    }

    fn get_person(&self, id: &str) -> Result<Option<super::PersonRecord>> {
        self.read(|db| people::get_person(db, id))
    }

    fn create_personal_token(&self, token: &super::PersonalTokenRecord) -> Result<()> {
        self.write_unversioned(|tx| people::create_personal_token(tx, token))
    }

    fn list_personal_tokens(&self, person: &str) -> Result<Vec<super::PersonalTokenRecord>> {
        self.read(|db| people::list_personal_tokens(db, person))
    }

    fn find_personal_token(&self, hash: &Sha256) -> Result<Option<super::PersonalTokenRecord>> {
        self.read(|db| people::find_personal_token(db, hash))
    }

    fn revoke_personal_token(&self, person: &str, id: &str, now: i64) -> Result<bool> {
        self.write_unversioned(|tx| people::revoke_personal_token(tx, person, id, now))
    }

    /// Ignores `event.id`: the store assigns it. Does not move the change counter.
    fn append_audit(&self, event: &AuditEvent) -> Result<()> {
        // In a transaction, so that a retry after a lost connection cannot write it twice.
        self.write_unversioned(|tx| {
            tx.execute(
                "INSERT INTO audit (at, actor, org, action, target, address, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &event.at,
                    &event.actor,
                    &event.org.as_ref().map(OrgCode::as_str),
                    &event.action,
                    &event.target,
                    &event.address,
                    &event.detail,
                ],
            )?;
            Ok(())
        })
    }

    /// Newest first (ties by id, the order of appending); at most `limit` events, default 100,
    /// never more than 1000.
    fn query_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>> {
        let mut sql = Filter::default();
        if let Some(org) = &filter.org {
            sql.require("org =", org.as_str().to_string());
        }
        if let Some(actor) = &filter.actor {
            sql.require("actor =", actor.clone());
        }
        if let Some(action) = &filter.action {
            sql.require("action =", action.clone());
        }
        if let Some(since) = filter.since {
            sql.require("at >=", since);
        }
        let limit = sql.bind(i64::from(filter.effective_limit()));
        let text = format!(
            "SELECT id, at, actor, org, action, target, address, detail FROM audit {} \
             ORDER BY at DESC, id DESC LIMIT {limit}",
            sql.where_clause()
        );
        self.read(|db| rows::all(db.query(&text, &sql.params())?, rows::audit_event))
    }

    fn find_org_by_key(&self, key: &RegistrationKey) -> Result<Option<Org>> {
        self.read(|db| {
            let row = db.query_opt(
                &format!("SELECT {ORG_COLUMNS} FROM orgs WHERE registration_key = $1"),
                &[&key.as_str()],
            )?;
            rows::first(row, rows::org)
        })
    }

    fn create_device(&self, device: &super::Device) -> Result<u64> {
        Ok(self.write_counted(|tx| fleet::create_device(tx, device))?.1)
    }

    fn count_active_devices(&self, org: &OrgCode) -> Result<u64> {
        self.read(|db| fleet::count_active_devices(db, org))
    }

    fn list_devices(&self, org: Option<&OrgCode>) -> Result<Vec<super::Device>> {
        self.read(|db| fleet::list_devices(db, org))
    }

    fn deactivate_device(&self, org: &OrgCode, id: &str, now: i64) -> Result<Option<u64>> {
        // An unchanged row still bumps the counter: harmless, and it keeps one write path.
        let (changed, counter) =
            self.write_counted(|tx| fleet::deactivate_device(tx, org, id, now))?;
        Ok(changed.then_some(counter))
    }

    fn directory_users(&self, org: &OrgCode) -> Result<Vec<super::DirectoryUser>> {
        self.read(|db| directory::directory_users(db, org))
    }

    fn apply_directory_change(
        &self,
        change: &super::DirectoryChange,
    ) -> Result<(super::DirectoryOutcome, u64)> {
        self.write_counted(|tx| directory::apply_directory_change(tx, change))
    }

    fn deactivation_reasons(&self, org: &OrgCode) -> Result<Vec<(String, String)>> {
        self.read(|db| directory::deactivation_reasons(db, org))
    }

    fn list_flags(
        &self,
        org: Option<&OrgCode>,
        status: Option<super::FlagStatus>,
    ) -> Result<Vec<super::Flag>> {
        self.read(|db| directory::list_flags(db, org, status))
    }

    fn record_checkins(&self, checkins: &[super::Checkin]) -> Result<()> {
        if checkins.is_empty() {
            return Ok(());
        }
        self.write_unversioned(|tx| fleet::record_checkins(tx, checkins))
    }

    fn append_device_event(
        &self,
        event: &super::DeviceEvent,
    ) -> Result<Option<super::RolloutCounts>> {
        self.write_unversioned(|tx| fleet::append_device_event(tx, event))
    }

    fn rollout_counts(&self, version: &Version, channel: &Channel) -> Result<super::RolloutCounts> {
        self.read(|db| fleet::rollout_counts(db, version, channel))
    }

    fn get_manifest(
        &self,
        org: &OrgCode,
        platform: crate::domain::Platform,
        channel: &Channel,
    ) -> Result<Option<super::ManifestRecord>> {
        self.read(|db| fleet::get_manifest(db, org, platform, channel))
    }

    fn put_manifest(&self, manifest: &super::ManifestRecord) -> Result<bool> {
        self.write_unversioned(|tx| fleet::put_manifest(tx, manifest))
    }

    fn latest_manifest_serial(
        &self,
        org: &OrgCode,
        platform: crate::domain::Platform,
    ) -> Result<u64> {
        self.read(|db| fleet::latest_manifest_serial(db, org, platform))
    }

    fn record_report(&self, event: &super::DeviceEvent) -> Result<super::ReportOutcome> {
        self.write_unversioned(|tx| halt::record_report(tx, event))
    }

    fn put_rollout_hold(&self, hold: &super::RolloutHold) -> Result<bool> {
        self.write(|tx| halt::put_rollout_hold(tx, hold))
    }

    fn list_rollout_holds(&self) -> Result<Vec<super::RolloutHold>> {
        self.read(|db| halt::list_rollout_holds(db))
    }

    fn resume_rollout_halt(
        &self,
        version: &Version,
        channel: &Channel,
    ) -> Result<Vec<super::RolloutHold>> {
        self.write(|tx| halt::resume_rollout_halt(tx, version, channel))
    }

    /// From memory while the change listener is connected; a query otherwise.
    fn change_counter(&self) -> Result<u64> {
        match &self.changes {
            Some(changes) => match changes.current() {
                Some(counter) => Ok(counter),
                None => Ok(changes.saw(self.read_counter()?)),
            },
            None => self.read_counter(),
        }
    }

    /// Waits for `pg_advisory_lock` on a connection the guard keeps: every process on this
    /// database, whatever host it runs on, takes the same lock.
    fn lock_builds(&self) -> Result<BuildLock> {
        build_lock::acquire(&self.config)
    }

    fn put_agent_binaries(&self, binaries: &[super::AgentBinary]) -> Result<()> {
        self.write(|tx| agent_binaries::put_agent_binaries(tx, binaries))
    }

    fn list_agent_binaries(&self) -> Result<Vec<super::AgentBinary>> {
        self.read(agent_binaries::list_agent_binaries)
    }
}

#[cfg(test)]
mod tests;
