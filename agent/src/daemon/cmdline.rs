//! The agent's settings on the kernel command line, for a PXE-booted host that has
//! nothing else: `zonefleet.controllers=h:p,h:p zonefleet.token=… zonefleet.ca=sha256:…
//! zonefleet.data=/path` (and `zonefleet.cluster=NAME`, `zonefleet.listen=IP:PORT`,
//! `zonefleet.advertise=IP:PORT`). Every other word of the line
//! belongs to the kernel or init and is ignored; an unknown `zonefleet.` key is an
//! error naming it, so a typo never goes unnoticed. When a key appears twice the last
//! one counts, as for the kernel's own parameters.

use std::path::Path;

use super::config::{ConfigError, Settings, Source};

/// The prefix of the agent's kernel parameters.
pub const PREFIX: &str = "zonefleet.";

/// The keys the agent reads (after [`PREFIX`]).
pub const KEYS: &[&str] = &[
    "controllers",
    "token",
    "ca",
    "data",
    "cluster",
    "listen",
    "advertise",
];

/// The default command line file.
pub const PROC_CMDLINE: &str = "/proc/cmdline";

/// Reads the agent's settings from a command line file (`/proc/cmdline`, or the
/// file given with `--cmdline`).
pub fn read(path: &Path) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.to_owned(),
        error,
    })?;
    parse(&text, &Source::Cmdline(path.to_owned()))
}

/// Parses the agent's settings out of a kernel command line.
pub fn parse(line: &str, source: &Source) -> Result<Settings, ConfigError> {
    let mut settings = Settings::default();
    for word in words(line) {
        let Some(rest) = word.strip_prefix(PREFIX) else {
            continue;
        };
        let (key, value) = rest.split_once('=').unwrap_or((rest, ""));
        let field = format!("{PREFIX}{key}");
        if !KEYS.contains(&key) {
            return Err(source.invalid(
                &field,
                format!(
                    "unknown setting (known: {})",
                    KEYS.iter()
                        .map(|k| format!("{PREFIX}{k}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        if value.is_empty() {
            return Err(source.invalid(&field, "has no value (write KEY=VALUE)".to_owned()));
        }
        match key {
            "controllers" => {
                settings.controllers = Some(
                    value
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect(),
                )
            }
            "token" => settings.token = Some(value.to_owned()),
            "ca" => settings.ca = Some(value.to_owned()),
            "data" => settings.data_dir = Some(value.into()),
            "cluster" => settings.cluster = Some(value.to_owned()),
            "listen" => settings.listen = Some(value.to_owned()),
            "advertise" => settings.advertise = Some(value.to_owned()),
            _ => unreachable!("checked against KEYS"),
        }
    }
    settings.check(source)?;
    Ok(settings)
}

/// The words of a command line: split at whitespace, except inside double quotes
/// (which are removed), as the kernel splits its parameters.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut word));
                    any = false;
                }
            }
            c => {
                word.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> Source {
        Source::Cmdline("/proc/cmdline".into())
    }

    const PIN: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn reads_the_agent_keys_and_ignores_the_rest() {
        let line = format!(
            "BOOT_IMAGE=/vmlinuz root=/dev/nfs ro quiet zonefleet.controllers=10.0.0.1:7000,10.0.0.2:7000 \
             zonefleet.token=abc123 zonefleet.ca={PIN} zonefleet.data=/var/lib/zf console=ttyS0\n"
        );
        let s = parse(&line, &source()).unwrap();
        assert_eq!(
            s.controllers.unwrap(),
            vec!["10.0.0.1:7000".to_owned(), "10.0.0.2:7000".to_owned()]
        );
        assert_eq!(s.token.as_deref(), Some("abc123"));
        assert_eq!(s.ca.as_deref(), Some(PIN));
        assert_eq!(s.data_dir.unwrap(), Path::new("/var/lib/zf"));
        assert!(s.cluster.is_none());
        let s = parse(
            "zonefleet.listen=10.0.0.7:7444 zonefleet.advertise=[fd00::7]:7444",
            &source(),
        )
        .unwrap();
        assert_eq!(s.listen.as_deref(), Some("10.0.0.7:7444"));
        assert_eq!(s.advertise.as_deref(), Some("[fd00::7]:7444"));
    }

    #[test]
    fn quotes_group_words_and_the_last_key_wins() {
        let s = parse(
            "zonefleet.data=\"/srv/zone pool\" zonefleet.token=one zonefleet.token=two",
            &source(),
        )
        .unwrap();
        assert_eq!(s.data_dir.unwrap(), Path::new("/srv/zone pool"));
        assert_eq!(s.token.as_deref(), Some("two"));
        assert_eq!(words("  a  \"b c\"  d "), vec!["a", "b c", "d"]);
    }

    #[test]
    fn bad_values_are_named() {
        let err = parse("zonefleet.ca=md5:abc", &source())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/proc/cmdline") && err.contains("zonefleet.ca") && err.contains("sha256"),
            "{err}"
        );
        let err = parse("zonefleet.controllers=10.0.0.1", &source())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("zonefleet.controllers")
                && err.contains("\"10.0.0.1\"")
                && err.contains("HOST:PORT"),
            "{err}"
        );
        let err = parse("zonefleet.contollers=10.0.0.1:7000", &source())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("zonefleet.contollers: unknown setting"),
            "{err}"
        );
        let err = parse("zonefleet.token=", &source())
            .unwrap_err()
            .to_string();
        assert!(err.contains("zonefleet.token: has no value"), "{err}");
        let err = parse("zonefleet.data=relative/dir", &source())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("zonefleet.data") && err.contains("absolute"),
            "{err}"
        );
        let err = parse("zonefleet.cluster=Not_A_Cluster", &source())
            .unwrap_err()
            .to_string();
        assert!(err.contains("zonefleet.cluster"), "{err}");
        let err = parse("zonefleet.advertise=0.0.0.0:7444", &source())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("zonefleet.advertise") && err.contains("unspecified"),
            "{err}"
        );
    }
}
