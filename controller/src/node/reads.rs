//! Linearizable reads: the read index (as the leader, or asked of it) and the barrier
//! a read waits behind.

use std::time::{Duration, Instant};

use openraft::ServerState;
use tonic::Status;
use zonefleet_proto::pb;

use super::{no_leader, Controller, LEADER_WAIT, RETRY_PAUSE};
use crate::raft::{codec, NodeId};

impl Controller {
    /// Makes the next read of [`Self::state`] linearizable: this controller has applied
    /// at least everything committed before the call (read-index through the leader).
    /// With `stale`, returns at once.
    pub async fn read_barrier(&self, stale: bool) -> Result<(), Status> {
        if stale {
            return Ok(());
        }
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            let read_index = if self.inner.raft.metrics().borrow().state == ServerState::Leader {
                self.read_index_as_leader().await
            } else if let Some((id, addr)) = self.leader().filter(|(id, _)| *id != self.inner.id) {
                self.remote_read_index(id, &addr).await
            } else {
                Err(no_leader("read"))
            };
            match read_index {
                Ok(read) => {
                    let Some(index) = read.map(|l| l.index) else {
                        return Ok(());
                    };
                    let left = deadline.saturating_duration_since(Instant::now());
                    return self
                        .inner
                        .raft
                        .wait(Some(left.max(Duration::from_millis(100))))
                        .applied_index_at_least(Some(index), "read index")
                        .await
                        .map(|_| ())
                        .map_err(|e| {
                            Status::unavailable(format!("waiting to apply the read index: {e}"))
                        });
                }
                Err(status) if Instant::now() > deadline => return Err(status),
                Err(_) => tokio::time::sleep(RETRY_PAUSE).await,
            }
        }
    }

    async fn remote_read_index(
        &self,
        leader: NodeId,
        addr: &str,
    ) -> Result<Option<crate::raft::LogId>, Status> {
        let mut client = self.peer(leader, addr)?;
        let mut request = tonic::Request::new(pb::ReadIndexRequest {});
        request.set_timeout(Duration::from_secs(2));
        let response = client.read_index(request).await?;
        Ok(codec::opt_log_id_from_pb(
            response.get_ref().read_log_id.as_ref(),
        ))
    }

    /// The read index, as the leader (here, or the target of a follower's
    /// `ReadIndex`): openraft's (leadership confirmed by a quorum), raised to the last
    /// log id this controller held at start when it resumed the leadership it had
    /// before a restart.
    ///
    /// openraft 0.9 restores a leader whose stored vote is its own and committed
    /// without an election, and takes its first entry of that term as the leader's
    /// "noop": its read index is then the committed id found on disk, which may lag
    /// what was committed (and acknowledged) before the crash. Every such entry is in
    /// this controller's log (a leader flushes an entry before replicating it), so
    /// waiting for the whole log held at start makes the read see them.
    pub async fn read_index_as_leader(&self) -> Result<Option<crate::raft::LogId>, Status> {
        let (read, _) = self
            .inner
            .raft
            .get_read_log_id()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let Some(restored) = self.inner.restored_leadership else {
            return Ok(read);
        };
        let vote = self.inner.raft.metrics().borrow().vote;
        if vote.leader_id() == &restored.leader_id && vote.is_committed() {
            Ok(read.max(restored.last_log_id))
        } else {
            Ok(read)
        }
    }
}
