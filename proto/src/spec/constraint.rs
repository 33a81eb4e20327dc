//! Placement constraints on host labels: `rack=r1`, `ssd!=true`, `class in (a,b)`,
//! `class not in (a,b)`.

use std::fmt;

use super::check;
use super::error::ValueError;
use super::text::text_type;

/// How a constraint compares a host label with its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConstraintOp {
    /// `key=value`: the host has the label with this value.
    Eq,
    /// `key!=value`: the host lacks the label or has another value.
    NotEq,
    /// `key in (a,b)`: the host has the label with one of these values.
    In,
    /// `key not in (a,b)`: the host lacks the label or has none of these values.
    NotIn,
}

/// One constraint on a host label. `rack` names the host's rack.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Constraint {
    /// The label key, e.g. `rack`.
    pub key: String,
    /// The comparison.
    pub op: ConstraintOp,
    /// The values: exactly one for `=` and `!=`, one or more for `in` and `not in`.
    pub values: Vec<String>,
}

const SYNTAX: &str = "\"key=value\", \"key!=value\", \"key in (a,b)\" or \"key not in (a,b)\"";

impl Constraint {
    /// Reads a constraint. Only the shape is checked here; the characters of keys
    /// and values are checked by validation.
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        let refuse = || ValueError::string(s, "is not a constraint", SYNTAX);
        let t = s.trim();
        if let Some(open) = t.find('(') {
            let list = t[open + 1..].strip_suffix(')').ok_or_else(refuse)?;
            let head: Vec<&str> = t[..open].split_whitespace().collect();
            let (key, op) = match head.as_slice() {
                [key, op] if op.eq_ignore_ascii_case("in") => (*key, ConstraintOp::In),
                [key, not, op]
                    if not.eq_ignore_ascii_case("not") && op.eq_ignore_ascii_case("in") =>
                {
                    (*key, ConstraintOp::NotIn)
                }
                _ => return Err(refuse()),
            };
            let values: Vec<String> = list.split(',').map(|v| v.trim().to_string()).collect();
            if values.iter().any(String::is_empty) {
                return Err(refuse());
            }
            return Ok(Constraint {
                key: key.to_string(),
                op,
                values,
            });
        }
        let (key, op, value) = if let Some((k, v)) = t.split_once("!=") {
            (k, ConstraintOp::NotEq, v)
        } else if let Some((k, v)) = t.split_once('=') {
            (k, ConstraintOp::Eq, v)
        } else {
            return Err(refuse());
        };
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() || value.is_empty() {
            return Err(refuse());
        }
        Ok(Constraint {
            key: key.to_string(),
            op,
            values: vec![value.to_string()],
        })
    }

    /// Whether a host whose label `key` has `label` (or lacks it: `None`) passes.
    pub fn matches(&self, label: Option<&str>) -> bool {
        let listed = label.is_some_and(|l| self.values.iter().any(|v| v == l));
        match self.op {
            ConstraintOp::Eq | ConstraintOp::In => listed,
            ConstraintOp::NotEq | ConstraintOp::NotIn => !listed,
        }
    }

    /// Checks the key's and values' characters and the number of values.
    pub(crate) fn check(&self) -> Vec<ValueError> {
        let mut problems: Vec<ValueError> =
            check::label_word(&self.key).err().into_iter().collect();
        problems.extend(
            self.values
                .iter()
                .filter_map(|v| check::label_word(v).err()),
        );
        let single = matches!(self.op, ConstraintOp::Eq | ConstraintOp::NotEq);
        if (single && self.values.len() != 1) || self.values.is_empty() {
            problems.push(ValueError::string(
                &self.to_string(),
                "has the wrong number of values",
                SYNTAX,
            ));
        }
        problems
    }

    fn write(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = self.values.join(",");
        match self.op {
            ConstraintOp::Eq => write!(f, "{}={list}", self.key),
            ConstraintOp::NotEq => write!(f, "{}!={list}", self.key),
            ConstraintOp::In => write!(f, "{} in ({list})", self.key),
            ConstraintOp::NotIn => write!(f, "{} not in ({list})", self.key),
        }
    }
}

text_type!(Constraint);

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Constraint {
        s.parse().unwrap()
    }

    #[test]
    fn parses_every_form() {
        assert_eq!(
            c("rack=r1"),
            Constraint {
                key: "rack".into(),
                op: ConstraintOp::Eq,
                values: vec!["r1".into()]
            }
        );
        assert_eq!(c(" ssd != true ").op, ConstraintOp::NotEq);
        assert_eq!(c("class in (a, b)").values, ["a", "b"]);
        assert_eq!(c("class NOT IN (a)").op, ConstraintOp::NotIn);
        for s in [
            "rack=r1",
            "ssd!=true",
            "class in (a,b)",
            "class not in (a,b,c)",
        ] {
            assert_eq!(c(s).to_string(), s);
            assert!(c(s).check().is_empty());
        }
    }

    #[test]
    fn refuses_bad_shapes() {
        for bad in [
            "",
            "rack",
            "=r1",
            "rack=",
            "class in (a,)",
            "class in a,b",
            "class in (a,b",
            "class is (a)",
            "in (a)",
        ] {
            assert!(bad.parse::<Constraint>().is_err(), "{bad:?}");
        }
        assert_eq!(
            "rack".parse::<Constraint>().unwrap_err().to_string(),
            format!("\"rack\" is not a constraint; allowed {SYNTAX}")
        );
    }

    #[test]
    fn checks_words() {
        assert_eq!(c("my rack=r 1").check().len(), 2);
        let two = Constraint {
            key: "a".into(),
            op: ConstraintOp::Eq,
            values: vec!["x".into(), "y".into()],
        };
        assert_eq!(two.check().len(), 1);
    }

    #[test]
    fn matches_labels() {
        assert!(c("rack=r1").matches(Some("r1")));
        assert!(!c("rack=r1").matches(None));
        assert!(c("ssd!=true").matches(None));
        assert!(!c("ssd!=true").matches(Some("true")));
        assert!(c("class in (a,b)").matches(Some("b")));
        assert!(c("class not in (a,b)").matches(Some("c")));
        assert!(!c("class not in (a,b)").matches(Some("a")));
    }
}
