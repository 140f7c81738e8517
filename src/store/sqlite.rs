//! The embedded metadata store: one SQLite database file (`<data dir>/depot.db`, WAL mode).
//!
//! The CLI and `depot serve` open the same file at the same time, so every write is an
//! `IMMEDIATE` transaction (it takes the write lock up front, and waits for it up to
//! [`BUSY_TIMEOUT`], instead of failing when a read snapshot would have to be upgraded), and every
//! read of more than one statement runs in one transaction so it sees one snapshot.
//!
//! Durability: `synchronous = NORMAL` in WAL mode. A commit is atomic and survives a crash of the
//! process; a power loss or OS crash may lose the last commits before a checkpoint, but never
//! leaves a half-applied one. Publishing stays atomic (a lost publish leaves the previous state
//! served, and its blobs, fsynced before the commit, are simply unreferenced).
//!
//! [`MetaStore::change_counter`] reads the `meta` row `changes`, which every committed write of
//! cacheable state bumps inside its own transaction: orgs, overlays, releases, rollouts, channels,
//! packages and tokens. Audit appends do not bump it: the audit log is never cached, and a download
//! (which appends an event) must not make a server drop its caches. A row is a choice that
//! carries over to PostgreSQL unchanged and counts commits of every process, unlike
//! `PRAGMA data_version`, which ignores the connection's own commits.
//!
//! This module never hands out a record that did not parse back into its domain types: a bad row is
//! `StoreError::Corrupt` naming its table and key.

mod agent_binaries;
mod build_lock;
mod directory;
mod fleet;
mod halt;
mod people;
mod rows;
mod schema;

use super::{
    AuditEvent, AuditFilter, ChannelSettings, Checksums, MetaStore, Overlay, Package, Release,
    Result, Rollout, StoreError, TokenRecord,
};
use crate::domain::{Channel, EntryName, OrgCode, RegistrationKey, Sha256, Version};
use crate::org::{Org, OrgConfig, MAX_OVERLAY_FILES};
use rows::{to_i64, to_json};
use rusqlite::types::Value;
use rusqlite::{
    params, Connection, ErrorCode, OptionalExtension, Transaction, TransactionBehavior,
};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// How long a statement waits for another process's write lock before it fails with "busy".
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The SQLite [`MetaStore`]. One connection behind a mutex; the server keeps its hot reads in
/// memory and reloads them when [`MetaStore::change_counter`] moves.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// `None` for an in-memory database.
    path: Option<PathBuf>,
    /// The build lock of an in-memory database.
    builds: build_lock::LocalLock,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating when absent) the database at `path` and brings its schema up to date.
    /// A new file is created readable by its owner only: it holds registration keys.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(super::io_err(format!("create {}", dir.display())))?;
        }
        create_private(path)?;
        let conn = Connection::open(path)?;
        Self::init(conn, Some(path.to_path_buf()))
    }

    /// A private database that lives as long as the store; for tests and `depot demo`.
    pub fn open_in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?, None)
    }

    fn init(mut conn: Connection, path: Option<PathBuf>) -> Result<Self> {
        // The timeout first: the pragmas below may need a lock another process holds.
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if path.is_some() && !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt(format!(
                "the database cannot switch to WAL mode (it stays in {mode} mode)"
            )));
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.set_prepared_statement_cache_capacity(64);
        schema::migrate(&mut conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
            path,
            builds: build_lock::LocalLock::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while the lock was held rolled its transaction back when the transaction
        // dropped; the connection itself is still sound.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` in one read transaction: every statement sees the same snapshot.
    fn read<T>(&self, f: impl FnOnce(&Transaction) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Runs `f` in one write transaction and bumps the change counter with it; an error rolls
    /// everything back.
    fn write<T>(&self, f: impl FnOnce(&Transaction) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.prepare_cached("UPDATE meta SET value = value + 1 WHERE key = 'changes'")?
            .execute([])?;
        tx.commit()?;
        Ok(out)
    }

    /// [`Self::write`], also giving the change counter as this commit left it: a cache holding
    /// the state just before can apply the change itself instead of reloading everything.
    fn write_counted<T>(&self, f: impl FnOnce(&Transaction) -> Result<T>) -> Result<(T, u64)> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.prepare_cached("UPDATE meta SET value = value + 1 WHERE key = 'changes'")?
            .execute([])?;
        let counter: i64 = tx
            .prepare_cached("SELECT value FROM meta WHERE key = 'changes'")?
            .query_row([], |row| row.get(0))?;
        tx.commit()?;
        let counter = u64::try_from(counter)
            .map_err(|_| StoreError::Corrupt("meta row changes: negative".into()))?;
        Ok((out, counter))
    }
}

impl SqliteStore {
    /// Runs `f` in one write transaction that leaves the change counter alone: for records no
    /// cache holds (check-ins, device reports, manifests), so that they never flush caches.
    fn write_unversioned<T>(&self, f: impl FnOnce(&Transaction) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }
}

/// Creates an absent database file with mode 0600; SQLite gives its `-wal` and `-shm` files the
/// same mode.
fn create_private(path: &Path) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(super::io_err(format!("create {}", path.display()))(e)),
    }
}

/// True when `e` is a UNIQUE or PRIMARY KEY violation.
fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == ErrorCode::ConstraintViolation
                && matches!(
                    f.extended_code,
                    rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                        | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                )
    )
}

/// Maps a UNIQUE/PRIMARY KEY violation to `Conflict(message)`; other errors pass through.
fn conflict_on_duplicate(
    message: impl FnOnce() -> String,
) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |e| {
        if is_unique_violation(&e) {
            StoreError::Conflict(message())
        } else {
            StoreError::Database(e)
        }
    }
}

fn org_exists(conn: &Connection, code: &OrgCode) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM orgs WHERE code = ?1")?
        .exists([code.as_str()])?)
}

fn require_org(conn: &Connection, code: &OrgCode) -> Result<()> {
    if org_exists(conn, code)? {
        Ok(())
    } else {
        Err(StoreError::NotFound(format!("org {code}")))
    }
}

fn require_release(conn: &Connection, version: &Version) -> Result<()> {
    let exists = conn
        .prepare_cached("SELECT 1 FROM releases WHERE version = ?1")?
        .exists([version.to_string()])?;
    if exists {
        Ok(())
    } else {
        Err(StoreError::NotFound(format!("release {version}")))
    }
}

const ORG_COLUMNS: &str = "code, name, contact_email, seats, channel, pinned_version, \
     backup_include, backup_exclude, settings, registration_key, created_at, updated_at, directory";

fn load_org(conn: &Connection, code: &OrgCode) -> Result<Option<Org>> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {ORG_COLUMNS} FROM orgs WHERE code = ?1"))?;
    let mut rows = stmt.query([code.as_str()])?;
    rows.next()?.map(rows::org).transpose()
}

/// Like [`load_org`], for an org the transaction just changed.
fn reload_org(conn: &Connection, code: &OrgCode) -> Result<Org> {
    load_org(conn, code)?.ok_or_else(|| StoreError::NotFound(format!("org {code}")))
}

/// The registration key is a secret: the message names the org that holds it, not the key.
fn registration_key_owner(conn: &Connection, key: &RegistrationKey) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT code FROM orgs WHERE registration_key = ?1")?
        .query_row([key.as_str()], |row| row.get(0))
        .optional()?)
}

fn key_taken(owner: &str) -> StoreError {
    StoreError::Conflict(format!(
        "that registration key is already used by org {owner}; generate another"
    ))
}

/// Releases with their payloads, newest first; one release when `only` is given.
fn load_releases(conn: &Connection, only: Option<&Version>) -> Result<Vec<Release>> {
    let filter = if only.is_some() {
        "WHERE version = ?1"
    } else {
        ""
    };
    let version_text = only.map(ToString::to_string);
    let params: Vec<&dyn rusqlite::ToSql> = match &version_text {
        Some(v) => vec![v],
        None => vec![],
    };

    let mut releases = Vec::new();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT version, notes, created_at, yank_reason, yanked_at FROM releases {filter}"
    ))?;
    let mut rows = stmt.query(params.as_slice())?;
    while let Some(row) = rows.next()? {
        releases.push(rows::release(row)?);
    }

    let mut payloads: HashMap<Version, Vec<_>> = HashMap::new();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT version, platform, file_name, size, sha256, crc32, blob, part_len, modified \
         FROM release_payloads {filter}"
    ))?;
    let mut rows = stmt.query(params.as_slice())?;
    while let Some(row) = rows.next()? {
        let (version, payload) = rows::release_payload(row)?;
        payloads.entry(version).or_default().push(payload);
    }

    for release in &mut releases {
        let mut mine = payloads.remove(&release.version).unwrap_or_default();
        mine.sort_by_key(|p| p.platform);
        release.payloads = mine;
    }
    releases.sort_by(|a, b| b.version.cmp(&a.version));
    Ok(releases)
}

const PACKAGE_COLUMNS: &str = "org, version, platform, file_name, size, sha256, segments, \
     minisig, config_sha256, build_key, built_at";

const TOKEN_COLUMNS: &str = "id, name, role, org, secret_hash, created_at, revoked_at";

/// A `WHERE` clause of the conditions that apply, with their values bound in order, so that each
/// combination of filters gets a plan that uses the indexes.
#[derive(Default)]
struct Filter {
    conditions: Vec<String>,
    values: Vec<Value>,
}

impl Filter {
    /// Adds a value and returns its placeholder.
    fn bind(&mut self, value: impl Into<Value>) -> String {
        self.values.push(value.into());
        format!("?{}", self.values.len())
    }

    /// Adds `<column_and_operator> <value>`, e.g. `require("at >=", since)`.
    fn require(&mut self, column_and_operator: &str, value: impl Into<Value>) {
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

    fn params(&self) -> impl rusqlite::Params + '_ {
        rusqlite::params_from_iter(self.values.iter())
    }
}

fn collect<T>(
    stmt: &mut rusqlite::CachedStatement<'_>,
    params: impl rusqlite::Params,
    parse: impl Fn(&rusqlite::Row) -> Result<T>,
) -> Result<Vec<T>> {
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(parse(row)?);
    }
    Ok(out)
}

fn first<T>(
    stmt: &mut rusqlite::CachedStatement<'_>,
    params: impl rusqlite::Params,
    parse: impl Fn(&rusqlite::Row) -> Result<T>,
) -> Result<Option<T>> {
    let mut rows = stmt.query(params)?;
    rows.next()?.map(parse).transpose()
}

impl MetaStore for SqliteStore {
    fn create_org(&self, org: &Org) -> Result<()> {
        self.write(|tx| {
            if org_exists(tx, &org.code)? {
                return Err(StoreError::Conflict(format!(
                    "org {} already exists",
                    org.code
                )));
            }
            if let Some(owner) = registration_key_owner(tx, &org.registration_key)? {
                return Err(key_taken(&owner));
            }
            let c = &org.config;
            tx.prepare_cached(&format!(
                "INSERT INTO orgs ({ORG_COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
            ))?
            .execute(params![
                org.code.as_str(),
                c.name,
                c.contact_email,
                c.seats,
                c.channel.as_str(),
                c.pinned_version.as_ref().map(ToString::to_string),
                to_json("backup.include", &c.backup.include)?,
                to_json("backup.exclude", &c.backup.exclude)?,
                to_json("settings", &c.settings)?,
                org.registration_key.as_str(),
                org.created_at,
                org.updated_at,
                to_json("directory", &c.directory_fields())?,
            ])
            .map_err(conflict_on_duplicate(|| {
                format!("org {} already exists", org.code)
            }))?;
            Ok(())
        })
    }

    fn get_org(&self, code: &OrgCode) -> Result<Option<Org>> {
        self.read(|tx| load_org(tx, code))
    }

    fn list_orgs(&self) -> Result<Vec<Org>> {
        self.read(|tx| {
            let mut stmt =
                tx.prepare_cached(&format!("SELECT {ORG_COLUMNS} FROM orgs ORDER BY code"))?;
            collect(&mut stmt, [], rows::org)
        })
    }

    fn update_org_config(&self, code: &OrgCode, config: &OrgConfig, now: i64) -> Result<Org> {
        self.write(|tx| {
            let changed = tx
                .prepare_cached(
                    "UPDATE orgs SET name = ?2, contact_email = ?3, seats = ?4, channel = ?5, \
                     pinned_version = ?6, backup_include = ?7, backup_exclude = ?8, \
                     settings = ?9, updated_at = ?10, directory = ?11 WHERE code = ?1",
                )?
                .execute(params![
                    code.as_str(),
                    config.name,
                    config.contact_email,
                    config.seats,
                    config.channel.as_str(),
                    config.pinned_version.as_ref().map(ToString::to_string),
                    to_json("backup.include", &config.backup.include)?,
                    to_json("backup.exclude", &config.backup.exclude)?,
                    to_json("settings", &config.settings)?,
                    now,
                    to_json("directory", &config.directory_fields())?,
                ])?;
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
            tx.prepare_cached(
                "UPDATE orgs SET registration_key = ?2, updated_at = ?3 WHERE code = ?1",
            )?
            .execute(params![code.as_str(), key.as_str(), now])?;
            reload_org(tx, code)
        })
    }

    fn delete_org(&self, code: &OrgCode) -> Result<()> {
        self.write(|tx| {
            // Overlays, packages, checksums and partner tokens go with it (ON DELETE CASCADE).
            let deleted = tx
                .prepare_cached("DELETE FROM orgs WHERE code = ?1")?
                .execute([code.as_str()])?;
            if deleted == 0 {
                return Err(StoreError::NotFound(format!("org {code}")));
            }
            Ok(())
        })
    }

    fn put_overlay(&self, code: &OrgCode, name: &EntryName, bytes: &[u8], now: i64) -> Result<()> {
        self.write(|tx| {
            require_org(tx, code)?;
            let (count, replaces): (u32, bool) = tx
                .prepare_cached(
                    "SELECT count(*), coalesce(sum(name = ?2), 0) > 0 FROM overlays WHERE org = ?1",
                )?
                .query_row(params![code.as_str(), name.as_str()], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?;
            // Checked here, in the write transaction, so two concurrent uploads cannot both pass.
            if !replaces && count as usize >= MAX_OVERLAY_FILES {
                return Err(StoreError::Conflict(format!(
                    "org {code} already has {count} overlay files, the most it may have; \
                     remove one first"
                )));
            }
            tx.prepare_cached(
                "INSERT INTO overlays (org, name, bytes, updated_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (org, name) DO UPDATE \
                 SET bytes = excluded.bytes, updated_at = excluded.updated_at",
            )?
            .execute(params![code.as_str(), name.as_str(), bytes, now])?;
            // An overlay is part of the org's configuration: its packages are now out of date.
            tx.prepare_cached("UPDATE orgs SET updated_at = ?2 WHERE code = ?1")?
                .execute(params![code.as_str(), now])?;
            Ok(())
        })
    }

    fn delete_overlay(&self, code: &OrgCode, name: &EntryName, now: i64) -> Result<bool> {
        self.write(|tx| {
            let deleted = tx
                .prepare_cached("DELETE FROM overlays WHERE org = ?1 AND name = ?2")?
                .execute(params![code.as_str(), name.as_str()])?;
            if deleted > 0 {
                tx.prepare_cached("UPDATE orgs SET updated_at = ?2 WHERE code = ?1")?
                    .execute(params![code.as_str(), now])?;
            }
            Ok(deleted > 0)
        })
    }

    fn list_overlays(&self, code: &OrgCode) -> Result<Vec<Overlay>> {
        self.read(|tx| {
            let mut stmt = tx.prepare_cached(
                "SELECT org, name, bytes, updated_at FROM overlays WHERE org = ?1 ORDER BY name",
            )?;
            collect(&mut stmt, [code.as_str()], rows::overlay)
        })
    }

    fn add_release(&self, release: &Release) -> Result<()> {
        let version = release.version.to_string();
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO releases (version, notes, created_at, yank_reason, yanked_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                version,
                release.notes,
                release.created_at,
                release.yanked.as_ref().map(|y| &y.reason),
                release.yanked.as_ref().map(|y| y.at),
            ])
            .map_err(conflict_on_duplicate(|| {
                format!("release {version} already exists")
            }))?;
            let mut insert = tx.prepare_cached(
                "INSERT INTO release_payloads \
                 (version, platform, file_name, size, sha256, crc32, blob, part_len, modified) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for payload in &release.payloads {
                let part = &payload.part;
                insert
                    .execute(params![
                        version,
                        payload.platform.as_str(),
                        part.file_name.as_str(),
                        to_i64("payload size", part.size)?,
                        part.sha256.to_hex(),
                        part.crc32,
                        part.blob.to_hex(),
                        to_i64("payload part length", part.part_len)?,
                        part.modified,
                    ])
                    .map_err(conflict_on_duplicate(|| {
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
        self.read(|tx| Ok(load_releases(tx, Some(version))?.pop()))
    }

    fn list_releases(&self) -> Result<Vec<Release>> {
        self.read(|tx| load_releases(tx, None))
    }

    fn yank_release(&self, version: &Version, reason: &str, now: i64) -> Result<Release> {
        self.write(|tx| {
            // A second yank may correct the reason; the release was withdrawn at the first.
            let changed = tx
                .prepare_cached(
                    "UPDATE releases SET yank_reason = ?2, yanked_at = coalesce(yanked_at, ?3) \
                     WHERE version = ?1",
                )?
                .execute(params![version.to_string(), reason, now])?;
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
            tx.prepare_cached(
                "INSERT INTO rollouts \
                 (version, channel, percent, paused, pause_reason, published_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                 ON CONFLICT (version, channel) DO UPDATE SET percent = excluded.percent, \
                 paused = excluded.paused, pause_reason = excluded.pause_reason, \
                 published_at = excluded.published_at, updated_at = excluded.updated_at",
            )?
            .execute(params![
                rollout.version.to_string(),
                rollout.channel.as_str(),
                rollout.percent,
                rollout.paused,
                rollout.pause_reason,
                rollout.published_at,
                rollout.updated_at,
            ])?;
            Ok(())
        })
    }

    fn get_rollout(&self, version: &Version, channel: &Channel) -> Result<Option<Rollout>> {
        self.read(|tx| {
            let mut stmt = tx.prepare_cached(
                "SELECT version, channel, percent, paused, pause_reason, published_at, \
                 updated_at FROM rollouts WHERE version = ?1 AND channel = ?2",
            )?;
            first(
                &mut stmt,
                params![version.to_string(), channel.as_str()],
                rows::rollout,
            )
        })
    }

    /// Newest release first, then by channel.
    fn list_rollouts(&self) -> Result<Vec<Rollout>> {
        let mut rollouts = self.read(|tx| {
            let mut stmt = tx.prepare_cached(
                "SELECT version, channel, percent, paused, pause_reason, published_at, \
                 updated_at FROM rollouts",
            )?;
            collect(&mut stmt, [], rows::rollout)
        })?;
        rollouts.sort_by(|a, b| {
            b.version
                .cmp(&a.version)
                .then_with(|| a.channel.cmp(&b.channel))
        });
        Ok(rollouts)
    }

    fn get_channel(&self, channel: &Channel) -> Result<Option<ChannelSettings>> {
        self.read(|tx| {
            let mut stmt = tx.prepare_cached(
                "SELECT channel, min_version, updated_at FROM channels WHERE channel = ?1",
            )?;
            first(&mut stmt, [channel.as_str()], rows::channel_settings)
        })
    }

    fn put_channel(&self, settings: &ChannelSettings) -> Result<()> {
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO channels (channel, min_version, updated_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (channel) DO UPDATE \
                 SET min_version = excluded.min_version, updated_at = excluded.updated_at",
            )?
            .execute(params![
                settings.channel.as_str(),
                settings.min_version.as_ref().map(ToString::to_string),
                settings.updated_at,
            ])?;
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
            // Named checks instead of a bare "FOREIGN KEY constraint failed".
            for org in orgs {
                require_org(tx, org)?;
            }
            for version in versions {
                require_release(tx, version)?;
            }
            let mut put_package = tx.prepare_cached(&format!(
                "INSERT INTO packages ({PACKAGE_COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
                 ON CONFLICT (org, version, platform) DO UPDATE SET \
                 file_name = excluded.file_name, size = excluded.size, sha256 = excluded.sha256, \
                 segments = excluded.segments, minisig = excluded.minisig, \
                 config_sha256 = excluded.config_sha256, build_key = excluded.build_key, \
                 built_at = excluded.built_at"
            ))?;
            for p in packages {
                put_package
                    .execute(params![
                        p.org.as_str(),
                        p.version.to_string(),
                        p.platform.as_str(),
                        p.file_name,
                        to_i64("package size", p.size)?,
                        p.sha256.to_hex(),
                        to_json("segments", &p.segments)?,
                        p.minisig,
                        p.config_sha256.to_hex(),
                        p.build_key.to_hex(),
                        p.built_at,
                    ])
                    .map_err(conflict_on_duplicate(|| {
                        format!(
                            "org {} release {} already has another package named {}",
                            p.org, p.version, p.file_name
                        )
                    }))?;
            }
            let mut put_checksums = tx.prepare_cached(
                "INSERT INTO checksums (org, version, text, minisig, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (org, version) DO UPDATE SET text = excluded.text, \
                 minisig = excluded.minisig, updated_at = excluded.updated_at",
            )?;
            for c in checksums {
                put_checksums.execute(params![
                    c.org.as_str(),
                    c.version.to_string(),
                    c.text,
                    c.minisig,
                    c.updated_at,
                ])?;
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
        let mut sql = Filter::default();
        if let Some(org) = org {
            sql.require("org =", org.as_str().to_string());
        }
        if let Some(version) = version {
            sql.require("version =", version.to_string());
        }
        let text = format!(
            "SELECT {PACKAGE_COLUMNS} FROM packages {}",
            sql.where_clause()
        );
        let mut packages = self.read(|tx| {
            let mut stmt = tx.prepare_cached(&text)?;
            collect(&mut stmt, sql.params(), rows::package)
        })?;
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
        self.read(|tx| {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {PACKAGE_COLUMNS} FROM packages \
                 WHERE org = ?1 AND version = ?2 AND file_name = ?3"
            ))?;
            first(
                &mut stmt,
                params![org.as_str(), version.to_string(), file_name],
                rows::package,
            )
        })
    }

    fn get_checksums(&self, org: &OrgCode, version: &Version) -> Result<Option<Checksums>> {
        self.read(|tx| {
            let mut stmt = tx.prepare_cached(
                "SELECT org, version, text, minisig, updated_at FROM checksums \
                 WHERE org = ?1 AND version = ?2",
            )?;
            first(
                &mut stmt,
                params![org.as_str(), version.to_string()],
                rows::checksums,
            )
        })
    }

    fn create_token(&self, token: &TokenRecord) -> Result<()> {
        self.write(|tx| {
            if let Some(org) = &token.org {
                require_org(tx, org)?;
            }
            tx.prepare_cached(&format!(
                "INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            ))?
            .execute(params![
                token.id,
                token.name,
                token.role.as_str(),
                token.org.as_ref().map(OrgCode::as_str),
                token.secret_hash.to_hex(),
                token.created_at,
                token.revoked_at,
            ])
            .map_err(conflict_on_duplicate(|| {
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
        self.read(|tx| {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at, id"
            ))?;
            collect(&mut stmt, [], rows::token)
        })
    }

    /// Finds revoked tokens too, with their `revoked_at`: the caller refuses them (and can say
    /// why).
    fn find_token(&self, secret_hash: &Sha256) -> Result<Option<TokenRecord>> {
        self.read(|tx| {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens WHERE secret_hash = ?1"
            ))?;
            first(&mut stmt, [secret_hash.to_hex()], rows::token)
        })
    }

    fn revoke_token(&self, id: &str, now: i64) -> Result<bool> {
        self.write(|tx| {
            let changed = tx
                .prepare_cached(
                    "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                )?
                .execute(params![id, now])?;
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
        self.lock()
            .prepare_cached(
                "INSERT INTO audit (at, actor, org, action, target, address, detail) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                event.at,
                event.actor,
                event.org.as_ref().map(OrgCode::as_str),
                event.action,
                event.target,
                event.address,
                event.detail,
            ])?;
        Ok(())
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
        self.read(|tx| {
            let mut stmt = tx.prepare_cached(&text)?;
            collect(&mut stmt, sql.params(), rows::audit_event)
        })
    }

    fn find_org_by_key(&self, key: &RegistrationKey) -> Result<Option<Org>> {
        self.read(|tx| match registration_key_owner(tx, key)? {
            Some(code) => load_org(
                tx,
                &OrgCode::parse(&code)
                    .map_err(|e| StoreError::Corrupt(format!("orgs row {code}: {e}")))?,
            ),
            None => Ok(None),
        })
    }

    fn create_device(&self, device: &super::Device) -> Result<u64> {
        Ok(self.write_counted(|tx| fleet::create_device(tx, device))?.1)
    }

    fn count_active_devices(&self, org: &OrgCode) -> Result<u64> {
        self.read(|tx| fleet::count_active_devices(tx, org))
    }

    fn list_devices(&self, org: Option<&OrgCode>) -> Result<Vec<super::Device>> {
        self.read(|tx| fleet::list_devices(tx, org))
    }

    fn deactivate_device(&self, org: &OrgCode, id: &str, now: i64) -> Result<Option<u64>> {
        // An unchanged row still bumps the counter: harmless, and it keeps one write path.
        let (changed, counter) =
            self.write_counted(|tx| fleet::deactivate_device(tx, org, id, now))?;
        Ok(changed.then_some(counter))
    }

    fn directory_users(&self, org: &OrgCode) -> Result<Vec<super::DirectoryUser>> {
        self.read(|tx| directory::directory_users(tx, org))
    }

    fn apply_directory_change(
        &self,
        change: &super::DirectoryChange,
    ) -> Result<(super::DirectoryOutcome, u64)> {
        self.write_counted(|tx| directory::apply_directory_change(tx, change))
    }

    fn deactivation_reasons(&self, org: &OrgCode) -> Result<Vec<(String, String)>> {
        self.read(|tx| directory::deactivation_reasons(tx, org))
    }

    fn list_flags(
        &self,
        org: Option<&OrgCode>,
        status: Option<super::FlagStatus>,
    ) -> Result<Vec<super::Flag>> {
        self.read(|tx| directory::list_flags(tx, org, status))
    }

    fn record_checkins(&self, checkins: &[super::Checkin]) -> Result<()> {
        self.write_unversioned(|tx| fleet::record_checkins(tx, checkins))
    }

    fn append_device_event(
        &self,
        event: &super::DeviceEvent,
    ) -> Result<Option<super::RolloutCounts>> {
        self.write_unversioned(|tx| fleet::append_device_event(tx, event))
    }

    fn rollout_counts(&self, version: &Version, channel: &Channel) -> Result<super::RolloutCounts> {
        self.read(|tx| fleet::rollout_counts(tx, version, channel))
    }

    fn get_manifest(
        &self,
        org: &OrgCode,
        platform: crate::domain::Platform,
        channel: &Channel,
    ) -> Result<Option<super::ManifestRecord>> {
        self.read(|tx| fleet::get_manifest(tx, org, platform, channel))
    }

    fn put_manifest(&self, manifest: &super::ManifestRecord) -> Result<bool> {
        self.write_unversioned(|tx| fleet::put_manifest(tx, manifest))
    }

    fn latest_manifest_serial(
        &self,
        org: &OrgCode,
        platform: crate::domain::Platform,
    ) -> Result<u64> {
        self.read(|tx| fleet::latest_manifest_serial(tx, org, platform))
    }

    fn record_report(&self, event: &super::DeviceEvent) -> Result<super::ReportOutcome> {
        self.write_unversioned(|tx| halt::record_report(tx, event))
    }

    fn put_rollout_hold(&self, hold: &super::RolloutHold) -> Result<bool> {
        self.write(|tx| halt::put_rollout_hold(tx, hold))
    }

    fn list_rollout_holds(&self) -> Result<Vec<super::RolloutHold>> {
        self.read(halt::list_rollout_holds)
    }

    fn resume_rollout_halt(
        &self,
        version: &Version,
        channel: &Channel,
    ) -> Result<Vec<super::RolloutHold>> {
        self.write(|tx| halt::resume_rollout_halt(tx, version, channel))
    }

    fn change_counter(&self) -> Result<u64> {
        let value: Option<i64> = self
            .lock()
            .prepare_cached("SELECT value FROM meta WHERE key = 'changes'")?
            .query_row([], |row| row.get(0))
            .optional()?;
        value
            .and_then(|v| u64::try_from(v).ok())
            .ok_or_else(|| StoreError::Corrupt("meta row changes: missing or negative".into()))
    }

    /// An exclusive `flock` on `locks/build.lock` beside the database file, which every process
    /// opening the file shares; a process-local lock for an in-memory database, which no other
    /// process can open.
    fn lock_builds(&self) -> Result<super::BuildLock> {
        match &self.path {
            Some(path) => {
                let dir = path
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(Path::new("."))
                    .join("locks");
                Ok(super::BuildLock::new(build_lock::lock_file(
                    &dir.join("build.lock"),
                )?))
            }
            None => Ok(super::BuildLock::new(self.builds.acquire())),
        }
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
