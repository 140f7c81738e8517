//! What stands between the public default registration key and an unlimited number of devices
//! (CONTRACT 6 rule 6, issue 13): the default org's key is in every public installer, so its
//! enrollments are limited per client address and capped in total. Department orgs are limited
//! by their seats instead (checked where the org is known, see `Depot::enroll`).
//!
//! The per-address count is this process's: each replica limits on its own, so behind `n`
//! replicas an address may enroll up to `n` times the limit, still a bounded number.

use crate::config::EnrollLimits;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(3600);
/// Addresses remembered at most; beyond, windows that ended are forgotten first, and if none
/// has, the oldest window goes (memory stays bounded whatever a client sends).
const MAX_ADDRESSES: usize = 100_000;

#[derive(Default)]
pub struct EnrollGate {
    limits: Mutex<EnrollLimits>,
    /// Per address: when its window began, and enrollments in it.
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl EnrollGate {
    pub fn set_limits(&self, limits: EnrollLimits) {
        *self.limits.lock().unwrap_or_else(|p| p.into_inner()) = limits;
    }

    pub fn limits(&self) -> EnrollLimits {
        *self.limits.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes one enrollment of the default org from `address`; `false` when the address has
    /// used up its hour.
    pub fn admit_default(&self, address: &str) -> bool {
        let limit = self.limits().default_per_address_per_hour;
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() >= MAX_ADDRESSES && !windows.contains_key(address) {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
            if windows.len() >= MAX_ADDRESSES {
                let oldest = windows
                    .iter()
                    .min_by_key(|(_, (start, _))| *start)
                    .map(|(a, _)| a.clone());
                if let Some(oldest) = oldest {
                    windows.remove(&oldest);
                }
            }
        }
        let entry = windows.entry(address.to_string()).or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        if entry.1 >= limit {
            return false;
        }
        entry.1 += 1;
        true
    }

    /// Gives back an enrollment taken by [`EnrollGate::admit_default`] that did not happen (a
    /// refusal after the address check), so that refusals do not use up the hour.
    pub fn give_back(&self, address: &str) {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = windows.get_mut(address) {
            entry.1 = entry.1.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_limit_per_hour_and_others_are_not_affected() {
        let gate = EnrollGate::default();
        gate.set_limits(EnrollLimits {
            default_per_address_per_hour: 3,
            default_max_devices: 100,
        });
        for _ in 0..3 {
            assert!(gate.admit_default("192.0.2.1"));
        }
        assert!(!gate.admit_default("192.0.2.1"));
        assert!(gate.admit_default("192.0.2.2"));
        gate.give_back("192.0.2.1");
        assert!(gate.admit_default("192.0.2.1"), "a given-back enrollment");
        assert!(!gate.admit_default("192.0.2.1"));
    }
}
