//! A tonic `Channel` over fleet mTLS: a connector doing TCP + the rustls handshake.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tonic::transport::{Channel, Endpoint};

use super::TlsError;

/// How long TCP connect plus the TLS handshake may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A `tower::Service<Uri>` that dials the URI's host and port and runs the TLS
/// handshake with a [`super::client_config`], for `Endpoint::connect_with_connector`.
///
/// The endpoint URI must use the `http://` scheme: TLS is done here, not by tonic.
/// The server name checked against the certificate is the URI's host unless set with
/// [`TlsConnector::with_server_name`].
#[derive(Clone)]
pub struct TlsConnector {
    config: Arc<ClientConfig>,
    server_name: Option<ServerName<'static>>,
    timeout: Duration,
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnector")
            .field("server_name", &self.server_name)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl TlsConnector {
    /// A connector using `config`, with [`DEFAULT_CONNECT_TIMEOUT`].
    pub fn new(config: Arc<ClientConfig>) -> Self {
        TlsConnector {
            config,
            server_name: None,
            timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// Checks the server certificate against `name` instead of the URI's host.
    pub fn with_server_name(mut self, name: ServerName<'static>) -> Self {
        self.server_name = Some(name);
        self
    }

    /// Bounds TCP connect plus handshake.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Dials `uri` and completes the handshake.
    pub async fn connect(&self, uri: &Uri) -> Result<TlsStream<TcpStream>, TlsError> {
        self.connect_over(uri, |host, port| async move {
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            let _ = tcp.set_nodelay(true);
            Ok(tcp)
        })
        .await
    }

    /// Like [`Self::connect`], but over the stream `dial` opens to the URI's host and
    /// port (its caller's own way of reaching a peer; the TLS session, server name and
    /// timeout are this connector's).
    pub async fn connect_over<S, F, Fut>(
        &self,
        uri: &Uri,
        dial: F,
    ) -> Result<TlsStream<S>, TlsError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
        F: FnOnce(String, u16) -> Fut,
        Fut: Future<Output = std::io::Result<S>>,
    {
        let bad = |reason: &str| TlsError::InvalidAddress {
            value: uri.to_string(),
            reason: reason.to_owned(),
        };
        let host = uri.host().ok_or_else(|| bad("no host"))?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .to_owned();
        let port = uri.port_u16().ok_or_else(|| bad("no port"))?;
        let server_name = match &self.server_name {
            Some(name) => name.clone(),
            None => ServerName::try_from(host.clone()).map_err(|e| bad(&e.to_string()))?,
        };
        let context = format!("connect {host}:{port}");
        let connector = tokio_rustls::TlsConnector::from(self.config.clone());
        let dial = async {
            let stream = dial(host.clone(), port)
                .await
                .map_err(|error| TlsError::Io {
                    context: context.clone(),
                    error,
                })?;
            connector
                .connect(server_name, stream)
                .await
                .map_err(|error| TlsError::Io {
                    context: format!("TLS handshake with {host}:{port}"),
                    error,
                })
        };
        tokio::time::timeout(self.timeout, dial)
            .await
            .map_err(|_| TlsError::Timeout(context.clone()))?
    }
}

impl tower::Service<Uri> for TlsConnector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = TlsError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, TlsError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), TlsError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.connect(&uri).await.map(TokioIo::new) })
    }
}

/// Connects a tonic `Channel` to `address` (`HOST:PORT`, IPv6 in brackets) over TLS
/// with `config` (see [`super::client_config`]). The handshake happens here, so a
/// server that is not the expected peer fails this call.
pub async fn connect_channel(
    address: &str,
    config: Arc<ClientConfig>,
) -> Result<Channel, TlsError> {
    let endpoint = Endpoint::from_shared(format!("http://{address}")).map_err(|e| {
        TlsError::InvalidAddress {
            value: address.to_owned(),
            reason: e.to_string(),
        }
    })?;
    Ok(endpoint
        .connect_with_connector(TlsConnector::new(config))
        .await?)
}
