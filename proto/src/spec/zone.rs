//! The zone spec: vmadm's properties as an operator writes them.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::capability::Capability;
use super::error::{SpecError, ValidationError, ValidationErrors};
use super::image_ref::ImageRef;
use super::nic::Nic;
use super::placement::Placement;
use super::read;
use super::signal::Signal;
use super::text;

/// The spec's properties in the order of [`ZoneSpec`]'s fields (and of its JSON):
/// the order problems are reported in.
pub const FIELDS: &[&str] = &[
    "uuid",
    "alias",
    "brand",
    "image",
    "max_physical_memory",
    "max_swap",
    "cpu_cap",
    "cpu_shares",
    "max_lwps",
    "io_priority",
    "quota",
    "tmpfs",
    "limit_priv",
    "nics",
    "hostname",
    "resolvers",
    "dns_domain",
    "customer_metadata",
    "tags",
    "init",
    "halt_signal",
    "autoboot",
    "user_namespace",
    "owner",
    "on_host_lost",
    "placement",
];

/// The members a spec cannot do without, with a value each accepts: what completes
/// a document that one member is read in alone.
fn required() -> [(&'static str, serde_json::Value); 1] {
    [("image", serde_json::Value::from("image"))]
}

/// Every problem of a spec as one error, in field order (the document's own
/// problems, such as a missing field, first).
pub(crate) fn in_field_order(mut problems: Vec<ValidationError>) -> SpecError {
    // Stable: the problems of one field stay in the order they were found.
    problems.sort_by_key(|p| {
        let top = top_field(&p.field);
        match FIELDS.iter().position(|f| *f == top) {
            Some(i) => i + 1,
            None if top == text::ROOT_PATH => 0,
            None => usize::MAX,
        }
    });
    SpecError::Invalid(ValidationErrors(problems))
}

/// The property a JSON path starts with: `nics` for `nics[1].ip`.
pub(crate) fn top_field(path: &str) -> &str {
    path.split(['.', '[']).next().unwrap_or(path)
}

/// How a zone is isolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Brand {
    /// An instance of the host's OS: namespaces and cgroups (the only brand for now).
    Os,
}

/// What the controllers do with a zone whose host is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnHostLost {
    /// Wait for the host to come back: the zone may hold data (the default).
    Wait,
    /// Place the zone on another host once the lost host's lease has expired.
    Reschedule,
}

/// The desired configuration of one zone, as in a vmadm payload.
///
/// Every optional property is an `Option` (and empty lists and maps mean "none"), so
/// that a spec reads and writes back exactly as the operator wrote it;
/// [`ZoneSpec::with_defaults`] fills in what was left out. Reading checks syntax
/// (unknown fields, malformed addresses, capability names…); [`ZoneSpec::validate`]
/// checks ranges and consistency, reporting every problem at once.
/// See `docs/zone-spec.md` for units, defaults and ranges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneSpec {
    /// The zone's identity; generated when absent.
    #[serde(default, with = "text::opt", skip_serializing_if = "Option::is_none")]
    pub uuid: Option<Uuid>,
    /// A friendly name (a DNS label), unique per owner by convention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// How the zone is isolated; `os` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand: Option<Brand>,
    /// The root filesystem image: uuid, `sha256:<hex>` or `name[@version]`.
    pub image: ImageRef,
    /// Memory limit in MiB (cgroup `memory.max` / `memory.limit_in_bytes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_physical_memory: Option<u64>,
    /// Memory plus swap limit in MiB (v1 memsw), at least `max_physical_memory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_swap: Option<u64>,
    /// CPU cap in percent of one CPU (100 = one CPU); uncapped when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_cap: Option<u32>,
    /// Relative CPU weight (v1 `cpu.shares` scale).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_shares: Option<u32>,
    /// Most processes plus threads (`pids.max`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lwps: Option<u32>,
    /// Relative I/O weight (v1 `blkio.weight` scale).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_priority: Option<u32>,
    /// Size of the zone's writable filesystem in GiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<u32>,
    /// Size of the zone's `/tmp` in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs: Option<u32>,
    /// The zone's capability bounding set; the default set when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_priv: Option<Vec<Capability>>,
    /// Network interfaces, at most 32.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nics: Vec<Nic>,
    /// The zone's hostname (a DNS label); the alias or uuid when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// DNS resolvers for `/etc/resolv.conf`, at most 3.
    #[serde(default, with = "text::list", skip_serializing_if = "Vec::is_empty")]
    pub resolvers: Vec<IpAddr>,
    /// The search domain for `/etc/resolv.conf`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_domain: Option<String>,
    /// Operator-supplied data served to the zone read-only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub customer_metadata: BTreeMap<String, String>,
    /// Labels of the zone, also served to it; affinity rules can name them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// The zone's PID 1 as an argv; `["/sbin/init"]` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<Vec<String>>,
    /// The signal `zone halt` sends init to ask it to shut down (`SIGRTMIN+3`,
    /// `SIGPWR`...). Absent: the image's, else detected from the image's init
    /// (systemd, busybox init), else `SIGTERM`.
    #[serde(default, with = "text::opt", skip_serializing_if = "Option::is_none")]
    pub halt_signal: Option<Signal>,
    /// Boot the zone again after its host reboots (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoboot: Option<bool>,
    /// Give the zone its own user namespace, mapped to a range of host ids no
    /// other zone on the host holds, so root in the zone is not root on the host
    /// (default true). `false` runs the zone's root as the host's root, held only
    /// by `limit_priv`, seccomp and the namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_namespace: Option<bool>,
    /// Who owns the zone (a short identifier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// `wait` (default) or `reschedule` when the zone's host is lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_host_lost: Option<OnHostLost>,
    /// Scheduler rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
}

impl ZoneSpec {
    /// A spec of `image` with nothing else set.
    pub fn new(image: ImageRef) -> Self {
        ZoneSpec {
            uuid: None,
            alias: None,
            brand: None,
            image,
            max_physical_memory: None,
            max_swap: None,
            cpu_cap: None,
            cpu_shares: None,
            max_lwps: None,
            io_priority: None,
            quota: None,
            tmpfs: None,
            limit_priv: None,
            nics: Vec::new(),
            hostname: None,
            resolvers: Vec::new(),
            dns_domain: None,
            customer_metadata: BTreeMap::new(),
            tags: BTreeMap::new(),
            init: None,
            halt_signal: None,
            autoboot: None,
            user_namespace: None,
            owner: None,
            on_host_lost: None,
            placement: None,
        }
    }

    /// Reads a spec from JSON. Every member that cannot be read (an unknown field, a
    /// wrong type, a malformed value) is named at once with its JSON path
    /// (`nics[0]: unknown field ...`), as [`SpecError::Invalid`]; bad JSON syntax is
    /// [`SpecError::Parse`]. Ranges are left to [`ZoneSpec::validate`].
    pub fn from_json(json: &str) -> Result<Self, SpecError> {
        let mut object = read::parse_object(json)?;
        read::read_all(&mut object, &required()).map_err(in_field_order)
    }

    /// Reads a spec from JSON, as [`ZoneSpec::from_json`] does.
    pub fn from_reader(mut reader: impl std::io::Read) -> Result<Self, SpecError> {
        let mut json = String::new();
        reader
            .read_to_string(&mut json)
            .map_err(|e| SpecError::Parse {
                path: text::ROOT_PATH.to_string(),
                message: e.to_string(),
                line: 0,
                column: 0,
            })?;
        Self::from_json(&json)
    }

    /// Reads a spec from JSON and validates it, naming every problem at once as
    /// `vmadm validate` does: the members that cannot be read, and the rules broken
    /// by the members that can, in field order.
    pub fn from_json_validated(json: &str) -> Result<Self, SpecError> {
        Self::from_object_validated(read::parse_object(json)?, Vec::new())
    }

    /// Reads and validates a spec held as a JSON object, adding `problems` already
    /// found (a patch's); every problem at once, in field order.
    pub(crate) fn from_object_validated(
        mut object: read::Object,
        mut problems: Vec<ValidationError>,
    ) -> Result<Self, SpecError> {
        let (spec, placeholder_image) = match read::read_all(&mut object, &required()) {
            Ok(spec) => (Some(spec), false),
            Err(unreadable) => {
                problems.extend(unreadable);
                // What could be read is validated too; a placeholder (valid, and its
                // problems left out) stands in for an unreadable image.
                let placeholder = !object.contains_key("image");
                for (name, value) in required() {
                    object.entry(name).or_insert(value);
                }
                (read::read_all(&mut object, &required()).ok(), placeholder)
            }
        };
        if let Some(errors) = spec.as_ref().and_then(|s: &ZoneSpec| s.validate().err()) {
            problems.extend(
                errors
                    .0
                    .into_iter()
                    .filter(|p| !(placeholder_image && top_field(&p.field) == "image")),
            );
        }
        match spec {
            Some(spec) if problems.is_empty() => Ok(spec),
            _ => Err(in_field_order(problems)),
        }
    }

    /// Writes the spec as indented JSON; absent fields and empty lists are left out.
    pub fn to_json_pretty(&self) -> String {
        text::to_json_pretty(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_the_spec_fields_in_order() {
        let err = ZoneSpec::from_json(r#"{"image": "a", "zzz": 1}"#).unwrap_err();
        let expected = FIELDS
            .iter()
            .map(|f| format!("`{f}`"))
            .collect::<Vec<_>>()
            .join(", ");
        assert_eq!(
            err.to_string(),
            format!("zzz: unknown field `zzz`, expected one of {expected}")
        );
    }
}
