//! `zfadm host …`: list, get, cordon, uncordon and drain hosts (by id or by rack and
//! labels), set their inventory.

use std::collections::BTreeSet;
use std::io::Write;
use std::time::Duration;

use anyhow::bail;
use clap::{Args, Subcommand};
use zonefleet_proto::cli::Format;
use zonefleet_proto::pb;

use super::connect::Connection;
use super::drain::{self, parse_deadline};
use super::render::{print_hosts, print_reschedule_banner};

/// `zfadm host …`
#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// List hosts.
    List,
    /// Show one host.
    Get {
        /// The host id.
        host_id: String,
    },
    /// Stop placing zones on hosts (their zones stay where they are).
    Cordon {
        /// Which hosts.
        #[command(flatten)]
        targets: Targets,
    },
    /// Place zones on hosts again (cordoned or draining ones).
    Uncordon {
        /// Which hosts.
        #[command(flatten)]
        targets: Targets,
    },
    /// Move the zones off hosts: each host is set draining (no new zones), its
    /// `on_host_lost: reschedule` zones are moved to other hosts, its `wait` zones stay
    /// and are listed. Fails (non-zero status) when a zone could not move or the
    /// deadline passed.
    Drain {
        /// Which hosts.
        #[command(flatten)]
        targets: Targets,
        /// The most zones moving at once, over all the hosts drained.
        #[arg(long, default_value_t = 1, value_parser = parse_max_parallel)]
        max_parallel: usize,
        /// How long to wait for the moves: `90s`, `10m`, `1h30m` (1s to 7d). Moves
        /// still under way then go on; zones not yet moved stay.
        #[arg(long, default_value = "1h", value_parser = parse_deadline)]
        deadline: Duration,
    },
    /// Set a host's rack and labels (the controllers' inventory, which placement
    /// constraints and rack spread read; what an agent reports never changes it).
    SetInventory {
        /// The host id.
        host_id: String,
        /// The host's rack.
        #[arg(long)]
        rack: Option<String>,
        /// A label to set, `key=value` (repeatable).
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// A label key to remove (repeatable).
        #[arg(long = "remove-label")]
        remove_labels: Vec<String>,
    },
}

/// The hosts a command acts on: ids, and/or every host that matches a selector.
#[derive(Debug, Clone, Default, Args)]
pub struct Targets {
    /// Host ids.
    pub host_ids: Vec<String>,
    /// Every host in this rack.
    #[arg(long)]
    pub rack: Option<String>,
    /// Every host with this label, `key=value` (repeatable: all must match).
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
}

impl Targets {
    /// The selector as written (`--rack r1 --label ssd=true`), for messages.
    fn selector(&self) -> String {
        let mut words: Vec<String> = self.rack.iter().map(|r| format!("--rack {r}")).collect();
        words.extend(self.labels.iter().map(|(k, v)| format!("--label {k}={v}")));
        words.join(" ")
    }

    /// Whether `host` matches the selector (every part of it).
    fn matches(&self, host: &pb::Host) -> bool {
        self.rack.as_ref().is_none_or(|r| &host.rack == r)
            && self
                .labels
                .iter()
                .all(|(k, v)| host.labels.get(k).is_some_and(|have| have == v))
    }

    /// The hosts of `hosts` named by id or matching the selector, in the order the
    /// controllers list them, each once. Refuses an unknown id, a selector that matches
    /// no host, and no target at all.
    pub fn select(&self, hosts: &[pb::Host]) -> anyhow::Result<Vec<pb::Host>> {
        let has_selector = self.rack.is_some() || !self.labels.is_empty();
        if self.host_ids.is_empty() && !has_selector {
            bail!(
                "no hosts given: name hosts by id, or select them with --rack R and/or --label k=v"
            );
        }
        let known: BTreeSet<&str> = hosts.iter().map(|h| h.host_id.as_str()).collect();
        let unknown: Vec<&str> = self
            .host_ids
            .iter()
            .map(String::as_str)
            .filter(|id| !known.contains(id))
            .collect();
        if !unknown.is_empty() {
            bail!("no such host: {}", unknown.join(", "));
        }
        if has_selector && !hosts.iter().any(|h| self.matches(h)) {
            bail!("no host matches {}", self.selector());
        }
        let named: BTreeSet<&str> = self.host_ids.iter().map(String::as_str).collect();
        Ok(hosts
            .iter()
            .filter(|h| named.contains(h.host_id.as_str()) || (has_selector && self.matches(h)))
            .cloned()
            .collect())
    }
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not key=value"))
}

/// `--max-parallel`: 1 to 1000 zones at once.
fn parse_max_parallel(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=1000).contains(&n) => Ok(n),
        Ok(n) => Err(format!("{n} is out of range; allowed 1 to 1000")),
        Err(_) => Err(format!("{s:?} is not a number of zones")),
    }
}

/// Every host the controllers know, and whether automatic rescheduling is paused.
pub async fn list(conn: &Connection) -> anyhow::Result<pb::ListHostsResponse> {
    conn.call(|mut c| async move {
        c.list_hosts(pb::ListHostsRequest::default())
            .await
            .map(|r| r.into_inner())
    })
    .await
}

/// Runs a host command.
pub async fn run(
    conn: &Connection,
    output: Format,
    command: HostCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let hosts = match command {
        HostCommand::List => {
            let listed = list(conn).await?;
            if output != Format::Json {
                print_reschedule_banner(out, listed.reschedule.as_ref())?;
            }
            listed.hosts
        }
        HostCommand::Get { host_id } => {
            let r = pb::HostRef { host_id };
            vec![
                conn.call(|mut c| {
                    let r = r.clone();
                    async move { c.get_host(r).await.map(|r| r.into_inner()) }
                })
                .await?,
            ]
        }
        HostCommand::SetInventory {
            host_id,
            rack,
            labels,
            remove_labels,
        } => {
            let r = pb::SetHostInventoryRequest {
                host_id,
                rack,
                labels: labels.into_iter().collect(),
                remove_labels,
            };
            vec![
                conn.call(|mut c| {
                    let r = r.clone();
                    async move { c.set_host_inventory(r).await.map(|r| r.into_inner()) }
                })
                .await?,
            ]
        }
        HostCommand::Cordon { targets } => set_status(conn, &targets, true).await?,
        HostCommand::Uncordon { targets } => set_status(conn, &targets, false).await?,
        HostCommand::Drain {
            targets,
            max_parallel,
            deadline,
        } => {
            let hosts = targets.select(&list(conn).await?.hosts)?;
            let options = drain::Options {
                max_parallel,
                deadline,
                json: output == Format::Json,
            };
            return drain::drain(conn, hosts, &options, out).await;
        }
    };
    print_hosts(out, output, &hosts)
}

/// Cordons (or uncordons) every selected host: the hosts as they are then.
async fn set_status(
    conn: &Connection,
    targets: &Targets,
    cordon: bool,
) -> anyhow::Result<Vec<pb::Host>> {
    let selected = targets.select(&list(conn).await?.hosts)?;
    let mut done = Vec::with_capacity(selected.len());
    for host in selected {
        let r = pb::HostRef {
            host_id: host.host_id,
        };
        done.push(
            conn.call(|mut c| {
                let r = r.clone();
                async move {
                    if cordon {
                        c.cordon_host(r).await
                    } else {
                        c.uncordon_host(r).await
                    }
                    .map(|r| r.into_inner())
                }
            })
            .await?,
        );
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(id: &str, rack: &str, labels: &[(&str, &str)]) -> pb::Host {
        pb::Host {
            host_id: id.to_owned(),
            rack: rack.to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..Default::default()
        }
    }

    fn fleet() -> Vec<pb::Host> {
        vec![
            host("h1", "r1", &[("ssd", "true"), ("class", "a")]),
            host("h2", "r1", &[("ssd", "false")]),
            host("h3", "r2", &[("ssd", "true")]),
        ]
    }

    fn ids(t: &Targets) -> Result<Vec<String>, String> {
        t.select(&fleet())
            .map(|hs| hs.into_iter().map(|h| h.host_id).collect())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn hosts_are_selected_by_id_rack_and_every_label() {
        let by_rack = Targets {
            rack: Some("r1".into()),
            ..Default::default()
        };
        assert_eq!(ids(&by_rack).unwrap(), ["h1", "h2"]);
        let by_label = Targets {
            labels: vec![("ssd".into(), "true".into())],
            ..Default::default()
        };
        assert_eq!(ids(&by_label).unwrap(), ["h1", "h3"]);
        // Every part of the selector must match.
        let both = Targets {
            rack: Some("r1".into()),
            labels: vec![("ssd".into(), "true".into()), ("class".into(), "a".into())],
            ..Default::default()
        };
        assert_eq!(ids(&both).unwrap(), ["h1"]);
        // Ids and a selector add up; a host named twice is selected once.
        let mixed = Targets {
            host_ids: vec!["h3".into(), "h1".into()],
            rack: Some("r1".into()),
            ..Default::default()
        };
        assert_eq!(ids(&mixed).unwrap(), ["h1", "h2", "h3"]);
    }

    #[test]
    fn a_selection_of_nothing_is_refused_naming_why() {
        assert!(ids(&Targets::default())
            .unwrap_err()
            .contains("no hosts given"));
        let unknown = Targets {
            host_ids: vec!["h1".into(), "h9".into()],
            ..Default::default()
        };
        assert_eq!(ids(&unknown).unwrap_err(), "no such host: h9");
        let empty = Targets {
            rack: Some("r1".into()),
            labels: vec![("ssd".into(), "maybe".into())],
            ..Default::default()
        };
        assert_eq!(
            ids(&empty).unwrap_err(),
            "no host matches --rack r1 --label ssd=maybe"
        );
        // Even with an id that exists: a selector matching nothing is a mistake.
        let typo = Targets {
            host_ids: vec!["h1".into()],
            rack: Some("r7".into()),
            ..Default::default()
        };
        assert_eq!(ids(&typo).unwrap_err(), "no host matches --rack r7");
    }

    #[test]
    fn bad_flags_are_refused() {
        assert_eq!(parse_max_parallel("4"), Ok(4));
        assert!(parse_max_parallel("0")
            .unwrap_err()
            .contains("out of range"));
        assert!(parse_max_parallel("two")
            .unwrap_err()
            .contains("not a number"));
        assert!(parse_label("ssd").unwrap_err().contains("key=value"));
        assert!(parse_label("=x").is_err());
    }

    #[test]
    fn the_command_line_takes_selectors() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from([
            "zfadm",
            "host",
            "drain",
            "--rack",
            "r1",
            "--label",
            "ssd=true",
            "--max-parallel",
            "2",
            "--deadline",
            "1m30s",
        ])
        .unwrap();
        match cli.command {
            crate::cli::Command::Host(HostCommand::Drain {
                targets,
                max_parallel,
                deadline,
            }) => {
                assert_eq!(targets.rack.as_deref(), Some("r1"));
                assert_eq!(targets.labels, [("ssd".to_owned(), "true".to_owned())]);
                assert_eq!(max_parallel, 2);
                assert_eq!(deadline, Duration::from_secs(90));
            }
            other => panic!("{other:?}"),
        }
        let err = crate::cli::Cli::try_parse_from(["zfadm", "host", "drain", "--deadline", "soon"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("soon"), "{err}");
    }
}
