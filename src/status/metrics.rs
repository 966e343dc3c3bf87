//! The metrics registry: counters and gauges the hub updates, and [`Status`], the consistent
//! view of them that the Prometheus exposition, the status page and the JSON API render.
//!
//! No async runtime and no clock: every call that needs the time takes `now`, so the sans-IO
//! hub core can feed it with its simulated clock. Calls happen per batch, per notification or
//! per connection event, never per telemetry row, so one mutex over the whole state is cheaper
//! than it looks and keeps every [`Status`] internally consistent.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

use crate::index::CompiledIndex;
use crate::indicator::{Kind, Tlp};

/// Upper bounds of the delivery-latency histogram buckets, in seconds (the Prometheus `le`
/// labels), 1 ms to 30 s; slower deliveries land in the `+Inf` bucket.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Longest error message kept in the recent-errors ring, in bytes; longer ones are cut.
pub const MAX_ERROR_MESSAGE: usize = 512;

/// Label value for an absent sector or an entity without roles.
const NONE: &str = "none";
/// Roles label of an entity the registry does not know (it connected, or the hub queued for
/// it, before a registry reload named it).
const UNREGISTERED: &str = "unregistered";

/// Tunables of a [`Metrics`] registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Width of one throughput bucket (rounded down to whole seconds, at least 1 s).
    pub throughput_bucket: Duration,
    /// How many throughput buckets are kept: the chart spans `bucket × buckets`.
    pub throughput_buckets: usize,
    /// A subscriber whose unacknowledged backlog exceeds this many notifications is lagging.
    pub lag_threshold: u64,
    /// An entity seen (connected or acknowledging) within this window counts as reachable.
    pub reach_window: Duration,
    /// How many recent errors are kept.
    pub recent_errors: usize,
}

impl Default for MetricsConfig {
    /// 10 s buckets over 15 minutes, lagging above 1,000 unacked notifications, reach over
    /// 24 hours, the last 50 errors.
    fn default() -> Self {
        MetricsConfig {
            throughput_bucket: Duration::from_secs(10),
            throughput_buckets: 90,
            lag_threshold: 1_000,
            reach_window: Duration::from_secs(24 * 3600),
            recent_errors: 50,
        }
    }
}

/// What the metrics need to know about one registered entity: the route registry's entities
/// convert into this (`id`, role names, NIS2 sector).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntityInfo {
    /// The entity's stable identifier in the registry.
    pub id: String,
    /// Role names (`publisher`, `partner`, `subscriber`).
    pub roles: Vec<String>,
    /// NIS2 sector, if the registry gives one.
    pub sector: Option<String>,
}

impl EntityInfo {
    /// An entity with the given id, roles and sector.
    pub fn new<R: Into<String>>(
        id: impl Into<String>,
        roles: impl IntoIterator<Item = R>,
        sector: Option<&str>,
    ) -> Self {
        EntityInfo {
            id: id.into(),
            roles: roles.into_iter().map(Into::into).collect(),
            sector: sector.map(str::to_string),
        }
    }
}

/// The snapshot the hub serves, as the status page shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SnapshotInfo {
    /// Set version from the snapshot header.
    pub version: u64,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Number of indicators.
    pub indicators: u64,
    /// Whether the snapshot is signed.
    pub signed: bool,
    /// Indicators per kind (kinds with none left out), in [`Kind::ALL`] order.
    pub by_kind: Vec<(Kind, u64)>,
    /// Indicators per TLP level, in [`Tlp::ALL`] order.
    pub by_tlp: Vec<(Tlp, u64)>,
}

impl SnapshotInfo {
    /// The figures of a loaded snapshot.
    pub fn from_index(index: &CompiledIndex) -> Self {
        let h = index.header();
        SnapshotInfo {
            version: h.set_version,
            created_at: h.created_at,
            indicators: h.indicator_count,
            signed: h.signed,
            by_kind: Kind::ALL
                .iter()
                .map(|&k| (k, h.count(k)))
                .filter(|&(_, n)| n > 0)
                .collect(),
            by_tlp: Tlp::ALL
                .iter()
                .map(|&t| (t, index.meta().by_tlp(t).len()))
                .collect(),
        }
    }
}

/// The hub's metrics registry. Share it as `Arc<Metrics>`; every method takes `&self`.
///
/// ```
/// use std::time::Duration;
/// use cwn::indicator::Kind;
/// use cwn::status::{EntityInfo, Metrics};
///
/// let now = jiff::Timestamp::from_second(1_750_000_000).unwrap();
/// let m = Metrics::default();
/// m.set_entities([
///     EntityInfo::new("msp-a", ["partner"], Some("digital-infrastructure")),
///     EntityInfo::new("hospital-b", ["subscriber"], Some("health")),
/// ]);
/// m.rows("msp-a", "zeek", 10_000, now);
/// m.hits("msp-a", Kind::Domain, 3, now);
/// m.queued("hospital-b", 2);
/// m.connected("hospital-b", now);
/// m.delivered("hospital-b", Duration::from_millis(40));
///
/// let s = m.status(now);
/// assert_eq!(s.reach.reachable, 1);
/// assert_eq!(s.reach.registered, 2);
/// assert!(m.render_prometheus(now).contains("cwn_hits_total{partner=\"msp-a\",kind=\"domain\"} 3\n"));
/// ```
#[derive(Debug, Default)]
pub struct Metrics {
    config: MetricsConfig,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    snapshot: Option<SnapshotInfo>,
    partners: HashMap<String, PartnerState>,
    entities: HashMap<String, EntityState>,
    latency: Histogram,
    log_bytes: u64,
    errors: VecDeque<RecentError>,
    errors_total: u64,
    throughput: Vec<Bucket>,
}

#[derive(Debug, Default)]
struct PartnerState {
    rows: HashMap<String, u64>,
    hits: [u64; Kind::ALL.len()],
    sightings: u64,
}

#[derive(Debug, Default)]
struct EntityState {
    registered: bool,
    roles: Vec<String>,
    sector: Option<String>,
    /// Open connections (an entity may hold several).
    connections: u32,
    last_seen: Option<Timestamp>,
    backlog: u64,
    queued: u64,
    delivered: u64,
    last_delivery: Option<Timestamp>,
    /// What its subscriber last reported of its delivery targets, and when.
    targets: Vec<crate::notify::TargetReport>,
    reported_at: Option<Timestamp>,
}

impl EntityState {
    fn roles_label(&self) -> String {
        if !self.registered {
            UNREGISTERED.to_string()
        } else if self.roles.is_empty() {
            NONE.to_string()
        } else {
            self.roles.join("+")
        }
    }

    fn sector_label(&self) -> &str {
        self.sector.as_deref().unwrap_or(NONE)
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Bucket {
    /// `floor(unix seconds / bucket width)` of the interval this slot holds.
    index: i64,
    rows: u64,
    hits: u64,
}

#[derive(Debug, Default)]
struct Histogram {
    /// Per bucket (not cumulative); the last one is `+Inf`.
    counts: [u64; LATENCY_BUCKETS.len() + 1],
    sum_micros: u128,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, latency: Duration) {
        let secs = latency.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.counts[i] += 1;
        self.sum_micros += latency.as_micros();
        self.count += 1;
    }

    /// The `q` quantile estimated as Prometheus' `histogram_quantile` does: linear
    /// interpolation inside the bucket holding the rank; the highest finite bound when the
    /// rank falls in `+Inf`.
    fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = q * self.count as f64;
        let mut below = 0u64;
        for (i, &n) in self.counts.iter().enumerate() {
            if n > 0 && (below + n) as f64 >= rank {
                let Some(&upper) = LATENCY_BUCKETS.get(i) else {
                    return Some(LATENCY_BUCKETS[LATENCY_BUCKETS.len() - 1]);
                };
                let lower = if i == 0 { 0.0 } else { LATENCY_BUCKETS[i - 1] };
                let into = (rank - below as f64).max(0.0) / n as f64;
                return Some(lower + (upper - lower) * into);
            }
            below += n;
        }
        Some(LATENCY_BUCKETS[LATENCY_BUCKETS.len() - 1])
    }
}

impl Metrics {
    /// An empty registry with the given tunables.
    pub fn new(config: MetricsConfig) -> Self {
        Metrics {
            config,
            state: Mutex::default(),
        }
    }

    /// The tunables this registry was made with.
    pub fn config(&self) -> &MetricsConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves counters that are still valid
        // numbers; the status page should keep working.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bucket_secs(&self) -> i64 {
        self.config.throughput_bucket.as_secs().max(1) as i64
    }

    fn bucket_count(&self) -> usize {
        self.config.throughput_buckets.max(1)
    }

    /// Replaces the registered entities (at start and on every registry reload). Activity of
    /// entities already known is kept; entities no longer named become unregistered.
    pub fn set_entities(&self, entities: impl IntoIterator<Item = EntityInfo>) {
        let mut st = self.lock();
        for e in st.entities.values_mut() {
            e.registered = false;
        }
        for info in entities {
            let e = st.entities.entry(info.id).or_default();
            e.registered = true;
            e.roles = info.roles;
            e.sector = info.sector;
        }
        // Forget unregistered entities that left no trace worth showing.
        st.entities.retain(|_, e| {
            e.registered || e.connections > 0 || e.backlog > 0 || e.queued > 0 || e.delivered > 0
        });
    }

    /// Records the snapshot now being served (its version, creation time and counts).
    pub fn snapshot(&self, info: SnapshotInfo) {
        self.lock().snapshot = Some(info);
    }

    /// A partner streamed `n` telemetry rows; `kind` says what they are (the preset or format,
    /// e.g. `zeek`, `eve`, `ecs`).
    pub fn rows(&self, partner: &str, kind: &str, n: u64, now: Timestamp) {
        let (w, len) = (self.bucket_secs(), self.bucket_count());
        let mut st = self.lock();
        let p = partner_mut(&mut st.partners, partner);
        match p.rows.get_mut(kind) {
            Some(c) => *c += n,
            None => {
                p.rows.insert(kind.to_string(), n);
            }
        }
        if let Some(b) = bucket_mut(&mut st.throughput, len, w, now) {
            b.rows += n;
        }
    }

    /// A partner's rows produced `n` hits on indicators of `kind`.
    pub fn hits(&self, partner: &str, kind: Kind, n: u64, now: Timestamp) {
        let (w, len) = (self.bucket_secs(), self.bucket_count());
        let mut st = self.lock();
        let p = partner_mut(&mut st.partners, partner);
        p.hits[kind_index(kind)] += n;
        if let Some(b) = bucket_mut(&mut st.throughput, len, w, now) {
            b.hits += n;
        }
    }

    /// A partner sent `n` sightings (hit counts of its local matching) back.
    pub fn sightings(&self, partner: &str, n: u64) {
        partner_mut(&mut self.lock().partners, partner).sightings += n;
    }

    /// `n` notifications were queued for `entity`.
    pub fn queued(&self, entity: &str, n: u64) {
        entity_mut(&mut self.lock().entities, entity).queued += n;
    }

    /// A notification reached `entity` (it acknowledged it) `latency` after it was queued.
    pub fn delivered(&self, entity: &str, latency: Duration) {
        let mut st = self.lock();
        entity_mut(&mut st.entities, entity).delivered += 1;
        st.latency.observe(latency);
    }

    /// `entity` acknowledged notifications at `now` (once per acknowledgement, not per
    /// notification: the clock stays off the per-notification path).
    pub fn last_delivery(&self, entity: &str, now: Timestamp) {
        let mut st = self.lock();
        let e = entity_mut(&mut st.entities, entity);
        e.last_delivery = Some(e.last_delivery.map_or(now, |t| t.max(now)));
    }

    /// `entity`'s subscriber reported its delivery targets at `now`.
    pub fn delivery_report(
        &self,
        entity: &str,
        targets: Vec<crate::notify::TargetReport>,
        now: Timestamp,
    ) {
        let mut st = self.lock();
        let e = entity_mut(&mut st.entities, entity);
        e.targets = targets;
        e.reported_at = Some(now);
    }

    /// One entity's view for the operator (the status page's drill-down), or `None` for an
    /// entity the hub has no figures of.
    pub fn entity(&self, id: &str, now: Timestamp) -> Option<EntityDetail> {
        let st = self.lock();
        let e = st.entities.get(id)?;
        let secs = |t: Option<Timestamp>| t.map(|t| t.as_second());
        Some(EntityDetail {
            time: now.as_second(),
            entity: id.to_string(),
            roles: e.roles_label(),
            sector: e.sector_label().to_string(),
            connections: e.connections,
            last_seen: secs(e.last_seen),
            queued: e.queued,
            delivered: e.delivered,
            unacknowledged: e.backlog,
            last_delivery: secs(e.last_delivery),
            reported_at: secs(e.reported_at),
            targets: e.targets.clone(),
        })
    }

    /// Delivery targets reported failing, by entity, most failed attempts first.
    fn failing_targets(st: &State) -> Vec<FailingTarget> {
        let mut v: Vec<FailingTarget> = st
            .entities
            .iter()
            .flat_map(|(id, e)| {
                e.targets
                    .iter()
                    .filter(|t| t.failing > 0)
                    .map(move |t| FailingTarget {
                        entity: id.clone(),
                        target: t.target.clone(),
                        failing: t.failing,
                        pending: t.pending,
                        last_error: t.last_error.clone(),
                    })
            })
            .collect();
        v.sort_by(|a, b| b.failing.cmp(&a.failing).then(a.entity.cmp(&b.entity)));
        v
    }

    /// `entity` showed it is reachable at `now` (it connected, acknowledged or kept a
    /// connection alive).
    pub fn seen(&self, entity: &str, now: Timestamp) {
        let mut st = self.lock();
        let e = entity_mut(&mut st.entities, entity);
        e.last_seen = Some(e.last_seen.map_or(now, |t| t.max(now)));
    }

    /// `entity` opened a connection at `now`.
    pub fn connected(&self, entity: &str, now: Timestamp) {
        let mut st = self.lock();
        let e = entity_mut(&mut st.entities, entity);
        e.connections += 1;
        e.last_seen = Some(e.last_seen.map_or(now, |t| t.max(now)));
    }

    /// One of `entity`'s connections closed at `now` (it was reachable until then).
    pub fn disconnected(&self, entity: &str, now: Timestamp) {
        let mut st = self.lock();
        let e = entity_mut(&mut st.entities, entity);
        e.connections = e.connections.saturating_sub(1);
        e.last_seen = Some(e.last_seen.map_or(now, |t| t.max(now)));
    }

    /// `entity` has `unacked` notifications queued but not yet acknowledged.
    pub fn backlog(&self, entity: &str, unacked: u64) {
        entity_mut(&mut self.lock().entities, entity).backlog = unacked;
    }

    /// The notification logs take `bytes` on disk.
    pub fn log_bytes(&self, bytes: u64) {
        self.lock().log_bytes = bytes;
    }

    /// Something went wrong at `now`; kept in a bounded ring of recent errors (the message is
    /// cut at [`MAX_ERROR_MESSAGE`] bytes) and counted.
    pub fn error(&self, now: Timestamp, message: &str) {
        let cap = self.config.recent_errors;
        let mut st = self.lock();
        st.errors_total += 1;
        if cap == 0 {
            return;
        }
        while st.errors.len() >= cap {
            st.errors.pop_front();
        }
        let mut end = message.len().min(MAX_ERROR_MESSAGE);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        st.errors.push_back(RecentError {
            time: now.as_second(),
            message: message[..end].to_string(),
        });
    }

    /// Notifications queued for and delivered to each entity that had any, sorted by entity.
    pub fn notifications_by_entity(&self) -> Vec<EntityNotifications> {
        let mut v = self
            .lock()
            .entities
            .iter()
            .filter(|(_, e)| e.queued > 0 || e.delivered > 0)
            .map(|(id, e)| EntityNotifications {
                entity: id.clone(),
                queued: e.queued,
                delivered: e.delivered,
            })
            .collect::<Vec<_>>();
        v.sort_by(|a, b| a.entity.cmp(&b.entity));
        v
    }

    /// Every figure at `now`, consistent with each other (taken under one lock).
    pub fn status(&self, now: Timestamp) -> Status {
        let st = self.lock();
        let now_s = now.as_second();

        let snapshot = st.snapshot.as_ref().map(|s| SnapshotStatus {
            version: s.version,
            created_at: s.created_at,
            age_seconds: (now_s - s.created_at).max(0),
            indicators: s.indicators,
            signed: s.signed,
            by_kind: s
                .by_kind
                .iter()
                .map(|&(k, n)| (k.name().to_string(), n))
                .collect(),
            by_tlp: s
                .by_tlp
                .iter()
                .map(|&(t, n)| (t.name().to_string(), n))
                .collect(),
        });

        let mut rows = Vec::new();
        let mut hits = Vec::new();
        let mut reciprocity: BTreeMap<&str, Reciprocity> = BTreeMap::new();
        for (partner, p) in &st.partners {
            let r = reciprocity
                .entry(partner)
                .or_insert_with(|| Reciprocity::new(partner));
            for (kind, &n) in &p.rows {
                rows.push(PartnerKindCount {
                    partner: partner.clone(),
                    kind: kind.clone(),
                    count: n,
                });
                r.rows += n;
            }
            for (i, &n) in p.hits.iter().enumerate() {
                if n > 0 {
                    hits.push(PartnerKindCount {
                        partner: partner.clone(),
                        kind: Kind::ALL[i].name().to_string(),
                        count: n,
                    });
                    r.hits += n;
                }
            }
            r.sightings = p.sightings;
        }
        rows.sort_by(|a, b| (&a.partner, &a.kind).cmp(&(&b.partner, &b.kind)));
        hits.sort_by(|a, b| (&a.partner, &a.kind).cmp(&(&b.partner, &b.kind)));

        let window = i64::try_from(self.config.reach_window.as_secs()).unwrap_or(i64::MAX);
        let horizon = now_s.saturating_sub(window);
        let mut classes: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
        let mut by_role: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        let mut by_sector: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        let (mut registered, mut reachable) = (0u64, 0u64);
        let mut connected_ids = Vec::new();
        let mut lagging = Vec::new();
        for (id, e) in &st.entities {
            if e.queued > 0 || e.delivered > 0 {
                let c = classes
                    .entry((e.roles_label(), e.sector_label().to_string()))
                    .or_default();
                c.0 += e.queued;
                c.1 += e.delivered;
            }
            if e.connections > 0 {
                connected_ids.push(id.clone());
            }
            if e.backlog > self.config.lag_threshold {
                lagging.push(Backlog {
                    entity: id.clone(),
                    backlog: e.backlog,
                });
            }
            if e.registered && e.roles.iter().any(|r| r == "partner") {
                reciprocity
                    .entry(id)
                    .or_insert_with(|| Reciprocity::new(id));
            }
            if let Some(r) = reciprocity.get_mut(id.as_str()) {
                r.notifications = e.delivered;
            }
            if !e.registered {
                continue;
            }
            let is_reachable =
                e.connections > 0 || e.last_seen.is_some_and(|t| t.as_second() >= horizon);
            let add = |c: &mut (u64, u64)| {
                c.0 += 1;
                c.1 += u64::from(is_reachable);
            };
            registered += 1;
            reachable += u64::from(is_reachable);
            if e.roles.is_empty() {
                add(by_role.entry(NONE).or_default());
            }
            for r in &e.roles {
                add(by_role.entry(r).or_default());
            }
            add(by_sector.entry(e.sector_label()).or_default());
        }
        connected_ids.sort();
        lagging.sort_by(|a, b| b.backlog.cmp(&a.backlog).then(a.entity.cmp(&b.entity)));
        // Entities that registered activity and were later seen as partners keep a ratio.
        let reciprocity = reciprocity
            .into_values()
            .map(|mut r| {
                let brought = r.rows + r.sightings;
                r.ratio = (brought > 0).then(|| r.notifications as f64 / brought as f64);
                r
            })
            .collect();

        let w = self.bucket_secs();
        let len = self.bucket_count();
        let latest = now_s.div_euclid(w);
        let first = latest - (len as i64 - 1);
        let (mut t_rows, mut t_hits) = (Vec::with_capacity(len), Vec::with_capacity(len));
        for i in first..=latest {
            let b = st
                .throughput
                .get(i.rem_euclid(len as i64) as usize)
                .filter(|b| b.index == i)
                .copied()
                .unwrap_or_default();
            t_rows.push(b.rows);
            t_hits.push(b.hits);
        }

        let class_reach = |m: BTreeMap<&str, (u64, u64)>| {
            m.into_iter()
                .map(|(name, (registered, reachable))| ReachClass {
                    name: name.to_string(),
                    registered,
                    reachable,
                })
                .collect()
        };

        Status {
            time: now_s,
            snapshot,
            rows,
            hits,
            notifications: classes
                .into_iter()
                .map(|((roles, sector), (queued, delivered))| ClassCount {
                    roles,
                    sector,
                    queued,
                    delivered,
                })
                .collect(),
            latency: LatencyStatus {
                bounds: LATENCY_BUCKETS.to_vec(),
                counts: st.latency.counts.to_vec(),
                sum_seconds: st.latency.sum_micros as f64 / 1e6,
                count: st.latency.count,
                p50_seconds: st.latency.quantile(0.5),
                p99_seconds: st.latency.quantile(0.99),
            },
            subscribers: SubscriberStatus {
                connected: connected_ids.len() as u64,
                connected_ids,
                lag_threshold: self.config.lag_threshold,
                lagging,
            },
            log_disk_bytes: st.log_bytes,
            errors_total: st.errors_total,
            errors: st.errors.iter().rev().cloned().collect(),
            throughput: Throughput {
                bucket_seconds: w as u64,
                start: first * w,
                rows_total: t_rows.iter().sum(),
                hits_total: t_hits.iter().sum(),
                rows: t_rows,
                hits: t_hits,
            },
            reach: Reach {
                window_seconds: self.config.reach_window.as_secs(),
                registered,
                reachable,
                by_role: class_reach(by_role),
                by_sector: class_reach(by_sector),
            },
            reciprocity,
            failing_targets: Self::failing_targets(&st),
        }
    }

    /// The figures at `now` in the Prometheus text exposition format.
    pub fn render_prometheus(&self, now: Timestamp) -> String {
        super::prometheus::render(&self.status(now))
    }
}

fn partner_mut<'a>(
    partners: &'a mut HashMap<String, PartnerState>,
    partner: &str,
) -> &'a mut PartnerState {
    // Look up by `&str` first: the id is allocated once, not per call.
    if !partners.contains_key(partner) {
        partners.insert(partner.to_string(), PartnerState::default());
    }
    partners.get_mut(partner).expect("inserted above")
}

fn entity_mut<'a>(
    entities: &'a mut HashMap<String, EntityState>,
    entity: &str,
) -> &'a mut EntityState {
    if !entities.contains_key(entity) {
        entities.insert(entity.to_string(), EntityState::default());
    }
    entities.get_mut(entity).expect("inserted above")
}

fn kind_index(kind: Kind) -> usize {
    Kind::ALL
        .iter()
        .position(|&k| k == kind)
        .expect("Kind::ALL lists every kind")
}

/// The throughput slot for `now`, reset when it still holds an older interval; `None` when
/// `now` is older than what the slot already holds (a late sample outside the window).
fn bucket_mut(
    ring: &mut Vec<Bucket>,
    len: usize,
    width: i64,
    now: Timestamp,
) -> Option<&mut Bucket> {
    if ring.len() != len {
        ring.resize(
            len,
            Bucket {
                index: i64::MIN,
                ..Bucket::default()
            },
        );
    }
    let index = now.as_second().div_euclid(width);
    let b = &mut ring[index.rem_euclid(len as i64) as usize];
    if b.index < index {
        *b = Bucket {
            index,
            rows: 0,
            hits: 0,
        };
    }
    (b.index == index).then_some(b)
}

/// Notifications of one entity (see [`Metrics::notifications_by_entity`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EntityNotifications {
    /// The entity id.
    pub entity: String,
    /// Notifications queued for it.
    pub queued: u64,
    /// Notifications it acknowledged.
    pub delivered: u64,
}

/// One entity as the operator's drill-down shows it (`/entity/<id>`,
/// `/api/entity/<id>.json`): the hub's figures and what its subscriber reported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EntityDetail {
    /// When the figures were taken, Unix seconds.
    pub time: i64,
    /// The entity id.
    pub entity: String,
    /// Its roles (`partner+subscriber`), or `unregistered`.
    pub roles: String,
    /// Its NIS2 sector, `none` when not given.
    pub sector: String,
    /// Open connections.
    pub connections: u32,
    /// When it was last seen, Unix seconds.
    pub last_seen: Option<i64>,
    /// Notifications queued for it since the hub started.
    pub queued: u64,
    /// Notifications it acknowledged.
    pub delivered: u64,
    /// Notifications sent and not yet acknowledged.
    pub unacknowledged: u64,
    /// When it last acknowledged one, Unix seconds.
    pub last_delivery: Option<i64>,
    /// When its subscriber last reported its delivery targets, Unix seconds.
    pub reported_at: Option<i64>,
    /// Its delivery targets as last reported.
    pub targets: Vec<crate::notify::TargetReport>,
}

/// A delivery target an entity's subscriber reports failing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FailingTarget {
    /// The entity id.
    pub entity: String,
    /// The target.
    pub target: String,
    /// Failed attempts since its last success.
    pub failing: u64,
    /// Records waiting for it.
    pub pending: u64,
    /// The last failure's reason.
    pub last_error: String,
}

/// Every figure of a [`Metrics`] registry at one moment. Serialised as `/api/status.json`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Status {
    /// When the figures were taken, Unix seconds.
    pub time: i64,
    /// The snapshot being served, once the hub has loaded one.
    pub snapshot: Option<SnapshotStatus>,
    /// Telemetry rows by partner and kind, sorted.
    pub rows: Vec<PartnerKindCount>,
    /// Hits by partner and indicator kind, sorted.
    pub hits: Vec<PartnerKindCount>,
    /// Notifications queued and delivered by entity class, sorted.
    pub notifications: Vec<ClassCount>,
    /// Delivery latency.
    pub latency: LatencyStatus,
    /// Connected and lagging subscribers.
    pub subscribers: SubscriberStatus,
    /// Bytes the notification logs take on disk.
    pub log_disk_bytes: u64,
    /// Errors recorded since start.
    pub errors_total: u64,
    /// The most recent errors, newest first.
    pub errors: Vec<RecentError>,
    /// Rows and hits over the last minutes.
    pub throughput: Throughput,
    /// How many registered entities were reachable in the reach window.
    pub reach: Reach,
    /// What each partner brought against what it received, sorted by partner.
    pub reciprocity: Vec<Reciprocity>,
    /// Delivery targets that entities' subscribers report failing.
    pub failing_targets: Vec<FailingTarget>,
}

/// The snapshot being served.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SnapshotStatus {
    /// Set version.
    pub version: u64,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Seconds since creation.
    pub age_seconds: i64,
    /// Number of indicators.
    pub indicators: u64,
    /// Whether it is signed.
    pub signed: bool,
    /// Indicators by kind name.
    pub by_kind: Vec<(String, u64)>,
    /// Indicators by TLP label.
    pub by_tlp: Vec<(String, u64)>,
}

/// A count by partner and kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PartnerKindCount {
    /// The partner's entity id.
    pub partner: String,
    /// Telemetry kind (rows) or indicator kind name (hits).
    pub kind: String,
    /// The count.
    pub count: u64,
}

/// Notifications of one entity class.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClassCount {
    /// The roles, joined by `+` (`partner+subscriber`); `unregistered` for entities the
    /// registry does not name.
    pub roles: String,
    /// The NIS2 sector, `none` when not given.
    pub sector: String,
    /// Notifications queued.
    pub queued: u64,
    /// Notifications delivered (acknowledged).
    pub delivered: u64,
}

/// The delivery-latency histogram and its estimated quantiles.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LatencyStatus {
    /// Bucket upper bounds in seconds ([`LATENCY_BUCKETS`]).
    pub bounds: Vec<f64>,
    /// Deliveries per bucket (not cumulative), one more than `bounds` (the `+Inf` bucket).
    pub counts: Vec<u64>,
    /// Sum of all latencies, seconds.
    pub sum_seconds: f64,
    /// Number of deliveries.
    pub count: u64,
    /// Estimated median, seconds; `None` before the first delivery.
    pub p50_seconds: Option<f64>,
    /// Estimated 99th percentile, seconds.
    pub p99_seconds: Option<f64>,
}

/// Connected and lagging subscribers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SubscriberStatus {
    /// Entities with at least one open connection.
    pub connected: u64,
    /// Their ids, sorted.
    pub connected_ids: Vec<String>,
    /// The backlog above which a subscriber is lagging.
    pub lag_threshold: u64,
    /// Lagging subscribers, largest backlog first.
    pub lagging: Vec<Backlog>,
}

/// A subscriber's unacknowledged backlog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Backlog {
    /// The entity id.
    pub entity: String,
    /// Notifications queued but not acknowledged.
    pub backlog: u64,
}

/// One recorded error.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecentError {
    /// When, Unix seconds.
    pub time: i64,
    /// What happened.
    pub message: String,
}

/// Rows and hits per bucket over the last minutes, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Throughput {
    /// Width of a bucket in seconds.
    pub bucket_seconds: u64,
    /// Start of the first bucket, Unix seconds.
    pub start: i64,
    /// Rows per bucket.
    pub rows: Vec<u64>,
    /// Hits per bucket.
    pub hits: Vec<u64>,
    /// Rows in the whole window.
    pub rows_total: u64,
    /// Hits in the whole window.
    pub hits_total: u64,
}

impl Throughput {
    /// Length of the window in seconds.
    pub fn window_seconds(&self) -> u64 {
        self.bucket_seconds * self.rows.len() as u64
    }
}

/// Reach: registered entities reachable (connected, or seen) within the window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reach {
    /// The window, seconds.
    pub window_seconds: u64,
    /// Registered entities.
    pub registered: u64,
    /// Of those, reachable in the window.
    pub reachable: u64,
    /// By role; an entity with several roles counts under each.
    pub by_role: Vec<ReachClass>,
    /// By sector (`none` when the registry gives none).
    pub by_sector: Vec<ReachClass>,
}

/// Reach of one role or sector.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReachClass {
    /// Role or sector name.
    pub name: String,
    /// Registered entities in the class.
    pub registered: u64,
    /// Of those, reachable.
    pub reachable: u64,
}

/// What one partner brought to the network against what it received.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Reciprocity {
    /// The partner's entity id.
    pub partner: String,
    /// Telemetry rows it streamed.
    pub rows: u64,
    /// Sightings it sent back.
    pub sightings: u64,
    /// Hits its rows produced.
    pub hits: u64,
    /// Notifications delivered to it.
    pub notifications: u64,
    /// Notifications received per contribution (row or sighting); `None` before it brought
    /// anything.
    pub ratio: Option<f64>,
}

impl Reciprocity {
    fn new(partner: &str) -> Self {
        Reciprocity {
            partner: partner.to_string(),
            rows: 0,
            sightings: 0,
            hits: 0,
            notifications: 0,
            ratio: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile(0.5), None);
        // 100 deliveries between 10 and 25 ms.
        for _ in 0..100 {
            h.observe(Duration::from_millis(20));
        }
        let p50 = h.quantile(0.5).unwrap();
        assert!((p50 - 0.0175).abs() < 1e-9, "{p50}");
        // One very slow delivery: p99 still in the 10–25 ms bucket, p100 capped at 30 s.
        h.observe(Duration::from_secs(60));
        assert!(h.quantile(0.99).unwrap() <= 0.025);
        assert_eq!(h.quantile(1.0), Some(30.0));
        assert_eq!(h.counts[LATENCY_BUCKETS.len()], 1);
        // Exactly on a bound belongs to that bucket (`le`).
        let mut h = Histogram::default();
        h.observe(Duration::from_millis(1));
        assert_eq!(h.counts[0], 1);
    }

    #[test]
    fn throughput_ring_forgets_old_buckets() {
        let m = Metrics::new(MetricsConfig {
            throughput_bucket: Duration::from_secs(10),
            throughput_buckets: 3,
            ..MetricsConfig::default()
        });
        m.rows("p", "zeek", 5, t(1000)); // bucket 100
        m.rows("p", "zeek", 7, t(1019)); // bucket 101
        m.hits("p", Kind::Domain, 1, t(1019));
        let s = m.status(t(1025)); // buckets 100..=102
        assert_eq!(s.throughput.rows, vec![5, 7, 0]);
        assert_eq!(s.throughput.hits, vec![0, 1, 0]);
        assert_eq!(s.throughput.start, 1000);
        assert_eq!(s.throughput.window_seconds(), 30);
        // Bucket 103 reuses bucket 100's slot.
        m.rows("p", "zeek", 1, t(1030));
        let s = m.status(t(1030));
        assert_eq!(s.throughput.rows, vec![7, 0, 1]);
        assert_eq!(s.throughput.rows_total, 8);
        // A late sample for bucket 100 is outside the window now: dropped, but still counted.
        m.rows("p", "zeek", 100, t(1001));
        assert_eq!(m.status(t(1030)).throughput.rows_total, 8);
        assert_eq!(m.status(t(1030)).rows[0].count, 113);
        // Much later everything has aged out.
        assert_eq!(m.status(t(5000)).throughput.rows_total, 0);
    }

    #[test]
    fn reach_counts_connected_and_recently_seen_registered_entities() {
        let m = Metrics::default();
        m.set_entities([
            EntityInfo::new("a", ["partner", "subscriber"], Some("energy")),
            EntityInfo::new("b", ["subscriber"], Some("energy")),
            EntityInfo::new("c", ["subscriber"], None),
            EntityInfo::new("d", Vec::<String>::new(), Some("health")),
        ]);
        let day = 86_400;
        m.connected("a", t(0)); // still connected a week later
        m.seen("b", t(6 * day)); // seen within 24 h of t(7d) - 1 h
        m.connected("c", t(0));
        m.disconnected("c", t(day)); // gone for 6 days
        m.connected("stranger", t(7 * day));
        let s = m.status(t(7 * day - 3600));
        assert_eq!((s.reach.registered, s.reach.reachable), (4, 2));
        let role = |n: &str| {
            let r = s.reach.by_role.iter().find(|r| r.name == n).unwrap();
            (r.registered, r.reachable)
        };
        assert_eq!(role("subscriber"), (3, 2));
        assert_eq!(role("partner"), (1, 1));
        assert_eq!(role("none"), (1, 0));
        let sector = |n: &str| {
            let r = s.reach.by_sector.iter().find(|r| r.name == n).unwrap();
            (r.registered, r.reachable)
        };
        assert_eq!(sector("energy"), (2, 2));
        assert_eq!(sector("none"), (1, 0));
        assert_eq!(sector("health"), (1, 0));
        // The unregistered stranger is connected but not part of reach.
        assert_eq!(s.subscribers.connected_ids, ["a", "stranger"]);
        // A reload that drops `b` shrinks the registered count.
        m.set_entities([EntityInfo::new("a", ["partner"], Some("energy"))]);
        let s = m.status(t(7 * day - 3600));
        assert_eq!((s.reach.registered, s.reach.reachable), (1, 1));
    }

    #[test]
    fn classes_lagging_reciprocity_and_errors() {
        let m = Metrics::new(MetricsConfig {
            lag_threshold: 10,
            recent_errors: 2,
            ..MetricsConfig::default()
        });
        m.set_entities([
            EntityInfo::new("msp", ["partner", "subscriber"], Some("digital")),
            EntityInfo::new("quiet-msp", ["partner"], None),
            EntityInfo::new("h1", ["subscriber"], Some("health")),
            EntityInfo::new("h2", ["subscriber"], Some("health")),
        ]);
        m.rows("msp", "zeek", 900, t(0));
        m.sightings("msp", 100);
        m.hits("msp", Kind::Ipv4, 4, t(0));
        m.queued("msp", 5);
        m.queued("h1", 3);
        m.queued("h2", 4);
        m.queued("ghost", 1);
        for _ in 0..5 {
            m.delivered("msp", Duration::from_millis(3));
        }
        m.delivered("h1", Duration::from_millis(3));
        m.backlog("h2", 11);
        m.backlog("h1", 10);
        m.error(t(1), "first");
        m.error(t(2), "second");
        m.error(t(3), &"é".repeat(1000));
        let s = m.status(t(10));
        let classes: Vec<_> = s
            .notifications
            .iter()
            .map(|c| (c.roles.as_str(), c.sector.as_str(), c.queued, c.delivered))
            .collect();
        assert_eq!(
            classes,
            [
                ("partner+subscriber", "digital", 5, 5),
                ("subscriber", "health", 7, 1),
                ("unregistered", "none", 1, 0),
            ]
        );
        assert_eq!(s.subscribers.lagging.len(), 1);
        assert_eq!(s.subscribers.lagging[0].entity, "h2");
        let r: Vec<_> = s
            .reciprocity
            .iter()
            .map(|r| {
                (
                    r.partner.as_str(),
                    r.rows,
                    r.sightings,
                    r.notifications,
                    r.ratio,
                )
            })
            .collect();
        assert_eq!(
            r,
            [
                ("msp", 900, 100, 5, Some(0.005)),
                ("quiet-msp", 0, 0, 0, None)
            ]
        );
        assert_eq!(s.errors_total, 3);
        assert_eq!(s.errors.len(), 2);
        assert_eq!(s.errors[1].message, "second");
        assert!(s.errors[0].message.len() <= MAX_ERROR_MESSAGE);
        assert!(s.errors[0].message.starts_with("éé"));
    }
}
