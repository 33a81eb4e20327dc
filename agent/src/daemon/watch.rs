//! The assignment watch: `WatchAssignments` from the last revision applied, each
//! event handed to the converge engine, reconnected (to any controller) when the
//! stream ends or fails. The revision to resume from is the engine's, read at each
//! reconnection: an event queued but not yet applied comes again, and the engine
//! ignores what it already applied.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use zonefleet_proto::pb;

use super::backoff::Backoff;
use super::client::ControlClient;

/// Watches for ever, handing each event to `deliver`; returns when `deliver` says
/// the engine is gone (false).
pub async fn run(
    client: ControlClient,
    host_id: String,
    revision: Arc<AtomicU64>,
    deliver: impl Fn(pb::AssignmentEvent) -> bool,
) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    loop {
        let from_revision = revision.load(Ordering::Acquire);
        let request = pb::WatchAssignmentsRequest {
            host_id: host_id.clone(),
            from_revision,
        };
        match client
            .call("WatchAssignments", move |mut c| {
                let request = request.clone();
                async move { c.watch_assignments(request).await }
            })
            .await
        {
            Ok(mut stream) => {
                let controller = client.connected_to().await;
                tracing::info!(from_revision, ?controller, "watching assignments");
                let mut got_any = false;
                loop {
                    match stream.message().await {
                        Ok(Some(event)) => {
                            got_any = true;
                            if !deliver(event) {
                                return;
                            }
                        }
                        Ok(None) => {
                            tracing::info!("the assignment stream ended; watching again");
                            break;
                        }
                        Err(status) => {
                            tracing::warn!(error = %status.message(), code = ?status.code(), "the assignment stream failed; watching again");
                            break;
                        }
                    }
                }
                if got_any {
                    backoff.reset();
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot watch assignments; trying again"),
        }
        backoff.sleep().await;
    }
}
