//! End-to-end scan benchmark: a generated Zeek-like Parquet file (string addresses, dictionary-
//! encoded DNS names, microsecond timestamps, a unique `uid` the field map does not name)
//! matched against the index compiled from the real maltrail set, on one and two threads.
//! Throughput is in bytes of the Parquet file.
//!
//! `cargo bench --bench scan`. Skipped, with a note, when `../shared/data/real/` is absent.
//! With `CWN_SCAN_WRITE=FILE` (and optionally `CWN_SCAN_ROWS=N`) it only writes the file, for
//! measuring `cwn match` on a large input.
#![allow(missing_docs)] // criterion_group! generates an undocumented public function.

mod common;

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use common::zeek::{NOW, write_zeek_parquet, zeek_fields};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use cwn::index::IndexBuilder;
use cwn::indicator::Kind;
use cwn::matcher::Matcher;
use cwn::matcher::scan::{ScannedBatch, Scanner};

const ROWS: usize = 400_000;

fn scan(c: &mut Criterion) {
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
    for threads in [1, 2] {
        let scanner = Scanner::new(threads).expect("pool");
        let mut sink = |_: &ScannedBatch<'_>| -> std::io::Result<bool> { Ok(true) };
        let s = scanner
            .scan_files(&matcher, &[&path], None, &mut sink)
            .expect("scan");
        eprintln!(
            "zeek.parquet: {ROWS} rows, {bytes} bytes, {} hits, {threads} thread(s)",
            s.hits
        );
        g.bench_with_input(
            BenchmarkId::new("zeek_parquet_400k_rows", format!("threads={threads}")),
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
}

criterion_group!(scan_benches, scan);
criterion_main!(scan_benches);
