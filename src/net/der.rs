//! The identity of an X.509 certificate that rustls has already verified: the subject name,
//! the URIs of the subject alternative name and the organisational units. Certificates are never trusted on the strength of this parse; it only
//! names the peer after the chain was checked.

use x509_cert::Certificate;
use x509_cert::der::Decode as _;
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::oid::AssociatedOid as _;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;

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

/// The short names RFC 4514 gives the attributes a subject here carries; others are shown as
/// dotted OIDs.
fn attr_name(oid: &ObjectIdentifier) -> String {
    const SHORT: [(ObjectIdentifier, &str); 6] = [
        (ObjectIdentifier::new_unwrap("2.5.4.3"), "CN"),
        (ObjectIdentifier::new_unwrap("2.5.4.6"), "C"),
        (ObjectIdentifier::new_unwrap("2.5.4.7"), "L"),
        (ObjectIdentifier::new_unwrap("2.5.4.8"), "ST"),
        (ObjectIdentifier::new_unwrap("2.5.4.10"), "O"),
        (ObjectIdentifier::new_unwrap("2.5.4.11"), "OU"),
    ];
    SHORT
        .iter()
        .find(|(o, _)| o == oid)
        .map_or_else(|| oid.to_string(), |(_, n)| (*n).to_owned())
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

/// Reads the subject and SAN URIs of a DER certificate. The parse is RustCrypto's
/// `x509-cert` (strict DER); a hand-written TLV walker stood here before.
pub fn identity(cert_der: &[u8]) -> Result<CertIdentity, DerError> {
    let cert = Certificate::from_der(cert_der).map_err(|_| DerError("not a DER certificate"))?;
    let tbs = &cert.tbs_certificate;
    let mut out = CertIdentity::default();
    for rdn in &tbs.subject.0 {
        for atv in rdn.0.iter() {
            // Whatever string type the value is in, its bytes as text.
            let text = String::from_utf8_lossy(atv.value.value()).into_owned();
            out.subject_attrs.push((attr_name(&atv.oid), text));
        }
    }
    out.subject = out
        .subject_attrs
        .iter()
        .rev()
        .map(|(k, v)| format!("{k}={}", escape_rdn(v)))
        .collect::<Vec<_>>()
        .join(",");
    for ext in tbs.extensions.iter().flatten() {
        if ext.extn_id != SubjectAltName::OID {
            continue;
        }
        let san = SubjectAltName::from_der(ext.extn_value.as_bytes())
            .map_err(|_| DerError("bad subject alternative name"))?;
        for name in san.0 {
            if let GeneralName::UniformResourceIdentifier(uri) = name {
                out.uris.push(uri.to_string());
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
        let oid = ObjectIdentifier::new_unwrap("1.2.840.113549");
        assert_eq!(attr_name(&oid), "1.2.840.113549");
        assert_eq!(attr_name(&ObjectIdentifier::new_unwrap("2.5.4.3")), "CN");
    }
}
