//! The build lock of [`super::SqliteStore`]: an `flock` beside the database file, or a lock
//! between threads for an in-memory database.

use crate::store::{io_err, Result};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, PoisonError};

/// Blocks until the exclusive `flock` on `path` (created when absent) is ours. The lock ends
/// when the file is closed or the process dies.
pub(super) fn lock_file(path: &Path) -> Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(format!("cannot create {}", dir.display())))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err(format!("cannot open lock {}", path.display())))?;
    loop {
        // SAFETY: flock on a valid, owned file descriptor has no memory-safety preconditions.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc == 0 {
            return Ok(file);
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(io_err(format!("cannot lock {}", path.display()))(err));
        }
    }
}

/// A lock between the threads of this process, with a guard that owns its share of it.
#[derive(Default)]
pub(super) struct LocalLock(Arc<(Mutex<bool>, Condvar)>);

pub(super) struct LocalGuard(Arc<(Mutex<bool>, Condvar)>);

impl LocalLock {
    pub(super) fn acquire(&self) -> LocalGuard {
        let (held, freed) = &*self.0;
        let mut held = held.lock().unwrap_or_else(PoisonError::into_inner);
        while *held {
            held = freed.wait(held).unwrap_or_else(PoisonError::into_inner);
        }
        *held = true;
        LocalGuard(Arc::clone(&self.0))
    }
}

impl Drop for LocalGuard {
    fn drop(&mut self) {
        let (held, freed) = &*self.0;
        *held.lock().unwrap_or_else(PoisonError::into_inner) = false;
        freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use crate::store::{MetaStore, SqliteStore};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    /// While `a` holds the lock, `b` waits; it gets the lock once `a` lets go.
    fn second_locker_waits(a: &dyn MetaStore, b: &dyn MetaStore) {
        let held = a.lock_builds().unwrap();
        let acquired = AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let _lock = b.lock_builds().unwrap();
                acquired.store(true, Ordering::SeqCst);
            });
            std::thread::sleep(Duration::from_millis(200));
            assert!(!acquired.load(Ordering::SeqCst), "the second locker waits");
            drop(held);
        });
        assert!(acquired.load(Ordering::SeqCst));
    }

    #[test]
    fn two_stores_on_one_file_share_the_build_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("depot.db");
        let (a, b) = (
            SqliteStore::open(&path).unwrap(),
            SqliteStore::open(&path).unwrap(),
        );
        second_locker_waits(&a, &b);
        assert!(dir.path().join("locks").join("build.lock").is_file());
    }

    #[test]
    fn an_in_memory_store_locks_between_threads() {
        let store = SqliteStore::open_in_memory().unwrap();
        second_locker_waits(&store, &store);
    }
}
