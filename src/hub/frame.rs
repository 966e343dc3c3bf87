//! Wire frames: pure, versioned, length-prefixed. No I/O — a connection reads bytes into a
//! buffer, asks [`check`] whether a whole frame is there, and [`decode`]s exactly that many.
//!
//! ```text
//! 0  length u32: bytes after this field (version + type + body), at most MAX_FRAME_LEN - 4
//! 4  protocol version u8 (1)
//! 5  frame type u8
//! 6  body (per type, below)
//! ```
//!
//! All integers are little-endian; strings are UTF-8 with a u16 length; byte strings carry a
//! u32 length. Decoding is strict (no trailing bytes, no unknown tags, no non-canonical
//! encodings), so `encode(decode(b)) == b` for every `b` that decodes. The length is checked
//! against [`MAX_FRAME_LEN`] before anything is allocated.
//!
//! | type | frame | body |
//! |---|---|---|
//! | 1 | [`Frame::Hello`] | version u16 · role u8 |
//! | 2 | [`Frame::Subscribe`] | tag u8 (0 acked, 1 offset, 2 latest) · offset u64 (tag 1 only) |
//! | 3 | [`Frame::Notification`] | offset u64 · notification (see [`Notification`]) |
//! | 4 | [`Frame::Ack`] | offset u64 |
//! | 5 | [`Frame::Gap`] | from u64 · to u64 |
//! | 6 | [`Frame::PushSnapshot`] | set version u64 · total length u64 · position u64 · chunk bytes |
//! | 7 | [`Frame::SnapshotAccepted`] | set version u64 |
//! | 8 | [`Frame::SnapshotRejected`] | set version u64 · reason string |
//! | 9 | [`Frame::PullSnapshot`] | version held u64 |
//! | 10 | [`Frame::TelemetryBatch`] | batch id u64 · Arrow IPC bytes |
//! | 11 | [`Frame::Hits`] | batch id u64 · Arrow IPC bytes |
//! | 12 | [`Frame::Error`] | code u16 · message string |
//! | 13 | [`Frame::Close`] | (empty) |
//! | 14 | [`Frame::PullSince`] | set version u64 · identity (32 bytes) |
//! | 15 | [`Frame::PullAnswer`] | set version u64 · files u32 |
//! | 16 | [`Frame::DeliveryReport`] | count u8 (≤ 16) · per target: target string · delivered, withheld, pending, failing, failing-since ms, last-ok ms u64 (0: none) · last error string |

use super::StartFrom;
use super::notification::Notification;
use crate::notify::TargetReport;

/// Most targets a [`Frame::DeliveryReport`] carries.
pub const MAX_REPORTED_TARGETS: usize = 16;

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u8 = 1;

/// Largest frame accepted or produced, length prefix included: 16 MiB of body plus headers.
/// Snapshots travel as several [`Frame::PushSnapshot`] chunks of at most [`MAX_CHUNK`] bytes.
pub const MAX_FRAME_LEN: usize = (16 << 20) + 64;

/// Largest chunk of bytes a [`Frame::PushSnapshot`], [`Frame::TelemetryBatch`] or
/// [`Frame::Hits`] should carry so that the frame stays under [`MAX_FRAME_LEN`].
pub const MAX_CHUNK: usize = 16 << 20;

const PREFIX: usize = 4;

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix announces more than [`MAX_FRAME_LEN`].
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Announced total length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The peer speaks another protocol version.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    /// A frame type this build does not know.
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    /// The body ends before its fields do.
    #[error("frame body truncated")]
    Truncated,
    /// Bytes left over after the body's last field.
    #[error("{0} trailing byte(s) after the frame body")]
    TrailingBytes(usize),
    /// A field holds a value that is not allowed.
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
}

/// The role a peer asks for in [`Frame::Hello`]; the hub grants it only if the peer's
/// certificate carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Role {
    /// Pushes snapshots, receives sightings.
    Publisher = 1,
    /// Streams telemetry, receives the hits of its batches, pulls snapshots.
    Partner = 2,
    /// Receives notifications for its entity.
    Subscriber = 3,
}

impl Role {
    fn from_code(c: u8) -> Option<Role> {
        [Role::Publisher, Role::Partner, Role::Subscriber]
            .into_iter()
            .find(|r| *r as u8 == c)
    }
}

/// An error code in [`Frame::Error`]. Unknown codes decode as they are, so that an older peer
/// can still show a newer peer's message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub u16);

impl ErrorCode {
    /// The peer broke the protocol (bad frame, unexpected frame, ack beyond what was sent).
    pub const PROTOCOL: ErrorCode = ErrorCode(1);
    /// No common protocol version.
    pub const UNSUPPORTED_VERSION: ErrorCode = ErrorCode(2);
    /// The certificate does not grant the requested role or entity.
    pub const FORBIDDEN: ErrorCode = ErrorCode(3);
    /// A frame or payload over the limit.
    pub const TOO_LARGE: ErrorCode = ErrorCode(4);
    /// The hub failed (disk, corrupt log); try again later.
    pub const INTERNAL: ErrorCode = ErrorCode(5);
    /// Another connection subscribed for the same entity and took this one's place.
    pub const REPLACED: ErrorCode = ErrorCode(6);
}

/// One protocol frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// First frame in each direction: the protocol version and the role requested.
    Hello {
        /// Highest protocol version the sender speaks.
        version: u16,
        /// Role requested.
        role: Role,
    },
    /// A subscriber asks for its entity's notifications from a position.
    Subscribe {
        /// Where to start.
        from: StartFrom,
    },
    /// One notification at its log offset.
    Notification {
        /// Offset in the entity's log; acks name it.
        offset: u64,
        /// The notification.
        notification: Notification,
    },
    /// Cumulative acknowledgement: every notification up to and including `offset` is safely
    /// stored by the receiver and will not be sent again.
    Ack {
        /// The last offset processed.
        offset: u64,
    },
    /// Offsets `from..to` are gone (deleted by retention before they were acked); delivery goes
    /// on at `to`. The receiver should record the loss.
    Gap {
        /// First lost offset.
        from: u64,
        /// First offset still available.
        to: u64,
    },
    /// A chunk of a snapshot file being pushed.
    PushSnapshot {
        /// The set version inside the snapshot.
        set_version: u64,
        /// Length of the whole snapshot file.
        total_len: u64,
        /// Byte position of this chunk in the file.
        position: u64,
        /// The chunk.
        data: Vec<u8>,
    },
    /// The pushed snapshot verified and is in use.
    SnapshotAccepted {
        /// Its set version.
        set_version: u64,
    },
    /// The pushed snapshot was refused.
    SnapshotRejected {
        /// Its set version.
        set_version: u64,
        /// Why (e.g. the failed check).
        reason: String,
    },
    /// A partner asks for the current snapshot (answered with `PushSnapshot` chunks).
    PullSnapshot {
        /// The set version the partner already holds (0 for none).
        have_version: u64,
    },
    /// A batch of telemetry to match.
    TelemetryBatch {
        /// The sender's batch id, echoed in [`Frame::Hits`].
        batch_id: u64,
        /// An Arrow IPC stream.
        arrow_ipc: Vec<u8>,
    },
    /// The hits of one telemetry batch.
    Hits {
        /// The batch's id.
        batch_id: u64,
        /// An Arrow IPC stream of the hit batch.
        arrow_ipc: Vec<u8>,
    },
    /// An error; the sender closes the connection after it.
    Error {
        /// What kind of error.
        code: ErrorCode,
        /// For people.
        message: String,
    },
    /// Orderly end of the conversation.
    Close,
    /// A partner asks for what it lacks after the state it holds (a snapshot or delta it
    /// pulled before; version 0 and a zero identity for none). Answered with
    /// [`Frame::PullAnswer`], then each file as `PushSnapshot` chunks.
    PullSince {
        /// The set version of the state held.
        set_version: u64,
        /// Its identity (the header digest of the last file it applied).
        identity: [u8; 32],
    },
    /// The answer to [`Frame::PullSince`]: how many files follow (each as `PushSnapshot`
    /// chunks from position 0; the first a full snapshot when the partner's state is not in
    /// the hub's chain, deltas after), and the set version they lead to.
    PullAnswer {
        /// The set version the partner holds after the files.
        set_version: u64,
        /// Files that follow (0: up to date).
        files: u32,
    },
    /// A subscriber tells the hub how its delivery targets are doing (for the operator's
    /// per-entity view); at most [`MAX_REPORTED_TARGETS`], and within the subscriber's frame
    /// limit. `failing_since_ms` and `last_ok_ms` of 0 encode `None`.
    DeliveryReport {
        /// One per target.
        targets: Vec<TargetReport>,
    },
}

mod ty {
    pub const HELLO: u8 = 1;
    pub const SUBSCRIBE: u8 = 2;
    pub const NOTIFICATION: u8 = 3;
    pub const ACK: u8 = 4;
    pub const GAP: u8 = 5;
    pub const PUSH_SNAPSHOT: u8 = 6;
    pub const SNAPSHOT_ACCEPTED: u8 = 7;
    pub const SNAPSHOT_REJECTED: u8 = 8;
    pub const PULL_SNAPSHOT: u8 = 9;
    pub const TELEMETRY_BATCH: u8 = 10;
    pub const HITS: u8 = 11;
    pub const ERROR: u8 = 12;
    pub const CLOSE: u8 = 13;
    pub const PULL_SINCE: u8 = 14;
    pub const PULL_ANSWER: u8 = 15;
    pub const DELIVERY_REPORT: u8 = 16;
}

/// Whether `buf` starts with a whole frame: `Ok(Some(n))` with its length in bytes,
/// `Ok(None)` when more bytes are needed, or an error as soon as the prefix shows the frame is
/// unacceptable (too large, wrong version) — before the body is buffered or allocated.
pub fn check(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    check_within(buf, MAX_FRAME_LEN)
}

/// [`check`] with a lower limit than [`MAX_FRAME_LEN`]: what a peer may send in its role and
/// phase (a `Hello` or an `Ack` is bytes, not MiB).
pub fn check_within(buf: &[u8], max: usize) -> Result<Option<usize>, FrameError> {
    let max = max.min(MAX_FRAME_LEN);
    let Some(prefix) = buf.get(..PREFIX) else {
        return Ok(None);
    };
    let body = u32::from_le_bytes(prefix.try_into().expect("4 bytes")) as usize;
    let total = PREFIX + body;
    if total > max {
        return Err(FrameError::TooLarge { len: total, max });
    }
    if body < 2 {
        return Err(FrameError::Truncated);
    }
    if let Some(&v) = buf.get(PREFIX)
        && v != PROTOCOL_VERSION
    {
        return Err(FrameError::UnsupportedVersion(v));
    }
    Ok((buf.len() >= total).then_some(total))
}

/// Decodes the one frame that fills `buf` exactly (as measured by [`check`]).
pub fn decode(buf: &[u8]) -> Result<Frame, FrameError> {
    let Some(n) = check(buf)? else {
        return Err(FrameError::Truncated);
    };
    if n != buf.len() {
        return Err(FrameError::TrailingBytes(buf.len() - n));
    }
    let mut r = Reader::new(&buf[PREFIX + 1..]);
    let frame = match r.u8()? {
        ty::HELLO => Frame::Hello {
            version: r.u16()?,
            role: Role::from_code(r.u8()?).ok_or(FrameError::Malformed("unknown role"))?,
        },
        ty::SUBSCRIBE => Frame::Subscribe {
            from: match r.u8()? {
                0 => StartFrom::Acked,
                1 => StartFrom::Offset(r.u64()?),
                2 => StartFrom::Latest,
                _ => return Err(FrameError::Malformed("unknown start position")),
            },
        },
        ty::NOTIFICATION => Frame::Notification {
            offset: r.u64()?,
            notification: Notification::read(&mut r)?,
        },
        ty::ACK => Frame::Ack { offset: r.u64()? },
        ty::GAP => {
            let (from, to) = (r.u64()?, r.u64()?);
            if from >= to {
                return Err(FrameError::Malformed("empty gap"));
            }
            Frame::Gap { from, to }
        }
        ty::PUSH_SNAPSHOT => Frame::PushSnapshot {
            set_version: r.u64()?,
            total_len: r.u64()?,
            position: r.u64()?,
            data: r.blob()?,
        },
        ty::SNAPSHOT_ACCEPTED => Frame::SnapshotAccepted {
            set_version: r.u64()?,
        },
        ty::SNAPSHOT_REJECTED => Frame::SnapshotRejected {
            set_version: r.u64()?,
            reason: r.string()?,
        },
        ty::PULL_SNAPSHOT => Frame::PullSnapshot {
            have_version: r.u64()?,
        },
        ty::TELEMETRY_BATCH => Frame::TelemetryBatch {
            batch_id: r.u64()?,
            arrow_ipc: r.blob()?,
        },
        ty::HITS => Frame::Hits {
            batch_id: r.u64()?,
            arrow_ipc: r.blob()?,
        },
        ty::ERROR => Frame::Error {
            code: ErrorCode(r.u16()?),
            message: r.string()?,
        },
        ty::CLOSE => Frame::Close,
        ty::PULL_SINCE => Frame::PullSince {
            set_version: r.u64()?,
            identity: r.array()?,
        },
        ty::PULL_ANSWER => Frame::PullAnswer {
            set_version: r.u64()?,
            files: r.u32()?,
        },
        ty::DELIVERY_REPORT => {
            let n = r.u8()? as usize;
            if n > MAX_REPORTED_TARGETS {
                return Err(FrameError::Malformed("more than 16 targets in a report"));
            }
            let mut targets = Vec::with_capacity(n);
            for _ in 0..n {
                let target = r.string()?;
                let [delivered, withheld, pending, failing, since, ok] =
                    [r.u64()?, r.u64()?, r.u64()?, r.u64()?, r.u64()?, r.u64()?];
                targets.push(TargetReport {
                    target,
                    delivered,
                    withheld,
                    pending,
                    failing,
                    failing_since_ms: (since != 0).then_some(since),
                    last_ok_ms: (ok != 0).then_some(ok),
                    last_error: r.string()?,
                });
            }
            Frame::DeliveryReport { targets }
        }
        other => return Err(FrameError::UnknownType(other)),
    };
    r.finish()?;
    Ok(frame)
}

/// Appends the encoding of `frame` to `out`.
///
/// # Errors
/// [`FrameError::TooLarge`] when the frame would exceed [`MAX_FRAME_LEN`], and
/// [`FrameError::Malformed`] for a string over 65,535 bytes or an empty [`Frame::Gap`];
/// `out` is then left as it was.
pub fn encode(frame: &Frame, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let start = out.len();
    let result = encode_inner(frame, out, start);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn encode_inner(frame: &Frame, out: &mut Vec<u8>, start: usize) -> Result<(), FrameError> {
    out.extend_from_slice(&[0; PREFIX]);
    out.push(PROTOCOL_VERSION);
    let u64s = |out: &mut Vec<u8>, vs: &[u64]| {
        for v in vs {
            out.extend_from_slice(&v.to_le_bytes());
        }
    };
    match frame {
        Frame::Hello { version, role } => {
            out.push(ty::HELLO);
            out.extend_from_slice(&version.to_le_bytes());
            out.push(*role as u8);
        }
        Frame::Subscribe { from } => {
            out.push(ty::SUBSCRIBE);
            match from {
                StartFrom::Acked => out.push(0),
                StartFrom::Offset(o) => {
                    out.push(1);
                    u64s(out, &[*o]);
                }
                StartFrom::Latest => out.push(2),
            }
        }
        Frame::Notification {
            offset,
            notification,
        } => {
            out.push(ty::NOTIFICATION);
            if notification.encoded_len() > MAX_FRAME_LEN {
                return Err(too_large(PREFIX + 2 + 8 + notification.encoded_len()));
            }
            u64s(out, &[*offset]);
            notification.encode(out);
        }
        Frame::Ack { offset } => {
            out.push(ty::ACK);
            u64s(out, &[*offset]);
        }
        Frame::Gap { from, to } => {
            if from >= to {
                return Err(FrameError::Malformed("empty gap"));
            }
            out.push(ty::GAP);
            u64s(out, &[*from, *to]);
        }
        Frame::PushSnapshot {
            set_version,
            total_len,
            position,
            data,
        } => {
            out.push(ty::PUSH_SNAPSHOT);
            u64s(out, &[*set_version, *total_len, *position]);
            blob(out, data)?;
        }
        Frame::SnapshotAccepted { set_version } => {
            out.push(ty::SNAPSHOT_ACCEPTED);
            u64s(out, &[*set_version]);
        }
        Frame::SnapshotRejected {
            set_version,
            reason,
        } => {
            out.push(ty::SNAPSHOT_REJECTED);
            u64s(out, &[*set_version]);
            string(out, reason)?;
        }
        Frame::PullSnapshot { have_version } => {
            out.push(ty::PULL_SNAPSHOT);
            u64s(out, &[*have_version]);
        }
        Frame::TelemetryBatch {
            batch_id,
            arrow_ipc,
        } => {
            out.push(ty::TELEMETRY_BATCH);
            u64s(out, &[*batch_id]);
            blob(out, arrow_ipc)?;
        }
        Frame::Hits {
            batch_id,
            arrow_ipc,
        } => {
            out.push(ty::HITS);
            u64s(out, &[*batch_id]);
            blob(out, arrow_ipc)?;
        }
        Frame::Error { code, message } => {
            out.push(ty::ERROR);
            out.extend_from_slice(&code.0.to_le_bytes());
            string(out, message)?;
        }
        Frame::Close => out.push(ty::CLOSE),
        Frame::PullSince {
            set_version,
            identity,
        } => {
            out.push(ty::PULL_SINCE);
            u64s(out, &[*set_version]);
            out.extend_from_slice(identity);
        }
        Frame::PullAnswer { set_version, files } => {
            out.push(ty::PULL_ANSWER);
            u64s(out, &[*set_version]);
            out.extend_from_slice(&files.to_le_bytes());
        }
        Frame::DeliveryReport { targets } => {
            if targets.len() > MAX_REPORTED_TARGETS {
                return Err(FrameError::Malformed("more than 16 targets in a report"));
            }
            out.push(ty::DELIVERY_REPORT);
            out.push(targets.len() as u8);
            for t in targets {
                if t.failing_since_ms == Some(0) || t.last_ok_ms == Some(0) {
                    return Err(FrameError::Malformed("a time of 0 in a report"));
                }
                string(out, &t.target)?;
                u64s(
                    out,
                    &[
                        t.delivered,
                        t.withheld,
                        t.pending,
                        t.failing,
                        t.failing_since_ms.unwrap_or(0),
                        t.last_ok_ms.unwrap_or(0),
                    ],
                );
                string(out, &t.last_error)?;
            }
        }
    }
    let total = out.len() - start;
    if total > MAX_FRAME_LEN {
        return Err(too_large(total));
    }
    let body = (total - PREFIX) as u32;
    out[start..start + PREFIX].copy_from_slice(&body.to_le_bytes());
    Ok(())
}

fn too_large(len: usize) -> FrameError {
    FrameError::TooLarge {
        len,
        max: MAX_FRAME_LEN,
    }
}

/// The encoding of `frame` as a new vector (see [`encode`]).
pub fn to_bytes(frame: &Frame) -> Result<Vec<u8>, FrameError> {
    let mut v = Vec::new();
    encode(frame, &mut v)?;
    Ok(v)
}

fn blob(out: &mut Vec<u8>, b: &[u8]) -> Result<(), FrameError> {
    if b.len() > MAX_FRAME_LEN {
        return Err(too_large(b.len()));
    }
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
    Ok(())
}

fn string(out: &mut Vec<u8>, s: &str) -> Result<(), FrameError> {
    let len =
        u16::try_from(s.len()).map_err(|_| FrameError::Malformed("string over 65535 bytes"))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// A cursor over a byte slice whose reads fail with [`FrameError::Truncated`] at the end.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if n > self.buf.len() {
            return Err(FrameError::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FrameError> {
        Ok(self.bytes(N)?.try_into().expect("N bytes"))
    }

    pub(crate) fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, FrameError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, FrameError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, FrameError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub(crate) fn u128(&mut self) -> Result<u128, FrameError> {
        Ok(u128::from_le_bytes(self.array()?))
    }

    fn blob(&mut self) -> Result<Vec<u8>, FrameError> {
        let n = self.u32()? as usize;
        Ok(self.bytes(n)?.to_vec())
    }

    fn string(&mut self) -> Result<String, FrameError> {
        let n = self.u16()? as usize;
        let b = self.bytes(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| FrameError::Malformed("string is not UTF-8"))
    }

    pub(crate) fn finish(&self) -> Result<(), FrameError> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(FrameError::TrailingBytes(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::EntityId;
    use crate::hub::notification::{NotificationId, NotificationKind};
    use crate::indicator::Tlp;

    pub(crate) fn samples() -> Vec<Frame> {
        vec![
            Frame::Hello {
                version: 1,
                role: Role::Subscriber,
            },
            Frame::Subscribe {
                from: StartFrom::Acked,
            },
            Frame::Subscribe {
                from: StartFrom::Offset(42),
            },
            Frame::Subscribe {
                from: StartFrom::Latest,
            },
            Frame::Notification {
                offset: 7,
                notification: Notification {
                    id: NotificationId(0x0123_4567_89ab_cdef_0011_2233_4455_6677),
                    created_at_ms: 1_700_000_000_000,
                    entity: EntityId(12),
                    tlp: Tlp::Green,
                    kind: NotificationKind::Hit,
                    payload: br#"{"indicator":"198.51.100.23"}"#.to_vec(),
                },
            },
            Frame::Ack { offset: 7 },
            Frame::Gap { from: 3, to: 10 },
            Frame::PushSnapshot {
                set_version: 5,
                total_len: 3,
                position: 0,
                data: vec![1, 2, 3],
            },
            Frame::SnapshotAccepted { set_version: 5 },
            Frame::SnapshotRejected {
                set_version: 5,
                reason: "signature does not verify".into(),
            },
            Frame::PullSnapshot { have_version: 4 },
            Frame::PullSince {
                set_version: 4,
                identity: [7; 32],
            },
            Frame::PullAnswer {
                set_version: 6,
                files: 2,
            },
            Frame::TelemetryBatch {
                batch_id: 9,
                arrow_ipc: vec![0xff; 10],
            },
            Frame::Hits {
                batch_id: 9,
                arrow_ipc: vec![],
            },
            Frame::Error {
                code: ErrorCode::PROTOCOL,
                message: "ack beyond sent".into(),
            },
            Frame::Error {
                code: ErrorCode(999),
                message: String::new(),
            },
            Frame::Close,
            Frame::DeliveryReport { targets: vec![] },
            Frame::DeliveryReport {
                targets: vec![
                    TargetReport {
                        target: "webhook:https://soc.example/hook".into(),
                        delivered: 12,
                        withheld: 1,
                        pending: 3,
                        failing: 2,
                        failing_since_ms: Some(1_796_000_000_000),
                        last_error: "HTTP 500".into(),
                        last_ok_ms: None,
                    },
                    TargetReport {
                        target: "jsonl:/var/log/cwn.jsonl".into(),
                        last_ok_ms: Some(1_796_000_000_001),
                        ..Default::default()
                    },
                ],
            },
        ]
    }

    #[test]
    fn every_frame_round_trips() {
        for f in samples() {
            let b = to_bytes(&f).unwrap();
            assert_eq!(check(&b), Ok(Some(b.len())), "{f:?}");
            assert_eq!(decode(&b).unwrap(), f);
        }
    }

    #[test]
    fn check_asks_for_more_until_whole() {
        let mut stream = Vec::new();
        for f in samples() {
            encode(&f, &mut stream).unwrap();
        }
        // Feed byte by byte: every prefix is either incomplete or yields exactly one frame.
        let mut got = Vec::new();
        let mut buf: &[u8] = &stream;
        while !buf.is_empty() {
            let mut n = 0;
            let len = loop {
                n += 1;
                if let Some(len) = check(&buf[..n]).unwrap() {
                    break len;
                }
            };
            assert_eq!(len, n, "known exactly when the last byte arrives");
            got.push(decode(&buf[..len]).unwrap());
            buf = &buf[len..];
        }
        assert_eq!(got, samples());
    }

    #[test]
    fn refused_before_buffering() {
        let mut b = ((MAX_FRAME_LEN) as u32).to_le_bytes().to_vec();
        assert!(matches!(check(&b), Err(FrameError::TooLarge { .. })));
        b = 10u32.to_le_bytes().to_vec();
        b.push(2);
        assert_eq!(check(&b), Err(FrameError::UnsupportedVersion(2)));
        assert_eq!(check(&[1, 0, 0, 0]), Err(FrameError::Truncated));
    }

    #[test]
    fn table_of_bad_frames() {
        let cases: &[(&[u8], FrameError)] = &[
            (&[2, 0, 0, 0, 1, 99], FrameError::UnknownType(99)),
            (&[3, 0, 0, 0, 1, 13, 0], FrameError::TrailingBytes(1)),
            (&[3, 0, 0, 0, 1, 4, 0], FrameError::Truncated),
            (
                &[4, 0, 0, 0, 1, 2, 1, 0],
                FrameError::Truncated, // offset tag without the offset
            ),
            (
                &[3, 0, 0, 0, 1, 2, 0x07],
                FrameError::Malformed("unknown start position"),
            ),
            (
                &[5, 0, 0, 0, 1, 1, 1, 0, 9],
                FrameError::Malformed("unknown role"),
            ),
            (
                &[7, 0, 0, 0, 1, 12, 1, 0, 1, 0, 0xff],
                FrameError::Malformed("string is not UTF-8"),
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(decode(bytes).as_ref(), Err(want), "{bytes:?}");
        }
    }

    #[test]
    fn encode_refuses_what_decode_would() {
        let mut out = vec![9];
        let long = Frame::Error {
            code: ErrorCode::INTERNAL,
            message: "x".repeat(70_000),
        };
        assert!(encode(&long, &mut out).is_err());
        assert_eq!(out, [9], "left as it was");
        assert!(encode(&Frame::Gap { from: 4, to: 4 }, &mut out).is_err());
        let big = Frame::Hits {
            batch_id: 1,
            arrow_ipc: vec![0; MAX_FRAME_LEN],
        };
        assert!(matches!(
            encode(&big, &mut out),
            Err(FrameError::TooLarge { .. })
        ));
    }
}
