//! One alert per (entity, indicator, asset, UTC day): the first sighting at once, then updates
//! with the count, at most one per aggregate every `update_every`.
//!
//! Sans-IO: [`Aggregator::observe`] takes each notification with its hub offset, and
//! [`Aggregator::due`] the clock; both return the alerts to send. Its [`AggregateState`] is
//! what the subscriber stores (beside its spool) before it acknowledges to the hub, so a
//! restart neither counts a redelivered notification twice (offsets up to the one stored are
//! skipped) nor sends a first sighting again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_128;

use super::{Alert, Context, HitRecord};
use crate::hub::notification::{Notification, NotificationKind};

/// Aggregates kept after their day ended, in days: late rows of yesterday still fold in.
const KEEP_DAYS: i64 = 2;

/// What the subscriber stores of an [`Aggregator`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregateState {
    /// The hub offset of the last notification observed.
    pub hub_offset: Option<u64>,
    /// The open aggregates, by alert id.
    pub open: BTreeMap<String, Open>,
}

/// One aggregate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Open {
    /// The alert as it stands.
    pub alert: Alert,
    /// The count last sent.
    pub sent_count: u64,
    /// When it was last sent, Unix milliseconds.
    pub sent_at_ms: u64,
}

/// What [`Aggregator::observe`] made of a notification.
#[derive(Debug, PartialEq, Eq)]
pub enum Observed {
    /// Its offset was observed before (a redelivery): nothing.
    Again,
    /// A first sighting, or a notification passed on as it is: send this now.
    Send(Box<Alert>),
    /// Counted in an aggregate already sent; [`Aggregator::due`] sends the update.
    Folded,
}

/// See the [module docs](self).
pub struct Aggregator {
    entity: String,
    update_every_ms: u64,
    action: Box<dyn Fn(&str) -> String + Send>,
    state: AggregateState,
}

impl Aggregator {
    /// An aggregator for `entity` that sends an aggregate's update at most every
    /// `update_every_ms`, resuming from `state`; `action` gives the recommended-action
    /// template for an indicator kind ([`super::default_action`] unless configured).
    pub fn new(
        entity: &str,
        update_every_ms: u64,
        state: AggregateState,
        action: impl Fn(&str) -> String + Send + 'static,
    ) -> Self {
        Aggregator {
            entity: entity.to_owned(),
            update_every_ms,
            action: Box::new(action),
            state,
        }
    }

    /// What to store.
    pub fn state(&self) -> &AggregateState {
        &self.state
    }

    /// Observes notification `n` at hub offset `offset`.
    pub fn observe(&mut self, offset: u64, n: &Notification) -> Observed {
        if self.state.hub_offset.is_some_and(|o| offset <= o) {
            return Observed::Again;
        }
        self.state.hub_offset = Some(offset);
        if n.kind != NotificationKind::Hit {
            return Observed::Send(Box::new(super::passed_on(&self.entity, n)));
        }
        let hit: HitRecord = serde_json::from_slice(&n.payload).unwrap_or_default();
        let seen = hit
            .event_time
            .as_deref()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .or_else(|| jiff::Timestamp::from_millisecond(n.created_at_ms as i64).ok())
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let day = seen.to_zoned(jiff::tz::TimeZone::UTC).date().to_string();
        let mut assets = hit.victim.clone();
        assets.sort();
        assets.dedup();
        let asset_key: Vec<&str> = assets.iter().map(|a| a.value.as_str()).collect();
        let key = format!(
            "{}\0{}\0{}\0{}\0{}",
            self.entity,
            hit.kind,
            hit.indicator,
            asset_key.join("\u{1}"),
            day
        );
        let id = format!("{:032x}", xxh3_128(key.as_bytes()));
        let seen_s = seen.to_string();
        if let Some(open) = self.state.open.get_mut(&id) {
            let a = &mut open.alert;
            a.count += 1;
            if seen_s < a.first_seen {
                a.first_seen = seen_s.clone();
            }
            if seen_s > a.last_seen {
                a.last_seen = seen_s;
            }
            // The most restrictive label of what it says.
            let (now, was) = (super::tlp_of(&hit.tlp), super::tlp_of(&a.tlp));
            if now > was {
                a.tlp = format!("TLP:{}", now.name());
                a.tlp_meaning = super::tlp_meaning(now).into();
            }
            a.retro &= hit.retro;
            return Observed::Folded;
        }
        let tlp = super::tlp_of(&hit.tlp);
        let action = (self.action)(&hit.kind);
        let alert = Alert {
            id: id.clone(),
            revision: 1,
            notification: "hit".into(),
            tlp: format!("TLP:{}", tlp.name()),
            tlp_meaning: super::tlp_meaning(tlp).into(),
            entity: self.entity.clone(),
            recommended_action: super::fill_action(&action, &hit.indicator, &assets),
            indicator: hit.indicator,
            indicator_id: hit.indicator_id,
            kind: hit.kind,
            matched_value: hit.value,
            field: hit.field,
            entity_assets: assets,
            first_seen: seen_s.clone(),
            last_seen: seen_s,
            count: 1,
            day,
            reported_by: hit.partner,
            context: Context {
                source: hit.source,
                tags: hit.tags,
            },
            retro: hit.retro,
            uid: hit.uid,
        };
        self.state.open.insert(
            id,
            Open {
                alert: alert.clone(),
                sent_count: 1,
                sent_at_ms: n.created_at_ms,
            },
        );
        Observed::Send(Box::new(alert))
    }

    /// The updates due at `now_ms`: each aggregate counted since it was last sent, last sent
    /// `update_every` ago or more, as its next revision. Aggregates of days more than
    /// two days past, all sent, are closed.
    pub fn due(&mut self, now_ms: u64) -> Vec<Alert> {
        let mut out = Vec::new();
        for open in self.state.open.values_mut() {
            if open.alert.count > open.sent_count
                && now_ms.saturating_sub(open.sent_at_ms) >= self.update_every_ms
            {
                open.alert.revision += 1;
                open.sent_count = open.alert.count;
                open.sent_at_ms = now_ms;
                out.push(open.alert.clone());
            }
        }
        let today = jiff::Timestamp::from_millisecond(now_ms as i64)
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
            .to_zoned(jiff::tz::TimeZone::UTC)
            .date();
        let oldest = today
            .checked_sub(jiff::Span::new().days(KEEP_DAYS))
            .unwrap_or(today)
            .to_string();
        self.state
            .open
            .retain(|_, o| o.alert.day >= oldest || o.alert.count > o.sent_count);
        out
    }

    /// Every update not yet sent, whatever its age (at shutdown).
    pub fn flush(&mut self, now_ms: u64) -> Vec<Alert> {
        let every = std::mem::replace(&mut self.update_every_ms, 0);
        let out = self.due(now_ms);
        self.update_every_ms = every;
        out
    }
}

impl std::fmt::Debug for Aggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregator")
            .field("entity", &self.entity)
            .field("update_every_ms", &self.update_every_ms)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::notification::NotificationId;
    use crate::indicator::Tlp;

    fn hit(id: u128, indicator: &str, client: &str, time: &str, tlp: &str) -> Notification {
        Notification {
            id: NotificationId(id),
            created_at_ms: 1_780_000_000_000,
            entity: crate::hub::EntityId(1),
            tlp: Tlp::Green,
            kind: NotificationKind::Hit,
            payload: serde_json::to_vec(&serde_json::json!({
                "indicator_id": "ind-1", "kind": "domain", "indicator": indicator,
                "field": "query", "value": format!("www.{indicator}"), "row": id,
                "event_time": time, "tlp": tlp, "source": "feed", "tags": ["apt:x"],
                "partner": "msp", "rule": "r", "capacity": ["victim"],
                "victim": [{"field": "client", "value": client}],
            }))
            .unwrap(),
        }
    }

    fn agg() -> Aggregator {
        Aggregator::new("hospital", 60_000, AggregateState::default(), |k| {
            super::super::default_action(k).to_string()
        })
    }

    #[test]
    fn a_thousand_sightings_in_a_day_are_one_alert_with_a_count() {
        let mut a = agg();
        let mut sent = Vec::new();
        for i in 0..1000u64 {
            let t = format!("2026-12-07T08:{:02}:{:02}Z", i / 60, i % 60);
            match a.observe(i, &hit(i as u128, "evil.example", "10.0.0.5", &t, "GREEN")) {
                Observed::Send(al) => sent.push(al),
                Observed::Folded => {}
                Observed::Again => panic!("offset {i} is new"),
            }
        }
        assert_eq!(sent.len(), 1, "the first sighting at once, the rest folded");
        assert_eq!(sent[0].count, 1);
        let now = 1_780_000_000_000 + 60_000;
        let up = a.due(now);
        assert_eq!(up.len(), 1);
        assert_eq!(
            (up[0].id.as_str(), up[0].revision),
            (sent[0].id.as_str(), 2)
        );
        assert_eq!(up[0].count, 1000);
        assert_eq!(up[0].first_seen, "2026-12-07T08:00:00Z");
        assert_eq!(up[0].last_seen, "2026-12-07T08:16:39Z");
        assert!(a.due(now + 3_600_000).is_empty(), "nothing new: no update");
    }

    #[test]
    fn another_asset_day_or_indicator_is_another_alert_and_a_redelivery_is_nothing() {
        let mut a = agg();
        let first = a.observe(
            1,
            &hit(
                1,
                "evil.example",
                "10.0.0.5",
                "2026-12-07T08:00:00Z",
                "GREEN",
            ),
        );
        let Observed::Send(first) = first else {
            panic!()
        };
        for (o, n) in [
            (
                2,
                hit(
                    2,
                    "evil.example",
                    "10.0.0.6",
                    "2026-12-07T08:00:00Z",
                    "GREEN",
                ),
            ),
            (
                3,
                hit(
                    3,
                    "evil.example",
                    "10.0.0.5",
                    "2026-12-08T00:00:01Z",
                    "GREEN",
                ),
            ),
            (
                4,
                hit(
                    4,
                    "bad.example",
                    "10.0.0.5",
                    "2026-12-07T08:00:00Z",
                    "GREEN",
                ),
            ),
        ] {
            match a.observe(o, &n) {
                Observed::Send(al) => assert_ne!(al.id, first.id),
                r => panic!("{r:?}"),
            }
        }
        assert_eq!(
            a.observe(
                1,
                &hit(
                    1,
                    "evil.example",
                    "10.0.0.5",
                    "2026-12-07T08:00:00Z",
                    "GREEN"
                )
            ),
            Observed::Again
        );
        // Restarted from its state: the same aggregate folds, it is not a first sighting.
        let mut b = Aggregator::new("hospital", 0, a.state().clone(), |k| {
            super::super::default_action(k).to_string()
        });
        assert_eq!(
            b.observe(
                5,
                &hit(
                    5,
                    "evil.example",
                    "10.0.0.5",
                    "2026-12-07T09:00:00Z",
                    "AMBER"
                )
            ),
            Observed::Folded
        );
        let up = b.due(1_780_000_000_000);
        assert_eq!(up.len(), 1);
        assert_eq!((up[0].count, up[0].tlp.as_str()), (2, "TLP:AMBER"));
    }
}
