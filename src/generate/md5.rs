//! MD5 (RFC 1321), only for the digests MISP's `hashes.csv` lists (FORMATS.md §1.3). Not a
//! security function here: it names values, it protects nothing. The digest is RustCrypto's
//! `md-5` (a hand-written copy stood here before; the crate is tested against the RFC and
//! shares its `digest` with `sha2`, which the signing stack brings in anyway).

use md5::{Digest as _, Md5};

/// The MD5 digest of `data` as 32 lower-case hex digits.
pub fn md5_hex(data: &[u8]) -> String {
    use std::fmt::Write as _;
    Md5::digest(data)
        .iter()
        .fold(String::with_capacity(32), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::md5_hex;

    #[test]
    fn rfc_1321_test_suite_and_the_formats_example() {
        let cases = [
            ("", "d41d8cd98f00b204e9800998ecf8427e"),
            ("a", "0cc175b9c0f1b6a831c399e269772661"),
            ("abc", "900150983cd24fb0d6963f7d28e17f72"),
            ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            (
                "abcdefghijklmnopqrstuvwxyz",
                "c3fcd3d76192e4007dfb496cca67e13b",
            ),
            (
                "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
                "57edf4a22be3c955ac49da2e2107b67a",
            ),
            // FORMATS.md §1.3.
            ("198.51.100.23", "4d06b9696e68b39ac9dbfed762191467"),
        ];
        for (input, want) in cases {
            assert_eq!(md5_hex(input.as_bytes()), want, "{input:?}");
        }
        // Lengths around the padding boundary.
        assert_eq!(md5_hex(&[b'x'; 55]).len(), 32);
        assert_ne!(md5_hex(&[b'x'; 56]), md5_hex(&[b'x'; 57]));
    }
}
