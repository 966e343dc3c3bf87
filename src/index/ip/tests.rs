//! The address indexes against a naive reference: a list of `(network, ordinal)` filtered with
//! `contains`, every address compared in IPv6 space (IPv4 as `::ffff:a.b.c.d`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::prelude::*;

use super::*;

/// Every network as an IPv6 network, IPv4 ones inside `::ffff:0:0/96`.
fn as_v6_net(net: IpNet) -> Ipv6Net {
    match net {
        IpNet::V4(n) => Ipv6Net::new(n.network().to_ipv6_mapped(), n.prefix_len() + 96).unwrap(),
        IpNet::V6(n) => n.trunc(),
    }
}

fn as_v6(addr: IpAddr) -> Ipv6Addr {
    match addr {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

/// The obviously right matcher: every network as its first and last IPv6 address, scanned.
struct Reference(Vec<(u128, u128, u32)>);

impl Reference {
    fn new(nets: &[(IpNet, u32)]) -> Self {
        Reference(
            nets.iter()
                .map(|&(n, o)| {
                    let n = as_v6_net(n);
                    (n.network().into(), n.broadcast().into(), o)
                })
                .collect(),
        )
    }

    fn lookup(&self, addr: IpAddr) -> Vec<u32> {
        let a = u128::from(as_v6(addr));
        let mut out: Vec<u32> = self
            .0
            .iter()
            .filter(|&&(first, last, _)| first <= a && a <= last)
            .map(|&(_, _, o)| o)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

fn round_trip<T: Sections>(x: &T) -> T {
    let mut w = SectionWriter::new();
    x.write_sections(&mut w);
    let slices: Vec<&[u8]> = w.sections.iter().map(|s| s.as_slice()).collect();
    T::read_sections(&mut SectionReader::new(&slices)).expect("round trip")
}

/// IPv4 addresses that make trouble: the ends of the space, /16 and /24 edges, a shared
/// neighbourhood so that random networks nest and touch.
fn v4_addr() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => prop::sample::select(vec![
            0u32, 1, 0xff, 0x100, 0xffff, 0x1_0000, 0x7fff_ffff, 0x8000_0000,
            0x0a00_0000, 0x0a01_0203, 0x0a01_ff00, 0x0a02_0000, 0xc000_0201,
            0xffff_fffe, 0xffff_ffff,
        ]),
        3 => (any::<u16>()).prop_map(|lo| 0x0a01_0000 | u32::from(lo)),
        2 => (0u32..4096).prop_map(|x| 0x0a00_0000 | (x << 12)),
        2 => any::<u32>(),
    ]
}

/// Boundary lengths; networks shorter than /8 are rare (one case in ten or so holds one)
/// because each spans thousands of /16 groups, which is slow to check in debug builds.
fn v4_len() -> impl Strategy<Value = u8> {
    prop_oneof![
        1 => prop::sample::select(vec![0u8, 1, 2, 7]),
        50 => prop::sample::select(vec![8u8, 15, 16, 17, 23, 24, 25, 31, 32]),
        30 => 8u8..=32,
    ]
}

fn v4_net() -> impl Strategy<Value = IpNet> {
    (v4_addr(), v4_len())
        .prop_map(|(a, l)| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), l).unwrap().trunc()))
}

/// Small ordinals so that the same ordinal recurs; occasionally one ≥ 2^31 (stored in a list).
fn ordinal() -> impl Strategy<Value = u32> {
    prop_oneof![8 => 0u32..12, 1 => prop::sample::select(vec![LIST, LIST + 5, u32::MAX])]
}

/// Networks, with copies (same network, other ordinal) to force shared ranges.
fn with_copies<S: Strategy<Value = IpNet>>(nets: S) -> impl Strategy<Value = Vec<(IpNet, u32)>> {
    prop::collection::vec((nets, ordinal(), any::<bool>(), ordinal()), 0..24).prop_map(|v| {
        let mut out = Vec::new();
        for (n, o, copy, o2) in v {
            out.push((n, o));
            if copy {
                out.push((n, o2));
            }
        }
        out
    })
}

/// Addresses at and next to every network edge, plus the generated ones.
fn probes_v4(nets: &[(IpNet, u32)], extra: &[u32]) -> Vec<u32> {
    let mut out = extra.to_vec();
    for (n, _) in nets {
        if let IpNet::V4(n) = n {
            let (a, b) = (u32::from(n.network()), u32::from(n.broadcast()));
            out.extend([
                a,
                b,
                a.wrapping_sub(1),
                b.wrapping_add(1),
                a | ((b - a) / 2),
            ]);
        }
    }
    out
}

fn v6_addr() -> impl Strategy<Value = u128> {
    prop_oneof![
        3 => prop::sample::select(vec![
            0u128, 1, u128::MAX, u128::MAX - 1, 1 << 127, (1 << 127) - 1,
            0x2001_0db8u128 << 96, (0x2001_0db8u128 << 96) | 1, (0x2001_0db9u128 << 96) - 1,
            MAPPED, MAPPED | 0x0a01_0203, MAPPED - 1, MAPPED | 0xffff_ffff,
        ]),
        3 => any::<u64>().prop_map(|lo| (0x2001_0db8_0001u128 << 80) | u128::from(lo)),
        2 => any::<u32>().prop_map(|x| (0x2001_0db8u128 << 96) | (u128::from(x) << 64)),
        2 => any::<u128>(),
    ]
}

fn v6_len() -> impl Strategy<Value = u8> {
    prop_oneof![
        2 => prop::sample::select(vec![0u8, 1, 16, 31, 32, 33, 48, 64, 96, 104, 120, 127, 128]),
        1 => 0u8..=128,
    ]
}

fn v6_net() -> impl Strategy<Value = IpNet> {
    (v6_addr(), v6_len())
        .prop_map(|(a, l)| IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), l).unwrap().trunc()))
}

fn probes_v6(nets: &[(IpNet, u32)], extra: &[u128]) -> Vec<u128> {
    let mut out = extra.to_vec();
    for (n, _) in nets {
        if let IpNet::V6(n) = n {
            let (a, b) = (u128::from(n.network()), u128::from(n.broadcast()));
            out.extend([
                a,
                b,
                a.wrapping_sub(1),
                b.wrapping_add(1),
                a | ((b - a) / 2),
            ]);
        }
    }
    out
}

fn build_v4(nets: &[(IpNet, u32)]) -> Ipv4Index {
    let mut b = Ipv4IndexBuilder::new();
    for &(n, o) in nets {
        match n {
            // Exact addresses through both entry points.
            IpNet::V4(n) if n.prefix_len() == 32 && o % 2 == 0 => b.add_addr(n.addr().into(), o),
            IpNet::V4(n) => b.add(n, o),
            IpNet::V6(_) => unreachable!(),
        }
    }
    b.build()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3_000))]

    #[test]
    fn v4_matches_reference(
        nets in with_copies(v4_net()),
        extra in prop::collection::vec(v4_addr(), 0..16),
    ) {
        let ix = build_v4(&nets);
        ix.validate().unwrap();
        let refr = Reference::new(&nets);
        let mut out = Vec::new();
        for a in probes_v4(&nets, &extra) {
            out.clear();
            out.push(42); // lookups append
            ix.lookup(a, &mut out);
            let want = refr.lookup(IpAddr::V4(a.into()));
            prop_assert_eq!(&out[1..], &want[..], "address {}", Ipv4Addr::from(a));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4_000))]

    #[test]
    fn v6_matches_reference(
        nets in with_copies(v6_net()),
        extra in prop::collection::vec(v6_addr(), 0..16),
    ) {
        let mut b = Ipv6IndexBuilder::new();
        for &(n, o) in &nets {
            match n {
                IpNet::V6(n) if n.prefix_len() == 128 && o % 2 == 0 => b.add_addr(n.addr().into(), o),
                IpNet::V6(n) => b.add(n, o),
                IpNet::V4(_) => unreachable!(),
            }
        }
        let ix = b.build();
        ix.validate().unwrap();
        let refr = Reference::new(&nets);
        let mut out = Vec::new();
        for a in probes_v6(&nets, &extra) {
            out.clear();
            ix.lookup(a, &mut out);
            let want = refr.lookup(IpAddr::V6(a.into()));
            prop_assert_eq!(&out, &want, "address {}", Ipv6Addr::from(a));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_500))]

    /// Both families, IPv4-mapped networks and queries, `ip:port` pairs, and the order of
    /// additions: a permuted builder gives identical arrays.
    #[test]
    fn combined_matches_reference(
        nets in prop::collection::vec(
            (prop_oneof![v4_net(), v6_net()], ordinal()), 0..24),
        pairs in prop::collection::vec(
            (prop_oneof![
                v4_addr().prop_map(|a| IpAddr::V4(a.into())),
                v6_addr().prop_map(|a| IpAddr::V6(a.into())),
            ], prop::sample::select(vec![1u16, 80, 443, 65535]), ordinal()), 0..8),
        extra4 in prop::collection::vec(v4_addr(), 0..8),
        extra6 in prop::collection::vec(v6_addr(), 0..8),
        seed in any::<u64>(),
    ) {
        let add_all = |order: &[usize]| {
            let mut b = IpIndexBuilder::new();
            for &i in order {
                let (n, o) = nets[i];
                match n {
                    IpNet::V4(n) if n.prefix_len() == 32 => b.add_addr(IpAddr::V4(n.addr()), o),
                    IpNet::V6(n) if n.prefix_len() == 128 => b.add_addr(IpAddr::V6(n.addr()), o),
                    n => b.add_net(n, o),
                }
            }
            for &(a, p, o) in &pairs {
                b.add_ip_port(a, p, o);
            }
            b.build()
        };
        let forward: Vec<usize> = (0..nets.len()).collect();
        let ix = add_all(&forward);
        ix.validate().unwrap();
        let mut permuted = forward.clone();
        let mut s = seed;
        for i in (1..permuted.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            permuted.swap(i, (s >> 33) as usize % (i + 1));
        }
        prop_assert_eq!(&add_all(&permuted), &ix);

        let mut probes: Vec<IpAddr> = Vec::new();
        for a in probes_v4(&nets, &extra4) {
            let v4 = Ipv4Addr::from(a);
            probes.push(IpAddr::V4(v4));
            probes.push(IpAddr::V6(v4.to_ipv6_mapped()));
        }
        probes.extend(probes_v6(&nets, &extra6).into_iter().map(|a| IpAddr::V6(a.into())));
        let refr = Reference::new(&nets);
        let mut out = Vec::new();
        for a in probes {
            out.clear();
            ix.lookup_ip(a, &mut out);
            prop_assert_eq!(&out, &refr.lookup(a), "address {}", a);
        }
        for &(a, p, _) in &pairs {
            for port in [p, p.wrapping_add(1)] {
                out.clear();
                ix.lookup_ip_port(a, port, &mut out);
                let mut want: Vec<u32> = pairs
                    .iter()
                    .filter(|&&(b, q, _)| as_v6(b) == as_v6(a) && q == port)
                    .map(|&(_, _, o)| o)
                    .collect();
                want.sort_unstable();
                want.dedup();
                prop_assert_eq!(&out, &want);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Snapshots round-trip; a flipped byte or a truncated section never makes reading or a
    /// later lookup panic (it is refused, or yields a structure that passed `validate`).
    #[test]
    fn sections_survive_corruption(
        nets in prop::collection::vec(
            (prop_oneof![v4_net(), v6_net()], ordinal()), 1..16),
        pairs in prop::collection::vec((v4_addr(), any::<u16>(), ordinal()), 0..4),
        section in any::<prop::sample::Index>(),
        byte in any::<prop::sample::Index>(),
        flip in 1u8..=255,
        truncate in any::<bool>(),
        probes4 in prop::collection::vec(v4_addr(), 8),
        probes6 in prop::collection::vec(v6_addr(), 8),
    ) {
        let mut b = IpIndexBuilder::new();
        for &(n, o) in &nets {
            b.add_net(n, o);
        }
        for &(a, p, o) in &pairs {
            b.add_ip_port(IpAddr::V4(a.into()), p, o);
        }
        let ix = b.build();
        prop_assert_eq!(&round_trip(&ix), &ix);

        let mut w = SectionWriter::new();
        ix.write_sections(&mut w);
        let s = section.index(w.sections.len());
        let sec = &mut w.sections[s];
        if sec.is_empty() {
            sec.push(flip);
        } else if truncate {
            let n = byte.index(sec.len());
            sec.truncate(n);
        } else {
            let i = byte.index(sec.len());
            sec[i] ^= flip;
        }
        let slices: Vec<&[u8]> = w.sections.iter().map(|s| s.as_slice()).collect();
        if let Ok(bad) = IpIndex::read_sections(&mut SectionReader::new(&slices)) {
            let mut out = Vec::new();
            for a in &probes4 {
                bad.lookup_ip(IpAddr::V4((*a).into()), &mut out);
                bad.lookup_ip_port(IpAddr::V4((*a).into()), 80, &mut out);
            }
            for a in &probes6 {
                bad.lookup_ip(IpAddr::V6((*a).into()), &mut out);
            }
        }
    }
}

#[test]
fn mapped_networks_reach_ipv4() {
    let mut b = IpIndexBuilder::new();
    b.add_net("::ffff:10.0.0.0/104".parse().unwrap(), 1);
    b.add_net("::/0".parse().unwrap(), 2);
    b.add_net("::ffff:0:0/96".parse().unwrap(), 3);
    b.add_net("::/97".parse().unwrap(), 4);
    let ix = b.build();
    let look = |s: &str| {
        let mut out = Vec::new();
        ix.lookup_ip(s.parse().unwrap(), &mut out);
        out
    };
    assert_eq!(look("10.1.2.3"), [1, 2, 3]);
    assert_eq!(look("::ffff:10.1.2.3"), [1, 2, 3]);
    assert_eq!(look("11.0.0.0"), [2, 3]);
    assert_eq!(look("::1"), [2, 4]);
    assert_eq!(look("2001:db8::"), [2]);
}

#[test]
fn ipv4_heap_bytes_per_exact_address() {
    let mut b = Ipv4IndexBuilder::new();
    let mut x = 12345u32;
    for o in 0..10_000 {
        x = x.wrapping_mul(2_654_435_761).wrapping_add(1);
        b.add_addr(x, o);
    }
    let ix = b.build();
    assert_eq!(ix.variable_bytes(), 6 * 10_000);
}
