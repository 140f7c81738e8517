//! `depot-package.json`, the entry that tells a reader of a package (the agent, an admin with
//! `unzip -p`) which org, release and platform it was built for, and which payload it carries.

use crate::domain::{OrgCode, Platform, Sha256, Version};
use serde::{Deserialize, Serialize};

/// The contents of `depot-package.json` (CONTRACT 4). Field order here is the order in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageDescriptor {
    pub org: OrgCode,
    pub version: Version,
    pub platform: Platform,
    pub payload: PayloadDescriptor,
    /// Digest of the org configuration and overlay files the package was built from.
    pub config_sha256: Sha256,
    pub server_url: String,
}

/// The payload a package carries, as its zip root holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadDescriptor {
    pub name: String,
    pub sha256: Sha256,
    pub size: u64,
}

impl PackageDescriptor {
    /// The descriptor's entry name in every package.
    pub const FILE_NAME: &'static str = "depot-package.json";

    /// Pretty JSON with a final newline, the same bytes for the same descriptor: serde writes the
    /// fields in declaration order and none of them is a map.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        // Every field serializes to a JSON string or number, which cannot fail into a Vec.
        let mut json = serde_json::to_vec_pretty(self)
            .expect("a PackageDescriptor is strings and numbers, which always serialize");
        json.push(b'\n');
        json
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_field_order_and_round_trip() {
        let descriptor = PackageDescriptor {
            org: OrgCode::parse("physics").unwrap(),
            version: Version::parse("11.2.1").unwrap(),
            platform: "windows-x86_64".parse().unwrap(),
            payload: PayloadDescriptor {
                name: "client.msi".into(),
                sha256: Sha256::digest(b"payload"),
                size: 1234,
            },
            config_sha256: Sha256::digest(b"config"),
            server_url: "https://depot.example.edu".into(),
        };
        let bytes = descriptor.to_json_bytes();
        let text = std::str::from_utf8(&bytes).unwrap();
        let expected = format!(
            r#"{{
  "org": "physics",
  "version": "11.2.1",
  "platform": "windows-x86_64",
  "payload": {{
    "name": "client.msi",
    "sha256": "{}",
    "size": 1234
  }},
  "config_sha256": "{}",
  "server_url": "https://depot.example.edu"
}}
"#,
            Sha256::digest(b"payload"),
            Sha256::digest(b"config")
        );
        assert_eq!(text, expected);
        let back: PackageDescriptor = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, descriptor);
        assert_eq!(back.to_json_bytes(), bytes);
    }
}
