//! `WatchAssignments`: a snapshot of the host's zones when the stream starts from 0
//! or from a revision the change log no longer covers, then every change, each with a
//! revision above the previous. Served by any controller from its applied state: one
//! that has not applied the revision asked for waits until it has.

use std::pin::Pin;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::Status;
use zonefleet_proto::pb;
use zonefleet_proto::pb::assignment_event::Event;

use crate::node::assignments::Since;
use crate::node::Controller;
use crate::state::assignments::Change;

/// Events buffered per stream before the sender waits for the agent to read.
const BUFFER: usize = 64;

/// The stream of one watch.
pub type AssignmentStream = Pin<Box<dyn Stream<Item = Result<pb::AssignmentEvent, Status>> + Send>>;

/// Starts streaming `host_id`'s assignments after `from` (0: a snapshot first).
pub(super) fn start(node: Controller, host_id: String, from: u64) -> AssignmentStream {
    let (tx, rx) = mpsc::channel(BUFFER);
    tokio::spawn(async move {
        if let Err(status) = stream(&node, &host_id, from, &tx).await {
            let _ = tx.send(Err(status)).await;
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

fn event(revision: u64, change: Change) -> pb::AssignmentEvent {
    pb::AssignmentEvent {
        revision,
        event: Some(match change {
            Change::Upsert(zone) => Event::Upsert(*zone),
            Change::Removed(uuid) => Event::Removed(uuid),
        }),
    }
}

type Sender = mpsc::Sender<Result<pb::AssignmentEvent, Status>>;

async fn stream(node: &Controller, host: &str, from: u64, tx: &Sender) -> Result<(), Status> {
    let log = node.assignments().clone();
    let mut changed = log.subscribe(host);
    if from > 0 {
        // An agent never goes back: wait to have applied what it has seen.
        let wait = node.raft().wait(None);
        tokio::select! {
            r = wait.applied_index_at_least(Some(from), "watch") => {
                r.map_err(|e| Status::unavailable(format!("waiting to apply revision {from}: {e}")))?;
            }
            () = tx.closed() => return Ok(()),
        }
    }
    let mut cursor = from;
    let mut snapshot = from == 0;
    loop {
        changed.borrow_and_update();
        let events = {
            // The log is written under the state's write lock: read under its read
            // lock, both show the same revision.
            let applied = node.state().await;
            let since = if snapshot {
                Since::TooOld
            } else {
                log.since(host, cursor)
            };
            match since {
                Since::TooOld => {
                    let at = applied.last_applied.map_or(0, |l| l.index);
                    snapshot = false;
                    cursor = at;
                    vec![pb::AssignmentEvent {
                        revision: at,
                        event: Some(Event::Snapshot(pb::AssignmentSnapshot {
                            zones: applied.fleet.zones_of_host(host),
                        })),
                    }]
                }
                Since::Changes(changes) => changes
                    .into_iter()
                    .map(|(revision, change)| {
                        cursor = revision;
                        event(revision, change)
                    })
                    .collect(),
            }
        };
        for e in events {
            if tx.send(Ok(e)).await.is_err() {
                return Ok(());
            }
        }
        tokio::select! {
            r = changed.changed() => {
                if r.is_err() {
                    return Ok(());
                }
            }
            () = tx.closed() => return Ok(()),
        }
    }
}
