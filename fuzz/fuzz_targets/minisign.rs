//! Public key text, minisign signatures and `SHA256SUMS`: arbitrary text is refused without a
//! panic, and an edited signature of a known message never verifies with changed meaning.

#![no_main]

use depot::signing::{parse_sha256sums, PublicKey, SigningKey};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const MESSAGE: &[u8] = b"depot fuzz message";

struct Fixture {
    key: SigningKey,
    public: PublicKey,
    minisig: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let key = SigningKey::generate();
        let minisig = key.sign(MESSAGE, "timestamp:1700000000\tfile:message");
        Fixture {
            public: key.public_key(),
            key,
            minisig,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let fixture = fixture();
    match mode % 4 {
        0 => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            if let Ok(key) = PublicKey::parse(text) {
                let again = PublicKey::parse(&key.to_line()).expect("a printed key parses");
                assert_eq!(again.to_line(), key.to_line());
                assert_eq!(
                    PublicKey::parse(&key.to_file_text())
                        .map(|k| k.to_line())
                        .ok(),
                    Some(key.to_line())
                );
            }
        }
        1 => {
            // Arbitrary signature text over the known message: a forgery never verifies.
            let text = String::from_utf8_lossy(rest);
            if text != fixture.minisig {
                let _ = fixture.public.verify(MESSAGE, &text);
            }
        }
        2 => {
            // Byte edits of a real signature: (position, xor) pairs.
            let mut edited = fixture.minisig.clone().into_bytes();
            for pair in rest.chunks_exact(2) {
                let at = usize::from(pair[0]) * edited.len() / 256;
                edited[at] ^= pair[1];
            }
            let Ok(text) = String::from_utf8(edited) else {
                return;
            };
            if let Ok(comment) = fixture.public.verify(MESSAGE, &text) {
                // Only edits that the format ignores may pass, and they keep the trusted comment.
                assert_eq!(comment, "timestamp:1700000000\tfile:message", "{text:?}");
            }
            let _ = fixture.key.public_key().verify(b"another message", &text);
        }
        _ => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            if let Ok(entries) = parse_sha256sums(text) {
                let mut names = std::collections::HashSet::new();
                for (name, _) in &entries {
                    assert!(!name.is_empty() && !name.contains(['/', '\\']), "{name:?}");
                    assert!(name != "." && name != "..", "{name:?}");
                    assert!(names.insert(name.clone()), "{name:?} listed twice");
                }
            }
        }
    }
});
