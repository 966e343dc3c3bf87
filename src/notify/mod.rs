//! What an entity is told, and how it reaches the people and tools that act on it.
//!
//! The hub sends a subscriber one notification per hit (at least once, with an id). Most
//! NIS2 entities have no SOC and will not read JSON lines, and a SOC wants one ticket per
//! incident, not a thousand. This module turns the hub's notifications into [`Alert`]s — one
//! per (entity, indicator, asset, UTC day), with a count and first/last seen, sent at once for
//! the first sighting and updated (a new `revision` of the same `id`) as more come — and
//! renders them for people (e-mail text) and machines (JSON). It is sans-IO: the subscriber
//! feeds notifications and the clock in, and takes alerts out to its delivery targets
//! ([`spool`], and with feature `net` the adapters in `deliver` and the subscriber's `outbox`).

pub mod aggregate;
#[cfg(feature = "net")]
pub mod config;
#[cfg(feature = "net")]
pub mod deliver;
#[cfg(feature = "net")]
pub mod outbox;
pub mod render;
#[cfg(feature = "net")]
pub mod smtp;
pub mod spool;
#[cfg(feature = "net")]
pub mod stix;
pub mod summary;
pub mod syslog;

use serde::{Deserialize, Serialize};

use crate::hub::notification::{Notification, NotificationKind};
use crate::indicator::{Kind, Tlp};

pub use aggregate::Aggregator;

/// How one delivery target of a subscriber is doing: what `cwn subscribe --summary` prints
/// and the hub's status page shows per entity.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetReport {
    /// The target (`webhook:URL`, `smtp:HOST:PORT`, …).
    pub target: String,
    /// Records it accepted since the subscriber started.
    pub delivered: u64,
    /// Alerts held back from it by the TLP rule for outside targets.
    pub withheld: u64,
    /// Records in the spool it has not accepted yet.
    pub pending: u64,
    /// Failed attempts since its last success (0: healthy).
    pub failing: u64,
    /// Unix milliseconds of the first failure of the current run of failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since_ms: Option<u64>,
    /// The last failure's reason.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_error: String,
    /// Unix milliseconds of its last accepted delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ok_ms: Option<u64>,
}

/// One thing an entity is told: see the [module docs](self). Its JSON form is the webhook
/// body, the STIX sighting's source and the e-mail's content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// Stable for the aggregate (entity, indicator, asset, UTC day); with `revision`, what a
    /// receiver de-duplicates by: a redelivery has the same id and revision, an update the
    /// same id and a higher revision.
    pub id: String,
    /// 1 for the first sighting, one more for each update.
    pub revision: u32,
    /// `hit`, or `sighting` / `test` for the hub's other notifications (passed on as they come).
    pub notification: String,
    /// The TLP label of everything the alert says (`TLP:AMBER`).
    pub tlp: String,
    /// What the label allows the recipient to do with it.
    pub tlp_meaning: String,
    /// The entity told (its registry id).
    pub entity: String,
    /// The indicator's normalised value.
    pub indicator: String,
    /// The indicator's id at its source.
    pub indicator_id: String,
    /// The indicator's kind (`domain`, `ipv4`, `sha256`, …).
    pub kind: String,
    /// The telemetry value that matched, as seen.
    pub matched_value: String,
    /// The telemetry field it was seen in.
    pub field: String,
    /// Where in the entity's own estate: its addresses, host names or domains involved.
    pub entity_assets: Vec<Asset>,
    /// First event time in the aggregate (RFC 3339).
    pub first_seen: String,
    /// Last event time in the aggregate (RFC 3339).
    pub last_seen: String,
    /// Sightings in the aggregate so far.
    pub count: u64,
    /// The UTC day of the aggregate (`2026-12-07`).
    pub day: String,
    /// The partner whose telemetry showed it (empty when the registry hides partners).
    pub reported_by: String,
    /// The indicator's context, as far as its TLP and attribution rules allow.
    pub context: Context,
    /// What to do, for this kind of indicator.
    pub recommended_action: String,
    /// Found by a retro-hunt: the indicator was published after the telemetry.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retro: bool,
    /// The event's id in the partner's records (Zeek `uid`), when the first sighting had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// One observable of the entity's own estate in a sighting.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Asset {
    /// The telemetry field it was read from (`client`, `id.orig_h`).
    pub field: String,
    /// The value (an address, host name or domain of the entity).
    pub value: String,
}

/// An indicator's context in an alert.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    /// The feed or event it came from (empty when the source must not be named).
    pub source: String,
    /// Its tags (threat names, galaxies, categories).
    pub tags: Vec<String>,
}

/// The hit record of a notification's payload, as far as an alert uses it (the hub writes it:
/// [`crate::route::batch::NotificationBody`]).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct HitRecord {
    pub(crate) indicator_id: String,
    pub(crate) kind: String,
    pub(crate) indicator: String,
    pub(crate) field: String,
    pub(crate) value: String,
    pub(crate) event_time: Option<String>,
    pub(crate) tlp: String,
    pub(crate) source: String,
    pub(crate) tags: Vec<String>,
    pub(crate) partner: String,
    pub(crate) victim: Vec<Asset>,
    pub(crate) uid: Option<String>,
    pub(crate) retro: bool,
}

/// What a TLP label lets the recipient do, in FIRST's words (TLP 2.0).
pub fn tlp_meaning(tlp: Tlp) -> &'static str {
    match tlp {
        Tlp::Clear => "Recipients may share this with anyone; there is no limit on disclosure.",
        Tlp::Green => {
            "Limited disclosure: recipients may share this within their community, not via \
             publicly accessible channels."
        }
        Tlp::Amber => {
            "Limited disclosure: recipients may share this only within their organisation and \
             with its clients, on a need-to-know basis."
        }
        Tlp::AmberStrict => {
            "Limited disclosure: recipients may share this only within their own organisation, \
             on a need-to-know basis."
        }
        Tlp::Red => "For the eyes and ears of individual recipients only; no further disclosure.",
    }
}

/// The TLP of a label as the hub writes it (`AMBER`, `TLP:AMBER`, `amber+strict`); the most
/// restrictive (RED) for anything else, so an unknown label never widens disclosure.
pub fn tlp_of(label: &str) -> Tlp {
    let l = label.trim();
    let l = l
        .strip_prefix("TLP:")
        .or_else(|| l.strip_prefix("tlp:"))
        .unwrap_or(l);
    Tlp::from_level(l).unwrap_or(Tlp::Red)
}

/// The recommended action for an indicator of `kind` seen at assets `assets`: a short text a
/// person without a SOC can follow. `{indicator}` and `{assets}` in a template are replaced.
pub fn default_action(kind: &str) -> &'static str {
    match kind.parse::<Kind>() {
        Ok(Kind::Ipv4 | Kind::Ipv6 | Kind::Cidr | Kind::IpPort) => {
            "Your system(s) {assets} exchanged traffic with {indicator}, an address known to \
             be used in attacks. Block it at the firewall, find which software on those \
             systems made the connection, and have them checked for compromise."
        }
        Ok(Kind::Domain | Kind::Hostname) => {
            "Your system(s) {assets} looked up or visited {indicator}, a domain known to be \
             used in attacks. Block it in your DNS resolver or web proxy, find which software \
             made the request, and have those systems checked for compromise."
        }
        Ok(Kind::Url | Kind::Uri | Kind::UrlSubstring | Kind::UserAgent) => {
            "Your system(s) {assets} requested {indicator}, known to be used in attacks. Block \
             it in your web proxy, find who or what made the request, and have those systems \
             checked for malware."
        }
        Ok(Kind::Email) => {
            "Mail to or from {indicator}, an address known to be used in phishing, was seen at \
             {assets}. Search your mail system for these messages, warn the recipients not to \
             open links or attachments, and block the sender."
        }
        Ok(Kind::Md5 | Kind::Sha1 | Kind::Sha256 | Kind::Sha512) => {
            "A file known to be malicious ({indicator}) was seen at {assets}. Isolate the \
             system(s) from the network, remove the file, and have them checked for \
             compromise before reconnecting."
        }
        Ok(Kind::Ja3 | Kind::Ja3s | Kind::Ja4) => {
            "Software on your system(s) {assets} showed a fingerprint ({indicator}) known from \
             attack tools. Identify the software and have those systems checked for \
             compromise."
        }
        Err(_) => {
            "Something known to be used in attacks ({indicator}) was seen at {assets}. Have \
             the systems involved checked for compromise."
        }
    }
}

/// Fills an action template.
pub(crate) fn fill_action(template: &str, indicator: &str, assets: &[Asset]) -> String {
    let assets = if assets.is_empty() {
        "(not named)".to_string()
    } else {
        assets
            .iter()
            .map(|a| a.value.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    template
        .replace("{indicator}", indicator)
        .replace("{assets}", &assets)
}

/// The notification kind's name in an alert.
pub(crate) fn kind_name(k: NotificationKind) -> &'static str {
    match k {
        NotificationKind::Hit => "hit",
        NotificationKind::Sighting => "sighting",
        NotificationKind::Test => "test",
    }
}

/// A notification that is not a hit (a sighting summary, a test) as an alert of its own: not
/// aggregated, its id the hub's.
pub(crate) fn passed_on(entity: &str, n: &Notification) -> Alert {
    let created = jiff::Timestamp::from_millisecond(n.created_at_ms as i64)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let day = created.to_zoned(jiff::tz::TimeZone::UTC).date().to_string();
    let text = String::from_utf8_lossy(&n.payload).into_owned();
    Alert {
        id: n.id.to_string(),
        revision: 1,
        notification: kind_name(n.kind).into(),
        tlp: format!("TLP:{}", n.tlp.name()),
        tlp_meaning: tlp_meaning(n.tlp).into(),
        entity: entity.into(),
        indicator: String::new(),
        indicator_id: String::new(),
        kind: String::new(),
        matched_value: String::new(),
        field: String::new(),
        entity_assets: Vec::new(),
        first_seen: created.to_string(),
        last_seen: created.to_string(),
        count: 1,
        day,
        reported_by: String::new(),
        context: Context {
            source: text,
            tags: Vec::new(),
        },
        recommended_action: match n.kind {
            NotificationKind::Test => "None: this tests the path from the hub to you.".into(),
            _ => "See the details; no action is needed at your systems.".into(),
        },
        retro: false,
        uid: None,
    }
}
