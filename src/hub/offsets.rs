//! Acked offsets: per entity, the first offset its subscriber has not acknowledged, in a small
//! checksummed file replaced atomically (write a temporary file, `fsync`, rename over the old
//! one, `fsync` the folder), so that a crash leaves either the old value or the new one.
//!
//! ```text
//! magic "CWNACK\0\x01" · next offset u64 · XXH3-64 of the 16 bytes before
//! ```

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use xxhash_rust::xxh3::xxh3_64;

use super::log::{LogError, sync_dir};

/// The first eight bytes of an acked-offset file.
pub const ACKED_MAGIC: [u8; 8] = *b"CWNACK\0\x01";

/// Name of the acked-offset file inside an entity's folder.
pub const ACKED_FILE: &str = "acked";

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

/// Replaces the acked offset in `path` with `next` atomically; with `sync`, durably.
pub fn store(path: &Path, next: u64, sync: bool) -> Result<(), LogError> {
    let mut bytes = [0u8; 24];
    bytes[..8].copy_from_slice(&ACKED_MAGIC);
    bytes[8..16].copy_from_slice(&next.to_le_bytes());
    let sum = xxh3_64(&bytes[..16]);
    bytes[16..].copy_from_slice(&sum.to_le_bytes());
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
    f.write_all(&bytes).map_err(|e| io_err(&tmp, e))?;
    if sync {
        f.sync_all().map_err(|e| io_err(&tmp, e))?;
    }
    drop(f);
    fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
    if sync && let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
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
    }
}
