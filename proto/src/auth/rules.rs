//! The one table deciding which roles may call which RPC.

use tonic::Status;

use super::{Role, RoleKind};

/// One RPC and the roles allowed to call it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcRule {
    /// The full gRPC method path, e.g. `/zonefleet.v1.Operator/CreateZones`.
    pub method: &'static str,
    /// Who may call it.
    pub allowed: &'static [RoleKind],
}

impl RpcRule {
    /// Whether `kind` may call this RPC.
    pub fn allows(&self, kind: RoleKind) -> bool {
        self.allowed.contains(&kind)
    }
}

const fn rule(method: &'static str, allowed: &'static [RoleKind]) -> RpcRule {
    RpcRule { method, allowed }
}

const OPERATORS: &[RoleKind] = &[RoleKind::Operator];
const AGENTS: &[RoleKind] = &[RoleKind::Agent];
const CONTROLLERS: &[RoleKind] = &[RoleKind::Controller];
const OPERATORS_AND_CONTROLLERS: &[RoleKind] = &[RoleKind::Controller, RoleKind::Operator];
const ANYONE: &[RoleKind] = &[
    RoleKind::Controller,
    RoleKind::Agent,
    RoleKind::Operator,
    RoleKind::Anonymous,
];

/// Every RPC of the contract and who may call it. A method not listed is refused.
///
/// * `Operator` service: operators only (only operators change desired state).
/// * `Control.Enroll`: anyone, including callers without a certificate (the join token
///   is checked by the handler).
/// * other `Control` RPCs: agents only (handlers also call [`Role::require_host`]).
/// * `Agent` service: operators and controllers.
/// * `Raft` service: controllers only.
///
/// A unit test checks this table against `pb::FILE_DESCRIPTOR_SET` both ways, and
/// another that `docs/security.md` contains [`role_table_markdown`].
pub const RPC_RULES: &[RpcRule] = &[
    // service Operator
    rule("/zonefleet.v1.Operator/CreateZones", OPERATORS),
    rule("/zonefleet.v1.Operator/GetZone", OPERATORS),
    rule("/zonefleet.v1.Operator/ListZones", OPERATORS),
    rule("/zonefleet.v1.Operator/UpdateZone", OPERATORS),
    rule("/zonefleet.v1.Operator/StopZone", OPERATORS),
    rule("/zonefleet.v1.Operator/StartZone", OPERATORS),
    rule("/zonefleet.v1.Operator/RebootZone", OPERATORS),
    rule("/zonefleet.v1.Operator/DeleteZone", OPERATORS),
    rule("/zonefleet.v1.Operator/ListHosts", OPERATORS),
    rule("/zonefleet.v1.Operator/GetHost", OPERATORS),
    rule("/zonefleet.v1.Operator/CordonHost", OPERATORS),
    rule("/zonefleet.v1.Operator/UncordonHost", OPERATORS),
    rule("/zonefleet.v1.Operator/DrainHost", OPERATORS),
    rule("/zonefleet.v1.Operator/SetHostInventory", OPERATORS),
    rule("/zonefleet.v1.Operator/ListImages", OPERATORS),
    rule("/zonefleet.v1.Operator/CreateNetwork", OPERATORS),
    rule("/zonefleet.v1.Operator/ListNetworks", OPERATORS),
    rule("/zonefleet.v1.Operator/DeleteNetwork", OPERATORS),
    rule("/zonefleet.v1.Operator/CreateJoinToken", OPERATORS),
    rule("/zonefleet.v1.Operator/ClusterStatus", OPERATORS),
    rule("/zonefleet.v1.Operator/AddController", OPERATORS),
    rule("/zonefleet.v1.Operator/RemoveController", OPERATORS),
    rule("/zonefleet.v1.Operator/GetFleetSettings", OPERATORS),
    rule("/zonefleet.v1.Operator/SetFleetSettings", OPERATORS),
    rule("/zonefleet.v1.Operator/RescheduleZone", OPERATORS),
    // service Control
    rule("/zonefleet.v1.Control/Enroll", ANYONE),
    rule("/zonefleet.v1.Control/RenewCertificate", AGENTS),
    rule("/zonefleet.v1.Control/Register", AGENTS),
    rule("/zonefleet.v1.Control/Heartbeat", AGENTS),
    rule("/zonefleet.v1.Control/WatchAssignments", AGENTS),
    rule("/zonefleet.v1.Control/ReportZoneState", AGENTS),
    // service Agent
    rule("/zonefleet.v1.Agent/Exec", OPERATORS_AND_CONTROLLERS),
    rule("/zonefleet.v1.Agent/Logs", OPERATORS_AND_CONTROLLERS),
    rule("/zonefleet.v1.Agent/LocalStatus", OPERATORS_AND_CONTROLLERS),
    // service Raft
    rule("/zonefleet.v1.Raft/AppendEntries", CONTROLLERS),
    rule("/zonefleet.v1.Raft/Vote", CONTROLLERS),
    rule("/zonefleet.v1.Raft/InstallSnapshot", CONTROLLERS),
    rule("/zonefleet.v1.Raft/ForwardWrite", CONTROLLERS),
    rule("/zonefleet.v1.Raft/ReadIndex", CONTROLLERS),
];

/// The rule for a full method path, if the method is known.
pub fn rule_for(method: &str) -> Option<&'static RpcRule> {
    RPC_RULES.iter().find(|r| r.method == method)
}

/// Decides whether `role` may call `method`: `UNAUTHENTICATED` for an anonymous caller
/// of anything it may not call, `PERMISSION_DENIED` for anyone else (and for a method
/// not in [`RPC_RULES`]).
pub fn authorize(role: &Role, method: &str) -> Result<(), Status> {
    match rule_for(method) {
        Some(rule) if rule.allows(role.kind()) => Ok(()),
        _ if *role == Role::Anonymous => Err(Status::unauthenticated(format!(
            "{method} requires a client certificate"
        ))),
        Some(_) => Err(Status::permission_denied(format!(
            "{role} may not call {method}"
        ))),
        None => Err(Status::permission_denied(format!(
            "{method} is not a zonefleet RPC"
        ))),
    }
}

/// [`RPC_RULES`] as a Markdown table (`| RPC | allowed roles |`), as copied into
/// `docs/security.md`.
pub fn role_table_markdown() -> String {
    let mut out = String::from("| RPC | allowed roles |\n|---|---|\n");
    for rule in RPC_RULES {
        let roles: Vec<&str> = rule.allowed.iter().map(|k| k.as_str()).collect();
        out.push_str(&format!("| `{}` | {} |\n", rule.method, roles.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use prost::Message;

    use super::*;
    use crate::pb::FILE_DESCRIPTOR_SET;

    // Just enough of descriptor.proto to list the RPCs (prost skips the other fields).
    #[derive(Clone, PartialEq, Message)]
    struct FileDescriptorSet {
        #[prost(message, repeated, tag = "1")]
        file: Vec<FileDescriptorProto>,
    }
    #[derive(Clone, PartialEq, Message)]
    struct FileDescriptorProto {
        #[prost(string, optional, tag = "2")]
        package: Option<String>,
        #[prost(message, repeated, tag = "6")]
        service: Vec<ServiceDescriptorProto>,
    }
    #[derive(Clone, PartialEq, Message)]
    struct ServiceDescriptorProto {
        #[prost(string, optional, tag = "1")]
        name: Option<String>,
        #[prost(message, repeated, tag = "2")]
        method: Vec<MethodDescriptorProto>,
    }
    #[derive(Clone, PartialEq, Message)]
    struct MethodDescriptorProto {
        #[prost(string, optional, tag = "1")]
        name: Option<String>,
    }

    fn contract_methods() -> BTreeSet<String> {
        let set = FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).unwrap();
        let mut methods = BTreeSet::new();
        for file in set.file {
            let package = file.package.unwrap_or_default();
            for service in file.service {
                let service_name = service.name.unwrap_or_default();
                for method in service.method {
                    methods.insert(format!(
                        "/{package}.{service_name}/{}",
                        method.name.unwrap_or_default()
                    ));
                }
            }
        }
        methods
    }

    #[test]
    fn every_rpc_has_exactly_one_rule_and_every_rule_is_an_rpc() {
        let methods = contract_methods();
        assert!(methods.len() >= 30, "descriptor lists {methods:?}");
        let rules: Vec<&str> = RPC_RULES.iter().map(|r| r.method).collect();
        let unique: BTreeSet<String> = rules.iter().map(|m| m.to_string()).collect();
        assert_eq!(unique.len(), rules.len(), "a method has two rules");
        let missing: Vec<_> = methods.difference(&unique).collect();
        assert!(missing.is_empty(), "RPCs without a rule: {missing:?}");
        let stale: Vec<_> = unique.difference(&methods).collect();
        assert!(stale.is_empty(), "rules naming no RPC: {stale:?}");
        assert!(RPC_RULES.iter().all(|r| !r.allowed.is_empty()));
    }

    #[test]
    fn the_policy() {
        let op = Role::Operator("admin".into());
        let agent = Role::Agent(uuid::Uuid::new_v4());
        let ctl = Role::Controller("c1".into());
        let anon = Role::Anonymous;
        let code = |role: &Role, m: &str| match authorize(role, m) {
            Result::Ok(()) => tonic::Code::Ok,
            Err(s) => s.code(),
        };
        use tonic::Code::{Ok, PermissionDenied, Unauthenticated};
        for rule in RPC_RULES {
            let m = rule.method;
            let (o, a, c, n) = (code(&op, m), code(&agent, m), code(&ctl, m), code(&anon, m));
            if m.starts_with("/zonefleet.v1.Operator/") {
                assert_eq!(
                    (o, a, c, n),
                    (Ok, PermissionDenied, PermissionDenied, Unauthenticated),
                    "{m}"
                );
            } else if m == "/zonefleet.v1.Control/Enroll" {
                assert_eq!((o, a, c, n), (Ok, Ok, Ok, Ok), "{m}");
            } else if m.starts_with("/zonefleet.v1.Control/") {
                assert_eq!(
                    (o, a, c, n),
                    (PermissionDenied, Ok, PermissionDenied, Unauthenticated),
                    "{m}"
                );
            } else if m.starts_with("/zonefleet.v1.Agent/") {
                assert_eq!(
                    (o, a, c, n),
                    (Ok, PermissionDenied, Ok, Unauthenticated),
                    "{m}"
                );
            } else if m.starts_with("/zonefleet.v1.Raft/") {
                assert_eq!(
                    (o, a, c, n),
                    (PermissionDenied, PermissionDenied, Ok, Unauthenticated),
                    "{m}"
                );
            } else {
                panic!("rule for an unexpected service: {m}");
            }
        }
        for unknown in [
            "/zonefleet.v1.Operator/Nope",
            "/grpc.health.v1.Health/Check",
            "/",
            "",
        ] {
            assert_eq!(code(&op, unknown), PermissionDenied);
            assert_eq!(code(&ctl, unknown), PermissionDenied);
            assert_eq!(code(&anon, unknown), Unauthenticated);
        }
    }

    #[test]
    fn docs_carry_the_current_table() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/security.md");
        let doc = std::fs::read_to_string(&path).unwrap();
        assert!(
            doc.contains(&role_table_markdown()),
            "{} is out of date: paste `role_table_markdown()` into it:\n{}",
            path.display(),
            role_table_markdown()
        );
    }
}
