//! Update checks are recorded in batches: one transaction per quarter second at most, not one
//! synchronous write per request. A clean shutdown flushes what is pending.

use crate::store::{Checkin, MetaStore, Result};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

const FLUSH_INTERVAL: Duration = Duration::from_millis(250);
/// Beyond this many pending check-ins (the store is failing), the oldest are dropped.
const MAX_PENDING: usize = 200_000;

#[derive(Default)]
pub struct CheckinBuffer {
    pending: Arc<Mutex<Vec<Checkin>>>,
    flusher: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl CheckinBuffer {
    /// Queues a check-in and makes sure a background flusher runs. The flusher holds only weak
    /// references and ends when the buffer or the store is gone.
    pub fn push(&self, checkin: Checkin, meta: &Arc<dyn MetaStore>) {
        {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if pending.len() >= MAX_PENDING {
                pending.remove(0);
            }
            pending.push(checkin);
        }
        let mut flusher = self.flusher.lock().unwrap_or_else(|p| p.into_inner());
        if flusher.as_ref().is_none_or(|h| h.is_finished()) {
            let pending = Arc::downgrade(&self.pending);
            let meta = Arc::downgrade(meta);
            *flusher = std::thread::Builder::new()
                .name("depot-checkins".into())
                .spawn(move || flush_loop(pending, meta))
                .ok();
        }
    }

    /// Writes everything pending now.
    pub fn flush(&self, meta: &dyn MetaStore) -> Result<()> {
        flush_pending(&self.pending, meta)
    }
}

fn flush_pending(pending: &Mutex<Vec<Checkin>>, meta: &dyn MetaStore) -> Result<()> {
    let batch = std::mem::take(&mut *pending.lock().unwrap_or_else(|p| p.into_inner()));
    if batch.is_empty() {
        return Ok(());
    }
    if let Err(e) = meta.record_checkins(&batch) {
        // Keep them for the next attempt, ahead of newer ones.
        let mut pending = pending.lock().unwrap_or_else(|p| p.into_inner());
        let newer = std::mem::replace(&mut *pending, batch);
        pending.extend(newer);
        return Err(e);
    }
    Ok(())
}

fn flush_loop(pending: Weak<Mutex<Vec<Checkin>>>, meta: Weak<dyn MetaStore>) {
    loop {
        std::thread::sleep(FLUSH_INTERVAL);
        let (Some(pending), Some(meta)) = (pending.upgrade(), meta.upgrade()) else {
            return;
        };
        if let Err(e) = flush_pending(&pending, meta.as_ref()) {
            tracing::warn!(error = %e, "cannot record check-ins; will retry");
        }
    }
}
