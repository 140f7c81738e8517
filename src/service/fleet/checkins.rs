//! Update checks are recorded in batches, not as one synchronous write per request: a
//! background thread writes what is pending in one transaction every [`FLUSH_INTERVAL`], or as
//! soon as [`BATCH`] check-ins wait. [`CheckinBuffer::flush`] writes the rest (clean shutdown,
//! tests). Pushing never blocks on the store: the hot path only takes a short lock.

use crate::store::{Checkin, MetaStore, Result};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Duration;

const FLUSH_INTERVAL: Duration = Duration::from_millis(250);
/// This many pending check-ins wake the flusher before the interval is over.
const BATCH: usize = 1000;
/// Beyond this many pending check-ins (the store is failing), the oldest are dropped: a newer
/// check-in of the same device says more.
const MAX_PENDING: usize = 200_000;

#[derive(Default)]
struct Pending {
    checkins: Mutex<VecDeque<Checkin>>,
    /// Signalled when a batch is ready.
    ready: Condvar,
}

impl Pending {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Checkin>> {
        self.checkins.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Default)]
pub struct CheckinBuffer {
    pending: Arc<Pending>,
    flusher_started: AtomicBool,
}

impl CheckinBuffer {
    /// Queues a check-in and makes sure the background flusher runs. The flusher holds only
    /// weak references and ends when the buffer or the store is gone.
    pub fn push(&self, checkin: Checkin, meta: &Arc<dyn MetaStore>) {
        let ready = {
            let mut pending = self.pending.lock();
            if pending.len() >= MAX_PENDING {
                pending.pop_front();
            }
            pending.push_back(checkin);
            pending.len() >= BATCH
        };
        if ready {
            self.pending.ready.notify_one();
        }
        if !self.flusher_started.swap(true, Ordering::AcqRel) {
            self.start_flusher(meta);
        }
    }

    fn start_flusher(&self, meta: &Arc<dyn MetaStore>) {
        let pending = Arc::downgrade(&self.pending);
        let meta = Arc::downgrade(meta);
        let spawned = std::thread::Builder::new()
            .name("depot-checkins".into())
            .spawn(move || flush_loop(pending, meta));
        if let Err(e) = spawned {
            // The next push tries again; until then check-ins wait in memory.
            self.flusher_started.store(false, Ordering::Release);
            tracing::warn!(error = %e, "cannot start the check-in writer");
        }
    }

    /// Writes everything pending now.
    pub fn flush(&self, meta: &dyn MetaStore) -> Result<()> {
        flush_pending(&self.pending, meta)
    }

    /// How many check-ins wait to be written.
    pub fn len(&self) -> usize {
        self.pending.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn flush_pending(pending: &Pending, meta: &dyn MetaStore) -> Result<()> {
    let batch = Vec::from(std::mem::take(&mut *pending.lock()));
    if batch.is_empty() {
        return Ok(());
    }
    if let Err(e) = meta.record_checkins(&batch) {
        // Keep them for the next attempt, ahead of newer ones.
        let mut queue = pending.lock();
        let newer = std::mem::replace(&mut *queue, VecDeque::from(batch));
        queue.extend(newer);
        while queue.len() > MAX_PENDING {
            queue.pop_front();
        }
        return Err(e);
    }
    Ok(())
}

fn flush_loop(pending: Weak<Pending>, meta: Weak<dyn MetaStore>) {
    loop {
        {
            let Some(pending) = pending.upgrade() else {
                return;
            };
            let guard = pending.lock();
            // Wakes at the interval, or earlier when a batch is ready; what it waited for is
            // taken by `flush_pending` below, so the guard only serves the wait.
            let _unused = pending
                .ready
                .wait_timeout_while(guard, FLUSH_INTERVAL, |q| q.len() < BATCH)
                .unwrap_or_else(|p| p.into_inner());
        }
        let (Some(pending), Some(meta)) = (pending.upgrade(), meta.upgrade()) else {
            return;
        };
        if let Err(e) = flush_pending(&pending, meta.as_ref()) {
            tracing::warn!(error = %e, "cannot record check-ins; will retry");
            // Do not spin on a failing store.
            std::thread::sleep(FLUSH_INTERVAL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Platform;
    use crate::store::SqliteStore;

    fn checkin(i: usize) -> Checkin {
        Checkin {
            device_id: format!("dev_{i}"),
            at: i as i64,
            address: "10.0.0.1".into(),
            version: None,
            platform: Platform::LinuxX86_64,
            offered: None,
        }
    }

    #[test]
    fn pending_check_ins_are_written_in_the_background_and_by_flush() {
        let meta: Arc<dyn MetaStore> = Arc::new(SqliteStore::open_in_memory().unwrap());
        let buffer = CheckinBuffer::default();
        for i in 0..BATCH {
            buffer.push(checkin(i), &meta);
        }
        let started = std::time::Instant::now();
        while !buffer.is_empty() {
            assert!(started.elapsed() < FLUSH_INTERVAL * 20, "never written");
            std::thread::sleep(Duration::from_millis(5));
        }
        buffer.push(checkin(BATCH), &meta);
        assert_eq!(buffer.len(), 1);
        buffer.flush(meta.as_ref()).unwrap();
        assert!(buffer.is_empty());
    }
}
