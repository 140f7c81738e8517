use super::*;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};

fn v(s: &str) -> Version {
    Version::parse(s).unwrap()
}

fn live(percent: u8) -> Option<RolloutState> {
    Some(RolloutState {
        percent,
        paused: false,
        held: false,
    })
}

fn paused(percent: u8) -> Option<RolloutState> {
    Some(RolloutState {
        percent,
        paused: true,
        held: false,
    })
}

/// An owned release, so that tests can build scenarios without juggling lifetimes.
#[derive(Debug, Clone)]
struct Rel {
    version: Version,
    has_platform: bool,
    yanked: bool,
    rollout: Option<RolloutState>,
}

fn rel(version: &str, rollout: Option<RolloutState>) -> Rel {
    Rel {
        version: v(version),
        has_platform: true,
        yanked: false,
        rollout,
    }
}

impl Rel {
    fn yanked(mut self) -> Self {
        self.yanked = true;
        self
    }
    fn without_platform(mut self) -> Self {
        self.has_platform = false;
        self
    }
}

#[derive(Debug, Clone)]
struct Scenario {
    device_id: String,
    current: Option<Version>,
    pin: Option<Version>,
    min: Option<Version>,
    releases: Vec<Rel>,
}

impl Scenario {
    fn new(current: Option<&str>, releases: Vec<Rel>) -> Self {
        Self {
            device_id: "device-1".into(),
            current: current.map(v),
            pin: None,
            min: None,
            releases,
        }
    }
    fn pin(mut self, pin: &str) -> Self {
        self.pin = Some(v(pin));
        self
    }
    fn min(mut self, min: &str) -> Self {
        self.min = Some(v(min));
        self
    }
    fn device(mut self, id: &str) -> Self {
        self.device_id = id.into();
        self
    }

    fn decide(&self) -> Decision {
        let channel = Channel::parse("stable").unwrap();
        let candidates: Vec<Candidate> = self
            .releases
            .iter()
            .map(|r| Candidate {
                version: &r.version,
                has_platform: r.has_platform,
                yanked: r.yanked,
                rollout: r.rollout,
            })
            .collect();
        decide_update(
            &DeviceFacts {
                device_id: &self.device_id,
                platform: Platform::LinuxX86_64,
                current: self.current.as_ref(),
            },
            &OrgPolicy {
                channel: &channel,
                pinned_version: self.pin.as_ref(),
            },
            &ChannelPolicy {
                min_version: self.min.as_ref(),
            },
            &candidates,
        )
    }

    fn is_eligible(&self, version: &Version) -> bool {
        self.releases
            .iter()
            .any(|r| &r.version == version && r.rollout.is_some() && !r.yanked && r.has_platform)
    }
}

fn offer(version: &str, mandatory: bool, rollback: bool) -> Decision {
    Decision::Offer {
        version: v(version),
        mandatory,
        rollback,
    }
}

fn offered(d: &Decision) -> Option<&Version> {
    match d {
        Decision::Offer { version, .. } => Some(version),
        Decision::UpToDate => None,
    }
}

/// A device id whose bucket for `version` is `want`, found by search so the tests depend only on
/// the formula, not on hand-picked ids.
fn device_in_bucket(version: &str, want: u8) -> String {
    let version = v(version);
    (0..100_000)
        .map(|i| format!("device-{i}"))
        .find(|id| bucket(id, &version) == want)
        .unwrap()
}

// ---- bucket ----

#[test]
fn bucket_known_answers() {
    // Computed outside Rust: python3 -c 'import hashlib; d=hashlib.sha256(b"device-1:11.2.1")
    // .digest(); print(int.from_bytes(d[:8], "big") % 100)'.
    assert_eq!(bucket("device-1", &v("11.2.1")), 35);
    assert_eq!(
        bucket("3f2c9a70-5b1e-4d8a-9c61-0e7f1a2b3c4d", &v("11.3.0-beta.1")),
        50
    );
}

#[test]
fn bucket_matches_the_formula_computed_with_sha2() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..200 {
        let id = format!("{:032x}", rng.gen::<u128>());
        let pre = ["", "-beta.1", "-rc.12", "-alpha", "-0.3.7", "-x-y.007z"][rng.gen_range(0..6)];
        let version = v(&format!(
            "{}.{}.{}{pre}",
            rng.gen_range(0..20),
            rng.gen::<u32>() >> rng.gen_range(0..32),
            rng.gen::<u64>() >> rng.gen_range(0..64),
        ));
        let digest = sha2::Sha256::digest(format!("{id}:{version}").as_bytes());
        let first = u64::from_be_bytes(digest[..8].try_into().unwrap());
        assert_eq!(u64::from(bucket(&id, &version)), first % 100);
    }
}

#[test]
fn bucket_is_uniform_enough() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    for version in ["11.2.1", "12.0.0", "12.1.0-beta.3"] {
        let version = v(version);
        let mut counts = [0u32; 100];
        for _ in 0..10_000 {
            let id = format!("{:032x}", rng.gen::<u128>());
            counts[usize::from(bucket(&id, &version))] += 1;
        }
        let at_30: u32 = counts[..30].iter().sum();
        assert!(
            (2_700..=3_300).contains(&at_30),
            "{version}: {at_30} of 10000 below 30"
        );
        // Every bucket is reachable and none dominates (expected 100 each).
        assert!(
            counts.iter().all(|&c| (50..=160).contains(&c)),
            "{counts:?}"
        );
    }
}

#[test]
fn buckets_differ_between_releases() {
    let (a, b) = (v("11.2.1"), v("11.3.0"));
    let same = (0..1000)
        .filter(|i| {
            let id = format!("device-{i}");
            bucket(&id, &a) == bucket(&id, &b)
        })
        .count();
    assert!(same < 40, "{same} of 1000 devices share their bucket");
}

// ---- rule 1: eligibility ----

#[test]
fn ineligible_releases_are_never_offered() {
    for bad in [
        rel("12.0.0", live(100)).yanked(),
        rel("12.0.0", None),
        rel("12.0.0", live(100)).without_platform(),
    ] {
        let s = Scenario::new(Some("11.0.0"), vec![rel("11.5.0", live(100)), bad.clone()]);
        assert_eq!(s.decide(), offer("11.5.0", false, false), "{bad:?}");
        // Not even through the floor or a pin.
        assert_eq!(
            s.clone().min("13.0.0").decide(),
            offer("11.5.0", true, false),
            "{bad:?}"
        );
        assert_eq!(s.pin("12.0.0").decide(), Decision::UpToDate, "{bad:?}");
    }
}

#[test]
fn nothing_published_means_up_to_date() {
    assert_eq!(
        Scenario::new(Some("11.0.0"), vec![]).decide(),
        Decision::UpToDate
    );
    assert_eq!(Scenario::new(None, vec![]).decide(), Decision::UpToDate);
}

// ---- rule 2: pin ----

#[test]
fn pin_wins_over_rollout() {
    let s = Scenario::new(
        Some("11.0.0"),
        vec![rel("11.2.0", live(0)), rel("12.0.0", live(100))],
    )
    .pin("11.2.0");
    assert_eq!(s.decide(), offer("11.2.0", false, false));
}

#[test]
fn pin_offered_even_when_its_rollout_is_paused() {
    let s = Scenario::new(Some("11.0.0"), vec![rel("11.2.0", paused(0))]).pin("11.2.0");
    assert_eq!(s.decide(), offer("11.2.0", false, false));
}

#[test]
fn pin_to_an_ineligible_version_offers_nothing() {
    for pinned in [
        rel("11.2.0", live(100)).yanked(),
        rel("11.2.0", None),
        rel("11.2.0", live(100)).without_platform(),
    ] {
        let s = Scenario::new(
            Some("11.0.0"),
            vec![pinned.clone(), rel("12.0.0", live(100))],
        )
        .pin("11.2.0");
        assert_eq!(s.decide(), Decision::UpToDate, "{pinned:?}");
    }
    // A pin to a version depot never heard of holds the org too.
    let s = Scenario::new(Some("11.0.0"), vec![rel("12.0.0", live(100))]).pin("11.9.0");
    assert_eq!(s.decide(), Decision::UpToDate);
}

#[test]
fn pin_below_current_is_no_downgrade() {
    let s = Scenario::new(
        Some("12.0.0"),
        vec![rel("11.2.0", live(100)), rel("12.0.0", live(100))],
    )
    .pin("11.2.0");
    assert_eq!(s.decide(), Decision::UpToDate);
}

#[test]
fn pin_equal_to_current_is_up_to_date() {
    let s = Scenario::new(
        Some("11.2.0"),
        vec![rel("11.2.0", live(100)), rel("12.0.0", live(100))],
    )
    .pin("11.2.0");
    assert_eq!(s.decide(), Decision::UpToDate);
}

#[test]
fn fresh_device_gets_the_pin() {
    let s =
        Scenario::new(None, vec![rel("11.2.0", live(0)), rel("12.0.0", live(100))]).pin("11.2.0");
    assert_eq!(s.decide(), offer("11.2.0", false, false));
}

// ---- rule 3: rollout ----

#[test]
fn rollout_includes_exactly_the_buckets_below_the_percent() {
    let b = 37;
    let id = device_in_bucket("12.0.0", b);
    let at = |percent| {
        Scenario::new(Some("11.0.0"), vec![rel("12.0.0", live(percent))])
            .device(&id)
            .decide()
    };
    assert_eq!(at(b), Decision::UpToDate);
    assert_eq!(at(b + 1), offer("12.0.0", false, false));
    assert_eq!(at(0), Decision::UpToDate);
    assert_eq!(at(100), offer("12.0.0", false, false));
    // Bucket 99 is included only at 100%, bucket 0 from 1%.
    let last = device_in_bucket("12.0.0", 99);
    let first = device_in_bucket("12.0.0", 0);
    let with = |id: &str, percent| {
        Scenario::new(Some("11.0.0"), vec![rel("12.0.0", live(percent))])
            .device(id)
            .decide()
    };
    assert_eq!(with(&last, 99), Decision::UpToDate);
    assert_eq!(with(&last, 100), offer("12.0.0", false, false));
    assert_eq!(with(&first, 1), offer("12.0.0", false, false));
}

#[test]
fn rollout_picks_the_highest_release_that_includes_the_device() {
    let id = device_in_bucket("12.1.0", 80);
    let s = Scenario::new(
        Some("11.0.0"),
        vec![
            rel("11.5.0", live(100)),
            rel("12.0.0", live(100)),
            rel("12.1.0", live(50)),
        ],
    )
    .device(&id);
    assert_eq!(s.decide(), offer("12.0.0", false, false));
}

#[test]
fn a_paused_rollout_includes_no_one() {
    for percent in [0, 50, 100] {
        let s = Scenario::new(Some("11.0.0"), vec![rel("12.0.0", paused(percent))]);
        assert_eq!(s.decide(), Decision::UpToDate);
        let s = Scenario::new(
            Some("11.0.0"),
            vec![rel("11.5.0", live(100)), rel("12.0.0", paused(percent))],
        );
        assert_eq!(s.decide(), offer("11.5.0", false, false));
    }
}

#[test]
fn fresh_device_gets_the_rollout_target() {
    let id = device_in_bucket("12.1.0", 60);
    let s = Scenario::new(
        None,
        vec![rel("12.0.0", live(100)), rel("12.1.0", live(30))],
    )
    .device(&id);
    assert_eq!(s.decide(), offer("12.0.0", false, false));
    // No current version is never "below the floor".
    assert_eq!(s.min("13.0.0").decide(), offer("12.0.0", false, false));
}

#[test]
fn rollout_never_downgrades() {
    let s = Scenario::new(Some("12.5.0"), vec![rel("12.0.0", live(100))]);
    assert_eq!(s.decide(), Decision::UpToDate);
}

// ---- rule 4: min_version ----

#[test]
fn below_min_gets_the_highest_eligible_whatever_the_percent() {
    for rollout in [live(0), paused(100), paused(0)] {
        let s = Scenario::new(
            Some("11.0.0"),
            vec![rel("11.5.0", live(100)), rel("12.0.0", rollout)],
        )
        .min("11.2.0");
        assert_eq!(s.decide(), offer("12.0.0", true, false), "{rollout:?}");
    }
}

#[test]
fn at_or_above_min_is_not_mandatory() {
    let s = Scenario::new(Some("11.2.0"), vec![rel("12.0.0", live(100))]).min("11.2.0");
    assert_eq!(s.decide(), offer("12.0.0", false, false));
    let s = Scenario::new(Some("11.3.0"), vec![rel("12.0.0", live(0))]).min("11.2.0");
    assert_eq!(s.decide(), Decision::UpToDate);
}

#[test]
fn min_above_every_eligible_version_still_moves_the_device_up() {
    let s = Scenario::new(
        Some("11.0.0"),
        vec![rel("11.5.0", live(10)), rel("13.0.0", None)],
    )
    .min("13.0.0");
    assert_eq!(s.decide(), offer("11.5.0", true, false));
    // ... but never down.
    let s = Scenario::new(Some("11.8.0"), vec![rel("11.5.0", live(100))]).min("13.0.0");
    assert_eq!(s.decide(), Decision::UpToDate);
}

#[test]
fn a_pin_that_meets_the_floor_is_the_mandatory_offer() {
    let s = Scenario::new(
        Some("11.0.0"),
        vec![rel("11.5.0", live(0)), rel("12.0.0", live(100))],
    )
    .pin("11.5.0")
    .min("11.2.0");
    assert_eq!(s.decide(), offer("11.5.0", true, false));
}

#[test]
fn the_floor_wins_over_a_pin_below_it_or_ineligible() {
    let releases = vec![
        rel("11.1.0", live(100)),
        rel("11.3.0", live(100)).yanked(),
        rel("12.0.0", live(0)),
    ];
    for pin in ["11.1.0", "11.3.0"] {
        let s = Scenario::new(Some("11.0.0"), releases.clone())
            .pin(pin)
            .min("11.2.0");
        assert_eq!(s.decide(), offer("12.0.0", true, false), "pin {pin}");
    }
}

// ---- rule 5: yanked current version ----

#[test]
fn yanked_current_rolls_back_to_the_highest_eligible() {
    let s = Scenario::new(
        Some("12.0.0"),
        vec![
            rel("11.0.0", live(100)),
            rel("11.5.0", live(0)),
            rel("12.0.0", live(100)).yanked(),
        ],
    );
    assert_eq!(s.decide(), offer("11.5.0", false, true));
}

#[test]
fn yanked_current_with_a_newer_release_upgrades_without_rollback() {
    let id = device_in_bucket("12.1.0", 90);
    let s = Scenario::new(
        Some("12.0.0"),
        vec![
            rel("11.0.0", live(100)),
            rel("12.0.0", live(100)).yanked(),
            rel("12.1.0", live(10)),
        ],
    )
    .device(&id);
    assert_eq!(s.decide(), offer("12.1.0", false, false));
}

#[test]
fn yanked_current_with_nothing_eligible_stays() {
    let s = Scenario::new(Some("12.0.0"), vec![rel("12.0.0", live(100)).yanked()]);
    assert_eq!(s.decide(), Decision::UpToDate);
}

#[test]
fn yanked_current_rolls_back_to_an_eligible_pin() {
    let s = Scenario::new(
        Some("12.0.0"),
        vec![
            rel("11.0.0", live(100)),
            rel("11.5.0", live(100)),
            rel("12.0.0", live(100)).yanked(),
        ],
    )
    .pin("11.0.0");
    assert_eq!(s.decide(), offer("11.0.0", false, true));
}

#[test]
fn yanked_pinned_current_moves_to_the_highest_eligible() {
    let s = Scenario::new(
        Some("12.0.0"),
        vec![rel("11.0.0", live(100)), rel("12.0.0", live(100)).yanked()],
    )
    .pin("12.0.0");
    assert_eq!(s.decide(), offer("11.0.0", false, true));
}

#[test]
fn yanked_status_counts_even_when_not_published_on_the_channel() {
    // A yank is global to the release; the device may run it from another channel.
    let s = Scenario::new(
        Some("12.0.0"),
        vec![rel("11.0.0", live(100)), rel("12.0.0", None).yanked()],
    );
    assert_eq!(s.decide(), offer("11.0.0", false, true));
}

#[test]
fn unknown_current_version_is_not_yanked() {
    let s = Scenario::new(Some("12.0.0"), vec![rel("11.0.0", live(100))]);
    assert_eq!(s.decide(), Decision::UpToDate);
}

// ---- rule 6 of the contract: auto-halt ----

#[test]
fn should_halt_boundaries() {
    // Exactly 10 reports, exactly 20% failed.
    assert!(should_halt(8, 2));
    assert!(!should_halt(9, 1));
    // 22% failed but only 9 reports.
    assert!(!should_halt(7, 2));
    assert!(!should_halt(0, 9));
    assert!(should_halt(0, 10));
    // 10 of 50 is 20%, 10 of 51 is not.
    assert!(should_halt(40, 10));
    assert!(!should_halt(41, 10));
    assert!(should_halt(800, 200));
    assert!(!should_halt(801, 200));
    assert!(!should_halt(0, 0));
    assert!(!should_halt(1_000_000, 0));
    assert!(should_halt(u64::MAX, u64::MAX));
    assert!(!should_halt(u64::MAX, 1));
}

// ---- properties ----

fn version_strategy() -> impl Strategy<Value = Version> {
    (1u64..4, 0u64..4, prop::bool::weighted(0.15)).prop_map(|(major, minor, pre)| {
        v(&if pre {
            format!("{major}.{minor}.0-beta.1")
        } else {
            format!("{major}.{minor}.0")
        })
    })
}

fn rollout_strategy() -> impl Strategy<Value = Option<RolloutState>> {
    prop::option::weighted(
        0.85,
        (0u8..=100, prop::bool::weighted(0.2)).prop_map(|(percent, paused)| RolloutState {
            percent,
            paused,
            held: false,
        }),
    )
}

fn scenario_strategy() -> impl Strategy<Value = Scenario> {
    let releases = prop::collection::btree_map(
        version_strategy(),
        (
            prop::bool::weighted(0.9),
            prop::bool::weighted(0.15),
            rollout_strategy(),
        ),
        0..7,
    )
    .prop_map(|m| {
        m.into_iter()
            .map(|(version, (has_platform, yanked, rollout))| Rel {
                version,
                has_platform,
                yanked,
                rollout,
            })
            .collect::<Vec<_>>()
    });
    (
        "[a-z0-9-]{1,36}",
        prop::option::weighted(0.85, version_strategy()),
        prop::option::weighted(0.25, version_strategy()),
        prop::option::weighted(0.3, version_strategy()),
        releases,
    )
        .prop_map(|(device_id, current, pin, min, releases)| Scenario {
            device_id,
            current,
            pin,
            min,
            releases,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn monotonic_in_percent(s in scenario_strategy(), index in any::<prop::sample::Index>(), raise in 0u8..=100) {
        prop_assume!(!s.releases.is_empty());
        let i = index.index(s.releases.len());
        let mut wider = s.clone();
        if let Some(r) = wider.releases[i].rollout.as_mut() {
            r.percent = r.percent.saturating_add(raise).min(100);
        }
        let mut all_wider = s.clone();
        for r in all_wider.releases.iter_mut().filter_map(|r| r.rollout.as_mut()) {
            r.percent = r.percent.saturating_add(raise).min(100);
        }
        if let Some(before) = offered(&s.decide()) {
            for after in [wider.decide(), all_wider.decide()] {
                let after = offered(&after);
                prop_assert!(after.is_some_and(|a| a >= before), "{before} then {after:?}");
            }
        }
    }

    #[test]
    fn never_a_downgrade_unless_rollback_of_a_yanked_version(s in scenario_strategy()) {
        let current_yanked = s.current.as_ref().is_some_and(|c| s.releases.iter().any(|r| r.yanked && &r.version == c));
        if let Decision::Offer { version, rollback, .. } = s.decide() {
            prop_assert!(s.is_eligible(&version), "offered ineligible {version}");
            match &s.current {
                None => prop_assert!(!rollback),
                Some(current) => {
                    prop_assert!(&version != current);
                    prop_assert_eq!(rollback, &version < current);
                    prop_assert!(!rollback || current_yanked);
                }
            }
        }
    }

    #[test]
    fn paused_rollouts_offer_nothing_through_rule_3(mut s in scenario_strategy()) {
        for r in s.releases.iter_mut().filter_map(|r| r.rollout.as_mut()) {
            r.paused = true;
        }
        let below_min = matches!((&s.current, &s.min), (Some(c), Some(m)) if c < m);
        let current_yanked = s.current.as_ref().is_some_and(|c| s.releases.iter().any(|r| r.yanked && &r.version == c));
        if s.pin.is_none() && !below_min && !current_yanked {
            prop_assert_eq!(s.decide(), Decision::UpToDate);
        }
    }

    #[test]
    fn an_eligible_pin_wins(s in scenario_strategy()) {
        let Some(pin) = s.pin.clone() else { return Ok(()) };
        let below_min = matches!((&s.current, &s.min), (Some(c), Some(m)) if c < m);
        let meets_floor = s.min.as_ref().is_none_or(|m| &pin >= m);
        let above_current = s.current.as_ref().is_none_or(|c| &pin > c);
        if s.is_eligible(&pin) && (!below_min || meets_floor) && above_current {
            let decision = s.decide();
            prop_assert_eq!(offered(&decision), Some(&pin));
        }
        if !s.is_eligible(&pin) && !below_min {
            let current_yanked = s.current.as_ref().is_some_and(|c| s.releases.iter().any(|r| r.yanked && &r.version == c));
            if !current_yanked {
                prop_assert_eq!(s.decide(), Decision::UpToDate);
            }
        }
    }

    #[test]
    fn mandatory_exactly_below_min_when_something_higher_is_eligible(s in scenario_strategy()) {
        let below_min = matches!((&s.current, &s.min), (Some(c), Some(m)) if c < m);
        let higher_exists = s.current.as_ref().is_some_and(|c| {
            s.releases.iter().any(|r| &r.version > c && s.is_eligible(&r.version))
        });
        match s.decide() {
            Decision::Offer { version, mandatory, .. } => {
                prop_assert_eq!(mandatory, below_min && s.current.as_ref().is_some_and(|c| &version > c));
                if mandatory {
                    prop_assert!(higher_exists);
                }
            }
            Decision::UpToDate => prop_assert!(!(below_min && higher_exists)),
        }
    }

    #[test]
    fn order_of_releases_does_not_matter(s in scenario_strategy()) {
        let mut reversed = s.clone();
        reversed.releases.reverse();
        prop_assert_eq!(s.decide(), reversed.decide());
    }
}

/// Rule 6's hold of one org: the held release is offered to no device of that org, as if paused,
/// and the release before it is still offered.
#[test]
fn a_release_held_for_the_org_is_offered_to_none_of_its_devices() {
    let (one, two) = (v("1.0.0"), v("2.0.0"));
    let stable = Channel::parse("stable").unwrap();
    let held = Some(RolloutState {
        percent: 100,
        paused: false,
        held: true,
    });
    for n in 0..50 {
        let id = format!("dev_{n}");
        let decision = decide_update(
            &DeviceFacts {
                device_id: &id,
                platform: Platform::LinuxX86_64,
                current: None,
            },
            &OrgPolicy {
                channel: &stable,
                pinned_version: None,
            },
            &ChannelPolicy { min_version: None },
            &[
                Candidate {
                    version: &one,
                    has_platform: true,
                    yanked: false,
                    rollout: live(100),
                },
                Candidate {
                    version: &two,
                    has_platform: true,
                    yanked: false,
                    rollout: held,
                },
            ],
        );
        assert_eq!(
            decision,
            Decision::Offer {
                version: one.clone(),
                mandatory: false,
                rollback: false
            }
        );
    }
}
