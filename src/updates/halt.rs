//! Rule 6 of CONTRACT 6, the automatic halt of a failing rollout, as pure arithmetic on counted
//! reports.
//!
//! Only counted reports reach these functions: from a device that was offered the release on
//! the channel and had enrolled before the rollout began, once per device and outcome (the
//! store keeps that). Two levels, so that one org (the default org's registration key is in
//! every public installer) can stop a release for itself but never for everyone:
//!
//! - an org whose counted failures reach 20% of its `installed + failed`, with at least 5 failed
//!   devices, gets a **hold**: only its devices stop being offered the release;
//! - counted failures from at least 3 orgs, at least 10 devices and 20% of all `installed +
//!   failed` **pause** the rollout for the channel.

use crate::domain::OrgCode;

/// The failure share that holds or pauses, in percent of `installed + failed`.
pub const HOLD_FAILURE_PERCENT: u64 = 20;
/// The fewest failed devices of one org that hold the release for that org.
pub const HOLD_MIN_FAILED: u64 = 5;
/// The fewest orgs with failures that pause the rollout for the channel.
pub const PAUSE_MIN_ORGS: usize = 3;
/// The fewest failed devices (all orgs) that pause the rollout for the channel.
pub const PAUSE_MIN_FAILED: u64 = 10;

/// One org's counted reports on a release and channel, in devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgTally {
    pub org: OrgCode,
    pub installed: u64,
    pub failed: u64,
}

/// Whether `failed` is at least [`HOLD_FAILURE_PERCENT`] of `installed + failed` (and not zero).
fn share_reached(installed: u64, failed: u64) -> bool {
    // In u128 so that no count, however absurd, can overflow the comparison.
    let reports = u128::from(installed) + u128::from(failed);
    failed > 0 && u128::from(failed) * 100 >= reports * u128::from(HOLD_FAILURE_PERCENT)
}

/// Whether an org with this tally must be held.
pub fn org_must_hold(tally: &OrgTally) -> bool {
    tally.failed >= HOLD_MIN_FAILED && share_reached(tally.installed, tally.failed)
}

/// Whether the rollout must pause for the whole channel, given every org's tally.
pub fn channel_must_pause(tallies: &[OrgTally]) -> bool {
    let orgs = tallies.iter().filter(|t| t.failed > 0).count();
    let (installed, failed) = tallies.iter().fold((0u64, 0u64), |(i, f), t| {
        (i.saturating_add(t.installed), f.saturating_add(t.failed))
    });
    orgs >= PAUSE_MIN_ORGS && failed >= PAUSE_MIN_FAILED && share_reached(installed, failed)
}

/// Why an org is held, in words for `/v1/rollouts` and the audit log.
pub fn hold_reason(tally: &OrgTally) -> String {
    let total = tally.installed.saturating_add(tally.failed);
    format!(
        "held for org {}: {} of {total} of its devices reported failure ({}%)",
        tally.org,
        tally.failed,
        percent(tally.failed, total)
    )
}

/// Why the channel paused, in words for `/v1/rollouts` and the audit log.
pub fn pause_reason(tallies: &[OrgTally]) -> String {
    let orgs = tallies.iter().filter(|t| t.failed > 0).count();
    let failed: u64 = tallies
        .iter()
        .map(|t| t.failed)
        .fold(0, u64::saturating_add);
    let total: u64 = tallies
        .iter()
        .map(|t| t.installed.saturating_add(t.failed))
        .fold(0, u64::saturating_add);
    format!(
        "halted: {failed} of {total} devices in {orgs} orgs reported failure ({}%)",
        percent(failed, total)
    )
}

fn percent(part: u64, total: u64) -> u128 {
    u128::from(part) * 100 / u128::from(total.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tally(org: &str, installed: u64, failed: u64) -> OrgTally {
        OrgTally {
            org: OrgCode::parse(org).unwrap(),
            installed,
            failed,
        }
    }

    #[test]
    fn an_org_is_held_at_five_failed_devices_and_twenty_percent() {
        assert!(org_must_hold(&tally("physics", 20, 5)));
        assert!(!org_must_hold(&tally("physics", 21, 5)), "below 20%");
        assert!(!org_must_hold(&tally("physics", 0, 4)), "four devices");
        assert!(org_must_hold(&tally("physics", 0, 5)));
        assert!(!org_must_hold(&tally("physics", 0, 0)));
        assert!(org_must_hold(&tally("physics", u64::MAX, u64::MAX)));
    }

    #[test]
    fn the_channel_pauses_only_with_three_orgs_ten_devices_and_twenty_percent() {
        // The attack: ten failures, all from the default org.
        assert!(!channel_must_pause(&[tally("default", 0, 10)]));
        assert!(!channel_must_pause(&[
            tally("default", 0, 9),
            tally("physics", 0, 1)
        ]));
        let three = [
            tally("default", 10, 4),
            tally("physics", 10, 3),
            tally("chem", 20, 3),
        ];
        assert!(channel_must_pause(&three), "10 of 50 from 3 orgs");
        let diluted = [
            tally("default", 10, 4),
            tally("physics", 10, 3),
            tally("chem", 21, 3),
        ];
        assert!(!channel_must_pause(&diluted), "10 of 51 is below 20%");
        let nine = [
            tally("default", 0, 4),
            tally("physics", 0, 3),
            tally("chem", 0, 2),
        ];
        assert!(!channel_must_pause(&nine), "nine devices");
        assert!(!channel_must_pause(&[]));
    }

    #[test]
    fn reasons_name_the_numbers() {
        assert_eq!(
            hold_reason(&tally("physics", 15, 5)),
            "held for org physics: 5 of 20 of its devices reported failure (25%)"
        );
        assert_eq!(
            pause_reason(&[tally("aa", 10, 5), tally("bb", 0, 5), tally("cc", 10, 0)]),
            "halted: 10 of 30 devices in 2 orgs reported failure (33%)"
        );
    }

    proptest! {
        /// However the failures of one org are spread, one org alone never pauses the channel.
        #[test]
        fn one_org_never_pauses_the_channel(installed in any::<u64>(), failed in any::<u64>()) {
            prop_assert!(!channel_must_pause(&[tally("default", installed, failed)]));
        }

        /// More installs never turn a no-hold into a hold, more failures never the reverse.
        #[test]
        fn holds_are_monotonic(installed in 0u64..10_000, failed in 0u64..10_000, more in 0u64..100) {
            let base = org_must_hold(&tally("xx", installed, failed));
            if !base {
                prop_assert!(!org_must_hold(&tally("xx", installed + more, failed)));
            } else {
                prop_assert!(org_must_hold(&tally("xx", installed, failed + more)));
            }
        }

        /// A pause implies that the failures reach the thresholds overall.
        #[test]
        fn a_pause_meets_every_threshold(
            parts in proptest::collection::vec((0u64..50, 0u64..20), 0..6)
        ) {
            let names = ["aa", "bb", "cc", "dd", "ee", "ff"];
            let tallies: Vec<OrgTally> = parts
                .iter()
                .zip(names)
                .map(|((i, f), n)| tally(n, *i, *f))
                .collect();
            if channel_must_pause(&tallies) {
                let failed: u64 = tallies.iter().map(|t| t.failed).sum();
                let total: u64 = tallies.iter().map(|t| t.installed + t.failed).sum();
                prop_assert!(failed >= 10 && failed * 5 >= total);
                prop_assert!(tallies.iter().filter(|t| t.failed > 0).count() >= 3);
            }
        }
    }
}
