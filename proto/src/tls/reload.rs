//! A server certificate that can be replaced while the listener runs: each handshake
//! takes the certificate current at that moment, so a renewed certificate is served
//! from the next connection on, without restarting anything.

use std::fmt;
use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::{provider, CertKey, TlsError};

/// The certificate a server presents, swapped in place by [`ReloadableCert::replace`].
pub struct ReloadableCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for ReloadableCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadableCert").finish_non_exhaustive()
    }
}

/// `own` as rustls serves it; refused when the key is not the certificate's (which
/// would otherwise only show at a handshake).
fn certified(own: &CertKey) -> Result<Arc<CertifiedKey>, TlsError> {
    Ok(Arc::new(CertifiedKey::from_der(
        own.chain.clone(),
        own.key.clone_key(),
        &provider(),
    )?))
}

impl ReloadableCert {
    /// Serves `own` until it is replaced.
    pub fn new(own: &CertKey) -> Result<Arc<Self>, TlsError> {
        Ok(Arc::new(ReloadableCert {
            current: RwLock::new(certified(own)?),
        }))
    }

    /// Serves `own` from the next handshake on (connections already open keep theirs).
    /// On error (a key that is not the certificate's) the current one stays.
    pub fn replace(&self, own: &CertKey) -> Result<(), TlsError> {
        let next = certified(own)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = next;
        Ok(())
    }

    /// The certificate served now (its end-entity certificate first).
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}
