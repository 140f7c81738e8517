//! Template errors, reduced to one line that names the template file and the line in it.
//!
//! Tera's parse errors carry `--> line:column`; its render errors only name the template, so the
//! line is found by looking for the failing expression in the template's source.

use std::error::Error as _;
use std::path::PathBuf;

pub type Result<T> = std::result::Result<T, TemplateError>;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// A template that does not parse or does not render.
    #[error("template {path}{}: {message}", line_suffix(*.line))]
    Template {
        /// The template's path inside the templates directory, e.g. `windows/install.ps1.tera`.
        path: String,
        line: Option<usize>,
        message: String,
    },
    /// A file or folder that has no place in a templates directory.
    #[error("templates directory: {path}: {rule}")]
    Layout { path: String, rule: String },
    #[error("cannot {action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot build the template context: {0}")]
    Context(String),
}

fn line_suffix(line: Option<usize>) -> String {
    line.map(|l| format!(" line {l}")).unwrap_or_default()
}

impl TemplateError {
    pub(super) fn layout(path: impl Into<String>, rule: impl Into<String>) -> Self {
        TemplateError::Layout {
            path: path.into(),
            rule: rule.into(),
        }
    }

    pub(super) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| TemplateError::Io {
            action,
            path,
            source,
        }
    }
}

/// The messages of an error and its causes, outermost first, each on one line.
fn chain(err: &tera::Error) -> Vec<String> {
    let mut out = vec![one_line(&err.to_string())];
    let mut cause = err.source();
    while let Some(e) = cause {
        out.push(one_line(&e.to_string()));
        cause = e.source();
    }
    out
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The text between `open` and the next `close` after it.
fn between<'a>(s: &'a str, open: &str, close: char) -> Option<&'a str> {
    let start = s.find(open)? + open.len();
    let len = s[start..].find(close)?;
    Some(&s[start..start + len])
}

/// A parse error: Tera wraps pest's report (` --> 3:14 | ... = expected ...`) under
/// `Failed to parse 'name'`.
pub(super) fn parse_error(err: &tera::Error) -> TemplateError {
    let messages = chain(err);
    let path = messages
        .iter()
        .find_map(|m| between(m, "Failed to parse '", '\''))
        .unwrap_or("?")
        .to_string();
    let detail = messages
        .iter()
        .find(|m| !m.starts_with("Failed to parse '"))
        .cloned()
        .unwrap_or_else(|| messages.join(": "));
    let line = between(&detail, "--> ", ':').and_then(|l| l.trim().parse().ok());
    let message = match detail.rsplit_once(" = ") {
        Some((_, expected)) if line.is_some() => expected.to_string(),
        _ => detail,
    };
    TemplateError::Template {
        path,
        line,
        message,
    }
}

/// What went wrong in a render, and what to look for in the source to find the line.
enum Cause {
    Variable(String),
    Filter(String),
    Function(String),
    Test(String),
    Template(String),
    Other,
}

/// A render error of template `rendering`. `source_of` gives the source of any template by name,
/// since the failure may sit in a template that `rendering` includes or extends.
pub(super) fn render_error<'a>(
    err: &tera::Error,
    rendering: &str,
    source_of: impl Fn(&str) -> Option<&'a str>,
) -> TemplateError {
    let messages = chain(err);
    // The innermost template named by Tera is where the failing expression is.
    let path = messages
        .iter()
        .rev()
        .find_map(|m| {
            between(m, "while rendering '", '\'')
                .or_else(|| between(m, "(error happened in '", '\''))
        })
        .filter(|name| source_of(name).is_some())
        .unwrap_or(rendering)
        .to_string();

    let causes: Vec<&String> = messages
        .iter()
        .filter(|m| !m.starts_with("Failed to render '"))
        .collect();
    let first = causes.first().map(|s| s.as_str()).unwrap_or_default();
    let rest = || {
        causes
            .iter()
            .skip(1)
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(": ")
    };
    let with_rest = |head: String| {
        let rest = rest();
        if rest.is_empty() {
            head
        } else {
            format!("{head}: {rest}")
        }
    };
    let (cause, message) = if let Some(var) = between(first, "Variable `", '`') {
        let tail = first.split_once("': ").map(|(_, t)| t);
        let head = format!("variable `{var}` not found");
        let message = match tail {
            Some(t) => format!("{head}: {t}"),
            None => head,
        };
        (Cause::Variable(var.to_string()), message)
    } else if let Some(f) = between(first, "Filter '", '\'') {
        if first.ends_with("not found") {
            (
                Cause::Filter(f.to_string()),
                format!("unknown filter `{f}`"),
            )
        } else {
            (
                Cause::Filter(f.to_string()),
                with_rest(format!("filter `{f}`")),
            )
        }
    } else if let Some(f) = between(first, "Filter call '", '\'') {
        (
            Cause::Filter(f.to_string()),
            with_rest(format!("filter `{f}`")),
        )
    } else if let Some(f) = between(first, "Function '", '\'') {
        (
            Cause::Function(f.to_string()),
            format!("unknown function `{f}`"),
        )
    } else if let Some(f) = between(first, "Function call '", '\'') {
        (
            Cause::Function(f.to_string()),
            with_rest(format!("function `{f}`")),
        )
    } else if let Some(t) = between(first, "Test '", '\'') {
        (Cause::Test(t.to_string()), format!("unknown test `{t}`"))
    } else if let Some(t) = between(first, "Test call '", '\'') {
        (Cause::Test(t.to_string()), with_rest(format!("test `{t}`")))
    } else if let Some(t) = between(first, "Template '", '\'') {
        (
            Cause::Template(t.to_string()),
            format!("template `{t}` not found"),
        )
    } else {
        let all = causes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(": ");
        (
            Cause::Other,
            if all.is_empty() {
                messages.join(": ")
            } else {
                all
            },
        )
    };
    let line = source_of(&path).and_then(|src| find_line(src, &cause));
    TemplateError::Template {
        path,
        line,
        message,
    }
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The characters around one occurrence of a name in a line of source.
struct Around {
    /// The character right before and right after the name.
    touching: (Option<char>, Option<char>),
    /// The nearest non-blank character before and after the name.
    nearest: (Option<char>, Option<char>),
}

/// The 1-based line of the first place in `src` where `cause` can have happened.
fn find_line(src: &str, cause: &Cause) -> Option<usize> {
    let stands_alone = |a: &Around| {
        !a.touching.0.is_some_and(|c| is_ident(c) || c == '.')
            && !a.touching.1.is_some_and(|c| is_ident(c) || c == '.')
    };
    let matches_on = |line: &str| match cause {
        Cause::Variable(var) => occurs(line, var, |a| stands_alone(&a)),
        Cause::Filter(name) => occurs(line, name, |a| stands_alone(&a) && a.nearest.0 == Some('|')),
        Cause::Function(name) => {
            occurs(line, name, |a| stands_alone(&a) && a.nearest.1 == Some('('))
        }
        Cause::Test(name) => occurs(line, name, |a| {
            stands_alone(&a) && {
                let before = line.split(name.as_str()).next().unwrap_or_default();
                before.trim_end().ends_with(" is") || before.trim_end().ends_with(" not")
            }
        }),
        Cause::Template(name) => {
            line.contains(&format!("\"{name}\"")) || line.contains(&format!("'{name}'"))
        }
        Cause::Other => false,
    };
    src.lines().position(matches_on).map(|i| i + 1)
}

/// Whether `needle` occurs in `line` with `ok` holding for what surrounds it.
fn occurs(line: &str, needle: &str, ok: impl Fn(Around) -> bool) -> bool {
    line.match_indices(needle).any(|(i, _)| {
        let (head, tail) = (&line[..i], &line[i + needle.len()..]);
        ok(Around {
            touching: (head.chars().next_back(), tail.chars().next()),
            nearest: (
                head.chars().rev().find(|c| !c.is_whitespace()),
                tail.chars().find(|c| !c.is_whitespace()),
            ),
        })
    })
}
