//! Rows back into domain records. Every column goes through the parser of its domain type; a value
//! that does not parse is `StoreError::Corrupt` naming the table, the row's key and the column,
//! never a panic and never a record that breaks its type's rules.

use crate::domain::{Channel, EntryName, OrgCode, Platform, RegistrationKey, Sha256, Version};
use crate::org::{BackupSelection, Org, OrgConfig, OrgConfigInput};
use crate::package::PayloadPart;
use crate::store::{
    AuditEvent, ChannelSettings, Checksums, Overlay, Package, ReleasePayload, Result, Role,
    Rollout, Segment, StoreError, TokenRecord, Yank,
};
use rusqlite::types::{FromSql, ValueRef};
use rusqlite::Row;
use std::fmt::Display;

/// The cells of one row, with the table and key to name when one of them is bad.
pub(super) struct Cells<'r, 's> {
    row: &'r Row<'s>,
    table: &'static str,
    key: String,
}

impl<'r, 's> Cells<'r, 's> {
    /// `key_columns` identify the row in error messages.
    pub(super) fn new(row: &'r Row<'s>, table: &'static str, key_columns: &[&str]) -> Self {
        let key = key_columns
            .iter()
            .map(|column| match row.get_ref(*column) {
                Ok(ValueRef::Text(t)) => String::from_utf8_lossy(t).into_owned(),
                Ok(ValueRef::Integer(i)) => i.to_string(),
                _ => "?".to_string(),
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

    pub(super) fn get<T: FromSql>(&self, column: &str) -> Result<T> {
        self.row.get(column).map_err(|e| self.corrupt(column, e))
    }

    pub(super) fn parse<T, E: Display>(
        &self,
        column: &str,
        parse: impl FnOnce(&str) -> std::result::Result<T, E>,
    ) -> Result<T> {
        let text: String = self.get(column)?;
        parse(&text).map_err(|e| self.corrupt(column, e))
    }

    pub(super) fn parse_opt<T, E: Display>(
        &self,
        column: &str,
        parse: impl FnOnce(&str) -> std::result::Result<T, E>,
    ) -> Result<Option<T>> {
        let text: Option<String> = self.get(column)?;
        text.map(|t| parse(&t).map_err(|e| self.corrupt(column, e)))
            .transpose()
    }

    /// SQLite integers are signed; sizes and offsets are not.
    pub(super) fn u64(&self, column: &str) -> Result<u64> {
        let value: i64 = self.get(column)?;
        u64::try_from(value).map_err(|_| self.corrupt(column, format!("{value} is negative")))
    }

    pub(super) fn json<T: serde::de::DeserializeOwned>(&self, column: &str) -> Result<T> {
        self.parse(column, |text| serde_json::from_str(text))
    }
}

/// Encodes a value as JSON text for a column.
pub(super) fn to_json(what: &str, value: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode {what} as JSON: {e}")))
}

/// Sizes are `u64` in records and signed 64-bit in SQL; nothing real comes near 2^63.
pub(super) fn to_i64(what: &str, value: u64) -> Result<i64> {
    i64::try_from(value)
        .map_err(|_| StoreError::Conflict(format!("{what} {value} is too large to store")))
}

pub(super) fn org(row: &Row) -> Result<Org> {
    let c = Cells::new(row, "orgs", &["code"]);
    // The configuration goes through the same validation as a partner's input, so a row edited
    // behind depot's back cannot smuggle a line break into deploy.properties.
    let input = OrgConfigInput {
        name: c.get("name")?,
        contact_email: c.get("contact_email")?,
        seats: Some(c.get("seats")?),
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

/// A release row without its payloads.
pub(super) fn release(row: &Row) -> Result<crate::store::Release> {
    let c = Cells::new(row, "releases", &["version"]);
    let yank_reason: Option<String> = c.get("yank_reason")?;
    let yanked_at: Option<i64> = c.get("yanked_at")?;
    let yanked = match (yank_reason, yanked_at) {
        (Some(reason), Some(at)) => Some(Yank { reason, at }),
        (None, None) => None,
        _ => return Err(c.corrupt("yanked_at", "set without yank_reason or the reverse")),
    };
    Ok(crate::store::Release {
        version: c.parse("version", Version::parse)?,
        notes: c.get("notes")?,
        created_at: c.get("created_at")?,
        payloads: Vec::new(),
        yanked,
    })
}

/// A payload row and the version it belongs to.
pub(super) fn release_payload(row: &Row) -> Result<(Version, ReleasePayload)> {
    let c = Cells::new(row, "release_payloads", &["version", "platform"]);
    let payload = ReleasePayload {
        platform: c.parse("platform", Platform::parse)?,
        part: PayloadPart {
            file_name: c.parse("file_name", EntryName::parse)?,
            size: c.u64("size")?,
            sha256: c.parse("sha256", Sha256::parse)?,
            crc32: c.get("crc32")?,
            blob: c.parse("blob", Sha256::parse)?,
            part_len: c.u64("part_len")?,
            modified: c.get("modified")?,
        },
    };
    Ok((c.parse("version", Version::parse)?, payload))
}

pub(super) fn rollout(row: &Row) -> Result<Rollout> {
    let c = Cells::new(row, "rollouts", &["version", "channel"]);
    let percent: u8 = c.get("percent")?;
    if percent > 100 {
        return Err(c.corrupt("percent", format!("{percent} is above 100")));
    }
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

pub(super) fn package(row: &Row) -> Result<Package> {
    let c = Cells::new(row, "packages", &["org", "version", "platform"]);
    let segments: Vec<Segment> = c.json("segments")?;
    Ok(Package {
        org: c.parse("org", OrgCode::parse)?,
        version: c.parse("version", Version::parse)?,
        platform: c.parse("platform", Platform::parse)?,
        file_name: c.get("file_name")?,
        size: c.u64("size")?,
        sha256: c.parse("sha256", Sha256::parse)?,
        segments,
        minisig: c.get("minisig")?,
        config_sha256: c.parse("config_sha256", Sha256::parse)?,
        build_key: c.parse("build_key", Sha256::parse)?,
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

pub(super) fn token(row: &Row) -> Result<TokenRecord> {
    let c = Cells::new(row, "tokens", &["id"]);
    Ok(TokenRecord {
        id: c.get("id")?,
        name: c.get("name")?,
        role: c.parse("role", role)?,
        org: c.parse_opt("org", OrgCode::parse)?,
        secret_hash: c.parse("secret_hash", Sha256::parse)?,
        created_at: c.get("created_at")?,
        revoked_at: c.get("revoked_at")?,
    })
}

pub(super) fn audit_event(row: &Row) -> Result<AuditEvent> {
    let c = Cells::new(row, "audit", &["id"]);
    Ok(AuditEvent {
        id: c.get("id")?,
        at: c.get("at")?,
        actor: c.get("actor")?,
        org: c.parse_opt("org", OrgCode::parse)?,
        action: c.get("action")?,
        target: c.get("target")?,
        address: c.get("address")?,
        detail: c.get("detail")?,
    })
}
