//! The parallel scan: telemetry files read and matched on a local thread pool, hits handed to
//! a [`ScanSink`] in input order.
//!
//! A file is split into [`Part`]s (Parquet row groups; the whole file for the other formats).
//! Parts are decoded on the pool, several at once, one batch per job; each decoded batch is
//! matched in a job of its own, so that even a file read front to back (JSON lines) has its
//! matching spread over every thread. The calling thread puts results back in input order
//! and feeds the sink; it also decides what runs next:
//!
//! - at most `threads` decode jobs run at a time;
//! - at most `in_flight` batches are decoded but not yet handed to the sink, which bounds
//!   memory whatever the input's size; one of those slots is always kept for the earliest
//!   unfinished part, so that the batch the sink waits for can always be decoded;
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
    /// A decode job is back: the part's reader (unless opening it failed) and what it read
    /// (`None` at the end of the part).
    Decoded {
        part: usize,
        source: Option<BatchIter>,
        batch: Option<Result<(), TelemetryError>>,
    },
    /// A batch has been matched.
    Matched {
        part: usize,
        seq: u64,
        result: Matched,
    },
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
    /// flight (four per thread).
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
            in_flight: 4 * threads.max(1),
            decode_only: false,
        })
    }

    /// Sets how many batches may be decoded but not yet handed to the sink (at least 2).
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
            // Decode jobs running; batches decoding or decoded and not yet emitted; match
            // jobs running; parts opened and not finished.
            let (mut decoding, mut in_flight, mut open) = (0usize, 0usize, 0usize);
            loop {
                // Hand finished batches to the sink, in order.
                while head < n {
                    let p = &mut state[head];
                    if let Some(m) = p.ready.remove(&p.emitted) {
                        p.emitted += 1;
                        in_flight -= 1;
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
                // Start decode jobs, earliest parts first.
                for (i, p) in state.iter_mut().enumerate().skip(head) {
                    if decoding >= self.threads || in_flight >= self.in_flight {
                        break;
                    }
                    if i != head && in_flight + 1 >= self.in_flight {
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
                    let seq = p.scheduled;
                    p.scheduled += 1;
                    decoding += 1;
                    in_flight += 1;
                    let tx = tx.clone();
                    let only = self.decode_only;
                    scope.spawn(move |scope| decode(scope, matcher, only, i, seq, source, tx));
                }
                let event = rx.recv().expect("the scan holds a sender");
                match event {
                    Event::Decoded {
                        part,
                        source,
                        batch,
                    } => {
                        decoding -= 1;
                        let p = &mut state[part];
                        p.busy = false;
                        p.source = source.map(Source::Open);
                        match batch {
                            Some(Ok(())) => {}
                            Some(Err(e)) => return Err(e.into()),
                            None => {
                                in_flight -= 1;
                                p.scheduled -= 1;
                                p.total = Some(p.scheduled);
                                p.source = None;
                            }
                        }
                    }
                    Event::Matched { part, seq, result } => {
                        state[part].ready.insert(seq, result);
                    }
                }
            }
        })?;
        Ok(stats)
    }
}

/// One decode job: reads the part's next batch, hands it to a match job, and gives the reader
/// back.
fn decode<'s>(
    scope: &rayon::Scope<'s>,
    matcher: &'s Matcher<'_>,
    decode_only: bool,
    part: usize,
    seq: u64,
    source: Source,
    tx: mpsc::Sender<Event>,
) {
    let mut it = match source {
        Source::Open(it) => it,
        Source::Unopened(p) => match p.open() {
            Ok(it) => it,
            Err(e) => {
                let _ = tx.send(Event::Decoded {
                    part,
                    source: None,
                    batch: Some(Err(e)),
                });
                return;
            }
        },
    };
    let batch = match it.next() {
        None => None,
        Some(Err(e)) => Some(Err(e)),
        Some(Ok(b)) => {
            let tx = tx.clone();
            scope.spawn(move |_| {
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
            Some(Ok(()))
        }
    };
    let _ = tx.send(Event::Decoded {
        part,
        source: Some(it),
        batch,
    });
}
