//! Entry points shared by the cargo-fuzz targets in `fuzz/` and the seed-corpus regression
//! tests in `tests/`: each takes arbitrary bytes, runs one parser, and asserts the invariants
//! that must hold for any input (no panic, every record accounted for, normalisation
//! idempotent). Not part of the stable API.

use std::sync::Arc;

use crate::indicator::normalize;
use crate::ingest::{self, Batch, Detected, Ingest, Item, SourceOptions};

fn check_batch(batch: &Batch) {
    for item in &batch.items {
        match item {
            Item::Indicator { indicator, .. } => {
                // What a parser accepted must already be canonical.
                let again = normalize::normalize_as(indicator.kind, &indicator.value)
                    .unwrap_or_else(|e| {
                        panic!("accepted {indicator:?} does not re-normalise: {e}")
                    });
                assert_eq!(
                    again.value, indicator.value,
                    "not idempotent: {indicator:?}"
                );
                assert!(!indicator.id.is_empty());
            }
            Item::Rejected(r) => assert!(!r.reason.is_empty(), "reject without reason: {r:?}"),
        }
    }
}

fn fold(batch: Batch) {
    let n = batch.items.len() as u64;
    let mut driver = Ingest::new(None);
    driver.add(batch);
    assert_eq!(driver.report().total(), n, "every item counted once");
}

/// Parses `data` as one source of the given format and checks the batch's invariants.
fn parse_and_check(detected: Detected, name: &str, data: &[u8]) {
    let batch = ingest::parse_bytes(detected, name, data, &SourceOptions::default());
    check_batch(&batch);
    fold(batch);
}

/// A plain list.
pub fn plain_list(data: &[u8]) {
    parse_and_check(Detected::Plain, "fuzz.txt", data);
}

/// A CSV list.
pub fn csv_list(data: &[u8]) {
    parse_and_check(Detected::Csv, "fuzz.csv", data);
}

/// A MISP event document.
pub fn misp_event(data: &[u8]) {
    parse_and_check(Detected::Misp, "fuzz.json", data);
}

/// A STIX bundle.
pub fn stix_bundle(data: &[u8]) {
    parse_and_check(Detected::Stix, "fuzz.json", data);
}

/// A warninglist `list.json`: parsing never panics, a loaded list is internally consistent,
/// and checking indicators of every kind against it never panics.
pub fn warninglist(data: &[u8]) {
    let Ok(lists) = ingest::Warninglists::parse("fuzz/list.json", data) else {
        return;
    };
    lists.validate();
    let src: Arc<str> = Arc::from("fuzz");
    for raw in [
        "198.51.100.53",
        "2001:db8:53::1",
        "203.0.113.0/24",
        "198.51.100.53:53",
        "a.b.example.com",
        "http://update.example.net/check.php",
        "/check.php",
        "abuse@example.org",
        "d41d8cd98f00b204e9800998ecf8427e",
    ] {
        if let Ok(n) = normalize::guess(raw) {
            let ind = crate::indicator::Indicator::new(
                "x",
                n.kind,
                n.value,
                src.clone(),
                crate::indicator::Tlp::Clear,
            );
            let _ = lists.check(&ind);
        }
    }
}

/// One value through every normaliser: no panic, and `guess` is idempotent.
pub fn normalize_value(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(n) = normalize::guess(s) {
        let again = normalize::normalize_as(n.kind, &n.value)
            .unwrap_or_else(|e| panic!("guess({s:?}) = {n:?} does not re-normalise: {e}"));
        assert_eq!(again.value, n.value, "guess({s:?}) not idempotent");
        assert_eq!(again.kind, n.kind, "guess({s:?}) kind changed");
    }
    let _ = normalize::refang(s);
    if let Ok(u) = normalize::url(s) {
        let k1 = u.k1();
        let again = normalize::url(&k1).unwrap_or_else(|e| panic!("K1 {k1:?} of {s:?}: {e}"));
        assert_eq!(again.k1(), k1, "url({s:?}) not idempotent");
        let _ = (u.k2(), u.k2d(), u.k3());
    }
    for k in crate::indicator::Kind::ALL {
        let _ = normalize::indicator_value(k, s);
    }
    let _ = normalize::email(s);
}

/// A STIX pattern: parse never panics; what parses prints to text that parses to the same
/// pattern (compared printed, since source positions differ); compiling never panics.
pub fn stix_pattern(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = ingest::stix::pattern::parse(s) {
        let printed = p.to_string();
        let again = ingest::stix::pattern::parse(&printed)
            .unwrap_or_else(|e| panic!("{s:?} printed as {printed:?} does not parse: {e}"));
        assert_eq!(again.to_string(), printed, "round trip changed {s:?}");
        let _ = ingest::stix::compile::compile(&p);
    }
}

/// A snapshot file: loading never panics, and whatever loads answers lookups of every kind
/// without panicking. (Random bytes rarely get past the digests: [`snapshot_sections`] fuzzes
/// the structures behind them.)
pub fn snapshot(data: &[u8]) {
    let Ok(index) = crate::index::CompiledIndex::from_snapshot(data, None) else {
        return;
    };
    look_up_everything(&index);
    let _ = index.validate();
}

/// Splits fuzz input into sections: each a little-endian `u32` length, then that many bytes
/// (fewer if the input ends first).
fn split_sections(mut data: &[u8]) -> Vec<Vec<u8>> {
    let mut sections = Vec::new();
    while let Some((len, rest)) = data.split_first_chunk::<4>() {
        let n = (u32::from_le_bytes(*len) as usize).min(rest.len());
        sections.push(rest[..n].to_vec());
        data = &rest[n..];
    }
    sections
}

/// The input of [`snapshot_sections`] (or of [`delta_sections`]) that holds the sections of
/// `file`, a snapshot or a delta (for seeds).
pub fn sections_input(file: &[u8]) -> Option<Vec<u8>> {
    use crate::index::{delta, snapshot};
    let magic = if file.starts_with(&delta::MAGIC) {
        delta::MAGIC
    } else {
        snapshot::MAGIC
    };
    let (_, ranges) = snapshot::decode_ranges_as(magic, file, None).ok()?;
    let mut out = Vec::new();
    for r in ranges {
        out.extend_from_slice(&(r.len() as u32).to_le_bytes());
        out.extend_from_slice(&file[r]);
    }
    Some(out)
}

/// The fixed base [`delta_sections`] applies deltas to: a few indicators of most kinds,
/// loaded from their snapshot so that they have an identity.
pub fn delta_base() -> &'static crate::index::CompiledIndex {
    use crate::indicator::{Indicator, IndicatorSet, Kind, Tlp};
    static BASE: std::sync::OnceLock<crate::index::CompiledIndex> = std::sync::OnceLock::new();
    BASE.get_or_init(|| {
        let src: Arc<str> = Arc::from("base");
        let mut set = IndicatorSet::new();
        for (i, (k, v)) in [
            (Kind::Domain, "evil.example"),
            (Kind::Hostname, "mail.bad.example"),
            (Kind::Ipv4, "198.51.100.23"),
            (Kind::Cidr, "2001:db8:1::/48"),
            (Kind::IpPort, "[2001:db8::2]:443"),
            (Kind::Url, "http://evil.example/gate.php"),
            (Kind::Uri, "/gate.php"),
            (Kind::Md5, "d41d8cd98f00b204e9800998ecf8427e"),
            (Kind::Email, "phisher@example.org"),
        ]
        .into_iter()
        .enumerate()
        {
            let _ = set.insert(Indicator::new(
                format!("b{i}"),
                k,
                v,
                src.clone(),
                Tlp::Green,
            ));
        }
        let built = crate::index::IndexBuilder::new()
            .build(&set)
            .expect("a fixed set compiles");
        crate::index::CompiledIndex::from_snapshot(&built.to_snapshot(None), None)
            .expect("its own snapshot loads")
    })
}

/// A delta in a valid `CWNDELTA` container over arbitrary sections: the input is split into
/// sections ([`sections_input`] makes one from a delta file), the first replaced by a
/// reference to [`delta_base`] so that decoding gets as far as applying. Whatever decodes is
/// applied; whatever applies must answer lookups of every kind, `validate` and compact
/// without panicking or hanging, and cannot be applied a second time.
pub fn delta_sections(data: &[u8]) {
    use crate::index::delta::{self, Delta, StateRef};
    let base = delta_base();
    let mut sections = split_sections(data);
    if sections.is_empty() {
        return;
    }
    let r = StateRef::of(base);
    let mut first = r.set_version.to_le_bytes().to_vec();
    first.extend_from_slice(&r.digest);
    first.extend_from_slice(&r.ordinals.to_le_bytes());
    sections[0] = first;
    // The header counts must agree with the additions: their first column has a byte each.
    let n = sections.get(2).map_or(0, |s| s.len() as u64);
    let mut counts = vec![0u64; crate::indicator::Kind::ALL.len()];
    counts[0] = n;
    let bytes = crate::index::snapshot::encode_as(
        delta::MAGIC,
        r.set_version + 1,
        0,
        &counts,
        &sections,
        None,
    );
    let Ok(d) = Delta::from_bytes(&bytes, None) else {
        return;
    };
    let Ok(index) = base.apply(&d) else {
        return;
    };
    look_up_everything(&index);
    let _ = index.sizes();
    assert!(index.validate().is_ok(), "an applied delta validates");
    assert!(index.apply(&d).is_err(), "a delta applies once");
    let compacted = index.compact().expect("live records compile again");
    assert_eq!(compacted.len(), index.len());
}

/// Arbitrary sections in a valid container: the input is split into sections
/// ([`sections_input`] makes one from a snapshot), encoded with matching digests and header
/// counts, and loaded. Whatever loads must answer lookups of every kind, and run its full
/// `validate`, without panicking or hanging, whether or not `validate` accepts it.
pub fn snapshot_sections(data: &[u8]) {
    let sections = split_sections(data);
    // The header's counts must agree with the metadata: its first column has a byte per
    // indicator.
    let n = sections.first().map_or(0, |s| s.len() as u64);
    let mut counts = vec![0u64; crate::indicator::Kind::ALL.len()];
    counts[0] = n;
    let bytes = crate::index::snapshot::encode(1, 0, &counts, &sections, None);
    let Ok(index) = crate::index::CompiledIndex::from_snapshot(&bytes, None) else {
        return;
    };
    look_up_everything(&index);
    let _ = index.sizes();
    if index.validate().is_ok() {
        // Valid structures may still disagree with the metadata (values are not
        // cross-checked), so this only asks that a valid index answer its own values.
        look_up_everything(&index);
    }
}

/// Looks up fixed values of every kind, and the stored values of the first indicators, in
/// `index`, directly and through a matcher; reads the metadata of whatever matched.
fn look_up_everything(index: &crate::index::CompiledIndex) {
    use crate::index::substring::CLASS_ALL;
    use crate::indicator::Kind;
    let mut out = Vec::new();
    let m = index.meta();
    for o in m.ords().take(64) {
        let (kind, v) = (m.kind(o), m.value(o));
        let _ = (
            m.id(o),
            m.source(o),
            m.origin(o),
            m.tags(o).count(),
            m.tlp(o),
        );
        let _ = (m.validity(o), m.port(o), m.direction(o), m.sharing_group(o));
        match kind {
            Kind::Ipv4 | Kind::Ipv6 => {
                if let Ok(ip) = v.parse() {
                    index.lookup_ip(ip, Some(80), &mut out);
                }
            }
            Kind::Cidr => {
                if let Ok(net) = v.parse::<ipnet::IpNet>() {
                    index.lookup_ip(net.network(), None, &mut out);
                    index.lookup_ip(net.broadcast(), None, &mut out);
                }
            }
            Kind::IpPort => {
                if let Some((ip, p)) = normalize::split_ip_port(v) {
                    index.lookup_ip(ip, Some(p), &mut out);
                }
            }
            Kind::Domain | Kind::Hostname => {
                index.lookup_name(v.as_bytes(), &mut out);
                index.lookup_name(format!("a.{v}").as_bytes(), &mut out);
            }
            Kind::Url => {
                if let Ok(u) = normalize::url(v) {
                    index.lookup_url(&u, &mut out);
                }
            }
            Kind::Email | Kind::Ja4 => index.lookup_bytes(kind, v.as_bytes(), &mut out),
            Kind::UrlSubstring | Kind::Uri | Kind::UserAgent => {
                index.find_substrings(format!("x{v}y").as_bytes(), CLASS_ALL, &mut out);
            }
            _ => index.lookup_digest(kind, v, &mut out),
        }
    }
    for ip in [
        "198.51.100.23",
        "10.0.0.1",
        "2001:db8:bad::10",
        "::ffff:10.1.2.3",
        "::1",
    ] {
        if let Ok(ip) = ip.parse() {
            index.lookup_ip(ip, Some(8443), &mut out);
        }
    }
    for name in ["a.bad-login.example.com", "localhost", "", ".", "a..b"] {
        index.lookup_name(name.as_bytes(), &mut out);
    }
    for kind in Kind::ALL {
        index.lookup_digest(kind, "d41d8cd98f00b204e9800998ecf8427e", &mut out);
        index.lookup_bytes(kind, b"phisher@example.org", &mut out);
    }
    index.find_substrings(
        b"GET /gate.php?x=/wp-admin/ Mozilla/5.0 (evil)",
        CLASS_ALL,
        &mut out,
    );
    let fields = crate::telemetry::FieldMap::from_specs(
        [
            "ip=ip",
            "p=port@ip",
            "d=domain",
            "u=url",
            "h=hash",
            "m=email",
            "j=ja4",
            "t=text",
        ]
        .iter()
        .filter_map(|s| s.parse().ok()),
    )
    .unwrap_or_default();
    let matcher = crate::matcher::Matcher::new(index, &fields, 0);
    let mut out = Vec::new();
    for (kind, v) in [
        ("ip", "198.51.100.23"),
        ("ip", "2001:db8:bad::10"),
        ("d", "a.bad-login.example.com"),
        ("u", "http://bad-login.example.com/owa/auth.php?id=1"),
        ("h", "d41d8cd98f00b204e9800998ecf8427e"),
        ("m", "phisher@example.org"),
        ("j", "t13d1516h2_8daaf6152771_e5627efa2ab1"),
        ("t", "/gate.php Mozilla"),
    ] {
        if let Some(spec) = fields.fields().iter().find(|f| f.name == kind) {
            matcher.lookup(&spec.kind, v, Some(8443), &mut out);
        }
    }
    for o in out.iter().map(|&o| crate::indicator::IndicatorId::new(o)) {
        if o.as_usize() < m.len() {
            let _ = (m.id(o), m.value(o), m.source(o), m.tags(o).count());
        }
    }
}

/// Telemetry in every line-oriented format: reading never panics, every batch has one entry
/// per row in each column, row numbers run on without gaps, and matching never panics.
pub fn telemetry(data: &[u8]) {
    use crate::telemetry::{FieldMap, InputFormat, read_all};
    let Ok(fields) = FieldMap::from_specs(
        [
            "ts=time",
            "id.orig_h=ip",
            "id.resp_p=port@id.orig_h",
            "query=domain",
            "a.b=url",
            "c=text",
        ]
        .iter()
        .filter_map(|s| s.parse().ok()),
    ) else {
        return;
    };
    for format in [InputFormat::Jsonl, InputFormat::Zeek, InputFormat::Csv] {
        let Ok(batches) = read_all(std::io::Cursor::new(data.to_vec()), "fuzz", format, &fields)
        else {
            continue;
        };
        let mut next_row = 0;
        for b in &batches {
            assert_eq!(b.first_row, next_row, "{format}: row numbers have a gap");
            assert_eq!(b.batch.num_columns(), fields.fields().len());
            next_row += b.batch.num_rows() as u64;
            assert!(b.errors.iter().all(|e| e.row < next_row && e.line > 0));
        }
    }
}

/// Wire frames as a byte stream: `check` and `decode` never panic; every frame that decodes
/// re-encodes to exactly its bytes (the encoding is canonical) and decodes again to itself;
/// a notification that decodes re-encodes to its bytes.
pub fn frame(data: &[u8]) {
    use crate::hub::{Notification, frame};
    let _ = frame::decode(data);
    let mut rest = data;
    while let Ok(Some(n)) = frame::check(rest) {
        assert!(n <= frame::MAX_FRAME_LEN && n <= rest.len());
        let whole = &rest[..n];
        if let Ok(f) = frame::decode(whole) {
            let again = frame::to_bytes(&f)
                .unwrap_or_else(|e| panic!("{f:?} decoded but does not encode: {e}"));
            assert_eq!(again, whole, "not canonical: {f:?}");
            assert_eq!(frame::decode(&again).as_ref(), Ok(&f));
        }
        rest = &rest[n..];
    }
    if let Ok(n) = Notification::decode(data) {
        assert_eq!(n.to_bytes(), data, "notification not canonical");
    }
}

/// The hub's own files: the first byte picks the write-ahead journal or the acked-offset
/// table, the rest is the file. What parses must encode back to the same bytes; nothing
/// panics, and a journal's intact records are exactly the prefix before the damage.
pub fn hub_files(data: &[u8]) {
    use crate::hub::{journal, offsets};
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    if which & 1 == 0 {
        let mut records = Vec::new();
        let stopped = journal::parse(bytes, &mut records);
        let mut again = journal::JOURNAL_MAGIC.to_vec();
        for r in &records {
            journal::encode(&mut again, r.entity, r.offset, r.time_ms, &r.payload);
        }
        match stopped {
            None => assert_eq!(again, bytes, "an intact journal re-encodes to itself"),
            Some(at) if at > 0 => {
                assert_eq!(
                    again.len() as u64,
                    at,
                    "the records read end where reading stopped"
                );
                assert_eq!(again, bytes[..at as usize]);
            }
            Some(_) => assert!(records.is_empty()),
        }
    } else if let Ok(entries) = offsets::parse_table(bytes, std::path::Path::new("fuzz")) {
        assert_eq!(
            offsets::encode_table(&entries),
            bytes,
            "a table re-encodes to itself"
        );
    }
}

/// A telemetry batch as a partner sends it (Arrow IPC with its field map): measuring its
/// expansion and decoding never panic, a decoded batch never expands past the limit it was
/// decoded under, and routing it never panics.
#[cfg(feature = "net")]
pub fn telemetry_batch(data: &[u8]) {
    use crate::net::batch::{decode_telemetry, expanded_size};
    const LIMIT: u64 = 4 << 20;
    let measured = expanded_size(data, LIMIT);
    let Ok(t) = decode_telemetry(data, LIMIT) else {
        return;
    };
    assert!(measured.is_ok_and(|n| n <= LIMIT));
    assert!(t.input.len() <= crate::net::batch::MAX_INPUT_NAME);
    let mut set = crate::indicator::IndicatorSet::new();
    for (i, v) in ["evil.test", "10.0.0.0/8"].iter().enumerate() {
        let Ok(n) = normalize::guess(v) else { continue };
        let _ = set.insert(crate::indicator::Indicator::new(
            format!("i{i}"),
            n.kind,
            n.value,
            Arc::from("fuzz"),
            crate::indicator::Tlp::Green,
        ));
    }
    let Ok(index) = crate::index::IndexBuilder::new().build(&set) else {
        return;
    };
    let m = crate::matcher::Matcher::new(&index, &t.fields, 0);
    let mut hits = Vec::new();
    m.match_record_batch(&t.batch, t.first_row, &mut hits);
    let registry = crate::route::registry::Registry::synthetic(8, 1);
    let router = crate::route::Router::new(registry, crate::route::RoutePolicy::default());
    let reg = router.registry();
    let routed = crate::route::route_batch(
        &router,
        &crate::route::MatchedBatch {
            index: &index,
            fields: &t.fields,
            batch: &t.batch,
            first_row: t.first_row,
            input: &t.input,
            hits: &hits,
            digest: 0,
            retro: false,
        },
        crate::route::BatchParties {
            partner: reg.iter().last().map(|(o, _)| o).expect("entities"),
            publisher: reg.by_id("ncsc"),
        },
        0,
        jiff::Timestamp::UNIX_EPOCH,
    );
    for n in &routed.notifications {
        assert!(
            n.notification.payload.len() < 64 << 10,
            "unbounded notification"
        );
    }
}

/// The status page's HTTP request parser: never panics, and what parses lies within the
/// head it was given.
pub fn http_request(data: &[u8]) {
    use crate::status::http::parse_request;
    if let Ok(r) = parse_request(data) {
        assert!(r.path.len() <= data.len());
        assert!(r.path.starts_with('/'), "{:?}", r.path);
        // Routing, the per-entity paths' percent-decoding included, never panics.
        let m = crate::status::metrics::Metrics::default();
        m.seen("x y", jiff::Timestamp::UNIX_EPOCH);
        let resp = crate::status::http::respond(&m, &r, jiff::Timestamp::UNIX_EPOCH);
        assert!(!resp.to_bytes().is_empty());
    }
}

/// The DER reader of client certificates: never panics on any bytes, and what it reads
/// comes from them (nothing longer than the input).
#[cfg(feature = "net")]
pub fn certificate(data: &[u8]) {
    if let Ok(id) = crate::net::der::identity(data) {
        assert!(id.uris.iter().all(|u| u.len() <= data.len()));
        assert!(id.subject_attrs.iter().all(|(_, v)| v.len() <= data.len()));
    }
}

/// Bytes to a small indicator set and rows of domain and address values, matched by the
/// compiled index (plain, dictionary-encoded and list-of-dictionary columns) and by a naive
/// linear scan: the hits must be the same.
pub fn matcher_vs_naive(data: &[u8]) {
    use std::collections::BTreeSet;
    use std::net::{IpAddr, Ipv4Addr};

    use arrow_array::builder::{StringBuilder, StringDictionaryBuilder};
    use arrow_array::types::Int32Type;
    use arrow_array::{ArrayRef, RecordBatch};

    use crate::indicator::{Indicator, IndicatorSet, Kind, Tlp};
    use crate::telemetry::FieldMap;

    struct Bytes<'a>(&'a [u8], usize);
    impl Bytes<'_> {
        fn next(&mut self) -> u8 {
            let b = self.0.get(self.1).copied().unwrap_or(0);
            self.1 += 1;
            b
        }
        fn done(&self) -> bool {
            self.1 >= self.0.len()
        }
        fn name(&mut self) -> String {
            const LABELS: [&str; 6] = ["a", "b", "c", "ab", "x-y", "evil"];
            let n = 1 + self.next() % 3;
            (0..n)
                .map(|_| LABELS[(self.next() % 6) as usize])
                .collect::<Vec<_>>()
                .join(".")
        }
        fn addr(&mut self) -> Ipv4Addr {
            Ipv4Addr::new(10, self.next() % 2, self.next() % 3, self.next() % 4)
        }
    }
    let mut b = Bytes(data, 0);
    let mut set = IndicatorSet::new();
    for i in 0..b.next() % 8 {
        let (kind, value) = match b.next() % 4 {
            0 => (Kind::Domain, b.name()),
            1 => (Kind::Hostname, b.name()),
            2 => (Kind::Ipv4, b.addr().to_string()),
            _ => {
                let len = [8u8, 16, 24, 32][(b.next() % 4) as usize];
                let net = ipnet::Ipv4Net::new(b.addr(), len)
                    .expect("valid length")
                    .trunc();
                (Kind::Cidr, net.to_string())
            }
        };
        let Ok(n) = normalize::normalize_as(kind, &value) else {
            continue;
        };
        let _ = set.insert(Indicator::new(
            format!("i{i}"),
            n.kind,
            n.value,
            Arc::from(format!("s{i}").as_str()),
            Tlp::Green,
        ));
    }
    let mut rows: Vec<(Option<String>, Option<String>)> = Vec::new();
    while !b.done() && rows.len() < 64 {
        let name = match b.next() % 4 {
            0 => None,
            1 => Some(b.name().to_ascii_uppercase()),
            2 => Some(format!("{}.", b.name())),
            _ => Some(b.name()),
        };
        let addr = (b.next() % 3 != 0).then(|| b.addr().to_string());
        rows.push((name, addr));
    }
    let Ok(index) = crate::index::IndexBuilder::new().build(&set) else {
        return;
    };
    let fields = FieldMap::from_specs(["d=domain", "a=ip"].iter().filter_map(|s| s.parse().ok()))
        .expect("valid map");
    // The naive answer: every indicator against every value.
    let mut want: BTreeSet<(u64, usize, String)> = BTreeSet::new();
    for (r, (name, addr)) in rows.iter().enumerate() {
        let d = name.as_deref().and_then(|n| normalize::domain(n).ok());
        let a = addr.as_deref().and_then(|a| normalize::ip(a).ok());
        for (_, ind) in set.iter() {
            let by_name = d.as_deref().is_some_and(|d| match ind.kind {
                Kind::Domain => d == ind.value || d.ends_with(&format!(".{}", ind.value)),
                Kind::Hostname => d == ind.value,
                _ => false,
            });
            if by_name {
                want.insert((r as u64, 0, ind.id.clone()));
            }
            let by_addr = a.is_some_and(|a| match ind.kind {
                Kind::Ipv4 => ind.value.parse::<IpAddr>() == Ok(a),
                Kind::Cidr => ind
                    .value
                    .parse::<ipnet::IpNet>()
                    .is_ok_and(|n| n.contains(&a)),
                _ => false,
            });
            if by_addr {
                want.insert((r as u64, 1, ind.id.clone()));
            }
        }
    }
    let m = crate::matcher::Matcher::new(&index, &fields, 0);
    // The same values as plain strings, as a dictionary, and as one-element lists of a
    // dictionary (a Parquet list column read as one; a null value is a null list).
    for form in ["plain", "dictionary", "list of dictionary"] {
        let col = |vals: Vec<Option<&str>>| -> ArrayRef {
            match form {
                "dictionary" => {
                    let mut c = StringDictionaryBuilder::<Int32Type>::new();
                    vals.into_iter().for_each(|v| c.append_option(v));
                    Arc::new(c.finish())
                }
                "list of dictionary" => {
                    let mut c = arrow_array::builder::ListBuilder::new(StringDictionaryBuilder::<
                        Int32Type,
                    >::new(
                    ));
                    for v in vals {
                        if let Some(v) = v {
                            c.values().append_value(v);
                        }
                        c.append(v.is_some());
                    }
                    Arc::new(c.finish())
                }
                _ => {
                    let mut c = StringBuilder::new();
                    vals.into_iter().for_each(|v| c.append_option(v));
                    Arc::new(c.finish())
                }
            }
        };
        let batch = RecordBatch::try_from_iter([
            ("d", col(rows.iter().map(|r| r.0.as_deref()).collect())),
            ("a", col(rows.iter().map(|r| r.1.as_deref()).collect())),
        ])
        .expect("same lengths");
        let mut hits = Vec::new();
        m.match_record_batch(&batch, 0, &mut hits);
        let got: BTreeSet<(u64, usize, String)> = hits
            .iter()
            .map(|h| (h.row, h.field, index.meta().id(h.ord).to_string()))
            .collect();
        assert_eq!(got, want, "{form}; rows {rows:?}");
    }
}

/// A retro-hunt batch summary from arbitrary bytes: whatever decodes encodes back to the
/// same bytes (the format is strict) and answers a probe without panicking.
pub fn batch_summary(data: &[u8]) {
    use crate::matcher::summary::{BatchSummary, Probes};
    if let Ok(s) = BatchSummary::from_bytes(data) {
        assert_eq!(s.to_bytes(), data, "not canonical");
        let _ = s.may_hit(&Probes::default());
    }
}

/// A batch summary to start [`batch_summary`] from: of a small batch of names and addresses.
pub fn batch_summary_seed() -> Vec<u8> {
    use std::sync::Arc;
    let batch = arrow_array::RecordBatch::try_from_iter([
        (
            "q",
            Arc::new(arrow_array::StringArray::from(vec![
                "www.evil.example",
                "b.example",
            ])) as arrow_array::ArrayRef,
        ),
        (
            "ip",
            Arc::new(arrow_array::StringArray::from(vec![
                "198.51.100.7",
                "2001:db8::1",
            ])),
        ),
    ])
    .expect("batch");
    let fields = crate::telemetry::FieldMap::from_specs(
        ["q=domain", "ip=ip"]
            .iter()
            .map(|s| s.parse().expect("spec")),
    )
    .expect("fields");
    crate::matcher::summary::BatchSummary::of(&batch, &fields).to_bytes()
}
