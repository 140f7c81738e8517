//! The JSON bodies devices send (enrollment, update check, report), read into the request types
//! the server uses and their fields parsed as the handlers parse them.

#![no_main]

use depot::domain::{Platform, RegistrationKey, Version};
use depot::server::routes::fleet::{DeviceReport, UpdateCheck};
use depot::service::fleet::EnrollRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(check) = serde_json::from_slice::<UpdateCheck>(data) {
        let _ = Platform::parse(&check.platform);
        let _ = check.current_version.as_deref().map(Version::parse);
    }
    if let Ok(enroll) = serde_json::from_slice::<EnrollRequest>(data) {
        let _ = RegistrationKey::parse(&enroll.registration_key);
        let _ = Platform::parse(&enroll.platform);
    }
    if let Ok(report) = serde_json::from_slice::<DeviceReport>(data) {
        let _ = report.version.as_deref().map(Version::parse);
    }
});
