//! The network: the hub as a QUIC server with mutual TLS, its clients, and the small PKI they
//! use (feature `net`; only [`config`] is built without it, so that a configuration can be
//! checked anywhere).
//!
//! This module owns sockets, TLS, the async runtime and the mapping of connections to
//! entities. It must not decide who may learn what (that is [`route`](crate::route)) nor how
//! frames look (that is [`hub::frame`](crate::hub::frame)).
//!
//! Main items:
//! - [`config::HubConfig`]: `hub.toml`, validated without I/O;
//! - [`pki`]: `cwn pki init` / `cwn pki issue` — a network CA and entity certificates naming
//!   the entity as `cwn://entity/ID`;
//! - [`tls`]: rustls configurations (ring provider, TLS 1.3, ALPN `cwn/1`, client
//!   certificates required and verified against the CA) and the peer's identity;
//! - [`server::Server`]: the hub; [`client::Client`]: push, pull, stream, subscribe.
//!
//! Starting a hub in-process on an ephemeral port and subscribing (see `tests/net.rs` for a
//! complete setup with a PKI, a registry and a snapshot):
//!
//! ```no_run
//! # async fn demo(cfg: cwn::net::config::HubConfig, id: cwn::net::tls::Identity) -> anyhow::Result<()> {
//! use cwn::hub::StartFrom;
//! use cwn::net::client::Client;
//! use cwn::net::server::Server;
//!
//! let server = Server::start(&cfg).await?; // cfg.listen = 127.0.0.1:0
//! let hub = server.local_addr().to_string();
//! let mut sub = Client::connect(&hub, &id).await?.subscribe(StartFrom::Acked).await?;
//! while let Some((offset, n)) = sub.next().await? {
//!     println!("{offset}: {}", String::from_utf8_lossy(&n.payload));
//!     sub.ack(offset).await?;
//! }
//! server.shutdown().await;
//! # Ok(()) }
//! ```

pub mod config;

#[cfg(feature = "net")]
pub mod batch;
#[cfg(feature = "net")]
pub mod client;
#[cfg(feature = "net")]
pub mod der;
#[cfg(feature = "net")]
pub mod endpoint;
#[cfg(feature = "cluster")]
pub mod local_nats;
#[cfg(feature = "net")]
pub mod pki;
#[cfg(feature = "net")]
pub mod server;
#[cfg(feature = "net")]
pub mod tls;
#[cfg(feature = "net")]
pub mod wire;

/// QUIC application close codes the hub uses (the same numbers as
/// [`ErrorCode`](crate::hub::frame::ErrorCode) where one applies).
pub mod close_code {
    /// Orderly end.
    pub const OK: u32 = 0;
    /// The peer broke the protocol.
    pub const PROTOCOL: u32 = 1;
    /// The hub is shutting down.
    pub const SHUTDOWN: u32 = 7;
}
