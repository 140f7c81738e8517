//! `deploy.properties`: the Java properties file an installer package carries beside its payload
//! (CONTRACT 3, FIELD-NOTES), and the depot keys the agent reads from it at enrollment.
//!
//! The parser follows `java.util.Properties.load`: natural lines end in LF, CR or CRLF; leading
//! white space is skipped; `#` and `!` start comment lines; a line ending in an odd number of
//! backslashes continues on the next one; the key ends at the first unescaped `=`, `:` or white
//! space; `\t \n \r \f \uXXXX` are escapes and any other escaped character stands for itself;
//! a repeated key keeps its last value. Input is UTF-8 when it is valid UTF-8, ISO-8859-1
//! otherwise (as Java's own resource-bundle loader does). The file comes from wherever the
//! installer was unpacked, so the parser caps its input and never panics.

use crate::domain::{OrgCode, Platform, RegistrationKey, Sha256, Version};
use crate::signing::PublicKey;
use std::collections::BTreeMap;

/// A `deploy.properties` larger than this is not one depot wrote.
pub const MAX_PROPERTIES_BYTES: usize = 64 * 1024;

/// Why a properties text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PropertiesError {
    #[error(
        "the properties file is {size} bytes, more than the {max} a deploy.properties may have"
    )]
    TooLarge { size: usize, max: usize },
    #[error("properties line {line}: malformed \\uXXXX escape")]
    BadUnicodeEscape { line: usize },
    #[error("properties key {key}: {reason}")]
    BadValue { key: &'static str, reason: String },
}

/// The key/value pairs of a properties text; a repeated key keeps its last value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties(BTreeMap<String, String>);

impl Properties {
    /// Parses a properties file's bytes (see the module docs for the dialect).
    pub fn parse_bytes(bytes: &[u8]) -> Result<Self, PropertiesError> {
        if bytes.len() > MAX_PROPERTIES_BYTES {
            return Err(PropertiesError::TooLarge {
                size: bytes.len(),
                max: MAX_PROPERTIES_BYTES,
            });
        }
        match std::str::from_utf8(bytes) {
            Ok(text) => Self::parse(text),
            Err(_) => Self::parse(&bytes.iter().map(|&b| char::from(b)).collect::<String>()),
        }
    }

    /// Parses a properties text (see the module docs for the dialect).
    pub fn parse(text: &str) -> Result<Self, PropertiesError> {
        if text.len() > MAX_PROPERTIES_BYTES {
            return Err(PropertiesError::TooLarge {
                size: text.len(),
                max: MAX_PROPERTIES_BYTES,
            });
        }
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut map = BTreeMap::new();
        let mut lines = NaturalLines::new(text);
        while let Some((number, first)) = lines.next() {
            let first = first.trim_start_matches(is_blank);
            if first.is_empty() || first.starts_with(['#', '!']) {
                continue;
            }
            // Join continuation lines; a continued line loses its trailing backslash and the next
            // line its leading white space.
            let mut logical = String::from(first);
            while ends_in_odd_backslashes(&logical) {
                logical.pop();
                match lines.next() {
                    Some((_, next)) => logical.push_str(next.trim_start_matches(is_blank)),
                    None => break,
                }
            }
            let (key, value) = split_key_value(&logical);
            map.insert(unescape(key, number)?, unescape(value, number)?);
        }
        Ok(Self(map))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The depot keys of a `deploy.properties`, each parsed into its domain type. Every key is
/// optional here: a flag given to `depot agent enroll` may supply what the file lacks.
#[derive(Debug, Clone, Default)]
pub struct DeployProperties {
    pub server_url: Option<String>,
    pub org: Option<OrgCode>,
    pub registration_key: Option<RegistrationKey>,
    pub channel: Option<String>,
    pub public_key: Option<PublicKey>,
    pub version: Option<Version>,
    pub platform: Option<Platform>,
    /// The payload's file name, as it sits in the package beside this file.
    pub payload: Option<String>,
    pub payload_sha256: Option<Sha256>,
}

impl DeployProperties {
    /// Reads depot's keys; an empty value counts as absent, a present but malformed one is an
    /// error naming the key.
    pub fn from_properties(props: &Properties) -> Result<Self, PropertiesError> {
        fn field<T>(
            props: &Properties,
            key: &'static str,
            parse: impl FnOnce(&str) -> Result<T, String>,
        ) -> Result<Option<T>, PropertiesError> {
            match props.get(key).map(str::trim) {
                None | Some("") => Ok(None),
                Some(raw) => parse(raw)
                    .map(Some)
                    .map_err(|reason| PropertiesError::BadValue { key, reason }),
            }
        }
        let text = |s: &str| Ok(s.to_string());
        Ok(Self {
            server_url: field(props, "DEPOT_SERVER_URL", text)?,
            org: field(props, "DEPOT_ORG", |s| {
                OrgCode::parse(s).map_err(|e| e.to_string())
            })?,
            registration_key: field(props, "DEPOT_REGISTRATION_KEY", |s| {
                RegistrationKey::parse(s).map_err(|e| e.to_string())
            })?,
            channel: field(props, "DEPOT_CHANNEL", text)?,
            public_key: field(props, "DEPOT_PUBLIC_KEY", |s| {
                PublicKey::parse(s).map_err(|e| e.to_string())
            })?,
            version: field(props, "DEPOT_VERSION", |s| {
                Version::parse(s).map_err(|e| e.to_string())
            })?,
            platform: field(props, "DEPOT_PLATFORM", |s| {
                Platform::parse(s).map_err(|e| e.to_string())
            })?,
            payload: field(props, "DEPOT_PAYLOAD", text)?,
            payload_sha256: field(props, "DEPOT_PAYLOAD_SHA256", |s| {
                Sha256::parse(s).map_err(|e| e.to_string())
            })?,
        })
    }
}

/// Java's white space inside a line: space, tab, form feed.
fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{c}')
}

fn ends_in_odd_backslashes(s: &str) -> bool {
    s.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 1
}

/// Splits a logical line (leading white space already gone) at the first unescaped `=`, `:` or
/// white space; the separator is white space, optionally one `=`/`:`, and white space again.
fn split_key_value(line: &str) -> (&str, &str) {
    let mut escaped = false;
    let mut key_end = line.len();
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '=' || c == ':' || is_blank(c) {
            key_end = i;
            break;
        }
    }
    let key = &line[..key_end];
    let rest = line[key_end..].trim_start_matches(is_blank);
    let rest = rest.strip_prefix(['=', ':']).unwrap_or(rest);
    (key, rest.trim_start_matches(is_blank))
}

fn unescape(s: &str, line: usize) -> Result<String, PropertiesError> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            // A lone trailing backslash of the file's last line: Java drops it.
            None => {}
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let unit = hex4(&mut chars).ok_or(PropertiesError::BadUnicodeEscape { line })?;
                let c = if (0xD800..0xDC00).contains(&unit) {
                    // A high surrogate must be followed by an escaped low one.
                    let low = match (chars.next(), chars.next()) {
                        (Some('\\'), Some('u')) => hex4(&mut chars),
                        _ => None,
                    }
                    .filter(|low| (0xDC00..0xE000).contains(low))
                    .ok_or(PropertiesError::BadUnicodeEscape { line })?;
                    0x10000 + ((u32::from(unit) - 0xD800) << 10) + (u32::from(low) - 0xDC00)
                } else {
                    u32::from(unit)
                };
                out.push(char::from_u32(c).ok_or(PropertiesError::BadUnicodeEscape { line })?);
            }
            Some(other) => out.push(other),
        }
    }
    Ok(out)
}

fn hex4(chars: &mut std::str::Chars<'_>) -> Option<u16> {
    let mut unit = 0u16;
    for _ in 0..4 {
        let digit = chars.next()?.to_digit(16)?;
        unit = unit << 4 | digit as u16;
    }
    Some(unit)
}

/// The natural lines of a text with their 1-based numbers; LF, CR and CRLF all end a line.
struct NaturalLines<'a> {
    rest: &'a str,
    number: usize,
}

impl<'a> NaturalLines<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            rest: text,
            number: 0,
        }
    }
}

impl<'a> Iterator for NaturalLines<'a> {
    type Item = (usize, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        self.number += 1;
        let (line, rest) = match self.rest.find(['\n', '\r']) {
            Some(i) => {
                let skip = if self.rest[i..].starts_with("\r\n") {
                    2
                } else {
                    1
                };
                (&self.rest[..i], &self.rest[i + skip..])
            }
            None => (self.rest, ""),
        };
        self.rest = rest;
        Some((self.number, line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(text: &str) -> Vec<(String, String)> {
        Properties::parse(text)
            .unwrap()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_what_the_template_writes() {
        let text = "# Deployment settings for Physics (physics)\r\n#\n\nCP_SILENT=true\n\
                    DEPOT_SERVER_URL=https\\://depot.example.edu\nDEPOT_ORG=physics\n\
                    DEPOT_PUBLIC_KEY=RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3\n";
        let props = Properties::parse(text).unwrap();
        assert_eq!(props.get("CP_SILENT"), Some("true"));
        assert_eq!(
            props.get("DEPOT_SERVER_URL"),
            Some("https://depot.example.edu")
        );
        assert_eq!(props.len(), 4);
    }

    #[test]
    fn separators_comments_and_whitespace() {
        assert_eq!(
            parse("  a = 1\nb:2\nc 3\nd\n! bang\n\t# hash\ne=\nf = = x\n"),
            pairs(&[
                ("a", "1"),
                ("b", "2"),
                ("c", "3"),
                ("d", ""),
                ("e", ""),
                ("f", "= x")
            ])
        );
    }

    #[test]
    fn continuation_and_escapes() {
        assert_eq!(
            parse("k = one \\\n     two\\\r\n  three\nescaped\\=key=v\\\\\n"),
            pairs(&[("escaped=key", "v\\"), ("k", "one twothree")])
        );
        assert_eq!(
            parse("u=\\u00e9\\t\\uD83C\\uDF93\\q"),
            pairs(&[("u", "é\t🎓q")])
        );
        // A comment line does not continue, even when it ends in a backslash.
        assert_eq!(parse("# c \\\nk=v"), pairs(&[("k", "v")]));
        // An even number of trailing backslashes is an escaped backslash, not a continuation.
        assert_eq!(parse("a=x\\\\\nb=y"), pairs(&[("a", "x\\"), ("b", "y")]));
        // Continuation at end of file.
        assert_eq!(parse("a=x\\"), pairs(&[("a", "x")]));
        assert_eq!(parse("a=1\na=2"), pairs(&[("a", "2")]));
    }

    #[test]
    fn latin1_fallback_and_bom() {
        assert_eq!(
            Properties::parse_bytes(b"name=Universit\xe4t")
                .unwrap()
                .get("name"),
            Some("Universität")
        );
        assert_eq!(
            Properties::parse_bytes("\u{feff}k=v".as_bytes())
                .unwrap()
                .get("k"),
            Some("v")
        );
    }

    #[test]
    fn refusals() {
        for bad in [
            "a=\\u12",
            "a=\\uZZZZ",
            "a=\\uD800",
            "a=\\uD800\\u0041",
            "a=\\uDC00",
        ] {
            assert!(
                matches!(
                    Properties::parse(bad),
                    Err(PropertiesError::BadUnicodeEscape { line: 1 })
                ),
                "{bad}"
            );
        }
        let big = "a".repeat(MAX_PROPERTIES_BYTES + 1);
        assert!(matches!(
            Properties::parse_bytes(big.as_bytes()),
            Err(PropertiesError::TooLarge { .. })
        ));
    }

    #[test]
    fn deploy_keys_are_parsed_into_domain_types() {
        let key = crate::signing::SigningKey::generate()
            .public_key()
            .to_line();
        let text = format!(
            "DEPOT_SERVER_URL=https://depot.example.edu\nDEPOT_ORG=physics\n\
             DEPOT_REGISTRATION_KEY=7QKX-M2PA-9D4R-HV0T\nDEPOT_CHANNEL=stable\n\
             DEPOT_PUBLIC_KEY={key}\nDEPOT_VERSION=11.2.1\nDEPOT_PLATFORM=linux-x86_64\n\
             DEPOT_PAYLOAD=client.tgz\nDEPOT_PAYLOAD_SHA256={}\n",
            "ab".repeat(32)
        );
        let deploy = DeployProperties::from_properties(&Properties::parse(&text).unwrap()).unwrap();
        assert_eq!(deploy.org.unwrap().as_str(), "physics");
        assert_eq!(deploy.version.unwrap().to_string(), "11.2.1");
        assert_eq!(
            deploy.platform,
            Some(Platform::parse("linux-x86_64").unwrap())
        );
        assert_eq!(deploy.public_key.unwrap().to_line(), key);
        assert_eq!(deploy.payload.as_deref(), Some("client.tgz"));

        let bad = Properties::parse("DEPOT_VERSION=eleven\nDEPOT_ORG=").unwrap();
        let err = DeployProperties::from_properties(&bad).unwrap_err();
        assert!(err.to_string().contains("DEPOT_VERSION"), "{err}");
        let empty = DeployProperties::from_properties(&Properties::parse("DEPOT_ORG=").unwrap());
        assert!(empty.unwrap().org.is_none());
    }

    /// Writes a pair the way a careful writer (and depot's `properties_escape`) does.
    fn escape(s: &str, is_key: bool) -> String {
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{c}' => out.push_str("\\f"),
                ' ' if is_key || i == 0 => out.push_str("\\ "),
                '=' | ':' | '#' | '!' if is_key => {
                    out.push('\\');
                    out.push(c);
                }
                c if !c.is_ascii() || c.is_ascii_control() => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{unit:04X}"));
                    }
                }
                c => out.push(c),
            }
        }
        out
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "(?s).{0,400}") {
            let _ = Properties::parse(&text);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Properties::parse_bytes(&bytes);
        }

        #[test]
        fn escape_heavy_text_never_panics(text in "[\\\\u=:#! \t\r\nD8Cdf0a]{0,60}") {
            let _ = Properties::parse(&text);
        }

        #[test]
        fn simple_pairs_round_trip(
            map in proptest::collection::btree_map("[A-Za-z_ .=:#!\\\\é🎓-]{1,12}", "\\PC{0,30}|[ \\\\=:\t\n]{0,8}", 0..8)
        ) {
            let mut text = String::from("# written by the test\n");
            for (k, v) in &map {
                text.push_str(&format!("{}={}\n", escape(k, true), escape(v, false)));
            }
            let parsed = Properties::parse(&text).unwrap();
            let parsed: BTreeMap<String, String> =
                parsed.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            prop_assert_eq!(parsed, map);
        }
    }
}
