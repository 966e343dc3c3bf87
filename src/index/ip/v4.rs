//! The IPv4 index ([`Ipv4Index`]): a /24 bitmap in front of per-/16 runs of sorted tables.

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::ops::Range;

use ipnet::Ipv4Net;

use super::{NONE, OrdChains, OrdChainsBuilder, flatten, sort_tail};
use crate::index::{Arr, FormatError, SectionReader, SectionWriter, Sections};

const STRUCTURE: &str = "ipv4 index";
/// 64-bit words of the /24 bitmap.
const BLOCK_WORDS: usize = 1 << 18;
/// /16 groups.
const GROUPS: usize = 1 << 16;

/// Builds an [`Ipv4Index`].
#[derive(Clone, Debug, Default)]
pub struct Ipv4IndexBuilder {
    exact: Vec<(u32, u32)>,
    nets: Vec<(u32, u32, u32)>,
}

impl Ipv4IndexBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a network (host bits are ignored); a `/32` is an exact address.
    pub fn add(&mut self, net: Ipv4Net, ordinal: u32) {
        if net.prefix_len() == 32 {
            self.add_addr(net.addr().into(), ordinal);
        } else {
            self.nets
                .push((net.network().into(), net.broadcast().into(), ordinal));
        }
    }

    /// Adds an exact address (as its big-endian `u32`, `u32::from(Ipv4Addr)`).
    pub fn add_addr(&mut self, addr: u32, ordinal: u32) {
        self.exact.push((addr, ordinal));
    }

    /// How many entries were added (duplicates included).
    pub fn len(&self) -> usize {
        self.exact.len() + self.nets.len()
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The immutable index. The same additions in any order give the same arrays.
    ///
    /// # Panics
    /// If more than 2^32 exact entries or ranges were added.
    pub fn build(mut self) -> Ipv4Index {
        if self.exact.is_empty() && self.nets.is_empty() {
            return Ipv4Index::default();
        }
        self.exact.sort_unstable();
        self.exact.dedup();
        let flat = flatten(std::mem::take(&mut self.nets));
        assert!(
            u32::try_from(self.exact.len().max(flat.len())).is_ok(),
            "fewer than 2^32 entries"
        );
        let mut chains = OrdChainsBuilder::default();
        let mut seen = HashMap::new();
        let range_vals: Vec<u32> = flat
            .iter()
            .map(|(_, set)| chains.encode(set, &mut seen))
            .collect();

        // The directory: counts per group, then prefix sums.
        let mut groups = vec![[0u32; 2]; GROUPS + 1];
        for &(a, _) in &self.exact {
            groups[(a >> 16) as usize + 1][0] += 1;
        }
        for (start, _) in &flat {
            groups[(start >> 16) as usize + 1][1] += 1;
        }
        for g in 1..=GROUPS {
            let prev = groups[g - 1];
            groups[g][0] += prev[0];
            groups[g][1] += prev[1];
        }

        let mut blocks = vec![0u64; BLOCK_WORDS];
        for &(a, _) in &self.exact {
            mark(&mut blocks[..], a >> 8, a >> 8);
        }
        for (j, &v) in range_vals.iter().enumerate() {
            if v != NONE {
                let last = flat.get(j + 1).map_or(u32::MAX, |(next, _)| next - 1);
                mark(&mut blocks[..], flat[j].0 >> 8, last >> 8);
            }
        }
        Ipv4Index {
            blocks: blocks.into(),
            groups: groups.into(),
            exact_lo: self
                .exact
                .iter()
                .map(|&(a, _)| a as u16)
                .collect::<Vec<_>>()
                .into(),
            exact_ords: self
                .exact
                .iter()
                .map(|&(_, o)| o)
                .collect::<Vec<_>>()
                .into(),
            range_lo: flat
                .iter()
                .map(|&(s, _)| s as u16)
                .collect::<Vec<_>>()
                .into(),
            range_vals: range_vals.into(),
            chains: chains.build(),
        }
    }
}

/// Sets bits `first..=last` of a bitmap, a word at a time (a /1 spans 2^23 blocks).
fn mark(blocks: &mut [u64], first: u32, last: u32) {
    let (w0, w1) = ((first >> 6) as usize, (last >> 6) as usize);
    let head = !0u64 << (first & 63);
    let tail = !0u64 >> (63 - (last & 63));
    if w0 == w1 {
        blocks[w0] |= head & tail;
    } else {
        blocks[w0] |= head;
        blocks[w0 + 1..w1].fill(!0);
        blocks[w1] |= tail;
    }
}

/// Exact IPv4 addresses and networks, behind a bitmap over /24 blocks.
///
/// Layout (`g` is the /16 group `addr >> 16`, `lo` the low 16 bits):
/// - `blocks`: 2^24 bits (2 MiB, fixed), bit `addr >> 8` set iff the /24 block holds an exact
///   address or meets a network. One load answers the common miss; the bitmap fits in L2.
/// - `groups`: 65,537 pairs (512 KiB, fixed): how many exact entries, and how many ranges,
///   start before group `g`. A group's run is short (14 exact addresses on average per
///   million), so it is searched within a cache line or two, never across the whole table.
/// - exact table: `exact_lo: [u16]` and `exact_ords: [u32]`, sorted by `(addr, ordinal)`; a
///   repeated address is a repeated key. 6 bytes per exact address.
/// - range table: the elementary ranges in address order, `range_lo: [u16]` (the low half of
///   the start; the high half is the group whose run holds it) and `range_vals: [u32]` (the
///   ordinal set: none, one ordinal inline, or a node of shared chains). Range `j` spans
///   `start_j..start_{j+1}`. An address is in the last range starting at or before it: within
///   its group's run, or else the last range of an earlier group (`groups[g].1 - 1`), which
///   the same subtraction yields. 6 bytes per range, about two ranges per network, plus
///   8 bytes per distinct set of nested networks.
///
/// An index without entries has neither bitmap nor directory (every address misses).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Ipv4Index {
    /// [`BLOCK_WORDS`] words, or none when the index is empty.
    blocks: Arr<u64>,
    /// `GROUPS + 1` entries, or none when the index is empty.
    groups: Arr<[u32; 2]>,
    exact_lo: Arr<u16>,
    exact_ords: Arr<u32>,
    range_lo: Arr<u16>,
    range_vals: Arr<u32>,
    chains: OrdChains,
}

impl fmt::Debug for Ipv4Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ipv4Index")
            .field("exact", &self.exact_lo.len())
            .field("ranges", &self.range_lo.len())
            .field("chain_nodes", &self.chains.len())
            .field("heap_bytes", &self.heap_bytes())
            .finish()
    }
}

impl Ipv4Index {
    /// Appends the ordinal of every exact address equal to `addr` and of every network
    /// containing it (`addr` is `u32::from(Ipv4Addr)`), ascending, each once.
    #[inline]
    pub fn lookup(&self, addr: u32, out: &mut Vec<u32>) {
        if self.may_contain(addr) {
            self.lookup_candidate(addr, out);
        }
    }

    /// [`lookup`](Self::lookup) for an [`Ipv4Addr`].
    #[inline]
    pub fn lookup_addr(&self, addr: Ipv4Addr, out: &mut Vec<u32>) {
        self.lookup(addr.into(), out);
    }

    /// The negative filter alone: `false` means no indicator covers `addr`; `true` means the
    /// /24 block of `addr` holds an exact address or meets a network.
    #[inline]
    pub fn may_contain(&self, addr: u32) -> bool {
        self.blocks
            .get_value((addr >> 14) as usize)
            .is_some_and(|word| (word >> ((addr >> 8) & 63)) & 1 != 0)
    }

    /// Appends, for each address of `addrs` covered by some indicator, `(row, ordinal)` for
    /// every such indicator, rows ascending and ordinals ascending within a row. Faster than
    /// calling [`lookup`](Self::lookup) per row when most rows miss.
    pub fn lookup_column(&self, addrs: &[u32], hits: &mut Vec<(u32, u32)>) {
        let mut ords = Vec::new();
        for (row, &addr) in addrs.iter().enumerate() {
            if self.may_contain(addr) {
                ords.clear();
                self.lookup_candidate(addr, &mut ords);
                hits.extend(ords.iter().map(|&o| (row as u32, o)));
            }
        }
    }

    #[inline(never)]
    fn lookup_candidate(&self, addr: u32, out: &mut Vec<u32>) {
        let g = (addr >> 16) as usize;
        let lo = addr as u16;
        let groups = &self.groups[..];
        let (Some(&[e0, r0]), Some(&[e1, r1])) = (groups.get(g), groups.get(g + 1)) else {
            return;
        };
        // `validate` guarantees e0 ≤ e1 ≤ exact length and r0 ≤ r1 ≤ range length; without
        // it, a run out of order or range is empty.
        let from = out.len();
        let run = e0 as usize..e1 as usize;
        if let (Some(keys), Some(ords)) = (self.exact_lo.get(run.clone()), self.exact_ords.get(run))
        {
            let mut i = keys.partition_point(|&k| k < lo);
            while i < keys.len() && keys[i] == lo {
                out.push(ords[i]);
                i += 1;
            }
        }
        let starts = self
            .range_lo
            .get(r0 as usize..r1 as usize)
            .unwrap_or_default();
        // One past the last range starting at or before `addr`: in this group's run, or else
        // the last range of an earlier group.
        let j = r0 as usize + starts.partition_point(|&s| s <= lo);
        if let Some(&v) = j.checked_sub(1).and_then(|j| self.range_vals.get(j)) {
            self.chains.emit(v, out);
        }
        if out.len() > from + 1 {
            sort_tail(out, from);
        }
    }

    /// Number of exact entries (address, ordinal).
    pub fn exact_len(&self) -> usize {
        self.exact_lo.len()
    }

    /// Number of elementary ranges (uncovered gaps between networks included).
    pub fn range_len(&self) -> usize {
        self.range_lo.len()
    }

    /// Whether the index holds nothing.
    pub fn is_empty(&self) -> bool {
        self.exact_lo.is_empty() && self.range_lo.is_empty()
    }

    /// Bytes of all arrays, the fixed 2.5 MiB filter and directory included.
    pub fn heap_bytes(&self) -> usize {
        self.fixed_bytes() + self.variable_bytes()
    }

    /// Bytes of the arrays whose size does not depend on the indicators: the /24 bitmap
    /// (2 MiB) and the /16 directory (512 KiB).
    pub fn fixed_bytes(&self) -> usize {
        8 * self.blocks.len() + 8 * self.groups.len()
    }

    /// Bytes of the arrays that grow with the indicators (exact table, ranges, chains).
    pub fn variable_bytes(&self) -> usize {
        2 * self.exact_lo.len()
            + 4 * self.exact_ords.len()
            + 2 * self.range_lo.len()
            + 4 * self.range_vals.len()
            + self.chains.heap_bytes()
    }

    /// Calls `f(group, exact entries, range entries)` for each non-empty group, in order. The
    /// directory must be monotone (checked by `validate` first), so equal entries 64 groups
    /// apart mean 64 empty groups, skipped at once.
    fn each_group(
        &self,
        mut f: impl FnMut(usize, Range<usize>, Range<usize>) -> Result<(), FormatError>,
    ) -> Result<(), FormatError> {
        let mut g = 0;
        while g < GROUPS {
            if g + 64 <= GROUPS && self.groups[g] == self.groups[g + 64] {
                g += 64;
                continue;
            }
            let ([e0, r0], [e1, r1]) = (self.groups[g], self.groups[g + 1]);
            if e0 != e1 || r0 != r1 {
                f(g, e0 as usize..e1 as usize, r0 as usize..r1 as usize)?;
            }
            g += 1;
        }
        Ok(())
    }

    /// The /24 bitmap implied by the tables (built independently of `build`'s, as a check).
    fn derive_blocks(&self) -> Vec<u64> {
        let mut blocks = vec![0u64; BLOCK_WORDS];
        let mut starts = Vec::with_capacity(self.range_lo.len());
        self.each_group(|g, exact, ranges| {
            let base = (g as u32) << 8;
            for &lo in &self.exact_lo[exact] {
                let b = base | u32::from(lo >> 8);
                mark(&mut blocks[..], b, b);
            }
            let high = (g as u32) << 16;
            starts.extend(self.range_lo[ranges].iter().map(|&lo| high | u32::from(lo)));
            Ok(())
        })
        .expect("the closure does not fail");
        for (j, &v) in self.range_vals.iter().enumerate() {
            if v != NONE {
                let last = starts.get(j + 1).map_or(u32::MAX, |&next| next - 1);
                mark(&mut blocks[..], starts[j] >> 8, last >> 8);
            }
        }
        blocks
    }

    /// Checks every invariant lookups rely on: array lengths, the directory, ordering within
    /// each group, canonical range values, the ordinal chains, and that the bitmap is exactly
    /// the one the tables imply (a cleared bit would hide indicators).
    pub fn validate(&self) -> Result<(), FormatError> {
        let err = |reason: String| Err(FormatError::new(STRUCTURE, reason));
        self.check_shape()?;
        self.chains.validate(STRUCTURE)?;
        if self.blocks.is_empty() {
            return Ok(());
        }
        for g in 0..GROUPS {
            let ([e0, r0], [e1, r1]) = (self.groups[g], self.groups[g + 1]);
            if e0 > e1 || r0 > r1 {
                return err(format!("the /16 directory decreases at group {g}"));
            }
        }
        self.each_group(|g, exact, ranges| {
            let keys = &self.exact_lo[exact.clone()];
            let ords = &self.exact_ords[exact];
            for i in 1..keys.len() {
                if (keys[i - 1], ords[i - 1]) >= (keys[i], ords[i]) {
                    return err(format!(
                        "exact entries of group {g} are not strictly sorted"
                    ));
                }
            }
            if self.range_lo[ranges].windows(2).any(|w| w[0] >= w[1]) {
                return err(format!(
                    "range starts of group {g} are not strictly ascending"
                ));
            }
            Ok(())
        })?;
        if self.range_vals.first() == Some(&NONE) {
            return err("the range table opens with an uncovered range".into());
        }
        if self.range_vals.windows(2).any(|w| w[0] == w[1]) {
            return err("neighbouring ranges have equal sets".into());
        }
        for &v in &self.range_vals {
            self.chains.check_value(v, STRUCTURE)?;
        }
        if self.blocks[..] != self.derive_blocks()[..] {
            return err("the /24 bitmap does not match the tables".into());
        }
        Ok(())
    }
}

impl Ipv4Index {
    /// What loading checks, in O(1): a bitmap and a directory of the fixed sizes, or neither
    /// and no entries; keys as many as their ordinals or values; the directory starting at 0
    /// and ending at the table lengths.
    fn check_shape(&self) -> Result<(), FormatError> {
        let err = |reason: String| Err(FormatError::new(STRUCTURE, reason));
        if self.exact_lo.len() != self.exact_ords.len() {
            return err("exact keys and ordinals differ in length".into());
        }
        if self.range_lo.len() != self.range_vals.len() {
            return err("range starts and values differ in length".into());
        }
        self.chains.check_shape(STRUCTURE)?;
        if self.blocks.is_empty() && self.groups.is_empty() {
            if !self.is_empty() {
                return err("tables without a filter".into());
            }
            return Ok(());
        }
        if self.blocks.len() != BLOCK_WORDS || self.groups.len() != GROUPS + 1 {
            return err(format!(
                "bitmap of {} words, directory of {} groups",
                self.blocks.len(),
                self.groups.len()
            ));
        }
        if self.groups[0] != [0, 0] {
            return err("the /16 directory does not start at 0".into());
        }
        let [e_end, r_end] = self.groups[GROUPS];
        if e_end as usize != self.exact_lo.len() || r_end as usize != self.range_lo.len() {
            return err("the /16 directory does not end at the table lengths".into());
        }
        Ok(())
    }
}

impl Sections for Ipv4Index {
    /// An empty index writes empty filter and directory sections instead of 2.5 MiB of zeros.
    fn write_sections(&self, w: &mut SectionWriter) {
        if self.is_empty() {
            w.put::<u64>(&[]);
            w.put::<[u32; 2]>(&[]);
        } else {
            w.put(&self.blocks[..]);
            w.put(&self.groups[..]);
        }
        w.put(&self.exact_lo);
        w.put(&self.exact_ords);
        w.put(&self.range_lo);
        w.put(&self.range_vals);
        self.chains.write(w);
    }

    fn read_sections(r: &mut SectionReader) -> Result<Self, FormatError> {
        let ix = Ipv4Index {
            blocks: r.take(STRUCTURE)?,
            groups: r.take(STRUCTURE)?,
            exact_lo: r.take(STRUCTURE)?,
            exact_ords: r.take(STRUCTURE)?,
            range_lo: r.take(STRUCTURE)?,
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

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> u32 {
        s.parse::<Ipv4Addr>().unwrap().into()
    }

    fn sample() -> Ipv4Index {
        let mut b = Ipv4IndexBuilder::new();
        b.add(net("10.0.0.0/8"), 1);
        b.add(net("10.1.0.0/16"), 2);
        b.add(net("10.1.0.0/16"), 7);
        b.add(net("10.1.2.0/25"), 3);
        b.add(net("10.1.2.3/32"), 4);
        b.add_addr(ip("192.0.2.1"), 5);
        b.add_addr(ip("192.0.2.1"), 5);
        b.add_addr(ip("192.0.2.1"), 6);
        b.add(net("255.255.255.254/31"), 8);
        b.build()
    }

    fn look(ix: &Ipv4Index, s: &str) -> Vec<u32> {
        let mut out = Vec::new();
        ix.lookup(ip(s), &mut out);
        out
    }

    #[test]
    fn table() {
        let ix = sample();
        ix.validate().unwrap();
        let cases: &[(&str, &[u32])] = &[
            ("10.1.2.3", &[1, 2, 3, 4, 7]),
            ("10.1.2.4", &[1, 2, 3, 7]),
            ("10.1.2.128", &[1, 2, 7]),
            ("10.1.255.255", &[1, 2, 7]),
            ("10.2.0.0", &[1]),
            ("10.255.255.255", &[1]),
            ("11.0.0.0", &[]),
            ("9.255.255.255", &[]),
            ("192.0.2.1", &[5, 6]),
            ("192.0.2.2", &[]),
            ("0.0.0.0", &[]),
            ("255.255.255.255", &[8]),
            ("255.255.255.253", &[]),
        ];
        for (addr, want) in cases {
            assert_eq!(look(&ix, addr), *want, "{addr}");
        }
    }

    #[test]
    fn whole_space_and_empty() {
        let empty = Ipv4IndexBuilder::new().build();
        empty.validate().unwrap();
        assert!(look(&empty, "1.2.3.4").is_empty());
        let mut b = Ipv4IndexBuilder::new();
        b.add(net("0.0.0.0/0"), 9);
        b.add(net("128.0.0.0/1"), u32::MAX);
        let ix = b.build();
        ix.validate().unwrap();
        assert_eq!(look(&ix, "0.0.0.0"), [9]);
        assert_eq!(look(&ix, "255.255.255.255"), [9, u32::MAX]);
    }

    #[test]
    fn corruption_is_refused() {
        let good = sample();
        // Each corruption is refused by `validate`, and lookups in it never panic or hang.
        let refused = |ix: Ipv4Index, what: &str| {
            for a in ["10.1.2.3", "192.0.2.1", "10.1.9.9", "255.255.255.255"] {
                look(&ix, a);
            }
            assert!(ix.validate().is_err(), "{what}");
        };
        let mut ix = good.clone();
        ix.blocks.edit(|b| b[(ip("192.0.2.1") >> 14) as usize] = 0);
        refused(ix, "cleared filter bit");

        let mut ix = good.clone();
        ix.blocks.edit(|b| b[0] |= 1);
        refused(ix, "extra filter bit");

        let mut ix = good.clone();
        let g = (ip("10.1.2.0") >> 16) as usize;
        let r0 = ix.groups[g][1] as usize;
        ix.range_lo.edit(|r| r.swap(r0, r0 + 1));
        refused(ix, "unsorted range starts");

        let mut ix = good.clone();
        ix.groups.edit(|d| d[GROUPS][0] += 1);
        refused(ix, "directory past the end");

        let mut ix = good.clone();
        ix.groups.edit(|d| d[g][1] = d[g + 1][1] + 1);
        refused(ix, "directory decreases");

        let mut ix = good.clone();
        ix.chains.rest.edit(|r| r[0] = LIST);
        refused(ix, "chain linking to itself");

        let mut ix = good.clone();
        ix.chains
            .rest
            .edit(|r| r.iter_mut().for_each(|x| *x = LIST | 1));
        refused(ix, "chains linking in a loop");

        let mut ix = good.clone();
        ix.range_vals.edit(|v| v[r0] = LIST | 1000);
        refused(ix, "missing chain node");

        let mut ix = good.clone();
        let e = ix.groups[(ip("192.0.2.1") >> 16) as usize][0] as usize;
        ix.exact_ords.edit(|o| o.swap(e, e + 1));
        refused(ix, "unsorted exact entries");

        let mut ix = good;
        ix.exact_ords.edit(|o| {
            o.pop();
        });
        assert!(ix.validate().is_err(), "length mismatch");
    }

    #[test]
    fn sections_round_trip() {
        for ix in [sample(), Ipv4Index::default()] {
            let mut w = SectionWriter::new();
            ix.write_sections(&mut w);
            let slices: Vec<&[u8]> = w.sections.iter().map(|s| s.as_slice()).collect();
            let back = Ipv4Index::read_sections(&mut SectionReader::new(&slices)).unwrap();
            assert_eq!(back, ix);
        }
    }
}
