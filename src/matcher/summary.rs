//! Per-batch summaries for the retro-hunt: which lookups a telemetry batch can answer, small
//! enough to keep beside every stored batch and to test without reading the batch.
//!
//! A summary holds a 32-bit fingerprint of every lookup key the matcher asks the index for
//! while matching the batch — the same code path (`lookup_with`) with
//! the index replaced by a recorder: each address (and its network at a few prefix
//! lengths, for CIDR indicators), each DNS name and every parent domain of it, each URL key,
//! digest, e-mail address and JA4 — plus the substring classes its fields offer. The probes
//! of a set of indicators ([`Probes`]) are the keys the index files them under
//! ([`CompiledIndex`](crate::index::CompiledIndex)'s own key parse). A batch whose summary
//! shares no key with the probes cannot hit any of them and is skipped; a shared key means it
//! may (a fingerprint collision at worst costs one batch read, never a miss).

use std::cell::RefCell;
use std::net::IpAddr;

use arrow_array::RecordBatch;
use xxhash_rust::xxh3::xxh3_64;

use super::{Lookups, lookup_with};
use crate::index::IndexKey;
use crate::index::meta::Meta;
use crate::indicator::{Kind, normalize};
use crate::telemetry::{FieldMap, cell};

/// Prefix lengths at which a summary records each IPv4 address's network.
const V4_PREFIXES: [u8; 3] = [8, 16, 24];
/// Prefix lengths at which a summary records each IPv6 address's network.
const V6_PREFIXES: [u8; 4] = [24, 32, 48, 64];

const MAGIC: [u8; 8] = *b"CWNSUMM1";

/// Family tags, so that equal bytes of two families never share a key.
mod tag {
    pub const ADDR: u8 = 1;
    pub const NET: u8 = 2;
    pub const NAME: u8 = 3;
    pub const URL: u8 = 4;
    pub const DIGEST: u8 = 5;
    pub const BYTES: u8 = 6;
    pub const DOMAIN: u8 = 7;
}

fn key(tag: u8, sub: u8, bytes: &[u8]) -> u32 {
    let mut b = Vec::with_capacity(bytes.len() + 2);
    b.push(tag);
    b.push(sub);
    b.extend_from_slice(bytes);
    xxh3_64(&b) as u32
}

fn addr_key(ip: IpAddr) -> u32 {
    match ip.to_canonical() {
        IpAddr::V4(a) => key(tag::ADDR, 4, &a.octets()),
        IpAddr::V6(a) => key(tag::ADDR, 6, &a.octets()),
    }
}

/// The key of `ip`'s network of `len` bits.
fn net_key(ip: IpAddr, len: u8) -> u32 {
    match ip.to_canonical() {
        IpAddr::V4(a) => {
            let bits = u32::from(a) & (!0u32).checked_shl(32 - u32::from(len)).unwrap_or(0);
            key(tag::NET, len, &bits.to_be_bytes())
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a) & (!0u128).checked_shl(128 - u32::from(len)).unwrap_or(0);
            key(tag::NET, len, &bits.to_be_bytes())
        }
    }
}

fn digest_sub(kind: Kind) -> u8 {
    Kind::ALL.iter().position(|&k| k == kind).unwrap_or(0) as u8
}

/// Records the keys of every lookup made through it.
#[derive(Default)]
struct Recorder {
    keys: RefCell<Vec<u32>>,
    families: RefCell<u8>,
    classes: RefCell<u8>,
}

const ANY_V4: u8 = 1;
const ANY_V6: u8 = 2;

impl Lookups for Recorder {
    fn lookup_ip(&self, ip: IpAddr, _port: Option<u16>, _out: &mut Vec<u32>) {
        let ip = ip.to_canonical();
        let mut keys = self.keys.borrow_mut();
        keys.push(addr_key(ip));
        let (family, prefixes): (u8, &[u8]) = match ip {
            IpAddr::V4(_) => (ANY_V4, &V4_PREFIXES),
            IpAddr::V6(_) => (ANY_V6, &V6_PREFIXES),
        };
        *self.families.borrow_mut() |= family;
        keys.extend(prefixes.iter().map(|&l| net_key(ip, l)));
    }

    fn lookup_name(&self, name: &[u8], _out: &mut Vec<u32>) {
        // The name, for hostname indicators; the name and every parent domain on a label
        // boundary, for domain indicators (which match their subdomains).
        let mut keys = self.keys.borrow_mut();
        keys.push(key(tag::NAME, 0, name));
        let mut rest = name;
        loop {
            keys.push(key(tag::DOMAIN, 0, rest));
            match rest.iter().position(|&b| b == b'.') {
                Some(i) => rest = &rest[i + 1..],
                None => break,
            }
        }
    }

    fn lookup_url(&self, url: &normalize::CanonicalUrl, _out: &mut Vec<u32>) {
        self.keys
            .borrow_mut()
            .push(key(tag::URL, 0, url.k2d().as_bytes()));
    }

    fn lookup_digest(&self, kind: Kind, hex: &str, _out: &mut Vec<u32>) {
        let hex = hex.to_ascii_lowercase();
        self.keys
            .borrow_mut()
            .push(key(tag::DIGEST, digest_sub(kind), hex.as_bytes()));
    }

    fn lookup_bytes(&self, kind: Kind, k: &[u8], _out: &mut Vec<u32>) {
        self.keys
            .borrow_mut()
            .push(key(tag::BYTES, digest_sub(kind), k));
    }

    fn find_substrings(&self, _text: &[u8], classes: u8, _out: &mut Vec<u32>) {
        *self.classes.borrow_mut() |= classes;
    }
}

/// What one telemetry batch can be found by: see the [module](self).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchSummary {
    /// Sorted, distinct key fingerprints.
    keys: Vec<u32>,
    /// Address families seen ([`ANY_V4`], [`ANY_V6`]): a network too wide for the recorded
    /// prefixes may hit any address of its family.
    families: u8,
    /// Substring classes its fields offer.
    classes: u8,
}

/// Why bytes are not a summary.
#[derive(Debug, thiserror::Error)]
#[error("not a batch summary: {0}")]
pub struct SummaryError(&'static str);

impl BatchSummary {
    /// The summary of `batch`, whose columns `fields` maps.
    pub fn of(batch: &RecordBatch, fields: &FieldMap) -> BatchSummary {
        let rec = Recorder::default();
        let mut texts = Vec::new();
        let mut none = Vec::new();
        for spec in fields.fields() {
            let Some(col) = batch.column_by_name(&spec.name) else {
                continue;
            };
            for r in 0..batch.num_rows() {
                texts.clear();
                cell::texts(col.as_ref(), r, &mut texts);
                for v in &texts {
                    lookup_with(&rec, &spec.kind, v, None, &mut none);
                }
            }
            // Keep the list small as it grows: most values repeat.
            let mut keys = rec.keys.borrow_mut();
            if keys.len() > 1 << 16 {
                keys.sort_unstable();
                keys.dedup();
            }
        }
        let mut keys = rec.keys.into_inner();
        keys.sort_unstable();
        keys.dedup();
        BatchSummary {
            keys,
            families: rec.families.into_inner(),
            classes: rec.classes.into_inner(),
        }
    }

    /// Whether the batch may hit any of `probes` (false: it certainly does not).
    pub fn may_hit(&self, probes: &Probes) -> bool {
        if self.classes & probes.classes != 0 || self.families & probes.families != 0 {
            return true;
        }
        // Both sorted: walk the shorter, search the longer.
        let (small, large) = if self.keys.len() <= probes.keys.len() {
            (&self.keys, &probes.keys)
        } else {
            (&probes.keys, &self.keys)
        };
        small.iter().any(|k| large.binary_search(k).is_ok())
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether it records no key, family or class (a batch without matchable values).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.families == 0 && self.classes == 0
    }

    /// Its bytes: magic, families u8, classes u8, key count u32, the keys (little-endian).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(14 + 4 * self.keys.len());
        b.extend_from_slice(&MAGIC);
        b.push(self.families);
        b.push(self.classes);
        b.extend_from_slice(&(self.keys.len() as u32).to_le_bytes());
        for k in &self.keys {
            b.extend_from_slice(&k.to_le_bytes());
        }
        b
    }

    /// Reads [`to_bytes`](Self::to_bytes); strict (exact length, sorted distinct keys).
    ///
    /// # Errors
    /// Anything else.
    pub fn from_bytes(b: &[u8]) -> Result<BatchSummary, SummaryError> {
        let rest = b.strip_prefix(&MAGIC).ok_or(SummaryError("wrong magic"))?;
        let [families, classes, n0, n1, n2, n3, rest @ ..] = rest else {
            return Err(SummaryError("truncated"));
        };
        let n = u32::from_le_bytes([*n0, *n1, *n2, *n3]) as usize;
        if rest.len() != n.checked_mul(4).ok_or(SummaryError("too many keys"))? {
            return Err(SummaryError("length does not match its key count"));
        }
        let keys: Vec<u32> = rest
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if keys.windows(2).any(|w| w[0] >= w[1]) {
            return Err(SummaryError("keys not sorted and distinct"));
        }
        if families & !(ANY_V4 | ANY_V6) != 0 {
            return Err(SummaryError("unknown address family"));
        }
        Ok(BatchSummary {
            keys,
            families: *families,
            classes: *classes,
        })
    }
}

/// The keys a set of indicators is filed under, to test summaries against.
#[derive(Clone, Debug, Default)]
pub struct Probes {
    keys: Vec<u32>,
    /// Families any of whose addresses a wide network may hit.
    families: u8,
    /// Substring classes of the substring indicators.
    classes: u8,
}

impl Probes {
    /// The probes of the live records of `meta` whose ordinals `ords` gives.
    pub fn of(
        meta: Meta<'_>,
        ords: impl IntoIterator<Item = crate::indicator::IndicatorId>,
    ) -> Probes {
        let mut p = Probes::default();
        for o in ords {
            let Some(k) = IndexKey::parse(meta.kind(o), meta.value(o)) else {
                continue;
            };
            p.add(&k);
        }
        p.keys.sort_unstable();
        p.keys.dedup();
        p
    }

    fn add(&mut self, k: &IndexKey<'_>) {
        match k {
            IndexKey::Addr(a) | IndexKey::Pair(a, _) => self.keys.push(addr_key(*a)),
            IndexKey::Net(n) => {
                let ip = n.addr().to_canonical();
                let len = n.prefix_len();
                let prefixes: &[u8] = if ip.is_ipv4() {
                    &V4_PREFIXES
                } else {
                    &V6_PREFIXES
                };
                // A mapped IPv6 network is compared as IPv4 by the recorder.
                let len = if ip.is_ipv4() && n.addr().is_ipv6() {
                    len.saturating_sub(96)
                } else {
                    len
                };
                match prefixes.iter().rev().find(|&&p| p <= len) {
                    Some(&p) => self.keys.push(net_key(ip, p)),
                    None => self.families |= if ip.is_ipv4() { ANY_V4 } else { ANY_V6 },
                }
            }
            IndexKey::Domain(v) => self.keys.push(key(tag::DOMAIN, 0, v)),
            IndexKey::Hostname(v) => self.keys.push(key(tag::NAME, 0, v)),
            IndexKey::Url(k2d) => self.keys.push(key(tag::URL, 0, k2d.as_bytes())),
            IndexKey::Email(v) => self.keys.push(key(tag::BYTES, digest_sub(Kind::Email), v)),
            IndexKey::Ja4(v) => self.keys.push(key(tag::BYTES, digest_sub(Kind::Ja4), v)),
            IndexKey::Md5(d) => self.digest(Kind::Md5, d),
            IndexKey::Ja3(d) => self.digest(Kind::Ja3, d),
            IndexKey::Ja3s(d) => self.digest(Kind::Ja3s, d),
            IndexKey::Sha1(d) => self.digest(Kind::Sha1, d),
            IndexKey::Sha256(d) => self.digest(Kind::Sha256, d),
            IndexKey::Sha512(d) => self.digest(Kind::Sha512, d),
            IndexKey::Substring(_, classes) => self.classes |= classes,
        }
    }

    fn digest(&mut self, kind: Kind, d: &[u8]) {
        let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
        self.keys
            .push(key(tag::DIGEST, digest_sub(kind), hex.as_bytes()));
    }

    /// Whether there is nothing to look for.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.families == 0 && self.classes == 0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, StringArray};
    use proptest::prelude::*;

    use super::*;
    use crate::index::IndexBuilder;
    use crate::indicator::{Indicator, IndicatorId, IndicatorSet, Tlp};
    use crate::matcher::Matcher;

    /// Indicator values and telemetry values from small pools, so that they meet often.
    const NAMES: [&str; 6] = [
        "evil.example",
        "a.evil.example",
        "b.example",
        "example",
        "x.test",
        "www.x.test",
    ];
    const IPS: [&str; 6] = [
        "198.51.100.7",
        "198.51.100.9",
        "203.0.113.1",
        "2001:db8::1",
        "2001:db8:1::2",
        "::ffff:198.51.100.7",
    ];
    const NETS: [&str; 5] = [
        "198.51.100.0/24",
        "198.51.0.0/16",
        "198.48.0.0/12",
        "2001:db8::/32",
        "0.0.0.0/0",
    ];
    const HASHES: [&str; 3] = [
        "d41d8cd98f00b204e9800998ecf8427e",
        "0cc175b9c0f1b6a831c399e269772661",
        "900150983cd24fb0d6963f7d28e17f72",
    ];
    const URLS: [&str; 3] = [
        "http://evil.example/gate.php",
        "https://b.example/x?y=1",
        "http://198.51.100.7/a",
    ];
    const SUBS: [&str; 2] = ["/gate.php", "curl/"];

    fn indicator(i: usize, pick: (u8, usize)) -> Option<Indicator> {
        let (kind, value) = match pick.0 % 7 {
            0 => (Kind::Domain, NAMES[pick.1 % NAMES.len()]),
            1 => (Kind::Hostname, NAMES[pick.1 % NAMES.len()]),
            2 => {
                let v = IPS[pick.1 % IPS.len()];
                if v.contains("::ffff:") {
                    return None;
                }
                (
                    if v.contains(':') {
                        Kind::Ipv6
                    } else {
                        Kind::Ipv4
                    },
                    v,
                )
            }
            3 => (Kind::Cidr, NETS[pick.1 % NETS.len()]),
            4 => (Kind::Md5, HASHES[pick.1 % HASHES.len()]),
            5 => (Kind::Url, URLS[pick.1 % URLS.len()]),
            _ => (
                if pick.1.is_multiple_of(2) {
                    Kind::UrlSubstring
                } else {
                    Kind::UserAgent
                },
                SUBS[pick.1 % SUBS.len()],
            ),
        };
        Some(Indicator::new(
            format!("i{i}"),
            kind,
            value,
            Arc::<str>::from("t"),
            Tlp::Clear,
        ))
    }

    type Row = (usize, usize, usize, usize);

    fn batch(rows: &[Row]) -> (RecordBatch, FieldMap) {
        let col = |f: &dyn Fn(&Row) -> String| -> ArrayRef {
            Arc::new(StringArray::from(rows.iter().map(f).collect::<Vec<_>>()))
        };
        let batch = RecordBatch::try_from_iter([
            ("ip", col(&|r| IPS[r.0 % IPS.len()].to_string())),
            ("host", col(&|r| NAMES[r.1 % NAMES.len()].to_string())),
            ("url", col(&|r| URLS[r.2 % URLS.len()].to_string())),
            ("md5", col(&|r| HASHES[r.3 % HASHES.len()].to_uppercase())),
            (
                "ua",
                col(&|r| if r.3 % 2 == 0 { "curl/8.0" } else { "Mozilla" }.to_string()),
            ),
        ])
        .unwrap();
        let fields = FieldMap::from_specs(
            [
                "ip=ip",
                "host=domain",
                "url=url",
                "md5=md5",
                "ua=user-agent",
            ]
            .iter()
            .map(|s| s.parse().unwrap()),
        )
        .unwrap();
        (batch, fields)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// A batch that hits never has a summary that says it cannot: the summary is tested
        /// against the probes of the very indicators the matcher found in it.
        #[test]
        fn a_batch_that_hits_is_never_skipped(
            picks in prop::collection::vec((any::<u8>(), any::<usize>()), 1..6),
            rows in prop::collection::vec((0..6usize, 0..6usize, 0..3usize, 0..4usize), 1..4),
        ) {
            let mut set = IndicatorSet::new();
            for (i, p) in picks.iter().enumerate() {
                if let Some(ind) = indicator(i, *p) {
                    let _ = set.insert(ind);
                }
            }
            let index = IndexBuilder::new().build(&set).unwrap();
            let (batch, fields) = batch(&rows);
            let mut hits = Vec::new();
            Matcher::new(&index, &fields, 0).match_record_batch(&batch, 0, &mut hits);
            let probes = Probes::of(index.meta(), (0..index.len() as u32).map(IndicatorId::new));
            let summary = BatchSummary::of(&batch, &fields);
            prop_assert_eq!(BatchSummary::from_bytes(&summary.to_bytes()).unwrap(), summary.clone());
            if !hits.is_empty() {
                prop_assert!(summary.may_hit(&probes), "{hits:?} but skipped");
            }
        }
    }

    #[test]
    fn a_batch_without_the_values_is_skipped() {
        let (batch, fields) = batch(&[(0, 0, 0, 0)]);
        let summary = BatchSummary::of(&batch, &fields);
        let probes = |kind: Kind, v: &str| {
            let mut set = IndicatorSet::new();
            let _ = set.insert(Indicator::new(
                "i",
                kind,
                v,
                Arc::<str>::from("t"),
                Tlp::Clear,
            ));
            let index = IndexBuilder::new().build(&set).unwrap();
            Probes::of(index.meta(), [IndicatorId::new(0)])
        };
        // What it holds (and covers) may hit ...
        assert!(summary.may_hit(&probes(Kind::Domain, "evil.example")));
        assert!(summary.may_hit(&probes(Kind::Domain, "example")));
        assert!(summary.may_hit(&probes(Kind::Cidr, "198.51.100.0/25")));
        assert!(summary.may_hit(&probes(Kind::Cidr, "198.0.0.0/7")));
        assert!(summary.may_hit(&probes(Kind::Md5, HASHES[0])));
        // ... what it does not, cannot.
        assert!(!summary.may_hit(&probes(Kind::Domain, "other.example")));
        assert!(!summary.may_hit(&probes(Kind::Hostname, "example")));
        assert!(!summary.may_hit(&probes(Kind::Ipv4, "198.51.100.8")));
        assert!(!summary.may_hit(&probes(Kind::Cidr, "203.0.113.0/24")));
        assert!(!summary.may_hit(&probes(Kind::Cidr, "2001:db8::/32")));
        assert!(!summary.may_hit(&probes(Kind::Md5, HASHES[1])));
        assert!(!summary.may_hit(&probes(Kind::Url, "http://evil.example/other")));
        assert!(summary.may_hit(&probes(Kind::Url, "HTTP://EVIL.example/gate.php")));
        // A substring may occur in any URL or User-Agent.
        assert!(summary.may_hit(&probes(Kind::Uri, "/anything")));
    }
}
