//! A fast hasher for the crate's in-memory maps keyed by short keys, where SipHash would
//! dominate the cost of a probe.

use std::hash::{BuildHasher, Hasher};

/// FxHash-style hasher with a final avalanche. Unseeded (`Default`, as in
/// `BuildHasherDefault<FastHasher>`) where keys come from trusted files and probes never insert
/// (the warninglist maps); seeded per process ([`SeededFastHash`]) where a file being read
/// picks the keys.
#[derive(Default, Clone, Copy)]
pub(crate) struct FastHasher(pub(crate) u64);

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(i)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        // Final avalanche so that the low bits (bucket) and high bits (tag) both vary.
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A random key drawn once per process, for the hashes of in-memory tables whose keys a file
/// picks (so that it cannot aim them at one bucket without knowing the key). Without an
/// entropy source the tables are still correct, only predictable.
pub(crate) fn process_seed() -> u64 {
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SEED.get_or_init(|| {
        let mut seed = [0u8; 8];
        let _ = getrandom::fill(&mut seed);
        u64::from_le_bytes(seed)
    })
}

/// [`FastHasher`] started from [`process_seed`].
#[derive(Clone, Copy)]
pub(crate) struct SeededFastHash(u64);

impl SeededFastHash {
    pub(crate) fn new() -> Self {
        SeededFastHash(process_seed())
    }
}

impl BuildHasher for SeededFastHash {
    type Hasher = FastHasher;
    fn build_hasher(&self) -> FastHasher {
        FastHasher(self.0)
    }
}
