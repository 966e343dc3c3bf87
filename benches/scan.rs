//! End-to-end scan benchmark: a generated Zeek-like Parquet file (string addresses, dictionary-
//! encoded DNS names, microsecond timestamps, a unique `uid` the field map does not name)
//! matched against the index compiled from the real maltrail set, on one and two threads.
//! Throughput is in bytes of the Parquet file.
//!
//! Every run also reports the *decode floor*: the same scan with [`Scanner::with_decode_only`]
//! (`cwn match --decode-only`: the same readers, threads and batches, nothing matched), timed
//! interleaved with the real scan in the same run, so that the report reads as ratios — match
//! time over decode time on one thread and on two, and two threads over one — that the shared,
//! noisy machine does not blur. Hits must be the same on every thread count.
//!
//! `cargo bench --bench scan`. Skipped, with a note, when `../shared/data/real/` is absent.
//! With `CWN_SCAN_WRITE=FILE` (and optionally `CWN_SCAN_ROWS=N`) it only writes the file, for
//! measuring `cwn match` on a large input.
//!
//! The floor on the 10 M-row peer workload (`benches/peers/run.py` builds it in
//! `target/peers/`), the figure the README quotes:
//!
//! ```text
//! CWN_SCAN_INDEX=target/peers/set.cwnsnap CWN_SCAN_FILE=target/peers/telemetry.parquet \
//!     cargo bench --bench scan                     # CWN_SCAN_ROUNDS=5 by default
//! ```
#![allow(missing_docs)] // criterion_group! generates an undocumented public function.

mod common;

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use common::zeek::{NOW, write_zeek_parquet, zeek_fields};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use cwn::index::{CompiledIndex, IndexBuilder};
use cwn::indicator::Kind;
use cwn::matcher::Matcher;
use cwn::matcher::scan::{ScannedBatch, Scanner};
use cwn::telemetry::preset::Preset;

const ROWS: usize = 400_000;

/// The median of some timings.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One timed scan: seconds and hits.
fn timed_scan(scanner: &Scanner, matcher: &Matcher<'_>, path: &Path) -> (f64, u64, u64) {
    let mut sink = |_: &ScannedBatch<'_>| -> std::io::Result<bool> { Ok(true) };
    let t = Instant::now();
    let s = scanner
        .scan_files(matcher, &[path], None, &mut sink)
        .expect("scan");
    (t.elapsed().as_secs_f64(), s.rows, s.hits)
}

/// The decode floor: `rounds` rounds of {1, 2} threads × {decode only, match}, interleaved so
/// that the machine's noise falls on both alike; medians and their ratios printed. Panics if
/// the hits differ between thread counts.
fn floor_report(label: &str, matcher: &Matcher<'_>, path: &Path, rounds: usize) {
    let bytes = std::fs::metadata(path).expect("size").len();
    let scanners: Vec<(usize, Scanner, Scanner)> = [1, 2]
        .into_iter()
        .map(|t| {
            (
                t,
                Scanner::new(t).expect("pool").with_decode_only(true),
                Scanner::new(t).expect("pool"),
            )
        })
        .collect();
    let mut decode = vec![Vec::new(); scanners.len()];
    let mut scan = vec![Vec::new(); scanners.len()];
    let mut hits = vec![0u64; scanners.len()];
    let mut rows = 0;
    for round in 0..rounds.max(1) {
        for (k, (_, only, full)) in scanners.iter().enumerate() {
            let (d, r, h) = timed_scan(only, matcher, path);
            assert_eq!(h, 0, "decode only matches nothing");
            decode[k].push(d);
            let (m, r2, h) = timed_scan(full, matcher, path);
            assert_eq!(r, r2, "the same rows read");
            rows = r;
            if round == 0 {
                hits[k] = h;
            }
            assert_eq!(h, hits[k], "the same hits on every round");
            scan[k].push(m);
        }
    }
    assert!(
        hits.iter().all(|&h| h == hits[0]),
        "hits differ between thread counts: {hits:?}"
    );
    let d: Vec<f64> = decode.into_iter().map(median).collect();
    let m: Vec<f64> = scan.into_iter().map(median).collect();
    eprintln!(
        "\ndecode floor, {label}: {rows} rows, {bytes} bytes, {} hits; median of {} round(s)",
        hits[0],
        rounds.max(1)
    );
    eprintln!("  threads | decode only | match   | match/decode | rows/s (match) | GB/s (match)");
    for (k, (t, _, _)) in scanners.iter().enumerate() {
        eprintln!(
            "  {t:>7} | {:>9.3} s | {:>5.3} s | {:>12.2} | {:>14.0} | {:>12.2}",
            d[k],
            m[k],
            m[k] / d[k],
            rows as f64 / m[k],
            bytes as f64 / m[k] / 1e9
        );
    }
    eprintln!(
        "  two threads over one: match {:.2}x, decode only {:.2}x\n",
        m[0] / m[1],
        d[0] / d[1]
    );
}

fn scan(c: &mut Criterion) {
    let rounds = std::env::var("CWN_SCAN_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    if let (Some(index), Some(file)) = (
        std::env::var_os("CWN_SCAN_INDEX"),
        std::env::var_os("CWN_SCAN_FILE"),
    ) {
        let index = CompiledIndex::open(Path::new(&index), None).expect("open CWN_SCAN_INDEX");
        let fields = Preset::Zeek.field_map();
        let matcher = Matcher::new(&index, &fields, jiff::Timestamp::now().as_second());
        let file = Path::new(&file);
        floor_report(&file.display().to_string(), &matcher, file, rounds);
        return;
    }
    let Some(set) = common::maltrail_set() else {
        return;
    };
    let index = IndexBuilder::new().build(&set).expect("build");
    let names: Vec<String> = set
        .iter()
        .filter(|(_, i)| i.kind == Kind::Domain)
        .step_by(997)
        .map(|(_, i)| i.value.clone())
        .collect();
    let ips: Vec<String> = set
        .iter()
        .filter(|(_, i)| i.kind == Kind::Ipv4)
        .step_by(97)
        .map(|(_, i)| i.value.clone())
        .collect();
    if let Some(out) = std::env::var_os("CWN_SCAN_WRITE") {
        let rows = std::env::var("CWN_SCAN_ROWS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(ROWS);
        write_zeek_parquet(Path::new(&out), rows, &names, &ips);
        eprintln!("wrote {rows} rows to {}", Path::new(&out).display());
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("zeek.parquet");
    write_zeek_parquet(&path, ROWS, &names, &ips);
    let bytes = std::fs::metadata(&path).expect("size").len();
    let fields = zeek_fields();
    let matcher = Matcher::new(&index, &fields, NOW);
    let mut g = c.benchmark_group("scan");
    g.throughput(Throughput::Bytes(bytes));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    for (threads, decode_only) in [(1, false), (1, true), (2, false), (2, true)] {
        let scanner = Scanner::new(threads)
            .expect("pool")
            .with_decode_only(decode_only);
        let mut sink = |_: &ScannedBatch<'_>| -> std::io::Result<bool> { Ok(true) };
        let s = scanner
            .scan_files(&matcher, &[&path], None, &mut sink)
            .expect("scan");
        eprintln!(
            "zeek.parquet: {ROWS} rows, {bytes} bytes, {} hits, {threads} thread(s){}",
            s.hits,
            if decode_only { ", decode only" } else { "" }
        );
        let what = if decode_only {
            "zeek_parquet_400k_rows_decode_only"
        } else {
            "zeek_parquet_400k_rows"
        };
        g.bench_with_input(
            BenchmarkId::new(what, format!("threads={threads}")),
            &threads,
            |b, _| {
                b.iter(|| {
                    let mut n = 0usize;
                    let mut sink = |b: &ScannedBatch<'_>| -> std::io::Result<bool> {
                        n += b.hits.len();
                        Ok(true)
                    };
                    scanner
                        .scan_files(&matcher, &[&path], None, &mut sink)
                        .expect("scan");
                    black_box(n)
                })
            },
        );
    }
    g.finish();
    floor_report("zeek.parquet", &matcher, &path, rounds);
}

criterion_group!(scan_benches, scan);
criterion_main!(scan_benches);
