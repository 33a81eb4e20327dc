//! [`SubIds`]: root's claim on an id range in `/etc/subuid` and `/etc/subgid`
//! while the benchmark runs. With shadow's `newuidmap` installed (Debian's
//! `uidmap`), LXC maps a container's ids through it, even for root, and
//! newuidmap maps only ranges those files give the caller.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The files a range is claimed in.
const FILES: [&str; 2] = ["/etc/subuid", "/etc/subgid"];

/// Lines the benchmark added to the subordinate id files, removed when dropped.
pub(super) struct SubIds {
    line: String,
    /// The files the line was added to, and whether each was made for it.
    added: Vec<(PathBuf, bool)>,
}

impl SubIds {
    /// Claims `count` ids from `base` for root, if `newuidmap` is installed
    /// (without it LXC writes the maps itself and needs no claim).
    pub fn reserve(base: u32, count: u32) -> anyhow::Result<Option<SubIds>> {
        if !super::on_path("newuidmap") && !super::on_path("newgidmap") {
            return Ok(None);
        }
        let mut guard = SubIds {
            line: format!("root:{base}:{count}"),
            added: Vec::new(),
        };
        for file in FILES.map(Path::new) {
            let (text, made) = match std::fs::read_to_string(file) {
                Ok(text) => (text, false),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => (String::new(), true),
                Err(e) => return Err(e).with_context(|| format!("read {}", file.display())),
            };
            let mut text = text;
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&guard.line);
            text.push('\n');
            // In place: the file keeps its owner and mode.
            std::fs::write(file, text.as_bytes())
                .with_context(|| format!("write {}", file.display()))?;
            guard.added.push((file.to_path_buf(), made));
        }
        Ok(Some(guard))
    }
}

impl Drop for SubIds {
    fn drop(&mut self) {
        for (file, made) in &self.added {
            let Ok(text) = std::fs::read_to_string(file) else {
                continue;
            };
            let kept = without_line(&text, &self.line);
            let result = if *made && kept.trim().is_empty() {
                std::fs::remove_file(file).map_err(anyhow::Error::from)
            } else {
                std::fs::write(file, kept.as_bytes()).map_err(anyhow::Error::from)
            };
            if let Err(e) = result {
                eprintln!(
                    "bench: remove {:?} from {}: {e:#}",
                    self.line,
                    file.display()
                );
            }
        }
    }
}

/// `text` without the first line that is exactly `line`.
fn without_line(text: &str, line: &str) -> String {
    let mut removed = false;
    let mut out = String::with_capacity(text.len());
    for l in text.lines() {
        if !removed && l == line {
            removed = true;
            continue;
        }
        out.push_str(l);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_exactly_the_added_line() {
        let line = "root:1879048192:65536";
        assert_eq!(without_line(&format!("{line}\n"), line), "");
        assert_eq!(
            without_line(
                &format!("alice:100000:65536\n{line}\nbob:165536:65536\n"),
                line
            ),
            "alice:100000:65536\nbob:165536:65536\n"
        );
        // Someone else's identical claim made before stays.
        assert_eq!(
            without_line(&format!("{line}\n{line}\n"), line),
            format!("{line}\n")
        );
        // A longer range starting at the same id is not the benchmark's.
        assert_eq!(
            without_line("root:1879048192:655360\n", line),
            "root:1879048192:655360\n"
        );
    }
}
