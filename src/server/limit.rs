//! Per-address failure limits: an address that keeps presenting bad credentials is answered
//! 429 for a while instead of being allowed to guess on.
//!
//! Only failures count, so a working client is never slowed, and the callers ask whether an
//! address is blocked only once its credentials have failed: a valid token always works, even
//! from an address (one campus NAT) that others made guess too often. IPv6 clients are counted
//! per /64, the block one host is usually given, so stepping through its addresses does not
//! reset the count. The table is bounded: when it
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
    failures: Mutex<HashMap<Client, Window>>,
    /// Whether some address may be blocked. Every request asks [`FailureLimiter::is_blocked`],
    /// almost always when none is: then the answer needs neither the lock nor the clock.
    any_blocked: AtomicBool,
}

/// The unit failures are counted per: an IPv4 address, or an IPv6 /64 prefix.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Client {
    V4(std::net::Ipv4Addr),
    V6Prefix(u64),
}

impl Client {
    fn of(address: IpAddr) -> Self {
        match address {
            IpAddr::V4(v4) => Client::V4(v4),
            // An IPv4 client seen through a dual-stack socket is that IPv4 client.
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Client::V4(v4),
                None => Client::V6Prefix((u128::from(v6) >> 64) as u64),
            },
        }
    }
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
        self.lock().get(&Client::of(address)).is_some_and(|w| {
            now.duration_since(w.started) < self.window && w.count >= self.max_failures
        })
    }

    /// Counts a failure of the address.
    pub fn record_failure(&self, address: IpAddr) {
        let address = Client::of(address);
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Client, Window>> {
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

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        let limiter = FailureLimiter::new(2, Duration::from_secs(60));
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff:eeee:dddd:cccc".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        limiter.record_failure(one);
        limiter.record_failure(same_64);
        assert!(limiter.is_blocked(one));
        assert!(limiter.is_blocked("2001:db8:1:2::99".parse().unwrap()));
        assert!(
            !limiter.is_blocked(other_64),
            "another /64 is another client"
        );

        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        limiter.record_failure(v4);
        limiter.record_failure(mapped);
        assert!(
            limiter.is_blocked(v4),
            "an IPv4-mapped address is that IPv4 client"
        );
    }
}
