//! Substring index benchmarks: URL fields searched for request-path patterns.
//!
//! `cargo bench --bench index_substring`. Patterns: the real maltrail `uri` trails (the lines
//! starting with `/` in `trails/static/**/*.txt`, 92,495 distinct: the `100k_patterns` set), a
//! 1 k sample of them, and for `1M_patterns` the real set plus synthetic paths shaped like them.
//! Haystacks: 200,000 synthetic URL paths and queries of 40–120 bytes (path segments drawn from
//! common web vocabulary, php/asp/jsp names, numeric and random ids, query parameters, a third
//! with scheme and host), 0.5 % of them with a pattern of the set spliced in; the index's
//! answers are checked against the automaton's before timing.
//!
//! Two groups time the same work: `substring_find` in wall-clock time (criterion's default) and
//! `substring_find_cpu` in the thread's CPU time (`/proc/thread-self/schedstat`), which is the
//! per-core throughput even when other processes share the machine's cores. The real data is read
//! from `../shared/data/real/`; without it the benchmarks are skipped with a note.
#![allow(missing_docs)] // criterion_group! generates an undocumented public function.

mod common;

use std::hint::black_box;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};

use cwn::index::substring::{CLASS_URL, SubstringBuilder, SubstringIndex};

const URLS: usize = 200_000;

/// The distinct maltrail `uri` lines, sorted.
fn maltrail_uris(tarball: &Path) -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().expect("temp dir");
    let f = std::fs::File::open(tarball).expect("open");
    tar::Archive::new(flate2::read::GzDecoder::new(f))
        .unpack(dir.path())
        .expect("unpack");
    let mut out = Vec::new();
    let mut stack = vec![dir.path().join("trails/static")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "txt") {
                let text = std::fs::read(&p).expect("read");
                for line in text.split(|&b| b == b'\n') {
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    // A trailing comment (`/x.php # family`) is not part of the path.
                    let line = match line.iter().position(|&b| b == b'#' || b == b' ') {
                        Some(i) => &line[..i],
                        None => line,
                    };
                    if line.first() == Some(&b'/') && line.len() > 1 {
                        out.push(line.to_vec());
                    }
                }
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// splitmix64: a tiny deterministic generator, so every run sees the same haystacks.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        cwn::generate::rng::splitmix64(&mut self.0)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick(&mut self, list: List) -> &'static [u8] {
        static LISTS: OnceLock<[Vec<&'static str>; 4]> = OnceLock::new();
        let lists =
            LISTS.get_or_init(|| [WORDS, EXTS, KEYS, TLDS].map(|l| l.split_whitespace().collect()));
        let words = &lists[list as usize];
        words[self.below(words.len())].as_bytes()
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    /// `min + below(spread)` bytes drawn from `alphabet`.
    fn token(&mut self, alphabet: &[u8], min: usize, spread: usize, out: &mut Vec<u8>) {
        let len = min + self.below(spread.max(1));
        for _ in 0..len {
            out.push(alphabet[self.below(alphabet.len())]);
        }
    }
}

/// Which vocabulary [`Rng::pick`] draws from.
#[derive(Clone, Copy)]
enum List {
    Words,
    Exts,
    Keys,
    Tlds,
}

const WORDS: &str = "wp-content wp-includes uploads plugins themes images img static assets js css \
    fonts media cdn api v1 v2 v3 rest graphql users user account accounts profile settings admin \
    dashboard login logout auth oauth token session search products product category categories \
    catalog cart checkout order orders payment news blog article articles post posts page pages \
    home index default main about contact help support faq docs download downloads files file \
    data export report reports stats analytics track pixel beacon collect events event ads ad \
    banner video videos photo photos gallery thumb thumbnails large small en nl de fr us 2023 \
    2024 2025 01 02 03 11 12 weather sport shop store item items service services portal web app \
    apps mobile m www public private include includes lib vendor modules components templates \
    cache tmp sites all node feed rss sitemap robots manifest config status health metrics ping \
    update updates sync client server gateway proxy redirect link out go share comments reviews \
    rating maps map location stores jobs careers press media-center investor privacy terms \
    cookie cookies consent newsletter subscribe register signup password reset verify confirm \
    invoice billing plans pricing features solutions partners customers team library resources \
    webinar events-calendar tags tag author archive feeds xmlrpc ajax json widgets embed player \
    stream live chat";
const EXTS: &str = ".php .php .asp .aspx .jsp .html .htm .js .css .png .jpg .gif .svg .json \
    .xml .ico .woff2 .pdf .do .cgi";
const KEYS: &str = "id page q query s p cat sort order lang ref utm_source utm_medium \
    utm_campaign utm_content session sid token v ver type format action callback limit offset \
    from to date user uid item product_id redirect url return width height size t _";
const TLDS: &str = ".com .nl .net .org .de .io .eu .co.uk";
const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
const HEX: &[u8] = b"0123456789abcdef";
const DIGITS: &[u8] = b"0123456789";
const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const B64: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";

fn segment(rng: &mut Rng, out: &mut Vec<u8>) {
    match rng.below(10) {
        0 => rng.token(DIGITS, 1, 7, out),
        1 => rng.token(HEX, 8, 25, out),
        2 => {
            out.extend_from_slice(rng.pick(List::Words));
            out.push(b'-');
            out.extend_from_slice(rng.pick(List::Words));
        }
        3 => rng.token(LOWER, 3, 8, out),
        _ => out.extend_from_slice(rng.pick(List::Words)),
    }
}

fn value(rng: &mut Rng, out: &mut Vec<u8>) {
    match rng.below(6) {
        0 | 1 => rng.token(DIGITS, 1, 8, out),
        2 => out.extend_from_slice(rng.pick(List::Words)),
        3 => rng.token(HEX, 16, 17, out),
        4 => rng.token(B64, 10, 30, out),
        _ => rng.token(ALNUM, 4, 10, out),
    }
}

/// One synthetic URL of 40–120 bytes; with `pattern`, that pattern spliced into the path.
fn url(rng: &mut Rng, pattern: Option<&[u8]>) -> Vec<u8> {
    let mut u = Vec::with_capacity(128);
    if rng.chance(33) {
        let scheme: &[u8] = if rng.chance(70) {
            b"https://"
        } else {
            b"http://"
        };
        u.extend_from_slice(scheme);
        if rng.chance(50) {
            u.extend_from_slice(b"www.");
        }
        u.extend_from_slice(rng.pick(List::Words));
        rng.token(LOWER, 0, 6, &mut u);
        u.extend_from_slice(rng.pick(List::Tlds));
    }
    let target = 40 + rng.below(81);
    let segments = 1 + rng.below(5);
    let splice_at = rng.below(segments + 1);
    for k in 0..segments {
        if k == splice_at
            && let Some(p) = pattern
        {
            u.extend_from_slice(p);
        }
        u.push(b'/');
        segment(rng, &mut u);
    }
    if rng.chance(60) {
        u.extend_from_slice(rng.pick(List::Exts));
    } else {
        u.push(b'/');
    }
    if splice_at == segments
        && let Some(p) = pattern
    {
        u.extend_from_slice(p);
    }
    let mut separator = b'?';
    while u.len() < target {
        u.push(separator);
        separator = b'&';
        u.extend_from_slice(rng.pick(List::Keys));
        u.push(b'=');
        value(rng, &mut u);
    }
    if pattern.is_none() {
        u.truncate(120);
    }
    u
}

/// `URLS` URLs, 0.5 % of them with one of `patterns` spliced in.
fn urls(patterns: &[Vec<u8>], rng: &mut Rng) -> Vec<Vec<u8>> {
    (0..URLS)
        .map(|_| {
            let p = (rng.below(1000) < 5).then(|| patterns[rng.below(patterns.len())].as_slice());
            url(rng, p)
        })
        .collect()
}

/// Synthetic request paths shaped like the maltrail ones, to grow a set to a million.
fn synthetic_patterns(n: usize, rng: &mut Rng) -> Vec<Vec<u8>> {
    (0..n)
        .map(|_| {
            let mut p = Vec::new();
            for _ in 0..1 + rng.below(3) {
                p.extend_from_slice(b"/");
                match rng.below(4) {
                    0 => rng.token(ALNUM, 6, 14, &mut p),
                    1 => rng.token(LOWER, 4, 8, &mut p),
                    _ => p.extend_from_slice(rng.pick(List::Words)),
                }
            }
            rng.token(LOWER, 2, 6, &mut p);
            p.extend_from_slice(rng.pick(List::Exts));
            p
        })
        .collect()
}

fn build(patterns: &[Vec<u8>]) -> SubstringIndex {
    let mut b = SubstringBuilder::new();
    for (i, p) in patterns.iter().enumerate() {
        b.add(p, CLASS_URL, i as u32).expect("non-empty");
    }
    b.build()
}

fn find_all(index: &SubstringIndex, hays: &[Vec<u8>]) -> usize {
    let mut out = Vec::new();
    let mut hits = 0;
    for h in hays {
        out.clear();
        index.find(h, CLASS_URL, &mut out);
        hits += out.len();
    }
    hits
}

fn automaton_all(ac: &AhoCorasick, hays: &[Vec<u8>]) -> usize {
    let mut out = Vec::new();
    let mut hits = 0;
    for h in hays {
        out.clear();
        out.extend(
            ac.find_overlapping_iter(h.as_slice())
                .map(|m| m.pattern().as_u32()),
        );
        out.sort_unstable();
        out.dedup();
        hits += out.len();
    }
    hits
}

/// One pattern set with its haystacks.
struct Case {
    id: &'static str,
    index: SubstringIndex,
    hays: Vec<Vec<u8>>,
    bytes: u64,
}

struct Data {
    cases: Vec<Case>,
    /// The baseline: a contiguous NFA over the 100 k set (`cases[1]`).
    automaton: AhoCorasick,
}

fn case(id: &'static str, patterns: &[Vec<u8>], rng: &mut Rng) -> Case {
    let hays = urls(patterns, rng);
    let bytes = hays.iter().map(|h| h.len() as u64).sum();
    let started = std::time::Instant::now();
    let index = build(patterns);
    eprintln!(
        "{id}: {} patterns, built in {:.1?}, {:.1} B per pattern; {} URLs, {bytes} bytes, {} hits",
        index.patterns_len(),
        started.elapsed(),
        index.heap_bytes() as f64 / index.patterns_len() as f64,
        hays.len(),
        find_all(&index, &hays),
    );
    Case {
        id,
        index,
        hays,
        bytes,
    }
}

fn data() -> Option<&'static Data> {
    static DATA: OnceLock<Option<Data>> = OnceLock::new();
    DATA.get_or_init(|| {
        let real = maltrail_uris(&common::shared("maltrail-trails-static.tar.gz")?);
        let mut rng = Rng(0x5eed);
        let sample: Vec<Vec<u8>> = real.iter().step_by(real.len() / 1000).cloned().collect();
        let small = case("1k_patterns/urls", &sample, &mut rng);
        let full = case("100k_patterns/urls", &real, &mut rng);
        let automaton = AhoCorasickBuilder::new()
            .kind(Some(AhoCorasickKind::ContiguousNFA))
            .match_kind(MatchKind::Standard)
            .build(&real)
            .expect("automaton");
        // Both must find the same: the index's ordinals are the positions in `real`.
        let mut a = Vec::new();
        let mut b = Vec::new();
        for h in &full.hays {
            a.clear();
            b.clear();
            full.index.find(h, CLASS_URL, &mut a);
            b.extend(
                automaton
                    .find_overlapping_iter(h.as_slice())
                    .map(|m| m.pattern().as_u32()),
            );
            b.sort_unstable();
            b.dedup();
            assert_eq!(
                a,
                b,
                "index and automaton disagree on {:?}",
                String::from_utf8_lossy(h)
            );
        }
        let mut big = real.clone();
        big.extend(synthetic_patterns(1_000_000 - real.len(), &mut rng));
        let large = case("1M_patterns/urls", &big, &mut rng);
        Some(Data {
            cases: vec![small, full, large],
            automaton,
        })
    })
    .as_ref()
}

fn run<M: Measurement>(g: &mut BenchmarkGroup<'_, M>, data: &Data) {
    g.sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for c in &data.cases {
        g.throughput(Throughput::Bytes(c.bytes));
        g.bench_function(c.id, |b| b.iter(|| black_box(find_all(&c.index, &c.hays))));
        if c.id.starts_with("100k") {
            let hays = &c.hays;
            g.bench_function("aho_corasick_nfa/100k_patterns/urls", |b| {
                b.iter(|| black_box(automaton_all(&data.automaton, hays)))
            });
        }
    }
}

fn substring_find(c: &mut Criterion) {
    let Some(data) = data() else { return };
    let mut g = c.benchmark_group("substring_find");
    run(&mut g, data);
    g.finish();
}

fn substring_find_cpu(c: &mut Criterion<ThreadCpuTime>) {
    let Some(data) = data() else { return };
    let mut g = c.benchmark_group("substring_find_cpu");
    run(&mut g, data);
    g.finish();
}

/// CPU time of the calling thread, in nanoseconds (the first field of
/// `/proc/thread-self/schedstat`; 0 where that file does not exist).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Criterion measurement: the CPU time the benchmark thread spent, not the wall-clock time.
struct ThreadCpuTime;

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

/// Formats CPU nanoseconds as times and throughputs, as criterion does wall-clock time.
struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, ns: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = match ns {
            ns if ns < 1e3 => (1.0, "ns (cpu)"),
            ns if ns < 1e6 => (1e-3, "µs (cpu)"),
            ns if ns < 1e9 => (1e-6, "ms (cpu)"),
            _ => (1e-9, "s (cpu)"),
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }

    fn scale_throughputs(
        &self,
        _: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let (amount, unit) = match *throughput {
            Throughput::Bytes(b) => (b as f64 / (1024.0 * 1024.0), "MiB/s per core"),
            Throughput::BytesDecimal(b) => (b as f64 / 1e6, "MB/s per core"),
            Throughput::Elements(e) | Throughput::Bits(e) => (e as f64, "/s per core"),
        };
        values.iter_mut().for_each(|v| *v = amount * 1e9 / *v);
        unit
    }

    fn scale_for_machines(&self, _: &mut [f64]) -> &'static str {
        "ns"
    }
}

criterion_group!(wall, substring_find);
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = substring_find_cpu
}
criterion_main!(wall, cpu);
