//! The constituency index: which entities an address or a name belongs to.
//!
//! Built once from a [`Registry`], immutable, `Send + Sync`. An address maps to **every**
//! entity whose prefix covers it (a provider's /16 and its customer's /24 both); a name maps to
//! every entity owning it or a parent domain on a label boundary (`a.shop.example` belongs to
//! the owners of `shop.example` and `example`, `notshop.example` to neither of the first).
//! Lookups reuse the compiled index's structures ([`IpIndex`], [`DomainIndex`]) with entity
//! ordinals in place of indicator ordinals, and telemetry values are normalised with the same
//! functions as indicators ([`crate::indicator::normalize`]).
//!
//! ```
//! use cwn::route::constituency::{ConstituencyIndex, Observable};
//! use cwn::route::registry::Registry;
//!
//! let reg = Registry::from_toml(r#"
//! [[entities]]
//! id = "hoster"
//! name = "Hoster"
//! roles = ["subscriber"]
//! prefixes = ["10.1.0.0/16"]
//! domains = ["hoster.example"]
//!
//! [[entities]]
//! id = "shop"
//! name = "Shop"
//! roles = ["subscriber"]
//! prefixes = ["10.1.2.0/24"]
//! domains = ["shop.hoster.example"]
//! "#, "registry.toml").unwrap();
//! let index = ConstituencyIndex::build(&reg);
//! let mut out = Vec::new();
//! index.lookup(&Observable::Addr("10.1.2.3".parse().unwrap()), &mut out);
//! assert_eq!(out, [0, 1]);
//! out.clear();
//! index.lookup(&Observable::Url("https://www.SHOP.hoster.example/login"), &mut out);
//! assert_eq!(out, [0, 1]);
//! out.clear();
//! index.lookup(&Observable::Name("notshop.example"), &mut out);
//! assert!(out.is_empty());
//! ```

use std::borrow::Cow;
use std::net::IpAddr;

use roaring::RoaringBitmap;

use super::registry::Registry;
use crate::index::FormatError;
use crate::index::domain::{DomainIndex, DomainIndexBuilder};
use crate::index::ip::{IpIndex, IpIndexBuilder};
use crate::indicator::normalize;
use crate::telemetry::FieldKind;

/// One value of a telemetry row that may point at a victim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observable<'a> {
    /// An address, already parsed.
    Addr(IpAddr),
    /// A DNS name or host name as seen (an IP literal is looked up as an address).
    Name(&'a str),
    /// A URL or request target; its host is looked up.
    Url(&'a str),
    /// An e-mail address; its domain is looked up.
    Email(&'a str),
}

impl<'a> Observable<'a> {
    /// The observable a telemetry field of this kind holds, if the kind can name a victim
    /// (addresses, names, URLs, e-mail addresses; not digests, fingerprints, text or times).
    /// An unparsable address yields `None`.
    pub fn from_field(kind: &FieldKind, value: &'a str) -> Option<Observable<'a>> {
        match kind {
            FieldKind::Ip => normalize::ip(value).ok().map(Observable::Addr),
            FieldKind::Domain => Some(Observable::Name(value)),
            FieldKind::Url => Some(Observable::Url(value)),
            FieldKind::Email => Some(Observable::Email(value)),
            _ => None,
        }
    }
}

/// Prefix and domain lookups from telemetry values to entity ordinals.
#[derive(Clone, Debug, Default)]
pub struct ConstituencyIndex {
    ip: IpIndex,
    names: DomainIndex,
    entities: u32,
}

/// Whether `name` is already in canonical form (FORMATS.md §6.2), so that it can be looked up
/// without normalising: lower-case ASCII labels of letters, digits, `-`, `_`, no empty label.
/// Telemetry DNS names nearly always are, and this saves an allocation per lookup.
#[inline]
fn is_canonical_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name[0] != b'.'
        && name[name.len() - 1] != b'.'
        && !name.windows(2).any(|w| w == b"..")
        && name.iter().all(|&b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
}

/// The host of a URL without parsing the whole URL: after `scheme://` (if any), before the
/// path, query or fragment, without user info and port. `None` when the host needs the full
/// parser (percent escapes, non-ASCII, backslashes).
fn url_host(url: &str) -> Option<&str> {
    let s = url.trim();
    let rest = match s.find("://") {
        Some(p) => &s[p + 3..],
        None => s,
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host_port = match authority.rfind('@') {
        Some(p) => &authority[p + 1..],
        None => authority,
    };
    if host_port.is_empty() || !host_port.is_ascii() || host_port.contains(['%', '\\']) {
        return None;
    }
    if let Some(v6) = host_port.strip_prefix('[') {
        return v6.split_once(']').map(|(h, _)| h);
    }
    Some(match host_port.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host_port,
    })
}

impl ConstituencyIndex {
    /// The index of every prefix and domain of `registry`.
    pub fn build(registry: &Registry) -> Self {
        let mut ip = IpIndexBuilder::new();
        let mut names = DomainIndexBuilder::new();
        for (ord, e) in registry.iter() {
            for &net in &e.prefixes {
                ip.add_net(net, ord.as_u32());
            }
            for d in &e.domains {
                names.add_domain(d.as_bytes(), ord.as_u32());
            }
        }
        ConstituencyIndex {
            ip: ip.build(),
            names: names.build(),
            entities: registry.len() as u32,
        }
    }

    /// Appends the entities whose prefixes cover `addr`, ascending, each once. An IPv4-mapped
    /// IPv6 address is looked up as IPv4.
    #[inline]
    pub fn lookup_ip(&self, addr: IpAddr, out: &mut Vec<u32>) {
        self.ip.lookup_ip(addr, out);
    }

    /// Appends the entities owning `name` or a parent domain of it, ascending, each once.
    /// The name is normalised first (case, trailing dot, IDN); an IP literal is looked up as
    /// an address; a name that does not normalise belongs to nobody.
    pub fn lookup_name(&self, name: &str, out: &mut Vec<u32>) {
        let trimmed = name.trim();
        if is_canonical_name(trimmed.as_bytes()) {
            // A dotted quad is canonical text too; an entity never owns a numeric "domain".
            if trimmed.as_bytes()[trimmed.len() - 1].is_ascii_digit()
                && let Ok(a) = normalize::ip(trimmed)
            {
                return self.lookup_ip(a, out);
            }
            return self.names.lookup(trimmed.as_bytes(), out);
        }
        if let Ok(a) = normalize::ip(trimmed) {
            return self.lookup_ip(a, out);
        }
        if let Ok(canonical) = normalize::domain(trimmed) {
            self.names.lookup(canonical.as_bytes(), out);
        }
    }

    /// Appends the entities `obs` points at, ascending, each once.
    pub fn lookup(&self, obs: &Observable<'_>, out: &mut Vec<u32>) {
        match *obs {
            Observable::Addr(a) => self.lookup_ip(a, out),
            Observable::Name(n) => self.lookup_name(n, out),
            Observable::Url(u) => {
                let host: Option<Cow<'_, str>> = match url_host(u) {
                    Some(h) => Some(Cow::Borrowed(h)),
                    None => normalize::url(u)
                        .ok()
                        .map(|c| Cow::Owned(c.host.trim_matches(['[', ']']).to_string())),
                };
                if let Some(h) = host {
                    self.lookup_name(&h, out);
                }
            }
            Observable::Email(e) => {
                if let Some((_, domain)) = e.trim().rsplit_once('@') {
                    self.lookup_name(domain, out);
                }
            }
        }
    }

    /// Adds to `out` the entities any of `observables` points at: the victim side of a hit.
    pub fn victims(&self, observables: &[Observable<'_>], out: &mut RoaringBitmap) {
        let mut scratch = Vec::new();
        for obs in observables {
            scratch.clear();
            self.lookup(obs, &mut scratch);
            out.extend(scratch.iter().copied());
        }
    }

    /// Number of entities of the registry it was built from.
    pub fn entities(&self) -> u32 {
        self.entities
    }

    /// Bytes of all arrays.
    pub fn heap_bytes(&self) -> usize {
        self.ip.heap_bytes() + self.names.heap_bytes()
    }

    /// Checks the invariants of both structures.
    #[doc(hidden)]
    pub fn validate(&self) -> Result<(), FormatError> {
        self.ip.validate()?;
        self.names.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_host_takes_the_authority_apart() {
        let cases = [
            (
                "https://user:pw@www.example.com:8443/a?b#c",
                Some("www.example.com"),
            ),
            ("http://[2001:db8::1]:80/", Some("2001:db8::1")),
            ("example.com/path", Some("example.com")),
            ("http://198.51.100.7", Some("198.51.100.7")),
            ("http://b%C3%BCcher.example/", None),
            ("http:///nohost", None),
        ];
        for (url, want) in cases {
            assert_eq!(url_host(url), want, "{url}");
        }
    }

    #[test]
    fn canonical_names_skip_normalisation() {
        assert!(is_canonical_name(b"www.example.com"));
        assert!(!is_canonical_name(b"WWW.example.com"));
        assert!(!is_canonical_name(b"example.com."));
        assert!(!is_canonical_name(b"a..b"));
        assert!(!is_canonical_name(b""));
    }
}
