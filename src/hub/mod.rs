//! The distribution core, sans-IO: per-entity durable notification logs, acked offsets,
//! bounded per-subscriber queues with fall-back to disk, and the wire frames — with no
//! sockets, no async runtime and no clock of its own. A thin tokio + quinn shell (`net`) drives
//! it; tests drive it with a simulated clock.
//!
//! - [`Hub`]: owns every entity's [`Log`] and every subscriber session. The shell calls
//!   [`Hub::publish`] / [`Hub::publish_batch`] for routed notifications, [`Hub::connect`] when a
//!   subscriber sends `Subscribe`, pulls frames with [`Hub::poll_transmit`], feeds acks to
//!   [`Hub::handle_ack`], and keeps one timer: [`Hub::poll_timeout`] / [`Hub::handle_timeout`].
//!   [`Hub::poll_event`] says which session has something new to send ([`HubEvent::Wake`]),
//!   which was replaced, and what retention forced out.
//! - [`log`]: the append-only segment files, recovery and retention; [`offsets`]: the acked
//!   offset per entity; [`frame`]: the wire format; [`notification`]: what is stored and sent.
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
//! use cwn::hub::{EntityId, Frame, Hub, HubConfig, Notification, NotificationId, NotificationKind, StartFrom};
//! use cwn::indicator::Tlp;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let mut hub = Hub::open(HubConfig::new(dir.path()), 0).unwrap();
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
pub mod journal;
pub mod log;
pub mod notification;
pub mod offsets;

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

pub use frame::{Frame, FrameError};
pub use journal::Journal;
pub use log::{Log, LogError, LogOptions, Record, Retention};
pub use notification::{Notification, NotificationId, NotificationKind};

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
    /// Each ack that advances an entity's offset is written and `fsync`ed before
    /// [`Hub::handle_ack`] returns: nothing acked is re-sent after a crash.
    Immediate,
    /// At most this many milliseconds after the first unsaved ack (by
    /// [`Hub::handle_timeout`]), on disconnect, and on [`Hub::flush`]. A crash re-sends what
    /// was acked since the last save; the receiver drops the repeats by id.
    Interval(u64),
}

/// How a [`Hub`] behaves.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// Folder holding one folder per entity.
    pub data_dir: PathBuf,
    /// Segment size, record limit, `fsync`.
    pub log: LogOptions,
    /// What to delete, checked every [`HubConfig::retention_interval_ms`].
    pub retention: Retention,
    /// How often retention runs.
    pub retention_interval_ms: u64,
    /// Notifications held in memory per session, beyond which it reads from disk.
    pub queue_capacity: usize,
    /// Notifications sent but not acked, per session, beyond which sending pauses.
    pub max_in_flight: usize,
    /// Records read from disk at once by a session catching up.
    pub read_batch: usize,
    /// Payload bytes read from disk at once by a session catching up.
    pub read_bytes: usize,
    /// After this long without an ack, un-acked notifications are sent again.
    pub ack_timeout_ms: u64,
    /// When acks reach the disk.
    pub ack_sync: AckSync,
    /// With `fsync` on, a checkpoint (the entity logs synced, the journal files they cover
    /// deleted) starts once the journal file holds this many bytes.
    pub journal_checkpoint_bytes: u64,
    /// A file the caller appends to beside the logs whose records must be as durable as the
    /// notifications they go with (the hub's disclosure audit log): bytes handed to
    /// [`Hub::publish_batch_with`] travel in the batch's journal append, are written back at
    /// their offset on replay, and the file is synced at every checkpoint. `None`: no such
    /// file.
    pub side_file: Option<PathBuf>,
}

/// The journal's entity number for [`HubConfig::side_file`] records; no entity has it.
pub const SIDE_ENTITY: u32 = u32::MAX;

impl HubConfig {
    /// Defaults for a hub keeping its data in `data_dir`: 64 MiB segments, 1,024 queued and
    /// 256 in flight per session, 30 s ack timeout, acks saved within a second, 7 days' and
    /// 1 GiB per entity retention checked every minute, a journal checkpoint every 32 MiB.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        HubConfig {
            data_dir: data_dir.into(),
            log: LogOptions::default(),
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
            journal_checkpoint_bytes: 32 << 20,
            side_file: None,
        }
    }
}

/// A hub failure.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The log or an acked-offset file failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// A notification for entity number [`SIDE_ENTITY`], which the journal keeps for the
    /// side file.
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

struct EntityState {
    log: Log,
    /// First offset not acked, as last known (saved when `dirty` is false).
    acked: u64,
    dirty: bool,
    session: Option<SessionId>,
}

impl EntityState {
    fn save(&mut self, sync: bool) -> Result<(), LogError> {
        offsets::store(&self.log.dir().join(offsets::ACKED_FILE), self.acked, sync)?;
        self.dirty = false;
        Ok(())
    }
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
    /// session reads from disk.
    live: bool,
    in_flight: VecDeque<InFlight>,
    pending: VecDeque<Frame>,
    /// `poll_transmit` found nothing: wake the shell when something arrives.
    idle: bool,
}

impl Session {
    /// Forgets what is queued and in flight and starts sending again at `from` from disk.
    fn rewind(&mut self, from: u64) -> usize {
        let n = self.in_flight.len();
        self.in_flight.clear();
        self.queue.clear();
        self.next_send = from;
        self.live = false;
        n
    }
}

/// The distribution core. See the [module docs](self).
pub struct Hub {
    config: HubConfig,
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
    /// The write-ahead journal, when logs are synced: one `fdatasync` per published batch.
    journal: Option<Journal>,
    /// Entities whose logs took records, durable only through the journal, since the last
    /// checkpoint began.
    unsynced: HashSet<EntityId>,
    /// Closed journal files that no finished checkpoint has covered yet.
    retired: Vec<PathBuf>,
    /// The checkpoint running in the background.
    checkpoint: Option<std::thread::JoinHandle<Checkpointed>>,
    /// In [`Hub::open`], before the journal replay and the acked-offset checks.
    opening: bool,
}

/// What a background checkpoint did: the journal files it covered and deleted, or those it
/// could not cover, the entities whose logs are still to sync, and why.
type Checkpointed = Result<(), (Vec<PathBuf>, Vec<EntityId>, LogError)>;

/// `fdatasync`s files by path, in parallel; a file deleted meanwhile (retention) is skipped.
fn sync_paths(paths: &[PathBuf]) -> Result<(), LogError> {
    let sync = |chunk: &[PathBuf]| -> Result<(), LogError> {
        for p in chunk {
            match fs::File::open(p).and_then(|f| f.sync_data()) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(LogError::Io {
                        path: p.clone(),
                        source,
                    });
                }
            }
        }
        Ok(())
    };
    if paths.is_empty() {
        return Ok(());
    }
    let per_thread = paths.len().div_ceil(MAX_PARALLEL_SYNCS);
    std::thread::scope(|scope| {
        let threads: Vec<_> = paths
            .chunks(per_thread)
            .map(|chunk| scope.spawn(move || sync(chunk)))
            .collect();
        threads
            .into_iter()
            .try_for_each(|t| t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    })
}

fn entity_dir(data: &Path, e: EntityId) -> PathBuf {
    data.join(format!("{:010}", e.0))
}

/// At most this many threads `fsync` at once in a group commit. The syncs wait on the disk,
/// not the CPU, and the file system folds concurrent ones into fewer journal commits, so
/// there are more of them than cores.
const MAX_PARALLEL_SYNCS: usize = 32;

/// [`Log::sync_written`] for every log, in parallel; the outcomes in the order of `logs`.
fn sync_logs(logs: &[&Log]) -> Vec<Result<(), LogError>> {
    let pending: Vec<usize> = (0..logs.len())
        .filter(|&i| logs[i].has_unsynced())
        .collect();
    let mut out: Vec<Result<(), LogError>> = logs.iter().map(|_| Ok(())).collect();
    if pending.len() <= 1 {
        for &i in &pending {
            out[i] = logs[i].sync_written();
        }
        return out;
    }
    let per_thread = pending.len().div_ceil(MAX_PARALLEL_SYNCS);
    let results: Vec<(usize, Result<(), LogError>)> = std::thread::scope(|scope| {
        let sync = move |chunk: &[usize]| -> Vec<(usize, Result<(), LogError>)> {
            chunk.iter().map(|&i| (i, logs[i].sync_written())).collect()
        };
        let mut chunks = pending.chunks(per_thread);
        let here = chunks.next().unwrap_or_default();
        let mut inline = Vec::new();
        let mut threads = Vec::new();
        for chunk in chunks {
            match std::thread::Builder::new()
                .name("cwn-fsync".into())
                .spawn_scoped(scope, move || sync(chunk))
            {
                Ok(t) => threads.push(t),
                // No thread to spare: sync this share here instead.
                Err(_) => inline.push(chunk),
            }
        }
        let mut results = sync(here);
        for chunk in inline {
            results.extend(sync(chunk));
        }
        for t in threads {
            results.extend(t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
        results
    });
    for (i, r) in results {
        out[i] = r;
    }
    out
}

impl Hub {
    /// Opens the hub's data folder (creating it), recovering every entity's log and acked
    /// offset. `now_ms` starts the retention timer.
    pub fn open(config: HubConfig, now_ms: u64) -> Result<Hub, HubError> {
        let dir = &config.data_dir;
        fs::create_dir_all(dir).map_err(|source| LogError::Io {
            path: dir.clone(),
            source,
        })?;
        let mut ids = Vec::new();
        for e in fs::read_dir(dir).map_err(|source| LogError::Io {
            path: dir.clone(),
            source,
        })? {
            let e = e.map_err(|source| LogError::Io {
                path: dir.clone(),
                source,
            })?;
            if let Some(name) = e.file_name().to_str()
                && name.len() == 10
                && let Ok(id) = name.parse::<u32>()
                && id != SIDE_ENTITY
            {
                ids.push(EntityId(id));
            }
        }
        ids.sort_unstable();
        let retention_at = (config.retention != Retention::default()).then_some(now_ms);
        let mut hub = Hub {
            config,
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
            journal: None,
            unsynced: HashSet::new(),
            retired: Vec::new(),
            checkpoint: None,
            opening: true,
        };
        // The journal is read before the logs are opened: damage in a log that the journal
        // can write again is cut off and replayed instead of stopping the hub.
        let recovered = if hub.config.log.sync {
            Some(Journal::open(hub.config.data_dir.join("journal"))?)
        } else {
            None
        };
        let mut journaled: HashMap<u32, Vec<u64>> = HashMap::new();
        for r in recovered.iter().flat_map(|(_, rec)| &rec.records) {
            journaled.entry(r.entity).or_default().push(r.offset);
        }
        for offsets in journaled.values_mut() {
            offsets.sort_unstable();
            offsets.dedup();
        }
        for id in ids {
            let held = journaled.get(&id.0).map_or(&[][..], Vec::as_slice);
            let covers = |want: Range<u64>| {
                let from = held.partition_point(|&o| o < want.start);
                let need = want.end.saturating_sub(want.start);
                usize::try_from(need).is_ok_and(|n| {
                    held.get(from..from + n)
                        .is_some_and(|run| run.iter().copied().eq(want.clone()))
                })
            };
            hub.open_entity(id, Some(&covers))?;
        }
        if let Some((journal, recovery)) = recovered {
            hub.replay_journal(journal, recovery)?;
        }
        hub.load_acked_table()?;
        hub.check_acked();
        hub.opening = false;
        Ok(hub)
    }

    /// Opens the journal and writes into each entity's log the journaled records that it
    /// lacks (a crash before the checkpoint that would have synced it), syncs those logs and
    /// deletes the replayed journal files.
    fn replay_journal(
        &mut self,
        journal: Journal,
        recovery: journal::JournalRecovery,
    ) -> Result<(), HubError> {
        for (path, at) in &recovery.torn {
            tracing::warn!(
                "journal {}: damaged record at byte {at}; replay of that file stops there \
                 (an append interrupted by a crash, never acknowledged)",
                path.display()
            );
        }
        let mut touched = Vec::new();
        let mut replayed = 0u64;
        let mut side = Vec::new();
        for r in recovery.records {
            if r.entity == SIDE_ENTITY {
                side.push(r);
                continue;
            }
            let id = EntityId(r.entity);
            let state = self.entity(id)?;
            let next = state.log.next_offset();
            if r.offset == next {
                state.log.write_batch(&[&r.payload], r.time_ms)?;
                touched.push(id);
                replayed += 1;
            } else if r.offset > next {
                tracing::warn!(
                    "journal: entity {} record {} lies past its log's end {next}; not replayed",
                    id.0,
                    r.offset
                );
            }
        }
        touched.sort_unstable();
        touched.dedup();
        let synced = {
            let logs: Vec<&Log> = touched.iter().map(|e| &self.entities[e].log).collect();
            sync_logs(&logs)
        };
        for (e, synced) in touched.iter().zip(synced) {
            self.entities
                .get_mut(e)
                .expect("touched entity")
                .log
                .settle(synced)?;
        }
        // The side file's journaled records, written back where they belong (the same bytes
        // again where they survived) and synced before the journal that holds them goes.
        if self.config.side_file.is_none() && !side.is_empty() {
            tracing::warn!(
                "journal: {} side-file records and no side file configured; dropped",
                side.len()
            );
        }
        if let Some(path) = &self.config.side_file
            && !side.is_empty()
        {
            use std::io::{Seek as _, SeekFrom, Write as _};
            let mut f = fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(false)
                .open(path)
                .map_err(log::io_err(path))?;
            for r in &side {
                f.seek(SeekFrom::Start(r.offset))
                    .and_then(|_| f.write_all(&r.payload))
                    .map_err(log::io_err(path))?;
            }
            f.sync_all().map_err(log::io_err(path))?;
            tracing::info!(
                "journal: {} records of {} written back",
                side.len(),
                path.display()
            );
        }
        journal::remove_files(&recovery.files)?;
        if replayed > 0 {
            tracing::info!(
                "journal: {replayed} records replayed into {} entity logs",
                touched.len()
            );
        }
        self.journal = Some(journal);
        Ok(())
    }

    /// Collects a finished checkpoint and, once the journal file is big enough, starts the
    /// next: the journal moves to a new file, and a background thread `fsync`s every log
    /// written since the last checkpoint and then deletes the closed journal files. Records
    /// written after the switch are in the new file, so nothing waits for this.
    fn checkpoint(&mut self) -> Result<(), HubError> {
        if self.checkpoint.as_ref().is_some_and(|t| t.is_finished()) {
            let done = self.checkpoint.take().expect("checked").join();
            match done.unwrap_or_else(|p| std::panic::resume_unwind(p)) {
                Ok(()) => {}
                Err((files, entities, e)) => {
                    tracing::warn!("journal checkpoint failed (retried with the next): {e}");
                    self.retired.splice(0..0, files);
                    // Their logs are still to sync: the next checkpoint must not delete the
                    // journal files that cover them without syncing them first.
                    self.unsynced.extend(entities);
                }
            }
        }
        let Some(journal) = self.journal.as_mut() else {
            return Ok(());
        };
        if journal.len() < self.config.journal_checkpoint_bytes || self.checkpoint.is_some() {
            return Ok(());
        }
        self.retired.push(journal.rotate()?);
        let files = std::mem::take(&mut self.retired);
        let entities: Vec<EntityId> = self.unsynced.drain().collect();
        let paths: Vec<PathBuf> = entities
            .iter()
            .filter_map(|e| self.entities.get(e).map(|s| s.log.active_path()))
            .chain(self.config.side_file.clone())
            .collect();
        let work = move || match sync_paths(&paths).and_then(|()| journal::remove_files(&files)) {
            Ok(()) => Ok(()),
            Err(e) => Err((files, entities, e)),
        };
        self.checkpoint = Some(
            std::thread::Builder::new()
                .name("cwn-checkpoint".into())
                .spawn(work)
                .map_err(|source| LogError::Io {
                    path: self.config.data_dir.join("journal"),
                    source,
                })?,
        );
        Ok(())
    }

    /// The entity's state, opening (or creating) its log on first use.
    fn entity(&mut self, id: EntityId) -> Result<&mut EntityState, HubError> {
        if !self.entities.contains_key(&id) {
            self.open_entity(id, None)?;
        }
        Ok(self.entities.get_mut(&id).expect("opened"))
    }

    /// Opens (or creates) the entity's log; `covers` says which offsets the journal about to
    /// be replayed holds, so that damage it can write again is cut off ([`Log::open_repairing`]).
    fn open_entity(
        &mut self,
        id: EntityId,
        covers: Option<&dyn Fn(Range<u64>) -> bool>,
    ) -> Result<(), HubError> {
        {
            let dir = entity_dir(&self.config.data_dir, id);
            let log = Log::open_repairing(&dir, self.config.log.clone(), covers)?;
            if let Some(d) = &log.recovery().repaired {
                tracing::warn!(
                    "{}: damaged at byte {} ({}); offsets {}..{} cut off and written again \
                     from the journal",
                    d.path.display(),
                    d.position,
                    d.reason,
                    d.offsets.start,
                    d.offsets.end
                );
            }
            let (start, next) = (log.start(), log.next_offset());
            let (acked, reset) = match offsets::load(&dir.join(offsets::ACKED_FILE)) {
                Ok(None) => (start, None),
                // While opening, the journal may yet extend the log: checked after replay.
                Ok(Some(a)) if a > next && !self.opening => (
                    next,
                    Some(format!("acked offset {a} is past the log's end {next}")),
                ),
                Ok(Some(a)) => (a, None),
                Err(e) => (start, Some(e.to_string())),
            };
            if let Some(reason) = reset {
                self.events.push_back(HubEvent::AckedReset {
                    entity: id,
                    acked,
                    reason,
                });
            }
            self.entities.insert(
                id,
                EntityState {
                    log,
                    acked,
                    dirty: false,
                    session: None,
                },
            );
        }
        Ok(())
    }

    /// Publishes one notification to its entity's log (durably, before returning) and to the
    /// entity's session; returns its offset.
    pub fn publish(&mut self, n: &Notification, now_ms: u64) -> Result<u64, HubError> {
        Ok(self.publish_batch(std::slice::from_ref(n), now_ms)?[0])
    }

    /// Publishes notifications and returns their offsets in input order, durable when it
    /// returns: every entity's records are written first, then all the touched logs are
    /// `fsync`ed at once, in parallel (group commit across entities: a batch over 16 entities
    /// waits for about one `fsync`, not 16 in a row). Subscribers see a notification only
    /// after its `fsync` returned. On error, the entities whose records were written and
    /// synced keep them (and deliver them); the others hold none of the batch. Publishing the
    /// batch again stores repeats, which receivers drop by id.
    pub fn publish_batch(
        &mut self,
        batch: &[Notification],
        now_ms: u64,
    ) -> Result<Vec<u64>, HubError> {
        self.publish_batch_with(batch, now_ms, None)
    }

    /// [`Hub::publish_batch`], with `side`: bytes the caller wrote to the
    /// [`HubConfig::side_file`] at that offset, made durable by the same journal append as the
    /// batch (no `fsync` of their own) and written back on replay if a crash lost them.
    pub fn publish_batch_with(
        &mut self,
        batch: &[Notification],
        now_ms: u64,
        side: Option<(u64, &[u8])>,
    ) -> Result<Vec<u64>, HubError> {
        if batch.iter().any(|n| n.entity.0 == SIDE_ENTITY) {
            return Err(HubError::ReservedEntity);
        }
        // All or nothing: a record no log would take fails the batch before anything is
        // written, instead of half way with some entities served and a resend failing again.
        let max = self.config.log.max_record_bytes as usize;
        if let Some(n) = batch.iter().find(|n| n.encoded_len() > max) {
            return Err(LogError::RecordTooLarge {
                len: n.encoded_len(),
                max: self.config.log.max_record_bytes,
            }
            .into());
        }
        let mut offsets = vec![0; batch.len()];
        let mut groups: Vec<(EntityId, Vec<usize>)> = Vec::new();
        let mut group_of: HashMap<EntityId, usize> = HashMap::new();
        for (i, n) in batch.iter().enumerate() {
            let g = *group_of.entry(n.entity).or_insert_with(|| {
                groups.push((n.entity, Vec::new()));
                groups.len() - 1
            });
            groups[g].1.push(i);
        }
        // 1. Write: every entity's records reach its file, none is synced yet.
        let mut failed: Option<HubError> = None;
        let mut written: Vec<(EntityId, Vec<usize>, u64)> = Vec::with_capacity(groups.len());
        let mut buf = std::mem::take(&mut self.scratch);
        for (entity, idx) in groups {
            buf.clear();
            let mut ends = Vec::with_capacity(idx.len());
            for &i in &idx {
                batch[i].encode(&mut buf);
                ends.push(buf.len());
            }
            let slices: Vec<&[u8]> = ends
                .iter()
                .scan(0, |start, &end| {
                    let s = &buf[*start..end];
                    *start = end;
                    Some(s)
                })
                .collect();
            let appended = self
                .entity(entity)
                .and_then(|state| Ok(state.log.write_batch(&slices, now_ms)?));
            match appended {
                Ok(range) => {
                    if let Some(j) = self.journal.as_mut() {
                        for (k, rec) in slices.iter().enumerate() {
                            j.stage(entity.0, range.start + k as u64, now_ms, rec);
                        }
                    }
                    written.push((entity, idx, range.start))
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        self.scratch = buf;
        if failed.is_none()
            && let (Some(j), Some((at, bytes)), Some(_)) =
                (self.journal.as_mut(), side, &self.config.side_file)
        {
            j.stage(SIDE_ENTITY, at, now_ms, bytes);
        }
        // A write failed half way: cut off what the others wrote, so that the batch is all
        // or nothing and its resend does not deliver twice.
        if let Some(e) = failed {
            if let Some(j) = self.journal.as_mut() {
                j.discard();
            }
            for (entity, _, _) in written {
                let state = self.entities.get_mut(&entity).expect("written entity");
                let _ = state.log.settle(Err(LogError::Io {
                    path: state.log.dir().to_path_buf(),
                    source: std::io::Error::other("another entity's write failed"),
                }));
            }
            return Err(e);
        }
        // 2. Sync: one journal append for the whole batch (or, without a journal, all
        // touched files together).
        let synced: Vec<Result<(), LogError>> = match self.journal.as_mut() {
            Some(j) => match j.commit() {
                Ok(()) => {
                    self.unsynced.extend(written.iter().map(|(e, _, _)| *e));
                    written.iter().map(|_| Ok(())).collect()
                }
                Err(e) => {
                    let (path, msg) = (j.path(), e.to_string());
                    written
                        .iter()
                        .map(|_| {
                            Err(LogError::Io {
                                path: path.clone(),
                                source: std::io::Error::other(msg.clone()),
                            })
                        })
                        .collect()
                }
            },
            None => {
                let logs: Vec<&Log> = written
                    .iter()
                    .map(|(e, _, _)| &self.entities[e].log)
                    .collect();
                sync_logs(&logs)
            }
        };
        // 3. Deliver what is durable; cut off what is not.
        let capacity = self.config.queue_capacity;
        for ((entity, idx, start), synced) in written.into_iter().zip(synced) {
            let state = self.entities.get_mut(&entity).expect("written entity");
            if let Err(e) = state.log.settle(synced) {
                failed.get_or_insert(e.into());
                continue;
            }
            let session = state.session;
            self.stats.published += idx.len() as u64;
            for (k, &i) in idx.iter().enumerate() {
                offsets[i] = start + k as u64;
            }
            let Some(sid) = session else { continue };
            let s = self
                .sessions
                .get_mut(&sid)
                .expect("entity's session exists");
            for (k, &i) in idx.iter().enumerate() {
                if !s.live {
                    break;
                }
                if s.queue.len() < capacity {
                    s.queue.push_back(Queued {
                        offset: start + k as u64,
                        appended_ms: now_ms,
                        notification: batch[i].clone(),
                    });
                } else {
                    // Full: from here on this session reads from the log.
                    s.live = false;
                }
            }
            if s.idle {
                s.idle = false;
                self.events.push_back(HubEvent::Wake(sid));
            }
        }
        if let Err(e) = self.checkpoint() {
            failed.get_or_insert(e);
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(offsets),
        }
    }

    /// Waits for a running checkpoint to end and collects it; returns how many journal files
    /// remain (the current one included). For tests and shutdown.
    pub fn finish_checkpoint(&mut self) -> Result<usize, HubError> {
        if let Some(t) = self.checkpoint.as_ref() {
            while !t.is_finished() {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        self.checkpoint()?;
        let dir = self.config.data_dir.join("journal");
        let n = fs::read_dir(&dir)
            .map_err(|source| LogError::Io { path: dir, source })?
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "wal"))
            })
            .count();
        Ok(n)
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
        let state = self.entity(entity)?;
        let (first, next) = (state.log.start(), state.log.next_offset());
        let mut start = match from {
            StartFrom::Acked => state.acked,
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
            let state = self.entities.get_mut(&s.entity).expect("session's entity");
            let mut records = Vec::new();
            let want = self
                .config
                .read_batch
                .min(self.config.queue_capacity)
                .max(1);
            state
                .log
                .read(s.next_send, want, self.config.read_bytes, &mut records)?;
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
            s.live = s.next_send + s.queue.len() as u64 == state.log.next_offset();
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
        let state = self.entities.get_mut(&s.entity).expect("session's entity");
        if s.acked > state.acked {
            state.acked = s.acked;
            state.dirty = true;
            match self.config.ack_sync {
                AckSync::Immediate => state.save(self.config.log.sync)?,
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
            state.save(self.config.log.sync)?;
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

    /// Saves every changed acked offset now (before a planned shutdown, say): the whole
    /// table of acked offsets in one file, so that the cost is one write and two `fsync`s
    /// however many entities changed.
    pub fn flush(&mut self) -> Result<(), HubError> {
        if self.entities.values().any(|s| s.dirty) {
            let mut entries: Vec<(u32, u64)> =
                self.entities.iter().map(|(e, s)| (e.0, s.acked)).collect();
            entries.sort_unstable();
            offsets::store_table(
                &self.config.data_dir.join(offsets::ACKED_TABLE),
                &entries,
                self.config.log.sync,
            )?;
            for state in self.entities.values_mut() {
                state.dirty = false;
            }
        }
        self.flush_at = None;
        Ok(())
    }

    /// Takes the acked offsets of the table where they are ahead of the entities' own files.
    fn load_acked_table(&mut self) -> Result<(), HubError> {
        let path = self.config.data_dir.join(offsets::ACKED_TABLE);
        let table = match offsets::load_table(&path) {
            Ok(t) => t.unwrap_or_default(),
            Err(e) => {
                // The entities' own files still hold an older offset each: re-sending, not loss.
                tracing::warn!("{e}; acked offsets are taken from the entities' own files");
                Vec::new()
            }
        };
        for (id, acked) in table {
            let entity = EntityId(id);
            let Some(state) = self.entities.get_mut(&entity) else {
                continue;
            };
            state.acked = state.acked.max(acked);
        }
        Ok(())
    }

    /// After the journal replay: an acked offset past its log's end (the log lost more than
    /// the journal held) restarts delivery at the end and says so.
    fn check_acked(&mut self) {
        let mut ids: Vec<EntityId> = self.entities.keys().copied().collect();
        ids.sort_unstable();
        for entity in ids {
            let state = self.entities.get_mut(&entity).expect("listed");
            let next = state.log.next_offset();
            if state.acked > next {
                self.events.push_back(HubEvent::AckedReset {
                    entity,
                    acked: next,
                    reason: format!("acked offset {} is past the log's end {next}", state.acked),
                });
                state.acked = next;
                state.dirty = true;
            }
        }
    }

    /// Applies [`HubConfig::retention`] to every log now. Un-acked notifications deleted by
    /// the size cap are reported ([`HubEvent::DataLost`]), the entity's acked offset moves
    /// past them, and a connected subscriber gets a [`Frame::Gap`].
    pub fn enforce_retention(&mut self, now_ms: u64) -> Result<(), HubError> {
        let policy = self.config.retention.clone();
        for (&entity, state) in &mut self.entities {
            let out = state.log.retain(now_ms, &policy, state.acked)?;
            if let Some(lost) = out.lost {
                self.stats.lost += lost.end - lost.start;
                self.events.push_back(HubEvent::DataLost { entity, lost });
            }
            let start = state.log.start();
            if state.acked < start {
                state.acked = start;
                state.save(self.config.log.sync)?;
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
        st.disk_bytes = self.entities.values().map(|e| e.log.size_bytes()).sum();
        for s in self.sessions.values() {
            st.queued += s.queue.len();
            st.in_flight += s.in_flight.len();
            st.lagging += usize::from(!s.live);
            let next = self.entities[&s.entity].log.next_offset();
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
        self.entities
            .get(&entity)
            .map(|e| e.log.start()..e.log.next_offset())
    }

    /// The entity a session belongs to.
    pub fn session_entity(&self, session: SessionId) -> Option<EntityId> {
        self.sessions.get(&session).map(|s| s.entity)
    }

    /// What opening the entity's log repaired (a torn tail cut off).
    pub fn recovery(&self, entity: EntityId) -> Option<&log::Recovery> {
        self.entities.get(&entity).map(|e| e.log.recovery())
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

    fn config(dir: &Path) -> HubConfig {
        let mut c = HubConfig::new(dir);
        c.log.sync = false;
        c.log.segment_bytes = 4096;
        c.queue_capacity = 8;
        c.max_in_flight = 4;
        c.read_batch = 3;
        c.ack_timeout_ms = 1000;
        c
    }

    #[test]
    fn hub_is_send() {
        fn is_send<T: Send>() {}
        is_send::<Hub>();
    }

    #[test]
    fn window_limits_in_flight_and_timeout_resends() {
        let d = tempfile::tempdir().unwrap();
        let mut hub = Hub::open(config(d.path()), 0).unwrap();
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
        let d = tempfile::tempdir().unwrap();
        let mut c = config(d.path());
        c.log.max_record_bytes = 256;
        let mut hub = Hub::open(c, 0).unwrap();
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
        let d = tempfile::tempdir().unwrap();
        let mut hub = Hub::open(config(d.path()), 0).unwrap();
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
