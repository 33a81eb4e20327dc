//! `Agent.Exec`: one command in a zone per stream, run by this agent's own CLI
//! (`zonefleet-agent zone exec`) as a child process, because joining a zone forks and
//! needs a single-threaded process (see [`crate::zone::exec`]), which the daemon is not.
//!
//! The first message names the zone and the command; then stdin flows in (`stdin_eof`
//! closes it; with a tty, it sends the terminal's end-of-file character instead) and
//! stdout/stderr flow out, the exit status last. With `tty`, the command's stdin,
//! stdout and stderr are a pty made here (stdout carries everything the terminal
//! shows), sized from `tty_size` and `resize`.
//!
//! When the caller goes away, the command's process group is killed (SIGKILL) and,
//! with a tty, the pty is closed, which hangs up the command's session; nothing is
//! left running for a caller nobody hears.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tonic::{Status, Streaming};
use zonefleet_proto::pb;
use zonefleet_proto::pb::exec_input::Input;
use zonefleet_proto::pb::exec_output::Output;

use crate::zone::exec::check_env;
use crate::zone::{ZoneHost, ZoneState};

/// The most a client may send as the command (argv and env together).
const MAX_COMMAND_BYTES: usize = 256 * 1024;
/// The size of one read of the command's output.
const CHUNK: usize = 32 * 1024;
/// The terminal's end-of-file character (^D), sent for `stdin_eof` in a tty session.
const VEOF: u8 = 0x04;

/// The session's outgoing messages.
pub type Outgoing = mpsc::Receiver<Result<pb::ExecOutput, Status>>;

/// The command an `ExecStart` asks for, checked.
#[derive(Debug)]
struct Start {
    zone: String,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    tty: Option<pb::TtySize>,
}

fn check_start(start: pb::ExecStart) -> Result<Start, Status> {
    if start.zone.is_empty() {
        return Err(Status::invalid_argument("start.zone: empty"));
    }
    if start.argv.is_empty() || start.argv[0].is_empty() {
        return Err(Status::invalid_argument(
            "start.argv: no command given (the first argument is the program)",
        ));
    }
    let size: usize = start.argv.iter().map(String::len).sum::<usize>()
        + start
            .env
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>();
    if size > MAX_COMMAND_BYTES {
        return Err(Status::invalid_argument(format!(
            "start: the command and environment are {size} bytes, more than {MAX_COMMAND_BYTES}"
        )));
    }
    if start.argv.iter().any(|a| a.contains('\0')) {
        return Err(Status::invalid_argument("start.argv: holds a NUL byte"));
    }
    let mut env: Vec<(String, String)> = start.env.into_iter().collect();
    env.sort();
    for (k, v) in &env {
        check_env(k, v).map_err(|e| Status::invalid_argument(format!("start.{e}")))?;
    }
    let tty = start
        .tty
        .then(|| start.tty_size.unwrap_or(pb::TtySize { rows: 24, cols: 80 }));
    Ok(Start {
        zone: start.zone,
        argv: start.argv,
        env,
        tty,
    })
}

/// Resolves the zone and checks that it runs, for a status rather than a failed
/// command: `NOT_FOUND`, `FAILED_PRECONDITION` (ambiguous, or not running).
pub(super) fn running_zone(host: &ZoneHost, name: &str) -> Result<String, Status> {
    let status = host.get(name).map_err(super::zone_status)?;
    if status.state != ZoneState::Running {
        return Err(Status::failed_precondition(format!(
            "zone {} is {}, not running: nothing to exec in",
            status.uuid, status.state
        )));
    }
    Ok(status.uuid)
}

/// How the agent's CLI is run for `exec`.
#[derive(Debug, Clone)]
pub struct ExecRunner {
    /// The `zonefleet-agent` binary.
    pub exe: PathBuf,
    /// Its global flags for this host (data dir, cgroup parent, bridge).
    pub global_args: Vec<String>,
}

impl ExecRunner {
    /// The runner of `host`'s zones.
    pub fn of(host: &ZoneHost) -> ExecRunner {
        ExecRunner {
            exe: host.agent_exe.clone(),
            global_args: vec![
                "--data-dir".into(),
                host.data_dir.display().to_string(),
                "--cgroup-parent".into(),
                host.cgroup_parent.clone(),
                "--bridge".into(),
                host.bridge.name.clone(),
            ],
        }
    }

    fn command(&self, start: &Start, uuid: &str) -> Command {
        let mut command = Command::new(&self.exe);
        command.args(&self.global_args).args(["zone", "exec"]);
        if start.tty.is_some() {
            command.arg("--tty");
        }
        for (k, v) in &start.env {
            command.arg("--env").arg(format!("{k}={v}"));
        }
        command.arg(uuid).arg("--").args(&start.argv);
        // Only what the CLI needs: the command's environment is built in the zone.
        command
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("ZONEFLEET_LOG", "error")
            // Its own process group, killed as one when the caller goes away.
            .process_group(0)
            .kill_on_drop(true);
        command
    }
}

/// Starts the session of `inbound` (its first message must be `start`) and returns
/// the stream of its output; the command runs in a task of its own.
pub async fn start(
    host: Arc<ZoneHost>,
    runner: ExecRunner,
    mut inbound: Streaming<pb::ExecInput>,
) -> Result<Outgoing, Status> {
    let first = inbound
        .message()
        .await?
        .ok_or_else(|| Status::invalid_argument("the stream ended before ExecStart"))?;
    let Some(Input::Start(start)) = first.input else {
        return Err(Status::invalid_argument(
            "the first message must be ExecStart",
        ));
    };
    let start = check_start(start)?;
    let uuid = {
        let host = host.clone();
        let zone = start.zone.clone();
        tokio::task::spawn_blocking(move || running_zone(&host, &zone))
            .await
            .map_err(|e| Status::internal(e.to_string()))??
    };
    let mut command = runner.command(&start, &uuid);
    let (tx, rx) = mpsc::channel(16);
    match &start.tty {
        None => {
            command
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = spawn(&mut command)?;
            let stdin = child.stdin.take().expect("piped");
            let stdout = child.stdout.take().expect("piped");
            let stderr = child.stderr.take().expect("piped");
            tracing::info!(zone = %uuid, argv = ?start.argv, "exec");
            tokio::spawn(run_piped(child, stdin, stdout, stderr, inbound, tx));
        }
        Some(size) => {
            let pty = nix::pty::openpty(Some(&winsize(size)), None)
                .map_err(|e| Status::internal(format!("openpty: {e}")))?;
            let slave = std::fs::File::from(pty.slave);
            let io = |f: &std::fs::File| {
                f.try_clone()
                    .map(Stdio::from)
                    .map_err(|e| Status::internal(format!("pty: {e}")))
            };
            command
                .stdin(io(&slave)?)
                .stdout(io(&slave)?)
                .stderr(io(&slave)?);
            let child = spawn(&mut command)?;
            // Only the command holds the slave now: its last close ends the master's
            // reads.
            drop(slave);
            tracing::info!(zone = %uuid, argv = ?start.argv, "exec with a tty");
            tokio::spawn(run_tty(child, pty.master, inbound, tx));
        }
    }
    Ok(rx)
}

fn spawn(command: &mut Command) -> Result<Child, Status> {
    command
        .spawn()
        .map_err(|e| Status::internal(format!("starting zonefleet-agent zone exec: {e}")))
}

fn winsize(size: &pb::TtySize) -> nix::pty::Winsize {
    let clamp = |n: u32| u16::try_from(n).unwrap_or(u16::MAX).max(1);
    nix::pty::Winsize {
        ws_row: clamp(size.rows),
        ws_col: clamp(size.cols),
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// The exit status as the wire gives it: the code, or 128 + the signal.
fn exit_status(status: std::process::ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(126)
}

/// Copies `from` into `ExecOutput`s made by `wrap` until end of file (or an error: a
/// pty's master reads EIO once the command's side is closed).
async fn pump(
    mut from: impl AsyncRead + Unpin,
    tx: mpsc::Sender<Result<pb::ExecOutput, Status>>,
    wrap: fn(Vec<u8>) -> Output,
) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let message = pb::ExecOutput {
                    output: Some(wrap(buf[..n].to_vec())),
                };
                if tx.send(Ok(message)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// What the client sent after the start, as the command's side needs it.
enum Inbound {
    Stdin(Vec<u8>),
    Eof,
    Resize(pb::TtySize),
    /// The client went away (or broke the stream).
    Gone,
}

async fn next_inbound(inbound: &mut Streaming<pb::ExecInput>) -> Inbound {
    match inbound.message().await {
        Ok(Some(pb::ExecInput {
            input: Some(Input::Stdin(bytes)),
        })) => Inbound::Stdin(bytes),
        Ok(Some(pb::ExecInput {
            input: Some(Input::StdinEof(_)),
        })) => Inbound::Eof,
        Ok(Some(pb::ExecInput {
            input: Some(Input::Resize(size)),
        })) => Inbound::Resize(size),
        // A second start or an empty message: ignored.
        Ok(Some(_)) => Inbound::Stdin(Vec::new()),
        Ok(None) => Inbound::Eof,
        Err(_) => Inbound::Gone,
    }
}

/// Kills the command's process group (the CLI, and the command unless it left it).
fn kill_group(child: &Child) {
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

async fn run_piped(
    mut child: Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::process::ChildStdout,
    stderr: tokio::process::ChildStderr,
    mut inbound: Streaming<pb::ExecInput>,
    tx: mpsc::Sender<Result<pb::ExecOutput, Status>>,
) {
    let out = tokio::spawn(pump(stdout, tx.clone(), Output::Stdout));
    let err = tokio::spawn(pump(stderr, tx.clone(), Output::Stderr));
    let mut stdin = Some(stdin);
    let mut inbound_done = false;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            message = next_inbound(&mut inbound), if !inbound_done => match message {
                Inbound::Stdin(bytes) => {
                    if let Some(pipe) = stdin.as_mut() {
                        // A command that stopped reading: its input is dropped.
                        if pipe.write_all(&bytes).await.is_err() {
                            stdin = None;
                        }
                    }
                }
                Inbound::Eof => {
                    stdin = None;
                    // Nothing more comes in; the output goes on (a client that goes
                    // away now is seen by `tx.closed()`).
                    inbound_done = true;
                }
                Inbound::Resize(_) => {}
                Inbound::Gone => {
                    kill_group(&child);
                    inbound_done = true;
                }
            },
            () = tx.closed() => {
                kill_group(&child);
                inbound_done = true;
            }
        }
    };
    // The rest of the output (to end of file: whatever the command started may still
    // write), unless the client goes away first.
    tokio::select! {
        _ = async { let _ = out.await; let _ = err.await; } => {}
        () = tx.closed() => {}
    }
    finish(status, &tx).await;
}

/// The pty master, non-blocking, for reads and writes from the runtime.
struct Master(tokio::io::unix::AsyncFd<std::fs::File>);

impl Master {
    fn new(fd: OwnedFd) -> std::io::Result<Master> {
        let file = std::fs::File::from(fd);
        let flags = nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GETFL)?;
        let flags = nix::fcntl::OFlag::from_bits_retain(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_SETFL(flags))?;
        // SAFETY: a `File` owns its fd: it stays open, the same file description, and
        // `as_raw_fd` returns it, for as long as the `AsyncFd` holds the `File`.
        let fd =
            unsafe { tokio::io::unix::AsyncFd::register(file) }.map_err(|e| e.into_parts().1)?;
        Ok(Master(fd))
    }

    async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::io::Read;
        loop {
            let mut ready = self.0.readable().await?;
            if let Ok(result) = ready.try_io(|f| f.get_ref().read(buf)) {
                return result;
            }
        }
    }

    async fn write_all(&self, mut bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        while !bytes.is_empty() {
            let mut ready = self.0.writable().await?;
            if let Ok(result) = ready.try_io(|f| f.get_ref().write(bytes)) {
                bytes = &bytes[result?..];
            }
        }
        Ok(())
    }

    fn resize(&self, size: &pb::TtySize) {
        let ws = winsize(size);
        // SAFETY: TIOCSWINSZ reads one `winsize` from the pointer, which lives across
        // the call; the fd is the pty master this value owns.
        unsafe { libc::ioctl(self.0.get_ref().as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }
}

async fn run_tty(
    mut child: Child,
    master: OwnedFd,
    mut inbound: Streaming<pb::ExecInput>,
    tx: mpsc::Sender<Result<pb::ExecOutput, Status>>,
) {
    let master = match Master::new(master) {
        Ok(m) => Arc::new(m),
        Err(e) => {
            kill_group(&child);
            let _ = tx.send(Err(Status::internal(format!("pty: {e}")))).await;
            return;
        }
    };
    let out = {
        let master = master.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; CHUNK];
            // EIO once the command's side is closed.
            while let Ok(n @ 1..) = master.read(&mut buf).await {
                let message = pb::ExecOutput {
                    output: Some(Output::Stdout(buf[..n].to_vec())),
                };
                if tx.send(Ok(message)).await.is_err() {
                    return;
                }
            }
        })
    };
    let mut inbound_done = false;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            message = next_inbound(&mut inbound), if !inbound_done => match message {
                Inbound::Stdin(bytes) => {
                    let _ = master.write_all(&bytes).await;
                }
                Inbound::Eof => {
                    let _ = master.write_all(&[VEOF]).await;
                    inbound_done = true;
                }
                Inbound::Resize(size) => master.resize(&size),
                Inbound::Gone => {
                    kill_group(&child);
                    inbound_done = true;
                }
            },
            () = tx.closed() => {
                kill_group(&child);
                inbound_done = true;
            }
        }
    };
    // The command's side closed when it exited, unless something it started still
    // holds the terminal: that is given two seconds, then the master is closed, which
    // hangs it up.
    let mut out = out;
    if tokio::time::timeout(std::time::Duration::from_secs(2), &mut out)
        .await
        .is_err()
    {
        tracing::debug!("exec: the terminal stayed open after the command exited");
        out.abort();
    }
    drop(master);
    finish(status, &tx).await;
}

async fn finish(
    status: std::io::Result<std::process::ExitStatus>,
    tx: &mpsc::Sender<Result<pb::ExecOutput, Status>>,
) {
    let message = match status {
        Ok(status) => Ok(pb::ExecOutput {
            output: Some(Output::ExitStatus(exit_status(status))),
        }),
        Err(e) => Err(Status::internal(format!("waiting for the command: {e}"))),
    };
    let _ = tx.send(message).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(argv: &[&str]) -> pb::ExecStart {
        pb::ExecStart {
            zone: "web".into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn bad_starts_are_named() {
        let code = |s: pb::ExecStart| check_start(s).unwrap_err();
        assert!(code(start(&[])).message().contains("no command"));
        assert!(code(start(&[""])).message().contains("no command"));
        let mut s = start(&["ls"]);
        s.zone.clear();
        assert!(code(s).message().contains("start.zone"));
        let mut s = start(&["ls"]);
        s.env.insert("1BAD".into(), "x".into());
        let e = code(s);
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(
            e.message().contains("start.env: \"1BAD\""),
            "{}",
            e.message()
        );
        let big = "x".repeat(MAX_COMMAND_BYTES + 1);
        assert!(code(start(&["echo", &big])).message().contains("bytes"));
        assert!(code(start(&["a\0b"])).message().contains("NUL"));
        let mut s = start(&["sh"]);
        s.tty = true;
        let ok = check_start(s).unwrap();
        assert_eq!(ok.tty.map(|t| (t.rows, t.cols)), Some((24, 80)));
        assert_eq!(
            winsize(&pb::TtySize {
                rows: 0,
                cols: 70_000
            })
            .ws_col,
            u16::MAX
        );
    }
}
