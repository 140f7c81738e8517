//! The change counter as this process knows it, kept current by `LISTEN depot_changes`.
//!
//! The server asks for the counter on every request (token cache) and every 100 ms (fleet
//! snapshot); a query each time would be a round trip to the database each time. Instead a
//! thread holds a connection of its own that listens on `depot_changes`, on which every commit
//! of cacheable state announces the counter it left (`pg_notify` in the same transaction, so the
//! notification arrives only once the commit is visible). The latest counter lives in an atomic.
//!
//! While the listener is connected, [`Changes::current`] answers from the atomic; while it is
//! not (at start, after a lost connection), the caller queries the counter instead. After every
//! (re)connection the listener first listens, then reads the counter, and only then is trusted:
//! a commit between the two is in the value read, and one after it is notified. When nothing
//! arrives for [`HEALTH_CHECK`], it reads the counter again, which both proves the connection
//! alive and repairs any drift.
//!
//! Commits of this process move the atomic at once ([`Changes::saw`]), so a caller sees its own
//! write without waiting for the notification.

use super::pool::connect;
use super::{PgError, Result};
use crate::store::StoreError;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Config};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The channel commits announce themselves on; the payload is the counter in decimal.
pub(super) const CHANNEL: &str = "depot_changes";

/// How long the listener waits for a notification before it looks at its stop flag.
const POLL: Duration = Duration::from_millis(200);

/// Quiet time after which the listener reads the counter itself.
const HEALTH_CHECK: Duration = Duration::from_secs(5);

/// Waits between reconnection attempts: doubling from the first to the last.
const RECONNECT_FIRST: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// The `application_name` of the listening connection.
pub(super) const APPLICATION_NAME: &str = "depot change listener";

pub(super) const READ_COUNTER: &str = "SELECT value FROM meta WHERE key = 'changes'";

#[derive(Default)]
struct Shared {
    counter: AtomicU64,
    /// True while the listener is connected and has read the counter since connecting.
    live: AtomicBool,
    stop: AtomicBool,
    /// Connections made, for tests and logs: 1 after the first, 2 after one reconnection.
    connections: AtomicU64,
}

/// The listener thread's side of the counter, stopped when dropped.
pub(super) struct Changes {
    shared: Arc<Shared>,
    /// Detached on drop: the thread ends by itself within [`POLL`].
    _thread: JoinHandle<()>,
}

impl Changes {
    /// Starts the listener thread; it connects in the background.
    pub(super) fn start(mut config: Config) -> Result<Self> {
        // Named, so that it stands out in pg_stat_activity.
        config.application_name(APPLICATION_NAME);
        let shared = Arc::new(Shared::default());
        let thread = std::thread::Builder::new()
            .name("depot-pg-listen".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || listen(&config, &shared)
            })
            .map_err(crate::store::io_err(
                "cannot start the change listener thread",
            ))?;
        Ok(Self {
            shared,
            _thread: thread,
        })
    }

    /// The counter, when the listener can vouch for it.
    pub(super) fn current(&self) -> Option<u64> {
        self.shared
            .live
            .load(Ordering::Acquire)
            .then(|| self.shared.counter.load(Ordering::Acquire))
    }

    /// Records a counter value read or committed by this process; returns the highest known.
    pub(super) fn saw(&self, counter: u64) -> u64 {
        self.shared
            .counter
            .fetch_max(counter, Ordering::AcqRel)
            .max(counter)
    }

    #[cfg(test)]
    pub(super) fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Acquire)
    }
}

impl Drop for Changes {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
    }
}

/// Reads the counter row; a missing or negative one is corrupt.
pub(super) fn parse_counter(value: Option<i64>) -> Result<u64> {
    value
        .and_then(|v| u64::try_from(v).ok())
        .ok_or_else(|| StoreError::Corrupt("meta row changes: missing or negative".into()))
}

fn read_counter(client: &mut Client) -> Result<u64> {
    let row = client.query_opt(READ_COUNTER, &[])?;
    parse_counter(row.map(|r| r.try_get(0)).transpose()?)
}

/// The thread: connect, listen, serve notifications until the connection fails, then again.
fn listen(config: &Config, shared: &Shared) {
    let mut wait = RECONNECT_FIRST;
    while !shared.stop.load(Ordering::Acquire) {
        match subscribe(config, shared) {
            Ok(client) => {
                wait = RECONNECT_FIRST;
                let error = serve(client, shared);
                shared.live.store(false, Ordering::Release);
                if let Some(e) = error {
                    tracing::warn!(error = %e, "change listener lost its connection; reconnecting");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?wait, "change listener cannot connect");
                sleep_unless_stopped(wait, shared);
                wait = (wait * 2).min(RECONNECT_MAX);
            }
        }
    }
}

/// Connects, listens, and reads the counter; the listener is live from here.
fn subscribe(config: &Config, shared: &Shared) -> Result<Client> {
    let mut client = connect(config)?;
    client.batch_execute(&format!("LISTEN {CHANNEL}"))?;
    let counter = read_counter(&mut client)?;
    shared.counter.fetch_max(counter, Ordering::AcqRel);
    let n = shared.connections.fetch_add(1, Ordering::AcqRel) + 1;
    shared.live.store(true, Ordering::Release);
    if n > 1 {
        tracing::info!(counter, "change listener reconnected");
    }
    Ok(client)
}

/// Applies notifications until the connection fails (returning why) or the store is dropped
/// (returning `None`).
fn serve(mut client: Client, shared: &Shared) -> Option<StoreError> {
    let mut last_heard = Instant::now();
    loop {
        if shared.stop.load(Ordering::Acquire) {
            return None;
        }
        let next = client.notifications().timeout_iter(POLL).next();
        match next {
            Ok(Some(notification)) => {
                last_heard = Instant::now();
                match notification.payload().parse::<u64>() {
                    Ok(counter) => {
                        shared.counter.fetch_max(counter, Ordering::AcqRel);
                    }
                    Err(_) => tracing::warn!(
                        payload = notification.payload(),
                        "ignoring a {CHANNEL} notification that is not a counter"
                    ),
                }
            }
            Ok(None) if client.is_closed() => return Some(PgError::Closed.into()),
            Ok(None) if last_heard.elapsed() >= HEALTH_CHECK => match read_counter(&mut client) {
                Ok(counter) => {
                    shared.counter.fetch_max(counter, Ordering::AcqRel);
                    last_heard = Instant::now();
                }
                Err(e) => return Some(e),
            },
            Ok(None) => {}
            Err(e) => return Some(e.into()),
        }
    }
}

fn sleep_unless_stopped(total: Duration, shared: &Shared) {
    let until = Instant::now() + total;
    while !shared.stop.load(Ordering::Acquire) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(POLL));
    }
}
