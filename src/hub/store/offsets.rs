//! Acked offsets: per entity, the first offset its subscriber has not acknowledged, in a small
//! checksummed file replaced atomically (write a temporary file, `fsync`, rename over the old
//! one, `fsync` the folder), so that a crash leaves either the old value or the new one.
//!
//! ```text
//! magic "CWNACK\0\x01" · next offset u64 · XXH3-64 of the 16 bytes before
//! ```
//!
//! The periodic save of every changed offset writes them all to one table in the hub's data
//! folder instead, replaced the same way: one file and two `fsync`s a second for 7,000
//! entities rather than 14,000. On load, an entity's offset is the larger of the two (acks
//! only move forward, so the larger was written later).
//!
//! ```text
//! magic "CWNACKT\x01" · count u32 · (entity u32 · next offset u64) × count · XXH3-64 of all before
//! ```

use std::fs;
use std::io;
use std::path::Path;

use xxhash_rust::xxh3::xxh3_64;

use super::log::LogError;

/// The first eight bytes of an acked-offset file.
pub const ACKED_MAGIC: [u8; 8] = *b"CWNACK\0\x01";

/// Name of the acked-offset file inside an entity's folder.
pub const ACKED_FILE: &str = "acked";

/// The first eight bytes of the acked-offset table.
pub const TABLE_MAGIC: [u8; 8] = *b"CWNACKT\x01";

/// Name of the acked-offset table in the hub's data folder.
pub const ACKED_TABLE: &str = "acked.table";

fn io_err(path: &Path, source: io::Error) -> LogError {
    LogError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Reads the acked offset in `path`: `None` when the file does not exist.
pub fn load(path: &Path) -> Result<Option<u64>, LogError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, e)),
    };
    let corrupt = |reason| LogError::Corrupt {
        path: path.to_owned(),
        position: 0,
        reason,
    };
    if bytes.len() != 24 || bytes[..8] != ACKED_MAGIC {
        return Err(corrupt("not an acked-offset file"));
    }
    let sum = u64::from_le_bytes(bytes[16..].try_into().expect("8 bytes"));
    if xxh3_64(&bytes[..16]) != sum {
        return Err(corrupt("acked-offset checksum mismatch"));
    }
    Ok(Some(u64::from_le_bytes(
        bytes[8..16].try_into().expect("8 bytes"),
    )))
}

/// Reads the acked-offset table in `path`: `None` when the file does not exist.
pub fn load_table(path: &Path) -> Result<Option<Vec<(u32, u64)>>, LogError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, e)),
    };
    parse_table(&bytes, path).map(Some)
}

/// The entries of an acked-offset table's bytes (`path` names it in errors).
pub fn parse_table(bytes: &[u8], path: &Path) -> Result<Vec<(u32, u64)>, LogError> {
    let corrupt = |reason| LogError::Corrupt {
        path: path.to_owned(),
        position: 0,
        reason,
    };
    if bytes.len() < 20 || bytes[..8] != TABLE_MAGIC {
        return Err(corrupt("not an acked-offset table"));
    }
    let (body, sum) = bytes.split_at(bytes.len() - 8);
    if xxh3_64(body) != u64::from_le_bytes(sum.try_into().expect("8 bytes")) {
        return Err(corrupt("acked-offset table checksum mismatch"));
    }
    let count = u32::from_le_bytes(body[8..12].try_into().expect("4 bytes")) as usize;
    let entries = &body[12..];
    if entries.len() != count * 12 {
        return Err(corrupt(
            "acked-offset table length does not match its count",
        ));
    }
    Ok(entries
        .chunks_exact(12)
        .map(|c| {
            (
                u32::from_le_bytes(c[..4].try_into().expect("4 bytes")),
                u64::from_le_bytes(c[4..].try_into().expect("8 bytes")),
            )
        })
        .collect())
}

/// Replaces the acked-offset table in `path` with `entries` atomically; with `sync`, durably.
pub fn store_table(path: &Path, entries: &[(u32, u64)], sync: bool) -> Result<(), LogError> {
    replace(path, &encode_table(entries), sync)
}

/// The bytes of an acked-offset table holding `entries` (what [`parse_table`] reads back).
pub fn encode_table(entries: &[(u32, u64)]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(20 + entries.len() * 12);
    bytes.extend_from_slice(&TABLE_MAGIC);
    bytes.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for (e, next) in entries {
        bytes.extend_from_slice(&e.to_le_bytes());
        bytes.extend_from_slice(&next.to_le_bytes());
    }
    let sum = xxh3_64(&bytes);
    bytes.extend_from_slice(&sum.to_le_bytes());
    bytes
}

/// Replaces the acked offset in `path` with `next` atomically; with `sync`, durably.
pub fn store(path: &Path, next: u64, sync: bool) -> Result<(), LogError> {
    let mut bytes = [0u8; 24];
    bytes[..8].copy_from_slice(&ACKED_MAGIC);
    bytes[8..16].copy_from_slice(&next.to_le_bytes());
    let sum = xxh3_64(&bytes[..16]);
    bytes[16..].copy_from_slice(&sum.to_le_bytes());
    replace(path, &bytes, sync)
}

/// Writes `bytes` over `path` at once ([`crate::outfile::replace`]); with `sync`, durably.
fn replace(path: &Path, bytes: &[u8], sync: bool) -> Result<(), LogError> {
    crate::outfile::replace(path, bytes, sync).map_err(|e| io_err(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_loads_and_refuses_damage() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(ACKED_FILE);
        assert_eq!(load(&p).unwrap(), None);
        store(&p, 42, true).unwrap();
        assert_eq!(load(&p).unwrap(), Some(42));
        store(&p, 43, false).unwrap();
        assert_eq!(load(&p).unwrap(), Some(43));
        assert!(!p.with_extension("tmp").exists());
        let mut b = fs::read(&p).unwrap();
        b[9] ^= 1;
        fs::write(&p, &b).unwrap();
        assert!(matches!(load(&p), Err(LogError::Corrupt { .. })));
        fs::write(&p, b"short").unwrap();
        assert!(matches!(load(&p), Err(LogError::Corrupt { .. })));

        let t = d.path().join(ACKED_TABLE);
        assert_eq!(load_table(&t).unwrap(), None);
        let entries = vec![(1, 10), (7, 0), (4_000_000_000, u64::MAX)];
        store_table(&t, &entries, true).unwrap();
        assert_eq!(load_table(&t).unwrap(), Some(entries));
        store_table(&t, &[], false).unwrap();
        assert_eq!(load_table(&t).unwrap(), Some(vec![]));
        store_table(&t, &[(3, 5)], false).unwrap();
        let good = fs::read(&t).unwrap();
        for i in 0..good.len() {
            let mut b = good.clone();
            b[i] ^= 0x10;
            fs::write(&t, &b).unwrap();
            assert!(load_table(&t).is_err(), "flip at {i} refused");
        }
        for cut in 0..good.len() {
            fs::write(&t, &good[..cut]).unwrap();
            assert!(load_table(&t).is_err(), "cut at {cut} refused");
        }
    }
}
