//! The hub's status: the Prometheus exposition parses, the listener behaves, the HTML page a
//! real browser renders shows the same figures as `/metrics`; and the operator-facing CLI bits
//! (completions, JSON logs, help examples).

use std::collections::{BTreeMap, HashMap};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use cwn::index::IndexBuilder;
use cwn::indicator::{Indicator, IndicatorSet, Kind, Tlp, normalize};
use cwn::status::{EntityInfo, Metrics, MetricsConfig, SnapshotInfo};
use jiff::Timestamp;

// ---------------------------------------------------------------------------------------------
// A small parser of the Prometheus text exposition format (0.0.4), strict enough to catch
// what a scraper would reject.

#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

#[derive(Debug, Default)]
struct Exposition {
    types: HashMap<String, String>,
    helps: HashMap<String, String>,
    samples: Vec<Sample>,
}

impl Exposition {
    fn get(&self, name: &str, labels: &BTreeMap<String, String>) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| s.name == name && &s.labels == labels)
            .map(|s| s.value)
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.get(name, &labels)
            .unwrap_or_else(|| panic!("no series {name}{labels:?}"))
    }
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse().map_err(|_| format!("bad value {s:?}")),
    }
}

/// Parses an exposition and checks its structure: HELP/TYPE before a family's samples and at
/// most once, every sample in a declared family, histograms cumulative with `+Inf == _count`.
fn parse_exposition(text: &str) -> Result<Exposition, String> {
    let mut e = Exposition::default();
    if !text.ends_with('\n') {
        return Err("does not end with a line feed".into());
    }
    for (no, line) in text.lines().enumerate() {
        let err = |m: String| format!("line {}: {m}: {line:?}", no + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').ok_or_else(|| err("HELP".into()))?;
            if !is_metric_name(name) || e.helps.contains_key(name) {
                return Err(err("bad or repeated HELP".into()));
            }
            let mut out = String::new();
            let mut chars = help.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    match chars.next() {
                        Some('\\') => out.push('\\'),
                        Some('n') => out.push('\n'),
                        other => return Err(err(format!("bad HELP escape {other:?}"))),
                    }
                } else {
                    out.push(c);
                }
            }
            e.helps.insert(name.to_string(), out);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or_else(|| err("TYPE".into()))?;
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(err(format!("type {kind}")));
            }
            if e.types.contains_key(name) {
                return Err(err("repeated TYPE".into()));
            }
            if e.samples
                .iter()
                .any(|s| family_of(&s.name, &e.types) == name)
            {
                return Err(err("TYPE after samples".into()));
            }
            e.types.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| err("no value".into()))?;
        let name = &line[..name_end];
        if !is_metric_name(name) {
            return Err(err("metric name".into()));
        }
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(r) = rest.strip_prefix('{') {
            let mut chars = r.char_indices().peekable();
            loop {
                let Some(&(i, c)) = chars.peek() else {
                    return Err(err("unterminated labels".into()));
                };
                if c == '}' {
                    rest = &r[i + 1..];
                    break;
                }
                let key_start = i;
                let mut key_end = i;
                while let Some(&(j, c)) = chars.peek() {
                    if c == '=' {
                        key_end = j;
                        break;
                    }
                    chars.next();
                }
                let key = &r[key_start..key_end];
                if !is_metric_name(key) || key.contains(':') {
                    return Err(err(format!("label name {key:?}")));
                }
                chars.next(); // '='
                if chars.next().map(|x| x.1) != Some('"') {
                    return Err(err("label value not quoted".into()));
                }
                let mut value = String::new();
                loop {
                    match chars.next().map(|x| x.1) {
                        Some('"') => break,
                        Some('\\') => match chars.next().map(|x| x.1) {
                            Some('\\') => value.push('\\'),
                            Some('"') => value.push('"'),
                            Some('n') => value.push('\n'),
                            other => return Err(err(format!("bad label escape {other:?}"))),
                        },
                        Some('\n') | None => return Err(err("unterminated label value".into())),
                        Some(c) => value.push(c),
                    }
                }
                if labels.insert(key.to_string(), value).is_some() {
                    return Err(err("repeated label".into()));
                }
                if chars.peek().map(|x| x.1) == Some(',') {
                    chars.next();
                }
            }
        }
        let mut fields = rest
            .strip_prefix(' ')
            .ok_or_else(|| err("no space before value".into()))?
            .split(' ');
        let value = parse_value(fields.next().unwrap_or_default()).map_err(err)?;
        if let Some(ts) = fields.next() {
            ts.parse::<i64>().map_err(|_| err("timestamp".into()))?;
        }
        if fields.next().is_some() {
            return Err(err("trailing fields".into()));
        }
        let family = family_of(name, &e.types);
        if !e.types.contains_key(&family) {
            return Err(err(format!("sample outside a declared family ({family})")));
        }
        if e.samples
            .iter()
            .any(|s| s.name == name && s.labels == labels)
        {
            return Err(err("duplicate series".into()));
        }
        e.samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    for (family, kind) in &e.types {
        if !e.helps.contains_key(family) {
            return Err(format!("{family}: TYPE without HELP"));
        }
        if kind == "histogram" {
            let buckets: Vec<&Sample> = e
                .samples
                .iter()
                .filter(|s| s.name == format!("{family}_bucket"))
                .collect();
            let les: Vec<f64> = buckets
                .iter()
                .map(|s| parse_value(&s.labels["le"]))
                .collect::<Result<_, _>>()?;
            if !les.windows(2).all(|w| w[0] < w[1]) || les.last() != Some(&f64::INFINITY) {
                return Err(format!("{family}: le not increasing to +Inf"));
            }
            if !buckets.windows(2).all(|w| w[0].value <= w[1].value) {
                return Err(format!("{family}: buckets not cumulative"));
            }
            let count = e.value_of(&format!("{family}_count"))?;
            e.value_of(&format!("{family}_sum"))?;
            if buckets.last().map(|b| b.value) != Some(count) {
                return Err(format!("{family}: +Inf bucket differs from _count"));
            }
        }
    }
    Ok(e)
}

impl Exposition {
    fn value_of(&self, name: &str) -> Result<f64, String> {
        self.samples
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.value)
            .ok_or_else(|| format!("{name} missing"))
    }
}

fn family_of(name: &str, types: &HashMap<String, String>) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && types.get(base).is_some_and(|t| t == "histogram")
        {
            return base.to_string();
        }
    }
    name.to_string()
}

#[test]
fn the_parser_refuses_what_a_scraper_would() {
    let ok = "# HELP a_total x\n# TYPE a_total counter\na_total{l=\"v\\\"\\\\\\n\"} 1\n";
    let e = parse_exposition(ok).unwrap();
    assert_eq!(e.samples[0].labels["l"], "v\"\\\n");
    for bad in [
        "a 1\n",                                        // no TYPE
        "# HELP a x\n# TYPE a gauge\na{l=\"v} 1\n",     // unterminated
        "# HELP a x\n# TYPE a gauge\na{l=\"\\t\"} 1\n", // bad escape
        "# HELP a x\n# TYPE a gauge\na 1\na 2\n",       // duplicate
        "# HELP a x\n# TYPE a gauge\na one\n",          // value
        "# HELP a x\n# TYPE a gauge\na 1",              // no final line feed
        "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
    ] {
        assert!(parse_exposition(bad).is_err(), "accepted {bad:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Realistic traffic, fed through the public API the way the hub feeds it.

const SECTORS: [&str; 6] = [
    "health",
    "energy",
    "drinking-water",
    "transport",
    "banking",
    "digital-infrastructure",
];

/// The partner with an awkward name: quotes and a backslash must survive every rendering.
const ODD_PARTNER: &str = "msp \"west\" \\ co";

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        cwn::generate::rng::splitmix64(&mut self.0)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn secs(t: Timestamp, s: i64) -> Timestamp {
    Timestamp::from_second(t.as_second() + s).unwrap()
}

fn snapshot_info(created_at: i64) -> SnapshotInfo {
    let src: Arc<str> = Arc::from("ncsc-feed");
    let mut set = IndicatorSet::new();
    let values = [
        ("evil.example.com", Tlp::Green),
        ("login-update.example.net", Tlp::Amber),
        ("198.51.100.23", Tlp::Clear),
        ("203.0.113.0/28", Tlp::Amber),
        ("https://bad.example.org/gate.php", Tlp::AmberStrict),
        ("44d88612fea8a8f36de82e1278abb02f", Tlp::Red),
        ("phish@example.com", Tlp::Green),
    ];
    for (i, (v, tlp)) in values.iter().enumerate() {
        let n = normalize::guess(v).unwrap();
        set.insert(Indicator::new(
            format!("i{i}"),
            n.kind,
            n.value,
            src.clone(),
            *tlp,
        ))
        .unwrap();
    }
    let index = IndexBuilder::new()
        .arm_red(true)
        .set_version(4711)
        .created_at(created_at)
        .build(&set)
        .unwrap();
    SnapshotInfo::from_index(&index)
}

/// 40 registered entities, four partners streaming ten minutes of telemetry, notifications
/// with latencies from milliseconds to seconds, a mix of connected, recently seen and long
/// gone subscribers, two lagging ones, a few errors.
fn feed(m: &Metrics, now: Timestamp) {
    let mut rng = Rng(0x5eed_cafe_f00d_d00d);
    let mut entities = vec![
        EntityInfo::new(
            "ncsc",
            ["publisher", "subscriber"],
            Some("public-administration"),
        ),
        EntityInfo::new(
            "msp-noord",
            ["partner", "subscriber"],
            Some("digital-infrastructure"),
        ),
        EntityInfo::new("msp-zuid", ["partner"], Some("digital-infrastructure")),
        EntityInfo::new("z-cert", ["partner", "subscriber"], Some("health")),
        EntityInfo::new(ODD_PARTNER, ["partner"], None),
    ];
    for i in 0..35 {
        let sector = SECTORS[i % SECTORS.len()];
        entities.push(EntityInfo::new(
            format!("{sector}-{i}"),
            ["subscriber"],
            Some(sector),
        ));
    }
    m.set_entities(entities.clone());
    m.snapshot(snapshot_info(now.as_second() - 3 * 3600 - 125));

    let partners = [
        ("msp-noord", "zeek"),
        ("msp-zuid", "eve"),
        ("z-cert", "ecs"),
        (ODD_PARTNER, "zeek"),
    ];
    let kinds = [
        Kind::Domain,
        Kind::Ipv4,
        Kind::Url,
        Kind::Sha256,
        Kind::IpPort,
    ];
    for t in (-600..0).step_by(5) {
        for (p, (partner, telemetry)) in partners.iter().enumerate() {
            if p == 3 && t < -120 {
                continue; // the odd partner joined two minutes ago
            }
            m.rows(partner, telemetry, 20_000 + rng.below(40_000), secs(now, t));
            if rng.below(4) == 0 {
                let kind = kinds[rng.below(kinds.len() as u64) as usize];
                m.hits(partner, kind, 1 + rng.below(3), secs(now, t));
            }
        }
    }
    m.sightings("z-cert", 1_234);
    m.sightings("msp-zuid", 56);

    for (i, e) in entities.iter().enumerate() {
        let id = e.id.as_str();
        match i % 8 {
            // Gone for days: registered but not reachable.
            6 => m.seen(id, secs(now, -3 * 86_400)),
            // Never heard of.
            7 => {}
            // Disconnected an hour ago: still reachable.
            5 => {
                m.connected(id, secs(now, -7_200));
                m.disconnected(id, secs(now, -3_600));
            }
            _ => m.connected(id, secs(now, -600 + i as i64)),
        }
        if i % 8 == 7 {
            continue;
        }
        let queued = 3 + rng.below(40);
        m.queued(id, queued);
        let delivered = queued - rng.below(3);
        for _ in 0..delivered {
            // Mostly tens of milliseconds, a tail into seconds.
            let ms = match rng.below(100) {
                0..=59 => 2 + rng.below(40),
                60..=94 => 40 + rng.below(400),
                _ => 500 + rng.below(9_000),
            };
            m.delivered(id, Duration::from_millis(ms));
        }
        m.backlog(id, queued - delivered);
    }
    m.backlog("health-6", 5_400);
    m.backlog("banking-4", 1_200);
    m.log_bytes(734_003_200);
    m.error(
        secs(now, -400),
        "msp-zuid: batch 17 refused: unknown field map preset",
    );
    m.error(
        secs(now, -90),
        "subscriber health-6: stream reset <code 0x101> & retrying",
    );
    m.error(
        secs(now, -5),
        "snapshot reload: signature check failed (key ‘2025-Q3’)",
    );
}

fn registry() -> Metrics {
    Metrics::new(MetricsConfig {
        lag_threshold: 1_000,
        ..MetricsConfig::default()
    })
}

#[test]
fn exposition_of_realistic_traffic_parses_and_adds_up() {
    let now = Timestamp::now();
    let m = registry();
    feed(&m, now);
    let text = m.render_prometheus(now);
    let e = parse_exposition(&text).unwrap_or_else(|err| panic!("{err}\n{text}"));
    let status = m.status(now);

    assert_eq!(e.value("cwn_snapshot_version", &[]), 4711.0);
    assert_eq!(
        e.value("cwn_snapshot_age_seconds", &[]),
        3.0 * 3600.0 + 125.0
    );
    assert_eq!(e.value("cwn_snapshot_indicators", &[]), 7.0);
    assert_eq!(
        e.value("cwn_snapshot_indicators_by_kind", &[("kind", "domain")]),
        2.0
    );
    assert_eq!(
        e.value("cwn_snapshot_indicators_by_tlp", &[("tlp", "RED")]),
        1.0
    );
    assert_eq!(e.value("cwn_entities_registered", &[]), 40.0);
    // i % 8 ∈ {6, 7} are unreachable: 5 + 5 of 40.
    assert_eq!(e.value("cwn_entities_reachable", &[]), 30.0);
    assert_eq!(e.value("cwn_subscribers_lagging", &[]), 2.0);
    assert_eq!(
        e.value("cwn_subscriber_backlog", &[("entity", "health-6")]),
        5400.0
    );
    // The odd name round-trips through escaping.
    let odd_rows = e.value("cwn_partner_rows_total", &[("partner", ODD_PARTNER)]);
    assert!(odd_rows > 0.0);
    assert_eq!(
        odd_rows,
        e.value(
            "cwn_telemetry_rows_total",
            &[("partner", ODD_PARTNER), ("kind", "zeek")]
        )
    );
    // Per-partner rows add up to the per-kind counters and, as all traffic is recent, to
    // the throughput window.
    let sum = |name: &str| -> f64 {
        e.samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .sum()
    };
    assert_eq!(
        sum("cwn_partner_rows_total"),
        sum("cwn_telemetry_rows_total")
    );
    assert_eq!(
        sum("cwn_telemetry_rows_total"),
        e.value("cwn_throughput_window_rows", &[])
    );
    assert_eq!(
        sum("cwn_hits_total"),
        e.value("cwn_throughput_window_hits", &[])
    );
    assert_eq!(
        sum("cwn_notifications_delivered_total"),
        e.value("cwn_delivery_latency_seconds_count", &[])
    );
    let p50 = e.value(
        "cwn_delivery_latency_estimate_seconds",
        &[("quantile", "0.5")],
    );
    let p99 = e.value(
        "cwn_delivery_latency_estimate_seconds",
        &[("quantile", "0.99")],
    );
    assert!(
        0.002 < p50 && p50 < 0.1 && p50 < p99 && p99 <= 10.0,
        "{p50} {p99}"
    );
    // Reach by role and by sector each cover every registered entity at least once.
    assert_eq!(sum("cwn_entities_registered_by_sector"), 40.0);
    assert_eq!(
        e.value("cwn_entities_registered_by_sector", &[("sector", "none")]),
        1.0
    );
    assert!(sum("cwn_entities_registered_by_role") >= 40.0);
    assert_eq!(status.reciprocity.len(), 4);
    let z = e.value("cwn_partner_reciprocity_ratio", &[("partner", "z-cert")]);
    let brought = e.value("cwn_partner_rows_total", &[("partner", "z-cert")])
        + e.value("cwn_partner_sightings_total", &[("partner", "z-cert")]);
    let got = e.value(
        "cwn_partner_notifications_received_total",
        &[("partner", "z-cert")],
    );
    assert!((z - got / brought).abs() < 1e-12);
    assert_eq!(e.value("cwn_errors_total", &[]), 3.0);
    assert!(e.helps["cwn_hits_total"].contains("Hits"));
}

// ---------------------------------------------------------------------------------------------
// The CLI bits of issue 6 item 3.

fn cwn(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cwn"));
    c.args(args).env_remove("RUST_LOG");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run cwn")
}

const SUBCOMMANDS: [&str; 6] = ["ingest", "compile", "inspect", "keygen", "match", "demo"];

#[test]
fn completions_name_every_subcommand() {
    for shell in ["bash", "zsh", "fish"] {
        let out = cwn(&["completions", shell], &[]);
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8(out.stdout).unwrap();
        for sub in SUBCOMMANDS.iter().chain(&["completions"]) {
            assert!(script.contains(sub), "{shell} completion lacks {sub}");
        }
        assert!(
            script.contains("log-format"),
            "{shell}: global flag missing"
        );
    }
    assert!(!cwn(&["completions", "tcsh"], &[]).status.success());
}

#[test]
fn every_subcommand_help_shows_an_example() {
    for sub in SUBCOMMANDS.iter().chain(&["completions"]) {
        for flag in ["--help", "-h"] {
            let out = cwn(&[sub, flag], &[]);
            assert!(out.status.success());
            let help = String::from_utf8(out.stdout).unwrap();
            assert!(
                help.contains(&format!("Example:\n  cwn {sub}")),
                "cwn {sub} {flag}:\n{help}"
            );
        }
    }
}

#[test]
fn log_format_json_writes_one_json_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("list.txt");
    std::fs::write(&list, "evil.example.com\n198.51.100.23\n").unwrap();
    let list = list.to_str().unwrap();

    // The flag is global: before or after the subcommand.
    for args in [
        vec!["--log-format", "json", "ingest", list],
        vec!["ingest", list, "--log-format=json"],
    ] {
        let out = cwn(&args, &[("RUST_LOG", "info")]);
        assert!(out.status.success(), "{out:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        let lines: Vec<serde_json::Value> = stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
            .collect();
        let done = lines
            .iter()
            .find(|v| v["fields"]["message"] == "ingest done")
            .unwrap_or_else(|| panic!("no `ingest done` line in {stderr}"));
        assert_eq!(done["level"], "INFO");
        assert_eq!(done["fields"]["accepted"], 2);
        assert!(done["timestamp"].is_string());
    }

    // RUST_LOG still decides what is written: nothing at the default level.
    let out = cwn(&["--log-format", "json", "ingest", list], &[]);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Text stays the default.
    let out = cwn(&["ingest", list], &[("RUST_LOG", "info")]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("ingest done"), "{stderr}");
    assert!(serde_json::from_str::<serde_json::Value>(stderr.lines().next().unwrap()).is_err());
    assert!(!cwn(&["--log-format", "xml", "demo"], &[]).status.success());
}

// ---------------------------------------------------------------------------------------------
// The listener and the page in a real browser.

#[cfg(feature = "net")]
mod listener {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::path::PathBuf;
    use std::process::{Command, Stdio};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use cwn::status::{Metrics, StatusServer};
    use jiff::Timestamp;

    use super::{ODD_PARTNER, feed, parse_exposition, registry};

    /// A status listener on an ephemeral loopback port, on its own runtime.
    struct Running {
        addr: SocketAddr,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
        rt: tokio::runtime::Runtime,
    }

    impl Running {
        fn start(metrics: Arc<Metrics>) -> Self {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let server = rt
                .block_on(StatusServer::bind("127.0.0.1:0".parse().unwrap(), metrics))
                .unwrap();
            let addr = server.local_addr().unwrap();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let task = rt.spawn(server.run(async {
                let _ = stopped.await;
            }));
            Running {
                addr,
                stop: Some(stop),
                task: Some(task),
                rt,
            }
        }

        fn url(&self, path: &str) -> String {
            format!("http://{}{path}", self.addr)
        }

        /// Sends raw bytes, returns the raw response.
        fn raw(&self, request: &[u8]) -> String {
            let mut s = TcpStream::connect(self.addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            s.write_all(request).unwrap();
            let mut out = Vec::new();
            s.read_to_end(&mut out).unwrap();
            String::from_utf8(out).unwrap()
        }

        /// `GET path`: status code, headers (lower-case names), body.
        fn get(&self, path: &str) -> (u16, Vec<(String, String)>, String) {
            let resp = self.raw(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
            split_response(&resp)
        }
    }

    impl Drop for Running {
        fn drop(&mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            if let Some(task) = self.task.take() {
                let _ = self.rt.block_on(task);
            }
        }
    }

    fn split_response(resp: &str) -> (u16, Vec<(String, String)>, String) {
        let (head, body) = resp.split_once("\r\n\r\n").expect("head and body");
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers = lines
            .map(|l| {
                let (k, v) = l.split_once(": ").unwrap();
                (k.to_ascii_lowercase(), v.to_string())
            })
            .collect();
        (status, headers, body.to_string())
    }

    fn header<'a>(h: &'a [(String, String)], name: &str) -> &'a str {
        h.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    }

    #[test]
    fn serves_routes_and_refuses_the_rest() {
        let metrics = Arc::new(registry());
        feed(&metrics, Timestamp::now());
        let srv = Running::start(metrics);

        let (status, h, body) = srv.get("/metrics");
        assert_eq!(status, 200);
        assert_eq!(
            header(&h, "content-type"),
            "text/plain; version=0.0.4; charset=utf-8"
        );
        assert_eq!(header(&h, "connection"), "close");
        assert_eq!(header(&h, "content-length"), body.len().to_string());
        parse_exposition(&body).unwrap();

        let (status, h, body) = srv.get("/");
        assert_eq!(status, 200);
        assert!(header(&h, "content-type").starts_with("text/html"));
        assert!(header(&h, "content-security-policy").contains("default-src 'none'"));
        assert!(body.starts_with("<!DOCTYPE html>"));

        let (status, h, body) = srv.get("/api/status.json?refresh=1");
        assert_eq!(status, 200);
        assert_eq!(header(&h, "content-type"), "application/json");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["reach"]["registered"], 40);

        assert_eq!(srv.get("/favicon.ico").0, 404);
        let head = srv.raw(b"HEAD /metrics HTTP/1.0\r\n\r\n");
        let (status, h, body) = split_response(&head);
        assert_eq!((status, body.as_str()), (200, ""));
        assert!(header(&h, "content-length").parse::<usize>().unwrap() > 1000);
        let (status, h, _) =
            split_response(&srv.raw(b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n"));
        assert_eq!((status, header(&h, "allow")), (405, "GET, HEAD"));
        assert_eq!(
            split_response(&srv.raw(b"BREW / HTCPCP/1.0\r\n\r\n")).0,
            400
        );
        let mut big = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
        big.resize(20_000, b'a');
        assert_eq!(split_response(&srv.raw(&big)).0, 431);
        // A client that goes away before finishing its head gets an answer or a close, and
        // the listener carries on.
        {
            let mut s = TcpStream::connect(srv.addr).unwrap();
            s.write_all(b"GET / HT").unwrap();
        }
        let s = TcpStream::connect(srv.addr).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        // Many clients at once.
        let handles: Vec<_> = (0..32)
            .map(|_| {
                let addr = srv.addr;
                std::thread::spawn(move || {
                    let mut s = TcpStream::connect(addr).unwrap();
                    s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
                    let mut out = String::new();
                    s.read_to_string(&mut out).unwrap();
                    out.starts_with("HTTP/1.1 200 OK\r\n")
                })
            })
            .collect();
        assert!(handles.into_iter().all(|h| h.join().unwrap()));
        assert_eq!(srv.get("/metrics").0, 200);
    }

    // -----------------------------------------------------------------------------------------
    // Headless Chromium.

    fn find_chromium() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("CWN_CHROMIUM") {
            return Some(PathBuf::from(p));
        }
        let path = std::env::var_os("PATH")?;
        for dir in std::env::split_paths(&path) {
            for name in [
                "chromium",
                "chromium-browser",
                "google-chrome",
                "google-chrome-stable",
            ] {
                let p = dir.join(name);
                if p.is_file() {
                    return Some(p);
                }
            }
        }
        None
    }

    /// The DOM after scripts ran, as Chromium serialises it.
    fn dump_dom(chromium: &PathBuf, url: &str) -> String {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(chromium)
            .args([
                "--headless",
                "--disable-gpu",
                "--no-sandbox",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-dev-shm-usage",
                "--disable-extensions",
                "--disable-background-networking",
                "--virtual-time-budget=3000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(["--dump-dom", url])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", chromium.display()));
        let mut stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            stdout.read_to_string(&mut s).map(|_| s)
        });
        let mut stderr = child.stderr.take().unwrap();
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium did not finish within 120 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let dom = reader.join().unwrap().unwrap();
        let errors = err_reader.join().unwrap();
        assert!(
            status.success() && dom.contains("</html>"),
            "chromium failed ({status}): {errors}"
        );
        dom
    }

    /// One figure on the page.
    #[derive(Debug)]
    struct Figure {
        metric: String,
        labels: std::collections::BTreeMap<String, String>,
        attrs: std::collections::HashMap<String, String>,
        text: String,
    }

    fn unescape_html(s: &str) -> String {
        s.replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&nbsp;", "\u{a0}")
            .replace("&amp;", "&")
    }

    /// Every element with a `data-metric` attribute: its labels, attributes and text.
    fn figures(dom: &str) -> Vec<Figure> {
        let attr = regex::Regex::new(r#"([a-zA-Z0-9_:-]+)="([^"]*)""#).unwrap();
        let mut out = Vec::new();
        let mut from = 0;
        while let Some(i) = dom[from..].find(" data-metric=\"") {
            let at = from + i;
            let start = dom[..at].rfind('<').unwrap();
            let end = at + dom[at..].find('>').unwrap();
            let tag = &dom[start..end];
            let attrs: std::collections::HashMap<String, String> = attr
                .captures_iter(tag)
                .map(|c| (c[1].to_string(), unescape_html(&c[2])))
                .collect();
            let text_end = end + 1 + dom[end + 1..].find('<').unwrap();
            let labels = attrs
                .iter()
                .filter_map(|(k, v)| Some((k.strip_prefix("data-label-")?.to_string(), v.clone())))
                .collect();
            out.push(Figure {
                metric: attrs["data-metric"].clone(),
                labels,
                text: unescape_html(&dom[end + 1..text_end]),
                attrs,
            });
            from = end;
        }
        out
    }

    /// The number a figure shows, in the unit of its series.
    fn shown_value(f: &Figure) -> f64 {
        if let Some(points) = f.attrs.get("data-points") {
            return points.split(',').map(|p| p.parse::<f64>().unwrap()).sum();
        }
        if f.attrs.get("data-format").map(String::as_str) == Some("rfc3339") {
            return f.text.parse::<Timestamp>().unwrap().as_second() as f64;
        }
        let n: f64 = f
            .text
            .replace('\u{202f}', "")
            .parse()
            .unwrap_or_else(|_| panic!("figure {f:?} is not a number"));
        let scale: f64 = f
            .attrs
            .get("data-scale")
            .map_or(1.0, |s| s.parse().unwrap());
        n * scale
    }

    /// Chromium, or `None` (with a note) when `CWN_SKIP_BROWSER=1` skips deliberately.
    fn chromium_or_skip() -> Option<PathBuf> {
        let found = find_chromium();
        if found.is_none() {
            if std::env::var("CWN_SKIP_BROWSER").as_deref() == Ok("1") {
                eprintln!("skipping the browser test: CWN_SKIP_BROWSER=1 and no chromium");
                return None;
            }
            panic!(
                "chromium not found on PATH (nor CWN_CHROMIUM): install it with \
                 `apt-get install chromium` (.ci/run does), or set CWN_SKIP_BROWSER=1 to skip \
                 this test deliberately"
            );
        }
        found
    }

    /// Every figure on the page equals its series in `/metrics` (rendered moments apart), and
    /// every series but the raw histogram buckets is on the page.
    fn assert_page_agrees_with_metrics(dom: &str, metrics: &str) -> Vec<Figure> {
        let exposition = parse_exposition(metrics).unwrap();
        let figures = figures(dom);
        for f in &figures {
            let want = exposition.get(&f.metric, &f.labels).unwrap_or_else(|| {
                panic!(
                    "page shows {} {:?}, /metrics has no such series",
                    f.metric, f.labels
                )
            });
            let shown = shown_value(f);
            let ok = match f.metric.as_str() {
                // The page and /metrics were rendered a few seconds apart.
                "cwn_snapshot_age_seconds" => (shown - want).abs() <= 30.0,
                // Shown with four significant digits.
                _ if f.attrs.contains_key("data-scale") => {
                    (shown - want).abs() <= want.abs() * 1e-3
                }
                _ => shown == want,
            };
            assert!(
                ok,
                "{} {:?}: page shows {shown} ({:?}), /metrics says {want}",
                f.metric, f.labels, f.text
            );
        }
        for s in &exposition.samples {
            if s.name.starts_with("cwn_delivery_latency_seconds_b")
                || s.name == "cwn_delivery_latency_seconds_sum"
            {
                continue;
            }
            assert!(
                figures
                    .iter()
                    .any(|f| f.metric == s.name && f.labels == s.labels),
                "{} {:?} is not on the page",
                s.name,
                s.labels
            );
        }
        figures
    }

    /// The page as `cwn serve` itself serves it (its `status_listen`), after a partner's
    /// batch went through the hub: the figures are the hub's own, and they agree with its
    /// `/metrics`.
    #[cfg(unix)]
    #[test]
    fn headless_chromium_shows_what_cwn_serve_measures() {
        let Some(chromium) = chromium_or_skip() else {
            return;
        };
        let net = crate::net::Net::new();
        let (child, hub, status) =
            crate::net::spawn_hub_with(&net, "status_listen = \"127.0.0.1:0\"");
        // Stopped even when an assertion fails first.
        struct Hub(std::process::Child);
        impl Drop for Hub {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let mut child = Hub(child);
        let status = status.expect("a status page");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let t = net.telemetry("dns.jsonl", &[("www.evil.example", "198.51.100.20")]);
        assert_eq!(rt.block_on(crate::net::stream(&net, &hub, &t)).len(), 1);
        // The notification logs' size reaches the page within a couple of seconds.
        let t0 = std::time::Instant::now();
        while !crate::net::http_get(&status, "/metrics")
            .lines()
            .any(|l| l.starts_with("cwn_log_disk_bytes ") && !l.ends_with(" 0"))
        {
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(5),
                "cwn_log_disk_bytes stays 0 after a batch was logged"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let dom = dump_dom(&chromium, &format!("http://{status}/"));
        let body = crate::net::http_get(&status, "/metrics");
        let figures = assert_page_agrees_with_metrics(&dom, &body);
        let shown = |metric: &str| {
            figures
                .iter()
                .filter(|f| f.metric == metric)
                .map(shown_value)
                .sum::<f64>()
        };
        assert_eq!(shown("cwn_telemetry_rows_total"), 1.0, "{body}");
        assert_eq!(shown("cwn_snapshot_version"), 1.0, "{body}");
        assert!(
            figures
                .iter()
                .any(|f| f.labels.get("partner").map(String::as_str) == Some("msp")),
            "the partner's figures are on the page"
        );
        let _ = Command::new("kill")
            .args(["-TERM", &child.0.id().to_string()])
            .status();
        assert!(child.0.wait().unwrap().success());
    }

    #[test]
    fn headless_chromium_shows_the_figures_of_metrics() {
        let Some(chromium) = chromium_or_skip() else {
            return;
        };
        let metrics = Arc::new(registry());
        feed(&metrics, Timestamp::now());
        let srv = Running::start(metrics.clone());

        let dom = dump_dom(&chromium, &srv.url("/"));
        let (_, _, body) = srv.get("/metrics");
        let exposition = parse_exposition(&body).unwrap();
        let figures = assert_page_agrees_with_metrics(&dom, &body);
        assert!(
            figures.len() > 100,
            "only {} figures on the page",
            figures.len()
        );

        // Both throughput charts were drawn, with bars.
        for id in ["chart-rows", "chart-hits"] {
            let at = dom
                .find(&format!("id=\"{id}\""))
                .unwrap_or_else(|| panic!("{id} missing"));
            let svg = &dom[at..at + dom[at..].find("</svg>").unwrap()];
            assert!(svg.matches("<rect").count() >= 10, "{id} has no bars");
        }
        // Names that need escaping arrive intact; errors and connected entities are listed.
        assert!(
            figures
                .iter()
                .any(|f| f.labels.get("partner").map(String::as_str) == Some(ODD_PARTNER))
        );
        assert!(
            dom.contains("stream reset &lt;code 0x101&gt; &amp; retrying"),
            "error message"
        );
        assert!(dom.contains("<a class=\"entity\" href=\"/entity/msp-noord\">msp-noord</a>"));
        // Self-contained: nothing is loaded from elsewhere.
        let external = regex::Regex::new(r#"(?i)(src|href)="(https?:)?//"#).unwrap();
        assert!(!external.is_match(&dom), "external reference in the page");

        // The JSON API agrees too.
        let (_, _, json) = srv.get("/api/status.json");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            v["reach"]["reachable"].as_f64(),
            Some(exposition.value("cwn_entities_reachable", &[]))
        );
        assert_eq!(
            v["throughput"]["rows_total"].as_f64(),
            Some(exposition.value("cwn_throughput_window_rows", &[]))
        );
        assert_eq!(
            v["subscribers"]["connected"].as_f64(),
            Some(exposition.value("cwn_subscribers_connected", &[]))
        );
    }
}
