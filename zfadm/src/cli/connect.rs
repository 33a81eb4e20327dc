//! Finding controllers and certificates (flags, then environment, then
//! `~/.config/zonefleet/config.toml`) and calling the first controller that answers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use serde::Deserialize;
use tonic::transport::Channel;
use zonefleet_proto::pb::agent_client::AgentClient;
use zonefleet_proto::pb::operator_client::OperatorClient;
use zonefleet_proto::tls::{client_config, connect_channel, CertKey, ExpectedPeer, FleetTrust};

/// How `zfadm` reaches the controllers.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// Controllers to try in order, `HOST:PORT` separated by commas.
    #[arg(
        long = "controllers",
        global = true,
        env = "ZONEFLEET_CONTROLLERS",
        value_delimiter = ','
    )]
    pub controller_addresses: Vec<String>,
    /// The fleet CA certificate.
    #[arg(long, global = true, env = "ZONEFLEET_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// The operator certificate.
    #[arg(long, global = true, env = "ZONEFLEET_CERT", value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// The operator's private key.
    #[arg(long, global = true, env = "ZONEFLEET_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// The configuration file (default `~/.config/zonefleet/config.toml`).
    #[arg(
        long = "zfadm-config",
        global = true,
        env = "ZONEFLEET_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    controllers: Vec<String>,
    cluster: Option<String>,
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

/// Resolved connection settings.
#[derive(Debug, Clone)]
pub struct Connection {
    controllers: Vec<String>,
    trust: FleetTrust,
    own: CertKey,
}

fn read_file_config(path: &Path, required: bool) -> anyhow::Result<FileConfig> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).with_context(|| format!("{}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            Ok(FileConfig::default())
        }
        Err(e) => Err(e).with_context(|| format!("{}", path.display())),
    }
}

impl ConnectArgs {
    /// Flags and environment first, then the configuration file.
    pub fn resolve(&self) -> anyhow::Result<Connection> {
        self.resolve_with(true)
    }

    /// [`Self::resolve`]; without `need_controllers`, none may be given (a command
    /// that dials an agent directly).
    pub fn resolve_with(&self, need_controllers: bool) -> anyhow::Result<Connection> {
        let (file, base) = match &self.config {
            Some(path) => (
                read_file_config(path, true)?,
                path.parent().map(Path::to_owned),
            ),
            None => match std::env::var_os("HOME") {
                Some(home) => {
                    let path = PathBuf::from(home).join(".config/zonefleet/config.toml");
                    (
                        read_file_config(&path, false)?,
                        path.parent().map(Path::to_owned),
                    )
                }
                None => (FileConfig::default(), None),
            },
        };
        let rel = |p: PathBuf| match (&base, p.is_relative()) {
            (Some(b), true) => b.join(p),
            _ => p,
        };
        let controllers = if self.controller_addresses.is_empty() {
            file.controllers
        } else {
            self.controller_addresses.clone()
        };
        if controllers.is_empty() && need_controllers {
            bail!("no controllers: give --controllers, ZONEFLEET_CONTROLLERS or `controllers` in the config file");
        }
        let need = |flag: Option<PathBuf>, file: Option<PathBuf>, what: &str| {
            flag.or(file.map(rel)).with_context(|| {
                format!(
                    "no {what}: give --{what}, ZONEFLEET_{} or `{what}` in the config file",
                    what.to_uppercase()
                )
            })
        };
        let ca = need(self.ca.clone(), file.ca, "ca")?;
        let cert = need(self.cert.clone(), file.cert, "cert")?;
        let key = need(self.key.clone(), file.key, "key")?;
        let own = CertKey::load(&cert, &key)?;
        let cluster = match file.cluster {
            Some(c) => c,
            None => own.identity()?.cluster().to_owned(),
        };
        let trust = FleetTrust::load(&cluster, &ca)?;
        Ok(Connection {
            controllers,
            trust,
            own,
        })
    }
}

impl Connection {
    /// The controllers, in the order they are tried.
    pub fn controllers(&self) -> &[String] {
        &self.controllers
    }

    /// An operator client of one controller.
    pub async fn operator(&self, address: &str) -> anyhow::Result<OperatorClient<Channel>> {
        let config = client_config(&self.trust, ExpectedPeer::AnyController, Some(&self.own))?;
        let channel =
            tokio::time::timeout(Duration::from_secs(5), connect_channel(address, config))
                .await
                .with_context(|| format!("connect {address}: timed out"))??;
        Ok(OperatorClient::new(channel).max_decoding_message_size(64 * 1024 * 1024))
    }

    /// An `Agent` client of the agent of `host_id` at `address`, dialled as that host's
    /// agent (its certificate must name the host; the address is not checked).
    pub async fn agent(
        &self,
        address: &str,
        host_id: uuid::Uuid,
    ) -> anyhow::Result<AgentClient<Channel>> {
        let config = client_config(&self.trust, ExpectedPeer::Agent(host_id), Some(&self.own))?;
        let channel =
            tokio::time::timeout(Duration::from_secs(5), connect_channel(address, config))
                .await
                .with_context(|| format!("connect to the agent at {address}: timed out"))?
                .with_context(|| format!("connect to the agent of host {host_id} at {address}"))?;
        Ok(AgentClient::new(channel))
    }

    /// Calls `f` on the first controller that can be reached and answers; a controller
    /// that is down or has no leader (`UNAVAILABLE`) is skipped for the next.
    pub async fn call<T, F, Fut>(&self, f: F) -> anyhow::Result<T>
    where
        F: Fn(OperatorClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let mut last = None;
        for address in &self.controllers {
            let client = match self.operator(address).await {
                Ok(c) => c,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            match f(client).await {
                Ok(value) => return Ok(value),
                Err(status) if status.code() == tonic::Code::Unavailable => {
                    last = Some(anyhow::anyhow!("{address}: {}", status.message()));
                }
                Err(status) => bail!("{}: {}", code_name(status.code()), status.message()),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no controller answered")))
            .context("no controller could serve the request")
    }
}

/// A status code as a lowercase word.
pub fn code_name(code: tonic::Code) -> String {
    format!("{code:?}")
        .chars()
        .enumerate()
        .flat_map(|(i, c)| {
            let sep = (i > 0 && c.is_uppercase()).then_some('_');
            sep.into_iter().chain(c.to_lowercase())
        })
        .collect()
}
