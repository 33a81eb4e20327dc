//! The errors of every domain document (zone spec, image manifest, network, sysinfo).
//!
//! One format everywhere, so that an operator reads every problem the same way and
//! tests can compare exact strings:
//!
//! ```text
//! {field}: {value} {problem}; allowed {allowed}
//! ```
//!
//! `field` is the JSON path (`nics[1].ip`), `value` is the offending value (strings
//! quoted, long ones cut), `problem` says what is wrong and `allowed` what would be
//! accepted. A value that could not be read at all (an unknown field, a wrong type)
//! is shown as `{field}: {message}`, the message coming from the type that refused
//! it; a JSON syntax error, after which nothing more can be read, as `{path}: {message}`.

use std::fmt;

/// How many characters of a string value an error shows before cutting it.
const SHOWN_CHARS: usize = 40;

/// Renders a string value for an error: quoted and escaped (so NUL bytes and control
/// characters are visible), cut after 40 characters with its length.
pub fn show_str(s: &str) -> String {
    let count = s.chars().count();
    if count <= SHOWN_CHARS {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(SHOWN_CHARS).collect();
        format!("{head:?}... ({count} chars)")
    }
}

/// A refused value, before it is attached to a field: what a `FromStr` of a domain
/// type returns, and what a check helper returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    /// The value as shown to the operator (see [`show_str`]).
    pub value: String,
    /// What is wrong with it, e.g. `is out of range`.
    pub problem: String,
    /// What would be accepted, e.g. `16..=16777216 (MiB)`.
    pub allowed: String,
}

impl ValueError {
    /// A refused value; `value` is already rendered (see [`show_str`]).
    pub fn new(
        value: impl Into<String>,
        problem: impl Into<String>,
        allowed: impl Into<String>,
    ) -> Self {
        Self {
            value: value.into(),
            problem: problem.into(),
            allowed: allowed.into(),
        }
    }

    /// A refused string value, quoted and cut as [`show_str`] does.
    pub fn string(value: &str, problem: impl Into<String>, allowed: impl Into<String>) -> Self {
        Self::new(show_str(value), problem, allowed)
    }

    /// Attaches the value to the field that held it.
    pub fn at(self, field: impl Into<String>) -> ValidationError {
        ValidationError {
            field: field.into(),
            value: self.value,
            problem: self.problem,
            allowed: self.allowed,
        }
    }
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}; allowed {}",
            self.value, self.problem, self.allowed
        )
    }
}

impl std::error::Error for ValueError {}

/// One problem of a document: the field path, its value, what is wrong and what is
/// allowed. Displays as `{field}: {value} {problem}; allowed {allowed}`, or as
/// `{field}: {problem}` for a value that could not be read (see
/// [`ValidationError::unreadable`]), whose value and allowed are empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// JSON path of the field, e.g. `nics[1].ip` or `max_physical_memory`.
    pub field: String,
    /// The value as shown to the operator.
    pub value: String,
    /// What is wrong with it.
    pub problem: String,
    /// What would be accepted.
    pub allowed: String,
}

impl ValidationError {
    /// A value of `field` that could not be read: `problem` is what the reader said
    /// (an unknown field, a wrong type, or a value its type refused).
    pub fn unreadable(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            value: String::new(),
            problem: problem.into(),
            allowed: String::new(),
        }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.field)?;
        if !self.value.is_empty() {
            write!(f, "{} ", self.value)?;
        }
        f.write_str(&self.problem)?;
        if !self.allowed.is_empty() {
            write!(f, "; allowed {}", self.allowed)?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationError {}

/// Every problem found in one document, in field order. Displays one problem per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl ValidationErrors {
    /// The problems, in the order they were found.
    pub fn errors(&self) -> &[ValidationError] {
        &self.0
    }

    /// Each problem's display, one string per problem (handy in tests and CLIs).
    pub fn messages(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

/// Why a domain document (zone spec, image manifest, network, sysinfo) was refused.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The JSON could not be read into the document: bad syntax, or (for documents
    /// read one problem at a time: image manifests, networks, sysinfo) a wrong type,
    /// an unknown or missing field, or a value its type refuses. Only this first
    /// error is known, since reading stops there.
    #[error("{path}: {message}")]
    Parse {
        /// JSON path of the field (`nics[0].ip`), `<root>` for the document itself.
        path: String,
        /// What is wrong, without the line and column.
        message: String,
        /// 1-based line in the input, 0 when unknown.
        line: usize,
        /// 1-based column in the input, 0 when unknown.
        column: usize,
    },
    /// The document breaks rules, or (a zone spec or patch) has values that could
    /// not be read: every problem, at once.
    // Transparent: the problems are this error's whole message, so a report that
    // also prints the error's source would print them twice.
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
}

impl SpecError {
    /// The validation problems, if this is [`SpecError::Invalid`].
    pub fn validation(&self) -> Option<&ValidationErrors> {
        match self {
            SpecError::Invalid(errors) => Some(errors),
            SpecError::Parse { .. } => None,
        }
    }
}

/// Collects problems while a document is checked, then becomes a result.
#[derive(Debug, Default)]
pub(crate) struct Problems(Vec<ValidationError>);

impl Problems {
    /// Records a problem of `field`.
    pub(crate) fn push(&mut self, field: impl Into<String>, error: ValueError) {
        self.0.push(error.at(field));
    }

    /// Records the outcome of a check of `field`, if it failed.
    pub(crate) fn check(&mut self, field: impl fmt::Display, outcome: Result<(), ValueError>) {
        if let Err(error) = outcome {
            self.push(field.to_string(), error);
        }
    }

    /// Takes the value of a conversion of `field`, recording its problem if any.
    pub(crate) fn take<T>(
        &mut self,
        field: impl fmt::Display,
        outcome: Result<T, ValueError>,
    ) -> Option<T> {
        match outcome {
            Ok(value) => Some(value),
            Err(error) => {
                self.push(field.to_string(), error);
                None
            }
        }
    }

    /// How many problems were recorded so far.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Ok when nothing was recorded, else every problem.
    pub(crate) fn finish(self) -> Result<(), ValidationErrors> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(self.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_one_error() {
        let e = ValueError::new("0", "is out of range", "16..=16777216 (MiB)")
            .at("max_physical_memory");
        assert_eq!(
            e.to_string(),
            "max_physical_memory: 0 is out of range; allowed 16..=16777216 (MiB)"
        );
    }

    #[test]
    fn shows_long_and_odd_strings() {
        assert_eq!(show_str("a\0b"), "\"a\\0b\"");
        let long = "x".repeat(50);
        assert_eq!(
            show_str(&long),
            format!("\"{}\"... (50 chars)", "x".repeat(40))
        );
    }

    #[test]
    fn lists_one_problem_per_line() {
        let errors = ValidationErrors(vec![
            ValueError::new("1", "is bad", "2").at("a"),
            ValueError::new("3", "is bad", "4").at("b"),
        ]);
        assert_eq!(
            errors.to_string(),
            "a: 1 is bad; allowed 2\nb: 3 is bad; allowed 4"
        );
        assert_eq!(
            SpecError::from(errors).to_string(),
            "a: 1 is bad; allowed 2\nb: 3 is bad; allowed 4"
        );
    }
}
