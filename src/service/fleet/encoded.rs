//! Text that every update answer repeats, encoded as a JSON string once, when it is made,
//! instead of escaped again for every request. The signed manifest is most of an answer's bytes
//! and, being JSON inside JSON, full of quotes to escape.
//!
//! Whole answers are encoded once too: an answer is one of a few (up to date, or an offer of
//! one release), the same for every device of an org and platform that gets that decision, so
//! each is kept as bytes beside the signed manifest it carries and handed to every such device.

use super::UpdateAnswer;
use crate::updates::Decision;
use bytes::Bytes;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use std::sync::{Arc, RwLock};

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

/// A signed manifest as answers carry it, and the answers made with it so far. Cloning shares
/// it (one reference count: every update check takes one).
#[derive(Debug, Clone)]
pub struct EncodedManifest(Arc<Encoded>);

#[derive(Debug)]
pub struct Encoded {
    pub json: JsonText,
    pub minisig: JsonText,
    /// A new signature starts with none: an answer never outlives the manifest it carries.
    answers: AnswerBodies,
}

impl std::ops::Deref for EncodedManifest {
    type Target = Encoded;
    fn deref(&self) -> &Encoded {
        &self.0
    }
}

impl From<&crate::updates::SignedManifest> for EncodedManifest {
    fn from(signed: &crate::updates::SignedManifest) -> Self {
        EncodedManifest(Arc::new(Encoded {
            json: JsonText::new(&signed.json),
            minisig: JsonText::new(&signed.minisig),
            answers: AnswerBodies::default(),
        }))
    }
}

/// An update answer as JSON; cloning shares the bytes.
#[derive(Debug, Clone)]
pub struct EncodedAnswer {
    pub json: Bytes,
}

/// The answers made with one signed manifest, by decision, for one snapshot generation (an
/// offer's notes and package come from the snapshot, which may change while the manifest,
/// saying the same, is kept).
#[derive(Debug, Default)]
struct AnswerBodies {
    made: RwLock<Made>,
}

#[derive(Debug, Default)]
struct Made {
    generation: u64,
    answers: Vec<(Decision, EncodedAnswer)>,
}

/// An org has a handful of releases on a channel, each offered plainly, as mandatory or as a
/// rollback: past this many something is odd, and answers are made afresh instead of kept.
const MAX_KEPT_ANSWERS: usize = 64;

impl EncodedManifest {
    /// The answer for `decision` in snapshot `generation`, made by `make` the first time.
    pub fn answer(
        &self,
        generation: u64,
        decision: &Decision,
        make: impl FnOnce() -> super::Result<UpdateAnswer>,
    ) -> super::Result<EncodedAnswer> {
        let made = &self.answers.made;
        if let Ok(made) = made.read() {
            if made.generation == generation {
                if let Some((_, answer)) = made.answers.iter().find(|(d, _)| d == decision) {
                    return Ok(answer.clone());
                }
            }
        }
        let answer = make()?;
        let literals = self.json.literal.get().len() + self.minisig.literal.get().len();
        let mut json = Vec::with_capacity(literals + 1024);
        serde_json::to_writer(&mut json, &answer).map_err(|e| super::ServiceError::Io {
            context: "encode an update answer".into(),
            source: e.into(),
        })?;
        let encoded = EncodedAnswer {
            json: Bytes::from(json),
        };
        let mut made = made.write().unwrap_or_else(|p| p.into_inner());
        // A request still holding an older snapshot does not push out the newer answers.
        if made.generation < generation || made.answers.is_empty() {
            *made = Made {
                generation,
                answers: Vec::new(),
            };
        }
        if made.generation == generation
            && made.answers.len() < MAX_KEPT_ANSWERS
            && !made.answers.iter().any(|(d, _)| d == decision)
        {
            made.answers.push((decision.clone(), encoded.clone()));
        }
        Ok(encoded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Version;
    use crate::updates::SignedManifest;
    use std::cell::Cell;

    fn manifest(text: &str) -> EncodedManifest {
        EncodedManifest::from(&SignedManifest {
            json: text.into(),
            minisig: format!("sig of {text}"),
        })
    }

    fn offer_of(version: &str) -> Decision {
        Decision::Offer {
            version: Version::parse(version).unwrap(),
            mandatory: false,
            rollback: false,
        }
    }

    /// An answer whose notes say which call made it.
    fn make<'a>(
        signed: &'a EncodedManifest,
        calls: &'a Cell<u32>,
    ) -> impl FnOnce() -> super::super::Result<UpdateAnswer> + 'a {
        move || {
            calls.set(calls.get() + 1);
            Ok(UpdateAnswer {
                offer: Some(super::super::Offer {
                    version: "1.1.0".into(),
                    mandatory: false,
                    rollback: false,
                    notes: format!("made by call {}", calls.get()),
                    package: Arc::new(super::super::PackageOffer {
                        url: "u".into(),
                        sha256: "s".into(),
                        size: 1,
                        minisig: "m".into(),
                    }),
                }),
                manifest: signed.json.clone(),
                manifest_minisig: signed.minisig.clone(),
            })
        }
    }

    #[test]
    fn an_answer_is_made_once_per_decision_generation_and_signature() {
        let signed = manifest("{\"serial\":1}");
        let calls = Cell::new(0);
        let first = signed
            .answer(7, &offer_of("1.1.0"), make(&signed, &calls))
            .unwrap();
        let again = signed
            .answer(7, &offer_of("1.1.0"), make(&signed, &calls))
            .unwrap();
        assert_eq!(calls.get(), 1);
        assert_eq!(
            first.json.as_ptr(),
            again.json.as_ptr(),
            "the bytes are shared"
        );
        let made_again = make(&signed, &Cell::new(0))().unwrap();
        assert_eq!(first.json, serde_json::to_vec(&made_again).unwrap());
        let value: serde_json::Value = serde_json::from_slice(&first.json).unwrap();
        assert_eq!(value["manifest"], "{\"serial\":1}");
        assert_eq!(value["offer"]["notes"], "made by call 1");

        // Another decision, another answer; both kept.
        signed
            .answer(7, &Decision::UpToDate, make(&signed, &calls))
            .unwrap();
        signed
            .answer(7, &offer_of("1.1.0"), make(&signed, &calls))
            .unwrap();
        assert_eq!(calls.get(), 2);

        // A newer snapshot may say other notes: made again. An older one does not push it out.
        let newer = signed
            .answer(8, &offer_of("1.1.0"), make(&signed, &calls))
            .unwrap();
        assert_eq!(calls.get(), 3);
        assert!(std::str::from_utf8(&newer.json)
            .unwrap()
            .contains("made by call 3"));
        signed
            .answer(7, &offer_of("1.1.0"), make(&signed, &calls))
            .unwrap();
        assert_eq!(calls.get(), 4);
        signed
            .answer(8, &offer_of("1.1.0"), make(&signed, &calls))
            .unwrap();
        assert_eq!(calls.get(), 4);

        // A new signature starts afresh, even for the same text.
        let resigned = manifest("{\"serial\":1}");
        resigned
            .answer(8, &offer_of("1.1.0"), make(&resigned, &calls))
            .unwrap();
        assert_eq!(calls.get(), 5);
    }

    #[test]
    fn a_failed_answer_is_not_kept() {
        let signed = manifest("m");
        let error = signed.answer(1, &Decision::UpToDate, || {
            Err(super::super::ServiceError::NotFound("package".into()))
        });
        assert!(error.is_err());
        let calls = Cell::new(0);
        signed
            .answer(1, &Decision::UpToDate, make(&signed, &calls))
            .unwrap();
        assert_eq!(calls.get(), 1);
    }

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
