//! A progress line on stderr (`import busybox  12.0/40.0 MiB  30%  85 MiB/s`), drawn
//! only when stderr is a terminal: scripts and logs get nothing.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A progress line for `total` bytes (cheap to clone; clones count together).
#[derive(Debug, Clone)]
pub struct Progress {
    done: Arc<AtomicU64>,
    total: u64,
}

const MIB: f64 = 1024.0 * 1024.0;

impl Progress {
    /// A counter of `total` bytes.
    pub fn new(total: u64) -> Progress {
        Progress {
            done: Arc::default(),
            total,
        }
    }

    /// Counts `n` more bytes.
    pub fn add(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    /// Starts over (a retry on another controller).
    pub fn reset(&self) {
        self.done.store(0, Ordering::Relaxed);
    }

    /// Draws the line every 200 ms while `label`'s transfer runs, when stderr is a
    /// terminal; the returned guard clears the line when dropped.
    pub fn draw(&self, label: &str) -> Option<Drawing> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let me = self.clone();
        let label = label.to_owned();
        let started = Instant::now();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tick.tick().await;
                let done = me.done.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64().max(0.001);
                let percent = (done as f64 * 100.0 / me.total.max(1) as f64).min(100.0);
                let mut err = std::io::stderr().lock();
                let _ = write!(
                    err,
                    "\r{label}  {:.1}/{:.1} MiB  {percent:3.0}%  {:.0} MiB/s\x1b[K",
                    done as f64 / MIB,
                    me.total as f64 / MIB,
                    done as f64 / MIB / secs
                );
                let _ = err.flush();
            }
        });
        Some(Drawing { task })
    }
}

/// Clears the progress line when dropped.
#[derive(Debug)]
pub struct Drawing {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Drawing {
    fn drop(&mut self) {
        self.task.abort();
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K");
        let _ = err.flush();
    }
}
