//! Just enough DER to read the identity out of an X.509 certificate that rustls has already
//! verified: the subject name, the URIs of the subject alternative name and the
//! organisational units. Certificates are never trusted on the strength of this parse; it only
//! names the peer after the chain was checked.

use std::fmt::Write as _;

/// Why a certificate could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("certificate: {0}")]
pub struct DerError(pub &'static str);

/// The identity a certificate names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertIdentity {
    /// The subject as RFC 4514 text, most significant RDN last (`CN=x,OU=y,O=z`).
    pub subject: String,
    /// The subject's attributes in encoding order: (short name or dotted OID, value).
    pub subject_attrs: Vec<(String, String)>,
    /// Every `uniformResourceIdentifier` of the subject alternative name extension.
    pub uris: Vec<String>,
}

impl CertIdentity {
    /// The values of one subject attribute (`"CN"`, `"OU"`, …), in encoding order.
    pub fn attr<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.subject_attrs
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One TLV: tag, contents, and the bytes after it.
struct Tlv<'a> {
    tag: u8,
    body: &'a [u8],
}

fn next<'a>(buf: &mut &'a [u8]) -> Result<Tlv<'a>, DerError> {
    let b = *buf;
    let (&tag, rest) = b.split_first().ok_or(DerError("truncated"))?;
    let (&l0, mut rest) = rest.split_first().ok_or(DerError("truncated"))?;
    let len = if l0 < 0x80 {
        l0 as usize
    } else {
        let n = (l0 & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return Err(DerError("bad length"));
        }
        let mut len = 0usize;
        for &x in &rest[..n] {
            len = (len << 8) | x as usize;
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return Err(DerError("truncated"));
    }
    let (body, after) = rest.split_at(len);
    *buf = after;
    Ok(Tlv { tag, body })
}

fn expect<'a>(buf: &mut &'a [u8], tag: u8) -> Result<&'a [u8], DerError> {
    let t = next(buf)?;
    if t.tag != tag {
        return Err(DerError("unexpected element"));
    }
    Ok(t.body)
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
const BOOLEAN: u8 = 0x01;

/// OID of subjectAltName (2.5.29.17).
const SAN: &[u8] = &[0x55, 0x1d, 0x11];

fn oid_text(oid: &[u8]) -> String {
    match oid {
        [0x55, 0x04, 0x03] => "CN".into(),
        [0x55, 0x04, 0x06] => "C".into(),
        [0x55, 0x04, 0x07] => "L".into(),
        [0x55, 0x04, 0x08] => "ST".into(),
        [0x55, 0x04, 0x0a] => "O".into(),
        [0x55, 0x04, 0x0b] => "OU".into(),
        _ => {
            // Dotted form.
            let mut s = String::new();
            if let Some((&first, rest)) = oid.split_first() {
                let _ = write!(s, "{}.{}", first / 40, first % 40);
                let mut v: u64 = 0;
                for &b in rest {
                    v = (v << 7) | (b & 0x7f) as u64;
                    if b & 0x80 == 0 {
                        let _ = write!(s, ".{v}");
                        v = 0;
                    }
                }
            }
            s
        }
    }
}

fn escape_rdn(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.chars().enumerate() {
        if matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && matches!(c, '#' | ' '))
        {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Reads the subject and SAN URIs of a DER certificate.
pub fn identity(cert_der: &[u8]) -> Result<CertIdentity, DerError> {
    let mut buf = cert_der;
    let mut cert = expect(&mut buf, SEQUENCE)?;
    let mut tbs = expect(&mut cert, SEQUENCE)?;
    // [0] EXPLICIT version, optional.
    if tbs.first() == Some(&0xa0) {
        next(&mut tbs)?;
    }
    next(&mut tbs)?; // serial
    next(&mut tbs)?; // signature algorithm
    next(&mut tbs)?; // issuer
    next(&mut tbs)?; // validity
    let mut subject = expect(&mut tbs, SEQUENCE)?;
    let mut out = CertIdentity::default();
    while !subject.is_empty() {
        let mut rdn = expect(&mut subject, SET)?;
        while !rdn.is_empty() {
            let mut atv = expect(&mut rdn, SEQUENCE)?;
            let oid = expect(&mut atv, OID)?;
            let value = next(&mut atv)?;
            let text = String::from_utf8_lossy(value.body).into_owned();
            out.subject_attrs.push((oid_text(oid), text));
        }
    }
    out.subject = out
        .subject_attrs
        .iter()
        .rev()
        .map(|(k, v)| format!("{k}={}", escape_rdn(v)))
        .collect::<Vec<_>>()
        .join(",");
    next(&mut tbs)?; // subject public key info
    while !tbs.is_empty() {
        let t = next(&mut tbs)?;
        if t.tag != 0xa3 {
            continue; // issuer/subject unique ids
        }
        let mut wrapped = t.body;
        let mut exts = expect(&mut wrapped, SEQUENCE)?;
        while !exts.is_empty() {
            let mut ext = expect(&mut exts, SEQUENCE)?;
            let oid = expect(&mut ext, OID)?;
            if ext.first() == Some(&BOOLEAN) {
                next(&mut ext)?;
            }
            let value = expect(&mut ext, OCTET_STRING)?;
            if oid != SAN {
                continue;
            }
            let mut v = value;
            let mut names = expect(&mut v, SEQUENCE)?;
            while !names.is_empty() {
                let n = next(&mut names)?;
                // [6] IMPLICIT IA5String: uniformResourceIdentifier.
                if n.tag == 0x86 {
                    out.uris.push(String::from_utf8_lossy(n.body).into_owned());
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            &[][..],
            &[0x30],
            &[0x30, 0x85, 1, 2, 3, 4, 5],
            &[0x30, 0x02, 0x30],
        ] {
            assert!(identity(bytes).is_err());
        }
    }

    #[test]
    fn dotted_oids() {
        assert_eq!(
            oid_text(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d]),
            "1.2.840.113549"
        );
    }
}
