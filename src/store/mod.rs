//! Where depot keeps what it knows (metadata) and what it made (artifact blobs).
//!
//! Two traits, because a second implementation of each is coming (PostgreSQL, S3-compatible
//! object storage): [`MetaStore`] holds orgs, releases, channels, packages, tokens and audit
//! events; [`BlobStore`] holds immutable, content-addressed blobs. The embedded defaults are
//! [`SqliteStore`] and [`FsBlobStore`] under the data directory.
//!
//! Both are synchronous: callers on the async runtime use `spawn_blocking`. Blobs are immutable
//! once written (temp file, fsync, rename), so readers never see one change under them; metadata
//! changes that must appear together (a package, its checksum line and its signature) are one
//! transaction.

#[cfg(test)]
pub(crate) mod behaviour_tests;
mod blobs;
mod hashing_file;
pub(crate) mod people;
mod postgres;
mod records;
mod s3;
mod sqlite;

pub use blobs::{remove_stale_files, FsBlobStore};
pub use people::{PersonRecord, PersonalTokenRecord};
pub use postgres::{PgError, PgStore};
pub use records::*;
pub use s3::{BucketName, S3BlobStore, S3Config, S3Error, MAX_PRESIGN};
pub use sqlite::SqliteStore;

use crate::domain::{Channel, EntryName, OrgCode, Sha256, Version};
use crate::org::{Org, OrgConfig};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("database: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] PgError),
    #[error(transparent)]
    S3(#[from] S3Error),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Whether `s` is `len` lower-case hex digits: the only spelling of a blob key (or its shard).
pub(crate) fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StoreError {
    let context = context.into();
    move |source| StoreError::Io { context, source }
}

/// Blobs are named by the SHA-256 of their content.
pub type BlobKey = Sha256;

/// A blob being written. Dropping it without `commit` leaves nothing behind.
pub trait BlobWriter: std::io::Write + Send {
    /// Flushes and fsyncs the content, then publishes it under its SHA-256 by rename; returns the
    /// key and the size. Committing content that already exists keeps the existing blob.
    fn commit(self: Box<Self>) -> Result<(BlobKey, u64)>;
}

/// Bytes of a blob as the store delivers them; pollable from any runtime.
pub type BlobStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send>>;

/// A package for the store to make into one object: the stretch `part` of a stored blob (the
/// payload part), then `tail`. `key` and `size` are the package's SHA-256 and length.
#[derive(Debug, Clone)]
pub struct Composition {
    pub key: BlobKey,
    pub size: u64,
    pub part: Segment,
    pub tail: bytes::Bytes,
}

/// Immutable, content-addressed blobs: the payload parts shared by all packages of a release and
/// platform, and the packs of department-specific package tails.
pub trait BlobStore: Send + Sync {
    /// A writer for a new blob; the blob exists only after [`BlobWriter::commit`].
    fn create(&self) -> Result<Box<dyn BlobWriter>>;
    /// Reads a whole blob into memory (for small blobs: tails, overlays).
    fn read(&self, key: &BlobKey) -> Result<Vec<u8>>;
    /// Reads `len` bytes at `offset`.
    fn read_range(&self, key: &BlobKey, offset: u64, len: u64) -> Result<Vec<u8>>;
    /// An open file of the blob, for streaming and memory mapping; `None` when the store is not
    /// on the local filesystem.
    fn open_file(&self, key: &BlobKey) -> Result<Option<std::fs::File>>;
    /// The whole blob as a stream read as it is consumed, for a pass over a payload part.
    /// Blocking: not for async tasks.
    fn reader(&self, key: &BlobKey) -> Result<Box<dyn std::io::Read + Send>>;
    /// `len` bytes at `offset`, streamed: one request, however long (downloads from stores
    /// without [`BlobStore::open_file`]). Blocking until the first byte is on its way.
    fn stream_range(&self, key: &BlobKey, offset: u64, len: u64) -> Result<BlobStream>;
    /// Makes each package one blob named by its SHA-256, inside the store, without the payload
    /// passing through depot; returns its single segment, in order. `None` when the store does
    /// not compose (the filesystem: a package stays a payload part and a tail, which costs
    /// nothing there). Content that is already stored is kept.
    fn compose(&self, packages: Vec<Composition>) -> Result<Option<Vec<Segment>>>;
    /// A short-lived URL that serves the whole blob without depot, saved as `file_name`, when
    /// the store is set to offload downloads; `None` otherwise.
    fn download_url(&self, key: &BlobKey, file_name: &str) -> Result<Option<String>>;
    /// Every stored blob, for `depot verify`.
    fn list(&self) -> Result<Vec<BlobKey>>;
    /// Re-hashes a blob and compares it with its key.
    fn verify(&self, key: &BlobKey) -> Result<bool> {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        // Read a megabyte at a time: `io::copy`'s own buffer is 8 KiB, a system call per 8 KiB.
        let mut reader = std::io::BufReader::with_capacity(1 << 20, self.reader(key)?);
        std::io::copy(&mut reader, &mut hasher).map_err(io_err(format!("read blob {key}")))?;
        Ok(BlobKey::from_bytes(hasher.finalize().into()) == *key)
    }
    fn size(&self, key: &BlobKey) -> Result<u64>;
}

/// The metadata store. Every method is one transaction.
pub trait MetaStore: Send + Sync {
    // Orgs
    fn create_org(&self, org: &Org) -> Result<()>;
    fn get_org(&self, code: &OrgCode) -> Result<Option<Org>>;
    fn list_orgs(&self) -> Result<Vec<Org>>;
    /// Replaces the configuration and bumps `updated_at`; returns the stored org.
    fn update_org_config(&self, code: &OrgCode, config: &OrgConfig, now: i64) -> Result<Org>;
    fn set_registration_key(
        &self,
        code: &OrgCode,
        key: &crate::domain::RegistrationKey,
        now: i64,
    ) -> Result<Org>;
    /// Removes the org with its overlays, packages and checksums.
    fn delete_org(&self, code: &OrgCode) -> Result<()>;
    fn put_overlay(&self, code: &OrgCode, name: &EntryName, bytes: &[u8], now: i64) -> Result<()>;
    /// Returns false when there was no such file.
    fn delete_overlay(&self, code: &OrgCode, name: &EntryName, now: i64) -> Result<bool>;
    /// Sorted by name.
    fn list_overlays(&self, code: &OrgCode) -> Result<Vec<Overlay>>;

    // Releases and channels
    fn add_release(&self, release: &Release) -> Result<()>;
    fn get_release(&self, version: &Version) -> Result<Option<Release>>;
    /// Newest first.
    fn list_releases(&self) -> Result<Vec<Release>>;
    fn yank_release(&self, version: &Version, reason: &str, now: i64) -> Result<Release>;
    /// Inserts or replaces the rollout of a release on a channel.
    fn put_rollout(&self, rollout: &Rollout) -> Result<()>;
    fn get_rollout(&self, version: &Version, channel: &Channel) -> Result<Option<Rollout>>;
    fn list_rollouts(&self) -> Result<Vec<Rollout>>;
    fn get_channel(&self, channel: &Channel) -> Result<Option<ChannelSettings>>;
    fn put_channel(&self, settings: &ChannelSettings) -> Result<()>;

    // Packages
    /// Publishes a batch atomically: each package replaces the one of the same org, version and
    /// platform, and each checksums file replaces that of its org and version.
    fn commit_packages(&self, packages: &[Package], checksums: &[Checksums]) -> Result<()>;
    fn list_packages(
        &self,
        org: Option<&OrgCode>,
        version: Option<&Version>,
    ) -> Result<Vec<Package>>;
    fn get_package(
        &self,
        org: &OrgCode,
        version: &Version,
        file_name: &str,
    ) -> Result<Option<Package>>;
    fn get_checksums(&self, org: &OrgCode, version: &Version) -> Result<Option<Checksums>>;

    // Tokens
    fn create_token(&self, token: &TokenRecord) -> Result<()>;
    fn list_tokens(&self) -> Result<Vec<TokenRecord>>;
    fn find_token(&self, secret_hash: &Sha256) -> Result<Option<TokenRecord>>;
    /// Returns false when there was no such live token.
    fn revoke_token(&self, id: &str, now: i64) -> Result<bool>;

    // People (single sign-on) and their personal tokens. No cache holds them: these writes
    // leave the change counter alone.
    /// Records a sign-in: creates the person or replaces their roles and last sign-in.
    fn put_person(&self, person: &PersonRecord) -> Result<()>;
    fn get_person(&self, id: &str) -> Result<Option<PersonRecord>>;
    /// `NotFound` when the person has never signed in; `Conflict` on a taken id or secret.
    fn create_personal_token(&self, token: &PersonalTokenRecord) -> Result<()>;
    /// Revoked and expired ones too, oldest first.
    fn list_personal_tokens(&self, person: &str) -> Result<Vec<PersonalTokenRecord>>;
    /// Finds revoked and expired tokens too: the caller refuses them.
    fn find_personal_token(&self, secret_hash: &Sha256) -> Result<Option<PersonalTokenRecord>>;
    /// False when the person has no such live token.
    fn revoke_personal_token(&self, person: &str, id: &str, now: i64) -> Result<bool>;

    // Audit
    fn append_audit(&self, event: &AuditEvent) -> Result<()>;
    fn query_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>>;

    // Devices (updates)
    /// The org whose current registration key this is.
    fn find_org_by_key(&self, key: &crate::domain::RegistrationKey) -> Result<Option<Org>>;
    /// Returns the change counter as this commit left it (see [`MetaStore::change_counter`]).
    fn create_device(&self, device: &Device) -> Result<u64>;
    /// The org's devices that are not deactivated.
    fn count_active_devices(&self, org: &OrgCode) -> Result<u64>;
    /// Every device, or one org's; oldest enrollment first.
    fn list_devices(&self, org: Option<&OrgCode>) -> Result<Vec<Device>>;
    /// Returns the change counter as this commit left it, or `None` (and changes nothing) when
    /// the org has no such active device.
    fn deactivate_device(&self, org: &OrgCode, id: &str, now: i64) -> Result<Option<u64>>;
    /// Records a batch of update checks in one transaction (last seen, address, version, offers).
    fn record_checkins(&self, checkins: &[Checkin]) -> Result<()>;
    /// Records a device's report; returns the [`MetaStore::rollout_counts`] of its release and
    /// channel as this commit left them (`None` when the report names no release), so that the
    /// automatic halt needs no second query.
    fn append_device_event(&self, event: &DeviceEvent) -> Result<Option<RolloutCounts>>;
    /// A device's report as the API takes it (rule 6): refused ([`ReportOutcome::NotOffered`],
    /// nothing written) when it names a release the device was never offered on the channel;
    /// else recorded as [`MetaStore::append_device_event`] does, and counted toward the halt
    /// when the device had enrolled before the rollout began, once per device and outcome.
    fn record_report(&self, event: &DeviceEvent) -> Result<ReportOutcome>;
    /// Holds a rollout for one org; false (and nothing changes) when it is held already.
    fn put_rollout_hold(&self, hold: &RolloutHold) -> Result<bool>;
    /// Every hold, oldest first.
    fn list_rollout_holds(&self) -> Result<Vec<RolloutHold>>;
    /// An admin's resume of a rollout: lifts its holds (returned) and starts the halt's count
    /// anew, so that only reports counted from now on can halt it again.
    fn resume_rollout_halt(&self, version: &Version, channel: &Channel)
        -> Result<Vec<RolloutHold>>;
    /// The highest serial of any stored manifest of the org and platform, whatever the channel
    /// (0 when there is none): serials grow across channels, see `put_manifest`.
    fn latest_manifest_serial(
        &self,
        org: &OrgCode,
        platform: crate::domain::Platform,
    ) -> Result<u64>;
    /// Counts per release and channel, in devices: offered it, reported it downloaded, and
    /// whose latest installed-or-failed report on it is installed (or failed). A device that
    /// fails again and again counts once, so it cannot halt a rollout alone. Kept as reports
    /// and offers are recorded: reading them costs the same however many devices report.
    fn rollout_counts(&self, version: &Version, channel: &Channel) -> Result<RolloutCounts>;
    fn get_manifest(
        &self,
        org: &OrgCode,
        platform: crate::domain::Platform,
        channel: &Channel,
    ) -> Result<Option<ManifestRecord>>;
    /// Stores a manifest whose serial is higher than that of every stored manifest of its org and
    /// platform, on any channel; returns false (and stores nothing) when another process already
    /// stored this serial or a higher one. Serials growing across channels are what lets an
    /// agent follow its org's channel changes with one last serial and no replay window.
    fn put_manifest(&self, manifest: &ManifestRecord) -> Result<bool>;

    // Directory (CONTRACT 10)
    /// The org's eligible users as the last sync stored them, by uid.
    fn directory_users(&self, org: &OrgCode) -> Result<Vec<DirectoryUser>>;
    /// Replaces the org's users, deactivates and flags devices, in one transaction; returns
    /// what it did and the change counter as this commit left it.
    fn apply_directory_change(&self, change: &DirectoryChange) -> Result<(DirectoryOutcome, u64)>;
    /// Why each deactivated device of the org was deactivated, where a reason was recorded.
    fn deactivation_reasons(&self, org: &OrgCode) -> Result<Vec<(String, String)>>;
    /// Flags, newest first: of one org or all, of one status or all.
    fn list_flags(&self, org: Option<&OrgCode>, status: Option<FlagStatus>) -> Result<Vec<Flag>>;

    /// A number that changes whenever any other process commits, so in-memory caches of a long
    /// running server know when to reload (the CLI works on the same store while it serves).
    fn change_counter(&self) -> Result<u64>;

    /// Waits until no other process (the CLI, another replica) or thread builds packages on this
    /// store, and keeps them out until the returned guard is dropped or the process dies.
    fn lock_builds(&self) -> Result<BuildLock>;

    /// Records (or replaces) the agent executable of each platform named, in one transaction;
    /// the blobs are already stored.
    fn put_agent_binaries(&self, binaries: &[AgentBinary]) -> Result<()>;
    /// Every platform's agent executable, in platform order.
    fn list_agent_binaries(&self) -> Result<Vec<AgentBinary>>;
}

/// Held while packages are built (see [`MetaStore::lock_builds`]); dropping it releases the lock.
#[must_use = "the lock is released when the guard is dropped"]
pub struct BuildLock {
    _held: Box<dyn Send>,
}

impl BuildLock {
    /// A guard that releases the lock when `held` is dropped.
    pub(crate) fn new(held: impl Send + 'static) -> Self {
        Self {
            _held: Box::new(held),
        }
    }
}

impl std::fmt::Debug for BuildLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BuildLock")
    }
}
