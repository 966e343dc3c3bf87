//! The embedded store: one folder per entity in a data folder, each holding the entity's
//! append-only [`Log`] and its acked-offset file, a table of every acked offset beside them,
//! and — with `fsync` on — a write-ahead [`Journal`].
//!
//! ```text
//! DATA/0000000007/00000000000000000000.seg   entity 7's log segments
//! DATA/0000000007/acked                      entity 7's acked offset
//! DATA/acked.table                           every entity's acked offset, saved periodically
//! DATA/journal/00000000000000000003.wal      the write-ahead journal
//! ```
//!
//! **Durability.** With [`LogOptions::sync`] on, an append writes every group's records to
//! its entity's log without waiting, then appends all of them to the journal with one
//! `fdatasync` (group commit across entities: a batch over 1,000 entities waits for one disk
//! flush). A **checkpoint**, once the journal file passes
//! [`FileStoreConfig::journal_checkpoint_bytes`], moves the journal to a new file and hands
//! out a [`Background`] job that `fsync`s every log written since the last checkpoint (and the
//! side file) and then deletes the closed journal files. [`FileStore::open`] replays into each
//! log the journaled records it lacks. Without `fsync` (tests, benchmarks of something else)
//! there is no journal and nothing survives a power cut.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::journal::{self, JournalRecovery};
use super::log::{self, Recovery};
use super::{
    Background, Group, Journal, Log, LogError, LogOptions, Record, Retention, RetentionOutcome,
    Side, Started, Store, offsets,
};
use crate::hub::EntityId;

/// The journal's entity number for [`FileStoreConfig::side_file`] records; no entity has it.
pub const SIDE_ENTITY: u32 = u32::MAX;

/// How a [`FileStore`] lays out and writes its files.
#[derive(Clone, Debug)]
pub struct FileStoreConfig {
    /// Folder holding one folder per entity.
    pub data_dir: PathBuf,
    /// Segment size, record limit, `fsync`.
    pub log: LogOptions,
    /// With `fsync` on, a checkpoint (the entity logs synced, the journal files they cover
    /// deleted) starts once the journal file holds this many bytes.
    pub journal_checkpoint_bytes: u64,
    /// A file the caller appends to beside the logs whose records must be as durable as the
    /// notifications they go with (the hub's disclosure audit log): bytes handed to
    /// [`Store::append`] as [`Side`] travel in the batch's journal append, are written back at
    /// their offset on replay, and the file is synced at every checkpoint. `None`: no such
    /// file.
    pub side_file: Option<PathBuf>,
    /// The numbering file ([`numbering`](super::numbering)): `data_dir/entities.json` unless
    /// set.
    pub numbering: PathBuf,
}

impl FileStoreConfig {
    /// Defaults for data in `data_dir`: 64 MiB segments, `fsync` on, a journal checkpoint
    /// every 32 MiB, no side file, the numbering in `data_dir/entities.json`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        FileStoreConfig {
            numbering: data_dir.join("entities.json"),
            data_dir,
            log: LogOptions::default(),
            journal_checkpoint_bytes: 32 << 20,
            side_file: None,
        }
    }
}

/// What a checkpoint job did ([`Store::Done`] of the file store).
#[derive(Debug)]
pub struct Checkpointed(Result<(), (Vec<PathBuf>, Vec<EntityId>, LogError)>);

/// The embedded store. See the [module docs](self).
#[derive(Debug)]
pub struct FileStore {
    config: FileStoreConfig,
    logs: HashMap<EntityId, Log>,
    /// The acked-offset table as loaded at open.
    table: HashMap<EntityId, u64>,
    /// The write-ahead journal, when logs are synced: one `fdatasync` per appended batch.
    journal: Option<Journal>,
    /// Entities whose logs took records, durable only through the journal, since the last
    /// checkpoint began.
    unsynced: HashSet<EntityId>,
    /// Closed journal files that no finished checkpoint has covered yet.
    retired: Vec<PathBuf>,
    /// A checkpoint job is out (handed to the caller, not yet reported back).
    checkpointing: bool,
    /// An append waiting for its journal sync.
    pending: Option<Pending>,
}

/// A group's records written to its entity's log and not yet settled.
#[derive(Debug)]
struct Written {
    entity: EntityId,
    start: u64,
    records: u64,
}

/// An append between [`Store::append_start`] and [`Store::append_finish`].
#[derive(Debug)]
struct Pending {
    written: Vec<Written>,
    /// Bytes its journal write appends.
    journal_bytes: u64,
}

fn entity_dir(data: &Path, e: EntityId) -> PathBuf {
    data.join(format!("{:010}", e.0))
}

/// At most this many threads `fsync` at once in a group commit. The syncs wait on the disk,
/// not the CPU, and the file system folds concurrent ones into fewer journal commits, so
/// there are more of them than cores.
const MAX_PARALLEL_SYNCS: usize = 32;

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

impl FileStore {
    /// Step 1, write: every group's records reach its entity's file, none is synced yet, and
    /// with a journal each is staged in it (with `side`). A write that fails half way cuts
    /// off what the others wrote, so that the batch is all or nothing and its resend does not
    /// deliver twice. Returns each group's entity, first offset and number of records.
    fn write_groups(
        &mut self,
        groups: &[Group<'_>],
        now_ms: u64,
        side: Option<Side<'_>>,
    ) -> Result<Vec<Written>, LogError> {
        super::refuse_oversized(groups, self.config.log.max_record_bytes as usize)?;
        let mut written: Vec<Written> = Vec::with_capacity(groups.len());
        let mut failed = None;
        for g in groups {
            match self
                .log(g.entity)
                .and_then(|log| log.write_batch(&g.records, now_ms))
            {
                Ok(range) => {
                    if let Some(j) = self.journal.as_mut() {
                        for (k, rec) in g.records.iter().enumerate() {
                            j.stage(g.entity.0, range.start + k as u64, now_ms, rec);
                        }
                    }
                    written.push(Written {
                        entity: g.entity,
                        start: range.start,
                        records: g.records.len() as u64,
                    });
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failed {
            if let Some(j) = self.journal.as_mut() {
                j.discard();
            }
            for w in &written {
                let log = self.logs.get_mut(&w.entity).expect("written entity");
                let _ = log.settle(Err(LogError::Io {
                    path: log.dir().to_path_buf(),
                    source: std::io::Error::other("another entity's write failed"),
                }));
            }
            return Err(e);
        }
        if let (Some(j), Some(side), Some(_)) =
            (self.journal.as_mut(), side, &self.config.side_file)
        {
            j.stage(SIDE_ENTITY, side.offset, now_ms, side.bytes);
        }
        Ok(written)
    }

    /// Step 3 after a journal commit with outcome `committed`: see [`Self::settle_groups`].
    fn settle_journaled(
        &mut self,
        written: &[Written],
        committed: Result<(), LogError>,
    ) -> Vec<Result<Vec<u64>, LogError>> {
        let synced = match committed {
            Ok(()) => {
                self.unsynced.extend(written.iter().map(|w| w.entity));
                written.iter().map(|_| Ok(())).collect()
            }
            Err(e) => {
                let msg = e.to_string();
                let path = self.journal.as_ref().map(Journal::path).unwrap_or_default();
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
        };
        self.settle_groups(written, synced)
    }

    /// Step 3, settle: what is durable stays; what is not is cut off again. `synced`: each
    /// group's sync.
    fn settle_groups(
        &mut self,
        written: &[Written],
        synced: Vec<Result<(), LogError>>,
    ) -> Vec<Result<Vec<u64>, LogError>> {
        written
            .iter()
            .zip(synced)
            .map(|(w, synced)| {
                let log = self.logs.get_mut(&w.entity).expect("written entity");
                log.settle(synced)
                    .map(|()| (w.start..w.start + w.records).collect())
            })
            .collect()
    }
    /// Opens the data folder (creating it), recovering every entity's log: torn tails cut
    /// off, the journal replayed into the logs that lack its records, the side file's
    /// journaled bytes written back.
    pub fn open(config: FileStoreConfig) -> Result<FileStore, LogError> {
        let dir = &config.data_dir;
        fs::create_dir_all(dir).map_err(log::io_err(dir))?;
        let mut ids = Vec::new();
        for e in fs::read_dir(dir).map_err(log::io_err(dir))? {
            let e = e.map_err(log::io_err(dir))?;
            if let Some(name) = e.file_name().to_str()
                && name.len() == 10
                && let Ok(id) = name.parse::<u32>()
                && id != SIDE_ENTITY
            {
                ids.push(EntityId(id));
            }
        }
        ids.sort_unstable();
        let mut store = FileStore {
            config,
            logs: HashMap::new(),
            table: HashMap::new(),
            journal: None,
            unsynced: HashSet::new(),
            pending: None,
            retired: Vec::new(),
            checkpointing: false,
        };
        // The journal is read before the logs are opened: damage in a log that the journal
        // can write again is cut off and replayed instead of stopping the hub.
        let recovered = if store.config.log.sync {
            Some(Journal::open(store.config.data_dir.join("journal"))?)
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
            store.open_log(id, Some(&covers))?;
        }
        if let Some((journal, recovery)) = recovered {
            store.replay_journal(journal, recovery)?;
        }
        store.load_table();
        Ok(store)
    }

    /// What opening the entity's log repaired (a torn tail cut off, damage the journal wrote
    /// again).
    pub fn recovery(&self, entity: EntityId) -> Option<&Recovery> {
        self.logs.get(&entity).map(Log::recovery)
    }

    /// The journal files present (the current one included).
    pub fn journal_files(&self) -> Result<usize, LogError> {
        let dir = self.config.data_dir.join("journal");
        let n = fs::read_dir(&dir)
            .map_err(log::io_err(&dir))?
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "wal"))
            })
            .count();
        Ok(n)
    }

    /// Opens (or creates) the entity's log; `covers` says which offsets the journal about to
    /// be replayed holds, so that damage it can write again is cut off ([`Log::open_repairing`]).
    fn open_log(
        &mut self,
        id: EntityId,
        covers: Option<&dyn Fn(Range<u64>) -> bool>,
    ) -> Result<&mut Log, LogError> {
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
        Ok(self.logs.entry(id).or_insert(log))
    }

    fn log(&mut self, id: EntityId) -> Result<&mut Log, LogError> {
        if self.logs.contains_key(&id) {
            return Ok(self.logs.get_mut(&id).expect("checked"));
        }
        self.open_log(id, None)
    }

    /// Writes into each entity's log the journaled records that it lacks (a crash before the
    /// checkpoint that would have synced it), syncs those logs and deletes the replayed
    /// journal files.
    fn replay_journal(
        &mut self,
        journal: Journal,
        recovery: JournalRecovery,
    ) -> Result<(), LogError> {
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
            let log = self.log(id)?;
            let next = log.next_offset();
            if r.offset == next {
                log.write_batch(&[&r.payload], r.time_ms)?;
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
            let logs: Vec<&Log> = touched.iter().map(|e| &self.logs[e]).collect();
            sync_logs(&logs)
        };
        for (e, synced) in touched.iter().zip(synced) {
            self.logs.get_mut(e).expect("touched").settle(synced)?;
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

    /// Reads the acked-offset table; a damaged one is reported and ignored (the entities' own
    /// files still hold an older offset each: re-sending, not loss).
    fn load_table(&mut self) {
        let path = self.config.data_dir.join(offsets::ACKED_TABLE);
        match offsets::load_table(&path) {
            Ok(t) => {
                self.table = t
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(e, a)| (EntityId(e), a))
                    .collect();
            }
            Err(e) => {
                tracing::warn!("{e}; acked offsets are taken from the entities' own files");
            }
        }
    }

    fn acked_path(&self, entity: EntityId) -> PathBuf {
        entity_dir(&self.config.data_dir, entity).join(offsets::ACKED_FILE)
    }
}

impl Store for FileStore {
    type Done = Checkpointed;

    fn number_entities(&mut self, names: &[&str]) -> Result<Vec<EntityId>, LogError> {
        super::numbering::stable_numbers(&self.config.numbering, &self.config.data_dir, names)
    }

    fn entities(&self) -> Vec<EntityId> {
        let mut v: Vec<EntityId> = self.logs.keys().copied().collect();
        v.sort_unstable();
        v
    }

    fn range(&self, entity: EntityId) -> Option<Range<u64>> {
        self.logs.get(&entity).map(|l| l.start()..l.settled_end())
    }

    fn create(&mut self, entity: EntityId) -> Result<Range<u64>, LogError> {
        let log = self.log(entity)?;
        Ok(log.start()..log.settled_end())
    }

    fn append(
        &mut self,
        groups: &[Group<'_>],
        now_ms: u64,
        side: Option<Side<'_>>,
    ) -> Result<Vec<Result<Vec<u64>, LogError>>, LogError> {
        match self.append_start(groups, now_ms, side) {
            Started::Done(r) => r,
            Started::Syncing(job) => {
                let synced = job();
                self.append_finish(synced)
            }
        }
    }

    /// Writes every group's records to its entity's log and stages them in the journal; the
    /// journal's write and `fdatasync` are the job handed back, so that a hub can let its
    /// sessions go on while the disk works. Without a journal the logs are synced here.
    fn append_start(
        &mut self,
        groups: &[Group<'_>],
        now_ms: u64,
        side: Option<Side<'_>>,
    ) -> Started {
        if self.pending.is_some() {
            return Started::Done(Err(LogError::Inconsistent {
                path: self.config.data_dir.clone(),
                reason: "an append started while the one before waits for its sync".into(),
            }));
        }
        let written = match self.write_groups(groups, now_ms, side) {
            Ok(w) => w,
            Err(e) => return Started::Done(Err(e)),
        };
        let Some(j) = self.journal.as_mut() else {
            // 2. Sync: without a journal, all touched files together.
            let logs: Vec<&Log> = groups.iter().map(|g| &self.logs[&g.entity]).collect();
            let synced = sync_logs(&logs);
            return Started::Done(Ok(self.settle_groups(&written, synced)));
        };
        // 2. Sync: one journal append for the whole batch.
        match j.start_commit() {
            Ok(Some(w)) => {
                self.pending = Some(Pending {
                    written,
                    journal_bytes: w.len(),
                });
                Started::Syncing(Box::new(move || w.run()))
            }
            Ok(None) => Started::Done(Ok(self.settle_journaled(&written, Ok(())))),
            Err(e) => Started::Done(Ok(self.settle_journaled(&written, Err(e)))),
        }
    }

    fn append_finish(
        &mut self,
        synced: Result<(), LogError>,
    ) -> Result<Vec<Result<Vec<u64>, LogError>>, LogError> {
        let (Some(p), Some(j)) = (self.pending.take(), self.journal.as_mut()) else {
            return Err(LogError::Inconsistent {
                path: self.config.data_dir.clone(),
                reason: "an append finished that was not started".into(),
            });
        };
        let committed = j.finish_commit(p.journal_bytes, synced);
        Ok(self.settle_journaled(&p.written, committed))
    }

    fn read(
        &mut self,
        entity: EntityId,
        from: u64,
        max_records: usize,
        max_bytes: usize,
        out: &mut Vec<Record>,
    ) -> Result<(), LogError> {
        self.log(entity)?.read(from, max_records, max_bytes, out)
    }

    fn max_record_bytes(&self) -> usize {
        self.config.log.max_record_bytes as usize
    }

    fn load_acked(&mut self, entity: EntityId) -> Result<Option<u64>, LogError> {
        let table = self.table.get(&entity).copied();
        match offsets::load(&self.acked_path(entity)) {
            Ok(own) => Ok(own.max(table)),
            Err(e) if table.is_some() => {
                tracing::warn!("{e}; the acked-offset table's value is used");
                Ok(table)
            }
            Err(e) => Err(e),
        }
    }

    fn save_acked(&mut self, entity: EntityId, acked: u64) -> Result<(), LogError> {
        offsets::store(&self.acked_path(entity), acked, self.config.log.sync)
    }

    fn save_acked_all(&mut self, all: &[(EntityId, u64)]) -> Result<(), LogError> {
        let mut entries: Vec<(u32, u64)> = all.iter().map(|(e, a)| (e.0, *a)).collect();
        entries.sort_unstable();
        offsets::store_table(
            &self.config.data_dir.join(offsets::ACKED_TABLE),
            &entries,
            self.config.log.sync,
        )
    }

    fn retain(
        &mut self,
        entity: EntityId,
        now_ms: u64,
        policy: &Retention,
        acked: u64,
    ) -> Result<RetentionOutcome, LogError> {
        self.log(entity)?.retain(now_ms, policy, acked)
    }

    fn size_bytes(&self) -> u64 {
        self.logs.values().map(Log::size_bytes).sum()
    }

    /// Once the journal file is big enough and no checkpoint is out: the journal moves to a
    /// new file, and the job `fsync`s every log written since the last checkpoint and then
    /// deletes the closed journal files. Records written after the switch are in the new
    /// file, so nothing waits for the job.
    fn poll_background(&mut self) -> Option<Background<Checkpointed>> {
        let journal = self.journal.as_mut()?;
        // Not while an append waits for its sync: its records are in the current file.
        if self.checkpointing
            || self.pending.is_some()
            || journal.is_empty()
            || journal.len() < self.config.journal_checkpoint_bytes
        {
            return None;
        }
        match journal.rotate() {
            Ok(closed) => self.retired.push(closed),
            Err(e) => {
                tracing::warn!("journal checkpoint not started (tried again later): {e}");
                return None;
            }
        }
        let files = std::mem::take(&mut self.retired);
        let entities: Vec<EntityId> = self.unsynced.drain().collect();
        let paths: Vec<PathBuf> = entities
            .iter()
            .filter_map(|e| self.logs.get(e).map(Log::active_path))
            .chain(self.config.side_file.clone())
            .collect();
        self.checkpointing = true;
        Some(Box::new(move || {
            Checkpointed(
                match sync_paths(&paths).and_then(|()| journal::remove_files(&files)) {
                    Ok(()) => Ok(()),
                    Err(e) => Err((files, entities, e)),
                },
            )
        }))
    }

    fn handle_background(&mut self, done: Checkpointed) {
        self.checkpointing = false;
        if let Err((files, entities, e)) = done.0 {
            tracing::warn!("journal checkpoint failed (retried with the next): {e}");
            self.retired.splice(0..0, files);
            // Their logs are still to sync: the next checkpoint must not delete the journal
            // files that cover them without syncing them first.
            self.unsynced.extend(entities);
        }
    }
}
