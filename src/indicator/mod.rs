//! The indicator model: what a threat indicator is once it has been read and normalised.
//!
//! Every ingest parser (MISP, STIX, plain lists) produces [`Indicator`]s; every later stage
//! (index, matcher, routing) consumes them. This module owns the vocabulary — [`Kind`], [`Tlp`],
//! [`Validity`] — and the normalisation functions in [`normalize`] that indicators and telemetry
//! share. It knows nothing about files or formats.
//!
//! Main types:
//! - [`Indicator`]: one matchable value with its id, source, tags, TLP and validity window;
//! - [`IndicatorSet`]: indicators in ingest order, de-duplicated, each with an [`IndicatorId`];
//! - [`Kind`]: what a value is and so how it matches;
//! - [`Tlp`]: the TLP 2.0 label, ordered from least to most restrictive.

pub mod normalize;

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Ordinal of an indicator inside one [`IndicatorSet`] (and later inside one compiled index).
///
/// A `u32` keeps per-hit and per-bitmap costs low; 4 billion indicators is far beyond any feed.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct IndicatorId(u32);

impl IndicatorId {
    /// The id with the given ordinal.
    pub const fn new(ordinal: u32) -> Self {
        Self(ordinal)
    }

    /// The ordinal as a `u32`.
    pub const fn as_u32(self) -> u32 {
        self.0
    }

    /// The ordinal as a `usize`, for indexing.
    pub const fn as_usize(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for IndicatorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What an indicator value is, and therefore which telemetry it is compared with and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// One IPv4 address, exact.
    #[serde(rename = "ipv4")]
    Ipv4,
    /// One IPv6 address, exact (IPv4-mapped addresses are stored as [`Kind::Ipv4`]).
    #[serde(rename = "ipv6")]
    Ipv6,
    /// An IPv4 or IPv6 network in CIDR notation, host bits cleared; covers every address in it.
    #[serde(rename = "cidr")]
    Cidr,
    /// An address together with a port (`198.51.100.23:8443`, `[2001:db8::1]:443`); both must
    /// appear in one event.
    #[serde(rename = "ip:port")]
    IpPort,
    /// A DNS domain: matches itself and every subdomain on a label boundary.
    #[serde(rename = "domain")]
    Domain,
    /// A host name: matches exactly that name.
    #[serde(rename = "hostname")]
    Hostname,
    /// A canonical URL (FORMATS.md §6.4), compared scheme-insensitively.
    #[serde(rename = "url")]
    Url,
    /// A fragment that may occur anywhere in a URL.
    #[serde(rename = "url-substring")]
    UrlSubstring,
    /// A request path (`/gate.php`), found as a substring of URLs.
    #[serde(rename = "uri")]
    Uri,
    /// A User-Agent string, found as a substring of User-Agent fields.
    #[serde(rename = "user-agent")]
    UserAgent,
    /// MD5 digest, 32 lower-case hex digits.
    #[serde(rename = "md5")]
    Md5,
    /// SHA-1 digest, 40 lower-case hex digits.
    #[serde(rename = "sha1")]
    Sha1,
    /// SHA-256 digest, 64 lower-case hex digits.
    #[serde(rename = "sha256")]
    Sha256,
    /// SHA-512 digest, 128 lower-case hex digits.
    #[serde(rename = "sha512")]
    Sha512,
    /// An e-mail address, lower-cased.
    #[serde(rename = "email")]
    Email,
    /// JA3 TLS client fingerprint (MD5, 32 hex digits).
    #[serde(rename = "ja3")]
    Ja3,
    /// JA3S TLS server fingerprint (MD5, 32 hex digits).
    #[serde(rename = "ja3s")]
    Ja3s,
    /// JA4 TLS client fingerprint (`t13d1516h2_8daaf6152771_e5627efa2ab1`).
    #[serde(rename = "ja4")]
    Ja4,
}

impl Kind {
    /// Every kind, in a stable order (used for reports and per-kind tables).
    pub const ALL: [Kind; 18] = [
        Kind::Ipv4,
        Kind::Ipv6,
        Kind::Cidr,
        Kind::IpPort,
        Kind::Domain,
        Kind::Hostname,
        Kind::Url,
        Kind::UrlSubstring,
        Kind::Uri,
        Kind::UserAgent,
        Kind::Md5,
        Kind::Sha1,
        Kind::Sha256,
        Kind::Sha512,
        Kind::Email,
        Kind::Ja3,
        Kind::Ja3s,
        Kind::Ja4,
    ];

    /// The name used in files, on the command line and in reports.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Ipv4 => "ipv4",
            Kind::Ipv6 => "ipv6",
            Kind::Cidr => "cidr",
            Kind::IpPort => "ip:port",
            Kind::Domain => "domain",
            Kind::Hostname => "hostname",
            Kind::Url => "url",
            Kind::UrlSubstring => "url-substring",
            Kind::Uri => "uri",
            Kind::UserAgent => "user-agent",
            Kind::Md5 => "md5",
            Kind::Sha1 => "sha1",
            Kind::Sha256 => "sha256",
            Kind::Sha512 => "sha512",
            Kind::Email => "email",
            Kind::Ja3 => "ja3",
            Kind::Ja3s => "ja3s",
            Kind::Ja4 => "ja4",
        }
    }

    /// The MISP attribute types that correspond to this kind, for warninglist
    /// `matching_attributes` filters.
    pub const fn misp_types(self) -> &'static [&'static str] {
        match self {
            Kind::Ipv4 | Kind::Ipv6 | Kind::Cidr => &["ip-src", "ip-dst", "ip"],
            Kind::IpPort => &["ip-src|port", "ip-dst|port", "ip-src", "ip-dst"],
            Kind::Domain => &["domain", "hostname", "domain|ip"],
            Kind::Hostname => &["hostname", "domain", "hostname|port"],
            Kind::Url | Kind::UrlSubstring => &["url", "uri", "link"],
            Kind::Uri => &["uri", "url"],
            Kind::UserAgent => &["user-agent"],
            Kind::Md5 => &[
                "md5",
                "filename|md5",
                "malware-sample",
                "x509-fingerprint-md5",
            ],
            Kind::Sha1 => &["sha1", "filename|sha1", "x509-fingerprint-sha1"],
            Kind::Sha256 => &["sha256", "filename|sha256", "x509-fingerprint-sha256"],
            Kind::Sha512 => &["sha512", "filename|sha512"],
            Kind::Email => &[
                "email",
                "email-src",
                "email-dst",
                "target-email",
                "whois-registrant-email",
            ],
            Kind::Ja3 => &["ja3-fingerprint-md5"],
            Kind::Ja3s => &["ja3s-fingerprint-md5"],
            Kind::Ja4 => &["ja4-fingerprint"],
        }
    }

    /// Whether values of this kind are IP addresses or networks.
    pub const fn is_ip(self) -> bool {
        matches!(self, Kind::Ipv4 | Kind::Ipv6 | Kind::Cidr | Kind::IpPort)
    }

    /// Whether this kind matches as a substring of a telemetry field.
    pub const fn is_substring(self) -> bool {
        matches!(self, Kind::UrlSubstring | Kind::Uri | Kind::UserAgent)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Kind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == lower)
            .or(match lower.as_str() {
                "ip-port" | "ipport" => Some(Kind::IpPort),
                "useragent" | "user_agent" => Some(Kind::UserAgent),
                "url_substring" => Some(Kind::UrlSubstring),
                _ => None,
            })
            .ok_or_else(|| format!("unknown indicator kind `{s}`"))
    }
}

/// Traffic Light Protocol 2.0 label, ordered from least (`Clear`) to most (`Red`) restrictive.
///
/// "Most restrictive" of several labels is their maximum (FORMATS.md §4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Tlp {
    /// TLP:CLEAR (TLP 1.0 WHITE): no disclosure limit.
    #[serde(rename = "CLEAR")]
    Clear,
    /// TLP:GREEN: the recipient's community.
    #[serde(rename = "GREEN")]
    Green,
    /// TLP:AMBER: the recipient's organisation and its clients.
    #[serde(rename = "AMBER")]
    Amber,
    /// TLP:AMBER+STRICT: the recipient's organisation only.
    #[serde(rename = "AMBER+STRICT")]
    AmberStrict,
    /// TLP:RED: the named recipients only.
    #[serde(rename = "RED")]
    Red,
}

impl Tlp {
    /// Every level, least restrictive first.
    pub const ALL: [Tlp; 5] = [
        Tlp::Clear,
        Tlp::Green,
        Tlp::Amber,
        Tlp::AmberStrict,
        Tlp::Red,
    ];

    /// The label as FIRST writes it, without the `TLP:` prefix (`AMBER+STRICT`).
    pub const fn name(self) -> &'static str {
        match self {
            Tlp::Clear => "CLEAR",
            Tlp::Green => "GREEN",
            Tlp::Amber => "AMBER",
            Tlp::AmberStrict => "AMBER+STRICT",
            Tlp::Red => "RED",
        }
    }

    /// Parses a MISP `tlp` taxonomy tag (`tlp:amber`, `TLP:WHITE`, …).
    ///
    /// Returns `None` for tags outside the taxonomy's colour values (`tlp:ex:chr`,
    /// `tlp:unclear`, other namespaces).
    pub fn from_misp_tag(tag: &str) -> Option<Tlp> {
        let tag = tag.trim();
        let (ns, value) = tag.split_once(':')?;
        if !ns.eq_ignore_ascii_case("tlp") {
            return None;
        }
        Self::from_level(value)
    }

    /// Parses a level as written after `TLP:` (`amber`, `AMBER+STRICT`, `white`).
    pub(crate) fn from_level(value: &str) -> Option<Tlp> {
        let v = value.trim().trim_matches('"').to_ascii_lowercase();
        match v.as_str() {
            "clear" | "white" => Some(Tlp::Clear),
            "green" => Some(Tlp::Green),
            "amber" => Some(Tlp::Amber),
            "amber+strict" | "amber-strict" | "amber_strict" => Some(Tlp::AmberStrict),
            "red" => Some(Tlp::Red),
            _ => None,
        }
    }
}

impl fmt::Display for Tlp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TLP:{}", self.name())
    }
}

impl FromStr for Tlp {
    type Err = String;

    /// Accepts `AMBER+STRICT`, `amber+strict`, `TLP:AMBER+STRICT`, `tlp:white`, …
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let level = match t.split_once(':') {
            Some((ns, rest)) if ns.eq_ignore_ascii_case("tlp") => rest,
            _ => t,
        };
        Tlp::from_level(level).ok_or_else(|| {
            format!("unknown TLP level `{s}` (expected CLEAR, GREEN, AMBER, AMBER+STRICT or RED)")
        })
    }
}

/// Where in an observed flow an IP indicator was seen (MISP `ip-src` / `ip-dst`, STIX
/// `src_ref` / `dst_ref`). Matching looks at both ends; the direction is context.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The indicator was the source of the traffic.
    Src,
    /// The indicator was the destination of the traffic.
    Dst,
}

/// The time window in which an indicator is meant to hit. Open ends are unbounded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Validity {
    /// First instant at which the indicator is valid (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<Timestamp>,
    /// Instant at which the indicator stops being valid (exclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<Timestamp>,
}

impl Validity {
    /// Whether `at` lies in `[valid_from, valid_until)`.
    pub fn contains(&self, at: Timestamp) -> bool {
        self.valid_from.is_none_or(|from| at >= from)
            && self.valid_until.is_none_or(|until| at < until)
    }
}

/// One matchable threat indicator, normalised.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Indicator {
    /// Stable id: the MISP attribute uuid, the STIX indicator id (with `#N` for the N-th
    /// disjunct of its pattern when there are several), or `<file name>:<canonical value>` for lists.
    pub id: String,
    /// What the value is.
    pub kind: Kind,
    /// The canonical value (FORMATS.md §6); for [`Kind::Url`] the `K1` form.
    pub value: String,
    /// Where it came from: MISP event uuid, STIX bundle id, or list name.
    pub source: Arc<str>,
    /// The organisation that produced it (MISP `Orgc.name`, STIX `created_by_ref`), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Arc<str>>,
    /// Tags, verbatim (MISP tags, STIX labels, the maltrail family and list folder).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Arc<str>>,
    /// Effective TLP (FORMATS.md §4.3).
    pub tlp: Tlp,
    /// `tlp:ex:chr`: the source must not be named in anything sent out.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_attribution: bool,
    /// Effective MISP distribution (0–4), where the source has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distribution: Option<u8>,
    /// The MISP sharing group (uuid or name) that narrows the audience, with distribution 4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sharing_group: Option<Arc<str>>,
    /// When the indicator is meant to hit.
    #[serde(flatten)]
    pub validity: Validity,
    /// MISP `first_seen`: an observation hint, not a validity bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<Timestamp>,
    /// MISP `last_seen`: an observation hint, not a validity bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Timestamp>,
    /// Confidence 0–100, where the source gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<u8>,
    /// Where in a flow an IP indicator was seen, where the source says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// A port the same event must show beside the value, for `ip:port`-like constraints on
    /// networks and host names (STIX `dst_port` with `dst_ref.value ISSUBSET '203.0.113.0/28'`).
    /// [`Kind::IpPort`] values carry their port in the value instead and leave this empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The value was written defanged (`hxxp`, `[.]`) in its source.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub defanged: bool,
}

/// What an indicator's source becomes where `tlp:ex:chr` forbids naming it.
pub const WITHHELD_SOURCE: &str = "tlp:ex:chr";

impl Indicator {
    /// The indicator as it may leave the publisher: for `tlp:ex:chr` (no attribution) the
    /// source (a MISP event uuid, a STIX bundle id) and the producing organisation are
    /// removed, so that no copy given to a partner names them.
    pub fn for_sharing(mut self) -> Self {
        if self.no_attribution {
            self.source = Arc::from(WITHHELD_SOURCE);
            self.origin = None;
        }
        self
    }

    /// A new indicator with the given identity and value and every optional field empty.
    pub fn new(
        id: impl Into<String>,
        kind: Kind,
        value: impl Into<String>,
        source: Arc<str>,
        tlp: Tlp,
    ) -> Self {
        Indicator {
            id: id.into(),
            kind,
            value: value.into(),
            source,
            origin: None,
            tags: Vec::new(),
            tlp,
            no_attribution: false,
            distribution: None,
            sharing_group: None,
            validity: Validity::default(),
            first_seen: None,
            last_seen: None,
            confidence: None,
            direction: None,
            port: None,
            defanged: false,
        }
    }
}

/// An ordered, de-duplicated collection of indicators.
///
/// Two indicators are duplicates when they share `(source, kind, value)`: the same feed saying
/// the same thing twice. The same value from different sources stays twice, because each
/// carries its own context, TLP and validity.
#[derive(Clone, Debug, Default)]
pub struct IndicatorSet {
    indicators: Vec<Indicator>,
    // De-duplication by a 64-bit hash of `(source, kind, value)` rather than the key itself:
    // at 1.8 M indicators a copy of every value would double the set's memory. A different
    // key on an occupied hash goes to `overflow`, so collisions never merge distinct values.
    seen: HashMap<u64, IndicatorId>,
    overflow: HashMap<(Arc<str>, Kind, String), IndicatorId>,
    hasher: std::hash::RandomState,
}

impl IndicatorSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an indicator; returns its id, or `Err` with the id of the indicator it duplicates.
    pub fn insert(&mut self, indicator: Indicator) -> Result<IndicatorId, IndicatorId> {
        use std::hash::BuildHasher;
        let h = self.hasher.hash_one((
            indicator.source.as_ref(),
            indicator.kind,
            indicator.value.as_str(),
        ));
        let id = IndicatorId::new(
            u32::try_from(self.indicators.len()).expect("more than u32::MAX indicators in one set"),
        );
        match self.seen.entry(h) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(id);
            }
            std::collections::hash_map::Entry::Occupied(o) => {
                let existing = *o.get();
                let other = &self.indicators[existing.as_usize()];
                if other.source == indicator.source
                    && other.kind == indicator.kind
                    && other.value == indicator.value
                {
                    return Err(existing);
                }
                let key = (
                    Arc::clone(&indicator.source),
                    indicator.kind,
                    indicator.value.clone(),
                );
                if let Some(&existing) = self.overflow.get(&key) {
                    return Err(existing);
                }
                self.overflow.insert(key, id);
            }
        }
        self.indicators.push(indicator);
        Ok(id)
    }

    /// Number of indicators.
    pub fn len(&self) -> usize {
        self.indicators.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.indicators.is_empty()
    }

    /// The indicator with this id.
    pub fn get(&self, id: IndicatorId) -> Option<&Indicator> {
        self.indicators.get(id.as_usize())
    }

    /// All indicators with their ids, in insertion order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (IndicatorId, &Indicator)> {
        self.indicators
            .iter()
            .enumerate()
            .map(|(i, ind)| (IndicatorId::new(i as u32), ind))
    }

    /// All indicators as a slice, in id order.
    pub fn as_slice(&self) -> &[Indicator] {
        &self.indicators
    }

    /// Number of indicators of each kind.
    pub fn count_by_kind(&self) -> std::collections::BTreeMap<Kind, usize> {
        let mut m = std::collections::BTreeMap::new();
        for ind in &self.indicators {
            *m.entry(ind.kind).or_insert(0) += 1;
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlp_order_is_least_to_most_restrictive() {
        assert!(Tlp::Clear < Tlp::Green);
        assert!(Tlp::Green < Tlp::Amber);
        assert!(Tlp::Amber < Tlp::AmberStrict);
        assert!(Tlp::AmberStrict < Tlp::Red);
        assert_eq!(Tlp::Amber.max(Tlp::Red), Tlp::Red);
    }

    #[test]
    fn tlp_parses_misp_tags_and_cli_words() {
        let cases = [
            ("tlp:white", Some(Tlp::Clear)),
            ("TLP:CLEAR", Some(Tlp::Clear)),
            ("tlp:green", Some(Tlp::Green)),
            ("tlp:amber", Some(Tlp::Amber)),
            ("tlp:amber+strict", Some(Tlp::AmberStrict)),
            (" tlp:red ", Some(Tlp::Red)),
            ("tlp:ex:chr", None),
            ("tlp:unclear", None),
            ("admiralty-scale:source-reliability=\"a\"", None),
        ];
        for (tag, want) in cases {
            assert_eq!(Tlp::from_misp_tag(tag), want, "{tag}");
        }
        assert_eq!("amber+strict".parse::<Tlp>(), Ok(Tlp::AmberStrict));
        assert_eq!("TLP:GREEN".parse::<Tlp>(), Ok(Tlp::Green));
        assert!("purple".parse::<Tlp>().is_err());
    }

    #[test]
    fn kind_names_round_trip() {
        for k in Kind::ALL {
            assert_eq!(k.name().parse::<Kind>(), Ok(k));
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.name()));
        }
    }

    #[test]
    fn validity_window_is_half_open() {
        let from: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
        let until: Timestamp = "2025-06-30T00:00:00Z".parse().unwrap();
        let v = Validity {
            valid_from: Some(from),
            valid_until: Some(until),
        };
        assert!(v.contains(from));
        assert!(!v.contains(until));
        assert!(!v.contains("2024-12-31T23:59:59Z".parse().unwrap()));
        assert!(Validity::default().contains(until));
    }

    #[test]
    fn set_drops_same_source_kind_value() {
        let src: Arc<str> = Arc::from("feed");
        let other: Arc<str> = Arc::from("other");
        let mut set = IndicatorSet::new();
        let a = set
            .insert(Indicator::new(
                "1",
                Kind::Domain,
                "example.com",
                src.clone(),
                Tlp::Green,
            ))
            .unwrap();
        assert_eq!(
            set.insert(Indicator::new(
                "2",
                Kind::Domain,
                "example.com",
                src,
                Tlp::Green
            )),
            Err(a)
        );
        assert!(
            set.insert(Indicator::new(
                "3",
                Kind::Domain,
                "example.com",
                other,
                Tlp::Green
            ))
            .is_ok()
        );
        assert!(
            set.insert(Indicator::new(
                "4",
                Kind::Hostname,
                "example.com",
                Arc::from("feed"),
                Tlp::Green
            ))
            .is_ok()
        );
        assert_eq!(set.len(), 3);
    }
}
