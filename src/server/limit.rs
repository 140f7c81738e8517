//! Per-address failure limits: an address that keeps presenting bad credentials is answered
//! 429 for a while instead of being allowed to guess on.
//!
//! Only failures count, so a working client is never slowed. The table is bounded: when it
//! fills, expired windows are dropped first, then everything (an attacker spreading over very
//! many addresses gets a fresh start, a legitimate client never a block it did not earn).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses tracked at most.
const MAX_TRACKED: usize = 10_000;

pub struct FailureLimiter {
    max_failures: u32,
    window: Duration,
    failures: Mutex<HashMap<IpAddr, Window>>,
    /// Whether some address may be blocked. Every request asks [`FailureLimiter::is_blocked`],
    /// almost always when none is: then the answer needs neither the lock nor the clock.
    any_blocked: AtomicBool,
}

#[derive(Clone, Copy)]
struct Window {
    started: Instant,
    count: u32,
}

impl FailureLimiter {
    /// At most `max_failures` failures per address within `window`.
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures,
            window,
            failures: Mutex::new(HashMap::new()),
            any_blocked: AtomicBool::new(false),
        }
    }

    /// Whether the address has used up its failures.
    pub fn is_blocked(&self, address: IpAddr) -> bool {
        if !self.any_blocked.load(Ordering::Acquire) {
            return false;
        }
        let now = Instant::now();
        self.lock().get(&address).is_some_and(|w| {
            now.duration_since(w.started) < self.window && w.count >= self.max_failures
        })
    }

    /// Counts a failure of the address.
    pub fn record_failure(&self, address: IpAddr) {
        let now = Instant::now();
        let mut failures = self.lock();
        if failures.len() >= MAX_TRACKED && !failures.contains_key(&address) {
            failures.retain(|_, w| now.duration_since(w.started) < self.window);
            if failures.len() >= MAX_TRACKED {
                failures.clear();
            }
            if !failures.values().any(|w| w.count >= self.max_failures) {
                self.any_blocked.store(false, Ordering::Release);
            }
        }
        let window = failures.entry(address).or_insert(Window {
            started: now,
            count: 0,
        });
        if now.duration_since(window.started) >= self.window {
            *window = Window {
                started: now,
                count: 0,
            };
        }
        window.count = window.count.saturating_add(1);
        if window.count >= self.max_failures {
            self.any_blocked.store(true, Ordering::Release);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Window>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_and_forgets_after_the_window() {
        let limiter = FailureLimiter::new(3, Duration::from_millis(100));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..2 {
            limiter.record_failure(a);
        }
        assert!(!limiter.is_blocked(a));
        limiter.record_failure(a);
        assert!(limiter.is_blocked(a));
        assert!(!limiter.is_blocked(b), "another address is not affected");
        std::thread::sleep(Duration::from_millis(120));
        assert!(!limiter.is_blocked(a));
        limiter.record_failure(a);
        assert!(!limiter.is_blocked(a), "a new window starts from zero");
    }
}
