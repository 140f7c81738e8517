//! Update checks are recorded in batches, not as one synchronous write per request, and
//! coalesced per device: what a check-in changes is the device's last-seen time, address and
//! version, and the set of versions it was offered, so a device that checks in ten times before
//! the next write costs one row, not ten. A background thread writes what is pending in one
//! transaction every [`FLUSH_INTERVAL`], or sooner when [`EARLY_FLUSH`] devices wait.
//! [`CheckinBuffer::flush`] writes the rest (clean shutdown, tests). Pushing never blocks on the
//! store and, for a device already pending, does not allocate: the hot path takes a short lock
//! and updates an entry in place.

use crate::domain::{Channel, Platform, Version};
use crate::store::{Checkin, MetaStore, Result};
// Device ids are made by the server, never chosen by a client: a fast hash is safe.
use foldhash::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Duration;

/// How stale a device's last-seen time may be in the store (a clean shutdown writes the rest).
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// This many devices pending wake the writer before the interval is over.
const EARLY_FLUSH: usize = 50_000;
/// Beyond this many devices pending (the store is failing), new devices' check-ins are dropped
/// until a write succeeds: memory stays bounded and the devices already pending keep updating.
const MAX_PENDING: usize = 500_000;

/// One update check, as the hot path hands it over (borrowed: nothing is copied unless the
/// device is not pending yet).
#[derive(Debug, Clone, Copy)]
pub struct CheckinRef<'a> {
    pub device_id: &'a str,
    pub at: i64,
    /// `None` when the connection's address is not known.
    pub address: Option<IpAddr>,
    pub version: Option<&'a Version>,
    pub platform: Platform,
    pub offered: Option<(&'a Version, &'a Channel)>,
}

/// What the pending check-ins of one device add up to.
#[derive(Debug)]
struct Coalesced {
    at: i64,
    address: Option<IpAddr>,
    version: Option<Version>,
    platform: Platform,
    /// Each (version, channel) offered, with the time it was first offered.
    offered: Vec<(Version, Channel, i64)>,
}

impl Coalesced {
    fn new(c: &CheckinRef<'_>) -> Self {
        let mut entry = Coalesced {
            at: c.at,
            address: c.address,
            version: c.version.cloned(),
            platform: c.platform,
            offered: Vec::new(),
        };
        entry.add_offer(c);
        entry
    }

    /// A later check-in of the same device: the newest time, address and known version win,
    /// as they would if each were written in turn.
    fn update(&mut self, c: &CheckinRef<'_>) {
        self.at = self.at.max(c.at);
        self.address = c.address;
        self.platform = c.platform;
        if let Some(version) = c.version {
            if self.version.as_ref() != Some(version) {
                self.version = Some(version.clone());
            }
        }
        self.add_offer(c);
    }

    fn add_offer(&mut self, c: &CheckinRef<'_>) {
        if let Some((version, channel)) = c.offered {
            if !self
                .offered
                .iter()
                .any(|(v, ch, _)| v == version && ch == channel)
            {
                self.offered.push((version.clone(), channel.clone(), c.at));
            }
        }
    }

    /// Folds in what an older entry of the same device knew (a write of it failed meanwhile).
    fn merge_older(&mut self, older: Coalesced) {
        self.at = self.at.max(older.at);
        if self.version.is_none() {
            self.version = older.version;
        }
        for (version, channel, at) in older.offered {
            match self
                .offered
                .iter_mut()
                .find(|(v, ch, _)| *v == version && *ch == channel)
            {
                Some(known) => known.2 = known.2.min(at),
                None => self.offered.push((version, channel, at)),
            }
        }
    }

    /// The rows that leave the store as if every check-in had been written one by one: an
    /// offer first made before the newest check-in gets a row of its own, with its own time;
    /// the row with the newest state comes last, as the newest address and version win.
    fn checkins(&self, device_id: &str, out: &mut Vec<Checkin>) {
        let address = self
            .address
            .map_or_else(|| "unknown".to_string(), |a| a.to_string());
        let mut newest_offer = None;
        for (version, channel, at) in &self.offered {
            if *at == self.at && newest_offer.is_none() {
                newest_offer = Some((version.clone(), channel.clone()));
                continue;
            }
            out.push(Checkin {
                device_id: device_id.to_string(),
                at: *at,
                address: address.clone(),
                version: None,
                platform: self.platform,
                offered: Some((version.clone(), channel.clone())),
            });
        }
        out.push(Checkin {
            device_id: device_id.to_string(),
            at: self.at,
            address,
            version: self.version.clone(),
            platform: self.platform,
            offered: newest_offer,
        });
    }
}

#[derive(Default)]
struct Pending {
    devices: Mutex<HashMap<String, Coalesced>>,
    /// Signalled when enough devices wait.
    ready: Condvar,
    /// Held by a flush from taking the queue to its commit, so that a flush that finds the queue
    /// empty returns only once an earlier flush's check-ins are in the store: a report looking
    /// for the offer a check-in recorded must not miss it while another thread writes it.
    flushing: Mutex<()>,
}

impl Pending {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Coalesced>> {
        self.devices.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Default)]
pub struct CheckinBuffer {
    pending: Arc<Pending>,
    flusher_started: AtomicBool,
}

impl CheckinBuffer {
    /// Queues a check-in and makes sure the background writer runs. The writer holds only
    /// weak references and ends when the buffer or the store is gone.
    pub fn push(&self, checkin: CheckinRef<'_>, meta: &Arc<dyn MetaStore>) {
        let wake = {
            let mut pending = self.pending.lock();
            if let Some(entry) = pending.get_mut(checkin.device_id) {
                entry.update(&checkin);
                false
            } else if pending.len() < MAX_PENDING {
                pending.insert(checkin.device_id.to_string(), Coalesced::new(&checkin));
                pending.len() >= EARLY_FLUSH
            } else {
                true
            }
        };
        if wake {
            self.pending.ready.notify_one();
        }
        if !self.flusher_started.load(Ordering::Acquire)
            && !self.flusher_started.swap(true, Ordering::AcqRel)
        {
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

    /// How many devices have check-ins waiting to be written.
    pub fn len(&self) -> usize {
        self.pending.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn flush_pending(pending: &Pending, meta: &dyn MetaStore) -> Result<()> {
    let _flushing = pending.flushing.lock().unwrap_or_else(|p| p.into_inner());
    let taken = std::mem::take(&mut *pending.lock());
    if taken.is_empty() {
        return Ok(());
    }
    // Sorted by device, so that one write touches the table in index order.
    let mut devices: Vec<(&String, &Coalesced)> = taken.iter().collect();
    devices.sort_unstable_by_key(|(id, _)| *id);
    let mut rows = Vec::with_capacity(devices.len());
    for (id, entry) in devices {
        entry.checkins(id, &mut rows);
    }
    if let Err(e) = meta.record_checkins(&rows) {
        // Keep them for the next attempt; check-ins that arrived meanwhile are newer and win.
        let mut queue = pending.lock();
        for (id, older) in taken {
            let room = queue.len() < MAX_PENDING;
            match queue.get_mut(&id) {
                Some(newer) => newer.merge_older(older),
                None if room => {
                    queue.insert(id, older);
                }
                None => {}
            }
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
            // Wakes at the interval, or earlier when many devices wait; what it waited for is
            // taken by `flush_pending` below, so the guard only serves the wait.
            let _unused = pending
                .ready
                .wait_timeout_while(guard, FLUSH_INTERVAL, |q| q.len() < EARLY_FLUSH)
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
    use crate::store::SqliteStore;

    fn ver(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn pending_check_ins_are_written_in_the_background_and_by_flush() {
        let meta: Arc<dyn MetaStore> = Arc::new(SqliteStore::open_in_memory().unwrap());
        let buffer = CheckinBuffer::default();
        let ids: Vec<String> = (0..10).map(|i| format!("dev_{i}")).collect();
        for (i, id) in ids.iter().enumerate() {
            buffer.push(
                CheckinRef {
                    device_id: id,
                    at: i as i64,
                    address: Some(IpAddr::from([10, 0, 0, 1])),
                    version: None,
                    platform: Platform::LinuxX86_64,
                    offered: None,
                },
                &meta,
            );
        }
        let started = std::time::Instant::now();
        while !buffer.is_empty() {
            assert!(started.elapsed() < FLUSH_INTERVAL * 10, "never written");
            std::thread::sleep(Duration::from_millis(5));
        }
        buffer.push(
            CheckinRef {
                device_id: "dev_x",
                at: 99,
                address: None,
                version: None,
                platform: Platform::LinuxX86_64,
                offered: None,
            },
            &meta,
        );
        assert_eq!(buffer.len(), 1);
        buffer.flush(meta.as_ref()).unwrap();
        assert!(buffer.is_empty());
    }

    #[test]
    fn check_ins_of_one_device_coalesce_into_what_writing_each_would_leave() {
        let (one, two, three) = (ver("1.0.0"), ver("1.1.0"), ver("1.2.0"));
        let stable = Channel::parse("stable").unwrap();
        let at = |t: i64, address: [u8; 4], version: Option<&'static Version>| CheckinRef {
            device_id: "dev_a",
            at: t,
            address: Some(IpAddr::from(address)),
            version,
            platform: Platform::LinuxX86_64,
            offered: None,
        };
        let one: &'static Version = Box::leak(Box::new(one));
        let mut entry = Coalesced::new(&CheckinRef {
            offered: Some((&two, &stable)),
            ..at(10, [10, 0, 0, 1], Some(one))
        });
        entry.update(&CheckinRef {
            offered: Some((&two, &stable)),
            ..at(12, [10, 0, 0, 2], None)
        });
        entry.update(&CheckinRef {
            offered: Some((&three, &stable)),
            ..at(11, [10, 0, 0, 3], None)
        });
        let mut rows = Vec::new();
        entry.checkins("dev_a", &mut rows);
        assert_eq!(
            rows.len(),
            3,
            "offers older than the newest check-in get rows: {rows:?}"
        );
        let last = rows.last().unwrap();
        assert_eq!(last.at, 12, "the newest time wins");
        assert_eq!(last.address, "10.0.0.3", "the last address wins");
        assert_eq!(last.version.as_ref(), Some(one), "a known version is kept");
        let offers: Vec<_> = rows
            .iter()
            .filter_map(|r| r.offered.as_ref().map(|(v, _)| (v.to_string(), r.at)))
            .collect();
        assert_eq!(
            offers,
            [("1.1.0".to_string(), 10), ("1.2.0".to_string(), 11)],
            "each offer once, with the time it was first made"
        );
        assert!(last.offered.is_none());

        let mut single = Coalesced::new(&CheckinRef {
            offered: Some((&two, &stable)),
            ..at(20, [10, 0, 0, 1], None)
        });
        let mut rows = Vec::new();
        single.checkins("dev_a", &mut rows);
        assert_eq!(rows.len(), 1, "one check-in, one row: {rows:?}");

        // A failed write's entry merges under a newer one.
        single.merge_older(entry);
        assert_eq!(single.at, 20);
        assert_eq!(single.version.as_ref(), Some(one));
        let times: Vec<_> = single
            .offered
            .iter()
            .map(|o| (o.0.to_string(), o.2))
            .collect();
        assert_eq!(
            times,
            [("1.1.0".to_string(), 10), ("1.2.0".to_string(), 11)]
        );
    }
}
