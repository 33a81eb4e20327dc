//! The agent's client of the controllers' `Control` service: one connection at a
//! time to one of the controllers, moved to the next one when it fails and to the
//! leader a follower names (`zonefleet-leader` metadata on an UNAVAILABLE answer).
//!
//! It is a plain struct, not a trait, so a test points it at an in-process cluster by
//! giving it the cluster's addresses. The TLS config is swapped in place
//! ([`ControlClient::set_tls`]) when the certificate is renewed: the next connection
//! uses the new one, and nothing else restarts.

use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::ClientConfig;
use tonic::transport::Channel;
use tonic::{Code, Response, Status};
use zonefleet_proto::pb::control_client::ControlClient as PbClient;
use zonefleet_proto::tls::connect_channel;

/// The metadata key a follower names the leader in.
pub const LEADER_HINT: &str = "zonefleet-leader";

/// How long one unary call may take, connection included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of a call to the controllers.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No controller address is known.
    #[error("no controller to call: give controllers in agent.toml or zonefleet.controllers=")]
    NoControllers,
    /// Every controller was tried and none answered.
    #[error("{rpc}: no controller answered ({tried})")]
    Unreachable {
        /// The RPC.
        rpc: String,
        /// Each controller tried and what happened.
        tried: String,
    },
    /// A controller answered with an error that another controller would repeat.
    #[error("{rpc}: {} ({})", status.message(), code_name(status.code()))]
    Refused {
        /// The RPC.
        rpc: String,
        /// The answer.
        status: Box<Status>,
    },
}

fn code_name(code: Code) -> String {
    format!("{code:?}").to_ascii_uppercase()
}

impl ClientError {
    /// The status code of a refusal, if this is one.
    pub fn code(&self) -> Option<Code> {
        match self {
            ClientError::Refused { status, .. } => Some(status.code()),
            _ => None,
        }
    }
}

/// Whether an answer means "try another controller".
fn retryable(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded | Code::Unknown
    )
}

/// An error with its causes (tonic's transport error says only "transport error"
/// and keeps the handshake's refusal as its source).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// The leader a follower named, if any.
pub fn leader_hint(status: &Status) -> Option<String> {
    status
        .metadata()
        .get(LEADER_HINT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .filter(|s| !s.is_empty())
}

struct Inner {
    /// The TLS config, and its generation (bumped by every swap).
    tls: RwLock<(Arc<ClientConfig>, u64)>,
    controllers: RwLock<Vec<String>>,
    /// The controller connected to, its channel, and the TLS generation it was made
    /// with (a connection of an older one is not used again).
    current: tokio::sync::Mutex<Option<(String, Channel, u64)>>,
    /// A controller to try first at the next connection (a leader hint).
    preferred: Mutex<Option<String>>,
}

/// A client of the controllers (cheap to clone; clones share the connection).
#[derive(Clone)]
pub struct ControlClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ControlClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlClient")
            .field(
                "controllers",
                &*self.inner.controllers.read().expect("lock"),
            )
            .finish_non_exhaustive()
    }
}

impl ControlClient {
    /// A client of `controllers` (`HOST:PORT` each) over `tls`.
    pub fn new(controllers: Vec<String>, tls: Arc<ClientConfig>) -> ControlClient {
        ControlClient {
            inner: Arc::new(Inner {
                tls: RwLock::new((tls, 0)),
                controllers: RwLock::new(controllers),
                current: tokio::sync::Mutex::new(None),
                preferred: Mutex::new(None),
            }),
        }
    }

    /// Uses `tls` for every connection from now on: the next call connects again with
    /// it (streams already open go on on their connection until it ends).
    pub fn set_tls(&self, tls: Arc<ClientConfig>) {
        let mut guard = self.inner.tls.write().expect("lock");
        let generation = guard.1 + 1;
        *guard = (tls, generation);
    }

    /// The controllers this client calls.
    pub fn controllers(&self) -> Vec<String> {
        self.inner.controllers.read().expect("lock").clone()
    }

    /// Replaces the controllers this client calls (keeping the connection if its
    /// controller is still listed).
    pub fn set_controllers(&self, controllers: Vec<String>) {
        *self.inner.controllers.write().expect("lock") = controllers;
    }

    /// The controller connected to now, if any.
    pub async fn connected_to(&self) -> Option<String> {
        self.inner
            .current
            .lock()
            .await
            .as_ref()
            .map(|(a, _, _)| a.clone())
    }

    /// The order to try controllers in: the preferred one, the connected one, then
    /// the others in the configured order.
    fn order(&self, connected: Option<&str>) -> Vec<String> {
        let mut order = Vec::new();
        if let Some(p) = self.inner.preferred.lock().expect("lock").take() {
            order.push(p);
        }
        if let Some(c) = connected {
            order.push(c.to_owned());
        }
        for c in self.controllers() {
            if !order.contains(&c) {
                order.push(c);
            }
        }
        order
    }

    /// A channel to a controller: the current one, or a new connection to the first
    /// controller of [`Self::order`] that completes the handshake.
    async fn channel(
        &self,
        skip: &[String],
        timeout: Duration,
    ) -> Result<(String, Channel), String> {
        let mut current = self.inner.current.lock().await;
        let generation = self.inner.tls.read().expect("lock").1;
        if let Some((addr, channel, made_with)) = current.as_ref() {
            if *made_with == generation
                && !skip.contains(addr)
                && self.inner.preferred.lock().expect("lock").is_none()
            {
                return Ok((addr.clone(), channel.clone()));
            }
        }
        let connected = current.as_ref().map(|(a, _, _)| a.clone());
        let mut tried = Vec::new();
        for addr in self.order(connected.as_deref()) {
            if skip.contains(&addr) {
                continue;
            }
            let (tls, generation) = self.inner.tls.read().expect("lock").clone();
            match tokio::time::timeout(timeout, connect_channel(&addr, tls)).await {
                Ok(Ok(channel)) => {
                    tracing::debug!(controller = %addr, "connected");
                    *current = Some((addr.clone(), channel.clone(), generation));
                    return Ok((addr, channel));
                }
                Ok(Err(e)) => tried.push(format!("{addr}: {}", with_causes(&e))),
                Err(_) => tried.push(format!("{addr}: connect timed out")),
            }
        }
        *current = None;
        Err(tried.join("; "))
    }

    /// Forgets the connection to `addr` (it failed).
    async fn drop_connection(&self, addr: &str) {
        let mut current = self.inner.current.lock().await;
        if current.as_ref().is_some_and(|(a, _, _)| a == addr) {
            *current = None;
        }
    }

    /// Calls `rpc` with `f` on a controller: on a connection failure or an
    /// UNAVAILABLE answer the next controller is tried (the leader first when a
    /// follower named it), each at most once; any other answer is returned.
    pub async fn call<T, F, Fut>(&self, rpc: &str, f: F) -> Result<T, ClientError>
    where
        F: Fn(PbClient<Channel>) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        self.call_within(rpc, CALL_TIMEOUT, f).await
    }

    /// [`Self::call`] with each attempt (connection included) bounded by `timeout`
    /// instead of [`CALL_TIMEOUT`]: heartbeats must give up on a dead controller well
    /// within the lease, to reach another one before the lease runs out.
    pub async fn call_within<T, F, Fut>(
        &self,
        rpc: &str,
        timeout: Duration,
        f: F,
    ) -> Result<T, ClientError>
    where
        F: Fn(PbClient<Channel>) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        if self.controllers().is_empty() {
            return Err(ClientError::NoControllers);
        }
        let mut tried: Vec<String> = Vec::new();
        let mut report: Vec<String> = Vec::new();
        // Each controller once, plus one more for a hint naming one already tried.
        let attempts = self.controllers().len() + 2;
        for _ in 0..attempts {
            let (addr, channel) = match self.channel(&tried, timeout).await {
                Ok(c) => c,
                Err(why) => {
                    if !why.is_empty() {
                        report.push(why);
                    }
                    break;
                }
            };
            let answer = tokio::time::timeout(timeout, f(PbClient::new(channel))).await;
            match answer {
                Ok(Ok(response)) => return Ok(response.into_inner()),
                Ok(Err(status)) if retryable(&status) => {
                    self.drop_connection(&addr).await;
                    report.push(format!("{addr}: {}", status.message()));
                    tried.push(addr.clone());
                    if let Some(leader) = leader_hint(&status) {
                        tracing::debug!(%rpc, follower = %addr, %leader, "following the leader hint");
                        tried.retain(|t| *t != leader);
                        *self.inner.preferred.lock().expect("lock") = Some(leader);
                    }
                }
                Ok(Err(status)) => {
                    return Err(ClientError::Refused {
                        rpc: rpc.to_owned(),
                        status: Box::new(status),
                    })
                }
                Err(_) => {
                    self.drop_connection(&addr).await;
                    report.push(format!("{addr}: no answer within {timeout:?}"));
                    tried.push(addr);
                }
            }
        }
        Err(ClientError::Unreachable {
            rpc: rpc.to_owned(),
            tried: report.join("; "),
        })
    }
}
