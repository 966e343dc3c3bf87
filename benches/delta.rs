//! Delta snapshots on the full real maltrail set (1.64 M indicators), the figures of issue 20:
//! ten successive versions of 1,000 changes each (400 indicators removed, 400 added, 200 with
//! changed metadata), each delta computed against the state before it, written, read back
//! and applied as the hub does; then the same Zeek-like Parquet telemetry matched on a fresh
//! full compile of the last version and on the base with the chain of ten deltas applied,
//! alternating, with the hits compared.
//!
//! `cargo bench --bench delta` (`CWN_DELTA_ROWS=N` telemetry rows, default 2,000,000).
//! Skipped, with a note, when `../shared/data/real/` is absent.

#![allow(missing_docs)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use common::zeek::{NOW, Rng, write_zeek_parquet, zeek_fields};
use cwn::index::delta::Delta;
use cwn::index::{CompiledIndex, IndexBuilder};
use cwn::indicator::{Indicator, IndicatorSet, Kind, Tlp};
use cwn::matcher::Matcher;
use cwn::matcher::scan::{ScannedBatch, Scanner};

const VERSIONS: u64 = 10;

/// One version's edit of `cur`: 400 removed, 400 added (new domains and addresses, a tenth
/// of them in the telemetry), 200 changed (a tag added).
fn edit(cur: &mut Vec<Indicator>, rng: &mut Rng, v: u64, seen: &mut Vec<String>) {
    for _ in 0..400 {
        let i = rng.below(cur.len());
        cur.swap_remove(i);
    }
    let src: Arc<str> = Arc::from(format!("delta-feed-{v}"));
    for i in 0..400 {
        let (kind, value) = if i % 4 == 0 {
            (Kind::Ipv4, format!("198.18.{}.{}", v, 1 + i / 4))
        } else {
            (Kind::Domain, format!("new{i}.v{v}.delta-test.example"))
        };
        if i % 10 == 0 {
            seen.push(value.clone());
        }
        cur.push(Indicator::new(
            format!("{src}:{value}"),
            kind,
            value,
            src.clone(),
            Tlp::Green,
        ));
    }
    let tag: Arc<str> = Arc::from(format!("changed-in-v{v}"));
    for _ in 0..200 {
        let i = rng.below(cur.len());
        cur[i].tags.push(tag.clone());
    }
}

fn set_of(cur: &[Indicator]) -> IndicatorSet {
    let mut set = IndicatorSet::new();
    for i in cur {
        let _ = set.insert(i.clone());
    }
    set
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let Some(set) = common::maltrail_set() else {
        return;
    };
    let n = set.len();
    let base = IndexBuilder::new()
        .set_version(1)
        .created_at(1)
        .build(&set)
        .expect("build");
    let base = CompiledIndex::from_snapshot(&base.to_snapshot(None), None).expect("load");
    let mut cur: Vec<Indicator> = set.as_slice().to_vec();
    drop(set);
    let mut rng = Rng(2026);
    let mut state = base;
    let mut seen = Vec::new();
    let (mut compute, mut apply, mut per_change) = (Vec::new(), Vec::new(), Vec::new());
    println!("delta: {n} indicators in the base (maltrail), {VERSIONS} versions of 1,000 changes");
    let mut last = None;
    for v in 2..=VERSIONS + 1 {
        edit(&mut cur, &mut rng, v, &mut seen);
        let next = set_of(&cur);
        let builder = IndexBuilder::new().set_version(v).created_at(v as i64);
        let t = Instant::now();
        let (delta, stats) = Delta::compute(&state, &next, &builder).expect("compute");
        let bytes = delta.to_bytes(None);
        let c = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let read = Delta::from_bytes(&bytes, None).expect("read");
        state = state.apply(&read).expect("apply");
        let a = t.elapsed().as_secs_f64();
        let changes = stats.added + stats.removed - stats.changed;
        let per = bytes.len() as f64 / changes as f64;
        println!(
            "  v{v}: +{} -{} ({} changed) = {changes} changes; computed and written in {:.0} ms, {} bytes ({per:.0} bytes/change), read and applied in {:.1} ms",
            stats.added,
            stats.removed,
            stats.changed,
            c * 1e3,
            bytes.len(),
            a * 1e3
        );
        compute.push(c);
        apply.push(a);
        per_change.push(per);
        last = Some((next, builder));
    }
    let (final_set, builder) = last.expect("versions");
    let full = builder.build(&final_set).expect("build");
    let full = CompiledIndex::from_snapshot(&full.to_snapshot(None), None).expect("load");
    assert_eq!(
        full.len(),
        state.len(),
        "chain and full compile hold as many"
    );

    // Telemetry: maltrail names and addresses of the base, and some of the added ones.
    let names: Vec<String> = full
        .meta()
        .ords()
        .filter(|&o| full.meta().kind(o) == Kind::Domain)
        .step_by(997)
        .map(|o| full.meta().value(o).to_string())
        .chain(seen.iter().filter(|s| !s.starts_with("198.")).cloned())
        .collect();
    let ips: Vec<String> = full
        .meta()
        .ords()
        .filter(|&o| full.meta().kind(o) == Kind::Ipv4)
        .step_by(97)
        .map(|o| full.meta().value(o).to_string())
        .chain(seen.iter().filter(|s| s.starts_with("198.")).cloned())
        .collect();
    let rows = std::env::var("CWN_DELTA_ROWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("zeek.parquet");
    write_zeek_parquet(&path, rows, &names, &ips);
    let fields = zeek_fields();
    let scanner = Scanner::new(0).expect("pool");
    let run = |index: &CompiledIndex| {
        let matcher = Matcher::new(index, &fields, NOW);
        let mut hits = BTreeSet::new();
        let t = Instant::now();
        let mut sink = |b: &ScannedBatch<'_>| -> std::io::Result<bool> {
            for h in b.hits {
                hits.insert((h.row, h.field, index.meta().id(h.ord).to_string()));
            }
            Ok(true)
        };
        scanner
            .scan_files(&matcher, &[&path], None, &mut sink)
            .expect("scan");
        (t.elapsed().as_secs_f64(), hits)
    };
    let (mut t_full, mut t_chain) = (Vec::new(), Vec::new());
    let (_, want) = run(&full);
    let (_, got) = run(&state);
    assert_eq!(got, want, "the chain gives the full compile's hits");
    for round in 0..4 {
        // full, chain, chain, full: drift on the shared machine hits both alike.
        let order: [bool; 2] = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for chain in order {
            let (s, _) = run(if chain { &state } else { &full });
            if chain {
                t_chain.push(s)
            } else {
                t_full.push(s)
            }
        }
    }
    let (f, ch) = (median(t_full), median(t_chain));
    println!(
        "match {rows} rows ({} hits, {} threads): full compile {:.0} ms, base + {VERSIONS} deltas {:.0} ms — ratio {:.3}",
        want.len(),
        scanner.threads(),
        f * 1e3,
        ch * 1e3,
        ch / f
    );
    println!(
        "summary: compute median {:.0} ms (max {:.0}), apply median {:.1} ms (max {:.1}), {:.0} bytes per change (max {:.0}), chain/full match time {:.3}",
        median(compute.clone()) * 1e3,
        compute.iter().cloned().fold(0.0, f64::max) * 1e3,
        median(apply.clone()) * 1e3,
        apply.iter().cloned().fold(0.0, f64::max) * 1e3,
        median(per_change.clone()),
        per_change.iter().cloned().fold(0.0, f64::max),
        ch / f
    );
}
