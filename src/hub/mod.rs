//! The distribution core, sans-IO: sessions, send windows, acks, timers and bounded queues,
//! with no sockets, no async runtime, no clock of its own and no file of its own. A thin
//! tokio + quinn shell (`net`) drives it; tests drive it with a simulated clock.
//!
//! - [`Hub`]: every subscriber session and every entity's acked offset, over a [`Store`] that
//!   keeps the notifications. The shell calls [`Hub::publish`] / [`Hub::publish_batch`] for
//!   routed notifications, [`Hub::connect`] when a subscriber sends `Subscribe`, pulls frames
//!   with [`Hub::poll_transmit`], feeds acks to [`Hub::handle_ack`], and keeps one timer:
//!   [`Hub::poll_timeout`] / [`Hub::handle_timeout`]. [`Hub::poll_event`] says which session
//!   has something new to send ([`HubEvent::Wake`]), which was replaced, and what retention
//!   forced out; [`Hub::poll_background`] hands out the store's slow work (the file store's
//!   checkpoint) for the shell to run on a blocking thread.
//! - [`store`]: the [`Store`] trait and its implementations — [`FileStore`] (per-entity
//!   segment logs, write-ahead journal, acked-offset files; the embedded default) and
//!   [`MemoryStore`] (tests); [`frame`]: the wire format; [`notification`]: what is stored
//!   and sent.
//!
//! The core owns no bytes on disk and must not touch the file system, a socket or the clock:
//! what it needs from them comes in as arguments (`now_ms`) or through the [`Store`].
//!
//! **Delivery.** At-least-once, in offset order, per entity; the receiver drops repeats by
//! [`NotificationId`]. A subscriber is an entity (one acked offset per entity); a second
//! `connect` for the same entity replaces the first session ([`HubEvent::Closed`]). Acks are
//! cumulative. A notification not acked within [`HubConfig::ack_timeout_ms`] is sent again,
//! together with everything after it (go-back-N).
//!
//! **Backpressure.** Publishing never waits for a subscriber. Each session holds at most
//! [`HubConfig::queue_capacity`] notifications in memory and has at most
//! [`HubConfig::max_in_flight`] un-acked; when its queue is full, the session stops taking new
//! notifications from the publisher and reads them back from its entity's log instead, in
//! batches, until it has caught up. Memory is therefore bounded by sessions × queue capacity ×
//! notification size, whatever the subscribers do.
//!
//! **Loss.** Only the size cap of [`Retention`] deletes un-acked notifications; the hub then
//! emits [`HubEvent::DataLost`], moves the entity's acked offset past the hole, and sends the
//! subscriber a [`Frame::Gap`] so that the loss is on record at both ends.
//!
//! ```
//! use cwn::hub::{EntityId, Frame, Hub, HubConfig, MemoryStore, Notification, NotificationId, NotificationKind, StartFrom};
//! use cwn::indicator::Tlp;
//!
//! let mut hub = Hub::with_store(MemoryStore::default(), HubConfig::default(), 0).unwrap();
//! let entity = EntityId(7);
//! let n = Notification {
//!     id: NotificationId::for_hit("ind-1", entity, "msp-a", "dns.log:42"),
//!     created_at_ms: 0,
//!     entity,
//!     tlp: Tlp::Amber,
//!     kind: NotificationKind::Hit,
//!     payload: br#"{"indicator":"bad.example"}"#.to_vec(),
//! };
//! assert_eq!(hub.publish(&n, 10).unwrap(), 0);
//! let session = hub.connect(entity, StartFrom::Acked, 20).unwrap();
//! let Some(Frame::Notification { offset, notification }) = hub.poll_transmit(session, 20).unwrap()
//! else { panic!() };
//! assert_eq!((offset, notification), (0, n));
//! hub.handle_ack(session, 0, 30).unwrap();
//! assert_eq!(hub.stats().delivered, 1);
//! ```

pub mod frame;
pub mod notification;
pub mod store;

use std::collections::{HashMap, VecDeque};
use std::ops::Range;

pub use frame::{Frame, FrameError};
pub use notification::{Notification, NotificationId, NotificationKind};
pub use store::file::SIDE_ENTITY;
pub use store::{
    FileStore, FileStoreConfig, Journal, Log, LogError, LogOptions, MemoryStore, Record, Retention,
    Store, journal, log, offsets,
};

/// An entity of the registry (a NIS2 entity, a partner, the publisher): the unit a log and a
/// subscription belong to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntityId(pub u32);

/// Where a subscription starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StartFrom {
    /// After the last notification the entity acked: the normal resume.
    Acked,
    /// At this offset (`--from OFFSET`): replays acked notifications or skips ahead. An offset
    /// past the end starts at the end; one already deleted starts at the oldest held, after a
    /// [`Frame::Gap`].
    Offset(u64),
    /// With the next notification published.
    Latest,
}

/// A subscriber session. Ids are never reused within one [`Hub`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(pub u64);

/// When acks reach the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckSync {
    /// Each ack that advances an entity's offset is saved in the store before
    /// [`Hub::handle_ack`] returns: nothing acked is re-sent after a crash.
    Immediate,
    /// At most this many milliseconds after the first unsaved ack (by
    /// [`Hub::handle_timeout`]), on disconnect, and on [`Hub::flush`]. A crash re-sends what
    /// was acked since the last save; the receiver drops the repeats by id.
    Interval(u64),
}

/// How a [`Hub`] behaves (where its data lives is the [`Store`]'s business).
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// What to delete, checked every [`HubConfig::retention_interval_ms`].
    pub retention: Retention,
    /// How often retention runs.
    pub retention_interval_ms: u64,
    /// Notifications held in memory per session, beyond which it reads from the store.
    pub queue_capacity: usize,
    /// Notifications sent but not acked, per session, beyond which sending pauses.
    pub max_in_flight: usize,
    /// Records read from the store at once by a session catching up.
    pub read_batch: usize,
    /// Payload bytes read from the store at once by a session catching up.
    pub read_bytes: usize,
    /// After this long without an ack, un-acked notifications are sent again.
    pub ack_timeout_ms: u64,
    /// When acks reach the store.
    pub ack_sync: AckSync,
}

impl Default for HubConfig {
    /// 1,024 queued and 256 in flight per session, 30 s ack timeout, acks saved within a
    /// second, 7 days' and 1 GiB per entity retention checked every minute.
    fn default() -> Self {
        HubConfig {
            retention: Retention {
                max_age_ms: Some(7 * 24 * 3600 * 1000),
                max_bytes: Some(1 << 30),
            },
            retention_interval_ms: 60_000,
            queue_capacity: 1024,
            max_in_flight: 256,
            read_batch: 256,
            read_bytes: 1 << 20,
            ack_timeout_ms: 30_000,
            ack_sync: AckSync::Interval(1000),
        }
    }
}

/// A hub failure.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The store failed (a log or an acked-offset file, for the file store).
    #[error(transparent)]
    Log(#[from] LogError),
    /// A notification for entity number [`SIDE_ENTITY`], which the file store's journal
    /// keeps for the side file.
    #[error("entity number {SIDE_ENTITY} is reserved")]
    ReservedEntity,
    /// The session ended (disconnected or replaced) or never existed.
    #[error("unknown session {0:?}")]
    UnknownSession(SessionId),
    /// The subscriber acked an offset it was never sent: a protocol violation.
    #[error("ack of offset {offset} but only offsets below {sent} were sent")]
    AckBeyondSent {
        /// The offset acked.
        offset: u64,
        /// The offset after the last sent.
        sent: u64,
    },
    /// A stored record does not decode as a notification.
    #[error("entity {entity:?} offset {offset}: stored notification does not decode: {error}")]
    BadRecord {
        /// The entity.
        entity: EntityId,
        /// The offset.
        offset: u64,
        /// Why.
        error: FrameError,
    },
}

/// Something the shell must act on, from [`Hub::poll_event`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HubEvent {
    /// The session has frames to send: call [`Hub::poll_transmit`]. Emitted once after a
    /// `poll_transmit` returned `None` and there is something new.
    Wake(SessionId),
    /// A newer session of the same entity replaced this one: close its connection (with
    /// [`frame::ErrorCode::REPLACED`]).
    Closed {
        /// The old session.
        session: SessionId,
        /// Its entity.
        entity: EntityId,
    },
    /// Retention's size cap deleted un-acked notifications.
    DataLost {
        /// The entity.
        entity: EntityId,
        /// The offsets lost.
        lost: Range<u64>,
    },
    /// The entity's acked-offset file was unreadable or ahead of its log; delivery restarts
    /// at `acked` (re-sending rather than losing).
    AckedReset {
        /// The entity.
        entity: EntityId,
        /// The offset used now.
        acked: u64,
        /// Why.
        reason: String,
    },
}

/// Figures for metrics, from [`Hub::stats`]. Counters run since [`Hub::open`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HubStats {
    /// Entities with a log.
    pub entities: usize,
    /// Connected sessions.
    pub sessions: usize,
    /// Notifications held in session queues.
    pub queued: usize,
    /// Notifications sent and not yet acked.
    pub in_flight: usize,
    /// Sessions reading from disk because they fell behind.
    pub lagging: usize,
    /// The largest backlog of one session: its entity's next offset minus its acked offset.
    pub max_lag: u64,
    /// Notifications published.
    pub published: u64,
    /// Notification frames sent (repeats included).
    pub sent: u64,
    /// Notifications acked.
    pub delivered: u64,
    /// Notifications sent again after an ack timeout.
    pub retransmitted: u64,
    /// Un-acked notifications deleted by the size cap.
    pub lost: u64,
    /// Bytes of all logs.
    pub disk_bytes: u64,
}

const LATENCY_SAMPLES: usize = 4096;

/// What the core knows of an entity: its acked offset and its session. Its notifications
/// are the store's.
struct EntityState {
    /// First offset not acked, as last known (saved in the store when `dirty` is false).
    acked: u64,
    dirty: bool,
    session: Option<SessionId>,
}

struct Queued {
    offset: u64,
    appended_ms: u64,
    notification: Notification,
}

struct InFlight {
    offset: u64,
    sent_ms: u64,
    appended_ms: u64,
}

struct Session {
    entity: EntityId,
    /// First offset this session has not had acked.
    acked: u64,
    /// Next offset to send; the queue holds `next_send..next_send + queue.len()`.
    next_send: u64,
    /// One past the highest offset ever sent in this session (acks up to it are valid).
    sent_end: u64,
    queue: VecDeque<Queued>,
    /// The queue reaches the log's end, so new notifications are pushed to it; otherwise the
    /// session reads from the store.
    live: bool,
    in_flight: VecDeque<InFlight>,
    pending: VecDeque<Frame>,
    /// `poll_transmit` found nothing: wake the shell when something arrives.
    idle: bool,
}

impl Session {
    /// Offers the record at `offset` to the session while it is live: queued when it
    /// continues the queue and there is room; ignored when the session has it already;
    /// otherwise (full, or a gap: records another hub on the same store appended) the session
    /// stops being live and reads from the store until it has caught up.
    fn offer(&mut self, offset: u64, appended_ms: u64, n: &Notification, capacity: usize) {
        if !self.live {
            return;
        }
        let expected = self.next_send + self.queue.len() as u64;
        if offset < expected {
            return;
        }
        if offset > expected || self.queue.len() >= capacity {
            self.live = false;
            return;
        }
        self.queue.push_back(Queued {
            offset,
            appended_ms,
            notification: n.clone(),
        });
    }

    /// Forgets what is queued and in flight and starts sending again at `from` from the
    /// store.
    fn rewind(&mut self, from: u64) -> usize {
        let n = self.in_flight.len();
        self.in_flight.clear();
        self.queue.clear();
        self.next_send = from;
        self.live = false;
        n
    }
}

/// A batch of notifications encoded and grouped per entity for [`Store::append`]: made by
/// [`Hub::publish_batch`] itself, or by a caller that appends outside the hub and then hands
/// the outcome to [`Hub::handle_appended`].
#[derive(Debug, Default)]
pub struct EncodedBatch {
    /// Entities in order of first appearance in the batch.
    order: Vec<EntityId>,
    /// The batch positions of each entity's notifications.
    members: Vec<Vec<usize>>,
    /// Where each notification's record lies in the buffer.
    bounds: Vec<Range<usize>>,
    /// The records, when the batch owns them ([`EncodedBatch::encode`]).
    buf: Vec<u8>,
}

impl EncodedBatch {
    /// Encodes `batch`, checking every record against the store's `max_record_bytes`.
    ///
    /// # Errors
    /// A notification for the reserved entity, or one over the limit: the whole batch is
    /// refused.
    pub fn encode(batch: &[Notification], max_record_bytes: usize) -> Result<Self, HubError> {
        let mut buf = Vec::new();
        let mut e = Self::encode_into(batch, max_record_bytes, &mut buf)?;
        e.buf = buf;
        Ok(e)
    }

    /// [`EncodedBatch::encode`] into the caller's buffer (cleared first).
    fn encode_into(
        batch: &[Notification],
        max_record_bytes: usize,
        buf: &mut Vec<u8>,
    ) -> Result<Self, HubError> {
        if batch.iter().any(|n| n.entity.0 == SIDE_ENTITY) {
            return Err(HubError::ReservedEntity);
        }
        if let Some(n) = batch.iter().find(|n| n.encoded_len() > max_record_bytes) {
            return Err(LogError::RecordTooLarge {
                len: n.encoded_len(),
                max: u32::try_from(max_record_bytes).unwrap_or(u32::MAX),
            }
            .into());
        }
        let mut order: Vec<EntityId> = Vec::new();
        let mut members: Vec<Vec<usize>> = Vec::new();
        let mut group_of: HashMap<EntityId, usize> = HashMap::new();
        for (i, n) in batch.iter().enumerate() {
            let g = *group_of.entry(n.entity).or_insert_with(|| {
                order.push(n.entity);
                members.push(Vec::new());
                members.len() - 1
            });
            members[g].push(i);
        }
        buf.clear();
        let mut bounds: Vec<Range<usize>> = vec![0..0; batch.len()];
        for idx in &members {
            for &i in idx {
                let start = buf.len();
                batch[i].encode(buf);
                bounds[i] = start..buf.len();
            }
        }
        Ok(EncodedBatch {
            order,
            members,
            bounds,
            buf: Vec::new(),
        })
    }

    /// The groups to append, over the records in `buf` (the batch's own buffer for an
    /// [`EncodedBatch::encode`]d one: [`EncodedBatch::own_groups`]).
    fn groups<'a>(&self, buf: &'a [u8]) -> Vec<store::Group<'a>> {
        self.order
            .iter()
            .zip(&self.members)
            .map(|(&entity, idx)| store::Group {
                entity,
                records: idx.iter().map(|&i| &buf[self.bounds[i].clone()]).collect(),
            })
            .collect()
    }

    /// The groups to hand to [`Store::append`]: one per entity, in order of first
    /// appearance, each with its notifications in batch order.
    pub fn own_groups(&self) -> Vec<store::Group<'_>> {
        self.groups(&self.buf)
    }
}

/// The distribution core. See the [module docs](self).
pub struct Hub<S: Store = FileStore> {
    config: HubConfig,
    store: S,
    entities: HashMap<EntityId, EntityState>,
    sessions: HashMap<SessionId, Session>,
    next_session: u64,
    events: VecDeque<HubEvent>,
    flush_at: Option<u64>,
    retention_at: Option<u64>,
    stats: HubStats,
    latency: Vec<u64>,
    latency_seen: u64,
    scratch: Vec<u8>,
}

impl Hub<FileStore> {
    /// Opens a hub on the file store in `store.data_dir` (creating it), recovering every
    /// entity's log and acked offset. `now_ms` starts the retention timer.
    pub fn open(config: HubConfig, store: FileStoreConfig, now_ms: u64) -> Result<Self, HubError> {
        Hub::with_store(FileStore::open(store)?, config, now_ms)
    }
}

/// A batch written to the store by [`Hub::start_publish`] and not yet delivered.
pub struct PendingPublish {
    encoded: EncodedBatch,
    state: Pending,
}

enum Pending {
    Done(Result<Vec<Result<Vec<u64>, LogError>>, LogError>),
    Syncing(store::SyncJob),
    Synced(Result<(), LogError>),
}

impl PendingPublish {
    /// Waits for the disk: the store's sync of the batch (nothing when it was durable at
    /// once). Call it without holding the hub.
    pub fn sync(&mut self) {
        self.state = match std::mem::replace(&mut self.state, Pending::Synced(Ok(()))) {
            Pending::Syncing(job) => Pending::Synced(job()),
            done => done,
        };
    }
}

impl std::fmt::Debug for PendingPublish {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            Pending::Done(_) => "done",
            Pending::Syncing(_) => "syncing",
            Pending::Synced(_) => "synced",
        };
        f.debug_struct("PendingPublish")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl<S: Store> Hub<S> {
    /// A hub over `store`, taking over the entities it holds and their saved acked offsets.
    /// `now_ms` starts the retention timer.
    pub fn with_store(store: S, config: HubConfig, now_ms: u64) -> Result<Self, HubError> {
        let retention_at = (config.retention != Retention::default()).then_some(now_ms);
        let mut hub = Hub {
            config,
            store,
            entities: HashMap::new(),
            sessions: HashMap::new(),
            next_session: 1,
            events: VecDeque::new(),
            flush_at: None,
            retention_at,
            stats: HubStats::default(),
            latency: Vec::new(),
            latency_seen: 0,
            scratch: Vec::new(),
        };
        for e in hub.store.entities() {
            hub.register(e)?;
        }
        Ok(hub)
    }

    /// The durable number of each named entity (registry ids, in registry order), as the
    /// store keeps it: see [`Store::number_entities`].
    pub fn number_entities(&mut self, names: &[&str]) -> Result<Vec<EntityId>, HubError> {
        Ok(self.store.number_entities(names)?)
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Takes the entity the store holds into the core with its saved acked offset; one that
    /// cannot be read or lies past the log's end restarts delivery where the log allows and
    /// says so ([`HubEvent::AckedReset`]).
    fn register(&mut self, id: EntityId) -> Result<&mut EntityState, HubError> {
        let Range { start, end: next } = self.store.create(id)?;
        let (acked, reset) = match self.store.load_acked(id) {
            Ok(None) => (start, None),
            Ok(Some(a)) if a > next => (
                next,
                Some(format!("acked offset {a} is past the log's end {next}")),
            ),
            Ok(Some(a)) => (a, None),
            Err(e) => (start, Some(e.to_string())),
        };
        if let Some(reason) = &reset {
            self.events.push_back(HubEvent::AckedReset {
                entity: id,
                acked,
                reason: reason.clone(),
            });
        }
        Ok(self.entities.entry(id).or_insert(EntityState {
            acked,
            dirty: reset.is_some(),
            session: None,
        }))
    }

    /// The entity's state, creating its log on first use.
    fn entity(&mut self, id: EntityId) -> Result<&mut EntityState, HubError> {
        if self.entities.contains_key(&id) {
            return Ok(self.entities.get_mut(&id).expect("checked"));
        }
        self.register(id)
    }

    /// Publishes one notification to its entity's log (durably, before returning) and to the
    /// entity's session; returns its offset.
    pub fn publish(&mut self, n: &Notification, now_ms: u64) -> Result<u64, HubError> {
        Ok(self.publish_batch(std::slice::from_ref(n), now_ms)?[0])
    }

    /// Publishes notifications and returns their offsets in input order, durable when it
    /// returns: the store appends every entity's share in one durable write (the file store:
    /// one journal `fdatasync` for the batch, however many entities). Subscribers see a
    /// notification only after the store has it. A record over the store's limit refuses the
    /// whole batch. On another error, the entities whose records the store kept deliver them;
    /// the others hold none of the batch. Publishing the batch again stores repeats, which
    /// receivers drop by id.
    pub fn publish_batch(
        &mut self,
        batch: &[Notification],
        now_ms: u64,
    ) -> Result<Vec<u64>, HubError> {
        self.publish_batch_with(batch, now_ms, None)
    }

    /// [`Hub::publish_batch`], with `side`: bytes the caller wrote to the store's side file
    /// ([`FileStoreConfig::side_file`]) at that offset, made durable by the same write as the
    /// batch.
    pub fn publish_batch_with(
        &mut self,
        batch: &[Notification],
        now_ms: u64,
        side: Option<(u64, &[u8])>,
    ) -> Result<Vec<u64>, HubError> {
        let started = self.start_publish(batch, now_ms, side)?;
        self.finish_publish(batch, started, now_ms)
    }

    /// [`Hub::publish_batch_with`] in two halves, for a shell that lets its sessions use the
    /// hub while the disk works: this writes the batch to the store; then the caller runs
    /// [`PendingPublish::sync`] without holding the hub (the journal's `fdatasync`), and
    /// hands it to [`Hub::finish_publish`], which delivers. Until then the batch's records
    /// are neither read back nor delivered, and no other publish may start.
    pub fn start_publish(
        &mut self,
        batch: &[Notification],
        now_ms: u64,
        side: Option<(u64, &[u8])>,
    ) -> Result<PendingPublish, HubError> {
        let mut buf = std::mem::take(&mut self.scratch);
        let encoded = EncodedBatch::encode_into(batch, self.store.max_record_bytes(), &mut buf);
        let encoded = match encoded {
            Ok(e) => e,
            Err(e) => {
                self.scratch = buf;
                return Err(e);
            }
        };
        let side = side.map(|(offset, bytes)| store::Side { offset, bytes });
        let started = self.store.append_start(&encoded.groups(&buf), now_ms, side);
        self.scratch = buf;
        Ok(PendingPublish {
            encoded,
            state: match started {
                store::Started::Done(r) => Pending::Done(r),
                store::Started::Syncing(job) => Pending::Syncing(job),
            },
        })
    }

    /// Ends a publish [`Hub::start_publish`] began (syncing first if the caller did not):
    /// hands each appended notification to its entity's live session; returns the offsets
    /// in input order, as [`Hub::publish_batch_with`].
    pub fn finish_publish(
        &mut self,
        batch: &[Notification],
        pending: PendingPublish,
        now_ms: u64,
    ) -> Result<Vec<u64>, HubError> {
        let appended = match pending.state {
            Pending::Done(r) => r,
            Pending::Syncing(job) => self.store.append_finish(job()),
            Pending::Synced(synced) => self.store.append_finish(synced),
        };
        self.handle_appended(batch, &pending.encoded, appended, now_ms)
    }

    /// The second half of [`Hub::publish_batch`] for a caller that appended `batch` to a
    /// store shared with this hub itself, outside the hub (so that a slow store — a cluster
    /// electing a leader — holds no lock the hub's sessions need): `appended` is what the
    /// store's `append` of [`EncodedBatch::own_groups`] returned. Registers the entities the store
    /// now holds and hands each appended notification to its entity's live session; returns
    /// the offsets in input order, or the first error (the groups the store kept are
    /// delivered all the same).
    pub fn handle_appended(
        &mut self,
        batch: &[Notification],
        encoded: &EncodedBatch,
        appended: Result<Vec<Result<Vec<u64>, LogError>>, LogError>,
        now_ms: u64,
    ) -> Result<Vec<u64>, HubError> {
        let (order, members) = (&encoded.order, &encoded.members);
        // Entities the store now holds (created by this append, even a failed one).
        for &e in order {
            if !self.entities.contains_key(&e) && self.store.range(e).is_some() {
                self.register(e)?;
            }
        }
        let appended = appended?;
        // Deliver what the store has.
        let mut failed: Option<HubError> = None;
        let mut offsets = vec![0; batch.len()];
        let capacity = self.config.queue_capacity;
        for ((entity, idx), got) in order.iter().zip(members).zip(appended) {
            let got = match got {
                Ok(g) if g.len() == idx.len() => g,
                Ok(g) => {
                    failed.get_or_insert(HubError::Log(LogError::Cluster(format!(
                        "the store gave {} offsets for {} records of entity {}",
                        g.len(),
                        idx.len(),
                        entity.0
                    ))));
                    continue;
                }
                Err(e) => {
                    failed.get_or_insert(e.into());
                    continue;
                }
            };
            self.stats.published += idx.len() as u64;
            for (&o, &i) in got.iter().zip(idx) {
                offsets[i] = o;
            }
            let Some(sid) = self.entities.get(entity).and_then(|s| s.session) else {
                continue;
            };
            let s = self
                .sessions
                .get_mut(&sid)
                .expect("entity's session exists");
            for (&o, &i) in got.iter().zip(idx) {
                s.offer(o, now_ms, &batch[i], capacity);
            }
            if s.idle {
                s.idle = false;
                self.events.push_back(HubEvent::Wake(sid));
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(offsets),
        }
    }

    /// A notification the store holds at `offset` that this hub did not publish: on a store
    /// several hubs share (the edges of one cluster), another hub's, as this hub's feed of the
    /// store reports it. A live session of its entity gets it in offset order (a repeat is
    /// ignored); one that finds a gap reads from the store instead, so nothing is skipped.
    pub fn handle_stored(
        &mut self,
        offset: u64,
        appended_ms: u64,
        n: &Notification,
    ) -> Result<(), HubError> {
        let capacity = self.config.queue_capacity;
        let Some(sid) = self.entity(n.entity)?.session else {
            return Ok(());
        };
        let s = self
            .sessions
            .get_mut(&sid)
            .expect("entity's session exists");
        s.offer(offset, appended_ms, n, capacity);
        if s.idle {
            s.idle = false;
            self.events.push_back(HubEvent::Wake(sid));
        }
        Ok(())
    }

    /// The store's slow work, if any is due (the file store's checkpoint after the journal
    /// grew): run it where blocking is fine and hand the result to
    /// [`Hub::handle_background`]. No new job is handed out before that.
    pub fn poll_background(&mut self) -> Option<store::Background<S::Done>> {
        self.store.poll_background()
    }

    /// Takes the result of a job from [`Hub::poll_background`].
    pub fn handle_background(&mut self, done: S::Done) {
        self.store.handle_background(done);
    }

    /// Runs every due background job here, to the end (tests, tools, shutdown).
    pub fn run_background(&mut self) {
        while let Some(job) = self.poll_background() {
            let done = job();
            self.handle_background(done);
        }
    }

    /// Starts a session for `entity`'s subscriber, replacing the entity's previous session if
    /// any ([`HubEvent::Closed`]).
    pub fn connect(
        &mut self,
        entity: EntityId,
        from: StartFrom,
        _now_ms: u64,
    ) -> Result<SessionId, HubError> {
        let sid = SessionId(self.next_session);
        self.next_session += 1;
        let acked = self.entity(entity)?.acked;
        let Range {
            start: first,
            end: next,
        } = self.store.create(entity)?;
        let mut start = match from {
            StartFrom::Acked => acked,
            StartFrom::Offset(o) => o.min(next),
            StartFrom::Latest => next,
        };
        let mut pending = VecDeque::new();
        if start < first {
            pending.push_back(Frame::Gap {
                from: start,
                to: first,
            });
            start = first;
        }
        let state = self.entities.get_mut(&entity).expect("registered");
        if let Some(old) = state.session.replace(sid) {
            self.sessions.remove(&old);
            self.events.push_back(HubEvent::Closed {
                session: old,
                entity,
            });
        }
        self.sessions.insert(
            sid,
            Session {
                entity,
                acked: start,
                next_send: start,
                sent_end: start,
                queue: VecDeque::new(),
                live: start == next,
                in_flight: VecDeque::new(),
                pending,
                idle: false,
            },
        );
        Ok(sid)
    }

    /// The next frame to send on `session`, or `None` when there is nothing to send now (wait
    /// for [`HubEvent::Wake`], an ack, or the timer).
    pub fn poll_transmit(
        &mut self,
        session: SessionId,
        now_ms: u64,
    ) -> Result<Option<Frame>, HubError> {
        let s = self
            .sessions
            .get_mut(&session)
            .ok_or(HubError::UnknownSession(session))?;
        if let Some(f) = s.pending.pop_front() {
            return Ok(Some(f));
        }
        if s.in_flight.len() >= self.config.max_in_flight {
            return Ok(None);
        }
        if s.queue.is_empty() && !s.live {
            let mut records = Vec::new();
            let want = self
                .config
                .read_batch
                .min(self.config.queue_capacity)
                .max(1);
            self.store.read(
                s.entity,
                s.next_send,
                want,
                self.config.read_bytes,
                &mut records,
            )?;
            for r in records {
                let notification =
                    Notification::decode(&r.data).map_err(|error| HubError::BadRecord {
                        entity: s.entity,
                        offset: r.offset,
                        error,
                    })?;
                s.queue.push_back(Queued {
                    offset: r.offset,
                    appended_ms: r.time_ms,
                    notification,
                });
            }
            let next = self.store.range(s.entity).map_or(0, |r| r.end);
            s.live = s.next_send + s.queue.len() as u64 == next;
        }
        let Some(q) = s.queue.pop_front() else {
            s.idle = true;
            return Ok(None);
        };
        debug_assert_eq!(q.offset, s.next_send);
        s.in_flight.push_back(InFlight {
            offset: q.offset,
            sent_ms: now_ms,
            appended_ms: q.appended_ms,
        });
        s.next_send = q.offset + 1;
        s.sent_end = s.sent_end.max(s.next_send);
        self.stats.sent += 1;
        Ok(Some(Frame::Notification {
            offset: q.offset,
            notification: q.notification,
        }))
    }

    /// A cumulative ack: the subscriber holds every notification up to and including
    /// `offset`. Acks of older offsets are ignored; an ack of an offset never sent is
    /// [`HubError::AckBeyondSent`] (close the connection with
    /// [`frame::ErrorCode::PROTOCOL`]).
    pub fn handle_ack(
        &mut self,
        session: SessionId,
        offset: u64,
        now_ms: u64,
    ) -> Result<(), HubError> {
        let s = self
            .sessions
            .get_mut(&session)
            .ok_or(HubError::UnknownSession(session))?;
        if offset >= s.sent_end {
            return Err(HubError::AckBeyondSent {
                offset,
                sent: s.sent_end,
            });
        }
        if offset < s.acked {
            return Ok(());
        }
        while let Some(f) = s.in_flight.front()
            && f.offset <= offset
        {
            self.stats.delivered += 1;
            let sample = now_ms.saturating_sub(f.appended_ms);
            if self.latency.len() < LATENCY_SAMPLES {
                self.latency.push(sample);
            } else {
                self.latency[(self.latency_seen % LATENCY_SAMPLES as u64) as usize] = sample;
            }
            self.latency_seen += 1;
            s.in_flight.pop_front();
        }
        s.acked = offset + 1;
        if s.next_send < s.acked {
            // A late ack for what a timeout had rewound: skip ahead.
            s.rewind(s.acked);
        }
        let entity = s.entity;
        let state = self.entities.get_mut(&entity).expect("session's entity");
        if s.acked > state.acked {
            state.acked = s.acked;
            state.dirty = true;
            match self.config.ack_sync {
                AckSync::Immediate => {
                    self.store.save_acked(entity, state.acked)?;
                    state.dirty = false;
                }
                AckSync::Interval(ms) => {
                    self.flush_at.get_or_insert(now_ms.saturating_add(ms));
                }
            }
        }
        Ok(())
    }

    /// Ends a session (the connection closed). Un-acked notifications stay un-acked and are
    /// sent to the next session; the entity's acked offset is saved.
    pub fn disconnect(&mut self, session: SessionId) -> Result<(), HubError> {
        let s = self
            .sessions
            .remove(&session)
            .ok_or(HubError::UnknownSession(session))?;
        let state = self.entities.get_mut(&s.entity).expect("session's entity");
        if state.session == Some(session) {
            state.session = None;
        }
        if state.dirty {
            self.store.save_acked(s.entity, state.acked)?;
            state.dirty = false;
        }
        Ok(())
    }

    /// The earliest time [`Hub::handle_timeout`] has work: an ack deadline, a pending save of
    /// acked offsets, or a retention run.
    pub fn poll_timeout(&self) -> Option<u64> {
        let timeout = self.config.ack_timeout_ms;
        self.sessions
            .values()
            .filter_map(|s| {
                s.in_flight
                    .front()
                    .map(|f| f.sent_ms.saturating_add(timeout))
            })
            .chain(self.flush_at)
            .chain(self.retention_at)
            .min()
    }

    /// Does what is due at `now_ms`: rewinds sessions whose oldest un-acked notification timed
    /// out (they are woken to send it again), saves acked offsets, runs retention.
    pub fn handle_timeout(&mut self, now_ms: u64) -> Result<(), HubError> {
        let timeout = self.config.ack_timeout_ms;
        for (&sid, s) in &mut self.sessions {
            if s.in_flight
                .front()
                .is_some_and(|f| f.sent_ms.saturating_add(timeout) <= now_ms)
            {
                self.stats.retransmitted += s.rewind(s.acked) as u64;
                s.idle = false;
                self.events.push_back(HubEvent::Wake(sid));
            }
        }
        if self.flush_at.is_some_and(|t| t <= now_ms) {
            self.flush()?;
        }
        if self.retention_at.is_some_and(|t| t <= now_ms) {
            self.enforce_retention(now_ms)?;
            self.retention_at = Some(now_ms.saturating_add(self.config.retention_interval_ms));
        }
        Ok(())
    }

    /// Saves every changed acked offset now (before a planned shutdown, say): all of them in
    /// one write of the store (the file store: one table file, one write and two `fsync`s
    /// however many entities changed).
    pub fn flush(&mut self) -> Result<(), HubError> {
        if self.entities.values().any(|s| s.dirty) {
            let all: Vec<(EntityId, u64)> =
                self.entities.iter().map(|(e, s)| (*e, s.acked)).collect();
            self.store.save_acked_all(&all)?;
            for state in self.entities.values_mut() {
                state.dirty = false;
            }
        }
        self.flush_at = None;
        Ok(())
    }

    /// Applies [`HubConfig::retention`] to every log now. Un-acked notifications deleted by
    /// the size cap are reported ([`HubEvent::DataLost`]), the entity's acked offset moves
    /// past them, and a connected subscriber gets a [`Frame::Gap`].
    pub fn enforce_retention(&mut self, now_ms: u64) -> Result<(), HubError> {
        let policy = self.config.retention.clone();
        for (&entity, state) in &mut self.entities {
            let out = self.store.retain(entity, now_ms, &policy, state.acked)?;
            if let Some(lost) = out.lost {
                self.stats.lost += lost.end - lost.start;
                self.events.push_back(HubEvent::DataLost { entity, lost });
            }
            let start = self.store.range(entity).map_or(0, |r| r.start);
            if state.acked < start {
                state.acked = start;
                self.store.save_acked(entity, start)?;
                state.dirty = false;
            }
            if let Some(sid) = state.session
                && let Some(s) = self.sessions.get_mut(&sid)
                && (s.acked < start || s.next_send < start)
            {
                if s.acked < start {
                    s.pending.push_back(Frame::Gap {
                        from: s.acked,
                        to: start,
                    });
                    s.acked = start;
                }
                s.sent_end = s.sent_end.max(start);
                s.rewind(start);
                s.idle = false;
                self.events.push_back(HubEvent::Wake(sid));
            }
        }
        Ok(())
    }

    /// The next event for the shell, if any.
    pub fn poll_event(&mut self) -> Option<HubEvent> {
        self.events.pop_front()
    }

    /// Figures for metrics.
    pub fn stats(&self) -> HubStats {
        let mut st = self.stats.clone();
        st.entities = self.entities.len();
        st.sessions = self.sessions.len();
        st.disk_bytes = self.store.size_bytes();
        for s in self.sessions.values() {
            st.queued += s.queue.len();
            st.in_flight += s.in_flight.len();
            st.lagging += usize::from(!s.live);
            let next = self.store.range(s.entity).map_or(0, |r| r.end);
            st.max_lag = st.max_lag.max(next.saturating_sub(s.acked));
        }
        st
    }

    /// Publish-to-ack latencies in milliseconds since the last call (a sample of at most
    /// 4,096 when there were more).
    pub fn take_latency_samples(&mut self) -> Vec<u64> {
        self.latency_seen = 0;
        std::mem::take(&mut self.latency)
    }

    /// The entity's first un-acked offset, if it has a log.
    pub fn acked_offset(&self, entity: EntityId) -> Option<u64> {
        self.entities.get(&entity).map(|e| e.acked)
    }

    /// The offsets the entity's log holds, if it has one.
    pub fn log_range(&self, entity: EntityId) -> Option<Range<u64>> {
        self.store.range(entity)
    }

    /// The entity a session belongs to.
    pub fn session_entity(&self, session: SessionId) -> Option<EntityId> {
        self.sessions.get(&session).map(|s| s.entity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indicator::Tlp;

    fn note(entity: u32, i: u64) -> Notification {
        Notification {
            id: NotificationId(u128::from(i) << 32 | u128::from(entity)),
            created_at_ms: i,
            entity: EntityId(entity),
            tlp: Tlp::Green,
            kind: NotificationKind::Hit,
            payload: format!("{{\"n\":{i}}}").into_bytes(),
        }
    }

    fn config() -> HubConfig {
        HubConfig {
            queue_capacity: 8,
            max_in_flight: 4,
            read_batch: 3,
            ack_timeout_ms: 1000,
            ..HubConfig::default()
        }
    }

    fn hub() -> Hub<MemoryStore> {
        Hub::with_store(MemoryStore::default(), config(), 0).unwrap()
    }

    #[test]
    fn hub_is_send() {
        fn is_send<T: Send>() {}
        is_send::<Hub>();
        is_send::<Hub<MemoryStore>>();
    }

    #[test]
    fn window_limits_in_flight_and_timeout_resends() {
        let mut hub = hub();
        let e = EntityId(1);
        let s = hub.connect(e, StartFrom::Acked, 0).unwrap();
        for i in 0..10 {
            hub.publish(&note(1, i), 0).unwrap();
        }
        let mut got = Vec::new();
        while let Some(Frame::Notification { offset, .. }) = hub.poll_transmit(s, 0).unwrap() {
            got.push(offset);
        }
        assert_eq!(got, [0, 1, 2, 3], "window of 4");
        assert_eq!(hub.poll_timeout(), Some(0), "retention timer first");
        hub.handle_timeout(0).unwrap();
        hub.handle_ack(s, 1, 10).unwrap();
        assert_eq!(hub.poll_timeout(), Some(1000));
        hub.handle_timeout(1000).unwrap();
        assert_eq!(hub.poll_event(), Some(HubEvent::Wake(s)));
        assert_eq!(hub.stats().retransmitted, 2);
        let mut again = Vec::new();
        while let Some(Frame::Notification { offset, .. }) = hub.poll_transmit(s, 1000).unwrap() {
            again.push(offset);
        }
        assert_eq!(again, [2, 3, 4, 5]);
        // A late ack of what was sent before the rewind is still valid.
        hub.handle_ack(s, 5, 1001).unwrap();
        assert!(matches!(
            hub.handle_ack(s, 6, 1001),
            Err(HubError::AckBeyondSent { offset: 6, sent: 6 })
        ));
        assert_eq!(hub.acked_offset(e), Some(6));
        assert_eq!(hub.stats().delivered, 6);
        assert_eq!(hub.take_latency_samples().len(), 6);
    }

    #[test]
    fn a_batch_with_an_oversized_record_is_refused_whole() {
        let mut hub = Hub::with_store(MemoryStore::new(256), config(), 0).unwrap();
        hub.publish_batch(&[note(1, 0), note(2, 0)], 0).unwrap();
        let mut big = note(2, 1);
        big.payload = vec![b'x'; 1000];
        let batch = [note(1, 1), big, note(3, 1)];
        assert!(matches!(
            hub.publish_batch(&batch, 1),
            Err(HubError::Log(LogError::RecordTooLarge { .. }))
        ));
        // Nobody got any of it: a resend (without the bad record) delivers each once.
        assert_eq!(hub.log_range(EntityId(1)), Some(0..1));
        assert_eq!(hub.log_range(EntityId(2)), Some(0..1));
        assert_eq!(hub.log_range(EntityId(3)), None);
        hub.publish_batch(&[note(1, 1), note(3, 1)], 2).unwrap();
        assert_eq!(hub.log_range(EntityId(1)), Some(0..2));
        assert_eq!(hub.log_range(EntityId(3)), Some(0..1));
    }

    #[test]
    fn second_connect_replaces_the_first() {
        let mut hub = hub();
        let a = hub.connect(EntityId(3), StartFrom::Acked, 0).unwrap();
        let b = hub.connect(EntityId(3), StartFrom::Acked, 0).unwrap();
        assert_eq!(
            hub.poll_event(),
            Some(HubEvent::Closed {
                session: a,
                entity: EntityId(3)
            })
        );
        assert!(matches!(
            hub.poll_transmit(a, 0),
            Err(HubError::UnknownSession(_))
        ));
        assert_eq!(hub.poll_transmit(b, 0).unwrap(), None);
        hub.publish(&note(3, 0), 0).unwrap();
        assert_eq!(hub.poll_event(), Some(HubEvent::Wake(b)));
        assert!(hub.poll_transmit(b, 0).unwrap().is_some());
    }
}
