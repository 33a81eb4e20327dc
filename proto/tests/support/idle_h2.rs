//! An HTTP/2 connection that stays idle: what a test holds open to see a server close
//! it. Shared by the TLS tests of this crate and the controller's Raft tests (included
//! there by path).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use zonefleet_proto::tls::TlsConnector;

/// Connects to `addr` with `config`, sends the HTTP/2 client preface and an empty
/// SETTINGS frame, and then only reads: the task ends when the server closes the
/// connection.
pub async fn idle_connection(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> JoinHandle<()> {
    let uri = format!("http://{addr}").parse().unwrap();
    let mut tls = TlsConnector::new(config).connect(&uri).await.unwrap();
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while let Ok(n) = tls.read(&mut buf).await {
            if n == 0 {
                return;
            }
        }
    })
}
