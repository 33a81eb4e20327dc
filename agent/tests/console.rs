//! The zone console's parts, driven as zsched will drive them: a real pty pair with
//! a shell on its slave, the relay polled in a loop of its own, clients on its
//! socket (raw streams and the `zone console` client). The relay tests need no
//! root; `zone console` on zones that serve none does.

mod support;

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFlags, PollTimeout};
use zonefleet_agent::zsched::console::relay::OUTPUT_CAP;
use zonefleet_agent::zsched::console::{
    attach, AttachOptions, ConsoleError, ConsoleLog, ConsoleRelay, Detach, Pty, RelayState,
};

/// Everything a test waits for is bounded by this.
const LIMIT: Duration = Duration::from_secs(30);

/// One relay step, as zsched's loop takes it.
fn step(relay: &mut ConsoleRelay, most: Duration) -> RelayState {
    let mut fds = relay.poll_fds();
    let wait = relay.timeout().map_or(most, |t| t.min(most));
    let _ = poll(&mut fds, PollTimeout::try_from(wait).unwrap());
    let revents: Vec<PollFlags> = fds
        .iter()
        .map(|f| f.revents().unwrap_or(PollFlags::empty()))
        .collect();
    drop(fds);
    relay.on_ready(&revents)
}

/// A console with `/bin/sh -c script` on its slave (its session's controlling
/// terminal, as init's will be), relayed into `<dir>/console.log` and served at
/// `<dir>/console.sock` by a thread that ends — dropping the relay, as zsched ends
/// — when the console closes or `stop` is set.
struct Zone {
    dir: tempfile::TempDir,
    child: Child,
    stop: Arc<AtomicBool>,
    relay: Option<JoinHandle<RelayState>>,
}

impl Zone {
    fn start(script: &str) -> Zone {
        let dir = tempfile::tempdir().unwrap();
        let pty = Pty::open().unwrap();
        let child = {
            let slave = pty.open_slave().unwrap();
            let mut cmd = Command::new("/bin/sh");
            cmd.args(["-c", script])
                .stdin(Stdio::from(slave.try_clone().unwrap()))
                .stdout(Stdio::from(slave.try_clone().unwrap()))
                .stderr(Stdio::from(slave));
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            cmd.spawn().unwrap()
            // The Command, and with it our slave descriptors, end here.
        };
        let log = ConsoleLog::open(&dir.path().join("console.log"), 16 << 20).unwrap();
        let mut relay = ConsoleRelay::new(
            pty.into_master(),
            Some(log),
            &dir.path().join("console.sock"),
        )
        .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let relay = std::thread::spawn(move || loop {
            let state = step(&mut relay, Duration::from_millis(20));
            if state == RelayState::Closed || stopping.load(Ordering::Relaxed) {
                return state;
            }
        });
        Zone {
            dir,
            child,
            stop,
            relay: Some(relay),
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("console.sock")
    }

    fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.dir.path().join("console.log")).unwrap())
            .into_owned()
    }

    /// Waits until the log holds `what`.
    fn log_has(&self, what: &str) {
        let deadline = Instant::now() + LIMIT;
        while !self.log().contains(what) {
            assert!(
                Instant::now() < deadline,
                "{what:?} never reached the log: {:?}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the relay's thread: the console closed (or it was stopped).
    fn relay_end(&mut self) -> RelayState {
        let handle = self.relay.take().unwrap();
        let deadline = Instant::now() + LIMIT;
        while !handle.is_finished() {
            assert!(Instant::now() < deadline, "the console never closed");
            std::thread::sleep(Duration::from_millis(10));
        }
        handle.join().unwrap()
    }
}

impl Drop for Zone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stop.store(true, Ordering::Relaxed);
        if let Some(relay) = self.relay.take() {
            let _ = relay.join();
        }
    }
}

/// A raw client: connected, its greeting line read.
fn connect(socket: &Path) -> (UnixStream, String) {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while stream.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    (stream, String::from_utf8_lossy(&line).into_owned())
}

/// Reads from `stream` until what was read holds `what`.
fn read_until(stream: &mut UnixStream, what: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + LIMIT;
    while !String::from_utf8_lossy(&got).contains(what) {
        assert!(
            Instant::now() < deadline,
            "{what:?} never came: {:?}",
            String::from_utf8_lossy(&got)
        );
        match stream.read(&mut buf) {
            Ok(0) => panic!(
                "closed before {what:?}: {:?}",
                String::from_utf8_lossy(&got)
            ),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("reading for {what:?}: {e}"),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// A pipe whose read end is an attach's input, `data` written and, if `close`,
/// the write end closed (the input's end).
fn input(data: &[u8], close: bool) -> (OwnedFd, Option<OwnedFd>) {
    let (r, w) = nix::unistd::pipe().unwrap();
    nix::unistd::write(&w, data).unwrap();
    (r, (!close).then_some(w))
}

#[test]
fn output_reaches_the_log_and_the_client_and_input_reaches_the_zone() {
    let mut zone = Zone::start("echo ready; read line; echo \"got-$line\"; sleep 0.2; echo bye");
    zone.log_has("ready");
    let mode = std::fs::metadata(zone.socket())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "only the host's root attaches");

    let (mut client, greeting) = connect(&zone.socket());
    assert_eq!(greeting, "ok");
    client.write_all(b"abc\n").unwrap();
    read_until(&mut client, "got-abc");
    read_until(&mut client, "bye");
    zone.log_has("got-abc");
    // The shell exits: every slave closes, the relay says so and (as zsched) ends.
    assert_eq!(zone.relay_end(), RelayState::Closed);
    assert!(!zone.socket().exists(), "the socket goes with the relay");
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
    let log = zone.log();
    assert!(log.contains("ready") && log.contains("bye"), "{log:?}");
}

#[test]
fn a_second_client_is_refused_and_a_detached_one_frees_the_place() {
    let zone = Zone::start("while read l; do echo \"got-$l\"; done");
    let (mut first, greeting) = connect(&zone.socket());
    assert_eq!(greeting, "ok");
    let (mut second, refusal) = connect(&zone.socket());
    assert_eq!(
        refusal,
        format!(
            "error: console already attached (by pid {})",
            std::process::id()
        )
    );
    let mut rest = Vec::new();
    second.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "a refused client is closed: {rest:?}");
    // The first is still served.
    first.write_all(b"one\n").unwrap();
    read_until(&mut first, "got-one");
    drop(first);

    // The place is free again: the client of `zone console` takes it, and its
    // detach key ends it — what came before the key is sent, what came after is not.
    let (keys, _open) = input(b"two\n\x1dthree\n", false);
    let mut out = Vec::new();
    let deadline = Instant::now() + LIMIT;
    let detach = loop {
        match attach(
            &zone.socket(),
            keys.as_fd(),
            &mut out,
            &AttachOptions {
                escape: Some(0x1d),
                stop: None,
            },
        ) {
            Ok(d) => break d,
            // The relay may not have seen the first leave yet.
            Err(ConsoleError::Refused(_)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("attach: {e}"),
        }
    };
    assert_eq!(detach, Detach::Escape);
    zone.log_has("got-two");
    let (mut third, greeting) = connect(&zone.socket());
    assert_eq!(greeting, "ok", "a detached client frees the place");
    third.write_all(b"four\n").unwrap();
    read_until(&mut third, "got-four");
    assert!(!zone.log().contains("got-three"), "{:?}", zone.log());
}

#[test]
fn at_the_end_of_piped_input_the_output_goes_on_until_the_console_closes() {
    let zone = Zone::start("read l; echo \"got-$l\"; sleep 0.3; echo bye");
    let (keys, _) = input(b"x\n", true);
    let mut out = Vec::new();
    let detach = attach(
        &zone.socket(),
        keys.as_fd(),
        &mut out,
        &AttachOptions {
            escape: Some(0x1d),
            stop: None,
        },
    )
    .unwrap();
    assert_eq!(detach, Detach::Closed);
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("got-x") && out.contains("bye"), "{out:?}");
}

#[test]
fn a_stop_descriptor_ends_an_attach() {
    let zone = Zone::start("sleep 30");
    let (keys, _open) = input(b"", false);
    let (stop, stop_w) = nix::unistd::pipe().unwrap();
    let socket = zone.socket();
    let attached = std::thread::spawn(move || {
        let mut out = Vec::new();
        attach(
            &socket,
            keys.as_fd(),
            &mut out,
            &AttachOptions {
                escape: None,
                stop: Some(stop.as_fd()),
            },
        )
        .unwrap()
    });
    std::thread::sleep(Duration::from_millis(200));
    nix::unistd::write(&stop_w, b"s").unwrap();
    let started = Instant::now();
    while !attached.is_finished() {
        assert!(started.elapsed() < LIMIT, "the stop did not end the attach");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(attached.join().unwrap(), Detach::Stopped);
}

#[test]
fn a_client_that_reads_nothing_does_not_hold_up_the_zone_or_its_log() {
    // About 1 MiB, far past what the client's queue and socket buffers hold.
    let zone = Zone::start(
        "i=0; while [ $i -lt 30000 ]; do echo \"line-$i-padding-padding-padding\"; i=$((i+1)); done; \
         echo done-writing; read x; echo \"after-$x\"; sleep 0.2",
    );
    let (mut client, greeting) = connect(&zone.socket());
    assert_eq!(greeting, "ok");
    // The client reads nothing; the zone writes on and the log gets every line.
    zone.log_has("done-writing");
    let log = zone.log();
    assert!(
        log.contains("line-0-") && log.contains("line-29999-"),
        "log lost lines"
    );
    assert!(log.len() > 1_000_000, "{} bytes logged", log.len());

    // Now it reads what was kept for it, then asks for more.
    client
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut kept = Vec::new();
    let mut buf = [0u8; 65536];
    while let Ok(n) = client.read(&mut buf) {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buf[..n]);
    }
    assert!(
        kept.len() < log.len() && kept.len() <= OUTPUT_CAP + (1 << 20),
        "{} bytes kept for the client, {} logged",
        kept.len(),
        log.len()
    );
    client.set_read_timeout(Some(LIMIT)).unwrap();
    client.write_all(b"go\n").unwrap();
    let after = read_until(&mut client, "after-go");
    assert!(
        after.contains("bytes of console output dropped: this client read too slowly"),
        "the client is told what it missed: {after:?}"
    );
}

#[test]
fn a_console_every_process_closed_is_closed_and_opens_again() {
    let dir = tempfile::tempdir().unwrap();
    let pty = Pty::open().unwrap();
    let slave = pty.open_slave().unwrap();
    let slave_path = pty.slave_path().to_path_buf();
    let log = ConsoleLog::open(&dir.path().join("console.log"), 1 << 20).unwrap();
    let mut relay = ConsoleRelay::new(
        pty.into_master(),
        Some(log),
        &dir.path().join("console.sock"),
    )
    .unwrap();
    let until = |relay: &mut ConsoleRelay, want: RelayState, log: &str| {
        let deadline = Instant::now() + LIMIT;
        loop {
            let state = step(relay, Duration::from_millis(20));
            let logged = std::fs::read_to_string(dir.path().join("console.log")).unwrap();
            if state == want && logged == log {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "never {want:?} with {log:?}: {state:?}, {logged:?}"
            );
        }
    };
    nix::unistd::write(&slave, b"first\n").unwrap();
    until(&mut relay, RelayState::Open, "first\r\n");
    drop(slave);
    until(&mut relay, RelayState::Closed, "first\r\n");
    // Closed, the master is not polled (it would always be ready): the relay
    // waits on its timeout instead of spinning.
    assert!(relay.poll_fds().len() == 1, "only the listener is polled");
    assert_eq!(
        relay.timeout(),
        Some(zonefleet_agent::zsched::console::relay::RECHECK)
    );
    let again = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&slave_path)
        .unwrap();
    nix::unistd::write(&again, b"second\n").unwrap();
    until(&mut relay, RelayState::Open, "first\r\nsecond\r\n");
    let socket = relay.socket_path().to_path_buf();
    assert!(socket.exists());
    drop(relay);
    assert!(!socket.exists());
    drop(again);
}

#[test]
fn zone_console_names_a_zone_that_is_not_running_or_serves_no_console() {
    let Some(t) = support::host::TestHost::new("zone_console_names_a_zone_that_is_not_running")
    else {
        return;
    };
    let z = t.create(r#"{"alias": "quiet"}"#);
    let out = t
        .agent()
        .args(["zone", "console", "quiet"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "zone {} (quiet) is not running: cannot attach to its console",
            z.uuid
        )),
        "{err}"
    );
    let bad = t
        .agent()
        .args(["zone", "console", "quiet", "--escape", "x"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--escape: \"x\" is not a detach key"));
    let nope = t
        .agent()
        .args(["zone", "console", "nope"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&nope.stderr).contains("no zone matches \"nope\""));
}
