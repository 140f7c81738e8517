use thiserror::Error;

/// A name that breaks a rule of CONTRACT section 2. The message names the field and the rule.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid {field} {value:?}: {rule}")]
pub struct DomainError {
    pub field: &'static str,
    /// The offending input, shortened so that an oversized value cannot flood a log line.
    pub value: String,
    pub rule: &'static str,
}

impl DomainError {
    pub(crate) fn new(field: &'static str, value: &str, rule: &'static str) -> Self {
        let value = match value.char_indices().nth(64) {
            Some((cut, _)) => format!("{}…", &value[..cut]),
            None => value.to_string(),
        };
        Self { field, value, rule }
    }
}

pub type Result<T> = std::result::Result<T, DomainError>;
