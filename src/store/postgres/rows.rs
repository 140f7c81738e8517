//! PostgreSQL rows back into domain records, and records into column values. Every column goes
//! through the parser of its domain type; a value that does not parse is `StoreError::Corrupt`
//! naming the table, the row's key and the column, never a panic and never a record that breaks
//! its type's rules.

use super::Result;
use crate::domain::{Channel, EntryName, OrgCode, Platform, RegistrationKey, Sha256, Version};
use crate::org::{BackupSelection, Org, OrgConfig, OrgConfigInput};
use crate::package::PayloadPart;
use crate::store::{
    AuditEvent, ChannelSettings, Checksums, Overlay, Package, Release, ReleasePayload, Role,
    Rollout, Segment, StoreError, TokenRecord, Yank,
};
use postgres::types::{FromSql, Json};
use postgres::Row;
use std::fmt::Display;

/// The cells of one row, with the table and key to name when one of them is bad.
pub(super) struct Cells<'r> {
    row: &'r Row,
    table: &'static str,
    key: String,
}

impl<'r> Cells<'r> {
    /// `key_columns` (text columns) identify the row in error messages.
    pub(super) fn new(row: &'r Row, table: &'static str, key_columns: &[&str]) -> Self {
        let key = key_columns
            .iter()
            .map(|column| {
                row.try_get::<_, Option<String>>(*column)
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| "?".to_string())
            })
            .collect::<Vec<_>>()
            .join("/");
        Self { row, table, key }
    }

    pub(super) fn corrupt(&self, column: &str, detail: impl Display) -> StoreError {
        StoreError::Corrupt(format!(
            "{} row {}: column {column}: {detail}",
            self.table, self.key
        ))
    }

    pub(super) fn get<'a, T: FromSql<'a>>(&'a self, column: &str) -> Result<T> {
        self.row.try_get(column).map_err(|e| {
            let detail = std::error::Error::source(&e)
                .map_or_else(|| e.to_string(), |s| format!("{e}: {s}"));
            self.corrupt(column, detail)
        })
    }

    pub(super) fn parse<T, E: Display>(
        &self,
        column: &str,
        parse: impl FnOnce(&str) -> std::result::Result<T, E>,
    ) -> Result<T> {
        let text: &str = self.get(column)?;
        parse(text).map_err(|e| self.corrupt(column, e))
    }

    pub(super) fn parse_opt<T, E: Display>(
        &self,
        column: &str,
        parse: impl FnOnce(&str) -> std::result::Result<T, E>,
    ) -> Result<Option<T>> {
        let text: Option<&str> = self.get(column)?;
        text.map(|t| parse(t).map_err(|e| self.corrupt(column, e)))
            .transpose()
    }

    /// `bigint` columns are signed; sizes, offsets and counts are not.
    pub(super) fn u64(&self, column: &str) -> Result<u64> {
        let value: i64 = self.get(column)?;
        u64::try_from(value).map_err(|_| self.corrupt(column, format!("{value} is negative")))
    }

    pub(super) fn u32(&self, column: &str) -> Result<u32> {
        let value: i64 = self.get(column)?;
        u32::try_from(value).map_err(|_| self.corrupt(column, format!("{value} is not a u32")))
    }

    pub(super) fn sha256(&self, column: &str) -> Result<Sha256> {
        let bytes: &[u8] = self.get(column)?;
        <[u8; 32]>::try_from(bytes)
            .map(Sha256::from_bytes)
            .map_err(|_| self.corrupt(column, format!("{} bytes, not 32", bytes.len())))
    }

    pub(super) fn json<T: serde::de::DeserializeOwned>(&self, column: &str) -> Result<T> {
        let Json(value): Json<serde_json::Value> = self.get(column)?;
        serde_json::from_value(value).map_err(|e| self.corrupt(column, e))
    }
}

/// Sizes are `u64` in records and `bigint` in SQL; nothing real comes near 2^63.
pub(super) fn to_i64(what: &str, value: u64) -> Result<i64> {
    i64::try_from(value)
        .map_err(|_| StoreError::Conflict(format!("{what} {value} is too large to store")))
}

pub(super) const ORG_COLUMNS: &str = "code, name, contact_email, seats, channel, pinned_version, \
     backup_include, backup_exclude, settings, registration_key, created_at, updated_at, directory";

pub(super) fn org(row: &Row) -> Result<Org> {
    let c = Cells::new(row, "orgs", &["code"]);
    // The configuration goes through the same validation as a partner's input, so a row edited
    // behind depot's back cannot smuggle a line break into deploy.properties.
    let input = OrgConfigInput {
        name: c.get("name")?,
        contact_email: c.get("contact_email")?,
        seats: Some(c.u32("seats")?),
        channel: Some(c.get("channel")?),
        pinned_version: c.get("pinned_version")?,
        backup: BackupSelection {
            include: c.json("backup_include")?,
            exclude: c.json("backup_exclude")?,
        },
        settings: c.json("settings")?,
        ..Default::default()
    }
    .with_directory_fields(c.json("directory")?);
    let config = OrgConfig::try_from(input).map_err(|e| c.corrupt("configuration", e))?;
    Ok(Org {
        code: c.parse("code", OrgCode::parse)?,
        registration_key: c.parse("registration_key", RegistrationKey::parse)?,
        config,
        created_at: c.get("created_at")?,
        updated_at: c.get("updated_at")?,
    })
}

pub(super) fn overlay(row: &Row) -> Result<Overlay> {
    let c = Cells::new(row, "overlays", &["org", "name"]);
    Ok(Overlay {
        name: c.parse("name", EntryName::parse)?,
        bytes: c.get("bytes")?,
        updated_at: c.get("updated_at")?,
    })
}

/// The columns of [`release_with_payload`]: a release, and one of its payloads or NULLs.
pub(super) const RELEASE_COLUMNS: &str = "r.version, r.notes, r.created_at, r.yank_reason, \
     r.yanked_at, p.platform, p.file_name, p.size, p.sha256, p.crc32, p.blob, p.part_len, \
     p.modified";

/// A row of a release joined with one of its payloads (none for a release without payloads).
pub(super) fn release_with_payload(row: &Row) -> Result<(Release, Option<ReleasePayload>)> {
    let c = Cells::new(row, "releases", &["version"]);
    let yank_reason: Option<String> = c.get("yank_reason")?;
    let yanked_at: Option<i64> = c.get("yanked_at")?;
    let yanked = match (yank_reason, yanked_at) {
        (Some(reason), Some(at)) => Some(Yank { reason, at }),
        (None, None) => None,
        _ => return Err(c.corrupt("yanked_at", "set without yank_reason or the reverse")),
    };
    let release = Release {
        version: c.parse("version", Version::parse)?,
        notes: c.get("notes")?,
        created_at: c.get("created_at")?,
        payloads: Vec::new(),
        yanked,
    };
    let platform: Option<&str> = c.get("platform")?;
    let Some(platform) = platform else {
        return Ok((release, None));
    };
    let c = Cells::new(row, "release_payloads", &["version", "platform"]);
    let payload = ReleasePayload {
        platform: Platform::parse(platform).map_err(|e| c.corrupt("platform", e))?,
        part: PayloadPart {
            file_name: c.parse("file_name", EntryName::parse)?,
            size: c.u64("size")?,
            sha256: c.sha256("sha256")?,
            crc32: c.u32("crc32")?,
            blob: c.sha256("blob")?,
            part_len: c.u64("part_len")?,
            modified: c.get("modified")?,
        },
    };
    Ok((release, Some(payload)))
}

pub(super) const ROLLOUT_COLUMNS: &str =
    "version, channel, percent, paused, pause_reason, published_at, updated_at";

pub(super) fn rollout(row: &Row) -> Result<Rollout> {
    let c = Cells::new(row, "rollouts", &["version", "channel"]);
    let percent: i16 = c.get("percent")?;
    let percent = u8::try_from(percent)
        .ok()
        .filter(|p| *p <= 100)
        .ok_or_else(|| c.corrupt("percent", format!("{percent} is not within 0-100")))?;
    Ok(Rollout {
        version: c.parse("version", Version::parse)?,
        channel: c.parse("channel", Channel::parse)?,
        percent,
        paused: c.get("paused")?,
        pause_reason: c.get("pause_reason")?,
        published_at: c.get("published_at")?,
        updated_at: c.get("updated_at")?,
    })
}

pub(super) fn channel_settings(row: &Row) -> Result<ChannelSettings> {
    let c = Cells::new(row, "channels", &["channel"]);
    Ok(ChannelSettings {
        channel: c.parse("channel", Channel::parse)?,
        min_version: c.parse_opt("min_version", Version::parse)?,
        updated_at: c.get("updated_at")?,
    })
}

pub(super) const PACKAGE_COLUMNS: &str = "org, version, platform, file_name, size, sha256, \
     segments, minisig, config_sha256, build_key, built_at";

pub(super) fn package(row: &Row) -> Result<Package> {
    let c = Cells::new(row, "packages", &["org", "version", "platform"]);
    let segments: Vec<Segment> = c.json("segments")?;
    Ok(Package {
        org: c.parse("org", OrgCode::parse)?,
        version: c.parse("version", Version::parse)?,
        platform: c.parse("platform", Platform::parse)?,
        file_name: c.get("file_name")?,
        size: c.u64("size")?,
        sha256: c.sha256("sha256")?,
        segments,
        minisig: c.get("minisig")?,
        config_sha256: c.sha256("config_sha256")?,
        build_key: c.sha256("build_key")?,
        built_at: c.get("built_at")?,
    })
}

pub(super) fn checksums(row: &Row) -> Result<Checksums> {
    let c = Cells::new(row, "checksums", &["org", "version"]);
    Ok(Checksums {
        org: c.parse("org", OrgCode::parse)?,
        version: c.parse("version", Version::parse)?,
        text: c.get("text")?,
        minisig: c.get("minisig")?,
        updated_at: c.get("updated_at")?,
    })
}

fn role(s: &str) -> std::result::Result<Role, String> {
    [Role::Admin, Role::Partner]
        .into_iter()
        .find(|r| r.as_str() == s)
        .ok_or_else(|| format!("unknown role {s:?}"))
}

pub(super) const TOKEN_COLUMNS: &str = "id, name, role, org, secret_hash, created_at, revoked_at";

pub(super) fn token(row: &Row) -> Result<TokenRecord> {
    let c = Cells::new(row, "tokens", &["id"]);
    Ok(TokenRecord {
        id: c.get("id")?,
        name: c.get("name")?,
        role: c.parse("role", role)?,
        org: c.parse_opt("org", OrgCode::parse)?,
        secret_hash: c.sha256("secret_hash")?,
        created_at: c.get("created_at")?,
        revoked_at: c.get("revoked_at")?,
    })
}

pub(super) fn audit_event(row: &Row) -> Result<AuditEvent> {
    // The key is the numeric id, which `Cells::new` cannot show as text.
    let id: i64 = row
        .try_get("id")
        .map_err(|e| StoreError::Corrupt(format!("audit row: column id: {e}")))?;
    let mut c = Cells::new(row, "audit", &[]);
    c.key = id.to_string();
    Ok(AuditEvent {
        id,
        at: c.get("at")?,
        actor: c.get("actor")?,
        org: c.parse_opt("org", OrgCode::parse)?,
        action: c.get("action")?,
        target: c.get("target")?,
        address: c.get("address")?,
        detail: c.get("detail")?,
    })
}

/// Parses every row, stopping at the first bad one.
pub(super) fn all<T>(rows: Vec<Row>, parse: impl Fn(&Row) -> Result<T>) -> Result<Vec<T>> {
    rows.iter().map(parse).collect()
}

/// Parses the first row, if any.
pub(super) fn first<T>(row: Option<Row>, parse: impl Fn(&Row) -> Result<T>) -> Result<Option<T>> {
    row.as_ref().map(parse).transpose()
}
