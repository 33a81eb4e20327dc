//! `zfadm zone exec` and `zfadm zone logs`: the zone's host is found through the
//! controllers (zone → host → the agent address the host registered), then its agent
//! is called directly over mTLS, dialled as the agent of that host
//! (`ExpectedPeer::Agent`). `--agent ADDR --host HOST_ID` skips the controllers.
//!
//! `exec` forwards stdin (and its end), writes the command's stdout and stderr to
//! ours, and exits with the command's status. With `-t` the command gets a terminal:
//! ours is put in raw mode (restored on every way out: the end, an error, SIGTERM,
//! SIGHUP, a panic) and its size is sent at the start and on each SIGWINCH.

use std::io::{Read, Write};

use anyhow::{bail, Context};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use uuid::Uuid;
use zonefleet_proto::cli::RawMode;
use zonefleet_proto::pb;
use zonefleet_proto::pb::exec_input::Input;
use zonefleet_proto::pb::exec_output::Output;

use super::connect::{code_name, Connection};

/// Where the agent of a zone's host is, and the zone's name for it.
#[derive(Debug, Clone)]
pub struct Target {
    /// The agent's address.
    pub address: String,
    /// Its host.
    pub host_id: Uuid,
    /// The zone (its uuid when found through the controllers).
    pub zone: String,
}

/// Finds `zone`'s host and its agent through the controllers, or takes `direct`
/// (`--agent`, `--host`). `running`: the zone must be running there (exec).
pub async fn target(
    conn: &Connection,
    zone: &str,
    direct: Option<(String, String)>,
    running: bool,
) -> anyhow::Result<Target> {
    if let Some((address, host)) = direct {
        let host_id = Uuid::parse_str(&host)
            .with_context(|| format!("--host: {host:?} is not a host id (a UUID)"))?;
        return Ok(Target {
            address,
            host_id,
            zone: zone.to_owned(),
        });
    }
    let request = pb::GetZoneRequest {
        zone: zone.to_owned(),
        consistency: pb::ReadConsistency::Unspecified as i32,
    };
    let found = conn
        .call(|mut c| {
            let r = request.clone();
            async move { c.get_zone(r).await.map(|r| r.into_inner()) }
        })
        .await?;
    let uuid = found
        .spec
        .as_ref()
        .and_then(|s| s.uuid.clone())
        .unwrap_or_else(|| zone.to_owned());
    if found.host_id.is_empty() {
        let why = if found.message.is_empty() {
            String::new()
        } else {
            format!(" ({})", found.message)
        };
        bail!("zone {uuid} is not placed on any host yet{why}");
    }
    let observed = pb::zone_state_name(found.observed_state);
    if running && found.observed_state != pb::ZoneState::Running as i32 {
        bail!(
            "zone {uuid} is {observed} on host {}, not running: nothing to exec in",
            found.host_id
        );
    }
    let host_ref = pb::HostRef {
        host_id: found.host_id.clone(),
    };
    let host = conn
        .call(|mut c| {
            let r = host_ref.clone();
            async move { c.get_host(r).await.map(|r| r.into_inner()) }
        })
        .await?;
    let address = host
        .sysinfo
        .as_ref()
        .map(|s| s.agent_address.clone())
        .unwrap_or_default();
    if address.is_empty() {
        bail!(
            "host {} has no agent address: its agent registered without serving the Agent \
             service (an older agent, or one that has not registered yet)",
            found.host_id
        );
    }
    let host_id = Uuid::parse_str(&found.host_id).with_context(|| {
        format!(
            "host {:?} is not an agent's host id (a UUID): it has no agent to reach",
            found.host_id
        )
    })?;
    Ok(Target {
        address,
        host_id,
        zone: uuid,
    })
}

fn agent_error(target: &Target, status: tonic::Status) -> anyhow::Error {
    // A transport failure keeps its cause (a TLS alert: the agent refused our
    // certificate) as the status's source, not in its message.
    let mut message = status.message().to_owned();
    let mut cause = std::error::Error::source(&status);
    while let Some(e) = cause {
        let text = e.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        cause = e.source();
    }
    // TLS 1.3 tells a client its certificate was refused only after the handshake, so
    // it shows up as a broken connection at the first call.
    let hint = if matches!(
        status.code(),
        tonic::Code::Unknown | tonic::Code::Cancelled | tonic::Code::Unavailable
    ) {
        "; the agent may have refused our certificate (revoked, expired, or of another fleet)"
    } else {
        ""
    };
    anyhow::anyhow!(
        "{}: {message} (the agent of host {} at {}){hint}",
        code_name(status.code()),
        target.host_id,
        target.address
    )
}

/// `zfadm zone logs`: writes the log to `out` (following it with `follow`).
pub async fn logs(
    conn: &Connection,
    target: &Target,
    follow: bool,
    tail_bytes: u64,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut client = conn.agent(&target.address, target.host_id).await?;
    let mut stream = client
        .logs(pb::LogsRequest {
            zone: target.zone.clone(),
            follow,
            tail_bytes,
        })
        .await
        .map_err(|s| agent_error(target, s))?
        .into_inner();
    while let Some(chunk) = stream.message().await.map_err(|s| agent_error(target, s))? {
        out.write_all(&chunk.data)?;
        out.flush()?;
    }
    Ok(())
}

/// Our terminal's size, if stdin is one.
fn terminal_size() -> Option<pb::TtySize> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the pointer, which lives across the
    // call; fd 0 is only read.
    let rc = unsafe { libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_row > 0).then_some(pb::TtySize {
        rows: u32::from(ws.ws_row),
        cols: u32::from(ws.ws_col),
    })
}

/// Reads our stdin on a thread of its own (a blocked read must not hold up the
/// runtime's shutdown), sending chunks and then EOF.
fn stdin_reader(tx: mpsc::Sender<pb::ExecInput>) {
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let input = match stdin.read(&mut buf) {
                Ok(0) | Err(_) => Input::StdinEof(true),
                Ok(n) => Input::Stdin(buf[..n].to_vec()),
            };
            let eof = matches!(input, Input::StdinEof(_));
            if tx
                .blocking_send(pb::ExecInput { input: Some(input) })
                .is_err()
                || eof
            {
                return;
            }
        }
    });
}

/// `zfadm zone exec`: runs `argv` in the zone and returns its exit status.
pub async fn exec(
    conn: &Connection,
    target: &Target,
    argv: Vec<String>,
    tty: bool,
    out: &mut dyn Write,
) -> anyhow::Result<i32> {
    if tty && !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        bail!("-t: standard input is not a terminal");
    }
    let mut client = conn.agent(&target.address, target.host_id).await?;
    let mut env = std::collections::HashMap::new();
    if tty {
        if let Ok(term) = std::env::var("TERM") {
            env.insert("TERM".to_owned(), term);
        }
    }
    let (tx, rx) = mpsc::channel(16);
    tx.send(pb::ExecInput {
        input: Some(Input::Start(pb::ExecStart {
            zone: target.zone.clone(),
            argv,
            env,
            tty,
            tty_size: if tty { terminal_size() } else { None },
        })),
    })
    .await
    .expect("the channel is open");
    let mut stream = client
        .exec(ReceiverStream::new(rx))
        .await
        .map_err(|s| agent_error(target, s))?
        .into_inner();
    // From here on our terminal is raw until this function returns, however it does.
    let _raw = if tty {
        Some(RawMode::enter(std::io::stdin()).context("-t: raw mode")?)
    } else {
        None
    };
    stdin_reader(tx.clone());
    use tokio::signal::unix::{signal, SignalKind};
    let mut winch = signal(SignalKind::window_change())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut stderr = std::io::stderr();
    loop {
        tokio::select! {
            message = stream.message() => {
                let message = message.map_err(|s| agent_error(target, s))?;
                match message.and_then(|m| m.output) {
                    Some(Output::Stdout(bytes)) => {
                        out.write_all(&bytes)?;
                        out.flush()?;
                    }
                    Some(Output::Stderr(bytes)) => {
                        stderr.write_all(&bytes)?;
                        stderr.flush()?;
                    }
                    Some(Output::ExitStatus(status)) => return Ok(status),
                    None => bail!(
                        "the agent of host {} ended the session without an exit status",
                        target.host_id
                    ),
                }
            }
            _ = winch.recv(), if tty => {
                if let Some(size) = terminal_size() {
                    let _ = tx.send(pb::ExecInput { input: Some(Input::Resize(size)) }).await;
                }
            }
            // Ended from outside: the terminal is restored on the way out, and the
            // session closes (the agent kills the command).
            _ = term.recv() => return Ok(128 + libc::SIGTERM),
            _ = hup.recv() => return Ok(128 + libc::SIGHUP),
        }
    }
}
