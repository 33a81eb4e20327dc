//! `zfadm events [-f] [--from REV]`: the fleet's events (hosts up, down, cordoned,
//! draining; zones placed, moved, pending, started, halted, fenced, failed, deleted; the
//! rescheduling pause), oldest first, as a table or (`-o json`) one JSON object a line.
//! With `-f` it keeps printing; when the connection is lost it reconnects, to whichever
//! controller answers, and resumes after the last revision it printed, so nothing is
//! printed twice or skipped (docs/events.md).

use std::io::Write;
use std::time::Duration;

use anyhow::anyhow;
use clap::Args;
use serde_json::json;
use tonic::Streaming;
use zonefleet_proto::cli::Format;
use zonefleet_proto::pb;

use super::connect::{code_name, Connection};
use super::render::utc;

/// How long `-f` waits before it tries the controllers again.
const RETRY: Duration = Duration::from_secs(1);

/// `zfadm events`
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Keep printing new events as they are committed (reconnecting, to any controller,
    /// when the connection is lost).
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the events after this revision (default: every event the fleet still
    /// keeps).
    #[arg(long = "from", value_name = "REV", default_value_t = 0)]
    pub from: u64,
}

/// Column widths of the table (it is printed as events arrive, so they are fixed):
/// time, revision, kind, host, zone.
const WIDTHS: [usize; 5] = [20, 8, 16, 36, 36];

/// Prints events as they come, in one format.
struct Printer {
    format: Format,
}

impl Printer {
    fn line(cells: [&str; 6]) -> String {
        let mut line = String::new();
        for (cell, width) in cells.iter().zip(WIDTHS) {
            line.push_str(&format!("{cell:<width$}  "));
        }
        line.push_str(cells[5]);
        line.trim_end().to_owned()
    }

    fn header(&self, out: &mut dyn Write) -> std::io::Result<()> {
        if self.format == Format::Table {
            let header = ["TIME", "REVISION", "KIND", "HOST", "ZONE", "MESSAGE"];
            writeln!(out, "{}", Self::line(header))?;
            out.flush()?;
        }
        Ok(())
    }

    fn print(&self, out: &mut dyn Write, e: &pb::FleetEvent) -> std::io::Result<()> {
        match self.format {
            Format::Json => {
                let value = json!({
                    "revision": e.revision,
                    "at": utc(e.at_unix_ms),
                    "at_unix_ms": e.at_unix_ms,
                    "kind": e.kind,
                    "host_id": e.host_id,
                    "zone_uuid": e.zone_uuid,
                    "from_host_id": e.from_host_id,
                    "message": e.message,
                });
                writeln!(out, "{value}")?;
            }
            Format::Table => {
                let dash = |s: &str| {
                    if s.is_empty() {
                        "-".to_owned()
                    } else {
                        s.to_owned()
                    }
                };
                // A move's message names the host it left, unless it says it already.
                let message = if e.from_host_id.is_empty() || e.message.contains(&e.from_host_id) {
                    e.message.clone()
                } else {
                    format!("from {}: {}", e.from_host_id, e.message)
                };
                let cells = [
                    utc(e.at_unix_ms),
                    e.revision.to_string(),
                    e.kind.clone(),
                    dash(&e.host_id),
                    dash(&e.zone_uuid),
                    message,
                ];
                writeln!(out, "{}", Self::line(cells.each_ref().map(|c| c.as_str())))?;
            }
        }
        out.flush()
    }
}

/// Why no stream could be opened.
enum OpenError {
    /// A controller refused the call (a permanent answer: permission, a bad request).
    Refused(anyhow::Error),
    /// No controller could be reached or none could serve it now.
    Unreachable(anyhow::Error),
}

/// The events after `from` from the first controller that serves them.
async fn open(
    conn: &Connection,
    from: u64,
    follow: bool,
) -> Result<Streaming<pb::FleetEvent>, OpenError> {
    let request = pb::WatchEventsRequest {
        from_revision: from,
        follow,
    };
    let mut last = None;
    for address in conn.controllers() {
        let mut client = match conn.operator(address).await {
            Ok(client) => client,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        match client.watch_events(request).await {
            Ok(response) => return Ok(response.into_inner()),
            Err(status) if status.code() == tonic::Code::Unavailable => {
                last = Some(anyhow!("{address}: {}", status.message()));
            }
            Err(status) => {
                return Err(OpenError::Refused(anyhow!(
                    "{}: {}",
                    code_name(status.code()),
                    status.message()
                )))
            }
        }
    }
    Err(OpenError::Unreachable(
        last.unwrap_or_else(|| anyhow!("no controller answered"))
            .context("no controller could serve the events"),
    ))
}

/// Runs `zfadm events`.
pub async fn run(
    conn: &Connection,
    output: Format,
    args: EventsArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let printer = Printer { format: output };
    printer.header(out)?;
    // The last revision printed: where a lost stream resumes.
    let mut cursor = args.from;
    loop {
        let mut stream = match open(conn, cursor, args.follow).await {
            Ok(stream) => stream,
            Err(OpenError::Refused(e)) => return Err(e),
            Err(OpenError::Unreachable(e)) if !args.follow => return Err(e),
            Err(OpenError::Unreachable(e)) => {
                eprintln!("zfadm: {e:#}; retrying");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let lost = loop {
            match stream.message().await {
                Ok(Some(event)) => {
                    printer.print(out, &event)?;
                    cursor = cursor.max(event.revision);
                }
                Ok(None) => break None,
                Err(status) => {
                    break Some(anyhow!(
                        "{}: {}",
                        code_name(status.code()),
                        status.message()
                    ))
                }
            }
        };
        match (lost, args.follow) {
            (None, false) => return Ok(()),
            (Some(e), false) => return Err(e.context("the event stream broke off")),
            (why, true) => {
                let why = why.map_or_else(|| "the stream ended".to_owned(), |e| format!("{e:#}"));
                eprintln!("zfadm: lost the event stream ({why}); resuming after revision {cursor}");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> pb::FleetEvent {
        pb::FleetEvent {
            revision: 42,
            at_unix_ms: 1_796_300_123_000,
            kind: "zone.moved".to_owned(),
            host_id: "h2".to_owned(),
            zone_uuid: String::new(),
            from_host_id: "h1".to_owned(),
            message: "rescheduled".to_owned(),
        }
    }

    #[test]
    fn a_table_row_and_a_json_line_per_event() {
        let mut out = Vec::new();
        let table = Printer {
            format: Format::Table,
        };
        table.header(&mut out).unwrap();
        table.print(&mut out, &event()).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("TIME                  REVISION  KIND"),
            "{text}"
        );
        assert!(lines[1].starts_with("2026-12-03T12:15:23Z  42        zone.moved"));
        assert!(lines[1].ends_with("-                                     from h1: rescheduled"));
        let mut out = Vec::new();
        let lost = pb::FleetEvent {
            message: "host h1 lost".to_owned(),
            ..event()
        };
        table.print(&mut out, &lost).unwrap();
        assert!(String::from_utf8(out)
            .unwrap()
            .ends_with("  host h1 lost\n"));

        let mut out = Vec::new();
        let json = Printer {
            format: Format::Json,
        };
        json.header(&mut out).unwrap();
        json.print(&mut out, &event()).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 1);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["revision"], 42);
        assert_eq!(value["kind"], "zone.moved");
        assert_eq!(value["from_host_id"], "h1");
        assert_eq!(value["at"], "2026-12-03T12:15:23Z");
    }
}
