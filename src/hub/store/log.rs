//! One entity's append-only notification log: a folder of segment files, each named by the
//! offset of its first record (`00000000000000000000.seg`), appended to with `fsync` so that
//! an acknowledged append survives a crash.
//!
//! ```text
//! segment   magic "CWNLOG\0\x01" · base offset u64 · records…
//! record    length u32 · offset u64 · time u64 (Unix millis) · checksum u64 · payload[length]
//! ```
//!
//! The checksum is XXH3-64 over the record's length, offset, time and payload. Offsets rise by
//! one per record across segments; the last segment is the active one and the only one written.
//!
//! **Recovery.** [`Log::open`] scans the active segment. A damaged record with nothing valid
//! after it is a torn tail — the write that a crash interrupted, never acknowledged — and is cut
//! off (see [`Recovery`]). A damaged record *followed* by a valid one is corruption of
//! acknowledged data and is refused with [`LogError::Corrupt`], naming the file and byte —
//! unless the hub's write-ahead journal holds every record from the damaged one on (a torn
//! group commit whose pages reached the disk out of order looks like this): then
//! [`Log::open_repairing`] cuts the segment at the damage and the hub replays the journal
//! into it. Sealed segments are checked when first read, by the same scan.
//!
//! **Retention** ([`Log::retain`]) deletes whole sealed segments from the front: by age once
//! their newest record is older than the limit, and by total size. Age never deletes a segment
//! holding an offset at or after `protect_from` (the subscriber's first un-acked offset); the
//! size cap does, because a full disk would stop every entity's log — the offsets lost are
//! returned so that the hub can tell the subscriber (a [`Gap`](crate::hub::frame::Frame::Gap)).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::Xxh3;

/// The first eight bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"CWNLOG\0\x01";
/// Bytes of a segment's header (magic and base offset).
pub const SEGMENT_HEADER: u64 = 16;
/// Bytes of a record's header (length, offset, time, checksum).
pub const RECORD_HEADER: usize = 28;
/// A sparse index entry is kept every this many bytes of a segment.
const INDEX_INTERVAL: u64 = 4096;

/// How a log is laid out and written.
#[derive(Clone, Debug)]
pub struct LogOptions {
    /// A new segment is started when the active one would grow past this many bytes.
    pub segment_bytes: u64,
    /// Largest record payload accepted.
    pub max_record_bytes: u32,
    /// Whether appends wait for `fsync`. Only tests and benchmarks that measure something
    /// else turn this off: without it an acknowledged append may be lost in a power cut.
    pub sync: bool,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_bytes: 64 << 20,
            max_record_bytes: 1 << 20,
            sync: true,
        }
    }
}

/// When whole segments are deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Delete sealed segments whose newest record is at least this old (unless un-acked).
    pub max_age_ms: Option<u64>,
    /// Delete the oldest sealed segments while the log is larger than this, acked or not.
    /// Set it to at least twice [`LogOptions::segment_bytes`]: the active segment is never
    /// deleted.
    pub max_bytes: Option<u64>,
}

/// What [`Log::retain`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    /// Segments deleted.
    pub segments_deleted: usize,
    /// Bytes freed.
    pub bytes_freed: u64,
    /// Offsets at or after `protect_from` that the size cap deleted.
    pub lost: Option<Range<u64>>,
}

/// What [`Log::open`] repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// The active segment ended in a partial record at this byte, now cut off.
    pub torn_at: Option<(PathBuf, u64)>,
    /// Damage with valid records after it, cut off because the journal holds every record
    /// from there on ([`Log::open_repairing`]).
    pub repaired: Option<Damage>,
    /// Bytes cut off.
    pub truncated_bytes: u64,
}

/// Damage found in a segment where acknowledged records lie.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    /// The segment file.
    pub path: PathBuf,
    /// Byte position of the damaged record.
    pub position: u64,
    /// Which check failed.
    pub reason: &'static str,
    /// The offsets from the damaged record to the last valid one seen after it.
    pub offsets: Range<u64>,
}

/// A log failure.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The file system failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A segment's bytes are damaged where acknowledged data lies.
    #[error("{}: corrupt at byte {position}: {reason}", path.display())]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Byte position of the damaged record (or header).
        position: u64,
        /// Which check failed.
        reason: &'static str,
    },
    /// A record over [`LogOptions::max_record_bytes`].
    #[error("record of {len} bytes exceeds the limit of {max}")]
    RecordTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: u32,
    },
    /// A file the store keeps disagrees with another, and going on could hand one entity's
    /// notifications to another.
    #[error("{}: {reason}", path.display())]
    Inconsistent {
        /// The file.
        path: PathBuf,
        /// What disagrees, and what to do.
        reason: String,
    },
    /// A store shared through a cluster failed or answered what cannot be.
    #[error("cluster store: {0}")]
    Cluster(String),
    /// The offset asked for was deleted by retention.
    #[error("offset {offset} was deleted by retention; the log starts at {start}")]
    Deleted {
        /// The offset asked for.
        offset: u64,
        /// The oldest offset still held.
        start: u64,
    },
}

/// One stored record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Its offset.
    pub offset: u64,
    /// When it was appended, Unix millis (never decreasing along the log).
    pub time_ms: u64,
    /// Its payload.
    pub data: Vec<u8>,
}

#[derive(Debug)]
struct Segment {
    /// Bytes of the file that hold whole records (the file length once sealed).
    len: u64,
    /// Sparse `(offset, byte position)` entries; `None` until a sealed segment is first read.
    index: Option<Vec<(u64, u64)>>,
    newest_ms: Option<u64>,
}

/// One entity's log. See the [module docs](self).
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    opts: LogOptions,
    segments: BTreeMap<u64, Segment>,
    active: File,
    next: u64,
    last_time: u64,
    size: u64,
    recovery: Recovery,
    buf: Vec<u8>,
    /// The state before the first record written but not yet `fsync`ed
    /// ([`Log::write_batch`]); `None` when everything written is durable.
    unsynced: Option<Unsynced>,
}

/// What [`Log::settle`] restores when the `fsync` of written records failed. Only the active
/// segment can hold unsynced records: a roll makes the sealed segment durable first.
#[derive(Debug, Clone, Copy)]
struct Unsynced {
    len: u64,
    index_len: Option<usize>,
    newest_ms: Option<u64>,
    next: u64,
    size: u64,
    last_time: u64,
}

/// Turns an I/O error on `path` into a [`LogError::Io`] naming it.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_owned(),
        source,
    }
}

fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.seg"))
}

/// Makes a folder's entries (a created, renamed or deleted file) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), LogError> {
    crate::outfile::sync_dir(dir).map_err(io_err(dir))
}

fn checksum(header: &[u8], payload: &[u8]) -> u64 {
    let mut h = Xxh3::new();
    h.update(&header[..20]);
    h.update(payload);
    h.digest()
}

fn encode_record(out: &mut Vec<u8>, offset: u64, time_ms: u64, payload: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&time_ms.to_le_bytes());
    let sum = checksum(&out[start..], payload);
    out.extend_from_slice(&sum.to_le_bytes());
    out.extend_from_slice(payload);
}

struct Header {
    len: usize,
    offset: u64,
    time_ms: u64,
    checksum: u64,
}

fn parse_header(h: &[u8]) -> Header {
    let u64_at = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().expect("8 bytes"));
    Header {
        len: u32::from_le_bytes(h[..4].try_into().expect("4 bytes")) as usize,
        offset: u64_at(4),
        time_ms: u64_at(12),
        checksum: u64_at(20),
    }
}

/// Checks the record at `pos` of an in-memory segment: its length and time, or what is wrong.
fn record_at(
    bytes: &[u8],
    pos: usize,
    expected: u64,
    max: u32,
) -> Result<(usize, u64), &'static str> {
    let h = bytes
        .get(pos..pos + RECORD_HEADER)
        .ok_or("partial record header")?;
    let hdr = parse_header(h);
    if hdr.len > max as usize {
        return Err("record length over the limit");
    }
    let payload = bytes
        .get(pos + RECORD_HEADER..pos + RECORD_HEADER + hdr.len)
        .ok_or("record runs past the end of the file")?;
    if checksum(h, payload) != hdr.checksum {
        return Err("record checksum mismatch");
    }
    if hdr.offset != expected {
        return Err("record offset out of sequence");
    }
    Ok((RECORD_HEADER + hdr.len, hdr.time_ms))
}

#[derive(Debug)]
enum Problem {
    Torn,
    Corrupt(&'static str),
}

struct Scan {
    end: u64,
    next: u64,
    newest_ms: Option<u64>,
    index: Vec<(u64, u64)>,
    problem: Option<(u64, Problem)>,
}

/// Walks the records of a segment held in memory (header already checked).
fn scan(bytes: &[u8], base: u64, max: u32) -> Scan {
    let mut pos = SEGMENT_HEADER as usize;
    let mut s = Scan {
        end: pos as u64,
        next: base,
        newest_ms: None,
        index: Vec::new(),
        problem: None,
    };
    while pos < bytes.len() {
        match record_at(bytes, pos, s.next, max) {
            Ok((len, time)) => {
                if s.index
                    .last()
                    .is_none_or(|&(_, p)| pos as u64 >= p + INDEX_INTERVAL)
                {
                    s.index.push((s.next, pos as u64));
                }
                s.newest_ms = Some(s.newest_ms.map_or(time, |t| t.max(time)));
                pos += len;
                s.next += 1;
                s.end = pos as u64;
            }
            Err(reason) => {
                let problem = if reason == "record offset out of sequence"
                    || valid_record_after(bytes, pos, s.next + 1, max)
                {
                    Problem::Corrupt(reason)
                } else {
                    Problem::Torn
                };
                s.problem = Some((pos as u64, problem));
                break;
            }
        }
    }
    s
}

/// Whether a valid record with offset `want` starts anywhere after `pos`: then the damage at
/// `pos` is not a torn tail.
fn valid_record_after(bytes: &[u8], pos: usize, want: u64, max: u32) -> bool {
    let needle = want.to_le_bytes();
    let from = pos + 1;
    let Some(hay) = bytes.get(from..) else {
        return false;
    };
    memchr::memmem::find_iter(hay, &needle).any(|i| {
        // The offset field sits 4 bytes into a record.
        (from + i)
            .checked_sub(4)
            .is_some_and(|start| start > pos && record_at(bytes, start, want, max).is_ok())
    })
}

/// The last offset of the valid records found after damage at `pos` (whose record should
/// have been `next`): each run of records in sequence is followed to its end, then the search
/// goes on for the offset after it. `None` when no valid record follows.
fn last_valid_offset_after(bytes: &[u8], pos: usize, next: u64, max: u32) -> Option<u64> {
    let mut want = next + 1;
    let mut from = pos;
    let mut last = None;
    loop {
        let needle = want.to_le_bytes();
        let Some(hay) = bytes.get(from + 1..) else {
            return last;
        };
        let start = memchr::memmem::find_iter(hay, &needle).find_map(|i| {
            (from + 1 + i)
                .checked_sub(4)
                .filter(|&start| start > from && record_at(bytes, start, want, max).is_ok())
        });
        let Some(mut at) = start else {
            return last;
        };
        while let Ok((len, _)) = record_at(bytes, at, want, max) {
            last = Some(want);
            want += 1;
            at += len;
        }
        from = at;
        // The record at `want` is missing or damaged too: look for the one after it.
        want += 1;
    }
}

fn segment_header(base: u64) -> [u8; SEGMENT_HEADER as usize] {
    let mut h = [0; SEGMENT_HEADER as usize];
    h[..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..].copy_from_slice(&base.to_le_bytes());
    h
}

fn create_segment(dir: &Path, base: u64, sync: bool) -> Result<File, LogError> {
    let path = segment_path(dir, base);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(io_err(&path))?;
    f.write_all(&segment_header(base)).map_err(io_err(&path))?;
    if sync {
        f.sync_all().map_err(io_err(&path))?;
        sync_dir(dir)?;
    }
    Ok(f)
}

impl Log {
    /// Opens the log in `dir`, creating it when absent, and recovers the active segment.
    pub fn open(dir: impl Into<PathBuf>, opts: LogOptions) -> Result<Log, LogError> {
        Log::open_repairing(dir, opts, None)
    }

    /// As [`Log::open`], but damage in the active segment with valid records after it (a
    /// group commit whose pages reached the disk out of order) is cut off instead of refused
    /// when `covers` says that every offset from the damaged record to the last valid one
    /// after it can be written again — from the write-ahead journal, which the caller then
    /// replays. [`Recovery::repaired`] says what was cut.
    pub fn open_repairing(
        dir: impl Into<PathBuf>,
        opts: LogOptions,
        repair: Option<&dyn Fn(Range<u64>) -> bool>,
    ) -> Result<Log, LogError> {
        let dir = dir.into();
        if !dir.is_dir() {
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            if opts.sync
                && let Some(parent) = dir.parent()
            {
                sync_dir(parent)?;
            }
        }
        let mut bases = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let e = e.map_err(io_err(&dir))?;
            let name = e.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".seg")) else {
                continue;
            };
            if stem.len() == 20
                && let Ok(b) = stem.parse::<u64>()
            {
                bases.push(b);
            }
        }
        bases.sort_unstable();
        let mut segments = BTreeMap::new();
        let mut size = 0;
        let Some((&last, sealed)) = bases.split_last() else {
            let active = create_segment(&dir, 0, opts.sync)?;
            segments.insert(
                0,
                Segment {
                    len: SEGMENT_HEADER,
                    index: Some(Vec::new()),
                    newest_ms: None,
                },
            );
            return Ok(Log {
                dir,
                opts,
                segments,
                active,
                next: 0,
                last_time: 0,
                size: SEGMENT_HEADER,
                recovery: Recovery::default(),
                buf: Vec::new(),
                unsynced: None,
            });
        };
        for &b in sealed {
            let p = segment_path(&dir, b);
            let len = fs::metadata(&p).map_err(io_err(&p))?.len();
            size += len;
            segments.insert(
                b,
                Segment {
                    len,
                    index: None,
                    newest_ms: None,
                },
            );
        }
        let path = segment_path(&dir, last);
        let mut active = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let mut bytes = Vec::new();
        active.read_to_end(&mut bytes).map_err(io_err(&path))?;
        let mut recovery = Recovery::default();
        let header = segment_header(last);
        if bytes.len() < header.len() && header.starts_with(&bytes) {
            // A crash while the segment was being created: write its header again.
            recovery.truncated_bytes = bytes.len() as u64;
            recovery.torn_at = Some((path.clone(), 0));
            active.set_len(0).map_err(io_err(&path))?;
            active.seek(SeekFrom::Start(0)).map_err(io_err(&path))?;
            active.write_all(&header).map_err(io_err(&path))?;
            active.sync_all().map_err(io_err(&path))?;
            bytes = header.to_vec();
        } else if bytes.get(..header.len()) != Some(&header[..]) {
            return Err(LogError::Corrupt {
                path,
                position: 0,
                reason: "bad segment header",
            });
        }
        let s = scan(&bytes, last, opts.max_record_bytes);
        match s.problem {
            Some((position, Problem::Corrupt(reason))) => {
                let seen_through = last_valid_offset_after(
                    &bytes,
                    position as usize,
                    s.next,
                    opts.max_record_bytes,
                );
                let repairable = seen_through.is_some_and(|through| {
                    repair.is_some_and(|covers| covers(s.next..through + 1))
                });
                if !repairable {
                    return Err(LogError::Corrupt {
                        path,
                        position,
                        reason,
                    });
                }
                // Every record from the damaged one on is in the write-ahead journal, which
                // the caller replays next: cut the segment there.
                recovery.repaired = Some(Damage {
                    path: path.clone(),
                    position,
                    reason,
                    offsets: s.next..seen_through.map_or(s.next, |through| through + 1),
                });
                recovery.truncated_bytes += bytes.len() as u64 - position;
                active.set_len(position).map_err(io_err(&path))?;
                active.sync_all().map_err(io_err(&path))?;
            }
            Some((position, Problem::Torn)) => {
                recovery.truncated_bytes += bytes.len() as u64 - position;
                recovery.torn_at = Some((path.clone(), position));
                active.set_len(position).map_err(io_err(&path))?;
                active.sync_all().map_err(io_err(&path))?;
            }
            None => {}
        }
        active.seek(SeekFrom::Start(s.end)).map_err(io_err(&path))?;
        size += s.end;
        segments.insert(
            last,
            Segment {
                len: s.end,
                index: Some(s.index),
                newest_ms: s.newest_ms,
            },
        );
        Ok(Log {
            dir,
            opts,
            segments,
            active,
            next: s.next,
            last_time: s.newest_ms.unwrap_or(0),
            size,
            recovery,
            buf: Vec::new(),
            unsynced: None,
        })
    }

    /// The folder of this log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What opening repaired.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// The oldest offset held.
    pub fn start(&self) -> u64 {
        *self
            .segments
            .keys()
            .next()
            .expect("a log has an active segment")
    }

    /// The offset the next append gets.
    pub fn next_offset(&self) -> u64 {
        self.next
    }

    /// The end of the records that are settled: [`Log::next_offset`] unless records were
    /// written ([`Log::write_batch`]) and not yet settled, which [`Log::read`] does not hand
    /// out.
    pub fn settled_end(&self) -> u64 {
        self.unsynced.as_ref().map_or(self.next, |u| u.next)
    }

    /// Bytes on disk.
    pub fn size_bytes(&self) -> u64 {
        self.size
    }

    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The file records are appended to now (the hub's checkpoint `fsync`s it by path).
    pub fn active_path(&self) -> PathBuf {
        segment_path(&self.dir, self.active_base())
    }

    fn active_base(&self) -> u64 {
        *self.segments.keys().next_back().expect("active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("active segment")
    }

    /// The offset after the last record of the segment starting at `base`.
    fn segment_end(&self, base: u64) -> u64 {
        self.segments
            .range(base + 1..)
            .next()
            .map_or(self.next, |(&b, _)| b)
    }

    /// Appends one record and waits for `fsync`; returns its offset.
    pub fn append(&mut self, payload: &[u8], now_ms: u64) -> Result<u64, LogError> {
        self.append_batch(&[payload], now_ms).map(|r| r.start)
    }

    /// Appends records with one `fsync` for all of them (group commit) and returns their
    /// offsets. The time stored is `now_ms`, raised to the log's last time if the clock went
    /// back. Either every record is appended or, on error, none is visible (a partial write is
    /// cut off again).
    pub fn append_batch<B: AsRef<[u8]>>(
        &mut self,
        records: &[B],
        now_ms: u64,
    ) -> Result<Range<u64>, LogError> {
        let range = self.write_batch(records, now_ms)?;
        self.commit()?;
        Ok(range)
    }

    /// Makes every record written by [`Log::write_batch`] durable; on failure they are cut off
    /// again, as if never written. `sync_written` + `settle` in one.
    pub fn commit(&mut self) -> Result<(), LogError> {
        let synced = self.sync_written();
        self.settle(synced)
    }

    /// Whether records were written but not yet made durable.
    pub fn has_unsynced(&self) -> bool {
        self.unsynced.is_some()
    }

    /// `fsync`s the records written by [`Log::write_batch`] since the last commit (nothing to
    /// do when there are none). Takes `&self` so that several logs can be synced in parallel
    /// (group commit across entities); pass the outcome to [`Log::settle`].
    pub fn sync_written(&self) -> Result<(), LogError> {
        if self.unsynced.is_none() {
            return Ok(());
        }
        self.active
            .sync_data()
            .map_err(io_err(&segment_path(&self.dir, self.active_base())))
    }

    /// Ends a commit with the outcome of [`Log::sync_written`]: on success the written records
    /// are durable; on failure they are cut off the file and forgotten (their offsets are used
    /// again) and the error is returned.
    pub fn settle(&mut self, synced: Result<(), LogError>) -> Result<(), LogError> {
        let Some(before) = self.unsynced.take() else {
            return synced;
        };
        if synced.is_err() {
            let _ = self.active.set_len(before.len);
            let _ = self.active.seek(SeekFrom::Start(before.len));
            let seg = self.active_mut();
            seg.len = before.len;
            match (seg.index.as_mut(), before.index_len) {
                (Some(index), Some(len)) => index.truncate(len),
                _ => seg.index = None,
            }
            seg.newest_ms = before.newest_ms;
            self.next = before.next;
            self.size = before.size;
            self.last_time = before.last_time;
        }
        synced
    }

    /// Appends records like [`Log::append_batch`] but does not wait for `fsync` (except when
    /// a segment fills up and is sealed): the records count as appended at once, and become
    /// durable with [`Log::commit`] (or [`Log::sync_written`] + [`Log::settle`]), which cuts
    /// them off again if the `fsync` fails. A caller must not hand them to anyone before then.
    pub fn write_batch<B: AsRef<[u8]>>(
        &mut self,
        records: &[B],
        now_ms: u64,
    ) -> Result<Range<u64>, LogError> {
        for r in records {
            let len = r.as_ref().len();
            if len > self.opts.max_record_bytes as usize {
                return Err(LogError::RecordTooLarge {
                    len,
                    max: self.opts.max_record_bytes,
                });
            }
        }
        let first = self.next;
        let time = now_ms.max(self.last_time);
        let mut chunk = std::mem::take(&mut self.buf);
        chunk.clear();
        let mut index = Vec::new();
        let mut n = 0;
        let mut last_indexed = self.last_indexed_pos();
        for r in records {
            let r = r.as_ref();
            let rec_len = (RECORD_HEADER + r.len()) as u64;
            let mut pos = self.active_mut().len + chunk.len() as u64;
            if pos > SEGMENT_HEADER && pos + rec_len > self.opts.segment_bytes {
                self.write_chunk(&chunk, n, &index, time)?;
                chunk.clear();
                index.clear();
                n = 0;
                self.roll()?;
                last_indexed = None;
                pos = SEGMENT_HEADER;
            }
            if last_indexed.is_none_or(|p| pos >= p + INDEX_INTERVAL) {
                index.push((self.next + n, pos));
                last_indexed = Some(pos);
            }
            encode_record(&mut chunk, self.next + n, time, r);
            n += 1;
        }
        self.write_chunk(&chunk, n, &index, time)?;
        self.buf = chunk;
        Ok(first..self.next)
    }

    fn last_indexed_pos(&mut self) -> Option<u64> {
        self.active_mut()
            .index
            .as_ref()
            .and_then(|i| i.last())
            .map(|&(_, p)| p)
    }

    fn write_chunk(
        &mut self,
        chunk: &[u8],
        n: u64,
        index: &[(u64, u64)],
        time: u64,
    ) -> Result<(), LogError> {
        if n == 0 {
            return Ok(());
        }
        let path = segment_path(&self.dir, self.active_base());
        let before = self.active_mut().len;
        if let Err(e) = self.active.write_all(chunk) {
            // Cut off whatever part reached the file, so that the next append starts clean.
            let _ = self.active.set_len(before);
            let _ = self.active.seek(SeekFrom::Start(before));
            return Err(io_err(&path)(e));
        }
        if self.opts.sync && self.unsynced.is_none() {
            let seg = &self.segments[&self.active_base()];
            self.unsynced = Some(Unsynced {
                len: seg.len,
                index_len: seg.index.as_ref().map(Vec::len),
                newest_ms: seg.newest_ms,
                next: self.next,
                size: self.size,
                last_time: self.last_time,
            });
        }
        let seg = self.active_mut();
        seg.len += chunk.len() as u64;
        seg.index
            .get_or_insert_with(Vec::new)
            .extend_from_slice(index);
        seg.newest_ms = Some(time);
        self.next += n;
        self.size += chunk.len() as u64;
        self.last_time = time;
        Ok(())
    }

    /// Seals the active segment and starts a new one at the next offset.
    fn roll(&mut self) -> Result<(), LogError> {
        // A sealed segment holds only durable records, also those that the hub's journal
        // made durable without syncing this file (`settle` without `sync_written`).
        self.commit()?;
        if self.opts.sync {
            let path = segment_path(&self.dir, self.active_base());
            self.active.sync_data().map_err(io_err(&path))?;
        }
        let base = self.next;
        self.active = create_segment(&self.dir, base, self.opts.sync)?;
        self.segments.insert(
            base,
            Segment {
                len: SEGMENT_HEADER,
                index: Some(Vec::new()),
                newest_ms: None,
            },
        );
        self.size += SEGMENT_HEADER;
        Ok(())
    }

    /// Scans a sealed segment the first time it is needed, checking every record.
    fn ensure_index(&mut self, base: u64) -> Result<(), LogError> {
        if self.segments[&base].index.is_some() {
            return Ok(());
        }
        let path = segment_path(&self.dir, base);
        let bytes = fs::read(&path).map_err(io_err(&path))?;
        let corrupt = |position, reason| LogError::Corrupt {
            path: path.clone(),
            position,
            reason,
        };
        if bytes.get(..SEGMENT_HEADER as usize) != Some(&segment_header(base)[..]) {
            return Err(corrupt(0, "bad segment header"));
        }
        let s = scan(&bytes, base, self.opts.max_record_bytes);
        match s.problem {
            Some((pos, Problem::Corrupt(reason))) => return Err(corrupt(pos, reason)),
            Some((pos, Problem::Torn)) => {
                return Err(corrupt(pos, "sealed segment ends in a partial record"));
            }
            None => {}
        }
        if s.next != self.segment_end(base) {
            return Err(corrupt(
                s.end,
                "sealed segment ends before the next segment's first offset",
            ));
        }
        let seg = self.segments.get_mut(&base).expect("segment");
        seg.index = Some(s.index);
        seg.newest_ms = s.newest_ms;
        Ok(())
    }

    /// Reads records from offset `from` on into `out`: at most `max_records`, and stopping
    /// once `max_bytes` of payload are read (at least one record is read if any exists).
    /// Every record's checksum and offset are checked.
    pub fn read(
        &mut self,
        from: u64,
        max_records: usize,
        max_bytes: usize,
        out: &mut Vec<Record>,
    ) -> Result<(), LogError> {
        if from < self.start() {
            return Err(LogError::Deleted {
                offset: from,
                start: self.start(),
            });
        }
        let (mut count, mut bytes) = (0, 0);
        let mut offset = from;
        let more =
            |count: usize, bytes: usize| count < max_records && (count == 0 || bytes < max_bytes);
        // Records written but not settled may still be cut off: nobody reads them before.
        let settled = self.settled_end();
        while offset < settled && more(count, bytes) {
            let base = *self
                .segments
                .range(..=offset)
                .next_back()
                .expect("offset at or after start")
                .0;
            self.ensure_index(base)?;
            let end = self.segment_end(base).min(settled);
            let index = self.segments[&base].index.as_deref().unwrap_or_default();
            let (mut expected, mut pos) = match index.partition_point(|&(o, _)| o <= offset) {
                0 => (base, SEGMENT_HEADER),
                i => index[i - 1],
            };
            let path = segment_path(&self.dir, base);
            let mut f = File::open(&path).map_err(io_err(&path))?;
            f.seek(SeekFrom::Start(pos)).map_err(io_err(&path))?;
            let mut r = BufReader::with_capacity(64 << 10, f);
            let mut h = [0u8; RECORD_HEADER];
            while expected < end && more(count, bytes) {
                let corrupt = |reason| LogError::Corrupt {
                    path: path.clone(),
                    position: pos,
                    reason,
                };
                r.read_exact(&mut h)
                    .map_err(|_| corrupt("partial record header"))?;
                let hdr = parse_header(&h);
                if hdr.len > self.opts.max_record_bytes as usize {
                    return Err(corrupt("record length over the limit"));
                }
                let mut data = vec![0; hdr.len];
                r.read_exact(&mut data)
                    .map_err(|_| corrupt("record runs past the end of the file"))?;
                if checksum(&h, &data) != hdr.checksum {
                    return Err(corrupt("record checksum mismatch"));
                }
                if hdr.offset != expected {
                    return Err(corrupt("record offset out of sequence"));
                }
                if expected >= offset {
                    count += 1;
                    bytes += data.len();
                    out.push(Record {
                        offset: expected,
                        time_ms: hdr.time_ms,
                        data,
                    });
                }
                pos += (RECORD_HEADER + hdr.len) as u64;
                expected += 1;
            }
            offset = expected;
        }
        Ok(())
    }

    /// Deletes whole sealed segments from the front as `policy` says (see the
    /// [module docs](self)); `protect_from` is the first offset not yet acked.
    pub fn retain(
        &mut self,
        now_ms: u64,
        policy: &Retention,
        protect_from: u64,
    ) -> Result<RetentionOutcome, LogError> {
        let mut out = RetentionOutcome::default();
        if let Some(age) = policy.max_age_ms {
            // A quiet entity's active segment would never roll, and so never expire.
            let a = self.active_mut();
            if a.len > SEGMENT_HEADER
                && a.newest_ms.is_some_and(|t| t.saturating_add(age) <= now_ms)
            {
                self.roll()?;
            }
        }
        while self.segments.len() > 1 {
            let base = self.start();
            let end = self.segment_end(base);
            let over_size = policy.max_bytes.is_some_and(|m| self.size > m);
            let expired = match policy.max_age_ms {
                Some(age) if end <= protect_from => {
                    self.ensure_index(base)?;
                    self.segments[&base]
                        .newest_ms
                        .is_none_or(|t| t.saturating_add(age) <= now_ms)
                }
                _ => false,
            };
            if !(expired || over_size) {
                break;
            }
            if end > protect_from {
                let from = base.max(protect_from);
                out.lost = Some(match out.lost {
                    Some(r) => r.start.min(from)..end,
                    None => from..end,
                });
            }
            let path = segment_path(&self.dir, base);
            fs::remove_file(&path).map_err(io_err(&path))?;
            let seg = self.segments.remove(&base).expect("segment");
            self.size -= seg.len;
            out.segments_deleted += 1;
            out.bytes_freed += seg.len;
        }
        if out.segments_deleted > 0 && self.opts.sync {
            sync_dir(&self.dir)?;
        }
        Ok(out)
    }

    /// Reads and checks every segment (tests and fuzzers).
    #[doc(hidden)]
    pub fn validate(&mut self) -> Result<(), LogError> {
        let bases: Vec<u64> = self.segments.keys().copied().collect();
        for b in bases {
            self.ensure_index(b)?;
        }
        let mut all = Vec::new();
        self.read(self.start(), usize::MAX, usize::MAX, &mut all)?;
        assert_eq!(all.len() as u64, self.next - self.start());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(segment_bytes: u64) -> LogOptions {
        LogOptions {
            segment_bytes,
            max_record_bytes: 1 << 16,
            sync: false,
        }
    }

    fn payload(i: u64) -> Vec<u8> {
        format!("notification {i} {}", "x".repeat((i % 13) as usize)).into_bytes()
    }

    fn read_all(log: &mut Log) -> Vec<Record> {
        let mut v = Vec::new();
        log.read(log.start(), usize::MAX, usize::MAX, &mut v)
            .unwrap();
        v
    }

    #[test]
    fn a_failed_sync_cuts_the_written_records_off_again() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("e");
        let sync_opts = LogOptions {
            sync: true,
            ..opts(512)
        };
        let mut log = Log::open(&dir, sync_opts.clone()).unwrap();
        log.append_batch(&[payload(0), payload(1)], 10).unwrap();
        // Enough to roll once: the sealed part is made durable by the roll, the rest waits.
        let batch: Vec<Vec<u8>> = (2..40).map(payload).collect();
        let r = log.write_batch(&batch, 20).unwrap();
        assert_eq!(r, 2..40);
        assert!(log.has_unsynced());
        let sealed_end = log.active_base();
        assert!(sealed_end > 2, "the batch rolled a segment");
        let failed = LogError::Corrupt {
            path: dir.clone(),
            position: 0,
            reason: "simulated fsync failure",
        };
        assert!(log.settle(Err(failed)).is_err());
        assert!(!log.has_unsynced());
        assert_eq!(log.next_offset(), sealed_end);
        log.validate().unwrap();
        // The offsets are used again, and a reopen sees the same log.
        let r = log.write_batch(&[payload(99)], 30).unwrap();
        assert_eq!(r, sealed_end..sealed_end + 1);
        log.commit().unwrap();
        drop(log);
        let mut log = Log::open(&dir, sync_opts).unwrap();
        let all = read_all(&mut log);
        assert_eq!(all.len() as u64, sealed_end + 1);
        assert_eq!(all.last().unwrap().data, payload(99));
        log.validate().unwrap();
    }

    #[test]
    fn append_read_roll_reopen() {
        let d = tempfile::tempdir().unwrap();
        let mut log = Log::open(d.path().join("e"), opts(512)).unwrap();
        for i in 0..100 {
            assert_eq!(log.append(&payload(i), 1000 + i).unwrap(), i);
        }
        let r = log.append_batch(&[payload(100), payload(101)], 5).unwrap();
        assert_eq!(r, 100..102);
        assert!(log.segment_count() > 5, "rolled by size");
        let all = read_all(&mut log);
        assert_eq!(all.len(), 102);
        for (i, rec) in all.iter().enumerate() {
            assert_eq!(rec.offset, i as u64);
            assert_eq!(rec.data, payload(i as u64));
        }
        assert_eq!(all[101].time_ms, 1099, "time never goes back");
        // Reading from the middle, limited.
        let mut some = Vec::new();
        log.read(37, 5, usize::MAX, &mut some).unwrap();
        assert_eq!(
            some.iter().map(|r| r.offset).collect::<Vec<_>>(),
            [37, 38, 39, 40, 41]
        );
        some.clear();
        log.read(37, usize::MAX, 1, &mut some).unwrap();
        assert_eq!(some.len(), 1, "max_bytes still yields one record");
        let size = log.size_bytes();
        drop(log);
        let mut log = Log::open(d.path().join("e"), opts(512)).unwrap();
        assert_eq!(log.next_offset(), 102);
        assert_eq!(log.size_bytes(), size);
        assert_eq!(log.recovery(), &Recovery::default());
        log.validate().unwrap();
        assert_eq!(log.append(b"more", 0).unwrap(), 102);
    }

    #[test]
    fn index_lookups_in_large_segments() {
        let d = tempfile::tempdir().unwrap();
        let mut log = Log::open(d.path(), opts(1 << 20)).unwrap();
        let batch: Vec<Vec<u8>> = (0..5000).map(payload).collect();
        log.append_batch(&batch, 0).unwrap();
        drop(log);
        let mut log = Log::open(d.path(), opts(1 << 20)).unwrap();
        for from in [0, 1, 999, 4095, 4999] {
            let mut v = Vec::new();
            log.read(from, 2, usize::MAX, &mut v).unwrap();
            assert_eq!(v[0].offset, from);
            assert_eq!(v[0].data, payload(from));
        }
    }

    /// Cutting the last record at every byte position drops exactly that record.
    #[test]
    fn torn_tail_at_every_byte() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        let mut log = Log::open(&src, opts(1 << 20)).unwrap();
        for i in 0..5 {
            log.append(&payload(i), i).unwrap();
        }
        let seg = segment_path(&src, 0);
        let before_last = fs::metadata(&seg).unwrap().len();
        log.append(&payload(5), 5).unwrap();
        drop(log);
        let full = fs::read(&seg).unwrap();
        for cut in before_last as usize..full.len() {
            let dir = d.path().join(format!("cut{cut}"));
            fs::create_dir(&dir).unwrap();
            fs::write(segment_path(&dir, 0), &full[..cut]).unwrap();
            let mut log = Log::open(&dir, opts(1 << 20)).unwrap();
            assert_eq!(log.next_offset(), 5, "cut at {cut}");
            let rec = log.recovery().clone();
            assert_eq!(
                rec.truncated_bytes,
                cut as u64 - before_last,
                "cut at {cut}"
            );
            assert_eq!(rec.torn_at.is_some(), cut as u64 > before_last);
            let all = read_all(&mut log);
            assert_eq!(all.len(), 5);
            assert_eq!(log.append(b"after", 9).unwrap(), 5);
            drop(log);
            let mut log = Log::open(&dir, opts(1 << 20)).unwrap();
            assert_eq!(read_all(&mut log)[5].data, b"after");
            fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn torn_segment_creation_is_repaired() {
        let d = tempfile::tempdir().unwrap();
        let mut log = Log::open(d.path(), opts(64)).unwrap();
        log.append(&payload(0), 0).unwrap();
        log.append(&payload(1), 0).unwrap();
        assert_eq!(log.segment_count(), 2);
        drop(log);
        let seg = segment_path(d.path(), 1);
        let len = fs::metadata(&seg).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len.min(5))
            .unwrap();
        // The second segment lost its record and half its header: both repaired.
        let mut log = Log::open(d.path(), opts(64)).unwrap();
        assert_eq!(log.next_offset(), 1);
        assert_eq!(read_all(&mut log).len(), 1);
        assert_eq!(log.append(b"x", 0).unwrap(), 1);
    }

    #[test]
    fn flipped_byte_mid_log_is_reported_with_file_and_position() {
        let d = tempfile::tempdir().unwrap();
        let mut log = Log::open(d.path(), opts(1 << 20)).unwrap();
        let mut positions = Vec::new();
        for i in 0..10 {
            positions.push(fs::metadata(segment_path(d.path(), 0)).unwrap().len());
            log.append(&payload(i), 0).unwrap();
        }
        drop(log);
        let seg = segment_path(d.path(), 0);
        let mut bytes = fs::read(&seg).unwrap();
        bytes[positions[4] as usize + RECORD_HEADER + 2] ^= 0x20;
        fs::write(&seg, &bytes).unwrap();
        match Log::open(d.path(), opts(1 << 20)) {
            Err(LogError::Corrupt { path, position, .. }) => {
                assert_eq!(path, seg);
                assert_eq!(position, positions[4]);
            }
            other => panic!("expected corruption, got {other:?}"),
        }
        // A flipped length field mid-log is corruption too, not a torn tail.
        bytes[positions[4] as usize + RECORD_HEADER + 2] ^= 0x20;
        bytes[positions[6] as usize] ^= 0x01;
        fs::write(&seg, &bytes).unwrap();
        assert!(matches!(
            Log::open(d.path(), opts(1 << 20)),
            Err(LogError::Corrupt { position, .. }) if position == positions[6]
        ));
    }

    #[test]
    fn damage_is_cut_only_when_every_offset_from_it_to_the_last_valid_one_can_be_rewritten() {
        let d = tempfile::tempdir().unwrap();
        let mut log = Log::open(d.path(), opts(1 << 20)).unwrap();
        let mut positions = Vec::new();
        for i in 0..10 {
            positions.push(fs::metadata(segment_path(d.path(), 0)).unwrap().len());
            log.append(&payload(i), 0).unwrap();
        }
        drop(log);
        let seg = segment_path(d.path(), 0);
        let mut bytes = fs::read(&seg).unwrap();
        // Records 3 and 6 damaged: the valid ones seen after the first damage run to 9.
        bytes[positions[3] as usize + RECORD_HEADER + 1] ^= 0x20;
        bytes[positions[6] as usize + RECORD_HEADER + 1] ^= 0x20;
        fs::write(&seg, &bytes).unwrap();
        let asked = std::cell::RefCell::new(Vec::new());
        let partial = |r: Range<u64>| {
            asked.borrow_mut().push(r.clone());
            r.end <= 7
        };
        assert!(matches!(
            Log::open_repairing(d.path(), opts(1 << 20), Some(&partial)),
            Err(LogError::Corrupt { position, .. }) if position == positions[3]
        ));
        assert_eq!(asked.borrow().len(), 1);
        assert_eq!(asked.borrow()[0], 3..10);
        assert_eq!(
            fs::read(&seg).unwrap(),
            bytes,
            "refused damage is left as found"
        );
        let all = |_: Range<u64>| true;
        let mut log = Log::open_repairing(d.path(), opts(1 << 20), Some(&all)).unwrap();
        let repaired = log.recovery().repaired.clone().unwrap();
        assert_eq!((repaired.position, repaired.offsets), (positions[3], 3..10));
        assert_eq!(log.next_offset(), 3);
        let got: Vec<Vec<u8>> = read_all(&mut log).into_iter().map(|r| r.data).collect();
        assert_eq!(got, (0..3).map(payload).collect::<Vec<_>>());
    }

    #[test]
    fn corruption_in_a_sealed_segment_is_reported_on_read() {
        let d = tempfile::tempdir().unwrap();
        let mut log = Log::open(d.path(), opts(256)).unwrap();
        for i in 0..40 {
            log.append(&payload(i), 0).unwrap();
        }
        drop(log);
        let seg = segment_path(d.path(), 0);
        let mut bytes = fs::read(&seg).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&seg, &bytes).unwrap();
        let mut log = Log::open(d.path(), opts(256)).unwrap();
        let mut v = Vec::new();
        let err = log.read(0, usize::MAX, usize::MAX, &mut v).unwrap_err();
        assert!(
            matches!(&err, LogError::Corrupt { path, .. } if *path == seg),
            "{err}"
        );
        // Later segments still read.
        let later = log.segments.keys().nth(2).copied().unwrap();
        v.clear();
        log.read(later, 1, usize::MAX, &mut v).unwrap();
        assert_eq!(v[0].data, payload(later));
    }

    #[test]
    fn retention_by_age_spares_unacked_segments() {
        let d = tempfile::tempdir().unwrap();
        let mut log = Log::open(d.path(), opts(256)).unwrap();
        for i in 0..40 {
            log.append(&payload(i), i * 1000).unwrap();
        }
        let policy = Retention {
            max_age_ms: Some(10_000),
            max_bytes: None,
        };
        // Nothing acked: nothing deleted, however old.
        let out = log.retain(1_000_000, &policy, 0).unwrap();
        assert_eq!(out.segments_deleted, 0);
        let n = log.segment_count();
        // Acked up to 20: segments wholly below 20 and older than 10 s go.
        let out = log.retain(35_000, &policy, 20).unwrap();
        assert!(out.segments_deleted > 0);
        assert_eq!(out.lost, None);
        assert!(log.start() <= 20);
        assert!(log.start() > 0);
        assert_eq!(log.segment_count(), n - out.segments_deleted);
        let mut v = Vec::new();
        assert!(matches!(
            log.read(0, 1, 1, &mut v),
            Err(LogError::Deleted { offset: 0, .. })
        ));
        log.read(20, 100, usize::MAX, &mut v).unwrap();
        assert_eq!(v.len(), 20);
        // Everything acked and old: the quiet active segment rolls and expires too.
        let out = log.retain(10_000_000, &policy, 40).unwrap();
        assert!(out.segments_deleted > 0);
        assert_eq!(log.start(), 40);
        assert_eq!(log.next_offset(), 40);
        drop(log);
        let log = Log::open(d.path(), opts(256)).unwrap();
        assert_eq!(
            (log.start(), log.next_offset()),
            (40, 40),
            "offsets survive"
        );
    }

    #[test]
    fn retention_by_size_reports_what_it_forced_out() {
        let d = tempfile::tempdir().unwrap();
        let mut log = Log::open(d.path(), opts(256)).unwrap();
        for i in 0..60 {
            log.append(&payload(i), 0).unwrap();
        }
        let cap = 1024;
        let policy = Retention {
            max_age_ms: None,
            max_bytes: Some(cap),
        };
        let out = log.retain(0, &policy, 5).unwrap();
        assert!(log.size_bytes() <= cap);
        let lost = out.lost.expect("un-acked data deleted");
        assert_eq!(lost, 5..log.start());
        assert_eq!(out.bytes_freed > 0, out.segments_deleted > 0);
        let again = log.retain(0, &policy, log.start()).unwrap();
        assert_eq!(again, RetentionOutcome::default());
    }

    #[test]
    fn refuses_oversized_records_without_writing() {
        let d = tempfile::tempdir().unwrap();
        let mut log = Log::open(d.path(), opts(1 << 20)).unwrap();
        let big = vec![0u8; (1 << 16) + 1];
        assert!(matches!(
            log.append_batch(&[&b"ok"[..], &big[..]], 0),
            Err(LogError::RecordTooLarge { .. })
        ));
        assert_eq!(log.next_offset(), 0);
    }
}
