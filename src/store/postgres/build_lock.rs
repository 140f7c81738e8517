//! The build lock of [`super::PgStore`]: a session-level `pg_advisory_lock` on a connection of
//! its own, shared by every process on the database and released when the session ends (the
//! guard dropped, or the process dead).

use super::pool;
use crate::store::{BuildLock, Result};

/// The `pg_advisory_lock` key of the build lock ("depot" in ASCII, then 2).
const BUILD_LOCK: i64 = 0x6465_706f_7402;

/// The `application_name` of a connection holding (or waiting for) the build lock.
const BUILD_LOCK_APPLICATION_NAME: &str = "depot build lock";

/// Blocks until the build lock is this process's.
pub(super) fn acquire(config: &postgres::Config) -> Result<BuildLock> {
    let mut config = config.clone();
    config.application_name(BUILD_LOCK_APPLICATION_NAME);
    let mut client = pool::connect(&config)?;
    client.execute("SELECT pg_advisory_lock($1)", &[&BUILD_LOCK])?;
    Ok(BuildLock::new(AdvisoryLock {
        client: Some(client),
    }))
}

/// A session-level advisory lock, held as long as its connection.
struct AdvisoryLock {
    client: Option<postgres::Client>,
}

impl Drop for AdvisoryLock {
    /// Closing the session releases the lock.
    fn drop(&mut self) {
        pool::close_off_runtime(self.client.take().into_iter().collect());
    }
}
