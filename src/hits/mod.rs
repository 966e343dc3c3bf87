//! Hits as records: the hit schema, JSON-lines output, and sightings (hit counts per
//! indicator, partner and day). [`writer`] writes the same fields as Parquet or Arrow IPC.

pub mod writer;

pub use writer::{HitFormat, HitWriter, hit_schema};

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde::{Deserialize, Serialize};

use crate::index::CompiledIndex;
use crate::indicator::IndicatorId;
use crate::matcher::Hit;
use crate::telemetry::FieldMap;

/// One hit with everything a consumer needs, as written to JSON lines.
#[derive(Debug, Serialize)]
pub struct HitRecord<'a> {
    /// The indicator's id (MISP attribute uuid, STIX id, `file:line`).
    pub indicator_id: &'a str,
    /// The indicator's kind.
    pub kind: &'a str,
    /// The indicator's normalised value.
    pub indicator: &'a str,
    /// The telemetry field that matched.
    pub field: &'a str,
    /// The telemetry value as seen.
    pub value: &'a str,
    /// 0-based data row within its input file.
    pub row: u64,
    /// The input file.
    pub input: &'a str,
    /// The row's event time (RFC 3339), when the field map names one.
    pub event_time: Option<String>,
    /// The indicator's TLP.
    pub tlp: &'a str,
    /// The indicator's source.
    pub source: &'a str,
    /// The indicator's tags.
    pub tags: Vec<&'a str>,
}

/// Builds the record of a hit.
pub fn record<'a>(
    index: &'a CompiledIndex,
    fields: &'a FieldMap,
    input: &'a str,
    hit: &'a Hit,
) -> HitRecord<'a> {
    let m = index.meta();
    HitRecord {
        indicator_id: m.id(hit.ord),
        kind: m.kind(hit.ord).name(),
        indicator: m.value(hit.ord),
        field: &fields.fields()[hit.field].name,
        value: &hit.value,
        row: hit.row,
        input,
        event_time: hit
            .event_time
            .and_then(|t| jiff::Timestamp::from_second(t).ok())
            .map(|t| t.to_string()),
        tlp: m.tlp(hit.ord).name(),
        // TLP:EX:CHR: the source is named nowhere outside the publisher.
        source: if m.no_attribution(hit.ord) {
            crate::indicator::WITHHELD_SOURCE
        } else {
            m.source(hit.ord)
        },
        tags: m.tags(hit.ord).collect(),
    }
}

/// One hit as a partner receives it over the network and writes it: the fields of
/// [`HitRecord`], owned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HitLine {
    /// The indicator's id.
    pub indicator_id: String,
    /// The indicator's kind.
    pub kind: String,
    /// The indicator's normalised value.
    pub indicator: String,
    /// The telemetry field that matched.
    pub field: String,
    /// The telemetry value as seen.
    pub value: String,
    /// 0-based data row within its input.
    pub row: u64,
    /// The input.
    pub input: String,
    /// The row's event time (RFC 3339).
    pub event_time: Option<String>,
    /// The indicator's TLP.
    pub tlp: String,
    /// The indicator's source (empty when it must not be named).
    pub source: String,
    /// The indicator's tags.
    pub tags: Vec<String>,
}

impl HitLine {
    /// The line as a record (for the writers and the wire's Arrow batch).
    pub fn as_record(&self) -> HitRecord<'_> {
        HitRecord {
            indicator_id: &self.indicator_id,
            kind: &self.kind,
            indicator: &self.indicator,
            field: &self.field,
            value: &self.value,
            row: self.row,
            input: &self.input,
            event_time: self.event_time.clone(),
            tlp: &self.tlp,
            source: &self.source,
            tags: self.tags.iter().map(String::as_str).collect(),
        }
    }
}

impl From<HitRecord<'_>> for HitLine {
    fn from(r: HitRecord<'_>) -> Self {
        HitLine {
            indicator_id: r.indicator_id.to_string(),
            kind: r.kind.to_string(),
            indicator: r.indicator.to_string(),
            field: r.field.to_string(),
            value: r.value.to_string(),
            row: r.row,
            input: r.input.to_string(),
            event_time: r.event_time,
            tlp: r.tlp.to_string(),
            source: r.source.to_string(),
            tags: r.tags.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// Writes hits as JSON lines.
pub fn write_jsonl(
    w: &mut dyn Write,
    index: &CompiledIndex,
    fields: &FieldMap,
    input: &str,
    hits: &[Hit],
) -> io::Result<()> {
    for h in hits {
        serde_json::to_writer(&mut *w, &record(index, fields, input, h))?;
        w.write_all(b"\n")?;
    }
    Ok(())
}

/// The sightings of one local match (`cwn match --sightings`): [`SightingCounts`] by indicator
/// ordinal, reported by one partner. The day is that of the row's event time, or of the
/// match when the row has none.
#[derive(Debug)]
pub struct Sightings {
    partner: String,
    now: i64,
    counts: SightingCounts<IndicatorId, ()>,
}

impl Default for Sightings {
    /// Partner `local`, match time now.
    fn default() -> Self {
        Sightings::new("local", jiff::Timestamp::now().as_second())
    }
}

const DAY: i64 = 86_400;

/// Hit counts per indicator, partner and UTC day: sightings, what the publisher hears of
/// its indicators instead of telemetry rows. `K` names the indicator (its ordinal in one
/// snapshot, or its id, which survives a snapshot swap), `P` the partner. The one counter
/// behind [`Sightings`] (`cwn match --sightings`) and the hub's
/// [`SightingsAggregator`](crate::route::SightingsAggregator).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SightingCounts<K: Ord, P: Ord + Copy> {
    /// indicator → (partner, day as days since 1970-01-01) → hits.
    counts: BTreeMap<K, BTreeMap<(P, i64), u64>>,
}

impl<K: Ord, P: Ord + Copy> Default for SightingCounts<K, P> {
    fn default() -> Self {
        SightingCounts {
            counts: BTreeMap::new(),
        }
    }
}

impl<K: Ord, P: Ord + Copy> SightingCounts<K, P> {
    /// Adds `count` hits of `indicator` by `partner` on `day` (days since 1970-01-01).
    pub fn add_on_day<Q>(&mut self, indicator: &Q, partner: P, day: i64, count: u64)
    where
        K: std::borrow::Borrow<Q>,
        Q: ToOwned<Owned = K> + Ord + ?Sized,
    {
        // Looked up by reference first: no key allocated for an indicator already counted.
        let per = match self.counts.get_mut(indicator) {
            Some(per) => per,
            None => self.counts.entry(indicator.to_owned()).or_default(),
        };
        *per.entry((partner, day)).or_insert(0) += count;
    }

    /// Counts one hit of `indicator` by `partner` at `event_time` (Unix seconds), on its UTC
    /// day.
    pub fn add<Q>(&mut self, indicator: &Q, partner: P, event_time: i64)
    where
        K: std::borrow::Borrow<Q>,
        Q: ToOwned<Owned = K> + Ord + ?Sized,
    {
        self.add_on_day(indicator, partner, event_time.div_euclid(DAY), 1);
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &SightingCounts<K, P>)
    where
        K: Clone,
    {
        for (k, per) in &other.counts {
            for (&(p, day), &n) in per {
                self.add_on_day(k, p, day, n);
            }
        }
    }

    /// Number of (indicator, partner, day) rows.
    pub fn len(&self) -> usize {
        self.counts.values().map(BTreeMap::len).sum()
    }

    /// Number of distinct indicators.
    pub fn indicators(&self) -> usize {
        self.counts.len()
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The rows `(indicator, partner, day, count)`, by indicator, partner and day.
    pub fn rows(&self) -> impl Iterator<Item = (&K, P, i64, u64)> + '_ {
        self.counts.iter().flat_map(|(k, per)| {
            per.iter()
                .map(move |(&(p, day), &count)| (k, p, day, count))
        })
    }

    /// Forgets every count.
    pub fn clear(&mut self) {
        self.counts.clear();
    }
}

impl Sightings {
    /// Sightings reported by `partner`; rows without an event time count on the UTC day of
    /// `now` (Unix seconds, the match time).
    pub fn new(partner: impl Into<String>, now: i64) -> Self {
        Sightings {
            partner: partner.into(),
            now,
            counts: SightingCounts::default(),
        }
    }

    /// The partner the sightings are reported by.
    pub fn partner(&self) -> &str {
        &self.partner
    }

    /// Counts hits.
    pub fn add(&mut self, hits: &[Hit]) {
        for h in hits {
            self.counts
                .add(&h.ord, (), h.event_time.unwrap_or(self.now));
        }
    }

    /// Number of distinct indicators seen.
    pub fn len(&self) -> usize {
        self.counts.indicators()
    }

    /// Whether nothing was seen.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Writes one JSON line per indicator and day: `indicator_id`, `kind`, `indicator`,
    /// `tlp`, `source` (the indicator's), `count`, `partner` (who saw it) and `day`
    /// (`YYYY-MM-DD`, UTC).
    pub fn write_jsonl(&self, w: &mut dyn Write, index: &CompiledIndex) -> io::Result<()> {
        let m = index.meta();
        for (&ord, (), day, count) in self.counts.rows() {
            let day = jiff::Timestamp::from_second(day * DAY)
                .map(|t| t.strftime("%Y-%m-%d").to_string())
                .unwrap_or_default();
            let v = serde_json::json!({
                "indicator_id": m.id(ord),
                "kind": m.kind(ord).name(),
                "indicator": m.value(ord),
                "tlp": m.tlp(ord).name(),
                "source": m.source(ord),
                "count": count,
                "partner": self.partner,
                "day": day,
            });
            serde_json::to_writer(&mut *w, &v)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    }
}
