//! [`IndexBuilder`] → [`CompiledIndex`]: every lookup structure over one indicator set, and
//! its snapshot form.

use std::fs::File;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use ed25519_dalek::{SigningKey, VerifyingKey};
use ipnet::IpNet;
use roaring::RoaringBitmap;

use super::domain::{DomainIndex, DomainIndexBuilder};
use super::exact::{BytesIndex, BytesIndexBuilder, ExactIndex, ExactIndexBuilder, parse_hex};
use super::ip::{IpIndex, IpIndexBuilder};
use super::meta::{Interner, Meta, MetaBuilder, MetaTable};
use super::snapshot::{self, Header, SnapshotError};
use super::substring::{SubstringBuilder, SubstringIndex, classes_of};
use super::{FormatError, SectionReader, SectionWriter, Sections, array};
use crate::indicator::normalize;
use crate::indicator::{Indicator, IndicatorSet, Kind, Tlp};

/// Why a set could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// More indicators than ordinals.
    #[error("{0} indicators are more than one index holds (u32 ordinals)")]
    TooMany(usize),
}

/// Compiles an [`IndicatorSet`] into a [`CompiledIndex`].
#[derive(Clone, Debug)]
pub struct IndexBuilder {
    arm_red: bool,
    set_version: u64,
    created_at: i64,
}

impl Default for IndexBuilder {
    fn default() -> Self {
        Self::new()
    }
}

/// What a compile left out, and why.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuildReport {
    /// TLP:RED indicators not armed (FORMATS.md §4.4: `arm_red = false`).
    pub red_not_armed: u64,
    /// Indicators whose stored value no longer parses (never from a set built by ingest).
    pub unusable: u64,
}

impl IndexBuilder {
    /// A builder with RED indicators not armed, set version 1 and created-at 0.
    pub fn new() -> Self {
        IndexBuilder {
            arm_red: false,
            set_version: 1,
            created_at: 0,
        }
    }

    /// Arms TLP:RED indicators (off by default: RED is stored, not loaded into shared
    /// matching infrastructure).
    pub fn arm_red(mut self, yes: bool) -> Self {
        self.arm_red = yes;
        self
    }

    /// The set version written into the snapshot header.
    pub fn set_version(mut self, v: u64) -> Self {
        self.set_version = v;
        self
    }

    /// The creation time (Unix seconds) written into the snapshot header. It is an input, not
    /// the clock, so that the same input always gives the same bytes.
    pub fn created_at(mut self, t: i64) -> Self {
        self.created_at = t;
        self
    }

    /// Compiles the set.
    pub fn build(&self, set: &IndicatorSet) -> Result<CompiledIndex, BuildError> {
        self.build_with_report(set).map(|(i, _)| i)
    }

    /// The set version it writes.
    pub fn version(&self) -> u64 {
        self.set_version
    }

    /// The creation time it writes.
    pub fn created(&self) -> i64 {
        self.created_at
    }

    /// Whether a compile keeps `ind` (not RED unless armed, a value that parses).
    pub fn admits(&self, ind: &Indicator) -> bool {
        (ind.tlp != Tlp::Red || self.arm_red) && Key::parse(ind.kind, &ind.value).is_some()
    }

    /// Compiles the set and says what was left out.
    pub fn build_with_report(
        &self,
        set: &IndicatorSet,
    ) -> Result<(CompiledIndex, BuildReport), BuildError> {
        if set.len() > u32::MAX as usize - 1 {
            return Err(BuildError::TooMany(set.len()));
        }
        let (layer, report) = self.layer_with_report(set.as_slice());
        let header = Header {
            format_version: snapshot::FORMAT_VERSION,
            set_version: self.set_version,
            created_at: self.created_at,
            indicator_count: 0,
            counts: Vec::new(),
            signed: false,
            digest: [0; 32],
        };
        Ok((CompiledIndex::of_layer(header, layer), report))
    }

    /// Compiles `set` into one layer (no header): a snapshot's, or a delta overlay's.
    /// Records are taken as they are, in order, without de-duplication: a delta overlay and
    /// a compaction keep every live record, as the index they rebuild held it.
    pub(crate) fn build_layer(&self, records: &[Indicator]) -> Layer {
        self.layer_with_report(records).0
    }

    fn layer_with_report(&self, records: &[Indicator]) -> (Layer, BuildReport) {
        let mut report = BuildReport::default();
        let mut meta = MetaBuilder::new();
        let mut ip = IpIndexBuilder::new();
        let mut names = DomainIndexBuilder::new();
        let mut urls = BytesIndexBuilder::new();
        let mut emails = BytesIndexBuilder::new();
        let mut ja4 = BytesIndexBuilder::new();
        let mut md5 = ExactIndexBuilder::<16>::new();
        let mut sha1 = ExactIndexBuilder::<20>::new();
        let mut sha256 = ExactIndexBuilder::<32>::new();
        let mut sha512 = ExactIndexBuilder::<64>::new();
        let mut ja3 = ExactIndexBuilder::<16>::new();
        let mut ja3s = ExactIndexBuilder::<16>::new();
        let mut subs = SubstringBuilder::new();
        for ind in records {
            if ind.tlp == Tlp::Red && !self.arm_red {
                report.red_not_armed += 1;
                continue;
            }
            // Parse once, first, so that an unusable value never takes an ordinal.
            let Some(key) = Key::parse(ind.kind, &ind.value) else {
                report.unusable += 1;
                continue;
            };
            let ord = meta.push(ind, ind.port);
            match key {
                Key::Addr(a) => ip.add_addr(a, ord),
                Key::Net(n) => ip.add_net(n, ord),
                Key::Pair(a, p) => ip.add_ip_port(a, p, ord),
                Key::Domain(v) => names.add_domain(v, ord),
                Key::Hostname(v) => names.add_hostname(v, ord),
                Key::Url(k2d) => urls.add(k2d.as_bytes(), ord),
                Key::Email(v) => emails.add(v, ord),
                Key::Ja4(v) => ja4.add(v, ord),
                Key::Md5(d) => md5.add(d, ord),
                Key::Ja3(d) => ja3.add(d, ord),
                Key::Ja3s(d) => ja3s.add(d, ord),
                Key::Sha1(d) => sha1.add(d, ord),
                Key::Sha256(d) => sha256.add(d, ord),
                Key::Sha512(d) => sha512.add(d, ord),
                Key::Substring(v, classes) => {
                    // Non-empty was checked in `Key::parse`, the only reason `add` refuses.
                    let _ = subs.add(v, classes, ord);
                }
            }
        }
        let layer = Layer {
            meta: meta.build(),
            ip: ip.build(),
            names: names.build(),
            urls: urls.build(),
            emails: emails.build(),
            ja4: ja4.build(),
            md5: md5.build(),
            sha1: sha1.build(),
            sha256: sha256.build(),
            sha512: sha512.build(),
            ja3: ja3.build(),
            ja3s: ja3s.build(),
            substrings: subs.build(),
        };
        (layer, report)
    }
}

/// An indicator value parsed into the key of the structure that holds it.
pub(crate) enum Key<'a> {
    Addr(IpAddr),
    Net(IpNet),
    Pair(IpAddr, u16),
    Domain(&'a [u8]),
    Hostname(&'a [u8]),
    Url(String),
    Email(&'a [u8]),
    Ja4(&'a [u8]),
    Md5([u8; 16]),
    Ja3([u8; 16]),
    Ja3s([u8; 16]),
    Sha1([u8; 20]),
    Sha256([u8; 32]),
    Sha512([u8; 64]),
    Substring(&'a [u8], u8),
}

impl<'a> Key<'a> {
    /// `None` when the stored value does not parse (never for a set built by ingest).
    pub(crate) fn parse(kind: Kind, v: &'a str) -> Option<Key<'a>> {
        let b = v.as_bytes();
        let non_empty = (!b.is_empty()).then_some(b);
        Some(match kind {
            Kind::Ipv4 | Kind::Ipv6 => Key::Addr(v.parse().ok()?),
            Kind::Cidr => Key::Net(v.parse().ok()?),
            Kind::IpPort => {
                let (a, p) = normalize::split_ip_port(v)?;
                Key::Pair(a, p)
            }
            Kind::Domain => Key::Domain(non_empty?),
            Kind::Hostname => Key::Hostname(non_empty?),
            Kind::Url => Key::Url(normalize::url(v).ok()?.k2d()),
            Kind::Email => Key::Email(non_empty?),
            Kind::Ja4 => Key::Ja4(non_empty?),
            Kind::Md5 => Key::Md5(parse_hex(b)?),
            Kind::Ja3 => Key::Ja3(parse_hex(b)?),
            Kind::Ja3s => Key::Ja3s(parse_hex(b)?),
            Kind::Sha1 => Key::Sha1(parse_hex(b)?),
            Kind::Sha256 => Key::Sha256(parse_hex(b)?),
            Kind::Sha512 => Key::Sha512(parse_hex(b)?),
            Kind::UrlSubstring | Kind::Uri | Kind::UserAgent => {
                Key::Substring(non_empty?, classes_of(kind))
            }
        })
    }
}

/// The lookup structures and metadata of one compiled set of indicators: a snapshot's
/// content, or the additions of applied deltas.
#[derive(Debug)]
pub(crate) struct Layer {
    pub(crate) meta: MetaTable,
    ip: IpIndex,
    names: DomainIndex,
    urls: BytesIndex,
    emails: BytesIndex,
    ja4: BytesIndex,
    md5: ExactIndex<16>,
    sha1: ExactIndex<20>,
    sha256: ExactIndex<32>,
    sha512: ExactIndex<64>,
    ja3: ExactIndex<16>,
    ja3s: ExactIndex<16>,
    substrings: SubstringIndex,
}

impl Layer {
    fn validate(&self) -> Result<(), FormatError> {
        self.meta.validate()?;
        self.ip.validate()?;
        self.names.validate()?;
        self.urls.validate()?;
        self.emails.validate()?;
        self.ja4.validate()?;
        self.md5.validate()?;
        self.sha1.validate()?;
        self.sha256.validate()?;
        self.sha512.validate()?;
        self.ja3.validate()?;
        self.ja3s.validate()?;
        self.substrings.validate()
    }

    fn write_sections(&self, w: &mut SectionWriter) {
        self.meta.write_sections(w);
        self.ip.write_sections(w);
        self.names.write_sections(w);
        self.urls.write_sections(w);
        self.emails.write_sections(w);
        self.ja4.write_sections(w);
        self.md5.write_sections(w);
        self.sha1.write_sections(w);
        self.sha256.write_sections(w);
        self.sha512.write_sections(w);
        self.ja3.write_sections(w);
        self.ja3s.write_sections(w);
        self.substrings.write_sections(w);
    }

    /// Reads every structure from `r`, in [`write_sections`](Self::write_sections) order.
    fn read_sections(r: &mut SectionReader) -> Result<Self, FormatError> {
        Ok(Layer {
            meta: MetaTable::read_sections(r)?,
            ip: IpIndex::read_sections(r)?,
            names: DomainIndex::read_sections(r)?,
            urls: BytesIndex::read_sections(r)?,
            emails: BytesIndex::read_sections(r)?,
            ja4: BytesIndex::read_sections(r)?,
            md5: ExactIndex::read_sections(r)?,
            sha1: ExactIndex::read_sections(r)?,
            sha256: ExactIndex::read_sections(r)?,
            sha512: ExactIndex::read_sections(r)?,
            ja3: ExactIndex::read_sections(r)?,
            ja3s: ExactIndex::read_sections(r)?,
            substrings: SubstringIndex::read_sections(r)?,
        })
    }

    fn lookup_ip(&self, ip: IpAddr, port: Option<u16>, out: &mut Vec<u32>) {
        self.ip.lookup_ip(ip, out);
        if let Some(p) = port {
            self.ip.lookup_ip_port(ip, p, out);
        }
    }

    fn lookup_digest(&self, kind: Kind, h: &[u8], out: &mut Vec<u32>) {
        match kind {
            Kind::Md5 => self.md5.lookup_hex(h, out),
            Kind::Sha1 => self.sha1.lookup_hex(h, out),
            Kind::Sha256 => self.sha256.lookup_hex(h, out),
            Kind::Sha512 => self.sha512.lookup_hex(h, out),
            Kind::Ja3 => self.ja3.lookup_hex(h, out),
            Kind::Ja3s => self.ja3s.lookup_hex(h, out),
            _ => {}
        }
    }

    fn lookup_bytes(&self, kind: Kind, key: &[u8], out: &mut Vec<u32>) {
        match kind {
            Kind::Email => self.emails.lookup(key, out),
            Kind::Ja4 => self.ja4.lookup(key, out),
            _ => {}
        }
    }

    fn heap_bytes(&self) -> u64 {
        (self.meta.heap_bytes()
            + self.ip.heap_bytes()
            + self.names.heap_bytes()
            + self.urls.heap_bytes()
            + self.emails.heap_bytes()
            + self.ja4.heap_bytes()
            + self.md5.heap_bytes()
            + self.sha1.heap_bytes()
            + self.sha256.heap_bytes()
            + self.sha512.heap_bytes()
            + self.ja3.heap_bytes()
            + self.ja3s.heap_bytes()
            + self.substrings.heap_bytes()) as u64
    }
}

/// What applied deltas changed of a base snapshot: base ordinals masked, and a small layer of
/// added indicators whose ordinals follow the base's.
#[derive(Debug)]
pub(crate) struct Overlay {
    /// Base ordinals the deltas removed.
    pub(crate) removed: RoaringBitmap,
    /// The indicators the deltas added (and did not remove again), in the order they came.
    pub(crate) added: Layer,
    /// The set version and identity of the snapshot the chain starts from.
    pub(crate) base: (u64, [u8; 32]),
    /// How many deltas have been applied since the base.
    pub(crate) applied: u32,
}

/// Every lookup structure over one indicator set: immutable, `Send + Sync`, shared by all
/// matching threads.
///
/// An index is a snapshot's structures, used in place, and after [`apply`](Self::apply)ing
/// deltas also an overlay: the base stays as it was mapped, lookups mask the removed base
/// ordinals and add the overlay's answers (ordinals after the base's). Without deltas a
/// lookup is one branch more than the base's own.
#[derive(Debug)]
pub struct CompiledIndex {
    header: Header,
    base: Arc<Layer>,
    overlay: Option<Arc<Overlay>>,
    /// Length of the snapshot it was loaded from, 0 when built.
    snapshot_bytes: u64,
}

/// Bytes used by one part of the index, for `cwn inspect`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PartSize {
    /// The part (`ip`, `names`, `metadata`, …).
    pub part: &'static str,
    /// Indicators it holds.
    pub indicators: u64,
    /// Bytes of its arrays.
    pub bytes: u64,
}

impl CompiledIndex {
    /// An index of one layer, its header counts taken from the layer.
    pub(crate) fn of_layer(mut header: Header, layer: Layer) -> Self {
        header.counts = counts_of(Meta::of(&layer.meta));
        header.indicator_count = layer.meta.len() as u64;
        CompiledIndex {
            header,
            base: Arc::new(layer),
            overlay: None,
            snapshot_bytes: 0,
        }
    }

    /// This index's base with `overlay` over it, under `header` (its counts recomputed).
    pub(crate) fn with_overlay(&self, mut header: Header, overlay: Overlay) -> Self {
        let meta = Meta::layered(&self.base.meta, &overlay.removed, &overlay.added.meta);
        header.counts = counts_of(meta);
        header.indicator_count = meta.live() as u64;
        CompiledIndex {
            header,
            base: self.base.clone(),
            overlay: Some(Arc::new(overlay)),
            snapshot_bytes: self.snapshot_bytes,
        }
    }

    /// The overlay of applied deltas, if any.
    pub(crate) fn overlay(&self) -> Option<&Overlay> {
        self.overlay.as_deref()
    }

    /// The header (versions, creation time, counts). With deltas applied: the last delta's
    /// set version, creation time and identity, and the counts of the indicators now live.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Per-indicator metadata.
    pub fn meta(&self) -> Meta<'_> {
        match &self.overlay {
            None => Meta::of(&self.base.meta),
            Some(o) => Meta::layered(&self.base.meta, &o.removed, &o.added.meta),
        }
    }

    /// Number of indicators (with deltas applied: those live).
    pub fn len(&self) -> usize {
        self.header.indicator_count as usize
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The set version and identity of the snapshot under the applied deltas, and how many
    /// deltas have been applied; `None` for a plain snapshot.
    pub fn delta_chain(&self) -> Option<(u64, [u8; 32], u32)> {
        self.overlay
            .as_ref()
            .map(|o| (o.base.0, o.base.1, o.applied))
    }

    /// Runs `f` on the base and, with deltas applied, on the overlay: base answers that are
    /// removed (or past the base, which only a crafted file gives) are dropped, the overlay's
    /// are shifted past the base.
    #[inline]
    fn each(&self, out: &mut Vec<u32>, f: impl Fn(&Layer, &mut Vec<u32>)) {
        let Some(o) = &self.overlay else {
            return f(&self.base, out);
        };
        let start = out.len();
        f(&self.base, out);
        let split = self.base.meta.len() as u32;
        if out.len() > start {
            let mut keep = start;
            for i in start..out.len() {
                let v = out[i];
                if v < split && !o.removed.contains(v) {
                    out[keep] = v;
                    keep += 1;
                }
            }
            out.truncate(keep);
        }
        let mid = out.len();
        f(&o.added, out);
        for v in &mut out[mid..] {
            *v = v.saturating_add(split);
        }
    }

    /// Every IP, CIDR (all covering networks) indicator for `ip`, and with a port the
    /// `ip:port` indicators of that pair. Port constraints of networks are the caller's to
    /// check (`meta().port`).
    #[inline]
    pub fn lookup_ip(&self, ip: IpAddr, port: Option<u16>, out: &mut Vec<u32>) {
        self.each(out, |l, out| l.lookup_ip(ip, port, out));
    }

    /// Whether any `ip:port` indicator has address `addr`, whatever its port.
    #[inline]
    pub fn has_port_pairs(&self, ip: IpAddr) -> bool {
        self.base.ip.has_port_pairs(ip)
            || self
                .overlay
                .as_ref()
                .is_some_and(|o| o.added.ip.has_port_pairs(ip))
    }

    /// `ip:port` indicators equal to `(ip, port)` only; [`lookup_ip`](Self::lookup_ip) gives
    /// those and the address ones together.
    #[inline]
    pub fn lookup_ip_port(&self, ip: IpAddr, port: u16, out: &mut Vec<u32>) {
        self.each(out, |l, out| l.ip.lookup_ip_port(ip, port, out));
    }

    /// Domain indicators equal to or above `name`, hostname indicators equal to it. `name`
    /// must be canonical (lower case, no trailing dot).
    #[inline]
    pub fn lookup_name(&self, name: &[u8], out: &mut Vec<u32>) {
        self.each(out, |l, out| l.names.lookup(name, out));
    }

    /// URL indicators with the same scheme-insensitive, fully decoded key (`K2d`).
    pub fn lookup_url(&self, url: &normalize::CanonicalUrl, out: &mut Vec<u32>) {
        let k = url.k2d();
        self.each(out, |l, out| l.urls.lookup(k.as_bytes(), out));
    }

    /// Digest indicators of `kind` equal to the canonical lower-case hex `hex`.
    pub fn lookup_digest(&self, kind: Kind, hex: &str, out: &mut Vec<u32>) {
        self.each(out, |l, out| l.lookup_digest(kind, hex.as_bytes(), out));
    }

    /// Exact e-mail or JA4 indicators equal to the canonical `key`.
    pub fn lookup_bytes(&self, kind: Kind, key: &[u8], out: &mut Vec<u32>) {
        self.each(out, |l, out| l.lookup_bytes(kind, key, out));
    }

    /// Substring indicators of the given classes that occur in `text`.
    #[inline]
    pub fn find_substrings(&self, text: &[u8], classes: u8, out: &mut Vec<u32>) {
        self.each(out, |l, out| l.substrings.find(text, classes, out));
    }

    /// Bytes per part, for reports (the base's parts; with deltas applied, one more line
    /// for the overlay).
    pub fn sizes(&self) -> Vec<PartSize> {
        let b = &self.base;
        let counts = counts_of(Meta::of(&b.meta));
        let count = |k: Kind| {
            Kind::ALL
                .iter()
                .position(|&x| x == k)
                .map_or(0, |i| counts[i])
        };
        let part = |part: &'static str, kinds: &[Kind], bytes: usize| PartSize {
            part,
            indicators: kinds.iter().map(|&k| count(k)).sum(),
            bytes: bytes as u64,
        };
        let all = b.meta.len() as u64;
        let fixed = b.meta.fixed_bytes();
        let mut parts = vec![
            PartSize {
                part: "metadata (fixed columns)",
                indicators: all,
                bytes: fixed as u64,
            },
            PartSize {
                part: "metadata (strings, tags, bitmaps)",
                indicators: all,
                bytes: (b.meta.heap_bytes() - fixed) as u64,
            },
            part(
                "ip, cidr, ip:port",
                &[Kind::Ipv4, Kind::Ipv6, Kind::Cidr, Kind::IpPort],
                b.ip.heap_bytes(),
            ),
            part(
                "domain, hostname",
                &[Kind::Domain, Kind::Hostname],
                b.names.heap_bytes(),
            ),
            part("url", &[Kind::Url], b.urls.heap_bytes()),
            part(
                "email, ja4",
                &[Kind::Email, Kind::Ja4],
                b.emails.heap_bytes() + b.ja4.heap_bytes(),
            ),
            part(
                "md5, ja3, ja3s",
                &[Kind::Md5, Kind::Ja3, Kind::Ja3s],
                b.md5.heap_bytes() + b.ja3.heap_bytes() + b.ja3s.heap_bytes(),
            ),
            part("sha1", &[Kind::Sha1], b.sha1.heap_bytes()),
            part("sha256", &[Kind::Sha256], b.sha256.heap_bytes()),
            part("sha512", &[Kind::Sha512], b.sha512.heap_bytes()),
            part(
                "url-substring, uri, user-agent",
                &[Kind::UrlSubstring, Kind::Uri, Kind::UserAgent],
                b.substrings.heap_bytes(),
            ),
        ];
        if let Some(o) = &self.overlay {
            parts.push(PartSize {
                part: "delta overlay (added; removed bitmap)",
                indicators: o.added.meta.len() as u64,
                bytes: o.added.heap_bytes() + o.removed.serialized_size() as u64,
            });
        }
        parts
    }

    /// Checks every structure's invariants, in O(n) (what `cwn inspect --check` runs; a load
    /// checks only what is O(1) per structure, see [`from_shared`](Self::from_shared)), and
    /// that all agree on the number of indicators.
    pub fn validate(&self) -> Result<(), FormatError> {
        self.base.validate()?;
        if let Some(o) = &self.overlay {
            o.added.validate()?;
            if o.removed
                .max()
                .is_some_and(|m| m as usize >= self.base.meta.len())
            {
                return Err(FormatError::new("index", "removed ordinal past the base"));
            }
        }
        self.check_counts()
    }

    /// Checks that the header counts agree with the metadata.
    fn check_counts(&self) -> Result<(), FormatError> {
        // Ordinals inside the structures are not cross-checked here (a flipped ordinal byte
        // breaks no structural invariant; the section digests catch corruption): the matcher
        // skips any ordinal at or past `len()`, so even a crafted file cannot make it panic.
        let n = self.meta().live() as u64;
        if self.header.counts.iter().sum::<u64>() != n || self.header.indicator_count != n {
            return Err(FormatError::new(
                "index",
                "header counts disagree with the metadata",
            ));
        }
        Ok(())
    }

    /// The snapshot bytes, signed when `key` is given. Deterministic. With deltas applied,
    /// the snapshot of the live indicators ([`compact`](Self::compact)).
    pub fn to_snapshot(&self, key: Option<&SigningKey>) -> Vec<u8> {
        if self.overlay.is_some() {
            return match self.compact() {
                Ok(c) => c.to_snapshot(key),
                // The live indicators compiled before; a rebuild of them cannot be refused.
                Err(e) => unreachable!("live indicators no longer compile: {e}"),
            };
        }
        let mut w = SectionWriter::new();
        self.base.write_sections(&mut w);
        snapshot::encode(
            self.header.set_version,
            self.header.created_at,
            &self.header.counts,
            &w.sections,
            key,
        )
    }

    /// The live indicators as one layer, in ordinal order: what a full compile of the
    /// inputs behind the applied deltas gives (same hits), with the last delta's set version
    /// and creation time. A plain snapshot's indicators are rebuilt as they are.
    ///
    /// # Errors
    /// When the rebuilt set does not compile (not for a set that compiled before).
    pub fn compact(&self) -> Result<CompiledIndex, BuildError> {
        self.compact_as(self.header.set_version, self.header.created_at)
    }

    /// [`compact`](Self::compact) under another set version and creation time (a new base
    /// published after a chain needs a version of its own).
    ///
    /// # Errors
    /// As [`compact`](Self::compact).
    pub fn compact_as(
        &self,
        set_version: u64,
        created_at: i64,
    ) -> Result<CompiledIndex, BuildError> {
        let m = self.meta();
        let mut strings = Interner::default();
        let records: Vec<Indicator> = m.ords().map(|o| m.indicator(o, &mut strings)).collect();
        if records.len() > u32::MAX as usize - 1 {
            return Err(BuildError::TooMany(records.len()));
        }
        let layer = IndexBuilder::new().arm_red(true).build_layer(&records);
        let header = Header {
            format_version: self.header.format_version,
            set_version,
            created_at,
            indicator_count: 0,
            counts: Vec::new(),
            signed: false,
            digest: [0; 32],
        };
        Ok(CompiledIndex::of_layer(header, layer))
    }

    /// Loads a snapshot held in memory: copies it once into an aligned buffer, then as
    /// [`open`](Self::open).
    pub fn from_snapshot(
        bytes: &[u8],
        verify: Option<&VerifyingKey>,
    ) -> Result<CompiledIndex, SnapshotError> {
        Self::from_shared(array::aligned_copy(bytes), verify)
    }

    /// Loads the snapshot file at `path` by mapping it into memory (read-only): the
    /// structures' arrays are views of the mapped file, so the load reads each page once, to
    /// check its digest, and copies nothing. Checks as [`from_shared`](Self::from_shared).
    ///
    /// The map is shared with whatever else maps the file: see the safety note in the code for
    /// why that is sound as cwn writes snapshots, and what an outside writer could do.
    #[allow(unsafe_code)]
    pub fn open(path: &Path, verify: Option<&VerifyingKey>) -> Result<CompiledIndex, OpenError> {
        let file = File::open(path).map_err(OpenError::Io)?;
        // SAFETY: `Mmap` hands out `&[u8]` over the file's pages, which Rust assumes do not
        // change while borrowed. cwn never changes a snapshot in place: every writer (`cwn
        // compile`, the hub's distribution) writes a temporary file and renames it over the
        // old name, which gives the name a new inode and leaves a mapped one untouched, so a
        // mapped inode is not modified by cwn. The residual risk is an outside writer
        // (another program, or an operator's `dd`) changing this very inode while it is
        // mapped: the bytes under the index could then change after their digests were
        // checked (a truncation would end the process with SIGBUS). That is no worse than a
        // process with write access to the file could do anyway; the lookups never trust the
        // bytes to stay well-formed (they are bounded against any content), and an operator
        // who cannot exclude such writers can use `from_snapshot`, which copies.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(OpenError::Io)?;
        Self::from_shared(Bytes::from_owner(map), verify).map_err(OpenError::Snapshot)
    }

    /// Loads a snapshot from a shared buffer, whose arrays the structures then view in place
    /// (copying only a section that is not aligned for its values, which `to_snapshot` never
    /// writes). Checks the whole container (see [`snapshot::decode`]: magic, version, header
    /// digest, signature, every section's bounds, padding and digest, the exact length) and,
    /// per structure, what costs O(1): array lengths consistent with each other and with the
    /// header counts. The O(n) invariants are [`validate`](Self::validate)'s, which a load
    /// does not run: lookups are bounded against any content, so a file that passes these
    /// checks but breaks an invariant (which takes a valid digest and signature over crafted
    /// sections) gives wrong answers, never a panic or a hang. With `verify`, the file must
    /// be signed by that key.
    pub fn from_shared(
        backing: Bytes,
        verify: Option<&VerifyingKey>,
    ) -> Result<CompiledIndex, SnapshotError> {
        let (header, ranges) = snapshot::decode_ranges(&backing, verify)?;
        if header.counts.len() != Kind::ALL.len() {
            return Err(FormatError::new(
                "header",
                format!(
                    "{} kinds counted, this build knows {}",
                    header.counts.len(),
                    Kind::ALL.len()
                ),
            )
            .into());
        }
        let snapshot_bytes = backing.len() as u64;
        let mut r = SectionReader::over(backing, ranges);
        let layer = Layer::read_sections(&mut r)?;
        if r.position() != r.len() {
            return Err(FormatError::new(
                "index",
                format!("{} sections, {} expected", r.len(), r.position()),
            )
            .into());
        }
        let index = CompiledIndex {
            header,
            base: Arc::new(layer),
            overlay: None,
            snapshot_bytes,
        };
        index.check_counts()?;
        Ok(index)
    }

    /// The length of the snapshot this index was loaded from (0 for one built in memory).
    pub fn snapshot_bytes(&self) -> u64 {
        self.snapshot_bytes
    }
}

/// Live indicators per kind, in [`Kind::ALL`] order.
pub(crate) fn counts_of(meta: Meta<'_>) -> Vec<u64> {
    let mut counts = vec![0u64; Kind::ALL.len()];
    for ord in meta.ords() {
        let k = meta.kind(ord);
        if let Some(i) = Kind::ALL.iter().position(|&x| x == k) {
            counts[i] += 1;
        }
    }
    counts
}

/// Why [`CompiledIndex::open`] failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file could not be opened or mapped.
    #[error("cannot read: {0}")]
    Io(std::io::Error),
    /// The file is not an acceptable snapshot.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::indicator::Indicator;

    /// A set with an indicator of most kinds, IPv6 ones included (whose `u128` arrays need
    /// 16-byte alignment).
    fn mixed_set() -> IndicatorSet {
        let src: Arc<str> = Arc::from("t");
        let mut set = IndicatorSet::new();
        for (i, (k, v)) in [
            (Kind::Domain, "evil.example"),
            (Kind::Hostname, "mail.bad.example"),
            (Kind::Ipv4, "198.51.100.23"),
            (Kind::Ipv6, "2001:db8::1"),
            (Kind::Cidr, "2001:db8:1::/48"),
            (Kind::Cidr, "203.0.113.0/28"),
            (Kind::IpPort, "[2001:db8::2]:443"),
            (Kind::Url, "http://evil.example/gate.php"),
            (Kind::Uri, "/gate.php"),
            (Kind::Sha256, &"ab".repeat(32)),
            (Kind::Md5, &"cd".repeat(16)),
            (Kind::Email, "a@evil.example"),
        ]
        .into_iter()
        .enumerate()
        {
            set.insert(Indicator::new(
                format!("i{i}"),
                k,
                v,
                src.clone(),
                Tlp::Green,
            ))
            .unwrap();
        }
        set
    }

    /// Every lookup the set's values should answer, as one sorted list.
    fn answers(index: &CompiledIndex) -> Vec<u32> {
        let mut out = Vec::new();
        index.lookup_name(b"a.evil.example", &mut out);
        index.lookup_name(b"mail.bad.example", &mut out);
        for ip in [
            "198.51.100.23",
            "2001:db8::1",
            "2001:db8:1::9",
            "203.0.113.9",
        ] {
            index.lookup_ip(ip.parse().unwrap(), None, &mut out);
        }
        index.lookup_ip("2001:db8::2".parse().unwrap(), Some(443), &mut out);
        index.lookup_digest(Kind::Sha256, &"ab".repeat(32), &mut out);
        index.lookup_digest(Kind::Md5, &"cd".repeat(16), &mut out);
        index.lookup_bytes(Kind::Email, b"a@evil.example", &mut out);
        index.find_substrings(
            b"/x/gate.php?y",
            crate::index::substring::CLASS_URL,
            &mut out,
        );
        index.lookup_url(&normalize::url("EVIL.example/gate.php").unwrap(), &mut out);
        out.sort_unstable();
        out
    }

    #[test]
    fn open_maps_the_file_and_answers_as_the_built_index() {
        let built = IndexBuilder::new().build(&mixed_set()).unwrap();
        let want = answers(&built);
        assert_eq!(want, (0..12).collect::<Vec<u32>>(), "every indicator found");
        let bytes = built.to_snapshot(None);
        assert_eq!(bytes.len() % snapshot::SECTION_ALIGN, 0);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("set.cwnsnap");
        std::fs::write(&path, &bytes).unwrap();
        let opened = CompiledIndex::open(&path, None).unwrap();
        opened.validate().unwrap();
        assert_eq!(answers(&opened), want);
        assert_eq!(opened.snapshot_bytes(), bytes.len() as u64);
        assert_eq!(opened.to_snapshot(None), bytes, "deterministic round trip");
        assert!(matches!(
            CompiledIndex::open(&dir.path().join("missing"), None),
            Err(OpenError::Io(_))
        ));
    }

    #[test]
    fn a_misaligned_buffer_loads_through_copies() {
        let built = IndexBuilder::new().build(&mixed_set()).unwrap();
        let bytes = built.to_snapshot(None);
        // The snapshot 8 bytes into a 16-aligned buffer: every u128 section is misaligned.
        let mut shifted = vec![0u8; 8];
        shifted.extend_from_slice(&bytes);
        let backing = array::aligned_copy(&shifted).slice(8..);
        let index = CompiledIndex::from_shared(backing.clone(), None).unwrap();
        index.validate().unwrap();
        assert_eq!(answers(&index), answers(&built));
        assert!(
            !index.base.ip.v6.exact_keys_view_of(&backing),
            "u128 keys copied"
        );
        assert!(
            index.base.meta.kinds_view_of(&backing),
            "bytes viewed in place"
        );
    }

    #[test]
    fn a_flipped_byte_or_a_truncation_is_refused_by_both_loaders() {
        let bytes = IndexBuilder::new()
            .build(&mixed_set())
            .unwrap()
            .to_snapshot(None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.cwnsnap");
        let step = bytes.len() / 97 + 1;
        for i in (0..bytes.len()).step_by(step).chain([bytes.len() - 1]) {
            let mut b = bytes.clone();
            b[i] ^= 0x20;
            assert!(
                CompiledIndex::from_snapshot(&b, None).is_err(),
                "flip at {i}"
            );
            std::fs::write(&path, &b).unwrap();
            assert!(
                CompiledIndex::open(&path, None).is_err(),
                "flip at {i}, mapped"
            );
            assert!(
                CompiledIndex::from_snapshot(&bytes[..i], None).is_err(),
                "cut at {i}"
            );
            std::fs::write(&path, &bytes[..i]).unwrap();
            assert!(
                CompiledIndex::open(&path, None).is_err(),
                "cut at {i}, mapped"
            );
        }
    }

    #[test]
    fn snapshot_round_trip_reads_every_part_back() {
        let src: Arc<str> = Arc::from("t");
        let mut set = IndicatorSet::new();
        for (i, (k, v)) in [
            (Kind::Domain, "evil.example"),
            (Kind::Ipv4, "198.51.100.23"),
            (Kind::Cidr, "203.0.113.0/28"),
            (Kind::Url, "http://evil.example/gate.php"),
            (Kind::Uri, "/gate.php"),
            (Kind::Sha256, &"ab".repeat(32)),
            (Kind::Email, "a@evil.example"),
        ]
        .into_iter()
        .enumerate()
        {
            set.insert(Indicator::new(
                format!("i{i}"),
                k,
                v,
                src.clone(),
                Tlp::Green,
            ))
            .unwrap();
        }
        let index = IndexBuilder::new().created_at(7).build(&set).unwrap();
        let mut w = SectionWriter::new();
        index.base.names.write_sections(&mut w);
        assert_eq!(w.sections.len(), DomainIndex::SECTIONS);
        let bytes = index.to_snapshot(None);
        let back = CompiledIndex::from_snapshot(&bytes, None).unwrap();
        back.validate().unwrap();
        assert_eq!(back.len(), 7);
        assert_eq!(back.header().created_at, 7);
        let mut out = Vec::new();
        back.lookup_name(b"a.evil.example", &mut out);
        back.lookup_ip("203.0.113.9".parse().unwrap(), None, &mut out);
        back.lookup_digest(Kind::Sha256, &"ab".repeat(32), &mut out);
        back.lookup_bytes(Kind::Email, b"a@evil.example", &mut out);
        back.find_substrings(
            b"/x/gate.php?y",
            crate::index::substring::CLASS_URL,
            &mut out,
        );
        back.lookup_url(
            &crate::indicator::normalize::url("EVIL.example/gate.php").unwrap(),
            &mut out,
        );
        out.sort_unstable();
        assert_eq!(out, [0, 2, 3, 4, 5, 6]);
        assert_eq!(bytes, back.to_snapshot(None), "deterministic round trip");
    }
}
