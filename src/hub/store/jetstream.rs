//! The hub's store on NATS JetStream (feature `cluster`): every edge of one hub shares it, and
//! JetStream replicates it (`replicas`, 3 in production), so no single machine holds the only
//! copy of a notification.
//!
//! - **Notifications**: one stream (`CWN_N`), one subject per entity (`cwn.n.<number>`). Each
//!   record carries its per-entity offset in the `Cwn-Offset` header and the notification id as
//!   `Nats-Msg-Id`, so a resend inside the duplicate window is dropped by the server (and
//!   answered with the original's sequence). Appends to one entity carry
//!   `Nats-Expected-Last-Subject-Sequence`: two edges appending to the same entity at once
//!   cannot interleave offsets; the loser re-reads the subject's end and tries again.
//! - **Audit log**: the disclosure audit lines of each batch (the `side` of an append) on
//!   their own stream (`<stream>_AUDIT`, subject `<prefix>-audit`), acknowledged before the
//!   batch's notifications are appended, so that no disclosure is sent unrecorded.
//! - **Acked offsets**: KV bucket `CWN_ACKED`, key = entity number.
//! - **Numbering**: KV bucket `CWN_ENTITIES`, one create-only key per registry id (hex), so two
//!   edges numbering at once cannot give one number twice or one id two numbers.
//!
//! Durability is the quorum's: a publish is acknowledged once a majority of the replicas
//! hold it (the servers' own `fsync` runs on their `sync_interval`).
//!
//! The [`Store`] trait is synchronous; this store runs its NATS client on a runtime of its
//! own and waits for it, so it may be called from any thread, async or not.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::ops::Range;
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use bytes::Bytes;
use futures_util::TryStreamExt as _;

use super::{Background, Group, LogError, Record, Retention, RetentionOutcome, Side, Store};
use crate::hub::EntityId;

/// The header that carries a record's per-entity offset.
pub const OFFSET_HEADER: &str = "Cwn-Offset";
/// The header that carries the time a record was appended, Unix milliseconds.
pub const TIME_HEADER: &str = "Cwn-Time";

/// Where the store lives in the cluster.
#[derive(Clone, Debug)]
pub struct JetStreamConfig {
    /// NATS server URLs (`nats://host:port`); the client fails over between them.
    pub urls: Vec<String>,
    /// The notification stream.
    pub stream: String,
    /// Subjects are `<prefix>.<entity number>`.
    pub subject_prefix: String,
    /// KV bucket of acked offsets.
    pub acked_bucket: String,
    /// KV bucket of entity numbers.
    pub entities_bucket: String,
    /// Replicas of the stream and buckets (1 for a single server, 3 in production).
    pub replicas: usize,
    /// Largest record accepted.
    pub max_record_bytes: usize,
    /// How long one request to the cluster may take.
    pub timeout: Duration,
    /// How long a publish waits for the stream's acknowledgement before it is sent again.
    pub ack_wait: Duration,
    /// How long an append keeps trying (a leader election takes seconds) before it fails.
    pub append_for: Duration,
    /// A NATS credentials file (JWT and NKey seed) to authenticate with.
    pub credentials: Option<std::path::PathBuf>,
    /// CA certificate (PEM) for the servers' TLS certificates; given, TLS is required.
    pub tls_ca: Option<std::path::PathBuf>,
    /// Client certificate and key (PEM) for servers that verify clients.
    pub tls_client: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl JetStreamConfig {
    /// The default names (`CWN_N`, `cwn.n`, `CWN_ACKED`, `CWN_ENTITIES`) on the servers at
    /// `urls`, with three replicas, 1 MiB records, 10 s requests, 2 s waits for a publish's
    /// acknowledgement and 30 s of retries for an append.
    pub fn new(urls: Vec<String>) -> Self {
        JetStreamConfig {
            urls,
            stream: "CWN_N".into(),
            subject_prefix: "cwn.n".into(),
            acked_bucket: "CWN_ACKED".into(),
            entities_bucket: "CWN_ENTITIES".into(),
            replicas: 3,
            max_record_bytes: 1 << 20,
            timeout: Duration::from_secs(10),
            ack_wait: Duration::from_secs(2),
            append_for: Duration::from_secs(30),
            credentials: None,
            tls_ca: None,
            tls_client: None,
        }
    }
}

/// What this edge knows of one entity's subject.
#[derive(Clone, Debug, Default)]
struct SubjectLog {
    /// First offset held.
    start: u64,
    /// Offset the next record gets.
    next: u64,
    /// Stream sequence of the subject's last message (0: none).
    last_seq: u64,
    /// Known stream sequences by offset (every record this edge wrote or read).
    seqs: BTreeMap<u64, u64>,
}

/// The JetStream store. See the [module docs](self).
///
/// A clone is the same store (one connection, one view of the subjects): an edge appends
/// through one clone outside its hub's lock while the hub reads through another, so that a
/// slow append (a leader election) holds nothing the hub's sessions need.
#[derive(Clone)]
pub struct JetStreamStore(std::sync::Arc<Inner>);

struct Inner {
    rt: Option<tokio::runtime::Runtime>,
    cfg: JetStreamConfig,
    js: jetstream::Context,
    stream: stream::Stream,
    acked: kv::Store,
    numbers: kv::Store,
    /// What this edge knows of each entity's subject; locked only between round trips.
    logs: std::sync::Mutex<HashMap<EntityId, SubjectLog>>,
    /// The acked offset of each entity as the bucket holds it, as far as this edge knows.
    saved_acked: std::sync::Mutex<HashMap<EntityId, u64>>,
}

impl std::fmt::Debug for JetStreamStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamStore")
            .field("cfg", &self.0.cfg)
            .field("entities", &self.logs().len())
            .finish_non_exhaustive()
    }
}

fn cluster_err(what: &str, e: impl std::fmt::Display) -> LogError {
    LogError::Cluster(format!("{what}: {e}"))
}

fn offset_of(m: &jetstream::message::StreamMessage) -> Result<u64, LogError> {
    m.headers
        .get(OFFSET_HEADER)
        .and_then(|v| v.as_str().parse().ok())
        .ok_or_else(|| {
            cluster_err(
                "stream message",
                format!("sequence {} has no {OFFSET_HEADER} header", m.sequence),
            )
        })
}

fn not_found(e: &stream::DirectGetError) -> bool {
    matches!(e.kind(), stream::DirectGetErrorKind::NotFound)
}

impl JetStreamStore {
    /// Connects to the cluster and creates the stream and buckets where they do not exist.
    /// While the cluster cannot answer (electing a leader, a node restarting) it keeps trying
    /// for [`JetStreamConfig::append_for`].
    pub fn open(cfg: JetStreamConfig) -> Result<JetStreamStore, LogError> {
        let began = std::time::Instant::now();
        let mut wait = Duration::from_millis(100);
        loop {
            match Self::open_once(cfg.clone()) {
                Ok(s) => return Ok(s),
                Err(e) if began.elapsed() < cfg.append_for => {
                    tracing::warn!("opening the cluster store: {e}; trying again in {wait:?}");
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn open_once(cfg: JetStreamConfig) -> Result<JetStreamStore, LogError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("cwn-nats")
            .enable_all()
            .build()
            .map_err(|e| cluster_err("runtime", e))?;
        let c = cfg.clone();
        let opened = run_on(&rt, async move {
            let js = jetstream::new(connect(&c).await?);
            let st = js
                .get_or_create_stream(stream::Config {
                    name: c.stream.clone(),
                    subjects: vec![format!("{}.>", c.subject_prefix)],
                    num_replicas: c.replicas,
                    allow_direct: true,
                    duplicate_window: Duration::from_secs(120),
                    ..Default::default()
                })
                .await
                .map_err(|e| cluster_err(&c.stream, e))?;
            let audit = format!("{}_AUDIT", c.stream);
            js.get_or_create_stream(stream::Config {
                name: audit.clone(),
                subjects: vec![format!("{}-audit", c.subject_prefix)],
                num_replicas: c.replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| cluster_err(&audit, e))?;
            let bucket = |name: String| {
                let js = js.clone();
                let replicas = c.replicas;
                async move {
                    match js.get_key_value(&name).await {
                        Ok(s) => Ok(s),
                        Err(_) => js
                            .create_key_value(kv::Config {
                                bucket: name.clone(),
                                history: 1,
                                num_replicas: replicas,
                                ..Default::default()
                            })
                            .await
                            .map_err(|e| cluster_err(&name, e)),
                    }
                }
            };
            let acked = bucket(c.acked_bucket.clone()).await?;
            let numbers = bucket(c.entities_bucket.clone()).await?;
            Ok::<_, LogError>((js, st, acked, numbers))
        });
        let (js, stream, acked, numbers) = match opened {
            Ok(o) => o,
            Err(e) => {
                // Not dropped here: this may be an async caller's thread.
                rt.shutdown_background();
                return Err(e);
            }
        };
        let store = JetStreamStore(std::sync::Arc::new(Inner {
            rt: Some(rt),
            cfg,
            js,
            stream,
            acked,
            numbers,
            logs: Default::default(),
            saved_acked: Default::default(),
        }));
        for e in store.list_entities()? {
            store.refresh(e)?;
        }
        Ok(store)
    }

    /// What this edge knows of the subjects, locked (never across a round trip).
    fn logs(&self) -> std::sync::MutexGuard<'_, HashMap<EntityId, SubjectLog>> {
        self.0.logs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn run<T: Send + 'static>(&self, f: impl Future<Output = T> + Send + 'static) -> T {
        run_on(self.0.rt.as_ref().expect("runtime until dropped"), f)
    }

    fn subject(&self, e: EntityId) -> String {
        format!("{}.{}", self.0.cfg.subject_prefix, e.0)
    }

    fn list_entities(&self) -> Result<Vec<EntityId>, LogError> {
        let (s, name, filter) = (
            self.0.stream.clone(),
            self.0.cfg.stream.clone(),
            format!("{}.>", self.0.cfg.subject_prefix),
        );
        let prefix = format!("{}.", self.0.cfg.subject_prefix);
        let subjects = self.run(async move {
            let info = s
                .info_with_subjects(filter)
                .await
                .map_err(|e| cluster_err(&name, e))?;
            info.try_collect::<Vec<(String, usize)>>()
                .await
                .map_err(|e| cluster_err(&name, e))
        })?;
        let mut ids: Vec<EntityId> = subjects
            .iter()
            .filter_map(|(s, _)| s.strip_prefix(&prefix)?.parse().ok().map(EntityId))
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Reads the first and last message of the entity's subject and takes their offsets.
    fn refresh(&self, e: EntityId) -> Result<SubjectLog, LogError> {
        let (s, subject) = (self.0.stream.clone(), self.subject(e));
        let (first, last) = self.run(async move {
            let asked = direct(|| s.direct_get_first_for_subject(subject.clone())).await;
            let first = match asked.map_err(|e| cluster_err(&subject, e))? {
                Ok(m) => Some(m),
                Err(e) if not_found(&e) => None,
                Err(e) => return Err(cluster_err(&subject, e)),
            };
            let asked = direct(|| s.direct_get_last_for_subject(subject.clone())).await;
            let last = match asked.map_err(|e| cluster_err(&subject, e))? {
                Ok(m) => Some(m),
                Err(e) if not_found(&e) => None,
                Err(e) => return Err(cluster_err(&subject, e)),
            };
            Ok((first, last))
        })?;
        let mut logs = self.logs();
        let log = logs.entry(e).or_default();
        match (first, last) {
            (Some(f), Some(l)) => {
                let (fo, lo) = (offset_of(&f)?, offset_of(&l)?);
                log.start = fo;
                // Another clone may have appended since these were read: never go back.
                if lo + 1 >= log.next {
                    log.next = lo + 1;
                    log.last_seq = l.sequence;
                }
                log.seqs.insert(fo, f.sequence);
                log.seqs.insert(lo, l.sequence);
            }
            _ => {
                // Empty (or emptied by retention): the next offset is kept as known.
                log.start = log.next;
            }
        }
        Ok(log.clone())
    }

    /// Appends every group's records and returns the offsets each got. Groups go to the
    /// cluster at once (one round trip for a batch that hits many entities); one entity's
    /// records go one after another, each expecting the subject's last sequence this edge
    /// knows, so that two edges appending to one entity cannot give two records one offset.
    ///
    /// A record the server already holds (the same notification id within the duplicate
    /// window: a resend) keeps its first offset and takes none. On a sequence mismatch
    /// (another edge appended) the end is read again and the records not yet stored go after
    /// it. A publish that fails otherwise (no acknowledgement within
    /// [`JetStreamConfig::ack_wait`]: the stream is electing a new leader, or this client is
    /// moving to another server) is tried again with back-off for up to
    /// [`JetStreamConfig::append_for`]: the notification id makes a retry of a publish that
    /// did land a duplicate the server drops, so a retry never stores a record twice.
    fn append_groups(&self, groups: &[Group<'_>], now_ms: u64) -> Vec<Result<Vec<u64>, LogError>> {
        struct Todo {
            subject: String,
            ids: Vec<String>,
            offsets: Vec<u64>,
            stale: bool,
            error: Option<String>,
        }
        let mut todo: Vec<Todo> = groups
            .iter()
            .map(|g| Todo {
                subject: self.subject(g.entity),
                ids: g
                    .records
                    .iter()
                    .enumerate()
                    .map(|(k, r)| {
                        crate::hub::Notification::peek_id(r).map_or_else(
                            || format!("{}-{now_ms}-{k}", g.entity.0),
                            |id| format!("{:032x}", id.0),
                        )
                    })
                    .collect(),
                offsets: Vec::with_capacity(g.records.len()),
                stale: !self.logs().contains_key(&g.entity),
                error: None,
            })
            .collect();
        let began = std::time::Instant::now();
        let append_for = self.0.cfg.append_for;
        let mut backoff = Duration::from_millis(50);
        loop {
            // Refresh what a failure left unsure.
            let mut waiting = false;
            for (g, t) in groups.iter().zip(&mut todo) {
                if t.offsets.len() == g.records.len() || !t.stale {
                    continue;
                }
                match self.refresh(g.entity) {
                    Ok(_) => t.stale = false,
                    Err(e) => {
                        t.error = Some(e.to_string());
                        waiting = true;
                    }
                }
            }
            // Every unfinished group with a known end, all at once.
            let mut chains = Vec::new();
            for (i, (g, t)) in groups.iter().zip(&todo).enumerate() {
                if t.offsets.len() == g.records.len() || t.stale {
                    continue;
                }
                let log = &self.logs()[&g.entity];
                let records: Vec<(Bytes, String)> = g.records[t.offsets.len()..]
                    .iter()
                    .zip(&t.ids[t.offsets.len()..])
                    .map(|(r, id)| (Bytes::copy_from_slice(r), id.clone()))
                    .collect();
                chains.push((i, t.subject.clone(), records, log.next, log.last_seq));
            }
            let (js, st, ack_wait) = (
                self.0.js.clone(),
                self.0.stream.clone(),
                self.0.cfg.ack_wait,
            );
            let results = self.run(async move {
                let mut set = tokio::task::JoinSet::new();
                for (i, subject, records, next, last_seq) in chains {
                    let (js, st) = (js.clone(), st.clone());
                    set.spawn(async move {
                        let r = publish_chain(
                            &js, &st, &subject, records, now_ms, next, last_seq, ack_wait,
                        )
                        .await;
                        (i, r)
                    });
                }
                let mut out = Vec::new();
                while let Some(r) = set.join_next().await {
                    if let Ok(r) = r {
                        out.push(r);
                    }
                }
                out
            });
            let mut again = waiting;
            for (i, (done, failed)) in results {
                let mut logs = self.logs();
                let log = logs.get_mut(&groups[i].entity).expect("refreshed");
                let t = &mut todo[i];
                for &(offset, seq) in &done {
                    log.seqs.insert(offset, seq);
                    log.last_seq = log.last_seq.max(seq);
                    log.next = log.next.max(offset + 1);
                    t.offsets.push(offset);
                }
                if let Some(msg) = failed {
                    // Whatever failed, this edge's view of the subject's end may be wrong.
                    t.stale = true;
                    // Another edge appended: go on after the end it made, at once.
                    again |= !msg.contains("wrong last sequence");
                    t.error = Some(msg);
                }
            }
            let unfinished = groups
                .iter()
                .zip(&todo)
                .any(|(g, t)| t.offsets.len() < g.records.len());
            if !unfinished || began.elapsed() >= append_for {
                break;
            }
            if again {
                let first = todo.iter().find_map(|t| t.error.as_deref()).unwrap_or("");
                tracing::warn!("appending to the cluster: {first}; trying again in {backoff:?}");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_millis(250));
            }
        }
        groups
            .iter()
            .zip(todo)
            .map(|(g, t)| {
                if t.offsets.len() == g.records.len() {
                    Ok(t.offsets)
                } else {
                    Err(cluster_err(
                        &t.subject,
                        t.error.unwrap_or_else(|| "not stored".into()),
                    ))
                }
            })
            .collect()
    }
}

/// Publishes one entity's `records` in order, the first expecting `last_seq` as the subject's
/// last sequence and each next one the sequence the one before got; returns `(offset,
/// sequence)` of each stored (a duplicate: its first offset, from its header) and the error
/// that stopped the chain, if one did.
#[allow(clippy::too_many_arguments)]
async fn publish_chain(
    js: &jetstream::Context,
    st: &stream::Stream,
    subject: &str,
    records: Vec<(Bytes, String)>,
    now_ms: u64,
    mut next: u64,
    mut last_seq: u64,
    ack_wait: Duration,
) -> (Vec<(u64, u64)>, Option<String>) {
    let mut done: Vec<(u64, u64)> = Vec::new();
    for (payload, id) in records {
        // 0 too: "the subject holds nothing yet", so that two edges that both saw it empty
        // cannot both write offset 0.
        let publish = jetstream::message::PublishMessage::build()
            .payload(payload)
            .message_id(id)
            .header(OFFSET_HEADER, next.to_string().as_str())
            .header(TIME_HEADER, now_ms.to_string().as_str())
            .expected_last_subject_sequence(last_seq);
        let ack = match js.send_publish(subject.to_owned(), publish).await {
            Ok(f) => match tokio::time::timeout(ack_wait, f).await {
                Ok(a) => a.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no acknowledgement within {ack_wait:?}")),
            },
            Err(e) => Err(e.to_string()),
        };
        let ack = match ack {
            Ok(a) => a,
            Err(e) => return (done, Some(e)),
        };
        if ack.duplicate {
            // Stored before: its offset is in its own header.
            match direct(|| st.direct_get(ack.sequence)).await {
                Ok(Ok(m)) => match offset_of(&m) {
                    Ok(o) => done.push((o, ack.sequence)),
                    Err(e) => return (done, Some(e.to_string())),
                },
                Ok(Err(e)) => return (done, Some(e.to_string())),
                Err(e) => return (done, Some(e)),
            }
        } else {
            done.push((next, ack.sequence));
            next += 1;
            last_seq = ack.sequence;
        }
    }
    (done, None)
}

impl JetStreamStore {
    /// [`Store::append`] through a shared reference: an edge appends through a clone of the
    /// store its hub holds, outside the hub's lock, and hands the outcome to
    /// [`Hub::handle_appended`](crate::hub::Hub::handle_appended).
    ///
    /// # Errors
    /// As [`Store::append`].
    pub fn append_shared(
        &self,
        groups: &[Group<'_>],
        now_ms: u64,
        side: Option<Side<'_>>,
    ) -> Result<Vec<Result<Vec<u64>, LogError>>, LogError> {
        super::refuse_oversized(groups, self.0.cfg.max_record_bytes)?;
        // The audit lines first, in chunks under NATS's payload limit: a disclosure is on
        // record before it can be sent, and nothing is appended when they cannot be.
        if let Some(side) = side {
            const CHUNK: usize = 512 << 10;
            let chunks: Vec<Bytes> = side
                .bytes
                .chunks(CHUNK)
                .map(Bytes::copy_from_slice)
                .collect();
            let (js, subject) = (
                self.0.js.clone(),
                format!("{}-audit", self.0.cfg.subject_prefix),
            );
            self.run(async move {
                for c in chunks {
                    js.publish(subject.clone(), c)
                        .await
                        .map_err(|e| cluster_err(&subject, e))?
                        .await
                        .map_err(|e| cluster_err(&subject, e))?;
                }
                Ok::<_, LogError>(())
            })?;
        }
        Ok(self.append_groups(groups, now_ms))
    }
}

/// A notification the stream took, as an edge's live feed reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedItem {
    /// Its offset in its entity's log.
    pub offset: u64,
    /// When it was appended, Unix milliseconds.
    pub appended_ms: u64,
    /// The notification (its entity included).
    pub notification: crate::hub::Notification,
}

impl JetStreamStore {
    /// Every notification the stream takes from now on, whichever edge appended it, in
    /// stream order: the edge hands them to its core ([`Hub::handle_stored`]) so that its
    /// subscribers hear other edges' notifications live. An ordered consumer (no state on the
    /// servers, recreated by the client after a gap); a record that does not decode is
    /// reported and skipped (the store's reads refuse it the same way). The channel holds
    /// `capacity` items; the feed waits when it is full.
    ///
    /// [`Hub::handle_stored`]: crate::hub::Hub::handle_stored
    pub fn live_feed(
        &self,
        capacity: usize,
    ) -> Result<tokio::sync::mpsc::Receiver<FeedItem>, LogError> {
        use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
        use futures_util::StreamExt as _;
        let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
        let (st, filter) = (
            self.0.stream.clone(),
            format!("{}.>", self.0.cfg.subject_prefix),
        );
        let prefix = format!("{}.", self.0.cfg.subject_prefix);
        let messages = self.run(async move {
            let consumer = st
                .create_consumer(OrderedConfig {
                    filter_subject: filter.clone(),
                    deliver_policy: DeliverPolicy::New,
                    ..Default::default()
                })
                .await
                .map_err(|e| cluster_err(&filter, e))?;
            consumer
                .messages()
                .await
                .map_err(|e| cluster_err(&filter, e))
        })?;
        self.0
            .rt
            .as_ref()
            .expect("runtime until dropped")
            .spawn(async move {
                let mut messages = messages;
                while let Some(m) = messages.next().await {
                    let m = match m {
                        Ok(m) => m,
                        Err(e) => {
                            tracing::warn!("cluster feed: {e}");
                            continue;
                        }
                    };
                    let header = |name: &str| -> Option<u64> {
                        m.message.headers.as_ref()?.get(name)?.as_str().parse().ok()
                    };
                    let entity = m.message.subject.strip_prefix(prefix.as_str());
                    let (Some(offset), Some(_entity)) = (header(OFFSET_HEADER), entity) else {
                        tracing::warn!(
                            "cluster feed: {} has no offset; skipped",
                            m.message.subject
                        );
                        continue;
                    };
                    let appended_ms = header(TIME_HEADER).unwrap_or(0);
                    let notification = match crate::hub::Notification::decode(&m.message.payload) {
                        Ok(n) => n,
                        Err(e) => {
                            tracing::warn!(
                                "cluster feed: {} offset {offset} does not decode: {e}; skipped",
                                m.message.subject
                            );
                            continue;
                        }
                    };
                    let item = FeedItem {
                        offset,
                        appended_ms,
                        notification,
                    };
                    if tx.send(item).await.is_err() {
                        return; // the edge is gone
                    }
                }
            });
        Ok(rx)
    }
}

/// How long a direct get waits for an answer before it is asked again.
const DIRECT_WAIT: Duration = Duration::from_secs(1);

/// A direct get, asked up to three times: every replica of the stream answers direct gets,
/// but one that restarted and is still catching up may leave a request unanswered, and the
/// connection's request timeout (10 s) would then hold the caller — a whole edge's append —
/// for that long. A `503 no responders` (nobody serves the stream yet: a cluster just formed
/// or electing) is asked again too, every quarter second for up to [`NO_RESPONDERS_FOR`];
/// any other answer, an error included, is the caller's.
pub(crate) async fn direct<T, E, F, Fut>(mut get: F) -> Result<Result<T, E>, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let began = tokio::time::Instant::now();
    let mut timeouts = 0;
    loop {
        match tokio::time::timeout(DIRECT_WAIT, get()).await {
            Ok(Err(e))
                if e.to_string().contains("no responders")
                    && began.elapsed() < NO_RESPONDERS_FOR =>
            {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Ok(r) => return Ok(r),
            Err(_) if timeouts < 2 => timeouts += 1,
            Err(_) => {
                return Err(format!(
                    "no replica answered a direct get within 3 x {DIRECT_WAIT:?}"
                ));
            }
        }
    }
}

/// How long a direct get is asked again while nobody serves the stream.
const NO_RESPONDERS_FOR: Duration = Duration::from_secs(10);

/// A NATS client on the servers `cfg` names, as every part of an edge connects: the store,
/// the shared snapshot, tools.
///
/// # Errors
/// No server answered.
pub async fn connect(cfg: &JetStreamConfig) -> Result<async_nats::Client, LogError> {
    let mut opts = async_nats::ConnectOptions::new()
        .connection_timeout(cfg.timeout)
        .request_timeout(Some(cfg.timeout));
    if let Some(creds) = &cfg.credentials {
        opts = opts
            .credentials_file(creds)
            .await
            .map_err(|e| cluster_err(&creds.display().to_string(), e))?;
    }
    if let Some(ca) = &cfg.tls_ca {
        for p in [
            Some(ca),
            cfg.tls_client.as_ref().map(|c| &c.0),
            cfg.tls_client.as_ref().map(|c| &c.1),
        ]
        .into_iter()
        .flatten()
        {
            if !p.is_file() {
                return Err(cluster_err(&p.display().to_string(), "no such file"));
            }
        }
        opts = opts.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let Some((cert, key)) = &cfg.tls_client {
        opts = opts.add_client_certificate(cert.clone(), key.clone());
    }
    opts.connect(cfg.urls.clone())
        .await
        .map_err(|e| cluster_err(&cfg.urls.join(","), e))
}

/// Runs `f` on `rt` and waits for it from this thread, whatever runtime this thread is in.
fn run_on<T: Send + 'static>(
    rt: &tokio::runtime::Runtime,
    f: impl Future<Output = T> + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(f.await);
    });
    rx.recv()
        .expect("the NATS runtime runs the request to its end")
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Store for JetStreamStore {
    type Done = ();

    fn number_entities(&mut self, names: &[&str]) -> Result<Vec<EntityId>, LogError> {
        let kv = self.0.numbers.clone();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        self.run(async move {
            let mut out = Vec::with_capacity(names.len());
            for name in names {
                let key = format!("id.{}", hex(&name));
                loop {
                    let got = direct(|| kv.get(&key))
                        .await
                        .map_err(|e| cluster_err(&key, e))?
                        .map_err(|e| cluster_err(&key, e))?;
                    if let Some(v) = got {
                        let n = std::str::from_utf8(&v)
                            .ok()
                            .and_then(|s| s.parse().ok())
                            .ok_or_else(|| cluster_err(&key, "not a number"))?;
                        out.push(EntityId(n));
                        break;
                    }
                    // Take the next number (compare-and-set on the counter), then claim the
                    // name with it; a number taken but not claimed is never reused.
                    let counter = kv.entry("next").await.map_err(|e| cluster_err("next", e))?;
                    let (n, taken) = match counter {
                        Some(c) => {
                            let n: u32 = std::str::from_utf8(&c.value)
                                .ok()
                                .and_then(|s| s.parse().ok())
                                .ok_or_else(|| cluster_err("next", "not a number"))?;
                            let bumped = Bytes::from((n + 1).to_string());
                            (n, kv.update("next", bumped, c.revision).await.is_ok())
                        }
                        None => (0, kv.create("next", Bytes::from("1")).await.is_ok()),
                    };
                    if taken {
                        // Another edge may have claimed the name meanwhile: then read again.
                        let _ = kv.create(&key, Bytes::from(n.to_string())).await;
                    }
                }
            }
            Ok(out)
        })
    }

    fn entities(&self) -> Vec<EntityId> {
        let mut v: Vec<EntityId> = self.logs().keys().copied().collect();
        v.sort_unstable();
        v
    }

    fn range(&self, entity: EntityId) -> Option<Range<u64>> {
        self.logs().get(&entity).map(|l| l.start..l.next)
    }

    fn create(&mut self, entity: EntityId) -> Result<Range<u64>, LogError> {
        if !self.logs().contains_key(&entity) {
            self.refresh(entity)?;
        }
        Ok(self.range(entity).expect("refreshed"))
    }

    fn append(
        &mut self,
        groups: &[Group<'_>],
        now_ms: u64,
        side: Option<Side<'_>>,
    ) -> Result<Vec<Result<Vec<u64>, LogError>>, LogError> {
        self.append_shared(groups, now_ms, side)
    }

    fn read(
        &mut self,
        entity: EntityId,
        from: u64,
        max_records: usize,
        max_bytes: usize,
        out: &mut Vec<Record>,
    ) -> Result<(), LogError> {
        let known = self.logs().get(&entity).cloned();
        let log = match known {
            Some(l) => l,
            None => self.refresh(entity)?,
        };
        if from < log.start {
            return Err(LogError::Deleted {
                offset: from,
                start: log.start,
            });
        }
        if from >= log.next {
            return Ok(());
        }
        // Start after the nearest known sequence at or before `from`.
        let (known_off, known_seq) = log
            .seqs
            .range(..=from)
            .next_back()
            .map_or((None, 0), |(&o, &s)| (Some(o), s));
        let (s, subject) = (self.0.stream.clone(), self.subject(entity));
        let got = self.run(async move {
            let mut got = Vec::new();
            let (mut bytes, mut seq) = (0usize, known_seq);
            // The known record itself is read again when it is the one asked for.
            let mut at = if known_off == Some(from) {
                Some(
                    direct(|| s.direct_get(known_seq))
                        .await
                        .map_err(|e| cluster_err(&subject, e))?
                        .map_err(|e| cluster_err(&subject, e))?,
                )
            } else {
                None
            };
            loop {
                let m = match at.take() {
                    Some(m) => m,
                    None => match direct(|| {
                        s.direct_get_next_for_subject(subject.clone(), Some(seq + 1))
                    })
                    .await
                    .map_err(|e| cluster_err(&subject, e))?
                    {
                        Ok(m) => m,
                        Err(e) if not_found(&e) => break,
                        Err(e) => return Err(cluster_err(&subject, e)),
                    },
                };
                seq = m.sequence;
                let offset = offset_of(&m)?;
                if offset < from {
                    continue;
                }
                let time_ms = m
                    .headers
                    .get(TIME_HEADER)
                    .and_then(|v| v.as_str().parse().ok())
                    .unwrap_or(0);
                bytes += m.payload.len();
                got.push((
                    Record {
                        offset,
                        time_ms,
                        data: m.payload.to_vec(),
                    },
                    m.sequence,
                ));
                if got.len() >= max_records || bytes >= max_bytes {
                    break;
                }
            }
            Ok(got)
        })?;
        let mut logs = self.logs();
        let log = logs.get_mut(&entity).expect("known");
        for (r, seq) in got {
            log.seqs.insert(r.offset, seq);
            log.next = log.next.max(r.offset + 1);
            out.push(r);
        }
        Ok(())
    }

    fn max_record_bytes(&self) -> usize {
        self.0.cfg.max_record_bytes
    }

    fn load_acked(&mut self, entity: EntityId) -> Result<Option<u64>, LogError> {
        let kv = self.0.acked.clone();
        let key = entity.0.to_string();
        let acked = self.run(async move {
            // Bounded like a direct get: the hub waits on this with its lock held (a session
            // connecting), and a catching-up replica may leave it unanswered.
            let v = direct(|| kv.get(&key))
                .await
                .map_err(|e| cluster_err(&key, e))?
                .map_err(|e| cluster_err(&key, e))?;
            v.map(|v| {
                std::str::from_utf8(&v)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| cluster_err(&key, "not an offset"))
            })
            .transpose()
        })?;
        if let Some(a) = acked {
            self.0
                .saved_acked
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(entity, a);
        }
        Ok(acked)
    }

    fn save_acked(&mut self, entity: EntityId, acked: u64) -> Result<(), LogError> {
        self.save_acked_all(&[(entity, acked)])
    }

    /// Only the offsets that changed since this edge last saved or read them, all at once,
    /// each waiting at most [`JetStreamConfig::ack_wait`]: the hub calls this with every
    /// entity's offset, and 7,000 round trips one after another would hold it for seconds.
    /// On an error the caller keeps them to save again.
    fn save_acked_all(&mut self, all: &[(EntityId, u64)]) -> Result<(), LogError> {
        let changed: Vec<(EntityId, u64)> = all
            .iter()
            .filter(|(e, a)| {
                self.0
                    .saved_acked
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(e)
                    != Some(a)
            })
            .copied()
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        let (kv, wait) = (self.0.acked.clone(), self.0.cfg.ack_wait);
        let puts = changed.clone();
        self.run(async move {
            let mut set = tokio::task::JoinSet::new();
            for (e, a) in puts {
                let kv = kv.clone();
                set.spawn(async move {
                    let key = e.0.to_string();
                    match tokio::time::timeout(wait, kv.put(&key, Bytes::from(a.to_string()))).await
                    {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err(e)) => Err(cluster_err(&key, e)),
                        Err(_) => Err(cluster_err(&key, format!("no answer within {wait:?}"))),
                    }
                });
            }
            let mut first_err = None;
            while let Some(r) = set.join_next().await {
                if let Ok(Err(e)) = r {
                    first_err.get_or_insert(e);
                }
            }
            first_err.map_or(Ok(()), Err)
        })?;
        self.0
            .saved_acked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(changed);
        Ok(())
    }

    /// By age only, and only what is acked: the entity's oldest records older than the limit
    /// and below `acked` are purged from its subject. The size cap is the stream's own
    /// (`max_bytes`), set by the operator.
    fn retain(
        &mut self,
        entity: EntityId,
        now_ms: u64,
        policy: &Retention,
        acked: u64,
    ) -> Result<RetentionOutcome, LogError> {
        let mut out = RetentionOutcome::default();
        let Some(age) = policy.max_age_ms else {
            return Ok(out);
        };
        let Some(log) = self.logs().get(&entity).cloned() else {
            return Ok(out);
        };
        // The first record to keep: the first not acked or not old enough.
        let mut keep_from = log.start;
        let mut batch = Vec::new();
        while keep_from < acked.min(log.next) {
            batch.clear();
            self.read(entity, keep_from, 256, 1 << 20, &mut batch)?;
            let Some(pos) = batch
                .iter()
                .position(|r| r.offset >= acked || r.time_ms.saturating_add(age) > now_ms)
            else {
                keep_from = batch.last().map_or(acked, |r| r.offset + 1);
                if batch.is_empty() {
                    break;
                }
                continue;
            };
            keep_from = batch[pos].offset;
            break;
        }
        // The last record always stays: it carries the entity's next offset, which an edge
        // starting afresh reads from the subject's end.
        let keep_from = keep_from.min(log.next.saturating_sub(1));
        if keep_from <= log.start {
            return Ok(out);
        }
        let log = self.logs().get(&entity).cloned().expect("known");
        let seq = match log.seqs.get(&keep_from) {
            Some(&s) => s,
            None => log.last_seq + 1,
        };
        let (s, subject) = (self.0.stream.clone(), self.subject(entity));
        let purged = self.run(async move {
            s.purge()
                .filter(subject.clone())
                .sequence(seq)
                .await
                .map_err(|e| cluster_err(&subject, e))
        })?;
        out.segments_deleted = usize::try_from(purged.purged).unwrap_or(usize::MAX);
        let mut logs = self.logs();
        let log = logs.get_mut(&entity).expect("known");
        log.start = keep_from;
        log.seqs = log.seqs.split_off(&keep_from);
        Ok(out)
    }

    /// The notification stream's bytes, as its leader reports them now (as at open when it
    /// does not answer).
    fn size_bytes(&self) -> u64 {
        let st = self.0.stream.clone();
        self.run(async move { st.get_info().await.map(|i| i.state.bytes) })
            .unwrap_or_else(|_| self.0.stream.cached_info().state.bytes)
    }

    fn poll_background(&mut self) -> Option<Background<()>> {
        None
    }

    fn handle_background(&mut self, (): ()) {}
}

fn hex(s: &str) -> String {
    use std::fmt::Write as _;
    s.bytes().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}
