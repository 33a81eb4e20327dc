//! The tower layer that turns the TLS peer into a [`Role`], enforces [`RPC_RULES`] and
//! writes the [`audit`](super::audit) line of every write.
//!
//! [`RPC_RULES`]: super::RPC_RULES

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use prost::bytes::Bytes;
use rustls_pki_types::CertificateDer;
use tonic::body::Body;
use tonic::codegen::StdError;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::Status;

use super::audit::{self, AuditRecord, Caller};
use super::{authorize, rule_for, Access, Role};

/// Applied with `tonic::transport::Server::builder().layer(RoleLayer::new(cluster))`.
///
/// For each request it reads the peer certificate from the connection info tonic puts
/// into the request extensions (`TlsConnectInfo<TcpConnectInfo>`, as served by
/// [`crate::tls::TlsIncoming`] or tonic's own TLS), maps it to a [`Role`] (no
/// certificate: `Anonymous`), refuses the call when [`authorize`] says so, and
/// otherwise inserts the `Role` into the extensions, where handlers find it with
/// [`Role::from_request`]. Calls of a write, allowed or refused, get an audit line.
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

type PeerCerts = Option<Arc<Vec<CertificateDer<'static>>>>;

fn peer_certs<B>(request: &http::Request<B>) -> PeerCerts {
    request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|info| info.peer_certs())
}

fn role_of(certs: &PeerCerts, cluster: &str) -> Result<Role, Status> {
    Role::from_peer_certs(cluster, certs.as_deref().map(|c| c.as_slice())).map_err(|e| {
        // Unreachable behind the handshake verifier; refuse rather than guess.
        Status::unauthenticated(e.to_string())
    })
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for RoleService<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: http_body::Body<Data = Bytes> + Send + 'static,
    ReqBody::Error: Into<StdError>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<StdError>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let method = request.uri().path().to_owned();
        let certs = peer_certs(&request);
        let verdict = role_of(&certs, &self.cluster)
            .and_then(|role| authorize(&role, &method).map(|()| role));
        match &verdict {
            Ok(role) => tracing::trace!(%role, %method, "rpc allowed"),
            Err(status) => {
                tracing::debug!(%method, code = ?status.code(), message = status.message(), "rpc refused")
            }
        }
        let Some(Access::Write { target }) = rule_for(&method).map(|r| r.access) else {
            return match verdict {
                Ok(role) => {
                    let (mut parts, body) = request.into_parts();
                    parts.extensions.insert(role);
                    let call = self
                        .inner
                        .call(http::Request::from_parts(parts, Body::new(body)));
                    Box::pin(async move { Ok(call.await?.map(Body::new)) })
                }
                Err(status) => Box::pin(std::future::ready(Ok(status.into_http()))),
            };
        };
        // The clone that was polled ready is the one to call.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let caller = Caller::of(certs.as_deref().and_then(|c| c.first()));
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            let (object, body) = audit::read_target(&method, target, body).await;
            let mut record = AuditRecord::new(caller, method, object);
            match verdict {
                Ok(role) => {
                    parts.extensions.insert(role);
                    let request = http::Request::from_parts(parts, Body::new(body));
                    Ok(record.watch(inner.call(request).await?))
                }
                Err(status) => {
                    record.finish(Some(status.code()));
                    Ok(status.into_http())
                }
            }
        })
    }
}
