//! Name and exact-value index benchmarks: domain lookups with subdomain semantics against the
//! 1.37 M real maltrail domain lines (real Zeek DNS queries, and a synthetic miss-heavy column),
//! digest lookups (SHA-256, SHA-1, MD5 over 1 M digests, 1 % hits), byte-string lookups
//! (e-mail addresses) and the domain index build.
//!
//! `cargo bench --bench index_domain`. The real data is read from `../shared/data/real/`;
//! groups that need it are skipped (with a note) when it is absent. Memory per indicator is
//! printed on stderr.
#![allow(missing_docs)] // criterion_group! generates an undocumented public function.

mod common;

use std::hint::black_box;
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use cwn::index::domain::{DomainIndex, DomainIndexBuilder};
use cwn::index::exact::{BytesIndexBuilder, ExactIndex, ExactIndexBuilder};

/// Deterministic pseudo-random numbers (splitmix64), so every run measures the same columns.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        cwn::generate::rng::splitmix64(&mut self.0)
    }

    fn below(&mut self, n: usize) -> usize {
        (((self.next() >> 32) * n as u64) >> 32) as usize
    }

    fn label(&mut self, min: usize, max: usize) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let len = min + self.below(max - min + 1);
        (0..len)
            .map(|_| ALPHABET[self.below(ALPHABET.len())] as char)
            .collect()
    }

    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for chunk in out.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        out
    }
}

/// The plain-domain lines of `trails/static/**/*.txt` (lower-case `[a-z0-9._-]`, at least one
/// dot, not an IPv4 address), with a trailing `# comment` and a leading `.` stripped, in file
/// order (repeats across files kept: each line is one indicator).
fn maltrail_domains() -> Option<Vec<String>> {
    let tarball = common::shared("maltrail-trails-static.tar.gz")?;
    let f = std::fs::File::open(tarball).expect("open tarball");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    for entry in archive.entries().expect("tar entries") {
        let mut entry = entry.expect("tar entry");
        let path = entry.path().expect("entry path").into_owned();
        let is_txt = path.extension().is_some_and(|e| e == "txt");
        if is_txt && path.starts_with("trails/static") {
            let mut text = String::new();
            if entry.read_to_string(&mut text).is_ok() {
                files.push((path, text));
            }
        }
    }
    files.sort();
    let mut out = Vec::new();
    for (_, text) in &files {
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            let line = line.strip_prefix('.').unwrap_or(line);
            let plain = line.contains('.')
                && line
                    .bytes()
                    .all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'));
            let ipv4 = line.bytes().all(|c| c.is_ascii_digit() || c == b'.');
            if plain && !ipv4 {
                out.push(line.to_owned());
            }
        }
    }
    Some(out)
}

/// The `query` column of the real Zeek `dns.log` (unset and empty values left out).
fn zeek_queries() -> Option<Vec<Vec<u8>>> {
    let path = common::shared("zeek-dns.log.gz")?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).expect("open dns.log"))
        .read_to_string(&mut text)
        .expect("read dns.log");
    let mut column = None;
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(fields) = line.strip_prefix("#fields\t") {
            column = fields.split('\t').position(|f| f == "query");
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let Some(c) = column else { continue };
        if let Some(q) = line.split('\t').nth(c)
            && q != "-"
            && q != "(empty)"
        {
            out.push(q.as_bytes().to_vec());
        }
    }
    Some(out)
}

fn build_domains(domains: &[String]) -> DomainIndex {
    let mut b = DomainIndexBuilder::new();
    for (i, d) in domains.iter().enumerate() {
        b.add_domain(d.as_bytes(), i as u32);
    }
    b.build()
}

/// 100 k names: 99 % random names of two to four labels under common TLDs, 1 % random
/// subdomains of maltrail domains.
fn synthetic_names(domains: &[String]) -> Vec<Vec<u8>> {
    const TLDS: [&str; 8] = ["com", "net", "org", "ru", "info", "io", "nl", "de"];
    let mut rng = Rng(7);
    (0..100_000)
        .map(|i| {
            if i % 100 == 0 {
                format!("{}.{}", rng.label(1, 8), domains[rng.below(domains.len())])
            } else {
                let mut name = String::new();
                for _ in 0..1 + rng.below(3) {
                    name.push_str(&rng.label(2, 12));
                    name.push('.');
                }
                name.push_str(TLDS[rng.below(TLDS.len())]);
                name
            }
            .into_bytes()
        })
        .collect()
}

/// Ordinals matched over `names` by a plain hash map probed at every label boundary (every
/// maltrail entry is a domain), to check the index on the real data before timing it.
fn reference_hits(domains: &[String], names: &[Vec<u8>]) -> usize {
    let mut map: std::collections::HashMap<&[u8], Vec<u32>> = Default::default();
    for (i, d) in domains.iter().enumerate() {
        map.entry(d.as_bytes()).or_default().push(i as u32);
    }
    let mut hits = 0;
    for name in names {
        let mut ords: Vec<u32> = Vec::new();
        let starts = std::iter::once(0).chain(
            name.iter()
                .enumerate()
                .filter(|(_, c)| **c == b'.')
                .map(|(i, _)| i + 1),
        );
        for s in starts {
            if let Some(o) = map.get(&name[s..]) {
                ords.extend(o);
            }
        }
        ords.sort_unstable();
        ords.dedup();
        hits += ords.len();
    }
    hits
}

fn lookup_all(index: &DomainIndex, names: &[Vec<u8>], out: &mut Vec<u32>) -> usize {
    let mut hits = 0;
    for name in names {
        out.clear();
        index.lookup(name, out);
        hits += out.len();
    }
    hits
}

fn domain_lookup(c: &mut Criterion) {
    let Some(domains) = maltrail_domains() else {
        return;
    };
    let index = build_domains(&domains);
    let distinct = {
        let mut d: Vec<&str> = domains.iter().map(String::as_str).collect();
        d.sort_unstable();
        d.dedup();
        d
    };
    let dedup_index = {
        let mut b = DomainIndexBuilder::new();
        for (i, d) in distinct.iter().enumerate() {
            b.add_domain(d.as_bytes(), i as u32);
        }
        b.build()
    };
    eprintln!(
        "domain index: {} lines, {} distinct names, {} bytes = {:.1} B/line \
         ({:.1} B/distinct name, filter {} KiB); one ordinal per distinct name: {:.1} B/name",
        domains.len(),
        index.len(),
        index.heap_bytes(),
        index.heap_bytes() as f64 / domains.len() as f64,
        index.heap_bytes() as f64 / index.len() as f64,
        index.filter_bytes() / 1024,
        dedup_index.heap_bytes() as f64 / dedup_index.len() as f64,
    );
    drop(dedup_index);

    let mut g = c.benchmark_group("domain_lookup");
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    let mut out = Vec::new();
    if let Some(queries) = zeek_queries() {
        let hits = lookup_all(&index, &queries, &mut out);
        assert_eq!(hits, reference_hits(&domains, &queries));
        eprintln!(
            "zeek dns.log: {} queries, {hits} ordinals matched",
            queries.len()
        );
        g.throughput(Throughput::Elements(queries.len() as u64));
        g.bench_function("maltrail_1.37M/zeek_dns_53k", |b| {
            b.iter(|| black_box(lookup_all(&index, black_box(&queries), &mut out)))
        });
    }
    let synthetic = synthetic_names(&domains);
    let hits = lookup_all(&index, &synthetic, &mut out);
    assert_eq!(hits, reference_hits(&domains, &synthetic));
    eprintln!(
        "synthetic: {} names, {hits} ordinals matched",
        synthetic.len()
    );
    g.throughput(Throughput::Elements(synthetic.len() as u64));
    g.bench_function("maltrail_1.37M/synthetic_miss", |b| {
        b.iter(|| black_box(lookup_all(&index, black_box(&synthetic), &mut out)))
    });
    g.finish();

    let mut g = c.benchmark_group("build");
    g.sample_size(10).measurement_time(Duration::from_secs(15));
    g.throughput(Throughput::Elements(domains.len() as u64));
    g.bench_function("domain/maltrail_1.37M", |b| {
        b.iter(|| black_box(build_domains(black_box(&domains))))
    });
    g.finish();
}

/// 1 M random digests and 100 k queries of which 1 % are present.
fn exact_case<const N: usize>(c: &mut Criterion, name: &str) {
    let mut rng = Rng(N as u64);
    let keys: Vec<[u8; N]> = (0..1_000_000).map(|_| rng.bytes::<N>()).collect();
    let mut b = ExactIndexBuilder::<N>::new();
    for (i, k) in keys.iter().enumerate() {
        b.add(*k, i as u32);
    }
    let index: ExactIndex<N> = b.build();
    eprintln!(
        "{name}: {} digests, {:.1} B/digest",
        index.len(),
        index.heap_bytes() as f64 / index.len() as f64
    );
    let queries: Vec<[u8; N]> = (0..100_000)
        .map(|i| {
            if i % 100 == 0 {
                keys[rng.below(keys.len())]
            } else {
                rng.bytes::<N>()
            }
        })
        .collect();
    let mut g = c.benchmark_group("exact_lookup");
    g.sample_size(20).measurement_time(Duration::from_secs(4));
    g.throughput(Throughput::Elements(queries.len() as u64));
    let mut out = Vec::new();
    g.bench_function(BenchmarkId::new(format!("{name}_1M"), "hit_1pct"), |b| {
        b.iter(|| {
            out.clear();
            for q in black_box(&queries) {
                index.lookup(q, &mut out);
            }
            black_box(out.len())
        })
    });
    g.finish();
}

fn exact_lookup(c: &mut Criterion) {
    exact_case::<32>(c, "sha256");
    exact_case::<20>(c, "sha1");
    exact_case::<16>(c, "md5");
}

/// 1 M synthetic e-mail addresses, 100 k queries of which 1 % are present.
fn bytes_lookup(c: &mut Criterion) {
    let mut rng = Rng(3);
    let email = |rng: &mut Rng| {
        format!(
            "{}.{}@{}.{}",
            rng.label(3, 8),
            rng.label(3, 10),
            rng.label(4, 12),
            "example"
        )
        .into_bytes()
    };
    let keys: Vec<Vec<u8>> = (0..1_000_000).map(|_| email(&mut rng)).collect();
    let mut b = BytesIndexBuilder::new();
    for (i, k) in keys.iter().enumerate() {
        b.add(k, i as u32);
    }
    let index = b.build();
    eprintln!(
        "email: {} keys, {:.1} B/key",
        index.len(),
        index.heap_bytes() as f64 / index.len() as f64
    );
    let queries: Vec<Vec<u8>> = (0..100_000)
        .map(|i| {
            if i % 100 == 0 {
                keys[rng.below(keys.len())].clone()
            } else {
                email(&mut rng)
            }
        })
        .collect();
    let mut g = c.benchmark_group("bytes_lookup");
    g.sample_size(20).measurement_time(Duration::from_secs(4));
    g.throughput(Throughput::Elements(queries.len() as u64));
    let mut out = Vec::new();
    g.bench_function("email_1M/hit_1pct", |b| {
        b.iter(|| {
            out.clear();
            for q in black_box(&queries) {
                index.lookup(q, &mut out);
            }
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, domain_lookup, exact_lookup, bytes_lookup);
criterion_main!(benches);
