//! What can go wrong with a zone's console: its pty, its socket, an attach.

use std::path::PathBuf;

/// Why a console could not be made, served or attached to.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// Allocating or setting up the pty failed.
    #[error("console pty: {what}: {source}")]
    Pty {
        /// The step (`posix_openpt`, `grantpt`, `chown /dev/pts/3`…).
        what: String,
        /// The kernel's answer.
        source: nix::Error,
    },
    /// The console socket could not be made or reached.
    #[error("console socket {path}: {source}")]
    Socket {
        /// The socket's path.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// Nothing serves the console at this socket (no zsched of this zone runs one).
    #[error("nothing serves the console at {path} ({source})")]
    NotServed {
        /// The socket's path.
        path: PathBuf,
        /// How connecting failed.
        source: std::io::Error,
    },
    /// The relay refused the attach, e.g. another client is attached.
    #[error("{0}")]
    Refused(String),
    /// The relay's first line was not one of the protocol's.
    #[error("console socket {path}: unexpected greeting {line:?}")]
    Protocol {
        /// The socket's path.
        path: PathBuf,
        /// What it said.
        line: String,
    },
    /// Relaying failed (our terminal, the socket).
    #[error("console: {0}")]
    Io(#[from] std::io::Error),
}

impl ConsoleError {
    /// Shorthand for [`ConsoleError::Pty`].
    pub(crate) fn pty(what: impl Into<String>, source: nix::Error) -> Self {
        ConsoleError::Pty {
            what: what.into(),
            source,
        }
    }
}
