//! TLS for QUIC: rustls configurations built with the `ring` provider explicitly (so that a
//! second provider in the dependency tree cannot make the default ambiguous), TLS 1.3 only,
//! ALPN [`ALPN`], mutual authentication against the network CA, and the peer's identity read
//! from its verified certificate.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, crypto::CryptoProvider};

use super::der;
use super::pki;

/// The application protocol of cwn over QUIC.
pub const ALPN: &[u8] = b"cwn/1";

/// A TLS setup problem (files, keys, certificates).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the configuration.
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client verifier could not be built.
    #[error("TLS client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// quinn refused the rustls configuration.
    #[error("QUIC crypto: {0}")]
    Quic(String),
}

/// The crypto provider every configuration is built with.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate chain, its key and the CA to check peers against.
#[derive(Debug)]
pub struct Identity {
    /// The own certificate chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The own private key.
    pub key: PrivateKeyDer<'static>,
    /// The network CA.
    pub roots: RootCertStore,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            roots: self.roots.clone(),
        }
    }
}

fn file_err(path: &Path, message: impl Into<String>) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Reads the CA certificate(s) of a PEM file into a root store.
pub fn load_roots(ca: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca)
        .map_err(|e| file_err(ca, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(ca, e.to_string()))?;
    if certs.is_empty() {
        return Err(file_err(ca, "no CERTIFICATE in the file"));
    }
    for c in certs {
        roots
            .add(c)
            .map_err(|e| file_err(ca, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

impl Identity {
    /// Reads a certificate chain, a private key and the CA from PEM files.
    pub fn load(cert: &Path, key: &Path, ca: &Path) -> Result<Identity, TlsError> {
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(|e| file_err(cert, e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| file_err(cert, e.to_string()))?;
        if chain.is_empty() {
            return Err(file_err(cert, "no CERTIFICATE in the file"));
        }
        let key_der =
            PrivateKeyDer::from_pem_file(key).map_err(|e| file_err(key, e.to_string()))?;
        Ok(Identity {
            chain,
            key: key_der,
            roots: load_roots(ca)?,
        })
    }

    /// The files `cwn pki issue --entity ID DIR` wrote.
    pub fn from_pki_dir(dir: &Path, entity: &str) -> Result<Identity, TlsError> {
        let f = pki::EntityFiles::in_dir(dir, entity);
        Identity::load(&f.cert, &f.key, &f.ca)
    }
}

/// The hub's rustls configuration: its certificate, client certificates required and
/// verified against the network CA, TLS 1.3, ALPN `cwn/1`.
pub fn server_config(id: &Identity) -> Result<rustls::ServerConfig, TlsError> {
    let provider = provider();
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(id.roots.clone()), provider.clone())
            .build()?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(id.chain.clone(), id.key.clone_key())?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(cfg)
}

/// A client's rustls configuration: the hub's certificate verified against the network CA;
/// the client's own certificate presented when `id` has one (`chain` not empty).
pub fn client_config(id: &Identity) -> Result<rustls::ClientConfig, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(id.roots.clone());
    let mut cfg = if id.chain.is_empty() {
        builder.with_no_client_auth()
    } else {
        builder.with_client_auth_cert(id.chain.clone(), id.key.clone_key())?
    };
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(cfg)
}

/// Who a verified peer certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCert {
    /// The entity id of its `cwn://entity/ID` URI, if it has one.
    pub entity: Option<String>,
    /// Its subject, RFC 4514 text (`CN=…,O=…`, most significant attribute last).
    pub subject: String,
    /// The subject with its attributes in encoding order (some tools print it this way).
    pub subject_encoding_order: String,
    /// SHA-256 of the leaf certificate.
    pub fingerprint: [u8; 32],
}

/// Reads the identity out of the leaf of a verified chain.
pub fn peer_cert(chain: &[CertificateDer<'_>]) -> Result<PeerCert, der::DerError> {
    let leaf = chain.first().ok_or(der::DerError("no certificate"))?;
    let id = der::identity(leaf.as_ref())?;
    let subject_encoding_order = id
        .subject_attrs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    Ok(PeerCert {
        entity: pki::entity_of(&id).map(str::to_string),
        subject_encoding_order,
        subject: id.subject,
        fingerprint: pki::fingerprint(leaf.as_ref()),
    })
}
