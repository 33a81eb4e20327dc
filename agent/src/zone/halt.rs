//! `zone halt` and `zone reboot`: the zone's init gets its own shutdown request
//! (its halt signal: [`super::halt_signal`]), a grace period, then every process
//! of the zone's cgroup is killed. zsched records the exit and removes the cgroup;
//! if zsched itself is gone, halt does that cleanup.

use std::time::{Duration, Instant};

use super::halt_signal::{self, HaltSignal};
use super::record::ZoneRecord;
use super::status::ZoneStatus;
use super::{lock, Result, ZoneError, ZoneHost};
use crate::clock::now_unix_ms;
use crate::proc_stat::process_start_ticks;
use crate::zsched::runtime::{ExitRecord, Runtime};

const POLL: Duration = Duration::from_millis(10);
const RESEND: Duration = Duration::from_millis(250);

impl ZoneHost {
    /// Halts the zone `name`. Halting a zone that is not running is a no-op
    /// that still clears a stale cgroup.
    pub fn halt(&self, name: &str) -> Result<ZoneStatus> {
        let uuid = self.resolve(name)?;
        let paths = self.paths(&uuid);
        let _lock = lock::exclusive(&paths.lock())?;
        let mut record = ZoneRecord::load(&paths)?;
        self.stop_locked(&uuid, &paths.dir)?;
        record.desired_running = false;
        record.store(&paths)?;
        ZoneStatus::observe(record, &paths)
    }

    /// Halts then boots the zone `name`.
    pub fn reboot(&self, name: &str) -> Result<ZoneStatus> {
        self.halt(name)?;
        self.boot(name)
    }

    /// Stops the zone's processes and removes its network (caller holds the
    /// zone lock).
    pub(crate) fn stop_locked(&self, uuid: &str, dir: &std::path::Path) -> Result<()> {
        self.stop_processes(uuid, dir)?;
        self.teardown_network(&self.paths(uuid))
    }

    fn stop_processes(&self, uuid: &str, dir: &std::path::Path) -> Result<()> {
        let Some(runtime) = Runtime::load(dir)? else {
            return self.clear_cgroup(uuid);
        };
        if runtime.init_alive() {
            // A record that cannot be read must not keep a zone from stopping.
            let signal = ZoneRecord::load(&self.paths(uuid))
                .map(|record| self.halt_signal(&record))
                .unwrap_or(HaltSignal {
                    signal: zonefleet_proto::spec::Signal::TERM,
                    source: halt_signal::HaltSignalSource::Default,
                });
            let mark = dir.join(super::paths::HALTING_MARK);
            std::fs::write(&mark, b"").map_err(|e| ZoneError::io(&mark, e))?;
            let result = self.terminate(uuid, dir, &runtime, signal);
            let _ = std::fs::remove_file(&mark);
            result?;
        }
        self.finish_exit(uuid, dir)
    }

    fn terminate(
        &self,
        uuid: &str,
        dir: &std::path::Path,
        runtime: &Runtime,
        signal: HaltSignal,
    ) -> Result<()> {
        let number = halt_signal::number(signal.signal);
        tracing::info!(
            zone = uuid, signal = %signal.signal, source = ?signal.source,
            grace_ms = self.halt_grace.as_millis() as u64, "halting zone"
        );
        // init only gets the signal if it installed a handler (PID namespace
        // rule); otherwise the grace period runs out and the kill below does the
        // job. A signal sent before init installed its handler is lost, so it is
        // sent again every RESEND until the grace period ends.
        let deadline = Instant::now() + self.halt_grace;
        let mut next_send = Instant::now();
        while Instant::now() < deadline && still_running(dir)? {
            if Instant::now() >= next_send {
                // nix's Signal has no real-time signals: the raw call.
                // SAFETY: kill(2) takes no pointers; the pid is the zone's init,
                // alive as booted (still_running checked its start time just now).
                unsafe { libc::kill(runtime.init_pid, number) };
                next_send = Instant::now() + RESEND;
            }
            std::thread::sleep(POLL);
        }
        if still_running(dir)? {
            self.cgroups.kill_all(uuid, Duration::from_secs(10))?;
        }
        Ok(())
    }

    /// Waits for zsched to record the exit and remove the cgroup; does both
    /// itself when zsched is gone.
    fn finish_exit(&self, uuid: &str, dir: &std::path::Path) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(mut runtime) = Runtime::load(dir)? {
            let zsched_alive = runtime.exit.is_none()
                && process_start_ticks(runtime.zsched_pid).is_some()
                && !runtime.init_alive();
            if runtime.exit.is_some() && !self.cgroups.exists(uuid)? {
                return Ok(());
            }
            if runtime.exit.is_none() && !zsched_alive && !runtime.init_alive() {
                // zsched died (or the host rebooted) without recording the exit.
                runtime.exit = Some(ExitRecord {
                    status: 128 + libc::SIGKILL,
                    signal: Some(libc::SIGKILL),
                    at_unix_ms: now_unix_ms(),
                    fenced: false,
                });
                runtime.store(dir)?;
                break;
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(POLL);
        }
        self.clear_cgroup(uuid)?;
        if Runtime::load(dir)?.is_some_and(|rt| rt.init_alive()) {
            return Err(ZoneError::Timeout {
                uuid: uuid.to_string(),
                secs: 10,
            });
        }
        Ok(())
    }

    /// Kills whatever is left in the zone's cgroup and removes it.
    pub(crate) fn clear_cgroup(&self, uuid: &str) -> Result<()> {
        if self.cgroups.exists(uuid)? {
            self.cgroups.kill_all(uuid, Duration::from_secs(10))?;
            self.cgroups.delete(uuid)?;
        }
        Ok(())
    }
}

fn still_running(dir: &std::path::Path) -> Result<bool> {
    Ok(Runtime::load(dir)?.is_some_and(|rt| rt.init_alive()))
}
