//! HTTP(S) for `cwn sync`: one client per source (its CA, client certificate, basic
//! authentication and timeout), conditional requests (`If-None-Match`,
//! `If-Modified-Since`), transparent gzip, and every body bounded by the source's `max_size`.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};

use super::config::SourceConfig;

/// What makes a request conditional: the last good response's `ETag` and `Last-Modified`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validators {
    /// `ETag`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// `Last-Modified`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
}

/// A response.
#[derive(Debug)]
pub enum Fetched {
    /// `304 Not Modified`: what was kept is current.
    NotModified,
    /// A `2xx` body (un-gzipped), with the validators for the next request and the headers
    /// (names lower-case).
    Body {
        /// The body.
        bytes: Vec<u8>,
        /// For the next request.
        validators: Validators,
        /// Every response header, by lower-case name.
        headers: HashMap<String, String>,
    },
}

/// Why a request failed: the URL and what happened.
#[derive(Debug, thiserror::Error)]
#[error("{url}: {reason}")]
pub struct FetchError {
    /// The URL asked.
    pub url: String,
    /// What happened (timeout, refused, HTTP status, too large, …).
    pub reason: String,
}

/// The HTTP client of one source.
pub struct Fetcher {
    agent: ureq::Agent,
    authorization: Option<String>,
    max_size: u64,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("max_size", &self.max_size)
            .field("authorization", &self.authorization.as_ref().map(|_| "…"))
            .finish()
    }
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

impl Fetcher {
    /// The client `src` describes: reads its CA, client certificate and password files.
    ///
    /// # Errors
    /// A file that cannot be read or holds no certificate or key, named.
    pub fn new(src: &SourceConfig) -> Result<Fetcher, String> {
        let mut tls = TlsConfig::builder();
        if let Some(ca) = &src.ca {
            let pem = read(ca)?;
            let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
                .filter_map(|i| match i {
                    Ok(PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(format!("{}: no PEM certificate", ca.display()));
            }
            tls = tls.root_certs(RootCerts::Specific(Arc::new(certs)));
        }
        if let Some((cert, key)) = &src.client_cert {
            let chain: Vec<Certificate<'static>> = ureq::tls::parse_pem(&read(cert)?)
                .filter_map(|i| match i {
                    Ok(PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if chain.is_empty() {
                return Err(format!("{}: no PEM certificate", cert.display()));
            }
            let key =
                PrivateKey::from_pem(&read(key)?).map_err(|e| format!("{}: {e}", key.display()))?;
            tls = tls.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
        }
        let authorization = match (&src.username, &src.password_file) {
            (Some(user), Some(file)) => {
                let pass = String::from_utf8(read(file)?)
                    .map_err(|_| format!("{}: not UTF-8", file.display()))?;
                let pass = pass.strip_suffix('\n').unwrap_or(&pass);
                let pass = pass.strip_suffix('\r').unwrap_or(pass);
                Some(format!(
                    "Basic {}",
                    crate::ingest::stix::pattern::encode_base64(
                        format!("{user}:{pass}").as_bytes()
                    )
                ))
            }
            _ => None,
        };
        let agent = ureq::Agent::config_builder()
            .tls_config(tls.build())
            .timeout_global(Some(src.timeout))
            .http_status_as_error(false)
            .user_agent(concat!("cwn-sync/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Fetcher {
            agent,
            authorization,
            max_size: src.max_size,
        })
    }

    /// `GET url`, conditional on `cond`, with `Accept: accept` when given.
    ///
    /// # Errors
    /// Connection problems, timeouts, a status other than 2xx or 304, a body over the
    /// source's `max_size`.
    pub fn get(
        &self,
        url: &str,
        accept: Option<&str>,
        cond: &Validators,
    ) -> Result<Fetched, FetchError> {
        let fail = |reason: String| FetchError {
            url: url.to_string(),
            reason,
        };
        let mut req = self.agent.get(url);
        if let Some(a) = accept {
            req = req.header("Accept", a);
        }
        if let Some(a) = &self.authorization {
            req = req.header("Authorization", a);
        }
        if let Some(e) = &cond.etag {
            req = req.header("If-None-Match", e);
        }
        if let Some(m) = &cond.last_modified {
            req = req.header("If-Modified-Since", m);
        }
        let mut resp = req.call().map_err(|e| fail(e.to_string()))?;
        let status = resp.status().as_u16();
        if status == 304 {
            return Ok(Fetched::NotModified);
        }
        if !(200..300).contains(&status) {
            return Err(fail(format!("HTTP {status}")));
        }
        let headers: HashMap<String, String> = resp
            .headers()
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    k.as_str().to_ascii_lowercase(),
                    v.to_str().ok()?.to_string(),
                ))
            })
            .collect();
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(self.max_size)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(n) => {
                    fail(format!("larger than max_size ({n} bytes)"))
                }
                e => fail(e.to_string()),
            })?;
        let validators = Validators {
            etag: headers.get("etag").cloned(),
            last_modified: headers.get("last-modified").cloned(),
        };
        Ok(Fetched::Body {
            bytes,
            validators,
            headers,
        })
    }
}
