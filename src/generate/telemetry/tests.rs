//! Unit tests of telemetry generation: layout, background that provably misses, planting.

use std::sync::Arc;

use arrow_array::Array;

use super::*;
use crate::index::IndexBuilder;
use crate::indicator::{Indicator, IndicatorSet, Tlp};
use crate::matcher::{Hit, Matcher};

fn index(values: &[(Kind, &str)]) -> CompiledIndex {
    crate::index::test_index(values)
}

/// Indicators that sit exactly where background is drawn from.
fn hostile() -> CompiledIndex {
    index(&[
        (Kind::Domain, "example.com"),
        (Kind::Cidr, "198.18.0.0/16"),
        (Kind::Ipv4, "192.0.2.1"),
        (Kind::Cidr, "10.0.0.0/9"),
        (Kind::IpPort, "198.51.100.7:443"),
        (Kind::UserAgent, "curl/8"),
        (Kind::Url, "https://www.example.net/"),
        (Kind::Domain, "evil-login.com"),
        (Kind::Hostname, "c2.evil-login.com"),
        (Kind::Url, "https://evil-login.com/owa/auth.php?id=1"),
        (Kind::Ipv4, "8.8.4.4"),
        (Kind::Ipv6, "2a00:1450::1"),
        (Kind::Cidr, "8.34.0.0/16"),
        (Kind::IpPort, "8.9.10.11:8443"),
        (Kind::Md5, "0123456789abcdef0123456789abcdef"),
        (Kind::Email, "bad@evil-login.com"),
        (Kind::Ja3, "fedcba9876543210fedcba9876543210"),
        (Kind::UserAgent, "EvilLoader/1.0"),
    ])
}

fn options(preset: Preset, rows: u64, hit_rate: f64) -> TelemetryOptions {
    TelemetryOptions {
        preset,
        rows,
        hit_rate,
        seed: 5,
        ..TelemetryOptions::default()
    }
}

fn hit_rows(idx: &CompiledIndex, fields: &FieldMap, batch: &RecordBatch, first: u64) -> Vec<u64> {
    let m = Matcher::new(idx, fields, 0);
    let mut hits: Vec<Hit> = Vec::new();
    m.match_record_batch(batch, first, &mut hits);
    let mut rows: Vec<u64> = hits.iter().map(|h| h.row).collect();
    rows.dedup();
    rows
}

#[test]
fn background_misses_an_index_that_covers_the_reserved_ranges() {
    let idx = hostile();
    for preset in Preset::ALL {
        let fields = preset.field_map();
        let g = TelemetryGenerator::new(&idx, &fields, options(preset, 3_000, 0.0)).unwrap();
        assert!(
            g.source.pool_stats.dropped > 0,
            "{preset:?}: nothing re-drawn"
        );
        let (flows, stats) = g.flows(0);
        assert_eq!(stats.planted, 0);
        let batch = g.record_batch(&flows).unwrap();
        assert_eq!(batch.num_rows(), 3_000);
        assert!(
            hit_rows(&idx, &fields, &batch, 0).is_empty(),
            "{preset:?}: background hit"
        );
    }
}

#[test]
fn planted_rows_are_exactly_the_rows_that_hit() {
    let idx = hostile();
    for preset in Preset::ALL {
        let fields = preset.field_map();
        let g = TelemetryGenerator::new(&idx, &fields, options(preset, 4_000, 0.25)).unwrap();
        let (flows, stats) = g.flows(0);
        let planted: Vec<u64> = flows
            .iter()
            .enumerate()
            .filter(|(_, f)| f.planted.is_some())
            .map(|(i, _)| i as u64)
            .collect();
        assert_eq!(planted.len() as u64, stats.planted);
        assert_eq!(stats.failures, 0);
        let rate = stats.planted as f64 / 4_000.0;
        assert!((rate - 0.25).abs() < 0.03, "{preset:?}: rate {rate}");
        let batch = g.record_batch(&flows).unwrap();
        assert_eq!(hit_rows(&idx, &fields, &batch, 0), planted, "{preset:?}");
        // Every plantable kind was used.
        let kinds: std::collections::BTreeSet<Kind> =
            flows.iter().filter_map(|f| f.planted).collect();
        for (k, _) in g.plantable() {
            assert!(kinds.contains(&k), "{preset:?}: no {k:?} planted");
        }
        let has_url = g.plantable().iter().any(|(k, _)| *k == Kind::Url);
        assert_eq!(has_url, preset.carries_urls());
    }
}

#[test]
fn validity_is_respected_when_planting() {
    let mut set = IndicatorSet::new();
    let mut expired = Indicator::new("old", Kind::Ipv4, "8.8.8.8", Arc::from("t"), Tlp::Green);
    expired.validity.valid_until = Some(Timestamp::from_second(1_000_000_000).unwrap());
    set.insert(expired).unwrap();
    let mut live = Indicator::new("new", Kind::Ipv4, "9.9.9.9", Arc::from("t"), Tlp::Green);
    live.validity.valid_from = Some(Timestamp::from_second(1_700_000_000).unwrap());
    set.insert(live).unwrap();
    let idx = IndexBuilder::new().build(&set).unwrap();
    let fields = Preset::Zeek.field_map();
    let g = TelemetryGenerator::new(&idx, &fields, options(Preset::Zeek, 2_000, 0.5)).unwrap();
    let (flows, stats) = g.flows(0);
    assert!(stats.planted > 800);
    for f in flows.iter().filter(|f| f.planted.is_some()) {
        assert!(f.dst == "9.9.9.9" || f.answers.iter().any(|a| a == "9.9.9.9"));
    }
    // Between the two windows nothing is valid: rows fall back to background, counted.
    let mut late = options(Preset::Zeek, 500, 0.5);
    late.start = Timestamp::from_second(1_200_000_000).unwrap();
    let g = TelemetryGenerator::new(&idx, &fields, late).unwrap();
    let (_, stats) = g.flows(0);
    assert_eq!(stats.planted, 0);
    assert!(stats.failures > 150);
}

#[test]
fn columns_line_up_with_their_types_for_every_application() {
    let idx = index(&[(Kind::Ipv4, "8.8.8.8")]);
    for preset in Preset::ALL {
        let fields = preset.field_map();
        let g = TelemetryGenerator::new(&idx, &fields, options(preset, 10, 0.0)).unwrap();
        let mut rng = Rng::new(1);
        let cols = preset.columns();
        for app in [
            App::Conn,
            App::Dns,
            App::Http,
            App::Tls,
            App::File,
            App::Smtp,
        ] {
            let f = g.source.background(&mut rng, 1_748_736_000_000_000, app);
            let mut row = Vec::new();
            preset.fill(&f, &mut row);
            for (c, cell) in cols.iter().zip(&row) {
                let ok = matches!(
                    (c.ty, cell),
                    (_, Cell::Null)
                        | (ColType::Str, Cell::Str(_))
                        | (ColType::I32 | ColType::I64, Cell::Int(_))
                        | (ColType::F64, Cell::Float(_))
                        | (ColType::StrList, Cell::List(_))
                );
                assert!(ok, "{preset:?} {app:?}: {} holds {cell:?}", c.name);
            }
            let set = |name: &str| {
                let i = cols.iter().position(|c| c.name == name).unwrap();
                !matches!(row[i], Cell::Null)
            };
            let want: &[&str] = match (preset, app) {
                (Preset::Zeek, App::Dns) => &["query", "qtype_name"],
                (Preset::Zeek, App::Http) => &["host", "uri", "user_agent"],
                (Preset::Zeek, App::Tls) => &["server_name", "ja3"],
                (Preset::Zeek, App::File) => &["md5", "sha1", "sha256", "filename"],
                (Preset::Zeek, App::Smtp) => &["mailfrom", "rcptto"],
                (Preset::Suricata, App::Dns) => &["dns.queries.rrname", "dns.type"],
                (Preset::Suricata, App::Http) => &["http.hostname", "http.url"],
                (Preset::Suricata, App::Tls) => &["tls.sni", "tls.ja3.hash"],
                (Preset::Suricata, App::File) => &["fileinfo.md5", "fileinfo.sha256"],
                (Preset::Suricata, App::Smtp) => &["smtp.mail_from", "smtp.rcpt_to"],
                (Preset::Ecs, App::Dns) => &["dns.question.name"],
                (Preset::Ecs, App::Http) => &["url.full", "url.domain", "user_agent.original"],
                (Preset::Ecs, App::Tls) => &["tls.client.server_name", "tls.client.ja3"],
                (Preset::Ecs, App::File) => &["file.hash.md5", "file.name"],
                (Preset::Ecs, App::Smtp) => &["email.from.address"],
                _ => &[],
            };
            for name in want {
                assert!(set(name), "{preset:?} {app:?}: {name} is empty");
            }
        }
    }
}

#[test]
fn json_nests_suricata_and_ecs_and_keeps_zeek_flat() {
    let idx = index(&[(Kind::Ipv4, "8.8.8.8")]);
    let mut rng = Rng::new(2);
    for preset in Preset::ALL {
        let fields = preset.field_map();
        let g = TelemetryGenerator::new(&idx, &fields, options(preset, 10, 0.0)).unwrap();
        let tree = JsonTree::new(preset);
        let f = g
            .source
            .background(&mut rng, 1_748_736_000_000_000, App::Dns);
        let flows = vec![f];
        let text = g.json_bytes(&flows, &tree);
        let v: serde_json::Value = serde_json::from_slice(&text).unwrap();
        match preset {
            Preset::Zeek => {
                assert!(v["id.orig_h"].is_string(), "{v}");
                assert!(v["ts"].is_f64());
                assert!(v["query"].is_string());
            }
            Preset::Suricata => {
                assert_eq!(v["event_type"], "dns");
                assert!(v["dns"]["queries"][0]["rrname"].is_string(), "{v}");
                assert_eq!(v["dns"]["version"], 3);
                assert!(v["timestamp"].as_str().unwrap().ends_with("+0000"));
            }
            Preset::Ecs => {
                assert!(v["source"]["ip"].is_string(), "{v}");
                assert!(v["dns"]["question"]["name"].is_string());
                assert!(v["@timestamp"].as_str().unwrap().ends_with('Z'));
            }
        }
        // Absent values are left out, not written as null.
        assert!(!String::from_utf8(text).unwrap().contains("null"));
    }
}

#[test]
fn output_formats_by_extension() {
    let f = |s: &str| OutputFormat::from_path(Path::new(s));
    assert_eq!(f("x.parquet"), Some(OutputFormat::Parquet));
    assert_eq!(f("x.ARROW"), Some(OutputFormat::Arrow));
    assert_eq!(f("dir/x.jsonl"), Some(OutputFormat::Jsonl { gzip: false }));
    assert_eq!(f("x.ndjson.gz"), Some(OutputFormat::Jsonl { gzip: true }));
    assert_eq!(f("x.parquet.gz"), None);
    assert_eq!(f("x.csv"), None);
    assert_eq!(f("x"), None);
}

#[test]
fn arrow_batches_have_the_schema_and_row_count() {
    let idx = index(&[(Kind::Ipv4, "8.8.8.8")]);
    let fields = Preset::Ecs.field_map();
    let g = TelemetryGenerator::new(&idx, &fields, options(Preset::Ecs, 100, 0.1)).unwrap();
    let (flows, _) = g.flows(0);
    let b = g.record_batch(&flows).unwrap();
    assert_eq!(b.num_rows(), 100);
    assert_eq!(b.schema(), *g.schema());
    let ts = b.column_by_name("@timestamp").unwrap();
    assert_eq!(ts.null_count(), 0);
}

#[test]
fn bad_options_are_refused() {
    let idx = index(&[(Kind::Ipv4, "8.8.8.8")]);
    let fields = Preset::Zeek.field_map();
    for rate in [-0.1, 1.5, f64::NAN] {
        let o = options(Preset::Zeek, 10, rate);
        assert!(matches!(
            TelemetryGenerator::new(&idx, &fields, o),
            Err(GenError::Options(_))
        ));
    }
}
