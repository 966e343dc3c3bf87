//! Synthetic MISP feeds (FORMATS.md §1): `manifest.json`, `hashes.csv` and one `<uuid>.json`
//! per event, written event by event so that memory holds one event at a time.
//!
//! The mix follows what national feeds look like: many small events and a few very large
//! ones; addresses (some IPv6, some `ip|port`), networks nested inside each other (a /16 with
//! /24s and hosts inside), registrable domains with host names and URLs below them, digests
//! (some in `file` objects), mail senders, JA3 fingerprints and User-Agents; TLP mostly GREEN
//! and AMBER; distribution 0–4 with sharing groups; `first_seen`/`last_seen` windows in the
//! past, around and after the reference time; and revocations (`deleted`, `to_ids: false`,
//! deleted objects, unpublished events). Every value normalises cleanly, so the feed ingests
//! with no rejects; [`FeedReport`] says exactly what `cwn ingest` will accept.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use jiff::Timestamp;
use serde::Serialize;

use super::md5::md5_hex;
use super::rng::{Rng, Zipf};
use super::values;
use crate::indicator::{Kind, Tlp};

/// What to generate.
#[derive(Clone, Debug)]
pub struct FeedOptions {
    /// Attributes to write, over all events (top-level and inside objects, revoked and
    /// context-only ones included).
    pub count: u64,
    /// Seed: equal options give byte-identical feeds.
    pub seed: u64,
    /// The reference time: events date from the two years before it, and `first_seen`/
    /// `last_seen` windows lie before, around or after it.
    pub now: Timestamp,
    /// The TLP `cwn ingest` gives unlabelled events (its `--default-tlp`), for the report.
    pub default_tlp: Tlp,
}

impl Default for FeedOptions {
    fn default() -> Self {
        FeedOptions {
            count: 1000,
            seed: 1,
            now: default_now(),
            default_tlp: Tlp::AmberStrict,
        }
    }
}

/// The default reference time of generated data, fixed so that output does not depend on
/// the clock: 2025-06-01T00:00:00Z.
pub fn default_now() -> Timestamp {
    Timestamp::from_second(1_748_736_000).expect("a valid constant timestamp")
}

/// What a generated feed holds, and what ingesting it yields.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FeedReport {
    /// Event files written.
    pub events: u64,
    /// Attributes written (top-level and in objects).
    pub attributes: u64,
    /// Objects written.
    pub objects: u64,
    /// Indicators `cwn ingest` accepts from the feed (a `domain|ip` attribute gives two).
    pub indicators: u64,
    /// Accepted indicators by kind.
    pub by_kind: BTreeMap<Kind, u64>,
    /// Accepted indicators by effective TLP.
    pub by_tlp: BTreeMap<Tlp, u64>,
    /// Attributes revoked: `deleted`, in a deleted object, or in an unpublished event.
    pub revoked: u64,
    /// Attributes that are context only: `to_ids: false`, or a type that is never armed
    /// (`filename`, `port`, `size-in-bytes` in objects).
    pub context_only: u64,
    /// Lines in `hashes.csv`.
    pub hash_lines: u64,
    /// Bytes written, all files together.
    pub bytes: u64,
}

/// An attribute type the generator writes, and what `cwn ingest` makes of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AttrType {
    IpDst,
    IpSrc,
    IpDstPort,
    IpSrcPort,
    Domain,
    Hostname,
    DomainIp,
    HostnamePort,
    Url,
    Md5,
    Sha1,
    Sha256,
    FilenameSha256,
    EmailSrc,
    Ja3,
    UserAgent,
    X509Sha1,
    /// Context-only types inside objects.
    Filename,
    Port,
    Size,
}

impl AttrType {
    fn misp(self) -> &'static str {
        match self {
            AttrType::IpDst => "ip-dst",
            AttrType::IpSrc => "ip-src",
            AttrType::IpDstPort => "ip-dst|port",
            AttrType::IpSrcPort => "ip-src|port",
            AttrType::Domain => "domain",
            AttrType::Hostname => "hostname",
            AttrType::DomainIp => "domain|ip",
            AttrType::HostnamePort => "hostname|port",
            AttrType::Url => "url",
            AttrType::Md5 => "md5",
            AttrType::Sha1 => "sha1",
            AttrType::Sha256 => "sha256",
            AttrType::FilenameSha256 => "filename|sha256",
            AttrType::EmailSrc => "email-src",
            AttrType::Ja3 => "ja3-fingerprint-md5",
            AttrType::UserAgent => "user-agent",
            AttrType::X509Sha1 => "x509-fingerprint-sha1",
            AttrType::Filename => "filename",
            AttrType::Port => "port",
            AttrType::Size => "size-in-bytes",
        }
    }

    fn category(self) -> &'static str {
        match self {
            AttrType::Md5
            | AttrType::Sha1
            | AttrType::Sha256
            | AttrType::FilenameSha256
            | AttrType::EmailSrc
            | AttrType::Filename
            | AttrType::Size => "Payload delivery",
            _ => "Network activity",
        }
    }

    fn is_context(self) -> bool {
        matches!(self, AttrType::Filename | AttrType::Port | AttrType::Size)
    }
}

/// What one regular attribute slot of an event becomes.
#[derive(Clone, Copy, Debug)]
enum Slot {
    Attr(AttrType),
    /// An IPv6 address in `ip-dst`/`ip-src`.
    V6(AttrType),
    /// A network block: a /16 (IPv6 /32) with /24s (/48s) and hosts inside, or one network.
    Netblock,
    FileObject,
    DomainIpObject,
    IpPortObject,
}

const SLOTS: &[(Slot, u32)] = &[
    (Slot::Attr(AttrType::IpDst), 160),
    (Slot::V6(AttrType::IpDst), 20),
    (Slot::Attr(AttrType::IpSrc), 70),
    (Slot::V6(AttrType::IpSrc), 10),
    (Slot::Attr(AttrType::IpDstPort), 40),
    (Slot::Attr(AttrType::IpSrcPort), 10),
    (Slot::Attr(AttrType::Domain), 130),
    (Slot::Attr(AttrType::Hostname), 80),
    (Slot::Attr(AttrType::DomainIp), 20),
    (Slot::Attr(AttrType::HostnamePort), 10),
    (Slot::Attr(AttrType::Url), 120),
    (Slot::Attr(AttrType::Md5), 70),
    (Slot::Attr(AttrType::Sha1), 40),
    (Slot::Attr(AttrType::Sha256), 90),
    (Slot::Attr(AttrType::FilenameSha256), 20),
    (Slot::Attr(AttrType::EmailSrc), 30),
    (Slot::Attr(AttrType::Ja3), 20),
    (Slot::Attr(AttrType::UserAgent), 10),
    (Slot::Attr(AttrType::X509Sha1), 10),
    (Slot::Netblock, 8),
    (Slot::FileObject, 30),
    (Slot::DomainIpObject, 10),
    (Slot::IpPortObject, 10),
];

struct Org {
    name: String,
    uuid: String,
}

struct SharingGroup {
    id: u32,
    name: &'static str,
    uuid: String,
}

const ORG_NAMES: &[&str] = &[
    "Synthetic-NCSC",
    "Synthetic-CERT-A",
    "Synthetic-ISAC-Energie",
    "Synthetic-ISAC-Zorg",
    "Synthetic-CSIRT-DSP",
    "Synthetic-Z-CERT",
    "Synthetic-SURFcert",
    "Synthetic-CERT-Bank",
    "Synthetic-MSP-North",
    "Synthetic-MSP-South",
    "Synthetic-OSINT-Collective",
    "Synthetic-Vendor-Intel",
];

const SHARING_GROUPS: &[&str] = &[
    "CWN-Energie",
    "CWN-Zorg",
    "CWN-Financieel",
    "CWN-Overheid",
    "CWN-Drinkwater",
];

const CAMPAIGNS: &[&str] = &[
    "Credential phishing campaign",
    "Ransomware infrastructure",
    "Banking trojan C2",
    "Infostealer distribution",
    "Malspam wave",
    "Exploitation of VPN appliances",
    "DDoS botnet",
    "Loader distribution via SEO poisoning",
    "Business e-mail compromise",
    "Web shell activity",
    "Cobalt Strike team servers",
    "Scanning for exposed RDP",
];

const SECTORS: &[&str] = &[
    "energy",
    "health care",
    "finance",
    "government",
    "education",
    "logistics",
    "telecom",
    "water",
    "manufacturing",
];

struct TagDef {
    name: &'static str,
    colour: &'static str,
}

const CONTEXT_TAGS: &[TagDef] = &[
    TagDef {
        name: "circl:incident-classification=\"phishing\"",
        colour: "#4a6b00",
    },
    TagDef {
        name: "circl:incident-classification=\"malware\"",
        colour: "#4a6b00",
    },
    TagDef {
        name: "kill-chain:Command and Control",
        colour: "#0088cc",
    },
    TagDef {
        name: "kill-chain:Delivery",
        colour: "#0088cc",
    },
    TagDef {
        name: "osint:source-type=\"blog-post\"",
        colour: "#00223b",
    },
    TagDef {
        name: "admiralty-scale:source-reliability=\"b\"",
        colour: "#1d4d00",
    },
    TagDef {
        name: "estimative-language:confidence-in-analytic-judgment=\"moderate\"",
        colour: "#004646",
    },
    TagDef {
        name: "workflow:state=\"complete\"",
        colour: "#1e7d00",
    },
    TagDef {
        name: "malware_classification:malware-category=\"Ransomware\"",
        colour: "#2c4f00",
    },
    TagDef {
        name: "ms-caro-malware:malware-type=\"Trojan\"",
        colour: "#2c5f00",
    },
    TagDef {
        name: "misp-galaxy:threat-actor=\"Synthetic Spider\"",
        colour: "#0088cc",
    },
    TagDef {
        name: "misp-galaxy:threat-actor=\"Synthetic Bear\"",
        colour: "#0088cc",
    },
    TagDef {
        name: "type:OSINT",
        colour: "#004577",
    },
];

/// TLP tags with their MISP colours; `tlp:white` is the TLP 1.0 spelling of CLEAR that older
/// feeds still use.
fn tlp_tag(t: Tlp, rng: &mut Rng) -> TagDef {
    match t {
        Tlp::Clear if rng.chance(0.3) => TagDef {
            name: "tlp:white",
            colour: "#ffffff",
        },
        Tlp::Clear => TagDef {
            name: "tlp:clear",
            colour: "#ffffff",
        },
        Tlp::Green => TagDef {
            name: "tlp:green",
            colour: "#33ff00",
        },
        Tlp::Amber => TagDef {
            name: "tlp:amber",
            colour: "#ffc000",
        },
        Tlp::AmberStrict => TagDef {
            name: "tlp:amber+strict",
            colour: "#ffc000",
        },
        Tlp::Red => TagDef {
            name: "tlp:red",
            colour: "#cc0033",
        },
    }
}

#[derive(Serialize)]
struct TagOut<'a> {
    name: &'a str,
    colour: &'a str,
    exportable: bool,
    local: bool,
}

#[derive(Serialize)]
struct ManifestTag<'a> {
    colour: &'a str,
    local: bool,
    name: &'a str,
    relationship_type: &'a str,
}

#[derive(Serialize)]
struct OrgOut<'a> {
    name: &'a str,
    uuid: &'a str,
}

#[derive(Serialize)]
struct SharingGroupOut<'a> {
    uuid: &'a str,
    name: &'a str,
    releasability: &'a str,
}

#[derive(Serialize)]
struct AttrOut {
    uuid: String,
    #[serde(rename = "type")]
    misp_type: &'static str,
    category: &'static str,
    value: String,
    to_ids: bool,
    comment: &'static str,
    timestamp: String,
    distribution: &'static str,
    sharing_group_id: &'static str,
    deleted: bool,
    disable_correlation: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    object_relation: Option<&'static str>,
    first_seen: Option<String>,
    last_seen: Option<String>,
    #[serde(rename = "Tag", skip_serializing_if = "Vec::is_empty")]
    tags: Vec<TagOut<'static>>,
}

#[derive(Serialize)]
struct ObjectOut {
    uuid: String,
    name: &'static str,
    #[serde(rename = "meta-category")]
    meta_category: &'static str,
    description: &'static str,
    template_uuid: &'static str,
    template_version: &'static str,
    timestamp: String,
    distribution: &'static str,
    sharing_group_id: &'static str,
    comment: &'static str,
    deleted: bool,
    #[serde(rename = "Attribute")]
    attributes: Vec<AttrOut>,
}

#[derive(Serialize)]
struct EventOut<'a> {
    uuid: &'a str,
    info: &'a str,
    date: &'a str,
    timestamp: String,
    publish_timestamp: String,
    published: bool,
    analysis: String,
    threat_level_id: String,
    distribution: String,
    sharing_group_id: String,
    #[serde(rename = "SharingGroup", skip_serializing_if = "Option::is_none")]
    sharing_group: Option<SharingGroupOut<'a>>,
    extends_uuid: &'a str,
    protected: bool,
    #[serde(rename = "Orgc")]
    orgc: OrgOut<'a>,
    #[serde(rename = "Tag")]
    tags: &'a [TagOut<'a>],
    #[serde(rename = "Attribute")]
    attributes: &'a [AttrOut],
    #[serde(rename = "Object", skip_serializing_if = "<[ObjectOut]>::is_empty")]
    objects: &'a [ObjectOut],
}

#[derive(Serialize)]
struct EventDoc<'a> {
    #[serde(rename = "Event")]
    event: EventOut<'a>,
}

#[derive(Serialize)]
struct ManifestEntry<'a> {
    #[serde(rename = "Orgc")]
    orgc: OrgOut<'a>,
    #[serde(rename = "Tag")]
    tags: Vec<ManifestTag<'a>>,
    info: &'a str,
    date: &'a str,
    analysis: u8,
    threat_level_id: u8,
    timestamp: i64,
}

/// A random UUID in version-4 layout.
pub fn uuid(rng: &mut Rng) -> String {
    let hi = rng.next_u64();
    let lo = rng.next_u64();
    let hi = (hi & 0xffff_ffff_ffff_0fff) | 0x0000_0000_0000_4000;
    let lo = (lo & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xffff,
        hi & 0xffff,
        lo >> 48,
        lo & 0xffff_ffff_ffff
    )
}

/// Effective TLP and what else decides acceptance, as the event gives it to its attributes.
struct EventCtx {
    tlp: Option<Tlp>,
    published: bool,
    created: i64,
    modified: i64,
    now: i64,
}

/// Collects an event's attributes while keeping the values unique within the event (a
/// repeated `(kind, value)` would be a duplicate, not an indicator) and tallying the report.
struct EventBuilder<'r> {
    rng: Rng,
    ctx: EventCtx,
    seen: HashSet<String>,
    attributes: Vec<AttrOut>,
    objects: Vec<ObjectOut>,
    /// Registrable domains of this event's campaign; hosts, URLs and senders hang below them.
    domains: Vec<String>,
    budget: u64,
    report: &'r mut FeedReport,
    default_tlp: Tlp,
}

/// The kind an accepted value of an attribute type gets, and the key that makes it unique.
fn kind_key(t: AttrType, value: &str) -> (Kind, String) {
    let kind = match t {
        AttrType::IpDst | AttrType::IpSrc => {
            if value.contains('/') {
                Kind::Cidr
            } else if value.contains(':') {
                Kind::Ipv6
            } else {
                Kind::Ipv4
            }
        }
        AttrType::IpDstPort | AttrType::IpSrcPort => Kind::IpPort,
        AttrType::Domain => Kind::Domain,
        AttrType::Hostname | AttrType::HostnamePort => Kind::Hostname,
        AttrType::Url => Kind::Url,
        AttrType::Md5 => Kind::Md5,
        AttrType::Sha1 | AttrType::X509Sha1 => Kind::Sha1,
        AttrType::Sha256 | AttrType::FilenameSha256 => Kind::Sha256,
        AttrType::EmailSrc => Kind::Email,
        AttrType::Ja3 => Kind::Ja3,
        AttrType::UserAgent => Kind::UserAgent,
        AttrType::DomainIp | AttrType::Filename | AttrType::Port | AttrType::Size => Kind::Domain,
    };
    let matched = match t {
        AttrType::HostnamePort => value.split_once('|').map_or(value, |(h, _)| h),
        AttrType::FilenameSha256 => value.rsplit_once('|').map_or(value, |(_, d)| d),
        _ => value,
    };
    let family = match kind {
        Kind::Ipv4 | Kind::Ipv6 | Kind::Cidr => "ip",
        k => k.name(),
    };
    (kind, format!("{family} {matched}"))
}

impl EventBuilder<'_> {
    fn fresh_domain(&mut self) -> String {
        loop {
            let d = values::domain(&mut self.rng);
            if !self.domains.contains(&d) {
                return d;
            }
        }
    }

    /// A registrable domain of the campaign (sometimes a new one).
    fn campaign_domain(&mut self) -> String {
        if self.domains.is_empty() || self.rng.chance(0.3) {
            let d = self.fresh_domain();
            self.domains.push(d.clone());
            d
        } else {
            self.rng.pick_ref(&self.domains).clone()
        }
    }

    fn ip_value(&mut self, v6: bool) -> String {
        if v6 {
            values::public_v6(&mut self.rng).to_string()
        } else {
            values::public_v4(&mut self.rng).to_string()
        }
    }

    fn port(&mut self) -> u16 {
        const PORTS: &[u16] = &[443, 8443, 80, 8080, 4444, 4443, 1337, 8000, 9001, 2222, 53];
        if self.rng.chance(0.8) {
            self.rng.pick(PORTS)
        } else {
            self.rng.range(1024, 65535) as u16
        }
    }

    /// A value for an attribute type (not necessarily unique in the event).
    fn value(&mut self, t: AttrType, v6: bool) -> String {
        match t {
            AttrType::IpDst | AttrType::IpSrc => self.ip_value(v6),
            AttrType::IpDstPort | AttrType::IpSrcPort => {
                let ip = self.ip_value(false);
                let p = self.port();
                format!("{ip}|{p}")
            }
            AttrType::Domain => {
                // Some domain indicators are subdomains of others in the same campaign.
                if !self.domains.is_empty() && self.rng.chance(0.15) {
                    let base = self.rng.pick_ref(&self.domains).clone();
                    values::host_under(&mut self.rng, &base)
                } else {
                    self.campaign_domain()
                }
            }
            AttrType::Hostname => {
                let base = self.campaign_domain();
                values::host_under(&mut self.rng, &base)
            }
            AttrType::DomainIp => {
                let d = self.campaign_domain();
                let ip = self.ip_value(false);
                format!("{d}|{ip}")
            }
            AttrType::HostnamePort => {
                let base = self.campaign_domain();
                let h = values::host_under(&mut self.rng, &base);
                let p = self.port();
                format!("{h}|{p}")
            }
            AttrType::Url => {
                let host = if self.rng.chance(0.1) {
                    self.ip_value(false)
                } else if self.rng.chance(0.5) {
                    self.campaign_domain()
                } else {
                    let base = self.campaign_domain();
                    values::host_under(&mut self.rng, &base)
                };
                values::url_on(&mut self.rng, &host)
            }
            AttrType::Md5 | AttrType::Ja3 => values::hex(&mut self.rng, 32),
            AttrType::Sha1 | AttrType::X509Sha1 => values::hex(&mut self.rng, 40),
            AttrType::Sha256 => values::hex(&mut self.rng, 64),
            AttrType::FilenameSha256 => {
                let name = values::file_name(&mut self.rng);
                format!("{name}|{}", values::hex(&mut self.rng, 64))
            }
            AttrType::EmailSrc => {
                let d = self.campaign_domain();
                values::email_on(&mut self.rng, &d)
            }
            AttrType::UserAgent => values::user_agent(&mut self.rng),
            AttrType::Filename => values::file_name(&mut self.rng),
            AttrType::Port => self.port().to_string(),
            AttrType::Size => self.rng.range(2_000, 9_000_000).to_string(),
        }
    }

    fn seen_time(&mut self, at: i64) -> String {
        let t = Timestamp::from_second(at).unwrap_or(Timestamp::UNIX_EPOCH);
        // MISP's form: microseconds and a numeric offset.
        t.strftime("%Y-%m-%dT%H:%M:%S.000000+00:00").to_string()
    }

    /// An attribute of type `t` with `value`, its acceptance tallied. `in_object` carries the
    /// object's deletion (revokes all members) and the member's relation.
    fn attribute(
        &mut self,
        t: AttrType,
        value: String,
        in_object: Option<(bool, &'static str)>,
    ) -> AttrOut {
        self.budget = self.budget.saturating_sub(1);
        self.report.attributes += 1;
        let r = &mut self.rng;
        let deleted = r.chance(0.02);
        // User-Agents are context by default in MISP: say to_ids explicitly when armed.
        let to_ids = !r.chance(0.05);
        let distribution = match r.below(100) {
            0..=84 => "5",
            85..=87 => "0",
            88..=91 => "1",
            92..=95 => "2",
            _ => "3",
        };
        let mut tags = Vec::new();
        let mut tlp = self.ctx.tlp;
        if r.chance(0.02) {
            let raise = if r.chance(0.5) {
                Tlp::AmberStrict
            } else {
                Tlp::Red
            };
            let def = tlp_tag(raise, r);
            tags.push(TagOut {
                name: def.name,
                colour: def.colour,
                exportable: true,
                local: false,
            });
            tlp = Some(tlp.map_or(raise, |e| e.max(raise)));
        }
        if r.chance(0.05) {
            let def = r.pick_ref(CONTEXT_TAGS);
            tags.push(TagOut {
                name: def.name,
                colour: def.colour,
                exportable: true,
                local: false,
            });
        }
        let (first_seen, last_seen) = if r.chance(0.25) {
            let day = 86_400;
            let now = self.ctx.now;
            match r.below(10) {
                // Expired: seen and gone before the reference time.
                0..=3 => {
                    let last = now - r.range(day, 400 * day) as i64;
                    (Some(last - r.range(day, 90 * day) as i64), Some(last))
                }
                // Active around the reference time.
                4..=6 => (
                    Some(now - r.range(day, 60 * day) as i64),
                    Some(now + r.range(day, 60 * day) as i64),
                ),
                // Announced for the future.
                7 => {
                    let first = now + r.range(day, 30 * day) as i64;
                    (Some(first), Some(first + r.range(day, 90 * day) as i64))
                }
                _ => (Some(now - r.range(day, 200 * day) as i64), None),
            }
        } else {
            (None, None)
        };
        let timestamp = self.rng.range(
            self.ctx.created as u64,
            self.ctx.modified.max(self.ctx.created) as u64,
        );
        let first_seen = first_seen.map(|s| self.seen_time(s));
        let last_seen = last_seen.map(|s| self.seen_time(s));
        let object_deleted = in_object.is_some_and(|(d, _)| d);
        if deleted || object_deleted || !self.ctx.published {
            self.report.revoked += 1;
        } else if !to_ids || t.is_context() {
            self.report.context_only += 1;
        } else {
            let tlp = tlp.unwrap_or(self.default_tlp);
            let mut accept = |kind: Kind| {
                self.report.indicators += 1;
                *self.report.by_kind.entry(kind).or_insert(0) += 1;
                *self.report.by_tlp.entry(tlp).or_insert(0) += 1;
            };
            if t == AttrType::DomainIp {
                accept(Kind::Domain);
                let ip = value.split_once('|').map_or("", |(_, ip)| ip);
                accept(if ip.contains(':') {
                    Kind::Ipv6
                } else {
                    Kind::Ipv4
                });
            } else {
                accept(kind_key(t, &value).0);
            }
        }
        AttrOut {
            uuid: uuid(&mut self.rng),
            misp_type: t.misp(),
            category: t.category(),
            value,
            to_ids,
            comment: "",
            timestamp: timestamp.to_string(),
            distribution,
            sharing_group_id: "0",
            deleted,
            disable_correlation: false,
            object_relation: in_object.map(|(_, rel)| rel),
            first_seen,
            last_seen,
            tags,
        }
    }

    /// Claims a value's keys in this event; false when one is taken already.
    fn claim(&mut self, t: AttrType, value: &str) -> bool {
        if t.is_context() {
            return true;
        }
        let keys: Vec<String> = if t == AttrType::DomainIp {
            let (d, ip) = value.split_once('|').unwrap_or((value, ""));
            vec![format!("domain {d}"), format!("ip {ip}")]
        } else {
            vec![kind_key(t, value).1]
        };
        if keys.iter().any(|k| self.seen.contains(k)) {
            return false;
        }
        self.seen.extend(keys);
        true
    }

    /// A value of type `t` not yet used in this event.
    fn unique_value(&mut self, t: AttrType, v6: bool) -> String {
        loop {
            let v = self.value(t, v6);
            if self.claim(t, &v) {
                return v;
            }
            // A repeat of a campaign domain: widen the campaign.
            let d = self.fresh_domain();
            self.domains.push(d);
        }
    }

    fn push_attr(&mut self, t: AttrType, v6: bool) {
        let v = self.unique_value(t, v6);
        let a = self.attribute(t, v, None);
        self.attributes.push(a);
    }

    /// A network with networks and hosts nested inside, as feeds list a hoster's range.
    fn netblock(&mut self) {
        let v6 = self.rng.chance(0.2);
        let single = self.rng.chance(0.4);
        let mut nets: Vec<String> = Vec::new();
        if v6 {
            let outer = values::public_v6_prefix(&mut self.rng, 32);
            let outer_addr = Ipv6Addr::from(u128::from(outer) << 64);
            if single {
                let len = self.rng.pick(&[48u8, 56, 64]);
                let p = values::public_v6_prefix(&mut self.rng, 64);
                let masked = p & !((1u64 << (64 - u32::from(len))) - 1);
                nets.push(format!(
                    "{}/{len}",
                    Ipv6Addr::from(u128::from(masked) << 64)
                ));
            } else {
                nets.push(format!("{outer_addr}/32"));
                for _ in 0..self.rng.range(1, 4) {
                    let inner = outer | (self.rng.next_u64() & 0xffff_0000_0000);
                    nets.push(format!("{}/48", Ipv6Addr::from(u128::from(inner) << 64)));
                    for _ in 0..self.rng.range(1, 3) {
                        let host = (u128::from(inner | self.rng.below(0x1_0000)) << 64) | 1;
                        nets.push(Ipv6Addr::from(host).to_string());
                    }
                }
            }
        } else {
            if single {
                let len = self.rng.pick(&[20u8, 22, 24, 24, 24, 26, 28]);
                let net = values::public_v4_net(&mut self.rng, len);
                nets.push(format!("{}/{len}", Ipv4Addr::from(net)));
            } else {
                let outer = values::public_v4_net(&mut self.rng, 16);
                nets.push(format!("{}/16", Ipv4Addr::from(outer)));
                for _ in 0..self.rng.range(1, 4) {
                    let inner = outer | ((self.rng.next_u32() & 0xff) << 8);
                    nets.push(format!("{}/24", Ipv4Addr::from(inner)));
                    if self.rng.chance(0.3) {
                        let sub = inner | (self.rng.next_u32() & 0xf0);
                        nets.push(format!("{}/28", Ipv4Addr::from(sub)));
                    }
                    for _ in 0..self.rng.range(1, 3) {
                        let host = inner | self.rng.range(1, 254) as u32;
                        nets.push(Ipv4Addr::from(host).to_string());
                    }
                }
            }
        }
        for v in nets {
            if self.budget == 0 {
                break;
            }
            if !self.claim(AttrType::IpDst, &v) {
                continue;
            }
            let a = self.attribute(AttrType::IpDst, v, None);
            self.attributes.push(a);
        }
    }

    fn object(&mut self, slot: Slot) {
        let deleted = self.rng.chance(0.03);
        let (name, meta, description, template, members): (
            &'static str,
            &'static str,
            &'static str,
            &'static str,
            Vec<(AttrType, &'static str)>,
        ) = match slot {
            Slot::FileObject => (
                "file",
                "file",
                "File object describing a file with meta-information",
                "688c46fb-5edb-40a3-8273-1af7923e2215",
                vec![
                    (AttrType::Filename, "filename"),
                    (AttrType::Md5, "md5"),
                    (AttrType::Sha1, "sha1"),
                    (AttrType::Sha256, "sha256"),
                    (AttrType::Size, "size-in-bytes"),
                ],
            ),
            Slot::DomainIpObject => (
                "domain-ip",
                "network",
                "A domain/hostname and IP address seen as a tuple in a specific time frame.",
                "43b3b146-77eb-4931-b4cc-b66c60f28734",
                vec![(AttrType::Domain, "domain"), (AttrType::IpDst, "ip")],
            ),
            _ => (
                "ip-port",
                "network",
                "An IP address (or domain or hostname) and a port seen as a tuple.",
                "9f8cea74-16fe-4968-a2b4-026676949ac6",
                vec![(AttrType::IpDst, "ip"), (AttrType::Port, "dst-port")],
            ),
        };
        let mut attributes = Vec::new();
        for (t, rel) in members {
            if self.budget == 0 {
                break;
            }
            let v = self.unique_value(t, false);
            attributes.push(self.attribute(t, v, Some((deleted, rel))));
        }
        if attributes.is_empty() {
            return;
        }
        self.report.objects += 1;
        let ts = attributes
            .iter()
            .map(|a| a.timestamp.parse::<i64>().unwrap_or(0))
            .max()
            .unwrap_or(0);
        self.objects.push(ObjectOut {
            uuid: uuid(&mut self.rng),
            name,
            meta_category: meta,
            description,
            template_uuid: template,
            template_version: "1",
            timestamp: ts.to_string(),
            distribution: "5",
            sharing_group_id: "0",
            comment: "",
            deleted,
            attributes,
        });
    }
}

/// Event sizes: many small events, some of hundreds, a few huge ones.
fn event_size(rng: &mut Rng) -> u64 {
    match rng.below(100) {
        0..=69 => rng.log_uniform(1, 12),
        70..=91 => rng.log_uniform(12, 150),
        92..=98 => rng.log_uniform(150, 2_000),
        _ => rng.log_uniform(2_000, 25_000),
    }
}

/// Appends the `hashes.csv` lines of an attribute: one per `|`-separated part (§1.3).
fn hash_lines(
    w: &mut impl Write,
    a: &AttrOut,
    event: &str,
    report: &mut FeedReport,
) -> io::Result<()> {
    let parts: Vec<&str> = if a.misp_type.contains('|') {
        a.value.split('|').collect()
    } else {
        vec![a.value.as_str()]
    };
    for p in parts {
        writeln!(w, "{},{event}", md5_hex(p.as_bytes()))?;
        report.hash_lines += 1;
    }
    Ok(())
}

/// Counts bytes passing through.
struct Counting<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes a feed into `dir` (which must exist; files in it are replaced). `progress` is
/// called with the number of attributes written so far, after each event.
pub fn write_feed(
    dir: &Path,
    opts: &FeedOptions,
    mut progress: impl FnMut(u64),
) -> io::Result<FeedReport> {
    let mut report = FeedReport::default();
    let now = opts.now.as_second();
    // Organisations and sharing groups do not depend on the seed: they are the cast.
    let mut cast = Rng::new(0x6377_6e2d_6361_7374);
    let orgs: Vec<Org> = ORG_NAMES
        .iter()
        .map(|n| Org {
            name: n.to_string(),
            uuid: uuid(&mut cast),
        })
        .collect();
    let groups: Vec<SharingGroup> = SHARING_GROUPS
        .iter()
        .enumerate()
        .map(|(i, n)| SharingGroup {
            id: i as u32 + 1,
            name: n,
            uuid: uuid(&mut cast),
        })
        .collect();
    let org_zipf = Zipf::new(orgs.len(), 1.0);
    let slot_weights: Vec<u32> = SLOTS.iter().map(|s| s.1).collect();

    let mut manifest = Counting {
        inner: BufWriter::new(File::create(dir.join("manifest.json"))?),
        bytes: 0,
    };
    let mut hashes = Counting {
        inner: BufWriter::new(File::create(dir.join("hashes.csv"))?),
        bytes: 0,
    };
    manifest.write_all(b"{")?;
    let mut sizes = Rng::derive(opts.seed, 1, 0);
    let mut event_no = 0u64;
    let mut buf = Vec::new();
    while report.attributes < opts.count {
        let size = event_size(&mut sizes).min(opts.count - report.attributes);
        let mut rng = Rng::derive(opts.seed, 2, event_no);
        event_no += 1;
        let event_uuid = uuid(&mut rng);
        let org = &orgs[org_zipf.sample(&mut rng)];
        let tlp = match rng.below(100) {
            0..=5 => Some(Tlp::Clear),
            6..=45 => Some(Tlp::Green),
            46..=83 => Some(Tlp::Amber),
            84..=92 => Some(Tlp::AmberStrict),
            93..=96 => Some(Tlp::Red),
            _ => None,
        };
        let distribution = [0u8, 1, 2, 3, 4][rng.weighted(&[3, 7, 15, 55, 20])];
        let group = (distribution == 4).then(|| rng.pick_ref(&groups));
        let created = now - rng.range(3_600, 730 * 86_400) as i64;
        let modified = (created + rng.range(0, 30 * 86_400) as i64).min(now);
        let published = !rng.chance(0.01);
        let mut tags: Vec<TagDef> = Vec::new();
        if let Some(t) = tlp {
            tags.push(tlp_tag(t, &mut rng));
        }
        if rng.chance(0.03) {
            tags.push(TagDef {
                name: "tlp:ex:chr",
                colour: "#ffffff",
            });
        }
        for _ in 0..rng.below(4) {
            let t = rng.pick_ref(CONTEXT_TAGS);
            if !tags.iter().any(|x| x.name == t.name) {
                tags.push(TagDef {
                    name: t.name,
                    colour: t.colour,
                });
            }
        }
        let info = format!(
            "{} targeting {} #{} (synthetic)",
            rng.pick(CAMPAIGNS),
            rng.pick(SECTORS),
            rng.range(100, 9999)
        );
        let date = Timestamp::from_second(created)
            .unwrap_or(Timestamp::UNIX_EPOCH)
            .strftime("%Y-%m-%d")
            .to_string();
        let analysis = rng.below(3) as u8;
        let threat_level = rng.range(1, 4) as u8;

        let mut b = EventBuilder {
            rng,
            ctx: EventCtx {
                tlp,
                published,
                created,
                modified,
                now,
            },
            seen: HashSet::new(),
            attributes: Vec::with_capacity(size.min(100_000) as usize),
            objects: Vec::new(),
            domains: Vec::new(),
            budget: size,
            report: &mut report,
            default_tlp: opts.default_tlp,
        };
        while b.budget > 0 {
            match SLOTS[b.rng.weighted(&slot_weights)].0 {
                Slot::Attr(t) => b.push_attr(t, false),
                Slot::V6(t) => b.push_attr(t, true),
                Slot::Netblock => b.netblock(),
                s => b.object(s),
            }
        }
        let EventBuilder {
            attributes,
            objects,
            ..
        } = b;

        let tag_out: Vec<TagOut<'_>> = tags
            .iter()
            .map(|t| TagOut {
                name: t.name,
                colour: t.colour,
                exportable: true,
                local: false,
            })
            .collect();
        let doc = EventDoc {
            event: EventOut {
                uuid: &event_uuid,
                info: &info,
                date: &date,
                timestamp: modified.to_string(),
                publish_timestamp: if published {
                    modified.to_string()
                } else {
                    "0".into()
                },
                published,
                analysis: analysis.to_string(),
                threat_level_id: threat_level.to_string(),
                distribution: distribution.to_string(),
                sharing_group_id: group.map_or("0".into(), |g| g.id.to_string()),
                sharing_group: group.map(|g| SharingGroupOut {
                    uuid: &g.uuid,
                    name: g.name,
                    releasability: "Members of the sector group only",
                }),
                extends_uuid: "",
                protected: false,
                orgc: OrgOut {
                    name: &org.name,
                    uuid: &org.uuid,
                },
                tags: &tag_out,
                attributes: &attributes,
                objects: &objects,
            },
        };
        buf.clear();
        serde_json::to_writer(&mut buf, &doc).map_err(io::Error::other)?;
        buf.push(b'\n');
        std::fs::write(dir.join(format!("{event_uuid}.json")), &buf)?;
        report.bytes += buf.len() as u64;

        for a in attributes
            .iter()
            .chain(objects.iter().flat_map(|o| o.attributes.iter()))
        {
            hash_lines(&mut hashes, a, &event_uuid, &mut report)?;
        }

        let entry = ManifestEntry {
            orgc: OrgOut {
                name: &org.name,
                uuid: &org.uuid,
            },
            tags: tags
                .iter()
                .map(|t| ManifestTag {
                    colour: t.colour,
                    local: false,
                    name: t.name,
                    relationship_type: "",
                })
                .collect(),
            info: &info,
            date: &date,
            analysis,
            threat_level_id: threat_level,
            timestamp: modified,
        };
        if report.events > 0 {
            manifest.write_all(b",")?;
        }
        manifest.write_all(b"\n")?;
        serde_json::to_writer(&mut manifest, &event_uuid).map_err(io::Error::other)?;
        manifest.write_all(b": ")?;
        serde_json::to_writer(&mut manifest, &entry).map_err(io::Error::other)?;
        report.events += 1;
        progress(report.attributes);
    }
    manifest.write_all(b"\n}\n")?;
    manifest.flush()?;
    hashes.flush()?;
    report.bytes += manifest.bytes + hashes.bytes;
    Ok(report)
}
