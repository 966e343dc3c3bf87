//! QUIC endpoints: the UDP socket bound through `socket2` with large buffers (the default
//! ~208 KB drops packets once hundreds of connections are active), and the transport settings
//! shared by the hub and its clients.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::{IdleTimeout, TransportConfig, VarInt};
use socket2::{Domain, Protocol, Socket, Type};

use super::tls::{self, Identity, TlsError};

/// UDP receive and send buffer size asked of the kernel (it may grant less; see
/// `net.core.rmem_max`).
pub const UDP_BUFFER: usize = 4 << 20;

/// Timers and windows of one side of a connection.
#[derive(Debug, Clone, Copy)]
pub struct Transport {
    /// Close a connection silent for this long.
    pub idle_timeout: Duration,
    /// Send a keep-alive after this much silence.
    pub keep_alive_interval: Duration,
    /// Per-connection send window, bytes (quinn's default of 10 MB would not let thousands of
    /// subscribers fit in memory).
    pub send_window: u64,
    /// How long a client waits for the hub to answer its handshake.
    pub connect_timeout: Duration,
}

/// A client's settings: a keep-alive every 2 s and a 6 s idle timeout, so that a client whose
/// hub edge died notices within 6 s and moves to another edge (the hub's own settings are in
/// its `[limits]`; the shorter of the two idle timeouts applies).
impl Default for Transport {
    fn default() -> Self {
        Transport {
            idle_timeout: Duration::from_secs(6),
            keep_alive_interval: Duration::from_secs(2),
            send_window: 1 << 20,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

impl Transport {
    /// The quinn transport configuration.
    pub fn config(&self) -> TransportConfig {
        let mut t = TransportConfig::default();
        t.max_idle_timeout(IdleTimeout::try_from(self.idle_timeout).ok());
        t.keep_alive_interval(Some(self.keep_alive_interval));
        t.send_window(self.send_window);
        let window = VarInt::from_u64(self.send_window.max(256 << 10)).unwrap_or(VarInt::MAX);
        t.stream_receive_window(window);
        t.receive_window(window);
        t.max_concurrent_bidi_streams(8u32.into());
        t.max_concurrent_uni_streams(0u32.into());
        t
    }
}

/// Binds a UDP socket with [`UDP_BUFFER`]-byte buffers.
pub fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // Accept IPv4 too where the address is the unspecified one.
        let _ = socket.set_only_v6(false);
    }
    // The kernel may cap these; that is not an error, only a smaller buffer.
    let _ = socket.set_recv_buffer_size(UDP_BUFFER);
    let _ = socket.set_send_buffer_size(UDP_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

fn endpoint(
    addr: SocketAddr,
    server: Option<quinn::ServerConfig>,
) -> std::io::Result<quinn::Endpoint> {
    let socket = bind_udp(addr)?;
    let runtime = quinn::default_runtime()
        .ok_or_else(|| std::io::Error::other("no async runtime (quinn needs tokio)"))?;
    quinn::Endpoint::new(quinn::EndpointConfig::default(), server, socket, runtime)
}

/// The hub's endpoint on `addr`, with mutual TLS.
pub fn server_endpoint(
    addr: SocketAddr,
    id: &Identity,
    transport: &Transport,
) -> Result<quinn::Endpoint, TlsError> {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls::server_config(id)?)
        .map_err(|e| TlsError::Quic(e.to_string()))?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    cfg.transport_config(Arc::new(transport.config()));
    endpoint(addr, Some(cfg)).map_err(|e| TlsError::Quic(format!("bind {addr}: {e}")))
}

/// A client endpoint on an ephemeral port, presenting `id`.
pub fn client_endpoint(
    id: &Identity,
    transport: &Transport,
    remote: SocketAddr,
) -> Result<quinn::Endpoint, TlsError> {
    let mut ep = shared_client_endpoint(remote)?;
    ep.set_default_client_config(client_config(id, transport)?);
    Ok(ep)
}

/// A client endpoint on an ephemeral port with no identity of its own, for many connections
/// each with its own [`client_config`] (a load generator holding thousands of subscribers on a
/// few sockets).
pub fn shared_client_endpoint(remote: SocketAddr) -> Result<quinn::Endpoint, TlsError> {
    let local: SocketAddr = if remote.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    endpoint(local, None).map_err(|e| TlsError::Quic(format!("bind: {e}")))
}

/// The QUIC client settings presenting `id`, with mutual TLS.
pub fn client_config(
    id: &Identity,
    transport: &Transport,
) -> Result<quinn::ClientConfig, TlsError> {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls::client_config(id)?)
        .map_err(|e| TlsError::Quic(e.to_string()))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    cfg.transport_config(Arc::new(transport.config()));
    Ok(cfg)
}
