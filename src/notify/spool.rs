//! The subscriber's outbox: what the hub sent, stored durably before it is acknowledged, and
//! read by every delivery target at its own pace, so a target that is down for an hour loses
//! nothing and holds up neither the hub nor the other targets.
//!
//! A directory of segment files `<first seq, 20 digits>.log`, each line `<seq>\t<record>\n`
//! (the record one line of JSON), appended by one writer and fsynced before the hub hears an
//! acknowledgement; a torn last line (a crash mid-write) is cut at start. Each target keeps
//! its cursor — the last sequence number it delivered — in `cursors/<name>`, replaced
//! atomically after each delivery; a segment is deleted once every target's cursor is past it.
//! Delivery is therefore at least once: a crash between delivery and cursor write sends the
//! last records again, with the same ids.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// A segment is closed and a new one begun past this size.
const SEGMENT_BYTES: u64 = 8 << 20;

/// One record read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Its sequence number, from 1.
    pub seq: u64,
    /// Its bytes (one line of JSON, without the newline).
    pub body: Vec<u8>,
}

struct Writer {
    file: File,
    /// First sequence number of the open segment.
    first: u64,
    len: u64,
    /// The next sequence number.
    next: u64,
    /// The last sequence number fsynced: what readers see.
    durable: u64,
}

/// See the [module docs](self).
pub struct Spool {
    dir: PathBuf,
    writer: Mutex<Writer>,
    grown: Condvar,
}

fn at(path: &Path, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{}: {e}", path.display()))
}

fn segment_name(first: u64) -> String {
    format!("{first:020}.log")
}

/// The segments of `dir`, by first sequence number.
fn segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut v: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .map_err(|e| at(dir, e))?
        .filter_map(|e| {
            let e = e.ok()?;
            let first = e.file_name().to_str()?.strip_suffix(".log")?.parse().ok()?;
            Some((first, e.path()))
        })
        .collect();
    v.sort();
    Ok(v)
}

/// The sequence number of a line, if it is one the spool wrote.
fn seq_of(line: &[u8]) -> Option<u64> {
    let tab = line.iter().position(|&b| b == b'\t')?;
    std::str::from_utf8(&line[..tab]).ok()?.parse().ok()
}

impl Spool {
    /// Opens (creates) the spool in `dir`; a torn last line is cut.
    pub fn open(dir: &Path) -> io::Result<Spool> {
        fs::create_dir_all(dir.join("cursors")).map_err(|e| at(dir, e))?;
        let segs = segments(dir)?;
        let (first, path) = match segs.last() {
            Some((first, path)) => (*first, path.clone()),
            None => (1, dir.join(segment_name(1))),
        };
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| at(&path, e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| at(&path, e))?;
        let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if whole < bytes.len() {
            tracing::warn!(
                "{}: cut a torn last record ({} bytes)",
                path.display(),
                bytes.len() - whole
            );
            file.set_len(whole as u64).map_err(|e| at(&path, e))?;
            file.sync_data().map_err(|e| at(&path, e))?;
        }
        let last = bytes[..whole]
            .split(|&b| b == b'\n')
            .rfind(|l| !l.is_empty())
            .map(|l| seq_of(l).ok_or_else(|| at(&path, "a line that is not a spool record")))
            .transpose()?;
        let next = last.map_or(first, |s| s + 1);
        Ok(Spool {
            dir: dir.to_owned(),
            writer: Mutex::new(Writer {
                file,
                first,
                len: whole as u64,
                next,
                durable: next - 1,
            }),
            grown: Condvar::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `records` (each one line of JSON) and fsyncs them; returns the last sequence
    /// number. Readers see them once this returns.
    pub fn append<B: AsRef<[u8]>>(&self, records: &[B]) -> io::Result<u64> {
        let mut w = self.lock();
        if records.is_empty() {
            return Ok(w.next - 1);
        }
        if w.len >= SEGMENT_BYTES {
            let path = self.dir.join(segment_name(w.next));
            w.file = OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .open(&path)
                .map_err(|e| at(&path, e))?;
            w.first = w.next;
            w.len = 0;
        }
        let mut text = Vec::new();
        for r in records {
            let r = r.as_ref();
            debug_assert!(!r.contains(&b'\n'));
            text.extend_from_slice(w.next.to_string().as_bytes());
            text.push(b'\t');
            text.extend_from_slice(r);
            text.push(b'\n');
            w.next += 1;
        }
        let path = self.dir.join(segment_name(w.first));
        w.file.write_all(&text).map_err(|e| at(&path, e))?;
        w.file.sync_data().map_err(|e| at(&path, e))?;
        w.len += text.len() as u64;
        w.durable = w.next - 1;
        self.grown.notify_all();
        Ok(w.durable)
    }

    /// The last durable sequence number (0: none yet).
    pub fn last(&self) -> u64 {
        self.lock().durable
    }

    /// Waits up to `timeout` for a record after `seq`; whether there is one.
    pub fn wait_after(&self, seq: u64, timeout: Duration) -> bool {
        let w = self.lock();
        let (w, _) = self
            .grown
            .wait_timeout_while(w, timeout, |w| w.durable <= seq)
            .unwrap_or_else(|p| p.into_inner());
        w.durable > seq
    }

    /// Wakes every waiting reader (to see a stop flag).
    pub fn wake(&self) {
        self.grown.notify_all();
    }

    /// A reader for target `name` (a file name: letters, digits, `-`, `_`, `.`), from its
    /// stored cursor.
    pub fn reader(&self, name: &str) -> io::Result<Reader<'_>> {
        let cursor_path = self.dir.join("cursors").join(name);
        let cursor = match fs::read_to_string(&cursor_path) {
            Ok(s) => s
                .trim()
                .parse()
                .map_err(|e| at(&cursor_path, format!("not a sequence number: {e}")))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(at(&cursor_path, e)),
        };
        Ok(Reader {
            spool: self,
            cursor_path,
            cursor,
            read: cursor,
            at: None,
        })
    }

    /// Deletes the segments every cursor in `cursors/` is past (the open one stays).
    pub fn compact(&self) -> io::Result<usize> {
        let dir = self.dir.join("cursors");
        let mut low = u64::MAX;
        for e in fs::read_dir(&dir).map_err(|e| at(&dir, e))? {
            let e = e.map_err(|e| at(&dir, e))?;
            if e.file_name().to_str().is_some_and(|n| n.ends_with(".tmp")) {
                continue;
            }
            let s = fs::read_to_string(e.path()).map_err(|x| at(&e.path(), x))?;
            low = low.min(s.trim().parse().unwrap_or(0));
        }
        let open = self.lock().first;
        let segs = segments(&self.dir)?;
        let mut removed = 0;
        for w in segs.windows(2) {
            let ((first, path), (next_first, _)) = (&w[0], &w[1]);
            // Every record of this segment is below the next one's first.
            if *first < open && next_first - 1 <= low {
                fs::remove_file(path).map_err(|e| at(path, e))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Records after `seq` held in the spool now (for a status line).
    pub fn pending_after(&self, seq: u64) -> u64 {
        self.last().saturating_sub(seq)
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// One target's view of the spool: see [`Spool::reader`].
pub struct Reader<'a> {
    spool: &'a Spool,
    cursor_path: PathBuf,
    /// The last sequence number delivered (stored).
    cursor: u64,
    /// The last sequence number read.
    read: u64,
    /// The open segment, its path and first sequence number.
    at: Option<(BufReader<File>, PathBuf, u64)>,
}

impl Reader<'_> {
    /// The last sequence number delivered.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Records after the last read, up to `max`, only durable ones; waits up to `wait` when
    /// there are none.
    pub fn next(&mut self, max: usize, wait: Duration) -> io::Result<Vec<Record>> {
        if !self.spool.wait_after(self.read, wait) {
            return Ok(Vec::new());
        }
        let durable = self.spool.last();
        let mut out = Vec::new();
        while out.len() < max && self.read < durable {
            if self.at.is_none() {
                self.open_segment_for(self.read + 1)?;
            }
            let (reader, path, first) = self.at.as_mut().expect("opened above");
            let mut line = Vec::new();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| at(path, e))?;
            if n == 0 {
                // The end of this segment: the next one holds the rest.
                let first = *first;
                let segs = segments(&self.spool.dir)?;
                let Some((f, next)) = segs.into_iter().find(|(f, _)| *f > first) else {
                    break;
                };
                let file = File::open(&next).map_err(|e| at(&next, e))?;
                self.at = Some((BufReader::new(file), next, f));
                continue;
            }
            if line.last() != Some(&b'\n') {
                return Err(at(path, "a record without its end"));
            }
            line.pop();
            let seq = seq_of(&line).ok_or_else(|| at(path, "a line that is not a record"))?;
            if seq <= self.read {
                continue;
            }
            let tab = line
                .iter()
                .position(|&b| b == b'\t')
                .expect("seq_of found it");
            self.read = seq;
            out.push(Record {
                seq,
                body: line[tab + 1..].to_vec(),
            });
        }
        Ok(out)
    }

    /// Opens the segment that holds `seq`, at its start.
    fn open_segment_for(&mut self, seq: u64) -> io::Result<()> {
        let segs = segments(&self.spool.dir)?;
        let Some((first, path)) = segs.into_iter().rev().find(|(first, _)| *first <= seq) else {
            return Err(at(
                &self.spool.dir,
                format!("record {seq} is no longer in the spool"),
            ));
        };
        let f = File::open(&path).map_err(|e| at(&path, e))?;
        self.at = Some((BufReader::new(f), path, first));
        Ok(())
    }

    /// Records everything up to `seq` as delivered (stored atomically).
    pub fn delivered(&mut self, seq: u64) -> io::Result<()> {
        if seq <= self.cursor {
            return Ok(());
        }
        crate::outfile::replace(&self.cursor_path, seq.to_string().as_bytes(), true)
            .map_err(|e| at(&self.cursor_path, e))?;
        self.cursor = seq;
        Ok(())
    }

    /// Reads again from after the cursor (a delivery failed; its records come again).
    pub fn rewind(&mut self) {
        self.read = self.cursor;
        self.at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_reads_everything_once_at_its_pace_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(dir.path()).unwrap();
        let recs: Vec<String> = (1..=250).map(|i| format!("{{\"n\":{i}}}")).collect();
        assert_eq!(s.append(&recs[..100]).unwrap(), 100);
        let mut a = s.reader("a").unwrap();
        let mut b = s.reader("b").unwrap();
        let got = a.next(60, Duration::ZERO).unwrap();
        assert_eq!((got[0].seq, got.len()), (1, 60));
        assert_eq!(got[0].body, recs[0].as_bytes());
        a.delivered(60).unwrap();
        // b fails and reads again.
        let got = b.next(10, Duration::ZERO).unwrap();
        assert_eq!(got.len(), 10);
        b.rewind();
        assert_eq!(b.next(10, Duration::ZERO).unwrap()[0].seq, 1);
        s.append(&recs[100..]).unwrap();
        let rest = a.next(1000, Duration::ZERO).unwrap();
        assert_eq!((rest[0].seq, rest.last().unwrap().seq), (61, 250));
        a.delivered(250).unwrap();
        drop((a, b));
        drop(s);
        // A torn tail, as a crash mid-write leaves it.
        let seg = dir.path().join(segment_name(1));
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(b"251\t{\"n\":").unwrap();
        let s = Spool::open(dir.path()).unwrap();
        assert_eq!(s.last(), 250);
        assert_eq!(s.append(&["{\"n\":251}"]).unwrap(), 251);
        let mut a = s.reader("a").unwrap();
        assert_eq!(a.cursor(), 250);
        let got = a.next(10, Duration::ZERO).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].seq, got[0].body.as_slice()),
            (251, b"{\"n\":251}".as_slice())
        );
        let mut b = s.reader("b").unwrap();
        assert_eq!(b.next(1000, Duration::ZERO).unwrap().len(), 251);
    }

    #[test]
    fn segments_roll_and_go_once_every_cursor_is_past_them() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(dir.path()).unwrap();
        let big = format!("\"{}\"", "x".repeat(1 << 20));
        for _ in 0..20 {
            s.append(&[big.as_str()]).unwrap();
        }
        assert!(segments(dir.path()).unwrap().len() >= 2);
        let mut a = s.reader("a").unwrap();
        let mut b = s.reader("b").unwrap();
        assert_eq!(a.next(100, Duration::ZERO).unwrap().len(), 20);
        a.delivered(20).unwrap();
        b.delivered(3).unwrap();
        assert_eq!(s.compact().unwrap(), 0, "b still needs the first segment");
        assert_eq!(b.next(100, Duration::ZERO).unwrap().len(), 20);
        b.delivered(20).unwrap();
        assert!(s.compact().unwrap() >= 1);
        // What is left reads on.
        s.append(&["1"]).unwrap();
        assert_eq!(b.next(10, Duration::ZERO).unwrap()[0].seq, 21);
    }
}
