//! Routing a whole matched telemetry batch: from a partner's batch and its hits to everything
//! the hub must store and send — the hits the partner may see, one notification per allowed
//! recipient, the audit lines and the sightings. Pure: no socket, no file, no clock.
//!
//! The victim side of a hit is read from the row's other mapped columns with the telemetry
//! [`cell`] reader, the same one the matcher uses, so that every column type the readers
//! produce (dictionaries, large and view strings, lists) names its victims.
//!
//! What a victim receives says what it needs to act and nothing of the partner's own
//! estate: the indicator and its context, the matched value, the event time, the reporting
//! partner, and the observables of *its own* constituency that put it in the row (`victim`:
//! its internal address, host name or domain). The partner's input name (often a local path)
//! stays with the partner.

use jiff::Timestamp;
use roaring::RoaringBitmap;
use serde::Serialize;
use xxhash_rust::xxh3::Xxh3;

use super::constituency::Observable;
use super::registry::EntityOrd;
use super::{AuditLog, Decision, RouteInput, Router, Sensitivity, SightingsAggregator};
use crate::hits::{self, HitLine};
use crate::hub::{Notification, NotificationId, NotificationKind};
use crate::index::CompiledIndex;
use crate::matcher::Hit;
use crate::telemetry::cell;
use crate::telemetry::{FieldKind, FieldMap};
use arrow_array::RecordBatch;

/// One matched telemetry batch of one partner.
#[derive(Clone, Copy, Debug)]
pub struct MatchedBatch<'a> {
    /// The index the batch was matched against.
    pub index: &'a CompiledIndex,
    /// The field map of the batch.
    pub fields: &'a FieldMap,
    /// The mapped columns, named as in `fields`.
    pub batch: &'a RecordBatch,
    /// Row number of the batch's first row within its input.
    pub first_row: u64,
    /// The partner's name for the input (shown to the partner only).
    pub input: &'a str,
    /// The hits of the batch, as [`crate::matcher::Matcher`] found them.
    pub hits: &'a [Hit],
    /// Identifies the batch: a digest of its bytes as sent. The same batch sent again gives
    /// the same value (and so the same notification ids, which receivers de-duplicate); any
    /// other batch — tomorrow's `conn.log` with the same name and rows — another.
    pub digest: u128,
    /// Matched again by a retro-hunt (on indicators added after the batch came): the
    /// notifications say so (`retro: true`), and the partner's own hits become
    /// notifications to it as well as lines.
    pub retro: bool,
}

/// Who sent a batch and who owns the indicators it matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchParties {
    /// The partner that streamed the batch.
    pub partner: EntityOrd,
    /// The publisher that receives internal cases (the one that pushed the snapshot in use);
    /// `None`: internal cases are only audited.
    pub publisher: Option<EntityOrd>,
}

/// One notification for one entity, as routing decided it: what the hub stores and sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutedNotification {
    /// The entity notified, in the registry.
    pub recipient: EntityOrd,
    /// The notification, addressed to the recipient's durable number
    /// ([`Router::number`]). Its id is a hash of the indicator, the recipient, the partner,
    /// the batch digest and the row — stable across a resend of the same batch, distinct
    /// otherwise; its payload is the JSON of a [`NotificationBody`].
    pub notification: Notification,
}

/// Everything a batch gives, for the hub to store and send.
#[derive(Debug, Default)]
pub struct Routed {
    /// The hits the submitting partner may see, in hit order.
    pub back_to_partner: Vec<HitLine>,
    /// The notifications to other entities (victims, the publisher's internal cases), in
    /// hit order.
    pub notifications: Vec<RoutedNotification>,
    /// The audit log lines (JSON lines) of every decision, allowed or blocked.
    pub audit: Vec<u8>,
    /// Number of decisions in `audit`.
    pub decisions: u64,
    /// Sightings of the batch for the publisher: hits per indicator, partner and day.
    pub sightings: SightingsAggregator,
}

/// An observable of the victim side, as the notification names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VictimObservable {
    /// The telemetry field it was read from.
    pub field: String,
    /// The value as seen.
    pub value: String,
}

/// The JSON body of a hit notification.
#[derive(Debug, Serialize)]
pub struct NotificationBody<'a> {
    /// The indicator's id.
    pub indicator_id: &'a str,
    /// The indicator's kind.
    pub kind: &'a str,
    /// The indicator's normalised value.
    pub indicator: &'a str,
    /// The telemetry field that matched.
    pub field: &'a str,
    /// The telemetry value as seen.
    pub value: &'a str,
    /// The row within the partner's batch stream (for de-duplication and support, not a path).
    pub row: u64,
    /// The row's event time (RFC 3339).
    pub event_time: Option<&'a str>,
    /// The indicator's TLP.
    pub tlp: &'a str,
    /// The indicator's source (empty when it must not be named).
    pub source: &'a str,
    /// The indicator's tags.
    pub tags: &'a [String],
    /// The reporting partner (its registry id).
    pub partner: &'a str,
    /// The rule that allowed the notification.
    pub rule: &'static str,
    /// In which capacities the recipient is notified.
    pub capacity: Vec<&'static str>,
    /// The observables of the recipient's own constituency in the row (empty for an internal
    /// case).
    pub victim: Vec<VictimObservable>,
    /// The event's identifier in the partner's records (Zeek `uid`, Suricata `flow_id`), when
    /// the batch maps one: what the victim quotes to find the connection. Victims only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Found by a retro-hunt: the indicator came after the telemetry; `event_time` is the
    /// row's own. Absent for live hits.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub retro: bool,
}

/// The longest telemetry value a notification carries (the matched value, each victim
/// observable), in bytes; longer ones are cut at a character boundary and end in `…`. The
/// values come from the partner: without a bound one row could make a record no log takes.
pub const MAX_VALUE_BYTES: usize = 1024;
/// The most victim observables one notification names.
pub const MAX_VICTIM_OBSERVABLES: usize = 16;

fn bounded(s: &str) -> String {
    if s.len() <= MAX_VALUE_BYTES {
        return s.to_string();
    }
    let mut end = MAX_VALUE_BYTES - '…'.len_utf8();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Routes every hit of `batch`: see the module docs. `first_hit_id` numbers the hits in the
/// audit log (the caller keeps the counter). The TLP decisions are [`Router::route`]'s.
pub fn route_batch(
    router: &Router,
    batch: &MatchedBatch<'_>,
    parties: BatchParties,
    first_hit_id: u64,
    now: Timestamp,
) -> Routed {
    let reg = router.registry();
    let created_at_ms = u64::try_from(now.as_millisecond()).unwrap_or(0);
    let meta = batch.index.meta();
    let specs = batch.fields.fields();
    let partner_id = reg.entity(parties.partner).id.as_str();
    let cols: Vec<Option<&arrow_array::ArrayRef>> = specs
        .iter()
        .map(|f| batch.batch.column_by_name(&f.name))
        .collect();
    let uid_col = specs
        .iter()
        .position(|f| f.kind == FieldKind::Uid)
        .and_then(|i| cols[i]);
    let mut out = Routed::default();
    let mut audit = AuditLog::new(Vec::new());
    let mut decisions: Vec<Decision> = Vec::new();
    let mut texts = Vec::new();
    // (field index, value) of the row's victim side, and the entities each one covers.
    let mut side: Vec<(usize, String)> = Vec::new();
    let mut covers: Vec<RoaringBitmap> = Vec::new();
    for (i, h) in batch.hits.iter().enumerate() {
        let Some(r) = h
            .row
            .checked_sub(batch.first_row)
            .and_then(|r| usize::try_from(r).ok())
            .filter(|&r| r < batch.batch.num_rows())
        else {
            continue;
        };
        side.clear();
        for (fi, spec) in specs.iter().enumerate() {
            if fi == h.field || !spec.kind.can_match() {
                continue;
            }
            if let Some(c) = cols[fi] {
                texts.clear();
                cell::texts(c.as_ref(), r, &mut texts);
                side.extend(texts.drain(..).map(|s| (fi, s.into_owned())));
            }
        }
        let observables: Vec<(usize, Observable<'_>)> = side
            .iter()
            .enumerate()
            .filter_map(|(k, (fi, s))| Observable::from_field(&specs[*fi].kind, s).map(|o| (k, o)))
            .collect();
        let mut victims = RoaringBitmap::new();
        covers.clear();
        for (_, o) in &observables {
            let mut v = RoaringBitmap::new();
            router.victims(std::slice::from_ref(o), &mut v);
            victims |= &v;
            covers.push(v);
        }
        let obs: Vec<Observable<'_>> = observables.iter().map(|(_, o)| *o).collect();
        let input = RouteInput {
            hit_id: first_hit_id + i as u64,
            indicator_id: meta.id(h.ord),
            sensitivity: Sensitivity::of_meta(meta, h.ord),
            publisher: parties.publisher,
            partner: parties.partner,
            observables: &obs,
        };
        decisions.clear();
        let routing = router.route_victims(&input, &victims, &mut decisions);
        // Writing to a Vec cannot fail.
        let _ = audit.write(now, reg, &input, &decisions, routing);
        out.sightings.add(
            input.indicator_id,
            parties.partner,
            h.event_time.unwrap_or(now.as_second()),
        );
        let line: HitLine = hits::record(batch.index, batch.fields, batch.input, h).into();
        for d in decisions.iter().filter(|d| d.allowed) {
            if d.recipient == parties.partner {
                out.back_to_partner.push(line.clone());
                if !batch.retro {
                    continue;
                }
            }
            let victim: Vec<VictimObservable> = observables
                .iter()
                .zip(&covers)
                .filter(|(_, c)| c.contains(d.recipient.as_u32()))
                .take(MAX_VICTIM_OBSERVABLES)
                .map(|((k, _), _)| VictimObservable {
                    field: specs[side[*k].0].name.clone(),
                    value: bounded(&side[*k].1),
                })
                .collect();
            let value = bounded(&line.value);
            let recipient_id = reg.entity(d.recipient).id.as_str();
            let body = NotificationBody {
                indicator_id: &line.indicator_id,
                kind: &line.kind,
                indicator: &line.indicator,
                field: &line.field,
                value: &value,
                row: line.row,
                event_time: line.event_time.as_deref(),
                tlp: &line.tlp,
                source: &line.source,
                tags: &line.tags,
                partner: partner_id,
                rule: d.rule.name(),
                capacity: d.capacity.names().collect(),
                uid: if victim.is_empty() {
                    None
                } else {
                    uid_col
                        .and_then(|c| cell::first_text(c.as_ref(), r))
                        .map(|u| bounded(&u))
                },
                victim,
                retro: batch.retro,
            };
            out.notifications.push(RoutedNotification {
                recipient: d.recipient,
                notification: Notification {
                    id: NotificationId(notification_id(
                        &line.indicator_id,
                        recipient_id,
                        partner_id,
                        batch.digest,
                        h.row,
                    )),
                    created_at_ms,
                    entity: router.number(d.recipient),
                    tlp: meta.tlp(h.ord),
                    kind: NotificationKind::Hit,
                    // Serialising strings and integers into a Vec cannot fail.
                    payload: serde_json::to_vec(&body).unwrap_or_default(),
                },
            });
        }
    }
    out.decisions = audit.records();
    out.audit = audit.into_inner();
    out
}

/// The digest that identifies a batch by its bytes ([`MatchedBatch::digest`]).
pub fn batch_digest(bytes: &[u8]) -> u128 {
    xxhash_rust::xxh3::xxh3_128(bytes)
}

fn notification_id(indicator: &str, recipient: &str, partner: &str, batch: u128, row: u64) -> u128 {
    let mut h = Xxh3::new();
    h.update(b"cwn-hit-v2");
    for part in [
        indicator.as_bytes(),
        recipient.as_bytes(),
        partner.as_bytes(),
    ] {
        // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.update(&batch.to_le_bytes());
    h.update(&row.to_le_bytes());
    h.digest128()
}
