//! The `ip:port` index ([`IpPortIndex`]): exact pairs, sorted.

use std::net::IpAddr;

use crate::index::{Arr, FormatError, SectionReader, SectionWriter, Sections};

const STRUCTURE: &str = "ip:port index";

/// Builds an [`IpPortIndex`].
#[derive(Clone, Debug, Default)]
pub struct IpPortIndexBuilder {
    v4: Vec<(u64, u32)>,
    v6: Vec<(u128, u16, u32)>,
}

impl IpPortIndexBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a pair. An IPv4-mapped IPv6 address is stored as IPv4.
    pub fn add(&mut self, addr: IpAddr, port: u16, ordinal: u32) {
        match addr.to_canonical() {
            IpAddr::V4(a) => self.v4.push((v4_key(a.into(), port), ordinal)),
            IpAddr::V6(a) => self.v6.push((a.into(), port, ordinal)),
        }
    }

    /// The immutable index. The same additions in any order give the same arrays.
    pub fn build(mut self) -> IpPortIndex {
        self.v4.sort_unstable();
        self.v4.dedup();
        self.v6.sort_unstable();
        self.v6.dedup();
        let v4_keys: Arr<u64> = self.v4.iter().map(|e| e.0).collect::<Vec<_>>().into();
        IpPortIndex {
            v4_filter: KeyFilter::new(&v4_keys),
            addr_filter: addr_filter(&v4_keys, self.v6.iter().map(|e| e.0)),
            v4_keys,
            v4_ords: self.v4.iter().map(|e| e.1).collect::<Vec<_>>().into(),
            v6_addrs: self.v6.iter().map(|e| e.0).collect::<Vec<_>>().into(),
            v6_ports: self.v6.iter().map(|e| e.1).collect::<Vec<_>>().into(),
            v6_ords: self.v6.iter().map(|e| e.2).collect::<Vec<_>>().into(),
        }
    }
}

#[inline]
fn v4_key(addr: u32, port: u16) -> u64 {
    u64::from(addr) << 16 | u64::from(port)
}

/// An IPv6 address as a key of the address filter (IPv4 addresses are their own `u32`).
#[inline]
fn v6_addr_key(a: u128) -> u64 {
    (a as u64) ^ ((a >> 64) as u64).rotate_left(29) ^ 0xA076_1D64_78BD_642F
}

/// The filter of every address that has a pair: IPv4 keys without their ports, and IPv6.
fn addr_filter(v4_keys: &[u64], v6: impl Iterator<Item = u128>) -> KeyFilter {
    let mut keys: Vec<u64> = v4_keys.iter().map(|k| k >> 16).collect();
    keys.dedup();
    keys.extend(v6.map(v6_addr_key));
    KeyFilter::new(&keys)
}

/// One bit per hashed key, about 16 bits per key, built when the index is built or loaded (not
/// stored): a key that is not there usually costs one cache-resident load instead of a
/// bisection over cold keys — almost every telemetry lookup is such a miss. Over the IPv4
/// `(address, port)` keys, and over the addresses of both families (for
/// [`IpPortIndex::has_addr`], asked once per distinct address a column holds).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct KeyFilter {
    words: Vec<u64>,
    shift: u32,
}

impl KeyFilter {
    fn new(keys: &[u64]) -> Self {
        if keys.is_empty() {
            return KeyFilter::default();
        }
        let bits = (keys.len() * 16).next_power_of_two().clamp(64, 1 << 24);
        let shift = 64 - bits.trailing_zeros();
        let mut words = vec![0u64; bits / 64];
        for &k in keys {
            let h = Self::hash(k, shift);
            words[h / 64] |= 1 << (h % 64);
        }
        KeyFilter { words, shift }
    }

    #[inline]
    fn hash(key: u64, shift: u32) -> usize {
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> shift) as usize
    }

    /// Whether `key` may be stored (always, when the filter was not built).
    #[inline]
    fn may_contain(&self, key: u64) -> bool {
        if self.words.is_empty() {
            return true;
        }
        let h = Self::hash(key, self.shift);
        self.words
            .get(h / 64)
            .is_none_or(|w| w & (1 << (h % 64)) != 0)
    }
}

/// Exact `(address, port)` pairs, IPv4 and IPv6: sorted keys with their ordinals alongside (a
/// pair added with several ordinals is a repeated key), searched by bisection. IPv4 keys are
/// packed into one `u64` (`addr << 16 | port`, 12 bytes per pair with the ordinal); IPv6 keys
/// are an address array and a port array sorted together (22 bytes per pair).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpPortIndex {
    v4_filter: KeyFilter,
    addr_filter: KeyFilter,
    v4_keys: Arr<u64>,
    v4_ords: Arr<u32>,
    v6_addrs: Arr<u128>,
    v6_ports: Arr<u16>,
    v6_ords: Arr<u32>,
}

impl IpPortIndex {
    /// Appends the ordinals of the pairs equal to `(addr, port)`, ascending. An IPv4-mapped
    /// IPv6 address is looked up as IPv4.
    #[inline]
    pub fn lookup(&self, addr: IpAddr, port: u16, out: &mut Vec<u32>) {
        match addr {
            IpAddr::V4(a) => self.lookup_v4(a.into(), port, out),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(a) => self.lookup_v4(a.into(), port, out),
                None => self.lookup_v6(a.into(), port, out),
            },
        }
    }

    /// [`lookup`](Self::lookup) for an IPv4 address as `u32`.
    #[inline]
    pub fn lookup_v4(&self, addr: u32, port: u16, out: &mut Vec<u32>) {
        // As many ordinals as keys, as loading checks; `zip` holds even without.
        let (keys, ords) = (&self.v4_keys[..], &self.v4_ords[..]);
        if keys.is_empty() {
            return;
        }
        let key = v4_key(addr, port);
        if !self.v4_filter.may_contain(key) {
            return;
        }
        let i = keys.partition_point(|&k| k < key);
        let run = keys
            .get(i..)
            .unwrap_or_default()
            .iter()
            .take_while(|&&k| k == key);
        out.extend(run.zip(ords.get(i..).unwrap_or_default()).map(|(_, &o)| o));
    }

    /// [`lookup`](Self::lookup) for an IPv6 address as `u128` (not IPv4-mapped).
    #[inline]
    pub fn lookup_v6(&self, addr: u128, port: u16, out: &mut Vec<u32>) {
        let (addrs, ports, ords) = (&self.v6_addrs[..], &self.v6_ports[..], &self.v6_ords[..]);
        // The three arrays are equally long once loaded; the shortest bounds the search.
        let n = addrs.len().min(ports.len()).min(ords.len());
        if n == 0 {
            return;
        }
        let key = (addr, port);
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if (addrs[mid], ports[mid]) < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        while lo < n && (addrs[lo], ports[lo]) == key {
            out.push(ords[lo]);
            lo += 1;
        }
    }

    /// Whether any pair has address `addr`, whatever its port: when not, a column of such
    /// addresses needs no per-row port lookup. An IPv4-mapped IPv6 address counts as IPv4.
    pub fn has_addr(&self, addr: IpAddr) -> bool {
        match addr.to_canonical() {
            IpAddr::V4(a) => {
                if !self.addr_filter.may_contain(u32::from(a).into()) {
                    return false;
                }
                let lo = v4_key(a.into(), 0);
                let keys = &self.v4_keys[..];
                keys.get(keys.partition_point(|&k| k < lo))
                    .is_some_and(|&k| k >> 16 == lo >> 16)
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                if !self.addr_filter.may_contain(v6_addr_key(a)) {
                    return false;
                }
                let addrs = &self.v6_addrs[..];
                addrs.get(addrs.partition_point(|&x| x < a)) == Some(&a)
            }
        }
    }

    /// Number of stored pairs (with their ordinals).
    pub fn len(&self) -> usize {
        self.v4_keys.len() + self.v6_addrs.len()
    }

    /// Whether no pair is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of all arrays.
    pub fn heap_bytes(&self) -> usize {
        12 * self.v4_keys.len() + 22 * self.v6_addrs.len()
    }

    /// Checks lengths and strict `(key, ordinal)` ordering, on which bisection relies.
    pub fn validate(&self) -> Result<(), FormatError> {
        let err = |reason: &str| Err(FormatError::new(STRUCTURE, reason));
        self.check_shape()?;
        for i in 1..self.v4_keys.len() {
            if (self.v4_keys[i - 1], self.v4_ords[i - 1]) >= (self.v4_keys[i], self.v4_ords[i]) {
                return err("IPv4 pairs are not strictly sorted");
            }
        }
        let v6 = |i: usize| (self.v6_addrs[i], self.v6_ports[i], self.v6_ords[i]);
        for i in 1..self.v6_addrs.len() {
            if v6(i - 1) >= v6(i) {
                return err("IPv6 pairs are not strictly sorted");
            }
        }
        Ok(())
    }
}

impl IpPortIndex {
    /// What loading checks, in O(1): the parallel arrays equally long.
    fn check_shape(&self) -> Result<(), FormatError> {
        let err = |reason: &str| Err(FormatError::new(STRUCTURE, reason));
        if self.v4_keys.len() != self.v4_ords.len() {
            return err("IPv4 keys and ordinals differ in length");
        }
        if self.v6_addrs.len() != self.v6_ports.len() || self.v6_addrs.len() != self.v6_ords.len() {
            return err("IPv6 addresses, ports and ordinals differ in length");
        }
        Ok(())
    }
}

impl Sections for IpPortIndex {
    fn write_sections(&self, w: &mut SectionWriter) {
        w.put(&self.v4_keys);
        w.put(&self.v4_ords);
        w.put(&self.v6_addrs);
        w.put(&self.v6_ports);
        w.put(&self.v6_ords);
    }

    fn read_sections(r: &mut SectionReader) -> Result<Self, FormatError> {
        let v4_keys: Arr<u64> = r.take(STRUCTURE)?;
        let v4_ords = r.take(STRUCTURE)?;
        let v6_addrs: Arr<u128> = r.take(STRUCTURE)?;
        let ix = IpPortIndex {
            v4_filter: KeyFilter::new(&v4_keys),
            addr_filter: addr_filter(&v4_keys, v6_addrs.iter().copied()),
            v4_keys,
            v4_ords,
            v6_addrs,
            v6_ports: r.take(STRUCTURE)?,
            v6_ords: r.take(STRUCTURE)?,
        };
        ix.check_shape()?;
        Ok(ix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_addr_ignores_the_port() {
        let mut b = IpPortIndexBuilder::new();
        b.add("192.0.2.7".parse().unwrap(), 443, 0);
        b.add("2001:db8::1".parse().unwrap(), 22, 1);
        let ix = b.build();
        for yes in ["192.0.2.7", "::ffff:192.0.2.7", "2001:db8::1"] {
            assert!(ix.has_addr(yes.parse().unwrap()), "{yes}");
        }
        for no in [
            "192.0.2.6",
            "192.0.2.8",
            "0.0.0.0",
            "2001:db8::2",
            "255.255.255.255",
        ] {
            assert!(!ix.has_addr(no.parse().unwrap()), "{no}");
        }
        assert!(!IpPortIndex::default().has_addr("192.0.2.7".parse().unwrap()));
    }

    proptest::proptest! {
        /// `has_addr`, filter and all, answers as a scan of the pairs does, before and after a
        /// round trip through the snapshot's sections.
        #[test]
        fn has_addr_is_a_scan_of_the_pairs(
            pairs in proptest::collection::vec((0u32..512, proptest::bool::ANY, 0u16..4), 0..300),
            probes in proptest::collection::vec((0u32..512, proptest::bool::ANY), 1..100),
        ) {
            let addr = |a: u32, v6: bool| -> IpAddr {
                if v6 {
                    std::net::Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(a)).into()
                } else {
                    std::net::Ipv4Addr::from(0xC000_0200 + a).into()
                }
            };
            let mut b = IpPortIndexBuilder::new();
            for (i, &(a, v6, port)) in pairs.iter().enumerate() {
                b.add(addr(a, v6), port, i as u32);
            }
            let ix = b.build();
            let mut w = SectionWriter::new();
            ix.write_sections(&mut w);
            let slices: Vec<&[u8]> = w.sections.iter().map(|s| s.as_slice()).collect();
            let back = IpPortIndex::read_sections(&mut SectionReader::new(&slices)).unwrap();
            for (a, v6) in pairs.iter().map(|&(a, v6, _)| (a, v6)).chain(probes.iter().copied()) {
                let want = pairs.iter().any(|p| p.0 == a && p.1 == v6);
                proptest::prop_assert_eq!(ix.has_addr(addr(a, v6)), want);
                proptest::prop_assert_eq!(back.has_addr(addr(a, v6)), want);
            }
        }
    }

    #[test]
    fn pairs() {
        let mut b = IpPortIndexBuilder::new();
        let a: IpAddr = "198.51.100.23".parse().unwrap();
        let m: IpAddr = "::ffff:198.51.100.23".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        b.add(a, 8443, 2);
        b.add(m, 8443, 1);
        b.add(a, 8443, 2);
        b.add(a, 80, 3);
        b.add(v6, 443, 4);
        b.add(v6, 443, 0);
        let ix = b.build();
        ix.validate().unwrap();
        let look = |addr: IpAddr, port| {
            let mut out = Vec::new();
            ix.lookup(addr, port, &mut out);
            out
        };
        assert_eq!(look(a, 8443), [1, 2]);
        assert_eq!(look(m, 8443), [1, 2]);
        assert_eq!(look(a, 80), [3]);
        assert_eq!(look(a, 81), [] as [u32; 0]);
        assert_eq!(look(v6, 443), [0, 4]);
        assert_eq!(look(v6, 444), [] as [u32; 0]);

        let mut bad = ix.clone();
        bad.v4_keys.edit(|k| k.swap(0, 1));
        bad.lookup(a, 80, &mut Vec::new());
        assert!(bad.validate().is_err());
        let mut bad = ix.clone();
        bad.v6_ports.edit(|p| {
            p.pop();
        });
        bad.lookup(v6, 443, &mut Vec::new());
        assert!(bad.validate().is_err());

        let mut w = SectionWriter::new();
        ix.write_sections(&mut w);
        let slices: Vec<&[u8]> = w.sections.iter().map(|s| s.as_slice()).collect();
        let back = IpPortIndex::read_sections(&mut SectionReader::new(&slices)).unwrap();
        assert_eq!(back, ix);
    }
}
