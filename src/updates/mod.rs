//! Pushed client updates, the parts both sides share (CONTRACT 6): the update decision and the
//! signed release manifest.
//!
//! [`decide_update`] says which version a device is offered; the server calls it on every
//! update check. [`ReleaseManifest`] is the signed statement of an org's releases for one
//! platform and channel that travels with every answer, and [`check_offer`] is how the agent
//! decides whether to believe an offer.
//!
//! Everything here is pure: no I/O, no clock (time is passed in as unix seconds), no
//! randomness, no logging. It never panics on anything a server, a device or the network sends.

mod decision;
mod halt;
mod manifest;

pub use decision::{
    bucket, decide_update, should_halt, Candidate, ChannelPolicy, Decision, DeviceFacts, OrgPolicy,
    RolloutState, HALT_FAILURE_PERCENT, HALT_MIN_REPORTS,
};
pub use halt::{
    channel_must_pause, hold_reason, org_must_hold, pause_reason, OrgTally, HOLD_FAILURE_PERCENT,
    HOLD_MIN_FAILED, PAUSE_MIN_FAILED, PAUSE_MIN_ORGS,
};
pub use manifest::{
    check_offer, Expectation, ManifestError, ManifestRelease, ManifestState, OfferView,
    ReleaseManifest, Result, SignedManifest, MAX_CLOCK_SKEW_SECS, MAX_MANIFEST_BYTES,
    MAX_MANIFEST_VALIDITY_SECS, RESIGN_MARGIN_SECS,
};
