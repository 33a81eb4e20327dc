//! Where a zone may go: read by the scheduler, ignored by a standalone agent.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::check;
use super::constraint::Constraint;
use super::error::{Problems, ValueError};
use super::text::{text_type, Text};

/// A zone's placement rules (`placement` in a spec).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    /// How hosts that pass the filters are scored; the scheduler's default is `binpack`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<PlacementStrategy>,
    /// Every constraint must hold for a host to be chosen.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<Constraint>,
    /// Spread the zones of a group over failure domains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread: Option<Spread>,
    /// Near/far rules relative to other zones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub affinity: Vec<Affinity>,
}

/// How the scheduler scores the hosts that pass the filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlacementStrategy {
    /// Fill the fullest host that fits (keeps whole hosts free).
    Binpack,
    /// Choose the emptiest host (spreads load).
    Spread,
}

/// Hard rules filter hosts out; soft rules only lower their score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleMode {
    /// A host that breaks the rule is never chosen (the default).
    Hard,
    /// A host that breaks the rule is chosen only if no other fits.
    Soft,
}

/// The failure domain a spread counts zones in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureDomain {
    /// The host's rack.
    Rack,
    /// The host itself.
    Host,
}

/// Spread the zones of `group` so that no failure domain holds more than
/// `max_per_domain` of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spread {
    /// The failure domain: `rack` or `host`.
    pub by: FailureDomain,
    /// The group's name (a DNS label); zones with the same group are counted together.
    pub group: String,
    /// The most zones of the group per domain; required by a hard spread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_domain: Option<u32>,
    /// `hard` (the default) or `soft`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<RuleMode>,
}

/// Near or far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AffinityRule {
    /// On the same host as the target zones.
    Near,
    /// Not on a host of the target zones.
    Far,
}

/// One affinity rule: `near`/`far` the zones named by `target`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Affinity {
    /// Near or far.
    pub rule: AffinityRule,
    /// The zones the rule is about.
    pub target: AffinityTarget,
    /// `hard` (the default) or `soft`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<RuleMode>,
}

/// The zones an affinity rule names: one zone by uuid or alias, or every zone
/// carrying a tag. Written as the uuid, the alias or `tag:key=value`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AffinityTarget {
    /// The zone with this uuid.
    Uuid(Uuid),
    /// The zone with this alias.
    Alias(String),
    /// Every zone whose tag `key` is `value`.
    Tag {
        /// The tag's key.
        key: String,
        /// The tag's value.
        value: String,
    },
}

const TARGET_ALLOWED: &str = "a zone uuid, a zone alias or \"tag:key=value\"";

impl AffinityTarget {
    /// Reads a uuid, `tag:key=value` or an alias. Only the shape is checked here;
    /// the alias and tag characters are checked by validation.
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        let refuse = || ValueError::string(s, "is not an affinity target", TARGET_ALLOWED);
        if let Some(tag) = s.strip_prefix("tag:") {
            let (key, value) = tag.split_once('=').ok_or_else(refuse)?;
            if key.is_empty() || value.is_empty() {
                return Err(refuse());
            }
            return Ok(AffinityTarget::Tag {
                key: key.to_string(),
                value: value.to_string(),
            });
        }
        if s.is_empty() {
            return Err(refuse());
        }
        Ok(Uuid::parse_text(s).map_or_else(
            |_| AffinityTarget::Alias(s.to_string()),
            AffinityTarget::Uuid,
        ))
    }

    /// Checks an alias as a DNS label and a tag's key and value as label words.
    pub(crate) fn check(&self) -> Vec<ValueError> {
        match self {
            AffinityTarget::Uuid(_) => Vec::new(),
            AffinityTarget::Alias(alias) => check::dns_label(alias).err().into_iter().collect(),
            AffinityTarget::Tag { key, value } => {
                [check::label_word(key), check::label_word(value)]
                    .into_iter()
                    .filter_map(Result::err)
                    .collect()
            }
        }
    }

    fn write(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AffinityTarget::Uuid(uuid) => f.write_str(&uuid.to_text()),
            AffinityTarget::Alias(alias) => f.write_str(alias),
            AffinityTarget::Tag { key, value } => write!(f, "tag:{key}={value}"),
        }
    }
}

text_type!(AffinityTarget);

impl FailureDomain {
    /// The domain's name: `rack` or `host`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureDomain::Rack => "rack",
            FailureDomain::Host => "host",
        }
    }

    /// Reads `rack` or `host`.
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        match s {
            "rack" => Ok(FailureDomain::Rack),
            "host" => Ok(FailureDomain::Host),
            _ => Err(ValueError::string(
                s,
                "is not a failure domain",
                "\"rack\" or \"host\"",
            )),
        }
    }
}

impl Placement {
    /// Records every problem of these rules, under the field path `at` (`placement`).
    pub(crate) fn check(&self, at: &str, problems: &mut Problems) {
        for (i, constraint) in self.constraints.iter().enumerate() {
            for problem in constraint.check() {
                problems.push(format!("{at}.constraints[{i}]"), problem);
            }
        }
        if let Some(spread) = &self.spread {
            problems.check(
                format_args!("{at}.spread.group"),
                check::dns_label(&spread.group),
            );
            let hard = spread.mode.unwrap_or(RuleMode::Hard) == RuleMode::Hard;
            match spread.max_per_domain {
                Some(n) => problems.check(
                    format_args!("{at}.spread.max_per_domain"),
                    check::range(n, 1, u32::MAX, "zones"),
                ),
                None if hard => problems.push(
                    format!("{at}.spread.max_per_domain"),
                    ValueError::new(
                        "null",
                        "is missing for a hard spread",
                        "1 or more zones (or mode \"soft\")",
                    ),
                ),
                None => {}
            }
        }
        for (i, affinity) in self.affinity.iter().enumerate() {
            for problem in affinity.target.check() {
                problems.push(format!("{at}.affinity[{i}].target"), problem);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(p: &Placement) -> Vec<String> {
        let mut problems = Problems::default();
        p.check("placement", &mut problems);
        problems
            .finish()
            .err()
            .map(|e| e.messages())
            .unwrap_or_default()
    }

    #[test]
    fn targets() {
        let uuid = "2f1dc5a4-5b8c-4c5e-9a3b-0f4c3b2a1d0e";
        assert_eq!(
            AffinityTarget::parse(uuid).unwrap(),
            AffinityTarget::Uuid(uuid.parse().unwrap())
        );
        assert_eq!(
            AffinityTarget::parse("db-1").unwrap(),
            AffinityTarget::Alias("db-1".into())
        );
        assert_eq!(
            AffinityTarget::parse("tag:role=db").unwrap(),
            AffinityTarget::Tag {
                key: "role".into(),
                value: "db".into()
            }
        );
        for s in [uuid, "db-1", "tag:role=db"] {
            assert_eq!(AffinityTarget::parse(s).unwrap().to_string(), s);
        }
        for bad in ["", "tag:", "tag:role", "tag:=db", "tag:role="] {
            assert!(AffinityTarget::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            AffinityTarget::parse("").unwrap_err().to_string(),
            "\"\" is not an affinity target; allowed a zone uuid, a zone alias or \"tag:key=value\""
        );
    }

    #[test]
    fn checks_rules() {
        let json = r#"{"strategy":"spread","constraints":["rack=r1","bad key=x"],
            "spread":{"by":"rack","group":"-web"},
            "affinity":[{"rule":"far","target":"db_1"},{"rule":"near","target":"tag:role=a b","mode":"soft"}]}"#;
        let p: Placement = serde_json::from_str(json).unwrap();
        assert_eq!(
            problems(&p),
            [
                "placement.constraints[1]: \"bad key\" is not a label word; allowed 1 to 63 letters, digits, '.', '_', '-' or '/'",
                "placement.spread.group: \"-web\" is not a DNS label; allowed 1 to 63 letters, digits and '-', not starting or ending with '-'",
                "placement.spread.max_per_domain: null is missing for a hard spread; allowed 1 or more zones (or mode \"soft\")",
                "placement.affinity[0].target: \"db_1\" is not a DNS label; allowed 1 to 63 letters, digits and '-', not starting or ending with '-'",
                "placement.affinity[1].target: \"a b\" is not a label word; allowed 1 to 63 letters, digits, '.', '_', '-' or '/'",
            ]
        );
    }

    #[test]
    fn soft_spread_needs_no_maximum_but_zero_is_refused() {
        let soft: Placement =
            serde_json::from_str(r#"{"spread":{"by":"host","group":"web","mode":"soft"}}"#)
                .unwrap();
        assert!(problems(&soft).is_empty());
        let zero: Placement =
            serde_json::from_str(r#"{"spread":{"by":"host","group":"web","max_per_domain":0}}"#)
                .unwrap();
        assert_eq!(
            problems(&zero),
            ["placement.spread.max_per_domain: 0 is out of range; allowed 1..=4294967295 (zones)"]
        );
    }

    #[test]
    fn unknown_domain_is_refused_when_read() {
        let err = serde_json::from_str::<Placement>(r#"{"spread":{"by":"row","group":"web"}}"#)
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("unknown variant `row`, expected `rack` or `host`"),
            "{err}"
        );
    }
}
