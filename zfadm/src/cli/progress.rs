//! A progress line on stderr (`import busybox  12.0/40.0 MiB  30%  85 MiB/s`, or for a
//! count of things, `drain  [#######.............]  3/8 zones  37%  41s`), drawn only
//! when stderr is a terminal: scripts and logs get nothing.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A progress line for `total` bytes (cheap to clone; clones count together).
#[derive(Debug, Clone)]
pub struct Progress {
    done: Arc<AtomicU64>,
    total: u64,
    /// What is counted: bytes (`None`) or things of this plural name.
    items: Option<&'static str>,
}

const MIB: f64 = 1024.0 * 1024.0;

impl Progress {
    /// A counter of `total` bytes.
    pub fn new(total: u64) -> Progress {
        Progress {
            done: Arc::default(),
            total,
            items: None,
        }
    }

    /// A counter of `total` things called `noun` (plural: `zones`).
    pub fn items(total: u64, noun: &'static str) -> Progress {
        Progress {
            done: Arc::default(),
            total,
            items: Some(noun),
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
                let _ = match me.items {
                    None => write!(
                        err,
                        "\r{label}  {:.1}/{:.1} MiB  {percent:3.0}%  {:.0} MiB/s\x1b[K",
                        done as f64 / MIB,
                        me.total as f64 / MIB,
                        done as f64 / MIB / secs
                    ),
                    Some(noun) => write!(
                        err,
                        "\r{label}  [{}]  {done}/{} {noun}  {percent:3.0}%  {secs:.0}s\x1b[K",
                        bar(done, me.total, 20),
                        me.total,
                    ),
                };
                let _ = err.flush();
            }
        });
        Some(Drawing { task })
    }
}

/// A bar `width` characters wide, `#` for what is done of `total`.
fn bar(done: u64, total: u64, width: usize) -> String {
    let filled = if total == 0 {
        width
    } else {
        (done.min(total) as usize * width) / total as usize
    };
    format!("{}{}", "#".repeat(filled), ".".repeat(width - filled))
}

/// Clears the progress line (when stderr is a terminal), so that a line printed next
/// does not run into it; the line is drawn again at its next tick.
pub fn clear_line() {
    if std::io::stderr().is_terminal() {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K");
        let _ = err.flush();
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

#[cfg(test)]
mod tests {
    use super::bar;

    #[test]
    fn bars() {
        assert_eq!(bar(0, 4, 8), "........");
        assert_eq!(bar(1, 4, 8), "##......");
        assert_eq!(bar(4, 4, 8), "########");
        // More done than counted, or nothing to count: full, never wider.
        assert_eq!(bar(9, 4, 8), "########");
        assert_eq!(bar(0, 0, 8), "########");
    }
}
