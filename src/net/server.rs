//! The hub: a QUIC server with mutual TLS that takes snapshots from publishers, telemetry from
//! partners and delivers notifications to subscribers.
//!
//! One connection is one peer; its identity comes from its verified certificate (looked up in
//! the registry, and checked against the fingerprint and subject the registry holds) and its
//! roles from the registry. The peer opens one bidirectional stream, says `Hello` with the
//! role it acts in, and then:
//! - publisher: `PushSnapshot` chunks → `SnapshotAccepted` / `SnapshotRejected`. An accepted
//!   snapshot (signature checked with the configured key, set version newer than the current
//!   one) is written to `DATA_DIR/snapshot.cwnsnap` and swapped in atomically: batches being
//!   matched finish on the old index;
//! - partner: `PullSnapshot` → the clearance cut as `PushSnapshot` chunks; `TelemetryBatch` →
//!   matched, routed (audit log), notifications appended to the victims' logs and synced,
//!   then `Hits` with the hits the partner may see;
//! - subscriber: `Subscribe` → `Notification`s of its own entity from the acknowledged offset
//!   (or the one asked for), at most `queue_size` unacknowledged; `Ack` moves the offset,
//!   which is kept on disk.
//!
//! Shutdown ([`Server::shutdown`], or SIGTERM / Ctrl-C under [`serve`]): stop accepting, tell
//! every peer `Close`, let them finish reading, sync the logs and the audit log, close the
//! endpoint with code 0.

use std::collections::HashMap;
use std::fs;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use ed25519_dalek::{SigningKey, VerifyingKey};
use rustls::pki_types::CertificateDer;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;

use super::batch;
use super::close_code;
use super::config::{HubConfig, Limits};
use super::endpoint::{self, Transport};
use super::tls::{self, Identity};
use super::wire::{self, FrameReader, WireError};
use crate::hub::frame::{self, ErrorCode, Frame, Role as WireRole};
use crate::hub::notification::Notification;
use crate::hub::{self as core, HubEvent, SessionId};
use crate::index::CompiledIndex;
use crate::index::snapshot::keys;
use crate::matcher::Matcher;
use crate::route::registry::{EntityOrd, Registry, Role};
use crate::route::{
    self, BatchParties, MatchedBatch, RoutePolicy, Router, SightingsAggregator, route_batch,
};
use crate::status::{EntityInfo, Metrics, SnapshotInfo};

/// File name of the last accepted snapshot in the data directory.
pub const SNAPSHOT_FILE: &str = "snapshot.cwnsnap";
/// Beside [`SNAPSHOT_FILE`]: the registry id of the publisher that pushed it, who owns its
/// indicators and receives their internal cases.
pub const SNAPSHOT_OWNER_FILE: &str = "snapshot.publisher";

/// File in the data directory mapping entity ids (registry) to the numbers of their logs
/// ([`crate::hub::store::numbering`]).
pub const ENTITY_IDS_FILE: &str = "entities.json";

/// Bytes of snapshot per `PushSnapshot` frame.
pub const SNAPSHOT_CHUNK: usize = 1 << 20;

/// Largest snapshot accepted from a publisher.
pub const MAX_SNAPSHOT: u64 = 8 << 30;

/// The hub could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A file named by the configuration.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// TLS or the endpoint.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

fn file_err(path: &Path, message: impl std::fmt::Display) -> ServeError {
    ServeError::File {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Counters of a running hub (read with [`Server::stats`]).
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections refused at the limit.
    pub refused: AtomicU64,
    /// Peers turned away after the handshake (unknown entity, role not held).
    pub forbidden: AtomicU64,
    /// Telemetry batches matched.
    pub batches: AtomicU64,
    /// Telemetry rows matched.
    pub rows: AtomicU64,
    /// Hits found.
    pub hits: AtomicU64,
    /// Notifications appended to logs.
    pub notifications_logged: AtomicU64,
    /// Notifications sent to subscribers.
    pub notifications_sent: AtomicU64,
    /// Snapshots accepted.
    pub snapshots_accepted: AtomicU64,
    /// Snapshots rejected.
    pub snapshots_rejected: AtomicU64,
}

/// Everything the connection tasks share.
struct Shared {
    router: Router,
    index: ArcSwapOption<CompiledIndex>,
    verify_key: VerifyingKey,
    sign_key: Option<SigningKey>,
    /// The sans-IO distribution core: logs, offsets, sessions.
    hub: Mutex<core::Hub>,
    /// Wakes the connection task of each subscriber session.
    sessions: Mutex<HashMap<SessionId, Arc<SessionSignal>>>,
    /// Wakes the timer task when the core's next deadline may have moved.
    timer: Notify,
    /// The disclosure audit log; each batch's lines are written in one piece, and journaled
    /// with the notifications they describe (`core::FileStoreConfig::side_file`).
    audit: Mutex<fs::File>,
    /// The publisher that owns the snapshot in use (it pushed it), who receives internal cases.
    publisher: Mutex<Option<EntityOrd>>,
    /// Sightings not yet handed to the publisher.
    sightings: Mutex<SightingsAggregator>,
    /// Connections held per entity.
    per_entity: Mutex<HashMap<EntityOrd, usize>>,
    /// The answers to each partner's last batches, for resends after a lost connection.
    answered: Mutex<RecentAnswers>,
    /// Distinct indicators each partner learnt of today.
    quota: Mutex<route::DailyQuota>,
    /// The clearance cut each partner last pulled, with the snapshot version it is of.
    cuts: Mutex<HashMap<EntityOrd, Cut>>,
    limits: Limits,
    data_dir: PathBuf,
    next_hit: AtomicU64,
    stats: Arc<Stats>,
    /// The status page's figures, when the hub runs with one.
    metrics: Option<Arc<Metrics>>,
    /// Serialises snapshot installs so that versions only go up.
    install: Mutex<()>,
}

/// A running hub.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stats: Arc<Stats>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicked holder leaves consistent-enough state (appends are whole records): go on.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_ms() -> u64 {
    jiff::Timestamp::now().as_millisecond().max(0) as u64
}

fn read_snapshot(path: &Path, vk: &VerifyingKey) -> Result<CompiledIndex, ServeError> {
    let bytes = fs::read(path).map_err(|e| file_err(path, e))?;
    CompiledIndex::from_snapshot(&bytes, Some(vk))
        .map_err(|e| file_err(path, format!("refused: {e}")))
}

impl Server {
    /// Loads everything the configuration names, binds the endpoint and starts serving.
    /// `cfg.listen` may use port 0; [`local_addr`](Self::local_addr) tells the port.
    ///
    /// # Errors
    /// A file that cannot be read or is refused (registry, keys, certificates, snapshot), or
    /// the address cannot be bound.
    pub async fn start(cfg: &HubConfig) -> Result<Server, ServeError> {
        Self::start_with_metrics(cfg, None).await
    }

    /// [`start`](Self::start), feeding `metrics` (the status page's registry) as it serves:
    /// registered entities and the snapshot at start, then rows, hits, queued and delivered
    /// notifications, subscriber connections, backlogs and errors.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub async fn start_with_metrics(
        cfg: &HubConfig,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<Server, ServeError> {
        let text = fs::read_to_string(&cfg.registry).map_err(|e| file_err(&cfg.registry, e))?;
        let registry = Registry::from_toml(&text, &cfg.registry.display().to_string())
            .map_err(|e| file_err(&cfg.registry, e))?;
        let publishers: Vec<EntityOrd> = registry.with_role(Role::Publisher).collect();
        if publishers.is_empty() && !cfg.allow_no_publisher {
            return Err(file_err(
                &cfg.registry,
                "no entity has the publisher role, so internal cases would reach nobody; add \
                 one, or set `allow_no_publisher = true` in the hub configuration to only \
                 audit them",
            ));
        }
        let router = Router::new(
            registry,
            RoutePolicy {
                arm_red: cfg.arm_red,
            },
        );
        let verify_key = keys::read_verify(&cfg.snapshot.verify_key)
            .map_err(|e| file_err(&cfg.snapshot.verify_key, e))?;
        let sign_key = cfg
            .snapshot
            .sign_key
            .as_deref()
            .map(|p| keys::read_signing(p).map_err(|e| file_err(p, e)))
            .transpose()?;
        fs::create_dir_all(&cfg.data_dir).map_err(|e| file_err(&cfg.data_dir, e))?;
        // The newer of the configured snapshot and the last one pushed.
        let mut index: Option<CompiledIndex> = None;
        let pushed = cfg.data_dir.join(SNAPSHOT_FILE);
        // The snapshot's owner: the publisher that pushed it, as recorded beside it; for a
        // snapshot the operator configured, the registry's publisher when there is one only.
        let only_publisher = match publishers.as_slice() {
            [one] => Some(*one),
            _ => None,
        };
        let mut publisher = None;
        for p in cfg.snapshot.path.iter().chain(Some(&pushed)) {
            if !p.exists() {
                continue;
            }
            let i = read_snapshot(p, &verify_key)?;
            if index
                .as_ref()
                .is_none_or(|cur| i.header().set_version > cur.header().set_version)
            {
                index = Some(i);
                publisher = if *p == pushed {
                    fs::read_to_string(cfg.data_dir.join(SNAPSHOT_OWNER_FILE))
                        .ok()
                        .and_then(|id| router.registry().by_id(id.trim()))
                        .filter(|o| publishers.contains(o))
                        .or(only_publisher)
                } else {
                    only_publisher
                };
            }
        }
        if index.is_some() && publisher.is_none() {
            tracing::warn!(
                "no publisher owns the snapshot in use (several in the registry, none recorded \
                 as its pusher): its internal cases are only audited until a publisher pushes"
            );
        }
        let (core_cfg, store_cfg) = core_config(cfg);
        let mut hub = core::Hub::open(core_cfg, store_cfg, now_ms())
            .map_err(|e| file_err(&cfg.data_dir, e))?;
        let names: Vec<&str> = router
            .registry()
            .iter()
            .map(|(_, e)| e.id.as_str())
            .collect();
        let numbers = hub
            .number_entities(&names)
            .map_err(|e| file_err(&cfg.data_dir, e))?;
        let router = router.with_numbers(numbers);
        let audit = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&cfg.audit_log)
            .map_err(|e| file_err(&cfg.audit_log, e))?;
        let id = Identity::load(&cfg.tls.cert, &cfg.tls.key, &cfg.tls.ca)?;
        let transport = Transport {
            idle_timeout: cfg.limits.idle_timeout,
            keep_alive_interval: cfg.limits.keep_alive_interval,
            send_window: cfg.limits.send_window,
            ..Transport::default()
        };
        let ep = endpoint::server_endpoint(cfg.listen, &id, &transport)?;
        let addr = ep
            .local_addr()
            .map_err(|e| file_err(Path::new("listen"), e))?;
        let stats = Arc::new(Stats::default());
        if let Some(m) = &metrics {
            m.set_entities(registry_entities(router.registry()));
            if let Some(i) = &index {
                m.snapshot(SnapshotInfo::from_index(i));
            }
        }
        let shared = Arc::new(Shared {
            router,
            publisher: Mutex::new(publisher),
            sightings: Mutex::new(SightingsAggregator::new()),
            per_entity: Mutex::new(HashMap::new()),
            answered: Mutex::new(RecentAnswers::default()),
            cuts: Mutex::new(HashMap::new()),
            quota: Mutex::new(route::DailyQuota::new(
                cfg.limits.max_indicators_per_partner_day,
            )),
            index: ArcSwapOption::new(index.map(Arc::new)),
            verify_key,
            sign_key,
            hub: Mutex::new(hub),
            sessions: Mutex::new(HashMap::new()),
            timer: Notify::new(),
            audit: Mutex::new(audit),
            limits: cfg.limits.clone(),
            data_dir: cfg.data_dir.clone(),
            next_hit: AtomicU64::new(now_ms() << 16),
            stats: stats.clone(),
            metrics,
            install: Mutex::new(()),
        });
        let (tx, rx) = watch::channel(false);
        tokio::spawn(timer_loop(shared.clone(), rx.clone()));
        let task = tokio::spawn(accept_loop(ep, shared, rx));
        tracing::info!(%addr, "hub listening");
        Ok(Server {
            addr,
            stats,
            shutdown: tx,
            task,
        })
    }

    /// The address the hub listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The hub's counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The hub's counters, shared (for a task that reports them while the hub runs).
    pub fn stats_handle(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Stops accepting, closes every connection in order, makes logs durable and waits for
    /// all of it.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// Runs a hub until SIGTERM or Ctrl-C, then shuts it down gracefully.
///
/// # Errors
/// When it cannot start (see [`Server::start`]).
pub async fn serve(cfg: &HubConfig) -> Result<(), ServeError> {
    // The status page (`/`, `/metrics`, `/api/status.json`) when the configuration asks.
    let status = match cfg.status_listen {
        Some(addr) => {
            let metrics = Arc::new(Metrics::default());
            let page = crate::status::StatusServer::bind(addr, metrics.clone())
                .await
                .map_err(|e| file_err(Path::new("status_listen"), format!("{addr}: {e}")))?;
            let bound = page
                .local_addr()
                .map_err(|e| file_err(Path::new("status_listen"), e))?;
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(page.run(async {
                let _ = stopped.await;
            }));
            Some((metrics, bound, stop, task))
        }
        None => None,
    };
    let server = Server::start_with_metrics(cfg, status.as_ref().map(|s| s.0.clone())).await?;
    eprintln!("cwn: hub listening on {}", server.local_addr());
    if let Some((_, addr, _, _)) = &status {
        eprintln!("cwn: status page on http://{addr}/ (metrics at /metrics)");
    }
    wait_for_signal().await;
    eprintln!("cwn: shutting down");
    server.shutdown().await;
    if let Some((_, _, stop, task)) = status {
        let _ = stop.send(());
        let _ = task.await;
    }
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn accept_loop(
    ep: quinn::Endpoint,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(shared.limits.max_connections));
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            incoming = ep.accept() => {
                let Some(incoming) = incoming else { break };
                match permits.clone().try_acquire_owned() {
                    Ok(permit) => {
                        shared.stats.connections.fetch_add(1, Ordering::Relaxed);
                        let (s, rx) = (shared.clone(), shutdown.clone());
                        tasks.spawn(async move {
                            connection(incoming, s, rx).await;
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        shared.stats.refused.fetch_add(1, Ordering::Relaxed);
                        incoming.refuse();
                    }
                }
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    // Graceful: connections see the shutdown flag, say Close and wait for their peers.
    ep.set_server_config(None);
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(5), drain)
        .await
        .is_err()
    {
        tasks.abort_all();
    }
    shared.flush_sightings();
    let flushed = lock(&shared.hub).flush();
    if let Err(e) = flushed {
        tracing::error!("saving acked offsets at shutdown: {e}");
    }
    if let Err(e) = lock(&shared.audit).sync_data() {
        tracing::error!("flushing the audit log at shutdown: {e}");
    }
    ep.close(close_code::SHUTDOWN.into(), b"hub shutting down");
    let _ = tokio::time::timeout(Duration::from_secs(2), ep.wait_idle()).await;
}

/// The answers (encoded hits) to each partner's most recent batches, by batch digest: a
/// partner whose connection broke sends its unanswered batches again, and those the hub had
/// made durable are answered from here. Bounded per partner by count and bytes.
#[derive(Default)]
struct RecentAnswers {
    by_partner: HashMap<EntityOrd, std::collections::VecDeque<Answer>>,
}

/// A snapshot version and the clearance cut of it that one partner pulled.
type Cut = (u64, Arc<Vec<u8>>);

/// A batch digest (mixed with the snapshot version) and the answer given to it.
type Answer = (u128, Arc<Vec<u8>>);

impl RecentAnswers {
    /// Batches remembered per partner: twice what a client may have unanswered.
    const BATCHES: usize = 2 * super::client::STREAM_WINDOW;
    /// Bytes of answers remembered per partner.
    const BYTES: usize = 8 << 20;

    fn get(&self, partner: EntityOrd, digest: u128) -> Option<Vec<u8>> {
        self.by_partner
            .get(&partner)?
            .iter()
            .find(|(d, _)| *d == digest)
            .map(|(_, a)| a.as_ref().clone())
    }

    fn put(&mut self, partner: EntityOrd, digest: u128, answer: &[u8]) {
        if answer.len() > Self::BYTES {
            return;
        }
        let q = self.by_partner.entry(partner).or_default();
        q.push_back((digest, Arc::new(answer.to_vec())));
        let mut bytes: usize = q.iter().map(|(_, a)| a.len()).sum();
        while q.len() > Self::BATCHES || bytes > Self::BYTES {
            if let Some((_, a)) = q.pop_front() {
                bytes -= a.len();
            }
        }
    }
}

/// One of an entity's connection slots ([`Limits::max_connections_per_entity`]), given back
/// when dropped.
struct EntitySlot {
    shared: Arc<Shared>,
    ord: EntityOrd,
}

impl EntitySlot {
    fn take(shared: &Arc<Shared>, ord: EntityOrd) -> Result<EntitySlot, String> {
        let mut held = lock(&shared.per_entity);
        let n = held.entry(ord).or_insert(0);
        let max = shared.limits.max_connections_per_entity;
        if *n >= max {
            return Err(format!(
                "entity {:?} already holds {max} connections, its limit",
                shared.router.registry().entity(ord).id
            ));
        }
        *n += 1;
        Ok(EntitySlot {
            shared: shared.clone(),
            ord,
        })
    }
}

impl Drop for EntitySlot {
    fn drop(&mut self) {
        let mut held = lock(&self.shared.per_entity);
        if let Some(n) = held.get_mut(&self.ord) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.ord);
            }
        }
    }
}

/// Who the peer is, from its verified certificate and the registry.
fn identify(conn: &quinn::Connection, reg: &Registry) -> Result<EntityOrd, String> {
    let chain = conn
        .peer_identity()
        .and_then(|a| a.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or("no client certificate")?;
    let pc = tls::peer_cert(&chain).map_err(|e| e.to_string())?;
    let ord = match &pc.entity {
        Some(id) => reg
            .by_id(id)
            .ok_or_else(|| format!("entity {id:?} is not in the registry"))?,
        None => reg
            .by_fingerprint(&pc.fingerprint)
            .or_else(|| reg.by_subject(&pc.subject))
            .or_else(|| reg.by_subject(&pc.subject_encoding_order))
            .ok_or_else(|| format!("certificate {:?} names no registered entity", pc.subject))?,
    };
    let e = reg.entity(ord);
    if let Some(fp) = e.fingerprint
        && fp != pc.fingerprint
    {
        return Err(format!(
            "certificate of {:?} does not have the fingerprint the registry holds",
            e.id
        ));
    }
    // Spaces after the commas are a matter of taste; the order may be either.
    let squeeze = |s: &str| s.replace(", ", ",");
    if let Some(s) = &e.subject
        && squeeze(s) != pc.subject
        && squeeze(s) != pc.subject_encoding_order
    {
        return Err(format!(
            "certificate subject {:?} is not the registry's {s:?} for {:?}",
            pc.subject, e.id
        ));
    }
    Ok(ord)
}

fn registry_role(r: WireRole) -> Role {
    match r {
        WireRole::Publisher => Role::Publisher,
        WireRole::Partner => Role::Partner,
        WireRole::Subscriber => Role::Subscriber,
    }
}

/// Why a session ended early.
enum End {
    /// Tell the peer, then close.
    Error(ErrorCode, String),
    /// The connection is gone.
    Lost(String),
}

impl From<WireError> for End {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Frame(f) => End::Error(ErrorCode::PROTOCOL, f.to_string()),
            other => End::Lost(other.to_string()),
        }
    }
}

fn protocol(what: &str, f: &Frame) -> End {
    End::Error(
        ErrorCode::PROTOCOL,
        format!("unexpected {} {what}", frame_name(f)),
    )
}

fn frame_name(f: &Frame) -> &'static str {
    match f {
        Frame::Hello { .. } => "Hello",
        Frame::Subscribe { .. } => "Subscribe",
        Frame::Notification { .. } => "Notification",
        Frame::Ack { .. } => "Ack",
        Frame::Gap { .. } => "Gap",
        Frame::PushSnapshot { .. } => "PushSnapshot",
        Frame::SnapshotAccepted { .. } => "SnapshotAccepted",
        Frame::SnapshotRejected { .. } => "SnapshotRejected",
        Frame::PullSnapshot { .. } => "PullSnapshot",
        Frame::TelemetryBatch { .. } => "TelemetryBatch",
        Frame::Hits { .. } => "Hits",
        Frame::Error { .. } => "Error",
        Frame::Close => "Close",
    }
}

async fn connection(
    incoming: quinn::Incoming,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            // A client without a certificate of the network's CA, or one that gave up.
            tracing::info!("handshake refused or failed: {e}");
            return;
        }
    };
    let peer = conn.remote_address();
    // Who it is, and whether it may hold one more connection, before anything is read.
    let who = identify(&conn, shared.router.registry())
        .and_then(|ord| EntitySlot::take(&shared, ord).map(|slot| (ord, slot)));
    let deadline = shared.limits.first_request_timeout;
    let (mut send, recv) = match tokio::time::timeout(deadline, conn.accept_bi()).await {
        Ok(Ok(s)) => s,
        _ => {
            conn.close(close_code::PROTOCOL.into(), b"no request");
            return;
        }
    };
    let mut rd = FrameReader::new(recv);
    rd.set_max(wire::MAX_HELLO_FRAME);
    let result = match who {
        // Refused before reading a byte of what it sends.
        Err(m) => {
            tracing::info!(%peer, "refused: {m}");
            Err(End::Error(ErrorCode::FORBIDDEN, m))
        }
        Ok((ord, _slot)) => session(&conn, &shared, ord, &mut send, &mut rd, shutdown).await,
    };
    let code = match result {
        Ok(()) => {
            let _ = wire::send(&mut send, &Frame::Close).await;
            close_code::OK
        }
        Err(End::Error(code, message)) => {
            tracing::info!(%peer, "closing: {message}");
            if let Some(m) = &shared.metrics {
                m.error(jiff::Timestamp::now(), &message);
            }
            if code == ErrorCode::FORBIDDEN {
                shared.stats.forbidden.fetch_add(1, Ordering::Relaxed);
            }
            let _ = wire::send(&mut send, &Frame::Error { code, message }).await;
            u32::from(code.0)
        }
        Err(End::Lost(m)) => {
            tracing::debug!(%peer, "connection lost: {m}");
            conn.close(close_code::PROTOCOL.into(), b"");
            return;
        }
    };
    let _ = send.finish();
    // Let the peer read the tail: it closes when it has; give up after a while.
    let _ = tokio::time::timeout(Duration::from_secs(2), conn.closed()).await;
    conn.close(code.into(), b"");
}

async fn session(
    _conn: &quinn::Connection,
    shared: &Arc<Shared>,
    ord: EntityOrd,
    send: &mut quinn::SendStream,
    rd: &mut FrameReader,
    shutdown: watch::Receiver<bool>,
) -> Result<(), End> {
    let hello = match tokio::time::timeout(shared.limits.first_request_timeout, rd.next()).await {
        Ok(r) => r?,
        Err(_) => return Err(End::Error(ErrorCode::PROTOCOL, "no Hello".into())),
    };
    let role = match hello {
        Some(Frame::Hello { version, role }) => {
            if version < u16::from(frame::PROTOCOL_VERSION) {
                return Err(End::Error(
                    ErrorCode::UNSUPPORTED_VERSION,
                    format!("protocol version {version} is not supported"),
                ));
            }
            role
        }
        Some(f) => return Err(protocol("before Hello", &f)),
        None => return Err(End::Lost("closed before Hello".into())),
    };
    let entity = shared.router.registry().entity(ord);
    // A publisher reads its own log too: internal cases and sightings land there.
    let may = entity.roles.contains(registry_role(role))
        || (role == WireRole::Subscriber && entity.roles.contains(Role::Publisher));
    if !may {
        return Err(End::Error(
            ErrorCode::FORBIDDEN,
            format!(
                "entity {:?} is not a {} in the registry",
                entity.id,
                registry_role(role).name()
            ),
        ));
    }
    rd.set_max(match role {
        WireRole::Subscriber => wire::MAX_SUBSCRIBER_FRAME,
        WireRole::Partner | WireRole::Publisher => frame::MAX_FRAME_LEN,
    });
    tracing::info!(entity = %entity.id, role = registry_role(role).name(), "session");
    wire::send(
        send,
        &Frame::Hello {
            version: frame::PROTOCOL_VERSION.into(),
            role,
        },
    )
    .await?;
    match role {
        WireRole::Publisher => publisher(shared, ord, send, rd, shutdown).await,
        WireRole::Partner => partner(shared, ord, send, rd, shutdown).await,
        WireRole::Subscriber => subscriber(shared, ord, send, rd, shutdown).await,
    }
}

/// Waits for the next frame, or `None` at the end of the stream or at shutdown.
async fn next_or_shutdown(
    rd: &mut FrameReader,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<Frame>, End> {
    if *shutdown.borrow() {
        return Ok(None);
    }
    tokio::select! {
        f = rd.next() => Ok(f?),
        _ = shutdown.changed() => Ok(None),
    }
}

async fn publisher(
    shared: &Arc<Shared>,
    ord: EntityOrd,
    send: &mut quinn::SendStream,
    rd: &mut FrameReader,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), End> {
    let mut buf: Vec<u8> = Vec::new();
    while let Some(f) = next_or_shutdown(rd, &mut shutdown).await? {
        match f {
            Frame::PushSnapshot {
                set_version,
                total_len,
                position,
                data,
            } => {
                if position == 0 {
                    if total_len > MAX_SNAPSHOT {
                        return Err(End::Error(
                            ErrorCode::TOO_LARGE,
                            format!("snapshot of {total_len} bytes is over the limit"),
                        ));
                    }
                    // Grown as chunks arrive: an announced length is a claim, not bytes.
                    buf = Vec::with_capacity((total_len as usize).min(4 * SNAPSHOT_CHUNK));
                }
                if position != buf.len() as u64 || buf.len() as u64 + data.len() as u64 > total_len
                {
                    return Err(End::Error(
                        ErrorCode::PROTOCOL,
                        "snapshot chunk out of order".into(),
                    ));
                }
                buf.extend_from_slice(&data);
                if buf.len() as u64 == total_len {
                    let bytes = std::mem::take(&mut buf);
                    let s = shared.clone();
                    let reply =
                        tokio::task::spawn_blocking(move || s.install(ord, &bytes, set_version))
                            .await
                            .map_err(|e| End::Error(ErrorCode::INTERNAL, e.to_string()))?;
                    wire::send(send, &reply).await?;
                }
            }
            Frame::Close => break,
            other => return Err(protocol("from a publisher", &other)),
        }
    }
    Ok(())
}

async fn partner(
    shared: &Arc<Shared>,
    ord: EntityOrd,
    send: &mut quinn::SendStream,
    rd: &mut FrameReader,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), End> {
    while let Some(f) = next_or_shutdown(rd, &mut shutdown).await? {
        match f {
            Frame::PullSnapshot { have_version: _ } => {
                let Some(index) = shared.index.load_full() else {
                    return Err(End::Error(
                        ErrorCode::INTERNAL,
                        "the hub has no snapshot yet".into(),
                    ));
                };
                let set_version = index.header().set_version;
                // One cut per entity and snapshot: pulling again costs no rebuild.
                let cached = lock(&shared.cuts)
                    .get(&ord)
                    .filter(|(v, _)| *v == set_version)
                    .map(|(_, b)| b.clone());
                let bytes = match cached {
                    Some(b) => b,
                    None => {
                        let s = shared.clone();
                        let built = tokio::task::spawn_blocking(move || {
                            route::cut::cut_for(&s.router, ord, &index)
                                .map(|c| c.to_snapshot(s.sign_key.as_ref()))
                        })
                        .await
                        .map_err(|e| End::Error(ErrorCode::INTERNAL, e.to_string()))?
                        .map_err(|e| {
                            End::Error(ErrorCode::INTERNAL, format!("clearance cut: {e}"))
                        })?;
                        let b = Arc::new(built);
                        lock(&shared.cuts).insert(ord, (set_version, b.clone()));
                        b
                    }
                };
                let total_len = bytes.len() as u64;
                let mut position = 0usize;
                loop {
                    let end = (position + SNAPSHOT_CHUNK).min(bytes.len());
                    wire::send(
                        send,
                        &Frame::PushSnapshot {
                            set_version,
                            total_len,
                            position: position as u64,
                            data: bytes[position..end].to_vec(),
                        },
                    )
                    .await?;
                    position = end;
                    if position >= bytes.len() {
                        break;
                    }
                }
            }
            Frame::TelemetryBatch {
                batch_id,
                arrow_ipc,
            } => {
                let s = shared.clone();
                let result = tokio::task::spawn_blocking(move || s.match_batch(ord, &arrow_ipc))
                    .await
                    .map_err(|e| End::Error(ErrorCode::INTERNAL, e.to_string()))?;
                match result {
                    Ok(hits) => {
                        wire::send(
                            send,
                            &Frame::Hits {
                                batch_id,
                                arrow_ipc: hits,
                            },
                        )
                        .await?
                    }
                    Err(BatchFailure::Bad(m)) => return Err(End::Error(ErrorCode::PROTOCOL, m)),
                    Err(BatchFailure::Internal(m)) => {
                        return Err(End::Error(ErrorCode::INTERNAL, m));
                    }
                }
            }
            Frame::Close => break,
            other => return Err(protocol("from a partner", &other)),
        }
    }
    Ok(())
}

/// What the core tells one subscriber's connection task.
#[derive(Default)]
struct SessionSignal {
    wake: Notify,
    /// A newer session of the same entity took over.
    replaced: std::sync::atomic::AtomicBool,
}

async fn subscriber(
    shared: &Arc<Shared>,
    ord: EntityOrd,
    send: &mut quinn::SendStream,
    rd: &mut FrameReader,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), End> {
    let from = match next_or_shutdown(rd, &mut shutdown).await? {
        Some(Frame::Subscribe { from }) => from,
        Some(f) => return Err(protocol("from a subscriber", &f)),
        None => return Ok(()),
    };
    let signal = Arc::new(SessionSignal::default());
    let session = {
        let mut hub = lock(&shared.hub);
        let sid = hub
            .connect(shared.router.number(ord), from, now_ms())
            .map_err(|e| End::Error(ErrorCode::INTERNAL, e.to_string()))?;
        lock(&shared.sessions).insert(sid, signal.clone());
        sid
    };
    shared.pump();
    let id = shared.router.registry().entity(ord).id.as_str();
    if let Some(m) = &shared.metrics {
        m.connected(id, jiff::Timestamp::now());
    }
    let result = deliver(shared, id, session, &signal, send, rd, &mut shutdown).await;
    if let Some(m) = &shared.metrics {
        m.disconnected(id, jiff::Timestamp::now());
    }
    lock(&shared.sessions).remove(&session);
    if !signal.replaced.load(Ordering::Relaxed) {
        let _ = lock(&shared.hub).disconnect(session);
    }
    shared.pump();
    result
}

async fn deliver(
    shared: &Arc<Shared>,
    entity: &str,
    session: SessionId,
    signal: &SessionSignal,
    send: &mut quinn::SendStream,
    rd: &mut FrameReader,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), End> {
    let internal = |e: core::HubError| End::Error(ErrorCode::INTERNAL, e.to_string());
    let mut frames = Vec::new();
    // Sent and not yet acknowledged, for the metrics: (offset, created_at_ms), ascending.
    let mut unacked: std::collections::VecDeque<(u64, u64)> = Default::default();
    loop {
        if signal.replaced.load(Ordering::Relaxed) {
            return Err(End::Error(
                ErrorCode::REPLACED,
                "another connection subscribed for this entity".into(),
            ));
        }
        // Everything the core has for this session now, in one write.
        {
            let mut hub = lock(&shared.hub);
            let now = now_ms();
            while frames.len() < 256 {
                match hub.poll_transmit(session, now).map_err(internal)? {
                    Some(f) => frames.push(f),
                    None => break,
                }
            }
        }
        if !frames.is_empty() {
            let n = frames
                .iter()
                .filter(|f| matches!(f, Frame::Notification { .. }))
                .count();
            shared
                .stats
                .notifications_sent
                .fetch_add(n as u64, Ordering::Relaxed);
            if shared.metrics.is_some() {
                for f in &frames {
                    if let Frame::Notification {
                        offset,
                        notification,
                    } = f
                        && unacked.back().is_none_or(|&(last, _)| *offset > last)
                    {
                        unacked.push_back((*offset, notification.created_at_ms));
                    }
                }
            }
            wire::send_all(send, &frames).await?;
            let full = frames.len() == 256;
            frames.clear();
            // No timer wake-up here: the ack deadline this send may have started is picked
            // up by the timer loop within TIMER_MAX_WAIT (a wake-up per send made the loop
            // scan every session's deadline ~20,000 times a second with 7,000 subscribers).
            if full {
                continue;
            }
        }
        tokio::select! {
            f = rd.next() => match f? {
                Some(Frame::Ack { offset }) => {
                    let r = lock(&shared.hub).handle_ack(session, offset, now_ms());
                    match r {
                        Ok(()) => {}
                        Err(e @ core::HubError::AckBeyondSent { .. }) => {
                            return Err(End::Error(ErrorCode::PROTOCOL, e.to_string()));
                        }
                        Err(e) => return Err(internal(e)),
                    }
                    shared.pump();
                    if let Some(m) = &shared.metrics {
                        let now = now_ms();
                        while let Some(&(o, created)) = unacked.front()
                            && o <= offset
                        {
                            m.delivered(entity, Duration::from_millis(now.saturating_sub(created)));
                            unacked.pop_front();
                        }
                        m.backlog(entity, unacked.len() as u64);
                        m.seen(entity, jiff::Timestamp::now());
                    }
                }
                Some(Frame::Close) | None => return Ok(()),
                Some(f) => return Err(protocol("from a subscriber", &f)),
            },
            _ = signal.wake.notified() => {}
            _ = shutdown.changed() => return Ok(()),
        }
    }
}

/// The timer loop looks at the core's deadlines at least this often, so that sessions need
/// not wake it for each send: an ack timeout fires at most this late.
const TIMER_MAX_WAIT: Duration = Duration::from_millis(250);

/// Runs the core's timers: ack timeouts (re-sends), saving acked offsets, retention.
async fn timer_loop(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut next_sightings = now_ms() + shared.limits.sightings_interval.as_millis() as u64;
    loop {
        if now_ms() >= next_sightings {
            next_sightings = now_ms() + shared.limits.sightings_interval.as_millis() as u64;
            let s = shared.clone();
            let _ = tokio::task::spawn_blocking(move || s.flush_sightings()).await;
        }
        let deadline = lock(&shared.hub).poll_timeout();
        let wait = deadline
            .map_or(TIMER_MAX_WAIT, |d| {
                Duration::from_millis(d.saturating_sub(now_ms()))
            })
            .min(TIMER_MAX_WAIT);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {
                let r = lock(&shared.hub).handle_timeout(now_ms());
                if let Err(e) = r {
                    tracing::error!("hub timers: {e}");
                }
                shared.pump();
            }
            _ = shared.timer.notified() => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// The registry's entities as the metrics know them.
fn registry_entities(reg: &Registry) -> Vec<EntityInfo> {
    reg.iter()
        .map(|(_, e)| {
            EntityInfo::new(
                e.id.clone(),
                e.roles.iter().map(Role::name),
                e.sector.as_deref(),
            )
        })
        .collect()
}

/// What a telemetry input is, for the metrics: its name up to the first `-`, `_` or `.`
/// (`zeek-conn.ndjson` → `zeek`, `eve.json` → `eve`).
/// The metric label for a partner's input: its log type when the name says one we know
/// (`conn.log` → `conn`), else `other`. The name is the partner's to choose, so the label is
/// from a fixed set: a partner cannot grow the number of metric series.
fn telemetry_kind(input: &str) -> &'static str {
    const KNOWN: [&str; 18] = [
        "conn",
        "dns",
        "http",
        "ssl",
        "x509",
        "files",
        "smtp",
        "notice",
        "weird",
        "zeek",
        "eve",
        "suricata",
        "ecs",
        "ocsf",
        "proxy",
        "netflow",
        "firewall",
        "telemetry",
    ];
    let name = input.rsplit(['/', '\\']).next().unwrap_or(input);
    let first = name.split(['-', '_', '.']).next().unwrap_or("");
    KNOWN
        .iter()
        .find(|k| k.eq_ignore_ascii_case(first))
        .copied()
        .unwrap_or("other")
}

/// The core's settings from the configuration.
fn core_config(cfg: &HubConfig) -> (core::HubConfig, core::FileStoreConfig) {
    let l = &cfg.limits;
    let mut c = core::HubConfig::default();
    let mut store = core::FileStoreConfig::new(cfg.data_dir.join("logs"));
    store.side_file = Some(cfg.audit_log.clone());
    store.numbering = cfg.data_dir.join(ENTITY_IDS_FILE);
    // The active segment is never deleted: keep segments well under the size cap.
    store.log.segment_bytes = (l.retention_bytes / 4).clamp(64 << 10, 64 << 20);
    c.queue_capacity = l.queue_size;
    c.max_in_flight = l
        .queue_size
        .min(c.max_in_flight.max(l.queue_size / 4))
        .max(1);
    c.retention = core::Retention {
        max_age_ms: Some(l.retention_age.as_millis() as u64),
        max_bytes: Some(l.retention_bytes),
    };
    (c, store)
}

enum BatchFailure {
    Bad(String),
    Internal(String),
}

impl Shared {
    /// Hands the sightings counted since the last call to the publisher that owns the
    /// snapshot, as one notification in its log (kept for the next call when there is no
    /// publisher, or the log cannot take it).
    fn flush_sightings(self: &Arc<Self>) {
        let Some(publisher) = *lock(&self.publisher) else {
            return;
        };
        let taken = lock(&self.sightings).take();
        if taken.is_empty() {
            return;
        }
        let now = now_ms();
        let n = route::sightings_notification(&taken, &self.router, publisher, now);
        let r = lock(&self.hub).publish_batch(std::slice::from_ref(&n), now);
        match r {
            Ok(_) => {
                tracing::info!(rows = taken.len(), "sightings sent to the publisher");
                self.background();
                self.pump();
                self.timer.notify_one();
            }
            Err(e) => {
                tracing::warn!("sightings kept for the next round: {e}");
                let mut back = SightingsAggregator::new();
                for s in &taken {
                    back.add_count(&s.indicator_id, s.partner, s.day, s.count);
                }
                lock(&self.sightings).merge(&back);
            }
        }
    }

    /// Runs the store's due slow work (the journal checkpoint, which `fsync`s the logs it
    /// covers) on a blocking thread, and hands the outcome back to the core.
    fn background(self: &Arc<Self>) {
        let Some(job) = lock(&self.hub).poll_background() else {
            return;
        };
        let s = self.clone();
        tokio::task::spawn_blocking(move || {
            let done = job();
            lock(&s.hub).handle_background(done);
        });
    }

    /// Hands the core's events to the connection tasks.
    fn pump(&self) {
        let mut hub = lock(&self.hub);
        let sessions = lock(&self.sessions);
        while let Some(ev) = hub.poll_event() {
            match ev {
                HubEvent::Wake(sid) => {
                    if let Some(s) = sessions.get(&sid) {
                        s.wake.notify_one();
                    }
                }
                HubEvent::Closed { session, .. } => {
                    if let Some(s) = sessions.get(&session) {
                        s.replaced.store(true, Ordering::Relaxed);
                        s.wake.notify_one();
                    }
                }
                HubEvent::DataLost { entity, lost } => {
                    tracing::warn!(
                        "retention deleted un-acked notifications {lost:?} of entity {}",
                        entity.0
                    );
                }
                HubEvent::AckedReset {
                    entity,
                    acked,
                    reason,
                } => {
                    tracing::warn!(
                        "entity {}: delivery restarts at {acked}: {reason}",
                        entity.0
                    );
                }
            }
        }
    }

    fn install(&self, owner: EntityOrd, bytes: &[u8], announced: u64) -> Frame {
        let _one = lock(&self.install);
        let reject = |reason: String| {
            self.stats
                .snapshots_rejected
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!("snapshot {announced} rejected: {reason}");
            Frame::SnapshotRejected {
                set_version: announced,
                reason,
            }
        };
        let index = match CompiledIndex::from_snapshot(bytes, Some(&self.verify_key)) {
            Ok(i) => i,
            Err(e) => return reject(e.to_string()),
        };
        let v = index.header().set_version;
        if let Some(cur) = self.index.load_full()
            && cur.header().set_version >= v
        {
            return reject(format!(
                "set version {v} is not newer than the one in use ({cur}); compile it again with \
                 `--set-version N` above {cur} (or leave the option out: the version then \
                 follows the creation time)",
                cur = cur.header().set_version
            ));
        }
        let path = self.data_dir.join(SNAPSHOT_FILE);
        let written = crate::outfile::replace(&path, bytes, true);
        let owner_id = &self.router.registry().entity(owner).id;
        let written = written.and_then(|()| {
            crate::outfile::replace(
                &self.data_dir.join(SNAPSHOT_OWNER_FILE),
                owner_id.as_bytes(),
                true,
            )
        });
        if let Err(e) = written {
            return reject(format!("the hub could not store it: {e}"));
        }
        *lock(&self.publisher) = Some(owner);
        if let Some(m) = &self.metrics {
            m.snapshot(SnapshotInfo::from_index(&index));
        }
        self.index.store(Some(Arc::new(index)));
        self.stats
            .snapshots_accepted
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!("snapshot {v} in use");
        Frame::SnapshotAccepted { set_version: v }
    }

    /// Matches one telemetry batch of `partner`, routes and logs the notifications (durably),
    /// and returns the hits the partner may see, as Arrow IPC.
    fn match_batch(
        self: &Arc<Self>,
        partner: EntityOrd,
        ipc: &[u8],
    ) -> Result<Vec<u8>, BatchFailure> {
        // A batch sent again after a lost connection, whose notifications are durable
        // already: the same answer, nothing matched or logged twice.
        // Under another snapshot the batch is matched again: its answer may differ.
        let digest = route::batch::batch_digest(ipc);
        let version = self
            .index
            .load()
            .as_ref()
            .map_or(0, |i| i.header().set_version);
        let key = digest ^ u128::from(version) << 64;
        if let Some(answer) = lock(&self.answered).get(partner, key) {
            return Ok(answer);
        }
        let answer = self.match_new_batch(partner, ipc, digest)?;
        lock(&self.answered).put(partner, key, &answer);
        Ok(answer)
    }

    fn match_new_batch(
        self: &Arc<Self>,
        partner: EntityOrd,
        ipc: &[u8],
        digest: u128,
    ) -> Result<Vec<u8>, BatchFailure> {
        let t = batch::decode_telemetry(ipc, self.limits.max_batch_bytes)
            .map_err(|e| BatchFailure::Bad(e.to_string()))?;
        let Some(index) = self.index.load_full() else {
            return Err(BatchFailure::Internal("the hub has no snapshot yet".into()));
        };
        let now = jiff::Timestamp::now();
        let matcher = Matcher::new(&index, &t.fields, now.as_second());
        let mut hits = Vec::new();
        matcher.match_record_batch(&t.batch, t.first_row, &mut hits);
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats
            .rows
            .fetch_add(t.batch.num_rows() as u64, Ordering::Relaxed);
        self.stats
            .hits
            .fetch_add(hits.len() as u64, Ordering::Relaxed);
        if let Some(m) = &self.metrics {
            let partner_id = self.router.registry().entity(partner).id.as_str();
            // A partner that streams is reachable: it hears its hits on this connection.
            m.seen(partner_id, now);
            m.rows(
                partner_id,
                telemetry_kind(&t.input),
                t.batch.num_rows() as u64,
                now,
            );
            let mut by_kind: std::collections::BTreeMap<crate::indicator::Kind, u64> =
                Default::default();
            for h in &hits {
                *by_kind.entry(index.meta().kind(h.ord)).or_default() += 1;
            }
            for (k, n) in by_kind {
                m.hits(partner_id, k, n, now);
            }
        }
        let reg = self.router.registry();
        let matched = MatchedBatch {
            index: &index,
            fields: &t.fields,
            batch: &t.batch,
            first_row: t.first_row,
            input: &t.input,
            hits: &hits,
            digest,
        };
        let parties = BatchParties {
            partner,
            publisher: *lock(&self.publisher),
        };
        let first_hit = self
            .next_hit
            .fetch_add(hits.len() as u64, Ordering::Relaxed);
        let routed = route_batch(&self.router, &matched, parties, first_hit, now);
        // The record of a disclosure is durable before the disclosure is: the lines written
        // here travel in the journal append of the batch's notifications (below), which the
        // hub replays into the audit log after a crash.
        let audit_at = if routed.audit.is_empty() {
            None
        } else {
            let mut f = lock(&self.audit);
            let at = std::io::Seek::seek(&mut *f, std::io::SeekFrom::End(0))
                .and_then(|at| f.write_all(&routed.audit).map(|()| at))
                .map_err(|e| BatchFailure::Internal(format!("audit log: {e}")))?;
            Some(at)
        };
        lock(&self.sightings).merge(&routed.sightings);
        if let Some(m) = &self.metrics
            && !hits.is_empty()
        {
            m.sightings(&reg.entity(partner).id, hits.len() as u64);
        }
        let (decisions_logged, logged): (Vec<EntityOrd>, Vec<Notification>) = routed
            .notifications
            .into_iter()
            .map(|n| (n.recipient, n.notification))
            .unzip();
        // The partner's daily quota of distinct indicators it may learn of.
        let partner_id = &reg.entity(partner).id;
        let quota = lock(&self.quota).filter(partner, partner_id, routed.back_to_partner, now);
        if quota.first_refusal {
            let msg = format!(
                "partner {partner_id} is over its daily quota of {} distinct indicators; its further hits are withheld",
                self.limits.max_indicators_per_partner_day
            );
            tracing::warn!("{msg}");
            if let Some(m) = &self.metrics {
                m.error(now, &msg);
            }
        }
        if !quota.audit.is_empty() {
            lock(&self.audit)
                .write_all(&quota.audit)
                .map_err(|e| BatchFailure::Internal(format!("audit log: {e}")))?;
        }
        let back = quota.admitted;
        if !logged.is_empty() {
            // Durable (one fsync per entity) before the partner hears the batch is done.
            let side = audit_at.map(|at| (at, routed.audit.as_slice()));
            let published = lock(&self.hub).publish_batch_with(&logged, now_ms(), side);
            published.map_err(|e| BatchFailure::Internal(format!("notification log: {e}")))?;
            self.stats
                .notifications_logged
                .fetch_add(logged.len() as u64, Ordering::Relaxed);
            if let Some(m) = &self.metrics {
                let mut per_entity: HashMap<EntityOrd, u64> = HashMap::new();
                for d in decisions_logged.iter() {
                    *per_entity.entry(*d).or_default() += 1;
                }
                for (ord, n) in per_entity {
                    m.queued(&reg.entity(ord).id, n);
                }
            }
            self.background();
            self.pump();
            self.timer.notify_one();
        }
        batch::encode_hits(&back).map_err(|e| BatchFailure::Internal(e.to_string()))
    }
}
