//! The status listener: a small HTTP/1.1 server on a tokio `TcpListener` serving `/`,
//! `/metrics` and `/api/status.json` from a shared [`Metrics`] registry.
//!
//! Hand-written rather than built on hyper: three `GET` routes with `Connection: close` need a
//! request-line parser and a write, which [`super::http`] does without IO in ~150 lines that
//! the tests cover; hyper would add its own dependency tree to every build of the hub for
//! features (keep-alive, chunked bodies, HTTP/2, upgrades) that would only widen what an
//! unauthenticated port exposes.
//!
//! Robustness: a semaphore caps open connections (`accept` waits when it is exhausted), the
//! request head is limited to [`MAX_REQUEST_HEAD`](super::http::MAX_REQUEST_HEAD) bytes and
//! must arrive within [`READ_TIMEOUT`], the response must be taken within [`WRITE_TIMEOUT`].
//! The listener binds to loopback by default ([`DEFAULT_STATUS_LISTEN`]); figures about who
//! is reachable are for the operator, so a non-loopback address is logged as a warning.

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::http::{self, RequestError, Response};
use super::metrics::Metrics;

/// Where the status listener binds unless the hub config's `status_listen` says otherwise.
pub const DEFAULT_STATUS_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9187));

/// Time a client has to send its whole request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has to take the whole response.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;

/// The status listener, bound and ready to [`run`](StatusServer::run).
///
/// ```no_run
/// # async fn f() -> std::io::Result<()> {
/// use std::sync::Arc;
/// use cwn::status::{Metrics, StatusServer, DEFAULT_STATUS_LISTEN};
///
/// let metrics = Arc::new(Metrics::default());
/// let server = StatusServer::bind(DEFAULT_STATUS_LISTEN, metrics.clone()).await?;
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let task = tokio::spawn(server.run(async { let _ = stopped.await; }));
/// // … the hub runs and updates `metrics` …
/// let _ = stop.send(());
/// task.await.expect("status listener panicked")?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct StatusServer {
    listener: TcpListener,
    metrics: Arc<Metrics>,
}

impl StatusServer {
    /// Binds the listener on `addr` (port 0 picks a free one; see
    /// [`local_addr`](Self::local_addr)).
    pub async fn bind(addr: SocketAddr, metrics: Arc<Metrics>) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Self::from_listener(listener, metrics))
    }

    /// Serves on a listener bound elsewhere.
    pub fn from_listener(listener: TcpListener, metrics: Arc<Metrics>) -> Self {
        if let Ok(addr) = listener.local_addr()
            && !addr.ip().is_loopback()
        {
            tracing::warn!(%addr, "status listener is reachable beyond this host");
        }
        StatusServer { listener, metrics }
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then stops accepting and waits (at most
    /// [`READ_TIMEOUT`] + [`WRITE_TIMEOUT`]) for the requests in flight.
    ///
    /// # Errors
    ///
    /// Only if accepting fails in a way that will not pass (errors such as a peer that reset
    /// before `accept` returned, or running out of file descriptors, are logged and retried).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let mut shutdown = std::pin::pin!(shutdown);
        tracing::info!(addr = ?self.listener.local_addr().ok(), "status listener up");
        loop {
            let permit = tokio::select! {
                () = &mut shutdown => break,
                p = limit.clone().acquire_owned() => p.expect("semaphore is never closed"),
            };
            let (stream, peer) = tokio::select! {
                () = &mut shutdown => break,
                r = self.listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) if is_transient(&e) => {
                        tracing::debug!("status listener: accept: {e}");
                        // Out of descriptors: give the others time to close.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                    Err(e) => return Err(e),
                },
            };
            let metrics = self.metrics.clone();
            tokio::spawn(async move {
                if let Err(e) = serve_connection(stream, &metrics).await {
                    tracing::debug!(%peer, "status listener: {e}");
                }
                drop(permit);
            });
        }
        let _ = tokio::time::timeout(
            READ_TIMEOUT + WRITE_TIMEOUT,
            limit.acquire_many(MAX_CONNECTIONS as u32),
        )
        .await;
        tracing::info!("status listener down");
        Ok(())
    }
}

fn is_transient(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock | TimedOut
    ) || e.raw_os_error() == Some(24) // EMFILE
        || e.raw_os_error() == Some(23) // ENFILE
}

/// Reads one request head, answers it and closes the connection.
async fn serve_connection(mut stream: TcpStream, metrics: &Metrics) -> io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let response = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream, &mut buf)).await
    {
        Err(_) => Response::timeout(),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(())) => match http::parse_request(&buf) {
            Ok(req) => http::respond(metrics, &req, jiff::Timestamp::now()),
            Err(e) => Response::for_error(e),
        },
    };
    let bytes = response.to_bytes();
    tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "response not taken in time"))?
}

/// Reads until the head is complete, too large, or the peer stops sending.
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    let mut chunk = [0u8; 2048];
    loop {
        match http::parse_request(buf) {
            Err(RequestError::Incomplete) => {}
            _ => return Ok(()),
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
