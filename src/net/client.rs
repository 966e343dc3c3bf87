//! Clients of the hub: one QUIC connection, one stream, one role per [`Client`].
//!
//! ```no_run
//! # async fn demo(id: cwn::net::tls::Identity, snapshot: Vec<u8>) -> Result<(), cwn::net::client::ClientError> {
//! use cwn::net::client::Client;
//!
//! let mut publisher = Client::connect("127.0.0.1:4433", &id).await?;
//! let version = publisher.push_snapshot(&snapshot).await?;
//! publisher.close().await;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use super::batch::{self, HitLine};
use super::close_code;
use super::endpoint::{self, Transport};
use super::tls::{Identity, TlsError};
use super::wire::{self, FrameReader, WireError};
use crate::hub::StartFrom;
use crate::hub::frame::{self, ErrorCode, Frame, Role};
use crate::hub::notification::Notification;

/// A client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The hub address.
    #[error("hub address {0:?}: {1}")]
    Address(String, String),
    /// TLS setup.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The connection failed or was closed (e.g. the hub refused the certificate).
    #[error("connection: {0}")]
    Connection(String),
    /// The hub answered with an error frame.
    #[error("hub refused: {message} (code {code})")]
    Refused {
        /// Error code (see [`ErrorCode`]).
        code: u16,
        /// The hub's message.
        message: String,
    },
    /// The hub broke the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// Telemetry could not be read or encoded.
    #[error("input: {0}")]
    Input(String),
    /// The hub rejected a pushed snapshot.
    #[error("snapshot {set_version} rejected: {reason}")]
    Rejected {
        /// Its set version.
        set_version: u64,
        /// The hub's reason.
        reason: String,
    },
}

impl ClientError {
    /// Whether the hub refused the peer's identity or role.
    pub fn is_forbidden(&self) -> bool {
        matches!(self, ClientError::Refused { code, .. } if *code == ErrorCode::FORBIDDEN.0)
    }

    /// Whether trying again later may succeed: the hub was unreachable, went away, or failed
    /// inside. Not for a refused identity or role, a newer connection of the same entity
    /// taking over, a protocol error or bad input — retrying cannot fix those.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Connection(_) => true,
            ClientError::Refused { code, .. } => *code == ErrorCode::INTERNAL.0,
            _ => false,
        }
    }
}

/// Exponential back-off with jitter between reconnection attempts: from 250 ms, doubling to
/// at most `max`, each wait drawn from its upper half so that thousands of clients that lost
/// the same hub do not return in step.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
    seed: u64,
}

impl Backoff {
    /// A back-off capped at `max`.
    pub fn new(max: Duration) -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        Backoff {
            next: Duration::from_millis(250),
            max,
            seed: h.finish() | 1,
        }
    }

    /// The wait before the next attempt.
    pub fn next_wait(&mut self) -> Duration {
        // xorshift64
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        let half = d / 2;
        half + Duration::from_nanos(self.seed % (half.as_nanos() as u64).max(1))
    }

    /// Starts again from the shortest wait (after a success).
    pub fn reset(&mut self) {
        self.next = Duration::from_millis(250);
    }
}

impl From<WireError> for ClientError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Frame(f) => ClientError::Protocol(f.to_string()),
            WireError::Read(r) => ClientError::Connection(r.to_string()),
            WireError::Write(w) => ClientError::Connection(w.to_string()),
            WireError::Truncated => ClientError::Protocol("stream ended inside a frame".into()),
        }
    }
}

/// A connection to the hub.
#[derive(Debug)]
pub struct Client {
    /// The endpoint when this client owns it (it waits for it to go idle on close).
    endpoint: Option<quinn::Endpoint>,
    conn: quinn::Connection,
    send: quinn::SendStream,
    rd: FrameReader,
    role: Option<Role>,
}

async fn recv_frame(rd: &mut FrameReader, conn: &quinn::Connection) -> Result<Frame, ClientError> {
    match rd.next().await {
        Ok(Some(Frame::Error { code, message })) => Err(ClientError::Refused {
            code: code.0,
            message,
        }),
        Ok(Some(f)) => Ok(f),
        Ok(None) => Err(ClientError::Connection("the hub ended the stream".into())),
        Err(e) => {
            // A refused handshake shows up as a closed connection: say why.
            if let Some(reason) = conn.close_reason() {
                return Err(ClientError::Connection(reason.to_string()));
            }
            Err(e.into())
        }
    }
}

/// Splits `host:port` into a resolved address and the name the hub's certificate must carry.
async fn resolve(hub: &str) -> Result<(SocketAddr, String), ClientError> {
    let bad = |m: &str| ClientError::Address(hub.to_string(), m.to_string());
    let (host, _port) = hub
        .rsplit_once(':')
        .ok_or_else(|| bad("expected HOST:PORT"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let addr = tokio::net::lookup_host(hub)
        .await
        .map_err(|e| bad(&e.to_string()))?
        .next()
        .ok_or_else(|| bad("resolves to no address"))?;
    Ok((addr, host))
}

impl Client {
    /// Connects to `hub` (`HOST:PORT`, or several comma-separated, raced with a stagger: the edges of
    /// one hub) presenting `id`, and checks the hub's certificate against `id`'s CA for the
    /// name `HOST`.
    ///
    /// # Errors
    /// Resolution, TLS setup, or the handshake — with several addresses, those of every one.
    pub async fn connect(hub: &str, id: &Identity) -> Result<Client, ClientError> {
        Self::connect_with(hub, id, &Transport::default()).await
    }

    /// [`connect`](Self::connect) with explicit transport settings.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub async fn connect_with(
        hub: &str,
        id: &Identity,
        transport: &Transport,
    ) -> Result<Client, ClientError> {
        Self::each_address(hub, |one| async move {
            let (addr, name) = resolve(one).await?;
            let endpoint = endpoint::client_endpoint(id, transport, addr)?;
            let cfg = endpoint::client_config(id, transport)?;
            Self::open(endpoint, cfg, addr, &name, true, transport.connect_timeout).await
        })
        .await
    }

    /// [`connect_with`](Self::connect_with) over an endpoint that other clients share (from
    /// [`endpoint::shared_client_endpoint`]): a load generator holds thousands of
    /// connections on a few sockets instead of one socket each.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub async fn connect_on(
        endpoint: &quinn::Endpoint,
        hub: &str,
        id: &Identity,
        transport: &Transport,
    ) -> Result<Client, ClientError> {
        Self::each_address(hub, |one| async move {
            let (addr, name) = resolve(one).await?;
            let cfg = endpoint::client_config(id, transport)?;
            Self::open(
                endpoint.clone(),
                cfg,
                addr,
                &name,
                false,
                transport.connect_timeout,
            )
            .await
        })
        .await
    }

    /// Tries `connect` on the comma-separated addresses of `hubs` as a staggered race (as
    /// "happy eyeballs", RFC 8305, does for a host's addresses): the first starts at once, each
    /// further one [`FAILOVER_STAGGER`] later or as soon as the one before it failed, and the
    /// first connection made wins (the others are dropped). A dead first edge so costs a
    /// quarter second, not its connect timeout. When none connects, the error names every
    /// address and why.
    async fn each_address<'a, F, Fut>(hubs: &'a str, connect: F) -> Result<Client, ClientError>
    where
        F: Fn(&'a str) -> Fut,
        Fut: std::future::Future<Output = Result<Client, ClientError>>,
    {
        use std::pin::Pin;
        use std::task::Poll;
        let addrs: Vec<&str> = hubs
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .collect();
        match addrs.as_slice() {
            [] => {
                return Err(ClientError::Address(
                    hubs.to_string(),
                    "expected HOST:PORT[,HOST:PORT…]".into(),
                ));
            }
            [one] => return connect(one).await,
            _ => {}
        }
        // One slot per address: not started, running, or done (failed).
        let mut running: Vec<Option<Pin<Box<Fut>>>> = addrs.iter().map(|_| None).collect();
        let mut failures: Vec<Option<String>> = addrs.iter().map(|_| None).collect();
        let mut started = 0usize;
        let mut stagger = Box::pin(tokio::time::sleep(Duration::ZERO));
        std::future::poll_fn(|cx| {
            loop {
                // Start the next address when its turn came or every started one failed.
                let all_failed = (0..started).all(|i| failures[i].is_some());
                if started < addrs.len() && (stagger.as_mut().poll(cx).is_ready() || all_failed) {
                    running[started] = Some(Box::pin(connect(addrs[started])));
                    started += 1;
                    stagger
                        .as_mut()
                        .reset(tokio::time::Instant::now() + FAILOVER_STAGGER);
                    continue;
                }
                let mut progressed = false;
                for (i, slot) in running.iter_mut().enumerate() {
                    let Some(f) = slot else { continue };
                    let Poll::Ready(r) = f.as_mut().poll(cx) else {
                        continue;
                    };
                    *slot = None;
                    match r {
                        Ok(c) => {
                            if i > 0 {
                                tracing::info!(
                                    hub = addrs[i],
                                    "connected to a further hub address"
                                );
                            }
                            return Poll::Ready(Ok(c));
                        }
                        // A refused identity or own TLS set-up is the same at every edge.
                        Err(e @ (ClientError::Refused { .. } | ClientError::Tls(_))) => {
                            return Poll::Ready(Err(e));
                        }
                        Err(e) => {
                            tracing::warn!(hub = addrs[i], "{e}; trying the other hub addresses");
                            failures[i] = Some(format!("{}: {e}", addrs[i]));
                            progressed = true;
                        }
                    }
                }
                if failures.iter().all(Option::is_some) {
                    let all: Vec<String> = failures.iter().flatten().cloned().collect();
                    return Poll::Ready(Err(ClientError::Connection(format!(
                        "no hub address answered: {}",
                        all.join("; ")
                    ))));
                }
                if !progressed {
                    return Poll::Pending;
                }
            }
        })
        .await
    }

    async fn open(
        endpoint: quinn::Endpoint,
        cfg: quinn::ClientConfig,
        addr: std::net::SocketAddr,
        name: &str,
        own_endpoint: bool,
        connect_timeout: Duration,
    ) -> Result<Client, ClientError> {
        let connecting = endpoint
            .connect_with(cfg, addr, name)
            .map_err(|e| ClientError::Connection(e.to_string()))?;
        let conn = match tokio::time::timeout(connect_timeout, connecting).await {
            Ok(c) => c.map_err(|e| ClientError::Connection(format!("{addr}: {e}")))?,
            Err(_) => {
                return Err(ClientError::Connection(format!(
                    "{addr}: no answer within {:.1} s; is the hub running and reachable?",
                    connect_timeout.as_secs_f64()
                )));
            }
        };
        let (send, recv) = conn
            .open_bi()
            .await
            .map_err(|e| ClientError::Connection(e.to_string()))?;
        Ok(Client {
            endpoint: own_endpoint.then_some(endpoint),
            conn,
            send,
            rd: FrameReader::new(recv),
            role: None,
        })
    }

    async fn recv(&mut self) -> Result<Frame, ClientError> {
        recv_frame(&mut self.rd, &self.conn).await
    }

    /// Opens the session in `role` (the `Hello` exchange); the other calls do it themselves.
    /// Idempotent for the same role.
    ///
    /// # Errors
    /// The connection already acts in another role, the hub refused the role (not in the
    /// registry, role not held, too many connections), or the connection failed.
    pub async fn hello(&mut self, role: Role) -> Result<(), ClientError> {
        if let Some(r) = self.role {
            if r == role {
                return Ok(());
            }
            return Err(ClientError::Protocol(format!(
                "this connection acts as {r:?}, not {role:?}"
            )));
        }
        wire::send(
            &mut self.send,
            &Frame::Hello {
                version: frame::PROTOCOL_VERSION.into(),
                role,
            },
        )
        .await?;
        match self.recv().await? {
            Frame::Hello { .. } => {
                self.role = Some(role);
                Ok(())
            }
            f => Err(ClientError::Protocol(format!("expected Hello, got {f:?}"))),
        }
    }

    /// Writes raw bytes on the session stream and returns the next frame the hub answers:
    /// for tests of what the hub does with bytes no well-behaved client sends.
    ///
    /// # Errors
    /// The connection failed, or the hub's answer is not a frame.
    #[doc(hidden)]
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<Frame, ClientError> {
        self.send
            .write_all(bytes)
            .await
            .map_err(|e| ClientError::Connection(e.to_string()))?;
        match self.rd.next().await {
            Ok(Some(f)) => Ok(f),
            Ok(None) => Err(ClientError::Connection("the hub ended the stream".into())),
            Err(e) => Err(ClientError::Connection(e.to_string())),
        }
    }

    /// Publisher: pushes a snapshot file; returns its set version once the hub uses it.
    ///
    /// # Errors
    /// Not a publisher, the hub rejected the snapshot, or the connection failed.
    pub async fn push_snapshot(&mut self, snapshot: &[u8]) -> Result<u64, ClientError> {
        self.hello(Role::Publisher).await?;
        let set_version = snapshot
            .get(16..24)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
            .ok_or_else(|| ClientError::Protocol("not a snapshot (too short)".into()))?;
        let total_len = snapshot.len() as u64;
        for (i, chunk) in snapshot.chunks(super::server::SNAPSHOT_CHUNK).enumerate() {
            wire::send(
                &mut self.send,
                &Frame::PushSnapshot {
                    set_version,
                    total_len,
                    position: (i * super::server::SNAPSHOT_CHUNK) as u64,
                    data: chunk.to_vec(),
                },
            )
            .await?;
        }
        match self.recv().await? {
            Frame::SnapshotAccepted { set_version } => Ok(set_version),
            Frame::SnapshotRejected {
                set_version,
                reason,
            } => Err(ClientError::Rejected {
                set_version,
                reason,
            }),
            f => Err(ClientError::Protocol(format!("unexpected {f:?}"))),
        }
    }

    /// Partner: pulls the snapshot cut to this entity's clearance.
    ///
    /// # Errors
    /// Not a partner, no snapshot at the hub, or the connection failed.
    pub async fn pull_snapshot(&mut self, have_version: u64) -> Result<Vec<u8>, ClientError> {
        self.hello(Role::Partner).await?;
        wire::send(&mut self.send, &Frame::PullSnapshot { have_version }).await?;
        self.recv_file().await
    }

    /// Partner: pulls what it lacks after the state it holds (`have_version` and the
    /// identity of the last file it applied; 0 and zeros for none): the cut deltas that
    /// follow, or the cut of the hub's base snapshot and the deltas after it when the hub's
    /// chain does not hold that state. Returns the set version the files lead to and the
    /// files in order (none when up to date).
    ///
    /// # Errors
    /// Not a partner, no snapshot at the hub, or the connection failed.
    pub async fn pull_since(
        &mut self,
        have_version: u64,
        identity: [u8; 32],
    ) -> Result<(u64, Vec<Vec<u8>>), ClientError> {
        self.hello(Role::Partner).await?;
        wire::send(
            &mut self.send,
            &Frame::PullSince {
                set_version: have_version,
                identity,
            },
        )
        .await?;
        let (head, n) = match self.recv().await? {
            Frame::PullAnswer { set_version, files } => (set_version, files),
            f => return Err(ClientError::Protocol(format!("unexpected {f:?}"))),
        };
        let mut files = Vec::new();
        for _ in 0..n {
            files.push(self.recv_file().await?);
        }
        Ok((head, files))
    }

    /// One file sent as `PushSnapshot` chunks.
    async fn recv_file(&mut self) -> Result<Vec<u8>, ClientError> {
        let mut out = Vec::new();
        loop {
            match self.recv().await? {
                Frame::PushSnapshot {
                    total_len,
                    position,
                    data,
                    ..
                } => {
                    if position != out.len() as u64 || position + data.len() as u64 > total_len {
                        return Err(ClientError::Protocol("snapshot chunk out of order".into()));
                    }
                    out.extend_from_slice(&data);
                    if out.len() as u64 == total_len {
                        return Ok(out);
                    }
                }
                f => return Err(ClientError::Protocol(format!("unexpected {f:?}"))),
            }
        }
    }

    /// Partner: sends one telemetry batch (from [`batch::encode_telemetry`]) without waiting.
    /// Read the answers with [`recv_hits`](Self::recv_hits) as they come, or use
    /// [`stream_channel`](Self::stream_channel), which does.
    ///
    /// # Errors
    /// Not a partner, or the connection failed.
    pub async fn send_batch(
        &mut self,
        batch_id: u64,
        arrow_ipc: Vec<u8>,
    ) -> Result<(), ClientError> {
        self.hello(Role::Partner).await?;
        wire::send(
            &mut self.send,
            &Frame::TelemetryBatch {
                batch_id,
                arrow_ipc,
            },
        )
        .await?;
        Ok(())
    }

    /// Partner: the hits of the next batch answered, in the order batches were sent.
    ///
    /// # Errors
    /// The hub refused the batch, or the connection failed.
    pub async fn recv_hits(&mut self) -> Result<(u64, Vec<HitLine>), ClientError> {
        match self.recv().await? {
            Frame::Hits {
                batch_id,
                arrow_ipc,
            } => Ok((
                batch_id,
                batch::decode_hits(&arrow_ipc).map_err(|e| ClientError::Protocol(e.to_string()))?,
            )),
            f => Err(ClientError::Protocol(format!("unexpected {f:?}"))),
        }
    }

    /// Partner: streams batches (Arrow IPC from [`batch::encode_telemetry`]) as they come out
    /// of `batches` (a live source sending at its own pace), at most [`STREAM_WINDOW`]
    /// unanswered, reading the answers meanwhile and handing each batch's hits to `on_hits`
    /// in order; returns the number of batches once the channel is closed and every batch is
    /// answered. Sending and receiving run together: a client that only reads after it has
    /// sent everything would stall once the hub's answers fill the flow-control window.
    ///
    /// # Errors
    /// An input error from `batches`, the hub refused a batch, or the connection failed.
    pub async fn stream_channel(
        &mut self,
        mut batches: tokio::sync::mpsc::Receiver<Result<Vec<u8>, ClientError>>,
        mut on_hits: impl FnMut(u64, Vec<HitLine>) + Send,
    ) -> Result<u64, ClientError> {
        self.hello(Role::Partner).await?;
        let mut pending = std::collections::VecDeque::new();
        let (mut next_id, mut exhausted) = (0, false);
        self.stream_window(
            &mut pending,
            &mut next_id,
            &mut exhausted,
            &mut BatchSource::Channel(&mut batches),
            &mut on_hits,
        )
        .await?;
        Ok(next_id)
    }

    /// Partner: one connection's part of [`stream_files_with`] and [`Client::stream_channel`].
    /// Sends again every batch in `pending` (sent before and not answered), then new ones
    /// from `source` (numbered from `next_id`) with at most [`STREAM_WINDOW`] unanswered,
    /// while handing the answers to `on_hits` and dropping their batches from `pending`. Returns when `source` is
    /// exhausted and everything is answered; on an error, `pending` holds what must be sent
    /// again.
    async fn stream_window(
        &mut self,
        pending_io: &mut std::collections::VecDeque<(u64, Vec<u8>)>,
        next_id: &mut u64,
        exhausted: &mut bool,
        source: &mut BatchSource<'_>,
        on_hits: &mut (dyn FnMut(u64, Vec<HitLine>) + Send),
    ) -> Result<(), ClientError> {
        let queue = std::sync::Mutex::new(std::mem::take(pending_io));
        let lock = || queue.lock().unwrap_or_else(|p| p.into_inner());
        let resend: Vec<(u64, Vec<u8>)> = lock().iter().cloned().collect();
        // Ids sent on this connection, in order, for the receiver to wait for.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
        let free = tokio::sync::Semaphore::new(STREAM_WINDOW.saturating_sub(resend.len()));
        let send = &mut self.send;
        let (rd, conn) = (&mut self.rd, &self.conn);
        let sender = async {
            for (id, bytes) in resend {
                let _ = tx.send(id);
                wire::send(
                    send,
                    &Frame::TelemetryBatch {
                        batch_id: id,
                        arrow_ipc: bytes,
                    },
                )
                .await?;
            }
            while !*exhausted {
                free.acquire()
                    .await
                    .map_err(|_| ClientError::Protocol("window closed".into()))?
                    .forget();
                let Some(b) = source.next().await else {
                    *exhausted = true;
                    break;
                };
                let bytes = b?;
                let id = *next_id;
                *next_id += 1;
                lock().push_back((id, bytes.clone()));
                let _ = tx.send(id);
                wire::send(
                    send,
                    &Frame::TelemetryBatch {
                        batch_id: id,
                        arrow_ipc: bytes,
                    },
                )
                .await?;
            }
            drop(tx);
            Ok::<(), ClientError>(())
        };
        let receiver = async {
            while let Some(id) = rx.recv().await {
                match recv_frame(rd, conn).await? {
                    Frame::Hits {
                        batch_id,
                        arrow_ipc,
                    } if batch_id == id => {
                        let hits = batch::decode_hits(&arrow_ipc)
                            .map_err(|e| ClientError::Protocol(e.to_string()))?;
                        lock().pop_front();
                        on_hits(id, hits);
                        free.add_permits(1);
                    }
                    f => {
                        return Err(ClientError::Protocol(format!(
                            "expected Hits {id}, got {f:?}"
                        )));
                    }
                }
            }
            Ok::<(), ClientError>(())
        };
        let r = tokio::try_join!(sender, receiver).map(|_| ());
        *pending_io = queue.into_inner().unwrap_or_else(|p| p.into_inner());
        r
    }

    /// Subscriber: starts receiving this entity's notifications.
    ///
    /// # Errors
    /// Not a subscriber, or the connection failed.
    pub async fn subscribe(mut self, from: StartFrom) -> Result<Subscription, ClientError> {
        self.hello(Role::Subscriber).await?;
        wire::send(&mut self.send, &Frame::Subscribe { from }).await?;
        Ok(Subscription {
            client: self,
            acks: Acks::default(),
        })
    }

    /// Ends the conversation: says `Close`, reads what the hub still sends until it ends the
    /// stream, then closes the connection — so that neither side loses the tail.
    pub async fn close(mut self) {
        let _ = wire::send(&mut self.send, &Frame::Close).await;
        let _ = self.send.finish();
        let drain = async { while let Ok(Some(_)) = self.rd.next().await {} };
        let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
        self.conn.close(close_code::OK.into(), b"");
        if let Some(ep) = &self.endpoint {
            let _ = tokio::time::timeout(Duration::from_secs(1), ep.wait_idle()).await;
        }
    }

    /// The underlying QUIC connection (for its statistics).
    pub fn connection(&self) -> &quinn::Connection {
        &self.conn
    }
}

/// A subscriber's stream of notifications.
///
/// Acknowledgements go out at once by default. With [`Subscription::set_ack_delay`] they are
/// coalesced: an [`ack`](Subscription::ack) is held for at most the delay (sent while
/// [`next`](Subscription::next) waits, or by [`close`](Subscription::close)), and at once when
/// [`ACK_EVERY`] notifications have arrived since the last one sent — one packet for several
/// notifications instead of one each, which the hub and the subscriber both pay for.
#[derive(Debug)]
pub struct Subscription {
    client: Client,
    acks: Acks,
}

/// Notifications a subscriber with coalesced acknowledgements receives before it sends its
/// ack without waiting for the delay: well under the hub's window of unacknowledged
/// notifications (256 unless its `queue_size` is set below that), so that the hub never stops
/// sending for an ack being held back. A hub whose `queue_size` is below this waits for each
/// ack up to the subscriber's delay.
pub const ACK_EVERY: u32 = 16;

/// How long `cwn subscribe` holds an acknowledgement so that several go out together (see
/// [`Subscription::set_ack_delay`]).
pub const SUBSCRIBE_ACK_DELAY: Duration = Duration::from_secs(1);

/// A subscription's acknowledgements and the bytes of the frame being written.
///
/// Every frame a subscription sends goes through `out`, written with quinn's cancel-safe
/// `write` and the progress kept here, so that a `next` cancelled half-way through sending an
/// ack (by a caller's timeout or `select!`) leaves no half frame for the next write to follow.
#[derive(Debug, Default)]
struct Acks {
    /// How long an ack may be held; zero: sent at once.
    delay: Duration,
    /// The newest offset acknowledged by the application and not yet staged.
    pending: Option<u64>,
    /// When `pending` must be sent.
    due: Option<tokio::time::Instant>,
    /// Notifications handed out since the last ack was staged.
    received: u32,
    /// Encoded frames not yet (fully) written, and how much of them was.
    out: Vec<u8>,
    written: usize,
}

impl Acks {
    /// Appends `f` to the bytes to write.
    fn push(&mut self, f: &Frame) -> Result<(), ClientError> {
        frame::encode(f, &mut self.out).map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok(())
    }

    /// Moves the pending ack into `out`.
    fn stage(&mut self) -> Result<(), ClientError> {
        if let Some(offset) = self.pending.take() {
            self.push(&Frame::Ack { offset })?;
            self.due = None;
            self.received = 0;
        }
        Ok(())
    }
}

impl Subscription {
    /// Holds acknowledgements for at most `delay` and sends them together (zero, the
    /// default: each at once). `cwn subscribe` holds them for
    /// [`SUBSCRIBE_ACK_DELAY`].
    ///
    /// What is acknowledged and not yet sent when the connection is lost is delivered again
    /// on the next subscription (delivery is at least once either way); [`close`](Self::close)
    /// and [`flush_acks`](Self::flush_acks) send it. The hub's delivery figures (status page)
    /// count a notification delivered when its ack arrives, so they include the delay.
    pub fn set_ack_delay(&mut self, delay: Duration) {
        self.acks.delay = delay;
    }

    /// Writes out everything staged, resuming where a cancelled call stopped.
    async fn write_out(&mut self) -> Result<(), ClientError> {
        while self.acks.written < self.acks.out.len() {
            let n = self
                .client
                .send
                .write(&self.acks.out[self.acks.written..])
                .await
                .map_err(WireError::from)?;
            self.acks.written += n;
        }
        self.acks.out.clear();
        self.acks.written = 0;
        Ok(())
    }

    /// Sends the acknowledgement being held, if any, now.
    ///
    /// # Errors
    /// The connection failed.
    pub async fn flush_acks(&mut self) -> Result<(), ClientError> {
        self.acks.stage()?;
        self.write_out().await
    }

    /// The next notification and its offset; `None` when the hub ended the subscription
    /// (shutdown). While it waits, a held acknowledgement is sent when its delay is up.
    /// Cancel-safe: a notification is never lost to a cancelled call.
    ///
    /// # Errors
    /// The hub refused or the connection failed.
    pub async fn next(&mut self) -> Result<Option<(u64, Notification)>, ClientError> {
        loop {
            if self
                .acks
                .due
                .is_some_and(|d| d <= tokio::time::Instant::now())
            {
                self.acks.stage()?;
            }
            self.write_out().await?;
            let frame = match self.acks.due {
                Some(due) => tokio::select! {
                    f = self.client.recv() => f,
                    _ = tokio::time::sleep_until(due) => continue,
                },
                None => self.client.recv().await,
            };
            match frame {
                Ok(Frame::Notification {
                    offset,
                    notification,
                }) => {
                    self.acks.received = self.acks.received.saturating_add(1);
                    return Ok(Some((offset, notification)));
                }
                Ok(Frame::Gap { from, to }) => {
                    tracing::warn!(
                        "notifications {from}..{to} were deleted by retention before delivery"
                    );
                }
                Ok(Frame::Close) => return Ok(None),
                Ok(f) => return Err(ClientError::Protocol(format!("unexpected {f:?}"))),
                Err(ClientError::Connection(m)) if m.contains("ended the stream") => {
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Acknowledges everything up to and including `offset`: call it after the notification
    /// is safely stored; the hub resumes after it next time. Sent at once, or held as
    /// [`set_ack_delay`](Self::set_ack_delay) allows.
    ///
    /// # Errors
    /// The connection failed.
    pub async fn ack(&mut self, offset: u64) -> Result<(), ClientError> {
        self.acks.pending = Some(self.acks.pending.map_or(offset, |p| p.max(offset)));
        if self.acks.delay.is_zero() || self.acks.received >= ACK_EVERY {
            return self.flush_acks().await;
        }
        if self.acks.due.is_none() {
            self.acks.due = Some(tokio::time::Instant::now() + self.acks.delay);
        }
        Ok(())
    }

    /// Tells the hub how this subscriber's delivery targets are doing (at most
    /// [`MAX_REPORTED_TARGETS`](crate::hub::frame::MAX_REPORTED_TARGETS); texts are cut so the
    /// frame fits the hub's limit for subscribers).
    ///
    /// # Errors
    /// The connection failed.
    pub async fn report(
        &mut self,
        targets: &[crate::notify::TargetReport],
    ) -> Result<(), ClientError> {
        let cut = |s: &str, max: usize| {
            let mut end = s.len().min(max);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s[..end].to_string()
        };
        let n = targets.len().min(crate::hub::frame::MAX_REPORTED_TARGETS);
        // 4,096 bytes a frame: 16 targets of 48 bytes of figures and 2 × 60 bytes of text.
        let per = (wire::MAX_SUBSCRIBER_FRAME - 16) / n.max(1) - 52;
        let targets = targets[..n]
            .iter()
            .map(|t| crate::notify::TargetReport {
                target: cut(&t.target, per / 2),
                last_error: cut(&t.last_error, per / 2),
                ..t.clone()
            })
            .collect();
        self.acks.push(&Frame::DeliveryReport { targets })?;
        self.write_out().await
    }

    /// Sends the acknowledgement being held, then ends the subscription (see
    /// [`Client::close`]).
    pub async fn close(mut self) {
        let _ = self.flush_acks().await;
        self.client.close().await;
    }
}

/// A notification as one JSON object, as `cwn subscribe` writes it: `offset`, `id` (hex, for
/// de-duplication), `created_at` (RFC 3339), `tlp`, `kind`, and the `payload` (the hit
/// record, with the partner and the routing rule).
pub fn notification_json(offset: u64, n: &Notification) -> serde_json::Value {
    use crate::hub::notification::NotificationKind;
    let payload: serde_json::Value = serde_json::from_slice(&n.payload)
        .unwrap_or_else(|_| String::from_utf8_lossy(&n.payload).into_owned().into());
    serde_json::json!({
        "offset": offset,
        "id": n.id.to_string(),
        "created_at": jiff::Timestamp::from_millisecond(n.created_at_ms as i64)
            .map(|t| t.to_string())
            .unwrap_or_default(),
        "tlp": n.tlp.name(),
        "kind": match n.kind {
            NotificationKind::Hit => "hit",
            NotificationKind::Sighting => "sighting",
            NotificationKind::Test => "test",
        },
        "payload": payload,
    })
}

/// How long a client given several hub addresses waits for one to answer before it tries the
/// next as well (see [`Client::connect`]).
pub const FAILOVER_STAGGER: Duration = Duration::from_millis(250);

/// Telemetry batches in flight before [`stream_files`] waits for hits.
pub const STREAM_WINDOW: usize = 8;

/// Partner: streams telemetry files to the hub (read as `cwn match` reads them) and returns
/// the hits sent back, in input order, and the number of rows sent.
///
/// # Errors
/// Unreadable telemetry, or the hub refused.
pub async fn stream_files(
    hub: &str,
    id: &Identity,
    fields: &crate::telemetry::FieldMap,
    format: Option<crate::telemetry::InputFormat>,
    files: &[std::path::PathBuf],
) -> anyhow::Result<Streamed> {
    stream_files_with(hub, id, fields, format, files, &StreamOptions::default()).await
}

/// How [`stream_files_with`] connects and how long it keeps trying.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// Transport settings, the connect timeout among them.
    pub transport: Transport,
    /// Give up after this long without an answered batch while the hub is away.
    pub retry_for: Duration,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            transport: Transport::default(),
            retry_for: Duration::from_secs(60),
        }
    }
}

/// Where a partner's batches come from: read and encoded on demand (files), or received
/// from a live producer.
enum BatchSource<'a> {
    Pull(&'a mut (dyn FnMut() -> Option<Result<Vec<u8>, ClientError>> + Send)),
    Channel(&'a mut tokio::sync::mpsc::Receiver<Result<Vec<u8>, ClientError>>),
}

impl BatchSource<'_> {
    async fn next(&mut self) -> Option<Result<Vec<u8>, ClientError>> {
        match self {
            BatchSource::Pull(f) => f(),
            BatchSource::Channel(rx) => rx.recv().await,
        }
    }
}

/// [`stream_files`] that rides out a hub that goes away: for up to `retry_for` without
/// progress it reconnects (with [`Backoff`]) and sends again the batches not yet answered,
/// so that none is lost. A resent batch the hub had already made durable is answered from
/// its memory of recent batches, not matched again, so none is doubled either; sent to
/// another edge of a cluster, it is matched again and the stream drops the notifications it
/// already holds (by id).
///
/// # Errors
/// An input cannot be read, the hub refused the identity or a batch, or it stayed away.
pub async fn stream_files_with(
    hub: &str,
    id: &Identity,
    fields: &crate::telemetry::FieldMap,
    format: Option<crate::telemetry::InputFormat>,
    files: &[std::path::PathBuf],
    opts: &StreamOptions,
) -> anyhow::Result<Streamed> {
    use crate::telemetry::FieldPresence;
    let mut readers = Vec::new();
    for path in files {
        let name = path.display().to_string();
        readers.push((name, crate::telemetry::open(path, format, fields)?));
    }
    let mut presence: Vec<(String, FieldPresence)> = readers
        .iter()
        .map(|(n, _)| (n.clone(), FieldPresence::new(fields)))
        .collect();
    let mut rows = 0u64;
    let mut source = readers
        .into_iter()
        .enumerate()
        .flat_map(|(i, (name, reader))| reader.map(move |tb| (i, name.clone(), tb)));
    let mut next_batch = || -> Option<Result<Vec<u8>, ClientError>> {
        let (i, name, tb) = source.next()?;
        Some((|| {
            let tb = tb.map_err(|e| ClientError::Input(e.to_string()))?;
            rows += tb.batch.num_rows() as u64;
            presence[i].1.observe(fields, &tb.batch);
            batch::encode_telemetry(&tb.batch, fields, &name, tb.first_row)
                .map_err(|e| ClientError::Input(e.to_string()))
        })())
    };
    let mut answered: Vec<(u64, Vec<HitLine>)> = Vec::new();
    stream_resilient(
        hub,
        id,
        opts,
        &mut BatchSource::Pull(&mut next_batch),
        &mut |id, hits| answered.push((id, hits)),
    )
    .await?;
    let empty_inputs = presence
        .iter()
        .filter_map(|(name, p)| p.check(name, fields).err().map(|e| e.to_string()))
        .collect();
    Ok(Streamed {
        hits: answered.into_iter().flat_map(|(_, h)| h).collect(),
        rows,
        empty_inputs,
    })
}

/// Partner: [`Client::stream_channel`] that rides out a hub that goes away, as
/// [`stream_files_with`] does: batches from a live producer are numbered from 0, sent with at
/// most [`STREAM_WINDOW`] unanswered, and those unanswered when a connection broke are sent
/// again on the next (to whichever of the hub's addresses answers first). Each batch's hits
/// go to `on_hits` once, in order. Returns the number of batches once the channel is closed
/// and every batch is answered.
///
/// # Errors
/// An input error from `batches`, the hub refused the identity or a batch, or it stayed away
/// for `opts.retry_for` without progress.
pub async fn stream_channel_with(
    hub: &str,
    id: &Identity,
    mut batches: tokio::sync::mpsc::Receiver<Result<Vec<u8>, ClientError>>,
    opts: &StreamOptions,
    mut on_hits: impl FnMut(u64, Vec<HitLine>) + Send,
) -> anyhow::Result<u64> {
    let mut n = 0u64;
    stream_resilient(
        hub,
        id,
        opts,
        &mut BatchSource::Channel(&mut batches),
        &mut |id, hits| {
            n = n.max(id + 1);
            on_hits(id, hits);
        },
    )
    .await?;
    Ok(n)
}

/// The reconnecting loop of [`stream_files_with`] and [`stream_channel_with`]: connection
/// after connection, each sending again what the last left unanswered, until `source` is
/// exhausted and answered, or the hub stayed away for `opts.retry_for` without progress.
async fn stream_resilient(
    hub: &str,
    id: &Identity,
    opts: &StreamOptions,
    source: &mut BatchSource<'_>,
    on_hits: &mut (dyn FnMut(u64, Vec<HitLine>) + Send),
) -> anyhow::Result<()> {
    let retry_for = opts.retry_for;
    let mut pending: std::collections::VecDeque<(u64, Vec<u8>)> = Default::default();
    let mut next_id = 0u64;
    let mut exhausted = false;
    let mut backoff = Backoff::new(Duration::from_secs(5));
    let mut since_progress = std::time::Instant::now();
    loop {
        let mut progress = false;
        let r = async {
            let mut c = Client::connect_with(hub, id, &opts.transport).await?;
            c.hello(Role::Partner).await?;
            let r = c
                .stream_window(
                    &mut pending,
                    &mut next_id,
                    &mut exhausted,
                    source,
                    &mut |id, hits| {
                        progress = true;
                        on_hits(id, hits);
                    },
                )
                .await;
            if r.is_ok() {
                c.close().await;
            }
            r
        }
        .await;
        match r {
            Ok(()) => return Ok(()),
            Err(e) if e.is_transient() => {
                if progress {
                    since_progress = std::time::Instant::now();
                    backoff.reset();
                }
                if since_progress.elapsed() >= retry_for {
                    return Err(anyhow::anyhow!(
                        "{hub}: {e}; gave up after {} s without progress",
                        retry_for.as_secs()
                    ));
                }
                let wait = backoff.next_wait();
                tracing::warn!(
                    "{hub}: {e}; {} batch(es) unanswered, trying again in {:.1} s",
                    pending.len(),
                    wait.as_secs_f64()
                );
                tokio::time::sleep(wait).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// What [`stream_files`] did.
#[derive(Debug)]
pub struct Streamed {
    /// The hits the hub sent back, in input order.
    pub hits: Vec<HitLine>,
    /// Rows streamed.
    pub rows: u64,
    /// One message per input that had rows but none of the mapped fields, so that nothing
    /// in it could match (streamed all the same; the caller reports them).
    pub empty_inputs: Vec<String>,
}
