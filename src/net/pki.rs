//! A small certificate authority for the network, for tests and small deployments
//! (`cwn pki init`, `cwn pki issue`); production may bring its own CA, as long as entity
//! certificates name the entity as the registry knows it.
//!
//! Layout of a PKI directory: `ca.pem` and `ca.key` (the CA), and `ID.pem` / `ID.key` per
//! issued entity. Keys are ECDSA P-256 in PKCS#8 PEM, written with mode 0600.
//!
//! An entity certificate carries:
//! - the entity id as a subject alternative name URI `cwn://entity/ID` (what the hub reads),
//!   and as the subject's common name: the subject reads `CN=ID,OU=ROLES,O=ORG`, which is
//!   what a registry's `subject` key holds to pin it;
//! - its roles as the subject's organisational unit, e.g. `OU=partner/subscriber`. The hub
//!   trusts the registry for roles and the certificate only for identity; the OU is there for
//!   people reading the certificate;
//! - for the hub's own certificate (role `hub`), DNS names and IP addresses clients dial.

use std::fs;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};

use super::der;

/// The URI scheme and prefix of entity identities in certificates.
pub const ENTITY_URI_PREFIX: &str = "cwn://entity/";

/// File name of the CA certificate in a PKI directory.
pub const CA_CERT: &str = "ca.pem";
/// File name of the CA private key in a PKI directory.
pub const CA_KEY: &str = "ca.key";

/// The role of the hub's own (server) certificate, besides the registry roles.
pub const HUB_ROLE: &str = "hub";

/// Roles `cwn pki issue` accepts.
pub const ROLES: [&str; 4] = ["publisher", "partner", "subscriber", HUB_ROLE];

/// A PKI operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Reading or writing a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Certificate generation.
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// An existing file would be overwritten.
    #[error("{0} exists; use --force to replace it")]
    Exists(PathBuf),
    /// A bad argument.
    #[error("{0}")]
    Invalid(String),
    /// The CA certificate could not be read.
    #[error("{path}: {source}")]
    Der {
        /// The file.
        path: PathBuf,
        /// The error.
        source: der::DerError,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Paths of one entity's files in a PKI directory.
#[derive(Debug, Clone)]
pub struct EntityFiles {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// The private key (PKCS#8 PEM).
    pub key: PathBuf,
    /// The CA certificate (PEM).
    pub ca: PathBuf,
}

impl EntityFiles {
    /// Where `pki issue --entity ID DIR` writes, and where `--pki DIR --entity ID` reads.
    pub fn in_dir(dir: &Path, id: &str) -> Self {
        EntityFiles {
            cert: dir.join(format!("{id}.pem")),
            key: dir.join(format!("{id}.key")),
            ca: dir.join(CA_CERT),
        }
    }
}

fn write_file(path: &Path, contents: &str, private: bool, force: bool) -> Result<(), PkiError> {
    if path.exists() && !force {
        return Err(PkiError::Exists(path.to_path_buf()));
    }
    let mut out = crate::outfile::OutputFile::create(path, if private { 0o600 } else { 0o644 })
        .map_err(io_err(path))?;
    out.file
        .write_all(contents.as_bytes())
        .map_err(io_err(path))?;
    out.commit().map_err(io_err(path))
}

/// A calendar day `days` from today (negative: in the past), as rcgen wants it.
fn day(days: i64) -> Result<(i32, u8, u8), PkiError> {
    let d = jiff::Zoned::now()
        .date()
        .checked_add(jiff::Span::new().days(days))
        .map_err(|e| PkiError::Invalid(format!("validity: {e}")))?;
    Ok((d.year() as i32, d.month() as u8, d.day() as u8))
}

fn set_validity(params: &mut CertificateParams, days: u32) -> Result<(), PkiError> {
    // A day of slack before now absorbs clock skew between the issuer and the peers.
    let (y, m, d) = day(-1)?;
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = day(i64::from(days))?;
    params.not_after = rcgen::date_time_ymd(y, m, d);
    Ok(())
}

fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| PkiError::Invalid(format!("random serial: {e}")))?;
    b[0] &= 0x7f; // positive INTEGER
    Ok(SerialNumber::from_slice(&b))
}

/// Options of [`init`].
#[derive(Debug, Clone)]
pub struct CaOptions {
    /// The organisation named in the CA's subject (`O=`).
    pub organisation: String,
    /// Validity in days.
    pub days: u32,
    /// Replace existing files.
    pub force: bool,
}

impl Default for CaOptions {
    fn default() -> Self {
        CaOptions {
            organisation: "cwn".into(),
            days: 3650,
            force: false,
        }
    }
}

/// Creates the network CA in `dir`: a P-256 key (`ca.key`) and a self-signed certificate
/// (`ca.pem`). Returns the certificate's path.
///
/// # Errors
/// Existing files (without `force`), I/O, or key generation.
pub fn init(dir: &Path, opts: &CaOptions) -> Result<PathBuf, PkiError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = ca_name(&opts.organisation);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(random_serial()?);
    set_validity(&mut params, opts.days)?;
    let cert = params.self_signed(&key)?;
    let cert_path = dir.join(CA_CERT);
    write_file(&dir.join(CA_KEY), &key.serialize_pem(), true, opts.force)?;
    write_file(&cert_path, &cert.pem(), false, opts.force)?;
    Ok(cert_path)
}

fn ca_name(org: &str) -> DistinguishedName {
    // Most significant first, so that the RFC 4514 text reads `CN=…,O=…`.
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, org);
    dn.push(DnType::CommonName, format!("{org} network CA"));
    dn
}

/// What [`issue`] puts into an entity certificate.
#[derive(Debug, Clone)]
pub struct IssueOptions {
    /// The entity id (as in the registry).
    pub entity: String,
    /// Roles (see [`ROLES`]); informational except `hub`, which makes a server certificate.
    pub roles: Vec<String>,
    /// DNS names for a hub certificate (default `localhost`).
    pub dns: Vec<String>,
    /// IP addresses for a hub certificate (default `127.0.0.1` and `::1`).
    pub ips: Vec<IpAddr>,
    /// Validity in days.
    pub days: u32,
    /// Replace existing files.
    pub force: bool,
}

/// Whether `id` can be an entity id: 1–128 letters, digits, `-`, `_`, `.`, `:` (as the
/// registry requires).
pub fn valid_entity_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Issues a key and certificate for one entity, signed by the CA in `dir`; writes `ID.key`
/// and `ID.pem` there and returns their paths.
///
/// # Errors
/// A bad id or role, a missing or unreadable CA, existing files (without `force`), I/O.
pub fn issue(dir: &Path, opts: &IssueOptions) -> Result<EntityFiles, PkiError> {
    if !valid_entity_id(&opts.entity) {
        return Err(PkiError::Invalid(format!(
            "{:?} is not an entity id (1-128 of letters, digits, `-`, `_`, `.`, `:`)",
            opts.entity
        )));
    }
    // Its files would be the CA's own: `--force` would replace the network's CA key.
    if opts.entity.eq_ignore_ascii_case("ca") {
        return Err(PkiError::Invalid(
            "\"ca\" is the CA's own name in a PKI directory (ca.pem, ca.key); choose another entity id"
                .into(),
        ));
    }
    if opts.roles.is_empty() {
        return Err(PkiError::Invalid("at least one --role is needed".into()));
    }
    for r in &opts.roles {
        if !ROLES.contains(&r.as_str()) {
            return Err(PkiError::Invalid(format!(
                "unknown role {r:?} (expected one of {})",
                ROLES.join(", ")
            )));
        }
    }
    let ca_path = dir.join(CA_CERT);
    let ca_pem = fs::read_to_string(&ca_path).map_err(io_err(&ca_path))?;
    let ca_der = pem_certs(&ca_pem)
        .into_iter()
        .next()
        .ok_or_else(|| PkiError::Invalid(format!("{}: no certificate", ca_path.display())))?;
    let ca_id = der::identity(&ca_der).map_err(|source| PkiError::Der {
        path: ca_path.clone(),
        source,
    })?;
    let key_path = dir.join(CA_KEY);
    let ca_key_pem = fs::read_to_string(&key_path).map_err(io_err(&key_path))?;
    let ca_key = KeyPair::from_pem(&ca_key_pem)?;
    // The issuer name must repeat the CA's subject exactly; rebuild it from the certificate.
    let mut ca_params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    for (k, v) in &ca_id.subject_attrs {
        let ty = match k.as_str() {
            "CN" => DnType::CommonName,
            "O" => DnType::OrganizationName,
            "OU" => DnType::OrganizationalUnitName,
            "C" => DnType::CountryName,
            "L" => DnType::LocalityName,
            "ST" => DnType::StateOrProvinceName,
            other => {
                return Err(PkiError::Invalid(format!(
                    "{}: subject attribute {other} is not supported; issue with your CA's own tools",
                    ca_path.display()
                )));
            }
        };
        dn.push(ty, v.as_str());
    }
    ca_params.distinguished_name = dn;
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let issuer = Issuer::new(ca_params, &ca_key);

    let hub = opts.roles.iter().any(|r| r == HUB_ROLE);
    let mut params = CertificateParams::default();
    // Most significant first: the subject reads `CN=ID,OU=ROLES,O=ORG` (RFC 4514).
    let mut dn = DistinguishedName::new();
    if let Some(org) = ca_id.attr("O").next() {
        dn.push(DnType::OrganizationName, org);
    }
    dn.push(DnType::OrganizationalUnitName, opts.roles.join("/"));
    dn.push(DnType::CommonName, opts.entity.as_str());
    params.distinguished_name = dn;
    let uri = format!("{ENTITY_URI_PREFIX}{}", opts.entity);
    params.subject_alt_names.push(SanType::URI(
        uri.try_into()
            .map_err(|e| PkiError::Invalid(format!("entity URI: {e}")))?,
    ));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    if hub {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ServerAuth);
        let dns = if opts.dns.is_empty() && opts.ips.is_empty() {
            vec!["localhost".to_string()]
        } else {
            opts.dns.clone()
        };
        let ips: Vec<IpAddr> = if opts.dns.is_empty() && opts.ips.is_empty() {
            vec![[127, 0, 0, 1].into(), std::net::Ipv6Addr::LOCALHOST.into()]
        } else {
            opts.ips.clone()
        };
        for d in dns {
            params.subject_alt_names.push(SanType::DnsName(
                d.as_str()
                    .try_into()
                    .map_err(|e| PkiError::Invalid(format!("DNS name {d:?}: {e}")))?,
            ));
        }
        for ip in ips {
            params.subject_alt_names.push(SanType::IpAddress(ip));
        }
    }
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial()?);
    set_validity(&mut params, opts.days)?;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    let files = EntityFiles::in_dir(dir, &opts.entity);
    write_file(&files.key, &key.serialize_pem(), true, opts.force)?;
    write_file(&files.cert, &cert.pem(), false, opts.force)?;
    Ok(files)
}

/// The DER bytes of every `CERTIFICATE` block in a PEM text.
pub fn pem_certs(pem: &str) -> Vec<Vec<u8>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .map(|c| c.as_ref().to_vec())
        .collect()
}

/// The SHA-256 fingerprint of a DER certificate, as the registry stores it.
pub fn fingerprint(cert_der: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, cert_der);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The entity id a certificate names in its `cwn://entity/ID` URI, if any.
pub fn entity_of(id: &der::CertIdentity) -> Option<&str> {
    id.uris
        .iter()
        .find_map(|u| u.strip_prefix(ENTITY_URI_PREFIX))
        .filter(|e| valid_entity_id(e))
}
