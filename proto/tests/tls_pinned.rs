//! The enrolling agent's pinned-root verifier, with real TLS handshakes on loopback:
//! a controller whose chain carries the pinned root is accepted; a wrong pin, a chain
//! without the pinned root, a leaf another root signed, a non-controller and a leaf
//! not naming the dialled address are all refused before any byte of a token is sent.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;
use zonefleet_proto::pki::{FleetCa, HostName, IssuedCert, Validity};
use zonefleet_proto::tls::{pinned_client_config, provider};

const TEST_TIMEOUT: Duration = Duration::from_secs(20);

/// A root and the signing CA it issued, as a fleet has them.
struct Fleet {
    root: FleetCa,
    signing: FleetCa,
}

fn fleet(cluster: &str) -> Fleet {
    let root = FleetCa::generate(cluster).unwrap();
    let signing = root.issue_signing_ca(Validity::days(30).unwrap()).unwrap();
    Fleet { root, signing }
}

fn loopback() -> Vec<HostName> {
    vec!["127.0.0.1".parse().unwrap()]
}

fn controller(f: &Fleet) -> IssuedCert {
    f.signing
        .issue_controller("c1", &loopback(), Validity::days(1).unwrap())
        .unwrap()
}

/// A server presenting exactly `chain` (PEM certificates) with `issued`'s key; it
/// answers "pong" to one line.
async fn serve(chain_pem: &str, issued: &IssuedCert) -> SocketAddr {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key =
        PrivateKeyDer::from_pem_slice(issued.key_pem.as_ref().unwrap().expose_pem().as_bytes())
            .unwrap();
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let mut buf = [0u8; 5];
                    if tls.read_exact(&mut buf).await.is_ok() {
                        let _ = tls.write_all(b"pong\n").await;
                    }
                }
            });
        }
    });
    addr
}

/// Handshakes with `addr` pinning `pin`; Ok when the handshake and one exchange
/// succeed, else the refusal.
async fn dial(addr: SocketAddr, pin: &str, name: &str) -> Result<(), String> {
    let config = pinned_client_config(pin, None).map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let tcp = TcpStream::connect(addr).await.unwrap();
    let server_name = ServerName::try_from(name.to_owned()).unwrap();
    let mut tls = connector
        .connect(server_name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    tls.write_all(b"ping\n").await.map_err(|e| e.to_string())?;
    let mut buf = [0u8; 5];
    tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
    assert_eq!(&buf, b"pong\n");
    Ok(())
}

async fn bounded<F: std::future::Future<Output = ()>>(body: F) {
    tokio::time::timeout(TEST_TIMEOUT, body)
        .await
        .expect("test timed out");
}

#[tokio::test]
async fn the_pinned_root_in_the_chain_is_accepted() {
    bounded(async {
        let f = fleet("prod");
        let c = controller(&f);
        // The chain as the fleet presents it: leaf, signing CA, root.
        assert_eq!(c.cert_pem.matches("BEGIN CERTIFICATE").count(), 3);
        let addr = serve(&c.cert_pem, &c).await;
        dial(addr, &f.root.fingerprint(), "127.0.0.1")
            .await
            .expect("the pinned root verifies the controller");
        // Upper-case hex pins the same root.
        let upper = format!(
            "sha256:{}",
            f.root.fingerprint()["sha256:".len()..].to_uppercase()
        );
        dial(addr, &upper, "127.0.0.1").await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_wrong_pin_is_refused() {
    bounded(async {
        let f = fleet("prod");
        let other = fleet("prod");
        let c = controller(&f);
        let addr = serve(&c.cert_pem, &c).await;
        let err = dial(addr, &other.root.fingerprint(), "127.0.0.1")
            .await
            .unwrap_err();
        assert!(err.contains("does not carry the pinned root"), "{err}");
        // The signing CA's fingerprint is not the root's: pinning it is refused too.
        // A malformed pin never gets as far as a handshake.
        let err = dial(addr, "sha256:not-hex", "127.0.0.1").await.unwrap_err();
        assert!(err.contains("64 hex digits"), "{err}");
        let signing_pin = zonefleet_proto::pki::fingerprint(f.signing.cert_der());
        let err = dial(addr, &signing_pin, "127.0.0.1").await.unwrap_err();
        assert!(err.contains("not a root CA"), "{err}");
    })
    .await;
}

#[tokio::test]
async fn a_chain_without_the_pinned_root_is_refused() {
    bounded(async {
        let f = fleet("prod");
        let c = controller(&f);
        // Leaf and signing CA only: the root is left out of the presented chain.
        let without_root = c.cert_pem.replace(f.root.cert_pem(), "");
        assert_eq!(without_root.matches("BEGIN CERTIFICATE").count(), 2);
        let addr = serve(&without_root, &c).await;
        let err = dial(addr, &f.root.fingerprint(), "127.0.0.1")
            .await
            .unwrap_err();
        assert!(err.contains("does not carry the pinned root"), "{err}");
    })
    .await;
}

#[tokio::test]
async fn a_leaf_of_another_root_presenting_the_pinned_root_is_refused() {
    bounded(async {
        let f = fleet("prod");
        let impostor = fleet("prod");
        let c = controller(&impostor);
        // The impostor's leaf and signing CA, followed by the genuine root it copied.
        let forged = c
            .cert_pem
            .replace(impostor.root.cert_pem(), f.root.cert_pem());
        let addr = serve(&forged, &c).await;
        let err = dial(addr, &f.root.fingerprint(), "127.0.0.1")
            .await
            .unwrap_err();
        assert!(
            err.contains("UnknownIssuer") || err.contains("BadSignature"),
            "{err}"
        );
    })
    .await;
}

#[tokio::test]
async fn only_a_controller_naming_the_dialled_address_is_accepted() {
    bounded(async {
        let f = fleet("prod");
        // An agent certificate of the same fleet is not a controller.
        let agent = f
            .signing
            .issue_agent(Uuid::new_v4(), &loopback(), Validity::days(1).unwrap())
            .unwrap();
        let addr = serve(&agent.cert_pem, &agent).await;
        let err = dial(addr, &f.root.fingerprint(), "127.0.0.1")
            .await
            .unwrap_err();
        assert!(err.contains("expected any controller"), "{err}");
        // A controller certificate for another address.
        let elsewhere = f
            .signing
            .issue_controller(
                "c2",
                &["10.9.9.9".parse().unwrap()],
                Validity::days(1).unwrap(),
            )
            .unwrap();
        let addr = serve(&elsewhere.cert_pem, &elsewhere).await;
        let err = dial(addr, &f.root.fingerprint(), "127.0.0.1")
            .await
            .unwrap_err();
        assert!(err.contains("not valid for name"), "{err}");
    })
    .await;
}

#[tokio::test]
async fn the_cluster_is_checked_when_given() {
    bounded(async {
        let f = fleet("prod");
        let c = controller(&f);
        let addr = serve(&c.cert_pem, &c).await;
        let config = pinned_client_config(&f.root.fingerprint(), Some("staging")).unwrap();
        let connector = tokio_rustls::TlsConnector::from(config);
        let tcp = TcpStream::connect(addr).await.unwrap();
        let err = connector
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected") && err.contains("staging"), "{err}");
    })
    .await;
}
