//! Address indexes: IPv4 and IPv6 exact addresses and CIDR networks, and `ip:port` pairs.
//!
//! A lookup returns **every** indicator that covers an address: the exact address and all
//! covering networks, nested ones included, each ordinal once and in ascending order. Nothing
//! here parses text or knows about telemetry formats: callers hand in integers that the
//! normalisation functions already produced (an IPv4-mapped IPv6 address is an IPv4 address by
//! then; [`IpIndex`] maps it again on its own, since that costs one comparison).
//!
//! Main types:
//! - [`Ipv4Index`]: a 2 MiB bitmap over /24 blocks in front of per-/16 tables, so that a miss
//!   costs one cache-resident load and a hit a few more; exact addresses cost 6 bytes each;
//! - [`Ipv6Index`]: a small Bloom-style filter over /32 prefixes in front of sorted tables;
//! - [`IpPortIndex`]: exact `(address, port)` pairs, v4 and v6;
//! - [`IpIndex`]: the three together, keyed by [`IpAddr`].
//!
//! Networks are flattened into disjoint *elementary ranges*, each carrying the set of ordinals
//! of the networks that cover it. A set is stored inline when it is one ordinal below 2^31
//! (the common case), otherwise as a node of shared chains (nested networks share their
//! outer part).
//!
//! ```
//! use cwn::index::ip::{IpIndex, IpIndexBuilder};
//!
//! let mut b = IpIndexBuilder::new();
//! b.add_net("10.0.0.0/8".parse().unwrap(), 0);
//! b.add_net("10.1.0.0/16".parse().unwrap(), 1);
//! b.add_addr("10.1.2.3".parse().unwrap(), 2);
//! b.add_ip_port("192.0.2.1".parse().unwrap(), 443, 3);
//! let index: IpIndex = b.build();
//!
//! let mut out = Vec::new();
//! index.lookup_ip("10.1.2.3".parse().unwrap(), &mut out);
//! assert_eq!(out, [0, 1, 2]);
//! out.clear();
//! index.lookup_ip("::ffff:10.9.9.9".parse().unwrap(), &mut out);
//! assert_eq!(out, [0]);
//! out.clear();
//! index.lookup_ip_port("192.0.2.1".parse().unwrap(), 443, &mut out);
//! assert_eq!(out, [3]);
//! ```

mod port;
mod v4;
mod v6;

#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::{Arr, FormatError, SectionReader, SectionWriter, Sections};

pub use port::{IpPortIndex, IpPortIndexBuilder};
pub use v4::{Ipv4Index, Ipv4IndexBuilder};
pub use v6::{Ipv6Index, Ipv6IndexBuilder};

/// A range value meaning "no indicator covers this range".
const NONE: u32 = u32::MAX;
/// Set in a range value that refers to an entry of [`OrdLists`] instead of being an ordinal.
const LIST: u32 = 1 << 31;

/// The ordinal sets of ranges covered by several networks (or by one ordinal ≥ 2^31), as
/// shared chains. Networks are nested or disjoint, so the networks covering a range form a
/// chain from the outermost to the innermost. Node `i` is the set made of `ords[i]` (the
/// innermost network's ordinal) and the set encoded by `rest[i]`: `NONE`, an inline ordinal,
/// or `LIST | j` with `j < i` (so every walk ends). A range inside a nested network costs one
/// 8-byte node, its outer part being shared with the ranges around it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct OrdChains {
    ords: Arr<u32>,
    rest: Arr<u32>,
}

/// Builds [`OrdChains`].
#[derive(Debug, Default)]
struct OrdChainsBuilder {
    ords: Vec<u32>,
    rest: Vec<u32>,
}

impl OrdChainsBuilder {
    fn build(self) -> OrdChains {
        OrdChains {
            ords: self.ords.into(),
            rest: self.rest.into(),
        }
    }

    /// The range value for `chain` (ordinals from the outermost network to the innermost).
    fn encode(&mut self, chain: &[u32], seen: &mut HashMap<(u32, u32), u32>) -> u32 {
        let mut v = NONE;
        for &o in chain {
            v = if v == NONE && o < LIST {
                o
            } else {
                *seen.entry((o, v)).or_insert_with(|| {
                    let index = u32::try_from(self.ords.len())
                        .ok()
                        .filter(|&i| i < LIST - 1)
                        .expect("fewer than 2^31 - 1 distinct ordinal sets");
                    self.ords.push(o);
                    self.rest.push(v);
                    LIST | index
                })
            };
        }
        v
    }
}

impl OrdChains {
    /// Appends the ordinals of range value `v` to `out`, innermost network first (the same
    /// ordinal may come twice if the caller added it for two nested networks).
    ///
    /// Whatever the arrays hold, this ends: a valid chain links strictly backwards, so it has
    /// at most `len()` nodes, and the walk stops there or at a link out of range.
    #[inline]
    fn emit(&self, mut v: u32, out: &mut Vec<u32>) {
        let (ords, rest) = (&self.ords[..], &self.rest[..]);
        for _ in 0..=ords.len() {
            if v < LIST {
                out.push(v);
                return;
            }
            if v == NONE {
                return;
            }
            let i = (v & !LIST) as usize;
            let (Some(&o), Some(&r)) = (ords.get(i), rest.get(i)) else {
                return;
            };
            out.push(o);
            v = r;
        }
    }

    /// What loading checks: as many links as ordinals.
    fn check_shape(&self, structure: &'static str) -> Result<(), FormatError> {
        if self.ords.len() != self.rest.len() {
            return Err(FormatError::new(
                structure,
                "chain ordinals and links differ in length",
            ));
        }
        Ok(())
    }

    fn len(&self) -> usize {
        self.ords.len()
    }

    fn heap_bytes(&self) -> usize {
        4 * (self.ords.len() + self.rest.len())
    }

    fn validate(&self, structure: &'static str) -> Result<(), FormatError> {
        let err = |reason: String| Err(FormatError::new(structure, reason));
        if self.ords.len() != self.rest.len() {
            return err("chain ordinals and links differ in length".into());
        }
        if self.ords.len() >= (LIST - 1) as usize {
            return err("too many ordinal chains".into());
        }
        for (i, (&o, &r)) in self.ords.iter().zip(self.rest.iter()).enumerate() {
            if r >= LIST && r != NONE && (r & !LIST) as usize >= i {
                return err(format!("chain node {i} links forward"));
            }
            if r == NONE && o < LIST {
                return err(format!(
                    "chain node {i} holds one small ordinal, not inlined"
                ));
            }
        }
        Ok(())
    }

    /// Whether range value `v` can be emitted without going out of bounds.
    fn check_value(&self, v: u32, structure: &'static str) -> Result<(), FormatError> {
        if v >= LIST && v != NONE && (v & !LIST) as usize >= self.len() {
            return Err(FormatError::new(
                structure,
                format!("range value {v:#x} refers to a missing chain node"),
            ));
        }
        Ok(())
    }

    fn write(&self, w: &mut SectionWriter) {
        w.put(&self.ords);
        w.put(&self.rest);
    }

    fn read(r: &mut SectionReader, structure: &'static str) -> Result<Self, FormatError> {
        let chains = OrdChains {
            ords: r.take(structure)?,
            rest: r.take(structure)?,
        };
        chains.check_shape(structure)?;
        Ok(chains)
    }
}

/// An address type whose ranges can be flattened.
trait Point: Copy + Ord {
    /// The next address, `None` after the last one.
    fn succ(self) -> Option<Self>;
}

impl Point for u32 {
    fn succ(self) -> Option<Self> {
        self.checked_add(1)
    }
}

impl Point for u128 {
    fn succ(self) -> Option<Self> {
        self.checked_add(1)
    }
}

/// Flattens networks `(first, last, ordinal)` into disjoint elementary ranges
/// `(start, covering ordinals)`: range `i` spans `start_i..start_{i+1}` (the last one up to the
/// end of the address space). The ordinals are in nesting order, outermost network first
/// (ordered by first address, then by last address descending, then by ordinal), so that
/// `OrdChains` shares the outer part. The first range is covered, neighbours differ, and an
/// uncovered tail is closed by a range with no ordinal.
fn flatten<P: Point>(mut nets: Vec<(P, P, u32)>) -> Vec<(P, Vec<u32>)> {
    nets.sort_unstable();
    nets.dedup();
    // (position, 0 = remove / 1 = add, network); all events of a position are applied before
    // its set is read, so their order does not matter.
    let mut events: Vec<(P, u8, usize)> = Vec::with_capacity(nets.len() * 2);
    for (i, &(first, last, _)) in nets.iter().enumerate() {
        events.push((first, 1, i));
        if let Some(end) = last.succ() {
            events.push((end, 0, i));
        }
    }
    events.sort_unstable();
    let mut active: BTreeSet<(P, Reverse<P>, u32)> = BTreeSet::new();
    let mut out: Vec<(P, Vec<u32>)> = Vec::new();
    let mut i = 0;
    while i < events.len() {
        let pos = events[i].0;
        while let Some(&(p, add, n)) = events.get(i)
            && p == pos
        {
            let (first, last, ord) = nets[n];
            if add == 1 {
                active.insert((first, Reverse(last), ord));
            } else {
                active.remove(&(first, Reverse(last), ord));
            }
            i += 1;
        }
        let chain = active.iter().map(|&(_, _, o)| o);
        let same = out.last().map_or(active.is_empty(), |(_, prev)| {
            prev.iter().copied().eq(chain.clone())
        });
        if !same {
            out.push((pos, chain.collect()));
        }
    }
    out
}

/// Sorts the ordinals appended at `out[from..]` (exact ones ascending, then a chain innermost
/// first) and removes duplicates, so that each ordinal appears once, ascending.
#[inline]
fn sort_tail(out: &mut Vec<u32>, from: usize) {
    let tail = &mut out[from..];
    tail.sort_unstable();
    let mut w = 0;
    for r in 0..tail.len() {
        if r == 0 || tail[r] != tail[w - 1] {
            tail[w] = tail[r];
            w += 1;
        }
    }
    out.truncate(from + w);
}

/// The IPv4-mapped IPv6 block `::ffff:0:0/96`.
const MAPPED: u128 = 0xffff << 32;

/// The IPv4 equivalent of the part of `net` that lies in `::ffff:0:0/96`, if any, and whether
/// `net` lies entirely inside it.
fn mapped_part(net: Ipv6Net) -> (Option<Ipv4Net>, bool) {
    let len = net.prefix_len();
    let first = u128::from(net.network());
    if len >= 96 {
        if first & !0xffff_ffff == MAPPED {
            let v4 = Ipv4Net::new((first as u32).into(), len - 96).expect("prefix length ≤ 32");
            return (Some(v4), true);
        }
        return (None, false);
    }
    // A shorter prefix either contains the whole mapped block or misses it.
    if net.contains(&std::net::Ipv6Addr::from(MAPPED)) {
        (Some(Ipv4Net::default()), false)
    } else {
        (None, false)
    }
}

/// Builds an [`IpIndex`].
#[derive(Clone, Debug, Default)]
pub struct IpIndexBuilder {
    v4: Ipv4IndexBuilder,
    v6: Ipv6IndexBuilder,
    ports: IpPortIndexBuilder,
}

impl IpIndexBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an exact address. An IPv4-mapped IPv6 address is stored as IPv4.
    pub fn add_addr(&mut self, addr: IpAddr, ordinal: u32) {
        match addr.to_canonical() {
            IpAddr::V4(a) => self.v4.add_addr(a.into(), ordinal),
            IpAddr::V6(a) => self.v6.add_addr(a.into(), ordinal),
        }
    }

    /// Adds a network; host bits are ignored. An IPv6 network is also stored as the IPv4 network
    /// it covers inside `::ffff:0:0/96`, so that it matches the IPv4 addresses that IPv4-mapped
    /// telemetry becomes.
    pub fn add_net(&mut self, net: IpNet, ordinal: u32) {
        match net {
            IpNet::V4(n) => self.v4.add(n, ordinal),
            IpNet::V6(n) => {
                let (v4, inside) = mapped_part(n);
                if let Some(v4) = v4 {
                    self.v4.add(v4, ordinal);
                }
                if !inside {
                    self.v6.add(n, ordinal);
                }
            }
        }
    }

    /// Adds an `(address, port)` pair. An IPv4-mapped IPv6 address is stored as IPv4.
    pub fn add_ip_port(&mut self, addr: IpAddr, port: u16, ordinal: u32) {
        self.ports.add(addr, port, ordinal);
    }

    /// The immutable index.
    pub fn build(self) -> IpIndex {
        IpIndex {
            v4: self.v4.build(),
            v6: self.v6.build(),
            ports: self.ports.build(),
        }
    }
}

/// IPv4 and IPv6 addresses and networks, and `ip:port` pairs, in one structure.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpIndex {
    /// IPv4 exact addresses and networks.
    pub v4: Ipv4Index,
    /// IPv6 exact addresses and networks.
    pub v6: Ipv6Index,
    /// `(address, port)` pairs.
    pub ports: IpPortIndex,
}

impl IpIndex {
    /// Appends the ordinals of every address or network indicator covering `addr` (an
    /// IPv4-mapped IPv6 address is looked up as IPv4), ascending, each once.
    #[inline]
    pub fn lookup_ip(&self, addr: IpAddr, out: &mut Vec<u32>) {
        match addr {
            IpAddr::V4(a) => self.v4.lookup(a.into(), out),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(a) => self.v4.lookup(a.into(), out),
                None => self.v6.lookup(a.into(), out),
            },
        }
    }

    /// Appends the ordinals of the `ip:port` indicators equal to `(addr, port)`, ascending.
    /// Address-only indicators are not included: call [`lookup_ip`](Self::lookup_ip) for those.
    #[inline]
    pub fn lookup_ip_port(&self, addr: IpAddr, port: u16, out: &mut Vec<u32>) {
        self.ports.lookup(addr, port, out);
    }

    /// Whether any `ip:port` indicator has address `addr` (see [`IpPortIndex::has_addr`]).
    #[inline]
    pub fn has_port_pairs(&self, addr: IpAddr) -> bool {
        !self.ports.is_empty() && self.ports.has_addr(addr)
    }

    /// Checks every invariant of the three parts.
    pub fn validate(&self) -> Result<(), FormatError> {
        self.v4.validate()?;
        self.v6.validate()?;
        self.ports.validate()
    }

    /// Bytes of all arrays.
    pub fn heap_bytes(&self) -> usize {
        self.v4.heap_bytes() + self.v6.heap_bytes() + self.ports.heap_bytes()
    }
}

impl Sections for IpIndex {
    fn write_sections(&self, w: &mut SectionWriter) {
        self.v4.write_sections(w);
        self.v6.write_sections(w);
        self.ports.write_sections(w);
    }

    fn read_sections(r: &mut SectionReader) -> Result<Self, FormatError> {
        Ok(IpIndex {
            v4: Ipv4Index::read_sections(r)?,
            v6: Ipv6Index::read_sections(r)?,
            ports: IpPortIndex::read_sections(r)?,
        })
    }
}
