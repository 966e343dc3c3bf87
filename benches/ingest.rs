//! Ingest benchmarks: the full real maltrail set (1.85 M lines, 3,113 files) through the whole
//! driver, with and without the 136 real MISP warninglists, and normalisation per value.
//!
//! `cargo bench --bench ingest`. The real data is read from `../shared/data/real/`; groups
//! that need it are skipped (with a note) when it is absent.
#![allow(missing_docs)] // criterion_group! generates an undocumented public function.

mod common;

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use cwn::indicator::normalize;
use cwn::ingest::{self, Ingest, SourceOptions, Warninglists};

fn ingest_dir(root: &Path, warninglists: Option<Warninglists>) -> (u64, u64) {
    let opts = SourceOptions::default();
    let files = ingest::expand_sources(&[root.to_path_buf()], &opts).expect("expand");
    let mut driver = Ingest::new(warninglists);
    ingest::read_all(&files, &opts, &mut driver, |_| {}).expect("read");
    let r = driver.report();
    (r.accepted, r.suppressed)
}

fn maltrail(c: &mut Criterion) {
    let Some(tarball) = common::shared("maltrail-trails-static.tar.gz") else {
        return;
    };
    let trails = common::extract(&tarball);
    let root = trails.path().join("trails/static");
    let mut g = c.benchmark_group("ingest");
    g.sample_size(10).measurement_time(Duration::from_secs(25));
    g.throughput(Throughput::Elements(1_852_460));
    g.bench_function("maltrail_full/1.85M_lines", |b| {
        b.iter(|| black_box(ingest_dir(&root, None)))
    });
    if let Some(wl_tarball) = common::shared("misp-warninglists.tar.gz") {
        let wl = common::extract(&wl_tarball);
        g.bench_function("maltrail_full_warninglists/1.85M_lines_136_lists", |b| {
            b.iter_batched(
                || Warninglists::load(wl.path()).expect("load warninglists"),
                |l| black_box(ingest_dir(&root, Some(l))),
                criterion::BatchSize::PerIteration,
            )
        });
        g.bench_function("warninglists_load/136_lists", |b| {
            b.iter(|| black_box(Warninglists::load(wl.path()).expect("load")))
        });
    }
    g.finish();
}

fn normalise(c: &mut Criterion) {
    let lines: Vec<&str> = include_str!("../data/sample/maltrail/malware/agenttesla.txt")
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let mut g = c.benchmark_group("normalize");
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("guess/agenttesla_mixed", |b| {
        b.iter(|| lines.iter().filter(|l| normalize::guess(l).is_ok()).count())
    });
    let domains: Vec<String> = (0..10_000)
        .map(|i| format!("Host{i}.Sub.Example-{}.COM.", i % 97))
        .collect();
    g.throughput(Throughput::Elements(domains.len() as u64));
    g.bench_function("domain/10k_mixed_case", |b| {
        b.iter(|| {
            domains
                .iter()
                .filter(|d| normalize::domain(d).is_ok())
                .count()
        })
    });
    let urls: Vec<String> = (0..10_000)
        .map(|i| format!("HTTP://Evil{i}.Example.com:80/a/./b/%61{i}.php?q={i}#frag"))
        .collect();
    g.throughput(Throughput::Elements(urls.len() as u64));
    g.bench_function("url/10k", |b| {
        b.iter(|| urls.iter().filter(|u| normalize::url(u).is_ok()).count())
    });
    g.finish();
}

criterion_group!(benches, maltrail, normalise);
criterion_main!(benches);
