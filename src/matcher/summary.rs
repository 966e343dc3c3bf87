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

const MAGIC: [u8; 8] = *b"CWNSUMM2";
/// Bits of the Rice parameter: each key is kept as a value below `keys × 2^RICE`, so a key
/// not in the set matches one by chance with a probability of about 2^-14 (6e-5): a delta of
/// 400 indicators reads about 2.4 % of the batches that cannot hit. About 15.5 bits per key.
const RICE: u32 = 14;

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

fn key(tag: u8, sub: u8, bytes: &[u8]) -> u64 {
    let mut b = Vec::with_capacity(bytes.len() + 2);
    b.push(tag);
    b.push(sub);
    b.extend_from_slice(bytes);
    xxh3_64(&b)
}

fn addr_key(ip: IpAddr) -> u64 {
    match ip.to_canonical() {
        IpAddr::V4(a) => key(tag::ADDR, 4, &a.octets()),
        IpAddr::V6(a) => key(tag::ADDR, 6, &a.octets()),
    }
}

/// The key of `ip`'s network of `len` bits.
fn net_key(ip: IpAddr, len: u8) -> u64 {
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
    keys: RefCell<Vec<u64>>,
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
    /// Distinct keys recorded: the values are below `n << RICE`.
    n: u32,
    /// The keys reduced to that range, sorted and distinct.
    values: Vec<u64>,
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
        let n = u32::try_from(keys.len()).unwrap_or(u32::MAX);
        let mut values: Vec<u64> = keys.iter().map(|&k| reduce(k, n)).collect();
        values.sort_unstable();
        values.dedup();
        BatchSummary {
            n,
            values,
            families: rec.families.into_inner(),
            classes: rec.classes.into_inner(),
        }
    }

    /// Whether the batch may hit any of `probes` (false: it certainly does not).
    pub fn may_hit(&self, probes: &Probes) -> bool {
        if self.classes & probes.classes != 0 || self.families & probes.families != 0 {
            return true;
        }
        probes
            .keys
            .iter()
            .any(|&k| self.values.binary_search(&reduce(k, self.n)).is_ok())
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        self.n as usize
    }

    /// Whether it records no key, family or class (a batch without matchable values).
    pub fn is_empty(&self) -> bool {
        self.n == 0 && self.families == 0 && self.classes == 0
    }

    /// Its bytes: magic, families u8, classes u8, key count u32, value count u32, then the
    /// gaps between successive values, Golomb-Rice coded with parameter 14 (unary
    /// quotient of ones ended by a zero, then the low bits, most significant first), padded
    /// with zero bits to a byte.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(18 + self.values.len() * 2);
        b.extend_from_slice(&MAGIC);
        b.push(self.families);
        b.push(self.classes);
        b.extend_from_slice(&self.n.to_le_bytes());
        b.extend_from_slice(&(self.values.len() as u32).to_le_bytes());
        let mut w = BitWriter {
            out: b,
            acc: 0,
            bits: 0,
        };
        let mut prev = 0u64;
        for &v in &self.values {
            let gap = v - prev;
            prev = v;
            let mut q = gap >> RICE;
            while q > 0 {
                let ones = q.min(32);
                w.put((1u64 << ones) - 1, ones as u32);
                q -= ones;
            }
            w.put(0, 1);
            w.put(gap & ((1 << RICE) - 1), RICE);
        }
        w.finish()
    }

    /// Reads [`to_bytes`](Self::to_bytes); strict (the values it announces, each below the
    /// range, nothing but zero padding after them). Allocates no more than the input's size
    /// allows.
    ///
    /// # Errors
    /// Anything else.
    pub fn from_bytes(b: &[u8]) -> Result<BatchSummary, SummaryError> {
        let rest = b.strip_prefix(&MAGIC).ok_or(SummaryError("wrong magic"))?;
        let [families, classes, n0, n1, n2, n3, c0, c1, c2, c3, bits @ ..] = rest else {
            return Err(SummaryError("truncated"));
        };
        let n = u32::from_le_bytes([*n0, *n1, *n2, *n3]);
        let count = u32::from_le_bytes([*c0, *c1, *c2, *c3]) as usize;
        if families & !(ANY_V4 | ANY_V6) != 0 {
            return Err(SummaryError("unknown address family"));
        }
        // Each value takes at least RICE + 1 bits.
        if count > n as usize || count > bits.len() * 8 / (RICE as usize + 1) {
            return Err(SummaryError("more values than its keys or bytes allow"));
        }
        let limit = u64::from(n) << RICE;
        let mut r = BitReader {
            bytes: bits,
            pos: 0,
        };
        let mut values = Vec::with_capacity(count);
        let mut prev = 0u64;
        for i in 0..count {
            // Mostly one read: the quotient's ones, its zero and the low bits in 64 bits.
            let w = r.peek();
            let ones = w.leading_ones();
            let (q, low) = if ones + 1 + RICE <= 64 && u64::from(ones) <= limit >> RICE {
                r.advance((ones + 1 + RICE) as usize)
                    .ok_or(SummaryError("truncated values"))?;
                (u64::from(ones), (w << (ones + 1)) >> (64 - RICE))
            } else {
                let q = r.unary(limit >> RICE)?;
                (q, r.take(RICE).ok_or(SummaryError("truncated values"))?)
            };
            let gap = (q << RICE) | low;
            if i > 0 && gap == 0 {
                return Err(SummaryError("values not distinct"));
            }
            let v = prev + gap;
            if v >= limit {
                return Err(SummaryError("a value beyond the range"));
            }
            values.push(v);
            prev = v;
        }
        if r.pos.div_ceil(8) != bits.len()
            || (!r.pos.is_multiple_of(8) && bits[r.pos / 8] << (r.pos % 8) != 0)
        {
            return Err(SummaryError("bytes after the values"));
        }
        Ok(BatchSummary {
            n,
            values,
            families: *families,
            classes: *classes,
        })
    }
}

/// `key` scaled into `0..n << RICE` (multiply-shift: uniform for a uniform hash).
fn reduce(key: u64, n: u32) -> u64 {
    ((u128::from(key) * (u128::from(n) << RICE)) >> 64) as u64
}

struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    bits: u32,
}

impl BitWriter {
    /// Appends the low `n` bits of `v` (n <= 32), most significant first.
    fn put(&mut self, v: u64, n: u32) {
        self.acc = (self.acc << n) | (v & ((1u64 << n) - 1));
        self.bits += n;
        while self.bits >= 8 {
            self.bits -= 8;
            self.out.push((self.acc >> self.bits) as u8);
        }
        self.acc &= (1u64 << self.bits) - 1;
    }

    fn finish(mut self) -> Vec<u8> {
        if self.bits > 0 {
            self.out.push((self.acc << (8 - self.bits)) as u8);
        }
        self.out
    }
}

struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    /// The next 64 bits from `pos` (zeros past the end).
    #[inline]
    fn peek(&self) -> u64 {
        let i = self.pos / 8;
        if let Some(b) = self.bytes.get(i..i + 9) {
            let hi = u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
            return match self.pos % 8 {
                0 => hi,
                s => (hi << s) | u64::from(b[8]) >> (8 - s),
            };
        }
        let mut buf = [0u8; 9];
        let end = (i + 9).min(self.bytes.len());
        if i < end {
            buf[..end - i].copy_from_slice(&self.bytes[i..end]);
        }
        let hi = u64::from_be_bytes([
            buf[0], buf[1], buf[2], buf[3], buf[4], buf[5], buf[6], buf[7],
        ]);
        match self.pos % 8 {
            0 => hi,
            s => (hi << s) | u64::from(buf[8]) >> (8 - s),
        }
    }

    fn advance(&mut self, n: usize) -> Option<()> {
        self.pos += n;
        (self.pos <= self.bytes.len() * 8).then_some(())
    }

    /// A unary count: ones up to a zero (consumed), at most `max`.
    fn unary(&mut self, max: u64) -> Result<u64, SummaryError> {
        let mut q = 0u64;
        loop {
            let ones = u64::from(self.peek().leading_ones());
            q += ones.min(63);
            if q > max {
                return Err(SummaryError("a gap beyond the range"));
            }
            if ones < 64 {
                self.advance(ones as usize + 1)
                    .ok_or(SummaryError("truncated values"))?;
                return Ok(q);
            }
            self.advance(63).ok_or(SummaryError("truncated values"))?;
        }
    }

    fn take(&mut self, n: u32) -> Option<u64> {
        let v = self.peek() >> (64 - n);
        self.advance(n as usize)?;
        Some(v)
    }
}

/// The keys a set of indicators is filed under, to test summaries against.
#[derive(Clone, Debug, Default)]
pub struct Probes {
    keys: Vec<u64>,
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

    /// Whether checking summaries can save reads: each key is a false "may hit" with
    /// probability 2^-14 per batch, so beyond 2^14 keys (a full snapshot replacing a small
    /// one) most batches would be read anyway, after a search per key.
    pub fn selective(&self) -> bool {
        self.keys.len() <= 1 << RICE
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
