//! `controller.toml`: one controller's configuration. See `docs/controller.md`.
//!
//! ```toml
//! id = 1
//! cluster = "prod"
//! listen = "0.0.0.0:7000"
//! advertise = "10.0.0.1:7000"      # what peers and zfadm dial; default: listen
//! data_dir = "/var/lib/zonefleet/controller"
//! agent_cert_hours = 24            # agents' certificates (default 24, at most 168)
//!
//! [tls]                            # relative paths are relative to this file
//! ca = "ca.crt"
//! cert = "controller-1.crt"
//! key = "controller-1.key"
//!
//! [initial_members]                # only for a brand-new cluster; omit to join one
//! 1 = "10.0.0.1:7000"
//! 2 = "10.0.0.2:7000"
//! 3 = "10.0.0.3:7000"
//!
//! [signing_ca]                     # optional: without it Enroll/RenewCertificate fail
//! cert = "signing-ca.crt"
//! key = "signing-ca.key"           # 0600, like tls.key
//!
//! [leases]                         # all optional (docs/host-loss.md)
//! heartbeat_interval_ms = 500
//! ttl_ms = 2000                    # a dead host is down within this
//! fence_margin_ms = 500            # agents fence this long before the lease ends
//! reschedule_margin_ms = 500       # lost hosts' zones move this long after it ends
//!
//! [enroll]                         # all optional: Enroll calls per peer address
//! burst = 20
//! per_second = 2
//!
//! [images]                         # all optional
//! max_bytes = 8589934592           # the largest upload (default 8 GiB)
//! sync_interval_ms = 2000          # how often missing blobs are fetched from peers
//! orphan_grace_s = 600             # how long a blob no manifest names is kept
//!
//! [raft]                           # all optional
//! heartbeat_ms = 50
//! election_timeout_min_ms = 100
//! election_timeout_max_ms = 150
//! snapshot_every = 10000
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::raft::NodeId;

/// Errors reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        error: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("{path}: {error}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with its place in the file.
        error: Box<toml::de::Error>,
    },
    /// A value is out of range or inconsistent.
    #[error("{path}: {field}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The field.
        field: String,
        /// Why.
        reason: String,
    },
}

/// Certificate paths.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsPaths {
    /// The fleet CA certificate.
    pub ca: PathBuf,
    /// This controller's certificate.
    pub cert: PathBuf,
    /// This controller's private key.
    pub key: PathBuf,
}

/// The signing CA's certificate and key (`zfadm pki init`'s `signing-ca.crt/.key`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningCaPaths {
    /// The signing CA certificate (issued by the root in `tls.ca`).
    pub cert: PathBuf,
    /// Its private key (mode 0600 or stricter).
    pub key: PathBuf,
}

/// Lease terms given to agents.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeaseTimings {
    /// How often agents heartbeat, in milliseconds.
    pub heartbeat_interval_ms: u64,
    /// How long a lease lasts after a heartbeat, in milliseconds (more than the
    /// interval).
    pub ttl_ms: u64,
    /// How long before its lease runs out an agent fences (halts) its `reschedule`
    /// zones, in milliseconds (less than the TTL minus the interval).
    pub fence_margin_ms: u64,
    /// How long after a lost host's lease lapsed the leader waits before it moves the
    /// host's `reschedule` zones, in milliseconds (see docs/host-loss.md).
    pub reschedule_margin_ms: u64,
}

impl Default for LeaseTimings {
    fn default() -> Self {
        use crate::node::control as c;
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        LeaseTimings {
            heartbeat_interval_ms: ms(c::DEFAULT_HEARTBEAT_INTERVAL),
            ttl_ms: ms(c::DEFAULT_LEASE_TTL),
            fence_margin_ms: ms(c::DEFAULT_FENCE_MARGIN),
            reschedule_margin_ms: ms(c::DEFAULT_RESCHEDULE_MARGIN),
        }
    }
}

/// How many unauthenticated `Enroll` calls one peer address may make.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnrollLimits {
    /// Calls at once.
    pub burst: u32,
    /// Calls per second after that.
    pub per_second: u32,
}

impl Default for EnrollLimits {
    fn default() -> Self {
        let d = crate::node::control::ControlOptions::default();
        EnrollLimits {
            burst: d.enroll_burst,
            per_second: d.enroll_per_second,
        }
    }
}

/// The longest agent certificate lifetime, in hours (`pki::lifetime::AGENT`).
pub const MAX_AGENT_CERT_HOURS: u32 = 168;

fn default_agent_cert_hours() -> u32 {
    crate::node::control::DEFAULT_AGENT_CERT_HOURS
}

/// Raft timings and snapshot policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftTimings {
    /// Leader heartbeat interval in milliseconds. Also openraft's timeout for an
    /// `AppendEntries` (and 1.5 × this its election tick): keep it above a follower's
    /// worst append (an fsync under load).
    pub heartbeat_ms: u64,
    /// Shortest election timeout in milliseconds (controller 1's; see
    /// [`ControllerConfig::election_timeouts`]).
    pub election_timeout_min_ms: u64,
    /// Longest election timeout in milliseconds (the last slot's), and the leader
    /// lease: a follower that has heard from a leader within this refuses to vote for
    /// another. A follower campaigns after the lease plus its own timeout without a
    /// heartbeat, or just after the lease when the leader's process is gone (see
    /// [`crate::raft::failover`]).
    pub election_timeout_max_ms: u64,
    /// Build a snapshot (and purge the log before it) every this many entries (plus an
    /// eighth of it per slot by id, so the members take turns).
    pub snapshot_every: u64,
    /// Entries kept in the log behind a snapshot (for lagging followers).
    pub keep_after_snapshot: u64,
}

impl Default for RaftTimings {
    fn default() -> Self {
        RaftTimings {
            heartbeat_ms: 50,
            election_timeout_min_ms: 100,
            election_timeout_max_ms: 150,
            snapshot_every: 10_000,
            keep_after_snapshot: 1_000,
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerConfig {
    /// This controller's id (its certificate's controller id).
    pub id: NodeId,
    /// The cluster name.
    pub cluster: String,
    /// The address to listen on.
    pub listen: SocketAddr,
    /// The address others dial (default: `listen`).
    #[serde(default)]
    pub advertise: Option<String>,
    /// The store directory.
    pub data_dir: PathBuf,
    /// Certificates.
    pub tls: TlsPaths,
    /// Members of a brand-new cluster: id → `HOST:PORT`.
    #[serde(default)]
    pub initial_members: BTreeMap<String, String>,
    /// Raft timings.
    #[serde(default)]
    pub raft: RaftTimings,
    /// The signing CA that signs agents' certificates.
    #[serde(default)]
    pub signing_ca: Option<SigningCaPaths>,
    /// Agents' certificate lifetime in hours.
    #[serde(default = "default_agent_cert_hours")]
    pub agent_cert_hours: u32,
    /// Lease terms.
    #[serde(default)]
    pub leases: LeaseTimings,
    /// The rate limit of `Enroll` per peer address.
    #[serde(default)]
    pub enroll: EnrollLimits,
    /// Image uploads and blob sync.
    #[serde(default)]
    pub images: ImageSettings,
}

/// `[images]`: image uploads and blob sync.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImageSettings {
    /// The largest archive an upload may be, in bytes.
    pub max_bytes: u64,
    /// How often the sync loop looks for missing blobs, in milliseconds.
    pub sync_interval_ms: u64,
    /// How long a blob that no manifest names is kept, in seconds.
    pub orphan_grace_s: u64,
}

impl Default for ImageSettings {
    fn default() -> Self {
        let d = crate::blobs::ImageOptions::default();
        ImageSettings {
            max_bytes: d.max_bytes,
            sync_interval_ms: u64::try_from(d.sync_interval.as_millis()).unwrap_or(u64::MAX),
            orphan_grace_s: d.orphan_grace.as_secs(),
        }
    }
}

impl ControllerConfig {
    /// Reads and checks `path`; relative paths in it become relative to its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        let mut config: ControllerConfig =
            toml::from_str(&text).map_err(|error| ConfigError::Parse {
                path: path.to_owned(),
                error: Box::new(error),
            })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let signing = config
            .signing_ca
            .as_mut()
            .map(|s| [&mut s.cert, &mut s.key])
            .into_iter()
            .flatten();
        for p in [
            &mut config.data_dir,
            &mut config.tls.ca,
            &mut config.tls.cert,
            &mut config.tls.key,
        ]
        .into_iter()
        .chain(signing)
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        config.check(path)?;
        Ok(config)
    }

    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |field: &str, reason: String| ConfigError::Invalid {
            path: path.to_owned(),
            field: field.to_owned(),
            reason,
        };
        self.initial_members()
            .map_err(|reason| invalid("initial_members", reason))?;
        let r = &self.raft;
        if r.heartbeat_ms == 0 || r.election_timeout_min_ms <= r.heartbeat_ms {
            return Err(invalid(
                "raft.election_timeout_min_ms",
                "must be more than heartbeat_ms (> 0)".to_owned(),
            ));
        }
        if r.election_timeout_max_ms <= r.election_timeout_min_ms {
            return Err(invalid(
                "raft.election_timeout_max_ms",
                "must be more than election_timeout_min_ms".to_owned(),
            ));
        }
        if r.snapshot_every == 0 {
            return Err(invalid(
                "raft.snapshot_every",
                "must be at least 1".to_owned(),
            ));
        }
        zonefleet_proto::pki::validate_cluster(&self.cluster)
            .map_err(|e| invalid("cluster", e.to_string()))?;
        let i = &self.images;
        if !(1..=zonefleet_proto::image::MAX_IMAGE_BYTES).contains(&i.max_bytes) {
            return Err(invalid(
                "images.max_bytes",
                format!(
                    "{} is out of range; allowed 1..={} (bytes)",
                    i.max_bytes,
                    zonefleet_proto::image::MAX_IMAGE_BYTES
                ),
            ));
        }
        if i.sync_interval_ms == 0 {
            return Err(invalid(
                "images.sync_interval_ms",
                "must be at least 1".to_owned(),
            ));
        }
        if self.enroll.burst == 0 {
            return Err(invalid("enroll.burst", "must be at least 1".to_owned()));
        }
        if !(1..=MAX_AGENT_CERT_HOURS).contains(&self.agent_cert_hours) {
            return Err(invalid(
                "agent_cert_hours",
                format!(
                    "{} is out of range; allowed 1..={MAX_AGENT_CERT_HOURS} (hours)",
                    self.agent_cert_hours
                ),
            ));
        }
        let l = &self.leases;
        if l.heartbeat_interval_ms == 0 || l.ttl_ms <= l.heartbeat_interval_ms {
            return Err(invalid(
                "leases.ttl_ms",
                "must be more than heartbeat_interval_ms (> 0)".to_owned(),
            ));
        }
        if l.fence_margin_ms == 0 || l.fence_margin_ms + l.heartbeat_interval_ms >= l.ttl_ms {
            return Err(invalid(
                "leases.fence_margin_ms",
                "must be more than 0 and less than ttl_ms - heartbeat_interval_ms (an agent \
                 would fence between two heartbeats)"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    /// Loads the signing CA named in `[signing_ca]` (its key refused when group or
    /// others may read it), checked against the root in `tls.ca`; `None` without one.
    pub fn load_signing_ca(&self) -> Result<Option<zonefleet_proto::pki::FleetCa>, ConfigError> {
        let Some(paths) = &self.signing_ca else {
            return Ok(None);
        };
        let invalid = |field: &str, reason: String| ConfigError::Invalid {
            path: paths.cert.clone(),
            field: field.to_owned(),
            reason,
        };
        zonefleet_proto::modes::require_private_key(&paths.key)
            .map_err(|e| invalid("signing_ca.key", e.to_string()))?;
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
                path: path.to_owned(),
                error,
            })
        };
        let root = read(&self.tls.ca)?;
        let cert = read(&paths.cert)?;
        let key = zonefleet_proto::pki::KeyPem::new(read(&paths.key)?);
        let ca = zonefleet_proto::pki::FleetCa::signing_from_pem(&root, &cert, &key)
            .map_err(|e| invalid("signing_ca", e.to_string()))?;
        if ca.cluster() != self.cluster {
            return Err(invalid(
                "signing_ca",
                format!("is of cluster {:?}, not {:?}", ca.cluster(), self.cluster),
            ));
        }
        Ok(Some(ca))
    }

    /// The `Control` service's settings (the signing CA loaded by the caller).
    pub fn control_options(
        &self,
        signing_ca: Option<zonefleet_proto::pki::FleetCa>,
    ) -> crate::node::control::ControlOptions {
        crate::node::control::ControlOptions {
            signing_ca: signing_ca.map(std::sync::Arc::new),
            agent_cert_hours: self.agent_cert_hours,
            heartbeat_interval: std::time::Duration::from_millis(self.leases.heartbeat_interval_ms),
            lease_ttl: std::time::Duration::from_millis(self.leases.ttl_ms),
            fence_margin: std::time::Duration::from_millis(self.leases.fence_margin_ms),
            reschedule_margin: std::time::Duration::from_millis(self.leases.reschedule_margin_ms),
            enroll_burst: self.enroll.burst,
            enroll_per_second: self.enroll.per_second,
        }
    }

    /// The image upload and blob sync settings.
    pub fn image_options(&self) -> crate::blobs::ImageOptions {
        crate::blobs::ImageOptions {
            max_bytes: self.images.max_bytes,
            sync_interval: std::time::Duration::from_millis(self.images.sync_interval_ms),
            orphan_grace: std::time::Duration::from_secs(self.images.orphan_grace_s),
        }
    }

    /// `initial_members` with numeric ids.
    pub fn initial_members(&self) -> Result<BTreeMap<NodeId, String>, String> {
        let members = self
            .initial_members
            .iter()
            .map(|(id, addr)| {
                id.parse::<NodeId>()
                    .map(|id| (id, addr.clone()))
                    .map_err(|_| format!("member id {id:?} is not a number"))
            })
            .collect::<Result<BTreeMap<_, _>, _>>()?;
        if !members.is_empty() && !members.contains_key(&self.id) {
            return Err(format!("does not include this controller ({})", self.id));
        }
        Ok(members)
    }

    /// The address others dial.
    pub fn advertise(&self) -> String {
        self.advertise
            .clone()
            .unwrap_or_else(|| self.listen.to_string())
    }

    /// This controller's election timeout, as openraft's `(min, max)`: a fixed point of
    /// `[election_timeout_min_ms, election_timeout_max_ms]` by id, controller 1 at the
    /// minimum and the last slot at the maximum (as many slots as the initial members,
    /// at least 3).
    ///
    /// openraft 0.9 draws a controller's election timeout once, when it starts, and in
    /// one term a candidate with a higher id outranks a lower one. When the survivors of
    /// a dead leader campaign in id order, a later candidate (higher id) can win the
    /// term of an earlier one that had the shorter log; out of order, a lower-id
    /// survivor with the longer log loses that term and must wait for another timeout
    /// (measured: 0.6 s write pauses instead of 0.3 s). Fixed points spaced wider than
    /// openraft's election tick (1.5 × `heartbeat_ms`) keep the order.
    pub fn election_timeouts(&self) -> (u64, u64) {
        let (min, max) = (
            self.raft.election_timeout_min_ms,
            self.raft.election_timeout_max_ms,
        );
        let (slot, slots) = self.slot();
        let step = (max - min) / (slots - 1);
        let point = min + slot * step;
        (point, point + 1)
    }

    /// This controller's slot by id, of how many (the initial members, at least 3):
    /// what spaces its election timeout, failover probe and snapshots from the others'.
    fn slot(&self) -> (u64, u64) {
        let slots = (self.initial_members.len() as u64).max(3);
        (self.id.saturating_sub(1) % slots, slots)
    }

    /// When this controller probes a silent leader (see [`crate::raft::failover`]).
    pub fn failover_timing(&self) -> crate::raft::failover::FailoverTiming {
        crate::raft::failover::FailoverTiming::for_slot(
            self.raft.election_timeout_max_ms,
            self.slot().0,
        )
    }

    /// openraft's configuration from the timings.
    pub fn raft_config(&self) -> openraft::Config {
        let (election_timeout_min, election_timeout_max) = self.election_timeouts();
        openraft::Config {
            cluster_name: self.cluster.clone(),
            heartbeat_interval: self.raft.heartbeat_ms,
            election_timeout_min,
            election_timeout_max,
            // Every member applies the same entries at the same time: with the same
            // threshold they would all stop to copy the fleet at once. An eighth of the
            // interval apart per slot, they take turns.
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(
                self.raft.snapshot_every + self.slot().0 * self.raft.snapshot_every / 8,
            ),
            max_in_snapshot_log_to_keep: self.raft.keep_after_snapshot,
            // Chunks stay well under the Raft message limit.
            snapshot_max_chunk_size: 1024 * 1024,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_file_and_resolves_paths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("controller.toml");
        std::fs::write(
            &path,
            r#"
id = 2
cluster = "prod"
listen = "127.0.0.1:7002"
data_dir = "data"
[tls]
ca = "ca.crt"
cert = "c.crt"
key = "/abs/c.key"
[initial_members]
1 = "127.0.0.1:7001"
2 = "127.0.0.1:7002"
[raft]
heartbeat_ms = 100
election_timeout_min_ms = 300
election_timeout_max_ms = 600
"#,
        )
        .unwrap();
        let c = ControllerConfig::load(&path).unwrap();
        assert_eq!(c.data_dir, dir.path().join("data"));
        assert_eq!(c.tls.key, PathBuf::from("/abs/c.key"));
        assert_eq!(c.advertise(), "127.0.0.1:7002");
        assert_eq!(c.initial_members().unwrap().len(), 2);
        assert_eq!(c.raft_config().heartbeat_interval, 100);
        // Controller 2 of 3 slots (at least 3): the middle of 300..=600.
        assert_eq!(c.election_timeouts(), (450, 451));
        assert_eq!(c.failover_timing().after.as_millis(), 600 + 1 + 10 + 20);

        assert!(c.load_signing_ca().unwrap().is_none());
        assert_eq!(c.agent_cert_hours, 24);
        assert_eq!(c.leases.ttl_ms, 2000);

        std::fs::write(&path, "id = 1\ncluster = \"prod\"\nlisten = \"x\"\n").unwrap();
        let err = ControllerConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("listen") || err.contains("invalid"), "{err}");
    }

    const BASE: &str =
        "id = 1\ncluster = \"prod\"\nlisten = \"127.0.0.1:7001\"\ndata_dir = \"d\"\n\
        [tls]\nca = \"ca.crt\"\ncert = \"c.crt\"\nkey = \"c.key\"\n";

    #[test]
    fn the_signing_ca_and_agent_settings() {
        use std::os::unix::fs::PermissionsExt;
        use zonefleet_proto::pki::{files, FleetCa, Validity};
        let dir = tempfile::tempdir().unwrap();
        let root = FleetCa::generate("prod").unwrap();
        let signing = root.issue_signing_ca(Validity::days(30).unwrap()).unwrap();
        std::fs::write(dir.path().join("ca.crt"), root.cert_pem()).unwrap();
        std::fs::write(dir.path().join(files::SIGNING_CA_CERT), signing.cert_pem()).unwrap();
        let key = dir.path().join(files::SIGNING_CA_KEY);
        std::fs::write(&key, signing.key_pem().expose_pem()).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let path = dir.path().join("controller.toml");
        // Top-level keys first, then BASE's [tls], then other tables.
        let write = |top: &str, tables: &str| {
            std::fs::write(&path, format!("{top}{BASE}{tables}")).unwrap()
        };

        write("agent_cert_hours = 48\n", "[signing_ca]\ncert = \"signing-ca.crt\"\nkey = \"signing-ca.key\"\n[leases]\nttl_ms = 3000\n");
        let c = ControllerConfig::load(&path).unwrap();
        let ca = c.load_signing_ca().unwrap().expect("a signing CA");
        assert_eq!(ca.fingerprint(), root.fingerprint());
        let options = c.control_options(Some(ca));
        assert_eq!(options.agent_cert_hours, 48);
        assert_eq!(options.lease_ttl, std::time::Duration::from_secs(3));
        assert!(options.signing_ca.is_some());

        // A key others may read is refused, naming the field.
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = c.load_signing_ca().unwrap_err().to_string();
        assert!(err.contains("signing_ca.key"), "{err}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        // A signing CA of another root is refused.
        let other = FleetCa::generate("prod").unwrap();
        std::fs::write(dir.path().join("ca.crt"), other.cert_pem()).unwrap();
        let err = c.load_signing_ca().unwrap_err().to_string();
        assert!(err.contains("not issued by this root"), "{err}");

        for (top, tables, field) in [
            ("agent_cert_hours = 169\n", "", "agent_cert_hours"),
            ("agent_cert_hours = 0\n", "", "agent_cert_hours"),
            (
                "",
                "[leases]\nheartbeat_interval_ms = 1000\nttl_ms = 1000\n",
                "leases.ttl_ms",
            ),
            (
                "",
                "[leases]\nheartbeat_interval_ms = 500\nttl_ms = 1000\nfence_margin_ms = 500\n",
                "leases.fence_margin_ms",
            ),
            ("", "[enroll]\nburst = 0\n", "enroll.burst"),
        ] {
            write(top, tables);
            let err = ControllerConfig::load(&path).unwrap_err().to_string();
            assert!(err.contains(field), "{top}{tables}: {err}");
        }
    }
}
