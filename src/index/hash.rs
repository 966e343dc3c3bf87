//! The hash function of every stored table. It is part of the snapshot format: changing it
//! changes the format version.

/// 64-bit XXH3 of `bytes` with seed 0 (a stable, published algorithm, so a snapshot written
/// by one build is read correctly by another).
#[inline]
pub fn hash64(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn is_stable() {
        // Pinned: a change here breaks every snapshot on disk.
        assert_eq!(super::hash64(b""), 0x2d06_8005_38d3_94c2);
        assert_eq!(super::hash64(b"example.com"), super::hash64(b"example.com"));
    }
}
