//! Fleet identities: who a certificate speaks for, written as a SAN URI
//! `zonefleet://<cluster>/<kind>/<id>`, or `zonefleet://<cluster>/operator/<role>/<name>`
//! for an operator with less than every right (see [`OperatorRole`]).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use uuid::Uuid;

use super::PkiError;

/// The URI scheme of every fleet identity.
pub const IDENTITY_SCHEME: &str = "zonefleet";

/// Longest accepted operator name.
pub const MAX_OPERATOR_NAME_LEN: usize = 64;

/// What an operator certificate lets its holder do, carried in the identity URI.
///
/// An admin's URI has no role segment (`zonefleet://<cluster>/operator/<name>`), exactly
/// as every operator certificate issued before roles existed, so those stay admins. Any
/// other role is a segment before the name (`…/operator/viewer/<name>`), which a
/// controller that predates roles refuses as a malformed identity instead of reading it
/// as an admin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OperatorRole {
    /// Everything operators may do.
    #[default]
    Admin,
    /// Reads only: nothing that changes desired state.
    Viewer,
}

impl OperatorRole {
    /// Every role, most powerful first.
    pub const ALL: [OperatorRole; 2] = [OperatorRole::Admin, OperatorRole::Viewer];

    /// Lowercase name, as in `--role` and the identity URI.
    pub fn as_str(self) -> &'static str {
        match self {
            OperatorRole::Admin => "admin",
            OperatorRole::Viewer => "viewer",
        }
    }

    /// The URI segment before the name: none for an admin (the form that predates roles).
    fn segment(self) -> Option<&'static str> {
        match self {
            OperatorRole::Admin => None,
            other => Some(other.as_str()),
        }
    }
}

impl fmt::Display for OperatorRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OperatorRole {
    type Err = PkiError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| PkiError::InvalidName {
                what: "operator role",
                value: s.to_owned(),
                rule: "admin or viewer",
            })
    }
}

/// What kind of principal an identity names, with its id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// A controller, by its Raft member id (a DNS-label-like name).
    Controller(String),
    /// An agent, by the `host_id` of its host.
    Agent(Uuid),
    /// A human or automation operator, by name (`[a-z0-9._-]`, starting alphanumeric),
    /// with the role its certificate grants.
    Operator {
        /// The operator's name.
        name: String,
        /// What the operator may do.
        role: OperatorRole,
    },
}

impl Principal {
    /// The path segment naming this kind: `controller`, `agent` or `operator`.
    pub fn kind(&self) -> &'static str {
        match self {
            Principal::Controller(_) => "controller",
            Principal::Agent(_) => "agent",
            Principal::Operator { .. } => "operator",
        }
    }

    /// The id part, as written in the URI and in file names.
    pub fn id(&self) -> String {
        match self {
            Principal::Controller(id) | Principal::Operator { name: id, .. } => id.clone(),
            Principal::Agent(host_id) => host_id.to_string(),
        }
    }
}

/// A fleet identity: a cluster and a principal in it.
///
/// Its text form is the SAN URI it is carried in, for example
/// `zonefleet://prod/agent/0b7c3a4e-1d2f-4c55-9a8e-3f2b1c0d9e8f`. Parsing is strict:
/// lowercase only, no trailing slash, query, fragment, port or user part.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    cluster: String,
    principal: Principal,
}

impl Identity {
    /// Builds an identity after validating the cluster and the principal's id.
    pub fn new(cluster: &str, principal: Principal) -> Result<Self, PkiError> {
        validate_cluster(cluster)?;
        match &principal {
            Principal::Controller(id) => validate_controller_id(id)?,
            Principal::Operator { name, .. } => validate_operator_name(name)?,
            Principal::Agent(_) => {}
        }
        Ok(Identity {
            cluster: cluster.to_owned(),
            principal,
        })
    }

    /// `zonefleet://<cluster>/controller/<id>`.
    pub fn controller(cluster: &str, id: &str) -> Result<Self, PkiError> {
        Self::new(cluster, Principal::Controller(id.to_owned()))
    }

    /// `zonefleet://<cluster>/agent/<host_id>`.
    pub fn agent(cluster: &str, host_id: Uuid) -> Result<Self, PkiError> {
        Self::new(cluster, Principal::Agent(host_id))
    }

    /// `zonefleet://<cluster>/operator/<name>`: an admin.
    pub fn operator(cluster: &str, name: &str) -> Result<Self, PkiError> {
        Self::operator_with_role(cluster, name, OperatorRole::Admin)
    }

    /// An operator with `role`: `zonefleet://<cluster>/operator/<name>` for an admin,
    /// `zonefleet://<cluster>/operator/<role>/<name>` otherwise.
    pub fn operator_with_role(
        cluster: &str,
        name: &str,
        role: OperatorRole,
    ) -> Result<Self, PkiError> {
        Self::new(
            cluster,
            Principal::Operator {
                name: name.to_owned(),
                role,
            },
        )
    }

    /// The cluster this identity belongs to.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The principal (kind and id).
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The identity as its SAN URI.
    pub fn uri(&self) -> String {
        self.to_string()
    }

    /// The file stem used for this identity's certificate and key:
    /// `controller-<id>`, `agent-<host_id>`, `operator-<name>` for an admin, or
    /// `<role>-<name>` for another operator role (`viewer-alice`: a prefix no other kind
    /// has, where `operator-viewer-alice` could be the admin `viewer-alice`).
    pub fn file_stem(&self) -> String {
        let kind = match &self.principal {
            Principal::Operator { role, .. } => role.segment().unwrap_or("operator"),
            other => other.kind(),
        };
        format!("{kind}-{}", self.principal.id())
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{IDENTITY_SCHEME}://{}/{}/",
            self.cluster,
            self.principal.kind()
        )?;
        if let Principal::Operator { role, .. } = &self.principal {
            if let Some(segment) = role.segment() {
                write!(f, "{segment}/")?;
            }
        }
        f.write_str(&self.principal.id())
    }
}

impl FromStr for Identity {
    type Err = PkiError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| PkiError::InvalidIdentity {
            value: s.to_owned(),
            reason: why.to_owned(),
        };
        let rest = s
            .strip_prefix(IDENTITY_SCHEME)
            .and_then(|r| r.strip_prefix("://"))
            .ok_or_else(|| bad("does not start with zonefleet://"))?;
        let parts: Vec<&str> = rest.split('/').collect();
        let (cluster, kind, role, id) = match parts[..] {
            [cluster, kind, id] => (cluster, kind, None, id),
            [cluster, "operator", role, name] => (cluster, "operator", Some(role), name),
            _ => return Err(bad("expected zonefleet://<cluster>/<kind>/<id>")),
        };
        let principal = match kind {
            "controller" => Principal::Controller(id.to_owned()),
            "operator" => {
                let role = match role {
                    None => OperatorRole::Admin,
                    // One spelling per identity: an admin is written without a segment.
                    Some(segment) => match segment.parse()? {
                        OperatorRole::Admin => {
                            return Err(bad(
                                "an admin is written zonefleet://<cluster>/operator/<name>",
                            ))
                        }
                        other => other,
                    },
                };
                Principal::Operator {
                    name: id.to_owned(),
                    role,
                }
            }
            "agent" => Principal::Agent(parse_host_id(id)?),
            other => {
                return Err(bad(&format!(
                    "unknown kind {other:?} (expected controller, agent or operator)"
                )))
            }
        };
        Identity::new(cluster, principal)
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Checks a cluster name: a lowercase DNS label (`[a-z0-9-]`, 1 to 63 characters, not
/// starting or ending with `-`).
pub fn validate_cluster(cluster: &str) -> Result<(), PkiError> {
    if is_dns_label(cluster) {
        Ok(())
    } else {
        Err(PkiError::InvalidName {
            what: "cluster name",
            value: cluster.to_owned(),
            rule: "a lowercase DNS label: [a-z0-9-], 1 to 63 characters, not starting or ending with '-'",
        })
    }
}

/// Checks a controller id: a lowercase DNS label, as for cluster names.
pub fn validate_controller_id(id: &str) -> Result<(), PkiError> {
    if is_dns_label(id) {
        Ok(())
    } else {
        Err(PkiError::InvalidName {
            what: "controller id",
            value: id.to_owned(),
            rule: "a lowercase DNS label: [a-z0-9-], 1 to 63 characters, not starting or ending with '-'",
        })
    }
}

/// Checks an operator name: `[a-z0-9._-]`, 1 to 64 characters, starting with a letter
/// or digit (so `.` and `..` are never names).
pub fn validate_operator_name(name: &str) -> Result<(), PkiError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_OPERATOR_NAME_LEN
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_' || b == b'-'
        });
    if ok {
        Ok(())
    } else {
        Err(PkiError::InvalidName {
            what: "operator name",
            value: name.to_owned(),
            rule: "[a-z0-9._-], 1 to 64 characters, starting with a lowercase letter or digit",
        })
    }
}

/// Parses a `host_id`: a UUID in its canonical lowercase hyphenated form only.
pub fn parse_host_id(s: &str) -> Result<Uuid, PkiError> {
    let bad = || PkiError::InvalidName {
        what: "host id",
        value: s.to_owned(),
        rule: "a UUID in lowercase hyphenated form (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
    };
    let uuid = Uuid::parse_str(s).map_err(|_| bad())?;
    if uuid.hyphenated().to_string() == s {
        Ok(uuid)
    } else {
        Err(bad())
    }
}

/// A name a server is reached by, carried as a DNS or IP SAN.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostName {
    /// A DNS name (lowercase labels separated by dots).
    Dns(String),
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostName::Dns(name) => f.write_str(name),
            HostName::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

impl FromStr for HostName {
    type Err = PkiError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unbracketed = s
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or(s);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return Ok(HostName::Ip(ip));
        }
        let name = s.strip_suffix('.').unwrap_or(s);
        if name.len() <= 253 && name.split('.').all(is_dns_label) {
            Ok(HostName::Dns(name.to_owned()))
        } else {
            Err(PkiError::InvalidName {
                what: "host name",
                value: s.to_owned(),
                rule: "an IP address or a lowercase DNS name",
            })
        }
    }
}

/// A controller and the address it serves on, written `ID=HOST:PORT`
/// (`c1=10.0.0.1:7000`, `c2=ctl2.example.net:7000`, `c3=[fd00::3]:7000`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerEndpoint {
    /// The controller's id.
    pub id: String,
    /// The host part, which becomes a DNS or IP SAN of its certificate.
    pub host: HostName,
    /// The port it serves on.
    pub port: u16,
}

impl fmt::Display for ControllerEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            HostName::Ip(IpAddr::V6(ip)) => write!(f, "{}=[{ip}]:{}", self.id, self.port),
            host => write!(f, "{}={host}:{}", self.id, self.port),
        }
    }
}

impl FromStr for ControllerEndpoint {
    type Err = PkiError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: String| PkiError::InvalidEndpoint {
            value: s.to_owned(),
            reason: why,
        };
        let (id, addr) = s
            .split_once('=')
            .ok_or_else(|| bad("expected ID=HOST:PORT".to_owned()))?;
        validate_controller_id(id).map_err(|e| bad(e.to_string()))?;
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| bad("expected ID=HOST:PORT (missing :PORT)".to_owned()))?;
        if host.contains(':') && !host.starts_with('[') {
            return Err(bad(
                "write an IPv6 address in brackets: ID=[ADDR]:PORT".to_owned()
            ));
        }
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad(format!("port {port:?} is not a number from 1 to 65535")))?;
        let host: HostName = host.parse().map_err(|e: PkiError| bad(e.to_string()))?;
        Ok(ControllerEndpoint {
            id: id.to_owned(),
            host,
            port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_round_trips() {
        let host = Uuid::new_v4();
        for id in [
            Identity::controller("prod", "c1").unwrap(),
            Identity::agent("prod", host).unwrap(),
            Identity::operator("prod", "alice.b_c-1").unwrap(),
            Identity::operator_with_role("prod", "viewer", OperatorRole::Viewer).unwrap(),
        ] {
            let text = id.to_string();
            assert_eq!(text.parse::<Identity>().unwrap(), id, "{text}");
        }
        assert_eq!(
            Identity::agent("prod", host).unwrap().to_string(),
            format!("zonefleet://prod/agent/{host}")
        );
    }

    #[test]
    fn operator_roles_in_the_uri() {
        // The form every operator certificate had before roles: an admin.
        let old: Identity = "zonefleet://prod/operator/alice".parse().unwrap();
        assert_eq!(
            old.principal(),
            &Principal::Operator {
                name: "alice".into(),
                role: OperatorRole::Admin
            }
        );
        assert_eq!(old, Identity::operator("prod", "alice").unwrap());
        assert_eq!(old.file_stem(), "operator-alice");
        let viewer = Identity::operator_with_role("prod", "alice", OperatorRole::Viewer).unwrap();
        assert_eq!(viewer.to_string(), "zonefleet://prod/operator/viewer/alice");
        assert_eq!(viewer.file_stem(), "viewer-alice");
        // An admin named `viewer` is not a viewer.
        let named_viewer: Identity = "zonefleet://prod/operator/viewer".parse().unwrap();
        assert_eq!(named_viewer, Identity::operator("prod", "viewer").unwrap());
        assert_eq!(
            "viewer".parse::<OperatorRole>().unwrap(),
            OperatorRole::Viewer
        );
        assert!("root".parse::<OperatorRole>().is_err());
    }

    #[test]
    fn identity_parsing_is_strict() {
        for bad in [
            "zonefleet://prod/controller/c1/",
            "zonefleet://prod/controller/",
            "zonefleet://Prod/controller/c1",
            "zonefleet://prod/controller/C1",
            "zonefleet://prod:1/controller/c1",
            "zonefleet://prod/controller/c1?x",
            "zonefleet://prod/admin/c1",
            "zonefleet://prod/agent/not-a-uuid",
            "zonefleet://prod/agent/0B7C3A4E-1D2F-4C55-9A8E-3F2B1C0D9E8F",
            "zonefleet://prod/agent/0b7c3a4e1d2f4c559a8e3f2b1c0d9e8f",
            "zonefleet://prod/operator/..",
            "zonefleet://prod/operator/.hidden",
            "zonefleet://prod/operator/admin/alice",
            "zonefleet://prod/operator/root/alice",
            "zonefleet://prod/operator/viewer/",
            "zonefleet://prod/operator/viewer/alice/x",
            "zonefleet://prod/controller/viewer/c1",
            "zonefleet://-prod/operator/a",
            "https://prod/operator/a",
            "zonefleet:/prod/operator/a",
            "",
        ] {
            assert!(bad.parse::<Identity>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn names_are_validated() {
        assert!(validate_cluster("prod-1").is_ok());
        for bad in ["", "../x", "a/b", "A", "-a", "a-", "a.b", &"a".repeat(64)] {
            assert!(validate_cluster(bad).is_err(), "{bad:?}");
        }
        assert!(validate_operator_name("admin").is_ok());
        for bad in ["", ".", "..", "-x", "a/b", "Admin", "a b", &"a".repeat(65)] {
            assert!(validate_operator_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn controller_endpoints_parse() {
        let e: ControllerEndpoint = "c1=10.0.0.1:7000".parse().unwrap();
        assert_eq!(e.host, HostName::Ip("10.0.0.1".parse().unwrap()));
        assert_eq!(e.port, 7000);
        let e: ControllerEndpoint = "c2=[fd00::2]:7000".parse().unwrap();
        assert_eq!(e.host, HostName::Ip("fd00::2".parse().unwrap()));
        assert_eq!(e.to_string(), "c2=[fd00::2]:7000");
        let e: ControllerEndpoint = "c3=ctl3.example.net:7000".parse().unwrap();
        assert_eq!(e.host, HostName::Dns("ctl3.example.net".into()));
        for bad in [
            "nope",
            "c1=",
            "c1=host",
            "c1=host:0",
            "c1=host:99999",
            "C1=host:1",
            "c1=fd00::2:7000",
            "c1=bad_host:7000",
            "=host:1",
        ] {
            let err = bad.parse::<ControllerEndpoint>().unwrap_err().to_string();
            assert!(err.contains(bad), "{bad:?}: {err}");
        }
    }
}
