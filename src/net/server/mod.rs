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
//!
//! This is the shell: it reads frames, calls the cores and writes frames. Here: start-up,
//! the accept loop, the timer task and the hand-off of the hub core's events and background
//! work; `session`: identity, roles and the three session kinds; `matching`: a telemetry
//! batch decoded, matched, routed ([`route_batch`]), stored, answered; `snapshot`: a pushed
//! snapshot checked and swapped in. Routing, notifications, delivery state and storage are
//! the cores' (`route`, `hub`), never decided here.

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

#[cfg(feature = "cluster")]
mod cluster;
mod matching;
mod retro;
mod session;
mod snapshot;
mod store;

use matching::{BatchFailure, RecentAnswers};
use session::{SessionSignal, connection};
use store::HubStore;

/// Directory of the deltas applied to the snapshot in the data directory, one
/// `set-v<V>.cwndelta` each.
pub const DELTA_DIR: &str = "snapshot.deltas";

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
    hub: Mutex<core::Hub<HubStore>>,
    /// Held from the start of a batch's append to its delivery, around the wait for the disk
    /// that runs without [`hub`](Self::hub)'s lock: appends go one at a time.
    appending: Mutex<()>,
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
    /// The hub's chain: the snapshot in use before any delta, then the state after each delta
    /// applied since (the last is [`index`](Self::index)); what `cwn pull --since` cuts.
    states: Mutex<Vec<Arc<CompiledIndex>>>,
    /// Partner batches kept for retro-hunts (`[retro]`).
    retro: Option<Arc<retro::RetroStore>>,
    /// Hands batches to the retro store's writer thread.
    retro_tx: Option<Mutex<std::sync::mpsc::SyncSender<retro::ToKeep>>>,
    /// Each partner's cut chain of [`states`](Self::states), grown as it pulls.
    chains: Mutex<HashMap<EntityOrd, Arc<Mutex<Option<route::cut::CutChain>>>>>,
    limits: Limits,
    data_dir: PathBuf,
    next_hit: AtomicU64,
    stats: Arc<Stats>,
    /// The status page's figures, when the hub runs with one.
    metrics: Option<Arc<Metrics>>,
    /// Serialises snapshot installs so that versions only go up.
    install: Mutex<()>,
    /// On a cluster: the snapshot all edges use.
    #[cfg(feature = "cluster")]
    shared_snapshot: Option<Arc<cluster::SharedSnapshot>>,
    /// On a cluster: the store the hub holds, to append to outside the hub's lock.
    #[cfg(feature = "cluster")]
    cluster_store: Option<crate::hub::store::jetstream::JetStreamStore>,
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

/// `index`, then the state after each stored delta of `dir` applied in version order: each
/// that follows the state before it (a delta left over from an older snapshot, or after a
/// gap, is skipped and logged).
fn apply_stored_deltas(
    index: CompiledIndex,
    dir: &Path,
    vk: &VerifyingKey,
) -> Vec<Arc<CompiledIndex>> {
    let mut states = vec![Arc::new(index)];
    let mut files: Vec<(u64, std::path::PathBuf)> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let v = name
                .to_str()?
                .strip_prefix("set-v")?
                .strip_suffix(".cwndelta")?
                .parse()
                .ok()?;
            Some((v, e.path()))
        })
        .collect();
    files.sort();
    for (v, path) in files {
        let index = states.last().expect("never empty");
        if v <= index.header().set_version {
            continue;
        }
        let applied =
            crate::index::delta::Delta::read(&path, Some(vk)).and_then(|d| index.apply(&d));
        match applied {
            Ok(next) => states.push(Arc::new(next)),
            Err(e) => tracing::warn!("{}: not applied: {e}", path.display()),
        }
    }
    states
}

/// The snapshot a hub with `cfg` starts from: the newer of the configured one and the last
/// one pushed (`true`: the pushed one).
fn newest_snapshot(
    cfg: &HubConfig,
    vk: &VerifyingKey,
) -> Result<Option<(CompiledIndex, bool)>, ServeError> {
    let pushed = cfg.data_dir.join(SNAPSHOT_FILE);
    let mut newest: Option<(CompiledIndex, bool)> = None;
    for p in cfg.snapshot.path.iter().chain(Some(&pushed)) {
        if !p.exists() {
            continue;
        }
        let i = read_snapshot(p, vk)?;
        if newest
            .as_ref()
            .is_none_or(|(cur, _)| i.header().set_version > cur.header().set_version)
        {
            newest = Some((i, *p == pushed));
        }
    }
    Ok(newest)
}

/// The indicator set a hub with `cfg` holds at rest: its newest snapshot with the deltas it
/// stored applied (what it serves once started), or `None` before any snapshot.
///
/// # Errors
/// The verify key or a snapshot cannot be read or is refused.
pub fn stored_index(cfg: &HubConfig) -> Result<Option<Arc<CompiledIndex>>, ServeError> {
    let vk = keys::read_verify(&cfg.snapshot.verify_key)
        .map_err(|e| file_err(&cfg.snapshot.verify_key, e))?;
    Ok(newest_snapshot(cfg, &vk)?
        .and_then(|(i, _)| apply_stored_deltas(i, &cfg.data_dir.join(DELTA_DIR), &vk).pop()))
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
        // The snapshot's owner: the publisher that pushed it, as recorded beside it; for a
        // snapshot the operator configured, the registry's publisher when there is one only.
        let only_publisher = match publishers.as_slice() {
            [one] => Some(*one),
            _ => None,
        };
        let newest = newest_snapshot(cfg, &verify_key)?;
        let publisher = match &newest {
            Some((_, true)) => fs::read_to_string(cfg.data_dir.join(SNAPSHOT_OWNER_FILE))
                .ok()
                .and_then(|id| router.registry().by_id(id.trim()))
                .filter(|o| publishers.contains(o))
                .or(only_publisher),
            _ => only_publisher,
        };
        let states = newest.map_or_else(Vec::new, |(i, _)| {
            apply_stored_deltas(i, &cfg.data_dir.join(DELTA_DIR), &verify_key)
        });
        let index = states.last().cloned();
        if index.is_some() && publisher.is_none() {
            tracing::warn!(
                "no publisher owns the snapshot in use (several in the registry, none recorded \
                 as its pusher): its internal cases are only audited until a publisher pushes"
            );
        }
        let (core_cfg, store_cfg) = core_config(cfg);
        let store = open_store(cfg, store_cfg)?;
        let mut hub = core::Hub::with_store(store, core_cfg, now_ms())
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
        #[cfg(feature = "cluster")]
        let feed =
            store::live_feed(hub.store()).map_err(|e| file_err(Path::new("[cluster]"), e))?;
        #[cfg(feature = "cluster")]
        let cluster_store = match hub.store() {
            HubStore::Cluster(s) => Some((**s).clone()),
            HubStore::File(_) => None,
        };
        #[cfg(feature = "cluster")]
        let shared_snapshot = match &cfg.cluster {
            Some(c) => Some(Arc::new(
                cluster::SharedSnapshot::open(&jetstream_config(c), MAX_SNAPSHOT)
                    .await
                    .map_err(|e| file_err(Path::new("[cluster]"), e))?,
            )),
            None => None,
        };
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
        let retro = cfg
            .retro
            .clone()
            .map(|r| retro::RetroStore::open(&cfg.data_dir, r).map(Arc::new))
            .transpose()
            .map_err(|e| file_err(&cfg.data_dir.join(retro::RETRO_DIR), e))?;
        let retro_tx = match &retro {
            Some(store) => {
                let (tx, rx) = std::sync::mpsc::sync_channel::<retro::ToKeep>(64);
                let store = store.clone();
                std::thread::Builder::new()
                    .name("cwn-retro-store".into())
                    .spawn(move || {
                        for k in rx {
                            if let Err(e) = store.keep(&k) {
                                tracing::error!("retro-hunt store: {e}");
                            }
                        }
                    })
                    .map_err(|e| file_err(&cfg.data_dir, e))?;
                Some(Mutex::new(tx))
            }
            None => None,
        };
        let shared = Arc::new(Shared {
            retro,
            retro_tx,
            router,
            publisher: Mutex::new(publisher),
            sightings: Mutex::new(SightingsAggregator::new()),
            per_entity: Mutex::new(HashMap::new()),
            answered: Mutex::new(RecentAnswers::default()),
            cuts: Mutex::new(HashMap::new()),
            states: Mutex::new(states),
            chains: Mutex::new(HashMap::new()),
            quota: Mutex::new(route::DailyQuota::new(
                cfg.limits.max_indicators_per_partner_day,
            )),
            index: ArcSwapOption::new(index),
            verify_key,
            sign_key,
            hub: Mutex::new(hub),
            appending: Mutex::new(()),
            sessions: Mutex::new(HashMap::new()),
            timer: Notify::new(),
            audit: Mutex::new(audit),
            limits: cfg.limits.clone(),
            data_dir: cfg.data_dir.clone(),
            next_hit: AtomicU64::new(now_ms() << 16),
            stats: stats.clone(),
            metrics,
            install: Mutex::new(()),
            #[cfg(feature = "cluster")]
            shared_snapshot,
            #[cfg(feature = "cluster")]
            cluster_store,
        });
        let (tx, rx) = watch::channel(false);
        // The cluster's snapshot when it is newer than this edge's, before the first client;
        // then every change of it, whichever edge it was pushed to.
        #[cfg(feature = "cluster")]
        if let Some(snap) = shared.shared_snapshot.clone() {
            let current = snap
                .current()
                .await
                .map_err(|e| file_err(Path::new("[cluster]"), e))?;
            if let Some(c) = current {
                let (s, snap) = (shared.clone(), snap.clone());
                let _ = tokio::task::spawn_blocking(move || s.adopt(&snap, &c)).await;
            }
            let (s, stop) = (shared.clone(), rx.clone());
            tokio::spawn(async move {
                let on_current = |c: cluster::Current| {
                    let (s, snap) = (s.clone(), snap.clone());
                    tokio::task::spawn_blocking(move || s.adopt(&snap, &c));
                };
                snap.watch(on_current, stop).await;
            });
        }
        tokio::spawn(timer_loop(shared.clone(), rx.clone()));
        #[cfg(feature = "cluster")]
        if let Some(feed) = feed {
            tokio::spawn(feed_loop(shared.clone(), feed, rx.clone()));
        }
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

/// A snapshot version and the clearance cut of it that one partner pulled.
type Cut = (u64, Arc<Vec<u8>>);

#[cfg(feature = "cluster")]
/// Hands what the cluster's stream took — other edges' notifications among them — to the
/// core, so that this edge's subscribers hear them live (`Hub::handle_stored`).
async fn feed_loop(
    shared: Arc<Shared>,
    mut feed: store::Feed,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut items = Vec::new();
    loop {
        tokio::select! {
            n = feed.recv_many(&mut items, 256) => {
                if n == 0 {
                    return;
                }
                {
                    let mut hub = lock(&shared.hub);
                    for i in items.drain(..) {
                        if let Err(e) = hub.handle_stored(i.offset, i.appended_ms, &i.notification) {
                            tracing::warn!("cluster feed: {e}");
                        }
                    }
                }
                shared.pump();
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// The timer loop looks at the core's deadlines at least this often, so that sessions need
/// not wake it for each send: an ack timeout fires at most this late.
const TIMER_MAX_WAIT: Duration = Duration::from_millis(250);

/// Runs the core's timers: ack timeouts (re-sends), saving acked offsets, retention.
async fn timer_loop(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut next_sightings = now_ms() + shared.limits.sightings_interval.as_millis() as u64;
    let mut next_usage = 0;
    loop {
        // The logs' size for the status page and /metrics, once a second.
        if now_ms() >= next_usage {
            next_usage = now_ms() + 1000;
            if let Some(m) = &shared.metrics {
                let bytes = core::Store::size_bytes(lock(&shared.hub).store());
                m.log_bytes(bytes);
            }
        }
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

/// The store `cfg` names: the file store in `data_dir/logs`, or JetStream for `[cluster]`.
fn open_store(cfg: &HubConfig, file: core::FileStoreConfig) -> Result<HubStore, ServeError> {
    let Some(c) = &cfg.cluster else {
        return core::FileStore::open(file)
            .map(|s| HubStore::File(Box::new(s)))
            .map_err(|e| file_err(&cfg.data_dir, e));
    };
    #[cfg(feature = "cluster")]
    {
        crate::hub::store::jetstream::JetStreamStore::open(jetstream_config(c))
            .map(|s| HubStore::Cluster(Box::new(s)))
            .map_err(|e| file_err(Path::new("[cluster]"), e))
    }
    #[cfg(not(feature = "cluster"))]
    {
        Err(file_err(
            Path::new("[cluster]"),
            format!(
                "this cwn was built without the `cluster` feature; it cannot use NATS at {}",
                c.nats.join(",")
            ),
        ))
    }
}

/// The cluster's names and servers as the store and the shared snapshot take them.
#[cfg(feature = "cluster")]
fn jetstream_config(
    c: &super::config::ClusterConfig,
) -> crate::hub::store::jetstream::JetStreamConfig {
    let mut j = crate::hub::store::jetstream::JetStreamConfig::new(c.nats.clone());
    j.replicas = c.replicas;
    j.stream = c.stream.clone();
    j.subject_prefix = c.subject_prefix.clone();
    j.acked_bucket = c.acked_bucket.clone();
    j.entities_bucket = c.entities_bucket.clone();
    j.credentials = c.credentials.clone();
    j.tls_ca = c.tls_ca.clone();
    j.tls_client = c.tls_client.clone();
    j
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
        // Into the publisher's log like any notification: on a cluster, the replicated
        // stream (each edge sends its own aggregate; the counts add up at the publisher).
        let r = self.publish(std::slice::from_ref(&n), None);
        match r {
            Ok(_) => {
                tracing::info!(rows = taken.len(), "sightings sent to the publisher");
                // And into the ledger `cwn sightings export` reads. The publisher's log has
                // them already: a failure here loses the export's copy only.
                if let Err(e) =
                    crate::sightings::append(&self.data_dir, &taken, self.router.registry(), now)
                {
                    tracing::error!("sightings ledger: {e}; these rows are not in exports");
                    if let Some(m) = &self.metrics {
                        m.error(jiff::Timestamp::now(), &format!("sightings ledger: {e}"));
                    }
                }
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
}
