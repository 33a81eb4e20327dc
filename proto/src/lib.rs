//! zonefleet's shared contract: the gRPC services and messages (`pb`), the domain
//! types that cross the wire with their validation, the fleet PKI and the mTLS
//! role layer that every controller and agent serves behind.

pub mod auth;
#[cfg(feature = "cli")]
pub mod cli;
pub mod feature;
pub mod host;
pub mod image;
pub mod limits;
pub mod modes;
pub mod network;
pub mod pb;
pub mod pki;
pub mod spec;
pub mod tls;
