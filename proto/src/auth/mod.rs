//! Roles and per-RPC authorization.
//!
//! The peer certificate (already verified at the TLS handshake, see [`crate::tls`])
//! maps to a [`Role`]. [`RoleLayer`], applied with `Server::builder().layer(...)`,
//! puts that role into the request extensions for handlers and refuses any RPC the
//! role may not call, deciding from the one table [`RPC_RULES`], and writes the audit
//! line of every call the table marks as a write (see [`audit`]).

pub mod audit;
mod contract;
mod layer;
mod rules;

use std::fmt;

use rustls_pki_types::CertificateDer;
use tonic::Status;
use uuid::Uuid;

use crate::pki::{identity_from_cert_der, OperatorRole, PkiError, Principal};

pub use layer::{RoleLayer, RoleService};
pub use rules::{authorize, role_table_markdown, rule_for, Access, RpcRule, RPC_RULES};

/// Errors mapping a certificate to a role.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The certificate carries no usable fleet identity.
    #[error("peer certificate: {0}")]
    NoIdentity(PkiError),
    /// The identity belongs to another cluster.
    #[error("peer identity {identity} is not of cluster {cluster:?}")]
    WrongCluster {
        /// This node's cluster.
        cluster: String,
        /// The identity presented.
        identity: String,
    },
}

/// Who is calling, as far as authorization is concerned.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Role {
    /// A controller, by id.
    Controller(String),
    /// The agent of a host.
    Agent(Uuid),
    /// An operator, by name, with the role its certificate grants.
    Operator {
        /// The operator's name.
        name: String,
        /// What the certificate lets the operator do.
        role: OperatorRole,
    },
    /// No client certificate (only enrollment is open to it).
    Anonymous,
}

/// A role without its id: what the rule table speaks of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RoleKind {
    /// Any controller.
    Controller,
    /// Any agent.
    Agent,
    /// An operator with every operator right ([`OperatorRole::Admin`]).
    Admin,
    /// A read-only operator ([`OperatorRole::Viewer`]).
    Viewer,
    /// A caller without a client certificate.
    Anonymous,
}

impl RoleKind {
    /// Lowercase name, as in the documentation's table.
    pub fn as_str(self) -> &'static str {
        match self {
            RoleKind::Controller => "controller",
            RoleKind::Agent => "agent",
            RoleKind::Admin => "admin",
            RoleKind::Viewer => "viewer",
            RoleKind::Anonymous => "anonymous",
        }
    }
}

impl From<OperatorRole> for RoleKind {
    fn from(role: OperatorRole) -> Self {
        match role {
            OperatorRole::Admin => RoleKind::Admin,
            OperatorRole::Viewer => RoleKind::Viewer,
        }
    }
}

impl fmt::Display for RoleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Controller(id) => write!(f, "controller {id}"),
            Role::Agent(host) => write!(f, "agent {host}"),
            Role::Operator {
                name,
                role: OperatorRole::Admin,
            } => write!(f, "operator {name}"),
            Role::Operator { name, role } => write!(f, "operator {name} ({role})"),
            Role::Anonymous => f.write_str("anonymous"),
        }
    }
}

impl Role {
    /// The role of a peer certificate (DER) for a node of `cluster`.
    pub fn from_cert_der(cluster: &str, der: &[u8]) -> Result<Role, AuthError> {
        let identity = identity_from_cert_der(der).map_err(AuthError::NoIdentity)?;
        if identity.cluster() != cluster {
            return Err(AuthError::WrongCluster {
                cluster: cluster.to_owned(),
                identity: identity.to_string(),
            });
        }
        Ok(match identity.principal() {
            Principal::Controller(id) => Role::Controller(id.clone()),
            Principal::Agent(host) => Role::Agent(*host),
            Principal::Operator { name, role } => Role::Operator {
                name: name.clone(),
                role: *role,
            },
        })
    }

    /// The role of a TLS peer: its end-entity certificate's, or `Anonymous` when it
    /// presented none.
    pub fn from_peer_certs(
        cluster: &str,
        certs: Option<&[CertificateDer<'_>]>,
    ) -> Result<Role, AuthError> {
        match certs.and_then(|c| c.first()) {
            Some(leaf) => Self::from_cert_der(cluster, leaf),
            None => Ok(Role::Anonymous),
        }
    }

    /// The role [`RoleLayer`] put into a request. A request without one was not served
    /// behind the layer: that is refused as `UNAUTHENTICATED`, never treated as trusted.
    pub fn from_request<T>(request: &tonic::Request<T>) -> Result<&Role, Status> {
        request
            .extensions()
            .get::<Role>()
            .ok_or_else(|| Status::unauthenticated("no caller role (server misconfigured)"))
    }

    /// The kind of this role.
    pub fn kind(&self) -> RoleKind {
        match self {
            Role::Controller(_) => RoleKind::Controller,
            Role::Agent(_) => RoleKind::Agent,
            Role::Operator { role, .. } => (*role).into(),
            Role::Anonymous => RoleKind::Anonymous,
        }
    }

    /// Succeeds only for the agent of `host_id`: an agent may only read and report for
    /// its own host. Anyone else gets `PERMISSION_DENIED` (a malformed `host_id`,
    /// `INVALID_ARGUMENT`).
    pub fn require_host(&self, host_id: &str) -> Result<(), Status> {
        let wanted = crate::pki::parse_host_id(host_id)
            .map_err(|e| Status::invalid_argument(format!("host_id: {e}")))?;
        match self {
            Role::Agent(host) if *host == wanted => Ok(()),
            Role::Agent(host) => Err(Status::permission_denied(format!(
                "agent {host} may not act for host {wanted}"
            ))),
            other => Err(Status::permission_denied(format!(
                "{other} is not the agent of host {wanted}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{FleetCa, Validity};

    #[test]
    fn roles_from_certificates() {
        let ca = FleetCa::generate("prod").unwrap();
        let v = Validity::days(1).unwrap();
        let host = Uuid::new_v4();
        let agent = ca.issue_agent(host, &[], v).unwrap();
        assert_eq!(
            Role::from_cert_der("prod", &agent.cert_der).unwrap(),
            Role::Agent(host)
        );
        assert!(matches!(
            Role::from_cert_der("other", &agent.cert_der),
            Err(AuthError::WrongCluster { .. })
        ));
        let op = ca.issue_operator("alice", v).unwrap();
        assert_eq!(
            Role::from_peer_certs("prod", Some(&[op.cert_der])).unwrap(),
            Role::Operator {
                name: "alice".into(),
                role: OperatorRole::Admin
            }
        );
        let viewer = ca
            .issue_operator_with_role("bob", OperatorRole::Viewer, v)
            .unwrap();
        let role = Role::from_cert_der("prod", &viewer.cert_der).unwrap();
        assert_eq!(role.kind(), RoleKind::Viewer);
        assert_eq!(role.to_string(), "operator bob (viewer)");
        assert_eq!(
            Role::from_peer_certs("prod", None).unwrap(),
            Role::Anonymous
        );
        assert_eq!(
            Role::from_peer_certs("prod", Some(&[])).unwrap(),
            Role::Anonymous
        );
        assert!(Role::from_cert_der("prod", ca.cert_der()).is_err());
    }

    #[test]
    fn require_host() {
        let host = Uuid::new_v4();
        let other = Uuid::new_v4();
        let agent = Role::Agent(host);
        assert!(agent.require_host(&host.to_string()).is_ok());
        assert_eq!(
            agent.require_host(&other.to_string()).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
        assert_eq!(
            agent.require_host("nope").unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        for role in [
            Role::Operator {
                name: "admin".into(),
                role: OperatorRole::Admin,
            },
            Role::Controller("c1".into()),
            Role::Anonymous,
        ] {
            assert_eq!(
                role.require_host(&host.to_string()).unwrap_err().code(),
                tonic::Code::PermissionDenied
            );
        }
    }
}
