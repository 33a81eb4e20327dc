//! `zfadm pki`: create the fleet CA and issue certificates (local files), and revoke
//! certificates and list the revocations (through the controllers).
//!
//! Files (see `docs/security.md`): `ca.crt` (the root), `offline/root-ca.key`,
//! `signing-ca.crt/.key`, `controller-<id>.crt/.key`, `operator-<name>.crt/.key`,
//! `agent-<host_id>.crt/.key`. Keys are written `0600`, never printed, and no existing
//! file is replaced without `--force`.

use std::collections::BTreeMap;

use super::connect::Connection;
use super::render::print_revocations;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use uuid::Uuid;
use zonefleet_proto::cli::Format;
use zonefleet_proto::pb;
use zonefleet_proto::pki::files::{self, OutputFile, Overwrite};
use zonefleet_proto::pki::{
    lifetime, parse_host_id, validate_cluster, validate_operator_name, ControllerEndpoint, FleetCa,
    HostName, IssuedCert, OperatorRole, PkiError, Principal, Validity, CA_VALIDITY_DAYS,
    SIGNING_CA_VALIDITY_DAYS,
};
use zonefleet_proto::tls::{normalize_serial, parse_revoked_identity, RevocationError};

/// `zfadm pki …`
#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Create a new fleet root CA and the signing CA it issues, a certificate for each
    /// controller and one operator certificate, and print the CA fingerprint. The root
    /// key goes to `offline/`: move it off this machine.
    Init(InitArgs),
    /// Issue one more certificate (controller, operator or agent) from the signing CA.
    Issue(IssueArgs),
    /// Issue the next signing CA from the root (before the current one expires, or
    /// after its key leaked); certificates it issued stay valid until they expire.
    RotateSigningCa(RotateArgs),
    /// Revoke one certificate (by serial) or every certificate of an identity: the
    /// controllers refuse it from the moment the revocation commits and close its open
    /// connections. Never undone (issue a new certificate instead). Admins only.
    Revoke(RevokeArgs),
    /// List the revocations: what, why, by whom and when.
    List,
}

/// Arguments of `zfadm pki revoke`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["identity", "serial"])))]
pub struct RevokeArgs {
    /// The identity whose every certificate is refused, e.g.
    /// `zonefleet://prod/operator/alice` (an operator is revoked whatever its role).
    #[arg(long, value_name = "URI", value_parser = parse_identity)]
    pub identity: Option<String>,
    /// The serial of one certificate, in hex as `openssl x509 -noout -serial` prints it.
    #[arg(long, value_name = "HEX", value_parser = parse_serial)]
    pub serial: Option<String>,
    /// Why (kept in the list).
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub reason: String,
}

fn parse_identity(s: &str) -> Result<String, RevocationError> {
    parse_revoked_identity(s).map(|i| i.to_string())
}

fn parse_serial(s: &str) -> Result<String, RevocationError> {
    normalize_serial(s)
}

/// Whether `command` talks to the controllers (the others work on local files).
pub fn is_remote(command: &PkiCommand) -> bool {
    matches!(command, PkiCommand::Revoke(_) | PkiCommand::List)
}

/// Runs `pki revoke` or `pki list` against the controllers.
pub async fn run_remote(
    conn: &Connection,
    output: Format,
    command: PkiCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let revocations = match command {
        PkiCommand::Revoke(args) => {
            let request = pb::RevokeCertificateRequest {
                serial: args.serial.unwrap_or_default(),
                identity: args.identity.unwrap_or_default(),
                reason: args.reason,
            };
            vec![
                conn.call(|mut c| {
                    let r = request.clone();
                    async move { c.revoke_certificate(r).await.map(|r| r.into_inner()) }
                })
                .await?,
            ]
        }
        PkiCommand::List => {
            conn.call(|mut c| async move {
                c.list_revocations(pb::ListRevocationsRequest::default())
                    .await
                    .map(|r| r.into_inner().revocations)
            })
            .await?
        }
        other => bail!("{other:?} is not a remote pki command"),
    };
    print_revocations(out, output, &revocations)
}

/// Arguments of `zfadm pki init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The cluster name (a lowercase DNS label), part of every identity.
    #[arg(long, value_name = "NAME", value_parser = parse_cluster)]
    pub cluster: String,
    /// The directory to write into (created 0700 if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// A controller and an address it serves on; repeat for each controller (repeat an
    /// ID to give it several addresses).
    #[arg(
        long = "controller",
        value_name = "ID=HOST:PORT",
        required = true,
        value_parser = parse_endpoint
    )]
    pub controllers: Vec<ControllerEndpoint>,
    /// The operator to issue an admin certificate for.
    #[arg(long, value_name = "NAME", default_value = "admin", value_parser = parse_operator)]
    pub operator: String,
    /// Validity of the controller and operator certificates, in days (default 90, at
    /// most 365; the root gets 10 years, the signing CA 3).
    #[arg(long, value_name = "N")]
    pub days: Option<i64>,
    /// Replace existing files.
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `zfadm pki rotate-signing-ca`.
#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The directory holding `ca.crt` and the signing CA files to replace.
    #[arg(long, value_name = "DIR")]
    pub ca_dir: PathBuf,
    /// The root key (`offline/root-ca.key` as `pki init` wrote it), wherever it is kept.
    #[arg(long, value_name = "FILE")]
    pub root_key: PathBuf,
}

/// Arguments of `zfadm pki issue`.
#[derive(Debug, Args)]
pub struct IssueArgs {
    /// The directory holding `ca.crt` and `ca.key`.
    #[arg(long, value_name = "DIR")]
    pub ca_dir: PathBuf,
    /// What to issue.
    #[command(flatten)]
    pub subject: IssueSubject,
    /// What an `--operator` certificate grants: `admin` (everything) or `viewer` (reads
    /// only).
    #[arg(
        long,
        value_name = "ROLE",
        default_value = "admin",
        requires = "operator",
        value_parser = parse_role
    )]
    pub role: OperatorRole,
    /// Validity in days (default: operators and controllers 90, at most 365; agents 1,
    /// at most 7).
    #[arg(long, value_name = "N")]
    pub days: Option<i64>,
    /// The directory to write into (default: the CA directory).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Replace existing files.
    #[arg(long)]
    pub force: bool,
}

/// Exactly one of the kinds of certificate `pki issue` makes.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct IssueSubject {
    /// A controller and an address it serves on (repeat with the same ID for more
    /// addresses).
    #[arg(long = "controller", value_name = "ID=HOST:PORT", value_parser = parse_endpoint)]
    pub controller: Vec<ControllerEndpoint>,
    /// An operator, by name.
    #[arg(long, value_name = "NAME", value_parser = parse_operator)]
    pub operator: Option<String>,
    /// An agent, by host id (a lowercase UUID).
    #[arg(long, value_name = "HOST_ID", value_parser = parse_agent)]
    pub agent: Option<Uuid>,
}

fn parse_cluster(s: &str) -> Result<String, PkiError> {
    validate_cluster(s).map(|()| s.to_owned())
}

fn parse_operator(s: &str) -> Result<String, PkiError> {
    validate_operator_name(s).map(|()| s.to_owned())
}

fn parse_role(s: &str) -> Result<OperatorRole, PkiError> {
    s.parse()
}

fn parse_endpoint(s: &str) -> Result<ControllerEndpoint, PkiError> {
    s.parse()
}

fn parse_agent(s: &str) -> Result<Uuid, PkiError> {
    parse_host_id(s)
}

/// Runs a `pki` command, reporting what it wrote to `out`.
pub fn run(command: PkiCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match command {
        PkiCommand::Init(args) => init(args, out),
        PkiCommand::Issue(args) => issue(args, out),
        PkiCommand::RotateSigningCa(args) => rotate(args, out),
        remote @ (PkiCommand::Revoke(_) | PkiCommand::List) => {
            bail!("{remote:?} needs the controllers (see run_remote)")
        }
    }
}

/// Groups endpoints by controller id (keeping first-seen order of ids).
fn controllers_by_id(endpoints: &[ControllerEndpoint]) -> Vec<(String, Vec<HostName>)> {
    let mut order: Vec<String> = Vec::new();
    let mut hosts: BTreeMap<String, Vec<HostName>> = BTreeMap::new();
    for endpoint in endpoints {
        let list = hosts.entry(endpoint.id.clone()).or_insert_with(|| {
            order.push(endpoint.id.clone());
            Vec::new()
        });
        if !list.contains(&endpoint.host) {
            list.push(endpoint.host.clone());
        }
    }
    order
        .into_iter()
        .map(|id| {
            let list = hosts.remove(&id).unwrap_or_default();
            (id, list)
        })
        .collect()
}

fn overwrite(force: bool) -> Overwrite {
    if force {
        Overwrite::Replace
    } else {
        Overwrite::Refuse
    }
}

/// `--days` if given, else the default lifetime of `principal`'s kind; the CA refuses
/// more than the kind's cap.
fn validity(days: Option<i64>, principal: &Principal) -> anyhow::Result<Validity> {
    match days {
        Some(days) => Validity::days(days).with_context(|| format!("--days {days}")),
        None => Ok(lifetime::Lifetime::of(principal).default_validity()),
    }
}

/// One line per file: the path and what it holds (never its contents).
fn report(out: &mut dyn Write, written: &[(OutputFile, String)]) -> anyhow::Result<()> {
    let width = written
        .iter()
        .map(|(f, _)| f.path.display().to_string().len())
        .max()
        .unwrap_or(0);
    for (file, what) in written {
        let path = file.path.display().to_string();
        writeln!(out, "wrote {path:<width$}  {what}")?;
    }
    Ok(())
}

fn describe_cert(issued: &IssuedCert, addresses: &[HostName]) -> String {
    if addresses.is_empty() {
        issued.identity.to_string()
    } else {
        let names: Vec<String> = addresses.iter().map(ToString::to_string).collect();
        format!("{} ({})", issued.identity, names.join(", "))
    }
}

fn labelled(files: Vec<OutputFile>, cert_label: String) -> Vec<(OutputFile, String)> {
    files
        .into_iter()
        .map(|f| {
            let label = if f.private {
                format!("private key (mode {:04o})", files::KEY_MODE)
            } else {
                cert_label.clone()
            };
            (f, label)
        })
        .collect()
}

/// A new signing CA issued by `root`, valid 3 years (never past the root).
fn new_signing_ca(root: &FleetCa) -> anyhow::Result<FleetCa> {
    let validity = Validity::days(SIGNING_CA_VALIDITY_DAYS)?;
    let validity = if validity.not_after > root.not_after() {
        Validity::between(validity.not_before, root.not_after())?
    } else {
        validity
    };
    root.issue_signing_ca(validity)
        .context("issuing the signing CA")
}

fn signing_label(signing: &FleetCa) -> String {
    format!(
        "signing CA of cluster {} (until {}; issues every certificate; the controllers hold it)",
        signing.cluster(),
        signing.not_after().date()
    )
}

fn init(args: InitArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let cluster = &args.cluster;
    // Every leaf init issues is a controller's or an operator's: one lifetime rule.
    let controller = Principal::Controller(String::new());
    let leaf_validity = validity(args.days, &controller)?;
    let root = FleetCa::generate(cluster)
        .with_context(|| format!("creating the root CA of cluster {cluster}"))?;
    let ca = new_signing_ca(&root)?;
    let root_files = files::root_ca_files(&args.out, &root);
    let root_key = root_files[1].path.clone();
    let mut planned = labelled(
        root_files,
        format!("root CA certificate of cluster {cluster} ({CA_VALIDITY_DAYS} days; every node trusts it)"),
    );
    planned.extend(labelled(
        files::signing_ca_files(&args.out, &ca),
        signing_label(&ca),
    ));
    for (id, addresses) in controllers_by_id(&args.controllers) {
        let issued = ca
            .issue_controller(&id, &addresses, leaf_validity)
            .with_context(|| format!("issuing the certificate of controller {id}"))?;
        let label = describe_cert(&issued, &addresses);
        planned.extend(labelled(files::issued_files(&args.out, &issued), label));
    }
    let issued = ca
        .issue_operator(&args.operator, leaf_validity)
        .with_context(|| format!("issuing the certificate of operator {}", args.operator))?;
    let label = describe_cert(&issued, &[]);
    planned.extend(labelled(files::issued_files(&args.out, &issued), label));

    write(&planned, args.force)?;
    report(out, &planned)?;
    writeln!(out, "cluster: {cluster}")?;
    writeln!(out, "CA fingerprint: {}", ca.fingerprint())?;
    writeln!(
        out,
        "the root key {} is needed only for `zfadm pki rotate-signing-ca`: move it off this \
         machine; controllers get ca.crt, signing-ca.crt/.key and their own files",
        root_key.display()
    )?;
    Ok(())
}

fn rotate(args: RotateArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let root = FleetCa::load_root(&args.ca_dir.join(files::CA_CERT), &args.root_key)
        .context("loading the root CA")?;
    let ca = new_signing_ca(&root)?;
    let planned = labelled(
        files::signing_ca_files(&args.ca_dir, &ca),
        signing_label(&ca),
    );
    // Replacing is the point of this command; the old signing CA's certificates stay
    // valid (they chain to the same root) until they expire or are revoked.
    files::write_files(
        &planned.iter().map(|(f, _)| f.clone()).collect::<Vec<_>>(),
        Overwrite::Replace,
    )?;
    report(out, &planned)?;
    writeln!(out, "CA fingerprint: {}", ca.fingerprint())?;
    Ok(())
}

fn issue(args: IssueArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let ca = load_signing_ca(&args.ca_dir)?;
    let principal = subject_principal(&args.subject);
    let validity = validity(args.days, &principal)?;
    let dir = args.out.as_deref().unwrap_or(&args.ca_dir);
    let subject = &args.subject;
    let (issued, addresses) = if !subject.controller.is_empty() {
        let mut grouped = controllers_by_id(&subject.controller);
        if grouped.len() != 1 {
            let ids: Vec<&str> = grouped.iter().map(|(id, _)| id.as_str()).collect();
            bail!(
                "--controller names several controllers ({}); issue one at a time",
                ids.join(", ")
            );
        }
        let (id, addresses) = grouped.remove(0);
        let issued = ca
            .issue_controller(&id, &addresses, validity)
            .with_context(|| format!("issuing the certificate of controller {id}"))?;
        (issued, addresses)
    } else if let Some(name) = &subject.operator {
        let issued = ca
            .issue_operator_with_role(name, args.role, validity)
            .with_context(|| format!("issuing the {} certificate of operator {name}", args.role))?;
        (issued, Vec::new())
    } else if let Some(host_id) = subject.agent {
        let issued = ca
            .issue_agent(host_id, &[], validity)
            .with_context(|| format!("issuing the certificate of agent {host_id}"))?;
        (issued, Vec::new())
    } else {
        // clap's argument group requires one of the three.
        bail!("give one of --controller, --operator or --agent");
    };
    let label = describe_cert(&issued, &addresses);
    let planned = labelled(files::issued_files(dir, &issued), label);
    write(&planned, args.force)?;
    report(out, &planned)?;
    writeln!(out, "CA fingerprint: {}", ca.fingerprint())?;
    Ok(())
}

/// The signing CA of `dir`, with a hint when `dir` holds the older single-CA layout.
fn load_signing_ca(dir: &Path) -> anyhow::Result<FleetCa> {
    FleetCa::load_dir(dir).with_context(|| {
        if dir.join("ca.key").exists() && !dir.join(files::SIGNING_CA_CERT).exists() {
            format!(
                "loading the signing CA: {} holds a root key (ca.key) but no {}; \
                 issue one with `zfadm pki rotate-signing-ca --ca-dir {0} --root-key {0}/ca.key`",
                dir.display(),
                files::SIGNING_CA_CERT
            )
        } else {
            "loading the signing CA".to_owned()
        }
    })
}

/// The kind of principal `pki issue` was asked for, for its lifetime rule.
fn subject_principal(subject: &IssueSubject) -> Principal {
    if let Some(host_id) = subject.agent {
        Principal::Agent(host_id)
    } else if let Some(name) = &subject.operator {
        Principal::Operator {
            name: name.clone(),
            role: OperatorRole::Admin,
        }
    } else {
        Principal::Controller(String::new())
    }
}

fn write(planned: &[(OutputFile, String)], force: bool) -> anyhow::Result<()> {
    let files: Vec<OutputFile> = planned.iter().map(|(f, _)| f.clone()).collect();
    // The errors name the file (existing, unwritable…).
    files::write_files(&files, overwrite(force))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_ids_merge_addresses() {
        let endpoints: Vec<ControllerEndpoint> = ["c2=10.0.0.2:1", "c1=10.0.0.1:1", "c2=ctl2:1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let grouped = controllers_by_id(&endpoints);
        assert_eq!(grouped.len(), 2);
        assert_eq!(grouped[0].0, "c2");
        assert_eq!(grouped[0].1.len(), 2);
        assert_eq!(grouped[1].0, "c1");
    }
}
