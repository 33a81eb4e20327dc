//! `agent.toml`: the fleet daemon's configuration, merged with the kernel command
//! line ([`super::cmdline`]); the file wins where both set a value. See `docs/agent.md`.
//!
//! ```toml
//! controllers = ["10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000"]
//! token = "…"                 # one-time join token (or token_file = "/run/zf-token")
//! ca = "sha256:…"             # the fleet root CA's fingerprint (zfadm pki init prints it)
//! cluster = "prod"            # optional: the cluster the pinned root must name
//! data_dir = "/var/lib/zonefleet"
//! cgroup_parent = "zonefleet" # fixed when the data dir is first used
//! bridge = "zfbr0"
//! uplink = "eth0"
//! resync_ms = 2000            # how often local zones are looked at again
//! listen = "0.0.0.0:7444"     # where the Agent service (exec, logs) is served
//! advertise = "10.0.0.7:7444" # the address registered for operators to dial
//!                             # (default: the listen address, or the IP this host
//!                             # reaches the first controller from)
//!
//! [capacity]                  # what zones may have of this host
//! reserved_memory_mib = 0     # kept back beyond the fleet's reserve (default 0)
//! reserved_cpu_percent = 0    # (default 0)
//! reserved_disk_gib = 0
//! memory_mib = 4096           # explicit shares: override the host's size less the
//! cpu_percent = 200           # reserve (several agents on one machine)
//! disk_gib = 20
//!
//! [images]                    # limits of image imports (decompression bombs)
//! unpacked_ratio = 20         # unpacked bytes per archive byte (default 20)
//! unpacked_floor_mib = 256    # the byte limit is never below this (default 256)
//! max_entries = 1000000       # files, directories and links (default 1,000,000)
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Where a setting came from, to name it in errors.
#[derive(Debug, Clone)]
pub enum Source {
    /// The configuration file.
    File(PathBuf),
    /// A kernel command line file.
    Cmdline(PathBuf),
}

impl Source {
    /// The name a setting has in this source: `file` in the TOML, `zonefleet.<cmdline>`
    /// on the command line.
    fn field(&self, file: &str, cmdline: &str) -> String {
        match self {
            Source::File(_) => file.to_owned(),
            Source::Cmdline(_) => format!("{}{cmdline}", super::cmdline::PREFIX),
        }
    }

    /// An [`ConfigError::Invalid`] for `field` of this source.
    pub(super) fn invalid(&self, field: &str, reason: String) -> ConfigError {
        let path = match self {
            Source::File(p) | Source::Cmdline(p) => p.clone(),
        };
        ConfigError::Invalid {
            path,
            field: field.to_owned(),
            reason,
        }
    }
}

/// Errors of the agent's configuration; each names the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read.
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
    /// A value is malformed, out of range or not supported.
    #[error("{path}: {field}: {reason}")]
    Invalid {
        /// The file (or command line file).
        path: PathBuf,
        /// The field.
        field: String,
        /// Why.
        reason: String,
    },
}

/// The settings either source may give; unset fields are `None`.
#[derive(Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Controllers to dial, `HOST:PORT` each.
    pub controllers: Option<Vec<String>>,
    /// The one-time join token.
    pub token: Option<String>,
    /// A file holding the join token (file only).
    pub token_file: Option<PathBuf>,
    /// The pinned root fingerprint.
    pub ca: Option<String>,
    /// The cluster the pinned root must name.
    pub cluster: Option<String>,
    /// The agent's data dir.
    pub data_dir: Option<PathBuf>,
    /// The cgroup parent of zone cgroups (file only).
    pub cgroup_parent: Option<String>,
    /// The host bridge (file only).
    pub bridge: Option<String>,
    /// The bridge's uplink (file only).
    pub uplink: Option<String>,
    /// How often local zones are observed again, ms (file only).
    pub resync_ms: Option<u64>,
    /// Where the `Agent` service is served, `IP:PORT`.
    pub listen: Option<String>,
    /// The `Agent` service's address as registered with the controllers, `IP:PORT`.
    pub advertise: Option<String>,
    /// Capacity reserve and overrides (file only).
    #[serde(default)]
    pub capacity: CapacitySettings,
    /// Limits of image imports (file only).
    #[serde(default)]
    pub images: ImageSettings,
    /// Whether `reschedule` zones are fenced when the host's lease runs out (file
    /// only; default true). Off, a partitioned host's zones keep running while the
    /// controllers start them elsewhere: only for zones that tolerate two copies.
    pub fencing: Option<bool>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("controllers", &self.controllers)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("ca", &self.ca)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

/// What zones may have of this host: the host's size less a reserve for the global
/// zone, or explicit values (one agent's share of a machine several agents run on).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacitySettings {
    /// Memory kept for the global zone, MiB (default 1024).
    pub reserved_memory_mib: Option<u64>,
    /// CPU kept for the global zone, percent of one CPU (default 100).
    pub reserved_cpu_percent: Option<u32>,
    /// Disk kept for the global zone, GiB (default 0).
    pub reserved_disk_gib: Option<u64>,
    /// Memory for zones, MiB, instead of the host's less the reserve.
    pub memory_mib: Option<u64>,
    /// CPU for zones, percent of one CPU, instead of the host's less the reserve.
    pub cpu_percent: Option<u32>,
    /// Disk for zones, GiB, instead of the data dir's file system less the reserve.
    pub disk_gib: Option<u64>,
}

/// How much an image archive may unpack to (see docs/images.md, "Limits").
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSettings {
    /// Unpacked bytes allowed per byte of archive (default 20).
    pub unpacked_ratio: Option<u64>,
    /// The byte limit is never below this, MiB (default 256).
    pub unpacked_floor_mib: Option<u64>,
    /// Entries an archive may hold (default 1,000,000).
    pub max_entries: Option<u64>,
}

impl ImageSettings {
    /// The import limits these settings give, defaults for what they leave out.
    pub fn limits(&self) -> crate::image::UnpackLimits {
        let d = crate::image::UnpackLimits::default();
        crate::image::UnpackLimits {
            ratio: self.unpacked_ratio.unwrap_or(d.ratio),
            floor_bytes: self
                .unpacked_floor_mib
                .map_or(d.floor_bytes, |mib| mib.saturating_mul(1 << 20)),
            max_entries: self.max_entries.unwrap_or(d.max_entries),
        }
    }
}

/// The default data dir.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/zonefleet";
/// The default interval at which local zones are observed again.
pub const DEFAULT_RESYNC: Duration = Duration::from_secs(2);

impl Settings {
    /// Reads an `agent.toml`; relative paths in it are relative to its directory.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        let mut settings: Settings = toml::from_str(&text).map_err(|error| ConfigError::Parse {
            path: path.to_owned(),
            error: Box::new(error),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut settings.data_dir, &mut settings.token_file]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        settings.check(&Source::File(path.to_owned()))?;
        Ok(settings)
    }

    /// Checks every value that is set, naming the field as `source` calls it.
    pub(super) fn check(&self, source: &Source) -> Result<(), ConfigError> {
        if let Some(controllers) = &self.controllers {
            let field = source.field("controllers", "controllers");
            if controllers.is_empty() {
                return Err(source.invalid(&field, "is empty".to_owned()));
            }
            for (i, c) in controllers.iter().enumerate() {
                check_address(c).map_err(|reason| {
                    let at = match source {
                        Source::File(_) => format!("{field}[{i}]"),
                        Source::Cmdline(_) => field.clone(),
                    };
                    source.invalid(&at, format!("{c:?} {reason}"))
                })?;
            }
        }
        if let Some(token) = &self.token {
            if token.trim().is_empty() || token.chars().any(char::is_whitespace) {
                return Err(source.invalid(
                    &source.field("token", "token"),
                    "is empty or holds whitespace".to_owned(),
                ));
            }
        }
        if self.token.is_some() && self.token_file.is_some() {
            return Err(source.invalid(
                "token_file",
                "cannot be given together with token".to_owned(),
            ));
        }
        if let Some(ca) = &self.ca {
            zonefleet_proto::tls::check_pin(ca)
                .map_err(|reason| source.invalid(&source.field("ca", "ca"), reason))?;
        }
        if let Some(cluster) = &self.cluster {
            zonefleet_proto::pki::validate_cluster(cluster)
                .map_err(|e| source.invalid(&source.field("cluster", "cluster"), e.to_string()))?;
        }
        if let Some(dir) = &self.data_dir {
            let field = source.field("data_dir", "data");
            if !dir.is_absolute() {
                return Err(
                    source.invalid(&field, format!("{} is not an absolute path", dir.display()))
                );
            }
        }
        if let Some(parent) = &self.cgroup_parent {
            if parent.is_empty()
                || !parent
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                return Err(source.invalid(
                    "cgroup_parent",
                    format!("{parent:?} must be letters, digits, '-', '_' or '.'"),
                ));
            }
        }
        if let Some(listen) = &self.listen {
            parse_socket(listen, false)
                .map_err(|reason| source.invalid(&source.field("listen", "listen"), reason))?;
        }
        if let Some(advertise) = &self.advertise {
            parse_socket(advertise, true).map_err(|reason| {
                source.invalid(&source.field("advertise", "advertise"), reason)
            })?;
        }
        if self.resync_ms == Some(0) {
            return Err(source.invalid("resync_ms", "must be at least 1".to_owned()));
        }
        let c = &self.capacity;
        if c.cpu_percent == Some(0) {
            return Err(source.invalid("capacity.cpu_percent", "must be at least 1".to_owned()));
        }
        if c.memory_mib == Some(0) {
            return Err(source.invalid("capacity.memory_mib", "must be at least 1".to_owned()));
        }
        let i = &self.images;
        if i.max_entries == Some(0) {
            return Err(source.invalid("images.max_entries", "must be at least 1".to_owned()));
        }
        let limits = i.limits();
        if limits.ratio == 0 && limits.floor_bytes == 0 {
            return Err(source.invalid(
                "images.unpacked_floor_mib",
                "must be at least 1 when images.unpacked_ratio is 0 (no archive could be imported)"
                    .to_owned(),
            ));
        }
        Ok(())
    }
}

/// `s` as `IP:PORT` with a port; `dialable` also refuses the unspecified address
/// (`0.0.0.0`, `::`), which nobody can dial.
fn parse_socket(s: &str, dialable: bool) -> Result<SocketAddr, String> {
    let addr: SocketAddr = s
        .parse()
        .map_err(|_| format!("{s:?} is not IP:PORT (an IPv6 address in brackets)"))?;
    if addr.port() == 0 {
        return Err(format!("{s:?} has no port (0 is not 1..=65535)"));
    }
    if dialable && addr.ip().is_unspecified() {
        return Err(format!(
            "{s:?} is the unspecified address, which no one can dial: give this host's IP"
        ));
    }
    Ok(addr)
}

/// The default address of the `Agent` service.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:7444";

/// Whether `s` is `HOST:PORT` (an IPv6 host in brackets).
fn check_address(s: &str) -> Result<(), String> {
    let bad = || "is not HOST:PORT (an IPv6 address in brackets)".to_owned();
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let host = match host.strip_prefix('[') {
        Some(inner) => {
            let inner = inner.strip_suffix(']').ok_or_else(bad)?;
            inner
                .parse::<std::net::Ipv6Addr>()
                .map_err(|_| "has no valid IPv6 address in brackets".to_owned())?;
            inner
        }
        None => host,
    };
    if host.is_empty() || host.contains(['[', ']', '/', ' ']) {
        return Err(bad());
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("has no valid port ({port:?} is not 1..=65535)")),
    }
}

/// A join token; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Wraps a token.
    pub fn new(token: String) -> Token {
        Token(token)
    }

    /// The token text, to send in `Enroll` only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// The daemon's configuration: the file's settings over the command line's, with
/// defaults for what neither gives.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Controllers to dial (may be empty once enrolled: the data dir keeps the list
    /// the controllers gave).
    pub controllers: Vec<String>,
    /// The join token, for enrollment.
    pub token: Option<Token>,
    /// The pinned root fingerprint, for enrollment.
    pub ca_pin: Option<String>,
    /// The cluster the pinned root must name, if given.
    pub cluster: Option<String>,
    /// The data dir.
    pub data_dir: PathBuf,
    /// The cgroup parent, if given.
    pub cgroup_parent: Option<String>,
    /// The host bridge.
    pub bridge: String,
    /// The bridge's uplink.
    pub uplink: Option<String>,
    /// How often local zones are observed again.
    pub resync: Duration,
    /// Capacity reserve and overrides.
    pub capacity: CapacitySettings,
    /// Limits of image imports.
    pub image_limits: crate::image::UnpackLimits,
    /// Where the `Agent` service is served.
    pub listen: SocketAddr,
    /// The address registered for it, when given (else see
    /// [`super::api::advertised_address`]).
    pub advertise: Option<SocketAddr>,
    /// Whether `reschedule` zones are fenced ([`crate::fence`]).
    pub fencing: bool,
}

impl AgentConfig {
    /// Merges `file` over `cmdline`: where both set a value the file's counts.
    /// `file_source` and `cmdline_source` name the two in errors.
    pub fn merge(
        file: Settings,
        file_source: &Source,
        cmdline: Settings,
        cmdline_source: &Source,
    ) -> Result<AgentConfig, ConfigError> {
        // Checked on the value that counts: a device on the command line that the
        // file overrides does not matter.
        let (data_dir, data_source) = match (file.data_dir.clone(), cmdline.data_dir.clone()) {
            (Some(d), _) => (d, file_source),
            (None, Some(d)) => (d, cmdline_source),
            (None, None) => (PathBuf::from(DEFAULT_DATA_DIR), file_source),
        };
        if data_dir.starts_with("/dev") {
            return Err(data_source.invalid(
                &data_source.field("data_dir", "data"),
                format!(
                    "{} is a device: a data device is not supported by this agent yet \
                     (format and mount it, then give the mount point's directory)",
                    data_dir.display()
                ),
            ));
        }
        let token = match (&file.token, &file.token_file) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(path)) => Some(read_token(path)?),
            (None, None) => cmdline.token.clone(),
        };
        Ok(AgentConfig {
            controllers: file.controllers.or(cmdline.controllers).unwrap_or_default(),
            token: token.map(Token),
            ca_pin: file.ca.or(cmdline.ca).map(|p| p.to_ascii_lowercase()),
            cluster: file.cluster.or(cmdline.cluster),
            data_dir,
            cgroup_parent: file.cgroup_parent,
            bridge: file
                .bridge
                .unwrap_or_else(|| crate::net::DEFAULT_BRIDGE.to_owned()),
            uplink: file.uplink,
            resync: file
                .resync_ms
                .map(Duration::from_millis)
                .unwrap_or(DEFAULT_RESYNC),
            capacity: file.capacity,
            image_limits: file.images.limits(),
            fencing: file.fencing.unwrap_or(true),
            // Checked by `Settings::check` (the default is well formed).
            listen: parse_socket(
                file.listen
                    .as_deref()
                    .or(cmdline.listen.as_deref())
                    .unwrap_or(DEFAULT_LISTEN),
                false,
            )
            .map_err(|reason| file_source.invalid("listen", reason))?,
            advertise: file
                .advertise
                .as_deref()
                .or(cmdline.advertise.as_deref())
                .map(|a| parse_socket(a, true))
                .transpose()
                .map_err(|reason| file_source.invalid("advertise", reason))?,
        })
    }

    /// Reads the configuration: `config` (if given) over the command line file.
    pub fn load(config: Option<&Path>, cmdline: &Path) -> Result<AgentConfig, ConfigError> {
        let file = match config {
            Some(path) => Settings::load(path)?,
            None => Settings::default(),
        };
        let line = super::cmdline::read(cmdline)?;
        let file_source = Source::File(config.unwrap_or(Path::new("agent.toml")).to_owned());
        Self::merge(
            file,
            &file_source,
            line,
            &Source::Cmdline(cmdline.to_owned()),
        )
    }

    /// The zone library's options for this configuration.
    pub fn host_options(&self) -> crate::zone::host::HostOptions {
        let mut options = crate::zone::host::HostOptions::new(&self.data_dir);
        options.cgroup_parent = self.cgroup_parent.clone();
        options.bridge = crate::net::BridgeOptions {
            name: self.bridge.clone(),
            uplink: self.uplink.clone(),
        };
        options.fence = self
            .fencing
            .then(|| crate::fence::lease_path(&self.data_dir));
        options.image_limits = self.image_limits;
        options
    }
}

fn read_token(path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.to_owned(),
        error,
    })?;
    let token = text.trim().to_owned();
    if token.is_empty() || token.chars().any(char::is_whitespace) {
        return Err(ConfigError::Invalid {
            path: path.to_owned(),
            field: "token_file".to_owned(),
            reason: "the file holds no token (or whitespace inside it)".to_owned(),
        });
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIN_A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const PIN_B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn the_file_wins_over_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "agent.toml",
            &format!(
                "controllers = [\"c1:7000\"]\nca = \"{PIN_A}\"\n[capacity]\nmemory_mib = 2048\n"
            ),
        );
        let line = write(
            dir.path(),
            "cmdline",
            &format!(
                "quiet zonefleet.controllers=c2:7000,c3:7000 zonefleet.ca={PIN_B} \
                 zonefleet.token=tok zonefleet.data=/srv/zf\n"
            ),
        );
        let c = AgentConfig::load(Some(&file), &line).unwrap();
        assert_eq!(c.controllers, ["c1:7000"], "the file's controllers");
        assert_eq!(c.ca_pin.as_deref(), Some(PIN_A), "the file's pin");
        assert_eq!(
            c.token.as_ref().unwrap().expose(),
            "tok",
            "only the line has it"
        );
        assert_eq!(c.data_dir, Path::new("/srv/zf"), "only the line has it");
        assert_eq!(c.capacity.memory_mib, Some(2048));
        assert_eq!(
            c.image_limits,
            crate::image::UnpackLimits::default(),
            "no [images]: the defaults"
        );
        assert_eq!(c.resync, DEFAULT_RESYNC);
        assert_eq!(c.listen, "0.0.0.0:7444".parse().unwrap(), "the default");
        assert_eq!(c.advertise, None);
        assert!(
            !format!("{c:?}").contains("tok\""),
            "the token is not printed"
        );

        // Without a file, the line gives everything.
        let c = AgentConfig::load(None, &line).unwrap();
        assert_eq!(c.controllers, ["c2:7000", "c3:7000"]);
        assert_eq!(c.ca_pin.as_deref(), Some(PIN_B));
        // Neither: defaults.
        let empty = write(dir.path(), "empty", "BOOT_IMAGE=/vmlinuz\n");
        let c = AgentConfig::load(None, &empty).unwrap();
        assert!(c.controllers.is_empty() && c.token.is_none());
        assert_eq!(c.data_dir, Path::new(DEFAULT_DATA_DIR));
    }

    #[test]
    fn a_token_file_is_read_and_relative_paths_follow_the_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "token", "s3cret\n");
        let file = write(dir.path(), "agent.toml", "token_file = \"token\"\n");
        let line = write(dir.path(), "cmdline", "zonefleet.token=other\n");
        let c = AgentConfig::load(Some(&file), &line).unwrap();
        assert_eq!(c.token.unwrap().expose(), "s3cret");
        write(dir.path(), "blank", "\n");
        let file = write(dir.path(), "agent2.toml", "token_file = \"blank\"\n");
        let err = AgentConfig::load(Some(&file), &line)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("token_file") && err.contains("no token"),
            "{err}"
        );
    }

    #[test]
    fn image_limits_come_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let line = write(dir.path(), "cmdline", "");
        let file = write(
            dir.path(),
            "agent.toml",
            "[images]\nunpacked_ratio = 50\nmax_entries = 2000000\n",
        );
        let c = AgentConfig::load(Some(&file), &line).unwrap();
        assert_eq!(
            c.image_limits,
            crate::image::UnpackLimits {
                ratio: 50,
                floor_bytes: 256 << 20,
                max_entries: 2_000_000,
            }
        );
        assert_eq!(
            c.host_options().image_limits.ratio,
            50,
            "handed to the zone host"
        );
    }

    #[test]
    fn bad_values_are_named_with_their_file() {
        let dir = tempfile::tempdir().unwrap();
        let line = write(dir.path(), "cmdline", "");
        let cases: &[(&str, &str)] = &[
            (
                "controllers = [\"c1:7000\", \"c2\"]",
                "controllers[1]: \"c2\" is not HOST:PORT",
            ),
            (
                "controllers = [\"c1:0\"]",
                "controllers[0]: \"c1:0\" has no valid port",
            ),
            ("controllers = [\"[::1:7000\"]", "controllers[0]"),
            ("controllers = []", "controllers: is empty"),
            (
                "ca = \"sha1:abc\"",
                "ca: \"sha1:abc\" does not start with \"sha256:\"",
            ),
            ("data_dir = \"/dev/sdb\"", "a data device is not supported"),
            ("cluster = \"UPPER\"", "cluster:"),
            ("cgroup_parent = \"a/b\"", "cgroup_parent:"),
            ("resync_ms = 0", "resync_ms: must be at least 1"),
            ("[capacity]\ncpu_percent = 0", "capacity.cpu_percent"),
            (
                "[images]\nmax_entries = 0",
                "images.max_entries: must be at least 1",
            ),
            (
                "[images]\nunpacked_ratio = 0\nunpacked_floor_mib = 0",
                "images.unpacked_floor_mib: must be at least 1",
            ),
            ("[images]\nratio = 3", "unknown field `ratio`"),
            ("token = \"a b\"", "token: is empty or holds whitespace"),
            (
                "token = \"a\"\ntoken_file = \"f\"",
                "token_file: cannot be given together",
            ),
            ("controlers = [\"c1:7000\"]", "unknown field `controlers`"),
            ("resync_ms = \"fast\"", "resync_ms"),
            ("listen = \"7444\"", "listen: \"7444\" is not IP:PORT"),
            (
                "listen = \"0.0.0.0:0\"",
                "listen: \"0.0.0.0:0\" has no port",
            ),
            (
                "advertise = \"0.0.0.0:7444\"",
                "advertise: \"0.0.0.0:7444\" is the unspecified address",
            ),
            (
                "advertise = \"host:7444\"",
                "advertise: \"host:7444\" is not IP:PORT",
            ),
        ];
        for (i, (toml, want)) in cases.iter().enumerate() {
            let file = write(dir.path(), &format!("a{i}.toml"), toml);
            let err = AgentConfig::load(Some(&file), &line)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("a{i}.toml")) && err.contains(want),
                "{toml:?}: {err}"
            );
        }
        // A device on the command line is named as the command line names it.
        let line = write(dir.path(), "cmdline2", "zonefleet.data=/dev/sda2");
        let err = AgentConfig::load(None, &line).unwrap_err().to_string();
        assert!(
            err.contains("cmdline2: zonefleet.data:") && err.contains("not supported"),
            "{err}"
        );
        // A file that sets its own data dir overrides the device: nothing to refuse.
        let file = write(dir.path(), "own.toml", "data_dir = \"/srv/zf\"");
        let c = AgentConfig::load(Some(&file), &line).unwrap();
        assert_eq!(c.data_dir, Path::new("/srv/zf"));
        let missing = dir.path().join("missing.toml");
        let err = AgentConfig::load(Some(&missing), &line)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.toml"), "{err}");
    }
}
