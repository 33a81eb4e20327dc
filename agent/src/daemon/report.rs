//! Reporting observed zone states: the engine's transitions, batched (whatever
//! arrived while the previous report was on its way goes in the next one, the newest
//! state per zone), sent with `ReportZoneState` and kept until a controller accepts
//! them. A batch the controllers refuse for its content is logged and dropped (sending
//! it again would be refused again).

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;
use tonic::Code;
use zonefleet_proto::pb;

use super::client::ControlClient;

/// How long a failed report waits before it is sent again.
pub const RETRY: Duration = Duration::from_secs(1);

/// Sends reports until the sender side is dropped and everything was sent (or the
/// controllers are unreachable at that point).
pub async fn run(
    client: ControlClient,
    host_id: String,
    mut rx: UnboundedReceiver<Vec<pb::ObservedZone>>,
) {
    let mut unsent: BTreeMap<String, pb::ObservedZone> = BTreeMap::new();
    let mut open = true;
    loop {
        if unsent.is_empty() {
            if !open {
                return;
            }
            match rx.recv().await {
                Some(batch) => merge(&mut unsent, batch),
                None => return,
            }
        }
        loop {
            match rx.try_recv() {
                Ok(batch) => merge(&mut unsent, batch),
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        let request = pb::ReportZoneStateRequest {
            host_id: host_id.clone(),
            zones: unsent.values().cloned().collect(),
        };
        let count = request.zones.len();
        match client
            .call("ReportZoneState", move |mut c| {
                let request = request.clone();
                async move { c.report_zone_state(request).await }
            })
            .await
        {
            Ok(_) => {
                tracing::debug!(zones = count, "reported");
                unsent.clear();
            }
            Err(e)
                if matches!(
                    e.code(),
                    Some(Code::InvalidArgument | Code::PermissionDenied | Code::NotFound)
                ) =>
            {
                tracing::warn!(error = %e, zones = count, "report refused: dropped");
                unsent.clear();
            }
            Err(e) => {
                tracing::warn!(error = %e, zones = count, "report failed; sending again");
                if !open {
                    return;
                }
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// Adds `batch` to `unsent`, the newest state per zone winning.
fn merge(unsent: &mut BTreeMap<String, pb::ObservedZone>, batch: Vec<pb::ObservedZone>) {
    for zone in batch {
        unsent.insert(zone.uuid.clone(), zone);
    }
}
