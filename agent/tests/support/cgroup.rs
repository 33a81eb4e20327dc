//! For the privileged cgroup tests: sweeping what a crashed run left, child
//! processes that wait to be moved into a zone, polling, and a guard that cleans
//! up even when a test fails.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use zonefleet_agent::cgroup::CgroupManager;

/// How long any single wait of a test may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// Removes the test parents under each of `mounts` left by runs whose process is
/// gone: kills their processes, removes their zones and the parent.
pub fn sweep_stale(mounts: &[PathBuf], manager: &dyn Fn(&str) -> Box<dyn CgroupManager>) {
    let mut names: Vec<String> = Vec::new();
    for m in mounts {
        for name in super::stale_entries(m, "zonefleet-test-", '-') {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    for name in names {
        let mgr = manager(&name);
        let swept = mgr.sweep(&|_| false, WAIT);
        let parent = mgr.delete_parent();
        eprintln!("swept stale {name}: {swept:?} {parent:?}");
    }
}

/// A child `sh -c 'read _; <script>'`: it waits on stdin so the test can move it
/// into a zone before it does anything, then [`go`] lets it run.
pub fn spawn_waiting(script: &str) -> Child {
    Command::new("sh")
        .arg("-c")
        .arg(format!("read _; {script}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sh")
}

/// Lets a [`spawn_waiting`] child go on.
pub fn go(child: &mut Child) {
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"\n").expect("write to child");
}

/// Waits at most [`WAIT`] for the child; kills it if it overstays.
pub fn wait(child: &mut Child) -> (ExitStatus, String, String) {
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("child {} still running after {WAIT:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    (status, out, err)
}

/// Polls `cond` for at most [`WAIT`].
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "not true after {WAIT:?}: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Cleans up a test's zones and processes when dropped, even after a panic:
/// kills its children, kills what is left in its zones, removes the zones and
/// the test parent.
pub struct Guard {
    /// The manager under the test's own parent.
    pub mgr: Box<dyn CgroupManager>,
    /// Children to kill and reap.
    pub children: Vec<Child>,
}

impl Guard {
    /// Guards everything under `mgr`'s parent.
    pub fn new(mgr: Box<dyn CgroupManager>) -> Self {
        Guard {
            mgr,
            children: Vec::new(),
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Err(e) = self.mgr.sweep(&|_| false, WAIT) {
            eprintln!("cleanup sweep: {e}");
        }
        if let Err(e) = self.mgr.delete_parent() {
            eprintln!("cleanup parent: {e}");
        }
    }
}
