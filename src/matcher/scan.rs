//! The parallel scan: telemetry files read and matched on a local thread pool, hits handed to
//! a [`ScanSink`] in input order.
//!
//! A file is split into [`Part`]s (Parquet row groups; the whole file for the other formats).
//! Parts are decoded on the pool, several at once; a decode job reads up to the batches it
//! was given slots for, one after the other, and hands each decoded batch to a match job of
//! its own, so that even a file read front to back (JSON lines) has its matching spread over
//! every thread. The calling thread puts results back in input order and feeds the sink; it
//! also decides what runs next:
//!
//! - at most `threads` decode jobs run at a time;
//! - at most `in_flight` batches are decoding or decoded but not yet matched, which bounds the
//!   memory of decoded columns whatever the input's size; a decode job takes at most its
//!   thread's share of those slots (several batches per job, so that a decoder is not idle on
//!   a round trip through the calling thread after every batch), and one slot is always kept
//!   for the earliest unfinished part, so that the batch the sink waits for can always be
//!   decoded;
//! - matched batches wait for their turn as results only (hits, unreadable records), so that
//!   later parts — a later row group — keep every thread busy while the earliest is still
//!   being read: a part other than the earliest starts no new batch while more than
//!   [`MAX_WAITING`] results per thread, or [`MAX_WAITING_HITS`] hits, wait;
//! - parts are started in file order, at most `2 × threads` at a time.
//!
//! Row numbers are those of the readers: 0-based data rows within each file.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::mpsc;

use super::{Hit, Matcher};
use crate::telemetry::{
    self, BatchIter, FieldPresence, InputFormat, Part, RowError, TelemetryError,
};

/// Matched batches per thread that may wait for an earlier part before a later part starts
/// another batch: a 1 Mi-row Parquet row group is 128 batches, so two threads keep busy on two
/// row groups.
pub const MAX_WAITING: usize = 256;

/// Hits that may wait for an earlier part before a later part starts another batch (about
/// 100 bytes each).
pub const MAX_WAITING_HITS: usize = 1 << 20;

/// One matched batch, as the sink sees it.
#[derive(Debug)]
pub struct ScannedBatch<'s> {
    /// The input file's name.
    pub input: &'s str,
    /// Row number of the batch's first row within its file.
    pub first_row: u64,
    /// Number of rows in the batch.
    pub rows: usize,
    /// Records in the batch that could not be read (their rows are empty).
    pub errors: &'s [RowError],
    /// The hits, in row order.
    pub hits: &'s [Hit],
    /// Which mapped fields the batch holds, to tell a field the input lacks from one
    /// without hits.
    pub present: &'s FieldPresence,
}

/// Where a scan's results go. Batches arrive in input order, one file after the other.
pub trait ScanSink {
    /// Takes one batch's results; `Ok(false)` stops the scan.
    fn batch(&mut self, batch: &ScannedBatch<'_>) -> io::Result<bool>;
}

impl<F> ScanSink for F
where
    F: FnMut(&ScannedBatch<'_>) -> io::Result<bool>,
{
    fn batch(&mut self, batch: &ScannedBatch<'_>) -> io::Result<bool> {
        self(batch)
    }
}

/// Why a scan failed.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// A telemetry file could not be read (the message names the file and where).
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    /// The sink failed (writing hits).
    #[error("writing hits: {0}")]
    Sink(#[source] io::Error),
    /// A scan thread panicked while reading or matching a batch: a bug in cwn (or in a
    /// decoder it uses) that this input triggers. The scan stops instead of waiting for the
    /// lost batch.
    #[error(
        "{input}: a scan thread failed while {stage} (part {part}, from row {first_row}): \
         {message}; this is a bug, please report it with the input"
    )]
    Panicked {
        /// The input file's name.
        input: String,
        /// `reading` or `matching`.
        stage: &'static str,
        /// The part (Parquet row group) it was in.
        part: usize,
        /// Row number of the batch's first row when matching, of the part's when reading.
        first_row: u64,
        /// The panic's message.
        message: String,
    },
    /// The thread pool could not be started.
    #[error("starting {threads} scan thread(s): {reason}")]
    Pool {
        /// Threads asked for.
        threads: usize,
        /// What went wrong.
        reason: String,
    },
}

/// Totals of a scan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// Rows read (unreadable ones included).
    pub rows: u64,
    /// Rows that could not be read.
    pub bad_rows: u64,
    /// Hits handed to the sink.
    pub hits: u64,
    /// Whether the sink stopped the scan.
    pub stopped: bool,
}

impl ScanStats {
    fn add(&mut self, o: ScanStats) {
        self.rows += o.rows;
        self.bad_rows += o.bad_rows;
        self.hits += o.hits;
        self.stopped |= o.stopped;
    }
}

/// Scans telemetry on its own thread pool. Build it once and scan many files.
#[derive(Debug)]
pub struct Scanner {
    pool: rayon::ThreadPool,
    threads: usize,
    in_flight: usize,
    decode_only: bool,
}

enum Source {
    Unopened(Part),
    Open(BatchIter),
}

struct Matched {
    first_row: u64,
    rows: usize,
    errors: Vec<RowError>,
    hits: Vec<Hit>,
    present: FieldPresence,
}

enum Event {
    /// A decode job is back: the part's reader (unless opening it failed), how many of its
    /// slots it did not fill, and how it stopped (`None`: its slots used up; `Some(Ok)`: the
    /// end of the part; `Some(Err)`: a read failed).
    Decoded {
        part: usize,
        source: Option<BatchIter>,
        unused: u64,
        end: Option<Result<(), TelemetryError>>,
    },
    /// A batch has been matched.
    Matched {
        part: usize,
        seq: u64,
        result: Matched,
    },
    /// A job panicked; its batches will never arrive.
    Panicked {
        part: usize,
        /// The batch's first row, when the job was matching one.
        first_row: Option<u64>,
        stage: &'static str,
        message: String,
    },
}

/// Runs one job, turning a panic into [`Event::Panicked`]: the calling thread waits for every
/// batch it handed out, so a job that dies silently would leave it waiting for ever.
fn guarded(
    part: usize,
    first_row: Option<u64>,
    stage: &'static str,
    tx: &mpsc::Sender<Event>,
    job: impl FnOnce(),
) {
    if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)) {
        let message = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into());
        let _ = tx.send(Event::Panicked {
            part,
            first_row,
            stage,
            message,
        });
    }
}

#[derive(Default)]
struct PartState {
    /// The reader while no job holds it.
    source: Option<Source>,
    busy: bool,
    opened: bool,
    /// Batches scheduled so far (the next batch's sequence number).
    scheduled: u64,
    /// Number of batches, once the end was seen.
    total: Option<u64>,
    emitted: u64,
    ready: BTreeMap<u64, Matched>,
}

impl Scanner {
    /// A scanner with `threads` threads (0: one per core) and the default bound on batches in
    /// flight (eight per thread).
    pub fn new(threads: usize) -> Result<Self, ScanError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("cwn-scan-{i}"))
            .build()
            .map_err(|e| ScanError::Pool {
                threads,
                reason: e.to_string(),
            })?;
        let threads = pool.current_num_threads();
        Ok(Scanner {
            pool,
            threads,
            in_flight: 8 * threads.max(1),
            decode_only: false,
        })
    }

    /// Sets how many batches may be decoding or decoded but not yet matched (at least 2).
    pub fn with_in_flight(mut self, batches: usize) -> Self {
        self.in_flight = batches.max(2);
        self
    }

    /// Number of threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Decode only: every batch is read and decoded with the same readers, threads and
    /// batches as a real scan, and handed on through the same jobs, but nothing is matched
    /// (no hits, no field presence) — the floor a scan's cost is measured against
    /// (`cwn match --decode-only`).
    pub fn with_decode_only(mut self, on: bool) -> Self {
        self.decode_only = on;
        self
    }

    /// Scans files one after the other (each spread over the pool), handing every batch's
    /// hits to `sink` in input order. `format` overrides detection.
    pub fn scan_files(
        &self,
        matcher: &Matcher<'_>,
        paths: &[impl AsRef<Path>],
        format: Option<InputFormat>,
        sink: &mut dyn ScanSink,
    ) -> Result<ScanStats, ScanError> {
        let mut total = ScanStats::default();
        for p in paths {
            let p = p.as_ref();
            let parts = telemetry::open_parts(p, format, matcher.fields())?;
            let stats = self.scan_parts(matcher, &p.display().to_string(), parts, sink)?;
            total.add(stats);
            if stats.stopped {
                break;
            }
        }
        Ok(total)
    }

    /// Scans the parts of one input, named `input` to the sink.
    pub fn scan_parts(
        &self,
        matcher: &Matcher<'_>,
        input: &str,
        parts: Vec<Part>,
        sink: &mut dyn ScanSink,
    ) -> Result<ScanStats, ScanError> {
        let n = parts.len();
        let first_rows: Vec<u64> = parts.iter().map(Part::first_row).collect();
        let mut state: Vec<PartState> = parts
            .into_iter()
            .map(|p| PartState {
                source: Some(Source::Unopened(p)),
                ..PartState::default()
            })
            .collect();
        let mut stats = ScanStats::default();
        let (tx, rx) = mpsc::channel::<Event>();
        let max_open = 2 * self.threads;
        self.pool.in_place_scope(|scope| -> Result<(), ScanError> {
            let mut head = 0;
            // Decode jobs running; batches decoding or decoded and not yet matched; parts
            // opened and not finished; matched batches and their hits waiting for the sink.
            let (mut decoding, mut in_flight, mut open) = (0usize, 0usize, 0usize);
            let (mut waiting, mut waiting_hits) = (0usize, 0usize);
            let max_waiting = MAX_WAITING * self.threads;
            loop {
                // Hand finished batches to the sink, in order.
                while head < n {
                    let p = &mut state[head];
                    if let Some(m) = p.ready.remove(&p.emitted) {
                        p.emitted += 1;
                        waiting -= 1;
                        waiting_hits -= m.hits.len();
                        stats.rows += m.rows as u64;
                        stats.bad_rows += m.errors.len() as u64;
                        stats.hits += m.hits.len() as u64;
                        let go_on = sink
                            .batch(&ScannedBatch {
                                input,
                                first_row: m.first_row,
                                rows: m.rows,
                                errors: &m.errors,
                                hits: &m.hits,
                                present: &m.present,
                            })
                            .map_err(ScanError::Sink)?;
                        if !go_on {
                            stats.stopped = true;
                            return Ok(());
                        }
                    } else if p.total == Some(p.emitted) {
                        head += 1;
                        open -= 1;
                    } else {
                        break;
                    }
                }
                if head == n {
                    return Ok(());
                }
                // Start decode jobs, earliest parts first, each with up to its thread's share
                // of the free slots (one kept for the head part).
                let share = (self.in_flight / self.threads).max(1);
                for (i, p) in state.iter_mut().enumerate().skip(head) {
                    if decoding >= self.threads || in_flight >= self.in_flight {
                        break;
                    }
                    let free = self.in_flight - in_flight - usize::from(i != head);
                    if free == 0
                        || (i != head
                            && (waiting >= max_waiting || waiting_hits >= MAX_WAITING_HITS))
                    {
                        break;
                    }
                    if p.busy || p.total.is_some() {
                        continue;
                    }
                    if !p.opened {
                        if open >= max_open {
                            break;
                        }
                        p.opened = true;
                        open += 1;
                    }
                    let Some(source) = p.source.take() else {
                        continue;
                    };
                    p.busy = true;
                    let slots = free.min(share);
                    let job = Job {
                        part: i,
                        seq: p.scheduled,
                        slots: slots as u64,
                        decode_only: self.decode_only,
                    };
                    p.scheduled += slots as u64;
                    decoding += 1;
                    in_flight += slots;
                    let tx = tx.clone();
                    scope.spawn(move |scope| {
                        let guard = tx.clone();
                        guarded(i, None, "reading", &guard, || {
                            decode(scope, matcher, job, source, tx)
                        });
                    });
                }
                let event = rx.recv().expect("the scan holds a sender");
                match event {
                    Event::Decoded {
                        part,
                        source,
                        unused,
                        end,
                    } => {
                        decoding -= 1;
                        let p = &mut state[part];
                        p.busy = false;
                        p.source = source.map(Source::Open);
                        // The slots the job did not fill are free again.
                        p.scheduled -= unused;
                        in_flight -= unused as usize;
                        match end {
                            None => {}
                            Some(Err(e)) => return Err(e.into()),
                            Some(Ok(())) => {
                                p.total = Some(p.scheduled);
                                p.source = None;
                            }
                        }
                    }
                    Event::Matched { part, seq, result } => {
                        in_flight -= 1;
                        waiting += 1;
                        waiting_hits += result.hits.len();
                        state[part].ready.insert(seq, result);
                    }
                    Event::Panicked {
                        part,
                        first_row,
                        stage,
                        message,
                    } => {
                        return Err(ScanError::Panicked {
                            input: input.to_string(),
                            stage,
                            part,
                            first_row: first_row.unwrap_or(first_rows[part]),
                            message,
                        });
                    }
                }
            }
        })?;
        Ok(stats)
    }
}

/// What a decode job is to do: read up to `slots` batches of `part`, the first of them the
/// part's batch number `seq`.
struct Job {
    part: usize,
    seq: u64,
    slots: u64,
    decode_only: bool,
}

/// One decode job: reads the part's next batches, hands each to a match job, and gives the
/// reader back.
fn decode<'s>(
    scope: &rayon::Scope<'s>,
    matcher: &'s Matcher<'_>,
    job: Job,
    source: Source,
    tx: mpsc::Sender<Event>,
) {
    let Job {
        part,
        seq,
        slots,
        decode_only,
    } = job;
    let mut it = match source {
        Source::Open(it) => it,
        Source::Unopened(p) => match p.open() {
            Ok(it) => it,
            Err(e) => {
                let _ = tx.send(Event::Decoded {
                    part,
                    source: None,
                    unused: slots,
                    end: Some(Err(e)),
                });
                return;
            }
        },
    };
    let mut done = 0;
    let mut end = None;
    while done < slots {
        match it.next() {
            None => {
                end = Some(Ok(()));
                break;
            }
            Some(Err(e)) => {
                end = Some(Err(e));
                break;
            }
            Some(Ok(b)) => {
                let tx = tx.clone();
                let seq = seq + done;
                scope.spawn(move |_| {
                    let first_row = Some(b.first_row);
                    guarded(part, first_row, "matching", &tx, || {
                        let mut hits = Vec::new();
                        let mut present = FieldPresence::new(matcher.fields());
                        if !decode_only {
                            matcher.match_batch(&b, &mut hits);
                            present.observe(matcher.fields(), &b.batch);
                        }
                        let result = Matched {
                            first_row: b.first_row,
                            rows: b.batch.num_rows(),
                            errors: b.errors,
                            hits,
                            present,
                        };
                        let _ = tx.send(Event::Matched { part, seq, result });
                    });
                });
                done += 1;
            }
        }
    }
    let _ = tx.send(Event::Decoded {
        part,
        source: Some(it),
        unused: slots - done,
        end,
    });
}
