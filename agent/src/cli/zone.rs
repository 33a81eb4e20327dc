//! `zonefleet-agent zone …`: the zone lifecycle by hand, as `vmadm` does.

use std::path::PathBuf;

use clap::Subcommand;
use zonefleet_agent::zone::exec::{check_env, ExecOptions};
use zonefleet_agent::zone::host::{HostOptions, ZoneHost};
use zonefleet_proto::cli::{read_input, Format};
use zonefleet_proto::spec::{ZonePatch, ZoneSpec};

use super::output;

/// Zone commands. ZONE is a uuid, a unique uuid prefix or an alias.
#[derive(Debug, Subcommand)]
pub enum ZoneCommand {
    /// Check a spec without creating anything; prints every problem.
    Validate {
        /// The spec file (`-` for stdin).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Create (configure + install) a zone; boots it when `autoboot` is true.
    Create {
        /// The spec file (`-` for stdin).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Boot an installed zone.
    Boot {
        /// The zone.
        zone: String,
    },
    /// Halt a running zone (its init's shutdown signal — `halt_signal`, else the
    /// image's, else detected: SIGRTMIN+3 for systemd, SIGUSR2 for busybox init,
    /// SIGTERM otherwise — then the grace period, then kill).
    Halt {
        /// The zone.
        zone: String,
        /// Seconds to wait after the signal before killing.
        #[arg(long, default_value_t = 10)]
        grace: u64,
    },
    /// Halt then boot a zone.
    Reboot {
        /// The zone.
        zone: String,
    },
    /// Delete a zone and everything of it.
    Delete {
        /// The zone.
        zone: String,
    },
    /// Change a zone's properties (limits change live on a running zone).
    Update {
        /// The zone.
        zone: String,
        /// A JSON object of properties (`-` for stdin).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// List zones.
    List {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Show one zone.
    Get {
        /// The zone.
        zone: String,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Json)]
        output: Format,
    },
    /// Print a zone's console log.
    Logs {
        /// The zone.
        zone: String,
    },
    /// Attach to a running zone's console (like `vmadm console`, `zlogin -C`):
    /// what you type goes to it, what it prints comes here; one client at a time.
    /// A terminal is put in raw mode (restored at the end). Detach with the escape
    /// key (^] by default). Input that is not a terminal is sent too, and at its
    /// end the output is still printed until the console ends or a signal arrives.
    Console {
        /// The zone.
        zone: String,
        /// The detach key: ^X for a control character (^], ^A…), or none.
        #[arg(long, default_value = "^]", value_name = "KEY")]
        escape: String,
    },
    /// Run a command inside a running zone (like zlogin); exits with its status.
    Exec {
        /// The zone.
        zone: String,
        /// Give the command its stdin as controlling terminal (stdin must be a
        /// terminal): a session of its own, so ^C and a hangup reach it.
        #[arg(short = 't', long)]
        tty: bool,
        /// An environment variable for the command, `NAME=VALUE` (repeatable).
        #[arg(long = "env", value_name = "NAME=VALUE", value_parser = parse_env)]
        env: Vec<(String, String)>,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Processes of every zone (or one), as the host sees them.
    Ps {
        /// Only this zone.
        zone: Option<String>,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Boot every `autoboot` zone that should run but does not (after a host
    /// reboot); run by the agent's service at start.
    Autoboot,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not NAME=VALUE"))?;
    check_env(name, value)?;
    Ok((name.to_owned(), value.to_owned()))
}

fn host(options: &HostOptions, grace: Option<u64>) -> anyhow::Result<ZoneHost> {
    let mut options = options.clone();
    if let Some(secs) = grace {
        options.halt_grace = std::time::Duration::from_secs(secs);
    }
    Ok(ZoneHost::open(options)?)
}

/// Runs a zone command; returns the exit code.
pub fn run(options: &HostOptions, cmd: ZoneCommand) -> anyhow::Result<i32> {
    match cmd {
        ZoneCommand::Validate { file } => {
            ZoneSpec::from_json_validated(&read_input(&file)?)?;
            println!("valid");
            Ok(0)
        }
        ZoneCommand::Create { file } => {
            let spec = ZoneSpec::from_json_validated(&read_input(&file)?)?;
            let status = host(options, None)?.create(spec)?;
            println!("{}", status.uuid);
            Ok(0)
        }
        ZoneCommand::Boot { zone } => {
            host(options, None)?.boot(&zone)?;
            Ok(0)
        }
        ZoneCommand::Halt { zone, grace } => {
            host(options, Some(grace))?.halt(&zone)?;
            Ok(0)
        }
        ZoneCommand::Reboot { zone } => {
            host(options, None)?.reboot(&zone)?;
            Ok(0)
        }
        ZoneCommand::Delete { zone } => {
            let uuid = host(options, None)?.delete(&zone)?;
            println!("deleted {uuid}");
            Ok(0)
        }
        ZoneCommand::Update { zone, file } => {
            let patch = ZonePatch::from_json(&read_input(&file)?)?;
            host(options, None)?.update(&zone, &patch)?;
            Ok(0)
        }
        ZoneCommand::List { output } => {
            output::zones(&host(options, None)?.list()?, output)?;
            Ok(0)
        }
        ZoneCommand::Get { zone, output } => {
            output::zone(&host(options, None)?.get(&zone)?, output)?;
            Ok(0)
        }
        ZoneCommand::Logs { zone } => {
            use std::io::Write;
            let bytes = host(options, None)?.logs(&zone)?;
            std::io::stdout().write_all(&bytes)?;
            Ok(0)
        }
        ZoneCommand::Console { zone, escape } => console(options, &zone, &escape),
        ZoneCommand::Exec {
            zone,
            tty,
            env,
            command,
        } => {
            if tty && !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                anyhow::bail!("--tty: standard input is not a terminal");
            }
            let exec = ExecOptions {
                argv: command,
                env,
                tty,
            };
            Ok(host(options, None)?.exec_with(&zone, &exec)?)
        }
        ZoneCommand::Ps { zone, output } => {
            output::processes(&host(options, None)?.ps(zone.as_deref())?, output)?;
            Ok(0)
        }
        ZoneCommand::Autoboot => {
            let host = host(options, None)?;
            let mut failed = 0;
            for (uuid, result) in host.autoboot()? {
                match result {
                    Ok(()) => println!("booted {uuid}"),
                    Err(e) => {
                        eprintln!("zonefleet-agent: autoboot {uuid}: {e}");
                        failed += 1;
                    }
                }
            }
            Ok(if failed == 0 { 0 } else { 1 })
        }
    }
}

/// `zone console`: attaches our terminal (raw when it is one) to the zone's console.
/// SIGTERM, SIGHUP, SIGINT and SIGQUIT end the attach through a signal fd, so the
/// terminal is restored however it ends; the exit code is then 128 + the signal.
fn console(options: &HostOptions, zone: &str, escape: &str) -> anyhow::Result<i32> {
    use anyhow::Context;
    use nix::sys::signal::{SigSet, Signal};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    use std::io::IsTerminal;
    use std::os::fd::AsFd;
    use zonefleet_agent::zsched::console::{self, client, AttachOptions, Detach};

    let key = client::parse_escape(escape).map_err(|e| anyhow::anyhow!("--escape: {e}"))?;
    let socket = host(options, None)?.console_socket(zone)?;
    let mut stops = SigSet::empty();
    for signal in [
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGQUIT,
    ] {
        stops.add(signal);
    }
    // This command runs on one thread: blocked here, they reach only the fd.
    stops.thread_block().context("block signals")?;
    let stop = SignalFd::with_flags(&stops, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .context("signalfd")?;
    let stdin = std::io::stdin();
    let tty = stdin.is_terminal();
    let raw = if tty {
        Some(zonefleet_proto::cli::RawMode::enter(stdin.as_fd()).context("raw mode")?)
    } else {
        None
    };
    let end = if tty { "\r\n" } else { "\n" };
    let how = key.map_or("no detach key: end it with a signal".into(), |k| {
        format!("detach with {}", client::escape_name(k))
    });
    eprint!("[attached to the console of zone {zone}; {how}]{end}");
    let result = console::attach(
        &socket,
        stdin.as_fd(),
        &mut std::io::stdout().lock(),
        &AttachOptions {
            escape: key,
            stop: Some(stop.as_fd()),
        },
    );
    drop(raw);
    match result.with_context(|| format!("zone {zone}"))? {
        Detach::Escape => {
            eprintln!("\n[detached from the console of zone {zone}]");
            Ok(0)
        }
        Detach::Closed => {
            eprintln!("\n[the console of zone {zone} closed: the zone halted]");
            Ok(0)
        }
        Detach::Stopped => {
            let signal = stop
                .read_signal()
                .ok()
                .flatten()
                .map_or(libc::SIGTERM, |s| s.ssi_signo as i32);
            eprintln!("\n[detached from the console of zone {zone}: signal {signal}]");
            Ok(128 + signal)
        }
    }
}
