//! Routing benchmarks over a synthetic registry of 7,000 entities (the NIS2 population, with
//! nested provider/customer constituencies): constituency lookups of addresses and names, and
//! the whole routing decision for one hit.
//!
//! `cargo bench --bench route`. Criterion runs single-threaded, so the throughput it reports
//! is per core. Routing must sustain 1 M lookups per second.
#![allow(missing_docs)] // criterion_group! generates an undocumented public function.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ipnet::IpNet;

use cwn::indicator::Tlp;
use cwn::route::constituency::Observable;
use cwn::route::registry::{EntityOrd, Registry, Role};
use cwn::route::{RouteInput, RoutePolicy, Router, Sensitivity};

const ENTITIES: usize = 7_000;
const COLUMN: usize = 1 << 14;

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

/// Addresses of which `hit_percent` % fall in some entity's IPv4 prefix, the rest random.
fn addresses(reg: &Registry, hit_percent: u64, seed: u64) -> Vec<IpAddr> {
    let mut r = Rng(seed);
    let v4: Vec<(u32, u32)> = reg
        .iter()
        .flat_map(|(_, e)| e.prefixes.iter())
        .filter_map(|p| match p {
            IpNet::V4(n) => Some((u32::from(n.network()), 1u32 << (32 - n.prefix_len()))),
            IpNet::V6(_) => None,
        })
        .collect();
    (0..COLUMN)
        .map(|_| {
            let a = if r.below(100) < hit_percent {
                let (base, size) = v4[r.below(v4.len() as u64) as usize];
                base + r.below(u64::from(size)) as u32
            } else {
                r.next() as u32
            };
            IpAddr::V4(Ipv4Addr::from(a))
        })
        .collect()
}

fn names(reg: &Registry, seed: u64) -> Vec<String> {
    let mut r = Rng(seed);
    let domains: Vec<&str> = reg
        .iter()
        .flat_map(|(_, e)| e.domains.iter().map(String::as_str))
        .collect();
    (0..COLUMN)
        .map(|i| match i % 4 {
            0 => format!("www.{}", domains[r.below(domains.len() as u64) as usize]),
            1 => domains[r.below(domains.len() as u64) as usize].to_string(),
            2 => format!("cdn{}.unrelated.example", r.below(1000)),
            _ => format!(
                "mail.not{}",
                domains[r.below(domains.len() as u64) as usize]
            ),
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let reg = Registry::synthetic(ENTITIES, 1);
    let partner = reg.with_role(Role::Partner).next().expect("a partner");
    let publisher = EntityOrd::new(0);
    let router = Router::new(reg, RoutePolicy::default());
    let index = router.constituency();

    let mut g = c.benchmark_group("route/constituency_ip");
    g.measurement_time(Duration::from_secs(3));
    for hit in [0, 50, 100] {
        let col = addresses(router.registry(), hit, 7 + hit);
        g.throughput(Throughput::Elements(col.len() as u64));
        g.bench_function(format!("{ENTITIES}_entities/hit_{hit}pct"), |b| {
            let mut out = Vec::with_capacity(8);
            b.iter(|| {
                let mut n = 0;
                for &a in &col {
                    out.clear();
                    index.lookup_ip(black_box(a), &mut out);
                    n += out.len();
                }
                n
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("route/constituency_name");
    g.measurement_time(Duration::from_secs(3));
    let col = names(router.registry(), 3);
    g.throughput(Throughput::Elements(col.len() as u64));
    g.bench_function(format!("{ENTITIES}_entities/hit_50pct"), |b| {
        let mut out = Vec::with_capacity(8);
        b.iter(|| {
            let mut n = 0;
            for name in &col {
                out.clear();
                index.lookup_name(black_box(name), &mut out);
                n += out.len();
            }
            n
        })
    });
    g.finish();

    // A whole hit: two observables on the victim side, the decisions, per TLP level.
    let mut g = c.benchmark_group("route/hit");
    g.measurement_time(Duration::from_secs(3));
    let addrs = addresses(router.registry(), 90, 11);
    let hosts = names(router.registry(), 12);
    g.throughput(Throughput::Elements(addrs.len() as u64));
    for tlp in [Tlp::Green, Tlp::Amber, Tlp::AmberStrict] {
        g.bench_function(format!("{ENTITIES}_entities/{}", tlp.name()), |b| {
            let mut out = Vec::with_capacity(8);
            b.iter(|| {
                let mut allowed = 0;
                for (i, (&a, h)) in addrs.iter().zip(&hosts).enumerate() {
                    let obs = [Observable::Addr(a), Observable::Name(h)];
                    let input = RouteInput {
                        hit_id: i as u64,
                        indicator_id: "bench",
                        sensitivity: Sensitivity::new(tlp),
                        publisher: Some(publisher),
                        partner,
                        observables: &obs,
                    };
                    out.clear();
                    let _ = router.route(black_box(&input), &mut out);
                    allowed += out.iter().filter(|d| d.allowed).count();
                }
                allowed
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
