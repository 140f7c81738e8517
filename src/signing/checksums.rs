//! `SHA256SUMS` files in GNU coreutils format (`<hex>  <file>` a line), as `sha256sum -c` reads
//! them. Parsing treats the text as hostile: the agent and `depot verify` read it, and a name
//! in it must never be able to point outside the directory it describes.

use std::collections::HashSet;

use super::{Result, SigningError};
use crate::domain::Sha256;

/// The `SHA256SUMS` text for `files`: one `<hex>  <name>` line each, sorted by name (bytewise,
/// so the text does not depend on a locale).
///
/// Names are expected to be plain file names; one holding a backslash or a line break is
/// written in coreutils' escaped form (a leading `\`), which `sha256sum -c` reads but
/// [`parse_sha256sums`] refuses.
pub fn sha256sums(files: &[(String, Sha256)]) -> String {
    let mut sorted: Vec<&(String, Sha256)> = files.iter().collect();
    sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut out = String::with_capacity(sorted.len() * 100);
    for (name, sha) in sorted {
        if name.contains(['\\', '\n', '\r']) {
            let escaped = name
                .replace('\\', "\\\\")
                .replace('\n', "\\n")
                .replace('\r', "\\r");
            out.push_str(&format!("\\{sha}  {escaped}\n"));
        } else {
            out.push_str(&format!("{sha}  {name}\n"));
        }
    }
    out
}

/// Parses a `SHA256SUMS` text. Each line is `<64 hex>  <name>` (or `<64 hex> *<name>`,
/// coreutils' binary-mode marker); a final newline and CRLF line ends are accepted. Refuses
/// malformed or empty lines, escaped lines, names that are empty, `.`, contain `/`, `\`, `..`
/// or control characters, and names listed twice. Returns the entries in file order.
pub fn parse_sha256sums(text: &str) -> Result<Vec<(String, Sha256)>> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    if body.is_empty() {
        return Ok(Vec::new());
    }
    let mut seen = HashSet::new();
    let mut entries = Vec::new();
    for (i, line) in body.split('\n').enumerate() {
        let line_no = i + 1;
        let bad = |reason: &str| SigningError::MalformedChecksums {
            line: line_no,
            reason: reason.to_string(),
        };
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with('\\') {
            return Err(bad("escaped file names are not accepted"));
        }
        let (hex, rest) = line
            .split_at_checked(64)
            .ok_or_else(|| bad("expected 64 hex digits, two spaces and a file name"))?;
        let sha = Sha256::parse(hex).map_err(|_| bad("the checksum is not 64 hex digits"))?;
        let name = rest
            .strip_prefix("  ")
            .or_else(|| rest.strip_prefix(" *"))
            .ok_or_else(|| bad("expected two spaces between the checksum and the file name"))?;
        check_name(name)
            .map_err(|reason| bad(&format!("file name {}: {reason}", shorten(name))))?;
        if !seen.insert(name) {
            return Err(bad(&format!("file name {} is listed twice", shorten(name))));
        }
        entries.push((name.to_string(), sha));
    }
    Ok(entries)
}

fn check_name(name: &str) -> std::result::Result<(), &'static str> {
    if name.is_empty() || name == "." {
        return Err("is empty");
    }
    if name.contains(['/', '\\']) {
        return Err("must not contain '/' or '\\'");
    }
    if name.contains("..") {
        return Err("must not contain \"..\"");
    }
    if name.chars().any(char::is_control) {
        return Err("must not contain control characters");
    }
    Ok(())
}

/// A name quoted for an error message, cut so that a hostile file cannot flood a log line.
fn shorten(name: &str) -> String {
    match name.char_indices().nth(64) {
        Some((cut, _)) => format!("{:?}…", &name[..cut]),
        None => format!("{name:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sha(s: &str) -> Sha256 {
        Sha256::digest(s.as_bytes())
    }

    #[test]
    fn format_is_sorted_coreutils() {
        let files = vec![
            ("physics-11.2.1-windows-x86_64.zip".to_string(), sha("b")),
            ("physics-11.2.1-linux-x86_64.zip".to_string(), sha("a")),
        ];
        let text = sha256sums(&files);
        assert_eq!(
            text,
            format!(
                "{}  physics-11.2.1-linux-x86_64.zip\n{}  physics-11.2.1-windows-x86_64.zip\n",
                sha("a"),
                sha("b")
            )
        );
        let mut expected = files.clone();
        expected.sort();
        assert_eq!(parse_sha256sums(&text).unwrap(), expected);
        assert_eq!(sha256sums(&[]), "");
        assert_eq!(parse_sha256sums("").unwrap(), vec![]);
    }

    #[test]
    fn accepts_binary_marker_upper_case_and_crlf() {
        let h = sha("x");
        let text = format!("{}  a.zip\r\n{} *b.zip", h.to_hex().to_uppercase(), h);
        assert_eq!(
            parse_sha256sums(&text).unwrap(),
            vec![("a.zip".to_string(), h), ("b.zip".to_string(), h)]
        );
    }

    #[test]
    fn escaped_names_are_written_as_coreutils_does() {
        let text = sha256sums(&[("a\\b\nc".to_string(), sha("x"))]);
        assert_eq!(text, format!("\\{}  a\\\\b\\nc\n", sha("x")));
        assert!(parse_sha256sums(&text).is_err());
    }

    #[test]
    fn refusals_name_the_line() {
        let h = sha("x");
        for (text, line) in [
            (format!("{h}  ok.zip\n{h}  ../etc/passwd\n"), 2),
            (format!("{h}  a/b.zip"), 1),
            (format!("{h}  a\\b.zip"), 1),
            (format!("{h}  .."), 1),
            (format!("{h}  ."), 1),
            (format!("{h}  "), 1),
            (format!("{h}  a\tb"), 1),
            (format!("{h} a.zip"), 1),
            (format!("{h}\ta.zip"), 1),
            (format!("{}  a.zip", &h.to_hex()[1..]), 1),
            (format!("{h}  a.zip\n\n{h}  b.zip"), 2),
            (format!("{h}  a.zip\n{h}  a.zip\n"), 2),
            (format!("\\{h}  a.zip"), 1),
            ("SHA256 (a.zip) = abc".to_string(), 1),
            ("\n".to_string() + &format!("{h}  a.zip"), 1),
        ] {
            match parse_sha256sums(&text) {
                Err(SigningError::MalformedChecksums { line: l, .. }) => {
                    assert_eq!(l, line, "{text:?}")
                }
                other => panic!("{text:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn hostile_names_are_shortened_in_messages() {
        let text = format!("{}  ../{}", sha("x"), "a".repeat(10_000));
        let msg = parse_sha256sums(&text).unwrap_err().to_string();
        assert!(msg.len() < 300, "{msg}");
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "(?s).{0,300}") {
            let _ = parse_sha256sums(&text);
        }

        #[test]
        fn line_shaped_noise_never_panics(lines in proptest::collection::vec("[0-9a-fA-F]{60,66}[ *\\\\]{0,3}[^\n]{0,20}", 0..5)) {
            let _ = parse_sha256sums(&lines.join("\n"));
        }

        #[test]
        fn written_then_parsed_round_trips(names in proptest::collection::btree_set("[a-z0-9][a-z0-9._-]{0,40}", 0..10)) {
            let files: Vec<(String, Sha256)> = names
                .iter()
                .filter(|n| !n.contains(".."))
                .map(|n| (n.clone(), Sha256::digest(n.as_bytes())))
                .collect();
            let parsed = parse_sha256sums(&sha256sums(&files)).unwrap();
            prop_assert_eq!(parsed, files);
        }
    }
}
