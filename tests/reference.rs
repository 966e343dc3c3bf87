//! The naive reference matcher — a linear scan over every indicator for every value, written
//! to be obviously right — and property tests holding the compiled index and matcher to it.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use cwn::index::delta::Delta;
use cwn::index::{CompiledIndex, IndexBuilder};
use cwn::indicator::normalize;
use cwn::indicator::{Indicator, IndicatorSet, Kind, Tlp};
use cwn::matcher::Matcher;
use cwn::telemetry::{self, FieldKind, FieldMap, InputFormat};
use ipnet::IpNet;
use proptest::prelude::*;

/// `(row, field index, indicator id)` of every expected hit.
pub type Expected = BTreeSet<(u64, usize, String)>;

fn ip_hits(ind: &Indicator, ip: IpAddr, port: Option<u16>) -> bool {
    let port_ok = ind.port.is_none_or(|p| Some(p) == port);
    port_ok
        && match ind.kind {
            Kind::Ipv4 | Kind::Ipv6 => ind.value.parse::<IpAddr>() == Ok(ip),
            Kind::Cidr => ind.value.parse::<IpNet>().is_ok_and(|n| n.contains(&ip)),
            Kind::IpPort => normalize::split_ip_port(&ind.value)
                .is_some_and(|(a, p)| a == ip && Some(p) == port),
            _ => false,
        }
}

fn name_hits(ind: &Indicator, name: &str) -> bool {
    match ind.kind {
        Kind::Domain => name == ind.value || name.ends_with(&format!(".{}", ind.value)),
        Kind::Hostname => name == ind.value,
        _ => false,
    }
}

fn host_hits(ind: &Indicator, host: &str, port: Option<u16>) -> bool {
    let h = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    match normalize::ip(h) {
        Ok(ip) => ip_hits(ind, ip, port),
        Err(_) => normalize::domain(h).is_ok_and(|d| name_hits(ind, &d)),
    }
}

/// Whether `ind` matches value `v` of a field of kind `kind` with port `port`.
pub fn value_hits(ind: &Indicator, kind: &FieldKind, v: &str, port: Option<u16>) -> bool {
    match kind {
        FieldKind::Ip => normalize::ip(v).is_ok_and(|ip| ip_hits(ind, ip, port)),
        FieldKind::Domain => {
            let t = v.trim();
            let host = match t.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
                _ => t,
            };
            host_hits(ind, host, port)
        }
        FieldKind::Url => {
            let t = v.trim();
            let substring =
                matches!(ind.kind, Kind::UrlSubstring | Kind::Uri) && t.contains(&ind.value);
            let parsed = if t.starts_with('/') {
                None
            } else {
                normalize::url(t).ok()
            };
            substring
                || parsed.is_some_and(|u| {
                    (ind.kind == Kind::Url
                        && normalize::url(&ind.value).is_ok_and(|i| i.k2d() == u.k2d()))
                        || host_hits(ind, &u.host, None)
                })
        }
        FieldKind::Md5 | FieldKind::Sha1 | FieldKind::Sha256 | FieldKind::Ja3 | FieldKind::Ja3s => {
            let k = match kind {
                FieldKind::Md5 => Kind::Md5,
                FieldKind::Sha1 => Kind::Sha1,
                FieldKind::Sha256 => Kind::Sha256,
                FieldKind::Ja3 => Kind::Ja3,
                _ => Kind::Ja3s,
            };
            ind.kind == k && normalize::hash(k, v).is_ok_and(|h| h == ind.value)
        }
        FieldKind::Hash => {
            normalize::hash_by_length(v).is_ok_and(|n| n.kind == ind.kind && n.value == ind.value)
        }
        FieldKind::Email => {
            ind.kind == Kind::Email && normalize::email(v).is_ok_and(|e| e == ind.value)
        }
        FieldKind::Ja4 => ind.kind == Kind::Ja4 && normalize::ja4(v).is_ok_and(|e| e == ind.value),
        FieldKind::UserAgent => ind.kind == Kind::UserAgent && v.trim().contains(&ind.value),
        FieldKind::Text => ind.kind.is_substring() && v.contains(&ind.value),
        FieldKind::Time | FieldKind::Uid | FieldKind::Port(_) => false,
    }
}

/// One telemetry row: per field, its values (empty = null), in field-map order.
pub type Row = Vec<Vec<String>>;

/// The reference answer.
pub fn reference(
    set: &IndicatorSet,
    fields: &FieldMap,
    rows: &[Row],
    now: i64,
    arm_red: bool,
) -> Expected {
    let specs = fields.fields();
    let mut out = Expected::new();
    for (r, row) in rows.iter().enumerate() {
        let at = specs
            .iter()
            .position(|f| f.kind == FieldKind::Time)
            .and_then(|t| row[t].first())
            .and_then(|s| telemetry::parse_time(s))
            .unwrap_or(now);
        let at = jiff::Timestamp::from_second(at).unwrap();
        for (fi, spec) in specs.iter().enumerate() {
            let port = specs
                .iter()
                .position(|p| matches!(&p.kind, FieldKind::Port(a) if *a == spec.name))
                .and_then(|p| row[p].first())
                .and_then(|p| p.trim().parse::<u16>().ok());
            for (_, ind) in set.iter() {
                if (ind.tlp == Tlp::Red && !arm_red) || !ind.validity.contains(at) {
                    continue;
                }
                if row[fi].iter().any(|v| value_hits(ind, &spec.kind, v, port)) {
                    out.insert((r as u64, fi, ind.id.clone()));
                }
            }
        }
    }
    out
}

/// The fast answer: the rows written as JSON lines, read back, compiled, matched.
pub fn fast(
    set: &IndicatorSet,
    fields: &FieldMap,
    rows: &[Row],
    now: i64,
    arm_red: bool,
) -> Expected {
    let index = IndexBuilder::new().arm_red(arm_red).build(set).unwrap();
    index.validate().unwrap();
    match_rows(&index, fields, rows, now)
}

/// `rows` written as JSON lines, read back and matched against `index`.
pub fn match_rows(index: &CompiledIndex, fields: &FieldMap, rows: &[Row], now: i64) -> Expected {
    let mut text = String::new();
    for row in rows {
        let mut obj = serde_json::Map::new();
        for (spec, vals) in fields.fields().iter().zip(row) {
            match vals.len() {
                0 => {}
                1 => {
                    obj.insert(spec.name.clone(), vals[0].clone().into());
                }
                _ => {
                    obj.insert(spec.name.clone(), vals.clone().into());
                }
            }
        }
        text.push_str(&serde_json::Value::Object(obj).to_string());
        text.push('\n');
    }
    let batches = telemetry::read_all(
        std::io::Cursor::new(text),
        "t.jsonl",
        InputFormat::Jsonl,
        fields,
    )
    .unwrap();
    let m = Matcher::new(index, fields, now);
    let mut hits = Vec::new();
    for b in &batches {
        m.match_batch(b, &mut hits);
    }
    hits.iter()
        .map(|h| (h.row, h.field, index.meta().id(h.ord).to_string()))
        .collect()
}

// ---- generators -------------------------------------------------------------------------

const LABELS: &[&str] = &[
    "evil", "notevil", "a", "b", "cdn", "login", "example", "test", "c2", "x-y",
];

fn name() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(LABELS), 1..4)
        .prop_map(|l| format!("{}.test", l.join(".")))
}

fn v4() -> impl Strategy<Value = IpAddr> {
    // A small space so that exact values, networks and telemetry collide often.
    (
        prop::sample::select(&[10u8, 192, 203][..]),
        0u8..2,
        0u8..4,
        any::<u8>(),
    )
        .prop_map(|(a, b, c, d)| IpAddr::from([a, b, c, d]))
}

fn v6() -> impl Strategy<Value = IpAddr> {
    (0u16..3, 0u16..4).prop_map(|(a, b)| IpAddr::from([0x2001, 0xdb8, a, 0, 0, 0, 0, b]))
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![4 => v4(), 1 => v6()]
}

fn url_path() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(&["gate.php", "a", "b", "%61", "x y", "owa"][..]),
        0..3,
    )
    .prop_map(|s| format!("/{}", s.join("/")))
}

#[derive(Clone, Debug)]
enum Gen {
    Ip(IpAddr),
    Net(IpAddr, u8),
    IpPort(IpAddr, u16),
    NetPort(IpAddr, u8, u16),
    Domain(String),
    Hostname(String),
    Url(String, String, bool),
    Sub(Kind, String),
    Hash(Kind, u8),
    Email(String),
}

fn any_indicator() -> impl Strategy<Value = Gen> {
    prop_oneof![
        ip().prop_map(Gen::Ip),
        (ip(), 8u8..32).prop_map(|(a, l)| Gen::Net(a, if a.is_ipv6() { l + 96 } else { l })),
        (ip(), prop::sample::select(&[80u16, 443, 8443][..])).prop_map(|(a, p)| Gen::IpPort(a, p)),
        (v4(), 16u8..30, prop::sample::select(&[443u16, 8443][..]))
            .prop_map(|(a, l, p)| Gen::NetPort(a, l, p)),
        name().prop_map(Gen::Domain),
        name().prop_map(Gen::Hostname),
        (name(), url_path(), any::<bool>()).prop_map(|(h, p, s)| Gen::Url(h, p, s)),
        prop::sample::select(&["/gate", "php", "/a/b", "Loader", "x"][..]).prop_flat_map(|s| {
            prop::sample::select(&[Kind::Uri, Kind::UrlSubstring, Kind::UserAgent][..])
                .prop_map(move |k| Gen::Sub(k, s.to_string()))
        }),
        (
            prop::sample::select(&[Kind::Md5, Kind::Sha1, Kind::Sha256, Kind::Ja3][..]),
            0u8..3
        )
            .prop_map(|(k, b)| Gen::Hash(k, b)),
        prop::sample::select(&["a", "phisher"][..])
            .prop_flat_map(|l| name().prop_map(move |d| Gen::Email(format!("{l}@{d}")))),
    ]
}

fn hex_of(kind: Kind, b: u8) -> String {
    let n = match kind {
        Kind::Md5 | Kind::Ja3 => 32,
        Kind::Sha1 => 40,
        _ => 64,
    };
    format!("{b:x}").repeat(n)
}

fn indicator(i: usize, g: &Gen, tlp: Tlp, window: (Option<i64>, Option<i64>)) -> Option<Indicator> {
    let src: Arc<str> = Arc::from(format!("src{}", i % 3));
    let (kind, raw, port) = match g {
        Gen::Ip(a) => (Kind::Ipv4, a.to_string(), None),
        Gen::Net(a, l) => (Kind::Cidr, format!("{a}/{l}"), None),
        Gen::IpPort(a, p) => (Kind::IpPort, normalize::format_ip_port(*a, *p), None),
        Gen::NetPort(a, l, p) => (Kind::Cidr, format!("{a}/{l}"), Some(*p)),
        Gen::Domain(d) => (Kind::Domain, d.clone(), None),
        Gen::Hostname(d) => (Kind::Hostname, d.clone(), None),
        Gen::Url(h, p, s) => (
            Kind::Url,
            format!("{}://{h}{p}", if *s { "https" } else { "http" }),
            None,
        ),
        Gen::Sub(k, s) => (*k, s.clone(), None),
        Gen::Hash(k, b) => (*k, hex_of(*k, *b), None),
        Gen::Email(e) => (Kind::Email, e.clone(), None),
    };
    let n = normalize::normalize_as(kind, &raw).ok()?;
    let mut ind = Indicator::new(format!("i{i}"), n.kind, n.value, src, tlp);
    ind.port = port;
    ind.validity.valid_from = window.0.map(|s| jiff::Timestamp::from_second(s).unwrap());
    ind.validity.valid_until = window.1.map(|s| jiff::Timestamp::from_second(s).unwrap());
    Some(ind)
}

fn tel_value(g: &Gen, kind: &FieldKind) -> Option<String> {
    Some(match (g, kind) {
        (
            Gen::Ip(a) | Gen::IpPort(a, _) | Gen::Net(a, _) | Gen::NetPort(a, _, _),
            FieldKind::Ip,
        ) => match a {
            IpAddr::V4(v) if v.octets()[3] % 5 == 0 => v.to_ipv6_mapped().to_string(),
            a => a.to_string(),
        },
        (Gen::Domain(d) | Gen::Hostname(d), FieldKind::Domain) => d.to_uppercase(),
        (Gen::Domain(d) | Gen::Hostname(d), FieldKind::Url) => format!("{d}/x"),
        (Gen::Url(h, p, _), FieldKind::Url) => format!("HTTP://{}{p}?", h.to_uppercase())
            .trim_end_matches('?')
            .to_string(),
        (Gen::Sub(_, s), FieldKind::Url | FieldKind::UserAgent | FieldKind::Text) => {
            format!("/pre{s}post")
        }
        (
            Gen::Hash(k, b),
            FieldKind::Hash | FieldKind::Md5 | FieldKind::Sha1 | FieldKind::Sha256 | FieldKind::Ja3,
        ) => hex_of(*k, *b).to_uppercase(),
        (Gen::Email(e), FieldKind::Email) => format!("\"Someone\" <{}>", e.to_uppercase()),
        _ => return None,
    })
}

fn field_map() -> FieldMap {
    FieldMap::from_specs(
        [
            "src=ip",
            "dst=ip",
            "dport=port@dst",
            "query=domain",
            "host=domain",
            "url=url",
            "ua=user-agent",
            "md5=md5",
            "sha1=sha1",
            "sha256=sha256",
            "hash=hash",
            "ja3=ja3",
            "mail=email",
            "text=text",
            "ts=time",
        ]
        .iter()
        .map(|s| s.parse().unwrap()),
    )
    .unwrap()
}

const NOW: i64 = 1_750_000_000;

fn row_strategy(pool: Vec<Gen>) -> impl Strategy<Value = Row> {
    let n = field_map().fields().len();
    let pool2 = pool.clone();
    (
        prop::collection::vec((0..pool.len().max(1), any::<bool>(), any::<u8>()), n),
        prop::sample::select(&[None, Some(NOW - 100), Some(NOW), Some(NOW + 100)][..]),
        prop::option::of(prop::sample::select(&[80u16, 443, 8443][..])),
        prop::collection::vec(any::<IpAddr>(), 0..2),
    )
        .prop_map(move |(picks, ts, port, noise)| {
            let fm = field_map();
            let mut row: Row = vec![Vec::new(); n];
            for (fi, spec) in fm.fields().iter().enumerate() {
                let (pick, use_it, alt) = picks[fi];
                match &spec.kind {
                    FieldKind::Time => {
                        if let Some(t) = ts {
                            row[fi].push(if alt % 2 == 0 {
                                t.to_string()
                            } else {
                                jiff::Timestamp::from_second(t).unwrap().to_string()
                            });
                        }
                    }
                    FieldKind::Port(_) => {
                        if let Some(p) = port {
                            row[fi].push(p.to_string());
                        }
                    }
                    k => {
                        if use_it
                            && let Some(g) = pool2.get(pick)
                            && let Some(v) = tel_value(g, k)
                        {
                            row[fi].push(v);
                        }
                        if alt % 7 == 0 && *k == FieldKind::Ip {
                            row[fi].extend(noise.iter().map(|a| a.to_string()));
                        }
                        if alt % 11 == 0 && *k == FieldKind::Domain {
                            row[fi].push("zzz.evil.test.other".into());
                        }
                    }
                }
            }
            row
        })
}

fn scenario() -> impl Strategy<Value = (IndicatorSet, Vec<Row>, bool)> {
    prop::collection::vec(
        (
            any_indicator(),
            prop::sample::select(&Tlp::ALL[..]),
            prop::sample::select(
                &[
                    (None, None),
                    (Some(NOW - 50), None),
                    (None, Some(NOW)),
                    (Some(NOW), Some(NOW + 101)),
                ][..],
            ),
        ),
        1..24,
    )
    .prop_flat_map(|specs| {
        let mut set = IndicatorSet::new();
        let mut pool = Vec::new();
        for (i, (g, tlp, w)) in specs.iter().enumerate() {
            if let Some(ind) = indicator(i, g, *tlp, *w) {
                let _ = set.insert(ind);
            }
            pool.push(g.clone());
        }
        (
            Just(set),
            prop::collection::vec(row_strategy(pool), 1..12),
            any::<bool>(),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn fast_matcher_agrees_with_the_reference((set, rows, arm_red) in scenario()) {
        let fields = field_map();
        let want = reference(&set, &fields, &rows, NOW, arm_red);
        let got = fast(&set, &fields, &rows, NOW, arm_red);
        prop_assert_eq!(got, want);
    }
}

/// One version of a changing set: per generated indicator, absent or present with a TLP and a
/// validity window (a change of either is a metadata change under the same id).
type Version = Vec<Option<(Tlp, (Option<i64>, Option<i64>))>>;

const WINDOWS: &[(Option<i64>, Option<i64>)] = &[
    (None, None),
    (Some(NOW - 50), None),
    (None, Some(NOW)),
    (Some(NOW), Some(NOW + 101)),
];

fn set_of(gens: &[Gen], v: &Version) -> IndicatorSet {
    let mut set = IndicatorSet::new();
    for (i, (g, p)) in gens.iter().zip(v).enumerate() {
        if let Some((tlp, w)) = p
            && let Some(ind) = indicator(i, g, *tlp, *w)
        {
            let _ = set.insert(ind);
        }
    }
    set
}

fn chain_scenario() -> impl Strategy<Value = (Vec<Gen>, Vec<Version>, Vec<Row>, bool)> {
    prop::collection::vec(any_indicator(), 1..24).prop_flat_map(|gens| {
        let n = gens.len();
        let entry = prop::option::weighted(
            0.7,
            (
                prop::sample::select(&Tlp::ALL[..]),
                prop::sample::select(WINDOWS),
            ),
        );
        // Each later version keeps an entry as it was with probability 0.6.
        let step = prop::collection::vec((prop::bool::weighted(0.6), entry.clone()), n);
        (
            Just(gens.clone()),
            prop::collection::vec(entry, n),
            prop::collection::vec(step, 1..6),
            prop::collection::vec(row_strategy(gens), 1..10),
            any::<bool>(),
        )
            .prop_map(|(gens, first, steps, rows, arm_red)| {
                let mut versions = vec![first];
                for step in steps {
                    let prev = versions.last().cloned().unwrap_or_default();
                    versions.push(
                        step.into_iter()
                            .zip(prev)
                            .map(|((keep, e), p)| if keep { p } else { e })
                            .collect(),
                    );
                }
                (gens, versions, rows, arm_red)
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    /// A base snapshot with a chain of deltas (each written and read back) gives the same
    /// hits as a full compile of each version, and as the reference.
    #[test]
    fn a_delta_chain_matches_as_a_full_compile((gens, versions, rows, arm_red) in chain_scenario()) {
        let fields = field_map();
        let builder = |v: u64| IndexBuilder::new().arm_red(arm_red).set_version(v).created_at(v as i64);
        let first = builder(1).build(&set_of(&gens, &versions[0])).unwrap();
        let mut state = CompiledIndex::from_snapshot(&first.to_snapshot(None), None).unwrap();
        for (i, v) in versions.iter().enumerate().skip(1) {
            let set = set_of(&gens, v);
            let b = builder(i as u64 + 1);
            let (delta, stats) = Delta::compute(&state, &set, &b).unwrap();
            let read = Delta::from_bytes(&delta.to_bytes(None), None).unwrap();
            prop_assert_eq!(read.removed(), delta.removed());
            prop_assert_eq!(stats.removed, delta.removed().len());
            state = state.apply(&read).unwrap();
            state.validate().unwrap();
            let full = b.build(&set).unwrap();
            prop_assert_eq!(state.len(), full.len());
            let got = match_rows(&state, &fields, &rows, NOW);
            prop_assert_eq!(&got, &match_rows(&full, &fields, &rows, NOW));
            prop_assert_eq!(&got, &reference(&set, &fields, &rows, NOW, arm_red));
        }
        // Compaction folds the chain into a snapshot that answers alike.
        let compacted = CompiledIndex::from_snapshot(&state.to_snapshot(None), None).unwrap();
        prop_assert_eq!(
            match_rows(&compacted, &fields, &rows, NOW),
            match_rows(&state, &fields, &rows, NOW)
        );
    }
}
