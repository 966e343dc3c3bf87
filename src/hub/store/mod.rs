//! Where the hub keeps notifications and acked offsets: the [`Store`] trait the core talks to,
//! and its implementations.
//!
//! - [`FileStore`] (`file`): the embedded default. One append-only [`Log`] per entity, a
//!   write-ahead [`Journal`] that makes a batch over many entities durable with one
//!   `fdatasync`, and the acked offsets in per-entity files and one table ([`offsets`]).
//! - [`MemoryStore`] (`memory`): everything in memory, for tests that drive the core with a
//!   simulated clock, and for benchmarks that measure the core alone.
//!
//! A store owns the bytes and their durability, never sessions, windows or timers (those are
//! the core's, [`Hub`](super::Hub)). Work that would block the core for long — the file
//! store's checkpoint, which `fsync`s every log written since the last one — is handed to the
//! caller as a [`Background`] job ([`Store::poll_background`]) to run where it likes (a
//! blocking thread of the shell) and report back ([`Store::handle_background`]).

pub mod file;
#[cfg(feature = "cluster")]
pub mod jetstream;
pub mod journal;
pub mod log;
pub mod memory;
pub mod numbering;
pub mod offsets;

use std::ops::Range;

pub use file::{FileStore, FileStoreConfig};
pub use journal::Journal;
pub use log::{Log, LogError, LogOptions, Record, Retention, RetentionOutcome};
pub use memory::MemoryStore;

use super::EntityId;

/// Refuses a batch with any record over `max` bytes, before anything of it is written: all
/// or nothing, instead of half way with some entities served and a resend failing again.
pub(crate) fn refuse_oversized(groups: &[Group<'_>], max: usize) -> Result<(), LogError> {
    match groups
        .iter()
        .flat_map(|g| &g.records)
        .find(|r| r.len() > max)
    {
        Some(r) => Err(LogError::RecordTooLarge {
            len: r.len(),
            max: u32::try_from(max).unwrap_or(u32::MAX),
        }),
        None => Ok(()),
    }
}

/// One entity's share of a batch to append: its records in order.
#[derive(Clone, Debug)]
pub struct Group<'a> {
    /// The entity whose log takes the records.
    pub entity: EntityId,
    /// The records, each an encoded [`Notification`](super::Notification).
    pub records: Vec<&'a [u8]>,
}

/// Bytes the caller wrote to a file beside the logs at `offset` (the hub's disclosure audit
/// log), to be made durable with the batch they go with: see [`FileStoreConfig::side_file`].
#[derive(Clone, Copy, Debug)]
pub struct Side<'a> {
    /// Where in the side file the bytes start.
    pub offset: u64,
    /// The bytes.
    pub bytes: &'a [u8],
}

/// Work a store hands out to run off the core's thread ([`Store::poll_background`]); its
/// result goes back to [`Store::handle_background`].
pub type Background<D> = Box<dyn FnOnce() -> D + Send + 'static>;

/// The part of an append that waits for the disk ([`Started::Syncing`]).
pub type SyncJob = Box<dyn FnOnce() -> Result<(), LogError> + Send + 'static>;

/// How [`Store::append_start`] went.
pub enum Started {
    /// Appended, or failed: what [`Store::append`] returns.
    Done(Result<Vec<Result<Vec<u64>, LogError>>, LogError>),
    /// Written, not yet durable: run the job without the store borrowed (a hub lets its
    /// sessions go on meanwhile), then hand its outcome to [`Store::append_finish`]. Until
    /// then the records are not read back, and no other append may start.
    Syncing(SyncJob),
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Started::Done(r) => f.debug_tuple("Done").field(r).finish(),
            Started::Syncing(_) => f.write_str("Syncing(..)"),
        }
    }
}

/// The hub's storage: per-entity logs of notifications (offsets from 0, rising by one per
/// record, the front deleted by retention) and the acked offset of each entity.
///
/// Every method returns when its effect is durable (as durable as the store promises: the
/// file store with `fsync` on survives a power cut). A store never calls back into the hub.
pub trait Store: Send {
    /// What a [`Background`] job returns.
    type Done: Send + 'static;

    /// The durable number of each named entity (`names` are registry ids, in registry
    /// order): the same name gets the same number every time, a number is never given to
    /// another name. Refused when the store's records of the numbering disagree.
    fn number_entities(&mut self, names: &[&str]) -> Result<Vec<EntityId>, LogError>;

    /// The entities that hold a log, ascending (after opening: every one recovered).
    fn entities(&self) -> Vec<EntityId>;

    /// The offsets `entity`'s log holds, or `None` when it has none.
    fn range(&self, entity: EntityId) -> Option<Range<u64>>;

    /// Creates `entity`'s (empty) log if it has none; returns the offsets it holds.
    fn create(&mut self, entity: EntityId) -> Result<Range<u64>, LogError>;

    /// Appends each group's records to its entity's log (created when missing), durably,
    /// with `side` in the same durable write. Returns the offsets each group's records got
    /// (ascending; consecutive in a store with one writer, while on a store several hubs share
    /// another's records may fall between), in the order of `groups`, or why that group
    /// failed: a group that failed holds none of its records, one that did holds all. `Err` means no group was appended — in particular a
    /// record over the store's size limit refuses the whole batch before anything is written.
    fn append(
        &mut self,
        groups: &[Group<'_>],
        now_ms: u64,
        side: Option<Side<'_>>,
    ) -> Result<Vec<Result<Vec<u64>, LogError>>, LogError>;

    /// [`Store::append`] in two halves, for a caller that must not hold the store while the
    /// disk works: the records are written and the wait for the disk is handed back as a job
    /// ([`Started::Syncing`]; then [`Store::append_finish`]), or the append is done at once.
    /// The default appends at once.
    fn append_start(
        &mut self,
        groups: &[Group<'_>],
        now_ms: u64,
        side: Option<Side<'_>>,
    ) -> Started {
        Started::Done(self.append(groups, now_ms, side))
    }

    /// Ends an append [`Store::append_start`] left syncing, with its job's outcome; returns
    /// what [`Store::append`] would have.
    fn append_finish(
        &mut self,
        synced: Result<(), LogError>,
    ) -> Result<Vec<Result<Vec<u64>, LogError>>, LogError> {
        let _ = synced;
        Err(LogError::Cluster(
            "append_finish without an append left syncing".into(),
        ))
    }

    /// Reads at most `max_records` records (and about `max_bytes` payload bytes, at least
    /// one record) of `entity`'s log from offset `from` into `out`.
    fn read(
        &mut self,
        entity: EntityId,
        from: u64,
        max_records: usize,
        max_bytes: usize,
        out: &mut Vec<Record>,
    ) -> Result<(), LogError>;

    /// The largest record payload [`Store::append`] takes.
    fn max_record_bytes(&self) -> usize;

    /// The acked offset saved for `entity` (the first offset not acked), `None` when none was
    /// saved, `Err` when what was saved cannot be read (the hub then starts over at the log's
    /// start and says so).
    fn load_acked(&mut self, entity: EntityId) -> Result<Option<u64>, LogError>;

    /// Saves one entity's acked offset.
    fn save_acked(&mut self, entity: EntityId, acked: u64) -> Result<(), LogError>;

    /// Saves the acked offsets of every entity at once (the periodic flush).
    fn save_acked_all(&mut self, all: &[(EntityId, u64)]) -> Result<(), LogError>;

    /// Applies `policy` to `entity`'s log; `acked` is its first un-acked offset, which age
    /// never deletes (the size cap does, and says which offsets it lost).
    fn retain(
        &mut self,
        entity: EntityId,
        now_ms: u64,
        policy: &Retention,
        acked: u64,
    ) -> Result<RetentionOutcome, LogError>;

    /// Bytes held by every log.
    fn size_bytes(&self) -> u64;

    /// Work to run off the core's thread, if any is due (the file store's checkpoint). The
    /// caller runs it and hands the result to [`Store::handle_background`]; no new job is
    /// handed out before that.
    fn poll_background(&mut self) -> Option<Background<Self::Done>>;

    /// Takes the result of a job from [`Store::poll_background`].
    fn handle_background(&mut self, done: Self::Done);
}

/// One store shared by several hubs in one process, as the edges of one cluster share theirs:
/// each call takes the lock for its own duration. For tests of several edges, and for tools.
impl<S: Store> Store for std::sync::Arc<std::sync::Mutex<S>> {
    type Done = S::Done;

    fn number_entities(&mut self, names: &[&str]) -> Result<Vec<EntityId>, LogError> {
        lock(self).number_entities(names)
    }

    fn entities(&self) -> Vec<EntityId> {
        lock(self).entities()
    }

    fn range(&self, entity: EntityId) -> Option<Range<u64>> {
        lock(self).range(entity)
    }

    fn create(&mut self, entity: EntityId) -> Result<Range<u64>, LogError> {
        lock(self).create(entity)
    }

    fn append(
        &mut self,
        groups: &[Group<'_>],
        now_ms: u64,
        side: Option<Side<'_>>,
    ) -> Result<Vec<Result<Vec<u64>, LogError>>, LogError> {
        lock(self).append(groups, now_ms, side)
    }

    fn append_start(
        &mut self,
        groups: &[Group<'_>],
        now_ms: u64,
        side: Option<Side<'_>>,
    ) -> Started {
        lock(self).append_start(groups, now_ms, side)
    }

    fn append_finish(
        &mut self,
        synced: Result<(), LogError>,
    ) -> Result<Vec<Result<Vec<u64>, LogError>>, LogError> {
        lock(self).append_finish(synced)
    }

    fn read(
        &mut self,
        entity: EntityId,
        from: u64,
        max_records: usize,
        max_bytes: usize,
        out: &mut Vec<Record>,
    ) -> Result<(), LogError> {
        lock(self).read(entity, from, max_records, max_bytes, out)
    }

    fn max_record_bytes(&self) -> usize {
        lock(self).max_record_bytes()
    }

    fn load_acked(&mut self, entity: EntityId) -> Result<Option<u64>, LogError> {
        lock(self).load_acked(entity)
    }

    fn save_acked(&mut self, entity: EntityId, acked: u64) -> Result<(), LogError> {
        lock(self).save_acked(entity, acked)
    }

    fn save_acked_all(&mut self, all: &[(EntityId, u64)]) -> Result<(), LogError> {
        lock(self).save_acked_all(all)
    }

    fn retain(
        &mut self,
        entity: EntityId,
        now_ms: u64,
        policy: &Retention,
        acked: u64,
    ) -> Result<RetentionOutcome, LogError> {
        lock(self).retain(entity, now_ms, policy, acked)
    }

    fn size_bytes(&self) -> u64 {
        lock(self).size_bytes()
    }

    fn poll_background(&mut self) -> Option<Background<S::Done>> {
        lock(self).poll_background()
    }

    fn handle_background(&mut self, done: S::Done) {
        lock(self).handle_background(done);
    }
}

fn lock<S>(m: &std::sync::Mutex<S>) -> std::sync::MutexGuard<'_, S> {
    // A panicked holder left whole records (each call is one store operation): go on.
    m.lock().unwrap_or_else(|p| p.into_inner())
}
