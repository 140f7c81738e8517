//! Quoting filters: every value that comes from an org's configuration reaches a script or a
//! properties file through one of these, so that no value can end a literal and become code.

use std::collections::HashMap;
use tera::Value;

/// Registers the quoting filters on a Tera instance.
pub(super) fn register(tera: &mut tera::Tera) {
    tera.register_filter("ps_quote", ps_quote_filter);
    tera.register_filter("sh_quote", sh_quote_filter);
    tera.register_filter("properties_escape", properties_escape_filter);
}

/// A PowerShell single-quoted string literal. Inside one, only quote characters are special, and
/// PowerShell counts the typographic quotes U+2018..U+201B as quotes too: each is doubled.
pub fn ps_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}') {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// A POSIX shell single-quoted word: nothing is special inside single quotes except the quote
/// itself, which is closed, escaped and reopened.
pub fn sh_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// A Java `.properties` value, as `java.util.Properties.load` reads it back: `=` and `:` need
/// nothing inside a value, but a backslash, leading white space and line breaks do, and
/// non-ASCII characters become `\uXXXX` because the loader reads ISO-8859-1.
pub fn properties_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut leading = true;
    for c in s.chars() {
        match c {
            ' ' if leading => out.push_str("\\ "),
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_ascii_control() || !c.is_ascii() => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04X}"));
                }
            }
            c => out.push(c),
        }
        leading = leading && c == ' ';
    }
    out
}

/// The text of a scalar value; arrays, objects and null are refused so that a template mistake
/// (quoting a whole list) is an error instead of JSON pasted into a script.
fn scalar_text<'a>(filter: &str, value: &'a Value) -> tera::Result<std::borrow::Cow<'a, str>> {
    match value {
        Value::String(s) => Ok(std::borrow::Cow::Borrowed(s)),
        Value::Number(n) => Ok(std::borrow::Cow::Owned(n.to_string())),
        Value::Bool(b) => Ok(std::borrow::Cow::Owned(b.to_string())),
        other => Err(tera::Error::msg(format!(
            "`{filter}` quotes a string, number or boolean, not {}",
            match other {
                Value::Null => "null",
                Value::Array(_) => "a list",
                _ => "a map",
            }
        ))),
    }
}

fn no_arguments(filter: &str, args: &HashMap<String, Value>) -> tera::Result<()> {
    match args.keys().next() {
        None => Ok(()),
        Some(arg) => Err(tera::Error::msg(format!(
            "`{filter}` takes no arguments, got `{arg}`"
        ))),
    }
}

fn ps_quote_filter(value: &Value, args: &HashMap<String, Value>) -> tera::Result<Value> {
    no_arguments("ps_quote", args)?;
    Ok(Value::String(ps_quote(&scalar_text("ps_quote", value)?)))
}

fn sh_quote_filter(value: &Value, args: &HashMap<String, Value>) -> tera::Result<Value> {
    no_arguments("sh_quote", args)?;
    Ok(Value::String(sh_quote(&scalar_text("sh_quote", value)?)))
}

fn properties_escape_filter(value: &Value, args: &HashMap<String, Value>) -> tera::Result<Value> {
    no_arguments("properties_escape", args)?;
    Ok(Value::String(properties_escape(&scalar_text(
        "properties_escape",
        value,
    )?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reads a `.properties` value back the way `java.util.Properties` does (the subset we emit).
    fn properties_unescape(s: &str) -> String {
        let mut out = String::new();
        let mut units: Vec<u16> = Vec::new();
        let mut chars = s.chars();
        let flush = |units: &mut Vec<u16>, out: &mut String| {
            out.push_str(&String::from_utf16(units).unwrap());
            units.clear();
        };
        while let Some(c) = chars.next() {
            if c != '\\' {
                flush(&mut units, &mut out);
                out.push(c);
                continue;
            }
            match chars.next().unwrap() {
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    units.push(u16::from_str_radix(&hex, 16).unwrap());
                }
                other => {
                    flush(&mut units, &mut out);
                    out.push(match other {
                        't' => '\t',
                        'n' => '\n',
                        'r' => '\r',
                        'f' => '\u{c}',
                        c => c,
                    });
                }
            }
        }
        flush(&mut units, &mut out);
        out
    }

    #[test]
    fn quotes_known_answers() {
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_quote("it's $HOME `id`"), r#"'it'\''s $HOME `id`'"#);
        assert_eq!(ps_quote("O'Brien’s $env:X `n"), "'O''Brien’’s $env:X `n'");
        assert_eq!(properties_escape("  a\\b = c:d"), "\\ \\ a\\\\b = c:d");
        assert_eq!(properties_escape("x\ny"), "x\\ny");
        assert_eq!(
            properties_escape("Physik é 🎓"),
            "Physik \\u00E9 \\uD83C\\uDF93"
        );
    }

    #[test]
    fn filters_refuse_lists_and_arguments() {
        let none = HashMap::new();
        assert!(sh_quote_filter(&Value::Array(vec![]), &none).is_err());
        assert!(ps_quote_filter(&Value::Null, &none).is_err());
        assert_eq!(
            sh_quote_filter(&Value::from(42), &none).unwrap(),
            Value::from("'42'")
        );
        let args = HashMap::from([("x".to_string(), Value::from(1))]);
        assert!(properties_escape_filter(&Value::from("a"), &args).is_err());
    }

    #[test]
    fn sh_quote_survives_a_real_shell() {
        let Ok(sh) = which("sh") else { return };
        let hostile = "a'b\"c $(id) `id` ${HOME} \\ * ; | & \n end";
        let out = std::process::Command::new(sh)
            .arg("-c")
            .arg(format!("printf %s {}", sh_quote(hostile)))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), hostile);
    }

    fn which(program: &str) -> Result<std::path::PathBuf, ()> {
        std::env::var_os("PATH")
            .and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|p| p.join(program))
                    .find(|p| p.is_file())
            })
            .ok_or(())
    }

    proptest! {
        #[test]
        fn properties_round_trip(s in "\\PC{0,40}|[ \\\\=:#!\t\n]{0,10}") {
            let escaped = properties_escape(&s);
            prop_assert!(escaped.is_ascii());
            prop_assert!(!escaped.contains(['\n', '\r']));
            prop_assert!(!escaped.starts_with(' '));
            prop_assert_eq!(properties_unescape(&escaped), s);
        }

        #[test]
        fn ps_quote_is_one_literal(s in "\\PC{0,40}") {
            let q = ps_quote(&s);
            // Inside the outer quotes every quote character comes in pairs.
            let inner: Vec<char> = q.chars().skip(1).collect();
            let inner = &inner[..inner.len() - 1];
            let mut i = 0;
            while i < inner.len() {
                if matches!(inner[i], '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}') {
                    prop_assert_eq!(inner.get(i + 1), Some(&inner[i]));
                    i += 2;
                } else {
                    i += 1;
                }
            }
        }
    }
}
