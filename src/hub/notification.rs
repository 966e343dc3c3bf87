//! The notification: what the hub stores in an entity's log and sends to its subscriber, with
//! a compact, strict binary encoding (the same bytes on disk and inside a
//! [`Frame::Notification`](super::frame::Frame::Notification)).
//!
//! ```text
//! 0   encoding version u8 (1)
//! 1   id u128 · created-at u64 (Unix millis) · entity u32 · TLP u8 · kind u8
//! 31  payload length u32 · payload (a hit record as JSON)
//! ```
//!
//! All integers are little-endian. Decoding is strict — unknown enum values, a length that
//! disagrees with the buffer, or trailing bytes are errors — so every accepted encoding is the
//! canonical one and `encode(decode(b)) == b`.

use std::fmt;

use xxhash_rust::xxh3::Xxh3;

use super::EntityId;
use super::frame::{FrameError, Reader};
use crate::indicator::Tlp;

/// Version of the notification encoding this build writes and reads.
pub const NOTIFICATION_VERSION: u8 = 1;

/// Bytes of an encoded notification before its payload.
pub const NOTIFICATION_HEADER: usize = 1 + 16 + 8 + 4 + 1 + 1 + 4;

/// A 128-bit notification id, for de-duplication by the receiver: delivery is at-least-once,
/// so a receiver that sees an id twice drops the second copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NotificationId(pub u128);

impl NotificationId {
    /// The id of a hit notification: a hash of what makes the hit unique — the indicator, the
    /// entity notified, the partner whose telemetry matched, and the telemetry row's key (e.g.
    /// `input:row`). A matcher that re-runs the same batch after a crash yields the same ids,
    /// so the receiver drops the repeats even though the hub logged them twice.
    pub fn for_hit(indicator_id: &str, entity: EntityId, partner: &str, row_key: &str) -> Self {
        let mut h = Xxh3::new();
        h.update(b"cwn-hit-v1");
        for part in [
            indicator_id.as_bytes(),
            partner.as_bytes(),
            row_key.as_bytes(),
        ] {
            // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part);
        }
        h.update(&entity.0.to_le_bytes());
        NotificationId(h.digest128())
    }
}

impl fmt::Display for NotificationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// What a notification is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum NotificationKind {
    /// A partner's telemetry matched an indicator, and the victim side belongs to the entity.
    Hit = 1,
    /// Aggregated sightings of indicators (to the publisher).
    Sighting = 2,
    /// A test notification an operator sends to check the path end to end.
    Test = 3,
}

impl NotificationKind {
    /// Every kind, in wire-code order.
    pub const ALL: [NotificationKind; 3] = [
        NotificationKind::Hit,
        NotificationKind::Sighting,
        NotificationKind::Test,
    ];

    fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| *k as u8 == code)
    }
}

/// One notification to one entity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// De-duplication id (see [`NotificationId::for_hit`]).
    pub id: NotificationId,
    /// When the notification was created, Unix milliseconds.
    pub created_at_ms: u64,
    /// The entity notified; the hub files it in this entity's log.
    pub entity: EntityId,
    /// The TLP of the notification: the most restrictive label of what it includes.
    pub tlp: Tlp,
    /// What it is about.
    pub kind: NotificationKind,
    /// The body, a hit record as JSON for [`NotificationKind::Hit`].
    pub payload: Vec<u8>,
}

fn tlp_code(tlp: Tlp) -> u8 {
    // Tlp::ALL is ordered least to most restrictive and that order is part of the model, so
    // the position is a stable code.
    Tlp::ALL.iter().position(|&t| t == tlp).unwrap_or(0) as u8
}

impl Notification {
    /// Length of the encoding.
    pub fn encoded_len(&self) -> usize {
        NOTIFICATION_HEADER + self.payload.len()
    }

    /// Appends the encoding to `out`.
    ///
    /// # Panics
    /// When the payload is 4 GiB or larger (the hub refuses far smaller records first).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let len = u32::try_from(self.payload.len()).expect("payload below 4 GiB");
        out.reserve(self.encoded_len());
        out.push(NOTIFICATION_VERSION);
        out.extend_from_slice(&self.id.0.to_le_bytes());
        out.extend_from_slice(&self.created_at_ms.to_le_bytes());
        out.extend_from_slice(&self.entity.0.to_le_bytes());
        out.push(tlp_code(self.tlp));
        out.push(self.kind as u8);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&self.payload);
    }

    /// The encoding as a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.encoded_len());
        self.encode(&mut v);
        v
    }

    /// Decodes exactly one notification that fills `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Notification, FrameError> {
        let mut r = Reader::new(bytes);
        let n = Self::read(&mut r)?;
        r.finish()?;
        Ok(n)
    }

    /// The id of an encoded notification, read from its header without decoding the rest
    /// (a store keying records by id); `None` when the bytes are not a notification's.
    pub fn peek_id(bytes: &[u8]) -> Option<NotificationId> {
        let mut r = Reader::new(bytes);
        (r.u8().ok()? == NOTIFICATION_VERSION).then_some(())?;
        r.u128().ok().map(NotificationId)
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Notification, FrameError> {
        let version = r.u8()?;
        if version != NOTIFICATION_VERSION {
            return Err(FrameError::Malformed(
                "unknown notification encoding version",
            ));
        }
        let id = NotificationId(r.u128()?);
        let created_at_ms = r.u64()?;
        let entity = EntityId(r.u32()?);
        let tlp = *Tlp::ALL
            .get(r.u8()? as usize)
            .ok_or(FrameError::Malformed("unknown TLP code"))?;
        let kind = NotificationKind::from_code(r.u8()?)
            .ok_or(FrameError::Malformed("unknown notification kind"))?;
        let len = r.u32()? as usize;
        let payload = r.bytes(len)?.to_vec();
        Ok(Notification {
            id,
            created_at_ms,
            entity,
            tlp,
            kind,
            payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Notification {
        Notification {
            id: NotificationId::for_hit("ind-1", EntityId(7), "msp-a", "dns.log:42"),
            created_at_ms: 1_700_000_000_123,
            entity: EntityId(7),
            tlp: Tlp::Amber,
            kind: NotificationKind::Hit,
            payload: br#"{"indicator":"bad.example"}"#.to_vec(),
        }
    }

    #[test]
    fn the_id_is_read_from_the_header_alone() {
        let n = Notification {
            id: NotificationId(0x0123_4567_89ab_cdef_0011_2233_4455_6677),
            created_at_ms: 5,
            entity: EntityId(3),
            tlp: Tlp::Green,
            kind: NotificationKind::Hit,
            payload: b"{}".to_vec(),
        };
        let bytes = n.to_bytes();
        assert_eq!(Notification::peek_id(&bytes), Some(n.id));
        assert_eq!(Notification::peek_id(&bytes[..10]), None, "truncated");
        assert_eq!(
            Notification::peek_id(b"\xffnot one"),
            None,
            "another version"
        );
    }

    #[test]
    fn round_trips() {
        let n = sample();
        let b = n.to_bytes();
        assert_eq!(b.len(), n.encoded_len());
        assert_eq!(Notification::decode(&b).unwrap(), n);
    }

    #[test]
    fn strict() {
        let b = sample().to_bytes();
        for cut in 0..b.len() {
            assert!(Notification::decode(&b[..cut]).is_err(), "prefix {cut}");
        }
        let mut longer = b.clone();
        longer.push(0);
        assert!(Notification::decode(&longer).is_err());
        let mut bad_tlp = b.clone();
        bad_tlp[29] = 9;
        assert!(Notification::decode(&bad_tlp).is_err());
        let mut bad_kind = b;
        bad_kind[30] = 0;
        assert!(Notification::decode(&bad_kind).is_err());
    }

    #[test]
    fn ids_separate_their_parts() {
        let a = NotificationId::for_hit("ab", EntityId(1), "c", "r");
        let b = NotificationId::for_hit("a", EntityId(1), "bc", "r");
        let c = NotificationId::for_hit("ab", EntityId(2), "c", "r");
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, NotificationId::for_hit("ab", EntityId(1), "c", "r"));
        assert_eq!(a.to_string().len(), 32);
    }
}
