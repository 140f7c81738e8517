//! An org's configuration as partners send it: the TOML file of `depot org set --file` and the
//! JSON body of the API, both validated into an `OrgConfig`. Nothing may panic, and a valid
//! configuration survives a trip through its own JSON.

#![no_main]

use depot::org::{OrgConfig, OrgConfigInput, OrgFile};
use libfuzzer_sys::fuzz_target;

fn validate(input: OrgConfigInput) {
    if let Ok(config) = OrgConfig::try_from(input) {
        let json = serde_json::to_string(&config).expect("a config serialises");
        let again: OrgConfigInput = serde_json::from_str(&json).expect("its JSON reads back");
        assert!(OrgConfig::try_from(again).is_ok(), "{json}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let Ok(text) = std::str::from_utf8(rest) else {
            return;
        };
        if let Ok(file) = OrgFile::parse(text) {
            validate(file.config);
        }
    } else if let Ok(input) = serde_json::from_slice::<OrgConfigInput>(rest) {
        validate(input);
    }
});
