//! Text people read back to identify something (hostnames, user names, OS versions, org and
//! token names, contacts, release notes): it must look like what it is. Bidi controls (U+202E
//! turns `exe.gpj` around), zero-width characters and every other format character (Unicode
//! category Cf) are invisible or reorder what is shown, so they are refused at input.

use super::{DomainError, Result};

/// Unicode 15's category Cf, as inclusive ranges, plus the line and paragraph separators
/// (U+2028, U+2029), which break a shown line without being a control character.
const HIDDEN: &[(u32, u32)] = &[
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x2028, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
];

/// What the check's error says.
pub const HIDDEN_RULE: &str = "must not contain invisible or text-direction characters \
     (U+202E, U+200B-U+200F, U+2066-U+2069, U+FEFF and other format characters); type it without them";

/// A format character: invisible, or changing the direction of what follows.
pub fn is_hidden(c: char) -> bool {
    let c = c as u32;
    HIDDEN.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
}

/// The first hidden character of `value`, if any.
pub fn find_hidden(value: &str) -> Option<char> {
    value.chars().find(|&c| is_hidden(c))
}

/// Refuses a value that holds a hidden character; the error shows the value escaped, so the
/// character can be seen.
pub fn check_shown_text(field: &'static str, value: &str) -> Result<()> {
    match find_hidden(value) {
        Some(_) => Err(DomainError::new(field, value, HIDDEN_RULE)),
        None => Ok(()),
    }
}

/// `value` without its hidden characters, for text depot records but did not type (a device's
/// event message).
pub fn strip_hidden(value: &str) -> String {
    value.chars().filter(|&c| !is_hidden(c)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bidi_and_invisible_characters() {
        for c in [
            '\u{202E}',
            '\u{202A}',
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{200E}',
            '\u{200F}',
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}',
            '\u{FEFF}',
            '\u{00AD}',
            '\u{061C}',
            '\u{2060}',
            '\u{E0041}',
            '\u{2028}',
        ] {
            let value = format!("lab{c}gpj.exe");
            let err = check_shown_text("hostname", &value).unwrap_err();
            assert!(err.to_string().contains("invisible"), "{err}");
            assert!(
                !err.to_string().contains(c),
                "the message escapes it: {err}"
            );
        }
    }

    #[test]
    fn accepts_visible_text_of_any_script() {
        for ok in [
            "lab-7.physics.example.edu",
            "Zoë Müller",
            "物理学系",
            "Ελληνικά",
            "macOS 14.5 (23F79)",
            "Łódź",
            "عربي",
        ] {
            assert!(check_shown_text("name", ok).is_ok(), "{ok}");
        }
        assert_eq!(strip_hidden("a\u{202E}b\u{200B}c"), "abc");
    }
}
