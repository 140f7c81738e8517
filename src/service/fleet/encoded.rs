//! Text that every update answer repeats, encoded as a JSON string once, when it is made,
//! instead of escaped again for every request. The signed manifest is most of an answer's bytes
//! and, being JSON inside JSON, full of quotes to escape.

use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use std::sync::Arc;

/// A string and its JSON string literal; cloning shares both.
#[derive(Clone)]
pub struct JsonText {
    text: Arc<str>,
    literal: Arc<RawValue>,
}

impl JsonText {
    pub fn new(text: &str) -> Self {
        // Encoding a string cannot fail, and its encoding is a valid JSON value: the fallback
        // is never taken.
        let literal = serde_json::to_string(text)
            .ok()
            .and_then(|encoded| RawValue::from_string(encoded).ok())
            .unwrap_or_default();
        JsonText {
            text: text.into(),
            literal: Arc::from(literal),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl std::ops::Deref for JsonText {
    type Target = str;
    fn deref(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Debug for JsonText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.text, f)
    }
}

impl PartialEq for JsonText {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for JsonText {}

impl Serialize for JsonText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // serde_json (to text or to a `Value`) takes a raw value as it is; answers are only
        // ever JSON.
        self.literal.serialize(serializer)
    }
}

/// A signed manifest as answers carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedManifest {
    pub json: JsonText,
    pub minisig: JsonText,
}

impl From<&crate::updates::SignedManifest> for EncodedManifest {
    fn from(signed: &crate::updates::SignedManifest) -> Self {
        EncodedManifest {
            json: JsonText::new(&signed.json),
            minisig: JsonText::new(&signed.minisig),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_as_the_string_it_holds() {
        for text in ["", "plain", "{\"a\":\"b\\\\c\"}\n\u{1}é", "\u{2028}"] {
            let encoded = JsonText::new(text);
            let json = serde_json::to_string(&encoded).unwrap();
            assert_eq!(json, serde_json::to_string(text).unwrap());
            assert_eq!(serde_json::from_str::<String>(&json).unwrap(), text);
            assert_eq!(
                serde_json::to_value(&encoded).unwrap(),
                serde_json::Value::String(text.into())
            );
            assert_eq!(encoded.as_str(), text);
        }
    }
}
