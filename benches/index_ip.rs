//! Address index benchmarks: IPv4 lookups against 1 M mixed indicators (900 k random exact
//! addresses, 100 k networks /8–/31 with nesting and repeats) over columns of random addresses
//! of which 0 %, 1 % or 10 % hit; IPv6 lookups; and building the 1 M-indicator index.
//!
//! `cargo bench --bench index_ip`. Criterion runs single-threaded, so the throughput it reports
//! is per core. Set `CWN_BENCH_REPORT=1` to print the memory per indicator.
#![allow(missing_docs)] // criterion_group! generates an undocumented public function.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use ipnet::{Ipv4Net, Ipv6Net};

use cwn::index::ip::{Ipv4Index, Ipv4IndexBuilder, Ipv6Index, Ipv6IndexBuilder};

/// splitmix64: deterministic inputs without a `rand` dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        cwn::generate::rng::splitmix64(&mut self.0)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const EXACT: usize = 900_000;
const CIDRS: usize = 100_000;
const COLUMN: usize = 1 << 20;

/// A prefix length drawn from a distribution shaped like public block lists (DROP, firehol):
/// mostly /24 and longer, a few hundred short networks.
fn cidr_len(r: &mut Rng) -> u8 {
    match r.below(10_000) {
        0..5 => 8,
        5..50 => 9 + r.below(7) as u8,      // /9../15
        50..500 => 16 + r.below(4) as u8,   // /16../19
        500..2500 => 20 + r.below(4) as u8, // /20../23
        2500..6000 => 24,
        _ => 25 + r.below(7) as u8, // /25../31
    }
}

/// `(network, prefix length, ordinal)` for the networks and `(addr, ordinal)` for the exact
/// addresses. 15 % of networks nest inside an earlier one, 2 % repeat an earlier network with
/// another ordinal (two feeds listing it), 5 % of exact addresses fall inside a network.
struct Mixed {
    exact: Vec<(u32, u32)>,
    nets: Vec<(u32, u8, u32)>,
}

fn mixed(seed: u64) -> Mixed {
    let mut r = Rng(seed);
    let mut nets: Vec<(u32, u8, u32)> = Vec::with_capacity(CIDRS);
    let mut ord = 0u32;
    for _ in 0..CIDRS {
        let pick = r.below(100);
        let net = if pick < 2 && !nets.is_empty() {
            let (a, l, _) = nets[r.below(nets.len() as u64) as usize];
            (a, l)
        } else if pick < 17 && !nets.is_empty() {
            let (a, l, _) = nets[r.below(nets.len() as u64) as usize];
            let l2 = (l + 1 + r.below(u64::from(31 - l.min(30))) as u8).min(31);
            let host = (r.next() as u32) & (u32::MAX >> l);
            let m = u32::MAX << (32 - l2);
            ((a | host) & m, l2)
        } else {
            let l = cidr_len(&mut r);
            ((r.next() as u32) & (u32::MAX << (32 - l)), l)
        };
        nets.push((net.0, net.1, ord));
        ord += 1;
    }
    let mut exact = Vec::with_capacity(EXACT);
    for _ in 0..EXACT {
        let a = if r.below(100) < 5 {
            let (n, l, _) = nets[r.below(nets.len() as u64) as usize];
            n | ((r.next() as u32) & (u32::MAX >> l))
        } else {
            r.next() as u32
        };
        exact.push((a, ord));
        ord += 1;
    }
    Mixed { exact, nets }
}

fn build_v4(m: &Mixed) -> Ipv4Index {
    let mut b = Ipv4IndexBuilder::new();
    for &(a, l, o) in &m.nets {
        b.add(Ipv4Net::new(Ipv4Addr::from(a), l).unwrap(), o);
    }
    for &(a, o) in &m.exact {
        b.add_addr(a, o);
    }
    b.build()
}

/// A column of `COLUMN` addresses of which `hit_permille` ‰ hit: half exact addresses, half
/// random addresses inside random networks; the rest random addresses that miss.
fn column_v4(ix: &Ipv4Index, m: &Mixed, hit_permille: u64, seed: u64) -> Vec<u32> {
    let mut r = Rng(seed);
    let mut out = Vec::with_capacity(COLUMN);
    let mut hits = Vec::new();
    for _ in 0..COLUMN {
        if r.below(1000) < hit_permille {
            if r.below(2) == 0 {
                out.push(m.exact[r.below(m.exact.len() as u64) as usize].0);
            } else {
                let (n, l, _) = m.nets[r.below(m.nets.len() as u64) as usize];
                out.push(n | ((r.next() as u32) & (u32::MAX >> l)));
            }
        } else {
            loop {
                let a = r.next() as u32;
                hits.clear();
                ix.lookup(a, &mut hits);
                if hits.is_empty() {
                    out.push(a);
                    break;
                }
            }
        }
    }
    out
}

fn report_v4(ix: &Ipv4Index, m: &Mixed, columns: &[(&str, &Vec<u32>)]) {
    if std::env::var_os("CWN_BENCH_REPORT").is_none() {
        return;
    }
    let n = (m.exact.len() + m.nets.len()) as f64;
    eprintln!(
        "ipv4 1M mixed: {} exact entries, {} range entries; fixed {} B, variable {} B = {:.2} B/indicator ({:.2} B with the fixed part)",
        ix.exact_len(),
        ix.range_len(),
        ix.fixed_bytes(),
        ix.variable_bytes(),
        ix.variable_bytes() as f64 / n,
        ix.heap_bytes() as f64 / n
    );
    let exact_only = build_v4(&Mixed {
        exact: m.exact.clone(),
        nets: Vec::new(),
    });
    eprintln!(
        "ipv4 exact only ({}): {:.2} B/indicator",
        m.exact.len(),
        exact_only.variable_bytes() as f64 / m.exact.len() as f64
    );
    let cidr_only = build_v4(&Mixed {
        exact: Vec::new(),
        nets: m.nets.clone(),
    });
    eprintln!(
        "ipv4 CIDR only ({}): {} range entries, {:.2} B/indicator",
        m.nets.len(),
        cidr_only.range_len(),
        cidr_only.variable_bytes() as f64 / m.nets.len() as f64
    );
    for (name, col) in columns {
        let pass = col.iter().filter(|&&a| ix.may_contain(a)).count();
        eprintln!(
            "column {name}: {:.2} % pass the /24 filter",
            100.0 * pass as f64 / col.len() as f64
        );
    }
}

fn ipv4_lookup(c: &mut Criterion) {
    let m = mixed(1);
    let ix = build_v4(&m);
    let c0 = column_v4(&ix, &m, 0, 10);
    let c1 = column_v4(&ix, &m, 10, 11);
    let c10 = column_v4(&ix, &m, 100, 12);
    report_v4(
        &ix,
        &m,
        &[("hit_0pct", &c0), ("hit_1pct", &c1), ("hit_10pct", &c10)],
    );
    let mut g = c.benchmark_group("ipv4_lookup");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    g.throughput(Throughput::Elements(COLUMN as u64));
    for (name, col) in [("hit_0pct", &c0), ("hit_1pct", &c1), ("hit_10pct", &c10)] {
        g.bench_function(format!("1M_mixed/{name}"), |b| {
            let mut out = Vec::with_capacity(64);
            b.iter(|| {
                let mut n = 0usize;
                for &a in col.iter() {
                    out.clear();
                    ix.lookup(a, &mut out);
                    n += out.len();
                }
                black_box(n)
            })
        });
    }
    g.bench_function("1M_mixed/hit_1pct_column", |b| {
        let mut hits = Vec::with_capacity(COLUMN / 50);
        b.iter(|| {
            hits.clear();
            ix.lookup_column(&c1, &mut hits);
            black_box(hits.len())
        })
    });
    g.finish();
}

fn ipv6_lookup(c: &mut Criterion) {
    // 200 k exact addresses and 50 k networks /16–/127 inside 2000::/3, 1 % of the column hits.
    let mut r = Rng(2);
    let global = |r: &mut Rng| {
        (0x2000u128 << 112) | ((u128::from(r.next()) << 64 | u128::from(r.next())) >> 3)
    };
    let mut b = Ipv6IndexBuilder::new();
    let mut exact = Vec::new();
    let mut nets = Vec::new();
    for o in 0..200_000u32 {
        let a = global(&mut r);
        exact.push(a);
        b.add_addr(a, o);
    }
    for o in 0..50_000u32 {
        let l = match r.below(100) {
            0..2 => 16 + r.below(16) as u8,
            2..40 => 32 + r.below(17) as u8,
            40..80 => 48 + r.below(17) as u8,
            _ => 64 + r.below(64) as u8,
        };
        let n = Ipv6Net::new(global(&mut r).into(), l).unwrap().trunc();
        nets.push(n);
        b.add(n, 200_000 + o);
    }
    let ix: Ipv6Index = b.build();
    let mut col = Vec::with_capacity(COLUMN);
    let mut out = Vec::new();
    for _ in 0..COLUMN {
        if r.below(100) == 0 {
            col.push(exact[r.below(exact.len() as u64) as usize]);
        } else {
            loop {
                let a = global(&mut r);
                out.clear();
                ix.lookup(a, &mut out);
                if out.is_empty() {
                    col.push(a);
                    break;
                }
            }
        }
    }
    if std::env::var_os("CWN_BENCH_REPORT").is_some() {
        let pass = col.iter().filter(|&&a| ix.may_contain(a)).count();
        eprintln!(
            "ipv6 250k mixed: {} B = {:.1} B/indicator; {:.2} % of the column pass the filter",
            ix.heap_bytes(),
            ix.heap_bytes() as f64 / 250_000.0,
            100.0 * pass as f64 / col.len() as f64
        );
    }
    let mut g = c.benchmark_group("ipv6_lookup");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    g.throughput(Throughput::Elements(COLUMN as u64));
    g.bench_function("250k_mixed/hit_1pct", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for &a in col.iter() {
                out.clear();
                ix.lookup(a, &mut out);
                n += out.len();
            }
            black_box(n)
        })
    });
    g.finish();
}

fn build(c: &mut Criterion) {
    let m = mixed(1);
    let mut g = c.benchmark_group("build");
    g.sample_size(10).measurement_time(Duration::from_secs(15));
    g.throughput(Throughput::Elements((EXACT + CIDRS) as u64));
    g.bench_function("ipv4/1M_mixed", |b| {
        b.iter_batched(
            || {
                let mut b = Ipv4IndexBuilder::new();
                for &(a, l, o) in &m.nets {
                    b.add(Ipv4Net::new(Ipv4Addr::from(a), l).unwrap(), o);
                }
                for &(a, o) in &m.exact {
                    b.add_addr(a, o);
                }
                b
            },
            |b| black_box(b.build()),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, ipv4_lookup, ipv6_lookup, build);
criterion_main!(benches);
