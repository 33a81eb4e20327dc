//! `zonefleet-controller`: one member of the Raft group that holds the fleet's
//! desired state and serves the operator API over mTLS.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;
use zonefleet_controller::config::ControllerConfig;
use zonefleet_controller::node::{Controller, NodeOptions};
use zonefleet_proto::tls::{server_config, CertKey, FleetTrust, IncomingOptions, TlsIncoming};

/// Command line of `zonefleet-controller`.
#[derive(Debug, Parser)]
#[command(name = "zonefleet-controller", version, about, long_about = None)]
struct Cli {
    /// The configuration file (see docs/controller.md).
    #[arg(long, value_name = "FILE", env = "ZONEFLEET_CONTROLLER_CONFIG")]
    config: PathBuf,
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = ControllerConfig::load(&cli.config)?;
    let trust = FleetTrust::load(&config.cluster, &config.tls.ca)?;
    let own = CertKey::load(&config.tls.cert, &config.tls.key)?;
    let identity = own.identity()?;
    anyhow::ensure!(
        identity
            .to_string()
            .ends_with(&format!("/controller/{}", config.id)),
        "{}: the certificate is {identity}, not controller {} of cluster {}",
        config.tls.cert.display(),
        config.id,
        config.cluster
    );
    let signing_ca = config.load_signing_ca()?;
    if signing_ca.is_none() {
        tracing::warn!("no [signing_ca] configured: agents cannot enroll or renew here");
    }
    let control = config.control_options(signing_ca);
    let tls = server_config(&trust, &own)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listen on {}", config.listen))?;
    let initial_members = config
        .initial_members()
        .map_err(|e| anyhow::anyhow!("initial_members: {e}"))?;
    let node = Controller::start(NodeOptions {
        id: config.id,
        cluster: config.cluster.clone(),
        data_dir: config.data_dir.clone(),
        trust,
        own,
        raft: config.raft_config(),
        failover: Some(config.failover_timing()),
        initial_members,
        dialer: std::sync::Arc::new(zonefleet_controller::raft::dial::TcpDialer),
        control,
        images: config.image_options(),
    })
    .await?;
    tracing::info!(id = config.id, listen = %config.listen, advertise = %config.advertise(), "controller started");
    let incoming = TlsIncoming::new(listener, tls, IncomingOptions::default())?;
    // Installed before serving, so a failure is an error at start, not a panic later.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("install the SIGTERM handler")?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
    };
    zonefleet_controller::server::serve(node.clone(), incoming, shutdown).await?;
    node.shutdown().await;
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,openraft=warn".into()),
        )
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, not in a log file or the journal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    zonefleet_proto::limits::raise_open_files_and_say();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("zonefleet-controller: error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zonefleet-controller: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
