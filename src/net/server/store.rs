//! The store a hub runs on, chosen by `hub.toml`: the embedded file store in `data_dir`, or
//! (with `[cluster]`, feature `cluster`) NATS JetStream shared by every edge.

use std::ops::Range;

use crate::hub::EntityId;
use crate::hub::store::file::Checkpointed;
use crate::hub::store::{
    Background, FileStore, Group, LogError, Record, Retention, RetentionOutcome, Side, Started,
    Store,
};

/// One of the stores a server can run on.
#[derive(Debug)]
pub(super) enum HubStore {
    /// The embedded default.
    File(Box<FileStore>),
    /// NATS JetStream.
    #[cfg(feature = "cluster")]
    Cluster(Box<crate::hub::store::jetstream::JetStreamStore>),
}

/// `$body` with `$s` bound to the store inside, whichever it is.
macro_rules! each {
    ($self:expr, $s:ident => $body:expr) => {
        match $self {
            HubStore::File($s) => $body,
            #[cfg(feature = "cluster")]
            HubStore::Cluster($s) => $body,
        }
    };
}

impl Store for HubStore {
    /// Only the file store has background work (its checkpoint).
    type Done = Checkpointed;

    fn number_entities(&mut self, names: &[&str]) -> Result<Vec<EntityId>, LogError> {
        each!(self, s => s.number_entities(names))
    }

    fn entities(&self) -> Vec<EntityId> {
        each!(self, s => s.entities())
    }

    fn range(&self, entity: EntityId) -> Option<Range<u64>> {
        each!(self, s => s.range(entity))
    }

    fn create(&mut self, entity: EntityId) -> Result<Range<u64>, LogError> {
        each!(self, s => s.create(entity))
    }

    fn append(
        &mut self,
        groups: &[Group<'_>],
        now_ms: u64,
        side: Option<Side<'_>>,
    ) -> Result<Vec<Result<Vec<u64>, LogError>>, LogError> {
        each!(self, s => s.append(groups, now_ms, side))
    }

    fn append_start(
        &mut self,
        groups: &[Group<'_>],
        now_ms: u64,
        side: Option<Side<'_>>,
    ) -> Started {
        each!(self, s => s.append_start(groups, now_ms, side))
    }

    fn append_finish(
        &mut self,
        synced: Result<(), LogError>,
    ) -> Result<Vec<Result<Vec<u64>, LogError>>, LogError> {
        each!(self, s => s.append_finish(synced))
    }

    fn read(
        &mut self,
        entity: EntityId,
        from: u64,
        max_records: usize,
        max_bytes: usize,
        out: &mut Vec<Record>,
    ) -> Result<(), LogError> {
        each!(self, s => s.read(entity, from, max_records, max_bytes, out))
    }

    fn max_record_bytes(&self) -> usize {
        each!(self, s => s.max_record_bytes())
    }

    fn load_acked(&mut self, entity: EntityId) -> Result<Option<u64>, LogError> {
        each!(self, s => s.load_acked(entity))
    }

    fn save_acked(&mut self, entity: EntityId, acked: u64) -> Result<(), LogError> {
        each!(self, s => s.save_acked(entity, acked))
    }

    fn save_acked_all(&mut self, all: &[(EntityId, u64)]) -> Result<(), LogError> {
        each!(self, s => s.save_acked_all(all))
    }

    fn retain(
        &mut self,
        entity: EntityId,
        now_ms: u64,
        policy: &Retention,
        acked: u64,
    ) -> Result<RetentionOutcome, LogError> {
        each!(self, s => s.retain(entity, now_ms, policy, acked))
    }

    fn size_bytes(&self) -> u64 {
        each!(self, s => s.size_bytes())
    }

    fn poll_background(&mut self) -> Option<Background<Checkpointed>> {
        match self {
            HubStore::File(s) => s.poll_background(),
            #[cfg(feature = "cluster")]
            HubStore::Cluster(_) => None,
        }
    }

    fn handle_background(&mut self, done: Checkpointed) {
        match self {
            HubStore::File(s) => s.handle_background(done),
            #[cfg(feature = "cluster")]
            HubStore::Cluster(_) => {}
        }
    }
}

/// What a cluster edge's live feed yields (see `JetStreamStore::live_feed`).
#[cfg(feature = "cluster")]
pub(super) type Feed = tokio::sync::mpsc::Receiver<crate::hub::store::jetstream::FeedItem>;

/// The live feed of a cluster store (every notification the stream takes from now on), or
/// `None` for the file store, whose only writer is this process.
#[cfg(feature = "cluster")]
pub(super) fn live_feed(store: &HubStore) -> Result<Option<Feed>, LogError> {
    match store {
        HubStore::File(_) => Ok(None),
        HubStore::Cluster(s) => s.live_feed(4096).map(Some),
    }
}
