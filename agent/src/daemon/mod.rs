//! The fleet daemon, `zonefleet-agent run`: one module per concern —
//! [`config`] and [`cmdline`] (settings), [`enroll`] and [`certs`] (identity and its
//! renewal), [`client`] (the `Control` client), [`heartbeat`] (register and lease),
//! [`watch`] (the assignment stream), [`converge`] (the engine that drives the zone
//! library), [`fetch`] (images from the controllers), [`report`] (observed states),
//! [`capacity`] and [`notify`] (systemd), and [`api`] (the `Agent` service it serves:
//! exec, logs, local status).
//!
//! Start-up order: the zone library and the host's sysinfo first (collected once: its
//! probes fork throwaway children and take tens of milliseconds), then the engine
//! adopts the zones already on the host — before any controller is reached, so zones
//! keep running whether or not one answers —, then identity (stored certificate or
//! enrollment), the `Agent` listener (its address is registered), register,
//! `READY=1`, heartbeats, the watch and reports.
//!
//! Stopping the daemon (SIGTERM, SIGINT) lets the engine finish the zone verb it is
//! in, then exits: zones keep running (the systemd unit has `KillMode=process`).

pub mod api;
pub mod assignment;
pub mod backoff;
pub mod capacity;
pub mod certs;
pub mod client;
pub mod cmdline;
pub mod config;
pub mod converge;
pub mod enroll;
pub mod fetch;
pub mod heartbeat;
pub mod notify;
pub mod report;
pub mod revoked;
pub mod watch;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use zonefleet_proto::host::{Capacity, HostSysinfo};
use zonefleet_proto::pb;
use zonefleet_proto::tls::ReloadableCert;

use self::config::AgentConfig;
use self::converge::Engine;
use crate::zone::ZoneHost;

/// Errors that stop the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The zone library could not be opened.
    #[error(transparent)]
    Zone(#[from] crate::zone::ZoneError),
    /// The host's sysinfo could not be collected.
    #[error(transparent)]
    Sysinfo(#[from] crate::sysinfo::SysinfoError),
    /// The engine's persisted state is unusable.
    #[error(transparent)]
    Converge(#[from] converge::ConvergeError),
    /// The host's key or certificate is unusable.
    #[error(transparent)]
    Cert(#[from] certs::CertError),
    /// The host could not get an identity.
    #[error(transparent)]
    Enroll(#[from] enroll::EnrollError),
    /// The `Agent` service could not be served.
    #[error(transparent)]
    Api(#[from] api::ApiError),
    /// The async runtime or the engine thread could not start.
    #[error("starting the daemon: {0}")]
    Start(std::io::Error),
}

/// What the engine thread is asked to do.
#[derive(Debug)]
pub enum EngineCommand {
    /// Apply an event of the watch stream.
    Event(Box<pb::AssignmentEvent>),
    /// Look at the zones again.
    Resync,
    /// The host's lease was renewed: fenced zones may boot again.
    LeaseRenewed,
    /// An image the engine asked for was fetched (or not).
    ImageFetched {
        /// The image reference asked for.
        image: String,
        /// `Err`: why not.
        result: Result<(), String>,
    },
    /// Finish and return.
    Stop,
}

/// What the daemon shares with its engine thread.
#[derive(Debug, Clone)]
pub struct EngineHandle {
    /// Sends commands to the engine.
    pub commands: mpsc::Sender<EngineCommand>,
    /// The revision the engine applied (and stored).
    pub revision: Arc<AtomicU64>,
    /// (memory MiB, CPU percent, disk GiB) held by the assigned zones.
    pub allocated: Arc<Mutex<(u64, u32, u64)>>,
}

/// Runs `engine` on a thread of its own: adopts the host's zones, then applies the
/// commands it is sent, handing every observed transition to `reports`.
pub fn spawn_engine(
    mut engine: Engine,
    reports: tokio::sync::mpsc::UnboundedSender<Vec<pb::ObservedZone>>,
) -> Result<(EngineHandle, std::thread::JoinHandle<()>), DaemonError> {
    let (tx, rx) = mpsc::channel::<EngineCommand>();
    let revision = Arc::new(AtomicU64::new(engine.revision()));
    let allocated = Arc::new(Mutex::new(engine.allocated()));
    let handle = EngineHandle {
        commands: tx,
        revision: revision.clone(),
        allocated: allocated.clone(),
    };
    let thread = std::thread::Builder::new()
        .name("converge".into())
        .spawn(move || {
            engine.start();
            let _ = reports.send(engine.take_reports());
            while let Ok(command) = rx.recv() {
                match command {
                    EngineCommand::Event(event) => {
                        if let Err(e) = engine.apply(*event) {
                            tracing::error!(error = %e, "assignment not recorded");
                        }
                        revision.store(engine.revision(), Ordering::Release);
                        *allocated.lock().expect("lock") = engine.allocated();
                    }
                    EngineCommand::Resync => engine.resync(),
                    EngineCommand::LeaseRenewed => {}
                    EngineCommand::ImageFetched { image, result } => {
                        engine.image_fetched(&image, result)
                    }
                    EngineCommand::Stop => break,
                }
                engine.resume_fenced();
                let batch = engine.take_reports();
                if !batch.is_empty() {
                    let _ = reports.send(batch);
                }
            }
        })
        .map_err(DaemonError::Start)?;
    Ok((handle, thread))
}

/// Runs the daemon with `config` until SIGTERM or SIGINT. Blocking: it opens the zone
/// library and collects the sysinfo, then starts its own async runtime.
pub fn run(config: AgentConfig) -> Result<(), DaemonError> {
    zonefleet_proto::limits::raise_open_files_and_say();
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| DaemonError::Zone(crate::zone::ZoneError::io(&config.data_dir, e)))?;
    let host = ZoneHost::open(config.host_options())?;
    // The Agent service's own handle: it only reads zones (and runs the CLI for exec).
    let api_host = Arc::new(ZoneHost::open(config.host_options())?);
    let sysinfo = crate::sysinfo::collect(&config.data_dir)?;
    let engine = Engine::open(host)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("zonefleet-agent")
        .build()
        .map_err(DaemonError::Start)?;
    runtime.block_on(serve(config, sysinfo, engine, api_host))
}

async fn serve(
    config: AgentConfig,
    mut sysinfo: HostSysinfo,
    engine: Engine,
    api_host: Arc<ZoneHost>,
) -> Result<(), DaemonError> {
    let host_id = sysinfo.host_id;
    let (fetch_tx, fetch_rx) = tokio::sync::mpsc::unbounded_channel();
    let image_store = engine.host().images.clone();
    let engine = engine.with_fetcher(fetch_tx);
    let (report_tx, report_rx) = tokio::sync::mpsc::unbounded_channel();
    let (engine, engine_thread) = spawn_engine(engine, report_tx)?;
    let stop_engine = |engine: &EngineHandle, thread: std::thread::JoinHandle<()>| {
        let _ = engine.commands.send(EngineCommand::Stop);
        let _ = thread.join();
    };

    let key = Arc::new(certs::HostKey::load_or_generate(&config.data_dir)?);
    let enrolled = tokio::select! {
        r = establish_until_done(&config, host_id, &key) => r,
        _ = shutdown_signal() => {
            stop_engine(&engine, engine_thread);
            return Ok(());
        }
    };
    let enrolled = match enrolled {
        Ok(e) => e,
        Err(e) => {
            stop_engine(&engine, engine_thread);
            return Err(e);
        }
    };
    tracing::info!(identity = %enrolled.credentials.identity, controllers = ?enrolled.controllers, "identity ready");
    let client = client::ControlClient::new(
        enrolled.controllers.clone(),
        enrolled.credentials.client_config()?,
    );

    let capacity: Arc<dyn Fn() -> Capacity + Send + Sync> = {
        let allocated = engine.allocated.clone();
        let settings = config.capacity;
        let data_dir = config.data_dir.clone();
        let info = sysinfo.clone();
        Arc::new(move || {
            let held = *allocated.lock().expect("lock");
            capacity::capacity(&info, &settings, &data_dir, held)
        })
    };
    // The Agent service, with the certificate renewal will replace; its address is
    // registered with the sysinfo.
    let served_cert =
        ReloadableCert::new(&enrolled.credentials.cert_key).map_err(certs::CertError::from)?;
    let service = api::AgentService::new(api_host, sysinfo.clone(), capacity.clone());
    let trust = enrolled.credentials.trust()?;
    let (bound, api_task) =
        match api::serve(config.listen, &trust, served_cert.clone(), service).await {
            Ok(served) => served,
            Err(e) => {
                stop_engine(&engine, engine_thread);
                return Err(e.into());
            }
        };
    sysinfo.agent_address = api::advertised_address(bound, config.advertise, &enrolled.controllers);
    tracing::info!(listen = %bound, advertised = ?sysinfo.agent_address, "serving the Agent service");

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(async move {
        let _ = api_task.await;
    });
    tasks.spawn(certs::renew_loop(
        client.clone(),
        config.data_dir.clone(),
        key.clone(),
        enrolled.credentials.clone(),
        served_cert,
    ));
    tasks.spawn(report::run(client.clone(), host_id.to_string(), report_rx));
    {
        let commands = engine.commands.clone();
        let fetcher = fetch::Fetcher {
            client: client.clone(),
            host_id: host_id.to_string(),
            downloads: fetch::downloads_dir(&config.data_dir),
            store: image_store,
        };
        tasks.spawn(fetch::run(fetcher, fetch_rx, move |image, result| {
            commands
                .send(EngineCommand::ImageFetched { image, result })
                .is_ok()
        }));
    }
    {
        let commands = engine.commands.clone();
        tasks.spawn(watch::run(
            client.clone(),
            host_id.to_string(),
            engine.revision.clone(),
            move |event| commands.send(EngineCommand::Event(Box::new(event))).is_ok(),
        ));
    }
    {
        let commands = engine.commands.clone();
        let every = config.resync;
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if commands.send(EngineCommand::Resync).is_err() {
                    return;
                }
            }
        });
    }
    {
        let commands = engine.commands.clone();
        let keeper = heartbeat::LeaseKeeper {
            file: Some(crate::fence::lease_path(&config.data_dir)),
            applied_revision: engine.revision.clone(),
            on_renew: Box::new(move || {
                let _ = commands.send(EngineCommand::LeaseRenewed);
            }),
        };
        if !config.fencing {
            tracing::warn!("fencing is off: a lost host's reschedule zones keep running while the controllers start them elsewhere");
        }
        tasks.spawn(heartbeat::run(
            client.clone(),
            sysinfo,
            move || capacity(),
            || match notify::notify("READY=1") {
                Ok(true) => tracing::info!("told systemd READY=1"),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "cannot notify systemd"),
            },
            revoked::RevocationFeed::new(trust.revocations().clone()),
            keeper,
        ));
    }

    shutdown_signal().await;
    tracing::info!("stopping: zones keep running");
    let _ = notify::notify("STOPPING=1");
    tasks.abort_all();
    tokio::task::spawn_blocking(move || stop_engine(&engine, engine_thread))
        .await
        .ok();
    Ok(())
}

/// Whether an enrollment failure may pass by itself (unreachable controllers, a rate
/// limit, a controller not ready to sign): tried again rather than fatal. A refused
/// token, a request the controllers call invalid or a missing setting stop the daemon.
fn passing(e: &enroll::EnrollError) -> bool {
    match e {
        enroll::EnrollError::Cert(certs::CertError::Client(c)) => !matches!(
            c.code(),
            Some(tonic::Code::PermissionDenied | tonic::Code::InvalidArgument)
        ),
        _ => false,
    }
}

/// [`enroll::establish`], retried while the failure may pass ([`passing`]).
async fn establish_until_done(
    config: &AgentConfig,
    host_id: uuid::Uuid,
    key: &certs::HostKey,
) -> Result<enroll::Enrolled, DaemonError> {
    let mut backoff = backoff::Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
    loop {
        match enroll::establish(config, host_id, key).await {
            Ok(e) => return Ok(e),
            Err(e) if passing(&e) => {
                tracing::warn!(error = %e, "cannot enroll yet; trying again");
                backoff.sleep().await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Resolves at SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
