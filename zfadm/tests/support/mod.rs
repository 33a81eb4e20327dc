//! What the zfadm CLI tests share: the files of the cluster's admin (certificate, key,
//! the root, an empty config so no one's ~/.config is read) and the real binary run as
//! that admin against the in-process cluster.

#![allow(dead_code)] // Each test binary uses its own part.

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use zonefleet_harness::cluster::Cluster;
use zonefleet_proto::pki::Validity;

/// The admin of an in-process cluster, with its files in a temporary directory.
pub struct Admin {
    dir: tempfile::TempDir,
    /// Controller 1's address, what zfadm is pointed at.
    pub addr: String,
}

impl Admin {
    /// Issues the admin's certificate from `cluster`'s CA and writes its files.
    pub fn new(cluster: &Cluster) -> Admin {
        let dir = tempfile::tempdir().unwrap();
        let admin = cluster
            .ca
            .issue_operator("admin", Validity::days(1).unwrap())
            .unwrap();
        std::fs::write(dir.path().join("zfadm.toml"), "").unwrap();
        std::fs::write(dir.path().join("ca.crt"), cluster.ca.root_cert_pem()).unwrap();
        std::fs::write(dir.path().join("admin.crt"), &admin.cert_pem).unwrap();
        let key = dir.path().join("admin.key");
        std::fs::write(&key, admin.key_pem.as_ref().unwrap().expose_pem()).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        Admin {
            dir,
            addr: cluster.members[&1].addr.to_string(),
        }
    }

    /// The directory of its files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs zfadm with `args` as the admin (stdin closed), off the runtime's workers.
    pub fn zfadm(&self, args: &[&str]) -> impl Future<Output = Output> + 'static {
        let dir = self.dir.path().to_owned();
        let addr = self.addr.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        async move {
            tokio::task::spawn_blocking(move || {
                Command::new(env!("CARGO_BIN_EXE_zfadm"))
                    .args(&args)
                    .env("ZONEFLEET_CONTROLLERS", addr)
                    .env("ZONEFLEET_CA", dir.join("ca.crt"))
                    .env("ZONEFLEET_CERT", dir.join("admin.crt"))
                    .env("ZONEFLEET_KEY", dir.join("admin.key"))
                    .env("ZONEFLEET_CONFIG", dir.join("zfadm.toml"))
                    .stdin(Stdio::null())
                    .output()
                    .expect("run zfadm")
            })
            .await
            .unwrap()
        }
    }
}

/// Bytes as text, for messages.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
