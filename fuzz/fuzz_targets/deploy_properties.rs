//! The agent's `deploy.properties` (Java properties dialect) and depot's keys in it.

#![no_main]

use depot::agent::{DeployProperties, Properties};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(props) = Properties::parse_bytes(data) {
        let _ = DeployProperties::from_properties(&props);
        for (key, value) in props.iter() {
            assert_eq!(props.get(key), Some(value));
        }
    }
});
