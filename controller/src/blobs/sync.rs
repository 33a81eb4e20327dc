//! The blob sync loop of one controller: every [`ImageOptions::sync_interval`]
//! (and soon after each applied change) it compares the blobs on disk with the
//! committed manifests:
//!
//! * a manifest whose blob is missing (a new or restarted controller, one that was
//!   down during an upload) → fetched from a peer ([`peers::fetch`]);
//! * a blob whose manifest was there at the previous pass and is gone now (the image
//!   was deleted) → removed at once;
//! * a blob no manifest names, older than [`ImageOptions::orphan_grace`] and held by
//!   no upload (left by an upload whose manifest never committed) → removed.
//!
//! [`ImageOptions::sync_interval`]: super::ImageOptions::sync_interval
//! [`ImageOptions::orphan_grace`]: super::ImageOptions::orphan_grace

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use super::peers;
use crate::node::{Controller, WeakController};

/// Runs until the controller is dropped.
pub async fn run(weak: WeakController) {
    let Some(node) = weak.upgrade() else { return };
    let interval = node.image_options().sync_interval;
    let mut metrics = node.raft().metrics();
    drop(node);
    let mut known: BTreeSet<String> = BTreeSet::new();
    let mut applied = None;
    loop {
        let sleep = tokio::time::sleep(interval);
        tokio::pin!(sleep);
        // Wake early when something was applied (a manifest committed or deleted).
        loop {
            tokio::select! {
                () = &mut sleep => break,
                changed = metrics.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let now = metrics.borrow().last_applied;
                    if now != applied {
                        applied = now;
                        break;
                    }
                }
            }
        }
        let Some(node) = weak.upgrade() else { return };
        known = pass(&node, &known).await;
    }
}

/// One pass; returns the blobs the manifests name now.
pub async fn pass(node: &Controller, known: &BTreeSet<String>) -> BTreeSet<String> {
    let wanted: BTreeMap<String, u64> = {
        let state = node.state().await;
        state
            .fleet
            .images
            .values()
            .map(|i| (i.sha256.clone(), i.size_bytes))
            .collect()
    };
    let store = node.blobs();
    let held = match store.list() {
        Ok(held) => held,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the blob store");
            return known.clone();
        }
    };
    let grace = node.image_options().orphan_grace;
    for (sha256, written) in &held {
        if wanted.contains_key(sha256) || store.is_pinned(sha256) {
            continue;
        }
        let deleted = known.contains(sha256);
        let old = SystemTime::now()
            .duration_since(*written)
            .is_ok_and(|age| age >= grace);
        if deleted || old {
            match store.remove(sha256) {
                Ok(_) => tracing::info!(sha256, deleted, "blob removed: no image uses it"),
                Err(e) => tracing::warn!(sha256, error = %e, "cannot remove a blob"),
            }
        }
    }
    for (sha256, size) in &wanted {
        if store.size(sha256) == Some(*size) {
            continue;
        }
        if let Err(e) = peers::fetch(node, sha256, *size).await {
            tracing::warn!(sha256, error = %e, "cannot fetch a blob from the peers yet");
        }
    }
    wanted.into_keys().collect()
}
