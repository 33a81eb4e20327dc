//! What the process tests and the benchmarks share: the files of a controller
//! cluster on 127.0.0.1 (a fresh fleet CA, each controller's certificate, key and
//! `controller.toml` — `c<id>.crt`, `c<id>.key`, `c<id>.toml`, data in `data<id>`, and
//! the signing CA they sign agents' certificates with, `signing-ca.crt/.key` —
//! and an operator identity to call them with), and free loopback ports.

use std::path::{Path, PathBuf};

use zonefleet_proto::pki::{files, FleetCa, HostName, Validity};
use zonefleet_proto::tls::{CertKey, FleetTrust};

/// Errors writing a loopback cluster's files.
#[derive(Debug, thiserror::Error)]
pub enum LoopbackError {
    /// A file or port could not be had.
    #[error("{path}: {error}")]
    Io {
        /// The file (or the port being probed).
        path: PathBuf,
        /// The cause.
        error: std::io::Error,
    },
    /// A certificate could not be made.
    #[error("certificates: {0}")]
    Pki(String),
}

/// What a caller needs to reach the cluster whose files were written.
#[derive(Debug)]
pub struct LoopbackCluster {
    /// `127.0.0.1:PORT` of controllers 1, 2, …
    pub addrs: Vec<String>,
    /// The fleet CA, as a client trusts it.
    pub trust: FleetTrust,
    /// An operator certificate and key.
    pub operator: CertKey,
}

/// A port free on 127.0.0.1 right now.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn pki(e: impl std::fmt::Display) -> LoopbackError {
    LoopbackError::Pki(e.to_string())
}

fn write(path: PathBuf, contents: impl AsRef<[u8]>) -> Result<(), LoopbackError> {
    std::fs::write(&path, contents).map_err(|error| LoopbackError::Io { path, error })
}

/// Writes the files of `members` controllers of `cluster` on free loopback ports
/// into `dir`. `raft` is appended to every `controller.toml` (a `[raft]` section, or
/// empty for the defaults).
pub fn write_cluster(
    dir: &Path,
    cluster: &str,
    members: usize,
    raft: &str,
) -> Result<LoopbackCluster, LoopbackError> {
    std::fs::create_dir_all(dir).map_err(|error| LoopbackError::Io {
        path: dir.to_owned(),
        error,
    })?;
    // As `zfadm pki init` sets a fleet up: leaves from a signing CA, the root trusted.
    let ca = FleetCa::generate(cluster)
        .and_then(|root| root.issue_signing_ca(Validity::days(30)?))
        .map_err(pki)?;
    write(dir.join("ca.crt"), ca.root_cert_pem())?;
    // The signing CA every controller signs agents' certificates with.
    write(dir.join(files::SIGNING_CA_CERT), ca.cert_pem())?;
    files::write_files(
        &[files::OutputFile {
            path: dir.join(files::SIGNING_CA_KEY),
            contents: ca.key_pem().expose_pem().to_owned(),
            private: true,
        }],
        files::Overwrite::Replace,
    )
    .map_err(pki)?;
    let addrs = (0..members)
        .map(|_| free_port().map(|p| format!("127.0.0.1:{p}")))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|error| LoopbackError::Io {
            path: "127.0.0.1:0".into(),
            error,
        })?;
    let loopback: HostName = "127.0.0.1".parse().map_err(pki)?;
    let initial: String = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{} = \"{a}\"\n", i + 1))
        .collect();
    let validity = Validity::days(1).map_err(pki)?;
    for (i, addr) in addrs.iter().enumerate() {
        let id = i + 1;
        let issued = ca
            .issue_controller(&id.to_string(), std::slice::from_ref(&loopback), validity)
            .map_err(pki)?;
        let key = issued.key_pem.as_ref().ok_or_else(|| pki("no key"))?;
        write(dir.join(format!("c{id}.crt")), &issued.cert_pem)?;
        // 0600, or the controller refuses to load it.
        let key_file = files::OutputFile {
            path: dir.join(format!("c{id}.key")),
            contents: key.expose_pem().to_owned(),
            private: true,
        };
        files::write_files(&[key_file], files::Overwrite::Replace).map_err(pki)?;
        write(
            dir.join(format!("c{id}.toml")),
            format!(
                "id = {id}\ncluster = \"{cluster}\"\nlisten = \"{addr}\"\ndata_dir = \"data{id}\"\n\
                 [tls]\nca = \"ca.crt\"\ncert = \"c{id}.crt\"\nkey = \"c{id}.key\"\n\
                 [signing_ca]\ncert = \"signing-ca.crt\"\nkey = \"signing-ca.key\"\n\
                 [initial_members]\n{initial}{raft}"
            ),
        )?;
    }
    let issued = ca.issue_operator("admin", validity).map_err(pki)?;
    let key = issued.key_pem.as_ref().ok_or_else(|| pki("no key"))?;
    Ok(LoopbackCluster {
        addrs,
        trust: FleetTrust::new(cluster, vec![ca.root_cert_der().clone()]).map_err(pki)?,
        operator: CertKey::from_pem(&issued.cert_pem, key).map_err(pki)?,
    })
}
