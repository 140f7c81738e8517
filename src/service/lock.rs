//! An exclusive lock on a file, held while packages are built, so that two processes on one data
//! directory (the CLI beside a running server) never build the same packages at once.

use super::{io_err, Result};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

pub struct FileLock {
    _file: File,
}

impl FileLock {
    /// Blocks until the lock is free. The lock ends when the value is dropped or the process dies.
    pub fn acquire(dir: &Path, name: &str) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(io_err(format!("cannot create {}", dir.display())))?;
        let path = dir.join(name);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(format!("cannot open lock {}", path.display())))?;
        loop {
            // SAFETY: flock on a valid, owned file descriptor has no memory-safety preconditions.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(FileLock { _file: file });
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(io_err(format!("cannot lock {}", path.display()))(err));
            }
        }
    }
}
