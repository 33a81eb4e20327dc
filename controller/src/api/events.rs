//! `Operator.WatchEvents`: the fleet events ([`crate::state::events`]) after a
//! revision, oldest first, from the answering controller's applied state after a read
//! barrier (so a client resuming at another controller never goes back); with
//! `follow`, the stream stays open and sends each new entry's events once it is
//! applied here. Revisions on a stream never decrease and nothing kept is skipped: a
//! reader whose revision is older than the oldest kept event first gets a notice
//! (`events.truncated`) naming the oldest kept revision, then the kept events.

use std::pin::Pin;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::Status;
use zonefleet_proto::pb;

use crate::node::Controller;

/// Events buffered per stream before the sender waits for the client to read.
const BUFFER: usize = 256;

/// The stream of one watch.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<pb::FleetEvent, Status>> + Send>>;

/// Starts streaming the events after `request.from_revision`, once this controller has
/// applied everything committed when the call arrived.
pub async fn start(
    node: Controller,
    request: pb::WatchEventsRequest,
) -> Result<EventStream, Status> {
    // Subscribed before the barrier: nothing applied after it is missed.
    let applied = node.applied_index();
    node.read_barrier(false).await?;
    let (tx, rx) = mpsc::channel(BUFFER);
    tokio::spawn(async move {
        if let Err(status) = stream(&node, applied, request, &tx).await {
            let _ = tx.send(Err(status)).await;
        }
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}

type Sender = mpsc::Sender<Result<pb::FleetEvent, Status>>;

async fn stream(
    node: &Controller,
    mut applied: tokio::sync::watch::Receiver<u64>,
    request: pb::WatchEventsRequest,
    tx: &Sender,
) -> Result<(), Status> {
    let mut cursor = request.from_revision;
    // `from_revision: 0` asks for every event kept: no notice that older ones are not.
    let mut notice = cursor > 0;
    let stopped = stopped(node);
    tokio::pin!(stopped);
    loop {
        applied.borrow_and_update();
        let after = node.state().await.fleet.events_after(cursor);
        let events = after
            .truncated
            .filter(|_| notice)
            .into_iter()
            .chain(after.events);
        notice = true;
        for event in events {
            cursor = cursor.max(event.revision);
            if tx.send(Ok(event)).await.is_err() {
                return Ok(());
            }
        }
        if !request.follow {
            return Ok(());
        }
        tokio::select! {
            r = applied.changed() => {
                if r.is_err() {
                    return Err(gone());
                }
            }
            () = &mut stopped => return Err(gone()),
            () = tx.closed() => return Ok(()),
        }
    }
}

/// What a follow stream ends with when its controller stops: the client resumes at
/// another.
fn gone() -> Status {
    Status::unavailable("the controller is stopping; resume at another")
}

/// Resolves once `node`'s Raft has stopped (a follow stream would otherwise outlive
/// it, and hold up the server's graceful shutdown).
async fn stopped(node: &Controller) {
    let mut metrics = node.raft().metrics();
    loop {
        {
            let m = metrics.borrow_and_update();
            if m.running_state.is_err() || m.state == openraft::ServerState::Shutdown {
                return;
            }
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}
