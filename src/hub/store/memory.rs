//! A store in memory: the same offsets, limits and retention as the file store, nothing on
//! disk. For tests that drive the hub core with a simulated clock, and for benchmarks of the
//! core alone. "Durable" here means "until the store is dropped"; a restart is simulated by
//! handing the same store to a new [`Hub`](crate::hub::Hub) ([`MemoryStore::clone`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Range;

use super::{
    Background, Group, LogError, Record, Retention, RetentionOutcome, Side, Store,
    log::RECORD_HEADER,
};
use crate::hub::EntityId;

/// One entity's log in memory.
#[derive(Clone, Debug, Default)]
struct MemoryLog {
    /// Offset of the first record held.
    start: u64,
    records: VecDeque<Record>,
    /// Bytes as the file store would count them (header and payload).
    bytes: u64,
}

impl MemoryLog {
    fn next(&self) -> u64 {
        self.start + self.records.len() as u64
    }
}

/// The in-memory store. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct MemoryStore {
    logs: BTreeMap<EntityId, MemoryLog>,
    acked: HashMap<EntityId, u64>,
    max_record_bytes: usize,
    /// Side-file bytes handed to appends, by offset.
    side: BTreeMap<u64, Vec<u8>>,
    /// Entity numbers by name.
    numbers: HashMap<String, EntityId>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new(1 << 20)
    }
}

impl MemoryStore {
    /// An empty store taking records of at most `max_record_bytes`.
    pub fn new(max_record_bytes: usize) -> Self {
        MemoryStore {
            logs: BTreeMap::new(),
            acked: HashMap::new(),
            max_record_bytes,
            side: BTreeMap::new(),
            numbers: HashMap::new(),
        }
    }

    /// The side-file bytes appended with batches, in offset order.
    pub fn side(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.side.iter().map(|(o, b)| (*o, b.as_slice()))
    }
}

impl Store for MemoryStore {
    type Done = ();

    fn number_entities(&mut self, names: &[&str]) -> Result<Vec<EntityId>, LogError> {
        Ok(names
            .iter()
            .map(|&name| {
                let next = EntityId(self.numbers.len() as u32);
                *self.numbers.entry(name.to_owned()).or_insert(next)
            })
            .collect())
    }

    fn entities(&self) -> Vec<EntityId> {
        self.logs.keys().copied().collect()
    }

    fn range(&self, entity: EntityId) -> Option<Range<u64>> {
        self.logs.get(&entity).map(|l| l.start..l.next())
    }

    fn create(&mut self, entity: EntityId) -> Result<Range<u64>, LogError> {
        let l = self.logs.entry(entity).or_default();
        Ok(l.start..l.next())
    }

    fn append(
        &mut self,
        groups: &[Group<'_>],
        now_ms: u64,
        side: Option<Side<'_>>,
    ) -> Result<Vec<Result<Vec<u64>, LogError>>, LogError> {
        super::refuse_oversized(groups, self.max_record_bytes)?;
        let out = groups
            .iter()
            .map(|g| {
                let log = self.logs.entry(g.entity).or_default();
                let first = log.next();
                // Times never decrease along a log, as in the file store.
                let time_ms = log.records.back().map_or(now_ms, |r| r.time_ms.max(now_ms));
                for (k, data) in g.records.iter().enumerate() {
                    log.bytes += (RECORD_HEADER + data.len()) as u64;
                    log.records.push_back(Record {
                        offset: first + k as u64,
                        time_ms,
                        data: data.to_vec(),
                    });
                }
                Ok((first..first + g.records.len() as u64).collect())
            })
            .collect();
        if let Some(s) = side {
            self.side.insert(s.offset, s.bytes.to_vec());
        }
        Ok(out)
    }

    fn read(
        &mut self,
        entity: EntityId,
        from: u64,
        max_records: usize,
        max_bytes: usize,
        out: &mut Vec<Record>,
    ) -> Result<(), LogError> {
        let Some(log) = self.logs.get(&entity) else {
            return Ok(());
        };
        if from < log.start {
            return Err(LogError::Deleted {
                offset: from,
                start: log.start,
            });
        }
        let skip = usize::try_from(from - log.start).unwrap_or(usize::MAX);
        let mut bytes = 0;
        for (n, r) in log.records.iter().skip(skip).enumerate() {
            if n >= max_records || (n > 0 && bytes >= max_bytes) {
                break;
            }
            bytes += r.data.len();
            out.push(r.clone());
        }
        Ok(())
    }

    fn max_record_bytes(&self) -> usize {
        self.max_record_bytes
    }

    fn load_acked(&mut self, entity: EntityId) -> Result<Option<u64>, LogError> {
        Ok(self.acked.get(&entity).copied())
    }

    fn save_acked(&mut self, entity: EntityId, acked: u64) -> Result<(), LogError> {
        self.acked.insert(entity, acked);
        Ok(())
    }

    fn save_acked_all(&mut self, all: &[(EntityId, u64)]) -> Result<(), LogError> {
        self.acked.extend(all.iter().copied());
        Ok(())
    }

    /// Record by record rather than segment by segment: age deletes acked records older than
    /// the limit, the size cap the oldest records while the log is over it, acked or not.
    fn retain(
        &mut self,
        entity: EntityId,
        now_ms: u64,
        policy: &Retention,
        acked: u64,
    ) -> Result<RetentionOutcome, LogError> {
        let mut out = RetentionOutcome::default();
        let Some(log) = self.logs.get_mut(&entity) else {
            return Ok(out);
        };
        while let Some(r) = log.records.front() {
            let expired = policy
                .max_age_ms
                .is_some_and(|age| r.offset < acked && r.time_ms.saturating_add(age) <= now_ms);
            let over_size = policy.max_bytes.is_some_and(|m| log.bytes > m);
            if !(expired || over_size) {
                break;
            }
            if r.offset >= acked {
                out.lost = Some(match out.lost {
                    Some(l) => l.start..r.offset + 1,
                    None => r.offset..r.offset + 1,
                });
            }
            let len = (RECORD_HEADER + r.data.len()) as u64;
            log.bytes -= len;
            out.bytes_freed += len;
            out.segments_deleted += 1;
            log.records.pop_front();
            log.start += 1;
        }
        Ok(out)
    }

    fn size_bytes(&self) -> u64 {
        self.logs.values().map(|l| l.bytes).sum()
    }

    fn poll_background(&mut self) -> Option<Background<()>> {
        None
    }

    fn handle_background(&mut self, (): ()) {}
}
