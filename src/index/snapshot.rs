//! The snapshot container: a versioned header, a table of sections each with a BLAKE3 digest,
//! an optional Ed25519 signature, and the sections themselves, each at an offset that is a
//! multiple of [`SECTION_ALIGN`] (16, the alignment of `u128`), so that a loaded or
//! memory-mapped file's arrays are used in place (see [`array`](super::array)).
//!
//! ```text
//! 0    magic "CWNSNAP\0"
//! 8    format version u32 · flags u32 (bit 0: signed)
//! 16   set version u64 · created-at i64 (Unix seconds) · indicator count u64
//! 40   section count u32 · kind count u32 · per-kind indicator counts (kind count × u64)
//! ..   section table: per section offset u64 · length u64 · BLAKE3 digest [32]
//! ..   Ed25519 signature [64] over every byte before it (zeros when unsigned)
//! ..   BLAKE3 digest [32] of every byte before it (header, table and signature)
//! ..   zero padding to 16, then each section, zero-padded to 16; the file ends with the last
//! ```
//!
//! Since the section digests are in the signed table, the signature covers the whole file.
//! [`decode`] checks all of it — magic, version, header digest, signature, every section's
//! bounds, padding and digest, and the exact file length — and says which check failed.
//! All integers are little-endian.

use std::ops::Range;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use rayon::prelude::*;

use crate::indicator::Kind;

/// The first eight bytes of every snapshot.
pub const MAGIC: [u8; 8] = *b"CWNSNAP\0";
/// The format version this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;
/// Every section starts at a multiple of this many bytes from the start of the file.
pub const SECTION_ALIGN: usize = 16;

const FLAG_SIGNED: u32 = 1;
const FIXED: usize = 48;
const ENTRY: usize = 48;
const SIG: usize = 64;
const DIGEST: usize = 32;

/// What the header says about the set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Format version of the file.
    pub format_version: u32,
    /// Version of the indicator set (chosen by the publisher; higher is newer).
    pub set_version: u64,
    /// When the set was compiled, Unix seconds.
    pub created_at: i64,
    /// Number of indicators.
    pub indicator_count: u64,
    /// Indicators per kind, in [`Kind::ALL`] order.
    pub counts: Vec<u64>,
    /// Whether the file carries a signature.
    pub signed: bool,
    /// BLAKE3 of the header, section table and signature, which commit to every section:
    /// the file's identity, by which a delta names the state it applies to. Zero for an index
    /// built in memory and not yet written.
    pub digest: [u8; 32],
}

impl Header {
    /// Indicators of one kind.
    pub fn count(&self, kind: Kind) -> u64 {
        Kind::ALL
            .iter()
            .position(|&k| k == kind)
            .and_then(|i| self.counts.get(i).copied())
            .unwrap_or(0)
    }
}

/// Why a snapshot was refused. Each variant names the check that failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotError {
    /// Shorter than its own header and table say.
    #[error("truncated: the file has {have} bytes, its {what} needs {need}")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes needed.
        need: u64,
        /// Bytes present.
        have: u64,
    },
    /// Not a snapshot at all.
    #[error("not a cwn snapshot (bad magic bytes)")]
    BadMagic,
    /// Written by a newer cwn.
    #[error("format version {found} is newer than this build reads ({supported}); upgrade cwn")]
    FutureVersion {
        /// The file's version.
        found: u32,
        /// The newest this build reads.
        supported: u32,
    },
    /// Format version 0 or otherwise unknown.
    #[error("unknown format version {0}")]
    UnknownVersion(u32),
    /// The header, section table or signature was altered.
    #[error("header checksum mismatch: the header, section table or signature is corrupt")]
    HeaderChecksum,
    /// A verification key was given but the file is unsigned.
    #[error("the snapshot is not signed, but a verification key was given")]
    Unsigned,
    /// The signature does not verify with the given key.
    #[error("signature does not verify with the given key (wrong key or tampered file)")]
    BadSignature,
    /// A section lies outside the file, overlaps another or is misaligned.
    #[error("section {index} has a bad position (offset {offset}, length {len})")]
    SectionBounds {
        /// Section number.
        index: usize,
        /// Its offset.
        offset: u64,
        /// Its length.
        len: u64,
    },
    /// A section's bytes do not match its digest.
    #[error("section {index} checksum mismatch: its bytes are corrupt")]
    SectionChecksum {
        /// Section number.
        index: usize,
    },
    /// Non-zero bytes where padding must be.
    #[error("non-zero padding at byte {offset}")]
    Padding {
        /// Where.
        offset: u64,
    },
    /// Bytes after the last section.
    #[error("{extra} unexpected byte(s) after the last section")]
    TrailingBytes {
        /// How many.
        extra: u64,
    },
    /// The sections decode to an inconsistent structure.
    #[error("inconsistent content: {0}")]
    Structure(#[from] super::FormatError),
}

fn pad(n: usize) -> usize {
    n.next_multiple_of(SECTION_ALIGN) - n
}

/// Serialises sections into a snapshot, signed when `key` is given. The same inputs always
/// give the same bytes.
pub fn encode(
    set_version: u64,
    created_at: i64,
    counts: &[u64],
    sections: &[Vec<u8>],
    key: Option<&SigningKey>,
) -> Vec<u8> {
    encode_as(MAGIC, set_version, created_at, counts, sections, key)
}

/// [`encode`] under another file type's magic bytes (a delta is a `CWNDELTA` container).
pub fn encode_as(
    magic: [u8; 8],
    set_version: u64,
    created_at: i64,
    counts: &[u64],
    sections: &[Vec<u8>],
    key: Option<&SigningKey>,
) -> Vec<u8> {
    let table_end = FIXED + counts.len() * 8 + sections.len() * ENTRY;
    let header_end = table_end + SIG + DIGEST;
    let mut offset = header_end + pad(header_end);
    let digests: Vec<[u8; 32]> = sections
        .par_iter()
        .map(|s| *blake3::hash(s).as_bytes())
        .collect();
    let mut out = Vec::with_capacity(offset + sections.iter().map(|s| s.len() + 8).sum::<usize>());
    out.extend_from_slice(&magic);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(if key.is_some() { FLAG_SIGNED } else { 0 }).to_le_bytes());
    out.extend_from_slice(&set_version.to_le_bytes());
    out.extend_from_slice(&created_at.to_le_bytes());
    out.extend_from_slice(&counts.iter().sum::<u64>().to_le_bytes());
    out.extend_from_slice(&(sections.len() as u32).to_le_bytes());
    out.extend_from_slice(&(counts.len() as u32).to_le_bytes());
    for c in counts {
        out.extend_from_slice(&c.to_le_bytes());
    }
    for (s, d) in sections.iter().zip(&digests) {
        out.extend_from_slice(&(offset as u64).to_le_bytes());
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(d);
        offset += s.len() + pad(s.len());
    }
    debug_assert_eq!(out.len(), table_end);
    let sig = key.map_or([0u8; SIG], |k| k.sign(&out).to_bytes());
    out.extend_from_slice(&sig);
    let digest = blake3::hash(&out);
    out.extend_from_slice(digest.as_bytes());
    out.resize(out.len() + pad(out.len()), 0);
    for s in sections {
        out.extend_from_slice(s);
        out.resize(out.len() + pad(s.len()), 0);
    }
    out
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or([0; 4]))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]))
}

fn need(bytes: &[u8], what: &'static str, n: usize) -> Result<(), SnapshotError> {
    if bytes.len() < n {
        return Err(SnapshotError::Truncated {
            what,
            need: n as u64,
            have: bytes.len() as u64,
        });
    }
    Ok(())
}

/// Checks a whole snapshot and returns its header and its sections (borrowed from `bytes`).
/// With `verify`, the file must be signed by that key.
pub fn decode<'a>(
    bytes: &'a [u8],
    verify: Option<&VerifyingKey>,
) -> Result<(Header, Vec<&'a [u8]>), SnapshotError> {
    let (header, ranges) = decode_ranges(bytes, verify)?;
    Ok((header, ranges.into_iter().map(|r| &bytes[r]).collect()))
}

/// [`decode`], returning the sections as byte ranges of `bytes`.
pub fn decode_ranges(
    bytes: &[u8],
    verify: Option<&VerifyingKey>,
) -> Result<(Header, Vec<Range<usize>>), SnapshotError> {
    decode_ranges_as(MAGIC, bytes, verify)
}

/// [`decode_ranges`] of a container with other magic bytes.
pub fn decode_ranges_as(
    magic: [u8; 8],
    bytes: &[u8],
    verify: Option<&VerifyingKey>,
) -> Result<(Header, Vec<Range<usize>>), SnapshotError> {
    need(bytes, "header", FIXED)?;
    if bytes[..8] != magic {
        return Err(SnapshotError::BadMagic);
    }
    let version = u32_at(bytes, 8);
    if version > FORMAT_VERSION {
        return Err(SnapshotError::FutureVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    if version == 0 {
        return Err(SnapshotError::UnknownVersion(version));
    }
    let flags = u32_at(bytes, 12);
    let n_sections = u32_at(bytes, 40) as usize;
    let n_kinds = u32_at(bytes, 44) as usize;
    // Bounds first, in u64, so that absurd counts cannot overflow.
    let table_end = FIXED as u64 + n_kinds as u64 * 8 + n_sections as u64 * ENTRY as u64;
    let header_end = table_end + (SIG + DIGEST) as u64;
    if (bytes.len() as u64) < header_end {
        return Err(SnapshotError::Truncated {
            what: "section table",
            need: header_end,
            have: bytes.len() as u64,
        });
    }
    let (table_end, header_end) = (table_end as usize, header_end as usize);
    let digest = blake3::hash(&bytes[..header_end - DIGEST]);
    if digest.as_bytes()[..] != bytes[header_end - DIGEST..header_end] {
        return Err(SnapshotError::HeaderChecksum);
    }
    let signed = flags & FLAG_SIGNED != 0;
    if let Some(key) = verify {
        if !signed {
            return Err(SnapshotError::Unsigned);
        }
        let sig_bytes: [u8; SIG] = bytes[table_end..table_end + SIG]
            .try_into()
            .map_err(|_| SnapshotError::BadSignature)?;
        key.verify(&bytes[..table_end], &Signature::from_bytes(&sig_bytes))
            .map_err(|_| SnapshotError::BadSignature)?;
    }
    let counts: Vec<u64> = (0..n_kinds).map(|i| u64_at(bytes, FIXED + i * 8)).collect();
    let mut pos = header_end as u64;
    let mut sections = Vec::with_capacity(n_sections);
    let mut digests = Vec::with_capacity(n_sections);
    for i in 0..n_sections {
        let e = FIXED + n_kinds * 8 + i * ENTRY;
        let offset = u64_at(bytes, e);
        let len = u64_at(bytes, e + 8);
        let aligned = pos.next_multiple_of(SECTION_ALIGN as u64);
        // Padding before the section must be zero.
        if offset != aligned
            || offset
                .checked_add(len)
                .is_none_or(|end| end > bytes.len() as u64)
        {
            if offset == aligned {
                return Err(SnapshotError::Truncated {
                    what: "sections",
                    need: offset.saturating_add(len),
                    have: bytes.len() as u64,
                });
            }
            return Err(SnapshotError::SectionBounds {
                index: i,
                offset,
                len,
            });
        }
        check_zero(bytes, pos as usize, offset as usize)?;
        let (start, end) = (offset as usize, (offset + len) as usize);
        sections.push(start..end);
        digests.push(&bytes[e + 16..e + 48]);
        pos = end as u64;
    }
    let end = pos as usize + pad(pos as usize);
    if bytes.len() < end {
        return Err(SnapshotError::Truncated {
            what: "final padding",
            need: end as u64,
            have: bytes.len() as u64,
        });
    }
    check_zero(bytes, pos as usize, end)?;
    if bytes.len() > end {
        return Err(SnapshotError::TrailingBytes {
            extra: (bytes.len() - end) as u64,
        });
    }
    if n_sections == 0 {
        check_zero(bytes, header_end, end)?;
    }
    // Section digests in parallel: this is the bulk of load time for large sets.
    let bad = sections
        .par_iter()
        .zip(digests.par_iter())
        .position_first(|(s, d)| blake3::hash(&bytes[s.clone()]).as_bytes()[..] != d[..]);
    if let Some(index) = bad {
        return Err(SnapshotError::SectionChecksum { index });
    }
    let header = Header {
        format_version: version,
        set_version: u64_at(bytes, 16),
        created_at: u64_at(bytes, 24) as i64,
        indicator_count: u64_at(bytes, 32),
        counts,
        signed,
        digest: *digest.as_bytes(),
    };
    Ok((header, sections))
}

/// The identity ([`Header::digest`]) of a container's bytes as [`encode`] wrote them, read
/// from its header without checking the rest; `None` if the bytes are too short.
pub fn identity(bytes: &[u8]) -> Option<[u8; 32]> {
    if bytes.len() < FIXED {
        return None;
    }
    let n_sections = u32_at(bytes, 40) as usize;
    let n_kinds = u32_at(bytes, 44) as usize;
    let end = FIXED
        .checked_add(n_kinds.checked_mul(8)?)?
        .checked_add(n_sections.checked_mul(ENTRY)?)?
        .checked_add(SIG + DIGEST)?;
    bytes.get(end - DIGEST..end)?.try_into().ok()
}

fn check_zero(bytes: &[u8], from: usize, to: usize) -> Result<(), SnapshotError> {
    match bytes[from..to].iter().position(|&b| b != 0) {
        Some(i) => Err(SnapshotError::Padding {
            offset: (from + i) as u64,
        }),
        None => Ok(()),
    }
}

/// Signing keys for snapshots, as PEM files (PKCS#8 for the private key, SPKI for the public
/// key, so that OpenSSL and other tools read them too).
pub mod keys {
    use std::path::Path;

    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use ed25519_dalek::pkcs8::{
        DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey,
    };
    use ed25519_dalek::{SigningKey, VerifyingKey};

    /// File name of the private key `cwn keygen` writes.
    pub const SIGNING_FILE: &str = "cwn-signing.pem";
    /// File name of the public key `cwn keygen` writes.
    pub const VERIFY_FILE: &str = "cwn-verify.pem";

    /// A new random signing key (from the operating system's random source).
    pub fn generate() -> anyhow::Result<SigningKey> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        Ok(SigningKey::from_bytes(&seed))
    }

    /// The private key as PKCS#8 PEM.
    pub fn signing_pem(key: &SigningKey) -> anyhow::Result<String> {
        Ok(key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| anyhow::anyhow!("encode private key: {e}"))?
            .to_string())
    }

    /// The public key as SPKI PEM.
    pub fn verify_pem(key: &VerifyingKey) -> anyhow::Result<String> {
        key.to_public_key_pem(LineEnding::LF)
            .map_err(|e| anyhow::anyhow!("encode public key: {e}"))
    }

    /// Reads a PKCS#8 PEM private key.
    pub fn read_signing(path: &Path) -> anyhow::Result<SigningKey> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        SigningKey::from_pkcs8_pem(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}: not an Ed25519 PKCS#8 PEM private key: {e}",
                path.display()
            )
        })
    }

    /// Reads an SPKI PEM public key.
    pub fn read_verify(path: &Path) -> anyhow::Result<VerifyingKey> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        VerifyingKey::from_public_key_pem(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}: not an Ed25519 SPKI PEM public key: {e}",
                path.display()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn sample(signed: bool) -> Vec<u8> {
        let sections = vec![vec![1u8, 2, 3], vec![], (0..=255u8).collect::<Vec<_>>()];
        encode(
            7,
            1_700_000_000,
            &[1, 2, 3],
            &sections,
            signed.then(|| key(1)).as_ref(),
        )
    }

    #[test]
    fn round_trip_signed_and_deterministic() {
        let bytes = sample(true);
        assert_eq!(bytes, sample(true));
        assert_eq!(bytes.len() % SECTION_ALIGN, 0);
        let vk = key(1).verifying_key();
        let (h, s) = decode(&bytes, Some(&vk)).unwrap();
        assert_eq!(
            (h.set_version, h.created_at, h.indicator_count),
            (7, 1_700_000_000, 6)
        );
        assert!(h.signed);
        assert_eq!(
            s,
            vec![
                &[1u8, 2, 3][..],
                &[][..],
                &(0..=255u8).collect::<Vec<_>>()[..]
            ]
        );
        assert_eq!(
            decode(&bytes, Some(&key(2).verifying_key())).unwrap_err(),
            SnapshotError::BadSignature
        );
        assert_eq!(
            decode(&sample(false), Some(&vk)).unwrap_err(),
            SnapshotError::Unsigned
        );
        assert!(decode(&sample(false), None).is_ok());
    }

    #[test]
    fn every_flipped_byte_and_every_truncation_is_refused() {
        for signed in [false, true] {
            let bytes = sample(signed);
            let vk = key(1).verifying_key();
            let verify = signed.then_some(&vk);
            for i in 0..bytes.len() {
                let mut b = bytes.clone();
                b[i] ^= 0x40;
                assert!(
                    decode(&b, verify).is_err(),
                    "flip at {i} accepted (signed={signed})"
                );
                assert!(
                    decode(&bytes[..i], verify).is_err(),
                    "truncation to {i} accepted"
                );
            }
            let mut longer = bytes.clone();
            longer.extend_from_slice(&[0; 8]);
            assert!(matches!(
                decode(&longer, verify),
                Err(SnapshotError::TrailingBytes { extra: 8 })
            ));
        }
    }

    #[test]
    fn future_version_is_refused_by_name() {
        let mut b = sample(false);
        b[8] = 2;
        assert_eq!(
            decode(&b, None).unwrap_err(),
            SnapshotError::FutureVersion {
                found: 2,
                supported: 1
            }
        );
        assert!(
            decode(&b, None)
                .unwrap_err()
                .to_string()
                .contains("upgrade")
        );
    }

    #[test]
    fn pem_keys_round_trip() {
        let k = keys::generate().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let sp = dir.path().join(keys::SIGNING_FILE);
        let vp = dir.path().join(keys::VERIFY_FILE);
        std::fs::write(&sp, keys::signing_pem(&k).unwrap()).unwrap();
        std::fs::write(&vp, keys::verify_pem(&k.verifying_key()).unwrap()).unwrap();
        assert_eq!(keys::read_signing(&sp).unwrap().to_bytes(), k.to_bytes());
        assert_eq!(keys::read_verify(&vp).unwrap(), k.verifying_key());
        assert!(keys::read_verify(&sp).is_err());
    }
}
