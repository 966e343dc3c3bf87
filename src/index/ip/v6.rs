//! The IPv6 index ([`Ipv6Index`]): a filter over /32 prefixes in front of sorted tables.

use std::collections::HashMap;
use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

use super::{NONE, OrdChains, OrdChainsBuilder, flatten, sort_tail};
use crate::index::hash::hash64;
use crate::index::{Arr, FormatError, SectionReader, SectionWriter, Sections};

const STRUCTURE: &str = "ipv6 index";

/// Builds an [`Ipv6Index`].
#[derive(Clone, Debug, Default)]
pub struct Ipv6IndexBuilder {
    exact: Vec<(u128, u32)>,
    nets: Vec<(u128, u128, u32)>,
}

impl Ipv6IndexBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a network (host bits are ignored); a `/128` is an exact address.
    pub fn add(&mut self, net: Ipv6Net, ordinal: u32) {
        if net.prefix_len() == 128 {
            self.add_addr(net.addr().into(), ordinal);
        } else {
            self.nets
                .push((net.network().into(), net.broadcast().into(), ordinal));
        }
    }

    /// Adds an exact address (`u128::from(Ipv6Addr)`).
    pub fn add_addr(&mut self, addr: u128, ordinal: u32) {
        self.exact.push((addr, ordinal));
    }

    /// The immutable index. The same additions in any order give the same arrays.
    pub fn build(mut self) -> Ipv6Index {
        self.exact.sort_unstable();
        self.exact.dedup();
        let flat = flatten(self.nets);
        let mut seen = HashMap::new();
        let mut chains = OrdChainsBuilder::default();
        let range_vals: Vec<u32> = flat
            .iter()
            .map(|(_, set)| chains.encode(set, &mut seen))
            .collect();
        let mut ix = Ipv6Index {
            exact_keys: self
                .exact
                .iter()
                .map(|&(a, _)| a)
                .collect::<Vec<_>>()
                .into(),
            exact_ords: self
                .exact
                .iter()
                .map(|&(_, o)| o)
                .collect::<Vec<_>>()
                .into(),
            range_starts: flat.iter().map(|(s, _)| *s).collect::<Vec<_>>().into(),
            range_vals: range_vals.into(),
            chains: chains.build(),
            ..Ipv6Index::default()
        };
        let (filter, spans) = ix.derive_filter();
        (ix.filter, ix.spans) = (filter.into(), spans.into());
        ix
    }
}

/// Exact IPv6 addresses and networks: a filter over /32 prefixes in front of a sorted exact
/// table and a sorted table of elementary ranges, both searched by bisection.
///
/// The filter has two parts, both derived from the tables (so `validate` recomputes them):
/// - `filter`: a Bloom-style bitmap (16 bits and two probes per key, ~1.4 % false positives)
///   over the /32 prefixes of exact addresses and of covered ranges that lie inside one /32;
/// - `spans`: the covered ranges that cross /32 boundaries (networks shorter than /32, rare),
///   as coalesced intervals of /32 prefixes, searched only when there are any.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Ipv6Index {
    filter: Arr<u64>,
    spans: Arr<[u32; 2]>,
    exact_keys: Arr<u128>,
    exact_ords: Arr<u32>,
    range_starts: Arr<u128>,
    range_vals: Arr<u32>,
    chains: OrdChains,
}

/// The two filter bit positions of /32 prefix `p` in a filter of `bits` bits (a power of two).
/// Part of the snapshot format, like every stored hash.
#[inline]
fn filter_bits(p: u32, bits: usize) -> (usize, usize) {
    let h = hash64(&p.to_le_bytes());
    let mask = bits as u64 - 1;
    ((h & mask) as usize, ((h >> 32) & mask) as usize)
}

impl Ipv6Index {
    /// Appends the ordinal of every exact address equal to `addr` and of every network
    /// containing it (`addr` is `u128::from(Ipv6Addr)`), ascending, each once. IPv4-mapped
    /// addresses are expected to have been mapped to IPv4 by the caller.
    #[inline]
    pub fn lookup(&self, addr: u128, out: &mut Vec<u32>) {
        if self.may_contain(addr) {
            self.lookup_candidate(addr, out);
        }
    }

    /// [`lookup`](Self::lookup) for an [`Ipv6Addr`].
    #[inline]
    pub fn lookup_addr(&self, addr: Ipv6Addr, out: &mut Vec<u32>) {
        self.lookup(addr.into(), out);
    }

    /// The negative filter alone: `false` means no indicator covers `addr`.
    #[inline]
    pub fn may_contain(&self, addr: u128) -> bool {
        let p = (addr >> 96) as u32;
        let filter = &self.filter[..];
        if !filter.is_empty() {
            // In range when the length is a power of two, as loading checks.
            let (a, b) = filter_bits(p, filter.len() * 64);
            if let (Some(wa), Some(wb)) = (filter.get(a / 64), filter.get(b / 64))
                && (wa >> (a % 64)) & (wb >> (b % 64)) & 1 != 0
            {
                return true;
            }
        }
        let spans = &self.spans[..];
        if spans.is_empty() {
            return false;
        }
        let i = spans.partition_point(|s| s[0] <= p);
        i > 0 && spans[i - 1][1] >= p
    }

    #[inline(never)]
    fn lookup_candidate(&self, addr: u128, out: &mut Vec<u32>) {
        let from = out.len();
        // Keys and ordinals (starts and values) are as many, as loading checks.
        let (keys, ords) = (&self.exact_keys[..], &self.exact_ords[..]);
        let mut i = keys.partition_point(|&k| k < addr);
        while i < keys.len() && keys[i] == addr {
            if let Some(&o) = ords.get(i) {
                out.push(o);
            }
            i += 1;
        }
        let i = self.range_starts.partition_point(|&s| s <= addr);
        if let Some(&v) = i.checked_sub(1).and_then(|i| self.range_vals.get(i)) {
            self.chains.emit(v, out);
        }
        if out.len() > from + 1 {
            sort_tail(out, from);
        }
    }

    /// Number of exact entries (address, ordinal).
    pub fn exact_len(&self) -> usize {
        self.exact_keys.len()
    }

    /// Number of elementary ranges.
    pub fn range_len(&self) -> usize {
        self.range_starts.len()
    }

    /// Bytes of all arrays.
    pub fn heap_bytes(&self) -> usize {
        8 * self.filter.len()
            + 8 * self.spans.len()
            + 16 * self.exact_keys.len()
            + 4 * self.exact_ords.len()
            + 16 * self.range_starts.len()
            + 4 * self.range_vals.len()
            + self.chains.heap_bytes()
    }

    /// The filter implied by the tables (whose ranges must already be valid).
    fn derive_filter(&self) -> (Vec<u64>, Vec<[u32; 2]>) {
        let mut keys: Vec<u32> = self.exact_keys.iter().map(|&a| (a >> 96) as u32).collect();
        let mut spans: Vec<[u32; 2]> = Vec::new();
        for (j, (&start, &v)) in self.range_starts.iter().zip(&self.range_vals).enumerate() {
            if v == NONE {
                continue;
            }
            let last = self.range_starts.get(j + 1).map_or(u128::MAX, |&n| n - 1);
            let (p0, p1) = ((start >> 96) as u32, (last >> 96) as u32);
            if p0 == p1 {
                keys.push(p0);
            } else if let Some(prev) = spans.last_mut()
                && p0 <= prev[1].saturating_add(1)
            {
                prev[1] = prev[1].max(p1);
            } else {
                spans.push([p0, p1]);
            }
        }
        keys.sort_unstable();
        keys.dedup();
        if keys.is_empty() {
            return (Vec::new(), spans);
        }
        let bits = (keys.len() * 16).next_power_of_two().max(64);
        let mut filter = vec![0u64; bits / 64];
        for p in keys {
            let (a, b) = filter_bits(p, bits);
            filter[a / 64] |= 1 << (a % 64);
            filter[b / 64] |= 1 << (b % 64);
        }
        (filter, spans)
    }

    /// Checks every invariant lookups rely on: lengths, strict ordering, canonical range
    /// values, the ordinal chains, and that the filter is exactly the one the tables imply.
    pub fn validate(&self) -> Result<(), FormatError> {
        let err = |reason: &str| Err(FormatError::new(STRUCTURE, reason));
        self.check_shape()?;
        for i in 1..self.exact_keys.len() {
            let prev = (self.exact_keys[i - 1], self.exact_ords[i - 1]);
            if prev >= (self.exact_keys[i], self.exact_ords[i]) {
                return err("exact entries are not strictly sorted");
            }
        }
        if self.range_starts.windows(2).any(|w| w[0] >= w[1]) {
            return err("range starts are not strictly ascending");
        }
        if self.range_vals.first() == Some(&NONE) {
            return err("the range table opens with an uncovered range");
        }
        if self.range_vals.windows(2).any(|w| w[0] == w[1]) {
            return err("neighbouring ranges have equal sets");
        }
        self.chains.validate(STRUCTURE)?;
        for &v in &self.range_vals {
            self.chains.check_value(v, STRUCTURE)?;
        }
        let (filter, spans) = self.derive_filter();
        if self.filter[..] != filter[..] || self.spans[..] != spans[..] {
            return err("the /32 filter does not match the tables");
        }
        Ok(())
    }
}

impl Ipv6Index {
    /// Whether the exact keys are viewed in place in `backing` (for the alignment tests).
    #[cfg(test)]
    pub(crate) fn exact_keys_view_of(&self, backing: &bytes::Bytes) -> bool {
        self.exact_keys.is_view_of(backing)
    }

    /// What loading checks, in O(1): keys as many as their ordinals or values, and a filter
    /// whose length is a power of two.
    fn check_shape(&self) -> Result<(), FormatError> {
        let err = |reason: &str| Err(FormatError::new(STRUCTURE, reason));
        if self.exact_keys.len() != self.exact_ords.len() {
            return err("exact keys and ordinals differ in length");
        }
        if self.range_starts.len() != self.range_vals.len() {
            return err("range starts and values differ in length");
        }
        if !self.filter.is_empty() && !self.filter.len().is_power_of_two() {
            return err("filter length not a power of two");
        }
        self.chains.check_shape(STRUCTURE)
    }
}

impl Sections for Ipv6Index {
    fn write_sections(&self, w: &mut SectionWriter) {
        w.put(&self.filter);
        w.put(&self.spans);
        w.put(&self.exact_keys);
        w.put(&self.exact_ords);
        w.put(&self.range_starts);
        w.put(&self.range_vals);
        self.chains.write(w);
    }

    fn read_sections(r: &mut SectionReader) -> Result<Self, FormatError> {
        let ix = Ipv6Index {
            filter: r.take(STRUCTURE)?,
            spans: r.take(STRUCTURE)?,
            exact_keys: r.take(STRUCTURE)?,
            exact_ords: r.take(STRUCTURE)?,
            range_starts: r.take(STRUCTURE)?,
            range_vals: r.take(STRUCTURE)?,
            chains: OrdChains::read(r, STRUCTURE)?,
        };
        ix.check_shape()?;
        Ok(ix)
    }
}

#[cfg(test)]
mod tests {
    use super::super::LIST;
    use super::*;

    fn ip(s: &str) -> u128 {
        s.parse::<Ipv6Addr>().unwrap().into()
    }

    fn sample() -> Ipv6Index {
        let mut b = Ipv6IndexBuilder::new();
        b.add("2001:db8::/32".parse().unwrap(), 1);
        b.add("2001:db8:1::/48".parse().unwrap(), 2);
        b.add("2001:db8:1::/48".parse().unwrap(), 3);
        b.add("2001:db8:1::1/128".parse().unwrap(), 4);
        b.add("3000::/4".parse().unwrap(), 5);
        b.add_addr(ip("::1"), 6);
        b.add_addr(ip("::1"), 7);
        b.add(
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127"
                .parse()
                .unwrap(),
            8,
        );
        b.build()
    }

    fn look(ix: &Ipv6Index, s: &str) -> Vec<u32> {
        let mut out = Vec::new();
        ix.lookup(ip(s), &mut out);
        out
    }

    #[test]
    fn table() {
        let ix = sample();
        ix.validate().unwrap();
        let cases: &[(&str, &[u32])] = &[
            ("2001:db8:1::1", &[1, 2, 3, 4]),
            ("2001:db8:1::2", &[1, 2, 3]),
            ("2001:db8:2::", &[1]),
            ("2001:db9::", &[]),
            ("3fff:ffff::1", &[5]),
            ("4000::", &[]),
            ("::1", &[6, 7]),
            ("::", &[]),
            ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", &[8]),
        ];
        for (addr, want) in cases {
            assert_eq!(look(&ix, addr), *want, "{addr}");
        }
    }

    #[test]
    fn corruption_is_refused() {
        let good = sample();
        let refused = |ix: Ipv6Index, what: &str| {
            for a in ["2001:db8:1::1", "::1", "3fff:ffff::1"] {
                look(&ix, a);
            }
            assert!(ix.validate().is_err(), "{what}");
        };
        let mut ix = good.clone();
        ix.filter.edit(|f| f.iter_mut().for_each(|w| *w = 0));
        refused(ix, "cleared filter");

        let mut ix = good.clone();
        ix.spans.edit(Vec::clear);
        refused(ix, "missing span");

        let mut ix = good.clone();
        ix.range_starts.edit(|r| r.swap(0, 1));
        refused(ix, "unsorted starts");

        let mut ix = good.clone();
        ix.chains.rest.edit(|r| r[0] = LIST);
        refused(ix, "chain linking to itself");

        let mut ix = good;
        ix.exact_ords.edit(|o| o.swap(0, 1));
        refused(ix, "unsorted exact entries");
    }

    #[test]
    fn sections_round_trip() {
        for ix in [sample(), Ipv6Index::default()] {
            let mut w = SectionWriter::new();
            ix.write_sections(&mut w);
            let slices: Vec<&[u8]> = w.sections.iter().map(|s| s.as_slice()).collect();
            let back = Ipv6Index::read_sections(&mut SectionReader::new(&slices)).unwrap();
            assert_eq!(back, ix);
        }
    }
}
