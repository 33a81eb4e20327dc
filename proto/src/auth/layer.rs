//! The tower layer that turns the TLS peer into a [`Role`] and enforces [`RPC_RULES`].
//!
//! [`RPC_RULES`]: super::RPC_RULES

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::Status;

use super::{authorize, Role};

/// Applied with `tonic::transport::Server::builder().layer(RoleLayer::new(cluster))`.
///
/// For each request it reads the peer certificate from the connection info tonic puts
/// into the request extensions (`TlsConnectInfo<TcpConnectInfo>`, as served by
/// [`crate::tls::TlsIncoming`] or tonic's own TLS), maps it to a [`Role`] (no
/// certificate: `Anonymous`), refuses the call when [`authorize`] says so, and
/// otherwise inserts the `Role` into the extensions, where handlers find it with
/// [`Role::from_request`].
#[derive(Debug, Clone)]
pub struct RoleLayer {
    cluster: Arc<str>,
}

impl RoleLayer {
    /// A layer for a node of `cluster`.
    pub fn new(cluster: &str) -> Self {
        RoleLayer {
            cluster: Arc::from(cluster),
        }
    }
}

impl<S> tower::Layer<S> for RoleLayer {
    type Service = RoleService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RoleService {
            inner,
            cluster: self.cluster.clone(),
        }
    }
}

/// The service [`RoleLayer`] wraps around the routes.
#[derive(Debug, Clone)]
pub struct RoleService<S> {
    inner: S,
    cluster: Arc<str>,
}

fn role_of<B>(request: &http::Request<B>, cluster: &str) -> Result<Role, Status> {
    let certs = request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|info| info.peer_certs());
    Role::from_peer_certs(cluster, certs.as_deref().map(|c| c.as_slice())).map_err(|e| {
        // Unreachable behind the handshake verifier; refuse rather than guess.
        Status::unauthenticated(e.to_string())
    })
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for RoleService<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        let method = request.uri().path().to_owned();
        let verdict = role_of(&request, &self.cluster)
            .and_then(|role| authorize(&role, &method).map(|()| role));
        match verdict {
            Ok(role) => {
                tracing::trace!(%role, %method, "rpc allowed");
                request.extensions_mut().insert(role);
                Box::pin(self.inner.call(request))
            }
            Err(status) => {
                tracing::debug!(%method, code = ?status.code(), message = status.message(), "rpc refused");
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}
