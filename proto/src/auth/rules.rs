//! The one table deciding which roles may call which RPC.

use tonic::Status;

use super::{Role, RoleKind};

/// What an RPC does to the fleet: whether it changes anything and whether each call is
/// written to the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Changes nothing (a viewer may be allowed it).
    Read,
    /// Changes desired state, the fleet's trust or a zone: every call is audited (see
    /// [`super::audit`]). `target` is the dotted path of the request field naming what
    /// it acts on (`zone`, `spec.alias`), written into the audit line, if there is one.
    Write {
        /// Dotted path of the request message's string field naming the target.
        target: Option<&'static str>,
    },
    /// The fleet's own traffic, at a rate no audit line per call could follow: agents
    /// reporting observed state, Raft replication between members. It changes state,
    /// but never desired state on an operator's behalf.
    Internal,
}

impl Access {
    /// Whether calls are audited.
    pub fn is_write(self) -> bool {
        matches!(self, Access::Write { .. })
    }
}

/// One RPC, the roles allowed to call it and what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcRule {
    /// The full gRPC method path, e.g. `/zonefleet.v1.Operator/CreateZones`.
    pub method: &'static str,
    /// Who may call it.
    pub allowed: &'static [RoleKind],
    /// Whether it changes anything, and so whether it is audited.
    pub access: Access,
}

impl RpcRule {
    /// Whether `kind` may call this RPC.
    pub fn allows(&self, kind: RoleKind) -> bool {
        self.allowed.contains(&kind)
    }
}

const fn read(method: &'static str, allowed: &'static [RoleKind]) -> RpcRule {
    RpcRule {
        method,
        allowed,
        access: Access::Read,
    }
}

const fn write(
    method: &'static str,
    allowed: &'static [RoleKind],
    target: &'static str,
) -> RpcRule {
    RpcRule {
        method,
        allowed,
        access: Access::Write {
            target: Some(target),
        },
    }
}

const fn write_untargeted(method: &'static str, allowed: &'static [RoleKind]) -> RpcRule {
    RpcRule {
        method,
        allowed,
        access: Access::Write { target: None },
    }
}

const fn internal(method: &'static str, allowed: &'static [RoleKind]) -> RpcRule {
    RpcRule {
        method,
        allowed,
        access: Access::Internal,
    }
}

/// Every operator, whatever its role.
const OPERATORS: &[RoleKind] = &[RoleKind::Admin, RoleKind::Viewer];
const ADMINS: &[RoleKind] = &[RoleKind::Admin];
const AGENTS: &[RoleKind] = &[RoleKind::Agent];
const CONTROLLERS: &[RoleKind] = &[RoleKind::Controller];
const OPERATORS_AND_CONTROLLERS: &[RoleKind] =
    &[RoleKind::Controller, RoleKind::Admin, RoleKind::Viewer];
const ADMINS_AND_CONTROLLERS: &[RoleKind] = &[RoleKind::Controller, RoleKind::Admin];
const ANYONE: &[RoleKind] = &[
    RoleKind::Controller,
    RoleKind::Agent,
    RoleKind::Admin,
    RoleKind::Viewer,
    RoleKind::Anonymous,
];

/// Every RPC of the contract, who may call it and what it does. A method not listed is
/// refused.
///
/// * `Operator` service: operators only (only operators change desired state); the
///   reads to every operator, the writes to admins only.
/// * `Control.Enroll`: anyone, including callers without a certificate (the join token
///   is checked by the handler).
/// * other `Control` RPCs: agents only (handlers also call [`Role::require_host`]).
/// * `Agent` service: operators and controllers; `Exec` (which acts inside a zone)
///   admins and controllers only.
/// * `Raft` service: controllers only.
///
/// A unit test checks this table against `pb::FILE_DESCRIPTOR_SET` both ways (and each
/// write's target against its request message), and another that `docs/security.md`
/// contains [`role_table_markdown`].
pub const RPC_RULES: &[RpcRule] = &[
    // service Operator
    write("/zonefleet.v1.Operator/CreateZones", ADMINS, "spec.alias"),
    read("/zonefleet.v1.Operator/GetZone", OPERATORS),
    read("/zonefleet.v1.Operator/ListZones", OPERATORS),
    write("/zonefleet.v1.Operator/UpdateZone", ADMINS, "zone"),
    write("/zonefleet.v1.Operator/StopZone", ADMINS, "zone"),
    write("/zonefleet.v1.Operator/StartZone", ADMINS, "zone"),
    write("/zonefleet.v1.Operator/RebootZone", ADMINS, "zone"),
    write("/zonefleet.v1.Operator/DeleteZone", ADMINS, "zone"),
    read("/zonefleet.v1.Operator/ListHosts", OPERATORS),
    read("/zonefleet.v1.Operator/GetHost", OPERATORS),
    write("/zonefleet.v1.Operator/CordonHost", ADMINS, "host_id"),
    write("/zonefleet.v1.Operator/UncordonHost", ADMINS, "host_id"),
    write("/zonefleet.v1.Operator/DrainHost", ADMINS, "host_id"),
    write("/zonefleet.v1.Operator/SetHostInventory", ADMINS, "host_id"),
    read("/zonefleet.v1.Operator/ListImages", OPERATORS),
    write("/zonefleet.v1.Operator/ImportImage", ADMINS, "start.name"),
    read("/zonefleet.v1.Operator/GetImage", OPERATORS),
    write("/zonefleet.v1.Operator/DeleteImage", ADMINS, "image"),
    write("/zonefleet.v1.Operator/CreateNetwork", ADMINS, "name"),
    read("/zonefleet.v1.Operator/ListNetworks", OPERATORS),
    write("/zonefleet.v1.Operator/DeleteNetwork", ADMINS, "network"),
    write("/zonefleet.v1.Operator/CreateJoinToken", ADMINS, "rack"),
    // Token metadata (racks, labels, who enrolled) is for admins only.
    read("/zonefleet.v1.Operator/ListJoinTokens", ADMINS),
    write("/zonefleet.v1.Operator/RevokeJoinToken", ADMINS, "id"),
    read("/zonefleet.v1.Operator/ClusterStatus", OPERATORS),
    write("/zonefleet.v1.Operator/AddController", ADMINS, "id"),
    write("/zonefleet.v1.Operator/RemoveController", ADMINS, "id"),
    read("/zonefleet.v1.Operator/GetFleetSettings", OPERATORS),
    write_untargeted("/zonefleet.v1.Operator/SetFleetSettings", ADMINS),
    write("/zonefleet.v1.Operator/RescheduleZone", ADMINS, "zone"),
    write_untargeted("/zonefleet.v1.Operator/RevokeCertificate", ADMINS),
    read("/zonefleet.v1.Operator/ListRevocations", OPERATORS),
    write_untargeted("/zonefleet.v1.Operator/ResumeRescheduling", ADMINS),
    read("/zonefleet.v1.Operator/WatchEvents", OPERATORS),
    // service Control
    write("/zonefleet.v1.Control/Enroll", ANYONE, "host_id"),
    write_untargeted("/zonefleet.v1.Control/RenewCertificate", AGENTS),
    internal("/zonefleet.v1.Control/Register", AGENTS),
    internal("/zonefleet.v1.Control/Heartbeat", AGENTS),
    read("/zonefleet.v1.Control/WatchAssignments", AGENTS),
    internal("/zonefleet.v1.Control/ReportZoneState", AGENTS),
    // Only images a zone assigned to the caller's host uses (the handler checks).
    read("/zonefleet.v1.Control/DownloadImage", AGENTS),
    // service Agent
    write(
        "/zonefleet.v1.Agent/Exec",
        ADMINS_AND_CONTROLLERS,
        "start.zone",
    ),
    read("/zonefleet.v1.Agent/Logs", OPERATORS_AND_CONTROLLERS),
    read("/zonefleet.v1.Agent/LocalStatus", OPERATORS_AND_CONTROLLERS),
    // service Raft
    internal("/zonefleet.v1.Raft/AppendEntries", CONTROLLERS),
    internal("/zonefleet.v1.Raft/Vote", CONTROLLERS),
    internal("/zonefleet.v1.Raft/InstallSnapshot", CONTROLLERS),
    // A command from another member, not replication: audited on the leader too.
    write_untargeted("/zonefleet.v1.Raft/ForwardWrite", CONTROLLERS),
    read("/zonefleet.v1.Raft/ReadIndex", CONTROLLERS),
    // An agent's heartbeat a follower received, for the leader's lease table.
    internal("/zonefleet.v1.Raft/ForwardHeartbeat", CONTROLLERS),
    // Image blobs between controllers (outside the Raft log).
    internal("/zonefleet.v1.Raft/PutBlob", CONTROLLERS),
    internal("/zonefleet.v1.Raft/GetBlob", CONTROLLERS),
    // The leader's lease table, for a follower's host reads.
    read("/zonefleet.v1.Raft/HostLeases", CONTROLLERS),
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

/// [`RPC_RULES`] as a Markdown table (`| RPC | allowed roles | access |`), as copied
/// into `docs/security.md`.
pub fn role_table_markdown() -> String {
    let mut out = String::from("| RPC | allowed roles | access |\n|---|---|---|\n");
    for rule in RPC_RULES {
        let roles: Vec<&str> = rule.allowed.iter().map(|k| k.as_str()).collect();
        let access = match rule.access {
            Access::Read => "read".to_owned(),
            Access::Write { target: Some(t) } => format!("write, audited (target `{t}`)"),
            Access::Write { target: None } => "write, audited".to_owned(),
            Access::Internal => "internal".to_owned(),
        };
        out.push_str(&format!(
            "| `{}` | {} | {access} |\n",
            rule.method,
            roles.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::auth::contract;

    #[test]
    fn every_rpc_has_exactly_one_rule_and_every_rule_is_an_rpc() {
        let methods = contract::methods();
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
    fn every_write_target_is_a_string_field_of_its_request() {
        for rule in RPC_RULES {
            if let Access::Write {
                target: Some(target),
            } = rule.access
            {
                assert!(
                    contract::string_field_numbers(rule.method, target).is_some(),
                    "{}: {target:?} is not a string field of its request",
                    rule.method
                );
            }
        }
    }

    #[test]
    fn the_policy() {
        use crate::pki::OperatorRole;
        let admin = Role::Operator {
            name: "admin".into(),
            role: OperatorRole::Admin,
        };
        let viewer = Role::Operator {
            name: "bob".into(),
            role: OperatorRole::Viewer,
        };
        let agent = Role::Agent(uuid::Uuid::new_v4());
        let ctl = Role::Controller("c1".into());
        let anon = Role::Anonymous;
        let code = |role: &Role, m: &str| match authorize(role, m) {
            Result::Ok(()) => tonic::Code::Ok,
            Err(s) => s.code(),
        };
        use tonic::Code::{Ok, PermissionDenied, Unauthenticated};
        let reads = [
            "GetZone",
            "ListZones",
            "ListHosts",
            "GetHost",
            "ListImages",
            "GetImage",
            "ListNetworks",
            "ClusterStatus",
            "GetFleetSettings",
            "ListRevocations",
            "WatchEvents",
            "ListJoinTokens",
        ];
        // Reads only admins may make.
        let admin_reads = ["ListJoinTokens"];
        for rule in RPC_RULES {
            let m = rule.method;
            let codes = (
                code(&admin, m),
                code(&viewer, m),
                code(&agent, m),
                code(&ctl, m),
                code(&anon, m),
            );
            // A viewer is never allowed anything that changes state, beyond what is open
            // to callers without a certificate (enrollment, which needs a join token).
            if rule.allows(RoleKind::Viewer) && !rule.allows(RoleKind::Anonymous) {
                assert_eq!(rule.access, Access::Read, "{m}");
            }
            if let Some(name) = m.strip_prefix("/zonefleet.v1.Operator/") {
                let read = reads.contains(&name);
                assert_eq!(rule.access == Access::Read, read, "{m}");
                assert!(rule.access.is_write() || read, "{m}");
                let viewer_code = if read && !admin_reads.contains(&name) {
                    Ok
                } else {
                    PermissionDenied
                };
                assert_eq!(
                    codes,
                    (
                        Ok,
                        viewer_code,
                        PermissionDenied,
                        PermissionDenied,
                        Unauthenticated
                    ),
                    "{m}"
                );
            } else if m == "/zonefleet.v1.Control/Enroll" {
                assert_eq!(codes, (Ok, Ok, Ok, Ok, Ok), "{m}");
            } else if m.starts_with("/zonefleet.v1.Control/") {
                assert_eq!(
                    codes,
                    (
                        PermissionDenied,
                        PermissionDenied,
                        Ok,
                        PermissionDenied,
                        Unauthenticated
                    ),
                    "{m}"
                );
            } else if m == "/zonefleet.v1.Agent/Exec" {
                assert_eq!(
                    codes,
                    (Ok, PermissionDenied, PermissionDenied, Ok, Unauthenticated),
                    "{m}"
                );
            } else if m.starts_with("/zonefleet.v1.Agent/") {
                assert_eq!(
                    codes,
                    (Ok, Ok, PermissionDenied, Ok, Unauthenticated),
                    "{m}"
                );
            } else if m.starts_with("/zonefleet.v1.Raft/") {
                assert_eq!(
                    codes,
                    (
                        PermissionDenied,
                        PermissionDenied,
                        PermissionDenied,
                        Ok,
                        Unauthenticated
                    ),
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
            assert_eq!(code(&admin, unknown), PermissionDenied);
            assert_eq!(code(&viewer, unknown), PermissionDenied);
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
