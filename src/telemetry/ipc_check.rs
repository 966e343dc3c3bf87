//! Arrow IPC messages checked before arrow-ipc decodes them.
//!
//! arrow-ipc's reader asserts — a panic, not an error — that every buffer a record batch
//! names lies inside the message body, and decompresses whatever length a compressed
//! buffer's prefix announces: a hostile 33 KB file expands to gigabytes. Every path that
//! hands IPC bytes to arrow-ipc checks each message here first, from its header and the
//! 8-byte length prefixes alone, without decompressing anything:
//!
//! - [`stream_expanded_size`] for IPC stream bytes held in memory (the hub's telemetry
//!   batches);
//! - `Guard`, a reader that passes a stream through message by message, each checked
//!   before arrow-ipc sees a byte of it (local streams, and files read front to back);
//! - `check_file` for an IPC file read through its footer (local files), block by block.
//!
//! A message whose buffers would expand past the limit is refused with the batch's number.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

/// Bytes one record batch of a local file may take once decompressed. Far above what any
/// writer produces for telemetry (pyarrow's default batches are a few MiB), far below what a
/// decompression bomb asks for.
pub const MAX_LOCAL_BATCH_BYTES: u64 = 1 << 30;

/// Largest message header accepted (arrow-rs writes a few KiB for the widest schemas).
const MAX_HEADER: usize = 16 << 20;

/// What one message's header says about its body, once checked.
#[derive(Debug)]
pub(crate) struct Message {
    /// Bytes of body that follow the header.
    pub(crate) body_len: u64,
    /// Each buffer's place in the body; empty for a schema message.
    buffers: Vec<(u64, u64)>,
    /// Whether the buffers are compressed (an 8-byte length prefix each).
    compressed: bool,
}

impl Message {
    /// Reads a message header (the flatbuffer after the length word) and checks that every
    /// buffer lies inside the body.
    pub(crate) fn parse(header: &[u8]) -> Result<Message, String> {
        let msg = arrow_ipc::root_as_message(header).map_err(|e| format!("bad header: {e}"))?;
        let body_len =
            u64::try_from(msg.bodyLength()).map_err(|_| "negative body length".to_string())?;
        let batch = msg
            .header_as_record_batch()
            .or_else(|| msg.header_as_dictionary_batch().and_then(|d| d.data()));
        let Some(rb) = batch else {
            return Ok(Message {
                body_len,
                buffers: Vec::new(),
                compressed: false,
            });
        };
        let mut buffers = Vec::new();
        for b in rb.buffers().iter().flatten() {
            let (Ok(off), Ok(len)) = (u64::try_from(b.offset()), u64::try_from(b.length())) else {
                return Err("negative buffer offset or length".into());
            };
            if off.checked_add(len).is_none_or(|end| end > body_len) {
                return Err(format!(
                    "a buffer at {off}+{len} lies past the message body of {body_len} bytes"
                ));
            }
            buffers.push((off, len));
        }
        Ok(Message {
            body_len,
            buffers,
            compressed: rb.compression().is_some(),
        })
    }

    /// The bytes the buffers take once decompressed; `prefix(offset)` gives the 8 bytes at
    /// that offset of the body (only asked for compressed buffers).
    pub(crate) fn expanded(
        &self,
        mut prefix: impl FnMut(u64) -> Result<[u8; 8], String>,
    ) -> Result<u64, String> {
        let mut total = 0u64;
        for &(off, len) in &self.buffers {
            let size = if self.compressed && len >= 8 {
                match i64::from_le_bytes(prefix(off)?) {
                    // Stored as is.
                    -1 => len - 8,
                    n => u64::try_from(n).map_err(|_| "negative decompressed length")?,
                }
            } else {
                len
            };
            total = total.saturating_add(size);
        }
        Ok(total)
    }
}

/// Why [`stream_expanded_size`] refused a stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Malformed framing or headers.
    Malformed(String),
    /// One message's buffers expand past the limit.
    TooLarge {
        /// Bytes the message's buffers take decompressed (counting stops past the limit).
        expanded: u64,
        /// The limit.
        limit: u64,
    },
}

/// The bytes an IPC stream's record and dictionary batches take once decompressed, in all,
/// checking each message; refused when the total passes `limit`.
///
/// # Errors
/// Malformed framing or headers, or an expansion over `limit`.
pub fn stream_expanded_size(bytes: &[u8], limit: u64) -> Result<u64, Refusal> {
    let bad = |m: &str| Refusal::Malformed(m.to_string());
    let mut at = 0usize;
    let mut total = 0u64;
    while at < bytes.len() {
        let word = |i: usize| -> Result<u32, Refusal> {
            bytes
                .get(i..i + 4)
                .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
                .ok_or_else(|| bad("truncated message length"))
        };
        let mut len = word(at)?;
        at += 4;
        if len == 0xFFFF_FFFF {
            len = word(at)?;
            at += 4;
        }
        if len == 0 {
            break; // end of stream
        }
        let header = bytes
            .get(at..at + len as usize)
            .ok_or_else(|| bad("truncated message header"))?;
        at += len as usize;
        let msg = Message::parse(header).map_err(Refusal::Malformed)?;
        let body = usize::try_from(msg.body_len)
            .ok()
            .and_then(|l| bytes.get(at..at.checked_add(l)?))
            .ok_or_else(|| bad("truncated message body"))?;
        at += body.len();
        let size = msg
            .expanded(|off| prefix_in(body, off))
            .map_err(Refusal::Malformed)?;
        total = total.saturating_add(size);
        if total > limit {
            return Err(Refusal::TooLarge {
                expanded: total,
                limit,
            });
        }
    }
    Ok(total)
}

fn prefix_in(body: &[u8], off: u64) -> Result<[u8; 8], String> {
    usize::try_from(off)
        .ok()
        .and_then(|o| body.get(o..o.checked_add(8)?))
        .map(|b| b.try_into().expect("8 bytes"))
        .ok_or_else(|| "a buffer's length prefix lies past the message body".into())
}

/// A reader over an IPC stream that hands arrow-ipc one message at a time, each read whole
/// and checked first: its buffers inside its body, its body and its decompressed size within
/// the limit. Ends at the end-of-stream marker.
pub(crate) struct Guard<R> {
    inner: R,
    limit: u64,
    out: Vec<u8>,
    at: usize,
    batches: u64,
    done: bool,
}

impl<R: Read> Guard<R> {
    /// Guards `inner`, allowing `limit` decompressed bytes per message.
    pub(crate) fn new(inner: R, limit: u64) -> Self {
        Guard {
            inner,
            limit,
            out: Vec::new(),
            at: 0,
            batches: 0,
            done: false,
        }
    }

    /// Reads 4 bytes, or `None` at a clean end.
    fn word(&mut self) -> io::Result<Option<u32>> {
        let mut w = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match self.inner.read(&mut w[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => return Err(invalid("the stream ends inside a message length")),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Some(u32::from_le_bytes(w)))
    }

    /// Loads the next message into `out`.
    fn next_message(&mut self) -> io::Result<()> {
        self.out.clear();
        self.at = 0;
        let Some(mut len) = self.word()? else {
            self.done = true;
            return Ok(());
        };
        self.out.extend_from_slice(&len.to_le_bytes());
        if len == 0xFFFF_FFFF {
            len = self
                .word()?
                .ok_or_else(|| invalid("the stream ends inside a message length"))?;
            self.out.extend_from_slice(&len.to_le_bytes());
        }
        if len == 0 {
            self.done = true; // the end-of-stream marker, passed on
            return Ok(());
        }
        let len = len as usize;
        if len > MAX_HEADER {
            return Err(invalid(&format!(
                "a message header of {len} bytes (at most {MAX_HEADER})"
            )));
        }
        let start = self.out.len();
        self.out.resize(start + len, 0);
        self.inner.read_exact(&mut self.out[start..])?;
        let msg = Message::parse(&self.out[start..]).map_err(|m| invalid(&m))?;
        let batch = self.batches;
        if !msg.buffers.is_empty() {
            self.batches += 1;
        }
        if msg.body_len > self.limit {
            return Err(invalid(&format!(
                "batch {batch}: a body of {} bytes, over the {} allowed",
                msg.body_len, self.limit
            )));
        }
        let body_at = self.out.len();
        // Read up to the announced length, so that a short stream is an error rather than a
        // pre-allocation of what the header claims.
        (&mut self.inner)
            .take(msg.body_len)
            .read_to_end(&mut self.out)?;
        if (self.out.len() - body_at) as u64 != msg.body_len {
            return Err(invalid(&format!(
                "batch {batch}: the stream ends inside its body"
            )));
        }
        let body = &self.out[body_at..];
        let expanded = msg
            .expanded(|off| prefix_in(body, off))
            .map_err(|m| invalid(&format!("batch {batch}: {m}")))?;
        if expanded > self.limit {
            return Err(invalid(&format!(
                "batch {batch} expands to {expanded} bytes, over the {} allowed per batch",
                self.limit
            )));
        }
        Ok(())
    }
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at == self.out.len() {
            if self.done {
                return Ok(0);
            }
            self.next_message()?;
        }
        let n = buf.len().min(self.out.len() - self.at);
        buf[..n].copy_from_slice(&self.out[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

fn invalid(m: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("Arrow IPC: {m}"))
}

/// Checks every dictionary and record batch block an IPC file's footer lists: the block
/// inside the file, its header's buffers inside its body, and its decompressed size within
/// `limit`. Reads the footer and each block's header and length prefixes, no data.
pub(crate) fn check_file(file: &mut File, limit: u64) -> Result<(), String> {
    let io = |e: io::Error| e.to_string();
    let size = file.metadata().map_err(io)?.len();
    if size < 18 {
        return Err("too short for an Arrow IPC file".into());
    }
    let mut tail = [0u8; 10];
    file.seek(SeekFrom::Start(size - 10)).map_err(io)?;
    file.read_exact(&mut tail).map_err(io)?;
    if &tail[4..] != b"ARROW1" {
        return Err("no ARROW1 magic at the end".into());
    }
    let footer_len = u64::from(u32::from_le_bytes(tail[..4].try_into().expect("4 bytes")));
    let footer_at = (size - 10)
        .checked_sub(footer_len)
        .filter(|&at| at >= 8 && footer_len as usize <= MAX_HEADER)
        .ok_or("the footer's length runs past the file")?;
    let mut footer = vec![0u8; footer_len as usize];
    file.seek(SeekFrom::Start(footer_at)).map_err(io)?;
    file.read_exact(&mut footer).map_err(io)?;
    let footer = arrow_ipc::root_as_footer(&footer).map_err(|e| format!("bad footer: {e}"))?;
    let blocks = footer
        .dictionaries()
        .into_iter()
        .flatten()
        .chain(footer.recordBatches().into_iter().flatten());
    for (n, block) in blocks.enumerate() {
        let what = |m: &str| format!("block {n}: {m}");
        let (Ok(at), Ok(meta_len), Ok(body_len)) = (
            u64::try_from(block.offset()),
            usize::try_from(block.metaDataLength()),
            u64::try_from(block.bodyLength()),
        ) else {
            return Err(what("a negative offset or length"));
        };
        let body_at = at
            .checked_add(meta_len as u64)
            .filter(|&b| b.checked_add(body_len).is_some_and(|end| end <= footer_at))
            .ok_or_else(|| what("runs past the file"))?;
        if !(8..=MAX_HEADER).contains(&meta_len) {
            return Err(what(&format!("a header of {meta_len} bytes")));
        }
        let mut meta = vec![0u8; meta_len];
        file.seek(SeekFrom::Start(at)).map_err(io)?;
        file.read_exact(&mut meta).map_err(io)?;
        // The header is framed as in a stream: the continuation word, then its length.
        let header = if meta[..4] == [0xFF; 4] {
            &meta[8..]
        } else {
            &meta[4..]
        };
        let msg = Message::parse(header).map_err(|m| what(&m))?;
        if msg.body_len > body_len {
            return Err(what("its header's body is longer than the block"));
        }
        if body_len > limit {
            return Err(what(&format!(
                "a body of {body_len} bytes, over the {limit} allowed"
            )));
        }
        let mut read_prefix = |off: u64| -> Result<[u8; 8], String> {
            let mut p = [0u8; 8];
            file.seek(SeekFrom::Start(body_at + off)).map_err(io)?;
            file.read_exact(&mut p).map_err(io)?;
            Ok(p)
        };
        let expanded = msg.expanded(&mut read_prefix).map_err(|m| what(&m))?;
        if expanded > limit {
            return Err(what(&format!(
                "expands to {expanded} bytes, over the {limit} allowed per batch"
            )));
        }
    }
    file.rewind().map_err(io)?;
    Ok(())
}
